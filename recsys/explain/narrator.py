"""Optional narrator: a local causal language model rephrases an explanation's evidence.

Nothing ships: the user points at any Hugging Face causal LM folder on disk (``config.json``,
weights, tokenizer). It is loaded with ``local_files_only=True`` (never a download), receives only
the structured evidence of an :class:`~recsys.explain.explainer.Explanation` as its prompt, and
its output is *checked* before anyone sees it (:func:`check_narration`):

* it must say something of the evidence (a title, a shared label or word, a modality);
* it must state nothing the evidence does not hold (:func:`recsys.explain.facts.unsupported_facts`:
  numbers, quoted titles, capitalised words, catalogue labels).

Whenever the check fails, the model is missing or generation breaks, the plain sentence built from
the evidence is used instead and :class:`Narration` says why. The app works fully without it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .facts import mentions_evidence, unsupported_facts

__all__ = ["Narration", "Narrator", "NarratorUnavailable", "narrate", "build_prompt", "check_narration", "key_facts"]

_MIN_CHARS, _MAX_CHARS = 20, 500


class NarratorUnavailable(RuntimeError):
    """The narrator model folder is missing or cannot be loaded offline."""


@dataclass
class Narration:
    text: str  # what to show: the checked rephrasing, or the plain sentence
    source: str  # "narrator" (checked model output) or "sentence" (the plain evidence sentence)
    reason: str | None = None  # why the sentence was used instead of the model output
    raw: str | None = None  # the model's raw output, when there was one
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "source": self.source,
            "reason": self.reason,
            "raw": self.raw,
            "problems": list(self.problems),
        }


def key_facts(explanation: Any) -> list[str]:
    """Facts a faithful narration should mention at least one of."""
    facts = explanation.facts()
    out = [facts["item"]["title"]]
    out += [h["title"] for h in facts.get("history", [])]
    for label in facts.get("labels", []):
        out += list(label.get("values", []))
    out += [w["word"] for w in facts.get("words", [])]
    out += [
        m["label"].replace("its ", "").replace("the ", "")
        for m in facts.get("modalities", [])
        if m.get("share_pct", 0) > 0
    ]
    if facts.get("visual"):
        out.append(facts["visual"]["title"])
    return [f for f in out if f]


def build_prompt(explanation: Any) -> str:
    """The structured evidence as plain lines, and the instruction to use nothing else."""
    facts = explanation.facts()
    lines = ["Facts about a recommendation (use only these facts):", f"- recommended item: {facts['item']['title']}"]
    for m in facts.get("modalities", []):
        if m.get("present") and m.get("share_pct", 0) > 0:
            lines.append(f"- {m['share_pct']}% of the score came from {m['label']}")
    for h in facts.get("history", []):
        rated = f" (rated {h['rating']:g}{', highly' if h.get('rated_highly') else ''})" if h.get("rating") else ""
        lines.append(f"- similar to an item the user liked: {h['title']}{rated}")
    for label in facts.get("labels", [])[:3]:
        lines.append(f"- shared {label['column_label']}: {', '.join(label['values'])}")
    if facts.get("words"):
        lines.append("- shared words: " + ", ".join(w["word"] for w in facts["words"]))
    if facts.get("price"):
        lines.append(f"- price band: {facts['price']['band']}")
    if facts.get("visual"):
        lines.append(f"- its picture looks like: {facts['visual']['title']}")
    popularity = facts.get("popularity") or {}
    if popularity:
        lines.append(f"- more popular than {popularity['percentile']}% of the catalogue")
    lines.append("Rephrase these facts as one friendly sentence to the user. Do not add anything else.")
    lines.append("Sentence:")
    return "\n".join(lines)


def check_narration(text: str, explanation: Any, catalogue_terms: Iterable[str] = ()) -> list[str]:
    """Problems with a narration (empty list: it may be shown)."""
    text = (text or "").strip()
    if len(text) < _MIN_CHARS:
        return ["too short or empty"]
    problems = [f"not in the evidence: {p}" for p in unsupported_facts(text, explanation.facts(), catalogue_terms)]
    if not mentions_evidence(text, key_facts(explanation)):
        problems.append("mentions none of the evidence")
    return problems


def _clean(raw: str) -> str:
    text = re.sub(r"\s+", " ", raw or "").strip()
    # keep the first sentence or two: generation often rambles on
    parts = re.split(r"(?<=[.!?])\s+", text)
    out = ""
    for part in parts:
        if len(out) + len(part) > _MAX_CHARS:
            break
        out = (out + " " + part).strip()
        if out.endswith((".", "!", "?")) and len(out) >= 60:
            break
    return out or text[:_MAX_CHARS]


class Narrator:
    """A local Hugging Face causal LM that rephrases evidence (see the module docstring)."""

    _lock = threading.Lock()

    def __init__(
        self, model_dir: str | Path, *, max_new_tokens: int = 60, device: str = "cpu", max_prompt_tokens: int = 384
    ):
        path = Path(model_dir).expanduser()
        if not path.is_dir() or not (path / "config.json").is_file():
            raise NarratorUnavailable(
                f"no local language model at {path}: give a folder with config.json, the "
                "weights and the tokenizer (nothing is downloaded)"
            )
        self.model_dir = path
        self.max_new_tokens = int(max_new_tokens)
        self.max_prompt_tokens = int(max_prompt_tokens)
        self.device = device
        self._model: Any = None  # a transformers causal LM and its tokenizer, loaded lazily by _load
        self._tokenizer: Any = None

    def _load(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            try:
                from transformers import AutoModelForCausalLM, AutoTokenizer

                from ..features.text import quiet_transformers_loading

                with quiet_transformers_loading():
                    tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
                    # Any: transformers types Module.to on this class as the PreTrainedModel wrapper's, wrongly
                    model: Any = AutoModelForCausalLM.from_pretrained(str(self.model_dir), local_files_only=True)
            except Exception as exc:  # missing files, unknown architecture, no tokenizer...
                raise NarratorUnavailable(f"cannot load the language model in {self.model_dir} offline: {exc}") from exc
            model.to(self.device).eval()
            self._tokenizer, self._model = tokenizer, model

    def generate(self, prompt: str) -> str:
        """The model's continuation of ``prompt`` (greedy, deterministic), prompt excluded."""
        import torch

        self._load()
        tokenizer, model = self._tokenizer, self._model
        encoded = tokenizer(prompt, return_tensors="pt")
        input_ids = encoded["input_ids"][:, -self.max_prompt_tokens :].to(self.device)
        attention = encoded.get("attention_mask")
        attention = (
            torch.ones_like(input_ids) if attention is None else attention[:, -self.max_prompt_tokens :].to(self.device)
        )
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        with torch.no_grad():
            output = model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=pad if pad is not None else 0,
            )
        return tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True)

    def narrate(self, explanation: Any, catalogue_terms: Iterable[str] = ()) -> Narration:
        """A checked rephrasing of ``explanation``, or its plain sentence with the reason."""
        try:
            raw = self.generate(build_prompt(explanation))
        except Exception as exc:
            return Narration(explanation.sentence, "sentence", f"the narrator failed: {exc}")
        text = _clean(raw)
        problems = check_narration(text, explanation, catalogue_terms)
        if problems:
            return Narration(
                explanation.sentence,
                "sentence",
                "the narration was refused: " + "; ".join(problems),
                raw=raw,
                problems=problems,
            )
        return Narration(text, "narrator", None, raw=raw)


_NARRATORS: dict[str, Narrator] = {}


def narrate(
    explanation: Any,
    model_dir: str | Path | None = None,
    *,
    narrator: Narrator | None = None,
    catalogue_terms: Iterable[str] = (),
) -> Narration:
    """Rephrase with the narrator in ``model_dir`` (cached per folder), or return the plain sentence."""
    if narrator is None and model_dir is None:
        return Narration(explanation.sentence, "sentence", "no narrator model was given")
    if narrator is None:
        assert model_dir is not None  # returned above when both are missing
        key = str(Path(model_dir).expanduser().resolve())
        try:
            narrator = _NARRATORS.get(key) or _NARRATORS.setdefault(key, Narrator(model_dir))
        except NarratorUnavailable as exc:
            return Narration(explanation.sentence, "sentence", str(exc))
    return narrator.narrate(explanation, catalogue_terms)
