"""Splitting text into segments that one Realtime response can narrate.

One response stops at 4,096 output tokens (about 3.4 minutes of audio), so longer texts
are narrated segment by segment. Segments break at paragraph, then sentence, then clause
boundaries, never inside a word; a heading stays with what follows it. The same text
always gives the same segments.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Final, Literal

from podcast.models import has_speakable_text
from podcast.settings import DEFAULT_SEGMENT_WORDS

DEFAULT_MAX_WORDS: Final = DEFAULT_SEGMENT_WORDS
"""About two minutes of speech at 150 words a minute: well under the output-token cap."""

PARAGRAPH_PREFERENCE: Final = 0.3
"""Balanced cuts take a paragraph break over a sentence break up to this share of a segment farther."""

Boundary = Literal["paragraph", "sentence", "turn", "end"]
"""What follows a segment: a paragraph break, a sentence (or clause) break, the end of a
conversation turn (another speaker follows), or nothing."""

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_CLOSERS = r"\"'”’)\]」』）"
_SENTENCE_END = re.compile(
    # The space after a sentence's end and the quotes or brackets that close it (kept with
    # it: up to two); Chinese and Japanese full stops (a run of them, and their closers)
    # need none. Fixed-width lookbehinds: ``re`` has no variable-width ones.
    rf"(?:(?<=[.!?…])|(?<=[.!?…][{_CLOSERS}])|(?<=[.!?…][{_CLOSERS}]{{2}}))\s+"
    rf"|(?:(?<=[。！？])|(?<=[。！？][{_CLOSERS}])|(?<=[。！？][{_CLOSERS}]{{2}}))(?![。！？{_CLOSERS}])\s*"
)
"""Where a sentence ends: Western punctuation is followed by whitespace, Chinese and
Japanese full stops need none."""
_NO_SENTENCE_END = re.compile(
    r"(?:^\(?(?:\d{1,3}|[A-Za-z]|[IVXLCDM]{1,6})[.)]"  # an enumerator alone: "2.", "b)", "IV."
    r"|(?:^|[\s.])[A-Z]\."  # an initial: "J. R. R. Tolkien", "U.S. Army"
    r"|(?:^|\s)(?:Mr|Mrs|Ms|Mx|Dr|Prof|Sr|Jr|St|Mt|Ft|Gen|Col|Capt|Lt|Sgt|Rev|Hon|Gov|Sen|Rep"
    r"|vs|e\.g|i\.e|cf|approx|ca|a\.m|p\.m|Fig|fig|No|no|Nr|Vol|vol|Ch|ch|p|pp|Ed|ed|Eq|eq|Ref|ref)\.)$"
)
"""A piece that ends so does not end a sentence ("Dr. Smith", "Fig. 2", "2. Methods"): no
segment is cut after it. Where it did end one, only a place to cut is lost."""
_CLAUSE_END = re.compile(r"(?<=[,;:—–])\s+|(?<=[、，；：])(?![、，；：])\s*")
_CLOSE_UP = re.compile(r"[。！？、，；：][」』”’）)\]]*$")
"""A piece that ends so is followed by the next without a space (Chinese and Japanese)."""
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_CJK_OR_MARK = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uf900-\ufaff\uff01-\uff0f\uff1a-\uff20\uff5b-\uff65]")
"""Chinese and Japanese characters (written without spaces; Korean has them), and CJK and
full-width punctuation (not full-width letters or digits)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One piece of the text, and the kind of break that follows it."""

    index: int
    text: str
    boundary: Boundary = "end"


def joiner(piece: str) -> str:
    """What goes between ``piece`` and the text after it within a paragraph: a space, or
    nothing after a Chinese or Japanese sentence or clause end (those scripts use none)."""
    return "" if _CLOSE_UP.search(piece) else " "


def _within_paragraph(parts: list[str]) -> str:
    """``parts`` (pieces of one paragraph, in order) as one text, each :func:`joiner` apart."""
    return "".join(part + joiner(part) for part in parts[:-1]) + parts[-1]


def size_in_words(text: str) -> int:
    """Spoken length in words; CJK characters count as about 1.5 characters a word, and
    their punctuation as nothing (a run of CJK is not a word of its own on top of that)."""
    cjk = len(_CJK.findall(text))
    return len(_CJK_OR_MARK.sub(" ", text).split()) + round(cjk / 1.5)


def split_text(text: str, max_words: int = DEFAULT_MAX_WORDS, *, parallelism: int = 1) -> list[Segment]:
    """Split ``text`` into segments of at most ``max_words`` (a single word may exceed it).

    With ``parallelism`` above 1, a text that needs more than one segment is cut into
    segments of about equal size instead, their number a multiple of ``parallelism`` where
    that keeps them above a third of ``max_words``, so the last round of parallel sessions
    is not one lone long segment. A segment may then exceed ``max_words`` by about a
    sentence. Cuts fall between sentences (or clauses), preferably at a paragraph break.
    The last segment's boundary is ``"end"``. A piece with nothing to say (``* * *``, a
    lone ``!!!``: see :func:`~podcast.models.has_speakable_text`) never becomes a segment of
    its own, which would open a session only to get silence: it joins its neighbour.
    """
    if max_words < 1 or parallelism < 1:
        raise ValueError("max_words and parallelism must be positive")
    units: list[tuple[str, Boundary]] = []  # (text, the break after it)
    for paragraph in _paragraphs(text):
        pieces = [
            piece
            for sentence in _sentences(paragraph)
            # A sentence glued over what seemed no end ("plan B. Nobody") that is too long is
            # cut at those ends first, then at clauses: never worse than before the gluing.
            for piece in _split_to_fit(sentence, max_words, (_SENTENCE_END, _CLAUSE_END))
        ]
        units += [(piece, "sentence") for piece in pieces[:-1]]
        units.append((pieces[-1], "paragraph"))

    sizes = [size_in_words(unit) for unit, _ in units]
    if parallelism > 1:
        cuts = _balanced_cuts(sizes, [boundary for _, boundary in units], max_words, parallelism)
    else:
        cuts = _greedy_cuts(sizes, max_words)
    segments: list[Segment] = []
    start = 0
    for end in [*cuts, len(units)]:
        if end <= start:
            continue
        parts = units[start:end]
        text_of_segment = parts[0][0]
        for (previous, boundary), (unit, _) in itertools.pairwise(parts):
            text_of_segment += ("\n\n" if boundary == "paragraph" else joiner(previous)) + unit
        boundary_after: Boundary = parts[-1][1] if end < len(units) else "end"
        segments.append(Segment(len(segments), text_of_segment, boundary_after))
        start = end
    return _without_silent_segments(segments)


def _sentences(paragraph: str) -> list[str]:
    """The sentences of ``paragraph``, stripped: split after each sentence end but those
    that are none (:data:`_NO_SENTENCE_END`). (A lower-case word after a full stop is no sign:
    some texts are written all in lower case.)"""
    groups: list[list[str]] = []
    glued = False
    for piece in (piece.strip() for piece in _SENTENCE_END.split(paragraph)):
        if not piece:
            continue
        if glued:
            groups[-1].append(piece)
        else:
            groups.append([piece])
        # Each piece is looked at once, and each group joined once: linear in the paragraph.
        glued = _NO_SENTENCE_END.search(piece) is not None
    return [_within_paragraph(group) for group in groups]


_SEPARATOR: Final[dict[Boundary, str]] = {"paragraph": "\n\n", "sentence": " ", "turn": "\n\n", "end": " "}


def _without_silent_segments(segments: list[Segment]) -> list[Segment]:
    """``segments`` with each one that has nothing to say joined to the one before it (the
    first to the one after it); a text with nothing to say at all stays one segment."""
    joined: list[tuple[str, Boundary]] = []
    carried = ""
    for segment in segments:
        if not has_speakable_text(segment.text):
            if joined:
                text, boundary = joined[-1]
                joined[-1] = (text + _SEPARATOR[boundary] + segment.text, segment.boundary)
            else:
                carried += segment.text + _SEPARATOR[segment.boundary]
            continue
        joined.append((carried + segment.text, segment.boundary))
        carried = ""
    if not joined:
        return segments
    return [Segment(index, text, boundary) for index, (text, boundary) in enumerate(joined)]


def _greedy_cuts(sizes: list[int], max_words: int) -> list[int]:
    """Unit indexes to start new segments at: as many units per segment as fit."""
    cuts: list[int] = []
    words_so_far = 0
    for index, words in enumerate(sizes):
        if words_so_far and words_so_far + words > max_words:
            cuts.append(index)
            words_so_far = 0
        words_so_far += words
    return cuts


def _balanced_cuts(
    sizes: list[int], boundaries: list[Boundary], max_words: int, parallelism: int
) -> list[int]:
    """Cuts for about equal segments, their number a multiple of ``parallelism`` when possible.

    Each cut is the unit boundary nearest to its ideal position ``k * total / count``,
    a paragraph break counting as closer by ``PARAGRAPH_PREFERENCE`` of a segment.
    """
    total = sum(sizes)
    needed = math.ceil(total / max_words)
    if needed <= 1:
        return []
    # No segment smaller than a third of the maximum: tiny sessions cost more than they save.
    count = max(needed, min(parallelism * math.ceil(needed / parallelism), total * 3 // max_words))
    target = total / count
    ends = list(itertools.accumulate(sizes))
    cuts: list[int] = []
    previous_end = 0
    for k in range(1, count):
        ideal = k * target
        best: tuple[float, int] | None = None
        for index in range(len(sizes) - 1):
            if ends[index] <= previous_end:
                continue
            score = abs(ends[index] - ideal) - (
                PARAGRAPH_PREFERENCE * target if boundaries[index] == "paragraph" else 0.0
            )
            if best is None or score < best[0]:
                best = (score, index)
            elif ends[index] > ideal + target:
                break
        if best is None:
            break
        cuts.append(best[1] + 1)
        previous_end = ends[best[1]]
    return cuts


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
    out: list[list[str]] = []
    size = 0  # of out[-1]'s parts: kept, not counted again at every part (linear, not quadratic)
    for piece in pieces:
        for part in _split_to_fit(piece.strip(), max_words, boundaries[1:]):
            words = size_in_words(part)
            if out and size + words <= max_words:
                out[-1].append(part)
                size += words
            else:
                out.append([part])
                size = words
    return [_within_paragraph(parts) for parts in out]


def _split_words(text: str, max_words: int) -> list[str]:
    words = text.split()
    if len(words) <= 1:
        # One enormous "word" (or CJK run without spaces): split by characters.
        step = max(1, round(max_words * 1.5))
        return [text[i : i + step] for i in range(0, len(text), step)]
    return [" ".join(words[i : i + max_words]) for i in range(0, len(words), max_words)]
