"""Fairness report and exposure-aware re-ranking: hand-made cases with known answers, and one run end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.evaluate.fairness import (
    NONE_LABEL,
    calibration_kl,
    fairness_arrays,
    gini,
    group_gap,
    group_shares,
    history_buckets,
    label_matrix,
    popularity_percentile,
)
from recsys.models.rerank import exposure_rerank, group_membership, select_top

FINISHED = "20260101-000000-demo-mostpop-done"


@pytest.fixture(scope="module")
def trained_root(demo_template, tmp_path_factory):
    """The session's demo workspace, copied, with a MostPop run beside EASE added (under a second: the
    report refits the run's model, cheap for MostPop)."""
    import shutil

    from recsys.train.run import RunConfig, train_run
    from recsys.workspace import Workspace

    root = tmp_path_factory.mktemp("fairness") / "ws"
    shutil.copytree(demo_template, root)
    train_run(
        Workspace(root), RunConfig(dataset="demo", model="mostpop", baselines=["ease"], device="cpu"), run_id=FINISHED
    )
    return root


# ----------------------------------------------------------------------------- item side
def test_gini_known_values():
    assert gini(np.full(7, 3.0)) == pytest.approx(0.0)
    assert gini([0, 0, 0, 5]) == pytest.approx(3 / 4)  # everything on one of n items: (n - 1) / n
    assert gini([1, 3]) == pytest.approx(0.25)  # (|1 - 3| * 2) / (2 * 2^2 * mean 2)
    assert np.isnan(gini([0, 0]))


def test_label_matrix_splits_multi_label_cells_and_shares_sum_to_one():
    matrix, names = label_matrix(["Drama|Crime", "Drama", None, "Comedy"], multi_label=True)
    assert names == ["Comedy", "Crime", "Drama", NONE_LABEL]
    dense = matrix.toarray()
    np.testing.assert_allclose(dense.sum(axis=1), 1.0)
    assert dense[0, names.index("Drama")] == 0.5
    catalogue = group_shares(np.ones(4), matrix)
    np.testing.assert_allclose(catalogue, [0.25, 0.125, 0.375, 0.25])
    exposure = group_shares([5, 1, 0, 2], matrix)
    assert exposure.sum() == pytest.approx(1.0)
    # a single-valued column keeps "a|b" as one group
    _, single = label_matrix(["a|b", "a"], multi_label=False)
    assert single == ["a", "a|b"]


def test_popularity_percentile_ranks_and_ties():
    np.testing.assert_allclose(popularity_percentile([0, 10, 20, 30]), [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(popularity_percentile([5, 5, 9]), [0.25, 0.25, 1.0])


def test_calibration_kl_is_zero_for_matching_mixes_and_known_otherwise():
    p = np.array([[0.2, 0.3, 0.5]])
    assert calibration_kl(p, p)[0] == pytest.approx(0.0, abs=1e-12)
    history, shown = np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]])
    q = 0.99 * shown + 0.01 * history  # the smoothing keeps a missing group finite
    expected = 0.5 * np.log(0.5 / q[0, 0]) + 0.5 * np.log(0.5 / q[0, 1])
    assert calibration_kl(history, shown)[0] == pytest.approx(expected)
    assert np.isfinite(expected) and expected > 1.0


def test_fairness_arrays_on_a_hand_made_catalogue():
    # 4 items: 0, 1 in group A, 2, 3 in group B; popularity (train users per item) 3, 2, 1, 0
    train = sp.csr_matrix(np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=np.float32))
    membership, names = label_matrix(["A", "A", "B", "B"])
    topk = np.array([[2, 3], [3, -1]])  # users 0 and 1 are shown only group B (one padded slot)
    out = fairness_arrays(topk, train, membership, names, history_rows=np.array([0, 1]))
    groups = {g.group: g for g in out["groups"]}
    assert groups["A"].catalogue_share == 0.5 and groups["B"].catalogue_share == 0.5
    assert groups["A"].interaction_share == pytest.approx(5 / 6)
    assert groups["A"].exposure_share == 0.0 and groups["B"].exposure_share == 1.0
    assert sum(g.exposure_share for g in out["groups"]) == pytest.approx(1.0)
    assert groups["B"].exposure_ratio == pytest.approx(2.0)
    # exposure counts [0, 0, 1, 2] over 4 items
    assert out["gini"] == pytest.approx(gini([0, 0, 1, 2]))
    pct = popularity_percentile([3, 2, 1, 0])  # 1, 2/3, 1/3, 0
    assert out["popularity"]["recommended"] == pytest.approx((pct[2] + 2 * pct[3]) / 3)
    assert out["popularity"]["history"] == pytest.approx((pct[0] + pct[1] + pct[2] + pct[0] + pct[1]) / 5)
    assert out["popularity"]["lift"] < 0  # the lists are less popular than the histories
    assert out["calibration_kl"] > 0
    same = fairness_arrays(np.array([[0, 2]]), train, membership, names, history_rows=np.array([1]))
    assert same["calibration_kl"] > 0  # history all A, list half B
    matched = fairness_arrays(np.array([[0, 1]]), train, membership, names, history_rows=np.array([1]))
    assert matched["calibration_kl"] == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------- user side
def test_history_buckets_cover_every_user_in_order():
    lengths = np.arange(1, 101)
    labels = history_buckets(lengths, 4)
    assert len(set(labels)) == 4
    assert labels[0].startswith("1-") and labels[-1].endswith("-100 items")
    assert all(20 <= (labels == label).sum() <= 30 for label in set(labels))  # quartiles
    assert set(history_buckets([5, 5, 5], 4)) == {"5 items"}


def test_group_gap_interval_contains_the_gap_and_narrows_with_more_users():
    rng = np.random.default_rng(0)

    def sample(n):
        values = np.concatenate([rng.binomial(1, 0.6, n), rng.binomial(1, 0.4, n)]).astype(float)
        return values, ["a"] * n + ["b"] * n

    small = group_gap(*sample(40), n_boot=500, seed=1)
    large = group_gap(*sample(1000), n_boot=500, seed=1)
    for result in (small, large):
        assert result.best == "a" and result.worst == "b"
        assert result.gap_low <= result.gap <= result.gap_high
        for g in result.groups:
            assert g.low <= g.ndcg <= g.high
    assert large.gap_high - large.gap_low < 0.5 * (small.gap_high - small.gap_low)
    assert large.clear
    # the same seed gives the same interval
    again = group_gap(*sample(40), n_boot=500, seed=1)
    assert again.n_boot == 500


def test_group_gap_of_identical_groups_is_within_the_noise_and_ignores_nan_and_tiny_groups():
    values = np.tile([0.0, 1.0], 50).astype(float)
    groups = ["a", "b"] * 25 + ["b", "a"] * 25
    result = group_gap(values, groups, n_boot=300, seed=3)
    assert abs(result.gap) < 1e-9 and not result.clear
    assert result.gap_low <= 0 <= result.gap_high
    with_extra = group_gap(np.append(values, [np.nan, 1.0]), groups + ["a", "tiny"], n_boot=100, min_users=5)
    assert {g.group: g.n_users for g in with_extra.groups} == {"a": 50, "b": 50, "tiny": 1}
    assert "tiny" not in (with_extra.best, with_extra.worst)


# ----------------------------------------------------------------------------- exposure-aware re-ranking
def _share(lists, membership):
    return float(np.mean([membership[row].mean() for row in lists]))


@pytest.mark.parametrize("target", [0.5, 0.05])
def test_exposure_rerank_moves_the_share_toward_the_target_monotonically(target):
    rng = np.random.default_rng(7)
    n_items, k = 300, 20
    membership = (rng.random(n_items) < 0.2).astype(float)
    # the group is scored lower than the rest: under-exposed with target 0.5, over-exposed with target 0.05
    popularity = rng.normal(size=n_items) - 0.8 * membership + (1.6 * membership if target < 0.1 else 0)
    users = [popularity + 0.5 * rng.normal(size=n_items) for _ in range(100)]
    strengths = [0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0]
    distance = []
    for s in strengths:
        lists = [exposure_rerank(scores, membership, k, target, s) for scores in users]
        assert all(len(row) == k and len(set(row)) == k for row in lists)
        distance.append(abs(_share(lists, membership) - target))
    assert all(b <= a + 1e-12 for a, b in zip(distance, distance[1:])), distance
    assert distance[-1] < 0.5 * distance[0]
    assert distance[-1] <= 1 / (2 * k) + 1e-9  # at strength 1 every list is within half a slot of the target


def test_exposure_rerank_at_strength_zero_is_the_plain_ranking():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=200)
    scores[[5, 17]] = -np.inf  # masked items are never recommended
    scores[40] = scores[41]  # a tie goes to the lower index
    membership = (rng.random(200) < 0.5).astype(float)
    plain = np.lexsort((np.arange(200), -scores))[:30]
    np.testing.assert_array_equal(exposure_rerank(scores, membership, 30, 0.9, 0.0), plain)
    at_one = exposure_rerank(scores, membership, 30, 0.9, 1.0)
    assert 5 not in at_one and 17 not in at_one
    # through select_top (the path of Recommender.recommend), with and without MMR before it
    np.testing.assert_array_equal(select_top(scores, 30, exposure=(membership, 0.9, 0.0)), plain)
    boosted = select_top(scores, 30, exposure=(membership, 0.9, 1.0))
    assert membership[boosted].mean() > membership[plain].mean()
    vectors = rng.normal(size=(200, 8))
    mixed = select_top(scores, 30, diversity=0.3, item_vectors=vectors, exposure=(membership, 0.9, 1.0))
    assert len(set(mixed)) == 30 and membership[mixed].mean() > membership[plain].mean()


def test_group_membership_splits_multi_label_items():
    import pandas as pd

    items = pd.DataFrame({"genres": ["Drama|Crime", "Drama", "Comedy", None]})
    np.testing.assert_allclose(group_membership(items, "genres", "Drama", multi_label=True), [0.5, 1, 0, 0])
    np.testing.assert_allclose(group_membership(items, "genres", "Drama"), [0, 1, 0, 0])


# ----------------------------------------------------------------------------- a run, through the CLI
def test_fairness_cli_on_a_trained_run(trained_root, capsys):
    from recsys.cli import main

    code = main(
        [
            "fairness",
            FINISHED,
            "--workspace",
            str(trained_root),
            "--item-column",
            "category",
            "--user-column",
            "age_band",
            "--bootstrap",
            "100",
            "--json",
            "--quiet",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["ok"] and result["k"] == 20
    # the run's saved model was refitted on every interaction: the report refits it on the train split, and
    # so scores the evaluator's model (same NDCG as metrics.json)
    assert result["model_source"] == "refit"
    assert result["ndcg"] == pytest.approx(result["stored_ndcg"], abs=1e-9)
    for key in ("catalogue_share", "interaction_share", "exposure_share"):
        assert sum(g[key] for g in result["groups"]) == pytest.approx(1.0)
    assert 0 <= result["gini"] < 1
    history = result["user_groups"]["history_length"]
    assert sum(g["n_users"] for g in history["groups"]) == result["n_users"]
    assert history["gap_low"] <= history["gap"] <= history["gap_high"]
    assert "age_band" in result["user_groups"]

    code = main(["fairness", FINISHED, "--workspace", str(trained_root), "--item-column", "title", "--quiet"])
    assert code == 1 and "not a categorical item column" in capsys.readouterr().err


def test_recommend_cli_with_exposure_group(trained_root, capsys):
    import pandas as pd

    from recsys.cli import main
    from recsys.workspace import Workspace

    bundle = Workspace(trained_root).load_dataset("demo")
    user = str(bundle.interactions["user_id"].iloc[0])
    category = bundle.items["category"].value_counts().index[-1]  # a small category
    shares = []
    for strength in ("0", "1"):
        code = main(
            [
                "recommend",
                FINISHED,
                "--workspace",
                str(trained_root),
                "--user",
                user,
                "--k",
                "10",
                "--exposure-group",
                f"category={category}",
                "--exposure-target",
                "0.3",
                "--exposure-strength",
                strength,
                "--json",
                "--quiet",
            ]
        )
        assert code == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        shares.append(result["exposure"]["share_in_list"])
        ids = [r["item_id"] for r in result["recommendations"]]
        in_group = bundle.items.set_index("item_id").loc[ids, "category"].eq(category).mean()
        assert result["exposure"]["share_in_list"] == pytest.approx(in_group)
    assert shares[1] >= shares[0]
    assert pd.notna(shares[0])
    code = main(
        [
            "recommend",
            FINISHED,
            "--workspace",
            str(trained_root),
            "--user",
            user,
            "--exposure-group",
            "category",
            "--quiet",
        ]
    )
    assert code == 1 and "COLUMN=VALUE" in capsys.readouterr().err


def test_the_best_and_worst_of_many_small_groups_from_one_distribution_is_not_called_a_gap():
    """Picking the best and the worst of six groups of 12 after the fact makes their bootstrap interval exclude 0
    far more often than 5 %; the permutation p-value keeps such a gap from being called clear."""
    rng = np.random.default_rng(0)
    separated = called = 0
    for trial in range(40):
        values = rng.random(72)  # every user from the same distribution
        groups = [f"g{i % 6}" for i in range(72)]
        result = group_gap(values, groups, n_boot=300, seed=trial)
        separated += result.gap_low > 0
        called += result.clear
        assert 0 < result.p_value <= 1
    assert separated >= 8  # the interval alone would often call it a gap
    assert called <= 4  # about the 5 % a test at that level allows
    strong = group_gap(np.r_[rng.random(60), rng.random(60) + 0.5], ["a"] * 60 + ["b"] * 60, n_boot=300)
    assert strong.clear and strong.p_value < 0.01


def test_the_verdict_says_which_test_decides_when_the_interval_and_the_permutation_test_disagree():
    """A printed interval that excludes 0 beside "within the noise" read as a contradiction to a user: the
    verdict names the after-the-fact pick and that both tests must agree."""
    rng = np.random.default_rng(0)
    for trial in range(40):
        result = group_gap(rng.random(72), [f"g{i % 6}" for i in range(72)], n_boot=300, seed=trial)
        if result.separated and not result.clear:
            break
    else:
        raise AssertionError("no trial with an interval that excludes 0 and a large permutation p")
    assert result.verdict.startswith("not clear: the interval excludes 0, but")
    assert "after the fact" in result.verdict and f"{result.p_value:.3f}" in result.verdict
    strong = group_gap(np.r_[rng.random(60), rng.random(60) + 0.5], ["a"] * 60 + ["b"] * 60, n_boot=300)
    assert strong.verdict.startswith("a clear gap: the interval excludes 0")
    same = group_gap(np.tile([0.0, 1.0], 50), ["a", "b"] * 25 + ["b", "a"] * 25, n_boot=300, seed=3)
    assert same.verdict.startswith("within the noise: the interval includes 0")


def test_user_groups_that_say_who_the_users_are_come_first():
    """A customers export's first categorical column was "Accepts Email Marketing": the report's default user
    group. Columns naming who the users are (country, age) come first."""
    import types

    import pandas as pd

    from recsys.data.schema import Schema
    from recsys.evaluate.fairness import user_group_columns

    users = pd.DataFrame(
        {"user_id": ["u1"], "Accepts Email Marketing": ["yes"], "Tags": ["vip"], "Default Address Country Code": ["DE"]}
    )
    schema = Schema(
        users={
            "user_id": "id",
            "Accepts Email Marketing": "categorical",
            "Tags": "categorical",
            "Default Address Country Code": "categorical",
        }
    )
    bundle = types.SimpleNamespace(users=users, schema=schema)
    assert user_group_columns(bundle) == ["Default Address Country Code", "Accepts Email Marketing", "Tags"]
