"""A stop reaches every long step of a run within one batch (recsys.stopping), not only the epoch loop."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import scipy.sparse as sp

from recsys import stopping
from recsys.data.demo import generate_demo_bundle
from recsys.evaluate import evaluate_ranking
from recsys.train.run import RunConfig, read_progress, read_status, train_run
from recsys.workspace import Workspace

SMALL = dict(
    dataset="demo",
    modalities=["behaviour", "text", "attributes"],
    text_encoder="tfidf",
    device="cpu",
    baselines=["mostpop"],
)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("stopping")
    bundle = generate_demo_bundle(root / "bundle", n_users=150, n_items=100, n_interactions=3500, seed=5)
    workspace = Workspace(root / "ws")
    assert workspace.import_bundle(bundle, name="demo").ok
    return workspace


def _ranking_inputs(n_users=300, n_items=40):
    rng = np.random.default_rng(0)
    train = sp.csr_matrix((rng.random((n_users, n_items)) < 0.2).astype(np.float32))
    test = sp.csr_matrix((rng.random((n_users, n_items)) < 0.05).astype(np.float32))
    return train, test, lambda rows: rng.random((len(rows), n_items))


def test_evaluation_gives_up_at_the_next_batch_once_a_stop_is_requested():
    train, test, score = _ranking_inputs()
    batches = []
    signal = stopping.StopSignal()

    def counting(rows):
        batches.append(len(rows))
        if len(batches) == 2:
            signal.request()
        return score(rows)

    assert evaluate_ranking(counting, train, test, batch_size=50)["n_users_evaluated"] > 0  # outside a run
    batches.clear()
    signal.requested = False
    with stopping.watching(signal), pytest.raises(stopping.StopRequested, match="evaluation"):
        evaluate_ranking(counting, train, test, batch_size=50)
    assert len(batches) == 2  # the third batch was never scored
    assert not stopping.requested()  # the signal only applies inside its block


def test_a_stop_in_one_thread_does_not_stop_another():
    train, test, score = _ranking_inputs()
    stopped = stopping.StopSignal()
    stopped.request()
    results = {}

    def other_run():
        with stopping.watching(stopping.StopSignal()):
            results["other"] = evaluate_ranking(score, train, test)

    with stopping.watching(stopped):
        thread = threading.Thread(target=other_run)
        thread.start()
        thread.join()
        with pytest.raises(stopping.StopRequested):
            evaluate_ranking(score, train, test)
    assert results["other"]["n_users_evaluated"] > 0


def test_a_stop_during_feature_extraction_ends_the_run_at_once_and_resume_finishes_it(workspace):
    def stop_at_the_first_batch(stage, done, total):
        stopping.current().request()  # what the SIGTERM handler does

    run_dir = train_run(
        workspace,
        RunConfig(**SMALL, fusion_options={"epochs": 2}),
        run_id="stop-in-features",
        progress=stop_at_the_first_batch,
    )
    status = read_status(run_dir)
    assert status["state"] == "stopped", status
    assert "feature extraction" in status["stopped_during"]
    assert not (run_dir / "model").exists() and not (run_dir / "metrics.json").exists()
    assert not any(e.get("stage") == "fit" for e in read_progress(run_dir))  # it never reached the model
    end = read_progress(run_dir)[-1]
    assert end["type"] == "end" and "resume the run to continue" in end["message"]

    stopped_at = status["ended"]
    train_run(workspace, RunConfig(**SMALL, fusion_options={"epochs": 2}), run_id="stop-in-features", resume=True)
    status = read_status(run_dir)
    assert status["state"] == "finished"
    assert (run_dir / "metrics.json").is_file()
    # the time it sat stopped is recorded, so the run's duration counts the work and not the pause
    assert status["paused_seconds"] == pytest.approx(status["resumed"] - stopped_at)


def test_a_stop_during_the_ease_search_does_not_wait_for_the_other_solves(workspace, monkeypatch):
    from recsys.models import ease

    solves = []
    original = ease.ease_inverse

    def solve_then_stop(*args, **kwargs):
        solves.append(args[1])
        stopping.current().request()
        return original(*args, **kwargs)

    monkeypatch.setattr(ease, "ease_inverse", solve_then_stop)
    run_dir = train_run(workspace, RunConfig(**SMALL, fusion_options={"epochs": 2}), run_id="stop-in-ease")
    status = read_status(run_dir)
    assert status["state"] == "stopped", status  # during the solve's validation or before the next solve
    assert len(solves) == 1  # the grid has several values; only the one under way was finished


def test_a_long_compiled_call_does_not_hold_a_stop():
    """A signal handler waits for the main thread to return from compiled code; interruptible() does not."""
    import time

    release = threading.Event()

    def long_call(value):
        release.wait(30)  # stands in for a factorisation that would not return for a long time
        return value

    release.set()
    assert stopping.interruptible("a plain call", long_call, 7) == 7  # outside a run: a plain call
    release.clear()
    signal = stopping.StopSignal()
    threading.Timer(0.3, signal.request).start()
    started = time.perf_counter()
    with stopping.watching(signal), pytest.raises(stopping.StopRequested, match="the long call"):
        stopping.interruptible("the long call", long_call, 1, poll_s=0.05)
    assert time.perf_counter() - started < 5  # not the 30 s the call would have taken
    release.set()
    with stopping.watching(stopping.StopSignal()), pytest.raises(ZeroDivisionError):  # errors reach the caller
        stopping.interruptible("a failing call", lambda: 1 / 0)
