"""ANN retrieval stage: an index over a model's item vectors, then exact re-scoring of the candidates.

A model whose score *is* a user . item inner product says so through
:meth:`recsys.models.base.Recommender.retrieval_vectors` (BPR-MF with its item bias as one more dimension,
LightGCN, the content baseline); the others answer ``None`` and keep their exact scan. :class:`RetrievalIndex`
holds the item vectors in a faiss index chosen by catalogue size (:class:`RetrievalConfig`): below
``exact_below`` items an exact ``IndexFlatIP``, above it ``IndexHNSWFlat`` with the inner product.

A query (:meth:`RetrievalIndex.recommend`, which ``Recommender.recommend`` calls once an index is attached
with ``model.use_retrieval()``) takes the top ``C = candidate_factor * need + seen`` items of the index
(``need`` = ``k``, or MMR's / the exposure step's pool of ``max(5k, 50)``), keeps those the user's mask keeps
(seen items, filters, ``candidates``), widens ``C`` fourfold while fewer than ``need`` are left (or fewer
variant groups than ``need``), scores the survivors with the model's own :meth:`score_items` and ranks them
by the same :func:`recsys.models.rerank.select_top` as the exact path, on the candidates ordered by item
index (so ties still go to the lower item index). When the whole index cannot supply ``need`` items it
answers ``None`` and ``recommend`` scans exactly. With the flat index the result is the exact one.

The index is built when it is attached (not saved with the run): ~0.1 s for a flat index of 20k x 65,
about half a minute for HNSW at 100k items on 2 cores (``benchmarks/ann.py`` measures it).
faiss (``faiss-cpu``) is imported only here, when an index is built.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from .models.base import Recommender, RetrievalVectors

__all__ = ["ANN_MODES", "RetrievalConfig", "RetrievalIndex", "attach_retrieval", "import_faiss", "recall_at"]

ANN_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class RetrievalConfig:
    """How the ANN index is built and searched."""

    kind: Literal["auto", "flat", "hnsw"] = "auto"  # auto: flat below exact_below items, HNSW from there
    exact_below: int = 20_000  # catalogue size from which `auto` builds HNSW instead of the exact flat index
    hnsw_m: int = 48  # HNSW links per node (more: better recall, more memory and build time)
    ef_construction: int = 100  # HNSW candidate list while building
    ef_search: int = 512  # HNSW candidate list while searching (at least the number of candidates asked for)
    candidate_factor: int = 4  # candidates = factor x the items needed + the user's seen items
    build_threads: int = 0  # faiss OpenMP threads while building (0: faiss's default, all cores)

    def resolved_kind(self, n_items: int) -> str:
        if self.kind != "auto":
            return self.kind
        return "flat" if n_items < self.exact_below else "hnsw"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def import_faiss() -> Any:
    """The faiss module, or an ``ImportError`` that says what to install."""
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(
            "the ANN retrieval stage needs faiss: pip install faiss-cpu (pinned in requirements.txt)"
        ) from exc
    return faiss


class RetrievalIndex:
    """A faiss index over one model's indexed item vectors; see the module docstring."""

    def __init__(self, vectors: RetrievalVectors, config: RetrievalConfig, index: Any, kind: str, seconds: float):
        self.vectors = vectors
        self.config = config
        self.index = index
        self.kind = kind
        self.build_seconds = seconds
        indexed = vectors.indexed
        self.item_rows = (
            np.arange(len(vectors.items), dtype=np.int64)
            if indexed is None
            else np.flatnonzero(indexed).astype(np.int64)
        )

    @classmethod
    def build(cls, model: Recommender, config: RetrievalConfig | None = None) -> RetrievalIndex:
        """The index over ``model.retrieval_vectors()``: ``ValueError`` when the model has none."""
        vectors = model.retrieval_vectors()
        if vectors is None:
            raise ValueError(
                f"the {model.name} model's score is not a user . item inner product, so it has no ANN retrieval "
                "stage (BPR-MF, LightGCN and the content model have one); its recommendations scan every item"
            )
        return cls.from_vectors(vectors, config)

    @classmethod
    def from_vectors(cls, vectors: RetrievalVectors, config: RetrievalConfig | None = None) -> RetrievalIndex:
        faiss = import_faiss()
        config = config or RetrievalConfig()
        items = np.asarray(vectors.items, dtype=np.float32)
        if vectors.indexed is not None:
            items = items[np.asarray(vectors.indexed, dtype=bool)]
        items = np.ascontiguousarray(items)
        kind = config.resolved_kind(len(items))
        started = time.perf_counter()
        dim = items.shape[1]
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, int(config.hnsw_m), faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = int(config.ef_construction)
        else:
            raise ValueError(f"unknown index kind {kind!r}: auto, flat or hnsw")
        threads = faiss.omp_get_max_threads()
        if config.build_threads > 0:
            faiss.omp_set_num_threads(int(config.build_threads))
        try:
            index.add(items)
        finally:
            faiss.omp_set_num_threads(threads)
        return cls(vectors, config, index, kind, time.perf_counter() - started)

    @property
    def n_indexed(self) -> int:
        return len(self.item_rows)

    def memory_bytes(self) -> int:
        """The index's own size (faiss's serialisation: vectors plus HNSW links)."""
        return int(import_faiss().serialize_index(self.index).size)

    def search(self, user_vectors: np.ndarray, count: int) -> np.ndarray:
        """Item indices (the model's) of the ``count`` best inner products per row, best first; ``-1`` pads."""
        faiss = import_faiss()
        count = int(min(max(count, 1), self.n_indexed))
        queries = np.ascontiguousarray(np.atleast_2d(user_vectors), dtype=np.float32)
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=int(max(self.config.ef_search, count)))
            _, found = self.index.search(queries, count, params=params)
        else:
            _, found = self.index.search(queries, count)
        return np.where(found >= 0, self.item_rows[np.maximum(found, 0)], -1)

    def candidates(self, model: Recommender, row: int, keep: np.ndarray, need: int, groups: Any = None) -> Any:
        """Retrieved items of user ``row`` that ``keep`` keeps, at least ``need`` of them (``need`` groups with
        ``groups``), in item order; ``None`` when the whole index cannot supply that many."""
        user = self.vectors.users(np.array([row]))
        seen = 0 if model.seen is None else int(model.seen.indptr[row + 1] - model.seen.indptr[row])
        count = int(self.config.candidate_factor) * need + seen
        while True:
            count = min(count, self.n_indexed)
            found = self.search(user, count)[0]
            found = found[found >= 0]
            kept = found[keep[found]]
            enough = len(np.unique(groups[kept])) if groups is not None else len(kept)
            if enough >= need:
                return np.sort(kept)
            if count >= self.n_indexed:
                return None
            count *= 4

    def recommend(
        self,
        model: Recommender,
        row: int,
        k: int,
        keep: np.ndarray,
        diversity: float = 0.0,
        item_vectors: np.ndarray | None = None,
        groups: np.ndarray | None = None,
        exposure: tuple[np.ndarray, float, float] | None = None,
    ) -> list[tuple[str, float]] | None:
        """``Recommender.recommend`` through the index (its arguments, the user as a row, seen items, filters and
        candidates as the boolean ``keep`` mask over items); ``None``: the index cannot supply enough
        candidates, scan exactly instead."""
        from .models.rerank import select_top

        reranked = (diversity > 0) or (exposure is not None and exposure[2] > 0)
        need = max(5 * k, 50) if reranked else k
        need = int(min(need, int(keep.sum())))
        if need <= 0:
            return None
        groups = None if groups is None else np.asarray(groups)
        chosen = self.candidates(model, row, keep, need, groups)
        if chosen is None:
            return None
        scores = model.score_items(row, chosen)
        if diversity > 0 and item_vectors is None:
            item_vectors = model.item_embeddings()
        sub_vectors = None if item_vectors is None else np.asarray(item_vectors)[chosen]
        sub_groups = None if groups is None else groups[chosen]
        sub_exposure = None if exposure is None else (np.asarray(exposure[0])[chosen], exposure[1], exposure[2])
        top = select_top(scores, k, None, diversity, sub_vectors, sub_groups, sub_exposure)
        assert model.item_ids is not None
        return [(str(model.item_ids[chosen[i]]), float(scores[i])) for i in top]

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "items": self.n_indexed,
            "dim": int(self.vectors.items.shape[1]),
            "build_seconds": round(self.build_seconds, 3),
            "config": self.config.to_dict(),
        }


def attach_retrieval(model: Recommender, mode: str = "auto", config: RetrievalConfig | None = None) -> Any:
    """Attach an index to ``model`` by ``mode`` (the ``serve --ann`` option) and return it, or ``None``:

    * ``off``: none; ``on``: always (``ValueError`` for a model without retrieval vectors, ``ImportError``
      without faiss);
    * ``auto``: only where it pays, for a model with retrieval vectors and at least ``config.exact_below`` items
      (below that an exact scan takes well under a millisecond and the flat index would give the same list);
      faiss missing then means no index, not an error."""
    if mode not in ANN_MODES:
        raise ValueError(f"unknown ANN mode {mode!r}: {', '.join(ANN_MODES)}")
    config = config or RetrievalConfig()
    model.retrieval = None
    if mode == "off":
        return None
    if mode == "auto":
        if model.n_items < config.exact_below or model.retrieval_vectors() is None:
            return None
        try:
            import_faiss()
        except ImportError:
            return None
    return model.use_retrieval(config)


def recall_at(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over rows of |found_row & exact_row| / |exact_row| (``-1`` entries ignored)."""
    hits, total = 0, 0
    for f, e in zip(np.atleast_2d(found), np.atleast_2d(exact)):
        e = e[e >= 0]
        hits += len(np.intersect1d(f[f >= 0], e))
        total += len(e)
    return hits / total if total else 1.0
