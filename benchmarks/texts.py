"""Deterministic English prose of a given length, for benchmarks.

The text reads like plain narration (sentences of eight to twenty words, paragraphs of
three to seven sentences) and is the same for the same arguments on every machine, so
runs can be compared. About :data:`WORDS_PER_MINUTE` words make a minute of speech.
"""

from __future__ import annotations

import random
from typing import Final

WORDS_PER_MINUTE: Final = 150
"""Words in a minute of narration (the emulator's synthetic voice speaks about this fast)."""

_OPENINGS: Final = (
    "In the morning",
    "After the long winter",
    "Along the northern coast",
    "For many years",
    "Every autumn",
    "Near the old harbour",
    "Later that evening",
    "Across the valley",
    "At the edge of town",
    "Before the bridge was built",
)
_SUBJECTS: Final = (
    "the ferryman",
    "a young engineer",
    "the village council",
    "our guide",
    "the river",
    "a travelling merchant",
    "the lighthouse keeper",
    "two cartographers",
    "the orchard workers",
    "a curious child",
    "the choir",
    "the old mill",
)
_VERBS: Final = (
    "carried",
    "measured",
    "repaired",
    "described",
    "followed",
    "painted",
    "remembered",
    "collected",
    "explained",
    "welcomed",
    "studied",
    "guarded",
)
_OBJECTS: Final = (
    "the wooden boats",
    "a map of the hills",
    "the stone walls",
    "every lantern on the pier",
    "the quiet fields",
    "a basket of apples",
    "the narrow road",
    "the winter stores",
    "a letter from the capital",
    "the tall grass by the water",
    "the bells of the chapel",
    "the rain clouds",
)
_ENDINGS: Final = (
    "with great care",
    "before the sun went down",
    "while the wind turned cold",
    "as the tide came in",
    "for the travellers who would follow",
    "without saying a word",
    "long after the others had gone home",
    "under a sky full of birds",
    "in the light of the lamps",
    "because nobody else would",
)
_CONNECTIVES: Final = ("and then", "so", "but", "while", "and")


def _sentence(rng: random.Random) -> str:
    parts: list[str] = []
    if rng.random() < 0.5:
        parts.append(rng.choice(_OPENINGS) + ",")
    parts += [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)]
    if rng.random() < 0.6:
        parts.append(rng.choice(_ENDINGS))
    if rng.random() < 0.35:
        parts[-1] += ","
        parts += [rng.choice(_CONNECTIVES), rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)]
    sentence = " ".join(parts)
    return sentence[0].upper() + sentence[1:] + "."


def prose(words: int, *, seed: int = 0) -> str:
    """At least ``words`` words of prose (whole sentences), in paragraphs separated by blank lines."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    total = 0
    while total < words:
        sentences: list[str] = []
        for _ in range(rng.randint(3, 7)):
            sentence = _sentence(rng)
            sentences.append(sentence)
            total += len(sentence.split())
            if total >= words:
                break
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def prose_for_minutes(minutes: float, *, seed: int = 0) -> str:
    """Prose of about ``minutes`` of speech (:data:`WORDS_PER_MINUTE` words a minute)."""
    return prose(max(1, round(minutes * WORDS_PER_MINUTE)), seed=seed)
