"""The Realtime connection reads into its own buffer (podcast.engine.connection): every
message arrives whole and unchanged, whatever its size against the buffer, its framing,
or TLS, from an independent server (websockets' own), and the transport really reads
through the buffered path."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from podcast.engine.connection import READ_BUFFER_BYTES, BufferedClientConnection
from podcast.engine.realtime import Narrator
from podcast.settings import RealtimeSettings, realtime_base_url
from testkit.azurite import make_self_signed_cert
from testkit.scripted_server import ScriptedServer, audio_event, response_done, tone, transcript_event

SIZES = [
    0,
    1,
    125,
    126,
    65535,
    65536,
    READ_BUFFER_BYTES - 1,
    READ_BUFFER_BYTES,
    READ_BUFFER_BYTES + 1,
    3_000_001,
]
"""Around websockets' length encodings (125/126, 65535/65536) and the read buffer (±1)."""


def payload(size: int, seed: int) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(min(size, 251))) * (size // 251) + os.urandom(
        size % 251
    )


class CountingConnection(BufferedClientConnection):
    """The connection under test, counting the transport's buffered reads."""

    buffered_reads = 0

    def buffer_updated(self, nbytes: int) -> None:
        type(self).buffered_reads += 1
        super().buffer_updated(nbytes)


Handler = Callable[[ServerConnection], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(handler: Handler, tls: ssl.SSLContext | None) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0, ssl=tls, max_size=None, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"{'wss' if tls else 'ws'}://127.0.0.1:{port}/"


def connecting(
    url: str,
    tls: ssl.SSLContext | None,
    connection: type[BufferedClientConnection] = BufferedClientConnection,
) -> connect:
    """A websockets client connection of class ``connection``, with the narrator's settings."""
    return connect(url, ssl=tls, max_size=None, compression=None, create_connection=connection)


@pytest.fixture(params=["ws", "wss"])
def tls(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """(server context, client context), or none for plain ``ws://``."""
    if request.param == "ws":
        return None, None
    files = make_self_signed_cert(tmp_path / "tls")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(files.cert_path, files.key_path)
    return server, ssl.create_default_context(cafile=str(files.cert_path))


async def test_messages_of_every_size_and_framing_arrive_whole(
    tls: tuple[ssl.SSLContext | None, ssl.SSLContext | None],
) -> None:
    binary = [payload(size, seed) for seed, size in enumerate(SIZES)]
    text = [bytes(b % 94 + 32 for b in data).decode() for data in binary]  # printable ASCII, as JSON is

    async def handler(connection: ServerConnection) -> None:
        for data, message in zip(binary, text, strict=True):
            await connection.send(data)
            await connection.send(message)
        big = text[-1]
        await connection.send([big[:1], big[1:READ_BUFFER_BYTES], big[READ_BUFFER_BYTES:]])  # fragmented
        await connection.wait_closed()

    CountingConnection.buffered_reads = 0
    server_tls, client_tls = tls
    async with (
        serving(handler, server_tls) as url,
        connecting(url, client_tls, CountingConnection) as connection,
    ):
        assert isinstance(connection, asyncio.BufferedProtocol)
        for data, message in zip(binary, text, strict=True):
            assert await connection.recv(decode=False) == data
            assert await connection.recv(decode=False) == message.encode()
        assert await connection.recv() == text[-1]
    # Several MB arrived in reads of at most the buffer's size, all through the buffer.
    total = 2 * sum(SIZES) + SIZES[-1]
    assert CountingConnection.buffered_reads >= total // READ_BUFFER_BYTES


async def test_a_connection_closed_mid_message_is_a_clean_close(
    tls: tuple[ssl.SSLContext | None, ssl.SSLContext | None],
) -> None:
    """The server drops the TCP connection inside a frame: websockets' ConnectionClosedError,
    as with its own connection, never a truncated message."""
    from websockets.exceptions import ConnectionClosedError

    async def handler(connection: ServerConnection) -> None:
        await connection.send(b"x" * 1000)
        frame_head = b"\x82\x7f" + (5_000_000).to_bytes(8, "big")  # a 5 MB binary frame ...
        connection.transport.write(frame_head + b"y" * 300_000)  # ... cut after 300 kB
        await asyncio.sleep(0.05)
        connection.transport.abort()

    server_tls, client_tls = tls
    async with (
        serving(handler, server_tls) as url,
        connecting(url, client_tls) as connection,
    ):
        assert await connection.recv(decode=False) == b"x" * 1000
        with pytest.raises(ConnectionClosedError):
            await connection.recv(decode=False)


async def test_the_narrator_reads_through_the_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The narrator's connections are buffered ones: its audio arrives through
    :meth:`BufferedClientConnection.buffer_updated`, byte for byte."""
    reads: list[int] = []
    original = BufferedClientConnection.buffer_updated

    def counting(self: BufferedClientConnection, nbytes: int) -> None:
        reads.append(nbytes)
        original(self, nbytes)

    monkeypatch.setattr(BufferedClientConnection, "buffer_updated", counting)

    def script(server: ScriptedServer) -> list[object]:
        return [
            audio_event(server, tone(3.0, 220)),  # 144 kB of PCM, 192 kB of base64
            audio_event(server, tone(4.0, 330)),  # more than the buffer in one message
            transcript_event(server, "Hello."),
            response_done(server),
        ]

    async with ScriptedServer(script) as server:
        settings = RealtimeSettings(
            endpoint=realtime_base_url(server.url),
            api_key="scripted-key",
            response_timeout_seconds=10.0,
            max_retries=0,
        )
        async with Narrator(settings) as narrator:
            narration = await narrator.narrate("Hello.")
    assert narration.audio == tone(3.0, 220) + tone(4.0, 330)
    assert sum(reads) > len(narration.audio) * 4 // 3  # all of the base64 came through the buffer
