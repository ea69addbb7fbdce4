"""Captions of a voiced script: each turn's cues hold the words its own responses said, by
count, whatever their timing says at the boundary (a turn's first word timed a hair before
its turn starts, as caption timing can place it, stays in its own turn and speaker)."""

from __future__ import annotations

from podcast.audio.captions import Word
from podcast.engine.conversation import _cues
from podcast.wire import TurnReport


def turn(index: int, speaker: str, start: float, end: float, text: str) -> TurnReport:
    return TurnReport(index=index, speaker=speaker, voice="marin", start=start, end=end, text=text)


def test_a_turns_first_word_timed_before_the_boundary_stays_in_its_turn() -> None:
    turns = [
        turn(0, "Leo", 0.0, 3.4, "Because water pushes hardest."),
        turn(1, "Ana", 3.766, 7.8, "And it drops sand."),
    ]
    words = [
        Word("Because", 0.0, 0.6),
        Word("water", 0.6, 1.2),
        Word("pushes", 1.2, 2.0),
        Word("hardest.", 2.0, 3.4),
        Word("And", 3.7659999, 4.0),  # a float's width before its turn's start
        Word("it", 4.0, 4.3),
        Word("drops", 4.3, 5.0),
        Word("sand.", 5.0, 7.8),
    ]
    cues = _cues(words, [0.0, 3.766], turns, [4, 4])
    by_speaker: dict[str | None, list[str]] = {}
    for cue in cues:
        assert cue.end > cue.start, cue
        by_speaker.setdefault(cue.speaker, []).extend(" ".join(cue.lines).split())
    assert by_speaker == {
        "Leo": ["Because", "water", "pushes", "hardest."],
        "Ana": ["And", "it", "drops", "sand."],
    }
    ana = [cue for cue in cues if cue.speaker == "Ana"]
    assert ana[0].start == 3.766, "a cue starts no earlier than its turn"


def test_a_word_timed_well_into_the_next_turn_is_still_its_own_turns() -> None:
    turns = [turn(0, "Maya", 0.0, 2.0, "So."), turn(1, "Leo", 2.35, 4.0, "Yes indeed.")]
    words = [Word("So.", 0.0, 2.0), Word("Yes", 2.3, 3.0), Word("indeed.", 3.0, 4.0)]
    cues = _cues(words, [], turns, [1, 2])
    assert [(cue.speaker, " ".join(cue.lines)) for cue in cues] == [("Maya", "So."), ("Leo", "Yes indeed.")]
    assert all(cue.end > cue.start for cue in cues)
