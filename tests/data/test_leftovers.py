"""Startup clean-up: what killed imports, trainings and deletions leave behind is removed once the process
that made it is gone, a live writer's folders are left alone, and an interrupted swap is put back."""

from __future__ import annotations

import logging
import os
import subprocess
import time

import pytest

from recsys.atomic import atomic_directory, clean_leftovers
from recsys.train.lock import LOCK_NAME, acquire_run_lock
from recsys.workspace import Workspace


def gone_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def make(folder, name, content=b"x" * 2048):
    path = folder / name
    path.mkdir(parents=True)
    (path / "data.bin").write_bytes(content)
    return path


def test_leftovers_of_dead_processes_are_removed_and_reported(tmp_path, caplog):
    workspace = Workspace(tmp_path / "ws")
    dead, live = gone_pid(), os.getpid()
    datasets, features, runs = workspace.datasets_dir, workspace.features_dir, workspace.runs_dir
    make(datasets, "shop")
    dead_staging = make(datasets, f".staging-shop+{dead}-0123abcd")
    dead_trash = make(datasets, f".trash-shop+{dead}-0123abce")  # shop exists: the swap had finished
    deleted = make(datasets, f".deleted-old+{dead}-1700000000")
    live_staging = make(datasets, f".staging-other+{live}-0123abcf")
    young_old_format = make(datasets, ".staging-legacy-0123abd0")  # no pid: only the age rule applies
    old_old_format = make(datasets, ".staging-legacy-0123abd1")
    os.utime(old_old_format, (time.time() - 7200, time.time() - 7200))
    dead_temp = features / f".abc.npz+{dead}-k2j_x9.tmp"
    dead_temp.write_bytes(b"1" * 10)
    live_temp = features / f".abd.npz+{live}-k2j_x9.tmp"
    live_temp.write_bytes(b"1")
    run = runs / "r1"
    make(run, "model")
    checkpoint_staging = make(run, f".staging-checkpoint+{dead}-0123abd2")
    run_deleted = make(runs, f".deleted-r0+{dead}-1700000000000")

    with caplog.at_level(logging.WARNING, logger="recsys.workspace"):
        reopened = Workspace(workspace.root)
    for path in (dead_staging, dead_trash, deleted, old_old_format, dead_temp, checkpoint_staging, run_deleted):
        assert not path.exists(), path
    for path in (live_staging, young_old_format, live_temp, datasets / "shop", run / "model"):
        assert path.exists(), path
    assert len(reopened.cleaned) == 7
    assert f"datasets/removed .staging-shop+{dead}-0123abcd (2.0 KB)" in reopened.cleaned
    assert f"runs/r1/removed .staging-checkpoint+{dead}-0123abd2 (2.0 KB)" in reopened.cleaned
    logged = [r.getMessage() for r in caplog.records if r.name == "recsys.workspace"]
    assert len(logged) == 7 and any("staging-shop" in line and "2.0 KB" in line for line in logged)
    assert Workspace(workspace.root).cleaned == []  # nothing left the second time


@pytest.mark.parametrize("trash_name", ["{pid}", "legacy"])
def test_a_swap_interrupted_between_its_renames_is_put_back(tmp_path, trash_name):
    workspace = Workspace(tmp_path / "ws")
    suffix = f"+{gone_pid()}-0123abcd" if trash_name == "{pid}" else "-deadbeef"
    make(workspace.datasets_dir, f".trash-shop-2{suffix}", b"old")
    staging = make(workspace.datasets_dir, f".staging-shop-2{suffix}", b"new, half written")
    reopened = Workspace(workspace.root)
    assert (workspace.datasets_dir / "shop-2" / "data.bin").read_bytes() == b"old"
    assert not (workspace.datasets_dir / "shop").exists()
    assert any(line.startswith("datasets/restored") for line in reopened.cleaned)
    assert staging.exists() == (trash_name == "legacy")  # a legacy staging waits for the age rule


def test_a_live_writers_trash_is_not_restored(tmp_path):
    make(tmp_path, f".trash-model+{os.getpid()}-0123abcd")
    assert clean_leftovers(tmp_path) == []
    assert not (tmp_path / "model").exists()


def test_a_locked_run_folder_is_left_to_its_writer(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    run = workspace.runs_dir / "busy"
    run.mkdir()
    staging = make(run, f".staging-checkpoint+{gone_pid()}-0123abcd")
    with acquire_run_lock(run):
        Workspace(workspace.root)
        assert staging.exists()
    assert not (run / LOCK_NAME).exists()
    Workspace(workspace.root)
    assert not staging.exists()


def test_atomic_directory_names_carry_the_pid(tmp_path):
    with atomic_directory(tmp_path / "target") as staging:
        assert staging.name.startswith(f".staging-target+{os.getpid()}-")
        (staging / "f").write_text("1")
    assert [p.name for p in tmp_path.iterdir()] == ["target"]
