"""CLI commands of the explanation layer: ``explain``, ``recommend-explained``, ``recommend-new``.

python -m recsys explain RUN --user ID --item ID [--json]
python -m recsys recommend-explained RUN --user ID --k 10 [--diversity 0.2] [--json]
python -m recsys recommend-new RUN --like ID ID ... | --query "text" [--user ID] [--json]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..cli import CommandError, _say, _workspace, command, positive_int, unit_interval, unknown_run
from ..train.records import read_run_config


def load_run(workspace: Any, run: str) -> tuple[Path, Any, Any, dict[str, Any]]:
    """(run folder, loaded model, the dataset bundle or None, the run's config dict)."""
    from ..models.base import _import_all_models
    from ..train.records import load_run_model

    run_dir = workspace.run_path(run)  # a run id, never a path: InvalidName otherwise (the CLI prints it)
    if not (run_dir / "config.json").is_file():
        raise unknown_run(workspace, run)
    if not (run_dir / "model" / "config.json").is_file():
        raise CommandError(f"run {run} has no saved model yet")
    _import_all_models()
    model = load_run_model(run_dir)  # ModelDamaged names the file (the CLI prints it plainly)
    config = read_run_config(run_dir)
    bundle = workspace.load_dataset(config["dataset"]) if workspace.has_dataset(config["dataset"]) else None
    return run_dir, model, bundle, config


def _context(model: Any, bundle: Any) -> Any:
    from .explainer import ExplainContext

    if bundle is None:
        import numpy as np
        import pandas as pd

        return ExplainContext(model, pd.DataFrame({"item_id": np.asarray(model.item_ids).astype(str)}), {})
    return ExplainContext.from_bundle(model, bundle)


def explanations_for(model: Any, bundle: Any, user: str, item_ids: list[str], k_history: int = 3) -> list[dict]:
    """JSON-able explanations of ``item_ids`` for ``user`` (``bundle``: the run's dataset, or None)."""
    from .explainer import explain

    context = _context(model, bundle)
    return [explain(model, user, item, k_history=k_history, context=context).to_dict() for item in item_ids]


def _narrate(explanation: Any, narrator: str | None, context: Any) -> dict[str, Any] | None:
    if not narrator:
        return None
    from .narrator import narrate

    return narrate(explanation, narrator, catalogue_terms=context.catalogue_terms()).to_dict()


def _explain_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id (folder name under workspace/runs)")
    p.add_argument("--user", required=True, help="user id")
    p.add_argument("--item", required=True, help="item id")
    p.add_argument("--k-history", type=int, default=3, help="history items to show (default 3)")
    p.add_argument(
        "--narrator",
        default=None,
        metavar="DIR",
        help="a local Hugging Face causal LM folder that rephrases the evidence (optional)",
    )


def _print_explanation(args: argparse.Namespace, data: dict[str, Any], rank: int | None = None) -> None:
    head = f"{rank:>3}. " if rank is not None else ""
    score = data.get("score")
    # an item without a title is named by its id (the explanation's title): printed once
    title = "" if data["title"] == data["item_id"] else f"  {data['title']}"
    _say(args, f"{head}{data['item_id']}{title}" + (f"  (score {score:.4f})" if score is not None else ""))
    _say(args, f"     {data['sentence']}")
    for modality in data.get("modalities", []):
        state = (
            "missing"
            if modality["missing"]
            else (
                f"attention {modality['attention']:.2f}  share {modality['share']:+.4f}"
                if modality.get("weighted", True)
                else f"(no weight)      share {modality['share']:+.4f}"
            )
        )
        _say(args, f"       {modality['modality']:<11} {state}")
    for item in data.get("history", []):
        named = "" if item["title"] == item["item_id"] else f" {item['title']}"
        _say(args, f"       like {item['item_id']}{named}  (+{item['contribution']:.4f})")
    for note in data.get("notes", []):
        if note.startswith("missing modalities") and data.get("modalities"):
            continue  # the modality rows above already say "missing"
        _say(args, f"       note: {note}")
    if data.get("narration"):
        _say(args, f"     narrator ({data['narration']['source']}): {data['narration']['text']}")


@command("explain", "why a run's model recommends an item to a user: modalities, history, evidence", _explain_arguments)
def cmd_explain(args: argparse.Namespace) -> dict[str, Any]:
    from .explainer import explain

    run_dir, model, bundle, _ = load_run(_workspace(args), args.run)
    context = _context(model, bundle)
    try:
        explanation = explain(model, args.user, args.item, k_history=args.k_history, context=context)
    except KeyError as exc:
        raise CommandError(str(exc.args[0])) from exc
    data = explanation.to_dict()
    data["narration"] = _narrate(explanation, args.narrator, context)
    # any item can be explained, and the sentence says what the model weighs; where the item stands for the
    # user says whether it would be recommended at all ("Recommended mainly for …" of the 766th of 783)
    from ..train.records import follow_current_import

    in_catalogue = follow_current_import(model, bundle)  # what a list would offer today (the CLI's other lists)
    data["rank"], data["candidates"] = _rank_among_candidates(model, args.user, args.item, in_catalogue)
    if data["rank"] is not None:
        data.setdefault("notes", []).append(
            f"it ranks {_ordinal(data['rank'])} of the {data['candidates']:,} items this user could be offered"
        )
    _print_explanation(args, data)
    return {"run_id": run_dir.name, "explanation": data}


def _rank_among_candidates(model: Any, user: str, item: str, in_catalogue: Any = None) -> tuple[int | None, int]:
    """The item's place (1 = first) among the items a list for ``user`` could hold (not theirs already, for
    sale), by the model's score, and how many those are; None for an item that is not among them."""
    import numpy as np

    from ..models.rerank import seen_mask

    row, index = model.user_index(user), model.item_index(item)
    keep = seen_mask(model, row) & model.for_sale()
    if in_catalogue is not None:
        keep &= np.asarray(in_catalogue, dtype=bool)
    if not keep[index]:
        return None, int(keep.sum())
    scores = np.asarray(model.score(np.array([row]))[0], dtype=np.float64)
    # ties broken by the lower item index, as every list is
    ahead = (scores > scores[index]) | ((scores == scores[index]) & (np.arange(len(scores)) < index))
    return int((ahead & keep).sum()) + 1, int(keep.sum())


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n:,}{suffix}"


def _recommend_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id (folder name under workspace/runs)")
    p.add_argument("--user", required=True, help="user id")
    p.add_argument("--k", type=positive_int, default=10, help="how many items (default 10)")
    p.add_argument("--diversity", type=float, default=0.0, help="MMR diversity weight in [0, 1] (default 0)")
    p.add_argument("--include-seen", action="store_true", help="do not exclude items the user already has")
    p.add_argument("--k-history", type=int, default=3, help="history items per explanation (default 3)")
    p.add_argument("--narrator", default=None, metavar="DIR", help="optional local causal LM folder")


def recommend_with_explanations(
    model: Any,
    user: str,
    k: int = 10,
    diversity: float = 0.0,
    exclude_seen: bool = True,
    context: Any = None,
    k_history: int = 3,
    mask: Any = None,
) -> list[dict[str, Any]]:
    """Top-``k`` for ``user`` (MMR at ``diversity``), each with its explanation as a dict."""
    import numpy as np

    from ..models.rerank import mmr_rerank, seen_mask
    from .evidence import item_vectors
    from .explainer import explain

    row = model.user_index(user)
    scores = np.asarray(model.score(np.array([row]))[0], dtype=np.float64)
    keep = seen_mask(model, row) if exclude_seen else np.ones(model.n_items, dtype=bool)
    if mask is not None:
        keep &= np.asarray(mask, dtype=bool)
    scores[~keep] = -np.inf
    vectors = item_vectors(model) if diversity > 0 else np.zeros((model.n_items, 1), dtype=np.float32)
    top = mmr_rerank(scores, vectors, k, diversity)
    rows = []
    for rank, index in enumerate(top, start=1):
        data = explain(model, row, int(index), k_history=k_history, context=context).to_dict()
        rows.append({"rank": rank, **data})
    return rows


@command("recommend-explained", "top-K recommendations for a user, each with its explanation", _recommend_arguments)
def cmd_recommend_explained(args: argparse.Namespace) -> dict[str, Any]:
    run_dir, model, bundle, _ = load_run(_workspace(args), args.run)
    context = _context(model, bundle)
    if not 0.0 <= args.diversity <= 1.0:
        raise CommandError("--diversity must be between 0 and 1")
    try:
        rows = recommend_with_explanations(
            model, args.user, args.k, args.diversity, not args.include_seen, context, args.k_history
        )
    except KeyError as exc:
        raise CommandError(str(exc.args[0])) from exc
    if args.narrator:
        from .explainer import explain

        for row in rows:
            row["narration"] = _narrate(
                explain(model, args.user, row["item_id"], context=context), args.narrator, context
            )
    for row in rows:
        _print_explanation(args, row, row["rank"])
    return {"run_id": run_dir.name, "user": args.user, "diversity": args.diversity, "recommendations": rows}


def _new_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id (folder name under workspace/runs)")
    p.add_argument(
        "--like",
        nargs="+",
        action="extend",  # "--like A --like B" is A and B, as "--like A B" is (a repeated flag kept only B)
        default=None,
        metavar="ITEM",
        help="item ids a new user liked (--like A B, or --like A --like B)",
    )
    p.add_argument("--query", default=None, help="a text query (encoded with the run's text encoder)")
    p.add_argument(
        "--user", default=None, help="a known user to blend --query with (not with --like: likes are the history)"
    )
    p.add_argument(
        "--blend",
        type=unit_interval,
        default=None,
        help="with --query: weight of the query against the history, 0 to 1 (default 0.5)",
    )
    p.add_argument("--k", type=positive_int, default=10, help="how many items (default 10)")
    p.add_argument(
        "--explain",
        action="store_true",
        help="each item with its explanation (the liked items behind it, modality shares); with --like only",
    )


@command("recommend-new", "cold start: recommendations from a few liked items or a text query", _new_arguments)
def cmd_recommend_new(args: argparse.Namespace) -> dict[str, Any]:
    from .coldstart import check_new_user_request, query_encoder_for_run, recommend_for_history, recommend_for_text

    if not args.like and not args.query:
        raise CommandError("give --like ITEM ... (a new user's liked items) or --query TEXT")
    if args.blend is not None and not args.query:
        raise CommandError("--blend weighs a --query against the history; there is no --query here")
    if args.explain and args.query:
        # a query's list blends text similarity into the scores, which no explanation of the model's accounts for
        raise CommandError("--explain explains lists from --like items only, not from a --query")
    try:  # a --user the request would ignore is refused (the HTTP API's rule)
        check_new_user_request(args.like, args.query, args.user)
    except ValueError as exc:
        raise CommandError(f"--user: {exc}") from exc
    from ..train.records import follow_current_import

    run_dir, model, bundle, config = load_run(_workspace(args), args.run)
    in_catalogue = follow_current_import(model, bundle)  # what a later import dropped or took off sale is not offered
    try:
        if args.query:
            items = recommend_for_text(
                model,
                args.query,
                k=args.k,
                history=args.like,
                blend=0.5 if args.blend is None else args.blend,
                encoder=query_encoder_for_run(run_dir),
                user=args.user,
                items_frame=bundle.items if bundle is not None else None,
                roles=bundle.schema.items if bundle is not None else None,
                filters=in_catalogue,
            )
        else:
            items = recommend_for_history(model, args.like, k=args.k, filters=in_catalogue)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CommandError(str(exc.args[0]) if exc.args else str(exc)) from exc
    context = _context(model, bundle) if bundle is not None or args.explain else None
    titles = {item: context.title(item) for item, _ in items} if bundle is not None and context else {}
    rows: list[dict[str, Any]] = [
        {"rank": r + 1, "item_id": item, "score": score, "title": titles.get(item)}
        for r, (item, score) in enumerate(items)
    ]
    if args.explain:
        from .explainer import explain

        for row in rows:
            data = explain(model, None, row["item_id"], context=context, visitor_history=args.like).to_dict()
            row["explanation"] = data
            _print_explanation(args, data, row["rank"])
        return {"run_id": run_dir.name, "like": args.like, "query": args.query, "recommendations": rows}
    for row in rows:
        _say(args, f"{row['rank']:>3}. {row['item_id']:<12} {row['score']:>9.4f}  {row['title'] or ''}")
    return {"run_id": run_dir.name, "like": args.like, "query": args.query, "recommendations": rows}
