"""A run killed after its fit ended is not fitted again: resume loads the saved model and does only the
evaluation that is left; a run killed after its last result was written reads as finished."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from recsys.data.demo import generate_demo_bundle
from recsys.train import run as run_module
from recsys.train.lock import LOCK_NAME
from recsys.train.run import RunConfig, list_runs, read_progress, read_status, train_run
from recsys.workspace import Workspace

SMALL = dict(
    dataset="demo",
    modalities=["behaviour", "text", "attributes"],
    text_encoder="tfidf",
    fusion_options={"epochs": 3},
    device="cpu",
)


class Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs, not even the failure status."""


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    bundle = generate_demo_bundle(root / "bundle", n_users=60, n_items=40, n_interactions=800, seed=5)
    workspace = Workspace(root / "ws")
    assert workspace.import_bundle(bundle, name="demo").ok
    return workspace.root


@pytest.fixture
def workspace(demo_root, tmp_path):
    shutil.copytree(demo_root, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


def gone_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def as_killed(run_dir) -> None:
    """What a SIGKILL leaves: status "running" with a pid that is gone, and the lock behind."""
    status = json.loads((run_dir / "status.json").read_text())
    pid = gone_pid()
    (run_dir / "status.json").write_text(json.dumps(status | {"state": "running", "pid": pid}))
    (run_dir / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": os.uname().nodename}))


def model_files(run_dir) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (run_dir / "model").iterdir()}


def kill_on(monkeypatch, name: str) -> None:
    def killed(*args, **kwargs):
        raise Killed(name)

    monkeypatch.setattr(run_module, name, killed)


def test_a_kill_during_evaluation_resumes_with_evaluation_only(workspace, monkeypatch):
    with monkeypatch.context() as patch:
        kill_on(patch, "_evaluate_by_user")
        with pytest.raises(Killed):
            train_run(workspace, RunConfig(**SMALL, baselines=["mostpop"], final_model=False), run_id="eval-kill")
    run_dir = workspace.run_path("eval-kill")
    as_killed(run_dir)
    assert not (run_dir / "metrics.json").exists()
    assert read_status(run_dir)["state"] == "interrupted"
    saved = model_files(run_dir)
    epochs = sum(e["type"] == "epoch" for e in read_progress(run_dir))

    train_run(workspace, RunConfig(), run_id="eval-kill", resume=True)
    assert model_files(run_dir) == saved  # the same bytes, never rewritten: not fitted again
    events = read_progress(run_dir)
    assert sum(e["type"] == "epoch" for e in events) == epochs
    assert any(e.get("message") == "resuming from the saved model: evaluation only" for e in events)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["complete"] is True and 0 < metrics["model"]["test"]["ndcg@20"] < 1
    assert metrics["model"]["history"]["best_epoch"] >= 0 and set(metrics["baselines"]) == {"mostpop"}
    assert set(metrics["paired"]) == {"mostpop"}  # evaluated in this process: paired user by user
    assert read_status(run_dir)["state"] == "finished"


def test_a_kill_during_the_final_refit_keeps_the_evaluation_and_refits_only_the_final_model(workspace, monkeypatch):
    with monkeypatch.context() as patch:
        kill_on(patch, "_final_model")
        with pytest.raises(Killed):
            train_run(workspace, RunConfig(**SMALL, baselines=["mostpop"]), run_id="final-kill")
    run_dir = workspace.run_path("final-kill")
    as_killed(run_dir)
    evaluated = json.loads((run_dir / "metrics.json").read_text())["model"]
    epochs = sum(e["type"] == "epoch" for e in read_progress(run_dir))

    train_run(workspace, RunConfig(), run_id="final-kill", resume=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model"] == evaluated and metrics["complete"] is True
    assert metrics["final_model"]["items"] == 40 and "mostpop" in metrics["baselines"]
    assert sum(e["type"] == "epoch" for e in read_progress(run_dir)) == epochs
    assert json.loads((run_dir / "model" / ".stage.json").read_text())["stage"] == "final"
    assert read_status(run_dir)["state"] == "finished"


def test_a_run_killed_after_its_last_result_reads_as_finished(workspace):
    run_dir = train_run(workspace, RunConfig(**SMALL, baselines=["mostpop"]), run_id="late-kill")
    as_killed(run_dir)
    assert read_status(run_dir)["state"] == "finished"
    assert [r.state for r in list_runs(workspace) if r.run_id == "late-kill"] == ["finished"]
    # without the final model the config asks for, or with metrics cut short, it is still interrupted
    metrics = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").write_text(json.dumps(metrics | {"complete": False}))
    assert read_status(run_dir)["state"] == "interrupted"
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    stage = json.loads((run_dir / "model" / ".stage.json").read_text())
    (run_dir / "model" / ".stage.json").write_text(json.dumps(stage | {"stage": "fitted"}))
    assert read_status(run_dir)["state"] == "interrupted"


def test_metrics_written_before_the_complete_flag_are_judged_by_the_config(workspace):
    run_dir = train_run(workspace, RunConfig(**SMALL, model="ease", baselines=["mostpop"]), run_id="legacy")
    as_killed(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    del metrics["complete"], metrics["fit"]
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "model" / ".stage.json").unlink()
    assert read_status(run_dir)["state"] == "finished"
    del metrics["baselines"]["mostpop"]
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    assert read_status(run_dir)["state"] == "interrupted"


def test_a_leftover_checkpoint_staging_is_gone_after_a_resume(workspace, monkeypatch):
    with monkeypatch.context() as patch:
        kill_on(patch, "_evaluate_by_user")
        with pytest.raises(Killed):
            train_run(workspace, RunConfig(**SMALL, baselines=[], final_model=False), run_id="staging")
    run_dir = workspace.run_path("staging")
    as_killed(run_dir)
    (run_dir / ".staging-checkpoint-0123abcd").mkdir()  # a name without a pid: only the age rule at startup
    (run_dir / ".staging-checkpoint-0123abcd" / "tensors.safetensors").write_bytes(b"0" * 64)
    train_run(workspace, RunConfig(), run_id="staging", resume=True)
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith((".staging-", ".trash-"))]
