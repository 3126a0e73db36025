"""Real catalogues are sparse: the protocol is checked before anything expensive, and the whole catalogue
stays recommendable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recsys.models import Recommender
from recsys.train.data import preflight, prepare_data, resolve_protocol
from recsys.train.run import RunConfig, read_progress, read_status, train_run
from recsys.workspace import Workspace
from tests.conftest import write_sparse_shop_bundle


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("shop")
    workspace = Workspace(root / "ws")
    result = workspace.import_bundle(write_sparse_shop_bundle(root / "bundle"), name="shop")
    assert result.ok, result.report.format()
    return workspace


def test_the_shop_bundle_is_as_sparse_as_real_catalogues(shop):
    bundle = shop.load_dataset("shop")
    check = preflight(bundle.interactions)
    assert check["median_interactions_per_user"] <= 5
    assert check["protocols"]["p1"]["interactions"] == 0  # a 5-core filter keeps nothing
    assert check["auto"] == "sparse" and "5-core" in check["reason"]
    whole = preflight(bundle.interactions, catalogue_items=len(bundle.items))
    assert whole["protocols"]["sparse"]["items"] == len(bundle.items)
    with pytest.raises(ValueError, match="keeps no interactions"):
        resolve_protocol("p1", check)


def test_code_columns_are_labels_or_duplicates(shop):
    roles = shop.load_dataset("shop").schema.items
    assert roles["graphical_appearance_no"] == "categorical"  # a code, not an amount
    assert roles["department_no"] == "ignore" and roles["colour_group_code"] == "ignore"  # same as their names
    assert roles["price"] == "numeric"


def test_an_infeasible_protocol_is_refused_before_feature_extraction(shop):
    with pytest.raises(ValueError, match="keeps no interactions"):
        train_run(shop, RunConfig(dataset="shop", protocol="p1", baselines=[], device="cpu"), run_id="refused")
    run_dir = shop.runs_dir / "refused"
    assert read_status(run_dir)["state"] == "failed"
    stages = [e.get("stage") for e in read_progress(run_dir) if e["type"] == "stage"]
    assert "features" not in stages  # refused before the expensive step


@pytest.mark.slow  # default settings: pretrained text and picture encoders, every epoch
def test_default_settings_train_to_the_end_and_every_item_is_scorable(shop):
    run_dir = train_run(shop, RunConfig(dataset="shop", device="cpu"), run_id="defaults")
    assert read_status(run_dir)["state"] == "finished"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["preflight"]["chosen"] == "sparse"
    catalogue = shop.load_dataset("shop").items
    assert metrics["split"]["items"] == len(catalogue)  # no item was filtered out
    assert set(metrics["baselines"]) == {"mostpop", "ease"}
    model = Recommender.load(run_dir / "model")
    assert model.n_items == len(catalogue) and model.scores_cold_items
    scores = model.score(np.arange(model.n_users))
    assert np.isfinite(scores).all()
    never_bought = ~model.item_presence()[:, 0]
    assert never_bought.any()  # items nobody bought in training are still ranked, from their content
    assert scores[:, never_bought].std() > 0
    # the product view: the final model hides everything a user had, in any split
    had = shop.load_dataset("shop").interactions.groupby("user_id")["item_id"].apply(set)
    for user in list(had.index)[:60]:
        recommended = {item for item, _ in model.recommend(user, k=30)}
        assert not recommended & had[user], user


@pytest.mark.slow  # an interpreter with torch starts (about 30 s on 2 busy cores)
def test_import_check_reports_what_each_protocol_keeps(shop, tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    bundle = write_sparse_shop_bundle(tmp_path / "again")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "recsys",
            "import",
            str(bundle),
            "--check",
            "--json",
            "--workspace",
            str(tmp_path / "ws"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    protocols = json.loads(done.stdout.strip().splitlines()[-1])["protocols"]
    assert protocols["auto"] == "sparse" and protocols["p1"]["interactions"] == 0
    assert protocols["sparse"]["items"] == 240 and protocols["sparse"]["evaluated_users"] > 0


def test_sparse_split_keeps_every_item_and_evaluates_users_with_three_or_more(shop):
    bundle = shop.load_dataset("shop")
    prepared = prepare_data(bundle.interactions, protocol="sparse", catalogue_ids=bundle.items["item_id"].to_numpy(str))
    assert prepared.data.n_items == len(bundle.items)
    counts = np.diff(prepared.data.train.indptr) + np.diff(prepared.test.indptr) + np.diff(prepared.valid.indptr)
    tested = np.diff(prepared.test.indptr) > 0
    assert (counts[tested] >= 3).all() and tested.sum() == (counts >= 3).sum()


@pytest.mark.slow  # trains on a real dataset
def test_amazon_giftcards_every_item_is_recommendable_and_nothing_a_user_had_comes_back(giftcards, tmp_path):
    workspace = Workspace(tmp_path / "ws")
    assert workspace.import_bundle(giftcards, name="giftcards").ok
    bundle = workspace.load_dataset("giftcards")
    run_dir = train_run(
        workspace,
        RunConfig(
            dataset="giftcards",
            modalities=["behaviour", "text", "attributes"],
            text_encoder="tfidf",
            baselines=["ease"],
            device="cpu",
        ),
        run_id="giftcards",
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["split"]["items"] == len(bundle.items) == 148  # the 5-core filter drops one item: it stays
    model = Recommender.load(run_dir / "model")
    assert model.n_items == len(bundle.items) and model.scores_cold_items
    assert np.isfinite(model.score(np.arange(model.n_users))).all()
    had = bundle.interactions.groupby("user_id")["item_id"].apply(lambda s: set(s.astype(str)))
    assert set(model.user_ids) == set(had.index)  # every user, also those the evaluation filtered out
    for user in had.index:
        assert not {item for item, _ in model.recommend(user, k=20)} & had[user], user


def test_items_the_catalogue_does_not_sell_reach_the_training_data_marked(shop):
    """The training run marks the items the catalogue says are not for sale (their ids go from the items table
    through prepare_data to TrainData.not_for_sale, which the model keeps): a bundle without such a column marks
    none, one whose "status" archives two items marks exactly those."""
    from recsys.train.run import not_for_sale_ids

    bundle = shop.load_dataset("shop")
    assert not_for_sale_ids(bundle.items) == []
    items = bundle.items.assign(status="active")
    items.loc[items.index[:2], "status"] = "archived"
    archived = not_for_sale_ids(items)
    assert archived == items["item_id"].astype(str).tolist()[:2]
    prepared = prepare_data(
        bundle.interactions,
        protocol="sparse",
        catalogue_ids=items["item_id"].to_numpy(str),
        not_for_sale_ids=archived,
    )
    marked = prepared.data.not_for_sale
    assert marked is not None and set(prepared.data.item_ids[marked]) == set(archived)
