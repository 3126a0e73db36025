"""Top-k selection: one home for the two rules the engine ranks by.

:func:`top_k_rows` is the ranking rule of recommendations (``recommend``, the batch export, MMR at diversity
0): highest score first, ties by the lower item index, non-finite scores never chosen.

:func:`k_largest` is the plain ``argpartition`` pick of the ``k`` largest entries, in no particular order, with
ties at the k-th value resolved as ``argpartition`` leaves them; :func:`by_score` orders a set of indices by
score, ties by the lower index. Neighbour lists (item-kNN, cosine neighbours) and candidate pools use these:
their results were fitted and checked with exactly this pick.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["top_k_rows", "k_largest", "by_score"]


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(items [n, k'], values [n, k'])`` of each row's best ``k' = min(k, n_items)`` scores, best first,
    ties by the lower index; non-finite scores are never chosen (their places hold item -1 and ``-inf``)."""
    s = np.array(scores, dtype=np.float64, ndmin=2)  # a copy
    n, m = s.shape
    kk = int(min(max(k, 0), m))
    if kk == 0 or n == 0:
        return np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0), dtype=np.float64)
    neg = -s
    neg[~np.isfinite(neg)] = np.inf  # -inf, +inf and NaN all rank last and are dropped below
    part = np.argpartition(neg, kk - 1, axis=1)[:, :kk] if kk < m else np.tile(np.arange(m), (n, 1))
    kth = np.take_along_axis(neg, part, 1).max(axis=1)
    # rows with more items tied at the boundary than places: take the lowest indices among the tied ones
    for r in np.flatnonzero((neg <= kth[:, None]).sum(axis=1) > kk):
        candidates = np.flatnonzero(neg[r] <= kth[r])
        part[r] = candidates[np.lexsort((candidates, neg[r, candidates]))][:kk]
    values = np.take_along_axis(neg, part, 1)
    order = np.lexsort((part, values), axis=-1)
    items = np.take_along_axis(part, order, 1).astype(np.int64)
    values = -np.take_along_axis(values, order, 1)
    dropped = ~np.isfinite(values)
    items[dropped] = -1
    values[dropped] = -np.inf
    return items, values


def k_largest(values: Any, k: int, axis: int = -1) -> np.ndarray:
    """Indices of the ``k`` (``1 <= k <= n``) largest entries along ``axis``, unordered (``argpartition``)."""
    return np.take(np.argpartition(-values, k - 1, axis=axis), np.arange(k), axis=axis)


def by_score(indices: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``indices`` (1-D) ordered by ``scores[indices]``, highest first, ties by the lower index."""
    return indices[np.lexsort((indices, -scores[indices]))]
