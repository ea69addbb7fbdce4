"""Fixtures for the integration tests: the Realtime emulator, app settings pointing at it
and Azurite, stores on the session Azurite, job queues and fake token credentials.

The Azurite servers themselves come from ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

import function_app
from emulator import RealtimeEmulator
from podcast.settings import StorageSettings
from podcast.storage.blobs import BlobStore
from testkit.azurite import AzuriteServer
from testkit.credentials import FakeTokenCredential
from testkit.storage import FAST_FAILING


@pytest.fixture
def fake_token_credential() -> FakeTokenCredential:
    """A fresh async credential issuing unsigned storage tokens (its own tenant and object id)."""
    return FakeTokenCredential()


# --- Storage -----------------------------------------------------------------------------------


@pytest.fixture
def storage_settings(azurite: AzuriteServer, container_name: str) -> Iterator[StorageSettings]:
    """Settings for the session Azurite with this test's own output container,
    which is deleted afterwards."""
    yield StorageSettings(connection_string=azurite.connection_string, output_container=container_name)
    with (
        BlobServiceClient.from_connection_string(azurite.connection_string) as service,
        contextlib.suppress(ResourceNotFoundError),
    ):
        service.delete_container(container_name)


@pytest.fixture
async def blob_store(storage_settings: StorageSettings) -> AsyncIterator[BlobStore]:
    """A :class:`BlobStore` on the session Azurite (account-key SAS), closed afterwards."""
    store = BlobStore.from_settings(storage_settings, options=FAST_FAILING)
    try:
        yield store
    finally:
        await store.close()


# --- The Realtime emulator and app settings --------------------------------------------------

EMULATOR_KEY = "emulator-key"


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[RealtimeEmulator]:
    """One Realtime API emulator for the session (synthetic speech: fast and deterministic)."""
    server = RealtimeEmulator(api_key=EMULATOR_KEY, engine="synthetic").start_in_thread()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def emulator(emulator_server: RealtimeEmulator) -> RealtimeEmulator:
    """The session emulator with no records and no faults left from other tests."""
    emulator_server.reset()
    return emulator_server


@pytest.fixture
async def app_env(
    monkeypatch: pytest.MonkeyPatch, emulator: RealtimeEmulator, azurite: AzuriteServer, container_name: str
) -> AsyncIterator[dict[str, str]]:
    """App settings pointing at the emulator and Azurite, with an output container of this
    test's own; the object graph of function_app is closed afterwards."""
    settings = {
        "AZURE_OPENAI_AUDIO_ENDPOINT": emulator.url,
        "AZURE_OPENAI_AUDIO_API_KEY": EMULATOR_KEY,
        "AZURE_OPENAI_AUDIO_MAX_RETRIES": "1",
        "AZURE_OPENAI_AUDIO_TIMEOUT_SECONDS": "5",
        "NARRATION_STORAGE": azurite.connection_string,
        "NARRATION_OUTPUT_CONTAINER": container_name,
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    yield settings
    await function_app.graph.aclose()


# --- Asynchronous narration jobs ----------------------------------------------------------------


@pytest.fixture
async def jobs_env(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, azurite: AzuriteServer, container_name: str
) -> AsyncIterator[dict[str, str]]:
    """``app_env`` plus a job queue of this test's own; the queue and the jobs container
    (``<output container>-jobs``) are deleted afterwards."""
    queue = f"jobs-{uuid.uuid4().hex[:16]}"
    monkeypatch.setenv("NARRATION_QUEUE", queue)
    yield {**app_env, "NARRATION_QUEUE": queue, "jobs_container": f"{container_name}-jobs"}
    await function_app.graph.aclose()
    with (
        QueueClient.from_connection_string(azurite.connection_string, queue) as client,
        contextlib.suppress(ResourceNotFoundError),
    ):
        client.delete_queue()
    with (
        BlobServiceClient.from_connection_string(azurite.connection_string) as service,
        contextlib.suppress(ResourceNotFoundError),
    ):
        service.delete_container(f"{container_name}-jobs")
