"""The attention-fusion model: attention, share decomposition, training, persistence, ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recsys.data.demo import demo_ground_truth, generate_demo_bundle
from recsys.evaluate import evaluate_ranking
from recsys.features.extract import extract_item_features
from recsys.models import Recommender, get_model
from recsys.models.fusion import FusionRecommender
from recsys.train.data import prepare_data
from recsys.workspace import Workspace

FAST = dict(epochs=12, patience=12, dim=32, device="cpu")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A small demo catalogue with real image features (EfficientNet-Lite0) and TF-IDF text."""
    root = tmp_path_factory.mktemp("fusion")
    bundle_dir = generate_demo_bundle(root / "bundle", n_users=300, n_items=160, n_interactions=7000, seed=11)
    workspace = Workspace(root / "ws")
    assert workspace.import_bundle(bundle_dir, name="demo").ok
    bundle = workspace.load_dataset("demo")
    features = extract_item_features(bundle.items, bundle.schema.items, bundle.root, workspace.features_dir,
                                     text_encoder="tfidf", device="cpu")
    prepared = prepare_data(bundle.interactions, item_features=features,
                            catalogue_ids=bundle.items["item_id"].to_numpy(str))
    return {"bundle": bundle, "bundle_dir": bundle_dir, "features": features, "prepared": prepared}


@pytest.fixture(scope="module")
def trained(demo):
    losses = []

    class Recorder:
        def on_epoch_end(self, model, record, improved, resume_state):
            losses.append(record["loss"])

    model = FusionRecommender(**FAST).fit(demo["prepared"].data, callbacks=[Recorder()])
    return model, losses


def test_attention_sums_to_one_over_present_modalities(trained):
    model, _ = trained
    weights = model.attention_matrix(np.arange(20))
    present = model._eval_present.cpu().numpy()
    assert model.modalities == ["behaviour", "text", "image", "attributes"]
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    missing = ~np.broadcast_to(present, weights.shape)
    assert missing.any()  # the demo has items without pictures and without descriptions
    assert np.all(weights[missing] == 0.0)


def test_shares_add_up_to_the_score(trained):
    model, _ = trained
    user = model.user_ids[3]
    items = list(model.item_ids[:50])
    parts = model.explain_scores(user, items)
    np.testing.assert_allclose(parts["shares"].sum(-1), parts["score"], atol=1e-4)
    full = model.score(np.array([model.user_index(user)]))[0, :50]
    np.testing.assert_allclose(parts["score"], full, atol=1e-4)


def test_each_modality_has_its_own_slot(trained):
    model, _ = trained
    buffers = dict(model._buffers)
    with torch.no_grad():
        before, _, _ = model.network.item_tokens(buffers)
        buffers["image"] = buffers["image"] + torch.randn_like(buffers["image"])
        after, _, _ = model.network.item_tokens(buffers)
    changed = (before - after).abs().amax(dim=(0, 2))
    image = model.modalities.index("image")
    assert changed[image] > 0
    assert all(changed[m] == 0 for m in range(len(model.modalities)) if m != image)


def test_training_lowers_the_loss_and_beats_mostpop(demo, trained):
    model, losses = trained
    assert losses[-1] < losses[0]
    prepared = demo["prepared"]
    data = prepared.data
    mostpop = get_model("mostpop").fit(data)
    ours = evaluate_ranking(model.score, data.train, prepared.test, exclude=prepared.valid, ks=(20,))
    pop = evaluate_ranking(mostpop.score, data.train, prepared.test, exclude=prepared.valid, ks=(20,))
    assert ours["ndcg@20"] > pop["ndcg@20"] * 1.05


def test_save_and_load_give_identical_scores(trained, tmp_path):
    model, _ = trained
    model.save(tmp_path / "model")
    loaded = Recommender.load(tmp_path / "model")
    assert isinstance(loaded, FusionRecommender)
    users = np.arange(10)
    np.testing.assert_allclose(loaded.score(users), model.score(users), rtol=1e-5, atol=1e-5)
    assert loaded.recommend(model.user_ids[0], k=5) == model.recommend(model.user_ids[0], k=5)


def test_cold_items_get_content_scores(demo):
    bundle = demo["bundle"]
    prepared = prepare_data(bundle.interactions, protocol="cold", item_features=demo["features"],
                            catalogue_ids=bundle.items["item_id"].to_numpy(str))
    model = FusionRecommender(**FAST).fit(prepared.data)
    scores = model.score(np.arange(model.n_users))[:, prepared.cold_items]
    assert np.isfinite(scores).all() and scores.std() > 0
    # 16 cold items: rank them for the users who have them; popularity knows nothing about them
    fusion = evaluate_ranking(model.score, prepared.data.train, prepared.cold_test, ks=(3,),
                              candidate_items=prepared.cold_items)
    mostpop = get_model("mostpop").fit(prepared.data)
    pop = evaluate_ranking(mostpop.score, prepared.data.train, prepared.cold_test, ks=(3,),
                           candidate_items=prepared.cold_items)
    assert fusion["ndcg@3"] > pop["ndcg@3"]


@pytest.mark.parametrize("fusion", ["mean", "item_gate", "concat"])
def test_fusion_variants_train_and_score(demo, fusion):
    model = FusionRecommender(**{**FAST, "epochs": 2, "fusion": fusion}).fit(demo["prepared"].data)
    scores = model.score(np.arange(5))
    assert scores.shape == (5, model.n_items) and np.isfinite(scores).all()


@pytest.mark.parametrize("loss", ["bpr", "mse"])
def test_pair_losses_train(demo, loss):
    bundle = demo["bundle"]
    prepared = prepare_data(bundle.interactions, rating_column="rating", item_features=demo["features"],
                            catalogue_ids=bundle.items["item_id"].to_numpy(str))
    model = FusionRecommender(**{**FAST, "epochs": 2, "loss": loss, "batch_size": 256}).fit(prepared.data)
    assert np.isfinite(model.score(np.arange(5))).all()


def test_sampled_softmax_for_large_catalogues(demo):
    model = FusionRecommender(**{**FAST, "epochs": 2, "full_softmax_max_items": 10, "num_negatives": 32,
                                 "batch_size": 64}).fit(demo["prepared"].data)
    assert np.isfinite(model.score(np.arange(5))).all()


def test_unknown_option_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown fusion options"):
        FusionRecommender(dimension=3)


@pytest.mark.slow
def test_learned_attention_recovers_the_ground_truth_segments(demo):
    """Users whose true taste follows pictures attend to the image token more than text-taste users do."""
    prepared = demo["prepared"]
    model = FusionRecommender(epochs=40, patience=40, dim=32, device="cpu").fit(prepared.data)
    truth, _ = demo_ground_truth(demo["bundle_dir"])
    truth = truth.set_index("user_id").loc[model.user_ids]
    rows = np.arange(model.n_users)
    # attention each user gives to each modality over the items they rank highest
    scores = model.score(rows)
    top = np.argsort(-scores, axis=1)[:, :20]
    weights = np.stack([model.attention_matrix([u], top[u])[0].mean(0) for u in rows])
    frame = pd.DataFrame(weights, columns=model.modalities, index=truth.index).assign(segment=truth["segment"].values)
    by_segment = frame.groupby("segment")[model.modalities].mean()
    assert by_segment.loc["visual", "image"] > by_segment.loc["text", "image"]
    assert by_segment.loc["visual", "image"] > by_segment.loc["attributes", "image"]
    # users differ in how much attention they leave for content at all, so the other segments are
    # compared by the balance between their own modality and the picture
    for segment, modality in (("text", "text"), ("attributes", "attributes")):
        own = by_segment.loc[segment, modality] / by_segment.loc[segment, "image"]
        visual = by_segment.loc["visual", modality] / by_segment.loc["visual", "image"]
        assert own > visual, (segment, by_segment)
