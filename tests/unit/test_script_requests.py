"""Script requests (speakers, script, chapters): what is accepted, what is refused with the
field and index named, the limits at ±1, a stored request validating again, and the pieces
of the voice stage that need no server (the plan of segments, speaker captions, who speaks)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import webvtt

from emulator.speech import SyntheticEngine
from podcast.audio.captions import Cue, srt
from podcast.audio.captions import webvtt as to_webvtt
from podcast.engine.conversation import plan
from podcast.errors import RequestValidationError
from podcast.models import NarrationRequest, RequestLimits, parse_request
from podcast.settings import MAX_SCRIPT_CHARACTERS, MAX_SCRIPT_TURNS
from testkit.voices import identify_voice

LIMITS = RequestLimits()
SPEAKERS = [{"name": "Maya", "voice": "marin"}, {"name": "Leo", "voice": "cedar", "description": "curious"}]
SCRIPT = [{"speaker": "Maya", "text": "Hello and welcome."}, {"speaker": "Leo", "text": "Thanks, Maya."}]


def script_request(**changes: Any) -> dict[str, Any]:
    return {"speakers": SPEAKERS, "script": SCRIPT, **changes}


def refused(body: dict[str, Any]) -> RequestValidationError:
    with pytest.raises(RequestValidationError) as caught:
        parse_request(json.dumps(body).encode(), LIMITS)
    assert caught.value.http_status == 400
    return caught.value


def test_a_script_request_is_script_mode_with_the_turns_as_its_text() -> None:
    request = parse_request(script_request(chapters=[{"title": "Hello", "turn": 0}]), LIMITS)
    assert request.mode == "script"
    assert request.text == "Hello and welcome.\n\nThanks, Maya."
    document = request.script_document()
    assert [(t.speaker, t.text) for t in document.script] == [
        ("Maya", "Hello and welcome."),
        ("Leo", "Thanks, Maya."),
    ]
    assert [s.voice for s in document.speakers] == ["marin", "cedar"]
    assert [(c.title, c.turn) for c in document.chapters] == [("Hello", 0)]


def test_names_in_any_script_are_fine() -> None:
    body = script_request(
        speakers=[{"name": "Zoë O'Brien-Núñez", "voice": "marin"}, {"name": "話者 2", "voice": "cedar"}],
        script=[
            {"speaker": "zoë o'brien-núñez", "text": "Hola."},
            {"speaker": "話者 2", "text": "こんにちは。"},
        ],
    )
    assert [t.speaker for t in parse_request(body, LIMITS).script or ()] == ["Zoë O'Brien-Núñez", "話者 2"]


def test_names_and_voices_are_matched_without_case_and_normalized() -> None:
    body = script_request(
        speakers=[{"name": "  Maya  ", "voice": "MARIN"}, {"name": "Leo", "voice": "Cedar"}],
        script=[{"speaker": "maya", "text": "Hi."}, {"speaker": "LEO", "text": "Hello."}],
    )
    request = parse_request(body, LIMITS)
    assert [t.speaker for t in request.script or ()] == ["Maya", "Leo"]
    assert [s.voice for s in request.speakers or ()] == ["marin", "cedar"]


def test_a_stored_script_request_validates_again_to_the_same_request() -> None:
    request = parse_request(script_request(title="Talk"), LIMITS)
    stored = request.model_dump(mode="json", exclude_unset=True)  # what a job keeps
    assert "text" not in stored
    again = NarrationRequest.model_validate(stored, context={"limits": LIMITS})
    assert again == request
    assert again.fingerprint() == request.fingerprint()


def test_the_fingerprint_follows_the_voices_and_the_turns() -> None:
    base = parse_request(script_request(), LIMITS).fingerprint()
    swapped = [{"name": "Maya", "voice": "cedar"}, {"name": "Leo", "voice": "marin"}]
    assert parse_request(script_request(speakers=swapped), LIMITS).fingerprint() != base
    reordered = [SCRIPT[1], SCRIPT[0]]
    assert parse_request(script_request(script=reordered), LIMITS).fingerprint() != base
    same_text = parse_request({"text": "Hello and welcome.\n\nThanks, Maya."}, LIMITS).fingerprint()
    assert same_text != base


FOUR = [{"name": f"Host {n}", "voice": "ash"} for n in range(4)]
BAD: list[tuple[dict[str, Any], str]] = [
    (script_request(script=[*SCRIPT, {"speaker": "Zoe", "text": "Hi."}]), "script[2].speaker"),
    (script_request(script=[*SCRIPT, {"speaker": " ", "text": "Hi."}]), "script[2].speaker"),
    (script_request(script=[*SCRIPT, {"speaker": 3, "text": "Hi."}]), "script[2].speaker"),
    (script_request(script=[SCRIPT[0], {"speaker": "Leo"}]), "script[1].text"),
    (script_request(script=[SCRIPT[0], {"speaker": "Leo", "text": ""}]), "script[1].text"),
    (script_request(script=[SCRIPT[0], {"speaker": "Leo", "text": "!!! ..."}]), "script[1].text"),
    (script_request(script=[SCRIPT[0], {"speaker": "Leo", "text": "a\x00b"}]), "script[1].text"),
    (script_request(script=[SCRIPT[0], {"speaker": "Leo", "text": "Hi", "voice": "ash"}]), "script[1].voice"),
    (script_request(script=[SCRIPT[0], "Leo: hi"]), "script[1]"),
    (script_request(script=[]), "script"),
    (script_request(script="Maya: hi"), "script"),
    (script_request(speakers=[SPEAKERS[0], {"name": "MAYA", "voice": "cedar"}]), "speakers[1].name"),
    (script_request(speakers=[SPEAKERS[0], {"name": "Leo", "voice": "nova"}]), "speakers[1].voice"),
    (script_request(speakers=[SPEAKERS[0], {"name": "Leo"}]), "speakers[1].voice"),
    (script_request(speakers=[SPEAKERS[0], {"voice": "cedar"}]), "speakers[1].name"),
    (script_request(speakers=[SPEAKERS[0], {"name": "Leo <b>", "voice": "cedar"}]), "speakers[1].name"),
    (script_request(speakers=[SPEAKERS[0], {"name": "Leo:", "voice": "cedar"}]), "speakers[1].name"),
    (script_request(speakers=[SPEAKERS[0], {"name": "Le\no", "voice": "cedar"}]), "speakers[1].name"),
    (script_request(speakers=[SPEAKERS[0], {"name": "L" * 41, "voice": "cedar"}]), "speakers[1].name"),
    (script_request(speakers=[SPEAKERS[0], {"name": "Le\u202eo", "voice": "cedar"}]), "speakers[1].name"),
    (script_request(speakers=[SPEAKERS[0], {"name": "Le\u200bo", "voice": "cedar"}]), "speakers[1].name"),
    (script_request(speakers=[SPEAKERS[0], {"name": "\U0001f600", "voice": "cedar"}]), "speakers[1].name"),
    (script_request(speakers=[SPEAKERS[0], {"name": "Leo", "voice": "cedar", "age": 3}]), "speakers[1].age"),
    (script_request(speakers=[*FOUR, {"name": "Leo", "voice": "cedar"}]), "speakers"),
    (script_request(speakers=[]), "speakers"),
    ({"script": SCRIPT}, "speakers"),
    (script_request(text="Also this."), "script"),
    (script_request(mode="read"), "mode"),
    (script_request(voice="ash"), "voice"),
    ({"mode": "script", "text": "Hello."}, "script"),
    ({"text": "Hello.", "speakers": SPEAKERS}, "speakers"),
    ({"text": "Hello.", "chapters": [{"title": "A", "turn": 0}]}, "chapters"),
    (script_request(chapters=[{"title": "A", "turn": 2}]), "chapters[0].turn"),
    (script_request(chapters=[{"title": "A", "turn": 1}, {"title": "B", "turn": 1}]), "chapters[1].turn"),
    (script_request(chapters=[{"title": "A", "turn": -1}]), "chapters[0].turn"),
    (script_request(chapters=[{"title": "A", "turn": True}]), "chapters[0].turn"),
    (script_request(chapters=[{"title": " ", "turn": 0}]), "chapters[0].title"),
    (script_request(style="summary"), "style"),
    (script_request(target_minutes=2), "target_minutes"),
]


@pytest.mark.parametrize(("body", "field"), BAD, ids=[f"{n}-{field}" for n, (_, field) in enumerate(BAD)])
def test_a_bad_script_request_is_a_400_naming_the_field_and_index(body: dict[str, Any], field: str) -> None:
    error = refused(body)
    assert error.field == field
    assert field.split(".")[0].split("[")[0] in error.message


def test_four_speakers_are_allowed_and_five_are_not() -> None:
    four = script_request(speakers=FOUR, script=[{"speaker": "host 3", "text": "Hi."}])
    assert parse_request(four, LIMITS).speakers == parse_request(four, LIMITS).speakers
    assert refused({**four, "speakers": [*FOUR, {"name": "Five", "voice": "ash"}]}).field == "speakers"
    one = script_request(speakers=SPEAKERS[:1], script=SCRIPT[:1])
    assert parse_request(one, LIMITS).mode == "script"


def test_the_script_limits_at_plus_and_minus_one() -> None:
    turn = {"speaker": "Maya", "text": "Hi."}
    assert len(parse_request(script_request(script=[turn] * MAX_SCRIPT_TURNS), LIMITS).script or ()) == 1000
    assert refused(script_request(script=[turn] * (MAX_SCRIPT_TURNS + 1))).code == "script_too_long"
    half = MAX_SCRIPT_CHARACTERS // 2
    full = [
        {"speaker": "Maya", "text": "a" * half},
        {"speaker": "Leo", "text": "b" * (MAX_SCRIPT_CHARACTERS - half)},
    ]
    assert (
        len(parse_request(json.dumps(script_request(script=full)).encode(), LIMITS).text)
        == MAX_SCRIPT_CHARACTERS + 2
    )
    over = [*full[:1], {"speaker": "Leo", "text": "b" * (MAX_SCRIPT_CHARACTERS - half + 1)}]
    error = refused(script_request(script=over))
    assert (error.field, error.code) == ("script", "script_too_long")


def test_the_plan_keeps_each_turn_in_its_voice_and_splits_long_turns() -> None:
    long_turn = " ".join(f"Sentence number {n} is here." for n in range(30))  # 150 words
    body = script_request(script=[{"speaker": "Maya", "text": long_turn}, *SCRIPT])
    planned = plan(parse_request(body, LIMITS).script_document(), max_words=40)
    assert planned.turn_of_segment[:4] == [0, 0, 0, 0]
    assert planned.turn_of_segment[-2:] == [1, 2]
    assert planned.voices == ["marin"] * (len(planned.voices) - 1) + ["cedar"]
    boundaries = [s.boundary for s in planned.segments]
    assert boundaries[-1] == "end"
    assert boundaries[-2] == "turn"
    assert boundaries.count("turn") == 2
    assert " ".join(s.text for s in planned.segments if planned.turn_of_segment[s.index] == 0) == long_turn


def test_speaker_captions_carry_voice_tags_and_labels() -> None:
    cues = [Cue(("Hello, welcome.",), 0.0, 1.5, speaker="Maya"), Cue(("Thanks.",), 1.9, 2.6, speaker="Leo")]
    parsed = webvtt.from_buffer(io.StringIO(to_webvtt(cues))).captions
    assert [(c.voice, c.text) for c in parsed] == [("Maya", "Hello, welcome."), ("Leo", "Thanks.")]
    assert "Maya: Hello, welcome.\n" in srt(cues)
    assert "2\n00:00:01,900 --> 00:00:02,600\nLeo: Thanks." in srt(cues)


def test_the_voice_of_the_emulators_speech_is_told_by_its_pitch() -> None:
    engine = SyntheticEngine()
    text = "Water pushes against the outer bank of a bend, so the bend keeps growing wider."
    voices = ["marin", "cedar", "echo", "shimmer"]
    assert [identify_voice(engine.synthesize(text, voice), voices) for voice in voices] == voices
    assert identify_voice(b"\x00\x00" * 24_000, voices) is None


def test_the_plan_matches_speakers_without_case_and_refuses_strangers() -> None:
    from podcast.wire import ScriptDocument

    speakers = [{"name": "Maya", "voice": "marin"}, {"name": "Leo", "voice": "cedar"}]
    written = ScriptDocument.model_validate(
        {
            "speakers": speakers,
            "script": [{"speaker": "MAYA", "text": "Hi."}, {"speaker": "leo", "text": "Hey."}],
        }
    )
    planned = plan(written, max_words=300)
    assert (planned.speakers, planned.voices) == (["Maya", "Leo"], ["marin", "cedar"])
    stranger = written.model_copy(
        update={"script": [*written.script, written.script[0].model_copy(update={"speaker": "Zoe"})]}
    )
    with pytest.raises(KeyError):
        plan(stranger, max_words=300)


def test_a_script_goes_to_the_job_path_by_the_length_of_its_turns() -> None:
    from podcast.services.records import estimate_audio_seconds

    turns = [{"speaker": "Maya" if n % 2 else "Leo", "text": "word " * 150} for n in range(20)]
    request = parse_request(script_request(script=turns), LIMITS)
    assert estimate_audio_seconds(request) == pytest.approx(
        20 * 60.0, rel=0.01
    )  # 3,000 words at 150 a minute
