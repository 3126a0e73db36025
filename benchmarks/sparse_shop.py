"""A sparse shop catalogue, written as a bundle, that looks like a small web shop's export rather than the demo.

What makes it unlike the demo (and like the data users bring):

* codes, not words: item ids ``SKU-004213``, category codes ``C17``, a ``brand`` column, prices with two
  decimals, a pipe-separated ``tags`` column and a ``users.csv`` with an age band;
* sparse: history lengths are log-normal with a median of about four purchases, many users have one or two;
* pictures for about 70 % of the items (flat product shots: the item's colour on a light background with
  the category's shape), a few of them listed in ``items.csv`` but missing from the bundle;
* a taste model: each user has one or two favourite categories and a favourite colour; a purchase is, with
  probability ``taste``, an item of a favourite category (more often in the favourite colour), otherwise a
  bestseller (Zipf popularity). ``--taste 0`` writes a shop where only popularity matters, the case where
  no personal model should beat MostPop and the product has to say so.

    python benchmarks/sparse_shop.py OUT_DIR [--items 1500] [--users 3000] [--taste 0.6] [--seed 7]

Then, e.g., ``python benchmarks/quality.py --bundle OUT_DIR --workspace /tmp/shop --quick --skip-peers``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CATEGORIES = {
    "C10": ("mug", "ceramic", "circle"),
    "C11": ("t-shirt", "cotton", "shirt"),
    "C12": ("notebook", "paper", "box"),
    "C13": ("desk lamp", "metal", "lamp"),
    "C14": ("backpack", "nylon", "bag"),
    "C15": ("sneaker", "canvas", "shoe"),
    "C16": ("scented candle", "wax", "candle"),
    "C17": ("headphones", "plastic", "arc"),
    "C18": ("water bottle", "steel", "bottle"),
    "C19": ("phone case", "silicone", "box"),
    "C20": ("wool scarf", "wool", "scarf"),
    "C21": ("board game", "cardboard", "box"),
}
BRANDS = ["Nordic", "Acme", "Luma", "Oakline", "Brisk", "Verde", "Halden", "Kiro", "Moss & Co", "Tessel"]
ADJECTIVES = ["classic", "minimal", "bold", "soft", "vintage", "eco", "compact", "deluxe", "travel", "studio"]
COLOURS = {
    "red": (200, 40, 40),
    "blue": (40, 60, 200),
    "green": (40, 150, 70),
    "black": (25, 25, 25),
    "white": (240, 240, 240),
    "yellow": (235, 200, 40),
    "pink": (235, 120, 170),
    "grey": (130, 130, 130),
}
TAGS = ["sale", "new", "gift", "eco", "premium", "summer", "winter", "bundle"]


def _draw(shape: str, colour: tuple[int, int, int], rng: np.random.Generator, size: int = 96) -> Image.Image:
    image = Image.new("RGB", (size, size), (246, 244, 240))
    draw = ImageDraw.Draw(image)
    j = lambda v: int(v + rng.integers(-6, 7))  # noqa: E731 - a few pixels of jitter per shot
    s = size
    if shape == "circle":
        draw.ellipse((j(s * 0.2), j(s * 0.2), j(s * 0.8), j(s * 0.8)), fill=colour)
    elif shape == "shirt":
        draw.polygon([(s * 0.2, s * 0.3), (s * 0.4, s * 0.2), (s * 0.6, s * 0.2), (s * 0.8, s * 0.3),
                      (s * 0.7, s * 0.45), (s * 0.7, s * 0.85), (s * 0.3, s * 0.85), (s * 0.3, s * 0.45)], fill=colour)  # fmt: skip
    elif shape == "lamp":
        draw.polygon([(s * 0.3, s * 0.2), (s * 0.7, s * 0.2), (s * 0.8, s * 0.45), (s * 0.2, s * 0.45)], fill=colour)
        draw.rectangle((s * 0.47, s * 0.45, s * 0.53, s * 0.8), fill=(90, 90, 90))
        draw.rectangle((s * 0.3, s * 0.8, s * 0.7, s * 0.86), fill=(90, 90, 90))
    elif shape == "bag":
        draw.rounded_rectangle((j(s * 0.25), s * 0.3, j(s * 0.75), s * 0.85), radius=12, fill=colour)
        draw.arc((s * 0.35, s * 0.12, s * 0.65, s * 0.42), 180, 360, fill=colour, width=5)
    elif shape == "shoe":
        draw.polygon([(s * 0.1, s * 0.7), (s * 0.15, s * 0.45), (s * 0.45, s * 0.45), (s * 0.9, s * 0.65),
                      (s * 0.9, s * 0.75), (s * 0.1, s * 0.75)], fill=colour)  # fmt: skip
    elif shape == "candle":
        draw.rectangle((j(s * 0.35), s * 0.35, j(s * 0.65), s * 0.85), fill=colour)
        draw.ellipse((s * 0.46, s * 0.2, s * 0.54, s * 0.33), fill=(250, 170, 30))
    elif shape == "arc":
        draw.arc((s * 0.2, s * 0.15, s * 0.8, s * 0.8), 180, 360, fill=colour, width=8)
        draw.rectangle((s * 0.15, s * 0.45, s * 0.3, s * 0.7), fill=colour)
        draw.rectangle((s * 0.7, s * 0.45, s * 0.85, s * 0.7), fill=colour)
    elif shape == "bottle":
        draw.rounded_rectangle((s * 0.35, s * 0.3, s * 0.65, s * 0.88), radius=8, fill=colour)
        draw.rectangle((s * 0.43, s * 0.15, s * 0.57, s * 0.3), fill=colour)
    elif shape == "scarf":
        draw.rectangle((s * 0.15, s * 0.35, s * 0.85, s * 0.5), fill=colour)
        draw.rectangle((s * 0.6, s * 0.5, s * 0.72, s * 0.9), fill=colour)
    else:  # box
        draw.rectangle((j(s * 0.22), j(s * 0.25), j(s * 0.78), j(s * 0.8)), fill=colour)
    return image


def make_shop(
    out: Path, n_items: int = 1500, n_users: int = 3000, taste: float = 0.6, seed: int = 7
) -> dict[str, float]:
    """Write the bundle into ``out`` (items.csv, users.csv, interactions.csv, images/); return its counts."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    codes = list(CATEGORIES)
    colours = list(COLOURS)
    ids = [f"SKU-{n:06d}" for n in rng.choice(np.arange(1000, 999_999), n_items, replace=False)]
    category = rng.integers(0, len(codes), n_items)
    colour = rng.integers(0, len(colours), n_items)
    rows, missing = [], 0
    for i, item_id in enumerate(ids):
        noun, material, shape = CATEGORIES[codes[category[i]]]
        brand, adjective = BRANDS[rng.integers(len(BRANDS))], ADJECTIVES[rng.integers(len(ADJECTIVES))]
        title = f"{brand} {adjective} {colours[colour[i]]} {noun}"
        description = (
            f"{adjective.capitalize()} {noun} in {colours[colour[i]]} {material} by {brand}. "
            f"{rng.choice(['Ships in 2 days.', 'Limited stock.', 'Customer favourite.', 'New this season.'])}"
        )
        picture = ""
        if rng.random() < 0.7:
            picture = f"images/{item_id.lower()}.jpg"
            if rng.random() < 0.02:
                missing += 1  # listed, never written: a broken link as real exports have
            else:
                _draw(shape, COLOURS[colours[colour[i]]], rng).save(out / picture, quality=90)
        tags = "|".join(rng.choice(TAGS, int(rng.integers(0, 3)), replace=False))
        rows.append(
            [item_id, title, description, codes[category[i]], brand, f"{rng.uniform(4, 180):.2f}", tags, picture]
        )
    with open(out / "items.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "title", "description", "category", "brand", "price", "tags", "picture"])
        writer.writerows(rows)

    user_ids = [f"U{n:05d}" for n in range(1, n_users + 1)]
    with open(out / "users.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "age_band"])
        for user in user_ids:
            writer.writerow([user, rng.choice(["18-24", "25-34", "35-44", "45-54", "55+"])])

    popularity = 1.0 / (1.0 + rng.permutation(n_items)) ** 0.9  # Zipf over a random order of the items
    popularity /= popularity.sum()
    lengths = np.clip(np.round(rng.lognormal(np.log(4.0), 0.9, n_users)), 1, 80).astype(int)
    interactions, start = [], 1_700_000_000
    for u, user in enumerate(user_ids):
        favourites = rng.choice(len(codes), int(rng.integers(1, 3)), replace=False)
        favourite_colour = rng.integers(len(colours))
        liked = np.isin(category, favourites)
        weight_taste = popularity * liked * np.where(colour == favourite_colour, 4.0, 1.0) + 1e-12
        weight_taste /= weight_taste.sum()
        chosen: set[int] = set()
        for _ in range(lengths[u] * 3):  # a few redraws for repeats
            if len(chosen) >= lengths[u]:
                break
            weights = weight_taste if rng.random() < taste else popularity
            chosen.add(int(rng.choice(n_items, p=weights)))
        for item in chosen:
            interactions.append([user, ids[item], int(rng.integers(3, 6)), start + int(rng.integers(0, 120 * 86_400))])
    interactions.sort(key=lambda row: row[3])
    with open(out / "interactions.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "item_id", "rating", "timestamp"])
        writer.writerows(interactions)
    position = {user: u for u, user in enumerate(user_ids)}
    per_user = np.bincount([position[r[0]] for r in interactions], minlength=n_users)
    return {
        "items": n_items,
        "users": n_users,
        "interactions": len(interactions),
        "median_per_user": float(np.median(per_user[per_user > 0])),
        "pictures_listed": sum(1 for r in rows if r[-1]),
        "pictures_missing": missing,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--taste", type=float, default=0.6, help="share of purchases that follow the user's taste")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    print(make_shop(args.out, args.items, args.users, args.taste, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
