"""The Azure Storage SDK at its edge: client construction, bounded retries, error mapping.

Every Storage client of the app (blob and queue) is built here from
:class:`~podcast.settings.StorageSettings` and, for identity-based connections, the app's
one token credential. Every Azure error is mapped here to
:class:`~podcast.errors.StorageError` (permanent) or
:class:`~podcast.errors.StorageUnavailableError` (transient), so nothing above this package
imports ``azure.core.exceptions``. Messages name the status and Storage error code, never
the SDK's own message (which can carry request details) or any key.
"""

from __future__ import annotations

import random
import urllib.request
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Final

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob.aio import BlobServiceClient, ExponentialRetry
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from podcast.errors import ConfigurationError, StorageError, StorageUnavailableError
from podcast.settings import STORAGE_SETTING, StorageSettings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

DEFAULT_RETRY_AFTER_SECONDS: Final = 5.0
"""``retry_after`` given with :class:`StorageUnavailableError` when Storage names none."""

_TRANSIENT_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
_DATA_ROLE_HINT: Final = (
    "the app's identity needs the 'Storage Blob Data Contributor' role on the storage account "
    "or container (a connection string needs a valid account key)"
)
_DELEGATION_ROLE_HINT: Final = (
    "creating a user delegation key needs the generateUserDelegationKey permission: give the "
    "app's identity 'Storage Blob Data Contributor' (or 'Storage Blob Delegator') at the "
    "storage account scope"
)


class _BoundedRetry(ExponentialRetry):
    """The storage SDK's retry policy with short, capped, jittered back-offs.

    The SDK's own exponential policy waits 15 s or more (at least ``2 ** retry`` s even with
    ``initial_backoff=0``); this one waits ``first_backoff * 2 ** (retry - 1)`` seconds,
    at most ``max_backoff``, jittered down to half of that.
    """

    def __init__(self, *, retry_total: int, first_backoff: float, max_backoff: float) -> None:
        super().__init__(initial_backoff=0, increment_base=2, retry_total=retry_total, random_jitter_range=0)
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        retry = max(1, int(settings.get("count", 1)))
        backoff = min(self.max_backoff, self.first_backoff * 2 ** (retry - 1))
        return random.uniform(backoff / 2, backoff)


@dataclass(frozen=True, slots=True)
class BlobClientOptions:
    """Network behaviour of the Azure SDK clients, kept bounded on purpose.

    With the defaults, an unreachable Storage account (connection refused) fails in about
    1.5 s: two retries after 0.5-1 s and 1-2 s, so at most 3 s of back-off in all.
    """

    retry_total: int = 2
    """Retries after the first attempt (connection errors, 408/429/5xx)."""
    first_backoff_seconds: float = 1.0
    """Wait before the first retry; each later retry waits twice as long (jittered)."""
    max_backoff_seconds: float = 8.0
    """Cap on any single wait."""
    connection_timeout: float = 5.0
    """Seconds to establish a connection."""
    read_timeout: float = 60.0
    """Seconds to wait for each read from an established connection."""
    environment_proxy: bool | None = None
    """Whether requests look up a proxy in the environment (``HTTPS_PROXY``, ``NO_PROXY``
    and the like); ``None``: when the environment names one as the client is built."""

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for a Storage client carrying these options."""
        return {
            "retry_policy": _BoundedRetry(
                retry_total=self.retry_total,
                first_backoff=self.first_backoff_seconds,
                max_backoff=self.max_backoff_seconds,
            ),
            "connection_timeout": self.connection_timeout,
            "read_timeout": self.read_timeout,
            # aiohttp looks the proxy up again for every request when asked to, in a thread
            # of its own, and ~/.netrc in another: about 0.7 ms of CPU a request, paid by
            # every staged block. The environment does not change while the app runs.
            "use_env_settings": self.looks_up_proxy(),
        }

    def looks_up_proxy(self) -> bool:
        """Whether requests look up a proxy in the environment (:attr:`environment_proxy`)."""
        return environment_names_a_proxy() if self.environment_proxy is None else self.environment_proxy


def environment_names_a_proxy() -> bool:
    """Whether the environment names a proxy for some scheme (as ``urllib`` reads it)."""
    return bool(urllib.request.getproxies_environment())


def blob_service_client(
    settings: StorageSettings,
    *,
    credential: AsyncTokenCredential | None,
    options: BlobClientOptions | None = None,
    **client_kwargs: Any,
) -> BlobServiceClient:
    """The one ``BlobServiceClient`` of ``settings``: account-key with a connection string,
    else a token client using ``credential`` (required then). ``client_kwargs`` go to the
    client as they are (e.g. ``connection_verify``)."""
    kwargs = {**(options or BlobClientOptions()).client_kwargs(), **client_kwargs}
    if settings.connection_string:
        try:
            return BlobServiceClient.from_connection_string(settings.connection_string, **kwargs)
        except ValueError:
            # The SDK's message can quote the connection string: never pass it on.
            raise StorageError("the storage connection string is malformed") from None
    if not settings.blob_service_uri:
        raise StorageError("StorageSettings has neither a connection string nor a blob service URI")
    if credential is None:
        raise StorageError("identity-based Storage needs a token credential")
    try:
        return BlobServiceClient(settings.blob_service_uri, credential=credential, **kwargs)
    except ValueError as exc:
        raise StorageError(f"the blob service URI cannot be used: {exc}") from None


def queue_client(
    settings: StorageSettings,
    queue_name: str,
    *,
    credential: AsyncTokenCredential | None,
    options: BlobClientOptions | None = None,
    **client_kwargs: Any,
) -> QueueClient:
    """The job queue's client: base64 messages (what the Functions queue trigger expects),
    with the same bounded retries as the blob client; ``client_kwargs`` go to the client as
    they are.

    Raises :class:`ConfigurationError` when identity-based Storage has no queue service URI.
    """
    options = options or BlobClientOptions()
    kwargs: dict[str, Any] = {
        "message_encode_policy": TextBase64EncodePolicy(),
        # The queue SDK's own exponential retry, short: after about 1 s and 3 s (default:
        # 15 s, 18 s, 24 s). Its policy classes are the queue package's, not the blob one's.
        "initial_backoff": 1,
        "increment_base": 2,
        "random_jitter_range": 1,
        "retry_total": options.retry_total,
        "connection_timeout": options.connection_timeout,
        "read_timeout": 30.0,
        "use_env_settings": options.looks_up_proxy(),
        **client_kwargs,
    }
    if settings.connection_string:
        try:
            return QueueClient.from_connection_string(settings.connection_string, queue_name, **kwargs)
        except ValueError:
            raise StorageError("the storage connection string is malformed") from None
    if settings.queue_service_uri:
        return QueueClient(settings.queue_service_uri, queue_name, credential=credential, **kwargs)
    raise ConfigurationError(
        f"{STORAGE_SETTING}__queueServiceUri",
        "is not set; asynchronous narrations need the queue service URI "
        "(https://<account>.queue.core.windows.net) with identity-based storage",
    )


def error_code(exc: AzureError) -> str | None:
    """The ``x-ms-error-code`` that the storage SDK attaches to its errors, if any."""
    code = getattr(exc, "error_code", None)
    if not code:
        return None
    return str(code.value) if isinstance(code, Enum) else str(code)


def _retry_after(exc: HttpResponseError) -> float | None:
    headers = getattr(exc.response, "headers", None) or {}
    raw = headers.get("Retry-After")
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None


def storage_error(exc: AzureError, action: str, *, delegation: bool = False) -> StorageError:
    """Map an Azure SDK error from any Storage client, raised while doing ``action``, to
    :class:`StorageUnavailableError` (transient) or :class:`StorageError`."""
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return StorageUnavailableError(
            f"Blob Storage could not be reached while {action} ({type(exc).__name__})",
            retry_after=DEFAULT_RETRY_AFTER_SECONDS,
        )
    if isinstance(exc, ClientAuthenticationError) and exc.status_code is None:
        # Raised by the credential itself (no HTTP response): no token could be had.
        return StorageError(
            f"no Azure credential could get a token for Blob Storage while {action} "
            f"({type(exc).__name__}); check the managed identity (AZURE_CLIENT_ID / clientId)"
        )
    if isinstance(exc, HttpResponseError):
        status = exc.status_code
        code = error_code(exc) or "no error code"
        if status in _TRANSIENT_STATUSES:
            return StorageUnavailableError(
                f"Blob Storage is unavailable or throttling while {action} (HTTP {status}, {code})",
                retry_after=_retry_after(exc) or DEFAULT_RETRY_AFTER_SECONDS,
            )
        if status in (401, 403) or isinstance(exc, ClientAuthenticationError):
            hint = _DELEGATION_ROLE_HINT if delegation else _DATA_ROLE_HINT
            return StorageError(f"Blob Storage denied {action} (HTTP {status}, {code}): {hint}")
        return StorageError(f"Blob Storage refused {action} (HTTP {status}, {code})")
    return StorageError(f"Blob Storage failed while {action} ({type(exc).__name__})")
