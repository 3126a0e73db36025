"""Shared fixtures: the real datasets beside the checkout, small bundles written on the fly, one trained demo
workspace per session; and the two test tiers.

``pytest`` runs the fast tier: tests marked ``slow`` or ``browser`` are deselected. ``pytest --all`` runs
everything; ``pytest -m "slow or browser"`` (or any ``-m``) selects by the markers instead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"
DEMO_RUN = "20260101-000000-demo-fusion-test"  # the demo template's run (shaped like a generated id)

# nothing in the test-suite may reach a model hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_addoption(parser):
    parser.addoption(
        "--all",
        action="store_true",
        default=False,
        help="also run the tests marked slow or browser (deselected by default)",
    )


def pytest_collection_modifyitems(config, items):
    # an explicit -m is the user's own selection; --all keeps everything
    if config.getoption("--all") or config.getoption("markexpr"):
        return
    kept, deselected = [], []
    for item in items:
        (deselected if item.get_closest_marker("slow") or item.get_closest_marker("browser") else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def pytest_report_header(config):
    if not (config.getoption("--all") or config.getoption("markexpr")):
        return 'fast tier: slow and browser tests deselected (run everything with --all, or -m "slow or browser")'


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


def write_bundle(
    folder: Path,
    items: pd.DataFrame | None = None,
    interactions: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
    images: dict[str, bytes] | None = None,
) -> Path:
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


def huge_png(width: int, height: int) -> bytes:
    """A valid black-and-white PNG of ``width`` x ``height`` pixels that is small on disk (a decompression
    bomb: 30000x30000 is ~0.5 MB and would decode to ~1 GB). Written row by row, never held decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte, then one bit per pixel
    per_block = max(1, (1 << 20) // len(row))
    compressor, parts, left = zlib.compressobj(1), [], height
    while left > 0:
        count = min(left, per_block)
        parts.append(compressor.compress(row * count))
        left -= count
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory) -> Path:
    """The root of a small demo workspace with one trained run, built once per session and shared by every
    test that only reads a trained model: the demo catalog (150 users, 120 items, 3000 interactions, with
    pictures) imported as "demo", one fusion run (3 epochs, TF-IDF text, all four modalities) with MostPop
    beside it. Never write into it: a test that changes the workspace takes ``demo_copy``."""
    from recsys.data.demo import generate_demo_bundle
    from recsys.train.run import RunConfig, train_run
    from recsys.workspace import Workspace

    root = tmp_path_factory.mktemp("demo-template")
    workspace = Workspace(root / "workspace")
    bundle = generate_demo_bundle(root / "bundle", n_users=150, n_items=120, n_interactions=3000)
    result = workspace.import_bundle(bundle, name="demo")
    assert result.ok, result.report.format()
    train_run(
        workspace,
        RunConfig(dataset="demo", fusion_options={"epochs": 3}, text_encoder="tfidf", baselines=["mostpop"]),
        run_id=DEMO_RUN,
    )
    return workspace.root


@pytest.fixture
def demo_copy(demo_template, tmp_path) -> Path:
    """A private copy of the demo template (a test may add, damage or delete runs and datasets)."""
    target = tmp_path / "demo-workspace"
    shutil.copytree(demo_template, target)
    return target


@pytest.fixture
def small_bundle(tmp_path) -> Path:
    """A valid 3-item bundle with pictures, ratings and a multi-label column."""
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "title": ["Red kettle for the kitchen", "Blue hiking boots", "Green garden hose, 20 m"],
            "genres": ["Home|Kitchen", "Outdoor|Shoes", "Garden"],
            "price": ["$12.50", "89", "1,299.00"],
            "image_file": ["images/a.png", "images/b.png", ""],
        }
    )
    interactions = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u2", "u3"],
            "item_id": ["a", "b", "b", "c", "a"],
            "rating": [5, 3, 4, 2, 1],
            "timestamp": [1000, 2000, 1500, 1600, 1700],
        }
    )
    return write_bundle(
        tmp_path / "small",
        items,
        interactions,
        images={"images/a.png": png_bytes(), "images/b.png": png_bytes((0, 0, 200))},
    )


def write_sparse_shop_bundle(folder: Path, n_users: int = 300, n_items: int = 240, seed: int = 7) -> Path:
    """A fashion-shop-like bundle as real catalogues look: sparse (median ~4 purchases per customer, ~1-2
    customers per article), integer code columns beside their names, a one-letter index code, dates, and
    about a third of the articles without a picture."""
    import numpy as np

    rng = np.random.default_rng(seed)
    types = ["Trousers", "Dress", "Sweater", "T-shirt", "Jacket", "Skirt", "Shorts", "Blouse"]
    colours = {
        "Black": (20, 20, 20),
        "White": (235, 235, 235),
        "Dark Blue": (20, 40, 110),
        "Red": (190, 30, 40),
        "Beige": (210, 190, 150),
        "Green": (40, 120, 60),
    }
    departments = {1010: "Ladieswear", 2020: "Menswear", 3030: "Divided", 4040: "Sport"}
    colour_names = list(colours)
    rows, images = [], {}
    for i in range(n_items):
        kind = types[i % len(types)]
        colour = colour_names[rng.integers(len(colour_names))]
        department = list(departments)[rng.integers(len(departments))]
        item_id = f"0{700000000 + i * 7919}"
        has_picture = rng.random() > 0.33
        rows.append(
            {
                "item_id": item_id,
                "prod_name": f"{kind} {['Slim', 'Relaxed', 'Basic', 'Premium'][i % 4]} {i}",
                "product_type_name": kind,
                "colour_group_code": 10 + colour_names.index(colour),
                "colour_group_name": colour,
                "department_no": department,
                "department_name": departments[department],
                "graphical_appearance_no": 1010016 + (i % 3),
                "index_code": "ABCD"[department // 1000 - 1],
                "detail_desc": f"A {colour.lower()} {kind.lower()} from {departments[department]}.",
                "price": round(float(rng.uniform(5, 80)), 2),
                "image_file": f"images/{item_id}.png" if has_picture else "",
            }
        )
        if has_picture:
            images[f"images/{item_id}.png"] = png_bytes(colours[colour])
    items = pd.DataFrame(rows)
    interactions = []
    for u in range(n_users):
        count = 1 + int(rng.poisson(3.2))
        taste = rng.integers(len(types))
        for _ in range(count):
            pool = [j for j in range(n_items) if j % len(types) == taste] if rng.random() < 0.6 else range(n_items)
            j = int(rng.choice(list(pool)))
            day = 1 + int(rng.integers(0, 700))
            interactions.append(
                {
                    "user_id": f"c{u:05d}",
                    "item_id": rows[j]["item_id"],
                    "t_dat": f"2019-{1 + day // 60 % 12:02d}-{1 + day % 28:02d}",
                    "timestamp": day,
                }
            )
    return write_bundle(folder, items, pd.DataFrame(interactions), images=images)
