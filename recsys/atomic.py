"""Atomic writes: write to a temporary name beside the target, then rename.

A crash (or a killed process) at any point leaves either the old file or the new one, never half
of one. ``os.replace`` is atomic on POSIX when source and target are on the same filesystem, which
is why the temporary always lives in the target's own folder.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger("recsys.workspace")


def temp_prefix(path: Path) -> str:
    """The start of a temporary file's name beside ``path``: with the writer's pid (see :func:`clean_leftovers`)."""
    return f".{path.name}+{os.getpid()}-"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; these files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    # numpy scalars and paths show up in reports and manifests
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def leftover_name(kind: str, name: str, tail: str | None = None) -> str:
    """``.<kind>-<name>+<pid>-<tail>``: the creating pid lets :func:`clean_leftovers` tell a folder being
    written now from one a killed process left. ``+`` never occurs in a dataset name or run id, so the
    name parses back unambiguously."""
    return f".{kind}-{name}+{os.getpid()}-{tail or uuid.uuid4().hex[:8]}"


@contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a staging folder; on success it replaces ``target`` in one rename.

    An existing ``target`` is moved aside first and removed only after the new folder is in
    place; :func:`clean_leftovers` puts it back if a crash happened between the two renames.
    On an exception the staging folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / leftover_name("staging", target.name)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    trash = target.parent / leftover_name("trash", target.name)
    if target.exists():
        os.replace(target, trash)
    os.replace(staging, target)
    shutil.rmtree(trash, ignore_errors=True)


# .staging-NAME+PID-HEX (now) or .staging-NAME-HEX (before pids were recorded); same for .trash- and .deleted-
_LEFTOVER = re.compile(r"\.(?P<kind>staging|trash|deleted)-(?P<name>.+?)(?:\+(?P<pid>\d+))?-(?P<tail>[^-+]+)")
# a temporary file of an atomic write: .FILE+PID-RANDOM.tmp (now) or .FILE.RANDOM.tmp (before)
_TEMP_FILE = re.compile(r"\..+?(?:\+(?P<pid>\d+)-)?[^+]*\.tmp")


def clean_leftovers(
    folder: str | os.PathLike, stale_after_s: float = 3600.0, temp_files: bool = False, everything: bool = False
) -> list[str]:
    """Undo what interrupted atomic writes left in ``folder``; returns one line per leftover handled.

    A ``.trash-`` folder whose target is missing is put back (a crash between the two renames of
    :func:`atomic_directory`); other staging, trash and ``.deleted-`` folders (and, with ``temp_files``,
    ``.*.tmp`` files) are removed once the process that made them is gone. Names without a pid (written
    before pids were recorded) are removed only when older than ``stale_after_s``, except trash, which
    was always removed at once. ``everything`` removes all of them without restoring: for a caller that
    holds the folder's only writer lock.
    """
    from .train.lock import pid_alive

    folder = Path(folder)
    done: list[str] = []
    try:
        entries = [
            p
            for p in folder.glob(".*")
            if _LEFTOVER.fullmatch(p.name) or (temp_files and p.is_file() and _TEMP_FILE.fullmatch(p.name))
        ]
    except OSError:
        return done
    now = time.time()
    # newest trash first: when a target was replaced twice, the latest good copy is the one put back
    entries.sort(key=lambda p: _mtime(p) or 0.0, reverse=True)
    for path in entries:
        match = _LEFTOVER.fullmatch(path.name) or _TEMP_FILE.fullmatch(path.name)
        assert match is not None  # entries were chosen by these very patterns
        pid = match.group("pid")
        kind = match.groupdict().get("kind")
        if not everything:
            if pid is not None and pid_alive(pid):
                continue  # still being written (or renamed) by a live process
            mtime = _mtime(path)
            if mtime is None:
                continue  # gone meanwhile
            if pid is None and kind != "trash" and now - mtime <= stale_after_s:
                continue  # may be another process's write under way
            if kind == "trash" and not (folder / match.group("name")).exists():
                try:
                    os.replace(path, folder / match.group("name"))
                except OSError:
                    continue
                done.append(f"restored {path.name} as {match.group('name')}")
                log.warning("put back %s from %s (a replace was interrupted)", folder / match.group("name"), path.name)
                continue
        size = _size(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        done.append(f"removed {path.name} ({_human(size)})")
        log.warning("removed leftover %s (%s)", path, _human(size))
    return done


def _mtime(path: Path) -> float | None:
    try:
        return path.lstat().st_mtime
    except OSError:
        return None


def _size(path: Path) -> int:
    if not path.is_dir() or path.is_symlink():
        try:
            return path.lstat().st_size
        except OSError:
            return 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
