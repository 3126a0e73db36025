"""Column roles: what each column of a bundle means to the recommender.

Every column gets one role. Roles are inferred from names and values (:func:`infer_roles`), and a
``schema.json`` in the bundle or an explicit argument overrides any of them (:meth:`Schema.merged`).
Each inference carries a short reason so the app can show *why* a column got its role.

Column mapping: a bundle whose id columns have other names (``article_id``, ``customer_id``) says
which column is ``item_id`` / ``user_id`` in ``schema.json``'s ``columns`` (``{"items": {"article_id":
"item_id"}}``); without one, :func:`infer_column_mapping` finds them (unique per item row, referenced
by the interactions) and says so. When interactions have several time columns, the one used is named
and the others are ignored.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

ID = "id"
TEXT = "text"
CATEGORICAL = "categorical"
MULTI_LABEL = "multi_label"
NUMERIC = "numeric"
IMAGE = "image"
TIMESTAMP = "timestamp"
RATING = "rating"
IGNORE = "ignore"

ROLES: tuple[str, ...] = (ID, TEXT, CATEGORICAL, MULTI_LABEL, NUMERIC, IMAGE, TIMESTAMP, RATING, IGNORE)
TABLES: tuple[str, ...] = ("items", "interactions", "users")
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "items": ("item_id",),
    "interactions": ("user_id", "item_id"),
    "users": ("user_id",),
}
DEFAULT_SEPARATOR = "|"

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
_IMAGE_NAME = re.compile(r"(image|img|picture|photo|poster|thumbnail|cover)", re.I)
# about a picture, not one: Shopify's "Image Alt Text", "Image Position", "photo credit"
_NOT_A_PICTURE = re.compile(r"(alt|text|caption|title|desc|credit|position|count|width|height|size)", re.I)
_TIME_NAME = re.compile(
    r"(^|_)(timestamp|time|date|datetime|dat|dt|day|ts|created|created_at|updated_at|datum|zeit|zeitpunkt|fecha)($|_)",
    re.I,
)
# a whole name ("rating") or the last word of one ("Book-Rating", "user_score", "review stars")
_RATING_NAME = re.compile(
    r"(^|[\W_])(rating|ratings|score|stars|star_rating|bewertung|sterne|valoracion|puntuacion)$|^(overall|label)$",
    re.I,
)
_CATEGORY_NAME = re.compile(
    r"(brand|categor|genre|type|colou?r|author|artist|director|publisher|manufacturer|maker|country|language|"
    r"segment|band|department|style|material|size|gender|occupation|city|region)",
    re.I,
)
_ID_NAME = re.compile(r"(^id$|_id$|^id_|uuid|asin|sku|isbn)", re.I)
_NUMBER = re.compile(r"^\s*[-+]?[$€£¥]?\s*[-+]?(\d{1,3}(,\d{3})+|\d+)?(\.\d+)?([eE][-+]?\d+)?\s*%?\s*$")


@dataclass(frozen=True)
class RoleGuess:
    role: str
    reason: str
    # a multi-label column whose file joins its labels with another separator than the dataset's ("A; B"):
    # that separator (the import rewrites the values with the dataset's own, which everything else splits on)
    separator: str | None = None


# separators a file may join labels with besides the dataset's own: ";" in any attribute column ("Author A;
# Author B"), "," only in a column named like tags ("cotton, summer, sale"), since a comma also sits inside
# one value ("King, Stephen", "Paris, France"). Never in a title or a description, which stay text
_OTHER_SEPARATORS = (";", ",")
_TAG_NAME = re.compile(r"(tag|keyword|label|topic|theme|schlagw|etiquet)", re.I)
_PROSE_NAME = re.compile(r"(title|name|desc|text|summary|comment|review|body|content|titel|beschreib)", re.I)


def split_labels(values: pd.Series, separator: str) -> pd.Series:
    """Each value's labels, split on ``separator`` and stripped, one row per label (empty ones dropped),
    indexed like ``values``; a ";" that ends an HTML escape ("Simon &amp; Schuster", ``_ENTITY``) splits
    nothing."""
    text = values.astype(str)
    if separator == ";":
        text = text.str.replace(_ENTITY, "&\\1\x00", regex=True)
    tokens = text.str.split(separator, regex=False).explode().str.strip()
    if separator == ";":
        tokens = tokens.str.replace("\x00", ";", regex=False)
    return tokens[tokens != ""]


def _short_labels(tokens: pd.Series) -> bool:
    return bool(tokens.str.split().str.len().mean() <= 4 and tokens.str.len().mean() <= 40)


def _distinct(count: int) -> str:
    return f"{count} distinct value{'s' if count != 1 else ''}"


# a number written with a decimal comma ("12,50", "1.299,00") or with a decimal point ("12.50", "1,299.00"),
# after the currency sign, the percent sign and spaces are taken out
_DECIMAL_COMMA = re.compile(r"^[-+]?(\d{1,3}(\.\d{3})+|\d+),\d{1,2}$")
_DECIMAL_POINT = re.compile(r"^[-+]?(\d{1,3}(,\d{3})+|\d+)\.\d+$")
_THOUSANDS_POINT = re.compile(r"^[-+]?\d{1,3}(\.\d{3})+$")
_SIGN_AFTER = re.compile(r"\d\s*[$€£¥]\s*$")


def parse_numeric(series: pd.Series) -> pd.Series:
    """Parse numbers written as text ("$40.00", "1,299", "12%", "12,50 €") into floats; unparseable -> NaN.

    A column whose numbers are written with a decimal comma ("12,50 €", "1.299,00") is read so, when more of
    its values show a decimal comma than a decimal point: read as a thousands separator, "12,50 €" was 1250.
    Whole amounts with the currency sign after them, as European shops write them ("1.299 €", "49 €"), read
    their points as thousands separators when no value has another number of digits after a point."""
    if pd.api.types.is_bool_dtype(series):
        return series.astype(float)
    if pd.api.types.is_numeric_dtype(series):
        return series.astype(float)
    text = series.astype("string").str.strip()
    bare = text.str.replace(r"[$€£¥%\s]", "", regex=True)
    if _european(text, bare):
        cleaned = bare.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    else:
        cleaned = bare.str.replace(",", "", regex=False)
    return pd.to_numeric(cleaned, errors="coerce").astype(float)


def _european(text: pd.Series, bare: pd.Series) -> bool:
    """Whether numbers written as ``text`` (``bare``: without signs and spaces) put a comma before the decimals
    and points between thousands (see :func:`parse_numeric`)."""
    comma_decimals = int(bare.str.match(_DECIMAL_COMMA).fillna(False).sum())
    point_decimals = bare.str.match(_DECIMAL_POINT).fillna(False)
    thousands_points = bare.str.match(_THOUSANDS_POINT).fillna(False)
    european_whole = (
        comma_decimals == 0
        and bool(thousands_points.any())
        and not bool((point_decimals & ~thousands_points).any())
        and text[bare.fillna("") != ""].str.contains(_SIGN_AFTER).mean() > 0.5
    )
    return european_whole or bool(comma_decimals and comma_decimals > int(point_decimals.sum()))


def _written_values(series: pd.Series) -> pd.Series | None:
    """A column's non-empty values as the file wrote them (stripped text); None for a column already read as
    numbers or booleans, or with no value: nothing there to read a sign or a number format from."""
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return None
    text = series.astype("string").str.strip()
    text = text[text.notna() & (text != "")]
    return None if text.empty else text


def amount_style(series: pd.Series) -> str | None:
    """How a column of amounts writes them, when not as "$1,234.56": "1.234,56 ¤" (a decimal comma, the
    currency sign after the number), "1,234.56 ¤" or "¤1.234,56" (¤ stands for the column's sign); None for the
    English way or plain numbers. The pages write the column's amounts the same way
    (:func:`recsys.data.stats.format_amount`)."""
    text = _written_values(series)
    if text is None:
        return None
    bare = text.str.replace(r"[$€£¥%\s]", "", regex=True)
    comma = _european(text, bare)
    after = bool(text.str.contains(_SIGN_AFTER).mean() > 0.5)
    if not comma and not after:
        return None
    number = "1.234,56" if comma else "1,234.56"
    return f"{number} ¤" if after else f"¤{number}"


_TAG = re.compile(r"</?[a-zA-Z][^<>]*>")
_ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z][a-zA-Z0-9]{1,7});")


def plain_text(text: str) -> str:
    """Catalogue text without HTML markup (a shop export's "<p>Chef knife&nbsp;&amp; sharpener</p>"): tags become
    spaces and entities their characters, so that encoders and explanations read words, not "nbsp" and "div".
    Text with neither is returned as it is. (What the pages show is the text as imported, always as text.)"""
    if "<" not in text and "&" not in text:
        return text
    out = _TAG.sub(" ", text)
    return html.unescape(out) if _ENTITY.search(out) else out


_CURRENCY = re.compile(r"[$€£¥]")


def currency_symbol(series: pd.Series) -> str | None:
    """The currency sign a column of numbers was written with ("$40.00", "€ 12"): the one sign found in at
    least half of the non-empty values, when no other sign appears; None for plain numbers or a mix."""
    text = _written_values(series)
    if text is None:
        return None
    found = text.str.findall(_CURRENCY)
    signs = {sign for signs in found for sign in signs}
    if len(signs) != 1 or (found.str.len() > 0).mean() < 0.5:
        return None
    return signs.pop()


_NUMERIC_DATE = re.compile(r"^\s*(\d{1,2})([./-])(\d{1,2})\2\d{2,4}(?!\d)")


def _day_first(text: pd.Series) -> bool:
    """Whether a column's numeric dates (31.12.2023, 12/31/2023) put the day first, decided for the whole
    column: parsed value by value, "01.02.2024" was 2 January beside "31.12.2023" as 31 December. A first
    number above 12 somewhere says day first, a second one above 12 says month first; with neither, dots
    are read day first (31.12.2023) and slashes or dashes month first (12/31/2023)."""
    found = text.str.extract(_NUMERIC_DATE)
    if found[0].isna().all():
        return False
    first, second = pd.to_numeric(found[0]), pd.to_numeric(found[2])
    if (first > 12).any() and not (second > 12).any():
        return True
    if (second > 12).any() and not (first > 12).any():
        return False
    return bool((found[1] == ".").sum() > (found[1].notna().sum() / 2))


def parse_timestamp(series: pd.Series) -> pd.Series:
    """Unix seconds (float) from epoch numbers (s or ms) or date strings; unparseable -> NaN."""
    numbers = parse_numeric(series)
    if numbers.notna().mean() > 0.9 and numbers.notna().any():
        # epoch milliseconds are 1000x larger than any plausible epoch second
        return numbers / 1000.0 if numbers.median() > 1e11 else numbers
    text = series.astype("string")
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="mixed", dayfirst=_day_first(text))
    seconds = (parsed - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(seconds=1)
    return seconds.astype(float)


def _mostly_dates(values: pd.Series, sample: int = 2_000) -> bool:
    """Whether more than 90 % of a column's values parse as times. A sample decides first where it clearly says
    no: dates in mixed formats are parsed one by one, and every text column of a 600,000-line orders export
    (names, e-mails, order numbers) took 15 s each to be found no dates."""
    if len(values) > 2 * sample and parse_timestamp(values.sample(sample, random_state=0)).notna().mean() <= 0.5:
        return False
    return bool(parse_timestamp(values).notna().mean() > 0.9)


def clean_ids(series: pd.Series) -> pd.Series:
    """Identifiers as clean strings: 1, 1.0 and ' 1 ' are the same id ("" where there is none)."""
    text = series.astype("string").str.strip()
    text = text.str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True)
    return text.fillna("").astype(object)


def _non_empty(series: pd.Series) -> pd.Series:
    if series.dtype == object or pd.api.types.is_string_dtype(series):
        values = series.dropna().astype(str).str.strip()
        return values[values != ""]
    return series.dropna()


_CODE_NAME = re.compile(r"(_no|_nr|_num|_code|_id|_key)$|^(code|no)_|(^|_)code(_|$)")


# a person's name, e-mail, phone, street or postcode in a users or an orders table ("First Name", "Billing Name",
# "Email", "Billing Zip"): no feature a recommender should learn from, and what a page should not show; an item's
# "Name" is its title. (A postcode read as a number was a "numeric" feature besides.)
_PERSONAL_NAME = re.compile(
    r"((first|last|full|given|family|billing|shipping|sur|nick|user|customer|vor|nach)[ _-]?name|e-?mail|phone|"
    r"telefon|mobile|street|stra(ss|ß)e|address[ _-]?(1|2|line)|(^|[ _-])zip([ _-]|code|$)|post[ _-]?code|"
    r"postal|postleitzahl|(^|[ _-])plz($|[ _-]))",
    re.I,
)
EMAIL_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.I)


def infer_role(name: str, series: pd.Series, table: str, separator: str = DEFAULT_SEPARATOR) -> RoleGuess:
    """Guess the role of one column. Order matters: names first, then values."""
    lowered = name.lower()
    if lowered in REQUIRED_COLUMNS.get(table, ()) or (table == "interactions" and lowered in ("user_id", "item_id")):
        return RoleGuess(ID, "required identifier column")
    values = _non_empty(series)
    n = len(values)
    if n == 0:
        return RoleGuess(IGNORE, "column is empty")
    if table != "interactions" and n == len(series) > 1 and values.nunique() == 1:
        # Shopify's "Published" TRUE, "Gift Card" FALSE, "Status" active on every product: a feature and an
        # explanation ("both are Status: active") that tell nothing apart
        return RoleGuess(IGNORE, f"the same value on every row ('{str(values.iloc[0])[:40]}'): tells nothing apart")
    if table == "items":
        from .shop_exports import says_availability  # (shop_exports reads ids through this module)

        if says_availability(name, values):
            return RoleGuess(IGNORE, "availability or stock: whether the item can be bought now, no feature of it")
    text_values = values.astype(str)
    numeric = parse_numeric(values)
    numeric_share = float(numeric.notna().mean())

    picture_share = text_values.str.lower().str.endswith(IMAGE_EXTENSIONS).mean()
    if picture_share > 0.5:
        return RoleGuess(IMAGE, "values are picture file paths")
    if _IMAGE_NAME.search(lowered) and not _NOT_A_PICTURE.search(lowered) and numeric_share < 0.5:
        return RoleGuess(IMAGE, f"named '{name}'")
    if table == "interactions" and _RATING_NAME.search(lowered) and numeric_share >= 0.5:
        # mostly numbers: a rating column with a few typos, which validation then points at
        return RoleGuess(RATING, f"named '{name}' and numeric")
    if _TIME_NAME.search(lowered):
        if _mostly_dates(values):
            return RoleGuess(TIMESTAMP, "named like a time and parses as dates/epoch seconds")
    elif table == "interactions" and numeric_share < 0.5 and _mostly_dates(values):
        # dates under a name in no list ("Bestelldatum" aside, "Kaufzeitpunkt", "когда"): their values decide
        return RoleGuess(TIMESTAMP, "its values are dates")
    unique_ratio = values.nunique() / n
    has_space = text_values.str.contains(r"\s", regex=True).mean()
    personal = _PERSONAL_NAME.search(lowered) or text_values.str.match(EMAIL_ADDRESS).mean() > 0.5
    if table != "items" and personal and values.nunique() > 2:  # "Accepts Email Marketing" (yes/no) is no one's
        return RoleGuess(IGNORE, "personal data (a person's name, e-mail, phone or street): not a feature")
    if _ID_NAME.search(lowered) and unique_ratio > 0.5:
        return RoleGuess(IGNORE, "an identifier of another system (not a feature)")
    if pd.api.types.is_bool_dtype(series) or set(text_values.str.lower().unique()) <= {
        "true",
        "false",
        "0",
        "1",
        "yes",
        "no",
    }:
        return RoleGuess(CATEGORICAL, "two values (yes/no)")
    if numeric_share > 0.95:
        whole = bool((numeric == numeric.round()).all())
        if unique_ratio > 0.98 and n > 50 and whole and not has_space:
            return RoleGuess(IGNORE, "unique whole numbers: looks like an identifier")
        if whole and _CODE_NAME.search(lowered):
            return RoleGuess(
                CATEGORICAL,
                f"whole numbers named like a code ('{name}'): labels, not amounts; {_distinct(values.nunique())}",
            )
        return RoleGuess(
            NUMERIC, "numbers" if numeric_share == 1.0 else "numbers (currency or thousands separators parsed)"
        )
    if separator and text_values.str.contains(re.escape(separator), regex=True).mean() > 0.02:
        tokens = text_values.str.split(re.escape(separator), regex=True).explode().str.strip()
        tokens = tokens[tokens != ""]
        mean_words = tokens.str.split().str.len().mean()
        if mean_words <= 4 and tokens.str.len().mean() <= 40:
            return RoleGuess(MULTI_LABEL, f"short labels joined by '{separator}'")
        return RoleGuess(TEXT, f"long passages joined by '{separator}' (read as text)")
    for other in _OTHER_SEPARATORS:
        if other == separator or _PROSE_NAME.search(lowered) or (other == "," and not _TAG_NAME.search(lowered)):
            continue
        joined = text_values.str.replace(_ENTITY, "", regex=True).str.contains(other, regex=False).mean()
        if joined > 0.02 and _short_labels(split_labels(text_values, other)):
            return RoleGuess(MULTI_LABEL, f"short labels joined by '{other}'", separator=other)
    mean_words = text_values.str.split().str.len().mean()
    if unique_ratio > 0.9 and has_space < 0.05 and n > 20:
        return RoleGuess(IGNORE, "unique codes without spaces: looks like an identifier")
    distinct = values.nunique()
    if _CATEGORY_NAME.search(lowered) and mean_words <= 6:
        return RoleGuess(CATEGORICAL, f"named like an attribute; {_distinct(distinct)}")
    if text_values.str.contains(" > ", regex=False).mean() > 0.5 and (distinct <= 200 or unique_ratio <= 0.2):
        # a category path of any length ("Apparel & Accessories > Clothing > Shirts & Tops > T-Shirts")
        return RoleGuess(CATEGORICAL, f"category paths ('A > B'); {_distinct(distinct)}")
    if mean_words <= 4 and (distinct <= 50 or unique_ratio <= 0.2):
        return RoleGuess(CATEGORICAL, f"{distinct} distinct short value{'s' if distinct != 1 else ''}")
    return RoleGuess(TEXT, "free text")


def infer_roles(frame: pd.DataFrame, table: str, separator: str = DEFAULT_SEPARATOR) -> dict[str, RoleGuess]:
    guesses = {str(col): infer_role(str(col), frame[col], table, separator) for col in frame.columns}
    return _drop_duplicate_codes(frame, guesses)


def _drop_duplicate_codes(frame: pd.DataFrame, guesses: dict[str, RoleGuess]) -> dict[str, RoleGuess]:
    """A categorical code column that is one-to-one with another categorical column (``colour_group_code``
    beside ``colour_group_name``) says the same thing twice: it would pad explanations and double that
    attribute's weight. The one with the longer values (the readable names) is kept."""
    categorical = [c for c, g in guesses.items() if g.role == CATEGORICAL]
    if len(categorical) < 2 or len(frame) == 0:
        return guesses
    sample = frame.head(50_000)
    for code in categorical:
        for name in categorical:
            if code == name or guesses[name].role != CATEGORICAL or guesses[code].role != CATEGORICAL:
                continue
            pair = sample[[code, name]].dropna().astype(str)
            if pair.empty or pair[code].nunique() < 2:
                continue
            one_to_one = pair.groupby(code)[name].nunique().max() == 1 and pair.groupby(name)[code].nunique().max() == 1
            longer = pair[name].str.len().mean() > pair[code].str.len().mean()
            if one_to_one and longer:
                guesses[code] = RoleGuess(IGNORE, f"the same information as '{name}' (one-to-one): kept once")
    return guesses


def visible_users(users: pd.DataFrame | None, schema: Schema | Mapping[str, Any]) -> pd.DataFrame | None:
    """The users table without the columns the schema marks ``ignore``: such a column (an e-mail, another
    system's id) is not a feature, so nothing has a reason to show it. The one filter every page reads users
    through (``app_pages.common.load_dataset_frames``); ``user_id`` always stays."""
    if users is None:
        return None
    roles = schema.users if isinstance(schema, Schema) else dict(schema.get("users") or {})
    hidden = [c for c in users.columns if c != "user_id" and roles.get(str(c)) == IGNORE]
    return users.drop(columns=hidden) if hidden else users


@dataclass
class Schema:
    """Roles for every column of every table, plus the multi-label separator."""

    items: dict[str, str] = field(default_factory=dict)
    interactions: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    multi_label_separator: str = DEFAULT_SEPARATOR
    reasons: dict[str, dict[str, str]] = field(default_factory=dict)
    columns: dict[str, dict[str, str]] = field(default_factory=dict)  # table -> {column in the file: id name}
    # table -> {numeric column: the currency sign its values were written with}: found at import (the numbers
    # are stored parsed), kept in the dataset's manifest beside the reasons, so that pages can write "$12.50"
    units: dict[str, dict[str, str]] = field(default_factory=dict)
    # table -> {numeric column: how it writes amounts, when not as "$1,234.56" (amount_style: "1.234,56 ¤")}
    amount_styles: dict[str, dict[str, str]] = field(default_factory=dict)
    # table -> {multi-label column: the separator its file joins labels with} where that is not
    # multi_label_separator (found at import, which rewrites the values with multi_label_separator)
    label_separators: dict[str, dict[str, str]] = field(default_factory=dict)

    def table(self, name: str) -> dict[str, str]:
        return getattr(self, name)

    def columns_with(self, table: str, *roles: str) -> list[str]:
        return [col for col, role in self.table(table).items() if role in roles]

    @property
    def image_column(self) -> str | None:
        columns = self.columns_with("items", IMAGE)
        return columns[0] if columns else None

    @property
    def rating_column(self) -> str | None:
        columns = self.columns_with("interactions", RATING)
        return columns[0] if columns else None

    @property
    def timestamp_column(self) -> str | None:
        columns = self.columns_with("interactions", TIMESTAMP)
        return columns[0] if columns else None

    def merged(self, overrides: Mapping[str, Any] | Schema | None) -> Schema:
        """A copy with ``overrides`` (same shape as ``schema.json``) applied over these roles."""
        if overrides is None:
            return Schema(
                items=dict(self.items),
                interactions=dict(self.interactions),
                users=dict(self.users),
                multi_label_separator=self.multi_label_separator,
                reasons={t: dict(r) for t, r in self.reasons.items()},
                columns={t: dict(m) for t, m in self.columns.items()},
                units={t: dict(u) for t, u in self.units.items()},
                amount_styles={t: dict(u) for t, u in self.amount_styles.items()},
                label_separators={t: dict(c) for t, c in self.label_separators.items()},
            )
        if isinstance(overrides, Schema):
            overrides = overrides.to_dict()
        check_schema_dict(overrides)
        result = self.merged(None)
        for table in TABLES:
            for column, role in (overrides.get(table) or {}).items():
                getattr(result, table)[column] = role
                result.reasons.setdefault(table, {})[column] = "set by schema"
        if overrides.get("multi_label_separator"):
            result.multi_label_separator = overrides["multi_label_separator"]
        for table, mapping in (overrides.get("columns") or {}).items():
            current = result.columns.setdefault(table, {})
            for source, target in mapping.items():  # one column per id name: a new choice replaces the old
                current.pop(source, None)  # "" unmaps a column
                for old in [c for c, t in current.items() if t == target]:
                    del current[old]
                if target:
                    current[source] = target
        return result

    def to_dict(self) -> dict[str, Any]:
        out = {
            "items": dict(self.items),
            "interactions": dict(self.interactions),
            "users": dict(self.users),
            "multi_label_separator": self.multi_label_separator,
        }
        if any(self.columns.values()):
            out["columns"] = {t: dict(m) for t, m in self.columns.items() if m}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schema:
        check_schema_dict(data)
        return cls(
            items=dict(data.get("items") or {}),
            interactions=dict(data.get("interactions") or {}),
            users=dict(data.get("users") or {}),
            multi_label_separator=data.get("multi_label_separator") or DEFAULT_SEPARATOR,
            columns={t: dict(m) for t, m in (data.get("columns") or {}).items()},
        )

    @classmethod
    def read(cls, path: str | Path) -> Schema:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


class SchemaError(ValueError):
    pass


def check_schema_dict(data: Mapping[str, Any]) -> None:
    """Raise :class:`SchemaError` with a plain message if a schema mapping is malformed."""
    if not isinstance(data, Mapping):
        raise SchemaError('schema must be a JSON object like {"items": {"title": "text"}}')
    unknown_keys = set(data) - set(TABLES) - {"multi_label_separator", "columns"}
    if unknown_keys:
        raise SchemaError(
            f"schema has unknown keys {sorted(unknown_keys)}; expected {list(TABLES)}, "
            "'multi_label_separator' and 'columns'"
        )
    columns = data.get("columns") or {}
    if not isinstance(columns, Mapping) or set(columns) - set(TABLES):
        raise SchemaError(
            "schema['columns'] must map a table to {column in the file: id name}, e.g. "
            '{"items": {"article_id": "item_id"}}'
        )
    for table, mapping in columns.items():
        if not isinstance(mapping, Mapping):
            raise SchemaError(f"schema['columns']['{table}'] must map column names to id names")
        for column, target in mapping.items():
            if target and target not in REQUIRED_COLUMNS[table]:
                raise SchemaError(
                    f"schema['columns']['{table}']['{column}'] = {target!r}: a column of {table} can be "
                    f"mapped to {' or '.join(REQUIRED_COLUMNS[table])}"
                )
    for table in TABLES:
        roles = data.get(table) or {}
        if not isinstance(roles, Mapping):
            raise SchemaError(f"schema['{table}'] must map column names to roles")
        for column, role in roles.items():
            if role not in ROLES:
                raise SchemaError(
                    f"schema['{table}']['{column}'] = {role!r} is not a role; choose one of {', '.join(ROLES)}"
                )


def infer_schema(tables: Mapping[str, pd.DataFrame | None], separator: str = DEFAULT_SEPARATOR) -> Schema:
    schema = Schema(multi_label_separator=separator)
    for table in TABLES:
        frame = tables.get(table)
        if frame is None:
            continue
        guesses = infer_roles(frame, table, separator)
        if table == "interactions":
            guesses = _one_time_column(frame, guesses)
        setattr(schema, table, {col: guess.role for col, guess in guesses.items()})
        schema.reasons[table] = {col: guess.reason for col, guess in guesses.items()}
        joined = {col: guess.separator for col, guess in guesses.items() if guess.separator}
        if joined:
            schema.label_separators[table] = joined
    mapping, reasons = infer_column_mapping(tables)
    for table, found in mapping.items():
        schema.columns[table] = found
        schema.reasons.setdefault(table, {}).update(reasons.get(table, {}))
    return schema


def _one_time_column(frame: pd.DataFrame, guesses: dict[str, RoleGuess]) -> dict[str, RoleGuess]:
    """Several time columns (``t_dat`` and ``timestamp``): the one with the most parseable values orders the
    interactions; the others are ignored, and both reasons say which one is used."""
    times = [c for c, g in guesses.items() if g.role == TIMESTAMP]
    if len(times) < 2:
        return guesses
    kept = max(times, key=lambda c: (parse_timestamp(frame[c]).notna().mean(), -times.index(c)))
    for column in times:
        if column == kept:
            guesses[column] = RoleGuess(
                TIMESTAMP, f"{guesses[column].reason}; the time column used (of {', '.join(times)})"
            )
        else:
            guesses[column] = RoleGuess(IGNORE, f"another time column: '{kept}' is the one used")
    return guesses


_USER_NAME = re.compile(
    r"(user|customer|client|member|visitor|account|buyer|shopper|reader|person|kunde|nutzer|usuario|utilisateur|"
    r"e-?mail)",
    re.I,
)


def _looks_like_user_ids(series: pd.Series) -> bool:
    """An interactions column whose values could be the users: repeated (a user has several interactions),
    many of them, and neither times nor a rating scale (numbers with a handful of values)."""
    values = _non_empty(series).astype(str)
    if len(values) < 2:
        return False
    distinct = values.nunique()
    if distinct == len(values) or distinct < max(2, 0.01 * len(values)):
        return False
    numbers = parse_numeric(values)
    if numbers.notna().mean() > 0.9 and numbers.nunique() <= 20:
        return False  # a rating or another small scale
    if numbers.notna().mean() <= 0.9 and parse_timestamp(values).notna().mean() > 0.9:
        return False  # dates
    return True


def could_be_ids(series: pd.Series) -> bool:
    """False for a column of amounts ("68.10", "12,50 €"): numbers with a fractional part or a currency sign are
    never ids, though a shop's prices can be one per product and be what its order lines repeat (a price column was
    taken for the item id, and its order lines' prices for the items bought)."""
    values = _non_empty(series).astype(str).head(20_000)
    if len(values) == 0:
        return True
    numbers = parse_numeric(values)
    if numbers.notna().mean() < 0.9:
        return True
    fractional = (numbers.dropna() % 1 != 0).mean() > 0.1
    return not (fractional or values.str.contains(_CURRENCY).mean() > 0.5)


def infer_column_mapping(
    tables: Mapping[str, pd.DataFrame | None],
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """Which columns are ``item_id`` / ``user_id`` when the tables use other names: the items column that is
    unique per row and whose values the interactions reference most (and that interactions column), then
    the interactions column named like a user (or, with a users table, sharing its ids). Returns
    ``(mapping, reasons)``; empty where the standard names are present or nothing fits."""
    items, interactions, users = (tables.get(t) for t in TABLES)
    mapping: dict[str, dict[str, str]] = {}
    reasons: dict[str, dict[str, str]] = {}
    if items is None or interactions is None or len(items) == 0 or len(interactions) == 0:
        return mapping, reasons

    def values(series: pd.Series) -> set[str]:
        return set(series.dropna().astype(str).str.strip().str.replace(r"\.0+$", "", regex=True))

    item_in_interactions = "item_id" if "item_id" in interactions.columns else None
    if "item_id" not in items.columns:
        best: tuple[float, Any, Any] = (0.0, None, None)  # (share, items column, interactions column)
        sample = interactions.head(20_000)
        for column in items.columns:
            series = items[column]
            if series.isna().any() or not series.astype(str).is_unique or not could_be_ids(series):
                continue
            known = values(series)
            for other in [item_in_interactions] if item_in_interactions else sample.columns:
                share = sample[other].astype(str).str.strip().str.replace(r"\.0+$", "", regex=True).isin(known).mean()
                if share > best[0]:
                    best = (share, column, other)
        if best[0] >= 0.5:
            mapping.setdefault("items", {})[best[1]] = "item_id"
            reasons.setdefault("items", {})[best[1]] = (
                f"used as item_id: one value per item, and {best[0]:.0%} of the interactions refer to it"
            )
            item_in_interactions = best[2]
            if best[2] != "item_id":
                mapping.setdefault("interactions", {})[best[2]] = "item_id"
                reasons.setdefault("interactions", {})[best[2]] = f"used as item_id: the values of items.{best[1]}"
    elif item_in_interactions is None:  # items.item_id, and the interactions name it otherwise ("Lineitem sku")
        known = values(items["item_id"])
        sample = interactions.head(20_000)
        shares = {
            c: sample[c].astype(str).str.strip().str.replace(r"\.0+$", "", regex=True).isin(known).mean()
            for c in sample.columns
        }
        if shares and max(shares.values()) >= 0.5:
            item_in_interactions = max(shares, key=shares.__getitem__)
            mapping.setdefault("interactions", {})[item_in_interactions] = "item_id"
            reasons.setdefault("interactions", {})[item_in_interactions] = (
                f"used as item_id: {shares[item_in_interactions]:.0%} of its values are items.item_id"
            )
    if "user_id" not in interactions.columns and item_in_interactions:
        candidates = [c for c in interactions.columns if c != item_in_interactions]
        chosen, reason = None, ""
        if users is not None and "user_id" in users.columns:  # the column sharing the users table's ids
            known = values(users["user_id"])
            shares = {c: interactions[c].head(20_000).astype(str).isin(known).mean() for c in candidates}
            if shares and max(shares.values()) >= 0.5:
                chosen = max(shares, key=shares.__getitem__)
                reason = f"used as user_id: {shares[chosen]:.0%} of its values are users.user_id"
        named = [c for c in candidates if _USER_NAME.search(str(c))]
        if chosen is None and len(named) == 1:
            chosen, reason = named[0], "used as user_id: named like a user"
        if chosen is None and not named:
            # no name to go by (another language's "Kunde"): the one other column whose values repeat like ids
            sample = interactions.head(20_000)
            like_ids = [c for c in candidates if _looks_like_user_ids(sample[c])]
            if len(like_ids) == 1:
                chosen = like_ids[0]
                reason = (
                    "used as user_id: the one other column whose values repeat like ids "
                    f"({sample[chosen].nunique():,} distinct values)"
                )
        if chosen is not None:
            mapping.setdefault("interactions", {})[chosen] = "user_id"
            reasons.setdefault("interactions", {})[chosen] = reason
    if users is not None and "user_id" not in users.columns:
        named = [c for c in users.columns if _USER_NAME.search(str(c)) or _ID_NAME.search(str(c))]
        if named:
            mapping.setdefault("users", {})[named[0]] = "user_id"
            reasons.setdefault("users", {})[named[0]] = "used as user_id: the first id-like column"
    return mapping, reasons


def coverage(series: pd.Series) -> float:
    """Share of rows with a non-empty value."""
    if len(series) == 0:
        return 0.0
    return float(len(_non_empty(series)) / len(series))


__all__ = [
    "ROLES",
    "TABLES",
    "REQUIRED_COLUMNS",
    "RoleGuess",
    "Schema",
    "SchemaError",
    "infer_role",
    "infer_roles",
    "infer_schema",
    "currency_symbol",
    "amount_style",
    "plain_text",
    "parse_numeric",
    "parse_timestamp",
    "coverage",
    "check_schema_dict",
]
