"""Run listings: a finished run, a run still starting (only a launch record) and a damaged run folder.

A damaged config.json (not JSON, or JSON without a ``config`` object) used to fail the whole listing, and
with it every page of the app; the folder is now left out and the other runs are still listed. A
damaged metrics.json reads as "no metrics yet", a damaged status.json as state "unknown".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from recsys.train.launch import list_all_runs
from recsys.train.records import RunRecord, nest_flat_options
from recsys.train.run import RunConfig, list_runs
from recsys.workspace import Workspace
from tests.conftest import DEMO_RUN

FINISHED = DEMO_RUN


@pytest.fixture
def workspace(demo_copy):
    """The session's demo workspace, copied, so that each test may add launch records and damaged folders."""
    return Workspace(demo_copy)


def write_launch_record(workspace: Workspace, run_id: str, pid: int, *flags: str) -> None:
    launch = workspace.runs_dir / ".launch"
    launch.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "recsys", "train", "--workspace", str(workspace.root), "--run-id", run_id, *flags]
    (launch / f"{run_id}.json").write_text(
        json.dumps({"run_id": run_id, "pid": pid, "command": command, "launched": time.time()})
    )


def test_a_finished_run_is_a_typed_record(workspace):
    [run] = list_runs(workspace)
    assert isinstance(run, RunRecord)
    assert run.run_id == FINISHED and run.path == workspace.runs_dir / FINISHED
    assert (run.dataset, run.model, run.model_label) == ("demo", "fusion", "fusion")
    assert run.state == "finished" and not run.active
    assert run.started and run.ended and run.ended >= run.started
    assert run.has_model and run.usable and run.has_test_metrics
    assert 0 < run.test_metrics["ndcg@20"] <= 1
    name, score = run.best_baseline
    assert name == "mostpop" and score == run.baseline_metrics["mostpop"]["test"]["ndcg@20"]
    # the model against that baseline, user by user: the verdict its paired interval gives
    paired = run.metrics["paired"]["mostpop"]["ndcg@20"]
    expected = "within the noise"
    if paired["interval_95"][0] > 0 or paired["interval_95"][1] < 0:
        expected = "clearly better" if paired["mean_difference"] > 0 else "clearly worse"
    assert run.verdict_against_best_baseline == expected
    assert list_all_runs(workspace) == [run]  # no launch record: the same run, the same state


def test_a_run_still_starting_comes_from_its_launch_record(workspace):
    starting = "20260102-000000-demo-ease-wait"
    write_launch_record(workspace, starting, os.getpid(), "--data", "demo", "--model", "ease")
    write_launch_record(workspace, FINISHED, os.getpid(), "--data", "demo")  # has a folder: listed once

    assert [r.run_id for r in list_runs(workspace)] == [FINISHED]  # run folders only
    runs = list_all_runs(workspace)
    assert [r.run_id for r in runs] == [starting, FINISHED]  # newest first
    run = runs[0]
    assert (run.dataset, run.model, run.state) == ("demo", "ease", "starting")
    assert run.active and not run.has_model and not run.usable
    assert run.metrics is None and run.test_metrics == {} and run.best_baseline is None
    assert run.verdict_against_best_baseline is None
    assert run.path == workspace.runs_dir / starting
    assert runs[1].state == "finished"


def test_a_run_started_with_a_config_file_is_listed_from_it(workspace):
    from recsys.train.launch import launch_config_path

    starting = "20260102-000000-shop-bpr-file"
    config = RunConfig(dataset="shop", model="bpr", bpr_options={"dim": 8})
    launch_config_path(workspace, starting).write_text(json.dumps({"run_id": starting, "config": config.to_dict()}))
    write_launch_record(workspace, starting, os.getpid(), "--config", str(launch_config_path(workspace, starting)))
    runs = list_all_runs(workspace)
    assert [r.run_id for r in runs] == [starting, FINISHED]  # the config file is not a launch record of its own
    assert (runs[0].dataset, runs[0].model, runs[0].state) == ("shop", "bpr", "starting")


def test_a_launch_whose_process_ended_without_a_folder_reads_as_failed(workspace):
    probe = subprocess.Popen([sys.executable, "-c", "pass"])
    probe.wait()
    write_launch_record(workspace, "20260103-000000-demo-fusion-gone", probe.pid, "--data", "demo")
    (workspace.runs_dir / ".launch" / "20260103-000000-demo-fusion-gone.log").write_text("error: bad option\n")
    run = list_all_runs(workspace)[0]
    assert (run.run_id, run.state, run.model) == ("20260103-000000-demo-fusion-gone", "failed", "fusion")
    assert "bad option" in run.status["error"] and not run.active


def test_a_damaged_run_folder_is_left_out_and_the_others_are_listed(workspace):
    not_json = workspace.runs_dir / "20260104-000000-demo-fusion-junk"
    not_json.mkdir()
    (not_json / "config.json").write_text("{not json")
    no_config = workspace.runs_dir / "20260105-000000-demo-fusion-nokey"
    no_config.mkdir()
    (no_config / "config.json").write_text(json.dumps({"run_id": no_config.name}))
    assert [r.run_id for r in list_runs(workspace)] == [FINISHED]
    assert [r.run_id for r in list_all_runs(workspace)] == [FINISHED]


def test_damaged_metrics_and_status_read_as_unknown(workspace):
    damaged = workspace.runs_dir / "20260106-000000-demo-mostpop-torn"
    shutil.copytree(workspace.runs_dir / FINISHED, damaged)
    (damaged / "metrics.json").write_text("{")
    (damaged / "status.json").write_text("")
    run = list_runs(workspace)[0]
    assert run.run_id == damaged.name and run.dataset == "demo"
    assert run.metrics is None and not run.has_test_metrics
    assert run.state == "unknown" and not run.usable and run.has_model


def test_the_model_label_names_the_fusion_variant():
    def record(**config):  # a flat config, as older runs wrote it, read as the listing reads it (nested)
        return RunRecord(run_id="r", path=Path("r"), config=nest_flat_options(config), status={})

    assert record(model="fusion", fusion="attention").model_label == "fusion"
    assert record(model="fusion").model_label == "fusion"
    assert record(model="fusion", fusion="mean").model_label == "fusion (mean)"
    assert record(model="fusion", fusion_options={"fusion": "concat"}).model_label == "fusion (concat)"
    assert record(model="ease", fusion="mean").model_label == "ease"
    assert record().model_label == "?" and record().state == "unknown"


def test_a_cross_validation_stopped_after_one_fold_reads_as_that_fold_alone(tmp_path):
    """One fold has no mean and no spread: no "± 0", no nan interval, no "within the noise" verdict."""
    from recsys.train.records import RunRecord
    from recsys.train.report import metrics_table, paired_table
    from recsys.train.run import fold_summary, paired_difference

    def fold(ndcg: float) -> dict:
        test = {"recall@10": 0.1, "recall@20": 0.2, "ndcg@10": ndcg, "ndcg@20": ndcg, "hit@10": 0.5, "hit@20": 0.6}
        return {"test": test, "valid": dict(test), "fit_seconds": 1.0, "items_scored_per_second": 1e6}

    ours, theirs = [fold(0.36)], [fold(0.30)]
    metrics = {
        "model": {**fold_summary(ours), "name": "fusion"},
        "baselines": {"ease": fold_summary(theirs)},
        "kfold": {"folds": 5, "completed": 1, "paired": {"ease": paired_difference(ours, theirs)}},
    }
    table = metrics_table(metrics)
    assert set(table["Split"]) == {"test (fold 1 of 5 only)"} and "± NDCG@20" not in table.columns
    assert paired_table(metrics).empty
    run = RunRecord("r", tmp_path, {"dataset": "d", "model": "fusion"}, {"state": "stopped"}, metrics)
    assert run.verdict_against_best_baseline is None
    # two folds: the mean, its spread and the verdict are back
    metrics["kfold"]["completed"] = 2
    assert "± NDCG@20" in metrics_table(metrics).columns
    assert run.partial_folds == "2 of 5 folds"  # pickers, Home and the runs table say the figures are partial
    metrics["kfold"]["completed"] = 5
    assert run.partial_folds is None
    plain = RunRecord("p", tmp_path, {"dataset": "d", "model": "fusion"}, {"state": "finished"}, {"model": {}})
    assert plain.partial_folds is None


def test_the_runs_table_keeps_its_figures_numbers_and_a_missing_one_is_nan_not_none():
    from app_pages.experiments import number_cell

    assert all(np.isnan(number_cell(value)) for value in (None, float("nan"), "x", float("inf")))
    assert number_cell(0.21804) == 0.21804 and number_cell("12.5") == 12.5


def test_the_runs_table_has_no_none_for_a_run_that_failed_before_its_options_were_written(tmp_path):
    from app_pages.experiments import runs_frame

    failed = RunRecord("f", tmp_path, {"dataset": "d", "model": "fusion"}, {"state": "failed", "started": 1.0})
    row = runs_frame([failed]).iloc[0]
    assert row["Fusion"] == "–" and np.isnan(row["NDCG@20"]) and np.isnan(row["Minutes"])
    assert not any(value is None for value in row.to_dict().values())


def test_a_run_whose_model_saved_its_history_as_a_list_is_listed(tmp_path):
    """BPR-MF and LightGCN save a list of per-epoch records where the fusion model saves a dict: one such run
    in the workspace took the whole Experiments page down ('list' object has no attribute 'get')."""
    from app_pages.experiments import runs_frame

    records = [{"epoch": 1, "loss": 0.71}, {"epoch": 5, "loss": 0.69, "valid_ndcg@20": 0.05}]
    metrics = {"model": {"name": "bpr", "test": {"ndcg@20": 0.2}, "history": records}}
    bpr = RunRecord("b", tmp_path, {"dataset": "d", "model": "bpr"}, {"state": "finished", "started": 1.0}, metrics)
    assert bpr.model_history == {"epochs": [{**records[0], "epoch": 0}, {**records[1], "epoch": 4}]}
    fusion = RunRecord("f", tmp_path, {"dataset": "d"}, {}, {"model": {"history": {"epochs": [], "ease_l2": 50}}})
    assert fusion.model_history["ease_l2"] == 50 and RunRecord("n", tmp_path, {}, {}).model_history == {}
    row = runs_frame([bpr]).iloc[0]
    assert row["NDCG@20"] == 0.2 and row["Attribute columns"] == "–"
