"""Filtering and splitting (protocol P1), on small frames and on real MovieLens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.evaluate.split import (
    cold_item_split,
    deduplicate,
    k_core_filter,
    kfold_user_split,
    p1_split,
    prepare_p1,
    temporal_leave_last_out,
    users_in_history_order,
)

# the `shared` folder beside the repository root
DATASETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"
MOVIELENS = DATASETS / "movielens-small-mm" / "interactions.csv"


def pairs(df: pd.DataFrame) -> set[tuple]:
    return set(zip(df["user_id"], df["item_id"]))


def synthetic(seed: int = 0, n_users: int = 40, n_items: int = 60) -> pd.DataFrame:
    """Users with 1..30 distinct items each, timestamps, ratings."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        n = int(rng.integers(1, 31))
        for i in rng.choice(n_items, size=n, replace=False):
            rows.append((u, int(i), float(rng.integers(1, 6)), int(rng.integers(0, 10_000))))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


@pytest.fixture(scope="module")
def movielens_interactions() -> pd.DataFrame:
    if not MOVIELENS.is_file():
        pytest.skip(f"MovieLens bundle not found at {MOVIELENS.resolve()} (shared datasets folder absent)")
    return pd.read_csv(MOVIELENS)


# --------------------------------------------------------------------------- dedup / k-core
def test_deduplicate_keeps_latest_row_with_its_columns():
    df = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2],
            "item_id": [7, 7, 8, 7],
            "rating": [1.0, 5.0, 3.0, 2.0],
            "timestamp": [300, 100, 200, 50],
        }
    )
    out = deduplicate(df)
    assert len(out) == 3
    # (1, 7): timestamps 300 (rating 1) and 100 (rating 5) -> keep 300 with rating 1
    row = out[(out.user_id == 1) & (out.item_id == 7)].iloc[0]
    assert (row.rating, row.timestamp) == (1.0, 300)
    assert list(out.columns) == list(df.columns)


def test_deduplicate_without_timestamp_keeps_last_row():
    df = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [7, 7, 7], "rating": [1.0, 4.0, 2.0]})
    out = deduplicate(df)
    assert out.to_dict("list") == {"user_id": [1, 2], "item_id": [7, 7], "rating": [4.0, 2.0]}


def test_k_core_is_iterative():
    # k = 2: item c has 1 row -> (3, c) goes; then user 3 has 1 row -> (3, a) goes too.
    # A single pass would have kept (3, a).
    df = pd.DataFrame({"user_id": [1, 1, 2, 2, 3, 3], "item_id": ["a", "b", "a", "b", "a", "c"]})
    out = k_core_filter(df, k=2)
    assert pairs(out) == {(1, "a"), (1, "b"), (2, "a"), (2, "b")}


def test_k_core_property_holds():
    df = deduplicate(synthetic(1))
    out = k_core_filter(df, k=5)
    assert len(out) > 0
    assert out.groupby("user_id").size().min() >= 5
    assert out.groupby("item_id").size().min() >= 5
    assert pairs(out) <= pairs(df)


# --------------------------------------------------------------------------- P1 split
def test_p1_split_counts_per_user():
    # users with n rows: n < 10 -> 1/1/rest; n >= 10 -> round(0.1 n) valid and test (half up)
    sizes = {0: 3, 1: 5, 2: 9, 3: 10, 4: 15, 5: 24, 6: 25, 7: 100}
    df = pd.DataFrame([(u, i) for u, n in sizes.items() for i in range(n)], columns=["user_id", "item_id"])
    sp = p1_split(df, seed=2026)
    expected = {  # (train, valid, test)
        0: (1, 1, 1),
        1: (3, 1, 1),
        2: (7, 1, 1),
        3: (8, 1, 1),  # 10 * 0.1 = 1
        4: (11, 2, 2),  # 1.5 -> 2
        5: (20, 2, 2),  # 2.4 -> 2
        6: (19, 3, 3),  # 2.5 -> 3
        7: (80, 10, 10),
    }
    for u, (n_tr, n_va, n_te) in expected.items():
        got = tuple(int((sp[part].user_id == u).sum()) for part in ("train", "valid", "test"))
        assert got == (n_tr, n_va, n_te), u


def test_p1_split_tiny_users():
    # 2 rows: 1 train + 1 test; 1 row: train only
    df = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 1]})
    sp = p1_split(df)
    assert len(sp["valid"]) == 0
    assert sp["test"].user_id.tolist() == [1]
    assert sorted(sp["train"].user_id.tolist()) == [1, 2]


def test_p1_split_partitions_without_overlap():
    df = deduplicate(synthetic(2))
    sp = p1_split(df)
    tr, va, te = (pairs(sp[p]) for p in ("train", "valid", "test"))
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert tr | va | te == pairs(df)
    assert sum(len(sp[p]) for p in sp) == len(df)
    assert list(sp["train"].columns) == list(df.columns)


def test_p1_split_is_deterministic_and_order_independent():
    df = deduplicate(synthetic(3))
    a = p1_split(df, seed=2026)
    b = p1_split(df.sample(frac=1.0, random_state=9), seed=2026)  # shuffled input rows
    c = p1_split(df, seed=7)
    for part in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(a[part], b[part])
    assert pairs(a["test"]) != pairs(c["test"])


def test_renamed_users_get_the_same_split_and_the_same_row_order():
    """What a user's rows are split into, and where the user sits among a model's rows, follows from what
    the user did: renaming users (a pseudonymised import) changes neither, though it changes their sort order."""
    df = deduplicate(synthetic(5, n_users=60))
    rng = np.random.default_rng(1)
    new_names = dict(zip(range(60), (f"u_{x:016x}" for x in rng.integers(0, 2**62, 60))))
    renamed = df.assign(user_id=df["user_id"].map(new_names))
    assert sorted(new_names, key=new_names.get) != sorted(new_names)  # the renaming reorders the users
    for seed in (2026, 7):
        a, b = p1_split(df, seed=seed), p1_split(renamed, seed=seed)
        for part in ("train", "valid", "test"):
            assert {(new_names[u], i) for u, i in pairs(a[part])} == pairs(b[part]), (seed, part)
    folds_a, folds_b = kfold_user_split(df, k=3), kfold_user_split(renamed, k=3)
    for fa, fb in zip(folds_a, folds_b):
        assert {(new_names[u], i) for u, i in pairs(fa["test"])} == pairs(fb["test"])
    order = users_in_history_order(df)
    assert [new_names[u] for u in order] == list(users_in_history_order(renamed))
    assert sorted(order) == sorted(df["user_id"].unique())
    # the within-user order still varies between users: the same item is not always held out first
    held_first = p1_split(df, seed=2026)["test"]
    assert held_first["item_id"].nunique() > 20


# --------------------------------------------------------------------------- other splits
def test_temporal_leave_last_out():
    df = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2, 2],
            "item_id": [10, 11, 12, 13, 10, 11],
            "timestamp": [4, 1, 3, 2, 5, 6],
        }
    )
    sp = temporal_leave_last_out(df)
    # user 1 by time: 11 (1), 13 (2), 12 (3), 10 (4) -> test 10, valid 12, train {11, 13}
    # user 2 has 2 rows (< 3) -> all train
    assert pairs(sp["test"]) == {(1, 10)}
    assert pairs(sp["valid"]) == {(1, 12)}
    assert pairs(sp["train"]) == {(1, 11), (1, 13), (2, 10), (2, 11)}


def test_cold_item_split():
    df = deduplicate(synthetic(4))
    counts = df.item_id.value_counts()
    eligible = counts[counts >= 5].index
    out = cold_item_split(df, seed=2026, fraction=0.1, min_interactions=5)
    cold = out["cold_items"]
    assert len(cold) == int(np.floor(0.1 * len(eligible) + 0.5))
    assert set(cold) <= set(eligible)
    # held-out items appear in no training row, and all their rows are in cold_test
    assert not out["train"].item_id.isin(cold).any()
    assert set(out["cold_test"].item_id) == set(cold)
    assert len(out["train"]) + len(out["cold_test"]) == len(df)
    again = cold_item_split(df.sample(frac=1.0, random_state=1), seed=2026)
    assert np.array_equal(again["cold_items"], cold)


def test_kfold_covers_every_interaction_once():
    df = deduplicate(synthetic(5))
    folds = kfold_user_split(df, k=5, seed=2026)
    assert len(folds) == 5
    seen: dict[tuple, int] = {}
    for fold in folds:
        tr, te = pairs(fold["train"]), pairs(fold["test"])
        assert not (tr & te)
        assert tr | te == pairs(df)
        for p in te:
            seen[p] = seen.get(p, 0) + 1
    assert set(seen) == pairs(df) and set(seen.values()) == {1}
    # round-robin: each user's fold sizes differ by at most one
    sizes = pd.DataFrame({f: fold["test"].groupby("user_id").size() for f, fold in enumerate(folds)}).fillna(0)
    assert ((sizes.max(axis=1) - sizes.min(axis=1)) <= 1).all()


# --------------------------------------------------------------------------- real data
def test_movielens_p1_counts(movielens_interactions):
    out = prepare_p1(movielens_interactions, seed=2026, k_core=5)
    # the figures in docs/ARCHITECTURE.md
    assert (out["n_users"], out["n_items"], out["n_interactions"]) == (610, 3650, 90_274)
    filtered = out["interactions"]
    assert filtered.groupby("user_id").size().min() >= 5
    assert filtered.groupby("item_id").size().min() >= 5
    n = {p: len(out[p]) for p in ("train", "valid", "test")}
    assert sum(n.values()) == 90_274
    # about 80/10/10; every user has at least one valid and one test row
    assert 0.09 < n["test"] / 90_274 < 0.11 and 0.09 < n["valid"] / 90_274 < 0.11
    assert out["test"].user_id.nunique() == 610 and out["valid"].user_id.nunique() == 610
    assert not (pairs(out["train"]) & pairs(out["test"]))
    again = prepare_p1(movielens_interactions)
    pd.testing.assert_frame_equal(again["test"], out["test"])
