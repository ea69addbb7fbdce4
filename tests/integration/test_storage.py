"""BlobStore against real Azurite emulators, checked with a plain HTTP client.

The links are fetched exactly as a browser or Power Automate would (no Azure SDK), so
these tests check what Azurite accepts and refuses, not what our code believes.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

import aiohttp
import pytest
from azure.core.pipeline import PipelineRequest
from azure.storage.blob import BlobServiceClient

from podcast.engine.audio import pcm_to_wav, silence
from podcast.errors import StorageError, StorageUnavailableError
from podcast.settings import StorageSettings
from podcast.storage.blobs import BlobStore, content_disposition
from testkit.azurite import ACCOUNT_KEY, AzuriteServer
from testkit.credentials import FakeTokenCredential
from testkit.storage import FAST_FAILING

pytestmark = pytest.mark.azurite

PCM = silence(0.25) + bytes(range(256)) * 40
WAV = pcm_to_wav(PCM)
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Fetched:
    status: int
    headers: Mapping[str, str]
    body: bytes


async def fetch(url: str, *, method: str = "GET", cafile: str | None = None, **kwargs: Any) -> Fetched:
    """One plain HTTP request (no Azure SDK), trusting ``cafile`` for HTTPS."""
    ssl_context = ssl.create_default_context(cafile=cafile) if cafile else None
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, ssl=ssl_context or True, **kwargs) as response,
    ):
        return Fetched(response.status, dict(response.headers), await response.read())


def with_query(url: str, **changes: str) -> str:
    """``url`` with some query parameters replaced (the rest kept, in order)."""
    parts = urlsplit(url)
    query = {key: values[0] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def tampered(signature: str) -> str:
    """The signature with its first character changed (always a different one)."""
    return ("A" if signature[0] != "A" else "B") + signature[1:]


def sas_fields(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


class RequestLog:
    """A ``raw_request_hook`` recording each HTTP request the SDK sends (method and URL)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def __call__(self, request: PipelineRequest[Any]) -> None:
        self.requests.append((request.http_request.method, request.http_request.url))

    def count(self, method: str, query_part: str) -> int:
        return sum(1 for m, url in self.requests if m == method and query_part in url)


async def upload_wav(
    store: BlobStore, blob_name: str, wav: bytes, *, download_name: str, metadata: dict[str, str]
) -> None:
    """Store a whole WAV file the way narrations are stored: its PCM staged, the header
    written by the store's WAV writer at commit."""
    writer = store.wav_writer(blob_name)
    await writer.stage(0, wav[44:])
    await writer.commit(download_name=download_name, metadata=metadata)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- account-key SAS (connection string) -------------------------------------------------


async def test_uploaded_wav_downloads_through_the_link(blob_store: BlobStore) -> None:
    await upload_wav(
        blob_store,
        "2026/episode one.wav",
        WAV,
        download_name="Café – épisode 1.wav",
        metadata={"voice": "marin", "title": "Crème brûlée", "characters": "120"},
    )
    before = datetime.now(UTC)
    url, expires_at = await blob_store.read_url("2026/episode one.wav", expires_in=HOUR)

    assert before + HOUR - timedelta(seconds=2) <= expires_at <= datetime.now(UTC) + HOUR
    assert expires_at.tzinfo is not None
    assert expires_at.microsecond == 0
    fields = sas_fields(url)
    assert fields["sp"] == "r"
    assert fields["sr"] == "b"
    assert datetime.fromisoformat(fields["se"]) == expires_at
    assert datetime.fromisoformat(fields["st"]) <= before - timedelta(minutes=14)
    assert ACCOUNT_KEY not in unquote(url)

    got = await fetch(url)
    assert got.status == 200
    assert got.body == WAV
    assert got.headers["Content-Type"] == "audio/wav"
    disposition = got.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="Cafe ')
    assert "filename*=UTF-8''Caf%C3%A9%20%E2%80%93%20%C3%A9pisode%201.wav" in disposition
    assert unquote(got.headers["x-ms-meta-title"]) == "Crème brûlée"
    assert got.headers["x-ms-meta-voice"] == "marin"


async def test_link_cannot_write_list_or_delete(blob_store: BlobStore, azurite: AzuriteServer) -> None:
    await upload_wav(blob_store, "a.wav", WAV, download_name="a.wav", metadata={})
    url, _ = await blob_store.read_url("a.wav", expires_in=HOUR)
    sas = urlsplit(url).query

    overwrite = await fetch(url, method="PUT", data=b"evil", headers={"x-ms-blob-type": "BlockBlob"})
    other_blob = url.replace("/a.wav?", "/b.wav?")
    create = await fetch(other_blob, method="PUT", data=b"evil", headers={"x-ms-blob-type": "BlockBlob"})
    listing = await fetch(f"{azurite.blob_endpoint}/{blob_store.container}?restype=container&comp=list&{sas}")
    delete = await fetch(url, method="DELETE")

    assert (overwrite.status, create.status, listing.status, delete.status) == (403, 403, 403, 403)
    assert (await fetch(url)).body == WAV
    assert not await blob_store.exists("b.wav")


async def test_tampered_link_is_refused(blob_store: BlobStore) -> None:
    await upload_wav(blob_store, "a.wav", WAV, download_name="a.wav", metadata={})
    url, _ = await blob_store.read_url("a.wav", expires_in=HOUR)
    signature = sas_fields(url)["sig"]
    assert (await fetch(with_query(url, sig=tampered(signature)))).status == 403
    assert (await fetch(with_query(url, sp="rw"))).status == 403
    assert (await fetch(url.replace("/a.wav?", "/other.wav?"))).status == 403
    assert (await fetch(url)).status == 200


async def test_expired_link_is_refused(blob_store: BlobStore) -> None:
    await upload_wav(blob_store, "a.wav", WAV, download_name="a.wav", metadata={})
    url, expires_at = await blob_store.read_url("a.wav", expires_in=timedelta(seconds=1))
    await asyncio.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 1.5)

    refused = await fetch(url)
    assert refused.status == 403
    assert refused.body != WAV
    fresh, _ = await blob_store.read_url("a.wav", expires_in=HOUR)
    assert (await fetch(fresh)).status == 200


async def test_read_url_rejects_non_positive_lifetimes(blob_store: BlobStore) -> None:
    with pytest.raises(ValueError, match="positive"):
        await blob_store.read_url("a.wav", expires_in=timedelta(0))


async def test_json_documents_round_trip(blob_store: BlobStore) -> None:
    document = {"status": "succeeded", "transcript": "Grüße, 世界", "seconds": 1.5, "parts": [1, 2]}
    await blob_store.upload_json("jobs/1.json", document)

    assert await blob_store.read_json("jobs/1.json") == document
    assert await blob_store.read_json("jobs/missing.json") is None
    url, _ = await blob_store.read_url("jobs/1.json", expires_in=HOUR)
    got = await fetch(url)
    assert got.headers["Content-Type"] == "application/json; charset=utf-8"
    assert got.body.decode("utf-8").count("世界") == 1


async def test_read_json_refuses_non_objects(blob_store: BlobStore) -> None:
    await upload_wav(blob_store, "not-json.wav", WAV, download_name="x.wav", metadata={})
    with pytest.raises(StorageError, match="not valid JSON"):
        await blob_store.read_json("not-json.wav")


async def test_exists_and_delete_if_exists(blob_store: BlobStore) -> None:
    assert not await blob_store.exists("gone.wav")  # the container does not even exist yet
    await blob_store.delete_if_exists("gone.wav")

    await upload_wav(blob_store, "gone.wav", WAV, download_name="gone.wav", metadata={})
    assert await blob_store.exists("gone.wav")
    await blob_store.delete_if_exists("gone.wav")
    assert not await blob_store.exists("gone.wav")
    await blob_store.delete_if_exists("gone.wav")


async def test_upload_replaces_an_existing_blob(blob_store: BlobStore) -> None:
    await upload_wav(
        blob_store, "same.wav", pcm_to_wav(b"old!"), download_name="old.wav", metadata={"v": "1"}
    )
    await upload_wav(blob_store, "same.wav", WAV, download_name="new.wav", metadata={"v": "2"})
    got = await fetch((await blob_store.read_url("same.wav", expires_in=HOUR))[0])
    assert got.body == WAV
    assert got.headers["x-ms-meta-v"] == "2"
    assert 'filename="new.wav"' in got.headers["Content-Disposition"]


async def test_container_is_created_once_and_again_after_deletion(
    storage_settings: StorageSettings, azurite: AzuriteServer
) -> None:
    log = RequestLog()
    store = BlobStore.from_settings(storage_settings, options=FAST_FAILING, raw_request_hook=log)
    try:
        await store.ensure_container()
        await store.ensure_container()
        await upload_wav(store, "one.wav", WAV, download_name="one.wav", metadata={})
        assert log.count("PUT", "restype=container") == 1

        with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
            service.delete_container(storage_settings.output_container)
            await upload_wav(store, "two.wav", WAV, download_name="two.wav", metadata={})
            names = [b.name for b in service.get_container_client(store.container).list_blobs()]
        assert names == ["two.wav"]
        assert log.count("PUT", "restype=container") == 2
    finally:
        await store.close()


async def test_invalid_metadata_keys_are_rejected_and_nothing_is_stored(blob_store: BlobStore) -> None:
    with pytest.raises(ValueError, match="metadata key"):
        await upload_wav(blob_store, "x.wav", WAV, download_name="x.wav", metadata={"bad-key": "v"})
    assert not await blob_store.exists("x.wav")


@pytest.mark.parametrize(
    ("download_name", "expected"),
    [
        ("episode.wav", 'attachment; filename="episode.wav"'),
        ('say "hi"\\.wav', "attachment; filename=\"say _hi__.wav\"; filename*=UTF-8''say%20%22hi%22_.wav"),
        ("日本.wav", "attachment; filename=\"narration.wav\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.wav"),
        ("", 'attachment; filename="narration.wav"'),
        ("a\r\nb.wav", 'attachment; filename="ab.wav"'),
    ],
)
def test_content_disposition(download_name: str, expected: str) -> None:
    assert content_disposition(download_name) == expected


# --- errors -----------------------------------------------------------------------------


async def test_unreachable_storage_is_a_transient_error_within_seconds(container_name: str) -> None:
    port = closed_port()
    connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    store = BlobStore.from_settings(
        StorageSettings(connection_string=connection_string, output_container=container_name),
        options=FAST_FAILING,
    )
    try:
        for attempt in (
            store.ensure_container(),
            upload_wav(store, "a.wav", WAV, download_name="a.wav", metadata={}),
            store.exists("a.wav"),
        ):
            started = time.monotonic()
            with pytest.raises(StorageUnavailableError) as caught:
                await attempt
            assert time.monotonic() - started < 3
            error = caught.value
            assert error.transient
            assert error.http_status == 503
            assert error.retry_after is not None
            assert error.retry_after > 0
            assert ACCOUNT_KEY not in str(error)
    finally:
        await store.close()


async def test_default_options_also_fail_fast_when_unreachable(container_name: str) -> None:
    connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{closed_port()}/devstoreaccount1;"
    )
    store = BlobStore.from_settings(
        StorageSettings(connection_string=connection_string, output_container=container_name)
    )
    started = time.monotonic()
    try:
        with pytest.raises(StorageUnavailableError):
            await store.exists("a.wav")
    finally:
        await store.close()
    assert time.monotonic() - started < 5  # two retries, at most 3 s of back-off


async def test_storage_that_stops_fails_transiently_and_recovers(
    throwaway_azurite: AzuriteServer, container_name: str
) -> None:
    settings = StorageSettings(
        connection_string=throwaway_azurite.connection_string, output_container=container_name
    )
    store = BlobStore.from_settings(settings, options=FAST_FAILING)
    try:
        await upload_wav(store, "before.wav", WAV, download_name="before.wav", metadata={})
        throwaway_azurite.stop()

        started = time.monotonic()
        with pytest.raises(StorageUnavailableError):
            await upload_wav(store, "during.wav", WAV, download_name="during.wav", metadata={})
        with pytest.raises(StorageUnavailableError):
            await store.exists("before.wav")
        assert time.monotonic() - started < 6

        throwaway_azurite.start()  # same address, empty (in memory)
        assert not await store.exists("during.wav")
        await upload_wav(store, "after.wav", WAV, download_name="after.wav", metadata={})
        url, _ = await store.read_url("after.wav", expires_in=HOUR)
        assert (await fetch(url)).body == WAV
        assert not await store.exists("during.wav")
    finally:
        await store.close()


async def test_wrong_account_key_names_the_missing_role(azurite: AzuriteServer, container_name: str) -> None:
    wrong_key = "d3Jvbmcga2V5IGZvciB0ZXN0cw=="
    store = BlobStore.from_settings(
        StorageSettings(
            connection_string=azurite.connection_string.replace(ACCOUNT_KEY, wrong_key),
            output_container=container_name,
        ),
        options=FAST_FAILING,
    )
    try:
        with pytest.raises(StorageError) as caught:
            await store.ensure_container()
    finally:
        await store.close()
    error = caught.value
    assert not isinstance(error, StorageUnavailableError)
    assert "403" in error.message
    assert "Storage Blob Data Contributor" in error.message
    assert wrong_key not in error.message


def test_malformed_connection_string_does_not_echo_it() -> None:
    secret = "AccountKey=c2VjcmV0;NoEquals"
    with pytest.raises(StorageError, match="malformed") as caught:
        BlobStore.from_settings(StorageSettings(connection_string=secret))
    assert "c2VjcmV0" not in str(caught.value)


# --- user-delegation SAS (token credential over HTTPS) -----------------------------------


def oauth_store(
    server: AzuriteServer, credential: FakeTokenCredential, container: str, **kwargs: Any
) -> BlobStore:
    assert server.tls is not None
    return BlobStore.from_settings(
        StorageSettings(blob_service_uri=server.blob_endpoint, output_container=container),
        credential=credential,
        options=FAST_FAILING,
        connection_verify=str(server.tls.cert_path),
        **kwargs,
    )


async def test_user_delegation_link_works_and_key_is_reused(
    azurite_oauth: AzuriteServer, fake_token_credential: FakeTokenCredential, container_name: str
) -> None:
    assert azurite_oauth.tls is not None
    cafile = str(azurite_oauth.tls.cert_path)
    log = RequestLog()
    store = oauth_store(azurite_oauth, fake_token_credential, container_name, raw_request_hook=log)
    try:
        assert store.uses_user_delegation
        await store.ensure_container()
        await upload_wav(store, "ud.wav", WAV, download_name="ud.wav", metadata={"voice": "marin"})
        first, first_expiry = await store.read_url("ud.wav", expires_in=HOUR)
        second, _ = await store.read_url("ud.wav", expires_in=timedelta(minutes=5))

        assert log.count("POST", "comp=userdelegationkey") == 1
        fields = sas_fields(first)
        assert fields["skoid"] == fake_token_credential.object_id
        assert fields["sktid"] == fake_token_credential.tenant_id
        assert fields["spr"] == "https"
        assert fields["sp"] == "r"
        assert datetime.fromisoformat(fields["ske"]) >= first_expiry
        assert fake_token_credential.tokens_issued >= 1
        assert all(
            scope[0].startswith("https://storage.azure.com")
            for scope in fake_token_credential.scopes_requested
        )

        for url in (first, second):
            got = await fetch(url, cafile=cafile)
            assert got.status == 200
            assert got.body == WAV
            assert got.headers["Content-Type"] == "audio/wav"
        assert (await fetch(with_query(first, sig=tampered(fields["sig"])), cafile=cafile)).status == 403
        assert (
            await fetch(
                first, method="PUT", data=b"x", headers={"x-ms-blob-type": "BlockBlob"}, cafile=cafile
            )
        ).status == 403

        # A link that would outlive the cached key gets a new key that covers it.
        long_url, long_expiry = await store.read_url("ud.wav", expires_in=timedelta(days=3))
        assert log.count("POST", "comp=userdelegationkey") == 2
        assert datetime.fromisoformat(sas_fields(long_url)["ske"]) >= long_expiry
        assert (await fetch(long_url, cafile=cafile)).status == 200

        with pytest.raises(ValueError, match="7 days"):
            await store.read_url("ud.wav", expires_in=timedelta(days=8))
    finally:
        await store.close()
    assert not fake_token_credential.closed  # the caller's credential stays the caller's


async def test_user_delegation_key_is_refreshed_before_it_expires(
    azurite_oauth: AzuriteServer, fake_token_credential: FakeTokenCredential, container_name: str
) -> None:
    assert azurite_oauth.tls is not None
    log = RequestLog()
    store = oauth_store(
        azurite_oauth,
        fake_token_credential,
        container_name,
        raw_request_hook=log,
        delegation_key_lifetime=timedelta(seconds=6),
        delegation_key_refresh_margin=timedelta(seconds=4),
    )
    try:
        await upload_wav(store, "r.wav", WAV, download_name="r.wav", metadata={})
        first, _ = await store.read_url("r.wav", expires_in=timedelta(seconds=1))
        await store.read_url("r.wav", expires_in=timedelta(seconds=1))
        assert log.count("POST", "comp=userdelegationkey") == 1

        await asyncio.sleep(2.5)  # the key now expires within the 4 s margin
        refreshed, _ = await store.read_url("r.wav", expires_in=timedelta(seconds=30))
        assert log.count("POST", "comp=userdelegationkey") == 2
        assert sas_fields(refreshed)["ske"] != sas_fields(first)["ske"]
        got = await fetch(refreshed, cafile=str(azurite_oauth.tls.cert_path))
        assert got.status == 200
        assert got.body == WAV
    finally:
        await store.close()


async def test_rejected_token_names_the_missing_roles(
    azurite_oauth: AzuriteServer, container_name: str
) -> None:
    foreign = FakeTokenCredential(audience="https://vault.azure.net")
    store = oauth_store(azurite_oauth, foreign, container_name)
    try:
        with pytest.raises(StorageError) as on_data:
            await store.ensure_container()
        with pytest.raises(StorageError) as on_key:
            await store.read_url("x.wav", expires_in=HOUR)
    finally:
        await store.close()
    assert not isinstance(on_data.value, StorageUnavailableError)
    assert "Storage Blob Data Contributor" in on_data.value.message
    assert "generateUserDelegationKey" in on_key.value.message
    assert "eyJ" not in on_data.value.message + on_key.value.message  # no token


async def test_account_key_store_does_not_use_user_delegation(blob_store: BlobStore) -> None:
    assert not blob_store.uses_user_delegation
