"""Our baselines against a peer library (Cornac) on the same P1 split of movielens-small-mm.

Every model is fitted on the P1 train split and evaluated with our own full-ranking evaluator:
valid NDCG@20 (train items masked) for model selection, test Recall/NDCG@10/20 (train and valid
items masked) for the table. Cornac's models get the train triplets through
``cornac.data.Dataset.from_uir`` with our integer indices as ids; their internal order is mapped
back to ours before scoring, and items Cornac never saw score below every item it knows.

    python benchmarks/peers.py                       # all models
    python benchmarks/peers.py --models ease cornac-ease --json
    python benchmarks/peers.py --models bpr --set bpr.lr=0.01 --set bpr.dim=128
    python benchmarks/peers.py --threads 1            # on a busy shared CPU: far faster for these small models

Tune on the valid column only; the test columns are for the table.

Needs the peer library pinned in requirements-bench.txt (``pip install -r requirements-bench.txt``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from recsys.evaluate import build_index, evaluate_ranking, interactions_to_csr, prepare_p1  # noqa: E402
from recsys.models import TrainData, get_model  # noqa: E402

SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"
OURS = ("mostpop", "itemknn", "ease", "bpr", "lightgcn")
PEERS = ("cornac-bpr", "cornac-ease")
ALL_MODELS = OURS + PEERS

# Cornac's settings, chosen on the P1 *valid* split (valid NDCG@20 in brackets):
# EASE: lamb 250 (.2246; its default 500: .2236) with its default posB=True (drop negative weights);
#   posB=False gives exactly our EASE (lamb 100: .2392 for both), which checks the index mapping.
# BPR: its defaults (k=10, 100 epochs, lr 0.001: .1141) underfit; k=64/300 epochs/lr 0.01 .1905,
#   lr 0.05 .2009; k=64/1000/0.05 .2020; k=128/1000/0.05/lambda 0.01 .2052 (kept); lr 0.1 .1880.
CORNAC_CONFIG: dict[str, dict[str, Any]] = {
    "cornac-ease": {"lamb": 250.0, "posB": True},
    "cornac-bpr": {"k": 128, "max_iter": 1000, "learning_rate": 0.05, "lambda_reg": 0.01},
}


def load_p1(dataset: str = "movielens-small-mm") -> dict[str, Any]:
    """P1 split of a shared dataset as csr matrices over one user / item index, plus a TrainData."""
    path = SHARED_DATASETS / dataset / "interactions.csv"
    if not path.is_file():
        raise SystemExit(f"dataset not found: {path} (shared/ must sit beside the repository)")
    frame = pd.read_csv(path)
    p1 = prepare_p1(frame)
    user_index = build_index(p1["interactions"]["user_id"])
    item_index = build_index(p1["interactions"]["item_id"])
    mats = {
        part: interactions_to_csr(p1[part], user_index, item_index, drop_unknown=False)
        for part in ("train", "valid", "test")
    }
    data = TrainData(
        user_ids=np.array(list(user_index)),
        item_ids=np.array(list(item_index)),
        train=mats["train"],
        valid=mats["valid"],
    )
    return {"p1": p1, "user_index": user_index, "item_index": item_index, "data": data, **mats}


class CornacRunner:
    """Fits a Cornac model on our train split and scores in our index order."""

    def __init__(self, name: str, config: dict[str, Any], seed: int = 2026):
        self.name, self.config, self.seed = name, dict(config), seed
        self.fit_seconds: float | None = None

    def fit(self, train: sp.csr_matrix) -> CornacRunner:
        import cornac
        from cornac.data import Dataset

        coo = train.tocoo()
        triplets = list(zip(coo.row.astype(str), coo.col.astype(str), np.ones(coo.nnz)))
        dataset = Dataset.from_uir(triplets, seed=self.seed)
        n_users, n_items = train.shape
        # cornac index -> our index
        self.user_rows = np.full(n_users, -1, dtype=np.int64)  # our user -> cornac user (-1: unknown)
        for raw, idx in dataset.uid_map.items():
            self.user_rows[int(raw)] = idx
        self.item_cols = np.empty(len(dataset.iid_map), dtype=np.int64)  # cornac item -> our item
        for raw, idx in dataset.iid_map.items():
            self.item_cols[idx] = int(raw)
        self.n_items = n_items
        if self.name == "cornac-ease":
            model = cornac.models.EASE(verbose=False, seed=self.seed, **self.config)
        elif self.name == "cornac-bpr":
            model = cornac.models.BPR(verbose=False, seed=self.seed, **self.config)
        else:
            raise ValueError(f"unknown peer model {self.name}")
        start = time.perf_counter()
        model.fit(dataset)
        self.fit_seconds = time.perf_counter() - start
        self.model = model
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        out = np.zeros((len(users), self.n_items), dtype=np.float32)
        for row, user in enumerate(np.asarray(users, dtype=np.int64)):
            cu = self.user_rows[user]
            if cu < 0:
                continue
            known = np.asarray(self.model.score(int(cu)), dtype=np.float32).ravel()
            floor = known.min() - 1.0
            out[row] = floor  # items Cornac never saw: below all it knows
            out[row, self.item_cols] = known
        return out


def parse_overrides(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """``["bpr.lr=0.01", "ease.l2=250"]`` -> ``{"bpr": {"lr": 0.01}, "ease": {"l2": 250}}`` (values as JSON)."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        model, _, option = key.partition(".")
        if not option or not _:
            raise SystemExit(f"--set expects model.option=value, got {pair!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(model, {})[option] = parsed
    return out


def run_model(name: str, split: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    train, valid, test = split["train"], split["valid"], split["test"]
    if name in PEERS:
        runner = CornacRunner(name, CORNAC_CONFIG[name] | overrides).fit(train)
        score: Callable[[np.ndarray], np.ndarray] = runner.score
        fit_seconds, config = runner.fit_seconds, runner.config
    else:
        model = get_model(name, **overrides)
        model.fit(split["data"])
        score, fit_seconds, config = model.score, model.fit_seconds, dict(model.config)
        if getattr(model, "best_epoch", None) is not None:
            config["best_epoch"] = model.best_epoch
    valid_res = evaluate_ranking(score, train, valid, ks=(20,))
    test_res = evaluate_ranking(score, train, test, exclude=valid, ks=(10, 20))
    return {
        "model": name,
        "recall@10": test_res["recall@10"],
        "recall@20": test_res["recall@20"],
        "ndcg@10": test_res["ndcg@10"],
        "ndcg@20": test_res["ndcg@20"],
        "valid_ndcg@20": valid_res["ndcg@20"],
        "fit_seconds": fit_seconds,
        "n_users_evaluated": test_res["n_users_evaluated"],
        "config": config,
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'model':<13}{'R@10':>8}{'R@20':>8}{'N@10':>8}{'N@20':>8}{'fit s':>9}{'valid N@20':>12}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['model']:<13}{r['recall@10']:>8.4f}{r['recall@20']:>8.4f}{r['ndcg@10']:>8.4f}"
            f"{r['ndcg@20']:>8.4f}{r['fit_seconds']:>9.2f}{r['valid_ndcg@20']:>12.4f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(ALL_MODELS),
        choices=ALL_MODELS,
        metavar="MODEL",
        help=f"models to run (default: all of {', '.join(ALL_MODELS)})",
    )
    parser.add_argument("--dataset", default="movielens-small-mm", help="a dataset folder under shared/datasets")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="MODEL.OPTION=VALUE",
        help="override a model option, e.g. bpr.lr=0.01 (repeatable; value parsed as JSON)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.set)
    unknown = set(overrides) - set(args.models)
    if unknown:
        raise SystemExit(f"--set names model(s) not being run: {sorted(unknown)}")
    split = load_p1(args.dataset)
    p1 = split["p1"]
    print(
        f"{args.dataset}, P1: {p1['n_users']:,} users, {p1['n_items']:,} items, "
        f"{p1['n_interactions']:,} interactions (train {split['train'].nnz:,}, valid {split['valid'].nnz:,}, "
        f"test {split['test'].nnz:,})",
        flush=True,
    )
    rows = []
    for name in args.models:
        row = run_model(name, split, overrides.get(name, {}))
        rows.append(row)
        print(
            f"  {name}: test ndcg@20 {row['ndcg@20']:.4f}, valid ndcg@20 {row['valid_ndcg@20']:.4f}, "
            f"fit {row['fit_seconds']:.1f} s",
            flush=True,
        )
    print()
    print(format_table(rows))
    if args.json:
        print(
            json.dumps(
                {
                    "dataset": args.dataset,
                    "protocol": "P1",
                    "n_users": p1["n_users"],
                    "n_items": p1["n_items"],
                    "n_interactions": p1["n_interactions"],
                    "results": rows,
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
