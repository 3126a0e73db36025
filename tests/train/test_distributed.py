"""Training under torchrun (two CPU processes, gloo): it trains, rank 0 alone writes, and the metrics are
those of a single-process run of the same config.

The ranks share every mini-batch (each its slice, the gradients summed), so the two-process run takes the
same optimiser steps as one process up to float rounding: the tolerances below are rounding-sized (a
gradient counted twice, or ranks training apart, moves the losses by far more than 1e-4).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recsys import distributed
from recsys.data.demo import generate_demo_bundle
from recsys.workspace import Workspace
from tests.conftest import REPO_ROOT

METRIC_TOLERANCE = 1e-3  # absolute, on test NDCG@20 / recall@20 (rounding-sized; a real difference is ~1e-2)
LOSS_TOLERANCE = 1e-4  # relative, on every epoch's training loss


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    bundle = generate_demo_bundle(root / "bundle", n_users=150, n_items=100, n_interactions=3500, seed=5)
    workspace = Workspace(root / "ws")
    assert workspace.import_bundle(bundle, name="demo").ok
    return workspace


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(scratch: Path) -> dict[str, str]:
    scratch.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    return env | {"OMP_NUM_THREADS": "1", "TMPDIR": str(scratch), "PYTHONPATH": str(REPO_ROOT)}


def _train(workspace: Workspace, run_id: str, options: list[str], scratch: Path, processes: int = 1):
    launcher = (
        [sys.executable]
        if processes == 1
        else [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(processes),
            "--master_port",
            str(_free_port()),
        ]
    )
    command = [*launcher, "-m", "recsys", "train", "--workspace", str(workspace.root), "--run-id", run_id, *options]
    done = subprocess.run(command, cwd=REPO_ROOT, env=_env(scratch), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


def _check_against_single(workspace: Workspace, single: str, ddp: str, before: set[Path], scratch: Path) -> dict:
    root = workspace.root
    # rank 0 wrote one run folder; nothing else in the workspace changed but what the run itself caches
    new = _files(root) - before
    assert {p.parts[:2] for p in new if p.parts[0] == "runs"} == {("runs", ddp)}
    assert all(p.parts[0] in ("runs", "features") for p in new), sorted(map(str, new))
    run_dir = root / "runs" / ddp
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "finished"
    assert status["distributed"] == {"world_size": 2, "backend": "gloo"}
    events = [json.loads(line) for line in (run_dir / "progress.jsonl").read_text().splitlines()]
    assert [e["type"] for e in events].count("end") == 1  # one writer of the progress log
    assert not list(scratch.glob("recsys-rank*")), "rank 1 left its scratch folder behind"

    ours = json.loads((run_dir / "metrics.json").read_text())
    theirs = json.loads((root / "runs" / single / "metrics.json").read_text())
    assert ours["complete"] and theirs["complete"]
    for metric in ("ndcg@20", "recall@20"):
        assert ours["model"]["test"][metric] == pytest.approx(theirs["model"]["test"][metric], abs=METRIC_TOLERANCE)
        for name in theirs["baselines"]:
            assert ours["baselines"][name]["test"][metric] == pytest.approx(
                theirs["baselines"][name]["test"][metric], abs=METRIC_TOLERANCE
            )
    return {"ours": ours, "theirs": theirs}


def _epoch_losses(history) -> list[float]:
    records = history["epochs"] if isinstance(history, dict) else history
    return [float(r["loss"]) for r in records]


def test_bpr_under_torchrun_matches_one_process(workspace, tmp_path):
    options = [
        "--data", "demo", "--model", "bpr", "--baselines", "mostpop", "--device", "cpu", "--no-final-model",
        "--bpr.epochs", "15", "--bpr.batch-size", "500", "--bpr.eval-every", "5",
    ]  # fmt: skip
    _train(workspace, "bpr-one", options, tmp_path / "one")
    before = _files(workspace.root)
    done = _train(workspace, "bpr-ddp", options, tmp_path / "two", processes=2)
    assert done.stdout.count("run bpr-ddp finished") == 1  # rank 0 speaks for the run
    runs = _check_against_single(workspace, "bpr-one", "bpr-ddp", before, tmp_path / "two")
    ours, theirs = _epoch_losses(runs["ours"]["model"]["history"]), _epoch_losses(runs["theirs"]["model"]["history"])
    assert len(ours) == len(theirs) == 15
    assert ours == pytest.approx(theirs, rel=LOSS_TOLERANCE)  # the same steps: summed shards = the whole batch


@pytest.mark.slow
def test_fusion_and_lightgcn_under_torchrun_match_one_process(workspace, tmp_path):
    options = [
        "--data", "demo", "--model", "fusion", "--modalities", "behaviour", "text", "attributes",
        "--text-encoder", "tfidf", "--baselines", "lightgcn", "--lightgcn.epochs", "20", "--fusion.epochs", "4",
        "--device", "cpu", "--no-final-model",
    ]  # fmt: skip
    _train(workspace, "fusion-one", options, tmp_path / "one")
    for entry in (workspace.root / "features").iterdir():  # rank 0 extracts again, the other rank reads its cache
        entry.unlink()
    before = _files(workspace.root)
    _train(workspace, "fusion-ddp", options, tmp_path / "two", processes=2)
    runs = _check_against_single(workspace, "fusion-one", "fusion-ddp", before, tmp_path / "two")
    ours, theirs = _epoch_losses(runs["ours"]["model"]["history"]), _epoch_losses(runs["theirs"]["model"]["history"])
    assert len(ours) == len(theirs) > 0
    assert ours == pytest.approx(theirs, rel=LOSS_TOLERANCE)

    # a resume under torchrun is refused plainly, and the run folder is left as it was
    before = {p: p.stat().st_mtime_ns for p in (workspace.root / "runs" / "fusion-ddp").rglob("*")}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port"]
    command += [
        str(_free_port()),
        "-m",
        "recsys",
        "train",
        "--workspace",
        str(workspace.root),
        "--resume",
        "fusion-ddp",
    ]
    done = subprocess.run(command, cwd=REPO_ROOT, env=_env(tmp_path / "three"), capture_output=True, text=True)
    assert done.returncode != 0
    assert "cannot be resumed under torchrun" in done.stderr
    assert before == {p: p.stat().st_mtime_ns for p in (workspace.root / "runs" / "fusion-ddp").rglob("*")}


def test_single_process_is_a_no_op():
    """Outside torchrun nothing is initialised and the helpers return what they are given."""
    assert not torch.distributed.is_initialized()
    assert (distributed.rank(), distributed.world_size(), distributed.is_primary()) == (0, 1, True)
    param = torch.nn.Parameter(torch.ones(3))
    param.grad = torch.full((3,), 2.0)
    assert distributed.sum_gradients([param], [1.5, 0.0]) == [1.5, 0.0]
    assert param.grad.tolist() == [2.0, 2.0, 2.0]
    batch = torch.arange(5)
    assert distributed.shard(batch) is batch
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.on_primary(lambda: 7) == 7 and distributed.primary_first(lambda: 8) == 8
    with distributed.session():
        assert not torch.distributed.is_initialized()


def _every_rank_worker(rank: int, port: int, results) -> None:
    """One of two gloo processes: rank 1's share fails; both must return (no rank left waiting)."""
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        ok = distributed.every_rank(lambda: 10.0 + rank, "a step that works")

        def share() -> float:
            if rank == 1:
                raise ValueError("picture 7 is unreadable")
            return 1.0

        try:
            distributed.every_rank(share, "feature extraction")
            outcome = "no error"
        except distributed.PrimaryFailed as exc:
            outcome = f"PrimaryFailed: {exc}"
        except ValueError as exc:
            outcome = f"ValueError: {exc}"
        results[rank] = (ok, outcome)
    finally:
        torch.distributed.destroy_process_group()


def test_every_rank_gathers_each_ranks_number_and_raises_a_failure_on_every_rank():
    import torch.multiprocessing as mp

    if not torch.distributed.is_gloo_available():
        pytest.skip("gloo is not available")
    results = mp.Manager().dict()
    mp.spawn(_every_rank_worker, args=(_free_port(), results), nprocs=2, join=True)
    assert results[0][0] == results[1][0] == [10.0, 11.0]
    assert results[1][1] == "ValueError: picture 7 is unreadable"
    assert results[0][1] == "PrimaryFailed: rank 1 failed during feature extraction"
    assert distributed.every_rank(lambda: 3.0, "one process") == [3.0]  # outside a group: just the call


@pytest.mark.slow
def test_feature_extraction_is_shared_by_the_ranks(workspace, tmp_path):
    """Under torchrun each rank encodes its share of the pictures (EfficientNet, the real default encoder);
    rank 0 assembles the shares into one cache entry without encoding any row again, the shares' entries are
    removed, and the features are those of one process."""
    import numpy as np

    from recsys.features.cache import FeatureCache

    options = [
        "--data", "demo", "--model", "fusion", "--modalities", "behaviour", "image", "--baselines",
        "--fusion.epochs", "2", "--device", "cpu", "--no-final-model",
    ]  # fmt: skip
    features_dir = workspace.root / "features"

    def image_entries() -> list[dict]:
        return [m for m in FeatureCache(features_dir).entries() if m.get("encoder") == "efficientnet-lite0"]

    for entry in features_dir.iterdir():
        entry.unlink()
    _train(workspace, "shard-one", options, tmp_path / "one")
    [single] = image_entries()
    with np.load(features_dir / f"{single['key']}.npz", allow_pickle=False) as data:
        expected = {h: row for h, row in zip(data["row_hashes"].tolist(), data["features"].astype(np.float32))}

    for entry in features_dir.iterdir():
        entry.unlink()
    _train(workspace, "shard-ddp", options, tmp_path / "two", processes=2)
    events = [json.loads(line) for line in (workspace.root / "runs" / "shard-ddp" / "progress.jsonl").open()]
    [shares] = [e for e in events if e.get("stage") == "features_sharded"]
    [done] = [e for e in events if e.get("stage") == "features_done"]
    pictures = done["timings"]["image_reused_rows"] + done["timings"]["image_encoded_rows"]
    assert len(shares["rows_by_rank"]) == 2 and min(shares["rows_by_rank"]) > 0  # both ranks encoded
    assert sum(shares["rows_by_rank"]) == pictures
    assert done["timings"]["image_encoded_rows"] == 0  # rank 0 assembled: nothing encoded twice
    [whole] = image_entries()  # the shares' entries are gone
    assert not whole.get("unfinished")
    with np.load(features_dir / f"{whole['key']}.npz", allow_pickle=False) as data:
        got = {h: row for h, row in zip(data["row_hashes"].tolist(), data["features"].astype(np.float32))}
    assert got.keys() == expected.keys()
    for h, row in expected.items():
        np.testing.assert_allclose(got[h], row, atol=2e-3, rtol=2e-2)
