"""Importing a shop's own export: Shopify's layout against the same catalogue in the studio's plain layout.

Generates one catalogue twice, in a temporary folder:

* ``shopify``  items.csv as Shopify's products export (one row per variant: "Handle" repeated, title, description
               and vendor on a product's first row only, sizes in "Option1 Value", no SKUs) and interactions.csv
               as its orders export naming each line "<title> - <size>" with its price and vendor; 1 product in 4
               shares its title with another (told apart by price and vendor).
* ``plain``    the same products one row each (``item_id``) and the same lines (``user_id``, ``item_id``, time).

and times ``load_bundle`` on each, in the same process, alternating, best of ``--repeats``; checks that both read
the same (user, item) pairs. Prints a table and one JSON line: seconds each and the ratio shopify / plain.

    python benchmarks/shop_export.py                              # 20,000 products, 600,000 order lines
    python benchmarks/shop_export.py --products 2000 --lines 50000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys.data.bundle import load_bundle

SIZES = ["S", "M", "L"]
COLOURS = ["Red", "Blue", "Black", "Olive"]


def make_exports(folder: Path, products: int, lines: int, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    shared = products // 4  # titles 0..shared-1 are used twice
    titles = [f"Product {k % (products - shared)} - {COLOURS[k % 4]}" for k in range(products)]
    prices = [f"{10 + k % 97}.{k % 100:02d}" for k in range(products)]
    vendors = [f"Vendor {k % 300}" for k in range(products)]
    variant_rows = []
    for k in range(products):
        for j, size in enumerate(SIZES):
            first = j == 0
            variant_rows.append(
                {
                    "Handle": f"product-{k}",
                    "Title": titles[k] if first else "",
                    "Body (HTML)": f"<p>Made of {COLOURS[k % 4].lower()} cotton, style {k % 40}.</p>" if first else "",
                    "Vendor": vendors[k] if first else "",
                    "Option1 Name": "Size" if first else "",
                    "Option1 Value": size,
                    "Variant SKU": "",
                    "Variant Price": prices[k],
                    "Image Src": "",
                    "Status": "active" if first else "",
                }
            )
    bought = rng.integers(0, products, lines)
    sizes = rng.choice(SIZES, lines)
    users = rng.integers(0, max(lines // 8, 1), lines)
    times = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 30_000_000, lines), unit="s")
    created = times.strftime("%Y-%m-%d %H:%M:%S +0000")
    orders = pd.DataFrame(
        {
            "Name": [f"#{1000 + i // 2}" for i in range(lines)],
            "Email": [f"customer{u}@example.com" for u in users],
            "Created at": created,
            "Lineitem quantity": "1",
            "Lineitem name": [f"{titles[p]} - {s}" for p, s in zip(bought, sizes)],
            "Lineitem price": [prices[p] for p in bought],
            "Lineitem sku": "",
            "Vendor": [vendors[p] for p in bought],
        }
    )
    shopify, plain = folder / "shopify", folder / "plain"
    shopify.mkdir()
    plain.mkdir()
    pd.DataFrame(variant_rows).to_csv(shopify / "items.csv", index=False)
    orders.to_csv(shopify / "interactions.csv", index=False)
    pd.DataFrame(
        {
            "item_id": [f"product-{k}" for k in range(products)],
            "title": titles,
            "description": [
                f"<p>Made of {COLOURS[k % 4].lower()} cotton, style {k % 40}.</p>" for k in range(products)
            ],
            "vendor": vendors,
            "sizes": "|".join(SIZES),
            "price": prices,
        }
    ).to_csv(plain / "items.csv", index=False)
    pd.DataFrame(
        {"user_id": orders["Email"], "item_id": [f"product-{p}" for p in bought], "timestamp": created}
    ).to_csv(plain / "interactions.csv", index=False)
    return shopify, plain


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--lines", type=int, default=600_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        shopify, plain = make_exports(Path(tmp), args.products, args.lines)
        seconds: dict[str, list[float]] = {"shopify": [], "plain": []}
        pairs: dict[str, set[tuple[str, str]]] = {}
        for _ in range(args.repeats):
            for name, folder in (("shopify", shopify), ("plain", plain)):
                start = time.perf_counter()
                result = load_bundle(folder, check_images=False)
                seconds[name].append(time.perf_counter() - start)
                if not result.ok:
                    print(result.report.format(), file=sys.stderr)
                    return 1
                frame = result.bundle.interactions
                pairs[name] = set(zip(frame["user_id"].astype(str), frame["item_id"].astype(str)))
    best = {name: min(values) for name, values in seconds.items()}
    same = pairs["shopify"] == pairs["plain"]
    print(f"{args.products:,} products ({3 * args.products:,} variant rows), {args.lines:,} order lines")
    print(f"{'layout':10} {'load s':>8}")
    for name, value in best.items():
        print(f"{name:10} {value:8.1f}")
    print(f"shopify / plain: {best['shopify'] / best['plain']:.2f}x; same (user, item) pairs: {same}")
    print(
        json.dumps(
            {
                "benchmark": "shop_export",
                "products": args.products,
                "order_lines": args.lines,
                "shopify_s": round(best["shopify"], 2),
                "plain_s": round(best["plain"], 2),
                "ratio": round(best["shopify"] / best["plain"], 2),
                "same_pairs": same,
            }
        )
    )
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
