"""The transcript never carries the prompt's scaffolding: strip_scaffolding on what models
say when they read the marker lines too."""

from __future__ import annotations

import pytest

from podcast.engine.instructions import strip_scaffolding, user_message
from podcast.models import RequestLimits, parse_request

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
