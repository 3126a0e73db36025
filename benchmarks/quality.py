"""Quality under protocol P1 on movielens-small-mm: our models, their ablations, and peer libraries.

One process, one split (P1, seed 2026), one evaluator (ours: full ranking, train items masked, valid
items masked at test time). Prints:
  1. the warm table: test Recall@10/20, NDCG@10/20, valid NDCG@20, fit seconds, for every model and peer;
  2. the ratio of the fusion model's test NDCG@20 to the best peer's;
  3. a modality ablation table (each modality removed in turn);
  4. the cold-start table (10 % of items held out; Recall/NDCG@20 ranking only those items);
  5. speed: items scored per second (full-catalogue ranking), training examples per second, and the
     fusion fit time relative to Cornac's VBPR on the same machine in the same run.

    python benchmarks/quality.py [--workspace DIR] [--quick] [--skip-peers] [--json]

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


def load(workspace: Workspace) -> tuple[Any, Any]:
    if not workspace.has_dataset(DATASET):
        result = workspace.import_bundle(SHARED / DATASET, name=DATASET)
        if not result.ok:
            raise SystemExit(result.report.format())
    bundle = workspace.load_dataset(DATASET)
    started = time.perf_counter()
    features = extract_item_features(bundle.items, bundle.schema.items, bundle.root, workspace.features_dir)
    print(f"features ready in {time.perf_counter() - started:.1f} s (cached: text "
          f"{features.timings.get('text_cached')}, image {features.timings.get('image_cached')})", flush=True)
    return bundle, features


def evaluate(model_score, prepared) -> dict[str, float]:
    data = prepared.data
    test = evaluate_ranking(model_score, data.train, prepared.test, exclude=prepared.valid, ks=(10, 20))
    valid = evaluate_ranking(model_score, data.train, prepared.valid, ks=(20,))
    return {**{k: test[k] for k in ("recall@10", "recall@20", "ndcg@10", "ndcg@20")}, "valid_ndcg@20": valid["ndcg@20"]}


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

        def fit(self, train: sp.csr_matrix) -> "VBPRPeer":
            import cornac
            from cornac.data import ImageModality
            from cornac.eval_methods import BaseMethod

            coo = train.tocoo()
            triplets = list(zip(coo.row.astype(str), coo.col.astype(str), np.ones(coo.nnz)))
            self.n_items = train.shape[1]
            modality = ImageModality(features=self.image, ids=[str(i) for i in range(self.n_items)], normalized=True)
            method = BaseMethod.from_splits(train_data=triplets, test_data=triplets[:1], item_image=modality,
                                            exclude_unknowns=True, verbose=False, seed=self.seed)
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


def cold_start_table(bundle, features, catalogue, chosen: float, with_peers: bool) -> dict[str, dict[str, Any]]:
    """P1 cold start: 10 % of items held out of training, ranked only among themselves."""
    cold: dict[str, dict[str, Any]] = {}
    cold_data = prepare_data(bundle.interactions, protocol="cold", item_features=features, catalogue_ids=catalogue)
    for name in ("fusion", "content", "mostpop"):
        model, seconds = fit_ours(name, cold_data, **({"content_value_init": chosen} if name == "fusion" else {}))
        result = evaluate_ranking(model.score, cold_data.data.train, cold_data.cold_test, ks=(20,),
                                  candidate_items=cold_data.cold_items)
        cold[name] = {"recall@20": result["recall@20"], "ndcg@20": result["ndcg@20"], "fit_s": seconds}
        print("cold", name, cold[name], flush=True)
    if with_peers:
        image = np.where(features.image_mask[:, None], features.image, 0.0)
        item_rows = {v: i for i, v in enumerate(catalogue)}
        cold_image = image[[item_rows[i] for i in cold_data.data.item_ids]].astype(np.float32)
        vbpr = _vbpr_peer()(cold_image, k=10, k2=10, n_epochs=20, batch_size=256, learning_rate=0.005,
                            lambda_w=0.01, lambda_b=0.01).fit(cold_data.data.train)
        result = evaluate_ranking(vbpr.score, cold_data.data.train, cold_data.cold_test, ks=(20,),
                                  candidate_items=cold_data.cold_items)
        cold["cornac-vbpr"] = {"recall@20": result["recall@20"], "ndcg@20": result["ndcg@20"], "fit_s": vbpr.fit_seconds}
        print("cold cornac-vbpr", cold["cornac-vbpr"], flush=True)
    return cold


def _cold_only(args, bundle, features, catalogue) -> int:
    chosen = 0.5 if args.content_value_init is None else args.content_value_init
    cold = cold_start_table(bundle, features, catalogue, chosen, not args.skip_peers)
    print("\ncold start (10 % of items held out; ranking only those)")
    for name, r in cold.items():
        print(f"{name:<22} recall@20 {r['recall@20']:.4f}  ndcg@20 {r['ndcg@20']:.4f}")
    if args.json:
        print(json.dumps({"cold_start": cold, "content_value_init": chosen}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=str(REPO_ROOT / "workspace"))
    parser.add_argument("--quick", action="store_true", help="fewer models: fusion, ease, mostpop, peers' EASE")
    parser.add_argument("--skip-peers", action="store_true", help="do not run Cornac")
    parser.add_argument("--skip-cold", action="store_true", help="do not run the cold-start protocol")
    parser.add_argument("--skip-ablation", action="store_true")
    parser.add_argument("--only-cold", action="store_true", help="only the cold-start table")
    parser.add_argument("--content-value-init", type=float, default=None,
                        help="use this fusion start instead of choosing between 0.5 and 0 on valid")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    workspace = Workspace(args.workspace)
    bundle, features = load(workspace)
    catalogue = bundle.items["item_id"].to_numpy(str)
    prepared = prepare_data(bundle.interactions, item_features=features, catalogue_ids=catalogue)
    print(f"P1: {prepared.summary}", flush=True)
    rows: dict[str, dict[str, Any]] = {}
    speed: dict[str, Any] = {}

    # --- fusion (ours): the product default, and the behaviour-first start; the table keeps the one
    # with the better *valid* NDCG@20 (model selection never looks at test)
    if args.only_cold:
        args.skip_ablation = True
    candidates = {}
    for init in ((args.content_value_init,) if args.content_value_init is not None else (0.5, 0.0)):
        if args.only_cold:
            break
        model, seconds = fit_ours("fusion", prepared, content_value_init=init)
        valid = evaluate_ranking(model.score, prepared.data.train, prepared.valid, ks=(20,))["ndcg@20"]
        candidates[init] = (valid, model, seconds)
        print(f"fusion content_value_init={init}: valid NDCG@20 {valid:.4f}", flush=True)
    if args.only_cold:
        return _cold_only(args, bundle, features, catalogue)
    chosen = max(candidates, key=lambda init: candidates[init][0])
    _, fusion, seconds = candidates[chosen]
    speed["fusion_content_value_init_chosen_on_valid"] = chosen
    started = time.perf_counter()
    scores = fusion.score(np.arange(prepared.data.n_users))
    speed["fusion_items_scored_per_s"] = scores.size / (time.perf_counter() - started)
    epochs = len(fusion.history["epochs"])
    speed["fusion_training_examples_per_s"] = prepared.data.train.nnz * epochs / seconds
    rows["fusion"] = {**evaluate(fusion.score, prepared), "fit_s": seconds, "best_epoch": fusion.history["best_epoch"]}
    print("fusion", rows["fusion"], flush=True)

    for name in (("mostpop", "ease") if args.quick else OURS):
        model, seconds = fit_ours(name, prepared)
        rows[name] = {**evaluate(model.score, prepared), "fit_s": seconds}
        print(name, rows[name], flush=True)

    peers: dict[str, dict[str, Any]] = {}
    image = np.where(features.image_mask[:, None], features.image, 0.0)
    if not args.skip_peers:
        from peers import CORNAC_CONFIG, CornacRunner

        for name in (("cornac-ease",) if args.quick else ("cornac-ease", "cornac-bpr")):
            runner = CornacRunner(name, CORNAC_CONFIG[name]).fit(prepared.data.train)
            peers[name] = {**evaluate(runner.score, prepared), "fit_s": runner.fit_seconds}
            print(name, peers[name], flush=True)
        item_rows = {v: i for i, v in enumerate(catalogue)}
        warm_image = image[[item_rows[i] for i in prepared.data.item_ids]].astype(np.float32)
        vbpr = _vbpr_peer()(warm_image, k=10, k2=10, n_epochs=20, batch_size=256, learning_rate=0.005,
                        lambda_w=0.01, lambda_b=0.01).fit(prepared.data.train)
        peers["cornac-vbpr"] = {**evaluate(vbpr.score, prepared), "fit_s": vbpr.fit_seconds}
        speed["fusion_fit_over_vbpr_fit"] = rows["fusion"]["fit_s"] / vbpr.fit_seconds
        print("cornac-vbpr", peers["cornac-vbpr"], flush=True)
    our_lightgcn = {"lightgcn (ours)": rows["lightgcn"]} if "lightgcn" in rows else {}
    peer_table = {**peers, **our_lightgcn}
    best_peer = max(peer_table, key=lambda n: peer_table[n]["ndcg@20"]) if peer_table else None
    ratio = rows["fusion"]["ndcg@20"] / peer_table[best_peer]["ndcg@20"] if best_peer else None

    ablation: dict[str, dict[str, Any]] = {}
    if not args.skip_ablation:
        for removed in fusion.modalities:
            kept = [m for m in fusion.modalities if m != removed]
            model, seconds = fit_ours("fusion", prepared, modalities=kept, content_value_init=chosen)
            ablation[f"without {removed}"] = {**evaluate(model.score, prepared), "fit_s": seconds}
            print("ablation", removed, ablation[f"without {removed}"], flush=True)

    cold = {} if args.skip_cold else cold_start_table(bundle, features, catalogue, chosen, not args.skip_peers)

    def table(title: str, entries: dict[str, dict[str, Any]]) -> None:
        print(f"\n{title}")
        print(f"{'model':<22} {'R@10':>7} {'R@20':>7} {'N@10':>7} {'N@20':>7} {'valid N@20':>10} {'fit s':>8}")
        for name, r in entries.items():
            print(f"{name:<22} {r['recall@10']:>7.4f} {r['recall@20']:>7.4f} {r['ndcg@10']:>7.4f} "
                  f"{r['ndcg@20']:>7.4f} {r['valid_ndcg@20']:>10.4f} {r['fit_s']:>8.1f}")

    table("P1 test, movielens-small-mm (ours)", rows)
    if peers:
        table("peers (same split, same evaluator)", peers)
    if ablation:
        table("fusion modality ablation", {"all modalities": rows["fusion"], **ablation})
    if cold:
        print("\ncold start (10 % of items held out; ranking only those)")
        for name, r in cold.items():
            print(f"{name:<22} recall@20 {r['recall@20']:.4f}  ndcg@20 {r['ndcg@20']:.4f}")
    if ratio is not None:
        print(f"\nfusion test NDCG@20 / best peer ({best_peer}) = {ratio:.3f}")
    print("speed:", {k: round(v, 2) for k, v in speed.items()})
    if args.json:
        print(json.dumps({"ours": rows, "peers": peers, "ablation": ablation, "cold_start": cold, "speed": speed,
                          "best_peer": best_peer, "ratio_to_best_peer": ratio, "split": prepared.summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
