"""Device check: the accelerator path checked and timed against the CPU, in one run sized for a short loan.

    python benchmarks/device_check.py [--device auto] [--quick] [--json]

On a machine with a GPU (``--device auto`` picks CUDA, then MPS) every section runs on the CPU and on the
device, side by side, in this process; without one only the CPU column is filled (the script then checks
that the CPU path runs). Sections:

1. environment: torch, the device's name and memory, bf16 support;
2. feature extraction with the default encoders (MiniLM, EfficientNet-Lite0) on the demo catalogue's texts
   and pictures: items/s (fp16/bf16 autocast on CUDA, as extraction runs there);
3. training: the fusion model's fit on the demo (seconds, seconds per gate round, test NDCG@20: the two
   devices must agree within noise), and text fine-tuning steps (bf16 autocast and gradient checkpointing
   on CUDA): seconds per step;
4. top-K: 1,024 users x 100,000 items (64-d vectors), scores and top-10 per user: ms per user, and the
   share of the device's top-10 that the CPU's holds (float rounding may swap ties);
5. DDP: ``torchrun --nproc_per_node 1 -m recsys train`` (NCCL with a GPU, gloo without) against one
   plain process of the same config: both finish, test NDCG@20 within 1e-3.

With ``--json`` the last line is one JSON object with every figure. Nothing is downloaded: the encoders
come from their PyPI packages. ``--quick`` shrinks every section (a smoke run of the script itself).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from recsys.data.demo import generate_demo_bundle  # noqa: E402
from recsys.device import select_device  # noqa: E402
from recsys.evaluate import evaluate_ranking  # noqa: E402
from recsys.features.extract import build_item_text, extract_item_features, resolve_image_path  # noqa: E402
from recsys.features.registry import DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER, get_encoder  # noqa: E402
from recsys.models import get_model  # noqa: E402
from recsys.topk import topk_from_scores  # noqa: E402
from recsys.train.data import prepare_data  # noqa: E402
from recsys.workspace import Workspace  # noqa: E402


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def environment(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"torch": torch.__version__, "device": str(device), "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update(
            name=properties.name,
            memory_gib=round(properties.total_memory / 2**30, 1),
            bf16=bool(torch.cuda.is_bf16_supported()),
        )
    return info


def feature_throughput(bundle, devices: list[torch.device], limit: int) -> dict[str, Any]:
    """Items/s of the default encoders on each device (after one warm-up batch: model loading is apart)."""
    items = bundle.items.head(limit)
    roles = bundle.schema.items
    texts = build_item_text(items, roles)
    image_column = next(c for c, role in roles.items() if role == "image")
    paths = [resolve_image_path(bundle.root, value)[0] for value in items[image_column]]
    out: dict[str, Any] = {"items": len(items)}
    for device in devices:
        for kind, name, inputs in (("text", DEFAULT_TEXT_ENCODER, texts), ("image", DEFAULT_IMAGE_ENCODER, paths)):
            encoder = get_encoder(name, device=str(device))
            encoder.encode(inputs[:64], batch_size=64)  # load the model, warm the kernels
            synchronise(device)
            started = time.perf_counter()
            encoder.encode(inputs, batch_size=128)
            synchronise(device)
            out[f"{kind}_{device.type}_items_per_s"] = len(inputs) / (time.perf_counter() - started)
    return out


def training(workspace: Workspace, bundle, devices: list[torch.device], finetune_steps: int) -> dict[str, Any]:
    """The fusion fit on each device, and text fine-tuning steps (bf16 on CUDA)."""
    from recsys.features.finetune import behaviour_targets

    features = extract_item_features(bundle.items, bundle.schema.items, bundle.root, workspace.features_dir)
    catalogue = bundle.items["item_id"].to_numpy(str)
    prepared = prepare_data(bundle.interactions, item_features=features, catalogue_ids=catalogue)
    out: dict[str, Any] = {}
    for device in devices:
        model = get_model("fusion", device=str(device))
        synchronise(device)
        started = time.perf_counter()
        model.fit(prepared.data)
        synchronise(device)
        rounds = [r["seconds"] for r in model.history["epochs"]]
        test = evaluate_ranking(model.score, prepared.data.train, prepared.test, exclude=prepared.valid, ks=(20,))
        out[f"fusion_fit_{device.type}_s"] = time.perf_counter() - started
        out[f"fusion_round_{device.type}_s"] = float(np.median(rounds)) if rounds else None
        out[f"fusion_test_ndcg@20_{device.type}"] = float(test["ndcg@20"])

        texts = build_item_text(bundle.items, bundle.schema.items)
        usable = np.array([bool(t.strip()) for t in texts])
        targets = behaviour_targets(prepared.data.train, 32, usable)
        out[f"finetune_step_{device.type}_s"] = finetune_step_seconds(device, texts, targets, finetune_steps)
    return out


class StepClock:
    """Seconds between the fine-tuning's progress calls (each after one optimiser step)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.last, self.steps = device, time.perf_counter(), []

    def __call__(self, step: int, total: int, loss: float) -> None:
        synchronise(self.device)
        now = time.perf_counter()
        self.steps.append(now - self.last)
        self.last = now


def finetune_step_seconds(device: torch.device, texts: list[str], targets, steps: int) -> float:
    """Median seconds of a text fine-tuning step (the behaviour objective; bf16 autocast on CUDA)."""
    from recsys.features.finetune import FinetuneSettings, finetune_text_encoder

    encoder = get_encoder(DEFAULT_TEXT_ENCODER, device=str(device))
    settings = FinetuneSettings(steps=steps, eval_every=steps, holdout=0.1)
    with tempfile.TemporaryDirectory() as scratch:
        clock = StepClock(device)
        finetune_text_encoder(encoder, texts, None, Path(scratch) / "tuned", settings, clock, targets=targets)
    # the first step pays the model's first-use warm-up; the median of the rest is the step's cost
    return float(np.median(clock.steps[1:] or clock.steps))


def top_k(devices: list[torch.device], users: int, items: int, k: int = 10) -> dict[str, Any]:
    """Scores and top-k per user from 64-d vectors: the CPU path of the product (top_k_from_scores over
    NumPy scores, in blocks of 256 users) and torch.topk on the device."""
    rng = np.random.default_rng(0)
    user_vectors = rng.standard_normal((users, 64)).astype(np.float32)
    item_vectors = rng.standard_normal((items, 64)).astype(np.float32)
    out: dict[str, Any] = {"users": users, "items": items, "k": k}
    results: dict[str, np.ndarray] = {}
    for device in devices:
        started = time.perf_counter()
        if device.type == "cpu":
            parts = [topk_from_scores(user_vectors[s : s + 256] @ item_vectors.T, k) for s in range(0, users, 256)]
            top = np.concatenate(parts)
        else:
            u = torch.from_numpy(user_vectors).to(device)
            v = torch.from_numpy(item_vectors).to(device)
            torch.topk(u[:8] @ v.T, k, dim=1)  # warm the kernels
            synchronise(device)
            started = time.perf_counter()
            top = torch.topk(u @ v.T, k, dim=1).indices.cpu().numpy()
        synchronise(device)
        out[f"{device.type}_ms_per_user"] = 1000 * (time.perf_counter() - started) / users
        results[device.type] = top
    if len(results) == 2:
        cpu, other = (results[name] for name in results)
        out["top_k_agreement"] = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(cpu, other)]))
    return out


def ddp(workspace_dir: Path, device: torch.device, timeout: int) -> dict[str, Any]:
    """One process under torchrun against one plain process, same config (the fusion model on the demo)."""
    options = [
        "train", "--workspace", str(workspace_dir), "--data", "demo", "--model", "fusion", "--baselines",
        "--no-final-model", "--device", str(device), "--quiet", "--json",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    out: dict[str, Any] = {"backend": "nccl" if device.type == "cuda" else "gloo"}
    for label, launcher in (
        ("single", [sys.executable, "-m", "recsys"]),
        ("torchrun", [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "-m", "recsys"]),
    ):
        started = time.perf_counter()
        done = subprocess.run(
            [*launcher, *options, "--run-id", f"device-check-{label}"],
            capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO_ROOT,
        )  # fmt: skip
        out[f"{label}_s"] = time.perf_counter() - started
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            out[f"{label}_error"] = (done.stderr or done.stdout)[-2000:]
            continue
        result = json.loads(lines[-1])
        out[f"{label}_test_ndcg@20"] = result["metrics"]["model"]["test"]["ndcg@20"]
    if "single_test_ndcg@20" in out and "torchrun_test_ndcg@20" in out:
        out["ndcg_difference"] = abs(out["single_test_ndcg@20"] - out["torchrun_test_ndcg@20"])
        out["match"] = out["ndcg_difference"] <= 1e-3
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cuda, cuda:N, mps, cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes: check that the script runs")
    parser.add_argument("--skip", nargs="*", default=[], choices=["features", "training", "topk", "ddp"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    device = select_device(args.device)
    devices = [torch.device("cpu")] + ([device] if device.type != "cpu" else [])
    report: dict[str, Any] = {"environment": environment(device)}
    print(json.dumps(report["environment"]), flush=True)
    sizes = (
        {"users": 300, "items": 120, "interactions": 6000, "feature_items": 96, "finetune_steps": 3, "topk_items": 20_000}
        if args.quick
        else {"users": 1000, "items": 800, "interactions": 30000, "feature_items": 800, "finetune_steps": 12,
              "topk_items": 100_000}
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        bundle_dir = generate_demo_bundle(
            root / "bundle", n_users=sizes["users"], n_items=sizes["items"], n_interactions=sizes["interactions"]
        )
        workspace = Workspace(root / "workspace")
        if not workspace.import_bundle(bundle_dir, name="demo").ok:
            raise SystemExit("the demo bundle did not import")
        bundle = workspace.load_dataset("demo")
        sections = {
            "features": lambda: feature_throughput(bundle, devices, sizes["feature_items"]),
            "training": lambda: training(workspace, bundle, devices, sizes["finetune_steps"]),
            "topk": lambda: top_k(devices, 1024, sizes["topk_items"]),
            "ddp": lambda: ddp(root / "workspace", device, timeout=300 if args.quick else 420),
        }
        for name, run in sections.items():
            if name in args.skip:
                continue
            started = time.perf_counter()
            report[name] = run()
            report[name]["section_s"] = time.perf_counter() - started
            print(f"{name}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in report[name].items()), flush=True)
    if args.json:
        print(json.dumps(report))
    return 0


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str) and len(value) > 200:
        return value[-200:]
    return str(value)


if __name__ == "__main__":
    raise SystemExit(main())
