"""CLI command of the serving layer: ``serve`` (the API itself is :mod:`recsys.serve`, imported only here).

python -m recsys serve RUN [--host 127.0.0.1] [--port 8000] [--ann auto|on|off] [--workspace WS]
"""

from __future__ import annotations

import argparse
import signal
import time
from typing import Any

from .cli import CommandError, _say, _workspace, command


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id (folder name under workspace/runs)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 for every interface)",
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn's log level (default info; debug also logs each request)",
    )
    p.add_argument(
        "--ann",
        default="auto",
        choices=("auto", "on", "off"),
        help="ANN retrieval stage for /recommend (faiss; exact scores of its candidates): auto = for models whose "
        "score is a user . item product (BPR-MF, LightGCN, content) from 20,000 items; on = always; off = never",
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: requests are scored one at a time and are small, and "
        "more threads spin against the server's own; 1 is 5-8x faster per request on 2 cores)",
    )


@command(
    "serve", "serve a trained run over HTTP (FastAPI): recommend, similar, recommend-new, explain", _serve_arguments
)
def cmd_serve(args: argparse.Namespace) -> dict[str, Any]:
    if not 0 < args.port < 65536:
        raise CommandError(f"--port must be between 1 and 65535, not {args.port}")
    try:
        import uvicorn

        from .serve import ServedRun, check_servable, create_app
    except ImportError as exc:
        raise CommandError(f"serving needs FastAPI and uvicorn ({exc}); pip install -r requirements.txt") from exc

    if args.torch_threads < 1:
        raise CommandError(f"--torch-threads must be at least 1, not {args.torch_threads}")
    import torch

    torch.set_num_threads(args.torch_threads)
    workspace = _workspace(args)
    check_servable(workspace, args.run)
    served = ServedRun(workspace, args.run, ann=args.ann)  # CommandError / ModelDamaged before any port is bound
    app = create_app(workspace, args.run, served=served)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.log_level == "debug"
        )
    )
    host = f"[{args.host}]" if ":" in args.host else args.host
    _say(
        args,
        f"serving run {served.run_id} ({served.model.name}, {served.model.n_items:,} items, "
        f"{served.model.n_users:,} users) at http://{host}:{args.port}  (API docs: /docs; stop: Ctrl-C)",
    )
    if served.retrieval is not None:
        index = served.retrieval
        _say(
            args,
            f"ANN retrieval: {index.kind} index over {index.n_indexed:,} items, built in {index.build_seconds:.1f} s",
        )
    # uvicorn stops on SIGINT/SIGTERM (stops accepting, finishes the requests in flight) and then raises the
    # signal again with the handlers it found: these record it, so that a stop is an ordinary exit 0
    stopped_by: list[str] = []
    previous = {
        sig: signal.signal(sig, lambda number, _frame: stopped_by.append(signal.Signals(number).name))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    started = time.perf_counter()
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits 1 when it cannot bind (port in use, address not here)
        raise CommandError(
            f"could not serve on {args.host}:{args.port} (port in use, or not an address of this machine?)"
        ) from exc
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise CommandError(f"could not serve on {args.host}:{args.port}")
    _say(args, f"stopped ({stopped_by[0] if stopped_by else 'shut down'})")
    return {
        "run_id": served.run_id,
        "url": f"http://{host}:{args.port}",
        "stopped_by": stopped_by[0] if stopped_by else None,
        "seconds": round(time.perf_counter() - started, 2),
    }
