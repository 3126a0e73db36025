"""Fit time of the fusion model against EASE's (L2 chosen on valid), in one process, repeated.

Shared machines are noisy (a fit can take 1.5x longer for no reason of its own), so each model is fitted
``--repeats`` times, alternating, and the table gives the fastest and the median wall-clock seconds, the
process CPU seconds, and the fusion / EASE ratio of the fastest fits. The fusion model's stages (the
messages it reports while fitting: the EASE L2 search, experts, cloze sample, gate rounds, calibration) are
timed from the first repeat, so a regression points at its stage. The first fit of a process also pays
one-time library imports (torch's optimiser imports its compiler on first use): the first repeat is shown
apart from the rest.

    python benchmarks/fit_time.py [--dataset NAME] [--workspace DIR] [--repeats 3] [--json]

Same split as ``benchmarks/quality.py`` (P1, seed 2026); the test NDCG@20 of each model's last fit is
printed beside it, so a speed-up that costs accuracy shows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from quality import DATASET, evaluate, load  # noqa: E402

from recsys.models import get_model  # noqa: E402
from recsys.train.data import prepare_data  # noqa: E402
from recsys.workspace import Workspace  # noqa: E402


class StageClock:
    """Collects the fusion model's stage messages with the seconds since the fit began."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.stages: list[tuple[float, str]] = []
        self.rounds = 0

    def on_stage(self, message: str) -> None:
        self.stages.append((time.perf_counter() - self.started, message))

    def on_epoch_end(self, **_: Any) -> None:
        self.rounds += 1
        self.stages.append((time.perf_counter() - self.started, f"gate round {self.rounds}"))


def timed_fit(name: str, prepared, clock: StageClock | None = None) -> tuple[Any, float, float]:
    model = get_model(name)
    wall, cpu = time.perf_counter(), time.process_time()
    if clock is not None:
        clock.started = wall
        model.fit(prepared.data, callbacks=[clock])
    else:
        model.fit(prepared.data)
    return model, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=DATASET)
    parser.add_argument("--workspace", default=str(REPO_ROOT / "workspace"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    workspace = Workspace(args.workspace)
    bundle, features = load(workspace, args.dataset)
    catalogue = bundle.items["item_id"].to_numpy(str)
    prepared = prepare_data(bundle.interactions, item_features=features, catalogue_ids=catalogue)
    print(f"P1: {prepared.summary}", flush=True)

    times: dict[str, dict[str, list[float]]] = {m: {"wall": [], "cpu": []} for m in ("fusion", "ease")}
    clock = StageClock()
    last: dict[str, Any] = {}
    for repeat in range(args.repeats):
        for name in ("fusion", "ease"):
            model, wall, cpu = timed_fit(name, prepared, clock if (name == "fusion" and repeat == 0) else None)
            times[name]["wall"].append(wall)
            times[name]["cpu"].append(cpu)
            last[name] = model
            print(f"repeat {repeat + 1}: {name} {wall:.2f} s wall, {cpu:.2f} s CPU", flush=True)

    print("\nfusion stages (first repeat; seconds since the fit began)")
    previous = 0.0
    for at, message in clock.stages:
        print(f"  {at:7.2f}  (+{at - previous:5.2f})  {message}")
        previous = at

    summary: dict[str, Any] = {"dataset": args.dataset, "repeats": args.repeats, "models": {}}
    print(f"\n{'model':<8} {'first':>7} {'fastest':>8} {'median':>7} {'CPU min':>8} {'test ndcg@20':>13}")
    for name, measured in times.items():
        walls = measured["wall"]
        later = walls[1:] or walls
        ndcg = evaluate(last[name].score, prepared)["ndcg@20"]
        row = {
            "first_s": walls[0],
            "fastest_s": min(later),
            "median_s": statistics.median(later),
            "cpu_min_s": min(measured["cpu"][1:] or measured["cpu"]),
            "test_ndcg@20": ndcg,
        }
        summary["models"][name] = row
        print(
            f"{name:<8} {row['first_s']:7.2f} {row['fastest_s']:8.2f} {row['median_s']:7.2f} "
            f"{row['cpu_min_s']:8.2f} {ndcg:13.4f}"
        )
    ratio = summary["models"]["fusion"]["fastest_s"] / summary["models"]["ease"]["fastest_s"]
    summary["fusion_over_ease_fastest"] = ratio
    summary["fusion_stages"] = [{"at_s": at, "message": message} for at, message in clock.stages]
    print(f"\nfusion fit / EASE fit (fastest repeats after the first): {ratio:.2f}x")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
