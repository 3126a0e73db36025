"""The words the engine and the app use for each modality: one table, so a page, a sentence and a chart
never name the same modality differently."""

from __future__ import annotations

__all__ = ["MODALITY_NAMES", "MODALITY_PHRASES", "POPULARITY"]

#: Not a modality but a part of the fusion score: the popularity prior, added to every user's scores (more
#: for short histories) and not weighted by the attention gate. Explanations list it beside the modalities.
POPULARITY = "popularity"

#: Display names (chart axes, metrics, legends).
MODALITY_NAMES = {
    "behaviour": "Behaviour",
    "text": "Text",
    "image": "Picture",
    "attributes": "Attributes",
    POPULARITY: "Popularity",
}

#: What the explanation sentences say a recommendation draws on.
MODALITY_PHRASES = {
    "behaviour": "the choices of people with similar taste",
    "text": "its description",
    "image": "its picture",
    "attributes": "its attributes",
    POPULARITY: "how popular it is",
}
