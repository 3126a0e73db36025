"""Feature-extraction throughput on movielens-small-mm with the real default encoders.

    python benchmarks/features_throughput.py [--limit N] [--json] [--device auto] [--batch-size 64]

Cold run: extract text (minilm) + image (efficientnet-lite0) + attribute features for the items into
a fresh temporary cache and report items/s per stage. Warm run: the same call again, which must be
served by the cache; reports the cold/warm time ratio (target >= 10x).

Raw encoder throughput, in the same process on the same items: the encoders alone, the model already
loaded, the same batch size, inference mode and threads: for text the tokenizer and the forward pass (a
text encoder's input is text), for pictures the forward pass on tensors decoded beforehand (channels_last). ``text_pipeline_vs_raw`` / ``image_pipeline_vs_raw`` = pipeline items/s
divided by raw items/s: how close the cold pipeline (model loading, first-use warm-up of every batch
shape, reading, decoding, caching included) comes to the model's own speed. ``*_encode_vs_raw`` is the
same for the pipeline's encoder call (``encode``: pictures read and decoded in threads, texts tokenised
while the model runs) measured in the same warm state as the raw passes, right after them: the
pipeline's own overhead, without the one-off costs (target >= 0.9). With ``--json`` the last line printed is one JSON object with
every number.
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
                items,
                ROLES,
                image_root=DATASET,
                cache_dir=cache_dir,
                device=str(device),
                batch_size=args.batch_size,
            )
            return feats, time.perf_counter() - t0

        cold, cold_s = run()
        warm, warm_s = run()

    raw = raw_encoder_throughput(items, device, args.batch_size)
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
        **raw,
    }
    for kind in ("text", "image"):
        pipeline, model_only = result[f"{kind}_items_per_s"], raw.get(f"raw_{kind}_items_per_s")
        result[f"{kind}_pipeline_vs_raw"] = round(pipeline / model_only, 3) if pipeline and model_only else None
    print(
        f"text : {n_text} texts in {t['text']:.1f} s -> {result['text_items_per_s']} items/s ({cold.text_encoder['name']})"
    )
    print(
        f"image: {n_images} pictures ({n_img_ok} read) in {t['image']:.1f} s -> {result['image_items_per_s']} items/s ({cold.image_encoder['name']})"
    )
    print(f"attributes: {t['attributes']:.2f} s")
    for kind in ("text", "image"):
        print(
            f"raw {kind} encoder: {raw.get(f'raw_{kind}_items_per_s')} items/s -> cold pipeline / raw "
            f"= {result[f'{kind}_pipeline_vs_raw']}; warm encode / raw = {raw.get(f'{kind}_encode_vs_raw')}"
        )
    print(
        f"cold {cold_s:.1f} s, warm {warm_s:.2f} s (cached: text={result['warm_text_cached']}, "
        f"image={result['warm_image_cached']}) -> ratio {result['cold_warm_ratio']}x"
    )
    ok = result["cold_warm_ratio"] is not None and result["cold_warm_ratio"] >= 10
    print("cache speed-up >= 10x:", "OK" if ok else "FAILED")
    if args.json:
        print(json.dumps(result))
    return 0 if ok else 1


def raw_encoder_throughput(items, device, batch_size: int) -> dict:
    """Items/s of the default encoders alone (model loaded; text: tokenizer + forward; pictures: forward on
    decoded tensors)."""
    import torch

    from recsys.features.extract import build_item_text, resolve_image_path
    from recsys.features.registry import get_encoder

    out = {}
    text_encoder = get_encoder("minilm", device=str(device))
    text_encoder._load()
    texts = [t for t in build_item_text(items, ROLES) if t]
    texts.sort(key=len, reverse=True)  # as the pipeline does: little padding
    started = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(texts), batch_size):
            batch = text_encoder._tokenizer(
                texts[s : s + batch_size],
                padding=True,
                truncation=True,
                max_length=text_encoder.max_length,
                return_tensors="pt",
            )
            hidden = text_encoder._model(**{k: v.to(device) for k, v in batch.items()}).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.device, hidden.dtype)
            torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1).cpu()
    seconds = time.perf_counter() - started
    out["raw_text_items_per_s"] = round(len(texts) / seconds, 1) if seconds > 0 else None
    started = time.perf_counter()
    text_encoder.encode(texts, batch_size=batch_size)
    encode_seconds = time.perf_counter() - started
    out["text_encode_vs_raw"] = round(seconds / encode_seconds, 3) if encode_seconds > 0 else None

    image_encoder = get_encoder("efficientnet-lite0", device=str(device))
    image_encoder._load()
    paths = [resolve_image_path(DATASET, v)[0] for v in items["image_file"] if isinstance(v, str) and v]
    prepared = [image_encoder._read(p)[0] for p in paths if p is not None]
    prepared = [p for p in prepared if p is not None]
    started = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(prepared), batch_size):
            image_encoder._forward(image_encoder._collate(prepared[s : s + batch_size]).to(device)).float().cpu()
    seconds = time.perf_counter() - started
    out["raw_image_items_per_s"] = round(len(prepared) / seconds, 1) if seconds > 0 else None
    started = time.perf_counter()
    image_encoder.encode([p for p in paths if p is not None], batch_size=batch_size)
    encode_seconds = time.perf_counter() - started
    out["image_encode_vs_raw"] = round(seconds / encode_seconds, 3) if encode_seconds > 0 else None
    return out


if __name__ == "__main__":
    raise SystemExit(main())
