"""Feature extraction: text / image encoders (offline), attribute features and a feature cache.

Public API::

    from recsys.features import (
        get_encoder, list_encoders, register_encoder, EncoderInfo, EncoderUnavailableError,
        extract_item_features, ItemFeatures, build_item_text,
        AttributeFeatures, build_attribute_features, FeatureCache,
    )
"""

from .attributes import ROLES, AttributeFeatures, build_attribute_features, normalize_roles
from .base import Encoder, EncoderUnavailableError
from .cache import FeatureCache, cache_key, hash_files, hash_texts
from .extract import (
    ItemFeatures,
    build_item_text,
    encode_images,
    encode_texts,
    extract_item_features,
    resolve_image_path,
)
from .registry import (
    DEFAULT_IMAGE_ENCODER,
    DEFAULT_TEXT_ENCODER,
    EncoderInfo,
    encoder_info,
    get_encoder,
    list_encoders,
    register_encoder,
)

__all__ = [
    "ROLES",
    "AttributeFeatures",
    "build_attribute_features",
    "normalize_roles",
    "Encoder",
    "EncoderUnavailableError",
    "FeatureCache",
    "cache_key",
    "hash_files",
    "hash_texts",
    "ItemFeatures",
    "build_item_text",
    "encode_images",
    "encode_texts",
    "extract_item_features",
    "resolve_image_path",
    "DEFAULT_IMAGE_ENCODER",
    "DEFAULT_TEXT_ENCODER",
    "EncoderInfo",
    "encoder_info",
    "get_encoder",
    "list_encoders",
    "register_encoder",
]
