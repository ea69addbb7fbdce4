"""Stored narration files other than the audio: writing captions, reading any file back.

:class:`BlobFiles` reads one container of the app's ``BlobServiceClient``: a blob's
properties (size, content type, ``Content-Disposition``, ETag) and any byte range of it.
A range is read only if the blob still has the ETag its properties had, so the bytes of one
answer always come from one version of the file. Azure errors are mapped to
:class:`~podcast.errors.StorageError` / :class:`~podcast.errors.StorageUnavailableError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import BlobServiceClient

from podcast.errors import StorageUnavailableError
from podcast.storage.azure import storage_error

__all__ = ["BlobFileInfo", "BlobFiles"]


@dataclass(frozen=True, slots=True)
class BlobFileInfo:
    """What a download answer needs to know about a stored file before reading it."""

    name: str
    size: int
    content_type: str | None
    content_disposition: str | None
    etag: str
    last_modified: datetime | None


class BlobFiles:
    """Read-only access to the files of one container (the client is not owned)."""

    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self._container = service.get_container_client(container)

    async def info(self, blob_name: str) -> BlobFileInfo | None:
        """The file's properties, or ``None`` when there is no such blob (or container)."""
        try:
            properties = await self._container.get_blob_client(blob_name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise storage_error(exc, f"reading the properties of {blob_name!r}") from exc
        settings = properties.content_settings
        return BlobFileInfo(
            name=blob_name,
            size=int(properties.size),
            content_type=settings.content_type,
            content_disposition=settings.content_disposition,
            etag=str(properties.etag),
            last_modified=properties.last_modified,
        )

    async def read(self, file: BlobFileInfo, offset: int = 0, length: int | None = None) -> bytes:
        """``length`` bytes of ``file`` from ``offset`` (to the end when ``None``).

        Raises :class:`StorageUnavailableError` (transient) when the blob changed or vanished
        since ``file`` was read: asking again gets a consistent answer.
        """
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        if length == 0 or offset >= file.size:
            return b""
        try:
            downloader = await self._container.get_blob_client(file.name).download_blob(
                offset=offset,
                length=length,
                etag=file.etag,
                match_condition=MatchConditions.IfNotModified,
            )
            return await downloader.readall()
        except (ResourceModifiedError, ResourceNotFoundError):
            raise StorageUnavailableError(
                f"{file.name!r} changed while it was being read; try again", retry_after=1
            ) from None
        except AzureError as exc:
            raise storage_error(exc, f"reading {file.name!r}") from exc

    async def put_text(self, blob_name: str, text: str, *, content_type: str, disposition: str) -> None:
        """Store ``text`` (UTF-8) at ``blob_name``, replacing any blob; ``content_type`` should
        name the charset. The container must exist (the audio was stored in it first)."""
        settings = ContentSettings(content_type=content_type, content_disposition=disposition)
        try:
            await self._container.upload_blob(
                blob_name, text.encode("utf-8"), overwrite=True, content_settings=settings
            )
        except AzureError as exc:
            raise storage_error(exc, f"writing {blob_name!r}") from exc
