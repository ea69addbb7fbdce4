"""How faithfully a transcript reads its source: normalized word-level similarity.

Realtime models are conversational: they may paraphrase, skip or answer the text. The
narration compares every segment's transcript with its source and narrates it again
when the similarity is too low.

``similarity = 1 - word error rate`` (edits needed to turn the source words into the
transcript words, divided by the number of source words), floored at 0. Words are
compared lower-cased, without punctuation, with typographic apostrophes unified. The
word edit distance is RapidFuzz's Levenshtein distance over the word lists.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from rapidfuzz.distance import Levenshtein

_WORD: Final = re.compile(r"[^\W_]+(?:'[^\W_]+)*", re.UNICODE)
_CJK: Final = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def words(text: str) -> list[str]:
    """The comparable words of ``text``; each CJK character counts as a word."""
    normalized = unicodedata.normalize("NFKC", text).lower().replace("’", "'").replace("‘", "'")
    out: list[str] = []
    for token in _WORD.findall(normalized):
        if _CJK.search(token):
            out.extend(ch for ch in token if not ch.isspace())
        else:
            out.append(token)
    return out


def similarity(source: str, transcript: str) -> float:
    """1 minus the word error rate of ``transcript`` against ``source``, from 0 to 1."""
    reference, hypothesis = words(source), words(transcript)
    if not reference:
        return 1.0 if not hypothesis else 0.0
    return max(0.0, 1.0 - Levenshtein.distance(reference, hypothesis) / len(reference))
