"""Evaluation layer: splits (protocol P1), metrics and full-ranking evaluation.

Plain functions over frames and arrays; see docs/ARCHITECTURE.md, "Evaluation protocols and metrics".
"""

from .evaluator import (
    build_index,
    evaluate_ranking,
    evaluate_ranking_by_user,
    interactions_to_csr,
    paired_bootstrap,
    per_user_metric,
    summarise_folds,
)
from .metrics import (
    catalogue_coverage,
    hit_matrix,
    hit_rate_at_k,
    mae,
    mean_over_users,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    rmse,
    topk_from_scores,
)
from .selection import one_standard_error_choice
from .split import (
    cold_item_split,
    deduplicate,
    k_core_filter,
    kfold_user_split,
    leave_last_out,
    p1_split,
    prepare_p1,
    temporal_leave_last_out,
    users_in_history_order,
)

__all__ = [
    "evaluate_ranking_by_user",
    "paired_bootstrap",
    "one_standard_error_choice",
    "leave_last_out",
    "users_in_history_order",
    "build_index",
    "catalogue_coverage",
    "cold_item_split",
    "deduplicate",
    "evaluate_ranking",
    "per_user_metric",
    "hit_matrix",
    "hit_rate_at_k",
    "interactions_to_csr",
    "k_core_filter",
    "kfold_user_split",
    "mae",
    "mean_over_users",
    "mrr_at_k",
    "ndcg_at_k",
    "p1_split",
    "precision_at_k",
    "prepare_p1",
    "ranking_metrics",
    "recall_at_k",
    "rmse",
    "summarise_folds",
    "temporal_leave_last_out",
    "topk_from_scores",
]
