"""Recommenders behind one interface (see ``base.Recommender``)."""

from .base import (
    MODEL_REGISTRY,
    ModelDamaged,
    Recommender,
    RetrievalVectors,
    TrainData,
    batched_scores,
    check_saved_model,
    get_model,
    list_models,
)

__all__ = [
    "MODEL_REGISTRY",
    "ModelDamaged",
    "Recommender",
    "RetrievalVectors",
    "TrainData",
    "batched_scores",
    "check_saved_model",
    "get_model",
    "list_models",
]
