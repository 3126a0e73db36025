"""Full-ranking evaluation (P1) over a user-batched scoring function.

``evaluate_ranking`` asks a model for scores of a batch of users over all items, masks
what must not be recommended (the user's train items, ``exclude`` items such as valid
items at test time, and, for cold-start evaluation, every item outside
``candidate_items``), takes the top K and averages the metrics of
:mod:`recsys.evaluate.metrics` over the users that have at least one test item.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..stopping import check
from .metrics import _metrics_from_hits, hit_matrix, topk_from_scores

__all__ = ["build_index", "interactions_to_csr", "evaluate_ranking", "per_user_metric", "summarise_folds"]

METRIC_NAMES = ("recall", "ndcg", "precision", "hit", "mrr")
SCORE_CELLS = 1 << 26  # users x items scored per evaluation batch at most (256 MB of float32)


def build_index(ids: Iterable[Any]) -> dict[Any, int]:
    """Map each distinct id to 0..n-1, in sorted order of the ids (first-seen order if they don't sort)."""
    values = ids if isinstance(ids, (pd.Series, pd.Index, np.ndarray)) else list(ids)
    uniq = pd.unique(pd.Series(values).to_numpy())
    try:
        uniq = np.sort(uniq)
    except TypeError:  # mixed, unorderable ids
        pass
    return {key.item() if isinstance(key, np.generic) else key: i for i, key in enumerate(uniq)}


def interactions_to_csr(
    df: pd.DataFrame,
    user_index: Mapping[Any, int],
    item_index: Mapping[Any, int],
    user_col: str = "user_id",
    item_col: str = "item_id",
    drop_unknown: bool = True,
) -> sp.csr_matrix:
    """Binary user x item matrix ``[len(user_index), len(item_index)]`` (float32, 1.0 per pair).

    Rows whose user or item is not in the index are dropped (``drop_unknown=True``) or
    raise ``KeyError``. Duplicate pairs count once.
    """
    users = df[user_col].map(user_index)
    items = df[item_col].map(item_index)
    known = users.notna().to_numpy() & items.notna().to_numpy()
    if not known.all() and not drop_unknown:
        bad = df.loc[~known, [user_col, item_col]].head(3).to_dict("records")
        raise KeyError(f"{int((~known).sum())} interactions have an unknown user or item, e.g. {bad}")
    rows = users.to_numpy()[known].astype(np.int64)
    cols = items.to_numpy()[known].astype(np.int64)
    mat = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(user_index), len(item_index)))
    mat.sum_duplicates()
    mat.data[:] = 1.0
    return mat


def _binary(mat: Any, shape: tuple[int, int], name: str) -> sp.csr_matrix:
    out = sp.csr_matrix(mat, copy=True)
    if out.shape != shape:
        raise ValueError(f"{name} has shape {out.shape}, expected {shape}")
    out.sum_duplicates()
    out.eliminate_zeros()
    out.data = np.ones_like(out.data, dtype=np.float32)
    return out


def _as_scores(raw: Any, n_rows: int, n_items: int) -> np.ndarray:
    torch = sys.modules.get("torch")  # a tensor can only exist if torch is already imported
    if torch is not None and isinstance(raw, torch.Tensor):
        raw = raw.detach().float().cpu().numpy()
    scores = np.asarray(raw)
    if scores.shape != (n_rows, n_items):
        raise ValueError(f"score_fn returned shape {scores.shape}, expected {(n_rows, n_items)}")
    return scores


def _relevant_and_masked(
    train: sp.spmatrix, test: sp.spmatrix, exclude: sp.spmatrix | None
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The binary test matrix and the items ranked out of the way (``train``, plus ``exclude``)."""
    test_m = sp.csr_matrix(test)
    shape = test_m.shape
    test_m = _binary(test_m, shape, "test")
    mask = _binary(train, shape, "train")
    if exclude is not None:
        mask = _binary(mask + _binary(exclude, shape, "exclude"), shape, "mask")
    return test_m, mask


def _bounded_batch(batch_size: int, n_items: int) -> int:
    """A batch's scores are [batch, n_items] floats (plus the masked copy top-k makes): at a million items
    1,024 users would be 4 GB a copy, so the batch shrinks to stay near SCORE_CELLS (same results)."""
    return max(1, min(batch_size, SCORE_CELLS // max(n_items, 1)))


def evaluate_ranking(
    score_fn: Callable[[np.ndarray], Any],
    train: sp.spmatrix,
    test: sp.spmatrix,
    exclude: sp.spmatrix | None = None,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
    candidate_items: np.ndarray | None = None,
) -> dict[str, float]:
    """Full-ranking evaluation, batched over users (the means of :func:`evaluate_ranking_by_user`)."""
    return evaluate_ranking_by_user(score_fn, train, test, exclude, ks, batch_size, candidate_items)[0]


def evaluate_ranking_by_user(
    score_fn: Callable[[np.ndarray], Any],
    train: sp.spmatrix,
    test: sp.spmatrix,
    exclude: sp.spmatrix | None = None,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
    candidate_items: np.ndarray | None = None,
    per_user: Sequence[str] = (),
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Full-ranking evaluation, batched over users; also each evaluated user's value (in user order) of the
    metrics named in ``per_user`` (e.g. ``"ndcg@20"``): what a paired comparison of two models needs.

    ``score_fn(user_indices) -> [len(user_indices), n_items]`` (numpy or torch) scores for
    rows of ``train``/``test``. For every user with at least one test item (among
    ``candidate_items`` when given), items are ranked after masking the user's ``train``
    items and ``exclude`` items (e.g. valid items at test time); with ``candidate_items``
    (cold-start) every other item is masked too and only test items among the candidates
    count as relevant.

    Returns means over evaluated users of ``recall@k``, ``ndcg@k``, ``precision@k``,
    ``hit@k``, ``mrr@k`` for each k in ``ks``, ``coverage@k`` (distinct items recommended
    in anyone's top k / number of rankable items: n_items, or len(candidate_items)) and
    ``n_users_evaluated``. With no user to evaluate the metrics are NaN.
    """
    test_m, mask = _relevant_and_masked(train, test, exclude)
    unknown = [key for key in per_user if key not in {f"{m}@{k}" for m in METRIC_NAMES for k in ks}]
    if unknown:
        raise ValueError(f"per_user names metrics that are not computed: {unknown}")
    kept: dict[str, list[np.ndarray]] = {key: [] for key in per_user}
    n_users, n_items = test_m.shape
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch_size = _bounded_batch(batch_size, n_items)
    max_k = max(ks)

    n_rankable = n_items
    non_candidate: np.ndarray | None = None
    if candidate_items is not None:
        cand = np.unique(np.asarray(candidate_items, dtype=np.int64))
        if cand.size and (cand[0] < 0 or cand[-1] >= n_items):
            raise ValueError(f"candidate_items must lie in [0, {n_items})")
        keep = np.zeros(n_items, dtype=bool)
        keep[cand] = True
        non_candidate = ~keep
        n_rankable = int(cand.size)
        test_m = _binary(test_m @ sp.diags(keep.astype(np.float32)), (n_users, n_items), "test")

    users = np.flatnonzero(np.diff(test_m.indptr) > 0)
    sums = {f"{m}@{k}": 0.0 for k in ks for m in METRIC_NAMES}
    counts = dict.fromkeys(sums, 0)
    seen = {k: np.zeros(n_items, dtype=bool) for k in ks}

    for start in range(0, users.size, batch_size):
        check("evaluation")  # a stopped run does not wait for the rest of the users
        batch = users[start : start + batch_size]
        scores = _as_scores(score_fn(batch), batch.size, n_items)
        if non_candidate is not None:
            scores = np.array(scores, dtype=np.result_type(scores.dtype, np.float32), copy=True)
            scores[:, non_candidate] = -np.inf
        topk = topk_from_scores(scores, max_k, exclude=mask[batch])
        hits, n_rel = hit_matrix(topk, test_m[batch])
        for k in ks:
            for name, values in _metrics_from_hits(hits, n_rel, k).items():
                if f"{name}@{k}" in kept:
                    kept[f"{name}@{k}"].append(np.asarray(values, dtype=np.float64))
                ok = ~np.isnan(values)
                sums[f"{name}@{k}"] += float(values[ok].sum())
                counts[f"{name}@{k}"] += int(ok.sum())
            items = topk[:, :k].ravel()
            seen[k][items[items >= 0]] = True

    out: dict[str, float] = {}
    for k in ks:
        for name in METRIC_NAMES:
            key = f"{name}@{k}"
            out[key] = sums[key] / counts[key] if counts[key] else float("nan")
        out[f"coverage@{k}"] = float(seen[k].sum() / n_rankable) if n_rankable else float("nan")
    out["n_users_evaluated"] = int(users.size)
    return out, {key: np.concatenate(parts) if parts else np.zeros(0) for key, parts in kept.items()}


def per_user_metric(
    score_fn: Callable[[np.ndarray], Any],
    train: sp.spmatrix,
    test: sp.spmatrix,
    metric: str = "ndcg",
    k: int = 20,
    exclude: sp.spmatrix | None = None,
    batch_size: int = 1024,
) -> np.ndarray:
    """``metric@k`` of every user with test items, in user order (the same ranking and masking as
    :func:`evaluate_ranking`, whose ``metric@k`` is this array's mean): what a paired comparison of two
    scorers on the same users needs."""
    test_m, mask = _relevant_and_masked(train, test, exclude)
    n_items = test_m.shape[1]
    users = np.flatnonzero(np.diff(test_m.indptr) > 0)
    batch_size = _bounded_batch(batch_size, n_items)
    parts = []
    for start in range(0, users.size, batch_size):
        check("evaluation")
        batch = users[start : start + batch_size]
        topk = topk_from_scores(_as_scores(score_fn(batch), batch.size, n_items), k, exclude=mask[batch])
        hits, n_rel = hit_matrix(topk, test_m[batch])
        parts.append(_metrics_from_hits(hits, n_rel, k)[metric])
    return np.concatenate(parts) if parts else np.zeros(0)


def paired_bootstrap(ours: np.ndarray, theirs: np.ndarray, resamples: int = 1000, seed: int = 2026) -> dict[str, Any]:
    """Two models' per-user values on the same users (the same order): the mean difference and ratio, with
    95 % percentile intervals from ``resamples`` bootstrap resamples of the users, the share of resamples in
    which ours is ahead, and whether the difference is clear (its interval excludes 0).

    One split's test users are a sample: on a few hundred users whose test is one item, a difference of
    5 % is within what another split would give, and the interval says so."""
    ours = np.asarray(ours, dtype=np.float64)
    theirs = np.asarray(theirs, dtype=np.float64)
    if ours.shape != theirs.shape:
        raise ValueError(f"the two models were evaluated on different users ({ours.shape} vs {theirs.shape})")
    kept = ~(np.isnan(ours) | np.isnan(theirs))
    ours, theirs = ours[kept], theirs[kept]
    n = len(ours)
    if n == 0:
        raise ValueError("no user has a value for both models")
    rng = np.random.default_rng(seed)
    sums_ours, sums_theirs = np.empty(resamples), np.empty(resamples)
    block = max(1, 4_000_000 // n)  # resample indices in blocks of ~4M: a million users stay in memory
    for start in range(0, resamples, block):
        draws = rng.integers(0, n, size=(min(block, resamples - start), n))
        sums_ours[start : start + len(draws)] = ours[draws].sum(axis=1)
        sums_theirs[start : start + len(draws)] = theirs[draws].sum(axis=1)
    differences = (sums_ours - sums_theirs) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = sums_ours / sums_theirs
    mean_ours, mean_theirs = float(ours.mean()), float(theirs.mean())
    low, high = (float(v) for v in np.percentile(differences, [2.5, 97.5]))
    finite = ratios[np.isfinite(ratios)]
    ratio_interval = [float(v) for v in np.percentile(finite, [2.5, 97.5])] if len(finite) else [float("nan")] * 2
    return {
        "users": int(n),
        "resamples": int(resamples),
        "ours": mean_ours,
        "theirs": mean_theirs,
        "mean_difference": mean_ours - mean_theirs,
        "interval_95": [low, high],
        "ratio": mean_ours / mean_theirs if mean_theirs > 0 else float("nan"),
        "ratio_interval_95": ratio_interval,
        "share_of_resamples_ahead": float((differences > 0).mean()),
        "clear_at_95": bool(low > 0 or high < 0),
    }


def summarise_folds(results: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each metric over folds (k-fold cross-validation).

    Returns ``{metric: {"mean": m, "std": s, "n": folds}}`` for every key found in any
    fold; NaN values are ignored; ``std`` is the sample standard deviation (ddof=1),
    0.0 for a single value.
    """
    keys: list[str] = []
    for res in results:
        keys.extend(k for k in res if k not in keys)
    out: dict[str, dict[str, float]] = {}
    for key in keys:
        vals = np.array([float(r[key]) for r in results if key in r], dtype=np.float64)
        vals = vals[~np.isnan(vals)]
        n = int(vals.size)
        out[key] = {
            "mean": float(vals.mean()) if n else float("nan"),
            "std": float(vals.std(ddof=1)) if n > 1 else (0.0 if n == 1 else float("nan")),
            "n": n,
        }
    return out
