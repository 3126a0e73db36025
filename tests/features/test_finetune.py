"""Fine-tuning the text encoder on the catalogue's behaviour: the targets and pairs, the tuned folder, the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys.features.finetune import (
    FinetuneSettings,
    behaviour_targets,
    co_interaction_pairs,
    finetune_text_encoder,
)
from recsys.features.registry import get_encoder
from recsys.features.text import minilm_available, minilm_model_dir

TEXTS = [
    f"A {adjective} film about {topic}."
    for adjective in ("quiet", "loud", "funny", "dark")
    for topic in ("cats", "space", "the sea", "kings", "trains")
]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A two-layer BERT built from a config (random weights) with MiniLM's tokenizer: an 'hf:' text encoder
    folder that fine-tunes in well under a second a step."""
    if not minilm_available():
        pytest.skip("the MiniLM package (its tokenizer) is not installed")
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_model_dir()), local_files_only=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return folder


def test_pairs_are_two_different_items_of_one_users_training_history():
    rng = np.random.default_rng(1)
    train = sp.csr_matrix((rng.random((30, 12)) < 0.3).astype(np.float32))
    usable = np.ones(12, dtype=bool)
    usable[[2, 5]] = False  # no text: never in a pair
    pairs = co_interaction_pairs(train, 500, seed=3, usable=usable)
    assert pairs.shape == (500, 2) and (pairs[:, 0] != pairs[:, 1]).all()
    assert not np.isin(pairs, [2, 5]).any()
    dense = train.toarray() > 0
    assert all((dense[:, a] & dense[:, b]).any() for a, b in pairs)  # some user chose both
    np.testing.assert_array_equal(pairs, co_interaction_pairs(train, 500, seed=3, usable=usable))
    assert co_interaction_pairs(sp.csr_matrix((4, 3), dtype=np.float32), 10, seed=0).shape == (0, 2)


def test_associated_pairs_keep_the_items_chosen_together_most_often():
    """Items 0 and 1 are chosen by the same 20 users; every other pair shares about one user: the kept
    quarter of the drawn pairs is made of (0, 1) more than the draw itself is."""
    rng = np.random.default_rng(0)
    dense = (rng.random((200, 30)) < 0.05).astype(np.float32)
    dense[:20, [0, 1]] = 1.0
    train = sp.csr_matrix(dense)
    everything = co_interaction_pairs(train, 4000, seed=1)
    kept = co_interaction_pairs(train, 4000, seed=1, keep_associated=0.25)
    assert len(kept) == 1000 and (kept[:, 0] != kept[:, 1]).all()

    def share_of_the_couple(pairs: np.ndarray) -> float:
        return float(np.mean([sorted(pair) == [0, 1] for pair in pairs.tolist()]))

    assert share_of_the_couple(kept) > 2 * share_of_the_couple(everything)
    assert {tuple(pair) for pair in kept.tolist()} <= {tuple(pair) for pair in everything.tolist()}


def test_finetuning_trains_only_the_last_layers_and_gives_an_hf_encoder(tiny_bert, tmp_path):
    base = get_encoder(f"hf:{tiny_bert}", device="cpu")
    pairs = np.array([[i, (i + 5) % len(TEXTS)] for i in range(len(TEXTS))])
    out = finetune_text_encoder(
        base,
        TEXTS,
        pairs,
        tmp_path / "tuned",
        FinetuneSettings(layers=1, steps=4, batch_size=8, lr=1e-3, objective="pairs"),
    )
    report = json.loads((out / "finetune.json").read_text())
    assert report["tuned_layers"] == 1 and report["settings"]["steps"] == 4
    tuned = get_encoder(f"hf:{out}", device="cpu")
    assert tuned.version != base.version  # its own feature-cache entries
    vectors = tuned.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    tuned._load()
    before, after = base._model.state_dict(), tuned._model.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(name.startswith("encoder.layer.1.") for name in changed)
    assert not np.allclose(base.encode(TEXTS), vectors)


def test_behaviour_targets_are_the_items_place_in_the_behaviour_space():
    """Items 0-4 share one group of users, items 5-9 another: each item's target is closer to the items of
    its own group; an item without text, or chosen by fewer than two users, has none."""
    rng = np.random.default_rng(0)
    dense = np.zeros((60, 12), dtype=np.float32)
    dense[:30, :5] = rng.random((30, 5)) < 0.6
    dense[30:, 5:10] = rng.random((30, 5)) < 0.6
    dense[0, 10] = 1.0  # one user only
    train = sp.csr_matrix(dense)
    usable = np.ones(12, dtype=bool)
    usable[3] = False
    items, vectors = behaviour_targets(train, dim=4, usable=usable)
    assert list(items) == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    group = items < 5
    same = similarity[np.ix_(group, group)].mean(), similarity[np.ix_(~group, ~group)].mean()
    assert min(same) > similarity[np.ix_(group, ~group)].mean() + 0.5


def test_behaviour_objective_keeps_the_step_the_held_out_items_choose(tiny_bert, tmp_path):
    base = get_encoder(f"hf:{tiny_bert}", device="cpu")
    topic = np.arange(len(TEXTS)) % 5  # the texts' topic decides the target: something the text can learn
    targets = (np.arange(len(TEXTS)), np.eye(5, dtype=np.float32)[topic])
    settings = FinetuneSettings(layers=1, steps=6, batch_size=8, lr=1e-3, eval_every=2, holdout=0.4)
    out = finetune_text_encoder(base, TEXTS, None, tmp_path / "tuned", settings, targets=targets)
    report = json.loads((out / "finetune.json").read_text())
    checks = report["held_out_loss"]
    assert [step for step, _ in checks] == [0, 2, 4, 6] and report["held_out_items"] == 8
    assert all(0.0 <= value <= 1.0 for _, value in checks)
    best = min(checks, key=lambda check: check[1])  # the first of the best: a later tie is not an improvement
    # the earliest step within one standard error of the best: never a later one than the best
    assert report["kept_step"] in [step for step, _ in checks] and report["kept_step"] <= best[0]
    tuned = get_encoder(f"hf:{out}", device="cpu")
    if report["kept_step"] == 0:  # no step beat the frozen layers: the folder holds them
        np.testing.assert_allclose(tuned.encode(TEXTS), base.encode(TEXTS), atol=1e-6)
    with pytest.raises(ValueError, match="behaviour targets"):
        finetune_text_encoder(base, TEXTS, None, tmp_path / "none", settings, targets=(np.arange(3), np.eye(3)))


def test_finetune_text_command_writes_an_encoder_a_run_can_use(tiny_bert, demo_copy, capsys):
    from recsys.cli import main
    from recsys.train.run import RunConfig, train_run
    from recsys.workspace import Workspace

    code = main(
        ["finetune-text", "demo", "--base", f"hf:{tiny_bert}", "--steps", "2", "--batch-size", "8"]
        + ["--workspace", str(demo_copy), "--json", "--quiet", "--device", "cpu"]
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and result["ok"] and result["objective"] == "behaviour" and result["target_items"] > 0
    assert result["held_out_loss"][0][0] == 0 and result["kept_step"] in [step for step, _ in result["held_out_loss"]]
    assert result["folder"] == str(demo_copy / "encoders" / f"demo-{tiny_bert.name}-ft")
    workspace = Workspace(demo_copy)
    config = RunConfig(
        dataset="demo",
        text_encoder=result["encoder"],
        modalities=["behaviour", "text"],
        fusion_options={"epochs": 1},
        baselines=[],
        final_model=False,
        device="cpu",
    )
    run_dir = train_run(workspace, config, run_id="tuned-text")
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
