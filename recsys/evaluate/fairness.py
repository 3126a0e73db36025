"""Fairness report of a trained run: who gets exposure, and whom the model serves well.

Computed on the run's **test** split, with the evaluator's protocol (same users, same masking: a user's
train items and valid items are never ranked; only users with a test item are evaluated). Nothing here
is computed on the interactions the model was fitted on, except where the training interactions are the
point of comparison (a group's share of the interactions, a user's history mix, popularity).

Item side, for one categorical or multi-label item column (a multi-label item with ``n`` labels counts
``1 / n`` for each, so shares add up to 1 over the groups; items without a label form ``(none)``):

* per group: share of the top-K exposure (every slot of every list counts one), share of the catalogue,
  share of the training interactions;
* Gini of the item exposure over the whole catalogue (0 = every item recommended equally often,
  ``(n - 1) / n`` = every slot holds the same item);
* popularity bias: mean popularity percentile (0 = least, 1 = most interacted item of the catalogue,
  ties share their average rank) of recommended items against that of the users' history items;
* calibration (Steck 2018): mean over users of KL(history group mix || list group mix), the list mix
  smoothed as ``(1 - a) q + a p`` with ``a = 0.01`` so the divergence stays finite.

User side: NDCG@K by history-length bucket (quartiles of the number of training interactions) and by a
categorical user column; the gap between the best and the worst group with a bootstrap 95 % interval
(users resampled with replacement within each group, fixed seed), so a gap is not read from noise.

:func:`fairness_arrays` holds the arithmetic on plain arrays (tested on hand-made cases);
:func:`run_rankings` rebuilds a run's test rankings and :func:`fairness_report` puts both together.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .metrics import ranking_metrics, topk_from_scores

__all__ = [
    "gini",
    "label_matrix",
    "group_shares",
    "popularity_percentile",
    "calibration_kl",
    "history_buckets",
    "group_gap",
    "exposure_sweep",
    "item_labels",
    "item_group_columns",
    "user_group_columns",
    "RunRankings",
    "run_rankings",
    "FairnessReport",
    "fairness_report",
    "fairness_arrays",
    "NONE_LABEL",
]

NONE_LABEL = "(none)"  # items without a value in the chosen column
UNKNOWN_USER = "(unknown)"  # users without a row / value in the users table
SMOOTHING = 0.01


# ----------------------------------------------------------------------------- metrics on plain arrays


def gini(values: Any) -> float:
    """Gini coefficient of non-negative ``values`` (e.g. how often each catalogue item was recommended).

    0 when all are equal; ``(n - 1) / n`` when one holds everything. NaN when they sum to 0.
    """
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n, total = len(x), x.sum()
    if n == 0 or total <= 0:
        return float("nan")
    ranks = np.arange(1, n + 1)
    return float(((2 * ranks - n - 1) * x).sum() / (n * total))


def label_matrix(
    values: Sequence[Any], multi_label: bool = False, separator: str = "|"
) -> tuple[sp.csr_matrix, list[str]]:
    """``(M [n_items, n_groups], group names)``: ``M[i, g]`` = the share of item i in group g (1 for a single
    value, ``1 / n`` for each of n labels, so every row sums to 1). Empty cells go to ``(none)``."""
    rows, cols, data = [], [], []
    names: dict[str, int] = {}
    for position, value in enumerate(values):
        text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value).strip()
        labels = [p.strip() for p in text.split(separator)] if multi_label and separator else [text]
        labels = list(dict.fromkeys(p for p in labels if p)) or [NONE_LABEL]
        for label in labels:
            rows.append(position)
            cols.append(names.setdefault(label, len(names)))
            data.append(1.0 / len(labels))
    ordered = sorted(names, key=lambda n: (n == NONE_LABEL, n))  # alphabetical, (none) last
    remap = np.array([ordered.index(n) for n in names], dtype=np.int64)
    matrix = sp.csr_matrix(
        (
            np.array(data),
            (np.array(rows, dtype=np.int64), remap[np.array(cols, dtype=np.int64)] if cols else np.zeros(0, np.int64)),
        ),
        shape=(len(values), len(ordered)),
    )
    return matrix, ordered


def group_shares(item_counts: Any, membership: sp.spmatrix) -> np.ndarray:
    """Each group's share of ``item_counts`` (exposure, interactions, or ones for the catalogue)."""
    counts = np.asarray(item_counts, dtype=np.float64).ravel()
    total = counts.sum()
    if total <= 0:
        return np.full(membership.shape[1], np.nan)
    return np.asarray(sp.csr_matrix(membership).T @ counts).ravel() / total


def popularity_percentile(popularity: Any) -> np.ndarray:
    """Each item's popularity percentile in [0, 1]: ``(average rank - 1) / (n - 1)`` (ties share a rank)."""
    from scipy.stats import rankdata

    pop = np.asarray(popularity, dtype=np.float64).ravel()
    if len(pop) < 2:
        return np.full(len(pop), 0.5)
    return (rankdata(pop, method="average") - 1.0) / (len(pop) - 1.0)


def calibration_kl(history_mix: Any, list_mix: Any, smoothing: float = SMOOTHING) -> np.ndarray:
    """Per row KL(p || (1 - a) q + a p) in nats, p = history mix, q = list mix (rows summing to 1)."""
    p = np.atleast_2d(np.asarray(history_mix, dtype=np.float64))
    q = np.atleast_2d(np.asarray(list_mix, dtype=np.float64))
    q = (1.0 - smoothing) * q + smoothing * p
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / q), 0.0)
    return terms.sum(axis=1)


def _mix(rows: sp.spmatrix, membership: sp.spmatrix) -> np.ndarray:
    """Group mix of each row's items (rows: users x items weights), rows summing to 1 (0 for empty rows)."""
    counts = np.asarray((sp.csr_matrix(rows) @ membership).todense(), dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def history_buckets(lengths: Any, n_buckets: int = 4) -> np.ndarray:
    """A label per user for its history length: ``n_buckets`` quantile bins (fewer when lengths repeat),
    named by their range, e.g. ``"5-11 items"``."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size == 0:
        return np.zeros(0, dtype=object)
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, n_buckets + 1)).round().astype(np.int64))
    # bucket b holds lengths in (edges[b-1], edges[b]]; the first also holds its lower edge
    bucket = np.clip(np.searchsorted(edges, lengths, side="left"), 1, max(len(edges) - 1, 1))
    labels = np.empty(len(lengths), dtype=object)
    for b in np.unique(bucket):
        inside = lengths[bucket == b]
        low, high = int(inside.min()), int(inside.max())
        labels[bucket == b] = f"{low} items" if low == high else f"{low}-{high} items"
    return labels


@dataclass
class GroupQuality:
    """One user group's mean NDCG@K with its bootstrap 95 % interval."""

    group: str
    n_users: int
    ndcg: float
    low: float
    high: float


@dataclass
class QualityGap:
    """NDCG@K per user group, and the best minus the worst group's mean with its bootstrap 95 % interval
    (the same two groups in every resample) and a permutation p-value. ``clear`` when the interval excludes 0
    *and* p < 0.05: the best and the worst of many groups are picked after the fact, so two groups of a
    dozen users each drawn from one distribution often have an interval that excludes 0; the permutation
    test asks how often groups of these sizes, dealt at random, spread as far."""

    by: str
    groups: list[GroupQuality]
    best: str | None = None
    worst: str | None = None
    gap: float = float("nan")
    gap_low: float = float("nan")
    gap_high: float = float("nan")
    n_boot: int = 0
    min_users: int = 1  # groups with fewer users are listed but left out of the gap
    p_value: float = float("nan")  # share of random relabellings whose best - worst gap is at least this one

    @property
    def separated(self) -> bool:
        """The bootstrap interval of the gap excludes 0."""
        return bool(np.isfinite(self.gap_low) and (self.gap_low > 0 or self.gap_high < 0))

    @property
    def clear(self) -> bool:
        return self.separated and bool(np.isfinite(self.p_value) and self.p_value < 0.05)

    @property
    def verdict(self) -> str:
        """One sentence that says which test decides, so an interval that excludes 0 next to "within the
        noise" never reads as a contradiction."""
        p = f"permutation p = {self.p_value:.3f}"
        if self.clear:
            return f"a clear gap: the interval excludes 0 and random groups of these sizes spread this far in {self.p_value:.1%} of deals ({p})"
        if self.separated:
            return (
                "not clear: the interval excludes 0, but these two groups were picked as the best and the "
                f"worst after the fact, and random groups of these sizes spread this far in {self.p_value:.0%} of "
                f"deals ({p}); a gap is called clear only when both tests agree"
            )
        if np.isfinite(self.p_value) and self.p_value < 0.05:
            return f"not clear: random groups rarely spread this far ({p}), but the interval includes 0"
        return f"within the noise: the interval includes 0 and random groups of these sizes often spread as far ({p})"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "clear": self.clear}


def group_gap(
    values: Any,
    groups: Sequence[Any] | np.ndarray,
    by: str = "group",
    n_boot: int = 500,
    seed: int = 2026,
    order: Sequence[str] | None = None,
    min_users: int = 1,
) -> QualityGap:
    """Mean of ``values`` per group (NaN values, e.g. users without a test item, are left out), the gap
    between the best and the worst group, and bootstrap 95 % intervals: users are resampled with
    replacement within each group (group sizes fixed), ``n_boot`` times with ``default_rng(seed)``.

    The gap is *signed* and between the groups that are best and worst on the observed data, so its
    interval is centred on the observed gap and can include 0 ("within the noise"), unlike the
    max - min of each resample, which is above 0 by construction. Groups of fewer than ``min_users`` users
    are listed but not candidates for the gap (one user's NDCG is no group's)."""
    values = np.asarray(values, dtype=np.float64)
    group_of = np.asarray([str(g) for g in groups], dtype=object)
    ok = ~np.isnan(values)
    values, group_of = values[ok], group_of[ok]
    names = [g for g in (order or sorted(set(group_of))) if (group_of == g).any()]
    rng = np.random.default_rng(seed)
    boot: dict[str, np.ndarray] = {}
    out: list[GroupQuality] = []
    for name in names:
        v = values[group_of == name]
        draws = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1) if n_boot else np.zeros(0)
        boot[name] = draws
        low, high = np.percentile(draws, [2.5, 97.5]) if n_boot else (np.nan, np.nan)
        out.append(GroupQuality(name, int(len(v)), float(v.mean()), float(low), float(high)))
    result = QualityGap(by=by, groups=out, n_boot=int(n_boot), min_users=int(min_users))
    big = [g for g in out if g.n_users >= min_users]
    if len(big) >= 2:
        best = max(big, key=lambda g: g.ndcg)
        worst = min(big, key=lambda g: g.ndcg)
        result.best, result.worst, result.gap = best.group, worst.group, best.ndcg - worst.ndcg
        if n_boot:
            diffs = boot[best.group] - boot[worst.group]
            result.gap_low, result.gap_high = (float(x) for x in np.percentile(diffs, [2.5, 97.5]))
            result.p_value = _permutation_p(values, group_of, [g.group for g in big], result.gap, n_boot, rng)
    return result


def _permutation_p(
    values: np.ndarray, groups: np.ndarray, names: list[str], gap: float, n_perm: int, rng: np.random.Generator
) -> float:
    """How often dealing the users of ``names`` into groups of the same sizes at random gives a best - worst
    spread of the means at least ``gap`` (with the +1 correction, never exactly 0)."""
    keep = np.isin(groups, names)
    v, g = values[keep], groups[keep]
    codes = np.searchsorted(np.asarray(sorted(names), dtype=object), g)
    sizes = np.bincount(codes, minlength=len(names)).astype(np.float64)
    hits = 0
    for _ in range(n_perm):
        means = np.bincount(codes, weights=rng.permutation(v), minlength=len(names)) / sizes
        hits += bool(means.max() - means.min() >= gap - 1e-12)
    return (hits + 1) / (n_perm + 1)


@dataclass
class GroupExposure:
    group: str
    items: int  # catalogue items carrying the group (any share of them)
    catalogue_share: float
    interaction_share: float
    exposure_share: float

    @property
    def exposure_ratio(self) -> float:
        """Exposure share / catalogue share: 1 = exposed in proportion to its place in the catalogue."""
        return self.exposure_share / self.catalogue_share if self.catalogue_share > 0 else float("nan")


def fairness_arrays(
    topk: np.ndarray, train: sp.spmatrix, membership: sp.spmatrix, group_names: Sequence[str], history_rows: np.ndarray
) -> dict[str, Any]:
    """The item-side figures from plain arrays.

    ``topk``: ``[n_users, K]`` item indices (``-1`` padding) of the evaluated users; ``train``: the
    training interactions ``[all users, n_items]``; ``history_rows``: the row of ``train`` of each topk
    row; ``membership``: :func:`label_matrix` over the catalogue.
    """
    train = sp.csr_matrix(train)
    n_items = train.shape[1]
    topk = np.asarray(topk, dtype=np.int64)
    slots = topk[topk >= 0]
    exposure = np.bincount(slots, minlength=n_items).astype(np.float64)
    popularity = np.asarray((train != 0).sum(axis=0)).ravel().astype(np.float64)
    membership = sp.csr_matrix(membership)
    catalogue = group_shares(np.ones(n_items), membership)
    interactions = group_shares(popularity, membership)
    exposed = group_shares(exposure, membership)
    items_in = np.asarray((membership > 0).sum(axis=0)).ravel()
    groups = [
        GroupExposure(str(name), int(items_in[g]), float(catalogue[g]), float(interactions[g]), float(exposed[g]))
        for g, name in enumerate(group_names)
    ]
    percentile = popularity_percentile(popularity)
    history = sp.csr_matrix(train[np.asarray(history_rows, dtype=np.int64)])
    history.data[:] = 1.0
    rec_pct = float(percentile[slots].mean()) if slots.size else float("nan")
    hist_pct = float(percentile[history.indices].mean()) if history.nnz else float("nan")
    rows = np.repeat(np.arange(len(topk)), topk.shape[1] if topk.ndim == 2 else 0)
    valid = topk.ravel() >= 0
    lists = sp.csr_matrix((np.ones(int(valid.sum())), (rows[valid], topk.ravel()[valid])), shape=(len(topk), n_items))
    p, q = _mix(history, membership), _mix(lists, membership)
    has_both = (p.sum(axis=1) > 0) & (q.sum(axis=1) > 0)
    kl = calibration_kl(p[has_both], q[has_both])
    return {
        "groups": groups,
        "gini": gini(exposure),
        "popularity": {"recommended": rec_pct, "history": hist_pct, "lift": rec_pct - hist_pct},
        "calibration_kl": float(kl.mean()) if kl.size else float("nan"),
        "items_recommended": int((exposure > 0).sum()),
    }


# ----------------------------------------------------------------------------- a run's test rankings


@dataclass
class RunRankings:
    """A run's top-K lists on its test split, and what the report needs around them."""

    run_id: str
    dataset: str
    model: str
    protocol: str
    k: int
    user_ids: np.ndarray  # all users of the split (rows of train)
    item_ids: np.ndarray  # the catalogue (columns)
    users: np.ndarray  # rows of the evaluated users (at least one test item)
    topk: np.ndarray  # [len(users), k]
    train: sp.csr_matrix
    test: sp.csr_matrix
    exclude: sp.csr_matrix  # valid items: masked at test time, as the evaluator does
    model_source: str  # "saved" (the run's model is the evaluated one) or "refit" (re-fitted on the train split)
    stored_ndcg: float | None = None  # the run's own test NDCG@k from metrics.json, for a cross-check
    recommender: Any = field(default=None, repr=False)  # the model that ranked (for re-ranking sweeps)

    @property
    def ndcg(self) -> np.ndarray:
        return ranking_metrics(self.topk, self.test[self.users], ks=(self.k,))[f"ndcg@{self.k}"]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def run_rankings(
    workspace: Any, run_id: str, k: int = 20, batch_size: int = 512, progress: Callable[[str], None] | None = None
) -> RunRankings:
    """Rebuild the test split of a run (its protocol, seed and k-core) and rank the catalogue for every test
    user with the model the evaluator scored: the run's saved model when it is that model, else (the saved
    one was refitted on every interaction, test included, for the app: ``final_model``) the same model
    refitted on the train split with the run's settings and seed. Masks as ``evaluate_ranking`` at test
    time: train items and valid items."""
    from ..models import Recommender, get_model
    from ..train.data import preflight, prepare_data, resolve_protocol
    from ..train.run import RunConfig, run_item_features

    say = progress or (lambda message: None)
    if k < 1:
        raise ValueError(f"k must be >= 1, not {k}")
    run_dir = workspace.run_path(run_id)
    stored = _read_json(run_dir / "config.json").get("config")
    if not isinstance(stored, dict):
        raise FileNotFoundError(f"no run '{run_id}' in {workspace.runs_dir}")
    config = RunConfig.from_dict(stored)
    metrics = _read_json(run_dir / "metrics.json")
    bundle = workspace.load_dataset(config.dataset)
    check = preflight(
        bundle.interactions,
        k_core=config.k_core,
        seed=config.seed,
        has_timestamp=bundle.schema.timestamp_column is not None,
        catalogue_items=len(bundle.items),
    )
    protocol = (metrics.get("split") or {}).get("protocol") or resolve_protocol(config.protocol, check)
    options: dict[str, Any] = {"k_core": config.k_core}
    if protocol == "kfold":  # the model kept before the final refit is the last fold's
        options = {"fold": config.folds - 1, "folds": config.folds, "k_core": check["protocols"]["kfold"]["k_core"]}
    saved = run_dir / "model"
    use_saved = (saved / "config.json").is_file() and "final_model" not in metrics and metrics.get("model")
    features = None
    if not use_saved and config.needs_content():
        say("extracting (or reading cached) item features")
        features = run_item_features(workspace, bundle, config)
    say(f"rebuilding the {protocol} split")
    prepared = prepare_data(
        bundle.interactions,
        protocol=protocol,
        seed=config.seed,
        rating_column=bundle.schema.rating_column,
        timestamp_column=bundle.schema.timestamp_column if protocol == "temporal" else None,
        item_features=features,
        catalogue_ids=bundle.items["item_id"].to_numpy(str),
        **options,
    )
    data = prepared.data
    model = None
    if use_saved:
        model = Recommender.load(saved)
        if not (
            model.user_ids is not None
            and model.item_ids is not None  # a loaded model has both
            and np.array_equal(model.user_ids, data.user_ids)
            and np.array_equal(model.item_ids, data.item_ids)
        ):
            model = None  # not the model of this split after all (the dataset changed): refit
    source = "saved"
    if model is None:
        say(f"refitting {config.model} on the train split (the run's saved model has seen the test items)")
        if config.needs_content() and features is None:
            raise RuntimeError("the run's saved model cannot be used and its features are missing")
        model = get_model(config.model, **config.model_options())
        model.fit(data)
        source = "refit"
    train, test = data.train.tocsr(), prepared.test.tocsr()
    exclude = prepared.valid.tocsr()
    mask = (train + exclude).tocsr()
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    say(f"ranking the catalogue for {len(users):,} test users")
    topk = np.full((len(users), k), -1, dtype=np.int64)
    for start in range(0, len(users), batch_size):
        rows = users[start : start + batch_size]
        topk[start : start + len(rows)] = topk_from_scores(
            np.asarray(model.score(rows), dtype=np.float64), k, exclude=mask[rows]
        )
    stored_ndcg = ((metrics.get("model") or {}).get("test") or {}).get(f"ndcg@{k}")
    return RunRankings(
        run_id=run_dir.name,
        dataset=config.dataset,
        model=config.model,
        protocol=protocol,
        k=k,
        user_ids=data.user_ids,
        item_ids=data.item_ids,
        users=users,
        topk=topk,
        train=train,
        test=test,
        exclude=exclude,
        model_source=source,
        stored_ndcg=float(stored_ndcg) if stored_ndcg is not None else None,
        recommender=model,
    )


# ----------------------------------------------------------------------------- the report


@dataclass
class FairnessReport:
    """Everything :func:`fairness_report` measured; ``to_dict()`` is what ``--json`` prints."""

    run_id: str
    dataset: str
    model: str
    protocol: str
    k: int
    item_column: str
    user_column: str | None
    n_users: int
    n_items: int
    ndcg: float  # mean NDCG@k over the evaluated users (the run's own test figure when the model is the same)
    stored_ndcg: float | None
    model_source: str
    groups: list[GroupExposure]
    gini: float
    popularity: dict[str, float]
    calibration_kl: float
    items_recommended: int
    user_groups: dict[str, QualityGap] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("groups", "user_groups")
        }
        out["groups"] = [{**dataclasses.asdict(g), "exposure_ratio": g.exposure_ratio} for g in self.groups]
        out["user_groups"] = {name: gap.to_dict() for name, gap in self.user_groups.items()}
        return out

    def table(self) -> str:
        """The report as plain text (the CLI prints it)."""
        lines = [
            f"run {self.run_id}: {self.model} on {self.dataset} ({self.protocol}), top-{self.k} for "
            f"{self.n_users:,} test users, model {self.model_source}",
            f"NDCG@{self.k} {self.ndcg:.4f}"
            + (f" (stored: {self.stored_ndcg:.4f})" if self.stored_ndcg is not None else ""),
            "",
            f"{self.item_column[:28]:<28} {'catalogue':>9} {'interact.':>9} {'exposure':>9} {'ratio':>6}",
        ]
        for g in sorted(self.groups, key=lambda g: -g.exposure_share):
            lines.append(
                f"{g.group[:28]:<28} {g.catalogue_share:>9.3f} {g.interaction_share:>9.3f} "
                f"{g.exposure_share:>9.3f} {g.exposure_ratio:>6.2f}"
            )
        pop = self.popularity
        lines += [
            "",
            f"Gini of item exposure {self.gini:.3f} ({self.items_recommended:,} of {self.n_items:,} items "
            "recommended at least once)",
            f"popularity percentile: recommended {pop['recommended']:.3f}, history {pop['history']:.3f} "
            f"(lift {pop['lift']:+.3f})",
            f"calibration: mean KL(history mix || list mix) {self.calibration_kl:.4f}",
        ]
        for gap in self.user_groups.values():
            lines += ["", f"NDCG@{self.k} by {gap.by}: {'users':>6} {'ndcg':>7}  95 % interval"]
            for q in gap.groups:
                lines.append(f"  {q.group[:30]:<30} {q.n_users:>6} {q.ndcg:>7.4f}  [{q.low:.4f}, {q.high:.4f}]")
            if gap.best is not None:
                verdict = gap.verdict
                if any(g.n_users < gap.min_users for g in gap.groups):
                    verdict += f"; groups of fewer than {gap.min_users} users left out"
                lines.append(
                    f"  gap {gap.best} - {gap.worst}: {gap.gap:+.4f} [{gap.gap_low:+.4f}, "
                    f"{gap.gap_high:+.4f}]: {verdict}"
                )
        return "\n".join(lines)


def item_labels(bundle: Any, item_ids: Sequence[str] | np.ndarray, column: str) -> tuple[sp.csr_matrix, list[str]]:
    """:func:`label_matrix` of ``column`` for ``item_ids`` (split on the bundle's separator when the schema
    says the column is multi-label). Only categorical and multi-label columns are groups."""
    from ..data.schema import CATEGORICAL, MULTI_LABEL

    role = bundle.schema.items.get(column)
    if column not in bundle.items.columns or role not in (CATEGORICAL, MULTI_LABEL):
        options = item_group_columns(bundle)
        raise ValueError(f"'{column}' is not a categorical item column; choose one of {', '.join(options) or 'none'}")
    items = bundle.items.drop_duplicates("item_id")
    by_id = pd.Series(items[column].to_numpy(), index=items["item_id"].astype(str).to_numpy())
    values = by_id.reindex(pd.Index(np.asarray(item_ids).astype(str))).tolist()
    return label_matrix(values, role == MULTI_LABEL, bundle.schema.multi_label_separator)


def item_group_columns(bundle: Any) -> list[str]:
    """Item columns that can group items (categorical or multi-label)."""
    from ..data.schema import CATEGORICAL, MULTI_LABEL

    return [c for c in bundle.schema.columns_with("items", CATEGORICAL, MULTI_LABEL) if c in bundle.items.columns]


# who the users are (age, gender, where they live): the groups a fairness report is first asked about, before
# the other categorical columns a customers export holds ("Accepts Email Marketing", a tag)
_USER_GROUP_FIRST = re.compile(
    r"(age|gender|sex|country|region|city|location|language|segment|tier|occupation|land|stadt|alter)", re.I
)


def who_they_are_first(columns: Sequence[str]) -> list[str]:
    """``columns`` with those naming who the users are (country, age, gender, city) first, in order otherwise."""
    return sorted(columns, key=lambda c: not _USER_GROUP_FIRST.search(str(c)))


def user_group_columns(bundle: Any) -> list[str]:
    """Categorical columns of the users table (none without one), those naming who the users are first."""
    from ..data.schema import CATEGORICAL

    if bundle.users is None:
        return []
    return who_they_are_first(
        [c for c in bundle.schema.columns_with("users", CATEGORICAL) if c in bundle.users.columns]
    )


def user_labels(bundle: Any, user_ids: Sequence[str], column: str) -> np.ndarray:
    if column not in user_group_columns(bundle):
        options = user_group_columns(bundle)
        raise ValueError(
            f"'{column}' is not a categorical user column; choose one of "
            f"{', '.join(options) or 'none (the dataset has no users table)'}"
        )
    users = bundle.users.drop_duplicates("user_id")
    values = users.set_index(users["user_id"].astype(str))[column]
    mapped = values.reindex(pd.Index(np.asarray(user_ids).astype(str)))
    return np.array(
        [
            UNKNOWN_USER
            if v is None or (isinstance(v, float) and np.isnan(v)) or not str(v).strip()
            else str(v).strip()
            for v in mapped.tolist()
        ],
        dtype=object,
    )


def fairness_report(
    rankings: RunRankings,
    bundle: Any,
    item_column: str,
    user_column: str | None = None,
    n_boot: int = 500,
    seed: int = 2026,
    n_buckets: int = 4,
    min_users: int = 5,
) -> FairnessReport:
    """The report of one run's rankings (:func:`run_rankings`) for ``item_column`` (and ``user_column``)."""
    membership, names = item_labels(bundle, rankings.item_ids, item_column)
    item_side = fairness_arrays(rankings.topk, rankings.train, membership, names, rankings.users)
    ndcg = rankings.ndcg
    lengths = np.diff(rankings.train.indptr)[rankings.users]
    buckets = history_buckets(lengths, n_buckets)
    order = sorted(set(buckets), key=lambda label: int(str(label).split()[0].split("-")[0]))
    user_groups = {
        "history_length": group_gap(ndcg, buckets, "history length (train items)", n_boot, seed, order, min_users)
    }
    if user_column:
        labels = user_labels(bundle, rankings.user_ids[rankings.users], user_column)
        user_groups[user_column] = group_gap(ndcg, labels, user_column, n_boot, seed, min_users=min_users)
    return FairnessReport(
        run_id=rankings.run_id,
        dataset=rankings.dataset,
        model=rankings.model,
        protocol=rankings.protocol,
        k=rankings.k,
        item_column=item_column,
        user_column=user_column,
        n_users=int(len(rankings.users)),
        n_items=int(len(rankings.item_ids)),
        ndcg=float(np.nanmean(ndcg)) if len(ndcg) else float("nan"),
        stored_ndcg=rankings.stored_ndcg,
        model_source=rankings.model_source,
        groups=item_side["groups"],
        gini=item_side["gini"],
        popularity=item_side["popularity"],
        calibration_kl=item_side["calibration_kl"],
        items_recommended=item_side["items_recommended"],
        user_groups=user_groups,
    )


def exposure_sweep(
    rankings: RunRankings,
    membership: np.ndarray,
    strengths: Sequence[float],
    target: float | None = None,
    batch_size: int = 512,
    carry: bool = True,
) -> list[dict[str, float]]:
    """For each strength: the group's exposure share in the re-ranked test lists (membership-weighted slots),
    the target, and NDCG@k, with the same masking as the rankings. ``target`` defaults to the group's
    catalogue share (the mean membership). With ``carry`` (the default) the users' lists are ranked one after
    the other with the leftover carried over (:class:`recsys.models.rerank.ExposureBalancer`), as batch
    export does; without it each list is balanced alone, as a single ``recommend`` is."""
    from ..models.rerank import ExposureBalancer, exposure_rerank

    membership = np.asarray(membership, dtype=np.float64)
    target = float(membership.mean()) if target is None else float(target)
    mask = (rankings.train + rankings.exclude).tocsr()
    lists = {s: np.full((len(rankings.users), rankings.k), -1, dtype=np.int64) for s in strengths}
    balancers = {s: ExposureBalancer(membership, target, s) for s in strengths}
    for start in range(0, len(rankings.users), batch_size):
        rows = rankings.users[start : start + batch_size]
        scores = np.asarray(rankings.recommender.score(rows), dtype=np.float64)
        scores[mask[rows].nonzero()] = -np.inf
        for r in range(len(rows)):
            for s in strengths:
                top = (
                    balancers[s].rerank(scores[r], rankings.k)
                    if carry
                    else exposure_rerank(scores[r], membership, rankings.k, target, s)
                )
                lists[s][start + r, : len(top)] = top
    out = []
    for s in strengths:
        top = lists[s]
        share = float(membership[top[top >= 0]].sum() / max((top >= 0).sum(), 1))
        ndcg = ranking_metrics(top, rankings.test[rankings.users], ks=(rankings.k,))[f"ndcg@{rankings.k}"]
        out.append(
            {
                "strength": float(s),
                "exposure_share": share,
                "target": target,
                f"ndcg@{rankings.k}": float(np.nanmean(ndcg)),
            }
        )
    return out
