"""The audio carries what the transcript says: spoken marker lines are cut from a response's PCM.

The text goes to the model between marker lines (:func:`~podcast.engine.instructions.user_message`).
A model that reads them aloud says "less than less than less than" before the text, "greater
than…" after it; :func:`~podcast.engine.instructions.strip_scaffolding` removes those words
from the transcript, and :func:`cut_spoken_markers` removes their speech from the audio.

Where the cut goes comes from the transcript deltas' places in the audio (the narrator's
marks: each delta with the audio bytes received before it) and from the pauses in the
audio, as captions are timed (:func:`podcast.audio.captions.pause_before`): the pause the
caption timing gives to the first word of the text (for the opening markers) or to the first
word after it (for the closing ones) is where the marker speech ends. The cut keeps
:data:`LEAD_SECONDS` of that pause before the text's first word and up to
:data:`TAIL_SECONDS` after its last one; the segment's edges are faded afterwards (``fade_edges_in_place``, as
every segment's are), and the cut lies in a pause, so it cannot click. Only a few seconds
at each end are analysed (:data:`WINDOW_SECONDS` past the estimate), never the whole segment.

When no pause can be given to that word (the voice ran the markers into the text, or the
deltas do not show where they are), the cut is not placed: the narration then treats the
attempt as a fidelity failure (see ``longform._narrate_piece``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from podcast.audio import captions
from podcast.engine import audio
from podcast.engine.instructions import spoken_scaffolding

LEAD_SECONDS: Final = 0.05
"""Of the pause after the opening markers, kept before the text's first word (its attack)."""
TAIL_SECONDS: Final = 0.5
"""Of the pause before the closing markers, kept at most after the text's last word (its
decay, and the silence a voice leaves after its last sentence), up to :data:`LEAD_SECONDS`
before the markers' first word."""
WINDOW_SECONDS: Final = 4.0
"""Audio analysed beyond the delta that carries the word the pause comes before (the caption
timing moves a word at most 2.5 s from its estimate)."""

Marks = tuple[tuple[int, str], ...]


@dataclass(frozen=True, slots=True)
class Cut:
    """Where the kept audio starts and ends (bytes of the original PCM)."""

    start: int
    end: int


def cut_spoken_markers(
    pcm: bytearray, transcript: str, marks: Sequence[tuple[int, str]], text: str
) -> Marks | None:
    """Cut the marker lines the model said (at the start and end of ``transcript``, the
    response to ``text``) from ``pcm``, in place; return the marks for the audio that is
    left (the markers' deltas, or their parts, left out). With nothing spoken, ``pcm`` is
    left as it is and ``marks`` returned; ``None`` (``pcm`` untouched) when the cut cannot
    be placed with confidence. CPU-bound (a few seconds of audio analysed): call it in a
    worker thread."""
    head, tail = spoken_scaffolding(transcript, text)
    if not head and not tail:
        return tuple(marks)
    cut = find_cut(pcm, marks, text, opening=bool(head), closing=bool(tail))
    if cut is None:
        return None
    kept = _kept_marks(marks, text, cut)
    del pcm[cut.end :]
    del pcm[: cut.start]
    return kept


def find_cut(
    pcm: bytes | bytearray, marks: Sequence[tuple[int, str]], text: str, *, opening: bool, closing: bool
) -> Cut | None:
    """The audio to keep when the deltas (``marks``) begin with spoken opening markers
    (``opening``) and end with closing ones (``closing``), or ``None`` when they do not show
    them or no pause separates them from the text."""
    spoken = "".join(delta for _, delta in marks)
    head, tail = spoken_scaffolding(spoken, text)
    if bool(head) != opening or bool(tail) != closing:
        return None  # the deltas do not say what the final transcript says
    words = [(m.start(), m.group()) for m in re.finditer(r"\S+", spoken)]
    first_delta = _delta_starts(marks)
    view = memoryview(pcm)
    start, end = 0, len(pcm)
    if head:
        index = sum(1 for at, word in words if at + len(word) <= head)  # the text's first word
        if index >= len(words):
            return None
        delta = _delta_at(first_delta, words[index][0])
        limit = min(len(pcm), _aligned(marks[delta][0] + WINDOW_SECONDS * audio.BYTES_PER_SECOND))
        inside = [m for i, m in enumerate(marks) if m[0] < limit or i <= delta]
        upto = first_delta[len(inside) - 1] + len(inside[-1][1])
        pause = captions.pause_before(view[:limit], [w for at, w in words if at < upto], index, inside)
        if pause is None:
            return None
        start = _aligned(max(pause[0], pause[1] - LEAD_SECONDS) * audio.BYTES_PER_SECOND)
    if tail:
        index = sum(1 for at, _ in words if at < len(spoken) - tail)  # the closing markers' first word
        if not 0 < index < len(words):
            return None
        delta = _delta_at(first_delta, words[index][0])
        earliest = marks[delta][0] - WINDOW_SECONDS * audio.BYTES_PER_SECOND
        begin = max((i for i in range(delta + 1) if marks[i][0] <= earliest), default=0)
        offset = marks[begin][0] if begin else 0
        chars = first_delta[begin] if begin else 0
        window_words = [w for at, w in words if at >= chars]
        skipped = len(words) - len(window_words)
        shifted = [(at - offset, delta_text) for at, delta_text in marks[begin:]]
        pause = captions.pause_before(view[offset:], window_words, index - skipped, shifted)
        if pause is None:
            return None
        kept = max(pause[0], min(pause[1] - LEAD_SECONDS, pause[0] + TAIL_SECONDS))
        end = offset + _aligned(kept * audio.BYTES_PER_SECOND)
    return Cut(start, end) if start < end else None


def _kept_marks(marks: Sequence[tuple[int, str]], text: str, cut: Cut) -> Marks:
    """``marks`` in the kept audio: the spoken markers' text left out, offsets moved by the cut."""
    spoken = "".join(delta for _, delta in marks)
    head, tail = spoken_scaffolding(spoken, text)
    first, last = head, len(spoken) - tail
    kept: list[tuple[int, str]] = []
    for (offset, delta), at in zip(marks, _delta_starts(marks), strict=True):
        part = delta[max(0, first - at) : max(0, last - at)]
        if part:
            kept.append((min(max(0, offset - cut.start), cut.end - cut.start), part))
    return tuple(kept)


def _delta_starts(marks: Sequence[tuple[int, str]]) -> list[int]:
    """Where each delta's text starts in the deltas joined."""
    starts: list[int] = []
    position = 0
    for _, delta in marks:
        starts.append(position)
        position += len(delta)
    return starts


def _delta_at(starts: Sequence[int], character: int) -> int:
    """The delta that carries ``character`` of the deltas joined."""
    return max(i for i, start in enumerate(starts) if start <= character)


def _aligned(position: float) -> int:
    """A byte position rounded to a whole PCM16 sample."""
    return max(0, round(position / audio.SAMPLE_WIDTH) * audio.SAMPLE_WIDTH)
