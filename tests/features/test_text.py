import json

import numpy as np
import pytest

from recsys.features import EncoderUnavailableError, get_encoder, list_encoders
from recsys.features.text import TfidfTextEncoder


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- the real default encoder ------------------------------------------------------------


def test_minilm_related_phrases_are_closer(minilm):
    v = minilm.encode(["a dog playing in the park", "a puppy running on grass", "quarterly tax filing deadline"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert _cos(v[0], v[1]) > _cos(v[0], v[2]) + 0.1
    assert _cos(v[0], v[1]) > _cos(v[1], v[2]) + 0.1


def test_minilm_keeps_order_and_allows_empty(minilm):
    texts = ["short", "", "a much longer sentence about movies and actors", "short"]
    calls = []
    v = minilm.encode(texts, batch_size=2, progress=lambda done, total: calls.append((done, total)))
    assert v.shape == (4, 384) and np.isfinite(v).all()
    assert np.allclose(v[0], v[3], atol=1e-5)  # same text -> same row, wherever it is batched
    assert calls[-1] == (4, 4)
    alone = minilm.encode(["a much longer sentence about movies and actors"])
    assert np.allclose(alone[0], v[2], atol=1e-4)


def test_minilm_alias_and_version(minilm):
    other = get_encoder("all-MiniLM-L6-v2", device="cpu")
    assert other.name == "minilm" and other.version == minilm.version and other.dim == 384
    assert "all-MiniLM-L6-v2" in minilm.version


# -- any Hugging Face model, offline -----------------------------------------------------


def test_hf_unknown_id_is_a_clear_error():
    with pytest.raises(EncoderUnavailableError) as info:
        get_encoder("hf:bert-base-uncased-this-does-not-exist")
    message = str(info.value)
    assert "not available offline" in message
    assert "bert-base-uncased-this-does-not-exist" in message
    assert "local directory" in message


def test_hf_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(EncoderUnavailableError, match="not available offline"):
        get_encoder(f"hf:{tmp_path / 'nothing-here'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EncoderUnavailableError, match=r"no config\.json"):
        get_encoder(f"hf:{tmp_path / 'empty'}")


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog", "cat", "park", "tax", "the", "in", "runs"]
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(words) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    BertTokenizer(vocab_file=str(vocab)).save_pretrained(folder)
    return folder


def test_hf_local_directory_works(tiny_bert_dir):
    enc = get_encoder(f"hf:{tiny_bert_dir}", device="cpu")
    assert enc.dim == 32 and enc.modality == "text" and enc.name.startswith("hf:")
    v = enc.encode(["a dog in the park", "the cat runs", ""], batch_size=2)
    assert v.shape == (3, 32) and v.dtype == np.float32 and np.isfinite(v).all()
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    # same folder -> same version; a changed weight file -> another version
    assert get_encoder(f"hf:{tiny_bert_dir}", device="cpu").version == enc.version


def test_hf_version_changes_with_the_weights(tiny_bert_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_bert_dir, copy)
    before = get_encoder(f"hf:{copy}", device="cpu").version
    config = json.loads((copy / "config.json").read_text())
    config["layer_norm_eps"] = 1e-6
    (copy / "config.json").write_text(json.dumps(config))
    assert get_encoder(f"hf:{copy}", device="cpu").version != before


# -- TF-IDF ------------------------------------------------------------------------------

CORPUS = [
    "A dog playing in the park",
    "A puppy running on grass in the park",
    "Quarterly tax filing deadline",
    "Tax return and filing for the quarter",
    "",
    "Cats and dogs are pets",
]


def test_tfidf_is_deterministic():
    a = get_encoder("tfidf").encode(CORPUS)
    b = TfidfTextEncoder().encode(list(CORPUS))
    assert a.shape == (len(CORPUS), 256) and a.dtype == np.float32
    assert np.allclose(a, b, atol=1e-6)
    first, second = TfidfTextEncoder(), TfidfTextEncoder()
    first.fit(CORPUS), second.fit(CORPUS)
    assert first.vocabulary_ == second.vocabulary_
    assert list(first.vocabulary_)[:3] == ["the", "and", "filing"]  # document frequency, then term


def test_tfidf_rows_and_similarity():
    v = TfidfTextEncoder(dim=16).encode(CORPUS)
    norms = np.linalg.norm(v, axis=1)
    assert np.allclose(norms[[0, 1, 2, 3, 5]], 1.0, atol=1e-5)
    assert norms[4] == 0.0  # an empty text is a zero row (the caller masks it)
    assert _cos(v[2], v[3]) > _cos(v[2], v[0])
    assert _cos(v[0], v[1]) > _cos(v[0], v[3])


def test_tfidf_transform_new_texts_and_random_projection():
    enc = TfidfTextEncoder(dim=8, method="random")
    v = enc.encode(CORPUS)
    assert v.shape == (len(CORPUS), 8)
    new = enc.transform(["dog park"])
    assert new.shape == (1, 8) and abs(np.linalg.norm(new[0]) - 1) < 1e-5


def test_tfidf_on_a_corpus_larger_than_its_fit_sample_fits_on_a_fixed_sample_and_transforms_in_chunks(
    monkeypatch,
):
    import recsys.features.text as text_module

    corpus = [f"{CORPUS[i % 4]} item{i} batch{i % 7}" for i in range(60)]
    sampled = TfidfTextEncoder(dim=8, fit_sample=25)
    v = sampled.encode(corpus)
    assert sum(1 for t in sampled.vocabulary_ if t.startswith("item")) == 25  # from the 25 sampled docs only
    # the same fit as an encoder given only the sample; every document transformed with it
    keep = np.sort(np.random.default_rng(sampled.seed).choice(len(corpus), 25, replace=False))
    reference = TfidfTextEncoder(dim=8, fit_sample=25).fit([corpus[i] for i in keep])
    assert reference.vocabulary_ == sampled.vocabulary_
    assert np.allclose(v, reference.transform(corpus), atol=1e-6)
    # chunked transform = one-piece transform; the cache key tells the two fits apart
    monkeypatch.setattr(text_module, "TRANSFORM_CHUNK", 7)
    assert np.allclose(sampled.transform(corpus), v, atol=1e-6)
    assert sampled.version != TfidfTextEncoder(dim=8).version
    # a corpus within the sample is fitted on all of it, as before
    whole = TfidfTextEncoder(dim=8, fit_sample=1000)
    whole.fit(corpus)
    assert sum(1 for t in whole.vocabulary_ if t.startswith("item")) == 60


# -- registry ----------------------------------------------------------------------------


def test_list_encoders_reports_defaults_and_availability():
    text = {e.name: e for e in list_encoders("text")}
    image = {e.name: e for e in list_encoders("image")}
    assert {"minilm", "tfidf"} <= set(text) and "efficientnet-lite0" in image
    assert text["minilm"].dim == 384 and image["efficientnet-lite0"].dim == 1280
    assert text["tfidf"].available
    assert all(e.modality == "text" for e in text.values())
    assert {"resnet50", "efficientnet_b0"} <= set(image)


def test_unknown_name_is_a_key_error():
    with pytest.raises(KeyError, match="Unknown encoder"):
        get_encoder("no-such-encoder")


def test_torchvision_without_local_weights_is_unavailable():
    info = {e.name: e for e in list_encoders("image")}
    if info["resnet18"].available:
        pytest.skip("resnet18 weights are present in the torch hub cache on this machine")
    with pytest.raises(EncoderUnavailableError, match="not available offline"):
        get_encoder("resnet18")


def test_register_custom_encoder(counting_text):
    from recsys.features import EncoderInfo, register_encoder

    register_encoder(
        "counting-test",
        lambda **kw: counting_text,
        EncoderInfo("counting-test", "text", 8, "test only"),
        overwrite=True,
    )
    assert get_encoder("Counting-Test") is counting_text
    assert any(e.name == "counting-test" for e in list_encoders("text"))
