"""Built-in demo catalog: a seeded, download-free multimodal catalog bundle with known ground truth.

``generate_demo_bundle(out_dir)`` writes a catalog bundle (see docs/ARCHITECTURE.md, "Bundles") whose interactions were
produced by a known generative story, so that a model's modality weights can be checked against the
truth:

* every item has latent factors: a *topic* (visible in the words of title/description/tags, in the
  category, one of the topic's sub-categories such as "Home & Kitchen > Cookware", and in the object
  drawn in its picture), a *visual style* (visible only in the look of its picture: palette, background
  pattern, a small motif shape), a *brand* with a price level and a *price band* (visible in the
  attributes), a *behaviour cluster* (visible only in who-bought-what co-occurrence) and a *popularity*;
* every user belongs to one of four segments (``visual``, ``text``, ``attributes``, ``behaviour``)
  that sets the weights the user gives to the four modalities, and has one preferred latent value
  per modality;
* utility(u, i) = SCALE * sum_m w[u, m] * match_m(u, i) + POP * log-popularity(i) + noise, and each
  user's items are drawn without replacement from softmax(utility) (Gumbel top-k); ratings grow with
  utility.

The ground truth lives in ``ground_truth/`` (users.csv, items.csv, README.md), a sub-folder that the
bundle loader does not treat as tables. Everything is drawn from ``np.random.default_rng`` seeded by
``seed``: the same seed gives byte-identical files, another seed different ones.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

__all__ = [
    "DEMO_DATASET_NAME",
    "SEGMENTS",
    "MODALITIES",
    "TOPICS",
    "TOPIC_CATEGORIES",
    "CATEGORY_NOUNS",
    "VISUAL_STYLES",
    "PRICE_BANDS",
    "BRANDS",
    "DEMO_SCHEMA",
    "generate_demo_bundle",
    "demo_ground_truth",
    "demo_posterior_weights",
]

DEMO_DATASET_NAME = "demo"

# Segment -> the modality it mostly follows. Weight columns in ground_truth/users.csv are w_<modality>.
SEGMENTS: tuple[str, ...] = ("visual", "text", "attributes", "behaviour")
MODALITIES: tuple[str, ...] = ("text", "image", "attributes", "behaviour")
_SEGMENT_MAIN_MODALITY = {"visual": "image", "text": "text", "attributes": "attributes", "behaviour": "behaviour"}
_SEGMENT_SHARES = (0.25, 0.25, 0.22, 0.28)
_MAIN_WEIGHT = 0.7  # the segment's own modality; the other three share the rest equally (0.1 each)
_WEIGHT_CONCENTRATION = 60.0  # Dirichlet concentration of the per-user jitter around the segment's weights

_UTILITY_SCALE = 5.0  # multiplies the weighted match (in [0, 1]) inside the softmax
_POPULARITY_COEF = 0.9  # global popularity term (log-popularity, standardised)
_UTILITY_NOISE = 0.5  # sd of the per (user, item) Gaussian taste noise
_RATING_BASE, _RATING_SLOPE = 2.6, 0.8  # rating = round(BASE + SLOPE * z(utility) + user bias + noise)
_N_BEHAVIOUR_CLUSTERS = 10
_MISSING_IMAGE_SHARE = 0.10
_MISSING_DESCRIPTION_SHARE = 0.08
_T0 = 1609459200  # 2021-01-01 00:00:00 UTC
_T_END = 1735603200  # 2024-12-31 00:00:00 UTC

DEMO_SCHEMA: dict = {
    "items": {
        "item_id": "id",
        "title": "text",
        "description": "text",
        "category": "categorical",
        "brand": "categorical",
        "price": "numeric",
        "tags": "multi_label",
        "image_file": "image",
    },
    "interactions": {"user_id": "id", "item_id": "id", "rating": "rating", "timestamp": "timestamp"},
    "users": {"user_id": "id", "age_band": "categorical", "country": "categorical"},
    "multi_label_separator": "|",
}

# --------------------------------------------------------------------------------------------------
# The world: topics (text), visual styles (image), brands and price bands (attributes)
# --------------------------------------------------------------------------------------------------

# Each topic: a department (the first level of its categories), a few adjectives that fit all its items,
# the audiences and activities its items are written for, lines of shop copy that fit the whole
# department (most descriptions have one), and two or three sub-categories. A sub-category owns its
# nouns (a title names one of them), the adjectives, features and tags that fit those nouns, and
# optionally its own activities and audiences (else the topic's). An item's category is
# "<department> > <sub-category>": it always agrees with the title and the topic, and says a little
# more than the topic (which of its sub-categories).
# The tables live in demo_vocabulary.json next to this module ("topics", and the words every topic shares).
_VOCABULARY: dict = json.loads(Path(__file__).with_name("demo_vocabulary.json").read_text(encoding="utf-8"))
_TOPIC_DATA: dict[str, dict] = _VOCABULARY["topics"]
TOPICS: tuple[str, ...] = tuple(_TOPIC_DATA)
# Every category value "<department> > <sub-category>", topic by topic; (topic index, sub-category spec).
_CATEGORIES: tuple[str, ...] = tuple(
    f"{d['department']} > {sub}" for d in _TOPIC_DATA.values() for sub in d["subcategories"]
)
_CATEGORY_TOPIC: tuple[int, ...] = tuple(t for t, d in enumerate(_TOPIC_DATA.values()) for _ in d["subcategories"])
_CATEGORY_SPEC: tuple[dict, ...] = tuple(spec for d in _TOPIC_DATA.values() for spec in d["subcategories"].values())
# Public views: topic -> its categories, category -> the product nouns its titles use.
TOPIC_CATEGORIES: dict[str, tuple[str, ...]] = {
    topic: tuple(c for c, t in zip(_CATEGORIES, _CATEGORY_TOPIC) if t == k) for k, topic in enumerate(TOPICS)
}
CATEGORY_NOUNS: dict[str, tuple[str, ...]] = {c: tuple(spec["nouns"]) for c, spec in zip(_CATEGORIES, _CATEGORY_SPEC)}

_GENERIC_ADJECTIVES: list[str] = _VOCABULARY["generic_adjectives"]
_SERIES: list[str] = _VOCABULARY["series"]
_CLOSERS: list[str] = _VOCABULARY["closers"]

# Visual styles: background palette, foreground (shape) palette, background pattern, shape.
VISUAL_STYLES: dict[str, dict] = {
    "sunset": dict(
        bg=[(255, 94, 58), (255, 149, 0), (255, 204, 0), (230, 80, 110)],
        fg=[(120, 20, 60), (255, 240, 200), (90, 30, 20)],
        pattern="gradient",
        shape="circle",
    ),
    "ocean": dict(
        bg=[(0, 105, 148), (0, 168, 204), (72, 202, 228), (0, 62, 110)],
        fg=[(240, 250, 255), (255, 220, 120), (0, 30, 60)],
        pattern="stripes",
        shape="triangle",
    ),
    "forest": dict(
        bg=[(34, 85, 51), (76, 133, 60), (139, 166, 84), (60, 100, 40)],
        fg=[(101, 67, 33), (230, 220, 170), (200, 120, 40)],
        pattern="dots",
        shape="star",
    ),
    "candy": dict(
        bg=[(255, 105, 180), (255, 182, 193), (218, 112, 214), (255, 228, 240)],
        fg=[(199, 21, 133), (255, 255, 255), (120, 40, 160)],
        pattern="checks",
        shape="diamond",
    ),
    "monochrome": dict(
        bg=[(20, 20, 20), (90, 90, 90), (170, 170, 170), (240, 240, 240)],
        fg=[(0, 0, 0), (255, 255, 255), (128, 128, 128)],
        pattern="diagonal",
        shape="square",
    ),
    "neon": dict(
        bg=[(12, 12, 30), (30, 10, 45), (5, 25, 35), (20, 20, 20)],
        fg=[(57, 255, 20), (255, 0, 255), (0, 255, 255), (255, 255, 0)],
        pattern="grid",
        shape="ring",
    ),
    "earth": dict(
        bg=[(204, 119, 34), (194, 178, 128), (160, 82, 45), (222, 184, 135)],
        fg=[(85, 107, 47), (92, 64, 51), (245, 235, 215)],
        pattern="plain",
        shape="hexagon",
    ),
    "pastel": dict(
        bg=[(179, 229, 252), (200, 230, 201), (255, 224, 178), (225, 190, 231), (255, 249, 196)],
        fg=[(150, 170, 230), (240, 150, 170), (120, 200, 170)],
        pattern="waves",
        shape="cross",
    ),
}
_STYLE_NAMES: tuple[str, ...] = tuple(VISUAL_STYLES)

PRICE_BANDS: tuple[str, ...] = ("budget", "mid", "upper", "premium")
_PRICE_BAND_EDGES = (20.0, 50.0, 120.0)  # budget < 20 <= mid < 50 <= upper < 120 <= premium

# 20 made-up brands: (name, typical price, focus topics).
BRANDS: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("Northwind", 75.0, ("outdoor", "fitness")),
    ("Aurelia", 160.0, ("fashion", "books")),
    ("Kestrel & Co", 32.0, ("outdoor", "gardening")),
    ("Bramblewood", 14.0, ("gardening", "kitchen")),
    ("Lumora", 38.0, ("space", "books")),
    ("Vantor", 85.0, ("gaming", "music")),
    ("Pinecrest", 12.0, ("outdoor", "pets")),
    ("Solvik", 28.0, ("kitchen", "fitness")),
    ("Halcyon", 190.0, ("music", "kitchen")),
    ("Orbis Lab", 65.0, ("space", "gaming")),
    ("Quillmark", 16.0, ("books", "fashion")),
    ("Tidewater", 42.0, ("pets", "outdoor")),
    ("Ember & Oak", 95.0, ("kitchen", "gardening")),
    ("Zentrix", 150.0, ("gaming", "space")),
    ("Marlowe", 30.0, ("fashion", "music")),
    ("Cobalt Fox", 13.0, ("gaming", "pets")),
    ("Juniper Row", 26.0, ("gardening", "fashion")),
    ("Atlas Forge", 70.0, ("fitness", "outdoor")),
    ("Velora", 175.0, ("fashion", "fitness")),
    ("Nimbus Works", 18.0, ("music", "space")),
)
_BRAND_NAMES = tuple(b[0] for b in BRANDS)

_AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")
_AGE_SHARES = (0.17, 0.30, 0.24, 0.17, 0.12)
_COUNTRIES = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "SE", "PL", "JP", "CA", "BR")

# Independent random streams (so e.g. the items do not change when n_users changes).
_STREAM_ITEMS, _STREAM_TEXT, _STREAM_IMAGES, _STREAM_USERS, _STREAM_INTERACTIONS = 1, 2, 3, 4, 5


def _rng(seed: int, stream: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream, *more])


def _price_band(price: float) -> str:
    return PRICE_BANDS[int(np.searchsorted(_PRICE_BAND_EDGES, price, side="right"))]


# --------------------------------------------------------------------------------------------------
# Items
# --------------------------------------------------------------------------------------------------


def _a(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


_SMALL_WORDS = frozenset({"a", "an", "and", "the", "of", "for", "in", "on", "with", "your", "to", "under"})


def _title_case(text: str) -> str:
    return " ".join(
        w if (w[:1].isupper() or not w[:1].isalpha() or w in _SMALL_WORDS) else w[:1].upper() + w[1:]
        for w in text.split(" ")
    )


def _pick(rng: np.random.Generator, seq, k: int | None = None):
    if k is None:
        return seq[int(rng.integers(len(seq)))]
    idx = rng.choice(len(seq), size=k, replace=False)
    return [seq[int(i)] for i in idx]


def _compose_text(rng: np.random.Generator, category: int, brand: str) -> tuple[str, str, str]:
    """(noun, title, description) for one item of a category (an index into ``_CATEGORIES``)."""
    d = _TOPIC_DATA[TOPICS[_CATEGORY_TOPIC[category]]]
    sub = _CATEGORY_SPEC[category]
    noun = _pick(rng, sub["nouns"])
    adj, adj2 = _pick(rng, sub["adjectives"] + d["adjectives"], 2)
    gadj = _pick(rng, _GENERIC_ADJECTIVES)
    act, act2 = _pick(rng, sub.get("activities", d["activities"]), 2)
    aud = _pick(rng, sub.get("audiences", d["audiences"]))
    feat, feat2 = _pick(rng, sub["features"], 2)
    # cross-selling within the department
    other_noun = _pick(rng, [n for spec in d["subcategories"].values() for n in spec["nouns"] if n != noun])

    t = int(rng.integers(5))
    if t == 0:
        title = f"{brand} {_title_case(adj)} {_title_case(noun)}"
    elif t == 1:
        title = f"{brand} {_title_case(noun)} {_pick(rng, _SERIES)}"
    elif t == 2:
        title = f"{_title_case(adj)} {_title_case(noun)} by {brand}"
    elif t == 3:
        title = f"{brand} {_title_case(gadj)} {_title_case(noun)} for {_title_case(act)}"
    else:
        title = f"{_title_case(noun)} {_pick(rng, _SERIES)} - {_title_case(adj)}, {_title_case(adj2)}"

    s = int(rng.integers(4))
    if s == 0:
        first = f"This {adj} {noun} is made for {act}."
    elif s == 1:
        first = f"Meet the {adj} {noun} from {brand}, built for {act}."
    elif s == 2:
        first = f"{_a(adj).capitalize()} {noun} that makes {act} easier."
    else:
        first = f"Designed for {aud}, this {noun} is {adj} and {adj2}."
    s = int(rng.integers(3))
    if s == 0:
        second = f"It features {feat} and {feat2}."
    elif s == 1:
        second = f"Highlights include {feat}, plus {feat2}."
    else:
        second = f"With {feat}, it is ready for {act2}."
    sentences = [first, second]
    if rng.random() < 0.95:  # a line of shop copy in the words of the whole department
        sentences.insert(1, _pick(rng, d["blurbs"]))
    s = int(rng.integers(4))
    if s == 0:
        sentences.append(f"A thoughtful gift for {aud}.")
    elif s == 1:
        sentences.append(f"{_title_case(gadj).split(' ')[0]} enough for {act2}, {adj2} enough for every day.")
    elif s == 2:
        sentences.append(f"Pairs well with our {other_noun}.")
    if rng.random() < 0.5:
        sentences.append(_pick(rng, _CLOSERS))
    return noun, title, " ".join(sentences)


def _make_items(n_items: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    rng = _rng(seed, _STREAM_ITEMS)
    n_topics, n_styles = len(TOPICS), len(_STYLE_NAMES)
    # Balanced-then-shuffled latent factors: every topic/style/cluster is present even for small catalogs.
    topic = rng.permutation(np.resize(np.arange(n_topics), n_items))
    style = rng.permutation(np.resize(np.arange(n_styles), n_items))
    cluster = rng.permutation(np.resize(np.arange(_N_BEHAVIOUR_CLUSTERS), n_items))
    log_pop = rng.normal(0.0, 1.0, n_items)
    popularity = np.exp(log_pop)

    # Category: one of the topic's sub-categories, uniformly (the title's noun is then drawn from it).
    topic_categories = [np.flatnonzero(np.asarray(_CATEGORY_TOPIC) == t) for t in range(n_topics)]
    category_idx = np.array([topic_categories[t][int(rng.integers(len(topic_categories[t])))] for t in topic])
    category = [_CATEGORIES[c] for c in category_idx]

    # Brand: 75 % one that focuses on the topic, else any; price lognormal around the brand's level.
    brand_idx = np.empty(n_items, dtype=int)
    for i, t in enumerate(topic):
        focus = [b for b, (_, _, tops) in enumerate(BRANDS) if TOPICS[t] in tops]
        brand_idx[i] = focus[int(rng.integers(len(focus)))] if rng.random() < 0.75 else int(rng.integers(len(BRANDS)))
    level = np.array([BRANDS[b][1] for b in brand_idx])
    price = np.maximum(1.99, np.round(level * rng.lognormal(0.0, 0.3, n_items)) - 0.01)
    band = [_price_band(p) for p in price]

    # Missing modalities: ~10 % without picture, ~8 % without description, a bit more often in the tail.
    tail_w = np.exp(-0.5 * log_pop)
    tail_w = tail_w / tail_w.sum()
    no_image = np.zeros(n_items, bool)
    no_image[rng.choice(n_items, size=int(round(_MISSING_IMAGE_SHARE * n_items)), replace=False, p=tail_w)] = True
    no_desc = np.zeros(n_items, bool)
    no_desc[rng.choice(n_items, size=int(round(_MISSING_DESCRIPTION_SHARE * n_items)), replace=False, p=tail_w)] = True

    width = max(4, len(str(n_items)))
    item_ids = [f"D{i + 1:0{width}d}" for i in range(n_items)]
    pop_rank = np.argsort(np.argsort(-log_pop))  # 0 = most popular
    trng = _rng(seed, _STREAM_TEXT)
    titles, descs, tags = [], [], []
    for i in range(n_items):
        _, title, desc = _compose_text(trng, int(category_idx[i]), _BRAND_NAMES[brand_idx[i]])
        titles.append(title)
        descs.append("" if no_desc[i] else desc)
        k = 1 + int(trng.integers(2))
        tg = _pick(trng, _CATEGORY_SPEC[category_idx[i]]["tags"], k)
        if pop_rank[i] < max(1, n_items // 20) and trng.random() < 0.7:
            tg.append("bestseller")
        if band[i] == "budget" and trng.random() < 0.4:
            tg.append("budget pick")
        if band[i] == "premium" and trng.random() < 0.4:
            tg.append("premium")
        if trng.random() < 0.12:
            tg.append(_pick(trng, ["gift idea", "eco-friendly", "new arrival", "limited edition"]))
        tags.append("|".join(tg))

    items = pd.DataFrame(
        {
            "item_id": item_ids,
            "title": titles,
            "description": descs,
            "category": category,
            "brand": [_BRAND_NAMES[b] for b in brand_idx],
            "price": price,
            "tags": tags,
            "image_file": ["" if no_image[i] else f"images/{item_ids[i]}.png" for i in range(n_items)],
        }
    )
    gt = pd.DataFrame(
        {
            "item_id": item_ids,
            "topic": [TOPICS[t] for t in topic],
            "visual_style": [_STYLE_NAMES[s] for s in style],
            "pattern": [VISUAL_STYLES[_STYLE_NAMES[s]]["pattern"] for s in style],
            "shape": [VISUAL_STYLES[_STYLE_NAMES[s]]["shape"] for s in style],
            "price_band": band,
            "brand": [_BRAND_NAMES[b] for b in brand_idx],
            "category": category,
            "behaviour_cluster": cluster,
            "popularity": np.round(popularity, 4),
            "has_image": ~no_image,
            "has_description": ~no_desc,
        }
    )
    latent = dict(
        topic=topic,
        style=style,
        cluster=cluster,
        brand=brand_idx,
        band=np.array([PRICE_BANDS.index(b) for b in band]),
        category=category_idx,
        log_pop=log_pop,
    )
    return items, gt, latent


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------


def _jitter(rng: np.random.Generator, color, amount: int = 12) -> np.ndarray:
    return np.clip(np.asarray(color, float) + rng.integers(-amount, amount + 1, 3), 0, 255)


def _shape_points(shape: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    def poly(n, radii):
        pts = []
        for k in range(n * len(radii)):
            a = rot + 2 * math.pi * k / (n * len(radii))
            rr = radii[k % len(radii)]
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts

    if shape == "triangle":
        return poly(3, [r])
    if shape == "square":
        return poly(4, [r])
    if shape == "diamond":
        return [(cx, cy - r * 1.15), (cx + r * 0.75, cy), (cx, cy + r * 1.15), (cx - r * 0.75, cy)]
    if shape == "hexagon":
        return poly(6, [r])
    if shape == "star":
        return poly(5, [r, r * 0.42])
    if shape == "cross":
        a, b = r, r * 0.36
        base = [
            (-b, -a),
            (b, -a),
            (b, -b),
            (a, -b),
            (a, b),
            (b, b),
            (b, a),
            (-b, a),
            (-b, b),
            (-a, b),
            (-a, -b),
            (-b, -b),
        ]
        c, s = math.cos(rot), math.sin(rot)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in base]
    raise ValueError(shape)


# Topic silhouettes: the object drawn in an item's picture, one per topic, as a list of parts in unit
# coordinates (x right, y down, the object inside [-1, 1]^2). A part is (kind, value, geometry): kind
# "poly" (a list of points) or "ellipse" (cx, cy, rx, ry), value 1 = filled, 0 = cut back out (a hole
# through which the background shows); parts are drawn in order.
def _ellipse_pts(cx: float, cy: float, rx: float, ry: float, n: int = 40) -> list[tuple[float, float]]:
    return [(cx + rx * math.cos(2 * math.pi * k / n), cy + ry * math.sin(2 * math.pi * k / n)) for k in range(n)]


def _box(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _bar(
    a: tuple[float, float], b: tuple[float, float], wa: float, wb: float | None = None
) -> list[tuple[float, float]]:
    """A quadrilateral along the segment a -> b, wa wide at a and wb at b."""
    wb = wa if wb is None else wb
    dx, dy = b[0] - a[0], b[1] - a[1]
    n = math.hypot(dx, dy) or 1.0
    px, py = -dy / n, dx / n
    return [
        (a[0] + px * wa / 2, a[1] + py * wa / 2),
        (b[0] + px * wb / 2, b[1] + py * wb / 2),
        (b[0] - px * wb / 2, b[1] - py * wb / 2),
        (a[0] - px * wa / 2, a[1] - py * wa / 2),
    ]


def _leaf(base: tuple[float, float], tip: tuple[float, float], width: float, n: int = 12) -> list[tuple[float, float]]:
    """A leaf (two arcs) from base to tip, ``width`` wide at the middle on either side."""
    dx, dy = tip[0] - base[0], tip[1] - base[1]
    length = math.hypot(dx, dy) or 1.0
    px, py = -dy / length, dx / length
    ts = np.linspace(0, 1, n)
    bulge = width * np.sin(math.pi * ts)
    side1 = [(base[0] + dx * t + px * w, base[1] + dy * t + py * w) for t, w in zip(ts, bulge)]
    side2 = [(base[0] + dx * t - px * w, base[1] + dy * t - py * w) for t, w in zip(ts[::-1], bulge[::-1])]
    return side1 + side2


def _rotated(points, angle: float, about: tuple[float, float] = (0.0, 0.0)):
    c, s = math.cos(angle), math.sin(angle)
    return [
        (about[0] + (x - about[0]) * c - (y - about[1]) * s, about[1] + (x - about[0]) * s + (y - about[1]) * c)
        for x, y in points
    ]


def _guitar() -> list:
    # (kind, value, geometry): an ellipse's (cx, cy, rx, ry) or a polygon's points
    parts: list[tuple[str, int, Any]] = [
        ("ellipse", 1, (0.0, 0.42, 0.44, 0.42)),
        ("ellipse", 1, (0.0, -0.08, 0.33, 0.3)),
        ("poly", 1, _box(-0.07, -0.95, 0.07, -0.2)),
        ("poly", 1, _box(-0.12, -1.0, 0.12, -0.82)),
        ("ellipse", 0, (0.0, 0.12, 0.12, 0.12)),
        ("poly", 0, _box(-0.14, 0.5, 0.14, 0.56)),
    ]
    out = []
    for kind, value, geo in parts:  # tilted 35 degrees, like a guitar leaning on a wall
        pts = _ellipse_pts(*geo) if kind == "ellipse" else geo
        out.append(("poly", value, _rotated(pts, math.radians(35), (0.0, 0.0))))
    return out


_SILHOUETTES: dict[str, list] = {
    "outdoor": [  # a tent with an open door, its poles crossing at the top, on the ground
        ("poly", 1, [(-0.95, 0.72), (0.0, -0.72), (0.95, 0.72)]),
        ("poly", 1, _bar((0.0, -0.72), (-0.2, -0.98), 0.08)),
        ("poly", 1, _bar((0.0, -0.72), (0.2, -0.98), 0.08)),
        ("poly", 1, _box(-1.0, 0.7, 1.0, 0.82)),
        ("poly", 0, [(-0.28, 0.72), (0.0, 0.08), (0.28, 0.72)]),
    ],
    "kitchen": [  # a cooking pot with lid, knob and two handles
        ("poly", 1, [(-0.7, -0.12), (0.7, -0.12), (0.66, 0.62), (0.5, 0.75), (-0.5, 0.75), (-0.66, 0.62)]),
        ("ellipse", 1, (0.0, -0.22, 0.8, 0.14)),
        ("ellipse", 1, (0.0, -0.42, 0.13, 0.11)),
        ("poly", 1, _box(-0.98, 0.0, -0.6, 0.12)),
        ("poly", 1, _box(0.6, 0.0, 0.98, 0.12)),
        ("poly", 0, _box(-0.7, -0.1, 0.7, -0.04)),
    ],
    "space": [  # a telescope on a tripod
        ("poly", 1, _bar((-0.8, 0.05), (0.75, -0.62), 0.22, 0.34)),
        ("poly", 1, _bar((-0.35, -0.3), (0.2, -0.55), 0.07)),
        ("poly", 1, _bar((0.0, -0.3), (-0.6, 0.95), 0.08)),
        ("poly", 1, _bar((0.0, -0.3), (0.05, 0.95), 0.08)),
        ("poly", 1, _bar((0.0, -0.3), (0.6, 0.95), 0.08)),
        ("ellipse", 1, (0.0, -0.3, 0.12, 0.12)),
    ],
    "fashion": [  # a t-shirt
        (
            "poly",
            1,
            [
                (-0.3, -0.8),
                (-0.95, -0.5),
                (-0.75, -0.08),
                (-0.55, -0.18),
                (-0.55, 0.88),
                (0.55, 0.88),
                (0.55, -0.18),
                (0.75, -0.08),
                (0.95, -0.5),
                (0.3, -0.8),
                (0.16, -0.64),
                (0.0, -0.6),
                (-0.16, -0.64),
            ],
        ),
    ],
    "gaming": [  # a game controller with a d-pad and four buttons
        ("poly", 1, _box(-0.62, -0.42, 0.62, 0.22)),
        ("ellipse", 1, (-0.62, -0.1, 0.32, 0.32)),
        ("ellipse", 1, (0.62, -0.1, 0.32, 0.32)),
        ("poly", 1, _bar((-0.62, -0.05), (-0.75, 0.6), 0.42, 0.3)),
        ("poly", 1, _bar((0.62, -0.05), (0.75, 0.6), 0.42, 0.3)),
        ("ellipse", 1, (-0.75, 0.6, 0.15, 0.12)),
        ("ellipse", 1, (0.75, 0.6, 0.15, 0.12)),
        ("poly", 0, _box(-0.72, -0.16, -0.36, -0.06)),
        ("poly", 0, _box(-0.59, -0.29, -0.49, 0.07)),
        ("ellipse", 0, (0.52, -0.28, 0.06, 0.06)),
        ("ellipse", 0, (0.52, 0.06, 0.06, 0.06)),
        ("ellipse", 0, (0.35, -0.11, 0.06, 0.06)),
        ("ellipse", 0, (0.69, -0.11, 0.06, 0.06)),
    ],
    "gardening": [  # a potted plant
        ("poly", 1, [(-0.48, 0.22), (0.48, 0.22), (0.36, 0.95), (-0.36, 0.95)]),
        ("poly", 1, _box(-0.58, 0.1, 0.58, 0.28)),
        ("poly", 1, _bar((0.0, 0.12), (0.0, -0.6), 0.07)),
        ("poly", 1, _leaf((0.0, -0.08), (-0.7, -0.42), 0.2)),
        ("poly", 1, _leaf((0.0, -0.28), (0.68, -0.62), 0.2)),
        ("poly", 1, _leaf((0.0, -0.5), (-0.08, -1.0), 0.17)),
    ],
    "music": _guitar(),
    "fitness": [  # a dumbbell, tilted
        ("poly", 1, _rotated(p, math.radians(-20)))
        for p in (
            _box(-0.62, -0.07, 0.62, 0.07),
            _box(-0.82, -0.45, -0.56, 0.45),
            _box(-0.98, -0.3, -0.82, 0.3),
            _box(0.56, -0.45, 0.82, 0.45),
            _box(0.82, -0.3, 0.98, 0.3),
        )
    ],
    "books": [  # an open book with lines of text
        ("poly", 1, [(-0.98, -0.58), (-0.5, -0.68), (-0.04, -0.5), (-0.04, 0.72), (-0.5, 0.56), (-0.98, 0.62)]),
        ("poly", 1, [(0.98, -0.58), (0.5, -0.68), (0.04, -0.5), (0.04, 0.72), (0.5, 0.56), (0.98, 0.62)]),
        *[("poly", 0, _bar((-0.84, y + 0.02), (-0.18, y + 0.1), 0.05)) for y in (-0.42, -0.22, -0.02, 0.18, 0.38)],
        *[("poly", 0, _bar((0.18, y + 0.1), (0.84, y + 0.02), 0.05)) for y in (-0.42, -0.22, -0.02, 0.18, 0.38)],
    ],
    "pets": [  # a paw print
        ("ellipse", 1, (0.0, 0.45, 0.52, 0.4)),
        ("ellipse", 1, (0.0, 0.25, 0.34, 0.3)),
        ("ellipse", 1, (-0.68, -0.2, 0.2, 0.26)),
        ("ellipse", 1, (-0.26, -0.62, 0.2, 0.27)),
        ("ellipse", 1, (0.26, -0.62, 0.2, 0.27)),
        ("ellipse", 1, (0.68, -0.2, 0.2, 0.26)),
    ],
}


_OBJECT_HALF_SIZE = (0.24, 0.28)  # half the side of the topic's object, as a share of the picture's side
_MOTIF_RADIUS = (0.11, 0.13)  # the style's own shape, drawn in the corners, as a share of the side
_OUTLINE_PX = 5  # width of the object's outline (a max-filter size, at the 2x drawing scale)
_N_MOTIFS = 4  # corners that get the style's motif (the more, the more the style outweighs the object)


def _render_image(style_name: str, topic: str, rng: np.random.Generator, size: int) -> Image.Image:
    spec = VISUAL_STYLES[style_name]
    S = 2 * size  # draw at 2x, then downsample (anti-aliasing)
    bg = spec["bg"]
    i1, i2 = rng.choice(len(bg), size=2, replace=False)
    c1, c2 = _jitter(rng, bg[i1]), _jitter(rng, bg[i2])
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / S
    pattern = spec["pattern"]
    if pattern == "gradient":
        ang = rng.uniform(0, 2 * math.pi)
        t = (math.cos(ang) * (xx - 0.5) + math.sin(ang) * (yy - 0.5)) / 0.71 + 0.5
        mask = np.clip(t, 0, 1)
    elif pattern == "stripes":  # roughly horizontal bands
        f, ph, tilt = rng.uniform(4, 7), rng.uniform(0, 1), rng.uniform(-0.15, 0.15)
        mask = (np.floor((yy + tilt * xx) * f + ph) % 2).astype(np.float32)
    elif pattern == "diagonal":
        f, ph = rng.uniform(5, 8), rng.uniform(0, 1)
        sign = 1.0 if rng.random() < 0.5 else -1.0
        mask = (np.floor((xx + sign * yy) * f + ph) % 2).astype(np.float32)
    elif pattern == "dots":
        f = rng.uniform(5, 8)
        ox, oy = rng.uniform(0, 1, 2)
        dx = (xx * f + ox) % 1 - 0.5
        dy = (yy * f + oy) % 1 - 0.5
        mask = ((dx * dx + dy * dy) < rng.uniform(0.06, 0.11)).astype(np.float32)
    elif pattern == "checks":
        f = rng.uniform(3, 6)
        ox, oy = rng.uniform(0, 1, 2)
        mask = ((np.floor(xx * f + ox) + np.floor(yy * f + oy)) % 2).astype(np.float32)
    elif pattern == "grid":
        f, w = rng.uniform(5, 9), rng.uniform(0.08, 0.14)
        ox, oy = rng.uniform(0, 1, 2)
        mask = (((xx * f + ox) % 1 < w) | ((yy * f + oy) % 1 < w)).astype(np.float32)
    elif pattern == "waves":
        f, amp, k, ph = rng.uniform(4, 7), rng.uniform(0.03, 0.06), rng.uniform(2, 4), rng.uniform(0, 6.3)
        mask = (np.floor((yy + amp * np.sin(2 * math.pi * k * xx + ph)) * f) % 2).astype(np.float32)
    else:  # plain, with a faint vignette so it is not perfectly flat
        r2 = (xx - 0.5) ** 2 + (yy - 0.5) ** 2
        mask = np.clip(r2 * 0.6, 0, 1)
    arr = c1[None, None, :] * (1 - mask[..., None]) + c2[None, None, :] * mask[..., None]
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")

    # Two foreground colours: the style's two fg colours farthest from the background, in random order;
    # the first draws the topic's object, the second its outline and the style's own shape (a motif in the
    # corners). The object is kept small and the motif repeated so that, to an image encoder, the picture
    # still looks more like its style than like its topic.
    bg_mean = (c1 + c2) / 2
    fg = spec["fg"]
    order = np.argsort([-np.abs(np.asarray(c, float) - bg_mean).sum() for c in fg])
    first = int(rng.integers(2))
    obj_fill = tuple(int(v) for v in _jitter(rng, fg[int(order[first])], 10))
    motif_fill = tuple(int(v) for v in _jitter(rng, fg[int(order[1 - first])], 10))

    # The object: the topic's silhouette, jittered in size, position, tilt and mirrored half of the time.
    half = rng.uniform(*_OBJECT_HALF_SIZE) * S
    cx, cy = S / 2 + rng.uniform(-0.05, 0.05) * S, S / 2 + rng.uniform(-0.05, 0.05) * S
    tilt = rng.uniform(-0.2, 0.2)
    mirror = -1.0 if rng.random() < 0.5 else 1.0
    silhouette = Image.new("L", (S, S), 0)
    mask_draw = ImageDraw.Draw(silhouette)
    for kind, value, geometry in _SILHOUETTES[topic]:
        points = _ellipse_pts(*geometry) if kind == "ellipse" else geometry
        points = _rotated([(mirror * x, y) for x, y in points], tilt)
        mask_draw.polygon([(cx + half * x, cy + half * y) for x, y in points], fill=255 * value)
    # A thin outline in the motif's colour keeps the object visible on a busy background of its colour.
    img.paste(motif_fill, mask=silhouette.filter(ImageFilter.MaxFilter(_OUTLINE_PX)))
    img.paste(obj_fill, mask=silhouette)

    # The motif: the style's shape in some of the four corners.
    draw = ImageDraw.Draw(img)
    shape = spec["shape"]
    for corner in rng.permutation(4)[:_N_MOTIFS]:
        r = rng.uniform(*_MOTIF_RADIUS) * S
        mx = (0.15 if corner % 2 == 0 else 0.85) * S + rng.uniform(-0.02, 0.02) * S
        my = (0.15 if corner < 2 else 0.85) * S + rng.uniform(-0.02, 0.02) * S
        rot = rng.uniform(0, 2 * math.pi)
        if shape == "circle":
            draw.ellipse([mx - r, my - r, mx + r, my + r], fill=motif_fill)
        elif shape == "ring":
            draw.ellipse([mx - r, my - r, mx + r, my + r], outline=motif_fill, width=max(2, int(r * 0.35)))
        else:
            draw.polygon(_shape_points(shape, mx, my, r, rot), fill=motif_fill)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def _write_images(out: Path, items: pd.DataFrame, gt: pd.DataFrame, seed: int, image_size: int) -> None:
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    for idx, (rel, style, topic) in enumerate(zip(items["image_file"], gt["visual_style"], gt["topic"])):
        if not rel:
            continue
        img = _render_image(style, topic, _rng(seed, _STREAM_IMAGES, idx), image_size)
        # No metadata chunks, fixed compression: the bytes depend only on the pixels.
        img.save(out / rel, format="PNG", optimize=False, compress_level=6)


# --------------------------------------------------------------------------------------------------
# Users and interactions
# --------------------------------------------------------------------------------------------------


def _allocate_counts(rng: np.random.Generator, n_users: int, total: int, cap: int) -> np.ndarray:
    """Heavy-tailed per-user activity: min 5, lognormal body, sums exactly to ``total``."""
    raw = rng.lognormal(0.0, 0.85, n_users)

    def counts(c: float) -> np.ndarray:
        return np.clip(np.round(raw * c), 5, cap).astype(int)

    lo, hi = 0.0, float(total)
    for _ in range(80):
        mid = (lo + hi) / 2
        if counts(mid).sum() < total:
            lo = mid
        else:
            hi = mid
    n = counts(hi)
    diff = total - int(n.sum())
    while diff != 0:
        cand = np.flatnonzero(n < cap) if diff > 0 else np.flatnonzero(n > 5)
        pick = rng.choice(cand, size=min(abs(diff), len(cand)), replace=False)
        n[pick] += 1 if diff > 0 else -1
        diff = total - int(n.sum())
    return n


def _make_users(n_users: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    rng = _rng(seed, _STREAM_USERS)
    seg_counts = np.floor(np.asarray(_SEGMENT_SHARES) * n_users).astype(int)
    seg_counts = np.maximum(seg_counts, 1)
    while seg_counts.sum() < n_users:
        seg_counts[int(np.argmax(np.asarray(_SEGMENT_SHARES) * n_users - seg_counts))] += 1
    while seg_counts.sum() > n_users:
        seg_counts[int(np.argmax(seg_counts))] -= 1
    segment = rng.permutation(np.repeat(np.arange(len(SEGMENTS)), seg_counts))

    # Weights over MODALITIES (text, image, attributes, behaviour): Dirichlet jitter around the segment's.
    weights = np.empty((n_users, len(MODALITIES)))
    for u in range(n_users):
        main = MODALITIES.index(_SEGMENT_MAIN_MODALITY[SEGMENTS[segment[u]]])
        base = np.full(len(MODALITIES), (1 - _MAIN_WEIGHT) / (len(MODALITIES) - 1))
        base[main] = _MAIN_WEIGHT
        w = np.round(rng.dirichlet(base * _WEIGHT_CONCENTRATION), 4)
        w[main] = round(1.0 - (w.sum() - w[main]), 4)  # exact sum to 1 at 4 decimals
        weights[u] = w

    pref_topic = rng.integers(len(TOPICS), size=n_users)
    pref_style = rng.integers(len(_STYLE_NAMES), size=n_users)
    pref_cluster = rng.integers(_N_BEHAVIOUR_CLUSTERS, size=n_users)
    pref_band = rng.choice(len(PRICE_BANDS), size=n_users, p=[0.3, 0.35, 0.22, 0.13])
    pref_category = rng.integers(len(_CATEGORIES), size=n_users)
    brand_band = np.array([PRICE_BANDS.index(_price_band(b[1])) for b in BRANDS])
    pref_brands = np.empty((n_users, 2), dtype=int)
    for u in range(n_users):
        pool = np.flatnonzero(brand_band == pref_band[u])
        pref_brands[u] = rng.choice(pool, size=2, replace=False)

    width = max(4, len(str(n_users)))
    user_ids = [f"U{u + 1:0{width}d}" for u in range(n_users)]
    users = pd.DataFrame(
        {
            "user_id": user_ids,
            "age_band": [_AGE_BANDS[i] for i in rng.choice(len(_AGE_BANDS), size=n_users, p=_AGE_SHARES)],
            "country": [_COUNTRIES[i] for i in rng.integers(len(_COUNTRIES), size=n_users)],
        }
    )
    gt = pd.DataFrame(
        {
            "user_id": user_ids,
            "segment": [SEGMENTS[s] for s in segment],
            **{f"w_{m}": weights[:, k] for k, m in enumerate(MODALITIES)},
            "pref_topic": [TOPICS[t] for t in pref_topic],
            "pref_visual_style": [_STYLE_NAMES[s] for s in pref_style],
            "pref_price_band": [PRICE_BANDS[b] for b in pref_band],
            "pref_brands": ["|".join(_BRAND_NAMES[b] for b in pb) for pb in pref_brands],
            "pref_category": [_CATEGORIES[c] for c in pref_category],
            "pref_behaviour_cluster": pref_cluster,
        }
    )
    latent = dict(
        weights=weights,
        topic=pref_topic,
        style=pref_style,
        cluster=pref_cluster,
        band=pref_band,
        brands=pref_brands,
        category=pref_category,
    )
    return users, gt, latent


def _match_features(ul: dict, il: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``match_m(u, i)`` in [0, 1], ``[U, N]`` each, for (text, image, attributes, behaviour): how well item
    ``i``'s latent values meet user ``u``'s preferred ones in each modality."""
    n_items = len(il["log_pop"])
    pop_pct = np.argsort(np.argsort(il["log_pop"])) / max(1, n_items - 1)
    m_text = (ul["topic"][:, None] == il["topic"][None, :]).astype(float)
    m_image = (ul["style"][:, None] == il["style"][None, :]).astype(float)
    m_attr = (
        0.5 * (ul["band"][:, None] == il["band"][None, :])
        + 0.3 * ((ul["brands"][:, :1] == il["brand"][None, :]) | (ul["brands"][:, 1:] == il["brand"][None, :]))
        + 0.2 * (ul["category"][:, None] == il["category"][None, :])
    )
    m_beh = 0.75 * (ul["cluster"][:, None] == il["cluster"][None, :]) + 0.25 * pop_pct[None, :]
    return m_text, m_image, m_attr, m_beh


def demo_posterior_weights(
    users: pd.DataFrame,
    items: pd.DataFrame,
    histories: Any,
    samples: int = 4000,
    seed: int = 0,
    preferences_known: bool = True,
) -> np.ndarray:
    """The generator's own posterior mean of each user's modality weights ``[U, 4]`` (``MODALITIES`` order).

    ``users`` / ``items``: the ground-truth frames (:func:`demo_ground_truth`), in the row and column order of
    ``histories`` (a binary ``[U, N]`` CSR matrix: what a model is given, e.g. the training split). The
    weights' prior (the segments' shares and Dirichlet jitter) is sampled, and each sample is weighted by
    the likelihood of the user's items as draws from the generator's softmax over the catalogue, with every
    item's latent values known. A reference, not a model: it bounds what any estimator that reads the same
    choices could recover (the Gaussian taste noise is left out of the likelihood and draws are taken as
    independent).

    ``preferences_known``: every user's preferred values (topic, style, price band, brands, category,
    cluster) are given too. With False they are not: they are estimated per user, alternating with the weights
    (the values that make the history likeliest at the current weights, starting from the history's most
    frequent ones, twice), so the bound asks only for perfect *item* features. The preferred values are drawn
    independently of anything a model observes, so a model cannot know them; the order of a modality's weight
    among the users for whom it is minor rests on them."""
    rng = np.random.default_rng(seed)
    prior = []
    for segment, share in zip(SEGMENTS, _SEGMENT_SHARES, strict=True):
        base = np.full(len(MODALITIES), (1 - _MAIN_WEIGHT) / (len(MODALITIES) - 1))
        base[MODALITIES.index(_SEGMENT_MAIN_MODALITY[segment])] = _MAIN_WEIGHT
        prior.append(rng.dirichlet(base * _WEIGHT_CONCENTRATION, max(1, int(round(samples * share)))))
    weights = np.concatenate(prior).astype(np.float32)  # [S, 4]
    brands = {name: b for b, name in enumerate(_BRAND_NAMES)}
    log_pop = np.log(items["popularity"].to_numpy(float))
    il = dict(
        topic=items["topic"].map(TOPICS.index).to_numpy(),
        style=items["visual_style"].map(_STYLE_NAMES.index).to_numpy(),
        band=items["price_band"].map(PRICE_BANDS.index).to_numpy(),
        brand=items["brand"].map(brands).to_numpy(),
        category=items["category"].map(_CATEGORIES.index).to_numpy(),
        cluster=items["behaviour_cluster"].to_numpy(int),
        log_pop=log_pop,
    )
    pop_term = (_POPULARITY_COEF * (log_pop - log_pop.mean()) / (log_pop.std() + 1e-12)).astype(np.float32)

    def log_likelihood(w: np.ndarray, match: np.ndarray, chosen: np.ndarray) -> np.ndarray:
        utility = _UTILITY_SCALE * (w @ match) + pop_term  # [S, N]
        top = utility.max(axis=1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.exp(utility - top).sum(axis=1))
        return utility[:, chosen].sum(axis=1) - len(chosen) * log_norm

    def posterior_mean(match: np.ndarray, chosen: np.ndarray) -> np.ndarray:
        ll = log_likelihood(weights, match, chosen)
        posterior = np.exp(ll - ll.max())
        return (posterior / posterior.sum()) @ weights

    out = np.zeros((len(users), len(MODALITIES)))
    if preferences_known:
        pref_brands = users["pref_brands"].astype(str).str.split("|")
        ul = dict(
            topic=users["pref_topic"].map(TOPICS.index).to_numpy(),
            style=users["pref_visual_style"].map(_STYLE_NAMES.index).to_numpy(),
            band=users["pref_price_band"].map(PRICE_BANDS.index).to_numpy(),
            brands=np.array([[brands[b[0]], brands[b[-1]]] for b in pref_brands]),
            category=users["pref_category"].map(_CATEGORIES.index).to_numpy(),
            cluster=users["pref_behaviour_cluster"].to_numpy(int),
        )
        match = np.stack(_match_features(ul, il), axis=1).astype(np.float32)  # [U, 4, N]
        for u in range(len(users)):
            out[u] = posterior_mean(match[u], histories.indices[histories.indptr[u] : histories.indptr[u + 1]])
        return out

    brand_band = np.array([PRICE_BANDS.index(_price_band(b[1])) for b in BRANDS])
    sizes = dict(topic=len(TOPICS), style=len(_STYLE_NAMES), band=len(PRICE_BANDS), category=len(_CATEGORIES))
    sizes["cluster"] = int(il["cluster"].max()) + 1

    def match_of(pref: dict) -> np.ndarray:
        one = {key: np.array([value]) for key, value in pref.items() if key != "brands"}
        one["brands"] = np.asarray(pref["brands"])[None, :]
        return np.stack(_match_features(one, il), axis=1)[0].astype(np.float32)  # [4, N]

    def brands_for(band: int, chosen: np.ndarray) -> list[int]:
        # the two brands of the band the history holds most of (the generator draws both from the band)
        pool = np.flatnonzero(brand_band == band)
        held = np.bincount(il["brand"][chosen], minlength=len(brand_band))[pool]
        top = pool[np.argsort(-held, kind="stable")[:2]]
        return [int(top[0]), int(top[-1])]

    for u in range(len(users)):
        chosen = histories.indices[histories.indptr[u] : histories.indptr[u + 1]]
        if len(chosen) == 0:
            out[u] = weights.mean(axis=0)
            continue
        pref: dict = {key: int(np.bincount(il[key][chosen], minlength=k).argmax()) for key, k in sizes.items()}
        pref["brands"] = brands_for(pref["band"], chosen)
        w = weights.mean(axis=0, keepdims=True)
        for _ in range(2):
            for key, k in sizes.items():
                best, best_ll = pref[key], -np.inf
                for value in range(k):
                    candidate = {**pref, key: value}
                    if key == "band":
                        candidate["brands"] = brands_for(value, chosen)
                    ll = float(log_likelihood(w, match_of(candidate), chosen)[0])
                    if ll > best_ll:
                        best, best_ll = value, ll
                pref[key] = best
                if key == "band":
                    pref["brands"] = brands_for(best, chosen)
            w = posterior_mean(match_of(pref), chosen)[None, :]
        out[u] = w[0]
    return out


def _make_interactions(
    n_interactions: int, seed: int, user_ids: list[str], item_ids: list[str], ul: dict, il: dict
) -> tuple[pd.DataFrame, np.ndarray]:
    rng = _rng(seed, _STREAM_INTERACTIONS)
    n_users, n_items = len(user_ids), len(item_ids)
    cap = max(5, min(n_items - 1, n_items // 2))
    counts = _allocate_counts(rng, n_users, n_interactions, cap)

    pop_z = (il["log_pop"] - il["log_pop"].mean()) / (il["log_pop"].std() + 1e-12)
    m_text, m_image, m_attr, m_beh = _match_features(ul, il)
    w = ul["weights"]
    utility = (
        _UTILITY_SCALE * (w[:, 0:1] * m_text + w[:, 1:2] * m_image + w[:, 2:3] * m_attr + w[:, 3:4] * m_beh)
        + _POPULARITY_COEF * pop_z[None, :]
        + rng.normal(0.0, _UTILITY_NOISE, (n_users, n_items))
    )
    # Sampling without replacement from softmax(utility) == top-k of utility + Gumbel noise.
    keys = utility + rng.gumbel(0.0, 1.0, (n_users, n_items))
    order = np.argsort(-keys, axis=1, kind="stable")
    z = (utility - utility.mean(1, keepdims=True)) / (utility.std(1, keepdims=True) + 1e-12)
    user_bias = rng.normal(0.0, 0.35, n_users)

    rows_u: list[str] = []
    rows_i: list[str] = []
    rows_r: list[np.ndarray] = []
    rows_t: list[np.ndarray] = []
    span = _T_END - _T0
    for u in range(n_users):
        k = int(counts[u])
        chosen = rng.permutation(order[u, :k])  # the time order is not the preference order
        rating = np.clip(
            np.round(_RATING_BASE + _RATING_SLOPE * z[u, chosen] + user_bias[u] + rng.normal(0, 0.6, k)), 1, 5
        )
        gap_mean = rng.lognormal(math.log(4 * 86400), 0.8)
        gap_mean = min(gap_mean, 0.9 * span / k)
        gaps = np.floor(rng.exponential(gap_mean, k)).astype(np.int64) + 60
        if gaps.sum() > 0.95 * span:  # keep every timestamp inside [2021, 2024]
            gaps = np.floor(gaps * (0.95 * span / gaps.sum())).astype(np.int64) + 1
        start = _T0 + int(rng.uniform(0, max(1.0, span - gaps.sum())))
        rows_u.extend([user_ids[u]] * k)
        rows_i.extend(item_ids[j] for j in chosen)
        rows_r.append(rating.astype(int))
        rows_t.append(start + np.cumsum(gaps))
    inter = pd.DataFrame(
        {
            "user_id": rows_u,
            "item_id": rows_i,
            "rating": np.concatenate(rows_r),
            "timestamp": np.concatenate(rows_t).astype(np.int64),
        }
    )
    return inter, counts


# --------------------------------------------------------------------------------------------------
# READMEs
# --------------------------------------------------------------------------------------------------


def _bundle_readme(
    n_users: int, n_items: int, n_inter: int, n_img: int, n_desc: int, seed: int, size: int, pictures: bool = True
) -> str:
    text = f"""# Demo catalog ("{DEMO_DATASET_NAME}")

A synthetic multimodal shop catalog generated by `recsys.data.demo.generate_demo_bundle` (seed {seed}).
No download, no third-party material: every title, description and picture was composed by the generator.

| table | rows | columns |
|---|---|---|
| items.csv | {n_items} | item_id, title, description, category, brand, price, tags (`|`-separated), image_file |
| interactions.csv | {n_inter} | user_id, item_id, rating (1-5), timestamp (unix seconds) |
| users.csv | {n_users} | user_id, age_band, country |

- `images/<item_id>.png`: {n_img} pictures, {size}x{size} pixels; {n_items - n_img} items have no picture
  (empty `image_file`).
- {n_items - n_desc} items have an empty description (missing modalities are part of the exercise).
- `schema.json`: the role of every column (id, text, categorical, numeric, multi_label, image, rating,
  timestamp).
- `ground_truth/`: how the interactions were generated (user segments and modality weights, item
  latent factors). It is not a table of the bundle: use it only to check what a model has learned.
  See `ground_truth/README.md`.
"""
    if not pictures:  # generated with pictures=False: no image column, no images/ folder
        text = text.replace(", tags (`|`-separated), image_file |", ", tags (`|`-separated) |")
        text = text.replace(
            f"- `images/<item_id>.png`: {n_img} pictures, {size}x{size} pixels; {n_items - n_img} items have no picture\n"
            "  (empty `image_file`).\n",
            "- No pictures: generated with `pictures=False` (no `image_file` column, no `images/` folder).\n",
        )
    return text


def _ground_truth_readme(seg_counts: dict[str, int]) -> str:
    styles = "\n".join(
        f"| {name} | {spec['pattern']} | {spec['shape']} | " + ", ".join("#%02x%02x%02x" % c for c in spec["bg"]) + " |"
        for name, spec in VISUAL_STYLES.items()
    )
    categories = "\n".join(f"| {topic} | " + "; ".join(cats) + " |" for topic, cats in TOPIC_CATEGORIES.items())
    brands = ", ".join(f"{n} (~{p:.0f})" for n, p, _ in BRANDS)
    segs = ", ".join(f"{s}: {seg_counts.get(s, 0)}" for s in SEGMENTS)
    return f"""# Ground truth of the demo catalog

The interactions of this bundle were simulated from a known generative story. These files are for
checking a model (does it give image weight to the users who care about pictures?), never for training.

## Items (`items.csv`)
Each item has latent factors, drawn independently of each other unless stated:
- `topic` (one of {len(TOPICS)}: {", ".join(TOPICS)}): drives the words of the title, description and tags,
  and the object drawn in the picture.
- `category` ("<department> > <sub-category>", one of {len(_CATEGORIES)}): one of the topic's 2-3
  sub-categories, uniformly; the title's product noun, the adjectives, features and tags are drawn from
  that sub-category's lists, so title, category, description and tags always agree. The category
  therefore reveals the topic, and a little more.

  | topic | categories |
  |---|---|
{chr(10).join("  " + line for line in categories.splitlines())}

- `visual_style` (one of {len(VISUAL_STYLES)}): drives the look of the picture: background palette and
  pattern, the colours of the object and of its outline, and a small motif (the style's `shape`) in a
  corner, with per-item jitter of colours, frequencies, size, position, rotation. The object drawn in
  the middle is the topic's (a tent, a pot, a telescope, a t-shirt, a game controller, a potted plant,
  a guitar, a dumbbell, an open book, a paw print), in the style's colours: the picture shows the topic
  too, the style only through colours, pattern and motif.

  | style | pattern | shape (motif) | background palette |
  |---|---|---|---|
{chr(10).join("  " + line for line in styles.splitlines())}

- `brand` (20 made-up brands, each with a typical price and two focus topics; 75 % of an item's brand is
  one focusing on its topic): {brands}. `price` is lognormal (sd 0.3 in log space) around the brand's
  level; `price_band` is budget < 20 <= mid < 50 <= upper < 120 <= premium.
- `behaviour_cluster` (one of {_N_BEHAVIOUR_CLUSTERS}): a purely collaborative factor, invisible in the
  content; it shows only in which items are bought by the same users.
- `popularity`: lognormal (log-popularity ~ N(0, 1)); the 5 % most popular items usually carry the
  `bestseller` tag. Items lacking a picture (`has_image`, ~{_MISSING_IMAGE_SHARE:.0%}) or a description
  (`has_description`, ~{_MISSING_DESCRIPTION_SHARE:.0%}) are drawn with a mild bias towards the unpopular tail.

## Users (`users.csv`)
Every user belongs to a `segment` ({segs}) that fixes the weights over the four modalities:
the segment's own modality gets about {_MAIN_WEIGHT}, the three others about
{(1 - _MAIN_WEIGHT) / 3:.1f} each, with per-user Dirichlet jitter (concentration {_WEIGHT_CONCENTRATION:.0f});
`w_text + w_image + w_attributes + w_behaviour = 1`.
- visual -> `w_image` (follows `pref_visual_style`)
- text -> `w_text` (follows `pref_topic`)
- attributes -> `w_attributes` (follows `pref_price_band`, `pref_brands`, `pref_category`, a full
  "<department> > <sub-category>" value drawn uniformly over the {len(_CATEGORIES)} categories)
- behaviour -> `w_behaviour` (follows `pref_behaviour_cluster` and popularity)

Every user has a preferred value for every modality, whatever the segment. The public `users.csv`
attributes (age band, country) are independent of all of this.

## Interactions
For user u and item i, with matches in [0, 1]:
- text: 1 if topic(i) = pref_topic(u)
- image: 1 if visual_style(i) = pref_visual_style(u)
- attributes: 0.5 [price band matches] + 0.3 [brand in pref_brands] + 0.2 [category (the full
  "<department> > <sub-category>" value) matches]
- behaviour: 0.75 [behaviour cluster matches] + 0.25 popularity percentile(i)

utility(u, i) = {_UTILITY_SCALE} * sum_m w_m(u) match_m(u, i) + {_POPULARITY_COEF} * z(log popularity(i))
+ N(0, {_UTILITY_NOISE}^2).

Each user's number of interactions is heavy-tailed (lognormal, at least 5, at most half the catalog);
the items are drawn without replacement with probabilities softmax(utility) (Gumbel top-k). The
rating is round({_RATING_BASE} + {_RATING_SLOPE} z + b_u + N(0, 0.6^2)) clipped to 1..5, where z is the item's utility
standardised over the user's utilities for all items and b_u ~ N(0, 0.35^2) a user bias. Timestamps
are increasing per user with exponential gaps (user-specific mean of a few days) between 2021 and 2024;
the time order carries no preference information.
"""


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def _write_csv(df: pd.DataFrame, path: Path, float_format: str | None = None) -> None:
    df.to_csv(path, index=False, lineterminator="\n", float_format=float_format, encoding="utf-8")


def generate_demo_bundle(
    out_dir,
    *,
    n_users: int = 1000,
    n_items: int = 800,
    n_interactions: int = 30000,
    seed: int = 2026,
    image_size: int = 96,
    pictures: bool = True,
) -> Path:
    """Write the demo catalog bundle into ``out_dir`` (created if needed) and return its path.

    The total number of interactions is exactly ``n_interactions``; every user has at least 5 and at most
    half the catalog. Same arguments give byte-identical files. ``pictures=False`` writes no pictures: no
    ``image_file`` column in items.csv or schema.json and no ``images/`` folder (a fast text-and-attributes
    catalogue, e.g. for benchmarks at scale); every other file is as with pictures.
    """
    n_users, n_items, n_interactions, image_size = int(n_users), int(n_items), int(n_interactions), int(image_size)
    if n_users < len(SEGMENTS):
        raise ValueError(f"n_users must be at least {len(SEGMENTS)} (one per segment), got {n_users}")
    if n_items < 20:
        raise ValueError(f"n_items must be at least 20, got {n_items}")
    cap = max(5, min(n_items - 1, n_items // 2))
    if not 5 * n_users <= n_interactions <= cap * n_users:
        raise ValueError(
            f"n_interactions must be between {5 * n_users} (5 per user) and {cap * n_users} "
            f"(half the catalog per user) for {n_users} users and {n_items} items, got {n_interactions}"
        )
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ground_truth").mkdir(exist_ok=True)

    items, items_gt, il = _make_items(n_items, seed)
    users, users_gt, ul = _make_users(n_users, seed)
    inter, counts = _make_interactions(n_interactions, seed, list(users["user_id"]), list(items["item_id"]), ul, il)
    users_gt["n_interactions"] = counts

    n_img = int((items["image_file"] != "").sum())
    schema = DEMO_SCHEMA
    if not pictures:
        items = items.drop(columns=["image_file"])
        schema = {**DEMO_SCHEMA, "items": {c: r for c, r in DEMO_SCHEMA["items"].items() if c != "image_file"}}
    _write_csv(items, out / "items.csv", float_format="%.2f")
    _write_csv(inter, out / "interactions.csv")
    _write_csv(users, out / "users.csv")
    _write_csv(users_gt, out / "ground_truth" / "users.csv", float_format="%.4f")
    _write_csv(items_gt, out / "ground_truth" / "items.csv", float_format="%.4f")
    (out / "schema.json").write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
    if pictures:
        _write_images(out, items, items_gt, seed, image_size)

    n_desc = int((items["description"] != "").sum())
    (out / "README.md").write_text(
        _bundle_readme(n_users, n_items, len(inter), n_img, n_desc, seed, image_size, pictures), encoding="utf-8"
    )
    seg_counts = users_gt["segment"].value_counts().to_dict()
    (out / "ground_truth" / "README.md").write_text(_ground_truth_readme(seg_counts), encoding="utf-8")
    return out


def demo_ground_truth(bundle_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read ``(users, items)`` ground-truth frames of a demo bundle (ids as strings)."""
    gt = Path(bundle_dir) / "ground_truth"
    if not (gt / "users.csv").is_file() or not (gt / "items.csv").is_file():
        raise FileNotFoundError(f"{bundle_dir} has no ground_truth/users.csv and items.csv: not a demo bundle?")
    users = pd.read_csv(gt / "users.csv", dtype={"user_id": str, "segment": str, "pref_brands": str})
    items = pd.read_csv(gt / "items.csv", dtype={"item_id": str, "brand": str})
    return users, items
