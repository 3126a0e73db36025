"""A shop's own exports, read as the studio's tables: products written one row per variant (Shopify's products
CSV, WooCommerce's parent/variation rows), orders that name products only by title, cancelled orders.

A Shopify products file repeats a product key ("Handle") on every row of a product, writes the product's own fields (title,
description, vendor, type) only on its first row, and adds rows that hold nothing but a further picture. Read as
it stands, no column is one value per item and the loader cannot tell what an item is. :func:`products_from_variant_rows`
reads it as one item per product: the first row's product fields, the variants' differing short values joined as
labels ("S|M|L|XL"), picture-only rows left out; an interactions column that names variants (an orders export's
"Lineitem sku") is rewritten to the product each variant belongs to, so recommendations are products, not sizes.
:func:`products_from_parent_rows` does the same for a file whose variations are rows naming their product in a
"Parent" column (WooCommerce), :func:`interactions_by_product_name` meets orders that name what was bought only
by its title, and :func:`cancelled_order_lines` finds the lines of cancelled orders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .schema import _PROSE_NAME, clean_ids, could_be_ids, parse_numeric

# a picture-only row's other columns: Shopify writes "Image Src", "Image Position" and "Image Alt Text" on it
_PICTURE_ROW_NAME = re.compile(r"(image|img|picture|photo|(^|[\s_])(alt|src|position)($|[\s_]))", re.I)
# a picture's place in the product's gallery, which says nothing about the product once its first picture is kept
_POSITION_NAME = re.compile(r"(position|order|rank|index|sort)", re.I)
# a variant's own code, which no other variant has ("Variant SKU", "Variant Barcode", "GTIN")
_CODE_NAME = re.compile(r"(sku|barcode|gtin|ean|upc|mpn|isbn|asin|(^|[\s_])id($|[\s_]))", re.I)
# the variants' differing values of a column are shown as its labels only while they are short (sizes, colours)
_MAX_LABEL_LENGTH = 30


@dataclass
class VariantRows:
    """What :func:`products_from_variant_rows` found and did (for the import report)."""

    items: pd.DataFrame
    interactions: pd.DataFrame | None
    product_column: str  # the key every row of a product repeats ("Handle")
    product_fields: list[str]  # written on a product's first row only ("Title", "Vendor", ...)
    rows: int  # rows in the file
    picture_rows: int  # rows that held only another picture
    variant_column: str | None = None  # the items column that names variants ("Variant SKU"), when the log uses it
    interactions_column: str | None = None  # the interactions column naming variants ("Lineitem sku")
    variants_matched: float = 0.0  # share of that column's values found among the variants
    joined_columns: list[str] = field(default_factory=list)  # columns whose variants' values became labels
    option_columns: list[str] = field(default_factory=list)  # "Color", "Size": options read as attribute columns


def _blank(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.isna() | frame.astype(str).apply(lambda column: column.str.strip() == "")


def find_variant_rows(items: pd.DataFrame) -> tuple[str, list[str]] | None:
    """``(product column, product fields)`` when ``items`` is written one row per variant, else None.

    The product column is the first column, filled on every row, whose values repeat; the product fields are the
    columns filled on (nearly) every product's first row and (nearly) never on its other rows; one of them must
    be a title or description, so that an ordinary table with a repeated category column never qualifies."""
    if len(items) < 2 or "item_id" in items.columns:
        return None
    blank = _blank(items)
    for column in items.columns:
        if blank[column].any():
            continue
        keys = clean_ids(items[column])
        repeated = keys.duplicated()
        if not repeated.any() or keys.nunique() < 2:
            continue
        first = ~repeated
        fields = [
            c
            for c in items.columns
            if c != column and (~blank.loc[first, c]).mean() >= 0.5 and (~blank.loc[repeated, c]).mean() <= 0.02
        ]
        if any(_PROSE_NAME.search(str(c)) for c in fields):
            return str(column), [str(c) for c in fields]
        return None  # only the first such column is the product key: a later repeated one is an attribute
    return None


# a product option as a shop export writes it: its name in one column, its value(s) in the next
# (Shopify's "Option1 Name" / "Option1 Value", WooCommerce's "Attribute 1 name" / "Attribute 1 value(s)")
_OPTION_NAME = re.compile(r"^(?P<stem>.*?)\s*(?P<number>\d+)\s*name$", re.I)
_OPTION_VALUE = r"^{stem}\s*{number}\s*value(\(s\)|s)?$"
# Shopify's option of a product without variants: Option1 Name "Title", Option1 Value "Default Title"
_NO_OPTION = {"default title"}


def options_as_columns(products: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The options of a shop's products as attribute columns named by the option: "Option1 Name" Color and
    "Option1 Value" Red become a column "Color" holding Red (the sizes a product comes in under "Size"), where
    products name their options differently in the same column. Explanations then say "Color: Red" rather than
    "Option1 Name: Color". Returns the table and the new columns; the table unchanged when it has no options."""
    products = products.copy()
    created: list[str] = []
    original = set(products.columns)
    for name_column in list(products.columns):
        match = _OPTION_NAME.match(str(name_column).strip())
        if not match:
            continue
        pattern = re.compile(_OPTION_VALUE.format(stem=re.escape(match["stem"]), number=match["number"]), re.I)
        value_columns = [c for c in products.columns if pattern.match(str(c).strip())]
        if len(value_columns) != 1:
            continue
        value_column = value_columns[0]
        names = products[name_column].astype("string").fillna("").str.strip()
        values = products[value_column].astype("string").fillna("").str.strip()
        real = (names != "") & (values != "") & ~values.str.lower().isin(_NO_OPTION)
        if not real.any():
            products = products.drop(columns=[name_column, value_column])
            continue
        for option in dict.fromkeys(names[real]):
            target = option if option not in original else f"{option} (option)"
            rows = real & (names == option)
            if target not in products.columns:
                products[target] = ""
                created.append(target)
            products.loc[rows, target] = values[rows].to_numpy()
        products = products.drop(columns=[name_column, value_column])
    return products, created


def products_from_variant_rows(
    items: pd.DataFrame, interactions: pd.DataFrame | None, separator: str
) -> VariantRows | None:
    """One row per product of a variant-row export (see the module's doc), or None when ``items`` is not one."""
    found = find_variant_rows(items)
    if found is None:
        return None
    product, fields = found
    items = items.reset_index(drop=True)
    keys = clean_ids(items[product])
    blank = _blank(items)
    others = [c for c in items.columns if c != product and c not in fields]
    pictures = [c for c in others if _PICTURE_ROW_NAME.search(str(c))]
    # a row with nothing but the product key and picture columns is another picture of a product already listed
    picture_only = keys.duplicated() & blank[[c for c in others if c not in pictures]].all(axis=1)
    variants = items[~picture_only]
    variant_keys = keys[~picture_only]

    result = VariantRows(items, interactions, product, fields, len(items), int(picture_only.sum()))
    if interactions is not None and len(interactions):
        _point_interactions_at_products(variants, variant_keys, interactions, others, result)

    groups = variants.groupby(variant_keys.to_numpy(), sort=False)
    products = groups.head(1).copy()
    for column in others:
        if column == result.variant_column or column in pictures:
            continue
        values = _variant_values(variants[column], variant_keys, products[column], separator)
        if values is not None:
            products[column] = values
            result.joined_columns.append(str(column))
    dropped = [
        c
        for c in products.columns
        if c != product and _PICTURE_ROW_NAME.search(str(c)) and _POSITION_NAME.search(str(c))
    ]
    if result.variant_column is not None:
        dropped.append(result.variant_column)
    products = products.drop(columns=dropped)
    sold_out = _sold_out_products(variants, variant_keys, keys[products.index])
    if sold_out is not None and SOLD_OUT_COLUMN not in products.columns:
        products[SOLD_OUT_COLUMN] = np.where(sold_out, "yes", "no")
    products, result.option_columns = options_as_columns(products)
    result.items = products.reset_index(drop=True)
    return result


# a variant's stock: Shopify's "Variant Inventory Qty", whether the shop counts it ("Variant Inventory Tracker":
# blank = not tracked, always for sale) and what happens at 0 ("Variant Inventory Policy": continue = it still sells)
_INVENTORY_QUANTITY = re.compile(r"inventory[ _-]?(qty|quantity)", re.I)
_INVENTORY_TRACKER = re.compile(r"inventory[ _-]?tracker", re.I)
_INVENTORY_POLICY = re.compile(r"inventory[ _-]?policy", re.I)
# WooCommerce's stock columns ("Stock", "Low stock amount", "Backorders allowed?") and generic stock counts
_STOCK_NAME = re.compile(
    r"^(stock([ _-]?(qty|quantity|level|count))?|low[ _-]?stock[ _-]?amount|backorders?[ _-]?allowed\??)$", re.I
)
#: the products column a variant-row export gets when its stock says some products cannot be bought now
SOLD_OUT_COLUMN = "Sold out"


def _sold_out_products(variants: pd.DataFrame, keys: pd.Series, product_keys: pd.Series) -> np.ndarray | None:
    """bool per product (``product_keys``' order): every variant of it is out of stock (a tracked quantity of 0
    or less, with no selling on backorder); None when the export has no stock, or none or all are sold out."""

    def first(pattern: re.Pattern[str]) -> str | None:
        return next((c for c in variants.columns if pattern.search(str(c))), None)

    quantity_column = first(_INVENTORY_QUANTITY)
    if quantity_column is None:
        return None
    quantity = parse_numeric(variants[quantity_column].astype("string").str.strip())
    if quantity.isna().all():
        return None
    out = (quantity <= 0).fillna(False)
    tracker, policy = first(_INVENTORY_TRACKER), first(_INVENTORY_POLICY)
    if tracker is not None:
        out &= variants[tracker].astype("string").fillna("").str.strip() != ""
    if policy is not None:
        out &= variants[policy].astype("string").fillna("").str.strip().str.lower() != "continue"
    every = out.groupby(keys.to_numpy(), sort=False).all()
    sold_out = product_keys.map(every).fillna(False).to_numpy(dtype=bool)
    return sold_out if sold_out.any() and not sold_out.all() else None


def _variant_values(values: pd.Series, keys: pd.Series, first: pd.Series, separator: str) -> pd.Series | None:
    """A variant column's distinct values per product joined as labels (the sizes a product comes in); None
    (the first variant's value stays) where the variants of every product agree, or the values are numbers
    (Shopify's product price is its first variant's), long, each variant's own (a SKU) or names."""
    text = values.astype("string").str.strip()
    given = text[text.notna() & (text != "")]
    if given.empty or parse_numeric(given).notna().mean() > 0.9 or given.str.len().max() > _MAX_LABEL_LENGTH:
        return None
    name = str(values.name)
    if _CODE_NAME.search(name) or _PROSE_NAME.search(name) or (given.is_unique and given.str.contains(r"\d").all()):
        return None  # a variant's own SKU or barcode, or its name ("Hoodie - Blue"): no label the product has
    if not given.groupby(keys[given.index].to_numpy(), sort=False).nunique().gt(1).any():
        return None
    joined = given.groupby(keys[given.index].to_numpy(), sort=False).agg(
        lambda column: separator.join(dict.fromkeys(column))
    )
    labels = keys[first.index].map(joined)
    return pd.Series(np.where(labels.notna(), labels, first), index=first.index, dtype=object)


def _sampled_keys(interactions: pd.DataFrame) -> dict[str, pd.Series]:
    """Each interactions column's first 20,000 values as ids (enough to tell which column names what)."""
    sample = interactions.head(20_000)
    return {str(c): clean_ids(sample[c]) for c in sample.columns}


def _most_referenced(known: dict[str, set[str]], sampled: dict[str, pd.Series]) -> tuple[float, str, str] | None:
    """``(share, items column, interactions column)``: the pair where the interactions column's values are most
    often among the items column's ``known`` values, when that is at least half of them; else None."""
    best: tuple[float, str, str] | None = None
    for column, values in known.items():
        for other, keys in sampled.items():
            share = float(keys.isin(values).mean())
            if share >= 0.5 and (best is None or share > best[0]):
                best = (share, column, other)
    return best


def _rewritten(interactions: pd.DataFrame, column: str, mapping: pd.Series) -> pd.DataFrame:
    """``interactions`` with ``column``'s values mapped through ``mapping`` (an id -> id Series); values it lacks
    are kept, and later reported as unknown items."""
    found = clean_ids(interactions[column]).map(mapping)
    rewritten = interactions.copy()
    rewritten[column] = np.where(found.notna(), found, interactions[column]).astype(object)
    return rewritten


def _point_interactions_at_products(
    variants: pd.DataFrame,
    variant_keys: pd.Series,
    interactions: pd.DataFrame,
    candidates: list[str],
    result: VariantRows,
) -> None:
    """Find the items column that names one variant per row and the interactions column whose values it holds
    (most of them); rewrite that interactions column to the variants' product keys. Nothing when the
    interactions already name products."""
    sampled = _sampled_keys(interactions)
    if _most_referenced({"products": set(variant_keys)}, sampled) is not None:
        return
    known = {}
    for candidate in candidates:
        names = clean_ids(variants[candidate])
        if not ((names == "").any() or names.duplicated().any() or not could_be_ids(variants[candidate])):
            known[str(candidate)] = set(names)
    found = _most_referenced(known, sampled)
    if found is None:
        return
    share, column, named_by = found
    to_product = pd.Series(variant_keys.to_numpy(), index=clean_ids(variants[column]).to_numpy())
    result.interactions = _rewritten(interactions, named_by, to_product)
    result.variant_column, result.interactions_column, result.variants_matched = column, named_by, share


# the items column an order line's name can be: the product's title or name, never its description
_TITLE_NAME = re.compile(r"(title|name|titel|product)", re.I)
_NOT_A_TITLE = re.compile(r"(desc|body|text|seo|alt|meta|handle|url|vendor|brand|type|categ)", re.I)
# Shopify names an order line "<product title> - <variant title>" ("Oxford Shirt - Blue / M"); other exports
# append the options with " / " ("Oxford Shirt - Blue / M" for a product titled "Oxford Shirt - Blue")
_VARIANT_CUT = re.compile(r" - | / ")


@dataclass
class ProductNames:
    """An interactions column that names products by their title (read by :func:`interactions_by_product_name`)."""

    interactions: pd.DataFrame
    interactions_column: str  # "Lineitem name"
    title_column: str  # the items' "Title"
    key_column: str  # the items column its values are rewritten to ("Handle")
    matched: float  # share of the column's rows read as a product
    shared_titles: int = 0  # rows naming a title several products have
    told_apart: int = 0  # of those, the rows whose product the agreeing columns decided
    told_apart_by: list[tuple[str, str]] = field(default_factory=list)  # those (items, interactions) columns


def _comparable(text: str) -> str:
    return " ".join(text.split()).casefold()


def _rows_named(name: str, titles: dict[str, list[int]]) -> list[int] | None:
    """The items rows a line name names: by the whole name, else by the name less its trailing " - <variant>"
    or " / <option>" parts, longest first (several rows where products share a title)."""
    text = _comparable(name)
    found = titles.get(text)
    if found is not None:
        return found
    for cut in reversed([m.start() for m in _VARIANT_CUT.finditer(text)]):
        found = titles.get(text[:cut])
        if found is not None:
            return found
    return None


def _rows_by_title(items: pd.DataFrame, title: str) -> dict[str, list[int]]:
    """Comparable title -> the positions of the items rows with that title."""
    names = items[title].astype("string").fillna("").map(_comparable).to_numpy()
    rows: dict[str, list[int]] = {}
    for position, name in enumerate(names):
        if name:
            rows.setdefault(name, []).append(position)
    return rows


def _agreeing_columns(
    items: pd.DataFrame, interactions: pd.DataFrame, lines: np.ndarray, products: list[int]
) -> list[tuple[str, str]]:
    """The (items column, interactions column) pairs whose values agree on the lines that name one product
    unambiguously (a product's "Variant Price" and the line's "Lineitem price", "Vendor" and "Lineitem vendor"):
    what tells apart products that share a title. A pair must agree on 80 % of at least 20 lines, and no value
    of the items column may be most products'."""
    if len(lines) < 20:
        return []
    item_values = {}
    for column in items.columns:
        values = items[column].astype("string").fillna("").map(_comparable)
        if values.value_counts(normalize=True).iloc[0] <= 0.5:  # a value most products have tells none apart
            item_values[column] = values.to_numpy()[products]
    line_values = {
        c: interactions[c].astype("string").fillna("").map(_comparable).to_numpy()[lines] for c in interactions
    }
    pairs = []
    for a, mine in item_values.items():
        for b, theirs in line_values.items():
            given = (mine != "") & (theirs != "")
            if given.sum() >= 20 and (mine[given] == theirs[given]).mean() >= 0.8:
                pairs.append((str(a), str(b)))
    return pairs


def _told_apart(
    items: pd.DataFrame,
    interactions: pd.DataFrame,
    lines: np.ndarray,
    candidates: list[list[int]],
    pairs: list[tuple[str, str]],
    product_keys: np.ndarray,
) -> np.ndarray:
    """For each line naming a shared title, the key of the one candidate product that agrees with it on most of
    ``pairs`` (None where none agrees, or two agree equally). Vectorised over (line, candidate) pairs: an orders
    export has millions of lines."""
    line_of = np.repeat(np.arange(len(lines)), [len(c) for c in candidates])
    product_of = np.concatenate([np.asarray(c) for c in candidates])
    agree = np.zeros(len(line_of), dtype=np.int64)
    for a, b in pairs:
        mine = items[a].astype("string").fillna("").map(_comparable).to_numpy()[product_of]
        theirs = interactions[b].iloc[lines].astype("string").fillna("").map(_comparable).to_numpy()[line_of]
        agree += (mine == theirs) & (mine != "")
    table = pd.DataFrame({"line": line_of, "agree": agree, "product": product_of})
    best = table.groupby("line")["agree"].transform("max")
    top = table[(table["agree"] == best) & (best > 0)]
    alone = top.groupby("line")["product"].agg(["first", "size"])
    alone = alone[alone["size"] == 1]
    chosen = np.full(len(lines), None, dtype=object)
    chosen[alone.index.to_numpy()] = product_keys[alone["first"].to_numpy()]
    return chosen


def interactions_by_product_name(items: pd.DataFrame, interactions: pd.DataFrame | None) -> ProductNames | None:
    """Orders that name what was bought by the product's title ("Oxford Shirt - Blue / M", from a shop whose
    products have no SKU), where no interactions column holds an items column's values: that column rewritten to
    the key of each product it names (the first column that is filled and unique on every row). Where products
    share a title, the line's product is the one with most values in common with the line (its price, its
    vendor); values naming no product, or two equally, are kept, and later reported as unknown items. None when
    nothing fits, or the tables already meet."""
    if interactions is None or len(interactions) == 0 or "item_id" in items.columns:
        return None
    items = items.reset_index(drop=True)
    blank = _blank(items)
    unique = [
        c
        for c in items.columns
        if not blank[c].any() and not clean_ids(items[c]).duplicated().any() and could_be_ids(items[c])
    ]
    if not unique:
        return None
    sampled = _sampled_keys(interactions)
    if _most_referenced({str(c): set(clean_ids(items[c])) for c in unique}, sampled) is not None:
        return None
    # (share, interactions column, title column, that column's titles)
    best: tuple[float, str, str, dict[str, list[int]]] | None = None
    for title in items.columns:
        if not _TITLE_NAME.search(str(title)) or _NOT_A_TITLE.search(str(title)):
            continue
        titles = _rows_by_title(items, str(title))
        if not titles:
            continue
        for column, keys in sampled.items():
            named = {name: _rows_named(name, titles) for name in keys[keys != ""].unique()}
            share = float(keys.map(named).notna().mean())
            if share >= 0.5 and (best is None or share > best[0]):
                best = (share, column, str(title), titles)
    if best is None:
        return None
    _, column, title, titles = best
    key_column = str(unique[0])
    product_keys = clean_ids(items[key_column]).to_numpy()
    written = clean_ids(interactions[column])
    named = {name: _rows_named(name, titles) for name in written[written != ""].unique()}
    rows = written.map(named)
    products = np.array(
        [product_keys[r[0]] if isinstance(r, list) and len(r) == 1 else None for r in rows], dtype=object
    )
    shared = np.flatnonzero(rows.map(lambda r: isinstance(r, list) and len(r) > 1).to_numpy())
    if len(shared):
        single = np.flatnonzero(rows.map(lambda r: isinstance(r, list) and len(r) == 1).to_numpy())[:5000]
        pairs = _agreeing_columns(items.drop(columns=[title]), interactions, single, [rows.iloc[p][0] for p in single])
        if pairs:
            products[shared] = _told_apart(items, interactions, shared, rows.iloc[shared].tolist(), pairs, product_keys)
    found = pd.Series(products, index=interactions.index)
    rewritten = interactions.copy()
    rewritten[column] = np.where(found.notna(), found, interactions[column]).astype(object)
    matched = float(found.notna().mean())
    result = ProductNames(rewritten, column, title, key_column, matched, int(len(shared)))
    if len(shared):
        result.told_apart = int(found.iloc[shared].notna().sum())
        result.told_apart_by = pairs
    return result


# WooCommerce's products export names a variation's product in "Parent" ("id:123", or the product's SKU)
_PARENT_NAME = re.compile(r"^parent([ _-]?(id|sku|product))?$", re.I)


@dataclass
class ParentRows:
    """What :func:`products_from_parent_rows` found and did (for the import report)."""

    items: pd.DataFrame
    interactions: pd.DataFrame | None
    parent_column: str  # "Parent"
    key_column: str  # the column its values name ("ID" or "SKU")
    rows: int
    variations: int  # rows that are another row's variation
    joined_columns: list[str] = field(default_factory=list)
    option_columns: list[str] = field(default_factory=list)
    interactions_column: str | None = None  # an interactions column that named variations ("Variation ID")
    variations_matched: float = 0.0


def products_from_parent_rows(
    items: pd.DataFrame, interactions: pd.DataFrame | None, separator: str
) -> ParentRows | None:
    """A products export whose variations are rows of their own naming their product in a "Parent" column
    (WooCommerce: "id:123" or the product's SKU, a variation named "Hoodie - Blue"): one item per product, the
    values its variations differ in joined as labels, and an interactions column naming variations ("Variation
    ID", a variation's SKU) read as their product's value in the same column. None when there is no such column,
    or its values do not name other rows (90 % of them must)."""
    if "item_id" in items.columns or len(items) < 2:
        return None
    items = items.reset_index(drop=True)
    for parent in [c for c in items.columns if _PARENT_NAME.match(str(c).strip())]:
        named = clean_ids(items[parent]).str.replace(r"^id:\s*", "", regex=True, case=False)
        child = (named != "").to_numpy()
        if not child.any() or child.all():
            continue
        # WooCommerce names a product by its SKU where it has one, else by "id:<ID>": any column whose values
        # are one per product may be the one a variation names
        row_of: dict[str, int] = {}
        key = None
        for column in items.columns:
            if column == parent:
                continue
            own = clean_ids(items.loc[~child, column])
            given = own[own != ""]
            if given.duplicated().any():
                continue
            if key is None and len(given) == len(own):
                key = column
            for value, row in zip(given, given.index):
                row_of.setdefault(value, int(row))
        rows = named[child].map(row_of)
        if key is None or rows.notna().mean() < 0.9:
            continue
        keys = clean_ids(items[key])
        product_of = keys.copy()
        product_of[child] = [keys[int(r)] if pd.notna(r) else "" for r in rows]
        products = items[~child].copy()
        result = ParentRows(products, interactions, str(parent), str(key), len(items), int(child.sum()))
        for column in items.columns:
            if column in (parent, key):
                continue
            values = _variant_values(items.loc[child, column], product_of, products[column], separator)
            if values is not None:
                products[column] = values
                result.joined_columns.append(str(column))
        products, result.option_columns = options_as_columns(products.drop(columns=[parent]))
        result.items = products.reset_index(drop=True)
        if interactions is not None and len(interactions):
            _point_at_parents(items, child, product_of, keys, interactions, result)
        return result
    return None


def _point_at_parents(
    items: pd.DataFrame,
    child: np.ndarray,
    product_of: pd.Series,
    keys: pd.Series,
    interactions: pd.DataFrame,
    result: ParentRows,
) -> None:
    """Rewrite the interactions column that names variations by an items column (most of its values are the
    variations' values there) to their products' values in that column; nothing when a column already names
    products (WooCommerce orders' "Product ID" beside "Variation ID")."""
    sampled = _sampled_keys(interactions)
    parents = items[~child]
    products, variations = {}, {}
    for column in items.columns:
        values = clean_ids(items[column])
        if could_be_ids(items[column]) and not values[~child].duplicated().any():
            products[str(column)] = set(values[~child]) - {""}
            variations[str(column)] = set(values[child]) - {""}
    found = None if _most_referenced(products, sampled) is not None else _most_referenced(variations, sampled)
    if found is None:
        return
    share, column, other = found
    # variation's value in `column` -> its product's value there (a product without one keeps the variation's)
    own_value = pd.Series(clean_ids(parents[column]).to_numpy(), index=keys[~child].to_numpy())
    theirs = product_of[child].map(own_value)
    mapping = pd.Series(theirs.to_numpy(), index=clean_ids(items.loc[child, column]).to_numpy())
    mapping = mapping[(mapping.index != "") & mapping.notna() & (mapping != "")]
    result.interactions = _rewritten(interactions, other, mapping[~mapping.index.duplicated()])
    result.interactions_column, result.variations_matched = other, share


# an orders export's cancellation ("Cancelled at", "canceled", "is_cancelled"); Shopify writes it, like every
# order-level field, on an order's first line only
_CANCELLED_NAME = re.compile(r"cancel+ed|storniert|annul", re.I)
_NOT_CANCELLED = {"", "0", "false", "no", "n", "nein", "non", "f", "none", "null", "nan"}


@dataclass
class CancelledLines:
    """Order lines of cancelled orders (read by :func:`cancelled_order_lines`)."""

    lines: np.ndarray  # bool per interactions row
    column: str  # "Cancelled at"
    orders: int  # cancelled orders (lines when no order column was found)
    order_column: str | None  # "Name", when the cancellation is written on an order's first line only


def cancelled_order_lines(interactions: pd.DataFrame | None) -> CancelledLines | None:
    """The lines of cancelled orders: a column named like a cancellation with a value that is not a no (a time,
    "yes", "true"), carried to the order's other lines when it is written on first lines only (the order being the
    first fully filled column whose values repeat, where the cancellation and another column, "Financial Status",
    are never on a line after the first). None
    when there is no such column or nothing is cancelled."""
    if interactions is None or len(interactions) == 0:
        return None
    for column in interactions.columns:
        if not _CANCELLED_NAME.search(str(column)):
            continue
        said = interactions[column].astype("string").fillna("").str.strip().str.lower()
        cancelled = ~said.isin(_NOT_CANCELLED)
        if not cancelled.any() or cancelled.mean() > 0.5:
            continue  # nothing cancelled, or a column whose "no" is written otherwise
        written = said != ""
        blank = _blank(interactions)
        for key in interactions.columns:
            if key == column or blank[key].any():
                continue
            keys = clean_ids(interactions[key])
            later = keys.duplicated()
            if not later.any() or keys.nunique() < 2:
                continue
            first_only = [
                c
                for c in interactions.columns
                if c not in (key, column) and (~blank.loc[~later, c]).mean() > 0.5 and not (~blank.loc[later, c]).any()
            ]
            if not written[later].any() and first_only:
                # an order-level field: carry each order's value to its other lines
                orders = keys[cancelled.to_numpy()].nunique()
                return CancelledLines(keys.isin(set(keys[cancelled])).to_numpy(), str(column), orders, str(key))
            break
        return CancelledLines(cancelled.to_numpy(), str(column), int(cancelled.sum()), None)
    return None


# whether a product is for sale: a status (Shopify's "Status", a generic "state"), a published / active /
# in-stock flag (WooCommerce's "Published" 1 / 0 / -1, "In stock?"), or a flag saying the opposite
_STATUS_NAME = re.compile(r"^(product[ _-]?)?(status|state)$", re.I)
_FOR_SALE_FLAG = re.compile(r"(published|is[ _-]?active|^active$|in[ _-]?stock|available|for[ _-]?sale|visible)", re.I)
_OFF_SALE_FLAG = re.compile(
    r"(discontinued|archived|deleted|hidden|unpublished|inactive|sold[ _-]?out|out[ _-]?of[ _-]?stock)", re.I
)
_OFF_SALE_STATUS = {
    "draft", "archived", "inactive", "discontinued", "deleted", "hidden", "private", "trash", "unpublished",
    "disabled", "pending", "retired",
}  # fmt: skip
_ON_SALE_STATUS = {"active", "published", "publish", "live", "enabled", "available", "visible", "public", "on sale"}
_YES = {"true", "yes", "y", "1", "t", "ja", "oui", "si", "sí"}
_NO = {"false", "no", "n", "0", "-1", "f", "nein", "non"}


def says_availability(name: str, values: pd.Series) -> bool:
    """Whether an items column says whether a product can be bought now (a status of active / draft / archived, a
    published or sold-out yes/no): what :func:`not_for_sale` reads, and no feature of the product's (whom it suits
    does not change when it sells out; the import's schema ignores it)."""
    name = str(name).strip()
    stock = any(p.search(name) for p in (_INVENTORY_QUANTITY, _INVENTORY_POLICY, _INVENTORY_TRACKER, _STOCK_NAME))
    status = bool(_STATUS_NAME.match(name))
    if not (stock or status or _FOR_SALE_FLAG.search(name) or _OFF_SALE_FLAG.search(name)):
        return False  # the name decides first: the schema asks this of every items column
    said = set(values.astype("string").dropna().str.strip().str.lower()) - {""}
    if not said:
        return False
    if stock:
        return True  # the stock left (Shopify's is the first variant's): whether it sells now, not what it is
    return said <= (_OFF_SALE_STATUS | _ON_SALE_STATUS if status else _YES | _NO)


@dataclass
class NotForSale:
    """Items a shop does not sell now (read by :func:`not_for_sale`)."""

    items: np.ndarray  # bool per items row
    columns: list[str]  # ["Status"], or every column that says so (["Status", "Sold out"])
    values: list[str]  # the values that say so ("archived", "draft"; "Status: archived" with several columns)


def not_for_sale(items: pd.DataFrame) -> NotForSale | None:
    """The products a shop's catalogue marks as not for sale: a status column whose value is a draft, archived,
    inactive or discontinued one; a yes/no column named published, active, in stock or available that says no
    (WooCommerce writes -1 for a draft); one named discontinued, archived, hidden or sold out that says yes (a
    variant-row export's stock gives :data:`SOLD_OUT_COLUMN`). Every such column counts (a draft, and an active
    product sold out). They stay in the data (the people who bought them bought them) and are never
    recommended. None when no column says so, or when together they would leave nothing for sale."""
    marked = np.zeros(len(items), dtype=bool)
    columns: list[str] = []
    values: list[tuple[str, list[str]]] = []
    for column in items.columns:
        name = str(column).strip()
        said = items[column].astype("string").fillna("").str.strip().str.lower()
        given = said[said != ""]
        if given.empty:
            continue
        if _STATUS_NAME.match(name):
            off = said.isin(_OFF_SALE_STATUS)
        elif _FOR_SALE_FLAG.search(name) or _OFF_SALE_FLAG.search(name):
            if not given.isin(_YES | _NO).all():
                continue  # not a yes/no column ("Available sizes")
            off = said.isin(_NO) if _FOR_SALE_FLAG.search(name) else said.isin(_YES)
        else:
            continue
        if off.any() and not off.all():
            marked |= off.to_numpy(dtype=bool)
            columns.append(name)
            said_so = sorted(set(items.loc[off.to_numpy(dtype=bool), column].astype(str)))
            values.append((name, said_so))
    if not marked.any() or marked.all():
        return None
    if len(values) == 1:
        return NotForSale(marked, columns, values[0][1])
    # several columns: each value with its column ("Status: archived", "Sold out: yes")
    return NotForSale(marked, columns, [f"{name}: {value}" for name, said in values for value in said])
