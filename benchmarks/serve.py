"""HTTP API throughput: requests/s and p50/p99 latency of ``GET /recommend`` at 1, 8 and 32 concurrent clients.

    python benchmarks/serve.py                                  # trains a demo run in a temporary workspace
    python benchmarks/serve.py --workspace WS --run RUN_ID      # any trained run
    python benchmarks/serve.py --concurrency 1 8 32 --seconds 10 --k 10 [--explain]

``python -m recsys serve`` is started as a process on a free port of 127.0.0.1 (as a person would run it);
after a warm-up, each concurrency level runs that many client threads for ``--seconds``, each thread
sending ``/recommend`` requests one after the other (urllib, a new connection per request, as simple
clients do) for users drawn at random from the run's users. Latency is per request, measured in the
client; requests/s is completed requests over the wall time of the level. The server is stopped with
SIGTERM at the end. Client threads share the machine's cores with the server, so on a small machine
the figures are a floor for what a separate client would see.

The last line printed is one JSON object with every row; the table above it is for people.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def recsys(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "recsys", *args], cwd=REPO_ROOT, text=True, capture_output=True)
    if done.returncode != 0:
        sys.exit(f"python -m recsys {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done


def demo_run(root: Path, epochs: int) -> tuple[Path, str]:
    """A demo catalogue (the CLI's default size) trained by the fusion model with TF-IDF text."""
    workspace = root / "ws"
    recsys("demo", "--out", str(root / "bundle"), "--import", "--workspace", str(workspace), "--quiet")
    recsys(
        "train",
        "--workspace",
        str(workspace),
        "--run-id",
        "bench-serve",
        "--text-encoder",
        "tfidf",
        "--epochs",
        str(epochs),
        "--baselines",
        "--no-final-model",
        "--device",
        "cpu",
        "--quiet",
    )
    return workspace, "bench-serve"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def level(base: str, users: list[str], clients: int, seconds: float, k: int, explain: bool) -> dict:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = threading.Event()

    def client(n: int) -> None:
        rng = random.Random(n)
        while not stop.is_set():
            query = urllib.parse.urlencode({"user": rng.choice(users), "k": k, "explain": str(explain).lower()})
            started = time.perf_counter()
            status = get(f"{base}/recommend?{query}")
            latencies[n].append(time.perf_counter() - started)
            errors[n] += status != 200

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    every = [x for per in latencies for x in per]
    return {
        "clients": clients,
        "requests": len(every),
        "errors": sum(errors),
        "seconds": round(wall, 2),
        "requests_per_s": round(len(every) / wall, 1),
        "p50_ms": round(percentile(every, 50) * 1000, 2),
        "p99_ms": round(percentile(every, 99) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=None, help="workspace of the run (default: a fresh demo workspace)")
    parser.add_argument("--run", default=None, help="run id to serve (with --workspace)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the demo run when one is trained")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each level (default 10)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=180.0,
        help="seconds the server may take to load the model and build its ANN index (default 180)",
    )
    parser.add_argument("--explain", action="store_true", help="ask for explanations too (much slower)")
    args = parser.parse_args()
    if (args.workspace is None) != (args.run is None):
        parser.error("give --workspace and --run together (or neither, for a demo run)")

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        if args.run is None:
            started = time.perf_counter()
            workspace, run = demo_run(Path(tmp), args.epochs)
            print(f"trained demo run {run} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        else:
            workspace, run = Path(args.workspace), args.run
        ids = json.loads((workspace / "runs" / run / "model" / "ids.json").read_text())
        users = [str(u) for u in ids["user_ids"]]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "recsys",
                "serve",
                run,
                "--port",
                str(port),
                "--workspace",
                str(workspace),
                "--log-level",
                "warning",
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + args.startup_timeout
            while True:
                if server.poll() is not None:
                    sys.exit(f"the server exited:\n{server.stderr.read()[-3000:]}")
                try:
                    if get(base + "/health") == 200:
                        break
                except (urllib.error.URLError, ConnectionError):
                    pass
                if time.monotonic() > deadline:
                    sys.exit(f"the server did not come up in {args.startup_timeout:g} s")
                time.sleep(0.2)
            with urllib.request.urlopen(base + "/health") as response:
                health = json.loads(response.read())
            for user in users[:20]:  # warm-up (first calls fill lazy caches)
                get(f"{base}/recommend?" + urllib.parse.urlencode({"user": user, "k": args.k}))
            rows = [level(base, users, clients, args.seconds, args.k, args.explain) for clients in args.concurrency]
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()

    print(
        f"run {health['run_id']} ({health['model']}, {health['items']:,} items, {health['users']:,} users), "
        f"GET /recommend k={args.k}{' explain=true' if args.explain else ''}, {os.cpu_count()} CPUs"
    )
    print(f"{'clients':>8} {'requests':>9} {'errors':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for row in rows:
        print(
            f"{row['clients']:>8} {row['requests']:>9} {row['errors']:>7} {row['requests_per_s']:>8} "
            f"{row['p50_ms']:>8} {row['p99_ms']:>8}"
        )
    print(
        json.dumps(
            {
                "benchmark": "serve",
                "run": health["run_id"],
                "model": health["model"],
                "items": health["items"],
                "users": health["users"],
                "k": args.k,
                "explain": args.explain,
                "cpus": os.cpu_count(),
                "server_exit": server.returncode,
                "levels": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
