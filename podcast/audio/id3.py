"""ID3v2 tags for MP3 narrations (``mutagen``): title, show, date, narration id and chapters.

:func:`id3_tag` returns a whole ID3v2.3 tag as bytes (v2.3: what Apple Podcasts, most
players and podcast hosts read; CHAP/CTOC are defined for it by the ID3 chapter addendum)
to put before the first MP3 frame. :func:`chapters` picks chapter starts from the
narration's source text and timed words: at each heading (a short line as its own
paragraph, as Markdown headings become), where its words are said, even inside a segment;
in a text without headings, at the first paragraph break once a chapter has run
:data:`CHAPTER_MIN_SECONDS`.
"""

from __future__ import annotations

import bisect
import io
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from mutagen.id3 import CHAP, CTOC, ID3, TALB, TCON, TDRC, TIT2, TLEN, TPE1, TXXX, CTOCFlags
from rapidfuzz.distance import Indel

from podcast.audio.captions import Word

__all__ = ["CHAPTER_MIN_SECONDS", "OMITTED_TABLE", "Chapter", "SegmentSpan", "chapters", "id3_tag"]

CHAPTER_MIN_SECONDS: Final = 60.0
"""A chapter of a text without headings runs at least this long before a paragraph break ends it."""
OMITTED_TABLE: Final = "Table omitted."
"""What a Markdown document's table is read as (:mod:`podcast.services.documents`): never a heading."""
_HEADING_WORDS: Final = 12
_TITLE_WORDS: Final = 8
_NO_OFFSET: Final = 0xFFFFFFFF
"""CHAP's byte offsets "not given": players seek by time."""
_PARAGRAPH_BREAK: Final = re.compile(r"\n\s*\n")
_TOKEN: Final = re.compile(r"\w+")
_HEADING_CHARACTERS: Final = 80
"""A heading is no longer than this (a CJK line is one "word" however long)."""
_TITLE_CHARACTERS: Final = 60
_SENTENCE_END: Final = re.compile(r"[.!?…。！？:]$")
_NOT_A_HEADING: Final = re.compile(
    r"^[\"'“‘„«‹「『（【〈《—–*•-]"  # dialogue, a quotation, a plain-text list item
    r"|[.!,;…。！\"'”’»›)\]」』）】〉》]$"  # a sentence, an exclamation, a clause, a quotation's end
    r"|[.!?…][\"'”’)\]]*\s|[。！？][\"'”’)\]」』）】]*(?=\S)"  # more than one sentence
)


@dataclass(frozen=True, slots=True)
class Chapter:
    """A chapter: its title and where it starts and ends in the audio."""

    title: str
    start_seconds: float
    end_seconds: float


@dataclass(frozen=True, slots=True)
class SegmentSpan:
    """A narrated segment as chapters see it: its source text, the break after it, its times."""

    text: str
    boundary: str
    start_seconds: float
    end_seconds: float


@dataclass(frozen=True, slots=True)
class _Paragraph:
    """A paragraph start in the narration: its text, its heading if it is one, when it is said."""

    own: str
    rest: str
    """From the paragraph's start to its segment's end (a title's words may run on)."""
    heading: str | None
    sure: bool
    """A heading without end punctuation (:func:`_heading`)."""
    seconds: float
    whole: bool
    """Whether the paragraph ends in its segment (one the next segment goes on with is no heading)."""


def _heading(paragraph: str) -> tuple[str, bool] | None:
    """The paragraph as a heading, and whether it is a sure one: one short line (at most
    :data:`_HEADING_WORDS` words and :data:`_HEADING_CHARACTERS` characters) that is not
    dialogue, a list item (numbered ones too: "1. Flour"), an exclamation, a sentence
    (ending in ``.``: a short paragraph, or a Markdown list item, which
    :func:`~podcast.services.documents.markdown_to_speech` makes a sentence), more than one
    sentence or :data:`OMITTED_TABLE`. Sure without end punctuation (as Markdown headings
    become, and as the segments keep a heading with its paragraph); one ending in ``?`` or
    ``:`` may be a heading or a short paragraph. The title drops an end ``:``."""
    line = paragraph.strip()
    if (
        not line
        or "\n" in line
        or len(line.split()) > _HEADING_WORDS
        or len(line) > _HEADING_CHARACTERS
        or line == OMITTED_TABLE
        or _NOT_A_HEADING.search(line)
    ):
        return None
    title = line.rstrip(".:").strip()
    return (title, not _SENTENCE_END.search(line)) if title else None


SECTION_MIN_SECONDS: Final = 10.0
"""A numbered section (:func:`_numbered_sections`) runs at least this long."""
_NUMBERED: Final = re.compile(r"(\d{1,3})[.)]\s+(\S.*)")
"""A plain-text section heading's number: ``1. Introduction``, ``2) Methods``."""


def _numbered_sections(paragraphs: list[_Paragraph], total_seconds: float) -> list[_Paragraph]:
    """``paragraphs`` with plain-text numbered section headings made headings.

    A numbered line whose text after the number is a heading (:func:`_heading`) is taken
    for a list item on its own ("1. The oars"); but two or more of them numbered one after
    another (1, 2, 3, ...), each followed by a paragraph that is none and none right after
    another, are the sections of a document (``1. Introduction`` ... ``2. Methods``), titled
    with the whole line; unless a line ending in ``:`` introduces one of them (then they are
    its steps) or one runs shorter than :data:`SECTION_MIN_SECONDS` (a list's items spaced
    out with a line each, not sections)."""
    found: list[tuple[int, int, str]] = []
    for index, paragraph in enumerate(paragraphs):
        line = paragraph.own.strip()
        match = _NUMBERED.fullmatch(line)
        # "2) Methods" is a heading as it is; "1. Introduction" reads as two sentences.
        if (
            match
            and paragraph.whole
            and (paragraph.heading is not None or _heading(match.group(2)) is not None)
        ):
            found.append((index, int(match.group(1)), line.rstrip(":").rstrip()))
    indexes = {index for index, _, _ in found}
    sections = [
        item
        for item in found
        if item[0] - 1 not in indexes
        and item[0] + 1 < len(paragraphs)
        and item[0] + 1 not in indexes
        and paragraphs[item[0] + 1].heading is None
    ]
    numbers = [number for _, number, _ in sections]
    if len(sections) < 2 or numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        return paragraphs
    if any(index and paragraphs[index - 1].own.rstrip().endswith(":") for index, _, _ in sections):
        return paragraphs  # steps a line introduces ("You need:"): a list, however spaced
    starts = [paragraphs[index].seconds for index, _, _ in sections]
    ends = [*starts[1:], total_seconds]
    if any(end - start < SECTION_MIN_SECONDS for start, end in zip(starts, ends, strict=True)):
        return paragraphs
    marked = list(paragraphs)
    for index, _, title in sections:
        marked[index] = replace(paragraphs[index], heading=title, sure=True)
    return marked


def _alone(before: _Paragraph, paragraph: _Paragraph, after: _Paragraph) -> bool:
    """Whether ``paragraph`` is a heading between two paragraphs that are none (a heading
    with end punctuation counts only so: not an item of a list)."""
    return paragraph.heading is not None and before.heading is None and after.heading is None


def _opening_words(text: str) -> str:
    words = re.sub(r"\s+", " ", text).strip().split(" ")
    title = " ".join(words[:_TITLE_WORDS]).rstrip(",;:.")
    cut = len(words) > _TITLE_WORDS or len(title) > _TITLE_CHARACTERS
    return title[:_TITLE_CHARACTERS].rstrip(",;:. ") + ("…" if cut else "")


def _tokens(text: str) -> list[tuple[int, str]]:
    """The words of ``text`` (runs of letters and digits, case-folded) and where each starts."""
    return [(match.start(), match.group().casefold()) for match in _TOKEN.finditer(text)]


def _spoken_at(span: SegmentSpan, offsets: Sequence[int], words: Sequence[Word]) -> list[float]:
    """When each paragraph start in ``span`` (``offsets``: characters into its text,
    increasing) is said among the segment's timed ``words``: source and transcript are
    compared as case-folded words without punctuation (a longest common subsequence, once
    per segment); a paragraph starts at the word its first matching word puts its first word
    at, in the pause before that word. A paragraph none of whose words match is placed in
    proportion to its characters in the segment. None is earlier than the one before."""
    source = _tokens(span.text)
    # The timed words' tokens, found in one pass over their texts joined (a regex run per
    # word cost 20 ms for a 30-minute narration), and the word each belongs to.
    begins = list(itertools.accumulate((len(word.text) + 1 for word in words), initial=0))
    owners: list[int] = []
    spoken: list[str] = []
    number = 0
    for at, piece in _tokens(" ".join(word.text for word in words)):
        while begins[number + 1] <= at:
            number += 1
        owners.append(number)
        spoken.append(piece)
    matched: list[int | None] = [None] * len(source)
    if source and spoken:
        # A longest common subsequence of words (rapidfuzz, in C++: difflib took ~2 ms a segment).
        for block in Indel.opcodes([piece for _, piece in source], spoken).as_matching_blocks():
            for k in range(block.size):
                matched[block.a + k] = block.b + k
    starts = [start for start, _ in source]
    times: list[float] = []
    floor = -1  # the spoken token of the last source token matched before the paragraph
    scanned = 0
    for number, offset in enumerate(offsets):
        first = bisect.bisect_left(starts, offset)
        end = bisect.bisect_left(starts, offsets[number + 1]) if number + 1 < len(offsets) else len(source)
        for index in range(scanned, first):
            value = matched[index]
            floor = floor if value is None else value
        scanned = first
        token: int | None = None
        if first < end and matched[first] is not None:
            token = matched[first]  # its first word is said
        elif 0 < first < end and matched[first - 1] is not None:
            token = floor + 1  # the word before it is: it starts right after
        else:
            for index in range(first + 1, end):
                value = matched[index]
                if value is not None:
                    token = value - (index - first)  # as many words before as in the text
                    break
        if token is None:
            share = offset / max(1, len(span.text))
            seconds = span.start_seconds + (span.end_seconds - span.start_seconds) * share
        else:
            at = owners[min(len(owners) - 1, max(token, floor + 1))]
            seconds = words[at].start
            if at > 0 and words[at - 1].end < seconds:
                seconds = (words[at - 1].end + seconds) / 2  # in the pause before it
        times.append(max(seconds, times[-1] if times else span.start_seconds))
    return times


def _paragraphs(spans: Sequence[SegmentSpan], words: Sequence[Word]) -> list[_Paragraph]:
    """Every paragraph start of the narration, in order, and when it is said: a segment's
    first paragraph at the segment's start (none when the segment goes on with the paragraph
    the one before ended in), the others where their words are (:func:`_spoken_at`)."""
    word_starts = [word.start for word in words]
    found: list[_Paragraph] = []
    previous_boundary = "paragraph"
    for number, span in enumerate(spans):
        offsets = [0, *(match.end() for match in _PARAGRAPH_BREAK.finditer(span.text))]
        offsets = [offset for offset in offsets if span.text[offset:].strip()]
        if previous_boundary != "paragraph" and offsets[:1] == [0]:
            offsets = offsets[1:]
        previous_boundary = span.boundary
        times = [span.start_seconds] if offsets[:1] == [0] else []
        if len(offsets) > len(times):
            later = spans[number + 1].start_seconds if number + 1 < len(spans) else math.inf
            first = bisect.bisect_left(word_starts, span.start_seconds)
            said = words[first : bisect.bisect_left(word_starts, later, lo=first)]
            times += _spoken_at(span, offsets[len(times) :], said)
        for offset, seconds in zip(offsets, times, strict=True):
            rest = span.text[offset:]
            own, *more = _PARAGRAPH_BREAK.split(rest, maxsplit=1)
            # A paragraph the next segment goes on with is no heading.
            whole = bool(more) or span.boundary in ("paragraph", "end")
            heading = _heading(own) if whole else None
            title, sure = heading or (None, False)
            found.append(_Paragraph(own, rest, title, sure, seconds, whole))
    return found


def chapters(spans: Sequence[SegmentSpan], total_seconds: float, words: Sequence[Word] = ()) -> list[Chapter]:
    """Chapters for a narration made of ``spans`` (in order) whose timed words (all of them,
    as captions have them) are ``words``; none when there would be only one.

    A text with headings (:func:`_heading`: a short line as its own paragraph, as Markdown
    headings become; numbered plain-text sections, :func:`_numbered_sections`) gets a
    chapter at each, titled with it, from where it is said (:func:`_spoken_at`), and one
    from the start before the first. A heading without end
    punctuation opens one unless the line before is one too (of a run, the first); one with
    end punctuation only between two paragraphs that are no headings (:func:`_alone`: not a
    list's item). None opens at the text's last paragraph or after a line ending in ``:``
    (the list it introduces). A text without headings gets paragraph groups: a
    chapter starts at the first paragraph start (inside a segment too) once the running one
    is :data:`CHAPTER_MIN_SECONDS` long, titled with its first words. Each chapter ends where
    the next starts (the last at ``total_seconds``), so they cover the audio without gaps.
    """
    paragraphs = _numbered_sections(_paragraphs(spans, words), total_seconds)
    if not paragraphs:
        return []
    opening = paragraphs[0].heading or _opening_words(paragraphs[0].own)
    starts: list[tuple[float, str]] = [(0.0, opening)]
    for number, (before, paragraph) in enumerate(itertools.pairwise(paragraphs), 1):
        if (
            paragraph.heading is not None
            and number < len(paragraphs) - 1
            and ((paragraph.sure and not before.sure) or _alone(before, paragraph, paragraphs[number + 1]))
            and not before.own.rstrip().endswith(":")
            and paragraph.seconds > starts[-1][0]
        ):
            starts.append((paragraph.seconds, paragraph.heading))
    if len(starts) < 2:  # no headings (or only one, opening the text): paragraph groups
        for paragraph in paragraphs[1:]:
            if paragraph.seconds - starts[-1][0] >= CHAPTER_MIN_SECONDS:
                title = paragraph.heading if paragraph.sure else None
                starts.append((paragraph.seconds, title or _opening_words(paragraph.own)))
    if len(starts) < 2:
        return []
    ends = [start for start, _ in starts[1:]] + [total_seconds]
    return [Chapter(title, start, end) for (start, title), end in zip(starts, ends, strict=True)]


def id3_tag(
    *,
    title: str,
    show: str,
    narration_id: str,
    created_at: datetime,
    duration_seconds: float,
    chapter_list: Sequence[Chapter] = (),
) -> bytes:
    """A whole ID3v2.3 tag (no padding): title (TIT2), show as artist and album (TPE1,
    TALB), genre Podcast, the date (TDRC), the length (TLEN), the narration id
    (TXXX ``narration_id``) and, with chapters, a CTOC listing CHAP frames."""
    tag = ID3()
    tag.add(TIT2(encoding=3, text=title))
    tag.add(TPE1(encoding=3, text=show))
    tag.add(TALB(encoding=3, text=show))
    tag.add(TCON(encoding=3, text="Podcast"))
    tag.add(TDRC(encoding=3, text=created_at.strftime("%Y-%m-%d")))
    tag.add(TLEN(encoding=3, text=str(round(duration_seconds * 1000))))
    tag.add(TXXX(encoding=3, desc="narration_id", text=narration_id))
    if chapter_list:
        ids = [f"chp{number}" for number in range(len(chapter_list))]
        tag.add(
            CTOC(
                element_id="toc",
                flags=CTOCFlags.TOP_LEVEL | CTOCFlags.ORDERED,
                child_element_ids=ids,
                sub_frames=[TIT2(encoding=3, text="Chapters")],
            )
        )
        for element_id, chapter in zip(ids, chapter_list, strict=True):
            tag.add(
                CHAP(
                    element_id=element_id,
                    start_time=round(chapter.start_seconds * 1000),
                    end_time=round(chapter.end_seconds * 1000),
                    start_offset=_NO_OFFSET,
                    end_offset=_NO_OFFSET,
                    sub_frames=[TIT2(encoding=3, text=chapter.title)],
                )
            )
    buffer = io.BytesIO()
    tag.save(buffer, v2_version=3, padding=lambda info: 0)
    return buffer.getvalue()
