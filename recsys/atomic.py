"""Atomic writes: write to a temporary name beside the target, then rename.

A crash (or a killed process) at any point leaves either the old file or the new one, never half
of one. ``os.replace`` is atomic on POSIX when source and target are on the same filesystem, which
is why the temporary always lives in the target's own folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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


@contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a staging folder; on success it replaces ``target`` in one rename.

    An existing ``target`` is moved aside first and removed only after the new folder is in
    place; :func:`recover_directory` puts it back if a crash happened between the two renames.
    On an exception the staging folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".staging-{target.name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    trash = target.parent / f".trash-{target.name}-{uuid.uuid4().hex[:8]}"
    if target.exists():
        os.replace(target, trash)
    os.replace(staging, target)
    shutil.rmtree(trash, ignore_errors=True)


def recover_directory(target: str | os.PathLike, stale_after_s: float = 3600.0) -> None:
    """Undo what an interrupted :func:`atomic_directory` left behind next to ``target``.

    Staging folders younger than ``stale_after_s`` are left alone: another process may be
    writing one right now.
    """
    import time

    target = Path(target)
    parent = target.parent
    if not parent.exists():
        return
    trashes = sorted(parent.glob(f".trash-{target.name}-*"), key=lambda p: p.stat().st_mtime)
    if not target.exists() and trashes:
        os.replace(trashes.pop(), target)
    now = time.time()
    stale = [p for p in parent.glob(f".staging-{target.name}-*") if now - p.stat().st_mtime > stale_after_s]
    for leftover in trashes + stale:
        shutil.rmtree(leftover, ignore_errors=True)
