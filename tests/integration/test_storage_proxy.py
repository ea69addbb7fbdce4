"""Storage behind an HTTP proxy named by the environment (``HTTP_PROXY``): the proxy is
looked up once, when the client is built, not again for every request (aiohttp does that in
a thread of its own per request, with ~/.netrc in another: CPU every staged block paid).

The proxy is a real forward proxy (aiohttp's server, relaying each absolute-form request to
Azurite and counting them); the blocks land in Azurite byte for byte either way."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
import yarl
from aiohttp import web
from azure.storage.blob import BlobServiceClient

from podcast.engine.audio import WAV_HEADER_SIZE
from podcast.settings import StorageSettings
from podcast.storage.azure import BlobClientOptions, environment_names_a_proxy
from podcast.storage.blobs import BlobStore
from testkit.azurite import AzuriteServer
from testkit.storage import FAST_FAILING

_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "host"})


class ForwardProxy:
    """An HTTP forward proxy on a free local port: each request (absolute-form, as a client
    sends it to a proxy) is relayed to its target and the answer relayed back."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.port = 0

    async def _relay(self, request: web.BaseRequest) -> web.StreamResponse:
        target = request.raw_path  # absolute-form: the client knows it talks to a proxy
        self.requests.append(f"{request.method} {target.split('?')[0]}")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        body = await request.read()
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method,
                yarl.URL(target, encoded=True),  # as signed: not encoded again
                headers=headers,
                data=body,
                skip_auto_headers=("Content-Type", "User-Agent", "Accept", "Accept-Encoding"),
            ) as answer,
        ):
            payload = await answer.read()
            kept = {
                k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP | {"content-length"}
            }
            return web.Response(status=answer.status, headers=kept, body=payload)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ForwardProxy]:
        server = web.Server(self._relay)
        runner = web.ServerRunner(server)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            yield self
        finally:
            await runner.cleanup()


def _dead_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stored(azurite: AzuriteServer, container: str, name: str) -> bytes:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        return service.get_blob_client(container, name).download_blob().readall()


@pytest.fixture
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


async def _write(store: BlobStore, name: str) -> bytes:
    pcm = bytearray(os.urandom(200_002))
    writer = store.wav_writer(name)
    await writer.stage(0, pcm)
    await writer.stage_part(1, 0, pcm[:100_000])
    await writer.stage_part(1, 1, pcm[100_000:])
    await writer.commit(download_name=name, metadata={})
    return bytes(pcm + pcm)


async def test_storage_goes_through_the_proxy_the_environment_names(
    no_proxy_environment: pytest.MonkeyPatch, storage_settings: StorageSettings, azurite: AzuriteServer
) -> None:
    async with ForwardProxy().running() as proxy:
        no_proxy_environment.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        assert environment_names_a_proxy()
        store = BlobStore.from_settings(storage_settings, options=FAST_FAILING)
        try:
            expected = await _write(store, "proxied.wav")
        finally:
            await store.close()
            no_proxy_environment.delenv("HTTP_PROXY")  # the fixtures' own clients go direct
    stored = _stored(azurite, storage_settings.output_container, "proxied.wav")
    assert stored[WAV_HEADER_SIZE:] == expected
    puts = [line for line in proxy.requests if line.startswith("PUT") and "proxied.wav" in line]
    assert len(puts) >= 5, proxy.requests  # three blocks, the header and the block list


async def test_without_a_proxy_at_start_requests_never_look_for_one_again(
    no_proxy_environment: pytest.MonkeyPatch, storage_settings: StorageSettings, azurite: AzuriteServer
) -> None:
    assert not environment_names_a_proxy()
    store = BlobStore.from_settings(storage_settings, options=FAST_FAILING)
    try:
        # A proxy named after the client is built (nothing listens there): were the
        # environment read again per request, every request would fail to connect.
        no_proxy_environment.setenv("HTTP_PROXY", f"http://127.0.0.1:{_dead_port()}")
        expected = await _write(store, "direct.wav")
    finally:
        await store.close()
        no_proxy_environment.delenv("HTTP_PROXY")
    assert _stored(azurite, storage_settings.output_container, "direct.wav")[WAV_HEADER_SIZE:] == expected


def test_the_proxy_lookup_can_be_set_either_way(no_proxy_environment: pytest.MonkeyPatch) -> None:
    assert BlobClientOptions().client_kwargs()["use_env_settings"] is False
    no_proxy_environment.setenv("https_proxy", "http://proxy.invalid:3128")
    assert BlobClientOptions().client_kwargs()["use_env_settings"] is True
    assert BlobClientOptions(environment_proxy=False).client_kwargs()["use_env_settings"] is False
    no_proxy_environment.delenv("https_proxy")
    assert BlobClientOptions(environment_proxy=True).client_kwargs()["use_env_settings"] is True
