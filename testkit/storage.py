"""Storage helpers for tests: what is in a container or a whole account, plain HTTP to SAS
links, client options, and a transport that makes Storage fail at a chosen moment.

The HTTP helper uses only :mod:`urllib` (no Azure SDK), so a link is fetched exactly as a
browser or Power Automate would fetch it.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from azure.core.pipeline.transport import AioHttpTransport, HttpRequest
from azure.storage.blob import BlobServiceClient

from podcast.storage.azure import BlobClientOptions
from testkit.azurite import AzuriteServer

FAST_FAILING = BlobClientOptions(
    retry_total=1, first_backoff_seconds=0.2, connection_timeout=2.0, read_timeout=20.0
)
"""Client options for tests: an unreachable Storage fails in about a second."""


def blobs_in(azurite: AzuriteServer, container: str) -> list[str]:
    """The names of the blobs in ``container``, sorted (empty if there is no such container)."""
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        container_client = service.get_container_client(container)
        if not container_client.exists():
            return []
        return sorted(b.name for b in container_client.list_blobs())


def http(
    method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    """One plain HTTP request: ``(status, body, headers with lower-case names)``; an HTTP
    error status is returned, not raised."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback Azurite
            return answer.status, answer.read(), {k.lower(): v for k, v in answer.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, error.read(), {k.lower(): v for k, v in error.headers.items()}


def http_get(url: str, *, timeout: float = 120.0) -> bytes:
    """The body of a plain ``GET`` of ``url`` (e.g. a SAS link); an error status raises."""
    with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - a SAS URL just made
        return bytes(answer.read())


# --- Every blob of an account, and Storage failures at chosen moments ---------------------------


def account_snapshot(service: BlobServiceClient) -> dict[str, dict[str, str]]:
    """Every container of the account and, in each, every blob's name and ETag: compare one
    taken before an attack with one taken after to see whatever was written anywhere."""
    return {
        container.name: {
            blob.name: str(blob.etag) for blob in service.get_container_client(container.name).list_blobs()
        }
        for container in service.list_containers()
    }


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Predicate = Callable[[HttpRequest, int], bool]


@dataclass
class _Rule:
    matches: Predicate
    action: Callable[[], Awaitable[None]]


class ScriptedTransport(AioHttpTransport):  # type: ignore[misc]
    """The Storage SDK's own aiohttp transport, with failures and actions at chosen moments.

    Give it to a client (``transport=``; for the app, ``App(client_kwargs={"transport": t})``).
    Every request really goes to Storage, except the ones :meth:`fail_next` picks: those are
    sent to a closed loopback port, so they fail as a refused connection does, for real
    (the SDK retries them as it would). :meth:`after` runs an action once, right after the
    first response that matches (e.g. "the WAV commit succeeded"), before the SDK sees it.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._failing = 0
        self._rules: list[_Rule] = []
        self.failed = 0
        """Requests failed so far."""
        self.sent: list[tuple[str, str]] = []
        """Every request sent (method, URL), failed ones included."""
        self._closed_port = closed_port()

    def fail_next(self, count: int) -> None:
        """Make the next ``count`` requests fail (connection refused)."""
        self._failing = count

    def after(self, matches: Predicate, action: Callable[[], Awaitable[None]]) -> None:
        """Await ``action`` once, after the first response for which ``matches(request, status)``."""
        self._rules.append(_Rule(matches, action))

    async def send(self, request: HttpRequest, **kwargs: Any) -> Any:
        self.sent.append((request.method, request.url))
        if self._failing > 0:
            self._failing -= 1
            self.failed += 1
            original = request.url
            parts = urlsplit(original)
            request.url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{self._closed_port}"))
            try:
                return await super().send(request, **kwargs)
            finally:
                request.url = original
        response = await super().send(request, **kwargs)
        for rule in list(self._rules):
            if rule.matches(request, response.status_code):
                self._rules.remove(rule)
                await rule.action()
        return response


def is_wav_commit(request: HttpRequest, status: int) -> bool:
    """A successful Put Block List of a ``.wav`` blob (the WAV becomes visible)."""
    return (
        request.method == "PUT"
        and "comp=blocklist" in request.url
        and urlsplit(request.url).path.endswith(".wav")
        and status == 201
    )


def is_block_staged(request: HttpRequest, status: int) -> bool:
    """A successful Put Block (a segment's audio staged, before any commit)."""
    return request.method == "PUT" and "comp=block&" in request.url + "&" and status == 201
