"""The fusion model: per-user weights, exact shares, experts, training, persistence, ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys.data.demo import demo_ground_truth, generate_demo_bundle
from recsys.evaluate import evaluate_ranking
from recsys.explain import segment_recovery, user_weights_frame
from recsys.features.extract import extract_item_features
from recsys.models import Recommender, get_model
from recsys.models.ease import ease_inverse, ease_scores_without_rows, ease_weights
from recsys.models.fusion import FusionRecommender
from recsys.train.data import prepare_data
from recsys.workspace import Workspace
from tests.conftest import DEMO_RUN

FAST = dict(epochs=6, patience=6, device="cpu")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A small demo catalogue with the real default encoders (MiniLM text, EfficientNet-Lite0 pictures)."""
    root = tmp_path_factory.mktemp("fusion")
    bundle_dir = generate_demo_bundle(root / "bundle", n_users=400, n_items=240, n_interactions=12000, seed=11)
    workspace = Workspace(root / "ws")
    assert workspace.import_bundle(bundle_dir, name="demo").ok
    bundle = workspace.load_dataset("demo")
    features = extract_item_features(
        bundle.items, bundle.schema.items, bundle.root, workspace.features_dir, text_encoder="minilm", device="cpu"
    )
    prepared = prepare_data(
        bundle.interactions, item_features=features, catalogue_ids=bundle.items["item_id"].to_numpy(str)
    )
    return {"bundle": bundle, "bundle_dir": bundle_dir, "features": features, "prepared": prepared}


@pytest.fixture(scope="module")
def trained(demo):
    losses = []

    class Recorder:
        def on_epoch_end(self, model, record, improved, resume_state):
            losses.append(record["loss"])

    model = FusionRecommender(epochs=15, patience=15, device="cpu").fit(demo["prepared"].data, callbacks=[Recorder()])
    return model, losses


@pytest.fixture(params=["demo-run", pytest.param("catalogue", marks=pytest.mark.slow)])
def any_trained(request):
    """The model mechanics hold for any trained fusion model: the session's small demo run (fast tier) and this
    module's model (slow tier)."""
    if request.param == "demo-run":
        return Recommender.load(request.getfixturevalue("demo_template") / "runs" / DEMO_RUN / "model")
    return request.getfixturevalue("trained")[0]


def test_user_weights_sum_to_one_and_items_renormalise_over_what_they_have(any_trained):
    model = any_trained
    assert model.explains_by_modality()
    assert model.modalities == ["behaviour", "text", "image", "attributes"]
    weights = model.user_modality_weights(np.arange(20))
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-5)
    per_item = model.attention_matrix(np.arange(20))
    present = model.item_presence()
    np.testing.assert_allclose(per_item.sum(-1), 1.0, atol=1e-5)
    missing = ~np.broadcast_to(present, per_item.shape)
    assert missing.any()  # the demo has items without pictures and without descriptions
    assert np.all(per_item[missing] == 0.0)
    # the per-item weights are the ones the scores are mixed with (what "Why this?" shows for the same items)
    user, items = 3, np.flatnonzero(present.all(1))[:5].tolist() + np.flatnonzero(~present.all(1))[:5].tolist()
    explained = model.explain_scores(user, items)
    np.testing.assert_allclose(model.attention_matrix([user], items)[0], explained["attention"], atol=1e-5)
    # an item with every modality spreads the user's weights by its own evidence only: the order of the
    # modalities a user leans on is kept for such an item (one positive factor per content modality)
    full = np.flatnonzero(present.all(1))[0]
    assert np.corrcoef(per_item[:, full, 0], weights[:, 0])[0, 1] > 0.9


def test_weights_are_asked_for_by_user_id_as_well_as_by_row(any_trained):
    # user_modality_weights(["U0001"]) raised int()'s ValueError, while recommend("U0001") takes ids
    model = any_trained
    ids = [str(u) for u in model.user_ids[:3]]
    np.testing.assert_array_equal(model.user_modality_weights(ids), model.user_modality_weights(np.arange(3)))
    np.testing.assert_array_equal(model.user_modality_weights(np.array(ids)), model.user_modality_weights([0, 1, 2]))


def test_gate_evidence_is_what_the_weights_are_computed_from(any_trained):
    model = any_trained
    users = np.arange(12)
    evidence, lengths = model.gate_evidence(users)
    assert evidence.shape == (12, 2 * len(model.modalities)) and np.isfinite(evidence).all()
    np.testing.assert_array_equal(lengths, np.diff(sp.csr_matrix(model.seen).indptr)[:12])
    with torch.no_grad():
        weights = model.gate.user_weights(torch.as_tensor(evidence), torch.as_tensor(lengths)).numpy()
    np.testing.assert_allclose(weights, model.user_modality_weights(users), atol=1e-6)
    assert evidence.std(axis=0)[: len(model.modalities)].min() > 0  # every modality's coherence varies


def test_users_get_different_weights(any_trained):
    model = any_trained
    weights = model.user_modality_weights()
    assert weights.std(axis=0).min() > 0.01  # not one set of weights for everybody


def test_shares_add_up_to_the_score(any_trained):
    model = any_trained
    user = model.user_ids[3]
    items = list(model.item_ids[:50])
    parts = model.explain_scores(user, items)
    np.testing.assert_allclose(parts["shares"].sum(-1), parts["score"], atol=1e-4)
    full = model.score(np.array([model.user_index(user)]))[0, :50]
    np.testing.assert_allclose(parts["score"], full, atol=1e-4)
    np.testing.assert_allclose(parts["user_weights"], model.user_modality_weights([3])[0], atol=1e-6)


@pytest.mark.slow  # the module's catalogue: real MiniLM and EfficientNet features, 15 epochs
def test_masking_a_modality_removes_exactly_its_share_when_nothing_is_renormalised(demo):
    model = FusionRecommender(**FAST, renormalise_missing=False).fit(demo["prepared"].data)
    items = np.arange(30)
    parts = model.explain_scores(0, items)
    masks = np.zeros((30, len(model.modalities)), bool)
    image = model.modalities.index("image")
    masks[:, image] = True
    base, masked = model.masked_scores(0, items, masks)
    np.testing.assert_allclose(base - masked, parts["shares"][:, image], atol=1e-4)


def test_each_expert_reads_only_its_own_modality(any_trained):
    model = any_trained
    history = sp.csr_matrix(model.seen[:5])
    before = model._expert_z(history).z.clone()
    saved = model._vectors["image"].clone()
    try:
        model._vectors["image"] = saved + 0.5 * saved.roll(1, dims=0)
        after = model._expert_z(history).z
    finally:
        model._vectors["image"] = saved
    changed = (before - after).abs().amax(dim=(0, 2))
    image = model.modalities.index("image")
    assert changed[image] > 0
    assert all(changed[m] == 0 for m in range(len(model.modalities)) if m != image)


@pytest.mark.slow  # the module's catalogue: real MiniLM and EfficientNet features, 15 epochs
def test_training_lowers_the_loss_and_beats_mostpop_and_ease(demo, trained):
    model, losses = trained
    assert losses[-1] < losses[0]
    prepared = demo["prepared"]
    data = prepared.data
    ours = evaluate_ranking(model.score, data.train, prepared.test, exclude=prepared.valid, ks=(20,))
    for name in ("mostpop", "ease"):
        baseline = get_model(name).fit(data)
        theirs = evaluate_ranking(baseline.score, data.train, prepared.test, exclude=prepared.valid, ks=(20,))
        assert ours["ndcg@20"] > theirs["ndcg@20"], name


@pytest.mark.slow  # the module's catalogue: real MiniLM and EfficientNet features, 15 epochs
def test_weights_recover_the_planted_segments(demo, trained):
    """The demo plants each user's taste segment; the arg-max of the centred weights should find it."""
    model, _ = trained
    truth, _ = demo_ground_truth(demo["bundle_dir"])
    recovery = segment_recovery(user_weights_frame(model), truth, model.modalities)
    assert recovery["users"] == model.n_users
    assert recovery["segment_accuracy"] >= 0.7, recovery


@pytest.mark.slow  # the module's catalogue: real MiniLM and EfficientNet features, 15 epochs
def test_new_users_with_one_to_three_items_beat_mostpop(demo, trained):
    from recsys.explain import evaluate_short_histories

    model, _ = trained
    prepared = demo["prepared"]
    mostpop = get_model("mostpop").fit(prepared.data)
    ours = evaluate_short_histories(model, prepared.data.train, prepared.test, lengths=(1, 2, 3), seed=0)
    pop = evaluate_short_histories(mostpop, prepared.data.train, prepared.test, lengths=(1, 2, 3), seed=0)
    for mine, theirs in zip(ours, pop):
        assert mine["history_items"] == theirs["history_items"]
        assert mine["ndcg@20"] >= theirs["ndcg@20"], (ours, pop)


def test_save_and_load_give_identical_scores(any_trained, tmp_path):
    model = any_trained
    model.save(tmp_path / "model")
    loaded = Recommender.load(tmp_path / "model")
    assert isinstance(loaded, FusionRecommender)
    users = np.arange(10)
    np.testing.assert_allclose(loaded.score(users), model.score(users), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loaded.user_modality_weights(users), model.user_modality_weights(users), atol=1e-6)
    # the same list; the scores agree to float32 rounding (a BLAS reduction may add in another order)
    expected, got = model.recommend(model.user_ids[0], k=5), loaded.recommend(model.user_ids[0], k=5)
    assert [item for item, _ in got] == [item for item, _ in expected]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], rtol=1e-6)


@pytest.mark.slow  # the module's catalogue: real MiniLM and EfficientNet features, 15 epochs
def test_cold_items_get_content_scores(demo, tmp_path):
    bundle = demo["bundle"]
    prepared = prepare_data(
        bundle.interactions,
        protocol="cold",
        item_features=demo["features"],
        catalogue_ids=bundle.items["item_id"].to_numpy(str),
    )
    model = FusionRecommender(**FAST).fit(prepared.data)
    assert not model.item_presence()[prepared.cold_items, 0].any()  # no behaviour for cold items
    scores = model.score(np.arange(model.n_users))[:, prepared.cold_items]
    assert np.isfinite(scores).all() and scores.std() > 0
    fusion = evaluate_ranking(
        model.score, prepared.data.train, prepared.cold_test, ks=(3,), candidate_items=prepared.cold_items
    )
    mostpop = get_model("mostpop").fit(prepared.data)
    pop = evaluate_ranking(
        mostpop.score, prepared.data.train, prepared.cold_test, ks=(3,), candidate_items=prepared.cold_items
    )
    assert fusion["ndcg@3"] > pop["ndcg@3"]
    # the cold items are scored through the learned projection, and it survives saving
    plain = FusionRecommender(**FAST, projection_ridge=0.0).fit(prepared.data)
    users = np.arange(20)
    assert not np.allclose(plain.score(users)[:, prepared.cold_items], scores[:20], atol=1e-3)
    model.save(tmp_path / "cold-model")
    np.testing.assert_allclose(
        Recommender.load(tmp_path / "cold-model").score(users), model.score(users), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("fusion", ["mean", "item_gate", "concat"])
@pytest.mark.slow  # the module's catalogue: real MiniLM and EfficientNet features, 15 epochs
def test_fusion_variants_train_and_score(demo, fusion):
    model = FusionRecommender(**{**FAST, "epochs": 2, "fusion": fusion}).fit(demo["prepared"].data)
    scores = model.score(np.arange(5))
    assert scores.shape == (5, model.n_items) and np.isfinite(scores).all()
    assert model.explains_by_modality() == (fusion != "concat")
    if fusion == "mean":
        np.testing.assert_allclose(model.user_modality_weights(np.arange(5)), 0.25, atol=1e-6)


@pytest.mark.slow  # the module's catalogue: real MiniLM and EfficientNet features, 15 epochs
def test_bpr_trains_and_rating_losses_are_refused_plainly(demo):
    model = FusionRecommender(**{**FAST, "epochs": 2, "loss": "bpr"}).fit(demo["prepared"].data)
    assert np.isfinite(model.score(np.arange(5))).all()
    with pytest.raises(ValueError, match="loss must be one of"):
        FusionRecommender(loss="mse")


@pytest.mark.slow  # the module's catalogue: real MiniLM and EfficientNet features, 15 epochs
def test_sparse_neighbours_for_catalogues_too_large_for_ease(demo, tmp_path):
    model = FusionRecommender(**{**FAST, "epochs": 2, "behaviour_prior": "cosine", "neighbours": 20}).fit(
        demo["prepared"].data
    )
    assert sp.issparse(model._behaviour)
    scores = model.score(np.arange(5))
    assert np.isfinite(scores).all()
    model.save(tmp_path / "m")
    np.testing.assert_allclose(Recommender.load(tmp_path / "m").score(np.arange(5)), scores, atol=1e-5)


def test_out_of_fold_ease_scores_equal_a_refit_without_those_users():
    rng = np.random.default_rng(0)
    train = sp.csr_matrix((rng.random((40, 25)) < 0.3).astype(np.float32))
    removed = train[:6]
    visible = sp.csr_matrix((rng.random((6, 25)) < 0.2).astype(np.float32))
    expected = visible.toarray() @ ease_weights(ease_inverse(train[6:], 10.0))
    fast = ease_scores_without_rows(ease_inverse(train, 10.0), removed, visible)
    np.testing.assert_allclose(fast, expected, atol=1e-4)


def test_ease_inverse_is_row_major_and_symmetric():
    # scipy copies a column-major right-hand side before every sparse @ dense product: an N x N copy per
    # scoring batch and per Woodbury update (LAPACK returns the inverse column-major)
    rng = np.random.default_rng(1)
    train = sp.csr_matrix((rng.random((60, 30)) < 0.3).astype(np.float32))
    inverse = ease_inverse(train, 5.0)
    assert inverse.flags["C_CONTIGUOUS"] and ease_weights(inverse).flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(inverse, inverse.T, atol=1e-6)
    gram = (train.T @ train).toarray() + 5.0 * np.eye(30)
    np.testing.assert_allclose(inverse @ gram, np.eye(30), atol=1e-4)


def test_unknown_option_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown fusion options"):
        FusionRecommender(dimension=3)


def test_choice_coefficients_recover_the_weights_a_user_chose_by():
    """The gate's second evidence: a user's conditional-logit coefficients, fitted by damped Newton steps,
    recover the coefficients that generated the user's choices (and the ridge pulls few choices to 0)."""
    from recsys.models.fusion import _choice_coefficients

    generator = torch.Generator().manual_seed(0)
    users, k, n = 40, 3, 400
    features = torch.randn(users, k, n, generator=generator)
    true = torch.randn(users, k, generator=generator)
    probabilities = torch.softmax(torch.bmm(true.unsqueeze(1), features).squeeze(1), dim=1)
    draws = torch.multinomial(probabilities, 300, replacement=True, generator=generator)
    chosen = torch.zeros(users, n).scatter_add_(1, draws, torch.ones(users, 300))
    fitted = _choice_coefficients(features, chosen, ridge=0.1, iterations=20)
    assert float((fitted - true).abs().max()) < 0.35
    assert np.corrcoef(fitted.ravel().numpy(), true.ravel().numpy())[0, 1] > 0.97
    # rows leave the batch once converged: the same coefficients as every row taking every step
    every_step = _choice_coefficients(features, chosen, ridge=0.1, iterations=20, tolerance=0.0)
    assert float((fitted - every_step).abs().max()) < 1e-3
    few = torch.zeros(users, n).scatter_add_(1, draws[:, :2], torch.ones(users, 2))
    shrunk = _choice_coefficients(features, few, ridge=3.0)
    assert float(shrunk.abs().mean()) < 0.5 * float(fitted.abs().mean())


def test_batch_export_shares_add_up_to_the_score(any_trained, tmp_path):
    import pandas as pd

    from recsys.batch import export_recommendations

    model = any_trained
    summary = export_recommendations(
        model, tmp_path / "recs.parquet", k=5, user_rows=np.arange(12), chunk_size=5, shares=True
    )
    frame = pd.read_parquet(summary.path)
    columns = [f"share_{m}" for m in model.modalities]
    assert summary.columns[4:] == columns and len(frame) == 60
    np.testing.assert_allclose(frame[columns].sum(axis=1), frame["score"], atol=1e-4)
    user = model.user_ids[3]
    mine = frame[frame["user_id"] == user]
    parts = model.explain_scores(user, list(mine["item_id"]))
    np.testing.assert_allclose(mine[columns].to_numpy(), parts["shares"], atol=1e-6)


def test_a_modality_wider_than_content_max_dim_is_reduced_and_keeps_its_query_space(demo_template, tmp_path):
    """content_max_dim below the features' widths: every content modality is held on its principal
    directions, the text query path still compares in the encoder's own space, and save/load is exact."""
    from recsys.explain.coldstart import query_similarities
    from recsys.train.run import RunConfig, run_item_features

    workspace = Workspace(demo_template)
    bundle = workspace.load_dataset("demo")
    features = run_item_features(workspace, bundle, RunConfig(dataset="demo", text_encoder="tfidf"))
    prepared = prepare_data(
        bundle.interactions, item_features=features, catalogue_ids=bundle.items["item_id"].to_numpy(str)
    )
    model = FusionRecommender(epochs=2, content_max_dim=16, device="cpu").fit(prepared.data)
    for modality in ("text", "image", "attributes"):
        assert model._vectors[modality].shape[1] == 16
    vectors, present, centre = model.modality_vectors("text")
    assert vectors.shape[1] == centre.shape[0] == features.text.shape[1] > 16
    similarities = query_similarities(model, features.text[np.flatnonzero(present)[0]])
    assert np.isfinite(similarities[present]).all() and np.argmax(similarities) == np.flatnonzero(present)[0]
    model.save(tmp_path / "model")
    loaded = Recommender.load(tmp_path / "model")
    np.testing.assert_allclose(loaded.score(np.arange(5)), model.score(np.arange(5)), rtol=1e-5, atol=1e-5)


def _template_data(demo_template):
    """The session's demo dataset split as training splits it, with TF-IDF text (fast to build)."""
    from recsys.train.run import RunConfig, run_item_features

    workspace = Workspace(demo_template)
    bundle = workspace.load_dataset("demo")
    features = run_item_features(workspace, bundle, RunConfig(dataset="demo", text_encoder="tfidf"))
    return prepare_data(
        bundle.interactions, item_features=features, catalogue_ids=bundle.items["item_id"].to_numpy(str)
    ).data


def test_validation_too_large_for_the_budget_is_a_fixed_sample_of_users(demo_template, monkeypatch):
    """Above the cloze budget the gate rounds and the calibration use a seeded sample of validation users (so a
    round re-mixes cached experts instead of scoring every validation user); the fit still trains, the sample
    is the same every time, and the caller's validation matrix is left as it was."""
    data = _template_data(demo_template)
    valid_before = sp.csr_matrix(data.valid).copy()
    n_valid = int((np.diff(valid_before.indptr) > 0).sum())
    budget = (n_valid // 3) * 4 * data.train.shape[1]  # four modalities: room for a third of the users
    monkeypatch.setattr("recsys.models.fusion.model.MIN_VALIDATION_USERS", 1)
    first = FusionRecommender(epochs=2, cloze_budget=budget, device="cpu").fit(data)
    assert first.history["validation_users"] == {"used": n_valid // 3, "of": n_valid}
    assert np.isfinite(first.history["best_valid_ndcg@20"]) and np.isfinite(first.score(np.arange(5))).all()
    assert (sp.csr_matrix(data.valid) != valid_before).nnz == 0
    again = FusionRecommender(epochs=2, cloze_budget=budget, device="cpu").fit(data)
    np.testing.assert_allclose(again.score(np.arange(5)), first.score(np.arange(5)), atol=1e-5)
    whole = FusionRecommender(epochs=2, device="cpu").fit(data)
    assert whole.history["validation_users"] == {"used": n_valid, "of": n_valid}
    # never fewer than the minimum: above the budget those users are scored as the rounds go
    monkeypatch.setattr("recsys.models.fusion.model.MIN_VALIDATION_USERS", n_valid // 2)
    floor = FusionRecommender(epochs=2, cloze_budget=budget, device="cpu").fit(data)
    assert floor.history["validation_users"] == {"used": n_valid // 2, "of": n_valid}
    assert np.isfinite(floor.history["best_valid_ndcg@20"]) and np.isfinite(floor.score(np.arange(5))).all()


def test_scores_are_affine_in_the_calibrated_scale_boost_and_floor(demo_template):
    """The calibration tries each behaviour scale (and short-history boost) as base + value x slope from two
    scorings: that is exact because the mixture is affine in both, and it leaves the gate as it was."""
    from recsys.models.fusion.model import affine_scores

    model = Recommender.load(demo_template / "runs" / DEMO_RUN / "model")
    gate = model.gate
    rows = np.arange(30)
    for parameter in (gate.behaviour_scale, gate.short_history_boost, gate.popularity_floor):
        before = float(parameter)
        at = affine_scores(model.score, parameter)
        for value in (0.5, 2.5, 8.0):
            shortcut = at(rows, value)
            assert float(parameter) == before  # untouched by the two scorings
            parameter.fill_(value)
            np.testing.assert_allclose(shortcut, model.score(rows), rtol=1e-4, atol=1e-4)
            parameter.fill_(before)


def test_gate_adam_takes_torch_adams_steps_and_shares_its_checkpoints():
    """The gate's Adam (no torch.optim import) matches torch.optim.Adam step for step, and a state saved by
    either one resumes in the other (checkpoints of earlier runs stay resumable)."""
    from recsys.models.fusion.optimiser import GateAdam

    def parameters():
        generator = torch.Generator().manual_seed(3)
        return [
            torch.nn.Parameter(torch.randn(4, 3, generator=generator)),
            torch.nn.Parameter(torch.randn(5, generator=generator)),
        ]

    def loss(params, step):
        return sum(((p - step * 0.1) ** 2).sum() * (i + 1) for i, p in enumerate(params))

    ours, theirs = parameters(), parameters()
    mine, reference = GateAdam(ours, lr=0.05), torch.optim.Adam(theirs, lr=0.05)
    for step in range(25):
        for optimiser, params in ((mine, ours), (reference, theirs)):
            optimiser.zero_grad(set_to_none=True)
            loss(params, step).backward()
            optimiser.step()
        if step == 12:  # hand each one's state to a fresh instance of the other kind
            saved_mine, saved_reference = mine.state_dict(), reference.state_dict()
            reference = torch.optim.Adam(theirs, lr=0.05)
            reference.load_state_dict(saved_mine)
            mine = GateAdam(ours, lr=0.05)
            mine.load_state_dict(saved_reference)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(a, b, atol=1e-6), (a - b).abs().max()
    assert not torch.allclose(ours[0], parameters()[0])  # it did move


def test_the_popularity_floor_is_chosen_on_validation_and_a_model_saved_without_one_loads(demo_template, tmp_path):
    """Every floor tried has its validation NDCG@20 in the history; the one kept is within one paired standard
    error of the best and no larger than needed (the one-standard-error rule: the first floor of the grid whose
    mean is within that of the best). A model saved before the floor existed loads with a floor of 0 and
    scores as it did."""
    from safetensors.numpy import load_file, save_file

    data = _template_data(demo_template)
    model = FusionRecommender(epochs=2, device="cpu").fit(data)
    calibration = model.history["calibration"]
    table = calibration["popularity_floor_valid_ndcg@20"]
    assert list(table) == [f"floor {f:g}" for f in model.config["popularity_floors"]]
    chosen = calibration["popularity_floor"]
    assert chosen in model.config["popularity_floors"]
    assert float(model.gate.popularity_floor) == pytest.approx(chosen)  # a float32 buffer
    best = max(table.values())
    assert table[f"floor {chosen:g}"] <= best
    # a smaller floor was passed over only because it was more than a standard error below the best
    assert all(table[f"floor {f:g}"] < best for f in model.config["popularity_floors"] if f < chosen)

    model.gate.popularity_floor.fill_(0.0)
    model.save(tmp_path / "model")
    weights = load_file(str(tmp_path / "model" / "weights.safetensors"))
    del weights["gate.popularity_floor"]
    save_file(weights, str(tmp_path / "model" / "weights.safetensors"))
    older = Recommender.load(tmp_path / "model")
    assert float(older.gate.popularity_floor) == 0.0
    np.testing.assert_allclose(older.score(np.arange(10)), model.score(np.arange(10)), rtol=1e-5, atol=1e-5)


def test_popularity_tilt_reads_the_learned_item_factor(demo_template):
    """The per-item factor of a content modality is exp(slope x popularity z): the capability returns those
    slopes, one per content modality, and a larger one does give that modality more weight on a popular item."""
    model = Recommender.load(demo_template / "runs" / DEMO_RUN / "model")
    tilt = model.popularity_tilt()
    assert set(tilt) == set(model.modalities) - {"behaviour"}
    assert all(np.isfinite(v) for v in tilt.values())
    with torch.no_grad():
        model.gate.item_popularity_weight.fill_(0.0)
        model.gate.item_popularity_weight[model.modalities.index("text")] = 1.0
    assert model.popularity_tilt()["text"] == pytest.approx(1.0)
    assert get_model("ease").popularity_tilt() == {}


def test_the_behaviour_expert_ranks_a_long_history_as_ease_does(demo_template):
    """The behaviour expert's standardised scores keep EASE's order among the items left to recommend, also
    for a history holding most of the items with behaviour, in a catalogue where some items have none: the
    history's own items (which EASE scores highest) stay out of the standardisation, so the items left do
    not sink below the ones behaviour knows nothing about (the fault that put the fusion model below EASE on
    movielens' heavy users)."""
    import dataclasses

    data = _template_data(demo_template)
    counts = np.diff(sp.csc_matrix(data.train).indptr)
    warm = np.flatnonzero(counts > 0)
    dropped = warm[:: max(1, len(warm) // 30)]  # ~30 items nobody chose: no behaviour
    keep = np.ones(data.n_items, np.float32)
    keep[dropped] = 0.0
    data = dataclasses.replace(data, train=sp.csr_matrix(data.train @ sp.diags(keep)), ratings=None)
    data.train.eliminate_zeros()
    model = FusionRecommender(epochs=1, patience=1, ease_l2=250.0, device="cpu").fit(data)
    ease = get_model("ease", l2=250.0).fit(data)
    warm = np.flatnonzero(np.diff(sp.csc_matrix(data.train).indptr) > 0)
    history = np.sort(np.random.default_rng(0).choice(warm, size=int(0.7 * len(warm)), replace=False))
    row = sp.csr_matrix(
        (np.ones(len(history), np.float32), (np.zeros(len(history), np.int64), history)), shape=(1, data.n_items)
    )
    behaviour = model.modalities.index("behaviour")
    z = model._expert_z(row).z[0, behaviour].numpy().astype(np.float64)
    # standardised over the items left to recommend that have behaviour (their mean 0, spread 1), not over
    # the whole of it: the history's own items would pull the mean up
    left = np.setdiff1d(warm, history)
    assert abs(z[left].mean()) < 1e-4 and abs(z[left].std() - 1.0) < 1e-3
    expected = ease.score_history(history)
    z[history] = expected[history] = -np.inf
    by_ease = np.argsort(-expected, kind="stable")[:10]
    assert (expected[by_ease] > 0).all()  # the best items left, all ahead of the items without behaviour
    np.testing.assert_array_equal(np.argsort(-z, kind="stable")[:10], by_ease)


def test_the_projections_outside_vectors_are_rebuilt_on_load_and_older_files_still_load(demo_template, tmp_path):
    """The vectors of the items outside behaviour beside each projection are a copy of the modality's vectors:
    they are not saved, the loaded model rebuilds them and scores as the fitted one; a file from before (that
    carries them) loads the same."""
    import dataclasses

    from safetensors.numpy import load_file, save_file

    data = _template_data(demo_template)
    warm = np.flatnonzero(np.diff(sp.csc_matrix(data.train).indptr) > 0)
    keep = np.ones(data.n_items, np.float32)
    keep[warm[::10]] = 0.0  # items nobody chose: ordered by the projections
    train = sp.csr_matrix(data.train @ sp.diags(keep))
    train.eliminate_zeros()
    model = FusionRecommender(epochs=1, patience=1, device="cpu").fit(
        dataclasses.replace(data, train=train, ratings=None)
    )
    assert model._projections, "the fit has items outside behaviour, so it has projections"
    model.save(tmp_path / "model")
    saved = load_file(str(tmp_path / "model" / "weights.safetensors"))
    assert not [k for k in saved if k.startswith("projection_vectors.")]
    loaded = Recommender.load(tmp_path / "model")
    for modality, (weights, outside_vectors) in model._projections.items():
        torch.testing.assert_close(loaded._projections[modality][1], outside_vectors)
        torch.testing.assert_close(loaded._projections[modality][0], weights)
    np.testing.assert_allclose(loaded.score(np.arange(8)), model.score(np.arange(8)), rtol=1e-5, atol=1e-5)
    # an older file: the same model with the copies in it
    older = {**saved, **{f"projection_vectors.{m}": v.numpy() for m, (_, v) in model._projections.items()}}
    save_file(older, str(tmp_path / "model" / "weights.safetensors"))
    np.testing.assert_allclose(
        Recommender.load(tmp_path / "model").score(np.arange(8)), model.score(np.arange(8)), rtol=1e-5, atol=1e-5
    )


def test_the_choice_set_is_saved_with_the_model_and_an_older_model_loads_with_the_one_it_was_fitted_with(
    demo_template, tmp_path
):
    """The choice models' sample size is an option saved in config.json: a model fitted with a sample (here
    60 of 120 items) loads with it and scores as it did, whatever today's default. A model saved before the
    option existed loads with the count it was fitted with: 16,384 (every item of this catalogue), or 4,096
    for one saved with that default's companion content_max_dim of 256. A count too small is refused."""
    import json

    data = _template_data(demo_template)
    model = FusionRecommender(epochs=1, device="cpu", choice_alternatives=64).fit(data)
    assert model._choice_set(torch.ones(1, model.n_items, dtype=torch.bool)) is not None  # it sampled
    model.save(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["config"]["choice_alternatives"] == 64
    loaded = Recommender.load(tmp_path / "model")
    assert loaded.config["choice_alternatives"] == 64
    np.testing.assert_allclose(loaded.score(np.arange(20)), model.score(np.arange(20)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        loaded.user_modality_weights(np.arange(20)), model.user_modality_weights(np.arange(20)), atol=1e-6
    )

    for content_max_dim, expected in ((512, 16_384), (256, 4096)):
        older = dict(saved, config={k: v for k, v in saved["config"].items() if k != "choice_alternatives"})
        older["config"]["content_max_dim"] = content_max_dim
        (tmp_path / "model" / "config.json").write_text(json.dumps(older))
        assert Recommender.load(tmp_path / "model").config["choice_alternatives"] == expected

    with pytest.raises(ValueError, match="choice_alternatives"):
        FusionRecommender(choice_alternatives=10)


def test_evidence_far_outside_the_training_users_is_clipped_so_no_modality_is_switched_off(demo_template, tmp_path):
    """A new visitor's two items that nobody chose together gave behaviour's evidence -38 standard deviations
    on a shop, and the gate a behaviour weight of 3e-10 (shown as 0 % beside a share of a fifth of the score).
    Clipped at ``evidence_clip`` standard deviations, the weight stays within what the training users get."""
    import json

    from recsys.models.fusion.experts import standardised_evidence

    raw = torch.tensor([[-38.5, 0.2, float("nan"), 9.0]])
    stats = (torch.zeros(4), torch.ones(4))
    reliability = torch.ones(1, 2)
    clipped = standardised_evidence(raw, stats, reliability, clip=4.0)
    assert clipped.tolist() == [[-4.0, pytest.approx(0.2), 0.0, 4.0]]  # no evidence stays the population's 0
    assert standardised_evidence(raw, stats, reliability)[0, 0] == pytest.approx(-38.5)  # 0: not clipped

    import scipy.sparse as sp

    from recsys.models.fusion.content import binary_rows

    data = _template_data(demo_template)
    model = FusionRecommender(epochs=2, device="cpu").fit(data)
    rng = np.random.default_rng(0)  # new visitors with two random items: most lie far outside the training users
    rows = binary_rows(sp.vstack([model._history_row(rng.choice(model.n_items, 2, replace=False)) for _ in range(200)]))
    experts = model._expert_z(rows)
    assert float(experts.evidence.abs().max()) <= 4.0 + 1e-6
    clipped = model.gate.user_weights(experts.evidence, experts.length).detach().numpy()
    model.config["evidence_clip"] = 0.0
    unclipped_experts = model._expert_z(rows)
    assert float(unclipped_experts.evidence.abs().max()) > 4.0  # the case the clip is for does occur
    unclipped = model.gate.user_weights(unclipped_experts.evidence, unclipped_experts.length).detach().numpy()
    assert clipped.min() > 5 * unclipped.min()
    model.config["evidence_clip"] = 4.0
    model.save(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["config"]["evidence_clip"] == 4.0
    older = dict(saved, config={k: v for k, v in saved["config"].items() if k != "evidence_clip"})
    (tmp_path / "model" / "config.json").write_text(json.dumps(older))
    assert Recommender.load(tmp_path / "model").config["evidence_clip"] == 0.0  # fitted before the clip
    with pytest.raises(ValueError, match="evidence_clip"):
        FusionRecommender(evidence_clip=-1)
