"""Cold start: new items, new users (a few liked items), a text query; and how well each works.

* **New item**: an item of the catalogue with no training interaction. The fusion model scores it
  from its content with the shared "unknown" behaviour token (it is on the model's item axis, so
  ``model.score`` already ranks it); :func:`recommend_users_for_item` lists who to show it to.
* **New user**: :func:`recommend_for_history` ranks the catalogue from a few liked item ids without
  retraining. Fusion: ``model.user_vector_from_history`` (pooled history vectors + the item-item
  prior). History-based baselines (MostPop, ItemKNN, EASE, content) score the items as a one-row
  history; BPR-MF / LightGCN fold the user in as the mean of the liked items' factors.
* **Text query**: :func:`recommend_for_text` encodes the query with the run's text encoder, takes
  the ``n_neighbours`` catalogue items whose raw text features are most similar (cosine), and uses
  them, weighted by similarity, as a pseudo-history (the fusion model takes the set), mixes in the
  query's own similarity (``direct``) and blends with a real history when given.

Evaluation helpers: :func:`evaluate_cold_start` (P1 cold protocol: held-out items ranked among
themselves), :func:`evaluate_by_history_length` (known users bucketed by their number of
training items) and :func:`evaluate_short_histories` (users reduced to 1-3 liked items and scored
through the new-user path).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..features.registry import DEFAULT_TEXT_ENCODER
from ..topk import by_score, k_largest

__all__ = [
    "history_scores",
    "recommend_for_history",
    "encode_query",
    "query_similarities",
    "text_neighbours",
    "recommend_for_text",
    "popularity_share",
    "is_new_item",
    "recommend_users_for_item",
    "evaluate_cold_start",
    "evaluate_by_history_length",
    "evaluate_short_histories",
    "query_encoder_for_run",
    "check_new_user_request",
]

# baselines whose score() reads the user's history from ``model.seen`` (scored from a one-row history)


def _indices(model: Any, items: Sequence[int | str]) -> np.ndarray:
    return np.asarray([model.item_index(i) for i in items], dtype=np.int64)


def _ranked(
    model: Any, scores: np.ndarray, k: int, exclude: np.ndarray | None, filters: np.ndarray | None
) -> list[tuple[str, float]]:
    scores = np.asarray(scores, dtype=np.float64).copy()
    if exclude is not None and len(exclude):
        scores[np.asarray(exclude, dtype=np.int64)] = -np.inf
    if filters is not None:
        scores[~np.asarray(filters, dtype=bool)] = -np.inf
    finite = np.isfinite(scores)
    k = int(min(k, finite.sum()))
    if k <= 0:
        return []
    top = by_score(k_largest(scores, k), scores)
    return [(str(model.item_ids[i]), float(scores[i])) for i in top]


def history_scores(
    model: Any, item_indices: Sequence[int] | np.ndarray, weights: Sequence[float] | None = None
) -> np.ndarray:
    """Scores ``[n_items]`` for a user known only by ``item_indices`` (optionally weighted): the model's
    own new-user path, :meth:`Recommender.score_history`."""
    return np.asarray(model.score_history(np.asarray(item_indices, dtype=np.int64), weights), dtype=np.float64)


def recommend_for_history(
    model: Any,
    item_ids: Sequence[int | str],
    k: int = 10,
    exclude: Sequence[int | str] | None = None,
    filters: np.ndarray | None = None,
    weights: Sequence[float] | None = None,
    *,
    diversity: float = 0.0,
    item_vectors: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    exposure: tuple[np.ndarray, float, float] | None = None,
) -> list[tuple[str, float]]:
    """Top-``k`` (item_id, score) for a new user who liked ``item_ids`` (no retraining).

    ``exclude``: item ids never to recommend (default: the liked items themselves); ``filters``:
    a boolean keep-mask over the model's items. ``diversity``, ``item_vectors``, ``groups`` and ``exposure``
    re-rank as :meth:`Recommender.recommend` does for a known user (:func:`recsys.models.rerank.select_top`);
    with ``groups``, other versions of the excluded items are left out too.
    """
    items = _indices(model, item_ids)
    scores = history_scores(model, items, weights)
    excluded = items if exclude is None else _indices(model, exclude)
    # what the catalogue does not sell is never recommended, to a visitor neither
    filters = model.for_sale() if filters is None else model.for_sale() & np.asarray(filters, dtype=bool)
    if diversity <= 0 and groups is None and exposure is None:
        return _ranked(model, scores, k, excluded, filters)
    from ..models.rerank import select_top

    keep = np.ones(model.n_items, dtype=bool) if filters is None else np.asarray(filters, dtype=bool).copy()
    keep[np.asarray(excluded, dtype=np.int64)] = False
    if groups is not None:  # other versions of an excluded (liked) article are not new either
        from ..models.rerank import without_versions_of

        keep = without_versions_of(keep, groups, excluded, k)
    if diversity > 0 and item_vectors is None:
        item_vectors = model.item_embeddings()
    top = select_top(scores, k, keep, diversity, item_vectors, groups, exposure)
    return [(str(model.item_ids[i]), float(scores[i])) for i in top]


def popularity_share(
    model: Any,
    liked: Sequence[int | str],
    items: Sequence[int | str],
    scores: Sequence[float] | None = None,
) -> float | None:
    """How much of the scores of ``items`` for a new user who liked ``liked`` no liked item accounts for
    (:meth:`Recommender.score_without_history`: a popularity prior, item biases), as a share of those scores
    summed; None when they do not sum to a positive number. ``scores``: those items' scores when the caller has
    them (a list from :func:`recommend_for_history`), so they are not computed again. A short history leans on
    popularity (the model trusts it little): with one liked item the same bestsellers can top every visitor's
    list, and the page says why."""
    liked_index, index = _indices(model, liked), _indices(model, items)
    if not len(liked_index) or not len(index):
        return None
    total = float(np.sum(scores)) if scores is not None else float(history_scores(model, liked_index)[index].sum())
    if total <= 0:
        return None
    prior = float(np.asarray(model.score_without_history(mixing_history=liked_index))[index].sum())
    return float(min(max(prior / total, 0.0), 1.0))


# ----------------------------------------------------------------------------- text queries


def encode_query(
    query: str,
    encoder: Any = DEFAULT_TEXT_ENCODER,
    *,
    items_frame: pd.DataFrame | None = None,
    roles: Mapping[str, str] | None = None,
    separator: str = "|",
) -> np.ndarray:
    """The query's text feature vector, in the same space as the catalogue's text features.

    ``encoder``: a registry name (``"minilm"``, ``"tfidf"``, ``"hf:..."``), an encoder object, or
    a callable ``list[str] -> array``. An encoder fitted on its corpus (TF-IDF) is first fitted on
    the catalogue's item texts (``items_frame`` and ``roles`` are then required), exactly as feature
    extraction did, so the query lands in the features' space.
    """
    if isinstance(encoder, str):
        from ..features import get_encoder

        encoder = get_encoder(encoder, device="cpu")
    if not hasattr(encoder, "encode") and callable(encoder):
        return np.asarray(encoder([query]), dtype=np.float32)[0]
    if getattr(encoder, "row_independent", True) is False:
        if items_frame is None or roles is None:
            raise ValueError(
                f"the {getattr(encoder, 'name', 'text')} encoder is fitted on the catalogue's texts: "
                "pass items_frame and roles"
            )
        from ..features import build_item_text

        texts = [
            t for t in build_item_text(items_frame.reset_index(drop=True), roles, separator=separator) if t.strip()
        ]
        encoder.fit(texts)
        return np.asarray(encoder.transform([query]), dtype=np.float32)[0]
    return np.asarray(encoder.encode([query]), dtype=np.float32)[0]


def _text_matrix(model: Any, item_text: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if item_text is not None:
        matrix = np.asarray(item_text, dtype=np.float32)
        return matrix, np.linalg.norm(matrix, axis=1) > 0
    space = model.modality_vectors("text") if hasattr(model, "modality_vectors") else None
    if space is None:
        raise ValueError(
            f"the {getattr(model, 'name', 'model')} model holds no text features: pass item_text "
            "(the catalogue's text features aligned with the model's items)"
        )
    return space[0], space[1]


def _text_centre(model: Any, item_text: np.ndarray | None) -> np.ndarray | None:
    """The vector the model centred its text features on (a query is centred the same way), if any."""
    if item_text is not None or not hasattr(model, "modality_vectors"):
        return None
    space = model.modality_vectors("text")
    return None if space is None else space[2]


def query_similarities(model: Any, query_vector: np.ndarray, item_text: np.ndarray | None = None) -> np.ndarray:
    """Cosine of the query to every item's text features (``-inf`` for items without text), in the model's
    own text space when it has one (centred on the catalogue mean), else against ``item_text``."""
    matrix, mask = _text_matrix(model, item_text)
    q = np.asarray(query_vector, dtype=np.float32).ravel()
    if q.shape[0] != matrix.shape[1]:
        raise ValueError(
            f"the query vector has {q.shape[0]} dimensions but the item text features have "
            f"{matrix.shape[1]}: encode the query with the run's text encoder"
        )
    centre = _text_centre(model, item_text)
    if centre is not None:  # the model's text space is centred on the catalogue mean
        q = q - centre
    norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(q) or 1.0)
    return np.where(mask & (norms > 0), matrix @ q / np.where(norms > 0, norms, 1.0), -np.inf).astype(np.float64)


def text_neighbours(
    model: Any, query_vector: np.ndarray, n: int = 20, item_text: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine similarities of the ``n`` items whose text is most like the query."""
    sims = query_similarities(model, query_vector, item_text)
    n = int(min(n, np.isfinite(sims).sum()))
    if n <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    top = k_largest(sims, n)
    top = top[np.argsort(-sims[top], kind="stable")]
    return top.astype(np.int64), sims[top].astype(np.float64)


def _standardise(scores: np.ndarray) -> np.ndarray:
    finite = np.isfinite(scores)
    if not finite.any():
        return scores
    mean, std = scores[finite].mean(), scores[finite].std()
    return np.where(finite, (scores - mean) / (std if std > 0 else 1.0), scores)


def check_new_user_request(like: Sequence[Any] | None, query: str | None, user: str | None) -> None:
    """Refuse a cold-start request whose ``user`` would be ignored (ValueError, the message for the caller).

    A known ``user`` only blends a text ``query`` with that user's own ranking; with liked items the likes
    are the whole history (the user would not be read, and the user's own items not hidden)."""
    if user is None:
        return
    if like:
        raise ValueError(
            "a known user cannot be combined with liked items: the liked items are the whole history of a new "
            "user. Give the likes alone, or the user with a text query (or a known user's own list: recommend)"
        )
    if not query:
        raise ValueError(
            "a known user blends a text query with that user's history: give a query too "
            "(or, for the user's own list, use recommend)"
        )


def recommend_for_text(
    model: Any,
    query: str,
    k: int = 10,
    history: Sequence[int | str] | None = None,
    blend: float = 0.5,
    encoder: Any = DEFAULT_TEXT_ENCODER,
    *,
    items_frame: pd.DataFrame | None = None,
    roles: Mapping[str, str] | None = None,
    n_neighbours: int = 20,
    user: int | str | None = None,
    exclude: Sequence[int | str] | None = None,
    filters: np.ndarray | None = None,
    item_text: np.ndarray | None = None,
    query_vector: np.ndarray | None = None,
    direct: float = 0.5,
) -> list[tuple[str, float]]:
    """Top-``k`` (item_id, score) for a text query such as "a cosy mystery set in Paris".

    The ``n_neighbours`` items most like the query (cosine of raw text features) form a pseudo-
    history weighted by their (positive) similarity, and the model scores the catalogue from it.
    ``direct`` mixes in the query's own cosine to each item (both standardised; 0 = the model's
    pseudo-history scores only; on the demo catalog 0.5 doubles the on-topic share of the top 10).
    With a real ``history`` (liked item ids) or a known ``user``, the query ranking and the user's
    ranking are standardised and blended: ``blend`` is the weight of the query (1 = the query
    only). The history's items are excluded from the result.
    """
    if query_vector is None:
        query_vector = encode_query(query, encoder, items_frame=items_frame, roles=roles)
    similarities = query_similarities(model, query_vector, item_text)
    neighbours, sims = text_neighbours(model, query_vector, n_neighbours, item_text)
    if len(neighbours) == 0:
        raise ValueError("no catalogue item has text features to match the query against")
    weights = np.clip(sims, 0.0, None)
    if weights.sum() <= 0:
        weights = np.ones(len(neighbours))
    scores = _standardise(history_scores(model, neighbours, weights))
    direct = float(min(max(direct, 0.0), 1.0))
    if direct > 0:
        scores = (1.0 - direct) * scores + direct * _standardise(np.where(np.isfinite(similarities), similarities, 0.0))
    excluded: list[int] = [] if exclude is None else list(_indices(model, exclude))
    blend = float(min(max(blend, 0.0), 1.0))
    own = None
    if history:
        liked = _indices(model, history)
        own = history_scores(model, liked)
        excluded += liked.tolist()
    elif user is not None:
        row = model.user_index(user)
        own = np.asarray(model.score(np.array([row]))[0], dtype=np.float64)
        if model.seen is not None:
            excluded += model.seen.indices[model.seen.indptr[row] : model.seen.indptr[row + 1]].tolist()
    if own is not None:
        scores = blend * scores + (1.0 - blend) * _standardise(own)
    return _ranked(model, scores, k, np.asarray(excluded, dtype=np.int64), filters)


def query_encoder_for_run(run_dir: Any) -> str:
    """The text encoder name a run's features were made with (its ``config.json``)."""
    import json
    from pathlib import Path

    config = json.loads((Path(run_dir) / "config.json").read_text())["config"]
    return str(config.get("text_encoder") or DEFAULT_TEXT_ENCODER)


# ----------------------------------------------------------------------------- new items


def is_new_item(model: Any, item: int | str) -> bool:
    """True when ``item`` had no training interaction (it is scored from content alone)."""
    index = model.item_index(item)
    seen = model.seen
    return seen is None or seen[:, index].nnz == 0


def recommend_users_for_item(
    model: Any, item: int | str, k: int = 10, exclude_seen: bool = True, batch_size: int = 512
) -> list[tuple[str, float]]:
    """The ``k`` users for whom ``item`` stands out most (who to show a new item to).

    Scores are comparable within a user, not across users (a heavy user's scores sit on another
    scale), so users are ranked by the item's z-score within their own scores over the catalogue.
    """
    index = model.item_index(item)
    scores = np.empty(model.n_users, dtype=np.float64)
    for start in range(0, model.n_users, batch_size):
        rows = np.arange(start, min(start + batch_size, model.n_users))
        block = np.asarray(model.score(rows), dtype=np.float64)
        block = np.where(np.isfinite(block), block, np.nan)
        mean, std = np.nanmean(block, axis=1), np.nanstd(block, axis=1)
        scores[rows] = (block[:, index] - mean) / np.where(std > 0, std, 1.0)
    scores = np.where(np.isfinite(scores), scores, -np.inf)
    if exclude_seen and model.seen is not None:
        scores[model.seen[:, index].nonzero()[0]] = -np.inf
    k = int(min(k, np.isfinite(scores).sum()))
    if k <= 0:
        return []
    top = np.argsort(-scores, kind="stable")[:k]
    return [(str(model.user_ids[u]), float(scores[u])) for u in top]


# ----------------------------------------------------------------------------- evaluation


def evaluate_cold_start(models: Mapping[str, Any], prepared: Any, ks: Sequence[int] = (10, 20)) -> dict[str, dict]:
    """P1 cold-start metrics of fitted ``models`` on a ``prepare_data(..., protocol="cold")`` split.

    Each model ranks only the held-out items (``candidate_items=cold_items``) for the users who
    have them; their training items are masked.
    """
    from ..evaluate import evaluate_ranking

    if prepared.cold_items is None:
        raise ValueError("prepared data is not a cold-start split: use prepare_data(..., protocol='cold')")
    return {
        name: evaluate_ranking(
            model.score, prepared.data.train, prepared.cold_test, ks=ks, candidate_items=prepared.cold_items
        )
        for name, model in models.items()
    }


def _bucket_label(low: int, high: int | None) -> str:
    return f"{low}+" if high is None else (f"{low}" if low == high else f"{low}-{high}")


def evaluate_by_history_length(
    model: Any,
    train: sp.spmatrix,
    test: sp.spmatrix,
    exclude: sp.spmatrix | None = None,
    buckets: Sequence[tuple[int, int | None]] = ((1, 3), (4, 10), (11, 50), (51, None)),
    ks: Sequence[int] = (10, 20),
) -> list[dict[str, Any]]:
    """Test metrics of known users grouped by their number of training items (1-3 = very short).

    One row per bucket: ``bucket``, ``low``, ``high``, ``users`` (evaluated) and the metrics of
    :func:`recsys.evaluate.evaluate_ranking` restricted to those users.
    """
    from ..evaluate import evaluate_ranking

    train = sp.csr_matrix(train)
    test = sp.csr_matrix(test)
    lengths = np.diff(train.indptr)
    rows = []
    for low, high in buckets:
        members = (lengths >= low) & (lengths <= (high if high is not None else np.inf))
        test_bucket = sp.diags(members.astype(np.float32)) @ test
        test_bucket = sp.csr_matrix(test_bucket)
        test_bucket.eliminate_zeros()
        if test_bucket.nnz == 0:
            rows.append({"bucket": _bucket_label(low, high), "low": low, "high": high, "users": 0})
            continue
        metrics = evaluate_ranking(model.score, train, test_bucket, exclude=exclude, ks=ks)
        rows.append(
            {
                "bucket": _bucket_label(low, high),
                "low": low,
                "high": high,
                "users": metrics.pop("n_users_evaluated"),
                **metrics,
            }
        )
    return rows


def evaluate_short_histories(
    model: Any,
    train: sp.spmatrix,
    test: sp.spmatrix,
    exclude: sp.spmatrix | None = None,
    lengths: Sequence[int] = (1, 2, 3),
    max_users: int | None = 500,
    seed: int = 2026,
    ks: Sequence[int] = (10, 20),
    per_user_ndcg: int | None = None,
) -> list[dict[str, Any]]:
    """Users reduced to ``n`` random liked training items, scored through the new-user path.

    For each ``n`` in ``lengths``: up to ``max_users`` users with a test item keep ``n`` random
    training items; :func:`history_scores` ranks the catalogue from them alone (no user embedding);
    all their training items and ``exclude`` items are masked, and the test items are the
    positives. (The model was trained with these users' full histories, so this measures the
    new-user path, not a strict new-user protocol.) ``per_user_ndcg=k`` adds each row's users' NDCG@k
    (``"per_user_ndcg"``, an array) for paired comparisons; with ``ks=()`` only that is computed (the
    catalogue is then scored once per row, not twice).
    """
    from ..evaluate import evaluate_ranking, per_user_metric

    train = sp.csr_matrix(train)
    test = sp.csr_matrix(test)
    rng = np.random.default_rng(seed)
    counts = np.diff(train.indptr)
    out = []
    for n in lengths:
        users = np.flatnonzero((counts >= n) & (np.diff(test.indptr) > 0))
        if max_users is not None and len(users) > max_users:
            users = np.sort(rng.choice(users, size=max_users, replace=False))
        kept = {
            int(u): rng.choice(train.indices[train.indptr[u] : train.indptr[u + 1]], size=n, replace=False)
            for u in users
        }
        keep_rows = np.zeros(train.shape[0], dtype=np.float32)
        keep_rows[users] = 1.0
        test_rows = sp.csr_matrix(sp.diags(keep_rows) @ test)
        test_rows.eliminate_zeros()

        def score_fn(batch: np.ndarray, kept: dict = kept) -> np.ndarray:
            return np.asarray(model.score_histories([kept[int(u)] for u in batch]), dtype=np.float32)

        row: dict[str, Any] = {"history_items": int(n)}
        if ks:
            metrics = evaluate_ranking(score_fn, train, test_rows, exclude=exclude, ks=ks, batch_size=256)
            row.update(users=metrics.pop("n_users_evaluated"), **metrics)
        if per_user_ndcg is not None:
            per_user = per_user_metric(
                score_fn, train, test_rows, "ndcg", int(per_user_ndcg), exclude=exclude, batch_size=256
            )
            row["per_user_ndcg"] = per_user
            row.setdefault("users", int(len(per_user)))
        out.append(row)
    return out
