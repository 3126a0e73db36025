"""Typed configuration of every model: one dataclass per model, each option with its type, default and a
one-line help.

:class:`FusionConfig` holds every option of :class:`recsys.models.fusion.FusionRecommender` (its
``config`` dict is ``FusionConfig(...).to_dict()``); ``ItemKNNConfig``, ``EASEConfig``, ``BPRConfig`` and
``LightGCNConfig`` hold the hyperparameters the baselines take, with the defaults of their constructors
(``tests/models/test_config.py`` checks they agree). ``BASELINE_CONFIGS`` maps a model name to its class.
The run's configuration (:class:`recsys.train.run.RunConfig`) nests them; the CLI's ``train`` flags and
the Train page's widgets are generated from the fields (:func:`option` puts the help in the metadata).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from .ease import DEFAULT_L2_GRID

MODALITIES = ("behaviour", "text", "image", "attributes")
FUSIONS = ("attention", "mean", "item_gate", "concat")
LOSSES = ("softmax", "bpr")
FusionVariant = Literal["attention", "mean", "item_gate", "concat"]
FusionLoss = Literal["softmax", "bpr"]
BehaviourPrior = Literal["ease", "cosine"]
AttributeWeighting = Literal["behaviour", "equal"]
Auto = Literal["auto"]


def option(default: Any, help_text: str, **kw: Any) -> Any:
    """A dataclass field with its default and one-line help (``metadata["help"]``); lists are copied."""
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: list(default), metadata={"help": help_text, **kw})
    return field(default=default, metadata={"help": help_text, **kw})


def nested(cls: type, help_text: str) -> Any:
    """A field holding another config dataclass (its own fields are the options)."""
    return field(default_factory=cls, metadata={"help": help_text, "nested": cls})


def field_types(cls: type) -> dict[str, Any]:
    """Field name -> resolved type annotation (the module uses postponed annotations)."""
    return typing.get_type_hints(cls)


def field_default(item: dataclasses.Field) -> Any:
    if item.default is not dataclasses.MISSING:
        return item.default
    factory = item.default_factory
    if not callable(factory):  # dataclasses.MISSING: the field has no default at all
        raise TypeError(f"option {item.name!r} has no default")
    return factory()


def l2_value(value: Any, name: str) -> float | Auto:
    """``"auto"`` or a positive float; ``ValueError`` naming ``name`` otherwise."""
    if str(value) == "auto":
        return "auto"
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if not number > 0:
        raise ValueError(f"{name} must be 'auto' or a positive number, not {value!r}")
    return number


class _Config:
    """Shared helpers: ``from_dict`` refuses unknown keys, ``to_dict`` gives plain JSON values."""

    retired: typing.ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def from_dict(cls, data: dict[str, Any], what: str | None = None) -> Any:
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise ValueError(f"{what or cls.__name__} must be an object of options, not {data!r}")
        # options earlier versions had and saved in their config.json: read, and dropped
        data = {key: value for key, value in data.items() if key not in cls.retired}
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown {what or cls.__name__} options {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclass
class FusionConfig(_Config):
    """Every option of the fusion recommender (see :mod:`recsys.models.fusion`)."""

    # max_dense_items (until 2026-12): the item count above which cosine neighbours replaced EASE; capped EASE
    # measured better at every size tried, so the choice is behaviour_prior now
    retired: typing.ClassVar[frozenset[str]] = frozenset({"max_dense_items"})

    modalities: list[str] = option(list(MODALITIES), "which experts exist (a modality without data is dropped)")
    fusion: FusionVariant = option(
        "attention", "attention (a per-user gate over the modality experts), mean, item_gate or concat"
    )
    loss: FusionLoss = option("softmax", "softmax over the catalogue (cloze) or bpr (sampled negatives)")
    epochs: int = option(30, "maximum gate-training rounds (early stopping on valid NDCG@20 usually ends sooner)")
    steps_per_epoch: int = option(10, "optimiser steps per round (each on cloze_batch users)")
    patience: int = option(3, "rounds without a valid NDCG@20 gain before stopping")
    lr: float = option(0.05, "learning rate of the gate (Adam)")
    gate_l2: float = option(1e-3, "L2 on the gate's weights (pulls every user toward the population)")
    cloze_ratio: float = option(0.2, "share of a cloze user's history hidden and predicted")
    short_history_share: float = option(0.3, "cloze users who keep only 1-3 visible items (new-user regime)")
    gate_users: int = option(4000, "at most this many users in the cloze sample")
    cloze_batch: int = option(64, "cloze users per optimiser step")
    cloze_budget: int = option(40_000_000, "at most users x modalities x items floats in the cloze tensors")
    folds: int = option(
        5,
        "the behaviour expert's scores of the cloze users come from this many folds (out-of-fold)",
        label="Cloze folds",
    )
    ease_l2: float | Auto = option(
        "auto", "L2 of the behaviour expert (EASE): a number, or auto = chosen on valid from ease_l2_grid"
    )
    ease_l2_grid: list[float] = option(list(DEFAULT_L2_GRID), "L2 values tried on validation when ease_l2 is auto")
    fallback_l2: float = option(250.0, "the behaviour L2 of auto without validation data")
    behaviour_prior: BehaviourPrior = option(
        "ease",
        "ease = EASE over the ease_max_items most interacted items, the rest ordered by content (any catalogue "
        "size); cosine = sparse item-item cosine neighbours over every item (measured worse: "
        "benchmarks/large_prior.py)",
    )
    ease_max_items: int = option(5_000, "EASE covers at most this many items (the most interacted; the rest: content)")
    neighbours: int = option(200, "item-item neighbours kept per item with behaviour_prior = cosine")
    popularity_prior: bool = option(True, "blend in popularity for users with short histories")
    rank_weighted: bool = option(True, "cloze loss weighted by the DCG discount of each hidden item's rank")
    behaviour_scales: list[float] = option(
        [0.5, 1.0, 1.5, 2.5, 4.0, 8.0], "multipliers of the behaviour expert tried on validation after training"
    )
    popularity_floors: list[float] = option(
        [0.0, 0.1, 0.2, 0.4, 0.8],
        "popularity kept by every user whatever the history's length, chosen on validation (0: the fitted fade)",
    )
    short_history_boosts: list[float] = option(
        [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
        "extra popularity for users known by 1-3 items, chosen on validation (a large value ~ MostPop for them)",
    )
    renormalise_missing: bool = option(True, "an item lacking a modality spreads its weight over the others")
    choice_ridge: float = option(
        3.0,
        "ridge of each user's conditional-logit fit over the content experts "
        "(pulls a short history's coefficients toward 0)",
    )
    projection_ridge: float = option(
        1.0,
        "ridge of the map from a modality's vectors to the behaviour expert's "
        "weights that orders items outside it (0: plain cosine for them too)",
    )
    attribute_weighting: AttributeWeighting = option(
        "behaviour",
        "behaviour = each attribute column weighted by how much more than chance users' histories share its "
        "values (a column nobody is loyal to counts 0); equal = every column the same",
    )
    choice_alternatives: int = option(
        4096,
        "above this many items, each user's choice model (the content coefficients the gate reads) runs over a "
        "fixed random sample of this many items plus the histories' own (saved with the model)",
    )
    evidence_clip: float = option(
        4.0,
        "the gate reads each user's evidence in standard deviations of the training users'; beyond this many it "
        "is clipped (0: never). A new visitor's few items can lie far outside (two items nobody chose together: "
        "-38 on a shop), which drove a modality's weight to 1e-10",
    )
    content_max_dim: int = option(
        256,
        "a content modality wider than this (e.g. thousands of tags) is reduced to its leading principal "
        "directions first (0: never)",
    )
    seed: int = option(2026, "random seed")
    device: str = option("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, not {self.fusion!r}")
        if self.loss not in LOSSES:
            raise ValueError(
                f"loss must be one of {LOSSES}, not {self.loss!r} (the fusion model ranks; "
                "rating prediction is not one of its losses)"
            )
        if self.behaviour_prior not in typing.get_args(BehaviourPrior):
            raise ValueError(
                f"behaviour_prior must be one of {typing.get_args(BehaviourPrior)}, not {self.behaviour_prior!r}"
            )
        if self.attribute_weighting not in typing.get_args(AttributeWeighting):
            raise ValueError(
                f"attribute_weighting must be one of {typing.get_args(AttributeWeighting)}, "
                f"not {self.attribute_weighting!r}"
            )
        self.modalities = [m for m in MODALITIES if m in self.modalities]
        if not self.modalities:
            raise ValueError(f"choose at least one modality of {MODALITIES}")
        self.ease_l2 = l2_value(self.ease_l2, "ease_l2")
        if self.evidence_clip < 0:
            raise ValueError(f"evidence_clip must be 0 (no clip) or positive, not {self.evidence_clip}")
        if self.choice_alternatives < 64:
            raise ValueError(f"choice_alternatives must be at least 64, not {self.choice_alternatives}")


@dataclass
class MostPopConfig(_Config):
    """MostPop takes no option."""


@dataclass
class ContentConfig(_Config):
    """The content-only baseline takes no option (its features are the run's modalities)."""


@dataclass
class ItemKNNConfig(_Config):
    """Item-based k-nearest neighbours (:class:`recsys.models.baselines.ItemKNN`)."""

    k_neighbors: int = option(100, "most similar items kept per item")
    shrink: float = option(10.0, "shrinkage added to the cosine's denominator (damps rare co-occurrences)")
    block_size: int = option(2048, "items per block of the similarity computation (memory)")


@dataclass
class EASEConfig(_Config):
    """EASE^R (:class:`recsys.models.baselines.EASE`)."""

    l2: float | Auto = option("auto", "L2 regularisation: a number, or auto = chosen on valid from l2_grid")
    positive_only: bool = option(False, "drop negative item-item weights (Cornac's posB)")
    max_items: int = option(20_000, "refuse catalogues larger than this (dense n x n)")
    l2_grid: list[float] = option(list(DEFAULT_L2_GRID), "L2 values tried on validation when l2 is auto")
    fallback_l2: float = option(250.0, "the L2 of auto without validation data")

    def __post_init__(self) -> None:
        self.l2 = l2_value(self.l2, "ease l2")


@dataclass
class BPRConfig(_Config):
    """Matrix factorisation with the BPR loss (:class:`recsys.models.baselines.BPRMF`)."""

    dim: int = option(64, "embedding size")
    lr: float = option(0.002, "learning rate (Adam)")
    weight_decay: float = option(0.02, "L2 penalty on the embeddings used in each batch")
    epochs: int = option(300, "maximum epochs (early stopping on valid NDCG@20)")
    batch_size: int = option(4096, "triples per optimiser step")
    use_bias: bool = option(True, "learn an item bias")
    init_std: float = option(0.1, "standard deviation of the initial embeddings")
    eval_every: int = option(5, "epochs between validation evaluations")
    patience: int = option(8, "evaluations without a valid NDCG@20 gain before stopping")
    seed: int = option(2026, "random seed")
    device: str = option("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    verbose: bool = option(False, "print the loss of each epoch")


@dataclass
class LightGCNConfig(_Config):
    """LightGCN (:class:`recsys.models.baselines.LightGCN`)."""

    dim: int = option(64, "embedding size")
    layers: int = option(3, "graph propagation layers")
    lr: float = option(0.01, "learning rate (Adam)")
    weight_decay: float = option(1e-3, "L2 penalty on the batch's layer-0 embeddings")
    epochs: int = option(300, "maximum epochs (early stopping on valid NDCG@20)")
    batch_size: int = option(8192, "triples per optimiser step")
    init_std: float = option(0.1, "standard deviation of the initial embeddings")
    eval_every: int = option(10, "epochs between validation evaluations")
    patience: int = option(5, "evaluations without a valid NDCG@20 gain before stopping")
    seed: int = option(2026, "random seed")
    device: str = option("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    verbose: bool = option(False, "print the loss of each epoch")


BASELINE_CONFIGS: dict[str, type] = {
    "mostpop": MostPopConfig,
    "itemknn": ItemKNNConfig,
    "ease": EASEConfig,
    "bpr": BPRConfig,
    "lightgcn": LightGCNConfig,
    "content": ContentConfig,
}
MODEL_CONFIGS: dict[str, type] = {"fusion": FusionConfig, **BASELINE_CONFIGS}

__all__ = [
    "BASELINE_CONFIGS",
    "DEFAULT_L2_GRID",
    "FUSIONS",
    "LOSSES",
    "MODALITIES",
    "MODEL_CONFIGS",
    "BPRConfig",
    "ContentConfig",
    "EASEConfig",
    "FusionConfig",
    "ItemKNNConfig",
    "LightGCNConfig",
    "MostPopConfig",
    "field_default",
    "field_types",
    "l2_value",
    "nested",
    "option",
]
