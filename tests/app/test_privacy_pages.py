"""Privacy in the app: runs that hold forgotten users are listed with a one-click Retrain; user columns marked
``ignore`` are never handed to a page."""

from __future__ import annotations

import pandas as pd

from recsys.data import stats
from recsys.data.schema import visible_users
from recsys.privacy import read_marker
from recsys.train.run import RunConfig, train_run
from recsys.workspace import Workspace
from tests.app.conftest import assert_clean
from tests.conftest import write_bundle
from tests.data.test_privacy import ALSO_GONE, GONE, shop_bundle


def test_experiments_and_train_pages_offer_to_retrain_a_run_holding_forgotten_users(app, tmp_path, monkeypatch):
    workspace = Workspace(tmp_path / "ws")
    assert workspace.import_bundle(shop_bundle(tmp_path / "bundle"), name="shop").ok
    train_run(workspace, RunConfig(dataset="shop", model="mostpop", baselines=[], device="cpu"), run_id="old-run")
    workspace.forget_users("shop", [GONE])
    monkeypatch.setenv("RECSYS_WORKSPACE", str(workspace.root))
    started = []

    def fake_start(ws, config, run_id=None):  # no background training in a page test
        started.append(config)
        return "new-run"

    monkeypatch.setattr("recsys.train.launch.start_run", fake_start)
    for page in ("app_pages/train.py", "app_pages/experiments.py"):
        app.switch_page(page)
        app.run()
        assert_clean(app)
        assert "must be retrained" in " ".join(m.value for m in app.markdown)
    # the Recommendations page does not offer the forgotten user, and says why the run still holds them
    app.switch_page("app_pages/recommendations.py")
    app.run()
    assert_clean(app)
    assert "forgotten" in " ".join(w.value for w in app.warning)
    options = [str(o) for o in app.selectbox(key="rec_user").options]
    assert options and not any(GONE in o for o in options)
    assert any(ALSO_GONE in o for o in options)  # the others are still offered
    app.switch_page("app_pages/experiments.py")
    app.run()
    button = app.button(key="exp_retrain_old-run")
    button.click().run()
    assert [c.dataset for c in started] == ["shop"] and started[0].model == "mostpop"
    assert read_marker(workspace.run_path("old-run"))["retrained_as"] == ["new-run"]
    assert "retrained as `new-run`" in " ".join(m.value for m in app.markdown)


def test_user_columns_marked_ignore_are_never_shown(tmp_path):
    users = pd.DataFrame(
        {"user_id": ["u1", "u2", "u3"], "email": ["a@x.org", "b@x.org", "c@x.org"], "city": ["Lyon", "Oslo", "Lyon"]}
    )
    items = pd.DataFrame({"item_id": ["a", "b"], "title": ["Kettle", "Boots"]})
    interactions = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "item_id": ["a", "b", "a"]})
    bundle = write_bundle(tmp_path / "b", items, interactions, users)
    schema = {"users": {"email": "ignore"}}
    workspace = Workspace(tmp_path / "ws")
    assert workspace.import_bundle(bundle, name="shop", schema=schema).ok
    stored = workspace.load_dataset("shop")
    assert "email" in stored.users.columns  # the engine keeps the data; the app does not show it
    shown = visible_users(stored.users, stored.schema)
    assert list(shown.columns) == ["user_id", "city"]
    assert visible_users(stored.users, stored.schema.to_dict()).columns.tolist() == ["user_id", "city"]

    from app_pages.common import _load_frames  # the one place pages read datasets through

    frames = _load_frames(str(workspace.root), "shop", "stamp")
    assert "email" not in frames[2].columns and "city" in frames[2].columns
    table = stats.role_table(
        {"items": items, "interactions": interactions, "users": users}, {"users": {"email": "ignore"}}
    )
    row = table[(table["table"] == "users") & (table["column"] == "email")].iloc[0]
    assert row["role"] == "ignore" and row["example"] == ""
