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

Deliveries (:meth:`JobService.run`): the Functions queue trigger delivers at least once.
A message stays hidden while its delivery runs (the host renews that), is deleted when the
function returns, is visible again host.json's ``visibilityTimeout`` (a minute) after it
raises and goes to the poison queue when it raises on delivery ``maxDequeueCount``
(``NARRATION_QUEUE_MAX_DEQUEUE_COUNT``). Every receipt raises the dequeue count, and only
the latest receipt can delete or retry the message. Hence the rules:

- a delivery returns only when nothing of the job depends on it any more; it raises when
  anything was left undone (a transient failure, Storage failing at any step);
- every write of a job record is conditional on its ETag, so of racing writers one wins;
- the record's ``attempts`` is the dequeue count of the delivery that started the job and
  ``message_id`` its message. A delivery of that message with a higher dequeue count is the
  latest receipt: it takes the ``running`` job over (its owner failed without recording
  so, died, or its visibility lapsed); a stale ``running`` job is taken over by any
  delivery; an owner whose record was changed by another stops at its next write.

Stuck jobs (:meth:`JobService.status`): the worker writes a heartbeat every quarter of
``NARRATION_JOB_STALE_SECONDS`` (at most every 60 s) and on each finished segment. A job
``running`` without a heartbeat, or ``queued`` without a change, for longer than that is
stuck (:meth:`~podcast.wire.JobRecord.is_stuck`). The first poll that finds it so
re-enqueues it (``requeues`` 1, a new message); the first that finds it stuck again marks it
failed (``job_stalled``, 503). A re-enqueued job that is still ``queued`` is failed only
after ``NARRATION_JOB_MAX_QUEUED_SECONDS`` (default an hour) without a change: it may be
waiting behind a backlog (host.json takes one job at a time), and a second message is
harmless where failing it is not. So no job stays ``queued`` or ``running`` forever, and a
job is paid for at most by the deliveries of its two messages.

Nothing here logs the text, keys, URLs or SAS signatures: only job ids, statuses and
error codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

from podcast.errors import (
    IdempotencyKeyReusedError,
    JobNotFoundError,
    JobStalledError,
    PodcastError,
    StorageError,
    StorageUnavailableError,
)
from podcast.models import NarrationRequest, SubmitOptions
from podcast.services.records import (
    FINAL_STATUSES,
    JOB_ID,
    estimate_audio_seconds,
    idempotency_hash,
    idempotency_hashes,
    idempotency_name,
    iso,
    job_id_from_message,
    now,
    record_name,
    request_name,
    stored_request_fields,
)
from podcast.services.reuse import ReuseCache
from podcast.settings import JobSettings, RequestLimits
from podcast.storage.documents import DocumentStore
from podcast.wire import ErrorBody, ErrorDetails, IdempotencyEntry, JobRecord, NarrationResponse

if TYPE_CHECKING:  # the narration stack (openai, websockets) is loaded only by what narrates
    from podcast.engine.longform import ProgressCallback
    from podcast.services.narrations import StoredNarration

log = logging.getLogger(__name__)

MAX_REQUEUES: Final = 1
"""How many times a stuck job is put on the queue again before it is failed."""

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
        options: SubmitOptions | None = None,
        written_since: datetime | None = None,
    ) -> StoredNarration:
        """Narrate and store ``request``, awaiting ``on_progress(done, total)`` as segments
        finish; raises a :class:`~podcast.errors.PodcastError` (leaving nothing stored).
        ``options``: the caller's, for the script a conversation writes (outcomes stored
        since ``written_since`` answer it even when they ask to write afresh)."""
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
        accepted_digests = idempotency_hashes(request)
        key_name = idempotency_name(options.idempotency_key) if options.idempotency_key else None
        key_etag: str | None = None
        if key_name is not None:
            mapped = await documents.get(key_name)
            if mapped is not None:
                document, key_etag = mapped
                entry = IdempotencyEntry.model_validate(document)
                if entry.request_hash not in accepted_digests:
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
                record.finish_with_error(
                    ErrorBody.from_error(error),
                    status=error.http_status,
                    retry_after_seconds=error.retry_after_header(),
                )
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
        """The job's record brought up to date: a stuck job is re-enqueued once, then failed
        (:meth:`_unstick`); a follower takes its leader's outcome. ``None`` when there is no
        such job."""
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
                record.finish_with_error(
                    leader.error.body,
                    status=leader.error.status,
                    retry_after_seconds=leader.error.retry_after_seconds,
                )
            else:
                record.status = leader.status
                record.segments_done, record.segments_total = leader.segments_done, leader.segments_total
                return record
            with contextlib.suppress(PodcastError):  # materialize; the next read repeats it otherwise
                await self.documents.put(record_name(job_id), _dump(record), etag=etag)
            return record
        if record.is_stuck(self.settings.stale_seconds):
            return await self._unstick(record, etag, depth)
        return record

    async def _unstick(self, record: JobRecord, etag: str, depth: int) -> JobRecord | None:
        """A stuck job (:meth:`JobRecord.is_stuck`): re-enqueued the first time, failed
        (``job_stalled``) the second. Each is one write conditional on the record's ETag, so
        of concurrent polls (and a worker that writes meanwhile) exactly one acts; the others
        read the new record."""
        job_id, stale = record.id, self.settings.stale_seconds
        stuck_as = record.status
        if (
            record.requeues >= MAX_REQUEUES
            and stuck_as == "queued"
            and not record.is_stuck(self.settings.queued_limit_seconds)
        ):
            return record  # waiting in a backlog; failed only after NARRATION_JOB_MAX_QUEUED_SECONDS
        if record.requeues < MAX_REQUEUES:
            stalled = JobStalledError(f"no progress for {stale:.0f}s while {stuck_as}; re-enqueued")
            record.status = "queued"
            record.requeues += 1
            record.last_error = ErrorBody.from_error(stalled).error
            record.touch()
            if await self.documents.replace(record_name(job_id), _dump(record), etag=etag) is None:
                return await self._current(job_id, depth=depth + 1) if depth < 2 else record
            try:
                await self.queue.send(job_id)
            except PodcastError as error:
                log.warning("job %s: re-enqueueing failed (%s); fails if stuck again", job_id, error.code)
            else:
                log.warning("job %s stuck %.0fs while %s: re-enqueued", job_id, stale, stuck_as)
            return record
        stalled = JobStalledError(
            f"the narration job made no progress for {stale:.0f}s while {stuck_as}, also after it "
            "was re-enqueued once; submit the request again"
        )
        record.finish_with_error(ErrorBody.from_error(stalled), status=stalled.http_status)
        if await self.documents.replace(record_name(job_id), _dump(record), etag=etag) is None:
            # The worker (or another poll) wrote meanwhile: read its version.
            return await self._current(job_id, depth=depth + 1) if depth < 2 else record
        log.warning("job %s stuck %.0fs while %s, re-enqueued once: failed", job_id, stale, stuck_as)
        await self._release_claim(record)
        await self._cleanup(record)
        return record

    # --- The worker -------------------------------------------------------------------------

    async def run(self, body: bytes | str, *, dequeue_count: int, message_id: str | None = None) -> str:
        """Carry out the job named by a queue message; return what happened (for logs, tests).

        ``dequeue_count`` and ``message_id`` are the delivery's, as the host gives them. The
        message is acknowledged (deleted by the host) when this returns, so it returns only
        when nothing of the job depends on this delivery any more:

        - ``succeeded`` / ``reused``: the result is recorded;
        - ``failed``: a permanent error, or a transient one on the last delivery
          (``NARRATION_QUEUE_MAX_DEQUEUE_COUNT``), is recorded;
        - ``ignored``: a malformed message, an unknown, finished or follower job, a job
          another delivery owns (see below), or one just finished by another delivery;
        - ``superseded``: another delivery took the job over while this one narrated (this
          one stopped at its next record write, before storing anything more).

        It raises, so that the host delivers the message again, when anything was left
        undone: a transient failure before the last delivery (after putting the job back to
        ``queued`` when Storage allows), and any Storage failure in reading, starting or
        recording the job, on every delivery (on the last one the host moves the message
        to the poison queue, and the stuck rule below ends the job).

        Ownership (every write of the record is conditional on its ETag, so of two
        deliveries that race, one wins): a delivery starts a ``queued`` job, recording its
        dequeue count as ``attempts`` and its message id as ``message_id``. A ``running``
        job is taken over by a delivery of the same message with a dequeue count above
        ``attempts``: the host delivered the message again after the owner received it, so
        the owner can no longer acknowledge or retry it (it failed without recording so,
        it died, or its visibility lapsed). A stale ``running`` job (no heartbeat for
        ``NARRATION_JOB_STALE_SECONDS``) is taken over by any delivery. Any other delivery
        is ``ignored``: either it is an older receipt of the owner's message (its pop
        receipt is dead, so acknowledging it deletes nothing) or it carries the job's other
        message while the owner holds its own, which the host redelivers if the owner fails.
        An owner that finds the record changed by someone else stops narrating.

        A job stuck ``queued`` or ``running`` is re-enqueued once, then failed, by
        :meth:`status` (see the module docstring).
        """
        job_id = job_id_from_message(body)
        if job_id is None:
            log.warning("queue message is not a job id: ignored")
            return "ignored"
        delivery = _Delivery(message_id, dequeue_count, dequeue_count >= self.settings.max_dequeue_count)
        for _ in range(3):
            loaded = await self.documents.get(record_name(job_id))
            if loaded is None:
                log.warning("job %s does not exist: message ignored", job_id)
                return "ignored"
            document, etag = loaded
            record = JobRecord.model_validate(document)
            reason = self._skip_reason(record, delivery)
            if record.status in FINAL_STATUSES and record.leader is None:
                await self._cleanup(record, delivery)  # in case the finishing delivery could not
            if reason is not None:
                log.info("job %s: delivery %d ignored (%s)", job_id, dequeue_count, reason)
                return "ignored"
            outcome = await self._attempt(record, etag, delivery)
            if outcome is not None:
                return outcome
            # The record changed between our read and our write: decide again on the new one.
        raise StorageUnavailableError(f"job {job_id} kept changing while being started; try again")

    def _skip_reason(self, record: JobRecord, delivery: _Delivery) -> str | None:
        """Why ``delivery`` must leave ``record`` alone, or ``None`` when it starts or takes
        over the job (the rule in :meth:`run`)."""
        if record.status in FINAL_STATUSES:
            return "finished"
        if record.leader is not None:
            return "a follower"
        if record.status == "queued" or record.is_stale(self.settings.stale_seconds):
            return None
        same_message = record.message_id is None or delivery.message_id in (None, record.message_id)
        if not same_message:
            return "running with the job's other message"
        if delivery.dequeue_count > record.attempts:
            return None
        return f"running for delivery {record.attempts} of this message"

    async def _attempt(self, record: JobRecord, etag: str, delivery: _Delivery) -> str | None:
        """Start (or take over) the job and carry it to an outcome; ``None`` when the record
        changed before our start could be written."""
        job_id = record.id
        try:
            reusable = await self.reuse.find(record.cache_key) if record.cache_key else None
            if reusable is not None and (record.reuse or reusable.job_id == job_id):
                reused_from = reusable.job_id if reusable.job_id != job_id else None
                record.finish_with_result(reusable.result, reused_from=reused_from)
                if await self.documents.replace(record_name(job_id), _dump(record), etag=etag) is None:
                    return None
                await self._cleanup(record, delivery)
                return "reused"

            loaded = await self.documents.get(request_name(job_id))
            if loaded is None:
                raise PodcastError("the job's stored request is missing")
            request = NarrationRequest.model_validate(
                stored_request_fields(loaded[0]), context={"limits": _GENEROUS_LIMITS}
            )
        except PodcastError as error:
            if error.transient:
                raise  # nothing was changed: the host delivers the message again (or poisons it)
            return await self._fail(_Run(self.documents, record, etag, delivery), error)
        except Exception:
            if not delivery.last:
                log.exception("job %s could not be started: will be retried", job_id)
                raise
            log.exception("job %s could not be started on its last delivery", job_id)
            unexpected = PodcastError("an unexpected error occurred; it has been logged")
            return await self._fail(_Run(self.documents, record, etag, delivery), unexpected)

        taking_over = record.status == "running"
        moment = now()
        record.status = "running"
        record.attempts = delivery.dequeue_count
        record.message_id = delivery.message_id
        record.started_at = record.heartbeat_at = iso(moment)
        record.segments_done = 0
        record.touch(moment)
        started = await self.documents.replace(record_name(job_id), _dump(record), etag=etag)
        if started is None:
            return None
        log.info(
            "job %s %s (delivery %d)",
            job_id,
            "taken over" if taking_over else "running",
            delivery.dequeue_count,
        )
        run = _Run(self.documents, record, started, delivery)
        try:
            return await self._narrate(run, request)
        except PodcastError as error:
            if run.superseded:
                return self._superseded(run)
            if error.transient and not delivery.last:
                await self._requeue(run, ErrorBody.from_error(error).error)
                log.warning(
                    "job %s attempt %d failed (%s): will be retried",
                    job_id,
                    delivery.dequeue_count,
                    error.code,
                )
                raise
            log.warning("job %s failed (%s) on delivery %d", job_id, error.code, delivery.dequeue_count)
            return await self._fail(run, error)
        except Exception:
            if run.superseded:
                return self._superseded(run)
            unexpected = PodcastError("an unexpected error occurred; it has been logged")
            if not delivery.last:
                log.exception(
                    "job %s attempt %d failed unexpectedly: will be retried", job_id, delivery.dequeue_count
                )
                await self._requeue(run, ErrorBody.from_error(unexpected).error)
                raise
            log.exception("job %s failed unexpectedly on its last delivery", job_id)
            return await self._fail(run, unexpected)

    async def _narrate(self, run: _Run, request: NarrationRequest) -> str:
        """Narrate as the job's owner and record the result: ``"succeeded"``, or
        ``"superseded"`` when another delivery took the job over meanwhile (the narration is
        cancelled at our next record write). Raises what the narration raised."""
        record = run.record
        narration = asyncio.ensure_future(
            self.narrations.narrate(
                request,
                narration_id=record.id,
                on_progress=run.progress,
                time_budget_seconds=self.settings.job_time_budget_seconds,
                options=SubmitOptions(reuse=record.reuse, remember=record.store_result),
                written_since=datetime.fromisoformat(record.created_at.replace("Z", "+00:00")),
            )
        )
        run.on_superseded = narration.cancel
        heartbeat = asyncio.create_task(run.beat(self.settings.heartbeat_seconds))
        try:
            result = await narration
        except BaseException:
            if run.superseded and not _cancelling():
                return self._superseded(run)
            raise
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        if run.superseded:
            return self._superseded(run)
        response = result.to_response().without_link()
        if record.store_result and record.cache_key:
            await self.reuse.remember(record.cache_key, record.id, response)
        record.finish_with_result(response)
        if not await run.write():
            return self._superseded(run)
        log.info("job %s succeeded", record.id)
        await self._cleanup(record, run.delivery)
        return "succeeded"

    @staticmethod
    def _superseded(run: _Run) -> str:
        log.warning("job %s was taken over by another delivery: this delivery stops", run.record.id)
        return "superseded"

    async def _requeue(self, run: _Run, error: ErrorDetails) -> None:
        """Put the job back to ``queued`` for the host's retry, best effort: when Storage
        fails here, the record stays ``running`` with this delivery's ``attempts``, and the
        retry (a higher dequeue count) takes it over."""
        record = run.record
        record.status = "queued"
        record.last_error = error
        record.result = record.finished_at = None  # a result that could not be recorded
        record.touch()
        try:
            await run.write()
        except PodcastError as failure:
            log.warning("job %s: not put back to queued (%s); the retry takes over", record.id, failure.code)

    async def _fail(self, run: _Run, error: PodcastError) -> str:
        """Mark the job failed with ``error``; ``"failed"``, or ``"superseded"`` when another
        delivery owns it now. A Storage failure here propagates: the host delivers the message
        again (after the last delivery, the stuck rule of :meth:`status` ends the job)."""
        record = run.record
        record.finish_with_error(
            ErrorBody.from_error(error),
            status=error.http_status,
            retry_after_seconds=error.retry_after_header(),
        )
        if not await run.write():
            return "superseded"
        await self._release_claim(record)
        await self._cleanup(record, run.delivery)
        return "failed"

    async def _release_claim(self, record: JobRecord) -> None:
        if record.cache_key is not None:
            await self.reuse.release(record.cache_key, record.id)

    async def _cleanup(self, record: JobRecord, delivery: _Delivery | None = None) -> None:
        """Remove the finished job's stored request (the text). When Storage fails, a
        delivery before the last raises, so that its redelivery (which finds the job
        finished) removes it; otherwise it is left to the jobs container's lifecycle rule."""
        try:
            await self.documents.delete(request_name(record.id))
        except PodcastError as error:
            if delivery is not None and not delivery.last:
                raise
            log.warning("job %s: its stored request was not removed (%s)", record.id, error.code)


@dataclass(frozen=True, slots=True)
class _Delivery:
    """One delivery of a queue message: its id (``None`` when unknown), its dequeue count,
    and whether the host gives up on the message if this delivery raises."""

    message_id: str | None
    dequeue_count: int
    last: bool


def _cancelling() -> bool:
    """Whether the running task itself is being cancelled (not just the narration under it)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class _Run:
    """A job as one delivery owns it: the record, the ETag of our last write of it, and the
    writes (progress, heartbeats, the outcome), one at a time, each conditional on that ETag.

    A write refused because the record changed is retried once on the new ETag when the
    stored record is still ours (the same delivery started it: a write that Storage applied
    but reported as failed); otherwise the job was taken over: :attr:`superseded` is set,
    ``on_superseded`` runs (it cancels the narration) and nothing more is written.
    """

    def __init__(self, documents: DocumentStore, record: JobRecord, etag: str, delivery: _Delivery) -> None:
        self._documents = documents
        self.record = record
        self._etag = etag
        self.delivery = delivery
        self._started_at = record.started_at
        self._lock = asyncio.Lock()
        self.superseded = False
        self.on_superseded: Callable[[], object] | None = None

    async def write(self) -> bool:
        """Write the record; ``False`` when the job is no longer ours. Raises
        :class:`~podcast.errors.StorageError` when Storage fails."""
        async with self._lock:
            if self.superseded:
                return False
            name = record_name(self.record.id)
            for _ in range(2):
                written = await self._documents.replace(name, _dump(self.record), etag=self._etag)
                if written is not None:
                    self._etag = written
                    return True
                loaded = await self._documents.get(name)
                if loaded is None or not self._is_ours(JobRecord.model_validate(loaded[0])):
                    break
                self._etag = loaded[1]
            self.superseded = True
            if self.on_superseded is not None:
                self.on_superseded()
            return False

    def _is_ours(self, stored: JobRecord) -> bool:
        return (
            stored.status == "running"
            and stored.attempts == self.delivery.dequeue_count
            and stored.message_id == self.delivery.message_id
            and stored.started_at == self._started_at
        )

    async def progress(self, done: int, total: int) -> None:
        """``on_progress``: record ``done`` of ``total`` segments (best effort)."""
        self.record.segments_done, self.record.segments_total = done, total
        await self._beat()

    async def beat(self, interval: float) -> None:
        """Write a heartbeat every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await self._beat()

    async def _beat(self) -> None:
        moment = now()
        self.record.heartbeat_at = iso(moment)
        self.record.touch(moment)
        try:
            await self.write()
        except PodcastError as error:
            log.warning("job %s: progress not recorded (%s)", self.record.id, error.code)


def _dump(record: JobRecord) -> dict[str, Any]:
    return record.model_dump(mode="json")
