"""The workspace: one folder holding imported datasets, feature caches and training runs.

Layout::

    workspace/
      datasets/<name>/  items.parquet, interactions.parquet, users.parquet?, schema.json,
                        manifest.json, images/...
      features/         cached encoder outputs (see recsys.features.cache)
      runs/<run id>/    one folder per training run

It is the single source of truth the app reads. The location is, in order: the ``root`` argument,
the ``RECSYS_WORKSPACE`` environment variable, ``./workspace``. Every write goes to a temporary
name and is renamed into place, so a crash or a failed import never leaves half a dataset and never
replaces a good one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .atomic import atomic_directory, atomic_write_json, clean_leftovers, leftover_name
from .data import schema as S
from .data.bundle import CatalogBundle, LoadResult, discard_bundle, load_bundle, safe_relative_path
from .data.report import ValidationReport

ENV_VAR = "RECSYS_WORKSPACE"
DEFAULT_ROOT = "workspace"
_NAME = re.compile(r"[^a-z0-9_-]+")
MAX_NAME_LENGTH = 100
# a run id or dataset name is one folder name under runs/ or datasets/: never a path, never hidden
_VALID_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,%d}" % (MAX_NAME_LENGTH - 1))
log = logging.getLogger(__name__)
NAME_RULE = f"use letters, digits, '.', '_' and '-' (no leading dot, at most {MAX_NAME_LENGTH} characters)"


class InvalidName(ValueError):
    """A run id or dataset name that is not a plain folder name (a path, a hidden name, odd characters)."""


def validate_name(kind: str, value: Any) -> str:
    """``value`` if it is a valid ``kind`` ("run id", "dataset name"), else :class:`InvalidName`.

    The one check every entry point applies to names it is given (command line, app, Workspace): names
    are addressed inside the workspace only, so ``../x``, ``/abs/path``, ``a/b`` and ``.hidden`` are refused.
    Names the studio derives itself (from a file name, a timestamp) go through :func:`dataset_name` or are
    built from valid parts, so they always pass.
    """
    if not isinstance(value, str) or not _VALID_NAME.fullmatch(value):
        raise InvalidName(f"{kind} {str(value)!r} is not allowed: {NAME_RULE}")
    return value


def dataset_name(text: str) -> str:
    """A valid dataset name derived from any text (a file stem such as "My Shop (2)" -> "my-shop-2"):
    lowercase letters, digits, '-' and '_'. For names people type, use :func:`validate_name` instead."""
    name = _NAME.sub("-", str(text).strip().lower()).strip("-_")
    return name[:64].strip("-_") or "dataset"


@dataclass
class DatasetInfo:
    name: str
    path: Path
    manifest: dict[str, Any]
    damaged: str | None = None  # what cannot be read and what to do; None when every file reads

    @property
    def counts(self) -> dict[str, int]:
        counts = self.manifest.get("counts")
        return counts if isinstance(counts, dict) else {}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "counts": self.counts, "damaged": self.damaged}


@dataclass
class ImportResult:
    report: ValidationReport
    name: str
    path: Path | None  # None when the import was refused

    @property
    def ok(self) -> bool:
        return self.path is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "dataset": self.name,
            "path": str(self.path) if self.path else None,
            **self.report.to_dict(),
        }


class DatasetNotFound(LookupError):
    pass


class UnknownUsers(LookupError):
    """``forget`` was given user ids the dataset does not hold; nothing was changed."""

    def __init__(self, dataset: str, unknown: list[str]):
        shown = ", ".join(repr(u) for u in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        # the workspace keeps no record of who was forgotten, so it cannot tell "already forgotten" apart
        super().__init__(
            f"dataset '{dataset}' has no user {shown} (never in it, or already forgotten: the workspace keeps "
            "no list of forgotten ids); nothing was changed"
        )
        self.dataset = dataset
        self.unknown = unknown


@dataclass
class ForgetResult:
    """What :meth:`Workspace.forget_users` did: counts only, never the ids."""

    dataset: str
    users: int
    interactions_removed: int
    user_rows_removed: int
    runs_marked: list[str]
    files_dropped: list[str]
    pseudonymised: bool
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "forgotten_users": self.users,
            "interactions_removed": self.interactions_removed,
            "user_rows_removed": self.user_rows_removed,
            "runs_marked": self.runs_marked,
            "files_dropped": self.files_dropped,
            "pseudonymised": self.pseudonymised,
            "at": self.at,
        }


class DatasetDamaged(RuntimeError):
    """A stored dataset with a file that cannot be read; the message names the file and what to do."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"dataset '{name}' is damaged: {problem}")
        self.dataset = name
        self.problem = problem


# the files a stored dataset needs (users.parquet only when it was imported with users)
_JSON_FILES = ("manifest.json", "schema.json")
_TABLE_FILES = ("items.parquet", "interactions.parquet", "users.parquet")


class Workspace:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root or os.environ.get(ENV_VAR) or DEFAULT_ROOT).resolve()
        self.datasets_dir = self.root / "datasets"
        self.features_dir = self.root / "features"
        self.runs_dir = self.root / "runs"
        for folder in (self.datasets_dir, self.features_dir, self.runs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._checked: dict[str, tuple[list, tuple[dict[str, Any], str | None]]] = {}
        # what a killed import, training or deletion left behind, one line each ("removed ... (1.2 GB)")
        self.cleaned: list[str] = self._recover()

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    # ------------------------------------------------------------------ datasets
    def dataset_path(self, name: str) -> Path:
        """The folder of dataset ``name``; :class:`InvalidName` unless it is a valid dataset name."""
        return self.datasets_dir / validate_name("dataset name", name)

    def run_path(self, run_id: str) -> Path:
        """The folder of run ``run_id``; :class:`InvalidName` unless it is a valid run id (runs are
        addressed by id, never by a path)."""
        return self.runs_dir / validate_name("run id", run_id)

    def list_datasets(self) -> list[DatasetInfo]:
        """Every stored dataset, each checked cheaply (JSON files parse, Parquet footers read): a damaged one
        is listed with ``damaged`` saying which file and what to do, so one bad file never hides the others."""
        infos = []
        for folder in sorted(self.datasets_dir.iterdir()):
            manifest = folder / "manifest.json"
            # hidden folders are imports or deletions under way; a folder someone made by hand with a name
            # that is not valid could not be opened by name, so it is not listed either
            if not _VALID_NAME.fullmatch(folder.name) or not manifest.is_file():
                continue
            manifest_data, problem = self._check_dataset(folder)
            infos.append(DatasetInfo(folder.name, folder, manifest_data, problem))
        return infos

    def dataset_damage(self, name: str) -> str | None:
        """What is damaged in stored dataset ``name`` and what to do (None when its files read, or when there
        is no such dataset): for refusing to start work on it before anything is written."""
        folder = self.dataset_path(name)
        return self._check_dataset(folder)[1] if (folder / "manifest.json").is_file() else None

    def _check_dataset(self, folder: Path) -> tuple[dict[str, Any], str | None]:
        """(the manifest, or {} when it cannot be read; what is damaged, or None). Cached per Workspace by the
        files' size and modification time: the app lists datasets several times per page."""
        signature: list[tuple[int, int] | None] = []  # (mtime, size) per file, None where it is missing
        for file in (*_JSON_FILES, *_TABLE_FILES):
            try:
                stat = (folder / file).stat()
                signature.append((stat.st_mtime_ns, stat.st_size))
            except OSError:
                signature.append(None)
        cached = self._checked.get(folder.name)
        if cached is not None and cached[0] == signature:
            return cached[1]
        result = self._verify_dataset(folder)
        self._checked[folder.name] = (signature, result)
        return result

    def _verify_dataset(self, folder: Path) -> tuple[dict[str, Any], str | None]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        manifest: dict[str, Any] = {}
        for file in _JSON_FILES:
            try:
                data = json.loads((folder / file).read_text(encoding="utf-8"))
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
                if file == "schema.json":
                    S.Schema.from_dict(data)
            except (OSError, ValueError) as exc:  # SchemaError and JSONDecodeError are ValueErrors
                return manifest, self._damage(folder, file, exc)
            if file == "manifest.json":
                manifest = data
        for file in _TABLE_FILES:
            path = folder / file
            if file == "users.parquet" and not path.exists():
                continue
            try:
                pq.read_metadata(path)  # the footer only: cheap, and a truncated file has none
            except (OSError, ValueError, pa.ArrowException) as exc:
                return manifest, self._damage(folder, file, exc)
        return manifest, None

    def _damage(self, folder: Path, file: str, exc: BaseException) -> str:
        """What :class:`DatasetDamaged` and ``DatasetInfo.damaged`` say: the file (relative to the workspace),
        why it cannot be read, and what to do."""
        if isinstance(exc, FileNotFoundError):
            reason = "is missing"
        else:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            reason = f"cannot be read ({first[:160].rstrip('.')})"
        relative = folder.relative_to(self.root).as_posix()
        # there is no delete command for datasets: importing again under the same name replaces the folder
        return (
            f"{relative}/{file} {reason}. Import it again (python -m recsys import BUNDLE --name {folder.name}) "
            f"or delete the folder {relative}"
        )

    def _recover(self) -> list[str]:
        """Put back datasets an import interrupted between its two renames, and remove the staging copies,
        trash and temporary files of processes that are gone (see :func:`recsys.atomic.clean_leftovers`):
        one glob per folder, so it is cheap enough for every start."""
        from .train.lock import lock_holder

        cleaned = [f"datasets/{line}" for line in clean_leftovers(self.datasets_dir)]
        cleaned += [f"features/{line}" for line in clean_leftovers(self.features_dir, temp_files=True)]
        cleaned += [f"runs/{line}" for line in clean_leftovers(self.runs_dir)]
        try:
            run_dirs = [p for p in self.runs_dir.iterdir() if not p.name.startswith(".") and p.is_dir()]
        except OSError:
            run_dirs = []
        for run_dir in run_dirs:
            # a run trained by a live process (possibly on another machine) is its writer's business
            if lock_holder(run_dir) is None:
                cleaned += [f"runs/{run_dir.name}/{line}" for line in clean_leftovers(run_dir, temp_files=True)]
        return cleaned

    def has_dataset(self, name: str) -> bool:
        """Whether dataset ``name`` exists (False for a name that is not valid: no such dataset can exist)."""
        try:
            return (self.dataset_path(name) / "manifest.json").is_file()
        except InvalidName:
            return False

    # the dataset in use, shared by every window of the studio: the last one imported or chosen
    def active_dataset(self) -> str | None:
        """The active dataset's name, or None when none is set or it no longer exists (an unreadable record
        is ignored: it only remembers a choice)."""
        try:
            name = json.loads((self.root / "active.json").read_text()).get("dataset")
        except (OSError, ValueError, AttributeError):
            return None
        return name if isinstance(name, str) and self.has_dataset(name) else None

    def set_active_dataset(self, name: str) -> None:
        if not (self.dataset_path(name) / "manifest.json").is_file():
            raise DatasetNotFound(f"no dataset named '{name}' in {self.datasets_dir}")
        atomic_write_json(self.root / "active.json", {"dataset": name})

    def import_bundle(
        self,
        source: Any,
        *,
        name: str | None = None,
        schema: Mapping[str, Any] | S.Schema | None = None,
        progress: Callable[[str, int, int], None] | None = None,
        pseudonymise: bool = False,
        **load_options: Any,
    ) -> ImportResult:
        """Validate ``source`` and, only if it has no errors, store it as dataset ``name``.

        A bundle with errors changes nothing in the workspace; the report says why. A ``name`` given
        must be valid (:class:`InvalidName` otherwise, before anything is read); without one the name is
        derived from the folder or zip name (``My Shop (2).zip`` -> ``my-shop-2``). With ``pseudonymise`` every
        user id is stored as its keyed hash (:func:`recsys.privacy.pseudonym`): the raw ids never reach the disk.
        """
        if name is not None:
            validate_name("dataset name", name)
        result: LoadResult = load_bundle(source, schema=schema, name=name, progress=progress, **load_options)
        final_name = name or dataset_name(result.bundle.name if result.bundle else "upload")
        if not result.ok:
            discard_bundle(result.bundle)
            return ImportResult(result.report, final_name, None)
        bundle = result.bundle
        assert bundle is not None
        if not pseudonymise:
            _warn_of_email_ids(bundle, result.report)
        try:
            target = self.dataset_path(final_name)
            with atomic_directory(target) as staging:
                self._write_dataset(bundle, staging, final_name, result.report, source, progress, pseudonymise)
        finally:
            discard_bundle(bundle)
        self.set_active_dataset(final_name)
        return ImportResult(result.report, final_name, target)

    def _write_dataset(
        self,
        bundle: CatalogBundle,
        folder: Path,
        name: str,
        report: ValidationReport,
        source: Any,
        progress: Callable[[str, int, int], None] | None,
        pseudonymise: bool = False,
    ) -> None:
        items = bundle.items.copy()
        interactions, users = bundle.interactions, bundle.users
        warnings = [issue.format() for issue in report.warnings]
        mapping: dict[str, str] | None = None
        if pseudonymise:
            from .privacy import pseudonym, workspace_key

            key = workspace_key(self.root)
            raw = pd.unique(
                pd.concat(
                    [interactions["user_id"], users["user_id"] if users is not None else pd.Series([], dtype=object)]
                ).astype(str)
            )
            mapping = {user: pseudonym(key, user) for user in raw}
            if len(set(mapping.values())) != len(mapping):  # 64-bit pseudonyms: never expected, but never silent
                raise RuntimeError("two user ids got the same pseudonym; import without --pseudonymise")
            interactions = interactions.assign(user_id=interactions["user_id"].astype(str).map(mapping))
            if users is not None:
                users = users.assign(user_id=users["user_id"].astype(str).map(mapping))
            # a column marked ignore in the users or interactions table (an e-mail, a name, an IP) is no feature:
            # with pseudonyms asked for it is not stored at all, so the raw identity does not sit beside them
            users = S.visible_users(users, bundle.schema)
            ignored = bundle.schema.columns_with("interactions", S.IGNORE)
            interactions = interactions.drop(columns=[c for c in ignored if c in interactions and c != "user_id"])
            # a warning may quote a raw id (e.g. a user with no interactions): such warnings are not stored
            warnings = _scrub_texts(warnings, set(mapping))
        image_column = bundle.schema.image_column
        copied = 0
        if image_column:
            # pictures are copied under images/ with their relative path kept, so the stored
            # dataset is self-contained and the original bundle may be deleted
            values = items[image_column].tolist()
            for position, value in enumerate(values):
                relative = safe_relative_path(value)
                if relative is None:
                    continue
                source_path = bundle.image_path(value)  # None for a symbolic link out of the bundle
                if source_path is None or not source_path.is_file():
                    values[position] = ""  # validation blanked these already; never copy from outside
                    continue
                stored = Path("images") / relative if relative.parts[0] != "images" else Path(relative)
                destination = folder / stored
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source_path, destination)
                values[position] = stored.as_posix()
                copied += 1
                if progress is not None and (copied % 500 == 0):
                    progress("copy images", position + 1, len(values))
            items[image_column] = values
        _write_parquet(items, folder / "items.parquet")
        _write_parquet(interactions, folder / "interactions.parquet")
        if users is not None:
            _write_parquet(users, folder / "users.parquet")
        atomic_write_json(folder / "schema.json", bundle.schema.to_dict())
        # extra material a bundle carries (e.g. the demo's ground truth) travels along untouched
        # (file by file: a symbolic link out of the bundle, or to a folder, is skipped, as validation said)
        for relative in bundle.extra_files()[0]:
            destination = folder / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(bundle.root / relative, destination)
            if mapping is not None:  # extra tables keyed by user (the demo's ground truth) get the pseudonyms too
                _rewrite_user_table(
                    destination,
                    lambda frame: frame.assign(user_id=frame["user_id"].astype(str).map(lambda u: mapping.get(u, u))),
                )
        manifest = {
            "name": name,
            "source": str(source) if isinstance(source, (str, os.PathLike)) else "upload",
            "imported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "counts": bundle.counts() | {"images_copied": copied},
            "files": bundle.files,
            "warnings": warnings,
            "reasons": bundle.schema.reasons,
        }
        if any(bundle.schema.units.values()):
            manifest["units"] = {t: dict(u) for t, u in bundle.schema.units.items() if u}
        if any(bundle.schema.amount_styles.values()):
            manifest["amount_styles"] = {t: dict(u) for t, u in bundle.schema.amount_styles.items() if u}
        if mapping is not None:
            # which key is not said: the one in this workspace's .secret/ folder, never copied anywhere
            manifest["pseudonymised"] = {"method": "HMAC-SHA256, workspace key", "prefix": "u_", "hex_digits": 16}
        atomic_write_json(folder / "manifest.json", manifest)

    def dataset_imported_at(self, name: str) -> str | None:
        """When the stored dataset ``name`` was imported (its manifest's UTC time), or None if unknown: a
        re-import under the same name changes it, so a run can tell whether its dataset was replaced."""
        try:
            manifest = json.loads((self.dataset_path(name) / "manifest.json").read_text())
        except (OSError, ValueError):
            return None
        value = manifest.get("imported_at") if isinstance(manifest, dict) else None
        return str(value) if value else None

    def load_dataset(self, name: str) -> CatalogBundle:
        """The stored dataset as a :class:`CatalogBundle` whose pictures live in its folder;
        :class:`DatasetDamaged` (naming the file) when one of its files cannot be read."""
        import pyarrow as pa

        folder = self.dataset_path(name)
        if not (folder / "manifest.json").is_file():
            available = ", ".join(info.name for info in self.list_datasets()) or "none yet"
            raise DatasetNotFound(f"no dataset named '{name}' in {self.datasets_dir} (available: {available})")
        manifest, problem = self._check_dataset(folder)
        if problem:
            raise DatasetDamaged(name, problem)
        file = "schema.json"
        try:  # the check reads footers only: a file damaged in its middle fails here, named the same way
            schema = S.Schema.read(folder / file)
            reasons = manifest.get("reasons", {})
            schema.reasons = reasons if isinstance(reasons, dict) else {}
            schema.units = _table_strings(manifest.get("units", {}))
            schema.amount_styles = _table_strings(manifest.get("amount_styles", {}))
            tables = {}
            for file in _TABLE_FILES:
                path = folder / file
                tables[file] = pd.read_parquet(path) if file != "users.parquet" or path.is_file() else None
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise DatasetDamaged(name, self._damage(folder, file, exc)) from exc
        return CatalogBundle(
            items=tables["items.parquet"],
            interactions=tables["interactions.parquet"],
            users=tables["users.parquet"],
            schema=schema,
            root=folder,
            name=folder.name,
            files={"items": "items.parquet", "interactions": "interactions.parquet"},
        )

    def delete_dataset(self, name: str) -> None:
        folder = self.dataset_path(name)
        if folder.exists():
            trash = folder.with_name(leftover_name("deleted", folder.name, str(int(time.time()))))
            os.replace(folder, trash)  # one rename: readers never see half a folder
            shutil.rmtree(trash, ignore_errors=True)

    # ------------------------------------------------------------------ privacy
    def forget_users(self, name: str, user_ids: list[str] | tuple[str, ...]) -> ForgetResult:
        """Remove users' interactions and user rows from stored dataset ``name``, for good.

        The dataset is written again as a new folder through :func:`atomic_directory` (unchanged files, such as
        pictures, hard-linked when the filesystem allows, else copied) and swapped in with one rename, so a crash
        or a SIGKILL at any point leaves the old dataset or the new one, never a mix. Ids the dataset does not
        hold raise :class:`UnknownUsers` before anything is written. On a pseudonymised dataset the raw ids are
        given (they are hashed with the workspace key; a pseudonym itself is accepted too).

        The manifest records how many users were forgotten and when, never who. Every run trained on this
        dataset gets a ``privacy.json`` marker (:func:`recsys.privacy.mark_run`): its saved model still embeds
        these users until it is retrained. Runs write no explanation caches or exports into their folders (the
        model zip is built on demand), so there is nothing else in them to scrub.
        """
        from .privacy import mark_run, pseudonym, workspace_key

        requested = list(dict.fromkeys(str(u).strip() for u in user_ids if str(u).strip()))
        if not requested:
            raise ValueError("name at least one user to forget")
        bundle = self.load_dataset(name)  # DatasetNotFound / DatasetDamaged: nothing to forget from
        folder = Path(bundle.root)
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        pseudonymised = bool(manifest.get("pseudonymised"))
        key = workspace_key(self.root)
        stored = set(bundle.interactions["user_id"].astype(str).unique())
        if bundle.users is not None:
            stored |= set(bundle.users["user_id"].astype(str).unique())
        forget: set[str] = set()
        unknown: list[str] = []
        for user in requested:
            if user in stored:
                forget.add(user)
            elif pseudonymised and pseudonym(key, user) in stored:
                forget.add(pseudonym(key, user))
            else:
                unknown.append(user)
        if unknown:
            raise UnknownUsers(name, unknown)
        at = time.time()
        # runs first: if the forget is interrupted the marker errs on the safe side (the run does hold these
        # people), and running the forget again completes it (the ids are still in the old dataset)
        marked = []
        from .train.records import read_run_record  # light: no model code is imported for a forget

        for run_dir in sorted(self.runs_dir.iterdir()):
            run = None if run_dir.name.startswith(".") else read_run_record(run_dir, {})
            if run is not None and run.dataset == name:
                mark_run(run.path, key, name, sorted(forget), at)
                marked.append(run.run_id)
        interactions = bundle.interactions[~bundle.interactions["user_id"].astype(str).isin(forget)]
        users = None if bundle.users is None else bundle.users[~bundle.users["user_id"].astype(str).isin(forget)]
        needles = [u.encode("utf-8") for u in forget] + [u.encode("utf-8") for u in requested if u not in forget]
        dropped: list[str] = []
        with atomic_directory(folder) as staging:
            for path in sorted(folder.rglob("*")):
                relative = path.relative_to(folder)
                target = staging / relative
                if path.is_dir() or relative.as_posix() in ("interactions.parquet", "users.parquet", "manifest.json"):
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if relative.parts[0] in ("images",) or relative.as_posix() in ("items.parquet", "schema.json"):
                    _link_or_copy(path, target)  # holds no user id
                elif _rewrite_user_table(path, lambda frame: frame[~frame["user_id"].astype(str).isin(forget)], target):
                    continue  # an extra table keyed by user (the demo's ground truth): their rows dropped
                elif any(needle in path.read_bytes() for needle in needles):
                    dropped.append(relative.as_posix())  # extra material naming them that cannot be edited
                else:
                    _link_or_copy(path, target)
            _write_parquet(interactions, staging / "interactions.parquet")
            if users is not None:
                _write_parquet(users, staging / "users.parquet")
            history = [entry for entry in manifest.get("forgotten") or [] if isinstance(entry, dict)]
            history.append(
                {
                    "at": at,
                    "at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)),
                    "users": len(forget),
                    "interactions": int(len(bundle.interactions) - len(interactions)),
                    **({"files_dropped": dropped} if dropped else {}),
                }
            )
            counts = dict(manifest.get("counts") or {})
            counts.update({"users": int(interactions["user_id"].nunique()), "interactions": int(len(interactions))})
            manifest.update(
                {
                    "counts": counts,
                    "forgotten": history,
                    "warnings": _scrub_texts(list(manifest.get("warnings") or []), forget | set(requested)),
                }
            )
            atomic_write_json(staging / "manifest.json", manifest)
        self._checked.pop(name, None)
        return ForgetResult(
            name,
            len(forget),
            int(len(bundle.interactions) - len(interactions)),
            0 if users is None or bundle.users is None else int(len(bundle.users) - len(users)),
            marked,
            dropped,
            pseudonymised,
            at,
        )


def _warn_of_email_ids(bundle: CatalogBundle, report: ValidationReport) -> None:
    """Say so when the user ids are e-mail addresses (an orders export without a customers table): every page,
    list and export would show them; pseudonymised, they are stored as keyed hashes instead."""
    ids = bundle.interactions["user_id"].drop_duplicates().head(5000).astype(str)
    if len(ids) and ids.str.match(S.EMAIL_ADDRESS).mean() > 0.5:
        report.warning(
            "email_user_ids",
            "the user ids are e-mail addresses: the pages, exports and saved models will show them. To store "
            "keyed pseudonyms instead, import again with 'Pseudonymise user ids' ticked (import --pseudonymise)",
            bundle.files.get("interactions", "interactions"),
            "user_id",
        )


def _table_strings(value: Any) -> dict[str, dict[str, str]]:
    """A manifest's ``{table: {column: text}}`` entry (units, amount styles) as strings; {} when malformed."""
    if not isinstance(value, dict):
        return {}
    return {str(t): {str(c): str(u) for c, u in m.items()} for t, m in value.items() if isinstance(m, dict)}


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link (instant, no extra space; safe because every write in the workspace replaces a file by rename,
    never edits one in place), or a copy where the filesystem has none."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


_USER_TABLES = (".csv", ".parquet")


def _rewrite_user_table(path: Path, change: Callable[[pd.DataFrame], pd.DataFrame], target: Path | None = None) -> bool:
    """Apply ``change`` to a CSV/Parquet table with a ``user_id`` column and write it to ``target`` (default: in
    place); False, writing nothing, for any other file."""
    if path.suffix.lower() not in _USER_TABLES:
        return False
    try:
        frame = (
            pd.read_parquet(path)
            if path.suffix.lower() == ".parquet"
            else pd.read_csv(path, dtype=str, keep_default_na=False)
        )
    except Exception:  # not a table after all: the caller treats it as an opaque file
        return False
    if "user_id" not in frame.columns:
        return False
    frame = change(frame)
    target = target or path
    if path.suffix.lower() == ".parquet":
        _write_parquet(frame, target)
    else:
        target.write_text(frame.to_csv(index=False), encoding="utf-8")
    return True


_TOKEN = re.compile(r"[^\s'\",;:()\[\]{}]+")


def _scrub_texts(texts: list[str], ids: set[str]) -> list[str]:
    """``texts`` (import warnings) without those that quote one of ``ids``; a note says how many were left out.
    Ids are matched as whole tokens (a short numeric id could otherwise match any row number), and as plain
    substrings when they hold spaces or punctuation a token cannot."""
    odd = [i for i in ids if not _TOKEN.fullmatch(i)]
    kept, removed = [], 0
    for text in texts:
        tokens = set(_TOKEN.findall(text)) | {t.rstrip(".") for t in _TOKEN.findall(text)}
        if tokens & ids or any(i in text for i in odd):
            removed += 1
        else:
            kept.append(text)
    if removed:
        kept.append(f"[note] {removed} warning(s) naming a user were removed for privacy")
    return kept


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object:
            # mixed object columns (e.g. a JSON Lines table) would make pyarrow guess; store text
            kinds = {type(v) for v in frame[column].dropna().head(1000)}
            if len(kinds) > 1 or (kinds and not kinds <= {str}):
                frame[column] = frame[column].map(lambda v: None if v is None else str(v))
    frame.to_parquet(path, index=False)


def ensure_demo_dataset(workspace: Workspace, progress: Callable[[str, int, int], None] | None = None) -> str:
    """Generate and import the built-in demo catalog once (again when it is damaged); return its dataset name."""
    import tempfile

    from .data.demo import DEMO_DATASET_NAME, generate_demo_bundle

    if workspace.has_dataset(DEMO_DATASET_NAME) and not workspace.dataset_damage(DEMO_DATASET_NAME):
        return DEMO_DATASET_NAME  # a damaged demo is generated again: it replaces the damaged folder
    with tempfile.TemporaryDirectory(prefix="recsys-demo-") as tmp:
        bundle_dir = generate_demo_bundle(Path(tmp) / DEMO_DATASET_NAME)
        result = workspace.import_bundle(bundle_dir, name=DEMO_DATASET_NAME, progress=progress)
    if not result.ok:  # the generator is ours: a failure here is a bug, not a user error
        raise RuntimeError("the built-in demo catalog failed validation:\n" + result.report.format())
    return DEMO_DATASET_NAME
