"""Full-ranking evaluator: masking, exclusion, candidate items, batching (hand-computed)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from recsys.evaluate.evaluator import (
    build_index,
    evaluate_ranking,
    evaluate_ranking_by_user,
    interactions_to_csr,
    paired_bootstrap,
    per_user_metric,
    summarise_folds,
)

L2_3 = math.log2(3)
N_ITEMS = 6
# every user scores the items the same way: item 0 best, item 5 worst
SCORES = np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0])


def csr(rows: list[list[int]]) -> sp.csr_matrix:
    dense = np.zeros((len(rows), N_ITEMS))
    for u, items in enumerate(rows):
        dense[u, items] = 1.0
    return sp.csr_matrix(dense)


def score_fn(users: np.ndarray) -> np.ndarray:
    return np.tile(SCORES, (len(users), 1))


# user 0: train {0}, test {1, 3}
# user 1: train {1}, test {}        -> not evaluated
# user 2: train {2}, valid {0}, test {4}
TRAIN = csr([[0], [1], [2]])
VALID = csr([[], [], [0]])
TEST = csr([[1, 3], [], [4]])


def test_masks_train_and_excluded_items():
    out = evaluate_ranking(score_fn, TRAIN, TEST, exclude=VALID, ks=(2, 3))
    # user 0 ranking after masking train {0}: 1, 2, 3, 4, 5
    #   @2 [1, 2] hits [1,0]: recall 1/2, NDCG 1 / (1 + 1/log2 3)
    #   @3 [1, 2, 3] hits [1,0,1]: recall 1, NDCG (1 + 1/2) / (1 + 1/log2 3), MRR 1
    # user 2 ranking after masking train {2} and valid {0}: 1, 3, 4, 5
    #   @2 [1, 3]: no hit -> recall 0, NDCG 0
    #   @3 [1, 3, 4] hit at rank 3: recall 1, NDCG (1/2) / 1, MRR 1/3
    assert out["n_users_evaluated"] == 2
    assert out["recall@2"] == pytest.approx((0.5 + 0.0) / 2)
    assert out["ndcg@2"] == pytest.approx((1 / (1 + 1 / L2_3) + 0.0) / 2)
    assert out["recall@3"] == pytest.approx((1.0 + 1.0) / 2)
    assert out["ndcg@3"] == pytest.approx((1.5 / (1 + 1 / L2_3) + 0.5) / 2)
    assert out["precision@3"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert out["hit@2"] == pytest.approx(0.5)
    assert out["mrr@3"] == pytest.approx((1 + 1 / 3) / 2)
    # distinct items recommended: @2 {1, 2, 3} -> 3/6;  @3 {1, 2, 3, 4} -> 4/6
    assert out["coverage@2"] == pytest.approx(3 / 6)
    assert out["coverage@3"] == pytest.approx(4 / 6)


def test_without_exclude_valid_items_compete():
    out = evaluate_ranking(score_fn, TRAIN, TEST, ks=(3,))
    # user 2 ranking after masking only train {2}: 0, 1, 3, ... -> top 3 [0, 1, 3], no hit
    # user 0 as before: recall@3 1
    assert out["recall@3"] == pytest.approx((1.0 + 0.0) / 2)


def test_no_masking_when_train_is_empty():
    empty = sp.csr_matrix((3, N_ITEMS))
    out = evaluate_ranking(score_fn, empty, TEST, ks=(2,))
    # user 0 top 2 [0, 1]: hit at rank 2 -> NDCG (1/log2 3) / (1 + 1/log2 3), recall 1/2
    # user 2 top 2 [0, 1]: no hit
    assert out["ndcg@2"] == pytest.approx(((1 / L2_3) / (1 + 1 / L2_3) + 0.0) / 2)
    assert out["recall@2"] == pytest.approx(0.25)


def test_candidate_items_restrict_ranking_and_relevance():
    cand = np.array([3, 4, 5])
    test = csr([[1, 3], [1], [4]])  # user 1's only test item is not a candidate -> not evaluated
    out = evaluate_ranking(score_fn, TRAIN, test, ks=(1, 2), candidate_items=cand)
    # ranking only over {3, 4, 5}: 3, 4, 5 for both users (no train item among them)
    # user 0: relevant = {1, 3} ∩ candidates = {3} -> top1 [3] hit: recall@1 1, NDCG@1 1
    # user 2: relevant {4} -> top1 [3] miss, top2 [3, 4] hit at rank 2: NDCG@2 1/log2 3
    assert out["n_users_evaluated"] == 2
    assert out["recall@1"] == pytest.approx(0.5)
    assert out["ndcg@2"] == pytest.approx((1.0 + 1 / L2_3) / 2)
    # coverage over the 3 candidates: @1 {3} -> 1/3; @2 {3, 4} -> 2/3
    assert out["coverage@1"] == pytest.approx(1 / 3)
    assert out["coverage@2"] == pytest.approx(2 / 3)


def test_candidates_fewer_than_k_pad_instead_of_leaking_other_items():
    out = evaluate_ranking(score_fn, TRAIN, csr([[5], [], []]), ks=(3,), candidate_items=np.array([5]))
    # the single candidate 5 is ranked first; ranks 2-3 are padding, never items 0..4
    assert out["recall@3"] == 1.0
    assert out["precision@3"] == pytest.approx(1 / 3)
    assert out["coverage@3"] == 1.0


def test_batching_and_score_fn_contract():
    rng = np.random.default_rng(3)
    n_users, n_items = 37, 25
    table = rng.random((n_users, n_items))
    train = sp.random(n_users, n_items, density=0.2, format="csr", random_state=4)
    test = sp.random(n_users, n_items, density=0.1, format="csr", random_state=5)
    test = test - test.multiply(train != 0)  # disjoint from train
    calls: list[np.ndarray] = []

    def fn(users):
        calls.append(users.copy())
        return table[users]

    whole = evaluate_ranking(fn, train, test, ks=(5, 10), batch_size=1024)
    assert len(calls) == 1
    expected_users = np.flatnonzero(np.diff(sp.csr_matrix(test).indptr) > 0)
    assert np.array_equal(calls[0], expected_users)
    calls.clear()
    batched = evaluate_ranking(fn, train, test, ks=(5, 10), batch_size=4)
    assert all(len(c) <= 4 for c in calls)
    assert np.array_equal(np.concatenate(calls), expected_users)
    assert batched == pytest.approx(whole)
    # torch scores give the same numbers
    as_torch = evaluate_ranking(lambda u: torch.from_numpy(table[u]), train, test, ks=(5, 10))
    assert as_torch == pytest.approx(whole)


def test_per_user_metric_is_the_array_whose_mean_evaluate_ranking_reports(monkeypatch):
    import recsys.evaluate.evaluator as evaluator

    values = per_user_metric(score_fn, TRAIN, TEST, "ndcg", 2, exclude=VALID)
    # user 0: ranked [1, 2] (0 is in train): hit at 1 of test {1, 3} -> 1 / (1 + 1/log2 3); user 2: [1, 3] -> 0
    assert np.allclose(values, [1 / (1 + 1 / L2_3), 0.0])
    assert np.isclose(values.mean(), evaluate_ranking(score_fn, TRAIN, TEST, exclude=VALID, ks=(2,))["ndcg@2"])
    # a catalogue too wide for a batch of 1,024 users' scores is scored in smaller batches, same values
    calls = []
    monkeypatch.setattr(evaluator, "SCORE_CELLS", N_ITEMS)  # one user a batch

    def counted(users):
        calls.append(len(users))
        return score_fn(users)

    assert np.allclose(per_user_metric(counted, TRAIN, TEST, "ndcg", 2, exclude=VALID), values)
    assert calls == [1, 1]
    assert evaluate_ranking(counted, TRAIN, TEST, exclude=VALID, ks=(2,))["ndcg@2"] == pytest.approx(values.mean())


def test_evaluate_ranking_by_user_keeps_the_values_whose_means_it_reports():
    means, per_user = evaluate_ranking_by_user(
        score_fn, TRAIN, TEST, exclude=VALID, ks=(1, 2), per_user=("ndcg@2", "recall@1")
    )
    assert means == evaluate_ranking(score_fn, TRAIN, TEST, exclude=VALID, ks=(1, 2))
    assert np.allclose(per_user["ndcg@2"], per_user_metric(score_fn, TRAIN, TEST, "ndcg", 2, exclude=VALID))
    assert per_user["recall@1"].mean() == pytest.approx(means["recall@1"])
    with pytest.raises(ValueError, match="not computed"):
        evaluate_ranking_by_user(score_fn, TRAIN, TEST, ks=(2,), per_user=("ndcg@20",))


def test_paired_bootstrap_says_when_a_difference_is_within_the_users_noise():
    rng = np.random.default_rng(0)
    theirs = rng.random(400)
    same = paired_bootstrap(theirs, theirs.copy())
    assert same["mean_difference"] == 0.0 and same["interval_95"] == [0.0, 0.0] and not same["clear_at_95"]
    # a small lift buried in per-user noise: not clear; the same lift on every user: clear
    noisy = theirs + 0.01 + rng.normal(0, 0.3, 400)
    verdict = paired_bootstrap(noisy, theirs)
    assert verdict["interval_95"][0] < 0 < verdict["interval_95"][1] and not verdict["clear_at_95"]
    lifted = paired_bootstrap(theirs + 0.05, theirs)
    assert lifted["clear_at_95"] and lifted["interval_95"][0] > 0
    assert lifted["ratio"] == pytest.approx((theirs.mean() + 0.05) / theirs.mean())
    assert lifted["ratio_interval_95"][0] < lifted["ratio"] < lifted["ratio_interval_95"][1]
    assert lifted["share_of_resamples_ahead"] == 1.0 and lifted["users"] == 400
    worse = paired_bootstrap(theirs, theirs + 0.05)
    assert worse["clear_at_95"] and worse["interval_95"][1] < 0
    # the same seed resamples the same users; different users cannot be paired
    assert paired_bootstrap(noisy, theirs) == verdict
    with pytest.raises(ValueError, match="different users"):
        paired_bootstrap(theirs, theirs[:-1])


def test_score_fn_wrong_shape_raises():
    with pytest.raises(ValueError, match="shape"):
        evaluate_ranking(lambda u: np.zeros((len(u), N_ITEMS - 1)), TRAIN, TEST)


def test_no_users_gives_nan():
    out = evaluate_ranking(score_fn, TRAIN, sp.csr_matrix((3, N_ITEMS)), ks=(2,))
    assert out["n_users_evaluated"] == 0
    assert math.isnan(out["ndcg@2"])


def test_build_index_and_interactions_to_csr():
    df = pd.DataFrame({"user_id": [10, 10, 20, 20, 30], "item_id": ["b", "b", "a", "c", "z"]})
    users = build_index(df["user_id"])
    items = build_index(["c", "a", "b"])
    assert users == {10: 0, 20: 1, 30: 2}
    assert items == {"a": 0, "b": 1, "c": 2}
    m = interactions_to_csr(df, users, items)
    # duplicate (10, b) counts once; (30, z) has an unknown item and is dropped
    assert m.shape == (3, 3)
    assert m.toarray().tolist() == [[0, 1, 0], [1, 0, 1], [0, 0, 0]]
    with pytest.raises(KeyError):
        interactions_to_csr(df, users, items, drop_unknown=False)


def test_summarise_folds():
    folds = [{"ndcg@20": 0.1, "recall@20": 0.5}, {"ndcg@20": 0.3, "recall@20": 0.5}]
    out = summarise_folds(folds)
    # mean (0.1 + 0.3) / 2 = 0.2; sample std sqrt(((0.1-0.2)^2 + (0.3-0.2)^2) / (2-1)) = sqrt(0.02)
    assert out["ndcg@20"]["mean"] == pytest.approx(0.2)
    assert out["ndcg@20"]["std"] == pytest.approx(math.sqrt(0.02))
    assert out["recall@20"] == pytest.approx({"mean": 0.5, "std": 0.0, "n": 2})
    assert summarise_folds([{"a": 1.0}])["a"] == {"mean": 1.0, "std": 0.0, "n": 1}
