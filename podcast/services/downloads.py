"""Lasting access to stored narrations: find one by its id, sign a fresh link, read its files.

Every stored narration has an index entry ``narrations/<id>.json`` in the jobs container
(:class:`~podcast.wire.NarrationIndex`, written by :class:`~podcast.services.narrations.NarrationService`
between the audio and the transcript document); a job whose result reuses another narration's audio is
found through its job record instead. So ``GET /api/narrations/{id}`` and the download
routes work for synchronous narrations as well as for jobs, for as long as the files exist.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Final, Literal, Protocol
from urllib.parse import quote

from pydantic import ValidationError

from podcast.errors import NarrationNotFoundError
from podcast.models import download_name, unicode_download_name
from podcast.services import links
from podcast.services.links import Signer
from podcast.services.records import JOB_ID, record_name
from podcast.storage.documents import DocumentStore
from podcast.storage.files import BlobFileInfo
from podcast.wire import JobRecord, NarrationIndex, NarrationResponse

log = logging.getLogger(__name__)

REDIRECT_LINK_MINUTES: Final = 15
"""The lifetime of the link a download route redirects to."""
FileKind = Literal["audio", "captions", "srt", "transcript", "chapters"]
"""The files of a narration that can be downloaded."""
_WHAT: Final[dict[FileKind, str]] = {
    "audio": "narration audio",
    "captions": "narration captions",
    "srt": "narration captions",
    "transcript": "narration transcript",
    "chapters": "narration chapters",
}


def attachment(title: str | None, suffix: str) -> str:
    """The ``Content-Disposition`` of a download named after ``title`` (RFC 6266): an ASCII
    ``filename`` every client understands and, when the title is more than that, the title
    itself as ``filename*=UTF-8''...`` (RFC 5987), which clients that know it prefer."""
    fallback = download_name(title, suffix)
    exact = unicode_download_name(title, suffix)
    header = f'attachment; filename="{fallback}"'
    if exact != fallback:
        header += f"; filename*=UTF-8''{quote(exact, safe='')}"
    return header


def index_name(narration_id: str) -> str:
    """Where a narration's :class:`~podcast.wire.NarrationIndex` is kept in the jobs container."""
    return f"narrations/{narration_id}.json"


class Files(Protocol):
    """Stored files (:class:`~podcast.storage.files.BlobFiles`)."""

    async def info(self, blob_name: str) -> BlobFileInfo | None: ...

    async def read(self, file: BlobFileInfo, offset: int = 0, length: int | None = None) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Found:
    """A stored narration: its 200 body without a link, and the lifetime of its links."""

    result: NarrationResponse
    sas_expiry_minutes: int


class DownloadService:
    """Finds narrations in ``documents`` (the jobs container: index entries, job records),
    reads their files from ``files`` and signs links with ``signer``. Owns none of them."""

    def __init__(self, documents: DocumentStore, files: Files, signer: Signer) -> None:
        self.documents = documents
        self.files = files
        self.signer = signer

    async def find(self, narration_id: str) -> Found:
        """The stored narration with this id; :class:`NarrationNotFoundError` when there is none
        (or the id is not 32 hex digits: nothing is looked up then)."""
        if not JOB_ID.fullmatch(narration_id):
            raise NarrationNotFoundError()
        loaded = await self.documents.get(index_name(narration_id))
        if loaded is not None:
            try:
                entry = NarrationIndex.model_validate(loaded[0])
                return Found(entry.result, entry.sas_expiry_minutes)
            except ValidationError:
                log.warning("index entry of narration %s is not readable", narration_id)
        record = await self.documents.get(record_name(narration_id))
        if record is not None:
            try:
                job = JobRecord.model_validate(record[0])
            except ValidationError:
                job = None
            if job is not None and job.status == "succeeded" and job.result is not None:
                return Found(job.result, job.sas_expiry_minutes)
        raise NarrationNotFoundError()

    async def signed(self, narration_id: str) -> NarrationResponse:
        """The narration's 200 body with a freshly signed link (its original lifetime); 404
        when it or its audio no longer exists."""
        found = await self.find(narration_id)
        if await self.files.info(found.result.blob_name) is None:
            raise NarrationNotFoundError()
        return await links.signed(self.signer, found.result, found.sas_expiry_minutes)

    async def file(self, narration_id: str, kind: FileKind) -> BlobFileInfo:
        """The properties of one of the narration's files; 404 when there is no such file."""
        result = (await self.find(narration_id)).result
        name = {
            "audio": result.blob_name,
            "transcript": result.transcript_blob_name,
            "captions": result.captions_blob_name,
            "srt": result.srt_blob_name,
            "chapters": result.chapters_blob_name,
        }[kind]
        info = await self.files.info(name) if name else None
        if info is None:
            raise NarrationNotFoundError(_WHAT[kind])
        suffix = {
            "audio": f".{result.format}",
            "captions": ".vtt",
            "srt": ".srt",
            "transcript": ".json",
            "chapters": ".chapters.json",
        }[kind]
        return replace(info, content_disposition=attachment(result.title, suffix))

    async def link(self, file: BlobFileInfo, *, minutes: int = REDIRECT_LINK_MINUTES) -> str:
        """A fresh read-only link to ``file`` for a redirect, valid ``minutes`` (it is followed
        at once; a later download asks the route again)."""
        url, _ = await self.signer.read_url(file.name, expires_in=timedelta(minutes=minutes))
        return url

    async def read(self, file: BlobFileInfo, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes of ``file`` (see :meth:`~podcast.storage.files.BlobFiles.read`)."""
        return await self.files.read(file, offset, length)
