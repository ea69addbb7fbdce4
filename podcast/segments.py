"""Splitting text into segments that one Realtime response can narrate.

One response stops at 4,096 output tokens (about 3.4 minutes of audio), so longer texts
are narrated segment by segment. Segments break at paragraph, then sentence, then clause
boundaries, never inside a word; a heading stays with what follows it. The same text
always gives the same segments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

DEFAULT_MAX_WORDS: Final = 300
"""About two minutes of speech at 150 words a minute: well under the output-token cap."""

Boundary = Literal["paragraph", "sentence", "end"]
"""What follows a segment: a paragraph break, a sentence (or clause) break, or nothing."""

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+")
_CLAUSE_END = re.compile(r"(?<=[,;:—–、，；：])\s+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")


@dataclass(frozen=True, slots=True)
class Segment:
    """One piece of the text, and the kind of break that follows it."""

    index: int
    text: str
    boundary: Boundary = "end"


def size_in_words(text: str) -> int:
    """Spoken length in words; CJK characters count as about 1.5 characters a word."""
    cjk = len(_CJK.findall(text))
    return len(text.split()) + round(cjk / 1.5)


def split_text(text: str, max_words: int = DEFAULT_MAX_WORDS) -> list[Segment]:
    """Split ``text`` into segments of at most ``max_words`` (a single word may exceed it).

    The last segment's boundary is ``"end"``.
    """
    if max_words < 1:
        raise ValueError("max_words must be positive")
    units: list[tuple[str, Boundary]] = []  # (text, the break after it)
    for paragraph in _paragraphs(text):
        pieces = _split_to_fit(paragraph, max_words, (_SENTENCE_END, _CLAUSE_END))
        units += [(piece, "sentence") for piece in pieces[:-1]]
        units.append((pieces[-1], "paragraph"))

    segments: list[Segment] = []
    text_so_far = ""
    words_so_far = 0
    boundary_before: Boundary = "end"
    for unit, boundary in units:
        words = size_in_words(unit)
        if text_so_far and words_so_far + words > max_words:
            segments.append(Segment(len(segments), text_so_far, boundary_before))
            text_so_far, words_so_far = "", 0
        if text_so_far:
            text_so_far += "\n\n" if boundary_before == "paragraph" else " "
        text_so_far += unit
        words_so_far += words
        boundary_before = boundary
    if text_so_far:
        segments.append(Segment(len(segments), text_so_far, "end"))
    return segments


def _paragraphs(text: str) -> list[str]:
    """Paragraphs, with a heading (a short line without end punctuation) joined to the next."""
    paragraphs = [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]
    merged: list[str] = []
    pending_heading: str | None = None
    for paragraph in paragraphs:
        if pending_heading is not None:
            paragraph = f"{pending_heading}\n\n{paragraph}"
            pending_heading = None
        if _is_heading(paragraph):
            pending_heading = paragraph
            continue
        merged.append(paragraph)
    if pending_heading is not None:
        merged.append(pending_heading)
    return merged


def _is_heading(paragraph: str) -> bool:
    return (
        "\n" not in paragraph
        and size_in_words(paragraph) <= 12
        and not re.search(r"[.!?…。！？:;,]$", paragraph)
    )


def _split_to_fit(text: str, max_words: int, boundaries: tuple[re.Pattern[str], ...]) -> list[str]:
    """Split ``text`` at the first kind of boundary that helps, packing pieces back up to the limit."""
    if size_in_words(text) <= max_words:
        return [text]
    if not boundaries:
        return _split_words(text, max_words)
    pieces = [p for p in boundaries[0].split(text) if p.strip()]
    if len(pieces) == 1:
        return _split_to_fit(text, max_words, boundaries[1:])
    out: list[str] = []
    for piece in pieces:
        for part in _split_to_fit(piece.strip(), max_words, boundaries[1:]):
            if out and size_in_words(out[-1]) + size_in_words(part) <= max_words:
                out[-1] = f"{out[-1]} {part}"
            else:
                out.append(part)
    return out


def _split_words(text: str, max_words: int) -> list[str]:
    words = text.split()
    if len(words) <= 1:
        # One enormous "word" (or CJK run without spaces): split by characters.
        step = max(1, round(max_words * 1.5))
        return [text[i : i + step] for i in range(0, len(text), step)]
    return [" ".join(words[i : i + max_words]) for i in range(0, len(words), max_words)]
