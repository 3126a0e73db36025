"""Attribute features of items: categorical indices, multi-hot labels, normalised numbers.

Roles (``{column: role}``) are among ``ROLES``; ``"multi-label"`` is accepted for
``"multi_label"``. Used here: ``categorical``, ``multi_label``, ``numeric`` (and ``timestamp`` /
``rating`` columns of the items table, which are treated as numbers). Other roles are ignored.

* categorical: one int64 index per item; 0 = missing or unknown; the vocabulary is sorted by
  frequency (descending) then value, and values seen fewer than ``min_count`` times map to 0.
* multi_label: a CSR multi-hot matrix ``[n, 1 + len(vocab)]`` (float32 0/1); column 0 marks
  "has a rare/unknown label", column j >= 1 is ``vocab[j-1]``. Values are split on the
  separator (default ``"|"``; list/tuple cells are accepted as is), stripped, de-duplicated.
* numeric: robust scaling ``(x - median) / IQR`` (falls back to the std, then 1) clipped to
  ``+-clip``, or ``scaling="standard"`` (mean/std); NaN -> 0 with a missing indicator; plus
  quantile bucket indices (0 = missing, 1..n_buckets).

Vocabularies and statistics are kept, so ``encode_new(items_df)`` encodes new items exactly the
same way; ``to_arrays()`` / ``from_arrays()`` save and restore without pickle.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = [
    "ROLES",
    "normalize_roles",
    "columns_with_role",
    "AttributeFeatures",
    "build_attribute_features",
]

ROLES = ("id", "text", "categorical", "multi_label", "numeric", "image", "timestamp", "rating", "ignore")
_NUMERIC_ROLES = ("numeric", "timestamp", "rating")


def normalize_roles(roles: Mapping[str, str], columns=None) -> dict[str, str]:
    """Lower-case roles, map ``multi-label`` to ``multi_label``, check every role is known and
    (when ``columns`` is given) every column exists."""
    out: dict[str, str] = {}
    for column, role in roles.items():
        norm = str(role).strip().lower().replace("-", "_").replace(" ", "_")
        if norm == "multilabel":
            norm = "multi_label"
        if norm not in ROLES:
            raise ValueError(f"Column {column!r} has unknown role {role!r}; roles are {', '.join(ROLES)}.")
        out[column] = norm
    if columns is not None:
        present = set(columns)
        missing = [c for c, r in out.items() if c not in present and r != "ignore"]
        if missing:
            raise ValueError(
                f"Column(s) {', '.join(map(repr, missing))} have a role but are not in the items table "
                f"(columns: {', '.join(map(str, columns))})."
            )
    return out


def columns_with_role(items: pd.DataFrame, roles: Mapping[str, str], *wanted: str) -> list[str]:
    """Columns of ``items`` (in table order) whose normalised role is one of ``wanted``."""
    norm = normalize_roles(roles)
    return [c for c in items.columns if norm.get(c) in wanted]


def _is_missing_scalar(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        if value is pd.NA or value is pd.NaT:
            return True
    except Exception:  # pragma: no cover
        pass
    return False


def category_value(value) -> str | None:
    """A cell as a category string (None when missing/empty); 3.0 -> "3"."""
    if _is_missing_scalar(value):
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def split_labels(value, separator: str = "|") -> list[str]:
    """A multi-label cell as a list of distinct, stripped labels (order kept)."""
    if isinstance(value, (list, tuple, set, np.ndarray, pd.Series)):
        parts = [category_value(v) for v in value]
    else:
        if _is_missing_scalar(value):
            return []
        parts = [p.strip() for p in str(value).split(separator)] if separator else [str(value).strip()]
    return list(dict.fromkeys(p for p in parts if p))


def _vocab(counts: Counter, min_count: int) -> list[str]:
    kept = [v for v, c in counts.items() if c >= min_count]
    kept.sort(key=lambda v: (-counts[v], v))
    return kept


def _numeric_values(series: pd.Series, role: str) -> np.ndarray:
    """Floats (NaN when missing/unparseable); text numbers like "$1,299" and, for timestamps,
    dates or epoch milliseconds are parsed as the data layer does."""
    from ..data.schema import parse_numeric, parse_timestamp

    parsed = parse_timestamp(series) if role == "timestamp" else parse_numeric(series)
    values = np.array(parsed.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64, copy=True)
    values[~np.isfinite(values)] = np.nan
    return values


@dataclass
class AttributeFeatures:
    """Encoded attributes of ``n_items`` items; see the module docstring for the encodings."""

    n_items: int
    categorical: dict[str, np.ndarray] = field(default_factory=dict)
    categorical_vocab: dict[str, list[str]] = field(default_factory=dict)
    multi_label: dict[str, sp.csr_matrix] = field(default_factory=dict)
    multi_label_vocab: dict[str, list[str]] = field(default_factory=dict)
    numeric_columns: list[str] = field(default_factory=list)
    numeric: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    numeric_missing: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    numeric_buckets: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    numeric_stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    # -- fitting --------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        items: pd.DataFrame,
        roles: Mapping[str, str],
        *,
        min_count: int = 1,
        separator: str | Mapping[str, str] = "|",
        n_buckets: int = 10,
        scaling: str = "robust",
        clip: float | None = 5.0,
    ) -> AttributeFeatures:
        """Learn vocabularies/statistics from ``items`` and encode them."""
        if scaling not in ("robust", "standard"):
            raise ValueError("scaling must be 'robust' or 'standard'.")
        norm = normalize_roles(roles, items.columns)
        separators = dict(separator) if isinstance(separator, Mapping) else {}
        default_sep = separator if isinstance(separator, str) else "|"
        config = {
            "min_count": int(min_count),
            "separator": default_sep,
            "separators": {str(k): str(v) for k, v in separators.items()},
            "n_buckets": int(n_buckets),
            "scaling": scaling,
            "clip": None if clip is None else float(clip),
            "roles": {str(k): v for k, v in norm.items()},
        }
        feats = cls(n_items=len(items), config=config)
        for column in items.columns:
            role = norm.get(column)
            if role == "categorical":
                counts = Counter(v for v in map(category_value, items[column]) if v is not None)
                feats.categorical_vocab[str(column)] = _vocab(counts, min_count)
            elif role == "multi_label":
                sep = separators.get(column, default_sep)
                counts = Counter()
                for cell in items[column]:
                    counts.update(split_labels(cell, sep))
                feats.multi_label_vocab[str(column)] = _vocab(counts, min_count)
            elif role in _NUMERIC_ROLES:
                values = _numeric_values(items[column], role)
                feats.numeric_columns.append(str(column))
                feats.numeric_stats[str(column)] = _numeric_stats(values, role, scaling, n_buckets)
        feats._encode_into(items, feats)
        return feats

    # -- encoding -------------------------------------------------------------------------
    def encode_new(self, items: pd.DataFrame) -> AttributeFeatures:
        """Encode other items with this object's vocabularies and statistics (values never seen
        become unknown = 0). Columns missing from ``items`` are treated as all-missing."""
        out = AttributeFeatures(
            n_items=len(items),
            categorical_vocab=self.categorical_vocab,
            multi_label_vocab=self.multi_label_vocab,
            numeric_columns=list(self.numeric_columns),
            numeric_stats=self.numeric_stats,
            config=self.config,
        )
        self._encode_into(items, out)
        return out

    def _encode_into(self, items: pd.DataFrame, out: AttributeFeatures) -> None:
        n = len(items)
        empty = pd.Series([None] * n, index=items.index, dtype=object)
        for column, vocab in self.categorical_vocab.items():
            index: dict[str | None, int] = {v: i + 1 for i, v in enumerate(vocab)}  # a missing cell's None finds 0
            cells = items[column] if column in items.columns else empty
            out.categorical[column] = np.fromiter(
                (index.get(category_value(v), 0) for v in cells), dtype=np.int64, count=n
            )
        separators = self.config.get("separators", {})
        for column, vocab in self.multi_label_vocab.items():
            index = {v: i + 1 for i, v in enumerate(vocab)}
            sep = separators.get(column, self.config.get("separator", "|"))
            cells = items[column] if column in items.columns else empty
            indptr, indices = [0], []
            for cell in cells:
                cols = sorted({index.get(label, 0) for label in split_labels(cell, sep)})
                indices.extend(cols)
                indptr.append(len(indices))
            out.multi_label[column] = sp.csr_matrix(
                (np.ones(len(indices), np.float32), np.asarray(indices, np.int64), np.asarray(indptr, np.int64)),
                shape=(n, len(vocab) + 1),
            )
        k = len(self.numeric_columns)
        out.numeric = np.zeros((n, k), np.float32)
        out.numeric_missing = np.zeros((n, k), bool)
        out.numeric_buckets = np.zeros((n, k), np.int64)
        clip = self.config.get("clip")
        for j, column in enumerate(self.numeric_columns):
            stats = self.numeric_stats[column]
            if column in items.columns:
                values = _numeric_values(items[column], stats["role"])
            else:
                values = np.full(n, np.nan)
            missing = np.isnan(values)
            scaled = (values - stats["center"]) / stats["scale"]
            if clip is not None:
                scaled = np.clip(scaled, -clip, clip)
            scaled[missing] = 0.0
            buckets = 1 + np.searchsorted(np.asarray(stats["edges"], np.float64), values, side="right")
            buckets[missing] = 0
            out.numeric[:, j] = scaled
            out.numeric_missing[:, j] = missing
            out.numeric_buckets[:, j] = buckets

    # -- facts ----------------------------------------------------------------------------
    @property
    def cardinalities(self) -> dict[str, int]:
        """Number of embedding rows each categorical/multi-label column needs (vocab + unknown)."""
        out = {c: len(v) + 1 for c, v in self.categorical_vocab.items()}
        out.update({c: len(v) + 1 for c, v in self.multi_label_vocab.items()})
        return out

    @property
    def n_numeric_buckets(self) -> dict[str, int]:
        """Number of bucket indices per numeric column (including 0 = missing)."""
        return {c: len(self.numeric_stats[c]["edges"]) + 2 for c in self.numeric_columns}

    # -- saving without pickle ------------------------------------------------------------
    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(arrays, meta)``: numpy arrays (CSR as data/indices/indptr) and JSON-able metadata."""
        arrays: dict[str, np.ndarray] = {}
        for j, column in enumerate(self.categorical):
            arrays[f"categorical.{j}"] = self.categorical[column]
        for j, column in enumerate(self.multi_label):
            m = self.multi_label[column].tocsr()
            arrays[f"multi_label.{j}.data"] = m.data.astype(np.float32)
            arrays[f"multi_label.{j}.indices"] = m.indices.astype(np.int64)
            arrays[f"multi_label.{j}.indptr"] = m.indptr.astype(np.int64)
        arrays["numeric"] = self.numeric
        arrays["numeric_missing"] = self.numeric_missing
        arrays["numeric_buckets"] = self.numeric_buckets
        meta = {
            "format": "recsys.attributes/1",
            "n_items": int(self.n_items),
            "categorical_columns": list(self.categorical),
            "categorical_vocab": {c: list(v) for c, v in self.categorical_vocab.items()},
            "multi_label_columns": list(self.multi_label),
            "multi_label_vocab": {c: list(v) for c, v in self.multi_label_vocab.items()},
            "numeric_columns": list(self.numeric_columns),
            "numeric_stats": self.numeric_stats,
            "config": self.config,
        }
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> AttributeFeatures:
        n = int(meta["n_items"])
        categorical = {c: np.asarray(arrays[f"categorical.{j}"]) for j, c in enumerate(meta["categorical_columns"])}
        multi_label = {}
        for j, column in enumerate(meta["multi_label_columns"]):
            vocab = meta["multi_label_vocab"][column]
            multi_label[column] = sp.csr_matrix(
                (
                    np.asarray(arrays[f"multi_label.{j}.data"]),
                    np.asarray(arrays[f"multi_label.{j}.indices"]),
                    np.asarray(arrays[f"multi_label.{j}.indptr"]),
                ),
                shape=(n, len(vocab) + 1),
            )
        return cls(
            n_items=n,
            categorical=categorical,
            categorical_vocab={c: list(v) for c, v in meta["categorical_vocab"].items()},
            multi_label=multi_label,
            multi_label_vocab={c: list(v) for c, v in meta["multi_label_vocab"].items()},
            numeric_columns=list(meta["numeric_columns"]),
            numeric=np.asarray(arrays["numeric"]),
            numeric_missing=np.asarray(arrays["numeric_missing"]),
            numeric_buckets=np.asarray(arrays["numeric_buckets"]),
            numeric_stats={c: dict(s) for c, s in meta["numeric_stats"].items()},
            config=dict(meta["config"]),
        )


def _numeric_stats(values: np.ndarray, role: str, scaling: str, n_buckets: int) -> dict[str, Any]:
    present = values[~np.isnan(values)]
    if present.size == 0:
        return {"role": role, "center": 0.0, "scale": 1.0, "edges": [], "count": 0}
    if scaling == "robust":
        center = float(np.median(present))
        q1, q3 = np.percentile(present, [25, 75])
        scale = float(q3 - q1)
        if not scale > 0:
            scale = float(np.std(present))
    else:
        center = float(np.mean(present))
        scale = float(np.std(present))
    if not scale > 0 or not math.isfinite(scale):
        scale = 1.0
    edges: list[float] = []
    if n_buckets > 1:
        qs = np.quantile(present, np.linspace(0.0, 1.0, n_buckets + 1)[1:-1])
        edges = [float(e) for e in np.unique(qs)]
    return {"role": role, "center": center, "scale": scale, "edges": edges, "count": int(present.size)}


def build_attribute_features(items: pd.DataFrame, roles: Mapping[str, str], **options) -> AttributeFeatures:
    """Same as ``AttributeFeatures.fit(items, roles, **options)``."""
    return AttributeFeatures.fit(items, roles, **options)
