"""Chapters of a narration (podcast.audio.id3.chapters) and the ID3 tag read back by mutagen."""

from __future__ import annotations

import io
import itertools
from datetime import UTC, datetime

import pytest
from mutagen.id3 import ID3

from podcast.audio.captions import Word
from podcast.audio.id3 import CHAPTER_MIN_SECONDS, Chapter, SegmentSpan, chapters, id3_tag
from podcast.engine.segments import Segment, split_text
from podcast.services.documents import markdown_to_speech


def span(text: str, start: float, end: float, boundary: str = "paragraph") -> SegmentSpan:
    return SegmentSpan(text, boundary, start, end)


def test_headings_start_chapters_with_their_titles() -> None:
    spans = [
        span("Introduction\n\nRivers rarely run straight.", 0.0, 5.0, "sentence"),
        span("More about the bends, and more.", 5.5, 9.0),
        span("Why rivers bend\n\nThe outer bank wears away, so the bend grows a bit each year.", 9.5, 15.0),
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


def said(text: str, start: float, seconds_per_word: float = 0.4) -> list[Word]:
    """The words of ``text`` timed one after another from ``start``, a short pause after each."""
    return [
        Word(word, start + n * seconds_per_word, start + n * seconds_per_word + 0.75 * seconds_per_word)
        for n, word in enumerate(text.split())
    ]


def in_sessions(segments: list[Segment]) -> tuple[list[SegmentSpan], list[Word], float]:
    """``segments`` said one after another (:func:`said`), 0.8 s apart: their spans, their
    timed words and when the last one ends."""
    spans: list[SegmentSpan] = []
    words: list[Word] = []
    start = 0.0
    for segment in segments:
        timed = said(segment.text, start)
        spans.append(span(segment.text, start, timed[-1].end, segment.boundary))
        words += timed
        start = timed[-1].end + 0.8
    return spans, words, start


def onset(words: list[Word], first: str) -> float:
    """Where a chapter starting at the word ``first`` should start: in the pause before it."""
    index = next(n for n, word in enumerate(words) if word.text == first)
    return (words[index - 1].end + words[index].start) / 2


SHORT_TEXT = (
    "Rivers\n\nRivers bend because water takes the easiest way downhill.\n\n"
    "Oxbow lakes\n\nA bend cut off from its river becomes a lake.\n\n"
    "Deltas\n\nWhere the river meets the sea it drops its sand."
)


def test_a_one_segment_text_gets_a_chapter_at_each_heading_where_it_is_said() -> None:
    words = said(SHORT_TEXT, 0.3)
    end = words[-1].end

    result = chapters([span(SHORT_TEXT, 0.3, end, "end")], end + 0.1, words)

    assert result == [
        Chapter("Rivers", 0.0, onset(words, "Oxbow")),
        Chapter("Oxbow lakes", onset(words, "Oxbow"), onset(words, "Deltas")),
        Chapter("Deltas", onset(words, "Deltas"), end + 0.1),
    ]


def test_headings_inside_segments_and_at_their_starts_are_all_chapters() -> None:
    # Headings with end punctuation (a question, a colon), each between paragraphs that are none.
    body = "goes on for long enough to be no heading, more than twelve words"
    first = f"Why do rivers bend?\n\nThe outer bank {body}.\n\nOxbow lakes:\n\nA flood {body}."
    second = f"The lake {body}.\n\nDeltas:\n\nThe sand {body}.\n\nEstuaries?\n\nThe tide {body}."
    first_words = said(first, 0.0)
    second_words = said(second, first_words[-1].end + 1.0)
    spans = [
        span(first, 0.0, first_words[-1].end),
        span(second, second_words[0].start, second_words[-1].end, "end"),
    ]

    result = chapters(spans, 30.0, first_words + second_words)

    assert [c.title for c in result] == ["Why do rivers bend?", "Oxbow lakes", "Deltas", "Estuaries?"]
    assert [c.start_seconds for c in result] == [
        0.0,
        onset(first_words, "Oxbow"),
        onset(second_words, "Deltas:"),
        onset(second_words, "Estuaries?"),
    ]


def test_a_transcript_that_differs_a_little_still_places_the_heading() -> None:
    source = "Intro\n\nSome words come first here.\n\nOxbow Lakes\n\nA bend is cut off."
    # Said differently: case, punctuation, and the heading's first word heard as two.
    words = said("intro... some words come first, here! Ox bow lakes: a bend is cut off", 0.0)

    result = chapters([span(source, 0.0, words[-1].end, "end")], 10.0, words)

    assert [c.title for c in result] == ["Intro", "Oxbow Lakes"]
    assert result[1].start_seconds == onset(words, "Ox")


def test_a_heading_whose_words_are_not_said_is_placed_by_its_characters() -> None:
    source = "Intro\n\nSome words come first.\n\nOxbow lakes\n\nA bend is cut off."
    nothing_alike = said("zzz yyy xxx www vvv uuu ttt", 1.0)

    for words in (nothing_alike, []):
        result = chapters([span(source, 1.0, 9.0, "end")], 10.0, words)

        assert [c.title for c in result] == ["Intro", "Oxbow lakes"]
        assert result[1].start_seconds == pytest.approx(1.0 + 8.0 * source.index("Oxbow") / len(source))


def test_paragraph_groups_start_at_paragraph_breaks_inside_segments() -> None:
    paragraph = "This paragraph has about twenty words, said at two and a half words a second: eight seconds."
    text = "\n\n".join(f"{n} {paragraph}" for n in range(20))  # 18 words (7.2 s) each, in one segment
    words = said(text, 0.0)

    result = chapters([span(text, 0.0, words[-1].end, "end")], words[-1].end, words)

    # Paragraph n starts at 7.2 n s: the first at or after 60 s is the 9th, then 60 s on, the 18th.
    assert [c.start_seconds for c in result] == [0.0, onset(words, "9"), onset(words, "18")]
    assert result[1].title == "9 This paragraph has about twenty words, said…"


def test_short_lines_of_prose_dialogue_and_lists_are_no_headings() -> None:
    text = (
        "It was late when the boat came in, and nobody on the pier had seen it leave.\n\n"
        "“Who is there?” she asked.\n\n"
        "Nobody answered!\n\n"
        "- the rope\n\n"
        "1. The oars\n\n"
        "They waited for the tide, and then they walked home along the river in the dark."
    )
    words = said(text, 0.0)

    assert chapters([span(text, 0.0, words[-1].end, "end")], words[-1].end, words) == []


def test_a_heading_opening_a_short_text_is_no_chapter_of_its_own() -> None:
    text = "Rivers\n\nRivers bend because water takes the easiest way downhill."
    words = said(text, 0.0)

    assert chapters([span(text, 0.0, words[-1].end, "end")], words[-1].end, words) == []


def test_a_markdown_documents_headings_are_its_chapters() -> None:
    document = (
        "# Rivers\n\nRivers bend because water is lazy and always takes the easiest way down.\n\n"
        "## What you need\n\n- a map\n- a boat\n\nThen you follow the water wherever it goes.\n\n"
        "## Oxbow lakes\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "A bend cut off from its river becomes a lake shaped like a horseshoe.\n\n"
        "## Why deltas grow?\n\nWhere the river meets the sea it drops its sand and builds land."
    )
    text = markdown_to_speech(document)
    segments = split_text(text, 20)
    spans, words, start = in_sessions(segments)

    result = chapters(spans, start, words)

    assert len(segments) > 1
    assert [c.title for c in result] == ["Rivers", "What you need", "Oxbow lakes", "Why deltas grow?"]
    for chapter, heading in zip(result[1:], ["What", "Oxbow", "Why"], strict=True):
        assert chapter.start_seconds == onset(words, heading)


def test_short_paragraphs_of_prose_are_no_headings() -> None:
    body = "The council met again on Tuesday and argued for hours about the river wall and its cost"
    paragraphs = [
        f"{body}.",
        "It was not enough.",
        f"{body} once more.",
        "Then came 2019.",
        f"{body}, again.",
    ]
    text = "\n\n".join([*paragraphs, "She left.", f"{body} at last."])
    words = said(text, 0.0)

    assert chapters([span(text, 0.0, words[-1].end, "end")], words[-1].end, words) == []


def test_cjk_dialogue_is_no_heading_and_titles_stay_short() -> None:
    narrative = (
        "川は海へ向かってゆっくりと曲がりながら流れていき、岸辺の町は長い年月をかけて形を変えていった。" * 2
    )
    text = "\n\n".join([narrative, "「待って」", narrative, "「どこへ行くの？」", narrative])
    words = said(text, 0.0, seconds_per_word=30.0)  # a CJK paragraph is one "word"

    result = chapters([span(text, 0.0, words[-1].end, "end")], words[-1].end, words)

    assert result, "paragraph groups: the text has no headings"
    assert [c.title for c in result if c.title.startswith("「")] == ["「どこへ行くの？」"], (
        "its own words only"
    )
    assert all(len(c.title) <= 61 for c in result), result


BODY = "The outer bank wears away, so the bend grows a little every single year."


def whole(text: str) -> list[Chapter]:
    words = said(text, 0.0)
    return chapters([span(text, 0.0, words[-1].end, "end")], words[-1].end, words)


SECTION = f"{BODY} {BODY}"  # 28 words: 11 s at 0.4 s a word


def test_numbered_sections_of_a_plain_text_are_its_chapters() -> None:
    text = "\n\n".join(
        [
            "1. Introduction",
            SECTION,
            "2) Why rivers bend",
            BODY,
            f"{BODY} And more.",
            "3. Oxbow lakes:",
            SECTION,
        ]
    )
    words = said(text, 0.0)

    result = whole(text)

    assert [c.title for c in result] == ["1. Introduction", "2) Why rivers bend", "3. Oxbow lakes"]
    assert [c.start_seconds for c in result[1:]] == [onset(words, "2)"), onset(words, "3.")]


@pytest.mark.parametrize(
    "numbered",
    [
        ["1. The oars"],  # one item alone
        ["1. Flour", "3. Sugar"],  # not one after another
        ["2. Flour", "1. Sugar"],
        ["1. Flour. Sift it", "2. Sugar"],  # a sentence, not a title
        ["1. Flour!", "2. Sugar!"],
    ],
)
def test_numbered_lines_that_are_no_sections_are_no_chapters(numbered: list[str]) -> None:
    parts: list[str] = [BODY]
    for line in numbered:
        parts += [line, SECTION]
    assert whole("\n\n".join(parts)) == []


def test_numbered_sections_after_a_title_are_chapters_from_the_second_on() -> None:
    """The title and section 1 are a run of headings: one chapter, the title's."""
    for count in (2, 3):
        lines = ["A Study of Rivers"]
        for number in range(1, count + 1):
            lines += [f"{number}. Part {number}", SECTION]
        assert [c.title for c in whole("\n\n".join(lines))] == [
            "A Study of Rivers",
            *(f"{number}. Part {number}" for number in range(2, count + 1)),
        ]


def test_numbered_steps_spaced_out_are_no_sections() -> None:
    text = "\n\n".join(
        ["Pancakes", "1. Flour", "Sift it twice.", "2. Eggs", "Beat them.", "3. Milk", "Stir."]
    )
    assert [c.title for c in whole(text)] == []


def test_numbered_lines_in_a_row_or_after_a_colon_are_a_list() -> None:
    in_a_row = "\n\n".join([BODY, "1. Flour", "2. Sugar", "3. Eggs", BODY])
    introduced = "\n\n".join([BODY, "You need:", "1. Flour", BODY, "2. Sugar", BODY])
    assert whole(in_a_row) == []
    assert [c.title for c in whole(introduced)][1:] == ["You need"]  # the line itself, as before


def test_numbered_sections_across_segments_start_where_their_titles_are_said() -> None:
    text = "\n\n".join(
        f"{n}. {title}\n\n{SECTION}" for n, title in enumerate(["Rivers", "Oxbow lakes", "Deltas"], 1)
    )
    segments = split_text(text, 20)
    spans, words, start = in_sessions(segments)

    result = chapters(spans, start, words)

    assert len(segments) > 3
    assert [c.title for c in result] == ["1. Rivers", "2. Oxbow lakes", "3. Deltas"]
    assert [c.start_seconds for c in result[1:]] == [
        next(s.start_seconds for s in spans if s.text.startswith(f"{n}. ")) for n in (2, 3)
    ]


def test_a_numbered_paragraph_the_next_segment_goes_on_with_is_no_section() -> None:
    """Chapters do not depend on where the segments were cut."""
    text = "\n\n".join(
        [
            BODY,
            f"1. Why did we go? {SECTION}",
            SECTION,
            f"2. Was it worth it? {SECTION}",
            SECTION,
        ]
    )
    for max_words in (14, 20, 40, 150):
        segments = split_text(text, max_words)
        spans, words, start = in_sessions(segments)
        assert not any(c.title.startswith(("1.", "2.")) for c in chapters(spans, start, words)), max_words
