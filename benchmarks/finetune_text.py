"""Does fine-tuning the text encoder on the catalogue's behaviour help? Frozen MiniLM against MiniLM with its
last layers adapted to the behaviour (``recsys.features.finetune``; ``--objective``), warm and cold items.

For each dataset (the demo and movielens-small-mm by default) and each split — P1 (warm: test NDCG@20 /
Recall@20) and the cold-item split (10 % of items held out of training, ranked among themselves) — one process:

1. the split's *training* interactions give the behaviour targets (or the co-interaction pairs); validation
   and test never do;
2. MiniLM is fine-tuned on them (``--layers``, ``--steps``, ``--lr``, ``--temperature``; the defaults of
   ``FinetuneSettings``) into ``WORKSPACE/encoders/``; the step kept is chosen on held-out training items;
3. text features are extracted with the frozen and with the tuned encoder (text only, so the text expert is
   the one thing that differs);
4. the fusion model (behaviour + text) and the content model (text alone) are fitted on each and evaluated on
   the same split.

    python benchmarks/finetune_text.py                      # demo + movielens-small-mm, warm + cold
    python benchmarks/finetune_text.py --datasets demo --steps 100 --json

Settings are not tuned on test: the defaults of ``FinetuneSettings`` are used as they are.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from quality import SHARED, evaluate, fit_ours  # noqa: E402

from recsys.evaluate import evaluate_ranking  # noqa: E402
from recsys.features.extract import build_item_text, extract_item_features  # noqa: E402
from recsys.features.finetune import FinetuneSettings, finetune_text_encoder, training_signal  # noqa: E402
from recsys.features.registry import get_encoder  # noqa: E402
from recsys.train.data import prepare_data  # noqa: E402
from recsys.workspace import Workspace  # noqa: E402


def _bundle(workspace: Workspace, name: str, root: Path) -> Any:
    if not workspace.has_dataset(name):
        if name == "demo":
            from recsys.data.demo import generate_demo_bundle

            source = generate_demo_bundle(root / "demo-bundle")
        else:
            source = SHARED / name
        result = workspace.import_bundle(source, name=name)
        if not result.ok:
            raise SystemExit(result.report.format())
    return workspace.load_dataset(name)


def _scores(prepared: Any, split: str) -> dict[str, dict[str, float]]:
    out = {}
    for name in ("fusion", "content"):
        model, seconds = fit_ours(name, prepared, **({"device": "cpu"} if name == "fusion" else {}))
        if split == "warm":
            metrics = evaluate(model.score, prepared)
            out[name] = {"recall@20": metrics["recall@20"], "ndcg@20": metrics["ndcg@20"], "fit_s": seconds}
        else:
            metrics = evaluate_ranking(
                model.score, prepared.data.train, prepared.cold_test, ks=(20,), candidate_items=prepared.cold_items
            )
            out[name] = {"recall@20": metrics["recall@20"], "ndcg@20": metrics["ndcg@20"], "fit_s": seconds}
    return out


def run_dataset(
    workspace: Workspace, name: str, root: Path, settings: FinetuneSettings, splits: tuple[str, ...] = ("warm", "cold")
) -> list[dict]:
    bundle = _bundle(workspace, name, root)
    catalogue = bundle.items["item_id"].to_numpy(str)
    texts = build_item_text(bundle.items, bundle.schema.items)
    usable = np.array([bool(t.strip()) for t in texts])
    frozen = extract_item_features(
        bundle.items,
        bundle.schema.items,
        bundle.root,
        workspace.features_dir,
        text_encoder="minilm",
        modalities=("text",),
        device="cpu",
    )
    rows = []
    for split, protocol in (("warm", "p1"), ("cold", "cold")):
        if split not in splits:
            continue
        plain = prepare_data(bundle.interactions, protocol=protocol, catalogue_ids=catalogue)
        pairs, targets = training_signal(plain.data.train, usable, settings)
        out_dir = (
            workspace.root
            / "encoders"
            / f"{name}-{protocol}-minilm-{settings.objective}-ft{settings.layers}-{settings.steps}-{settings.lr:g}"
        )
        started = time.perf_counter()
        done = out_dir / "finetune.json"
        # an encoder tuned earlier is reused only when it was tuned with these very settings
        if not done.is_file() or json.loads(done.read_text()).get("settings") != dataclasses.asdict(settings):
            shutil.rmtree(out_dir, ignore_errors=True)
            encoder = get_encoder("minilm", device="cpu")

            def report(step: int, steps: int, loss: float, where: str = f"{name} {split}") -> None:
                if step == 1 or step % 25 == 0 or step == steps:
                    print(f"  [{where}] step {step}/{steps} loss {loss:.3f}", flush=True)

            finetune_text_encoder(encoder, texts, pairs, out_dir, settings, progress=report, targets=targets)
        tune_s = time.perf_counter() - started
        info = json.loads((out_dir / "finetune.json").read_text())
        if info.get("held_out_loss"):
            print(f"  held-out loss by step {info['held_out_loss']}; step kept {info.get('kept_step')}", flush=True)
        tuned = extract_item_features(
            bundle.items,
            bundle.schema.items,
            bundle.root,
            workspace.features_dir,
            text_encoder=f"hf:{out_dir}",
            modalities=("text",),
            device="cpu",
        )
        results = {}
        for label, features in (("frozen", frozen), ("tuned", tuned)):
            prepared = prepare_data(
                bundle.interactions, protocol=protocol, item_features=features, catalogue_ids=catalogue
            )
            results[label] = _scores(prepared, split)
        for model in ("fusion", "content"):
            row = {
                "dataset": name,
                "split": split,
                "model": model,
                "frozen": results["frozen"][model],
                "tuned": results["tuned"][model],
                "ndcg_ratio": results["tuned"][model]["ndcg@20"] / max(results["frozen"][model]["ndcg@20"], 1e-12),
                "recall_ratio": results["tuned"][model]["recall@20"]
                / max(results["frozen"][model]["recall@20"], 1e-12),
                "finetune_s": round(tune_s, 1),
                "loss": [info["loss_first_10"], info["loss_last_10"]],
                "objective": settings.objective,
                "held_out_loss": info.get("held_out_loss"),
                "kept_step": info.get("kept_step"),
                "pairs": 0 if pairs is None else len(pairs),
            }
            rows.append(row)
            print(
                f"{name:<20} {split:<5} {model:<8} NDCG@20 frozen {row['frozen']['ndcg@20']:.4f} tuned "
                f"{row['tuned']['ndcg@20']:.4f} ({row['ndcg_ratio']:.3f}x)  Recall@20 {row['frozen']['recall@20']:.4f}"
                f" -> {row['tuned']['recall@20']:.4f} ({row['recall_ratio']:.3f}x)",
                flush=True,
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", default=None)
    parser.add_argument("--datasets", nargs="+", default=["demo", "movielens-small-mm"])
    parser.add_argument("--layers", type=int, default=FinetuneSettings.layers)
    parser.add_argument("--steps", type=int, default=FinetuneSettings.steps)
    parser.add_argument("--lr", type=float, default=FinetuneSettings.lr)
    parser.add_argument("--temperature", type=float, default=FinetuneSettings.temperature)
    parser.add_argument("--objective", choices=("behaviour", "pairs"), default=FinetuneSettings.objective)
    parser.add_argument("--splits", nargs="+", choices=("warm", "cold"), default=["warm", "cold"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    root = Path(args.workspace or tempfile.mkdtemp(prefix="finetune-text-"))
    workspace = Workspace(root / "workspace")
    settings = FinetuneSettings(
        layers=args.layers, steps=args.steps, objective=args.objective, lr=args.lr, temperature=args.temperature
    )
    rows = []
    for name in args.datasets:
        rows += run_dataset(workspace, name, root, settings, tuple(args.splits))
    if args.json:
        print(json.dumps({"benchmark": "finetune_text", "settings": vars(args), "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
