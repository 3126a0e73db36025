"""Explanations and cold start on movielens-small-mm: faithfulness, cold-start P1, short histories.

    python benchmarks/explanations.py [--workspace /tmp/mlws] [--data movielens-small-mm] [--run RUN_ID]
                                      [--epochs 15] [--skip-cold] [--json]

1. Faithfulness of the modality shares (``recsys.explain.faithfulness_check``): for every user's
   top 10, mask the largest-share and the smallest-share modality; the rate is the share of pairs
   where masking the largest lowers the score more.
2. Example explanations (the plain sentence) for a few users.
3. Cold start, protocol P1 (10 % of items held out entirely, ranked among themselves for the users
   who have them): fusion (same options as the run) against mostpop, bpr and content.
4. Known users by history length (P1 test split, the run's model and a mostpop reference), and the
   new-user path with 1, 2 and 3 liked items (``evaluate_short_histories``).

The run ``--run`` is trained first (``--epochs``) when it does not exist. Features come from the
workspace cache. With ``--json`` the last line printed is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.diversity import DATASETS, ensure_run, prepared_split  # noqa: E402

METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def _row(name: str, metrics: dict) -> str:
    return (
        f"{name:<14} "
        + " ".join(f"{metrics.get(m, float('nan')):>9.4f}" for m in METRICS)
        + f" {metrics.get('users', metrics.get('n_users_evaluated', 0)):>6}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", default="/tmp/mlws")
    parser.add_argument("--data", default="movielens-small-mm")
    parser.add_argument("--run", default="explain-ml-fusion")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--cold-baselines", nargs="*", default=["mostpop", "bpr", "content"])
    parser.add_argument("--skip-cold", action="store_true", help="skip the cold-start fits")
    parser.add_argument("--short-users", type=int, default=300, help="users per short-history length")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import numpy as np

    from recsys.explain import ExplainContext, explain, faithfulness_check
    from recsys.explain.coldstart import evaluate_by_history_length, evaluate_cold_start, evaluate_short_histories
    from recsys.features import extract_item_features
    from recsys.models import get_model
    from recsys.workspace import Workspace

    data = args.data
    workspace = Workspace(args.workspace)
    if not Path(data).exists() and not workspace.has_dataset(data) and (DATASETS / data).is_dir():
        data = str(DATASETS / data)
    run_dir, model, bundle, config = ensure_run(workspace, data, args.run, args.epochs)
    out: dict = {"run_id": run_dir.name, "dataset": config["dataset"]}

    # 1. faithfulness
    started = time.perf_counter()
    faith = faithfulness_check(model, k=10, max_users=None)
    faith["seconds"] = round(time.perf_counter() - started, 2)
    out["faithfulness"] = faith
    print(
        f"faithfulness: masking the largest share lowers the score more in {faith['rate']:.1%} of "
        f"{faith['pairs']} (user, top-10 item) pairs ({faith['skipped']} single-modality items skipped); "
        f"mean drop {faith['mean_drop_largest']:.3f} vs {faith['mean_drop_smallest']:.3f}"
    )
    for modality, part in faith["by_largest"].items():
        if part["pairs"]:
            print(f"  largest share = {modality:<11} {part['pairs']:>6} pairs, rate {part['rate']:.1%}")

    # 2. examples
    context = ExplainContext.from_bundle(model, bundle)
    examples = []
    for row in (0, model.n_users // 2, model.n_users - 1):
        item, _ = model.recommend(row, k=1)[0]
        explanation = explain(model, row, item, context=context)
        examples.append({"user": explanation.user_id, "item": explanation.title, "sentence": explanation.sentence})
        print(f"  user {explanation.user_id} -> {explanation.title}: {explanation.sentence}")
    out["examples"] = examples

    # 3. cold start (P1 cold protocol)
    features = extract_item_features(
        bundle.items,
        bundle.schema.items,
        bundle.root,
        workspace.features_dir,
        text_encoder=config["text_encoder"],
        image_encoder=config["image_encoder"],
        modalities=tuple(m for m in ("text", "image", "attributes") if m in config["modalities"]),
    )
    if not args.skip_cold:
        cold = prepared_split(bundle, config, features, protocol="cold")
        from recsys.train.run import RunConfig

        options = RunConfig.from_dict(config).model_options()
        fitted, seconds = {}, {}
        for name in ["fusion", *args.cold_baselines]:
            started = time.perf_counter()
            fitted[name] = get_model(name, **(options if name == "fusion" else {})).fit(cold.data)
            seconds[name] = round(time.perf_counter() - started, 1)
            print(f"  cold start: fitted {name} in {seconds[name]} s", file=sys.stderr)
        results = evaluate_cold_start(fitted, cold)
        out["cold_start"] = {"split": cold.summary, "results": results, "fit_seconds": seconds}
        print(
            f"\ncold start (P1: {cold.summary['cold_items']} held-out items, {cold.summary['cold_test']} interactions)"
        )
        print(f"{'model':<14} " + " ".join(f"{m:>9}" for m in METRICS) + f" {'users':>6}")
        for name, metrics in results.items():
            print(_row(name, metrics))

    # 4. history length (P1)
    prepared = prepared_split(bundle, config, None)
    train, test, valid = prepared.data.train, prepared.test, prepared.valid
    popular = get_model("mostpop").fit(prepared.data)
    buckets = ((1, 3), (4, 10), (11, 30), (31, 100), (101, None))
    out["by_history_length"] = {
        "fusion": evaluate_by_history_length(model, train, test, exclude=valid, buckets=buckets),
        "mostpop": evaluate_by_history_length(popular, train, test, exclude=valid, buckets=buckets),
    }
    print("\nknown users by number of training items (P1 test)")
    print(f"{'bucket':<14} " + " ".join(f"{m:>9}" for m in METRICS) + f" {'users':>6}")
    for name, rows in out["by_history_length"].items():
        for row in rows:
            print(_row(f"{name} {row['bucket']}", row))
    out["short_histories"] = {
        name: evaluate_short_histories(m, train, test, exclude=valid, lengths=(1, 2, 3), max_users=args.short_users)
        for name, m in (("fusion", model), ("mostpop", popular))
    }
    print(f"\nnew-user path: users reduced to n liked items (up to {args.short_users} users, P1 test items)")
    for name, rows in out["short_histories"].items():
        for row in rows:
            print(_row(f"{name} n={row['history_items']}", row))
    if args.json:
        print(json.dumps(out, default=lambda v: v.item() if isinstance(v, np.generic) else str(v)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
