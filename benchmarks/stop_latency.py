"""Stop latency: how long a training takes to end after SIGTERM, at each stage of a large run.

    python benchmarks/stop_latency.py --workspace /tmp/big/ws --dataset big [--delays 3 30 60 ...]
    python benchmarks/stop_latency.py --workspace /tmp/big/ws --generate 40000 5000 1000000

``--generate USERS ITEMS INTERACTIONS`` first writes and imports a demo catalogue of that size (the
issue's target: at least a million interactions). Then, for each delay, a fresh
``python -m recsys train`` is started on the dataset (text by TF-IDF, so that no stage is the language
model's), SIGTERM is sent ``delay`` seconds after its start, and the time until the process has exited
is measured, beside the stage it was in (the last line of its progress log) and what its status says.
Every training runs alone (timings taken beside other CPU work would measure the contention).

The last line printed is one JSON object with every row; the table above it is for people.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def recsys(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "recsys", *args], cwd=REPO_ROOT, text=True, capture_output=True, **kwargs
    )


def last_stage(run_dir: Path) -> str:
    """The stage the run was in: the last progress line's stage (and epoch, step)."""
    try:
        lines = (run_dir / "progress.jsonl").read_text().splitlines()
    except OSError:
        return "(no progress yet)"
    for line in reversed(lines):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("stage") in ("stopping", None) and event.get("type") != "step":
            continue
        stage = event.get("stage") or event.get("type")
        if event.get("type") == "step" and "epoch" in event:
            return f"fit epoch {event['epoch']} step {event.get('step')}/{event.get('steps')}"
        if event.get("message"):
            return f"{stage}: {event['message']}"[:70]
        return str(stage)
    return "(no progress yet)"


def measure(workspace: Path, dataset: str, delay: float, extra: list[str]) -> dict:
    run_id = f"stop-latency-{int(delay)}s"
    run_dir = workspace / "runs" / run_id
    shutil.rmtree(run_dir, ignore_errors=True)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recsys",
            "train",
            "--workspace",
            str(workspace),
            "--data",
            dataset,
            "--run-id",
            run_id,
            "--quiet",
            *extra,
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = time.perf_counter()
    while time.perf_counter() - started < delay and process.poll() is None:
        time.sleep(0.1)
    if process.poll() is not None:
        return {
            "delay_s": delay,
            "stage": "(ended before the signal)",
            "latency_s": None,
            "exit_code": process.returncode,
        }
    stage = last_stage(run_dir)
    sent = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=900)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    latency = time.perf_counter() - sent
    try:
        status = json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        status = {}
    row = {
        "delay_s": delay,
        "stage": stage,
        "latency_s": round(latency, 2),
        "exit_code": process.returncode,
        "state": status.get("state"),
        "stopped_during": status.get("stopped_during"),
        "model_kept": (run_dir / "model").is_dir(),
        "resumable": (run_dir / "checkpoint").is_dir(),
    }
    shutil.rmtree(run_dir, ignore_errors=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--dataset", default="big")
    parser.add_argument("--generate", type=int, nargs=3, metavar=("USERS", "ITEMS", "INTERACTIONS"), default=None)
    parser.add_argument("--delays", type=float, nargs="+", default=[3, 15, 30, 60, 90, 120, 180, 240, 300])
    parser.add_argument(
        "--train-args",
        default="--text-encoder tfidf --modalities behaviour text attributes",
        help="extra arguments of every training (default: TF-IDF text, no pictures)",
    )
    args = parser.parse_args()
    if args.generate:
        users, items, interactions = args.generate
        bundle = args.workspace.parent / f"{args.dataset}-bundle"
        done = recsys(
            "demo",
            "--out",
            str(bundle),
            "--users",
            str(users),
            "--items",
            str(items),
            "--interactions",
            str(interactions),
            "--import",
            "--name",
            args.dataset,
            "--workspace",
            str(args.workspace),
            "--quiet",
            "--json",
        )
        if done.returncode:
            sys.exit(done.stderr)
    import pandas as pd

    interactions = len(pd.read_parquet(args.workspace / "datasets" / args.dataset / "interactions.parquet"))
    print(f"dataset {args.dataset}: {interactions:,} interactions", file=sys.stderr)
    rows = []
    for delay in args.delays:
        row = measure(args.workspace, args.dataset, delay, args.train_args.split())
        rows.append(row)
        print(f"{delay:6.0f}s  {str(row['latency_s']):>7}s  {row.get('state') or '-':8}  {row['stage']}", flush=True)
    latencies = [r["latency_s"] for r in rows if r["latency_s"] is not None]
    print(
        json.dumps(
            {
                "dataset": args.dataset,
                "interactions": interactions,
                "rows": rows,
                "max_latency_s": max(latencies) if latencies else None,
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
