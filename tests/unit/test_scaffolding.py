"""The transcript never carries the prompt's scaffolding: strip_scaffolding on what models
say when they read the marker lines too; and the audio does not either: the markers' speech
is cut at the pauses around the text, or the segment narrated again."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from emulator.speech import SyntheticEngine
from podcast.engine import audio
from podcast.engine.instructions import spoken_scaffolding, strip_scaffolding, user_message
from podcast.engine.longform import FIRMER_RULES, MARKER_RULES, narrate_text
from podcast.engine.responses import SpokenText, Timings
from podcast.engine.scaffolding import LEAD_SECONDS, cut_spoken_markers
from podcast.errors import NarrationError, PodcastError
from podcast.models import RequestLimits, parse_request
from podcast.settings import NarrationSettings
from podcast.wire import Usage
from testkit.sinks import MemoryPieces

TEXT = "Welcome to the show. Today: why rivers bend."


@pytest.mark.parametrize(
    "spoken",
    [
        f"<<<\n{TEXT}\n>>>",
        f"<<< {TEXT} >>>",
        f"Less than less than less than. {TEXT} Greater than greater than greater than.",
        f"less-than, less-than, less-than {TEXT} greater than greater than greater than",
        f"Left angle bracket left angle bracket left angle bracket. {TEXT} Right angle brackets.",
        f"<<<<<< {TEXT}",  # a longer run than the fence
        f"{TEXT} >>>",
    ],
)
def test_spoken_markers_are_removed(spoken: str) -> None:
    assert strip_scaffolding(spoken, TEXT) == TEXT


def test_a_transcript_without_scaffolding_is_unchanged() -> None:
    for transcript in (TEXT, "  " + TEXT + "\n", "Less than a mile from here. More than that, we can't say."):
        assert strip_scaffolding(transcript, TEXT) == transcript.strip()


def test_marker_runs_that_belong_to_the_text_are_kept() -> None:
    text = "Type <<< to indent and >>> to outdent."
    fenced = user_message(parse_request({"text": text}, RequestLimits()))
    assert fenced.splitlines()[0] == "<<<<"  # the fence is longer than any run in the text

    assert strip_scaffolding(fenced, text) == text
    assert strip_scaffolding(text, text) == text


@pytest.mark.parametrize(
    ("spoken", "opening", "closing"),
    [
        (f"Less than less than less than. {TEXT} Greater than greater than greater than.", True, True),
        (f"<<< less-than, less-than, less-than {TEXT}", True, False),
        (f"{TEXT} right angle brackets >>>", False, True),
        (f"<<<\n{TEXT}\n>>>", False, False),  # written only: nothing said to cut
        (TEXT, False, False),
        ("Less than a mile. More than that.", False, False),
    ],
)
def test_spoken_scaffolding_says_how_much_of_each_end_was_said(
    spoken: str, opening: bool, closing: bool
) -> None:
    head, tail = spoken_scaffolding(spoken, TEXT)
    assert (bool(head), bool(tail)) == (opening, closing)
    if opening or closing:
        assert spoken[head : len(spoken) - tail].strip() == TEXT


# --- Cutting the markers' speech from the audio ---------------------------------------------

ENGINE = SyntheticEngine()
OPENING = "Less than less than less than. "
CLOSING = "Greater than greater than greater than."


def said(*parts: str) -> tuple[bytearray, tuple[tuple[int, str], ...]]:
    """Synthetic speech of ``parts`` one after the other, each part a transcript delta."""
    pcm = bytearray()
    marks = []
    for part in parts:
        marks.append((len(pcm), part))
        pcm += ENGINE.synthesize(part, "alloy")
    return pcm, tuple(marks)


def test_the_markers_speech_is_cut_at_the_pauses_around_the_text() -> None:
    text_pcm = ENGINE.synthesize(TEXT, "alloy")
    pcm, marks = said(OPENING, TEXT + " ", CLOSING)

    kept = cut_spoken_markers(pcm, OPENING + TEXT + " " + CLOSING, marks, TEXT)

    lead = LEAD_SECONDS * audio.BYTES_PER_SECOND
    assert kept is not None
    assert [delta for _, delta in kept] == [TEXT + " "]  # where the text's speech now starts
    assert kept[0][0] == pytest.approx(lead, abs=0.03 * audio.BYTES_PER_SECOND)
    # As long as the text said alone: LEAD_SECONDS of the pause kept before it, the pause
    # after it (0.42 s, under TAIL_SECONDS) kept but for LEAD_SECONDS before the markers.
    assert abs(len(pcm) - len(text_pcm)) <= 0.03 * audio.BYTES_PER_SECOND  # a frame either way
    voiced = np.flatnonzero(np.frombuffer(bytes(pcm), "<i2"))
    assert voiced[0] / audio.SAMPLE_RATE == pytest.approx(LEAD_SECONDS, abs=0.03)


def test_without_spoken_markers_nothing_is_cut() -> None:
    pcm, marks = said(TEXT)
    before = bytes(pcm)
    assert cut_spoken_markers(pcm, f"<<<\n{TEXT}\n>>>", marks, TEXT) == marks
    assert bytes(pcm) == before


def test_markers_run_into_the_text_are_not_cut() -> None:
    """No pause between the markers and the text: no cut, and the audio is left whole."""
    pcm, marks = said(OPENING.replace(".", ""), TEXT)
    hum = np.frombuffer(bytes(pcm), "<i2").copy()
    hum[hum == 0] = 3000  # the pauses filled: one stretch of sound
    pcm[:] = hum.tobytes()
    assert cut_spoken_markers(pcm, OPENING + TEXT, marks, TEXT) is None
    assert bytes(pcm) == hum.tobytes()


class MarkersNarrator:
    """A narrator whose first reply says the markers with no pause to cut at, then reads the text alone."""

    def __init__(self, then: PodcastError | None = None) -> None:
        self.calls = 0
        self.instructions: list[str] = []
        self.then = then
        """Raised by every reply after the first, when given."""

    async def narrate(self, message: str, **kwargs: Any) -> SpokenText:
        self.calls += 1
        self.instructions.append(kwargs["instructions"])
        if self.calls > 1 and self.then is not None:
            raise self.then
        if self.calls == 1:
            pcm, marks = said(OPENING.replace(".", ""), TEXT)
            hum = np.frombuffer(bytes(pcm), "<i2").copy()
            hum[hum == 0] = 3000
            pcm[:] = hum.tobytes()
        else:
            pcm, marks = said(TEXT)
        transcript = "".join(delta for _, delta in marks)
        return SpokenText(
            pcm,
            transcript,
            "completed",
            Usage(),
            Usage(),
            Timings(0.1, 1.0),
            "alloy",
            1,
            transcript_marks=marks,
        )


async def test_markers_that_cannot_be_cut_are_narrated_again() -> None:
    narrator = MarkersNarrator()
    sink = MemoryPieces()
    request = parse_request({"text": TEXT}, RequestLimits())

    narrated = await narrate_text(narrator, request, sink, NarrationSettings(), budget_seconds=60)  # type: ignore[arg-type]

    assert narrator.calls == 2
    assert narrated.transcript == TEXT
    assert narrated.warnings == ()
    assert narrated.segments[0].attempts == 2
    # The second reading is told about the markers, not to read more exactly (it read well).
    assert narrator.instructions[1].startswith(MARKER_RULES)
    assert FIRMER_RULES not in narrator.instructions[1]
    assert MARKER_RULES not in narrator.instructions[0]


@pytest.mark.parametrize("mode", ["read", "episode"])
async def test_a_second_reading_that_fails_keeps_the_first(mode: str) -> None:
    """The markers could not be cut and the second reading raised (its budget ran out, say):
    the first reading stands, with the warning, instead of the segment failing."""
    narrator = MarkersNarrator(then=NarrationError("the second reading broke off"))
    sink = MemoryPieces()
    request = parse_request({"text": TEXT, "mode": mode}, RequestLimits())

    narrated = await narrate_text(narrator, request, sink, NarrationSettings(), budget_seconds=60)  # type: ignore[arg-type]

    assert narrator.calls == 2
    assert FIRMER_RULES not in narrator.instructions[1], "an episode is never told to read verbatim"
    assert any("marker lines" in warning for warning in narrated.warnings)
    assert sink.pcm(), "the first reading's audio was kept"


async def test_markers_never_cut_leave_a_warning() -> None:
    narrator = MarkersNarrator()
    sink = MemoryPieces()
    request = parse_request({"text": TEXT}, RequestLimits())

    settings = NarrationSettings(fidelity_attempts=1)
    narrated = await narrate_text(narrator, request, sink, settings, budget_seconds=60)  # type: ignore[arg-type]

    assert narrator.calls == 1
    assert narrated.transcript == TEXT
    assert any("marker lines" in warning for warning in narrated.warnings)
