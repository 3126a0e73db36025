"""How fast the studio answers a user, on the demo catalogue, after the model is loaded.

Runs the real pages with Streamlit's AppTest against a workspace holding a trained run on the demo
catalogue (one is trained here if none exists), and measures, in one process:

* user switch: a Recommendations rerun that switches to another user, against a rerun that changes
  nothing (the page's fixed cost), as a ratio, so the figure means the same on a busy machine;
* "Why this?": the explanation behind one card's popover (``recsys.explain.explain`` with the page's
  shared context, first time for that user and item), median over the cards of several users;
* the CSV download: every card's explanation of one list plus the CSV bytes (first time for that list);
* the Attention page: its first render (cold caches for that run) and a rerun.

Targets (issue 13): Why this <= 0.5 s per card, CSV <= 2 s, user switch <= 1 s, Attention <= 3 s.

    python benchmarks/app_latency.py [--workspace DIR] [--switches 10] [--json]
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
    if any(r.state == "finished" for r in list_runs(workspace)):
        return
    ensure_demo_dataset(workspace)
    print("training a demo run for the measurement (a few minutes on a CPU)...", flush=True)
    train_run(
        workspace, RunConfig(dataset="demo", fusion_options={"epochs": 10}, text_encoder="tfidf", baselines=["mostpop"])
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=str(REPO_ROOT / "workspace"))
    parser.add_argument("--switches", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    os.environ["RECSYS_WORKSPACE"] = str(Path(args.workspace).resolve())
    ensure_run(Path(args.workspace))

    from streamlit.testing.v1 import AppTest

    os.chdir(REPO_ROOT)
    app = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=600)
    app.run()
    app.switch_page("app_pages/recommendations.py").run()  # first run: loads the model (not measured)
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
    print(
        f"rerun without a change: median {base:.3f} s; switching user: median {switch:.3f} s "
        f"(max {max(switched):.3f} s); ratio {switch / base:.2f}x over {args.switches} switches"
    )
    why, csv = explanation_latency(6)
    print(
        f"'Why this?': median {statistics.median(why):.3f} s per card (max {max(why):.3f} s, {len(why)} cards); "
        f"CSV of a 10-item list: median {statistics.median(csv):.3f} s (max {max(csv):.3f} s)"
    )
    started = time.perf_counter()
    app.switch_page("app_pages/attention.py").run()
    attention_first = time.perf_counter() - started
    started = time.perf_counter()
    app.run()
    attention_again = time.perf_counter() - started
    if app.exception:
        raise SystemExit(f"the Attention page raised: {app.exception}")
    print(f"Attention page: first render {attention_first:.3f} s, rerun {attention_again:.3f} s")
    if args.json:
        import json

        print(
            json.dumps(
                {
                    "rerun_s": base,
                    "user_switch_s": switch,
                    "user_switch_max_s": max(switched),
                    "why_this_s": statistics.median(why),
                    "why_this_max_s": max(why),
                    "csv_s": statistics.median(csv),
                    "attention_first_s": attention_first,
                    "attention_rerun_s": attention_again,
                }
            )
        )
    return 0


def explanation_latency(n_users: int) -> tuple[list[float], list[float]]:
    """Seconds per "Why this?" (first explanation of a user's card) and per CSV of a 10-item list, with the
    page's own context and export (each user's list computed fresh: nothing cached from the first part)."""
    import pandas as pd

    from recsys.explain import ExplainContext, explain
    from recsys.export import csv_bytes
    from recsys.models import Recommender
    from recsys.train.run import list_runs
    from recsys.workspace import Workspace

    workspace = Workspace()
    run = next(r for r in list_runs(workspace) if r.state == "finished")
    model = Recommender.load(run.path / "model")
    bundle = workspace.load_dataset(run.dataset)
    context = ExplainContext(
        model,
        bundle.items,
        bundle.schema.items,
        separator=bundle.schema.multi_label_separator,
        interactions=bundle.interactions,
        rating_column=bundle.schema.rating_column,
    )
    why, csv = [], []
    users = [str(u) for u in model.user_ids[:: max(1, model.n_users // n_users)][:n_users]]
    for n, user in enumerate(users):
        ranked = model.recommend(user, k=10)
        if n % 2 == 0:  # "Why this?" on each card
            for item, _ in ranked:
                started = time.perf_counter()
                explain(model, user, item, context=context)
                why.append(time.perf_counter() - started)
        else:  # the CSV of the whole list
            started = time.perf_counter()
            rows = [
                {
                    "rank": r,
                    "item_id": item,
                    "score": score,
                    "why": explain(model, user, item, context=context).to_dict().get("sentence", ""),
                }
                for r, (item, score) in enumerate(ranked, start=1)
            ]
            csv_bytes(pd.DataFrame(rows))
            csv.append(time.perf_counter() - started)
    return why, csv


if __name__ == "__main__":
    sys.exit(main())
