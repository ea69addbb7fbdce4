"""The managed-identity path end to end: no API key, no account key, no injected credential.

The app builds its own ``DefaultAzureCredential`` from the app settings, exactly as in
Azure; the only stand-ins are the peers: App Service's managed identity token endpoint
(:class:`testkit.identity.ManagedIdentityEndpoint`, reached through ``IDENTITY_ENDPOINT``
and ``IDENTITY_HEADER``), Azurite over HTTPS with ``--oauth basic`` (blob and queue) and the
Realtime emulator accepting only Entra ID tokens for Cognitive Services that the endpoint
issued.

Trust in Azurite's self-signed certificate: the Storage clients get ``connection_verify``
through ``App(client_kwargs=...)`` (``SSL_CERT_FILE`` cannot help: aiohttp builds its
verifying SSL context once, at import).
"""

from __future__ import annotations

import contextlib
import re
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

import function_app
from emulator import RealtimeEmulator
from podcast.app import App
from podcast.engine import audio
from podcast.settings import Settings
from testkit import host
from testkit.azurite import AzuriteServer
from testkit.credentials import FakeTokenCredential, token_claims
from testkit.identity import ManagedIdentityEndpoint

pytestmark = pytest.mark.azurite

CLIENT_ID = "7d1e9a52-4b8c-4f0e-b1a3-2c6d5e8f9a01"
"""The user-assigned identity the app settings name."""
OTHER_CLIENT_ID = "c3b2a190-8f7e-4d6c-a5b4-3e2d1c0b9a87"
"""Another identity of the same endpoint: a token for it would be the wrong identity's."""
STORAGE = "https://storage.azure.com"
COGNITIVE_SERVICES = "https://cognitiveservices.azure.com"
TEXT = "Welcome to the show. Today we talk about rivers, and why they bend the way they do."
ASYNC = {"Prefer": "respond-async"}
AMBIENT_IDENTITY = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_TOKEN_CREDENTIALS",
    "AZURE_USERNAME",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "AZURE_OPENAI_AUDIO_API_KEY",
    "NARRATION_STORAGE",
)
"""Settings that would pick another credential (or a key) than the managed identity."""


@dataclass(frozen=True)
class Deployment:
    """The app deployed with a managed identity, and its peers."""

    identity: ManagedIdentityEndpoint
    realtime: RealtimeEmulator
    azurite: AzuriteServer
    cafile: str
    container: str
    queue: str
    accepted_tokens: list[str]
    refused_tokens: list[str]

    def queue_client(self) -> QueueClient:
        """A synchronous client of the job queue for the test's host (its own fake identity)."""
        return QueueClient(
            self.azurite.queue_endpoint,
            self.queue,
            credential=FakeTokenCredential().sync(),
            connection_verify=self.cafile,
        )


@pytest.fixture
def identity() -> Iterator[ManagedIdentityEndpoint]:
    with ManagedIdentityEndpoint([CLIENT_ID, OTHER_CLIENT_ID]) as endpoint:
        yield endpoint


@pytest.fixture
async def deployment(
    monkeypatch: pytest.MonkeyPatch,
    identity: ManagedIdentityEndpoint,
    azurite_oauth: AzuriteServer,
    container_name: str,
) -> AsyncIterator[Deployment]:
    """App settings for a managed identity; the graph is closed and the container, jobs
    container and queue deleted afterwards."""
    assert azurite_oauth.tls is not None
    cafile = str(azurite_oauth.tls.cert_path)
    accepted: list[str] = []
    refused: list[str] = []

    def entra_id_for_cognitive_services(token: str) -> bool:
        ok = identity.issued(token) and token_claims(token).get("aud") == COGNITIVE_SERVICES
        (accepted if ok else refused).append(token)
        return ok

    # The emulator's key is one the app never has: only a token can get in.
    realtime = RealtimeEmulator(
        api_key=f"never-{uuid.uuid4().hex}",
        engine="synthetic",
        token_validator=entra_id_for_cognitive_services,
    ).start_in_thread()
    queue = f"jobs-{uuid.uuid4().hex[:16]}"
    for name in AMBIENT_IDENTITY:
        monkeypatch.delenv(name, raising=False)
    settings = {
        **identity.env,
        "AZURE_OPENAI_AUDIO_ENDPOINT": realtime.url,
        "AZURE_OPENAI_AUDIO_MAX_RETRIES": "1",
        "AZURE_OPENAI_AUDIO_TIMEOUT_SECONDS": "10",
        "NARRATION_STORAGE__blobServiceUri": azurite_oauth.blob_endpoint,
        "NARRATION_STORAGE__queueServiceUri": azurite_oauth.queue_endpoint,
        "NARRATION_STORAGE__clientId": CLIENT_ID,
        "NARRATION_OUTPUT_CONTAINER": container_name,
        "NARRATION_QUEUE": queue,
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)

    function_app.graph.use(lambda: App(Settings.from_env(), client_kwargs={"connection_verify": cafile}))
    try:
        yield Deployment(identity, realtime, azurite_oauth, cafile, container_name, queue, accepted, refused)
    finally:
        await function_app.graph.aclose()
        function_app.graph.use(App.from_env)
        realtime.stop()
        cleanup = FakeTokenCredential().sync()
        with BlobServiceClient(
            azurite_oauth.blob_endpoint, credential=cleanup, connection_verify=cafile
        ) as service:
            for container in (container_name, f"{container_name}-jobs"):
                with contextlib.suppress(ResourceNotFoundError):
                    service.delete_container(container)
        with (
            QueueClient(
                azurite_oauth.queue_endpoint, queue, credential=cleanup, connection_verify=cafile
            ) as client,
            contextlib.suppress(ResourceNotFoundError),
        ):
            client.delete_queue()


async def download(url: str, cafile: str) -> tuple[int, str, bytes]:
    """GET ``url`` as a browser would (no Azure SDK), trusting ``cafile``."""
    context = ssl.create_default_context(cafile=cafile)
    async with aiohttp.ClientSession() as session, session.get(url, ssl=context) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.read()


async def check_link(deployment: Deployment, body: dict[str, Any]) -> None:
    """The body's audio link is a user-delegation SAS of the managed identity that
    downloads a WAV over HTTPS."""
    url = body["audio_url"]
    assert url.startswith(f"https://127.0.0.1:{urlsplit(deployment.azurite.blob_endpoint).port}/")
    fields = {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
    assert fields["skoid"] == deployment.identity.object_ids[CLIENT_ID]
    assert fields["sktid"] == deployment.identity.tenant_id
    assert fields["spr"] == "https"
    assert fields["sp"] == "r"
    status, content_type, wav = await download(url, deployment.cafile)
    assert status == 200
    assert content_type == "audio/wav"
    info = audio.wav_info(wav)
    assert (info.sample_rate, info.sample_width, info.channels) == (24_000, 2, 1)
    assert info.duration_seconds == pytest.approx(body["duration_seconds"], abs=0.001)


def check_tokens(deployment: Deployment) -> None:
    """Both resources' tokens came from the endpoint, all for the configured identity;
    the emulator let in only those."""
    requests = deployment.identity.requests
    assert {request.resource for request in requests} == {STORAGE, COGNITIVE_SERVICES}
    assert {request.client_id for request in requests} == {CLIENT_ID}, "no other identity asked for"
    assert all(request.header_ok and request.status == 200 for request in requests), requests
    assert deployment.accepted_tokens, "the narration went through the Entra ID token"
    assert deployment.refused_tokens == []
    assert {token_claims(token)["oid"] for token in deployment.accepted_tokens} == {
        deployment.identity.object_ids[CLIENT_ID]
    }
    assert all(session.token_validated for session in deployment.realtime.sessions)


async def post(headers: dict[str, str] | None = None) -> host.HttpAnswer:
    return await host.call_http(
        function_app.create_narration,
        host.http_request("POST", "narrations", json={"text": TEXT}, headers=headers),
    )


async def test_a_narration_with_the_managed_identity_gets_every_token_from_the_identity_endpoint(
    deployment: Deployment,
) -> None:
    response = await post()

    assert response.status == 200, response.json()
    body = response.json()
    assert body["transcript"] == TEXT
    await check_link(deployment, body)
    check_tokens(deployment)
    assert deployment.realtime.sessions, "the Realtime emulator was used"


async def test_an_asynchronous_narration_goes_through_the_queue_with_the_managed_identity(
    deployment: Deployment,
) -> None:
    accepted = await post(ASYNC)
    assert accepted.status == 202, accepted.json()
    job_id = accepted.json()["id"]
    assert deployment.realtime.sessions == [], "nothing is narrated before the worker runs"

    with deployment.queue_client() as client:
        delivered = await host.deliver(function_app.narration_worker, client)
    assert delivered is not None, "the job was queued with the managed identity's token"
    assert delivered.message.get_body().decode() == job_id

    polled = await host.call_http(
        function_app.get_narration,
        host.http_request("GET", "narrations/{id}", url=accepted.headers["Location"]),
    )
    assert polled.status == 200, polled.json()
    body = polled.json()
    assert (body["id"], body["transcript"]) == (job_id, TEXT)
    await check_link(deployment, body)
    check_tokens(deployment)


@pytest.mark.parametrize("forced", [False, True], ids=["levels as set", "libraries forced to debug"])
async def test_no_token_or_identity_header_is_logged_on_the_managed_identity_path(
    deployment: Deployment, forced: bool
) -> None:
    """DefaultAzureCredential, azure-identity and MSAL at work, every logger captured at DEBUG
    (see tests/integration/test_log_secrets.py): no token, no IDENTITY_HEADER, no SAS
    signature and no text in any record."""
    from tests.integration.test_log_secrets import every_logger_at_debug, libraries_forced_to_debug

    function_app.graph.get()
    with (
        every_logger_at_debug() as capture,
        libraries_forced_to_debug() if forced else contextlib.nullcontext(),
    ):
        response = await post()
    assert response.status == 200, response.json()
    shown = capture.shown()

    if forced:
        assert any(r.name.startswith("azure.identity") for r in capture.records), "the identity logged"
    assert deployment.accepted_tokens
    for token in deployment.accepted_tokens:
        assert token not in shown
    assert re.search(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.", shown) is None, "no token of any kind"
    assert deployment.identity.header not in shown
    signature = parse_qs(urlsplit(response.json()["audio_url"]).query)["sig"][0]
    assert signature not in shown
    assert TEXT not in shown
    assert "rivers, and why they bend" not in shown
