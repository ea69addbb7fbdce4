"""Blob Storage for narration outputs: upload, read-only SAS links, existence checks.

:class:`BlobStore` wraps one container of an ``azure.storage.blob.aio`` client. Every
Azure error is mapped at this boundary to :class:`~podcast.errors.StorageError` (permanent)
or :class:`~podcast.errors.StorageUnavailableError` (transient), so callers never import
``azure.core.exceptions``.

Two ways to authenticate, in the same shapes as Functions' own connections
(:class:`~podcast.settings.StorageSettings`):

- a connection string (``UseDevelopmentStorage=true`` for Azurite): links are account-key
  SAS;
- a service URI plus a token credential (managed identity through
  ``DefaultAzureCredential``): links are **user-delegation** SAS, signed with a delegation
  key that is fetched once, cached, and refreshed before it expires.

Messages and logs never contain account keys, tokens or SAS signatures.

Functions guidance is one client per process: :func:`get_store` creates the store lazily
inside the running event loop and reuses it for as long as that loop runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import quote

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import (
    BlobBlock,
    BlobSasPermissions,
    ContentSettings,
    UserDelegationKey,
    generate_blob_sas,
)
from azure.storage.blob.aio import BlobServiceClient, ContainerClient, ExponentialRetry

from podcast.errors import StorageError, StorageUnavailableError
from podcast.perloop import PerLoop
from podcast.settings import StorageSettings

if TYPE_CHECKING:
    from collections.abc import Callable

    from azure.core.credentials_async import AsyncTokenCredential

__all__ = [
    "BlobClientOptions",
    "BlobStore",
    "close_store",
    "content_disposition",
    "get_store",
    "reset_store",
]

logger = logging.getLogger(__name__)

WAV_CONTENT_TYPE: Final = "audio/wav"
JSON_CONTENT_TYPE: Final = "application/json; charset=utf-8"
SAS_START_SKEW: Final = timedelta(minutes=15)
"""SAS and delegation keys start this far in the past, to tolerate clock skew."""
MAX_USER_DELEGATION_LIFETIME: Final = timedelta(days=7)
"""Azure's limit for a user delegation key, and so for a user-delegation SAS."""
DEFAULT_DELEGATION_KEY_LIFETIME: Final = timedelta(days=1)
DEFAULT_DELEGATION_KEY_REFRESH_MARGIN: Final = timedelta(hours=1)
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
    """Network behaviour of the Azure SDK client, kept bounded on purpose.

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

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``BlobServiceClient`` carrying these options."""
        return {
            "retry_policy": _BoundedRetry(
                retry_total=self.retry_total,
                first_backoff=self.first_backoff_seconds,
                max_backoff=self.max_backoff_seconds,
            ),
            "connection_timeout": self.connection_timeout,
            "read_timeout": self.read_timeout,
        }


def content_disposition(download_name: str) -> str:
    """An RFC 6266 ``attachment`` header value for ``download_name``.

    Gives an ASCII ``filename="..."`` fallback (accents stripped, quotes, backslashes and
    control characters replaced by ``_``) and, when the name is not plain ASCII, the exact
    name as ``filename*=UTF-8''<percent-encoded>``.
    """
    name = "".join(ch for ch in download_name.strip() if unicodedata.category(ch)[0] != "C")
    name = name.replace("/", "_").replace("\\", "_") or "narration.wav"
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    ascii_name = "".join("_" if ch in '"\\' or not ch.isprintable() else ch for ch in ascii_name).strip()
    if not ascii_name or ascii_name.startswith("."):
        ascii_name = "narration" + (ascii_name if ascii_name.startswith(".") else ".wav")
    header = f'attachment; filename="{ascii_name}"'
    if ascii_name != name:
        header += f"; filename*=UTF-8''{quote(name, safe='')}"
    return header


def _ascii_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Metadata safe to send as ``x-ms-meta-*`` headers.

    Keys must be C# identifiers (letters, digits, ``_``; not starting with a digit), else
    :class:`ValueError`. Values keep printable ASCII as is; anything else (non-ASCII,
    control characters, ``%``) is percent-encoded as UTF-8 so the value round-trips with
    ``urllib.parse.unquote``.
    """
    safe: dict[str, str] = {}
    for key, value in metadata.items():
        if not key or not key.isascii() or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise ValueError(f"metadata key {key[:40]!r} must be letters, digits and underscores")
        safe[key] = quote(str(value), safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")
    return safe


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _whole_seconds(moment: datetime) -> datetime:
    """``moment`` without microseconds: SAS times are signed to the second."""
    return moment.replace(microsecond=0)


class BlobStore:
    """Narration outputs in one container, with read-only SAS links.

    Use one store per process (see :func:`get_store`); it is safe to share between
    concurrent tasks of one event loop. Every method raises
    :class:`~podcast.errors.StorageUnavailableError` when Storage is unreachable, times
    out or throttles (transient), and :class:`~podcast.errors.StorageError` for anything
    it refuses (permissions, bad names, ...).
    """

    def __init__(
        self,
        service: BlobServiceClient,
        container: str,
        *,
        credential: AsyncTokenCredential | None = None,
        owns_credential: bool = False,
        delegation_key_lifetime: timedelta = DEFAULT_DELEGATION_KEY_LIFETIME,
        delegation_key_refresh_margin: timedelta = DEFAULT_DELEGATION_KEY_REFRESH_MARGIN,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        """Wrap ``service`` (already configured) and ``container`` (need not exist yet).

        ``credential`` is closed by :meth:`close` only when ``owns_credential``. A cached
        delegation key is replaced when it would expire within
        ``delegation_key_refresh_margin``; new keys live ``delegation_key_lifetime`` (or
        longer when a SAS needs it, up to 7 days).
        """
        if not timedelta(0) < delegation_key_refresh_margin < delegation_key_lifetime:
            raise ValueError("delegation_key_refresh_margin must be positive and below the key lifetime")
        if delegation_key_lifetime > MAX_USER_DELEGATION_LIFETIME:
            raise ValueError("delegation_key_lifetime must be at most 7 days")
        self.container = container
        self._service = service
        self._container_client = service.get_container_client(container)
        self._credential = credential
        self._owns_credential = owns_credential
        self._key_lifetime = delegation_key_lifetime
        self._key_refresh_margin = delegation_key_refresh_margin
        self._clock = clock
        self._container_ready = False
        self._container_lock = asyncio.Lock()
        self._delegation_key: UserDelegationKey | None = None
        self._delegation_key_expiry: datetime | None = None
        self._delegation_lock = asyncio.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: StorageSettings,
        *,
        credential: AsyncTokenCredential | None = None,
        options: BlobClientOptions | None = None,
        delegation_key_lifetime: timedelta = DEFAULT_DELEGATION_KEY_LIFETIME,
        delegation_key_refresh_margin: timedelta = DEFAULT_DELEGATION_KEY_REFRESH_MARGIN,
        **client_kwargs: Any,
    ) -> BlobStore:
        """A store for ``settings.output_container``.

        A connection string gives an account-key client. A service URI gives a token client
        using ``credential``, or else ``DefaultAzureCredential`` (user-assigned identity
        ``settings.client_id`` when set), which the store then owns and closes.
        ``client_kwargs`` go to ``BlobServiceClient`` as they are (e.g. ``connection_verify``);
        the delegation-key arguments are those of the constructor.
        """
        key_kwargs: dict[str, Any] = {
            "delegation_key_lifetime": delegation_key_lifetime,
            "delegation_key_refresh_margin": delegation_key_refresh_margin,
        }
        kwargs = {**(options or BlobClientOptions()).client_kwargs(), **client_kwargs}
        container = settings.output_container
        if settings.connection_string:
            try:
                service = BlobServiceClient.from_connection_string(settings.connection_string, **kwargs)
            except ValueError:
                # The SDK's message can quote the connection string: never pass it on.
                raise StorageError("the storage connection string is malformed") from None
            return cls(service, container, **key_kwargs)
        if not settings.blob_service_uri:
            raise StorageError("StorageSettings has neither a connection string nor a blob service URI")
        owns_credential = credential is None
        if credential is None:
            from azure.identity.aio import DefaultAzureCredential

            credential = DefaultAzureCredential(managed_identity_client_id=settings.client_id)
        try:
            service = BlobServiceClient(settings.blob_service_uri, credential=credential, **kwargs)
        except ValueError as exc:
            raise StorageError(f"the blob service URI cannot be used: {exc}") from None
        return cls(service, container, credential=credential, owns_credential=owns_credential, **key_kwargs)

    @property
    def uses_user_delegation(self) -> bool:
        """Whether :meth:`read_url` signs with a user delegation key (no account key)."""
        return self._account_key is None

    @property
    def _account_key(self) -> str | None:
        key = getattr(self._service.credential, "account_key", None)
        return key if isinstance(key, str) and key else None

    async def ensure_container(self) -> None:
        """Create the container unless it exists. Only the first call talks to Storage."""
        async with self._container_lock:
            if self._container_ready:
                return
            try:
                await self._container_client.create_container()
                logger.info("created blob container %s", self.container)
            except ResourceExistsError:
                pass
            except AzureError as exc:
                raise _storage_error(exc, f"creating container {self.container!r}") from exc
            self._container_ready = True

    async def upload_json(self, blob_name: str, document: Mapping[str, Any]) -> None:
        """Store ``document`` as UTF-8 JSON (``application/json; charset=utf-8``), replacing any blob."""
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        await self._upload(blob_name, body, ContentSettings(content_type=JSON_CONTENT_TYPE), {})

    async def read_json(self, blob_name: str) -> dict[str, Any] | None:
        """The JSON object stored at ``blob_name``, or ``None`` when there is no such blob.

        Raises :class:`StorageError` when the blob is not a JSON object.
        """
        found = await download_json(self._container_client, blob_name)
        return None if found is None else found[0]

    async def _upload(
        self, blob_name: str, body: bytes, settings: ContentSettings, metadata: dict[str, str]
    ) -> None:
        await self.ensure_container()
        action = f"uploading blob {blob_name!r}"
        for attempt in (1, 2):
            try:
                await self._container_client.upload_blob(
                    blob_name, body, overwrite=True, content_settings=settings, metadata=metadata
                )
                return
            except ResourceNotFoundError as exc:
                if attempt == 2 or _error_code(exc) != "ContainerNotFound":
                    raise _storage_error(exc, action) from exc
                logger.warning("container %s disappeared; creating it again", self.container)
                self._container_ready = False
                await self.ensure_container()
            except AzureError as exc:
                raise _storage_error(exc, action) from exc

    def wav_writer(self, blob_name: str) -> WavBlockWriter:
        """A writer that builds the WAV at ``blob_name`` from PCM pieces staged as blocks."""
        return WavBlockWriter(self, blob_name)

    async def _stage_block(self, blob_name: str, block_id: str, data: bytes | bytearray) -> None:
        try:
            # A bytearray is sent as it is (the transport takes any buffer): no copy to bytes.
            await self._container_client.get_blob_client(blob_name).stage_block(
                block_id, cast(bytes, data), length=len(data)
            )
        except AzureError as exc:
            raise _storage_error(exc, f"staging a block of {blob_name!r}") from exc

    async def _commit_blocks(
        self, blob_name: str, block_ids: list[str], settings: ContentSettings, metadata: dict[str, str]
    ) -> None:
        try:
            await self._container_client.get_blob_client(blob_name).commit_block_list(
                [BlobBlock(block_id) for block_id in block_ids], content_settings=settings, metadata=metadata
            )
        except AzureError as exc:
            raise _storage_error(exc, f"committing {blob_name!r}") from exc

    async def read_url(self, blob_name: str, *, expires_in: timedelta) -> tuple[str, datetime]:
        """A read-only SAS URL for ``blob_name`` and the moment it stops working (UTC).

        The SAS grants read only, starts 15 minutes in the past (clock skew) and expires
        ``expires_in`` from now, to the second. It requires HTTPS when the endpoint is
        HTTPS (Azurite over HTTP gets an HTTP-capable link). With an account key
        (connection string) it is an account-key SAS; otherwise a user-delegation SAS,
        whose key is cached and always outlives the SAS, so ``expires_in`` is at most
        7 days then. Does not check that the blob exists.
        """
        if expires_in <= timedelta(0):
            raise ValueError("expires_in must be positive")
        now = self._clock()
        start = _whole_seconds(now - SAS_START_SKEW)
        expires_at = _whole_seconds(now + expires_in)
        blob_client = self._container_client.get_blob_client(blob_name)
        protocol = "https" if blob_client.scheme.lower() == "https" else None
        common: dict[str, Any] = {
            "account_name": self._service.account_name,
            "container_name": self.container,
            "blob_name": blob_name,
            "permission": BlobSasPermissions(read=True),
            "start": start,
            "expiry": expires_at,
            "protocol": protocol,
        }
        account_key = self._account_key
        if account_key is not None:
            sas = generate_blob_sas(account_key=account_key, **common)
        else:
            if expires_in > MAX_USER_DELEGATION_LIFETIME:
                raise ValueError("a user-delegation SAS can live at most 7 days")
            key = await self._user_delegation_key(covering=expires_at)
            sas = generate_blob_sas(user_delegation_key=key, **common)
        return f"{blob_client.url}?{sas}", expires_at

    async def _user_delegation_key(self, *, covering: datetime) -> UserDelegationKey:
        """A delegation key valid until at least ``covering`` and not about to expire."""
        async with self._delegation_lock:
            now = self._clock()
            cached, cached_expiry = self._delegation_key, self._delegation_key_expiry
            if (
                cached is not None
                and cached_expiry is not None
                and cached_expiry - self._key_refresh_margin > now
                and cached_expiry >= covering
            ):
                return cached
            key_start = _whole_seconds(now - SAS_START_SKEW)
            key_expiry = min(
                max(_whole_seconds(now + self._key_lifetime), covering),
                _whole_seconds(now + MAX_USER_DELEGATION_LIFETIME),
            )
            try:
                key = await self._service.get_user_delegation_key(
                    key_start_time=key_start, key_expiry_time=key_expiry
                )
            except AzureError as exc:
                raise _storage_error(exc, "creating a user delegation key", delegation=True) from exc
            logger.info("fetched a user delegation key valid until %s", key_expiry.isoformat())
            self._delegation_key, self._delegation_key_expiry = key, key_expiry
            return key

    async def delete_if_exists(self, blob_name: str) -> None:
        """Delete ``blob_name`` and its snapshots; a missing blob (or container) is fine."""
        try:
            await self._container_client.delete_blob(blob_name, delete_snapshots="include")
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise _storage_error(exc, f"deleting blob {blob_name!r}") from exc

    async def exists(self, blob_name: str) -> bool:
        """Whether ``blob_name`` exists (``False`` also when the container does not)."""
        try:
            return bool(await self._container_client.get_blob_client(blob_name).exists())
        except AzureError as exc:
            raise _storage_error(exc, f"checking blob {blob_name!r}") from exc

    async def close(self) -> None:
        """Close the HTTP connections (and the credential, when the store created it)."""
        await self._service.close()
        if self._owns_credential and self._credential is not None:
            await self._credential.close()


async def download_json(container: ContainerClient, blob_name: str) -> tuple[dict[str, Any], str] | None:
    """The JSON object stored at ``blob_name`` in ``container`` and its ETag, or ``None``
    when there is no such blob. Raises :class:`StorageError` when it is not a JSON object."""
    try:
        downloader = await container.download_blob(blob_name)
        body = await downloader.readall()
    except ResourceNotFoundError:
        return None
    except AzureError as exc:
        raise _storage_error(exc, f"reading blob {blob_name!r}") from exc
    try:
        document = json.loads(body)
    except ValueError:
        raise StorageError(f"blob {blob_name!r} is not valid JSON") from None
    if not isinstance(document, dict):
        raise StorageError(f"blob {blob_name!r} is not a JSON object")
    return document, str(downloader.properties.etag)


class WavBlockWriter:
    """Writes one WAV blob from PCM pieces, in constant memory.

    Pieces are staged as uncommitted blocks as soon as they exist, in any order; a piece
    is identified by its position (``index``). :meth:`commit` stages the 44-byte WAV
    header last (only then are the sizes known) and commits it first, followed by the
    pieces in index order. Until the commit nothing is visible under the blob name (an
    existing blob there is unchanged); uncommitted blocks of an abandoned writer are
    discarded by Storage.
    """

    def __init__(self, store: BlobStore, blob_name: str) -> None:
        self.blob_name = blob_name
        self._store = store
        self._sizes: dict[int, int] = {}

    @staticmethod
    def _block_id(kind: str, index: int) -> str:
        # Block ids of one blob must all have the same length.
        return f"{kind}-{index:010d}"

    @property
    def pcm_bytes(self) -> int:
        """Bytes of PCM staged so far."""
        return sum(self._sizes.values())

    async def stage(self, index: int, pcm: bytes | bytearray) -> None:
        """Stage ``pcm`` (whole PCM16 samples) as piece ``index``; replaces an earlier one."""
        if index < 0:
            raise ValueError("piece index must not be negative")
        if len(pcm) % 2:
            raise ValueError("PCM16 pieces must have an even number of bytes")
        if not pcm:
            self._sizes.pop(index, None)
            return
        await self._store.ensure_container()
        await self._store._stage_block(self.blob_name, self._block_id("pcm", index), pcm)
        self._sizes[index] = len(pcm)

    async def commit(self, *, download_name: str, metadata: Mapping[str, str]) -> int:
        """Make the WAV visible: header, then every staged piece in index order.

        Returns the number of PCM bytes in the WAV.
        """
        from podcast.engine.audio import wav_header

        total = self.pcm_bytes
        header_id = self._block_id("hdr", 0)
        await self._store.ensure_container()
        await self._store._stage_block(self.blob_name, header_id, wav_header(total))
        block_ids = [header_id] + [self._block_id("pcm", i) for i in sorted(self._sizes)]
        settings = ContentSettings(
            content_type=WAV_CONTENT_TYPE, content_disposition=content_disposition(download_name)
        )
        await self._store._commit_blocks(self.blob_name, block_ids, settings, _ascii_metadata(metadata))
        return total


def _error_code(exc: HttpResponseError) -> str | None:
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


def _storage_error(exc: AzureError, action: str, *, delegation: bool = False) -> StorageError:
    """Map an Azure SDK error raised while doing ``action`` to our error tree.

    Messages name the status and Storage error code, never the SDK's own message (which
    can carry request details).
    """
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
        code = _error_code(exc) or "no error code"
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


# --- One store per process -------------------------------------------------------------

_stores: PerLoop[BlobStore] = PerLoop(BlobStore.close)


def get_store(settings: StorageSettings | None = None) -> BlobStore:
    """The process-wide store, created on first use inside the running event loop.

    ``settings`` (default: :meth:`StorageSettings.from_env`) are read only when a store
    is created. A store made in another (e.g. finished) event loop is dropped and a new
    one made, since its connections belong to that loop. Raises ``RuntimeError`` outside
    a running loop and :class:`~podcast.errors.ConfigurationError` for bad settings.
    """
    return _stores.get(lambda: BlobStore.from_settings(settings or StorageSettings.from_env()))


async def close_store() -> None:
    """Close and forget the process-wide store, if any (call from the loop that made it)."""
    await _stores.close()


def reset_store() -> None:
    """Forget the process-wide store without closing it (for tests between event loops)."""
    _stores.forget()


# --- Public hook: the same error mapping for other Storage clients ----------------------------


def map_storage_error(exc: AzureError, action: str) -> StorageError:
    """Map an Azure SDK error from any Storage client (blob or queue) raised while doing
    ``action`` to :class:`StorageUnavailableError` (transient) or :class:`StorageError`.

    For clients other than :class:`BlobStore` (e.g. :mod:`podcast.jobs`' job records and
    queue), so every Storage failure reaches callers in the same shape.
    """
    return _storage_error(exc, action)
