"""Re-ranking for diversity (MMR), filters as item masks, and metrics beside accuracy.

* :func:`mmr_rerank` — maximal marginal relevance over one user's scores: each step picks
  ``argmax (1 - diversity) * relevance - diversity * max cosine to the items already picked``
  (relevance min-max scaled to [0, 1] over the candidate pool). ``diversity = 0`` is the plain
  ranking by score.
* :func:`exposure_rerank` — exposure-aware re-ranking of one user's scores toward a target share of one
  item group (e.g. a genre's catalogue share): each step picks ``argmax (1 - strength) * relevance -
  strength * |group slots so far + g(i) - target * position|``. ``strength = 0`` is the plain ranking.
  :class:`ExposureBalancer` carries the leftover (the group's surplus or deficit in slots) from one user's
  list to the next, so that a target below half a slot per list is met over many lists instead of being
  rounded in each (batch export, the exposure sweep); a single user's ``recommend`` balances its list alone.
* :func:`variant_groups` — the near-duplicate guard's groups: items whose titles are the same once
  case, punctuation, bracketed notes, and colour and size words at either end of the title or of a part
  of it are set aside (colour variants of one article) share a group; a colour inside a name and a
  bracketed place in a series ("(Book 2)") stay; :func:`select_top` keeps at most one item per group.
* Filters — boolean keep-masks over the model's items built from an items frame aligned with them:
  :func:`category_mask`, :func:`price_mask`, :func:`seen_mask`, combined by :func:`filter_mask`.
* Metrics over a set of recommendation lists (``[n_users, k]`` item indices, ``-1`` padding):
  :func:`catalogue_coverage`, :func:`intra_list_diversity` (mean pairwise ``1 - cosine``),
  :func:`novelty` (mean self-information ``-log2 p(i)``, ``p(i)`` = share of training users who
  have the item), :func:`long_tail_share` (share of recommended items outside the 20 % most
  popular) and :func:`beyond_accuracy` (all four).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..evaluate.metrics import catalogue_coverage as _coverage
from ..topk import by_score, k_largest

__all__ = [
    "mmr_rerank",
    "exposure_rerank",
    "ExposureBalancer",
    "group_membership",
    "select_top",
    "variant_groups",
    "rerank_users",
    "category_mask",
    "price_mask",
    "seen_mask",
    "filter_mask",
    "catalogue_coverage",
    "intra_list_diversity",
    "novelty",
    "long_tail_share",
    "beyond_accuracy",
    "normalise_rows",
]


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def mmr_rerank(
    scores: np.ndarray,
    item_vectors: np.ndarray | None,
    k: int,
    diversity: float = 0.0,
    candidates: np.ndarray | Sequence[int] | None = None,
    pool: int | None = None,
) -> np.ndarray:
    """Top-``k`` item indices of one user after MMR re-ranking.

    ``scores``: ``[n_items]`` (``-inf`` = never recommend, e.g. seen or filtered out).
    ``item_vectors``: ``[n_items, d]`` (cosine is taken on the rows, normalised here).
    ``None`` only with ``diversity`` 0 (the plain ranking needs no vectors).
    ``candidates``: item indices or a boolean mask restricting the choice. ``pool``: MMR looks at
    the ``pool`` best-scored candidates only (default ``max(5 k, 50)``); ``diversity`` in [0, 1].
    """
    scores = np.asarray(scores, dtype=np.float64).copy()
    if candidates is not None:
        keep = np.zeros(len(scores), dtype=bool)
        candidates = np.asarray(candidates)
        if candidates.dtype == bool:
            keep = candidates.copy()
        else:
            keep[candidates.astype(np.int64)] = True
        scores[~keep] = -np.inf
    finite = np.flatnonzero(np.isfinite(scores))
    k = int(min(k, len(finite)))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    diversity = float(min(max(diversity, 0.0), 1.0))
    if diversity <= 0.0 or k == 1:  # the plain ranking: the rule batch export shares (score, then lower index)
        from ..topk import top_k_rows

        return top_k_rows(scores, k)[0][0]
    best, _ = _pool(scores, k, pool)  # by score, ties by index
    relevance = scores[best]
    low, high = relevance.min(), relevance.max()
    relevance = (relevance - low) / (high - low) if high > low else np.ones_like(relevance)
    vectors = normalise_rows(np.asarray(item_vectors)[best])
    similarity = vectors @ vectors.T
    chosen = [0]
    available = np.ones(len(best), dtype=bool)
    available[0] = False
    max_sim = similarity[0].astype(np.float64).copy()
    while len(chosen) < k:
        gain = (1.0 - diversity) * relevance - diversity * max_sim
        gain[~available] = -np.inf
        pick = int(np.argmax(gain))
        chosen.append(pick)
        available[pick] = False
        max_sim = np.maximum(max_sim, similarity[pick])
    return best[chosen].astype(np.int64)


def _pool(scores: np.ndarray, k: int, pool: int | None) -> tuple[np.ndarray, int]:
    """The ``pool`` best-scored finite items (by score, ties by index) and the list length ``k`` they allow."""
    finite = np.flatnonzero(np.isfinite(scores))
    k = int(min(k, len(finite)))
    if k <= 0:
        return np.zeros(0, dtype=np.int64), 0
    size = int(min(len(finite), pool or max(5 * k, 50)))
    best = finite[k_largest(scores[finite], size)] if size < len(finite) else finite
    return by_score(best, scores).astype(np.int64), k


def exposure_rerank(
    scores: np.ndarray,
    membership: np.ndarray,
    k: int,
    target: float,
    strength: float = 0.0,
    pool: int | None = None,
    carry: float = 0.0,
) -> np.ndarray:
    """Top-``k`` item indices of one user, re-ranked so that one item group's share of the list moves toward
    ``target``.

    ``membership``: ``[n_items]`` in [0, 1], how much of each item belongs to the group (1/0 for a plain
    category; ``1 / number of labels`` for a multi-label column, so shares add up to 1 over all labels, as
    in :mod:`recsys.evaluate.fairness`). ``target``: the wanted share of the list (e.g. the group's share
    of the catalogue). ``strength`` in [0, 1]: 0 = the ranking by score; 1 = follow the target as closely
    as the pool allows, best-scored first among equals.

    Greedy, like MMR: at position t (0-based), with ``c`` the group's slots so far, each candidate ``i``
    gains ``(1 - strength) * relevance(i) - strength * |c + membership(i) - target * (t + 1)|``. The
    deviation is counted in list slots (not as a share), so the pull toward the target is as strong at
    rank 20 as at rank 2; relevance is min-max scaled to [0, 1] over the pool, so ``strength / (1 -
    strength)`` reads as "how much relevance one slot of deviation is worth". Both under- and over-exposed
    groups are handled: the same rule boosts a group below its target and holds back one above it.

    ``carry``: the group's slots above (positive) or below (negative) the target left over from the lists
    before this one; it starts the count ``c``, so a group owed 0.6 of a slot gets one in this list and a
    group 0.4 of a slot ahead is held back. 0 (the default) balances this list alone; :class:`ExposureBalancer`
    keeps the carry over many lists.
    """
    scores = np.asarray(scores, dtype=np.float64)
    membership = np.clip(np.asarray(membership, dtype=np.float64), 0.0, 1.0)
    if membership.shape != scores.shape:
        raise ValueError(f"membership has shape {membership.shape}, scores {scores.shape}")
    best, k = _pool(scores, k, pool)
    strength = float(min(max(strength, 0.0), 1.0))
    if k == 0:
        return best
    if strength <= 0.0:
        return best[:k]
    relevance = scores[best]
    low, high = relevance.min(), relevance.max()
    relevance = (relevance - low) / (high - low) if high > low else np.ones_like(relevance)
    weight = membership[best]
    available = np.ones(len(best), dtype=bool)
    chosen: list[int] = []
    slots = float(carry)
    for position in range(k):
        deviation = np.abs(slots + weight - float(target) * (position + 1))
        gain = (1.0 - strength) * relevance - strength * deviation
        gain[~available] = -np.inf
        pick = int(np.argmax(gain))  # first maximum: ties go to the better-scored item
        chosen.append(pick)
        available[pick] = False
        slots += weight[pick]
    return best[chosen]


class ExposureBalancer:
    """Exposure-aware re-ranking over many users' lists, one after the other, with the leftover carried over.

    Each list alone can only be balanced to whole slots: a group whose target is 0.2 of a slot per list gets
    0 slots in every list at any strength (``|0 - 0.2| < |1 - 0.2|``), so its exposure falls below the
    target as the strength rises. The balancer keeps ``carry``, the group's slots so far minus
    ``target * slots so far`` over the lists already ranked, and starts each list's count from it
    (:func:`exposure_rerank`'s ``carry``), like error diffusion: every fifth list or so gets the group's
    slot. The carry is kept within ``+-limit`` slots (default 1), so a stretch of users whose pools hold no
    item of the group does not make later users pay for all of them. ``strength = 0`` is the plain ranking.
    """

    def __init__(self, membership: np.ndarray, target: float, strength: float, limit: float = 1.0):
        self.membership = np.clip(np.asarray(membership, dtype=np.float64), 0.0, 1.0)
        self.target = float(target)
        self.strength = float(min(max(strength, 0.0), 1.0))
        self.limit = float(limit)
        self.carry = 0.0
        self.slots = 0  # list places counted so far (all lists)
        self.group_slots = 0.0  # the group's membership-weighted share of them

    @property
    def share(self) -> float:
        """The group's share of every slot counted so far (NaN before the first list)."""
        return self.group_slots / self.slots if self.slots else float("nan")

    def rerank(self, scores: np.ndarray, k: int, pool: int | None = None) -> np.ndarray:
        """One user's top-``k`` (as :func:`exposure_rerank`, from the carried count); the carry is updated."""
        top = exposure_rerank(scores, self.membership, k, self.target, self.strength, pool, carry=self.carry)
        self.update(top)
        return top

    def update(self, items: np.ndarray) -> None:
        """Count a list ranked elsewhere (``-1`` padding ignored) into the carry."""
        items = np.asarray(items, dtype=np.int64)
        items = items[items >= 0]
        group = float(self.membership[items].sum())
        self.slots += len(items)
        self.group_slots += group
        left = self.carry + group - self.target * len(items)
        self.carry = float(min(max(left, -self.limit), self.limit))


def select_top(
    scores: np.ndarray,
    k: int,
    keep: np.ndarray | None = None,
    diversity: float = 0.0,
    item_vectors: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    exposure: tuple[np.ndarray, float, float] | None = None,
) -> np.ndarray:
    """Top-``k`` item indices of one user's ``scores``: ``keep`` (a boolean mask) applied, at most one item
    per ``groups`` value (the best-scored one stands for its group), then MMR at ``diversity`` (needs
    ``item_vectors``; 0 = by score), then, with ``exposure = (membership, target, strength)``, the
    exposure-aware re-ranking of :func:`exposure_rerank` over the MMR order (MMR's order stands in for the
    scores, so the two compose: variety first, then the group's share)."""
    scores = np.asarray(scores, dtype=np.float64).copy()
    if keep is not None:
        scores[~np.asarray(keep, dtype=bool)] = -np.inf
    if groups is not None:
        groups = np.asarray(groups, dtype=np.int64)
        finite = np.flatnonzero(np.isfinite(scores))
        # the best-scored item of each group (ties: lowest index) stands for it
        order = finite[np.lexsort((finite, -scores[finite]))]
        _, first = np.unique(groups[order], return_index=True)
        leaders = np.zeros(len(scores), dtype=bool)
        leaders[order[first]] = True
        scores[~leaders] = -np.inf
    diversity = diversity if item_vectors is not None else 0.0
    if exposure is None or exposure[2] <= 0:
        return mmr_rerank(scores, item_vectors, k, diversity)
    membership, target, strength = exposure
    pool = int(max(5 * k, 50))
    if diversity > 0:  # MMR orders a longer list; its rank becomes the relevance of the exposure step
        ordered = mmr_rerank(scores, item_vectors, pool, diversity, pool=pool)
        scores = np.full(len(scores), -np.inf)
        scores[ordered] = np.arange(len(ordered), 0, -1, dtype=np.float64)
    return exposure_rerank(scores, membership, k, target, strength, pool=pool)


#: Words that name a variant of an article rather than the article (the guard sets them aside).
_VARIANT_WORDS = frozenset(
    """
black white grey gray silver gold red blue navy green olive khaki beige brown tan cream ivory pink purple
violet lilac yellow orange turquoise teal burgundy maroon coral mint multicolour multicolor multi dark light
pale bright neon matt matte sand charcoal mustard sage taupe ecru oatmeal camel rust plum indigo heather
xxs xs s m l xl xxl xxxl small medium large size colour color pack
""".split()
)


# a bracketed note that places the item in a series ("(Book 2)", "[Vol. III]", "(#4)") names another product,
# not a variant of one: the guard keeps it in the title
_SERIES_NOTE = re.compile(
    r"(\b(book|vol|volume|part|tome|episode|season|series|issue|no|nr|band|teil|tomo|livre)\b\.?\s*#?\s*"
    r"(\d+|[ivxlc]+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)\b)|#\s*\d+"
)
_BRACKETED = re.compile(r"[\(\[\{]([^)\]}]*)[\)\]\}]")
# where a title's variant part starts: "Everyday Hoodie - Sand", "Slim Jeans / Black", "Mug, Large"
_SEGMENT_BREAK = re.compile(r"\s+[-\u2013\u2014]\s+|[/|:,;]")


def variant_groups(titles: Sequence[Any], makers: Sequence[Any] | None = None) -> np.ndarray:
    """One group id per item: items whose titles match once lower-cased, with bracketed notes, punctuation,
    and colour and size words at either end of the title or of a part of it set aside, share a group
    (``"Slim Jeans (Black)"``, ``"slim jeans - blue"``, ``"Black Slim Jeans XL"``). A colour word inside a name
    stays ("The Red Prince" is not "The Black Prince"), and so does a bracketed place in a series ("1Q84 (Book
    2)" is not "1Q84 (Book 1)"). A title that is empty, or made only of such words, is its own group. With
    ``makers`` (each item's brand or vendor), only items of one maker share a group: six vendors' "Everyday
    Hoodie" are six articles."""
    import unicodedata

    def missing(value: Any) -> bool:
        return value is None or (isinstance(value, float) and np.isnan(value))

    def named_words(part: str) -> list[str]:
        words = re.findall(r"[^\W_]+", part)
        start, end = 0, len(words)
        while start < end and words[start] in _VARIANT_WORDS:
            start += 1
        while end > start and words[end - 1] in _VARIANT_WORDS:
            end -= 1
        return words[start:end]

    keys: dict[str, int] = {}
    out = np.empty(len(titles), dtype=np.int64)
    for position, title in enumerate(titles):
        text = "" if missing(title) else str(title)
        text = unicodedata.normalize("NFKC", text).casefold()
        text = _BRACKETED.sub(lambda note: f" {note.group(1)} " if _SERIES_NOTE.search(note.group(1)) else " , ", text)
        words = [word for part in _SEGMENT_BREAK.split(text) for word in named_words(part)]
        key = " ".join(words) or f"\x00{position}"
        if makers is not None and words and not missing(maker := makers[position]):
            key += "\x00" + unicodedata.normalize("NFKC", str(maker)).casefold().strip()
        out[position] = keys.setdefault(key, len(keys))
    return out


def versions_of(groups: np.ndarray, items: np.ndarray | Sequence[int]) -> np.ndarray:
    """Boolean mask over items: those in the same :func:`variant_groups` group as any of ``items`` (the items
    themselves included). A list that hides what the user has hides these too: the same article under another
    SKU (another size, colour or re-listing) is not a new recommendation."""
    groups = np.asarray(groups, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    if items.size == 0:
        return np.zeros(len(groups), dtype=bool)
    return np.isin(groups, groups[items])


def without_versions_of(keep: np.ndarray, groups: np.ndarray, items: np.ndarray | Sequence[int], k: int) -> np.ndarray:
    """``keep`` less the other versions of ``items`` (:func:`versions_of`), unless that leaves fewer than ``k``
    items: a catalogue whose titles are generic ("T-shirt" for every shirt) would otherwise lose the whole list."""
    narrowed = keep & ~versions_of(groups, items)
    return narrowed if np.count_nonzero(narrowed) >= k else keep


def rerank_users(
    model: Any,
    users: Sequence[int] | np.ndarray,
    k: int,
    item_vectors: np.ndarray,
    diversity: float = 0.0,
    exclude: sp.spmatrix | None = None,
    mask: np.ndarray | None = None,
    pool: int | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """``[len(users), k]`` recommended item indices (``-1`` padding) with training items (and
    ``exclude``) masked, ``mask`` (keep-mask over items) applied and MMR at ``diversity``."""
    users = np.asarray(users, dtype=np.int64)
    out = np.full((len(users), k), -1, dtype=np.int64)
    seen = model.seen.tocsr() if model.seen is not None else None
    exclude = sp.csr_matrix(exclude) if exclude is not None else None
    for start in range(0, len(users), batch_size):
        rows = users[start : start + batch_size]
        scores = np.asarray(model.score(rows), dtype=np.float64)
        if seen is not None:
            scores[seen[rows].nonzero()] = -np.inf
        if exclude is not None:
            scores[exclude[rows].nonzero()] = -np.inf
        if mask is not None:
            scores[:, ~np.asarray(mask, dtype=bool)] = -np.inf
        for r in range(len(rows)):
            top = mmr_rerank(scores[r], item_vectors, k, diversity, pool=pool)
            out[start + r, : len(top)] = top
    return out


# ----------------------------------------------------------------------------- filters


def _labels(series: pd.Series, multi_label: bool, separator: str) -> list[set[str]]:
    out = []
    for value in series.tolist():
        text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value).strip()
        if multi_label:
            out.append({p.strip() for p in re.split(re.escape(separator), text) if p.strip()})
        else:
            out.append({text} if text else set())
    return out


def category_mask(
    items: pd.DataFrame, column: str, values: Sequence[str], multi_label: bool = False, separator: str = "|"
) -> np.ndarray:
    """Items whose ``column`` (any label of it, for multi-label columns) is among ``values``.

    An empty ``values`` keeps every item; a missing column keeps nothing.
    """
    if not values:
        return np.ones(len(items), dtype=bool)
    if column not in items.columns:
        return np.zeros(len(items), dtype=bool)
    wanted = {str(v) for v in values}
    return np.array([bool(labels & wanted) for labels in _labels(items[column], multi_label, separator)], dtype=bool)


def group_membership(
    items: pd.DataFrame, column: str, value: str, multi_label: bool = False, separator: str = "|"
) -> np.ndarray:
    """``[len(items)]`` share of each item that belongs to the group ``column == value``: 1 or 0 for a plain
    category; ``1 / number of labels`` of the item for a multi-label column (a film that is Drama and Crime
    is half Drama), the same split the fairness report uses, so that shares add up to 1 over the labels."""
    if column not in items.columns:
        raise KeyError(f"the items have no column '{column}'")
    out = np.zeros(len(items), dtype=np.float64)
    for position, labels in enumerate(_labels(items[column], multi_label, separator)):
        if str(value) in labels:
            out[position] = 1.0 / len(labels)
    return out


def price_mask(
    items: pd.DataFrame,
    column: str,
    low: float | None = None,
    high: float | None = None,
    keep_unpriced: bool = False,
) -> np.ndarray:
    """Items with ``low <= price <= high`` (inclusive); items without a price are dropped unless
    ``keep_unpriced`` (a range says nothing about them: the caller decides, and should say which)."""
    values = (
        pd.to_numeric(items[column], errors="coerce").to_numpy(dtype=float)
        if column in items.columns
        else np.full(len(items), np.nan)
    )
    keep = ~np.isnan(values)
    if low is not None:
        keep &= values >= low
    if high is not None:
        keep &= values <= high
    return keep | np.isnan(values) if keep_unpriced else keep


def seen_mask(model: Any, user: int | str) -> np.ndarray:
    """Keep-mask that drops the user's training items."""
    keep = np.ones(model.n_items, dtype=bool)
    if model.seen is not None:
        row = model.user_index(user)
        keep[model.seen.indices[model.seen.indptr[row] : model.seen.indptr[row + 1]]] = False
    return keep


def filter_mask(
    items: pd.DataFrame,
    categories: Mapping[str, Sequence[str]] | None = None,
    price: tuple[str, float | None, float | None] | None = None,
    multi_label_columns: Sequence[str] = (),
    separator: str = "|",
    model: Any = None,
    user: int | str | None = None,
    keep_unpriced: bool = False,
) -> np.ndarray:
    """All filters at once: ``categories`` (column -> allowed values), ``price`` ``(column, low, high)``
    (items without a price kept only with ``keep_unpriced``) and, with ``model`` and ``user``, the user's seen items excluded. ``items`` must be aligned with
    the model's items (row i = item i)."""
    keep = np.ones(len(items), dtype=bool)
    for column, values in (categories or {}).items():
        keep &= category_mask(items, column, values, column in multi_label_columns, separator)
    if price is not None:
        keep &= price_mask(items, *price, keep_unpriced=keep_unpriced)
    if model is not None and user is not None:
        keep &= seen_mask(model, user)
    return keep


# ----------------------------------------------------------------------------- metrics


def _lists(recommendations: Any) -> np.ndarray:
    arr = np.asarray(recommendations, dtype=np.int64)
    return arr.reshape(1, -1) if arr.ndim == 1 else arr


def catalogue_coverage(recommendations: Any, n_items: int) -> float:
    """Share of the catalogue recommended to at least one user (NaN for an empty catalogue): the evaluation's
    :func:`recsys.evaluate.metrics.catalogue_coverage` over whole lists."""
    return _coverage(_lists(recommendations), n_items) if n_items else float("nan")


def intra_list_diversity(recommendations: Any, item_vectors: np.ndarray) -> float:
    """Mean over lists of the mean pairwise ``1 - cosine`` of the list's items (lists of >= 2)."""
    vectors = normalise_rows(item_vectors)
    values = []
    for row in _lists(recommendations):
        row = row[row >= 0]
        if len(row) < 2:
            continue
        v = vectors[row]
        sims = v @ v.T
        n = len(row)
        values.append(1.0 - (sims.sum() - np.trace(sims)) / (n * (n - 1)))
    return float(np.mean(values)) if values else float("nan")


def item_probabilities(train: sp.spmatrix) -> np.ndarray:
    """``p(i)`` = share of users with a training interaction on item ``i``."""
    train = sp.csr_matrix(train)
    return np.asarray((train != 0).sum(axis=0)).ravel() / max(train.shape[0], 1)


def novelty(recommendations: Any, train: sp.spmatrix) -> float:
    """Mean self-information ``-log2 p(i)`` of recommended items (items nobody had count as one user)."""
    train = sp.csr_matrix(train)
    p = item_probabilities(train)
    p = np.where(p > 0, p, 1.0 / max(train.shape[0], 1))
    lists = _lists(recommendations)
    items = lists[lists >= 0]
    return float(np.mean(-np.log2(p[items]))) if items.size else float("nan")


def long_tail_share(recommendations: Any, train: sp.spmatrix, head: float = 0.2) -> float:
    """Share of recommended items outside the ``head`` (20 %) most popular items of the catalogue."""
    train = sp.csr_matrix(train)
    counts = np.asarray((train != 0).sum(axis=0)).ravel()
    n_head = int(np.ceil(head * len(counts)))
    order = np.lexsort((np.arange(len(counts)), -counts))
    in_head = np.zeros(len(counts), dtype=bool)
    in_head[order[:n_head]] = True
    lists = _lists(recommendations)
    items = lists[lists >= 0]
    return float((~in_head[items]).mean()) if items.size else float("nan")


def beyond_accuracy(recommendations: Any, train: sp.spmatrix, item_vectors: np.ndarray) -> dict[str, float]:
    """Coverage, intra-list diversity, novelty and long-tail share of a set of lists."""
    train = sp.csr_matrix(train)
    return {
        "coverage": catalogue_coverage(recommendations, train.shape[1]),
        "ild": intra_list_diversity(recommendations, item_vectors),
        "novelty": novelty(recommendations, train),
        "long_tail": long_tail_share(recommendations, train),
    }
