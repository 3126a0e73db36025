"""Dataset statistics as plain functions over frames (the Data page draws what these return).

Every function takes the tables of a catalog bundle (``items``, ``interactions``, optionally
``users``) as pandas frames plus, where needed, the column roles of the items table (the
``schema.items`` mapping ``column -> role``). Nothing here reads the workspace or needs Streamlit,
so each function is easy to test by hand.

It also holds :func:`read_bundle_tables` and :func:`role_table`: the raw tables of a bundle (folder
or zip) and their inferred roles with reasons, which the Data page shows even when validation
fails (a wrong role is often *why* it fails, e.g. a rating column with text in it).
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from . import schema as S

__all__ = [
    "overview",
    "activity_counts",
    "long_tail_curve",
    "activity_histogram",
    "rating_distribution",
    "activity_over_time",
    "modality_coverage",
    "category_columns",
    "card_columns",
    "maker_column",
    "category_breakdown",
    "price_column",
    "format_amount",
    "title_column",
    "sample_items",
    "read_bundle_tables",
    "role_table",
    "roles_from_table",
]

CONTENT_ROLES = (S.TEXT, S.IMAGE, S.CATEGORICAL, S.MULTI_LABEL, S.NUMERIC)
_PRICE_NAME = re.compile(r"(price|cost|amount|msrp|fee|preis|prix|precio|prezzo|kosten)", re.I)
_TITLE_NAME = re.compile(r"^(title|name|product_name|item_name|headline)$", re.I)
_CATEGORY_FIRST = re.compile(r"(categor|genre|department|type|section)", re.I)
# who made the item: a brand, an author, a director. Such a column has hundreds or thousands of values in a
# real catalogue (too many for a chart), yet it is what a shopper reads on a card and filters by
_MAKER_NAME = re.compile(
    r"(brand|author|artist|director|publisher|manufactur|maker|studio|creator|designer|composer|writer|"
    r"vendor|seller|supplier|(?<![a-z])(cast|actor|band|label)(?![a-z]))",
    re.I,
)


# ----------------------------------------------------------------------------- counts


def overview(
    items: pd.DataFrame, interactions: pd.DataFrame, users: pd.DataFrame | None = None, rating_column: str | None = None
) -> dict[str, Any]:
    """Headline numbers: counts, density/sparsity of the user x item matrix, activity medians."""
    n_users = int(interactions["user_id"].nunique()) if len(interactions) else 0
    n_items = int(len(items))
    pairs = interactions.drop_duplicates(["user_id", "item_id"]) if len(interactions) else interactions
    n_pairs = int(len(pairs))
    density = n_pairs / (n_users * n_items) if n_users and n_items else 0.0
    per_user = activity_counts(interactions, "user")
    # over the whole catalogue: an item nobody chose is an item with 0 users (a shop with 300 books of which
    # 88 sold had read "median 3 users per item", the 20 % most popular taking 89 % instead of 99 %)
    per_item = activity_counts(interactions, "item")
    catalogue = pd.Index(items["item_id"].astype(str).unique()) if "item_id" in items.columns else pd.Index([])
    per_item = per_item.rename(index=str)
    per_item = per_item.reindex(catalogue.union(per_item.index), fill_value=0)
    out: dict[str, Any] = {
        "users": n_users,
        "items": n_items,
        "interactions": int(len(interactions)),
        "unique_pairs": n_pairs,
        "density": float(density),
        "sparsity": float(1.0 - density) if n_users and n_items else 1.0,
        "items_without_interactions": int(n_items - items["item_id"].isin(set(interactions["item_id"])).sum()),
        "median_per_user": float(per_user.median()) if len(per_user) else 0.0,
        "median_per_item": float(per_item.median()) if len(per_item) else 0.0,
        "max_per_user": int(per_user.max()) if len(per_user) else 0,
        "max_per_item": int(per_item.max()) if len(per_item) else 0,
        "user_attributes": int(len(users.columns) - 1) if users is not None else 0,
    }
    # share of interactions that go to the 20 % most popular items of the catalogue: how long the tail is
    if len(per_item) and per_item.sum() > 0:
        top = per_item.sort_values(ascending=False)
        head = top.iloc[: max(1, int(np.ceil(0.2 * len(top))))].sum()
        out["top20_item_share"] = float(head / top.sum())
    else:
        out["top20_item_share"] = 0.0
    if rating_column and rating_column in interactions.columns:
        ratings = pd.to_numeric(interactions[rating_column], errors="coerce").dropna()
        out["mean_rating"] = float(ratings.mean()) if len(ratings) else None
    return out


def activity_counts(interactions: pd.DataFrame, by: str = "user") -> pd.Series:
    """Number of distinct partners per user (``by="user"``) or per item (``by="item"``)."""
    if by not in ("user", "item"):
        raise ValueError("by must be 'user' or 'item'")
    key, other = ("user_id", "item_id") if by == "user" else ("item_id", "user_id")
    if len(interactions) == 0:
        return pd.Series(dtype="int64", name="count")
    counts = interactions.drop_duplicates([key, other]).groupby(key).size()
    counts.name = "count"
    return counts


def long_tail_curve(interactions: pd.DataFrame, by: str = "item", max_points: int = 2000) -> pd.DataFrame:
    """Counts sorted from most to least active: columns ``rank`` (1 = most), ``count``, ``cumulative_share``.

    Long catalogues are thinned to about ``max_points`` rows (log-spaced ranks keep the head and
    the tail visible on a log axis).
    """
    counts = activity_counts(interactions, by).sort_values(ascending=False).to_numpy()
    if len(counts) == 0:
        return pd.DataFrame({"rank": [], "count": [], "cumulative_share": []})
    frame = pd.DataFrame(
        {"rank": np.arange(1, len(counts) + 1), "count": counts, "cumulative_share": np.cumsum(counts) / counts.sum()}
    )
    if len(frame) > max_points:
        keep = np.unique(np.geomspace(1, len(frame), max_points).astype(int) - 1)
        frame = frame.iloc[keep]
    return frame.reset_index(drop=True)


def activity_histogram(interactions: pd.DataFrame, by: str = "user", bins: int = 30) -> pd.DataFrame:
    """Log-spaced histogram of activity: columns ``low``, ``high``, ``label``, ``count``."""
    counts = activity_counts(interactions, by)
    if len(counts) == 0:
        return pd.DataFrame({"low": [], "high": [], "label": [], "count": []})
    low, top = int(max(counts.min(), 1)), int(counts.max())
    edges = np.unique(np.round(np.geomspace(low, top + 1, bins + 1)).astype(int))
    if len(edges) < 2:
        edges = np.array([low, top + 1])
    hist, _ = np.histogram(counts.to_numpy(), bins=edges)
    labels = [f"{lo}" if hi - lo == 1 else f"{lo}–{hi - 1}" for lo, hi in zip(edges[:-1], edges[1:])]
    return pd.DataFrame({"low": edges[:-1], "high": edges[1:] - 1, "label": labels, "count": hist})


def rating_distribution(interactions: pd.DataFrame, rating_column: str | None) -> pd.DataFrame:
    """How often each rating value occurs (``rating``, ``count``, ``share``); empty without ratings.

    More than 20 distinct values (continuous scores) are binned into 20 equal-width bins.
    """
    empty = pd.DataFrame({"rating": [], "count": [], "share": []})
    if not rating_column or rating_column not in interactions.columns:
        return empty
    values = pd.to_numeric(interactions[rating_column], errors="coerce").dropna()
    if len(values) == 0:
        return empty
    if values.nunique() > 20:
        binned = pd.cut(values, bins=20)
        counts = binned.value_counts(sort=False)
        frame = pd.DataFrame(
            {"rating": [f"{iv.left:.3g}–{iv.right:.3g}" for iv in counts.index], "count": counts.to_numpy()}
        )
    else:
        counts = values.value_counts().sort_index()
        frame = pd.DataFrame({"rating": counts.index.to_numpy(), "count": counts.to_numpy()})
    frame["share"] = frame["count"] / frame["count"].sum()
    return frame


def activity_over_time(interactions: pd.DataFrame, timestamp_column: str | None) -> pd.DataFrame:
    """Interactions and active users per day, week or month (whichever gives a readable number of bars for
    the span): columns ``start`` (the period's first day), ``interactions``, ``users``; ``attrs["period"]``
    names the period. Empty without a timestamp column or with every timestamp on one day.

    Timestamps are the imported frames' unix seconds (UTC); an interaction without one is left out.
    """
    empty = pd.DataFrame({"start": pd.to_datetime([]), "interactions": [], "users": []})
    if not timestamp_column or timestamp_column not in interactions.columns:
        return empty
    seconds = pd.to_numeric(interactions[timestamp_column], errors="coerce")
    dated = interactions.loc[seconds.notna(), ["user_id"]].assign(
        when=pd.to_datetime(seconds[seconds.notna()], unit="s", utc=True).dt.tz_localize(None)
    )
    if len(dated) == 0 or dated["when"].dt.normalize().nunique() < 2:
        return empty
    days = (dated["when"].max() - dated["when"].min()).days
    # about 30-120 bars: days up to four months, weeks (from Monday) up to two years, months beyond
    period, code = ("day", "D") if days <= 120 else ("week", "W-SUN") if days <= 730 else ("month", "M")
    starts = dated["when"].dt.to_period(code).dt.start_time
    grouped = dated.groupby(starts)
    frame = (
        pd.DataFrame({"interactions": grouped.size(), "users": grouped["user_id"].nunique()})
        .rename_axis("start")
        .reset_index()
    )
    frame.attrs["period"] = period
    frame.attrs["first"] = dated["when"].min()
    frame.attrs["last"] = dated["when"].max()
    return frame


# ----------------------------------------------------------------------------- content


def _present(series: pd.Series) -> pd.Series:
    """Boolean: the cell holds a value (not NaN, not blank text)."""
    if pd.api.types.is_numeric_dtype(series):
        return series.notna()
    text = series.astype("string").str.strip()
    return text.notna() & (text != "") & ~text.str.lower().isin(["nan", "none", "null"])


def modality_coverage(
    items: pd.DataFrame, roles: Mapping[str, str], root: str | os.PathLike | None = None, image_exists: bool = True
) -> pd.DataFrame:
    """Share of items that have each modality and each attribute.

    Rows: ``text`` (any text column), ``image`` (a picture file that exists under ``root`` when
    ``image_exists``), then one row per content column. Columns: ``name``, ``kind``
    (``modality`` or ``column``), ``role``, ``items``, ``share``.
    """
    n = max(len(items), 1)
    rows = []
    text_columns = [c for c, r in roles.items() if r == S.TEXT and c in items.columns]
    if text_columns:
        any_text = np.zeros(len(items), dtype=bool)
        for column in text_columns:
            any_text |= _present(items[column]).to_numpy()
        rows.append({"name": "text", "kind": "modality", "role": S.TEXT, "items": int(any_text.sum())})
    image_columns = [c for c, r in roles.items() if r == S.IMAGE and c in items.columns]
    if image_columns:
        column = image_columns[0]
        present = _present(items[column]).to_numpy()
        if image_exists and root is not None:
            base = Path(root)
            present = np.array([bool(p) and _image_file(base, v) for p, v in zip(present, items[column])])
        rows.append({"name": "image", "kind": "modality", "role": S.IMAGE, "items": int(present.sum())})
    attribute_columns = [
        c for c, r in roles.items() if r in (S.CATEGORICAL, S.MULTI_LABEL, S.NUMERIC) and c in items.columns
    ]
    if attribute_columns:
        any_attribute = np.zeros(len(items), dtype=bool)
        for column in attribute_columns:
            any_attribute |= _present(items[column]).to_numpy()
        rows.append({"name": "attributes", "kind": "modality", "role": "attributes", "items": int(any_attribute.sum())})
    for column, role in roles.items():
        if role in CONTENT_ROLES and column in items.columns:
            rows.append({"name": column, "kind": "column", "role": role, "items": int(_present(items[column]).sum())})
    frame = pd.DataFrame(rows, columns=["name", "kind", "role", "items"])
    frame["share"] = frame["items"] / n
    return frame


def _image_file(root: Path, value: Any) -> bool:
    text = str(value).strip().replace("\\", "/")
    path = PurePosixPath(text)
    if not text or path.is_absolute() or ".." in path.parts:
        return False
    return (root / text).is_file()


def category_columns(items: pd.DataFrame, roles: Mapping[str, str], max_values: int = 200) -> list[str]:
    """Categorical and multi-label columns worth breaking down (2..max_values distinct values).

    Category-like names (category, genre, department, type) come first.
    """
    found = []
    for column, role in roles.items():
        if role not in (S.CATEGORICAL, S.MULTI_LABEL) or column not in items.columns:
            continue
        values = _labels(items[column], role, "|")
        distinct = values.nunique()
        if 2 <= distinct <= max_values:
            found.append(column)
    return sorted(found, key=lambda c: (not _CATEGORY_FIRST.search(c), list(roles).index(c)))


def card_columns(
    items: pd.DataFrame, roles: Mapping[str, str], separator: str = "|", limit: int = 3, max_values: int = 200
) -> list[str]:
    """The attribute columns an item's card shows and the Recommendations page filters by, at most ``limit``:
    category-like columns first (genre, department), then who made the item (brand, author, director, cast)
    whatever their number of values, then the other categorical and multi-label columns of 2..``max_values``
    values. A maker column is left out only when its values hardly repeat (an identifier of another system)."""
    chosen: list[tuple[int, int, str]] = []
    for position, (column, role) in enumerate(roles.items()):
        if role not in (S.CATEGORICAL, S.MULTI_LABEL) or column not in items.columns:
            continue
        values = _labels(items[column], role, separator)
        distinct = values.nunique()
        if distinct < 2:
            continue
        if _CATEGORY_FIRST.search(column) and distinct <= max_values:
            rank = 0
        elif _MAKER_NAME.search(column) and distinct <= 0.9 * len(values):
            rank = 1
        elif distinct <= max_values:
            rank = 2
        else:
            continue
        chosen.append((rank, position, column))
    return [column for _, _, column in sorted(chosen)][:limit]


def maker_column(items: pd.DataFrame, roles: Mapping[str, str]) -> str | None:
    """The first categorical or multi-label column that names who made the item (brand, author, director),
    None when there is none: an item picker shows it beside the title, so that a search by it finds the item."""
    for column, role in roles.items():
        if role in (S.CATEGORICAL, S.MULTI_LABEL) and column in items.columns and _MAKER_NAME.search(column):
            return column
    return None


def _labels(series: pd.Series, role: str, separator: str) -> pd.Series:
    """One row per (item position, label); multi-label cells are split on ``separator``."""
    text = series.astype("string").fillna("").str.strip()
    if role == S.MULTI_LABEL:
        text = text.str.split(re.escape(separator), regex=True).explode().str.strip()
    return text[text != ""]


def category_breakdown(
    items: pd.DataFrame,
    column: str,
    role: str = S.CATEGORICAL,
    separator: str = "|",
    interactions: pd.DataFrame | None = None,
    top: int = 25,
) -> pd.DataFrame:
    """Items (and interactions, when given) per value of a categorical or multi-label column.

    Columns ``value``, ``items``, ``interactions``; the ``top`` largest values, the rest summed
    into ``(other)``.
    """
    labels = _labels(items[column], role, separator)
    item_ids = items["item_id"].astype(str).to_numpy()
    pairs = pd.DataFrame(
        {"item_id": item_ids[labels.index.to_numpy()] if len(labels) else [], "value": labels.to_numpy()}
    )
    frame = pairs.groupby("value").size().rename("items").to_frame()
    if interactions is not None and len(interactions):
        per_item = interactions.groupby("item_id").size()
        pairs["interactions"] = pairs["item_id"].map(per_item).fillna(0).astype(int)
        frame["interactions"] = pairs.groupby("value")["interactions"].sum()
    else:
        frame["interactions"] = 0
    frame = frame.sort_values(["items", "interactions"], ascending=False).reset_index()
    if len(frame) > top:
        rest = frame.iloc[top:]
        frame = pd.concat(
            [
                frame.iloc[:top],
                pd.DataFrame(
                    [
                        {
                            "value": "(other)",
                            "items": int(rest["items"].sum()),
                            "interactions": int(rest["interactions"].sum()),
                        }
                    ]
                ),
            ],
            ignore_index=True,
        )
    return frame


def price_column(
    items: pd.DataFrame, roles: Mapping[str, str], min_values: int = 1, units: Mapping[str, str] | None = None
) -> str | None:
    """A numeric column written with a currency sign (``units``: the items' columns and their signs, as the
    import found them), else one named like a price (price, cost, amount, msrp; preis, prix, precio), with at
    least ``min_values`` numbers, if there is one."""
    for column in units or {}:
        if roles.get(column) == S.NUMERIC and column in items.columns:
            if pd.to_numeric(items[column], errors="coerce").notna().sum() >= min_values:
                return column
    for column, role in roles.items():
        if role == S.NUMERIC and column in items.columns and _PRICE_NAME.search(column):
            if pd.to_numeric(items[column], errors="coerce").notna().sum() >= min_values:
                return column
    return None


def format_amount(value: float, sign: str = "", style: str | None = None, decimals: int = 2) -> str:
    """``value`` written as its column writes amounts: "$1,592.24" by default (no sign: "1,592.24"), or in the
    column's ``style`` (:func:`recsys.data.schema.amount_style`: "1.234,56 ¤" gives "1.592,24 €")."""
    number = f"{value:,.{decimals}f}"
    if style and "1.234,56" in style:  # swap the separators: "1,592.24" -> "1.592,24"
        number = number.replace(",", "\x00").replace(".", ",").replace("\x00", ".")
    if not sign:
        return number
    return f"{number} {sign}" if style and style.endswith("¤") else f"{sign}{number}"


def title_column(roles: Mapping[str, str], items: pd.DataFrame | None = None) -> str:
    """The column that names an item best: a title-like text column, else the first text column, else the id."""
    text_columns = [c for c, r in roles.items() if r == S.TEXT and (items is None or c in items.columns)]
    for column in text_columns:
        if _TITLE_NAME.match(column):
            return column
    if text_columns and items is not None:
        # the shortest text column on average reads like a title; descriptions are long
        return min(text_columns, key=lambda c: items[c].astype(str).str.len().mean())
    return text_columns[0] if text_columns else "item_id"


def sample_items(
    items: pd.DataFrame,
    roles: Mapping[str, str],
    root: str | os.PathLike | None = None,
    n: int = 12,
    seed: int = 0,
    category: str | None = None,
) -> pd.DataFrame:
    """A seeded sample of items for a gallery, preferring items with a picture (and spreading over
    the values of ``category`` when given)."""
    if len(items) == 0:
        return items.head(0)
    image = next((c for c, r in roles.items() if r == S.IMAGE and c in items.columns), None)
    pool = items
    if image is not None:
        has = _present(items[image])
        if root is not None:
            base = Path(root)
            has = has & items[image].map(lambda v: _image_file(base, v))
        if has.any():
            pool = items[has.to_numpy()]
    rng = np.random.default_rng(seed)
    if category and category in pool.columns:
        # round-robin over categories so the gallery shows the breadth of the catalog
        groups = [rng.permutation(g.index.to_numpy()) for _, g in pool.groupby(pool[category].astype(str), sort=True)]
        order = [
            idx for tier in range(max(len(g) for g in groups)) for g in groups if tier < len(g) for idx in [g[tier]]
        ]
        return pool.loc[order[:n]]
    take = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
    return pool.iloc[np.sort(take)]


# ----------------------------------------------------------------------------- roles of a raw bundle

_TABLE_FILE = re.compile(r"^(items|interactions|users)\.(csv|parquet|jsonl|ndjson)$", re.I)
_MAX_TABLE_BYTES = 2 * 1024**3


def read_bundle_tables(
    source: str | os.PathLike | bytes,
) -> tuple[dict[str, pd.DataFrame], dict[str, Any] | None, list[str]]:
    """The tables of a bundle (folder, ``.zip`` path or zip bytes), read as the loader reads them (a shop's
    export included: :func:`recsys.data.bundle.tables_as_loaded`).

    Returns ``(tables, schema_json, problems)``: only the ``items`` / ``interactions`` / ``users``
    files are read (never pictures), a zip is not unpacked beyond those (at most three) entries,
    and anything unreadable is reported in ``problems`` rather than raised.
    """
    from .bundle import read_table
    from .report import ValidationReport

    report = ValidationReport()
    tables: dict[str, pd.DataFrame] = {}
    schema_json = None
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="recsys-preview-") as tmp:
        files: dict[str, Path] = {}
        if isinstance(source, (bytes, bytearray)) or (Path(source).suffix.lower() == ".zip" and Path(source).is_file()):
            try:
                archive = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
            except (zipfile.BadZipFile, OSError):
                return {}, None, ["this is not a readable .zip archive"]
            with archive:
                names = [i for i in archive.infolist() if not i.is_dir()]
                prefix = _zip_root(names)
                for info in names:
                    relative = info.filename[len(prefix) :]
                    if "/" in relative or ".." in relative:
                        continue
                    if _TABLE_FILE.match(relative) or relative == "schema.json":
                        if info.file_size > _MAX_TABLE_BYTES:
                            problems.append(f"{relative} is too large to preview")
                            continue
                        target = Path(tmp) / relative
                        target.write_bytes(archive.read(info))
                        files[relative] = target
        else:
            folder = Path(source)
            if not folder.is_dir():
                return {}, None, [f"'{folder}' is not a folder or a .zip file"]
            folder = _folder_root(folder)
            for path in folder.iterdir():
                if path.is_file() and (_TABLE_FILE.match(path.name) or path.name == "schema.json"):
                    files[path.name] = path
        for table in S.TABLES:
            for name, path in sorted(files.items()):
                if name.lower().startswith(table + "."):
                    frame = read_table(path, report)
                    if frame is not None:
                        tables[table] = frame
                    break
        if "schema.json" in files:
            try:
                schema_json = S.Schema.read(files["schema.json"]).to_dict()
            except (ValueError, UnicodeDecodeError) as exc:
                problems.append(f"schema.json is not valid: {exc}")
        # a required table with no file at all is a problem too: said beside the others, not after they are fixed
        for table in ("items", "interactions"):
            if not any(name.lower().startswith(table + ".") for name in files):
                problems.append(
                    f"no {table} table found: the bundle needs {table}.csv, {table}.parquet or {table}.jsonl"
                )
    problems += [issue.describe() for issue in report.issues]
    if "items" in tables:  # a shop's export as the import will read it (variant rows as products, ...)
        from .bundle import tables_as_loaded

        tables = {t: f for t, f in tables_as_loaded(tables, schema_json).items() if f is not None}
    return tables, schema_json, problems


def _zip_root(entries: list[zipfile.ZipInfo]) -> str:
    """The folder prefix holding the tables: '' or a single wrapping folder (as the loader does)."""
    names = [e.filename for e in entries if not e.filename.startswith("__MACOSX")]
    prefix = ""
    while True:
        level = [n[len(prefix) :] for n in names if n.startswith(prefix)]
        if any(_TABLE_FILE.match(n) for n in level):
            return prefix
        tops = {n.split("/", 1)[0] for n in level if "/" in n}
        if len(tops) != 1:
            return ""
        prefix += tops.pop() + "/"


def _folder_root(folder: Path) -> Path:
    if any(_TABLE_FILE.match(p.name) for p in folder.iterdir() if p.is_file()):
        return folder
    children = [c for c in folder.iterdir() if c.is_dir() and not c.name.startswith((".", "__MACOSX"))]
    return _folder_root(children[0]) if len(children) == 1 else folder


def role_table(
    tables: Mapping[str, pd.DataFrame | None],
    schema_json: Mapping[str, Any] | None = None,
    separator: str = S.DEFAULT_SEPARATOR,
) -> pd.DataFrame:
    """One row per column of each table: ``table``, ``column``, ``role`` (inferred, then the bundle's
    ``schema.json``), ``reason`` and an ``example`` value. Editable in the app; see
    :func:`roles_from_table`."""
    separator = (schema_json or {}).get("multi_label_separator") or separator
    inferred = S.infer_schema(tables, separator)
    if schema_json:
        try:
            inferred = inferred.merged(schema_json)
        except S.SchemaError:
            pass
    rows = []
    for table in S.TABLES:
        frame = tables.get(table)
        if frame is None:
            continue
        for column in frame.columns:
            values = frame[column]
            present = values[_present(values)]
            example = str(present.iloc[0]) if len(present) else ""
            role = inferred.table(table).get(str(column), S.IGNORE)
            if str(column) in inferred.columns.get(table, {}):
                role = S.ID  # mapped to an id column (``sku`` -> item_id): what the import stores it as
            if table == "users" and role == S.IGNORE:
                example = ""  # an ignored user column is never shown (see schema.visible_users), not even here
            rows.append(
                {
                    "table": table,
                    "column": str(column),
                    "role": role,
                    "reason": inferred.reasons.get(table, {}).get(str(column), ""),
                    "example": example[:80] + ("…" if len(example) > 80 else ""),
                }
            )
    return pd.DataFrame(rows, columns=["table", "column", "role", "reason", "example"])


def id_columns(
    tables: Mapping[str, pd.DataFrame | None], schema_json: Mapping[str, Any] | None = None
) -> dict[str, dict[str, str | None]]:
    """For each table, which column serves as each id it needs (``{"interactions": {"user_id": "customer_id",
    "item_id": "article_id"}}``): the column with the standard name, else the bundle's or the inferred
    mapping, else None. The Data page's column mapping starts from it."""
    inferred = S.infer_schema(tables)
    if schema_json:
        try:
            inferred = inferred.merged(schema_json)
        except S.SchemaError:
            pass
    out: dict[str, dict[str, str | None]] = {}
    for table, needed in S.REQUIRED_COLUMNS.items():
        frame = tables.get(table)
        if frame is None:
            continue
        mapped = {target: source for source, target in inferred.columns.get(table, {}).items()}
        out[table] = {name: name if name in frame.columns else mapped.get(name) for name in needed}
    return out


def roles_from_table(edited: pd.DataFrame, original: pd.DataFrame | None = None) -> dict[str, Any]:
    """Schema overrides (the shape of ``schema.json``) from an edited role table: only rows whose role
    differs from ``original`` (or every row when ``original`` is None)."""
    overrides: dict[str, dict[str, str]] = {}
    before = {}
    if original is not None:
        before = {(r.table, r.column): r.role for r in original.itertuples()}
    for row in edited.itertuples():
        if row.role not in S.ROLES:
            continue
        if original is None or before.get((row.table, row.column)) != row.role:
            overrides.setdefault(row.table, {})[row.column] = row.role
    return overrides
