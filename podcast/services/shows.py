"""Shows: named podcast feeds that narrations are published to.

A show is ``shows/<slug>/show.json`` in the jobs container (:class:`~podcast.wire.ShowRecord`):
its settings and the SHA-256 of its feed token. Every change is a conditional write on the
record's ETag, re-read and retried when another writer came first, so two concurrent
``PUT``\\s or a ``PUT`` and a token rotation never lose each other's change (the token of a
show created twice at once is the first creator's; the second ``PUT`` replaces its settings).

The feed token (``secrets.token_urlsafe(32)``) is shown once, when the show is created or the
token rotated, and is compared with ``hmac.compare_digest`` on its hash. A wrong, old or
missing token and an unknown show are one and the same :class:`~podcast.errors.ShowNotFoundError`,
so a feed URL tells nobody which shows exist.

Episodes: a stored narration with a ``show`` adds ``shows/<slug>/episodes/<inverted ms>-<id>.json``
(:class:`~podcast.wire.EpisodeEntry`), one blob per episode, never rewritten by anyone else:
concurrent narrations cannot lose each other's entries, and the same narration writes the
same name again. The inverted creation time makes name order newest first, so the feed is
one List Blobs call for the newest ``limit`` names (and ``max_items`` more, for the entries a
later narration of the same audio left out), then those entries read concurrently.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from pydantic import ValidationError

from podcast.errors import ShowNotFoundError, StorageUnavailableError
from podcast.models import check_show_slug
from podcast.services.feeds import FeedItem, render_feed
from podcast.settings import FeedSettings
from podcast.storage.documents import DocumentStore
from podcast.wire import EpisodeEntry, ShowDetails, ShowRecord, ShowView, etag_matches, iso_timestamp

log = logging.getLogger(__name__)

WRITE_ATTEMPTS: Final = 8
"""Conditional writes of one change before giving up (each loses only to another writer)."""
READ_CONCURRENCY: Final = 32
LINK_START_SKEW: Final = timedelta(minutes=15)
"""Links start this long before their period (clocks of apps and Storage differ)."""
"""Episode entries read at once while a feed is built."""
ENTRY_METADATA: Final = "entry"
"""The metadata key holding an episode entry (zlib, base64url), so one listing gives the feed."""
MAX_ENTRY_METADATA_BYTES: Final = 7_000
"""Blob metadata holds 8 KiB in all; a larger entry is read from its blob instead."""
_INVERTED_MS: Final = 10**13 - 1
"""Inverted creation times in milliseconds, 13 digits (good until the year 2286)."""


class FeedSigner(Protocol):
    """Signs a feed's links (:meth:`~podcast.storage.blobs.BlobStore.read_urls`)."""

    async def read_urls(
        self, blob_names: Sequence[str], *, start: datetime, expires_at: datetime
    ) -> list[str]: ...


class ShowStore(DocumentStore, Protocol):
    """The jobs container as shows need it: JSON documents, and names listed by prefix."""

    async def first(self, prefix: str, limit: int) -> list[tuple[str, str, dict[str, str]]]:
        """The first ``limit`` ``(name, etag, metadata)`` under ``prefix``, in name order."""
        ...

    async def put_with_metadata(
        self, name: str, document: Mapping[str, Any], metadata: Mapping[str, str]
    ) -> None:
        """Write ``document`` at ``name`` with ``metadata``, unconditionally."""
        ...


def show_name(slug: str) -> str:
    """Where a show's record is kept in the jobs container."""
    return f"shows/{slug}/show.json"


def episodes_prefix(slug: str) -> str:
    return f"shows/{slug}/episodes/"


def episode_name(slug: str, narration_id: str, created_at: datetime) -> str:
    """An episode's entry: the inverted creation time (newest sorts first), then the id."""
    milliseconds = int(created_at.timestamp() * 1000)
    return f"{episodes_prefix(slug)}{_INVERTED_MS - milliseconds:013d}-{narration_id}.json"


def _created_ms(name: str) -> int | None:
    """The creation time (ms since the epoch) an entry's name holds, or ``None``."""
    stem = name.rsplit("/", 1)[-1].split("-", 1)[0]
    return _INVERTED_MS - int(stem) if stem.isdigit() else None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ShowState:
    """A show as just read or written; ``token`` only when it was just made (create, rotate)."""

    record: ShowRecord
    token: str | None = None
    created: bool = False

    def view(self, feed_url: str | None) -> ShowView:
        """The API's view; ``feed_url`` should be given only with a :attr:`token`."""
        return ShowView(
            **self.record.details.model_dump(),
            slug=self.record.slug,
            feed_url=feed_url,
            created_at=self.record.created_at,
            updated_at=self.record.updated_at,
        )


@dataclass(frozen=True, slots=True)
class Feed:
    """A built feed, or (``body is None``) the answer that the caller's copy is current."""

    etag: str
    last_modified: datetime
    body: bytes | None
    items: int = 0


class ShowService:
    """Shows and their feeds in ``store`` (the jobs container); feed links signed by ``signer``
    (the output container). Owns neither."""

    def __init__(
        self,
        store: ShowStore,
        signer: FeedSigner,
        settings: FeedSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.signer = signer
        self.settings = settings
        self.clock = clock

    # --- shows --------------------------------------------------------------------------

    async def _load(self, slug: str) -> tuple[ShowRecord, str] | None:
        found = await self.store.get(show_name(slug))
        if found is None:
            return None
        try:
            return ShowRecord.model_validate(found[0]), found[1]
        except ValidationError:
            log.warning("show record %s is not readable", slug)
            return None

    async def get(self, slug: str) -> ShowState:
        """The show; :class:`ShowNotFoundError` when there is none. Raises
        :class:`~podcast.errors.RequestValidationError` (``show``) for an invalid slug."""
        found = await self._load(check_show_slug(slug))
        if found is None:
            raise ShowNotFoundError()
        return ShowState(found[0])

    async def require(self, slug: str) -> None:
        """Raise :class:`ShowNotFoundError` (field ``show``) unless the show exists."""
        await self.get(slug)

    async def put(self, slug: str, details: ShowDetails) -> ShowState:
        """Create the show with a new token (``created``, with the token), or replace the
        settings of the existing one (its token and creation time stay)."""
        check_show_slug(slug)
        details = ShowDetails.model_validate(details.model_dump())
        name = show_name(slug)
        for _ in range(WRITE_ATTEMPTS):
            now = iso_timestamp(self.clock())
            found = await self._load(slug)
            if found is None:
                token = secrets.token_urlsafe(32)
                digest = token_digest(token)
                record = ShowRecord(
                    slug=slug, details=details, token_sha256=digest, created_at=now, updated_at=now
                )
                if await self.store.put(name, record.model_dump(mode="json"), create=True):
                    log.info("show %s created", slug)
                    return ShowState(record, token, created=True)
                continue
            current, etag = found
            record = current.model_copy(update={"details": details, "updated_at": now})
            if await self.store.put(name, record.model_dump(mode="json"), etag=etag):
                log.info("show %s updated", slug)
                return ShowState(record)
        raise _busy()

    async def rotate(self, slug: str) -> ShowState:
        """Give the show a new feed token (with it): the old feed URL stops working at once."""
        check_show_slug(slug)
        for _ in range(WRITE_ATTEMPTS):
            found = await self._load(slug)
            if found is None:
                raise ShowNotFoundError()
            current, etag = found
            token = secrets.token_urlsafe(32)
            record = current.model_copy(
                update={"token_sha256": token_digest(token), "updated_at": iso_timestamp(self.clock())}
            )
            if await self.store.put(show_name(slug), record.model_dump(mode="json"), etag=etag):
                log.info("show %s: feed token rotated", slug)
                return ShowState(record, token)
        raise _busy()

    # --- episodes -----------------------------------------------------------------------

    async def add_episode(self, slug: str, entry: EpisodeEntry) -> str:
        """Store the episode's entry (the same narration: the same name and content); its name.

        The entry is the blob and, compressed, its metadata (when it fits), which the feed's
        one listing returns: a feed of ``limit`` episodes reads no entry blob."""
        created = datetime.fromisoformat(entry.created_at.replace("Z", "+00:00"))
        name = episode_name(slug, entry.id, created)
        document = entry.model_dump(mode="json")
        packed = base64.urlsafe_b64encode(zlib.compress(json.dumps(document).encode(), 9)).decode("ascii")
        metadata = {ENTRY_METADATA: packed} if len(packed) <= MAX_ENTRY_METADATA_BYTES else {}
        await self.store.put_with_metadata(name, document, metadata)
        return name

    async def remove_episode(self, name: str) -> None:
        """Remove an entry :meth:`add_episode` wrote (a narration that failed after it)."""
        await self.store.delete(name)

    # --- the feed -----------------------------------------------------------------------

    async def feed(
        self,
        slug: str,
        token: str | None,
        *,
        limit: int | None = None,
        feed_url: str,
        feed_identity: str,
        if_none_match: str | None = None,
    ) -> Feed:
        """The show's feed: its newest ``limit`` (at most ``NARRATION_FEED_MAX_ITEMS``)
        episodes, newest first, each with links valid ``NARRATION_FEED_LINK_HOURS``.

        :class:`ShowNotFoundError` for an unknown show and for a token that is not its current
        one (the same error). The ETag covers the show record, the listed entries, the limit
        and the half-lifetime period of the links, so an app's copy answered ``304`` (when
        ``if_none_match`` holds it) never has links with less than half their lifetime left.
        """
        check_show_slug(slug)
        found = await self._load(slug)
        presented = token_digest(token or "")
        expected = found[0].token_sha256 if found is not None else token_digest(secrets.token_urlsafe(32))
        if found is None or not token or not hmac.compare_digest(presented, expected):
            raise ShowNotFoundError()
        record, record_etag = found
        count = min(limit or self.settings.max_items, self.settings.max_items)
        # Listed beyond the count: an entry whose audio a later narration replaced (a document
        # narrated again, a redelivered job) is left out below and must not take a place.
        listed = await self.store.first(episodes_prefix(slug), count + self.settings.max_items)
        now = self.clock()
        lifetime = timedelta(hours=self.settings.link_hours)
        period = int(now.timestamp() // (lifetime.total_seconds() / 2))
        versions = [(name, etag) for name, etag, _ in listed]
        fingerprint = json.dumps([2, record_etag, versions, count, period, feed_url], separators=(",", ":"))
        etag = f'"{hashlib.sha256(fingerprint.encode()).hexdigest()[:40]}"'
        last_modified = _last_modified(record, listed)
        if if_none_match is not None and etag_matches(if_none_match, etag):
            return Feed(etag, last_modified, None)
        entries = (await self._entries(listed))[:count]
        # Every link of a period starts and ends at the same moments: the same links, and
        # at least half their lifetime left whenever an app's copy is still current.
        period_start = datetime.fromtimestamp(period * lifetime.total_seconds() / 2, UTC)
        items = await self._signed(
            entries, start=period_start - LINK_START_SKEW, expires_at=period_start + lifetime
        )
        body = render_feed(
            record.details, items, feed_url=feed_url, feed_identity=feed_identity, built_at=now
        )
        return Feed(etag, last_modified, body, len(items))

    async def _entries(self, listed: Sequence[tuple[str, str, dict[str, str]]]) -> list[EpisodeEntry]:
        """The listed entries, in their order, once per narration id and audio blob: from their metadata, or
        read from their blobs when it has none; an unreadable or vanished one is left out."""
        gate = asyncio.Semaphore(READ_CONCURRENCY)

        async def read(name: str, metadata: Mapping[str, str]) -> dict[str, Any] | None:
            packed = metadata.get(ENTRY_METADATA)
            if packed:
                try:
                    unpacked = json.loads(zlib.decompress(base64.urlsafe_b64decode(packed)))
                    if isinstance(unpacked, dict):
                        return unpacked
                except (ValueError, zlib.error):
                    pass
            async with gate:
                found = await self.store.get(name)
            return found[0] if found is not None else None

        documents = await asyncio.gather(*(read(name, metadata) for name, _, metadata in listed))
        entries: list[EpisodeEntry] = []
        seen: set[str] = set()
        for (name, _, _), document in zip(listed, documents, strict=True):
            if document is None:
                continue
            try:
                entry = EpisodeEntry.model_validate(document)
            except ValidationError:
                log.warning("episode entry %s is not readable", name.rsplit("/", 1)[-1])
                continue
            # Newest first: a job narrated twice (redelivered) is one episode, and a document
            # narrated again (its audio replaced) is its newest narration only.
            if entry.id not in seen and entry.audio_blob_name not in seen:
                seen.update((entry.id, entry.audio_blob_name))
                entries.append(entry)
        return entries

    async def _signed(
        self, entries: Sequence[EpisodeEntry], *, start: datetime, expires_at: datetime
    ) -> list[FeedItem]:
        """The entries with their links, signed in one batch."""
        names: list[str] = []
        for entry in entries:
            names += [entry.audio_blob_name, entry.transcript_blob_name]
            names += [
                name
                for name in (entry.captions_blob_name, entry.srt_blob_name, entry.chapters_blob_name)
                if name
            ]
        signed = dict(
            zip(names, await self.signer.read_urls(names, start=start, expires_at=expires_at), strict=True)
        )
        return [
            FeedItem(
                entry=entry,
                audio_url=signed[entry.audio_blob_name],
                transcript_url=signed[entry.transcript_blob_name],
                captions_url=signed.get(entry.captions_blob_name or ""),
                srt_url=signed.get(entry.srt_blob_name or ""),
                chapters_url=signed.get(entry.chapters_blob_name or ""),
            )
            for entry in entries
        ]


def _last_modified(record: ShowRecord, listed: Sequence[tuple[str, str, dict[str, str]]]) -> datetime:
    """The newer of the show's last change and its newest episode, to the second."""
    updated = datetime.fromisoformat(record.updated_at.replace("Z", "+00:00"))
    newest = _created_ms(listed[0][0]) if listed else None
    if newest is not None:
        updated = max(updated, datetime.fromtimestamp(newest / 1000, UTC))
    return updated.replace(microsecond=0)


def _busy() -> StorageUnavailableError:
    return StorageUnavailableError(
        "the show kept changing while this change was written; send it again", retry_after=1.0
    )


__all__ = [
    "Feed",
    "ShowService",
    "ShowState",
    "ShowStore",
    "episode_name",
    "show_name",
]
