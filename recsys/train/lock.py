"""One writer per run folder: ``RUN/.lock``, created with ``O_EXCL``, held for the whole training.

The lock file holds the pid, host, start time and the process's own start tick (``/proc/PID/stat``), so
a pid that the system has since given to another process is not mistaken for the trainer. A lock whose
process is gone (a SIGKILL, a crash of the machine) is stale: the next :func:`acquire_run_lock` takes it
over and logs that. :func:`lock_holder` says who holds a run, for the launcher's refusals.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

LOCK_NAME = ".lock"
_FRESH_S = 10.0  # an empty or unreadable lock younger than this is being written right now: live
log = logging.getLogger(__name__)


class RunRefused(RuntimeError):
    """A plain-language refusal to act on a run; ``details`` go into the CLI's JSON answer."""

    def __init__(self, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.details = details or {}


class RunBusyError(RunRefused):
    """The run is still training: stop it first."""


class RunNotResumable(RunRefused):
    """The run cannot be continued from where it stopped (a cross-validation): start it again instead."""


class RunFinishedError(RunRefused):
    """The run has finished: resuming it would train it again (only with ``force``)."""


def busy_message(run_id: str, pid: Any, action: str = "stop it first") -> str:
    return f"run {run_id} is still training (pid {pid}); {action}"


def _process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), None where unknown."""
    try:
        with open(f"/proc/{int(pid)}/stat") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[19]
    except (OSError, IndexError, ValueError):
        return None


def pid_alive(pid: Any) -> bool:
    """The process exists and is not a zombie."""
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, OverflowError):
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def read_lock(run_dir: str | Path) -> dict[str, Any] | None:
    """The lock's content; None when there is no lock; ``{}`` when it is empty or unreadable."""
    path = Path(run_dir) / LOCK_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _is_live(run_dir: Path, holder: dict[str, Any]) -> bool:
    if not holder:  # being written this instant, or damaged: live only while it is young
        try:
            return time.time() - (run_dir / LOCK_NAME).stat().st_mtime < _FRESH_S
        except OSError:
            return False
    if holder.get("host") and holder["host"] != socket.gethostname():
        return True  # another machine's process: it cannot be checked from here, so it is not taken over
    if not pid_alive(holder.get("pid")):
        return False
    started = holder.get("proc_start")
    now = _process_start(holder["pid"]) if started else None
    return not (started and now and started != now)  # the pid now belongs to another process: stale


def lock_holder(run_dir: str | Path) -> dict[str, Any] | None:
    """The live lock of a run folder (``pid``, ``host``, ``started``), None when none is held."""
    run_dir = Path(run_dir)
    holder = read_lock(run_dir)
    if holder is None or not _is_live(run_dir, holder):
        return None
    return holder


class RunLock:
    """The lock of one run folder held by this process; :meth:`release` removes it only while it is ours."""

    def __init__(self, run_dir: Path, token: str, taken_over: dict[str, Any] | None = None):
        self.run_dir = run_dir
        self.token = token
        self.taken_over = taken_over  # the stale lock this one replaced, if any

    def release(self) -> None:
        holder = read_lock(self.run_dir)
        if holder and holder.get("token") == self.token:
            (self.run_dir / LOCK_NAME).unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def acquire_run_lock(run_dir: str | Path, run_id: str | None = None) -> RunLock:
    """Create ``run_dir/.lock`` for this process, taking over a stale one; :class:`RunBusyError` when a live
    process holds it."""
    run_dir = Path(run_dir)
    run_id = run_id or run_dir.name
    path = run_dir / LOCK_NAME
    pid = os.getpid()
    token = uuid.uuid4().hex
    taken_over = None
    content = json.dumps(
        {
            "pid": pid,
            "host": socket.gethostname(),
            "started": time.time(),
            "proc_start": _process_start(pid),
            "token": token,
        }
    )
    for _ in range(5):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_lock(run_dir)
            if holder is None:  # removed meanwhile: try again
                continue
            if _is_live(run_dir, holder):
                raise RunBusyError(
                    busy_message(run_id, holder.get("pid", "unknown")),
                    {"reason": "busy", "run_id": run_id, "pid": holder.get("pid")},
                ) from None
            if _take_over(run_dir, holder, run_id):
                taken_over = holder
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        return RunLock(run_dir, token, taken_over)
    raise RunBusyError(
        f"run {run_id} is locked by another process that keeps taking it; try again",
        {"reason": "busy", "run_id": run_id},
    )


def _take_over(run_dir: Path, stale: dict[str, Any], run_id: str) -> bool:
    """Move a stale lock aside. One rename: of two processes taking over at once only one moves it; a lock
    moved by mistake (a live one written between the read and the rename) is put back."""
    path = run_dir / LOCK_NAME
    aside = run_dir / f"{LOCK_NAME}.stale-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    moved = read_lock_file(aside)
    taken = moved == stale
    if not taken:  # not the lock judged stale: restore it unless someone has locked since
        try:
            os.link(aside, path)
        except OSError:
            pass
    else:
        log.warning("run %s: taking over a stale lock of pid %s (the process is gone)", run_id, stale.get("pid"))
    aside.unlink(missing_ok=True)
    return taken


def read_lock_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
