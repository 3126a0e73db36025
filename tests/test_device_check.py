"""The device check (benchmarks/device_check.py) runs: it is written for a GPU that no session here has had, so
its CPU path is run end to end on every CI run, lest it rot before a device is lent."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_device_check_runs_every_section_on_the_cpu(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "device_check.py"), "--quick", "--device", "cpu", "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path), "OMP_NUM_THREADS": "2"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["environment"]["device"] == "cpu"
    assert report["features"]["text_cpu_items_per_s"] > 0 and report["features"]["image_cpu_items_per_s"] > 0
    assert report["training"]["fusion_test_ndcg@20_cpu"] > 0 and report["training"]["finetune_step_cpu_s"] > 0
    assert report["topk"]["cpu_ms_per_user"] > 0
    assert report["ddp"]["backend"] == "gloo" and report["ddp"]["match"] is True, report["ddp"]
