"""Run ids are names inside the workspace, never paths: every way a run id comes in refuses one that is not."""

from __future__ import annotations

import pytest

from recsys.train import launch
from recsys.train.run import RunConfig, new_run_id, train_run
from recsys.workspace import InvalidName, validate_name


@pytest.mark.parametrize("run_id", ["../../x", "/abs/x", ".x"])
def test_training_and_the_launcher_refuse_a_path_as_run_id(workspace, run_id, tmp_path):
    with pytest.raises(InvalidName, match=r"run id .* is not allowed: use letters, digits"):
        train_run(workspace, RunConfig(dataset="demo"), run_id=run_id)
    with pytest.raises(InvalidName, match=r"run id .* is not allowed"):
        train_run(workspace, RunConfig(dataset="demo"), run_id=run_id, resume=True)
    for call in (launch.resume_run, launch.delete_run):
        with pytest.raises(InvalidName, match=r"run id .* is not allowed"):
            call(workspace, run_id)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.name in ("x", ".x")) == []
    assert list(workspace.runs_dir.iterdir()) == []


def test_the_launcher_refuses_a_path_as_dataset_name_or_run_id(workspace, small_bundle):
    with pytest.raises(InvalidName, match=r"dataset name '\.\./data' is not allowed"):
        launch.start_run(workspace, RunConfig(dataset="../data"))
    assert workspace.import_bundle(small_bundle, name="shop").ok
    with pytest.raises(InvalidName, match=r"run id '\.\./x' is not allowed"):  # refused before any process starts
        launch.start_run(workspace, RunConfig(dataset="shop"), run_id="../x")
    assert not (workspace.runs_dir / ".launch").exists() or not any((workspace.runs_dir / ".launch").iterdir())


def test_generated_run_ids_are_valid_even_for_long_names():
    for dataset in ("demo", "d" * 100, "my-shop-2"):
        run_id = new_run_id(RunConfig(dataset=dataset, model="fusion"))
        assert validate_name("run id", run_id) == run_id and len(run_id) <= 100
