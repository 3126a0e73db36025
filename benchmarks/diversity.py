"""Accuracy against diversity: MMR re-ranking at several weights on movielens-small-mm (P1 test split).

    python benchmarks/diversity.py [--workspace /tmp/mlws] [--data movielens-small-mm] [--run RUN_ID]
                                   [--epochs 15] [--weights 0 0.1 0.2 0.3 0.5 0.7] [--k 20] [--json]

Uses the fusion run ``--run`` of the workspace (trained first with ``--epochs`` when it does not
exist). For each diversity weight, every test user's top ``k`` (train items masked, valid items
excluded) is re-ranked by MMR over the model's item vectors (mean of the item's modality tokens,
``recsys.explain.item_vectors``) from a pool of ``max(5k, 50)`` best-scored items, and the table
reports NDCG@k / Recall@k, intra-list diversity in the model's space (ILD) and in genre space
(ILD genres: 1 - cosine of multi-hot genres, a model-independent view), novelty (mean -log2 p(i)),
catalogue coverage and long-tail share (items outside the 20 % most popular). With ``--json`` the
last line printed is one JSON object with every number.
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

DATASETS = REPO_ROOT.parent / "shared" / "datasets"


def ensure_run(workspace, data: str, run_id: str, epochs: int, text_encoder: str | None = None):
    """(run folder, model, bundle, run config dict): the run is trained first when it is missing.

    The run keeps the model fitted on the P1 split (no final refit): the figures below are measured on P1's
    test items, which a model refitted on every interaction has trained on. A run that holds such a model
    is refused."""
    import json

    from recsys.explain.commands import load_run
    from recsys.features.registry import DEFAULT_TEXT_ENCODER
    from recsys.train.run import RunConfig, train_run

    text_encoder = text_encoder or DEFAULT_TEXT_ENCODER
    dataset = data
    if Path(data).exists():
        name = Path(data).name
        if not workspace.has_dataset(name):
            imported = workspace.import_bundle(data, name=name)
            if not imported.ok:
                raise SystemExit(imported.report.format())
        dataset = name
    if not (workspace.runs_dir / run_id / "model" / "config.json").is_file():
        print(f"training run {run_id} on {dataset} ({epochs} epochs)...", file=sys.stderr)
        train_run(
            workspace,
            RunConfig(
                dataset=dataset,
                fusion_options={"epochs": epochs},
                baselines=["mostpop"],
                text_encoder=text_encoder,
                final_model=False,
            ),
            run_id=run_id,
        )
    metrics = workspace.runs_dir / run_id / "metrics.json"
    if metrics.is_file() and "final_model" in json.loads(metrics.read_text(encoding="utf-8")):
        raise SystemExit(
            f"run {run_id} holds a model refitted on every interaction, test items included: its P1 test "
            "figures would be measured on what it trained on. Pass another --run (it is trained without a "
            "final refit)."
        )
    return load_run(workspace, run_id)


def prepared_split(bundle, config, features=None, protocol="p1"):
    from recsys.train.data import prepare_data

    schema = bundle.schema
    return prepare_data(
        bundle.interactions,
        protocol=protocol,
        seed=config["seed"],
        k_core=config["k_core"],
        rating_column=schema.rating_column,
        item_features=features,
        catalogue_ids=bundle.items["item_id"].to_numpy(str),
    )


def genre_vectors(bundle, item_ids):
    """Multi-hot rows of the first genre-like label column, aligned with ``item_ids`` (or None)."""
    import numpy as np

    roles = bundle.schema.items
    columns = [c for c, r in roles.items() if r in ("multi_label", "categorical") and c in bundle.items.columns]
    if not columns:
        return None, None
    column = next((c for c in columns if "genre" in c.lower() or "categor" in c.lower()), columns[0])
    items = bundle.items.assign(item_id=bundle.items["item_id"].astype(str)).drop_duplicates("item_id")
    cells = items.set_index("item_id")[column].reindex(item_ids).astype("string").fillna("")
    separator = bundle.schema.multi_label_separator
    labels = [
        set(filter(None, (p.strip() for p in v.split(separator))))
        if roles[column] == "multi_label"
        else ({v.strip()} if v.strip() else set())
        for v in cells
    ]
    vocab = sorted(set().union(*labels))
    index = {v: i for i, v in enumerate(vocab)}
    matrix = np.zeros((len(item_ids), len(vocab)), dtype=np.float32)
    for row, values in enumerate(labels):
        for value in values:
            matrix[row, index[value]] = 1.0
    return column, matrix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", default="/tmp/mlws")
    parser.add_argument("--data", default="movielens-small-mm", help="dataset name in the workspace or a bundle path")
    parser.add_argument("--run", default="explain-ml-fusion", help="run id (trained when missing)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.5, 0.7])
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import numpy as np

    from recsys.evaluate.metrics import ndcg_at_k, recall_at_k
    from recsys.explain.evidence import item_vectors
    from recsys.models.rerank import beyond_accuracy, intra_list_diversity, rerank_users
    from recsys.workspace import Workspace

    data = args.data
    if not Path(data).exists() and (DATASETS / data).is_dir() and not Workspace(args.workspace).has_dataset(data):
        data = str(DATASETS / data)
    workspace = Workspace(args.workspace)
    run_dir, model, bundle, config = ensure_run(workspace, data, args.run, args.epochs)
    prepared = prepared_split(bundle, config)
    if list(prepared.data.item_ids) != list(model.item_ids):
        raise SystemExit("the split's items differ from the model's: was the run trained on another protocol?")
    test = prepared.test.tocsr()
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    vectors = item_vectors(model)
    genre_column, genres = genre_vectors(bundle, list(model.item_ids))
    rows = []
    for weight in args.weights:
        started = time.perf_counter()
        lists = rerank_users(model, users, args.k, vectors, weight, exclude=prepared.valid)
        relevant = test[users]
        row = {
            "diversity": weight,
            f"ndcg@{args.k}": float(np.nanmean(ndcg_at_k(lists, relevant, args.k))),
            f"recall@{args.k}": float(np.nanmean(recall_at_k(lists, relevant, args.k))),
            **beyond_accuracy(lists, prepared.data.train, vectors),
        }
        if genres is not None:
            row["ild_genres"] = intra_list_diversity(lists, genres)
        row["seconds"] = round(time.perf_counter() - started, 2)
        rows.append(row)
        print(
            f"diversity {weight:.1f}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "diversity"),
            file=sys.stderr,
        )

    print(
        f"\nMMR trade-off on {config['dataset']} (run {run_dir.name}, {len(users)} test users, top {args.k}; "
        f"ILD genres over '{genre_column}')"
    )
    head = (
        f"{'weight':>6} {'NDCG@' + str(args.k):>8} {'Recall':>7} {'ILD':>6} {'ILD gen':>7} {'novelty':>7} "
        f"{'coverage':>8} {'long-tail':>9}"
    )
    print(head)
    for row in rows:
        print(
            f"{row['diversity']:>6.1f} {row[f'ndcg@{args.k}']:>8.4f} {row[f'recall@{args.k}']:>7.4f} "
            f"{row['ild']:>6.3f} {row.get('ild_genres', float('nan')):>7.3f} {row['novelty']:>7.2f} "
            f"{row['coverage']:>8.3f} {row['long_tail']:>9.3f}"
        )
    if args.json:
        print(
            json.dumps(
                {
                    "run_id": run_dir.name,
                    "dataset": config["dataset"],
                    "k": args.k,
                    "users": int(len(users)),
                    "genre_column": genre_column,
                    "rows": rows,
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
