"""The object graph: every client and service of the app, built in one place from one
:class:`~podcast.settings.Settings`, and closed by one :meth:`App.aclose`.

One credential (``DefaultAzureCredential`` with the user-assigned identity's client id, when
one is configured) serves Azure OpenAI and Storage; one ``BlobServiceClient`` serves the
output container and the jobs container; one ``QueueClient`` the job queue. Each part is
built on first use, so a request that is answered without it (a 400, the health report)
never opens a connection, and a part whose settings are missing raises their
:class:`~podcast.errors.ConfigurationError` when asked for, naming the setting.

Services receive their collaborators in their constructors and never fetch anything
global; the Functions entry points (``function_app.py``) keep one :class:`App` per event
loop (aio clients belong to the loop that made them).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Awaitable, Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from podcast import logs
from podcast.settings import Settings
from podcast.storage.azure import BlobClientOptions, blob_service_client, queue_client

if TYPE_CHECKING:
    from datetime import datetime

    from azure.core.credentials_async import AsyncTokenCredential
    from azure.storage.blob.aio import BlobServiceClient
    from azure.storage.queue.aio import QueueClient

    from podcast.engine.longform import ProgressCallback
    from podcast.engine.realtime import Narrator
    from podcast.models import NarrationRequest, SubmitOptions
    from podcast.services.documents import DocumentService
    from podcast.services.downloads import DownloadService
    from podcast.services.jobs import JobService
    from podcast.services.narrations import NarrationService, StoredNarration
    from podcast.services.reuse import ReuseCache
    from podcast.services.scripts import ScriptService
    from podcast.services.shows import ShowService
    from podcast.storage.blobs import BlobStore
    from podcast.storage.documents import JsonDocuments
    from podcast.storage.files import BlobFiles
    from podcast.storage.queue import JobQueue

log = logging.getLogger(__name__)

_frozen = False


def _freeze_long_lived() -> None:
    """Leave what the process has made so far (the narration stack's modules, classes and
    functions: some 180,000 objects) out of every later garbage collection, once.

    They live as long as the process, yet each full collection walked them all: about
    100 ms with the event loop stopped, every stream waiting (the tail of a 30-minute
    narration). Called once the narration stack is imported; what requests make later is
    collected as usual."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.freeze()


class App:
    """Every client and service, built lazily from ``settings`` (see the module docstring).

    ``credential`` replaces the default credential (tests pass a fake one); the app closes
    only what it made. ``blob_options`` bound the Storage clients' retries and timeouts;
    ``client_kwargs`` go to every Storage client (blob and queue) as they are (e.g.
    ``connection_verify`` for a test server's certificate).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        credential: AsyncTokenCredential | None = None,
        blob_options: BlobClientOptions | None = None,
        client_kwargs: dict[str, Any] | None = None,
    ) -> None:
        logs.install()  # before any client exists: no logger may show a credential or the text
        self.settings = settings
        self._given_credential = credential
        self._blob_options = blob_options
        self._client_kwargs = client_kwargs or {}
        self._closers: list[Callable[[], Awaitable[object]]] = []

    @classmethod
    def from_env(cls) -> App:
        """An app configured by the process's environment (the Functions app settings)."""
        return cls(Settings.from_env())

    # --- Clients ------------------------------------------------------------------------

    @cached_property
    def credential(self) -> AsyncTokenCredential:
        """The one Entra ID credential (managed identity in Azure)."""
        if self._given_credential is not None:
            return self._given_credential
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential(managed_identity_client_id=self.settings.client_id)
        self._closers.append(credential.close)
        return credential

    @cached_property
    def blob_service(self) -> BlobServiceClient:
        """The one Blob Storage client (connection string or the credential)."""
        storage = self.settings.storage
        credential = None if storage.connection_string else self.credential
        client = blob_service_client(
            storage, credential=credential, options=self._blob_options, **self._client_kwargs
        )
        self._closers.append(client.close)
        return client

    @cached_property
    def queue_client(self) -> QueueClient:
        """The job queue's client; raises when identity-based Storage has no queue URI."""
        storage = self.settings.storage
        credential = None if storage.connection_string else self.credential
        client = queue_client(
            storage,
            self.settings.jobs.queue_name,
            credential=credential,
            options=self._blob_options,
            **self._client_kwargs,
        )
        self._closers.append(client.close)
        return client

    @cached_property
    def narrator(self) -> Narrator:
        """The Realtime client (an API key, else the credential)."""
        from podcast.engine.realtime import Narrator

        realtime = self.settings.realtime
        narrator = Narrator(realtime, credential=None if realtime.api_key else self.credential)
        self._closers.append(narrator.close)
        return narrator

    # --- Stores -------------------------------------------------------------------------

    @cached_property
    def outputs(self) -> BlobStore:
        """The output container: audio, transcripts, error records, read-only links."""
        from podcast.storage.blobs import BlobStore

        return BlobStore(self.blob_service, self.settings.storage.output_container)

    @cached_property
    def inputs(self) -> BlobStore:
        """The input container (uploaded documents): read for their current versions only."""
        from podcast.storage.blobs import BlobStore

        return BlobStore(self.blob_service, self.settings.storage.input_container)

    @cached_property
    def job_documents(self) -> JsonDocuments:
        """The jobs container's documents: job records, requests, idempotency keys, reuse entries."""
        from podcast.storage.documents import Container, JsonDocuments

        return JsonDocuments(
            Container(self.blob_service.get_container_client(self.settings.jobs.jobs_container))
        )

    @cached_property
    def job_queue(self) -> JobQueue:
        from podcast.storage.queue import JobQueue

        return JobQueue(self.queue_client)

    # --- Services -----------------------------------------------------------------------

    @cached_property
    def reuse(self) -> ReuseCache:
        from podcast.services.reuse import ReuseCache

        return ReuseCache(self.job_documents, self.outputs)

    @cached_property
    def narrations(self) -> NarrationService:
        """Narration into the output container. Needs the Realtime and Storage settings."""
        from podcast.services.narrations import NarrationService

        narrator = self.narrator  # names a missing Azure OpenAI setting before Storage's
        service = NarrationService(
            narrator,
            self.outputs,
            self.reuse,
            narration=self.settings.narration,
            pipeline=self.settings.pipeline,
            index=self.job_documents,
            files=self.files,
            shows=self.shows,
            scripts=self.scripts,
        )
        _freeze_long_lived()
        return service

    @cached_property
    def scripts(self) -> ScriptService:
        """Conversation scripts, written by the Realtime deployment's text output and kept in
        the jobs container. Needs the Realtime and Storage settings."""
        from podcast.engine.scriptwriter import ScriptWriter
        from podcast.services.scripts import ScriptService

        narrator = self.narrator  # names a missing Azure OpenAI setting before Storage's
        return ScriptService(
            ScriptWriter(narrator, concurrency=self.settings.narration.concurrency),
            self.job_documents,
            deployment=self.settings.realtime.deployment,
            budget_seconds=self.settings.pipeline.time_budget_seconds,
            claim_seconds=self.settings.pipeline.script_claim_seconds,
            wait_seconds=self.settings.pipeline.script_wait_seconds,
        )

    @cached_property
    def files(self) -> BlobFiles:
        """The output container's files other than the audio: captions, and reading any back."""
        from podcast.storage.files import BlobFiles

        return BlobFiles(self.blob_service, self.settings.storage.output_container)

    @cached_property
    def downloads(self) -> DownloadService:
        """Stored narrations by id, with fresh links, and their files. Needs only Storage."""
        from podcast.services.downloads import DownloadService

        return DownloadService(self.job_documents, self.files, self.outputs)

    @cached_property
    def shows(self) -> ShowService:
        """Shows (in the jobs container) and their feeds (links into the output container).
        Needs only Storage."""
        from podcast.services.shows import ShowService

        return ShowService(self.job_documents, self.outputs, self.settings.feeds)

    @cached_property
    def jobs(self) -> JobService:
        """Asynchronous jobs. Also needs the job queue.

        Its narrations are :attr:`narrations`, made when a job first narrates: a status poll
        never loads the Realtime stack. A missing Azure OpenAI setting is still named first.
        """
        from podcast.services.jobs import JobService

        self.settings.realtime  # noqa: B018 - raises naming a missing Azure OpenAI setting
        return JobService(
            self.job_documents, self.job_queue, _NarrationsOnFirstUse(self), self.reuse, self.settings.jobs
        )

    @cached_property
    def documents(self) -> DocumentService:
        """Uploaded documents (the blob trigger)."""
        from podcast.services.documents import DocumentService

        return DocumentService(
            self.narrations,
            self.settings.storage,
            self.settings.documents,
            self.settings.limits,
            sources=self.inputs,
            claims=self.job_documents,
        )

    async def aclose(self) -> None:
        """Close every client this app made, newest first; never raises."""
        closers, self._closers = self._closers[::-1], []
        for close in closers:
            with contextlib.suppress(Exception):
                await close()


class _NarrationsOnFirstUse:
    """The job service's narrations: ``app.narrations``, made on first use."""

    def __init__(self, app: App) -> None:
        self._app = app

    @property
    def deployment(self) -> str:
        return self._app.settings.realtime.deployment

    async def narrate(
        self,
        request: NarrationRequest,
        *,
        narration_id: str | None = None,
        on_progress: ProgressCallback | None = None,
        time_budget_seconds: float | None = None,
        options: SubmitOptions | None = None,
        written_since: datetime | None = None,
    ) -> StoredNarration:
        return await self._app.narrations.narrate(
            request,
            narration_id=narration_id,
            on_progress=on_progress,
            time_budget_seconds=time_budget_seconds,
            options=options,
            written_since=written_since,
        )


class AppHolder:
    """One :class:`App` per running event loop, made on first use and closed from its loop.

    Azure Functions wants one client per process; aio clients belong to the event loop that
    made them, and tests start a new loop for every test, so an app made in another loop
    is dropped (not closed: its loop may be gone) and a new one made.
    """

    def __init__(self, factory: Callable[[], App] = App.from_env) -> None:
        self._factory = factory
        self._app: App | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> App:
        """The app of the running loop. Raises ``RuntimeError`` outside a running loop."""
        loop = asyncio.get_running_loop()
        if self._app is None or self._loop is not loop:
            self._app, self._loop = self._factory(), loop
        return self._app

    def use(self, factory: Callable[[], App]) -> None:
        """Make later apps with ``factory`` (tests, the dev host); forgets the current one."""
        self._factory = factory
        self.forget()

    async def aclose(self) -> None:
        """Close and forget the app, when the running loop made it."""
        app, loop = self._app, self._loop
        self.forget()
        if app is not None and loop is asyncio.get_running_loop():
            await app.aclose()

    def forget(self) -> None:
        self._app = None
        self._loop = None
