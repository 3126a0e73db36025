"""Are the modality shares faithful? Mask a modality and see what happens to the score.

For each (user, recommended item) pair whose item has at least two modalities present: mask the
modality with the largest share (its token's ``present`` set to False, the item re-fused with the
remaining modalities, weights renormalised over them; masking behaviour also removes the popularity
prior, which is behaviour evidence and part of the behaviour share), then separately the modality
with the smallest share. If the shares mean what an explanation says they mean, removing the largest share
lowers the score more than removing the smallest. The *rate* is the share of pairs where it does.

Only models with additive shares qualify (the fusion model with attention, mean or item_gate
fusion); others raise ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..topk import k_largest

__all__ = ["faithfulness_check", "masked_scores", "recommended_pairs"]


def _require_shares(model: Any) -> None:
    if not model.explains_by_modality():
        raise ValueError(
            f"{getattr(model, 'name', type(model).__name__)} has no modality shares to check "
            "(only the fusion model with attention, mean or item-gate fusion has them)"
        )


def recommended_pairs(
    model: Any, k: int = 10, max_users: int | None = 300, seed: int = 0, users: Sequence[int] | np.ndarray | None = None
) -> list[tuple[int, int]]:
    """(user row, item index) for each sampled user's top-``k`` unseen items."""
    if users is None:
        picked = np.arange(model.n_users)
        if max_users is not None and len(picked) > max_users:
            picked = np.sort(np.random.default_rng(seed).choice(picked, size=max_users, replace=False))
        users = picked
    pairs = []
    for start in range(0, len(users), 256):
        rows = np.asarray(users[start : start + 256], dtype=np.int64)
        scores = model.score(rows).astype(np.float64)
        if model.seen is not None:
            scores[model.seen[rows].nonzero()] = -np.inf
        kk = int(min(k, model.n_items))
        top = k_largest(scores, kk, axis=1)
        for r, row in enumerate(rows):
            for item in top[r]:
                if np.isfinite(scores[r, item]):
                    pairs.append((int(row), int(item)))
    return pairs


def masked_scores(model: Any, user: int, items: Sequence[int], masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores of ``items`` for ``user`` as they are and with ``masks`` [len(items), M] (True = hide):
    the model's own :meth:`masked_scores` (the item re-mixed over its remaining modalities)."""
    return model.masked_scores(int(user), np.asarray(items, dtype=np.int64), np.asarray(masks, dtype=bool))


def faithfulness_check(
    model: Any,
    pairs: Sequence[tuple[int | str, int | str]] | None = None,
    *,
    k: int = 10,
    max_users: int | None = 300,
    seed: int = 0,
) -> dict[str, Any]:
    """Mask the largest-share and the smallest-share modality of each pair; compare the score drops.

    ``pairs``: (user, item) ids or indices; default: the top-``k`` recommendations of up to
    ``max_users`` users (seeded sample). Returns ``rate`` (share of eligible pairs where masking the
    largest share lowers the score more), ``pairs`` (eligible), ``skipped`` (items with a single
    modality), ``mean_drop_largest``, ``mean_drop_smallest`` and ``by_largest`` (rate and count per
    modality that held the largest share).
    """
    _require_shares(model)
    if pairs is None:
        pairs = recommended_pairs(model, k=k, max_users=max_users, seed=seed)
    by_user: dict[int, list[int]] = {}
    for user, item in pairs:
        by_user.setdefault(model.user_index(user), []).append(model.item_index(item))
    modalities = list(model.modalities)
    wins: list[bool] = []
    drops_large: list[float] = []
    drops_small: list[float] = []
    largest_of: list[str] = []
    skipped = 0
    for user, items in by_user.items():
        parts = model.explain_scores(user, items)
        shares = np.asarray(parts["shares"], dtype=np.float64)  # [k, M]
        present = np.asarray(parts["present"], dtype=bool)
        eligible = present.sum(1) >= 2
        skipped += int((~eligible).sum())
        if not eligible.any():
            continue
        items_ok = np.asarray(items)[eligible]
        shares, present = shares[eligible], present[eligible]
        large = np.where(present, shares, -np.inf).argmax(1)
        small = np.where(present, shares, np.inf).argmin(1)
        rows = np.arange(len(items_ok))
        mask_large = np.zeros_like(present)
        mask_large[rows, large] = True
        mask_small = np.zeros_like(present)
        mask_small[rows, small] = True
        base, without_large = masked_scores(model, user, items_ok, mask_large)
        _, without_small = masked_scores(model, user, items_ok, mask_small)
        drop_large, drop_small = base - without_large, base - without_small
        wins.extend((drop_large > drop_small).tolist())
        drops_large.extend(drop_large.tolist())
        drops_small.extend(drop_small.tolist())
        largest_of.extend(modalities[m] for m in large)
    wins_arr = np.asarray(wins, dtype=bool)
    largest_arr = np.asarray(largest_of)
    by_largest = {
        m: {
            "pairs": int((largest_arr == m).sum()),
            "rate": float(wins_arr[largest_arr == m].mean()) if (largest_arr == m).any() else None,
        }
        for m in modalities
    }
    return {
        "rate": float(wins_arr.mean()) if len(wins_arr) else float("nan"),
        "pairs": int(len(wins_arr)),
        "skipped": skipped,
        "users": len(by_user),
        "mean_drop_largest": float(np.mean(drops_large)) if drops_large else float("nan"),
        "mean_drop_smallest": float(np.mean(drops_small)) if drops_small else float("nan"),
        "by_largest": by_largest,
    }
