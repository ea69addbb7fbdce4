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

Functions guidance is one client per process: the app builds one ``BlobServiceClient``
(:mod:`podcast.app`) and hands it to every store, which then does not close it. A store
made with :meth:`BlobStore.from_settings` owns the client it made and closes it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import unicodedata
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import quote

from aiohttp import payload
from aiohttp.abc import AbstractStreamWriter
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import (
    BlobBlock,
    BlobSasPermissions,
    ContentSettings,
    UserDelegationKey,
    generate_blob_sas,
)
from azure.storage.blob.aio import BlobClient, BlobServiceClient

from podcast.engine.audio import WAV_HEADER_SIZE, wav_header
from podcast.errors import StorageUnavailableError
from podcast.settings import StorageSettings
from podcast.storage.azure import BlobClientOptions, blob_service_client, error_code, storage_error
from podcast.storage.documents import Container, JsonDocuments
from podcast.storage.names import check_blob_name

if TYPE_CHECKING:
    from collections.abc import Callable

    from azure.core.credentials_async import AsyncTokenCredential

__all__ = ["BlobStore", "BlockStaging", "WavBlockWriter", "content_disposition"]

logger = logging.getLogger(__name__)

WAV_CONTENT_TYPE: Final = "audio/wav"
SAS_START_SKEW: Final = timedelta(minutes=15)
"""SAS and delegation keys start this far in the past, to tolerate clock skew."""
MAX_USER_DELEGATION_LIFETIME: Final = timedelta(days=7)
"""Azure's limit for a user delegation key, and so for a user-delegation SAS."""
DEFAULT_DELEGATION_KEY_LIFETIME: Final = timedelta(days=1)
DEFAULT_DELEGATION_KEY_REFRESH_MARGIN: Final = timedelta(hours=1)


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


BODY_CHUNK_BYTES: Final = 60 * 1024
"""A block's body goes to aiohttp in views of this many bytes (see :class:`BlockBody`)."""


class BlockBody(payload.Payload):
    """A block's bytes as the request body, written to aiohttp a view of
    :data:`BODY_CHUNK_BYTES` at a time, never copied whole.

    Given the bytes in one piece, aiohttp (on Python before 3.12.9, and 3.13 before 3.13.2)
    joins the request's headers and its whole body into one new ``bytes``, and asyncio's
    socket transport then copies what the socket does not take at once into a growing
    buffer: each megabyte staged was copied twice into freshly mapped memory, some 330
    page faults (measured: 9 ms of CPU for a 5.5 MB block, 4.5 ms in views of 60 KiB, on
    Python 3.11 and 3.13.0 alike). A view this small joins the headers under the
    allocator's mmap threshold (``MALLOC_MMAP_THRESHOLD_``), and aiohttp writes each one
    with back-pressure, so the transport's buffer stays small.

    An aiohttp payload that is never consumed: written again from its first byte, so both
    aiohttp's own resend of a request that met a stale pooled connection and the SDK's
    retries send the whole block (an async iterable would be consumed once written). It is
    also an async iterable of its views, the body type the SDK's request accepts.
    """

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        super().__init__(view, content_type="application/octet-stream")
        self._view = view
        self._size = view.nbytes

    def __len__(self) -> int:
        return self._view.nbytes

    def __aiter__(self) -> AsyncIterator[memoryview]:
        return self._chunks()

    async def _chunks(self, end: int | None = None) -> AsyncIterator[memoryview]:
        view = self._view
        stop = len(view) if end is None else min(end, len(view))
        for start in range(0, stop, BODY_CHUNK_BYTES):
            yield view[start : min(stop, start + BODY_CHUNK_BYTES)]

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: AbstractStreamWriter, content_length: int | None) -> None:
        async for chunk in self._chunks(content_length):
            await writer.write(chunk)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self._view.tobytes().decode(encoding, errors)


class BlobStore:
    """Narration outputs in one container, with read-only SAS links.

    Safe to share between concurrent tasks of one event loop. Every method raises
    :class:`~podcast.errors.StorageUnavailableError` when Storage is unreachable, times
    out or throttles (transient), and :class:`~podcast.errors.StorageError` for anything
    it refuses (permissions, bad names, ...).
    """

    def __init__(
        self,
        service: BlobServiceClient,
        container: str,
        *,
        owns_service: bool = False,
        delegation_key_lifetime: timedelta = DEFAULT_DELEGATION_KEY_LIFETIME,
        delegation_key_refresh_margin: timedelta = DEFAULT_DELEGATION_KEY_REFRESH_MARGIN,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        """Wrap ``service`` (already configured) and ``container`` (need not exist yet).

        :meth:`close` closes ``service`` only when ``owns_service``. A cached delegation
        key is replaced when it would expire within ``delegation_key_refresh_margin``; new
        keys live ``delegation_key_lifetime`` (or longer when a SAS needs it, up to 7 days).
        """
        if not timedelta(0) < delegation_key_refresh_margin < delegation_key_lifetime:
            raise ValueError("delegation_key_refresh_margin must be positive and below the key lifetime")
        if delegation_key_lifetime > MAX_USER_DELEGATION_LIFETIME:
            raise ValueError("delegation_key_lifetime must be at most 7 days")
        self.container = container
        self._service = service
        self._owns_service = owns_service
        self._container = Container(service.get_container_client(container))
        self.documents = JsonDocuments(self._container)
        """The container's JSON documents (transcripts, error records), with ETags."""
        self._key_lifetime = delegation_key_lifetime
        self._key_refresh_margin = delegation_key_refresh_margin
        self._clock = clock
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
        **kwargs: Any,
    ) -> BlobStore:
        """A store for ``settings.output_container`` on a client of its own (closed by
        :meth:`close`); ``credential`` is needed for identity-based settings. Other
        ``kwargs`` go to the constructor (delegation keys, clock) or, failing that, to the
        ``BlobServiceClient`` (e.g. ``connection_verify``)."""
        own = {
            k: kwargs.pop(k)
            for k in ("delegation_key_lifetime", "delegation_key_refresh_margin", "clock")
            if k in kwargs
        }
        service = blob_service_client(settings, credential=credential, options=options, **kwargs)
        return cls(service, settings.output_container, owns_service=True, **own)

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
        await self._container.ensure()

    async def upload_json(self, blob_name: str, document: Mapping[str, Any]) -> None:
        """Store ``document`` as UTF-8 JSON (``application/json; charset=utf-8``), replacing any blob."""
        await self.documents.put(blob_name, document)

    async def read_json(self, blob_name: str) -> dict[str, Any] | None:
        """The JSON object stored at ``blob_name``, or ``None`` when there is no such blob.

        Raises :class:`StorageError` when the blob is not a JSON object.
        """
        found = await self.documents.get(blob_name)
        return None if found is None else found[0]

    def wav_writer(self, blob_name: str) -> WavBlockWriter:
        """A writer that builds the WAV at ``blob_name`` from PCM pieces staged as blocks,
        with block ids of its own (see :class:`WavBlockWriter`)."""
        return WavBlockWriter(self, check_blob_name(blob_name))

    def staging(self, blob_name: str) -> BlockStaging:
        """The blocks of ``blob_name``, for a writer that stages them and commits them itself
        (:class:`WavBlockWriter`, :class:`~podcast.storage.mp3.Mp3BlockWriter`)."""
        return BlockStaging(self, check_blob_name(blob_name))

    def _blob_client(self, blob_name: str) -> BlobClient:
        """A client for ``blob_name`` (each one builds its own pipeline and serializers: keep it)."""
        return self._container.blob(blob_name)

    async def _stage_block(
        self,
        blob_name: str,
        block_id: str,
        data: bytes | bytearray | memoryview,
        *,
        client: BlobClient | None = None,
    ) -> None:
        """Stage one block, creating the container again (once) if it disappeared."""
        blob = client or self._container.blob(blob_name)
        for attempt in (1, 2):
            try:
                await blob.stage_block(block_id, cast(bytes, BlockBody(data)), length=len(data))
                return
            except ResourceNotFoundError as exc:
                if attempt == 2 or not await self._container.recreate_if_gone(exc):
                    raise storage_error(exc, f"staging a block of {blob_name!r}") from exc
            except AzureError as exc:
                raise storage_error(exc, f"staging a block of {blob_name!r}") from exc

    async def _staged_sizes(self, blob_name: str) -> dict[str, int]:
        """The uncommitted blocks of ``blob_name``: block id → size (empty when the blob or
        its container is gone; a vanished container is created again)."""
        try:
            _, uncommitted = await self._container.blob(blob_name).get_block_list("uncommitted")
        except ResourceNotFoundError as exc:
            await self._container.recreate_if_gone(exc)
            return {}
        except AzureError as exc:
            raise storage_error(exc, f"listing the staged blocks of {blob_name!r}") from exc
        return {str(block.id): int(block.size or 0) for block in uncommitted}

    async def _commit_blocks(
        self,
        blob_name: str,
        block_ids: list[str],
        settings: ContentSettings,
        metadata: dict[str, str],
        *,
        client: BlobClient | None = None,
    ) -> None:
        """Commit ``block_ids`` as ``blob_name``. Staged blocks lost meanwhile (the container
        deleted and created again, another writer's commit of the same name) raise
        :class:`StorageUnavailableError`: a new attempt can succeed, this one cannot."""
        try:
            await (client or self._container.blob(blob_name)).commit_block_list(
                [BlobBlock(block_id) for block_id in block_ids], content_settings=settings, metadata=metadata
            )
        except ResourceNotFoundError as exc:
            if not await self._container.recreate_if_gone(exc):
                raise storage_error(exc, f"committing {blob_name!r}") from exc
            raise _lost_blocks(blob_name) from exc
        except HttpResponseError as exc:
            if error_code(exc) == "InvalidBlockList":
                raise _lost_blocks(blob_name) from exc
            raise storage_error(exc, f"committing {blob_name!r}") from exc
        except AzureError as exc:
            raise storage_error(exc, f"committing {blob_name!r}") from exc

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
        if self._account_key is None and expires_in > MAX_USER_DELEGATION_LIFETIME:
            raise ValueError("a user-delegation SAS can live at most 7 days")
        now = self._clock()
        expires_at = _whole_seconds(now + expires_in)
        start = _whole_seconds(now - SAS_START_SKEW)
        [url] = await self.read_urls([blob_name], start=start, expires_at=expires_at)
        return url, expires_at

    async def read_urls(
        self, blob_names: Sequence[str], *, start: datetime, expires_at: datetime
    ) -> list[str]:
        """Read-only SAS URLs for ``blob_names``, all valid from ``start`` to ``expires_at``
        (UTC, whole seconds), in the same order: many links at once (a podcast feed), with
        one delegation key for all and no client per blob. Fixed times make the links of one
        period the same, so a feed's copy and its ETag agree. HTTPS only when the endpoint is;
        a user-delegation SAS must end within 7 days of now. Does not check that blobs exist.
        """
        if expires_at <= start:
            raise ValueError("expires_at must be after start")
        base = self._container.client.url.rstrip("/")
        protocol = "https" if base.lower().startswith("https:") else None
        common: dict[str, Any] = {
            "account_name": self._service.account_name,
            "container_name": self.container,
            "permission": BlobSasPermissions(read=True),
            "start": start,
            "expiry": expires_at,
            "protocol": protocol,
        }
        account_key = self._account_key
        if account_key is not None:
            common["account_key"] = account_key
        else:
            if expires_at - self._clock() > MAX_USER_DELEGATION_LIFETIME:
                raise ValueError("a user-delegation SAS can live at most 7 days")
            common["user_delegation_key"] = await self._user_delegation_key(covering=expires_at)
        urls = []
        for name in blob_names:
            sas = generate_blob_sas(blob_name=check_blob_name(name), **common)
            urls.append(f"{base}/{quote(name, safe='~/')}?{sas}")
        return urls

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
                raise storage_error(exc, "creating a user delegation key", delegation=True) from exc
            logger.info("fetched a user delegation key valid until %s", key_expiry.isoformat())
            self._delegation_key, self._delegation_key_expiry = key, key_expiry
            return key

    async def delete_if_exists(self, blob_name: str) -> None:
        """Delete ``blob_name`` and its snapshots; a missing blob (or container) is fine."""
        try:
            await self._container.blob(blob_name).delete_blob(delete_snapshots="include")
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise storage_error(exc, f"deleting blob {blob_name!r}") from exc

    async def delete_if_written_by(self, blob_name: str, narration_id: str) -> bool:
        """Delete ``blob_name`` only if its ``narration_id`` metadata is ``narration_id`` and it
        has not changed since that was read (so another narration's blob is never removed).
        ``True`` when it was deleted."""
        blob = self._container.blob(blob_name)
        try:
            properties = await blob.get_blob_properties()
            if (properties.metadata or {}).get("narration_id") != narration_id:
                return False
            await blob.delete_blob(
                delete_snapshots="include",
                etag=properties.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceNotFoundError, ResourceModifiedError):
            return False
        except HttpResponseError as exc:
            if exc.status_code == 412:
                return False
            raise storage_error(exc, f"deleting blob {blob_name!r}") from exc
        except AzureError as exc:
            raise storage_error(exc, f"deleting blob {blob_name!r}") from exc
        return True

    async def exists(self, blob_name: str) -> bool:
        """Whether ``blob_name`` exists (``False`` also when the container does not)."""
        try:
            return bool(await self._container.blob(blob_name).exists())
        except AzureError as exc:
            raise storage_error(exc, f"checking blob {blob_name!r}") from exc

    async def etag(self, blob_name: str) -> str | None:
        """The current ETag of ``blob_name`` (its version), or ``None`` when it does not exist."""
        try:
            return str((await self._container.blob(blob_name).get_blob_properties()).etag)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise storage_error(exc, f"reading the properties of {blob_name!r}") from exc

    async def close(self) -> None:
        """Close the client when this store made it (see :meth:`from_settings`)."""
        if self._owns_service:
            await self._service.close()


def _lost_blocks(blob_name: str) -> StorageUnavailableError:
    return StorageUnavailableError(
        f"the audio staged for {blob_name!r} was lost before its commit (the container was "
        "deleted, or another writer committed that name); nothing was stored, try again"
    )


class BlockStaging:
    """Stages blocks of one blob and commits a list of them, with its content settings and
    metadata; what a block writer needs of the store (one client for every call: building
    one costs milliseconds). Errors are those of :class:`BlobStore`; a commit naming
    blocks lost meanwhile raises :class:`StorageUnavailableError`."""

    def __init__(self, store: BlobStore, blob_name: str) -> None:
        self.blob_name = blob_name
        self._store = store
        self._client = store._blob_client(blob_name)

    async def stage(self, block_id: str, data: bytes | bytearray | memoryview) -> None:
        """Stage ``data`` (sent without a copy) as the uncommitted block ``block_id``."""
        await self._store.ensure_container()
        await self._store._stage_block(self.blob_name, block_id, data, client=self._client)

    async def staged_sizes(self) -> dict[str, int]:
        """The uncommitted blocks: block id → size (empty when there are none)."""
        return await self._store._staged_sizes(self.blob_name)

    async def commit(
        self,
        block_ids: list[str],
        *,
        content_type: str,
        download_name: str,
        metadata: Mapping[str, str],
        disposition: str | None = None,
    ) -> None:
        """Make ``block_ids`` the blob, in that order, with this content type, an
        ``attachment`` disposition named ``download_name`` (or ``disposition`` itself, a whole
        header value, when given) and ``metadata`` (values made header-safe: see
        :func:`_ascii_metadata`)."""
        settings = ContentSettings(
            content_type=content_type, content_disposition=disposition or content_disposition(download_name)
        )
        await self._store._commit_blocks(
            self.blob_name, block_ids, settings, _ascii_metadata(metadata), client=self._client
        )


class WavBlockWriter:
    """Writes one WAV blob from PCM pieces, in constant memory.

    Pieces are staged as uncommitted blocks as soon as they exist, in any order; a piece
    is identified by its position (``index``). :meth:`commit` stages the 44-byte WAV
    header last (only then are the sizes known), checks that Storage holds exactly the
    blocks this writer staged, and commits the header first, followed by the pieces in
    index order. A piece may also be staged in parts while it is still being made
    (:meth:`stage_part`: a segment's audio as it streams), and is then its parts in order.
    Until the commit nothing is visible under the blob name (an existing blob there is
    unchanged); uncommitted blocks of an abandoned writer are discarded by Storage.

    Block ids carry a random ``attempt`` token, so two writers of the same name (two
    deliveries of one document or job, two requests) never replace each other's blocks:
    each commits only its own, or fails (:class:`StorageUnavailableError`) when a commit of
    the other discarded them. A WAV whose header disagrees with its data is never committed.
    """

    ATTEMPT_HEX: Final = 16
    MAX_PARTS: Final = 1000
    """A piece is staged whole or in at most this many parts (:meth:`stage_part`)."""

    def __init__(self, store: BlobStore, blob_name: str, *, attempt: str | None = None) -> None:
        if attempt is not None and (len(attempt) != self.ATTEMPT_HEX or not attempt.isalnum()):
            raise ValueError(f"attempt must be {self.ATTEMPT_HEX} letters or digits")
        self.blob_name = blob_name
        self.attempt = attempt or secrets.token_hex(self.ATTEMPT_HEX // 2)
        self._blocks = BlockStaging(store, blob_name)
        self._sizes: dict[int, list[int]] = {}
        """Each piece's staged sizes: one for a whole piece, one per part for a piece in parts."""
        self._whole: set[int] = set()

    def _block_id(self, kind: str, index: int) -> str:
        # Block ids of one blob must all have the same length (in every attempt too).
        return f"{self.attempt}-{kind}-{index:010d}"

    def _piece_ids(self, index: int) -> list[str]:
        if index in self._whole:
            return [self._block_id("pcm", index)]
        return [
            self._block_id("prt", index * self.MAX_PARTS + part) for part in range(len(self._sizes[index]))
        ]

    @property
    def pcm_bytes(self) -> int:
        """Bytes of PCM staged so far."""
        return sum(sum(sizes) for sizes in self._sizes.values())

    async def stage(self, index: int, pcm: bytes | bytearray) -> None:
        """Stage ``pcm`` (whole PCM16 samples) as piece ``index``; replaces an earlier one
        (or the parts of one)."""
        _check_piece(index, pcm)
        if not pcm:
            self._sizes.pop(index, None)
            self._whole.discard(index)
            return
        await self._blocks.stage(self._block_id("pcm", index), pcm)
        self._sizes[index] = [len(pcm)]
        self._whole.add(index)

    async def stage_part(self, index: int, part: int, pcm: bytes | bytearray | memoryview) -> None:
        """Stage ``pcm`` (whole PCM16 samples, not empty) as part ``part`` of piece ``index``:
        the piece is then its parts ``0`` to ``part`` in order, each as last staged. Staging
        part 0 begins the piece again (replacing an earlier piece there, whole or in parts);
        part ``n`` may follow part ``n - 1`` or any later one (which it then replaces with
        everything after it). Parts of one piece must not be staged concurrently."""
        _check_piece(index, pcm)
        if not 0 <= part < self.MAX_PARTS:
            raise ValueError(f"part must be 0 to {self.MAX_PARTS - 1}")
        if index >= 10**10 // self.MAX_PARTS:
            raise ValueError("piece index too large to be staged in parts")
        if not pcm:
            raise ValueError("a part must not be empty")
        sizes = [] if part == 0 or index in self._whole else self._sizes.get(index, [])
        if part > len(sizes):
            raise ValueError(f"part {part} of piece {index} does not follow a staged part")
        await self._blocks.stage(self._block_id("prt", index * self.MAX_PARTS + part), pcm)
        self._whole.discard(index)
        self._sizes[index] = [*sizes[:part], len(pcm)]

    async def commit(
        self, *, download_name: str, metadata: Mapping[str, str], disposition: str | None = None
    ) -> int:
        """Make the WAV visible: header, then every staged piece in index order (named as
        :meth:`BlockStaging.commit` says).

        Returns the number of PCM bytes in the WAV.
        """
        total = self.pcm_bytes
        header_id = self._block_id("hdr", 0)
        header = wav_header(total)
        pieces = {
            block_id: size
            for index, sizes in self._sizes.items()
            for block_id, size in zip(self._piece_ids(index), sizes, strict=True)
        }
        if len(header) != WAV_HEADER_SIZE or sum(pieces.values()) != total:
            raise ValueError("the WAV header disagrees with the staged audio")  # a bug, never input
        # The header is staged while the pieces are checked (its own request's answer says it
        # is staged); a commit of another writer between them discards the header as well,
        # and then this commit fails for the block it names.
        listed, header_staged = await asyncio.gather(
            self._blocks.staged_sizes(), self._blocks.stage(header_id, header), return_exceptions=True
        )
        # Both requests are over before either's error is raised: none goes on behind the caller.
        if isinstance(listed, BaseException):
            raise listed
        if isinstance(header_staged, BaseException):
            raise header_staged
        if any(listed.get(block_id) != size for block_id, size in pieces.items()):
            raise _lost_blocks(self.blob_name)
        block_ids = [header_id] + [
            block_id for index in sorted(self._sizes) for block_id in self._piece_ids(index)
        ]
        await self._blocks.commit(
            block_ids,
            content_type=WAV_CONTENT_TYPE,
            download_name=download_name,
            metadata=metadata,
            disposition=disposition,
        )
        return total


def _check_piece(index: int, pcm: bytes | bytearray | memoryview) -> None:
    if index < 0:
        raise ValueError("piece index must not be negative")
    if len(pcm) % 2:
        raise ValueError("PCM16 pieces must have an even number of bytes")
