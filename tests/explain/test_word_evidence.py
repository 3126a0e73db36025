"""The shared words an explanation cites: salient catalogue words, never vague ones ("good", "people")."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import scipy.sparse as sp

from recsys.data import schema as S
from recsys.explain.explainer import ExplainContext, _word_evidence


def _context(descriptions: list[str]) -> ExplainContext:
    ids = [f"I{k}" for k in range(len(descriptions))]
    items = pd.DataFrame({"item_id": ids, "title": [f"Item {k}" for k in range(len(ids))], "text": descriptions})
    model = SimpleNamespace(item_ids=ids, seen=sp.csr_matrix((1, len(ids))))
    return ExplainContext(model, items, {"item_id": S.ID, "title": S.TEXT, "text": S.TEXT})


def test_vague_words_are_not_cited_but_specific_ones_are():
    # each word of the two items is rare in the catalogue (the filler below is unrelated), so document
    # frequency alone would let "good" and "people" through as shared evidence
    filler = [f"unrelated{k} gadget{k} widget{k}" for k in range(40)]
    ctx = _context(["good people love this telescope", "a telescope good people use"] + filler)
    words = [entry["word"] for entry in _word_evidence(ctx, "I0", ["I1"])]
    assert words == ["telescope"]


def test_pieces_of_a_web_address_are_not_words_items_share():
    # "visit Amazon.com/yourorders" in every gift card's description: "yourorders" was cited as shared text
    filler = [f"unrelated{k} gadget{k} widget{k}" for k in range(40)]
    ctx = _context(
        ["santa tin card, see Amazon.com/yourorders", "santa tin gift, visit https://shop.example.org/yourorders"]
        + filler
    )
    words = {entry["word"] for entry in _word_evidence(ctx, "I0", ["I1"])}
    assert "santa" in words and not words & {"yourorders", "amazon", "com", "example", "shop"}


def test_a_label_most_of_the_catalogue_carries_is_not_evidence():
    from recsys.explain.explainer import _label_evidence

    ids = [f"I{k}" for k in range(10)]
    items = pd.DataFrame(
        {
            "item_id": ids,
            "main_cat": ["Gift Cards"] * 9 + ["Toys"],  # a column that is one value almost everywhere
            "brand": ["Acme", "Acme"] + [f"B{k}" for k in range(8)],
        }
    )
    model = SimpleNamespace(item_ids=ids, seen=sp.csr_matrix((1, len(ids))))
    ctx = ExplainContext(model, items, {"item_id": S.ID, "main_cat": S.CATEGORICAL, "brand": S.CATEGORICAL})
    cited = {entry["column"]: entry["values"] for entry in _label_evidence(ctx, "I0", ["I1"], ["I1"])}
    assert cited == {"brand": ["Acme"]}  # "shares main cat Gift Cards" says nothing about why this item


def test_the_text_modality_is_named_by_what_the_item_has_filled_in():
    """A book with no description was "recommended mainly for its description": the text encoder had read only
    its title."""
    ctx = _context(["A saga across three generations", "", "   "])
    assert ctx.text_phrase("I0") == "its title and text"
    assert ctx.text_phrase("I1") == ctx.text_phrase("I2") == "its title"
    assert ctx.text_phrase("unknown") == "its description"
