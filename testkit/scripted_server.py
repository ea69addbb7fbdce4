"""A minimal, independent GA Realtime server for protocol tests.

It shares no code with :mod:`emulator`: it answers the handshake, records what
the client sends, and after ``response.create`` replays a script of server events written
by the test. Tests use it to check that the narrator follows the protocol rather than the
emulator's habits (other delta sizes, other interleavings, extra event types).
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

Event = dict[str, Any]
Script = Callable[["ScriptedServer"], Sequence[object]]
"""A script returns events to send, :class:`Frame` objects (sent exactly as given), or the
strings "close" (close frame) / "hang" (stop)."""


@dataclass(frozen=True)
class Frame:
    """A message sent as it is: ``str`` as a text frame, ``bytes`` as a binary frame, a list
    of either as one message fragmented into those frames (all of one kind)."""

    payload: str | bytes | list[str] | list[bytes]


def tone(seconds: float, frequency: float = 220.0) -> bytes:
    """PCM16 24 kHz mono sine tone, a recognizable non-silent signal."""
    count = round(seconds * 24_000)
    return b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * frequency * n / 24_000))) for n in range(count)
    )


@dataclass
class ScriptedServer:
    """Serve ``script`` on a random loopback port; ``url`` is the endpoint to configure."""

    script: Script
    handshake_statuses: list[int] = field(default_factory=list)
    """Statuses to reject the next handshakes with, one per connection, then accept."""
    handshake_headers: dict[str, str] = field(default_factory=dict)
    handshake_body: bytes | None = None
    """The body of every rejection (default: ``{"error": {"code": "<status>", "message": ...}}``)."""
    received: list[Event] = field(default_factory=list)
    handshake_headers_seen: list[dict[str, str]] = field(default_factory=list)
    compression: str | None = "deflate"
    """``"deflate"`` accepts permessage-deflate when a client offers it; ``None`` never does."""
    extensions_used: list[list[str]] = field(default_factory=list)
    """The extensions negotiated on each connection, by name."""
    connections: int = 0
    _server: Server | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = next(iter(self._server.sockets)).getsockname()[:2]
        return f"http://{host}:{port}"

    def event_id(self) -> str:
        return f"event_{next(self._ids)}"

    async def __aenter__(self) -> ScriptedServer:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            compression=self.compression,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.connections += 1
        self.handshake_headers_seen.append(dict(request.headers.raw_items()))
        if not self.handshake_statuses:
            return None
        status = HTTPStatus(self.handshake_statuses.pop(0))
        body = self.handshake_body
        if body is None:
            body = json.dumps({"error": {"code": str(status.value), "message": status.phrase}}).encode()
        headers = Headers({"Content-Type": "application/json", **self.handshake_headers})
        return Response(status.value, status.phrase, headers, body)

    async def _handle(self, connection: ServerConnection) -> None:
        self.extensions_used.append([extension.name for extension in connection.protocol.extensions])
        await connection.send(
            json.dumps(
                {
                    "type": "session.created",
                    "event_id": self.event_id(),
                    "session": {"type": "realtime", "id": "sess_scripted"},
                }
            )
        )
        async for message in connection:
            event = json.loads(message)
            self.received.append(event)
            if event.get("type") != "response.create":
                continue
            for step in self.script(self):
                if step == "close":
                    await connection.close()
                    return
                if step == "hang":
                    await connection.wait_closed()
                    return
                if isinstance(step, Frame):
                    await connection.send(step.payload)
                    continue
                await connection.send(json.dumps(step))


def audio_event(
    server: ScriptedServer, pcm: bytes, response_id: str = "resp_1", item_id: str = "item_a"
) -> Event:
    return {
        "type": "response.output_audio.delta",
        "event_id": server.event_id(),
        "response_id": response_id,
        "item_id": item_id,
        "output_index": 0,
        "content_index": 0,
        "delta": base64.b64encode(pcm).decode(),
    }


def transcript_event(
    server: ScriptedServer, text: str, response_id: str = "resp_1", item_id: str = "item_a"
) -> Event:
    return {
        "type": "response.output_audio_transcript.delta",
        "event_id": server.event_id(),
        "response_id": response_id,
        "item_id": item_id,
        "output_index": 0,
        "content_index": 0,
        "delta": text,
    }


def response_done(
    server: ScriptedServer,
    status: str = "completed",
    status_details: dict[str, Any] | None = None,
    response_id: str = "resp_1",
    usage: dict[str, Any] | None = None,
) -> Event:
    return {
        "type": "response.done",
        "event_id": server.event_id(),
        "response": {
            "id": response_id,
            "object": "realtime.response",
            "status": status,
            "status_details": status_details,
            "usage": usage
            or {
                "total_tokens": 60,
                "input_tokens": 20,
                "output_tokens": 40,
                "input_token_details": {"text_tokens": 20, "audio_tokens": 0, "cached_tokens": 0},
                "output_token_details": {"text_tokens": 10, "audio_tokens": 30},
            },
        },
    }
