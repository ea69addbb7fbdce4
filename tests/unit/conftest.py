"""Unit tests run offline: any attempt to open a network connection fails the test.

Unix sockets (the event loop's self-pipe) stay allowed; TCP and UDP connections do not, so
a test that needs Azurite, an emulator or the internet belongs in ``tests/integration``.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

NETWORK_FAMILIES = (socket.AF_INET, socket.AF_INET6)


class NetworkUseError(RuntimeError):
    """A unit test tried to reach the network."""


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse TCP/UDP connections (``connect``, ``connect_ex``, ``create_connection``)."""
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(original: Any) -> Any:
        def call(sock: socket.socket, address: Any) -> Any:
            if sock.family in NETWORK_FAMILIES:
                raise NetworkUseError(f"unit tests are offline: connection to {address!r} refused")
            return original(sock, address)

        return call

    monkeypatch.setattr(socket.socket, "connect", guarded(connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(connect_ex))
