"""Shared fixtures and the test layers.

The tests are in three directories, each marked by :func:`pytest_collection_modifyitems`:

* ``tests/unit``: pure functions and in-process logic. No Azurite, no emulator server, no
  network (``tests/unit/conftest.py`` refuses connections): ``pytest tests/unit`` (or
  ``-m unit``) runs in seconds offline;
* ``tests/integration``: the package and ``function_app`` against Azurite and/or the
  Realtime emulator (fixtures in ``tests/integration/conftest.py``);
* ``tests/e2e``: the slow end-to-end checks (espeak-ng speech heard by Whisper).

This file holds what more than one layer needs: the real Azurite emulators (plain and OAuth
over HTTPS), per-test names, and the reset of the process-wide store. Azurite comes from
``npm ci`` (``scripts/setup.sh``). Without it, tests that need it are skipped with that
hint, except under CI (``CI`` set), where a missing emulator is an install bug and fails
them. Every test that uses an Azurite fixture is marked ``azurite``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import function_app
from testkit.azurite import (
    AzuriteNotInstalledError,
    AzuriteServer,
    TlsFiles,
    azurite_executable,
    make_self_signed_cert,
)

TESTS = Path(__file__).resolve().parent
LAYERS = ("unit", "integration", "e2e")
AZURITE_FIXTURES = frozenset({"azurite", "throwaway_azurite", "azurite_oauth"})
"""Fixtures that start Azurite (directly; fixtures built on them are seen through ``fixturenames``)."""
SERVICE_FIXTURES = AZURITE_FIXTURES | {"azurite_tls", "emulator", "emulator_server", "espeak_emulator"}
"""Fixtures a unit test must not use: they start a server or write certificates."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its layer (``unit``, ``integration``, ``e2e``) and ``azurite``
    when it needs Azurite; a unit test that asks for a server is a usage error."""
    misplaced: list[str] = []
    for item in items:
        try:
            layer = item.path.resolve().relative_to(TESTS).parts[0]
        except ValueError:
            continue
        if layer in LAYERS:
            item.add_marker(getattr(pytest.mark, layer))
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & AZURITE_FIXTURES:
            item.add_marker(pytest.mark.azurite)
        if layer == "unit" and fixtures & SERVICE_FIXTURES:
            misplaced.append(f"{item.nodeid} uses {sorted(fixtures & SERVICE_FIXTURES)}")
    if misplaced:
        raise pytest.UsageError(
            "unit tests must not need Azurite or an emulator (move them to tests/integration):\n"
            + "\n".join(misplaced)
        )


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
def container_name() -> str:
    """A container name no other test uses."""
    return f"test-{uuid.uuid4().hex[:20]}"


@pytest.fixture(autouse=True)
def _forget_the_apps_object_graph() -> Iterator[None]:
    """No test sees the object graph (clients, settings) another test and event loop made."""
    function_app.graph.forget()
    yield
    function_app.graph.forget()
