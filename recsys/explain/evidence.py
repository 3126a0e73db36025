"""Why an item was recommended: modality shares, similar history items, shared evidence, a sentence.

The sentence is built only from the evidence computed here (no language model, nothing invented):
the modality that carried most of the score, the user's history items most like the recommended
one (cosine of item vectors), and the labels they share (categories, genres, tags, price band).
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..data import schema as S

__all__ = ["MODALITY_LABELS", "item_vectors", "similar_history_items", "shared_evidence", "explanation_sentence",
           "explain_recommendations", "price_bands"]

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


def similar_history_items(vectors: np.ndarray, history: Sequence[int], items: Sequence[int], k: int = 3,
                          min_similarity: float = 0.0) -> list[list[tuple[int, float]]]:
    """For each item, the ``k`` history items (indices) with the highest cosine, best first."""
    history = np.asarray(history, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    if len(history) == 0 or len(items) == 0:
        return [[] for _ in items]
    sims = vectors[items] @ vectors[history].T  # [len(items), len(history)]
    out = []
    for row in sims:
        order = np.argsort(-row, kind="stable")[:k]
        out.append([(int(history[j]), float(row[j])) for j in order if row[j] > min_similarity])
    return out


def price_bands(values: pd.Series) -> pd.Series:
    """'budget' / 'mid-range' / 'premium' by catalogue terciles of a numeric column ('' when missing)."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().sum() < 3:
        return pd.Series([""] * len(values), index=values.index, dtype=object)
    low, high = numbers.quantile([1 / 3, 2 / 3])
    bands = np.where(numbers.isna(), "", np.where(numbers <= low, "budget", np.where(numbers <= high, "mid-range",
                                                                                          "premium")))
    return pd.Series(bands, index=values.index, dtype=object)


def _labels(value: Any, role: str, separator: str) -> set[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return set()
    text = str(value).strip()
    if not text or text.lower() in ("nan", "none", "null"):
        return set()
    if role == S.MULTI_LABEL:
        return {part.strip() for part in re.split(re.escape(separator), text) if part.strip()}
    return {text}


def shared_evidence(items: pd.DataFrame, roles: Mapping[str, str], item_id: str, others: Sequence[str],
                    separator: str = S.DEFAULT_SEPARATOR, price_column: str | None = None,
                    bands: pd.Series | None = None, max_columns: int = 4) -> list[dict[str, Any]]:
    """Labels the item shares with ``others`` (e.g. its most similar history items).

    ``items`` is indexed by item id. Returns one dict per column with shared labels:
    ``column``, ``values`` (shared labels, most shared first) and ``items`` (which of ``others``
    share at least one), categorical columns before multi-label ones, at most ``max_columns``.
    """
    if item_id not in items.index or not others:
        return []
    others = [o for o in others if o in items.index]
    row = items.loc[item_id]
    evidence = []
    for column, role in roles.items():
        if role not in (S.CATEGORICAL, S.MULTI_LABEL) or column not in items.columns:
            continue
        mine = _labels(row[column], role, separator)
        if not mine:
            continue
        counts: dict[str, int] = {}
        sharing = []
        for other in others:
            common = mine & _labels(items.at[other, column], role, separator)
            if common:
                sharing.append(other)
                for label in common:
                    counts[label] = counts.get(label, 0) + 1
        if counts:
            values = sorted(counts, key=lambda v: (-counts[v], v))
            evidence.append({"column": column, "role": role, "values": values, "items": sharing})
    if price_column and bands is not None and item_id in bands.index:
        band = bands.get(item_id, "")
        sharing = [o for o in others if band and bands.get(o, "") == band]
        if sharing:
            evidence.append({"column": price_column, "role": "price_band", "values": [band], "items": sharing})
    evidence.sort(key=lambda e: (e["role"] == S.MULTI_LABEL, e["role"] == "price_band", -len(e["items"])))
    return evidence[:max_columns]


def _quote_list(values: Sequence[str], limit: int = 3) -> str:
    values = [f"“{v}”" for v in values[:limit]]
    if len(values) <= 1:
        return "".join(values)
    return ", ".join(values[:-1]) + " and " + values[-1]


def explanation_sentence(modalities: Sequence[str] | None, shares: Sequence[float] | None,
                         similar_titles: Sequence[str], evidence: Sequence[Mapping[str, Any]]) -> str:
    """One plain sentence from the evidence: the leading modality, similar history items, shared labels."""
    parts = []
    if modalities is not None and shares is not None and len(shares):
        shares = np.asarray(shares, dtype=float)
        positive = np.clip(shares, 0, None)
        if positive.sum() > 0:
            order = np.argsort(-positive)
            lead = modalities[int(order[0])]
            share = positive[order[0]] / positive.sum()
            amount = "almost all of the score" if share >= 0.95 else f"{share:.0%} of the score"
            reason = f"Picked mainly for {_REASON_WORDS.get(lead, lead)} ({amount})"
            if len(order) > 1 and positive[order[1]] / positive.sum() >= 0.25:
                reason += f", then {_REASON_WORDS.get(modalities[int(order[1])], modalities[int(order[1])])}"
            parts.append(reason)
    if similar_titles:
        like = f"it is like {_quote_list(list(similar_titles), 2)} from this user's history"
        parts.append(like if parts else "Picked because " + like)
    if evidence:
        shared = []
        for item in evidence[:2]:
            name = str(item["column"]).replace("_", " ")
            if item["role"] == "price_band":
                shared.append(f"the {item['values'][0]} price band")
            else:
                values = _quote_list(item["values"], 2)
                shared.append(f"{name} {values}")
        text = " and ".join(shared)
        parts.append(f"sharing {text}" if similar_titles else f"it shares {text} with items this user liked")
    if not parts:
        return "Ranked high by the model's overall score for this user; there is no more specific evidence."
    sentence = parts[0]
    if len(parts) == 2:
        sentence += f": {parts[1]}"
    elif len(parts) == 3:
        sentence += f": {parts[1]}, {parts[2]}"
    return sentence.rstrip(".") + "."


def explain_recommendations(model: Any, user: str | int, item_ids: Sequence[str], vectors: np.ndarray,
                            items: pd.DataFrame, roles: Mapping[str, str], title_column: str,
                            separator: str = S.DEFAULT_SEPARATOR, price_column: str | None = None,
                            bands: pd.Series | None = None, k_similar: int = 3) -> list[dict[str, Any]]:
    """Everything the app shows under "Why this?" for each of ``item_ids`` (recommended to ``user``).

    Per item: ``modalities``, ``attention`` and ``shares`` (None for models without attention),
    ``similar`` (list of (item_id, title, cosine)), ``evidence`` (see :func:`shared_evidence`) and
    ``sentence``. ``items`` is indexed by item id.
    """
    row = model.user_index(user)
    seen = model.seen
    history = seen.indices[seen.indptr[row]:seen.indptr[row + 1]] if seen is not None else np.array([], int)
    indices = [model.item_index(i) for i in item_ids]
    parts = None
    if hasattr(model, "explain_scores") and len(item_ids):
        parts = model.explain_scores(user, list(item_ids))
    similar = similar_history_items(vectors, history, indices, k=k_similar)
    titles = items[title_column].astype(str) if title_column in items.columns else pd.Series(dtype=str)
    out = []
    for position, item_id in enumerate(item_ids):
        sims = [(str(model.item_ids[j]), titles.get(str(model.item_ids[j]), str(model.item_ids[j])), s)
                for j, s in similar[position]]
        evidence = shared_evidence(items, roles, str(item_id), [s[0] for s in sims], separator, price_column, bands)
        attention = shares = None
        modalities = None
        if parts is not None:
            modalities = parts["modalities"]
            if parts.get("attention") is not None:
                attention = np.asarray(parts["attention"][position], dtype=float)
            if parts.get("shares") is not None:
                shares = np.asarray(parts["shares"][position], dtype=float)
        sentence = explanation_sentence(modalities if shares is not None else None, shares,
                                        [s[1] for s in sims[:2]], evidence)
        out.append({"item_id": str(item_id), "modalities": modalities, "attention": attention, "shares": shares,
                    "score": None if parts is None else float(parts["score"][position]),
                    "similar": sims, "evidence": evidence, "sentence": sentence})
    return out
