"""The modality experts: how each scores every item from a user's history, and the evidence of how
well each modality fits that history (coherence, and the user's conditional-logit choice coefficients).

:class:`ExpertScoring` is the part of :class:`~recsys.models.fusion.model.FusionRecommender` that builds
the experts from the training data (``_prepare_items``, ``_fit_behaviour``, ``_fit_projections``,
``_fit_evidence_stats``) and turns histories into standardised expert scores (``_expert_z``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp
import torch

from ... import stopping
from ...stopping import check
from ...topk import places_in_rows
from ..config import MODALITIES
from .content import (
    ContentArrays,
    behaviour_block_weights,
    binary_rows,
    content_unit_rows,
    cosine_neighbours,
    fit_projections,
    history_times,
    order_by_projection,
)

T = TypeVar("T")


def fitted(value: T | None) -> T:
    """``value``, which fit() or Recommender.load() sets; a clear error on a model that has neither."""
    if value is None:
        raise RuntimeError("the fusion model is not fitted: call fit() or Recommender.load() first")
    return value


# the fusion option choice_alternatives: above this many items the users' choice models run over a sample of
# alternatives (see _choice_set). On movielens-small-mm (9,742 items) 4,096 changed no test metric and took
# ~0.6 s off a 10 s fit. A model saved before the option existed ran over every item up to 16,384 and over
# 16,384 sampled ones above: see legacy_choice_alternatives
LEGACY_CHOICE_ALTERNATIVES = 16_384


def legacy_choice_alternatives(saved_config: dict[str, Any]) -> int:
    """The choice set of a fusion model saved before ``choice_alternatives`` was an option: 16,384, except
    for the models saved in the short while (2026-12-04) the default was already 4,096 but not yet saved.
    Those are told apart by ``content_max_dim``, whose default went from 512 to 256 in the same change (a
    user who set it by hand to the other default gets the other count: the coefficients are then estimated
    on another sample of items, consistently, and the gate's weights move within their noise)."""
    return 4096 if saved_config.get("content_max_dim") == 256 else LEGACY_CHOICE_ALTERNATIVES


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
    # [B, M] how far each modality's evidence is to be trusted against the whole history's (see
    # evidence_reliability); set on raw evidence, whose standardisation applies it (None: already applied)
    reliability: torch.Tensor | None = None


# a modality's evidence from n_m of a history's n items is trusted as n_m / (n_m + c) against the history's
# n / (n + c) (the gate's own shrinkage works on n): two pictured items of eight say less than eight
EVIDENCE_RELIABILITY_ITEMS = 3.0


def evidence_reliability(counts: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """``[B, M]`` in (0, 1]: ``(n_m / (n_m + c)) / (n / (n + c))`` for ``counts [B, M]`` (history items with
    each modality) and ``length [B]``; 1 where every history item has the modality."""
    c = EVIDENCE_RELIABILITY_ITEMS
    whole = (length / (length + c)).unsqueeze(1).clamp(min=1e-12)
    return ((counts / (counts + c)) / whole).clamp(max=1.0)


def standardised_evidence(
    raw: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor] | None, reliability: torch.Tensor, clip: float = 0.0
) -> torch.Tensor:
    """Raw evidence ``[B, 2M]`` standardised over users (``stats``), clipped to ``[-clip, clip]`` (0: not
    clipped), each modality's two entries scaled by its reliability, and 0 (the population's weight) where there
    is none. The clip keeps a history far outside the training users' (a new visitor's two items nobody chose
    together) from driving a modality's weight to 0."""
    evidence = raw if stats is None else (raw - stats[0]) / stats[1]
    if clip > 0:
        evidence = evidence.clamp(-clip, clip)  # NaN (no evidence) stays NaN
    return torch.nan_to_num(evidence * reliability.repeat(1, 2), nan=0.0)


def choice_coefficients(
    features: torch.Tensor, chosen: torch.Tensor, ridge: float, iterations: int = 10, tolerance: float = 1e-4
) -> torch.Tensor:
    """Per-row conditional-logit coefficients ``[B, K]``: the ridge-penalised maximum likelihood of the
    ``chosen [B, N]`` items as draws from ``softmax(beta . features[:, :, i])`` (``features [B, K, N]``).

    Damped Newton steps on all rows at once (K is a handful, so each Hessian is tiny): the objective is
    concave and the ridge keeps it strictly so; each step is capped at unit length so that a row with
    two items cannot jump far on its first step. A row whose last step moved no coefficient by more than
    ``tolerance`` is done and leaves the batch: Newton converges quadratically, so most rows are done after
    four or five steps, and each step over the rest reads only their ``[K, N]`` slices (the steps are
    memory-bound). Below 1e-4 the steps are float32 noise."""
    b, k, _ = features.shape
    beta = torch.zeros(b, k, device=features.device, dtype=features.dtype)
    count = chosen.sum(1)
    observed = torch.bmm(features, chosen.unsqueeze(2)).squeeze(2)  # [B, K]
    eye = torch.eye(k, device=features.device, dtype=features.dtype)
    active = torch.arange(b, device=features.device)
    rows, row_count, row_observed, row_beta = features, count, observed, beta.clone()
    for _ in range(iterations):
        p = torch.softmax(torch.bmm(row_beta.unsqueeze(1), rows).squeeze(1), dim=1)  # [A, N]
        expected = torch.bmm(rows, p.unsqueeze(2)).squeeze(2)  # [A, K]
        second = torch.bmm(rows * p.unsqueeze(1), rows.transpose(1, 2))  # [A, K, K]
        covariance = second - expected.unsqueeze(2) * expected.unsqueeze(1)
        gradient = row_observed - row_count.unsqueeze(1) * expected - 2.0 * ridge * row_beta
        hessian = row_count.view(-1, 1, 1) * covariance + 2.0 * ridge * eye
        step = torch.linalg.solve(hessian, gradient.unsqueeze(2)).squeeze(2)
        row_beta = row_beta + step / step.norm(dim=1, keepdim=True).clamp(min=1.0)
        beta[active] = row_beta
        moving = step.abs().amax(dim=1) >= tolerance
        if not bool(moving.any()):
            break
        if not bool(moving.all()):  # drop the converged rows (a copy of the rest: worth it once many are done)
            active, row_beta = active[moving], row_beta[moving]
            rows, row_count, row_observed = rows[moving], row_count[moving], row_observed[moving]
    return beta


class ExpertScoring:
    """The experts' half of the fusion recommender (a mixin: it reads the model's config and item arrays)."""

    config: dict[str, Any]
    n_items: int
    device: torch.device
    chosen_l2: float | None
    l2_table: dict[float, float]
    history: dict[str, Any]
    _attribute_weights: dict[str, float]
    _modalities: list[str]
    _vectors: dict[str, torch.Tensor]
    _centres: dict[str, torch.Tensor]
    _bases: dict[str, torch.Tensor]  # content modality -> [D, d] principal directions (a wide modality only)
    # None until fit() or Recommender.load() sets them (read them through fitted())
    _present: torch.Tensor | None  # [N, M] bool
    _behaviour: torch.Tensor | sp.csr_matrix | None
    _behaviour_items: torch.Tensor | None
    _popularity: torch.Tensor | None
    _popularity_z_all: torch.Tensor | None
    _evidence_stats: tuple[torch.Tensor, torch.Tensor] | None
    _outside_behaviour: torch.Tensor | None
    _projections: dict[str, tuple[torch.Tensor, torch.Tensor]]

    def _prepare_items(self, content: ContentArrays, train: sp.csr_matrix) -> None:
        """The modalities that have data, each content modality's centred unit vectors, which items have
        which modality, and the items' popularity z-scores (the prior's and the item gate's)."""
        n = train.shape[1]
        wanted = self.config["modalities"]
        counts = np.asarray(train.sum(axis=0)).ravel()
        warm = counts > 0
        attribute_matrix = None
        if "attributes" in wanted:
            blocks = content.attribute_blocks()
            weights = None
            if blocks and self.config["attribute_weighting"] == "behaviour":
                weights = behaviour_block_weights([block for _, block in blocks], train)
            # kept in the run's metrics: which columns the attribute expert listens to
            self._attribute_weights = {
                name: 1.0 if weights is None else float(weights[j]) for j, (name, _) in enumerate(blocks)
            }
            self.history["attribute_weights"] = dict(self._attribute_weights)
            attribute_matrix = content.attribute_matrix(weights, blocks)
        sources = {
            "text": (content.text, content.text_mask),
            "image": (content.image, content.image_mask),
            "attributes": (attribute_matrix, content.attr_mask),
        }
        modalities, masks = [], []
        self._vectors, self._centres, self._bases = {}, {}, {}
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
            mask = np.asarray(mask, bool) & (np.asarray(abs(matrix).sum(axis=1)).ravel() > 0)
            vectors, mean, basis = content_unit_rows(
                matrix, mask, int(self.config["content_max_dim"]), int(self.config["seed"])
            )
            self._vectors[modality] = torch.as_tensor(vectors, device=self.device)
            self._centres[modality] = torch.as_tensor(mean, device=self.device)
            if basis is not None:
                self._bases[modality] = torch.as_tensor(basis, device=self.device)
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
        self._popularity_z_all = torch.as_tensor(
            (log_pop - log_pop.mean()) / max(log_pop.std(), 1e-6), dtype=torch.float32, device=self.device
        )

    def _behaviour_outside_mask(self, train: sp.csr_matrix | None = None) -> torch.Tensor:
        """``[N]`` bool: items the behaviour expert gives no score (never chosen, or beyond its cap)."""
        outside = torch.ones(self.n_items, dtype=torch.bool, device=self.device)
        if "behaviour" not in self._modalities or self._behaviour is None:
            return outside
        if self._behaviour_items is not None:
            outside[self._behaviour_items] = False
        else:
            outside = ~fitted(self._present)[:, self._modalities.index("behaviour")]
        return outside

    def _fit_behaviour(self, train: sp.csr_matrix, valid: sp.csr_matrix | None, log: Any = None) -> np.ndarray | None:
        """EASE weights (L2 on validation) over the ``ease_max_items`` most interacted items, or (behaviour_prior
        = cosine) sparse cosine neighbours over every item. Returns EASE's inverse over those items (for the out-of-fold cloze scores)."""
        from ..ease import behaviour_columns, choose_ease_l2, ease_inverse, ease_weights

        self._behaviour_items = None
        if "behaviour" not in self._modalities:
            return None
        config = self.config
        if config["behaviour_prior"] == "cosine":
            self._behaviour = cosine_neighbours(train, int(config["neighbours"]))
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

    # ------------------------------------------------------------------ scoring
    def _expert_z(
        self, history: sp.csr_matrix, behaviour_raw: torch.Tensor | None = None, raw_evidence: bool = False
    ) -> Experts:
        """Every expert's standardised scores for the users of ``history`` (binary rows), and the evidence
        of how well each modality fits each user's own history."""
        device = self.device
        present = fitted(self._present)
        # dense [B, N] rows for the per-item work (masks, counts, ranks); the products with item matrices take
        # the sparse rows on a CPU (history_times)
        history = binary_rows(history)
        hist_dense = torch.as_tensor(history.toarray() > 0, device=device)
        h = hist_dense.float()
        length = hist_dense.sum(1).float()
        zs, fits, choices, counts = [], [], [], []
        for m, modality in enumerate(self._modalities):
            mask = present[:, m]
            counted = hist_dense & mask.unsqueeze(0)
            n_counted = counted.float().sum(1)
            counts.append(n_counted)
            if modality == "behaviour":
                raw = behaviour_raw if behaviour_raw is not None else self._behaviour_scores(history, h)
            else:
                profile = history_times(history, h, self._vectors[modality])  # sum of the history's unit vectors
                raw = profile @ self._vectors[modality].T  # [B, N]
                if modality in self._projections:
                    raw = self._with_projection(raw, history, h, modality, mask)
            count = mask.float().sum().clamp(min=1)
            # the statistics' items: every item with the modality, except for behaviour, whose statistics
            # leave out the history itself. EASE scores a history's own items far above the rest, and a long
            # history (1,700 of movielens' 3,650 items with behaviour) pulled the mean above every item left to
            # recommend: those sank below the items without behaviour (z = 0), and the behaviour expert no
            # longer ranked as EASE does (4 of 5 movielens splits below EASE; validation chose this over
            # leaving the history out of the content experts' statistics too)
            weight = mask.float().unsqueeze(0)  # [1, N]: the same items for every user
            if modality == "behaviour":
                candidates = mask.unsqueeze(0) & ~hist_dense  # [B, N]
                weight = torch.where(candidates.any(1, keepdim=True), candidates, mask.unsqueeze(0)).float()
            n_counted_in = weight.sum(1, keepdim=True).clamp(min=1)
            mean = (raw * weight).sum(1, keepdim=True) / n_counted_in
            std = (((raw - mean) ** 2) * weight).sum(1, keepdim=True).div(n_counted_in).sqrt().clamp(min=1e-8)
            zs.append(((raw - mean) / std).masked_fill(~mask.unsqueeze(0), 0.0))
            if modality != "behaviour":
                # the same scores with each history item's similarity to itself (1) taken out: what the rest
                # of the history says about it, the input of the user's choice model below
                choices.append(zs[-1] - counted.float() / std)
            if modality == "behaviour":
                # where each history item ranks among the warm items by the item-item score of the rest of
                # the history (B has a zero diagonal, so this is leave-one-out), as an AUC in [-1, 1]; ranks
                # are robust to the heavy tail of item-item scores
                position = places_in_rows(raw.masked_fill(~mask.unsqueeze(0), float("inf")), counted, "left")
                fit = ((2.0 * position / count - 1.0) * counted).sum(1) / n_counted.clamp(min=1)
            else:
                # how coherent the history is in this modality: the mean pairwise cosine of its items
                # (centred vectors, so unrelated items give about 0) = (||sum||^2 - n) / (n (n - 1))
                fit = (profile.pow(2).sum(1) - n_counted) / (n_counted * (n_counted - 1)).clamp(min=1)
            fits.append(torch.where(n_counted >= 2, fit, torch.full_like(fit, float("nan"))))
        evidence = torch.stack(fits, dim=1)
        evidence = torch.cat([evidence, self._choice_evidence(choices, hist_dense, evidence)], dim=1)
        reliability = evidence_reliability(torch.stack(counts, dim=1), length)
        if raw_evidence:
            return Experts(torch.stack(zs, dim=1), evidence, length, reliability)
        # no evidence (fewer than two history items with the modality): the population's weight
        return Experts(
            torch.stack(zs, dim=1),
            standardised_evidence(evidence, self._evidence_stats, reliability, float(self.config["evidence_clip"])),
            length,
        )

    def _with_projection(
        self, raw: torch.Tensor, history: sp.csr_matrix, h: torch.Tensor, modality: str, mask: torch.Tensor
    ) -> torch.Tensor:
        """The content expert's raw scores with the items outside behaviour ordered by the projection."""
        projection = self._projections[modality]
        mapped = history_times(history, h, projection[0], self._behaviour_items)  # h_A W_m
        return order_by_projection(raw, mapped, projection, fitted(self._outside_behaviour), mask)

    def _fit_projections(self) -> None:
        """Per content modality, the map that orders the items the behaviour expert does not score
        (:func:`~recsys.models.fusion.content.fit_projections`); none without a dense behaviour expert."""
        self._projections = {}
        ridge = float(self.config["projection_ridge"])
        outside = self._outside_behaviour
        assert outside is not None  # _behaviour_outside_mask() has run: fit's step 1 sets it just before
        if ridge <= 0 or not isinstance(self._behaviour, torch.Tensor) or not outside.any():
            return
        covered = (
            torch.arange(self.n_items, device=self.device) if self._behaviour_items is None else self._behaviour_items
        )
        self._projections = fit_projections(self._vectors, self._behaviour, covered, outside, ridge)

    def _choice_evidence(
        self, choices: list[torch.Tensor], history: torch.Tensor, coherence: torch.Tensor
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
        content = [m for m, modality in enumerate(self._modalities) if modality != "behaviour"]
        # only the rows whose coefficients are kept: a history with fewer than two items in every content
        # modality has NaN coherence there, and NaN coefficients (new users' one-item histories, the short
        # cloze histories)
        rows = torch.nonzero(~torch.isnan(coherence[:, content]).all(dim=1)).squeeze(1)
        if rows.numel() == 0:
            return out
        features = torch.stack([c[rows] for c in choices] + [fitted(self._popularity).expand(len(rows), -1)], dim=1)
        their_history = history[rows]
        chosen = their_history.float()  # [R, N]; features [R, K, N]
        columns = self._choice_set(their_history)
        if columns is not None:
            features, chosen = features[:, :, columns], chosen[:, columns]
        beta = choice_coefficients(features, chosen, float(self.config["choice_ridge"]))
        kept = coherence[rows][:, content]
        out[rows.unsqueeze(1), torch.as_tensor(content, device=out.device)] = torch.where(
            torch.isnan(kept), kept, beta[:, :-1]
        )
        return out

    def _choice_set(self, history: torch.Tensor) -> torch.Tensor | None:
        """The items the choice model's softmax runs over: every item up to ``choice_alternatives``; above, a
        fixed uniform sample of that many plus every item of the batch's histories (None = all).

        Sampling the alternatives keeps a conditional logit's coefficients consistent (McFadden's result for
        uniform sampling, which IIA makes exact up to a constant), and the Newton steps over [B, K, N] are
        the hot spot of scoring a 100k-item catalogue (memory-bound: each pass reads B x K x N floats)."""
        if self.n_items <= int(self.config["choice_alternatives"]):
            return None
        return torch.nonzero(self._sampled_alternatives(history.device) | history.any(0)).squeeze(1)

    def _sampled_alternatives(self, device: torch.device) -> torch.Tensor:
        """``[N]`` bool: the fixed uniform sample of ``_choice_set``, drawn once per model (it depends only on the
        seed and the catalogue size, so a loaded model draws the same)."""
        size = int(self.config["choice_alternatives"])
        key = (self.n_items, size, str(device))
        cached = getattr(self, "_alternatives_cache", None)
        if cached is None or cached[0] != key:
            sample = np.random.default_rng(int(self.config["seed"])).choice(self.n_items, size=size, replace=False)
            keep = torch.zeros(self.n_items, dtype=torch.bool, device=device)
            keep[torch.as_tensor(sample, device=device)] = True
            cached = (key, keep)
            self._alternatives_cache = cached
        return cached[1]

    def _fit_evidence_stats(
        self, train: sp.csr_matrix, keep: np.ndarray | None = None
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], Experts | None]:
        """Mean and spread of the evidence over users: the gate reads how much more a user's history
        coheres in a modality than other users' histories do. The same pass also returns the experts (raw
        evidence) of the ``keep`` users' histories, so that validation does not score them a second time."""
        self._evidence_stats = None
        users = np.flatnonzero(np.diff(train.indptr) >= 2)
        if len(users) > 5000:
            users = np.sort(np.random.default_rng(0).choice(users, 5000, replace=False))
        scored = users if keep is None else np.union1d(users, keep)
        kept_rows = np.zeros(len(scored), dtype=bool) if keep is None else np.isin(scored, keep)
        parts = []
        with torch.no_grad():
            for start in range(0, len(scored), 256):
                check("the gate's evidence")
                part = self._expert_z(train[scored[start : start + 256]], raw_evidence=True)
                # only the kept users' expert scores stay: [users, M, N] of the 5,000 statistics users would be
                # gigabytes on a large catalogue (the evidence is [users, 2M])
                mine = torch.as_tensor(kept_rows[start : start + 256], device=self.device)
                parts.append(Experts(part.z[mine], part.evidence, part.length[mine], part.reliability))
        if not parts:
            empty = torch.zeros(0, 2 * len(self._modalities), device=self.device)
            return (
                torch.zeros(empty.shape[1], device=self.device),
                torch.ones(empty.shape[1], device=self.device),
            ), None
        evidence = torch.cat([p.evidence for p in parts])
        raw = evidence[torch.as_tensor(np.isin(scored, users), device=self.device)]
        mean = torch.nan_to_num(torch.nanmean(raw, dim=0), nan=0.0)
        spread = torch.sqrt(torch.nan_to_num(torch.nanmean((raw - mean) ** 2, dim=0), nan=1.0)).clamp(min=1e-6)
        if keep is None:
            return (mean, spread), None
        # keep is sorted and unique (np.flatnonzero): the rows stored above are keep's, in its order
        assert np.array_equal(scored[kept_rows], keep)
        index = torch.as_tensor(np.searchsorted(scored, keep), device=self.device)
        reliability = torch.cat([fitted(p.reliability) for p in parts])
        kept = Experts(
            torch.cat([p.z for p in parts]), evidence[index], torch.cat([p.length for p in parts]), reliability[index]
        )
        return (mean, spread), kept

    def _behaviour_scores(self, history: sp.csr_matrix, h: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(self._behaviour, sp.spmatrix):  # sparse neighbours (huge catalogues)
            return torch.as_tensor(np.asarray((history @ self._behaviour).toarray(), np.float32), device=self.device)
        behaviour = self._behaviour
        # dense EASE weights (fit/load set them whenever behaviour is a modality; the sparse case returned above)
        assert isinstance(behaviour, torch.Tensor)
        history = binary_rows(history)
        h = torch.as_tensor(history.toarray(), device=self.device) if h is None else h
        if self._behaviour_items is None:
            return history_times(history, h, behaviour)
        scores = torch.zeros_like(h)
        scores[:, self._behaviour_items] = history_times(history, h, behaviour, self._behaviour_items)
        return scores
