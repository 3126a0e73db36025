"""Attention weights of the fusion model, aggregated for the Attention page.

The unit is a (user, item) pair where the item is one of the user's top-``k`` recommendations
(seen items excluded): that is where attention matters. A modality the item lacks (no picture,
no text) has no weight there: it is NaN, not 0, so averages are over items that have it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..data import schema as S
from ..topk import k_largest

__all__ = [
    "has_attention",
    "top_items_attention",
    "attention_by_category",
    "pca_2d",
    "ground_truth_comparison",
    "user_weights_frame",
    "dominant_modality",
    "leaning_modality",
    "NO_LEAN",
    "LEAN_MARGIN",
    "segment_recovery",
    "SEGMENT_MODALITY",
]

#: The demo generator's taste segments and the modality each one weights most.
SEGMENT_MODALITY = {"visual": "image", "text": "text", "attributes": "attributes", "behaviour": "behaviour"}


def has_attention(model: Any) -> bool:
    """True for a fusion model whose fusion produces per-modality weights (attention, mean, item_gate)."""
    return bool(model.explains_by_modality())


def top_items_attention(
    model: Any,
    k: int = 20,
    max_users: int | None = 2000,
    seed: int = 0,
    users: Sequence[int] | np.ndarray | None = None,
    batch_size: int = 256,
    keep: np.ndarray | None = None,
) -> pd.DataFrame:
    """Attention over each user's top-``k`` items: one row per (user, item).

    Columns ``user_row``, ``user_id``, ``rank`` (1 = best), ``item_index``, ``item_id``, ``score``,
    then one column per modality (weights summing to 1 over the item's present modalities; NaN
    where the item lacks the modality). At most ``max_users`` users (a seeded sample) unless
    ``users`` lists the rows. ``keep`` (``[n_items]`` bool): only those items are ranked (e.g. the items
    still in the catalogue); ``k`` is then at most their number.
    """
    modalities = list(model.modalities)
    if users is None:
        picked = np.arange(model.n_users)
        if max_users is not None and len(picked) > max_users:
            picked = np.sort(np.random.default_rng(seed).choice(picked, size=max_users, replace=False))
        users = picked
    users = np.asarray(users, dtype=np.int64)
    present_all = model.item_presence()
    seen = model.seen
    # the lists users are shown: never an item the catalogue does not sell
    keep = model.for_sale() if keep is None else model.for_sale() & np.asarray(keep, dtype=bool)
    frames = []
    k = int(min(k, int(np.sum(keep))))
    if k <= 0:  # nothing left to rank (every item dropped by the catalogue): no rows
        users = users[:0]
    for start in range(0, len(users), batch_size):
        rows = users[start : start + batch_size]
        scores = model.score(rows).astype(np.float64)
        scores[:, ~keep] = -np.inf
        if seen is not None:
            block = seen[rows]
            scores[block.nonzero()] = -np.inf
        top = k_largest(scores, k, axis=1)
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        top_scores = np.take_along_axis(top_scores, order, axis=1)
        union, inverse = np.unique(top, return_inverse=True)
        weights = model.attention_matrix(rows, union)  # [B, |union|, M]
        inverse = inverse.reshape(top.shape)
        picked = weights[np.arange(len(rows))[:, None], inverse]  # [B, k, M]
        if present_all is not None:
            picked = np.where(present_all[top], picked, np.nan)
        frame = pd.DataFrame(
            {
                "user_row": np.repeat(rows, k),
                "rank": np.tile(np.arange(1, k + 1), len(rows)),
                "item_index": top.ravel(),
                "score": top_scores.ravel(),
            }
        )
        for m, name in enumerate(modalities):
            frame[name] = picked[:, :, m].ravel()
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["user_row", "user_id", "rank", "item_index", "item_id", "score", *modalities])
    out = pd.concat(frames, ignore_index=True)
    out = out[np.isfinite(out["score"])]
    out.insert(1, "user_id", np.asarray(model.user_ids)[out["user_row"].to_numpy()])
    out.insert(4, "item_id", np.asarray(model.item_ids)[out["item_index"].to_numpy()])
    return out.reset_index(drop=True)


def attention_by_category(
    frame: pd.DataFrame,
    items: pd.DataFrame,
    column: str,
    modalities: Sequence[str],
    role: str = S.CATEGORICAL,
    separator: str = S.DEFAULT_SEPARATOR,
    top: int = 20,
) -> pd.DataFrame:
    """Mean attention per value of an item column (rows) and modality (columns), plus ``pairs``
    (how many (user, item) pairs each mean is over). ``items`` is indexed by item id. The ``top``
    most frequent values are kept.

    An item lacking a modality counts 0 for it here (not NaN, as in ``frame``): a row is the mean attention
    weight over this group's recommended items, each item's weights adding up to 1, so the row does too. Averaging
    each modality over only the items that have it gave rows of 105-109 % on a catalogue with missing
    pictures, which read as a mistake."""
    values = items[column].reindex(frame["item_id"]).astype("string").fillna("").str.strip().to_numpy()
    data = frame[list(modalities)].fillna(0.0)
    data["value"] = values
    if role == S.MULTI_LABEL:
        data["value"] = data["value"].str.split(re.escape(separator), regex=True)
        data = data.explode("value")
        data["value"] = data["value"].astype(str).str.strip()
    data = data[data["value"] != ""]
    if data.empty:
        return pd.DataFrame(columns=[*modalities, "pairs"])
    grouped = data.groupby("value")
    table = grouped[list(modalities)].mean()
    table["pairs"] = grouped.size()
    return table.sort_values("pairs", ascending=False).head(top)


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """The first two principal components of the rows of ``vectors`` (``[n, 2]``)."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        return np.zeros((0, 2))
    x = x - x.mean(axis=0, keepdims=True)
    if x.shape[1] < 2:
        return np.hstack([x, np.zeros((len(x), 2 - x.shape[1]))])
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    coords = x @ vt[:2].T
    # a deterministic orientation: the largest loading of each component is positive
    signs = np.sign(vt[:2][np.arange(2), np.abs(vt[:2]).argmax(axis=1)])
    return coords * np.where(signs == 0, 1, signs)


def ground_truth_comparison(summary: pd.DataFrame, truth: pd.DataFrame, modalities: Sequence[str]) -> pd.DataFrame:
    """Learned attention per ground-truth segment beside the true weights (the demo catalog).

    ``summary`` has ``user_id`` and one weight column per modality (e.g. :func:`user_weights_frame`); ``truth`` has ``user_id``, ``segment`` and
    ``w_<modality>`` columns. Learned weights are renormalised over the modalities the model uses
    that the truth also has, so both sides sum to 1. Returns rows ``segment``, ``modality``,
    ``learned``, ``true``, ``users``.
    """
    truth = truth.copy()
    truth["user_id"] = truth["user_id"].astype(str)
    shared = [m for m in modalities if f"w_{m}" in truth.columns]
    if not shared:
        return pd.DataFrame(columns=["segment", "modality", "learned", "true", "users"])
    merged = summary.merge(truth[["user_id", "segment", *[f"w_{m}" for m in shared]]], on="user_id", how="inner")
    if merged.empty:
        return pd.DataFrame(columns=["segment", "modality", "learned", "true", "users"])
    learned = merged[shared].fillna(0.0)
    learned = learned.div(learned.sum(axis=1).replace(0, np.nan), axis=0)
    true = merged[[f"w_{m}" for m in shared]].to_numpy(dtype=float)
    true = true / np.where(true.sum(axis=1, keepdims=True) > 0, true.sum(axis=1, keepdims=True), 1.0)
    rows = []
    for segment, index in merged.groupby("segment").groups.items():
        positions = merged.index.get_indexer(index)
        for j, modality in enumerate(shared):
            rows.append(
                {
                    "segment": segment,
                    "modality": modality,
                    "learned": float(np.nanmean(learned.iloc[positions, j])),
                    "true": float(true[positions, j].mean()),
                    "users": int(len(positions)),
                }
            )
    return pd.DataFrame(rows)


def user_weights_frame(model: Any, users: Sequence[int] | None = None) -> pd.DataFrame:
    """Per user: the model's modality weights (``model.user_modality_weights``, what the scores use),
    ``history_length`` (training items) and ``dominant`` (the modality the user weights most *relative
    to other users*: the arg-max of the weights minus each modality's mean over users; ``NO_LEAN`` when no
    weight is ``LEAN_MARGIN`` above its mean, see :func:`leaning_modality`)."""
    modalities = list(model.modalities)
    rows = np.arange(model.n_users) if users is None else np.asarray(users, dtype=np.int64)
    weights = np.asarray(model.user_modality_weights(rows), dtype=np.float64)
    frame = pd.DataFrame(weights, columns=modalities)
    frame.insert(0, "user_id", np.asarray(model.user_ids)[rows].astype(str))
    frame.insert(1, "user_row", rows)
    frame["history_length"] = np.diff(model.seen.indptr)[rows] if model.seen is not None else np.nan
    frame["dominant"] = leaning_modality(weights, modalities, model.population_weights())
    return frame


#: ``user_weights_frame``'s ``dominant`` of a user whose weights are all within ``LEAN_MARGIN`` of the average
NO_LEAN = "none"
#: how far above the average user's weight a user's weight must be to count as leaning to that modality
LEAN_MARGIN = 0.01


def leaning_modality(
    weights: np.ndarray,
    modalities: Sequence[str],
    population: np.ndarray | None = None,
    margin: float = LEAN_MARGIN,
) -> np.ndarray:
    """:func:`dominant_modality`, or ``NO_LEAN`` where no weight exceeds its modality's mean by ``margin``,
    or where the user's weights are those of a user with no history (``population``, within ``margin``).

    A user the model knows nothing about (one item: no evidence to read) gets the population's weights; the
    plain arg-max puts every such user in whichever modality the other users weigh less on average (on a
    sparse shop, two thirds of the users were "leaning to pictures" by 0.15 points)."""
    weights = np.asarray(weights, dtype=np.float64)
    leaning = dominant_modality(weights, modalities)
    if len(weights):
        lean = (weights - weights.mean(axis=0, keepdims=True)).max(axis=1)
        leaning[lean < margin] = NO_LEAN
        if population is not None:
            uninformed = np.abs(weights - np.asarray(population, dtype=np.float64)[None, :]).max(axis=1) < margin
            leaning[uninformed] = NO_LEAN
    return leaning


def dominant_modality(weights: np.ndarray, modalities: Sequence[str]) -> np.ndarray:
    """Arg-max of each row of ``weights`` centred by the column means (the modality a user leans to)."""
    weights = np.asarray(weights, dtype=np.float64)
    if len(weights) == 0:
        return np.asarray([], dtype=object)
    centred = weights - weights.mean(axis=0, keepdims=True)
    return np.asarray(modalities, dtype=object)[centred.argmax(axis=1)]


def spearman_rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    if len(ra) < 3 or ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def segment_recovery(weights_frame: pd.DataFrame, truth: pd.DataFrame, modalities: Sequence[str]) -> dict[str, Any]:
    """How well per-user weights recover the demo's planted segments and weights.

    ``weights_frame`` from :func:`user_weights_frame`; ``truth`` has ``user_id``, ``segment`` and
    ``w_<modality>``. Returns ``users``, ``segment_accuracy`` (dominant modality = the segment's),
    ``per_segment`` accuracy, ``content_segment_accuracy`` (the text, visual and attribute segments) and
    ``spearman`` (learned vs true weight, per modality, over users).
    """
    truth = truth.assign(user_id=truth["user_id"].astype(str))
    merged = weights_frame.merge(truth, on="user_id", how="inner")
    if merged.empty:
        return {"users": 0}
    expected = merged["segment"].map(SEGMENT_MODALITY).to_numpy()
    shared = [m for m in modalities if m in set(expected)]
    predicted = dominant_modality(merged[list(modalities)].to_numpy(), modalities)
    hit = predicted == expected
    content = np.isin(expected, ["text", "image", "attributes"])
    return {
        "users": int(len(merged)),
        "segment_accuracy": float(hit.mean()),
        "content_segment_accuracy": float(hit[content].mean()) if content.any() else float("nan"),
        "per_segment": {
            segment: float(hit[expected == modality].mean())
            for segment, modality in SEGMENT_MODALITY.items()
            if (expected == modality).any()
        },
        "spearman": {
            m: spearman_rank_correlation(merged[m].to_numpy(), merged[f"w_{m}"].to_numpy())
            for m in shared
            if f"w_{m}" in merged
        },
    }
