"""JSON documents in one blob container, with ETags for conditional writes.

:class:`JsonDocuments` is how the app keeps small state in Blob Storage: job records, stored
requests, idempotency keys, the content-reuse cache (in the jobs container) and transcript
documents (in the output container). :class:`DocumentStore` is the protocol the services
depend on, so their state machines also run against an in-memory store in unit tests.

The container is created on first write, and again if it disappears (deleted, or an
emulator restarted empty): a ``ContainerNotFound`` at any write re-creates it and retries
once, so a recreated container never needs a process restart. Every name goes through
:func:`~podcast.storage.names.check_blob_name` first (:meth:`Container.blob`), so no name
can address a blob outside the container.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any, Final, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import BlobClient, ContainerClient

from podcast.errors import StorageError, StorageUnavailableError
from podcast.storage.azure import error_code, storage_error
from podcast.storage.names import check_blob_name

log = logging.getLogger(__name__)

JSON_CONTENT_TYPE: Final = "application/json; charset=utf-8"
_JSON_CONTENT: Final = ContentSettings(content_type=JSON_CONTENT_TYPE)


class DocumentStore(Protocol):
    """JSON objects by name, with ETags: what the job and reuse logic needs of Storage.

    Every method raises :class:`~podcast.errors.StorageError` (or its transient
    ``StorageUnavailableError``) when Storage fails.
    """

    async def get(self, name: str) -> tuple[dict[str, Any], str] | None:
        """The JSON object at ``name`` and its ETag, or ``None`` when there is none."""
        ...

    async def put(
        self, name: str, document: Mapping[str, Any], *, etag: str | None = None, create: bool = False
    ) -> bool:
        """Write ``document`` at ``name``: only if absent (``create``), only if unchanged since
        ``etag``, or else unconditionally. ``False`` when the condition did not hold."""
        ...

    async def replace(self, name: str, document: Mapping[str, Any], *, etag: str) -> str | None:
        """Write ``document`` at ``name`` only if it is unchanged since ``etag``: its new ETag,
        or ``None`` when it changed or is gone (a chain of writes by one owner)."""
        ...

    async def delete(self, name: str, *, etag: str | None = None) -> None:
        """Delete ``name`` (only if unchanged since ``etag``); missing or changed is fine."""
        ...


class Container:
    """One blob container that is created when first needed, and again if it disappears."""

    def __init__(self, client: ContainerClient) -> None:
        self.client = client
        self.name: str = client.container_name
        self._ready = False
        self._lock = asyncio.Lock()

    def blob(self, name: str) -> BlobClient:
        """The client of blob ``name`` in this container; raises
        :class:`~podcast.errors.BlobNameError` (before any Storage call) for a name that
        breaks :mod:`podcast.storage.names`' rule."""
        return self.client.get_blob_client(check_blob_name(name))

    async def ensure(self) -> None:
        """Create the container unless it exists. Only the first call talks to Storage (until
        :meth:`recreate_if_gone` finds it gone)."""
        async with self._lock:
            if self._ready:
                return
            try:
                await self.client.create_container()
                log.info("created blob container %s", self.name)
            except ResourceExistsError as exc:
                if error_code(exc) == "ContainerBeingDeleted":
                    # Azure removes a deleted container in the background (about 30 s); until
                    # then it can be neither used nor created.
                    raise StorageUnavailableError(
                        f"container {self.name!r} is being deleted; it is created again once it is gone",
                        retry_after=30.0,
                    ) from exc
            except AzureError as exc:
                raise storage_error(exc, f"creating container {self.name!r}") from exc
            self._ready = True

    async def recreate_if_gone(self, exc: ResourceNotFoundError) -> bool:
        """After a ``ResourceNotFoundError``: re-create the container when it was the container
        that was missing (``True``: try again once), else ``False``."""
        if error_code(exc) != "ContainerNotFound":
            return False
        log.warning("container %s disappeared; creating it again", self.name)
        self._ready = False
        await self.ensure()
        return True


class JsonDocuments:
    """:class:`DocumentStore` on one container (see the module docstring)."""

    def __init__(self, container: Container) -> None:
        self._container = container

    async def get(self, name: str) -> tuple[dict[str, Any], str] | None:
        """The JSON object at ``name`` and its ETag, or ``None`` when there is none (or no
        container). Raises :class:`StorageError` when the blob is not a JSON object."""
        try:
            downloader = await self._container.blob(name).download_blob()
            body = await downloader.readall()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise storage_error(exc, f"reading blob {name!r}") from exc
        try:
            document = json.loads(body)
        except ValueError:
            raise StorageError(f"blob {name!r} is not valid JSON") from None
        if not isinstance(document, dict):
            raise StorageError(f"blob {name!r} is not a JSON object")
        return document, str(downloader.properties.etag)

    async def put(
        self, name: str, document: Mapping[str, Any], *, etag: str | None = None, create: bool = False
    ) -> bool:
        """See :meth:`DocumentStore.put`. The document is stored as compact UTF-8 JSON."""
        return await self._write(name, document, etag=etag, create=create) is not None

    async def replace(self, name: str, document: Mapping[str, Any], *, etag: str) -> str | None:
        """See :meth:`DocumentStore.replace` (``If-Match``)."""
        return await self._write(name, document, etag=etag, create=False)

    async def _write(
        self, name: str, document: Mapping[str, Any], *, etag: str | None, create: bool
    ) -> str | None:
        """The new ETag, or ``None`` when the condition did not hold."""
        check_blob_name(name)
        await self._container.ensure()
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        conditions: dict[str, Any] = {}
        if etag is not None and not create:
            conditions = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        for attempt in (1, 2):
            try:
                written = await self._container.blob(name).upload_blob(
                    body, overwrite=not create, content_settings=_JSON_CONTENT, **conditions
                )
                return str(written["etag"])
            except (ResourceExistsError, ResourceModifiedError) as exc:
                if create or etag is not None:
                    return None
                raise storage_error(exc, f"writing {name!r}") from exc
            except ResourceNotFoundError as exc:
                if etag is not None and error_code(exc) != "ContainerNotFound":
                    return None  # the blob is gone: its ETag cannot match
                if attempt == 2 or not await self._container.recreate_if_gone(exc):
                    if etag is not None:
                        return None
                    raise storage_error(exc, f"writing {name!r}") from exc
            except HttpResponseError as exc:
                if exc.status_code == 412:
                    return None
                raise storage_error(exc, f"writing {name!r}") from exc
            except AzureError as exc:
                raise storage_error(exc, f"writing {name!r}") from exc
        return None  # pragma: no cover - the loop always returns or raises

    async def first(self, prefix: str, limit: int) -> list[tuple[str, str, dict[str, str]]]:
        """The first ``limit`` names under ``prefix`` in name order, with their ETags and
        metadata: one List Blobs call (one page of at most ``limit`` results); none without
        a container."""
        pages = self._container.client.list_blobs(
            name_starts_with=prefix, include=["metadata"], results_per_page=limit
        ).by_page()
        found: list[tuple[str, str, dict[str, str]]] = []
        try:
            async for page in pages:
                async for blob in page:
                    found.append((str(blob.name), str(blob.etag), dict(blob.metadata or {})))
                break
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise storage_error(exc, f"listing {prefix!r}") from exc
        return found[:limit]

    async def put_with_metadata(
        self, name: str, document: Mapping[str, Any], metadata: Mapping[str, str]
    ) -> None:
        """Write ``document`` at ``name`` unconditionally, with ``metadata`` (ASCII values),
        which :meth:`first` lists without reading the blob."""
        check_blob_name(name)
        await self._container.ensure()
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        for attempt in (1, 2):
            try:
                await self._container.blob(name).upload_blob(
                    body, overwrite=True, content_settings=_JSON_CONTENT, metadata=dict(metadata)
                )
                return
            except ResourceNotFoundError as exc:
                if attempt == 2 or not await self._container.recreate_if_gone(exc):
                    raise storage_error(exc, f"writing {name!r}") from exc
            except AzureError as exc:
                raise storage_error(exc, f"writing {name!r}") from exc

    async def delete(self, name: str, *, etag: str | None = None) -> None:
        """See :meth:`DocumentStore.delete` (snapshots go with the blob)."""
        conditions: dict[str, Any] = {}
        if etag is not None:
            conditions = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        try:
            await self._container.blob(name).delete_blob(delete_snapshots="include", **conditions)
        except (ResourceNotFoundError, ResourceModifiedError):
            return
        except HttpResponseError as exc:
            if exc.status_code != 412:
                raise storage_error(exc, f"deleting {name!r}") from exc
        except AzureError as exc:
            raise storage_error(exc, f"deleting {name!r}") from exc
