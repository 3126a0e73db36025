"""Do the fusion model's per-user modality weights find the demo's planted taste segments?

The demo generator plants each user's weights over (text, image, attributes, behaviour) and a segment
(the modality with weight ~0.7). On one P1 split of the demo this script fits the fusion model and
measures, from ``model.user_modality_weights`` (the gate the scores use):

* segment accuracy: arg-max of each user's weights centred by the modality's mean over users, against
  the planted segment (4 segments, chance 25 %);
* Spearman(learned weight, true weight) per modality, over users;
* in the same run, the training-free reference: how coherent each user's training history is in each
  content modality (mean pairwise cosine of the history items' MiniLM / EfficientNet / attribute vectors,
  minus the catalogue's mean pairwise cosine, z-scored over users), arg-max over the three content
  modalities, scored on the users of the three content segments (chance 33 %);
* three bounds on the recovery, beside it: a *supervised* linear read-out of the gate's own evidence (trained
  on the truth, 5-fold CV: does the evidence or the gate's form limit it?); the generator's own posterior
  mean of the weights from the same histories, every latent value known (what the choices hold); and the
  same posterior with the users' preferred values estimated rather than given (perfect item features and the
  generator's exact choice model: about what any model could reach, since nothing observable says what a
  user prefers);
* the model's accuracy beside EASE with its L2 chosen on valid (test NDCG@20, ratio);
* the faithfulness of its explanations (:func:`recsys.explain.faithfulness_check`, every user's top 10: the
  share of pairs where masking the largest-share modality lowers the score more than masking the smallest),
  so a change to the model that makes the explanations less true shows in the same run.

    python benchmarks/attention_truth.py [--workspace DIR] [--users N --items N --interactions N] [--json]

The last line with ``--json`` is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from recsys.data.demo import (  # noqa: E402
    MODALITIES as DEMO_MODALITIES,
    demo_ground_truth,
    demo_posterior_weights,
    generate_demo_bundle,
)
from recsys.evaluate import evaluate_ranking  # noqa: E402
from recsys.explain import SEGMENT_MODALITY, faithfulness_check, segment_recovery, user_weights_frame  # noqa: E402
from recsys.explain.attention import spearman_rank_correlation  # noqa: E402
from recsys.features.extract import extract_item_features  # noqa: E402
from recsys.features.registry import DEFAULT_TEXT_ENCODER  # noqa: E402
from recsys.models import get_model  # noqa: E402
from recsys.models.fusion import ContentArrays  # noqa: E402
from recsys.train.data import prepare_data  # noqa: E402
from recsys.workspace import Workspace  # noqa: E402

CONTENT = ("text", "image", "attributes")


def _dense(matrix: Any) -> np.ndarray | None:
    return None if matrix is None else np.asarray(matrix.toarray(), np.float32)


def coherence_reference(train, content: ContentArrays, truth: pd.DataFrame) -> dict[str, Any]:
    """Training-free: per content modality, mean pairwise cosine of the history minus the catalogue's."""
    spaces = {
        "text": (content.text, content.text_mask),
        "image": (content.image, content.image_mask),
        "attributes": (_dense(content.attribute_matrix()), content.attr_mask),
    }
    columns, names = [], []
    for name in CONTENT:
        matrix, mask = spaces[name]
        if matrix is None:
            continue
        unit = np.zeros_like(matrix, dtype=np.float64)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        unit[mask] = (matrix / np.maximum(norms, 1e-12))[mask]
        total = unit[mask].sum(0)
        n = int(mask.sum())
        catalogue = (total @ total - n) / (n * (n - 1))
        values = []
        for user in range(train.shape[0]):
            items = train.indices[train.indptr[user] : train.indptr[user + 1]]
            items = items[mask[items]]
            if len(items) < 2:
                values.append(np.nan)
                continue
            s = unit[items].sum(0)
            values.append((s @ s - len(items)) / (len(items) * (len(items) - 1)) - catalogue)
        values = np.asarray(values)
        columns.append((values - np.nanmean(values)) / np.nanstd(values))
        names.append(name)
    scores = np.nan_to_num(np.stack(columns, axis=1), nan=-np.inf)
    predicted = np.asarray(names)[scores.argmax(axis=1)]
    expected = truth["segment"].map(SEGMENT_MODALITY).to_numpy()
    content_users = np.isin(expected, CONTENT)
    return {
        "content_segment_accuracy": float((predicted[content_users] == expected[content_users]).mean()),
        "modalities": names,
        # the statistic itself as a weight: how well it orders users by their true weight
        "spearman": {
            name: spearman_rank_correlation(np.nan_to_num(columns[k], nan=0.0), truth[f"w_{name}"].to_numpy())
            for k, name in enumerate(names)
        },
    }


def spearman_ceilings(truth: pd.DataFrame, modalities: list[str], seed: int = 0) -> dict[str, dict[str, float]]:
    """What Spearman(learned, true) a *perfect segment classifier* reaches, per modality: its weight is
    one value for the users of the modality's segment and another for the rest, either tied within
    each group or in an order unrelated to the true weights within each group. The true weights are the
    segment's (0.7 / 0.1) with a small per-user jitter, so most of their rank order is the jitter: a
    model has to read that jitter from a few dozen interactions to go beyond these figures."""
    rng = np.random.default_rng(seed)
    expected = truth["segment"].map(SEGMENT_MODALITY).to_numpy()
    out: dict[str, dict[str, float]] = {"tied_within_segment": {}, "unordered_within_segment": {}}
    for m in modalities:
        if f"w_{m}" not in truth:
            continue
        member = (expected == m).astype(float)
        true = truth[f"w_{m}"].to_numpy()
        out["tied_within_segment"][m] = spearman_rank_correlation(member, true)
        out["unordered_within_segment"][m] = spearman_rank_correlation(member + 0.5 * rng.random(len(member)), true)
    return out


def _recovery(estimate: np.ndarray, truth: pd.DataFrame, modalities: list[str]) -> dict[str, Any]:
    """Segment accuracy (arg-max of the centred estimate) and Spearman per modality of ``estimate [U, M]``."""
    expected = truth["segment"].map(SEGMENT_MODALITY).map(modalities.index).to_numpy()
    centred = estimate - estimate.mean(axis=0)
    # the rank order inside each group: the modality's own segment (true weight ~0.7) and every other user
    # (~0.1, three quarters of the users). The pooled Spearman rests mostly on the latter's order: with
    # this model's segment calls and the generator posterior's order inside the groups it would clear 0.6 on
    # every modality, and that order is what the features hold least of
    within = {}
    for k, m in enumerate(modalities):
        true = truth[f"w_{m}"].to_numpy()
        member = expected == k
        within[m] = {
            group: spearman_rank_correlation(estimate[rows, k], true[rows])
            for group, rows in (("in_segment", member), ("others", ~member))
        }
    return {
        "segment_accuracy": float((centred.argmax(axis=1) == expected).mean()),
        "spearman": {
            m: spearman_rank_correlation(estimate[:, k], truth[f"w_{m}"].to_numpy()) for k, m in enumerate(modalities)
        },
        "spearman_within": within,
    }


def generator_posterior(
    train, truth: pd.DataFrame, truth_items: pd.DataFrame, item_ids, modalities, preferences_known: bool = True
) -> dict[str, Any]:
    """The generator's own posterior mean of the weights from the same training histories, knowing every
    latent value (:func:`recsys.data.demo.demo_posterior_weights`): what the choices hold at best. With
    ``preferences_known`` False, the users' preferred values are estimated, not given: what perfect item
    features and the generator's exact choice model would recover, which no model can exceed by much."""
    items = truth_items.set_index("item_id").reindex(item_ids).reset_index()
    posterior = demo_posterior_weights(truth, items, train.tocsr(), preferences_known=preferences_known)
    columns = [DEMO_MODALITIES.index(m) for m in modalities]
    return _recovery(posterior[:, columns], truth, modalities)


def evidence_read_out(model, truth: pd.DataFrame, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """The best a *supervised* linear read-out of the gate's own inputs does: a multinomial logistic
    regression from each user's evidence (and log history length) to the planted segment, trained on the
    truth with ``folds``-fold cross-validation; a user's weights are then the segments' mean true weights
    under its predicted probabilities. A diagnostic, never a model: it shows whether the gate's evidence
    or the gate's form limits the recovery."""
    modalities = model.modalities
    evidence, lengths = model.gate_evidence()
    x = np.concatenate([evidence, np.log(np.maximum(lengths, 1.0))[:, None]], axis=1)
    x = x[:, x.std(axis=0) > 0]
    x = torch.as_tensor((x - x.mean(axis=0)) / x.std(axis=0), dtype=torch.float32)
    segment = truth["segment"].map(SEGMENT_MODALITY).map(modalities.index).to_numpy()
    weights = truth[[f"w_{m}" for m in modalities]].to_numpy()
    labels = torch.tensor(segment)  # a copy: pandas may hand back a read-only array
    fold = np.random.default_rng(seed).integers(folds, size=len(segment))
    estimate = np.zeros_like(weights)
    torch.manual_seed(seed)
    for f in range(folds):
        train_rows, test_rows = torch.as_tensor(fold != f), torch.as_tensor(fold == f)
        linear = torch.nn.Linear(x.shape[1], len(modalities))
        optimiser = torch.optim.LBFGS(linear.parameters(), max_iter=200)

        def closure(linear=linear, optimiser=optimiser, rows=train_rows):
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(linear(x[rows]), labels[rows]) + 1e-3 * linear.weight.pow(2).sum()
            loss.backward()
            return loss

        optimiser.step(closure)
        means = np.stack([weights[(fold != f) & (segment == s)].mean(axis=0) for s in range(len(modalities))])
        with torch.no_grad():
            estimate[fold == f] = torch.softmax(linear(x[test_rows]), dim=1).numpy() @ means
    return _recovery(estimate, truth, modalities)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, default=None, help="workspace (default: a temporary one)")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--items", type=int, default=800)
    parser.add_argument("--interactions", type=int, default=30000)
    parser.add_argument("--text-encoder", default=DEFAULT_TEXT_ENCODER)
    parser.add_argument(
        "--fusion", action="append", default=[], metavar="OPTION=VALUE", help="a fusion option (JSON value), repeatable"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    temporary = tempfile.TemporaryDirectory() if args.workspace is None else None
    root = Path(temporary.name) if temporary else args.workspace
    workspace = Workspace(root / "workspace")
    name = f"demo-{args.users}-{args.items}-{args.interactions}"
    bundle_dir = root / name
    if not (bundle_dir / "items.csv").is_file():
        generate_demo_bundle(bundle_dir, n_users=args.users, n_items=args.items, n_interactions=args.interactions)
    if not workspace.has_dataset(name):
        result = workspace.import_bundle(bundle_dir, name=name)
        if not result.ok:
            raise SystemExit(result.report.format())
    bundle = workspace.load_dataset(name)
    features = extract_item_features(
        bundle.items, bundle.schema.items, bundle.root, workspace.features_dir, text_encoder=args.text_encoder
    )
    prepared = prepare_data(
        bundle.interactions, item_features=features, catalogue_ids=bundle.items["item_id"].to_numpy(str)
    )
    data = prepared.data
    truth_users, truth_items = demo_ground_truth(bundle_dir)
    truth = truth_users.set_index("user_id").reindex(data.user_ids).reset_index()
    truth["user_id"] = truth["user_id"].astype(str)

    out: dict[str, Any] = {"dataset": name, "users": int(data.n_users), "items": int(data.n_items)}
    started = time.perf_counter()
    options = {key: json.loads(value) for key, value in (option.split("=", 1) for option in args.fusion)}
    model = get_model("fusion", **options).fit(data)
    out["fusion_fit_s"] = time.perf_counter() - started
    weights = user_weights_frame(model)
    out["fusion"] = segment_recovery(weights, truth, model.modalities)
    by_segment = weights.merge(truth[["user_id", "segment"]], on="user_id").groupby("segment")[model.modalities].mean()
    out["fusion"]["mean_weights_by_segment"] = by_segment.round(3).to_dict(orient="index")
    # the truth's rows are the model's users in order (reindexed on data.user_ids above)
    out["fusion"]["spearman_within"] = _recovery(model.user_modality_weights(), truth, model.modalities)[
        "spearman_within"
    ]
    out["reference"] = coherence_reference(
        data.train, ContentArrays.from_features(data.item_features, data.n_items), truth
    )
    out["spearman_ceilings"] = spearman_ceilings(truth, model.modalities)
    out["evidence_read_out"] = evidence_read_out(model, truth)
    started = time.perf_counter()
    out["generator_posterior"] = generator_posterior(data.train, truth, truth_items, data.item_ids, model.modalities)
    out["generator_posterior"]["seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    out["item_latent_posterior"] = generator_posterior(
        data.train, truth, truth_items, data.item_ids, model.modalities, preferences_known=False
    )
    out["item_latent_posterior"]["seconds"] = time.perf_counter() - started

    def test_ndcg(fitted) -> dict[str, float]:
        test = evaluate_ranking(fitted.score, data.train, prepared.test, exclude=prepared.valid, ks=(20,))
        valid = evaluate_ranking(fitted.score, data.train, prepared.valid, ks=(20,))
        return {"test_ndcg@20": test["ndcg@20"], "test_recall@20": test["recall@20"], "valid_ndcg@20": valid["ndcg@20"]}

    started = time.perf_counter()
    ease = get_model("ease").fit(data)
    ease_s = time.perf_counter() - started
    out["accuracy"] = {"fusion": test_ndcg(model), "ease": {**test_ndcg(ease), "l2": ease.chosen_l2, "fit_s": ease_s}}
    out["accuracy"]["fusion_over_ease"] = (
        out["accuracy"]["fusion"]["test_ndcg@20"] / out["accuracy"]["ease"]["test_ndcg@20"]
    )

    started = time.perf_counter()
    faith = faithfulness_check(model, k=10, max_users=None)
    out["faithfulness"] = {
        "rate": faith["rate"],
        "pairs": faith["pairs"],
        "by_largest": faith["by_largest"],
        "seconds": time.perf_counter() - started,
    }

    fusion = out["fusion"]
    print(
        f"segment accuracy (4 segments): {fusion['segment_accuracy']:.3f}; content segments: "
        f"{fusion['content_segment_accuracy']:.3f} vs coherence reference {out['reference']['content_segment_accuracy']:.3f}"
    )
    print("per segment:", {k: round(v, 3) for k, v in fusion["per_segment"].items()})
    print("Spearman(learned, true):", {k: round(v, 3) for k, v in fusion["spearman"].items()})
    print("Spearman of the coherence reference:", {k: round(v, 3) for k, v in out["reference"]["spearman"].items()})
    for kind, values in out["spearman_ceilings"].items():
        print(
            f"Spearman of a perfect segment classifier, {kind.replace('_', ' ')}:",
            {k: round(v, 3) for k, v in values.items()},
        )
    for key, label in (
        ("evidence_read_out", "a linear read-out of the gate's evidence trained on the truth (5-fold CV)"),
        ("generator_posterior", "the generator's own posterior (every latent value known)"),
        (
            "item_latent_posterior",
            "the generator's posterior with the users' preferred values estimated (perfect item features)",
        ),
    ):
        print(
            f"{label}: segment accuracy {out[key]['segment_accuracy']:.3f}, Spearman",
            {k: round(v, 3) for k, v in out[key]["spearman"].items()},
        )
    print(
        f"calibration: {model.history.get('calibration', {}).get('behaviour_scale')}, best round "
        f"{model.history.get('best_epoch')}"
    )
    for key, label in (
        ("fusion", "the model"),
        ("item_latent_posterior", "perfect item features"),
        ("generator_posterior", "the generator's posterior"),
    ):
        print(
            f"Spearman within groups, {label} (the modality's own segment / every other user):",
            {m: f"{v['in_segment']:.3f} / {v['others']:.3f}" for m, v in out[key]["spearman_within"].items()},
        )
    print("mean weights by segment:", fusion["mean_weights_by_segment"])
    acc = out["accuracy"]
    print(
        f"test NDCG@20 fusion {acc['fusion']['test_ndcg@20']:.4f} vs EASE (l2 {acc['ease']['l2']:g}, chosen on valid) "
        f"{acc['ease']['test_ndcg@20']:.4f} = {acc['fusion_over_ease']:.3f}x; fusion fit {out['fusion_fit_s']:.1f} s"
    )
    print(
        f"faithfulness: masking the largest share lowers the score more in {faith['rate']:.1%} of {faith['pairs']} "
        "(user, top-10 item) pairs; by the modality with the largest share:",
        {m: None if v["rate"] is None else f"{v['rate']:.0%} of {v['pairs']}" for m, v in faith["by_largest"].items()},
    )
    if args.json:
        print(json.dumps(out))
    if temporary:
        temporary.cleanup()
    return out


if __name__ == "__main__":
    main()
