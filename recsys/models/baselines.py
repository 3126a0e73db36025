"""Baselines behind the :class:`~recsys.models.base.Recommender` interface.

``mostpop``   popularity over the training interactions (non-personalised reference).
``itemknn``   item-item cosine with shrinkage on the binary train matrix, top-k neighbours per item.
``ease``      EASE^R (Steck 2019): closed-form item-item ridge regression with a zero diagonal.
``bpr``       matrix factorisation with the BPR loss (torch), early stopping on valid NDCG@20.
``lightgcn``  LightGCN (He et al. 2020; torch, our own: Cornac's needs DGL), same training loop.
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

import time
import warnings
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from ..stopping import check, interruptible
from .base import Recommender, TrainData

__all__ = ["MostPop", "ItemKNN", "EASE", "BPRMF", "LightGCN", "ContentOnly"]


# --------------------------------------------------------------------------- helpers
def _rows(users: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.asarray(users, dtype=np.int64).reshape(-1)


def _warm_mask(train: sp.spmatrix) -> np.ndarray:
    """Items with at least one training interaction."""
    return np.asarray((sp.csr_matrix(train) != 0).sum(axis=0)).ravel() > 0


def _sink_cold(scores: np.ndarray, warm: np.ndarray | None) -> np.ndarray:
    """Give cold items (``~warm``) a finite score strictly below every warm item of the row (in place)."""
    if warm is None or warm.all() or scores.size == 0:
        return scores
    if warm.any():
        floor = scores[:, warm].min(axis=1, keepdims=True)
        floor = np.where(np.isfinite(floor), floor, 0.0)
    else:
        floor = np.zeros((scores.shape[0], 1), dtype=scores.dtype)
    scores[:, ~warm] = floor - 1.0
    return scores


def _csr_state(prefix: str, mat: sp.csr_matrix) -> dict[str, np.ndarray]:
    mat = sp.csr_matrix(mat)
    return {f"{prefix}.indptr": mat.indptr.astype(np.int64), f"{prefix}.indices": mat.indices.astype(np.int64),
            f"{prefix}.data": mat.data.astype(np.float32), f"{prefix}.shape": np.asarray(mat.shape, dtype=np.int64)}


def _csr_restore(prefix: str, state: dict[str, np.ndarray]) -> sp.csr_matrix:
    shape = tuple(int(x) for x in state[f"{prefix}.shape"])
    return sp.csr_matrix((state[f"{prefix}.data"], state[f"{prefix}.indices"], state[f"{prefix}.indptr"]),
                         shape=shape)


def _history(model: Recommender, rows: np.ndarray) -> sp.csr_matrix:
    if model.seen is None:
        raise RuntimeError(f"{type(model).__name__} is not fitted: call fit() or Recommender.load() first")
    return model.seen[rows]


def _dense(mat: Any) -> np.ndarray:
    return mat.toarray() if sp.issparse(mat) else np.asarray(mat)


class _Fitted:
    """Times a fit and stores ``fit_seconds`` on the model."""

    def __init__(self, model: Recommender):
        self.model = model

    def __enter__(self) -> "_Fitted":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.model.fit_seconds = time.perf_counter() - self.start


# --------------------------------------------------------------------------- MostPop
class MostPop(Recommender):
    """Items ranked by their number of training interactions (the same list for everyone)."""

    name = "mostpop"

    def __init__(self, **config: Any):
        super().__init__(**config)
        self.popularity: np.ndarray | None = None

    def fit(self, data: TrainData) -> "MostPop":
        self._remember(data)
        with _Fitted(self):
            self.popularity = np.asarray((data.train != 0).sum(axis=0), dtype=np.float32).ravel()
        return self

    def score(self, users: Sequence[int] | np.ndarray) -> np.ndarray:
        rows = _rows(users)
        # cold items have popularity 0, below every warm item: nothing to sink
        return np.broadcast_to(self.popularity, (rows.size, self.popularity.size)).astype(np.float32, copy=True)

    def _state(self) -> dict[str, np.ndarray]:
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

    def fit(self, data: TrainData) -> "ItemKNN":
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
                top = np.argpartition(-sim, k - 1, axis=0)[:k] if k < n_items else np.argsort(-sim, axis=0)
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

    def __init__(self, l2: float | str = "auto", positive_only: bool = False, max_items: int = 20000,
                 l2_grid: Sequence[float] | None = None, fallback_l2: float = 250.0, **config: Any):
        from .ease import DEFAULT_L2_GRID

        if l2 != "auto":
            l2 = float(l2)
        super().__init__(l2=l2, positive_only=bool(positive_only), max_items=int(max_items),
                         l2_grid=[float(v) for v in (l2_grid or DEFAULT_L2_GRID)], fallback_l2=float(fallback_l2),
                         **config)
        self.weights: np.ndarray | None = None
        self.columns: np.ndarray | None = None  # the items with behaviour (EASE covers only those)
        self.warm: np.ndarray | None = None
        self.chosen_l2: float | None = None
        self.l2_table: dict[float, float] = {}

    def fit(self, data: TrainData) -> "EASE":
        from .ease import behaviour_columns, choose_ease_l2, ease_inverse, ease_weights

        # items nobody chose have zero weights: only the active block is inverted (same scores)
        columns = behaviour_columns(data.train)
        n = len(columns)
        if n > self.config["max_items"]:
            raise ValueError(
                f"EASE inverts a dense {n:,} x {n:,} matrix, which is too large "
                f"(limit max_items={self.config['max_items']:,}: about "
                f"{8 * n ** 2 / 2 ** 30:.1f} GiB per copy in float64). Use 'itemknn', 'bpr' "
                "or 'lightgcn' for a catalogue this size, or raise max_items if the machine can take it.")
        self._remember(data)
        with _Fitted(self):
            l2 = self.config["l2"]
            train = sp.csr_matrix(data.train)[:, columns]
            if l2 == "auto" and data.valid is not None and data.valid.nnz:
                l2, self.l2_table, inverse = choose_ease_l2(train, sp.csr_matrix(data.valid)[:, columns],
                                                            self.config["l2_grid"])
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
        scores = np.zeros((len(rows), self.n_items), dtype=np.float32)
        scores[:, self.columns] = np.asarray(history[:, self.columns] @ self.weights, dtype=np.float32)
        return _sink_cold(scores, self.warm)

    def _state(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights, "warm": self.warm.astype(np.uint8), "columns": self.columns,
                "chosen_l2": np.array([self.chosen_l2 or np.nan], dtype=np.float64)}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.weights = state["weights"].astype(np.float32)
        self.warm = state["warm"].astype(bool)
        self.columns = state["columns"].astype(np.int64) if "columns" in state else np.arange(len(self.warm))
        if "chosen_l2" in state:
            self.chosen_l2 = float(state["chosen_l2"][0])


# --------------------------------------------------------------------------- BPR training loop
class _BPRTrained(Recommender):
    """Shared torch training loop: BPR loss, uniform negatives, early stopping on valid NDCG@20.

    Subclasses build the parameters (``_build``), turn them into final user / item vectors
    (``_embed``) and say which tensors the L2 penalty applies to (``_batch_terms``).
    """

    _defaults: dict[str, Any] = {}

    def __init__(self, **config: Any):
        merged = dict(self._defaults)
        merged.update(config)
        super().__init__(**merged)
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None
        self.item_bias: np.ndarray | None = None
        self.warm: np.ndarray | None = None
        self.history: list[dict[str, float]] = []  # (epoch, loss, valid ndcg@20) of this fit
        self.best_epoch: int | None = None

    # -- to implement
    def _build(self, data: TrainData, generator: Any, device: Any) -> Any:
        raise NotImplementedError

    def _embed(self, params: Any) -> tuple[Any, Any, Any]:
        """(user vectors, item vectors, item bias or None) from the parameters, differentiably."""
        raise NotImplementedError

    def _penalty(self, params: Any, users: Any, pos: Any, neg: Any) -> Any:
        raise NotImplementedError

    # -- shared
    def fit(self, data: TrainData) -> "_BPRTrained":
        import torch

        from ..device import select_device

        self._remember(data)
        cfg = self.config
        with _Fitted(self):
            device = select_device(cfg.get("device", "auto"))
            seed = int(cfg["seed"])
            init_gen = torch.Generator().manual_seed(seed)
            sample_gen = torch.Generator(device=device).manual_seed(seed + 1)
            train = sp.csr_matrix(data.train)
            train.eliminate_zeros()
            n_users, n_items = train.shape
            self.warm = _warm_mask(train)
            coo = train.tocoo()
            users_all = torch.as_tensor(coo.row.astype(np.int64), device=device)
            items_all = torch.as_tensor(coo.col.astype(np.int64), device=device)
            pos_keys = torch.sort(users_all * n_items + items_all).values
            n_pairs = int(users_all.numel())

            params = self._build(data, init_gen, device)
            optimiser = torch.optim.Adam([p for p in params.values() if p.requires_grad], lr=float(cfg["lr"]))
            batch_size = int(cfg["batch_size"])
            valid = data.valid if data.valid is not None and data.valid.nnz > 0 else None
            best, best_state, bad = -np.inf, None, 0
            self.history, self.best_epoch = [], None
            verbose = bool(cfg.get("verbose", False))

            for epoch in range(1, int(cfg["epochs"]) + 1):
                if n_pairs == 0:
                    break
                order = torch.randperm(n_pairs, generator=sample_gen, device=device)
                total = torch.zeros((), device=device)
                for start in range(0, n_pairs, batch_size):
                    check("the training epoch")  # per batch: an epoch of millions of pairs takes minutes
                    idx = order[start:start + batch_size]
                    u, i = users_all[idx], items_all[idx]
                    j = self._negatives(u, pos_keys, n_items, sample_gen)
                    user_vec, item_vec, bias = self._embed(params)
                    vu = user_vec.index_select(0, u)
                    diff = (vu * (item_vec.index_select(0, i) - item_vec.index_select(0, j))).sum(-1)
                    if bias is not None:
                        diff = diff + bias.index_select(0, i) - bias.index_select(0, j)
                    loss = -torch.nn.functional.logsigmoid(diff).mean()
                    loss = loss + float(cfg["weight_decay"]) * self._penalty(params, u, i, j)
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
                    total += loss.detach() * idx.numel()
                record = {"epoch": epoch, "loss": float(total) / n_pairs}
                if valid is not None and (epoch % int(cfg["eval_every"]) == 0 or epoch == int(cfg["epochs"])):
                    self._export(params)
                    ndcg = self._valid_ndcg(data.train, valid)
                    record["valid_ndcg@20"] = ndcg
                    if ndcg > best:
                        best, bad, self.best_epoch = ndcg, 0, epoch
                        best_state = (self.user_factors, self.item_factors, self.item_bias)
                    else:
                        bad += 1
                    if verbose:
                        print(f"[{self.name}] epoch {epoch} loss {record['loss']:.4f} valid ndcg@20 {ndcg:.4f}")
                elif verbose and epoch % int(cfg["eval_every"]) == 0:
                    print(f"[{self.name}] epoch {epoch} loss {record['loss']:.4f}")
                self.history.append(record)
                if valid is not None and bad >= int(cfg["patience"]):
                    break
            if best_state is not None:
                self.user_factors, self.item_factors, self.item_bias = best_state
            else:
                self._export(params)
                self.best_epoch = self.history[-1]["epoch"] if self.history else 0
        return self

    @staticmethod
    def _negatives(users: Any, pos_keys: Any, n_items: int, generator: Any, tries: int = 20) -> Any:
        """Uniform item per user, redrawn (vectorised, up to ``tries`` times) when it is one of the user's positives."""
        import torch

        neg = torch.randint(0, n_items, users.shape, generator=generator, device=users.device)
        if pos_keys.numel() == 0:
            return neg
        for _ in range(tries):
            keys = users * n_items + neg
            where = torch.searchsorted(pos_keys, keys).clamp_(max=pos_keys.numel() - 1)
            clash = pos_keys[where] == keys
            n_clash = int(clash.sum())
            if n_clash == 0:
                break
            neg[clash] = torch.randint(0, n_items, (n_clash,), generator=generator, device=users.device)
        return neg

    def _export(self, params: Any) -> None:
        import torch

        with torch.no_grad():
            user_vec, item_vec, bias = self._embed(params)
            self.user_factors = user_vec.detach().float().cpu().numpy().copy()
            self.item_factors = item_vec.detach().float().cpu().numpy().copy()
            self.item_bias = None if bias is None else bias.detach().float().cpu().numpy().copy()

    def score_history(self, items: Sequence[int], weights: Sequence[float] | None = None) -> np.ndarray:
        """A new user as the weighted mean of the history items' factors (folding in)."""
        from .base import _history_weights

        items = np.asarray(items, dtype=np.int64)
        if len(items) == 0:
            raise ValueError("a history needs at least one item")
        w = _history_weights(items, weights)
        user = (w[:, None] * self.item_factors[items]).sum(0) / len(items)
        scores = self.item_factors @ user
        if self.item_bias is not None:
            scores = scores + self.item_bias
        if self.warm is not None and (~self.warm).any() and self.warm.any():
            scores[~self.warm] = scores[self.warm].min() - 1.0
        return scores.astype(np.float64)

    def item_embeddings(self) -> np.ndarray:
        norms = np.linalg.norm(self.item_factors, axis=1, keepdims=True)
        return (self.item_factors / np.where(norms > 0, norms, 1.0)).astype(np.float32)

    def _valid_ndcg(self, train: sp.csr_matrix, valid: sp.csr_matrix) -> float:
        from ..evaluate import evaluate_ranking

        result = evaluate_ranking(self.score, train, valid, ks=(20,))
        return float(result["ndcg@20"])

    def score(self, users: Sequence[int] | np.ndarray) -> np.ndarray:
        if self.user_factors is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or Recommender.load() first")
        rows = _rows(users)
        scores = self.user_factors[rows] @ self.item_factors.T
        if self.item_bias is not None:
            scores = scores + self.item_bias[None, :]
        return _sink_cold(np.ascontiguousarray(scores, dtype=np.float32), self.warm)

    def _state(self) -> dict[str, np.ndarray]:
        state = {"user_factors": self.user_factors, "item_factors": self.item_factors,
                 "warm": self.warm.astype(np.uint8)}
        if self.item_bias is not None:
            state["item_bias"] = self.item_bias
        return state

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.user_factors = state["user_factors"].astype(np.float32)
        self.item_factors = state["item_factors"].astype(np.float32)
        self.item_bias = state["item_bias"].astype(np.float32) if "item_bias" in state else None
        self.warm = state["warm"].astype(bool)


class BPRMF(_BPRTrained):
    """Matrix factorisation with the BPR loss (Rendle et al. 2009), trained with Adam in torch.

    ``weight_decay`` is the usual BPR L2 penalty on the embeddings (and biases) used in each batch,
    averaged over the batch. With ``data.valid`` the model is evaluated every ``eval_every`` epochs
    and the parameters with the best valid NDCG@20 are kept (stop after ``patience`` evaluations
    without improvement).
    """

    name = "bpr"
    # movielens P1 valid NDCG@20: weight_decay is what matters (1e-5..1e-3: ~.174, 1e-2: .198, 2e-2 with
    # lr 2e-3: .212 at epoch 200, 3e-2: .202, 1e-1: .163); dim 128 or no item bias change little.
    _defaults = {"dim": 64, "lr": 0.002, "weight_decay": 0.02, "epochs": 300, "batch_size": 4096,
                 "use_bias": True, "init_std": 0.1, "eval_every": 5, "patience": 8, "seed": 2026,
                 "device": "auto", "verbose": False}

    def _build(self, data: TrainData, generator: Any, device: Any) -> Any:
        import torch

        dim, std = int(self.config["dim"]), float(self.config["init_std"])
        params = {
            "user": torch.nn.Parameter(torch.randn(data.n_users, dim, generator=generator).mul_(std).to(device)),
            "item": torch.nn.Parameter(torch.randn(data.n_items, dim, generator=generator).mul_(std).to(device)),
        }
        if self.config["use_bias"]:
            params["bias"] = torch.nn.Parameter(torch.zeros(data.n_items, device=device))
        return params

    def _embed(self, params: Any) -> tuple[Any, Any, Any]:
        return params["user"], params["item"], params.get("bias")

    def _penalty(self, params: Any, users: Any, pos: Any, neg: Any) -> Any:
        item = params["item"]
        reg = (params["user"].index_select(0, users).pow(2).sum(-1) + item.index_select(0, pos).pow(2).sum(-1)
               + item.index_select(0, neg).pow(2).sum(-1))
        if "bias" in params:
            reg = reg + params["bias"].index_select(0, pos).pow(2) + params["bias"].index_select(0, neg).pow(2)
        return 0.5 * reg.mean()


def _symmetric_sparse_mm() -> Any:
    import torch

    class SymmetricSparseMM(torch.autograd.Function):
        """``adj @ x`` for a symmetric sparse CSR ``adj``; the gradient is ``adj @ grad`` (no transpose).

        torch's own backward for sparse @ dense is several times slower on the CPU.
        """

        @staticmethod
        def forward(ctx: Any, adj: Any, x: Any) -> Any:
            ctx.adj = adj
            return adj @ x

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            return None, ctx.adj @ grad

    return SymmetricSparseMM


class _LazySparseMM:
    _fn: Any = None

    def apply(self, adj: Any, x: Any) -> Any:
        if self._fn is None:
            type(self)._fn = _symmetric_sparse_mm()
        return self._fn.apply(adj, x)


_SymmetricSparseMM = _LazySparseMM()


class LightGCN(_BPRTrained):
    """LightGCN (He et al. 2020): ``E^(l+1) = D^-1/2 A D^-1/2 E^(l)`` on the user-item graph, final
    embedding = mean of ``E^(0..layers)``, BPR loss with an L2 penalty on the batch's ``E^(0)``.

    One propagation (sparse CSR matmul, symmetric so the backward needs no transpose) per optimisation step; big batches keep the number of
    propagations per epoch small. Early stopping on valid NDCG@20 as in :class:`BPRMF`.
    """

    name = "lightgcn"
    # movielens P1 valid NDCG@20: (lr, weight_decay) (5e-3, 1e-4) .208, (5e-3, 1e-3) .2145 but 320 epochs,
    # (1e-2, 1e-3) .2143 at epoch 170, (2e-2, 1e-3) .2105, (1e-2, 3e-3) .2084, (5e-3, 1e-2) .177.
    _defaults = {"dim": 64, "layers": 3, "lr": 0.01, "weight_decay": 1e-3, "epochs": 300, "batch_size": 8192,
                 "init_std": 0.1, "eval_every": 10, "patience": 5, "seed": 2026, "device": "auto",
                 "verbose": False}

    def _build(self, data: TrainData, generator: Any, device: Any) -> Any:
        import torch

        train = sp.csr_matrix(data.train != 0, dtype=np.float32)
        n_users, n_items = train.shape
        adj = sp.bmat([[None, train], [train.T, None]], format="csr", dtype=np.float32)
        deg = np.asarray(adj.sum(axis=1)).ravel()
        inv_sqrt = np.zeros_like(deg)
        inv_sqrt[deg > 0] = deg[deg > 0] ** -0.5
        norm = sp.csr_matrix(sp.diags(inv_sqrt) @ adj @ sp.diags(inv_sqrt), dtype=np.float32)
        norm.sort_indices()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
            self._adjacency = torch.sparse_csr_tensor(
                torch.as_tensor(norm.indptr.astype(np.int64)), torch.as_tensor(norm.indices.astype(np.int64)),
                torch.as_tensor(norm.data), size=norm.shape, check_invariants=False).to(device)
        self._n_users = n_users
        dim, std = int(self.config["dim"]), float(self.config["init_std"])
        return {"embedding": torch.nn.Parameter(
            torch.randn(n_users + n_items, dim, generator=generator).mul_(std).to(device))}

    def _embed(self, params: Any) -> tuple[Any, Any, Any]:

        layer = params["embedding"]
        total = layer
        for _ in range(int(self.config["layers"])):
            layer = _SymmetricSparseMM.apply(self._adjacency, layer)
            total = total + layer
        final = total / (int(self.config["layers"]) + 1)
        return final[:self._n_users], final[self._n_users:], None

    def _penalty(self, params: Any, users: Any, pos: Any, neg: Any) -> Any:
        emb = params["embedding"]
        n = self._n_users
        reg = (emb.index_select(0, users).pow(2).sum(-1) + emb.index_select(0, n + pos).pow(2).sum(-1)
               + emb.index_select(0, n + neg).pow(2).sum(-1))
        return 0.5 * reg.mean()

    def fit(self, data: TrainData) -> "LightGCN":
        try:
            return super().fit(data)
        finally:
            self._adjacency = None  # the graph is only needed while training


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

    def fit(self, data: TrainData) -> "ContentOnly":
        self._remember(data)
        with _Fitted(self):
            vectors = content_matrix(data.item_features, data.n_items)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            self.item_vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
        return self

    def score(self, users: Sequence[int] | np.ndarray) -> np.ndarray:
        rows = _rows(users)
        history = sp.csr_matrix(_history(self, rows) != 0, dtype=np.float32)
        counts = np.asarray(history.sum(axis=1), dtype=np.float32)
        profile = np.asarray(history @ self.item_vectors) / np.maximum(counts, 1.0)
        norms = np.linalg.norm(profile, axis=1, keepdims=True)
        profile = np.divide(profile, norms, out=np.zeros_like(profile), where=norms > 0)
        return np.ascontiguousarray(profile @ self.item_vectors.T, dtype=np.float32)

    def item_embeddings(self) -> np.ndarray:
        return self.item_vectors.astype(np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_vectors": self.item_vectors}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.item_vectors = state["item_vectors"].astype(np.float32)
