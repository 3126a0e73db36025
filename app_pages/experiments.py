"""Experiments: every run with its configuration and metrics; compare runs, download or delete them."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages.common import (
    STATE_STYLE,
    chart,
    damaged_models_notice,
    empty_state,
    fairness_rankings,
    fmt_time,
    get_workspace,
    import_time,
    list_all_runs,
    md_text,
    metric_decimals,
    page_header,
    plain_error,
    privacy_retrain_panel,
    replaced_dataset_notice,
    run_label,
    run_name,
    run_page,
    show_error,
    style_figure,
)
from recsys.train.launch import RunBusyError, delete_run, model_zip
from recsys.train.records import ACTIVE_STATES, RunRecord
from recsys.train.report import model_name

COMPARED = [("ndcg@20", "NDCG@20"), ("recall@20", "Recall@20")]
MODEL_COLOURS = {
    "Fusion": "#4C6EF5",
    "MostPop": "#ADB5BD",
    "EASE": "#FAB005",
    "ItemKNN": "#12B886",
    "BPR-MF": "#E64980",
    "LightGCN": "#7950F2",
    "Content": "#868E96",
}


def short_labels(runs: list[RunRecord]) -> dict[str, str]:
    """Runs in a chart's legend and its pickers, by run id: as the pickers name them (:func:`run_label`) without
    the metrics the chart shows; two runs that would read the same (started in the same minute) get their run
    id after the label, so each names one run whatever its id looks like."""
    plain = {
        run.run_id: f"{run_name(run)} on {run.dataset or '?'} · "
        + (fmt_time(run.started) if run.started else run.run_id[:13])
        for run in runs
    }
    counts = Counter(plain.values())
    return {run_id: label if counts[label] == 1 else f"{label} ({run_id})" for run_id, label in plain.items()}


def config_value(value: Any) -> str:
    """An option's value as a reader writes it: lists as "a, b", absent as "–" (not Python's repr)."""
    if value is None:
        return "–"
    if isinstance(value, (list, tuple)):
        return ", ".join(config_value(v) for v in value) or "–"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {config_value(v)}" for k, v in value.items()) or "–"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def number_cell(value: Any) -> float:
    """A figure of the runs table as a number, NaN where there is none (a stopped run that was not evaluated):
    the table shows NaN as "–" (``MISSING_CELL``) and still sorts the column as numbers."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return number if np.isfinite(number) else float("nan")


MISSING_CELL = "–"


METRIC_COLUMNS = ("NDCG@20", "Recall@20", "NDCG@10", "Recall@10")


def runs_frame(runs: list[RunRecord]) -> pd.DataFrame:
    rows = []
    for run in runs:
        config = run.config
        metrics = run.metrics or {}
        test = run.test_metrics
        history = run.model_history
        best = run.best_baseline
        started, ended = run.started, run.ended
        fusion_model = run.model in ("fusion", "content")
        modalities = config.get("modalities") or []
        encoders = [
            e
            for e in (
                config.get("text_encoder") if "text" in modalities else None,
                config.get("image_encoder") if "image" in modalities else None,
            )
            if e
        ]
        rows.append(
            {
                "Started": fmt_time(started),
                "State": STATE_STYLE.get(run.state, STATE_STYLE["unknown"])[0],
                "Privacy": f"retrain: holds {run.forgotten_users} forgotten" if run.needs_retrain_for_privacy else "",
                "Dataset": run.dataset,
                "Model": model_name(run.model or "?"),
                "NDCG@20": number_cell(test.get("ndcg@20")),
                "Recall@20": number_cell(test.get("recall@20")),
                "Best baseline (NDCG@20)": f"{model_name(best[0])} {best[1]:.4f}"
                if best and best[1] is not None
                else "–",
                "Against it": run.verdict_against_best_baseline or "–",
                "Modalities": ", ".join(modalities) if fusion_model else "–",
                "Fusion": (run.fusion_option("fusion") or "–") if run.model == "fusion" else "–",
                "Protocol": protocol_name((metrics.get("split") or {}).get("protocol") or config.get("protocol"))
                + (f" ({run.partial_folds}: partial)" if run.partial_folds else ""),
                "Encoders": ", ".join(encoders) if fusion_model and encoders else "–",
                "Attribute columns": attribute_columns(history.get("attribute_weights")),
                "Rounds": f"{len(history.get('epochs') or [])} / {run.fusion_option('epochs')}"
                if run.model == "fusion" and history
                else "–",
                # a run still going shows its minutes so far
                "Minutes": number_cell(((ended or time.time()) - started - run.paused_seconds) / 60)
                if started and (ended or run.state in ACTIVE_STATES)
                else number_cell(None),
                "NDCG@10": number_cell(test.get("ndcg@10")),
                "Recall@10": number_cell(test.get("recall@10")),
                "Run": run.run_id,
            }
        )
    return pd.DataFrame(rows)


def attribute_columns(weights: dict[str, float] | None) -> str:
    """The attribute columns the fusion model listened to, and the ones whose values users' histories share
    no more than chance (weight 0): "category · ignored: brand, tags"."""
    if not weights:
        return "–"
    used = [name for name, weight in weights.items() if weight > 0]
    ignored = [name for name, weight in weights.items() if weight <= 0]
    text = " · ".join(f"{name}" if weights[name] >= 0.995 else f"{name} ({weights[name]:.0%})" for name in used)
    return text + (f" · ignored: {', '.join(ignored)}" if ignored else "")


def protocol_name(protocol: str | None) -> str:
    """A protocol as the other pages write it (P1, not p1)."""
    return "P1" if protocol == "p1" else (protocol or "–")


def comparison(runs: list[RunRecord]) -> None:
    with_metrics = [r for r in runs if r.has_test_metrics]
    st.markdown("#### :material/compare_arrows: Compare runs")
    if not with_metrics:
        empty_state(
            "No run has test metrics yet — they appear when a training finishes.", icon=":material/hourglass_empty:"
        )
        return
    labels = short_labels(with_metrics)
    ids = list(labels)
    picked = st.multiselect(
        "Runs",
        ids,
        default=ids[:3],
        key="exp_compare",
        format_func=labels.get,
        help="The model of each run beside the baselines trained with it, on the test split.",
    )
    if not picked:
        st.caption("Pick runs to compare.")
        return
    chosen = [next(r for r in with_metrics if r.run_id == run_id) for run_id in picked]
    # a metric is comparable only on the same data (the same import of it) and the same test split
    settings = {(r.dataset, (r.metrics.get("split") or {}).get("protocol"), r.dataset_imported_at) for r in chosen}
    if len(settings) > 1:
        imports = {(d, i) for d, _, i in settings}
        replaced = len(imports) > len({d for d, _ in imports})  # one dataset name, two imports

        def describe(dataset: str | None, protocol: str | None, imported: str | None) -> str:
            when = f", import of {import_time(imported)}" if replaced and imported else ""
            return f"{md_text(dataset or '?')} ({protocol_name(protocol)}{when})"

        described = "; ".join(sorted(describe(*s) for s in settings))
        st.caption(
            f":material/warning: These runs were tested on different data or protocols ({described}): their "
            "figures are not comparable across those groups, only within each."
        )
    rows = []
    for run_id in picked:
        run = next(r for r in with_metrics if r.run_id == run_id)
        metrics = run.metrics
        own = model_name(metrics["model"].get("name", "model"))
        entries = [(own, metrics["model"])]
        entries += [
            (model_name(name), result)
            for name, result in (metrics.get("baselines") or {}).items()
            if model_name(name) != own  # a baseline of the run's own kind: the run's model is the one shown
        ]
        for name, result in entries:
            for key, label in COMPARED:
                rows.append(
                    {
                        "run": labels[run_id],
                        "model": name,
                        "metric": label,
                        "value": (result.get("test") or {}).get(key),
                    }
                )
    frame = pd.DataFrame(rows).dropna(subset=["value"])
    # three decimals, or four where three would draw a gap between two values of one metric that rounding
    # made (0.70450 and 0.70446 labelled 0.705 and 0.704: a tie shown as a win)
    # (two such values are neighbours once a metric's values are sorted)
    decimals = max(
        [
            metric_decimals(a, b)
            for _, values in frame.groupby("metric")["value"]
            for a, b in zip(sorted(values), sorted(values)[1:])
        ]
        or [3]
    )
    fig = px.bar(
        frame,
        x="run",
        y="value",
        color="model",
        barmode="group",
        facet_col="metric",
        text_auto=f".{decimals}f",
        # one colour per kind of model in every run's group (it followed the order models appeared in)
        color_discrete_map=MODEL_COLOURS,
        labels={"value": "", "run": ""},
    )
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    fig.update_traces(textposition="outside", textfont_size=10)
    fig.update_yaxes(matches=None, showticklabels=True)
    style_figure(fig, height=400)
    fig.update_layout(legend=dict(orientation="v", x=1.01, xanchor="left", y=1, yanchor="top"), margin=dict(t=30))
    chart(fig, key="exp_compare_chart")

    configs = {labels[r]: next(x for x in with_metrics if x.run_id == r).flat_config for r in picked}
    options = sorted({k for c in configs.values() for k in c})
    table = pd.DataFrame(
        {label: [config_value(c.get(o)) for o in options] for label, c in configs.items()}, index=options
    )
    differing = table.nunique(axis=1) > 1
    # the options that differ first (highlighted), then the rest: alphabetical alone, the two that mattered were
    # somewhere in a scrolled table of every option
    order = list(table.index[differing]) + list(table.index[~differing])
    table, differing = table.loc[order], differing.loc[order]
    n_differ = int(differing.sum())
    differ = "no option differs" if n_differ == 0 else f"{n_differ} option{'s differ' if n_differ > 1 else ' differs'}"
    with st.expander(f"Configurations side by side ({differ})"):
        if n_differ:
            st.caption("The options that differ come first, highlighted.")
        st.dataframe(
            table.style.apply(
                lambda row: ["background-color: #EDF2FF" if differing[row.name] else "" for _ in row], axis=1
            ),
            width="stretch",
        )


def fairness(runs: list[RunRecord]) -> None:
    """Who gets exposure and whom the model serves well, on the selected run's test split (engine:
    :mod:`recsys.evaluate.fairness`); computed on demand, since it may refit the model on the train split."""
    from recsys.evaluate.fairness import fairness_report, item_group_columns, user_group_columns

    st.markdown("#### :material/balance: Fairness")
    usable = [r for r in runs if r.has_test_metrics and not r.active and r.has_model]
    if not usable:
        empty_state("No finished run with a model and test metrics yet.", icon=":material/hourglass_empty:")
        return
    labels = short_labels(usable)
    ids = list(labels)
    if st.session_state.get("exp_fair_run") not in ids:
        st.session_state.pop("exp_fair_run", None)
    run_id = st.selectbox(
        "Run",
        ids,
        key="exp_fair_run",
        format_func=labels.get,
        help="The report ranks the catalogue for every test user, as the evaluation did.",
    )
    run = usable[ids.index(run_id)]
    replaced_dataset_notice(
        run,
        "This report rebuilds the test split from the current import, so its users, items and NDCG are not the "
        "ones the run was measured on (its stored test metrics are of the earlier data). Train again to compare "
        "like with like.",
    )
    try:
        bundle = get_workspace().load_dataset(run.dataset)
    except Exception as exc:
        st.warning(f"**The run's dataset cannot be read.** {md_text(plain_error(exc))}.", icon=":material/warning:")
        return
    item_columns, user_columns = item_group_columns(bundle), user_group_columns(bundle)
    if not item_columns:
        st.info("This dataset has no categorical item column to group items by.", icon=":material/info:")
        return
    cols = st.columns(3)
    item_column = cols[0].selectbox("Group items by", item_columns, key="exp_fair_items")
    user_column = cols[1].selectbox(
        "Group users by (besides history length)",
        [None, *user_columns],
        index=1 if user_columns else 0,  # a users table with a group column is what this report is for
        key="exp_fair_users",
        format_func=lambda c: "—" if c is None else c,
    )
    k = int(cols[2].number_input("List length K", min_value=1, max_value=100, value=20, key="exp_fair_k"))
    computed = st.session_state.get("exp_fair_done") == (run_id, k)
    if not computed:
        if not st.button("Compute the fairness report", icon=":material/balance:", key="exp_fair_go"):
            st.caption(
                "Ranks the catalogue for every test user of the run (and refits the model on the train split "
                "when the saved one was refitted on everything)."
            )
            return
        st.session_state["exp_fair_done"] = (run_id, k)
    try:
        rankings = fairness_rankings(run, k)
        report = fairness_report(rankings, bundle, item_column, user_column)
    except Exception as exc:
        show_error("The fairness report could not be computed", exc)
        return
    metric = st.columns(4)
    metric[0].metric(
        f"NDCG@{k}",
        f"{report.ndcg:.4f}",
        help=f"{report.n_users:,} test users; model "
        f"{report.model_source}" + (f" (stored: {report.stored_ndcg:.4f})" if report.stored_ndcg else ""),
    )
    metric[1].metric(
        "Gini of item exposure",
        f"{report.gini:.3f}",
        help=f"0 = every item shown equally often; {report.items_recommended:,} of {report.n_items:,} "
        "items recommended at least once",
    )
    metric[2].metric(
        "Popularity percentile",
        f"{report.popularity['recommended']:.3f}",
        f"{report.popularity['lift']:+.3f} vs history",
        delta_color="off",
        help="Mean popularity percentile of recommended items (0 = least, 1 = most popular), against "
        "that of the users' history items",
    )
    metric[3].metric(
        "Calibration (KL)",
        f"{report.calibration_kl:.3f}",
        help="Mean KL divergence of each list's group mix from the user's history mix (0 = the same)",
    )
    groups = pd.DataFrame(
        [
            {
                "Group": g.group,
                "Items": g.items,
                "Catalogue share": g.catalogue_share,
                "Interaction share": g.interaction_share,
                "Exposure share": g.exposure_share,
                "Exposure / catalogue": g.exposure_ratio,
            }
            for g in report.groups
        ]
    )
    groups = groups.sort_values("Exposure share", ascending=False, kind="stable")
    shown = groups.head(25)
    long = shown.melt(
        id_vars="Group",
        value_vars=["Exposure share", "Catalogue share", "Interaction share"],
        var_name="share",
        value_name="value",
    )
    fig = px.bar(
        long,
        x="Group",
        y="value",
        color="share",
        barmode="group",
        labels={"value": "", "Group": ""},
        color_discrete_sequence=["#4C6EF5", "#ADB5BD", "#FAB005"],
    )
    style_figure(
        fig,
        height=380,
        title=f"Top-{k} exposure against the catalogue, by {item_column}"
        + (f" (the {len(shown)} most exposed of {len(groups)})" if len(groups) > len(shown) else ""),
    )
    chart(fig, key="exp_fair_exposure")
    share = st.column_config.NumberColumn(format="%.3f")
    st.dataframe(
        groups,
        hide_index=True,
        width="stretch",
        column_config={c: share for c in groups.columns if c not in ("Group", "Items")},
    )
    for name, gap in report.user_groups.items():
        frame = pd.DataFrame(
            [
                {"Group": g.group, "Users": g.n_users, f"NDCG@{k}": g.ndcg, "Low (95 %)": g.low, "High (95 %)": g.high}
                for g in gap.groups
            ]
        )
        fig = px.bar(
            frame,
            x="Group",
            y=f"NDCG@{k}",
            error_y=frame["High (95 %)"] - frame[f"NDCG@{k}"],
            error_y_minus=frame[f"NDCG@{k}"] - frame["Low (95 %)"],
            labels={"Group": ""},
            color_discrete_sequence=["#4C6EF5"],
        )
        style_figure(fig, height=320, legend=False, title=f"NDCG@{k} by {gap.by}")
        chart(fig, key=f"exp_fair_users_{name}")
        if gap.best is not None:
            verdict = gap.verdict
            st.caption(
                f"Gap {md_text(gap.best)} − {md_text(gap.worst)}: {gap.gap:+.4f} (95 % interval "
                f"{gap.gap_low:+.4f} to {gap.gap_high:+.4f}, {gap.n_boot} bootstrap resamples of the users): "
                f"{verdict}."
                + (
                    f" Groups of fewer than {gap.min_users} users are left out of the gap."
                    if any(g.n_users < gap.min_users for g in gap.groups)
                    else ""
                )
            )
        st.dataframe(
            frame,
            hide_index=True,
            width="stretch",
            column_config={
                c: st.column_config.NumberColumn(format="%.4f") for c in (f"NDCG@{k}", "Low (95 %)", "High (95 %)")
            },
        )


def manage(runs: list[RunRecord]) -> None:
    st.markdown("#### :material/folder_managed: Download or delete a run")
    ids = [r.run_id for r in runs]
    if st.session_state.get("exp_run") not in ids:
        st.session_state.pop("exp_run", None)
    labels = {r.run_id: run_label(r) for r in runs}
    run_id = st.selectbox("Run", ids, key="exp_run", format_func=lambda i: f"{labels[i]} · {i}")
    run = runs[ids.index(run_id)]
    cols = st.columns([1, 1, 2], vertical_alignment="center")
    if run.has_model:
        cols[0].download_button(
            "Download the model (.zip)",
            data=lambda: model_zip(run.path),
            file_name=f"{run_id}-model.zip",
            mime="application/zip",
            icon=":material/download:",
            key="exp_download",
            width="stretch",
        )
    else:
        cols[0].caption("This run has no saved model to download.")
    busy = run.active
    if cols[1].button("Delete run", icon=":material/delete:", key="exp_delete", disabled=busy, width="stretch"):
        st.session_state["exp_confirm_delete"] = run_id
    if busy:
        cols[2].caption(":material/info: This run is still training: stop it on the Train page before deleting it.")
    if st.session_state.get("exp_confirm_delete") == run_id:
        with st.container(border=True):
            st.warning(
                f"Delete run **{md_text(run_label(run, with_state=False))}** ({md_text(run_id)}) — its model, "
                "metrics and logs — for good?",
                icon=":material/delete:",
            )
            confirm = st.columns([1, 1, 3])
            if confirm[0].button("Yes, delete it", type="primary", key="exp_delete_yes", width="stretch"):
                try:
                    delete_run(get_workspace(), run_id)
                except RunBusyError as exc:
                    st.session_state.pop("exp_confirm_delete", None)
                    st.error(f"**Not deleted**: {exc}.", icon=":material/block:")
                    return
                except Exception as exc:
                    show_error("The run could not be deleted", exc)
                    return
                st.session_state.pop("exp_confirm_delete", None)
                st.session_state["exp_deleted"] = run_id
                st.rerun()
            if confirm[1].button("Cancel", key="exp_delete_no", width="stretch"):
                st.session_state.pop("exp_confirm_delete", None)
                st.rerun()


def main() -> None:
    page_header(
        "Experiments",
        "Every training run with its configuration and held-out test metrics, beside the baselines trained with it.",
    )
    deleted = st.session_state.pop("exp_deleted", None)
    if deleted:
        st.success(f"Deleted run {deleted}.", icon=":material/check_circle:")
    runs = list_all_runs()
    if not runs:
        empty_state("No runs yet — train a model on the Train page.", page="train", label="Train a model")
        return
    privacy_retrain_panel("exp")
    damaged_models_notice()
    table = runs_frame(runs)
    if not table["Privacy"].any():  # a column of blanks only widens the table
        table = table.drop(columns="Privacy")
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        placeholder=MISSING_CELL,  # a figure a run never measured, not "None"
        column_config={
            **{name: st.column_config.NumberColumn(name, format="%.4f") for name in METRIC_COLUMNS},
            "Minutes": st.column_config.NumberColumn("Minutes", format="%.1f"),
            # the table is wider than most windows: when and which model stay in view as it scrolls sideways
            "Started": st.column_config.TextColumn("Started", pinned=True),
            "Model": st.column_config.TextColumn("Model", pinned=True),
            "Run": st.column_config.TextColumn("Run id"),
            "Against it": st.column_config.TextColumn(
                "Against it",
                help="Whether the model's NDCG@20 differs from the best baseline's by more than the noise: the 95 % "
                "interval of the difference (bootstrap over the test users, or paired over folds under k-fold) "
                "excludes 0.",
            ),
        },
    )
    comparison(runs)
    fairness(runs)
    manage(runs)


run_page(main)
