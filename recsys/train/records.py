"""What a listing of runs hands out: one typed :class:`RunRecord` per run.

The run folder is the only channel between a training process and the app (see
:mod:`recsys.train.run`); a record is what one look at that folder found: the run's configuration,
its status, its test metrics when it has them. Pages, the command line and the benchmarks read the
same record through named properties, so what "usable", "active" or "the model's test NDCG" means is
written once, here. :func:`recsys.train.run.list_runs` lists the run folders;
:func:`recsys.train.launch.list_all_runs` adds the runs still starting and the launcher's fresh state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .lock import RunNotResumable

ACTIVE_STATES = ("starting", "running")
# a run in one of these states trains no more; its model/ folder, if any, is the best checkpoint it kept
ENDED_STATES = ("finished", "stopped", "interrupted")
MODEL_STAGE = ".stage.json"  # in model/: which model it is, written in the same rename as the model


def resume_refusal(config: dict[str, Any]) -> str | None:
    """Why a run with this configuration (a RunConfig dict) cannot be resumed, or None when it can: a
    cross-validation keeps no checkpoint of its folds to continue from."""
    if config.get("protocol") == "kfold":
        return "a cross-validation run cannot be resumed: start a new run with the same settings"
    return None


def refuse_resume(run_id: str, config: dict[str, Any]) -> None:
    """:class:`~recsys.train.lock.RunNotResumable` when :func:`resume_refusal` has a reason (the launcher and
    the trainer ask before anything about the run changes)."""
    refusal = resume_refusal(config)
    if refusal is not None:
        raise RunNotResumable(f"run {run_id}: {refusal}", {"reason": "not_resumable", "run_id": run_id})


def single_fold(metrics: dict[str, Any] | None) -> bool:
    """A cross-validation stopped after its first fold: one fold's figures, with no mean, no spread and no
    fold-to-fold comparison to judge a difference by."""
    kfold = (metrics or {}).get("kfold")
    return isinstance(kfold, dict) and int(kfold.get("completed") or 0) < 2


@dataclass(frozen=True)
class RunRecord:
    """One run as listed: its id and folder, its configuration, its status and (once evaluated) its metrics.

    ``config`` is the RunConfig as a dict (only ``dataset`` and ``model`` for a run still starting, which
    has not written its config.json yet); ``status`` is the status.json of the run (or what the launcher
    knows of it); ``metrics`` is metrics.json, None until the run has been evaluated. A record is a
    snapshot: list the runs again to see a run progress.
    """

    run_id: str
    path: Path
    config: dict[str, Any]
    status: dict[str, Any]
    metrics: dict[str, Any] | None = None
    privacy: dict[str, Any] | None = None  # privacy.json: users since forgotten from its dataset (recsys.privacy)
    metrics_damaged: str | None = None  # a metrics.json that cannot be read: the file and what to do

    @property
    def dataset(self) -> str | None:
        """The dataset the run trains on (None if its configuration does not say)."""
        return self.config.get("dataset")

    @property
    def dataset_imported_at(self) -> str | None:
        """When the import of the dataset the run trained on was made (None for runs from before this was
        recorded): a different time from the dataset's current one means it was replaced since."""
        value = self.status.get("dataset_imported_at")
        return str(value) if value else None

    @property
    def model(self) -> str | None:
        """The model it trains: fusion, or a baseline's name (mostpop, ease, ...)."""
        return self.config.get("model")

    def fusion_option(self, name: str) -> Any:
        """An option of the fusion model (``fusion_options``; None when the configuration does not say)."""
        options = self.config.get("fusion_options")
        return options.get(name) if isinstance(options, dict) else None

    @property
    def flat_config(self) -> dict[str, Any]:
        """The configuration with the nested model options as ``fusion.epochs``, ``ease.l2``, ... (for tables)."""
        flat: dict[str, Any] = {}
        used = {self.model, *(self.config.get("baselines") or [])}
        for key, value in self.config.items():
            if key.endswith("_options") and isinstance(value, dict):
                model = key.removesuffix("_options")
                if model not in used:  # the options of a model this run did not train say nothing about it
                    continue
                flat |= {f"{model}.{name}": v for name, v in value.items()}
            else:
                flat[key] = value
        return flat

    @property
    def model_label(self) -> str:
        """The model's name with the fusion variant when it is not the default attention one, so that
        runs of the ablation variants can be told apart in pickers: ``fusion (mean)``."""
        model = self.model or "?"
        variant = self.fusion_option("fusion")
        if model == "fusion" and variant not in (None, "attention"):
            return f"fusion ({variant})"
        return model

    @property
    def state(self) -> str:
        """starting / running / finished / stopped / failed / interrupted, or unknown."""
        return self.status.get("state") or "unknown"

    @property
    def started(self) -> float | None:
        """When the run (or its process, while starting) started, in seconds since the epoch."""
        return self.status.get("started")

    @property
    def paused_seconds(self) -> float:
        """How long the run sat stopped before it was resumed (0 for a run never resumed)."""
        return float(self.status.get("paused_seconds") or 0.0)

    @property
    def ended(self) -> float | None:
        """When it ended (None while it is starting or training)."""
        return self.status.get("ended")

    @property
    def active(self) -> bool:
        """Still starting or training: not to be deleted or resumed, worth polling."""
        return self.state in ACTIVE_STATES

    @property
    def has_model(self) -> bool:
        """A saved model (``model/config.json``) is there to load: the final one, or the best checkpoint so
        far of a run still training."""
        return (self.path / "model" / "config.json").is_file()

    @property
    def model_damaged(self) -> str | None:
        """What is wrong with the saved model of an ended run (a file that cannot be read, and what to do), or
        None: when it is whole, when there is none, and while the run trains (its files are being replaced)."""
        if self.state not in ENDED_STATES or not self.has_model:
            return None
        return model_damage(self.path)

    @property
    def usable(self) -> bool:
        """The run has ended (finished, stopped or interrupted) and kept a model whose files read: the pages
        that recommend and explain offer only these (a model still being written is not read)."""
        return self.state in ENDED_STATES and self.has_model and self.model_damaged is None

    @property
    def needs_retrain_for_privacy(self) -> bool:
        """Users were forgotten from the run's dataset after it was trained: its saved model still embeds them
        until the run is retrained as a new run (``python -m recsys forget`` writes the marker)."""
        return bool((self.privacy or {}).get("needs_retrain"))

    @property
    def forgotten_users(self) -> int:
        """How many forgotten users the run still holds (0 when none)."""
        return int((self.privacy or {}).get("forgotten_users") or 0)

    @property
    def retrained_as(self) -> list[str]:
        """The runs started to replace this one after a forget (it still holds the users until deleted)."""
        return list((self.privacy or {}).get("retrained_as") or [])

    @property
    def test_metrics(self) -> dict[str, Any]:
        """The model's metrics on the test split ({} until the run has been evaluated)."""
        return ((self.metrics or {}).get("model") or {}).get("test") or {}

    @property
    def model_history(self) -> dict[str, Any]:
        """The model's training history, as a dict: the fusion model saves one (``epochs``, the attribute
        weights, the chosen L2...); BPR-MF and LightGCN save their per-epoch records as a list, numbered from
        1, given here as ``{"epochs": records}`` numbered from 0 as the fusion model's. ``{}`` when there is
        none."""
        history = ((self.metrics or {}).get("model") or {}).get("history")
        if isinstance(history, dict):
            return history
        if isinstance(history, list):
            records = [record for record in history if isinstance(record, dict)]
            return {
                "epochs": [
                    {**record, "epoch": record["epoch"] - 1} if isinstance(record.get("epoch"), int) else record
                    for record in records
                ]
            }
        return {}

    @property
    def partial_folds(self) -> str | None:
        """ "2 of 5 folds" for a cross-validation stopped before its last fold (its figures are the mean of the
        folds done, not comparable with a finished one's as they stand), None otherwise."""
        kfold = (self.metrics or {}).get("kfold")
        if not isinstance(kfold, dict):
            return None
        try:
            done, folds = int(kfold.get("completed") or 0), int(kfold.get("folds") or 0)
        except (TypeError, ValueError):
            return None
        return f"{done} of {folds} folds" if 0 < folds and done < folds else None

    @property
    def has_test_metrics(self) -> bool:
        """The run evaluated its model (metrics.json has a model entry): comparable with other runs."""
        return bool((self.metrics or {}).get("model"))

    @property
    def baseline_metrics(self) -> dict[str, dict[str, Any]]:
        """Each baseline trained beside the model: {name: its result, with ``test`` metrics}."""
        return (self.metrics or {}).get("baselines") or {}

    @property
    def best_baseline(self) -> tuple[str, float | None] | None:
        """The baseline with the best test NDCG@20 and that NDCG@20, None when no baseline was trained."""
        scores = {name: (result.get("test") or {}).get("ndcg@20") for name, result in self.baseline_metrics.items()}
        if not scores:
            return None
        name = max(scores, key=lambda n: scores[n] or 0)
        return name, scores[name]

    @property
    def verdict_against_best_baseline(self) -> str | None:
        """Whether the model's test NDCG@20 differs from the best baseline's by more than the noise: "clearly
        better", "clearly worse" or "within the noise" (user by user on one split, fold by fold under k-fold);
        None when the run has no such comparison (no baseline, or a run from before they were recorded)."""
        best = self.best_baseline
        metrics = self.metrics or {}
        if single_fold(metrics):
            return None
        pairs = (metrics.get("kfold") or {}).get("paired") if "kfold" in metrics else metrics.get("paired")
        paired = ((pairs or {}).get(best[0]) or {}).get("ndcg@20") if best else None
        if not isinstance(paired, dict) or "clear_at_95" not in paired:
            return None
        if not paired["clear_at_95"]:
            return "within the noise"
        return "clearly better" if paired["mean_difference"] > 0 else "clearly worse"


# the fusion model's options that run configs held at the top level before they were nested in fusion_options
FLAT_FUSION_OPTIONS = ("fusion", "loss", "epochs", "patience", "lr", "ease_l2", "popularity_prior")


def nest_flat_options(config: dict[str, Any]) -> dict[str, Any]:
    """A run's config as written before the model options were nested (``epochs``, ``lr``, ... at the top
    level) in today's form: those keys moved into ``fusion_options``. Today's form is returned unchanged."""
    flat = {name: config[name] for name in FLAT_FUSION_OPTIONS if name in config}
    if not flat:
        return config
    nested = config.get("fusion_options")
    nested = nested if isinstance(nested, dict) else {}
    return {k: v for k, v in config.items() if k not in flat} | {"fusion_options": {**nested, **flat}}


def read_run_record(folder: Path, status: dict[str, Any]) -> RunRecord | None:
    """The record of one run folder with the given status, or None when the folder holds no readable run.

    A folder without config.json, or with one that is not a JSON object with a ``config`` object (damaged
    by hand or by a full disk: the trainer writes it atomically), is left out rather than failing the
    whole listing. A metrics.json that cannot be read counts as no metrics yet, and ``metrics_damaged`` names it.
    """
    try:
        config = json.loads((folder / "config.json").read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(config, dict):
        return None
    config = nest_flat_options(config)
    metrics, damaged = None, None
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
        if not isinstance(metrics, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        from ..models.base import _reason

        metrics = None
        damaged = (
            f"runs/{folder.name}/metrics.json {_reason(exc)}; evaluate it again with python -m recsys train "
            f"--resume {folder.name} --force, or delete the run"
        )
    from ..privacy import read_marker

    return RunRecord(
        run_id=folder.name,
        path=folder,
        config=config,
        status=status,
        metrics=metrics,
        privacy=read_marker(folder),
        metrics_damaged=damaged,
    )


def _resume_advice(run_id: str) -> str:
    return (
        f"train the run again: python -m recsys train --resume {run_id} (add --force for a finished run), "
        "or start a new run"
    )


# run folder -> (the model files' size and modification time, what model_damage found); listings run often
_MODEL_CHECKS: dict[str, tuple[tuple, str | None]] = {}


def model_damage(run_dir: Path) -> str | None:
    """What is damaged in ``run_dir``'s saved model (the file, relative to the workspace, and what to do), or
    None when its files read. Cheap: JSON parses and the weights' header, cached by size and modification time."""
    from ..models.base import MODEL_FILES, ModelDamaged, check_saved_model

    folder = Path(run_dir) / "model"
    signature: list[tuple[int, int] | None] = []  # (mtime, size) per file, None where it is missing
    for name in MODEL_FILES:
        try:
            stat = (folder / name).stat()
            signature.append((stat.st_mtime_ns, stat.st_size))
        except OSError:
            signature.append(None)
    key = str(folder)
    cached = _MODEL_CHECKS.get(key)
    if cached is not None and cached[0] == tuple(signature):
        return cached[1]
    try:
        check_saved_model(folder)
        problem = None
    except ModelDamaged as exc:
        problem = str(_for_run(run_dir, exc))
    _MODEL_CHECKS[key] = (tuple(signature), problem)
    return problem


def _for_run(run_dir: Path, exc: Any) -> Any:
    """The same :class:`ModelDamaged` with the file named from the workspace (runs/RUN/model/...) and the
    command that retrains the run."""
    from ..models.base import ModelDamaged

    run_dir = Path(run_dir)
    file = Path(exc.file)
    try:
        shown = file.relative_to(run_dir.parent.parent).as_posix()
    except ValueError:
        shown = file.as_posix()
    return ModelDamaged(shown, exc.reason, _resume_advice(run_dir.name))


class RunDamaged(RuntimeError):
    """A run whose config.json cannot be read: names the file and what to do (the CLI prints it plainly)."""


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """The ``config`` object of ``run_dir/config.json``; :class:`RunDamaged` naming the file (from the workspace)
    when it is missing, truncated or not a run's config."""
    run_dir = Path(run_dir)
    file = run_dir / "config.json"
    try:
        config = json.loads(file.read_text(encoding="utf-8"))["config"]
        if not isinstance(config, dict):
            raise ValueError("its config is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        from ..models.base import _reason

        reason = _reason(exc) if not isinstance(exc, (KeyError, TypeError)) else "cannot be read (not a run's config)"
        shown = f"runs/{run_dir.name}/config.json"
        raise RunDamaged(f"{shown} {reason}; delete the run (Experiments page) and train it again") from None
    return nest_flat_options(config)


def load_run_model(run_dir: Path) -> Any:
    """The saved model of a run; :class:`recsys.models.ModelDamaged` naming the file and the command that
    retrains the run when one of its files cannot be read."""
    from ..models.base import ModelDamaged, Recommender

    try:
        return Recommender.load(Path(run_dir) / "model")
    except ModelDamaged as exc:
        raise _for_run(run_dir, exc) from exc


def read_model_stage(model_dir: Path) -> dict[str, Any]:
    """``model/.stage.json``: ``stage`` ("best", "fitted" or "final"), ``fit`` (the id its metrics carry) and the
    fit's ``history``; {} when there is none (a model saved before these notes, or no model)."""
    try:
        info = json.loads((Path(model_dir) / MODEL_STAGE).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) and (Path(model_dir) / "config.json").is_file() else {}


def run_complete(folder: Path) -> bool:
    """Every result of the run is on disk: metrics.json is complete and the model it promises is saved. A run
    killed after that (before its status said "finished") lost nothing."""
    try:
        config = json.loads((folder / "config.json").read_text())["config"]
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if not isinstance(config, dict) or not isinstance(metrics, dict) or not _metrics_complete(metrics, config):
        return False
    if not (folder / "model" / "config.json").is_file():
        return False
    stage = read_model_stage(folder / "model")
    if not stage:  # saved before stage notes: the complete metrics say the final model was noted after saving it
        return True
    wanted = ("final",) if config.get("final_model", True) else ("fitted", "final")
    return stage.get("stage") in wanted and stage.get("fit") == metrics.get("fit")


def _metrics_complete(metrics: dict[str, Any], config: dict[str, Any]) -> bool:
    if "complete" in metrics:
        return metrics["complete"] is True
    # written before the flag: complete when every result the configuration asks for is there
    if not metrics.get("model") or (config.get("final_model", True) and "final_model" not in metrics):
        return False
    wanted = set(config.get("baselines") or []) - {config.get("model")}
    if not wanted <= set(metrics.get("baselines") or {}):
        return False
    protocol = (metrics.get("split") or {}).get("protocol")
    return not (config.get("cold_start") and protocol not in ("sparse", "kfold") and not metrics.get("cold_start"))


# ----------------------------------------------------------------------------- a run against its dataset now


def users_gone_from_dataset(model: Any, bundle: Any) -> set[str]:
    """The model's users that ``bundle`` (the run's dataset as it is imported now) no longer has: neither an
    interaction nor a users row. A dataset imported again without some people: the run still knows them, and
    ``recommend``, ``export``, the HTTP API and the Recommendations page do not serve them (empty when the
    dataset is gone: nothing to compare with)."""
    if bundle is None:
        return set()
    known = set(bundle.interactions["user_id"].astype(str))
    if getattr(bundle, "users", None) is not None and "user_id" in bundle.users.columns:
        known |= set(bundle.users["user_id"].astype(str))
    return {str(u) for u in np.asarray(model.user_ids).astype(str) if u not in known}


def follow_current_import(model: Any, bundle: Any) -> Any:
    """Bring a loaded run's model in line with its dataset as imported now (``bundle``; None when the dataset is
    gone: the model stays as trained) and return :func:`in_current_catalogue`'s mask. The items the current
    import marks as not for sale (:func:`recsys.data.shop_exports.not_for_sale`: a draft, an archived product)
    become the model's not-for-sale items, so a product archived since training is not offered and one back on
    sale is, without training again. ``recommend``, ``recommend-new``, ``export``, the HTTP API and the pages
    load runs through it."""
    if bundle is not None:
        from .run import not_for_sale_ids

        marked = set(not_for_sale_ids(bundle.items))
        model.mark_not_for_sale(np.isin(np.asarray(model.item_ids).astype(str), list(marked)) if marked else None)
    return in_current_catalogue(model, bundle)


def in_current_catalogue(model: Any, bundle: Any) -> Any:
    """``[n_items]`` bool over the model's items: True for those still in ``bundle`` (the run's dataset as it is
    imported now), or None when all are (or the dataset is gone: nothing to compare with). A dataset imported
    again under its name can drop items the run was trained on: they are not recommended any more."""
    if bundle is None:
        return None
    present = np.isin(np.asarray(model.item_ids).astype(str), bundle.items["item_id"].astype(str).to_numpy())
    return None if present.all() else present
