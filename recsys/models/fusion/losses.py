"""The gate's cloze objective, one small function per piece.

:func:`hide_items` draws the cloze sample: part of each sampled user's history hidden. Each step scores a
mini-batch of those users (:func:`cloze_batch`) from the visible part; the hidden items are then
predicted either by a softmax over the catalogue (:func:`softmax_cloze_loss`, each hidden item
optionally weighted by the DCG discount of its current rank, :func:`rank_discount`) or by BPR against
one random item each (:func:`bpr_cloze_loss`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch.nn import functional as F

from ...topk import places_in_rows


def cloze_batch(size: int, batch: int, rng: np.random.Generator, device: torch.device) -> torch.Tensor:
    """Sorted rows of a random mini-batch of ``batch`` of the ``size`` cloze users (all when fewer); a dozen
    parameters need no full pass."""
    return torch.as_tensor(
        np.sort(rng.choice(size, size=batch, replace=False)) if size > batch else np.arange(size), device=device
    )


def ranks(scores: torch.Tensor) -> torch.Tensor:
    """0-based rank of every entry within its row (highest score = 0); ties broken by position."""
    order = torch.argsort(scores, dim=1, descending=True)
    out = torch.empty_like(order)
    out.scatter_(1, order, torch.arange(scores.shape[1], device=scores.device).expand_as(order))
    return out.float()


def rank_discount(masked: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """``hidden`` weighted by the DCG discount of each item's current rank in ``masked``.

    What the metric rewards is the top of the list: a content signal that lifts an item from rank 900
    to 600 should not outweigh one that pushes a good item out of the top 20."""
    with torch.no_grad():
        # 0-based rank of each hidden item (ties share the best), without building the rank permutation
        rank = masked.shape[1] - places_in_rows(masked, hidden, "right")
    return hidden / torch.log2(rank + 2.0)


def softmax_cloze_loss(
    scores: torch.Tensor, hidden: torch.Tensor, visible: torch.Tensor, rank_weighted: bool
) -> torch.Tensor:
    """Mean over users of the (weighted) negative log-likelihood of the hidden items under a softmax over
    the catalogue less the visible items."""
    masked = scores.masked_fill(visible, float("-inf"))
    log_probs = torch.log_softmax(masked, dim=1)
    weight = rank_discount(masked, hidden) if rank_weighted else hidden
    per_user = -(log_probs.masked_fill(hidden == 0, 0.0) * weight).sum(1) / weight.sum(1).clamp(min=1e-9)
    return per_user.mean()


def bpr_cloze_loss(scores: torch.Tensor, hidden: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """BPR: each hidden item against one uniformly drawn item of the catalogue."""
    pos_rows, pos_cols = hidden.nonzero(as_tuple=True)
    negatives = torch.as_tensor(rng.integers(0, scores.shape[1], len(pos_rows)), device=scores.device)
    return -F.logsigmoid(scores[pos_rows, pos_cols] - scores[pos_rows, negatives]).mean()


def hide_items(
    train: sp.csr_matrix,
    eligible: np.ndarray,
    size: int,
    short_history_share: float,
    cloze_ratio: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, sp.csr_matrix, sp.csr_matrix]:
    """The cloze sample: ``size`` of the ``eligible`` users (sorted), each history split at random into
    ``visible`` and ``hidden`` rows ``[size, N]``. A ``short_history_share`` of the users keep only 1-3
    visible items (so the gate learns what short histories are worth); the others hide ``cloze_ratio``."""
    n_items = train.shape[1]
    users = np.sort(rng.choice(eligible, size=size, replace=False))
    vis_rows, vis_cols, hid_rows, hid_cols = [], [], [], []
    short = rng.random(size) < short_history_share
    for r, user in enumerate(users):
        items = train.indices[train.indptr[user] : train.indptr[user + 1]]
        items = rng.permutation(items)
        if short[r] and len(items) >= 3:
            n_visible = int(rng.integers(1, min(3, len(items) - 1) + 1))
        else:
            n_hidden = max(1, round(len(items) * cloze_ratio))
            n_visible = len(items) - n_hidden
        vis_rows += [r] * n_visible
        vis_cols += items[:n_visible].tolist()
        hid_rows += [r] * (len(items) - n_visible)
        hid_cols += items[n_visible:].tolist()
    visible = sp.csr_matrix((np.ones(len(vis_rows), np.float32), (vis_rows, vis_cols)), shape=(size, n_items))
    hidden = sp.csr_matrix((np.ones(len(hid_rows), np.float32), (hid_rows, hid_cols)), shape=(size, n_items))
    return users, visible, hidden
