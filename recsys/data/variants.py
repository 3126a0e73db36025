"""Product exports written one row per variant (Shopify's products CSV, WooCommerce's parent/variation rows).

Such a file repeats a product key ("Handle") on every row of a product, writes the product's own fields (title,
description, vendor, type) only on its first row, and adds rows that hold nothing but a further picture. Read as
it stands, no column is one value per item and the loader cannot tell what an item is. :func:`products_from_variant_rows`
reads it as one item per product: the first row's product fields, the variants' differing short values joined as
labels ("S|M|L|XL"), picture-only rows left out; an interactions column that names variants (an orders export's
"Lineitem sku") is rewritten to the product each variant belongs to, so recommendations are products, not sizes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .schema import _PROSE_NAME, parse_numeric

# a picture-only row's other columns: Shopify writes "Image Src", "Image Position" and "Image Alt Text" on it
_PICTURE_ROW_NAME = re.compile(r"(image|img|picture|photo|(^|[\s_])(alt|src|position)($|[\s_]))", re.I)
# a picture's place in the product's gallery, which says nothing about the product once its first picture is kept
_POSITION_NAME = re.compile(r"(position|order|rank|index|sort)", re.I)
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


def _blank(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.isna() | frame.astype(str).apply(lambda column: column.str.strip() == "")


def _keys(series: pd.Series) -> pd.Series:
    text = series.astype("string").str.strip().str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True)
    return text.fillna("").astype(object)


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
        keys = _keys(items[column])
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


def products_from_variant_rows(
    items: pd.DataFrame, interactions: pd.DataFrame | None, separator: str
) -> VariantRows | None:
    """One row per product of a variant-row export (see the module's doc), or None when ``items`` is not one."""
    found = find_variant_rows(items)
    if found is None:
        return None
    product, fields = found
    items = items.reset_index(drop=True)
    keys = _keys(items[product])
    blank = _blank(items)
    others = [c for c in items.columns if c != product and c not in fields]
    pictures = [c for c in others if _PICTURE_ROW_NAME.search(str(c))]
    # a row with nothing but the product key and picture columns is another picture of a product already listed
    picture_only = keys.duplicated() & blank[[c for c in others if c not in pictures]].all(axis=1)
    variants = items[~picture_only]
    variant_keys = keys[~picture_only]

    result = VariantRows(items, interactions, product, fields, len(items), int(picture_only.sum()))
    if interactions is not None and len(interactions):
        _point_interactions_at_products(variants, variant_keys, interactions.copy(), others, result)

    groups = variants.groupby(variant_keys.to_numpy(), sort=False)
    products = groups.head(1).copy()
    for column in others:
        if column == result.variant_column or column in pictures:
            continue
        values = _variant_values(variants[column], variant_keys, products[column], separator)
        if values is not None:
            products[column] = values
            result.joined_columns.append(str(column))
    dropped = [c for c in pictures if _POSITION_NAME.search(str(c))]
    if result.variant_column is not None:
        dropped.append(result.variant_column)
    products = products.drop(columns=dropped)
    result.items = products.reset_index(drop=True)
    return result


def _variant_values(values: pd.Series, keys: pd.Series, first: pd.Series, separator: str) -> pd.Series | None:
    """A variant column's distinct values per product joined as labels (the sizes a product comes in); None
    (the first variant's value stays) where the variants of every product agree, or the values are numbers
    (Shopify's product price is its first variant's) or long."""
    text = values.astype("string").str.strip()
    given = text[text.notna() & (text != "")]
    if given.empty or parse_numeric(given).notna().mean() > 0.9 or given.str.len().max() > _MAX_LABEL_LENGTH:
        return None
    if not given.groupby(keys[given.index].to_numpy(), sort=False).nunique().gt(1).any():
        return None
    joined = given.groupby(keys[given.index].to_numpy(), sort=False).agg(
        lambda column: separator.join(dict.fromkeys(column))
    )
    labels = keys[first.index].map(joined)
    return pd.Series(np.where(labels.notna(), labels, first), index=first.index, dtype=object)


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
    sample = interactions.head(20_000)
    sample_keys = {c: _keys(sample[c]) for c in sample.columns}
    product_keys = set(variant_keys)
    if max((keys.isin(product_keys).mean() for keys in sample_keys.values()), default=0.0) >= 0.5:
        return
    best: tuple[float, str | None, str | None] = (0.0, None, None)
    for candidate in candidates:
        names = _keys(variants[candidate])
        if (names == "").any() or names.duplicated().any():
            continue
        known = set(names)
        for other, keys in sample_keys.items():
            share = float(keys.isin(known).mean())
            if share > best[0]:
                best = (share, candidate, str(other))
    share, column, named_by = best
    if column is None or named_by is None or share < 0.5:
        return
    to_product = pd.Series(variant_keys.to_numpy(), index=_keys(variants[column]).to_numpy())
    mapped = _keys(interactions[named_by]).map(to_product)
    interactions[named_by] = np.where(mapped.notna(), mapped, interactions[named_by]).astype(object)
    result.interactions = interactions
    result.variant_column, result.interactions_column, result.variants_matched = column, named_by, share
