"""The workspace: atomic imports, and a bad bundle never replacing a good dataset."""

from __future__ import annotations

import pandas as pd
import pytest

from recsys.workspace import InvalidName, Workspace, dataset_name, validate_name
from tests.conftest import write_bundle


def test_import_roundtrip(workspace, small_bundle):
    result = workspace.import_bundle(small_bundle, name="shop-catalog")
    assert result.ok and result.name == "shop-catalog"
    stored = workspace.load_dataset("shop-catalog")
    assert stored.items["item_id"].tolist() == ["a", "b", "c"]
    assert stored.image_path(stored.items["image_file"][0]).is_file()  # pictures copied into the dataset
    assert stored.schema.items["genres"] == "multi_label"
    assert [info.name for info in workspace.list_datasets()] == ["shop-catalog"]


def test_invalid_bundle_leaves_existing_dataset_untouched(workspace, small_bundle, tmp_path):
    assert workspace.import_bundle(small_bundle, name="shop").ok
    before = {p.relative_to(workspace.root): p.read_bytes() for p in workspace.root.rglob("*") if p.is_file()}
    broken = write_bundle(
        tmp_path / "broken",
        pd.DataFrame({"item_id": ["x", "x"], "title": ["a b", "c d"]}),
        pd.DataFrame({"user_id": ["u"], "item_id": ["x"]}),
    )
    result = workspace.import_bundle(broken, name="shop")
    assert not result.ok and result.path is None
    assert "duplicate_item_ids" in result.report.codes("error")
    after = {p.relative_to(workspace.root): p.read_bytes() for p in workspace.root.rglob("*") if p.is_file()}
    assert after == before


def test_crash_during_import_keeps_the_old_dataset(workspace, small_bundle, monkeypatch):
    assert workspace.import_bundle(small_bundle, name="shop").ok

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Workspace, "_write_dataset", explode)
    with pytest.raises(OSError):
        workspace.import_bundle(small_bundle, name="shop")
    assert len(workspace.load_dataset("shop").items) == 3
    assert not [p for p in workspace.datasets_dir.iterdir() if p.name.startswith(".")]  # no staging left


def test_interrupted_swap_is_recovered(workspace, small_bundle):
    import os

    assert workspace.import_bundle(small_bundle, name="shop").ok
    # simulate a crash between "move old aside" and "move new in"
    os.replace(workspace.dataset_path("shop"), workspace.datasets_dir / ".trash-shop-deadbeef")
    reopened = Workspace(workspace.root)
    assert len(reopened.load_dataset("shop").items) == 3


def test_workspace_location_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_WORKSPACE", str(tmp_path / "elsewhere"))
    assert Workspace().root == (tmp_path / "elsewhere").resolve()
    assert Workspace(tmp_path / "arg").root == (tmp_path / "arg").resolve()


def test_missing_dataset_message_lists_what_exists(workspace, small_bundle):
    workspace.import_bundle(small_bundle, name="shop")
    from recsys.workspace import DatasetNotFound

    with pytest.raises(DatasetNotFound, match="available: shop"):
        workspace.load_dataset("nope")


def test_delete_dataset(workspace, small_bundle):
    workspace.import_bundle(small_bundle, name="shop")
    workspace.delete_dataset("shop")
    assert workspace.list_datasets() == []


def test_dataset_names_are_folder_safe():
    assert dataset_name("../../etc") == "etc"
    assert dataset_name("My Data (v2)") == "my-data-v2"
    assert dataset_name("") == "dataset"


def test_the_active_dataset_is_the_workspaces_last_import_or_choice(workspace, small_bundle):
    assert workspace.active_dataset() is None
    assert workspace.import_bundle(small_bundle, name="first").ok
    assert workspace.import_bundle(small_bundle, name="second").ok
    assert workspace.active_dataset() == "second"  # the last import
    workspace.set_active_dataset("first")
    assert Workspace(workspace.root).active_dataset() == "first"  # shared by every window / process
    with pytest.raises(LookupError):
        workspace.set_active_dataset("missing")
    (workspace.root / "active.json").write_text("{broken")
    assert workspace.active_dataset() is None  # a damaged record only forgets the choice
    workspace.delete_dataset("second")
    workspace.set_active_dataset("first")
    assert workspace.active_dataset() == "first"


def test_import_copies_nothing_from_outside_a_folder_bundle(workspace, tmp_path):
    import os

    from tests.conftest import png_bytes

    secret = png_bytes((7, 7, 7), size=(9, 9))
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "secret.png").write_bytes(secret)
    (tmp_path / "private" / "notes.txt").write_text("do not copy")
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "title": ["A one", "B two", "C three"],
            "image_file": ["images/a.png", "images/leak.png", "linked/secret.png"],
        }
    )
    bundle = write_bundle(
        tmp_path / "b",
        items,
        pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "c"]}),
        images={"images/a.png": png_bytes(), "ground_truth/truth.csv": b"item_id\na\n"},
    )
    try:
        os.symlink(tmp_path / "private" / "secret.png", bundle / "images" / "leak.png")
        os.symlink(tmp_path / "private", bundle / "linked")
        os.symlink(tmp_path / "private" / "notes.txt", bundle / "ground_truth" / "notes.txt")
        os.symlink(tmp_path / "private", bundle / "ground_truth" / "private")
        os.symlink(bundle / "ground_truth", bundle / "ground_truth" / "loop")  # a loop must not make the copy endless
        os.symlink(tmp_path / "private" / "notes.txt", bundle / "README.md")
    except (OSError, NotImplementedError):
        pytest.skip("symbolic links are not supported here")
    result = workspace.import_bundle(bundle, name="shop")
    assert result.ok, result.report.format()
    stored = sorted(p.relative_to(result.path).as_posix() for p in result.path.rglob("*") if p.is_file())
    assert stored == [
        "ground_truth/truth.csv",
        "images/a.png",
        "interactions.parquet",
        "items.parquet",
        "manifest.json",
        "schema.json",
    ]
    assert not [p for p in result.path.rglob("*") if p.is_symlink()]
    assert workspace.load_dataset("shop").items["image_file"].tolist() == ["images/a.png", "", ""]
    messages = {issue.file: issue.message for issue in result.report.warnings if issue.code == "link_not_copied"}
    assert set(messages) == {"ground_truth/notes.txt", "ground_truth/private", "ground_truth/loop", "README.md"}
    assert "points outside the bundle" in messages["README.md"] and "not copied" in messages["README.md"]
    assert "symbolic link to a folder" in messages["ground_truth/loop"]


def test_importing_a_decompression_bomb_masks_the_picture(workspace, tmp_path):
    from tests.conftest import huge_png, png_bytes

    items = pd.DataFrame(
        {"item_id": ["a", "b"], "title": ["A one", "B two"], "image_file": ["images/a.png", "images/bomb.png"]}
    )
    bundle = write_bundle(
        tmp_path / "b",
        items,
        pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["a", "b"]}),
        images={"images/a.png": png_bytes(), "images/bomb.png": huge_png(30000, 30000)},
    )
    result = workspace.import_bundle(bundle, name="shop")  # was: a DecompressionBombError traceback
    assert result.ok, result.report.format()
    assert "image_too_large" in result.report.codes("warning")
    assert workspace.load_dataset("shop").items["image_file"].tolist() == ["images/a.png", ""]
    assert not (result.path / "images" / "bomb.png").exists()
    manifest = (result.path / "manifest.json").read_text()
    assert "images/bomb.png is 900 megapixels, over the limit of 40 megapixels" in manifest


RULE = "use letters, digits, '.', '_' and '-' (no leading dot, at most 100 characters)"
BAD_NAMES = ["../../x", "/abs/path/to/run", "a/b", "a\\b", ".hidden", "..", "", "My Shop", "x" * 101]


@pytest.mark.parametrize("value", BAD_NAMES)
def test_one_validator_refuses_paths_and_odd_names_with_a_plain_message(value):
    with pytest.raises(InvalidName) as caught:
        validate_name("run id", value)
    assert str(caught.value) == f"run id {value!r} is not allowed: {RULE}"
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("value", ["demo", "shop-2", "My_Shop.v2", "20260101-120000-demo-fusion-ab12", "x" * 100])
def test_plain_names_pass(value):
    assert validate_name("dataset name", value) == value


def test_workspace_maps_only_valid_names_to_folders(workspace, small_bundle, tmp_path):
    outside = tmp_path / "outside"
    for call in (
        workspace.dataset_path,
        workspace.load_dataset,
        workspace.delete_dataset,
        workspace.set_active_dataset,
    ):
        with pytest.raises(InvalidName, match=r"dataset name '\.\./outside' is not allowed"):
            call("../outside")
    with pytest.raises(InvalidName, match="run id '/abs/run' is not allowed"):
        workspace.run_path("/abs/run")
    assert workspace.run_path("run-1") == workspace.runs_dir / "run-1"
    assert workspace.has_dataset("../outside") is False  # a question, not an entry point: no such dataset
    with pytest.raises(InvalidName, match=r"dataset name '\.\./outside' is not allowed: use letters"):
        workspace.import_bundle(small_bundle, name="../outside")
    with pytest.raises(InvalidName, match="dataset name 'Shop Catalog!' is not allowed"):
        workspace.import_bundle(small_bundle, name="Shop Catalog!")  # typed names are checked, not renamed
    assert not outside.exists() and not any(workspace.datasets_dir.iterdir())


def test_a_name_derived_from_a_file_is_made_valid(workspace, small_bundle, tmp_path):
    import zipfile

    archive = tmp_path / "My Shop (2).zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in small_bundle.rglob("*"):
            if path.is_file():
                handle.write(path, path.relative_to(small_bundle).as_posix())
    result = workspace.import_bundle(archive)
    assert result.ok and result.name == "my-shop-2"
    assert workspace.load_dataset("my-shop-2").items["item_id"].tolist() == ["a", "b", "c"]
    assert validate_name("dataset name", dataset_name("." * 3 + "é" * 80)) == "dataset"


def test_a_price_written_with_a_currency_sign_keeps_its_sign(workspace, tmp_path):
    """Prices are stored as numbers; the sign they were written with ("$1,592.24") is kept in the manifest,
    so that the pages write "$1,592.24" rather than "price 1,592.24"."""
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "title": ["Knife", "Pan", "Pot"],
            "price": ["$1,592.24", "$40.00", ""],
            "weight": ["1.5", "2", "3"],
        }
    )
    interactions = pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "c"]})
    result = workspace.import_bundle(write_bundle(tmp_path / "b", items, interactions), name="shop")
    assert result.ok, result.report.format()
    stored = workspace.load_dataset("shop")
    assert stored.items["price"].tolist()[:2] == [1592.24, 40.0]
    assert stored.schema.units == {"items": {"price": "$"}}  # plain numbers (weight) have none
    assert stored.schema.amount_styles == {}  # the English way needs no note

    # a German shop's "1.299,00 €" keeps its way of writing amounts, so that the pages write them so
    german = items.assign(price=["1.592,24 €", "40,00 €", ""])
    result = workspace.import_bundle(write_bundle(tmp_path / "de", german, interactions), name="laden")
    assert result.ok, result.report.format()
    stored = workspace.load_dataset("laden")
    assert stored.items["price"].tolist()[:2] == [1592.24, 40.0]
    assert stored.schema.units == {"items": {"price": "€"}}
    assert stored.schema.amount_styles == {"items": {"price": "1.234,56 ¤"}}
    from recsys.data.stats import format_amount

    assert format_amount(1592.24, "€", "1.234,56 ¤") == "1.592,24 €"
    assert format_amount(1592.24, "$") == "$1,592.24" and format_amount(1592.24) == "1,592.24"

    # a manifest whose units are damaged loads with none, not an error
    manifest = workspace.dataset_path("shop") / "manifest.json"
    import json

    data = json.loads(manifest.read_text())
    data["units"] = ["$"]
    manifest.write_text(json.dumps(data))
    assert workspace.load_dataset("shop").schema.units == {}


def test_currency_signs_are_read_only_when_one_sign_is_used():
    from recsys.data.schema import currency_symbol

    assert currency_symbol(pd.Series(["$40.00", "$1,299", None, ""])) == "$"
    assert currency_symbol(pd.Series(["€ 12.50", "13"])) == "€"
    assert currency_symbol(pd.Series(["$4", "€5"])) is None  # a mix says nothing
    assert currency_symbol(pd.Series(["4", "5", "$6"])) is None  # one in three
    assert currency_symbol(pd.Series([4.0, 5.0])) is None


def test_the_way_a_column_writes_amounts_is_found():
    from recsys.data.schema import amount_style

    assert amount_style(pd.Series(["$40.00", "$1,299.00", None])) is None  # the English way
    assert amount_style(pd.Series(["12,50 €", "1.299,00 €"])) == "1.234,56 ¤"
    assert amount_style(pd.Series(["1.299 €", "49 €"])) == "1.234,56 ¤"  # whole euros, thousands points
    assert amount_style(pd.Series(["€ 12,50", "€ 3,99"])) == "¤1.234,56"
    assert amount_style(pd.Series(["12.50 €", "3.99 €"])) == "1,234.56 ¤"
    assert amount_style(pd.Series([4.0, 5.0])) is None
