"""A run's metrics as tables (for the app, the CLI and notebooks): the model against its baselines, the paired
differences to each baseline (user by user on one split's test users, or fold by fold for cross-validated
runs), and for cross-validated runs the per-fold table."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .records import single_fold

__all__ = [
    "METRIC_COLUMNS",
    "MODEL_NAMES",
    "model_name",
    "metrics_table",
    "fold_table",
    "paired_table",
    "user_paired_table",
    "user_paired_verdict",
]

#: how tables and pages write the registry's model names (the CLI's options keep the registry's)
MODEL_NAMES = {
    "fusion": "Fusion",
    "mostpop": "MostPop",
    "itemknn": "ItemKNN",
    "bpr": "BPR-MF",
    "ease": "EASE",
    "lightgcn": "LightGCN",
    "content": "Content",
}


def model_name(name: str) -> str:
    """A model as the tables write it (MostPop, EASE); an unknown name as it is."""
    return MODEL_NAMES.get(name, name)


METRIC_COLUMNS = [
    ("recall@10", "Recall@10"),
    ("recall@20", "Recall@20"),
    ("ndcg@10", "NDCG@10"),
    ("ndcg@20", "NDCG@20"),
    ("hit@10", "Hit@10"),
    ("hit@20", "Hit@20"),
]


def metrics_table(metrics: dict[str, Any] | None) -> pd.DataFrame:
    """Test metrics of the model and its baselines (plus cold-start rows) as one table. A cross-validated
    run shows the mean over folds, with the standard deviation in ``± NDCG@20``."""
    if not metrics:
        return pd.DataFrame()
    rows = []
    model = metrics.get("model") or {}
    named = []
    if model.get("test"):
        named.append((f"{model_name(model.get('name', 'model'))} (this run)", model))
    named += list((metrics.get("baselines") or {}).items())
    kfold = metrics.get("kfold") or {}
    one_fold = single_fold(metrics)
    for name, result in named:
        folded = "test_std" in result and not one_fold
        row = {
            "Model": model_name(name),
            "Split": (
                f"test (fold 1 of {kfold.get('folds', '?')} only)"
                if one_fold
                else "test (mean of folds)"
                if folded
                else "test"
            ),
            **{label: result["test"].get(key) for key, label in METRIC_COLUMNS},
            "Fit time": result.get("fit_seconds"),
        }
        if folded:
            row["± NDCG@20"] = result["test_std"].get("ndcg@20")
        rows.append(row)
    for name, result in (metrics.get("cold_start") or {}).items():
        rows.append(
            {
                "Model": model_name(name),
                "Split": "cold-start items",
                **{label: result["test"].get(key) for key, label in METRIC_COLUMNS},
                "Fit time": result.get("fit_seconds"),
            }
        )
    return pd.DataFrame(rows)


def fold_table(metrics: dict[str, Any] | None, metric: str = "ndcg@20") -> pd.DataFrame:
    """One row per fold, one column per model: the test ``metric`` of each fold (empty unless k-fold)."""
    if not metrics or "kfold" not in metrics:
        return pd.DataFrame()
    model = metrics["model"]
    columns = {f"{model_name(model.get('name', 'model'))} (this run)": model.get("folds", [])}
    columns |= {model_name(name): result.get("folds", []) for name, result in metrics.get("baselines", {}).items()}
    n = min(len(v) for v in columns.values())
    return pd.DataFrame(
        {
            "Fold": list(range(1, n + 1)),
            **{name: [fold[metric] for fold in folds[:n]] for name, folds in columns.items()},
        }
    )


def paired_table(metrics: dict[str, Any] | None) -> pd.DataFrame:
    """The model minus each baseline over the same folds, with the 95 % interval and a plain verdict."""
    if not metrics or "kfold" not in metrics or single_fold(metrics):
        return pd.DataFrame()
    rows = []
    for name, by_metric in metrics["kfold"]["paired"].items():
        for metric, d in by_metric.items():
            verdict = (
                "clearly better"
                if d["clear_at_95"] and d["mean_difference"] > 0
                else "clearly worse"
                if d["clear_at_95"]
                else "within fold-to-fold noise"
            )
            # the verdict beside the difference, where a narrow window still shows it; the metrics' own
            # larger_than_fold_spread (|mean| above the model's fold-to-fold spread) stays out: a "yes" there
            # beside an interval holding 0 read as "clearly better"
            rows.append(
                {
                    "Against": model_name(name),
                    "Metric": metric,
                    "Mean difference": d["mean_difference"],
                    "Verdict": verdict,
                    "95 % interval": f"{d['interval_95'][0]:+.4f} to {d['interval_95'][1]:+.4f}",
                    "Folds better": f"{d['folds_better']} of {d['folds']}",
                }
            )
    return pd.DataFrame(rows)


def user_paired_verdict(d: dict[str, Any]) -> str:
    """A plain reading of one user-paired comparison (:func:`recsys.evaluate.paired_bootstrap`)."""
    if d["clear_at_95"]:
        return "clearly better" if d["mean_difference"] > 0 else "clearly worse"
    return "within the test users' noise"


def user_paired_table(metrics: dict[str, Any] | None) -> pd.DataFrame:
    """The model minus each baseline on the same test users of one split (P1, temporal, sparse): the mean
    difference and ratio, their 95 % bootstrap intervals over users, and a plain verdict (empty otherwise)."""
    if not metrics or "kfold" in metrics or not metrics.get("paired"):
        return pd.DataFrame()
    rows = []
    for name, by_metric in metrics["paired"].items():
        for metric, d in by_metric.items():
            rows.append(
                {
                    "Against": model_name(name),
                    "Metric": metric,
                    "Difference": d["mean_difference"],
                    "95 % interval": f"{d['interval_95'][0]:+.4f} to {d['interval_95'][1]:+.4f}",
                    "Ratio": f"x{d['ratio']:.3f} ({d['ratio_interval_95'][0]:.3f} to {d['ratio_interval_95'][1]:.3f})",
                    "Resamples ahead": f"{100 * d['share_of_resamples_ahead']:.0f} %",
                    "Users": d["users"],
                    "Verdict": user_paired_verdict(d),
                }
            )
    return pd.DataFrame(rows)
