"""Shared fixtures: real Azurite emulators (plain and OAuth over HTTPS) and per-test names.

Azurite comes from ``npm ci`` (``scripts/setup.sh``). Without it, tests that need it are
skipped with that hint, except under CI (``CI`` set), where a missing emulator is an
install bug and fails them.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from emulator import RealtimeEmulator
from podcast.services.jobs import close_jobs
from podcast.services.pipeline import close_service
from podcast.settings import StorageSettings
from podcast.storage.blobs import BlobClientOptions, BlobStore, reset_store
from testkit.azurite import (
    AzuriteNotInstalledError,
    AzuriteServer,
    TlsFiles,
    azurite_executable,
    make_self_signed_cert,
)
from testkit.credentials import FakeTokenCredential

FAST_FAILING = BlobClientOptions(
    retry_total=1, first_backoff_seconds=0.2, connection_timeout=2.0, read_timeout=20.0
)
"""Client options for tests: an unreachable Storage fails in about a second."""


def _require_azurite() -> Path:
    try:
        return azurite_executable()
    except AzuriteNotInstalledError as exc:
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false"):
            pytest.fail(f"{exc} (CI must install it)")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    """A session-wide Azurite (HTTP, shared key) on free loopback ports.

    Yields the running :class:`AzuriteServer` (``connection_string``, ``blob_endpoint``,
    ``queue_endpoint``, ``table_endpoint``). Tests must not stop it: use
    ``throwaway_azurite`` for that.
    """
    server = AzuriteServer(tmp_path_factory.mktemp("azurite"), executable=_require_azurite())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def throwaway_azurite(tmp_path: Path) -> Iterator[AzuriteServer]:
    """An Azurite of this test's own, which the test may ``stop()`` and ``start()`` again
    (same ports; in memory, so it comes back empty)."""
    server = AzuriteServer(tmp_path / "azurite", executable=_require_azurite())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azurite_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate and key for 127.0.0.1 (trust it with ``cafile=cert_path``)."""
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def azurite_oauth(tmp_path_factory: pytest.TempPathFactory, azurite_tls: TlsFiles) -> Iterator[AzuriteServer]:
    """A session-wide Azurite over HTTPS with ``--oauth basic``: Bearer tokens from
    :class:`FakeTokenCredential` work, and so do user delegation keys.

    ``server.tls.cert_path`` is the CA file clients must trust (``connection_verify=``).
    """
    server = AzuriteServer(
        tmp_path_factory.mktemp("azurite-oauth"), tls=azurite_tls, oauth=True, executable=_require_azurite()
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_token_credential() -> FakeTokenCredential:
    """A fresh async credential issuing unsigned storage tokens (its own tenant and object id)."""
    return FakeTokenCredential()


@pytest.fixture
def container_name() -> str:
    """A container name no other test uses."""
    return f"test-{uuid.uuid4().hex[:20]}"


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


@pytest.fixture(autouse=True)
def _forget_process_store() -> Iterator[None]:
    """No test sees the process-wide store another test (and event loop) created."""
    reset_store()
    yield
    reset_store()


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
    test's own; the process-wide service is closed afterwards."""
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
    await close_service()
    await close_jobs()


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
    await close_jobs()
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
