"""Content reuse: identical requests are narrated once.

An entry ``cache/<content key>.json`` in the jobs container holds either a claim by the
job narrating that content (``pending``) or the finished result (``succeeded``). The key
hashes the request's :meth:`~podcast.models.NarrationRequest.fingerprint` (text, mode,
style, voice, language, instructions, episode length) with the deployment name. A result
is reused only while its WAV and transcript document still exist in the output container,
and each reuse signs a fresh read-only link.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from pydantic import ValidationError

from podcast.errors import PodcastError
from podcast.models import NarrationRequest
from podcast.services import links
from podcast.storage.documents import DocumentStore
from podcast.storage.names import blob_name, check_blob_segment
from podcast.wire import CacheEntry, NarrationResponse, job_timestamp

log = logging.getLogger(__name__)


def reuse_key(request: NarrationRequest, deployment: str) -> str:
    """The reuse key (SHA-256, hex): what decides the audio, the request's
    :meth:`~podcast.models.NarrationRequest.fingerprint`, and the deployment that speaks it."""
    return hashlib.sha256(f"v1\n{deployment}\n{request.fingerprint()}".encode()).hexdigest()


def entry_name(key: str) -> str:
    """``cache/<key>.json``; raises :class:`~podcast.errors.BlobNameError` for a key that is not
    one safe name segment (keys are SHA-256 hex, so only a bug could make one)."""
    return blob_name("cache", f"{check_blob_segment(key, field='reuse key')}.json")


def _now() -> str:
    return job_timestamp(datetime.now(UTC))


class Outputs(Protocol):
    """Where finished narrations are stored (:class:`~podcast.storage.blobs.BlobStore`)."""

    @property
    def container(self) -> str:
        """The output container's name."""
        ...

    async def exists(self, blob_name: str) -> bool:
        """Whether ``blob_name`` exists."""
        ...

    async def read_url(self, blob_name: str, *, expires_in: timedelta) -> tuple[str, datetime]:
        """A read-only link to ``blob_name`` and the moment it stops working (UTC)."""
        ...


@dataclass(frozen=True, slots=True)
class Reusable:
    """A finished narration of the same content whose audio still exists."""

    job_id: str | None
    """The job that made it (``None`` for a synchronous narration)."""
    result: NarrationResponse
    """Its stored 200 body (without a link)."""


class ReuseCache:
    """The reuse entries (in ``documents``) of narrations stored in ``outputs``."""

    def __init__(self, documents: DocumentStore, outputs: Outputs) -> None:
        self.documents = documents
        self.outputs = outputs

    @staticmethod
    def key(request: NarrationRequest, deployment: str) -> str:
        return reuse_key(request, deployment)

    async def _entry(self, key: str) -> tuple[CacheEntry | None, str | None]:
        """The entry for ``key`` (``None`` when there is none or it is unreadable) and its ETag."""
        loaded = await self.documents.get(entry_name(key))
        if loaded is None:
            return None, None
        document, etag = loaded
        try:
            return CacheEntry.model_validate(document), etag
        except ValidationError:
            log.warning("reuse entry %s is not readable: ignored", key[:12])
            return None, etag

    async def find(self, key: str) -> Reusable | None:
        """A finished narration of this content whose WAV and transcript document both still
        exist, if any (entries are only written once both are stored; a half result, e.g.
        a WAV whose transcript was removed, is never served)."""
        entry, _ = await self._entry(key)
        if entry is None or entry.state != "succeeded" or entry.result is None:
            return None
        result = entry.result
        if result.container != self.outputs.container:
            return None
        for name in (result.blob_name, result.transcript_blob_name):
            if not await self.outputs.exists(name):
                return None
        return Reusable(entry.job_id, result)

    async def pending(self, key: str) -> tuple[str | None, str | None]:
        """The id of the job that claimed this content (``None`` when no claim is pending)
        and the ETag of the entry to replace (``None`` when there is no entry)."""
        entry, etag = await self._entry(key)
        job_id = entry.job_id if entry is not None and entry.state == "pending" else None
        return job_id, etag

    async def claim(self, key: str, job_id: str, *, etag: str | None) -> None:
        """Record that ``job_id`` narrates this content, replacing the entry at ``etag``."""
        claim = CacheEntry(state="pending", job_id=job_id, updated_at=_now()).model_dump(mode="json")
        claimed = await self.documents.put(entry_name(key), claim, etag=etag, create=etag is None)
        if not claimed and etag is not None:  # the stale entry was removed meanwhile
            await self.documents.put(entry_name(key), claim, create=True)

    async def remember(self, key: str, job_id: str | None, result: NarrationResponse) -> None:
        """Record a finished narration for reuse (best effort: a failure only costs reuse)."""
        entry = CacheEntry(state="succeeded", job_id=job_id, updated_at=_now(), result=result.without_link())
        try:
            await self.documents.put(entry_name(key), entry.model_dump(mode="json"))
        except PodcastError as error:
            log.warning("could not record narration for reuse (%s)", error.code)

    async def release(self, key: str, job_id: str) -> None:
        """Remove ``job_id``'s ``pending`` claim on this content (best effort)."""
        with contextlib.suppress(PodcastError):
            entry, etag = await self._entry(key)
            if entry is not None and entry.state == "pending" and entry.job_id == job_id:
                await self.documents.delete(entry_name(key), etag=etag)

    async def signed(self, result: NarrationResponse, sas_expiry_minutes: int) -> NarrationResponse:
        """A stored 200 body with fresh read-only links (see :func:`~podcast.services.links.signed`)."""
        return await links.signed(self.outputs, result, sas_expiry_minutes)
