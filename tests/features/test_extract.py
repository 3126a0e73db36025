import json
import os

import numpy as np
import pandas as pd
import pytest

from recsys.features import (
    FeatureCache,
    ItemFeatures,
    build_item_text,
    extract_item_features,
    resolve_image_path,
)

ROLES = {
    "item_id": "id",
    "title": "text",
    "plot": "text",
    "brand": "categorical",
    "genres": "multi_label",
    "price": "numeric",
    "picture": "image",
    "sku": "ignore",
}


@pytest.fixture
def catalog(tmp_path):
    root = tmp_path / "bundle"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.img").write_bytes(b"IMG-aaaa")
    (root / "images" / "b.img").write_bytes(b"IMG-bb")
    (root / "images" / "bad.img").write_bytes(b"garbage")
    (tmp_path / "outside.img").write_bytes(b"IMG-outside")
    items = pd.DataFrame(
        {
            "item_id": [1, 2, 3, 4, 5, 6],
            "sku": ["s1", "s2", "s3", "s4", "s5", "s6"],
            "title": ["Red kettle", "Blue  boots\n", None, "Hose", "", "Lamp"],
            "plot": ["Boils water.", None, None, "Long and green", None, None],
            "brand": ["Acme", None, None, "Zeta", None, None],
            "genres": ["Home|Kitchen", "Outdoor", None, None, None, None],
            "price": [12.5, 89, None, 5, None, 3],
            "picture": ["images/a.img", "images/b.img", "../outside.img", "images/bad.img", None, "/etc/passwd"],
        }
    )
    return items, root


def test_build_item_text_order_and_format(catalog):
    items, _ = catalog
    texts = build_item_text(items, ROLES)
    assert texts[0] == "Title: Red kettle. Plot: Boils water. Brand: Acme. Genres: Home, Kitchen."
    assert texts[1] == "Title: Blue boots. Genres: Outdoor."
    assert texts[2] == "" and texts[4] == ""
    assert texts[3] == "Title: Hose. Plot: Long and green. Brand: Zeta."


@pytest.mark.parametrize(
    "value", ["../x.jpg", "a/../../x.jpg", "/etc/passwd", "C:\\x.jpg", "..\\x.jpg", "http://example.com/x.jpg"]
)
def test_escaping_image_paths_are_rejected(tmp_path, value):
    path, reason = resolve_image_path(tmp_path, value)
    assert path is None and reason and "rejected" in reason


def test_image_path_resolution(tmp_path):
    assert resolve_image_path(tmp_path, "images/x.jpg") == (tmp_path / "images" / "x.jpg", None)
    assert resolve_image_path(tmp_path, None) == (None, None)
    assert resolve_image_path(tmp_path, float("nan")) == (None, None)
    assert resolve_image_path(tmp_path, "  ") == (None, None)


def test_symlink_escape_is_rejected(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"x")
    try:
        os.symlink(tmp_path / "secret.jpg", root / "link.jpg")
    except OSError:
        pytest.skip("symlinks not supported here")
    path, reason = resolve_image_path(root, "link.jpg")
    assert path is None and "outside" in reason


def test_extract_masks_and_cache_hit(catalog, tmp_path, counting_text, counting_image):
    items, root = catalog
    cache_dir = tmp_path / "cache"
    events = []
    feats = extract_item_features(
        items,
        ROLES,
        root,
        cache_dir,
        text_encoder=counting_text,
        image_encoder=counting_image,
        device="cpu",
        progress=lambda stage, done, total: events.append((stage, done, total)),
    )
    assert feats.item_ids.tolist() == ["1", "2", "3", "4", "5", "6"]
    assert feats.text.shape == (6, 8) and feats.text.dtype == np.float32
    assert feats.text_mask.tolist() == [True, True, False, True, False, True]
    assert not feats.text[~feats.text_mask].any()
    assert feats.image_mask.tolist() == [True, True, False, False, False, False]
    assert feats.image[0, 0] == len(b"IMG-aaaa")
    reasons = {f["item_id"]: f["reason"] for f in feats.image_failures}
    assert set(reasons) == {"3", "4", "6"}  # escaping, unreadable, absolute; item 5 has no picture
    assert "rejected" in reasons["3"] and "rejected" in reasons["6"]
    assert feats.attributes.categorical_vocab["brand"] == ["Acme", "Zeta"]
    assert ("text", 4, 4) in events and ("image", 3, 3) in events
    assert feats.timings["text_cached"] is False and feats.timings["image_cached"] is False
    assert counting_text.calls == 1 and counting_image.calls == 1

    again = extract_item_features(
        items, ROLES, root, cache_dir, text_encoder=counting_text, image_encoder=counting_image, device="cpu"
    )
    assert counting_text.calls == 1 and counting_image.calls == 1  # served by the cache
    assert again.timings["text_cached"] and again.timings["image_cached"]
    assert np.array_equal(again.text, feats.text) and np.array_equal(again.image_mask, feats.image_mask)
    assert {f["item_id"] for f in again.image_failures} == {"3", "4", "6"}

    # the cache folder holds npz + JSON sidecars that describe the entries
    cache = FeatureCache(cache_dir)
    entries = cache.entries()
    assert {e["encoder"] for e in entries} == {"fake-text", "fake-image"}
    text_entry = next(e for e in entries if e["encoder"] == "fake-text")
    assert text_entry["version"] == "1" and text_entry["n"] == 4 and text_entry["dim"] == 8
    assert "created" in text_entry
    assert not list(cache_dir.glob("*.tmp"))


def test_changed_inputs_miss_and_reuse_rows(catalog, tmp_path, counting_text, counting_image):
    items, root = catalog
    cache_dir = tmp_path / "cache"
    extract_item_features(
        items,
        ROLES,
        root,
        cache_dir,
        text_encoder=counting_text,
        image_encoder=counting_image,
        modalities=("text", "image"),
    )
    changed = items.copy()
    changed.loc[0, "title"] = "Red kettle, 2 litres"
    (root / "images" / "b.img").write_bytes(b"IMG-new-bytes")  # same path, new content
    feats = extract_item_features(
        changed,
        ROLES,
        root,
        cache_dir,
        text_encoder=counting_text,
        image_encoder=counting_image,
        modalities=("text", "image"),
    )
    assert counting_text.calls == 2 and counting_text.rows == 4 + 1  # only the changed text
    assert counting_image.calls == 2 and counting_image.rows == 3 + 1  # only the changed picture
    assert feats.timings["text_cached"] is False and feats.timings["text_reused_rows"] == 3
    assert feats.image[1, 0] == len(b"IMG-new-bytes")
    assert feats.attributes is None


def test_version_change_invalidates(catalog, tmp_path, counting_text):
    from tests.features.conftest import CountingTextEncoder

    items, root = catalog
    cache_dir = tmp_path / "cache"
    extract_item_features(items, ROLES, root, cache_dir, text_encoder=counting_text, modalities=("text",))
    newer = CountingTextEncoder(version="2")
    extract_item_features(items, ROLES, root, cache_dir, text_encoder=newer, modalities=("text",))
    assert newer.calls == 1 and newer.rows == 4


def test_corrupt_cache_entry_is_a_miss(catalog, tmp_path, counting_text):
    items, root = catalog
    cache_dir = tmp_path / "cache"
    extract_item_features(items, ROLES, root, cache_dir, text_encoder=counting_text, modalities=("text",))
    for npz in cache_dir.glob("*.npz"):
        npz.write_bytes(b"broken")
    feats = extract_item_features(items, ROLES, root, cache_dir, text_encoder=counting_text, modalities=("text",))
    assert counting_text.calls == 2 and feats.text_mask.sum() == 4


def test_cache_never_stores_pickles(tmp_path):
    cache = FeatureCache(tmp_path)
    with pytest.raises(TypeError):
        cache.put("ab" * 32, {"x": np.array([{"a": 1}], dtype=object)})
    key = "cd" * 32
    cache.put(key, {"x": np.arange(3, dtype=np.float32)}, {"encoder": "e", "version": "v"})
    assert cache.get(key)["x"].tolist() == [0, 1, 2]
    assert cache.meta(key)["encoder"] == "e"
    assert cache.get("ef" * 32) is None


def test_item_features_save_load(catalog, tmp_path, counting_text, counting_image):
    items, root = catalog
    feats = extract_item_features(
        items, ROLES, root, tmp_path / "cache", text_encoder=counting_text, image_encoder=counting_image
    )
    path = feats.save(tmp_path / "out" / "features.npz")
    with np.load(path, allow_pickle=False) as data:  # loads without pickle
        assert "item_ids" in data.files
    loaded = ItemFeatures.load(path)
    assert loaded.item_ids.tolist() == feats.item_ids.tolist()
    assert np.array_equal(loaded.text, feats.text) and np.array_equal(loaded.image_mask, feats.image_mask)
    assert loaded.text_encoder == feats.text_encoder
    assert loaded.attributes.categorical_vocab == feats.attributes.categorical_vocab
    assert np.array_equal(loaded.attributes.numeric, feats.attributes.numeric)
    assert loaded.image_failures == json.loads(json.dumps(feats.image_failures))
    assert loaded.modalities == ["text", "image", "attributes"]


def test_extract_with_real_encoders(tmp_path, posters):
    """The defaults end to end on a tiny catalog: real MiniLM and EfficientNet-Lite0."""
    root = posters[0].parent.parent
    items = pd.DataFrame(
        {
            "item_id": ["p0", "p1", "x"],
            "title": ["Toy Story", "Jumanji", "No picture"],
            "image_file": [f"images/{posters[0].name}", f"images/{posters[1].name}", "images/does-not-exist.jpg"],
        }
    )
    roles = {"item_id": "id", "title": "text", "image_file": "image"}
    feats = extract_item_features(items, roles, root, tmp_path / "cache", device="cpu", batch_size=2)
    assert feats.text.shape == (3, 384) and feats.text_mask.all()
    assert feats.image.shape == (3, 1280) and feats.image_mask.tolist() == [True, True, False]
    assert feats.image_failures and feats.image_failures[0]["item_id"] == "x"
    again = extract_item_features(items, roles, root, tmp_path / "cache", device="cpu")
    assert again.timings["text_cached"] and again.timings["image_cached"]
    assert np.array_equal(again.image, feats.image) and np.array_equal(again.text, feats.text)
    # the cache holds float16 (half the disk); what a model gets is float32, within float16's rounding of
    # the encoder's own output, and the same fresh or cached
    stored = [np.load(path)["features"] for path in (tmp_path / "cache").glob("*.npz")]
    assert {a.dtype for a in stored} == {np.dtype(np.float16)}
    assert feats.text.dtype == np.float32 and feats.image.dtype == np.float32
    from recsys.features import get_encoder

    raw_text = get_encoder("minilm", device="cpu").encode(build_item_text(items, roles))
    assert np.abs(feats.text - raw_text).max() <= 1e-3 * max(1.0, float(np.abs(raw_text).max()))
    cosines = (feats.text @ feats.text.T) - (raw_text @ raw_text.T)
    assert np.abs(cosines).max() < 1e-3


def test_features_too_large_for_float16_are_cached_as_float32(tmp_path):
    from recsys.features.extract import _half_precision, _storage

    big = np.array([[1.0, 70_000.0]], dtype=np.float32)
    assert _storage(big).dtype == np.float32 and np.array_equal(_half_precision(big), big)
    small = np.array([[0.1234567, -0.5]], dtype=np.float32)
    assert _storage(small).dtype == np.float16
    assert np.abs(_half_precision(small) - small).max() < 1e-4


def test_a_stopped_extraction_keeps_its_finished_chunks(tmp_path, counting_text, monkeypatch):
    """A stop in the middle of an extraction (the progress callback raises, as a run's stop check does) keeps
    every finished chunk in the cache: the next extraction encodes only the rest, and gives the same vectors."""
    from recsys.features import extract
    from recsys.features.extract import encode_texts
    from recsys.stopping import StopRequested

    monkeypatch.setattr(extract, "CHECKPOINT_ROWS", 10)
    texts = [f"item number {i}" for i in range(35)]
    cache = FeatureCache(tmp_path / "cache")

    def stop_after_two_chunks(done: int, total: int) -> None:
        if done >= 25:
            raise StopRequested("text feature extraction")

    with pytest.raises(StopRequested):
        encode_texts(counting_text, texts, cache, progress=stop_after_two_chunks)
    assert counting_text.rows == 30  # chunks of 10; the third was encoded when the stop came
    features, info = encode_texts(counting_text, texts, cache)
    assert info["reused_rows"] == 20 and info["encoded_rows"] == 15 and counting_text.rows == 30 + 15
    fresh, _ = encode_texts(type(counting_text)(), texts, None)
    np.testing.assert_allclose(features, fresh)
    # the finished extraction's whole entry replaces the unfinished one
    assert [m.get("unfinished", False) for m in cache.entries()] == [False]


def test_html_in_catalogue_text_is_read_as_words():
    """A shop export's descriptions are HTML: the encoders read "nbsp", "amp" and "div" as words, and an
    explanation said the text shared "nbsp"."""
    from recsys.data.schema import plain_text
    from recsys.explain.explainer import _salient_tokens

    items = pd.DataFrame(
        {"item_id": ["a"], "title": ["Chef knife"], "plot": ["<p>Forged <b>steel</b>&nbsp;&amp; beech</p><br/>"]}
    )
    assert build_item_text(items, {"item_id": "id", "title": "text", "plot": "text"}) == [
        "Title: Chef knife. Plot: Forged steel & beech."
    ]
    assert _salient_tokens("<div class='x'>Forged&nbsp;steel</div>") == ["forged", "steel"]
    # text without markup is left as it is, a lone "<" or "&" included
    for text in ("a < b and c > d", "R&D; Tom & Jerry", "plain"):
        assert plain_text(text) == text
