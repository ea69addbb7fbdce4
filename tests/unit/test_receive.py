"""The audio fast path (podcast.engine.receive) against the SDK's own parsing of the same messages.

Every message goes through a :class:`ResponseState` twice: once as the narrator receives it
(``parse_message`` with the SDK's ``parse_event``), once the SDK's way (``parse_event``
alone, what ``connection.recv()`` does). What each yields, or raises, must be the same.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
from typing import Any

import pytest
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from openai.types.realtime import RealtimeServerEvent, ResponseAudioTranscriptDeltaEvent
from pydantic import BaseModel

from podcast.engine.receive import (
    DecodedAudioDelta,
    RawAudioDelta,
    RawTranscriptDelta,
    decode_audio,
    parse_message,
)
from podcast.engine.responses import AudioDelta, ResponseState, StreamEvent
from podcast.errors import NarrationError


def sdk_parse(data: bytes | str) -> RealtimeServerEvent:
    """The SDK's ``connection.parse_event`` (it reads nothing of the connection)."""
    return AsyncRealtimeConnection.parse_event(None, data)  # type: ignore[arg-type]


def outcome(messages: list[bytes], *, fast: bool) -> list[Any]:
    state = ResponseState(voice="marin")
    seen: list[Any] = []
    for message in messages:
        try:
            event = parse_message(message, sdk_parse) if fast else sdk_parse(message)
            items: list[StreamEvent] = state.handle(event)
        except Exception as error:
            seen.append((type(error), str(error)))
            continue
        seen.append(items)
    seen.append((state.audio_bytes, state.response_id, state.transcript_parts))
    return seen


PCM = bytes(range(256)) * 8
B64 = base64.b64encode(PCM).decode()


def delta(**fields: object) -> bytes:
    return json.dumps({"type": "response.output_audio.delta", **fields}).encode()


TRANSCRIPT_IDS = {
    "event_id": "e",
    "response_id": "resp_1",
    "item_id": "i",
    "output_index": 0,
    "content_index": 0,
}
ODD_MESSAGES: list[bytes] = [
    delta(response_id="resp_1", item_id="item_1", delta=B64),
    delta(delta=B64),  # no response id
    delta(response_id=None, delta=B64),
    delta(response_id="resp_1"),  # no delta
    delta(response_id="resp_1", delta=""),
    delta(response_id="resp_1", delta=None),
    delta(response_id="resp_1", delta=12345),
    delta(response_id="resp_1", delta=["AAAA"]),
    delta(response_id="resp_1", delta={"b64": B64}),
    delta(response_id=7, delta=B64),
    delta(response_id="resp_1", delta="AAA"),  # bad padding
    delta(response_id="resp_1", delta="AA=A"),  # padding inside
    delta(response_id="resp_1", delta="AAAA=="),  # excess padding
    delta(response_id="resp_1", delta="AA AA"),  # a space
    delta(response_id="resp_1", delta="AA\nAA"),  # a newline
    delta(response_id="resp_1", delta="AA-_"),  # the URL-safe alphabet
    delta(response_id="resp_1", delta="AAÀA"),  # not ASCII
    # "\/" is a legal JSON escape of "/", which base64 uses.
    b'{"type": "response.output_audio.delta", "response_id": "resp_1", "delta": "'
    + B64.replace("/", "\\/").encode()
    + b'"}',
    b'{"delta": "AAAA", "response_id": "resp_1", "type": "response.output_audio.delta"}',  # type last
    # Duplicate keys: the last one counts, in both parsers.
    b'{"type": "response.output_audio.delta", "delta": "!!!!", "delta": "AAAA"}',
    b'{"type": "response.created", "type": "response.output_audio.delta", "delta": "AAAA"}',
    json.dumps({"type": "response.created", "response": {"id": "resp_1"}}).encode(),
    delta(response_id="resp_other", delta=B64),  # another response, after ours is known
    json.dumps(
        {"type": "response.output_audio_transcript.delta", "response_id": "resp_1", "delta": "Hi"}
    ).encode(),
    # Transcript deltas: complete and exactly typed (the fast path), or not (the SDK's class).
    *[
        json.dumps({"type": "response.output_audio_transcript.delta", **TRANSCRIPT_IDS, **fields}).encode()
        for fields in (
            {"content_index": 1, "delta": " there"},
            {"delta": "", "extra": [1]},
            {"response_id": "resp_other", "delta": "not ours"},
            {"content_index": "2", "delta": "lax"},  # validated: "2" is 2
            {"content_index": True, "delta": "bool"},
            {"item_id": 5, "content_index": 3, "delta": "int item"},  # invalid: built unvalidated
            {"content_index": 1.0, "delta": "float index"},
            {"delta": 7},
            {"event_id": None, "delta": "no event id"},
            {"response_id": None, "delta": "null response"},
        )
    ],
    json.dumps({"type": "some.future_event", "delta": B64}).encode(),
    json.dumps({"type": "Response.Output_Audio.Delta", "delta": B64}).encode(),
    json.dumps({"type": None, "delta": B64}).encode(),
    json.dumps({"delta": B64}).encode(),
    json.dumps([{"type": "response.output_audio.delta", "delta": B64}]).encode(),
    b'"response.output_audio.delta"',
    b"null",
    b"",
    b"{not json",
    b'{"type": "response.output_audio.delta", "delta": "AAAA"',  # cut short
    b'{"type": "response.output_audio.delta", "delta": NaN}',  # json accepts NaN, orjson does not
    b'{"type": "response.output_audio.delta", "delta": "AAAA", "n": 123456789012345678901234567890}',
    b'\xef\xbb\xbf{"type": "response.output_audio.delta", "delta": "AAAA"}',  # a UTF-8 byte-order mark
    '{"type": "response.output_audio.delta", "delta": "AAAA"}'.encode("utf-16"),
    b'{"type": "response.output_audio.delta", "delta": "AAAA", "x": "\xff"}',  # not UTF-8
    b'{"type": "response.output_audio.delta", "delta": "AAAA", "x": "\\ud800"}',  # a lone surrogate
    # Messages built to mislead a search for the delta in the raw bytes:
    b'{"type":"response.output_audio.delta","response_id":"resp_1","delta":"AAAA"}',  # compact
    b'{"type" : "response.output_audio.delta" ,\n "delta" :\t"AAAA" , "response_id": "resp_1"}',
    b'{"type": "response.output_audio.delta", "x": {"delta": "AAAA"}}',  # nested, none at the top
    b'{"type": "response.output_audio.delta", "x": {"delta": "AAAA"}, "delta": ""}',
    b'{"type": "response.output_audio.delta", "x": {"delta": "AAAA"}, "delt\\u0061": "QUJD"}',
    b'{"type": "response.output_audio.delta", "delt\\u0061": "QUJD", "x": {"delta": "AAAA"}}',
    b'{"type": "response.output_audio.delta", "name": "delta", "delta": "AAAA"}',  # a value "delta"
    b'{"type": "response.output_audio.delta", "delta": "AAAA", "name": "\\"delta\\": \\"QUJD"}',
    b'{"type": "response.output_audio.delta", "x": ["delta", "AAAA"], "delta": "QUJD"}',
    b'{"type": "response.output_audio.delta", "delta": "AA\\/A"}',  # an escape inside
    b'{"type": "response.output_audio.delta", "delta": "AAAA\\u0041AAA"}',
    b'{"type": "response.output_audio.delta", "delta": "AA\nAA"}',  # a raw newline: not JSON
    b'{"type": "response.output_audio.delta", "delta": "AAAA", }',  # a trailing comma
    b'{"type": "response.output_audio.delta", "delta": "AAAA"} trailing',
    b'{"type": "response.output_audio.delta", "delta": "AAAA==", "response_id": "resp_1"}',
    b'{"type": "response.output_audio.delta", "delta": "AAAA"',
    b'{"type": "response.output_audio.delta", "delta"',
    b'{"type": "response.output_audio.delta", "delta":',
    b'{"type": "response.output_audio.delta", "delta": "',
    b'{"type": "response.output_audio.delta", "delta": 1, "x": "AAAA"}',
    b'{"type": "response.output_audio.done", "delta": "AAAA"}',
]


@pytest.mark.parametrize("message", ODD_MESSAGES, ids=range(len(ODD_MESSAGES)))
def test_each_message_gives_what_the_sdk_path_gives(message: bytes) -> None:
    assert outcome([message], fast=True) == outcome([message], fast=False)


def test_a_whole_sequence_gives_what_the_sdk_path_gives() -> None:
    fast, typed = outcome(ODD_MESSAGES, fast=True), outcome(ODD_MESSAGES, fast=False)
    assert fast == typed
    audio = [item for step in fast if isinstance(step, list) for item in step if isinstance(item, AudioDelta)]
    assert len(audio) >= 5, "the sequence exercises real audio, not only rejections"
    assert audio[0].pcm == PCM


def test_only_audio_and_well_typed_transcript_deltas_take_the_fast_path() -> None:
    # Plain audio deltas are decoded from the bytes as they are, spaced or compact...
    assert parse_message(delta(response_id="r", delta="AAAA"), sdk_parse) == DecodedAudioDelta("r", b"\0\0\0")
    compact = b'{"type":"response.output_audio.delta","delta":"QUJD"}'
    assert parse_message(compact, sdk_parse) == DecodedAudioDelta(None, b"ABC")
    # ...anything less plain is parsed whole, and the base64 decoded later
    escaped = b'{"type": "response.output_audio.delta", "response_id": "r", "delta": "AA\\/A"}'
    assert parse_message(escaped, sdk_parse) == RawAudioDelta("r", "AA/A")
    assert parse_message(delta(response_id="r", delta="AAA"), sdk_parse) == RawAudioDelta("r", "AAA")
    complete = {"event_id": "e", "response_id": "r", "item_id": "i", "output_index": 0, "content_index": 2}
    kind = {"type": "response.output_audio_transcript.delta"}
    fast = parse_message(json.dumps(kind | complete | {"delta": "Hi"}).encode(), sdk_parse)
    assert fast == RawTranscriptDelta("r", "i", 2, "Hi")
    for partial in ({"delta": "Hi"}, complete | {"delta": "Hi", "output_index": "0"}):
        transcript = parse_message(json.dumps(kind | partial).encode(), sdk_parse)
        assert isinstance(transcript, ResponseAudioTranscriptDeltaEvent)
    with pytest.raises(ValueError, match="Expecting property name"):  # json.loads's own error
        parse_message(b"{not json", sdk_parse)


def test_decode_audio_is_strict_base64() -> None:
    assert decode_audio(B64) == PCM
    assert decode_audio("") == b""
    assert decode_audio(None) == b""
    assert decode_audio(3) == b""
    # What the library accepts in strict mode is accepted the same, what it refuses is refused
    # (excess trailing padding: accepted up to Python 3.12, refused from 3.13).
    for edge in ("AA==", "AAAA=", "AAAA==", "AA==="):
        try:
            expected: bytes | None = base64.b64decode(edge, validate=True)
        except ValueError:
            expected = None
        if expected is None:
            with pytest.raises(NarrationError, match="not valid base64"):
                decode_audio(edge)
        else:
            assert decode_audio(edge) == expected
    for bad in ("AAA", "AA=A", "A===", "AA AA", "AA-_", "AAÀA", "=AAA"):
        with pytest.raises(NarrationError, match="not valid base64"):
            decode_audio(bad)
        with pytest.raises(ValueError, match=r"\w"):  # the library's own verdict on the same input
            base64.b64decode(bad, validate=True)


def test_decode_audio_decides_as_strict_binascii_on_any_input() -> None:
    """pybase64 decodes and strict binascii has the last word: random strings over the base64
    alphabet, padding, spaces and an outsider, every one decided as binascii decides it."""
    rng = random.Random(12)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/" + "====" + " \n-_\xc0"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 14)))
        try:
            expected: bytes | None = binascii.a2b_base64(text, strict_mode=True)
        except (binascii.Error, ValueError):
            expected = None
        if expected is None:
            with pytest.raises(NarrationError):
                decode_audio(text)
        else:
            assert decode_audio(text) == expected, text


def event(kind: str, **fields: object) -> bytes:
    return json.dumps({"type": kind, "event_id": "event_1", **fields}).encode()


USAGE = {
    "total_tokens": 60,
    "input_tokens": 20,
    "output_tokens": 40,
    "input_token_details": {"text_tokens": 20, "audio_tokens": 0, "cached_tokens": 0},
    "output_token_details": {"text_tokens": 10, "audio_tokens": 30},
}
IDS = {"response_id": "resp_1", "item_id": "item_1", "output_index": 0, "content_index": 0}
TYPED_MESSAGES: list[bytes] = [
    event("response.output_audio_transcript.delta", **IDS, delta=None),  # invalid: built unvalidated
    event("response.output_audio_transcript.delta", delta="Hi"),  # fields left out
    event("response.output_audio_transcript.delta", **{**IDS, "output_index": "0"}, delta="x"),  # lax int
    event("response.output_audio_transcript.done", **IDS, transcript="Hello there."),
    event("response.output_audio.done", **IDS),
    event("response.created", response={"id": "resp_1", "object": "realtime.response", "status": "queued"}),
    event("response.created", response=None),
    event("response.done", response={"id": "resp_1", "status": "completed", "usage": USAGE}),
    event("response.done", response={"id": "resp_1", "status": "weird", "usage": {"input_tokens": "x"}}),
    event(
        "response.done",
        response={
            "id": "resp_1",
            "status": "failed",
            "status_details": {
                "type": "failed",
                "error": {"type": "server_error", "code": "rate_limit_exceeded"},
            },
        },
    ),
    event("error", error={"type": "invalid_request_error", "code": "bad", "message": "nope", "param": None}),
    event("error", error=None),
    event("error"),
    event("session.created", session={"type": "realtime", "id": "sess_1", "model": "gpt-realtime-mini"}),
    event("session.created", session=None),
    event("session.updated", session={"type": "realtime", "output_modalities": ["audio"]}),
    event("conversation.item.added", item={"id": "item_1", "type": "message", "role": "assistant"}),
    event("response.content_part.added", **IDS, part={"type": "audio", "transcript": ""}),
    event("rate_limits.updated", rate_limits=[{"name": "tokens", "limit": 1, "remaining": 0}]),
    event("rate_limits.updated", rate_limits="lots"),
    event("output_audio_buffer.started", response_id="resp_1"),
    event("some.future_event", payload={"x": 1}),
    json.dumps({"type": 5}).encode(),
]


@pytest.mark.parametrize("message", TYPED_MESSAGES, ids=range(len(TYPED_MESSAGES)))
def test_other_events_are_exactly_the_sdks_typed_events(message: bytes) -> None:
    ours, sdks = parse_message(message, sdk_parse), sdk_parse(message)
    assert type(ours) is type(sdks)
    assert ours == sdks
    if isinstance(sdks, BaseModel):
        assert isinstance(ours, BaseModel)
        assert ours.model_fields_set == sdks.model_fields_set
        assert ours.model_dump(warnings=False) == sdks.model_dump(warnings=False)
