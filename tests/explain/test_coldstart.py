"""Cold start on the demo catalog: new items, new users, text queries, and P1 cold-start metrics."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.explain.coldstart import (
    evaluate_by_history_length,
    evaluate_cold_start,
    evaluate_short_histories,
    history_scores,
    is_new_item,
    recommend_for_history,
    recommend_for_text,
    recommend_users_for_item,
)

pytestmark = pytest.mark.slow  # the session fixture trains 15 epochs and fits four models on the cold split


def test_cold_start_metrics_of_every_model(cold_split):
    results = evaluate_cold_start(cold_split.models, cold_split.prepared)
    assert set(results) == {"fusion", "mostpop", "bpr", "content"}
    n_cold = len(cold_split.prepared.cold_items)
    for name, metrics in results.items():
        assert metrics["n_users_evaluated"] > 0, name
        assert metrics["coverage@10"] <= 1.0 and 0.0 <= metrics["ndcg@10"] <= 1.0
    # content-aware models rank held-out items; the content baseline clearly beats a fixed order
    assert results["content"]["ndcg@10"] > results["mostpop"]["ndcg@10"]
    assert n_cold == cold_split.prepared.summary["cold_items"]


def test_cold_start_fusion_beats_mostpop(cold_split):
    results = evaluate_cold_start(cold_split.models, cold_split.prepared)
    assert results["fusion"]["ndcg@20"] > results["mostpop"]["ndcg@20"]
    assert results["fusion"]["ndcg@10"] > results["mostpop"]["ndcg@10"]


def _new_item_auc(model, prepared) -> float:
    """Mean AUC over held-out items: do the users who later have the item rank above the others?"""
    cold_test = prepared.cold_test.tocsc()
    aucs = []
    for item in prepared.cold_items:
        assert is_new_item(model, int(item))
        positives = cold_test[:, item].nonzero()[0]
        if len(positives) == 0 or len(positives) == model.n_users:
            continue
        ranked = recommend_users_for_item(model, int(item), k=model.n_users)
        assert len(ranked) == model.n_users
        position = {user: rank for rank, (user, _) in enumerate(ranked)}
        ranks = np.array([position[str(model.user_ids[u])] for u in positives])
        n_neg = model.n_users - len(positives)
        # AUC = share of (positive, negative) pairs where the positive ranks first
        below = (model.n_users - 1 - ranks).sum() - len(positives) * (len(positives) - 1) / 2
        aucs.append(below / (len(positives) * n_neg))
    assert len(aucs) >= 5
    return float(np.mean(aucs))


def test_new_items_are_scored_from_content(cold_split):
    fusion = cold_split.models["fusion"]
    cold = cold_split.prepared.cold_items
    scores = fusion.score(np.arange(10))[:, cold]
    assert np.isfinite(scores).all()
    assert (scores.std(axis=1) > 0).all(), "held-out items get different scores from their content"
    # the users-for-an-item ranking works: the content baseline finds the right users
    assert _new_item_auc(cold_split.models["content"], cold_split.prepared) > 0.55


def test_new_items_reach_their_users_with_fusion(cold_split):
    assert _new_item_auc(cold_split.models["fusion"], cold_split.prepared) > 0.55


def test_new_user_with_three_items_of_one_visual_style(demo_run):
    model, truth = demo_run.model, demo_run.items_truth.reindex(demo_run.model.item_ids)
    rng = np.random.default_rng(0)
    shares, chance = [], []
    for style in sorted(truth["visual_style"].unique()):
        pool = truth.index[(truth["visual_style"] == style) & truth["has_image"].astype(bool)].tolist()
        if len(pool) < 5:
            continue
        for _ in range(3):
            liked = list(rng.choice(pool, 3, replace=False))
            recommended = recommend_for_history(model, liked, k=10)
            assert len(recommended) == 10 and not set(liked) & {i for i, _ in recommended}
            shares.append(np.mean([truth.at[i, "visual_style"] == style for i, _ in recommended]))
            chance.append((truth["visual_style"] == style).mean())
    assert np.mean(shares) > 2 * np.mean(chance), (np.mean(shares), np.mean(chance))


def test_new_user_path_matches_known_users_without_their_embedding(demo_run):
    model = demo_run.model
    row = 5
    history = model.seen.indices[model.seen.indptr[row] : model.seen.indptr[row + 1]]
    scores = history_scores(model, history)
    known = model.score(np.array([row]))[0]
    # same history, no learned user embedding: strongly correlated, not identical
    assert np.corrcoef(scores, known)[0, 1] > 0.5
    weighted = history_scores(model, history, np.ones(len(history)))
    assert np.allclose(weighted, scores, atol=1e-4)
    # a zero weight leaves the item out
    weights = np.ones(len(history))
    weights[0] = 0.0
    assert np.allclose(history_scores(model, history, weights), history_scores(model, history[1:]), atol=1e-4)


@pytest.mark.parametrize("name", ["mostpop", "bpr", "content"])
def test_new_user_path_for_baselines(cold_split, name):
    model = cold_split.models[name]
    liked = [str(i) for i in model.item_ids[:3]]
    recommended = recommend_for_history(model, liked, k=5)
    assert len(recommended) == 5 and not set(liked) & {i for i, _ in recommended}


def test_text_query_finds_the_topic(demo_run):
    model, truth, bundle = demo_run.model, demo_run.items_truth.reindex(demo_run.model.item_ids), demo_run.bundle
    queries = {
        "space": "a telescope for stargazing and backyard astronomy",
        "kitchen": "a nonstick skillet for cooking weeknight dinners",
        "pets": "a cosy bed for my dog and toys for the cat",
    }
    shares = []
    for topic, query in queries.items():
        recommended = recommend_for_text(
            model, query, k=10, encoder="tfidf", items_frame=bundle.items, roles=bundle.schema.items
        )
        shares.append(np.mean([truth.at[i, "topic"] == topic for i, _ in recommended]))
    assert np.mean(shares) > 0.4, shares  # chance is 0.1
    # blended with a known user's history: still a valid, history-free list
    user = str(model.user_ids[0])
    blended = recommend_for_text(
        model,
        queries["space"],
        k=10,
        user=user,
        blend=0.5,
        encoder="tfidf",
        items_frame=bundle.items,
        roles=bundle.schema.items,
    )
    seen = set(model.item_ids[model.seen[0].indices])
    assert len(blended) == 10 and not seen & {i for i, _ in blended}


def test_metrics_by_history_length(cold_split):
    model, prepared = cold_split.models["fusion"], cold_split.prepared
    data = prepared.data
    rows = evaluate_by_history_length(
        model, data.train, prepared.test, exclude=prepared.valid, buckets=((1, 3), (4, 10), (11, None))
    )
    assert [r["bucket"] for r in rows] == ["1-3", "4-10", "11+"]
    from recsys.evaluate import evaluate_ranking

    overall = evaluate_ranking(model.score, data.train, prepared.test, exclude=prepared.valid)
    assert sum(r["users"] for r in rows) == overall["n_users_evaluated"]
    short = evaluate_short_histories(
        model, data.train, prepared.test, exclude=prepared.valid, lengths=(1, 3), max_users=100
    )
    assert [r["history_items"] for r in short] == [1, 3]
    popular = evaluate_short_histories(
        cold_split.models["mostpop"], data.train, prepared.test, exclude=prepared.valid, lengths=(3,), max_users=100
    )
    assert short[1]["users"] == popular[0]["users"] > 0
    assert short[1]["ndcg@20"] > 0
