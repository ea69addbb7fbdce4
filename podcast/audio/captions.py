"""Captions timed from the audio itself: word times, cues, WebVTT and SRT.

Each segment's words are timed in two steps (:func:`time_words`):

1. **Where the transcript arrived.** The Realtime API sends the transcript as deltas
   interleaved with the audio deltas; each delta's words are first placed at the audio
   that had arrived before it (the marks collected by the narrator). Without marks, words
   are spread over the speech in proportion to their characters. These are estimates: a
   delta says roughly, not exactly, where its words are (it leads the audio by up to a
   delta, and the server's own word times are approximate).
2. **Where the speech is.** Pauses are found in the PCM (20 ms frames more than 35 dB under
   the segment's speech level, at least :data:`MIN_PAUSE_SECONDS` long). Each pause is
   given to the word boundary it most likely is (:func:`_assign_pauses`, a dynamic
   programme over the pauses in order): one near the word's estimate, preferably after a
   sentence end or a clause mark (a voice pauses there), or to none. A word that follows
   its pause starts where the voice starts again; the words between two such anchors are
   spread over the speech between them in proportion to their characters. Anchoring
   removes the estimates' error wherever the voice pauses, which is where cues start.

Cues (:func:`make_cues`) hold at most two lines of about 42 characters and at most
:data:`MAX_CUE_SECONDS`; they end at sentence ends when they can, and a cue's start snaps
to the nearest speech onset within :data:`SNAP_SECONDS` (people read a caption as the
voice starts). :func:`webvtt` and :func:`srt` write them.
"""

from __future__ import annotations

import bisect
import difflib
import itertools
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from podcast.audio import ANALYSIS_LOCK, SAMPLE_RATE

__all__ = [
    "MAX_CUE_SECONDS",
    "MAX_LINE_CHARACTERS",
    "Cue",
    "TimedSpeech",
    "Word",
    "make_cues",
    "pause_before",
    "shifted",
    "speech_regions",
    "srt",
    "time_words",
    "webvtt",
]

MAX_LINE_CHARACTERS: Final = 42
MAX_LINES: Final = 2
MAX_CUE_SECONDS: Final = 7.0
MIN_CUE_SECONDS: Final = 0.7
MIN_PAUSE_SECONDS: Final = 0.12
SNAP_SECONDS: Final = 0.15
_FRAME_SECONDS: Final = 0.02
_FLOATS_AT_A_TIME: Final = 1 << 16
"""Frames are squared about this many samples at a time, into one buffer made once: with the
allocator's mmap threshold as the app sets it (``MALLOC_MMAP_THRESHOLD_=65536``) every new
temporary array that size is mapped, faulted in page by page and unmapped again."""
_PAUSE_BELOW_SPEECH_DB: Final = 35.0
_SENTENCE_END: Final = (".", "!", "?", "…", "。", "！", "？")
_CLAUSE_END: Final = (",", ";", ":", "—", "–", "、", "，", "；", "：")
_CLOSING: Final = "\"')]}»”’"
# Costs of the pause assignment, in seconds of distance from a word's estimate (tuned
# against Whisper's word times on Piper speech: ``python -m benchmarks.audio``).
_PAUSE_BETWEEN_WORDS: Final = 0.3
_PAUSE_AT_CLAUSE: Final = 0.1
_NO_PAUSE_AT_CLAUSE: Final = 0.2
_NO_PAUSE_AT_SENTENCE_END: Final = 0.3
_UNASSIGNED_PAUSE: Final = 0.15
_UNASSIGNED_PAUSE_PER_SECOND: Final = 2.0
_LONG_PAUSE_GAIN: Final = 2.0
_MAX_SHIFT_SECONDS: Final = 2.5


@dataclass(frozen=True, slots=True)
class Word:
    """A word of the transcript and when it is said (seconds)."""

    text: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Cue:
    """A caption: its lines and when it shows (seconds)."""

    lines: tuple[str, ...]
    start: float
    end: float
    speaker: str | None = None
    """Who says it (a conversation): a WebVTT ``<v speaker>`` voice tag, an SRT ``speaker: `` prefix."""


def speech_regions(
    pcm: bytes | bytearray | memoryview, sample_rate: int = SAMPLE_RATE
) -> list[tuple[float, float]]:
    """Where there is speech in PCM16 mono ``pcm``: ``(start, end)`` seconds, in order,
    separated by pauses of at least :data:`MIN_PAUSE_SECONDS`."""
    samples = np.frombuffer(pcm, dtype="<i2")
    frame = max(1, round(_FRAME_SECONDS * sample_rate))
    count = len(samples) // frame
    if count == 0:
        return []
    frames = samples[: count * frame].reshape(count, frame)
    energy = np.empty(count)
    at_a_time = max(1, min(count, _FLOATS_AT_A_TIME // frame))
    floats = np.empty((at_a_time, frame))
    for first in range(0, count, at_a_time):  # floats for a few frames at a time
        block = frames[first : first + at_a_time]
        values = floats[: len(block)]
        values[...] = block
        # Each frame's sum of squares in one pass. The squares are integers and their sums
        # below 2**53, so every order of adding them gives the same, exact, float.
        np.einsum("ij,ij->i", values, values, out=energy[first : first + len(block)])
    np.sqrt(energy / frame, out=energy)  # each frame's RMS, as np.mean divides its sum
    energy += 1e-9
    level_db = 20 * np.log10(energy / 32768)
    speech_level = float(np.percentile(level_db, 95))
    voiced = level_db > max(-60.0, speech_level - _PAUSE_BELOW_SPEECH_DB)
    # Runs of voiced frames; runs apart by fewer than ``min_silent`` frames are one region.
    edges = np.diff(voiced.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if not len(starts):
        return []
    min_silent = max(1, round(MIN_PAUSE_SECONDS / _FRAME_SECONDS))
    apart = np.flatnonzero(starts[1:] - ends[:-1] >= min_silent)
    firsts = starts[np.concatenate(([0], apart + 1))].tolist()
    lasts = ends[np.concatenate((apart, [len(ends) - 1]))].tolist()
    return [
        (first * _FRAME_SECONDS, last * _FRAME_SECONDS) for first, last in zip(firsts, lasts, strict=True)
    ]


def _proportional(words: Sequence[str], regions: Sequence[tuple[float, float]]) -> list[float]:
    """Word starts spread over the speech (pauses left out) by their characters."""
    speech = sum(end - start for start, end in regions)
    sizes = [len(word) + 1 for word in words]
    total = sum(sizes)
    starts: list[float] = []
    position = 0
    for size in sizes:
        starts.append(_speech_to_time(position / total * speech, regions))
        position += size
    return starts


def _speech_to_time(speech_seconds: float, regions: Sequence[tuple[float, float]]) -> float:
    for start, end in regions:
        if speech_seconds <= end - start:
            return start + speech_seconds
        speech_seconds -= end - start
    return regions[-1][1] if regions else 0.0


def _from_marks(
    words: Sequence[str], marks: Sequence[tuple[int, str]], sample_rate: int
) -> list[float | None]:
    """Each word's arrival time from the deltas (``None`` for words the deltas do not have:
    the final transcript is authoritative and may differ a little)."""
    delta_words: list[str] = []
    delta_times: list[float] = []
    carry = ""
    carry_time = 0.0
    for offset, text in marks:
        seconds = offset / (2 * sample_rate)
        pieces = (carry + text).split(" ")
        if not carry:
            carry_time = seconds
        for piece in pieces[:-1]:
            if piece.strip():
                delta_words.append(piece.strip())
                delta_times.append(carry_time)
            carry_time = seconds
        carry = pieces[-1]
    if carry.strip():
        delta_words.append(carry.strip())
        delta_times.append(carry_time)
    times: list[float | None] = [None] * len(words)
    matcher = difflib.SequenceMatcher(
        None, [w.lower() for w in words], [w.lower() for w in delta_words], False
    )
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            times[block.a + k] = delta_times[block.b + k]
    return times


@dataclass(frozen=True, slots=True)
class TimedSpeech:
    """A segment's words with their times, and where its speech starts after each pause."""

    words: tuple[Word, ...]
    onsets: tuple[float, ...]

    def shifted(self, seconds: float) -> TimedSpeech:
        """The same, ``seconds`` later (the segment placed in the narration)."""
        return TimedSpeech(tuple(shifted(self.words, seconds)), tuple(o + seconds for o in self.onsets))


def time_words(
    pcm: bytes | bytearray,
    transcript: str,
    marks: Sequence[tuple[int, str]] = (),
    sample_rate: int = SAMPLE_RATE,
) -> TimedSpeech:
    """The words of ``transcript`` with their times in ``pcm`` (see the module docstring).
    CPU-bound: call it in a worker thread (it holds :data:`~podcast.audio.ANALYSIS_LOCK`)."""
    with ANALYSIS_LOCK:
        return _time_words(pcm, transcript, marks, sample_rate)


def _time_words(
    pcm: bytes | bytearray, transcript: str, marks: Sequence[tuple[int, str]], sample_rate: int
) -> TimedSpeech:
    words = transcript.split()
    if not words:
        return TimedSpeech((), ())
    regions, assigned = _paused_words(pcm, words, marks, sample_rate)
    # Anchors: (first word, first region) of each stretch of speech between assigned pauses.
    anchors = [(0, 0), *sorted(assigned.items()), (len(words), len(regions))]
    starts: list[float] = []
    for (first, region), (following, next_region) in itertools.pairwise(anchors):
        starts += _proportional(words[first:following], regions[region:next_region])
    ends = [*starts[1:], regions[-1][1]]
    region_starts = [start for start, _ in regions]
    region_ends = [end for _, end in regions]
    timed = tuple(
        Word(word, start, max(start, _speech_end_before(end, region_starts, region_ends)))
        for word, start, end in zip(words, starts, ends, strict=True)
    )
    return TimedSpeech(timed, tuple(start for start, _ in regions))


def _paused_words(
    pcm: bytes | bytearray | memoryview,
    words: Sequence[str],
    marks: Sequence[tuple[int, str]],
    sample_rate: int,
) -> tuple[list[tuple[float, float]], dict[int, int]]:
    """The speech regions of ``pcm`` and which word each pause comes before (step 2 of the
    module docstring, from the estimates of step 1)."""
    duration = len(pcm) / (2 * sample_rate)
    regions = speech_regions(pcm, sample_rate) or [(0.0, duration)]
    estimates = _proportional(words, regions)
    if marks and any(offset for offset, _ in marks):
        arrived = _from_marks(words, marks, sample_rate)
        if sum(t is not None for t in arrived) >= len(words) / 2:
            estimates = _interpolate(arrived, estimates)
    return regions, _assign_pauses(words, estimates, regions)


def pause_before(
    pcm: bytes | bytearray | memoryview,
    words: Sequence[str],
    index: int,
    marks: Sequence[tuple[int, str]] = (),
    sample_rate: int = SAMPLE_RATE,
) -> tuple[float, float] | None:
    """The pause before word ``index`` of ``words`` said in ``pcm`` (with the transcript
    deltas ``marks``, as :func:`time_words` takes them): ``(where the speech before it
    ends, where the voice starts again)`` in seconds, given to that word as
    :func:`time_words` gives pauses to words; ``None`` when no pause is (none is near its
    estimate, or none is there at all). CPU-bound, as :func:`time_words`."""
    if not 0 < index < len(words):
        return None
    with ANALYSIS_LOCK:
        regions, assigned = _paused_words(pcm, words, marks, sample_rate)
    region = assigned.get(index)
    return None if region is None else (regions[region - 1][1], regions[region][0])


def _boundary_costs(previous: str) -> tuple[float, float, float]:
    """``(cost of a pause here, cost of no pause here, gain per second of pause)`` for the
    boundary after the word ``previous``: a voice pauses at sentence ends (longest) and
    usually at clause marks, rarely between other words (and briefly: a short gap is as
    likely a stop consonant inside a word)."""
    bare = previous.rstrip(_CLOSING)
    if bare.endswith(_SENTENCE_END):
        return 0.0, _NO_PAUSE_AT_SENTENCE_END, _LONG_PAUSE_GAIN
    if bare.endswith(_CLAUSE_END):
        return _PAUSE_AT_CLAUSE, _NO_PAUSE_AT_CLAUSE, _LONG_PAUSE_GAIN
    return _PAUSE_BETWEEN_WORDS, 0.0, 0.0


def _assign_pauses(
    words: Sequence[str], estimates: Sequence[float], regions: Sequence[tuple[float, float]]
) -> dict[int, int]:
    """Which word each pause comes before: ``{word index: index of the speech region it
    starts}``, in order (both increase together), minimising the distance of each word's
    estimate to its region's start plus the boundary costs (:func:`_boundary_costs`) and,
    for each pause given to no word, a cost growing with its length."""
    count = len(words)
    costs = [_boundary_costs(word) for word in words[:-1]]
    here = np.array([0.0] + [pause - none for pause, none, _ in costs])  # relative to "no pause anywhere"
    gain = np.array([0.0] + [per_second for _, _, per_second in costs])
    times = np.asarray(estimates, dtype=np.float64)
    positions = np.arange(count)
    best = np.full(count, math.inf)  # best[i]: cost so far, the last pause before word i
    best[0] = 0.0
    # Per pause: for each word, whether the pause is given to it, and the previous last word.
    steps: list[tuple[NDArray[np.intp], NDArray[np.bool_]]] = []
    for region in range(1, len(regions)):
        onset = regions[region][0]
        length = onset - regions[region - 1][1]
        skip = _UNASSIGNED_PAUSE + _UNASSIGNED_PAUSE_PER_SECOND * length
        new = best + skip
        # The lowest cost among the words before each word, and the first word that has it.
        lowest = np.minimum.accumulate(best)
        record = np.concatenate(([True], best[1:] < lowest[:-1]))
        lowest_at = np.maximum.accumulate(np.where(record, positions, 0))
        distance = np.abs(onset - times[1:])
        cost = lowest[:-1] + distance + here[1:] - gain[1:] * length
        taken = np.concatenate(([False], (distance <= _MAX_SHIFT_SECONDS) & (cost < new[1:])))
        new[taken] = cost[taken[1:]]
        previous = np.concatenate(([0], lowest_at[:-1]))
        steps.append((np.where(taken, previous, positions), taken))
        best = new
    last = int(np.argmin(best))
    assigned: dict[int, int] = {}
    for region in range(len(regions) - 1, 0, -1):
        previous_last, taken_here = steps[region - 1]
        if taken_here[last]:
            assigned[last] = region
        last = int(previous_last[last])
    return assigned


def _interpolate(arrived: Sequence[float | None], fallback: Sequence[float]) -> list[float]:
    """Known times as they are; unknown ones between their known neighbours (by the
    fallback's spacing), or the fallback itself at the edges."""
    known = [i for i, t in enumerate(arrived) if t is not None]
    result: list[float] = []
    for index, value in enumerate(arrived):
        if value is not None:
            result.append(value)
            continue
        before = max((k for k in known if k < index), default=None)
        after = min((k for k in known if k > index), default=None)
        if before is None or after is None:
            result.append(fallback[index])
            continue
        t0, t1 = arrived[before], arrived[after]
        assert t0 is not None
        assert t1 is not None
        span = fallback[after] - fallback[before]
        share = (fallback[index] - fallback[before]) / span if span > 0 else 0.5
        result.append(t0 + share * (t1 - t0))
    return result


def _speech_end_before(moment: float, starts: Sequence[float], ends: Sequence[float]) -> float:
    """``moment``, or the end of the speech before it when it falls in a pause (or where
    the speech starts again: a word ends before the pause, not after it). The speech regions
    are ``starts[i]`` to ``ends[i]``, in order and apart; found by bisection (a scan of every
    region for every word cost a third of a segment's caption timing)."""
    inside = bisect.bisect_left(ends, moment)  # the first region ending at or after moment
    if inside < len(ends) and starts[inside] < moment:
        return moment
    before = bisect.bisect_right(ends, moment) - 1  # the last region ending at or before it
    return ends[before] if before >= 0 else moment


def make_cues(words: Sequence[Word], onsets: Sequence[float] = ()) -> list[Cue]:
    """Captions of at most :data:`MAX_LINES` lines of about :data:`MAX_LINE_CHARACTERS`
    characters and at most :data:`MAX_CUE_SECONDS`, ending at sentence ends where they
    can; a cue's start snaps to the nearest of ``onsets`` (speech starts) within
    :data:`SNAP_SECONDS`. Lines are wrapped as ``textwrap.wrap`` wraps the cue's words
    joined by single spaces."""
    groups: list[tuple[list[Word], _Layout]] = []
    current: list[Word] = []
    layout = _Layout()
    for word in words:
        too_slow = current and word.end - current[0].start > MAX_CUE_SECONDS
        if current and (too_slow or layout.lines_with(word.text) > MAX_LINES):
            groups.append((current, layout))
            current, layout = [], _Layout()
        current.append(word)
        layout.add(word.text)
        if word.text.endswith(_SENTENCE_END) and layout.characters >= MAX_LINE_CHARACTERS // 2:
            groups.append((current, layout))
            current, layout = [], _Layout()
    if current:
        groups.append((current, layout))
    sorted_onsets = sorted(onsets)
    cues: list[Cue] = []
    for number, (group, group_layout) in enumerate(groups):
        start = _snap(group[0].start, sorted_onsets)
        if cues:
            start = max(start, cues[-1].start + 0.001)
        end = max(group[-1].end, start + MIN_CUE_SECONDS)
        if number + 1 < len(groups):
            end = min(end, _snap(groups[number + 1][0][0].start, sorted_onsets))
        end = min(end, start + MAX_CUE_SECONDS)
        lines = tuple(group_layout.lines()) or ("",)
        if cues and cues[-1].end > start:
            cues[-1] = Cue(cues[-1].lines, cues[-1].start, start)
        cues.append(Cue(lines, start, max(end, start + 0.001)))
    return cues


_WRAP_SPACE: Final = frozenset("\t\n\x0b\x0c\r ")
"""What ``textwrap`` takes for whitespace (ASCII only)."""


def _plain(text: str) -> bool:
    """Whether ``textwrap`` keeps ``text`` whole as one chunk on a line of its own: no
    hyphen it may break after, no whitespace, not longer than a line (nor empty)."""
    return 0 < len(text) <= MAX_LINE_CHARACTERS and "-" not in text and _WRAP_SPACE.isdisjoint(text)


class _Layout:
    """How ``textwrap.wrap`` lays out words joined by single spaces, kept up to date word
    by word. For plain words (:func:`_plain`) ``textwrap`` is the greedy fill: a word goes
    on the current line when it fits after one space, else it starts the next. Any other
    word, once added, makes every answer ``textwrap``'s own."""

    __slots__ = ("_lines", "_words", "characters")

    def __init__(self) -> None:
        self._words: list[str] = []
        self._lines: list[str] | None = []
        """The lines so far while every word is plain (``None`` after any other)."""
        self.characters = 0
        """Of the words joined by single spaces."""

    @staticmethod
    def _fits(lines: list[str], text: str) -> bool:
        """Whether plain ``text`` goes on the last of ``lines`` (there is one, with room after a space)."""
        return bool(lines) and len(lines[-1]) + 1 + len(text) <= MAX_LINE_CHARACTERS

    def lines_with(self, text: str) -> int:
        """Lines of these words and ``text``."""
        if self._lines is not None and _plain(text):
            return len(self._lines) + (0 if self._fits(self._lines, text) else 1)
        return len(textwrap.wrap(" ".join([*self._words, text]), MAX_LINE_CHARACTERS))

    def add(self, text: str) -> None:
        self.characters += len(text) + (1 if self._words else 0)
        self._words.append(text)
        if self._lines is None or not _plain(text):
            self._lines = None
        elif self._fits(self._lines, text):
            self._lines[-1] += " " + text
        else:
            self._lines.append(text)

    def lines(self) -> list[str]:
        """``textwrap.wrap`` of the words joined by single spaces."""
        if self._lines is not None:
            return list(self._lines)
        return textwrap.wrap(" ".join(self._words), MAX_LINE_CHARACTERS)


def _snap(moment: float, onsets: Sequence[float]) -> float:
    if not onsets:
        return moment
    index = bisect.bisect_left(onsets, moment)
    nearest = min(onsets[max(0, index - 1) : index + 1], key=lambda onset: abs(onset - moment))
    return nearest if abs(nearest - moment) <= SNAP_SECONDS else moment


def _timestamp(seconds: float, separator: str) -> str:
    milliseconds = max(0, round(seconds * 1000))
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole:02d}{separator}{millis:03d}"


def webvtt(cues: Sequence[Cue]) -> str:
    """A WebVTT file of ``cues`` (text escaped: ``&``, ``<``, ``>``)."""
    blocks = ["WEBVTT"]
    for cue in cues:
        text = "\n".join(_escaped(line) for line in cue.lines)
        if cue.speaker is not None:
            text = f"<v {_escaped(cue.speaker)}>{text}"
        blocks.append(f"{_timestamp(cue.start, '.')} --> {_timestamp(cue.end, '.')}\n{text}")
    return "\n\n".join(blocks) + "\n"


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def srt(cues: Sequence[Cue]) -> str:
    """A SubRip file of ``cues`` (a speaker's cue starts ``Name: ``)."""
    blocks = [
        f"{number}\n{_timestamp(cue.start, ',')} --> {_timestamp(cue.end, ',')}\n"
        + ("" if cue.speaker is None else f"{cue.speaker}: ")
        + "\n".join(cue.lines)
        for number, cue in enumerate(cues, start=1)
    ]
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def shifted(words: Sequence[Word], seconds: float) -> list[Word]:
    """``words`` later by ``seconds`` (a segment's words placed in the narration)."""
    return [Word(w.text, w.start + seconds, w.end + seconds) for w in words]
