"""Why a (user, item) pair scored as it did: one structured :class:`Explanation` and one sentence.

``explain(model, user, item, items_frame=..., schema_roles=...)`` gathers:

* **modalities**: each modality's attention weight and share of the score (its Shapley value), straight
  from ``model.explain_scores`` (the shares add up to the score); a modality the item lacks is marked
  ``present=False`` (weight 0, share 0). The fusion model's popularity prior, which the model counts in
  behaviour's Shapley value (hiding behaviour hides it) but which no attention weight scales, is its own
  row (``modality="popularity"``, ``weighted=False``), taken out of behaviour's share: the rows still add
  up to the score. Models without attention (the baselines, the ``concat``
  fusion) say so in ``notes`` and have no modality rows; the rest of the evidence is still there.
* **history**: the 1-3 items of the user's training history that raise the score most, by
  leave-one-out through the model's own new-user path (``history_contributions``): the score with
  the whole history minus the score without that item, both with the whole history's user-level
  weighting (``mixing_history``). It holds for any model (for EASE it equals
  the item-item weight, for ItemKNN the similarity) and never assumes how the model pools a
  history; long histories are first narrowed to the 30 items nearest the candidate in the model's
  item space (``recsys.explain.item_vectors``: the mean of the fusion model's modality tokens, or an
  SVD of the interactions for the baselines).
* **evidence**: labels in common with those history items (categorical and multi-label columns),
  salient shared words of the text columns (TF-IDF over the catalogue, stopwords removed), the
  price band (catalogue terciles of a price-like numeric column), visual similarity (cosine of the
  raw image features, when both have a picture, with its percentile among the candidate's
  similarities to the whole catalogue) and popularity (training count and percentile).
* **sentence**: built by :func:`build_sentence` from that evidence alone (nothing else goes in).

Build an :class:`ExplainContext` once and pass it as ``context=`` to explain many pairs cheaply.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..data import schema as S, stats
from ..modalities import MODALITY_PHRASES, POPULARITY
from .facts import GENERIC_WORDS, STOPWORDS, tokenize

__all__ = [
    "Explanation",
    "ExplainContext",
    "explain",
    "explain_many",
    "build_sentence",
    "MODALITY_PHRASES",
    "history_contributions",
    "whole_percentages",
]

# a history item is named as a reason only if it adds at least this fraction of what the leading one adds
NAMED_FRACTION = 0.25
# ... and only if the recommendation is closer to it, in the model's item space, than this share of the
# catalogue is: a leave-one-out difference can be positive for an unrelated item (a history item moves the
# scores' standardisation for every item), and "a headphone is like a chef knife" is no reason
NAMED_CLOSENESS = 0.5
# ... and only if it adds at least this share of what raised the score (the positive modality shares, popularity
# included): "it is like a desk lamp" was the reason given for a bestselling mug the lamp added +0.02 of 10 to
NAMED_SCORE_SHARE = 0.01
NEW_VISITOR = "(new visitor)"  # the user id of an explanation for a history with no user behind it
_SALIENT_MIN_LENGTH = 3
_MAX_DF = 0.05  # a word in more than 5 % of the catalogue's texts is not salient
_COMMON_LABEL_SHARE = 0.5  # a label on more than half the catalogue's items is not evidence
# words that two descriptions share without saying anything about the items ("good", "people", "great"):
# the rephrasing's generic words, and a few vague ones that a small catalogue's document frequency lets through
_VAGUE_WORDS = GENERIC_WORDS | frozenset(
    """
best better bad nice fine perfect excellent awesome amazing wonderful lovely love loved loves fun real
really very lot lots thing things stuff way ways make makes made making use used uses using get gets got
getting time times everyone everything someone something anyone anything nothing person
""".split()
)


@dataclass
class Explanation:
    """Everything about one (user, item) explanation; :meth:`to_dict` is JSON-able."""

    user_id: str
    item_id: str
    title: str
    model: str
    score: float | None
    has_attention: bool
    modalities: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    history_method: str = ""
    history_remainder: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    sentence: str = ""
    notes: list[str] = field(default_factory=list)

    def facts(self) -> dict[str, Any]:
        """The structured evidence only (what a sentence or a narrator may draw from)."""
        return {
            "item": {"item_id": self.item_id, "title": self.title},
            "model": self.model,
            "has_attention": self.has_attention,
            "modalities": [
                {k: m[k] for k in ("modality", "label", "present", "share_pct", "attention_pct")}
                for m in self.modalities
            ],
            "history": [
                {k: h.get(k) for k in ("item_id", "title", "rating", "rated_highly", "rated_low", "named")}
                for h in self.history
            ],
            **self.evidence,
        }

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    return value


# ----------------------------------------------------------------------------- context


def _cell_labels(value: Any, role: str, separator: str) -> frozenset[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return frozenset()
    if isinstance(value, (list, tuple, np.ndarray)):
        parts = [str(v).strip() for v in value]
    else:
        text = str(value).strip()
        if not text or text.lower() in ("nan", "none", "null", "<na>"):
            return frozenset()
        parts = [p.strip() for p in text.split(separator)] if role == S.MULTI_LABEL else [text]
    return frozenset(p for p in parts if p and p.lower() not in ("nan", "none", "(no genres listed)"))


# web addresses in descriptions ("visit Amazon.com/yourorders"): their pieces are not words an item shares
_ADDRESS = re.compile(r"(?:https?://|www\.)\S+|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|co|io|de|fr|uk)\b(?:/\S*)?", re.I)


def _salient_tokens(text: str) -> list[str]:
    return [
        w
        for w in tokenize(_ADDRESS.sub(" ", S.plain_text(str(text))))
        if len(w) >= _SALIENT_MIN_LENGTH
        and w not in STOPWORDS
        and w not in _VAGUE_WORDS
        and not any(ch.isdigit() for ch in w)
    ]


class ExplainContext:
    """Per (model, catalogue) state shared by many explanations: labels, TF-IDF, bands, popularity."""

    @classmethod
    def from_bundle(cls, model: Any, bundle: Any) -> ExplainContext:
        """The context of a stored dataset (:class:`recsys.data.bundle.Bundle`): its items, roles, separator,
        interactions and rating column."""
        schema = bundle.schema
        return cls(
            model,
            bundle.items,
            schema.items,
            separator=schema.multi_label_separator,
            interactions=bundle.interactions,
            rating_column=schema.rating_column,
        )

    def __init__(
        self,
        model: Any,
        items_frame: pd.DataFrame,
        schema_roles: Mapping[str, str],
        *,
        separator: str = S.DEFAULT_SEPARATOR,
        interactions: pd.DataFrame | None = None,
        rating_column: str | None = None,
    ):
        self.model = model
        self.separator = separator
        items = items_frame.copy()
        items["item_id"] = items["item_id"].astype(str)
        self.items = items.drop_duplicates("item_id").set_index("item_id", drop=False)
        self.roles = {c: r for c, r in dict(schema_roles).items() if c in self.items.columns}
        self.label_columns = [(c, r) for c, r in self.roles.items() if r in (S.CATEGORICAL, S.MULTI_LABEL)]
        self.text_columns = [c for c, r in self.roles.items() if r == S.TEXT]
        self.title_column = stats.title_column(self.roles, self.items)
        self.price_column = stats.price_column(self.items, self.roles, min_values=3)
        # attribute columns the model gives no weight (their values are shared by histories no more than
        # chance): not offered as evidence, since they are not why the model ranks anything
        weights = model.attribute_weights() if hasattr(model, "attribute_weights") else {}
        self.unused_columns = {column for name, w in weights.items() if w <= 0 for column in name.split(" + ")}
        self.model_ids = np.asarray(model.item_ids).astype(str)
        self.model_index = {v: i for i, v in enumerate(self.model_ids)}
        seen = model.seen
        self.counts = (
            np.asarray((seen != 0).sum(axis=0)).ravel().astype(np.int64)
            if seen is not None
            else np.zeros(len(self.model_ids), dtype=np.int64)
        )
        self._sorted_counts = np.sort(self.counts)
        self._labels: dict[str, pd.Series] = {}
        self._common_labels: dict[str, frozenset[str]] = {}
        self._idf: dict[str, float] | None = None
        self._doc_cache: dict[str, Counter] = {}
        self._bands: pd.Series | None = None
        self._vectors: np.ndarray | None = None
        self._ratings: dict[str, dict[str, float]] | None = None
        self.interactions = interactions
        self.rating_column = (
            rating_column
            if interactions is not None and rating_column in (interactions.columns if interactions is not None else ())
            else None
        )
        self.max_rating = (
            float(pd.to_numeric(interactions[self.rating_column], errors="coerce").max())
            if self.rating_column and interactions is not None
            else None
        )

    # --- columns
    def title(self, item_id: str) -> str:
        if item_id in self.items.index and self.title_column in self.items.columns:
            value = self.items.at[item_id, self.title_column]
            if isinstance(value, str) and value.strip():
                return value.strip()
        return str(item_id)

    def labels(self, column: str) -> pd.Series:
        """frozenset of labels per item id for one categorical / multi-label column."""
        if column not in self._labels:
            role = self.roles[column]
            self._labels[column] = self.items[column].map(lambda v: _cell_labels(v, role, self.separator))
        return self._labels[column]

    def common_labels(self, column: str) -> frozenset[str]:
        """The column's labels that more than half the catalogue carries ("Gift Cards" on a shop of gift cards):
        sharing one says nothing about why this item, so they are never offered as evidence."""
        if column not in self._common_labels:
            counts: Counter[str] = Counter()
            series = self.labels(column)
            for labels in series:
                counts.update(labels)
            limit = _COMMON_LABEL_SHARE * max(len(series), 1)
            self._common_labels[column] = frozenset(label for label, n in counts.items() if n > limit)
        return self._common_labels[column]

    def catalogue_terms(self) -> set[str]:
        """Lower-cased words of every label in the catalogue (genres, categories, tags, brands...)."""
        terms: set[str] = set()
        for column, _ in self.label_columns:
            for labels in self.labels(column):
                for label in labels:
                    terms.update(tokenize(label))
        return terms

    # --- text
    def text_phrase(self, item_id: str) -> str:
        """What the text modality read of this item, for a sentence: "its title and description", or "its
        title" where the description is empty (the text encoder read only what is filled in)."""
        filled = []
        if item_id in self.items.index:
            for column in self.text_columns:
                value = self.items.at[item_id, column]
                if isinstance(value, str) and value.strip():
                    filled.append(str(column).replace("_", " ").strip().lower())
        if not filled:
            return MODALITY_PHRASES["text"]
        if len(filled) <= 2:
            return "its " + " and ".join(filled)
        return f"its {filled[0]}, {filled[1]} and other text"

    def _document(self, item_id: str) -> Counter:
        if item_id not in self._doc_cache:
            if item_id in self.items.index and self.text_columns:
                row = self.items.loc[item_id, self.text_columns]
                text = " ".join(str(v) for v in row if isinstance(v, str))
            else:
                text = ""
            self._doc_cache[item_id] = Counter(_salient_tokens(text))
        return self._doc_cache[item_id]

    def idf(self) -> dict[str, float]:
        if self._idf is None:
            df: Counter = Counter()
            n = 0
            if self.text_columns:
                joined = self.items[self.text_columns].astype("string").fillna("").agg(" ".join, axis=1)
                for text in joined:
                    df.update(set(_salient_tokens(text)))
                    n += 1
            # words in more than MAX_DF of the catalogue's texts are boilerplate, not evidence
            limit = _MAX_DF * n if n >= 20 else float("inf")
            self._idf = {w: math.log((1 + n) / (1 + c)) + 1.0 for w, c in df.items() if c <= limit}
        return self._idf

    def tfidf(self, item_id: str) -> dict[str, float]:
        doc, idf = self._document(item_id), self.idf()
        weights = {w: (1.0 + math.log(c)) * idf[w] for w, c in doc.items() if w in idf}
        norm = math.sqrt(sum(v * v for v in weights.values())) or 1.0
        return {w: v / norm for w, v in weights.items()}

    # --- price, popularity, vectors, ratings
    def bands(self) -> pd.Series | None:
        if self.price_column is None:
            return None
        if self._bands is None:
            from .evidence import price_bands

            self._bands = price_bands(self.items[self.price_column])
        return self._bands

    def popularity(self, index: int) -> dict[str, Any]:
        count = int(self.counts[index]) if 0 <= index < len(self.counts) else 0
        below = int(np.searchsorted(self._sorted_counts, count, side="left"))
        # floor: the most popular item is "more popular than 99 %", never 100 %
        return {
            "count": count,
            "percentile": int(math.floor(100.0 * below / max(len(self.counts), 1))),
            "new_item": count == 0,
        }

    def vectors(self) -> np.ndarray:
        if self._vectors is None:
            from .evidence import item_vectors

            self._vectors = item_vectors(self.model)
        return self._vectors

    def user_ratings(self, user_id: str) -> dict[str, float]:
        if not self.rating_column:
            return {}
        if self._ratings is None:
            assert self.interactions is not None  # rating_column is only set with interactions
            frame = self.interactions[["user_id", "item_id", self.rating_column]].copy()
            frame["user_id"] = frame["user_id"].astype(str)
            frame["item_id"] = frame["item_id"].astype(str)
            frame[self.rating_column] = pd.to_numeric(frame[self.rating_column], errors="coerce")
            grouped = frame.dropna().groupby("user_id")
            self._ratings = {u: dict(zip(g["item_id"], g[self.rating_column])) for u, g in grouped}
        return self._ratings.get(str(user_id), {})


# ----------------------------------------------------------------------------- history contributions


def history_contributions(
    model: Any,
    row: int | None,
    item_index: int,
    history: np.ndarray,
    context: ExplainContext | None = None,
    max_candidates: int = 30,
) -> tuple[np.ndarray, str, float | None]:
    """How much each history item raises the score of ``item_index`` (leave-one-out).

    ``contribution[j] = s(history) - s(history without j)``, both scored through the model's own
    new-user path (``model.score_histories``, batched: the fusion model's experts over the shorter
    history with the whole history's gate, confidence and popularity blend, a one-row history for the
    history-based baselines, folded-in factors for BPR/LightGCN). Histories longer than ``max_candidates``
    are first narrowed to the
    items most similar to the candidate (cosine of :func:`recsys.explain.item_vectors`); the others
    get NaN. Returns ``(contributions [len(history)], method, None)``.
    """
    from .coldstart import history_scores

    history = np.asarray(history, dtype=np.int64)
    out = np.full(len(history), np.nan)
    if len(history) == 0:
        return out, "none", None
    candidates = np.arange(len(history))
    if len(history) > max_candidates:
        vectors = context.vectors() if context is not None else None
        if vectors is None:
            from .evidence import item_vectors

            vectors = item_vectors(model)
        similarity = vectors[history] @ vectors[item_index]
        candidates = np.argsort(-similarity, kind="stable")[:max_candidates]
    if len(history) == 1:
        # against the score with no history item at all (the popularity prior, item biases), the whole history's
        # mixing held: against the catalogue's average, one liked candle "added +11.91" to a bestselling
        # backpack whose score was all popularity
        scores = history_scores(model, history)
        without = model.score_without_history(mixing_history=history)
        out[0] = float(scores[item_index]) - float(without[item_index])
        return out, "leave-one-out: score with the user's one history item minus the score with none", None
    # the full history and each leave-one-out variant, scored in one batch by the model's new-user path,
    # all with the whole history's user-level weighting: a shorter history is trusted less and leans more
    # on popularity, which would make every item of a 2-3 item history look as if it lowered the score of
    # a popular candidate, when what the question asks is what the item itself adds
    variants = [history] + [np.delete(history, position) for position in candidates]
    scores = model.score_histories(variants, mixing_history=history)[:, item_index]
    out[candidates] = float(scores[0]) - scores[1:]
    return out, "leave-one-out: score with the user's history minus the score without this item", None


# ----------------------------------------------------------------------------- evidence


def closeness(vectors: np.ndarray, anchor: int, item: int) -> float:
    """The share of the catalogue's other items (with a vector) that are less similar to ``anchor`` than
    ``item`` is, in ``vectors`` (unit rows): 1 for its nearest neighbour, about 0.5 for a typical item. 1
    when either has no vector (nothing says they are unlike)."""
    if not np.any(vectors[anchor]) or not np.any(vectors[item]):
        return 1.0
    similarity = vectors @ vectors[anchor]
    others = np.any(vectors, axis=1)
    others[[anchor, item]] = False
    if not others.any():
        return 1.0
    return float((similarity[others] < similarity[item]).mean())


def _label_evidence(
    ctx: ExplainContext, item_id: str, top_ids: Sequence[str], history_ids: Sequence[str]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for column, role in ctx.label_columns:
        if column in ctx.unused_columns:
            continue
        series = ctx.labels(column)
        mine = series.get(item_id, frozenset()) - ctx.common_labels(column)
        if not mine:
            continue
        top_labels = {t: series.get(t, frozenset()) for t in top_ids}
        history_counts: Counter[str] = Counter()
        for other in history_ids:
            history_counts.update(series.get(other, frozenset()) & mine)
        shared_top = {label: [t for t in top_ids if label in top_labels[t]] for label in mine}
        shared_top = {k: v for k, v in shared_top.items() if v}
        if not shared_top and not history_counts:
            continue
        values = sorted(
            set(shared_top) | set(history_counts),
            key=lambda v: (-len(shared_top.get(v, [])), -history_counts.get(v, 0), v),
        )
        shared_values = [v for v in values if shared_top.get(v)][:4]
        out.append(
            {
                "column": column,
                "column_label": str(column).replace("_", " "),
                "role": role,
                "values": values[:4],
                "shared_values": shared_values,
                # the history items that carry the values a sentence quotes (the first two shared ones): the
                # sentence names them, so a category is never pinned on history items that lack it
                "shared_by": [ctx.title(t) for t in top_ids if top_labels[t] & set(shared_values[:2])],
                "shared_with": [ctx.title(t) for t in top_ids if any(v in top_labels[t] for v in values[:4])],
                "history_counts": [{"value": v, "count": int(history_counts.get(v, 0))} for v in values[:4]],
                "history_size": len(history_ids),
            }
        )
    out.sort(
        key=lambda e: (
            -len(e["shared_with"]),
            -max(c["count"] for c in e["history_counts"]),
            e["role"] != S.CATEGORICAL,
        )
    )
    return out


def _word_evidence(ctx: ExplainContext, item_id: str, top_ids: Sequence[str], limit: int = 5) -> list[dict[str, Any]]:
    if not ctx.text_columns or not top_ids:
        return []
    mine = ctx.tfidf(item_id)
    if not mine:
        return []
    scores: dict[str, float] = {}
    holders: dict[str, list[str]] = {}
    for other in top_ids:
        theirs = ctx.tfidf(other)
        for word in mine.keys() & theirs.keys():
            scores[word] = max(scores.get(word, 0.0), mine[word] * theirs[word])
            holders.setdefault(word, []).append(ctx.title(other))
    best = sorted(scores, key=lambda w: (-scores[w], w))[:limit]
    return [{"word": w, "weight": round(scores[w], 4), "shared_with": holders[w]} for w in best]


def _price_evidence(
    ctx: ExplainContext, item_id: str, top_ids: Sequence[str], history_ids: Sequence[str]
) -> dict[str, Any] | None:
    bands = ctx.bands()
    if bands is None or item_id not in bands.index or ctx.price_column in ctx.unused_columns:
        return None
    band = bands.get(item_id, "")
    if not band:
        return None
    value = pd.to_numeric(pd.Series([ctx.items.at[item_id, ctx.price_column]]), errors="coerce").iloc[0]
    in_band = [h for h in history_ids if bands.get(h, "") == band]
    return {
        "column": ctx.price_column,
        "value": None if pd.isna(value) else float(value),
        "band": band,
        "shared_with": [ctx.title(t) for t in top_ids if bands.get(t, "") == band],
        "history_share_pct": int(round(100.0 * len(in_band) / max(len(history_ids), 1))),
    }


def _visual_evidence(ctx: ExplainContext, index: int, top_indices: Sequence[int]) -> dict[str, Any] | None:
    content = getattr(ctx.model, "content", None)
    image = getattr(content, "image", None)
    mask = getattr(content, "image_mask", None)
    if image is None or mask is None or not mask[index]:
        return None
    with_picture = [j for j in top_indices if mask[j]]
    if not with_picture:
        return None
    features = np.asarray(image, dtype=np.float32)
    candidate = features[index]
    norm = float(np.linalg.norm(candidate)) or 1.0
    others = features[with_picture]
    sims = (others @ candidate) / (np.linalg.norm(others, axis=1).clip(min=1e-12) * norm)
    # where the best similarity sits among the candidate's similarities to every pictured item
    pictured = np.flatnonzero(mask)
    pictured = pictured[pictured != index]
    all_sims = (features[pictured] @ candidate) / (np.linalg.norm(features[pictured], axis=1).clip(min=1e-12) * norm)
    best = int(np.argmax(sims))
    percentile = int(math.floor(100.0 * float((all_sims < sims[best]).mean()))) if len(all_sims) else None
    return {
        "similarity": round(float(sims[best]), 3),
        "title": ctx.title(ctx.model_ids[with_picture[best]]),
        "percentile": percentile,
        "per_item": [
            {"title": ctx.title(ctx.model_ids[j]), "similarity": round(float(s), 3)} for j, s in zip(with_picture, sims)
        ],
    }


# ----------------------------------------------------------------------------- sentence


def whole_percentages(values: Sequence[float] | np.ndarray) -> list[int]:
    """``values`` (non-negative) as whole percentages of their sum that add up to exactly 100 (largest
    remainder: each is rounded down, and the points left go to the largest fractions), so a chart's labels
    never read 101 %; all zeros when the sum is 0."""
    array = np.clip(np.asarray(values, dtype=np.float64), 0.0, None)
    total = array.sum()
    if not len(array) or total <= 0:
        return [0] * len(array)
    exact = 100.0 * array / total
    whole = np.floor(exact).astype(np.int64)
    left = 100 - int(whole.sum())
    # ties go to the earlier value (a stable order), so the same input always rounds the same way
    for position in np.argsort(-(exact - whole), kind="stable")[:left]:
        whole[position] += 1
    return [int(v) for v in whole]


def _quote(values: Sequence[str], limit: int = 2) -> str:
    quoted = [f"“{v}”" for v in list(values)[:limit]]
    if len(quoted) <= 1:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _model_label(model: Any) -> str:
    """The model's name, with the fusion variant when it has no attention ("fusion (concat)"): "the fusion
    model, which has no per-modality attention" contradicted every page that shows the fusion model's."""
    name = str(getattr(model, "name", "model"))
    variant = (getattr(model, "config", None) or {}).get("fusion") if name == "fusion" else None
    return f"{name} ({variant})" if variant == "concat" else name


def build_sentence(facts: Mapping[str, Any]) -> str:
    """One plain sentence from :meth:`Explanation.facts` (and nothing else).

    Percentages are each modality's part of the *positive* shares (negative shares, which pull the
    score down, are not reasons for a recommendation), so they add up to 100 over the modalities.
    """
    from ..train.report import model_name  # as the pages and tables write it (BPR-MF, not bpr)

    modalities = [m for m in facts.get("modalities", []) if m.get("present") and (m.get("share_pct") or 0) > 0]
    modalities.sort(key=lambda m: -m["share_pct"])
    if facts.get("has_attention") and modalities:
        # "of what raised its score": the chart beside it shows the weights, which are another number
        lead = (
            f"Recommended mainly for {modalities[0]['label']} ({modalities[0]['share_pct']}% of what raised its score)"
        )
        if len(modalities) > 1 and modalities[1]["share_pct"] >= 20:
            lead += f" and {modalities[1]['label']} ({modalities[1]['share_pct']}%)"
    elif facts.get("has_attention"):
        lead = "Recommended by the model's overall score for you"
    else:
        lead = f"Recommended by the {model_name(str(facts.get('model', 'model')))} model, which has no per-modality attention"

    # only the history items named as reasons (see explain: not rated low, a real part of the score, close to
    # the item); the others stay in the history list beside it with their figures
    history = [
        h for h in facts.get("history", []) if (not h.get("rated_low") if h.get("named") is None else h["named"])
    ]
    like = ""
    if history:
        like = "like " + _quote([h["title"] for h in history], 2)
        shown = history[:2]
        if all(h.get("rated_highly") for h in shown):
            like += ", which you rated highly,"
        else:
            like += ","

    # a modality's evidence is not a reason when that modality's part of the score is not positive
    lowered = {
        m["modality"] for m in facts.get("modalities", []) if m.get("present") and not (m.get("share_pct") or 0) > 0
    }

    def counts(modality: str) -> bool:
        return not facts.get("has_attention") or modality not in lowered

    clauses: list[str] = []
    all_labels = facts.get("labels", []) if counts("attributes") else []
    labels = [e for e in all_labels if e.get("shared_values")]
    if labels:
        first = labels[0]
        clause = f"it shares {first['column_label']} {_quote(first['shared_values'] or first['values'], 2)}"
        quoted = [h["title"] for h in history[:2]]
        carriers = first.get("shared_by")
        if carriers is not None and quoted != carriers[:2]:
            # "like A and B, it shares category X" reads as A and B having X: say which history items do
            clause += f" with {_quote(carriers, 2)}" if carriers else ""
        clauses.append(clause)
    else:
        wide = [e for e in all_labels if e["history_counts"] and e["history_counts"][0]["count"] >= 2]
        if wide:
            first = wide[0]
            top = first["history_counts"][0]
            clauses.append(
                f"{top['count']} of the {first['history_size']} items in your history share its "
                f"{first['column_label']} {_quote([top['value']], 1)}"
            )
    words = facts.get("words", []) if counts("text") else []
    if words and len(clauses) < 2:
        noun = "word" if len(words) == 1 else "words"
        clauses.append(f"its text shares the {noun} {_quote([w['word'] for w in words], 3)}")
    visual = facts.get("visual") if counts("image") else None
    if visual and visual.get("percentile") is not None and visual["percentile"] >= 80 and len(clauses) < 2:
        clauses.append(
            f"its picture looks like “{visual['title']}” (closer than {visual['percentile']}% of the catalogue)"
        )
    price = facts.get("price") if counts("attributes") else None
    if price and price.get("shared_with") and len(clauses) < 2:
        clauses.append(f"it is in the same {price['band']} price band as {_quote(price['shared_with'], 1)}")
    from_content = len(clauses)  # the clauses before popularity's say how the item is like the history
    popularity = facts.get("popularity") or {}
    if len(clauses) < 2 and popularity:
        if popularity.get("new_item"):
            clauses.append("no one has chosen it yet, so its content alone scored it")
        elif popularity.get("percentile", 50) >= 90:
            clauses.append(
                f"it is one of the most popular items (more popular than {popularity['percentile']}% of the catalogue)"
            )
        elif popularity.get("percentile", 50) < 30:
            clauses.append(f"it is a niche pick (more popular than only {popularity['percentile']}% of the catalogue)")

    if not like and not clauses:
        return lead + "."
    body = " and ".join(clauses)
    if like and facts.get("has_attention") and modalities and modalities[0]["modality"] == "behaviour":
        # behaviour leads: the named items were chosen by the same people, they need not look alike ("it is like
        # “Lavender Candle”" for a pair of socks read as nonsense)
        named = like.removeprefix("like ")
        # "people who chose “A”, which you rated highly, chose it too": the relative clause keeps both commas
        named = named if named.endswith(" highly,") else named.rstrip(",")
        chosen = f"people who chose {named} chose it too"
        return f"{lead}: {chosen}; {body}." if body else f"{lead}: {chosen}."
    # "like X, it is one of the most popular items" ties the history to popularity: keep them apart
    if like and body and body.startswith("it ") and from_content:
        return f"{lead}: {like} {body}."
    if like and body:
        return f"{lead}: it is {like.rstrip(',')}; {body}."
    if like:
        return f"{lead}: it is {like.rstrip(',')}."
    return f"{lead}: {body}."


# ----------------------------------------------------------------------------- public API


def explain(
    model: Any,
    user: str | int | None,
    item: str | int,
    *,
    items_frame: pd.DataFrame | None = None,
    schema_roles: Mapping[str, str] | None = None,
    k_history: int = 3,
    context: ExplainContext | None = None,
    interactions: pd.DataFrame | None = None,
    rating_column: str | None = None,
    separator: str = S.DEFAULT_SEPARATOR,
    visitor_history: Sequence[str | int] | None = None,
) -> Explanation:
    """Explain why ``model`` scores ``item`` for ``user`` (see the module docstring).

    ``items_frame``/``schema_roles`` (the dataset's items table and its column roles) give the
    evidence; pass ``context`` instead to reuse one :class:`ExplainContext`. ``interactions`` with
    a ``rating_column`` let the sentence say "which you rated highly" when it is true.

    ``visitor_history`` (item ids or indices): explain for a new visitor known only by these items, scored through
    the model's new-user path (``user`` is then ignored and may be None): what the app's "a new visitor"
    mode and ``recommend-new`` recommend.
    """
    if context is None:
        if items_frame is None:
            items_frame = pd.DataFrame({"item_id": np.asarray(model.item_ids).astype(str)})
        context = ExplainContext(
            model,
            items_frame,
            schema_roles or {},
            separator=separator,
            interactions=interactions,
            rating_column=rating_column,
        )
    ctx = context
    index = model.item_index(item)
    if not 0 <= index < model.n_items:
        raise KeyError(f"item index {item} out of range (0..{model.n_items - 1})")
    item_id = str(model.item_ids[index])
    visitor = visitor_history is not None
    history: np.ndarray
    row: int | None = None
    if visitor:
        liked = np.unique(np.array([model.item_index(i) for i in visitor_history or ()], dtype=np.int64))
        if not len(liked):
            raise ValueError("a new visitor's history needs at least one item")
        user_id, history = NEW_VISITOR, liked
    else:
        if user is None:
            raise ValueError("explain needs a user, or visitor_history for a new visitor")
        row = model.user_index(user)
        user_id = str(model.user_ids[row])
        seen = model.seen
        history = (
            seen.indices[seen.indptr[row] : seen.indptr[row + 1]].astype(np.int64)
            if seen is not None
            else np.zeros(0, dtype=np.int64)
        )
    scored_history = history  # what the model scores with (the item itself included, if it is there)
    notes: list[str] = []
    if (history == index).any():
        # the item is among the user's own items: lists leave it out unless asked to include seen items
        notes.append(
            "the user already has this item (it is in their history): recommendation lists leave it out unless "
            "seen items are included; it is left out of the history below"
        )
    history = history[history != index]

    # modalities
    modalities: list[dict[str, Any]] = []
    score = None
    has_attention = False
    if hasattr(model, "explain_scores"):
        parts = model.explain_scores(row, [index], history=scored_history if visitor else None)
        score = float(np.asarray(parts["score"]).ravel()[0])
        if parts.get("shares") is not None and parts.get("attention") is not None:
            has_attention = True
            shares = np.asarray(parts["shares"], dtype=np.float64)[0].copy()
            attention = np.asarray(parts["attention"], dtype=np.float64)[0]
            present = np.asarray(parts["present"], dtype=bool)[0]
            names = list(parts["modalities"])
            # the popularity prior sits in behaviour's share (hiding behaviour hides it) but no attention
            # weight scales it: shown as its own part, a behaviour weight of 2 % never sits beside a
            # behaviour share that is all popularity
            prior = parts.get("popularity_share")
            popularity = float(np.asarray(prior, dtype=np.float64).ravel()[0]) if prior is not None else None
            if popularity is not None and "behaviour" in names:
                behaviour = names.index("behaviour")
                # an item nobody chose has no co-occurrence part: its behaviour share was the prior alone
                shares[behaviour] = shares[behaviour] - popularity if present[behaviour] else 0.0
            positive = np.clip(np.where(present, shares, 0.0), 0.0, None)
            share_pct = whole_percentages(
                np.append(positive, max(popularity, 0.0)) if popularity is not None else positive
            )
            attention_pct = whole_percentages(np.where(present, attention, 0.0))
            for m, name in enumerate(names):
                modalities.append(
                    {
                        "modality": name,
                        "label": ctx.text_phrase(item_id) if name == "text" else MODALITY_PHRASES.get(name, name),
                        "present": bool(present[m]),
                        "missing": not bool(present[m]),
                        "attention": float(attention[m]) if present[m] else 0.0,
                        "attention_pct": attention_pct[m],
                        # content the item lacks shares 0 (and so does behaviour for an item nobody chose)
                        "share": float(shares[m]),
                        "share_pct": share_pct[m],
                        "weighted": True,
                    }
                )
            if popularity is not None:
                modalities.append(
                    {
                        "modality": POPULARITY,
                        "label": MODALITY_PHRASES[POPULARITY],
                        "present": True,
                        "missing": False,
                        "attention": 0.0,
                        "attention_pct": 0,
                        "share": popularity,
                        "share_pct": share_pct[-1],
                        "weighted": False,  # added by history length, not by the attention gate
                    }
                )
            gap = abs(sum(m["share"] for m in modalities) - score)
            if gap > 1e-4:
                notes.append(f"the modality shares miss the score by {gap:.2e}")
            missing = [m["modality"] for m in modalities if m["missing"]]
            if missing:
                notes.append("missing modalities (no weight): " + ", ".join(missing))
        else:
            notes.append("this fusion variant (concat) has no per-modality weights")
    else:
        score = (
            float(model.score_history(scored_history)[index])
            if visitor
            else float(np.asarray(model.score(np.array([row])))[0, index])
        )
        notes.append(f"the {model.name} model has no attention: no per-modality weights or shares")

    # history items that contribute most
    contributions, method, remainder = history_contributions(model, row, index, history, ctx)
    ratings = {} if visitor else ctx.user_ratings(user_id)
    top = []
    if len(history):
        ranked = np.where(np.isfinite(contributions), contributions, -np.inf)
        order = np.argsort(-ranked, kind="stable")
        top = [int(history[j]) for j in order[: max(int(k_history), 0)] if ranked[j] > 0]
        lookup = dict(zip(history.tolist(), contributions.tolist()))
    history_rows: list[dict[str, Any]] = []
    for j in top:
        hid = str(model.item_ids[j])
        rating = ratings.get(hid)
        high = rating is not None and ctx.max_rating is not None and rating >= 0.8 * ctx.max_rating
        low = rating is not None and ctx.max_rating is not None and rating <= 0.4 * ctx.max_rating
        history_rows.append(
            {
                "item_id": hid,
                "title": ctx.title(hid),
                "contribution": float(lookup[j]),
                "rating": None if rating is None else float(rating),
                "rated_highly": bool(high),
                "rated_low": bool(low),
            }
        )
    # the evidence names and quotes only history items the user did not rate low: the sentence offers them as
    # reasons, and an item rated one star is no reason (it stays in the history list, marked)
    # nor an item that adds a sliver of what the leading one adds: "it is like X" must mean X counts (a flask
    # adding .04 was named for a game controller once the controller that added 1.12 was rated low)
    # nor an item the recommendation is not even close to (NAMED_CLOSENESS)
    # nor one that adds a sliver of the score (NAMED_SCORE_SHARE; known where the shares are)
    leading = max((float(lookup[j]) for j in top), default=0.0)
    raised = sum(max(float(m["share"]), 0.0) for m in modalities)
    named = [
        j
        for j, row_ in zip(top, history_rows)
        if not row_["rated_low"]
        and float(lookup[j]) >= max(NAMED_FRACTION * leading, NAMED_SCORE_SHARE * raised)
        and closeness(ctx.vectors(), j, index) >= NAMED_CLOSENESS
    ]
    for j, row_ in zip(top, history_rows):
        row_["named"] = j in named
    top_ids = [str(model.item_ids[j]) for j in named]
    history_ids = [str(model.item_ids[j]) for j in history]

    evidence = {
        "labels": _label_evidence(ctx, item_id, top_ids, history_ids),
        "words": _word_evidence(ctx, item_id, top_ids),
        "price": _price_evidence(ctx, item_id, top_ids, history_ids),
        "visual": _visual_evidence(ctx, index, named),
        "popularity": ctx.popularity(index),
    }
    explanation = Explanation(
        user_id=user_id,
        item_id=item_id,
        title=ctx.title(item_id),
        model=_model_label(model),
        score=score,
        has_attention=has_attention,
        modalities=modalities,
        history=history_rows,
        history_method=method,
        history_remainder=remainder,
        evidence=evidence,
        notes=notes,
    )
    explanation.sentence = build_sentence(explanation.facts())
    return explanation


def explain_many(
    model: Any,
    user: str | int,
    items: Sequence[str | int],
    *,
    items_frame: pd.DataFrame | None = None,
    schema_roles: Mapping[str, str] | None = None,
    k_history: int = 3,
    context: ExplainContext | None = None,
    **context_options: Any,
) -> list[Explanation]:
    """:func:`explain` for several items of one user, sharing one context."""
    if context is None:
        if items_frame is None:
            items_frame = pd.DataFrame({"item_id": np.asarray(model.item_ids).astype(str)})
        context = ExplainContext(model, items_frame, schema_roles or {}, **context_options)
    return [explain(model, user, item, k_history=k_history, context=context) for item in items]
