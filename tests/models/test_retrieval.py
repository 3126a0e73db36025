"""The ANN retrieval stage (recsys/retrieval.py): the flat index gives exactly the exact top-k, HNSW's recall@100,
seen items and filters, cold items, models without retrieval vectors, faiss missing."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("faiss")

from recsys.models.base import TrainData
from recsys.models.baselines import BPRMF, EASE, ContentOnly, LightGCN
from recsys.retrieval import RetrievalConfig, RetrievalIndex, import_faiss, recall_at

FLAT = RetrievalConfig(kind="flat")


def _data(n_users: int, n_items: int, seed: int = 0, cold: int = 0) -> TrainData:
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for u in range(n_users):
        items = rng.choice(n_items - cold, size=int(rng.integers(3, 30)), replace=False)
        rows += [u] * len(items)
        cols += list(items)
    train = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_users, n_items))
    return TrainData([f"u{u}" for u in range(n_users)], [f"i{i}" for i in range(n_items)], train)


def _factor_model(cls, data: TrainData, dim: int = 16, bias: bool = True, seed: int = 1, cold: int = 0):
    """A BPR-like model with clustered random factors (no training: the retrieval stage only reads them); the
    last ``cold`` items are cold (the model ranks them below every other)."""
    rng = np.random.default_rng(seed)
    model = cls()
    model._remember(data)
    centres = rng.normal(size=(8, dim))
    model.user_factors = (centres[rng.integers(0, 8, data.n_users)] + rng.normal(size=(data.n_users, dim))).astype(
        np.float32
    )
    model.item_factors = (
        centres[rng.integers(0, 8, data.n_items)] + 0.7 * rng.normal(size=(data.n_items, dim))
    ).astype(np.float32)
    model.item_bias = (2.0 * rng.normal(size=data.n_items)).astype(np.float32) if bias else None
    model.warm = np.arange(data.n_items) < data.n_items - cold
    return model


def _both(model, user, **kwargs):
    model.retrieval = None
    exact = model.recommend(user, **kwargs)
    model.retrieval = model._index
    return exact, model.recommend(user, **kwargs)


def _same(exact, ann):
    assert [i for i, _ in ann] == [i for i, _ in exact]
    np.testing.assert_allclose([s for _, s in ann], [s for _, s in exact], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls,bias", [(BPRMF, True), (LightGCN, False)])
def test_flat_index_gives_the_exact_top_k(cls, bias):
    data = _data(120, 1500)
    model = _factor_model(cls, data, bias=bias)
    model._index = model.use_retrieval(FLAT)
    assert model._index.kind == "flat" and model._index.n_indexed == 1500
    calls = []
    model.score = lambda users, _score=model.score: calls.append(1) or _score(users)  # the ANN path never scans
    for user in range(0, 120, 7):
        calls.clear()
        model.retrieval = model._index
        ann = model.recommend(user, k=10)
        assert not calls
        model.retrieval = None
        exact = model.recommend(user, k=10)
        _same(exact, ann)
        seen = {f"i{i}" for i in data.train[user].indices}
        assert len(ann) == 10 and not seen & {i for i, _ in ann}  # seen items are left out


def test_the_bias_dimension_matters():
    """Without the bias as an extra dimension the inner product would rank differently: the check can fail."""
    data = _data(60, 800)
    model = _factor_model(BPRMF, data, bias=True)
    vectors = model.retrieval_vectors()
    assert vectors.items.shape[1] == 17
    rows = np.arange(60)
    np.testing.assert_allclose(vectors.users(rows) @ vectors.items.T, model.score(rows), rtol=1e-4, atol=1e-4)
    without = model.user_factors @ model.item_factors.T
    assert not np.array_equal(np.argsort(-without, axis=1)[:, :10], np.argsort(-model.score(rows), axis=1)[:, :10])


def test_filters_groups_diversity_exposure_and_include_seen_agree_with_the_exact_path():
    data = _data(50, 1200, seed=3)
    model = _factor_model(BPRMF, data, seed=4)
    model._index = model.use_retrieval(FLAT)
    rng = np.random.default_rng(5)
    groups = rng.integers(0, 300, data.n_items)
    keep = rng.random(data.n_items) < 0.3
    rare = rng.random(data.n_items) < 0.03  # ~36 items: the first candidates hold too few, the stage widens
    membership = (rng.random(data.n_items) < 0.1).astype(float)
    for user in (0, 11, 42):
        _same(*_both(model, user, k=10, filters=keep))
        _same(*_both(model, user, k=10, filters=rare))
        _same(*_both(model, user, k=10, groups=groups))
        _same(*_both(model, user, k=10, exclude_seen=False))
        _same(*_both(model, user, k=8, diversity=0.4))
        _same(*_both(model, user, k=10, exposure=(membership, 0.3, 0.7)))
        _same(*_both(model, user, k=5, candidates=np.arange(0, 1200, 3)))


def test_cold_items_and_too_few_candidates_fall_back_to_the_exact_scan():
    data = _data(40, 600, seed=6, cold=100)  # the last 100 items have no interaction
    model = _factor_model(BPRMF, data, seed=7, cold=100)
    model._index = model.use_retrieval(FLAT)
    assert model._index.n_indexed == 500  # cold items are not indexed: the model ranks them below every warm one
    for user in (0, 7):
        _same(*_both(model, user, k=10))
        # only 3 warm items pass the filter: the list goes on with cold items, as the exact path's does
        keep = np.zeros(600, dtype=bool)
        keep[[5, 17, 250, 550, 560, 599]] = True
        exact, ann = _both(model, user, k=6, filters=keep, exclude_seen=False)
        _same(exact, ann)
        assert {i for i, _ in ann[3:]} == {"i550", "i560", "i599"}


def test_hnsw_recall_at_100_on_clustered_vectors():
    rng = np.random.default_rng(8)
    n, dim = 20_000, 32
    centres = rng.normal(size=(64, dim))
    items = (centres[rng.integers(0, 64, n)] + 0.6 * rng.normal(size=(n, dim))).astype(np.float32)
    users = (centres[rng.integers(0, 64, 200)] + 0.6 * rng.normal(size=(200, dim))).astype(np.float32)
    from recsys.models.base import RetrievalVectors

    vectors = RetrievalVectors(items, lambda rows: users[rows])
    index = RetrievalIndex.from_vectors(vectors, RetrievalConfig(exact_below=10_000, hnsw_m=32, ef_construction=80))
    assert index.kind == "hnsw"
    found = index.search(users, 100)
    exact = np.argsort(-(users @ items.T), axis=1)[:, :100]
    recall = recall_at(found, exact)
    assert recall >= 0.95, recall
    flat = RetrievalIndex.from_vectors(vectors, FLAT)
    assert recall_at(flat.search(users, 100), exact) == 1.0


def test_content_model_is_exact_too():
    data = _data(30, 400, seed=9)
    model = ContentOnly()
    model._remember(data)
    vectors = np.random.default_rng(10).normal(size=(400, 24)).astype(np.float32)
    model.item_vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    model._index = model.use_retrieval(FLAT)
    for user in (0, 29):
        _same(*_both(model, user, k=10))


def test_a_model_without_retrieval_vectors_says_so_and_keeps_its_exact_scan():
    data = _data(30, 200, seed=11)
    model = EASE(l2=50.0).fit(data)
    assert model.retrieval_vectors() is None
    with pytest.raises(ValueError, match=r"not a user \. item inner product"):
        model.use_retrieval()
    assert model.retrieval is None and len(model.recommend(0, k=5)) == 5


def test_faiss_missing_is_a_plain_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        import_faiss()


def test_attach_modes():
    from recsys.retrieval import attach_retrieval

    data = _data(30, 300, seed=12)
    model = _factor_model(BPRMF, data, seed=13)
    assert attach_retrieval(model, "auto") is None and model.retrieval is None  # below exact_below: exact scan
    assert attach_retrieval(model, "auto", RetrievalConfig(exact_below=100)).kind == "hnsw"
    assert model.retrieval is not None
    assert attach_retrieval(model, "off") is None and model.retrieval is None
    assert attach_retrieval(model, "on").kind == "flat"
    ease = EASE(l2=50.0).fit(data)
    assert attach_retrieval(ease, "auto", RetrievalConfig(exact_below=1)) is None
    with pytest.raises(ValueError, match="inner product"):
        attach_retrieval(ease, "on")
    with pytest.raises(ValueError, match="unknown ANN mode"):
        attach_retrieval(model, "always")


def test_served_bpr_run_recommends_through_the_index(tmp_path):
    """``serve --ann on`` over a small BPR-MF run: /health names the index, /recommend lists what the exact path
    lists; ``--ann on`` for a model without retrieval vectors is refused plainly."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from recsys.cli import CommandError
    from recsys.data.demo import generate_demo_bundle
    from recsys.serve import ServedRun, create_app
    from recsys.train.run import RunConfig, train_run
    from recsys.workspace import Workspace

    workspace = Workspace(tmp_path / "ws")
    bundle = generate_demo_bundle(tmp_path / "bundle", n_users=80, n_items=60, n_interactions=1200, pictures=False)
    assert workspace.import_bundle(bundle, name="demo").ok
    config = RunConfig(
        dataset="demo",
        model="bpr",
        modalities=["behaviour"],
        baselines=[],
        final_model=False,
        bpr_options={"epochs": 3, "eval_every": 1},
    )
    train_run(workspace, config, run_id="bpr-run")
    served = ServedRun(workspace, "bpr-run", ann="on")
    assert served.retrieval is not None and served.model.retrieval is served.retrieval
    with TestClient(create_app(workspace, "bpr-run", served=served)) as client:
        assert client.get("/health").json()["retrieval"]["kind"] == "flat"
        for user in served.model.user_ids[:5]:
            got = client.get("/recommend", params={"user": user, "k": 5}).json()["recommendations"]
            served.model.retrieval = None
            exact = served.model.recommend(user, k=5, groups=served.groups)
            served.model.retrieval = served.retrieval
            assert [r["item_id"] for r in got] == [i for i, _ in exact]
    assert ServedRun(workspace, "bpr-run", ann="auto").retrieval is None  # 60 items: the exact scan
    train_run(
        workspace,
        RunConfig(dataset="demo", model="mostpop", modalities=["behaviour"], baselines=[], final_model=False),
        run_id="pop-run",
    )
    with pytest.raises(CommandError, match="inner product"):
        ServedRun(workspace, "pop-run", ann="on")
