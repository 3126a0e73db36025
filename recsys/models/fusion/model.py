"""The fusion recommender itself: fitting in named steps, scoring, explanations, save and load.

The experts come from :mod:`.experts` (via :class:`~.experts.ExpertScoring`), the mixture from
:mod:`.gate`, the cloze objective from :mod:`.losses`; see the package docstring for the model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from ... import distributed, stopping
from ...evaluate.selection import one_standard_error_choice
from ...stopping import check
from ..base import Recommender, TrainData
from ..config import MODALITIES, FusionConfig
from .content import ContentArrays, binary_rows
from .experts import Experts, ExpertScoring, fitted, legacy_choice_alternatives, standardised_evidence
from .gate import ExpertGate
from .losses import bpr_cloze_loss, cloze_batch, hide_items, softmax_cloze_loss
from .optimiser import GateAdam

# every option, its type, default and help: recsys.models.config.FusionConfig (self.config is its dict)
DEFAULTS: dict[str, Any] = FusionConfig().to_dict()


def stop_requested_any(callbacks: Sequence[Any]) -> bool:
    return stopping.requested() or any(getattr(callback, "stop_requested", False) for callback in callbacks)


# the fewest validation users the gate's rounds and the calibration choose on (when there are that many)
MIN_VALIDATION_USERS = 1000


def affine_scores(scorer: Any, parameter: torch.Tensor, key: Any = None) -> Any:
    """``at(rows, value)``: ``scorer(rows)`` with the scalar ``parameter`` set to ``value``, for a parameter the
    scores are affine in (the behaviour scale, the short-history boost). Each batch of rows is scored twice,
    at 0 and at 1, and kept; every value tried after that costs an add, not a re-mix of the experts. The
    parameter is left as it was. ``key(rows)``: what identifies a batch (default: the row indices)."""
    memo: dict[Any, tuple[np.ndarray, np.ndarray]] = {}

    def at(rows: Any, value: float) -> np.ndarray:
        key_of = key(rows) if key is not None else np.asarray(rows, dtype=np.int64).tobytes()
        if key_of not in memo:
            saved = parameter.clone()
            try:
                parameter.fill_(0.0)
                base = np.asarray(scorer(rows), dtype=np.float32)
                parameter.fill_(1.0)
                memo[key_of] = (base, np.asarray(scorer(rows), dtype=np.float32) - base)
            finally:
                parameter.copy_(saved)
        base, slope = memo[key_of]
        return base + np.float32(value) * slope

    return at


class FusionRecommender(ExpertScoring, Recommender):
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
        # the experts' attributes (their types: ExpertScoring's declarations)
        self.chosen_l2 = None
        self.l2_table = {}
        self._attribute_weights = {}  # attribute column -> weight, from the training histories
        self._modalities = []
        self._vectors = {}  # content modality -> [N, D] centred unit rows
        self._centres = {}  # content modality -> the catalogue mean it was centred on
        self._bases = {}  # content modality -> its principal directions [D, d], when it was reduced
        self._present = None  # [N, M] bool
        self._behaviour = None  # dense EASE B [A, A], or sparse neighbours
        self._behaviour_items = None  # the A items EASE covers (None: all)
        self._expert_memo: dict | None = None  # set only while calibration re-mixes the same histories
        self._popularity_z_all = None  # [N] z of log(1 + count) over all items
        self._popularity = None  # [N] z of log(1 + count), mean and sd of the warm items
        self._evidence_stats = None  # standardises the evidence
        self._outside_behaviour = None  # [N] items the behaviour expert does not score
        # content modality -> (weights [A, D], vectors of the items outside [D, O]): see _fit_projections
        self._projections = {}

    @classmethod
    def upgrade_saved_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        # choice_alternatives became an option (and is saved) after models had been saved without it
        if "choice_alternatives" not in config:
            config = {**config, "choice_alternatives": legacy_choice_alternatives(config)}
        if "evidence_clip" not in config:  # fitted before the clip: its gate read the evidence unclipped
            config = {**config, "evidence_clip": 0.0}
        return config

    # ------------------------------------------------------------------ capabilities
    @property
    def modalities(self) -> list[str]:
        return list(self._modalities)

    def explains_by_modality(self) -> bool:
        return self.gate is not None and self.config["fusion"] != "concat"

    def item_presence(self) -> np.ndarray:
        """``[n_items, M]`` bool: which modalities each item has (behaviour = seen in training)."""
        return fitted(self._present).cpu().numpy().astype(bool)

    def attribute_weights(self) -> dict[str, float]:
        return dict(self._attribute_weights)

    def _learned(self) -> dict[str, Any]:
        return {"attribute_weights": dict(self._attribute_weights)}

    def _restore_learned(self, learned: dict[str, Any]) -> None:
        weights = learned.get("attribute_weights")
        if isinstance(weights, dict):
            self._attribute_weights = {str(k): float(v) for k, v in weights.items() if isinstance(v, (int, float))}

    def popularity_tilt(self) -> dict[str, float]:
        """Per content modality, the learned slope of its per-item weight factor, ``exp(slope * z)``, against
        the item's standardised log popularity ``z`` (attention fusion; empty otherwise): above 0 the
        modality weighs more on often chosen items (and behaviour less), below 0 more on rarely chosen ones."""
        gate = fitted(self.gate)
        if self.config["fusion"] != "attention":
            return {}
        slopes = gate.item_popularity_weight.detach().cpu().numpy()
        return {m: float(slopes[i]) for i, m in enumerate(self.modalities) if m != "behaviour"}

    def user_modality_weights(self, users: Sequence[int | str] | np.ndarray | None = None) -> np.ndarray:
        """The gate ``[n, M]`` (rows sum to 1) for user rows or ids; what the scores actually use."""
        evidence, lengths = self.gate_evidence(users)
        with torch.no_grad():
            weights = fitted(self.gate).user_weights(
                torch.as_tensor(evidence, device=self.device), torch.as_tensor(lengths, device=self.device)
            )
        return weights.cpu().numpy()

    def gate_evidence(self, users: Sequence[int | str] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """What the gate reads for user rows: ``evidence [n, 2M]`` (per modality how coherent the history is,
        behaviour's the leave-one-out AUC; then the user's choice coefficient of each content expert;
        standardised over users, 0 = no evidence) and the history lengths ``[n]``."""
        # rows, or user ids as recommend() takes them ("U0001" raised int()'s ValueError)
        users = (
            np.arange(self.n_users)
            if users is None
            else np.asarray([self.user_index(u) for u in users] if _any_id(users) else users, dtype=np.int64)
        )
        evidence = np.empty((len(users), 2 * len(self._modalities)), np.float32)
        lengths = np.empty(len(users), np.float32)
        with torch.no_grad():
            for start in range(0, len(users), 256):
                rows = users[start : start + 256]
                experts = self._expert_z(binary_rows(fitted(self.seen)[rows]))
                evidence[start : start + len(rows)] = experts.evidence.cpu().numpy()
                lengths[start : start + len(rows)] = experts.length.cpu().numpy()
        return evidence, lengths

    def modality_vectors(self, modality: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(vectors [N, D], present [N], centre [D])`` of a content modality: the items' features centred on
        ``centre`` and L2-normalised (centre a query's raw features the same way to compare), or None."""
        if modality not in self._vectors:
            return None
        m = self._modalities.index(modality)
        vectors = self._vectors[modality]
        if modality in self._bases:  # reduced to principal directions: back in the features' own space
            vectors = vectors @ self._bases[modality].T
        return (
            vectors.cpu().numpy(),
            fitted(self._present)[:, m].cpu().numpy().astype(bool),
            self._centres[modality].cpu().numpy(),
        )

    def population_weights(self) -> np.ndarray:
        """The weights of a user with no history (the population's)."""
        with torch.no_grad():
            return fitted(self.gate).population().cpu().numpy()

    def item_embeddings(self) -> np.ndarray:
        """Items in the fused space: each modality's unit vectors scaled by the population's weight for it
        (behaviour: an SVD of the interactions), concatenated and L2-normalised."""
        from ..base import svd_item_vectors

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

    # ------------------------------------------------------------------ mixing
    def _mix(
        self,
        experts: Experts,
        with_parts: bool = False,
        items: torch.Tensor | None = None,
        present: torch.Tensor | None = None,
        hide_prior: torch.Tensor | None = None,
    ):
        """Scores (and, ``with_parts``, weights and shares) of ``items`` (default: all) for these users;
        ``hide_prior`` (bool per item) drops the popularity prior where behaviour is hidden."""
        mixer = fitted(self.gate)
        gate = mixer.user_weights(experts.evidence, experts.length)
        z = experts.z if items is None else experts.z[:, :, items]
        if present is None:
            all_present = fitted(self._present)
            present = all_present if items is None else all_present[items]
        popularity = None
        if self.config["popularity_prior"] and "behaviour" in self._modalities:
            all_popularity = fitted(self._popularity)
            popularity = all_popularity if items is None else all_popularity[items]
            if hide_prior is not None:
                popularity = popularity * (~hide_prior).to(popularity.dtype)
        popularity_z_all = fitted(self._popularity_z_all)
        item_popularity = popularity_z_all if items is None else popularity_z_all[items]
        return mixer.mix(
            z,
            present,
            gate,
            popularity,
            experts.length,
            item_popularity,
            bool(self.config["renormalise_missing"]),
            with_parts=with_parts,
        )

    # ------------------------------------------------------------------ fit
    def fit(
        self, data: TrainData, callbacks: Sequence[Any] = (), resume_state: dict[str, Any] | None = None
    ) -> FusionRecommender:
        from ...device import select_device

        started = time.perf_counter()
        self._remember(data)
        config = self.config
        torch.manual_seed(int(config["seed"]))
        rng = np.random.default_rng(int(config["seed"]))
        self.device = select_device(config["device"])
        train = binary_rows(data.train)
        check("the model's data")
        # check(): each of these steps takes minutes on a million interactions; a stop gives up the fit
        inverse = self._fit_experts(data, train, callbacks)
        has_valid = data.valid is not None and data.valid.nnz > 0
        # the validation users the gate's rounds and the calibration are scored on: all of them, or a fixed
        # random sample when their experts would not fit the budget (each round and each calibration value
        # then re-mixes cached experts instead of scoring every validation user again)
        valid = self._validation_sample(sp.csr_matrix(data.valid)) if has_valid else None
        valid_users = None if valid is None else np.flatnonzero(np.diff(valid.indptr) > 0)
        if valid_users is not None and not self._fits_budget(len(valid_users)):
            valid_users = None  # the minimum sample is scored as it goes (see _validation_scorer)
        cloze, valid_experts = self._prepare_gate(train, inverse, rng, callbacks, valid_users)
        del inverse
        # the validation users' experts, computed once: training and calibration only re-mix them
        valid_scores = self._validation_scorer(train, valid, valid_experts) if valid is not None else None
        best = self._train_gate(cloze, rng, train, valid, valid_scores, callbacks, resume_state)
        if best["state"] is not None:
            fitted(self.gate).load_state_dict(best["state"])
        if valid is not None and not stop_requested_any(callbacks):
            self._calibrate_on_valid(train, valid, valid_scores)
        self.history["best_epoch"] = best["epoch"]
        self.history["best_valid_ndcg@20"] = best["ndcg@20"]
        self.history["ease_l2"] = self.chosen_l2
        self.history["ease_l2_valid"] = {str(k): v for k, v in self.l2_table.items()}
        self.fit_seconds = time.perf_counter() - started
        return self

    def _fit_experts(self, data: TrainData, train: sp.csr_matrix, callbacks: Sequence[Any]) -> np.ndarray | None:
        """Step 1: the content vectors, the behaviour expert and the cold-item projections. Returns EASE's
        inverse (for the cloze sample's out-of-fold behaviour scores), or None."""
        self._prepare_items(ContentArrays.from_features(data.item_features, data.n_items), train)
        check("the content experts")
        inverse = self._fit_behaviour(train, data.valid, log=lambda message: self._stage(callbacks, message))
        check("the behaviour expert")
        self._outside_behaviour = self._behaviour_outside_mask(train)
        self._fit_projections()
        self._stage(callbacks, "experts ready")
        check("the experts")
        return inverse

    def _prepare_gate(
        self,
        train: sp.csr_matrix,
        inverse: np.ndarray | None,
        rng: np.random.Generator,
        callbacks: Sequence[Any],
        valid_users: np.ndarray | None = None,
    ) -> tuple[dict[str, Any], Experts | None]:
        """Step 2: a fresh gate, the evidence's standardisation and the cloze sample it learns from; also the
        ``valid_users``' experts (raw evidence), computed in the same pass as the standardisation."""
        self.gate = ExpertGate(len(self._modalities), self.config["fusion"], self._modalities[0] == "behaviour").to(
            self.device
        )
        self._evidence_stats, valid_experts = self._fit_evidence_stats(train, valid_users)
        check("the gate's evidence")
        cloze = self._cloze_tensors(train, inverse, rng)
        self._stage(callbacks, "cloze sample ready")
        check("the cloze sample")
        return cloze, valid_experts

    def _validation_sample(self, valid: sp.csr_matrix) -> sp.csr_matrix:
        """``valid`` itself, or its rows of a fixed random sample of its users (seeded): as many as the cloze
        budget holds, and at least ``MIN_VALIDATION_USERS``; the sample's size is recorded in the history."""
        users = np.flatnonzero(np.diff(valid.indptr) > 0)
        room = int(self.config["cloze_budget"]) // max(1, len(self._modalities) * self.n_items)
        # never fewer than MIN_VALIDATION_USERS: on a large sparse catalogue a few hundred users give an NDCG of
        # 0 in most rounds, and early stopping and calibration would choose on noise (those are then scored as
        # the rounds go instead of cached)
        size = int(min(len(users), max(room, MIN_VALIDATION_USERS)))
        self.history["validation_users"] = {"used": size, "of": int(len(users))}
        if size == len(users):
            return valid
        kept = np.zeros(valid.shape[0], bool)
        kept[np.random.default_rng(int(self.config["seed"])).choice(users, size=size, replace=False)] = True
        # row selection builds new arrays: the caller's matrix is left as it was
        return sp.csr_matrix(sp.diags(kept.astype(valid.dtype)) @ valid)

    def _fits_budget(self, users: int) -> bool:
        """Whether ``users`` x modalities x items floats fit the cloze budget (tensors kept for the fit)."""
        return users * len(self._modalities) * self.n_items <= int(self.config["cloze_budget"])

    def _train_gate(
        self,
        cloze: dict[str, Any],
        rng: np.random.Generator,
        train: sp.csr_matrix,
        valid: sp.csr_matrix | None,
        valid_scores: Any,
        callbacks: Sequence[Any],
        resume_state: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Step 3: rounds of cloze steps, each validated; stops after ``patience`` rounds without a better
        validation NDCG@20 (or on a stop). Returns the best round: its NDCG@20, epoch and gate state."""
        config = self.config
        gate = self.gate
        assert gate is not None  # made by _prepare_gate (step 2)
        optimiser = GateAdam(gate.parameters(), lr=float(config["lr"]))
        best: dict[str, Any] = {"ndcg@20": -1.0, "epoch": -1, "state": None}
        start_epoch = 0
        if resume_state is not None:
            gate.load_state_dict(resume_state["network"])
            optimiser.load_state_dict(resume_state["optimiser"])
            start_epoch = int(resume_state["epoch"]) + 1
            best = resume_state.get("best", best)
            self.history = resume_state.get("history", self.history)
        bad_epochs = 0
        for epoch in range(start_epoch, int(config["epochs"])):
            record, stop_requested = self._gate_round(cloze, rng, optimiser, epoch, callbacks)
            improved = False
            # a partial round is not validated: a stop must not wait for a full evaluation
            metrics = None
            if valid is not None and not stop_requested:
                metrics = self._validate_round(valid_scores, train, valid)
                metrics = distributed.broadcast_object(metrics)  # under torchrun: rank 0's decision, everywhere
                stop_requested = metrics is None
            if metrics is not None:
                record.update({f"valid_{k}": v for k, v in metrics.items() if k != "n_users_evaluated"})
                if metrics["ndcg@20"] > best["ndcg@20"] + 1e-5:
                    best = {"ndcg@20": metrics["ndcg@20"], "epoch": epoch, "state": self._gate_state()}
                    improved, bad_epochs = True, 0
                else:
                    bad_epochs += 1
            elif valid is None:
                best = {"ndcg@20": float("nan"), "epoch": epoch, "state": self._gate_state()}
                improved = True
            record["improved"] = improved
            self.history["epochs"].append(record)
            stop = bad_epochs >= int(config["patience"]) or stop_requested
            if self._end_round(callbacks, record, improved, optimiser, epoch, best):
                stop = True
            if stop:
                break
        return best

    def _gate_round(
        self,
        cloze: dict[str, Any],
        rng: np.random.Generator,
        optimiser: GateAdam,
        epoch: int,
        callbacks: Sequence[Any],
    ) -> tuple[dict[str, Any], bool]:
        """One round of ``steps_per_epoch`` Adam steps on the cloze loss; its record, and whether a stop
        was asked for (the round is then partial)."""
        steps = int(self.config["steps_per_epoch"])
        epoch_started, total = time.perf_counter(), 0.0
        stop_requested = False
        for step in range(steps):
            loss = self._cloze_loss(cloze, rng)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            # under torchrun: the gradients (and losses) of the ranks' slices summed, the stop decided together
            step_loss, stop_flag = distributed.sum_gradients(
                list(fitted(self.gate).parameters()), [float(loss.detach()), float(stop_requested_any(callbacks))]
            )
            optimiser.step()
            total += step_loss
            for callback in callbacks:
                if hasattr(callback, "on_step"):
                    callback.on_step(epoch=epoch, step=step + 1, steps=steps, loss=step_loss)
            if stop_flag:
                stop_requested = True
                break
        record: dict[str, Any] = {
            "epoch": epoch,
            "loss": total / max(step + 1, 1),
            "seconds": time.perf_counter() - epoch_started,
            "steps": step + 1,
            "partial": stop_requested,
        }
        return record, stop_requested

    @staticmethod
    def _validate_round(valid_scores: Any, train: sp.csr_matrix, valid: sp.csr_matrix) -> dict[str, float] | None:
        """Validation metrics of the current gate; None when a stop was asked for during the evaluation."""
        from ...evaluate import evaluate_ranking

        try:
            return evaluate_ranking(valid_scores, train, valid, ks=(10, 20))
        except stopping.StopRequested:  # keep the round unscored
            return None

    def _end_round(
        self,
        callbacks: Sequence[Any],
        record: dict[str, Any],
        improved: bool,
        optimiser: GateAdam,
        epoch: int,
        best: dict[str, Any],
    ) -> bool:
        """Tell the callbacks a round ended (with a way to checkpoint it); True if one asks to stop."""
        stop = False
        for callback in callbacks:
            if hasattr(callback, "on_epoch_end"):
                callback.on_epoch_end(
                    model=self,
                    record=record,
                    improved=improved,
                    resume_state=lambda: {
                        "network": fitted(self.gate).state_dict(),
                        "optimiser": optimiser.state_dict(),
                        "epoch": epoch,
                        "best": best,
                        "history": self.history,
                    },
                )
            if getattr(callback, "stop_requested", False):
                stop = True
        return stop

    @torch.no_grad()
    def adopt_calibration(self, other: FusionRecommender) -> None:
        """Take the validation-chosen calibration of ``other`` (a refit on all data has no validation)."""
        gate, other_gate = fitted(self.gate), fitted(other.gate)
        gate.behaviour_scale.copy_(other_gate.behaviour_scale)
        gate.short_history_boost.copy_(other_gate.short_history_boost)
        gate.popularity_floor.copy_(other_gate.popularity_floor)
        if "calibration" in other.history:
            self.history["calibration"] = {**other.history["calibration"], "adopted": True}

    @torch.no_grad()
    def _calibrate_on_valid(self, train: sp.csr_matrix, valid: sp.csr_matrix, scorer: Any = None) -> None:
        """Choose how sharp the behaviour expert's scores should be against the content experts' (a scale of
        its standardised scores) on validation NDCG@20, by the one-standard-error rule: of the scales whose
        mean is within one paired standard error of the best one's, the smallest change (closest to x1).
        A value that wins by less than the validation users' noise is not taken (on a large sparse catalogue
        with a sample of validation users, the plain maximum chose on noise). The users' weights are not
        touched: they stay what the evidence in each user's history says."""
        gate = fitted(self.gate)
        shifts = self.config["behaviour_scales"] if gate.has_behaviour and self.config["fusion"] != "concat" else [1.0]
        scorer = scorer or self.score
        best, table = self._choose_on_valid(
            gate.behaviour_scale, [float(s) for s in shifts], lambda scale: abs(math.log(scale)), scorer, train, valid
        )
        self.history["calibration"] = {
            "behaviour_scale": best,
            "valid_ndcg@20": table[best],
            "table": {f"behaviour x{k:g}": v for k, v in table.items()},
            "rule": "one standard error (paired, over validation users) from the best, smallest change",
        }
        if self.config["popularity_prior"] and gate.has_behaviour:
            self._calibrate_popularity_floor(train, valid, scorer)
            self._calibrate_short_histories(train, valid)

    @torch.no_grad()
    def _choose_on_valid(
        self,
        parameter: torch.Tensor,
        values: list[float],
        closeness: Any,
        scorer: Any,
        train: sp.csr_matrix,
        valid: sp.csr_matrix,
    ) -> tuple[float, dict[float, float]]:
        """Set the gate's scalar ``parameter`` to the value of ``values`` validation NDCG@20 picks by the
        one-standard-error rule (of the values within one paired standard error of the best mean, the one
        ``closeness`` ranks first); return it and each value's mean. The scores are affine in the parameter:
        two mixes per user, then an add per value tried (when they fit the budget; a large validation sample
        is re-scored per value instead)."""
        from ...evaluate import per_user_metric

        users = int((np.diff(valid.indptr) > 0).sum())
        at = affine_scores(scorer, parameter) if len(values) > 1 and self._fits_budget(users) else None
        per_user = {}
        for value in values:
            parameter.fill_(value)
            scores = scorer if at is None else (lambda rows, value=value: at(rows, value))
            per_user[value] = per_user_metric(scores, train, valid, "ndcg", 20)
        table = {value: float(np.nanmean(ndcg)) if len(ndcg) else 0.0 for value, ndcg in per_user.items()}
        best = one_standard_error_choice(per_user, table, closeness=closeness)
        parameter.fill_(best)
        return best, table

    @torch.no_grad()
    def _calibrate_popularity_floor(self, train: sp.csr_matrix, valid: sp.csr_matrix, scorer: Any) -> None:
        """How much popularity every user keeps, however long the history: validation NDCG@20 decides by the
        one-standard-error rule (the smallest floor within one paired standard error of the best), after the
        behaviour scale and before the short-history boost (which adds to it for 1-3 items)."""
        gate = fitted(self.gate)
        floors = [float(value) for value in self.config["popularity_floors"]]
        if len(floors) < 2:
            gate.popularity_floor.fill_(floors[0] if floors else 0.0)
            return
        best, table = self._choose_on_valid(gate.popularity_floor, floors, lambda floor: floor, scorer, train, valid)
        self.history["calibration"]["popularity_floor"] = best
        self.history["calibration"]["popularity_floor_valid_ndcg@20"] = {f"floor {f:g}": v for f, v in table.items()}

    @torch.no_grad()
    def _calibrate_short_histories(self, train: sp.csr_matrix, valid: sp.csr_matrix) -> None:
        """How much extra popularity a user known by one to three items gets: validation users are reduced
        to 1, 2, 3 random training items (the new-user path) and their NDCG@20 on their validation items
        decides, by the one-standard-error rule (the smallest boost within one paired standard error of the
        best). The term fades as (2 / (1 + n))^2, so long histories are not affected."""
        from ...explain.coldstart import evaluate_short_histories

        gate = fitted(self.gate)
        table, per_user = {}, {}
        self._expert_memo = {}  # the boost only changes the mix: each history's experts are computed once
        # and the scores are affine in the boost: two mixes per batch of histories, an add per boost
        at = affine_scores(
            self.score_histories,
            gate.short_history_boost,
            key=lambda histories: tuple(np.asarray(h, dtype=np.int64).tobytes() for h in histories),
        )
        try:
            for boost in self.config["short_history_boosts"]:
                # at() sets the boost while it scores: the gate is left as it was
                scorer = SimpleNamespace(score_histories=lambda histories, value=float(boost): at(histories, value))
                rows = evaluate_short_histories(
                    scorer, train, valid, lengths=(1, 2, 3), max_users=200, seed=1, ks=(), per_user_ndcg=20
                )
                # the mean over the three lengths' users (each length's mean NDCG@20, averaged)
                table[float(boost)] = float(np.mean([np.nanmean(r["per_user_ndcg"]) for r in rows]))
                per_user[float(boost)] = np.concatenate([r["per_user_ndcg"] for r in rows])
        finally:
            self._expert_memo = None
        # the same one-standard-error rule as the behaviour scale: the smallest boost within the noise of the best
        means = {boost: float(np.mean(values)) if len(values) else 0.0 for boost, values in per_user.items()}
        best = one_standard_error_choice(per_user, means, closeness=lambda boost: boost)
        gate.short_history_boost.fill_(best)
        self.history["calibration"]["short_history_boost"] = best
        self.history["calibration"]["short_history_valid_ndcg@20"] = {f"boost {b:g}": v for b, v in table.items()}

    def _validation_scorer(self, train: sp.csr_matrix, valid: sp.csr_matrix, raw: Experts | None = None) -> Any:
        """A score function for the validation users that computes the experts once: during training only
        the gate changes, so each round's validation is a re-mix, not a re-scoring (within a memory budget).
        ``raw``: those users' experts with raw evidence, when the evidence statistics' pass computed them."""
        users = np.flatnonzero(np.diff(sp.csr_matrix(valid).indptr) > 0)
        if not self._fits_budget(len(users)):
            return self.score
        if raw is not None:
            mean, std = fitted(self._evidence_stats)
            cached = Experts(
                raw.z,
                standardised_evidence(
                    raw.evidence, (mean, std), fitted(raw.reliability), float(self.config["evidence_clip"])
                ),
                raw.length,
            )
        else:
            with torch.no_grad():
                parts = []
                for start in range(0, len(users), 256):
                    check("the validation experts")
                    parts.append(self._expert_z(train[users[start : start + 256]]))
            cached = Experts(
                torch.cat([p.z for p in parts]),
                torch.cat([p.evidence for p in parts]),
                torch.cat([p.length for p in parts]),
            )
        position = np.full(train.shape[0], -1, np.int64)
        position[users] = np.arange(len(users))

        @torch.no_grad()
        def score(rows: np.ndarray) -> np.ndarray:
            rows = np.asarray(rows, dtype=np.int64)
            at = position[rows]
            if (at < 0).any():
                return self.score(rows)
            if len(at) and np.array_equal(at, np.arange(at[0], at[0] + len(at))):
                # consecutive cached users (the usual case: an evaluation batch holds them all): a view, not a
                # copy of [users, M, N] floats per round
                window = slice(int(at[0]), int(at[0]) + len(at))
                part = Experts(cached.z[window], cached.evidence[window], cached.length[window])
            else:
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
        return {k: v.detach().clone() for k, v in fitted(self.gate).state_dict().items()}

    # ------------------------------------------------------------------ cloze training data
    def _cloze_tensors(
        self, train: sp.csr_matrix, inverse: np.ndarray | None, rng: np.random.Generator
    ) -> dict[str, Any]:
        """Hide part of sampled users' histories; expert scores from the visible part (behaviour out-of-fold)."""
        from ..ease import ease_scores_without_rows

        config = self.config
        n_items = train.shape[1]
        lengths = np.diff(train.indptr)
        eligible = np.flatnonzero(lengths >= 2)
        if len(eligible) == 0:
            raise ValueError("no user has two or more training interactions: nothing to learn the gate from")
        budget = int(config["cloze_budget"]) // max(1, len(self._modalities) * n_items)
        size = int(min(len(eligible), int(config["gate_users"]), max(64, budget)))
        users, visible, hidden = hide_items(
            train, eligible, size, float(config["short_history_share"]), float(config["cloze_ratio"]), rng
        )
        behaviour_raw = None
        if inverse is not None:
            # EASE's inverse covers only the items with behaviour: the others score 0
            behaviour_np = np.zeros((size, n_items), np.float32)
            columns = np.arange(n_items) if self._behaviour_items is None else self._behaviour_items.cpu().numpy()
            fold = rng.permutation(size) % max(1, int(config["folds"]))
            fold_size = max(1, math.ceil(size / 600))  # keep each removed block small (m x m solves)
            for f in range(int(fold.max()) + 1):
                rows = np.flatnonzero(fold == f)
                for start in range(0, len(rows), math.ceil(len(rows) / fold_size)):
                    check("the cloze sample")
                    part = rows[start : start + math.ceil(len(rows) / fold_size)]
                    # remove these users' *whole* training rows, score their visible part
                    behaviour_np[np.ix_(part, columns)] = ease_scores_without_rows(
                        inverse, train[users[part]][:, columns], visible[part][:, columns]
                    )
            behaviour_raw = torch.as_tensor(behaviour_np, device=self.device)
        with torch.no_grad():  # in blocks of users (every expert is per user): a stop acts between blocks
            parts = []
            for start in range(0, size, 1024):
                check("the cloze sample")
                parts.append(
                    self._expert_z(
                        visible[start : start + 1024],
                        None if behaviour_raw is None else behaviour_raw[start : start + 1024],
                    )
                )
            experts = Experts(
                torch.cat([p.z for p in parts]),
                torch.cat([p.evidence for p in parts]),
                torch.cat([p.length for p in parts]),
            )
        return {
            "experts": experts,
            "visible": torch.as_tensor(visible.toarray() > 0, device=self.device),
            "hidden": torch.as_tensor(hidden.toarray(), device=self.device),
        }

    def _cloze_loss(self, cloze: dict[str, Any], rng: np.random.Generator) -> torch.Tensor:
        """The cloze loss on a random mini-batch of the cloze users (the pieces: :mod:`.losses`)."""
        gate = fitted(self.gate)
        experts = cloze["experts"]
        index = cloze_batch(experts.z.shape[0], int(self.config["cloze_batch"]), rng, self.device)
        # under torchrun this rank's slice of the batch, weighted by its share (the BPR loss draws from rng by
        # the batch's size, so it keeps the whole batch on every rank and a 1/world weight)
        whole, world = index.numel(), distributed.world_size()
        if world > 1 and self.config["loss"] != "bpr" and whole >= world:
            index = distributed.shard(index)
        weight = index.numel() / whole if index.numel() < whole else 1.0 / world
        part = Experts(experts.z[index], experts.evidence[index], experts.length[index])
        scores = self._mix(part) / torch.exp(gate.log_temperature)
        hidden = cloze["hidden"][index]
        if self.config["loss"] == "bpr":
            loss = bpr_cloze_loss(scores, hidden, rng)
        else:
            loss = softmax_cloze_loss(scores, hidden, cloze["visible"][index], bool(self.config["rank_weighted"]))
        # a ridge on the items' popularity slopes (item_gate's weights, attention's item factor)
        return weight * (loss + float(self.config["gate_l2"]) * gate.item_popularity_weight.pow(2).sum())

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def score(self, users: Sequence[int] | np.ndarray, batch_size: int = 256) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        out = np.empty((len(users), self.n_items), dtype=np.float32)
        for start in range(0, len(users), batch_size):
            rows = users[start : start + batch_size]
            out[start : start + len(rows)] = (
                self._mix(self._expert_z(binary_rows(fitted(self.seen)[rows]))).cpu().numpy()
            )
        return out

    @torch.no_grad()
    def score_history(self, items: Sequence[int], weights: Sequence[float] | None = None) -> np.ndarray:
        """Scores ``[n_items]`` for a user known only by ``items`` (a new user; no retraining).

        The history is a set: items with a positive weight are in it."""
        index = np.asarray(items, dtype=np.int64)
        if len(index) == 0:
            raise ValueError("a history needs at least one item")
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            index = index[w > 0] if (w > 0).any() else index
        return self._mix(self._expert_z(binary_rows(self._history_row(index)))).cpu().numpy()[0].astype(np.float64)

    def _history_row(self, items: Sequence[int] | np.ndarray) -> sp.csr_matrix:
        index = np.unique(np.asarray(items, dtype=np.int64))
        return sp.csr_matrix(
            (np.ones(len(index), np.float32), (np.zeros(len(index), np.int64), index)), shape=(1, self.n_items)
        )

    @torch.no_grad()
    def score_without_history(self, mixing_history: Sequence[int] | None = None) -> np.ndarray:
        """The popularity prior alone: every expert sees an empty history (all its scores 0), with the mixing
        (gate, confidence, popularity blend) of ``mixing_history`` if given, else of a one-item history."""
        empty = sp.csr_matrix((1, self.n_items), dtype=np.float32)
        experts = self._expert_z(empty)
        if mixing_history is not None and len(mixing_history):
            held = self._expert_z(binary_rows(self._history_row(mixing_history)))
        else:
            held = replace(experts, length=torch.ones_like(experts.length))
        experts = replace(experts, evidence=held.evidence, length=held.length)
        return self._mix(experts).cpu().numpy()[0].astype(np.float64)

    @torch.no_grad()
    def score_histories(
        self, histories: Sequence[Sequence[int]], mixing_history: Sequence[int] | None = None
    ) -> np.ndarray:
        """One batched pass for many histories (rows of the output), e.g. leave-one-out variants.

        ``mixing_history``: score every row with the user-level mixing this history gets (the gate's
        modality weights, the confidence in the history and the popularity blend, all of which move with
        the history's length), so that only the experts see the rows' own items."""
        held = None
        if mixing_history is not None:
            held = self._expert_z(binary_rows(self._history_row(mixing_history)))
        rows, cols = [], []
        for r, items in enumerate(histories):
            unique = np.unique(np.asarray(items, dtype=np.int64))
            rows += [r] * len(unique)
            cols += unique.tolist()
        matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(histories), self.n_items))
        out = np.empty((len(histories), self.n_items), np.float64)
        memo = self._expert_memo
        for start in range(0, len(histories), 256):
            chunk = matrix[start : start + 256]
            if memo is None:
                experts = self._expert_z(chunk)
            else:  # calibration re-mixes the same histories under several settings: experts once
                key = (chunk.shape, chunk.indptr.tobytes(), chunk.indices.tobytes())
                experts = memo[key] if key in memo else memo.setdefault(key, self._expert_z(chunk))
            if held is not None:
                size = experts.z.shape[0]
                experts = replace(experts, evidence=held.evidence.expand(size, -1), length=held.length.expand(size))
            out[start : start + 256] = self._mix(experts).cpu().numpy()
        return out

    @torch.no_grad()
    def explain_scores(
        self, user: int | str | None, items: Sequence[int | str], history: Sequence[int] | np.ndarray | None = None
    ) -> dict[str, Any]:
        """Per-item modality weights and additive shares for (user, items); shares sum to the score.
        ``history`` (item indices): for a new user known only by these items instead (``user`` ignored)."""
        index = np.array([self.item_index(i) for i in items], dtype=np.int64)
        gate, item_ids = fitted(self.gate), fitted(self.item_ids)
        if history is not None:
            experts = self._expert_z(binary_rows(self._history_row(history)))
        else:
            assert user is not None, "explain_scores needs a user or a history"
            experts = self._expert_z(binary_rows(fitted(self.seen)[[self.user_index(user)]]))
        items_t = torch.as_tensor(index, device=self.device)
        scores, weights, shares = self._mix(experts, with_parts=True, items=items_t)
        out = {
            "modalities": self.modalities,
            "items": [str(item_ids[i]) for i in index],
            "score": scores[0].cpu().numpy(),
            "present": fitted(self._present)[items_t].cpu().numpy(),
            "user_weights": gate.user_weights(experts.evidence, experts.length)[0].cpu().numpy(),
            "attention": None,
            "shares": None,
        }
        if weights is not None:
            out["attention"] = weights[0].cpu().numpy()
            out["shares"] = shares[0].cpu().numpy()
            if self.config["popularity_prior"] and "behaviour" in self._modalities:
                prior = gate.popularity_weight(experts.length) * fitted(self._popularity)[items_t]
                out["popularity_share"] = prior.cpu().numpy()
        return out

    @torch.no_grad()
    def masked_scores(self, user: int, items: Sequence[int], masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores of ``items`` as they are and with the modalities in ``masks [k, M]`` hidden (the item
        re-mixed over the rest). Hiding behaviour hides the popularity prior too (it is behaviour)."""
        index = torch.as_tensor(np.asarray(items, dtype=np.int64), device=self.device)
        experts = self._expert_z(binary_rows(fitted(self.seen)[[int(user)]]))
        present = fitted(self._present)[index]
        base = self._mix(experts, items=index)[0]
        hide = torch.as_tensor(np.asarray(masks, dtype=bool), device=self.device)
        hide_prior = hide[:, self._modalities.index("behaviour")] if "behaviour" in self._modalities else None
        masked = self._mix(experts, items=index, present=present & ~hide, hide_prior=hide_prior)[0]
        return base.float().cpu().numpy(), masked.float().cpu().numpy()

    def attention_matrix(self, users: Sequence[int], items: Sequence[int] | None = None) -> np.ndarray:
        """Per-item modality weights ``[len(users), len(items), M]`` (0 where an item lacks a modality): the
        ``w[u, i, m]`` the scores are mixed with (:meth:`ExpertGate.item_weights`, the same call as scoring),
        so the Attention page shows what ranked each item, item-level modulation included."""
        index = torch.as_tensor(
            np.arange(self.n_items) if items is None else np.asarray(items, dtype=np.int64), device=self.device
        )
        rows = np.asarray(users, dtype=np.int64)
        mixer = fitted(self.gate)
        gate = torch.as_tensor(self.user_modality_weights(rows), device=self.device, dtype=torch.float32)
        presence = fitted(self._present)[index].T.unsqueeze(0).float()  # [1, M, k]
        renormalise = bool(self.config["renormalise_missing"])
        if mixer.fusion == "concat":  # no weights in the score: the gate spread over what each item has
            weights = gate.unsqueeze(2) * presence
            if renormalise:
                weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-12)
        else:
            weights = mixer.item_weights(presence, gate, fitted(self._popularity_z_all)[index], renormalise)
        return weights.detach().expand(len(rows), -1, -1).transpose(1, 2).float().cpu().numpy()

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, np.ndarray]:
        state = {f"gate.{k}": v.detach().float().cpu().numpy() for k, v in fitted(self.gate).state_dict().items()}
        for modality, vectors in self._vectors.items():
            state[f"vectors.{modality}"] = vectors.cpu().numpy()
            state[f"centre.{modality}"] = self._centres[modality].cpu().numpy()
            if modality in self._bases:
                state[f"basis.{modality}"] = self._bases[modality].cpu().numpy()
        state["present"] = fitted(self._present).cpu().numpy().astype(np.uint8)
        state["popularity"] = fitted(self._popularity).cpu().numpy()
        state["popularity_all"] = fitted(self._popularity_z_all).cpu().numpy()
        state["evidence_stats"] = torch.stack(fitted(self._evidence_stats)).cpu().numpy()
        # the outside items' vectors beside each map are a transposed copy of the modality's vectors: rebuilt
        # on load (a fifth of a movielens model's 171 MB), not saved
        for modality, (weights, _) in self._projections.items():
            state[f"projection.{modality}"] = weights.cpu().numpy()
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
        from ...device import select_device

        self.device = select_device(self.config.get("device", "auto"))
        present = state["present"].astype(bool)
        self._modalities = [
            m for m in MODALITIES if m in self.config["modalities"] and (m == "behaviour" or f"vectors.{m}" in state)
        ]
        self._present = torch.as_tensor(present, device=self.device)
        self._vectors = {
            m: torch.as_tensor(state[f"vectors.{m}"], device=self.device) for m in self._modalities if m != "behaviour"
        }
        self._centres = {m: torch.as_tensor(state[f"centre.{m}"], device=self.device) for m in self._vectors}
        self._bases = {
            m: torch.as_tensor(state[f"basis.{m}"], device=self.device) for m in self._vectors if f"basis.{m}" in state
        }
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
            n = len(fitted(self.item_ids))  # load() restores the ids before the state
            self._behaviour = sp.csr_matrix(
                (state["behaviour.data"], state["behaviour.indices"], state["behaviour.indptr"]), shape=(n, n)
            )
        self._outside_behaviour = self._behaviour_outside_mask()
        outside = fitted(self._outside_behaviour)
        self._projections = {
            m: (
                torch.as_tensor(state[f"projection.{m}"], device=self.device),
                # a model saved before they were rebuilt carries them
                torch.as_tensor(state[f"projection_vectors.{m}"], device=self.device)
                if f"projection_vectors.{m}" in state
                else self._vectors[m][outside].T.contiguous(),
            )
            for m in self._vectors
            if f"projection.{m}" in state
        }
        self.gate = ExpertGate(len(self._modalities), self.config["fusion"], self._modalities[0] == "behaviour").to(
            self.device
        )
        gate_state = {k[len("gate.") :]: torch.from_numpy(v.copy()) for k, v in state.items() if k.startswith("gate.")}
        # a model saved before the popularity floor existed had none (0 keeps its scores as they were)
        gate_state.setdefault("popularity_floor", torch.tensor(0.0))
        self.gate.load_state_dict(gate_state)


def _any_id(users: Any) -> bool:
    """Whether ``users`` holds a user id (a string) rather than only row numbers."""
    return any(isinstance(u, str | np.str_) for u in (users.tolist() if isinstance(users, np.ndarray) else users))
