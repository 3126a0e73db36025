"""On-disk cache of encoder outputs.

An entry's key is ``sha256(encoder name, encoder version, content hash of the inputs)``; the
content hash covers the texts themselves, or the bytes of every picture file (not its path), in
order. An entry is ``<key>.npz`` (written with ``np.savez`` to a temporary name, then
``os.replace`` - atomic) and ``<key>.json`` (encoder name, version, n, dim, created time, ...).
Entries are read with ``np.load(..., allow_pickle=False)``; a damaged entry counts as a miss.

Dense features are stored as float16 when every value fits it (``recsys.features.extract``: half the disk;
callers get them back as float32, rounded the same way on the first extraction, so fresh = cached).

Per-row content hashes are stored with each entry, so a row-independent encoder can reuse the
rows of an earlier entry when only a few inputs changed (see ``FeatureCache.find_rows``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import temp_prefix

__all__ = [
    "FeatureCache",
    "cache_key",
    "hash_texts",
    "hash_files",
    "combine_row_hashes",
    "MISSING_ROW",
]

log = logging.getLogger(__name__)

MISSING_ROW = "missing"
_FORMAT = "recsys.feature-cache/1"


def cache_key(encoder_name: str, encoder_version: str, content_hash: str) -> str:
    """sha256 hex digest over (name, version, content hash), unambiguously framed."""
    digest = hashlib.sha256()
    for part in (_FORMAT, encoder_name, encoder_version, content_hash):
        data = part.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def combine_row_hashes(row_hashes: Iterable[str]) -> str:
    """One content hash over an ordered list of row hashes (the count is included)."""
    digest = hashlib.sha256()
    count = 0
    for h in row_hashes:
        digest.update(h.encode("ascii"))
        digest.update(b"\n")
        count += 1
    digest.update(f"n={count}".encode())
    return digest.hexdigest()


def hash_texts(texts: Sequence[str]) -> tuple[str, list[str]]:
    """``(content hash, per-row hashes)`` of texts (sha256 of their UTF-8 bytes)."""
    rows = [hashlib.sha256(str(t).encode("utf-8", "surrogatepass")).hexdigest() for t in texts]
    return combine_row_hashes(rows), rows


def _hash_file(path) -> str:
    if path is None:
        return MISSING_ROW
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    except OSError as exc:
        # the same unreadable state hashes the same; it changes when the file appears
        return "unreadable:" + hashlib.sha256(f"{type(exc).__name__}".encode()).hexdigest()[:16]


def hash_files(paths: Sequence, workers: int = 4) -> tuple[str, list[str]]:
    """``(content hash, per-row hashes)`` of files' bytes; None -> ``MISSING_ROW``."""
    if len(paths) < 64 or workers <= 1:
        rows = [_hash_file(p) for p in paths]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hash") as pool:
            rows = list(pool.map(_hash_file, paths, chunksize=32))
    return combine_row_hashes(rows), rows


class FeatureCache:
    """A folder of cached encoder outputs (see the module docstring)."""

    def __init__(self, cache_dir: str | os.PathLike) -> None:
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    key = staticmethod(cache_key)

    def _paths(self, key: str) -> tuple[Path, Path]:
        if not key or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"Invalid cache key {key!r}.")
        return self.cache_dir / f"{key}.npz", self.cache_dir / f"{key}.json"

    def __contains__(self, key: str) -> bool:
        npz, meta = self._paths(key)
        return npz.is_file() and meta.is_file()

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key``, or None (absent or unreadable)."""
        npz, meta = self._paths(key)
        if not (npz.is_file() and meta.is_file()):
            return None
        try:
            with np.load(npz, allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except Exception as exc:  # truncated/corrupt file: a miss, rebuilt by the caller
            log.warning("feature cache entry %s is unreadable (%s); ignoring it", npz.name, exc)
            return None

    def meta(self, key: str) -> dict[str, Any] | None:
        _, meta = self._paths(key)
        try:
            return json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def put(self, key: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> Path:
        """Store ``arrays`` (no object arrays) atomically; return the ``.npz`` path."""
        npz, meta_path = self._paths(key)
        clean = {}
        for name, value in arrays.items():
            value = np.asarray(value)
            if value.dtype == object:
                raise TypeError(f"Array {name!r} has dtype object; the cache stores no pickles.")
            clean[name] = value
        sidecar = {
            "format": _FORMAT,
            "key": key,
            "created": time.time(),
            "created_iso": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        sidecar.update(dict(meta or {}))
        # numpy's stub fears **clean could carry savez's allow_pickle: bool (the keys are array names)
        self._atomic_write(npz, lambda fh: np.savez(fh, **clean))  # type: ignore[arg-type]
        self._atomic_write(
            meta_path, lambda fh: fh.write(json.dumps(sidecar, indent=1, sort_keys=True, default=str).encode("utf-8"))
        )
        return npz

    def _atomic_write(self, target: Path, write) -> None:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target), suffix=".tmp", dir=self.cache_dir)
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def entries(self, encoder_name: str | None = None, encoder_version: str | None = None) -> list[dict[str, Any]]:
        """Sidecars of stored entries (newest first), optionally for one encoder/version."""
        out = []
        for path in self.cache_dir.glob("*.json"):
            try:
                meta = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if encoder_name is not None and meta.get("encoder") != encoder_name:
                continue
            if encoder_version is not None and meta.get("version") != encoder_version:
                continue
            if not (self.cache_dir / f"{path.stem}.npz").is_file():
                continue
            meta.setdefault("key", path.stem)
            out.append(meta)
        out.sort(key=lambda m: m.get("created", 0), reverse=True)
        return out

    def find_rows(
        self,
        encoder_name: str,
        encoder_version: str,
        row_hashes: Sequence[str],
        max_entries: int = 4,
    ) -> dict[int, tuple[np.ndarray, bool]]:
        """Rows already computed by this encoder/version in earlier entries:
        ``{position in row_hashes: (feature row, mask value)}`` (newest entries first).

        Only an entry's row hashes are read first; its features are loaded only when it holds
        some wanted rows, one entry at a time."""
        wanted: dict[str, list[int]] = {}
        for i, h in enumerate(row_hashes):
            wanted.setdefault(h, []).append(i)
        found: dict[int, tuple[np.ndarray, bool]] = {}
        for meta in self.entries(encoder_name, encoder_version)[:max_entries]:
            if not wanted:
                break
            npz, _ = self._paths(meta["key"])
            try:
                with np.load(npz, allow_pickle=False) as data:
                    if "row_hashes" not in data.files or "features" not in data.files:
                        continue
                    hits = [(r, h) for r, h in enumerate(data["row_hashes"].tolist()) if h in wanted]
                    if not hits:
                        continue
                    feats = data["features"]
                    mask = data["mask"] if "mask" in data.files else None
            except Exception as exc:
                log.warning("feature cache entry %s is unreadable (%s); ignoring it", npz.name, exc)
                continue
            for r, h in hits:
                for i in wanted.pop(h, ()):
                    found[i] = (feats[r].copy(), bool(mask[r]) if mask is not None else True)
        return found

    def discard(self, key: str) -> None:
        """Remove the entry ``key`` if there is one."""
        for path in self._paths(key):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def clear(self) -> int:
        """Delete every entry; return how many files were removed."""
        removed = 0
        for path in list(self.cache_dir.glob("*.npz")) + list(self.cache_dir.glob("*.json")):
            try:
                path.unlink()
                removed += 1
            except OSError:
                pass
        return removed
