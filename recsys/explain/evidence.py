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


def item_vectors(model: Any, dim: int = 32) -> np.ndarray:
    """L2-normalised item vectors ``[n_items, d]`` for similarity, maps and diversity.

    The fusion model: the mean of each item's present modality tokens (the fused item space).
    Any other model: a truncated SVD of its training interactions (items that share users are
    close). Items without any signal get a zero vector (cosine 0 with everything).
    """
    tokens = getattr(model, "_eval_tokens", None)
    if tokens is not None:
        present = model._eval_present
        tokens = tokens.detach().float().cpu().numpy()
        present = present.detach().cpu().numpy().astype(np.float32)
        vectors = (tokens * present[..., None]).sum(1) / np.maximum(present.sum(1, keepdims=True), 1.0)
    else:
        vectors = _svd_item_vectors(model.seen, dim)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _svd_item_vectors(seen: Any, dim: int) -> np.ndarray:
    import scipy.sparse as sp
    from scipy.sparse.linalg import svds

    matrix = sp.csr_matrix(seen, dtype=np.float32)
    n_users, n_items = matrix.shape
    k = int(min(dim, n_users - 1, n_items - 1))
    if k < 1 or matrix.nnz == 0:
        return np.zeros((n_items, 1), dtype=np.float32)
    # tf-idf like column weighting keeps the most popular items from dominating every direction
    counts = np.asarray(matrix.sum(axis=0)).ravel()
    weighted = matrix @ sp.diags(1.0 / np.sqrt(np.maximum(counts, 1.0)))
    try:
        _, s, vt = svds(weighted.astype(np.float64), k=k, random_state=0)
    except Exception:  # tiny or degenerate matrices: dense SVD
        _, s, vt = np.linalg.svd(weighted.toarray(), full_matrices=False)
        s, vt = s[:k], vt[:k]
    return (vt.T * s).astype(np.float32)


def price_bands(values: pd.Series) -> pd.Series:
    """'budget' / 'mid-range' / 'premium' by catalogue terciles of a numeric column ('' when missing)."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().sum() < 3:
        return pd.Series([""] * len(values), index=values.index, dtype=object)
    low, high = numbers.quantile([1 / 3, 2 / 3])
    bands = np.where(numbers.isna(), "", np.where(numbers <= low, "budget", np.where(numbers <= high, "mid-range",
                                                                                          "premium")))
    return pd.Series(bands, index=values.index, dtype=object)
