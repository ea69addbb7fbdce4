"""Captions (podcast.audio.captions): pauses found in PCM, words timed from transcript
deltas and pauses, cues within their limits, and WebVTT that an independent parser reads."""

from __future__ import annotations

import itertools
import random
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import webvtt

from podcast.audio.captions import (
    MAX_CUE_SECONDS,
    MAX_LINE_CHARACTERS,
    MIN_PAUSE_SECONDS,
    SNAP_SECONDS,
    Cue,
    Word,
    _speech_end_before,
    make_cues,
    speech_regions,
    srt,
    time_words,
)
from podcast.audio.captions import (
    webvtt as to_webvtt,
)

RATE = 24_000


def bursts(spans: list[tuple[float, float]], total: float) -> bytes:
    """A tone where ``spans`` say, silence elsewhere."""
    x = np.zeros(int(total * RATE))
    for start, end in spans:
        t = np.arange(int(start * RATE), int(end * RATE))
        x[t] = 0.3 * np.sin(2 * np.pi * 180 * t / RATE)
    return (x * 32767).astype("<i2").tobytes()


SPANS = [(0.2, 1.0), (1.4, 2.6), (3.0, 3.5)]


def test_speech_regions_are_where_the_sound_is() -> None:
    regions = speech_regions(bursts(SPANS, 4.0))

    assert len(regions) == 3
    for (start, end), (true_start, true_end) in zip(regions, SPANS, strict=True):
        assert start == pytest.approx(true_start, abs=0.03)
        assert end == pytest.approx(true_end, abs=0.03)
    assert speech_regions(b"") == []


def regions_frame_by_frame(
    voiced: list[bool], min_silent: int, frame_seconds: float
) -> list[tuple[float, float]]:
    """The pauses' definition walked frame by frame: a region starts at a voiced frame and
    ends where ``min_silent`` unvoiced frames in a row begin (or where the voiced frames end)."""
    regions: list[tuple[float, float]] = []
    start: int | None = None
    silent = 0
    for index, on in enumerate(voiced):
        if on:
            start = index if start is None else start
            silent = 0
        elif start is not None:
            silent += 1
            if silent >= min_silent:
                regions.append((start * frame_seconds, (index - silent + 1) * frame_seconds))
                start, silent = None, 0
    if start is not None:
        regions.append((start * frame_seconds, (len(voiced) - silent) * frame_seconds))
    return regions


def test_speech_regions_match_a_frame_by_frame_walk_at_every_gap_length() -> None:
    """Frames of 20 ms voiced or silent at random, gaps around the shortest pause
    (:data:`MIN_PAUSE_SECONDS`, 6 frames) ±1 included, voiced or silent at either end: the
    regions are exactly the walk's."""
    frame = round(0.02 * RATE)
    shortest = round(MIN_PAUSE_SECONDS / 0.02)
    rng = random.Random(7)
    tone = (0.3 * np.sin(2 * np.pi * 180 * np.arange(frame) / RATE) * 32767).astype("<i2")
    quiet = np.zeros(frame, dtype="<i2")
    for case in range(200):
        voiced: list[bool] = []
        on = rng.random() < 0.5
        while len(voiced) < 40 + case:
            gap = rng.choice([1, shortest - 1, shortest, shortest + 1, 20])
            voiced += [on] * (gap if not on else rng.randint(1, 30))
            on = not on
        pcm = np.concatenate([tone if v else quiet for v in voiced]).tobytes()
        assert speech_regions(pcm) == regions_frame_by_frame(voiced, shortest, 0.02), case
    assert speech_regions(np.zeros(10 * frame, dtype="<i2").tobytes()) == []
    assert speech_regions(np.tile(tone, 10).tobytes()) == [(0.0, 10 * 0.02)]


def test_words_are_placed_by_the_deltas_and_moved_out_of_pauses() -> None:
    pcm = bursts(SPANS, 4.0)
    # Deltas arrive a little early (as transcripts lead the audio): "Two" arrives in the pause.
    marks = [(0, "One"), (int(1.25 * RATE) * 2, " two"), (int(2.9 * RATE) * 2, " three.")]

    timed = time_words(pcm, "One two three.", marks)

    assert [w.text for w in timed.words] == ["One", "two", "three."]
    starts = [w.start for w in timed.words]
    assert starts[0] == pytest.approx(0.2, abs=0.03)  # moved from 0.0 (silence) to the voice
    assert starts[1] == pytest.approx(1.4, abs=0.03)
    assert starts[2] == pytest.approx(3.0, abs=0.03)
    assert timed.onsets == pytest.approx([0.2, 1.4, 3.0], abs=0.03)


def test_without_deltas_words_follow_the_speech_by_their_length() -> None:
    timed = time_words(bursts(SPANS, 4.0), "aaaa bbbbbbb ccc")
    assert next(round(w.start, 1) for w in timed.words) == 0.2
    assert all(a.start < b.start for a, b in zip(timed.words, timed.words[1:], strict=False))
    assert time_words(b"", "").words == ()


def test_the_final_transcript_wins_over_the_deltas() -> None:
    pcm = bursts(SPANS, 4.0)
    marks = [(0, "One"), (int(1.4 * RATE) * 2, " too"), (int(3.0 * RATE) * 2, " three.")]
    words = time_words(pcm, "One two three.", marks).words
    assert [w.text for w in words] == ["One", "two", "three."]
    assert words[1].start == pytest.approx(1.4, abs=0.05)  # interpolated between its neighbours


def test_a_sentence_starts_after_the_long_pause_not_at_a_gap_inside_a_word() -> None:
    # "bend." has a stop inside it (a 0.13 s gap at 1.0 s); the sentence pause is 1.5-1.8 s.
    # The delta of "Water" arrives early, nearer the gap than the pause.
    pcm = bursts([(0.2, 1.0), (1.13, 1.5), (1.8, 2.8)], 3.2)
    marks = [
        (0, "Rivers"),
        (int(0.5 * RATE) * 2, " bend."),
        (int(1.2 * RATE) * 2, " Water"),
        (int(2.3 * RATE) * 2, " flows."),
    ]

    timed = time_words(pcm, "Rivers bend. Water flows.", marks)

    starts = [w.start for w in timed.words]
    assert starts[2] == pytest.approx(1.8, abs=0.03)
    assert starts[1] < 1.0 < timed.words[1].end <= 1.5 + 0.03  # "bend." spans the gap
    assert starts[3] == pytest.approx(1.8 + 6 / 13, abs=0.05)  # by characters after its anchor


def test_a_cue_inside_a_phrase_keeps_its_word_time() -> None:
    # A cue that starts mid-phrase is not pulled to a speech onset farther than SNAP_SECONDS.
    words = [Word("alpha", 0.0, 0.5), Word("beta", 0.5, 1.0)]
    assert make_cues(words, onsets=[0.0, 0.5 + SNAP_SECONDS + 0.05])[0].start == 0.0
    assert make_cues(words[1:], onsets=[0.0, 0.5 + SNAP_SECONDS + 0.05])[0].start == 0.5
    assert make_cues(words[1:], onsets=[0.0, 0.5 + SNAP_SECONDS - 0.05])[0].start == pytest.approx(
        0.5 + SNAP_SECONDS - 0.05
    )


def many_words(count: int, seconds_each: float) -> list[Word]:
    vocabulary = ["rivers", "bend", "slowly,", "over", "many", "years.", "Water", "pushes", "outward"]
    return [
        Word(vocabulary[i % len(vocabulary)], i * seconds_each, (i + 0.8) * seconds_each)
        for i in range(count)
    ]


@pytest.mark.parametrize("seconds_each", [0.1, 0.4, 2.0])
def test_cues_stay_within_two_lines_of_42_and_seven_seconds(seconds_each: float) -> None:
    words = many_words(120, seconds_each)

    cues = make_cues(words)

    assert " ".join(line for cue in cues for line in cue.lines).split() == [w.text for w in words]
    for cue in cues:
        assert 1 <= len(cue.lines) <= 2
        assert all(len(line) <= MAX_LINE_CHARACTERS for line in cue.lines)
        assert cue.end - cue.start <= MAX_CUE_SECONDS + 1e-9
        assert cue.end > cue.start
    assert all(a.end <= b.start for a, b in itertools.pairwise(cues))


def textwrap_cue_groups(words: list[Word]) -> list[tuple[list[str], tuple[str, ...]]]:
    """The cue groups and lines by the definition: a word joins the cue unless the cue would
    then take more than two of ``textwrap.wrap``'s lines (or last too long); a sentence end
    of half a line or more closes it. Each cue's lines are ``textwrap``'s."""
    groups: list[list[Word]] = []
    current: list[Word] = []
    for word in words:
        candidate = [*current, word]
        too_long = len(textwrap.wrap(" ".join(w.text for w in candidate), MAX_LINE_CHARACTERS)) > 2
        too_slow = current and word.end - current[0].start > MAX_CUE_SECONDS
        if current and (too_long or too_slow):
            groups.append(current)
            candidate = [word]
        current = candidate
        if word.text.endswith((".", "!", "?", "…", "。", "！", "？")) and (
            len(" ".join(w.text for w in current)) >= MAX_LINE_CHARACTERS // 2
        ):
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return [
        ([w.text for w in g], tuple(textwrap.wrap(" ".join(w.text for w in g), MAX_LINE_CHARACTERS)) or ("",))
        for g in groups
    ]


def random_words(rng: random.Random) -> list[Word]:
    pieces = [
        "a", "of", "river", "bends", "slowly.", "Why?", "well-known", "so—then", "x--y", "e.g.",
        "naïve", "日本語", "über-long-compound", "-dash", "dash-", "end!", "(aside)", "“quoted”",
        "a" * MAX_LINE_CHARACTERS, "b" * (MAX_LINE_CHARACTERS + 1), "c" * 90, "tab\tinside",
        "nbsp\u00a0kept", "…", "word,", "clause;",
    ]  # fmt: skip
    count = rng.randint(0, 80)
    moment, words = 0.0, []
    for _ in range(count):
        text = rng.choice(pieces) if rng.random() < 0.3 else "w" * rng.randint(1, 14)
        duration = rng.choice([0.05, 0.2, 0.4, 1.5])
        words.append(Word(text, moment, moment + duration))
        moment += duration + rng.choice([0.0, 0.05, 0.3])
    return words


def test_cues_are_grouped_and_wrapped_exactly_as_textwrap_would() -> None:
    rng = random.Random(12)
    for _ in range(3000):
        words = random_words(rng)
        cues = make_cues(words)
        expected = textwrap_cue_groups(words)
        assert [cue.lines for cue in cues] == [lines for _, lines in expected], [w.text for w in words]


def scanned_speech_end_before(moment: float, regions: list[tuple[float, float]]) -> float:
    """The definition: scan the regions in order."""
    for start, end in regions:
        if start < moment <= end:
            return moment
        if start > moment:
            break
    ends = [end for _, end in regions if end <= moment]
    return ends[-1] if ends else moment


def test_a_words_end_is_moved_out_of_a_pause_as_a_scan_of_the_regions_would() -> None:
    rng = random.Random(5)
    for _ in range(3000):
        regions, at = [], 0.0
        for _ in range(rng.randint(1, 12)):
            start = at + rng.choice([0.0, 0.02, 0.3])
            end = start + rng.choice([0.0, 0.1, 1.0])
            regions.append((start, end))
            at = end
        edges = [t for region in regions for t in region]
        for moment in [*edges, *(rng.uniform(-0.5, at + 0.5) for _ in range(10))]:
            expected = scanned_speech_end_before(moment, regions)
            got = _speech_end_before(moment, [s for s, _ in regions], [e for _, e in regions])
            assert got == expected, (moment, regions)


def test_cue_making_costs_no_wrap_per_word(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain words are laid out without ``textwrap`` (counted, not timed: a timing ratio
    failed on a loaded machine), with the lines ``textwrap`` gives."""
    vocabulary = [
        "the",
        "river",
        "bends",
        "slowly",
        "through",
        "the",
        "valley",
        "and",
        "every",
        "season",
        "it",
        "moves",
    ]
    words = [Word(vocabulary[i % len(vocabulary)], i * 0.3, i * 0.3 + 0.25) for i in range(4500)]
    expected = textwrap_cue_groups(words)
    wraps = 0
    wrap = textwrap.wrap

    def counted(*args: Any, **kwargs: Any) -> list[str]:
        nonlocal wraps
        wraps += 1
        return wrap(*args, **kwargs)

    monkeypatch.setattr(textwrap, "wrap", counted)
    cues = make_cues(words)
    assert [cue.lines for cue in cues] == [lines for _, lines in expected]
    assert wraps == 0


def test_cues_end_at_sentence_ends_and_snap_to_onsets() -> None:
    text = "This is the first sentence here. Then more."
    words = [Word(w, i * 0.3, i * 0.3 + 0.25) for i, w in enumerate(text.split())]
    cues = make_cues(words, onsets=[0.1, 1.9])
    assert cues[0].lines == ("This is the first sentence here.",)
    assert cues[0].start == pytest.approx(0.1)  # snapped to the voice onset
    assert cues[1].start == pytest.approx(1.9)


def test_webvtt_and_srt_read_back(tmp_path: Path) -> None:
    cues = [Cue(("Rivers & <bends>",), 0.5, 2.25), Cue(("line one", "line two"), 3661.0, 3662.5)]

    parsed = webvtt.from_string(to_webvtt(cues), strict=True).captions

    times = [(c.start, c.end) for c in parsed]
    assert times == [("00:00:00.500", "00:00:02.250"), ("01:01:01.000", "01:01:02.500")]
    assert parsed[1].text == "line one\nline two"
    assert "&amp; &lt;bends&gt;" in to_webvtt(cues)  # escaped, so no parser reads a tag into it
    (tmp_path / "c.srt").write_text(srt(cues), encoding="utf-8")
    from_srt = webvtt.from_srt(str(tmp_path / "c.srt")).captions
    assert [(c.start, c.end, c.text) for c in from_srt] == [
        ("00:00:00.500", "00:00:02.250", "Rivers & "),  # SRT has no escapes: <...> reads as a tag
        ("01:01:01.000", "01:01:02.500", "line one\nline two"),
    ]
