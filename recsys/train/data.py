"""From a dataset's interactions (and item features) to indexed train/valid/test matrices.

The protocols come from ``recsys.evaluate.split`` (DESIGN.md, "Evaluation protocol P1"):
``p1`` (dedup, 5-core, per-user random 80/10/10), ``temporal`` (leave last out) and ``cold``
(10 % of items held out entirely; the rest split as P1). The item axis is every item left after
the k-core filter, held-out cold items included, so content-aware models can rank them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..evaluate import build_index, cold_item_split, deduplicate, interactions_to_csr, k_core_filter, p1_split
from ..evaluate.split import temporal_leave_last_out
from ..models.base import TrainData

PROTOCOLS = ("p1", "temporal", "cold")


@dataclass
class PreparedData:
    data: TrainData  # train (+ valid for early stopping) and item features
    test: sp.csr_matrix
    valid: sp.csr_matrix
    cold_items: np.ndarray | None = None  # item indices held out from training (cold protocol)
    cold_test: sp.csr_matrix | None = None
    test_ratings: sp.csr_matrix | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def subset_item_features(features: Any, catalogue_ids: np.ndarray, wanted_ids: np.ndarray) -> Any:
    """Rows of an ItemFeatures (or a plain matrix) for ``wanted_ids``, in that order."""
    if features is None:
        return None
    position = {str(v): i for i, v in enumerate(np.asarray(catalogue_ids).astype(str))}
    rows = np.array([position[str(v)] for v in wanted_ids], dtype=np.int64)
    if isinstance(features, np.ndarray):
        return features[rows]
    changes: dict[str, Any] = {"item_ids": np.asarray(features.item_ids)[rows]}
    for name in ("text", "text_mask", "image", "image_mask"):
        value = getattr(features, name, None)
        if value is not None:
            changes[name] = np.asarray(value)[rows]
    attributes = getattr(features, "attributes", None)
    if attributes is not None:
        changes["attributes"] = dataclasses.replace(
            attributes,
            n_items=len(rows),
            categorical={k: np.asarray(v)[rows] for k, v in attributes.categorical.items()},
            multi_label={k: sp.csr_matrix(v)[rows] for k, v in attributes.multi_label.items()},
            numeric=np.asarray(attributes.numeric)[rows] if np.asarray(attributes.numeric).size else attributes.numeric,
            numeric_missing=np.asarray(attributes.numeric_missing)[rows] if np.asarray(attributes.numeric_missing).size
            else attributes.numeric_missing,
            numeric_buckets=np.asarray(attributes.numeric_buckets)[rows] if np.asarray(attributes.numeric_buckets).size
            else attributes.numeric_buckets,
        )
    return dataclasses.replace(features, **changes)


def prepare_data(interactions: pd.DataFrame, *, protocol: str = "p1", seed: int = 2026, k_core: int = 5,
                 rating_column: str | None = None, timestamp_column: str | None = None,
                 item_features: Any = None, catalogue_ids: np.ndarray | None = None) -> PreparedData:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
    frame = interactions[["user_id", "item_id"]].copy()
    if rating_column:
        frame["rating"] = interactions[rating_column].astype(float)
    if timestamp_column:
        frame["timestamp"] = interactions[timestamp_column].astype(float)
    frame = deduplicate(frame)
    if k_core > 1:
        frame = k_core_filter(frame, k_core)
    if frame.empty:
        raise ValueError(f"no interactions are left after the {k_core}-core filter: every user and item needs "
                         f"at least {k_core} interactions; try a smaller k-core")
    user_index = build_index(frame["user_id"])
    item_index = build_index(frame["item_id"])
    cold_items = cold_test_matrix = None
    split_source = frame
    if protocol == "cold":
        cold = cold_item_split(frame, seed=seed)
        split_source = cold["train"]
        cold_items = np.array(sorted(item_index[i] for i in cold["cold_items"]), dtype=np.int64)
        cold_test_matrix = interactions_to_csr(cold["cold_test"], user_index, item_index)
    if protocol == "temporal":
        if "timestamp" not in frame:
            raise ValueError("the temporal protocol needs a timestamp column")
        parts = temporal_leave_last_out(split_source)
    else:
        parts = p1_split(split_source, seed=seed)
    matrices = {name: interactions_to_csr(parts[name], user_index, item_index) for name in ("train", "valid", "test")}
    ratings = test_ratings = None
    if rating_column:
        ratings = _values_csr(parts["train"], user_index, item_index)
        test_ratings = _values_csr(parts["test"], user_index, item_index)
    times = _values_csr(parts["train"], user_index, item_index, "timestamp") if timestamp_column else None
    user_ids = np.array(sorted(user_index, key=user_index.get), dtype=str)
    item_ids = np.array(sorted(item_index, key=item_index.get), dtype=str)
    features = None
    if item_features is not None:
        features = subset_item_features(item_features, catalogue_ids if catalogue_ids is not None
                                        else item_features.item_ids, item_ids)
    data = TrainData(user_ids, item_ids, matrices["train"], ratings=ratings, valid=matrices["valid"],
                     item_features=features, timestamps=times)
    summary = {"protocol": protocol, "seed": seed, "k_core": k_core, "users": len(user_ids), "items": len(item_ids),
               "interactions": int(len(frame)), "train": int(matrices["train"].nnz),
               "valid": int(matrices["valid"].nnz), "test": int(matrices["test"].nnz)}
    if cold_items is not None:
        summary |= {"cold_items": int(len(cold_items)), "cold_test": int(cold_test_matrix.nnz)}
    return PreparedData(data, matrices["test"], matrices["valid"], cold_items, cold_test_matrix, test_ratings, summary)


def _values_csr(frame: pd.DataFrame, user_index: dict, item_index: dict, column: str = "rating") -> sp.csr_matrix:
    rows = frame["user_id"].map(user_index).to_numpy()
    cols = frame["item_id"].map(item_index).to_numpy()
    return sp.csr_matrix((frame[column].to_numpy(np.float32), (rows, cols)), shape=(len(user_index), len(item_index)))
