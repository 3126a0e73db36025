"""Baselines behind the :class:`~recsys.models.base.Recommender` interface.

``mostpop``   popularity over the training interactions (non-personalised reference).
``itemknn``   item-item cosine with shrinkage on the binary train matrix, top-k neighbours per item.
``ease``      EASE^R (Steck 2019): closed-form item-item ridge regression with a zero diagonal.
``bpr``       matrix factorisation with the BPR loss (torch), early stopping on valid NDCG@20.
``lightgcn``  LightGCN (He et al. 2020; torch, our own: Cornac's needs DGL), same training loop.
(``bpr`` and ``lightgcn`` live in :mod:`.bpr`, imported here.)
``content``   content only: cosine between the mean of a user's history item vectors and each item.

Cold items (no training interaction) always get a finite score. The collaborative models know
nothing about them, so they are scored strictly below every warm item of the same user, which
keeps them from outranking warm items by accident (e.g. an EASE score of 0 against negative warm
scores). ``content`` scores them from their features like any other item.

Every hyperparameter is a constructor keyword with a default, so ``config.json`` describes the
model completely; the defaults were chosen on the P1 *validation* split of movielens-small-mm
(see ``benchmarks/peers.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..stopping import check, interruptible
from ..topk import k_largest
from .base import Recommender, RetrievalVectors, TrainData
from .bpr import BPRMF, LightGCN
from .common import _csr_restore, _csr_state, _dense, _Fitted, _history, _rows, _sink_cold, _warm_mask
from .products import sparse_times

__all__ = ["MostPop", "ItemKNN", "EASE", "BPRMF", "LightGCN", "ContentOnly"]


# --------------------------------------------------------------------------- MostPop
class MostPop(Recommender):
    """Items ranked by their number of training interactions (the same list for everyone)."""

    name = "mostpop"

    def __init__(self, **config: Any):
        super().__init__(**config)
        self.popularity: np.ndarray | None = None

    def fit(self, data: TrainData) -> MostPop:
        self._remember(data)
        with _Fitted(self):
            self.popularity = np.asarray((data.train != 0).sum(axis=0), dtype=np.float32).ravel()
        return self

    def score(self, users: Sequence[int] | np.ndarray) -> np.ndarray:
        rows = _rows(users)
        assert self.popularity is not None, "MostPop is not fitted"
        # cold items have popularity 0, below every warm item: nothing to sink
        return np.broadcast_to(self.popularity, (rows.size, self.popularity.size)).astype(np.float32, copy=True)

    def _state(self) -> dict[str, np.ndarray]:
        assert self.popularity is not None, "only a fitted model has a state"
        return {"popularity": self.popularity}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.popularity = state["popularity"].astype(np.float32)


# --------------------------------------------------------------------------- ItemKNN
class ItemKNN(Recommender):
    """Item-based k-nearest neighbours.

    ``sim(i, j) = |U_i & U_j| / (sqrt(|U_i|) sqrt(|U_j|) + shrink)`` on the binary train matrix;
    for every target item only its ``k_neighbors`` most similar items are kept (a sparse
    ``[n_items, n_items]`` matrix ``S``, column = target), and ``score(u) = x_u . S``.
    The similarity is computed in column blocks, so memory stays ``O(n_items * block_size)``.
    """

    name = "itemknn"
    # movielens P1 valid NDCG@20: k 50/100/200/400 x shrink 0/10/50/100 -> best k=100, shrink=10 (.2137)

    def __init__(self, k_neighbors: int = 100, shrink: float = 10.0, block_size: int = 2048, **config: Any):
        super().__init__(k_neighbors=int(k_neighbors), shrink=float(shrink), block_size=int(block_size), **config)
        self.similarity: sp.csr_matrix | None = None
        self.warm: np.ndarray | None = None

    def fit(self, data: TrainData) -> ItemKNN:
        self._remember(data)
        with _Fitted(self):
            x = sp.csc_matrix((data.train != 0).astype(np.float32))
            n_items = x.shape[1]
            norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
            k = min(self.config["k_neighbors"], max(n_items - 1, 0))
            shrink = self.config["shrink"]
            xt = x.T.tocsr()
            rows, cols, vals = [], [], []
            for start in range(0, n_items, self.config["block_size"]):
                check("the item-kNN similarities")
                stop = min(start + self.config["block_size"], n_items)
                co = _dense(xt @ x[:, start:stop]).astype(np.float32)  # [n_items, block]
                sim = co / (norms[:, None] * norms[None, start:stop] + shrink + 1e-12)
                sim[np.arange(start, stop), np.arange(stop - start)] = 0.0  # no self-similarity
                if k <= 0:
                    continue
                top = k_largest(sim, k, axis=0) if k < n_items else np.argsort(-sim, axis=0)
                top_vals = np.take_along_axis(sim, top, axis=0)
                keep = top_vals > 0
                rows.append(top[keep])
                cols.append(np.broadcast_to(np.arange(start, stop), top.shape)[keep])
                vals.append(top_vals[keep])
            if rows:
                r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
            else:
                r = c = np.zeros(0, dtype=np.int64)
                v = np.zeros(0, dtype=np.float32)
            self.similarity = sp.csr_matrix((v.astype(np.float32), (r, c)), shape=(n_items, n_items))
            self.warm = _warm_mask(data.train)
        return self

    def score(self, users: Sequence[int] | np.ndarray) -> np.ndarray:
        rows = _rows(users)
        scores = _dense(_history(self, rows) @ self.similarity).astype(np.float32)
        return _sink_cold(scores, self.warm)

    def _state(self) -> dict[str, np.ndarray]:
        assert self.warm is not None, "only a fitted model has a state"
        return _csr_state("similarity", self.similarity) | {"warm": self.warm.astype(np.uint8)}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.similarity = _csr_restore("similarity", state)
        self.warm = state["warm"].astype(bool)


# --------------------------------------------------------------------------- EASE
class EASE(Recommender):
    """EASE^R: ``B = I - P / diag(P)`` with ``P = (X^T X + l2 I)^-1`` (float64), ``score(u) = x_u B``.

    ``l2="auto"`` (the default) chooses the L2 on the validation interactions from ``l2_grid`` (as
    every peer is tuned); without validation data it falls back to ``fallback_l2``. Dense
    ``n_items x n_items``: refuses catalogues larger than ``max_items`` (memory and time grow as n^2
    and n^3). ``positive_only`` drops negative weights as Cornac's ``posB`` does.
    """

    name = "ease"
    # movielens P1 valid NDCG@20 by l2: 25 .2205, 50 .2317, 100 .2392, 150 .2396, 250 .2373, 500 .2353,
    # 1000 .2255, 2000 .2138, 5000 .1980; positive_only (l2 500) .2236. Flat around 100-250.

    def __init__(
        self,
        l2: float | str = "auto",
        positive_only: bool = False,
        max_items: int = 20000,
        l2_grid: Sequence[float] | None = None,
        fallback_l2: float = 250.0,
        **config: Any,
    ):
        from .ease import DEFAULT_L2_GRID

        if l2 != "auto":
            l2 = float(l2)
        super().__init__(
            l2=l2,
            positive_only=bool(positive_only),
            max_items=int(max_items),
            l2_grid=[float(v) for v in (l2_grid or DEFAULT_L2_GRID)],
            fallback_l2=float(fallback_l2),
            **config,
        )
        self.weights: np.ndarray | None = None
        self.columns: np.ndarray | None = None  # the items with behaviour (EASE covers only those)
        self.warm: np.ndarray | None = None
        self.chosen_l2: float | None = None
        self.l2_table: dict[float, float] = {}

    def fit(self, data: TrainData) -> EASE:
        from .ease import behaviour_columns, choose_ease_l2, ease_inverse, ease_weights

        # items nobody chose have zero weights: only the active block is inverted (same scores)
        columns = behaviour_columns(data.train)
        n = len(columns)
        if n > self.config["max_items"]:
            raise ValueError(
                f"EASE inverts a dense {n:,} x {n:,} matrix, which is too large "
                f"(limit max_items={self.config['max_items']:,}: about "
                f"{8 * n**2 / 2**30:.1f} GiB per copy in float64). Use 'itemknn', 'bpr' "
                "or 'lightgcn' for a catalogue this size, or raise max_items if the machine can take it."
            )
        self._remember(data)
        with _Fitted(self):
            l2 = self.config["l2"]
            train = sp.csr_matrix(data.train)[:, columns]
            if l2 == "auto" and data.valid is not None and data.valid.nnz:
                l2, self.l2_table, inverse = choose_ease_l2(
                    train, sp.csr_matrix(data.valid)[:, columns], self.config["l2_grid"]
                )
            else:
                l2 = self.config["fallback_l2"] if l2 == "auto" else float(l2)
                inverse = interruptible("the EASE solve", ease_inverse, train, l2)
            self.chosen_l2 = float(l2)
            b = ease_weights(inverse)
            if self.config["positive_only"]:
                b[b < 0] = 0.0
            self.weights = b
            self.columns = columns
            self.warm = _warm_mask(data.train)
        return self

    def score(self, users: Sequence[int] | np.ndarray) -> np.ndarray:
        rows = _rows(users)
        history = sp.csr_matrix(_history(self, rows))
        if self.weights is None:  # fit() and load() set it with the history
            raise RuntimeError("EASE is not fitted: call fit() or Recommender.load() first")
        scores = np.zeros((len(rows), self.n_items), dtype=np.float32)
        scores[:, self.columns] = sparse_times(history[:, self.columns], self.weights)
        return _sink_cold(scores, self.warm)

    def _state(self) -> dict[str, np.ndarray]:
        assert self.weights is not None and self.warm is not None and self.columns is not None, (
            "only a fitted model has a state"
        )
        return {
            "weights": self.weights,
            "warm": self.warm.astype(np.uint8),
            "columns": self.columns,
            "chosen_l2": np.array([self.chosen_l2 or np.nan], dtype=np.float64),
        }

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.weights = state["weights"].astype(np.float32)
        self.warm = state["warm"].astype(bool)
        self.columns = state["columns"].astype(np.int64) if "columns" in state else np.arange(len(self.warm))
        if "chosen_l2" in state:
            self.chosen_l2 = float(state["chosen_l2"][0])


# --------------------------------------------------------------------------- content only
def content_matrix(item_features: Any, n_items: int) -> np.ndarray:
    """Concatenation of the L2-normalised modality blocks (text, image) of ``item_features``.

    ``item_features`` is an object with ``text`` / ``image`` arrays (either may be None) and
    boolean ``text_mask`` / ``image_mask`` (True = present), or a plain ``[n_items, d]`` array.
    A missing modality (mask False, or an all-zero / non-finite row) is a block of zeros.
    """
    if item_features is None:
        raise ValueError("the content model needs item features (text and/or image); this dataset has none")
    if isinstance(item_features, np.ndarray) or sp.issparse(item_features):
        blocks = [(_dense(item_features), None)]
    else:
        blocks = []
        for modality in ("text", "image"):
            matrix = getattr(item_features, modality, None)
            if matrix is not None:
                blocks.append((np.asarray(matrix), getattr(item_features, f"{modality}_mask", None)))
        if not blocks:
            raise ValueError("the content model needs item features: neither text nor image features are present")
    out = []
    for matrix, mask in blocks:
        matrix = np.asarray(matrix, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != n_items:
            raise ValueError(f"item features have shape {matrix.shape}, expected ({n_items}, d)")
        matrix = np.where(np.isfinite(matrix), matrix, 0.0).astype(np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        block = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
        if mask is not None:
            block[~np.asarray(mask, dtype=bool)] = 0.0
        out.append(block)
    return np.concatenate(out, axis=1).astype(np.float32)


class ContentOnly(Recommender):
    """Content only: user = mean of the user's history item vectors, score = cosine to each item.

    Item vector = concatenation of the L2-normalised modality features (see :func:`content_matrix`).
    Needs no interaction for an item, so it scores cold items like warm ones.
    """

    name = "content"
    scores_cold_items = True

    def __init__(self, **config: Any):
        super().__init__(**config)
        self.item_vectors: np.ndarray | None = None

    def fit(self, data: TrainData) -> ContentOnly:
        self._remember(data)
        with _Fitted(self):
            vectors = content_matrix(data.item_features, data.n_items)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            self.item_vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
        return self

    def score(self, users: Sequence[int] | np.ndarray) -> np.ndarray:
        profile = self._profiles(users)
        assert self.item_vectors is not None  # the profile has failed on an unfitted model
        return np.ascontiguousarray(profile @ self.item_vectors.T, dtype=np.float32)

    def _profiles(self, users: Sequence[int] | np.ndarray) -> np.ndarray:
        """The users' L2-normalised mean history vectors (zero without a history)."""
        history = sp.csr_matrix(_history(self, _rows(users)) != 0, dtype=np.float32)
        counts = np.asarray(history.sum(axis=1), dtype=np.float32)
        profile = np.asarray(history @ self.item_vectors) / np.maximum(counts, 1.0)
        norms = np.linalg.norm(profile, axis=1, keepdims=True)
        return np.divide(profile, norms, out=np.zeros_like(profile), where=norms > 0)

    def retrieval_vectors(self) -> RetrievalVectors:
        """The score is the profile . item vector: exact, for every item (cold ones too)."""
        assert self.item_vectors is not None, "only a fitted model has retrieval vectors"
        return RetrievalVectors(np.ascontiguousarray(self.item_vectors, dtype=np.float32), self._profiles)

    def score_items(self, user: int, items: np.ndarray) -> np.ndarray:
        assert self.item_vectors is not None, "only a fitted model has scores"
        items = np.asarray(items, dtype=np.int64)
        scores = self.item_vectors[items] @ self._profiles(np.array([user]))[0]
        return np.asarray(scores, dtype=np.float32).astype(np.float64)

    def item_embeddings(self) -> np.ndarray:
        assert self.item_vectors is not None, "only a fitted model has item embeddings"
        return self.item_vectors.astype(np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        assert self.item_vectors is not None, "only a fitted model has a state"
        return {"item_vectors": self.item_vectors}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.item_vectors = state["item_vectors"].astype(np.float32)
