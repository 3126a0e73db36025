"""Training runs: the run folder, clean stops on SIGTERM, kills, resume, and the CLI around them."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from recsys.data.demo import generate_demo_bundle
from recsys.models import Recommender
from recsys.train.checkpoint import load_checkpoint, save_checkpoint
from recsys.train.run import RunConfig, list_runs, read_progress, read_status, train_run
from recsys.workspace import Workspace
from tests.conftest import REPO_ROOT

SMALL_RUN = ["--modalities", "behaviour", "text", "attributes", "--text-encoder", "tfidf", "--device", "cpu"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    bundle = generate_demo_bundle(root / "bundle", n_users=150, n_items=100, n_interactions=3500, seed=5)
    workspace = Workspace(root / "ws")
    assert workspace.import_bundle(bundle, name="demo").ok
    return workspace


def start_training(workspace, run_id, *extra):
    command = [
        sys.executable,
        "-m",
        "recsys",
        "train",
        "--workspace",
        str(workspace.root),
        "--data",
        "demo",
        "--run-id",
        run_id,
        *SMALL_RUN,
        "--baselines",
        "mostpop",
        *extra,
    ]
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_epoch(run_dir, process, count=1, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if sum(e["type"] == "epoch" for e in read_progress(run_dir)) >= count:
            return
        if process.poll() is not None:
            raise AssertionError(f"training ended early: {process.stderr.read()}")
        time.sleep(0.5)
    raise AssertionError("no epoch finished in time")


def test_finished_run_folder(workspace):
    run_dir = train_run(
        workspace,
        RunConfig(
            dataset="demo",
            modalities=["behaviour", "text", "attributes"],
            text_encoder="tfidf",
            fusion_options={"epochs": 4},
            baselines=["mostpop", "ease"],
            device="cpu",
        ),
        run_id="complete",
    )
    status = read_status(run_dir)
    assert status["state"] == "finished"
    # which import of the dataset it trained on (a later import under the same name replaces it)
    assert status["dataset_imported_at"] == workspace.dataset_imported_at("demo") is not None
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["baselines"]) == {"mostpop", "ease"}
    assert 0 < metrics["model"]["test"]["ndcg@20"] < 1
    kinds = [event["type"] for event in read_progress(run_dir)]
    assert kinds.count("epoch") >= 1 and kinds[-1] == "end"
    assert not (run_dir / "checkpoint").exists()
    model = Recommender.load(run_dir / "model")
    assert len(model.recommend(model.user_ids[0], k=5)) == 5
    assert [r.run_id for r in list_runs(workspace)][0] == "complete"


def test_p1_evaluates_the_k_core_but_the_product_covers_every_item_and_user(workspace):
    """Filters decide who is evaluated, never which items exist: the k-core run's final model scores the
    whole catalogue (content for the rare items) and never recommends anything a user had, in any split."""
    bundle = workspace.load_dataset("demo")
    catalogue = bundle.items["item_id"].astype(str)
    run_dir = train_run(
        workspace,
        RunConfig(
            dataset="demo",
            modalities=["behaviour", "text", "attributes"],
            text_encoder="tfidf",
            fusion_options={"epochs": 3},
            k_core=12,
            protocol="p1",
            baselines=["ease"],
            device="cpu",
        ),
        run_id="whole-catalogue",
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    split = metrics["split"]
    assert split["items"] == len(catalogue) > split["items_with_interactions"]  # the 12-core dropped some
    assert split["users"] < bundle.interactions["user_id"].nunique()  # and some users are not evaluated
    model = Recommender.load(run_dir / "model")
    assert sorted(model.item_ids) == sorted(catalogue)
    assert sorted(model.user_ids) == sorted(bundle.interactions["user_id"].astype(str).unique())
    assert metrics["final_model"]["items"] == len(catalogue)
    scores = model.score(np.arange(model.n_users))
    assert np.isfinite(scores).all() and (scores.std(axis=0) > 0).all()  # every item is scored per user
    had = bundle.interactions.groupby("user_id")["item_id"].apply(lambda s: set(s.astype(str)))
    for user in had.index:
        recommended = {item for item, _ in model.recommend(user, k=20)}
        assert not recommended & had[user], user


@pytest.mark.slow  # real training subprocesses
def test_sigterm_stops_cleanly_and_keeps_the_best_checkpoint(workspace):
    process = start_training(workspace, "stopped", "--epochs", "40", "--patience", "500")
    run_dir = workspace.runs_dir / "stopped"
    wait_for_epoch(run_dir, process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=600) == 0, process.stderr.read()
    assert read_status(run_dir)["state"] == "stopped"
    model = Recommender.load(run_dir / "model")
    assert np.isfinite(model.score(np.arange(3))).all()
    assert not (run_dir / "metrics.json").exists()  # a stop does not wait for an evaluation: resume does it
    assert (run_dir / "checkpoint" / "structure.json").is_file()  # resumable

    resumed = subprocess.run(
        [sys.executable, "-m", "recsys", "train", "--workspace", str(workspace.root), "--resume", "stopped", "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    # the stopped run continues from its checkpoint up to its 40-epoch limit
    assert resumed.returncode == 0, resumed.stderr
    events = read_progress(run_dir)
    resumed_at = [e for e in events if e.get("stage") == "resume"]
    assert resumed_at and resumed_at[0]["epoch"] >= 0
    assert read_status(run_dir)["state"] == "finished"
    assert (run_dir / "metrics.json").is_file()


@pytest.mark.slow  # real training subprocesses
def test_killed_training_leaves_the_workspace_readable(workspace):
    process = start_training(workspace, "killed", "--epochs", "500", "--patience", "500")
    run_dir = workspace.runs_dir / "killed"
    wait_for_epoch(run_dir, process)
    process.kill()
    process.wait(timeout=60)
    assert read_status(run_dir)["state"] == "interrupted"
    if (run_dir / "model" / "config.json").is_file():  # the last best checkpoint, written atomically
        assert np.isfinite(Recommender.load(run_dir / "model").score(np.arange(2))).all()
    assert any(r.run_id == "killed" for r in list_runs(workspace))
    assert workspace.load_dataset("demo").items.shape[0] == 100


def test_checkpoint_roundtrip_without_pickle(tmp_path):
    import torch

    state = {
        "network": {"w": torch.arange(6.0).reshape(2, 3)},
        "optimiser": {
            "state": {0: {"step": torch.tensor(3.0)}},
            "param_groups": [{"lr": 0.01, "betas": [0.9, 0.999], "params": [0]}],
        },
        "epoch": 4,
        "best": {"ndcg@20": float("nan"), "epoch": -1, "state": None},
    }
    save_checkpoint(tmp_path / "ckpt", state)
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert torch.equal(loaded["network"]["w"], state["network"]["w"])
    assert loaded["optimiser"]["state"][0]["step"].item() == 3.0
    assert loaded["epoch"] == 4 and loaded["best"]["state"] is None
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["structure.json", "tensors.safetensors"]


@pytest.mark.slow  # real training subprocesses
def test_cli_train_evaluate_recommend(workspace):
    def cli(*args):
        done = subprocess.run(
            [sys.executable, "-m", "recsys", *args, "--workspace", str(workspace.root), "--json"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        return done, json.loads(done.stdout.strip().splitlines()[-1])

    done, result = cli("train", "--data", "demo", "--model", "ease", "--baselines", "mostpop", "--run-id", "ease-run")
    assert done.returncode == 0, done.stderr
    assert result["metrics"]["model"]["test"]["ndcg@20"] > result["metrics"]["baselines"]["mostpop"]["test"]["ndcg@20"]
    assert f"protocol {result['metrics']['split']['protocol']}: " in done.stdout  # which split the table is on
    # the two compared user by user: the means of the table, their ratio, an interval around the difference
    paired = result["metrics"]["paired"]["mostpop"]["ndcg@20"]
    assert paired["ours"] == pytest.approx(result["metrics"]["model"]["test"]["ndcg@20"])
    assert paired["theirs"] == pytest.approx(result["metrics"]["baselines"]["mostpop"]["test"]["ndcg@20"])
    assert paired["ratio"] == pytest.approx(paired["ours"] / paired["theirs"])
    assert paired["interval_95"][0] <= paired["mean_difference"] <= paired["interval_95"][1]
    done, result = cli("evaluate", "ease-run")
    assert done.returncode == 0 and result["state"] == "finished"
    model = Recommender.load(workspace.runs_dir / "ease-run" / "model")
    done, result = cli("recommend", "ease-run", "--user", str(model.user_ids[0]), "--k", "3")
    assert done.returncode == 0 and len(result["recommendations"]) == 3
    seen = set(model.item_ids[model.seen[0].indices])
    assert not seen & {r["item_id"] for r in result["recommendations"]}
    done, result = cli("recommend", "ease-run", "--user", str(model.user_ids[0]), "--k", "2", "--explain")
    assert done.returncode == 0, done.stderr
    assert all(r["explanation"]["sentence"] for r in result["recommendations"])
    done, result = cli("recommend", "ease-run", "--user", "nobody")
    assert done.returncode == 1 and "unknown user 'nobody'" in done.stderr
    done, result = cli("train", "--data", "no-such-dataset")
    assert done.returncode == 1 and "no dataset named 'no-such-dataset'" in done.stderr


@pytest.mark.slow  # real training subprocesses
def test_kfold_cross_validation_reports_mean_std_and_paired_differences(workspace):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "recsys",
            "train",
            "--workspace",
            str(workspace.root),
            "--data",
            "demo",
            "--run-id",
            "kfold",
            *SMALL_RUN,
            "--protocol",
            "kfold",
            "--folds",
            "3",
            "--epochs",
            "3",
            "--baselines",
            "mostpop",
            "ease",
            "--json",
            "--quiet",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])["metrics"]
    assert result["split"]["protocol"] == "kfold" and result["kfold"]["completed"] == 3
    for name in ("fusion", "mostpop", "ease"):
        folds = result["per_fold"][name]
        assert len(folds) == 3
        row = result["model"] if name == "fusion" else result["baselines"][name]
        assert row["test"]["ndcg@20"] == pytest.approx(np.mean([f["ndcg@20"] for f in folds]))
        assert row["test_std"]["ndcg@20"] == pytest.approx(np.std([f["ndcg@20"] for f in folds], ddof=1))
    paired = result["kfold"]["paired"]["ease"]["ndcg@20"]
    differences = [
        a["ndcg@20"] - b["ndcg@20"] for a, b in zip(result["per_fold"]["fusion"], result["per_fold"]["ease"])
    ]
    assert paired["mean_difference"] == pytest.approx(np.mean(differences))
    low, high = paired["interval_95"]
    assert low <= paired["mean_difference"] <= high
    assert paired["clear_at_95"] == (low > 0 or high < 0)

    from recsys.train.report import fold_table, paired_table

    metrics = json.loads((workspace.runs_dir / "kfold" / "metrics.json").read_text())
    assert len(fold_table(metrics)) == 3 and set(paired_table(metrics)["Against"]) == {"MostPop", "EASE"}
    printed = subprocess.run(
        [sys.executable, "-m", "recsys", "evaluate", "kfold", "--workspace", str(workspace.root)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert "± std" in printed.stdout and "ndcg@20 minus ease" in printed.stdout


def test_a_stopped_cross_validation_is_refused_a_resume_and_stays_stopped(workspace):
    # a cross-validation keeps no checkpoint of its folds: resuming one used to start a process that failed at
    # once and left the run "failed" (its partial model then hidden); both the launcher and the trainer now
    # refuse it before the status is touched
    from recsys.atomic import atomic_write_json
    from recsys.train.launch import RunNotResumable, resume_run
    from recsys.train.run import write_status

    run_id = "kfold-stopped"
    run_dir = workspace.runs_dir / run_id
    run_dir.mkdir(parents=True)
    config = RunConfig(dataset="demo", protocol="kfold", folds=3)
    atomic_write_json(run_dir / "config.json", {"run_id": run_id, "config": config.to_dict()})
    write_status(run_dir, state="stopped", started=time.time() - 60, ended=time.time())
    with pytest.raises(RunNotResumable, match="cross-validation run cannot be resumed"):
        resume_run(workspace, run_id)
    with pytest.raises(RunNotResumable, match="cross-validation run cannot be resumed"):
        train_run(workspace, config, run_id=run_id, resume=True)
    assert read_status(run_dir)["state"] == "stopped"
    assert not (workspace.runs_dir / ".launch" / f"{run_id}.json").exists()  # no process was started


def test_kfold_folds_test_every_interaction_exactly_once(workspace):
    from recsys.train.data import prepare_data

    interactions = workspace.load_dataset("demo").interactions
    tested = []
    for fold in range(4):
        prepared = prepare_data(interactions, protocol="kfold", fold=fold, folds=4, k_core=1)
        test, train, valid = prepared.test, prepared.data.train, prepared.valid
        assert (test.multiply(train).nnz, test.multiply(valid).nnz, train.multiply(valid).nnz) == (0, 0, 0)
        ids = np.asarray(prepared.data.item_ids)
        users = np.asarray(prepared.data.user_ids)
        coo = test.tocoo()
        tested += list(zip(users[coo.row], ids[coo.col]))
    pairs = set(map(tuple, interactions[["user_id", "item_id"]].astype(str).drop_duplicates().to_numpy()))
    assert len(tested) == len(set(tested)) == len(pairs) and set(tested) == pairs


def test_eval_users_evaluates_the_model_and_its_baselines_on_one_seeded_sample(workspace):
    """A large catalogue's full-ranking evaluation is sampled: the model and every baseline on the same users,
    and a sample of everyone is the full evaluation."""
    from recsys.train.data import prepare_data
    from recsys.train.run import evaluation_sample

    config = RunConfig(
        dataset="demo",
        model="ease",
        baselines=["mostpop"],
        eval_users=40,
        final_model=False,
        modalities=["behaviour"],
        device="cpu",
    )

    def metrics_of(run_dir):
        return json.loads((run_dir / "metrics.json").read_text())

    metrics = metrics_of(train_run(workspace, config, run_id="sampled"))
    assert metrics["model"]["test"]["n_users_evaluated"] == 40
    assert metrics["baselines"]["mostpop"]["test"]["n_users_evaluated"] == 40
    # the model and each baseline compared user by user on those same users
    paired = metrics["paired"]["mostpop"]["ndcg@20"]
    assert paired["users"] == 40
    assert paired["ours"] == pytest.approx(metrics["model"]["test"]["ndcg@20"])
    assert paired["theirs"] == pytest.approx(metrics["baselines"]["mostpop"]["test"]["ndcg@20"])
    low, high = paired["interval_95"]
    assert low <= paired["mean_difference"] <= high
    everyone = metrics_of(train_run(workspace, dataclasses.replace(config, eval_users=0), run_id="everyone"))
    assert everyone["model"]["test"]["n_users_evaluated"] > 40
    whole = metrics_of(train_run(workspace, dataclasses.replace(config, eval_users=10_000), run_id="whole"))
    assert whole["model"]["test"] == everyone["model"]["test"]
    bundle = workspace.load_dataset("demo")
    prepared = prepare_data(bundle.interactions)
    first, again = evaluation_sample(prepared, config), evaluation_sample(prepared, config)
    assert len(first) == 40 and np.array_equal(first, again)
