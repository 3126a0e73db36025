"""The attention-fusion recommender: one token per modality per item, attention with the user as query.

Per item ``i`` and modality ``m`` in (behaviour, text, image, attributes) a token ``e[i, m]`` of width
``d``; the user vector ``u`` is a learned user embedding plus a pooling of the user's history items
(leave-one-out during training, so a model never learns to find an item through itself). Then::

    a[u, i, m] = softmax_m( q(u) . k(e[i, m]) / sqrt(d) + bias_m )      (masked where m is missing)
    score(u, i) = sum_m a[u, i, m] * (u . v(e[i, m]))                    = sum_m share[u, i, m]

so each modality's share of the score is exact and additive (the explanation and attention pages
show it). Variants for ablation: ``mean`` (equal weights over present modalities), ``item_gate``
(user-independent weights) and ``concat`` (an MLP over the concatenated tokens; no shares).

Items never seen in training get a shared "unknown" behaviour token and are scored from content;
behaviour dropout during training (the token swapped for the unknown one) teaches the model to do
that. Modality dropout masks content tokens at random so a missing picture or text is not a shock.
The default loss is the softmax over the whole catalogue (the exact log-sum-exp normalisation) in a
cloze set-up: per user, a random part of the history is hidden from the input pooling and predicted
from the rest, which is exactly the test-time task. For catalogues over ``full_softmax_max_items`` it
trains on (user, item) pairs with sampled negatives (in-batch + uniform, logQ-corrected); ``bpr`` and
``mse`` also train on pairs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from .base import Recommender, TrainData

MODALITIES = ("behaviour", "text", "image", "attributes")
FUSIONS = ("attention", "mean", "item_gate", "concat")
LOSSES = ("softmax", "bpr", "mse")

DEFAULTS: dict[str, Any] = {
    "dim": 64,                      # width d of every modality token
    "modalities": list(MODALITIES),  # which tokens exist
    "fusion": "attention",          # attention | mean | item_gate | concat
    "loss": "softmax",              # softmax (full or sampled) | bpr | mse (explicit ratings)
    "epochs": 200,
    "batch_size": 32,              # users per step (cloze training) or pairs per step x 8 (pair training)
    "cloze_ratio": 0.1,             # share of a user's history hidden from the input and predicted
    "lr": 3e-3,
    "weight_decay": 0.05,
    "embedding_l2": 1e-5,           # L2 on the embeddings used in a batch (scaled per example)
    "dropout": 0.1,
    "modality_dropout": 0.1,        # chance a present content token is hidden during training
    "behaviour_dropout": 0.2,       # chance an item's behaviour token is swapped for "unknown" while training
    "history_exponent": 0.5,        # pooled history = sum / n^exponent (0.5: FISM-style)
    "use_user_embedding": False,
    "graph_layers": 0,              # LightGCN-style propagation of behaviour embeddings (0 = off)
    "behaviour_bias_init": 0.0,
    "content_value_init": 0.5,      # weight of content parts for warm items at the start (0: behaviour first)
    "learned_behaviour": "auto",    # per-item learned behaviour embeddings; "auto": off when the prior is on     # initial attention logit of the behaviour token (others start at 0)
    "behaviour_prior": "auto",      # "ease": add a closed-form item-item score to the behaviour part; "none"
    "prior_l2": 250.0,              # L2 of that item-item model
    "prior_max_items": 8_000,       # "auto" uses the prior up to this many items (it is items x items)
    "prior_folds": 5,               # training sees out-of-fold item-item scores (no leakage of a user's own rows)
    "temperature": 1.0,
    "full_softmax_max_items": 50_000,
    "num_negatives": 1024,          # sampled softmax / BPR negatives when the catalogue is large
    "patience": 5,                  # epochs without valid NDCG@20 improvement before stopping
    "eval_every": 1,
    "seed": 2026,
    "device": "auto",
    "amp": True,                    # bf16/fp16 autocast on CUDA
}


# ----------------------------------------------------------------------------- content arrays

@dataclass
class ContentArrays:
    """Item content as plain arrays aligned with the model's items (saved with the model)."""

    text: np.ndarray | None
    text_mask: np.ndarray | None
    image: np.ndarray | None
    image_mask: np.ndarray | None
    cat_index: np.ndarray | None  # int64 [N, C], 0 = none; columns offset into one table
    n_cat: int
    multi: sp.csr_matrix | None  # [N, V] row-normalised multi-hot
    numeric: np.ndarray | None  # float32 [N, F] values and missing indicators
    attr_mask: np.ndarray | None

    @classmethod
    def from_features(cls, features: Any, n_items: int) -> "ContentArrays":
        if features is None:
            return cls(None, None, None, None, None, 0, None, None, None)
        if isinstance(features, np.ndarray):  # plain matrix: treat it as text-like content
            return cls(features.astype(np.float32), np.ones(n_items, bool), None, None, None, 0, None, None, None)
        text = getattr(features, "text", None)
        image = getattr(features, "image", None)
        cat_index, n_cat, multi, numeric, attr_mask = None, 0, None, None, None
        attributes = getattr(features, "attributes", None)
        if attributes is not None:
            present = np.zeros(n_items, dtype=bool)
            columns = []
            offset = 0
            for name, index in attributes.categorical.items():
                index = np.asarray(index, dtype=np.int64)
                columns.append(np.where(index > 0, index + offset, 0))
                present |= index > 0
                offset += len(attributes.categorical_vocab[name]) + 1
            if columns:
                cat_index, n_cat = np.stack(columns, axis=1), offset + 1
            blocks = [sp.csr_matrix(m, dtype=np.float32) for m in attributes.multi_label.values()]
            if blocks:
                multi = sp.hstack(blocks).tocsr()
                counts = np.asarray(multi.sum(axis=1)).ravel()
                present |= counts > 0
                multi = sp.diags(1.0 / np.maximum(counts, 1)).dot(multi).tocsr().astype(np.float32)
            if attributes.numeric is not None and attributes.numeric.size:
                missing = np.asarray(attributes.numeric_missing, dtype=bool)
                numeric = np.concatenate([np.nan_to_num(attributes.numeric).astype(np.float32),
                                          missing.astype(np.float32)], axis=1)
                present |= ~missing.all(axis=1)
            attr_mask = present if (columns or blocks or numeric is not None) else None
        return cls(
            None if text is None else np.asarray(text, np.float32),
            None if text is None else np.asarray(features.text_mask, bool),
            None if image is None else np.asarray(image, np.float32),
            None if image is None else np.asarray(features.image_mask, bool),
            cat_index, n_cat, multi, numeric, attr_mask)

    def to_state(self) -> dict[str, np.ndarray]:
        state: dict[str, np.ndarray] = {}
        for name in ("text", "text_mask", "image", "image_mask", "cat_index", "numeric", "attr_mask"):
            value = getattr(self, name)
            if value is not None:
                state[f"content.{name}"] = np.ascontiguousarray(value)
        state["content.n_cat"] = np.array([self.n_cat], dtype=np.int64)
        if self.multi is not None:
            state["content.multi.indptr"] = self.multi.indptr.astype(np.int64)
            state["content.multi.indices"] = self.multi.indices.astype(np.int64)
            state["content.multi.data"] = self.multi.data.astype(np.float32)
            state["content.multi.shape"] = np.array(self.multi.shape, dtype=np.int64)
        return state

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> "ContentArrays":
        get = lambda name: state.get(f"content.{name}")  # noqa: E731
        multi = None
        if "content.multi.indptr" in state:
            multi = sp.csr_matrix((get("multi.data"), get("multi.indices"), get("multi.indptr")),
                                  shape=tuple(get("multi.shape")))
        mask = lambda name: None if get(name) is None else get(name).astype(bool)  # noqa: E731
        return cls(get("text"), mask("text_mask"), get("image"), mask("image_mask"), get("cat_index"),
                   int(get("n_cat")[0]), multi, get("numeric"), mask("attr_mask"))


def _sparse_tensor(matrix: sp.csr_matrix, device: torch.device) -> torch.Tensor:
    coo = matrix.tocoo()
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(indices, torch.from_numpy(coo.data.astype(np.float32)), coo.shape,
                                   device=device, check_invariants=False).coalesce()


# ----------------------------------------------------------------------------- the network

class FusionNetwork(nn.Module):
    def __init__(self, n_users: int, n_items: int, content: ContentArrays, config: dict[str, Any]):
        super().__init__()
        d = int(config["dim"])
        self.d = d
        self.fusion = config["fusion"]
        wanted = list(config["modalities"])
        available = {"behaviour": True, "text": content.text is not None, "image": content.image is not None,
                     "attributes": content.attr_mask is not None}
        self.modalities = [m for m in MODALITIES if m in wanted and available[m]]
        if not self.modalities:
            raise ValueError(f"none of the requested modalities {wanted} has data")
        self.use_user_embedding = bool(config["use_user_embedding"])
        self.history_exponent = float(config["history_exponent"])
        self.graph_layers = int(config["graph_layers"])
        self.dropout = nn.Dropout(float(config["dropout"]))

        self.user_embedding = nn.Embedding(n_users, d)
        self.item_embedding = nn.Embedding(n_items, d)  # behaviour token
        self.history_embedding = nn.Embedding(n_items, d)  # item as part of a user's history
        self.unknown_item = nn.Parameter(torch.zeros(d))
        self.known_item = nn.Parameter(torch.zeros(d))  # shared behaviour token when embeddings are not learned
        self.learned_behaviour = True
        for table in (self.user_embedding, self.item_embedding, self.history_embedding):
            nn.init.normal_(table.weight, std=0.05)
        nn.init.normal_(self.unknown_item, std=0.05)
        if content.text is not None:
            self.text_proj = nn.Sequential(nn.Linear(content.text.shape[1], d), nn.LayerNorm(d))
        if content.image is not None:
            self.image_proj = nn.Sequential(nn.Linear(content.image.shape[1], d), nn.LayerNorm(d))
        if content.attr_mask is not None:
            self.cat_table = nn.Embedding(max(content.n_cat, 1), d, padding_idx=0) if content.cat_index is not None else None
            self.multi_table = nn.Parameter(torch.randn(content.multi.shape[1], d) * 0.05) if content.multi is not None else None
            self.numeric_proj = nn.Linear(content.numeric.shape[1], d) if content.numeric is not None else None
            self.attr_norm = nn.LayerNorm(d)
        self.content_to_history = nn.Linear(d, d, bias=False)
        nn.init.zeros_(self.content_to_history.weight)

        m = len(self.modalities)
        self.query = nn.Linear(d, d, bias=False)
        self.key = nn.Linear(d, d, bias=False)
        # Start where a strong collaborative model is: keys at zero (attention = the biases alone, the
        # same for every item), the behaviour value map at identity and content value maps at zero, so
        # the first ranking is the behaviour ranking and content earns its weight by lowering the loss.
        nn.init.zeros_(self.key.weight)
        # content maps start as a scaled identity: a content part is then the similarity of the item to
        # the user's history *in that modality*, scaled by what training finds it is worth
        value_init = torch.eye(d).repeat(m, 1, 1) / d
        if self.modalities[0] == "behaviour":
            value_init[0] = torch.eye(d)
        self.value_maps = nn.Parameter(value_init)
        # How much content counts for warm items (row 0) and for cold ones (row 1). A warm item has
        # behaviour evidence and content must earn its place (starts at content_value_init, 0 by
        # default); a cold item has nothing else, so its content counts fully from the start.
        self.has_behaviour = self.modalities[0] == "behaviour"
        scale = torch.ones(2, m)
        scale[0, 1:] = float(config["content_value_init"])
        self.content_scale = nn.Parameter(scale)
        # start from "trust behaviour": a fresh content token is noise until it has learned something,
        # and early stopping should begin from a strong collaborative model, not from a blur of four
        bias = torch.zeros(m)
        if self.modalities[0] == "behaviour" and m > 1:
            bias[0] = float(config["behaviour_bias_init"])
        self.modality_bias = nn.Parameter(bias)
        # weight of the closed-form item-item score inside the behaviour part (used when a prior is given)
        self.prior_scale = nn.Parameter(torch.tensor(10.0))
        self.gate = nn.Linear(d, 1)  # item_gate variant
        if self.fusion == "concat":
            self.concat_mlp = nn.Sequential(nn.Linear(m * d, d), nn.GELU(), nn.Linear(d, d))

    # --- item side
    def content_tokens(self, buffers: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Content tokens [N, d] and presence masks [N] in ``self.modalities`` order (behaviour excluded)."""
        tokens, masks = [], []
        for modality in self.modalities[1:] if self.modalities[0] == "behaviour" else self.modalities:
            if modality == "text":
                tokens.append(self.text_proj(buffers["text"]))
                masks.append(buffers["text_mask"])
            elif modality == "image":
                tokens.append(self.image_proj(buffers["image"]))
                masks.append(buffers["image_mask"])
            elif modality == "attributes":
                total = 0
                if self.cat_table is not None:
                    total = total + self.cat_table(buffers["cat_index"]).sum(dim=1)
                if self.multi_table is not None:
                    total = total + torch.sparse.mm(buffers["multi"], self.multi_table)
                if self.numeric_proj is not None:
                    total = total + self.numeric_proj(buffers["numeric"])
                tokens.append(self.attr_norm(total))
                masks.append(buffers["attr_mask"])
        return tokens, masks

    def behaviour_tokens(self, buffers: dict[str, torch.Tensor]) -> torch.Tensor:
        items = self.item_embedding.weight
        if not self.learned_behaviour:
            # the closed-form prior carries the item-level behaviour signal; the token only tells the
            # attention whether an item has behaviour at all (warm) or not (cold)
            items = self.known_item.expand_as(items)
        if self.graph_layers > 0:
            # LightGCN: mean over layers of the normalised-adjacency propagation of [users; items]
            layer = torch.cat([self.user_embedding.weight, items])
            total = layer
            for _ in range(self.graph_layers):
                layer = torch.sparse.mm(buffers["adjacency"], layer)
                total = total + layer
            items = (total / (self.graph_layers + 1))[self.user_embedding.num_embeddings:]
        known = buffers["known"].unsqueeze(1)
        return torch.where(known, items, self.unknown_item.expand_as(items))

    def item_tokens(self, buffers: dict[str, torch.Tensor], drop: dict[str, float] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens [N, M, d], presence mask [N, M], and history vectors [N, d]."""
        content, masks = self.content_tokens(buffers)
        parts, mask_parts = [], []
        n = buffers["known"].shape[0]
        device = buffers["known"].device
        # items whose behaviour is hidden in this step (simulated cold items); the trainer also drops
        # their item-item prior so the model learns to score an item from content alone
        self.swapped: torch.Tensor | None = None
        if "behaviour" in self.modalities:
            behaviour = self.behaviour_tokens(buffers)
            if drop and drop.get("behaviour", 0) > 0:
                swap = torch.rand(n, device=device) < drop["behaviour"]
                behaviour = torch.where(swap.unsqueeze(1), self.unknown_item.expand_as(behaviour), behaviour)
                self.swapped = swap
            parts.append(behaviour)
            mask_parts.append(torch.ones(n, dtype=torch.bool, device=device))
        for token, mask in zip(content, masks):
            if drop and drop.get("modality", 0) > 0:
                mask = mask & (torch.rand(n, device=device) >= drop["modality"])
            parts.append(token)
            mask_parts.append(mask)
        tokens = torch.stack(parts, dim=1)
        present = torch.stack(mask_parts, dim=1)
        # every item keeps at least one token (dropout may not hide all of them)
        empty = ~present.any(dim=1)
        if empty.any():
            present = present.clone()
            present[empty, 0] = True
        content_mean = None
        if content:
            stacked = torch.stack(content, dim=1)
            content_mask = torch.stack(masks, dim=1).unsqueeze(-1).float()
            content_mean = (stacked * content_mask).sum(1) / content_mask.sum(1).clamp(min=1)
        history = self.history_embedding.weight
        if content_mean is not None:
            history = history + self.content_to_history(content_mean)
        return tokens, present, history

    # --- user side
    def user_vectors(self, users: torch.Tensor, history_sum: torch.Tensor, history_count: torch.Tensor
                     ) -> torch.Tensor:
        pooled = history_sum / history_count.clamp(min=1).pow(self.history_exponent).unsqueeze(1)
        if self.use_user_embedding:
            pooled = pooled + self.user_embedding(users)
        return self.dropout(pooled)

    def pool_modalities(self, history: torch.Tensor, tokens: torch.Tensor, present: torch.Tensor,
                        query: torch.Tensor, leave_out: torch.Tensor | None = None) -> torch.Tensor:
        """Per-modality user vectors [B, M, d]: the mean of the history items' tokens in each modality.

        The behaviour slot is the learned user vector ``query`` (history embeddings pooled). A
        modality's part score compares the item with the user's history in that modality's own
        space, so "likes things that look like this" and "likes things described like this" stay
        separate and the attention can weigh them.
        """
        n, m, d = tokens.shape
        masked = tokens * present.unsqueeze(-1)
        sums = torch.sparse.mm(history, masked.reshape(n, m * d)).reshape(-1, m, d)
        counts = torch.sparse.mm(history, present.float())
        if leave_out is not None:
            sums = sums - masked[leave_out]
            counts = counts - present[leave_out].float()
        pooled = sums / counts.clamp(min=1).unsqueeze(-1)
        if self.modalities[0] == "behaviour":
            pooled = torch.cat([query.unsqueeze(1), pooled[:, 1:]], dim=1)
        return self.dropout(pooled)

    def _scale_parts(self, part_scores: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Apply the warm/cold content scale; an item is cold when its behaviour token is "unknown"."""
        if not self.has_behaviour or part_scores.shape[-1] == 1:
            return part_scores
        cold = (tokens[..., 0, :] == self.unknown_item).all(-1)  # [N] (or [B] for pairs)
        scale = self.content_scale[cold.long()]  # [N, M]
        scale = torch.cat([torch.ones_like(scale[..., :1]), scale[..., 1:]], dim=-1)
        return part_scores * scale

    @staticmethod
    def _query(user: torch.Tensor) -> torch.Tensor:
        return user if user.dim() == 2 else user[:, 0]

    @staticmethod
    def _parts(user: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """u . v(e_m) for users [B, d] or per-modality users [B, M, d] against values [N, M, d] -> [B, N, M]."""
        n, m, d = values.shape
        if user.dim() == 2:
            return (user @ values.reshape(n * m, d).T).reshape(user.shape[0], n, m)
        return torch.stack([user[:, k] @ values[:, k].T for k in range(m)], dim=-1)

    # --- fusion
    def fuse_pairs(self, user: torch.Tensor, tokens: torch.Tensor, present: torch.Tensor,
                   prior: torch.Tensor | None = None) -> torch.Tensor:
        """Scores [B] for row-aligned pairs: users [B, d], their items' tokens [B, M, d], prior [B]."""
        b, m, d = tokens.shape
        values = torch.einsum("bmd,mde->bme", tokens, self.value_maps)
        part_scores = (torch.einsum("bd,bmd->bm", user, values) if user.dim() == 2
                       else torch.einsum("bmd,bmd->bm", user, values))
        part_scores = self._scale_parts(part_scores, tokens)
        queries = self.query(user) if user.dim() == 3 else self.query(user).unsqueeze(1)
        user = self._query(user)
        if self.fusion == "concat":
            fused = self.concat_mlp((tokens * present.unsqueeze(-1)).reshape(b, m * d))
            return (user * fused).sum(-1) + (0 if prior is None else self.prior_scale * prior)
        if self.fusion == "attention":
            logits = (queries * self.key(tokens)).sum(-1) / math.sqrt(d) + self.modality_bias
        elif self.fusion == "item_gate":
            logits = self.gate(tokens).squeeze(-1) + self.modality_bias
        else:
            logits = torch.zeros(b, m, device=user.device, dtype=user.dtype)
        weights = torch.softmax(logits.masked_fill(~present, float("-inf")), dim=-1)
        scores = (weights * part_scores).sum(-1)
        return scores if prior is None else scores + self.prior_scale * prior

    def fuse(self, user: torch.Tensor, tokens: torch.Tensor, present: torch.Tensor, with_parts: bool = False,
             prior: torch.Tensor | None = None):
        """Scores [B, N] for users [B, d] against item tokens [N, M, d]; optionally weights and shares.

        ``prior`` [B, N] is the closed-form item-item score of each (user, item); it belongs to the
        behaviour part (modality 0), so the shares still add up to the score.
        """
        b, (n, m, d) = user.shape[0], tokens.shape
        values = torch.einsum("nmd,mde->nme", tokens, self.value_maps)  # v_m(e_m), one map per modality
        part_scores = self._scale_parts(self._parts(user, values), tokens)  # u_m . v_m(e_m)
        # the user is the query; with per-modality user vectors each modality is asked by the user's
        # own profile in that modality, so attention rises where the item matches the user's taste there
        queries = self.query(user)
        user = self._query(user)
        if self.fusion == "concat":
            fused = self.concat_mlp((tokens * present.unsqueeze(-1)).reshape(n, m * d))
            scores = user @ fused.T
            if prior is not None:
                scores = scores + self.prior_scale * prior
            return (scores, None, None) if with_parts else scores
        if self.fusion == "attention":
            logits = self._parts(queries, self.key(tokens)) / math.sqrt(d) + self.modality_bias
        elif self.fusion == "item_gate":
            logits = (self.gate(tokens).squeeze(-1) + self.modality_bias).unsqueeze(0).expand(b, n, m)
        else:  # mean
            logits = torch.zeros(b, n, m, device=user.device, dtype=user.dtype)
        logits = logits.masked_fill(~present.unsqueeze(0), float("-inf"))
        weights = torch.softmax(logits, dim=-1)
        shares = weights * part_scores
        if prior is not None:
            # the item-item score sits beside the attention, not under it: attention cannot distort a
            # strong collaborative ranking, it can only add to it. It is behaviour evidence, so it joins
            # the behaviour share and the shares still add up to the score.
            shares = torch.cat([shares[..., :1] + self.prior_scale * prior.unsqueeze(-1), shares[..., 1:]], dim=-1)
        scores = shares.sum(-1)
        return (scores, weights, shares) if with_parts else scores


# ----------------------------------------------------------------------------- the recommender

class FusionRecommender(Recommender):
    """Attention over modality tokens with the user as query (see the module docstring)."""

    name = "fusion"
    scores_cold_items = True
    format_version = 2  # 2: per-modality value maps, warm/cold content scales, item-item prior

    def __init__(self, **config: Any):
        unknown = set(config) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown fusion options {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        merged = {**DEFAULTS, **config}
        if merged["fusion"] not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, not {merged['fusion']!r}")
        if merged["loss"] not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, not {merged['loss']!r}")
        merged["modalities"] = [m for m in MODALITIES if m in merged["modalities"]]
        super().__init__(**merged)
        self.network: FusionNetwork | None = None
        self.content: ContentArrays | None = None
        self.history: dict[str, Any] = {"epochs": []}
        self.device = torch.device("cpu")

    # --- setup
    def _build(self, n_users: int, n_items: int, content: ContentArrays, known: np.ndarray,
               train: sp.csr_matrix, device: torch.device) -> None:
        self.content = content
        self.device = device
        self.network = FusionNetwork(n_users, n_items, content, self.config).to(device)
        self._buffers = self._make_buffers(content, known, train, device)
        self._known = known
        self._prior: torch.Tensor | None = None

    def _make_buffers(self, content: ContentArrays, known: np.ndarray, train: sp.csr_matrix,
                      device: torch.device) -> dict[str, torch.Tensor]:
        as_tensor = lambda a, dtype=None: torch.as_tensor(a, device=device, dtype=dtype)  # noqa: E731
        buffers: dict[str, torch.Tensor] = {"known": as_tensor(known, torch.bool)}
        if content.text is not None:
            buffers["text"], buffers["text_mask"] = as_tensor(content.text), as_tensor(content.text_mask, torch.bool)
        if content.image is not None:
            buffers["image"], buffers["image_mask"] = as_tensor(content.image), as_tensor(content.image_mask, torch.bool)
        if content.attr_mask is not None:
            buffers["attr_mask"] = as_tensor(content.attr_mask, torch.bool)
            if content.cat_index is not None:
                buffers["cat_index"] = as_tensor(content.cat_index, torch.long)
            if content.multi is not None:
                buffers["multi"] = _sparse_tensor(content.multi, device)
            if content.numeric is not None:
                buffers["numeric"] = as_tensor(content.numeric)
        if int(self.config["graph_layers"]) > 0:
            buffers["adjacency"] = _sparse_tensor(_normalised_adjacency(train), device)
        return buffers

    def _history_tensors(self, matrix: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor]:
        return _sparse_tensor(matrix, self.device), torch.as_tensor(
            np.diff(matrix.indptr).astype(np.float32), device=self.device)

    # --- training
    def fit(self, data: TrainData, callbacks: Sequence[Any] = (), resume_state: dict[str, Any] | None = None
            ) -> "FusionRecommender":
        from ..device import select_device
        from ..evaluate import evaluate_ranking

        started = time.perf_counter()
        self._remember(data)
        config = self.config
        torch.manual_seed(int(config["seed"]))
        rng = np.random.default_rng(int(config["seed"]))
        device = select_device(config["device"])
        content = ContentArrays.from_features(data.item_features, data.n_items)
        known = np.asarray(data.train.sum(axis=0)).ravel() > 0
        self._build(data.n_users, data.n_items, content, known, data.train, device)
        network = self.network
        assert network is not None
        if self._use_prior(data.n_items):
            self._fit_prior(data.train, rng)
        self.network.learned_behaviour = self._learned_behaviour()
        optimiser = torch.optim.AdamW(network.parameters(), lr=float(config["lr"]),
                                      weight_decay=float(config["weight_decay"]))
        train = data.train.tocsr()
        self._train_rows = train
        history_matrix, history_count = self._history_tensors(train)
        coo = train.tocoo()
        pair_users, pair_items = coo.row.astype(np.int64), coo.col.astype(np.int64)
        ratings = None
        if config["loss"] == "mse":
            if data.ratings is None:
                raise ValueError("the mse loss needs explicit ratings; this data has none")
            ratings = np.asarray(data.ratings.tocsr()[pair_users, pair_items]).ravel().astype(np.float32)
        batch_size = int(config["batch_size"])
        use_amp = bool(config["amp"]) and device.type == "cuda"
        amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
        drop = {"modality": float(config["modality_dropout"]), "behaviour": float(config["behaviour_dropout"])}

        best = {"ndcg@20": -1.0, "epoch": -1, "state": None}
        start_epoch = 0
        if resume_state is not None:
            network.load_state_dict(resume_state["network"])
            optimiser.load_state_dict(resume_state["optimiser"])
            start_epoch = int(resume_state["epoch"]) + 1
            best = resume_state.get("best", best)
            self.history = resume_state.get("history", self.history)
            rng = np.random.default_rng(int(config["seed"]) + start_epoch)
        bad_epochs = 0
        cloze = config["loss"] == "softmax" and data.n_items <= int(config["full_softmax_max_items"])
        active_users = np.flatnonzero(np.diff(train.indptr) >= 2) if cloze else None
        for epoch in range(start_epoch, int(config["epochs"])):
            network.train()
            epoch_loss, epoch_started = 0.0, time.perf_counter()
            if cloze:
                order = rng.permutation(active_users)
                size = batch_size
            else:
                order = rng.permutation(len(pair_users))
                size = batch_size * 8
            n_batches = max(1, math.ceil(len(order) / size))
            for batch_number in range(n_batches):
                batch = order[batch_number * size:(batch_number + 1) * size]
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    if cloze:
                        loss = self._cloze_loss(batch, train, drop, rng)
                    else:
                        users = torch.as_tensor(pair_users[batch], device=device)
                        items = torch.as_tensor(pair_items[batch], device=device)
                        loss = self._batch_loss(users, items, history_matrix, history_count, drop,
                                                None if ratings is None else torch.as_tensor(ratings[batch], device=device),
                                                rng)
                optimiser.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimiser)
                scaler.update()
                epoch_loss += float(loss.detach())
                for callback in callbacks:
                    if hasattr(callback, "on_step"):
                        callback.on_step(epoch=epoch, step=batch_number + 1, steps=n_batches, loss=float(loss.detach()))
                if any(getattr(callback, "stop_requested", False) for callback in callbacks):
                    break  # a stop signal: finish this epoch's bookkeeping, keep the best checkpoint
            record: dict[str, Any] = {"epoch": epoch, "loss": epoch_loss / n_batches,
                                      "seconds": time.perf_counter() - epoch_started}
            improved = False
            if data.valid is not None and data.valid.nnz and (epoch + 1) % int(config["eval_every"]) == 0:
                metrics = evaluate_ranking(self._score_fn(), train, data.valid, ks=(10, 20))
                record.update({f"valid_{k}": v for k, v in metrics.items() if k != "n_users_evaluated"})
                if metrics["ndcg@20"] > best["ndcg@20"] + 1e-5:
                    best = {"ndcg@20": metrics["ndcg@20"], "epoch": epoch,
                            "state": {k: v.detach().clone() for k, v in network.state_dict().items()}}
                    improved, bad_epochs = True, 0
                else:
                    bad_epochs += 1
            elif data.valid is None:
                best = {"ndcg@20": float("nan"), "epoch": epoch,
                        "state": {k: v.detach().clone() for k, v in network.state_dict().items()}}
                improved = True
            record["improved"] = improved
            self.history["epochs"].append(record)
            stop = bad_epochs >= int(config["patience"])
            for callback in callbacks:
                if hasattr(callback, "on_epoch_end"):
                    callback.on_epoch_end(model=self, record=record, improved=improved,
                                          resume_state=lambda: {"network": network.state_dict(),
                                                                "optimiser": optimiser.state_dict(),
                                                                "epoch": epoch, "best": best,
                                                                "history": self.history})
                if getattr(callback, "stop_requested", False):
                    stop = True
            if stop:
                break
        if best["state"] is not None:
            network.load_state_dict(best["state"])
        self.history["best_epoch"] = best["epoch"]
        self.history["best_valid_ndcg@20"] = best["ndcg@20"]
        network.eval()
        self._cache_eval_tensors()
        self._fold_priors, self._train_rows = [], None  # training-only memory
        self.fit_seconds = time.perf_counter() - started
        return self

    def _fit_prior(self, train: sp.csr_matrix, rng: np.random.Generator) -> None:
        """The item-item prior on all training rows (for scoring) and per user fold (for training).

        A user's training signal must not come from weights fitted on that user's own rows: an
        in-sample EASE score looks better than it will on unseen items, and the model would learn
        to over-trust it. So training uses, for each user, weights fitted without the user's fold.
        """
        l2 = float(self.config["prior_l2"])
        self._prior = torch.as_tensor(ease_item_item(train, l2), device=self.device)
        folds = int(self.config["prior_folds"])
        if folds <= 1:  # in-sample: train on the same weights that will score
            self._user_fold = np.zeros(train.shape[0], dtype=np.int64)
            self._fold_priors = [self._prior]
            return
        self._user_fold = rng.permutation(train.shape[0]) % folds
        self._fold_priors = []
        for fold in range(folds):
            keep = sp.diags((self._user_fold != fold).astype(np.float32))
            self._fold_priors.append(torch.as_tensor(ease_item_item(keep @ train, l2), device=self.device))

    def _training_prior(self, users: np.ndarray, history: sp.csr_matrix, leave_out: np.ndarray | None = None
                        ) -> torch.Tensor | None:
        """Out-of-fold item-item scores [len(users), N] of ``history`` rows (one per user)."""
        if self._prior is None:
            return None
        out = torch.empty(len(users), self._prior.shape[1], device=self.device)
        folds = self._user_fold[users]
        for fold in np.unique(folds):
            rows = np.flatnonzero(folds == fold)
            weights = self._fold_priors[fold]
            part = torch.sparse.mm(_sparse_tensor(history[rows], self.device), weights)
            if leave_out is not None:
                part = part - weights[torch.as_tensor(leave_out[rows], device=self.device)]
            out[torch.as_tensor(rows, device=self.device)] = part
        return out

    def _cloze_loss(self, users: np.ndarray, train: sp.csr_matrix, drop: dict[str, float],
                    rng: np.random.Generator) -> torch.Tensor:
        """Hide part of each user's history, predict it from the rest (softmax over the catalogue)."""
        network, config, device = self.network, self.config, self.device
        rows = train[users]
        hidden = rng.random(rows.nnz) < float(config["cloze_ratio"])
        # every user keeps at least one visible and one hidden item
        for r in range(rows.shape[0]):
            lo, hi = rows.indptr[r], rows.indptr[r + 1]
            segment = hidden[lo:hi]
            if segment.all():
                segment[rng.integers(hi - lo)] = False
            if not segment.any():
                segment[rng.integers(hi - lo)] = True
        coo = rows.tocoo()
        visible = sp.csr_matrix((np.ones((~hidden).sum(), np.float32), (coo.row[~hidden], coo.col[~hidden])),
                                shape=rows.shape)
        target = sp.csr_matrix((np.ones(hidden.sum(), np.float32), (coo.row[hidden], coo.col[hidden])),
                               shape=rows.shape)
        tokens, present, history = network.item_tokens(self._buffers, drop)
        visible_t, visible_count = self._history_tensors(visible)
        user_rows = torch.as_tensor(users, device=device)
        user = network.user_vectors(user_rows, torch.sparse.mm(visible_t, history), visible_count)
        user = network.pool_modalities(visible_t, tokens, present, user)
        prior = self._training_prior(users, visible)
        if prior is not None and network.swapped is not None:
            prior = prior.masked_fill(network.swapped.unsqueeze(0), 0.0)
        scores = network.fuse(user, tokens, present, prior=prior).float() / float(config["temperature"])
        visible_dense = torch.as_tensor(visible.toarray(), device=device) > 0
        log_probs = torch.log_softmax(scores.masked_fill(visible_dense, float("-inf")), dim=-1)
        target_dense = torch.as_tensor(target.toarray(), device=device)
        per_user = -(log_probs.masked_fill(target_dense == 0, 0.0) * target_dense).sum(-1) / target_dense.sum(-1)
        regulariser = float(config["embedding_l2"]) * (
            network.user_embedding(user_rows).pow(2).sum() / len(users)
            + network.item_embedding.weight.pow(2).sum() / max(1, network.item_embedding.num_embeddings) * 10)
        return per_user.mean() + regulariser

    def _batch_loss(self, users, items, history_matrix, history_count, drop, ratings, rng) -> torch.Tensor:
        network = self.network
        config = self.config
        tokens, present, history = network.item_tokens(self._buffers, drop)
        history_sum = torch.sparse.mm(history_matrix, history)[users] - history[items]  # leave the target out
        user = network.user_vectors(users, history_sum, history_count[users] - 1)
        rows = _sparse_tensor(self._train_rows[users.cpu().numpy()], users.device)
        user = network.pool_modalities(rows, tokens, present, user, leave_out=items)
        n_items = tokens.shape[0]
        # leave the target out of the item-item score as well
        prior = self._training_prior(users.cpu().numpy(), self._train_rows[users.cpu().numpy()],
                                     leave_out=items.cpu().numpy())
        if prior is not None and network.swapped is not None:
            prior = prior.masked_fill(network.swapped.unsqueeze(0), 0.0)
        regulariser = float(config["embedding_l2"]) * (
            network.item_embedding(items).pow(2).sum() + network.user_embedding(users).pow(2).sum()
            + network.history_embedding(items).pow(2).sum()) / len(users)
        if config["loss"] == "mse":
            predicted = network.fuse_pairs(user, tokens[items], present[items],
                                           None if prior is None else prior[torch.arange(len(users)), items])
            return F.mse_loss(predicted.float(), ratings) + regulariser
        if config["loss"] == "softmax" and n_items <= int(config["full_softmax_max_items"]):
            scores = network.fuse(user, tokens, present, prior=prior) / float(config["temperature"])
            return F.cross_entropy(scores.float(), items) + regulariser
        # sampled: the batch's own positives plus uniform negatives, with the logQ correction
        negatives = torch.as_tensor(rng.integers(0, n_items, int(config["num_negatives"])), device=users.device)
        candidates = torch.cat([items, negatives])
        scores = network.fuse(user, tokens[candidates], present[candidates],
                              prior=None if prior is None else prior[:, candidates]) / float(config["temperature"])
        if config["loss"] == "bpr":
            positive = scores[torch.arange(len(users)), torch.arange(len(users))]
            negative = scores[:, len(users):]
            return -F.logsigmoid(positive.unsqueeze(1) - negative).mean() + regulariser
        counts = torch.bincount(candidates, minlength=n_items).float()
        log_q = torch.log(counts[candidates] / counts.sum())
        scores = scores - log_q
        # a positive that is also another row's candidate is not a negative for that row
        same = items.unsqueeze(1) == candidates.unsqueeze(0)
        same[torch.arange(len(users)), torch.arange(len(users))] = False
        scores = scores.masked_fill(same, float("-inf"))
        return F.cross_entropy(scores.float(), torch.arange(len(users), device=users.device)) + regulariser

    # --- inference
    def _cache_eval_tensors(self) -> None:
        with torch.no_grad():
            tokens, present, history = self.network.item_tokens(self._buffers)
        self._eval_tokens, self._eval_present, self._eval_history = tokens, present, history
        seen = self.seen.tocsr()
        self._seen_matrix, self._seen_count = self._history_tensors(seen)
        with torch.no_grad():
            self._user_history_sum = torch.sparse.mm(self._seen_matrix, history)

    def _score_fn(self) -> Callable[[np.ndarray], np.ndarray]:
        """Scores with the current (training-mode) parameters, for validation during fit."""
        def score(users: np.ndarray) -> np.ndarray:
            self.network.eval()
            self._cache_eval_tensors()
            try:
                return self.score(users)
            finally:
                self.network.train()
        return score

    def user_vectors_for(self, users: np.ndarray) -> torch.Tensor:
        """Per-modality user vectors [B, M, d] from the users' training histories."""
        users = np.asarray(users, dtype=np.int64)
        rows = torch.as_tensor(users, device=self.device)
        query = self.network.user_vectors(rows, self._user_history_sum[rows], self._seen_count[rows])
        history = _sparse_tensor(self.seen.tocsr()[users], self.device)
        return self.network.pool_modalities(history, self._eval_tokens, self._eval_present, query)

    def user_prior_for(self, users: np.ndarray, items: np.ndarray | None = None) -> torch.Tensor | None:
        """Closed-form item-item scores [len(users), items] from the users' histories, or None."""
        if self._prior is None:
            return None
        history = _sparse_tensor(self.seen.tocsr()[np.asarray(users, dtype=np.int64)], self.device)
        prior = self._prior if items is None else self._prior[:, torch.as_tensor(items, device=self.device)]
        return torch.sparse.mm(history, prior)

    def _learned_behaviour(self) -> bool:
        choice = self.config["learned_behaviour"]
        return self._prior is None if choice == "auto" else bool(choice)

    def _use_prior(self, n_items: int) -> bool:
        choice = self.config["behaviour_prior"]
        if "behaviour" not in self.network.modalities or choice == "none":
            return False
        return choice == "ease" or n_items <= int(self.config["prior_max_items"])

    def user_vector_from_history(self, item_indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A new user's vector (and item-item prior) from a few liked items, without retraining."""
        items = torch.as_tensor(np.asarray(item_indices, dtype=np.int64), device=self.device)
        pooled = self._eval_history[items].sum(0, keepdim=True)
        query = pooled / max(len(item_indices), 1) ** float(self.config["history_exponent"])
        indicator = sp.csr_matrix((np.ones(len(item_indices), np.float32),
                                   (np.zeros(len(item_indices), np.int64), np.asarray(item_indices, np.int64))),
                                  shape=(1, self.n_items))
        vector = self.network.pool_modalities(_sparse_tensor(indicator, self.device), self._eval_tokens,
                                              self._eval_present, query)
        prior = None if self._prior is None else self._prior[items].sum(0, keepdim=True)
        return vector, prior

    @torch.no_grad()
    def score(self, users: Sequence[int] | np.ndarray, batch_size: int = 512) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        out = np.empty((len(users), self.n_items), dtype=np.float32)
        for start in range(0, len(users), batch_size):
            rows = users[start:start + batch_size]
            scores = self.network.fuse(self.user_vectors_for(rows), self._eval_tokens, self._eval_present,
                                       prior=self.user_prior_for(rows))
            out[start:start + len(rows)] = scores.float().cpu().numpy()
        return out

    @torch.no_grad()
    def score_user_vector(self, user_vector: torch.Tensor, prior: torch.Tensor | None = None) -> np.ndarray:
        return self.network.fuse(user_vector, self._eval_tokens, self._eval_present,
                                 prior=prior).float().cpu().numpy()[0]

    @torch.no_grad()
    def explain_scores(self, user: int | str, items: Sequence[int | str]) -> dict[str, Any]:
        """Attention weights and additive shares per modality for (user, items); shares sum to the score."""
        row = self.user_index(user)
        index = np.array([self.item_index(i) for i in items], dtype=np.int64)
        user_vector = self.user_vectors_for(np.array([row]))
        scores, weights, shares = self.network.fuse(user_vector, self._eval_tokens[index], self._eval_present[index],
                                                    with_parts=True, prior=self.user_prior_for([row], index))
        present = self._eval_present[index].cpu().numpy()
        return {
            "modalities": list(self.network.modalities),
            "items": [str(self.item_ids[i]) for i in index],
            "score": scores[0].float().cpu().numpy(),
            "attention": None if weights is None else weights[0].float().cpu().numpy(),
            "shares": None if shares is None else shares[0].float().cpu().numpy(),
            "present": present,
        }

    @torch.no_grad()
    def attention_matrix(self, users: Sequence[int], items: Sequence[int] | None = None) -> np.ndarray:
        """Attention weights [len(users), len(items), M] (NaN-free; missing modalities get 0)."""
        index = np.arange(self.n_items) if items is None else np.asarray(items, dtype=np.int64)
        vectors = self.user_vectors_for(np.asarray(users))
        _, weights, _ = self.network.fuse(vectors, self._eval_tokens[index], self._eval_present[index], with_parts=True,
                                          prior=self.user_prior_for(users, index))
        return np.zeros((len(users), len(index), len(self.network.modalities)), np.float32) if weights is None \
            else weights.float().cpu().numpy()

    @property
    def modalities(self) -> list[str]:
        return list(self.network.modalities) if self.network is not None else []

    # --- persistence
    def _state(self) -> dict[str, np.ndarray]:
        state = {f"network.{k}": v.detach().float().cpu().numpy() for k, v in self.network.state_dict().items()}
        state |= self.content.to_state()
        state["known"] = self._known.astype(np.uint8)
        if self._prior is not None:
            state["prior"] = self._prior.float().cpu().numpy()
        return state

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        from ..device import select_device

        content = ContentArrays.from_state(state)
        known = state["known"].astype(bool)
        device = select_device(self.config.get("device", "auto"))
        self._build(len(self.user_ids), len(self.item_ids), content, known, self.seen, device)
        self.network.load_state_dict({k[len("network."):]: torch.from_numpy(v.copy())
                                      for k, v in state.items() if k.startswith("network.")})
        if "prior" in state:
            self._prior = torch.as_tensor(state["prior"], device=device)
        self.network.learned_behaviour = self._learned_behaviour()
        self.network.eval()
        self._cache_eval_tensors()


def _normalised_adjacency(train: sp.csr_matrix) -> sp.csr_matrix:
    """D^-1/2 A D^-1/2 of the bipartite user-item graph (LightGCN)."""
    n_users, n_items = train.shape
    binary = (train > 0).astype(np.float32)
    adjacency = sp.bmat([[None, binary], [binary.T, None]], format="csr")
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-12)), 0.0)
    return (sp.diags(inv_sqrt) @ adjacency @ sp.diags(inv_sqrt)).tocsr().astype(np.float32)


def ease_item_item(train: sp.csr_matrix, l2: float) -> np.ndarray:
    """EASE's closed-form item-item weights (Steck 2019), zero diagonal; float32 [N, N].

    Items without training interactions get all-zero rows and columns.
    """
    binary = (train > 0).astype(np.float64)
    gram = (binary.T @ binary).toarray()
    gram[np.diag_indices_from(gram)] += l2
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)
    weights[np.diag_indices_from(weights)] = 0.0
    return weights.astype(np.float32)
