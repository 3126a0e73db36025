"""How fast the Recommendations page answers when the user changes, after the model is loaded.

Runs the real page with Streamlit's AppTest against a workspace holding a trained run on the demo
catalogue (one is trained here if none exists). Prints the time of a rerun that switches to another
user, against a rerun that changes nothing (the page's fixed cost) in the same process, as a ratio,
so the figure means the same on a busy machine.

    python benchmarks/app_latency.py [--workspace DIR] [--switches 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def ensure_run(workspace_dir: Path) -> None:
    from recsys.train.run import RunConfig, list_runs, train_run
    from recsys.workspace import Workspace, ensure_demo_dataset

    workspace = Workspace(workspace_dir)
    if any(r["status"]["state"] == "finished" for r in list_runs(workspace)):
        return
    ensure_demo_dataset(workspace)
    print("training a demo run for the measurement (a few minutes on a CPU)...", flush=True)
    train_run(workspace, RunConfig(dataset="demo", epochs=10, text_encoder="tfidf", baselines=["mostpop"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=str(REPO_ROOT / "workspace"))
    parser.add_argument("--switches", type=int, default=10)
    args = parser.parse_args(argv)
    os.environ["RECSYS_WORKSPACE"] = str(Path(args.workspace).resolve())
    ensure_run(Path(args.workspace))

    from streamlit.testing.v1 import AppTest

    os.chdir(REPO_ROOT)
    app = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=600)
    app.run()
    app.switch_page("pages/recommendations.py").run()  # first run: loads the model (not measured)
    users = app.selectbox(key="rec_user").options
    unchanged, switched = [], []
    for n in range(args.switches):
        started = time.perf_counter()
        app.run()
        unchanged.append(time.perf_counter() - started)
        started = time.perf_counter()
        app.selectbox(key="rec_user").select(users[(n + 1) % len(users)]).run()
        switched.append(time.perf_counter() - started)
        if app.exception:
            raise SystemExit(f"the page raised: {app.exception}")
    base, switch = statistics.median(unchanged), statistics.median(switched)
    print(f"rerun without a change: median {base:.3f} s; switching user: median {switch:.3f} s "
          f"(max {max(switched):.3f} s); ratio {switch / base:.2f}x over {args.switches} switches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
