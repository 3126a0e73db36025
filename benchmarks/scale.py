"""Beyond one laptop: time and peak memory of every stage on generated catalogues of growing size.

For each size (items / interactions; users = interactions / ``--interactions-per-user``) a demo catalogue
is generated without pictures (``generate_demo_bundle(pictures=False)``; when the generator's dense
users x items utility matrix would be too large, the same generative story is run on blocks of users,
see :func:`make_catalogue`), and every stage runs in a fresh subprocess so that its peak RSS is its own
(``os.wait4``'s ``ru_maxrss``):

* ``import``    python -m recsys import BUNDLE --name scale-N
* ``features``  python -m recsys features scale-N --text-encoder tfidf --modalities text attributes
* ``train``     python -m recsys train --data scale-N --text-encoder tfidf --modalities behaviour text attributes
                --epochs 1 --baselines --no-final-model --eval-users 5000 --device cpu
* ``recommend`` a subprocess loads the run's model once (recsys.train.records.load_run_model) and times
                ``model.recommend(user, k=10)`` for ``--latency-users`` users: p50 / p99 ms
* ``export``    python -m recsys export RUN --k 10 --out recs.parquet: users/s

A stage that runs past ``--stage-timeout`` seconds is killed and recorded as "did not finish in N s"; one
whose resident memory passes ``--memory-cap-mb`` (default: 80 % of the memory available at start) is
killed and recorded as such, so the benchmark never takes the machine down. A stage whose input is
missing (its predecessor failed) is "skipped".

    python benchmarks/scale.py                         # 10k/100k, 50k/500k, 100k/1M
    python benchmarks/scale.py --sizes 10000:100000    # one size
    python benchmarks/scale.py --sizes 10k:100k 100k:1M --stage-timeout 900

Prints a table (size x stage: seconds, peak RSS MB), the RSS growth per 10x items of every stage that
finished at two sizes, and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ("generate", "import", "features", "train", "recommend", "export")
DEFAULT_SIZES = ("10k:100k", "50k:500k", "100k:1M")
DENSE_CELLS_MAX = 20_000_000  # users x items above which the catalogue is generated in user blocks
BLOCK_CELLS = 10_000_000
CANDIDATES_ABOVE = 200_000  # items above which each user block draws from a sample of the catalogue
BLOCK_CANDIDATES = 50_000


def _count(text: str) -> int:
    text = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)


def parse_size(text: str) -> tuple[int, int]:
    items, _, inter = text.partition(":")
    if not inter:
        raise argparse.ArgumentTypeError(f"a size is ITEMS:INTERACTIONS (e.g. 10k:100k), got {text!r}")
    return _count(items), _count(inter)


def _label(n: int) -> str:
    if n >= 1_000_000 and n % 100_000 == 0:
        return f"{n / 1_000_000:g}M"
    if n >= 1_000 and n % 100 == 0:
        return f"{n / 1_000:g}k"
    return str(n)


def _mem_available_mb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 8192.0


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants (Linux /proc), in MB."""
    total, todo, seen = 0.0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
                    break
            for task in Path(f"/proc/{p}/task").iterdir():
                kids = (task / "children").read_text().split()
                todo.extend(int(k) for k in kids)
        except (OSError, ValueError):
            continue
    return total


# --------------------------------------------------------------------------------------------------
# Catalogue
# --------------------------------------------------------------------------------------------------


def make_catalogue(out: Path, n_items: int, n_interactions: int, n_users: int, seed: int = 2026) -> str:
    """Write a picture-free demo bundle into ``out``; return how ("generate_demo_bundle" or "blocks of N users").

    ``generate_demo_bundle`` draws a dense users x items utility (several float64 matrices of that shape),
    which does not fit in memory at 100k items x 50k users. Above ``DENSE_CELLS_MAX`` cells the same
    generative story (the demo's own items, users and interaction sampler) runs on blocks of users, each
    block with its own seed and its share of the interactions: the same kind of catalogue, not the same
    bytes as one call would give. No ground truth is written in that case (the benchmark does not need it).
    """
    from recsys.data import demo

    if n_users * n_items <= DENSE_CELLS_MAX:
        demo.generate_demo_bundle(
            out, n_users=n_users, n_items=n_items, n_interactions=n_interactions, seed=seed, pictures=False
        )
        return "generate_demo_bundle"

    import numpy as np
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    items, _, il = demo._make_items(n_items, seed)
    users, _, ul = demo._make_users(n_users, seed)
    block = max(
        len(demo.SEGMENTS), BLOCK_CELLS // min(n_items, BLOCK_CANDIDATES if n_items > CANDIDATES_ABOVE else n_items)
    )
    user_ids, item_ids = list(users["user_id"]), list(items["item_id"])
    bounds = list(range(0, n_users, block)) + [n_users]
    # Interactions split across blocks in proportion to their users (the last block takes the rounding).
    shares = [round(n_interactions * (b1 - b0) / n_users) for b0, b1 in zip(bounds[:-1], bounds[1:])]
    shares[-1] = n_interactions - sum(shares[:-1])
    parts = []
    for j, (b0, b1) in enumerate(zip(bounds[:-1], bounds[1:])):
        sl = {key: value[b0:b1] for key, value in ul.items()}
        block_items, block_il = item_ids, il
        if n_items > CANDIDATES_ABOVE:
            # users x items random draws cost ~1e10 cells at a million items: each block of users chooses
            # among its own popularity-weighted sample of the catalogue (the same story on fewer items)
            rng = np.random.default_rng(seed + 104729 * (j + 1))
            weight = np.exp(il["log_pop"] - il["log_pop"].max())
            pick = np.sort(rng.choice(n_items, BLOCK_CANDIDATES, replace=False, p=weight / weight.sum()))
            block_items = [item_ids[i] for i in pick]
            block_il = {key: value[pick] for key, value in il.items()}
        inter, _ = demo._make_interactions(shares[j], seed + 7919 * (j + 1), user_ids[b0:b1], block_items, sl, block_il)
        parts.append(inter)
    inter = pd.concat(parts, ignore_index=True)
    assert len(inter) == n_interactions, (len(inter), n_interactions)
    del parts
    items = items.drop(columns=["image_file"])
    schema = {**demo.DEMO_SCHEMA, "items": {c: r for c, r in demo.DEMO_SCHEMA["items"].items() if c != "image_file"}}
    demo._write_csv(items, out / "items.csv", float_format="%.2f")
    demo._write_csv(inter, out / "interactions.csv")
    demo._write_csv(users, out / "users.csv")
    (out / "schema.json").write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
    sampled = (
        f", each drawing from {BLOCK_CANDIDATES:,} popularity-weighted items" if n_items > CANDIDATES_ABOVE else ""
    )
    return f"blocks of {block} users{sampled}"


# --------------------------------------------------------------------------------------------------
# Stage runner: one fresh subprocess per stage
# --------------------------------------------------------------------------------------------------


def run_stage(cmd: list[str], log: Path, timeout: float, cap_mb: float, env: dict) -> dict:
    """Run ``cmd``; return seconds, peak RSS (MB, from wait4's ru_maxrss), status and the last JSON line."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=str(ROOT), env=env, start_new_session=True
        )
    status, seen_rss = "ok", 0.0
    while True:
        pid, wstatus, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        elapsed = time.perf_counter() - t0
        rss = _tree_rss_mb(proc.pid)
        seen_rss = max(seen_rss, rss)
        reason = None
        if elapsed > timeout:
            reason = f"did not finish in {timeout:g} s"
        elif rss > cap_mb:
            reason = f"killed: RSS {rss:.0f} MB over the {cap_mb:.0f} MB cap"
        if reason:
            status = reason
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _, wstatus, ru = os.wait4(proc.pid, 0)
            break
        time.sleep(0.2)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(wstatus)
    peak = max(ru.ru_maxrss / 1024, seen_rss)  # ru_maxrss is in KB on Linux
    if status == "ok" and proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        status = f"failed (exit {proc.returncode}): " + " | ".join(tail)[-300:]
    last_json = None
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                last_json = json.loads(line)
                break
            except ValueError:
                continue
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak, 1), "status": status, "json": last_json}


def latency_worker(workspace: str, run_id: str, n_users: int, k: int) -> None:
    """In a fresh process: load the run's model once, time recommend(user, k) for n_users users."""
    import numpy as np

    from recsys.train.records import load_run_model

    t0 = time.perf_counter()
    model = load_run_model(Path(workspace) / "runs" / run_id)
    load_s = time.perf_counter() - t0
    users = [str(u) for u in model.user_ids]
    rng = np.random.default_rng(0)
    pick = [users[i] for i in rng.choice(len(users), size=min(n_users, len(users)), replace=False)]

    def timed() -> tuple[list[float], list[list[tuple[str, float]]]]:
        model.recommend(pick[0], k=k)  # warm-up (lazy caches), not timed
        times, lists = [], []
        for u in pick:
            t = time.perf_counter()
            lists.append(model.recommend(u, k=k))
            times.append((time.perf_counter() - t) * 1000)
        return times, lists

    times, exact_lists = timed()
    out = {
        "load_s": round(load_s, 3),
        "users": len(times),
        "k": k,
        "p50_ms": round(float(np.percentile(times, 50)), 3),
        "p99_ms": round(float(np.percentile(times, 99)), 3),
    }
    if model.retrieval_vectors() is not None:  # an inner-product model: the same users through the ANN index
        t0 = time.perf_counter()
        index = model.use_retrieval()
        out["index_build_s"] = round(time.perf_counter() - t0, 2)
        out["index_kind"] = getattr(index, "kind", type(index).__name__)
        ann_times, ann_lists = timed()
        out["ann_p50_ms"] = round(float(np.percentile(ann_times, 50)), 3)
        out["ann_p99_ms"] = round(float(np.percentile(ann_times, 99)), 3)
        # share of the exact top-k the ANN path returns (same users); and the share of its items that score
        # at least the exact k-th score (ANN scores are exact re-scores): items tied with the exact list's
        # count there, not in the first figure
        out["ann_recall_at_k"] = round(
            float(
                np.mean(
                    [
                        len({i for i, _ in a} & {i for i, _ in e}) / max(len(e), 1)
                        for a, e in zip(ann_lists, exact_lists)
                    ]
                )
            ),
            4,
        )
        out["ann_score_recall_at_k"] = round(
            float(
                np.mean(
                    [
                        np.mean([score >= min(s for _, s in e) - 1e-6 for _, score in a]) if a and e else 1.0
                        for a, e in zip(ann_lists, exact_lists)
                    ]
                )
            ),
            4,
        )
    print(json.dumps(out))


def bench_size(n_items: int, n_inter: int, args, root: Path, env: dict) -> dict:
    label = f"{_label(n_items)}/{_label(n_inter)}"
    n_users = max(4, n_inter // args.interactions_per_user)
    name = f"scale-{_label(n_items).lower()}"
    here = root / name
    here.mkdir(parents=True, exist_ok=True)
    ws, bundle, run_id = here / "workspace", here / "bundle", f"{name}-{args.model}"
    res: dict = {"size": label, "items": n_items, "interactions": n_inter, "users": n_users, "stages": {}}
    py = sys.executable
    stages = res["stages"]
    cap = args.memory_cap_mb
    base = [py, "-m", "recsys"]
    common = ["--workspace", str(ws), "--json", "--quiet"]

    print(f"[{label}] generating ({n_users} users)", flush=True)
    stages["generate"] = run_stage(
        [py, str(Path(__file__).resolve()), "--_generate", str(bundle), str(n_items), str(n_inter), str(n_users)],
        here / "generate.log",
        args.stage_timeout,
        cap,
        env,
    )
    gen = stages["generate"]["json"] or {}
    res["generator"] = gen.get("how")

    plan = [
        ("import", base + ["import", str(bundle), "--name", name] + common),
        (
            "features",
            base
            + ["features", name, "--text-encoder", "tfidf", "--modalities", "text", "attributes", "--device", "cpu"]
            + common,
        ),
        (
            "train",
            base
            + [
                "train",
                "--data",
                name,
                "--run-id",
                run_id,
                "--model",
                args.model,
                "--text-encoder",
                "tfidf",
                "--modalities",
                *(["behaviour"] if args.model == "fusion" else []),
                "text",
                "attributes",
                "--epochs",
                "1",
                "--baselines",
                "--no-final-model",
                "--eval-users",
                str(args.eval_users),
                "--device",
                "cpu",
            ]
            + common,
        ),
        (
            "recommend",
            [py, str(Path(__file__).resolve()), "--_latency", str(ws), run_id, str(args.latency_users), "10"],
        ),
        ("export", base + ["export", run_id, "--k", "10", "--out", str(here / "recs.parquet")] + common),
    ]
    failed = stages["generate"]["status"] != "ok"
    for stage, cmd in plan:
        if stage in args.skip:
            stages[stage] = {"seconds": None, "peak_rss_mb": None, "status": "not run (--skip)", "json": None}
            continue
        if failed:
            stages[stage] = {"seconds": None, "peak_rss_mb": None, "status": "skipped", "json": None}
            continue
        print(f"[{label}] {stage} ...", flush=True)
        stages[stage] = run_stage(cmd, here / f"{stage}.log", args.stage_timeout, cap, env)
        s = stages[stage]
        print(f"[{label}] {stage}: {s['seconds']} s, {s['peak_rss_mb']} MB, {s['status']}", flush=True)
        failed = s["status"] != "ok"
    rec = stages["recommend"].get("json") or {}
    res["recommend_p50_ms"], res["recommend_p99_ms"] = rec.get("p50_ms"), rec.get("p99_ms")
    res["model_load_s"] = rec.get("load_s")
    for key in ("index_kind", "index_build_s", "ann_p50_ms", "ann_p99_ms", "ann_recall_at_k", "ann_score_recall_at_k"):
        if key in rec:
            res[key] = rec[key]
    exp = stages["export"]
    if exp["status"] == "ok" and exp["seconds"]:
        info = exp.get("json") or {}
        exported = int(info.get("users") or n_users)
        # export's own clock (scoring + writing), and the whole process (imports and model load too)
        if info.get("seconds"):
            res["export_users_per_s"] = round(exported / max(float(info["seconds"]), 1e-9), 1)
        res["export_users_per_s_incl_startup"] = round(exported / exp["seconds"], 1)
    if not args.keep:
        shutil.rmtree(here, ignore_errors=True)
    return res


def _fmt(stage: dict) -> str:
    if stage["status"] == "ok":
        return f"{stage['seconds']:.1f} s / {stage['peak_rss_mb']:.0f} MB"
    if stage["status"] == "skipped" or stage["peak_rss_mb"] is None:
        return stage["status"]
    return f"{stage['status'][:60]} (RSS {stage['peak_rss_mb']:.0f} MB)"


def growth(results: list[dict]) -> dict:
    """Peak-RSS growth per 10x items, per stage: (rss_b / rss_a) ** (1 / log10(items_b / items_a)) between
    the smallest and the largest size at which the stage finished."""
    out = {}
    for stage in STAGES:
        ok = [(r["items"], r["stages"][stage]["peak_rss_mb"]) for r in results if r["stages"][stage]["status"] == "ok"]
        if len(ok) >= 2 and ok[-1][0] > ok[0][0]:
            (ia, ra), (ib, rb) = ok[0], ok[-1]
            out[stage] = round((rb / ra) ** (1.0 / math.log10(ib / ia)), 2)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_generate"]:
        out, n_items, n_inter, n_users = argv[1], int(argv[2]), int(argv[3]), int(argv[4])
        how = make_catalogue(Path(out), n_items, n_inter, n_users)
        print(json.dumps({"how": how}))
        return 0
    if argv[:1] == ["--_latency"]:
        latency_worker(argv[1], argv[2], int(argv[3]), int(argv[4]))
        return 0

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--sizes",
        nargs="+",
        type=parse_size,
        default=[parse_size(s) for s in DEFAULT_SIZES],
        help="ITEMS:INTERACTIONS, e.g. 10k:100k 100k:1M (default: %s)" % " ".join(DEFAULT_SIZES),
    )
    ap.add_argument("--interactions-per-user", type=int, default=20, help="users = interactions / this (default 20)")
    ap.add_argument(
        "--stage-timeout",
        type=float,
        default=900.0,
        help="seconds after which a stage is killed and recorded as unfinished (default 900)",
    )
    ap.add_argument(
        "--memory-cap-mb",
        type=float,
        default=None,
        help="kill a stage whose RSS passes this (default: 80%% of MemAvailable at start)",
    )
    ap.add_argument("--latency-users", type=int, default=50)
    ap.add_argument(
        "--eval-users",
        type=int,
        default=5000,
        help="the train stage evaluates on a seeded sample of this many users (0 = all; default 5000)",
    )
    ap.add_argument(
        "--threads", type=int, default=None, help="OMP/MKL/torch threads of every stage (default: leave as is)"
    )
    ap.add_argument(
        "--model",
        choices=("fusion", "content"),
        default="fusion",
        help="the model the train stage fits (content: training-free, an inner product, so the recommend "
        "stage also times its ANN index; for catalogues where the fusion fit does not fit on a CPU)",
    )
    ap.add_argument(
        "--skip",
        nargs="+",
        default=[],
        choices=("recommend", "export"),
        help="stages not to run (e.g. export at 1M items: every user scored against every item)",
    )
    ap.add_argument("--workdir", default=None, help="where the bundles and workspaces go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the bundles, workspaces and logs")
    args = ap.parse_args(argv)
    if args.memory_cap_mb is None:
        args.memory_cap_mb = 0.8 * _mem_available_mb()

    env = dict(os.environ, RECSYS_TELEMETRY="0", TQDM_DISABLE="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if args.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(args.threads)
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="recsys-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    print(
        f"workdir {root}; stage timeout {args.stage_timeout:g} s; memory cap {args.memory_cap_mb:.0f} MB; "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )

    results = []
    for n_items, n_inter in args.sizes:
        results.append(bench_size(n_items, n_inter, args, root, env))

    head = ["size (items/inter, users)"] + list(STAGES)
    rows = [[f"{r['size']} ({_label(r['users'])} users)"] + [_fmt(r["stages"][s]) for s in STAGES] for r in results]
    widths = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]
    print()
    print("seconds / peak RSS MB per stage (each stage a fresh process)")
    for row in [head] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    for r in results:
        print(
            f"{r['size']}: recommend p50 {r['recommend_p50_ms']} ms, p99 {r['recommend_p99_ms']} ms "
            f"(model load {r['model_load_s']} s); export {r.get('export_users_per_s')} users/s "
            f"({r.get('export_users_per_s_incl_startup')} with process start); "
            f"generator: {r.get('generator')}"
        )
        if r.get("ann_p50_ms") is not None:
            print(
                f"{r['size']}: ANN ({r['index_kind']}, built in {r['index_build_s']} s) p50 {r['ann_p50_ms']} ms, "
                f"p99 {r['ann_p99_ms']} ms, top-10 recall vs exact {r['ann_recall_at_k']} (items scoring at least "
                f"the exact 10th: {r.get('ann_score_recall_at_k')})"
            )
    g = growth(results)
    if g:
        print("peak RSS growth per 10x items: " + ", ".join(f"{k} x{v}" for k, v in g.items()))
    for r in results:
        for s in r["stages"].values():
            s.pop("json", None)
    print(
        json.dumps(
            {
                "benchmark": "scale",
                "results": results,
                "rss_growth_per_10x_items": g,
                "stage_timeout_s": args.stage_timeout,
                "memory_cap_mb": round(args.memory_cap_mb),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
