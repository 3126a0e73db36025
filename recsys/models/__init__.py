"""Recommenders behind one interface (see ``base.Recommender``)."""

from .base import MODEL_REGISTRY, Recommender, TrainData, batched_scores, get_model, list_models

__all__ = ["MODEL_REGISTRY", "Recommender", "TrainData", "batched_scores", "get_model", "list_models"]
