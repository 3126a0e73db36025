"""Shared pieces of the encoders: the error type, a base class and file fingerprints."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "EncoderUnavailableError",
    "Encoder",
    "ProgressFn",
    "file_fingerprint",
]

ProgressFn = Callable[[int, int], None]


class EncoderUnavailableError(RuntimeError):
    """The encoder's weights (or its code) are not available on this machine, offline."""


class Encoder:
    """Base class of every encoder.

    Attributes every encoder sets: ``name`` (registry name), ``version`` (a string that changes
    whenever the weights or the preprocessing change; it is part of the feature-cache key),
    ``dim`` (output width) and ``modality`` (``"text"`` or ``"image"``).

    ``row_independent`` says whether one row's vector depends only on that row's input (true
    for neural encoders, false for TF-IDF, which is fitted on the whole corpus); the cache
    only reuses single rows across different inputs for row-independent encoders.

    Models are loaded lazily, on the first ``encode`` call, so building an encoder to learn its
    ``version`` (and find a cache hit) costs no model load.
    """

    name: str = ""
    version: str = ""
    dim: int = 0
    modality: str = ""
    row_independent: bool = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, version={self.version!r})"


_FP_LOCK = threading.Lock()
_FP_MEMO: dict[tuple[str, int, int], str] = {}


def file_fingerprint(path: str | os.PathLike, prefix: int = 16) -> str:
    """``"<size>:<sha256 prefix>"`` of a file, memoised per process on (path, size, mtime)."""
    path = Path(path)
    st = path.stat()
    memo_key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _FP_LOCK:
        cached = _FP_MEMO.get(memo_key)
    if cached is None:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        cached = digest.hexdigest()
        with _FP_LOCK:
            _FP_MEMO[memo_key] = cached
    return f"{st.st_size}:{cached[:prefix]}"
