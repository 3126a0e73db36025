"""A small demo catalog, imported and trained once for every explanation test (session scope)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    from recsys.data.demo import demo_ground_truth, generate_demo_bundle
    from recsys.explain.commands import load_run
    from recsys.train.run import RunConfig, train_run
    from recsys.workspace import Workspace

    root = tmp_path_factory.mktemp("explain-demo")
    bundle_dir = generate_demo_bundle(root / "bundle", n_users=200, n_items=150, n_interactions=5000)
    workspace = Workspace(root / "workspace")
    imported = workspace.import_bundle(bundle_dir, name="demo")
    assert imported.ok, imported.report.format()
    config = RunConfig(dataset="demo", fusion_options={"epochs": 15}, text_encoder="tfidf", baselines=[])
    run_dir = train_run(workspace, config, run_id="fusion")
    _, model, bundle, _ = load_run(workspace, "fusion")
    users_truth, items_truth = demo_ground_truth(bundle_dir)
    return SimpleNamespace(
        root=root,
        bundle_dir=bundle_dir,
        workspace=workspace,
        run_dir=run_dir,
        model=model,
        bundle=bundle,
        config=config,
        users_truth=users_truth,
        items_truth=items_truth.set_index("item_id"),
    )


@pytest.fixture(scope="session")
def demo_context(demo_run):
    from recsys.explain.explainer import ExplainContext

    bundle = demo_run.bundle
    return ExplainContext(
        demo_run.model,
        bundle.items,
        bundle.schema.items,
        interactions=bundle.interactions,
        rating_column=bundle.schema.rating_column,
    )


@pytest.fixture(scope="session")
def demo_features(demo_run):
    """The demo catalog's item features (cached by the training run, so this is fast)."""
    from recsys.features import extract_item_features

    bundle = demo_run.bundle
    return extract_item_features(
        bundle.items,
        bundle.schema.items,
        bundle.root,
        demo_run.workspace.features_dir,
        text_encoder="tfidf",
        image_encoder=demo_run.config.image_encoder,
    )


@pytest.fixture(scope="session")
def cold_split(demo_run, demo_features):
    """The P1 cold-start split (10 % of items held out) with fusion, mostpop, bpr and content fitted on it."""
    from recsys.models import get_model
    from recsys.train.data import prepare_data

    bundle = demo_run.bundle
    prepared = prepare_data(
        bundle.interactions,
        protocol="cold",
        seed=2026,
        item_features=demo_features,
        catalogue_ids=bundle.items["item_id"].to_numpy(str),
    )
    models = {}
    for name in ("fusion", "mostpop", "bpr", "content"):
        options = demo_run.config.model_options() if name == "fusion" else {}
        models[name] = get_model(name, **options).fit(prepared.data)
    return SimpleNamespace(prepared=prepared, models=models)
