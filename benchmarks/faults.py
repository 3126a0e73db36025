"""Fault injection: kill import, training, resume, deletion and forget at random points; check the workspace.

    python benchmarks/faults.py [--kills 60] [--seed 7] [--root /tmp/faults] [--json]

A workspace gets a small catalogue (two demo bundles of different sizes imported in turn under one name,
so a dataset mixed from both is detectable) and a finished run. Then, ``--kills`` times, one operation
is started as its own process and SIGKILLed after a random delay drawn over that operation's measured
duration (so kills land everywhere from start-up to the last rename):

- ``import``   ``python -m recsys import`` of the other bundle over the existing dataset
- ``train``    ``python -m recsys train`` of a new run
- ``resume``   ``python -m recsys train --resume`` of a run an earlier kill interrupted
- ``delete``   ``recsys.train.launch.delete_run`` of a run, or ``Workspace.delete_dataset`` of a spare dataset
- ``forget``   ``python -m recsys forget`` of one user of the spare dataset

After every kill a fresh ``Workspace`` is opened (its start-up clean-up runs) and checked:

- readable: every dataset lists without damage and loads; every run reads as a record; every run that
  claims a usable model loads it; ``python -m recsys runs --json`` ends with one JSON object (every 5th kill)
- no leftovers: no ``.staging-``/``.trash-``/``.deleted-`` folder or ``*.tmp`` file in the workspace
- no mixed dataset: the dataset's interactions and items are exactly one bundle's, and its manifest agrees

The last line printed is one JSON object (counts per operation, failures); the exit code is 1 on any failure.
:func:`run_faults` is what ``tests/test_faults.py`` runs with fewer kills.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

SMALL_RUN = [
    "--modalities",
    "behaviour",
    "text",
    "attributes",
    "--text-encoder",
    "tfidf",
    "--device",
    "cpu",
    "--epochs",
    "3",
    "--baselines",
    "mostpop",
    "--quiet",
]
LEFTOVER_PREFIXES = (".staging-", ".trash-", ".deleted-")


def _python(code: str, workspace: Path) -> list[str]:
    return [
        sys.executable,
        "-c",
        f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); "
        f"from recsys.workspace import Workspace; ws = Workspace({str(workspace)!r}); {code}",
    ]


def _recsys(*args: str) -> list[str]:
    return [sys.executable, "-m", "recsys", *args]


class FaultInjector:
    def __init__(self, root: Path, seed: int = 7, log=print):
        self.root = root
        self.workspace = root / "ws"
        self.rng = random.Random(seed)
        self.log = log
        self.bundles: dict[str, Path] = {}
        self.sizes: dict[str, tuple[int, int]] = {}  # bundle -> (interactions, items) as stored after import
        self.current = "a"
        self.run_counter = 0
        self.durations: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.failures: list[str] = []

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        from recsys.data.demo import generate_demo_bundle
        from recsys.workspace import Workspace

        self.bundles["a"] = generate_demo_bundle(
            self.root / "bundle-a", n_users=150, n_items=100, n_interactions=3500, seed=5
        )
        self.bundles["b"] = generate_demo_bundle(
            self.root / "bundle-b", n_users=120, n_items=90, n_interactions=2600, seed=6
        )
        for key in ("b", "a"):  # b first to learn its stored size; a is the dataset at the start
            self.durations["import"] = self._timed(
                _recsys(
                    "import", str(self.bundles[key]), "--name", "shop", "--workspace", str(self.workspace), "--quiet"
                )
            )
            self.sizes[key] = self._stored_size("shop")
        assert self.sizes["a"] != self.sizes["b"], "the two bundles must differ in size"
        self.durations["train"] = self._timed(
            _recsys("train", "--workspace", str(self.workspace), "--data", "shop", "--run-id", "base", *SMALL_RUN)
        )
        self.durations["resume"] = self.durations["train"]
        self._interrupted_run("interrupted-0")  # so that the first resume has a run to resume, whatever the timing
        self._import_spare()
        self.durations["forget"] = self._timed(
            _recsys("forget", "spare", "--user", self._a_user("spare"), "--workspace", str(self.workspace), "--quiet")
        )
        self.durations["delete"] = self._timed(_python("ws.delete_dataset('spare')", self.workspace))
        Workspace(self.workspace)

    def _interrupted_run(self, run_id: str, attempts: int = 3) -> None:
        """A training SIGKILLed once it is under way (its status says running): a run for ``resume`` kills. A
        small run can finish in the moment before the signal: then another is started (another run id)."""
        for attempt in range(attempts):
            name = run_id if attempt == 0 else f"{run_id}-{attempt}"
            process = subprocess.Popen(
                _recsys("train", "--workspace", str(self.workspace), "--data", "shop", "--run-id", name, *SMALL_RUN),
                cwd=REPO_ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            status = self.workspace / "runs" / name / "status.json"
            deadline = time.time() + 600
            while time.time() < deadline and process.poll() is None:
                try:
                    if json.loads(status.read_text()).get("state") == "running":
                        break
                except (OSError, ValueError):
                    pass
                time.sleep(0.2)
            time.sleep(self.rng.uniform(0.0, 0.5 if attempt == 0 else 0.0))
            process.kill()
            process.wait()
            try:
                if json.loads(status.read_text()).get("state") != "finished":
                    return
            except (OSError, ValueError):
                return

    def _timed(self, command: list[str]) -> float:
        started = time.perf_counter()
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command[:4])} failed: {done.stderr[-2000:]}")
        return time.perf_counter() - started

    def _stored_size(self, name: str) -> tuple[int, int]:
        from recsys.workspace import Workspace

        bundle = Workspace(self.workspace).load_dataset(name)
        return len(bundle.interactions), len(bundle.items)

    def _a_user(self, name: str) -> str:
        from recsys.workspace import Workspace

        users = Workspace(self.workspace).load_dataset(name).interactions["user_id"].astype(str)
        return self.rng.choice(sorted(users.unique()))

    def _import_spare(self) -> None:
        subprocess.run(
            _recsys("import", str(self.bundles["a"]), "--name", "spare", "--workspace", str(self.workspace), "--quiet"),
            cwd=REPO_ROOT,
            capture_output=True,
            timeout=900,
        )

    # ------------------------------------------------------------------ one kill
    def _operation(self, kind: str) -> list[str] | None:
        from recsys.train.launch import list_all_runs
        from recsys.workspace import Workspace

        workspace = Workspace(self.workspace)
        if kind == "import":
            self.current = "b" if self.current == "a" else "a"
            return _recsys(
                "import",
                str(self.bundles[self.current]),
                "--name",
                "shop",
                "--workspace",
                str(self.workspace),
                "--quiet",
            )
        if kind == "train":
            self.run_counter += 1
            return _recsys(
                "train",
                "--workspace",
                str(self.workspace),
                "--data",
                "shop",
                "--run-id",
                f"r{self.run_counter}",
                *SMALL_RUN,
            )
        runs = list_all_runs(workspace)
        if kind == "resume":
            candidates = [r.run_id for r in runs if r.state in ("interrupted", "stopped", "failed")]
            if not candidates:
                return None
            return _recsys(
                "train", "--workspace", str(self.workspace), "--resume", self.rng.choice(candidates), "--quiet"
            )
        if kind == "forget":
            if not workspace.has_dataset("spare"):
                self._import_spare()
            return _recsys(
                "forget", "spare", "--user", self._a_user("spare"), "--workspace", str(self.workspace), "--quiet"
            )
        if kind == "delete":
            # runs that ended are deleted; interrupted ones are kept for the resume kills
            deletable = [r.run_id for r in runs if r.state in ("finished", "failed") and r.run_id != "base"]
            if deletable and self.rng.random() < 0.6:
                run_id = self.rng.choice(deletable)
                return _python(
                    f"from recsys.train.launch import delete_run; delete_run(ws, {run_id!r})", self.workspace
                )
            if not workspace.has_dataset("spare"):
                self._import_spare()
            return _python("ws.delete_dataset('spare')", self.workspace)
        raise ValueError(kind)

    def kill_once(self, kind: str) -> None:
        command = self._operation(kind)
        if command is None:  # nothing to resume yet: make something to resume
            kind, command = "train", self._operation("train")
        # python start-up is a good part of a short operation: the delay spans it and the work after it (and a
        # little beyond, so that some finish); a training is killed before its end, to leave runs to resume
        delay = self.rng.uniform(0.0, self.durations[kind] * (0.9 if kind in ("train", "resume") else 1.1))
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            process.wait(timeout=delay)
            ended = "finished first"
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            ended = "killed"
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.counts[f"{kind} ({ended})"] = self.counts.get(f"{kind} ({ended})", 0) + 1
        problems = self.check(deep=sum(self.counts.get(k, 0) for k in self.durations) % 5 == 0)
        label = f"{kind:<7} after {delay:5.1f}s ({ended})"
        if problems:
            self.failures.extend(f"{label}: {p}" for p in problems)
            self.log(f"FAIL {label}: {problems}")
        else:
            self.log(f"ok   {label}")

    # ------------------------------------------------------------------ the checks
    def check(self, deep: bool = False) -> list[str]:
        from recsys.models.base import ModelDamaged
        from recsys.train.launch import list_all_runs
        from recsys.train.records import load_run_model
        from recsys.workspace import Workspace

        problems: list[str] = []
        try:
            workspace = Workspace(self.workspace)  # the start-up clean-up runs here
        except Exception as exc:  # noqa: BLE001 - any failure to open is the finding
            return [f"the workspace does not open: {type(exc).__name__}: {exc}"]
        for path in self.workspace.rglob("*"):
            relative = path.relative_to(self.workspace).as_posix()
            if relative.startswith((".secret", "runs/.launch")):
                continue
            if path.name.startswith(LEFTOVER_PREFIXES) or path.name.endswith(".tmp"):
                problems.append(f"leftover {relative}")
        for info in workspace.list_datasets():
            if info.damaged:
                problems.append(f"dataset {info.name} damaged: {info.damaged}")
                continue
            bundle = workspace.load_dataset(info.name)
            stored = (len(bundle.interactions), len(bundle.items))
            manifest = info.manifest.get("counts", {})
            if (manifest.get("interactions"), manifest.get("items")) != stored:
                problems.append(f"dataset {info.name}: manifest counts {manifest} disagree with the tables {stored}")
            if info.name == "shop" and stored not in self.sizes.values():
                problems.append(f"dataset shop is mixed: {stored} is neither bundle's {self.sizes}")
        if not workspace.has_dataset("shop"):
            problems.append("dataset shop is gone")
        try:
            runs = list_all_runs(workspace)
        except Exception as exc:  # noqa: BLE001
            return problems + [f"runs do not list: {type(exc).__name__}: {exc}"]
        for record in runs:
            if record.state in ("starting", "running"):
                problems.append(f"run {record.run_id} reads as {record.state} after its process was killed")
            if record.usable:
                try:
                    load_run_model(record.path)
                except ModelDamaged as exc:
                    problems.append(f"run {record.run_id} is listed usable but its model is damaged: {exc}")
        if deep:
            done = subprocess.run(
                _recsys("runs", "--workspace", str(self.workspace), "--json"),
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=300,
            )
            try:
                assert done.returncode == 0 and json.loads(done.stdout.strip().splitlines()[-1])["ok"]
            except (AssertionError, IndexError, ValueError, KeyError):
                problems.append(f"runs --json failed: rc {done.returncode}, {done.stderr[-500:]}")
        return problems


def run_faults(root: Path, kills: int = 60, seed: int = 7, log=print) -> dict[str, Any]:
    """Set up a workspace under ``root`` and kill ``kills`` operations, checking after each."""
    injector = FaultInjector(Path(root), seed=seed, log=log)
    started = time.perf_counter()
    injector.setup()
    kinds = ["import", "train", "resume", "delete", "forget"]
    for index in range(kills):
        injector.kill_once(kinds[index % len(kinds)] if index < len(kinds) else injector.rng.choice(kinds))
    return {
        "kills": sum(injector.counts.get(k, 0) for k in kinds),
        "counts": injector.counts,
        "durations_s": {k: round(v, 2) for k, v in injector.durations.items()},
        "failures": injector.failures,
        "seconds": round(time.perf_counter() - started, 1),
        "seed": seed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="folder for the bundles and the workspace (default: a temporary folder, removed at the end)",
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON summary")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    log = (lambda *a: None) if args.json else print
    if args.root:
        args.root.mkdir(parents=True, exist_ok=True)
        result = run_faults(args.root, args.kills, args.seed, log)
    else:
        with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
            result = run_faults(Path(tmp), args.kills, args.seed, log)
    print(json.dumps(result))
    sys.exit(1 if result["failures"] else 0)


if __name__ == "__main__":
    main()
