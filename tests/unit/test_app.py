"""The object graph's promises (:mod:`podcast.app`), offline: building a client sends nothing.

One credential for every Entra ID client, one ``BlobServiceClient`` for every container,
exactly one ``DefaultAzureCredential`` (with the configured client id) when none is
injected, ``aclose`` closing what the app made once and nothing it was given, missing
settings named when (and only when) the part that needs them is asked for, and
:class:`AppHolder`'s one app per running event loop, and the narration stack left out of
garbage collection once.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue.aio import QueueClient

import podcast.storage.azure
from podcast.app import App, AppHolder
from podcast.engine.realtime import Narrator
from podcast.errors import ConfigurationError
from podcast.settings import Settings
from testkit.credentials import FakeTokenCredential, token_claims

CLIENT_ID = "0f6b6c8e-3c5d-4b8e-9a59-5b3f0e1d2c4a"
COGNITIVE_SERVICES = "https://cognitiveservices.azure.com"
IDENTITY_ENV: dict[str, str] = {
    "AZURE_OPENAI_AUDIO_ENDPOINT": "https://example.openai.azure.com",
    "NARRATION_STORAGE__blobServiceUri": "https://account.blob.core.windows.net",
    "NARRATION_STORAGE__queueServiceUri": "https://account.queue.core.windows.net",
    "NARRATION_STORAGE__clientId": CLIENT_ID,
}
MANAGED_IDENTITY_ENV = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_TOKEN_CREDENTIALS",
    "AZURE_USERNAME",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
)


def identity_settings(**changes: str | None) -> Settings:
    """Identity-based Storage and Entra ID for Realtime (no API key); ``None`` drops a setting."""
    env = {**IDENTITY_ENV, **changes}
    return Settings.from_env({name: value for name, value in env.items() if value is not None})


@pytest.fixture(autouse=True)
def _no_ambient_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process's own identity variables must not choose the credential's path."""
    for name in MANAGED_IDENTITY_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def blob_services_made(monkeypatch: pytest.MonkeyPatch) -> list[BlobServiceClient]:
    """Every ``BlobServiceClient`` the app's Storage edge constructs from now on."""
    made: list[BlobServiceClient] = []

    class Counted(BlobServiceClient):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(podcast.storage.azure, "BlobServiceClient", Counted)
    return made


@pytest.fixture
def closes(monkeypatch: pytest.MonkeyPatch) -> Counter[int]:
    """How often ``close`` was awaited on each blob client, queue client, narrator and
    default credential, by ``id``."""
    counts: Counter[int] = Counter()
    for cls in (BlobServiceClient, QueueClient, Narrator, DefaultAzureCredential):
        original = cls.close

        async def close(self: Any, _original: Any = original) -> None:
            counts[id(self)] += 1
            await _original(self)

        monkeypatch.setattr(cls, "close", close)
    return counts


async def narrator_token(narrator: Narrator) -> str:
    """Call the narrator's bearer token provider once (what the OpenAI SDK does before each
    connection). The SDK keeps the provider privately; a fake credential needs no network."""
    provider = narrator._client._api_key_provider
    assert provider is not None, "without an API key the narrator must use a token provider"
    return await provider()


# --- One credential ------------------------------------------------------------------------------


async def test_every_entra_id_client_uses_the_one_injected_credential() -> None:
    credential = FakeTokenCredential()
    app = App(identity_settings(), credential=credential)
    try:
        assert app.credential is credential
        assert app.blob_service.credential is credential
        assert app.queue_client.credential is credential

        token = await narrator_token(app.narrator)
        assert credential.scopes_requested == [(f"{COGNITIVE_SERVICES}/.default",)]
        claims = token_claims(token)
        assert (claims["aud"], claims["oid"]) == (COGNITIVE_SERVICES, credential.object_id)
    finally:
        await app.aclose()


async def test_one_blob_service_client_serves_the_outputs_the_job_documents_and_the_reuse_cache(
    blob_services_made: list[BlobServiceClient],
) -> None:
    app = App(identity_settings(), credential=FakeTokenCredential())
    try:
        outputs, documents, reuse = app.outputs, app.job_documents, app.reuse
        app.narrations, app.jobs, app.documents  # noqa: B018 - every service, built
        assert blob_services_made == [app.blob_service]
        service = app.blob_service
        assert outputs._service is service  # the store's client is not public
        jobs_container = documents._container.client
        assert jobs_container.url == f"{service.url.rstrip('/')}/{app.settings.jobs.jobs_container}"
        assert jobs_container.credential is service.credential
        assert reuse.outputs is outputs
        assert reuse.documents is documents
    finally:
        await app.aclose()


async def test_without_an_injected_credential_one_default_credential_with_the_client_id_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[DefaultAzureCredential] = []

    class Counted(DefaultAzureCredential):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            made.append(self)

    # The app imports the class where it builds the credential, so patching the module works.
    monkeypatch.setattr("azure.identity.aio.DefaultAzureCredential", Counted)
    app = App(identity_settings())
    try:
        app.blob_service, app.queue_client, app.narrator  # noqa: B018 - every Entra ID client
        app.narrations, app.jobs, app.documents  # noqa: B018 - and every service
        assert len(made) == 1
        (credential,) = made
        assert app.credential is credential
        assert app.blob_service.credential is credential
        assert app.queue_client.credential is credential

        # azure-identity exposes neither the chain's managed identity nor its client id; the
        # private attributes are the only way to see which identity the app would ask for
        # without asking (which needs a token endpoint: tests/integration/test_managed_identity.py).
        identities = [c for c in credential.credentials if isinstance(c, ManagedIdentityCredential)]
        assert len(identities) == 1
        inner = identities[0]._credential  # the IMDS credential here (no IDENTITY_ENDPOINT)
        assert inner is not None
        assert inner._client._identity_config == {"client_id": CLIENT_ID}  # type: ignore[attr-defined]
    finally:
        await app.aclose()


def test_azure_client_id_names_the_identity_when_storage_names_none() -> None:
    settings = identity_settings(NARRATION_STORAGE__clientId=None, AZURE_CLIENT_ID=CLIENT_ID)
    assert settings.client_id == CLIENT_ID
    assert settings.storage.client_id == CLIENT_ID


# --- aclose --------------------------------------------------------------------------------------


async def test_aclose_closes_what_the_app_made_once_and_never_an_injected_credential(
    closes: Counter[int],
) -> None:
    credential = FakeTokenCredential()
    app = App(identity_settings(), credential=credential)
    made = [app.blob_service, app.queue_client, app.narrator]
    app.narrations, app.jobs, app.documents  # noqa: B018 - services own no clients

    await app.aclose()
    await app.aclose()

    assert {id(part): closes[id(part)] for part in made} == {id(part): 1 for part in made}
    assert sum(closes.values()) == len(made)
    assert not credential.closed


async def test_aclose_closes_the_default_credential_it_made(
    closes: Counter[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = App(identity_settings())
    made = [app.blob_service, app.credential]
    await app.aclose()
    await app.aclose()
    assert {id(part): closes[id(part)] for part in made} == {id(part): 1 for part in made}


async def test_an_app_that_built_nothing_closes_nothing(closes: Counter[int]) -> None:
    await App(identity_settings()).aclose()
    assert not closes


# --- Missing settings, named when needed ---------------------------------------------------------


async def test_a_missing_endpoint_is_named_before_any_storage_client_is_made(
    blob_services_made: list[BlobServiceClient],
) -> None:
    app = App(identity_settings(AZURE_OPENAI_AUDIO_ENDPOINT=None), credential=FakeTokenCredential())
    try:
        with pytest.raises(ConfigurationError) as raised:
            app.narrations  # noqa: B018
        assert raised.value.setting == "AZURE_OPENAI_AUDIO_ENDPOINT"
        assert "AZURE_OPENAI_AUDIO_ENDPOINT" in str(raised.value)
        assert blob_services_made == []
        assert {"blob_service", "queue_client", "outputs", "job_documents"}.isdisjoint(vars(app))
    finally:
        await app.aclose()


async def test_a_missing_queue_uri_is_named_only_when_the_queue_is_needed(
    blob_services_made: list[BlobServiceClient],
) -> None:
    app = App(identity_settings(NARRATION_STORAGE__queueServiceUri=None), credential=FakeTokenCredential())
    try:
        app.narrations, app.documents, app.reuse  # noqa: B018 - synchronous narration needs no queue
        assert len(blob_services_made) == 1
        for part in ("jobs", "job_queue", "queue_client"):
            with pytest.raises(ConfigurationError) as raised:
                getattr(app, part)
            assert raised.value.setting == "NARRATION_STORAGE__queueServiceUri", part
    finally:
        await app.aclose()


# --- AppHolder -----------------------------------------------------------------------------------


class Factory:
    """Makes apps (from identity settings, with a fake credential) and remembers them."""

    def __init__(self) -> None:
        self.made: list[App] = []

    def __call__(self) -> App:
        app = App(identity_settings(), credential=FakeTokenCredential())
        self.made.append(app)
        return app


def test_the_holder_keeps_one_app_per_running_loop(closes: Counter[int]) -> None:
    factory = Factory()
    holder = AppHolder(factory)

    async def twice() -> tuple[App, App]:
        first = holder.get()
        await asyncio.sleep(0)
        return first, holder.get()

    first, again = asyncio.run(twice())
    assert first is again
    second, _ = asyncio.run(twice())
    assert second is not first
    assert factory.made == [first, second]


def test_the_holder_closes_an_app_only_from_the_loop_that_made_it(closes: Counter[int]) -> None:
    holder = AppHolder(Factory())

    async def make() -> App:
        app = holder.get()
        app.blob_service  # noqa: B018 - something to close
        return app

    async def make_and_close() -> App:
        app = await make()
        await holder.aclose()
        return app

    closed = asyncio.run(make_and_close())
    assert closes[id(closed.blob_service)] == 1

    abandoned = asyncio.run(make())

    async def close_elsewhere() -> App:
        await holder.aclose()  # another loop: forget the app, do not close it
        return holder.get()

    fresh = asyncio.run(close_elsewhere())
    assert closes[id(abandoned.blob_service)] == 0
    assert fresh is not abandoned


def test_the_holder_refuses_outside_a_running_loop() -> None:
    holder = AppHolder(Factory())
    with pytest.raises(RuntimeError):
        holder.get()


async def test_use_replaces_the_factory_and_forgets_the_current_app() -> None:
    holder = AppHolder(Factory())
    old = holder.get()
    other = Factory()
    holder.use(other)
    new = holder.get()
    assert new is not old
    assert other.made == [new]
    assert holder.get() is new


# --- Long-lived objects left out of garbage collection ---------------------------------------------

FREEZE_PROBE = """
import asyncio, gc, json, sys
from podcast.app import App
from podcast.settings import Settings

settings = Settings.from_env({
    "AZURE_OPENAI_AUDIO_ENDPOINT": "https://example.openai.azure.com",
    "AZURE_OPENAI_AUDIO_API_KEY": "key",
    "NARRATION_STORAGE": "UseDevelopmentStorage=true",
})
before = gc.get_freeze_count()

async def build() -> tuple[int, int]:
    first = App(settings)
    first.narrations
    frozen = gc.get_freeze_count()
    second = App(settings)
    second.narrations
    again = gc.get_freeze_count()
    await first.aclose()
    await second.aclose()
    return frozen, again

frozen, again = asyncio.run(build())

class Cycle:
    pass

made = Cycle()
made.me = made
del made
print(json.dumps({"before": before, "frozen": frozen, "again": again,
                  "collected": gc.collect(), "numpy": "numpy" in sys.modules}))
"""


def test_the_narration_stack_is_left_out_of_garbage_collection_once() -> None:
    """Building the narration service freezes what the process holds (its modules, classes
    and functions) once: a second app freezes nothing more, and what is made later is
    still collected."""
    done = subprocess.run(
        [sys.executable, "-c", FREEZE_PROBE],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe["numpy"], "the narration service imports the audio stack"
    assert probe["before"] == 0
    assert probe["frozen"] > 50_000, probe
    assert probe["again"] == probe["frozen"], "frozen once per process"
    assert probe["collected"] >= 2, "objects made later are still collected (the cycle and its dict)"
