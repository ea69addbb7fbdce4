"""The audio fast path on real connections: odd frames from the independent scripted server,
and the emulator's audio byte for byte, with and without permessage-deflate.

The narrator reads raw messages (``recv_bytes``) and parses audio deltas itself
(:mod:`podcast.engine.receive`); whatever the framing, it must give exactly the audio
the server sent and the same clean errors as the SDK's typed path.
"""

from __future__ import annotations

import base64
import json

import pytest

from emulator import RealtimeEmulator
from podcast.engine import audio
from podcast.engine.realtime import Narrator
from podcast.errors import NarrationError
from podcast.settings import RealtimeSettings, realtime_base_url
from testkit.scripted_server import (
    Frame,
    ScriptedServer,
    audio_event,
    response_done,
    tone,
    transcript_event,
)

TEXT = "The quick brown fox jumps over the lazy dog. Then it runs into the quiet forest and sleeps."


def narrator_for(url: str, *, api_key: str = "scripted-key", compression: bool = False) -> Narrator:
    settings = RealtimeSettings(
        endpoint=realtime_base_url(url), api_key=api_key, response_timeout_seconds=10.0, max_retries=0
    )
    return Narrator(settings, compression=compression)


def odd_frames(server: ScriptedServer) -> list[object]:
    """Audio in every framing a server may use, among events the narrator does not know."""
    fragmented = json.dumps(audio_event(server, tone(0.4, 300)))
    escaped = json.dumps(audio_event(server, tone(0.3, 350))).replace("/", "\\/")
    return [
        {"type": "response.created", "event_id": server.event_id(), "response": {"id": "resp_1"}},
        {"type": "some.future_event", "event_id": server.event_id(), "delta": "not audio at all"},
        audio_event(server, tone(0.2, 200)),
        Frame([fragmented[:7], fragmented[7:5000], fragmented[5000:]]),  # one message, three frames
        Frame(json.dumps(audio_event(server, tone(0.1, 250))).encode()),  # a binary frame
        Frame(escaped),  # "\/" escapes inside the base64
        Frame(json.dumps(audio_event(server, tone(0.1, 400))).encode("utf-16")),  # JSON in UTF-16
        transcript_event(server, "Hello."),
        {"type": "rate_limits.updated", "event_id": server.event_id(), "rate_limits": []},
        response_done(server),
    ]


ODD_AUDIO = tone(0.2, 200) + tone(0.4, 300) + tone(0.1, 250) + tone(0.3, 350) + tone(0.1, 400)


@pytest.mark.parametrize("compression", [False, True], ids=["uncompressed", "deflate"])
async def test_audio_in_any_framing_arrives_byte_for_byte(compression: bool) -> None:
    async with ScriptedServer(odd_frames) as server, narrator_for(server.url, compression=compression) as n:
        narration = await n.narrate("Hello.")

    assert narration.audio == ODD_AUDIO
    assert narration.transcript == "Hello."
    assert server.extensions_used == [["permessage-deflate"] if compression else []]


async def test_a_server_that_refuses_compression_is_fine() -> None:
    async with (
        ScriptedServer(odd_frames, compression=None) as server,
        narrator_for(server.url, compression=True) as narrator,
    ):
        narration = await narrator.narrate("Hello.")

    assert narration.audio == ODD_AUDIO
    assert server.extensions_used == [[]]


@pytest.mark.parametrize(
    "bad_delta",
    ["AAA", "AA=A", "AA AA", "AA-_", "AAÀA", "=AAA"],
    ids=["padding", "inner-padding", "space", "urlsafe", "non-ascii", "leading-padding"],
)
@pytest.mark.parametrize("fragmented", [False, True], ids=["whole", "fragmented"])
async def test_invalid_base64_audio_is_a_clean_narration_error(bad_delta: str, fragmented: bool) -> None:
    def script(server: ScriptedServer) -> list[object]:
        event = audio_event(server, tone(0.1))
        event["delta"] = base64.b64encode(tone(0.2)).decode() + bad_delta
        message = json.dumps(event)
        return [Frame([message[:20], message[20:]]) if fragmented else event, response_done(server)]

    async with ScriptedServer(script) as server, narrator_for(server.url) as narrator:
        with pytest.raises(NarrationError, match="not valid base64") as caught:
            await narrator.narrate("Hello.")

    assert type(caught.value) is NarrationError
    assert not caught.value.transient


@pytest.mark.parametrize(
    "message",
    ["{not json", '{"type": "response.output_audio.delta", "delta": "AAAA"', '{"a": 1} {"b": 2}'],
    ids=["garbage", "cut-short", "two-documents"],
)
async def test_a_message_that_is_not_json_is_a_clean_narration_error(message: str) -> None:
    def script(server: ScriptedServer) -> list[object]:
        return [audio_event(server, tone(0.1)), Frame(message), response_done(server)]

    async with ScriptedServer(script) as server, narrator_for(server.url) as narrator:
        with pytest.raises(NarrationError, match="not valid JSON"):
            await narrator.narrate("Hello.")


async def test_audio_deltas_with_odd_fields_are_skipped_as_the_typed_path_skips_them() -> None:
    def script(server: ScriptedServer) -> list[object]:
        return [
            {"type": "response.created", "response": {"id": "resp_1"}},
            {"type": "response.output_audio.delta", "response_id": "resp_1", "delta": 12345},
            {"type": "response.output_audio.delta", "response_id": "resp_1", "delta": ["AAAA"]},
            {"type": "response.output_audio.delta", "response_id": "resp_1", "delta": None},
            {"type": "response.output_audio.delta", "response_id": "resp_1"},
            audio_event(server, tone(0.3), response_id="resp_elsewhere"),
            {"type": "response.output_audio.delta", "delta": base64.b64encode(tone(0.1)).decode()},
            audio_event(server, tone(0.2)),
            response_done(server),
        ]

    async with ScriptedServer(script) as server, narrator_for(server.url) as narrator:
        narration = await narrator.narrate("Hello.")

    assert narration.audio == tone(0.1) + tone(0.2)


@pytest.mark.parametrize("compression", [False, True], ids=["uncompressed", "deflate"])
async def test_the_emulators_audio_arrives_byte_for_byte(compression: bool) -> None:
    emulator = RealtimeEmulator(api_key="emulator-key", engine="synthetic", record_audio=True)
    async with emulator, narrator_for(emulator.url, api_key="emulator-key", compression=compression) as n:
        narration = await n.narrate(TEXT, voice="cedar")

    [session] = emulator.sessions
    sent = b"".join(
        base64.b64decode(event["delta"])
        for event in session.server_events
        if event["type"] == "response.output_audio.delta"
    )
    assert narration.audio == sent
    assert narration.duration_seconds == pytest.approx(audio.duration_seconds(len(sent)))
    assert narration.transcript == TEXT
