"""One interface for every recommender, in the spirit of Cornac's ``Recommender``.

Every model — the attention-fusion model and each baseline — is fitted on a :class:`TrainData`
and then answers ``score`` (a users x items matrix, vectorised), ``recommend`` (top-K for one
user, with filters), ``save`` and ``load``. The app, the evaluator and the benchmarks treat them
alike. Models are saved as ``config.json`` + ``weights.safetensors`` + ``ids.json``: never pickle.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from ..atomic import atomic_write_json

MODEL_REGISTRY: dict[str, type[Recommender]] = {}
MODEL_FILES = ("config.json", "ids.json", "weights.safetensors")


class ModelDamaged(RuntimeError):
    """A saved model with a file that cannot be read (truncated, emptied, overwritten): names the file."""

    def __init__(self, file: str | Path, reason: str, action: str = "train the model again"):
        super().__init__(f"{file} {reason}; {action}")
        self.file = str(file)
        self.reason = reason


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "is missing"
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"cannot be read ({first[:160].rstrip('.')})"


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelDamaged(path, _reason(exc)) from exc
    if not isinstance(data, dict):
        raise ModelDamaged(path, "cannot be read (not a JSON object)")
    return data


def check_safetensors(path: Path) -> None:
    """:class:`ModelDamaged` unless ``path`` has a whole safetensors header and is as long as it says: reads
    the header only (a truncated file is short of the last tensor's end)."""
    import struct

    try:
        with open(path, "rb") as handle:
            size = path.stat().st_size
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > size - 8:
                raise ValueError("the header is cut short")
            header = json.loads(handle.read(length))
        ends = [int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"]
    except (OSError, ValueError, struct.error, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ModelDamaged(
            path, _reason(exc) if not isinstance(exc, struct.error) else "cannot be read (shorter than a header)"
        ) from exc
    if 8 + length + max(ends, default=0) > size:
        raise ModelDamaged(
            path, f"cannot be read (truncated: {size} bytes, the header promises {8 + length + max(ends)})"
        )


def check_saved_model(folder: str | Path) -> None:
    """:class:`ModelDamaged` naming the first file of a saved model that cannot be read; cheap (JSON parses and
    the weights' header, no tensor is loaded), for listings."""
    folder = Path(folder)
    _read_json_object(folder / "config.json")
    _read_json_object(folder / "ids.json")
    check_safetensors(folder / "weights.safetensors")


@dataclass
class TrainData:
    """What every recommender fits on: indexed interactions, plus item content when there is some.

    Rows of ``train`` are users and columns items, in the order of ``user_ids`` / ``item_ids``.
    The item axis is the whole catalogue, so items without any training interaction (cold
    items) exist and can be scored by content-aware models.
    """

    user_ids: np.ndarray  # str, one per row
    item_ids: np.ndarray  # str, one per column
    train: sp.csr_matrix  # binary float32 [n_users, n_items]
    ratings: sp.csr_matrix | None = None  # explicit values on the same pattern, when the data has them
    valid: sp.csr_matrix | None = None  # validation positives, for early stopping / model selection
    item_features: Any = None  # recsys.features.extract.ItemFeatures aligned with item_ids, or None
    # bool [n_items]: items the catalogue marks as not for sale (a shop's drafts and archived products): learned
    # from like any other, never recommended
    not_for_sale: np.ndarray | None = None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __post_init__(self) -> None:
        self.user_ids = np.asarray(self.user_ids).astype(str)
        self.item_ids = np.asarray(self.item_ids).astype(str)
        self.train = sp.csr_matrix(self.train, dtype=np.float32)
        if self.train.shape != (self.n_users, self.n_items):
            raise ValueError(f"train matrix is {self.train.shape}, expected ({self.n_users}, {self.n_items})")
        if self.not_for_sale is not None:
            self.not_for_sale = np.asarray(self.not_for_sale, dtype=bool)
            if self.not_for_sale.shape != (self.n_items,):
                raise ValueError(f"not_for_sale has shape {self.not_for_sale.shape}, expected ({self.n_items},)")


Filter = Callable[[np.ndarray], np.ndarray]  # item indices -> bool keep-mask


@dataclass(frozen=True)
class RetrievalVectors:
    """A model's score as an inner product, for an ANN retrieval stage (:mod:`recsys.retrieval`).

    ``score(u, i) == users(u) . items[i]`` (up to float rounding) for every item ``i`` with ``indexed[i]``;
    the model ranks the other items (e.g. cold items of a collaborative model) below every indexed one, so
    the index holds only the indexed items. ``users`` maps user rows to vectors ``[n, D]`` on demand (a
    content profile is computed from the history, not stored for every user)."""

    items: np.ndarray  # float32 [n_items, D]
    users: Callable[[np.ndarray], np.ndarray]  # user rows -> float32 [n, D]
    indexed: np.ndarray | None = None  # bool [n_items]; None: every item


class Recommender(ABC):
    """Base class. Subclasses set ``name`` and implement ``fit`` and ``score`` (and state I/O)."""

    name: ClassVar[str] = "recommender"
    #: True when the model can score items that had no training interactions (from content).
    scores_cold_items: ClassVar[bool] = False
    #: Bumped whenever the saved weights change shape or meaning; older saves are refused plainly.
    format_version: ClassVar[int] = 1

    def __init__(self, **config: Any):
        self.config: dict[str, Any] = dict(config)
        self.user_ids: np.ndarray | None = None
        self.item_ids: np.ndarray | None = None
        self.seen: sp.csr_matrix | None = None  # training interactions, masked in recommend()
        self.not_for_sale: np.ndarray | None = None  # bool [n_items]: never recommended (TrainData.not_for_sale)
        self.fit_seconds: float | None = None
        self.retrieval: Any = None  # a recsys.retrieval.RetrievalIndex that recommend() goes through, or None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            MODEL_REGISTRY[cls.name] = cls

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def fit(self, data: TrainData) -> Recommender:
        """Learn from ``data``; must call :meth:`_remember` so ids and seen items are known."""

    @abstractmethod
    def score(self, users: Sequence[int] | np.ndarray) -> np.ndarray:
        """Scores ``float32 [len(users), n_items]`` for user row indices; higher is better."""

    def _state(self) -> dict[str, np.ndarray]:
        """Arrays to save (safetensors). Override in models with parameters."""
        return {}

    def _restore(self, state: dict[str, np.ndarray]) -> None:  # noqa: B027 (an optional hook: models without parameters keep it empty)
        """Inverse of :meth:`_state`."""

    def _learned(self) -> dict[str, Any]:
        """What the fit chose that is not an array (plain JSON, saved in ``config.json``). Override to add."""
        return {}

    def _restore_learned(self, learned: dict[str, Any]) -> None:  # noqa: B027 (optional, as _restore)
        """Inverse of :meth:`_learned` (an older model's is empty)."""

    # ------------------------------------------------------------------ capabilities
    def explains_by_modality(self) -> bool:
        """True when the model has per-user modality weights and exact additive shares per modality
        (then it also answers ``modalities``, ``user_modality_weights``, ``population_weights`` (a user with
        no history), ``explain_scores``, ``masked_scores``, ``item_presence`` and ``attention_matrix``)."""
        return False

    def attribute_weights(self) -> dict[str, float]:
        """The weight the model gives each attribute column (a multi-label block is named by its columns
        joined with " + "); 0 = the column is not used. Empty for models that do not weigh columns."""
        return {}

    def popularity_tilt(self) -> dict[str, float]:
        """Per content modality, how its per-item weight leans with the item's popularity (a slope against
        the item's standardised log count: above 0, more weight on often chosen items). Empty for models
        whose weights do not depend on the item."""
        return {}

    def score_history(self, items: Sequence[int], weights: Sequence[float] | None = None) -> np.ndarray:
        """Scores ``[n_items]`` for a user known only by the item indices ``items`` (no retraining).

        ``weights`` (one per item, mean 1) scale each item's part. The default treats the items as a
        one-row history for models whose score is a function of the user's history row."""
        import copy

        history = np.asarray(items, dtype=np.int64)
        if len(history) == 0:
            raise ValueError("a history needs at least one item")
        w = _history_weights(history, weights)
        clone = copy.copy(self)
        clone.seen = sp.csr_matrix(
            (w.astype(np.float32), (np.zeros(len(history), dtype=np.int64), history)), shape=(1, self.n_items)
        )
        return np.asarray(clone.score(np.array([0]))[0], dtype=np.float64)

    def score_without_history(self, mixing_history: Sequence[int] | None = None) -> np.ndarray:
        """Scores ``[n_items]`` for a user with no history item: the part of every score that no history item
        accounts for (a popularity prior, item biases; 0 for a model whose score is a sum over the history's
        items). ``mixing_history`` as in :meth:`score_histories`. The explanations' single-item case: what one
        liked item adds is its score minus this, not minus the catalogue's average (which credited the item
        with a bestseller's popularity). The default scores an empty one-row history."""
        import copy

        clone = copy.copy(self)
        clone.seen = sp.csr_matrix((1, self.n_items), dtype=np.float32)
        return np.asarray(clone.score(np.array([0]))[0], dtype=np.float64)

    def score_histories(
        self, histories: Sequence[Sequence[int]], mixing_history: Sequence[int] | None = None
    ) -> np.ndarray:
        """Scores ``[len(histories), n_items]``, one row per history (a set of item indices); models with a
        batched new-user path override this (the explainer's leave-one-out asks for many at once).

        ``mixing_history``: for a model whose user-level weighting depends on the whole history (how far
        it trusts it, how much popularity it blends in), score every row with the weighting this history
        gets, so that rows differ only by their items. Models without such a weighting ignore it."""
        return np.stack([self.score_history(h) for h in histories]) if len(histories) else np.zeros((0, self.n_items))

    def item_embeddings(self) -> np.ndarray:
        """L2-normalised item vectors ``[n_items, d]`` ("items like this one", maps, diversity). The default
        is a truncated SVD of the training interactions; content models override it."""
        vectors = svd_item_vectors(self.seen, 32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)

    def retrieval_vectors(self) -> RetrievalVectors | None:
        """The score as a user . item inner product (:class:`RetrievalVectors`), for the ANN retrieval stage;
        ``None`` (the default) when the score is not one. Only models whose score *is* that product say so."""
        return None

    def score_items(self, user: int, items: np.ndarray) -> np.ndarray:
        """Scores ``float64 [len(items)]`` of one user row for the item indices ``items``: exactly what
        ``score`` gives them (the re-scoring of retrieved candidates). The default scores the whole row."""
        return np.asarray(self.score(np.array([user]))[0], dtype=np.float64)[np.asarray(items, dtype=np.int64)]

    def use_retrieval(self, config: Any = None) -> Any:
        """Build an ANN index over :meth:`retrieval_vectors` (``config``: a
        :class:`recsys.retrieval.RetrievalConfig`) and make :meth:`recommend` retrieve through it; returns the
        :class:`recsys.retrieval.RetrievalIndex`. ``ValueError`` for a model without retrieval vectors,
        ``ImportError`` (saying what to install) without faiss. ``model.retrieval = None`` turns it off."""
        from ..retrieval import RetrievalIndex

        self.retrieval = RetrievalIndex.build(self, config)
        return self.retrieval

    # ------------------------------------------------------------------ shared behaviour
    def _remember(self, data: TrainData) -> None:
        self.user_ids = data.user_ids
        self.item_ids = data.item_ids
        self.seen = data.train.tocsr()
        marked = data.not_for_sale
        self.not_for_sale = None if marked is None or not marked.any() else np.asarray(marked, dtype=bool).copy()
        self._user_index = {u: i for i, u in enumerate(self.user_ids)}
        self._item_index = {v: i for i, v in enumerate(self.item_ids)}

    @property
    def n_users(self) -> int:
        return 0 if self.user_ids is None else len(self.user_ids)

    @property
    def n_items(self) -> int:
        return 0 if self.item_ids is None else len(self.item_ids)

    def user_index(self, user: int | str) -> int:
        if isinstance(user, (int, np.integer)) and not isinstance(user, bool):
            if not 0 <= int(user) < self.n_users:
                raise KeyError(f"user index {user} out of range (0..{self.n_users - 1})")
            return int(user)
        try:
            return self._user_index[str(user)]
        except KeyError:
            raise KeyError(f"unknown user '{user}': not in this model's training data") from None

    def item_index(self, item: int | str) -> int:
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            return int(item)
        try:
            return self._item_index[str(item)]
        except KeyError:
            raise KeyError(f"unknown item '{item}'") from None

    def recommend(
        self,
        user: int | str,
        k: int = 10,
        exclude_seen: bool = True,
        filters: np.ndarray | Iterable[Filter] | None = None,
        candidates: np.ndarray | None = None,
        diversity: float = 0.0,
        item_vectors: np.ndarray | None = None,
        groups: np.ndarray | None = None,
        exposure: tuple[np.ndarray, float, float] | None = None,
    ) -> list[tuple[str, float]]:
        """Top-``k`` (item_id, score) for one user.

        ``filters`` is a boolean keep-mask over items or callables returning one; ``candidates``
        restricts ranking to those item indices. ``groups`` (one id per item, e.g. from
        :func:`recsys.models.rerank.variant_groups`) keeps at most one item per group: the near-duplicate
        guard; with ``exclude_seen`` it also leaves out the groups of the user's own items (another SKU of an
        article the user has is not a new recommendation), unless fewer than ``k`` items would be left.
        ``diversity`` > 0 re-ranks by MMR over ``item_vectors`` (default: the model's own).
        ``exposure = (membership [n_items] in [0, 1], target share, strength in [0, 1])`` then moves one item
        group's share of the list toward the target (:func:`recsys.models.rerank.exposure_rerank`).
        With an index attached (:meth:`use_retrieval`) the items are ranked among the index's candidates, scored
        exactly (:mod:`recsys.retrieval`); the exact scan when the index cannot supply enough of them.
        """
        from .rerank import select_top

        row = self.user_index(user)
        keep = self._keep_mask(row, exclude_seen, filters, candidates)
        if groups is not None and exclude_seen and self.seen is not None:
            from .rerank import without_versions_of

            keep = without_versions_of(keep, groups, self._seen_items(row), k)
        if self.retrieval is not None:  # the ANN stage, then exact scores of its candidates; None: too few of them
            found = self.retrieval.recommend(self, row, k, keep, diversity, item_vectors, groups, exposure)
            if found is not None:
                return found
        scores = np.asarray(self.score(np.array([row]))[0], dtype=np.float64)
        if diversity > 0 and item_vectors is None:
            item_vectors = self.item_embeddings()
        top = select_top(scores, k, keep, diversity, item_vectors, groups, exposure)
        assert self.item_ids is not None  # user_index above has refused an unfitted model
        return [(str(self.item_ids[i]), float(scores[i])) for i in top]

    def _seen_items(self, row: int) -> np.ndarray:
        """The item indices in user ``row``'s history (``seen``, which must be set)."""
        assert self.seen is not None
        return self.seen.indices[self.seen.indptr[row] : self.seen.indptr[row + 1]]

    def for_sale(self) -> np.ndarray:
        """bool ``[n_items]``: the items a list may hold (every one but those the catalogue marks as not for sale:
        :attr:`TrainData.not_for_sale` when the model was trained, then :meth:`mark_not_for_sale`'s). Every
        recommendation path starts from it."""
        keep = np.ones(self.n_items, dtype=bool)
        if self.not_for_sale is not None and len(self.not_for_sale) == self.n_items:
            keep &= ~self.not_for_sale
        return keep

    def mark_not_for_sale(self, marked: np.ndarray | None) -> None:
        """Replace which items are never recommended (bool ``[n_items]``; None: every item is for sale). What a
        shop sells changes between imports of its catalogue, what its customers bought does not: a run that
        serves the catalogue as imported now takes its marks (``recsys.train.records.follow_current_import``)
        without training again."""
        if marked is None or not np.asarray(marked).any():
            self.not_for_sale = None
            return
        marked = np.asarray(marked, dtype=bool)
        if marked.shape != (self.n_items,):
            raise ValueError(f"not-for-sale marks have shape {marked.shape}, expected ({self.n_items},)")
        self.not_for_sale = marked.copy()

    def _keep_mask(self, row: int, exclude_seen: bool, filters: Any, candidates: np.ndarray | None) -> np.ndarray:
        keep = self.for_sale()
        if candidates is not None:
            chosen = np.zeros(self.n_items, dtype=bool)
            chosen[np.asarray(candidates, dtype=np.int64)] = True
            keep &= chosen
        if exclude_seen and self.seen is not None:
            keep[self._seen_items(row)] = False
        if filters is not None:
            if isinstance(filters, np.ndarray):
                keep &= filters.astype(bool)
            else:
                all_items = np.arange(self.n_items)
                for item_filter in filters:
                    keep &= np.asarray(item_filter(all_items), dtype=bool)
        return keep

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        """Write ``config.json``, ``ids.json`` and ``weights.safetensors`` into ``folder``."""
        from safetensors.numpy import save_file

        assert self.user_ids is not None and self.item_ids is not None, "only a fitted model can be saved"
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: np.ascontiguousarray(v) for k, v in self._state().items()}
        if self.seen is not None:
            seen = self.seen.tocsr()
            state |= {"_seen.indptr": seen.indptr.astype(np.int64), "_seen.indices": seen.indices.astype(np.int64)}
        if self.not_for_sale is not None:
            state["_not_for_sale"] = self.not_for_sale.astype(np.uint8)
        tmp = folder / ".weights.safetensors.tmp"
        save_file(state, str(tmp))
        tmp.replace(folder / "weights.safetensors")
        atomic_write_json(
            folder / "ids.json",
            {"user_ids": [str(u) for u in self.user_ids], "item_ids": [str(i) for i in self.item_ids]},
        )
        atomic_write_json(
            folder / "config.json",
            {
                "model": self.name,
                "format_version": self.format_version,
                "config": self.config,
                "fit_seconds": self.fit_seconds,
                "learned": self._learned(),
            },
        )
        return folder

    @classmethod
    def upgrade_saved_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """A saved ``config.json``'s options as this version reads them: an option added after the model was
        saved gets the value the model was fitted with, not today's default (the base class adds none)."""
        return config

    @classmethod
    def load(cls, folder: str | Path) -> Recommender:
        """Load any saved model; the class comes from ``config.json`` (no code is unpickled)."""
        from safetensors.numpy import load_file

        folder = Path(folder)
        meta = _read_json_object(folder / "config.json")
        if not isinstance(meta.get("model"), str) or not isinstance(meta.get("config"), dict):
            raise ModelDamaged(folder / "config.json", "cannot be read (no model name or configuration)")
        _import_all_models()
        model_cls = MODEL_REGISTRY.get(meta["model"])
        if model_cls is None:
            raise ValueError(f"unknown model type {meta['model']!r} in {folder}; known: {sorted(MODEL_REGISTRY)}")
        if cls is not Recommender and not issubclass(model_cls, cls):
            raise TypeError(f"{folder} holds a {meta['model']} model, not a {cls.name}")
        saved_version = int(meta.get("format_version", 1))
        if saved_version != model_cls.format_version:
            raise ValueError(
                f"{folder} holds a {meta['model']} model saved in format {saved_version}; this version of "
                f"the studio reads format {model_cls.format_version}. Train the model again."
            )
        model = model_cls(**model_cls.upgrade_saved_config(dict(meta["config"])))
        ids = _read_json_object(folder / "ids.json")
        if not isinstance(ids.get("user_ids"), list) or not isinstance(ids.get("item_ids"), list):
            raise ModelDamaged(folder / "ids.json", "cannot be read (no user or item ids)")
        model.user_ids = np.asarray(ids["user_ids"], dtype=str)
        model.item_ids = np.asarray(ids["item_ids"], dtype=str)
        model._user_index = {u: i for i, u in enumerate(model.user_ids)}
        model._item_index = {v: i for i, v in enumerate(model.item_ids)}
        check_safetensors(folder / "weights.safetensors")  # a plain ModelDamaged before safetensors' own errors
        try:
            state = load_file(str(folder / "weights.safetensors"))
        except Exception as exc:  # SafetensorError derives from Exception only
            raise ModelDamaged(folder / "weights.safetensors", _reason(exc)) from exc
        if "_seen.indptr" in state:
            indptr, indices = state.pop("_seen.indptr"), state.pop("_seen.indices")
            model.seen = sp.csr_matrix(
                (np.ones(len(indices), dtype=np.float32), indices, indptr),
                shape=(len(model.user_ids), len(model.item_ids)),
            )
        if "_not_for_sale" in state:
            model.not_for_sale = state.pop("_not_for_sale").astype(bool)
        model.fit_seconds = meta.get("fit_seconds")
        learned = meta.get("learned")
        model._restore_learned(learned if isinstance(learned, dict) else {})
        model._restore(state)
        return model


def _history_weights(items: np.ndarray, weights: Sequence[float] | None) -> np.ndarray:
    w = np.ones(len(items)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != items.shape:
        raise ValueError("weights must have one value per history item")
    return w * (len(items) / w.sum()) if w.sum() > 0 else np.ones(len(items))  # mean weight 1


def svd_item_vectors(seen: Any, dim: int = 32) -> np.ndarray:
    """Item vectors ``[n_items, k]`` from a truncated SVD of the interactions (items that share users are
    close); tf-idf-like column weighting keeps the most popular items from dominating every direction."""
    from scipy.sparse.linalg import svds

    matrix = sp.csr_matrix(seen, dtype=np.float32)
    n_users, n_items = matrix.shape
    k = int(min(dim, n_users - 1, n_items - 1))
    if k < 1 or matrix.nnz == 0:
        return np.zeros((n_items, 1), dtype=np.float32)
    counts = np.asarray(matrix.sum(axis=0)).ravel()
    weighted = matrix @ sp.diags(1.0 / np.sqrt(np.maximum(counts, 1.0)))
    try:
        _, s, vt = svds(weighted.astype(np.float64), k=k, random_state=0)
    except Exception:  # tiny or degenerate matrices: dense SVD
        _, s, vt = np.linalg.svd(weighted.toarray(), full_matrices=False)
        s, vt = s[:k], vt[:k]
    return (vt.T * s).astype(np.float32)


def get_model(name: str, **config: Any) -> Recommender:
    """A fresh model by registry name (``list_models()`` lists them)."""
    _import_all_models()
    try:
        return MODEL_REGISTRY[name](**config)
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(list_models())}") from None


def list_models() -> list[str]:
    _import_all_models()
    return sorted(MODEL_REGISTRY)


def _import_all_models() -> None:
    import importlib

    for module in ("baselines", "fusion"):
        try:
            importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{module}":
                raise


def batched_scores(
    model: Recommender, users: np.ndarray, batch_size: int = 1024
) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(user_rows, scores)`` in batches so memory stays bounded on big catalogues."""
    users = np.asarray(users, dtype=np.int64)
    for start in range(0, len(users), batch_size):
        rows = users[start : start + batch_size]
        yield rows, model.score(rows)


__all__ = [
    "TrainData",
    "Recommender",
    "RetrievalVectors",
    "MODEL_REGISTRY",
    "ModelDamaged",
    "check_saved_model",
    "get_model",
    "list_models",
    "batched_scores",
]
