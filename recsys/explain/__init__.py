"""Explanations and the helpers the app needs around a trained model.

* :mod:`.explainer`: ``explain(model, user, item, ...)`` -> :class:`Explanation` (modality weights
  and shares, the history items that contribute most, shared evidence, one plain sentence).
* :mod:`.narrator`: an optional local causal LM that rephrases the evidence, checked for facts.
* :mod:`.faithfulness`: masking test of the modality shares.
* :mod:`.coldstart`: new items, new users (a few liked items), text queries, cold-start metrics.
* :mod:`.evidence`: item vectors, similar items and price bands (MMR re-ranking, filters and diversity metrics live
  in :mod:`recsys.models.rerank`).
* :mod:`.attention`: attention weights aggregated over users, items and categories, a 2-D map
  of item vectors, and the demo catalog's ground-truth comparison.

Everything works on any :class:`recsys.models.Recommender`; attention-specific functions say so
plainly (``has_attention``) for models without it.
"""

from .attention import (
    LEAN_MARGIN,
    NO_LEAN,
    SEGMENT_MODALITY,
    attention_by_category,
    dominant_modality,
    ground_truth_comparison,
    has_attention,
    leaning_modality,
    pca_2d,
    segment_recovery,
    top_items_attention,
    user_weights_frame,
)
from .coldstart import (
    evaluate_by_history_length,
    evaluate_cold_start,
    evaluate_short_histories,
    recommend_for_history,
    recommend_for_text,
    recommend_users_for_item,
)
from .evidence import item_vectors, price_bands, similar_items
from .explainer import ExplainContext, Explanation, build_sentence, explain, explain_many, whole_percentages
from .faithfulness import faithfulness_check
from .narrator import Narration, Narrator, narrate

__all__ = [
    "item_vectors",
    "whole_percentages",
    "similar_items",
    "price_bands",
    "has_attention",
    "top_items_attention",
    "attention_by_category",
    "pca_2d",
    "ground_truth_comparison",
    "user_weights_frame",
    "dominant_modality",
    "leaning_modality",
    "NO_LEAN",
    "LEAN_MARGIN",
    "segment_recovery",
    "SEGMENT_MODALITY",
    "explain",
    "explain_many",
    "Explanation",
    "ExplainContext",
    "build_sentence",
    "faithfulness_check",
    "Narrator",
    "Narration",
    "narrate",
    "recommend_for_history",
    "recommend_for_text",
    "recommend_users_for_item",
    "evaluate_cold_start",
    "evaluate_by_history_length",
    "evaluate_short_histories",
]
