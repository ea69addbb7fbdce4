"""Asynchronous narration jobs: submission, status and the queue-triggered work.

The asynchronous request-reply pattern that Power Automate, Logic Apps and most HTTP
clients follow: ``POST /api/narrations`` stores a job and enqueues its id
(:meth:`JobService.submit`, answered 202 with ``Location``), the worker runs the same
narration as the synchronous path with a longer budget (:meth:`JobService.run`), and the
status URL answers 202 until the job is finished, then the synchronous 200 body with a
fresh link, or the error body with its status (:meth:`JobService.status`).

Identical requests reuse audio (:mod:`podcast.services.reuse`): a finished result is
answered again with a fresh link, and an asynchronous request identical to one still
queued or running becomes a *follower* of that job (no second narration, no second queue
message). Concurrent duplicates that race past each other may still be narrated twice;
that costs money, never correctness.

Stale jobs: the worker writes a heartbeat every quarter of ``NARRATION_JOB_STALE_SECONDS``
(at most every 60 s) and on each finished segment. A status request that finds a job
``running`` without an update for longer than that marks it failed (``job_stalled``, 503);
it is never re-enqueued, so a job is paid for at most by the deliveries of its one message.

Nothing here logs the text, keys, URLs or SAS signatures: only job ids, statuses and
error codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from podcast.errors import (
    IdempotencyKeyReusedError,
    JobNotFoundError,
    JobStalledError,
    PodcastError,
    StorageError,
)
from podcast.models import NarrationRequest, SubmitOptions
from podcast.services.records import (
    FINAL_STATUSES,
    JOB_ID,
    estimate_audio_seconds,
    idempotency_hash,
    idempotency_name,
    iso,
    job_id_from_message,
    now,
    record_name,
    request_name,
)
from podcast.services.reuse import ReuseCache
from podcast.settings import JobSettings, RequestLimits
from podcast.storage.documents import DocumentStore
from podcast.wire import ErrorBody, ErrorDetails, IdempotencyEntry, JobRecord, NarrationResponse

if TYPE_CHECKING:  # the narration stack (openai, websockets) is loaded only by what narrates
    from podcast.engine.longform import ProgressCallback
    from podcast.services.narrations import StoredNarration

log = logging.getLogger(__name__)

_GENEROUS_LIMITS: Final = RequestLimits(max_text_characters=1_000_000, max_sas_expiry_minutes=10_080)
"""Stored requests were validated on submission; settings changed since must not reject them."""


class Queue(Protocol):
    """Where job ids go for the worker (:class:`~podcast.storage.queue.JobQueue`)."""

    async def send(self, job_id: str) -> None: ...


class Narrations(Protocol):
    """What narrates a job (:class:`~podcast.services.narrations.NarrationService`)."""

    @property
    def deployment(self) -> str:
        """The deployment that narrates (part of every reuse key)."""
        ...

    async def narrate(
        self,
        request: NarrationRequest,
        *,
        narration_id: str | None = None,
        on_progress: ProgressCallback | None = None,
        time_budget_seconds: float | None = None,
    ) -> StoredNarration:
        """Narrate and store ``request``, awaiting ``on_progress(done, total)`` as segments
        finish; raises a :class:`~podcast.errors.PodcastError` (leaving nothing stored)."""
        ...


@dataclass(frozen=True, slots=True)
class JobView:
    """A job as a poll sees it: its up-to-date record and, once it succeeded, the 200 body
    with a fresh link."""

    record: JobRecord
    result: NarrationResponse | None = None


class JobService:
    """Jobs in ``documents`` (the jobs container) with ids on ``queue``, narrated by
    ``narrations``. Owns none of them."""

    def __init__(
        self,
        documents: DocumentStore,
        queue: Queue,
        narrations: Narrations,
        reuse: ReuseCache,
        settings: JobSettings,
    ) -> None:
        self.documents = documents
        self.queue = queue
        self.narrations = narrations
        self.reuse = reuse
        self.settings = settings

    def should_queue(self, request: NarrationRequest, options: SubmitOptions) -> bool:
        """Whether ``request`` runs as a job: asked for, or too long for the synchronous budget."""
        return options.respond_async or estimate_audio_seconds(request) > self.settings.sync_max_audio_seconds

    # --- POST -----------------------------------------------------------------------------

    async def submit(self, request: NarrationRequest, options: SubmitOptions) -> JobRecord:
        """Find or make the job for ``request`` and return its record. Raises a
        :class:`~podcast.errors.PodcastError` (``IdempotencyKeyReusedError``, Storage)."""
        key = self.reuse.key(request, self.narrations.deployment)
        for _ in range(3):
            record = await self._submit_once(request, options, key)
            if record is not None:
                return record
        raise StorageError("the Idempotency-Key kept changing hands; try again")

    async def _submit_once(
        self, request: NarrationRequest, options: SubmitOptions, key: str
    ) -> JobRecord | None:
        """``None`` when another request took the Idempotency-Key between our read and our
        write (the caller tries again and finds that job)."""
        documents = self.documents
        request_digest = idempotency_hash(request)
        key_name = idempotency_name(options.idempotency_key) if options.idempotency_key else None
        key_etag: str | None = None
        if key_name is not None:
            mapped = await documents.get(key_name)
            if mapped is not None:
                document, key_etag = mapped
                entry = IdempotencyEntry.model_validate(document)
                if entry.request_hash != request_digest:
                    raise IdempotencyKeyReusedError()
                existing = await self._current(entry.job_id)
                if existing is not None and existing.status != "failed":
                    log.info("job %s found again by its idempotency key", existing.id)
                    return existing
                # The key's job failed (or vanished): this request starts a new job.

        moment = iso(now())
        estimate = estimate_audio_seconds(request)
        record = JobRecord(
            id=uuid.uuid4().hex,
            status="queued",
            created_at=moment,
            updated_at=moment,
            estimated_audio_seconds=estimate,
            sas_expiry_minutes=request.sas_expiry_minutes,
            cache_key=key,
            reuse=options.reuse,
            store_result=options.remember,
        )
        claim_etag: str | None = None
        leader = True
        if options.reuse:
            reusable = await self.reuse.find(key)
            if reusable is not None:
                record.finish_with_result(reusable.result, reused_from=reusable.job_id)
                leader = False
            else:
                active, claim_etag = await self._active_leader(key)
                if active is not None:
                    record.leader = active.id
                    record.segments_total = active.segments_total
                    leader = False
        if leader:
            await documents.put(request_name(record.id), request.model_dump(mode="json", exclude_unset=True))
        await documents.put(record_name(record.id), _dump(record), create=True)

        if key_name is not None:
            mapping = IdempotencyEntry(job_id=record.id, request_hash=request_digest, created_at=moment)
            if not await documents.put(
                key_name, mapping.model_dump(mode="json"), etag=key_etag, create=key_etag is None
            ):
                # Another request with this key won the race: answer with its job instead.
                await documents.delete(record_name(record.id))
                await documents.delete(request_name(record.id))
                return None

        if leader:
            if options.remember:
                await self.reuse.claim(key, record.id, etag=claim_etag)
            try:
                await self.queue.send(record.id)
            except PodcastError as error:
                record.finish_with_error(ErrorBody.from_error(error), status=error.http_status)
                with contextlib.suppress(PodcastError):
                    await documents.put(record_name(record.id), _dump(record))
                    await self._release_claim(record)
                    await documents.delete(request_name(record.id))
                raise
        log.info(
            "job %s accepted: %s, estimated audio %.0fs",
            record.id,
            "narration queued"
            if leader
            else ("following job " + record.leader if record.leader else "reusing finished audio"),
            estimate,
        )
        return record

    async def _active_leader(self, key: str) -> tuple[JobRecord | None, str | None]:
        """The queued or running job that claimed this content, if any; else ``None`` and the
        ETag of the reuse entry to replace (``None`` when there is none)."""
        job_id, etag = await self.reuse.pending(key)
        if job_id is not None:
            leader = await self._current(job_id)
            if leader is not None and leader.status in ("queued", "running"):
                return leader, etag
        return None, etag

    # --- GET ------------------------------------------------------------------------------

    async def status(self, job_id: str) -> JobView:
        """The job as a poll sees it. Raises :class:`~podcast.errors.JobNotFoundError` for an
        unknown or malformed id."""
        record = await self._current(job_id)
        if record is None:
            raise JobNotFoundError()
        if record.status == "succeeded" and record.result is not None:
            return JobView(record, await self.reuse.signed(record.result, record.sas_expiry_minutes))
        return JobView(record)

    async def _current(self, job_id: str, *, depth: int = 0) -> JobRecord | None:
        """The job's record brought up to date: a stale ``running`` job is marked failed, a
        follower takes its leader's outcome. ``None`` when there is no such job."""
        if not JOB_ID.fullmatch(job_id):
            return None
        loaded = await self.documents.get(record_name(job_id))
        if loaded is None:
            return None
        document, etag = loaded
        record = JobRecord.model_validate(document)
        if record.status in FINAL_STATUSES:
            return record
        if record.leader is not None:
            leader = await self._current(record.leader, depth=depth + 1) if depth < 2 else None
            if leader is None:
                stalled = JobStalledError("the narration this job was waiting for is gone")
                record.finish_with_error(ErrorBody.from_error(stalled), status=stalled.http_status)
            elif leader.status == "succeeded" and leader.result is not None:
                record.finish_with_result(leader.result, reused_from=leader.id)
            elif leader.status == "failed" and leader.error is not None:
                record.finish_with_error(leader.error.body, status=leader.error.status)
            else:
                record.status = leader.status
                record.segments_done, record.segments_total = leader.segments_done, leader.segments_total
                return record
            with contextlib.suppress(PodcastError):  # materialize; the next read repeats it otherwise
                await self.documents.put(record_name(job_id), _dump(record), etag=etag)
            return record
        if record.is_stale(self.settings.stale_seconds):
            stalled = JobStalledError()
            record.finish_with_error(ErrorBody.from_error(stalled), status=stalled.http_status)
            if await self.documents.put(record_name(job_id), _dump(record), etag=etag):
                log.warning(
                    "job %s had no heartbeat for %.0fs: marked failed", job_id, self.settings.stale_seconds
                )
                await self._release_claim(record)
                with contextlib.suppress(PodcastError):
                    await self.documents.delete(request_name(job_id))
                return record
            # The worker wrote meanwhile, so it is alive: read its version.
            return await self._current(job_id, depth=depth + 1) if depth < 2 else record
        return record

    # --- The worker -------------------------------------------------------------------------

    async def run(self, body: bytes | str, *, dequeue_count: int) -> str:
        """Carry out the job named by a queue message; return what happened (for logs, tests).

        Returns normally when the job is done with, whatever its outcome: finished
        (``succeeded``, ``reused``), ``failed`` (a permanent error, or a transient one on
        the last delivery, ``NARRATION_QUEUE_MAX_DEQUEUE_COUNT``), or nothing to do
        (``ignored``: a malformed message, an unknown job, a finished job, a follower, or a
        job another worker is running). Raises the error of a transient failure before the
        last delivery, after putting the job back to ``queued``, so the host retries.

        Known gap (Storage failing twice in a row): when the write back to ``queued`` fails
        too, the record stays ``running``; the redelivery then ignores it and only the stale
        rule ends the job (``job_stalled``). On the last delivery, a failure to record the
        failure propagates instead of returning ``failed``.
        """
        job_id = job_id_from_message(body)
        if job_id is None:
            log.warning("queue message is not a job id: ignored")
            return "ignored"
        loaded = await self.documents.get(record_name(job_id))
        if loaded is None:
            log.warning("job %s does not exist: message ignored", job_id)
            return "ignored"
        document, etag = loaded
        record = JobRecord.model_validate(document)
        if record.status in FINAL_STATUSES or record.leader is not None:
            return "ignored"
        if record.status == "running" and not record.is_stale(self.settings.stale_seconds):
            log.warning("job %s is running elsewhere: message ignored", job_id)
            return "ignored"
        last = dequeue_count >= self.settings.max_dequeue_count
        try:
            return await self._work(record, etag, dequeue_count)
        except PodcastError as error:
            if error.transient and not last:
                await self._requeue(record, ErrorBody.from_error(error).error)
                log.warning(
                    "job %s attempt %d failed (%s): will be retried", job_id, dequeue_count, error.code
                )
                raise
            await self._fail(record, error)
            log.warning("job %s failed (%s) on delivery %d", job_id, error.code, dequeue_count)
            return "failed"
        except Exception:
            if not last:
                log.exception("job %s attempt %d failed unexpectedly: will be retried", job_id, dequeue_count)
                unexpected = PodcastError("an unexpected error occurred; it has been logged")
                await self._requeue(record, ErrorBody.from_error(unexpected).error)
                raise
            log.exception("job %s failed unexpectedly on its last delivery", job_id)
            await self._fail(record, PodcastError("an unexpected error occurred; it has been logged"))
            return "failed"

    async def _work(self, record: JobRecord, etag: str, dequeue_count: int) -> str:
        documents = self.documents
        reusable = await self.reuse.find(record.cache_key) if record.cache_key else None
        if reusable is not None and (record.reuse or reusable.job_id == record.id):
            reused_from = reusable.job_id if reusable.job_id != record.id else None
            record.finish_with_result(reusable.result, reused_from=reused_from)
            await documents.put(record_name(record.id), _dump(record))
            await self._cleanup(record)
            return "reused"

        loaded = await documents.get(request_name(record.id))
        if loaded is None:
            raise PodcastError("the job's stored request is missing")
        request = NarrationRequest.model_validate(loaded[0], context={"limits": _GENEROUS_LIMITS})

        moment = now()
        record.status = "running"
        record.attempts = dequeue_count
        record.started_at = record.heartbeat_at = iso(moment)
        record.segments_done = 0
        record.touch(moment)
        if not await documents.put(record_name(record.id), _dump(record), etag=etag):
            log.warning("job %s changed while being started (another delivery?): message ignored", record.id)
            return "ignored"
        log.info("job %s running (delivery %d)", record.id, dequeue_count)

        progress = _Progress(documents, record)
        heartbeat = asyncio.create_task(progress.beat(self.settings.heartbeat_seconds))
        try:
            result = await self.narrations.narrate(
                request,
                narration_id=record.id,
                on_progress=progress.update,
                time_budget_seconds=self.settings.job_time_budget_seconds,
            )
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        response = result.to_response().without_link()
        if record.store_result and record.cache_key:
            await self.reuse.remember(record.cache_key, record.id, response)
        record.finish_with_result(response)
        await documents.put(record_name(record.id), _dump(record))
        await self._cleanup(record)
        log.info("job %s succeeded", record.id)
        return "succeeded"

    async def _requeue(self, record: JobRecord, error: ErrorDetails) -> None:
        record.status = "queued"
        record.last_error = error
        record.touch()
        with contextlib.suppress(PodcastError):
            await self.documents.put(record_name(record.id), _dump(record))

    async def _fail(self, record: JobRecord, error: PodcastError) -> None:
        """Mark the job failed with ``error``. A Storage failure here propagates (before the
        last delivery the host retries; after it, the stale rule marks the job failed)."""
        record.finish_with_error(ErrorBody.from_error(error), status=error.http_status)
        await self.documents.put(record_name(record.id), _dump(record))
        await self._release_claim(record)
        await self._cleanup(record)

    async def _release_claim(self, record: JobRecord) -> None:
        if record.cache_key is not None:
            await self.reuse.release(record.cache_key, record.id)

    async def _cleanup(self, record: JobRecord) -> None:
        """Remove the finished job's stored request (the text), best effort."""
        with contextlib.suppress(PodcastError):
            await self.documents.delete(request_name(record.id))


class _Progress:
    """Writes a running job's progress and heartbeat, one write at a time, best effort."""

    def __init__(self, documents: DocumentStore, record: JobRecord) -> None:
        self._documents = documents
        self._record = record
        self._lock = asyncio.Lock()

    async def update(self, done: int, total: int) -> None:
        self._record.segments_done, self._record.segments_total = done, total
        await self._write()

    async def beat(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self._write()

    async def _write(self) -> None:
        async with self._lock:
            moment = now()
            self._record.heartbeat_at = iso(moment)
            self._record.touch(moment)
            try:
                await self._documents.put(record_name(self._record.id), _dump(self._record))
            except PodcastError as error:
                log.warning("job %s: progress not recorded (%s)", self._record.id, error.code)


def _dump(record: JobRecord) -> dict[str, Any]:
    return record.model_dump(mode="json")
