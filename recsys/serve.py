"""An HTTP API over one trained run: ``python -m recsys serve RUN_ID`` (FastAPI + uvicorn).

:func:`create_app` loads the run's model once (read-only) with the dataset's item titles and serves

* ``GET /health``: run id, model, number of items and users;
* ``GET /recommend?user=&k=10&diversity=0&explain=false``: the top-``k`` of the ``recommend`` command
  (the same call: variants of one product grouped, seen items left out), with ``explain=true`` each
  item's explanation (modality shares, history, evidence, sentence) as ``recommend --explain`` gives;
* ``GET /similar?item=&k=10``: the items nearest to one item in the model's item space
  (:func:`recsys.explain.evidence.similar_items`);
* ``POST /recommend-new``: cold start from liked item ids and/or a text query (the ``recommend-new``
  command's calls); with ``"explain": true`` and likes only, each item's explanation for that new user;
* ``GET /explain?user=&item=``: one explanation (the ``explain`` command's call).

Bad input is a 4xx with a JSON ``{"detail": ...}``: 404 names the unknown user or item, 422 a
parameter out of range (FastAPI's validation). Handlers are plain functions, which FastAPI runs in
its thread pool; every call into the model and the explanation context holds one lock, since the
context fills caches lazily and the models were not written for concurrent callers (scoring itself
is a few milliseconds, so the lock costs little on a small server). The interactive docs at
``/docs`` load the Swagger UI script and style from a CDN (FastAPI's default); ``/openapi.json``
is served locally and needs no network.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import numpy as np

MAX_K = 1000
MAX_LIKES = 1000
MAX_QUERY_CHARS = 2000


# ----------------------------------------------------------------------------- typed payloads


class Health(BaseModel):
    status: str = "ok"
    run_id: str
    model: str
    dataset: str | None
    items: int
    users: int
    loaded_seconds: float
    retrieval: dict[str, Any] | None = None  # the ANN index /recommend retrieves through (serve --ann), or None
    # a dataset imported again after the run was trained: the run's items and users it no longer has (not served)
    items_no_longer_in_catalogue: int = 0
    users_no_longer_in_dataset: int = 0
    items_not_for_sale: int = 0  # marked so by the dataset as imported now (follow_current_import): never offered


class Modality(BaseModel):
    model_config = ConfigDict(extra="allow")
    modality: str
    label: str | None = None
    present: bool | None = None
    missing: bool | None = None
    attention: float | None = None
    share: float | None = None
    weighted: bool | None = Field(
        default=None, description="false for the popularity prior: part of the score, scaled by no attention weight"
    )


class Explanation(BaseModel):
    """What the ``explain`` command prints: modality shares (attention models), the history items that
    raise the score most, evidence from the catalogue and one sentence built from that evidence."""

    model_config = ConfigDict(extra="allow")
    user_id: str
    item_id: str
    title: str
    model: str
    score: float | None
    has_attention: bool
    modalities: list[Modality] = []
    history: list[dict[str, Any]] = []
    evidence: dict[str, Any] = {}
    sentence: str = ""
    notes: list[str] = []


class Recommendation(BaseModel):
    rank: int
    item_id: str
    score: float | None
    title: str | None = None
    explanation: Explanation | None = None


class RecommendResponse(BaseModel):
    run_id: str
    user: str
    k: int
    diversity: float
    recommendations: list[Recommendation]


class SimilarResponse(BaseModel):
    run_id: str
    item: str
    title: str | None
    k: int
    similar: list[Recommendation]


class NewUserRequest(BaseModel):
    """A new user known by a few liked items and/or a text query (the ``recommend-new`` command)."""

    model_config = ConfigDict(extra="forbid")
    like: list[str] = Field(default_factory=list, max_length=MAX_LIKES, description="item ids the user liked")
    query: str | None = Field(
        default=None, max_length=MAX_QUERY_CHARS, description="a text query, encoded with the run's text encoder"
    )
    user: str | None = Field(
        default=None, description="a known user to blend the query with (not with 'like': the likes are the history)"
    )
    blend: float = Field(default=0.5, ge=0.0, le=1.0, description="weight of the query against the history")
    k: int = Field(default=10, ge=1, le=MAX_K)
    explain: bool = Field(
        default=False, description="add each item's explanation (the liked items behind it); with 'like' only"
    )


class NewUserResponse(BaseModel):
    run_id: str
    like: list[str]
    query: str | None
    recommendations: list[Recommendation]


class ExplainResponse(BaseModel):
    run_id: str
    explanation: Explanation


class ErrorResponse(BaseModel):
    detail: Any


# ----------------------------------------------------------------------------- the served run


class ServedRun:
    """One run's model, dataset titles and explanation context, loaded once; every engine call goes
    through :meth:`call`, which holds the lock."""

    def __init__(self, workspace: Any, run_id: str, ann: str = "auto"):
        from .cli import CommandError
        from .explain.commands import load_run
        from .retrieval import attach_retrieval

        started = time.perf_counter()
        self.workspace = workspace
        self.run_dir, self.model, self.bundle, self.config = load_run(workspace, run_id)
        dataset = self.config.get("dataset")
        # the import served from: a later import under the dataset's name is taken up by follow_dataset
        self.dataset_imported_at = workspace.dataset_imported_at(dataset) if self.bundle is not None else None
        # an ANN index over the item vectors (built here, not saved: recsys.retrieval), for models whose score is
        # a user . item product: with `auto` only from RetrievalConfig.exact_below items
        try:
            self.retrieval = attach_retrieval(self.model, ann)
        except (ValueError, ImportError) as exc:  # --ann on: no retrieval vectors, or faiss is not installed
            raise CommandError(str(exc)) from exc
        self.run_id = self.run_dir.name
        self._take_dataset(self.bundle)
        self.lock = threading.Lock()
        self._vectors: np.ndarray | None = None  # item vectors for similar(), computed on first use
        self.loaded_seconds = round(time.perf_counter() - started, 3)
        self.follow_every_s = 1.0  # how often a request looks whether the dataset was imported again
        self._looked_at = time.monotonic()

    def _take_dataset(self, bundle: Any) -> None:
        """Titles, explanation context and what may be served, from ``bundle`` (the dataset as imported now)."""
        from .explain.commands import _context
        from .privacy import forgotten_in
        from .train.commands import run_titles
        from .train.records import follow_current_import, users_gone_from_dataset

        self.bundle = bundle
        self.context = _context(self.model, bundle)
        self.titles, self.groups = run_titles(self.model, bundle)
        # items dropped by a later import of the dataset are not recommended (None: every item is still there),
        # nor those it marks as not for sale
        self.in_catalogue = follow_current_import(self.model, bundle)
        # people a later import of the dataset no longer has: not served either
        self.gone_users = users_gone_from_dataset(self.model, bundle)
        # people forgotten since the run was trained: its model still knows them, the API does not serve them
        self.forgotten = forgotten_in(self.run_dir, self.workspace.root, [str(u) for u in self.model.user_ids])

    def look_due(self) -> bool:
        return time.monotonic() - self._looked_at >= self.follow_every_s

    def follow_dataset(self) -> None:
        """Take up a later import of the run's dataset (at most one look every ``follow_every_s``): a shop that
        imports its catalogue again, with products archived or sold out since, is served what it sells now
        without restarting. A dataset that cannot be read now leaves the import served as it was."""
        if not self.look_due():
            return
        self._looked_at = time.monotonic()
        dataset = self.config.get("dataset")
        current = self.workspace.dataset_imported_at(dataset) if dataset else None
        if current is None or current == self.dataset_imported_at:
            return
        with self.lock:
            if current == self.dataset_imported_at:  # another request took it up meanwhile
                return
            try:
                bundle = self.workspace.load_dataset(dataset)
            except Exception:  # damaged or half-replaced: keep serving the import already loaded
                return
            self._take_dataset(bundle)
            self.dataset_imported_at = current

    def call(self, func, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return func(*args, **kwargs)

    def title(self, item: str) -> str | None:
        return self.titles.get(item) if self.titles else self.context.title(item)

    def vectors(self) -> Any:
        if self._vectors is None:
            from .explain.evidence import item_vectors

            self._vectors = item_vectors(self.model)
        return self._vectors


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no inf or NaN


def _known_user(served: ServedRun, user: str) -> None:
    if user in served.forgotten:
        raise HTTPException(
            404, f"user '{user}' was forgotten from the dataset after run {served.run_id} was trained; retrain the run"
        )
    if user in served.gone_users:
        raise HTTPException(
            404, f"user '{user}' is no longer in the dataset (imported again after run {served.run_id} was trained)"
        )
    try:
        served.model.user_index(user)
    except KeyError:
        raise HTTPException(404, f"unknown user '{user}': not in the training data of run {served.run_id}") from None


def _known_item(served: ServedRun, item: str) -> None:
    try:
        index = served.model.item_index(item)
    except KeyError:
        raise HTTPException(404, f"unknown item '{item}': not in the catalogue of run {served.run_id}") from None
    if served.in_catalogue is not None and not served.in_catalogue[index]:
        raise HTTPException(
            404, f"item '{item}' is no longer in the catalogue (imported again after run {served.run_id} was trained)"
        )


def _explanation(served: ServedRun, user: str | None, item: str, liked: list[str] | None = None) -> dict[str, Any]:
    """The ``explain`` command's dict for (user, item), or with ``liked`` for a new user known by those items."""
    from .explain.explainer import explain

    return explain(served.model, user, item, context=served.context, visitor_history=liked).to_dict()


def create_app(workspace: Any, run_id: str, served: ServedRun | None = None) -> FastAPI:
    """The API over run ``run_id`` of ``workspace`` (a :class:`recsys.workspace.Workspace` or its folder).

    The model loads here, once: a missing run raises :class:`recsys.cli.CommandError`, a damaged one
    :class:`recsys.models.ModelDamaged`, a run id that is a path :class:`recsys.workspace.InvalidName`.
    """
    if served is None:
        if not hasattr(workspace, "run_path"):
            from .workspace import Workspace

            workspace = Workspace(workspace)
        served = ServedRun(workspace, run_id)

    async def follow_dataset() -> None:
        """Before every request (a dependency of the app, not a middleware: those cost a few per cent of the
        throughput): a clock test on the loop; the look (a file read, maybe a reload) off it."""
        if served.look_due():
            await asyncio.to_thread(served.follow_dataset)

    app = FastAPI(
        dependencies=[Depends(follow_dataset)],
        title=f"recsys: run {served.run_id}",
        description="Recommendations, similar items, cold start and explanations from one trained run.",
        responses={404: {"model": ErrorResponse, "description": "unknown user or item"}},
    )
    app.state.served = served
    s = served

    @app.get("/health", response_model=Health)
    def health() -> Health:
        return Health(
            run_id=s.run_id,
            model=str(s.config.get("model") or s.model.name),
            dataset=s.config.get("dataset"),
            items=s.model.n_items,
            users=s.model.n_users,
            loaded_seconds=s.loaded_seconds,
            retrieval=s.retrieval.describe() if s.retrieval is not None else None,
            items_no_longer_in_catalogue=0 if s.in_catalogue is None else int((~s.in_catalogue).sum()),
            users_no_longer_in_dataset=len(s.gone_users),
            items_not_for_sale=int((~s.model.for_sale()).sum()),
        )

    @app.get("/recommend", response_model=RecommendResponse, response_model_exclude_none=True)
    def recommend(
        user: str = Query(..., min_length=1, description="user id"),
        k: int = Query(10, ge=1, le=MAX_K, description="how many items"),
        diversity: float = Query(0.0, ge=0.0, le=1.0, description="MMR diversity weight"),
        explain: bool = Query(False, description="add each item's explanation"),
        include_seen: bool = Query(False, description="do not exclude items the user already has"),
    ) -> RecommendResponse:
        _known_user(s, user)

        def run() -> list[dict[str, Any]]:
            items = s.model.recommend(
                user, k=k, exclude_seen=not include_seen, diversity=diversity, groups=s.groups, filters=s.in_catalogue
            )
            rows = [
                {"rank": r + 1, "item_id": item, "score": _finite(score), "title": s.title(item)}
                for r, (item, score) in enumerate(items)
            ]
            if explain:
                for row in rows:
                    row["explanation"] = _explanation(s, user, row["item_id"])
            return rows

        return RecommendResponse(run_id=s.run_id, user=user, k=k, diversity=diversity, recommendations=s.call(run))

    @app.get("/similar", response_model=SimilarResponse, response_model_exclude_none=True)
    def similar(
        item: str = Query(..., min_length=1, description="item id"),
        k: int = Query(10, ge=1, le=MAX_K, description="how many items"),
    ) -> SimilarResponse:
        from .explain.evidence import similar_items

        _known_item(s, item)
        items = s.call(lambda: similar_items(s.model, item, k, vectors=s.vectors(), keep=s.in_catalogue))
        rows = [
            Recommendation(rank=r + 1, item_id=i, score=_finite(score), title=s.title(i))
            for r, (i, score) in enumerate(items)
        ]
        return SimilarResponse(run_id=s.run_id, item=item, title=s.title(item), k=k, similar=rows)

    @app.post("/recommend-new", response_model=NewUserResponse, response_model_exclude_none=True)
    def recommend_new(request: NewUserRequest = Body(...)) -> NewUserResponse:
        from .explain.coldstart import (
            check_new_user_request,
            query_encoder_for_run,
            recommend_for_history,
            recommend_for_text,
        )

        query = (request.query or "").strip() or None
        if not request.like and not query:
            raise HTTPException(422, "give 'like' (item ids a new user liked) and/or 'query' (a text)")
        for item in request.like:
            _known_item(s, item)
        try:  # a user the request would ignore (with likes, or without a query) is refused, not dropped
            check_new_user_request(request.like, query, request.user)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        if request.user is not None:
            _known_user(s, request.user)
        if request.explain and query:  # text similarity is blended into those scores: no explanation covers it
            raise HTTPException(422, "'explain' explains lists from 'like' items only, not from a 'query'")

        def run() -> list[tuple[str, float]]:
            if query:
                return recommend_for_text(
                    s.model,
                    query,
                    k=request.k,
                    history=request.like or None,
                    blend=request.blend,
                    encoder=query_encoder_for_run(s.run_dir),
                    user=request.user,
                    items_frame=s.bundle.items if s.bundle is not None else None,
                    roles=s.bundle.schema.items if s.bundle is not None else None,
                    filters=s.in_catalogue,
                )
            return recommend_for_history(s.model, request.like, k=request.k, filters=s.in_catalogue)

        try:
            items = s.call(run)
        except (ValueError, RuntimeError) as exc:  # a query with no text features, an encoder not installed
            raise HTTPException(422, str(exc.args[0]) if exc.args else str(exc)) from exc
        explanations: dict[str, dict[str, Any]] = {}
        if request.explain:
            explanations = s.call(lambda: {i: _explanation(s, None, i, request.like) for i, _ in items})
        rows = [
            Recommendation(
                rank=r + 1,
                item_id=i,
                score=_finite(score),
                title=s.title(i),
                explanation=explanations.get(i),  # type: ignore[arg-type]  # pydantic validates the dict
            )
            for r, (i, score) in enumerate(items)
        ]
        return NewUserResponse(run_id=s.run_id, like=request.like, query=query, recommendations=rows)

    @app.get("/explain", response_model=ExplainResponse, response_model_exclude_none=True)
    def explain(
        user: str = Query(..., min_length=1, description="user id"),
        item: str = Query(..., min_length=1, description="item id"),
    ) -> ExplainResponse:
        _known_user(s, user)
        _known_item(s, item)
        return ExplainResponse(run_id=s.run_id, explanation=s.call(_explanation, s, user, item))

    return app


def check_servable(workspace: Any, run_id: str) -> Path:
    """The run folder of a run that can be served, or :class:`recsys.cli.CommandError` saying why not."""
    from .cli import CommandError
    from .train.records import read_run_config, read_run_record
    from .train.run import read_status

    run_dir = workspace.run_path(run_id)  # a run id, never a path (InvalidName: main prints it plainly)
    record = read_run_record(run_dir, read_status(run_dir)) if run_dir.is_dir() else None
    if record is None and run_dir.is_dir():
        read_run_config(run_dir)  # RunDamaged names a damaged config.json
    if record is None:
        from .cli import unknown_run

        raise unknown_run(workspace, run_id)
    if record.active:
        raise CommandError(f"run {run_id} is still training ({record.state}); serve it once it has ended")
    if not record.has_model:
        raise CommandError(f"run {run_id} has no saved model (state: {record.state})")
    return run_dir
