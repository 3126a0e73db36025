"""Which behaviour prior should carry the fusion model on a catalogue too large for a full items x items EASE?

Two ways the fusion model's behaviour expert can scale to catalogues too large for one dense EASE
(``behaviour_prior``):

* ``capped EASE`` (``ease``, the default): EASE over the ``ease_max_items`` most interacted items (a dense A x A matrix, A fixed), the
  other items ordered by what their content predicts their behaviour column would be (the projection);
* ``cosine kNN`` (``cosine``): sparse item-item cosine neighbours over every item (``neighbours`` per item).

Both run here in one process on the same split (P1, seed 2026; choices on validation only, test read once per
model), beside the EASE (full, where it fits), ItemKNN and MostPop baselines, on

* a real bundle (``movielens-small-mm`` by default; its 9k items fit a full EASE, so the two are *forced*:
  ``ease_max_items`` at an eighth of the items for the cap, beside a full EASE), and
* a generated sparse catalogue (demo generator, no pictures: ``--items`` items, ``--interactions``
  interactions, 10 per user), EASE capped at ``--ease-cap`` items.

    python benchmarks/large_prior.py                                  # both, default sizes
    python benchmarks/large_prior.py --skip-real --items 30000 --interactions 300000
    python benchmarks/large_prior.py --json

Prints, per dataset, test Recall@20 / NDCG@20, valid NDCG@20, fit seconds and the share of items the behaviour
expert scores, and one JSON line with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from quality import SHARED, evaluate, fit_ours  # noqa: E402

from recsys.features.extract import extract_item_features  # noqa: E402
from recsys.train.data import prepare_data  # noqa: E402
from recsys.workspace import Workspace  # noqa: E402


def _prepared(workspace: Workspace, name: str, bundle_dir: Path) -> Any:
    if not workspace.has_dataset(name):
        result = workspace.import_bundle(bundle_dir, name=name)
        if not result.ok:
            raise SystemExit(result.report.format())
    bundle = workspace.load_dataset(name)
    features = extract_item_features(
        bundle.items, bundle.schema.items, bundle.root, workspace.features_dir, text_encoder="tfidf"
    )
    return prepare_data(
        bundle.interactions, item_features=features, catalogue_ids=bundle.items["item_id"].to_numpy(str)
    )


def _coverage(model: Any) -> float:
    """Share of the catalogue's items the behaviour expert scores."""
    return float((~model._behaviour_outside_mask()).float().mean())


def compare(prepared: Any, label: str, variants: dict[str, dict]) -> list[dict]:
    rows = []
    data = prepared.data
    n_items = data.train.shape[1]
    print(f"\n{label}: {data.train.shape[0]} users, {n_items} items, {data.train.nnz} train interactions", flush=True)
    for name, options in variants.items():
        model, seconds = fit_ours("fusion", prepared, device="cpu", **options)
        rows.append(
            {
                "dataset": label,
                "model": name,
                **evaluate(model.score, prepared),
                "fit_s": seconds,
                "coverage": _coverage(model),
            }
        )
        print(f"  {name:<34} done in {seconds:.1f} s", flush=True)
    # the EASE baseline is a full items x items EASE: it refuses catalogues above its max_items (20,000)
    baselines = (["ease"] if n_items <= 20_000 else []) + ["itemknn", "mostpop"]
    for key in baselines:
        name = {"ease": "EASE (all items)", "itemknn": "ItemKNN", "mostpop": "MostPop"}[key]
        model, seconds = fit_ours(key, prepared)
        rows.append(
            {"dataset": label, "model": name, **evaluate(model.score, prepared), "fit_s": seconds, "coverage": None}
        )
        print(f"  {name:<34} done in {seconds:.1f} s", flush=True)
    print(f"  {'model':<34} {'R@20':>7} {'NDCG@20':>8} {'valid':>7} {'fit s':>7} {'behaviour covers':>17}")
    for row in rows:
        cover = "" if row["coverage"] is None else f"{100 * row['coverage']:.1f} % items"
        print(
            f"  {row['model']:<34} {row['recall@20']:7.4f} {row['ndcg@20']:8.4f} {row['valid_ndcg@20']:7.4f} "
            f"{row['fit_s']:7.1f} {cover:>17}"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", default=None, help="a workspace to reuse (datasets and features cached)")
    parser.add_argument("--dataset", default="movielens-small-mm", help="the real bundle in ../shared/datasets")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--skip-generated", action="store_true")
    parser.add_argument("--items", type=int, default=30_000)
    parser.add_argument("--interactions", type=int, default=300_000)
    parser.add_argument("--ease-cap", type=int, default=5_000, help="ease_max_items of the capped variant")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    root = Path(args.workspace or tempfile.mkdtemp(prefix="large-prior-"))
    workspace = Workspace(root / "workspace")
    rows: list[dict] = []
    if not args.skip_real:
        prepared = _prepared(workspace, args.dataset, SHARED / args.dataset)
        # the real bundle fits a full EASE: both variants are forced, the cap at a fraction of its items
        cap = min(args.ease_cap, prepared.data.train.shape[1] // 8)
        variants = {
            f"fusion, capped EASE ({cap} items)": {"ease_max_items": cap},
            "fusion, cosine kNN (all items)": {"behaviour_prior": "cosine"},
            "fusion, full EASE": {"ease_max_items": 10**9},
        }
        rows += compare(prepared, args.dataset, variants)
    if not args.skip_generated:
        from scale import make_catalogue

        name = f"sparse-{args.items}"
        bundle_dir = root / name
        if not workspace.has_dataset(name):
            make_catalogue(bundle_dir, args.items, args.interactions, args.interactions // 10)
        started = time.perf_counter()
        prepared = _prepared(workspace, name, bundle_dir)
        print(f"{name}: imported and features in {time.perf_counter() - started:.1f} s", flush=True)
        variants = {
            f"fusion, capped EASE ({args.ease_cap} items)": {"ease_max_items": args.ease_cap},
            "fusion, cosine kNN (all items)": {"behaviour_prior": "cosine"},
        }
        rows += compare(prepared, name, variants)
    if args.json:
        print(json.dumps({"benchmark": "large_prior", "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
