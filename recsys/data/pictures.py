"""Opening pictures safely: the size is read from the header and checked before anything is decoded.

A picture's file can be small and its pixels huge (a 30000x30000 PNG of one colour is ~100 kB and
decodes to ~1-3 GB): a *decompression bomb*. Every place that opens a picture (bundle validation,
feature extraction) goes through :func:`open_picture`, which refuses a picture over
:data:`MAX_IMAGE_PIXELS` with :class:`PictureTooLarge` (a ``ValueError`` naming the file and its size)
and never lets PIL's ``DecompressionBombError`` / ``DecompressionBombWarning`` escape. PIL's own
protection (``PIL.Image.MAX_IMAGE_PIXELS``) is left as it is: it still refuses what is above twice its
limit, whatever the cap here says.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import warnings
from typing import Any

from PIL import Image

log = logging.getLogger(__name__)

DEFAULT_MAX_IMAGE_PIXELS = 40_000_000  # 40 megapixels: a 7300x5500 photo; ~120 MB as RGB
MAX_IMAGE_PIXELS_ENV = "RECSYS_MAX_IMAGE_PIXELS"


def _setting() -> int:
    text = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip().replace("_", "")
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(float(text))
    except ValueError:
        value = 0
    if value <= 0:
        log.warning(
            "%s=%r is not a positive number of pixels; using %d", MAX_IMAGE_PIXELS_ENV, text, DEFAULT_MAX_IMAGE_PIXELS
        )
        return DEFAULT_MAX_IMAGE_PIXELS
    return value


# The largest picture (width x height, in pixels) that is decoded; a larger one is treated as missing.
# Set it with the environment variable RECSYS_MAX_IMAGE_PIXELS (read at import) or by assigning this name.
MAX_IMAGE_PIXELS: int = _setting()

_OPEN_LOCK = threading.Lock()  # warnings.catch_warnings() changes process-wide state: one header at a time
_PIL_PIXELS = re.compile(r"\((\d+) pixels\)")


class PictureTooLarge(ValueError):
    """A picture over the pixel cap (or over PIL's own limit); never decoded."""

    def __init__(self, name: str, size: tuple[int, int] | None, pixels: int | None, limit: int):
        self.name, self.size, self.pixels, self.limit = name, size, pixels, limit
        super().__init__(f"{name} is {describe_size(size, pixels)}, over the limit of {megapixels(limit)}")


def megapixels(pixels: int) -> str:
    if pixels < 1_000_000:
        return f"{pixels:,} pixels"
    value = pixels / 1e6
    return f"{value:,.0f} megapixels" if value >= 10 or value == int(value) else f"{value:,.1f} megapixels"


def describe_size(size: tuple[int, int] | None, pixels: int | None) -> str:
    """'12000x12000 pixels (144 megapixels)', or '900 megapixels' when only the count is known."""
    if size is not None:
        return f"{size[0]}x{size[1]} pixels ({megapixels(size[0] * size[1])})"
    return megapixels(pixels) if pixels is not None else "far too many pixels"


def open_picture(path: str | os.PathLike, name: str | None = None, max_pixels: int | None = None) -> Any:
    """``PIL.Image.open(path)`` (the header only: nothing is decoded yet), refusing a picture over
    ``max_pixels`` (default :data:`MAX_IMAGE_PIXELS`) with :class:`PictureTooLarge`.

    ``name`` is how messages call the file (default: the path). Other failures (missing file, not a
    picture) raise as ``Image.open`` does. The caller closes the returned image (``with``).
    """
    limit = int(MAX_IMAGE_PIXELS if max_pixels is None else max_pixels)  # read now: assignable
    label = str(path) if name is None else name
    try:
        # PIL warns (DecompressionBombWarning) between its limit and twice it; here the cap decides instead
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as exc:  # over twice PIL's limit: PIL refuses before we see the size
        match = _PIL_PIXELS.search(str(exc))
        raise PictureTooLarge(label, None, int(match.group(1)) if match else None, limit) from None
    width, height = img.size
    if width * height > limit:
        img.close()
        raise PictureTooLarge(label, (width, height), width * height, limit)
    return img
