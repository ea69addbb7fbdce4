"""The emulator speaks the GA Realtime protocol: handshake, events, ids, tokens and rules."""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from emulator import RealtimeEmulator
from podcast.voices import REALTIME_VOICES
from testkit.realtime_client import (
    KEY,
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

BYTES_PER_MS = 48


@pytest.fixture
async def emulator() -> AsyncIterator[RealtimeEmulator]:
    async with RealtimeEmulator(engine="synthetic") as running:
        yield running


async def test_full_narration_validates_and_follows_the_documented_order(emulator: RealtimeEmulator) -> None:
    events = await narrate(emulator, PARAGRAPH)

    for event in events:
        validate_server_event(event)
    types = [event["type"] for event in events]
    assert types[:9] == [
        "session.created",
        "session.updated",
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
    ]
    assert types[-6:] == [
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    middle = types[9:-6]
    assert set(middle) == {"response.output_audio_transcript.delta", "response.output_audio.delta"}
    assert middle[0] == "response.output_audio_transcript.delta"
    # Interleaved, not all transcript first: a transcript delta follows some audio delta.
    first_audio = middle.index("response.output_audio.delta")
    assert "response.output_audio_transcript.delta" in middle[first_audio:]


async def test_ids_tie_the_events_together(emulator: RealtimeEmulator) -> None:
    events = await narrate(emulator, PARAGRAPH)

    user_item = of_type(events, "conversation.item.added")[0]["item"]
    assert of_type(events, "conversation.item.done")[0]["item"]["id"] == user_item["id"]
    response_id = only(events, "response.created")["response"]["id"]
    assistant_id = only(events, "response.output_item.added")["item"]["id"]
    assert assistant_id != user_item["id"]
    added, done = of_type(events, "conversation.item.added")[1], of_type(events, "conversation.item.done")[1]
    assert added["item"]["id"] == done["item"]["id"] == assistant_id
    assert added["previous_item_id"] == done["previous_item_id"] == user_item["id"]
    located = [event for event in events if "content_index" in event]
    assert len(located) > 5
    for event in located:
        assert (event["response_id"], event["item_id"], event["output_index"], event["content_index"]) == (
            response_id,
            assistant_id,
            0,
            0,
        )
    for event in of_type(events, "response.output_item.added") + of_type(events, "response.output_item.done"):
        assert (event["response_id"], event["output_index"], event["item"]["id"]) == (
            response_id,
            0,
            assistant_id,
        )
    finished = only(events, "response.done")["response"]
    assert finished["id"] == response_id
    assert [item["id"] for item in finished["output"]] == [assistant_id]
    assert len({event["event_id"] for event in events}) == len(events)


async def test_audio_deltas_transcript_and_usage_agree(emulator: RealtimeEmulator) -> None:
    events = await narrate(emulator, PARAGRAPH)

    deltas = [len(base64.b64decode(e["delta"])) for e in of_type(events, "response.output_audio.delta")]
    assert deltas, "no audio"
    assert all(size % 2 == 0 for size in deltas)
    assert all(100 * BYTES_PER_MS <= size <= 500 * BYTES_PER_MS for size in deltas[:-1])
    assert 0 < deltas[-1] <= 500 * BYTES_PER_MS
    seconds = sum(deltas) / (BYTES_PER_MS * 1000)
    transcript = only(events, "response.output_audio_transcript.done")["transcript"]
    assert transcript == transcript_of(events) == PARAGRAPH
    assert only(events, "response.content_part.done")["part"] == {"type": "audio", "transcript": transcript}
    assert only(events, "response.output_item.done")["item"]["content"][0]["transcript"] == transcript
    finished = only(events, "response.done")["response"]
    assert finished["status"] == "completed"
    usage = finished["usage"]
    assert usage["output_token_details"]["audio_tokens"] == math.ceil(seconds * 20)
    assert usage["output_token_details"]["text_tokens"] == math.ceil(len(transcript) / 4)
    assert usage["output_tokens"] == sum(usage["output_token_details"].values())
    assert usage["input_tokens"] == sum(
        usage["input_token_details"][kind] for kind in ("text_tokens", "audio_tokens", "image_tokens")
    )
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    expected_input = math.ceil(len(NARRATION_SESSION["instructions"]) / 4) + math.ceil(len(PARAGRAPH) / 4)
    assert usage["input_token_details"]["text_tokens"] == expected_input


async def test_production_style_typed_loop_gets_audio_and_transcript(emulator: RealtimeEmulator) -> None:
    async with client(emulator).realtime.connect(model=MODEL) as connection:
        await connection.session.update(session=NARRATION_SESSION)  # type: ignore[arg-type]
        await connection.conversation.item.create(item=user_message("Hello there."))  # type: ignore[arg-type]
        await connection.response.create()
        pcm, parts, status = bytearray(), [], None
        async for event in connection:
            if event.type == "response.output_audio.delta":
                pcm += base64.b64decode(event.delta)
            elif event.type == "response.output_audio_transcript.delta":
                parts.append(event.delta)
            elif event.type == "response.done":
                status = event.response.status
                break
    assert status == "completed"
    assert "".join(parts) == "Hello there."
    assert len(pcm) > 24_000


async def test_session_created_defaults_and_updated_merge(emulator: RealtimeEmulator) -> None:
    async with client(emulator).realtime.connect(model=MODEL) as connection:
        created = await receive(connection)
        session = created["session"]
        assert session["type"] == "realtime"
        assert session["model"] == MODEL
        assert session["audio"]["output"]["voice"] == "alloy"
        assert session["expires_at"] >= time.time() + 59 * 60
        await connection.session.update(session={"type": "realtime", "audio": {"output": {"voice": "cedar"}}})
        updated = (await receive_until(connection, "session.updated"))[-1]
        validate_server_event(updated)
        assert updated["session"]["audio"]["output"]["voice"] == "cedar"
        assert updated["session"]["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert updated["session"]["id"] == session["id"]


# -- handshake -------------------------------------------------------------------------


async def test_bearer_key_is_accepted_and_recorded(emulator: RealtimeEmulator) -> None:
    await narrate(emulator, "Hi.")
    assert emulator.sessions[0].auth == "bearer"
    assert emulator.sessions[0].model == MODEL


async def test_api_key_header_is_accepted(emulator: RealtimeEmulator) -> None:
    url = f"{emulator.websocket_base_url}/realtime?model={MODEL}"
    async with ws_connect(url, additional_headers={"api-key": KEY}) as websocket:
        created = json.loads(await websocket.recv())
    assert created["type"] == "session.created"
    assert emulator.sessions[0].auth == "api-key"


async def _handshake_status(emulator: RealtimeEmulator, path: str, headers: dict[str, str]) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as raised:
        async with ws_connect(
            emulator.websocket_base_url.removesuffix("/openai/v1") + path, additional_headers=headers
        ):
            pass
    return raised.value


async def test_wrong_key_is_401_with_a_json_error_body(emulator: RealtimeEmulator) -> None:
    with pytest.raises(InvalidStatus) as raised:
        async with client(emulator, api_key="wrong").realtime.connect(model=MODEL):
            pass
    assert raised.value.response.status_code == 401
    body = json.loads(raised.value.response.body or b"")
    assert body["error"]["code"] == "401"
    assert raised.value.response.headers["Content-Type"] == "application/json"


async def test_missing_key_is_401(emulator: RealtimeEmulator) -> None:
    rejected = await _handshake_status(emulator, f"/openai/v1/realtime?model={MODEL}", {})
    assert rejected.response.status_code == 401


async def test_unknown_model_is_404(emulator: RealtimeEmulator) -> None:
    with pytest.raises(InvalidStatus) as raised:
        async with client(emulator).realtime.connect(model="gpt-4o-realtime-preview"):
            pass
    assert raised.value.response.status_code == 404
    assert json.loads(raised.value.response.body or b"")["error"]["code"] == "DeploymentNotFound"


async def test_wrong_path_is_404(emulator: RealtimeEmulator) -> None:
    rejected = await _handshake_status(emulator, f"/openai/realtime?deployment={MODEL}", {"api-key": KEY})
    assert rejected.response.status_code == 404


async def test_api_version_on_the_ga_path_is_401(emulator: RealtimeEmulator) -> None:
    path = f"/openai/v1/realtime?model={MODEL}&api-version=2025-04-01-preview"
    rejected = await _handshake_status(emulator, path, {"api-key": KEY})
    assert rejected.response.status_code == 401


async def test_handshakes_count_rejected_attempts(emulator: RealtimeEmulator) -> None:
    await _handshake_status(emulator, f"/openai/v1/realtime?model={MODEL}", {})
    await narrate(emulator, "Hi.")
    assert emulator.handshakes == 2
    assert [record.status for record in emulator.handshake_log] == [401, 101]
    assert len(emulator.sessions) == 1


async def test_token_validator_accepts_entra_style_tokens() -> None:
    async with RealtimeEmulator(
        engine="synthetic", token_validator=lambda token: token == "entra-token"
    ) as running:
        await narrate_with_key(running, "entra-token")
        assert running.sessions[0].auth == "bearer"
        assert running.sessions[0].token_validated
        with pytest.raises(InvalidStatus) as raised:
            await narrate_with_key(running, "forged-token")
        assert raised.value.response.status_code == 401


async def test_no_api_key_accepts_anything() -> None:
    async with RealtimeEmulator(engine="synthetic", api_key=None) as running:
        await narrate_with_key(running, "whatever")
        assert running.sessions[0].auth == "bearer"


async def narrate_with_key(emulator: RealtimeEmulator, api_key: str) -> None:
    async with client(emulator, api_key=api_key).realtime.connect(model=MODEL) as connection:
        assert (await receive(connection))["type"] == "session.created"


# -- rules -----------------------------------------------------------------------------


async def _error_for(emulator: RealtimeEmulator, *client_events: dict[str, Any]) -> Event:
    """Send ``client_events`` on a fresh connection; return the first ``error`` event."""
    async with client(emulator).realtime.connect(model=MODEL) as connection:
        await receive(connection)
        for event in client_events:
            await connection.send(event)  # type: ignore[arg-type]
        events = await receive_until(connection, "error")
        for event in events:
            validate_server_event(event)
        error: Event = events[-1]["error"]
        return error


async def test_session_update_without_type_is_missing_required_parameter(emulator: RealtimeEmulator) -> None:
    error = await _error_for(
        emulator, {"type": "session.update", "event_id": "evt_client_1", "session": {"instructions": "x"}}
    )
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "missing_required_parameter"
    assert error["param"] == "session.type"
    assert error["event_id"] == "evt_client_1"


async def test_unknown_voice_is_invalid_value_listing_the_voices(emulator: RealtimeEmulator) -> None:
    update = {"type": "realtime", "audio": {"output": {"voice": "nova"}}}
    error = await _error_for(emulator, {"type": "session.update", "session": update})
    assert error["code"] == "invalid_value"
    assert error["param"] == "session.audio.output.voice"
    assert all(voice in error["message"] for voice in REALTIME_VOICES)


async def test_unknown_parameter_is_rejected(emulator: RealtimeEmulator) -> None:
    update = {"type": "realtime", "temperature": 0.8}
    error = await _error_for(emulator, {"type": "session.update", "session": update})
    assert error["code"] == "unknown_parameter"
    assert error["param"] == "session.temperature"


async def test_unknown_event_type_is_invalid_value(emulator: RealtimeEmulator) -> None:
    error = await _error_for(emulator, {"type": "response.start", "event_id": "evt_2"})
    assert (error["code"], error["param"], error["event_id"]) == ("invalid_value", "type", "evt_2")


async def test_non_pcm_output_format_is_rejected(emulator: RealtimeEmulator) -> None:
    update = {"type": "realtime", "audio": {"output": {"format": {"type": "audio/pcmu"}}}}
    error = await _error_for(emulator, {"type": "session.update", "session": update})
    assert error["code"] == "invalid_value"


async def test_voice_cannot_change_after_audio_but_the_socket_stays_usable(
    emulator: RealtimeEmulator,
) -> None:
    async with client(emulator).realtime.connect(model=MODEL) as connection:
        await receive(connection)
        await connection.session.update(session=NARRATION_SESSION)  # type: ignore[arg-type]
        await connection.conversation.item.create(item=user_message("One."))  # type: ignore[arg-type]
        await connection.response.create()
        await receive_until(connection, "response.done")
        await connection.session.update(session={"type": "realtime", "audio": {"output": {"voice": "cedar"}}})
        error = (await receive_until(connection, "error", "session.updated"))[-1]
        assert error["type"] == "error"
        assert error["error"]["code"] == "cannot_update_voice"
        await connection.session.update(session={"type": "realtime", "instructions": "Same voice is fine."})
        assert (await receive_until(connection, "session.updated", "error"))[-1]["type"] == "session.updated"


async def test_second_response_while_one_is_active_is_rejected() -> None:
    async with (
        RealtimeEmulator(engine="synthetic", first_audio_delay=0.3) as running,
        client(running).realtime.connect(model=MODEL) as connection,
    ):
        await receive(connection)
        await connection.conversation.item.create(item=user_message("First."))  # type: ignore[arg-type]
        await connection.response.create()
        await connection.response.create(event_id="evt_second")
        events = await receive_until(connection, "response.done")
        errors = of_type(events, "error")
        assert len(errors) == 1
        assert errors[0]["error"]["code"] == "conversation_already_has_active_response"
        assert errors[0]["error"]["event_id"] == "evt_second"
        assert events[-1]["response"]["status"] == "completed"
        assert len(of_type(events, "response.created")) == 1


async def test_conversation_items_chain_previous_item_ids(emulator: RealtimeEmulator) -> None:
    async with client(emulator).realtime.connect(model=MODEL) as connection:
        await receive(connection)
        await connection.conversation.item.create(item=user_message("One."))  # type: ignore[arg-type]
        first = await receive_until(connection, "conversation.item.done")
        await connection.conversation.item.create(item=user_message("Two."))  # type: ignore[arg-type]
        second = await receive_until(connection, "conversation.item.done")
    assert [e["type"] for e in first] == ["conversation.item.added", "conversation.item.done"]
    assert first[0]["previous_item_id"] is None
    assert second[0]["previous_item_id"] == second[1]["previous_item_id"] == first[0]["item"]["id"]
    assert second[0]["item"]["content"] == [{"type": "input_text", "text": "Two."}]


# -- responses: overrides, out-of-band, tokens, caps ------------------------------------


async def test_second_response_in_a_session_bills_the_first_as_input(emulator: RealtimeEmulator) -> None:
    async with client(emulator).realtime.connect(model=MODEL) as connection:
        await receive(connection)
        await connection.session.update(session=NARRATION_SESSION)  # type: ignore[arg-type]
        usages = []
        for text in ("The first paragraph is here.", "The second paragraph is here."):
            await connection.conversation.item.create(item=user_message(text))  # type: ignore[arg-type]
            await connection.response.create()
            events = await receive_until(connection, "response.done")
            assert transcript_of(events) == text
            usages.append(events[-1]["response"]["usage"])
        out_of_band = {
            "conversation": "none",
            "instructions": "Read it.",
            "input": [user_message("An out of band paragraph.")],
        }
        await connection.response.create(response=out_of_band)  # type: ignore[arg-type]
        events = await receive_until(connection, "response.done")
    first, second = usages
    assert second["input_tokens"] > first["input_tokens"]
    assert second["input_token_details"]["audio_tokens"] == first["output_token_details"]["audio_tokens"]
    assert first["input_token_details"]["audio_tokens"] == 0
    oob_usage = events[-1]["response"]["usage"]
    assert oob_usage["input_tokens"] == math.ceil(len("Read it.") / 4) + math.ceil(
        len("An out of band paragraph.") / 4
    )
    assert oob_usage["input_token_details"]["audio_tokens"] == 0
    assert transcript_of(events) == "An out of band paragraph."


async def test_out_of_band_response_stays_out_of_the_conversation(emulator: RealtimeEmulator) -> None:
    async with client(emulator).realtime.connect(model=MODEL) as connection:
        await receive(connection)
        response = {"conversation": "none", "input": [user_message("Outside.")], "metadata": {"chunk": "3"}}
        await connection.response.create(response=response)  # type: ignore[arg-type]
        events = await receive_until(connection, "response.done")
    for event in events:
        validate_server_event(event)
    assert not of_type(events, "conversation.item.added")
    assert not of_type(events, "conversation.item.done")
    assert of_type(events, "response.output_item.added")
    finished = events[-1]["response"]
    assert finished["conversation_id"] is None
    assert finished["metadata"] == {"chunk": "3"}
    assert transcript_of(events) == "Outside."


async def test_per_response_voice_and_text_modality(emulator: RealtimeEmulator) -> None:
    events = await narrate(emulator, "Hello.", response={"audio": {"output": {"voice": "ash"}}})
    assert only(events, "response.done")["response"]["audio"]["output"]["voice"] == "ash"
    assert emulator.sessions[-1].responses[0].voice == "ash"

    events = await narrate(emulator, "Only text.", response={"output_modalities": ["text"]})
    for event in events:
        validate_server_event(event)
    assert not of_type(events, "response.output_audio.delta")
    assert only(events, "response.output_text.done")["text"] == "Only text."
    assert only(events, "response.done")["response"]["usage"]["output_token_details"]["audio_tokens"] == 0


async def test_marker_lines_around_the_text_are_not_read(emulator: RealtimeEmulator) -> None:
    events = await narrate(emulator, "<<<<\nRead this, not the >>> signs.\n>>>>")
    assert transcript_of(events) == "Read this, not the >>> signs."


async def test_max_output_tokens_truncates_audio_and_transcript(emulator: RealtimeEmulator) -> None:
    events = await narrate(emulator, PARAGRAPH, response={"max_output_tokens": 40})
    for event in events:
        validate_server_event(event)
    finished = only(events, "response.done")["response"]
    assert finished["status"] == "incomplete"
    assert finished["status_details"]["reason"] == "max_output_tokens"
    usage = finished["usage"]
    assert 30 <= usage["output_tokens"] <= 40
    seconds = len(audio_of(events)) / 48_000
    assert usage["output_token_details"]["audio_tokens"] == math.ceil(seconds * 20)
    transcript = only(events, "response.output_audio_transcript.done")["transcript"]
    assert transcript == transcript_of(events)
    assert transcript
    assert PARAGRAPH.startswith(transcript)
    assert transcript != PARAGRAPH
    assert only(events, "response.output_item.done")["item"]["status"] == "incomplete"


async def test_session_max_output_tokens_applies_too(emulator: RealtimeEmulator) -> None:
    session = {**NARRATION_SESSION, "max_output_tokens": 25}
    events = await narrate(emulator, PARAGRAPH, session=session)
    finished = only(events, "response.done")["response"]
    assert (finished["status"], finished["max_output_tokens"]) == ("incomplete", 25)
    assert finished["usage"]["output_tokens"] <= 25


async def test_response_cancel_ends_with_cancelled() -> None:
    async with (
        RealtimeEmulator(engine="synthetic", speed=5.0) as running,
        client(running).realtime.connect(model=MODEL) as connection,
    ):
        await receive(connection)
        await connection.conversation.item.create(item=user_message(PARAGRAPH))  # type: ignore[arg-type]
        await connection.response.create()
        await receive_until(connection, "response.output_audio.delta")
        await connection.response.cancel()
        events = await receive_until(connection, "response.done")
    finished = events[-1]["response"]
    assert finished["status"] == "cancelled"
    assert finished["status_details"]["reason"] == "client_cancelled"
