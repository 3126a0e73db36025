"""The optional narrator: offline loading, the fact check, and the fallback to the plain sentence."""

from __future__ import annotations

import pytest

from recsys.explain.explainer import Explanation, build_sentence
from recsys.explain.narrator import Narrator, build_prompt, check_narration, narrate

TERMS = {"science", "fiction", "thriller", "comedy", "drama", "romance", "horror"}


def _explanation() -> Explanation:
    explanation = Explanation(
        user_id="u1",
        item_id="42",
        title="Aliens (1986)",
        model="fusion",
        score=2.5,
        has_attention=True,
        modalities=[
            {
                "modality": "behaviour",
                "label": "the choices of people with similar taste",
                "present": True,
                "missing": False,
                "attention": 0.2,
                "attention_pct": 20,
                "share": 0.4,
                "share_pct": 17,
            },
            {
                "modality": "text",
                "label": "its description",
                "present": True,
                "missing": False,
                "attention": 0.5,
                "attention_pct": 50,
                "share": 1.2,
                "share_pct": 52,
            },
            {
                "modality": "image",
                "label": "its picture",
                "present": True,
                "missing": False,
                "attention": 0.3,
                "attention_pct": 30,
                "share": 0.7,
                "share_pct": 31,
            },
        ],
        history=[
            {"item_id": "1", "title": "Alien (1979)", "contribution": 0.8, "rating": 5.0, "rated_highly": True},
            {"item_id": "2", "title": "Blade Runner (1982)", "contribution": 0.5, "rating": 4.5, "rated_highly": True},
        ],
        evidence={
            "labels": [
                {
                    "column": "genres",
                    "column_label": "genres",
                    "role": "multi_label",
                    "values": ["Sci-Fi", "Thriller"],
                    "shared_values": ["Sci-Fi", "Thriller"],
                    "shared_with": ["Alien (1979)", "Blade Runner (1982)"],
                    "history_counts": [{"value": "Sci-Fi", "count": 6}, {"value": "Thriller", "count": 4}],
                    "history_size": 20,
                }
            ],
            "words": [{"word": "crew", "weight": 0.2, "shared_with": ["Alien (1979)"]}],
            "price": None,
            "visual": None,
            "popularity": {"count": 30, "percentile": 85, "new_item": False},
        },
    )
    explanation.sentence = build_sentence(explanation.facts())
    return explanation


def _tiny_model_dir(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = [
        "[UNK]",
        "[PAD]",
        "[EOS]",
        "Comedy",
        "Titanic",
        "1999",
        "Paris",
        "banana",
        "Romance",
        "42000",
        "Horror",
        "Casablanca",
        "Oscar",
        "Netflix",
        "zebra",
        "7",
        "the",
        "a",
        "you",
        "it",
    ]
    vocab = {w: i for i, w in enumerate(words)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]"
    )
    config = GPT2Config(
        n_layer=1,
        n_head=2,
        n_embd=32,
        vocab_size=len(vocab),
        n_positions=512,
        bos_token_id=vocab["[EOS]"],
        eos_token_id=vocab["[EOS]"],
        pad_token_id=vocab["[PAD]"],
    )
    import torch

    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    folder = tmp_path / "tiny-gpt2"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_the_plain_sentence_is_made_of_evidence():
    explanation = _explanation()
    assert explanation.sentence == (
        "Recommended mainly for its description (52% of what raised its score) and its "
        "picture (31%): like "
        "“Alien (1979)” and “Blade Runner (1982)”, which you rated highly, it shares "
        "genres “Sci-Fi” and “Thriller” and its text shares the word “crew”."
    )
    assert check_narration(explanation.sentence, explanation, TERMS) == []


def test_prompt_holds_only_the_evidence():
    prompt = build_prompt(_explanation())
    assert "Alien (1979)" in prompt and "Sci-Fi, Thriller" in prompt and "52%" in prompt
    assert "Use only" in prompt or "use only" in prompt


def test_random_tiny_gpt2_output_falls_back(tmp_path):
    folder = _tiny_model_dir(tmp_path)
    explanation = _explanation()
    narrator = Narrator(folder, max_new_tokens=24)
    raw = narrator.generate(build_prompt(explanation))
    assert isinstance(raw, str)
    result = narrate(explanation, narrator=narrator, catalogue_terms=TERMS)
    assert result.source == "sentence" and result.text == explanation.sentence
    assert result.reason and result.reason.startswith("the narration was refused")
    # the module-level helper loads the folder itself (offline) and falls back the same way
    assert narrate(explanation, folder, catalogue_terms=TERMS).source == "sentence"


def test_a_faithful_rephrasing_passes(tmp_path, monkeypatch):
    folder = _tiny_model_dir(tmp_path)
    explanation = _explanation()
    narrator = Narrator(folder)
    echo = (
        "You rated Alien (1979) and Blade Runner (1982) highly, and this one shares their genres Sci-Fi and "
        "Thriller; 52% of its score comes from its description."
    )
    monkeypatch.setattr(narrator, "generate", lambda prompt: echo)
    result = narrate(explanation, narrator=narrator, catalogue_terms=TERMS)
    assert result.source == "narrator" and result.text == echo and result.reason is None


@pytest.mark.parametrize(
    "invented",
    [
        "Like Alien (1979), this is a comedy you will love.",  # a genre the evidence never mentions
        "Like Alien (1979), it won an Oscar.",  # a capitalised name not in the evidence
        "Like Alien (1979), 87% of viewers loved it.",  # a number not in the evidence
        "Like “Titanic”, it shares Sci-Fi.",  # a title not in the evidence
        "You will enjoy this.",  # says nothing of the evidence
        "",
    ],
)
def test_invented_facts_are_refused(tmp_path, monkeypatch, invented):
    folder = _tiny_model_dir(tmp_path)
    explanation = _explanation()
    narrator = Narrator(folder)
    monkeypatch.setattr(narrator, "generate", lambda prompt: invented)
    result = narrate(explanation, narrator=narrator, catalogue_terms=TERMS)
    assert result.source == "sentence" and result.text == explanation.sentence and result.problems


def test_without_a_model_the_sentence_is_used(tmp_path):
    explanation = _explanation()
    assert narrate(explanation).source == "sentence"
    missing = narrate(explanation, tmp_path / "no-such-model")
    assert missing.source == "sentence" and "no local language model" in missing.reason


@pytest.mark.parametrize(
    "values, expected",
    [
        ([1 / 3, 1 / 3, 1 / 3], [34, 33, 33]),  # rounded one by one: 33 + 33 + 33 = 99
        ([0.127, 0.196, 0.555, 0.122], [13, 20, 55, 12]),  # one by one: 13 + 20 + 56 + 12 = 101
        ([0.0, 2.0, 0.0], [0, 100, 0]),
        ([0.0, 0.0], [0, 0]),
        ([-1.0, 3.0, 1.0], [0, 75, 25]),  # negative values count as 0
    ],
)
def test_whole_percentages_add_up_to_exactly_100(values, expected):
    from recsys.explain.explainer import whole_percentages

    assert whole_percentages(values) == expected
    assert sum(whole_percentages(values)) in (0, 100)
