"""Batch export memory: peak RSS of ``python -m recsys export`` as the number of users grows.

    python benchmarks/export_memory.py [--users 2000 8000 32000] [--items 800] [--per-user 30] [--k 50]
                                       [--chunk-size 2048] [--root /tmp/export-memory]

For each size a demo catalogue with the same items and ``per-user`` interactions a user is written and
imported into its own workspace, EASE is trained on it (no baselines, no final refit), and the run is
exported (top-``k`` for every user, ``chunk-size`` users at a time). Each export runs in its own process
and its peak resident memory is read from ``os.wait4``'s rusage for that process alone; beside it, the
peak of a process that only loads the same model (what any command on the run costs) and the difference.
Streaming keeps the difference near one chunk's worth, however many users: the output (users x k rows)
is never held whole. The last line printed is one JSON object; the table above it is for people.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def recsys(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "recsys", *args, "--json", "--quiet"], cwd=REPO_ROOT, text=True, capture_output=True
    )
    if done.returncode != 0:
        raise SystemExit(f"`recsys {' '.join(args)}` failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def peak_rss_mb(argv: list[str]) -> tuple[float, float, int]:
    """(peak RSS in MB of that one process, seconds, exit code)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    kb = usage.ru_maxrss if sys.platform != "darwin" else usage.ru_maxrss / 1024
    return kb / 1024, time.perf_counter() - started, process.returncode


def measure(root: Path, users: int, items: int, per_user: int, k: int, chunk_size: int) -> dict:
    workspace = root / f"ws-{users}"
    shutil.rmtree(workspace, ignore_errors=True)
    started = time.perf_counter()
    demo = recsys(
        "demo",
        "--workspace",
        str(workspace),
        "--out",
        str(root / f"bundle-{users}"),
        "--users",
        str(users),
        "--items",
        str(items),
        "--interactions",
        str(users * per_user),
        "--import",
    )
    trained = recsys(
        "train",
        "--workspace",
        str(workspace),
        "--data",
        "demo",
        "--model",
        "ease",
        "--baselines",
        "--no-final-model",
        "--device",
        "cpu",
        "--run-id",
        "ease",
    )
    prepare_s = time.perf_counter() - started
    out = root / f"recs-{users}.parquet"
    load_code = (
        "from recsys.train.records import load_run_model; "
        f"m = load_run_model(__import__('pathlib').Path({str(workspace / 'runs' / 'ease')!r})); m.score([0])"
    )
    load_mb, _, code = peak_rss_mb([sys.executable, "-c", load_code])
    if code != 0:
        raise SystemExit("loading the model failed")
    export_mb, export_s, code = peak_rss_mb(
        [
            sys.executable,
            "-m",
            "recsys",
            "export",
            "ease",
            "--workspace",
            str(workspace),
            "--k",
            str(k),
            "--out",
            str(out),
            "--chunk-size",
            str(chunk_size),
            "--quiet",
        ]
    )
    if code != 0:
        raise SystemExit(f"export of {users} users failed (exit {code})")
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(out).metadata
    row = {
        "users": users,
        "interactions": demo.get("counts", {}).get("interactions"),
        "items": items,
        "k": k,
        "chunk_size": chunk_size,
        "rows": meta.num_rows,
        "row_groups": meta.num_row_groups,
        "parquet_mb": round(out.stat().st_size / 2**20, 2),
        "export_s": round(export_s, 2),
        "peak_rss_export_mb": round(export_mb, 1),
        "peak_rss_load_only_mb": round(load_mb, 1),
        "export_over_load_mb": round(export_mb - load_mb, 1),
        "prepare_s": round(prepare_s, 1),
        "run_state": trained.get("state"),
    }
    out.unlink()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[2000, 8000, 32000])
    parser.add_argument("--items", type=int, default=800)
    parser.add_argument("--per-user", type=int, default=30, help="interactions per user (default 30)")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--chunk-size", type=int, default=2048)
    parser.add_argument("--root", type=Path, default=Path("/tmp/export-memory"))
    parser.add_argument("--keep", action="store_true", help="keep the workspaces")
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    rows = []
    print(
        f"{'users':>7} {'rows':>10} {'MB out':>7} {'export s':>9} {'peak RSS':>9} {'load only':>10} {'difference':>11}"
    )
    for users in args.users:
        row = measure(args.root, users, args.items, args.per_user, args.k, args.chunk_size)
        rows.append(row)
        print(
            f"{row['users']:>7,} {row['rows']:>10,} {row['parquet_mb']:>7} {row['export_s']:>9} "
            f"{row['peak_rss_export_mb']:>7} MB {row['peak_rss_load_only_mb']:>7} MB "
            f"{row['export_over_load_mb']:>8} MB",
            flush=True,
        )
        if not args.keep:
            shutil.rmtree(args.root / f"ws-{users}", ignore_errors=True)
            shutil.rmtree(args.root / f"bundle-{users}", ignore_errors=True)
    first, last = rows[0], rows[-1]
    growth = {
        "users_ratio": round(last["users"] / first["users"], 1),
        "peak_rss_ratio": round(last["peak_rss_export_mb"] / first["peak_rss_export_mb"], 2),
    }
    print(json.dumps({"benchmark": "export_memory", "rows": rows, "growth": growth}))


if __name__ == "__main__":
    main()
