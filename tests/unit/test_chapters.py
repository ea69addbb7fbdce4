"""Chapters of a narration (podcast.audio.id3.chapters) and the ID3 tag read back by mutagen."""

from __future__ import annotations

import io
import itertools
from datetime import UTC, datetime

from mutagen.id3 import ID3

from podcast.audio.id3 import CHAPTER_MIN_SECONDS, Chapter, SegmentSpan, chapters, id3_tag


def span(text: str, start: float, end: float, boundary: str = "paragraph") -> SegmentSpan:
    return SegmentSpan(text, boundary, start, end)


def test_headings_start_chapters_with_their_titles() -> None:
    spans = [
        span("Introduction\n\nRivers rarely run straight.", 0.0, 5.0),
        span("More about the bends, and more.", 5.5, 9.0, "sentence"),
        span("Why rivers bend.\n\nThe outer bank wears away.", 9.5, 15.0),
        span("Oxbow lakes\n\nA flood cuts the neck.", 15.5, 20.0, "end"),
    ]

    result = chapters(spans, 20.0)

    assert result == [
        Chapter("Introduction", 0.0, 9.5),
        Chapter("Why rivers bend", 9.5, 15.5),
        Chapter("Oxbow lakes", 15.5, 20.0),
    ]


def test_long_texts_without_headings_get_paragraph_groups() -> None:
    length = CHAPTER_MIN_SECONDS / 2 + 1
    spans = [
        span(f"Paragraph {n} starts with these words and goes on for a while.", n * length, (n + 1) * length)
        for n in range(6)
    ]

    result = chapters(spans, 6 * length)

    assert [c.start_seconds for c in result] == [0.0, 2 * length, 4 * length]
    assert result[1].title == "Paragraph 2 starts with these words and goes…"
    assert all(a.end_seconds == b.start_seconds for a, b in itertools.pairwise(result))


def test_a_short_text_has_no_chapters() -> None:
    assert chapters([span("Just one short thing.", 0.0, 3.0, "end")], 3.0) == []
    assert chapters([], 0.0) == []


def test_the_tag_reads_back() -> None:
    marks = [Chapter("Introduction", 0.0, 9.5), Chapter("Oxbow lakes", 9.5, 20.0)]
    data = id3_tag(
        title="Rivers: a story ✓",
        show="The Show",
        narration_id="c9071842f8854f59a410cc4211bc108e",
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
        duration_seconds=20.0,
        chapter_list=marks,
    )

    tag = ID3(io.BytesIO(data))  # type: ignore[no-untyped-call]
    assert tag.version[:2] == (2, 3)
    assert str(tag["TIT2"]) == "Rivers: a story ✓"
    assert str(tag["TPE1"]) == str(tag["TALB"]) == "The Show"
    assert str(tag["TDRC"]) == "2026-12-01"
    assert str(tag["TXXX:narration_id"]) == "c9071842f8854f59a410cc4211bc108e"
    assert tag["CTOC:toc"].child_element_ids == ["chp0", "chp1"]
    assert [(tag[f"CHAP:chp{n}"].start_time, tag[f"CHAP:chp{n}"].end_time) for n in (0, 1)] == [
        (0, 9500),
        (9500, 20000),
    ]
    assert str(tag["CHAP:chp1"].sub_frames["TIT2"]) == "Oxbow lakes"
