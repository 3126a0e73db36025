"""Item vectors and price bands shared by the explainer, the cold-start helpers and the app.

``item_vectors`` is the space "items like this one" is measured in (the fusion model's own item
representation, or an SVD of the interactions for models without one); ``price_bands`` cuts a
price-like column into terciles for the shared-evidence lists. Modality labels are the words the
sentences and pages use for each modality.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MODALITY_LABELS", "item_vectors", "price_bands"]

MODALITY_LABELS = {
    "behaviour": "behaviour",
    "text": "text",
    "image": "picture",
    "attributes": "attributes",
}
_REASON_WORDS = {
    "behaviour": "what people with similar taste chose",
    "text": "its description",
    "image": "its picture",
    "attributes": "its attributes",
}


def item_vectors(model: Any, dim: int = 32) -> np.ndarray:  # noqa: ARG001 (dim kept for callers)
    """L2-normalised item vectors ``[n_items, d]`` for similarity, maps and diversity: the model's own
    :meth:`Recommender.item_embeddings` (the fusion model's fused item space; an SVD of the
    interactions for models without one). Items without any signal get a zero vector."""
    return np.asarray(model.item_embeddings(), dtype=np.float32)


def price_bands(values: pd.Series) -> pd.Series:
    """'budget' / 'mid-range' / 'premium' by catalogue terciles of a numeric column ('' when missing)."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().sum() < 3:
        return pd.Series([""] * len(values), index=values.index, dtype=object)
    low, high = numbers.quantile([1 / 3, 2 / 3])
    bands = np.where(numbers.isna(), "", np.where(numbers <= low, "budget", np.where(numbers <= high, "mid-range",
                                                                                          "premium")))
    return pd.Series(bands, index=values.index, dtype=object)
