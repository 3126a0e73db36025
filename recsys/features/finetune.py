"""Fine-tuning the text encoder on a catalogue's behaviour.

A frozen language model places items by what their descriptions say in general; a catalogue's users say
which descriptions go together. :func:`finetune_text_encoder` adapts the last ``layers`` transformer layers of
a text encoder (MiniLM by default) with an in-batch contrastive loss over *co-interaction pairs* — two items
the same user chose, drawn from the training interactions only (:func:`co_interaction_pairs`; never from
validation or test, so nothing a metric reads leaks into the text features) — at a small AdamW learning rate
(2e-5, as the fine-tuned BERT4Rec-style recommenders use). Gradient checkpointing and bf16 autocast on a GPU.

The result is a plain Hugging Face model directory (weights in safetensors, the tokenizer, and
``finetune.json`` saying how it was made) that every part of the studio takes as ``hf:<directory>``: feature
extraction (its own cache key, from the directory's fingerprint), the text query of a new user, serving.
``python -m recsys finetune-text DATASET`` writes one under ``workspace/encoders/``.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from .. import stopping
from ..atomic import atomic_directory

log = logging.getLogger(__name__)


@dataclass
class FinetuneSettings:
    """How the text encoder is adapted (defaults sized for a CPU: minutes on movielens-small-mm)."""

    layers: int = 2  # the last N transformer layers are trained, the rest (and the embeddings) stay frozen
    steps: int = 300
    batch_size: int = 32  # pairs per step: 2 x batch_size texts, the other pairs of the batch are the negatives
    lr: float = 2e-5
    weight_decay: float = 0.01
    temperature: float = 0.05
    max_length: int = 128  # tokens per text while training (extraction keeps the encoder's own limit)
    pairs: int = 200_000  # co-interaction pairs drawn (with replacement over users, weighted by history size)
    # of the drawn pairs, the share with the strongest association (co-occurrence cosine) kept as positives
    # (two films one person watched are often unrelated); 1 = every pair. Measured on movielens with 0.25
    # (benchmarks/finetune_text.py): no better than every pair, so the default stays every pair
    keep_associated: float = 1.0
    seed: int = 2026


def co_interaction_pairs(
    train: sp.csr_matrix,
    count: int,
    seed: int,
    usable: np.ndarray | None = None,
    keep_associated: float = 1.0,
) -> np.ndarray:
    """``[P, 2]`` item indices: two different items of one user's training history, the user drawn in
    proportion to the pairs their history holds (so each pair of the data is about equally likely), items
    without text (``usable`` False) left out. Empty when no user has two usable items. ``keep_associated``
    < 1 keeps that share of the drawn pairs, those whose items' co-occurrence cosine (users in common over
    the geometric mean of their user counts, from ``train``) is highest."""
    train = sp.csr_matrix(train)
    if usable is not None:
        train = sp.csr_matrix(train @ sp.diags(usable.astype(np.float32)))
        train.eliminate_zeros()
    lengths = np.diff(train.indptr)
    weights = lengths * (lengths - 1.0)
    if weights.sum() <= 0:
        return np.zeros((0, 2), dtype=np.int64)
    rng = np.random.default_rng(seed)
    users = rng.choice(len(lengths), size=count, p=weights / weights.sum())
    first = rng.integers(0, lengths[users])
    second = (first + 1 + rng.integers(0, lengths[users] - 1)) % lengths[users]  # a different position
    starts = train.indptr[users]
    pairs = np.stack([train.indices[starts + first], train.indices[starts + second]], axis=1).astype(np.int64)
    if keep_associated >= 1.0 or len(pairs) == 0:
        return pairs
    items = sp.csr_matrix(train.T, dtype=np.float32)  # items x users
    items.data[:] = 1.0
    counts = np.asarray(items.sum(axis=1)).ravel()
    common = np.empty(len(pairs), dtype=np.float64)
    for start in range(0, len(pairs), 50_000):  # users two items share, a block of pairs at a time
        block = pairs[start : start + 50_000]
        common[start : start + len(block)] = np.asarray(
            items[block[:, 0]].multiply(items[block[:, 1]]).sum(axis=1)
        ).ravel()
    cosine = common / np.sqrt(np.maximum(counts[pairs[:, 0]] * counts[pairs[:, 1]], 1.0))
    keep = max(1, int(round(len(pairs) * keep_associated)))
    strongest = np.argsort(-cosine, kind="stable")[:keep]
    return pairs[np.sort(strongest)]


def finetune_text_encoder(
    encoder: Any,
    texts: Sequence[str],
    pairs: np.ndarray,
    out_dir: str | Path,
    settings: FinetuneSettings | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> Path:
    """Adapt ``encoder`` (a :class:`~recsys.features.text.TransformerTextEncoder`) on ``pairs`` of indices into
    ``texts``; write the tuned model to ``out_dir`` (atomically: a stopped run leaves no half directory) and
    return it. ``progress(step, steps, loss)`` after every step; a run's stop request ends it between steps."""
    import torch

    settings = settings or FinetuneSettings()
    if len(pairs) == 0:
        raise ValueError("no co-interaction pairs: fine-tuning needs users with at least two items that have text")
    if not hasattr(encoder, "_load"):
        raise ValueError(f"text encoder {getattr(encoder, 'name', encoder)!r} is not a transformer: nothing to tune")
    encoder._load()
    device = encoder.device
    model = copy.deepcopy(encoder._model)
    tokenizer = encoder._tokenizer
    layers = _transformer_layers(model)
    tuned = max(1, min(int(settings.layers), len(layers)))
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for layer in layers[-tuned:]:
        for parameter in layer.parameters():
            parameter.requires_grad_(True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay)
    cuda = device.type == "cuda"
    if cuda and hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable()
    model.train()
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    texts = list(texts)

    def embed(indices: np.ndarray) -> torch.Tensor:
        batch = tokenizer(
            [texts[i] for i in indices],
            padding=True,
            truncation=True,
            max_length=min(settings.max_length, encoder.max_length),
            return_tensors="pt",
        )
        batch = {k: v.to(device) for k, v in batch.items()}
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # the encoder's own mean pooling
        return torch.nn.functional.normalize(pooled.float(), dim=-1)

    losses: list[float] = []
    started = time.perf_counter()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else _no_autocast()
    for step in range(int(settings.steps)):
        stopping.check("text fine-tuning")
        chosen = pairs[rng.choice(len(pairs), size=min(settings.batch_size, len(pairs)), replace=False)]
        with autocast:
            left, right = embed(chosen[:, 0]), embed(chosen[:, 1])
        logits = left @ right.T / settings.temperature
        # the same item twice in a batch is not a negative of itself
        same = torch.as_tensor(chosen[:, 1][None, :] == chosen[:, 1][:, None], device=device)
        logits = logits.masked_fill(same & ~torch.eye(len(chosen), dtype=torch.bool, device=device), -1e4)
        target = torch.arange(len(chosen), device=device)
        loss = 0.5 * (
            torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)
        )
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, int(settings.steps), losses[-1])
    model.eval()
    if cuda and hasattr(model, "gradient_checkpointing_disable"):
        model.gradient_checkpointing_disable()
    out_dir = Path(out_dir)
    report = {
        "base_encoder": encoder.name,
        "base_version": encoder.version,
        "settings": asdict(settings),
        "tuned_layers": tuned,
        "pairs_available": int(len(pairs)),
        "loss_first_10": float(np.mean(losses[:10])),
        "loss_last_10": float(np.mean(losses[-10:])),
        "seconds": round(time.perf_counter() - started, 1),
        "device": str(device),
    }
    with atomic_directory(out_dir) as staging:
        model.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
        (staging / "finetune.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    log.info(
        "fine-tuned %s: loss %.3f -> %.3f in %.0f s",
        encoder.name,
        report["loss_first_10"],
        report["loss_last_10"],
        report["seconds"],
    )
    return out_dir


def _transformer_layers(model: Any) -> Sequence[Any]:
    """The stack of transformer blocks of a BERT-family (or similar) encoder."""
    for path in ("encoder.layer", "transformer.layer", "layers", "encoder.layers", "block"):
        node = model
        for part in path.split("."):
            node = getattr(node, part, None)
            if node is None:
                break
        if node is not None and len(node):
            return list(node)
    raise ValueError(f"cannot find the transformer layers of {type(model).__name__} to fine-tune")


class _no_autocast:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None
