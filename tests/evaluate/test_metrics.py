"""Metrics against hand-computed examples (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys.evaluate.metrics import (
    catalogue_coverage,
    hit_matrix,
    hit_rate_at_k,
    mae,
    mean_over_users,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    rmse,
    topk_from_scores,
)

L2_3 = math.log2(3)  # discount of rank 2 is 1/log2(3); rank 1: 1/log2(2) = 1; rank 3: 1/log2(4) = 0.5

# Four users, top-3 lists, 10 items:
#   A: test {2, 5},          top [5, 1, 2] -> hits [1, 0, 1]
#   B: test {7},             top [0, 1, 7] -> hits [0, 0, 1]
#   C: test {} (no test)     top [0, 1, 2] -> every metric NaN
#   D: test {0, 1, 2, 3, 4}, top [9, 8, 0] -> hits [0, 0, 1]
TOPK = np.array([[5, 1, 2], [0, 1, 7], [0, 1, 2], [9, 8, 0]])
REL_LIST = [np.array([2, 5]), np.array([7]), np.array([], dtype=int), np.array([0, 1, 2, 3, 4])]


def rel_csr(n_items: int = 10) -> sp.csr_matrix:
    rows = [0, 0, 1, 3, 3, 3, 3, 3]
    cols = [2, 5, 7, 0, 1, 2, 3, 4]
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(4, n_items))


@pytest.fixture(params=["list", "csr"])
def relevant(request):
    return REL_LIST if request.param == "list" else rel_csr()


def test_hit_matrix(relevant):
    hits, n_rel = hit_matrix(TOPK, relevant)
    assert hits.tolist() == [[True, False, True], [False, False, True], [False, False, False], [False, False, True]]
    assert n_rel.tolist() == [2, 1, 0, 5]


def test_recall(relevant):
    # A: 2 hits / |test| 2 = 1;  B: 1/1 = 1;  C: NaN;  D: 1 hit / |test| 5 = 0.2
    # (denominator is |test|, not min(|test|, K): D cannot reach 1 with K = 3)
    np.testing.assert_allclose(recall_at_k(TOPK, relevant, 3), [1.0, 1.0, np.nan, 0.2])
    # @1: A: [5] -> 1/2;  B: [0] -> 0;  D: [9] -> 0
    np.testing.assert_allclose(recall_at_k(TOPK, relevant, 1), [0.5, 0.0, np.nan, 0.0])
    # k defaults to the width of topk
    np.testing.assert_allclose(recall_at_k(TOPK, relevant), recall_at_k(TOPK, relevant, 3))


def test_precision(relevant):
    # @3: A: 2/3;  B: 1/3;  D: 1/3.   @2: A: [5,1] -> 1/2;  B: 0;  D: 0
    np.testing.assert_allclose(precision_at_k(TOPK, relevant, 3), [2 / 3, 1 / 3, np.nan, 1 / 3])
    np.testing.assert_allclose(precision_at_k(TOPK, relevant, 2), [0.5, 0.0, np.nan, 0.0])


def test_ndcg(relevant):
    # A: DCG = 1/log2(2) + 1/log2(4) = 1.5;  IDCG over min(2, 3) = 2 ranks = 1 + 1/log2(3)
    a = (1 + 1 / math.log2(4)) / (1 + 1 / L2_3)
    assert a == pytest.approx(0.919720, abs=1e-6)
    # B: DCG = 1/log2(4) = 0.5;  IDCG over min(1, 3) = 1 rank = 1  -> 0.5
    # D: DCG = 0.5;  IDCG over min(5, 3) = 3 ranks = 1 + 1/log2(3) + 1/2
    d = 0.5 / (1 + 1 / L2_3 + 0.5)
    assert d == pytest.approx(0.234639, abs=1e-6)
    np.testing.assert_allclose(ndcg_at_k(TOPK, relevant, 3), [a, 0.5, np.nan, d])
    # @2: A: hits [1,0] -> 1 / (1 + 1/log2(3));  B, D: no hit in the top 2 -> 0
    np.testing.assert_allclose(ndcg_at_k(TOPK, relevant, 2), [1 / (1 + 1 / L2_3), 0.0, np.nan, 0.0])
    # @1: A: 1/1
    np.testing.assert_allclose(ndcg_at_k(TOPK, relevant, 1), [1.0, 0.0, np.nan, 0.0])


def test_hit_rate_and_mrr(relevant):
    # first hit at rank A: 1, B: 3, D: 3
    np.testing.assert_allclose(hit_rate_at_k(TOPK, relevant, 3), [1.0, 1.0, np.nan, 1.0])
    np.testing.assert_allclose(hit_rate_at_k(TOPK, relevant, 2), [1.0, 0.0, np.nan, 0.0])
    np.testing.assert_allclose(mrr_at_k(TOPK, relevant, 3), [1.0, 1 / 3, np.nan, 1 / 3])
    np.testing.assert_allclose(mrr_at_k(TOPK, relevant, 2), [1.0, 0.0, np.nan, 0.0])


def test_mean_over_users_ignores_users_without_test_items(relevant):
    # NDCG@3 averaged over A, B, D only (C has no test item)
    a = (1 + 0.5) / (1 + 1 / L2_3)
    d = 0.5 / (1 + 1 / L2_3 + 0.5)
    assert mean_over_users(ndcg_at_k(TOPK, relevant, 3)) == pytest.approx((a + 0.5 + d) / 3)
    assert math.isnan(mean_over_users([np.nan, np.nan]))
    assert math.isnan(mean_over_users([]))


def test_ranking_metrics_matches_single_functions(relevant):
    out = ranking_metrics(TOPK, relevant, ks=(1, 3))
    assert set(out) == {f"{m}@{k}" for m in ("recall", "precision", "ndcg", "hit", "mrr") for k in (1, 3)}
    np.testing.assert_allclose(out["ndcg@3"], ndcg_at_k(TOPK, relevant, 3))
    np.testing.assert_allclose(out["recall@1"], recall_at_k(TOPK, relevant, 1))


def test_padding_is_never_a_hit():
    # -1 = "no item": top [-1, 5] with test {5} -> hit only at rank 2
    # NDCG = (1/log2(3)) / 1;  precision@2 = 1/2 (the padded rank still counts)
    top = np.array([[-1, 5]])
    assert ndcg_at_k(top, [np.array([5])]).tolist() == pytest.approx([1 / L2_3])
    assert precision_at_k(top, [np.array([5])]).tolist() == [0.5]


def test_explicit_zeros_and_duplicates_in_csr_are_handled():
    # stored zero at item 3 is not relevant; duplicate entries for item 1 count once
    rel = sp.csr_matrix((np.array([0.0, 1.0, 1.0]), (np.array([0, 0, 0]), np.array([3, 1, 1]))), shape=(1, 5))
    top = np.array([[3, 1]])
    # only item 1 relevant, at rank 2: recall 1/1, precision 1/2
    assert recall_at_k(top, rel).tolist() == [1.0]
    assert precision_at_k(top, rel).tolist() == [0.5]


def test_k_out_of_range_raises():
    with pytest.raises(ValueError):
        recall_at_k(TOPK, REL_LIST, 4)
    with pytest.raises(ValueError):
        ndcg_at_k(TOPK, REL_LIST, 0)


def test_catalogue_coverage():
    top = np.array([[0, 1], [1, 2], [-1, 3]])
    # all ranks: {0, 1, 2, 3} of 10 items = 0.4; top-1 only: {0, 1} (padding ignored) = 0.2
    assert catalogue_coverage(top, 10) == pytest.approx(0.4)
    assert catalogue_coverage(top, 10, k=1) == pytest.approx(0.2)


def test_rmse_mae():
    # errors 0, 0, 2 -> MSE 4/3, RMSE sqrt(4/3); MAE 2/3
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert mae([1, 2, 3], [1, 2, 5]) == pytest.approx(2 / 3)
    # errors -1, +1 -> RMSE 1, MAE 1
    assert rmse(np.array([3.0, 4.0]), np.array([4.0, 3.0])) == pytest.approx(1.0)
    assert math.isnan(rmse([], []))
    with pytest.raises(ValueError):
        mae([1, 2], [1])


# --------------------------------------------------------------------------- topk_from_scores
def test_topk_from_scores_basic_and_exclusion():
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [0.4, 0.3, 0.2, 0.1]])
    assert topk_from_scores(scores, 2).tolist() == [[1, 3], [0, 1]]
    # exclude item 1 for user 0 and item 0 for user 1
    ex = sp.csr_matrix(np.array([[0, 1, 0, 0], [1, 0, 0, 0]]))
    assert topk_from_scores(scores, 2, exclude=ex).tolist() == [[3, 2], [1, 2]]
    assert topk_from_scores(scores, 4).tolist() == [[1, 3, 2, 0], [0, 1, 2, 3]]
    # the input is not modified
    assert scores[0, 1] == 0.9


def test_topk_from_scores_torch_tensor():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7]])
    assert topk_from_scores(scores, 3).tolist() == [[1, 3, 2]]
    assert topk_from_scores(scores.to(torch.bfloat16), 1).tolist() == [[1]]


def test_topk_from_scores_padding():
    scores = np.array([[0.3, 0.2, 0.1]])
    # k beyond n_items -> padded with -1
    assert topk_from_scores(scores, 5).tolist() == [[0, 1, 2, -1, -1]]
    # two of three items excluded -> only one rankable item
    ex = sp.csr_matrix(np.array([[1, 0, 1]]))
    assert topk_from_scores(scores, 2, exclude=ex).tolist() == [[1, -1]]
    # NaN counts as -inf
    assert topk_from_scores(np.array([[np.nan, 1.0, 0.0]]), 3).tolist() == [[1, 2, -1]]


def test_topk_ties_go_to_the_lower_index():
    # all tied: lower index first
    assert topk_from_scores(np.zeros((1, 6)), 3).tolist() == [[0, 1, 2]]
    # one winner, then a tie spanning the partition boundary
    s = np.zeros((2, 200))
    s[0, 150] = 1.0
    s[1, 7] = 2.0
    s[1, 3] = 2.0
    assert topk_from_scores(s, 3).tolist() == [[150, 0, 1], [3, 7, 0]]


def test_topk_matches_full_stable_sort_reference():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(50, 40)).astype(np.float32)  # many ties
    ex = sp.random(50, 40, density=0.3, format="csr", random_state=1)
    masked = scores.astype(np.float64).copy()
    masked[ex.toarray() != 0] = -np.inf
    for k in (1, 7, 40):
        ref = np.argsort(-masked, axis=1, kind="stable")[:, :k]
        ref = np.where(np.isneginf(np.take_along_axis(masked, ref, axis=1)), -1, ref)
        assert np.array_equal(topk_from_scores(scores, k, exclude=ex), ref)


def test_row_sorts_in_threads_match_numpy_and_survive_a_fork():
    """The CPU row sorts split big arrays over threads; the result is NumPy's, row by row, and a forked child
    (which inherits the pool object but not its threads) sorts too instead of waiting forever."""
    import multiprocessing

    import torch

    from recsys.topk import argsort_rows, places_in_rows, sorted_rows

    rng = np.random.default_rng(3)
    values = torch.from_numpy(rng.standard_normal((300, 2000)).astype(np.float32))  # above the threading size
    assert np.array_equal(sorted_rows(values).numpy(), np.sort(values.numpy(), axis=1))
    order = argsort_rows(values).numpy()
    assert np.array_equal(np.take_along_axis(values.numpy(), order, 1), np.sort(values.numpy(), axis=1))
    chosen = torch.zeros_like(values)
    chosen[:, :5] = 1
    places = places_in_rows(values, chosen, "left").numpy()
    assert np.array_equal(places[:, :5], (values.numpy()[:, None, :] < values.numpy()[:, :5, None]).sum(2))
    child = multiprocessing.get_context("fork").Process(target=sorted_rows, args=(values,))
    child.start()
    child.join(timeout=60)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive and child.exitcode == 0
