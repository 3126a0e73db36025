"""Privacy controls: forgetting users (atomically, everywhere in the dataset, runs marked) and pseudonymised imports.

The ids are chosen so that they cannot appear by chance in any file (``user-zz-917``): finding their bytes
anywhere means they leaked.
"""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.cli import main
from recsys.privacy import pseudonym, run_holds_user, workspace_key
from recsys.train.records import load_run_model
from recsys.train.run import RunConfig, list_runs, train_run
from recsys.workspace import UnknownUsers, Workspace
from tests.conftest import REPO_ROOT, png_bytes, write_bundle

GONE = "user-zz-917"
ALSO_GONE = "user-zz-428"
MOSTPOP = dict(model="mostpop", baselines=[], device="cpu")


def shop_bundle(
    folder: Path, n_users: int = 40, n_items: int = 30, per_user: int = 8, seed: int = 3, extras: bool = True
) -> Path:
    """A small shop whose users include GONE and ALSO_GONE, with a users table, pictures and extra material."""
    rng = np.random.default_rng(seed)
    users = [f"user-{i:05d}" for i in range(n_users - 2)] + [GONE, ALSO_GONE]
    rows = {(u, f"item-{int(rng.integers(0, n_items)):04d}") for u in users for _ in range(per_user)}
    interactions = pd.DataFrame(sorted(rows), columns=["user_id", "item_id"])
    interactions["rating"] = rng.integers(1, 6, len(interactions))
    items = pd.DataFrame(
        {
            "item_id": [f"item-{i:04d}" for i in range(n_items)],
            "title": [f"Thing number {i} in the shop" for i in range(n_items)],
            "image_file": [f"images/{i}.png" if i < 3 else "" for i in range(n_items)],
        }
    )
    people = pd.DataFrame({"user_id": users, "city": [["Lyon", "Oslo"][i % 2] for i in range(n_users)]})
    write_bundle(folder, items, interactions, people, images={f"images/{i}.png": png_bytes() for i in range(3)})
    if extras:  # the demo carries a ground-truth table keyed by user, and notes that may name people
        (folder / "ground_truth").mkdir()
        pd.DataFrame({"user_id": users, "taste": ["text"] * n_users}).to_csv(
            folder / "ground_truth" / "users.csv", index=False
        )
        (folder / "README.md").write_text(f"Collected in 2025; {GONE} asked to be left out.\n")
    return folder


def files_with(root: Path, needle: str) -> list[str]:
    """Every file under ``root`` (hidden ones too, Parquet included) whose bytes contain ``needle``."""
    return [
        p.relative_to(root).as_posix()
        for p in sorted(root.rglob("*"))
        if p.is_file() and needle.encode() in p.read_bytes()
    ]


def cli(capsys, *argv: str) -> tuple[int, dict]:
    code = main([*argv, "--json", "--quiet"])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture
def shop(tmp_path) -> tuple[Workspace, Path]:
    workspace = Workspace(tmp_path / "ws")
    bundle = shop_bundle(tmp_path / "bundle")
    assert workspace.import_bundle(bundle, name="shop").ok
    return workspace, bundle


# ----------------------------------------------------------------------------- forget


def test_forget_removes_every_trace_from_the_dataset_and_flags_older_runs(shop, capsys):
    workspace, _ = shop
    train_run(workspace, RunConfig(dataset="shop", **MOSTPOP), run_id="before")
    folder = workspace.dataset_path("shop")
    assert files_with(folder, GONE)  # it was there: the check below can see it
    items_inode = (folder / "items.parquet").stat().st_ino
    before = len(pd.read_parquet(folder / "interactions.parquet"))
    gone_rows = int((pd.read_parquet(folder / "interactions.parquet")["user_id"] == GONE).sum())

    code, result = cli(capsys, "forget", "shop", "--user", GONE, "--workspace", str(workspace.root))
    assert code == 0 and result["ok"] and result["forgotten_users"] == 1
    assert result["interactions_removed"] == gone_rows and result["runs_marked"] == ["before"]
    assert result["files_dropped"] == ["README.md"]  # an opaque note naming them cannot be edited: it goes
    assert GONE not in json.dumps(result)  # the output may end up in logs: counts only

    assert files_with(workspace.datasets_dir, GONE) == []  # the parquet files, the ground truth, the manifest
    assert files_with(workspace.datasets_dir, ALSO_GONE)  # the others stay
    assert (folder / "items.parquet").stat().st_ino == items_inode  # unchanged files are hard-linked, not copied
    assert (folder / "images" / "0.png").is_file()
    bundle = Workspace(workspace.root).load_dataset("shop")
    assert len(bundle.interactions) == before - gone_rows and GONE not in set(bundle.users["user_id"])
    truth = pd.read_csv(folder / "ground_truth" / "users.csv")
    assert GONE not in set(truth["user_id"]) and ALSO_GONE in set(truth["user_id"])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["forgotten"][0]["users"] == 1 and manifest["forgotten"][0]["interactions"] == gone_rows
    assert manifest["counts"]["interactions"] == before - gone_rows

    # the run trained before still embeds them: flagged, with a keyed hash (not the id) to prove it
    [run] = list_runs(workspace)
    assert run.needs_retrain_for_privacy and run.forgotten_users == 1
    assert GONE not in (run.path / "privacy.json").read_text()
    key = workspace_key(workspace.root)
    assert run_holds_user(run.path, key, GONE) and not run_holds_user(run.path, key, ALSO_GONE)
    code, listed = cli(capsys, "runs", "--workspace", str(workspace.root))
    assert listed["runs"][0]["needs_retrain_for_privacy"] is True and listed["runs"][0]["forgotten_users"] == 1

    # until it is retrained, what serves the flagged run leaves them out: export skips them, the API says why
    from fastapi.testclient import TestClient

    from recsys.privacy import forgotten_in
    from recsys.serve import create_app

    assert forgotten_in(run.path, workspace.root, [GONE, ALSO_GONE]) == {GONE}
    out = workspace.root.parent / "recs.parquet"
    code, exported = cli(capsys, "export", "before", "--k", "3", "--out", str(out), "--workspace", str(workspace.root))
    assert code == 0 and exported["forgotten_users_left_out"] == 1
    exported_users = set(pd.read_parquet(out)["user_id"].astype(str))
    assert GONE not in exported_users and ALSO_GONE in exported_users
    client = TestClient(create_app(workspace, "before"))
    refused = client.get("/recommend", params={"user": GONE})
    assert refused.status_code == 404 and "forgotten" in refused.json()["detail"]
    assert client.get("/recommend", params={"user": ALSO_GONE}).status_code == 200

    # a new run on the forgotten dataset excludes them and is not flagged
    train_run(workspace, RunConfig(dataset="shop", **MOSTPOP), run_id="after")
    after = next(r for r in list_runs(workspace) if r.run_id == "after")
    assert not after.needs_retrain_for_privacy
    user_ids = {str(u) for u in load_run_model(after.path).user_ids}
    assert GONE not in user_ids and ALSO_GONE in user_ids
    assert files_with(after.path, GONE) == []

    # forgetting someone else later adds to the same marker (a second forget event, two users in all)
    workspace.forget_users("shop", [ALSO_GONE])
    before_run = next(r for r in list_runs(workspace) if r.run_id == "before")
    assert before_run.forgotten_users == 2 and len(before_run.privacy["forgets"]) == 2
    assert next(r for r in list_runs(workspace) if r.run_id == "after").forgotten_users == 1


def test_an_unknown_user_changes_nothing(shop, capsys):
    workspace, _ = shop
    train_run(workspace, RunConfig(dataset="shop", **MOSTPOP), run_id="before")
    folder = workspace.dataset_path("shop")
    snapshot = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    code, result = cli(
        capsys, "forget", "shop", "--user", GONE, "--user", "nobody-xx-1", "--workspace", str(workspace.root)
    )
    assert code == 1 and not result["ok"]
    assert (
        "nobody-xx-1" in result["error"]
        and "nothing was changed" in result["error"]
        and "already forgotten" in result["error"]
    )
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == snapshot
    assert not (workspace.run_path("before") / "privacy.json").exists()
    with pytest.raises(UnknownUsers):
        workspace.forget_users("shop", ["nobody-xx-1"])
    code, result = cli(capsys, "forget", "nope", "--user", GONE, "--workspace", str(workspace.root))
    assert code == 1 and "no dataset named 'nope'" in result["error"]


# the forget in a process of its own, which says when the imports are done and the forget itself begins
_FORGET_SCRIPT = """
import sys, time
from recsys.workspace import Workspace
workspace = Workspace(sys.argv[1])
print("ready", flush=True)
started = time.perf_counter()
workspace.forget_users("big", [sys.argv[2]])
print(time.perf_counter() - started, flush=True)
"""


def _forget_in_subprocess(root: Path, user: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    process = subprocess.Popen(
        [sys.executable, "-c", _FORGET_SCRIPT, str(root), user],
        cwd=str(REPO_ROOT),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout.readline().strip() == "ready"
    return process


def test_a_sigkill_during_forget_leaves_the_old_or_the_new_dataset(tmp_path):
    # big enough that reading and rewriting the tables takes a moment (a few tenths of a second)
    bundle = shop_bundle(tmp_path / "bundle", n_users=3000, n_items=300, per_user=30, extras=True)
    workspace = Workspace(tmp_path / "ws")
    assert workspace.import_bundle(bundle, name="big").ok
    folder = workspace.dataset_path("big")
    # how long one forget takes here, imports aside: the faster of two, so that one slow first forget (a busy
    # machine) does not stretch every kill's delay past the end of the forgets (all 8 kills then land after
    # them, and the test fails without testing anything)
    timings = []
    for calibration in ("user-00000", "user-00099"):
        process = _forget_in_subprocess(workspace.root, calibration)
        assert process.wait(120) == 0
        timings.append(float(process.stdout.read().strip()))
        process.stdout.close()
    whole = min(timings)
    rng = random.Random(11)
    forgets, outcomes = len(timings), []
    for trial in range(1, 9):
        user = f"user-{trial:05d}"
        frame = pd.read_parquet(folder / "interactions.parquet")
        count, own = len(frame), int((frame["user_id"] == user).sum())
        process = _forget_in_subprocess(workspace.root, user)
        time.sleep(rng.uniform(0.0, 1.2) * whole)  # anywhere in the forget, and now and then just after it
        process.send_signal(signal.SIGKILL)
        process.wait(60)
        process.stdout.close()
        reopened = Workspace(workspace.root)  # puts back a dataset caught between the two renames
        [info] = reopened.list_datasets()
        assert info.damaged is None
        after = reopened.load_dataset("big").interactions
        manifest = json.loads((folder / "manifest.json").read_text())
        assert len(after) in (count, count - own)
        finished = len(after) == count - own
        assert (user in set(after["user_id"])) is not finished  # never a mix
        assert manifest["counts"]["interactions"] == len(after)
        forgets += finished
        assert len(manifest["forgotten"]) == forgets  # the manifest agrees with the tables
        outcomes.append(finished)
    assert not all(outcomes)  # at least one kill landed inside a forget
    assert [p.name for p in workspace.datasets_dir.iterdir() if p.name.startswith(".trash-")] == []


# ----------------------------------------------------------------------------- pseudonymise


def test_pseudonymised_import_stores_no_raw_id_and_recommends_the_same(tmp_path, capsys):
    bundle = shop_bundle(tmp_path / "bundle", extras=True)
    (bundle / "README.md").unlink()  # an opaque note is copied as it is (see the docs): keep the check about ids
    raw_ids = list(pd.read_csv(bundle / "interactions.csv")["user_id"].unique())
    plain, private = Workspace(tmp_path / "plain"), Workspace(tmp_path / "private")
    assert plain.import_bundle(bundle, name="shop").ok
    code, result = cli(
        capsys, "import", str(bundle), "--name", "shop", "--pseudonymise", "--workspace", str(private.root)
    )
    assert code == 0 and result["pseudonymised"] is True
    key_file = private.root / ".secret" / "pseudonym.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_bytes()
    # splits and model rows are keyed by what users did, never by their ids (users_in_history_order), so every
    # model, the fusion model's sampled gate training included, comes out the same up to the renaming
    configs = {
        "mostpop": dict(model="mostpop", baselines=[]),
        "ease": dict(model="ease", baselines=[]),
        "fusion": dict(
            model="fusion", baselines=["ease"], modalities=["behaviour", "text"], fusion_options={"epochs": 3}
        ),
    }
    for name, config in configs.items():
        for workspace in (plain, private):
            train_run(workspace, RunConfig(dataset="shop", device="cpu", seed=7, **config), run_id=f"{name}-run")

    leaks = {user: files_with(private.root, user) for user in raw_ids}
    assert {u: f for u, f in leaks.items() if f} == {}  # not in the dataset, the run, the key or anywhere else
    stored = private.load_dataset("shop")
    assert set(stored.interactions["user_id"]) == {pseudonym(key, u) for u in raw_ids}
    assert all(u.startswith("u_") and len(u) == 18 for u in stored.users["user_id"])
    assert json.loads((private.dataset_path("shop") / "manifest.json").read_text())["pseudonymised"]
    for run in list_runs(private):
        assert not files_with(run.path, key.hex()) and key not in b"".join(
            p.read_bytes() for p in run.path.rglob("*") if p.is_file()
        )

    # the same raw id gets the same pseudonym in a second import of this workspace
    assert private.import_bundle(bundle, name="again", pseudonymise=True).ok
    assert set(private.load_dataset("again").interactions["user_id"]) == set(stored.interactions["user_id"])

    for name in configs:
        plain_model = load_run_model(plain.run_path(f"{name}-run"))
        private_model = load_run_model(private.run_path(f"{name}-run"))
        assert sorted(pseudonym(key, u) for u in plain_model.user_ids) == sorted(private_model.user_ids)
        for user in plain_model.user_ids:
            expected = plain_model.recommend(user, k=30)  # every unseen item, in order, with its score
            got = private_model.recommend(pseudonym(key, user), k=30)
            assert [i for i, _ in got] == [i for i, _ in expected] and len(got) > 10, (name, user)
            assert np.allclose([s for _, s in got], [s for _, s in expected], atol=1e-6), (name, user)
        plain_metrics = json.loads((plain.run_path(f"{name}-run") / "metrics.json").read_text())
        private_metrics = json.loads((private.run_path(f"{name}-run") / "metrics.json").read_text())
        assert plain_metrics["split"] == private_metrics["split"], name
        assert plain_metrics["model"]["test"] == private_metrics["model"]["test"], name  # same split, same evaluation

    # forget takes the raw id on a pseudonymised dataset (and the pseudonym itself)
    code, result = cli(
        capsys, "forget", "shop", "--user", GONE, "--user", pseudonym(key, ALSO_GONE), "--workspace", str(private.root)
    )
    assert code == 0 and result["forgotten_users"] == 2 and result["pseudonymised"] is True
    left = set(private.load_dataset("shop").interactions["user_id"])
    assert pseudonym(key, GONE) not in left and pseudonym(key, ALSO_GONE) not in left
    assert files_with(private.dataset_path("shop"), pseudonym(key, GONE)) == []
    runs = [r for r in list_runs(private) if r.dataset == "shop"]
    assert len(runs) == len(configs)
    assert all(r.needs_retrain_for_privacy and run_holds_user(r.path, key, pseudonym(key, GONE)) for r in runs)


def test_a_pseudonymised_import_does_not_store_ignored_user_columns(tmp_path):
    """Pseudonyms beside a raw e-mail would be no pseudonyms: with pseudonymise on, a users or interactions
    column marked ignore is not written (kept columns are, and the dataset loads and trains as before)."""
    bundle = shop_bundle(tmp_path / "bundle", extras=False)
    people = pd.read_csv(bundle / "users.csv")
    people["email"] = [f"{u}@example.org" for u in people["user_id"]]
    people.to_csv(bundle / "users.csv", index=False)
    schema = {"users": {"email": "ignore"}, "interactions": {"rating": "ignore"}}
    plain, private = Workspace(tmp_path / "plain"), Workspace(tmp_path / "private")
    assert plain.import_bundle(bundle, name="shop", schema=schema).ok
    assert private.import_bundle(bundle, name="shop", schema=schema, pseudonymise=True).ok
    assert "email" in pd.read_parquet(plain.dataset_path("shop") / "users.parquet").columns  # hidden, stored
    stored = private.load_dataset("shop")
    assert "email" not in stored.users.columns and "city" in stored.users.columns
    assert "rating" not in stored.interactions.columns
    assert files_with(private.root, "@example.org") == []
    train_run(private, RunConfig(dataset="shop", model="mostpop", baselines=[], device="cpu"), run_id="after")
    assert json.loads((private.run_path("after") / "status.json").read_text())["state"] == "finished"


def test_e_mail_addresses_as_user_ids_are_warned_of_unless_pseudonymised(tmp_path):
    """An orders export without a customers table names its users by e-mail: the import says that every page
    and export would show the addresses, and how to store pseudonyms instead."""
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["Tee", "Mug", "Cap"]})
    orders = pd.DataFrame(
        {"Email": ["ann@web.de", "ann@web.de", "bob@mail.com", "cy@x.org"], "Lineitem sku": ["a", "b", "c", "a"]}
    )
    bundle = write_bundle(tmp_path / "orders", items, orders)
    workspace = Workspace(tmp_path / "ws")
    plain = workspace.import_bundle(bundle, name="orders")
    assert plain.ok and "email_user_ids" in plain.report.codes("warning")
    assert set(workspace.load_dataset("orders").interactions["user_id"]) == {"ann@web.de", "bob@mail.com", "cy@x.org"}
    private = workspace.import_bundle(bundle, name="private", pseudonymise=True)
    assert private.ok and "email_user_ids" not in private.report.codes("warning")
    assert not any("@" in u for u in workspace.load_dataset("private").interactions["user_id"])
