"""The gate's cloze objective, one small function per piece.

A mini-batch of the cloze users (:func:`cloze_batch`) is scored with part of each history hidden; the
hidden items are then predicted either by a softmax over the catalogue (:func:`softmax_cloze_loss`,
each hidden item optionally weighted by the DCG discount of its current rank, :func:`rank_discount`)
or by BPR against one random item each (:func:`bpr_cloze_loss`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F


def cloze_batch(size: int, batch: int, rng: np.random.Generator, device: torch.device) -> torch.Tensor:
    """Sorted rows of a random mini-batch of ``batch`` of the ``size`` cloze users (all when fewer); a dozen
    parameters need no full pass."""
    return torch.as_tensor(np.sort(rng.choice(size, size=batch, replace=False)) if size > batch
                           else np.arange(size), device=device)


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
        rank = ranks(masked)
    return hidden / torch.log2(rank + 2.0)


def softmax_cloze_loss(scores: torch.Tensor, hidden: torch.Tensor, visible: torch.Tensor, rank_weighted: bool
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
