"""Fixtures for the app tests: an empty workspace, and a small demo workspace with one trained run.

The trained run is the session's ``demo_template`` (tests/conftest.py: a 150-user / 120-item demo catalog,
3 epochs, TF-IDF text features, MostPop beside it), copied for each test that needs it, so a test may start,
stop, kill or delete runs without disturbing the others. ``RECSYS_WORKSPACE`` points at the copy.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = str(REPO_ROOT / "app.py")
ARTIFACTS = REPO_ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def trained_template(demo_template) -> Path:
    return demo_template  # the session's demo workspace (tests/conftest.py), shared with the engine tests


@pytest.fixture
def trained_workspace(trained_template, tmp_path, monkeypatch) -> Path:
    """A private copy of the trained demo workspace, set as RECSYS_WORKSPACE."""
    target = tmp_path / "workspace"
    shutil.copytree(trained_template, target)
    monkeypatch.setenv("RECSYS_WORKSPACE", str(target))
    return target


@pytest.fixture
def empty_workspace(tmp_path, monkeypatch) -> Path:
    target = tmp_path / "empty-workspace"
    monkeypatch.setenv("RECSYS_WORKSPACE", str(target))
    return target


@pytest.fixture
def app():
    """A fresh AppTest of the studio (call ``.run()`` yourself)."""
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(APP, default_timeout=180)


def the_run(workspace: Path) -> Path:
    """The (first) run folder of a workspace."""
    runs = sorted(p for p in (workspace / "runs").iterdir() if (p / "config.json").is_file())
    assert runs, f"no run in {workspace}"
    return runs[0]


def wait_for(predicate, timeout: float = 600.0, every: float = 0.5, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail (not a timing assertion) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(every)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def texts(at) -> str:
    """Every piece of text an AppTest run drew (markdown, captions, alerts, titles), joined."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error", "success", "text"):
        for element in getattr(at, kind):
            value = getattr(element, "value", None)
            if value is not None:
                parts.append(str(value))
    return "\n".join(parts)


def assert_clean(at) -> None:
    """No exception and no error box on the page."""
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert not errors, errors


@pytest.fixture
def kill_leftovers():
    """Processes a test started: killed at the end if the test failed half-way (by pid, never by name)."""
    pids: list[int] = []
    yield pids
    import signal

    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
