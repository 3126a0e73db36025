"""CLI commands of the training layer: ``train``, ``evaluate``, ``fairness``, ``recommend``, ``export``, ``runs``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import types
import typing
from pathlib import Path
from typing import Any

from ..cli import CommandError, TqdmProgress, _say, _workspace, command, positive_int, unknown_run
from ..models.config import FusionConfig, field_default, field_types
from .lock import RunRefused
from .records import FLAT_FUSION_OPTIONS, read_run_config, single_fold
from .report import user_paired_verdict
from .run import SHARED_FUSION_OPTIONS, RunConfig, list_runs, read_progress, read_status, train_run


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        dest="dataset",
        default=None,
        help="dataset name in the workspace, or a bundle folder/.zip to import first (default: demo)",
    )
    p.add_argument(
        "--run-id",
        default=None,
        help="name of the run folder under workspace/runs: letters, digits, "
        "'.', '_', '-' (default: time-dataset-model-xxxx)",
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="RUN_ID",
        help="continue a stopped or interrupted run "
        "(refused while it is still training, and for a finished run unless --force)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="with --resume: train a finished run again (its model and metrics are replaced)",
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="a run's config.json (or a JSON object of RunConfig options) to train with; the other "
        "options given override it (the app's launcher starts every run this way)",
    )
    for flag, aliases, dest, item, kind in config_flags():
        kw = _argument_kind(kind)
        if "action" not in kw and "choices" not in kw:
            kw.setdefault("metavar", dest.rsplit(".", 1)[-1].upper())
        shown = field_default(item)
        help_text = (
            f"{item.metadata['help']} (default: {' '.join(map(str, shown)) if isinstance(shown, list) else shown})"
        )
        p.add_argument(flag, *aliases, dest=dest, default=None, help=help_text.replace("%", "%%"), **kw)


def config_flags() -> list[tuple[str, list[str], str, dataclasses.Field, Any]]:
    """``(flag, aliases, dest, field, type)`` for every RunConfig option, generated from the dataclass
    fields: ``--name`` for the run's own options and ``--model.name`` for the nested model options
    (``--fusion.epochs``, ``--ease.l2``, ``--itemknn.k-neighbors``). The fusion options that were run options
    before they were nested keep their old flags as aliases (``--epochs``, ``--lr``, ``--ease-l2``, ...); the
    fusion options the run sets itself (modalities, seed, device) have none of their own."""
    flags: list[tuple[str, list[str], str, dataclasses.Field, Any]] = []
    types = field_types(RunConfig)
    for item in dataclasses.fields(RunConfig):
        cls = item.metadata.get("nested")
        if item.name == "dataset":
            continue
        if cls is None:
            flags.append(("--" + item.name.replace("_", "-"), [], item.name, item, types[item.name]))
            continue
        prefix = item.name.removesuffix("_options")
        sub_types = field_types(cls)
        for sub in dataclasses.fields(cls):
            if cls is FusionConfig and sub.name in SHARED_FUSION_OPTIONS:
                continue
            aliases = (
                ["--" + sub.name.replace("_", "-")] if cls is FusionConfig and sub.name in FLAT_FUSION_OPTIONS else []
            )
            flags.append(
                (
                    f"--{prefix}.{sub.name.replace('_', '-')}",
                    aliases,
                    f"{item.name}.{sub.name}",
                    sub,
                    sub_types[sub.name],
                )
            )
    return flags


def _auto_or_float(text: str) -> float | str:
    return "auto" if text == "auto" else float(text)


def _argument_kind(kind: Any) -> dict[str, Any]:
    """argparse keywords for a field's type: bool -> --x/--no-x, list[T] -> nargs, Literal -> choices."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is list:
        return {"nargs": "*", "type": args[0] if args else str}
    if origin is typing.Literal:
        return {"choices": list(args)}
    if origin in (typing.Union, types.UnionType):  # a number or "auto"
        return {"type": _auto_or_float, "metavar": "{auto,NUMBER}"}
    return {"type": kind}


def _config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig options of ``--config FILE`` (if given) with the flags given on top, as a dict."""
    options: dict[str, Any] = {}
    if args.config:
        try:
            data = json.loads(Path(args.config).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read --config {args.config}: {exc}") from exc
        data = data.get("config", data) if isinstance(data, dict) else data
        if not isinstance(data, dict):
            raise CommandError(f"--config {args.config} is not a JSON object of run options")
        try:
            options = RunConfig.from_dict(data).to_dict()
        except (TypeError, ValueError) as exc:
            raise CommandError(f"--config {args.config}: {exc}") from exc
    for _, _, dest, _, _ in config_flags():
        value = getattr(args, dest)
        if value is None:
            continue
        if "." in dest:
            group, name = dest.split(".", 1)
            options.setdefault(group, {})[name] = value
        else:
            options[dest] = value
    return options


def _train_config(args: argparse.Namespace, workspace: Any) -> RunConfig | None:
    """The run's config from the command line (None for --resume); imports a bundle given as a path and
    makes the demo dataset when it is asked for and missing."""
    from ..workspace import DatasetDamaged, validate_name

    for kind, value in (("run id", args.run_id), ("run id", args.resume)):
        if value is not None:
            validate_name(kind, value)  # a run id, never a path (InvalidName: main prints it plainly)
    if args.force and not args.resume:
        raise CommandError("--force only applies with --resume RUN_ID")
    if args.resume:
        config = None
    else:
        options = _config_from_args(args)
        dataset = args.dataset or options.pop("dataset", None) or "demo"
        if Path(dataset).exists():  # a bundle on disk: import it first, then train on it
            imported = workspace.import_bundle(dataset)
            if not imported.ok:
                raise CommandError(
                    "the bundle has errors; nothing was trained:\n" + imported.report.format(), imported.to_dict()
                )
            dataset = imported.name
        else:
            validate_name("dataset name", dataset)
        if dataset == "demo" and not workspace.has_dataset("demo"):
            from ..workspace import ensure_demo_dataset

            ensure_demo_dataset(workspace)
        if not workspace.has_dataset(dataset):
            names = ", ".join(i.name for i in workspace.list_datasets()) or "none yet"
            raise CommandError(f"no dataset named '{dataset}' (available: {names})")
        problem = workspace.dataset_damage(dataset)
        if problem:  # refused before a run folder is made (main prints it plainly)
            raise DatasetDamaged(dataset, problem)
        try:
            config = RunConfig.from_dict({"dataset": dataset, **options})
        except (TypeError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
    return config


@command(
    "train", "train a model (and its baselines) on a dataset and evaluate it on held-out interactions", _train_arguments
)
def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from .. import distributed
    from ..allocator import reuse_freed_memory

    reuse_freed_memory()  # a training process ends: large freed arrays are kept for the next one (~1.5 s a fit)

    # under torchrun (``torchrun --nproc_per_node N -m recsys train ...``): one process group for the command
    with distributed.session():
        return _train_command(args, distributed)


def _train_command(args: argparse.Namespace, distributed: Any) -> dict[str, Any]:
    workspace = _workspace(args)
    if not distributed.is_primary():
        args.quiet = True  # rank 0 speaks for the run (--json still ends each rank's output with its object)
    # the dataset is imported (or the demo made) by rank 0 alone; the others receive its config
    try:
        config = distributed.on_primary(lambda: _train_config(args, workspace))
    except distributed.PrimaryFailed as exc:
        raise CommandError(str(exc)) from exc
    progress = TqdmProgress(not args.quiet)
    started = time.perf_counter()
    try:
        run_dir = (
            train_run(workspace, config, run_id=args.resume or args.run_id, resume=bool(args.resume), progress=progress)
            if config
            else train_run(workspace, RunConfig(), run_id=args.resume, resume=True, progress=progress, force=args.force)
        )
    except RunRefused as exc:  # still training, or finished without --force: a plain message, no traceback
        raise CommandError(str(exc), exc.details) from exc
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError, KeyError) as exc:
        raise CommandError(str(exc)) from exc
    finally:
        progress.close()
    status = read_status(run_dir)
    metrics_file = run_dir / "metrics.json"
    # a stopped run may not have been evaluated yet (a stop does not wait for an evaluation)
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    if metrics.get("model"):
        _print_metrics(args, metrics)
    _say(args, f"run {run_dir.name} {status['state']} in {time.perf_counter() - started:.1f} s -> {run_dir}")
    if status["state"] == "stopped":
        _say(
            args,
            f"stopped during {status.get('stopped_during') or 'training'}; continue it with: "
            f"python -m recsys train --resume {run_dir.name}",
        )
    return {
        "run_id": run_dir.name,
        "run_dir": str(run_dir),
        "state": status["state"],
        "stopped_during": status.get("stopped_during"),
        "seconds": round(time.perf_counter() - started, 2),
        "metrics": _compact(metrics) if metrics else {},
    }


def _compact(metrics: dict[str, Any]) -> dict[str, Any]:
    out = {"model": {k: v for k, v in metrics.get("model", {}).items() if k != "history"}}
    out["baselines"] = metrics.get("baselines", {})
    out["cold_start"] = metrics.get("cold_start", {})
    out["split"] = metrics.get("split", {})
    if metrics.get(
        "paired"
    ):  # one split's test users, model minus each baseline (see recsys.evaluate.paired_bootstrap)
        out["paired"] = metrics["paired"]
    if "kfold" in metrics:
        out["kfold"] = metrics["kfold"]
        out["model"].pop("folds", None)
        out["per_fold"] = {
            name: result.get("folds", [])
            for name, result in [(out["model"].get("name", "model"), metrics["model"]), *metrics["baselines"].items()]
        }
    return out


def _print_metrics(args: argparse.Namespace, metrics: dict[str, Any]) -> None:
    rows = [(metrics["model"].get("name", "model"), metrics["model"])] + list(metrics.get("baselines", {}).items())
    split = metrics.get("split") or {}
    if split.get("protocol"):  # which protocol the figures are under (auto picks one from the data)
        counts = (
            f"; {split['train']:,} train / {split['valid']:,} valid / {split['test']:,} test interactions"
            if all(isinstance(split.get(part), int) for part in ("train", "valid", "test"))
            else ""
        )
        _say(
            args,
            f"protocol {split['protocol']}: {split.get('users', 0):,} users, {split.get('items', 0):,} items{counts}",
        )
    _say(args, f"{'model':<12} {'recall@10':>9} {'recall@20':>9} {'ndcg@10':>8} {'ndcg@20':>8} {'fit s':>7}")
    for name, result in rows:
        test = result["test"]
        _say(
            args,
            f"{name:<12} {test['recall@10']:>9.4f} {test['recall@20']:>9.4f} {test['ndcg@10']:>8.4f} "
            f"{test['ndcg@20']:>8.4f} {result.get('fit_seconds') or 0:>7.1f}",
        )
        if "test_std" in result and not single_fold(metrics):
            std = result["test_std"]
            _say(
                args,
                f"{'  ± std':<12} {std['recall@10']:>9.4f} {std['recall@20']:>9.4f} {std['ndcg@10']:>8.4f} "
                f"{std['ndcg@20']:>8.4f}",
            )
    kfold = metrics.get("kfold")
    if kfold and single_fold(metrics):
        _say(args, f"1 of {kfold['folds']} folds (stopped): the table shows that fold alone; no comparison")
    elif kfold:
        _say(args, f"{kfold['completed']} of {kfold['folds']} folds; the table shows the mean (± std over folds)")
        for name, paired in kfold["paired"].items():
            d = paired["ndcg@20"]
            verdict = (
                "a clear difference (the 95 % interval excludes 0)"
                if d["clear_at_95"]
                else "within the fold-to-fold noise"
            )
            _say(
                args,
                f"ndcg@20 minus {name}: {d['mean_difference']:+.4f} (95 % interval {d['interval_95'][0]:+.4f} "
                f"to {d['interval_95'][1]:+.4f}; better on {d['folds_better']} of {d['folds']} folds): {verdict}",
            )
    if not kfold:
        for name, paired in (metrics.get("paired") or {}).items():
            d = paired["ndcg@20"]
            _say(
                args,
                f"ndcg@20 minus {name}: {d['mean_difference']:+.4f} (x{d['ratio']:.3f}; 95 % interval "
                f"{d['interval_95'][0]:+.4f} to {d['interval_95'][1]:+.4f} over {d['resamples']:,} bootstrap "
                f"resamples of the {d['users']:,} test users): {user_paired_verdict(d)}",
            )
    for name, result in metrics.get("cold_start", {}).items():
        _say(
            args,
            f"cold start {name:<12} recall@20 {result['test']['recall@20']:.4f} "
            f"ndcg@20 {result['test']['ndcg@20']:.4f}",
        )


def _run_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id (folder name under workspace/runs)")


@command("evaluate", "print the stored evaluation of a run (test metrics against its baselines)", _run_argument)
def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    run_dir = _run_dir(args)
    metrics_file = run_dir / "metrics.json"
    status = read_status(run_dir)
    if not metrics_file.is_file():
        raise CommandError(f"run {args.run} has no metrics yet (state: {status['state']})")
    try:
        metrics = json.loads(metrics_file.read_text())
        if not isinstance(metrics, dict) or not isinstance(metrics.get("model"), dict):
            raise ValueError("not the metrics of a model")
        _print_metrics(args, metrics)
        compact = _compact(metrics)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # truncated, emptied, hand-edited
        from .records import _resume_advice

        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CommandError(
            f"runs/{run_dir.name}/metrics.json cannot be read ({first}); {_resume_advice(run_dir.name)}"
        ) from exc
    return {"run_id": run_dir.name, "state": status["state"], "metrics": compact}


def _run_dir(args: argparse.Namespace):
    workspace = _workspace(args)
    run_dir = workspace.run_path(args.run)  # a run id, never a path (InvalidName: main prints it plainly)
    if not (run_dir / "config.json").is_file():
        raise unknown_run(workspace, args.run)
    return run_dir


def _recommend_arguments(p: argparse.ArgumentParser) -> None:
    _run_argument(p)
    p.add_argument("--user", required=True, help="user id")
    p.add_argument("--k", type=positive_int, default=10, help="how many items (default 10)")
    p.add_argument("--include-seen", action="store_true", help="do not exclude items the user already has")
    p.add_argument(
        "--allow-variants",
        action="store_true",
        help="allow several variants of one product (same title but colour/size) in the list",
    )
    p.add_argument("--diversity", type=float, default=0.0, help="MMR re-ranking for variety, 0 to 1 (default 0)")
    p.add_argument("--explain", action="store_true", help="add each item's explanation (modality shares, evidence)")
    _exposure_arguments(p)


def _exposure_arguments(p: argparse.ArgumentParser, lists: str = "the list") -> None:
    """``--exposure-group/-strength/-target`` (recommend and export; read by :func:`_exposure_option`)."""
    p.add_argument(
        "--exposure-group",
        default=None,
        metavar="COLUMN=VALUE",
        help=f"exposure-aware re-ranking: the item group whose share of {lists} to steer, e.g. genres=Drama",
    )
    p.add_argument(
        "--exposure-strength",
        type=float,
        default=0.5,
        help="with --exposure-group: 0 = plain ranking, 1 = follow the target share closely (default 0.5)",
    )
    p.add_argument(
        "--exposure-target",
        type=float,
        default=None,
        help=f"with --exposure-group: the wanted share of {lists} (default: the group's catalogue share)",
    )


def run_titles(model: Any, bundle: Any) -> tuple[dict[str, str], Any]:
    """(item id -> title from the dataset's first text column, the variant group of each of the model's items or
    None): what ``recommend`` shows and the near-duplicate guard it applies (``bundle``: the run's dataset, or
    None when it is gone). The HTTP API (:mod:`recsys.serve`) uses the same, so both list the same items."""
    from ..data import stats
    from ..models.rerank import variant_groups

    titles: dict[str, str] = {}
    if bundle is not None:
        text_columns = bundle.schema.columns_with("items", "text")
        if text_columns:
            # an item without a title has none here (not "nan"): the lists show its id alone
            named = bundle.items[["item_id", text_columns[0]]].dropna()
            named = named[named[text_columns[0]].astype(str).str.strip() != ""]
            titles = dict(zip(named["item_id"].astype(str), named[text_columns[0]].astype(str)))
    groups = None
    if titles:
        makers = None
        assert bundle is not None
        maker = stats.maker_column(bundle.items, bundle.schema.items)
        if maker is not None:  # one maker's article in several colours, not six vendors' "Everyday Hoodie"
            by_item = dict(zip(bundle.items["item_id"].astype(str), bundle.items[maker]))
            makers = [by_item.get(str(i)) for i in model.item_ids]
        groups = variant_groups([titles.get(str(i)) for i in model.item_ids], makers)
    return titles, groups


@command("recommend", "top-K recommendations for a user from a trained run", _recommend_arguments)
def cmd_recommend(args: argparse.Namespace) -> dict[str, Any]:
    from .records import follow_current_import, load_run_model, users_gone_from_dataset

    run_dir = _run_dir(args)
    if not (run_dir / "model" / "config.json").is_file():
        raise CommandError(f"run {args.run} has no saved model yet (state: {read_status(run_dir)['state']})")
    model = load_run_model(run_dir)  # ModelDamaged names the file (main prints it plainly)
    workspace = _workspace(args)
    dataset = read_run_config(run_dir)["dataset"]  # RunDamaged names a damaged config.json
    bundle = workspace.load_dataset(dataset) if workspace.has_dataset(dataset) else None
    titles, groups = run_titles(model, bundle)
    if args.allow_variants:
        groups = None
    if not 0.0 <= args.diversity <= 1.0:
        raise CommandError(f"--diversity must be between 0 and 1, not {args.diversity}")
    exposure = _exposure_option(args, bundle, dataset, model) if args.exposure_group else None
    in_catalogue = follow_current_import(model, bundle)
    if str(args.user) in users_gone_from_dataset(model, bundle):
        raise CommandError(
            f"user {args.user} is no longer in dataset {dataset} (it was imported again after run {run_dir.name} "
            "was trained); train again"
        )
    try:
        items = model.recommend(
            args.user,
            k=args.k,
            exclude_seen=not args.include_seen,
            diversity=args.diversity,
            groups=groups,
            exposure=exposure,
            filters=in_catalogue,
        )
    except KeyError as exc:
        raise CommandError(str(exc.args[0])) from exc
    rows = [
        {"rank": r + 1, "item_id": item, "score": score, "title": titles.get(item)}
        for r, (item, score) in enumerate(items)
    ]
    if args.explain:
        from ..explain.commands import explanations_for

        for row, explanation in zip(rows, explanations_for(model, bundle, args.user, [r["item_id"] for r in rows])):
            row["explanation"] = explanation
    for row in rows:
        _say(args, f"{row['rank']:>3}. {row['item_id']:<12} {row['score']:>9.4f}  {row['title'] or ''}")
        if row.get("explanation", {}).get("sentence"):
            _say(args, f"     {row['explanation']['sentence']}")
    result: dict[str, Any] = {
        "run_id": run_dir.name,
        "user": args.user,
        "recommendations": rows,
        "items_not_for_sale": int((~model.for_sale()).sum()),  # as the dataset imported now marks them
    }
    if in_catalogue is not None:
        result["items_no_longer_in_catalogue"] = int((~in_catalogue).sum())
        _say(
            args,
            f"({result['items_no_longer_in_catalogue']:,} of this run's items are no longer in dataset {dataset}: "
            "not recommended; train again to use the dataset as it is now)",
        )
    if exposure is not None:
        membership = exposure[0]
        share = float(sum(membership[model.item_index(r["item_id"])] for r in rows) / max(len(rows), 1))
        result["exposure"] = {
            "group": args.exposure_group,
            "target": exposure[1],
            "strength": exposure[2],
            "share_in_list": share,
        }
        _say(
            args,
            f"{args.exposure_group}: {share:.2f} of this list (target {exposure[1]:.2f}, strength {exposure[2]:g})",
        )
    return result


def _exposure_option(args: argparse.Namespace, bundle: Any, dataset: str, model: Any) -> tuple[Any, float, float]:
    """``--exposure-group COLUMN=VALUE`` -> (membership over the model's items, target share, strength);
    ``bundle``: the run's dataset, loaded by the caller (None when it is gone)."""
    import numpy as np
    import pandas as pd

    from ..data.schema import CATEGORICAL, MULTI_LABEL
    from ..models.rerank import group_membership

    column, _, value = args.exposure_group.partition("=")
    if not column or not value:
        raise CommandError(f"--exposure-group takes COLUMN=VALUE (e.g. genres=Drama), not {args.exposure_group!r}")
    if not 0.0 <= args.exposure_strength <= 1.0:
        raise CommandError(f"--exposure-strength must be between 0 and 1, not {args.exposure_strength}")
    if args.exposure_target is not None and not 0.0 <= args.exposure_target <= 1.0:
        raise CommandError(f"--exposure-target must be between 0 and 1, not {args.exposure_target}")
    if bundle is None:
        raise CommandError(f"the run's dataset '{dataset}' is no longer in the workspace")
    role = bundle.schema.items.get(column)
    if column not in bundle.items.columns or role not in (CATEGORICAL, MULTI_LABEL):
        options = bundle.schema.columns_with("items", CATEGORICAL, MULTI_LABEL)
        raise CommandError(f"'{column}' is not a categorical item column; choose one of {', '.join(options) or 'none'}")
    items = bundle.items.drop_duplicates("item_id")
    aligned = items.set_index(items["item_id"].astype(str).to_numpy()).reindex(pd.Index(model.item_ids))
    membership = group_membership(aligned, column, value, role == MULTI_LABEL, bundle.schema.multi_label_separator)
    if not membership.any():
        raise CommandError(f"no item has {column} = {value!r}")
    target = float(np.mean(membership)) if args.exposure_target is None else float(args.exposure_target)
    return membership, target, float(args.exposure_strength)


def _export_arguments(p: argparse.ArgumentParser) -> None:
    _run_argument(p)
    p.add_argument("--k", type=int, default=50, help="items per user (default 50; at most 32767)")
    p.add_argument(
        "--out",
        required=True,
        help="file to write: Parquet, or CSV when it ends in .csv (text cells "
        "made spreadsheet-safe); written beside itself under a temporary name and renamed at the end",
    )
    p.add_argument(
        "--users-file",
        default=None,
        metavar="FILE",
        help="only these users: a text file with one user id a line (default: every user of the run)",
    )
    p.add_argument("--chunk-size", type=int, default=2048, help="users scored and written at a time (default 2048)")
    p.add_argument(
        "--shares",
        action="store_true",
        help="add share_<modality> columns (the attention fusion model's additive modality shares)",
    )
    p.add_argument("--include-seen", action="store_true", help="do not exclude items the user already has")
    _exposure_arguments(p, "the exported lists (the leftover carried from each user's list to the next)")


@command(
    "export",
    "top-K recommendations for every user of a run, streamed in chunks to a Parquet (or CSV) file",
    _export_arguments,
)
def cmd_export(args: argparse.Namespace) -> dict[str, Any]:
    from pathlib import Path

    from ..batch import MAX_K, export_format, export_recommendations, read_user_ids
    from .records import follow_current_import, load_run_model, users_gone_from_dataset

    if not 1 <= args.k <= MAX_K:
        raise CommandError(f"--k must be between 1 and {MAX_K}, not {args.k}")
    if args.chunk_size < 1:
        raise CommandError(f"--chunk-size must be at least 1, not {args.chunk_size}")
    out = Path(args.out)
    if out.is_dir():
        raise CommandError(f"--out {out} is a folder; give a file name, e.g. {out / 'recs.parquet'}")
    try:
        export_format(out)
    except ValueError as exc:
        raise CommandError(f"--out {exc}") from exc
    run_dir = _run_dir(args)
    if not (run_dir / "model" / "config.json").is_file():
        raise CommandError(f"run {args.run} has no saved model yet (state: {read_status(run_dir)['state']})")
    model = load_run_model(run_dir)  # ModelDamaged names the file (main prints it plainly)
    if args.shares and not model.explains_by_modality():
        raise CommandError(
            f"--shares needs a model with modality shares (the attention fusion model); run "
            f"{run_dir.name} holds a {model.name} model"
        )
    rows = None
    if args.users_file:
        try:
            wanted = read_user_ids(args.users_file)
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read --users-file {args.users_file}: {exc}") from exc
        index = {str(u): i for i, u in enumerate(model.user_ids)}
        unknown = [u for u in wanted if u not in index]
        if unknown:
            raise CommandError(
                f"{len(unknown)} user(s) of {args.users_file} are not in run {run_dir.name}'s "
                f"model (first: {', '.join(unknown[:3])})",
                {"unknown_users": len(unknown)},
            )
        rows = [index[u] for u in wanted]
    from ..privacy import forgotten_in

    workspace = _workspace(args)
    dataset = read_run_config(run_dir)["dataset"]  # RunDamaged names a damaged config.json
    bundle = workspace.load_dataset(dataset) if workspace.has_dataset(dataset) else None
    exposure = _exposure_option(args, bundle, dataset, model) if args.exposure_group else None
    in_catalogue = follow_current_import(model, bundle)
    # people forgotten since the run was trained, and people a later import of the dataset no longer has: the
    # model still knows them, the export does not list them
    forgotten = forgotten_in(run_dir, workspace.root, [str(u) for u in model.user_ids])
    gone = users_gone_from_dataset(model, bundle) - forgotten
    if forgotten or gone:
        left_out = forgotten | gone
        rows = [
            r for r in (range(len(model.user_ids)) if rows is None else rows) if str(model.user_ids[r]) not in left_out
        ]
    if forgotten:
        print(
            f"warning: left out {len(forgotten)} user(s) forgotten since run {run_dir.name} was trained; retrain "
            "the run so that its model no longer holds them",
            file=sys.stderr,
        )
    if gone:
        print(
            f"note: left out {len(gone):,} user(s) no longer in dataset {dataset} (imported again since run "
            f"{run_dir.name} was trained)",
            file=sys.stderr,
        )
    if in_catalogue is not None:
        print(
            f"note: {int((~in_catalogue).sum()):,} of run {run_dir.name}'s items are no longer in dataset {dataset} "
            "and are not exported; train again to use the dataset as it is now",
            file=sys.stderr,
        )
    progress = TqdmProgress(not args.quiet)
    try:
        summary = export_recommendations(
            model,
            out,
            k=args.k,
            user_rows=rows,
            chunk_size=args.chunk_size,
            shares=args.shares,
            exclude_seen=not args.include_seen,
            progress=progress,
            exposure=exposure,
            keep=in_catalogue,
        )
    except (OSError, ValueError) as exc:
        raise CommandError(f"export failed: {exc}") from exc
    finally:
        progress.close()
    _say(
        args,
        f"wrote top-{summary.k} for {summary.users:,} users ({summary.rows:,} rows, {summary.chunks} chunk{'' if summary.chunks == 1 else 's'}) "
        f"to {summary.path} in {summary.seconds:.1f} s",
    )
    if summary.exposure is not None:
        summary.exposure = {"group": args.exposure_group, **summary.exposure}
        _say(
            args,
            f"{args.exposure_group}: {summary.exposure['share']:.4f} of the exported slots (target "
            f"{summary.exposure['target']:.4f}, strength {summary.exposure['strength']:g})",
        )
    return {
        "run_id": run_dir.name,
        **summary.to_dict(),
        "forgotten_users_left_out": len(forgotten),
        "items_no_longer_in_catalogue": 0 if in_catalogue is None else int((~in_catalogue).sum()),
        "items_not_for_sale": int((~model.for_sale()).sum()),
        "users_no_longer_in_dataset_left_out": len(gone),
    }


def _fairness_arguments(p: argparse.ArgumentParser) -> None:
    _run_argument(p)
    p.add_argument(
        "--item-column",
        required=True,
        help="categorical or multi-label item column that groups items (e.g. genres, category, brand)",
    )
    p.add_argument("--user-column", default=None, help="categorical column of the users table that groups users")
    p.add_argument("--k", type=positive_int, default=20, help="length of the lists (default 20)")
    p.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples of the users (default 500)")
    p.add_argument("--seed", type=int, default=2026, help="seed of the bootstrap (default 2026)")


@command("fairness", "who gets exposure and whom the model serves well, on a run's test split", _fairness_arguments)
def cmd_fairness(args: argparse.Namespace) -> dict[str, Any]:
    from ..evaluate.fairness import fairness_report, run_rankings

    run_dir = _run_dir(args)
    workspace = _workspace(args)
    if args.k < 1:
        raise CommandError(f"--k must be 1 or more, not {args.k}")
    if args.bootstrap < 0:
        raise CommandError(f"--bootstrap must be 0 or more, not {args.bootstrap}")
    dataset = read_run_config(run_dir).get("dataset")
    if not dataset or not workspace.has_dataset(dataset):
        raise CommandError(f"the run's dataset '{dataset}' is no longer in the workspace")
    bundle = workspace.load_dataset(dataset)
    from ..evaluate.fairness import item_group_columns, user_group_columns

    if args.item_column not in item_group_columns(bundle):
        raise CommandError(
            f"'{args.item_column}' is not a categorical item column of '{dataset}'; choose one of "
            f"{', '.join(item_group_columns(bundle)) or 'none'}"
        )
    if args.user_column and args.user_column not in user_group_columns(bundle):
        raise CommandError(
            f"'{args.user_column}' is not a categorical user column of '{dataset}'; choose one of "
            f"{', '.join(user_group_columns(bundle)) or 'none (the dataset has no users table)'}"
        )
    started = time.perf_counter()
    try:
        rankings = run_rankings(
            workspace, run_dir.name, k=args.k, progress=None if args.quiet else (lambda m: print(m, file=sys.stderr))
        )
    except (ValueError, FileNotFoundError, RuntimeError, KeyError) as exc:
        raise CommandError(str(exc)) from exc
    report = fairness_report(
        rankings, bundle, args.item_column, args.user_column, n_boot=args.bootstrap, seed=args.seed
    )
    _say(args, report.table())
    return {**report.to_dict(), "seconds": round(time.perf_counter() - started, 2)}


@command("runs", "list the training runs in the workspace")
def cmd_runs(args: argparse.Namespace) -> dict[str, Any]:
    runs = list_runs(_workspace(args))
    out = []
    for run in runs:
        score = run.test_metrics.get("ndcg@20")
        out.append(
            {
                "run_id": run.run_id,
                "state": run.state,
                "dataset": run.dataset,
                "model": run.model,
                "ndcg@20": score,
                "needs_retrain_for_privacy": run.needs_retrain_for_privacy,
                "forgotten_users": run.forgotten_users,
            }
        )
        ndcg = f"{score:.4f}" if score is not None else "-"
        _say(
            args,
            f"{run.run_id:<48} {run.state:<11} ndcg@20 {ndcg}"
            + (f"  RETRAIN: holds {run.forgotten_users} forgotten user(s)" if run.needs_retrain_for_privacy else ""),
        )
    if not runs:
        _say(args, "no runs yet: python -m recsys train --data demo")
    return {"runs": out, "progress_events": {r.run_id: len(read_progress(r.path)) for r in runs[:1]}}
