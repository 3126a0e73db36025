"""Interaction filtering and splitting (evaluation protocol "P1" and friends).

Plain functions over ``pandas`` frames with at least ``user_id`` and ``item_id``
columns (``timestamp`` where a function says so). Every function returns new
frames with a fresh ``RangeIndex`` and all the input's columns; none of them
modifies its input.

P1 (see docs/ARCHITECTURE.md, "Evaluation protocols and metrics"): deduplicate (user, item) -> iterative 5-core ->
per-user random 80/10/10 split with seed 2026 (users with < 10 interactions:
1 valid, 1 test, rest train). ``prepare_p1`` chains the three.

Determinism: every random split orders each user's rows by a key that depends only on the seed, the
row's item and the user's whole set of items (a keyed 64-bit hash of the three); ties (duplicate rows)
keep their input order after a stable sort by (user_id, item_id). Nothing depends on the user's id or
on where the user sorts among the others, so renaming users (``import --pseudonymise``) or reordering the
input rows leaves every user's split unchanged. ``users_in_history_order`` gives the matching user order
for a model's rows, so a model trained on renamed users is the same model up to the renaming.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd

from ..stopping import check

__all__ = [
    "deduplicate",
    "k_core_filter",
    "p1_split",
    "temporal_leave_last_out",
    "cold_item_split",
    "kfold_user_split",
    "hold_out_valid",
    "prepare_p1",
    "leave_last_out",
    "users_in_history_order",
]

USER = "user_id"
ITEM = "item_id"
TIME = "timestamp"


def _check_columns(df: pd.DataFrame, *cols: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"interactions are missing column(s) {missing}; got {list(df.columns)}")


def _round_half_up(x: np.ndarray | float) -> np.ndarray:
    """Round half away from zero (for x >= 0), unlike numpy's round-half-to-even."""
    return np.floor(np.asarray(x, dtype=float) + 0.5).astype(np.int64)


_SEED_STEP = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 that spreads every input bit over the output."""
    x = np.asarray(x, dtype=np.uint64).copy()
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def _item_hashes(items: pd.Series) -> np.ndarray:
    """A 64-bit hash of each row's item id (blake2b of its text: the same on every machine and version)."""
    codes, uniques = pd.factorize(items.astype(str))
    table = np.fromiter(
        (int.from_bytes(hashlib.blake2b(str(u).encode(), digest_size=8).digest(), "little") for u in uniques),
        dtype=np.uint64,
        count=len(uniques),
    )
    return _mix64(table[codes])


def _history_fingerprints(base: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For rows sorted by user: each row's item hash, its user's fingerprint and its user's code (users in
    sorted order), and where each user's rows start. The fingerprint is the wrapping sum of the user's item
    hashes, so it names the user's set of items whatever the user is called."""
    item_hash = _item_hashes(base[ITEM])
    user_codes = pd.factorize(base[USER], sort=True)[0]
    starts = np.flatnonzero(np.r_[True, user_codes[1:] != user_codes[:-1]]) if len(base) else np.zeros(0, np.int64)
    if len(base) == 0:
        return item_hash, item_hash, user_codes, starts
    with np.errstate(over="ignore"):
        per_user = np.add.reduceat(item_hash, starts)
    return item_hash, per_user[user_codes], user_codes, starts


def users_in_history_order(df: pd.DataFrame) -> np.ndarray:
    """The distinct user ids ordered by their history's fingerprint (then by id, for equal histories).

    A model's user rows follow this order so that everything drawn per user row (the gate's cloze sample,
    its mini-batches) depends on what users did, not on their names: a pseudonymised import trains the
    same model. Users with the same set of items have identical rows, so their relative order is moot."""
    _check_columns(df, USER, ITEM)
    base = df[[USER, ITEM]].sort_values([USER, ITEM], kind="stable").reset_index(drop=True)
    _, fingerprint, _, starts = _history_fingerprints(base)
    users = base[USER].to_numpy()[starts]
    return users[np.lexsort((users.astype(str), fingerprint[starts]))]


def _shuffled_by_user(df: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Rows ordered by user (sorted), each user's rows in a seeded random order.

    Returns (frame, position of each row within its user's shuffled list, size of
    that user's list), all aligned row by row. The order within a user is keyed by the seed, the item and
    the user's set of items, never by the user's id (see the module's note).
    """
    base = df.sort_values([USER, ITEM], kind="stable").reset_index(drop=True)
    item_hash, fingerprint, user_codes, _ = _history_fingerprints(base)
    with np.errstate(over="ignore"):
        keys = _mix64(fingerprint ^ _mix64(item_hash ^ (np.uint64(int(seed) % 2**64) * _SEED_STEP)))
    order = np.lexsort((keys, user_codes))  # by user, then by random key (stable: duplicates keep their order)
    shuffled = base.iloc[order].reset_index(drop=True)
    codes = pd.Series(user_codes[order])
    position = codes.groupby(codes, sort=False).cumcount().to_numpy()
    sizes = codes.map(codes.value_counts()).to_numpy()
    return shuffled, position, sizes


# --------------------------------------------------------------------------- filtering
def deduplicate(interactions: pd.DataFrame) -> pd.DataFrame:
    """Keep one row per (user_id, item_id).

    With a ``timestamp`` column the row with the latest timestamp is kept (on a tie,
    the later row in input order); without one, the last row in input order. The kept
    rows keep all their columns and their relative input order; the index is reset.
    """
    _check_columns(interactions, USER, ITEM)
    base = interactions.reset_index(drop=True)
    # a missing timestamp counts as the earliest
    ordered = base.sort_values(TIME, kind="stable", na_position="first") if TIME in base.columns else base
    kept_rows = np.sort(ordered.drop_duplicates([USER, ITEM], keep="last").index.to_numpy())
    kept = base.loc[kept_rows]
    return kept.reset_index(drop=True)


def k_core_filter(df: pd.DataFrame, k: int = 5) -> pd.DataFrame:
    """Iteratively drop rows until every remaining user and item has >= ``k`` rows.

    Counts rows, so deduplicate first if duplicates must not count twice (P1 does).
    ``k <= 1`` returns a copy. The result may be empty.
    """
    _check_columns(df, USER, ITEM)
    out = df.reset_index(drop=True)
    if k <= 1:
        return out.copy()
    while len(out):
        check("the k-core filter")  # each round is seconds on millions of rows
        user_n = out[USER].map(out[USER].value_counts())
        item_n = out[ITEM].map(out[ITEM].value_counts())
        keep = (user_n >= k).to_numpy() & (item_n >= k).to_numpy()
        if keep.all():
            break
        out = out.loc[keep].reset_index(drop=True)
    return out


# --------------------------------------------------------------------------- splits
def p1_split(
    df: pd.DataFrame, seed: int = 2026, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, pd.DataFrame]:
    """Per-user random train/valid/test split (P1).

    For a user with n >= 10 rows: n_valid = max(1, round(n * ratios[1])) and
    n_test = max(1, round(n * ratios[2])) (round half up), train gets the rest.
    For 3 <= n < 10: exactly 1 valid, 1 test, rest train. Users with n == 2 get
    1 train + 1 test row and users with n == 1 stay in train (never reached after a
    5-core filter). Returns ``{'train', 'valid', 'test'}`` frames.
    """
    _check_columns(df, USER, ITEM)
    if len(ratios) != 3 or min(ratios) < 0 or not np.isclose(sum(ratios), 1.0):
        raise ValueError(f"ratios must be three non-negative numbers summing to 1, got {ratios}")
    shuffled, pos, n = _shuffled_by_user(df, seed)
    n_valid = np.maximum(1, _round_half_up(n * ratios[1]))
    n_test = np.maximum(1, _round_half_up(n * ratios[2]))
    small = n < 10
    n_valid = np.where(small, 1, n_valid)
    n_test = np.where(small, 1, n_test)
    n_valid = np.where(n < 3, 0, n_valid)
    n_test = np.where(n < 2, 0, n_test)
    is_test = pos < n_test
    is_valid = ~is_test & (pos < n_test + n_valid)
    is_train = ~is_test & ~is_valid
    return {
        "train": shuffled.loc[is_train].reset_index(drop=True),
        "valid": shuffled.loc[is_valid].reset_index(drop=True),
        "test": shuffled.loc[is_test].reset_index(drop=True),
    }


def temporal_leave_last_out(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per user: latest row (by ``timestamp``) -> test, second latest -> valid, rest -> train.

    Ties in timestamp are broken by item_id (the larger id counts as later). Users with
    fewer than 3 rows keep all of them in train.
    """
    _check_columns(df, USER, ITEM, TIME)
    ordered = df.sort_values([USER, TIME, ITEM], kind="stable").reset_index(drop=True)
    grp = ordered.groupby(USER, sort=False)
    from_end = (grp.cumcount(ascending=False)).to_numpy()  # 0 = latest
    n = grp[ITEM].transform("size").to_numpy()
    eligible = n >= 3
    is_test = eligible & (from_end == 0)
    is_valid = eligible & (from_end == 1)
    is_train = ~is_test & ~is_valid
    return {
        "train": ordered.loc[is_train].reset_index(drop=True),
        "valid": ordered.loc[is_valid].reset_index(drop=True),
        "test": ordered.loc[is_test].reset_index(drop=True),
    }


def leave_last_out(df: pd.DataFrame, seed: int = 2026, min_interactions: int = 3) -> dict[str, pd.DataFrame]:
    """The sparse protocol: per user with >= ``min_interactions`` rows, the last row -> test and the one
    before -> valid (by ``timestamp`` when the frame has one, else in a seeded random order); every
    other row, and every row of shorter histories, -> train. No item or user is filtered out."""
    _check_columns(df, USER, ITEM)
    if TIME in df.columns:
        ordered = df.sort_values([USER, TIME, ITEM], kind="stable").reset_index(drop=True)
        grp = ordered.groupby(USER, sort=False)
        from_end = grp.cumcount(ascending=False).to_numpy()
        n = grp[ITEM].transform("size").to_numpy()
    else:
        ordered, pos, n = _shuffled_by_user(df, seed)
        from_end = pos
    eligible = n >= max(2, int(min_interactions))
    is_test = eligible & (from_end == 0)
    is_valid = eligible & (n >= 3) & (from_end == 1)
    is_train = ~is_test & ~is_valid
    return {
        "train": ordered.loc[is_train].reset_index(drop=True),
        "valid": ordered.loc[is_valid].reset_index(drop=True),
        "test": ordered.loc[is_test].reset_index(drop=True),
    }


def cold_item_split(
    df: pd.DataFrame, seed: int = 2026, fraction: float = 0.1, min_interactions: int = 5
) -> dict[str, Any]:
    """Hold out a random ``fraction`` of items entirely from training (cold start).

    Items eligible for holding out are those with >= ``min_interactions`` rows; the
    number held out is round(fraction * n_eligible) (round half up), drawn with
    ``default_rng(seed)`` from the sorted eligible ids. Returns
    ``{'train': rows of the other (warm) items, 'cold_test': rows of the held-out items,
    'cold_items': sorted numpy array of the held-out item ids}``. Split ``train``
    further (e.g. ``p1_split``) if a validation set is needed. Note some users of
    ``cold_test`` may have no row in ``train``.
    """
    _check_columns(df, USER, ITEM)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    counts = df[ITEM].value_counts()
    eligible = np.sort(counts.index[counts.to_numpy() >= min_interactions].to_numpy())
    n_hold = int(_round_half_up(fraction * len(eligible)))
    rng = np.random.default_rng(seed)
    cold = np.sort(rng.choice(eligible, size=n_hold, replace=False)) if n_hold else eligible[:0]
    is_cold = df[ITEM].isin(cold).to_numpy()
    base = df.reset_index(drop=True)
    return {
        "train": base.loc[~is_cold].reset_index(drop=True),
        "cold_test": base.loc[is_cold].reset_index(drop=True),
        "cold_items": cold,
    }


def kfold_user_split(df: pd.DataFrame, k: int = 5, seed: int = 2026) -> list[dict[str, pd.DataFrame]]:
    """Per-user k-fold: each user's rows are shuffled and dealt round-robin to ``k`` folds.

    Returns ``k`` dicts ``{'train', 'test'}``; fold f tests on the rows dealt to f and
    trains on all other rows, so every row is in exactly one test fold. A user with
    fewer than ``k`` rows has no test rows in the last folds.
    """
    _check_columns(df, USER, ITEM)
    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    shuffled, pos, _ = _shuffled_by_user(df, seed)
    fold = pos % k
    return [
        {
            "train": shuffled.loc[fold != f].reset_index(drop=True),
            "test": shuffled.loc[fold == f].reset_index(drop=True),
        }
        for f in range(k)
    ]


def hold_out_valid(df: pd.DataFrame, share: float = 0.1, seed: int = 2026) -> dict[str, pd.DataFrame]:
    """A validation part carved out of a training part, per user: ``max(1, round(n * share))`` random rows
    of every user with 3 or more rows (k-fold training folds need one for early stopping and L2 choice)."""
    _check_columns(df, USER, ITEM)
    shuffled, pos, n = _shuffled_by_user(df, seed)
    n_valid = np.where(n >= 3, np.maximum(1, _round_half_up(n * share)), 0)
    is_valid = pos < n_valid
    return {
        "train": shuffled.loc[~is_valid].reset_index(drop=True),
        "valid": shuffled.loc[is_valid].reset_index(drop=True),
    }


def prepare_p1(interactions: pd.DataFrame, seed: int = 2026, k_core: int = 5) -> dict[str, Any]:
    """P1 preparation: deduplicate -> iterative k-core -> ``p1_split``.

    Returns ``{'train', 'valid', 'test'}`` frames plus ``'interactions'`` (the filtered
    frame before splitting) and its counts ``'n_users'``, ``'n_items'``,
    ``'n_interactions'``. On movielens-small-mm: 610 users, 3,650 items, 90,274 rows.
    """
    filtered = k_core_filter(deduplicate(interactions), k=k_core)
    out: dict[str, Any] = dict(p1_split(filtered, seed=seed))
    out["interactions"] = filtered
    out["n_users"] = int(filtered[USER].nunique())
    out["n_items"] = int(filtered[ITEM].nunique())
    out["n_interactions"] = int(len(filtered))
    return out
