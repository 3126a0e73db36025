"""MMR re-ranking, filters and the metrics beside accuracy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.models.rerank import (
    beyond_accuracy,
    catalogue_coverage,
    category_mask,
    filter_mask,
    intra_list_diversity,
    long_tail_share,
    mmr_rerank,
    novelty,
    price_mask,
    select_top,
    variant_groups,
)


def test_mmr_without_diversity_is_the_ranking():
    scores = np.array([0.1, 0.9, 0.5, -np.inf, 0.7])
    vectors = np.eye(5)
    assert mmr_rerank(scores, vectors, 3, 0.0).tolist() == [1, 4, 2]
    assert mmr_rerank(scores, vectors, 10, 0.0).tolist() == [1, 4, 2, 0]  # -inf never comes back
    assert mmr_rerank(scores, vectors, 2, 0.0, candidates=[0, 2]).tolist() == [2, 0]
    mask = np.array([True, False, True, True, True])
    assert mmr_rerank(scores, vectors, 2, 0.0, candidates=mask).tolist() == [4, 2]


def test_mmr_trades_relevance_for_difference():
    # items 0-2 are near-duplicates with the best scores; item 3 is different and a bit worse
    vectors = np.array([[1, 0], [1, 0.01], [1, 0.02], [0, 1]], dtype=float)
    scores = np.array([1.0, 0.99, 0.98, 0.9])
    assert mmr_rerank(scores, vectors, 2, 0.0).tolist() == [0, 1]
    assert mmr_rerank(scores, vectors, 2, 0.5).tolist() == [0, 3]


def test_variant_groups_join_colour_and_size_variants_of_one_title():
    titles = [
        "Slim Jeans (Black)",
        "slim jeans - Dark Blue",
        "Slim Jeans XL",
        "Slim Jeans 2",
        "Relaxed Jeans",
        "",
        None,
        "Black",
        "Black",
    ]
    groups = variant_groups(titles)
    assert groups[0] == groups[1] == groups[2]
    assert len({groups[0], groups[3], groups[4]}) == 3  # a model number or another cut is another product
    assert len(set(groups[5:].tolist())) == 4  # an empty title, or one made of variant words only, stands alone


def test_variant_groups_keep_apart_the_volumes_of_a_series_and_colours_inside_a_name():
    """A book shop's walkthrough: "1Q84 (Book 2)" and "(Book 3)" by the author of "(Book 1)" were one product
    with it, so a reader who owned the first never saw the sequels; "The Red Prince" and "The Black Prince" by
    one author were one product too. A colour at either end of a title is still a variant's."""
    titles = [
        "1Q84 (Book 1)", "1Q84 (Book 2)", "1Q84 [Vol. III]", "Saga (#4)", "Saga (#5)",
        "The Red Prince", "The Black Prince",
        "Black Slim Jeans", "Slim Jeans (Black)", "Slim Jeans - Navy", "Mug (Pack of 2)", "Mug, Large", "Mug",
    ]  # fmt: skip
    groups = variant_groups(titles, ["Haruki Murakami"] * 3 + ["BKV"] * 2 + ["Iris Murdoch"] * 2 + [None] * 6)
    assert len(set(groups[:7].tolist())) == 7
    assert groups[7] == groups[8] == groups[9] and groups[10] == groups[11] == groups[12]


def test_variant_groups_keep_apart_the_same_title_from_different_makers():
    """A Shopify shop had "Everyday Hoodie" from six vendors: grouped by title alone, a customer who bought one
    never saw the others. "Sand" is a colour too."""
    titles = ["Everyday Hoodie - Black", "Everyday Hoodie - Sand", "Everyday Hoodie - Grey", "Everyday Hoodie", "Mug"]
    makers = ["Drift & Co.", "drift & co.", "Willow Works", None, None]
    groups = variant_groups(titles, makers)
    assert groups[0] == groups[1]  # one maker's colours (its name's case aside)
    assert len({groups[0], groups[2], groups[3]}) == 3
    assert len(set(variant_groups(titles).tolist())) == 2  # without makers: by title alone


def test_the_near_duplicate_guard_keeps_the_best_variant_of_each_group():
    scores = np.array([0.9, 0.95, 0.5, 0.8, 0.7])
    groups = np.array([0, 0, 1, 1, 2])
    assert select_top(scores, 3).tolist() == [1, 0, 3]
    assert select_top(scores, 3, groups=groups).tolist() == [1, 3, 4]
    keep = np.array([True, False, True, True, True])  # the best variant is hidden: the next one stands in
    assert select_top(scores, 3, keep=keep, groups=groups).tolist() == [0, 3, 4]
    assert select_top(scores, 10, groups=groups).tolist() == [1, 3, 4]


def test_recommend_applies_the_guard_and_diversity(block_model):
    model = block_model
    user = model.user_ids[0]
    plain = model.recommend(user, k=5)
    groups = np.arange(model.n_items)
    best = model.item_ids.tolist().index(plain[0][0])
    second = model.item_ids.tolist().index(plain[1][0])
    groups[second] = groups[best]  # the two best are variants of one product
    guarded = model.recommend(user, k=5, groups=groups)
    assert guarded[0] == plain[0] and plain[1] not in guarded and len(guarded) == 5
    assert len(model.recommend(user, k=5, diversity=0.5)) == 5


def test_the_guard_leaves_out_other_versions_of_what_the_user_has(block_model):
    from recsys.explain.coldstart import recommend_for_history

    model = block_model
    user = model.user_ids[0]
    plain = model.recommend(user, k=5)
    ids = model.item_ids.tolist()
    owned = int(model.seen.indices[model.seen.indptr[0]])  # one of the user's own items
    best = ids.index(plain[0][0])
    groups = np.arange(model.n_items)
    groups[best] = groups[owned]  # the best recommendation is another SKU of an item the user has
    guarded = model.recommend(user, k=5, groups=groups)
    assert plain[0][0] not in [item for item, _ in guarded] and len(guarded) == 5
    # showing the user's items again shows their versions again; without the guard, nothing changes
    assert model.recommend(user, k=5, groups=groups, exclude_seen=False)[0][0] in (plain[0][0], ids[owned])
    assert model.recommend(user, k=5) == plain
    # a visitor who liked that item: the same
    liked = [ids[owned]]
    visitor = [item for item, _ in recommend_for_history(model, liked, k=5)]
    groups = np.arange(model.n_items)
    groups[ids.index(visitor[0])] = groups[owned]
    guarded = [item for item, _ in recommend_for_history(model, liked, k=5, groups=groups)]
    assert visitor[0] not in guarded and ids[owned] not in guarded and len(guarded) == 5
    shown = [item for item, _ in recommend_for_history(model, liked, k=5, exclude=[], groups=groups)]
    assert ids[owned] in shown or visitor[0] in shown  # liked items on the list: their versions may be too
    # generic titles (one group for every item): the list is kept, not emptied
    one_group = np.zeros(model.n_items, dtype=np.int64)
    assert len(model.recommend(user, k=5, groups=one_group)) == 1
    assert len(recommend_for_history(model, liked, k=5, groups=one_group)) == 1


def test_metrics_by_hand():
    lists = np.array([[0, 1], [0, 2], [3, -1]])
    assert catalogue_coverage(lists, 5) == pytest.approx(4 / 5)
    vectors = np.array([[1, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    # list 1: orthogonal (1 - 0 = 1); list 2: identical (0); list 3 has one item: skipped
    assert intra_list_diversity(lists, vectors) == pytest.approx(0.5)
    train = sp.csr_matrix(np.array([[1, 1, 0, 0, 0], [1, 0, 1, 0, 0], [1, 0, 0, 0, 1], [1, 0, 0, 1, 0]]))
    # p = [1, .25, .25, .25, .25] -> -log2 p = [0, 2, 2, 2, 2]; recommended 0,1,0,2,3
    assert novelty(lists, train) == pytest.approx((0 + 2 + 0 + 2 + 2) / 5)
    # head = ceil(0.2 * 5) = 1 item (item 0); outside it: 1, 2, 3 of 0,1,0,2,3
    assert long_tail_share(lists, train) == pytest.approx(3 / 5)
    assert set(beyond_accuracy(lists, train, vectors)) == {"coverage", "ild", "novelty", "long_tail"}


def test_filters():
    items = pd.DataFrame(
        {
            "item_id": list("abcd"),
            "category": ["Home", "Garden", "Home", None],
            "tags": ["x|y", "y", "", "z"],
            "price": [10, 25, "n/a", 40],
        }
    )
    assert category_mask(items, "category", ["Home"]).tolist() == [True, False, True, False]
    assert category_mask(items, "tags", ["y"], multi_label=True).tolist() == [True, True, False, False]
    assert category_mask(items, "tags", []).all()
    assert price_mask(items, "price", 20, 40).tolist() == [False, True, False, True]
    keep = filter_mask(items, {"category": ["Home", "Garden"]}, ("price", None, 30))
    assert keep.tolist() == [True, True, False, False]
    # an item without a price stays only when asked (the page offers it beside the range, with the count)
    assert price_mask(items, "price", 20, 40, keep_unpriced=True).tolist() == [False, True, True, True]
    keep = filter_mask(items, {"category": ["Home"]}, ("price", None, 30), keep_unpriced=True)
    assert keep.tolist() == [True, False, True, False]


@pytest.mark.slow
def test_diversity_rises_with_the_mmr_weight_on_the_demo_catalog(demo_run):
    from recsys.explain.evidence import item_vectors
    from recsys.models.rerank import rerank_users

    model = demo_run.model
    vectors = item_vectors(model)
    users = np.arange(model.n_users)
    ild = []
    for weight in (0.0, 0.1, 0.2, 0.3, 0.5, 0.7):
        lists = rerank_users(model, users, 10, vectors, weight)
        assert (lists >= 0).all()
        ild.append(intra_list_diversity(lists, vectors))
    assert all(b >= a - 1e-6 for a, b in zip(ild, ild[1:])), ild
    assert ild[-1] > ild[0] + 0.02, ild


@pytest.fixture(scope="module")
def block_model():
    from recsys.models import get_model
    from recsys.models.base import TrainData

    rng = np.random.default_rng(3)
    train = sp.csr_matrix((rng.random((30, 20)) < 0.3).astype(np.float32))
    data = TrainData(np.array([f"u{i}" for i in range(30)]), np.array([f"i{j}" for j in range(20)]), train)
    return get_model("itemknn").fit(data)


# ----------------------------------------------------------------------------- exposure carried over many lists
@pytest.mark.parametrize("shift", [-1.0, 1.2])  # the group under-exposed (scored low), over-exposed (scored high)
def test_the_exposure_balancer_meets_a_target_below_half_a_slot_per_list(shift):
    from recsys.models.rerank import ExposureBalancer, exposure_rerank

    rng = np.random.default_rng(11)
    n_items, k, n_users = 400, 10, 500
    membership = (rng.random(n_items) < 0.05).astype(float)
    target = 0.2 / k  # 0.2 of a slot per list: each list alone rounds it to 0 slots
    popularity = rng.normal(size=n_items) + shift * membership
    users = [popularity + 0.7 * rng.normal(size=n_items) for _ in range(n_users)]
    plain = [np.lexsort((np.arange(n_items), -u))[:k] for u in users]
    distance = []
    for s in [0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0]:
        balancer = ExposureBalancer(membership, target, s)
        lists = [balancer.rerank(u, k) for u in users]
        assert all(len(row) == k and len(set(row.tolist())) == k for row in lists)
        if s == 0:
            np.testing.assert_array_equal(np.array(lists), np.array(plain))
        distance.append(abs(membership[np.array(lists)].mean() - target))
        assert abs(balancer.carry) <= 1.0
    assert all(b <= a + 1e-3 for a, b in zip(distance, distance[1:])), distance
    assert distance[-1] <= 1.0 / (n_users * k) + 1e-12  # at strength 1: within one slot over all the lists
    # each list alone cannot: at strength 1 the group gets no slot at all (0 is nearer 0.2 than 1 is)
    alone = [exposure_rerank(u, membership, k, target, 1.0) for u in users]
    assert membership[np.array(alone)].sum() == 0


def test_the_carry_starts_the_count():
    from recsys.models.rerank import exposure_rerank

    scores = np.linspace(1.0, 0.0, 50)
    membership = np.zeros(50)
    membership[30:] = 1.0  # the group is scored last
    assert membership[exposure_rerank(scores, membership, 10, 0.02, 1.0)].sum() == 0
    assert membership[exposure_rerank(scores, membership, 10, 0.02, 1.0, carry=-0.6)].sum() == 1  # owed 0.6 slot
    assert membership[exposure_rerank(scores, membership, 10, 0.3, 1.0, carry=0.6)].sum() == 2  # 0.6 ahead: 3 - 1
