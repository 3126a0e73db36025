"""Item feature extraction: text, image and attribute features of a catalog, with caching.

>>> feats = extract_item_features(items, roles, image_root=bundle_dir, cache_dir=ws / "features")
>>> feats.text.shape, feats.image_mask.mean(), feats.timings      # doctest: +SKIP

The second extraction over the same items, with the same encoders, reads the cache and loads
no model at all.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import temp_prefix
from ..data.schema import plain_text
from .attributes import (
    AttributeFeatures,
    category_value,
    normalize_roles,
    split_labels,
)
from .base import Encoder
from .cache import FeatureCache, cache_key, hash_files, hash_texts
from .registry import DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER, get_encoder

__all__ = [
    "ItemFeatures",
    "build_item_text",
    "resolve_image_path",
    "encode_texts",
    "encode_images",
    "extract_item_features",
]

log = logging.getLogger(__name__)

StageProgress = Callable[[str, int, int], None]
_SPACES = re.compile(r"\s+")


# --------------------------------------------------------------------------------------------
# item text
# --------------------------------------------------------------------------------------------


def _label(column) -> str:
    text = str(column).replace("_", " ").strip()
    return text[:1].upper() + text[1:] if text else text


def build_item_text(
    items: pd.DataFrame, roles: Mapping[str, str], separator: str | Mapping[str, str] = "|"
) -> list[str]:
    """One text per item, "Column: value" parts joined into sentences.

    Order: first the ``text`` columns, then the ``categorical`` columns, then the ``multi_label``
    columns; within each group the items table's column order. Free text comes first so that
    a length-limited encoder truncates the least informative parts. Each part is
    ``"<Column label>: <value>"`` where the label is the column name with ``_`` as spaces and a
    capital first letter, text values have their whitespace collapsed, and multi-label values
    are joined with ", " (``"Genres: Action, Comedy"``). Parts end with ``"."`` (unless the value
    already ends with ., ! or ?) and are joined by a space. Missing/empty values are skipped; an
    item with none gives ``""``.
    """
    norm = normalize_roles(roles, items.columns)
    groups = (
        [c for c in items.columns if norm.get(c) == "text"],
        [c for c in items.columns if norm.get(c) == "categorical"],
        [c for c in items.columns if norm.get(c) == "multi_label"],
    )
    default_sep = separator if isinstance(separator, str) else "|"
    seps = dict(separator) if isinstance(separator, Mapping) else {}
    per_column: list[list[str]] = []
    for kind, columns in zip(("text", "categorical", "multi_label"), groups):
        for column in columns:
            label = _label(column)
            values = []
            for cell in items[column].tolist():
                if kind == "multi_label":
                    value = ", ".join(split_labels(cell, seps.get(column, default_sep)))
                else:
                    value = category_value(cell) or ""
                    if kind == "text":
                        value = _SPACES.sub(" ", plain_text(value)).strip()
                if not value:
                    values.append("")
                    continue
                end = "" if value[-1] in ".!?" else "."
                values.append(f"{label}: {value}{end}")
            per_column.append(values)
    n = len(items)
    return [" ".join(col[i] for col in per_column if col[i]) for i in range(n)]


# --------------------------------------------------------------------------------------------
# image paths
# --------------------------------------------------------------------------------------------


def resolve_image_path(image_root: str | os.PathLike, value) -> tuple[Path | None, str | None]:
    """``(path, None)`` for a safe relative path under ``image_root``; ``(None, None)`` for a
    missing value; ``(None, reason)`` for a rejected one (absolute, ``..``, URL, or escaping the
    root through a link). Whether the file exists is not checked here."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None, None
    text = str(value).strip()
    if not text or text.lower() in ("nan", "none", "null"):
        return None, None
    posix = text.replace("\\", "/")
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", posix):
        return None, f"rejected image path {text!r}: URLs are not fetched (offline)"
    if posix.startswith("/") or re.match(r"^[a-zA-Z]:", posix):
        return None, f"rejected image path {text!r}: absolute paths are not allowed"
    parts = [p for p in posix.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None, f"rejected image path {text!r}: '..' may not leave the image folder"
    if not parts:
        return None, None
    root = Path(image_root)
    path = root.joinpath(*parts)
    try:
        resolved_root = root.resolve()
        if not path.resolve().is_relative_to(resolved_root):
            return None, f"rejected image path {text!r}: it links outside the image folder"
    except OSError as exc:  # pragma: no cover - odd filesystems
        return None, f"rejected image path {text!r}: {exc}"
    return path, None


# --------------------------------------------------------------------------------------------
# cached encoding
# --------------------------------------------------------------------------------------------


def _resolve_encoder(encoder: str | Encoder, device: str) -> Encoder:
    if isinstance(encoder, str):
        return get_encoder(encoder, device=device)
    return encoder


# rows encoded between two points where a stopped extraction can keep its work (seconds of MiniLM or
# EfficientNet on two CPU cores: the per-call overhead is small against it)
CHECKPOINT_ROWS = 1024


def _cached_encode(
    encoder: Encoder,
    row_hashes: list[str],
    content_hash: str,
    run: Callable[[list[int], Callable[[int, int], None] | None], tuple[np.ndarray, np.ndarray, list]],
    cache: FeatureCache | None,
    progress: Callable[[int, int], None] | None,
    extra_meta: Mapping[str, Any] | None = None,
    shard: tuple[int, int] | None = None,
    shards: int = 0,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Shared cache logic: whole-entry hit, else reuse single rows (row-independent encoders),
    encode the rest and store. ``run(rows, progress)`` -> (features, mask, failures).

    Sharded across processes (torchrun): with ``shard = (rank, world)`` a row-independent encoder encodes only
    the missing rows whose hash falls to ``rank`` and stores them as an entry of their own (its rows that
    failed are left out, so the assembly meets them again with their reason); the returned arrays are then
    partial. The assembly is the plain call on rank 0 with ``shards = world``: it finds every shard's rows
    (``find_rows``), encodes what is still missing, stores the whole entry and discards the shards' entries.
    A rank's share is chosen by row hash, not position, so it does not depend on what another rank has
    already stored."""
    n = len(row_hashes)
    info: dict[str, Any] = {"cached": False, "reused_rows": 0, "encoded_rows": 0, "failures": []}
    key = cache_key(encoder.name, encoder.version, content_hash)
    info["cache_key"] = key
    if cache is not None:
        data = cache.get(key)
        if data is not None and data.get("features") is not None and data["features"].shape == (n, encoder.dim):
            meta = cache.meta(key) or {}
            info.update(cached=True, failures=meta.get("failures", []))
            if progress is not None:
                progress(n, n)
            return _half_precision(data["features"]), data["mask"].astype(bool), info
    features = np.zeros((n, encoder.dim), dtype=np.float32)
    mask = np.zeros(n, dtype=bool)
    reused: dict[int, tuple[np.ndarray, bool]] = {}
    if shard is not None and (cache is None or not encoder.row_independent):
        info["shard_rows"] = 0  # a corpus-fitted encoder (TF-IDF) is fitted and run by rank 0 alone
        return features, mask, info
    if cache is not None and encoder.row_independent and n:
        reused = cache.find_rows(encoder.name, encoder.version, row_hashes, max_entries=4 + shards)
        for i, (row, ok) in reused.items():
            features[i] = row
            mask[i] = ok
    todo = [i for i in range(n) if i not in reused]
    if shard is not None:
        todo = [i for i in todo if zlib.crc32(row_hashes[i].encode()) % shard[1] == shard[0]]
    failures: list[tuple[int, str]] = [
        (i, "failed in an earlier extraction (cached)") for i, (_, ok) in reused.items() if not ok
    ]
    unfinished_key = cache_key(encoder.name, encoder.version, content_hash + ":unfinished")
    if shard is not None:  # a stopped share keeps its finished chunks under its own key (ranks write at once)
        unfinished_key = _shard_key(encoder, content_hash, shard[0])
    if todo:
        reported = [0]
        # a row-independent encoder runs in chunks so that a stop (or an error) keeps every finished chunk in
        # the cache: the next extraction reuses those rows (find_rows) instead of encoding them again
        chunk = CHECKPOINT_ROWS if cache is not None and encoder.row_independent else len(todo)
        finished = 0
        try:
            for start in range(0, len(todo), chunk):
                part = todo[start : start + chunk]
                offset = len(reused) + start

                def sub_progress(done: int, total: int, offset: int = offset) -> None:
                    reported[0] = offset + done
                    if progress is not None:
                        progress(offset + done, n)

                sub_feats, sub_mask, sub_failures = run(part, sub_progress)
                rows = np.asarray(part)
                features[rows] = sub_feats
                mask[rows] = sub_mask
                failures.extend((part[j], reason) for j, reason in sub_failures)
                finished = start + len(part)
        except BaseException:
            if cache is not None and finished:
                _keep_unfinished(cache, unfinished_key, encoder, features, mask, row_hashes, todo[:finished])
            raise
        if progress is not None and reported[0] < n:  # encoders that do not report progress
            progress(n, n)
    elif progress is not None:
        progress(n, n)
    failures.sort()
    info.update(reused_rows=len(reused), encoded_rows=len(todo), failures=[list(f) for f in failures])
    if shard is not None:
        assert cache is not None  # returned above without one
        done = [i for i in todo if mask[i]]
        if done:
            _keep_unfinished(
                cache, _shard_key(encoder, content_hash, shard[0]), encoder, features, mask, row_hashes, done
            )
        info["shard_rows"] = len(todo)
        return features, mask, info
    features = _half_precision(features)  # what the cache gives back next time, so fresh = cached
    if cache is not None:
        meta = _entry_meta(encoder, n) | {"failures": info["failures"]} | dict(extra_meta or {})
        try:
            stored = {"features": _storage(features), "mask": mask, "row_hashes": np.asarray(row_hashes, dtype=str)}
            cache.put(key, stored, meta)
            cache.discard(unfinished_key)  # the whole entry holds its rows now
            for rank in range(shards):
                cache.discard(_shard_key(encoder, content_hash, rank))
        except OSError as exc:  # a full/readonly disk must not lose the computed features
            log.warning("could not write the feature cache (%s)", exc)
    return features, mask, info


# float16 keeps 11 significant bits: a relative error below 5e-4 per component, far under what separates two
# items' cosines in these (L2-normalised or pooled) embeddings; it halves the cache on disk and its reads
HALF_MAX = 60_000.0  # float16 overflows at 65,504: larger features (none of ours) stay float32


def _half_safe(features: np.ndarray) -> bool:
    return bool(features.size == 0 or (np.isfinite(features).all() and np.abs(features).max() < HALF_MAX))


def _half_precision(features: np.ndarray) -> np.ndarray:
    """float32 features rounded to float16's precision when that is safe (else unchanged, as float32)."""
    features = np.asarray(features, dtype=np.float32)
    return features.astype(np.float16).astype(np.float32) if _half_safe(features) else features


def _storage(features: np.ndarray) -> np.ndarray:
    """How the cache stores ``features``: float16 when safe (half the disk), else float32."""
    return features.astype(np.float16) if _half_safe(features) else np.asarray(features, np.float32)


def _entry_meta(encoder: Encoder, n: int) -> dict[str, Any]:
    """What a cache entry's sidecar says of the encoder that made its ``n`` rows (``entries``/``find_rows`` filter
    on ``encoder`` and ``version``)."""
    return {
        "encoder": encoder.name,
        "version": encoder.version,
        "modality": encoder.modality,
        "n": n,
        "dim": int(encoder.dim),
    }


def _shard_key(encoder: Encoder, content_hash: str, rank: int) -> str:
    return cache_key(encoder.name, encoder.version, f"{content_hash}:shard-{rank}")


def _keep_unfinished(
    cache: FeatureCache,
    key: str,
    encoder: Encoder,
    features: np.ndarray,
    mask: np.ndarray,
    row_hashes: list[str],
    rows: list[int],
) -> None:
    """Store the rows an interrupted extraction finished (an entry of their own, found by ``find_rows``)."""
    kept = np.asarray(rows)
    try:
        cache.put(
            key,
            {
                "features": _storage(features[kept]),
                "mask": mask[kept],
                "row_hashes": np.asarray(row_hashes, dtype=str)[kept],
            },
            _entry_meta(encoder, len(kept)) | {"unfinished": True},
        )
        log.info("kept %d rows of an unfinished %s extraction in the feature cache", len(kept), encoder.name)
    except OSError as exc:
        log.warning("could not keep the unfinished extraction's rows (%s)", exc)


def encode_texts(
    encoder: str | Encoder,
    texts: Sequence[str],
    cache: FeatureCache | str | os.PathLike | None = None,
    *,
    batch_size: int = 64,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    shard: tuple[int, int] | None = None,
    shards: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Encode texts through the cache: ``(features [n, dim], info)``; ``info["cached"]`` says
    whether it was a whole-entry hit (no model was loaded). ``shard`` / ``shards``: see :func:`_cached_encode`."""
    if cache is not None and not isinstance(cache, FeatureCache):
        cache = FeatureCache(cache)
    texts = ["" if t is None else str(t) for t in texts]
    content_hash, row_hashes = hash_texts(texts)
    enc = _resolve_encoder(encoder, device)

    def run(rows, sub_progress):
        feats = enc.encode([texts[i] for i in rows], batch_size=batch_size, progress=sub_progress)
        return feats, np.ones(len(rows), dtype=bool), []

    features, _, info = _cached_encode(enc, row_hashes, content_hash, run, cache, progress, shard=shard, shards=shards)
    info.update(encoder=enc.name, version=enc.version, dim=int(enc.dim))
    return features, info


def encode_images(
    encoder: str | Encoder,
    paths: Sequence[str | os.PathLike | None],
    cache: FeatureCache | str | os.PathLike | None = None,
    *,
    batch_size: int = 64,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    shard: tuple[int, int] | None = None,
    shards: int = 0,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Encode pictures through the cache: ``(features, mask, info)``; the content hash is over
    the files' bytes. ``info["failures"]`` lists ``[row, reason]`` of unreadable pictures. ``shard`` /
    ``shards``: see :func:`_cached_encode`."""
    if cache is not None and not isinstance(cache, FeatureCache):
        cache = FeatureCache(cache)
    paths = [
        None if p is None or (isinstance(p, float) and math.isnan(p)) or (isinstance(p, str) and not p.strip()) else p
        for p in paths
    ]
    content_hash, row_hashes = hash_files(paths)
    enc = _resolve_encoder(encoder, device)

    def run(rows, sub_progress):
        feats, mask = enc.encode([paths[i] for i in rows], batch_size=batch_size, progress=sub_progress)
        failures = [(j, reason) for j, _, reason in getattr(enc, "failures", [])]
        return feats, mask, failures

    features, mask, info = _cached_encode(
        enc, row_hashes, content_hash, run, cache, progress, shard=shard, shards=shards
    )
    info.update(encoder=enc.name, version=enc.version, dim=int(enc.dim))
    return features, mask, info


# --------------------------------------------------------------------------------------------
# ItemFeatures
# --------------------------------------------------------------------------------------------


@dataclass
class ItemFeatures:
    """Features of a catalog's items, row-aligned with ``item_ids``.

    ``text``/``image`` are float32 ``[n, dim]`` (None when that modality was not extracted);
    ``text_mask``/``image_mask`` are True where the row is real (an item without text or without a
    readable picture has False and a zero row that must not be used). ``timings`` holds seconds
    per stage (``"text"``, ``"image"``, ``"attributes"``, ``"total"``) and whether each encoder stage
    came from the cache (``"text_cached"``, ``"image_cached"``).
    """

    item_ids: np.ndarray
    text: np.ndarray | None = None
    text_mask: np.ndarray | None = None
    image: np.ndarray | None = None
    image_mask: np.ndarray | None = None
    attributes: AttributeFeatures | None = None
    text_encoder: dict[str, Any] | None = None  # {"name", "version", "dim"}
    image_encoder: dict[str, Any] | None = None
    image_failures: list[dict[str, str]] = field(default_factory=list)  # {"item_id", "path", "reason"}
    timings: dict[str, Any] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return int(len(self.item_ids))

    @property
    def modalities(self) -> list[str]:
        out = [m for m in ("text", "image") if getattr(self, m) is not None]
        if self.attributes is not None:
            out.append("attributes")
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write one ``.npz`` (no pickle: arrays plus a JSON string), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {"item_ids": np.asarray(self.item_ids, dtype=str)}
        for name in ("text", "text_mask", "image", "image_mask"):
            value = getattr(self, name)
            if value is not None:
                arrays[name] = np.asarray(value)
        attr_meta = None
        if self.attributes is not None:
            attr_arrays, attr_meta = self.attributes.to_arrays()
            arrays.update({f"attributes.{k}": v for k, v in attr_arrays.items()})
        meta = {
            "format": "recsys.item-features/1",
            "text_encoder": self.text_encoder,
            "image_encoder": self.image_encoder,
            "image_failures": self.image_failures,
            "timings": self.timings,
            "attributes": attr_meta,
        }
        arrays["meta_json"] = np.asarray(json.dumps(meta, default=str))
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(Path(path)), suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                # numpy's stub fears **arrays could carry savez's allow_pickle: bool (the keys are array names)
                np.savez(fh, **arrays)  # type: ignore[arg-type]
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ItemFeatures:
        with np.load(Path(path), allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        meta = json.loads(str(arrays.pop("meta_json")))
        attributes = None
        if meta.get("attributes") is not None:
            prefix = "attributes."
            attr_arrays = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            attributes = AttributeFeatures.from_arrays(attr_arrays, meta["attributes"])
        return cls(
            item_ids=arrays["item_ids"],
            text=arrays.get("text"),
            text_mask=arrays.get("text_mask"),
            image=arrays.get("image"),
            image_mask=arrays.get("image_mask"),
            attributes=attributes,
            text_encoder=meta.get("text_encoder"),
            image_encoder=meta.get("image_encoder"),
            image_failures=meta.get("image_failures") or [],
            timings=meta.get("timings") or {},
        )


# --------------------------------------------------------------------------------------------
# extraction
# --------------------------------------------------------------------------------------------


def _item_ids(items: pd.DataFrame, roles: Mapping[str, str]) -> np.ndarray:
    id_columns = [c for c, r in roles.items() if r == "id"]
    if len(id_columns) > 1:
        raise ValueError(f"Several columns have the role 'id' ({', '.join(map(str, id_columns))}); keep one.")
    column = id_columns[0] if id_columns else ("item_id" if "item_id" in items.columns else None)
    if column is None:
        raise ValueError("The items table needs an id column (role 'id', or a column named 'item_id').")
    ids = items[column]
    if ids.isna().any():
        raise ValueError(f"The id column {column!r} has missing values.")
    out = np.asarray([category_value(v) or "" for v in ids], dtype=str)
    if len(np.unique(out)) != len(out):
        log.warning("the id column %r has duplicate values; features stay row-aligned with the table", column)
    return out


def extract_item_features(
    items: pd.DataFrame,
    roles: Mapping[str, str],
    image_root: str | os.PathLike | None,
    cache_dir: str | os.PathLike,
    text_encoder: str | Encoder = DEFAULT_TEXT_ENCODER,
    image_encoder: str | Encoder = DEFAULT_IMAGE_ENCODER,
    modalities: Sequence[str] = ("text", "image", "attributes"),
    device: str = "auto",
    batch_size: int = 64,
    progress: StageProgress | None = None,
    *,
    attribute_options: Mapping[str, Any] | None = None,
    shard: tuple[int, int] | None = None,
    shards: int = 0,
) -> ItemFeatures:
    """Extract the requested modalities for every row of ``items``.

    ``roles``: ``{column: role}`` (see ``recsys.features.attributes.ROLES``). ``text_encoder`` /
    ``image_encoder``: registry names (``"hf:<id or dir>"`` too) or ready encoder instances.
    Text is built by ``build_item_text``; items without text get ``text_mask=False``. Pictures
    are ``image_root / <value of the first "image" column>``; values that would leave
    ``image_root`` (absolute, ``..``, URLs) are treated as missing and reported in
    ``image_failures``. ``progress(stage, done, total)`` is called with stage ``"text"`` or
    ``"image"``. ``attribute_options`` go to ``AttributeFeatures.fit`` (min_count, separator,
    n_buckets, scaling, clip).

    Under torchrun every rank first calls this with ``shard = (rank, world)``: each encodes its share of the
    text and picture rows the cache lacks and stores it (the result is then partial and only its
    ``timings["text_shard_rows"]`` / ``["image_shard_rows"]`` count); rank 0 then calls it with ``shards =
    world``, which assembles the shares into the cache's whole entries (and fits the attributes).
    """
    t_start = time.perf_counter()
    unknown = set(modalities) - {"text", "image", "attributes"}
    if unknown:
        raise ValueError(f"Unknown modalities {sorted(unknown)}; use 'text', 'image', 'attributes'.")
    norm = normalize_roles(roles, items.columns)
    items = items.reset_index(drop=True)
    item_ids = _item_ids(items, norm)
    n = len(items)
    cache = FeatureCache(cache_dir)
    result = ItemFeatures(item_ids=item_ids)
    timings: dict[str, Any] = {}
    separator = (attribute_options or {}).get("separator", "|")

    def stage_progress(stage: str):
        if progress is None:
            return None
        return lambda done, total: progress(stage, done, total)

    if "text" in modalities:
        t0 = time.perf_counter()
        texts = build_item_text(items, norm, separator=separator)
        present = np.asarray([bool(t.strip()) for t in texts], dtype=bool)
        rows = np.flatnonzero(present)
        enc = _resolve_encoder(text_encoder, device)
        sub, info = encode_texts(
            enc,
            [texts[i] for i in rows],
            cache,
            batch_size=batch_size,
            progress=stage_progress("text"),
            shard=shard,
            shards=shards,
        )
        features = np.zeros((n, enc.dim), dtype=np.float32)
        features[rows] = sub
        result.text, result.text_mask = features, present
        result.text_encoder = {"name": enc.name, "version": enc.version, "dim": int(enc.dim)}
        timings["text"] = time.perf_counter() - t0
        timings["text_cached"] = bool(info["cached"])
        timings["text_reused_rows"] = int(info["reused_rows"])
        timings["text_encoded_rows"] = int(info["encoded_rows"])
        if shard is not None:
            timings["text_shard_rows"] = int(info.get("shard_rows", 0))

    if "image" in modalities:
        t0 = time.perf_counter()
        image_columns = [c for c in items.columns if norm.get(c) == "image"]
        enc = _resolve_encoder(image_encoder, device)
        features = np.zeros((n, enc.dim), dtype=np.float32)
        mask = np.zeros(n, dtype=bool)
        failures: list[dict[str, str]] = []
        info = {"cached": False, "reused_rows": 0, "encoded_rows": 0}
        if image_columns:
            if len(image_columns) > 1:
                log.warning("several image columns (%s); using %r", image_columns, image_columns[0])
            if image_root is None:
                raise ValueError("image_root is required to read pictures (the folder image paths are relative to).")
            column = image_columns[0]
            paths: list[Path | None] = []
            for i, value in enumerate(items[column].tolist()):
                path, reason = resolve_image_path(image_root, value)
                paths.append(path)
                if reason:
                    failures.append({"item_id": str(item_ids[i]), "path": str(value), "reason": reason})
            rows = np.asarray([i for i, p in enumerate(paths) if p is not None], dtype=np.int64)
            sub_paths = [paths[i] for i in rows]
            sub, sub_mask, info = encode_images(
                enc,
                sub_paths,
                cache,
                batch_size=batch_size,
                progress=stage_progress("image"),
                shard=shard,
                shards=shards,
            )
            features[rows] = sub
            mask[rows] = sub_mask
            for j, reason in info["failures"]:
                i = int(rows[j])
                failures.append({"item_id": str(item_ids[i]), "path": str(items[column].iloc[i]), "reason": reason})
        elif progress is not None:
            progress("image", n, n)
        if failures:
            log.warning("%d item picture(s) missing or unreadable, e.g. %s", len(failures), failures[0])
        result.image, result.image_mask = features, mask
        result.image_encoder = {"name": enc.name, "version": enc.version, "dim": int(enc.dim)}
        result.image_failures = failures
        timings["image"] = time.perf_counter() - t0
        timings["image_cached"] = bool(info["cached"])
        timings["image_reused_rows"] = int(info["reused_rows"])
        timings["image_encoded_rows"] = int(info["encoded_rows"])
        if shard is not None:
            timings["image_shard_rows"] = int(info.get("shard_rows", 0))

    if "attributes" in modalities and shard is None:  # cheap: rank 0 fits them while assembling
        t0 = time.perf_counter()
        result.attributes = AttributeFeatures.fit(items, norm, **dict(attribute_options or {}))
        timings["attributes"] = time.perf_counter() - t0

    timings["total"] = time.perf_counter() - t_start
    result.timings = timings
    return result
