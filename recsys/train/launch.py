"""Start a training run as a detached process, watch it, stop it, delete it.

The app never trains in its own process: :func:`start_run` spawns the same entry point as the
command line (``python -m recsys train --workspace WS --run-id ID --config runs/.launch/ID.config.json``)
in a new session, so a page rerun, a closed tab, a second browser session or even a restart of
the app server does not stop it. The run folder is the only channel back (see
:mod:`recsys.train.run`); :func:`stop_run` sends SIGTERM, on which the trainer ends its current batch,
keeps the best model and the checkpoint (resume evaluates them) and marks the run "stopped".

Launch records live in ``runs/.launch/<run id>.json`` (pid, command, start time) beside the
configuration the process reads (``<run id>.config.json``) and its output ``runs/.launch/<run id>.log``: the trainer refuses a run folder that already
holds files, and for the first seconds (imports) there is no run folder yet, so the record is what
tells "starting" from "never started" (:func:`run_state`).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_json, leftover_name
from ..workspace import DatasetDamaged, Workspace
from .lock import RunBusyError, RunFinishedError, RunNotResumable, busy_message, lock_holder, pid_alive
from .records import ACTIVE_STATES, RunRecord, read_run_record, refuse_resume
from .run import RunConfig, list_runs, new_run_id, read_status

__all__ = [
    "start_run",
    "retrain_run",
    "resume_run",
    "stop_run",
    "delete_run",
    "run_state",
    "log_path",
    "read_log_tail",
    "training_command",
    "launch_config_path",
    "summarize_progress",
    "model_zip",
    "list_all_runs",
    "ACTIVE_STATES",
    "RunBusyError",
    "RunFinishedError",
    "RunNotResumable",
]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_CHILDREN: dict[int, subprocess.Popen] = {}


def _launch_dir(workspace_or_runs: Workspace | Path) -> Path:
    runs = workspace_or_runs.runs_dir if isinstance(workspace_or_runs, Workspace) else Path(workspace_or_runs)
    folder = runs / ".launch"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def launch_config_path(workspace_or_runs: Workspace | Path, run_id: str) -> Path:
    """Where :func:`start_run` writes the configuration the training process reads (``--config``)."""
    return _launch_dir(workspace_or_runs) / f"{run_id}.config.json"


def training_command(workspace: Workspace, config_file: str | Path, run_id: str) -> list[str]:
    """The command line of a run: ``python -m recsys train --config FILE``, the run's configuration being the
    file (:meth:`RunConfig.to_dict`, as the run's config.json will hold it), not flags."""
    return _train_argv(workspace, "--run-id", run_id, "--config", str(config_file))


def _train_argv(workspace: Workspace, *arguments: str) -> list[str]:
    """``python -m recsys train --quiet --workspace WS ARGUMENTS`` with this interpreter."""
    return [sys.executable, "-m", "recsys", "train", "--quiet", "--workspace", str(workspace.root), *arguments]


def _spawn(workspace: Workspace, run_id: str, command: list[str]) -> int:
    launch = _launch_dir(workspace)
    log_file = launch / f"{run_id}.log"
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    options: dict[str, Any] = {}
    if os.name == "nt":  # pragma: no cover - the studio is developed on Linux
        options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
    else:
        options["start_new_session"] = True
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            command,
            cwd=str(PROJECT_ROOT),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            close_fds=True,
            **options,
        )
    atomic_write_json(
        launch / f"{run_id}.json", {"run_id": run_id, "pid": process.pid, "command": command, "launched": time.time()}
    )
    # reap the child when it ends (a zombie would look alive to os.kill); daemon: never blocks exit
    _CHILDREN[process.pid] = process
    threading.Thread(target=_reap, args=(process,), daemon=True, name=f"reap-{run_id}").start()
    return process.pid


def _reap(process: subprocess.Popen) -> None:
    process.wait()
    _CHILDREN.pop(process.pid, None)


def start_run(workspace: Workspace, config: RunConfig, run_id: str | None = None) -> str:
    """Spawn a detached training process for ``config``; return its run id at once.

    Raises ``ValueError`` for a dataset the workspace does not have (the process would only fail),
    :class:`recsys.workspace.DatasetDamaged` for one with a file that cannot be read,
    :class:`recsys.workspace.InvalidName` (a ``ValueError``) for a run id or dataset name that is not
    a plain name, and ``FileExistsError`` when ``run_id`` is taken.
    """
    if not (workspace.dataset_path(config.dataset) / "manifest.json").is_file():  # InvalidName for a bad name
        names = ", ".join(i.name for i in workspace.list_datasets()) or "none yet"
        raise ValueError(f"no dataset named '{config.dataset}' in the workspace (available: {names})")
    problem = workspace.dataset_damage(config.dataset)
    if problem:  # the process would only fail on it, leaving a failed run behind
        raise DatasetDamaged(config.dataset, problem)
    run_id = run_id or new_run_id(config)
    if workspace.run_path(run_id).exists() or (_launch_dir(workspace) / f"{run_id}.json").exists():
        raise FileExistsError(f"a run named {run_id} already exists")
    config_file = launch_config_path(workspace, run_id)
    atomic_write_json(config_file, {"run_id": run_id, "config": config.to_dict()})
    _spawn(workspace, run_id, training_command(workspace, config_file, run_id))
    return run_id


def retrain_run(workspace: Workspace, run_id: str) -> str:
    """Start a new run with the configuration of run ``run_id`` (the same dataset, now without the users forgotten
    from it); return the new run id. The old run keeps its model, and so the forgotten users, until it is deleted;
    its privacy marker names the run that replaces it."""
    from ..privacy import note_retrain

    run_dir = workspace.run_path(run_id)
    try:
        config = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text())["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FileNotFoundError(f"run {run_id} has no readable configuration to train again") from exc
    new_id = start_run(workspace, config)
    note_retrain(run_dir, new_id)
    return new_id


def resume_run(workspace: Workspace, run_id: str, force: bool = False) -> str:
    """Continue a stopped, interrupted or failed run from its last checkpoint, in a detached process.

    Refuses (before any process starts) a run that is still training (:class:`RunBusyError`), one that
    cannot be continued (:class:`RunNotResumable`: a cross-validation) and a finished one
    (:class:`RunFinishedError`) unless ``force``, which trains it again.
    """
    run_dir = workspace.run_path(run_id)
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"no run {run_id} to resume")
    _refuse_if_busy(run_dir, run_id, "stop it first")
    status = run_state(run_dir)
    record = read_run_record(run_dir, status)
    # refused here, before a process would mark the run failed (an unreadable config: the trainer says so)
    refuse_resume(run_id, record.config if record is not None else {})
    if status["state"] == "finished" and not force:
        raise RunFinishedError(
            f"run {run_id} has finished; use --force to train it again", {"reason": "finished", "run_id": run_id}
        )
    _spawn(workspace, run_id, _train_argv(workspace, "--resume", run_id, *(["--force"] if force else [])))
    return run_id


def _refuse_if_busy(run_dir: Path, run_id: str, action: str) -> None:
    """:class:`RunBusyError` while a process holds the run's lock, or the launcher sees it running/starting."""
    holder = lock_holder(run_dir)
    if holder is not None:
        raise RunBusyError(
            busy_message(run_id, holder.get("pid", "unknown"), action),
            {"reason": "busy", "run_id": run_id, "pid": holder.get("pid")},
        )
    state = run_state(run_dir)
    if state["state"] in ACTIVE_STATES:
        raise RunBusyError(
            busy_message(run_id, state.get("pid", "unknown"), action),
            {"reason": "busy", "run_id": run_id, "pid": state.get("pid")},
        )


def _launch_record(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir.parent / ".launch" / f"{run_dir.name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_state(run_dir: str | Path) -> dict[str, Any]:
    """:func:`read_status` plus what only the launcher knows.

    ``state`` is one of running / finished / stopped / failed / interrupted (from the run folder),
    ``starting`` (launched, the process is alive but has not written its status yet) or
    ``failed`` with an ``error`` when the process ended before it could (e.g. a bad option).
    """
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    record = _launch_record(run_dir)
    if record is not None:
        launched_pid = record.get("pid")
        # a resumed run: the status still names the previous pid until the new process writes its own
        if (
            status.get("state") in ("interrupted", "stopped", "failed")
            and launched_pid != status.get("pid")
            and pid_alive(launched_pid)
            and record.get("launched", 0) > status.get("started", 0)
        ):
            return status | {"state": "starting", "pid": launched_pid}
    if status.get("state") != "unknown":
        return status
    if record is None:
        return {"state": "unknown"}
    if pid_alive(record.get("pid")):
        return {"state": "starting", "pid": record.get("pid"), "started": record.get("launched")}
    tail = read_log_tail(run_dir, 20).strip()
    last = tail.splitlines()[-1] if tail else "the training process ended before it wrote anything"
    return {
        "state": "failed",
        "pid": record.get("pid"),
        "started": record.get("launched"),
        "error": f"the training process did not start: {last}",
        "traceback": tail,
    }


def list_all_runs(workspace: Workspace) -> list[RunRecord]:
    """Every run, newest first, as the app shows them: :func:`recsys.train.run.list_runs` with the
    launcher's fresh :func:`run_state`, plus the runs launched but still starting.

    A run still starting has a launch record but no run folder (or no config.json) yet: its record
    holds only the dataset and model its command line names, and no metrics.
    """
    runs = list_runs(workspace, read_state=run_state)
    known = {run.run_id for run in runs}
    launch = workspace.runs_dir / ".launch"
    for record_file in sorted(launch.glob("*.json")) if launch.is_dir() else []:
        run_id = record_file.stem
        if run_id in known or run_id.endswith(".config"):  # <run id>.config.json: the run's configuration
            continue
        try:
            command = json.loads(record_file.read_text()).get("command") or []
        except (OSError, ValueError, AttributeError):
            continue
        if not isinstance(command, list):
            command = []
        config = _launch_config(launch, run_id) or {  # launch records before --config named them as flags
            "dataset": _flag_value(command, "--data", "?"),
            "model": _flag_value(command, "--model", "fusion"),
        }
        run_dir = workspace.runs_dir / run_id
        runs.append(RunRecord(run_id=run_id, path=run_dir, config=config, status=run_state(run_dir)))
    runs.sort(key=lambda run: run.run_id, reverse=True)
    return runs


def _launch_config(launch: Path, run_id: str) -> dict[str, Any] | None:
    """``dataset`` and ``model`` of the configuration a launched run was given (None when unreadable)."""
    try:
        config = json.loads(launch_config_path(launch.parent, run_id).read_text())["config"]
        return {"dataset": str(config.get("dataset", "?")), "model": str(config.get("model", "fusion"))}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _flag_value(command: list[Any], flag: str, default: str) -> str:
    """The value after ``flag`` in a launch record's command line."""
    position = command.index(flag) + 1 if flag in command else len(command)
    return str(command[position]) if position < len(command) else default


def log_path(run_dir: str | Path) -> Path:
    """Where the process output of a run is (``log.txt`` in the run folder, or the launch log)."""
    run_dir = Path(run_dir)
    inside = run_dir / "log.txt"
    return inside if inside.is_file() else run_dir.parent / ".launch" / f"{run_dir.name}.log"


def read_log_tail(run_dir: str | Path, lines: int = 40) -> str:
    path = log_path(run_dir)
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64_000))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    text = text.replace("\r", "\n")
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def _is_trainer(pid: int) -> bool:
    """The pid still belongs to a recsys process (not a recycled pid of something else)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"recsys" in handle.read()
    except OSError:
        return os.name == "nt" or not Path("/proc").is_dir()


def stop_run(run_dir: str | Path) -> bool:
    """Ask a running training to stop (SIGTERM): it finishes the current step, keeps the best
    checkpoint, evaluates it and ends as "stopped". Returns False when it was not running."""
    run_dir = Path(run_dir)
    state = run_state(run_dir)
    pid = state.get("pid")
    if state["state"] not in ACTIVE_STATES or not pid or not pid_alive(pid) or not _is_trainer(pid):
        return False
    try:
        os.kill(int(pid), signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def delete_run(workspace: Workspace, run_id: str) -> None:
    """Remove a run folder (and its launch record). Refuses (:class:`RunBusyError`) while the run is
    training: a live process holds its lock, or the launcher sees it starting or running."""
    run_dir = workspace.run_path(run_id)  # InvalidName (a ValueError) for a path or an odd name
    _refuse_if_busy(run_dir, run_id, "stop it before deleting it")
    if run_dir.exists():
        trash = run_dir.with_name(leftover_name("deleted", run_id, str(int(time.time() * 1000))))
        os.replace(run_dir, trash)  # one rename: readers never see half a folder
        shutil.rmtree(trash, ignore_errors=True)
    for suffix in (".json", ".log", ".config.json"):
        (workspace.runs_dir / ".launch" / f"{run_id}{suffix}").unlink(missing_ok=True)


def model_zip(run_dir: str | Path) -> bytes:
    """The run's ``model/`` folder (plus its config.json and metrics.json) as zip bytes."""
    run_dir = Path(run_dir)
    model = run_dir / "model"
    if not (model / "config.json").is_file():
        raise FileNotFoundError(f"run {run_dir.name} has no saved model")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(model.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                archive.write(path, f"{run_dir.name}/model/{path.relative_to(model).as_posix()}")
        for extra in ("config.json", "metrics.json"):
            if (run_dir / extra).is_file():
                archive.write(run_dir / extra, f"{run_dir.name}/{extra}")
    return buffer.getvalue()


# ----------------------------------------------------------------------------- progress


def summarize_progress(events: list[dict[str, Any]], now: float | None = None) -> dict[str, Any]:
    """What a progress display needs, from the events of ``progress.jsonl``.

    Keys: ``stage`` (last stage name), ``features`` ({stage: (done, total)} for "features:text" /
    "features:image"), ``feature_rates`` ({stage: {items_per_second, eta_seconds}} once two counts of a
    stage are in), ``epoch`` (epochs completed), ``max_epochs``, ``step``/``steps`` (within the
    current epoch), ``fraction`` (0..1 of the training loop), ``eta_seconds`` (None when unknown:
    at most, early stopping may end sooner), ``epochs`` (one dict per epoch record, of the current fold
    in cross-validation, where ``fold`` is ``(fold, folds)``), ``results``
    ({model: test metrics}), ``ended`` (end event or None), ``best_epoch``.
    """
    now = time.time() if now is None else now
    out: dict[str, Any] = {
        "stage": None,
        "features": {},
        "epoch": 0,
        "max_epochs": None,
        "step": 0,
        "steps": 0,
        "fraction": 0.0,
        "eta_seconds": None,
        "epochs": [],
        "results": {},
        "ended": None,
        "best_epoch": None,
        "data": None,
        "last_time": None,
        "loss": None,
        "feature_rates": {},
    }
    best = -1.0
    feature_first: dict[str, tuple[float | None, int]] = {}  # stage -> (time, done) of its first count
    session_epochs: list[dict[str, Any]] = []  # the epochs of the latest process (a resume starts a new one)
    for event in events:
        kind = event.get("type")
        out["last_time"] = event.get("time", out["last_time"])
        if kind != "end" and out["ended"] is not None:  # a resumed run: the earlier end (a stop) is history
            out["ended"] = None
            feature_first.clear()
            session_epochs.clear()  # the time per epoch is measured within this process, not across the pause
        if kind == "stage":
            out["stage"] = event.get("stage")
            if event.get("stage") == "data":
                out["data"] = {k: v for k, v in event.items() if k not in ("type", "time", "stage")}
            elif event.get("stage") == "fold":  # cross-validation: each fold trains afresh
                out["fold"] = (int(event.get("fold", 1)), int(event.get("folds", 1)))
                out["epochs"], out["epoch"], out["best_epoch"], best = [], 0, None, -1.0
        elif kind == "step":
            stage = event.get("stage")
            if stage and str(stage).startswith("features:"):
                done, total = int(event.get("done", 0)), int(event.get("total", 0))
                out["features"][stage] = (done, total)
                first = feature_first.setdefault(stage, (event.get("time"), done))
                if event.get("time") and first[0] and event["time"] > first[0] and done > first[1]:
                    rate = (done - first[1]) / (event["time"] - first[0])
                    out["feature_rates"][stage] = {
                        "items_per_second": rate,
                        "eta_seconds": max(0.0, (total - done) / rate),
                    }
            else:
                out["step"], out["steps"] = int(event.get("step", 0)), int(event.get("steps", 0))
                out["loss"] = event.get("loss")
                if event.get("epoch") is not None:
                    out["current_epoch"] = int(event["epoch"])
        elif kind == "epoch":
            out["epochs"].append(event)
            session_epochs.append(event)
            out["epoch"] = int(event.get("epoch", len(out["epochs"]) - 1)) + 1
            out["max_epochs"] = event.get("max_epochs", out["max_epochs"])
            out["step"], out["steps"] = 0, 0
            score = event.get("valid_ndcg@20")
            if score is not None and score > best:
                best, out["best_epoch"] = score, int(event.get("epoch", 0))
        elif kind == "result":
            name = event.get("model")
            if name is not None:
                key = "cold_start" if "cold_start" in event else "test"
                out["results"].setdefault(name, {})[key] = event.get(key)
        elif kind == "end":
            out["ended"] = event
    epochs, max_epochs = out["epochs"], out["max_epochs"]
    if max_epochs:
        within = out["step"] / out["steps"] if out["steps"] and out.get("current_epoch", -1) == out["epoch"] else 0.0
        out["fraction"] = min(1.0, (out["epoch"] + within) / float(max_epochs))
        if epochs:
            first_epoch, last = (session_epochs or epochs)[0], epochs[-1]
            if len(session_epochs) >= 2:
                per_epoch = (last["time"] - first_epoch["time"]) / (len(session_epochs) - 1)
            else:
                per_epoch = float(last.get("seconds") or 0.0)
            remaining = max(0.0, (float(max_epochs) - out["epoch"] - within)) * per_epoch
            if out["ended"] is None:
                out["eta_seconds"] = remaining
            out["seconds_per_epoch"] = per_epoch
    if out["ended"] is not None:
        out["fraction"] = 1.0
        out["eta_seconds"] = 0.0
    return out
