"""Top-k selection: one home for the rules the engine ranks by.

:func:`topk_from_scores` is the evaluation's top-k (``[n_users, k]``, padded with -1, an optional sparse
``exclude``, NaN as -inf; :mod:`recsys.evaluate.metrics` re-exports it).

:func:`top_k_rows` is the ranking rule of recommendations (``recommend``, the batch export, MMR at diversity
0): highest score first, ties by the lower item index, non-finite scores never chosen.

:func:`k_largest` is the plain ``argpartition`` pick of the ``k`` largest entries, in no particular order, with
ties at the k-th value resolved as ``argpartition`` leaves them; :func:`by_score` orders a set of indices by
score, ties by the lower index. Neighbour lists (item-kNN, cosine neighbours) and candidate pools use these:
their results were fitted and checked with exactly this pick.

:func:`places_in_rows` says where chosen entries fall among their row's values (a rank without building the
rank permutation): the fusion model's rank-weighted loss and its history evidence use it.
"""

from __future__ import annotations

import sys
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

__all__ = ["top_k_rows", "topk_from_scores", "k_largest", "by_score", "places_in_rows", "sorted_rows"]


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


def _to_numpy_scores(scores: Any) -> np.ndarray:
    torch = sys.modules.get("torch")  # a tensor can only exist if torch is already imported
    if torch is not None and isinstance(scores, torch.Tensor):
        if scores.dtype in (torch.float16, torch.bfloat16):
            scores = scores.float()
        scores = scores.detach().cpu().numpy()
    arr = np.asarray(scores)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"scores must be 2-D [n_users, n_items], got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    return np.array(arr, copy=True)  # we write -inf into it


def topk_from_scores(scores: Any, k: int, exclude: Any = None) -> np.ndarray:
    """Top-``k`` item indices per row, best first (``argpartition`` then a sort of the k).

    ``scores``: numpy array or torch tensor ``[n_users, n_items]`` (not modified).
    ``exclude``: optional sparse matrix ``[n_users, n_items]``; its stored entries are set
    to -inf before ranking (e.g. the user's train items). NaN scores count as -inf.
    Ties are broken by the lower item index. Ranks that only an excluded / -inf item
    could fill (fewer than k rankable items) are ``-1``, as are ranks beyond n_items:
    the result is always ``[n_users, k]`` int64.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    s = _to_numpy_scores(scores)
    n_users, n_items = s.shape
    s[np.isnan(s)] = -np.inf
    if exclude is not None:
        ex = sp.csr_matrix(exclude)
        if ex.shape != s.shape:
            raise ValueError(f"exclude has shape {ex.shape}, scores {s.shape}")
        rows = np.repeat(np.arange(n_users), np.diff(ex.indptr))
        s[rows, ex.indices] = -np.inf
    kk = min(k, n_items)
    out = np.full((n_users, k), -1, dtype=np.int64)
    if kk == 0 or n_users == 0:
        return out
    neg = -s
    if kk < n_items:
        cand = _largest_k(s, kk)
        cand = np.sort(cand, axis=1)  # lower index first, so the stable sort below breaks ties by index
        vals = np.take_along_axis(neg, cand, axis=1)
        order = np.take_along_axis(cand, np.argsort(vals, axis=1, kind="stable"), axis=1)
        # rows where items tied with the k-th score were left outside the partition:
        # redo those rows with a full stable sort so ties always go to the lower index
        kth = vals.max(axis=1, keepdims=True)
        outside = (neg == kth).sum(axis=1) > (vals == kth).sum(axis=1)
        redo = np.flatnonzero(outside & (kth[:, 0] != np.inf))  # ties among -inf become -1 anyway
        if redo.size:
            order[redo] = np.argsort(neg[redo], axis=1, kind="stable")[:, :kk]
    else:
        order = np.argsort(neg, axis=1, kind="stable")
    top_scores = np.take_along_axis(s, order, axis=1)
    out[:, :kk] = np.where(np.isneginf(top_scores), -1, order)
    return out


def _largest_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The column indices of each row's ``k`` largest scores, in no particular order (ties at the k-th score:
    any of them; :func:`topk_from_scores` redoes such rows). torch's top-k selection is about 10x NumPy's
    ``argpartition`` on a CPU (610 x 9,742 float32, k = 20: 7 ms against 83 ms), and a fit ranks the
    validation users dozens of times."""
    import torch

    chosen = torch.topk(torch.from_numpy(scores), k, dim=1, largest=True, sorted=False).indices
    return chosen.numpy().astype(np.int64, copy=False)


# below this many entries a sort is split no further: a thread's start costs more than it saves
_PARALLEL_MIN_ENTRIES = 200_000
_sort_pool: Any = None
# (process, threads) the pool was made for: a forked child inherits the pool object but not its threads, so it
# makes its own
_sort_pool_owner = (0, 0)


def _by_row_blocks(sort: Any, values: np.ndarray, dtype: Any) -> np.ndarray:
    """``sort(values)`` (a row-wise NumPy sort) computed on blocks of rows in as many threads as torch may
    use. NumPy's sorts run on one core and release the GIL, so two cores sort twice as fast (610 x 6,100
    float32: argsort 126 ms -> 63 ms); the results are the same, row by row."""
    global _sort_pool, _sort_pool_owner
    import os

    import torch

    threads = min(max(1, torch.get_num_threads()), len(values))
    if threads < 2 or values.size < _PARALLEL_MIN_ENTRIES:
        return sort(values)
    if _sort_pool is None or _sort_pool_owner[0] != os.getpid() or _sort_pool_owner[1] < threads:
        from concurrent.futures import ThreadPoolExecutor

        _sort_pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="recsys-sort")
        _sort_pool_owner = (os.getpid(), threads)
    out = np.empty(values.shape, dtype=dtype)
    edges = np.linspace(0, len(values), threads + 1).astype(int)

    def block(start: int, stop: int) -> None:
        out[start:stop] = sort(values[start:stop])

    for future in [_sort_pool.submit(block, a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]:
        future.result()
    return out


def sorted_rows(values: Any) -> Any:
    """Each row of a ``[B, N]`` tensor sorted ascending (values only): NumPy's vectorised sort on a CPU
    (several times torch's there, on blocks of rows in parallel), torch's elsewhere."""
    import torch

    if values.device.type != "cpu":
        return torch.sort(values, dim=1).values
    array = values.detach().numpy()
    return torch.from_numpy(_by_row_blocks(lambda block: np.sort(block, axis=1), array, array.dtype))


def argsort_rows(values: Any) -> Any:
    """Each row's ascending order (column indices) of a ``[B, N]`` tensor: NumPy's argsort on a CPU (about
    4-5x torch's there on 25k columns; blocks of rows in parallel), torch's elsewhere. Ties in an order that
    is fixed but unspecified."""
    import torch

    if values.device.type != "cpu":
        return torch.argsort(values, dim=1)
    return torch.from_numpy(_by_row_blocks(lambda block: np.argsort(block, axis=1), values.detach().numpy(), np.int64))


def places_in_rows(scores: Any, chosen: Any, side: Literal["left", "right"]) -> Any:
    """``[B, N]`` float tensor: for each non-zero entry of ``chosen``, how many entries of its row of ``scores``
    are strictly lower (``side="left"``) or at most equal (``side="right"``); 0 elsewhere. ``N - places(right)``
    is the 0-based rank from the top, ties sharing the best.

    On a CPU the rows are sorted by NumPy (a vectorised sort, several times torch's argsort) and each chosen
    entry is placed by binary search; on an accelerator by torch's sort and searchsorted."""
    import torch

    if scores.device.type != "cpu":
        ordered_rows = torch.sort(scores, dim=1).values
        places = torch.searchsorted(ordered_rows, scores.contiguous(), right=side == "right")
        return places.float() * (chosen != 0)
    values: np.ndarray = scores.detach().numpy()
    ordered = _by_row_blocks(lambda block: np.sort(block, axis=1), values, values.dtype)
    out = np.zeros(values.shape, np.float32)
    rows, columns = np.nonzero(chosen.detach().numpy())
    starts = np.searchsorted(rows, np.arange(values.shape[0] + 1))
    for row in np.flatnonzero(np.diff(starts)):
        cols = columns[starts[row] : starts[row + 1]]
        out[row, cols] = np.searchsorted(ordered[row], values[row, cols], side=side)
    return torch.from_numpy(out)
