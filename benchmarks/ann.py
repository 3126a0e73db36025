"""ANN retrieval stage: recall@100 of the index against the exact inner product, and top-10 latency for one
user with the ANN stage and with an exact scan, on generated catalogues of 10k and 100k items.

    python benchmarks/ann.py                                # 10k and 100k items, BPR-MF trained briefly
    python benchmarks/ann.py --sizes 100000 --factors clustered --users 300
    python benchmarks/ann.py --sizes 10000 --kind hnsw       # HNSW where auto would build the flat index

For each size an interaction matrix is generated (``--users-per-item`` users per item, ~``--per-user``
interactions each, drawn from a few preferred of ``--clusters`` item clusters with a Zipf popularity inside
each cluster), and the item vectors come from

* ``--factors bpr`` (default): :class:`recsys.models.baselines.BPRMF` trained on it for ``--epochs`` epochs
  (no validation; the retrieval stage only needs factors with the structure training gives them), or
* ``--factors clustered``: random factors around the same clusters (no training), set on a BPRMF object.

Then ``model.use_retrieval(RetrievalConfig())`` builds the index the serving layer would (flat below
``exact_below`` = 20k items, HNSW above) and, for ``--users`` random users, measures

* ``recall@100``: the ANN stage's 100 best items against the exact 100 best inner products (seen items
  included: this is the stage alone), and, for HNSW, the same for each ``--ef-search`` value (p50 of the search);
* ``top10_overlap``: the final top-10 (exact re-scoring of the candidates, seen items left out) against the
  exact scan's top-10;
* latency p50/p99 (ms) of a top-10 for one user: ``exact_scan`` = numpy matmul of the user's vector with every
  item vector + ``argpartition`` (seen items masked); ``exact_recommend`` = ``model.recommend(user, k=10)``
  without the index (the model's own path: whole score row, keep mask, ``select_top``); ``ann_recommend`` =
  ``model.recommend(user, k=10)`` with the index (ANN candidates, exact re-scoring, the same ``select_top``);
  ``ann_search`` = the index search alone;
* the index build time, its size (faiss serialisation) and the item vectors' size.

BLAS, OpenMP and faiss run one thread while timing queries (the server scores one request at a time); the
build uses ``--build-threads``. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def interactions(n_items: int, users_per_item: float, per_user: int, clusters: int, seed: int) -> sp.csr_matrix:
    """Users x items, binary: each user draws from 2-3 preferred clusters (80 %) or anywhere (20 %), Zipf inside."""
    rng = np.random.default_rng(seed)
    n_users = max(int(n_items * users_per_item), 100)
    cluster_of = rng.integers(0, clusters, n_items)
    order = np.argsort(cluster_of, kind="stable")
    starts = np.searchsorted(cluster_of[order], np.arange(clusters + 1))
    counts = rng.poisson(per_user, n_users).clip(3, None)
    rows = np.repeat(np.arange(n_users), counts)
    total = int(counts.sum())
    preferred = rng.integers(0, clusters, (n_users, 3))
    pick = preferred[rows, rng.integers(0, 3, total)]
    anywhere = rng.random(total) < 0.2
    pick[anywhere] = rng.integers(0, clusters, int(anywhere.sum()))
    size = starts[pick + 1] - starts[pick]
    rank = np.minimum((rng.pareto(1.5, total) * size / 4).astype(np.int64), np.maximum(size - 1, 0))  # Zipf-like
    cols = order[np.minimum(starts[pick] + rank, n_items - 1)]
    matrix = sp.csr_matrix((np.ones(total, dtype=np.float32), (rows, cols)), shape=(n_users, n_items))
    matrix.data[:] = 1.0  # duplicates summed: binary again
    return matrix


def factor_model(train: sp.csr_matrix, how: str, dim: int, epochs: int, seed: int):
    from recsys.models.base import TrainData
    from recsys.models.baselines import BPRMF

    n_users, n_items = train.shape
    data = TrainData([f"u{u}" for u in range(n_users)], [f"i{i}" for i in range(n_items)], train)
    model = BPRMF(dim=dim, epochs=epochs, batch_size=16384, lr=0.01, weight_decay=0.001, device="cpu", seed=seed)
    started = time.perf_counter()
    if how == "bpr":
        import torch

        torch.set_num_threads(max(os.cpu_count() or 1, 1))
        model.fit(data)
        torch.set_num_threads(1)
    else:
        model._remember(data)
        rng = np.random.default_rng(seed)
        centres = rng.normal(size=(64, dim))
        model.item_factors = (centres[rng.integers(0, 64, n_items)] + 0.7 * rng.normal(size=(n_items, dim))).astype(
            np.float32
        )
        model.user_factors = (centres[rng.integers(0, 64, n_users)] + rng.normal(size=(n_users, dim))).astype(
            np.float32
        )
        model.item_bias = rng.normal(0, 0.5, n_items).astype(np.float32)
        model.warm = np.asarray(train.sum(axis=0)).ravel() > 0
    return model, time.perf_counter() - started


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def exact_scan(items: np.ndarray, user: np.ndarray, seen: np.ndarray, k: int) -> np.ndarray:
    scores = items @ user
    scores[seen] = -np.inf
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.lexsort((top, -scores[top]))]


def run_size(n_items: int, args: argparse.Namespace) -> dict:
    import faiss

    from recsys.retrieval import RetrievalConfig, recall_at

    train = interactions(n_items, args.users_per_item, args.per_user, args.clusters, args.seed)
    model, fit_seconds = factor_model(train, args.factors, args.dim, args.epochs, args.seed)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    config = RetrievalConfig(kind=args.kind, build_threads=args.build_threads)
    index = model.use_retrieval(config)
    faiss.omp_set_num_threads(1)
    vectors = index.vectors
    items = vectors.items  # [n_items, dim + 1]: the bias as the last dimension
    warm = np.asarray(vectors.indexed) if vectors.indexed is not None else np.ones(n_items, dtype=bool)
    rng = np.random.default_rng(args.seed + 1)
    users = rng.choice(model.n_users, size=min(args.users, model.n_users), replace=False)
    user_vecs = vectors.users(users)

    # recall@100 of the ANN stage (seen items included), over the indexed items
    exact_scores = user_vecs @ items.T
    exact_scores[:, ~warm] = -np.inf
    exact100 = np.argsort(-exact_scores, axis=1)[:, :100]
    search_s = []
    found = np.empty((len(users), 100), dtype=np.int64)
    for r in range(len(users)):
        t = time.perf_counter()
        found[r] = index.search(user_vecs[r], 100)[0]
        search_s.append(time.perf_counter() - t)
    sweep = []
    if index.kind == "hnsw":
        for ef in args.ef_search:
            params = faiss.SearchParametersHNSW(efSearch=int(max(ef, 100)))
            times, rows = [], []
            for r in range(len(users)):
                t = time.perf_counter()
                _, got = index.index.search(np.ascontiguousarray(user_vecs[r : r + 1]), 100, params=params)
                times.append(time.perf_counter() - t)
                rows.append(index.item_rows[np.maximum(got[0], 0)])
            sweep.append(
                {"ef_search": ef, "recall@100": round(recall_at(np.stack(rows), exact100), 4)} | percentiles(times)
            )

    # top-10 for one user: exact scan, the model's exact recommend, the ANN recommend
    k = args.k
    seen_of = [model.seen.indices[model.seen.indptr[u] : model.seen.indptr[u + 1]] for u in users]
    scan_s, exact_rec_s, ann_rec_s, overlap, agree = [], [], [], [], []
    cold = np.flatnonzero(~warm)
    for r, u in enumerate(users):
        t = time.perf_counter()
        scan = exact_scan(items, user_vecs[r], np.concatenate([seen_of[r], cold]), k)
        scan_s.append(time.perf_counter() - t)
        model.retrieval = None
        t = time.perf_counter()
        exact = model.recommend(int(u), k=k)
        exact_rec_s.append(time.perf_counter() - t)
        model.retrieval = index
        t = time.perf_counter()
        ann = model.recommend(int(u), k=k)
        ann_rec_s.append(time.perf_counter() - t)
        exact_ids = [i for i, _ in exact]
        agree.append(exact_ids == [str(model.item_ids[i]) for i in scan])  # the scan is the model's ranking
        overlap.append(len({i for i, _ in ann} & set(exact_ids)) / max(len(exact_ids), 1))
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "items": n_items,
        "users": int(model.n_users),
        "interactions": int(train.nnz),
        "factors": args.factors,
        "factor_seconds": round(fit_seconds, 2),
        "dim": int(items.shape[1]),
        "indexed_items": index.n_indexed,
        "index": index.kind,
        "config": config.to_dict(),
        "build_seconds": round(index.build_seconds, 3),
        "index_mb": round(index.memory_bytes() / 2**20, 2),
        "item_vectors_mb": round(items.nbytes / 2**20, 2),
        "max_rss_mb_before_build": round(rss_before, 1),
        "max_rss_mb_after": round(rss_after, 1),
        "query_users": len(users),
        "recall@100": round(recall_at(found, exact100), 4),
        "top10_overlap": round(float(np.mean(overlap)), 4),
        "exact_scan_matches_recommend": round(float(np.mean(agree)), 4),
        "ann_search": percentiles(search_s),
        "ann_recommend": percentiles(ann_rec_s),
        "exact_scan": percentiles(scan_s),
        "exact_recommend": percentiles(exact_rec_s),
        "ef_search_sweep": sweep,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="catalogue sizes (items)")
    parser.add_argument("--factors", choices=("bpr", "clustered"), default="bpr", help="where item vectors come from")
    parser.add_argument("--epochs", type=int, default=5, help="BPR-MF epochs (--factors bpr)")
    parser.add_argument("--dim", type=int, default=64, help="factor dimension (the index adds one for the bias)")
    parser.add_argument("--users-per-item", type=float, default=0.5, help="generated users per item")
    parser.add_argument("--per-user", type=int, default=40, help="mean interactions per generated user")
    parser.add_argument("--clusters", type=int, default=200, help="item clusters of the generated catalogue")
    parser.add_argument("--users", type=int, default=300, help="query users timed and scored per size")
    parser.add_argument("--k", type=int, default=10, help="list length of the latency measurement")
    parser.add_argument(
        "--kind", choices=("auto", "flat", "hnsw"), default="auto", help="index kind (auto: flat below 20k items)"
    )
    parser.add_argument("--ef-search", type=int, nargs="*", default=[128, 256, 512, 1024], help="HNSW efSearch sweep")
    parser.add_argument("--build-threads", type=int, default=os.cpu_count() or 1, help="faiss threads while building")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)

    rows = []
    for n in args.sizes:
        row = run_size(n, args)
        rows.append(row)
        print(
            f"{n:>7} items  {row['index']:<5} build {row['build_seconds']:7.2f} s  index {row['index_mb']:7.1f} MB  "
            f"recall@100 {row['recall@100']:.4f}  top-10 overlap {row['top10_overlap']:.4f}",
            flush=True,
        )
        for name in ("exact_scan", "exact_recommend", "ann_search", "ann_recommend"):
            print(f"{'':>14}{name:<16} p50 {row[name]['p50_ms']:8.3f} ms  p99 {row[name]['p99_ms']:8.3f} ms")
        for s in row["ef_search_sweep"]:
            print(f"{'':>14}efSearch {s['ef_search']:<6} recall@100 {s['recall@100']:.4f}  p50 {s['p50_ms']:.3f} ms")
    print(json.dumps({"benchmark": "ann", "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
