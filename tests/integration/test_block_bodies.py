"""Blocks staged in views (podcast.storage.blobs.BlockBody): every size around the view
size arrives byte for byte in Azurite, and a block whose upload is cut half-way is sent
again whole when the SDK retries it (through a real TCP proxy that drops the connection)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
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
    passed ``cut_after`` bytes of it on; everything else is passed through."""

    def __init__(self, target_port: int, cut_after: int) -> None:
        self.target_port = target_port
        self.cut_after = cut_after
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
            passed, cutting = 0, False
            while data := await reader.read(65536):
                if b"comp=block&" in data or b"comp=block " in data:
                    self.block_uploads.append(data.split(b" ", 2)[1])
                    cutting = self.cuts == 0
                passed += len(data)
                if cutting and passed > self.cut_after:
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


@pytest.fixture
async def proxied_store(
    azurite: AzuriteServer, storage_settings: StorageSettings
) -> AsyncIterator[tuple[BlobStore, CuttingProxy]]:
    port = urlsplit(azurite.blob_endpoint).port
    assert port is not None
    async with CuttingProxy(port, cut_after=1_000_000) as proxy:
        settings = StorageSettings(
            connection_string=azurite.connection_string.replace(f":{port}/", f":{proxy.port}/"),
            output_container=storage_settings.output_container,
        )
        options = BlobClientOptions(
            retry_total=2, first_backoff_seconds=0.1, connection_timeout=5.0, read_timeout=20.0
        )
        store = BlobStore.from_settings(settings, options=options)
        try:
            yield store, proxy
        finally:
            await store.close()


async def test_a_block_cut_half_way_is_sent_again_whole(
    proxied_store: tuple[BlobStore, CuttingProxy], storage_settings: StorageSettings, azurite: AzuriteServer
) -> None:
    store, proxy = proxied_store
    data = pcm(3_000_000)
    writer = store.wav_writer("cut.wav")
    await writer.stage(0, data)
    await writer.commit(download_name="cut.wav", metadata={})

    assert proxy.cuts == 1
    cut, retried, header = proxy.block_uploads  # the WAV header is staged at the commit
    assert retried == cut != header
    assert stored(azurite, storage_settings.output_container, "cut.wav")[WAV_HEADER_SIZE:] == data
