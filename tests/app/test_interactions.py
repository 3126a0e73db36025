"""Key interactions through the app: uploads and roles, users and filters, training, stopping, killing, deleting."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import zipfile

import pandas as pd
import pytest

from tests.app.conftest import assert_clean, read_json, texts, the_run, wait_for

# ----------------------------------------------------------------------------- helpers


def shop_tables(bad_rating: bool = False, duplicate_item: bool = False) -> tuple[bytes, bytes]:
    items = pd.DataFrame(
        {
            "item_id": [f"i{n}" for n in range(30)],
            "title": [f"Product number {n} for the garden" for n in range(30)],
            "category": [["Garden", "Kitchen", "Toys"][n % 3] for n in range(30)],
            "price": [f"{5 + n}.99" for n in range(30)],
        }
    )
    if duplicate_item:
        items.loc[5, "item_id"] = "i4"
    rows = [(f"u{u}", f"i{(u * 7 + k) % 30}", str(1 + (u + k) % 5)) for u in range(12) for k in range(8)]
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"])
    if bad_rating:
        interactions.loc[3, "rating"] = "five"
    return items.to_csv(index=False).encode(), interactions.to_csv(index=False).encode()


def open_data_page(app):
    app.switch_page("app_pages/data.py")
    app.run()
    app.segmented_control(key="data_source").set_value("Upload files")
    app.run()
    return app


def import_button(at):
    buttons = [b for b in at.button if (b.key or "").startswith("data_import_")]
    assert len(buttons) == 1, [b.key for b in at.button]
    return buttons[0]


def name_input(at):
    """The Import tab's dataset-name box (one per upload)."""
    [box] = [t for t in at.text_input if (t.key or "").startswith("data_name_")]
    return box


def card_titles(at) -> list[str]:
    titles = []
    for element in at.markdown:
        match = re.fullmatch(r"\*\*(\d+)\. (.+)\*\*", str(element.value))
        if match:  # titles are shown as text: Markdown characters arrive escaped
            titles.append(re.sub(r"\\(.)", r"\1", match.group(2)))
    return titles


# ----------------------------------------------------------------------------- data


def test_the_dataset_name_is_derived_valid_and_a_typed_path_is_refused(app, empty_workspace):
    at = open_data_page(app)
    items, interactions = shop_tables()
    at.file_uploader(key="data_items_file").set_value(("My Shop (2) items.csv", items, "text/csv"))
    at.file_uploader(key="data_interactions_file").set_value(("interactions.csv", interactions, "text/csv"))
    at.run()
    assert not at.exception
    box = name_input(at)
    assert box.value == "my-shop-2" and not import_button(at).disabled  # derived from the file, valid
    box.set_value("../../outside")
    at.run()
    assert not at.exception
    shown = texts(at).replace("\\", "")  # Markdown escapes
    assert "dataset name '../../outside' is not allowed: use letters, digits" in shown
    assert import_button(at).disabled
    assert not (empty_workspace / "datasets").exists() or not any((empty_workspace / "datasets").iterdir())


def test_upload_with_a_bad_rating_is_blocked_until_the_role_is_changed(app, trained_workspace):
    at = open_data_page(app)
    items, interactions = shop_tables(bad_rating=True)
    at.file_uploader(key="data_items_file").set_value(("shop-items.csv", items, "text/csv"))
    at.file_uploader(key="data_interactions_file").set_value(("interactions.csv", interactions, "text/csv"))
    at.run()
    assert not at.exception
    shown = texts(at)
    assert "1 rating is not a number" in shown and "interactions.csv" in shown and "column `rating`" in shown
    assert "— row 5." in shown  # one row is named alone: the 4th data row is spreadsheet row 5
    assert import_button(at).disabled

    editor = at.data_editor[0]
    table = editor.value
    row = int(table.index[(table["table"] == "interactions") & (table["column"] == "rating")][0])
    assert table.loc[row, "role"] == "rating"
    at.session_state[editor.key] = {"edited_rows": {row: {"role": "ignore"}}, "added_rows": [], "deleted_rows": []}
    at.run()
    assert not at.exception
    assert "1 rating is not a number" not in texts(at)
    button = import_button(at)
    assert not button.disabled
    name_input(at).set_value("shop")
    at.run()
    import_button(at).click()
    at.run()
    assert_clean(at)
    assert "Imported **shop**" in texts(at)
    schema = read_json(trained_workspace / "datasets" / "shop" / "schema.json")
    assert schema["interactions"]["rating"] == "ignore"
    # the files stay in the uploader: the page says what became of them rather than offering the review again
    assert "These files were imported as **shop**" in texts(at)
    assert not [b for b in at.button if (b.key or "").startswith("data_import_")]
    [again] = [b for b in at.button if (b.key or "").startswith("data_review_again_")]
    again.click()
    at.run()
    assert not at.exception and "These files were imported" not in texts(at)
    # the review is back from the inferred roles (the role change applied to the import made)
    assert import_button(at).disabled and "1 rating is not a number" in texts(at)


def test_pictures_named_without_a_pictures_zip_say_the_zip_was_not_uploaded(app, trained_workspace):
    """Items naming pictures, uploaded without the pictures .zip: the warning listed the missing files as if
    their paths were wrong; it now says what to add."""
    items, interactions = shop_tables()
    frame = pd.read_csv(io.BytesIO(items))
    frame["picture"] = [f"images/{n}.jpg" for n in range(len(frame))]
    at = open_data_page(app)
    at.file_uploader(key="data_items_file").set_value(("items.csv", frame.to_csv(index=False).encode(), "text/csv"))
    at.file_uploader(key="data_interactions_file").set_value(("interactions.csv", interactions, "text/csv"))
    at.run()
    assert_clean(at)
    shown = texts(at)
    assert "30 pictures named in the items table are not in the bundle" in shown
    assert "No pictures .zip was uploaded: add it beside the tables" in " ".join(c.value for c in at.caption)


def test_a_bundle_nothing_can_be_evaluated_on_is_not_called_problem_free(app, trained_workspace):
    # two interactions per user: it imports, but the protocol training chooses by default keeps 0 users to test
    # on (the Train page refuses it), so the report warns before the import instead of "No problems found"
    items, _ = shop_tables()
    rows = [(f"u{u}", f"i{(u * 7 + k) % 30}", "5") for u in range(12) for k in range(2)]
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"]).to_csv(index=False).encode()
    at = open_data_page(app)
    at.file_uploader(key="data_items_file").set_value(("items.csv", items, "text/csv"))
    at.file_uploader(key="data_interactions_file").set_value(("interactions.csv", interactions, "text/csv"))
    at.run()
    assert_clean(at)
    shown = texts(at)
    assert "No problems found" not in shown
    assert "keeps no user to test on" in shown and "(it tests 12 users)" in shown  # k-fold tests every user
    assert not import_button(at).disabled  # a warning: it can still be imported


def test_the_evaluation_warning_names_a_protocol_that_can_test_or_says_none_can():
    from app_pages.data import evaluation_warning
    from recsys.train.data import preflight

    two_each = pd.DataFrame(
        [(f"u{u}", f"i{u + k}") for u in range(12) for k in range(2)], columns=["user_id", "item_id"]
    )
    assert "K-fold" in evaluation_warning(preflight(two_each))["message"]
    one_each = two_each.drop_duplicates("user_id")
    assert "check that the user and item id columns" in evaluation_warning(preflight(one_each))["message"]
    many = pd.DataFrame(
        [(f"u{u}", f"i{(u + k) % 40}") for u in range(60) for k in range(8)], columns=["user_id", "item_id"]
    )
    assert evaluation_warning(preflight(many)) is None


def test_replacing_a_dataset_with_a_smaller_bundle_says_what_it_loses_before_the_import(app, trained_workspace):
    """Re-importing under the same name without the pictures .zip dropped every picture silently."""
    before = read_json(trained_workspace / "datasets" / "demo" / "manifest.json")
    assert before["counts"]["items_with_image"] > 0
    at = open_data_page(app)
    items, interactions = shop_tables()
    at.file_uploader(key="data_items_file").set_value(("items.csv", items, "text/csv"))
    at.file_uploader(key="data_interactions_file").set_value(("interactions.csv", interactions, "text/csv"))
    at.run()
    name_input(at).set_value("demo")
    at.run()
    assert not at.exception
    warning = " ".join(w.value for w in at.warning)
    assert "Importing replaces the dataset demo, and this bundle has less" in warning
    n_pictures = before["counts"]["items_with_image"]
    assert f"pictures: {n_pictures:,} items with a picture now, 0 in this bundle" in warning
    assert f"{before['counts']['items']:,} items now, 30 in this bundle" in warning
    assert "Upload the pictures .zip too" in warning
    # no users.csv: the users table's columns go too, with as many users as before (a count cannot see it)
    users_columns = [c for c, r in read_json(trained_workspace / "datasets" / "demo" / "schema.json")["users"].items()
                     if r not in ("id", "ignore")]  # fmt: skip
    from app_pages.common import md_text

    shown = ", ".join(md_text(c) for c in users_columns)  # catalogue text, escaped for Markdown
    assert users_columns and f"the users table ({shown}) not in this bundle" in warning
    # replacing is the user's call, but not a single click: the button waits for the box to be ticked
    assert import_button(at).disabled
    [confirm] = [c for c in at.checkbox if (c.key or "").startswith("data_replace_")]
    assert confirm.label == "Replace demo with this smaller bundle" and not confirm.value
    confirm.check()
    at.run()
    assert not import_button(at).disabled
    name_input(at).set_value("shop")
    at.run()
    assert "this bundle has less" not in " ".join(w.value for w in at.warning)
    assert not [c for c in at.checkbox if (c.key or "").startswith("data_replace_")]
    assert not import_button(at).disabled  # a new name replaces nothing
    assert read_json(trained_workspace / "datasets" / "demo" / "manifest.json") == before


def test_missing_pictures_are_explained_by_what_was_found(app, empty_workspace):
    """When most pictures are found, the paths have the right form: the hint about the zip's paths (meant for
    a zip whose layout does not match) would send the user looking for a mismatch that is not there."""
    from PIL import Image

    items, interactions = shop_tables()
    table = pd.read_csv(io.BytesIO(items))
    table["picture"] = [f"images/{n}.png" for n in range(30)]
    pictures = io.BytesIO()
    with zipfile.ZipFile(pictures, "w") as archive:
        for n in range(25):  # the last five are missing
            png = io.BytesIO()
            Image.new("RGB", (8, 8), (n * 9, 80, 120)).save(png, format="PNG")
            archive.writestr(f"images/{n}.png", png.getvalue())
    at = open_data_page(app)
    at.file_uploader(key="data_items_file").set_value(("items.csv", table.to_csv(index=False).encode(), "text/csv"))
    at.file_uploader(key="data_interactions_file").set_value(("interactions.csv", interactions, "text/csv"))
    at.file_uploader(key="data_images_file").set_value(("pictures.zip", pictures.getvalue(), "application/zip"))
    at.run()
    assert not at.exception
    shown = texts(at)
    assert "5 pictures named in the items table are not in the bundle" in shown
    assert "25 other pictures were found at the paths the items table names" in shown
    assert "Your pictures zip holds paths like" not in shown


def test_a_failed_upload_leaves_the_previous_dataset_in_place(app, trained_workspace):
    before = read_json(trained_workspace / "datasets" / "demo" / "manifest.json")
    at = open_data_page(app)
    items, interactions = shop_tables(duplicate_item=True)
    at.file_uploader(key="data_items_file").set_value(("items.csv", items, "text/csv"))
    at.file_uploader(key="data_interactions_file").set_value(("interactions.csv", interactions, "text/csv"))
    at.run()
    name_input(at).set_value("demo")
    at.run()
    assert not at.exception
    shown = texts(at)
    assert "1 item id appears more than once" in shown and "column `item_id`" in shown
    # both rows that hold the id are named, counted as a spreadsheet does (the header is row 1)
    assert "each item needs exactly one row — e.g. rows 6, 7." in shown
    assert import_button(at).disabled
    assert read_json(trained_workspace / "datasets" / "demo" / "manifest.json") == before


def test_a_bundle_zip_escaping_its_folder_is_refused(app, trained_workspace):
    items, interactions = shop_tables()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("items.csv", items)
        archive.writestr("interactions.csv", interactions)
        archive.writestr("../outside.txt", b"not allowed")
    at = open_data_page(app)
    at.segmented_control(key="data_source").set_value("Upload a .zip bundle")
    at.run()
    at.file_uploader(key="data_bundle_file").set_value(("bundle.zip", buffer.getvalue(), "application/zip"))
    at.run()
    assert not at.exception
    assert "outside the bundle folder" in texts(at)
    assert import_button(at).disabled
    assert not (trained_workspace / "outside.txt").exists()


def test_import_a_bundle_folder_from_disk(app, trained_workspace, small_bundle):
    at = open_data_page(app)
    at.segmented_control(key="data_source").set_value("Folder on disk")
    at.run()
    at.text_input(key="data_folder_path").set_value(str(trained_workspace / "no-such-folder"))
    at.run()
    assert "does not exist" in " ".join(e.value for e in at.error)
    at.text_input(key="data_folder_path").set_value(str(small_bundle))
    at.run()
    assert not at.exception
    # its three items and two interactions per user import fine, but leave the default evaluation nobody to test
    assert "No problems found" not in texts(at) and "keeps no user to test on" in texts(at)
    roles = at.data_editor[0].value.set_index("column")
    assert roles.loc["genres", "role"] == "multi_label" and roles.loc["genres", "reason"]
    import_button(at).click()
    at.run()
    assert_clean(at)
    assert "Imported **small**" in texts(at)
    assert (trained_workspace / "datasets" / "small" / "images").is_dir()


def test_a_shopify_export_uploads_as_one_item_per_product(app, trained_workspace):
    """Shopify's own exports, uploaded as they come: the products file one row per size (title on the first row
    only, no SKUs), the orders file naming each line "<title> - <size>". The page says how the rows were read,
    and the import holds one item per product with every order line on it."""
    rows = []
    for n in range(12):
        for k, size in enumerate(["S", "M", "L"] if n % 2 else ["S", "M"]):
            rows.append(
                {
                    "Handle": f"tee-{n}",
                    "Title": f"Organic Tee {n}" if k == 0 else "",
                    "Body (HTML)": f"<p>Soft <strong>cotton</strong>, style {n}</p>" if k == 0 else "",
                    "Vendor": ["Drift & Co.", "Kiln"][n % 2] if k == 0 else "",
                    "Option1 Value": size,
                    "Variant SKU": "",
                    "Variant Price": f"{20 + n}.00",
                }
            )
    products = pd.DataFrame(rows).to_csv(index=False).encode()
    lines = [(f"c{u}@shop.de", f"Organic Tee {(u * 5 + k) % 12} - {'SML'[k % 3]}") for u in range(15) for k in range(6)]
    orders = pd.DataFrame(lines, columns=["Email", "Lineitem name"]).to_csv(index=False).encode()
    at = open_data_page(app)
    at.file_uploader(key="data_items_file").set_value(("products_export_1.csv", products, "text/csv"))
    at.file_uploader(key="data_interactions_file").set_value(("orders_export_1.csv", orders, "text/csv"))
    at.run()
    assert_clean(at)
    shown = texts(at).replace("\\", "")
    assert "its 30 rows are read as 12 products" in shown
    assert "names what was bought by the product's title" in shown
    # the review shows the products as the import will hold them: Handle is the id, the sizes are labels
    roles = at.data_editor[0].value
    items_roles = roles[roles["table"] == "items"].set_index("column")["role"]
    assert items_roles["Handle"] == "id" and items_roles["Option1 Value"] == "multi_label"
    pickers = {b.key: b.value for b in at.selectbox if (b.key or "").startswith("data_map_")}
    assert sorted(pickers.values()) == ["Email", "Handle", "Lineitem name"], pickers
    name_input(at).set_value("northwind")
    at.run()
    import_button(at).click()
    at.run()
    assert_clean(at)
    assert "Imported **northwind**" in texts(at)
    items = pd.read_parquet(trained_workspace / "datasets" / "northwind" / "items.parquet")
    interactions = pd.read_parquet(trained_workspace / "datasets" / "northwind" / "interactions.parquet")
    assert len(items) == 12 and set(items["Option1 Value"]) == {"S|M|L", "S|M"}
    assert len(interactions) == 90 and set(interactions["item_id"]) <= set(items["item_id"])


# ----------------------------------------------------------------------------- recommendations


def test_the_user_chosen_is_still_chosen_after_another_page(app, trained_workspace):
    """Streamlit forgets a widget's value while another page is shown: coming back to Recommendations
    showed the most active user again instead of the one being looked at."""
    app.switch_page("app_pages/recommendations.py")
    at = app.run()
    other = at.selectbox(key="rec_user").options[3].split(" · ")[0]
    at.selectbox(key="rec_user").set_value(other)
    at.run()
    at.switch_page("app_pages/attention.py")
    at.run()
    assert_clean(at)
    at.switch_page("app_pages/recommendations.py")
    at.run()
    assert_clean(at)
    assert at.selectbox(key="rec_user").value == other and f"Top 10 for {other}" in texts(at)


def test_switching_users_and_filtering(app, trained_workspace):
    app.switch_page("app_pages/recommendations.py")
    at = app.run()
    assert_clean(at)
    users = at.selectbox(key="rec_user").options
    other = users[3].split(" · ")[0]
    at.selectbox(key="rec_user").set_value(other)
    at.run()
    assert_clean(at)
    assert f"Top 10 for {other}" in texts(at)
    assert len(card_titles(at)) == 10

    items = pd.read_parquet(trained_workspace / "datasets" / "demo" / "items.parquet")
    category = items["category"].value_counts().index[0]
    at.multiselect(key="rec_filter_category").set_value([category])
    at.run()
    assert_clean(at)
    titles = card_titles(at)
    assert titles
    by_title = dict(zip(items["title"], items["category"]))
    assert {by_title[t] for t in titles} == {category}

    at.toggle(key="rec_exclude_seen").set_value(False)
    at.slider(key="rec_diversity").set_value(0.6)
    at.run()
    assert_clean(at)
    assert card_titles(at)

    # the price range: round stops (20, 50, 100, ... or 20, 40, 60, ...) and only items inside the range
    at.multiselect(key="rec_filter_category").set_value([])
    price = next(s for s in at.select_slider if s.key.startswith("rec_price_"))
    assert {"20", "100"} <= set(price.options)  # round stops, as the slider labels them
    price.set_value((20.0, 100.0))
    at.run()
    assert_clean(at)
    titles = card_titles(at)
    assert titles
    price_of = dict(zip(items["title"], items["price"]))
    assert all(20 <= price_of[t] <= 100 for t in titles)


# ----------------------------------------------------------------------------- training


@pytest.mark.slow
def test_start_a_tiny_training_from_the_train_page(app, trained_workspace, kill_leftovers):
    from recsys.train.launch import run_state

    app.switch_page("app_pages/train.py")
    at = app.run()
    assert_clean(at)
    at.number_input(key="train_epochs").set_value(2)
    at.selectbox(key="train_text_encoder").set_value("tfidf")
    at.multiselect(key="train_baselines_fusion").set_value(["mostpop", "itemknn"])
    at.run()
    # the advanced options are generated from the config dataclasses, with the fields' help
    neighbours = at.number_input(key="train_opt_itemknn_k_neighbors")
    assert neighbours.help.startswith("most similar items kept per item")
    neighbours.set_value(7)
    at.run()
    at.button(key="train_start").click()
    at.run()
    assert not at.exception
    run_id = at.session_state["train_watch"]
    run_dir = trained_workspace / "runs" / run_id
    record = read_json(trained_workspace / "runs" / ".launch" / f"{run_id}.json")
    kill_leftovers.append(record["pid"])
    state = wait_for(
        lambda: run_state(run_dir)["state"] not in ("starting", "running") and run_state(run_dir),
        what="the training to end",
    )
    assert state["state"] == "finished", state
    metrics = read_json(run_dir / "metrics.json")
    assert set(metrics["baselines"]) == {"mostpop", "itemknn"}
    config = read_json(run_dir / "config.json")["config"]
    assert config["fusion_options"]["epochs"] == 2 and config["itemknn_options"]["k_neighbors"] == 7
    at.run()
    assert_clean(at)
    assert "Test metrics against the baselines" in texts(at)


def _start_long_run(workspace, kill_leftovers) -> tuple[str, int]:
    from recsys.train.launch import start_run
    from recsys.train.run import RunConfig
    from recsys.workspace import Workspace

    config = RunConfig(
        dataset="demo", fusion_options={"epochs": 400, "patience": 400}, text_encoder="tfidf", baselines=[]
    )
    run_id = start_run(Workspace(workspace), config)
    pid = read_json(workspace / "runs" / ".launch" / f"{run_id}.json")["pid"]
    kill_leftovers.append(pid)
    run_dir = workspace / "runs" / run_id
    wait_for(lambda: (run_dir / "model" / "config.json").is_file(), what="a first saved model")
    return run_id, pid


@pytest.mark.slow
def test_stop_a_running_training_from_the_ui(app, trained_workspace, kill_leftovers):
    from recsys.models import Recommender, list_models
    from recsys.train.launch import run_state

    run_id, _ = _start_long_run(trained_workspace, kill_leftovers)
    run_dir = trained_workspace / "runs" / run_id
    app.switch_page("app_pages/train.py")
    at = app.run()
    assert not at.exception
    assert at.session_state["train_watch"] == run_id  # the page follows the active run
    at.button(key=f"train_stop_{run_id}").click()
    at.run()
    assert not at.exception
    state = wait_for(
        lambda: run_state(run_dir)["state"] not in ("starting", "running") and run_state(run_dir),
        what="the run to stop",
    )
    assert state["state"] == "stopped", state
    list_models()
    model = Recommender.load(run_dir / "model")
    assert model.recommend(model.user_ids[0], k=5)
    at.run()
    assert_clean(at)
    assert "Stopped on request" in texts(at)


@pytest.mark.slow
def test_a_killed_training_leaves_the_workspace_readable(app, trained_workspace, kill_leftovers):
    from recsys.train.launch import run_state
    from recsys.train.run import list_runs
    from recsys.workspace import Workspace

    run_id, pid = _start_long_run(trained_workspace, kill_leftovers)
    run_dir = trained_workspace / "runs" / run_id
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: run_state(run_dir)["state"] == "interrupted", what="the run to read as interrupted")
    assert {r.run_id for r in list_runs(Workspace(trained_workspace))} >= {run_id}

    app.switch_page("app_pages/train.py")
    at = app.run()
    assert_clean(at)
    at.selectbox(key="train_watch").set_value(run_id)
    at.run()
    assert_clean(at)
    assert "Interrupted" in texts(at)
    for page in ("app_pages/recommendations.py", "app_pages/experiments.py", "app_pages/attention.py"):
        at.switch_page(page)
        at.run()
        assert_clean(at)


@pytest.mark.slow
def test_a_failed_training_is_explained(app, trained_workspace, kill_leftovers):
    from recsys.train.launch import run_state, start_run
    from recsys.train.run import RunConfig
    from recsys.workspace import Workspace

    config = RunConfig(dataset="demo", fusion_options={"epochs": 2}, text_encoder="tfidf", baselines=[])
    config.fusion_options.fusion = "no-such-fusion"  # past the form's checks: the training process refuses it
    run_id = start_run(Workspace(trained_workspace), config)
    kill_leftovers.append(read_json(trained_workspace / "runs" / ".launch" / f"{run_id}.json")["pid"])
    run_dir = trained_workspace / "runs" / run_id
    wait_for(lambda: run_state(run_dir)["state"] == "failed", what="the run to fail")
    app.switch_page("app_pages/train.py")
    at = app.run()
    assert not at.exception
    at.selectbox(key="train_watch").set_value(run_id)
    at.run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "The training failed" in errors and "fusion must be one of" in errors
    assert any(x.label == "Technical details" for x in at.expander)


# ----------------------------------------------------------------------------- experiments


def test_delete_a_run_with_confirmation(app, trained_workspace):
    run_dir = the_run(trained_workspace)
    app.switch_page("app_pages/experiments.py")
    at = app.run()
    assert_clean(at)
    at.selectbox(key="exp_run").set_value(run_dir.name)
    at.button(key="exp_delete").click()
    at.run()
    assert "for good?" in texts(at)
    assert run_dir.exists()
    at.button(key="exp_delete_yes").click()
    at.run()
    assert_clean(at)
    assert not run_dir.exists()
    assert "No runs yet" in texts(at)


@pytest.mark.slow
def test_a_running_training_cannot_be_deleted(trained_workspace, kill_leftovers):
    from recsys.train.launch import RunBusyError, delete_run, run_state, stop_run
    from recsys.workspace import Workspace

    run_id, _ = _start_long_run(trained_workspace, kill_leftovers)
    run_dir = trained_workspace / "runs" / run_id
    with pytest.raises(RunBusyError):
        delete_run(Workspace(trained_workspace), run_id)
    assert run_dir.exists()
    assert stop_run(run_dir)
    wait_for(lambda: run_state(run_dir)["state"] == "stopped", what="the run to stop")
    delete_run(Workspace(trained_workspace), run_id)
    assert not run_dir.exists()
    assert json.dumps(os.listdir(trained_workspace / "runs" / ".launch")).count(run_id) == 0


def test_a_zip_dropped_in_a_table_box_is_named_and_sent_where_it_belongs(app, trained_workspace):
    before = read_json(trained_workspace / "datasets" / "demo" / "manifest.json")
    at = open_data_page(app)
    items, interactions = shop_tables()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("items.csv", items)
        bundle.writestr("interactions.csv", interactions)
    at.file_uploader(key="data_items_file").set_value(("shop.zip", archive.getvalue(), "application/zip"))
    at.run()  # the zip alone: sent where it belongs at once, not only asked for the interactions
    assert not at.exception
    [warning] = [w.value.replace("\\", "") for w in at.warning]
    assert "shop.zip is a .zip in a table's box" in warning and "Upload a .zip bundle" in warning
    at.file_uploader(key="data_interactions_file").set_value(("interactions.csv", interactions, "text/csv"))
    at.run()
    assert not at.exception
    [error] = [e.value.replace("\\", "") for e in at.error]  # Markdown escapes
    assert (
        "shop.zip: the items file must be .csv (or tab-separated .tsv), .parquet or .jsonl; this is a .zip archive"
        in error
    )
    assert "goes under **Upload a .zip bundle** above" in error and "Nothing was imported" in error
    assert read_json(trained_workspace / "datasets" / "demo" / "manifest.json") == before
