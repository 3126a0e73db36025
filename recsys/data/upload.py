"""Uploads that arrive as separate files (tables and a pictures zip) become one bundle zip, checked later by
the import like any bundle (paths, links, sizes, zip bombs)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

__all__ = ["TABLE_EXTENSIONS", "UploadError", "assemble_bundle_zip", "zip_entry_examples"]

TABLE_EXTENSIONS = (".csv", ".parquet", ".jsonl", ".ndjson")


# a tab-separated file is a CSV whose separator the reader finds on its own (`bundle.csv_delimiter`)
_READ_AS_CSV = (".tsv", ".tab")


class UploadError(ValueError):
    pass


def assemble_bundle_zip(tables: dict[str, tuple[str, bytes]], images_zip: bytes | None = None) -> bytes:
    """One bundle ``.zip`` (in memory) from separately uploaded tables and an optional pictures zip.

    ``tables`` maps ``items`` / ``interactions`` / ``users`` to ``(uploaded file name, bytes)``;
    each is stored under its table name (``items.csv`` …), so only known names enter the bundle.
    The pictures zip is not unpacked here: the tables are appended to it, and the import then
    checks every entry (paths leaving the bundle, links, sizes, zip bombs) like any bundle zip.
    """
    allowed = {"items", "interactions", "users"}
    for table, (filename, _) in tables.items():
        if table not in allowed:
            raise UploadError(f"unknown table {table!r}")
        suffix = Path(filename).suffix.lower()
        if suffix not in TABLE_EXTENSIONS and suffix not in _READ_AS_CSV:
            raise UploadError(
                f"{filename}: the {table} file must be .csv (or tab-separated .tsv), .parquet or .jsonl"
                f"{_why_not(suffix)}"
            )
    if images_zip is not None:
        try:  # append mode would silently start a new archive after anything that is not a zip
            with zipfile.ZipFile(io.BytesIO(images_zip)) as probe:
                probe.infolist()
        except (zipfile.BadZipFile, OSError, EOFError):
            raise UploadError("the pictures file is not a readable .zip archive") from None
    buffer = io.BytesIO(images_zip or b"")
    archive = zipfile.ZipFile(buffer, "a" if images_zip else "w", compression=zipfile.ZIP_DEFLATED)
    with archive:
        roots = {name.strip("/").split("/")[-1].lower() for name in archive.namelist() if "/" not in name.strip("/")}
        clash = sorted(n for n in roots if n.split(".")[0] in allowed and Path(n).suffix in TABLE_EXTENSIONS)
        if clash:
            raise UploadError(
                f"the pictures .zip already holds {', '.join(clash)}: upload it as a whole bundle "
                "(the '.zip bundle' option) instead"
            )
        for table, (filename, data) in tables.items():
            suffix = Path(filename).suffix.lower()
            archive.writestr(f"{table}{'.csv' if suffix in _READ_AS_CSV else suffix}", data)
    return buffer.getvalue()


def _why_not(suffix: str) -> str:
    """What a file of the wrong kind most likely is, and what to do with it (empty when there is no hint)."""
    hints = {
        ".zip": "; this is a .zip archive: an archive holds the pictures, or a whole bundle with its tables",
        ".xlsx": "; this is a spreadsheet workbook: save the sheet as CSV (in Excel: Save As, 'CSV UTF-8')",
        ".xls": "; this is a spreadsheet workbook: save the sheet as CSV (in Excel: Save As, 'CSV UTF-8')",
        ".json": "; JSON is read as JSON Lines, one object per line: name the file .jsonl if it is that",
    }
    return hints.get(suffix, "")


def zip_entry_examples(data: bytes, limit: int = 3) -> list[str]:
    """A few picture paths inside a zip (for a hint when pictures are not found)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/") and not n.lower().endswith(TABLE_EXTENSIONS)]
    except zipfile.BadZipFile:
        return []
    return names[:limit]
