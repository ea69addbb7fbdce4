"""Storage helpers for tests: what is in a container, plain HTTP to SAS links, client options.

The HTTP helper uses only :mod:`urllib` (no Azure SDK), so a link is fetched exactly as a
browser or Power Automate would fetch it.
"""

from __future__ import annotations

import urllib.error
import urllib.request

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
