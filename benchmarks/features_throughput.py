"""Feature-extraction throughput on movielens-small-mm with the real default encoders.

    python benchmarks/features_throughput.py [--limit N] [--json] [--device auto] [--batch-size 64]

Cold run: extract text (minilm) + image (efficientnet-lite0) + attribute features for the items into
a fresh temporary cache and report items/s per stage. Warm run: the same call again, which must be
served by the cache; reports the cold/warm time ratio (target >= 10x). With ``--json`` the last
line printed is one JSON object with every number.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
DATASET = DATASETS / "movielens-small-mm"

ROLES = {
    "item_id": "id",
    "title": "text",
    "description": "text",
    "genres": "multi_label",
    "directors": "categorical",
    "cast_top5": "multi_label",
    "user_tags": "multi_label",
    "imdb_id": "ignore",
    "tmdb_id": "ignore",
    "image_file": "image",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N items")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)

    import pandas as pd
    import torch

    from recsys.device import describe_device, select_device
    from recsys.features import extract_item_features

    items_path = DATASET / "items.csv"
    if not items_path.is_file():
        print(f"dataset not found: {items_path}", file=sys.stderr)
        return 2
    items = pd.read_csv(items_path, dtype={"item_id": str})
    if args.limit is not None:
        items = items.head(args.limit)
    device = select_device(args.device)
    n = len(items)
    n_images = int(items["image_file"].notna().sum())
    print(f"items: {n} ({n_images} with a picture) | device: {describe_device(device)} | torch {torch.__version__}")

    with tempfile.TemporaryDirectory(prefix="features-bench-") as tmp:
        cache_dir = Path(tmp) / "cache"

        def run():
            t0 = time.perf_counter()
            feats = extract_item_features(
                items, ROLES, image_root=DATASET, cache_dir=cache_dir,
                device=str(device), batch_size=args.batch_size,
            )
            return feats, time.perf_counter() - t0

        cold, cold_s = run()
        warm, warm_s = run()

    n_text = int(cold.text_mask.sum())
    n_img_ok = int(cold.image_mask.sum())
    t = cold.timings
    result = {
        "items": n,
        "items_with_text": n_text,
        "items_with_image_path": n_images,
        "images_read": n_img_ok,
        "image_failures": len(cold.image_failures),
        "device": describe_device(device),
        "text_encoder": cold.text_encoder["name"],
        "image_encoder": cold.image_encoder["name"],
        "text_seconds": round(t["text"], 3),
        "image_seconds": round(t["image"], 3),
        "attributes_seconds": round(t["attributes"], 3),
        "text_items_per_s": round(n_text / t["text"], 1) if t["text"] > 0 else None,
        "image_items_per_s": round(n_images / t["image"], 1) if t["image"] > 0 else None,
        "cold_seconds": round(cold_s, 3),
        "warm_seconds": round(warm_s, 3),
        "warm_text_cached": bool(warm.timings["text_cached"]),
        "warm_image_cached": bool(warm.timings["image_cached"]),
        "cold_warm_ratio": round(cold_s / warm_s, 1) if warm_s > 0 else None,
    }
    print(f"text : {n_text} texts in {t['text']:.1f} s -> {result['text_items_per_s']} items/s ({cold.text_encoder['name']})")
    print(f"image: {n_images} pictures ({n_img_ok} read) in {t['image']:.1f} s -> {result['image_items_per_s']} items/s ({cold.image_encoder['name']})")
    print(f"attributes: {t['attributes']:.2f} s")
    print(f"cold {cold_s:.1f} s, warm {warm_s:.2f} s (cached: text={result['warm_text_cached']}, "
          f"image={result['warm_image_cached']}) -> ratio {result['cold_warm_ratio']}x")
    ok = result["cold_warm_ratio"] is not None and result["cold_warm_ratio"] >= 10
    print("cache speed-up >= 10x:", "OK" if ok else "FAILED")
    if args.json:
        print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
