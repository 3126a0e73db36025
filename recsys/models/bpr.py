"""The BPR-trained factor models: :class:`BPRMF` (matrix factorisation) and :class:`LightGCN` (He et al.
2020; torch, our own: Cornac's needs DGL), one shared torch training loop with early stopping on valid
NDCG@20, and the symmetric sparse product LightGCN propagates with. :mod:`.baselines` re-exports both.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from .. import distributed
from ..stopping import StopRequested, check, requested
from .base import Recommender, RetrievalVectors, TrainData
from .common import _Fitted, _rows, _sink_cold, _warm_mask

__all__ = ["BPRMF", "LightGCN"]


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
    def fit(self, data: TrainData) -> Self:
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
            trainable = [p for p in params.values() if p.requires_grad]
            # under torchrun: rank 0's initial values everywhere (the same seed gives them anyway)
            world = distributed.world_size()
            distributed.broadcast_tensors(trainable)
            optimiser = torch.optim.Adam(trainable, lr=float(cfg["lr"]))
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
                    if world == 1:
                        check("the training epoch")  # per batch: an epoch of millions of pairs takes minutes
                    idx = order[start : start + batch_size]
                    u, i = users_all[idx], items_all[idx]
                    j = self._negatives(u, pos_keys, n_items, sample_gen)  # the whole batch: generators in step
                    if world > 1:  # data parallel: this rank's slice, weighted by its share of the batch
                        u, i, j = distributed.shard(u), distributed.shard(i), distributed.shard(j)
                    optimiser.zero_grad(set_to_none=True)
                    if u.numel():
                        user_vec, item_vec, bias = self._embed(params)
                        vu = user_vec.index_select(0, u)
                        diff = (vu * (item_vec.index_select(0, i) - item_vec.index_select(0, j))).sum(-1)
                        if bias is not None:
                            diff = diff + bias.index_select(0, i) - bias.index_select(0, j)
                        loss = -torch.nn.functional.logsigmoid(diff).mean()
                        loss = loss + float(cfg["weight_decay"]) * self._penalty(params, u, i, j)
                        loss = loss * (u.numel() / idx.numel())
                        loss.backward()
                        part = loss.detach()
                    else:  # a last batch smaller than the number of ranks: nothing here, zeros to the sum
                        part = torch.zeros((), device=device)
                    if world > 1:
                        # one all-reduce: the summed gradient is the whole batch's; the stop is decided together
                        part_sum, stops = distributed.sum_gradients(trainable, [float(part), float(requested())])
                        part = torch.tensor(part_sum, device=device)
                        if stops:
                            raise StopRequested("the training epoch")
                    optimiser.step()
                    total += part * idx.numel()
                record = {"epoch": epoch, "loss": float(total) / n_pairs}
                if valid is not None and (epoch % int(cfg["eval_every"]) == 0 or epoch == int(cfg["epochs"])):
                    self._export(params)
                    # the same parameters on every rank: rank 0 evaluates, every rank takes its decision
                    ndcg = distributed.broadcast_object(
                        self._valid_ndcg(data.train, valid) if distributed.is_primary() else 0.0
                    )
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
                self.best_epoch = int(self.history[-1]["epoch"]) if self.history else 0
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

        history = np.asarray(items, dtype=np.int64)
        if len(history) == 0:
            raise ValueError("a history needs at least one item")
        assert self.item_factors is not None, f"{type(self).__name__} is not fitted"
        w = _history_weights(history, weights)
        user = (w[:, None] * self.item_factors[history]).sum(0) / len(history)
        scores = self.item_factors @ user
        if self.item_bias is not None:
            scores = scores + self.item_bias
        if self.warm is not None and (~self.warm).any() and self.warm.any():
            scores[~self.warm] = scores[self.warm].min() - 1.0
        return scores.astype(np.float64)

    def score_without_history(self, mixing_history: Sequence[int] | None = None) -> np.ndarray:
        """A folded-in user with no items has a zero factor: what is left is the item biases (or 0)."""
        assert self.item_factors is not None, f"{type(self).__name__} is not fitted"
        if self.item_bias is None:
            return np.zeros(len(self.item_factors), dtype=np.float64)
        return np.asarray(self.item_bias, dtype=np.float64).copy()

    def item_embeddings(self) -> np.ndarray:
        assert self.item_factors is not None, f"{type(self).__name__} is not fitted"
        norms = np.linalg.norm(self.item_factors, axis=1, keepdims=True)
        return (self.item_factors / np.where(norms > 0, norms, 1.0)).astype(np.float32)

    def _valid_ndcg(self, train: sp.csr_matrix, valid: sp.csr_matrix) -> float:
        from ..evaluate import evaluate_ranking

        result = evaluate_ranking(self.score, train, valid, ks=(20,))
        return float(result["ndcg@20"])

    def score(self, users: Sequence[int] | np.ndarray) -> np.ndarray:
        if self.user_factors is None or self.item_factors is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or Recommender.load() first")
        rows = _rows(users)
        scores = self.user_factors[rows] @ self.item_factors.T
        if self.item_bias is not None:
            scores = scores + self.item_bias[None, :]
        return _sink_cold(np.ascontiguousarray(scores, dtype=np.float32), self.warm)

    def retrieval_vectors(self) -> RetrievalVectors:
        """The score is ``user . item + bias``: the item vector carries the bias as one more dimension and the
        user vector a 1 there. Cold items are ranked below every warm one (``_sink_cold``), so only warm items
        are indexed (all items when none is warm)."""
        if self.user_factors is None or self.item_factors is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or Recommender.load() first")
        users, items = self.user_factors, self.item_factors
        if self.item_bias is not None:
            items = np.hstack([items, self.item_bias[:, None]])
        with_bias = self.item_bias is not None

        def user_vectors(rows: np.ndarray) -> np.ndarray:
            vectors = users[_rows(rows)]
            return np.hstack([vectors, np.ones((len(vectors), 1), dtype=vectors.dtype)]) if with_bias else vectors

        warm = self.warm if self.warm is not None and self.warm.any() else None
        return RetrievalVectors(np.ascontiguousarray(items, dtype=np.float32), user_vectors, warm)

    def score_items(self, user: int, items: np.ndarray) -> np.ndarray:
        """``score`` for a few items without the whole row (cold items among them: from the whole row)."""
        items = np.asarray(items, dtype=np.int64)
        if self.user_factors is None or self.item_factors is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or Recommender.load() first")
        if self.warm is not None and not self.warm[items].all():
            return super().score_items(user, items)
        scores = self.item_factors[items] @ self.user_factors[int(user)]
        if self.item_bias is not None:
            scores = scores + self.item_bias[items]
        return np.asarray(scores, dtype=np.float32).astype(np.float64)

    def _state(self) -> dict[str, np.ndarray]:
        assert self.user_factors is not None and self.item_factors is not None and self.warm is not None, (
            "only a fitted model has a state"
        )
        state = {
            "user_factors": self.user_factors,
            "item_factors": self.item_factors,
            "warm": self.warm.astype(np.uint8),
        }
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
    _defaults = {
        "dim": 64,
        "lr": 0.002,
        "weight_decay": 0.02,
        "epochs": 300,
        "batch_size": 4096,
        "use_bias": True,
        "init_std": 0.1,
        "eval_every": 5,
        "patience": 8,
        "seed": 2026,
        "device": "auto",
        "verbose": False,
    }

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
        reg = (
            params["user"].index_select(0, users).pow(2).sum(-1)
            + item.index_select(0, pos).pow(2).sum(-1)
            + item.index_select(0, neg).pow(2).sum(-1)
        )
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
    _defaults = {
        "dim": 64,
        "layers": 3,
        "lr": 0.01,
        "weight_decay": 1e-3,
        "epochs": 300,
        "batch_size": 8192,
        "init_std": 0.1,
        "eval_every": 10,
        "patience": 5,
        "seed": 2026,
        "device": "auto",
        "verbose": False,
    }

    _adjacency: Any = None  # the normalised graph as a torch sparse CSR tensor, while fitting

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
                torch.as_tensor(norm.indptr.astype(np.int64)),
                torch.as_tensor(norm.indices.astype(np.int64)),
                torch.as_tensor(norm.data),
                size=norm.shape,
                check_invariants=False,
            ).to(device)
        self._n_users = n_users
        dim, std = int(self.config["dim"]), float(self.config["init_std"])
        return {
            "embedding": torch.nn.Parameter(
                torch.randn(n_users + n_items, dim, generator=generator).mul_(std).to(device)
            )
        }

    def _embed(self, params: Any) -> tuple[Any, Any, Any]:

        layer = params["embedding"]
        total = layer
        for _ in range(int(self.config["layers"])):
            layer = _SymmetricSparseMM.apply(self._adjacency, layer)
            total = total + layer
        final = total / (int(self.config["layers"]) + 1)
        return final[: self._n_users], final[self._n_users :], None

    def _penalty(self, params: Any, users: Any, pos: Any, neg: Any) -> Any:
        emb = params["embedding"]
        n = self._n_users
        reg = (
            emb.index_select(0, users).pow(2).sum(-1)
            + emb.index_select(0, n + pos).pow(2).sum(-1)
            + emb.index_select(0, n + neg).pow(2).sum(-1)
        )
        return 0.5 * reg.mean()

    def fit(self, data: TrainData) -> Self:
        try:
            return super().fit(data)
        finally:
            self._adjacency = None  # the graph is only needed while training
