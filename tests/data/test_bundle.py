"""Bundle loading and validation: every error a user can make gets a clear, specific message."""

from __future__ import annotations

import io
import zipfile

import pandas as pd
import pytest

from recsys.data import bundle as B, schema as S
from recsys.data.bundle import load_bundle
from tests.conftest import png_bytes, write_bundle

ITEMS = pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["Alpha one", "Beta two", "Gamma three"]})
INTERACTIONS = pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "c"], "rating": [5, 4, 3]})


def only_error(result, code):
    assert not result.ok
    errors = [issue for issue in result.report.errors if issue.code == code]
    assert errors, f"expected error {code}, got {result.report.format()}"
    return errors[0]


def test_small_bundle_loads_and_normalises(small_bundle):
    result = load_bundle(small_bundle)
    assert result.ok, result.report.format()
    bundle = result.bundle
    assert bundle.schema.items["genres"] == "multi_label"
    assert bundle.schema.items["price"] == "numeric"
    assert bundle.schema.items["image_file"] == "image"
    assert bundle.schema.interactions["rating"] == "rating"
    assert bundle.items["price"].tolist() == [12.5, 89.0, 1299.0]  # currency and thousands parsed
    assert bundle.counts() == {"users": 3, "items": 3, "interactions": 5, "items_with_image": 2}


def test_missing_required_column(tmp_path):
    # an id column by another name that the interactions refer to is found (and said so) ...
    found = load_bundle(write_bundle(tmp_path / "a", ITEMS.rename(columns={"item_id": "sku"}), INTERACTIONS))
    assert found.ok and found.bundle.schema.columns == {"items": {"sku": "item_id"}}
    # ... one that nothing refers to is not guessed: the error says what it found instead
    unrelated = ITEMS.rename(columns={"item_id": "sku"}).assign(sku=["x", "y", "z"])
    bundle = write_bundle(tmp_path / "b", unrelated, INTERACTIONS)
    issue = only_error(load_bundle(bundle), "missing_column")
    assert issue.file == "items.csv" and issue.column == "item_id"
    assert "'item_id'" in issue.message and "'sku'" in issue.message  # says what it found instead


def test_missing_interactions_user_column(tmp_path):
    bundle = write_bundle(tmp_path / "b", ITEMS, INTERACTIONS.drop(columns="user_id"))
    issue = only_error(load_bundle(bundle), "missing_column")
    assert issue.file == "interactions.csv" and issue.column == "user_id"


def test_missing_table(tmp_path):
    bundle = write_bundle(tmp_path / "b", ITEMS, None)
    issue = only_error(load_bundle(bundle), "missing_file")
    assert "interactions.csv" in issue.message


def test_duplicate_item_ids(tmp_path):
    items = pd.DataFrame({"item_id": ["a", "b", "a"], "title": ["x one", "y two", "z three"]})
    issue = only_error(load_bundle(write_bundle(tmp_path / "b", items, INTERACTIONS.iloc[:2])), "duplicate_item_ids")
    assert issue.column == "item_id" and issue.rows == [2, 4]
    assert "a" in issue.message and "more than once" in issue.message


def test_interactions_pointing_at_unknown_items(tmp_path):
    interactions = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "item_id": ["a", "zzz", "yyy"]})
    issue = only_error(load_bundle(write_bundle(tmp_path / "b", ITEMS, interactions)), "unknown_items")
    assert "zzz" in issue.message and issue.rows == [3, 4]


def test_few_unknown_items_are_a_warning_and_dropped(tmp_path):
    interactions = pd.DataFrame({"user_id": [f"u{i}" for i in range(200)], "item_id": ["a"] * 199 + ["missing-item"]})
    result = load_bundle(write_bundle(tmp_path / "b", ITEMS, interactions))
    assert result.ok and "unknown_items" in result.report.codes("warning")
    assert len(result.bundle.interactions) == 199


def test_missing_and_unreadable_images(tmp_path):
    items = ITEMS.assign(image_file=["images/a.png", "images/gone.png", "images/broken.jpg"])
    bundle = write_bundle(
        tmp_path / "b",
        items,
        INTERACTIONS,
        images={"images/a.png": png_bytes(), "images/broken.jpg": b"not a jpeg at all"},
    )
    result = load_bundle(bundle)
    assert result.ok  # a missing picture is a missing modality, not a broken bundle
    warnings = {issue.code: issue for issue in result.report.warnings}
    assert warnings["missing_images"].rows == [3] and warnings["unreadable_images"].rows == [4]
    assert "treated as having no picture" in warnings["missing_images"].message
    # the user is told which items and files, not only row numbers
    gone, broken = ITEMS["item_id"].iloc[1], ITEMS["item_id"].iloc[2]
    assert f"item {gone} (images/gone.png)" in warnings["missing_images"].message
    assert f"item {broken} (images/broken.jpg)" in warnings["unreadable_images"].message
    # one of each: told in the singular
    assert warnings["missing_images"].message.startswith("1 picture named in the items table is not in the bundle")
    assert warnings["unreadable_images"].message.startswith("1 picture could not be read as an image")
    assert "that item is treated as having no picture" in warnings["unreadable_images"].message
    assert result.bundle.items["image_file"].tolist() == ["images/a.png", "", ""]


def test_non_numeric_ratings(tmp_path):
    interactions = INTERACTIONS.assign(rating=["5", "great", "3"])
    issue = only_error(load_bundle(write_bundle(tmp_path / "b", ITEMS, interactions)), "non_numeric_ratings")
    assert issue.column == "rating" and issue.rows == [3] and "'great'" in issue.message


def test_empty_file(tmp_path):
    bundle = write_bundle(tmp_path / "b", ITEMS, INTERACTIONS)
    (bundle / "items.csv").write_bytes(b"")
    issue = only_error(load_bundle(bundle), "empty_file")
    assert issue.file == "items.csv" and "empty" in issue.message


def test_header_only_file(tmp_path):
    bundle = write_bundle(tmp_path / "b", ITEMS, INTERACTIONS)
    (bundle / "interactions.csv").write_text("user_id,item_id\n")
    issue = only_error(load_bundle(bundle), "empty_file")
    assert issue.file == "interactions.csv" and "no rows" in issue.message


def test_wrong_encoding(tmp_path):
    bundle = write_bundle(tmp_path / "b", None, INTERACTIONS)
    # bytes Windows-1252 lacks (0x81), or a NUL: not text this studio can read, and it says how to fix it
    (bundle / "items.csv").write_bytes(b"item_id,title\na,Caf\x81\nb,Beta two\nc,Gamma\n")
    issue = only_error(load_bundle(bundle), "wrong_encoding")
    assert issue.file == "items.csv" and "UTF-8" in issue.message and issue.rows == [2]
    (bundle / "items.csv").write_bytes(b"item_id,title\na,Caf\xe9\x00\nb,Beta two\nc,Gamma\n")
    only_error(load_bundle(bundle), "wrong_encoding")


def test_a_windows_1252_file_is_read_with_a_note(tmp_path):
    """Excel's plain "CSV" on a Western European Windows is Windows-1252, not UTF-8: refused, a German shop's
    export needed a second save as "CSV UTF-8"; it is read now, and the report asks to check the letters."""
    bundle = write_bundle(tmp_path / "b", None, INTERACTIONS)
    (bundle / "items.csv").write_bytes(
        "item_id;title\na;Caf\u00e9 cr\u00e8me\nb;Gr\u00fc\u00dfe \u20ac\nc;Gamma\n".encode("cp1252")
    )
    result = load_bundle(bundle)
    assert result.ok, result.report.format()
    assert result.bundle.items["title"].tolist() == ["Caf\u00e9 cr\u00e8me", "Gr\u00fc\u00dfe \u20ac", "Gamma"]
    assert "read_as_windows_1252" in result.report.codes("note")


@pytest.mark.parametrize("path", ["../outside.png", "/etc/passwd", "images/../../x.png", "C:\\Windows\\x.png"])
def test_image_paths_escaping_the_bundle(tmp_path, path):
    items = ITEMS.assign(image_file=[path, "", ""])
    issue = only_error(load_bundle(write_bundle(tmp_path / "b", items, INTERACTIONS)), "image_path_escape")
    assert issue.rows == [2] and "relative to the bundle" in issue.message


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


@pytest.mark.parametrize("evil", ["../evil.txt", "/tmp/evil.txt", "images/../../evil.txt"])
def test_zip_entries_outside_root_are_rejected(tmp_path, evil):
    archive = tmp_path / "bundle.zip"
    archive.write_bytes(_zip({"items.csv": _csv(ITEMS), "interactions.csv": _csv(INTERACTIONS), evil: b"x"}))
    issue = only_error(load_bundle(archive), "archive_path_escape")
    assert evil in issue.rows and "outside the bundle folder" in issue.message
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()


def test_oversized_archive(tmp_path):
    archive = tmp_path / "bundle.zip"
    archive.write_bytes(
        _zip({"items.csv": _csv(ITEMS), "interactions.csv": _csv(INTERACTIONS), "images/big.bin": b"\0" * 50_000})
    )
    issue = only_error(load_bundle(archive, max_archive_bytes=20_000), "archive_too_large")
    assert "over the limit" in issue.message


def test_not_a_zip(tmp_path):
    fake = tmp_path / "bundle.zip"
    fake.write_bytes(b"this is not a zip")
    only_error(load_bundle(fake), "archive_unreadable")


def test_zip_with_wrapper_folder_and_pictures(tmp_path):
    items = ITEMS.assign(image_file=["images/a.png", "", ""])
    data = _zip(
        {"shop/items.csv": _csv(items), "shop/interactions.csv": _csv(INTERACTIONS), "shop/images/a.png": png_bytes()}
    )
    result = load_bundle(data)  # bytes, as an upload arrives
    assert result.ok, result.report.format()
    assert result.bundle.counts()["items_with_image"] == 1


def test_parquet_and_jsonl_tables(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    ITEMS.to_parquet(folder / "items.parquet")
    INTERACTIONS.to_json(folder / "interactions.jsonl", orient="records", lines=True)
    result = load_bundle(folder)
    assert result.ok, result.report.format()
    assert result.bundle.files == {"items": "items.parquet", "interactions": "interactions.jsonl"}
    assert result.bundle.interactions["rating"].tolist() == [5.0, 4.0, 3.0]


def test_numeric_ids_are_the_same_whatever_the_format(tmp_path):
    items = pd.DataFrame({"item_id": [1, 2, 3], "title": ["a x", "b y", "c z"]})
    interactions = pd.DataFrame({"user_id": [1, 2], "item_id": [1.0, 3.0]})  # floats from a spreadsheet
    result = load_bundle(write_bundle(tmp_path / "b", items, interactions))
    assert result.ok, result.report.format()
    assert result.bundle.interactions["item_id"].tolist() == ["1", "3"]


def test_schema_json_and_argument_override_inferred_roles(tmp_path):
    bundle = write_bundle(tmp_path / "b", ITEMS, INTERACTIONS)
    (bundle / "schema.json").write_text('{"items": {"title": "categorical"}}')
    assert load_bundle(bundle).bundle.schema.items["title"] == "categorical"
    overridden = load_bundle(bundle, schema={"items": {"title": "ignore"}, "interactions": {"rating": "ignore"}})
    assert overridden.bundle.schema.items["title"] == "ignore"
    assert overridden.bundle.schema.rating_column is None


def test_bad_schema_role_is_explained(tmp_path):
    bundle = write_bundle(tmp_path / "b", ITEMS, INTERACTIONS)
    issue = only_error(load_bundle(bundle, schema={"items": {"title": "words"}}), "bad_schema")
    assert "'words' is not a role" in issue.message and "categorical" in issue.message


def test_role_inference_on_movielens(movielens):
    result = load_bundle(movielens)
    assert result.ok, result.report.format()
    roles = result.bundle.schema.items
    assert roles == {
        "item_id": "id",
        "title": "text",
        "genres": "multi_label",
        "description": "text",
        "directors": "multi_label",
        "cast_top5": "multi_label",
        "user_tags": "multi_label",
        "imdb_id": "ignore",
        "tmdb_id": "ignore",
        "image_file": "image",
    }
    assert result.bundle.schema.interactions == {
        "user_id": "id",
        "item_id": "id",
        "rating": "rating",
        "timestamp": "timestamp",
    }
    # the counts in the dataset's README
    assert result.report.counts == {"users": 610, "items": 9742, "interactions": 100836, "items_with_image": 2947}


def test_role_inference_on_amazon_giftcards(giftcards):
    result = load_bundle(giftcards)
    assert result.ok, result.report.format()
    roles = result.bundle.schema.items
    assert roles["title"] == roles["description"] == roles["features"] == "text"
    assert roles["brand"] == roles["category"] == "categorical"
    assert roles["price"] == "numeric" and roles["image_file"] == "image"
    assert result.bundle.items["price"].dropna().between(1, 2000).all()  # "$40.00" parsed
    assert result.bundle.schema.interactions["rating"] == "rating"
    assert result.bundle.schema.interactions["review_text"] == "text"
    assert result.report.counts == {"users": 458, "items": 148, "interactions": 2972, "items_with_image": 115}
    assert "duplicate_interactions" in result.report.codes("warning")


def test_id_columns_with_other_names_are_mapped_and_the_time_column_used_is_named(tmp_path):
    items = pd.DataFrame(
        {"article_id": ["0101", "0102", "0103"], "prod_name": ["Jeans", "Dress", "Shirt"], "price": [10.0, 20.0, 5.0]}
    )
    interactions = pd.DataFrame(
        {
            "customer_id": ["c1", "c1", "c2", "c2", "c3"],
            "article_id": ["0101", "0102", "0103", "0101", "0102"],
            "t_dat": ["2019-01-01", "2019-01-02", "2019-02-01", "2019-02-02", "2019-03-01"],
            "timestamp": [1, 2, 3, 4, 5],
        }
    )
    folder = write_bundle(tmp_path / "fashion", items, interactions)
    result = load_bundle(folder)
    assert result.ok, result.report.format()
    bundle = result.bundle
    assert bundle.items["item_id"].tolist() == ["0101", "0102", "0103"]  # codes keep their leading zeros
    assert set(bundle.interactions["user_id"]) == {"c1", "c2", "c3"}
    assert bundle.schema.columns == {
        "items": {"article_id": "item_id"},
        "interactions": {"article_id": "item_id", "customer_id": "user_id"},
    }
    assert "mapped_column" in result.report.codes("note") and "mapped_column" not in result.report.codes("warning")
    assert bundle.schema.timestamp_column == "t_dat" and bundle.schema.interactions["timestamp"] == "ignore"
    assert "'t_dat' is the one used" in bundle.schema.reasons["interactions"]["timestamp"]
    # an explicit mapping wins, and unmapping the user column says plainly what is missing and how to map it
    unmapped = load_bundle(folder, schema={"columns": {"interactions": {"customer_id": ""}}})
    assert not unmapped.ok
    message = unmapped.report.errors[0].message
    assert "'user_id' missing" in message and '"columns"' in message
    both = write_bundle(tmp_path / "both", items.assign(item_id=["a", "b", "c"]), interactions)
    conflict = load_bundle(both, schema={"columns": {"items": {"article_id": "item_id"}}})
    assert "mapping_conflict" in conflict.report.codes("error")
    with pytest.raises(Exception, match="can be mapped to"):
        S.Schema.from_dict({"columns": {"items": {"article_id": "user_id"}}})


def _symlink(target, link):
    import os

    try:
        os.symlink(target, link)
    except (OSError, NotImplementedError):
        pytest.skip("symbolic links are not supported here")


def test_pictures_linking_out_of_a_folder_bundle_are_ignored(tmp_path):
    outside = tmp_path / "outside"
    (outside / "pics").mkdir(parents=True)
    (outside / "secret.png").write_bytes(png_bytes((1, 2, 3)))
    (outside / "pics" / "x.png").write_bytes(png_bytes((4, 5, 6)))
    items = ITEMS.assign(image_file=["images/a.png", "images/leak.png", "linked/x.png"])
    bundle = write_bundle(tmp_path / "b", items, INTERACTIONS, images={"images/a.png": png_bytes()})
    _symlink(outside / "secret.png", bundle / "images" / "leak.png")  # a file link out of the bundle
    _symlink(outside / "pics", bundle / "linked")  # a folder link out of the bundle
    result = load_bundle(bundle)
    assert result.ok, result.report.format()  # a picture out of the bundle is a missing picture, not a broken bundle
    issue = next(i for i in result.report.warnings if i.code == "image_outside_bundle")
    assert issue.file == "items.csv" and issue.column == "image_file" and issue.rows == [3, 4]
    assert "images/leak.png" in issue.message and "linked/x.png" in issue.message
    assert "outside the bundle (symbolic links)" in issue.message and "ignored" in issue.message
    assert result.bundle.items["image_file"].tolist() == ["images/a.png", "", ""]
    assert result.bundle.counts()["items_with_image"] == 1
    assert result.bundle.image_path("images/leak.png") is None and result.bundle.image_path("linked/x.png") is None

    # one picture: the message names it
    alone = write_bundle(tmp_path / "c", ITEMS.assign(image_file=["images/x.png", "", ""]), INTERACTIONS)
    (alone / "images").mkdir()
    _symlink(outside / "secret.png", alone / "images" / "x.png")
    issue = next(i for i in load_bundle(alone).report.warnings if i.code == "image_outside_bundle")
    assert issue.message.startswith("images/x.png points outside the bundle (symbolic link); it is ignored")


def test_links_that_stay_inside_a_folder_bundle_are_followed(tmp_path):
    items = ITEMS.assign(image_file=["images/a.png", "same/a.png", "alias.png"])
    bundle = write_bundle(tmp_path / "b", items, INTERACTIONS, images={"images/a.png": png_bytes()})
    _symlink(bundle / "images", bundle / "same")
    _symlink(bundle / "images" / "a.png", bundle / "alias.png")
    result = load_bundle(bundle)
    assert result.ok and "image_outside_bundle" not in result.report.codes()
    assert result.bundle.counts()["items_with_image"] == 3


def test_a_table_linking_out_of_the_bundle_is_refused(tmp_path):
    elsewhere = write_bundle(tmp_path / "elsewhere", ITEMS, None)
    bundle = write_bundle(tmp_path / "b", None, INTERACTIONS)
    _symlink(elsewhere / "items.csv", bundle / "items.csv")
    issue = only_error(load_bundle(bundle), "file_outside_bundle")
    assert issue.file == "items.csv" and "points outside the bundle" in issue.message


def test_decompression_bombs_are_masked_before_decoding(tmp_path):
    import warnings

    from PIL import Image

    from tests.conftest import huge_png

    # 30000x30000 is over twice PIL's own limit (PIL raises DecompressionBombError on open); 12000x12000 is
    # between PIL's limit and twice it (PIL only warns, and decoding would take ~1 GB); both are over the cap
    items = ITEMS.assign(image_file=["images/ok.png", "images/bomb.png", "images/big.png"])
    bundle = write_bundle(
        tmp_path / "b",
        items,
        INTERACTIONS,
        images={
            "images/ok.png": png_bytes(),
            "images/bomb.png": huge_png(30000, 30000),
            "images/big.png": huge_png(12000, 12000),
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # a warning that escaped would fail here
        result = load_bundle(bundle)
    assert result.ok, result.report.format()
    issue = next(i for i in result.report.warnings if i.code == "image_too_large")
    assert issue.file == "items.csv" and issue.column == "image_file" and issue.rows == [3, 4]
    assert "images/bomb.png (900 megapixels)" in issue.message
    assert "images/big.png (12000x12000 pixels)" in issue.message
    assert "over the limit of 40 megapixels" in issue.message and "RECSYS_MAX_IMAGE_PIXELS" in issue.message
    assert result.bundle.items["image_file"].tolist() == ["images/ok.png", "", ""]


def test_the_pixel_cap_is_one_setting(tmp_path, monkeypatch):
    from recsys.data import pictures

    items = ITEMS.assign(image_file=["images/small.png", "images/larger.png", ""])
    bundle = write_bundle(
        tmp_path / "b",
        items,
        INTERACTIONS,
        images={"images/small.png": png_bytes(size=(10, 10)), "images/larger.png": png_bytes(size=(16, 16))},
    )
    assert load_bundle(bundle).report.codes() == []  # 40 megapixels by default
    monkeypatch.setattr(pictures, "MAX_IMAGE_PIXELS", 200)
    issue = next(i for i in load_bundle(bundle).report.warnings if i.code == "image_too_large")
    assert issue.message.startswith(
        "images/larger.png is 16x16 pixels (256 pixels), over the limit of 200 pixels; it is ignored"
    ) and issue.rows == [3]
    assert pictures.DEFAULT_MAX_IMAGE_PIXELS == 40_000_000
    monkeypatch.setenv("RECSYS_MAX_IMAGE_PIXELS", "25_000_000")
    assert pictures._setting() == 25_000_000
    monkeypatch.setenv("RECSYS_MAX_IMAGE_PIXELS", "lots")
    assert pictures._setting() == 40_000_000


# ----------------------------------------------------------------------------- rows with more or fewer fields


@pytest.mark.parametrize("quoted", [False, True], ids=["plain", "with-quoted-fields"])
def test_a_row_with_an_unquoted_comma_is_named_not_read_shifted(tmp_path, quoted):
    # line 3 has one field more than the header: read shifted, its ids would become titles and the
    # interactions would "point at items that are not in the items table" although 1, 2, 3 are there
    bundle = write_bundle(tmp_path / "b", None, pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": [1, 2, 3]}))
    second = '"Kettle, red"' if quoted else "Kettle red"
    (bundle / "items.csv").write_text(f"item_id,title,price\n1,{second},3\n2,Boots, blue,4\n3,Hose,5\n")
    result = load_bundle(bundle)
    issue = only_error(result, "ragged_rows")
    assert issue.file == "items.csv" and issue.rows == [3]
    assert issue.message == "line 3 has 4 fields, the header has 3 (an unquoted comma in a text field? quote it)"
    assert issue.format() == (
        "[error] items.csv: line 3 has 4 fields, the header has 3 (an unquoted comma in a text field? quote it) (row 3)"
    )
    assert "unknown_items" not in result.report.codes()


@pytest.mark.parametrize("quoted", [False, True], ids=["plain", "with-quoted-fields"])
def test_the_first_data_row_too_long_is_caught_and_short_rows_too(tmp_path, quoted):
    # one more field on every data row is what pandas silently reads as an index column
    bundle = write_bundle(tmp_path / "b", None, pd.DataFrame({"user_id": ["u1"], "item_id": ["a"]}))
    title = '"Alpha"' if quoted else "Alpha"
    (bundle / "items.csv").write_text(f"item_id,title\r\na,{title},x\r\nb,Beta,y\r\n\r\nc\r\nd,Delta")
    issue = only_error(load_bundle(bundle), "ragged_rows")
    assert issue.message == (
        "line 2 has 3 fields, the header has 2 (an unquoted comma in a text field? quote it); "
        "2 more lines have a different number of fields"
    )
    assert issue.rows == [2, 3, 5]  # the blank line 4 is skipped, as pandas skips it
    (bundle / "items.csv").write_text(f"item_id,title,price\na,{title},1\nb Beta 2\n")
    issue = only_error(load_bundle(bundle), "ragged_rows")
    assert issue.message.startswith("line 3 has 1 field, the header has 3 (a value left out without its comma")


def test_quoted_commas_line_breaks_and_blank_lines_are_fine(tmp_path):
    bundle = write_bundle(tmp_path / "b", None, pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["a", "c"]}))
    (bundle / "items.csv").write_text(
        '\ufeffitem_id,title,price\na,"Kettle, red",3\nb,"Two\nlines, and ""quotes""",4\n   \nc,Hose,\n'
    )
    result = load_bundle(bundle)
    assert result.ok, result.report.format()
    assert result.bundle.items["title"].tolist() == ["Kettle, red", 'Two\nlines, and "quotes"', "Hose"]
    assert result.bundle.items["item_id"].tolist() == ["a", "b", "c"]
    # a line break inside quotes is part of its record: a later bad row is named by its line in an editor and
    # by its row in a spreadsheet, which counts records (the page's "row" is the spreadsheet's)
    with open(bundle / "items.csv", "a") as handle:
        handle.write("d,Rake, steel,9\n")
    issue = only_error(load_bundle(bundle), "ragged_rows")
    assert issue.message.startswith("line 7 (row 6 in a spreadsheet) has 4 fields, the header has 3")
    assert issue.rows == [6]


def test_a_file_cut_off_inside_a_quoted_text_says_so(tmp_path):
    """A products export cut off in the middle of a quoted description was refused as "line 848 has 3 fields
    (a value left out without its comma…)": the message now says the quote is never closed."""
    bundle = write_bundle(tmp_path / "b", None, pd.DataFrame({"user_id": ["u1"], "item_id": ["a"]}))
    (bundle / "items.csv").write_text('item_id,title,description\na,Kettle,"Steel,\nred"\nb,Hose,"Green, 20 m\nlong ho')
    issue = only_error(load_bundle(bundle), "ragged_rows")
    assert issue.message.startswith('row 3 opens a quote (") that is never closed') and "cut off" in issue.message
    # cut off where the last row has fewer fields than the header: the same cause, not "a value left out"
    (bundle / "items.csv").write_text('item_id,title,description\na,Kettle,"Steel,\nred"\nb,"Hose, green\n20 m')
    issue = only_error(load_bundle(bundle), "ragged_rows")
    assert issue.message.startswith("line 4 (row 3 in a spreadsheet) has 2 fields, the header has 3")
    assert 'a quote (") opened in this row is never closed' in issue.message and "cut off" in issue.message


def test_an_uploaded_archive_is_named_by_its_own_file_name():
    # a browser upload arrives as a file-like object with the chosen file's name: messages say that name
    # (only its last part: it is text for the message, never a path that is opened)
    class Upload(io.BytesIO):
        name = "../shop/evil.zip"

    upload = Upload(_zip({"items.csv": _csv(ITEMS), "interactions.csv": _csv(INTERACTIONS), "../evil.csv": b"x"}))
    issue = only_error(load_bundle(upload), "archive_path_escape")
    assert issue.file == "evil.zip"
    bare = only_error(load_bundle(io.BytesIO(upload.getvalue())), "archive_path_escape")
    assert bare.file == "upload.zip"


def test_ids_that_lost_their_leading_zeros_are_diagnosed(tmp_path):
    # a spreadsheet reads "000015" as the number 15: the error says so, and only then
    items = pd.DataFrame({"item_id": ["000015", "000033", "000087", "A12"], "title": ["a", "b", "c", "d"]})
    stripped = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2"], "item_id": ["15", "33", "87", "A12"]})
    issue = only_error(load_bundle(write_bundle(tmp_path / "a", items, stripped)), "unknown_items")
    assert "leading zeros" in issue.message and "000015" in issue.message and "as text" in issue.message
    other = stripped.assign(item_id=["x1", "x2", "x3", "A12"])
    issue = only_error(load_bundle(write_bundle(tmp_path / "b", items, other)), "unknown_items")
    assert "leading zeros" not in issue.message and "same item ids" in issue.message


def test_replacement_losses_name_each_count_that_falls():
    from recsys.data.report import replacement_losses

    current = {"users": 1000, "items": 800, "interactions": 30000, "items_with_image": 720, "images_copied": 720}
    assert replacement_losses(current, dict(current)) == []
    assert replacement_losses(current, {**current, "items": 900, "users": 1200}) == []  # more is no loss
    losses = replacement_losses(current, {"users": 1000, "items": 799, "interactions": 29000, "items_with_image": 0})
    assert losses == [
        "800 items now, 799 in this bundle",
        "30,000 interactions now, 29,000 in this bundle",
        "pictures: 720 items with a picture now, 0 in this bundle",
    ]
    assert replacement_losses({"items_with_image": 1}, {"items_with_image": 0}) == [
        "pictures: 1 item with a picture now, 0 in this bundle"
    ]
    assert replacement_losses({}, {"items": 3}) == [] and replacement_losses({"items": "x"}, {"items": 1}) == []


def test_replacement_losses_name_the_columns_a_bundle_drops():
    from recsys.data.report import replacement_losses, used_columns

    schema = {
        "items": {"item_id": "id", "title": "text", "brand": "categorical", "notes": "ignore"},
        "users": {"user_id": "id", "age_band": "categorical", "region": "categorical"},
        "interactions": {"user_id": "id", "item_id": "id", "rating": "rating"},
    }
    columns = used_columns(schema)
    assert columns == {"items": ["title", "brand"], "interactions": ["rating"], "users": ["age_band", "region"]}
    counts = {"users": 10, "items": 5}
    assert replacement_losses(counts, counts, columns, columns) == []
    without_users = {**columns, "users": []}
    assert replacement_losses(counts, counts, columns, without_users) == [
        "the users table (age_band, region) not in this bundle"
    ]
    fewer = {**columns, "items": ["title"], "users": ["age_band", "region", "city"]}  # a new column is no loss
    assert replacement_losses(counts, counts, columns, fewer) == [
        "the items table's columns (brand) not in this bundle"
    ]
    assert replacement_losses(counts, counts, columns, None) == []  # nothing known of the bundle's columns


def test_ids_written_another_way_are_diagnosed_with_an_example(tmp_path):
    # codes retyped or re-exported: another case, a space, the number's zero padding dropped
    items = pd.DataFrame({"item_id": ["SKU-00762", "SKU-00015", "SKU-01200", "A12"], "title": ["a", "b", "c", "d"]})
    retyped = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2"], "item_id": ["sku-762", "SKU-15", "SKU- 1200", "A12"]})
    issue = only_error(load_bundle(write_bundle(tmp_path / "a", items, retyped)), "unknown_items")
    assert "written another way" in issue.message and "“sku-762” for “SKU-00762”" in issue.message
    other = retyped.assign(item_id=["x1", "x2", "x3", "A12"])
    issue = only_error(load_bundle(write_bundle(tmp_path / "b", items, other)), "unknown_items")
    assert "written another way" not in issue.message and "same item ids" in issue.message


def test_a_shopify_product_export_s_category_paths_and_picture_alt_text(tmp_path):
    """Shopify's "Product Category" paths run to ten words, so they were free text, and its "Image Alt Text" was
    taken for a picture column because of its name."""
    n = 40
    paths = [
        "Apparel & Accessories > Clothing > Shirts & Tops > T-Shirts",
        "Apparel & Accessories > Clothing Accessories > Hats > Beanies",
        "Home & Garden > Kitchen & Dining > Tableware > Drinkware > Mugs",
    ]
    items = pd.DataFrame(
        {
            "item_id": [f"i{k}" for k in range(n)],
            "Title": [f"Product number {k}" for k in range(n)],
            "Product Category": [paths[k % 3] for k in range(n)],
            "Image Alt Text": [f"A photo of product number {k} on a table" for k in range(n)],
        }
    )
    interactions = pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["i1", "i2"]})
    result = load_bundle(write_bundle(tmp_path / "b", items, interactions))
    assert result.ok, result.report.format()
    roles = result.bundle.schema.items
    assert roles["Product Category"] == "categorical" and roles["Image Alt Text"] == "text"


def test_an_orders_export_meets_its_customers_export_by_email(tmp_path):
    """Shopify's orders export names the customer by "Email", its customers export by "Customer ID" (and has
    the e-mail too): the import found no user column ("required column 'user_id' missing"). The orders' e-mail
    is now the user column, each replaced by the customer's id from the customers table; names, e-mails and
    streets are no features."""
    items = pd.DataFrame({"Handle": ["tee", "mug", "cap"], "Title": ["Tee", "Mug", "Cap"]})
    emails = ["ann@web.de", "bob@mail.com", "cy@x.org", "guest@y.com"]
    orders = pd.DataFrame(
        {
            "Name": ["#1001", "#1001", "#1002", "#1003", "#1004", "#1004"],
            "Email": [emails[0], emails[0], emails[1], emails[2], emails[3], emails[3]],
            "Lineitem sku": ["tee", "mug", "cap", "tee", "mug", "cap"],
            "Billing Name": ["Ann A", "Ann A", "Bob B", "Cy C", "Guest G", "Guest G"],
            "Billing Zip": ["10115", "10115", "20095", "80331", "50667", "50667"],
        }
    )
    customers = pd.DataFrame(
        {
            "Customer ID": ["5800001", "5800002", "5800003"],
            "First Name": ["Ann", "Bob", "Cy"],
            "Email": emails[:3],
            "Accepts Email Marketing": ["yes", "no", "yes"],
            "City": ["Berlin", "Berlin", "Hamburg"],
            "Default Address Zip": ["10115", "10117", "20095"],
        }
    )
    result = load_bundle(write_bundle(tmp_path / "shop", items, orders, customers))
    assert result.ok, result.report.format()
    bundle = result.bundle
    assert bundle.interactions["user_id"].tolist() == ["5800001", "5800001", "5800002", "5800003"] + [emails[3]] * 2
    assert set(bundle.users["user_id"]) == {"5800001", "5800002", "5800003"}
    [note] = [i for i in result.report.issues if i.code == "users_joined"]
    assert "by 'Email' of users.csv" in note.message and "2 rows of users not in that file" in note.message
    roles = bundle.schema
    assert roles.users["First Name"] == roles.users["Email"] == roles.interactions["Billing Name"] == "ignore"
    assert roles.interactions["Billing Zip"] == roles.users["Default Address Zip"] == "ignore"  # a postcode, no number
    assert roles.users["Accepts Email Marketing"] == "categorical" and roles.users["City"] == "categorical"


def test_a_few_order_lines_without_an_item_are_dropped_many_refuse_the_file(tmp_path):
    """An orders export's lines for shipping, a tip or a custom item carry no SKU: 47 such lines of 12,000
    refused the whole import ("47 rows have no item_id"). Up to 1 % are now dropped with a warning; more still
    refuse it (the id column is likely the wrong one)."""
    n = 300
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(20)], "title": [f"Item {k}" for k in range(20)]})
    item_ids = [f"i{k % 20}" for k in range(n)]
    item_ids[7] = ""  # a tip
    users = [f"u{k % 30}" for k in range(n)]
    users[11] = ""  # a guest order
    interactions = pd.DataFrame({"user_id": users, "item_id": item_ids})
    result = load_bundle(write_bundle(tmp_path / "b", items, interactions))
    assert result.ok, result.report.format()
    assert len(result.bundle.interactions) == n - 2
    assert (result.bundle.interactions[["user_id", "item_id"]] != "").all().all()
    warnings = [i for i in result.report.issues if i.code == "missing_id"]
    assert [(w.column, w.rows) for w in warnings] == [("item_id", [9]), ("user_id", [13])]
    assert "these rows are dropped" in warnings[0].message
    # with an unknown item beside them, both kinds go
    interactions.loc[20, "item_id"] = "gone"
    result = load_bundle(write_bundle(tmp_path / "c", items, interactions))
    assert result.ok and len(result.bundle.interactions) == n - 3
    # many: the file is refused
    interactions.loc[: n // 10, "item_id"] = ""
    refused = load_bundle(write_bundle(tmp_path / "d", items, interactions))
    assert not refused.ok and "missing_id" in refused.report.codes("error")


def test_blank_values_are_imported_and_said(tmp_path):
    """Blank ratings and item columns with holes do not block an import, but the report says so (they used to
    pass in silence, and the rating chart's mean was over fewer rows than the user thought)."""
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d"],
            "title": ["Alpha one", "", "Gamma three", "Delta four"],
            "price": ["9.99", "", "", "4.50"],
        }
    )
    interactions = pd.DataFrame(
        {"user_id": ["u1", "u1", "u2", "u3"], "item_id": ["a", "b", "c", "d"], "rating": ["5", "", "3", ""]}
    )
    result = load_bundle(write_bundle(tmp_path / "holes", items, interactions))
    assert result.ok and not result.report.warnings, result.report.format()
    notes = {note.code: note for note in result.report.notes}
    assert "title (1 of 4 items), price (2 of 4 items)" in notes["partly_empty_columns"].message
    assert notes["blank_ratings"].message.startswith("2 interactions (50%) have no rating: kept")
    assert len(result.bundle.interactions) == 4
    # a complete bundle gets neither note
    full = load_bundle(write_bundle(tmp_path / "full", ITEMS, INTERACTIONS))
    assert not full.report.notes, full.report.format()


def test_numbers_written_with_a_decimal_comma_are_read_as_such(tmp_path):
    """A European shop's export: "12,50 €" was read as 1250 (the comma taken for a thousands separator)."""
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d"],
            "title": ["Knife", "Pan", "Pot", "Lid"],
            "price": ["12,50 €", "1.299,00 €", "3,99 €", "45 €"],
        }
    )
    interactions = pd.DataFrame(
        {"user_id": ["u1", "u1", "u2", "u2"], "item_id": ["a", "b", "c", "d"], "rating": ["4,5", "3", "5", "2,5"]}
    )
    result = load_bundle(write_bundle(tmp_path / "b", items, interactions))
    assert result.ok, result.report.format()
    assert result.bundle.items["price"].tolist() == [12.5, 1299.0, 3.99, 45.0]
    assert result.bundle.schema.units == {"items": {"price": "€"}}
    assert result.bundle.interactions["rating"].tolist() == [4.5, 3.0, 5.0, 2.5]
    # a decimal point, and commas as thousands separators, as before
    assert S.parse_numeric(pd.Series(["$1,299.00", "$40", "1,299"])).tolist() == [1299.0, 40.0, 1299.0]
    # whole euros with the sign after them: "1.299 €" is 1299 (it was 1.299); a bare "1.299" stays ambiguous
    # and is read with a decimal point, as is a column where some point is followed by other than 3 digits
    whole = pd.Series(["1.299 €", "49 €", "12.500 €", None, ""])
    assert S.parse_numeric(whole).tolist()[:3] == [1299.0, 49.0, 12500.0]
    assert S.parse_numeric(pd.Series(["1.299", "49"])).tolist() == [1.299, 49.0]
    assert S.parse_numeric(pd.Series(["1.299 €", "12.5 €"])).tolist() == [1.299, 12.5]


def test_a_book_crossing_export_reads_its_rating_and_its_zeros_as_unrated(tmp_path):
    """ "Book-Rating" was a plain numeric column (only "rating" itself was a rating's name), so the app said the
    data had no ratings; read as ratings, its 0s ("read, not rated") averaged in as the lowest score."""
    items = pd.DataFrame({"ISBN": ["0345391802", "080442957X", "0002005018"], "title": ["A", "B", "C"]})
    interactions = pd.DataFrame(
        {
            "User-ID": ["276725", "276725", "276726", "276727", "276727", "276728"],
            "ISBN": ["0345391802", "080442957X", "0345391802", "0002005018", "080442957X", "0002005018"],
            "Book-Rating": [0, 8, 0, 0, 5, 10],
        }
    )
    result = load_bundle(write_bundle(tmp_path / "b", items, interactions))
    assert result.ok, result.report.format()
    assert result.bundle.schema.rating_column == "Book-Rating"
    ratings = result.bundle.interactions["Book-Rating"]
    assert ratings.isna().sum() == 3 and sorted(ratings.dropna().tolist()) == [5.0, 8.0, 10.0]
    assert len(result.bundle.interactions) == 6  # kept as interactions
    assert "zero_ratings" in result.report.codes("warning")
    # a 0-5 scale whose 0 is a rare real score keeps it
    assert not B._zero_means_unrated(pd.Series([0, 3, 4, 5, 5, 4, 2, 1]))
    assert not B._zero_means_unrated(pd.Series([0.0, 0.0, 0.5, 1.0]))  # scores between 0 and 1


def test_labels_joined_by_semicolons_or_commas_in_a_tags_column_are_read_as_labels(tmp_path):
    """Co-authors written "Agatha Straub; Jean Christie" were one author of their own, and a shop's "cotton,
    summer, sale" tags were free text: neither was a label a card, a filter or the attribute features could use.
    A ";" closing an HTML escape ("Simon &amp; Schuster") and a comma outside a tags column join nothing."""
    n = 60
    items = pd.DataFrame(
        {
            "item_id": [f"i{k}" for k in range(n)],
            "title": [f"Book {k}; a novel" for k in range(n)],  # a title stays text whatever it holds
            "Book-Author": [f"Author {k % 20}; Author {k % 7}" if k % 4 == 0 else f"Author {k % 20}" for k in range(n)],
            "Publisher": ["Simon &amp; Schuster" if k % 3 == 0 else f"House {k % 5}" for k in range(n)],
            "Tags": [("cotton, summer", "wool", "sale, cotton")[k % 3] for k in range(n)],
            "Writer": [f"Smith {k % 9}, John" for k in range(n)],  # a comma inside one name
        }
    )
    interactions = pd.DataFrame({"user_id": [f"u{k % 10}" for k in range(n)], "item_id": items["item_id"]})
    result = load_bundle(write_bundle(tmp_path / "b", items, interactions))
    assert result.ok, result.report.format()
    bundle = result.bundle
    roles = bundle.schema.items
    assert roles["title"] == "text"
    assert roles["Book-Author"] == roles["Tags"] == "multi_label"
    assert roles["Publisher"] == roles["Writer"] == "categorical"
    # stored with the dataset's own separator, which every reader splits on
    assert bundle.schema.multi_label_separator == "|"
    assert (
        bundle.items["Book-Author"].iloc[0] == "Author 0|Author 0" and bundle.items["Book-Author"].iloc[1] == "Author 1"
    )
    assert bundle.items["Tags"].iloc[:3].tolist() == ["cotton|summer", "wool", "sale|cotton"]
    assert bundle.items["Publisher"].iloc[0] == "Simon &amp; Schuster"
    assert result.report.codes("note").count("labels_joined") == 2
    assert "short labels joined by ';'" in bundle.schema.reasons["items"]["Book-Author"]
    # a schema that says the column is one label keeps each value whole
    kept = load_bundle(write_bundle(tmp_path / "c", items, interactions), schema={"items": {"Tags": "categorical"}})
    assert kept.ok and kept.bundle.items["Tags"].iloc[0] == "cotton, summer"
    assert S.split_labels(pd.Series(["Simon &amp; Schuster;Knopf", ""]), ";").tolist() == [
        "Simon &amp; Schuster",
        "Knopf",
    ]


def test_a_year_of_0_is_read_as_a_year_not_known(tmp_path):
    """Book-Crossing writes "Year-Of-Publication" 0 when it is not known: a year 0 made those books two thousand
    years older than the rest, and counted as a value they have."""
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d"],
            "Year-Of-Publication": ["1994", "0", "2001", "0"],
            "weight_kg": ["0", "1.5", "2", "0"],  # a 0 that is a real amount stays
        }
    )
    interactions = pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "c"]})
    result = load_bundle(write_bundle(tmp_path / "b", items, interactions))
    assert result.ok, result.report.format()
    years = result.bundle.items["Year-Of-Publication"]
    assert years.isna().tolist() == [False, True, False, True] and years.dropna().tolist() == [1994.0, 2001.0]
    assert result.bundle.items["weight_kg"].tolist() == [0.0, 1.5, 2.0, 0.0]
    [warning] = [i for i in result.report.issues if i.code == "zero_years"]
    assert warning.column == "Year-Of-Publication" and "1994-2001" in warning.message
    assert not B._zero_means_unknown_year("years_of_warranty", pd.Series([0.0, 1.0, 2.0]))
    assert not B._zero_means_unknown_year("piano_keys", pd.Series([0.0, 1988.0]))


def test_semicolon_and_tab_separated_files_are_read(tmp_path):
    """Excel saves CSV with semicolons where the decimal separator is a comma: such a file was refused as
    "line 2 has 2 fields, the header has 1 (an unquoted comma in a text field?)"."""
    folder = tmp_path / "eu"
    folder.mkdir()
    (folder / "items.csv").write_bytes(
        "\ufeffitem_id;title;price\na;Messer, scharf;12,50 €\nb;Pfanne;1.299,00 €\nc;Topf;3,99 €\n".encode()
    )
    (folder / "interactions.csv").write_text("user_id\titem_id\trating\nu1\ta\t4,5\nu1\tb\t3\nu2\tc\t5\n")
    result = load_bundle(folder)
    assert result.ok, result.report.format()
    assert result.bundle.items["title"].tolist() == ["Messer, scharf", "Pfanne", "Topf"]
    assert result.bundle.items["price"].tolist() == [12.5, 1299.0, 3.99]
    assert result.bundle.interactions["rating"].tolist() == [4.5, 3.0, 5.0]
    assert result.report.codes("note").count("csv_delimiter") == 2  # the report says how each file was read

    # a ragged row is named with the file's own separator
    (folder / "items.csv").write_text("item_id;title\na;Messer;extra\nb;Pfanne\n")
    result = load_bundle(folder)
    assert only_error(result, "ragged_rows")
    assert "unquoted semicolon" in result.report.errors[0].message

    # a comma-separated file whose quoted header names hold semicolons stays comma-separated
    (folder / "items.csv").write_text('item_id,"title; short",price\na,Knife,12.50\nb,Pan,4\nc,Pot,3\n')
    result = load_bundle(folder)
    assert result.ok, result.report.format()
    assert list(result.bundle.items.columns)[:3] == ["item_id", "title; short", "price"]


def test_day_first_dates_are_read_day_first_for_the_whole_column():
    """Parsed value by value, "01.02.2024" became 2 January beside "31.12.2023" read as 31 December: the
    order of a user's interactions (the temporal protocol's last item) came out wrong, silently."""

    def dates(values):
        return [str(pd.Timestamp(s, unit="s").date()) for s in S.parse_timestamp(pd.Series(values))]

    assert dates(["31.12.2023", "01.02.2024", "15.03.2024"]) == ["2023-12-31", "2024-02-01", "2024-03-15"]
    assert dates(["01.02.2024", "03.04.2024"]) == ["2024-02-01", "2024-04-03"]  # dots: day first
    assert dates(["31/12/2023", "01/02/2024"]) == ["2023-12-31", "2024-02-01"]  # a day above 12 decides
    assert dates(["12/31/2023", "02/01/2024"]) == ["2023-12-31", "2024-02-01"]  # a month-first column
    assert dates(["02/01/2024", "03/04/2024"]) == ["2024-02-01", "2024-03-04"]  # slashes alone: month first
    assert dates(["2023-12-31 10:00", "2024-02-01T10:00:00Z"]) == ["2023-12-31", "2024-02-01"]


def test_a_shop_export_in_another_language_is_understood(tmp_path):
    """A German shop's export: 'artikelnummer', 'kunde', 'datum' (31.12.2023), 'bewertung' ('4,5'): the user
    column, the dates and the rating were not found by their (English) names."""
    items = pd.DataFrame({"artikelnummer": ["A1", "A2", "A3"], "bezeichnung": ["Messer", "Pfanne", "Topf"]})
    interactions = pd.DataFrame(
        {
            "kaeufer_nr": ["K1", "K1", "K2", "K2", "K3", "K3"],  # a name in no list: its values decide
            "artikelnummer": ["A1", "A2", "A2", "A3", "A1", "A3"],
            "wann": ["31.12.2023", "01.02.2024", "15.03.2024", "02.01.2024", "05.05.2024", "06.06.2024"],
            "bewertung": ["4,5", "3", "5", "2", "4", "1"],
        }
    )
    result = load_bundle(write_bundle(tmp_path / "b", items, interactions))
    assert result.ok, result.report.format()
    roles = result.bundle.schema.interactions
    assert roles["wann"] == "timestamp" and roles["bewertung"] == "rating"
    assert result.bundle.interactions["user_id"].tolist()[:3] == ["K1", "K1", "K2"]
    assert "repeat like ids" in result.bundle.schema.reasons["interactions"]["user_id"]
    stamps = result.bundle.interactions["wann"]
    assert stamps.iloc[1] > stamps.iloc[0]  # 1 February 2024 after 31 December 2023, read day first


def test_pictures_named_by_web_address_are_said_to_be_offline(tmp_path):
    """A shop export names pictures by URL: the report said they were "not in the bundle" (send the user
    looking for files they never had); it says nothing is downloaded and what to do."""
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "title": ["Knife", "Pan", "Pot"],
            "image_url": ["https://cdn.example.com/a.jpg", "www.example.com/b.jpg", "images/c.png"],
        }
    )
    interactions = pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "c"]})
    result = load_bundle(write_bundle(tmp_path / "b", items, interactions, images={"images/c.png": png_bytes()}))
    assert result.ok, result.report.format()
    web = [issue for issue in result.report.warnings if issue.code == "web_images"]
    assert len(web) == 1 and "2 pictures are web addresses" in web[0].message and "downloads nothing" in web[0].message
    assert "missing_images" not in result.report.codes("warning")
    assert result.bundle.items["image_url"].tolist() == ["", "", "images/c.png"]


def _shopify_products() -> pd.DataFrame:
    """Shopify's products export as it is written: one row per variant, the product's own fields on its first
    row only, and a row per further picture that holds nothing else."""
    blank = ""
    rows = [
        # Handle, Title, Body, Vendor, Option1 Value, Variant SKU, Variant Price, Image Src, Image Position
        ("oxford-shirt", "Oxford Shirt", "<p>Crisp cotton</p>", "Drift", "S", "OX-S", "49.00", "images/ox.png", "1"),
        ("oxford-shirt", blank, blank, blank, "M", "OX-M", "49.00", "images/ox-back.png", "2"),
        ("oxford-shirt", blank, blank, blank, "L", "OX-L", "52.00", blank, blank),
        ("oxford-shirt", blank, blank, blank, blank, blank, blank, "images/ox-side.png", "3"),
        ("stoneware-mug", "Stoneware Mug", "<p>Holds 350 ml</p>", "Kiln", "Default Title", "MUG", "18.00", "", ""),
        ("wool-beanie", "Wool Beanie", "<p>Merino</p>", "Drift", "Grey", "BE-G", "22.00", "images/be.png", "1"),
        ("wool-beanie", blank, blank, blank, "Navy", "BE-N", "22.00", blank, blank),
    ]
    columns = ["Handle", "Title", "Body (HTML)", "Vendor", "Option1 Value", "Variant SKU", "Variant Price"]
    return pd.DataFrame(rows, columns=[*columns, "Image Src", "Image Position"])


def test_a_products_export_with_a_row_per_variant_is_read_as_one_item_per_product(tmp_path):
    """Shopify writes a product on several rows ("Handle" repeated, the title only on the first, extra pictures
    on rows of their own), and its orders name the variant's SKU: the import found no item id at all
    ("required column 'item_id' missing"). Now each product is an item, its variants' sizes are its labels,
    and an order of "OX-L" is an order of the Oxford shirt."""
    items = _shopify_products()
    orders = pd.DataFrame(
        {
            "Email": ["ann@web.de", "ann@web.de", "bob@mail.com", "bob@mail.com", "cy@x.org", "cy@x.org"],
            "Lineitem sku": ["OX-L", "MUG", "OX-S", "BE-N", "BE-G", "MUG"],
        }
    )
    folder = write_bundle(tmp_path / "shop", items, orders)
    (folder / "images").mkdir()
    for name in ("ox.png", "ox-back.png", "ox-side.png", "be.png"):
        (folder / "images" / name).write_bytes(png_bytes())
    result = load_bundle(folder)
    assert result.ok, result.report.format()
    bundle = result.bundle
    assert bundle.items["item_id"].tolist() == ["oxford-shirt", "stoneware-mug", "wool-beanie"]
    assert bundle.items["Title"].tolist() == ["Oxford Shirt", "Stoneware Mug", "Wool Beanie"]
    assert bundle.items["Option1 Value"].tolist() == ["S|M|L", "Default Title", "Grey|Navy"]
    assert bundle.schema.items["Option1 Value"] == S.MULTI_LABEL
    assert bundle.items["Variant Price"].tolist()[0] == pytest.approx(49.0)  # the first variant's, as Shopify shows
    assert bundle.items["Image Src"].tolist()[0] == "images/ox.png"  # the product's first picture
    assert "Variant SKU" not in bundle.items.columns and "Image Position" not in bundle.items.columns
    assert bundle.interactions["item_id"].tolist() == [
        "oxford-shirt",
        "stoneware-mug",
        "oxford-shirt",
        "wool-beanie",
        "wool-beanie",
        "stoneware-mug",
    ]
    notes = {i.code: i.message for i in result.report.issues}
    assert "7 rows are read as 3 products, leaving out 1 row that only adds a picture" in notes["variant_rows"]
    assert "('Option1 Value') are joined as labels" in notes["variant_rows"]
    assert "'Lineitem sku' names variants (100% of its values are 'Variant SKU'" in notes["variants_to_products"]


def test_repeated_values_alone_do_not_make_rows_variants(tmp_path):
    """A table whose first column repeats (a category) but whose titles are on every row is an ordinary table,
    and a schema that names the item id keeps the rows as they are."""
    items = pd.DataFrame(
        {"shelf": ["a", "a", "b", "b"], "sku": ["1", "2", "3", "4"], "title": ["One", "Two", "Three", "Four"]}
    )
    interactions = pd.DataFrame({"user": ["u1", "u1", "u2", "u2"], "sku": ["1", "2", "3", "4"]})
    result = load_bundle(write_bundle(tmp_path / "plain", items, interactions))
    assert result.ok, result.report.format()
    assert len(result.bundle.items) == 4 and "variant_rows" not in {i.code for i in result.report.issues}

    variants = _shopify_products()
    orders = pd.DataFrame({"customer": ["u1", "u2", "u2"], "Lineitem sku": ["OX-L", "MUG", "BE-N"]})
    folder = write_bundle(tmp_path / "declared", variants[variants["Variant SKU"] != ""], orders)
    mapped = {"columns": {"items": {"Variant SKU": "item_id"}, "interactions": {"Lineitem sku": "item_id"}}}
    result = load_bundle(folder, schema=mapped, check_images=False)
    assert result.ok, result.report.format()
    assert len(result.bundle.items) == 6 and "variant_rows" not in {i.code for i in result.report.issues}


def test_orders_that_name_products_by_title_meet_a_catalogue_without_skus(tmp_path):
    """A shop whose products have no SKU exports orders naming each line "<title> - <variant>" ("Oxford Shirt -
    Blue / M") and nothing else the products file has: the import stopped at "required column 'item_id'
    missing". Each line is now read as the product its title names; where two products share a title, the
    column that agrees on the other lines (the line's price) tells them apart."""
    n = 120
    items = pd.DataFrame(
        {
            "Handle": [f"p{k}" for k in range(n)] + ["mug-a", "mug-b"],
            "Title": [f"Product {k}" for k in range(n)] + ["Stoneware Mug", "Stoneware Mug"],
            "Variant Price": [f"{10 + k}.00" for k in range(n)] + ["18.00", "24.00"],
            "Variant Taxable": ["TRUE"] * (n + 2),
        }
    )
    names = [[f"Product {k}", f"Product {k} - Blue / M", f"Product {k} / M"][k % 3] for k in range(n)]
    orders = pd.DataFrame(
        {
            "Email": [f"c{k % 7}@shop.de" for k in range(n)] + ["c1@shop.de", "c2@shop.de", "c3@shop.de"],
            "Lineitem name": names + ["Stoneware Mug", "Stoneware Mug - Default Title", "Gift wrap"],
            "Lineitem price": [f"{10 + k}.00" for k in range(n)] + ["24.00", "18.00", "2.00"],
            "Lineitem sku": [""] * (n + 3),
        }
    )
    result = load_bundle(write_bundle(tmp_path / "shop", items, orders))
    assert result.ok, result.report.format()
    bought = result.bundle.interactions["item_id"].tolist()
    assert bought[:4] == ["p0", "p1", "p2", "p3"] and bought[-2:] == ["mug-b", "mug-a"]
    notes = {i.code: i.message for i in result.report.issues}
    assert "each is read as that product's 'Handle'" in notes["items_by_name"]
    assert (
        "2 lines name a title several products share: each is read as the product whose 'Variant Price' matches "
        "the line's 'Lineitem price'" in notes["items_by_name"]
    )
    assert "Variant Taxable" not in notes["items_by_name"]  # a value every product has tells none apart
    assert "Gift wrap" in result.report.format()  # the line naming no product is reported, not guessed


def test_pictures_named_by_web_address_are_read_from_the_bundle_when_their_files_are_there(tmp_path):
    """A shop export names every picture by its web address, and the studio downloads nothing: every item had
    no picture. Pictures downloaded into the bundle under their own names are now read from there; a web
    address with no such file, or one whose name two files share, still counts as no picture."""
    cdn = "https://cdn.shopify.com/s/files/1/0612/products"
    items = pd.DataFrame(
        {
            "item_id": ["tee", "mug", "cap", "bag"],
            "title": ["Tee", "Mug", "Cap", "Bag"],
            "image": [f"{cdn}/tee_1234.png?v=1661627919", f"{cdn}/mug%20blue.png", f"{cdn}/cap.png", f"{cdn}/bag.png"],
        }
    )
    interactions = pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["tee", "mug"]})
    folder = write_bundle(tmp_path / "shop", items, interactions)
    for name in ("images/tee_1234.png", "images/mug blue.png", "images/bag.png", "more/bag.png"):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(png_bytes())
    result = load_bundle(folder)
    assert result.ok, result.report.format()
    assert result.bundle.items["image"].tolist() == ["images/tee_1234.png", "images/mug blue.png", "", ""]
    messages = {i.code: i.message for i in result.report.issues}
    assert messages["web_images_in_bundle"].startswith("2 pictures named by web address are in the bundle")
    assert "2 pictures are web addresses" in messages["web_images"]


def test_a_price_one_per_product_is_never_taken_for_the_item_id(tmp_path):
    """In a shop whose products each have their own price, the price column is unique per product and the order
    lines repeat it: it was taken for the item id (every line read as "the item 68.10"). Amounts are never ids;
    the lines are read by the products' titles instead."""
    n = 150
    items = pd.DataFrame(
        {
            "Handle": [f"p-{k}" for k in range(n)],
            "Title": [f"Product {k}" for k in range(n)],
            "Variant Price": [f"{10 + k}.{k % 90 + 10}" for k in range(n)],
        }
    )
    bought = [k % n for k in range(3 * n)]
    orders = pd.DataFrame(
        {
            "Email": [f"c{k % 40}@shop.de" for k in range(3 * n)],
            "Lineitem name": [f"Product {k} - M" for k in bought],
            "Lineitem price": [items["Variant Price"][k] for k in bought],
        }
    )
    result = load_bundle(write_bundle(tmp_path / "shop", items, orders))
    assert result.ok, result.report.format()
    assert result.bundle.items["item_id"].tolist()[:2] == ["p-0", "p-1"]
    assert result.bundle.interactions["item_id"].tolist()[:2] == ["p-0", "p-1"]
    assert not S.could_be_ids(pd.Series(["68.10", "12.50", "9.99"]))
    assert not S.could_be_ids(pd.Series(["12 €", "13 €", "14 €"]))
    assert S.could_be_ids(pd.Series(["1001", "1002", "1003.0"])) and S.could_be_ids(pd.Series(["B00X1", "B00X2"]))


def test_a_woocommerce_export_reads_variations_as_their_product(tmp_path):
    """WooCommerce writes each variation as a row of its own ("Hoodie - Blue", Type "variation") naming its
    product in "Parent" ("id:10"), and an orders export names the variation bought: each variation was an item
    of its own that nobody but its buyers ever saw. Now the hoodie is one item, its colours its labels, and an
    order of variation 11 an order of product 10."""
    items = pd.DataFrame(
        {
            "ID": ["10", "11", "12", "20", "30", "31", "32"],
            "Type": ["variable", "variation", "variation", "simple", "variable", "variation", "variation"],
            "SKU": ["HOOD", "HOOD-B", "HOOD-G", "MUG", "CAP", "CAP-R", "CAP-N"],
            "Name": ["Hoodie", "Hoodie - Blue", "Hoodie - Green", "Mug", "Cap", "Cap - Red", "Cap - Navy"],
            "Description": ["Warm fleece", "", "", "Stoneware", "Cotton twill", "", ""],
            "Regular price": ["49", "49", "52", "18", "22", "22", "22"],
            "Parent": ["", "id:10", "id:10", "", "", "id:30", "CAP"],
            "Attribute 1 value(s)": ["Blue, Green", "Blue", "Green", "", "Red, Navy", "Red", "Navy"],
        }
    )
    orders = pd.DataFrame(
        {
            "Customer email": ["ann@web.de", "ann@web.de", "bob@mail.com", "bob@mail.com", "cy@x.org"],
            "Variation ID": ["11", "20", "12", "31", "32"],
        }
    )
    result = load_bundle(write_bundle(tmp_path / "woo", items, orders))
    assert result.ok, result.report.format()
    bundle = result.bundle
    assert bundle.items["item_id"].tolist() == ["10", "20", "30"]
    assert bundle.items["Name"].tolist() == ["Hoodie", "Mug", "Cap"]
    assert bundle.items["Attribute 1 value(s)"].tolist() == ["Blue|Green", "", "Red|Navy"]
    assert bundle.interactions["item_id"].tolist() == ["10", "20", "10", "30", "30"]
    notes = {i.code: i.message for i in result.report.issues}
    assert notes["variation_rows"].startswith("4 rows are variations of another row ('Parent' names it)")
    assert "7 rows are read as 3 products" in notes["variation_rows"]
    assert "'Variation ID' names variations (80% of its values)" in notes["variations_to_products"]


def test_the_lines_of_cancelled_orders_are_no_purchases(tmp_path):
    """Shopify's orders export writes "Cancelled at" (like every order-level field) on an order's first line
    only: the lines of a cancelled order were all read as purchases. They are now left out, every line of the
    order, with a note; a per-line yes/no column works the same way."""
    items = pd.DataFrame({"sku": [f"s{k}" for k in range(6)], "title": [f"Item {k}" for k in range(6)]})
    orders = pd.DataFrame(
        {
            "Name": ["#1", "#1", "#2", "#3", "#3", "#3", "#4"],
            "Email": ["a@x.de", "a@x.de", "b@x.de", "c@x.de", "c@x.de", "c@x.de", "a@x.de"],
            "Financial Status": ["paid", "", "paid", "voided", "", "", "paid"],
            "Cancelled at": ["", "", "", "2025-01-03 10:00:00 +0100", "", "", ""],
            "Lineitem sku": ["s0", "s1", "s2", "s3", "s4", "s5", "s1"],
        }
    )
    result = load_bundle(write_bundle(tmp_path / "shop", items, orders))
    assert result.ok, result.report.format()
    assert result.bundle.interactions["item_id"].tolist() == ["s0", "s1", "s2", "s1"]
    note = next(i.message for i in result.report.issues if i.code == "cancelled_orders")
    assert note.startswith("3 lines of 1 cancelled order are left out (a cancelled order is no purchase")
    assert "'Name' says which lines are one order" in note

    per_line = pd.DataFrame(
        {"user_id": ["a", "a", "b", "b"], "item_id": ["s0", "s1", "s2", "s3"], "canceled": ["no", "yes", "no", "no"]}
    )
    result = load_bundle(write_bundle(tmp_path / "lines", items, per_line))
    assert result.ok, result.report.format()
    assert result.bundle.interactions["item_id"].tolist() == ["s0", "s2", "s3"]


def test_a_shops_options_become_columns_named_by_the_option():
    """Shopify names a product's options in "Option1 Name" and gives the value in "Option1 Value", one product
    "Color", another "Size": read as they were, explanations said "Option1 Name 'Size'". Each option is now a
    column of its own; Shopify's "Title" / "Default Title" of a product without options is no option."""
    from recsys.data.shop_exports import options_as_columns

    products = pd.DataFrame(
        {
            "Title": ["Tee", "Mug", "Cap"],
            "Option1 Name": ["Color", "Title", "Size"],
            "Option1 Value": ["Red", "Default Title", "S|M"],
            "Option2 Name": ["Size", "", ""],
            "Option2 Value": ["S|M|L", "", ""],
        }
    )
    read, created = options_as_columns(products)
    assert created == ["Color", "Size"]
    assert read.columns.tolist() == ["Title", "Color", "Size"]
    assert read["Color"].tolist() == ["Red", "", ""] and read["Size"].tolist() == ["S|M|L", "", "S|M"]


def test_products_not_for_sale_are_found_and_said(tmp_path):
    """Shopify's "Status" draft / archived, WooCommerce's "Published" -1 (a draft) or 0, an "In stock?" 0, a
    "discontinued" yes: products no list should offer. The import says which; "Available sizes" is no flag."""
    from recsys.data.shop_exports import not_for_sale

    def found(column: str, values: list[str]) -> list[bool] | None:
        result = not_for_sale(pd.DataFrame({"item_id": [str(k) for k in range(len(values))], column: values}))
        return None if result is None else result.items.tolist()

    assert found("Status", ["active", "draft", "archived", "active"]) == [False, True, True, False]
    assert found("Published", ["1", "-1", "0", "1"]) == [False, True, True, False]
    assert found("In stock?", ["1", "0", "1"]) == [False, True, False]
    assert found("discontinued", ["no", "yes", "no"]) == [False, True, False]
    assert found("Available sizes", ["S|M", "L", "S"]) is None
    assert found("Status", ["active", "active"]) is None and found("Status", ["draft", "archived"]) is None

    items = pd.DataFrame(
        {"item_id": ["a", "b", "c"], "title": ["A", "B", "C"], "Status": ["active", "archived", "active"]}
    )
    interactions = pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "c"]})
    result = load_bundle(write_bundle(tmp_path / "shop", items, interactions))
    assert result.ok and len(result.bundle.items) == 3 and len(result.bundle.interactions) == 3
    note = next(i.message for i in result.report.issues if i.code == "not_for_sale")
    assert note == (
        "1 item of 3 is not for sale ('Status': archived): it stays in the data and the training, and is never "
        "recommended, also by runs trained on an earlier import"
    )


def test_a_product_every_variant_of_which_is_out_of_stock_is_not_for_sale(tmp_path):
    """Shopify's variant rows carry the stock ("Variant Inventory Qty"), whether the shop counts it ("Variant
    Inventory Tracker", blank: not counted) and whether a variant sells at 0 ("Variant Inventory Policy":
    continue). A product none of whose variants can be bought is sold out: the products table says so in a
    "Sold out" column, and it is not offered, like an archived one (both columns count)."""
    items = _shopify_products()
    #                    OX-S   OX-M     OX-L   (picture)  MUG      BE-G    BE-N
    items["Variant Inventory Tracker"] = ["shopify", "shopify", "shopify", "", "", "shopify", "shopify"]
    items["Variant Inventory Qty"] = ["0", "0", "-2", "", "0", "0", "3"]
    items["Variant Inventory Policy"] = ["deny", "deny", "deny", "", "deny", "deny", "deny"]
    items["Status"] = ["active", "", "", "", "active", "active", ""]
    orders = pd.DataFrame(
        {"Email": ["ann@web.de", "ann@web.de", "bob@mail.com"], "Lineitem sku": ["OX-L", "MUG", "BE-N"]}
    )
    folder = write_bundle(tmp_path / "shop", items, orders)
    result = load_bundle(folder)
    assert result.ok, result.report.format()
    bundle = result.bundle
    # the shirt: every variant at 0 or less; the mug: not counted (no tracker); the beanie: navy in stock
    assert bundle.items["Sold out"].tolist() == ["yes", "no", "no"]
    note = next(i.message for i in result.report.issues if i.code == "not_for_sale")
    assert note.startswith("1 item of 3 is not for sale ('Sold out': yes)")
    # what says whether a product sells now is no feature of it: whom it suits does not change when it sells out
    assert bundle.schema.items["Sold out"] == S.IGNORE and bundle.schema.items["Status"] == S.IGNORE
    assert bundle.schema.items.get("Variant Inventory Qty", S.IGNORE) == S.IGNORE
    from recsys.data.shop_exports import says_availability

    stock = pd.Series(["0", "12", "3"])
    assert says_availability("Stock", stock) and says_availability("Backorders allowed?", pd.Series(["0", "1"]))
    assert not says_availability("Stockholm store", stock) and not says_availability(
        "Status", pd.Series(["new", "used"])
    )

    items["Variant Inventory Policy"] = ["continue", "deny", "deny", "", "deny", "deny", "deny"]  # OX-S on backorder
    items["Status"] = ["active", "", "", "", "archived", "active", ""]
    result = load_bundle(write_bundle(tmp_path / "shop2", items, orders))
    assert result.ok, result.report.format()
    assert "Sold out" not in result.bundle.items.columns  # nothing is sold out: no column
    from recsys.data.shop_exports import not_for_sale

    marked = pd.DataFrame(
        {"item_id": ["a", "b", "c"], "Status": ["active", "archived", "active"], "Sold out": ["yes", "no", "no"]}
    )
    found = not_for_sale(marked)
    assert found is not None and found.items.tolist() == [True, True, False]
    assert found.columns == ["Status", "Sold out"] and found.values == ["Status: archived", "Sold out: yes"]
    note = next(i.message for i in result.report.issues if i.code == "not_for_sale")
    assert note.startswith("1 item of 3 is not for sale ('Status': archived)")
    # the shirt sold out again, and the mug archived: both said
    items["Variant Inventory Policy"] = ["deny", "deny", "deny", "", "deny", "deny", "deny"]
    result = load_bundle(write_bundle(tmp_path / "shop3", items, orders))
    note = next(i.message for i in result.report.issues if i.code == "not_for_sale")
    assert note.startswith("2 items of 3 are not for sale (Status: archived; Sold out: yes): ")


def test_a_pair_again_at_another_time_is_a_repeat_not_a_duplicate_row(tmp_path):
    """An orders export has many repeat purchases (the same customer and product in another order): they were
    a warning ("1,156 (user, item) pairs repeat"), as if the file were broken. A pair again at another time is
    now a note; the same pair at the same time, or with no time, stays a warning."""
    items = pd.DataFrame({"item_id": ["a", "b"], "title": ["A", "B"]})
    interactions = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2", "u2"],
            "item_id": ["a", "a", "b", "b", "b"],
            "timestamp": ["2025-01-01", "2025-03-01", "2025-01-02", "2025-01-05", "2025-01-05"],
        }
    )
    result = load_bundle(write_bundle(tmp_path / "t", items, interactions))
    assert result.ok, result.report.format()
    issues = {i.code: (i.level, i.message) for i in result.report.issues}
    assert issues["repeat_interactions"][0] == "note"
    assert issues["repeat_interactions"][1].startswith("1 interaction repeats a (user, item) pair at another time")
    assert issues["duplicate_interactions"] == (
        "warning",
        "1 (user, item) pair repeats at the same time; training counts each pair once",
    )
    untimed = load_bundle(write_bundle(tmp_path / "u", items, interactions.drop(columns=["timestamp"])))
    assert "repeat_interactions" not in untimed.report.codes()
    assert "2 (user, item) pairs repeat; training counts" in untimed.report.format()
