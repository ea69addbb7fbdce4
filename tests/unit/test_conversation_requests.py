"""Conversation requests: the mode's length limit, its styles, and what decides a script."""

from __future__ import annotations

import pytest

from podcast.errors import RequestTooLargeError, RequestValidationError
from podcast.models import (
    DEFAULT_SPEAKERS,
    LIMITS_CONTEXT_KEY,
    MAX_CONVERSATION_MINUTES,
    MAX_TARGET_MINUTES,
    NarrationRequest,
    RequestLimits,
    ScriptRequest,
    parse_request,
    parse_script_request,
)
from podcast.wire import NarrationMode, Speaker

LIMITS = RequestLimits()


@pytest.mark.parametrize(
    ("mode", "maximum"), [("conversation", MAX_CONVERSATION_MINUTES), ("episode", MAX_TARGET_MINUTES)]
)
def test_each_mode_accepts_target_minutes_up_to_its_own_maximum(mode: NarrationMode, maximum: float) -> None:
    assert (
        parse_request({"text": "Hi.", "mode": mode, "target_minutes": maximum}, LIMITS).target_minutes
        == maximum
    )
    with pytest.raises(RequestValidationError) as refused:
        parse_request({"text": "Hi.", "mode": mode, "target_minutes": maximum + 0.01}, LIMITS)
    assert refused.value.field == "target_minutes"
    assert f"to {maximum:g} in {mode} mode" in refused.value.message


def test_the_conversation_fingerprint_covers_its_length() -> None:
    def fingerprint(minutes: float) -> str:
        return parse_request(
            {"text": "Hi.", "mode": "conversation", "target_minutes": minutes}, LIMITS
        ).fingerprint()

    assert fingerprint(10) != fingerprint(11)
    assert fingerprint(10) == fingerprint(10.0)


def test_the_script_fingerprint_covers_the_speakers_not_the_title() -> None:
    def fingerprint(extra: dict[str, object]) -> str:
        return parse_script_request({"text": "Hi.", **extra}, LIMITS).fingerprint()

    base = fingerprint({})
    assert base == fingerprint({"title": "Another"})
    assert base == fingerprint({"speakers": [s.model_dump() for s in DEFAULT_SPEAKERS]})
    assert base != fingerprint({"speakers": [{"name": "Maya", "voice": "marin"}]})
    assert base != fingerprint(
        {"speakers": [{"name": "Maya", "voice": "ash"}, {"name": "Theo", "voice": "cedar"}]}
    )


def test_the_default_hosts_are_two_named_realtime_voices_with_personas() -> None:
    assert [(s.name, s.voice) for s in DEFAULT_SPEAKERS] == [("Maya", "marin"), ("Theo", "cedar")]
    assert all(s.description for s in DEFAULT_SPEAKERS)
    assert (
        ScriptRequest(parse_request({"text": "Hi.", "mode": "conversation"}, LIMITS)).speakers
        == DEFAULT_SPEAKERS
    )


def test_speakers_are_normalized() -> None:
    request = parse_script_request(
        {"text": "Hi.", "speakers": [{"name": "  Ana  ", "voice": " CORAL ", "description": "  Calm.  "}]},
        LIMITS,
    )
    assert request.speakers == (Speaker(name="Ana", voice="coral", description="Calm."),)
    assert request.request.speakers == request.speakers


@pytest.mark.parametrize(
    ("speakers", "field"),
    [
        ([{"name": "Ana", "voice": "coral"}, {"name": "Ben", "voice": "nope"}], "speakers[1].voice"),
        ([{"name": "Ana", "voice": "coral"}, {"name": "ana", "voice": "ash"}], "speakers[1].name"),
        ([{"name": "Ana"}], "speakers[0].voice"),
        ([], "speakers"),
        ([{"name": f"S{i}", "voice": "ash"} for i in range(5)], "speakers"),
    ],
)
def test_a_script_request_names_the_bad_speaker_field(speakers: list[object], field: str) -> None:
    with pytest.raises(RequestValidationError) as refused:
        parse_script_request({"text": "Hi.", "speakers": speakers}, LIMITS)
    assert refused.value.field == field


def test_a_conversation_with_a_script_is_refused_naming_script() -> None:
    body = {
        "mode": "conversation",
        "speakers": [{"name": "Ana", "voice": "coral"}],
        "script": [{"speaker": "Ana", "text": "Hello."}],
    }
    with pytest.raises(RequestValidationError) as refused:
        parse_request(body, LIMITS)
    assert refused.value.field == "script"
    with pytest.raises(RequestValidationError) as written:
        parse_script_request({k: v for k, v in body.items() if k != "mode"}, LIMITS)
    assert written.value.field in {"script", "mode"}
    assert parse_request({k: v for k, v in body.items() if k != "mode"}, LIMITS).mode == "script"


def test_a_conversation_fingerprint_covers_its_hosts() -> None:
    def fingerprint(extra: dict[str, object]) -> str:
        return parse_request({"text": "Hi.", "mode": "conversation", **extra}, LIMITS).fingerprint()

    base = fingerprint({})
    assert base == fingerprint({"speakers": [s.model_dump() for s in DEFAULT_SPEAKERS]})
    assert base != fingerprint({"speakers": [{"name": "Ana", "voice": "coral"}]})


def test_a_script_request_body_is_checked_like_a_narration_body() -> None:
    small = RequestLimits(max_text_characters=100)
    with pytest.raises(RequestTooLargeError):
        parse_script_request(b'{"text": "' + b"x" * small.max_body_bytes + b'"}', small)
    with pytest.raises(RequestTooLargeError):
        parse_script_request('{"text": "' + "x" * small.max_body_bytes + '"}', small)
    with pytest.raises(RequestValidationError) as broken:
        parse_script_request(b'{"text": "Hi.", "speakers": [}', LIMITS)
    assert broken.value.code == "invalid_json"
    with pytest.raises(RequestValidationError) as twice:
        parse_script_request(b'{"text": "Hi.", "speakers": [], "speakers": []}', LIMITS)
    assert (twice.value.code, twice.value.field) == ("duplicate_field", "speakers")


def test_the_script_fingerprint_ignores_the_audio_format_and_the_show() -> None:
    """A conversation narrated as MP3 into a show shares its script with one that is not."""

    def fingerprint(extra: dict[str, object]) -> str:
        return ScriptRequest(
            parse_request({"text": "Hi.", "mode": "conversation", **extra}, LIMITS)
        ).fingerprint()

    assert fingerprint({}) == fingerprint({"format": "mp3", "show": "daily-digest"})
    assert fingerprint({}) != fingerprint({"style": "lecture"})


@pytest.mark.parametrize("voice", ["ash", "cedar", "NOPE", 7])
def test_a_voice_beside_a_conversation_is_refused_naming_voice(voice: str) -> None:
    body = {"text": "Rivers bend.", "mode": "conversation", "voice": voice}
    with pytest.raises(RequestValidationError) as refused:
        parse_request(body, LIMITS)
    assert refused.value.field == "voice"
    assert "speakers" in refused.value.message
    with pytest.raises(RequestValidationError) as written:
        parse_script_request({"text": "Rivers bend.", "voice": voice}, LIMITS)
    assert written.value.field == "voice"


def test_a_conversation_without_a_voice_or_with_an_empty_one_is_accepted() -> None:
    assert parse_request({"text": "Rivers bend.", "mode": "conversation"}, LIMITS).mode == "conversation"
    empty = {"text": "Rivers bend.", "mode": "Conversation", "voice": " "}  # flows send "" for unset
    assert parse_request(empty, LIMITS).mode == "conversation"
    # A connector's form sends the default voice unless changed: that is not a choice of voice.
    form = {"text": "Rivers bend.", "mode": "conversation", "voice": LIMITS.default_voice.upper()}
    assert parse_request(form, LIMITS).mode == "conversation"


def test_a_stored_conversation_job_validates_again_whatever_the_default_voice() -> None:
    """A job's request is stored with the default voice filled in and validated again when it
    runs (with other limits): the conversation's voice check is for callers, not for that."""
    here = RequestLimits(default_voice="cedar")
    request = parse_request({"text": "Rivers bend. " * 20, "mode": "conversation"}, here)
    stored = request.model_dump(mode="json", exclude_unset=True)
    assert stored["voice"] == "cedar"
    again = NarrationRequest.model_validate(stored, context={LIMITS_CONTEXT_KEY: RequestLimits()})
    assert again.mode == "conversation"
    with pytest.raises(RequestValidationError) as refused:  # a caller choosing it is still refused
        parse_request({"text": "Rivers bend.", "mode": "conversation", "voice": "cedar"}, LIMITS)
    assert refused.value.field == "voice"


@pytest.mark.parametrize(
    "extra",
    [
        {"format": "wav"},
        {"format": " WAV "},
        {"show": None},
        {"show": ""},
        {"sas_expiry_minutes": LIMITS.default_sas_expiry_minutes},
        {"format": None, "sas_expiry_minutes": None},
    ],
)
def test_a_script_request_takes_the_audio_fields_at_their_defaults(extra: dict[str, object]) -> None:
    request = parse_script_request({"text": "Hi.", **extra}, LIMITS)
    assert request.fingerprint() == parse_script_request({"text": "Hi."}, LIMITS).fingerprint()


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"format": "mp3"}, "format"),
        ({"show": "daily-digest"}, "show"),
        ({"sas_expiry_minutes": LIMITS.default_sas_expiry_minutes - 1}, "sas_expiry_minutes"),
        ({"sas_expiry_minutes": LIMITS.default_sas_expiry_minutes + 1}, "sas_expiry_minutes"),
    ],
)
def test_a_script_request_refuses_the_audio_fields_it_would_drop(
    extra: dict[str, object], field: str
) -> None:
    with pytest.raises(RequestValidationError) as refused:
        parse_script_request({"text": "Hi.", **extra}, LIMITS)
    assert refused.value.field == field
    assert refused.value.http_status == 400
    assert "POST /api/narrations" in refused.value.message
    # The same fields are a conversation narration's own.
    parse_request({"text": "Hi.", "mode": "conversation", **extra}, LIMITS)
