"""Helpers shared by the baseline recommenders (:mod:`.baselines`, :mod:`.bpr`): user rows, warm items,
scores for cold items, sparse state, fit timing."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from .base import Recommender


def _rows(users: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.asarray(users, dtype=np.int64).reshape(-1)


def _warm_mask(train: sp.spmatrix) -> np.ndarray:
    """Items with at least one training interaction."""
    return np.asarray((sp.csr_matrix(train) != 0).sum(axis=0)).ravel() > 0


def _sink_cold(scores: np.ndarray, warm: np.ndarray | None) -> np.ndarray:
    """Give cold items (``~warm``) a finite score strictly below every warm item of the row (in place)."""
    if warm is None or warm.all() or scores.size == 0:
        return scores
    if warm.any():
        floor = scores[:, warm].min(axis=1, keepdims=True)
        floor = np.where(np.isfinite(floor), floor, 0.0)
    else:
        floor = np.zeros((scores.shape[0], 1), dtype=scores.dtype)
    scores[:, ~warm] = floor - 1.0
    return scores


def _csr_state(prefix: str, mat: sp.csr_matrix) -> dict[str, np.ndarray]:
    mat = sp.csr_matrix(mat)
    return {
        f"{prefix}.indptr": mat.indptr.astype(np.int64),
        f"{prefix}.indices": mat.indices.astype(np.int64),
        f"{prefix}.data": mat.data.astype(np.float32),
        f"{prefix}.shape": np.asarray(mat.shape, dtype=np.int64),
    }


def _csr_restore(prefix: str, state: dict[str, np.ndarray]) -> sp.csr_matrix:
    shape = tuple(int(x) for x in state[f"{prefix}.shape"])
    return sp.csr_matrix((state[f"{prefix}.data"], state[f"{prefix}.indices"], state[f"{prefix}.indptr"]), shape=shape)


def _history(model: Recommender, rows: np.ndarray) -> sp.csr_matrix:
    if model.seen is None:
        raise RuntimeError(f"{type(model).__name__} is not fitted: call fit() or Recommender.load() first")
    return model.seen[rows]


def _dense(mat: Any) -> np.ndarray:
    return mat.toarray() if sp.issparse(mat) else np.asarray(mat)


class _Fitted:
    """Times a fit and stores ``fit_seconds`` on the model."""

    def __init__(self, model: Recommender):
        self.model = model

    def __enter__(self) -> _Fitted:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.model.fit_seconds = time.perf_counter() - self.start
