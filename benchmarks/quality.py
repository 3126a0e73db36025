"""Quality under protocol P1 on a real bundle (movielens-small-mm by default): our models, their ablations,
peer libraries, cold items and new users.

One process, one split (P1, seed 2026), one evaluator (ours: full ranking, train items masked, valid
items masked at test time). Prints:
  1. the warm table: test Recall@10/20, NDCG@10/20, valid NDCG@20, fit seconds, for every model and peer;
  2. the ratio of the fusion model's test NDCG@20 to the best peer's;
  3. an ablation table (each modality removed in turn; the mean, item-gate and concat fusions);
  4. the cold-start table (10 % of items held out; Recall/NDCG@20 ranking only those items), with
     Cornac's VBPR fed the text *and* image features;
  5. new users with 1, 2, 3 liked items (the new-user path) against MostPop;
  6. speed: items scored per second (full-catalogue ranking) and the fusion fit time relative to
     EASE's and Cornac's VBPR on the same machine in the same run.

EASE's L2 (ours, and the fusion model's behaviour expert) is chosen on valid NDCG@20.

    python benchmarks/quality.py [--dataset NAME] [--workspace DIR] [--quick] [--skip-peers] [--json]

The workspace gets the dataset imported and its features extracted once (cached afterwards; the
first extraction takes several minutes on a CPU). Peers need ``pip install -r requirements-bench.txt``.
Model selection is on valid NDCG@20 only; the test split is read once per model, for the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from recsys.evaluate import evaluate_ranking  # noqa: E402
from recsys.features.extract import extract_item_features  # noqa: E402
from recsys.models import get_model  # noqa: E402
from recsys.train.data import prepare_data  # noqa: E402
from recsys.workspace import Workspace  # noqa: E402

SHARED = REPO_ROOT.parent / "shared" / "datasets"
DATASET = "movielens-small-mm"
OURS = ("mostpop", "itemknn", "bpr", "lightgcn", "ease", "content")


def load(workspace: Workspace, dataset: str = DATASET, bundle_dir: Path | None = None) -> tuple[Any, Any]:
    if not workspace.has_dataset(dataset):
        result = workspace.import_bundle(bundle_dir or SHARED / dataset, name=dataset)
        if not result.ok:
            raise SystemExit(result.report.format())
    bundle = workspace.load_dataset(dataset)
    started = time.perf_counter()
    features = extract_item_features(bundle.items, bundle.schema.items, bundle.root, workspace.features_dir)
    print(
        f"features ready in {time.perf_counter() - started:.1f} s (cached: text "
        f"{features.timings.get('text_cached')}, image {features.timings.get('image_cached')})",
        flush=True,
    )
    return bundle, features


def evaluate(model_score, prepared) -> dict[str, float]:
    data = prepared.data
    test = evaluate_ranking(model_score, data.train, prepared.test, exclude=prepared.valid, ks=(10, 20))
    valid = evaluate_ranking(model_score, data.train, prepared.valid, ks=(20,))
    return {**{k: test[k] for k in ("recall@10", "recall@20", "ndcg@10", "ndcg@20")}, "valid_ndcg@20": valid["ndcg@20"]}


def per_user_test_ndcg(model_score, prepared, k: int = 20) -> np.ndarray:
    """NDCG@k of every user with test items (same masking as :func:`evaluate`: train and valid hidden)."""
    from recsys.evaluate import per_user_metric

    return per_user_metric(model_score, prepared.data.train, prepared.test, "ndcg", k, exclude=prepared.valid)


def paired_ratio_interval(ours: np.ndarray, theirs: np.ndarray, resamples: int = 2000, seed: int = 0) -> dict:
    """95 % paired bootstrap interval (users resampled) of mean(ours) / mean(theirs), and the share of
    resamples in which ours is ahead: how much of a ratio is the test split's luck."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(ours), size=(resamples, len(ours)))
    ratios = ours[index].mean(axis=1) / np.maximum(theirs[index].mean(axis=1), 1e-12)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return {"low": float(low), "high": float(high), "ours_ahead": float((ratios > 1).mean()), "users": len(ours)}


def fit_ours(name: str, prepared, **config) -> tuple[Any, float]:
    model = get_model(name, **config)
    started = time.perf_counter()
    model.fit(prepared.data)
    return model, time.perf_counter() - started


def _vbpr_peer():
    from peers import CornacRunner

    class VBPRPeer(CornacRunner):
        """Cornac's VBPR fed the same EfficientNet-Lite0 image features (zeros where an item has no poster)."""

        def __init__(self, image: np.ndarray, **config: Any):
            super().__init__("cornac-vbpr", config)
            self.image = image

        def fit(self, train: sp.csr_matrix) -> VBPRPeer:
            import cornac
            from cornac.data import ImageModality
            from cornac.eval_methods import BaseMethod

            coo = train.tocoo()
            triplets = list(zip(coo.row.astype(str), coo.col.astype(str), np.ones(coo.nnz)))
            self.n_items = train.shape[1]
            modality = ImageModality(features=self.image, ids=[str(i) for i in range(self.n_items)], normalized=True)
            method = BaseMethod.from_splits(
                train_data=triplets,
                test_data=triplets[:1],
                item_image=modality,
                exclude_unknowns=True,
                verbose=False,
                seed=self.seed,
            )
            self.model = cornac.models.VBPR(verbose=False, seed=self.seed, **self.config)
            started = time.perf_counter()
            self.model.fit(method.train_set)
            self.fit_seconds = time.perf_counter() - started
            # the id maps the inherited score() needs: our user -> Cornac's, Cornac's item -> ours
            dataset = method.train_set
            self.user_rows = np.full(train.shape[0], -1, dtype=np.int64)
            for raw, idx in dataset.uid_map.items():
                self.user_rows[int(raw)] = idx
            self.item_cols = np.empty(len(dataset.iid_map), dtype=np.int64)
            for raw, idx in dataset.iid_map.items():
                self.item_cols[idx] = int(raw)
            return self

        def score(self, users: np.ndarray) -> np.ndarray:
            """Known items as Cornac scores them; items Cornac never saw from their picture alone.

            VBPR's score is beta_i + gamma_u.gamma_i + theta_u.(E f_i) + beta'.f_i; an unseen item has
            no beta_i or gamma_i, so it gets the visual terms, with Cornac's min-max normalisation.
            """
            out = super().score(users)
            unseen = np.setdiff1d(np.arange(self.n_items), self.item_cols)
            if len(unseen):
                features = self.image.astype(np.float64)
                features = (features - features.min()) / (features.max() - features.min() + 1e-10)
                visual = features[unseen] @ self.model.emb_matrix  # [unseen, k2]
                bias = (features[unseen] @ self.model.beta_prime).ravel()
                for row, user in enumerate(np.asarray(users, dtype=np.int64)):
                    cu = self.user_rows[user]
                    if cu >= 0:
                        out[row, unseen] = bias + visual @ self.model.theta_user[cu]
            return out

    return VBPRPeer


def content_features(features, catalogue, item_ids) -> np.ndarray:
    """Text and image features side by side (zeros where an item lacks one), rows in ``item_ids`` order."""
    rows = {v: i for i, v in enumerate(catalogue)}
    order = [rows[i] for i in item_ids]
    blocks = []
    for name in ("text", "image"):
        matrix = getattr(features, name, None)
        if matrix is not None:
            mask = getattr(features, f"{name}_mask")
            blocks.append(np.where(mask[:, None], matrix, 0.0)[order])
    return np.concatenate(blocks, axis=1).astype(np.float32)


def cold_start_table(bundle, features, catalogue, with_peers: bool) -> dict[str, dict[str, Any]]:
    """P1 cold start: 10 % of items held out of training, ranked only among themselves."""
    cold: dict[str, dict[str, Any]] = {}
    cold_data = prepare_data(bundle.interactions, protocol="cold", item_features=features, catalogue_ids=catalogue)
    for name in ("fusion", "content", "mostpop"):
        model, seconds = fit_ours(name, cold_data)
        result = evaluate_ranking(
            model.score, cold_data.data.train, cold_data.cold_test, ks=(20,), candidate_items=cold_data.cold_items
        )
        cold[name] = {"recall@20": result["recall@20"], "ndcg@20": result["ndcg@20"], "fit_s": seconds}
        print("cold", name, cold[name], flush=True)
    if with_peers:
        both = content_features(features, catalogue, cold_data.data.item_ids)
        vbpr = _vbpr_peer()(
            both, k=10, k2=10, n_epochs=20, batch_size=256, learning_rate=0.005, lambda_w=0.01, lambda_b=0.01
        ).fit(cold_data.data.train)
        result = evaluate_ranking(
            vbpr.score, cold_data.data.train, cold_data.cold_test, ks=(20,), candidate_items=cold_data.cold_items
        )
        cold["cornac-vbpr (text+image)"] = {
            "recall@20": result["recall@20"],
            "ndcg@20": result["ndcg@20"],
            "fit_s": vbpr.fit_seconds,
        }
        print("cold cornac-vbpr (text+image)", cold["cornac-vbpr (text+image)"], flush=True)
    return cold


def new_user_table(models: dict[str, Any], prepared) -> dict[str, dict[str, float]]:
    """Users reduced to 1, 2, 3 random liked items, ranked through each model's new-user path."""
    from recsys.explain import evaluate_short_histories

    out: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        rows = evaluate_short_histories(
            model, prepared.data.train, prepared.test, exclude=prepared.valid, lengths=(1, 2, 3), seed=2026
        )
        out[name] = {str(r["history_items"]): r["ndcg@20"] for r in rows}
        print("new users", name, out[name], flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=DATASET, help="a bundle under shared/datasets (default: %(default)s)")
    parser.add_argument(
        "--bundle", type=Path, default=None, help="a bundle directory anywhere (e.g. benchmarks/sparse_shop.py's)"
    )
    parser.add_argument("--workspace", default=str(REPO_ROOT / "workspace"))
    parser.add_argument("--quick", action="store_true", help="fewer models: fusion, ease, mostpop, peers' EASE")
    parser.add_argument("--skip-peers", action="store_true", help="do not run Cornac")
    parser.add_argument("--skip-cold", action="store_true", help="do not run the cold-start protocol")
    parser.add_argument("--skip-ablation", action="store_true")
    parser.add_argument("--only-cold", action="store_true", help="only the cold-start table")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    workspace = Workspace(args.workspace)
    if args.bundle is not None:
        args.dataset = args.bundle.name
    bundle, features = load(workspace, args.dataset, args.bundle)
    catalogue = bundle.items["item_id"].to_numpy(str)
    if args.only_cold:
        cold = cold_start_table(bundle, features, catalogue, not args.skip_peers)
        print("\ncold start (10 % of items held out; ranking only those)")
        for name, r in cold.items():
            print(f"{name:<28} recall@20 {r['recall@20']:.4f}  ndcg@20 {r['ndcg@20']:.4f}")
        if args.json:
            print(json.dumps({"cold_start": cold}))
        return 0
    prepared = prepare_data(bundle.interactions, item_features=features, catalogue_ids=catalogue)
    print(f"P1: {prepared.summary}", flush=True)
    rows: dict[str, dict[str, Any]] = {}
    speed: dict[str, Any] = {}

    fusion, seconds = fit_ours("fusion", prepared)
    started = time.perf_counter()
    scores = fusion.score(np.arange(prepared.data.n_users))
    speed["fusion_items_scored_per_s"] = scores.size / (time.perf_counter() - started)
    rows["fusion"] = {
        **evaluate(fusion.score, prepared),
        "fit_s": seconds,
        "best_epoch": fusion.history["best_epoch"],
        "ease_l2": fusion.chosen_l2,
        "popularity_floor": (fusion.history.get("calibration") or {}).get("popularity_floor"),
        "attribute_weights": fusion.history.get("attribute_weights"),
    }
    print("fusion", rows["fusion"], flush=True)

    fitted = {}
    for name in ("mostpop", "ease") if args.quick else OURS:
        model, seconds = fit_ours(name, prepared)
        fitted[name] = model
        rows[name] = {**evaluate(model.score, prepared), "fit_s": seconds}
        if name == "ease":
            rows[name]["l2"] = model.chosen_l2
        print(name, rows[name], flush=True)
    speed["fusion_fit_over_ease_fit"] = rows["fusion"]["fit_s"] / rows["ease"]["fit_s"]
    ratio_to_ease = rows["fusion"]["ndcg@20"] / rows["ease"]["ndcg@20"]
    ratio_interval = paired_ratio_interval(
        per_user_test_ndcg(fusion.score, prepared), per_user_test_ndcg(fitted["ease"].score, prepared)
    )

    peers: dict[str, dict[str, Any]] = {}
    if not args.skip_peers:
        from peers import CORNAC_CONFIG, CornacRunner

        for name in ("cornac-ease",) if args.quick else ("cornac-ease", "cornac-bpr"):
            runner = CornacRunner(name, CORNAC_CONFIG[name]).fit(prepared.data.train)
            peers[name] = {**evaluate(runner.score, prepared), "fit_s": runner.fit_seconds}
            print(name, peers[name], flush=True)
        both = content_features(features, catalogue, prepared.data.item_ids)
        vbpr = _vbpr_peer()(
            both, k=10, k2=10, n_epochs=20, batch_size=256, learning_rate=0.005, lambda_w=0.01, lambda_b=0.01
        ).fit(prepared.data.train)
        peers["cornac-vbpr (text+image)"] = {**evaluate(vbpr.score, prepared), "fit_s": vbpr.fit_seconds}
        speed["fusion_fit_over_vbpr_fit"] = rows["fusion"]["fit_s"] / vbpr.fit_seconds
        print("cornac-vbpr", peers["cornac-vbpr (text+image)"], flush=True)
    our_lightgcn = {"lightgcn (ours)": rows["lightgcn"]} if "lightgcn" in rows else {}
    peer_table = {**peers, **our_lightgcn}
    best_peer = max(peer_table, key=lambda n: peer_table[n]["ndcg@20"]) if peer_table else None
    ratio = rows["fusion"]["ndcg@20"] / peer_table[best_peer]["ndcg@20"] if best_peer else None

    ablation: dict[str, dict[str, Any]] = {}
    if not args.skip_ablation:
        for removed in fusion.modalities:
            kept = [m for m in fusion.modalities if m != removed]
            model, seconds = fit_ours("fusion", prepared, modalities=kept)
            ablation[f"without {removed}"] = {**evaluate(model.score, prepared), "fit_s": seconds}
            print("ablation", removed, ablation[f"without {removed}"], flush=True)
        for variant in ("mean", "item_gate", "concat"):
            model, seconds = fit_ours("fusion", prepared, fusion=variant)
            ablation[f"fusion={variant}"] = {**evaluate(model.score, prepared), "fit_s": seconds}
            print("ablation", variant, ablation[f"fusion={variant}"], flush=True)

    new_users = new_user_table({"fusion": fusion, "mostpop": fitted["mostpop"], "ease": fitted["ease"]}, prepared)
    cold = {} if args.skip_cold else cold_start_table(bundle, features, catalogue, not args.skip_peers)

    def table(title: str, entries: dict[str, dict[str, Any]]) -> None:
        print(f"\n{title}")
        print(f"{'model':<28} {'R@10':>7} {'R@20':>7} {'N@10':>7} {'N@20':>7} {'valid N@20':>10} {'fit s':>8}")
        for name, r in entries.items():
            print(
                f"{name:<28} {r['recall@10']:>7.4f} {r['recall@20']:>7.4f} {r['ndcg@10']:>7.4f} "
                f"{r['ndcg@20']:>7.4f} {r['valid_ndcg@20']:>10.4f} {r['fit_s']:>8.1f}"
            )

    table(f"P1 test, {args.dataset} (ours)", rows)
    if peers:
        table("peers (same split, same evaluator)", peers)
    if ablation:
        table("fusion ablation", {"all modalities (attention)": rows["fusion"], **ablation})
    print("\nnew users (NDCG@20 with 1 / 2 / 3 liked items):")
    for name, r in new_users.items():
        print(f"{name:<28} " + " / ".join(f"{r[k]:.4f}" for k in ("1", "2", "3")))
    if cold:
        print("\ncold start (10 % of items held out; ranking only those)")
        for name, r in cold.items():
            print(f"{name:<28} recall@20 {r['recall@20']:.4f}  ndcg@20 {r['ndcg@20']:.4f}")
    print(
        f"\nfusion test NDCG@20 / EASE (L2 {rows['ease'].get('l2')}, chosen on valid) = {ratio_to_ease:.3f} "
        f"(95 % paired bootstrap over {ratio_interval['users']} test users: {ratio_interval['low']:.3f}-"
        f"{ratio_interval['high']:.3f}; fusion ahead in {ratio_interval['ours_ahead']:.0%} of resamples)"
    )
    if ratio is not None:
        print(f"fusion test NDCG@20 / best peer ({best_peer}) = {ratio:.3f}")
    print("speed:", {k: round(v, 2) for k, v in speed.items()})
    if args.json:
        print(
            json.dumps(
                {
                    "ours": rows,
                    "peers": peers,
                    "ablation": ablation,
                    "cold_start": cold,
                    "speed": speed,
                    "new_users": new_users,
                    "ratio_to_ease": ratio_to_ease,
                    "ratio_to_ease_interval": ratio_interval,
                    "best_peer": best_peer,
                    "ratio_to_best_peer": ratio,
                    "split": prepared.summary,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
