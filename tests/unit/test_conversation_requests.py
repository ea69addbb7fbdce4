"""Conversation requests: the mode's length limit, its styles, and what decides a script."""

from __future__ import annotations

import pytest

from podcast.errors import RequestTooLargeError, RequestValidationError
from podcast.models import (
    DEFAULT_SPEAKERS,
    MAX_CONVERSATION_MINUTES,
    MAX_TARGET_MINUTES,
    RequestLimits,
    ScriptRequest,
    parse_request,
    parse_script_request,
    parse_speakers,
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
    assert parse_speakers([{"name": "  Ana  ", "voice": " CORAL ", "description": "  Calm.  "}]) == (
        Speaker(name="Ana", voice="coral", description="Calm."),
    )


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
