"""The multimodal fusion recommender: a mixture of modality experts with a per-user gate.

For user ``u`` and item ``i``, one *expert* per modality ``m`` in (behaviour, text, image, attributes)
scores the item from the user's history in that modality alone:

* behaviour: EASE's closed-form item-item score ``x_u B`` (L2 chosen on validation), or sparse
  item-item neighbours for catalogues too large for a dense ``N x N`` matrix;
* text / image / attributes: the dot product of the item's vector with the sum of the user's history
  vectors in that modality (centred, L2-normalised features: MiniLM, EfficientNet, attribute one-hots).
  Items the behaviour expert does not score (nobody chose them, or beyond its cap) are ordered through a
  learned projection: a ridge map from the modality's vectors to the behaviour expert's item-item
  weights, fitted on the items it covers, predicts what the user's history says of them (CB2CF in closed
  form). They keep the cosine's values, so the projection reorders them among themselves (by what is
  chosen together, not only by likeness) without changing how they weigh against items with behaviour.

Each expert's scores are standardised per user over the items that have the modality (``z``) and
scaled by one learned constant per expert (``s_m``: how decisive its scores are). A user gate mixes them::

    g[u]         = softmax( (slope_c * coherence[u] + slope_b * choice[u]) * n_u / (n_u + kappa) )   [M]
    w[u, i, m]   = g[u, m] * r[i, m] * present[i, m] / sum_m' (same)                      (per item)
    share[u,i,m] = w[u, i, m] * s_m * z[u, i, m] * n_u / (n_u + c)   (+ popularity prior, behaviour share)
    score(u, i)  = sum_m share[u, i, m]

``evidence[u, m]`` is how well modality ``m`` fits the user's *own* history: for content, the mean
pairwise cosine of the history items (how coherent the history is in that space); for behaviour, the
leave-one-out AUC of the history items under the item-item score. ``choice[u, m]`` is the user's own
conditional-logit coefficient of content expert ``m``: the user's items taken as draws from a softmax
over the catalogue of ``sum_m beta_m x_m`` (each expert's leave-one-out score, plus popularity), fitted
per user by a few ridge-penalised Newton steps. Coherence alone credits every modality that agrees with
the history; the coefficients are partial, so when the category follows the description's topic, the
modality that explains the choices beyond the other gets the weight. Both are standardised over users.
Content modalities share each slope, so a user's content weights follow the order of the evidence; a
user with no evidence gets equal weights (short histories are pulled there by ``kappa``).
``r[i, m] = exp(rho_m * popularity_z(i))`` lets content count more for rarely chosen items (whose
co-occurrence scores are noise); ``rho_behaviour = 0``. ``n_u / (n_u + c)`` and the popularity prior
``c(n) = exp(a0) k / (k + n)`` make popularity lead for users with one or two items.

The gate's dozen parameters are learned by a cloze objective: for a sample of users, part of the
training history is hidden and predicted from the rest (softmax over the catalogue, each hidden item
weighted by the DCG discount of its current rank), the behaviour expert fitted *without* those users
(Woodbury update of EASE's inverse, so no user's signal comes from its own rows). 30 % of the cloze
users keep only 1-3 visible items so the gate learns what short histories are worth. Rounds end with
validation NDCG@20 (early stopping keeps the best); then a multiplier of the behaviour expert's scale
and the short-history boost are chosen on validation. Training is seconds to a minute, not many minutes.

Because ``g[u]`` is what the score uses, the weights the Attention page shows are the weights that
drive the ranking, and the shares add up to the score exactly. Variants for ablation: ``mean``
(equal weights), ``item_gate`` (weights from the item's popularity, the same for every user) and
``concat`` (an MLP over the experts' scores; no additive shares).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from .. import stopping
from ..stopping import check
from ..topk import k_largest
from .base import Recommender, TrainData
from .config import MODALITIES, FusionConfig

# every option, its type, default and help: recsys.models.config.FusionConfig (self.config is its dict)
DEFAULTS: dict[str, Any] = FusionConfig().to_dict()


# ----------------------------------------------------------------------------- content arrays

@dataclass
class ContentArrays:
    """Item content as plain arrays aligned with the model's items."""

    text: np.ndarray | None
    text_mask: np.ndarray | None
    image: np.ndarray | None
    image_mask: np.ndarray | None
    cat_index: np.ndarray | None  # int64 [N, C], 0 = none; columns offset into one table
    n_cat: int
    multi: sp.csr_matrix | None  # [N, V] row-normalised multi-hot
    numeric: np.ndarray | None  # float32 [N, F] values and missing indicators
    attr_mask: np.ndarray | None
    numeric_buckets: np.ndarray | None = None  # int64 [N, F'] quantile buckets, 0 = missing

    @classmethod
    def from_features(cls, features: Any, n_items: int) -> "ContentArrays":
        if features is None:
            return cls(None, None, None, None, None, 0, None, None, None)
        if isinstance(features, np.ndarray):  # plain matrix: treat it as text-like content
            return cls(features.astype(np.float32), np.ones(n_items, bool), None, None, None, 0, None, None, None)
        text = getattr(features, "text", None)
        image = getattr(features, "image", None)
        cat_index, n_cat, multi, numeric, attr_mask, buckets = None, 0, None, None, None, None
        columns: list[np.ndarray] = []
        attributes = getattr(features, "attributes", None)
        if attributes is not None:
            present = np.zeros(n_items, dtype=bool)
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
                raw_buckets = np.asarray(getattr(attributes, "numeric_buckets", np.zeros((0, 0))), dtype=np.int64)
                if raw_buckets.ndim == 2 and raw_buckets.shape[0] == n_items and raw_buckets.size:
                    buckets = raw_buckets
            attr_mask = present if (columns or blocks or numeric is not None) else None
        return cls(
            None if text is None else np.asarray(text, np.float32),
            None if text is None else np.asarray(features.text_mask, bool),
            None if image is None else np.asarray(image, np.float32),
            None if image is None else np.asarray(features.image_mask, bool),
            cat_index, n_cat, multi, numeric, attr_mask, buckets)

    def attribute_matrix(self) -> np.ndarray | None:
        """One row per item: IDF-weighted one-hots of the categorical values, the multi-label shares and
        the standardised numbers, each block weighted equally."""
        if self.attr_mask is None:
            return None
        n = len(self.attr_mask)
        blocks = []
        if self.cat_index is not None:
            rows = np.repeat(np.arange(n), self.cat_index.shape[1])
            cols = self.cat_index.ravel()
            keep = cols > 0
            onehot = sp.csr_matrix((np.ones(keep.sum(), np.float32), (rows[keep], cols[keep])),
                                   shape=(n, max(self.n_cat, 1)))
            blocks.append(onehot)
        if self.multi is not None:
            blocks.append(sp.csr_matrix(self.multi > 0, dtype=np.float32))
        weighted = []
        for block in blocks:
            df = np.asarray(block.sum(axis=0)).ravel()
            idf = np.where(df > 0, np.log((1 + n) / (1 + df)) + 1.0, 0.0).astype(np.float32)
            block = (block @ sp.diags(idf)).tocsr()
            norms = np.sqrt(np.asarray(block.multiply(block).sum(axis=1)).ravel())
            weighted.append(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ block)
        dense = [np.asarray(b.toarray(), np.float32) for b in weighted if b.shape[1] <= 20_000]
        if self.numeric_buckets is not None:
            # quantile buckets with a soft neighbourhood: a price in the next bucket is still close
            for column in self.numeric_buckets.T:
                levels = np.arange(1, int(column.max()) + 1)
                if len(levels) == 0:
                    continue
                soft = np.exp(-np.abs(column[:, None] - levels[None, :]).astype(np.float32))
                soft[column == 0] = 0.0
                norms = np.linalg.norm(soft, axis=1, keepdims=True)
                dense.append((soft / np.maximum(norms, 1e-12)).astype(np.float32))
        elif self.numeric is not None:
            values = self.numeric.astype(np.float64)
            std = values.std(axis=0)
            standard = np.where(std > 0, (values - values.mean(axis=0)) / np.where(std > 0, std, 1), 0.0)
            norms = np.linalg.norm(standard, axis=1, keepdims=True)
            dense.append((standard / np.maximum(norms, 1e-12)).astype(np.float32))
        if not dense:
            return None
        return np.concatenate(dense, axis=1)


def _centre(matrix: np.ndarray, present: np.ndarray) -> np.ndarray:
    matrix = np.where(np.isfinite(matrix), matrix, 0.0).astype(np.float32)
    return matrix[present].mean(axis=0) if present.any() else np.zeros(matrix.shape[1], np.float32)


def _centred_unit_rows(matrix: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Rows centred on the catalogue's mean (of present items) and scaled to unit length; missing rows 0.

    Centring matters for sentence and CNN embeddings: their raw cosines are all high (one shared
    direction), which would make every history look coherent.
    """
    matrix = np.where(np.isfinite(matrix), matrix, 0.0).astype(np.float32)
    out = np.zeros_like(matrix)
    if present.any():
        centred = matrix[present] - matrix[present].mean(axis=0, keepdims=True)
        norms = np.linalg.norm(centred, axis=1, keepdims=True)
        out[present] = centred / np.maximum(norms, 1e-12)
    return out


def _binary_rows(matrix: sp.spmatrix) -> sp.csr_matrix:
    return sp.csr_matrix((sp.csr_matrix(matrix) != 0).astype(np.float32))


# ----------------------------------------------------------------------------- the gate

@dataclass
class Experts:
    """What the experts say about a batch of users: standardised scores of every item, and how well each
    modality fits the user's own history (the gate's evidence)."""

    z: torch.Tensor  # [B, M, N]
    # [B, 2M] how well each modality fits the user's own history, standardised over users: the history's
    # coherence in the modality (behaviour: leave-one-out AUC), then the user's conditional-logit
    # coefficient of the modality's expert (content only; the behaviour slot is 0)
    evidence: torch.Tensor
    length: torch.Tensor  # [B] history length


class ExpertGate(nn.Module):
    """The few learned parameters: the gate, the popularity prior, a temperature (and the concat MLP)."""

    def __init__(self, n_modalities: int, fusion: str, has_behaviour: bool):
        super().__init__()
        m = n_modalities
        self.fusion = fusion
        self.has_behaviour = has_behaviour
        # population weights = softmax(bias). Start from "trust behaviour" (about 0.8 of the weight when
        # there are four modalities): a strong collaborative ranking is the floor, and content has to
        # earn its weight on the cloze loss while validation NDCG watches (early stopping keeps the best)
        self.bias = nn.Parameter(torch.zeros(m))  # item_gate's population weights
        # how decisive each expert's standardised scores are (one constant per modality, shared by all
        # users). Global importance lives here, so the user weights below carry only what differs
        # between users; behaviour starts decisive, so the first ranking is close to EASE's
        scale = torch.zeros(m)
        if has_behaviour and m > 1:
            scale[0] = math.log(3.0)
        self.log_expert_scale = nn.Parameter(scale)
        # evidence -> logits through non-negative slopes: a modality's weight rises with how much more the
        # user's history coheres in it than other users' histories do, and with nothing else. The content
        # modalities share one slope (their evidence is the same statistic, on one scale), so the order
        # of a user's content weights is the order of the evidence; behaviour has its own. Slopes:
        # behaviour's evidence, content coherence, content choice coefficients
        self.slope_raw = nn.Parameter(torch.full((3,), math.log(math.expm1(1.0))))
        self.kappa_raw = nn.Parameter(torch.tensor(math.log(math.expm1(3.0))))  # shrinkage, in items
        # c(n) = exp(a0) * k / (k + n), k = softplus(a1): popularity counts for new users and fades as the
        # history grows (a history of 1-3 items says little; a long one says what the user likes)
        self.popularity_raw = nn.Parameter(torch.tensor([0.0, math.log(math.expm1(5.0))]))
        # how much a history of n items is worth against the population: the experts' scores are scaled
        # by n / (n + confidence), so for a user with one or two items the popularity prior leads
        self.confidence_raw = nn.Parameter(torch.tensor(math.log(math.expm1(1.0))))
        self.item_popularity_weight = nn.Parameter(torch.zeros(m))  # item_gate variant
        self.log_temperature = nn.Parameter(torch.tensor(0.0))
        self.mlp = nn.Sequential(nn.Linear(2 * m, 16), nn.GELU(), nn.Linear(16, 1)) if fusion == "concat" else None
        # chosen on validation after training (not learned): the cloze likelihood rewards content that
        # lifts long-tail items, validation NDCG@20 says how much of that the top of the list can take
        # (a scale of the behaviour expert's scores, so the users' weights keep their meaning)
        self.register_buffer("behaviour_scale", torch.tensor(1.0))
        # extra popularity for users known by one to three items, chosen on validation new-user NDCG@20
        self.register_buffer("short_history_boost", torch.tensor(0.0))

    def population(self) -> torch.Tensor:
        if self.fusion == "item_gate":
            return torch.softmax(self.bias, dim=0)
        m = self.bias.shape[0]
        return torch.full((m,), 1.0 / m, device=self.bias.device)

    def expert_scales(self) -> torch.Tensor:
        scales = torch.exp(self.log_expert_scale)
        if self.has_behaviour:
            scales = torch.cat([scales[:1] * self.behaviour_scale, scales[1:]])
        return scales

    def slopes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-modality slopes of the two evidence blocks (coherence, choice coefficient), each ``[M]``."""
        m = self.bias.shape[0]
        slopes = F.softplus(self.slope_raw)
        if self.has_behaviour:
            coherence = torch.cat([slopes[:1], slopes[1:2].expand(m - 1)])
            choice = torch.cat([torch.zeros_like(slopes[:1]), slopes[2:3].expand(m - 1)])
            return coherence, choice
        return slopes[1:2].expand(m), slopes[2:3].expand(m)

    def user_weights(self, evidence: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """Gate ``[B, M]`` (rows sum to 1) from standardised evidence ``[B, 2M]`` and history lengths ``[B]``.

        ``attention``: ``softmax((slope_c * coherence + slope_b * choice) * n / (n + kappa))``, so a user
        with no or a short history sits near the population's weights and a long, consistent history
        decides them.
        """
        b, m = evidence.shape[0], self.bias.shape[0]
        if self.fusion == "mean":
            return torch.full((b, m), 1.0 / m, device=evidence.device)
        if self.fusion in ("item_gate", "concat"):
            return self.population().expand(b, m)
        shrink = (length / (length + F.softplus(self.kappa_raw))).unsqueeze(1)
        coherence, choice = self.slopes()
        logits = coherence * evidence[:, :m] + choice * evidence[:, m:]
        return torch.softmax(logits * shrink, dim=1)

    def popularity_weight(self, length: torch.Tensor) -> torch.Tensor:
        a0, a1 = self.popularity_raw
        k = F.softplus(a1)
        short = (2.0 / (1.0 + length)) ** 2  # 1 for one item, 0.44 for two, 0.25 for three, ~0 for long histories
        return torch.exp(a0) * k / (k + length) + self.short_history_boost * short

    def mix(self, z: torch.Tensor, present: torch.Tensor, gate: torch.Tensor, popularity: torch.Tensor | None,
            length: torch.Tensor, item_popularity_z: torch.Tensor, renormalise: bool, with_parts: bool = False):
        """Scores ``[B, N]`` from standardised expert scores ``z [B, M, N]``, item presence ``[N, M]``.

        With ``with_parts``: also the per-item weights ``[B, N, M]`` and the shares ``[B, N, M]``.
        """
        presence = present.T.unsqueeze(0).float()  # [1, M, N]
        if self.fusion == "concat":
            features = torch.cat([z * presence, presence.expand_as(z)], dim=1).transpose(1, 2)  # [B, N, 2M]
            scores = self.mlp(features).squeeze(-1)
            if popularity is not None:
                scores = scores + self.popularity_weight(length).unsqueeze(1) * popularity.unsqueeze(0)
            return (scores, None, None) if with_parts else scores
        if self.fusion == "item_gate":
            logits = self.bias.unsqueeze(1) + self.item_popularity_weight.unsqueeze(1) * item_popularity_z.unsqueeze(0)
            weights = torch.softmax(logits, dim=0).unsqueeze(0) * presence  # [1, M, N]
            if renormalise:
                weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-12)
        elif self.fusion == "attention":
            # the user's weights, modulated by how much behaviour evidence the item has: a rarely chosen
            # item's co-occurrence score is noise, its description is not (one slope per modality, shared
            # by all users and items; behaviour's is 0 so the user's weights keep their meaning)
            item = torch.exp(self.item_popularity_weight.unsqueeze(1) * item_popularity_z.unsqueeze(0))  # [M, N]
            if self.has_behaviour:
                item = torch.cat([torch.ones_like(item[:1]), item[1:]])
            raw = gate.unsqueeze(2) * item.unsqueeze(0)  # [B, M, N]
            weights = raw * presence
            total = weights.sum(dim=1, keepdim=True) if renormalise else raw.sum(dim=1, keepdim=True)
            weights = weights / total.clamp(min=1e-12)
        else:
            weights = gate.unsqueeze(2) * presence  # [B, M, N]
            if renormalise:
                weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-12)
        confidence = (length / (length + F.softplus(self.confidence_raw))).view(-1, 1, 1)
        shares = weights * z * (self.expert_scales().view(1, -1, 1) * confidence)
        if popularity is not None and self.has_behaviour:
            prior = self.popularity_weight(length).unsqueeze(1) * popularity.unsqueeze(0)  # [B, N]
            # every item, also one nobody chose (whose popularity is that of a count of 0): otherwise a
            # short history would lift the untried tail of a large catalogue over the bestsellers
            shares = torch.cat([shares[:, :1] + prior.unsqueeze(1), shares[:, 1:]], dim=1)
        scores = shares.sum(dim=1)
        if with_parts:
            return scores, weights.expand_as(z).transpose(1, 2), shares.transpose(1, 2)
        return scores


# ----------------------------------------------------------------------------- the recommender

class FusionRecommender(Recommender):
    """Mixture of modality experts with a per-user gate (see the module docstring)."""

    name = "fusion"
    scores_cold_items = True
    format_version = 4  # 4: the gate also reads each user's conditional-logit coefficients; 3: mixture of experts

    def __init__(self, **config: Any):
        merged = FusionConfig.from_dict(config, "fusion").to_dict()  # ValueError: unknown or bad option
        super().__init__(**merged)
        self.gate: ExpertGate | None = None
        self.history: dict[str, Any] = {"epochs": []}
        self.device = torch.device("cpu")
        self.chosen_l2: float | None = None
        self.l2_table: dict[float, float] = {}
        self._modalities: list[str] = []
        self._vectors: dict[str, torch.Tensor] = {}  # content modality -> [N, D] centred unit rows
        self._centres: dict[str, torch.Tensor] = {}  # content modality -> the catalogue mean it was centred on
        self._present: torch.Tensor | None = None  # [N, M] bool
        self._behaviour: torch.Tensor | sp.csr_matrix | None = None  # dense EASE B [A, A], or sparse neighbours
        self._behaviour_items: torch.Tensor | None = None  # the A items EASE covers (None: all)
        self._expert_memo: dict | None = None  # set only while calibration re-mixes the same histories
        self._popularity_z_all: torch.Tensor | None = None  # [N] z of log(1 + count) over all items
        self._popularity: torch.Tensor | None = None  # [N] z of log(1 + count), mean and sd of the warm items
        self._evidence_stats: tuple[torch.Tensor, torch.Tensor] | None = None  # standardises the evidence
        self._outside_behaviour: torch.Tensor | None = None  # [N] items the behaviour expert does not score
        # content modality -> (weights [A, D], vectors of the items outside [D, O]): see _fit_projections
        self._projections: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    # ------------------------------------------------------------------ capabilities
    @property
    def modalities(self) -> list[str]:
        return list(self._modalities)

    def explains_by_modality(self) -> bool:
        return self.gate is not None and self.config["fusion"] != "concat"

    def item_presence(self) -> np.ndarray:
        """``[n_items, M]`` bool: which modalities each item has (behaviour = seen in training)."""
        return self._present.cpu().numpy().astype(bool)

    def user_modality_weights(self, users: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """The gate ``[n, M]`` (rows sum to 1) for user rows; what the scores actually use."""
        users = np.arange(self.n_users) if users is None else np.asarray(users, dtype=np.int64)
        out = np.empty((len(users), len(self._modalities)), np.float32)
        with torch.no_grad():
            for start in range(0, len(users), 256):
                rows = users[start:start + 256]
                experts = self._expert_z(_binary_rows(self.seen[rows]))
                out[start:start + len(rows)] = self.gate.user_weights(experts.evidence, experts.length).cpu().numpy()
        return out

    def modality_vectors(self, modality: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(vectors [N, D], present [N], centre [D])`` of a content modality: the items' features centred on
        ``centre`` and L2-normalised (centre a query's raw features the same way to compare), or None."""
        if modality not in self._vectors:
            return None
        m = self._modalities.index(modality)
        return (self._vectors[modality].cpu().numpy(), self._present[:, m].cpu().numpy().astype(bool),
                self._centres[modality].cpu().numpy())

    def population_weights(self) -> np.ndarray:
        """The weights of a user with no history (the population's)."""
        with torch.no_grad():
            return self.gate.population().cpu().numpy()

    def item_embeddings(self) -> np.ndarray:
        """Items in the fused space: each modality's unit vectors scaled by the population's weight for it
        (behaviour: an SVD of the interactions), concatenated and L2-normalised."""
        from .base import svd_item_vectors

        population = self.population_weights()
        blocks = []
        for m, modality in enumerate(self._modalities):
            if modality == "behaviour":
                block = svd_item_vectors(self.seen, 32)
                norms = np.linalg.norm(block, axis=1, keepdims=True)
                block = block / np.maximum(norms, 1e-12)
            else:
                block = self._vectors[modality].cpu().numpy()
            blocks.append(block * math.sqrt(float(population[m])))
        vectors = np.concatenate(blocks, axis=1)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)

    # ------------------------------------------------------------------ experts
    def _expert_z(self, history: sp.csr_matrix, behaviour_raw: torch.Tensor | None = None,
                  raw_evidence: bool = False) -> Experts:
        """Every expert's standardised scores for the users of ``history`` (binary rows), and the evidence
        of how well each modality fits each user's own history."""
        device = self.device
        present = self._present
        # dense [B, N] rows: a dense product with B or the item vectors is far faster on CPUs than torch's
        # sparse-dense product, and a batch of rows is small
        hist_dense = torch.as_tensor(sp.csr_matrix(history).toarray() > 0, device=device)
        h = hist_dense.float()
        length = hist_dense.sum(1).float()
        zs, evidence, choices = [], [], []
        for m, modality in enumerate(self._modalities):
            mask = present[:, m]
            counted = hist_dense & mask.unsqueeze(0)
            n_counted = counted.float().sum(1)
            if modality == "behaviour":
                raw = behaviour_raw if behaviour_raw is not None else self._behaviour_scores(history, h)
            else:
                profile = h @ self._vectors[modality]  # sum of the history's unit vectors
                raw = profile @ self._vectors[modality].T  # [B, N]
                if modality in self._projections:
                    raw = self._with_projection(raw, h, modality, mask)
            count = mask.float().sum().clamp(min=1)
            mean = (raw * mask).sum(1, keepdim=True) / count
            std = (((raw - mean) ** 2) * mask).sum(1, keepdim=True).div(count).sqrt().clamp(min=1e-8)
            zs.append(((raw - mean) / std).masked_fill(~mask.unsqueeze(0), 0.0))
            if modality != "behaviour":
                # the same scores with each history item's similarity to itself (1) taken out: what the rest
                # of the history says about it, the input of the user's choice model below
                choices.append(zs[-1] - counted.float() / std)
            if modality == "behaviour":
                # where each history item ranks among the warm items by the item-item score of the rest of
                # the history (B has a zero diagonal, so this is leave-one-out), as an AUC in [-1, 1]; ranks
                # are robust to the heavy tail of item-item scores
                ordered = torch.sort(raw.masked_fill(~mask.unsqueeze(0), float("inf")), dim=1).values
                position = torch.searchsorted(ordered.contiguous(), raw.contiguous()).float()
                fit = ((2.0 * position / count - 1.0) * counted).sum(1) / n_counted.clamp(min=1)
            else:
                # how coherent the history is in this modality: the mean pairwise cosine of its items
                # (centred vectors, so unrelated items give about 0) = (||sum||^2 - n) / (n (n - 1))
                fit = (profile.pow(2).sum(1) - n_counted) / (n_counted * (n_counted - 1)).clamp(min=1)
            evidence.append(torch.where(n_counted >= 2, fit, torch.full_like(fit, float("nan"))))
        evidence = torch.stack(evidence, dim=1)
        evidence = torch.cat([evidence, self._choice_evidence(choices, hist_dense, evidence)], dim=1)
        if raw_evidence:
            return Experts(torch.stack(zs, dim=1), evidence, length)
        if self._evidence_stats is not None:
            mean, std = self._evidence_stats
            evidence = (evidence - mean) / std
        # no evidence (fewer than two history items with the modality): the population's weight
        return Experts(torch.stack(zs, dim=1), torch.nan_to_num(evidence, nan=0.0), length)

    def _with_projection(self, raw: torch.Tensor, h: torch.Tensor, modality: str, mask: torch.Tensor
                         ) -> torch.Tensor:
        """Raw scores of a content expert where the items without behaviour are *ordered* by the learned
        projection: what the behaviour expert would say of them, predicted from this modality's vectors
        (``h_A W_m`` maps the user's history into the modality's space).

        The projection decides only the order among those items; they keep the values the cosine gave
        them (the k-th best by projection gets the k-th best cosine score), so against the items with
        behaviour they weigh exactly as before: in a catalogue where most items were never chosen, the
        projection reorders the untried tail and cannot flood the top of a list with it."""
        outside = self._outside_behaviour & mask
        if not outside.any():
            return raw
        covered = h if self._behaviour_items is None else h[:, self._behaviour_items]
        weights, outside_vectors = self._projections[modality]
        projected = (covered @ weights) @ outside_vectors  # [B, O] over self._outside_behaviour
        projected = projected[:, outside[self._outside_behaviour]]
        columns = torch.nonzero(outside).squeeze(1)
        cosine_values = torch.sort(raw[:, columns], dim=1).values  # ascending
        order = torch.argsort(projected, dim=1)  # ascending
        reordered = torch.empty_like(cosine_values).scatter_(1, order, cosine_values)
        out = raw.clone()
        out[:, columns] = reordered
        return out

    def _fit_projections(self) -> None:
        """Per content modality, the ridge map ``W_m [D, A]`` from an item's vector to its column of the
        behaviour expert's weights (how the covered items' histories predict it), fitted on the A covered
        items; stored transposed ``[A, D]`` beside the vectors of the items outside, which are then ordered
        by what their content predicts their behaviour would be (the CB2CF idea, in closed form)."""
        self._projections = {}
        ridge = float(self.config["projection_ridge"])
        if ridge <= 0 or not isinstance(self._behaviour, torch.Tensor) or not self._outside_behaviour.any():
            return
        covered = (torch.arange(self.n_items, device=self.device) if self._behaviour_items is None
                   else self._behaviour_items)
        for modality, vectors in self._vectors.items():
            features = vectors[covered]  # [A, D]
            gram = features.T @ features + ridge * torch.eye(features.shape[1], device=self.device)
            weights = torch.linalg.solve(gram, (self._behaviour @ features).T)  # [D, A]
            # only the items outside are ever scored this way: keep their vectors beside the map
            self._projections[modality] = (weights.T.contiguous(), vectors[self._outside_behaviour].T.contiguous())

    def _choice_evidence(self, choices: list[torch.Tensor], history: torch.Tensor, coherence: torch.Tensor
                         ) -> torch.Tensor:
        """``[B, M]``: each user's conditional-logit coefficients of the content experts (behaviour: NaN).

        The user's items are taken as draws from ``softmax(sum_m beta_m x_m + beta_pop popularity)`` over the
        catalogue, ``x_m`` the content expert's leave-one-out scores; ``beta`` is fitted per user (ridge,
        Newton steps). Unlike coherence, the coefficients are *partial*: when two modalities agree (a
        category that follows the description's topic) the one that explains the choices beyond the other
        gets the weight. NaN where coherence is (fewer than two history items with the modality)."""
        out = torch.full_like(coherence, float("nan"))
        if not choices:
            return out
        features = torch.stack(choices + [self._popularity.expand_as(choices[0])], dim=1)  # [B, K, N]
        beta = _choice_coefficients(features, history.float(), float(self.config["choice_ridge"]))
        content = [m for m, modality in enumerate(self._modalities) if modality != "behaviour"]
        out[:, content] = torch.where(torch.isnan(coherence[:, content]), coherence[:, content], beta[:, :-1])
        return out

    def _fit_evidence_stats(self, train: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and spread of the evidence over users: the gate reads how much more a user's history
        coheres in a modality than other users' histories do."""
        self._evidence_stats = None
        users = np.flatnonzero(np.diff(train.indptr) >= 2)
        if len(users) > 5000:
            users = np.sort(np.random.default_rng(0).choice(users, 5000, replace=False))
        raw = []
        with torch.no_grad():
            for start in range(0, len(users), 256):
                check("the gate's evidence")
                raw.append(self._expert_z(train[users[start:start + 256]], raw_evidence=True).evidence)
        raw = torch.cat(raw) if raw else torch.zeros(0, len(self._modalities), device=self.device)
        mean = torch.nan_to_num(torch.nanmean(raw, dim=0), nan=0.0)
        spread = torch.sqrt(torch.nan_to_num(torch.nanmean((raw - mean) ** 2, dim=0), nan=1.0)).clamp(min=1e-6)
        return mean, spread

    def _behaviour_scores(self, history: sp.csr_matrix, h: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(self._behaviour, sp.spmatrix):  # sparse neighbours (huge catalogues)
            return torch.as_tensor(np.asarray((history @ self._behaviour).toarray(), np.float32), device=self.device)
        h = torch.as_tensor(sp.csr_matrix(history).toarray(), device=self.device) if h is None else h
        if self._behaviour_items is None:
            return h @ self._behaviour
        scores = torch.zeros_like(h)
        scores[:, self._behaviour_items] = h[:, self._behaviour_items] @ self._behaviour
        return scores

    def _mix(self, experts: Experts, with_parts: bool = False, items: torch.Tensor | None = None,
             present: torch.Tensor | None = None, hide_prior: torch.Tensor | None = None):
        """Scores (and, ``with_parts``, weights and shares) of ``items`` (default: all) for these users;
        ``hide_prior`` (bool per item) drops the popularity prior where behaviour is hidden."""
        gate = self.gate.user_weights(experts.evidence, experts.length)
        z = experts.z if items is None else experts.z[:, :, items]
        if present is None:
            present = self._present if items is None else self._present[items]
        popularity = None
        if self.config["popularity_prior"] and "behaviour" in self._modalities:
            popularity = self._popularity if items is None else self._popularity[items]
            if hide_prior is not None:
                popularity = popularity * (~hide_prior).to(popularity.dtype)
        item_popularity = self._popularity_z_all if items is None else self._popularity_z_all[items]
        return self.gate.mix(z, present, gate, popularity, experts.length, item_popularity,
                             bool(self.config["renormalise_missing"]), with_parts=with_parts)

    # ------------------------------------------------------------------ fit
    def fit(self, data: TrainData, callbacks: Sequence[Any] = (), resume_state: dict[str, Any] | None = None
            ) -> "FusionRecommender":
        from ..device import select_device
        from ..evaluate import evaluate_ranking

        started = time.perf_counter()
        self._remember(data)
        config = self.config
        torch.manual_seed(int(config["seed"]))
        rng = np.random.default_rng(int(config["seed"]))
        self.device = select_device(config["device"])
        train = _binary_rows(data.train)
        check("the model's data")
        # check(): each of these steps takes minutes on a million interactions; a stop gives up the fit
        self._prepare_items(ContentArrays.from_features(data.item_features, data.n_items), train)
        check("the content experts")
        inverse = self._fit_behaviour(train, data.valid, log=lambda message: self._stage(callbacks, message))
        check("the behaviour expert")
        self._outside_behaviour = self._behaviour_outside_mask(train)
        self._fit_projections()
        self._stage(callbacks, "experts ready")
        check("the experts")
        self.gate = ExpertGate(len(self._modalities), config["fusion"], self._modalities[0] == "behaviour"
                               ).to(self.device)
        self._evidence_stats = self._fit_evidence_stats(train)
        check("the gate's evidence")
        cloze = self._cloze_tensors(train, inverse, rng)
        del inverse
        self._stage(callbacks, "cloze sample ready")
        check("the cloze sample")
        optimiser = torch.optim.Adam(self.gate.parameters(), lr=float(config["lr"]))
        best = {"ndcg@20": -1.0, "epoch": -1, "state": None}
        start_epoch = 0
        if resume_state is not None:
            self.gate.load_state_dict(resume_state["network"])
            optimiser.load_state_dict(resume_state["optimiser"])
            start_epoch = int(resume_state["epoch"]) + 1
            best = resume_state.get("best", best)
            self.history = resume_state.get("history", self.history)
        bad_epochs = 0
        steps = int(config["steps_per_epoch"])
        has_valid = data.valid is not None and data.valid.nnz > 0
        valid_scores = self._validation_scorer(train, data.valid) if has_valid else None
        for epoch in range(start_epoch, int(config["epochs"])):
            epoch_started, total = time.perf_counter(), 0.0
            stop_requested = False
            for step in range(steps):
                loss = self._cloze_loss(cloze, rng)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total += float(loss.detach())
                for callback in callbacks:
                    if hasattr(callback, "on_step"):
                        callback.on_step(epoch=epoch, step=step + 1, steps=steps, loss=float(loss.detach()))
                if stop_requested_any(callbacks):
                    stop_requested = True
                    break
            record: dict[str, Any] = {"epoch": epoch, "loss": total / max(step + 1, 1),
                                      "seconds": time.perf_counter() - epoch_started,
                                      "steps": step + 1, "partial": stop_requested}
            improved = False
            # a partial round is not validated: a stop must not wait for a full evaluation
            metrics = None
            if has_valid and not stop_requested:
                try:
                    metrics = evaluate_ranking(valid_scores, train, data.valid, ks=(10, 20))
                except stopping.StopRequested:  # asked to stop during the validation: keep the round unscored
                    stop_requested = True
            if metrics is not None:
                record.update({f"valid_{k}": v for k, v in metrics.items() if k != "n_users_evaluated"})
                if metrics["ndcg@20"] > best["ndcg@20"] + 1e-5:
                    best = {"ndcg@20": metrics["ndcg@20"], "epoch": epoch, "state": self._gate_state()}
                    improved, bad_epochs = True, 0
                else:
                    bad_epochs += 1
            elif not has_valid:
                best = {"ndcg@20": float("nan"), "epoch": epoch, "state": self._gate_state()}
                improved = True
            record["improved"] = improved
            self.history["epochs"].append(record)
            stop = bad_epochs >= int(config["patience"]) or stop_requested
            for callback in callbacks:
                if hasattr(callback, "on_epoch_end"):
                    callback.on_epoch_end(model=self, record=record, improved=improved,
                                          resume_state=lambda: {"network": self.gate.state_dict(),
                                                                "optimiser": optimiser.state_dict(),
                                                                "epoch": epoch, "best": best,
                                                                "history": self.history})
                if getattr(callback, "stop_requested", False):
                    stop = True
            if stop:
                break
        if best["state"] is not None:
            self.gate.load_state_dict(best["state"])
        if has_valid and not stop_requested_any(callbacks):
            self._calibrate_on_valid(train, data.valid, valid_scores)
        self.history["best_epoch"] = best["epoch"]
        self.history["best_valid_ndcg@20"] = best["ndcg@20"]
        self.history["ease_l2"] = self.chosen_l2
        self.history["ease_l2_valid"] = {str(k): v for k, v in self.l2_table.items()}
        self.fit_seconds = time.perf_counter() - started
        return self

    @torch.no_grad()
    def adopt_calibration(self, other: "FusionRecommender") -> None:
        """Take the validation-chosen calibration of ``other`` (a refit on all data has no validation)."""
        self.gate.behaviour_scale.copy_(other.gate.behaviour_scale)
        self.gate.short_history_boost.copy_(other.gate.short_history_boost)
        if "calibration" in other.history:
            self.history["calibration"] = {**other.history["calibration"], "adopted": True}

    @torch.no_grad()
    def _calibrate_on_valid(self, train: sp.csr_matrix, valid: sp.csr_matrix, scorer: Any = None) -> None:
        """Choose how sharp the behaviour expert's scores should be against the content experts' (a scale of
        its standardised scores) on validation NDCG@20 (ties keep the smaller change). The users' weights
        are not touched: they stay what the evidence in each user's history says."""
        from ..evaluate import evaluate_ranking

        gate = self.gate
        shifts = self.config["behaviour_scales"] if gate.has_behaviour and self.config["fusion"] != "concat" \
            else [1.0]
        table = {}
        for scale in shifts:
            gate.behaviour_scale.fill_(float(scale))
            table[float(scale)] = evaluate_ranking(scorer or self.score, train, valid, ks=(20,))["ndcg@20"]
        best = max(table, key=lambda scale: (round(table[scale], 6), -abs(math.log(scale))))
        gate.behaviour_scale.fill_(best)
        self.history["calibration"] = {"behaviour_scale": best, "valid_ndcg@20": table[best],
                                       "table": {f"behaviour x{k:g}": v for k, v in table.items()}}
        if self.config["popularity_prior"] and gate.has_behaviour:
            self._calibrate_short_histories(train, valid)

    @torch.no_grad()
    def _calibrate_short_histories(self, train: sp.csr_matrix, valid: sp.csr_matrix) -> None:
        """How much extra popularity a user known by one to three items gets: validation users are reduced
        to 1, 2, 3 random training items (the new-user path) and the mean NDCG@20 on their validation items
        decides. The term fades as (2 / (1 + n))^2, so long histories are not affected."""
        from ..explain.coldstart import evaluate_short_histories

        table = {}
        self._expert_memo = {}  # the boost only changes the mix: each history's experts are computed once
        try:
            for boost in self.config["short_history_boosts"]:
                self.gate.short_history_boost.fill_(float(boost))
                rows = evaluate_short_histories(self, train, valid, lengths=(1, 2, 3), max_users=200, seed=1,
                                                ks=(20,))
                table[float(boost)] = float(np.mean([r["ndcg@20"] for r in rows]))
        finally:
            self._expert_memo = None
        best = max(table, key=lambda b: (round(table[b], 6), -b))
        self.gate.short_history_boost.fill_(best)
        self.history["calibration"]["short_history_boost"] = best
        self.history["calibration"]["short_history_valid_ndcg@20"] = {f"boost {b:g}": v for b, v in table.items()}

    def _validation_scorer(self, train: sp.csr_matrix, valid: sp.csr_matrix) -> Any:
        """A score function for the validation users that computes the experts once: during training only
        the gate changes, so each round's validation is a re-mix, not a re-scoring (within a memory budget)."""
        users = np.flatnonzero(np.diff(sp.csr_matrix(valid).indptr) > 0)
        if len(users) * len(self._modalities) * self.n_items > int(self.config["cloze_budget"]):
            return self.score
        with torch.no_grad():
            parts = []
            for start in range(0, len(users), 256):
                check("the validation experts")
                parts.append(self._expert_z(train[users[start:start + 256]]))
        cached = Experts(torch.cat([p.z for p in parts]), torch.cat([p.evidence for p in parts]),
                         torch.cat([p.length for p in parts]))
        position = np.full(train.shape[0], -1, np.int64)
        position[users] = np.arange(len(users))

        @torch.no_grad()
        def score(rows: np.ndarray) -> np.ndarray:
            rows = np.asarray(rows, dtype=np.int64)
            at = position[rows]
            if (at < 0).any():
                return self.score(rows)
            index = torch.as_tensor(at, device=self.device)
            part = Experts(cached.z[index], cached.evidence[index], cached.length[index])
            return self._mix(part).cpu().numpy()

        return score

    @staticmethod
    def _stage(callbacks: Sequence[Any], message: str) -> None:
        for callback in callbacks:
            if hasattr(callback, "on_stage"):
                callback.on_stage(message)

    def _gate_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.gate.state_dict().items()}

    def _prepare_items(self, content: ContentArrays, train: sp.csr_matrix) -> None:
        n = train.shape[1]
        wanted = self.config["modalities"]
        counts = np.asarray(train.sum(axis=0)).ravel()
        warm = counts > 0
        sources = {
            "text": (content.text, content.text_mask),
            "image": (content.image, content.image_mask),
            "attributes": (content.attribute_matrix(), content.attr_mask),
        }
        modalities, masks = [], []
        self._vectors, self._centres = {}, {}
        for modality in MODALITIES:
            if modality not in wanted:
                continue
            if modality == "behaviour":
                modalities.append(modality)
                masks.append(warm)
                continue
            matrix, mask = sources[modality]
            if matrix is None or mask is None or not np.asarray(mask).any():
                continue
            mask = np.asarray(mask, bool) & (np.abs(matrix).sum(axis=1) > 0)
            self._vectors[modality] = torch.as_tensor(_centred_unit_rows(matrix, mask), device=self.device)
            self._centres[modality] = torch.as_tensor(_centre(matrix, mask), device=self.device)
            modalities.append(modality)
            masks.append(mask)
        if not modalities:
            raise ValueError(f"none of the requested modalities {wanted} has data")
        self._modalities = modalities
        self._present = torch.as_tensor(np.stack(masks, axis=1), device=self.device)
        log_pop = np.log1p(counts)
        popularity = np.zeros(n, np.float32)
        if warm.sum() > 1 and log_pop[warm].std() > 0:
            # an item nobody chose is the least popular: its z is that of a count of 0 (not the mean),
            # so the popularity prior never lifts the untried part of a large catalogue over the bestsellers
            popularity = ((log_pop - log_pop[warm].mean()) / log_pop[warm].std()).astype(np.float32)
        self._popularity = torch.as_tensor(popularity, device=self.device)
        self._popularity_z_all = torch.as_tensor((log_pop - log_pop.mean()) / max(log_pop.std(), 1e-6),
                                                 dtype=torch.float32, device=self.device)

    def _behaviour_outside_mask(self, train: sp.csr_matrix | None = None) -> torch.Tensor:
        """``[N]`` bool: items the behaviour expert gives no score (never chosen, or beyond its cap)."""
        outside = torch.ones(self.n_items, dtype=torch.bool, device=self.device)
        if "behaviour" not in self._modalities or self._behaviour is None:
            return outside
        if self._behaviour_items is not None:
            outside[self._behaviour_items] = False
        else:
            outside = ~self._present[:, self._modalities.index("behaviour")]
        return outside

    def _fit_behaviour(self, train: sp.csr_matrix, valid: sp.csr_matrix | None,
                       log: Any = None) -> np.ndarray | None:
        """EASE weights (L2 on validation) over the items with behaviour, or, for huge catalogues, sparse
        cosine neighbours. Returns EASE's inverse over those items (for the out-of-fold cloze scores)."""
        from .ease import behaviour_columns, choose_ease_l2, ease_inverse, ease_weights

        self._behaviour_items = None
        if "behaviour" not in self._modalities:
            return None
        config = self.config
        if len(behaviour_columns(train)) > int(config["max_dense_items"]):
            self._behaviour = _cosine_neighbours(train, int(config["neighbours"]))
            return None
        columns = behaviour_columns(train, int(config["ease_max_items"]))
        train = train[:, columns]
        valid = valid[:, columns] if valid is not None else None
        l2 = config["ease_l2"]
        if l2 == "auto" and valid is not None and valid.nnz:
            l2, self.l2_table, inverse = choose_ease_l2(train, valid, config["ease_l2_grid"], log=log)
        else:
            l2 = float(config["fallback_l2"] if l2 == "auto" else l2)
            inverse = stopping.interruptible("the EASE solve", ease_inverse, train, l2)
        self.chosen_l2 = float(l2)
        self._behaviour = torch.as_tensor(ease_weights(inverse), device=self.device)
        if len(columns) < self.n_items:
            self._behaviour_items = torch.as_tensor(columns, device=self.device)
        return inverse

    # ------------------------------------------------------------------ cloze training data
    def _cloze_tensors(self, train: sp.csr_matrix, inverse: np.ndarray | None, rng: np.random.Generator
                       ) -> dict[str, Any]:
        """Hide part of sampled users' histories; expert scores from the visible part (behaviour out-of-fold)."""
        from .ease import ease_scores_without_rows

        config = self.config
        n_users, n_items = train.shape
        lengths = np.diff(train.indptr)
        eligible = np.flatnonzero(lengths >= 2)
        if len(eligible) == 0:
            raise ValueError("no user has two or more training interactions: nothing to learn the gate from")
        budget = int(config["cloze_budget"]) // max(1, len(self._modalities) * n_items)
        size = int(min(len(eligible), int(config["gate_users"]), max(64, budget)))
        users = np.sort(rng.choice(eligible, size=size, replace=False))
        vis_rows, vis_cols, hid_rows, hid_cols = [], [], [], []
        short = rng.random(size) < float(config["short_history_share"])
        for r, user in enumerate(users):
            items = train.indices[train.indptr[user]:train.indptr[user + 1]]
            items = rng.permutation(items)
            if short[r] and len(items) >= 3:
                n_visible = int(rng.integers(1, min(3, len(items) - 1) + 1))
            else:
                n_hidden = max(1, int(round(len(items) * float(config["cloze_ratio"]))))
                n_visible = len(items) - n_hidden
            vis_rows += [r] * n_visible
            vis_cols += items[:n_visible].tolist()
            hid_rows += [r] * (len(items) - n_visible)
            hid_cols += items[n_visible:].tolist()
        visible = sp.csr_matrix((np.ones(len(vis_rows), np.float32), (vis_rows, vis_cols)), shape=(size, n_items))
        hidden = sp.csr_matrix((np.ones(len(hid_rows), np.float32), (hid_rows, hid_cols)), shape=(size, n_items))
        behaviour_raw = None
        if inverse is not None:
            # EASE's inverse covers only the items with behaviour: the others score 0
            behaviour_raw = np.zeros((size, n_items), np.float32)
            columns = (np.arange(n_items) if self._behaviour_items is None
                       else self._behaviour_items.cpu().numpy())
            fold = rng.permutation(size) % max(1, int(config["folds"]))
            fold_size = max(1, math.ceil(size / 600))  # keep each removed block small (m x m solves)
            for f in range(int(fold.max()) + 1):
                rows = np.flatnonzero(fold == f)
                for start in range(0, len(rows), math.ceil(len(rows) / fold_size)):
                    check("the cloze sample")
                    part = rows[start:start + math.ceil(len(rows) / fold_size)]
                    # remove these users' *whole* training rows, score their visible part
                    behaviour_raw[np.ix_(part, columns)] = ease_scores_without_rows(
                        inverse, train[users[part]][:, columns], visible[part][:, columns])
            behaviour_raw = torch.as_tensor(behaviour_raw, device=self.device)
        with torch.no_grad():  # in blocks of users (every expert is per user): a stop acts between blocks
            parts = []
            for start in range(0, size, 1024):
                check("the cloze sample")
                parts.append(self._expert_z(visible[start:start + 1024],
                                            None if behaviour_raw is None else behaviour_raw[start:start + 1024]))
            experts = Experts(torch.cat([p.z for p in parts]), torch.cat([p.evidence for p in parts]),
                              torch.cat([p.length for p in parts]))
        return {"experts": experts,
                "visible": torch.as_tensor(visible.toarray() > 0, device=self.device),
                "hidden": torch.as_tensor(hidden.toarray(), device=self.device)}

    def _cloze_loss(self, cloze: dict[str, Any], rng: np.random.Generator) -> torch.Tensor:
        """The cloze loss on a random mini-batch of the cloze users (a dozen parameters need no full pass)."""
        gate = self.gate
        experts = cloze["experts"]
        size = experts.z.shape[0]
        batch = int(self.config["cloze_batch"])
        index = torch.as_tensor(np.sort(rng.choice(size, size=batch, replace=False)) if size > batch
                                else np.arange(size), device=self.device)
        part = Experts(experts.z[index], experts.evidence[index], experts.length[index])
        scores = self._mix(part) / torch.exp(gate.log_temperature)
        hidden = cloze["hidden"][index]
        visible = cloze["visible"][index]
        if self.config["loss"] == "bpr":
            pos_rows, pos_cols = hidden.nonzero(as_tuple=True)
            negatives = torch.as_tensor(rng.integers(0, scores.shape[1], len(pos_rows)), device=scores.device)
            loss = -F.logsigmoid(scores[pos_rows, pos_cols] - scores[pos_rows, negatives]).mean()
        else:
            masked = scores.masked_fill(visible, float("-inf"))
            log_probs = torch.log_softmax(masked, dim=1)
            weight = hidden
            if self.config["rank_weighted"]:
                # weight each hidden item by the DCG discount of its current rank: what the metric rewards
                # is the top of the list, and a content signal that lifts an item from rank 900 to 600
                # should not outweigh one that pushes a good item out of the top 20
                with torch.no_grad():
                    rank = _ranks(masked)
                weight = hidden / torch.log2(rank + 2.0)
            per_user = -(log_probs.masked_fill(hidden == 0, 0.0) * weight).sum(1) / weight.sum(1).clamp(min=1e-9)
            loss = per_user.mean()
        return loss + float(self.config["gate_l2"]) * gate.item_popularity_weight.pow(2).sum()

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def score(self, users: Sequence[int] | np.ndarray, batch_size: int = 256) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        out = np.empty((len(users), self.n_items), dtype=np.float32)
        for start in range(0, len(users), batch_size):
            rows = users[start:start + batch_size]
            out[start:start + len(rows)] = self._mix(self._expert_z(_binary_rows(self.seen[rows]))).cpu().numpy()
        return out

    @torch.no_grad()
    def score_history(self, items: Sequence[int], weights: Sequence[float] | None = None) -> np.ndarray:
        """Scores ``[n_items]`` for a user known only by ``items`` (a new user; no retraining).

        The history is a set: items with a positive weight are in it."""
        items = np.asarray(items, dtype=np.int64)
        if len(items) == 0:
            raise ValueError("a history needs at least one item")
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            items = items[w > 0] if (w > 0).any() else items
        row = sp.csr_matrix((np.ones(len(items), np.float32), (np.zeros(len(items), np.int64), items)),
                            shape=(1, self.n_items))
        return self._mix(self._expert_z(_binary_rows(row))).cpu().numpy()[0].astype(np.float64)

    @torch.no_grad()
    def score_histories(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """One batched pass for many histories (rows of the output), e.g. leave-one-out variants."""
        rows, cols = [], []
        for r, items in enumerate(histories):
            items = np.unique(np.asarray(items, dtype=np.int64))
            rows += [r] * len(items)
            cols += items.tolist()
        matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(histories), self.n_items))
        out = np.empty((len(histories), self.n_items), np.float64)
        memo = self._expert_memo
        for start in range(0, len(histories), 256):
            chunk = matrix[start:start + 256]
            if memo is None:
                experts = self._expert_z(chunk)
            else:  # calibration re-mixes the same histories under several settings: experts once
                key = (chunk.shape, chunk.indptr.tobytes(), chunk.indices.tobytes())
                experts = memo[key] if key in memo else memo.setdefault(key, self._expert_z(chunk))
            out[start:start + 256] = self._mix(experts).cpu().numpy()
        return out

    @torch.no_grad()
    def explain_scores(self, user: int | str, items: Sequence[int | str]) -> dict[str, Any]:
        """Per-item modality weights and additive shares for (user, items); shares sum to the score."""
        row = self.user_index(user)
        index = np.array([self.item_index(i) for i in items], dtype=np.int64)
        experts = self._expert_z(_binary_rows(self.seen[[row]]))
        items_t = torch.as_tensor(index, device=self.device)
        scores, weights, shares = self._mix(experts, with_parts=True, items=items_t)
        out = {"modalities": self.modalities, "items": [str(self.item_ids[i]) for i in index],
               "score": scores[0].cpu().numpy(), "present": self._present[items_t].cpu().numpy(),
               "user_weights": self.gate.user_weights(experts.evidence, experts.length)[0].cpu().numpy(),
               "attention": None, "shares": None}
        if weights is not None:
            out["attention"] = weights[0].cpu().numpy()
            out["shares"] = shares[0].cpu().numpy()
            if self.config["popularity_prior"] and "behaviour" in self._modalities:
                prior = self.gate.popularity_weight(experts.length) * self._popularity[items_t]
                out["popularity_share"] = prior.cpu().numpy()
        return out

    @torch.no_grad()
    def masked_scores(self, user: int, items: Sequence[int], masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores of ``items`` as they are and with the modalities in ``masks [k, M]`` hidden (the item
        re-mixed over the rest). Hiding behaviour hides the popularity prior too (it is behaviour)."""
        index = torch.as_tensor(np.asarray(items, dtype=np.int64), device=self.device)
        experts = self._expert_z(_binary_rows(self.seen[[int(user)]]))
        present = self._present[index]
        base = self._mix(experts, items=index)[0]
        hide = torch.as_tensor(np.asarray(masks, dtype=bool), device=self.device)
        hide_prior = hide[:, self._modalities.index("behaviour")] if "behaviour" in self._modalities else None
        masked = self._mix(experts, items=index, present=present & ~hide, hide_prior=hide_prior)[0]
        return base.float().cpu().numpy(), masked.float().cpu().numpy()

    def attention_matrix(self, users: Sequence[int], items: Sequence[int] | None = None) -> np.ndarray:
        """Per-item modality weights ``[len(users), len(items), M]`` (0 where an item lacks a modality)."""
        index = np.arange(self.n_items) if items is None else np.asarray(items, dtype=np.int64)
        users = np.asarray(users, dtype=np.int64)
        gate = torch.as_tensor(self.user_modality_weights(users), device=self.device)
        presence = self._present[torch.as_tensor(index, device=self.device)].float()  # [k, M]
        weights = gate.unsqueeze(1) * presence.unsqueeze(0)
        if self.config["renormalise_missing"]:
            weights = weights / weights.sum(-1, keepdim=True).clamp(min=1e-12)
        return weights.cpu().numpy()

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, np.ndarray]:
        state = {f"gate.{k}": v.detach().float().cpu().numpy() for k, v in self.gate.state_dict().items()}
        for modality, vectors in self._vectors.items():
            state[f"vectors.{modality}"] = vectors.cpu().numpy()
            state[f"centre.{modality}"] = self._centres[modality].cpu().numpy()
        state["present"] = self._present.cpu().numpy().astype(np.uint8)
        state["popularity"] = self._popularity.cpu().numpy()
        state["popularity_all"] = self._popularity_z_all.cpu().numpy()
        state["evidence_stats"] = torch.stack(self._evidence_stats).cpu().numpy()
        for modality, (weights, basis) in self._projections.items():
            state[f"projection.{modality}"] = weights.cpu().numpy()
            state[f"projection_vectors.{modality}"] = basis.cpu().numpy()
        state["chosen_l2"] = np.array([np.nan if self.chosen_l2 is None else self.chosen_l2])
        if self._behaviour is not None:
            if isinstance(self._behaviour, sp.spmatrix):
                state["behaviour.indptr"] = self._behaviour.indptr.astype(np.int64)
                state["behaviour.indices"] = self._behaviour.indices.astype(np.int64)
                state["behaviour.data"] = self._behaviour.data.astype(np.float32)
            else:
                state["behaviour"] = self._behaviour.cpu().numpy()
                if self._behaviour_items is not None:
                    state["behaviour.items"] = self._behaviour_items.cpu().numpy().astype(np.int64)
        return state

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        from ..device import select_device

        self.device = select_device(self.config.get("device", "auto"))
        present = state["present"].astype(bool)
        self._modalities = [m for m in MODALITIES if m in self.config["modalities"]
                            and (m == "behaviour" or f"vectors.{m}" in state)]
        self._present = torch.as_tensor(present, device=self.device)
        self._vectors = {m: torch.as_tensor(state[f"vectors.{m}"], device=self.device)
                         for m in self._modalities if m != "behaviour"}
        self._centres = {m: torch.as_tensor(state[f"centre.{m}"], device=self.device) for m in self._vectors}
        self._popularity = torch.as_tensor(state["popularity"], device=self.device)
        self._popularity_z_all = torch.as_tensor(state["popularity_all"], device=self.device)
        stats = torch.as_tensor(state["evidence_stats"], device=self.device)
        self._evidence_stats = (stats[0], stats[1])
        chosen = float(state["chosen_l2"][0])
        self.chosen_l2 = None if math.isnan(chosen) else chosen
        self._behaviour_items = None
        if "behaviour" in state:
            self._behaviour = torch.as_tensor(state["behaviour"], device=self.device)
            if "behaviour.items" in state:
                self._behaviour_items = torch.as_tensor(state["behaviour.items"], device=self.device)
        elif "behaviour.indptr" in state:
            n = len(self.item_ids)
            self._behaviour = sp.csr_matrix((state["behaviour.data"], state["behaviour.indices"],
                                             state["behaviour.indptr"]), shape=(n, n))
        self._outside_behaviour = self._behaviour_outside_mask()
        self._projections = {m: (torch.as_tensor(state[f"projection.{m}"], device=self.device),
                                 torch.as_tensor(state[f"projection_vectors.{m}"], device=self.device))
                             for m in self._vectors if f"projection.{m}" in state}
        self.gate = ExpertGate(len(self._modalities), self.config["fusion"], self._modalities[0] == "behaviour"
                               ).to(self.device)
        self.gate.load_state_dict({k[len("gate."):]: torch.from_numpy(v.copy())
                                   for k, v in state.items() if k.startswith("gate.")})


def stop_requested_any(callbacks: Sequence[Any]) -> bool:
    return stopping.requested() or any(getattr(callback, "stop_requested", False) for callback in callbacks)


def _choice_coefficients(features: torch.Tensor, chosen: torch.Tensor, ridge: float, iterations: int = 10
                         ) -> torch.Tensor:
    """Per-row conditional-logit coefficients ``[B, K]``: the ridge-penalised maximum likelihood of the
    ``chosen [B, N]`` items as draws from ``softmax(beta . features[:, :, i])`` (``features [B, K, N]``).

    Damped Newton steps on all rows at once (K is a handful, so each Hessian is tiny): the objective is
    concave and the ridge keeps it strictly so; each step is capped at unit length so that a row with
    two items cannot jump far on its first step."""
    b, k, _ = features.shape
    beta = torch.zeros(b, k, device=features.device, dtype=features.dtype)
    count = chosen.sum(1)
    observed = torch.bmm(features, chosen.unsqueeze(2)).squeeze(2)  # [B, K]
    eye = torch.eye(k, device=features.device, dtype=features.dtype)
    for _ in range(iterations):
        p = torch.softmax(torch.bmm(beta.unsqueeze(1), features).squeeze(1), dim=1)  # [B, N]
        expected = torch.bmm(features, p.unsqueeze(2)).squeeze(2)  # [B, K]
        second = torch.bmm(features * p.unsqueeze(1), features.transpose(1, 2))  # [B, K, K]
        covariance = second - expected.unsqueeze(2) * expected.unsqueeze(1)
        gradient = observed - count.unsqueeze(1) * expected - 2.0 * ridge * beta
        hessian = count.view(-1, 1, 1) * covariance + 2.0 * ridge * eye
        step = torch.linalg.solve(hessian, gradient.unsqueeze(2)).squeeze(2)
        beta = beta + step / step.norm(dim=1, keepdim=True).clamp(min=1.0)
    return beta


def _ranks(scores: torch.Tensor) -> torch.Tensor:
    """0-based rank of every entry within its row (highest score = 0); ties broken by position."""
    order = torch.argsort(scores, dim=1, descending=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(scores.shape[1], device=scores.device).expand_as(order))
    return ranks.float()


def _cosine_neighbours(train: sp.csr_matrix, k: int, block: int = 2048) -> sp.csr_matrix:
    """Sparse item-item cosine similarities, the ``k`` largest per item, zero diagonal (huge catalogues)."""
    x = _binary_rows(train).T.tocsr()  # items x users
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    x = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ x
    n = x.shape[0]
    rows, cols, vals = [], [], []
    for start in range(0, n, block):
        sims = np.asarray((x[start:start + block] @ x.T).toarray(), np.float32)
        sims[np.arange(len(sims)), np.arange(start, start + len(sims))] = 0.0
        kk = min(k, n - 1)
        top = k_largest(sims, kk, axis=1)
        values = np.take_along_axis(sims, top, axis=1)
        keep = values > 0
        rows.append(np.repeat(np.arange(start, start + len(sims)), kk)[keep.ravel()])
        cols.append(top.ravel()[keep.ravel()])
        vals.append(values.ravel()[keep.ravel()])
    # score(u) = x_u S with S[i, j] = sim(i, j): row i = a history item, column j = the candidate
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
