"""A training run: features -> split -> fit (model + baselines) -> honest evaluation -> saved run folder.

Run folder (``workspace/runs/<run id>/``), the single thing the app polls::

    config.json      the RunConfig
    status.json      state (running / finished / stopped / failed), pid, times, error
    progress.jsonl   one JSON line per event: stage, step (periodic), epoch, result
    model/           best checkpoint so far: config.json + weights.safetensors + ids.json (never pickle), and
                     .stage.json: "best" (mid-fit), "fitted" (the evaluated model) or "final" (the refit)
    checkpoint/      latest resumable state (network + optimiser), removed when the run ends
    metrics.json     test metrics of the model and each baseline (+ cold-start rows), rewritten as each is
                     done; ``complete: true`` once all are

SIGTERM/SIGINT stop training cleanly and promptly: every long step checks the stop flag between batches
(:mod:`recsys.stopping`); the gate's loop ends after the current step, the best model so far and the
checkpoint are kept (not evaluated: an evaluation can take minutes at scale; resume finishes the run) and
the status says "stopped". A step that cannot be resumed part-way (features, the EASE search, the split)
is abandoned, and the status names it (``stopped_during``). A SIGKILL leaves the last best checkpoint, which
is written atomically, and the status still says "running" with a pid that no longer exists, which
:func:`read_status` reports as "interrupted" (or "finished" when the killed run had written all its
results). ``resume=True`` continues from ``checkpoint/``; when ``model/`` already holds the fitted (or
final) model, it loads it and does only what is left of the evaluation instead of fitting again.

One writer per folder: ``.lock`` (:mod:`recsys.train.lock`, pid + host + start time, created with
``O_EXCL``) is held for the whole training and removed at its end, also when it fails or is stopped; a
SIGKILL leaves it behind, and the next start finds its pid gone and takes it over. Resuming a run that
is still training, or one that has finished (unless ``force``), is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from .. import distributed, stopping
from ..atomic import atomic_directory, atomic_write_json, clean_leftovers
from ..features.registry import DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER
from ..models.config import BPRConfig, EASEConfig, FusionConfig, ItemKNNConfig, LightGCNConfig, nested, option
from ..workspace import Workspace, validate_name
from .lock import (
    LOCK_NAME,
    RunBusyError,
    RunFinishedError,
    RunLock,
    acquire_run_lock,
    busy_message,
    pid_alive,
)
from .records import (
    MODEL_STAGE,
    RunRecord,
    nest_flat_options,
    read_model_stage,
    read_run_record,
    refuse_resume,
    run_complete,
)

# options of the run that the fusion model also takes: the run's value is the model's (the nested copy follows it)
SHARED_FUSION_OPTIONS = ("modalities", "seed", "device")


@dataclass
class RunConfig:
    """Every option of a training run, in one place, each with a default and a one-line description.

    The options of the models are nested: ``fusion_options`` (:class:`FusionConfig`) and one field per
    baseline (``ease_options``, ``itemknn_options``, ...): the model trained as ``model`` and the baselines
    beside it take theirs. ``config.json`` of a run holds this as :meth:`to_dict`; :meth:`from_dict` also
    reads the flat form written before the options were nested (``epochs``, ``lr``, ... at the top level).
    """

    dataset: str = option("demo", "dataset name in the workspace")
    model: str = option("fusion", "fusion, or a baseline: mostpop, itemknn, bpr, ease, lightgcn, content")
    modalities: list[str] = option(
        ["behaviour", "text", "image", "attributes"], "modality tokens the fusion model uses"
    )
    text_encoder: str = option(DEFAULT_TEXT_ENCODER, "text encoder (python -m recsys encoders)")
    image_encoder: str = option(DEFAULT_IMAGE_ENCODER, "image encoder")
    protocol: str = option(
        "auto",
        "auto (P1 when its k-core filter keeps enough of the data, else sparse), p1 "
        "(k-core, random 80/10/10 per user, at least 1 valid + 1 test), temporal (leave last out), sparse "
        "(leave last out for users with 3+ interactions, no filter, every item kept), "
        "kfold (per-user K-fold cross-validation: mean and std of every metric)",
    )
    folds: int = option(5, "number of folds of the kfold protocol")
    cold_start: bool = option(False, "also evaluate on the P1 cold-start split (10 % of items held out)")
    k_core: int = option(5, "keep users and items with at least this many interactions")
    seed: int = option(2026, "random seed for the split and the model")
    baselines: list[str] = option(["mostpop", "ease"], "baselines trained and evaluated beside the model")
    eval_users: int = option(
        0,
        "evaluate on a fixed random sample of at most this many users (seeded; the same sample for the model "
        "and every baseline; 0 = every user): full ranking of a large catalogue costs minutes per 10k users",
    )
    final_model: bool = option(
        True,
        "after evaluation, refit the model on every interaction (train, valid and "
        "test) with the settings chosen on validation; the app recommends with it",
    )
    device: str = option("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    fusion_options: FusionConfig = nested(FusionConfig, "options of the fusion model")
    itemknn_options: ItemKNNConfig = nested(ItemKNNConfig, "options of the ItemKNN baseline")
    ease_options: EASEConfig = nested(EASEConfig, "options of the EASE baseline")
    bpr_options: BPRConfig = nested(BPRConfig, "options of the BPR matrix factorisation baseline")
    lightgcn_options: LightGCNConfig = nested(LightGCNConfig, "options of the LightGCN baseline")

    def __post_init__(self) -> None:
        from .data import PROTOCOLS

        if self.protocol not in ("auto", *PROTOCOLS):
            raise ValueError(f"protocol must be auto or one of {', '.join(PROTOCOLS)}, not {self.protocol!r}")
        if int(self.folds) < 2:
            raise ValueError(f"folds must be 2 or more, not {self.folds}")
        # checked with the config, before a run folder or any training: a mistyped baseline was found only
        # after the model had trained, and left a failed run that looked like a finished one
        from ..models.base import list_models

        known = list_models()
        for what, name in [("model", self.model), *(("baseline", b) for b in self.baselines)]:
            if name not in known:
                raise ValueError(f"unknown {what} {name!r}; choose one of {', '.join(known)}")
        for item in dataclasses.fields(self):
            cls = item.metadata.get("nested")
            if cls is not None:
                setattr(self, item.name, cls.from_dict(getattr(self, item.name), item.name))
        shared = {name: getattr(self, name) for name in SHARED_FUSION_OPTIONS}
        if any(getattr(self.fusion_options, name) != value for name, value in shared.items()):
            self.fusion_options = dataclasses.replace(self.fusion_options, **shared)

    def model_options(self, name: str | None = None) -> dict[str, Any]:
        """The options of model ``name`` (default: the run's model), as its constructor takes them."""
        name = name or self.model
        if name == "fusion":
            return self.fusion_options.to_dict()
        options = getattr(self, f"{name}_options", None)
        return options.to_dict() if options is not None else {}

    def needs_content(self) -> bool:
        content_models = {"fusion", "content"}
        wanted = {self.model, *self.baselines} & content_models
        return bool(wanted) and any(m in self.modalities for m in ("text", "image", "attributes"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """A RunConfig from :meth:`to_dict`'s form, or from the flat form of older runs (the fusion model's
        options at the top level): those move into ``fusion_options``. Unknown options: ``ValueError``."""
        if isinstance(data.get("fusion_options", {}), dict):
            data = nest_flat_options(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown run options {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- run folder I/O


class ProgressLog:
    """Appends one JSON object per line; each line is flushed so a poller never sees half of one."""

    def __init__(self, run_dir: Path, step_every_s: float = 1.0):
        self.path = run_dir / "progress.jsonl"
        self.step_every_s = step_every_s
        self._last_step = 0.0

    def write(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"type": kind, "time": time.time(), **fields}, default=_jsonable)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()

    def step(self, **fields: Any) -> None:
        now = time.time()
        if now - self._last_step >= self.step_every_s:
            self._last_step = now
            self.write("step", **fields)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def read_progress(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "progress.jsonl"
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written right now
            continue
    return events


def read_status(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "status.json"
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):  # no status yet, or a damaged one: nothing is known of the run
        return {"state": "unknown"}
    if not isinstance(status, dict):
        return {"state": "unknown"}
    if status.get("state") == "running" and not pid_alive(status.get("pid")):
        # killed after its last result was written: nothing is missing, so it is not left "interrupted"
        status["state"] = "finished" if run_complete(Path(run_dir)) else "interrupted"
    return status


def write_status(run_dir: Path, **fields: Any) -> None:
    path = run_dir / "status.json"
    current = json.loads(path.read_text()) if path.is_file() else {}
    atomic_write_json(path, current | fields)


def _id_part(text: Any, limit: int) -> str:
    """A piece of a generated run id: characters a run id may not hold become '-', at most ``limit`` long."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text))[:limit].strip("-_") or "x"


def new_run_id(config: RunConfig) -> str:
    """``time-dataset-model-xxxx``, always a valid run id (see :func:`recsys.workspace.validate_name`)."""
    run_id = (
        f"{time.strftime('%Y%m%d-%H%M%S')}-{_id_part(config.dataset, 48)}-{_id_part(config.model, 24)}-"
        f"{uuid.uuid4().hex[:4]}"
    )
    return validate_name("run id", run_id)


# ----------------------------------------------------------------------------- the run


class _TrainingCallbacks:
    """Connects the model's training loop to the run folder and to stop signals."""

    def __init__(self, run_dir: Path, log: ProgressLog, save_best: Callable[[Any], None], save_every_s: float = 30.0):
        self.run_dir = run_dir
        self.log = log
        self.save_best = save_best
        self.save_every_s = save_every_s  # a model can be tens of MB: don't rewrite it every epoch
        self.stop_signal = stopping.StopSignal()
        self._started = time.time()
        # the first best model is written 30 s into the run, not at the first round: on movielens the model is
        # ~170 MB and its write took 1.3 s of a 15 s fit, to guard seconds of work a kill would lose (the
        # checkpoint, a few KB, is still written every round, so a killed run resumes from its last round)
        self._last_save = self._started

    @property
    def stop_requested(self) -> bool:
        return self.stop_signal.requested

    def on_stage(self, message: str) -> None:
        self.log.write("stage", stage="fit", message=message)

    def on_step(self, epoch: int, step: int, steps: int, loss: float) -> None:
        self.log.step(epoch=epoch, step=step, steps=steps, loss=loss)

    def on_epoch_end(self, model: Any, record: dict[str, Any], improved: bool, resume_state: Callable) -> None:
        from .checkpoint import save_checkpoint

        self.log.write("epoch", **record, max_epochs=model.config.get("epochs"), elapsed=time.time() - self._started)
        if improved and time.time() - self._last_save >= self.save_every_s:
            self.save_best(model)
            self._last_save = time.time()
        save_checkpoint(self.run_dir / "checkpoint", resume_state())


def train_run(
    workspace: Workspace,
    config: RunConfig,
    run_id: str | None = None,
    resume: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    force: bool = False,
) -> Path:
    """Execute a run end to end; returns its folder. Installs SIGTERM/SIGINT handlers while running.

    The run folder's lock (:mod:`recsys.train.lock`) is held from the start to the end, so a second
    writer is refused (:class:`RunBusyError`). Resuming a finished run is refused
    (:class:`RunFinishedError`) unless ``force``: that trains it again and replaces its model and metrics.
    """
    if distributed.world_size() > 1:
        if resume:
            raise ValueError("a run cannot be resumed under torchrun: resume it in a single process")
        run_id = distributed.broadcast_object(run_id or new_run_id(config))  # rank 0's id, on every rank
        if not distributed.is_primary():
            return _train_replica(workspace, config, run_id)
    run_id = run_id or new_run_id(config)
    run_dir = workspace.run_path(run_id)  # InvalidName (a ValueError) for a path or an odd name
    if resume:
        if not (run_dir / "config.json").is_file():
            raise FileNotFoundError(f"no run {run_id} to resume in {workspace.runs_dir}")
        lock = acquire_run_lock(run_dir, run_id)  # RunBusyError while another process trains it
        try:
            status = read_status(run_dir)
            retrain = status.get("state") == "finished"  # only with force: the saved model is not reused
            if status.get("state") == "running" and status.get("pid") != os.getpid():  # an older trainer, no lock
                raise RunBusyError(
                    busy_message(run_id, status.get("pid")),
                    {"reason": "busy", "run_id": run_id, "pid": status.get("pid")},
                )
            if status.get("state") == "finished" and not force:
                raise RunFinishedError(
                    f"run {run_id} has finished; use --force to train it again",
                    {"reason": "finished", "run_id": run_id},
                )
            config = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text())["config"])
            refuse_resume(run_id, config.to_dict())  # before the status is touched: a stopped run stays so
        except BaseException:
            lock.release()
            raise
    else:
        if run_dir.exists() and any(p.name != LOCK_NAME for p in run_dir.iterdir()):
            raise FileExistsError(f"run folder {run_dir} already exists")
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = acquire_run_lock(run_dir, run_id)
        if any(p.name != LOCK_NAME for p in run_dir.iterdir()):  # another start got there first
            lock.release()
            raise FileExistsError(f"run folder {run_dir} already exists")
        atomic_write_json(run_dir / "config.json", {"run_id": run_id, "config": config.to_dict()})
        retrain = True
    try:
        return _train_locked(workspace, config, run_id, run_dir, resume, progress, lock, reuse_model=not retrain)
    finally:
        lock.release()


def _train_replica(workspace: Workspace, config: RunConfig, run_id: str) -> Path:
    """A rank other than 0 under torchrun: the same steps as rank 0 (its share of every distributed gradient
    step, the same decisions), with everything it would write going to a scratch folder outside the
    workspace, removed at the end. Returns the run folder rank 0 writes."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix=f"recsys-rank{distributed.rank()}-") as scratch:
        folder = Path(scratch)
        log = ProgressLog(folder)
        callbacks = _TrainingCallbacks(folder, log, lambda model: None)
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for sig in previous:  # torchrun passes a stop on to every rank: the steps decide it together
                signal.signal(sig, lambda signum, frame: callbacks.stop_signal.request())
        except ValueError:
            previous = {}
        try:
            with stopping.watching(callbacks.stop_signal):
                _execute(workspace, config, folder, log, callbacks, False, None)
        except stopping.StopRequested:
            pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    distributed.barrier()  # rank 0 has written its last file
    return workspace.run_path(run_id)


def _train_locked(
    workspace: Workspace,
    config: RunConfig,
    run_id: str,
    run_dir: Path,
    resume: bool,
    progress: Callable[[str, int, int], None] | None,
    lock: RunLock,
    reuse_model: bool = False,
) -> Path:
    log = ProgressLog(run_dir)
    if lock.taken_over is not None:
        log.write(
            "stage",
            stage="lock",
            message=f"took over the stale lock of pid {lock.taken_over.get('pid')} (that process is gone)",
        )
    # a resume keeps the first start (the run's age) and clears what the previous process's end left
    earlier = read_status(run_dir) if resume else {}
    now = time.time()
    write_status(
        run_dir,
        state="running",
        pid=os.getpid(),
        started=earlier.get("started") or now,
        resumed=now if resume else None,
        # the time the run sat stopped before this resume: its duration counts the work, not the pause
        paused_seconds=float(earlier.get("paused_seconds") or 0.0)
        + (max(0.0, now - float(earlier["ended"])) if resume and earlier.get("ended") else 0.0),
        ended=None,
        stopped_during=None,
        error=None,
        traceback=None,
        run_id=run_id,
        dataset=config.dataset,
        model=config.model,
        **({"distributed": distributed.describe()} if distributed.world_size() > 1 else {}),
    )
    callbacks = _TrainingCallbacks(run_dir, log, lambda model: _save_model(model, run_dir / "model", "best"))
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def request_stop(signum, frame):  # noqa: ARG001
        callbacks.stop_signal.request()
        log.write("stage", stage="stopping", message="stop requested; finishing the current step")

    try:
        for sig in previous:
            signal.signal(sig, request_stop)
    except ValueError:  # not the main thread (e.g. a test runner thread): no signal handling
        previous = {}
    try:
        with stopping.watching(callbacks.stop_signal):
            metrics = _execute(workspace, config, run_dir, log, callbacks, resume, progress, reuse_model)
        # we hold the folder's lock: any staging or trash left here is from a killed earlier attempt
        clean_leftovers(run_dir, temp_files=True, everything=True)
        state = "stopped" if callbacks.stop_requested else "finished"
        write_status(run_dir, state=state, ended=time.time(), metrics_summary=_summary(metrics))
        log.write("end", state=state)
        distributed.barrier()  # under torchrun: the other ranks return once the run folder is complete
    except stopping.StopRequested as stop:  # a long step gave up at once: what was saved before it stays
        kept = "the model saved so far is kept" if (run_dir / "model").is_dir() else "no model was saved yet"
        write_status(run_dir, state="stopped", ended=time.time(), stopped_during=str(stop))
        log.write("end", state="stopped", message=f"stopped during {stop}; {kept}; resume the run to continue")
        distributed.barrier()
    except Exception as exc:
        write_status(
            run_dir,
            state="failed",
            ended=time.time(),
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(limit=8),
        )
        log.write("end", state="failed", error=str(exc))
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return run_dir


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    test = metrics.get("model", {}).get("test", {})
    return {k: test.get(k) for k in ("ndcg@20", "recall@20", "ndcg@10", "recall@10")}


def not_for_sale_ids(items: Any) -> list[str]:
    """The ids of the items the catalogue marks as not for sale (:func:`recsys.data.shop_exports.not_for_sale`)."""
    from ..data.shop_exports import not_for_sale

    found = not_for_sale(items)
    return [] if found is None else items["item_id"].astype(str)[found.items].tolist()


def _save_model(model: Any, folder: Path, stage: str = "fitted", fit: str | None = None) -> None:
    """Save ``model`` with a note of which model it is (see the module's docstring), written in the same
    rename as the model, so that a resume can trust it; ``fit`` ties it to the metrics of that fit."""
    with atomic_directory(folder) as staging:
        model.save(staging)
        atomic_write_json(
            staging / MODEL_STAGE, {"stage": stage, "fit": fit, "history": getattr(model, "history", None)}
        )


def _execute(
    workspace: Workspace,
    config: RunConfig,
    run_dir: Path,
    log: ProgressLog,
    callbacks: _TrainingCallbacks,
    resume: bool,
    progress: Callable[[str, int, int], None] | None,
    reuse_model: bool = False,
) -> dict[str, Any]:
    from ..evaluate import evaluate_ranking, paired_bootstrap
    from ..models import get_model
    from .checkpoint import load_checkpoint, remove_checkpoint
    from .data import preflight, prepare_data, resolve_protocol

    bundle = workspace.load_dataset(config.dataset)
    # which import of the dataset the run trains on: a later import under the same name replaces it, and the
    # pages then say the run predates it (the titles and pictures they show are the new import's)
    write_status(run_dir, dataset_imported_at=workspace.dataset_imported_at(config.dataset))
    # before anything expensive: what the protocol keeps, and refuse one that keeps nothing
    check = preflight(
        bundle.interactions,
        k_core=config.k_core,
        seed=config.seed,
        has_timestamp=bundle.schema.timestamp_column is not None,
        catalogue_items=len(bundle.items),
    )
    protocol = resolve_protocol(config.protocol, check)
    log.write(
        "stage",
        stage="preflight",
        protocol=protocol,
        requested=config.protocol,
        reason=check["reason"],
        kept=check["protocols"].get("p1" if protocol in ("p1", "temporal", "cold") else protocol),
        total=check["total"],
    )
    features = None
    if config.needs_content():
        features = _extract_features_on_every_rank(workspace, bundle, config, log, progress)
    log.write("stage", stage="split", protocol=protocol)
    if protocol == "kfold":
        return _cross_validate(bundle, features, config, check, run_dir, log, callbacks)
    prepare = lambda protocol: prepare_data(  # noqa: E731
        bundle.interactions,
        protocol=protocol,
        seed=config.seed,
        k_core=config.k_core,
        rating_column=bundle.schema.rating_column,
        timestamp_column=bundle.schema.timestamp_column if protocol == "temporal" else None,
        item_features=features,
        catalogue_ids=bundle.items["item_id"].to_numpy(str),
        not_for_sale_ids=not_for_sale_ids(bundle.items),
    )
    prepared = prepare(protocol)
    log.write("stage", stage="data", **prepared.summary)

    metrics: dict[str, Any] = {
        "split": prepared.summary,
        "baselines": {},
        "cold_start": {},
        "preflight": {**check, "chosen": protocol},
    }
    saved = _saved_model(run_dir, config, prepared, log) if resume and reuse_model else None
    model: Any  # duck-typed by config.model: the fusion model also takes callbacks and resume_state
    if saved is not None:  # the fit had ended: what the killed run had evaluated is kept, the rest is done
        model, stage, fit, previous = saved
        metrics |= {
            key: previous[key]
            for key in ("model", "final_model", "baselines", "cold_start", "paired")
            if key in previous
        }
        remove_checkpoint(run_dir / "checkpoint")
    else:
        model = get_model(config.model, **config.model_options())
        log.write("stage", stage="fit", model=config.model)
        resume_state = None
        if resume and (run_dir / "checkpoint" / "structure.json").is_file():
            resume_state = load_checkpoint(run_dir / "checkpoint")
            log.write("stage", stage="resume", epoch=int(resume_state["epoch"]))
        if config.model == "fusion":
            model.fit(prepared.data, callbacks=[callbacks], resume_state=resume_state)
        else:
            model.fit(prepared.data)
        fit = uuid.uuid4().hex[:12]
        stage = "best" if callbacks.stop_requested else "fitted"  # a stopped fit is continued, not reused
        _save_model(model, run_dir / "model", stage, fit)
        if callbacks.stop_requested:  # the best model so far and the checkpoint stay; resume continues and evaluates
            raise stopping.StopRequested("training")
        remove_checkpoint(run_dir / "checkpoint")
    metrics["fit"] = fit
    # the model's per-user test values, for the paired comparison with each baseline (only when the model is
    # evaluated in this process: a resumed run that had evaluated it has no pairs for the baselines left)
    model_per_user: dict[str, np.ndarray] | None = None
    if "model" not in metrics:
        metrics["model"], model_per_user = _evaluate_by_user(model, prepared, evaluation_sample(prepared, config))
        metrics["model"]["name"] = config.model
        if getattr(model, "history", None):
            metrics["model"]["history"] = model.history
        log.write("result", model=config.model, test=metrics["model"]["test"])
        atomic_write_json(run_dir / "metrics.json", metrics)
    if config.final_model and not callbacks.stop_requested:
        if stage != "final":
            _save_final_model(model, config, prepared, run_dir, log, metrics, fit)
        elif "final_model" not in metrics:  # killed between saving the final model and noting it
            metrics["final_model"] = _final_summary(model)
            atomic_write_json(run_dir / "metrics.json", metrics)

    for name in config.baselines:
        if callbacks.stop_requested:
            break
        if name == config.model or name in metrics["baselines"]:
            continue
        log.write("stage", stage="baseline", model=name)
        baseline = get_model(name, **config.model_options(name))
        baseline.fit(prepared.data)
        metrics["baselines"][name], baseline_per_user = _evaluate_by_user(
            baseline, prepared, evaluation_sample(prepared, config)
        )
        if model_per_user is not None:
            metrics.setdefault("paired", {})[name] = {
                metric: paired_bootstrap(model_per_user[metric], baseline_per_user[metric], seed=config.seed)
                for metric in PAIRED_METRICS
            }
        log.write("result", model=name, test=metrics["baselines"][name]["test"])
        atomic_write_json(run_dir / "metrics.json", metrics)

    if config.cold_start and protocol == "sparse":
        log.write("stage", stage="cold_start", message="skipped: the cold-item split needs the P1 k-core data")
    elif config.cold_start and not callbacks.stop_requested and not metrics["cold_start"]:
        log.write("stage", stage="cold_start")
        cold = prepare("cold")
        for name in [config.model, *[b for b in config.baselines if b != config.model]]:
            cold_model = get_model(name, **config.model_options(name))
            cold_model.fit(cold.data)
            result = evaluate_ranking(
                cold_model.score, cold.data.train, cold.cold_test, ks=(10, 20), candidate_items=cold.cold_items
            )
            metrics["cold_start"][name] = {"test": result, "fit_seconds": cold_model.fit_seconds}
            log.write("result", model=name, cold_start=result)
        atomic_write_json(run_dir / "metrics.json", metrics)
    metrics["complete"] = not callbacks.stop_requested  # what read_status trusts after a kill
    atomic_write_json(run_dir / "metrics.json", metrics)
    return metrics


def _saved_model(run_dir: Path, config: RunConfig, prepared: Any, log: ProgressLog) -> tuple | None:
    """``(model, stage, fit, metrics so far)`` when ``model/`` holds the model whose fit ended (the evaluated
    one, or the final refit once that one's metrics were written), else None: then it is fitted again."""
    from ..models import Recommender

    info = read_model_stage(run_dir / "model")
    stage = info.get("stage")
    if stage not in ("fitted", "final"):
        return None
    try:
        previous = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        previous = {}
    if not isinstance(previous, dict) or not info.get("fit") or previous.get("fit") != info["fit"]:
        previous = {}  # metrics of another fit (or none): only the model is trusted
    if stage == "final" and "model" not in previous:
        return None  # the final model saw the test split: it cannot stand in for the evaluated one
    try:
        model: Any = Recommender.load(run_dir / "model")  # duck-typed: models with a history get it back
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.write("stage", stage="fit", message=f"the saved model could not be read ({exc}); fitting again")
        return None
    data = prepared.data
    if model.name != config.model or (
        stage == "fitted"
        and (
            list(model.user_ids) != [str(u) for u in data.user_ids]
            or list(model.item_ids) != [str(i) for i in data.item_ids]
        )
    ):
        return None  # not the model of this split (data changed since): fitting again is the honest answer
    if info.get("history") is not None:
        model.history = info["history"]
    log.write(
        "stage", stage="evaluate_saved", model_stage=stage, message="resuming from the saved model: evaluation only"
    )
    return model, stage, info["fit"], previous


def _cross_validate(
    bundle: Any,
    features: Any,
    config: RunConfig,
    check: dict[str, Any],
    run_dir: Path,
    log: ProgressLog,
    callbacks: _TrainingCallbacks,
) -> dict[str, Any]:
    """K-fold cross-validation: the model and each baseline fitted and tested on every fold; mean and std
    of every metric, the per-fold table, and the paired difference to each baseline. The product model is
    then refitted on every interaction with what the last fold's validation chose."""
    from ..models import get_model
    from .checkpoint import remove_checkpoint
    from .data import PreparedData, prepare_data

    names = [config.model, *[b for b in config.baselines if b != config.model]]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    model: Any = None  # the main model of the first complete fold (duck-typed: its history, if any)
    prepared: PreparedData | None = None
    for fold in range(config.folds):
        if callbacks.stop_requested:
            break
        log.write("stage", stage="fold", fold=fold + 1, folds=config.folds)
        prepared_fold = prepare_data(
            bundle.interactions,
            protocol="kfold",
            fold=fold,
            folds=config.folds,
            seed=config.seed,
            k_core=check["protocols"]["kfold"]["k_core"],
            rating_column=bundle.schema.rating_column,
            item_features=features,
            catalogue_ids=bundle.items["item_id"].to_numpy(str),
            not_for_sale_ids=not_for_sale_ids(bundle.items),
        )
        if fold == 0:
            log.write("stage", stage="data", **prepared_fold.summary)
        for name in names:
            if callbacks.stop_requested:
                break
            log.write("stage", stage="fit" if name == config.model else "baseline", model=name, fold=fold + 1)
            fitted: Any = get_model(name, **config.model_options(name))  # the fusion model takes callbacks
            try:
                if name == "fusion":
                    fitted.fit(prepared_fold.data, callbacks=[callbacks])
                else:
                    fitted.fit(prepared_fold.data)
                if callbacks.stop_requested:  # a fold cut short is not reported beside complete ones
                    break
                results[name].append(_evaluate(fitted, prepared_fold))
            except stopping.StopRequested:  # the folds already complete are still reported
                break
            log.write("result", model=name, fold=fold + 1, test=results[name][-1]["test"])
            if name == config.model:
                model, prepared = fitted, prepared_fold
    remove_checkpoint(run_dir / "checkpoint")
    complete = min(len(r) for r in results.values())
    if complete == 0:
        raise stopping.StopRequested("the first fold (no fold was complete: nothing to report)")
    assert model is not None and prepared is not None  # set with the first fold's results
    metrics: dict[str, Any] = {
        "split": {**prepared.summary, "fold": None, "folds_completed": complete},
        "preflight": {**check, "chosen": "kfold"},
        "cold_start": {},
        "baselines": {},
        "model": {**fold_summary(results[config.model][:complete]), "name": config.model},
    }
    if getattr(model, "history", None):
        metrics["model"]["history"] = model.history
    for name in names[1:]:
        metrics["baselines"][name] = fold_summary(results[name][:complete])
    metrics["kfold"] = {
        "folds": config.folds,
        "completed": complete,
        "paired": {
            name: paired_difference(results[config.model][:complete], results[name][:complete]) for name in names[1:]
        },
    }
    fit = metrics["fit"] = uuid.uuid4().hex[:12]
    atomic_write_json(run_dir / "metrics.json", metrics)
    _save_model(model, run_dir / "model", "fitted", fit)
    if config.final_model and not callbacks.stop_requested:
        _save_final_model(model, config, prepared, run_dir, log, metrics, fit)
    metrics["complete"] = not callbacks.stop_requested
    atomic_write_json(run_dir / "metrics.json", metrics)
    return metrics


def fold_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-fold results -> the mean of every metric (``test``/``valid``, so that every reader of a run sees
    the cross-validated figure), their standard deviations (``test_std``) and the per-fold table."""
    from ..evaluate import summarise_folds

    out: dict[str, Any] = {}
    for part in ("test", "valid"):
        summary = summarise_folds([r[part] for r in results])
        out[part] = {k: v["mean"] for k, v in summary.items()}
        if part == "test":
            out["test_std"] = {k: v["std"] for k, v in summary.items()}
    out["folds"] = [r["test"] for r in results]
    out["fit_seconds"] = float(np.mean([r["fit_seconds"] or 0.0 for r in results]))
    out["items_scored_per_second"] = float(np.mean([r["items_scored_per_second"] for r in results]))
    return out


def paired_difference(
    model: list[dict[str, Any]], baseline: list[dict[str, Any]], metrics: tuple[str, ...] = ("ndcg@20", "recall@20")
) -> dict[str, dict[str, Any]]:
    """Model minus baseline on the same folds: mean and std of the per-fold differences, how many folds the
    model wins, the 95 % interval of the mean difference (paired t over folds), and whether the mean
    difference is larger than the model's own fold-to-fold spread."""
    from scipy import stats

    out: dict[str, dict[str, Any]] = {}
    for metric in metrics:
        ours = np.array([r["test"][metric] for r in model], dtype=np.float64)
        theirs = np.array([r["test"][metric] for r in baseline], dtype=np.float64)
        diff = ours - theirs
        n = len(diff)
        std = float(diff.std(ddof=1)) if n > 1 else float("nan")
        half = float(stats.t.ppf(0.975, n - 1) * std / np.sqrt(n)) if n > 1 else float("nan")
        spread = float(ours.std(ddof=1)) if n > 1 else float("nan")
        mean = float(diff.mean())
        out[metric] = {
            "mean_difference": mean,
            "std_difference": std,
            "folds_better": int((diff > 0).sum()),
            "folds": n,
            "interval_95": [mean - half, mean + half],
            "clear_at_95": bool(n > 1 and abs(mean) > half),
            "larger_than_fold_spread": bool(n > 1 and abs(mean) > spread),
        }
    return out


def _save_final_model(
    model: Any,
    config: RunConfig,
    prepared: Any,
    run_dir: Path,
    log: ProgressLog,
    metrics: dict[str, Any],
    fit: str | None = None,
) -> None:
    """Refit the product model on everything, save it as the run's model and say so in ``metrics.json``."""
    log.write("stage", stage="final", model=config.model)
    final = _final_model(model, config, prepared)
    _save_model(final, run_dir / "model", "final", fit)
    metrics["final_model"] = _final_summary(final)
    atomic_write_json(run_dir / "metrics.json", metrics)


def _final_summary(final: Any) -> dict[str, Any]:
    return {
        "interactions": int(final.seen.nnz),
        "fit_seconds": final.fit_seconds,
        "users": int(final.n_users),
        "items": int(final.n_items),
    }


def _final_model(model: Any, config: RunConfig, prepared: Any) -> Any:
    """The product model: the same model refitted on every interaction of every user (nothing held out, no
    k-core filter), with what validation chose kept (the fusion model's behaviour L2, its number of rounds
    and calibration), so the app recommends from everything a user did and hides all of it."""
    from ..models import get_model

    data = prepared.data
    user_ids = data.user_ids
    if prepared.everything is not None:  # every user and interaction, also those the evaluation filtered out
        everything, user_ids = prepared.everything, prepared.everything_users
    else:
        everything = (data.train + prepared.valid + prepared.test).tocsr()
        everything.data[:] = 1.0
    options = config.model_options()
    if config.model == "fusion":
        options |= {
            "ease_l2": model.chosen_l2 if model.chosen_l2 is not None else "auto",
            "epochs": max(1, int(model.history.get("best_epoch", 0)) + 1),
        }
    elif getattr(model, "chosen_l2", None) is not None:
        options |= {"l2": model.chosen_l2}
    final: Any = get_model(config.model, **options)  # duck-typed: the fusion model adopts the calibration
    final.fit(dataclasses.replace(data, user_ids=user_ids, train=everything, valid=None, ratings=None))
    if config.model == "fusion":
        final.adopt_calibration(model)
    return final


def _evaluated_rows(matrix: Any, users: np.ndarray | None) -> Any:
    """``matrix`` with only the rows of ``users`` kept (all when None): the evaluator skips empty rows."""
    if users is None:
        return matrix
    kept = np.zeros(matrix.shape[0], dtype=matrix.dtype)
    kept[users] = 1
    return sp.csr_matrix(sp.diags(kept) @ sp.csr_matrix(matrix))


def evaluation_sample(prepared: Any, config: RunConfig) -> np.ndarray | None:
    """The users a run evaluates when ``config.eval_users`` is below the users with test items: a seeded
    sample of them (None = every user)."""
    limit = int(config.eval_users)
    users = np.flatnonzero(np.diff(sp.csr_matrix(prepared.test).indptr) > 0)
    if limit <= 0 or len(users) <= limit:
        return None
    return np.sort(np.random.default_rng(config.seed).choice(users, size=limit, replace=False))


# the test metrics a P1 run compares user by user between the model and each baseline (as k-fold's pairs)
PAIRED_METRICS = ("ndcg@20", "recall@20")


def _evaluate(model: Any, prepared: Any, users: np.ndarray | None = None) -> dict[str, Any]:
    """Valid metrics (for selection) and test metrics (train masked, valid excluded at test time), over
    ``users`` only when given (a sample: see ``RunConfig.eval_users``)."""
    return _evaluate_by_user(model, prepared, users)[0]


def _evaluate_by_user(
    model: Any, prepared: Any, users: np.ndarray | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """:func:`_evaluate`'s metrics and each test user's value of ``PAIRED_METRICS`` (in user order)."""
    from ..evaluate import evaluate_ranking, evaluate_ranking_by_user, mae, rmse

    data = prepared.data
    test_rows, valid_rows = _evaluated_rows(prepared.test, users), _evaluated_rows(prepared.valid, users)
    started = time.perf_counter()
    test, per_user = evaluate_ranking_by_user(
        model.score, data.train, test_rows, exclude=prepared.valid, ks=(10, 20), per_user=PAIRED_METRICS
    )
    scoring_seconds = time.perf_counter() - started
    valid = evaluate_ranking(model.score, data.train, valid_rows, ks=(10, 20))
    result = {
        "test": test,
        "valid": valid,
        "fit_seconds": model.fit_seconds,
        "items_scored_per_second": float(test["n_users_evaluated"] * data.n_items / max(scoring_seconds, 1e-9)),
    }
    if model.config.get("loss") == "mse" and prepared.test_ratings is not None:
        coo = prepared.test_ratings.tocoo()
        predicted = np.concatenate([model.score(np.array([u]))[0, [i]] for u, i in zip(coo.row, coo.col)])
        result["test"] |= {"rmse": rmse(coo.data, predicted), "mae": mae(coo.data, predicted)}
    return result, per_user


def _extract_features_on_every_rank(
    workspace: Workspace,
    bundle: Any,
    config: RunConfig,
    log: ProgressLog,
    progress: Callable[[str, int, int], None] | None,
) -> Any:
    """The run's item features. Under torchrun the ranks share the encoding: each encodes the rows the cache
    lacks whose hash falls to it (its share, stored in the cache), then rank 0 assembles the shares into the
    cache's entries while the others wait, and they read them (one process: a plain extraction)."""
    world = distributed.world_size()
    modalities = [m for m in ("text", "image", "attributes") if m in config.modalities]
    log.write("stage", stage="features", modalities=modalities, **({"sharded_over": world} if world > 1 else {}))
    report = _feature_report(log, progress)
    if world > 1:

        def my_share() -> float:
            partial = run_item_features(workspace, bundle, config, progress=report, shard_world=world)
            return float(partial.timings.get("text_shard_rows", 0) + partial.timings.get("image_shard_rows", 0))

        rows = distributed.every_rank(my_share, "feature extraction")
        log.write("stage", stage="features_sharded", rows_by_rank=[int(r) for r in rows])

    def assemble() -> Any:
        features = run_item_features(workspace, bundle, config, progress=report, shards=world)
        log.write("stage", stage="features_done", timings=features.timings)
        return features

    return distributed.primary_first(assemble)


def _feature_report(
    log: ProgressLog, progress: Callable[[str, int, int], None] | None
) -> Callable[[str, int, int], None]:
    def report(stage: str, done: int, total: int) -> None:
        if done >= total:  # the last count always lands (steps are otherwise written at most once a second)
            log.write("step", stage=f"features:{stage}", done=done, total=total)
        else:
            log.step(stage=f"features:{stage}", done=done, total=total)
        if progress is not None:
            progress(stage, done, total)
        stopping.check(f"{stage} feature extraction")  # per batch; the cache keeps the finished chunks

    return report


def run_item_features(
    workspace: Workspace,
    bundle: Any,
    config: RunConfig,
    progress: Callable[[str, int, int], None] | None = None,
    shard_world: int = 0,
    shards: int = 0,
) -> Any:
    """The item features a run with ``config`` uses: its content modalities through its encoders, from the
    workspace's cache when extracted before (the run itself, and whatever rebuilds a run's data later).

    ``shard_world = world`` (every rank, under torchrun): only this rank's share of the encoding, into the cache;
    ``shards = world`` (rank 0, after): assemble the shares (see :func:`recsys.features.extract_item_features`)."""
    from ..features.extract import extract_item_features

    return extract_item_features(
        bundle.items,
        bundle.schema.items,
        bundle.root,
        workspace.features_dir,
        text_encoder=config.text_encoder,
        image_encoder=config.image_encoder,
        modalities=tuple(m for m in ("text", "image", "attributes") if m in config.modalities),
        device=config.device,
        progress=progress,
        shard=(distributed.rank(), shard_world) if shard_world > 1 else None,
        shards=shards if shards > 1 else 0,
    )


def list_runs(workspace: Workspace, read_state: Callable[[Path], dict[str, Any]] | None = None) -> list[RunRecord]:
    """Every run folder as a :class:`RunRecord`, newest first.

    The status is :func:`read_status` unless ``read_state`` says otherwise (the launcher passes its
    :func:`recsys.train.launch.run_state`). A folder whose config.json is missing or damaged is left out
    (see :func:`recsys.train.records.read_run_record`); runs still starting have no folder yet:
    :func:`recsys.train.launch.list_all_runs` adds them.
    """
    read_state = read_state or read_status
    runs: list[RunRecord] = []
    if not workspace.runs_dir.is_dir():
        return runs
    for folder in sorted(workspace.runs_dir.iterdir(), reverse=True):
        if folder.name.startswith(".") or not (folder / "config.json").is_file():
            continue
        record = read_run_record(folder, read_state(folder))
        if record is not None:
            runs.append(record)
    return runs
