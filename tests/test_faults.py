"""Fault injection (benchmarks/faults.py): SIGKILL at random points of import, training, resume, deletion and
forget never leaves an unreadable workspace, a leftover or a dataset mixed from two imports."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_random_kills_leave_a_readable_workspace_without_leftovers(tmp_path):
    spec = importlib.util.spec_from_file_location("faults", REPO_ROOT / "benchmarks" / "faults.py")
    faults = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(faults)
    lines = []
    result = faults.run_faults(tmp_path, kills=15, seed=11, log=lines.append)
    assert result["kills"] == 15
    assert not result["failures"], "\n".join(result["failures"])
    # every kind of operation was started and killed at least once (not only finished before the signal)
    for kind in ("import", "train", "resume", "delete", "forget"):
        assert result["counts"].get(kind, 0) >= 1, (kind, result["counts"])
    assert sum(v for k, v in result["counts"].items() if k.endswith("(killed)")) >= 8, result["counts"]
