"""From a dataset's interactions (and item features) to indexed train/valid/test matrices.

The protocols come from ``recsys.evaluate.split`` (docs/ARCHITECTURE.md, "Evaluation protocols and metrics"):
``p1`` (dedup, 5-core, per-user random 80/10/10), ``temporal`` (leave last out) and ``cold``
(10 % of items held out entirely; the rest split as P1), and ``sparse`` for real catalogues where a
5-core filter keeps almost nothing (per-user leave-last-out for users with 3 or more interactions, no
filter: every item of the catalogue stays on the item axis and is scored from its content when it has
no behaviour). Filters decide which users and interactions are *evaluated*, never which items exist:
under every protocol the item axis is the whole catalogue (when the catalogue is given), so items with
few or no interactions stay recommendable from their content (pure CF models rank them last).
``PreparedData.everything`` holds every interaction of every user (no filter, no split): the final
model is refitted on it, and it is what a user "already has".

:func:`preflight` says, before anything expensive runs, what each protocol would keep, and which one
``auto`` picks. ``kfold`` (per-user K-fold cross-validation, ``fold`` of ``folds``) filters as ``auto``
would (the k-core when P1 is chosen, nothing when the data is sparse); a tenth of each training part
is held out per user for validation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..evaluate import (
    build_index,
    cold_item_split,
    deduplicate,
    interactions_to_csr,
    k_core_filter,
    p1_split,
    users_in_history_order,
)
from ..evaluate.split import hold_out_valid, kfold_user_split, leave_last_out, temporal_leave_last_out
from ..models.base import TrainData
from ..stopping import check

PROTOCOLS = ("p1", "temporal", "cold", "sparse", "kfold")
#: How the app and the CLI name each protocol.
PROTOCOL_LABELS = {
    "p1": "P1 (k-core, random 80/10/10 per user, at least 1 valid + 1 test)",
    "temporal": "temporal (leave-last-out by time)",
    "cold": "cold items (10 % of items held out)",
    "sparse": "sparse (leave-last-out, no filter)",
    "kfold": "K-fold cross-validation (mean ± std over folds)",
}
#: ``auto`` keeps P1 while its k-core filter leaves at least this share of the interactions and users.
AUTO_MIN_KEPT = 0.5
AUTO_MIN_USERS = 20


def preflight(
    interactions: pd.DataFrame,
    k_core: int = 5,
    seed: int = 2026,
    has_timestamp: bool = False,
    catalogue_items: int | None = None,
) -> dict[str, Any]:
    """What each protocol keeps (users, items, interactions, evaluated users) and which one ``auto``
    chooses, with the reason; cheap (no features, no model). ``catalogue_items``: the catalogue's size
    (the sparse protocol keeps every item, also those nobody interacted with)."""
    frame = deduplicate(interactions[["user_id", "item_id"]].copy())
    total = {
        "users": int(frame["user_id"].nunique()),
        "items": int(catalogue_items if catalogue_items is not None else frame["item_id"].nunique()),
        "interactions": int(len(frame)),
    }
    core = k_core_filter(frame, k_core) if k_core > 1 else frame
    p1 = {
        "users": int(core["user_id"].nunique()),
        "items": int(core["item_id"].nunique()),
        "interactions": int(len(core)),
        "evaluated_users": int((core.groupby("user_id").size() >= 2).sum()),
    }
    counts = frame.groupby("user_id").size()
    sparse = {**total, "evaluated_users": int((counts >= 3).sum())}
    protocols = {"p1": p1, "sparse": sparse}
    if has_timestamp:
        protocols["temporal"] = {**p1, "evaluated_users": int((core.groupby("user_id").size() >= 3).sum())}
    kept = p1["interactions"] / max(total["interactions"], 1)
    kept_users = p1["users"] / max(total["users"], 1)
    p1_fits = p1["users"] >= AUTO_MIN_USERS and kept >= AUTO_MIN_KEPT and kept_users >= AUTO_MIN_KEPT
    protocols["kfold"] = {
        **(p1 if p1_fits else total),
        "evaluated_users": int(((core if p1_fits else frame).groupby("user_id").size() >= 2).sum()),
        "k_core": k_core if p1_fits else 0,
    }
    if p1_fits:
        chosen, reason = (
            "p1",
            (
                f"the {k_core}-core filter keeps {_share(kept)} of the interactions and "
                f"{_share(kept_users)} of the users"
            ),
        )
    else:
        chosen, reason = (
            "sparse",
            (
                f"the {k_core}-core filter would keep only {_share(kept)} of the interactions, "
                f"{_share(kept_users)} of the users and {p1['items']:,} of the {total['items']:,} items: "
                "leave-last-out per user with 3+ interactions, every item kept"
            ),
        )
    median = float(counts.median()) if len(counts) else 0.0
    return {
        "total": total,
        "protocols": protocols,
        "auto": chosen,
        "reason": reason,
        "k_core": k_core,
        "median_interactions_per_user": median,
    }


def _share(value: float) -> str:
    """A percentage that never rounds a loss away: 99.8 % stays "99.8%", not "100%"."""
    return f"{value:.0%}" if value in (0.0, 1.0) or 0.01 <= value <= 0.99 else f"{value:.1%}"


def default_protocol_problem(check: dict[str, Any]) -> str | None:
    """What is wrong when the protocol ``auto`` chooses (a :func:`preflight` ``check``) keeps no user to test on,
    so that training with it would be refused, naming a protocol that does test some, if one does; None when
    it keeps some."""
    protocols = check["protocols"]
    if protocols.get(check["auto"], {}).get("evaluated_users"):
        return None
    usable = [(name, kept["evaluated_users"]) for name, kept in protocols.items() if kept.get("evaluated_users")]
    if usable:
        name, users = max(usable, key=lambda pair: pair[1])
        advice = (
            f"choose {PROTOCOL_LABELS.get(name, name)} on the Train page (it tests {users:,} users), or add "
            "interactions"
        )
    else:
        advice = "add interactions, or check that the user and item id columns are the right ones"
    return (
        f"the evaluation chosen by default ({PROTOCOL_LABELS.get(check['auto'], check['auto'])}) keeps no user "
        f"to test on (each needs at least 3 interactions), so training with it would be refused: {advice}"
    )


def resolve_protocol(protocol: str, check: dict[str, Any]) -> str:
    """``auto`` -> the pre-flight's choice; an explicit protocol that keeps nothing is refused plainly."""
    chosen = check["auto"] if protocol == "auto" else protocol
    kept = check["protocols"].get("p1" if chosen in ("p1", "temporal", "cold") else chosen, {})
    if not kept.get("interactions"):
        raise ValueError(
            f"the {chosen} protocol keeps no interactions: the {check['k_core']}-core filter removes "
            f"every user and item (median {check['median_interactions_per_user']:g} interactions per "
            "user). Choose the 'sparse' protocol (or 'auto'), or a smaller k-core."
        )
    if not kept.get("evaluated_users"):
        raise ValueError(f"the {chosen} protocol leaves no user to evaluate (each needs at least 3 interactions)")
    return chosen


@dataclass
class PreparedData:
    data: TrainData  # train (+ valid for early stopping) and item features
    test: sp.csr_matrix
    valid: sp.csr_matrix
    cold_items: np.ndarray | None = None  # item indices held out from training (cold protocol)
    cold_test: sp.csr_matrix | None = None
    test_ratings: sp.csr_matrix | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    everything: sp.csr_matrix | None = None  # every interaction, every user (rows: everything_users)
    everything_users: np.ndarray | None = None


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
            numeric_missing=np.asarray(attributes.numeric_missing)[rows]
            if np.asarray(attributes.numeric_missing).size
            else attributes.numeric_missing,
            numeric_buckets=np.asarray(attributes.numeric_buckets)[rows]
            if np.asarray(attributes.numeric_buckets).size
            else attributes.numeric_buckets,
        )
    return dataclasses.replace(features, **changes)


def prepare_data(
    interactions: pd.DataFrame,
    *,
    protocol: str = "p1",
    seed: int = 2026,
    k_core: int = 5,
    rating_column: str | None = None,
    timestamp_column: str | None = None,
    item_features: Any = None,
    catalogue_ids: np.ndarray | None = None,
    fold: int = 0,
    folds: int = 5,
    not_for_sale_ids: Iterable[str] | None = None,
) -> PreparedData:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
    frame = interactions[["user_id", "item_id"]].copy()
    if rating_column:
        frame["rating"] = interactions[rating_column].astype(float)
    if timestamp_column:
        frame["timestamp"] = interactions[timestamp_column].astype(float)
    frame = deduplicate(frame)
    unfiltered = frame
    check("the split")  # between the pandas steps: each takes seconds on millions of rows
    if k_core > 1 and protocol != "sparse":
        frame = k_core_filter(frame, k_core)
        check("the split")
    if frame.empty:
        raise ValueError(
            f"no interactions are left after the {k_core}-core filter: every user and item needs "
            f"at least {k_core} interactions; try a smaller k-core"
        )
    # user rows in an order set by what users did, not by their ids: a pseudonymised import trains the same model
    user_index = {user: row for row, user in enumerate(users_in_history_order(frame).tolist())}
    if catalogue_ids is not None:
        # the whole catalogue: items nobody chose yet (or too few for the k-core) are scored from content
        item_index = build_index(pd.Series(np.asarray(catalogue_ids).astype(str)))
    else:
        item_index = build_index(unfiltered["item_id"] if protocol == "sparse" else frame["item_id"])
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
    elif protocol == "sparse":
        parts = leave_last_out(split_source, seed=seed)
    elif protocol == "kfold":
        if not 0 <= fold < folds:
            raise ValueError(f"fold must be in 0..{folds - 1}, not {fold}")
        dealt = kfold_user_split(split_source, k=folds, seed=seed)[fold]
        parts = {**hold_out_valid(dealt["train"], seed=seed + 1 + fold), "test": dealt["test"]}
    else:
        parts = p1_split(split_source, seed=seed)
    check("the split")
    matrices = {}
    for name in ("train", "valid", "test"):
        check("the split")
        matrices[name] = interactions_to_csr(parts[name], user_index, item_index)
    ratings = test_ratings = None
    if rating_column:
        ratings = _values_csr(parts["train"], user_index, item_index)
        test_ratings = _values_csr(parts["test"], user_index, item_index)
    user_ids = np.array(sorted(user_index, key=user_index.__getitem__), dtype=str)
    item_ids = np.array(sorted(item_index, key=item_index.__getitem__), dtype=str)
    features = None
    if item_features is not None:
        features = subset_item_features(
            item_features, catalogue_ids if catalogue_ids is not None else item_features.item_ids, item_ids
        )
    off_sale = set(map(str, not_for_sale_ids or ()))
    data = TrainData(
        user_ids,
        item_ids,
        matrices["train"],
        ratings=ratings,
        valid=matrices["valid"],
        item_features=features,
        not_for_sale=np.isin(item_ids, list(off_sale)) if off_sale else None,
    )
    check("the split")
    # every user's every interaction: the final model's data, and what the product hides from a user
    known = unfiltered[unfiltered["item_id"].isin(item_index)]
    everything_index = {user: row for row, user in enumerate(users_in_history_order(known).tolist())}
    everything_users = np.array(sorted(everything_index, key=everything_index.__getitem__), dtype=str)
    everything = interactions_to_csr(known, everything_index, item_index)
    everything.data[:] = 1.0
    check("the split")
    summary = {
        "protocol": protocol,
        "seed": seed,
        "k_core": k_core if k_core > 1 and protocol != "sparse" else 0,
        "users": len(user_ids),
        "items": len(item_ids),
        "items_with_interactions": int(frame["item_id"].nunique()),
        "interactions": int(len(frame)),
        "train": int(matrices["train"].nnz),
        "valid": int(matrices["valid"].nnz),
        "test": int(matrices["test"].nnz),
    }
    if protocol == "kfold":
        summary |= {"fold": fold, "folds": folds}
    if cold_items is not None:
        assert cold_test_matrix is not None  # made with cold_items
        summary |= {"cold_items": int(len(cold_items)), "cold_test": int(cold_test_matrix.nnz)}
    return PreparedData(
        data,
        matrices["test"],
        matrices["valid"],
        cold_items,
        cold_test_matrix,
        test_ratings,
        summary,
        everything,
        everything_users,
    )


def _values_csr(frame: pd.DataFrame, user_index: dict, item_index: dict, column: str = "rating") -> sp.csr_matrix:
    rows = frame["user_id"].map(user_index).to_numpy()
    cols = frame["item_id"].map(item_index).to_numpy()
    return sp.csr_matrix((frame[column].to_numpy(np.float32), (rows, cols)), shape=(len(user_index), len(item_index)))
