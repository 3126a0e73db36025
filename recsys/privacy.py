"""Privacy controls: pseudonymised user ids, forgetting users, and marking the runs that still hold them.

* **Pseudonyms.** ``import --pseudonymise`` stores ``u_`` + the first 16 hex digits of
  HMAC-SHA256(workspace key, raw id) instead of each user id. The key lives in ``workspace/.secret/pseudonym.key``
  (created with mode 0600 on first use) and is never copied into a dataset, a run or an export: the same raw id
  gets the same pseudonym in every import of one workspace, and nobody without the key can go back.
* **Forgetting.** :meth:`recsys.workspace.Workspace.forget_users` rewrites a dataset without some users (see
  there). The manifest records how many and when, never who.
* **Run markers.** A run trained before a forget still embeds the forgotten people in its saved model (their
  rows of the user matrix, their ids in ``model/ids.json``) until it is retrained. :func:`mark_run` writes
  ``privacy.json`` in its folder: how many users, when, and a keyed hash per user (not the id itself), so the
  run can still answer "do you hold this person?" (:func:`run_holds_user`) without storing who they are.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, overload

from .atomic import atomic_write_json

KEY_FOLDER = ".secret"
KEY_FILE = "pseudonym.key"
MARKER = "privacy.json"
PSEUDONYM_PREFIX = "u_"
PSEUDONYM_HEX = 16  # 64 bits: collisions are checked at import, and none is expected below billions of users
# the same key serves two purposes; a domain prefix keeps a run marker's hash from ever equalling a pseudonym
_MARKER_DOMAIN = b"recsys-forgotten-user\0"


@overload
def workspace_key(root: str | os.PathLike, create: Literal[True] = True) -> bytes: ...
@overload
def workspace_key(root: str | os.PathLike, create: bool) -> bytes | None: ...
def workspace_key(root: str | os.PathLike, create: bool = True) -> bytes | None:
    """The workspace's secret key (32 random bytes), created on first use with mode 0600; None when there is
    none and ``create`` is False."""
    folder = Path(root) / KEY_FOLDER
    path = folder / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        if not create:
            return None
    folder.mkdir(mode=0o700, exist_ok=True)
    key = secrets.token_bytes(32)
    # O_EXCL: two processes creating it at once agree on one key (the loser reads the winner's)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
        handle.flush()
        os.fsync(handle.fileno())
    return key


def pseudonym(key: bytes, raw_id: Any) -> str:
    """The stored id of raw user id ``raw_id``: ``u_`` + 16 hex digits of HMAC-SHA256."""
    digest = hmac.new(key, str(raw_id).encode("utf-8"), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:PSEUDONYM_HEX]


def marker_hash(key: bytes, stored_id: Any) -> str:
    """What a run marker keeps of a forgotten user: a keyed hash of the id as the dataset stored it."""
    return hmac.new(key, _MARKER_DOMAIN + str(stored_id).encode("utf-8"), hashlib.sha256).hexdigest()


def read_marker(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """A run's ``privacy.json``, or None when it has none (or it cannot be read: it is rewritten whole, atomically,
    so that only happens by hand)."""
    try:
        data = json.loads((Path(run_dir) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def mark_run(
    run_dir: str | os.PathLike, key: bytes, dataset: str, stored_ids: Iterable[Any], at: float | None = None
) -> dict[str, Any]:
    """Record in ``run_dir/privacy.json`` that the run was trained with users since forgotten from ``dataset``.
    Idempotent per user: forgetting the same person twice (an interrupted forget run again) counts them once."""
    at = time.time() if at is None else at
    marker = read_marker(run_dir) or {}
    known = set(marker.get("user_hashes") or [])
    fresh = sorted({marker_hash(key, user) for user in stored_ids} - known)
    events = list(marker.get("forgets") or [])
    if fresh:
        events.append({"dataset": dataset, "at": at, "at_utc": _utc(at), "users": len(fresh)})
    marker.update(
        {
            "needs_retrain": True,
            "forgotten_users": len(known) + len(fresh),
            "forgets": events,
            "user_hashes": sorted(known | set(fresh)),
            "note": "users were forgotten from this run's dataset after it was trained: its saved model (model/) still "
            "embeds them until the run is retrained as a new run (the retrained run excludes them); delete "
            "this run once its replacement has finished",
        }
    )
    atomic_write_json(Path(run_dir) / MARKER, marker)
    return marker


def note_retrain(run_dir: str | os.PathLike, new_run_id: str) -> None:
    """Say in the marker which run replaces this one (the old one still holds the users until deleted)."""
    marker = read_marker(run_dir)
    if marker is not None:
        marker["retrained_as"] = [*marker.get("retrained_as", []), new_run_id]
        atomic_write_json(Path(run_dir) / MARKER, marker)


def run_holds_user(run_dir: str | os.PathLike, key: bytes, stored_id: Any) -> bool:
    """Whether the run's marker lists ``stored_id`` (the id as stored: the pseudonym for a pseudonymised dataset)."""
    marker = read_marker(run_dir) or {}
    return marker_hash(key, stored_id) in set(marker.get("user_hashes") or [])


def forgotten_in(run_dir: str | os.PathLike, workspace_root: str | os.PathLike, user_ids: Iterable[Any]) -> set[str]:
    """Which of ``user_ids`` (as the run's model stores them) the run's marker lists as forgotten since it was
    trained. The saved model still knows them until it is retrained; the app, ``export`` and ``serve`` use this to
    stop showing or serving them in the meantime. Empty for a run without a marker (no key is created)."""
    marker = read_marker(run_dir) or {}
    hashes = set(marker.get("user_hashes") or [])
    if not hashes:
        return set()
    key = workspace_key(workspace_root, create=False)
    if key is None:
        return set()
    return {str(user) for user in user_ids if marker_hash(key, user) in hashes}


def _utc(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
