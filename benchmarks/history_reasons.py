"""Does "Why this?" name the history items behind a recommendation? Per history length, on a trained run.

For up to ``--users`` users of each history length (1-3, 4-5, 6-9, 10+ training items), their top-``--k``
recommendations are explained by leave-one-out (``recsys.explain.history_contributions``, what the
explanations list). The table gives the share of (user, item) pairs for which no history item raises the
score (the explanation then names none), and how often the item that raises it most is the history item
most similar to the recommendation in the model's item space (chance: one over the history's length).

    python benchmarks/history_reasons.py --workspace DIR --run RUN_ID [--users 40] [--k 5] [--json]

With ``--json`` the last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from recsys.explain.explainer import history_contributions  # noqa: E402
from recsys.train.records import load_run_model  # noqa: E402
from recsys.workspace import Workspace  # noqa: E402

GROUPS = (("2-3", 2, 3), ("4-5", 4, 5), ("6-9", 6, 9), ("10+", 10, 10**9))


def measure(model, users_per_group: int, k: int, seed: int = 0) -> dict[str, dict[str, float]]:
    seen = model.seen
    lengths = np.diff(seen.indptr)
    vectors = model.item_embeddings()
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, float]] = {}
    for name, low, high in GROUPS:
        users = np.flatnonzero((lengths >= low) & (lengths <= high))
        users = rng.permutation(users)[:users_per_group]
        pairs = none = agrees = 0
        chance = []
        for user in users:
            history = seen.indices[seen.indptr[user] : seen.indptr[user + 1]].astype(np.int64)
            scores = model.score(np.array([user]))[0].astype(np.float64)
            scores[history] = -np.inf
            for item in np.argsort(-scores)[:k]:
                contributions, _, _ = history_contributions(model, int(user), int(item), history)
                finite = np.where(np.isfinite(contributions), contributions, -np.inf)
                none += int(finite.max() <= 0)
                agrees += int(np.argmax(finite) == np.argmax(vectors[history] @ vectors[item]))
                chance.append(1.0 / len(history))
                pairs += 1
        if pairs:
            out[name] = {
                "users": int(len(users)),
                "pairs": pairs,
                "names_none": none / pairs,
                "leading_is_most_similar": agrees / pairs,
                "chance": float(np.mean(chance)),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--run", required=True, help="run id in the workspace")
    parser.add_argument("--users", type=int, default=40, help="users per history-length group")
    parser.add_argument("--k", type=int, default=5, help="recommendations per user")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    run_dir = Workspace(args.workspace).run_path(args.run)
    model = load_run_model(run_dir)
    result = measure(model, args.users, args.k)
    print(f"{'history':>8} {'pairs':>6} {'names none':>11} {'leading = most similar':>23} {'chance':>7}")
    for name, row in result.items():
        print(
            f"{name:>8} {row['pairs']:>6} {row['names_none']:>11.1%} {row['leading_is_most_similar']:>23.1%} "
            f"{row['chance']:>7.1%}"
        )
    if args.json:
        print(json.dumps({"run": args.run, "groups": result}))


if __name__ == "__main__":
    main()
