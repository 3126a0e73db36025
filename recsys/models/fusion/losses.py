"""The gate's cloze objective, one small function per piece.

:func:`hide_items` draws the cloze sample: part of each sampled user's history hidden. Each step scores a
mini-batch of those users (:func:`cloze_batch`) from the visible part; the hidden items are then
predicted either by a softmax over the catalogue (:func:`softmax_cloze_loss`, each hidden item
optionally weighted by the DCG discount of its current rank, :func:`hidden_ranks`) or by BPR against
one random item each (:func:`bpr_cloze_loss`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch.nn import functional as F

from ...topk import sorted_rows


def cloze_batch(size: int, batch: int, rng: np.random.Generator, device: torch.device) -> torch.Tensor:
    """Sorted rows of a random mini-batch of ``batch`` of the ``size`` cloze users (all when fewer); a dozen
    parameters need no full pass."""
    return torch.as_tensor(
        np.sort(rng.choice(size, size=batch, replace=False)) if size > batch else np.arange(size), device=device
    )


def softmax_cloze_loss(
    scores: torch.Tensor, hidden: torch.Tensor, visible: torch.Tensor, rank_weighted: bool
) -> torch.Tensor:
    """Mean over users of the (weighted) negative log-likelihood of the hidden items under a softmax over
    the catalogue less the visible items (users without hidden items count 0).

    Computed on the hidden entries only (a few dozen per user of a catalogue of thousands): a
    log-sum-exp per row and the hidden items' scores, never the ``[B, N]`` log-probabilities and weights
    (the same loss and gradient as the dense form in half the time of a training step's loss)."""
    masked = scores.masked_fill(visible, float("-inf"))
    rows, columns = torch.nonzero(hidden, as_tuple=True)
    picked = masked[rows, columns]
    log_probs = picked - torch.logsumexp(masked, dim=1)[rows]
    weight = hidden[rows, columns]
    if rank_weighted:
        # what the metric rewards is the top of the list: a content signal that lifts an item from rank 900
        # to 600 should not outweigh one that pushes a good item out of the top 20 (the DCG discount)
        weight = weight / torch.log2(hidden_ranks(masked, rows, picked) + 2.0)
    users = scores.shape[0]
    total = torch.zeros(users, dtype=scores.dtype, device=scores.device).index_add_(0, rows, -log_probs * weight)
    mass = torch.zeros(users, dtype=scores.dtype, device=scores.device).index_add_(0, rows, weight)
    return (total / mass.clamp(min=1e-9)).mean()


@torch.no_grad()
def hidden_ranks(masked: torch.Tensor, rows: torch.Tensor, picked: torch.Tensor) -> torch.Tensor:
    """0-based rank from the top of each hidden entry (row ``rows[j]``, score ``picked[j]``, ``rows`` sorted)
    within its row of ``masked``, ties sharing the best: the entries strictly above it, counted by a binary
    search in the sorted row (one vectorised search for every row, the hidden scores padded to a rectangle)."""
    users, n_items = masked.shape
    if rows.numel() == 0:
        return torch.zeros(0, device=masked.device)
    ordered = sorted_rows(masked.detach()).to(masked.device)  # ascending
    counts = torch.bincount(rows, minlength=users)
    slot = torch.arange(rows.numel(), device=rows.device) - (torch.cumsum(counts, 0) - counts)[rows]
    queries = torch.full((users, int(counts.max())), float("inf"), dtype=masked.dtype, device=masked.device)
    queries[rows, slot] = picked.detach()
    at_most = torch.searchsorted(ordered, queries, right=True)  # entries scoring at most the hidden item's
    return (n_items - at_most[rows, slot]).to(masked.dtype)


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
