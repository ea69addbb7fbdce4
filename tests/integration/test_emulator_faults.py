"""Every fault the emulator injects, with ``times`` and ``match``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from emulator import Fault, FaultKind, RealtimeEmulator, paraphrase, parse_fault
from testkit.realtime_client import (
    MODEL,
    NARRATION_SESSION,
    PARAGRAPH,
    Event,
    audio_of,
    client,
    narrate,
    of_type,
    only,
    receive,
    receive_until,
    transcript_of,
    user_message,
    validate_server_event,
)


@pytest.fixture
async def emulator() -> AsyncIterator[RealtimeEmulator]:
    async with RealtimeEmulator(engine="synthetic") as running:
        yield running


async def _connect_status(emulator: RealtimeEmulator) -> InvalidStatus | None:
    try:
        async with client(emulator).realtime.connect(model=MODEL) as connection:
            await receive(connection)
    except InvalidStatus as rejected:
        return rejected
    return None


@pytest.mark.parametrize(
    "kind",
    [
        FaultKind.HANDSHAKE_401,
        FaultKind.HANDSHAKE_403,
        FaultKind.HANDSHAKE_404,
        FaultKind.HANDSHAKE_429,
        FaultKind.HANDSHAKE_500,
        FaultKind.HANDSHAKE_503,
    ],
)
async def test_handshake_faults_reject_once_with_their_status(
    emulator: RealtimeEmulator, kind: FaultKind
) -> None:
    emulator.inject(Fault(kind))
    rejected = await _connect_status(emulator)
    assert rejected is not None
    assert rejected.response.status_code == kind.http_status
    assert "error" in json.loads(rejected.response.body or b"")
    assert await _connect_status(emulator) is None
    assert emulator.handshakes == 2


async def test_handshake_429_sends_retry_after(emulator: RealtimeEmulator) -> None:
    emulator.inject(Fault(FaultKind.HANDSHAKE_429, retry_after=2))
    rejected = await _connect_status(emulator)
    assert rejected is not None
    assert rejected.response.headers["retry-after"] == "2"
    assert rejected.response.headers["retry-after-ms"] == "2000"


async def test_times_counts_firings(emulator: RealtimeEmulator) -> None:
    emulator.inject(Fault(FaultKind.HANDSHAKE_503, times=2))
    assert await _connect_status(emulator) is not None
    assert await _connect_status(emulator) is not None
    assert await _connect_status(emulator) is None
    assert emulator.pending_faults == []


async def test_match_limits_a_fault_to_matching_input(emulator: RealtimeEmulator) -> None:
    emulator.inject(Fault(FaultKind.FAILED, match="chapter two"))
    first = await narrate(emulator, "This is chapter one.")
    assert first[-1]["response"]["status"] == "completed"
    second = await narrate(emulator, "This is chapter two.")
    assert second[-1]["response"]["status"] == "failed"
    third = await narrate(emulator, "This is chapter two.")
    assert third[-1]["response"]["status"] == "completed"


async def test_clear_faults_and_reset(emulator: RealtimeEmulator) -> None:
    emulator.inject(Fault(FaultKind.HANG, times=None))
    emulator.clear_faults()
    assert (await narrate(emulator, "Hi."))[-1]["response"]["status"] == "completed"
    emulator.inject(Fault(FaultKind.HANDSHAKE_401))
    emulator.reset()
    assert emulator.sessions == []
    assert emulator.handshakes == 0
    assert await _connect_status(emulator) is None


def _validate_all(events: list[Event]) -> None:
    for event in events:
        validate_server_event(event)


async def test_error_event_mid_response_keeps_the_socket_open(emulator: RealtimeEmulator) -> None:
    emulator.inject(Fault(FaultKind.ERROR_EVENT))
    async with client(emulator).realtime.connect(model=MODEL) as connection:
        await receive(connection)
        await connection.conversation.item.create(item=user_message(PARAGRAPH))  # type: ignore[arg-type]
        await connection.response.create()
        events = await receive_until(connection, "error", "response.done")
        _validate_all(events)
        error = events[-1]
        assert error["type"] == "error"
        assert error["error"]["type"] == "server_error"
        assert audio_of(events), "the error should come after some audio"
        with pytest.raises(TimeoutError):
            await receive(connection, timeout=0.3)
        await connection.response.create()
        after = await receive_until(connection, "response.done")
    assert after[-1]["response"]["status"] == "completed"
    assert emulator.sessions[0].responses[0].status == "error"


async def test_error_event_code_and_message_are_configurable(emulator: RealtimeEmulator) -> None:
    emulator.inject(
        Fault(FaultKind.ERROR_EVENT, code="rate_limit_exceeded", error_type="tokens", message="Slow down")
    )
    events = await narrate(emulator, PARAGRAPH)
    assert events[-1]["error"] | {"event_id": None} == {
        "type": "tokens",
        "code": "rate_limit_exceeded",
        "message": "Slow down",
        "param": None,
        "event_id": None,
    }


async def _narrate_with_the_typed_loop(emulator: RealtimeEmulator, text: str, events: list[Event]) -> None:
    """Narrate as production does (``async for`` over the SDK connection), appending events."""
    async with client(emulator).realtime.connect(model=MODEL) as connection:
        await connection.conversation.item.create(item=user_message(text))  # type: ignore[arg-type]
        await connection.response.create()
        async with asyncio.timeout(5):
            async for event in connection:
                events.append(event.to_dict())
                if event.type == "response.done":
                    return


@pytest.mark.parametrize("close_code", [1011, 1006])
async def test_close_mid_stream_drops_the_connection_without_response_done(
    emulator: RealtimeEmulator, close_code: int
) -> None:
    emulator.inject(Fault(FaultKind.CLOSE_MID_STREAM, close_code=close_code))
    events: list[Event] = []
    with pytest.raises(ConnectionClosedError):
        await _narrate_with_the_typed_loop(emulator, PARAGRAPH, events)
    assert any(event["type"] == "response.output_audio.delta" for event in events)
    assert not any(event["type"] == "response.done" for event in events)
    await asyncio.sleep(0.05)
    assert emulator.sessions[0].responses[0].status == "closed"


async def test_hang_sends_nothing_after_response_create(emulator: RealtimeEmulator) -> None:
    emulator.inject(Fault(FaultKind.HANG))
    async with client(emulator).realtime.connect(model=MODEL) as connection:
        await receive(connection)
        await connection.conversation.item.create(item=user_message("Hello."))  # type: ignore[arg-type]
        await receive_until(connection, "conversation.item.done")
        await connection.response.create()
        with pytest.raises(TimeoutError):
            await receive(connection, timeout=0.5)
    assert emulator.sessions[0].responses[0].status == "hung"


async def test_no_audio_completes_without_audio(emulator: RealtimeEmulator) -> None:
    emulator.inject(Fault(FaultKind.NO_AUDIO))
    events = await narrate(emulator, PARAGRAPH)
    _validate_all(events)
    finished = events[-1]["response"]
    assert finished["status"] == "completed"
    assert not of_type(events, "response.output_audio.delta")
    assert only(events, "response.output_audio_transcript.done")["transcript"] == ""
    assert finished["usage"]["output_token_details"] == {"text_tokens": 0, "audio_tokens": 0}


async def test_content_filter_stops_with_incomplete(emulator: RealtimeEmulator) -> None:
    emulator.inject(Fault(FaultKind.CONTENT_FILTER))
    events = await narrate(emulator, PARAGRAPH)
    _validate_all(events)
    finished = events[-1]["response"]
    assert finished["status"] == "incomplete"
    assert finished["status_details"]["reason"] == "content_filter"
    transcript = only(events, "response.output_audio_transcript.done")["transcript"]
    assert transcript == transcript_of(events)
    assert transcript
    assert PARAGRAPH.startswith(transcript)
    assert transcript != PARAGRAPH
    assert audio_of(events)


async def test_failed_reports_the_error_in_status_details(emulator: RealtimeEmulator) -> None:
    emulator.inject(Fault(FaultKind.FAILED, code="internal_error"))
    events = await narrate(emulator, PARAGRAPH)
    _validate_all(events)
    finished = events[-1]["response"]
    assert finished["status"] == "failed"
    assert finished["status_details"]["error"]["type"] == "server_error"
    assert finished["status_details"]["error"]["code"] == "internal_error"
    assert not of_type(events, "response.output_audio.delta")


async def test_paraphrase_speaks_altered_text_deterministically(emulator: RealtimeEmulator) -> None:
    emulator.inject(Fault(FaultKind.PARAPHRASE, times=2))
    first = await narrate(emulator, PARAGRAPH)
    second = await narrate(emulator, PARAGRAPH)
    _validate_all(first)
    spoken = only(first, "response.output_audio_transcript.done")["transcript"]
    assert spoken == paraphrase(PARAGRAPH) == transcript_of(first)
    assert spoken != PARAGRAPH
    # The same speech; each session has its own level (the emulator's level variation).
    a, b = (np.frombuffer(audio_of(events), "<i2").astype(float) for events in (first, second))
    assert len(a) == len(b)
    assert np.max(np.abs(a - b * (np.dot(a, b) / np.dot(b, b)))) <= 2.0
    plain = await narrate(emulator, PARAGRAPH)
    assert audio_of(plain) != audio_of(first)


async def test_max_output_tokens_fault_cuts_the_response(emulator: RealtimeEmulator) -> None:
    full = await narrate(emulator, PARAGRAPH)
    emulator.inject(Fault(FaultKind.MAX_OUTPUT_TOKENS))
    capped = await narrate(emulator, PARAGRAPH)
    _validate_all(capped)
    finished = capped[-1]["response"]
    assert finished["status"] == "incomplete"
    assert finished["status_details"]["reason"] == "max_output_tokens"
    full_tokens = full[-1]["response"]["usage"]["output_tokens"]
    assert finished["usage"]["output_tokens"] <= full_tokens // 2
    assert len(audio_of(capped)) < len(audio_of(full))


async def test_faults_given_at_construction_and_from_strings() -> None:
    async with RealtimeEmulator(engine="synthetic", faults=[parse_fault("handshake_429:2:1.5")]) as running:
        first = await _connect_status(running)
        assert first is not None
        assert first.response.headers["retry-after-ms"] == "1500"
        assert await _connect_status(running) is not None
        assert await _connect_status(running) is None
    assert parse_fault("hang:always").times is None
    assert parse_fault("no_audio").times == 1
    with pytest.raises(ValueError, match="handshake_401"):
        parse_fault("explode")


async def test_client_closing_during_a_hung_response_is_recorded(emulator: RealtimeEmulator) -> None:
    emulator.inject(Fault(FaultKind.HANG))
    async with client(emulator).realtime.connect(model=MODEL) as connection:
        await connection.session.update(session=NARRATION_SESSION)  # type: ignore[arg-type]
        await connection.conversation.item.create(item=user_message("x"))  # type: ignore[arg-type]
        await connection.response.create()
        await receive_until(connection, "conversation.item.done")
    for _ in range(50):
        if emulator.sessions[0].closed_at is not None:
            break
        await asyncio.sleep(0.01)
    assert emulator.sessions[0].close_code == 1000
    with pytest.raises(ConnectionClosed):
        await connection.recv_bytes()


# --- Throttling inside a session ----------------------------------------------------------------


async def test_rate_limited_fails_the_nth_response_with_the_services_wording(
    emulator: RealtimeEmulator,
) -> None:
    emulator.inject(Fault(FaultKind.RATE_LIMITED, nth=2, retry_after=86.4))
    first = await narrate(emulator, PARAGRAPH)
    second = await narrate(emulator, PARAGRAPH)
    third = await narrate(emulator, PARAGRAPH)
    _validate_all(second)
    assert first[-1]["response"]["status"] == "completed"
    assert third[-1]["response"]["status"] == "completed", "times=1: used up on the second response"
    finished = second[-1]["response"]
    assert finished["status"] == "failed"
    error = finished["status_details"]["error"]
    assert (error["type"], error["code"]) == ("tokens", "rate_limit_exceeded")
    assert "Please try again in 1m26.4s." in error["message"]
    assert not of_type(second, "response.output_audio.delta")


async def test_rate_limit_error_event_comes_part_way_with_a_short_wait(emulator: RealtimeEmulator) -> None:
    emulator.inject(Fault(FaultKind.RATE_LIMIT_ERROR_EVENT))
    events = await narrate(emulator, PARAGRAPH)
    _validate_all(events)
    assert audio_of(events), "some audio first"
    error = events[-1]
    assert error["type"] == "error"
    assert error["error"]["code"] == "rate_limit_exceeded"
    assert "Please try again in 850ms." in error["error"]["message"]
    assert emulator.sessions[0].responses[0].status == "error"


async def test_insufficient_quota_fails_the_response(emulator: RealtimeEmulator) -> None:
    emulator.inject(Fault(FaultKind.INSUFFICIENT_QUOTA, match="chapter"))
    passed = await narrate(emulator, PARAGRAPH)
    failed = await narrate(emulator, "In chapter one nothing happens.")
    _validate_all(failed)
    assert passed[-1]["response"]["status"] == "completed"
    error = failed[-1]["response"]["status_details"]["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    assert "quota" in error["message"]


def test_throttling_faults_from_strings() -> None:
    fault = parse_fault("rate_limited:always:20:3")
    assert (fault.kind, fault.times, fault.retry_after, fault.nth) == (FaultKind.RATE_LIMITED, None, 20.0, 3)
    assert parse_fault("insufficient_quota").nth == 1
    with pytest.raises(ValueError, match="nth"):
        Fault(FaultKind.RATE_LIMITED, nth=0)
