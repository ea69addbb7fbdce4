"""The job queue: narration job ids for the queue-triggered worker."""

from __future__ import annotations

import asyncio
import contextlib

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue.aio import QueueClient

from podcast.storage.azure import error_code, storage_error


class JobQueue:
    """Sends job ids on one queue (created on first use, and again if it disappears: deleted,
    or an emulator restarted empty). The message is the id alone, as base64 text (the queue
    trigger's default ``messageEncoding``)."""

    def __init__(self, client: QueueClient) -> None:
        self._client = client
        self._ready = False
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return str(self._client.queue_name)

    async def send(self, job_id: str) -> None:
        """Enqueue ``job_id``; raises :class:`~podcast.errors.StorageError` when Storage fails.
        A ``QueueNotFound`` re-creates the queue and sends once more."""
        for attempt in (1, 2):
            try:
                async with self._lock:
                    if not self._ready:
                        with contextlib.suppress(ResourceExistsError):
                            await self._client.create_queue()
                        self._ready = True
                await self._client.send_message(job_id)
                return
            except ResourceNotFoundError as exc:
                if attempt == 2 or error_code(exc) != "QueueNotFound":
                    raise storage_error(exc, f"enqueueing job {job_id}") from exc
                self._ready = False
            except AzureError as exc:
                raise storage_error(exc, f"enqueueing job {job_id}") from exc
