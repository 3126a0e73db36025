"""Fine-tuning the text encoder on a catalogue's behaviour.

A frozen language model places items by what their descriptions say in general; a catalogue's users say
which descriptions go together. :func:`finetune_text_encoder` adapts the last ``layers`` transformer layers of
a text encoder (MiniLM by default), from the training interactions only (never validation or test, so nothing
a metric reads leaks into the text features), with one of two in-batch contrastive objectives:

* ``behaviour`` (default): each item's text is pulled toward the item's own place in the behaviour space (a
  truncated SVD of the interactions, :func:`behaviour_targets`) through a linear head that starts at the
  ridge map of the frozen embeddings, the other items of the batch as negatives, with a pull toward the frozen
  embedding (``anchor``) so the text keeps what it said. A tenth of the items (at least 200) is held out;
  every ``eval_every`` steps, their text cosines are checked against their behaviour neighbours (AUC: does
  an item's text find the held-out items users chose with it before the others?), and the step kept is the
  earliest within one paired standard error of the best, step 0 (the frozen encoder) included.
* ``pairs``: two items the same user chose as positives (:func:`co_interaction_pairs`). Two films one person
  watched are often unrelated; on movielens-small-mm the loss fell to the batch's chance level and the text
  features got worse (content model 0.82x), so it is no longer the default.

AdamW; gradient checkpointing and bf16 autocast on a GPU.

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
    steps: int = 150
    batch_size: int = 32  # items (pairs) per step; the batch's other items (pairs) are the negatives
    # 1e-4 (the BERT4Rec-style 2e-5 moved nothing in 150 steps on a CPU); the held-out items choose the step
    # kept, so a rate too high for the data costs time, not quality
    lr: float = 1e-4
    weight_decay: float = 0.01
    temperature: float = 0.1
    max_length: int = 128  # tokens per text while training (extraction keeps the encoder's own limit)
    pairs: int = 200_000  # co-interaction pairs drawn (with replacement over users, weighted by history size)
    # of the drawn pairs, the share with the strongest association (co-occurrence cosine) kept as positives
    # (two films one person watched are often unrelated); 1 = every pair. Measured on movielens with 0.25
    # (benchmarks/finetune_text.py): no better than every pair, so the default stays every pair
    keep_associated: float = 1.0
    # "behaviour": each item's text is pulled toward the item's own place in the behaviour space (an SVD of
    # the training interactions) through a linear head started at the ridge fit of the frozen embeddings, the
    # other items of the batch as negatives, and held-out items choose the step kept (0: the frozen encoder
    # when no step beats it). "pairs": two items of one user's history as positives (noisy: two films one
    # person watched are often unrelated; the loss fell to the batch's chance level, ln 32, and the text
    # features got worse)
    objective: str = "behaviour"
    behaviour_dim: int = 64  # dimensions of the behaviour space the text is aligned to
    anchor: float = 1.0  # weight of keeping each text's embedding close to the frozen one (1 - cosine)
    head_lr: float = 1e-3  # the linear head's learning rate (the transformer layers use ``lr``)
    holdout: float = 0.1  # share of the items held out to choose the step kept ("behaviour"; by their AUC)
    eval_every: int = 25  # steps between two held-out checks
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


def behaviour_targets(
    train: sp.csr_matrix, dim: int = 64, usable: np.ndarray | None = None, min_users: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """``(items [K], vectors [K, d])``: the items with text (``usable``) that at least ``min_users`` training
    users chose, and their unit vectors in the behaviour space (a truncated SVD of the interactions, from
    ``train`` only: validation and test never shape the text features)."""
    from ..models.base import svd_item_vectors

    train = sp.csr_matrix(train)
    counts = np.diff(sp.csc_matrix(train).indptr)
    keep = counts >= min_users
    if usable is not None:
        keep &= np.asarray(usable, dtype=bool)
    items = np.flatnonzero(keep)
    vectors = svd_item_vectors(train, dim)[items].astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    usable_rows = norms[:, 0] > 1e-9
    return items[usable_rows], (vectors / np.maximum(norms, 1e-12))[usable_rows]


def training_signal(
    train: sp.csr_matrix, usable: np.ndarray, settings: FinetuneSettings
) -> tuple[np.ndarray | None, tuple[np.ndarray, np.ndarray] | None]:
    """``(pairs, targets)`` for :func:`finetune_text_encoder` from a split's training interactions: the
    co-interaction pairs for ``settings.objective`` "pairs", the behaviour targets otherwise (the other None)."""
    if settings.objective == "pairs":
        return co_interaction_pairs(train, settings.pairs, settings.seed, usable, settings.keep_associated), None
    return None, behaviour_targets(train, settings.behaviour_dim, usable)


def finetune_text_encoder(
    encoder: Any,
    texts: Sequence[str],
    pairs: np.ndarray | None,
    out_dir: str | Path,
    settings: FinetuneSettings | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    targets: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Adapt ``encoder`` (a :class:`~recsys.features.text.TransformerTextEncoder`) on ``texts``; write the tuned
    model to ``out_dir`` (atomically: a stopped run leaves no half directory) and return it.

    ``settings.objective`` "behaviour" reads ``targets`` (:func:`behaviour_targets`), "pairs" reads ``pairs``
    (:func:`co_interaction_pairs`). ``progress(step, steps, loss)`` after every step; a run's stop request
    ends it between steps."""
    import torch

    settings = settings or FinetuneSettings()
    behaviour = settings.objective == "behaviour"
    if settings.objective not in ("behaviour", "pairs"):
        raise ValueError(f"objective must be 'behaviour' or 'pairs', got {settings.objective!r}")
    if behaviour and (targets is None or len(targets[0]) < 8):
        raise ValueError("no behaviour targets: fine-tuning needs at least 8 items with text that two users chose")
    if not behaviour and (pairs is None or len(pairs) == 0):
        raise ValueError("no co-interaction pairs: fine-tuning needs users with at least two items that have text")
    if not hasattr(encoder, "_load"):
        raise ValueError(f"text encoder {getattr(encoder, 'name', encoder)!r} is not a transformer: nothing to tune")
    encoder._load()
    device = encoder.device
    model = copy.deepcopy(encoder._model)
    frozen = encoder._model  # the anchor: the encoder as it was
    tokenizer = encoder._tokenizer
    layers = _transformer_layers(model)
    tuned = max(1, min(int(settings.layers), len(layers)))
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for layer in layers[-tuned:]:
        for parameter in layer.parameters():
            parameter.requires_grad_(True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    cuda = device.type == "cuda"
    if cuda and hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable()
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    texts = list(texts)
    max_length = min(settings.max_length, encoder.max_length)

    def embed(indices: np.ndarray, net: Any = model) -> torch.Tensor:
        batch = tokenizer(
            [texts[i] for i in indices], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        batch = {k: v.to(device) for k, v in batch.items()}
        hidden = net(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # the encoder's own mean pooling
        return torch.nn.functional.normalize(pooled.float(), dim=-1)

    def embed_all(indices: np.ndarray, net: Any) -> torch.Tensor:
        was_training = net.training
        net.eval()
        with torch.no_grad():
            out = torch.cat([embed(indices[k : k + 64], net) for k in range(0, len(indices), 64)])
        net.train(was_training)
        return out

    def contrastive(logits: torch.Tensor, same: torch.Tensor | None = None) -> torch.Tensor:
        if same is not None:  # the same item twice in a batch is not a negative of itself
            logits = logits.masked_fill(same & ~torch.eye(len(logits), dtype=torch.bool, device=device), -1e4)
        target = torch.arange(len(logits), device=device)
        return 0.5 * (
            torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)
        )

    head: torch.nn.Linear | None = None
    groups: list[dict[str, Any]] = [{"params": trainable, "lr": settings.lr}]
    held: np.ndarray = np.zeros(0, dtype=np.int64)
    held_targets = fit_items = fit_targets = positives = negatives = None
    if behaviour:
        assert targets is not None
        items, vectors = np.asarray(targets[0], dtype=np.int64), np.asarray(targets[1], dtype=np.float32)
        order = rng.permutation(len(items))
        # at least 200 items where the catalogue allows (a quarter of it at most): fewer choose the step on noise
        wanted = max(8, int(round(settings.holdout * len(items))), min(200, len(items) // 4))
        n_held = min(wanted, len(items) // 2, 2048)
        held, fit = items[order[:n_held]], items[order[n_held:]]
        held_targets = torch.as_tensor(vectors[order[:n_held]], device=device)
        fit_items, fit_targets = fit, torch.as_tensor(vectors[order[n_held:]], device=device)
        # the head starts at the ridge map of the frozen embeddings onto the behaviour space, so step 0 is the
        # best a linear map of the frozen text does, and every later step has to beat it
        base = embed_all(fit, frozen).double()
        gram = base.T @ base + 1.0 * torch.eye(base.shape[1], dtype=base.dtype, device=device)
        weights = torch.linalg.solve(gram, base.T @ fit_targets.double())  # [E, d]
        head = torch.nn.Linear(base.shape[1], weights.shape[1], bias=False).to(device)
        with torch.no_grad():
            head.weight.copy_(weights.T.float())
        groups.append({"params": list(head.parameters()), "lr": settings.head_lr})
        # each held-out item's nearest held-out items in the behaviour space: the neighbours its text should find
        k = max(1, min(10, (len(held) - 1) // 10))
        behaviour_similarity = held_targets @ held_targets.T
        behaviour_similarity.fill_diagonal_(-float("inf"))
        positives = behaviour_similarity.topk(k, dim=1).indices  # [H, k]
        negatives = torch.ones_like(behaviour_similarity, dtype=torch.bool)
        negatives.scatter_(1, positives, False)
        negatives.fill_diagonal_(False)
    optimiser = torch.optim.AdamW(groups, weight_decay=settings.weight_decay)

    def held_out_loss() -> np.ndarray:
        """Per held-out item, 1 - AUC in the text space itself: the share of (behaviour neighbour, other item)
        pairs of held-out items whose text cosines put the other item first (0.5: chance). It reads the
        embeddings as the models do (cosines), not through the training head: a step that fits the head
        but blurs what the text says does not count as better."""
        assert positives is not None and negatives is not None
        vectors = embed_all(held, model)
        similarity = vectors @ vectors.T
        neighbour = similarity.gather(1, positives)  # [H, k]
        wrong = (similarity.unsqueeze(1) > neighbour.unsqueeze(2)) & negatives.unsqueeze(1)  # [H, k, H]
        return (wrong.float().sum((1, 2)) / (negatives.sum(1).clamp(min=1) * positives.shape[1])).cpu().numpy()

    def trainable_state() -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}

    held_losses: dict[int, np.ndarray] = {}  # step -> per held-out item loss
    states: dict[int, dict[str, torch.Tensor]] = {}  # step -> the trained layers (a few MB each)
    if behaviour:
        held_losses[0], states[0] = held_out_loss(), trainable_state()
    model.train()
    losses: list[float] = []
    started = time.perf_counter()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else _no_autocast()
    for step in range(int(settings.steps)):
        stopping.check("text fine-tuning")
        if behaviour:
            assert fit_items is not None and fit_targets is not None and head is not None
            rows = rng.choice(len(fit_items), size=min(settings.batch_size, len(fit_items)), replace=False)
            with autocast:
                tuned_rows = embed(fit_items[rows])
            with torch.no_grad(), autocast:
                anchor_rows = embed(fit_items[rows], frozen)
            predicted = torch.nn.functional.normalize(head(tuned_rows), dim=-1)
            loss = contrastive(predicted @ fit_targets[rows].T / settings.temperature)
            loss = loss + settings.anchor * (1.0 - (tuned_rows * anchor_rows.float()).sum(-1)).mean()
        else:
            assert pairs is not None
            chosen = pairs[rng.choice(len(pairs), size=min(settings.batch_size, len(pairs)), replace=False)]
            with autocast:
                left, right = embed(chosen[:, 0]), embed(chosen[:, 1])
            same = torch.as_tensor(chosen[:, 1][None, :] == chosen[:, 1][:, None], device=device)
            loss = contrastive(left @ right.T / settings.temperature, same)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        if behaviour and ((step + 1) % max(1, settings.eval_every) == 0 or step + 1 == settings.steps):
            held_losses[step + 1], states[step + 1] = held_out_loss(), trainable_state()
        if progress is not None:
            progress(step + 1, int(settings.steps), losses[-1])
    best_step = int(settings.steps)
    if behaviour:
        # the earliest step within one paired standard error of the best held-out loss: on a few hundred held-out
        # items a step that wins by less than their noise is not taken (the demo's 78 items chose a step on
        # noise, and its text features got worse on test)
        from ..evaluate.selection import one_standard_error_choice

        best_step = int(
            one_standard_error_choice(
                {step: -losses for step, losses in held_losses.items()},
                {step: -float(losses.mean()) for step, losses in held_losses.items()},
                closeness=float,
            )
        )
        with torch.no_grad():  # the step kept (0: the frozen layers)
            for name, parameter in model.named_parameters():
                if name in states[best_step]:
                    parameter.copy_(states[best_step][name])
        states.clear()
    model.eval()
    if cuda and hasattr(model, "gradient_checkpointing_disable"):
        model.gradient_checkpointing_disable()
    out_dir = Path(out_dir)
    report = {
        "base_encoder": encoder.name,
        "base_version": encoder.version,
        "settings": asdict(settings),
        "tuned_layers": tuned,
        "pairs_available": int(len(pairs)) if pairs is not None else 0,
        "target_items": int(len(targets[0])) if behaviour and targets is not None else 0,
        "held_out_items": int(len(held)),
        "held_out_loss": [[step, round(float(losses.mean()), 4)] for step, losses in held_losses.items()],
        "kept_step": best_step,
        "loss_first_10": float(np.mean(losses[:10])) if losses else float("nan"),
        "loss_last_10": float(np.mean(losses[-10:])) if losses else float("nan"),
        "seconds": round(time.perf_counter() - started, 1),
        "device": str(device),
    }
    with atomic_directory(out_dir) as staging:
        model.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
        (staging / "finetune.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    log.info(
        "fine-tuned %s: loss %.3f -> %.3f in %.0f s (step kept: %s)",
        encoder.name,
        report["loss_first_10"],
        report["loss_last_10"],
        report["seconds"],
        report["kept_step"],
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
