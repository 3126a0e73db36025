"""Catalog bundles: a folder or a ``.zip`` with items, interactions, optional users and images.

:func:`load_bundle` never raises on bad *data*: it returns a :class:`LoadResult` whose report lists
every problem (errors block, warnings don't), each naming file, column and example rows. A bundle
is only usable when ``result.ok``. Nothing here writes to the workspace.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import stat
import tempfile
import weakref
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd
from PIL import UnidentifiedImageError

from . import schema as S
from .pictures import MAX_IMAGE_PIXELS_ENV, PictureTooLarge, describe_size, megapixels, open_picture
from .report import BundleError, ValidationReport, counted
from .shop_exports import (
    ParentRows,
    ProductNames,
    VariantRows,
    cancelled_order_lines,
    interactions_by_product_name,
    not_for_sale,
    products_from_parent_rows,
    products_from_variant_rows,
)

TABLE_EXTENSIONS = (".csv", ".parquet", ".jsonl", ".ndjson")
DEFAULT_MAX_ARCHIVE_BYTES = 2 * 1024**3  # uncompressed; MovieLens-small with posters is ~30 MB
DEFAULT_MAX_ARCHIVE_ENTRIES = 200_000
MAX_COMPRESSION_RATIO = 200  # a zip bomb's entries compress far better than any real CSV or picture
EXTRAS = ("ground_truth", "README.md", "SOURCE.md")  # extra material an import carries along (the demo's truth)
ProgressFn = Callable[[str, int, int], None]


@dataclass
class CatalogBundle:
    """Tables of a validated bundle, ids as strings, plus where its pictures live."""

    items: pd.DataFrame
    interactions: pd.DataFrame
    users: pd.DataFrame | None
    schema: S.Schema
    root: Path  # image paths in the items' image column are relative to this folder
    name: str = "dataset"
    files: dict[str, str] = field(default_factory=dict)  # table -> file name it came from

    def image_path(self, value: Any) -> Path | None:
        """Absolute path of a picture named in the image column, or None if missing/unsafe (absolute, '..', or
        a symbolic link that leads outside the bundle folder)."""
        relative = safe_relative_path(value)
        if relative is None:
            return None
        path = self.root / relative
        return path if resolves_inside(self.root, path) else None

    def extra_files(self) -> tuple[list[PurePosixPath], list[tuple[str, bool]]]:
        """The files of :data:`EXTRAS` an import copies along (relative to the root), and the symbolic links it
        skips as ``(relative path, leads outside the bundle)``: links out of the bundle, and links to folders
        (never followed, so a link loop cannot make a copy endless)."""
        files: list[PurePosixPath] = []
        skipped: list[tuple[str, bool]] = []

        def visit(full: Path) -> None:
            relative = full.relative_to(self.root).as_posix()
            if full.is_symlink() and (full.is_dir() or not resolves_inside(self.root, full)):
                skipped.append((relative, not resolves_inside(self.root, full)))
            elif full.is_file():
                files.append(PurePosixPath(relative))
            elif full.is_dir():
                for entry in sorted(full.iterdir()):
                    visit(entry)

        for extra in EXTRAS:
            if (self.root / extra).exists() or (self.root / extra).is_symlink():
                visit(self.root / extra)
        return files, skipped

    def counts(self) -> dict[str, int]:
        image_column = self.schema.image_column
        with_image = 0
        if image_column:
            with_image = int(sum(1 for v in self.items[image_column] if (p := self.image_path(v)) and p.is_file()))
        return {
            "users": int(self.interactions["user_id"].nunique()),
            "items": int(len(self.items)),
            "interactions": int(len(self.interactions)),
            "items_with_image": with_image,
        }


@dataclass
class LoadResult:
    bundle: CatalogBundle | None
    report: ValidationReport

    @property
    def ok(self) -> bool:
        return self.bundle is not None and self.report.ok

    def unwrap(self) -> CatalogBundle:
        if not self.ok:
            raise BundleError(self.report)
        assert self.bundle is not None
        return self.bundle


def safe_relative_path(value: Any) -> PurePosixPath | None:
    """A relative path that stays inside its root, or None (empty, absolute, ``..``, drive letters)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip().replace("\\", "/")
    if not text or text.lower() in ("nan", "none", "null"):
        return None
    path = PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts or (len(text) > 1 and text[1] == ":"):
        return None
    return path


def resolves_inside(root: Path, path: Path) -> bool:
    """True when ``path``, every symbolic link followed, is ``root`` or lies under it (``root`` resolved too).

    The rule for every file a bundle names: zips may not hold links at all (:func:`_check_zip`); in a folder,
    a link is followed and must land inside the bundle.
    """
    try:
        return Path(path).resolve().is_relative_to(Path(root).resolve())
    except (OSError, RuntimeError):  # a link loop
        return False


def _unsafe_path(value: Any) -> bool:
    text = "" if value is None else str(value).strip()
    return bool(text) and text.lower() not in ("nan", "none", "null") and safe_relative_path(text) is None


# ----------------------------------------------------------------------------- opening sources


class _Extracted:
    """A zip's contents unpacked into a private temporary folder, removed on close."""

    def __init__(self, folder: Path, cleanup: Path | None):
        self.folder = folder
        self._cleanup = cleanup

    def close(self) -> None:
        if self._cleanup is not None:
            shutil.rmtree(self._cleanup, ignore_errors=True)
            self._cleanup = None


def _check_zip(archive: zipfile.ZipFile, report: ValidationReport, name: str, max_bytes: int) -> bool:
    entries = archive.infolist()
    if len(entries) > DEFAULT_MAX_ARCHIVE_ENTRIES:
        report.error(
            "archive_too_many_entries",
            f"the archive holds {len(entries):,} entries; the limit is {DEFAULT_MAX_ARCHIVE_ENTRIES:,}",
            name,
        )
        return False
    escaping = [e.filename for e in entries if safe_relative_path(e.filename) is None and e.filename.strip("/")]
    if escaping:
        report.error(
            "archive_path_escape",
            (
                f"{len(escaping)} entries would be written outside the bundle folder (absolute paths or '..')"
                if len(escaping) > 1
                else f"1 entry would be written outside the bundle folder ({escaping[0]})"
            )
            + "; the archive was not unpacked",
            name,
            rows=escaping,
        )
        return False
    links = [e.filename for e in entries if stat.S_ISLNK(e.external_attr >> 16)]
    if links:
        report.error(
            "archive_symlink",
            f"{len(links)} entries are symbolic links, which bundles may not contain"
            if len(links) > 1
            else f"1 entry is a symbolic link ({links[0]}), which bundles may not contain",
            name,
            rows=links,
        )
        return False
    total = sum(e.file_size for e in entries)
    if total > max_bytes:
        report.error(
            "archive_too_large",
            f"the archive unpacks to {total / 1e6:,.1f} MB, over the limit of {max_bytes / 1e6:,.0f} MB",
            name,
        )
        return False
    bombs = [
        e.filename
        for e in entries
        if e.compress_size > 0 and e.file_size > 10_000_000 and e.file_size / e.compress_size > MAX_COMPRESSION_RATIO
    ]
    if bombs:
        report.error(
            "archive_suspicious_compression",
            "entries compress more than any real data does (a 'zip bomb'); the archive was not unpacked",
            name,
            rows=bombs,
        )
        return False
    return True


def _open_source(
    source: str | os.PathLike | bytes | io.IOBase, report: ValidationReport, max_archive_bytes: int
) -> _Extracted | None:
    if isinstance(source, (bytes, bytearray)) or hasattr(source, "read"):
        data = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
        # messages name the file the user chose (an upload's name; shown as text, never opened as a path)
        label = Path(str(getattr(source, "name", "") or "upload.zip")).name or "upload.zip"
        return _unzip(data, label, report, max_archive_bytes)
    path = Path(source)
    if not path.exists():
        report.error("not_found", f"'{path}' does not exist", str(path))
        return None
    if path.is_dir():
        return _Extracted(_find_root(path), None)
    if path.suffix.lower() == ".zip":
        if path.stat().st_size > max_archive_bytes:
            report.error(
                "archive_too_large",
                f"the archive is {path.stat().st_size / 1e6:,.1f} MB, over the limit of "
                f"{max_archive_bytes / 1e6:,.0f} MB",
                path.name,
            )
            return None
        with open(path, "rb") as handle:
            return _unzip(handle, path.name, report, max_archive_bytes)
    report.error("unsupported_source", "a bundle is a folder or a .zip file", path.name)
    return None


def _unzip(handle: Any, name: str, report: ValidationReport, max_bytes: int) -> _Extracted | None:
    try:
        archive = zipfile.ZipFile(handle)
    except zipfile.BadZipFile:
        report.error("archive_unreadable", "this is not a readable .zip archive", name)
        return None
    with archive:
        if not _check_zip(archive, report, name, max_bytes):
            return None
        tmp = Path(tempfile.mkdtemp(prefix="recsys-bundle-"))
        try:
            for entry in archive.infolist():
                relative = safe_relative_path(entry.filename)
                if relative is None or entry.is_dir():
                    continue
                target = tmp.joinpath(*relative.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(entry) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            report.error("archive_unreadable", f"the archive is damaged: {exc}", name)
            return None
    return _Extracted(_find_root(tmp), tmp)


def _find_root(folder: Path) -> Path:
    """The folder holding the tables: the given one, or its single sub-folder (zips often wrap one)."""
    if _find_table(folder, "items") or _find_table(folder, "interactions"):
        return folder
    children = [
        c for c in folder.iterdir() if c.is_dir() and not c.is_symlink() and not c.name.startswith((".", "__MACOSX"))
    ]
    if len(children) == 1:
        return _find_root(children[0])
    return folder


def _find_table(folder: Path, table: str) -> Path | None:
    for ext in TABLE_EXTENSIONS:
        candidate = folder / f"{table}{ext}"
        if candidate.is_file():
            return candidate
    return None


# ----------------------------------------------------------------------------- reading tables


def read_table(path: Path, report: ValidationReport) -> pd.DataFrame | None:
    """Read one table; identifiers and text stay strings. Problems go into the report."""
    name = path.name
    if path.stat().st_size == 0:
        report.error("empty_file", "the file is empty", name)
        return None
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            raw = path.read_bytes()
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                line = raw[: exc.start].count(b"\n") + 1
                # Excel's plain "CSV" on a Western European Windows is Windows-1252: read it so, and say so (a
                # file in another code page would read with wrong letters, which the note asks to check); a
                # byte that code page lacks, or a NUL (not text at all), is still refused
                try:
                    fallback = raw.decode("cp1252") if b"\x00" not in raw else None
                except UnicodeDecodeError:
                    fallback = None
                if fallback is None:
                    report.error(
                        "wrong_encoding",
                        f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); "
                        "save it as UTF-8 (in Excel: 'CSV UTF-8') and upload it again",
                        name,
                        rows=[line],
                    )
                    return None
                text = fallback
                report.note(
                    "read_as_windows_1252",
                    f"the file is not UTF-8 (byte 0x{raw[exc.start]:02x} on line {line}): read as Windows-1252, "
                    "Excel's 'CSV' on Western European systems. Check that accented letters look right (é, ü, ß); "
                    "if not, save it as 'CSV UTF-8' and upload it again",
                    name,
                )
            delimiter = csv_delimiter(text)
            if delimiter != ",":
                report.note(
                    "csv_delimiter",
                    f"read as {_DELIMITER_NAMES[delimiter]}-separated values (the header has no commas between its "
                    "columns)",
                    name,
                )
            if not _check_field_counts(raw, text, name, report, delimiter):
                return None
            # index_col=False: never take the first column as the index (pandas does when rows have one more
            # field than the header); the check above has already refused such rows
            frame = pd.read_csv(
                io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False, na_values=[], index_col=False
            )
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_json(path, lines=True, dtype=False, convert_dates=False)
    except pd.errors.EmptyDataError as exc:
        report.error("empty_file", f"the file has no header or rows ({exc})", name)
        return None
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        unclosed = re.search(r"EOF inside string starting at row (\d+)", str(exc))
        if unclosed:  # pandas counts records from 0, the header being 0: a spreadsheet's row is one more
            row = int(unclosed.group(1)) + 1
            report.error(
                "ragged_rows",
                f'row {row} opens a quote (") that is never closed, so the rest of the file reads as one text: was '
                "the file cut off, or is a closing quote missing?",
                name,
                rows=[row],
            )
            return None
        report.error("unreadable_file", f"the file could not be parsed: {str(exc).splitlines()[0]}", name)
        return None
    except Exception as exc:  # pyarrow raises its own exception types for broken parquet
        report.error("unreadable_file", f"the file could not be parsed: {type(exc).__name__}: {exc}", name)
        return None
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame) == 0:
        report.error("empty_file", "the file has a header but no rows", name)
        return None
    return frame


_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}


def csv_delimiter(text: str) -> str:
    """The field separator of a CSV text: a comma, a semicolon (Excel's CSV where the decimal separator is a
    comma) or a tab. The one that splits the first data lines into the same number of fields, the header's if
    several do; with no such one, the one the header line has most of (a comma unless it has more of another).
    Quoted text is left out of the counts."""
    lines = [re.sub(r'"[^"]*"', "", line) for line in text.splitlines()[:50] if line.strip()][:21]
    if not lines:
        return ","
    header, rows = lines[0], lines[1:]
    consistent = [
        d for d in _DELIMITER_NAMES if rows and len({row.count(d) for row in rows}) == 1 and rows[0].count(d) > 0
    ]
    if consistent:
        matching = [d for d in consistent if header.count(d) == rows[0].count(d)]
        return max(matching or consistent, key=lambda d: rows[0].count(d))
    best = max((";", "\t"), key=header.count)
    return best if header.count(best) > header.count(",") else ","


def _ragged_lines_unquoted(
    raw: bytes, limit: int = 10, delimiter: str = ","
) -> tuple[int, list[tuple[int, int]], int, dict[int, int]] | None:
    """:func:`_ragged_records` for a file without quotes, where a record is a line and its fields are its commas
    plus one: counted with numpy on the bytes (ASCII commas and line breaks never occur inside a UTF-8
    character), so a large interactions file costs a fraction of reading it. None when it does not apply."""
    if b'"' in raw or raw.count(b"\r") != raw.count(b"\r\n"):
        return None
    data = np.frombuffer(raw, dtype=np.uint8)
    ends = np.flatnonzero(data == 10)
    if len(data) and data[-1] != 10:
        ends = np.append(ends, len(data))
    starts = np.concatenate(([0], ends[:-1] + 1))
    fields = np.diff(np.searchsorted(np.flatnonzero(data == ord(delimiter)), np.concatenate(([-1], ends)))) + 1
    if not len(fields) or not raw[starts[0] : ends[0]].strip():
        return None  # no lines, or a blank first line: leave it to the csv module
    expected = int(fields[0])
    examples: list[tuple[int, int]] = []
    count = 0
    for index in np.flatnonzero(fields != expected):
        if fields[index] == 1 and not raw[starts[index] : ends[index]].strip():
            continue  # a blank line
        count += 1
        if len(examples) < limit:
            examples.append((int(index) + 1, int(fields[index])))
    return expected, examples, count, {}  # a line is a record (blank lines aside, as a spreadsheet shows them)


def _ragged_records(
    text: str, limit: int = 10, delimiter: str = ","
) -> tuple[int, list[tuple[int, int]], int, dict[int, int]]:
    """(fields in the header, the first ``limit`` records whose field count differs as (line, fields), how many
    differ, and each of those lines' row as a spreadsheet numbers it where the two differ). Lines are physical
    lines (1 = the header), as an editor numbers them; a spreadsheet counts records instead, and a description
    with line breaks makes the two apart (line 848 was the 451st product). Blank lines are skipped, as pandas
    skips them (and counted as rows, as a spreadsheet shows them). Quoting follows pandas' defaults (``"``, doubled to escape), so a quoted comma or line break is
    part of its field."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    expected = 0
    examples: list[tuple[int, int]] = []
    spreadsheet_rows: dict[int, int] = {}
    count = 0
    records = 0
    line = 0  # the last physical line read: the next record starts on the line after it
    for row in reader:
        start, line = line + 1, reader.line_num
        records += 1  # a spreadsheet shows a blank line as a row
        fields = len(row)
        if fields == 0 or (fields == 1 and not row[0].strip()):
            continue  # a blank line
        if not expected:
            expected = fields
        elif fields != expected:
            count += 1
            if len(examples) < limit:
                examples.append((start, fields))
                if records != start:
                    spreadsheet_rows[start] = records
    return expected, examples, count, spreadsheet_rows


def _check_field_counts(raw: bytes, text: str, name: str, report: ValidationReport, delimiter: str = ",") -> bool:
    """Refuse a CSV with rows of more or fewer fields than its header (read as they are, their values would
    shift into the wrong columns: an item id read as a title, a title as an id). False when it has some."""
    found = _ragged_lines_unquoted(raw, delimiter=delimiter)
    if found is None:
        limit = csv.field_size_limit()
        csv.field_size_limit(max(limit, 1 << 30))  # long descriptions are fine; the default stops at 128 KB
        try:
            found = _ragged_records(text, delimiter=delimiter)
        except csv.Error:
            return True  # what the csv module cannot split, pandas reports as it always did
        finally:
            csv.field_size_limit(limit)
    expected, examples, count, spreadsheet_rows = found
    if not count:
        return True
    line, fields = examples[0]
    mark = _DELIMITER_NAMES[delimiter]
    unclosed = text.count('"') % 2 == 1 and count == 1
    if unclosed:
        # the csv reader ran from an opening quote to the end of the file: that record is all the rest
        cause = (
            'a quote (") opened in this row is never closed, so the rest of the file reads as one text: was the '
            "file cut off, or is a closing quote missing?"
        )
    elif fields > expected:
        cause = f"an unquoted {mark} in a text field? quote it"
    else:
        cause = (
            f"a value left out without its {mark}, or a line break in an unquoted text field? keep one {mark} per "
            "column and quote text fields"
        )
    others = count - 1
    more = f"; {others:,} more line{'s have' if others > 1 else ' has'} a different number of fields" if others else ""
    where = f"line {line}" + (f" (row {spreadsheet_rows[line]} in a spreadsheet)" if line in spreadsheet_rows else "")
    report.error(
        "ragged_rows",
        f"{where} has {fields} field{'s' if fields != 1 else ''}, the header has {expected} ({cause}){more}",
        name,
        rows=[spreadsheet_rows.get(e[0], e[0]) for e in examples],
    )
    return False


def _zero_means_unrated(ratings: pd.Series) -> bool:
    """A 0 on a scale that otherwise starts at 1 (Book-Crossing's 1-10, Goodreads' 1-5) and that is its most
    common value: an interaction without a score, not the lowest score. Averaged in, a shop's "mean rating
    2.65" was mostly unrated reads, and explanations took them for books the reader disliked."""
    values = ratings.dropna()
    scored = values[values != 0]
    if len(scored) == 0 or not (values == 0).any() or scored.min() < 1 or scored.max() < 4:
        return False
    return bool((values == 0).sum() > scored.value_counts().max())


_YEAR_NAME = re.compile(r"(year|jahr|ann[ée]e|(?<![a-z])(anno|a[ñn]o)(?![a-z]))", re.I)


def _zero_means_unknown_year(name: str, values: pd.Series) -> bool:
    """A 0 in a column named like a year whose other values are years (Book-Crossing's "Year-Of-Publication"
    writes 0 for "not known"): read as a year 0, it made a book two thousand years older than the rest and
    counted as a value the item has."""
    if not _YEAR_NAME.search(name):
        return False
    known = values.dropna()
    years = known[known != 0]
    return bool((known == 0).any() and len(years) and years.between(1000, 2200).mean() >= 0.9)


def _agree(mask: pd.Series | np.ndarray, one: str, many: str) -> str:
    """``one`` when ``mask`` marks exactly one row, else ``many``: a message's verb agrees with its count."""
    return one if int(np.asarray(mask).sum()) == 1 else many


def _row_numbers(mask: pd.Series | np.ndarray) -> list[int]:
    # row 1 is the header in a spreadsheet, so data row i (0-based) is line i + 2
    return [int(i) + 2 for i in np.flatnonzero(np.asarray(mask))[:10]]


# ----------------------------------------------------------------------------- the loader


def load_bundle(
    source: str | os.PathLike | bytes | io.IOBase,
    *,
    schema: Mapping[str, Any] | S.Schema | None = None,
    name: str | None = None,
    max_archive_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES,
    check_images: bool = True,
    progress: ProgressFn | None = None,
) -> LoadResult:
    """Load, normalise and validate a bundle.

    ``schema`` overrides roles (same shape as ``schema.json``, which is read from the bundle too).
    A zip is unpacked to a private temporary folder that the returned bundle owns: it is removed
    when the bundle is garbage-collected or passed to :func:`discard_bundle`.
    """
    report = ValidationReport()
    opened = _open_source(source, report, max_archive_bytes)
    if opened is None:
        return LoadResult(None, report)
    try:
        bundle = _load_from_folder(opened.folder, report, schema, name or _default_name(source), check_images, progress)
    except Exception:
        opened.close()
        raise
    if bundle is None:
        opened.close()
    else:
        bundle._cleanup = weakref.finalize(bundle, opened.close)  # type: ignore[attr-defined]
    return LoadResult(bundle, report)


def discard_bundle(bundle: CatalogBundle | None) -> None:
    """Remove now the temporary folder a zip was unpacked into (no-op for folders)."""
    cleanup = getattr(bundle, "_cleanup", None)
    if cleanup is not None:
        cleanup()


def _default_name(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        return path.stem if path.suffix.lower() == ".zip" else path.resolve().name
    return "upload"


def _load_from_folder(
    folder: Path, report: ValidationReport, overrides: Any, name: str, check_images: bool, progress: ProgressFn | None
) -> CatalogBundle | None:
    files = {table: _find_table(folder, table) for table in S.TABLES}
    for table in ("items", "interactions"):
        if files[table] is None:
            report.error(
                "missing_file",
                f"no {table} table found: the bundle needs {table}.csv, {table}.parquet or {table}.jsonl",
                f"{table}.*",
            )
    for extra in ("schema.json", *(p.name for p in files.values() if p is not None)):
        if (folder / extra).exists() and not resolves_inside(folder, folder / extra):
            report.error(
                "file_outside_bundle",
                "the file is a symbolic link that points outside the bundle; copy "
                "the file itself into the bundle folder",
                extra,
            )
    if not report.ok:
        return None
    tables: dict[str, pd.DataFrame | None] = {}
    for table, path in files.items():
        tables[table] = read_table(path, report) if path is not None else None
    if not report.ok:
        return None

    bundle_schema: dict[str, Any] | None = None
    schema_file = folder / "schema.json"
    if schema_file.is_file():
        try:
            bundle_schema = S.Schema.read(schema_file).to_dict()
        except (ValueError, UnicodeDecodeError) as exc:
            report.error("bad_schema", f"schema.json is not valid: {exc}", "schema.json")
            return None
    separator = (
        (
            overrides.multi_label_separator
            if isinstance(overrides, S.Schema)
            else (overrides or {}).get("multi_label_separator")
        )
        or (bundle_schema or {}).get("multi_label_separator")
        or S.DEFAULT_SEPARATOR
    )
    _without_cancelled_orders(tables, report, files)
    _read_shop_export_products(tables, report, files, separator, overrides, bundle_schema)
    inferred = S.infer_schema(tables, separator)
    try:
        schema = inferred.merged(bundle_schema).merged(overrides)
    except S.SchemaError as exc:
        report.error("bad_schema", str(exc), "schema")
        return None
    if not _apply_column_mapping(tables, schema, report, files):
        return None
    _users_by_their_key(tables, schema, report, files)
    # columns a schema names but the tables lack are a mistake the user wants to hear about
    for table in S.TABLES:
        frame = tables.get(table)
        for column in list(schema.table(table)):
            if frame is None or column not in frame.columns:
                if frame is not None:
                    report.warning(
                        "schema_unknown_column",
                        f"the schema names column '{column}', which the file lacks",
                        _file_name(files, table),
                        column,
                    )
                schema.table(table).pop(column)

    items = _validate_items(tables["items"], schema, report, _file_name(files, "items"))
    interactions = _validate_interactions(tables["interactions"], schema, report, _file_name(files, "interactions"))
    users = None
    if tables["users"] is not None:
        users = _validate_users(tables["users"], schema, report, _file_name(files, "users"))
    if items is None or interactions is None:
        return None
    interactions = _check_references(items, interactions, report, _file_name(files, "interactions"))
    off_sale = not_for_sale(items)
    if off_sale is not None:
        count = int(off_sale.items.sum())
        report.note(
            "not_for_sale",
            f"{counted(count, 'item')} of {len(items):,} {'is' if count == 1 else 'are'} not for sale "
            f"({_said_by(off_sale.columns, off_sale.values[:4])}): "
            f"{'it stays' if count == 1 else 'they stay'} in the data and the training, and "
            f"{'is' if count == 1 else 'are'} never recommended, also by runs trained on an earlier import",
            _file_name(files, "items"),
            off_sale.columns[0],
        )
    if users is not None:
        unknown_users = ~users["user_id"].isin(set(interactions["user_id"]))
        if unknown_users.any():
            report.warning(
                "users_without_interactions",
                f"{counted(int(unknown_users.sum()), 'user')} {_agree(unknown_users, 'has', 'have')} no interactions",
                _file_name(files, "users"),
                "user_id",
                _row_numbers(unknown_users),
            )
    bundle = CatalogBundle(
        items, interactions, users, schema, folder, name, {t: p.name for t, p in files.items() if p is not None}
    )
    if check_images and schema.image_column:
        _check_images(bundle, report, _file_name(files, "items"), progress)
    for link, outside in bundle.extra_files()[1]:
        report.warning(
            "link_not_copied",
            "a symbolic link that points outside the bundle; it is not copied"
            if outside
            else "a symbolic link to a folder; it is not copied",
            link,
        )
    report.counts = bundle.counts() if report.ok else {}
    return bundle if report.ok else None


def _read_shop_export_products(
    tables: dict[str, pd.DataFrame | None],
    report: ValidationReport,
    files: dict[str, Path | None],
    separator: str,
    *schemas: Any,
) -> None:
    """An items file written one row per variant (Shopify's products export) becomes one row per product, an
    interactions column naming variants names their products, and one naming products by their title ("Oxford
    Shirt - Blue / M", a shop without SKUs) names them by their key (see :mod:`recsys.data.shop_exports`). Not when a
    schema names as the item id a column that is one value per row of the file: the user has said what an item
    is (a variant, "Variant SKU"); naming the product key ("Handle", as the Data page's review of the products
    offers) keeps the products."""
    items = tables.get("items")
    if items is None:
        return
    for given in schemas:
        columns = given.columns if isinstance(given, S.Schema) else (given or {}).get("columns") or {}
        declared = [c for c, target in (columns.get("items") or {}).items() if target == "item_id"]
        if "item_id" in items.columns or any(
            c in items.columns and not items[c].isna().any() and items[c].astype(str).str.strip().is_unique
            for c in declared
        ):
            return
    found = products_from_variant_rows(items, tables.get("interactions"), separator)
    if found is not None:
        tables["items"], tables["interactions"] = found.items, found.interactions
        _say_variant_rows(found, report, files)
    else:
        variations = products_from_parent_rows(items, tables.get("interactions"), separator)
        if variations is not None:
            tables["items"], tables["interactions"] = variations.items, variations.interactions
            _say_parent_rows(variations, report, files)
    named = interactions_by_product_name(tables["items"], tables.get("interactions"))
    if named is not None:
        tables["interactions"] = named.interactions
        report.note(
            "items_by_name",
            f"'{named.interactions_column}' names what was bought by the product's title ({named.matched:.0%} of "
            f"its values are a '{named.title_column}' of {_file_name(files, 'items')}, or one followed by "
            f"' - ' or ' / ' and a variant): each is read as that product's '{named.key_column}'"
            + (_shared_titles(named) if named.shared_titles else ""),
            _file_name(files, "interactions"),
            named.interactions_column,
        )


def _shared_titles(named: ProductNames) -> str:
    """The import note's words on lines naming a title several products have."""
    lines = counted(named.shared_titles, "line")
    if not named.told_apart_by:
        return f"; {lines} name a title several products share, and nothing else on the line tells which"
    mine = " and ".join(f"'{a}'" for a, _ in named.told_apart_by)
    theirs = " and ".join(f"'{b}'" for _, b in named.told_apart_by)
    left = named.shared_titles - named.told_apart
    return (
        f"; {lines} name a title several products share: each is read as the product whose {mine} "
        f"{'matches' if len(named.told_apart_by) == 1 else 'match'} the line's {theirs}"
        + (f" ({left:,} match none or several, and stay unmatched)" if left else "")
    )


def tables_as_loaded(
    tables: Mapping[str, pd.DataFrame | None], schema_json: Mapping[str, Any] | None = None
) -> dict[str, pd.DataFrame | None]:
    """The tables as :func:`load_bundle` reads them before inferring roles: cancelled orders left out, a shop's
    variant rows read as products, orders by title by product key. For a review of the roles and ids before an
    import (the Data page), so that what it shows is what the import will hold."""
    read = {table: (None if frame is None else frame.copy()) for table, frame in tables.items()}
    separator = (schema_json or {}).get("multi_label_separator") or S.DEFAULT_SEPARATOR
    files: dict[str, Path | None] = dict.fromkeys(read)
    report = ValidationReport()
    _without_cancelled_orders(read, report, files)
    _read_shop_export_products(read, report, files, separator, schema_json)
    return read


def _without_cancelled_orders(
    tables: dict[str, pd.DataFrame | None], report: ValidationReport, files: dict[str, Path | None]
) -> None:
    """An orders export's lines of cancelled orders are no purchases: they are left out, with a note."""
    found = cancelled_order_lines(tables.get("interactions"))
    interactions = tables.get("interactions")
    if found is None or interactions is None or found.lines.all():
        return
    tables["interactions"] = interactions[~found.lines].reset_index(drop=True)
    lines = int(found.lines.sum())
    report.note(
        "cancelled_orders",
        f"{counted(lines, 'line')} of "
        + (counted(found.orders, "cancelled order") if found.order_column else "cancelled orders")
        + f" {'is' if lines == 1 else 'are'} left out (a cancelled order is no purchase"
        + (
            f"; '{found.column}' is written on an order's first line, and '{found.order_column}' says which lines "
            "are one order)"
            if found.order_column
            else f"; '{found.column}')"
        ),
        _file_name(files, "interactions"),
        found.column,
    )


def _joined_said(items: pd.DataFrame, joined: list[str], options: list[str], kind: str) -> str:
    """The import note's words on the values a product's variants differ in (joined as labels) and on its
    options read as columns ("Option1 Name" Color -> a column "Color")."""
    kept = [c for c in joined if c in items.columns]
    said = (
        f"; the values its {kind} differ in ({', '.join(repr(c) for c in kept)}) are joined as labels" if kept else ""
    )
    if options:
        said += f"; its options are read as columns of their own ({', '.join(repr(c) for c in options)})"
        if len(kept) < len(joined):
            said += f", the values its {kind} differ in joined as labels"
    return said


def _say_parent_rows(found: ParentRows, report: ValidationReport, files: dict[str, Path | None]) -> None:
    file = _file_name(files, "items")
    report.note(
        "variation_rows",
        f"{counted(found.variations, 'row')} {'is a variation' if found.variations == 1 else 'are variations'} of "
        f"another row ('{found.parent_column}' names it): the file's {found.rows:,} rows are "
        f"read as {len(found.items):,} products"
        + _joined_said(found.items, found.joined_columns, found.option_columns, "variations"),
        file,
        found.parent_column,
    )
    if found.interactions_column:
        report.note(
            "variations_to_products",
            f"'{found.interactions_column}' names variations ({found.variations_matched:.0%} of its values): each "
            "is read as the product it belongs to",
            _file_name(files, "interactions"),
            found.interactions_column,
        )


def _said_by(columns: list[str], values: list[str]) -> str:
    """``'Status': archived, draft`` for one column; the values (each with its column) for several."""
    return f"'{columns[0]}': {', '.join(values)}" if len(columns) == 1 else "; ".join(values)


def _say_variant_rows(found: VariantRows, report: ValidationReport, files: dict[str, Path | None]) -> None:
    file = _file_name(files, "items")
    fields = ", ".join(f"'{c}'" for c in found.product_fields[:3])
    report.note(
        "variant_rows",
        f"the file lists a product on several rows ('{found.product_column}' repeats; {fields} only on its first "
        f"row): its {found.rows:,} rows are read as {len(found.items):,} products"
        + (
            f", leaving out {counted(found.picture_rows, 'row')} that only "
            f"{'adds' if found.picture_rows == 1 else 'add'} a picture"
            if found.picture_rows
            else ""
        )
        + _joined_said(found.items, found.joined_columns, found.option_columns, "variants"),
        file,
        found.product_column,
    )
    if found.variant_column and found.interactions_column:
        report.note(
            "variants_to_products",
            f"'{found.interactions_column}' names variants ({found.variants_matched:.0%} of its values are "
            f"'{found.variant_column}' of {file}): each is read as the product it belongs to",
            _file_name(files, "interactions"),
            found.interactions_column,
        )


def _file_name(files: dict[str, Path | None], table: str) -> str:
    """The name of the file a table came from (the table's name when it has none)."""
    path = files.get(table)
    return path.name if path else table


def _apply_column_mapping(
    tables: dict[str, pd.DataFrame | None], schema: S.Schema, report: ValidationReport, files: dict[str, Path | None]
) -> bool:
    """Rename the columns the schema maps to ``item_id`` / ``user_id`` (``article_id`` -> ``item_id``), saying
    so; False (with an error) when a mapping cannot apply."""
    for table, mapping in schema.columns.items():
        frame = tables.get(table)
        if frame is None:
            continue
        file = _file_name(files, table)
        for source, target in list(mapping.items()):
            if source == target:
                continue
            if source not in frame.columns:
                report.error(
                    "mapping_unknown_column",
                    f"the column mapping names '{source}' as {target}, but the file has no such column",
                    file,
                    source,
                )
                return False
            if target in frame.columns:
                report.error(
                    "mapping_conflict",
                    f"'{source}' cannot be used as {target}: the file already has a '{target}' column",
                    file,
                    source,
                )
                return False
            frame = frame.rename(columns={source: target})
            roles = schema.table(table)
            roles.pop(source, None)
            roles[target] = S.ID
            reason = schema.reasons.get(table, {}).pop(source, None)
            schema.reasons.setdefault(table, {})[target] = reason or f"mapped from '{source}'"
            report.note("mapped_column", f"column '{source}' is used as {target}", file, source)
        tables[table] = frame
    return True


def _users_by_their_key(
    tables: dict[str, pd.DataFrame | None], schema: S.Schema, report: ValidationReport, files: dict[str, Path | None]
) -> None:
    """Interactions that name their users by another column of the users table than its id (an orders export's
    "Email" beside a customers export's "Customer ID" and "Email"): each is replaced by that user's id, so that
    the two tables meet (and an e-mail address does not become the id every page shows). Only when the users
    table's column holds one row per value and most interactions' values are in it, and the users' ids are not."""
    interactions, users = tables.get("interactions"), tables.get("users")
    if interactions is None or users is None or "user_id" not in interactions.columns or "user_id" not in users.columns:
        return
    source = _mapped_from(schema, "interactions") or "user_id"
    keys = S.clean_ids(interactions["user_id"])
    if keys.isin(set(S.clean_ids(users["user_id"]))).mean() >= 0.5:
        return  # the tables already meet
    for column in [source, *(c for c in users.columns if c not in (source, "user_id"))]:
        if column not in users.columns:
            continue
        values = S.clean_ids(users[column])
        given = values[values != ""]
        if len(given) == 0 or given.duplicated().any() or keys.isin(set(given)).mean() < 0.5:
            continue
        ids = pd.Series(S.clean_ids(users["user_id"]).to_numpy(), index=values.to_numpy())
        ids = ids[ids.index != ""]
        found = keys.map(ids)
        matched = found.notna() & (found != "")
        interactions["user_id"] = found.where(matched, keys).astype(object)
        report.note(
            "users_joined",
            f"the interactions name their users by '{column}' of {_file_name(files, 'users')}; "
            f"{matched.mean():.0%} of them are replaced by that user's user_id "
            f"('{_mapped_from(schema, 'users') or 'user_id'}')"
            + ("" if matched.all() else f"; {int((~matched).sum()):,} rows of users not in that file keep theirs"),
            _file_name(files, "interactions"),
            source,
        )
        return


def _mapped_from(schema: S.Schema, table: str) -> str | None:
    """The file's column a table's ``user_id`` was mapped from ("Customer ID"), None when it is its own."""
    return next((c for c, t in schema.columns.get(table, {}).items() if t == "user_id"), None)


def _require_columns(frame: pd.DataFrame, table: str, report: ValidationReport, file: str) -> bool:
    missing = [c for c in S.REQUIRED_COLUMNS[table] if c not in frame.columns]
    if missing:
        report.error(
            "missing_column",
            f"required column(s) {', '.join(repr(m) for m in missing)} missing; found "
            f"{', '.join(repr(c) for c in frame.columns[:12])}. If one of those is the {missing[0]}, map it "
            f"(the Data page's column mapping, or schema.json: "
            f'{{"columns": {{"{table}": {{"<column>": "{missing[0]}"}}}}}})',
            file,
            missing[0],
        )
        return False
    return True


def _blank_ids(frame: pd.DataFrame, column: str, report: ValidationReport, file: str) -> pd.DataFrame:
    blank = frame[column] == ""
    if blank.any():
        report.error(
            "missing_id",
            f"{counted(int(blank.sum()), 'row')} {_agree(blank, 'has', 'have')} no {column}",
            file,
            column,
            _row_numbers(blank),
        )
    return frame


def _blank_interaction_ids(frame: pd.DataFrame, report: ValidationReport, file: str) -> None:
    """Interactions without a user or an item id: an error above 1 % of the rows (the id column is likely the
    wrong one); up to 1 %, a warning, and :func:`_check_references` drops them (an orders export's lines for
    shipping, a tip or a custom item carry no SKU, and refusing the whole file for them helped nobody)."""
    blank = (frame["user_id"] == "") | (frame["item_id"] == "")
    if not blank.any():
        return
    if blank.mean() > 0.01:
        _blank_ids(frame, "user_id", report, file)
        _blank_ids(frame, "item_id", report, file)
        return
    for column in ("item_id", "user_id"):
        missing = frame[column] == ""
        if missing.any():
            what = "an order's lines for shipping, a tip or a custom item?" if column == "item_id" else "guest orders?"
            report.warning(
                "missing_id",
                f"{counted(int(missing.sum()), 'row')} ({missing.mean():.1%}) {_agree(missing, 'has', 'have')} no "
                f"{column} ({what}); these rows are dropped",
                file,
                column,
                _row_numbers(missing),
            )


def _normalise_feature_columns(
    frame: pd.DataFrame,
    roles: dict[str, str],
    report: ValidationReport,
    file: str,
    units: dict[str, str] | None = None,
    schema: S.Schema | None = None,
    table: str = "items",
) -> pd.DataFrame:
    """Numbers parsed (``units``, when given, gets the currency sign a column was written with), text trimmed,
    and the labels of a multi-label column whose file joins them with another separator ("A; B") joined with
    the schema's own ("A|B"), which every reader of the dataset splits on."""
    joined = schema.label_separators.get(table, {}) if schema is not None else {}
    for column, role in roles.items():
        if role == S.NUMERIC:
            if units is not None and (sign := S.currency_symbol(frame[column])):
                units[column] = sign
                if schema is not None and (style := S.amount_style(frame[column])):
                    schema.amount_styles.setdefault(table, {})[column] = style
            parsed = S.parse_numeric(frame[column])
            given = frame[column].astype("string").str.strip().fillna("") != ""
            bad = given & parsed.isna()
            if bad.any():
                report.warning(
                    "non_numeric_values",
                    f"{counted(int(bad.sum()), 'value')} {_agree(bad, 'is', 'are')} not {_agree(bad, 'a number', 'numbers')} and {_agree(bad, 'is', 'are')} treated as missing",
                    file,
                    column,
                    _row_numbers(bad),
                )
            if _zero_means_unknown_year(column, parsed):
                zeros = parsed == 0
                report.warning(
                    "zero_years",
                    f"{counted(int(zeros.sum()), 'value')} {_agree(zeros, 'is', 'are')} 0 beside years "
                    f"{parsed[~zeros].min():g}-{parsed[~zeros].max():g}: read as 'year not known' (left empty)",
                    file,
                    column,
                    _row_numbers(zeros),
                )
                parsed = parsed.mask(zeros)
            frame[column] = parsed
        elif role in (S.TEXT, S.CATEGORICAL, S.MULTI_LABEL, S.IMAGE):
            frame[column] = frame[column].astype("string").fillna("").str.strip().astype(object)
        if role == S.MULTI_LABEL and schema is not None and column in joined:
            frame[column] = _rejoined_labels(frame[column], joined[column], schema.multi_label_separator)
            report.note(
                "labels_joined",
                f"the labels are joined by '{joined[column]}'; each is used as a label of its own",
                file,
                column,
            )
    return frame


def _rejoined_labels(values: pd.Series, separator: str, own: str) -> pd.Series:
    """``values`` whose labels are joined by ``separator`` ("A; B"), joined by ``own`` instead ("A|B")."""
    positions = values.reset_index(drop=True)
    given = positions[positions != ""]
    # a label holding the dataset's own separator would split in two there: it gets a space instead
    labels = S.split_labels(given, separator).str.replace(own, " ", regex=False).str.strip()
    rejoined = labels.groupby(level=0).agg(own.join).reindex(positions.index).fillna("")
    return pd.Series(rejoined.to_numpy(dtype=object), index=values.index, name=values.name)


def _validate_items(frame: pd.DataFrame, schema: S.Schema, report: ValidationReport, file: str) -> pd.DataFrame | None:
    if not _require_columns(frame, "items", report, file):
        return None
    frame = frame.copy()
    frame["item_id"] = S.clean_ids(frame["item_id"])
    _blank_ids(frame, "item_id", report, file)
    duplicated = frame["item_id"].duplicated(keep=False) & (frame["item_id"] != "")
    if duplicated.any():
        examples = frame.loc[duplicated, "item_id"].unique()[:5]
        report.error(
            "duplicate_item_ids",
            f"{counted(int(frame['item_id'].duplicated().sum()), 'item id')} {_agree(frame['item_id'].duplicated(), 'appears', 'appear')} more than once "
            f"(e.g. {', '.join(map(str, examples))}); each item needs exactly one row",
            file,
            "item_id",
            _row_numbers(duplicated),
        )
    units: dict[str, str] = {}
    frame = _normalise_feature_columns(frame, schema.items, report, file, units, schema, "items")
    if units:
        schema.units["items"] = units
    partly_empty = []
    for column in schema.columns_with("items", S.TEXT, S.CATEGORICAL, S.MULTI_LABEL, S.IMAGE, S.NUMERIC):
        share = S.coverage(frame[column])
        if share == 0:
            report.warning("empty_column", "the column is empty in every row and is ignored", file, column)
        elif share < 1 and schema.items.get(column) != S.IMAGE:  # pictures: the image checks say how many
            partly_empty.append(f"{column} ({round((1 - share) * len(frame)):,} of {len(frame):,} items)")
    if partly_empty:
        # not a problem (a missing value is a missing modality or attribute for that item), but said: a user
        # reading the statistics later should know which of their columns have holes
        report.note(
            "partly_empty_columns",
            f"some items have no value in {', '.join(partly_empty)}; "
            "they are imported, and the model uses what each item has",
            file,
        )
    return frame


def _validate_interactions(
    frame: pd.DataFrame, schema: S.Schema, report: ValidationReport, file: str
) -> pd.DataFrame | None:
    if not _require_columns(frame, "interactions", report, file):
        return None
    frame = frame.copy()
    frame["user_id"] = S.clean_ids(frame["user_id"])
    frame["item_id"] = S.clean_ids(frame["item_id"])
    _blank_interaction_ids(frame, report, file)
    rating = schema.rating_column
    if rating:
        parsed = S.parse_numeric(frame[rating])
        given = frame[rating].astype("string").str.strip().fillna("") != ""
        bad = given & parsed.isna()
        if bad.any():
            examples = frame.loc[bad, rating].astype(str).unique()[:3]
            report.error(
                "non_numeric_ratings",
                f"{counted(int(bad.sum()), 'rating')} {_agree(bad, 'is', 'are')} not {_agree(bad, 'a number', 'numbers')} (e.g. {', '.join(repr(e) for e in examples)}); "
                "fix them, or set this column's role to 'ignore' to treat the data as implicit feedback",
                file,
                rating,
                _row_numbers(bad),
            )
        if _zero_means_unrated(parsed):
            zeros = int((parsed == 0).sum())
            report.warning(
                "zero_ratings",
                f"{counted(zeros, 'interaction')} ({zeros / max(len(frame), 1):.0%}) {'has' if zeros == 1 else 'have'} "
                f"rating 0 beside ratings of 1-{parsed.max():g}: read as 'no rating' (as Book-Crossing and Goodreads "
                "exports write a read without a score), kept as interactions; the rating statistics leave them out",
                file,
                rating,
            )
            parsed = parsed.mask(parsed == 0)
        frame[rating] = parsed
        blank = int((~given).sum())
        if blank:
            report.note(
                "blank_ratings",
                f"{counted(blank, 'interaction')} ({blank / max(len(frame), 1):.0%}) {'has' if blank == 1 else 'have'} "
                "no rating: kept as interactions (the models learn from who chose what); the rating "
                "statistics leave them out",
                file,
                rating,
            )
    stamp = schema.timestamp_column
    if stamp:
        parsed = S.parse_timestamp(frame[stamp])
        bad = parsed.isna() & (frame[stamp].astype("string").str.strip().fillna("") != "")
        if bad.any():
            report.warning(
                "bad_timestamps",
                f"{counted(int(bad.sum()), 'timestamp')} could not be read and {_agree(bad, 'is', 'are')} left empty",
                file,
                stamp,
                _row_numbers(bad),
            )
        frame[stamp] = parsed
    frame = _normalise_feature_columns(
        frame, {c: r for c, r in schema.interactions.items() if c not in ("user_id", "item_id")}, report, file
    )
    duplicates = frame.duplicated(["user_id", "item_id"], keep="first")
    # a pair again at another time is a repeat purchase (an orders export has many: a note, not a warning); the
    # same pair at the same time, or with no time to tell, may be a row written twice
    repeats = (
        duplicates & ~frame.duplicated(["user_id", "item_id", stamp], keep="first") if stamp else duplicates & False
    )
    twice = duplicates & ~repeats
    if repeats.any():
        report.note(
            "repeat_interactions",
            f"{counted(int(repeats.sum()), 'interaction')} {_agree(repeats, 'repeats', 'repeat')} a (user, item) "
            "pair at another time (bought, rated or watched again); training counts each pair once",
            file,
            None,
        )
    if twice.any():
        report.warning(
            "duplicate_interactions",
            f"{counted(int(twice.sum()), '(user, item) pair')} {_agree(twice, 'repeats', 'repeat')}"
            + (" at the same time" if stamp else "")
            + "; training counts each pair once",
            file,
            None,
            _row_numbers(twice),
        )
    return frame


def _validate_users(frame: pd.DataFrame, schema: S.Schema, report: ValidationReport, file: str) -> pd.DataFrame | None:
    if not _require_columns(frame, "users", report, file):
        return None
    frame = frame.copy()
    frame["user_id"] = S.clean_ids(frame["user_id"])
    duplicated = frame["user_id"].duplicated(keep=False)
    if duplicated.any():
        report.error(
            "duplicate_user_ids",
            f"{counted(int(frame['user_id'].duplicated().sum()), 'user id')} {_agree(frame['user_id'].duplicated(), 'appears', 'appear')} more than once",
            file,
            "user_id",
            _row_numbers(duplicated),
        )
    return _normalise_feature_columns(frame, schema.users, report, file, schema=schema, table="users")


def _check_references(
    items: pd.DataFrame, interactions: pd.DataFrame, report: ValidationReport, file: str
) -> pd.DataFrame:
    blank = (interactions["item_id"] == "") | (interactions["user_id"] == "")  # warned about (at most 1 %)
    unknown = ~interactions["item_id"].isin(set(items["item_id"])) & (interactions["item_id"] != "")
    if not unknown.any():
        return interactions.loc[~blank].reset_index(drop=True) if blank.any() else interactions
    share = float(unknown.mean())
    examples = interactions.loc[unknown, "item_id"].unique()[:5]
    message = (
        f"{counted(int(unknown.sum()), 'interaction')} ({share:.1%}) {'points' if int(unknown.sum()) == 1 else 'point'} at items that are not in the items table "
        f"(e.g. {', '.join(map(str, examples))})"
    )
    if share > 0.01:
        hint = _stripped_zeros_hint(items["item_id"], interactions.loc[unknown, "item_id"])
        report.error(
            "unknown_items",
            message + "; check that both files use the same item ids" + hint,
            file,
            "item_id",
            _row_numbers(unknown),
        )
        return interactions
    report.warning("unknown_items", message + "; these rows are dropped", file, "item_id", _row_numbers(unknown))
    return interactions.loc[~(unknown | blank)].reset_index(drop=True)


def _id_key(value: str) -> str:
    """An id as people mistype it the same way: lower case, no spaces, no leading zeros in its digit runs
    (``" sku-762"`` and ``"SKU-00762"`` share a key)."""
    return re.sub(r"(?<!\d)0+(?=\d)", "", re.sub(r"\s+", "", value).lower())


def _stripped_zeros_hint(catalogue: pd.Series, unknown: pd.Series) -> str:
    """A hint when most unknown ids are catalogue ids written another way: without their leading zeros (``15``
    for ``000015``, a spreadsheet that read the ids as numbers, the commonest cause of this error), or in
    another case, with spaces, or with a code's number unpadded (``sku-762`` for ``SKU-00762``); '' otherwise."""
    padded = catalogue.astype(str)
    by_number = {i.lstrip("0"): i for i in padded[padded.str.fullmatch(r"0+\d+")]}
    values = pd.Series(unknown.astype(str).unique())
    if len(values) == 0:
        return ""
    found = values[values.map(lambda v: v.lstrip("0") in by_number)]  # unknown ids: none is in the catalogue
    if len(found) >= 0.5 * len(values):
        example = found.iloc[0]
        original = by_number[example.lstrip("0")]
        return (
            f": they look like the items' ids without their leading zeros (“{example}” for “{original}”), as a "
            "spreadsheet writes ids it read as numbers; save the id columns as text"
        )
    by_key: dict[str, str] = {}
    for identifier in padded:
        by_key.setdefault(_id_key(identifier), identifier)
    near = values[values.map(lambda v: _id_key(v) in by_key)]
    if len(near) < 0.5 * len(values):
        return ""
    example = near.iloc[0]
    return (
        f": they look like the items' ids written another way (“{example}” for “{by_key[_id_key(example)]}”: "
        "the case, spaces or zeros inside differ); ids must match exactly, so export both files with the ids "
        "as the items table writes them"
    )


def _web_pictures_in_bundle(
    bundle: CatalogBundle, values: pd.Series, is_web: pd.Series, report: ValidationReport, file: str, column: str
) -> tuple[pd.Series, pd.Series]:
    """Pictures named by web address whose file is in the bundle under its own name (a shop's pictures,
    downloaded next to its export: "https://cdn.shopify.com/.../oxford-shirt_1234.jpg?v=16" and
    images/oxford-shirt_1234.jpg) are read from the bundle: the items table names them by that path. A name two
    files of the bundle have is left alone (which one was meant is not known)."""
    found: dict[str, str | None] = {}
    for path in sorted(bundle.root.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.suffix.lower() in S.IMAGE_EXTENSIONS:
            relative = path.relative_to(bundle.root).as_posix()
            found[path.name] = None if path.name in found else relative
    if not found:
        return values, is_web
    values = values.copy()
    replaced = []
    for position in np.flatnonzero(is_web.to_numpy()):
        name = unquote(urlsplit(str(values.iloc[position]).strip()).path).rsplit("/", 1)[-1]
        local = found.get(name)
        if local is not None:
            values.iloc[position] = local
            replaced.append(position)
    if replaced:
        bundle.items[column] = values
        is_web = is_web.copy()
        is_web.iloc[replaced] = False
        report.note(
            "web_images_in_bundle",
            f"{counted(len(replaced), 'picture')} named by web address {'is' if len(replaced) == 1 else 'are'} in "
            f"the bundle under {'its' if len(replaced) == 1 else 'their'} own file name (e.g. "
            f"{values.iloc[replaced[0]]}) and read from there",
            file,
            column,
        )
    return values, is_web


def _check_images(bundle: CatalogBundle, report: ValidationReport, file: str, progress: ProgressFn | None) -> None:
    column = bundle.schema.image_column
    assert column is not None
    values = bundle.items[column]
    escaping = values.map(_unsafe_path)
    if escaping.any():
        report.error(
            "image_path_escape",
            f"{counted(int(escaping.sum()), 'picture path')} {'leaves' if int(escaping.sum()) == 1 else 'leave'} the bundle folder (absolute paths or '..'); "
            "paths must be relative to the bundle, like images/123.jpg",
            file,
            column,
            _row_numbers(escaping),
        )
    missing, unreadable, outside, too_large, web = [], [], [], [], []
    # a shop export names its pictures by web address: nothing is downloaded (offline), and "not in the bundle"
    # would send the user looking for files they never had
    is_web = values.astype("string").str.strip().str.match(r"(?i)^(?:https?|ftp)://|^www\.").fillna(False)
    if is_web.any():
        values, is_web = _web_pictures_in_bundle(bundle, values, is_web, report, file, column)
    total = len(values)
    for position, value in enumerate(values):
        if is_web.iloc[position]:
            web.append(position)
            continue
        relative = safe_relative_path(value)
        if relative is not None:
            path = bundle.root / relative
            if not resolves_inside(bundle.root, path):
                outside.append((position, relative.as_posix()))
            elif not path.is_file():
                missing.append(position)
            else:
                try:
                    # the size comes from the header; a picture over the cap is never decoded
                    with open_picture(path, relative.as_posix()) as picture:
                        picture.verify()
                except PictureTooLarge as exc:
                    too_large.append((position, exc))
                except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
                    unreadable.append(position)
                except Exception:  # a PIL plugin's own error on a damaged file: unreadable, never a crash
                    unreadable.append(position)
        if progress is not None and (position % 500 == 0 or position == total - 1):
            progress("items checked for a picture", position + 1, total)
    if outside:
        names = [name for _, name in outside]
        if len(outside) == 1:
            message = (
                f"{names[0]} points outside the bundle (symbolic link); it is ignored and the item is "
                "treated as having no picture"
            )
        else:
            message = (
                f"{len(outside)} pictures point outside the bundle (symbolic links), e.g. "
                f"{', '.join(names[:3])}; they are ignored and those items are treated as having no picture"
            )
        report.warning("image_outside_bundle", message, file, column, [p + 2 for p, _ in outside])
    if too_large:
        limit = too_large[0][1].limit
        if len(too_large) == 1:
            message = f"{too_large[0][1]}; it is ignored (not decoded) and the item is treated as having no picture"
        else:
            examples = ", ".join(
                f"{e.name} ({e.size[0]}x{e.size[1]} pixels)"
                if e.size
                else f"{e.name} ({describe_size(None, e.pixels)})"
                for _, e in too_large[:3]
            )
            message = (
                f"{len(too_large)} pictures are over the limit of {megapixels(limit)}, e.g. {examples}; they "
                "are ignored (not decoded) and those items are treated as having no picture"
            )
        report.warning(
            "image_too_large",
            message + f"; the limit is set by {MAX_IMAGE_PIXELS_ENV}",
            file,
            column,
            [p + 2 for p, _ in too_large],
        )
    item_ids = bundle.items["item_id"] if "item_id" in bundle.items else None

    def named(positions: list[int]) -> str:
        """e.g. 'item 17 (images/17.jpg), item 23 (images/23.jpg) and 5 more': what a user can look for."""
        shown = [
            f"item {item_ids.iloc[p]} ({values.iloc[p]})" if item_ids is not None else str(values.iloc[p])
            for p in positions[:3]
        ]
        more = f" and {len(positions) - 3} more" if len(positions) > 3 else ""
        return ", ".join(shown) + more

    if missing:
        report.warning(
            "missing_images",
            f"{len(missing):,} pictures named in the items table are not in the bundle ({named(missing)}); those "
            "items are treated as having no picture"
            if len(missing) > 1
            else f"1 picture named in the items table is not in the bundle ({named(missing)}); that item is "
            "treated as having no picture",
            file,
            column,
            [p + 2 for p in missing],
        )
    if web:
        report.warning(
            "web_images",
            f"{counted(len(web), 'picture')} {'is a web address' if len(web) == 1 else 'are web addresses'} "
            f"({named(web)}): the studio works offline and downloads nothing. Put the picture files in the bundle "
            "under their own file names (e.g. images/ beside the table: a web address ending in a file the bundle "
            "has is read from there), or name them by their path in the bundle; until then "
            f"{'that item is' if len(web) == 1 else 'those items are'} treated as having no picture",
            file,
            column,
            [p + 2 for p in web],
        )
    if unreadable:
        report.warning(
            "unreadable_images",
            f"{len(unreadable):,} pictures could not be read as images ({named(unreadable)}); those items are "
            "treated as having no picture"
            if len(unreadable) > 1
            else f"1 picture could not be read as an image ({named(unreadable)}); that item is treated as having "
            "no picture",
            file,
            column,
            [p + 2 for p in unreadable],
        )
    # blank out what cannot be used so later stages see "no picture" rather than a broken path
    bad = (
        set(missing)
        | set(unreadable)
        | set(web)
        | {p for p, _ in outside}
        | {p for p, _ in too_large}
        | set(np.flatnonzero(escaping.to_numpy()))
    )
    if bad:
        cleaned = values.copy()
        cleaned.iloc[sorted(bad)] = ""
        bundle.items[column] = cleaned
