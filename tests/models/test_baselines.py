"""Baselines: fit / score / recommend / save-load on a small block-structured synthetic dataset.

60 users in 4 groups of 15; group g likes the 9 items of block g (items 9g..9g+8). Each user has 6
of their block's items in train, 1 in valid and 2 in test; everyone also likes some of 4 globally
popular items (36..39), which makes popularity point away from the held-out block items, and items
40 and 41 have no training interaction at all (cold). A collaborative model must find the block.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.evaluate import evaluate_ranking
from recsys.models import MODEL_REGISTRY, Recommender, TrainData, get_model, list_models
from recsys.models.baselines import BPRMF, EASE, ContentOnly, ItemKNN, LightGCN, MostPop, content_matrix

N_USERS, N_BLOCKS, BLOCK, N_POPULAR, N_COLD = 60, 4, 9, 4, 2
N_ITEMS = N_BLOCKS * BLOCK + N_POPULAR + N_COLD  # 42
POPULAR = np.arange(N_BLOCKS * BLOCK, N_BLOCKS * BLOCK + N_POPULAR)
COLD = np.arange(N_ITEMS - N_COLD, N_ITEMS)
WARM = np.setdiff1d(np.arange(N_ITEMS), COLD)

# small, fast settings for the torch models (the defaults are tuned for real data)
FAST = {
    "mostpop": {},
    "itemknn": {"k_neighbors": 20},
    "ease": {"l2": 10.0},
    "bpr": {
        "dim": 16,
        "lr": 0.1,
        "weight_decay": 1e-3,
        "epochs": 30,
        "batch_size": 1024,
        "eval_every": 10,
        "patience": 2,
        "device": "cpu",
    },
    "lightgcn": {
        "dim": 16,
        "lr": 0.05,
        "epochs": 30,
        "batch_size": 1024,
        "eval_every": 10,
        "patience": 2,
        "device": "cpu",
    },
    "content": {},
}
COLLABORATIVE = ["itemknn", "ease", "bpr", "lightgcn"]


def _matrix(pairs: list[tuple[int, int]]) -> sp.csr_matrix:
    rows, cols = zip(*pairs)
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(N_USERS, N_ITEMS))


def _block_features(rng: np.random.Generator) -> np.ndarray:
    """Content that knows the blocks: one-hot block + noise (popular and cold items get their own noise)."""
    feats = rng.normal(0, 0.1, size=(N_ITEMS, N_BLOCKS + 3)).astype(np.float32)
    for b in range(N_BLOCKS):
        feats[b * BLOCK : (b + 1) * BLOCK, b] += 1.0
    feats[COLD, COLD - COLD[0]] += 1.0  # the cold items look like blocks 0 and 1
    return feats


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tensors here are tiny: extra threads only add overhead (and contention on a shared CI box)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def block_data() -> dict:
    rng = np.random.default_rng(7)
    train, valid, test = [], [], []
    for u in range(N_USERS):
        block = u // (N_USERS // N_BLOCKS)
        items = rng.permutation(np.arange(block * BLOCK, (block + 1) * BLOCK))
        train += [(u, int(i)) for i in items[:6]]
        valid.append((u, int(items[6])))
        test += [(u, int(i)) for i in items[7:9]]
        train += [(u, int(i)) for i in POPULAR if rng.random() < 0.6]
    data = TrainData(
        user_ids=[f"u{u}" for u in range(N_USERS)],
        item_ids=[f"i{i}" for i in range(N_ITEMS)],
        train=_matrix(train),
        valid=_matrix(valid),
        item_features=_block_features(rng),
    )
    return {"data": data, "test": _matrix(test), "valid": _matrix(valid)}


@pytest.fixture(scope="module")
def fitted(block_data) -> dict[str, Recommender]:
    return {name: get_model(name, **cfg).fit(block_data["data"]) for name, cfg in FAST.items()}


def test_registry_lists_every_baseline():
    names = set(list_models())
    assert {"mostpop", "itemknn", "ease", "bpr", "lightgcn", "content"} <= names
    assert MODEL_REGISTRY["ease"] is EASE and MODEL_REGISTRY["bpr"] is BPRMF
    assert MODEL_REGISTRY["lightgcn"] is LightGCN and MODEL_REGISTRY["content"] is ContentOnly
    assert MODEL_REGISTRY["itemknn"] is ItemKNN and MODEL_REGISTRY["mostpop"] is MostPop
    assert ContentOnly.scores_cold_items and not EASE.scores_cold_items


def test_defaults_are_recorded_in_config():
    assert EASE().config["l2"] == "auto" and EASE().config["fallback_l2"] == 250.0
    assert ItemKNN().config["k_neighbors"] == 100
    bpr = BPRMF(lr=0.01)
    assert bpr.config["dim"] == 64 and bpr.config["batch_size"] == 4096 and bpr.config["lr"] == 0.01
    assert LightGCN().config["layers"] == 3


@pytest.mark.parametrize("name", list(FAST))
def test_fit_and_score_shapes(name, fitted, block_data):
    model = fitted[name]
    assert model.fit_seconds is not None and model.fit_seconds >= 0
    users = np.array([0, 5, 59, 5])
    scores = model.score(users)
    assert scores.shape == (4, N_ITEMS) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    np.testing.assert_array_equal(scores[1], scores[3])  # same user, same scores
    np.testing.assert_allclose(model.score(np.array([5]))[0], scores[1], rtol=1e-6, atol=1e-6)
    assert model.score(np.array([], dtype=np.int64)).shape == (0, N_ITEMS)


@pytest.mark.parametrize("name", ["mostpop", *COLLABORATIVE])
def test_cold_items_score_below_every_warm_item(name, fitted):
    scores = fitted[name].score(np.arange(N_USERS))
    assert np.isfinite(scores[:, COLD]).all()
    assert (scores[:, COLD].max(axis=1) < scores[:, WARM].min(axis=1)).all()


@pytest.mark.parametrize("name", list(FAST))
def test_recommend_excludes_seen_and_applies_filters(name, fitted, block_data):
    model = fitted[name]
    train = block_data["data"].train
    for user in (0, 17, 44):
        seen = set(train[user].indices)
        recs = model.recommend(user, k=10)
        assert len(recs) == 10
        ids = [int(i[1:]) for i, _ in recs]
        assert not seen & set(ids)
        assert [s for _, s in recs] == sorted((s for _, s in recs), reverse=True)
        # a keep-mask: only even items
        mask = np.arange(N_ITEMS) % 2 == 0
        ids = [int(i[1:]) for i, _ in model.recommend(f"u{user}", k=N_ITEMS, filters=mask)]
        assert ids and all(i % 2 == 0 for i in ids) and not seen & set(ids)
        assert len(ids) == int((mask & ~np.isin(np.arange(N_ITEMS), list(seen))).sum())
        # callable filters combine
        ids = [
            int(i[1:])
            for i, _ in model.recommend(user, k=5, filters=[lambda items: items < 20, lambda items: items % 3 == 0])
        ]
        assert all(i < 20 and i % 3 == 0 for i in ids)
    # without exclusion, seen items may come back
    everything = model.recommend(0, k=N_ITEMS, exclude_seen=False)
    assert len(everything) == N_ITEMS


@pytest.mark.parametrize("name", list(FAST))
def test_save_load_gives_identical_scores(name, fitted, tmp_path):
    model = fitted[name]
    folder = model.save(tmp_path / name)
    assert {p.name for p in folder.iterdir()} >= {"config.json", "ids.json", "weights.safetensors"}
    loaded = Recommender.load(folder)
    assert type(loaded) is type(model)
    assert loaded.config == model.config
    users = np.arange(N_USERS)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    assert loaded.recommend("u3", k=5) == model.recommend("u3", k=5)
    assert type(model).load(folder).name == name


@pytest.mark.parametrize("name", COLLABORATIVE + ["content"])
def test_beats_popularity_on_held_out_items(name, fitted, block_data):
    data, test = block_data["data"], block_data["test"]

    def ndcg(model):
        return evaluate_ranking(model.score, data.train, test, exclude=block_data["valid"], ks=(10,))["ndcg@10"]

    pop, ours = ndcg(fitted["mostpop"]), ndcg(fitted[name])
    assert ours > pop + 0.2, (name, ours, pop)
    assert ours > 0.5, (name, ours)


@pytest.mark.parametrize("cls", [BPRMF, LightGCN])
def test_torch_models_keep_the_best_valid_epoch(cls, fitted, block_data):
    model = fitted[cls.name]
    evaluated = [h for h in model.history if "valid_ndcg@20" in h]
    assert evaluated, "valid data was given, so the model must have been evaluated"
    best = max(evaluated, key=lambda h: h["valid_ndcg@20"])
    assert model.best_epoch == best["epoch"]
    data = block_data["data"]
    ndcg = evaluate_ranking(model.score, data.train, data.valid, ks=(20,))["ndcg@20"]
    assert ndcg == pytest.approx(best["valid_ndcg@20"], abs=1e-6)


@pytest.mark.parametrize("cls", [BPRMF, LightGCN])
def test_torch_models_are_seeded_and_train_without_valid(cls, block_data):
    d = block_data["data"]
    no_valid = TrainData(user_ids=d.user_ids, item_ids=d.item_ids, train=d.train)
    cfg = FAST[cls.name] | {"epochs": 8}
    a, b = cls(**cfg).fit(no_valid), cls(**cfg).fit(no_valid)
    np.testing.assert_array_equal(a.score(np.arange(N_USERS)), b.score(np.arange(N_USERS)))
    assert a.best_epoch == 8 and len(a.history) == 8
    c = cls(**(cfg | {"seed": 1})).fit(no_valid)
    assert not np.array_equal(a.score(np.arange(N_USERS)), c.score(np.arange(N_USERS)))


def test_bpr_negatives_avoid_positives():
    import torch

    pos = torch.tensor([0 * 5 + 1, 0 * 5 + 2, 1 * 5 + 0, 1 * 5 + 3])  # user*n_items + item, sorted
    users = torch.tensor([0, 1] * 500)
    gen = torch.Generator().manual_seed(0)
    neg = BPRMF._negatives(users, pos, 5, gen)
    keys = users * 5 + neg
    assert not torch.isin(keys, pos).any()
    assert neg.min() >= 0 and neg.max() < 5


def test_itemknn_keeps_at_most_k_neighbours(block_data):
    model = ItemKNN(k_neighbors=3, shrink=0.0).fit(block_data["data"])
    per_target = np.diff(model.similarity.tocsc().indptr)
    assert per_target.max() <= 3
    assert model.similarity.diagonal().sum() == 0
    # cosine without shrinkage is at most 1, and symmetric where both directions were kept
    assert model.similarity.data.max() <= 1.0 + 1e-6


def test_itemknn_block_computation_matches_one_block(block_data):
    a = ItemKNN(k_neighbors=5, block_size=7).fit(block_data["data"])
    b = ItemKNN(k_neighbors=5, block_size=4096).fit(block_data["data"])
    np.testing.assert_allclose(a.score(np.arange(N_USERS)), b.score(np.arange(N_USERS)), rtol=1e-6)


def test_ease_matches_the_closed_form(block_data):
    data = block_data["data"]
    model = EASE(l2=3.0).fit(data)
    x = data.train.toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + 3.0 * np.eye(N_ITEMS))
    b = np.eye(N_ITEMS) - p / np.diag(p)
    expected = x @ b
    scores = model.score(np.arange(N_USERS))
    np.testing.assert_allclose(scores[:, WARM], expected[:, WARM], rtol=1e-4, atol=1e-5)


def test_ease_refuses_a_huge_catalogue(block_data):
    with pytest.raises(ValueError, match="itemknn"):
        EASE(max_items=10).fit(block_data["data"])


def test_content_from_modalities_with_masks(block_data):
    data = block_data["data"]
    rng = np.random.default_rng(0)
    text = rng.normal(size=(N_ITEMS, 5)).astype(np.float32)
    text_mask = np.ones(N_ITEMS, dtype=bool)
    text_mask[3] = False
    image = rng.normal(size=(N_ITEMS, 3)).astype(np.float32)
    image_mask = np.zeros(N_ITEMS, dtype=bool)
    image_mask[:10] = True
    feats = SimpleNamespace(text=text, text_mask=text_mask, image=image, image_mask=image_mask)
    matrix = content_matrix(feats, N_ITEMS)
    assert matrix.shape == (N_ITEMS, 8)
    np.testing.assert_allclose(np.linalg.norm(matrix[:10, :5], axis=1)[text_mask[:10]], 1.0, rtol=1e-5)
    assert not matrix[3, :5].any() and not matrix[10:, 5:].any()
    np.testing.assert_allclose(np.linalg.norm(matrix[:10, 5:], axis=1), 1.0, rtol=1e-5)
    # one modality absent entirely
    only_text = content_matrix(SimpleNamespace(text=text, text_mask=text_mask, image=None, image_mask=None), N_ITEMS)
    assert only_text.shape == (N_ITEMS, 5)

    with_feats = TrainData(user_ids=data.user_ids, item_ids=data.item_ids, train=data.train, item_features=feats)
    model = ContentOnly().fit(with_feats)
    scores = model.score(np.arange(N_USERS))
    assert np.isfinite(scores).all() and scores.max() <= 1.0 + 1e-5 and scores.min() >= -1.0 - 1e-5


def test_content_scores_cold_items_from_their_features(fitted, block_data):
    model = fitted["content"]
    scores = model.score(np.arange(N_USERS))
    # cold item 40 looks like block 0, cold item 41 like block 1: their users rank them high
    block0, block1 = np.arange(0, 15), np.arange(15, 30)
    assert (scores[block0, COLD[0]] > scores[block0, COLD[1]]).all()
    assert (scores[block1, COLD[1]] > scores[block1, COLD[0]]).all()
    recs = [i for i, _ in model.recommend(0, k=5)]
    assert "i40" in recs


def test_content_needs_features(block_data):
    d = block_data["data"]
    with pytest.raises(ValueError, match="item features"):
        ContentOnly().fit(TrainData(user_ids=d.user_ids, item_ids=d.item_ids, train=d.train))
    with pytest.raises(ValueError, match="shape"):
        ContentOnly().fit(
            TrainData(
                user_ids=d.user_ids, item_ids=d.item_ids, train=d.train, item_features=np.ones((3, 2), dtype=np.float32)
            )
        )


def test_unfitted_model_says_so():
    with pytest.raises(RuntimeError, match="not fitted"):
        EASE().score(np.array([0]))
    with pytest.raises(RuntimeError, match="not fitted"):
        BPRMF().score(np.array([0]))


@pytest.mark.parametrize(
    "users, items, per_user",
    [(40, 30, 12), (3000, 400, 3)],  # few long histories: the dense product; many short ones: the sparse one
)
def test_ease_gram_is_exact_on_either_product(users, items, per_user):
    from recsys.models.ease import _gram

    rng = np.random.default_rng(0)
    rows = np.repeat(np.arange(users), per_user)
    cols = np.concatenate([rng.choice(items, per_user, replace=False) for _ in range(users)])
    x = sp.csr_matrix((np.full(len(rows), 2.0), (rows, cols)), shape=(users, items))  # any value counts as 1
    binary = (x.toarray() != 0).astype(np.float64)
    np.testing.assert_array_equal(_gram(x, block_rows=17), binary.T @ binary)


@pytest.mark.parametrize("name", list(FAST))
def test_the_score_without_history_is_what_no_history_item_accounts_for(name, fitted):
    """score_without_history: the part of a new user's scores that no history item brings (0 for the history
    sums, popularity for MostPop, the item biases for the factor models); an explanation's one liked item adds
    its score minus this (against the catalogue's average, a liked candle 'added' a bestseller's popularity)."""
    model = fitted[name]
    without = model.score_without_history(mixing_history=[0])
    assert without.shape == (N_ITEMS,) and np.isfinite(without).all()
    if name in ("itemknn", "ease", "content"):
        # every score is a sum over the history's items (cold items are sunk below every warm one, as always)
        assert np.allclose(without[WARM], 0.0)
    if name == "mostpop":
        assert np.allclose(without, model.score_history([0]))  # nothing depends on the history
    if name in ("bpr", "lightgcn"):
        bias = model.item_bias if model.item_bias is not None else np.zeros(N_ITEMS)
        assert np.allclose(without, bias)


def test_the_popularity_share_of_a_visitors_list(fitted):
    from recsys.explain.coldstart import popularity_share, recommend_for_history

    liked = ["i0", "i1"]
    for name, expected in (("mostpop", 1.0), ("ease", 0.0)):
        items = [item for item, _ in recommend_for_history(fitted[name], liked, k=5)]
        assert popularity_share(fitted[name], liked, items) == pytest.approx(expected, abs=1e-6), name
    assert popularity_share(fitted["ease"], liked, []) is None


def test_items_not_for_sale_are_learned_from_and_never_recommended(block_data, tmp_path):
    """A shop's drafts and archived products stay in the data (people bought them) but no list may offer them:
    not the list of a known user, not a visitor's, not after the model is saved and loaded."""
    import dataclasses

    from recsys.explain.coldstart import recommend_for_history

    data = block_data["data"]
    off_sale = np.zeros(data.n_items, dtype=bool)
    off_sale[list(POPULAR)] = True  # the items every list would hold
    model = get_model("ease", l2=50.0).fit(dataclasses.replace(data, not_for_sale=off_sale))
    plain = get_model("ease", l2=50.0).fit(data)
    hidden = {f"i{i}" for i in POPULAR}
    assert hidden & {item for u in range(5) for item, _ in plain.recommend(u, k=10)}  # they would be offered
    for user in range(data.n_users):
        assert not hidden & {item for item, _ in model.recommend(user, k=10)}
    assert not hidden & {item for item, _ in recommend_for_history(model, ["i0", "i1"], k=10)}
    assert model.seen.nnz == plain.seen.nnz  # still learned from: the users' histories are whole
    loaded = Recommender.load(model.save(tmp_path / "model"))
    assert np.array_equal(loaded.for_sale(), ~off_sale)
    assert not hidden & {item for item, _ in loaded.recommend(3, k=10)}
    assert plain.for_sale().all() and Recommender.load(plain.save(tmp_path / "plain")).not_for_sale is None


def test_a_loaded_run_offers_what_the_catalogue_imported_now_sells(block_data):
    """What a shop sells changes between imports of its catalogue: a product archived since training is not
    offered, one archived at training and back on sale is, and a dataset that is gone leaves the model as trained."""
    import dataclasses
    from types import SimpleNamespace

    import pandas as pd

    from recsys.train.records import follow_current_import

    data = block_data["data"]
    off_sale = np.zeros(data.n_items, dtype=bool)
    off_sale[list(POPULAR)] = True
    model = get_model("ease", l2=50.0).fit(dataclasses.replace(data, not_for_sale=off_sale))
    ids = [str(i) for i in model.item_ids]
    offered = [item for item, _ in model.recommend(0, k=5)]
    # the catalogue imported again: the popular items on sale again, this user's list archived
    status = ["archived" if item in offered else "active" for item in ids]
    now = SimpleNamespace(items=pd.DataFrame({"item_id": ids, "title": ids, "Status": status}))
    assert follow_current_import(model, now) is None  # every item is still in the catalogue
    assert set(np.asarray(ids)[~model.for_sale()]) == set(offered)
    listed = {item for u in range(data.n_users) for item, _ in model.recommend(u, k=10)}
    assert not set(offered) & listed and {f"i{i}" for i in POPULAR} & listed
    # no status column any more: everything is for sale; the dataset gone: the marks stay as they are
    follow_current_import(model, SimpleNamespace(items=pd.DataFrame({"item_id": ids, "title": ids})))
    assert model.for_sale().all() and model.not_for_sale is None
    model.mark_not_for_sale(off_sale)
    follow_current_import(model, None)
    assert np.array_equal(model.for_sale(), ~off_sale)
    with pytest.raises(ValueError, match="shape"):
        model.mark_not_for_sale(np.ones(3, dtype=bool))
