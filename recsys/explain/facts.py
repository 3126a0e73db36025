"""What counts as a fact in an explanation, and a check that a text states no other facts.

An explanation's sentence (and any language-model rephrasing of it) may only mention what the
structured evidence holds. :func:`unsupported_facts` lists the parts of a text that the evidence
does not back:

* every number (``52``, ``0.83``, ``31%``) must be a number of the evidence, at the precision shown
  (a fraction such as 0.52 also backs ``52``: percentages);
* every quoted span (“...”, "...", *...*) must be part of an evidence string (a title, a label);
* every capitalised word must be a word of the evidence or a plain English word from a short list
  (sentence openers such as "Recommended", "Like", "It", "You");
* every *catalogue term* (a word of the catalogue's labels: genres, categories, tags, brands, cast,
  passed as ``catalogue_terms``) must be in the evidence: "a comedy" is refused when the evidence
  never says comedy, even in lower case.

:func:`mentions_evidence` asks the other way round: does the text say anything of the evidence at
all (a title, a shared label, a salient word, the leading modality)? Random or empty text does not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "STOPWORDS",
    "GENERIC_WORDS",
    "tokenize",
    "evidence_strings",
    "evidence_vocabulary",
    "unsupported_facts",
    "mentions_evidence",
]

# English stopwords (function words): never salient, never facts.
STOPWORDS = frozenset(
    """
a about above after again against all almost also am an and any are aren't as at be because been before being
below between both but by can cannot could couldn't did didn't do does doesn't doing don't down during each
either else ever every few for from further get gets got had hadn't has hasn't have haven't having he he'd
he'll he's her here here's hers herself him himself his how how's however i i'd i'll i'm i've if in into is
isn't it it's its itself just let's may me might more most much must mustn't my myself neither no nor not now
of off on once one only or other ought our ours ourselves out over own per quite rather really same shall
shan't she she'd she'll she's should shouldn't since so some still such than that that's the their theirs them
themselves then there there's these they they'd they'll they're they've this those though through thus to
too under until up upon us very was wasn't we we'd we'll we're we've were weren't what what's when when's
where where's whether which while who who's whom whose why why's will with within without won't would
wouldn't yet you you'd you'll you're you've your yours yourself yourselves
""".split()
)

# Plain words a rephrasing may use (capitalised at a sentence start, or anywhere): not facts.
GENERIC_WORDS = frozenset(
    """
recommended recommend recommends recommending recommendation suggested suggest suggests picked pick chosen
choose like likes liked similar similarly resembles resemble resembling alike much mainly mostly partly
because since given based so also too and but this that it its you your yours we our here there these
those they their the a an as both each many several some one two three first second third more most less
least than then which who people users viewers buyers customers shoppers taste tastes history items item
titles title picks pick enjoyed enjoy enjoyable rated rating ratings highly high well good great favourite
favorite favourites favorites shares share shared sharing same common together words word description
descriptions picture pictures image images look looks looked looking visual visually attributes attribute
behaviour behavior price band prices popular popularity niche pick hidden gem gems catalogue catalog
score scores percent per cent model fits fit match matches matching close closely near nearly strong
strongly what with for from in on of to by about out into is are was were be been being has have had
do does did not no yes just only even still yet again other others another new newer chose chosen choice
similar-taste perhaps maybe might could would should will can may sure definitely probably
""".split()
)

_WORD = re.compile(r"[^\W\d_][\w'’-]*", re.UNICODE)
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:[.,]\d+)?(?![\w])")
_QUOTED = re.compile(r"“([^”]+)”|\"([^\"]+)\"|\*([^*]+)\*|«([^»]+)»")
_CAPITALISED = re.compile(r"\b[A-Z][\w'’-]*")


def tokenize(text: str) -> list[str]:
    """Lower-cased words (letters first; digits and inner apostrophes or hyphens allowed)."""
    return [w.lower().strip("'’-") for w in _WORD.findall(str(text)) if w.strip("'’-")]


def _walk(value: Any) -> Iterable[Any]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _walk(item)
    else:
        yield value


def evidence_strings(evidence: Any) -> list[str]:
    """Every string of a (nested) evidence structure."""
    return [v for v in _walk(evidence) if isinstance(v, str) and v.strip()]


def _number_forms(value: float) -> set[str]:
    forms: set[str] = set()
    if not math.isfinite(value):
        return forms
    for x in (value, value * 100.0) if abs(value) <= 1.0 else (value,):
        forms |= {str(int(round(x))), f"{x:.1f}", f"{x:.2f}", f"{x:.0f}"}
        if float(x).is_integer():
            forms.add(str(int(x)))
    if abs(value) <= 1.0:
        forms |= {f"{value:.3f}"}
    return {f.lstrip("+") for f in forms}


def evidence_vocabulary(evidence: Any) -> dict[str, set[str]]:
    """Words, numbers (as they may be written) and phrases (lower-cased strings) of the evidence."""
    words: set[str] = set()
    numbers: set[str] = set()
    phrases: set[str] = set()
    for value in _walk(evidence):
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)):
            numbers |= _number_forms(float(value))
        elif isinstance(value, str):
            phrases.add(value.lower().strip())
            words.update(tokenize(value))
            for match in _NUMBER.findall(value):
                try:
                    numbers |= _number_forms(float(match.replace(",", "")))
                except ValueError:
                    pass
                numbers.add(match)
        else:
            try:
                numbers |= _number_forms(float(value))
            except (TypeError, ValueError):
                pass
    # a word is also backed by its plural / singular form (genre "Thriller" backs "thrillers")
    words |= {w + "s" for w in words} | {w[:-1] for w in words if w.endswith("s") and len(w) > 3}
    return {"words": words, "numbers": numbers, "phrases": phrases}


def unsupported_facts(text: str, evidence: Any, catalogue_terms: Iterable[str] = ()) -> list[str]:
    """The parts of ``text`` that ``evidence`` does not back (empty list: the text is faithful)."""
    vocab = evidence_vocabulary(evidence)
    words, numbers, phrases = vocab["words"], vocab["numbers"], vocab["phrases"]
    problems: list[str] = []
    for match in _NUMBER.findall(text):
        bare = match.replace(",", "").lstrip("+")
        if match not in numbers and bare not in numbers:
            problems.append(match)
    for groups in _QUOTED.findall(text):
        quoted = next((g for g in groups if g), "").strip().strip(".,;:!?").lower()
        if quoted and not any(quoted in phrase for phrase in phrases):
            problems.append(quoted)
    for word in _CAPITALISED.findall(text):
        lower = word.lower().strip("'’-")
        if lower.endswith("'s") or lower.endswith("’s"):
            lower = lower[:-2]
        if lower and lower not in words and lower not in GENERIC_WORDS and lower not in STOPWORDS:
            problems.append(word)
    terms = {t.lower() for t in catalogue_terms} - STOPWORDS - GENERIC_WORDS
    if terms:
        for word in tokenize(text):
            if word in terms and word not in words:
                problems.append(word)
    return list(dict.fromkeys(problems))


def mentions_evidence(text: str, key_facts: Iterable[str]) -> bool:
    """True when ``text`` mentions at least one of ``key_facts`` (case-insensitive, whole words)."""
    lower = " " + " ".join(tokenize(text)) + " "
    for fact in key_facts:
        tokens = tokenize(fact)
        if tokens and f" {' '.join(tokens)} " in lower:
            return True
    return False
