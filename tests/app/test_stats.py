"""recsys.data.stats: dataset statistics as plain functions over frames, checked by hand."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pytest

from recsys.data import stats
from tests.conftest import png_bytes, write_bundle

ITEMS = pd.DataFrame(
    {
        "item_id": ["a", "b", "c", "d"],
        "title": ["Red kettle", "Blue boots", "", "Green hose"],
        "description": ["A long text about a kettle for the kitchen", "", "", "Twenty metres of hose"],
        "category": ["Kitchen", "Outdoor", "Kitchen", ""],
        "tags": ["home|red", "shoes", "", "garden|home"],
        "price": [12.5, 89.0, np.nan, 20.0],
        "image_file": ["images/a.png", "images/missing.png", "", "../escape.png"],
    }
)
ROLES = {
    "item_id": "id",
    "title": "text",
    "description": "text",
    "category": "categorical",
    "tags": "multi_label",
    "price": "numeric",
    "image_file": "image",
}
INTERACTIONS = pd.DataFrame(
    {
        "user_id": ["u1", "u1", "u1", "u2", "u2", "u3", "u3"],
        "item_id": ["a", "b", "a", "a", "c", "a", "b"],  # u1-a twice: one pair
        "rating": [5, 3, 4, 4, 2, 1, 5],
    }
)


def test_overview_counts_density_and_tail():
    ov = stats.overview(ITEMS, INTERACTIONS, rating_column="rating")
    assert ov["users"] == 3 and ov["items"] == 4 and ov["interactions"] == 7
    assert ov["unique_pairs"] == 6
    assert ov["density"] == pytest.approx(6 / 12)
    assert ov["sparsity"] == pytest.approx(0.5)
    assert ov["items_without_interactions"] == 1  # d
    assert ov["median_per_user"] == 2.0  # u1: a, b; u2: a, c; u3: a, b
    assert ov["max_per_item"] == 3  # a: u1, u2, u3
    assert ov["top20_item_share"] == pytest.approx(3 / 6)  # the top item (a) of the 4 has 3 of 6 pairs
    assert ov["median_per_item"] == 1.5  # over the catalogue: a 3, b 2, c 1 and d, which nobody chose, 0
    assert ov["mean_rating"] == pytest.approx(24 / 7)


def test_activity_counts_and_long_tail_curve():
    per_item = stats.activity_counts(INTERACTIONS, "item")
    assert per_item.to_dict() == {"a": 3, "b": 2, "c": 1}
    curve = stats.long_tail_curve(INTERACTIONS, "item")
    assert curve["rank"].tolist() == [1, 2, 3]
    assert curve["count"].tolist() == [3, 2, 1]
    assert curve["cumulative_share"].iloc[-1] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        stats.activity_counts(INTERACTIONS, "shop")


def test_long_tail_curve_thins_long_catalogues_but_keeps_the_ends():
    frame = pd.DataFrame({"user_id": np.arange(5000).astype(str), "item_id": np.arange(5000).astype(str)})
    curve = stats.long_tail_curve(frame, "item", max_points=100)
    assert len(curve) <= 100
    assert curve["rank"].iloc[0] == 1 and curve["rank"].iloc[-1] == 5000


def test_activity_histogram_covers_every_user():
    hist = stats.activity_histogram(INTERACTIONS, "user", bins=5)
    assert hist["count"].sum() == 3
    assert hist["low"].iloc[0] == 2  # starts at the smallest activity, no empty leading bins


def test_rating_distribution():
    dist = stats.rating_distribution(INTERACTIONS, "rating")
    assert dist["rating"].tolist() == [1, 2, 3, 4, 5]
    assert dist["count"].tolist() == [1, 1, 1, 2, 2]
    assert dist["share"].sum() == pytest.approx(1.0)
    assert stats.rating_distribution(INTERACTIONS, None).empty
    continuous = pd.DataFrame({"score": np.linspace(0, 1, 200)})
    assert len(stats.rating_distribution(continuous, "score")) == 20


def test_activity_over_time_picks_a_period_for_the_span():
    day = 86_400.0
    start = pd.Timestamp("2024-01-03", tz="UTC").timestamp()  # a Wednesday
    weekly = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u1", "u3", "u2"],
            "timestamp": [start, start + day, start + 8 * day, start + 200 * day, None],
        }
    )
    frame = stats.activity_over_time(weekly, "timestamp")
    assert frame.attrs["period"] == "week"
    # weeks start on Monday: the Wednesday and the Thursday fall in the week of Monday 1 January
    assert frame["start"].iloc[0] == pd.Timestamp("2024-01-01")
    assert frame["interactions"].tolist() == [2, 1, 1]
    assert frame["users"].tolist() == [2, 1, 1]
    assert frame["interactions"].sum() == 4  # the undated interaction is left out
    assert frame.attrs["first"] == pd.Timestamp("2024-01-03")
    months = weekly.assign(timestamp=[start, start + 400 * day, start + 800 * day, None, None])
    assert stats.activity_over_time(months, "timestamp").attrs["period"] == "month"
    days = weekly.assign(timestamp=[start, start + 3 * day, None, None, None])
    assert stats.activity_over_time(days, "timestamp")["interactions"].tolist() == [1, 1]
    one_day = weekly.assign(timestamp=[start, start + 60, None, None, None])
    assert stats.activity_over_time(one_day, "timestamp").empty
    assert stats.activity_over_time(weekly, None).empty


def test_modality_coverage_checks_pictures_on_disk(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(png_bytes())
    (tmp_path.parent / "escape.png").write_bytes(png_bytes())
    cov = stats.modality_coverage(ITEMS, ROLES, tmp_path).set_index("name")
    assert cov.loc["text", "items"] == 3  # c has neither title nor description
    assert cov.loc["image", "items"] == 1  # missing file and a path leaving the folder do not count
    assert cov.loc["attributes", "items"] == 4
    assert cov.loc["category", "share"] == pytest.approx(0.75)
    assert cov.loc["price", "items"] == 3
    assert cov.loc["tags", "role"] == "multi_label"


def test_category_columns_and_breakdown():
    assert stats.category_columns(ITEMS, ROLES) == ["category", "tags"]
    breakdown = stats.category_breakdown(ITEMS, "tags", "multi_label", "|", INTERACTIONS).set_index("value")
    assert breakdown.loc["home", "items"] == 2  # a and d
    assert breakdown.loc["home", "interactions"] == 4  # a has 4 rows, d none
    assert breakdown.loc["shoes", "interactions"] == 2
    top = stats.category_breakdown(ITEMS, "tags", "multi_label", top=2)
    assert top["value"].iloc[-1] == "(other)" and top["items"].sum() == 5


def test_cards_show_who_made_the_item_however_many_makers_there_are():
    """A book shop's author column has hundreds of values: too many for a chart, but what a reader looks for on
    a card and filters by. Category-like columns still come first; a column named like a maker whose values
    never repeat is an identifier and stays off."""
    n = 600
    books = pd.DataFrame(
        {
            "item_id": [f"b{i}" for i in range(n)],
            "Book-Author": [f"Author {i // 2}" for i in range(n)],  # 300 authors, two books each
            "Publisher": [f"House {i % 18}" for i in range(n)],
            "Genre": [("Crime", "Poetry", "Travel")[i % 3] for i in range(n)],
            "Format": [("paperback", "hardcover")[i % 2] for i in range(n)],
            "seller_sku": [f"S-{i}" for i in range(n)],  # a maker-like name, one value per item
            "Year": [1990 + i % 30 for i in range(n)],
        }
    )
    roles = {
        "item_id": "id",
        "Book-Author": "categorical",
        "Publisher": "categorical",
        "Genre": "categorical",
        "Format": "categorical",
        "seller_sku": "categorical",
        "Year": "numeric",
    }
    assert stats.category_columns(books, roles) == ["Genre", "Publisher", "Format"]  # the charts' columns
    assert stats.card_columns(books, roles) == ["Genre", "Book-Author", "Publisher"]
    assert stats.card_columns(books, roles, limit=5) == ["Genre", "Book-Author", "Publisher", "Format"]
    assert stats.maker_column(books, roles) == "Book-Author"
    # the demo's columns keep their order; a multi-label cast is split on the dataset's separator
    assert stats.card_columns(ITEMS, ROLES) == ["category", "tags"]
    films = pd.DataFrame(
        {"genres": ["Drama;Crime", "Comedy"] * 300, "cast_top5": [f"A{i % 250};B{i}" for i in range(600)]}
    )
    film_roles = {"genres": "multi_label", "cast_top5": "multi_label"}
    assert stats.card_columns(films, film_roles, separator=";") == ["genres", "cast_top5"]
    assert stats.maker_column(films, film_roles) == "cast_top5"
    assert stats.maker_column(ITEMS, ROLES) is None
    assert stats.maker_column(pd.DataFrame({"podcast": ["x"]}), {"podcast": "categorical"}) is None


def test_price_and_title_columns():
    assert stats.price_column(ITEMS, ROLES) == "price"
    assert stats.price_column(ITEMS, {**ROLES, "price": "categorical"}) is None
    assert stats.title_column(ROLES, ITEMS) == "title"
    assert (
        stats.title_column(
            {"item_id": "id", "blurb": "text", "name2": "text"},
            pd.DataFrame({"blurb": ["a long long text"], "name2": ["short"]}),
        )
        == "name2"
    )
    assert stats.title_column({"item_id": "id"}) == "item_id"


def test_sample_items_prefers_pictures_and_is_seeded(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(png_bytes())
    sample = stats.sample_items(ITEMS, ROLES, tmp_path, n=3)
    assert sample["item_id"].tolist() == ["a"]
    spread = stats.sample_items(ITEMS, {"item_id": "id", "category": "categorical"}, n=3, seed=1, category="category")
    assert len(spread) == 3 and spread["category"].nunique() == 3
    assert (
        spread["item_id"].tolist()
        == stats.sample_items(ITEMS, {"item_id": "id", "category": "categorical"}, n=3, seed=1, category="category")[
            "item_id"
        ].tolist()
    )


def test_role_table_from_a_bundle_folder_and_overrides(small_bundle):
    tables, schema_json, problems = stats.read_bundle_tables(small_bundle)
    assert set(tables) == {"items", "interactions"} and not problems and schema_json is None
    table = stats.role_table(tables)
    roles = {(r.table, r.column): r.role for r in table.itertuples()}
    assert roles[("items", "genres")] == "multi_label"
    assert roles[("items", "image_file")] == "image"
    assert roles[("interactions", "rating")] == "rating"
    assert all(table["reason"] != "")
    edited = table.copy()
    edited.loc[(edited["table"] == "interactions") & (edited["column"] == "rating"), "role"] = "ignore"
    assert stats.roles_from_table(edited, table) == {"interactions": {"rating": "ignore"}}
    assert stats.roles_from_table(table, table) == {}


def test_role_table_shows_a_column_mapped_to_an_id_as_an_id():
    """``sku`` and ``customer_id`` stand for item_id / user_id: the review shows them as ids (the import stores
    them so), not as ignore or categorical."""
    items = pd.DataFrame({"sku": ["SKU-1", "SKU-2", "SKU-3"], "title": ["Shovel", "Gloves", "Rake"]})
    inter = pd.DataFrame({"customer_id": ["C1", "C2", "C1"], "sku": ["SKU-1", "SKU-2", "SKU-3"]})
    tables = {"items": items, "interactions": inter}
    mapped = stats.id_columns(tables)
    assert mapped["items"]["item_id"] == "sku" and mapped["interactions"]["user_id"] == "customer_id"
    roles = {(r.table, r.column): r.role for r in stats.role_table(tables).itertuples()}
    assert roles[("items", "sku")] == "id"
    assert roles[("interactions", "sku")] == "id" and roles[("interactions", "customer_id")] == "id"
    assert roles[("items", "title")] != "id"


def test_read_bundle_tables_from_a_wrapped_zip_reads_only_the_tables(tmp_path):
    items = pd.DataFrame({"item_id": ["a"], "title": ["x"]}).to_csv(index=False).encode()
    inter = pd.DataFrame({"user_id": ["u"], "item_id": ["a"]}).to_csv(index=False).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("shop/items.csv", items)
        archive.writestr("shop/interactions.csv", inter)
        archive.writestr("shop/schema.json", '{"items": {"title": "categorical"}}')
        archive.writestr("shop/images/a.png", png_bytes())
    tables, schema_json, problems = stats.read_bundle_tables(buffer.getvalue())
    assert set(tables) == {"items", "interactions"} and not problems
    assert schema_json["items"] == {"title": "categorical"}
    roles = stats.role_table(tables, schema_json)
    assert roles.set_index("column").loc["title", "role"] == "categorical"
    assert stats.read_bundle_tables(b"not a zip")[2] == ["this is not a readable .zip archive"]


def test_read_bundle_tables_reports_unreadable_files(tmp_path):
    folder = write_bundle(tmp_path / "b", pd.DataFrame({"item_id": ["a"]}), None)
    (folder / "interactions.csv").write_bytes(b"user_id,item_id\n\x81\x8d,a\n")  # not in Windows-1252 either
    tables, _, problems = stats.read_bundle_tables(folder)
    assert "items" in tables and "interactions" not in tables
    assert any("not UTF-8" in p for p in problems)


def test_the_preview_names_every_problem_at_once(tmp_path):
    """A zip of one damaged interactions file: the page said only that its rows were ragged, and the missing
    items table came up after that was fixed; the level tag "[error]" showed as text."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("interactions.csv", "usr;itm;;rating;ts,,\nU1,S1,4,17\nU2,S2,4,18\n")
    tables, _, problems = stats.read_bundle_tables(buffer.getvalue())
    assert tables == {}
    assert problems[0].startswith("no items table found")
    assert any(p.startswith("interactions.csv: line 2 has 4 fields, the header has 3") for p in problems)
    assert not any("[error]" in p for p in problems)


def test_a_price_is_found_by_its_currency_sign_or_its_name_in_other_languages():
    """A German export's "preis" ("1.299,00 €") was no price: cards showed none and the price filter was missing."""
    items = pd.DataFrame({"item_id": ["a", "b"], "preis": [12.5, 1299.0], "gewicht": [1.0, 2.0]})
    roles = {"item_id": "id", "preis": "numeric", "gewicht": "numeric"}
    assert stats.price_column(items, roles) == "preis"
    renamed = items.rename(columns={"preis": "vk"})
    roles = {"item_id": "id", "vk": "numeric", "gewicht": "numeric"}
    assert stats.price_column(renamed, roles) is None
    assert stats.price_column(renamed, roles, units={"vk": "€"}) == "vk"  # the sign it was written with
