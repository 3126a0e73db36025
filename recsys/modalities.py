"""The words the engine and the app use for each modality: one table, so a page, a sentence and a chart
never name the same modality differently."""

from __future__ import annotations

__all__ = ["MODALITY_NAMES", "MODALITY_PHRASES"]

#: Display names (chart axes, metrics, legends).
MODALITY_NAMES = {"behaviour": "Behaviour", "text": "Text", "image": "Picture", "attributes": "Attributes"}

#: What the explanation sentences say a recommendation draws on.
MODALITY_PHRASES = {
    "behaviour": "the choices of people with similar taste",
    "text": "its description",
    "image": "its picture",
    "attributes": "its attributes",
}
