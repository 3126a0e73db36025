"""benchmarks/split_seeds.py runs end to end on a small generated bundle (the benchmark the closing notes quote
for fusion against EASE over several splits), lest it rot between the sessions that run it by hand."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from recsys.data.demo import generate_demo_bundle
from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_split_seeds_fits_both_models_on_every_split_and_summarises_them(tmp_path):
    bundle = generate_demo_bundle(tmp_path / "small-shop", n_users=150, n_items=120, n_interactions=3000, seed=3)
    done = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "split_seeds.py"),
            "--bundle",
            str(bundle),
            "--workspace",
            str(tmp_path / "ws"),
            "--seeds",
            "1",
            "2",
            "--fusion",
            "epochs=2",
            "--json",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["dataset"] == "small-shop" and report["fusion_options"] == {"epochs": 2}
    assert [row["seed"] for row in report["splits"]] == [1, 2]
    # two different splits of the same log: the test users' figures differ
    assert report["splits"][0]["ease"]["test_ndcg@20"] != report["splits"][1]["ease"]["test_ndcg@20"]
    ratios = [row["fusion"]["test_ndcg@20"] / row["ease"]["test_ndcg@20"] for row in report["splits"]]
    assert ratios == pytest.approx([row["test_ratio"] for row in report["splits"]])
    summary = report["summary"]
    assert summary["splits"] == 2 and summary["mean_test_ratio"] == pytest.approx(sum(ratios) / 2)
    assert summary["fusion_ahead_on_test"] == sum(r > 1 for r in ratios)
