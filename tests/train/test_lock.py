"""One writer per run folder: a live lock refuses resume and delete, a stale one is taken over, a finished
run is resumed only with --force, and the CLI says so plainly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from recsys.cli import main
from recsys.data.demo import generate_demo_bundle
from recsys.train import launch
from recsys.train.lock import LOCK_NAME, RunBusyError, RunFinishedError, acquire_run_lock, lock_holder, read_lock
from recsys.train.run import RunConfig, read_progress, read_status, train_run
from recsys.workspace import DatasetNotFound, Workspace

FINISHED = "20260101-000000-demo-mostpop-done"
TINY = dict(dataset="demo", model="mostpop", baselines=[], final_model=False, device="cpu")


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lock")
    bundle = generate_demo_bundle(root / "bundle", n_users=60, n_items=40, n_interactions=800, seed=5)
    workspace = Workspace(root / "ws")
    assert workspace.import_bundle(bundle, name="demo").ok
    train_run(workspace, RunConfig(**TINY), run_id=FINISHED)
    return workspace.root


@pytest.fixture
def workspace(trained_root, tmp_path):
    shutil.copytree(trained_root, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


def gone_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_finished_run_has_no_lock_left(workspace):
    assert not (workspace.run_path(FINISHED) / LOCK_NAME).exists()
    assert lock_holder(workspace.run_path(FINISHED)) is None


def test_a_live_lock_refuses_resume_and_delete(workspace):
    run_dir = workspace.run_path(FINISHED)
    lock = acquire_run_lock(run_dir)  # this test process is the live trainer
    busy = f"run {FINISHED} is still training \\(pid {os.getpid()}\\)"
    with pytest.raises(RunBusyError, match=busy + "; stop it first"):
        train_run(workspace, RunConfig(), run_id=FINISHED, resume=True, force=True)
    with pytest.raises(RunBusyError, match=busy + "; stop it first"):
        launch.resume_run(workspace, FINISHED, force=True)
    with pytest.raises(RunBusyError, match=busy + "; stop it before deleting it"):
        launch.delete_run(workspace, FINISHED)
    with pytest.raises(RunBusyError):  # a second lock of the same folder
        acquire_run_lock(run_dir)
    assert read_lock(run_dir)["pid"] == os.getpid() and read_status(run_dir)["state"] == "finished"
    lock.release()
    assert not (run_dir / LOCK_NAME).exists()
    launch.delete_run(workspace, FINISHED)
    assert not run_dir.exists()


def test_a_lock_held_by_another_live_process_refuses_delete(workspace):
    run_dir = workspace.run_path(FINISHED)
    code = (
        "import sys, time; from recsys.train.lock import acquire_run_lock; acquire_run_lock(sys.argv[1]); "
        "print('locked', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(RunBusyError, match=f"still training \\(pid {child.pid}\\)"):
            launch.delete_run(workspace, FINISHED)
    finally:
        child.kill()
        child.wait()
    assert lock_holder(run_dir) is None  # killed: its lock is stale now
    launch.delete_run(workspace, FINISHED)


def test_a_stale_lock_is_taken_over(workspace, caplog):
    run_dir = workspace.run_path(FINISHED)
    pid = gone_pid()
    (run_dir / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": os.uname().nodename, "started": 1.0}))
    assert lock_holder(run_dir) is None
    with caplog.at_level("WARNING", logger="recsys.train.lock"):
        train_run(workspace, RunConfig(), run_id=FINISHED, resume=True, force=True)
    assert f"stale lock of pid {pid}" in caplog.text
    assert any(e.get("stage") == "lock" and str(pid) in e.get("message", "") for e in read_progress(run_dir))
    assert read_status(run_dir)["state"] == "finished" and not (run_dir / LOCK_NAME).exists()


def test_a_recycled_pid_does_not_keep_a_lock_alive(tmp_path):
    if not os.path.exists(f"/proc/{os.getpid()}/stat"):
        pytest.skip("needs /proc")
    # the pid is alive (this process) but started at another time: a pid the system gave to someone else
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "proc_start": "1"}))
    assert lock_holder(tmp_path) is None
    acquire_run_lock(tmp_path).release()


def test_resume_of_a_finished_run_needs_force(workspace):
    run_dir = workspace.run_path(FINISHED)
    message = f"run {FINISHED} has finished; use --force to train it again"
    with pytest.raises(RunFinishedError, match=message):
        train_run(workspace, RunConfig(), run_id=FINISHED, resume=True)
    with pytest.raises(RunFinishedError, match=message):
        launch.resume_run(workspace, FINISHED)  # refused before any process starts
    assert not (workspace.runs_dir / ".launch" / f"{FINISHED}.json").exists()
    assert not (run_dir / LOCK_NAME).exists()
    before = len(read_progress(run_dir))
    train_run(workspace, RunConfig(), run_id=FINISHED, resume=True, force=True)
    assert read_status(run_dir)["state"] == "finished" and len(read_progress(run_dir)) > before
    assert not (run_dir / LOCK_NAME).exists()


def test_a_failed_training_releases_its_lock(workspace):
    with pytest.raises(DatasetNotFound):
        train_run(workspace, RunConfig(**{**TINY, "dataset": "nosuch"}), run_id="fails")
    run_dir = workspace.run_path("fails")
    assert read_status(run_dir)["state"] == "failed" and not (run_dir / LOCK_NAME).exists()


def _cli(workspace, capsys, *argv):
    code = main(["train", *argv, "--json", "--quiet", "--workspace", str(workspace.root)])
    out, err = capsys.readouterr()
    return code, json.loads(out.strip().splitlines()[-1]), err


def test_the_cli_refuses_plainly(workspace, capsys):
    code, answer, err = _cli(workspace, capsys, "--resume", FINISHED)
    assert code == 1 and answer["ok"] is False and answer["reason"] == "finished"
    assert answer["error"] == f"run {FINISHED} has finished; use --force to train it again"
    assert err.strip() == f"error: {answer['error']}" and "Traceback" not in err
    lock = acquire_run_lock(workspace.run_path(FINISHED))
    try:
        code, answer, err = _cli(workspace, capsys, "--resume", FINISHED, "--force")
    finally:
        lock.release()
    assert code == 1 and answer["reason"] == "busy" and answer["pid"] == os.getpid()
    assert answer["error"] == f"run {FINISHED} is still training (pid {os.getpid()}); stop it first"
    code, answer, _ = _cli(workspace, capsys, "--force")
    assert code == 1 and answer["error"] == "--force only applies with --resume RUN_ID"
    code, answer, _ = _cli(workspace, capsys, "--resume", FINISHED, "--force")
    assert code == 0 and answer["state"] == "finished"
