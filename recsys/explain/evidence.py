"""Item vectors and price bands shared by the explainer, the cold-start helpers and the app.

``item_vectors`` is the space "items like this one" is measured in (the fusion model's own item
representation, or an SVD of the interactions for models without one); ``price_bands`` cuts a
price-like column into terciles for the shared-evidence lists.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["item_vectors", "similar_items", "price_bands"]


def item_vectors(model: Any, dim: int = 32) -> np.ndarray:  # noqa: ARG001 (dim kept for callers)
    """L2-normalised item vectors ``[n_items, d]`` for similarity, maps and diversity: the model's own
    :meth:`Recommender.item_embeddings` (the fusion model's fused item space; an SVD of the
    interactions for models without one). Items without any signal get a zero vector."""
    return np.asarray(model.item_embeddings(), dtype=np.float32)


def similar_items(
    model: Any, item: int | str, k: int = 10, vectors: np.ndarray | None = None, keep: np.ndarray | None = None
) -> list[tuple[str, float]]:
    """The ``k`` items nearest to ``item`` in :func:`item_vectors` (pass ``vectors`` to reuse them): (item id,
    cosine), best first, ties by catalogue order; the item itself and items without a vector are left out
    (an item without a vector has no neighbours), and with ``keep`` (``[n_items]`` bool) the items it excludes.
    ``KeyError`` names an unknown item."""
    index = model.item_index(item)
    if not 0 <= index < model.n_items:
        raise KeyError(f"item index {item} out of range (0..{model.n_items - 1})")
    vectors = item_vectors(model) if vectors is None else np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1)
    if norms[index] == 0:
        return []
    cosine = (vectors @ vectors[index]).astype(np.float64) / np.where(norms > 0, norms * norms[index], 1.0)
    kept = norms > 0 if keep is None else (norms > 0) & np.asarray(keep, dtype=bool)
    kept[index] = False
    candidates = np.flatnonzero(kept)
    order = candidates[np.lexsort((candidates, -cosine[candidates]))][: max(int(k), 0)]
    return [(str(model.item_ids[i]), float(cosine[i])) for i in order]


def price_bands(values: pd.Series) -> pd.Series:
    """'budget' / 'mid-range' / 'premium' by catalogue terciles of a numeric column ('' when missing)."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().sum() < 3:
        return pd.Series([""] * len(values), index=values.index, dtype=object)
    low, high = numbers.quantile([1 / 3, 2 / 3])
    bands = np.where(
        numbers.isna(), "", np.where(numbers <= low, "budget", np.where(numbers <= high, "mid-range", "premium"))
    )
    return pd.Series(bands, index=values.index, dtype=object)
