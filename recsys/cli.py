"""Command line: ``python -m recsys COMMAND ...``.

Every command has ``--help`` and ``--json``; with ``--json`` the last line of standard output is one
JSON object (counts, timings, paths, errors) that scripts and benchmarks can read. Progress bars
go to standard error. A failing command exits non-zero with its message on standard error (never a
traceback for a bad name: run ids and dataset names are checked by :func:`recsys.workspace.validate_name`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from .atomic import _json_default

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], dict[str, Any]], str, Callable | None]] = {}


class CommandError(RuntimeError):
    """A failure whose message is meant for the person at the terminal, plus JSON details."""

    def __init__(self, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.details = details or {}


def command(name: str, help_text: str, arguments: Callable[[argparse.ArgumentParser], None] | None = None):
    """Register ``func(args) -> dict`` as a sub-command; ``arguments`` adds its options."""

    def register(func):
        _COMMANDS[name] = (func, help_text, arguments)
        return func

    return register


class TqdmProgress:
    """Adapter from the engine's ``progress(stage, done, total)`` callbacks to tqdm bars on stderr."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._bars: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = tqdm(total=total, desc=stage, unit="it", file=sys.stderr, leave=True)
        bar.total = total
        bar.update(max(0, done - bar.n))
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


# ----------------------------------------------------------------------------- commands


def positive_int(text: str) -> int:
    """An argparse type for counts such as ``--k``: a whole number of 1 or more (0 or -5 is refused plainly)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def unknown_run(workspace: Any, run_id: str) -> CommandError:
    """The error for a run id the workspace does not have, with its most recent runs (every command says the
    same)."""
    from .train.run import list_runs

    known = ", ".join(r.run_id for r in list_runs(workspace)[:5]) or "none yet"
    return CommandError(f"no run '{run_id}' in {workspace.runs_dir} (recent: {known})")


def unit_interval(text: str) -> float:
    """An argparse type for a weight such as ``--blend``: a number from 0 to 1 (the HTTP API's range; 5 was
    taken as 1 without a word)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, not {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, not {value:g}")
    return value


def _workspace(args: argparse.Namespace):
    from .workspace import Workspace

    return Workspace(args.workspace)


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo-bundle", help="folder to write the bundle to (default: ./demo-bundle)")
    p.add_argument("--users", type=int, default=1000, help="number of users (default 1000)")
    p.add_argument("--items", type=int, default=800, help="number of items (default 800)")
    p.add_argument("--interactions", type=int, default=30000, help="approximate number of interactions")
    p.add_argument("--seed", type=int, default=2026, help="random seed; the same seed gives the same files")
    p.add_argument("--import", dest="do_import", action="store_true", help="also import it into the workspace")
    p.add_argument("--name", default=None, help="dataset name when importing (default: demo)")


@command("demo", "write the built-in demo catalog as a bundle folder (and optionally import it)", _demo_arguments)
def cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    from .data.demo import DEMO_DATASET_NAME, generate_demo_bundle
    from .workspace import validate_name

    if args.do_import and args.name is not None:
        validate_name("dataset name", args.name)  # before minutes of generating: main prints it plainly
    started = time.perf_counter()
    out = Path(args.out)
    generate_demo_bundle(out, n_users=args.users, n_items=args.items, n_interactions=args.interactions, seed=args.seed)
    result: dict[str, Any] = {"bundle": str(out.resolve()), "seconds": round(time.perf_counter() - started, 2)}
    if args.do_import:
        imported = _workspace(args).import_bundle(out, name=args.name or DEMO_DATASET_NAME)
        result["import"] = imported.to_dict()
        if not imported.ok:
            raise CommandError("the demo bundle failed validation:\n" + imported.report.format(), result)
        result["counts"] = imported.report.counts
    _say(
        args,
        f"demo catalog written to {result['bundle']} in {result['seconds']} s"
        + (f" and imported as '{args.name or DEMO_DATASET_NAME}'" if args.do_import else ""),
    )
    return result


def _import_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="bundle folder or .zip")
    p.add_argument(
        "--name",
        default=None,
        help="dataset name: letters, digits, '.', '_', '-' (default: derived from "
        "the folder or zip name, e.g. 'My Shop (2).zip' -> my-shop-2)",
    )
    p.add_argument("--schema", default=None, help="JSON file with column roles overriding the inferred ones")
    p.add_argument("--check", action="store_true", help="validate only; write nothing to the workspace")
    p.add_argument(
        "--pseudonymise",
        action="store_true",
        help="store every user id as a keyed hash (u_ + 16 hex "
        "digits, HMAC-SHA256 with the workspace's secret key in .secret/): the same id gets the same "
        "pseudonym in every import of this workspace; users/interactions columns with the role ignore are not "
        "stored; `forget --user` still takes the raw id",
    )


@command("import", "validate a bundle (folder or .zip) and import it into the workspace", _import_arguments)
def cmd_import(args: argparse.Namespace) -> dict[str, Any]:
    from .data.schema import Schema, SchemaError
    from .workspace import validate_name

    if args.name is not None:
        validate_name("dataset name", args.name)
    schema = None
    if args.schema:
        try:
            schema = Schema.read(args.schema)
        except (OSError, ValueError, SchemaError) as exc:
            raise CommandError(f"cannot read schema file {args.schema}: {exc}") from exc
    started = time.perf_counter()
    progress = TqdmProgress(not args.quiet)
    if args.check:  # no Workspace(): opening one creates its folders, and --check writes nothing
        from .data.bundle import load_bundle

        loaded = load_bundle(args.source, schema=schema, name=args.name, progress=progress)
        report, ok, path = loaded.report, loaded.ok, None
        name = args.name or (loaded.bundle.name if loaded.bundle else None)
        bundle = loaded.bundle
    else:
        workspace = _workspace(args)
        imported = workspace.import_bundle(
            args.source, name=args.name, schema=schema, progress=progress, pseudonymise=args.pseudonymise
        )
        report, ok, path, name = imported.report, imported.ok, imported.path, imported.name
        bundle = workspace.load_dataset(name) if ok else None
    progress.close()
    result = {
        "dataset": name,
        "path": str(path) if path else None,
        "imported": bool(path),
        "pseudonymised": bool(path) and args.pseudonymise,
        "seconds": round(time.perf_counter() - started, 2),
        **report.to_dict(),
    }
    if not ok:
        raise CommandError(
            f"the bundle has {len(report.errors)} error(s)"
            + ("" if args.check else "; nothing was imported")
            + ":\n"
            + report.format(),
            result,
        )
    counts = report.counts
    _say(args, report.format())
    if bundle is not None and getattr(bundle, "schema", None) is not None:
        # the role each column got and why (what the Data page shows): a CLI user can check that price is numeric
        result["columns"] = {}
        for table in ("items", "interactions", "users"):
            roles = bundle.schema.table(table)
            if not roles:
                continue
            reasons = bundle.schema.reasons.get(table, {})
            result["columns"][table] = {c: {"role": r, "reason": reasons.get(c, "")} for c, r in roles.items()}
            _say(args, f"{table} columns: " + ", ".join(f"{c} -> {r}" for c, r in roles.items()))
    if bundle is not None and getattr(bundle, "interactions", None) is not None:
        from .train.data import preflight

        check = preflight(
            bundle.interactions,
            has_timestamp=bundle.schema.timestamp_column is not None,
            catalogue_items=len(bundle.items),
        )
        result["protocols"] = {
            **check["protocols"],
            "auto": check["auto"],
            "reason": check["reason"],
            "median_interactions_per_user": check["median_interactions_per_user"],
        }
        for protocol, kept in check["protocols"].items():
            _say(
                args,
                f"protocol {protocol:<9} keeps {kept['users']:,} users, {kept['items']:,} items, "
                f"{kept['interactions']:,} interactions; evaluates {kept['evaluated_users']:,} users",
            )
        _say(args, f"auto -> {check['auto']}: {check['reason']}")
    _say(
        args,
        f"{'checked' if args.check else 'imported'} '{name}': {counts.get('users', 0):,} users, "
        f"{counts.get('items', 0):,} items, {counts.get('interactions', 0):,} interactions, "
        f"{counts.get('items_with_image', 0):,} items with a picture" + (f" -> {path}" if path else ""),
    )
    return result


@command("datasets", "list the datasets in the workspace")
def cmd_datasets(args: argparse.Namespace) -> dict[str, Any]:
    infos = _workspace(args).list_datasets()
    for info in infos:
        counts = info.counts
        if info.damaged:  # listed all the same: one bad file must not hide the other datasets
            _say(args, f"{info.name:<28} DAMAGED: {info.damaged}")
            continue
        _say(
            args,
            f"{info.name:<28} {counts.get('users', 0):>7,} users {counts.get('items', 0):>8,} items "
            f"{counts.get('interactions', 0):>10,} interactions",
        )
    if not infos:
        _say(args, "no datasets yet: run `python -m recsys demo --import` or `python -m recsys import BUNDLE`")
    return {"datasets": [info.to_dict() for info in infos]}


def _forget_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="dataset name in the workspace")
    p.add_argument(
        "--user",
        dest="users",
        action="append",
        required=True,
        metavar="ID",
        help="a user to forget (repeat for several); on a pseudonymised dataset, the raw id",
    )


@command(
    "forget",
    "remove users' interactions and user rows from a dataset for good, and mark the runs that "
    "still hold them for retraining",
    _forget_arguments,
)
def cmd_forget(args: argparse.Namespace) -> dict[str, Any]:
    from .workspace import DatasetNotFound, UnknownUsers, validate_name

    validate_name("dataset name", args.dataset)
    try:
        result = _workspace(args).forget_users(args.dataset, args.users)
    except (DatasetNotFound, UnknownUsers, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    # the ids are not echoed: the output may end up in logs
    _say(
        args,
        f"forgot {result.users} user(s) from '{result.dataset}': {result.interactions_removed:,} interactions "
        f"and {result.user_rows_removed:,} user rows removed",
    )
    for run_id in result.runs_marked:
        _say(args, f"run {run_id} still holds them in its model: retrain it (a new run) and delete it")
    for file in result.files_dropped:
        _say(args, f"removed {file}: it named a forgotten user")
    return result.to_dict()


@command("encoders", "list the feature encoders and whether their weights are on this machine")
def cmd_encoders(args: argparse.Namespace) -> dict[str, Any]:
    from .features.registry import list_encoders

    rows = []
    for info in list_encoders():
        row = {k: getattr(info, k) for k in ("name", "modality", "dim", "available", "description")}
        rows.append(row)
        _say(
            args,
            f"{row['name']:<24} {row['modality']:<6} {str(row['dim']):>6}  "
            f"{'available' if row['available'] else 'not available offline':<22} {row['description']}",
        )
    return {"encoders": rows}


def _features_arguments(p: argparse.ArgumentParser) -> None:
    from .features.registry import DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER

    p.add_argument("dataset", help="dataset name in the workspace")
    p.add_argument(
        "--text-encoder",
        default=DEFAULT_TEXT_ENCODER,
        help=f"text encoder name (see `encoders`), default {DEFAULT_TEXT_ENCODER}",
    )
    p.add_argument(
        "--image-encoder", default=DEFAULT_IMAGE_ENCODER, help=f"image encoder name, default {DEFAULT_IMAGE_ENCODER}"
    )
    p.add_argument(
        "--modalities",
        nargs="+",
        default=["text", "image", "attributes"],
        choices=["text", "image", "attributes"],
        help="which modalities to extract",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--batch-size", type=int, default=64, help="encoder batch size (default 64)")


@command("features", "extract and cache item features (text, image, attributes) for a dataset", _features_arguments)
def cmd_features(args: argparse.Namespace) -> dict[str, Any]:
    from .device import select_device
    from .features.extract import extract_item_features
    from .workspace import DatasetNotFound, validate_name

    workspace = _workspace(args)
    validate_name("dataset name", args.dataset)
    try:
        bundle = workspace.load_dataset(args.dataset)
    except DatasetNotFound as exc:
        raise CommandError(str(exc)) from exc
    try:
        device = select_device(args.device)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    progress = TqdmProgress(not args.quiet)
    started = time.perf_counter()
    try:
        features = extract_item_features(
            bundle.items,
            bundle.schema.items,
            bundle.root,
            workspace.features_dir,
            text_encoder=args.text_encoder,
            image_encoder=args.image_encoder,
            modalities=tuple(args.modalities),
            device=str(device),
            batch_size=args.batch_size,
            progress=progress,
        )
    except RuntimeError as exc:  # EncoderUnavailableError and friends carry plain messages
        raise CommandError(str(exc)) from exc
    finally:
        progress.close()
    seconds = time.perf_counter() - started
    result = {
        "dataset": bundle.name,
        "device": str(device),
        "items": int(len(bundle.items)),
        "seconds": round(seconds, 3),
        "timings": features.timings,
        "text": _modality_summary(features.text, features.text_mask),
        "image": _modality_summary(features.image, features.image_mask),
        "attributes": _attribute_summary(features.attributes),
        "cache_dir": str(workspace.features_dir),
    }
    _say(
        args,
        f"features for {result['items']:,} items of '{bundle.name}' on {device} in {seconds:.1f} s: "
        f"text {result['text']}, image {result['image']}, attributes {result['attributes']}",
    )
    return result


def _finetune_arguments(p: argparse.ArgumentParser) -> None:
    from .features.finetune import FinetuneSettings

    defaults = FinetuneSettings()
    p.add_argument("dataset", help="dataset name in the workspace")
    p.add_argument("--base", default="minilm", help="the transformer text encoder to adapt (default minilm)")
    p.add_argument("--layers", type=int, default=defaults.layers, help="last N transformer layers trained")
    p.add_argument("--steps", type=int, default=defaults.steps, help="optimiser steps")
    p.add_argument(
        "--objective",
        choices=["behaviour", "pairs"],
        default=defaults.objective,
        help="behaviour: each item's text pulled toward the item's place in the behaviour space, the step kept "
        "chosen on held-out items (the frozen encoder when none beats it); pairs: two items of one user's "
        "history pulled together",
    )
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="items (or pairs) per step")
    p.add_argument(
        "--lr", type=float, default=defaults.lr, help="AdamW learning rate of the trained layers (default 1e-4)"
    )
    p.add_argument(
        "--keep-associated",
        type=float,
        default=defaults.keep_associated,
        help="share of the drawn co-interaction pairs kept as positives, the most associated first "
        "(co-occurrence cosine; 1 = every pair)",
    )
    p.add_argument(
        "--protocol",
        default="p1",
        choices=["p1", "sparse", "temporal", "cold"],
        help="the pairs come from this split's training part (seed 2026, 5-core), the split a run with the "
        "same protocol evaluates on, so its validation and test interactions are never seen",
    )
    p.add_argument("--name", default=None, help="folder name under workspace/encoders/ (default DATASET-BASE-ft)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")


@command(
    "finetune-text",
    "adapt the text encoder's last layers to a dataset's behaviour (each item's text pulled toward its place "
    "among the items users chose; the step kept is chosen on held-out items); writes a model folder to use as "
    "--text-encoder hf:FOLDER",
    _finetune_arguments,
)
def cmd_finetune_text(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from .features.extract import build_item_text
    from .features.finetune import FinetuneSettings, finetune_text_encoder, training_signal
    from .features.registry import get_encoder
    from .train.data import prepare_data
    from .workspace import DatasetNotFound, validate_name

    workspace = _workspace(args)
    validate_name("dataset name", args.dataset)
    # hf:/some/folder/model -> "model"; a registry name as it is
    base_label = re.sub(r"[^A-Za-z0-9._-]+", "-", args.base.split(":", 1)[-1].rstrip("/").rsplit("/", 1)[-1])
    name = args.name or f"{args.dataset}-{base_label.strip('-.') or 'text'}-ft"
    validate_name("encoder folder name", name)
    try:
        bundle = workspace.load_dataset(args.dataset)
    except DatasetNotFound as exc:
        raise CommandError(str(exc)) from exc
    try:
        encoder = get_encoder(args.base, device=args.device)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    if not 0 < args.keep_associated <= 1:
        raise CommandError("--keep-associated must be in (0, 1]")
    settings = FinetuneSettings(
        layers=args.layers,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        keep_associated=args.keep_associated,
        objective=args.objective,
    )
    texts = build_item_text(bundle.items, bundle.schema.items)
    prepared = prepare_data(
        bundle.interactions, protocol=args.protocol, catalogue_ids=bundle.items["item_id"].to_numpy(str)
    )
    usable = np.array([bool(text.strip()) for text in texts])
    pairs, targets = training_signal(prepared.data.train, usable, settings)
    out_dir = workspace.root / "encoders" / name
    bar = TqdmProgress(not args.quiet)
    started = time.perf_counter()
    try:
        finetune_text_encoder(
            encoder,
            texts,
            pairs,
            out_dir,
            settings,
            progress=lambda step, steps, loss: bar("fine-tuning", step, steps),
            targets=targets,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    finally:
        bar.close()
    report = json.loads((out_dir / "finetune.json").read_text(encoding="utf-8"))
    result = {
        "dataset": bundle.name,
        "encoder": f"hf:{out_dir}",
        "folder": str(out_dir),
        "seconds": round(time.perf_counter() - started, 1),
        "loss": [report["loss_first_10"], report["loss_last_10"]],
        "objective": settings.objective,
        "pairs": 0 if pairs is None else int(len(pairs)),
        "target_items": report.get("target_items", 0),
        "held_out_loss": report.get("held_out_loss", []),
        "kept_step": report.get("kept_step"),
        "protocol": args.protocol,
    }
    if settings.objective == "pairs":
        what = f"{result['pairs']:,} co-interaction pairs"
        kept = ""
    else:
        what = f"the behaviour of {result['target_items']:,} items"
        kept = (
            f"; step kept {result['kept_step']} of {settings.steps} (share of held-out behaviour neighbours the "
            "text ranks below other items, 0.5 = chance, by step: "
            + ", ".join(f"{step}: {value:.3f}" for step, value in result["held_out_loss"])
            + ")"
        )
        if result["kept_step"] == 0:
            kept += (
                "; no step beat the frozen encoder on the held-out items, so the folder holds its weights "
                f"(--text-encoder {args.base} gives the same features without extracting them again)"
            )
    _say(
        args,
        f"fine-tuned {args.base} on {what} of '{bundle.name}' in {result['seconds']:.0f} s (loss "
        f"{result['loss'][0]:.2f} -> {result['loss'][1]:.2f}){kept}; train with --text-encoder hf:{out_dir} "
        f"--protocol {args.protocol}",
    )
    return result


def _attribute_summary(attributes: Any) -> dict[str, Any] | None:
    """The attribute features' columns by kind (the third modality the command extracts)."""
    if attributes is None:
        return None
    return {
        "categorical": sorted(attributes.categorical),
        "multi_label": sorted(attributes.multi_label),
        "numeric": list(attributes.numeric_columns),
    }


def _modality_summary(matrix: Any, mask: Any) -> dict[str, Any] | None:
    if matrix is None:
        return None
    return {"dim": int(matrix.shape[1]), "present": int(mask.sum()), "missing": int((~mask).sum())}


# ----------------------------------------------------------------------------- plumbing


def _say(args: argparse.Namespace, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(text)


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors still end with one JSON object when ``--json`` was asked for
    (scripts read the last line: a mistyped flag printed usage only), naming the command whose usage it is."""

    json_requested = False  # set by main() from the command line being parsed

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        if _Parser.json_requested:
            command = self.prog.split()[-1] if self.prog != PROG else None
            print(json.dumps({"command": command, "ok": False, "error": message, "error_type": "usage"}))
        sys.exit(EXIT_USAGE)


PROG = "python -m recsys"


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON object as the last line of output")
    common.add_argument(
        "--workspace", default=None, help="workspace folder (default: $RECSYS_WORKSPACE or ./workspace)"
    )
    common.add_argument("--quiet", action="store_true", help="no progress bars or messages (the JSON still prints)")

    parser = _Parser(prog=PROG, description="Multimodal recommender studio engine.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands: dict[str, argparse.ArgumentParser] = {}
    for name, (_, help_text, arguments) in _COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        if arguments is not None:
            arguments(command_parser)
        commands[name] = command_parser
    parser.set_defaults(_command_parsers=commands)
    return parser


# engine layers that add commands of their own (train, evaluate, recommend, explain, serve) register them on import
COMMAND_MODULES: tuple[str, ...] = ("recsys.train.commands", "recsys.explain.commands", "recsys.serve_commands")


def _load_command_modules() -> None:
    import importlib

    for module in COMMAND_MODULES:
        importlib.import_module(module)


def main(argv: list[str] | None = None) -> int:
    _load_command_modules()
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    _Parser.json_requested = "--json" in argv
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # a flag the command does not have: its own usage, not the top level's list of commands
        command_parser = args._command_parsers.get(args.command) if args.command else None
        (command_parser or parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    del args._command_parsers
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    func = _COMMANDS[args.command][0]
    from .models.base import ModelDamaged
    from .train.lock import RunRefused
    from .train.records import RunDamaged
    from .workspace import DatasetDamaged, InvalidName

    try:
        result = {"command": args.command, "ok": True, **func(args)}
        code = EXIT_OK
    except (
        CommandError,
        InvalidName,
        RunRefused,
        DatasetDamaged,
        ModelDamaged,
        RunDamaged,
    ) as exc:  # InvalidName: a run id
        # or dataset name that is a path; RunRefused: a run still training, or finished (resume without --force);
        # *Damaged: a stored file that cannot be read, named with what to do
        print(f"error: {exc}", file=sys.stderr)
        result = {"command": args.command, "ok": False, "error": str(exc), **getattr(exc, "details", {})}
        code = EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        result = {"command": args.command, "ok": False, "error": "interrupted"}
        code = 130
    except Exception as exc:
        if not args.json:
            raise
        # a bug or an unforeseen failure: the traceback for a person, and still one JSON object last for scripts
        import traceback

        traceback.print_exc(file=sys.stderr)
        result = {
            "command": args.command,
            "ok": False,
            "error": str(exc) or type(exc).__name__,
            "error_type": type(exc).__name__,
        }
        code = EXIT_FAILED
    if args.json:
        sys.stdout.flush()
        print(json.dumps(result, default=_json_default))
    return code
