"""Ranking and rating metrics as plain, vectorised numpy functions.

Conventions
-----------
``topk``: integer array ``[n_users, K]`` of item indices, best first. A negative entry
(``-1``) is padding, "no item": it is never a hit and is not counted in coverage, but
it still occupies its rank (precision@k divides by k regardless).

``relevant``: the ground truth (e.g. test items) per row of ``topk``, either a list of
integer arrays (one per user) or a ``scipy.sparse`` CSR matrix ``[n_users, n_items]``
whose non-zero entries are the relevant items. Relevance is binary.

Per-user metrics (``recall_at_k``, ``precision_at_k``, ``ndcg_at_k``, ``hit_rate_at_k``,
``mrr_at_k``) return float arrays ``[n_users]`` with NaN for users that have no relevant
item; average them with :func:`mean_over_users`, which ignores NaN (P1 averages over
users with at least one test item).

Definitions (P1, see docs/ARCHITECTURE.md, "Evaluation protocols and metrics"), with hit_r = 1 if the item at rank r (1-based)
is relevant, and R = number of relevant items of the user:

* recall@k    = sum_{r<=k} hit_r / R        (denominator |test|, not min(|test|, k):
                a user with more than k test items cannot reach 1.0)
* precision@k = sum_{r<=k} hit_r / k
* ndcg@k      = DCG / IDCG, DCG = sum_{r<=k} hit_r / log2(r + 1),
                IDCG = sum_{r<=min(R, k)} 1 / log2(r + 1)
* hit@k       = 1 if any hit in the top k else 0
* mrr@k       = 1 / (rank of the first hit) if within the top k else 0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import scipy.sparse as sp

from ..topk import topk_from_scores

__all__ = [
    "recall_at_k",
    "precision_at_k",
    "ndcg_at_k",
    "hit_rate_at_k",
    "mrr_at_k",
    "ranking_metrics",
    "catalogue_coverage",
    "rmse",
    "mae",
    "mean_over_users",
    "topk_from_scores",
    "hit_matrix",
]

Relevant: TypeAlias = Sequence[np.ndarray] | sp.spmatrix | sp.sparray


# --------------------------------------------------------------------------- helpers
def _as_topk(topk: Any) -> np.ndarray:
    arr = np.asarray(topk)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"topk must be 2-D [n_users, K], got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"topk must hold integer item indices, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _relevant_csr(relevant: Relevant, n_users: int, min_cols: int) -> sp.csr_matrix:
    """Binary CSR [n_users, >= min_cols] with sorted, unique indices and no explicit zeros."""
    if sp.issparse(relevant):
        rel = sp.csr_matrix(relevant, copy=True)
        if rel.shape[0] != n_users:
            raise ValueError(f"relevant has {rel.shape[0]} rows, topk has {n_users}")
        rel.sum_duplicates()
        rel.eliminate_zeros()
        rel.data = np.ones_like(rel.data, dtype=np.float64)
        if rel.shape[1] < min_cols:
            rel.resize((n_users, min_cols))
        return rel
    rows = list(relevant)
    if len(rows) != n_users:
        raise ValueError(f"relevant has {len(rows)} entries, topk has {n_users} rows")
    cols = [np.unique(np.asarray(r, dtype=np.int64).ravel()) for r in rows]
    lengths = np.array([len(c) for c in cols], dtype=np.int64)
    indices = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    if indices.size and indices.min() < 0:
        raise ValueError("relevant item indices must be non-negative")
    n_cols = max(min_cols, int(indices.max()) + 1 if indices.size else 0)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    return sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(n_users, n_cols))


def hit_matrix(topk: Any, relevant: Relevant) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(hits [n_users, K] bool, n_relevant [n_users] int)``.

    ``hits[u, r]`` is True when ``topk[u, r]`` is one of user u's relevant items.
    """
    top = _as_topk(topk)
    n_users, k = top.shape
    max_item = int(top.max()) + 1 if top.size else 0
    rel = _relevant_csr(relevant, n_users, max_item)
    n_rel = np.diff(rel.indptr).astype(np.int64)
    if top.size == 0:
        return np.zeros(top.shape, dtype=bool), n_rel
    valid = top >= 0
    rows = np.repeat(np.arange(n_users), k)
    cols = np.where(valid, top, 0).ravel()
    looked_up = np.asarray(rel[rows, cols]).ravel() > 0
    hits = looked_up.reshape(n_users, k) & valid
    return hits, n_rel


def _check_k(k: int | None, width: int) -> int:
    if k is None:
        return width
    if k < 1 or k > width:
        raise ValueError(f"k must be in [1, {width}] (the width of topk), got {k}")
    return int(k)


def _discounts(k: int) -> np.ndarray:
    """1 / log2(r + 1) for ranks r = 1..k."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _nan_where_empty(values: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64, copy=False)
    values[n_rel == 0] = np.nan
    return values


def _metrics_from_hits(hits: np.ndarray, n_rel: np.ndarray, k: int) -> dict[str, np.ndarray]:
    h = hits[:, :k]
    n_hit: np.ndarray = h.sum(axis=1).astype(np.float64)  # [n_users] (numpy's stub also allows a scalar)
    safe_rel = np.maximum(n_rel, 1).astype(np.float64)
    disc = _discounts(k)
    dcg = h.astype(np.float64) @ disc
    ideal_cum = np.concatenate([[0.0], np.cumsum(disc)])
    idcg = ideal_cum[np.minimum(n_rel, k)]
    first = np.where(h.any(axis=1), h.argmax(axis=1) + 1, 0)
    mrr = np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0)
    return {
        "recall": _nan_where_empty(n_hit / safe_rel, n_rel),
        "precision": _nan_where_empty(n_hit / k, n_rel),
        "ndcg": _nan_where_empty(dcg / np.where(idcg > 0, idcg, 1.0), n_rel),
        "hit": _nan_where_empty(np.asarray(h.any(axis=1), dtype=np.float64), n_rel),
        "mrr": _nan_where_empty(mrr, n_rel),
    }


# --------------------------------------------------------------------------- per-user ranking metrics
def ranking_metrics(topk: Any, relevant: Relevant, ks: Sequence[int] = (10, 20)) -> dict[str, np.ndarray]:
    """All per-user ranking metrics at every k in ``ks`` in one pass.

    Returns ``{"recall@10": array, "precision@10": ..., "ndcg@10": ..., "hit@10": ...,
    "mrr@10": ..., ...}`` (NaN for users without relevant items).
    """
    hits, n_rel = hit_matrix(topk, relevant)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        kk = _check_k(k, hits.shape[1])
        for name, values in _metrics_from_hits(hits, n_rel, kk).items():
            out[f"{name}@{kk}"] = values
    return out


def _single(name: str, topk: Any, relevant: Relevant, k: int | None) -> np.ndarray:
    hits, n_rel = hit_matrix(topk, relevant)
    return _metrics_from_hits(hits, n_rel, _check_k(k, hits.shape[1]))[name]


def recall_at_k(topk: Any, relevant: Relevant, k: int | None = None) -> np.ndarray:
    """Per-user recall@k = hits in top k / |relevant| (NaN when |relevant| = 0). k defaults to K."""
    return _single("recall", topk, relevant, k)


def precision_at_k(topk: Any, relevant: Relevant, k: int | None = None) -> np.ndarray:
    """Per-user precision@k = hits in top k / k (NaN when |relevant| = 0). k defaults to K."""
    return _single("precision", topk, relevant, k)


def ndcg_at_k(topk: Any, relevant: Relevant, k: int | None = None) -> np.ndarray:
    """Per-user binary NDCG@k, log2 discount, ideal DCG over min(|relevant|, k) (NaN when |relevant| = 0)."""
    return _single("ndcg", topk, relevant, k)


def hit_rate_at_k(topk: Any, relevant: Relevant, k: int | None = None) -> np.ndarray:
    """Per-user hit@k: 1.0 if any relevant item in the top k else 0.0 (NaN when |relevant| = 0)."""
    return _single("hit", topk, relevant, k)


def mrr_at_k(topk: Any, relevant: Relevant, k: int | None = None) -> np.ndarray:
    """Per-user reciprocal rank of the first hit within the top k, 0.0 if none (NaN when |relevant| = 0)."""
    return _single("mrr", topk, relevant, k)


def mean_over_users(values: Any) -> float:
    """Mean of a per-user metric array ignoring NaN (users without relevant items); NaN if all are NaN."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    finite = arr[~np.isnan(arr)]
    return float(finite.mean()) if finite.size else float("nan")


# --------------------------------------------------------------------------- other metrics
def catalogue_coverage(topk: Any, n_items: int, k: int | None = None) -> float:
    """Fraction of the ``n_items`` catalogue that appears in at least one user's top k (padding ignored)."""
    top = _as_topk(topk)
    kk = _check_k(k, top.shape[1]) if top.shape[1] else 0
    if n_items <= 0:
        raise ValueError(f"n_items must be positive, got {n_items}")
    items = top[:, :kk].ravel()
    items = items[(items >= 0) & (items < n_items)]
    return float(np.unique(items).size / n_items)


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    return t, p


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error; NaN for empty input."""
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2))) if t.size else float("nan")


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error; NaN for empty input."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p))) if t.size else float("nan")
