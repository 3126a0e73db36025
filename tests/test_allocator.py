"""The training process's allocator settings (glibc)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from recsys.allocator import reuse_freed_memory

GLIBC = sys.platform.startswith("linux") and "glibc" in " ".join(__import__("platform").libc_ver())


def _in_fresh_process(env_extra: dict[str, str]) -> str:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env_extra
    code = (
        "import numpy as np; from recsys.allocator import reuse_freed_memory; applied = reuse_freed_memory(); "
        "arrays = [np.ones((1000, 1000)) for _ in range(5)]; del arrays; print(applied)"
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_the_settings_apply_on_glibc_and_allocation_still_works():
    assert _in_fresh_process({}) == "True"


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_the_users_own_malloc_settings_win():
    assert _in_fresh_process({"MALLOC_TRIM_THRESHOLD_": "131072"}) == "False"


def test_off_linux_nothing_is_changed(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert reuse_freed_memory() is False
