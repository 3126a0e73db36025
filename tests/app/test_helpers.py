"""The engine helpers behind the pages: explanations, filters, MMR, attention aggregates, launching, uploads."""

from __future__ import annotations

import io
import json
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest

from recsys.explain import attention_by_category, ground_truth_comparison, pca_2d
from recsys.explain.evidence import price_bands
from recsys.train.launch import summarize_progress, training_command
from recsys.train.run import RunConfig

ITEMS = pd.DataFrame(
    {
        "item_id": ["a", "b", "c", "d"],
        "title": ["Tent", "Stove", "Kettle", "Boots"],
        "category": ["Outdoor", "Outdoor", "Kitchen", "Outdoor"],
        "tags": ["camping|hiking", "camping", "cooking", "hiking|shoes"],
        "price": [200.0, 40.0, 30.0, 120.0],
    }
).set_index("item_id", drop=False)
ROLES = {"item_id": "id", "title": "text", "category": "categorical", "tags": "multi_label", "price": "numeric"}


def test_price_bands_are_catalogue_terciles():
    bands = price_bands(ITEMS["price"])
    assert bands.to_dict() == {"a": "premium", "b": "budget", "c": "budget", "d": "mid-range"}  # cuts at 40, 120
    assert set(price_bands(pd.Series([1.0, None])).tolist()) == {""}


def test_item_vectors_fall_back_to_interactions_for_models_without_content():
    import scipy.sparse as sp

    from recsys.explain import item_vectors
    from recsys.models import get_model
    from recsys.models.base import TrainData

    seen = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1], [1, 0, 0, 1]], float))
    model = get_model("mostpop").fit(TrainData(np.arange(5).astype(str), np.arange(4).astype(str), seen))
    vectors = item_vectors(model, dim=2)
    assert vectors.shape[0] == 4
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2]  # items bought by the same users are closer


def test_attention_aggregates_and_ground_truth():
    frame = pd.DataFrame(
        {
            "user_row": [0, 0, 1],
            "user_id": ["u1", "u1", "u2"],
            "rank": [1, 2, 1],
            "item_id": ["a", "c", "b"],
            "behaviour": [0.6, 0.2, 0.5],
            "text": [0.4, np.nan, 0.5],
            "image": [0.0, 0.8, 0.0],
        }
    )
    table = attention_by_category(frame, ITEMS, "tags", ["behaviour", "text", "image"], "multi_label")
    assert table.loc["camping", "pairs"] == 2 and table.loc["camping", "behaviour"] == pytest.approx(0.55)
    assert table.loc["cooking", "text"] == 0.0  # the item has no text: none of its score comes from text
    assert np.allclose(table[["behaviour", "text", "image"]].sum(axis=1), 1.0)  # each row is a distribution
    summary = pd.DataFrame({"user_row": [0, 1], "user_id": ["u1", "u2"], "behaviour": [0.8, 0.2], "text": [0.2, 0.8]})
    truth = pd.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "segment": ["behaviour", "text"],
            "w_behaviour": [0.7, 0.1],
            "w_text": [0.1, 0.7],
            "w_image": [0.2, 0.2],
        }
    )
    comparison = ground_truth_comparison(summary, truth, ["behaviour", "text"]).set_index(["segment", "modality"])
    assert comparison.loc[("behaviour", "behaviour"), "learned"] == pytest.approx(0.8)
    assert comparison.loc[("behaviour", "behaviour"), "true"] == pytest.approx(0.875)  # renormalised over 2
    assert comparison.loc[("text", "text"), "users"] == 1


def test_pca_2d_finds_the_main_direction():
    rng = np.random.default_rng(0)
    points = np.outer(rng.normal(size=200), [3.0, 0, 0]) + rng.normal(scale=0.1, size=(200, 3))
    coords = pca_2d(points)
    assert coords.shape == (200, 2)
    assert abs(np.corrcoef(coords[:, 0], points[:, 0])[0, 1]) > 0.99
    assert pca_2d(np.zeros((0, 3))).shape == (0, 2)


def test_training_command_passes_the_config_file(tmp_path):
    config = RunConfig(
        dataset="shop",
        fusion_options={"epochs": 3},
        baselines=[],
        cold_start=True,
        modalities=["behaviour", "text"],
        ease_options={"l2": 500},
    )
    config_file = tmp_path / "run-1.config.json"
    config_file.write_text(json.dumps({"run_id": "run-1", "config": config.to_dict()}))
    command = training_command(type("W", (), {"root": "/tmp/ws"})(), config_file, "run-1")
    assert command[:4] == [sys.executable, "-m", "recsys", "train"]
    assert command[command.index("--run-id") + 1] == "run-1"
    assert command[command.index("--config") + 1] == str(config_file)
    assert "--epochs" not in command and "--data" not in command  # the options travel in the file, not as flags

    from recsys.cli import build_parser  # the command line reads the file back into the same options
    from recsys.train.commands import _config_from_args

    args = build_parser().parse_args(command[3:])
    assert RunConfig.from_dict(_config_from_args(args)) == config


def test_summarize_progress_gives_epochs_features_and_time_left():
    events = [
        {"type": "stage", "time": 0.0, "stage": "features"},
        {"type": "step", "time": 1.0, "stage": "features:text", "done": 64, "total": 100},
        {"type": "step", "time": 2.0, "stage": "features:text", "done": 100, "total": 100},
        {"type": "stage", "time": 3.0, "stage": "data", "users": 10, "items": 20, "train": 50},
        {"type": "stage", "time": 3.0, "stage": "fit"},
        {"type": "epoch", "time": 13.0, "epoch": 0, "loss": 2.0, "valid_ndcg@20": 0.1, "max_epochs": 10, "seconds": 10},
        {"type": "epoch", "time": 23.0, "epoch": 1, "loss": 1.5, "valid_ndcg@20": 0.2, "max_epochs": 10, "seconds": 10},
        {"type": "epoch", "time": 33.0, "epoch": 2, "loss": 1.2, "valid_ndcg@20": 0.15, "max_epochs": 10},
        {"type": "step", "time": 38.0, "epoch": 3, "step": 5, "steps": 10, "loss": 1.1},
    ]
    summary = summarize_progress(events)
    assert summary["stage"] == "fit" and summary["features"]["features:text"] == (100, 100)
    assert summary["epoch"] == 3 and summary["max_epochs"] == 10 and summary["best_epoch"] == 1
    assert summary["step"] == 5 and summary["steps"] == 10
    assert summary["fraction"] == pytest.approx(0.35)
    assert summary["eta_seconds"] == pytest.approx(6.5 * 10)
    assert summary["data"]["users"] == 10
    ended = summarize_progress(events + [{"type": "end", "time": 40.0, "state": "finished"}])
    assert ended["fraction"] == 1.0 and ended["eta_seconds"] == 0.0
    assert summarize_progress([])["stage"] is None
    extracting = summarize_progress(
        events[:1]
        + [
            {"type": "step", "time": 10.0, "stage": "features:image", "done": 100, "total": 1000},
            {"type": "step", "time": 14.0, "stage": "features:image", "done": 300, "total": 1000},
        ]
    )
    rate = extracting["feature_rates"]["features:image"]
    assert rate["items_per_second"] == pytest.approx(50.0) and rate["eta_seconds"] == pytest.approx(14.0)


def test_assembled_uploads_become_one_bundle_and_unsafe_pictures_are_refused(tmp_path):
    from recsys.data.bundle import load_bundle
    from recsys.data.upload import UploadError, assemble_bundle_zip
    from tests.conftest import png_bytes

    items = b"item_id,title,image_file\na,Red kettle,images/a.png\nb,Blue boots,images/b.png\n"
    interactions = b"user_id,item_id\nu1,a\nu1,b\nu2,a\n"
    pictures = io.BytesIO()
    with zipfile.ZipFile(pictures, "w") as archive:
        archive.writestr("images/a.png", png_bytes())
        archive.writestr("images/b.png", png_bytes((0, 0, 200)))
    data = assemble_bundle_zip(
        {"items": ("my items.CSV", items), "interactions": ("log.csv", interactions)}, pictures.getvalue()
    )
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == ["images/a.png", "images/b.png", "interactions.csv", "items.csv"]
    result = load_bundle(data)
    assert result.ok and result.bundle.counts()["items_with_image"] == 2

    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../../etc/evil.png", png_bytes())
    refused = load_bundle(
        assemble_bundle_zip({"items": ("i.csv", items), "interactions": ("x.csv", interactions)}, evil.getvalue())
    )
    assert not refused.ok and "archive_path_escape" in refused.report.codes()

    with pytest.raises(UploadError, match=r"not a readable \.zip"):
        assemble_bundle_zip({"items": ("i.csv", items)}, b"not a zip")
    with pytest.raises(UploadError, match=r"\.parquet or \.jsonl; this is a spreadsheet workbook: save"):
        assemble_bundle_zip({"items": ("items.xlsx", items)})
    # a tab-separated export is a CSV whose separator the reader finds
    tabbed = assemble_bundle_zip(
        {
            "items": ("items.tsv", items.replace(b",", b"\t")),
            "interactions": ("log.TSV", interactions.replace(b",", b"\t")),
        }
    )
    with zipfile.ZipFile(io.BytesIO(tabbed)) as archive:
        assert sorted(archive.namelist()) == ["interactions.csv", "items.csv"]
    read = load_bundle(tabbed, check_images=False)
    assert read.ok and read.bundle.items["title"].tolist() == ["Red kettle", "Blue boots"]
    with pytest.raises(UploadError, match=r"this is a \.zip archive: an archive holds the pictures, or a whole"):
        assemble_bundle_zip({"items": ("shop.zip", pictures.getvalue())})
    clash = io.BytesIO()
    with zipfile.ZipFile(clash, "w") as archive:
        archive.writestr("items.csv", items)
    with pytest.raises(UploadError, match=r"already holds items\.csv"):
        assemble_bundle_zip({"items": ("i.csv", items)}, clash.getvalue())


def test_md_text_keeps_urls_and_addresses_from_becoming_links():
    """GFM makes links of bare URLs, www. names and e-mail addresses even when they are escaped: md_text
    breaks each with an invisible word joiner, and the text reads the same."""
    import re

    from app_pages.common import md_text

    text = "![x](http://127.0.0.1:9/t.png) see www.example.com, HTTPS://a.org, ftp://f.org or me@shop.example"
    out = md_text(text)
    assert not re.search(r"(?i)(https?|ftp)\\?://|www\.|@[-\w]", out), out
    assert re.sub(r"\\(.)", r"\1", out).replace("\u2060", "") == text


def test_chart_labels_from_the_catalogue_are_text_not_plotly_markup():
    """Plotly turns <a href>, <b>, <br> in labels into links and styling: catalogue values are escaped in the
    data of every chart (the page's own annotations are left alone); customdata keeps raw ids."""
    import pandas as pd
    import plotly.express as px

    from app_pages.common import plain_chart_text

    frame = pd.DataFrame(
        {
            "x": [1.0, 2.0],
            "y": [3.0, 4.0],
            "item_id": ["i<1>", "i2"],
            "title": ['<a href="http://127.0.0.1:9/x">t</a>', "Tom & Jerry"],
            "category": ["<b>cat</b>", "plain"],
        }
    )
    fig = px.scatter(frame, x="x", y="y", color="category", hover_name="title", custom_data=["item_id"])
    fig.add_annotation(text="<b>ours</b>")
    safe = plain_chart_text(fig)
    assert [t.name for t in safe.data] == ["&lt;b&gt;cat&lt;/b&gt;", "plain"]
    assert list(safe.data[0].hovertext) == ['&lt;a href="http://127.0.0.1:9/x"&gt;t&lt;/a&gt;']
    assert list(safe.data[1].hovertext) == ["Tom &amp; Jerry"]
    assert safe.data[0].customdata.tolist() == [["i<1>"]]  # selections hand back the real id
    assert safe.layout.annotations[0].text == "<b>ours</b>"
    assert [t.name for t in fig.data] == ["<b>cat</b>", "plain"]  # the original is untouched (cached figures)
    heatmap = plain_chart_text(px.imshow([[1, 2]], x=["<i>a</i>", "b"], y=["row"]))
    assert list(heatmap.data[0].x) == ["&lt;i&gt;a&lt;/i&gt;", "b"]


def test_a_picture_over_the_pixel_cap_is_not_sent_to_the_browser(tmp_path, monkeypatch):
    """A dataset imported before the pixel cap can hold a huge picture: the pages show the placeholder
    instead of having st.image decode it on every view; a damaged file too."""
    from PIL import Image

    from app_pages.common import PLACEHOLDER, image_file
    from recsys.data import pictures

    (tmp_path / "images").mkdir()
    Image.new("RGB", (300, 200), (200, 30, 30)).save(tmp_path / "images" / "big.png")
    Image.new("RGB", (20, 10), (20, 30, 200)).save(tmp_path / "images" / "small.png")
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    monkeypatch.setattr(pictures, "MAX_IMAGE_PIXELS", 300 * 200 - 1)  # the big one is just over
    assert image_file(tmp_path, "images/big.png") == PLACEHOLDER
    assert image_file(tmp_path, "images/broken.png") == PLACEHOLDER
    assert image_file(tmp_path, "images/small.png") == str(tmp_path / "images" / "small.png")
    assert image_file(tmp_path, "../outside.png") == PLACEHOLDER


def test_a_resumed_run_is_not_reported_as_ended_and_its_pause_is_not_an_epoch():
    events = [
        {"type": "stage", "time": 0.0, "stage": "fit"},
        {"type": "epoch", "time": 10.0, "epoch": 0, "valid_ndcg@20": 0.1, "max_epochs": 5},
        {"type": "epoch", "time": 20.0, "epoch": 1, "valid_ndcg@20": 0.2, "max_epochs": 5},
        {"type": "end", "time": 21.0, "state": "stopped"},
        {"type": "stage", "time": 1000.0, "stage": "resume", "epoch": 1},  # resumed much later
        {"type": "epoch", "time": 1010.0, "epoch": 2, "valid_ndcg@20": 0.25, "max_epochs": 5},
        {"type": "epoch", "time": 1020.0, "epoch": 3, "valid_ndcg@20": 0.26, "max_epochs": 5},
    ]
    stopped = summarize_progress(events[:4])
    assert stopped["ended"]["state"] == "stopped" and stopped["eta_seconds"] == 0.0
    resumed = summarize_progress(events)
    assert resumed["ended"] is None and resumed["fraction"] == pytest.approx(0.8)
    assert resumed["eta_seconds"] == pytest.approx(10.0)  # one epoch left at this session's 10 s per epoch


def test_configurations_side_by_side_read_as_values_not_python():
    from app_pages.experiments import config_value

    assert config_value(["behaviour", "text"]) == "behaviour, text"
    assert config_value(None) == "–"
    assert config_value([]) == "–"
    assert config_value(0.05) == "0.05"
    assert config_value({"epochs": 3, "modalities": ["text"]}) == "epochs: 3, modalities: text"
    assert config_value("attention") == "attention"


def test_log_axis_ticks_label_every_range_with_its_decade():
    from app_pages.common import log_axis_ticks

    # two decades or more: powers of ten
    assert log_axis_ticks([1, 40, 300])["tickvals"] == [1, 10, 100]
    # less than two: 1-2-5 steps, each label a whole number (plotly's own "D2" mode writes "2" for 20)
    assert log_axis_ticks([5, 230]) == {
        "tickvals": [5, 10, 20, 50, 100, 200],
        "ticktext": ["5", "10", "20", "50", "100", "200"],
    }
    # inside one step: the steps either side, so the axis still has a scale
    assert log_axis_ticks([12, 14])["tickvals"] == [10, 20]
    assert log_axis_ticks([0, float("nan")]) == {}


def test_shared_evidence_lists_a_price_band_only_when_the_history_is_in_it():
    # "Shared evidence" once listed "price band mid-range — 0% of the history is in it"
    from app_pages.recommendations import evidence_lines

    def lines(share: int) -> list[str]:
        price = {"band": "mid-range", "history_share_pct": share, "shared_with": []}
        return evidence_lines({"evidence": {"price": price}})

    assert not any("price band" in line for line in lines(0))
    assert any("40% of the history" in line for line in lines(40))


def test_shared_evidence_of_a_modality_that_lowers_the_score_says_so():
    """A shared "Scarf" under an attributes bar of -1.81 read as a contradiction: the line says that the
    attributes lower the score overall."""
    from app_pages.recommendations import evidence_lines

    explanation = {
        "modalities": [
            {"modality": "behaviour", "share": 4.49, "present": True},
            {"modality": "text", "share": 0.05, "present": True},
            {"modality": "attributes", "share": -1.81, "present": True},
        ],
        "evidence": {
            "labels": [{"column_label": "Type", "shared_values": ["Scarf"], "shared_with": []}],
            "words": [{"word": "plaid"}],
        },
    }
    labels, words = evidence_lines(explanation)
    assert labels == "**Type** “Scarf” (though its attributes lower its score overall)"
    assert "lower" not in words
    # said once per modality: a second attributes line (the price band) does not repeat it
    explanation["evidence"]["price"] = {"band": "budget", "history_share_pct": 50}
    lines = evidence_lines(explanation)
    assert sum("lower its score overall" in line for line in lines) == 1


def test_shared_evidence_for_a_visitor_speaks_of_the_liked_items():
    from app_pages.recommendations import evidence_lines
    from recsys.explain.explainer import NEW_VISITOR

    price = {"band": "premium", "history_share_pct": 50}
    counts = {"column_label": "genre", "history_counts": [{"value": "Fantasy", "count": 2}], "history_size": 2}
    visitor = evidence_lines({"user_id": NEW_VISITOR, "evidence": {"price": price, "labels": [counts]}})
    assert visitor == [
        "**genre** “Fantasy” — 2 of the 2 liked items",
        "**price band** premium — 50% of the liked items are in it",
    ]
    user = evidence_lines({"user_id": "u1", "evidence": {"price": price, "labels": [counts]}})
    assert user == [
        "**genre** “Fantasy” — 2 of the 2 items in the history",
        "**price band** premium — 50% of the history is in it",
    ]


def test_test_metrics_say_how_many_users_they_average_over():
    from app_pages.train import _evaluated_users_text

    few = _evaluated_users_text({"model": {"test": {"n_users_evaluated": 68}}})
    assert "68 users" in few and "noise" in few
    many = _evaluated_users_text({"model": {"test": {"n_users_evaluated": 610}}})
    assert "610 users" in many and "noise" not in many
    assert _evaluated_users_text({}) == "" and _evaluated_users_text({"model": None}) == ""


def test_a_card_names_the_column_of_a_value_that_is_a_code_or_a_number():
    from app_pages.common import item_caption

    row = {"category": "Home & Kitchen", "store_id": "12", "size": "XL", "genres": "Action|Comedy", "price": "9.5"}
    caption = item_caption(row, ["category", "store_id", "size"], "price")
    assert caption == "Home & Kitchen · store id 12 · size XL · price 9.50"
    assert item_caption(row, ["genres"], labels={"genres": "|"}) == "Action, Comedy"
    # two authors and a publisher: the column's labels are told apart from the next column
    book = {"authors": "Tom Tanaka|Ines Brown", "publisher": "Little, Brown"}
    assert (
        item_caption(book, ["authors", "publisher"], labels={"authors": "|"})
        == "Tom Tanaka, Ines Brown · Little, Brown"
    )
    # a "|" in a value that is not a list of labels is part of the value
    assert item_caption({"category": "Tools|Garden"}, ["category"]) == "Tools|Garden"
    assert item_caption({"brand": "cat_7"}, ["brand"]) == "brand cat_7"
    assert item_caption({"sku": "SKU-00017"}, ["sku"]) == "sku SKU-00017"
    # a name joined by "&" or an apostrophe reads alone, as the other brands do
    assert item_caption({"brand": "Bolt&Co"}, ["brand"]) == "Bolt&Co"
    assert item_caption({"brand": "O'Neill"}, ["brand"]) == "O'Neill"
    assert item_caption({"Variant Price": 36.99}, [], "Variant Price") == "price 36.99"  # a Shopify column's name
    # a category path by its last level, however long
    long_path = "Apparel & Accessories > Clothing > Shirts & Tops > T-Shirts"
    assert item_caption({"Product Category": long_path}, ["Product Category"]) == "T-Shirts"
    assert item_caption({"category": "Gaming > Controllers"}, ["category"]) == "Controllers"


def test_the_tilt_sentence_says_the_direction_each_run_learned():
    from app_pages.attention import tilt_sentence

    assert tilt_sentence({}) == ""
    assert tilt_sentence({"text": 0.3, "image": 0.2, "attributes": 0.01}) == (
        "In this run Text and Picture weigh more on often chosen items (so Behaviour weighs less there)."
    )
    assert tilt_sentence({"text": 0.4, "image": -0.8, "attributes": -0.45}) == (
        "In this run Text weighs more on often chosen items; Picture and Attributes weigh more on rarely chosen ones."
    )
    assert tilt_sentence({"text": -0.2}).startswith("In this run Text weighs more on rarely chosen items")
    assert tilt_sentence({"text": 0.01, "image": -0.02}) == "In this run that factor is close to 1 for every item."


def test_the_why_this_chart_gives_the_popularity_row_a_contribution_and_no_weight():
    from app_pages.recommendations import modality_chart

    row = dict(present=True, missing=False, weighted=True)
    explanation = {
        "has_attention": True,
        "modalities": [
            {**row, "modality": "behaviour", "attention": 0.02, "attention_pct": 2, "share": 0.4},
            {**row, "modality": "text", "attention": 0.98, "attention_pct": 98, "share": -0.7},
            {**row, "modality": "popularity", "attention": 0.0, "attention_pct": 0, "share": 6.2, "weighted": False},
        ],
    }
    fig = modality_chart(explanation)
    weights, shares = fig.data
    assert list(weights.y) == ["Popularity", "Text", "Behaviour"]
    assert list(weights.text) == ["no weight", "98%", "2%"]
    assert list(shares.text) == ["+6.20", "-0.70", "+0.40"]


def test_the_runs_table_names_the_attribute_columns_used_and_ignored():
    from app_pages.experiments import attribute_columns

    assert attribute_columns(None) == "–" and attribute_columns({}) == "–"
    assert attribute_columns({"category": 1.0, "brand": 0.0, "tags": 0.0}) == "category · ignored: brand, tags"
    assert attribute_columns({"brand": 1.0, "price": 0.5}) == "brand · price (50%)"


def test_a_part_of_a_whole_never_reads_all_or_nothing_unless_it_is():
    from app_pages.common import part_percent

    assert part_percent(398, 400) == ">99%" and part_percent(400, 400) == "100%"
    assert part_percent(1, 400) == "<1%" and part_percent(0, 400) == "0%"
    assert part_percent(1010, 1500) == "67%" and part_percent(3, 0) == "–"


def test_column_names_in_the_replacement_warning_are_escaped():
    """The names come from the catalogue and go into a Markdown warning: a column named like an image link
    must show as those characters."""
    from app_pages.data import escaped_columns
    from recsys.data.report import replacement_losses

    before = {"users": ["age_band", "![x](http://host/p.png)"]}
    [loss] = replacement_losses({}, {}, escaped_columns(before), escaped_columns({"users": []}))
    assert "![" not in loss and "\\[x\\]" in loss  # "[" escaped: no image, no link
    assert escaped_columns(None) is None


def test_chart_labels_name_each_run_once_and_add_the_run_id_only_to_tell_two_apart(tmp_path):
    from app_pages.experiments import short_labels
    from recsys.train.records import RunRecord

    def run(run_id: str, started: float) -> RunRecord:
        return RunRecord(run_id, tmp_path / run_id, {"dataset": "shop", "model": "fusion"}, {"started": started})

    labels = short_labels([run("shop-fusion", 1.8e9), run("a", 1.8e9 + 7200), run("b", 1.8e9 + 7210)])
    assert labels["shop-fusion"].startswith("Fusion on shop · ") and "(" not in labels["shop-fusion"]
    # "a" and "b" started in the same minute: their labels would read the same, so each ends with its id
    assert labels["a"].endswith(" (a)") and labels["b"].endswith(" (b)") and labels["a"][:-4] == labels["b"][:-4]


def test_the_attention_page_offers_only_runs_with_weights_per_user(tmp_path):
    from app_pages.attention import per_user_weight_runs
    from recsys.train.records import RunRecord

    def run(run_id: str, model: str, fusion: str | None) -> RunRecord:
        options = {"fusion_options": {"fusion": fusion}} if fusion else {}
        return RunRecord(run_id, tmp_path / run_id, {"dataset": "shop", "model": model, **options}, {})

    runs = [run("m", "fusion", "mean"), run("g", "fusion", "item_gate"), run("c", "fusion", "concat")]
    runs += [run("e", "ease", None), run("a", "fusion", "attention"), run("old", "fusion", None)]
    assert [r.run_id for r in per_user_weight_runs(runs)] == ["a", "old"]  # "old": before the option was written


def test_the_item_map_colours_the_largest_categories_and_greys_the_rest():
    import pandas as pd

    from app_pages.attention import MAP_COLOURS, largest_groups, map_legend_order

    few = pd.Series(["a", "b", "a"])
    assert largest_groups(few, MAP_COLOURS).tolist() == ["a", "b", "a"]
    # 29 categories, as the demo has: a palette repeats colours, so only the largest keep their own
    many = pd.Series([f"c{n:02d}" for n in range(29) for _ in range(30 - n)])
    grouped = largest_groups(many, MAP_COLOURS)
    assert grouped.nunique() == MAP_COLOURS
    assert set(grouped.unique()) == {f"c{n:02d}" for n in range(MAP_COLOURS - 1)} | {"other (19 values)"}
    assert (grouped == "c00").sum() == 30  # a kept category keeps all its items
    order = map_legend_order(grouped)
    assert order[0] == "c00" and order[-1] == "other (19 values)"


def test_an_item_without_a_category_is_drawn_as_none_on_the_map():
    import pandas as pd

    from app_pages.attention import map_labels

    values = pd.Series(["Toys|Games", "", "  ", None, float("nan"), "Books"], dtype=object)
    assert map_labels(values, "|").tolist() == ["Toys", "(none)", "(none)", "(none)", "(none)", "Books"]


def test_the_map_colours_a_long_list_of_category_paths_by_their_first_level():
    import pandas as pd

    from app_pages.attention import MAP_COLOURS, map_labels

    paths = pd.Series([f"Dept {d} > Aisle {a}" for d in range(5) for a in range(6)])  # 30 sub-categories
    assert set(map_labels(paths, "|", MAP_COLOURS)) == {f"Dept {d}" for d in range(5)}
    few = pd.Series(["Dept 1 > Aisle 1", "Dept 1 > Aisle 2", "Dept 2 > Aisle 1"])
    assert map_labels(few, "|", MAP_COLOURS).tolist() == few.tolist()  # few enough to keep as they are


def test_the_list_heading_says_when_the_filters_leave_fewer_items_than_asked():
    from app_pages.recommendations import list_heading

    assert list_heading(10, 10) == "Top 10" and list_heading(10, 0) == "Top 10"
    assert list_heading(10, 5) == "Top 5 (of 10 asked: only 5 items pass the filters)"
    assert list_heading(10, 1) == "Top 1 (of 10 asked: only 1 item passes the filters)"


def test_price_filter_stops_follow_orders_of_magnitude():
    from app_pages.recommendations import price_label, price_steps

    # a linear slider over 10-1,754 left a 50-100 range a few pixels wide
    stops = price_steps(np.array([9.99, 54.0, 120.0, 1753.2]))
    assert stops[0] == 9 and stops[-1] == 1754
    assert {20, 50, 100, 200, 500, 1000} <= set(stops)
    assert stops == sorted(stops) and len(stops) == len(set(stops))
    # a range within two orders of magnitude gets even, round steps (4-180: nothing between 100 and 180 before)
    assert price_steps(np.array([4.21, 90.0, 179.76])) == [4, *range(10, 190, 10)]
    assert price_steps(np.array([0.0, 0.99, 40.0])) == list(range(0, 42, 2))
    narrow = price_steps(np.array([12.0, 13.5, 14.0]))
    assert narrow[0] == 12 and narrow[-1] == 14 and 12.5 in narrow and len(narrow) <= 21
    assert [price_label(v) for v in (9.0, 1000.0, 12.5)] == ["9", "1,000", "12.50"]
    # with the sign, the file's way: a German shop's "1.299 €" and "12,50 €"
    assert [price_label(v, "€", "1.234,56 ¤") for v in (1299.0, 12.5)] == ["1.299 €", "12,50 €"]
    assert price_label(1299.0, "$") == "$1,299"


def test_a_card_writes_the_price_with_its_currency_sign():
    from app_pages.common import item_caption

    row = {"category": "Knives", "price": 1592.24}
    assert item_caption(row, ["category"], "price", price_unit="$") == "Knives · $1,592.24"
    assert item_caption(row, ["category"], "price") == "Knives · price 1,592.24"


def test_a_user_with_one_item_is_not_one_items():
    from app_pages.common import user_option

    assert user_option("U00002", 1) == "U00002 · 1 item" and user_option("U1", 1200) == "U1 · 1,200 items"


def test_half_star_ratings_are_told_apart():
    """round() rounds halves to even: 4.5 and 3.5 both showed four stars, and 2.5 two."""
    from app_pages.recommendations import stars

    assert [stars(v) for v in (4.5, 3.5, 2.5)] == ["★★★★★ 4.5", "★★★★☆ 3.5", "★★★☆☆ 2.5"]
    assert stars(4) == "★★★★☆" and stars(7) == "rating 7" and stars(None) == ""


def test_users_are_listed_with_who_they_are_where_the_users_table_says(tmp_path):
    """A shop owner knew a customer only by "5800005970926 · 22 items": the pickers now add what the users
    table says of who they are (city, country first), never a yes/no and never what the schema ignores."""
    from app_pages.common import DatasetFrames, describe_users, user_option

    users = pd.DataFrame(
        {
            "user_id": ["5800001", "5800002", "5800003"],
            "Accepts Email Marketing": ["yes", "no", "yes"],
            "Tags": ["VIP", "", "wholesale"],
            "Default Address Country Code": ["DE", "AT", ""],
            "Default Address City": ["Berlin", "Wien", ""],
            "Email": ["a@x.de", "b@x.at", "c@x.ch"],
        }
    )
    roles = {
        "Accepts Email Marketing": "categorical",
        "Tags": "categorical",
        "Default Address Country Code": "categorical",
        "Default Address City": "categorical",
        "Email": "ignore",
    }
    data = DatasetFrames("shop", pd.DataFrame(), pd.DataFrame(), users, {"users": roles}, str(tmp_path))
    described = describe_users(data)
    assert described == {"5800001": "DE · Berlin", "5800002": "AT · Wien"}  # the third says nothing of where
    assert user_option("5800001", 22, described["5800001"]) == "5800001 · DE · Berlin · 22 items"
    assert user_option("u9", 1) == "u9 · 1 item"


def test_a_tie_is_not_shown_as_a_win():
    """Home read "NDCG@20 0.705 · best baseline MostPop 0.704" for 0.70450 against 0.70446, and the Train table
    marked the model's cell alone as the best."""
    import pandas as pd

    from app_pages.common import fmt_metric, metric_decimals
    from app_pages.train import styled_metrics

    decimals = metric_decimals(0.70450, 0.70446)
    assert fmt_metric(0.70450, decimals) == fmt_metric(0.70446, decimals) == "0.7045"
    assert metric_decimals(0.1758, 0.1536) == 3 and metric_decimals(None, 0.2) == 3
    table = pd.DataFrame(
        {"Model": ["Fusion (this run)", "MostPop", "EASE"], "Split": ["test"] * 3, "NDCG@20": [0.70450, 0.70446, 0.6]}
    )
    import re

    html = styled_metrics(table).to_html()
    # one CSS rule lists every cell it styles: the two tied cells of the NDCG@20 column, not the third
    marked = "".join(re.findall(r"([^{}]*)\{[^}]*font-weight: 700", html))
    assert sorted(re.findall(r"row(\d+)_col2", marked)) == ["0", "1"]


def test_the_attention_page_says_why_short_histories_give_everyone_the_same_weights():
    """A book shop with a median of two books per reader saw 25 % on every modality and 24-26 % for the middle
    half of the users, with no word of what that means: it now says so, and only where the weights bunch up."""
    from streamlit.testing.v1 import AppTest

    def page(spread: float, length: int) -> None:
        import numpy as np
        import pandas as pd

        from app_pages.attention import distribution

        rng = np.random.default_rng(0)
        raw = 0.25 + spread * rng.standard_normal((200, 4))
        weights = pd.DataFrame(raw / raw.sum(1, keepdims=True), columns=["behaviour", "text", "image", "attributes"])
        weights["user_id"] = [f"u{k}" for k in range(200)]
        weights["history_length"] = length
        distribution(weights, ["behaviour", "text", "image", "attributes"])

    bunched = AppTest.from_function(page, kwargs={"spread": 0.005, "length": 2}, default_timeout=60).run()
    assert not bunched.exception
    notes = " ".join(i.value for i in bunched.info)
    assert "median history of 2 items" in notes and "Users' weights spread out as their histories grow" in notes
    spread = AppTest.from_function(page, kwargs={"spread": 0.08, "length": 40}, default_timeout=60).run()
    assert not spread.exception and not spread.info
