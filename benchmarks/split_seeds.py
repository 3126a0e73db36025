"""The fusion model against EASE (L2 chosen on valid) over several P1 splits: how much of one split's ratio is
that split's luck.

``benchmarks/quality.py`` reads one split (seed 2026). On a small dataset (amazon-giftcards: ~600 test users)
one split's test NDCG@20 ratio moves by several per cent with the users who happen to land in test, so
this script redraws the split with ``--seeds`` seeds and fits both models on each: per seed the valid and
test NDCG@20 of each model and the test ratio; then the mean ratio, the ratio of the means, how many
splits the fusion model is ahead on, and whether validation (what a user would choose by) agreed with
test on each split. Choices inside each fit (EASE's L2, the fusion model's calibration) use that split's
validation only; test is read once per model and split. The splits redraw the same log, so they are not
independent samples: the standard error over splits understates the uncertainty (read it as a lower bound).

    python benchmarks/split_seeds.py [--dataset NAME | --bundle DIR] [--workspace DIR] [--seeds 2026 2027 ...]
        [--fusion OPTION=VALUE ...] [--json]

The last line with ``--json`` is a JSON object with every split's figures and the summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from quality import DATASET, evaluate, fit_ours, load  # noqa: E402

from recsys.train.data import prepare_data  # noqa: E402
from recsys.workspace import Workspace  # noqa: E402

DEFAULT_SEEDS = (2026, 2027, 2028, 2029, 2030)


def one_split(bundle: Any, features: Any, seed: int, options: dict[str, Any] | None = None) -> dict[str, Any]:
    catalogue = bundle.items["item_id"].to_numpy(str)
    prepared = prepare_data(bundle.interactions, seed=seed, item_features=features, catalogue_ids=catalogue)
    row: dict[str, Any] = {"seed": seed, "test_users": int((prepared.test.getnnz(axis=1) > 0).sum())}
    for name in ("fusion", "ease"):
        model, seconds = fit_ours(name, prepared, **((options or {}) if name == "fusion" else {}))
        result = evaluate(model.score, prepared)
        row[name] = {"valid_ndcg@20": result["valid_ndcg@20"], "test_ndcg@20": result["ndcg@20"], "fit_s": seconds}
    row["test_ratio"] = row["fusion"]["test_ndcg@20"] / max(row["ease"]["test_ndcg@20"], 1e-12)
    row["valid_ratio"] = row["fusion"]["valid_ndcg@20"] / max(row["ease"]["valid_ndcg@20"], 1e-12)
    return row


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = [r["test_ratio"] for r in rows]
    mean = statistics.fmean(ratios)
    spread = statistics.stdev(ratios) / len(ratios) ** 0.5 if len(ratios) > 1 else float("nan")
    return {
        "splits": len(rows),
        "mean_test_ratio": mean,
        "standard_error": spread,
        "ratio_of_mean_test_ndcg": statistics.fmean(r["fusion"]["test_ndcg@20"] for r in rows)
        / max(statistics.fmean(r["ease"]["test_ndcg@20"] for r in rows), 1e-12),
        "fusion_ahead_on_test": sum(r > 1 for r in ratios),
        "valid_agrees_with_test": sum((r["valid_ratio"] > 1) == (r["test_ratio"] > 1) for r in rows),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=DATASET, help="a bundle under shared/datasets (default: %(default)s)")
    parser.add_argument("--bundle", type=Path, default=None, help="a bundle directory anywhere")
    parser.add_argument("--workspace", default=str(REPO_ROOT / "workspace"))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument(
        "--fusion", action="append", default=[], metavar="OPTION=VALUE", help="a fusion option (JSON value), repeatable"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    options = {key: json.loads(value) for key, value in (option.split("=", 1) for option in args.fusion)}

    if args.bundle is not None:
        args.dataset = args.bundle.name
    bundle, features = load(Workspace(args.workspace), args.dataset, args.bundle)
    rows = []
    print(
        f"{'seed':>6} {'test users':>10} {'fusion valid':>12} {'EASE valid':>10} {'fusion test':>11} "
        f"{'EASE test':>9} {'test ratio':>10}"
    )
    for seed in args.seeds:
        row = one_split(bundle, features, seed, options)
        rows.append(row)
        print(
            f"{seed:>6} {row['test_users']:>10} {row['fusion']['valid_ndcg@20']:>12.4f} "
            f"{row['ease']['valid_ndcg@20']:>10.4f} {row['fusion']['test_ndcg@20']:>11.4f} "
            f"{row['ease']['test_ndcg@20']:>9.4f} {row['test_ratio']:>9.3f}x",
            flush=True,
        )
    result = summary(rows)
    print(
        f"\n{args.dataset}: mean test ratio {result['mean_test_ratio']:.3f}x (standard error "
        f"{result['standard_error']:.3f}) over {result['splits']} splits; ratio of the mean NDCG@20 "
        f"{result['ratio_of_mean_test_ndcg']:.3f}x; fusion ahead on {result['fusion_ahead_on_test']} of "
        f"{result['splits']}; validation agreed with test on {result['valid_agrees_with_test']}"
    )
    if args.json:
        print(json.dumps({"dataset": args.dataset, "fusion_options": options, "splits": rows, "summary": result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
