"""EASE (Steck 2019) as reusable pieces: the inverse Gram matrix, the weights, the L2 chosen on validation,
and the weights "without these users" (for out-of-fold training signals) by a low-rank update.

``P = (X^T X + l2 I)^-1`` (through a float32 Cholesky factor: ~1.6x faster than a general inverse),
``B = I - P / diag(P)`` with a zero diagonal, ``score(u) = x_u B``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from ..stopping import check, interruptible
from .products import sparse_times

__all__ = [
    "ease_inverse",
    "ease_weights",
    "ease_scores_without_rows",
    "choose_ease_l2",
    "behaviour_columns",
    "DEFAULT_L2_GRID",
]

#: The L2 values tried when the L2 is chosen on validation (EASE's optimum moves with density and size).
DEFAULT_L2_GRID = (50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0)


def behaviour_columns(train: sp.spmatrix, limit: int | None = None) -> np.ndarray:
    """The items EASE needs to cover: those with at least one training interaction (sorted), at most ``limit``
    of them, the most interacted first.

    An item nobody chose has a zero Gram row, so its EASE weights are exactly zero: inverting only the
    active block gives the same scores at a fraction of the cost (a whole catalogue stays on the item axis
    for the content experts while EASE inverts only what behaviour can say something about). Above
    ``limit`` the rarest items are left to content too: the inversion is O(N^3).
    """
    counts = np.diff(sp.csc_matrix(train).indptr)
    active = np.flatnonzero(counts > 0)
    if limit is not None and len(active) > limit:
        order = np.argsort(-counts[active], kind="stable")[:limit]
        active = np.sort(active[order])
    return active.astype(np.int64)


def _binary(train: sp.spmatrix) -> sp.csr_matrix:
    return sp.csr_matrix((sp.csr_matrix(train) != 0).astype(np.float64))


def _gram(train: sp.spmatrix, block_rows: int = 8192) -> np.ndarray:
    """``X^T X`` (dense float32: the inverse is computed in float32, and the entries are co-occurrence counts,
    exact in float32 below 2^24), summed over blocks of users: scipy's sparse product holds the GIL, so one
    product over a million interactions would hold a stop request (and every other thread) for seconds;
    between blocks :func:`recsys.stopping.check` can act.

    Where the dense product is the cheaper one (few users with long histories: its ``users x items^2``
    multiply-adds against the sparse product's ``sum of squared history lengths``, at ~1000x the rate
    through BLAS) the blocks are multiplied dense, in float32."""
    x = _binary(train)
    n_rows, n_items = x.shape
    lengths = np.diff(x.indptr).astype(np.float64)
    dense = float(n_rows) * n_items * n_items < 1000.0 * float((lengths**2).sum())
    if dense:  # blocks of at most ~16M floats
        block_rows = max(1, min(block_rows, 16_000_000 // max(1, n_items)))
    # the sparse products' sum in float64 (a count can pass 2^24 over millions of users before the float32
    # rounding of the inverse's input); the dense blocks' in float32
    gram: np.ndarray | None = None
    for start in range(0, n_rows, block_rows):
        check("the EASE Gram matrix")
        block = x[start : start + block_rows]
        if dense:
            rows = block.toarray().astype(np.float32)
            # the transpose made contiguous first: BLAS multiplies a C-ordered [items, users] by [users, items]
            # ~1.7x faster than through a transposed view (610 x 3,650: 100 ms against 170 ms)
            product = np.ascontiguousarray(rows.T) @ rows
        else:
            sparse_product = block.T @ block
            product = sparse_product.toarray() if sp.issparse(sparse_product) else np.asarray(sparse_product)
        if gram is None:  # the first block's product is the sum so far (one block: the whole Gram matrix)
            gram = product if dense else np.asarray(product, dtype=np.float64)
        else:
            gram += product
    if gram is None:
        return np.zeros((n_items, n_items), dtype=np.float32)
    return gram.astype(np.float32, copy=False)


def ease_inverse(train: sp.spmatrix, l2: float, gram: np.ndarray | None = None) -> np.ndarray:
    """``P = (X^T X + l2 I)^-1`` as float32 ``[N, N]``.

    The L2 keeps the matrix well conditioned (eigenvalues at least ``l2``, a count-sized largest one), so a
    float32 Cholesky changes the weights by ~1e-6 relative, in ~2/3 of the float64 time and half its memory."""
    gram = _gram(train) if gram is None else gram
    matrix = torch.from_numpy(gram.astype(np.float32))
    matrix.diagonal().add_(float(l2))
    factor = torch.linalg.cholesky(matrix)
    # LAPACK hands the inverse back column-major, and every sparse @ P after this (the L2 search's scores, the
    # cloze sample's Woodbury updates, scoring) would copy the N x N matrix first (~20x slower). P is exactly
    # symmetric (LAPACK computes one triangle and mirrors it), so its transpose is the same matrix, row-major,
    # without a copy
    inverse = torch.cholesky_inverse(factor).numpy()
    return inverse if inverse.flags.c_contiguous else np.ascontiguousarray(inverse.T)


def ease_weights(inverse: np.ndarray) -> np.ndarray:
    """``B = -P / diag(P)`` with a zero diagonal, float32."""
    weights = inverse.astype(np.float32)  # a copy: the caller's inverse is left as it was
    weights /= -np.diag(inverse).astype(np.float32)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights


def ease_scores_without_rows(inverse: np.ndarray, removed: sp.spmatrix, history: sp.spmatrix) -> np.ndarray:
    """Scores ``history @ B'`` where ``B'`` is EASE fitted *without* the rows ``removed``.

    A user's training signal must not come from weights fitted on that user's own rows: an in-sample
    EASE score looks better than it will be on unseen items. Refitting per fold would cost one
    inversion each; the Woodbury identity gives the same scores from the full inverse ``P``:
    ``P' = P + P Xf^T (I - Xf P Xf^T)^-1 Xf P`` for the removed rows ``Xf`` (m of them), at
    O(m N^2 / N + m^2 N) for the ``m`` history rows asked for. In ``inverse``'s precision (float32 from
    :func:`ease_inverse`): ``I - Xf P Xf^T`` has eigenvalues ``l2 / (l2 + ...)``-sized, far from float32's noise.
    """
    dtype = inverse.dtype
    xf = _binary(removed).astype(dtype)
    v = _binary(history).astype(dtype)
    q = sparse_times(xf, inverse)  # [m, N]  Xf P
    inner = np.eye(xf.shape[0], dtype=dtype) - np.asarray(q @ xf.T.toarray())  # I - Xf P Xf^T (positive definite)
    k = np.linalg.solve(inner, q)  # K Xf P
    vp = sparse_times(v, inverse)  # V P
    vp_new = vp + np.asarray(vp @ xf.T.toarray()) @ k
    diag_new = np.diag(inverse) + (q * k).sum(axis=0)
    return np.asarray(v.toarray() - vp_new / diag_new[None, :], dtype=np.float32)


def choose_ease_l2(
    train: sp.spmatrix,
    valid: sp.spmatrix,
    grid: Sequence[float] = DEFAULT_L2_GRID,
    metric: str = "ndcg@20",
    start: float = 250.0,
    log: Callable[[str], None] | None = None,
) -> tuple[float, dict[float, float], np.ndarray]:
    """The L2 of ``grid`` with the best validation ``metric``; returns ``(l2, {l2: metric}, P at that l2)``.

    Up to 3,000 items every value is tried. Above, where each inversion is O(N^3), the search starts at
    the grid value nearest ``start`` and climbs toward the better neighbour until neither is better
    (validation NDCG is close to unimodal in the L2 on larger data): usually 3-4 inversions.
    """
    from ..evaluate import evaluate_ranking

    grid = sorted(float(v) for v in grid)
    gram = interruptible("the EASE Gram matrix", _gram, train)
    history = _binary(train).astype(np.float32)
    table: dict[float, float] = {}
    inverses: dict[float, np.ndarray] = {}

    def value(position: int) -> float:
        l2 = grid[position]
        if l2 not in table:
            inverse = interruptible("the EASE L2 search", ease_inverse, train, l2, gram)
            weights = ease_weights(inverse)
            result = evaluate_ranking(lambda rows: sparse_times(history[rows], weights), train, valid, ks=(20,))
            if not table or float(result[metric]) > max(table.values()):
                inverses.clear()  # keep only the best so far: each is N x N float32
                inverses[l2] = inverse
            table[l2] = float(result[metric])
            if log is not None:
                log(f"EASE l2 {l2:g}: valid {metric} {table[l2]:.4f}")
        return table[l2]

    if train.shape[1] <= 3000:  # small catalogues: every value (cheap, and no unimodality assumed)
        for position in range(len(grid)):
            value(position)
        best = max(table, key=table.__getitem__)
        return best, table, inverses[best]
    position = int(np.argmin([abs(np.log(v / start)) for v in grid]))
    while True:
        here = value(position)
        neighbours = [p for p in (position - 1, position + 1) if 0 <= p < len(grid)]
        better = [p for p in neighbours if value(p) > here + 1e-9]
        if not better:
            break
        position = max(better, key=lambda p: table[grid[p]])
    best = grid[position]
    return best, table, inverses[best]
