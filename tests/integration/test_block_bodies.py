"""Blocks staged in views (podcast.storage.blobs.BlockBody): every size around the view
size arrives byte for byte in Azurite, and a block whose upload is cut half-way is sent
again whole when the SDK retries it (through a real TCP proxy that drops the connection)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.storage.blob import BlobServiceClient

from podcast.engine.audio import WAV_HEADER_SIZE
from podcast.settings import StorageSettings
from podcast.storage.azure import BlobClientOptions
from podcast.storage.blobs import BODY_CHUNK_BYTES, BlobStore, BlockBody
from testkit.azurite import AzuriteServer

CHUNK = BODY_CHUNK_BYTES


def pcm(size: int) -> bytearray:
    return bytearray(os.urandom(size))


def stored(azurite: AzuriteServer, container: str, name: str) -> bytes:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        return service.get_blob_client(container, name).download_blob().readall()


async def test_a_body_gives_its_bytes_in_views_and_again_from_the_start() -> None:
    data = pcm(3 * CHUNK + 7)
    body = BlockBody(data)
    first = [bytes(view) async for view in body]
    again = [bytes(view) async for view in body]
    assert first == again
    assert [len(view) for view in first] == [CHUNK, CHUNK, CHUNK, 7]
    assert b"".join(first) == data
    assert len(body) == len(data)


@pytest.mark.parametrize("size", [2, CHUNK - 2, CHUNK, CHUNK + 2, 2 * CHUNK, 5_500_002])
async def test_pieces_of_every_size_around_the_view_size_are_stored_whole(
    blob_store: BlobStore, storage_settings: StorageSettings, azurite: AzuriteServer, size: int
) -> None:
    first, second = pcm(size), pcm(CHUNK + 4)
    writer = blob_store.wav_writer("sizes.wav")
    await writer.stage(0, first)
    await writer.stage(1, second)
    await writer.commit(download_name="sizes.wav", metadata={})
    wav = stored(azurite, storage_settings.output_container, "sizes.wav")
    assert wav[WAV_HEADER_SIZE:] == first + second


class CuttingProxy:
    """A TCP proxy to Azurite that cuts the connection of the first Put Block once it has
    passed ``cut_after`` bytes of it on, or (``drop_reused``) closes a kept-alive connection
    as the next request on it begins, once, as a server does that timed it out just then;
    everything else is passed through."""

    def __init__(self, target_port: int, cut_after: int | None = None, drop_reused: bool = False) -> None:
        self.target_port = target_port
        self.cut_after = cut_after
        self.drop_reused = drop_reused
        self.dropped = 0
        self.cuts = 0
        self.block_uploads: list[bytes] = []
        """The target (path and query) of every Put Block, in order."""
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def upstream() -> None:
            passed, cutting, requests = 0, False, 0
            while data := await reader.read(65536):
                if b"comp=block&" in data or b"comp=block " in data:
                    requests += 1
                    if self.drop_reused and requests > 1 and not self.dropped:
                        self.dropped += 1
                        writer.transport.abort()
                        upstream_writer.transport.abort()
                        return
                    self.block_uploads.append(data.split(b" ", 2)[1])
                    cutting = self.cut_after is not None and self.cuts == 0
                passed += len(data)
                if cutting and self.cut_after is not None and passed > self.cut_after:
                    self.cuts += 1
                    writer.transport.abort()
                    upstream_writer.transport.abort()
                    return
                upstream_writer.write(data)
                await upstream_writer.drain()
            upstream_writer.close()

        async def downstream() -> None:
            with contextlib.suppress(ConnectionError):
                while data := await upstream_reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.close()

        with contextlib.suppress(ConnectionError):
            await asyncio.gather(upstream(), downstream())


@contextlib.asynccontextmanager
async def store_behind(
    azurite: AzuriteServer, storage_settings: StorageSettings, *, retry_total: int = 2, **proxy_options: Any
) -> AsyncIterator[tuple[BlobStore, CuttingProxy]]:
    """A store whose Blob requests go through a :class:`CuttingProxy` to Azurite."""
    port = urlsplit(azurite.blob_endpoint).port
    assert port is not None
    async with CuttingProxy(port, **proxy_options) as proxy:
        settings = StorageSettings(
            connection_string=azurite.connection_string.replace(f":{port}/", f":{proxy.port}/"),
            output_container=storage_settings.output_container,
        )
        options = BlobClientOptions(
            retry_total=retry_total, first_backoff_seconds=0.1, connection_timeout=5.0, read_timeout=20.0
        )
        store = BlobStore.from_settings(settings, options=options)
        try:
            yield store, proxy
        finally:
            await store.close()


async def test_a_block_cut_half_way_is_sent_again_whole(
    storage_settings: StorageSettings, azurite: AzuriteServer
) -> None:
    data = pcm(3_000_000)
    async with store_behind(azurite, storage_settings, cut_after=1_000_000) as (store, proxy):
        writer = store.wav_writer("cut.wav")
        await writer.stage(0, data)
        await writer.commit(download_name="cut.wav", metadata={})

    assert proxy.cuts == 1
    cut, retried, header = proxy.block_uploads  # the WAV header is staged at the commit
    assert retried == cut != header
    assert stored(azurite, storage_settings.output_container, "cut.wav")[WAV_HEADER_SIZE:] == data


async def test_a_block_sent_on_a_connection_the_server_just_closed_is_sent_again_by_aiohttp(
    storage_settings: StorageSettings, azurite: AzuriteServer
) -> None:
    """A kept-alive connection closed by the server as the next block goes out: aiohttp
    itself sends the request again on a new connection (the body is a payload it may send
    twice), with no retry of the SDK's to spend (there are none here)."""
    first, second = pcm(2_000_000), pcm(2_000_002)
    async with store_behind(azurite, storage_settings, retry_total=0, drop_reused=True) as (store, proxy):
        writer = store.wav_writer("kept.wav")
        await writer.stage(0, first)
        await writer.stage(1, second)
        await writer.commit(download_name="kept.wav", metadata={})
    assert proxy.dropped == 1
    wav = stored(azurite, storage_settings.output_container, "kept.wav")
    assert wav[WAV_HEADER_SIZE:] == first + second
