"""The job queue: narration job ids for the queue-triggered worker."""

from __future__ import annotations

import asyncio
import contextlib

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue.aio import QueueClient

from podcast.storage.azure import storage_error


class JobQueue:
    """Sends job ids on one queue (created on first use). The message is the id alone, as
    base64 text (the queue trigger's default ``messageEncoding``)."""

    def __init__(self, client: QueueClient) -> None:
        self._client = client
        self._ready = False
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return str(self._client.queue_name)

    async def send(self, job_id: str) -> None:
        """Enqueue ``job_id``; raises :class:`~podcast.errors.StorageError` when Storage fails."""
        try:
            async with self._lock:
                if not self._ready:
                    with contextlib.suppress(ResourceExistsError):
                        await self._client.create_queue()
                    self._ready = True
            await self._client.send_message(job_id)
        except AzureError as exc:
            raise storage_error(exc, f"enqueueing job {job_id}") from exc
