"""ID3v2 tags for MP3 narrations (``mutagen``): title, show, date, narration id and chapters.

:func:`id3_tag` returns a whole ID3v2.3 tag as bytes (v2.3: what Apple Podcasts, most
players and podcast hosts read; CHAP/CTOC are defined for it by the ID3 chapter addendum)
to put before the first MP3 frame. :func:`chapters` picks chapter starts from the
narration's segments: at each heading (a segment whose first paragraph is a short line, as
Markdown headings become), else at paragraph breaks once a chapter has run
:data:`CHAPTER_MIN_SECONDS`.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from mutagen.id3 import CHAP, CTOC, ID3, TALB, TCON, TDRC, TIT2, TLEN, TPE1, TXXX, CTOCFlags

__all__ = ["CHAPTER_MIN_SECONDS", "Chapter", "SegmentSpan", "chapters", "id3_tag"]

CHAPTER_MIN_SECONDS: Final = 60.0
"""A chapter of a text without headings runs at least this long before a paragraph break ends it."""
_HEADING_WORDS: Final = 12
_TITLE_WORDS: Final = 8
_NO_OFFSET: Final = 0xFFFFFFFF
"""CHAP's byte offsets "not given": players seek by time."""


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


def _heading(text: str) -> str | None:
    """The segment's heading: its first paragraph when that is one short line."""
    first, separator, rest = text.strip().partition("\n\n")
    line = first.strip()
    if not separator or not rest.strip() or "\n" in line or not line:
        return None
    if len(line.split()) > _HEADING_WORDS:
        return None
    return line.rstrip(".:")


def _opening_words(text: str) -> str:
    words = re.sub(r"\s+", " ", text).strip().split(" ")
    title = " ".join(words[:_TITLE_WORDS]).rstrip(",;:.")
    return title + ("…" if len(words) > _TITLE_WORDS else "")


def chapters(spans: Sequence[SegmentSpan], total_seconds: float) -> list[Chapter]:
    """Chapters for a narration made of ``spans`` (in order); none when there would be only one.

    A chapter starts at the first segment, at every segment that opens with a heading, and
    at a segment after a paragraph break once the running chapter is
    :data:`CHAPTER_MIN_SECONDS` long. Each ends where the next starts (the last at
    ``total_seconds``), so the chapters cover the audio without gaps.
    """
    starts: list[tuple[float, str]] = []
    previous_boundary = "paragraph"
    for span in spans:
        heading = _heading(span.text)
        running = span.start_seconds - starts[-1][0] if starts else None
        if (
            not starts
            or heading is not None
            or (previous_boundary == "paragraph" and running is not None and running >= CHAPTER_MIN_SECONDS)
        ):
            starts.append((0.0 if not starts else span.start_seconds, heading or _opening_words(span.text)))
        previous_boundary = span.boundary
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
