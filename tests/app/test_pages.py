"""Every page renders without an exception, on an empty workspace and on one with a trained run."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from recsys.train.report import model_name
from tests.app.conftest import assert_clean, texts, the_run

PAGES = [
    "app_pages/data.py",
    "app_pages/train.py",
    "app_pages/recommendations.py",
    "app_pages/attention.py",
    "app_pages/experiments.py",
]

EMPTY_STATES = {
    "app_pages/data.py": "Upload at least an **items** file",
    "app_pages/train.py": "No dataset yet",
    "app_pages/recommendations.py": "No model trained yet",
    "app_pages/attention.py": "No model trained yet",
    "app_pages/experiments.py": "No runs yet",
}


def open_page(app, page: str | None):
    """Open ``page`` directly (Home never runs first, so an empty workspace stays empty)."""
    if page is not None:
        app.switch_page(page)
    app.run()
    return app


@pytest.mark.parametrize("page", PAGES)
def test_pages_on_an_empty_workspace_say_what_to_do(app, empty_workspace, page):
    at = open_page(app, page)
    assert_clean(at)
    assert EMPTY_STATES[page] in texts(at)


def test_home_quick_start_trains_on_the_user_s_own_active_dataset(app, empty_workspace, small_bundle):
    """With a shop imported and active, the big button still read "Train on the demo catalog": the user's data
    now has the primary button, and the demo stays one click away."""
    from recsys.train.launch import list_all_runs, stop_run
    from recsys.workspace import Workspace

    workspace = Workspace(empty_workspace)
    assert workspace.import_bundle(small_bundle, name="shop").ok  # the import makes it the active dataset
    at = open_page(app, None)
    assert_clean(at)
    own = at.button(key="home_quick_start_own")
    assert own.label == "Train on shop" and own.proto.type == "primary"
    assert at.button(key="home_quick_start").proto.type == "secondary"
    own.click().run()
    try:
        assert_clean(at)
        runs = list_all_runs(workspace)
        assert [r.dataset for r in runs] == ["shop"] and "Training started" in texts(at)
        assert "is now the active dataset" not in texts(at)
    finally:
        for run in list_all_runs(workspace):
            stop_run(run.path)


def test_home_on_an_empty_workspace_prepares_the_demo(app, empty_workspace):
    at = open_page(app, None)
    assert_clean(at)
    shown = texts(at)
    assert "Multimodal recommender studio" in shown
    assert "No model trained yet" in shown
    assert (empty_workspace / "datasets" / "demo" / "manifest.json").is_file()
    assert at.button(key="home_quick_start").disabled is False


def test_home_quick_start_shows_the_run_it_started(app, empty_workspace):
    """The quick start launches a real training run; the page is drawn again at once, so the "Latest run" card
    names it (not "No model trained yet") beside the confirmation. The run is stopped straight after."""
    from recsys.train.launch import list_all_runs, stop_run
    from recsys.workspace import Workspace

    at = open_page(app, None)
    assert "No model trained yet" in texts(at)
    at.button(key="home_quick_start").click().run()
    try:
        assert_clean(at)
        shown = texts(at)
        assert "Training started" in shown
        assert "No model trained yet" not in shown
        assert "Fusion on demo" in shown
        assert at.button(key="home_quick_start").disabled  # one run at a time from here
        assert "A training run is in progress" not in shown  # the confirmation above already says so
        # the pages that need a model say one is on its way, not "No model trained yet"
        at.switch_page("app_pages/recommendations.py").run()
        assert_clean(at)
        shown = texts(at)
        assert "A model is training (Fusion on demo): its recommendations appear here when it finishes" in shown
        assert "No model trained yet" not in shown
    finally:
        for run in list_all_runs(Workspace(empty_workspace)):
            stop_run(run.path)


def test_home_with_a_trained_run(app, trained_workspace):
    at = open_page(app, None)
    assert_clean(at)
    shown = texts(at)
    assert "Fusion on demo" in shown
    assert "NDCG@20" in shown
    assert "CPU" in shown or "GPU" in shown


def test_data_page_explores_the_dataset(app, trained_workspace):
    at = open_page(app, "app_pages/data.py")
    assert_clean(at)
    labels = {m.label: m.value for m in at.metric}
    assert labels["Users"] == "150" and labels["Items"] == "120" and labels["Interactions"] == "3,000"
    assert len(at.get("plotly_chart")) >= 5  # long tails, ratings, coverage, over time, categories
    # the demo's dates, read at import, span 2021-2024: shown per month
    assert "Interactions over time \\u2014 2021-" in " ".join(str(c.proto.spec) for c in at.get("plotly_chart"))
    assert "per month" in " ".join(str(c.proto.spec) for c in at.get("plotly_chart"))
    assert len(at.get("imgs")) >= 12 or len(at.image) >= 12  # the gallery shows pictures


def test_train_page_shows_the_finished_run(app, trained_workspace):
    at = open_page(app, "app_pages/train.py")
    assert_clean(at)
    shown = texts(at)
    assert "Test metrics against the baselines" in shown
    # and, user by user, whether the model's difference to each baseline is more than the test users' noise
    assert "Is the difference real?" in shown
    assert len(at.dataframe) == 2
    paired = at.dataframe[1].value
    metrics = json.loads((the_run(trained_workspace) / "metrics.json").read_text())
    assert set(paired["Against"]) == {model_name(name) for name in metrics["baselines"]}
    assert set(paired["Verdict"]) <= {"clearly better", "clearly worse", "within the test users' noise"}
    assert at.selectbox(key="train_text_encoder").options  # only available encoders are offered


def test_recommendations_page_shows_cards_with_explanations(app, trained_workspace):
    import re

    at = open_page(app, "app_pages/recommendations.py")
    assert_clean(at)
    user = at.selectbox(key="rec_user").value
    shown = texts(at)
    assert f"Top 10 for {user}" in shown
    assert "How much each modality weighs" not in shown  # explanations are computed when a popover opens
    assert len(at.get("download_button")) == 1
    # the cards show a dozen history items; the whole history is a table in an expander, one row per item
    [caption] = [c.value for c in at.caption if "showing 12" in c.value]  # "N interactions[ with M different items]"
    numbers = re.findall(r"([\d,]+) (?:interactions|different items)", caption)
    count = int(numbers[-1].replace(",", ""))  # the distinct items when some repeat
    [whole] = [e for e in at.expander if e.label.startswith("All ")]
    assert whole.label == f"All {count:,} items of this history"
    assert len(whole.dataframe[0].value) == count
    # the history cards carry the same attribute line as the recommendation cards (category first)
    items = pd.read_parquet(trained_workspace / "datasets" / "demo" / "items.parquet")
    categories = set(items["category"].str.rsplit(" > ", n=1).str[-1])  # a card shows a path's last level
    assert sum(c.value.replace("\\", "").split(" · ")[0] in categories for c in at.caption) >= 12 + 10
    at.session_state["rec_why_1"] = True  # open the first card's "Why this?"
    at.run()
    assert_clean(at)
    shown = texts(at)
    assert "How much each modality weighs" in shown
    assert len(at.get("plotly_chart")) == 1  # the modality attention / share chart
    # history items carry their ids, as the cards do: titles can repeat, ids match the CSV and the CLI
    assert any(re.search(r" \(\S+\) · adds [+-]\d", c.value) for c in at.caption)


def test_a_new_visitor_gets_recommendations_and_explanations_from_the_items_picked(app, trained_workspace):
    import re

    import numpy as np

    from recsys.explain.coldstart import recommend_for_history
    from recsys.train.records import load_run_model

    at = open_page(app, "app_pages/recommendations.py")
    at.session_state["rec_mode"] = "A new visitor"
    at.run()
    assert_clean(at)
    assert "Pick one or more items the visitor likes" in texts(at)
    picker = at.multiselect(key="rec_liked")
    liked = list(picker.options[:2])  # the picker lists the most chosen items first
    model = load_run_model(the_run(trained_workspace))
    counts = np.asarray(model.seen.sum(axis=0)).ravel()
    assert counts[model.item_index(liked[0].split(" · ")[-1])] == counts.max()
    ids = [option.split(" · ")[-1] for option in liked]
    # "title · brand · id": the picker's search finds an item by its brand as well
    items = pd.read_parquet(trained_workspace / "datasets" / "demo" / "items.parquet").set_index("item_id")
    assert liked[0].split(" · ")[1] == items.at[ids[0], "brand"] and "title, brand or id" in picker.placeholder
    picker.set_value(liked)
    at.toggle(key="rec_one_per_product").set_value(False)  # the engine's list as it is, no variant guard
    at.run()
    assert_clean(at)
    shown = texts(at)
    assert "The visitor likes 2 items" in shown and "Top 10 for the visitor" in shown
    # the cards are the engine's new-user list for those items, in its order, the liked items left out
    expected = recommend_for_history(model, ids, k=10)
    on_cards = [m.group(1) for c in at.caption if (m := re.fullmatch(r"(\S+) · score -?[\d.]+", c.value))]
    assert on_cards == [item for item, _ in expected] and not set(ids) & set(on_cards)
    assert "one of the visitor's liked items" not in texts(at)
    # how much of the list is popularity: the engine's figure, said on the page when it is most of it
    from recsys.explain.coldstart import popularity_share

    share = popularity_share(model, ids, [item for item, _ in expected])
    assert share is not None and 0 <= share <= 1
    assert (f"Popularity makes up {share:.0%} of these scores" in texts(at)) == (share >= 0.5)
    at.session_state["rec_why_1"] = True
    at.run()
    assert_clean(at)
    shown = texts(at)
    assert "How much each modality weighs" in shown and "The liked items behind it" in shown
    at.toggle(key="rec_exclude_seen").set_value(False).run()  # the liked items may come back: marked
    assert_clean(at)
    assert "one of the visitor's liked items" in texts(at)
    # a re-ranked visitor list says so, as a known user's does, and that a lower score can come first
    at.slider(key="rec_diversity").set_value(0.5).run()
    assert_clean(at)
    assert "Re-ranked for variety (diversity 0.50)." in texts(at) and "a lower score can come first" in texts(at)
    at.slider(key="rec_diversity").set_value(0.0).run()
    # another page and back: the mode and the picked items are still there
    at.switch_page("app_pages/experiments.py").run()
    at.switch_page("app_pages/recommendations.py").run()
    assert_clean(at)
    assert at.session_state["rec_mode"] == "A new visitor" and "The visitor likes 2 items" in texts(at)


def test_a_low_rated_history_item_behind_a_card_is_marked_and_explained(app, trained_workspace):
    # the model counts every interaction as interest: an item the user rated low may still lift a card, and the
    # page says so rather than showing it among the reasons unmarked
    at = open_page(app, "app_pages/recommendations.py")
    users = [option.split(" · ")[0] for option in at.selectbox(key="rec_user").options]
    for user in users[:30]:
        at.session_state["rec_user"] = user
        at.run()
        for rank in range(1, 11):
            at.session_state[f"rec_why_{rank}"] = True
        at.run()
        assert_clean(at)
        marked = [c.value for c in at.caption if c.value.endswith("(rated low)")]
        if marked:
            break
    else:
        pytest.fail("no card of the first 30 users rests on a history item rated low")
    assert "★" in marked[0]  # the rating is shown beside the mark
    assert "counts every interaction as interest, whatever its rating" in texts(at)


def test_a_run_deleted_while_it_was_open_is_said_and_another_shown(app, trained_workspace):
    at = open_page(app, "app_pages/recommendations.py")
    shown = at.session_state["app_run"]
    at.session_state["app_run"] = "deleted-elsewhere"  # what a tab holds after the run was deleted elsewhere
    at.run()
    assert_clean(at)
    assert any("The run you had open has been deleted" in i.value for i in at.info)
    assert at.session_state["app_run"] == shown
    at.run()  # said once
    assert not any("has been deleted" in i.value for i in at.info)


def test_a_run_the_page_does_not_list_is_not_called_deleted(app, trained_workspace):
    """The Train page makes a run it starts the open one; the model pages do not list it until it ends."""
    at = open_page(app, "app_pages/recommendations.py")
    (trained_workspace / "runs" / "20990101-000000-still-training").mkdir()  # a private copy of the workspace
    at.session_state["app_run"] = "20990101-000000-still-training"
    at.run()
    assert_clean(at)
    assert not any("has been deleted" in i.value for i in at.info)


def test_recommendations_page_steers_a_group_s_exposure(app, trained_workspace):
    at = open_page(app, "app_pages/recommendations.py")
    assert_clean(at)
    # the least active user: the most active may already have every item of the group, leaving nothing to steer
    at.session_state["rec_user"] = at.selectbox(key="rec_user").options[-1].split(" · ")[0]
    at.run()
    assert_clean(at)
    assert "of this list — target" not in texts(at)  # strength 0: off
    column = at.selectbox(key="rec_exposure_column").value
    value = at.selectbox(key=f"rec_exposure_value_{column}").value
    target = at.number_input(key=f"rec_exposure_target_{column}_{value}")
    assert 0 < target.value < 1  # the group's catalogue share
    assert "of the catalogue" in texts(at)
    at.slider(key="rec_exposure_strength").set_value(1.0)
    target.set_value(0.5)
    at.run()
    assert_clean(at)
    shown = texts(at)
    caption = next(c.value for c in at.caption if "of this list — target" in c.value)
    assert "target 50.0%" in caption and "strength 1.00" in caption
    assert "Top 10 for" in shown
    share = float(caption.split(" is ")[1].split("%")[0])
    assert abs(share - 50.0) <= 10.0  # half of the 10 places, as far as the candidates allow


def test_attention_page_draws_charts(app, trained_workspace):
    at = open_page(app, "app_pages/attention.py")
    assert_clean(at)
    charts = at.get("plotly_chart")
    assert len(charts) >= 5  # distribution, category heatmap, history, one user, ground truth, map
    assert "true weights" in texts(at)
    # beside each users' mean, the item-level mean over their top items (the per-item factor moves it)
    from recsys.explain import top_items_attention
    from recsys.train.records import load_run_model

    model = load_run_model(the_run(trained_workspace))
    frame = top_items_attention(model, k=20, max_users=500)
    for modality in model.modalities:
        assert f"on the users' top 20 items: {frame[modality].fillna(0).mean():.0%}" in texts(at)


def test_the_one_user_heatmap_keeps_the_user_chosen_there(app, trained_workspace):
    """ "One user" starts on the group's user and follows a new pick in the group, but a user chosen in it
    stays chosen (it snapped back to the group's user on every rerun)."""
    at = open_page(app, "app_pages/attention.py")
    group_user = at.selectbox(key="att_group_user").value
    assert at.selectbox(key="att_user").value == group_user
    other = next(u for u in at.selectbox(key="att_user").options if not u.startswith(group_user + " "))
    other = other.split(" · ")[0]
    at.selectbox(key="att_user").set_value(other).run()
    assert_clean(at)
    assert at.selectbox(key="att_user").value == other
    at.slider(key="att_user_k").set_value(5).run()  # another rerun
    assert at.selectbox(key="att_user").value == other
    another = at.selectbox(key="att_group_user").options[1].split(" · ")[0]
    at.selectbox(key="att_group_user").set_value(another).run()
    assert_clean(at)
    assert at.selectbox(key="att_user").value == another


def test_experiments_page_lists_the_run(app, trained_workspace):
    at = open_page(app, "app_pages/experiments.py")
    assert_clean(at)
    assert len(at.dataframe) >= 1
    assert len(at.get("download_button")) == 1
    runs = at.dataframe[0]
    assert runs.proto.placeholder == "–"  # a figure a run never measured reads "–", not "None"
    # figures stay numbers, so a click on the header sorts 12.0 minutes after 3.5 (as text it came before)
    assert runs.value["Minutes"].dtype.kind == "f" and runs.value["NDCG@20"].dtype.kind == "f"


def test_a_bpr_run_is_listed_and_its_curves_drawn(app, trained_workspace):
    """BPR-MF saves its history as a list of epochs: one such run used to take the whole Experiments page down,
    and its Train page showed no curves (it reports no epochs while it fits)."""
    from recsys.train.run import RunConfig, train_run
    from recsys.workspace import Workspace

    config = RunConfig(dataset="demo", model="bpr", bpr_options={"epochs": 10, "eval_every": 2}, baselines=[])
    run_dir = train_run(Workspace(trained_workspace), config, run_id="bpr-run")
    at = open_page(app, "app_pages/experiments.py")
    assert_clean(at)
    assert set(at.dataframe[0].value["Run"]) >= {"bpr-run", the_run(trained_workspace).name}
    # the two runs side by side: the options that differ come first (alphabetically they were lost in the table)
    at.multiselect(key="exp_compare").set_value(["bpr-run", the_run(trained_workspace).name]).run()
    assert_clean(at)
    side_by_side = at.dataframe[-1].value
    differs = side_by_side.nunique(axis=1) > 1
    assert differs.any() and not differs[: int(differs.sum())].eq(False).any()  # all the differing rows lead
    at.switch_page("app_pages/train.py")
    at.session_state["train_watch"] = run_dir.name
    at.run()
    assert_clean(at)
    specs = " ".join(str(c.proto.spec) for c in at.get("plotly_chart"))
    assert "Training loss" in specs and "Validation metrics" in specs


def test_attention_opens_on_a_run_with_per_user_weights_before_a_newer_baseline(app, trained_workspace):
    from recsys.train.run import RunConfig, train_run
    from recsys.workspace import Workspace

    fusion = the_run(trained_workspace).name
    config = RunConfig(dataset="demo", model="bpr", bpr_options={"epochs": 4, "eval_every": 2}, baselines=[])
    train_run(Workspace(trained_workspace), config, run_id="zz-bpr-newer")
    at = open_page(app, "app_pages/attention.py")
    assert_clean(at)
    assert at.session_state["app_run"] == fusion  # a first visit: the run this page is for
    at.switch_page("app_pages/experiments.py").run()
    at.session_state["app_run"] = "zz-bpr-newer"  # the pages share the run chosen last
    at.switch_page("app_pages/attention.py").run()
    assert_clean(at)
    shown = texts(at)
    assert "This run trained a BPR-MF model" in shown and "baseline" not in shown.split("This run trained")[1][:40]


def test_experiments_page_shows_the_fairness_report_on_demand(app, trained_workspace):
    at = open_page(app, "app_pages/experiments.py")
    assert_clean(at)
    assert at.selectbox(key="exp_fair_items").value  # a categorical item column of the demo (brand, category...)
    at.selectbox(key="exp_fair_users").set_value("age_band")
    at.button(key="exp_fair_go").click().run()
    assert_clean(at)
    shown = texts(at)
    assert "Gap " in shown and "bootstrap resamples" in shown
    assert len(at.get("plotly_chart")) >= 4  # the comparison, exposure, and NDCG by history length and age band
    at.selectbox(key="exp_fair_items").set_value("tags").run()  # another column: the report follows at once
    assert_clean(at)
    assert not [b for b in at.button if b.key == "exp_fair_go"]
    assert "Top-20 exposure" in " ".join(str(c.proto.spec) for c in at.get("plotly_chart"))


@pytest.mark.parametrize("page", ["app_pages/recommendations.py", "app_pages/attention.py"])
def test_a_run_whose_model_cannot_be_loaded_is_explained(app, trained_workspace, page):
    from tests.app.conftest import the_run

    run = the_run(trained_workspace)
    (run / "model" / "weights.safetensors").write_bytes(b"damaged")
    at = open_page(app, page)
    assert_clean(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "could not be loaded" in warnings and "weights.safetensors cannot be read" in warnings
    assert "python -m recsys train --resume" in warnings


@pytest.mark.parametrize("page", [None, "app_pages/data.py", "app_pages/train.py"])
def test_a_damaged_dataset_is_named_and_the_others_still_work(app, tmp_path, monkeypatch, small_bundle, page):
    from recsys.workspace import Workspace

    workspace = Workspace(tmp_path / "ws")
    assert workspace.import_bundle(small_bundle, name="good").ok
    assert workspace.import_bundle(small_bundle, name="shop").ok  # the active one
    items = workspace.datasets_dir / "shop" / "items.parquet"
    items.write_bytes(items.read_bytes()[:100])
    monkeypatch.setenv("RECSYS_WORKSPACE", str(workspace.root))
    at = open_page(app, page)
    assert not at.exception, [e.value for e in at.exception]
    # the Train page's protocol check refuses a 3-item catalogue: the only error box allowed
    assert all("cannot evaluate this dataset" in e.value for e in at.error), [e.value for e in at.error]
    warnings = " ".join(w.value for w in at.warning)
    assert "Dataset shop cannot be used" in warnings and "datasets/shop/items.parquet cannot be read" in warnings
    if page is None:
        assert "good" in [h.value for h in at.subheader]  # the active dataset falls back to a readable one
    else:
        assert at.selectbox(key=f"{page.split('/')[1][:-3]}_dataset").value == "good"


def test_the_active_dataset_is_shared_by_every_window(app, trained_workspace, small_bundle):
    from streamlit.testing.v1 import AppTest

    from recsys.workspace import Workspace
    from tests.app.conftest import APP

    first = open_page(app, "app_pages/data.py")
    assert first.selectbox(key="data_dataset").value == "demo"
    Workspace(trained_workspace).import_bundle(small_bundle, name="shop")  # e.g. from another window or the CLI
    second = open_page(AppTest.from_file(APP, default_timeout=180), "app_pages/train.py")
    assert second.selectbox(key="train_dataset").value == "shop"
    second.selectbox(key="train_dataset").select("demo").run()
    first.run()  # the first window follows the choice made in the second
    assert first.selectbox(key="data_dataset").value == "demo"


def test_catalogue_text_is_shown_as_text_never_as_markdown(app, trained_workspace):
    import pandas as pd

    from app_pages.common import md_text

    planted = "![x](http://127.0.0.1:9/track.png) **bold** [link](http://127.0.0.1:9)"
    import re

    assert re.search(r"(?<!\\)[\[\]*]", md_text(planted)) is None  # every bracket and star escaped
    items_file = trained_workspace / "datasets" / "demo" / "items.parquet"
    items = pd.read_parquet(items_file)
    items.loc[:, "title"] = planted  # every item: whatever the gallery shows carries it
    items.to_parquet(items_file)
    at = open_page(app, "app_pages/data.py")
    assert_clean(at)
    shown = [m.value for m in at.markdown] + [c.value for c in at.caption]
    assert any("track" in value for value in shown)
    assert not any("![x](" in value or "[link](" in value for value in shown)


def test_a_page_showing_a_model_of_another_dataset_says_so(app, trained_workspace, small_bundle):
    # the active dataset (imported last) has no model yet: the page opens the demo's, and says it is the demo's
    from recsys.workspace import Workspace

    Workspace(trained_workspace).import_bundle(small_bundle, name="shop")
    at = open_page(app, "app_pages/recommendations.py")
    assert_clean(at)
    notes = " ".join(i.value for i in at.info)
    assert "No model has been trained on the active dataset “shop” yet" in notes and "“demo”" in notes


def test_a_stopped_cross_validation_offers_no_resume(app, trained_workspace):
    # resuming one failed at once and turned the stopped run into a failed one: the page says to start again
    import json
    import shutil

    from recsys.train.run import write_status
    from tests.app.conftest import the_run

    run = the_run(trained_workspace)
    stopped = run.with_name("20200101-000000-demo-fusion-cv")
    shutil.copytree(run, stopped, ignore=shutil.ignore_patterns(".lock"))
    saved = json.loads((stopped / "config.json").read_text())
    saved["config"]["protocol"] = "kfold"
    (stopped / "config.json").write_text(json.dumps(saved))
    write_status(stopped, state="stopped")
    at = open_page(app, "app_pages/train.py")
    at.selectbox(key="train_watch").set_value(stopped.name).run()
    assert_clean(at)
    assert "Stopped on request" in texts(at)
    assert not [b for b in at.button if b.key == f"train_resume_{stopped.name}"]
    assert "A cross-validation run cannot be resumed" in texts(at)


def test_a_paragraph_long_title_is_cut_on_the_cards_and_whole_in_their_tooltip(app, trained_workspace):
    # one item's title would otherwise stretch every card of its row to a column of words
    import pandas as pd

    from app_pages.recommendations import CARD_TITLE_CHARACTERS

    long_title = "Extra long superlative " + "ultra premium handcrafted artisanal " * 12 + "**Mug**"
    items_file = trained_workspace / "datasets" / "demo" / "items.parquet"
    items = pd.read_parquet(items_file)
    items.loc[:, "title"] = long_title
    items.to_parquet(items_file)
    import streamlit as st

    st.cache_data.clear()  # the page's frames are cached by the dataset's import stamp, which this edit keeps
    st.cache_resource.clear()
    at = open_page(app, "app_pages/recommendations.py")
    assert_clean(at)
    cards = [m for m in at.markdown if m.value.startswith("**1. ")]
    assert len(cards) == 1
    shown = cards[0].value
    assert shown.endswith("…**") and len(shown) < CARD_TITLE_CHARACTERS + 30  # ** marks and escapes aside
    assert cards[0].proto.help.replace("\\", "").endswith("**Mug**")  # the whole title, as text


@pytest.mark.parametrize(
    "page",
    [
        None,
        "app_pages/data.py",
        "app_pages/train.py",
        "app_pages/recommendations.py",
        "app_pages/attention.py",
        "app_pages/experiments.py",
    ],
)
def test_a_damaged_metrics_file_of_one_run_leaves_every_page_working(app, trained_workspace, page):
    import shutil

    from tests.app.conftest import the_run

    run = the_run(trained_workspace)
    torn = run.with_name("20200101-000000-demo-fusion-torn")
    shutil.copytree(run, torn, ignore=shutil.ignore_patterns(".lock"))
    metrics = torn / "metrics.json"
    metrics.write_bytes(metrics.read_bytes()[: len(metrics.read_bytes()) // 2])  # torn, as a full disk leaves it
    at = open_page(app, page)
    assert_clean(at)
    if page == "app_pages/experiments.py":
        warnings = " ".join(w.value for w in at.warning)
        assert f"runs/{torn.name}/metrics.json cannot be read" in warnings
        assert run.name in " ".join(str(df.value) for df in at.dataframe)  # the intact run is still listed
    if page == "app_pages/train.py":  # watching the torn run: its card says so, the page stays up
        at.selectbox(key="train_watch").set_value(torn.name).run()
        assert_clean(at)
        assert "metrics of this run could not be read" in " ".join(w.value for w in at.warning)


@pytest.mark.parametrize(
    "page",
    [None, "app_pages/train.py", "app_pages/recommendations.py", "app_pages/attention.py", "app_pages/experiments.py"],
)
def test_a_run_trained_on_an_earlier_import_of_its_dataset_says_so(app, trained_workspace, page):
    import json

    from tests.app.conftest import the_run

    run = the_run(trained_workspace)
    status = json.loads((run / "status.json").read_text())
    at = open_page(app, page)
    assert_clean(at)
    assert status.get("dataset_imported_at") and not [i for i in at.info if "imported again" in i.value]
    assert not [c for c in at.caption if "earlier import" in c.value]
    # the dataset imported again under the same name, as the Data page does
    manifest_file = trained_workspace / "datasets" / status["dataset"] / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest_file.write_text(json.dumps(manifest | {"imported_at": "2031-05-04T03:02:01Z"}))
    at = open_page(app, page)
    assert_clean(at)
    if page is None:  # Home's latest-run card: one line
        assert "Trained on an earlier import of demo: train again" in " ".join(c.value for c in at.caption)
        return
    notes = " ".join(i.value for i in at.info)
    assert "was imported again after this run trained on it" in notes and "2031-05-04 03:02" in notes
    if page == "app_pages/train.py":
        assert "These metrics were measured on the earlier data" in notes
    if page == "app_pages/experiments.py":  # the fairness report rebuilds the split from the current import
        assert "rebuilds the test split from the current import" in notes


def test_a_run_refitting_its_final_model_says_whose_curves_are_shown(app, trained_workspace):
    """The heading names the stage running now ("Refitting the final model…"); the epoch curves under it are the
    validated fit's, which a user read as the refit's own."""
    import json
    import os
    import shutil

    from tests.app.conftest import the_run

    run = the_run(trained_workspace)
    live = run.with_name("20300101-000000-demo-fusion-live")
    shutil.copytree(run, live, ignore=shutil.ignore_patterns(".lock"))
    status = json.loads((live / "status.json").read_text())
    status.update(state="running", pid=os.getpid(), ended=None)  # this test's process stands for the trainer
    (live / "status.json").write_text(json.dumps(status))
    with (live / "progress.jsonl").open("a") as progress:
        progress.write(json.dumps({"type": "stage", "stage": "final", "time": status["started"] + 1}) + "\n")
    at = open_page(app, "app_pages/train.py")
    at.selectbox(key="train_watch").set_value(live.name).run()
    assert not at.exception
    shown = " ".join(str(m.value) for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert "Refitting the final model on every interaction" in shown
    assert "The curves below are the rounds of the" in shown and "fit that was validated" in shown
    assert "The final refit on every interaction has no validation data" in shown


def import_again(workspace, trained_workspace, dataset: str, items, interactions, folder, schema: bool) -> None:
    """The run's dataset exported as a bundle of ``items`` and ``interactions`` (with its pictures, and its
    schema.json when ``schema``) and imported again under its name, as a shop re-imports its catalogue."""
    import shutil

    folder.mkdir()
    items.to_csv(folder / "items.csv", index=False)
    interactions.to_csv(folder / "interactions.csv", index=False)
    stored = trained_workspace / "datasets" / dataset
    shutil.copytree(stored / "images", folder / "images")
    if schema:
        shutil.copy(stored / "schema.json", folder / "schema.json")
    assert workspace.import_bundle(folder, name=dataset).ok


def trained_run_and_top_five(trained_workspace) -> tuple:
    """The trained run, its dataset's name, the workspace, the dataset as imported, the run's model, its first
    user and that user's top five (the items a later import then drops or takes off sale)."""
    from recsys.train.records import load_run_model
    from recsys.workspace import Workspace

    run = the_run(trained_workspace)
    dataset = json.loads((run / "status.json").read_text())["dataset"]
    workspace = Workspace(trained_workspace)
    model = load_run_model(run)
    user = str(model.user_ids[0])
    top = {item for item, _ in model.recommend(user, k=5)}
    return run, dataset, workspace, workspace.load_dataset(dataset), model, user, top


def cli_lists(run, user: str, out, workspace) -> tuple[dict, dict, object]:
    """``recommend --json`` for ``user`` and ``export --json`` to ``out`` of ``run``: both answers, and the export's
    process (its stderr holds the notes)."""
    from tests.test_cli import last_json, run_cli

    result = run_cli("recommend", run.name, "--user", user, "--k", "10", "--json", workspace=workspace)
    assert result.returncode == 0, result.stderr
    answer = last_json(result.stdout)
    exported = run_cli("export", run.name, "--k", "10", "--out", str(out), "--json", workspace=workspace)
    assert exported.returncode == 0, exported.stderr
    return answer, last_json(exported.stdout), exported


def test_items_a_later_import_dropped_are_not_recommended(app, trained_workspace, tmp_path):
    """A shop that re-imports its catalogue without discontinued items must not see them recommended by a run
    trained before: the Recommendations page, the CLI and the HTTP API leave them out and say how many."""
    from tests.test_cli import last_json, run_cli

    run, dataset, workspace, bundle, model, user, dropped = trained_run_and_top_five(trained_workspace)
    # the catalogue exported as a bundle without those items (and their interactions), imported under its name
    items, interactions = bundle.items, bundle.interactions
    kept = ~interactions["item_id"].astype(str).isin(dropped)
    import_again(
        workspace,
        trained_workspace,
        dataset,
        items[~items["item_id"].astype(str).isin(dropped)],
        interactions[kept],
        tmp_path / "again",
        schema=True,
    )

    out = tmp_path / "recs.parquet"
    answer, export_answer, result = cli_lists(run, user, out, trained_workspace)
    listed = [row["item_id"] for row in answer["recommendations"]]
    assert len(listed) == 10 and not dropped & set(listed)
    assert answer["items_no_longer_in_catalogue"] == len(dropped)
    assert export_answer["items_no_longer_in_catalogue"] == len(dropped)
    assert "are no longer in dataset" in result.stderr

    exported = pd.read_parquet(out)
    assert len(exported) == 10 * model.n_users and not dropped & set(exported["item_id"].astype(str))

    # a new user who liked what this user has: the model alone would recommend dropped items to them
    from recsys.explain import recommend_for_history

    liked = [str(model.item_ids[i]) for i in model.seen[model.user_index(user)].indices]
    assert dropped & {item for item, _ in recommend_for_history(model, liked, k=10)}
    result = run_cli("recommend-new", run.name, "--like", *liked, "--k", "10", "--json", workspace=trained_workspace)
    assert result.returncode == 0, result.stderr
    assert not dropped & {row["item_id"] for row in last_json(result.stdout)["recommendations"]}

    # the HTTP API: lists without them, refuses them as input, and says how many in /health
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from recsys.serve import create_app

    with TestClient(create_app(trained_workspace, run.name)) as client:
        assert client.get("/health").json()["items_no_longer_in_catalogue"] == len(dropped)
        listed = {row["item_id"] for row in client.get("/recommend", params={"user": user}).json()["recommendations"]}
        assert len(listed) == 10 and not dropped & listed
        gone_item = sorted(dropped)[0]
        answer = client.get("/similar", params={"item": gone_item})
        assert answer.status_code == 404 and "no longer in the catalogue" in answer.json()["detail"]

    at = open_page(app, "app_pages/recommendations.py")
    assert_clean(at)
    notes = " ".join(i.value for i in at.info)
    assert f"{len(dropped)} of the run's items are no longer in the catalogue: they are not recommended" in notes


def test_items_a_later_import_takes_off_sale_are_not_offered(app, trained_workspace, tmp_path):
    """A shop that re-imports its catalogue with products archived since a run trained must not see them offered,
    without training again: the Recommendations page, the CLI and the HTTP API (running since before the import)
    take what is for sale from the import as it is now, and say how many are not."""
    from tests.test_cli import last_json, run_cli

    run, dataset, workspace, bundle, model, user, archived = trained_run_and_top_five(trained_workspace)
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from recsys.serve import ServedRun, create_app

    def api_list(client) -> set[str]:
        return {row["item_id"] for row in client.get("/recommend", params={"user": user}).json()["recommendations"]}

    served = ServedRun(workspace, run.name)
    served.follow_every_s = 0.0  # look at every request
    with TestClient(create_app(trained_workspace, run.name, served=served)) as client:
        assert client.get("/health").json()["items_not_for_sale"] == 0
        assert archived <= api_list(client)
        items = bundle.items.copy()
        items["status"] = ["archived" if item in archived else "active" for item in items["item_id"].astype(str)]
        # the people who bought them did: the interactions stay
        import_again(workspace, trained_workspace, dataset, items, bundle.interactions, tmp_path / "again", False)

        out = tmp_path / "recs.parquet"
        answer, export_answer, _ = cli_lists(run, user, out, trained_workspace)
        listed = [row["item_id"] for row in answer["recommendations"]]
        assert len(listed) == 10 and not archived & set(listed)
        assert answer["items_not_for_sale"] == export_answer["items_not_for_sale"] == len(archived)
        assert not archived & set(pd.read_parquet(out)["item_id"].astype(str))
        liked = [str(model.item_ids[i]) for i in model.seen[model.user_index(user)].indices]
        result = run_cli(
            "recommend-new", run.name, "--like", *liked, "--k", "10", "--json", workspace=trained_workspace
        )
        assert result.returncode == 0, result.stderr
        assert not archived & {row["item_id"] for row in last_json(result.stdout)["recommendations"]}

        # the HTTP API, started before the import, takes it up without a restart
        assert client.get("/health").json()["items_not_for_sale"] == len(archived)
        listed_now = api_list(client)
        assert len(listed_now) == 10 and not archived & listed_now

    at = open_page(app, "app_pages/recommendations.py")
    assert_clean(at)
    captions = " ".join(c.value for c in at.caption)
    assert f"{len(archived)} items the catalogue marks as not for sale" in captions
    notes = " ".join(i.value for i in at.info)
    assert "and so is what is for sale" in notes

    # a visitor may like a product since archived: the picker still offers it, marked, and it is never offered
    at.session_state["rec_mode"] = "A new visitor"
    at.run()
    picker = at.multiselect(key="rec_liked")
    marked = {option.split(" · ")[-1] for option in picker.options if "(not for sale)" in option}
    assert marked == archived & {option.split(" · ")[-1] for option in picker.options} and marked
    liked_label = next(option for option in picker.options if "(not for sale)" in option)
    picker.set_value([liked_label])
    at.run()
    assert_clean(at)
    assert "not for sale" in " ".join(c.value for c in at.caption)
    listed = {c.value.split(" · ")[0] for c in at.caption if " · score " in c.value}  # "D0012 · score 1.925"
    assert len(listed) == 10 and not archived & listed


def test_users_a_later_import_dropped_are_not_served(app, trained_workspace, tmp_path):
    """People left out of a later import of the dataset are not recommended to, exported or listed by a run
    trained before (the run still holds them until it is trained again)."""
    import shutil

    import pandas as pd

    from recsys.train.records import load_run_model
    from recsys.workspace import Workspace
    from tests.test_cli import last_json, run_cli

    run = the_run(trained_workspace)
    dataset = json.loads((run / "status.json").read_text())["dataset"]
    workspace = Workspace(trained_workspace)
    bundle = workspace.load_dataset(dataset)
    model = load_run_model(run)
    import numpy as np

    # the three most active users: the first of the page's user list, were they still listed
    gone = {str(model.user_ids[i]) for i in np.argsort(-np.diff(model.seen.indptr), kind="stable")[:3]}
    folder = tmp_path / "again"
    folder.mkdir()
    bundle.items.to_csv(folder / "items.csv", index=False)
    bundle.interactions[~bundle.interactions["user_id"].astype(str).isin(gone)].to_csv(
        folder / "interactions.csv", index=False
    )
    if bundle.users is not None:
        bundle.users[~bundle.users["user_id"].astype(str).isin(gone)].to_csv(folder / "users.csv", index=False)
    stored = trained_workspace / "datasets" / dataset
    shutil.copytree(stored / "images", folder / "images")
    shutil.copy(stored / "schema.json", folder / "schema.json")
    assert workspace.import_bundle(folder, name=dataset).ok

    user = sorted(gone)[0]
    result = run_cli("recommend", run.name, "--user", user, "--json", workspace=trained_workspace)
    assert result.returncode != 0 and f"user {user} is no longer in dataset {dataset}" in result.stderr
    out = tmp_path / "recs.parquet"
    result = run_cli("export", run.name, "--k", "5", "--out", str(out), "--json", workspace=trained_workspace)
    assert result.returncode == 0, result.stderr
    assert last_json(result.stdout)["users_no_longer_in_dataset_left_out"] == 3
    exported = set(pd.read_parquet(out)["user_id"].astype(str))
    assert not gone & exported and len(exported) == model.n_users - 3

    at = open_page(app, "app_pages/recommendations.py")
    assert_clean(at)
    assert "3 of this run's users are no longer in the dataset" in " ".join(c.value for c in at.caption)
    listed = {str(option).split(" · ")[0] for option in at.selectbox(key="rec_user").options}
    assert listed and not gone & listed
