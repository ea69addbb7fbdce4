"""Helpers for the emulator tests: drive it with the real SDK client, validate what it sends.

Events are read raw (``recv_bytes`` + ``json.loads``) so tests see exactly what went over
the wire, while the connection itself is the production one,
``AsyncOpenAI(websocket_base_url=..., api_key=...).realtime.connect(model=...)``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence
from typing import Any, Final, get_args

import openai
import pydantic
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from openai.types.realtime import RealtimeServerEvent

from emulator import RealtimeEmulator

Event = dict[str, Any]

MODEL: Final = "gpt-realtime-mini"
KEY: Final = "emulator-key"
SERVER_EVENT: Final = pydantic.TypeAdapter(RealtimeServerEvent)

NARRATION_SESSION: Final[dict[str, Any]] = {
    "type": "realtime",
    "output_modalities": ["audio"],
    "instructions": "Read the user's text aloud EXACTLY as written. Do NOT answer, summarise, add or skip.",
    "max_output_tokens": 4096,
    "audio": {
        "output": {"voice": "marin", "speed": 1.0, "format": {"type": "audio/pcm", "rate": 24000}},
        "input": {"turn_detection": None},
    },
}
"""The session the production narrator configures."""

PARAGRAPH: Final = (
    "Good morning, and welcome to the show. Today we talk about the history of coffee, from the "
    "Ethiopian highlands to the modern espresso bar. It is a long story, full of surprises and "
    "strong opinions, so pour yourself a cup and settle in."
)


def validate_server_event(event: Event) -> pydantic.BaseModel:
    """Validate ``event`` with the SDK's union and check it parsed as its own type's class."""
    model = SERVER_EVENT.validate_python(event)
    assert isinstance(model, pydantic.BaseModel)
    assert getattr(model, "type", None) == event["type"], (type(model).__name__, event["type"])
    declared = get_args(type(model).model_fields["type"].annotation)
    assert event["type"] in declared, f"{event['type']} parsed as {type(model).__name__}"
    return model


def client(target: RealtimeEmulator | str, api_key: str = KEY) -> openai.AsyncOpenAI:
    """An SDK client for an emulator object, or for a ``websocket_base_url`` string."""
    base_url = target if isinstance(target, str) else target.websocket_base_url
    return openai.AsyncOpenAI(websocket_base_url=base_url, api_key=api_key)


def user_message(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


async def receive(connection: AsyncRealtimeConnection, timeout: float = 10.0) -> Event:
    """The next server event, as sent."""
    async with asyncio.timeout(timeout):
        event: Event = json.loads(await connection.recv_bytes())
    return event


async def receive_until(
    connection: AsyncRealtimeConnection, *types: str, timeout: float = 10.0
) -> list[Event]:
    """Events up to and including the first one whose type is in ``types``."""
    events: list[Event] = []
    async with asyncio.timeout(timeout):
        while True:
            event = await receive(connection, timeout)
            events.append(event)
            if event["type"] in types:
                return events


async def narrate(
    emulator: RealtimeEmulator | str,
    text: str,
    *,
    session: dict[str, Any] | None = None,
    response: dict[str, Any] | None = None,
) -> list[Event]:
    """Narrate ``text`` the way production does; every event from ``session.created`` through
    ``response.done`` (or a response-ending ``error``)."""
    async with client(emulator).realtime.connect(model=MODEL) as connection:
        events = [await receive(connection)]
        await connection.session.update(session=session or NARRATION_SESSION)  # type: ignore[arg-type]
        events += await receive_until(connection, "session.updated", "error")
        await connection.conversation.item.create(item=user_message(text))  # type: ignore[arg-type]
        events += await receive_until(connection, "conversation.item.done")
        await connection.response.create(response=response or {})  # type: ignore[arg-type]
        events += await receive_until(connection, "response.done", "error")
        return events


def of_type(events: Sequence[Event], event_type: str) -> list[Event]:
    return [event for event in events if event["type"] == event_type]


def only(events: Sequence[Event], event_type: str) -> Event:
    matching = of_type(events, event_type)
    assert len(matching) == 1, f"expected one {event_type}, got {len(matching)}"
    return matching[0]


def audio_of(events: Sequence[Event]) -> bytes:
    return b"".join(
        base64.b64decode(event["delta"]) for event in of_type(events, "response.output_audio.delta")
    )


def transcript_of(events: Sequence[Event]) -> str:
    return "".join(event["delta"] for event in of_type(events, "response.output_audio_transcript.delta"))
