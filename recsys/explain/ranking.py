"""Filters and diversity for a recommendation list (any Recommender)."""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..data import schema as S

__all__ = ["filter_mask", "mmr_rerank", "recommend_list"]


def filter_mask(items: pd.DataFrame, selections: Mapping[str, Sequence[str]] | None = None,
                roles: Mapping[str, str] | None = None, separator: str = S.DEFAULT_SEPARATOR,
                numeric_ranges: Mapping[str, tuple[float, float]] | None = None) -> np.ndarray:
    """Boolean keep-mask over the rows of ``items`` (align it with the model's items first).

    ``selections``: column -> allowed values (an item passes when its value, or for multi-label
    columns any of its labels, is among them; an empty selection keeps everything).
    ``numeric_ranges``: column -> (low, high), inclusive; items without a value are dropped.
    """
    keep = np.ones(len(items), dtype=bool)
    roles = roles or {}
    for column, allowed in (selections or {}).items():
        if not allowed or column not in items.columns:
            continue
        allowed = {str(a) for a in allowed}
        text = items[column].astype("string").fillna("").str.strip()
        if roles.get(column) == S.MULTI_LABEL:
            pattern = re.escape(separator)
            hits = text.str.split(pattern, regex=True).map(
                lambda labels: any(label.strip() in allowed for label in labels) if isinstance(labels, list) else False)
            keep &= hits.to_numpy(dtype=bool)
        else:
            keep &= text.isin(allowed).to_numpy(dtype=bool)
    for column, (low, high) in (numeric_ranges or {}).items():
        if column not in items.columns:
            continue
        values = pd.to_numeric(items[column], errors="coerce").to_numpy(dtype=float)
        keep &= (values >= low) & (values <= high)
    return keep


def mmr_rerank(candidates: Sequence[int], relevance: Sequence[float], vectors: np.ndarray, k: int,
               diversity: float = 0.0) -> list[int]:
    """Maximal marginal relevance: positions into ``candidates`` in the new order (``k`` of them).

    Each step picks ``argmax (1 - diversity) * rel - diversity * max cosine to the picked items``,
    with relevance rescaled to [0, 1] over the candidates. ``diversity = 0`` keeps the order by
    relevance; 1 picks the most different item each time (after the most relevant one).
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    relevance = np.asarray(relevance, dtype=np.float64)
    k = int(min(k, len(candidates)))
    if k <= 0:
        return []
    order_by_relevance = list(np.argsort(-relevance, kind="stable"))
    if diversity <= 0 or k == 1:
        return [int(i) for i in order_by_relevance[:k]]
    finite = np.isfinite(relevance)
    lo, hi = (relevance[finite].min(), relevance[finite].max()) if finite.any() else (0.0, 1.0)
    rel = np.where(finite, (relevance - lo) / (hi - lo) if hi > lo else 1.0, 0.0)
    vecs = vectors[candidates]
    sims = vecs @ vecs.T
    chosen = [int(order_by_relevance[0])]
    max_sim = sims[chosen[0]].copy()
    available = np.ones(len(candidates), dtype=bool)
    available[chosen[0]] = False
    diversity = float(min(max(diversity, 0.0), 1.0))
    while len(chosen) < k:
        gain = (1 - diversity) * rel - diversity * max_sim
        gain[~available] = -np.inf
        pick = int(np.argmax(gain))
        chosen.append(pick)
        available[pick] = False
        max_sim = np.maximum(max_sim, sims[pick])
    return chosen


def recommend_list(model: Any, user: str | int, k: int = 10, exclude_seen: bool = True,
                   mask: np.ndarray | None = None, diversity: float = 0.0, vectors: np.ndarray | None = None,
                   pool: int | None = None) -> list[tuple[str, float]]:
    """Top-``k`` (item_id, score) for ``user`` after filters, re-ranked by MMR when ``diversity > 0``.

    MMR draws from the ``pool`` best items (default ``max(5 k, 50)``).
    """
    if diversity <= 0 or vectors is None:
        return model.recommend(user, k=k, exclude_seen=exclude_seen, filters=mask)
    pool = pool or max(5 * k, 50)
    ranked = model.recommend(user, k=pool, exclude_seen=exclude_seen, filters=mask)
    if not ranked:
        return []
    indices = [model.item_index(item) for item, _ in ranked]
    order = mmr_rerank(indices, [score for _, score in ranked], vectors, k, diversity)
    return [ranked[i] for i in order]
