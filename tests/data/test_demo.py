"""Tests of the built-in demo catalog generator (recsys.data.demo)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from recsys.data.demo import (
    _CATEGORIES,
    _CATEGORY_SPEC,
    CATEGORY_NOUNS,
    DEMO_DATASET_NAME,
    DEMO_SCHEMA,
    MODALITIES,
    SEGMENTS,
    TOPIC_CATEGORIES,
    TOPICS,
    VISUAL_STYLES,
    demo_ground_truth,
    demo_posterior_weights,
    generate_demo_bundle,
)

SMALL = dict(n_users=120, n_items=90, n_interactions=2500)


def _read(bundle: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(bundle / name, dtype={"user_id": str, "item_id": str}, keep_default_na=False)


def _hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return generate_demo_bundle(tmp_path_factory.mktemp("demo") / "bundle", seed=7, **SMALL)


@pytest.fixture(scope="module")
def joined(small):
    inter = _read(small, "interactions.csv")
    gt_users, gt_items = demo_ground_truth(small)
    return inter.merge(gt_users, on="user_id").merge(gt_items, on="item_id")


def test_layout_and_schema(small):
    assert DEMO_DATASET_NAME == "demo"
    for name in [
        "items.csv",
        "interactions.csv",
        "users.csv",
        "schema.json",
        "README.md",
        "ground_truth/users.csv",
        "ground_truth/items.csv",
        "ground_truth/README.md",
    ]:
        assert (small / name).is_file(), name
    assert (small / "images").is_dir()
    schema = json.loads((small / "schema.json").read_text())
    assert schema == DEMO_SCHEMA
    for table in ("items", "interactions", "users"):
        assert list(_read(small, f"{table}.csv").columns) == list(schema[table]), table
    items, users, inter = _read(small, "items.csv"), _read(small, "users.csv"), _read(small, "interactions.csv")
    assert items["item_id"].str.fullmatch(r"D\d{4}").all() and items["item_id"].is_unique
    assert users["user_id"].str.fullmatch(r"U\d{4}").all() and users["user_id"].is_unique
    assert "segment" not in users.columns  # no ground truth leaks into the bundle's tables
    assert pd.api.types.is_float_dtype(items["price"]) and (items["price"] > 0).all()
    assert items["category"].nunique() >= 5
    assert items["brand"].nunique() >= 10
    assert items["tags"].str.len().gt(0).all()
    assert pd.api.types.is_integer_dtype(inter["rating"]) and inter["rating"].between(1, 5).all()
    assert pd.api.types.is_integer_dtype(inter["timestamp"])


def test_same_seed_identical_bytes_other_seed_differs(tmp_path):
    a = generate_demo_bundle(tmp_path / "a", seed=11, **SMALL)
    b = generate_demo_bundle(tmp_path / "b", seed=11, **SMALL)
    c = generate_demo_bundle(tmp_path / "c", seed=12, **SMALL)
    ha, hb, hc = _hashes(a), _hashes(b), _hashes(c)
    assert ha == hb
    assert len(ha) > 80  # the images are part of the comparison
    for name in ["items.csv", "interactions.csv", "users.csv", "ground_truth/users.csv", "ground_truth/items.csv"]:
        assert ha[name] != hc[name], name
    common_images = [k for k in ha if k.startswith("images/") and k in hc]
    assert common_images and sum(ha[k] != hc[k] for k in common_images) > 0.9 * len(common_images)


def test_counts_and_activity(small):
    items, users, inter = _read(small, "items.csv"), _read(small, "users.csv"), _read(small, "interactions.csv")
    assert len(items) == SMALL["n_items"] and len(users) == SMALL["n_users"]
    assert abs(len(inter) - SMALL["n_interactions"]) <= 0.05 * SMALL["n_interactions"]
    assert not inter.duplicated(["user_id", "item_id"]).any()
    per_user = inter.groupby("user_id").size()
    assert set(per_user.index) == set(users["user_id"])
    assert per_user.min() >= 5
    assert per_user.max() > 2 * per_user.median()  # heavy-tailed
    # timestamps strictly increase within a user's history, in a plausible range (2021-2024)
    ordered = inter.groupby("user_id")["timestamp"].apply(lambda s: bool((np.diff(s.to_numpy()) > 0).all()))
    assert ordered.all()
    assert inter["timestamp"].between(1_600_000_000, 1_740_000_000).all()


def test_interactions_reference_existing_rows(small):
    items, users, inter = _read(small, "items.csv"), _read(small, "users.csv"), _read(small, "interactions.csv")
    assert inter["item_id"].isin(items["item_id"]).all()
    assert inter["user_id"].isin(users["user_id"]).all()


def test_images_and_missing_modalities(small):
    items = _read(small, "items.csv")
    with_image = items[items["image_file"] != ""]
    without = items[items["image_file"] == ""]
    assert 0.05 <= len(without) / len(items) <= 0.15
    assert 0.04 <= (items["description"] == "").mean() <= 0.12
    for item_id, rel in zip(with_image["item_id"], with_image["image_file"]):
        assert rel == f"images/{item_id}.png"
        with Image.open(small / rel) as img:
            img.load()
            assert img.format == "PNG" and img.mode == "RGB" and img.size == (96, 96)
    for item_id in without["item_id"]:
        assert not (small / "images" / f"{item_id}.png").exists()
    assert len(list((small / "images").iterdir())) == len(with_image)


def test_ground_truth_frames(small):
    gt_users, gt_items = demo_ground_truth(small)
    users, items = _read(small, "users.csv"), _read(small, "items.csv")
    assert list(gt_users["user_id"]) == list(users["user_id"])
    assert list(gt_items["item_id"]) == list(items["item_id"])
    w = gt_users[[f"w_{m}" for m in MODALITIES]]
    assert list(w.columns) == ["w_text", "w_image", "w_attributes", "w_behaviour"]
    assert np.allclose(w.sum(axis=1), 1.0, atol=1e-6) and (w.to_numpy() >= 0).all()
    assert gt_users["segment"].notna().all() and set(gt_users["segment"]) == set(SEGMENTS)
    main = {"visual": "w_image", "text": "w_text", "attributes": "w_attributes", "behaviour": "w_behaviour"}
    for seg, col in main.items():
        sub = w[gt_users["segment"] == seg]
        assert (sub.idxmax(axis=1) == col).all(), seg  # the segment's own modality dominates
    for col in ["topic", "visual_style", "price_band", "brand", "popularity", "behaviour_cluster"]:
        assert col in gt_items.columns and gt_items[col].notna().all(), col
    assert set(gt_items["topic"]) <= set(TOPICS) and set(gt_items["visual_style"]) <= set(VISUAL_STYLES)
    assert (gt_items["has_image"] == (items["image_file"] != "")).all()
    assert "segment" in (small / "ground_truth" / "README.md").read_text()


def test_ground_truth_drives_the_interactions(joined):
    def hit_rate(segment: str, item_col: str, pref_col: str) -> float:
        sub = joined[joined["segment"] == segment]
        return float((sub[item_col] == sub[pref_col]).groupby(sub["user_id"]).mean().mean())

    style = ("visual_style", "pref_visual_style")
    topic = ("topic", "pref_topic")
    band = ("price_band", "pref_price_band")
    cluster = ("behaviour_cluster", "pref_behaviour_cluster")
    # each segment concentrates on its own modality's preferred value far more than another segment does
    # (margins measured at this size over several seeds: style/topic ~0.3, band ~0.27, cluster ~0.15-0.26)
    assert hit_rate("visual", *style) > hit_rate("text", *style) + 0.15
    assert hit_rate("text", *topic) > hit_rate("visual", *topic) + 0.15
    assert hit_rate("attributes", *band) > hit_rate("text", *band) + 0.1
    assert hit_rate("behaviour", *cluster) > hit_rate("visual", *cluster) + 0.08


def test_ratings_follow_utility(joined):
    # items matching a text user's preferred topic are rated higher than the rest
    sub = joined[joined["segment"] == "text"]
    match = sub["topic"] == sub["pref_topic"]
    assert sub.loc[match, "rating"].mean() > sub.loc[~match, "rating"].mean() + 0.3


def test_pixels_separate_visual_styles(small):
    """A trivial colour-statistics classifier tells the styles apart from the pixels alone."""
    _, gt_items = demo_ground_truth(small)
    gt_items = gt_items[gt_items["has_image"]]
    feats = []
    for item_id in gt_items["item_id"]:
        a = np.asarray(Image.open(small / "images" / f"{item_id}.png"), dtype=float) / 255
        px = a.reshape(-1, 3)
        feats.append(np.concatenate([px.mean(0), px.std(0), np.percentile(px, [10, 90], axis=0).ravel()]))
    x, y = np.array(feats), gt_items["visual_style"].to_numpy()
    # leave-one-out 1-nearest-neighbour
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    acc = float((y[d.argmin(1)] == y).mean())
    assert acc > 0.8, acc


def test_words_separate_topics(small):
    """Bag-of-words nearest centroid recovers the topic from title + description."""
    items = _read(small, "items.csv")
    _, gt_items = demo_ground_truth(small)
    docs = [set(re.findall(r"[a-z']+", (t + " " + d).lower())) for t, d in zip(items["title"], items["description"])]
    topics = gt_items["topic"].to_numpy()
    vocab = sorted(set().union(*docs))
    index = {w: k for k, w in enumerate(vocab)}
    x = np.zeros((len(docs), len(vocab)))
    for i, doc in enumerate(docs):
        x[i, [index[w] for w in doc]] = 1.0
    correct = 0
    for i in range(len(docs)):  # leave-one-out nearest centroid
        best, best_s = None, -np.inf
        for t in set(topics):
            mask = topics == t
            mask[i] = False
            centroid = x[mask].mean(0)
            s = x[i] @ centroid / (np.linalg.norm(centroid) + 1e-9)
            if s > best_s:
                best, best_s = t, s
        correct += best == topics[i]
    assert correct / len(docs) > 0.85


def test_bundle_loader_accepts_the_demo(small):
    from recsys.data.bundle import load_bundle

    result = load_bundle(small)
    assert result.bundle is not None, result.report.format()
    assert not result.report.errors and not result.report.warnings, result.report.format()
    # the only note: the demo leaves some descriptions out on purpose (a missing text modality)
    assert [(n.code, "description (" in n.message) for n in result.report.notes] == [("partly_empty_columns", True)]
    assert result.bundle.schema.to_dict() == DEMO_SCHEMA  # ground_truth/ is not read as tables
    assert len(result.bundle.interactions) == SMALL["n_interactions"]


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError):
        generate_demo_bundle(tmp_path / "x", n_users=2, n_items=90, n_interactions=100)
    with pytest.raises(ValueError):
        generate_demo_bundle(tmp_path / "x", n_users=100, n_items=90, n_interactions=100)  # < 5 per user
    with pytest.raises(FileNotFoundError):
        demo_ground_truth(tmp_path)


@pytest.mark.slow  # the full-size demo catalog (about 30 s on 2 cores)
def test_default_size(tmp_path):
    # generation time is measured in benchmarks/, never asserted here (shared, noisy machines)
    out = generate_demo_bundle(tmp_path / "default")
    assert out == tmp_path / "default"
    items, users, inter = _read(out, "items.csv"), _read(out, "users.csv"), _read(out, "interactions.csv")
    assert len(items) == 800 and len(users) == 1000
    assert abs(len(inter) - 30000) <= 1500
    per_user = inter.groupby("user_id").size()
    assert per_user.min() >= 5 and 15 <= per_user.median() <= 30
    assert inter["item_id"].isin(items["item_id"]).all()
    assert 3.3 <= inter["rating"].mean() <= 4.3
    gt_users, _ = demo_ground_truth(out)
    assert set(gt_users["segment"]) == set(SEGMENTS)


def test_title_category_and_tags_agree(small):
    """Every category is one of the item's topic's; every product noun in a title is one of its category's."""
    items = _read(small, "items.csv")
    _, gt_items = demo_ground_truth(small)
    assert set(TOPIC_CATEGORIES) == set(TOPICS)
    all_categories = [c for cats in TOPIC_CATEGORIES.values() for c in cats]
    assert len(all_categories) == len(set(all_categories)) == len(CATEGORY_NOUNS)
    nouns = [n for ns in CATEGORY_NOUNS.values() for n in ns]
    assert len(nouns) == len(set(nouns))  # a noun belongs to one category only
    patterns = {n: re.compile(rf"(?<![\w-]){re.escape(n)}(?![\w-])", re.IGNORECASE) for n in nouns}
    assert (items["category"] == gt_items["category"]).all()
    for title, category, topic in zip(items["title"], items["category"], gt_items["topic"]):
        assert category in TOPIC_CATEGORIES[topic], (category, topic)
        assert category.split(" > ")[0] == TOPIC_CATEGORIES[topic][0].split(" > ")[0]
        spans = {n: m.span() for n, pattern in patterns.items() if (m := pattern.search(title))}
        # a noun inside a longer one ("hammock" in "cat hammock") is that one's
        found = {
            n for n, (a, b) in spans.items() if not any(o != n and oa <= a and b <= ob for o, (oa, ob) in spans.items())
        }
        assert found, title
        assert found <= set(CATEGORY_NOUNS[category]), (title, category, found)
    # tags: the category's own tags, plus merchandising labels shared by all categories
    merchandising = {
        "bestseller",
        "budget pick",
        "premium",
        "gift idea",
        "eco-friendly",
        "new arrival",
        "limited edition",
    }
    category_tags = {c: set(spec["tags"]) for c, spec in zip(_CATEGORIES, _CATEGORY_SPEC)}
    for tags, category in zip(items["tags"], items["category"]):
        labels = set(tags.split("|"))
        assert labels & category_tags[category], (tags, category)
        assert labels <= category_tags[category] | merchandising, (tags, category)
    # the category carries information beyond the topic: several categories per topic in use
    assert items.groupby(gt_items["topic"])["category"].nunique().min() >= 2


def test_pictures_draw_the_topic_in_the_style():
    """Same style and random draws, another topic: same background and corner motifs, another object."""
    from recsys.data.demo import _render_image, _rng

    size = 96
    corner = slice(0, size // 10), slice(size - size // 10, size)
    for k, style in enumerate(VISUAL_STYLES):
        pictures = {t: np.asarray(_render_image(style, t, _rng(5, 3, k), size), dtype=np.int16) for t in TOPICS}
        for a in TOPICS:
            for b in TOPICS:
                if a >= b:
                    continue
                differs = np.abs(pictures[a] - pictures[b]).sum(-1) > 30
                assert differs[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4].mean() > 0.05, (style, a, b)
                for rows in corner:  # the style's motifs and background are untouched by the object
                    for cols in corner:
                        assert not differs[rows, cols].any(), (style, a, b)


def test_no_pictures_writes_no_image_column_and_same_tables(small, tmp_path):
    bare = generate_demo_bundle(tmp_path / "bare", seed=7, pictures=False, **SMALL)
    assert not (bare / "images").exists()
    items = _read(bare, "items.csv")
    assert "image_file" not in items.columns
    assert list(items.columns) == [c for c in _read(small, "items.csv").columns if c != "image_file"]
    schema = json.loads((bare / "schema.json").read_text())
    assert "image_file" not in schema["items"] and schema["interactions"] == DEMO_SCHEMA["interactions"]
    for name in ("interactions.csv", "users.csv", "ground_truth/users.csv", "ground_truth/items.csv"):
        assert (bare / name).read_bytes() == (small / name).read_bytes(), name
    assert "image_file" not in (bare / "README.md").read_text().split("| interactions.csv")[0]


def test_generator_posterior_finds_the_planted_weights(small):
    # the generator's own posterior (every latent value known) reads the segments back from the choices: it
    # is the bound benchmarks/attention_truth.py prints beside the model, so it must agree with the generator
    import scipy.sparse as sp

    inter = _read(small, "interactions.csv")
    gt_users, gt_items = demo_ground_truth(small)
    rows = pd.Index(gt_users["user_id"]).get_indexer(inter["user_id"])
    cols = pd.Index(gt_items["item_id"]).get_indexer(inter["item_id"])
    histories = sp.csr_matrix((np.ones(len(inter)), (rows, cols)), shape=(len(gt_users), len(gt_items)))
    posterior = demo_posterior_weights(gt_users, gt_items, histories, samples=2000)
    assert posterior.shape == (len(gt_users), len(MODALITIES))
    np.testing.assert_allclose(posterior.sum(axis=1), 1.0, atol=1e-5)
    truth = gt_users[[f"w_{m}" for m in MODALITIES]].to_numpy()
    accuracy = ((posterior - posterior.mean(0)).argmax(1) == truth.argmax(1)).mean()
    assert accuracy > 0.7, accuracy  # chance 0.25; 0.82 at this size (0.98 on the 1,000-user demo)
    # the same users with the choices shuffled across the catalogue carry no segment: the posterior then
    # says little more than the prior
    shuffled = sp.csr_matrix(
        (histories.data, np.random.default_rng(0).integers(len(gt_items), size=histories.nnz), histories.indptr),
        shape=histories.shape,
    )
    noise = demo_posterior_weights(gt_users, gt_items, shuffled, samples=2000)
    assert ((noise - noise.mean(0)).argmax(1) == truth.argmax(1)).mean() < 0.45  # 0.22

    # the users' preferred values estimated, not given (perfect item features): still finds most segments,
    # no better than knowing them, and nothing in shuffled choices
    estimated = demo_posterior_weights(gt_users, gt_items, histories, samples=2000, preferences_known=False)
    np.testing.assert_allclose(estimated.sum(axis=1), 1.0, atol=1e-5)
    found = ((estimated - estimated.mean(0)).argmax(1) == truth.argmax(1)).mean()
    assert 0.6 < found <= accuracy + 0.05, (found, accuracy)
    lost = demo_posterior_weights(gt_users, gt_items, shuffled, samples=2000, preferences_known=False)
    assert ((lost - lost.mean(0)).argmax(1) == truth.argmax(1)).mean() < 0.5
