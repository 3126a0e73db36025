"""Tables handed to users as files (CSV downloads): catalogue text stays text in a spreadsheet.

A cell that starts with ``=``, ``+``, ``-``, ``@`` (or a tab / carriage return) is run as a formula by
Excel, LibreOffice and Google Sheets; a catalogue title such as ``=HYPERLINK(...)`` must not be. Such
text cells get a leading apostrophe (OWASP's advice for CSV injection); numbers are left as numbers.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["spreadsheet_safe", "csv_bytes"]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells cannot be read as spreadsheet formulas."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if values.dtype == object or pd.api.types.is_string_dtype(values):
            out[column] = values.map(lambda v: "'" + v if isinstance(v, str) and v.startswith(_FORMULA_START) else v)
    return out


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """UTF-8 CSV of ``frame`` with :func:`spreadsheet_safe` applied."""
    return spreadsheet_safe(frame).to_csv(index=False).encode("utf-8")
