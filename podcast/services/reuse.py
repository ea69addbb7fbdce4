"""Content reuse: identical requests are narrated once.

An entry ``cache/<content key>.json`` in the jobs container holds either a claim by the
job narrating that content (``pending``) or the finished result (``succeeded``). The key
hashes the request's :meth:`~podcast.models.NarrationRequest.fingerprint` (text, mode,
style, voice, language, instructions, episode length) with the deployment name. A result
is reused only while its WAV still exists in the output container, and each reuse signs a
fresh read-only link.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from podcast.errors import PodcastError
from podcast.models import NarrationRequest
from podcast.storage.blobs import BlobStore
from podcast.storage.documents import DocumentStore

log = logging.getLogger(__name__)


def stored_result(response: Mapping[str, Any]) -> dict[str, Any]:
    """A 200 body as kept in a record or the cache: the same keys, in order, without the link."""
    return {**response, "audio_url": None, "expires_at": None}


def content_key(request: NarrationRequest, deployment: str) -> str:
    """The reuse key: what decides the audio (the request's fingerprint) and the deployment."""
    return hashlib.sha256(f"v1\n{deployment}\n{request.fingerprint()}".encode()).hexdigest()


def entry_name(key: str) -> str:
    return f"cache/{key}.json"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Reusable:
    """A finished narration of the same content whose audio still exists."""

    job_id: str | None
    """The job that made it (``None`` for a synchronous narration)."""
    result: dict[str, Any]
    """Its stored 200 body (without a link)."""


class ReuseCache:
    """The reuse entries (in ``documents``) of narrations stored in ``outputs``."""

    def __init__(self, documents: DocumentStore, outputs: BlobStore) -> None:
        self.documents = documents
        self.outputs = outputs

    @staticmethod
    def key(request: NarrationRequest, deployment: str) -> str:
        return content_key(request, deployment)

    async def find(self, key: str) -> Reusable | None:
        """A finished narration of this content whose WAV still exists, if any."""
        loaded = await self.documents.get(entry_name(key))
        if loaded is None:
            return None
        document, _ = loaded
        result = document.get("result")
        if document.get("state") != "succeeded" or not isinstance(result, dict):
            return None
        if result.get("container") != self.outputs.container or not await self.outputs.exists(
            str(result.get("blob_name"))
        ):
            return None
        job_id = document.get("job_id")
        return Reusable(str(job_id) if job_id else None, result)

    async def pending(self, key: str) -> tuple[str | None, str | None]:
        """The id of the job that claimed this content (``None`` when no claim is pending)
        and the ETag of the entry to replace (``None`` when there is no entry)."""
        loaded = await self.documents.get(entry_name(key))
        if loaded is None:
            return None, None
        document, etag = loaded
        job_id = document.get("job_id") if document.get("state") == "pending" else None
        return (str(job_id) if job_id else None), etag

    async def claim(self, key: str, job_id: str, *, etag: str | None) -> None:
        """Record that ``job_id`` narrates this content, replacing the entry at ``etag``."""
        claim = {"state": "pending", "job_id": job_id, "updated_at": _now()}
        claimed = await self.documents.put(entry_name(key), claim, etag=etag, create=etag is None)
        if not claimed and etag is not None:  # the stale entry was removed meanwhile
            await self.documents.put(entry_name(key), claim, create=True)

    async def remember(self, key: str, job_id: str | None, result: Mapping[str, Any]) -> None:
        """Record a finished narration for reuse (best effort: a failure only costs reuse)."""
        document = {"state": "succeeded", "job_id": job_id, "updated_at": _now(), "result": dict(result)}
        try:
            await self.documents.put(entry_name(key), document)
        except PodcastError as error:
            log.warning("could not record narration for reuse (%s)", error.code)

    async def release(self, key: str, job_id: str) -> None:
        """Remove ``job_id``'s ``pending`` claim on this content (best effort)."""
        with contextlib.suppress(PodcastError):
            loaded = await self.documents.get(entry_name(key))
            if loaded is not None:
                document, etag = loaded
                if document.get("state") == "pending" and document.get("job_id") == job_id:
                    await self.documents.delete(entry_name(key), etag=etag)

    async def signed(self, result: Mapping[str, Any], sas_expiry_minutes: int) -> dict[str, Any]:
        """A stored 200 body with a fresh read-only link valid for ``sas_expiry_minutes``."""
        url, expires_at = await self.outputs.read_url(
            str(result["blob_name"]), expires_in=timedelta(minutes=sas_expiry_minutes)
        )
        return {
            **result,
            "audio_url": url,
            "expires_at": expires_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }
