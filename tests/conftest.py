"""Shared fixtures: the real datasets beside the checkout, small bundles written on the fly."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"

# nothing in the test-suite may reach a model hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def shared_dataset(name: str) -> Path:
    path = SHARED_DATASETS / name
    if not (path / "items.csv").is_file():
        pytest.skip(f"real dataset {name} not found at {path} (the shared/ folder sits beside the checkout)")
    return path


@pytest.fixture
def movielens() -> Path:
    return shared_dataset("movielens-small-mm")


@pytest.fixture
def giftcards() -> Path:
    return shared_dataset("amazon-giftcards")


@pytest.fixture
def workspace(tmp_path):
    from recsys.workspace import Workspace

    return Workspace(tmp_path / "workspace")


def write_bundle(folder: Path, items: pd.DataFrame | None = None, interactions: pd.DataFrame | None = None,
                 users: pd.DataFrame | None = None, images: dict[str, bytes] | None = None) -> Path:
    """Write a small bundle as CSV files (pass None to leave a table out)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in (("items", items), ("interactions", interactions), ("users", users)):
        if frame is not None:
            frame.to_csv(folder / f"{name}.csv", index=False)
    for relative, data in (images or {}).items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def png_bytes(colour=(200, 30, 30), size=(16, 16)) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def small_bundle(tmp_path) -> Path:
    """A valid 3-item bundle with pictures, ratings and a multi-label column."""
    items = pd.DataFrame({
        "item_id": ["a", "b", "c"],
        "title": ["Red kettle for the kitchen", "Blue hiking boots", "Green garden hose, 20 m"],
        "genres": ["Home|Kitchen", "Outdoor|Shoes", "Garden"],
        "price": ["$12.50", "89", "1,299.00"],
        "image_file": ["images/a.png", "images/b.png", ""],
    })
    interactions = pd.DataFrame({
        "user_id": ["u1", "u1", "u2", "u2", "u3"],
        "item_id": ["a", "b", "b", "c", "a"],
        "rating": [5, 3, 4, 2, 1],
        "timestamp": [1000, 2000, 1500, 1600, 1700],
    })
    return write_bundle(tmp_path / "small", items, interactions,
                        images={"images/a.png": png_bytes(), "images/b.png": png_bytes((0, 0, 200))})
