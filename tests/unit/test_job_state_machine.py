"""The asynchronous job state machine (JobService and ReuseCache) over in-memory fakes.

queued → running → succeeded or failed, followers, Idempotency-Key races, stale jobs,
re-queueing and Storage faults, in milliseconds and offline. The fakes
(:mod:`testkit.fakes`) are held to Blob Storage's behaviour by
``tests/integration/test_document_store_contract.py``; what the real Storage and queue do
end to end is ``tests/integration/test_jobs.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from podcast.errors import (
    AuthenticationError,
    IdempotencyKeyReusedError,
    JobNotFoundError,
    ServiceUnavailableError,
    StorageUnavailableError,
)
from podcast.models import NarrationRequest, RequestLimits, SubmitOptions, parse_request
from podcast.services.jobs import JobService
from podcast.services.records import FINAL_STATUSES, idempotency_name, iso, now, record_name, request_name
from podcast.services.reuse import ReuseCache, entry_name
from podcast.settings import JobSettings
from podcast.wire import JobRecord
from testkit.fakes import InMemoryDocuments, InMemoryOutputs, InMemoryQueue, Narrated, ScriptedNarrations

ASYNC = SubmitOptions(respond_async=True)


@dataclass
class World:
    documents: InMemoryDocuments
    queue: InMemoryQueue
    outputs: InMemoryOutputs
    narrations: ScriptedNarrations
    reuse: ReuseCache
    settings: JobSettings
    jobs: JobService

    def record(self, job_id: str) -> JobRecord:
        document = self.documents.document(record_name(job_id))
        assert document is not None, f"no record for job {job_id}"
        return JobRecord.model_validate(document)

    def cache_entry(self, record: JobRecord) -> dict[str, Any] | None:
        assert record.cache_key is not None
        return self.documents.document(entry_name(record.cache_key))

    def record_writes(self, job_id: str) -> list[JobRecord]:
        return [JobRecord.model_validate(d) for d in self.documents.writes(record_name(job_id))]

    async def mark_running(self, job_id: str, *, attempts: int, message_id: str | None) -> None:
        """Make the stored record look as a delivery that just started it would leave it."""
        record = self.record(job_id)
        record.status = "running"
        record.attempts, record.message_id = attempts, message_id
        record.started_at = record.heartbeat_at = iso(now())
        record.touch()
        await self.documents.put(record_name(job_id), record.model_dump(mode="json"))

    async def backdate_heartbeat(self, job_id: str, seconds: float) -> None:
        """Make the stored record look as if its worker last reported ``seconds`` ago."""
        record = self.record(job_id)
        record.heartbeat_at = record.updated_at = iso(now() - timedelta(seconds=seconds))
        await self.documents.put(record_name(job_id), record.model_dump(mode="json"))


def make_world(
    *,
    stale_seconds: float = 300.0,
    max_dequeue_count: int = 3,
    segment_seconds: float = 0.0,
    max_queued_seconds: float | None = None,
) -> World:
    documents, queue, outputs = InMemoryDocuments(), InMemoryQueue(), InMemoryOutputs("narrations")
    narrations = ScriptedNarrations(outputs, deployment="fake-realtime", segment_seconds=segment_seconds)
    reuse = ReuseCache(documents, outputs)
    settings = JobSettings(
        stale_seconds=stale_seconds,
        max_dequeue_count=max_dequeue_count,
        job_time_budget_seconds=120.0,
        max_queued_seconds=max_queued_seconds if max_queued_seconds is not None else stale_seconds,
    )
    jobs = JobService(documents, queue, narrations, reuse, settings)
    return World(documents, queue, outputs, narrations, reuse, settings, jobs)


@dataclass
class Message:
    """A queue message as the host sees it: its own id, the job id it carries, its dequeue count."""

    job_id: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    dequeue_count: int = 0


class Host:
    """What the Functions host does with the job queue, over the world's ``InMemoryQueue``.

    Every id sent becomes a message with its own id. A delivery raises the message's dequeue
    count and calls ``JobService.run`` with it; when ``run`` returns the message is deleted,
    when it raises the message is visible again (after host.json's ``visibilityTimeout``,
    which is not waited for here) or, on its ``max_dequeue_count``-th delivery, moved to
    :attr:`poisoned`. :meth:`receive` takes a message without running it (its worker died:
    the message stays hidden until a test delivers it again, as after its visibility lapsed).
    """

    def __init__(self, world: World) -> None:
        self.world = world
        self.visible: deque[Message] = deque()
        self.in_flight: list[Message] = []
        self.poisoned: list[Message] = []
        self.deleted: list[Message] = []
        self._arrived = 0

    def receive(self) -> Message | None:
        sent = self.world.queue.sent
        self.visible.extend(Message(job_id) for job_id in sent[self._arrived :])
        self._arrived = len(sent)
        if not self.visible:
            return None
        message = self.visible.popleft()
        message.dequeue_count += 1
        self.in_flight.append(message)
        return message

    async def deliver(self, message: Message | None = None) -> str | Exception | None:
        """One delivery of the next visible message (or of ``message`` again): what ``run``
        returned or raised; ``None`` when no message is visible."""
        if message is None:
            message = self.receive()
            if message is None:
                return None
        else:
            message.dequeue_count += 1
        try:
            outcome = await self.world.jobs.run(
                message.job_id, dequeue_count=message.dequeue_count, message_id=message.id
            )
        except Exception as error:
            self.in_flight.remove(message)
            if message.dequeue_count >= self.world.settings.max_dequeue_count:
                self.poisoned.append(message)
            else:
                self.visible.append(message)
            return error
        self.in_flight.remove(message)
        self.deleted.append(message)
        return outcome


async def settle(world: World, host: Host, job_id: str, *, rounds: int = 12) -> JobRecord:
    """Let the host deliver what is visible and poll the job, letting the stale timeout pass
    whenever nothing was delivered; the final record, once no message is left. Fails if
    the job is still unfinished after ``rounds`` (a job answered 202 forever)."""
    for _ in range(rounds):
        delivered = await host.deliver()
        view = await world.jobs.status(job_id)
        if view.record.status in FINAL_STATUSES and not host.visible:
            return view.record
        if delivered is None:
            await world.backdate_heartbeat(job_id, world.settings.stale_seconds + 1)
    raise AssertionError(f"job still {world.record(job_id).status} after {rounds} polls")


@pytest.fixture
def world() -> World:
    return make_world()


def request(text: str = "Rivers run to the sea. The sea is never full.", **fields: Any) -> NarrationRequest:
    return parse_request({"text": text, **fields}, RequestLimits())


def pending_claim(entry: dict[str, Any] | None) -> str | None:
    """The job id of a ``pending`` reuse entry (``None`` when there is no such entry)."""
    if entry is None or entry["state"] != "pending":
        return None
    assert set(entry) == {"state", "job_id", "updated_at"}
    return str(entry["job_id"])


def timestamp(value: str | None) -> datetime:
    assert value is not None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- Submit and run ------------------------------------------------------------------------------


async def test_submit_stores_a_queued_record_and_the_request_and_sends_the_id(world: World) -> None:
    req = request(title="Rivers")
    record = await world.jobs.submit(req, ASYNC)

    assert record.status == "queued"
    assert world.record(record.id) == record
    assert world.documents.document(request_name(record.id)) == req.model_dump(
        mode="json", exclude_unset=True
    )
    assert world.queue.sent == [record.id]
    assert record.cache_key == world.reuse.key(req, "fake-realtime")
    assert pending_claim(world.cache_entry(record)) == record.id
    assert world.narrations.calls == []


async def test_run_moves_the_job_to_running_then_succeeded_with_progress_and_heartbeats(world: World) -> None:
    world.narrations.script(Narrated(segments=3, duration_seconds=9.0))
    record = await world.jobs.submit(request(), ASYNC)

    assert await world.jobs.run(record.id.encode(), dequeue_count=1) == "succeeded"

    writes = world.record_writes(record.id)
    assert [(w.status, w.segments_done, w.segments_total) for w in writes] == [
        ("queued", 0, None),
        ("running", 0, None),
        ("running", 1, 3),
        ("running", 2, 3),
        ("running", 3, 3),
        ("succeeded", 3, 3),
    ]
    running = writes[1]
    assert running.attempts == 1
    assert running.started_at is not None
    assert running.heartbeat_at == running.started_at
    heartbeats = [timestamp(w.heartbeat_at) for w in writes[1:]]
    assert heartbeats == sorted(heartbeats)

    final = world.record(record.id)
    assert final.status == "succeeded"
    assert final.finished_at is not None
    assert final.error is None
    assert final.reused_from is None
    assert final.result is not None
    assert final.result.audio_url is None  # stored without its link
    assert final.result.id == record.id
    assert final.result.segments == 3
    assert final.result.duration_seconds == 9.0
    assert world.documents.document(request_name(record.id)) is None

    entry = world.cache_entry(final)
    assert entry is not None
    assert entry["state"] == "succeeded"
    assert entry["job_id"] == record.id
    assert entry["result"] == final.result.model_dump(mode="json")

    [call] = world.narrations.calls
    assert call.narration_id == record.id
    assert call.time_budget_seconds == world.settings.job_time_budget_seconds
    assert call.progress == [(1, 3), (2, 3), (3, 3)]

    view = await world.jobs.status(record.id)
    assert view.record.status == "succeeded"
    assert view.result is not None
    assert view.result.audio_url is not None
    assert view.result.audio_url.startswith(
        f"https://fake.blob.core.windows.net/narrations/{final.result.blob_name}?"
    )
    assert "sig=" in view.result.audio_url
    assert view.result.expires_at is not None


async def test_a_long_narration_writes_heartbeats_between_segments() -> None:
    world = make_world(stale_seconds=1.0, segment_seconds=0.2)  # a heartbeat every 0.25 s
    world.narrations.script(Narrated(segments=3))
    record = await world.jobs.submit(request(), ASYNC)

    assert await world.jobs.run(record.id, dequeue_count=1) == "succeeded"

    running = [w for w in world.record_writes(record.id) if w.status == "running"]
    assert len(running) > 1 + 3  # the start, three segments and at least one heartbeat
    assert [w.heartbeat_at for w in running] == sorted(w.heartbeat_at or "" for w in running)
    assert world.record(record.id).status == "succeeded"


async def test_a_transient_failure_before_the_last_delivery_requeues_the_job_and_raises(world: World) -> None:
    error = ServiceUnavailableError("Azure OpenAI answered 503")
    world.narrations.script(error)
    record = await world.jobs.submit(request(), ASYNC)

    with pytest.raises(ServiceUnavailableError) as raised:
        await world.jobs.run(record.id, dequeue_count=1)
    assert raised.value is error

    queued = world.record(record.id)
    assert queued.status == "queued"
    assert queued.attempts == 1
    assert queued.last_error is not None
    assert queued.last_error.code == "upstream_unavailable"
    assert queued.error is None
    assert world.documents.document(request_name(record.id)) is not None  # kept for the retry
    assert pending_claim(world.cache_entry(queued)) == record.id

    assert await world.jobs.run(record.id, dequeue_count=2) == "succeeded"
    assert world.record(record.id).attempts == 2
    assert len(world.narrations.calls) == 2


async def test_a_transient_failure_on_the_last_delivery_fails_the_job(world: World) -> None:
    world.narrations.script(ServiceUnavailableError("Azure OpenAI answered 503"))
    record = await world.jobs.submit(request(), ASYNC)

    assert await world.jobs.run(record.id, dequeue_count=world.settings.max_dequeue_count) == "failed"

    failed = world.record(record.id)
    assert failed.status == "failed"
    assert failed.finished_at is not None
    assert failed.error is not None
    assert failed.error.status == 503
    assert failed.error.body.error.code == "upstream_unavailable"
    assert failed.error.body.error.message == "Azure OpenAI answered 503"
    assert world.documents.document(request_name(record.id)) is None
    assert world.cache_entry(failed) is None  # the claim is released
    view = await world.jobs.status(record.id)
    assert view.record == failed
    assert view.result is None


async def test_a_permanent_failure_fails_the_job_at_once(world: World) -> None:
    world.narrations.script(AuthenticationError("401 at the handshake"))
    record = await world.jobs.submit(request(), ASYNC)

    assert await world.jobs.run(record.id, dequeue_count=1) == "failed"

    failed = world.record(record.id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.status == 502
    assert failed.error.body.error.code == "upstream_authentication_failed"
    assert failed.last_error is None
    assert world.documents.document(request_name(record.id)) is None
    assert world.cache_entry(failed) is None
    assert await world.jobs.run(record.id, dequeue_count=2) == "ignored"
    assert len(world.narrations.calls) == 1


async def test_an_unexpected_error_is_retried_then_fails_the_job_as_internal(world: World) -> None:
    world.narrations.after = lambda: _raise(RuntimeError("a bug"))
    record = await world.jobs.submit(request(), ASYNC)

    with pytest.raises(RuntimeError):
        await world.jobs.run(record.id, dequeue_count=1)
    queued = world.record(record.id)
    assert queued.status == "queued"
    assert queued.last_error is not None
    assert queued.last_error.code == "internal_error"

    assert await world.jobs.run(record.id, dequeue_count=3) == "failed"
    failed = world.record(record.id)
    assert failed.error is not None
    assert failed.error.status == 500
    assert failed.error.body.error.code == "internal_error"


def _raise(error: Exception) -> None:
    raise error


# --- Stuck jobs: re-enqueued once, then failed ------------------------------------------------


async def test_a_running_job_without_heartbeat_is_re_enqueued_once_then_failed_when_polled(
    world: World,
) -> None:
    record = await world.jobs.submit(request(), ASYNC)
    await world.mark_running(record.id, attempts=1, message_id="m-1")
    assert (await world.jobs.status(record.id)).record.status == "running"  # fresh: left alone

    await world.backdate_heartbeat(record.id, world.settings.stale_seconds + 1)
    view = await world.jobs.status(record.id)

    assert view.record.status == "queued"
    assert view.record.requeues == 1
    assert view.record.last_error is not None
    assert view.record.last_error.code == "job_stalled"
    assert world.record(record.id) == view.record  # written, not just answered
    assert world.queue.sent == [record.id, record.id], "one new message"
    assert world.documents.document(request_name(record.id)) is not None, "kept for the new delivery"
    assert pending_claim(world.cache_entry(view.record)) == record.id
    assert (await world.jobs.status(record.id)).record.status == "queued", "not stuck again yet"

    await world.backdate_heartbeat(record.id, world.settings.stale_seconds + 1)
    view = await world.jobs.status(record.id)

    assert view.record.status == "failed"
    assert view.record.error is not None
    assert view.record.error.status == 503
    assert view.record.error.body.error.code == "job_stalled"
    assert "re-enqueued once" in view.record.error.body.error.message
    assert world.record(record.id) == view.record
    assert world.queue.sent == [record.id, record.id], "re-enqueued once only"
    assert world.documents.document(request_name(record.id)) is None
    assert world.cache_entry(view.record) is None
    assert await world.jobs.run(record.id, dequeue_count=1, message_id="m-2") == "ignored"
    assert world.narrations.calls == []


async def test_a_job_whose_every_delivery_is_lost_is_re_enqueued_once_then_failed(world: World) -> None:
    """No delivery ever arrives (the messages are lost): a poll after the stale timeout
    re-enqueues the queued job; a poll after another one fails it. Never 202 forever."""
    record = await world.jobs.submit(request(), ASYNC)
    answers = []
    for _ in range(4):
        answers.append((await world.jobs.status(record.id)).record.status)
        await world.backdate_heartbeat(record.id, world.settings.stale_seconds + 1)

    assert answers == ["queued", "queued", "failed", "failed"]
    failed = world.record(record.id)
    assert failed.error is not None
    assert failed.error.body.error.code == "job_stalled"
    assert "while queued" in failed.error.body.error.message
    assert world.queue.sent == [record.id, record.id]
    assert world.narrations.calls == []


async def test_a_re_enqueued_job_waiting_in_a_backlog_is_failed_only_after_the_queued_limit() -> None:
    """A backlog is a wait, not a loss: after its one re-enqueue a ``queued`` job is failed
    only when it has had no change for NARRATION_JOB_MAX_QUEUED_SECONDS (limits ±1 s)."""
    world = make_world(stale_seconds=300.0, max_queued_seconds=3600.0)
    record = await world.jobs.submit(request(), ASYNC)
    await world.backdate_heartbeat(record.id, 301)
    assert (await world.jobs.status(record.id)).record.status == "queued"
    assert world.record(record.id).requeues == 1

    for seconds, expected in ((301, "queued"), (3599, "queued"), (3601, "failed")):
        await world.backdate_heartbeat(record.id, seconds)
        assert (await world.jobs.status(record.id)).record.status == expected, seconds
    assert world.queue.sent == [record.id, record.id], "re-enqueued once, never again"
    failed = world.record(record.id)
    assert failed.error is not None
    assert failed.error.body.error.code == "job_stalled"


async def test_a_backlogged_job_that_a_delivery_reaches_late_still_runs() -> None:
    """The re-enqueued job's first message arrives after the re-enqueue (a backlog): it
    narrates; the second message finds the job finished and does nothing."""
    world = make_world(stale_seconds=300.0, max_queued_seconds=3600.0)
    record = await world.jobs.submit(request(), ASYNC)
    await world.backdate_heartbeat(record.id, 301)
    await world.jobs.status(record.id)
    await world.backdate_heartbeat(record.id, 1000)
    assert (await world.jobs.status(record.id)).record.status == "queued"

    assert await world.jobs.run(record.id, dequeue_count=1, message_id="m-1") == "succeeded"
    assert await world.jobs.run(record.id, dequeue_count=1, message_id="m-2") == "ignored"
    assert world.record(record.id).status == "succeeded"
    assert len(world.narrations.calls) == 1


async def test_concurrent_polls_of_a_stuck_job_re_enqueue_it_once(world: World) -> None:
    record = await world.jobs.submit(request(), ASYNC)
    await world.backdate_heartbeat(record.id, world.settings.stale_seconds + 1)

    views = await asyncio.gather(*(world.jobs.status(record.id) for _ in range(8)))

    assert {v.record.status for v in views} == {"queued"}
    assert world.queue.sent == [record.id, record.id], "exactly one re-enqueue"
    assert world.record(record.id).requeues == 1

    await world.backdate_heartbeat(record.id, world.settings.stale_seconds + 1)
    views = await asyncio.gather(*(world.jobs.status(record.id) for _ in range(8)))
    assert {v.record.status for v in views} == {"failed"}
    failed_writes = [w for w in world.record_writes(record.id) if w.status == "failed"]
    assert len(failed_writes) == 1


async def test_a_re_enqueue_whose_send_fails_fails_the_job_when_stuck_again(world: World) -> None:
    record = await world.jobs.submit(request(), ASYNC)
    await world.backdate_heartbeat(record.id, world.settings.stale_seconds + 1)
    world.queue.fail_next()

    assert (await world.jobs.status(record.id)).record.status == "queued"
    assert world.queue.sent == [record.id]

    await world.backdate_heartbeat(record.id, world.settings.stale_seconds + 1)
    assert (await world.jobs.status(record.id)).record.status == "failed"


async def test_the_re_enqueued_message_narrates_a_job_whose_worker_died(world: World) -> None:
    host = Host(world)
    record = await world.jobs.submit(request(), ASYNC)
    host.receive()  # delivery 1 of the first message: its worker dies, the message stays hidden
    await world.mark_running(record.id, attempts=1, message_id=host.in_flight[0].id)
    await world.backdate_heartbeat(record.id, world.settings.stale_seconds + 1)

    assert (await world.jobs.status(record.id)).record.status == "queued"  # re-enqueued
    assert await host.deliver() == "succeeded"  # the new message
    assert world.record(record.id).status == "succeeded"

    # The first message becomes visible again (10 minutes later) and is delivered: nothing to do.
    assert await host.deliver(host.in_flight[0]) == "ignored"
    assert len(world.narrations.calls) == 1


async def test_a_stale_running_job_is_taken_over_by_any_delivery(world: World) -> None:
    record = await world.jobs.submit(request(), ASYNC)
    await world.mark_running(record.id, attempts=3, message_id="m-1")
    await world.backdate_heartbeat(record.id, world.settings.stale_seconds + 1)

    assert await world.jobs.run(record.id, dequeue_count=1, message_id="m-2") == "succeeded"
    done = world.record(record.id)
    assert (done.attempts, done.message_id) == (1, "m-2")


async def test_a_stale_job_whose_worker_writes_meanwhile_is_not_failed(world: World) -> None:
    record = await world.jobs.submit(request(), ASYNC)
    running = world.record(record.id)
    running.status = "running"
    await world.documents.put(record_name(record.id), running.model_dump(mode="json"))
    await world.backdate_heartbeat(record.id, world.settings.stale_seconds + 1)

    async def worker_reports() -> None:
        fresh = world.record(record.id)
        fresh.heartbeat_at = iso(now())
        fresh.segments_done = 1
        await world.documents.put(record_name(record.id), fresh.model_dump(mode="json"))

    world.documents.before("put", record_name(record.id), worker_reports)
    view = await world.jobs.status(record.id)

    assert view.record.status == "running"
    assert view.record.segments_done == 1
    assert world.record(record.id).status == "running"
    assert world.queue.sent == [record.id]


# --- Followers ----------------------------------------------------------------------------------


async def test_a_follower_of_a_running_job_takes_its_success(world: World) -> None:
    leader = await world.jobs.submit(request(), ASYNC)
    follower = await world.jobs.submit(request(), ASYNC)

    assert follower.id != leader.id
    assert follower.leader == leader.id
    assert world.queue.sent == [leader.id]  # no second message
    assert world.documents.document(request_name(follower.id)) is None  # no second request
    assert (await world.jobs.status(follower.id)).record.status == "queued"

    world.narrations.script(Narrated(segments=2))

    async def poll_follower_mid_narration() -> None:
        mid = (await world.jobs.status(follower.id)).record
        assert (mid.status, mid.segments_done, mid.segments_total) == ("running", 2, 2)

    world.narrations.after = poll_follower_mid_narration
    assert await world.jobs.run(leader.id, dequeue_count=1) == "succeeded"
    assert await world.jobs.run(follower.id, dequeue_count=1) == "ignored"

    view = await world.jobs.status(follower.id)
    assert view.record.status == "succeeded"
    assert view.record.reused_from == leader.id
    assert view.record.result == world.record(leader.id).result
    assert view.result is not None
    assert view.result.audio_url is not None
    assert world.record(follower.id).status == "succeeded"  # materialized
    assert len(world.narrations.calls) == 1


async def test_a_follower_of_a_running_job_takes_its_failure(world: World) -> None:
    world.narrations.script(AuthenticationError("401 at the handshake"))
    leader = await world.jobs.submit(request(), ASYNC)
    follower = await world.jobs.submit(request(), ASYNC)
    assert follower.leader == leader.id

    assert await world.jobs.run(leader.id, dequeue_count=1) == "failed"

    view = await world.jobs.status(follower.id)
    leader_record = world.record(leader.id)
    assert view.record.status == "failed"
    assert view.record.error == leader_record.error
    assert view.record.error is not None
    assert view.record.error.status == 502
    assert world.record(follower.id).status == "failed"

    # The content is free again: the next identical request leads a new job.
    again = await world.jobs.submit(request(), ASYNC)
    assert again.leader is None
    assert world.queue.sent == [leader.id, again.id]


async def test_a_finished_result_is_reused_without_narrating(world: World) -> None:
    first = await world.jobs.submit(request(), ASYNC)
    await world.jobs.run(first.id, dequeue_count=1)

    second = await world.jobs.submit(request(), ASYNC)

    assert second.status == "succeeded"
    assert second.reused_from == first.id
    assert world.queue.sent == [first.id]
    world.outputs.remove(*world.outputs.blobs)  # the audio was deleted: no reuse
    third = await world.jobs.submit(request(), ASYNC)
    assert third.status == "queued"
    assert third.leader is None


# --- Idempotency-Key ----------------------------------------------------------------------------


async def test_the_same_key_with_the_same_request_finds_the_same_job(world: World) -> None:
    options = SubmitOptions(respond_async=True, idempotency_key="order-1")
    first = await world.jobs.submit(request(), options)
    second = await world.jobs.submit(request(), options)

    assert second.id == first.id
    assert world.queue.sent == [first.id]
    assert [n for n in world.documents.names() if n.startswith("jobs/") and n.endswith(".json")] == sorted(
        [record_name(first.id), request_name(first.id)]
    )


async def test_the_same_key_with_another_request_is_refused(world: World) -> None:
    options = SubmitOptions(respond_async=True, idempotency_key="order-1")
    await world.jobs.submit(request(), options)

    with pytest.raises(IdempotencyKeyReusedError):
        await world.jobs.submit(request("A different text."), options)
    assert len(world.queue.sent) == 1


async def test_the_loser_of_an_idempotency_key_race_answers_with_the_winners_job(world: World) -> None:
    options = SubmitOptions(respond_async=True, idempotency_key="order-1", reuse=False)
    winner: list[JobRecord] = []

    async def another_submit_takes_the_key() -> None:
        winner.append(await world.jobs.submit(request(), options))

    # Between the loser's read of the key (absent) and its create-only write of it:
    world.documents.before("put", idempotency_name("order-1"), another_submit_takes_the_key)
    loser = await world.jobs.submit(request(), options)

    [won] = winner
    assert loser.id == won.id
    assert world.queue.sent == [won.id]
    records = [n for n in world.documents.names() if n.startswith("jobs/")]
    assert records == sorted([record_name(won.id), request_name(won.id)])  # no orphan record
    deleted = [c.name for c in world.documents.calls if c.operation == "delete" and c.outcome == "ok"]
    assert len(deleted) == 2  # the loser's record and request, written and removed again
    assert record_name(won.id) not in deleted


async def test_the_loser_of_a_key_race_with_another_request_is_refused(world: World) -> None:
    options = SubmitOptions(respond_async=True, idempotency_key="order-1")

    async def another_request_takes_the_key() -> None:
        await world.jobs.submit(request("Another text entirely."), options)

    world.documents.before("put", idempotency_name("order-1"), another_request_takes_the_key)
    with pytest.raises(IdempotencyKeyReusedError):
        await world.jobs.submit(request(), options)
    assert len(world.queue.sent) == 1
    assert len([n for n in world.documents.names() if n.startswith("jobs/")]) == 2  # the winner's


async def test_a_key_whose_job_failed_starts_a_new_job(world: World) -> None:
    options = SubmitOptions(respond_async=True, idempotency_key="order-1")
    world.narrations.script(AuthenticationError("401"))
    first = await world.jobs.submit(request(), options)
    await world.jobs.run(first.id, dequeue_count=1)

    second = await world.jobs.submit(request(), options)

    assert second.id != first.id
    assert second.status == "queued"
    assert world.queue.sent == [first.id, second.id]


# --- Messages with nothing to do ----------------------------------------------------------------


@pytest.mark.parametrize("body", [b"not a job id", "../jobs/x", b"", "0" * 31])
async def test_a_message_that_is_not_a_job_id_is_ignored(world: World, body: bytes | str) -> None:
    assert await world.jobs.run(body, dequeue_count=1) == "ignored"
    assert world.documents.calls == []


async def test_a_message_for_an_unknown_job_is_ignored(world: World) -> None:
    assert await world.jobs.run("0123456789abcdef0123456789abcdef", dequeue_count=1) == "ignored"
    assert world.narrations.calls == []
    with pytest.raises(JobNotFoundError):
        await world.jobs.status("0123456789abcdef0123456789abcdef")


async def test_a_message_for_a_finished_job_is_ignored(world: World) -> None:
    record = await world.jobs.submit(request(), ASYNC)
    assert await world.jobs.run(record.id, dequeue_count=1) == "succeeded"
    writes = len(world.documents.writes(record_name(record.id)))

    assert await world.jobs.run(record.id, dequeue_count=2) == "ignored"

    assert len(world.narrations.calls) == 1
    assert len(world.documents.writes(record_name(record.id))) == writes


async def test_a_delivery_of_the_jobs_other_message_leaves_a_running_job_to_its_owner(world: World) -> None:
    record = await world.jobs.submit(request(), ASYNC)

    async def other_message_delivered() -> None:
        assert await world.jobs.run(record.id, dequeue_count=1, message_id="m-2") == "ignored"

    world.narrations.after = other_message_delivered
    assert await world.jobs.run(record.id, dequeue_count=1, message_id="m-1") == "succeeded"
    assert len(world.narrations.calls) == 1


async def test_an_older_receipt_of_the_owners_message_is_ignored(world: World) -> None:
    """The owner received the message after this delivery did (a higher dequeue count): this
    delivery's pop receipt is dead, so acknowledging it deletes nothing."""
    record = await world.jobs.submit(request(), ASYNC)

    async def older_receipt_arrives() -> None:
        assert await world.jobs.run(record.id, dequeue_count=1, message_id="m-1") == "ignored"

    world.narrations.after = older_receipt_arrives
    assert await world.jobs.run(record.id, dequeue_count=2, message_id="m-1") == "succeeded"
    assert len(world.narrations.calls) == 1


async def test_a_newer_receipt_of_the_message_takes_over_and_the_owner_stops_at_its_next_write(
    world: World,
) -> None:
    """The owner's visibility lapsed (its instance stopped renewing it) while it narrated: the
    host delivered the message again, and only that delivery can still get it retried."""
    world.narrations.script(Narrated(segments=3), Narrated(segments=3))
    record = await world.jobs.submit(request(), ASYNC)
    outcomes: list[str] = []

    async def redelivered_mid_narration() -> None:
        world.narrations.before = None
        outcomes.append(await world.jobs.run(record.id, dequeue_count=2, message_id="m-1"))

    world.narrations.before = redelivered_mid_narration
    first = await world.jobs.run(record.id, dequeue_count=1, message_id="m-1")

    assert outcomes == ["succeeded"]
    assert first == "superseded"
    done = world.record(record.id)
    assert (done.status, done.attempts) == ("succeeded", 2)
    first_call = world.narrations.calls[0]
    assert first_call.progress == [(1, 3)], "the owner stopped at its first write after the takeover"
    writes = world.record_writes(record.id)
    assert writes[-1].status == "succeeded"
    assert [w.attempts for w in writes if w.status != "queued"] == [1, 2, 2, 2, 2, 2]


async def test_two_deliveries_of_the_same_message_at_once_narrate_it_to_one_outcome(world: World) -> None:
    world.narrations.script(Narrated(segments=2), Narrated(segments=2))
    record = await world.jobs.submit(request(), ASYNC)

    outcomes = await asyncio.gather(
        world.jobs.run(record.id, dequeue_count=1, message_id="m-1"),
        world.jobs.run(record.id, dequeue_count=2, message_id="m-1"),
    )

    assert sorted(outcomes) in (["ignored", "succeeded"], ["succeeded", "superseded"])
    done = world.record(record.id)
    assert (done.status, done.attempts) == ("succeeded", 2), "the newer receipt owns the job"
    assert [w.status for w in world.record_writes(record.id)].count("succeeded") == 1
    assert world.documents.document(request_name(record.id)) is None


async def test_a_delivery_that_loses_the_start_to_a_newer_receipt_is_ignored(world: World) -> None:
    record = await world.jobs.submit(request(), ASYNC)

    async def newer_receipt_starts_it() -> None:
        await world.mark_running(record.id, attempts=2, message_id=None)

    world.documents.before("put", record_name(record.id), newer_receipt_starts_it)
    assert await world.jobs.run(record.id, dequeue_count=1) == "ignored"
    assert world.narrations.calls == []


async def test_a_takeover_seen_by_a_heartbeat_cancels_the_owners_narration() -> None:
    world = make_world(stale_seconds=1.0, segment_seconds=0.4)  # a heartbeat every 0.25 s
    world.narrations.script(Narrated(segments=4))
    record = await world.jobs.submit(request(), ASYNC)

    async def newer_receipt_takes_over() -> None:
        await world.mark_running(record.id, attempts=2, message_id="m-1")

    world.narrations.before = newer_receipt_takes_over
    assert await world.jobs.run(record.id, dequeue_count=1, message_id="m-1") == "superseded"

    [call] = world.narrations.calls
    assert call.progress == [], "cancelled at the first heartbeat, before any segment finished"
    stored = world.record(record.id)
    assert (stored.status, stored.attempts) == ("running", 2), "nothing written after the takeover"
    assert world.documents.document(request_name(record.id)) is not None, "left for the new owner"
    assert pending_claim(world.cache_entry(stored)) == record.id
    assert world.outputs.blobs == set(), "nothing stored"


async def test_an_owner_whose_job_a_poll_re_enqueued_stops_and_the_new_message_finishes_it() -> None:
    """The owner is alive but Storage refused its heartbeats for longer than the stale
    timeout: a poll re-enqueues the job; the owner's next write finds it changed."""
    world = make_world()
    world.narrations.script(Narrated(segments=2))
    host = Host(world)
    record = await world.jobs.submit(request(), ASYNC)

    async def meanwhile_a_poll_finds_it_stuck() -> None:
        await world.backdate_heartbeat(record.id, world.settings.stale_seconds + 1)
        assert (await world.jobs.status(record.id)).record.status == "queued"

    world.narrations.before = meanwhile_a_poll_finds_it_stuck
    assert await host.deliver() == "superseded"
    world.narrations.before = None
    assert await host.deliver() == "succeeded"  # the new message

    done = world.record(record.id)
    assert (done.status, done.requeues) == ("succeeded", 1)
    assert len(world.narrations.calls) == 2
    assert not host.visible
    assert world.documents.document(request_name(record.id)) is None


async def test_a_stored_request_that_cannot_be_read_is_retried_then_fails_the_job(world: World) -> None:
    record = await world.jobs.submit(request(), ASYNC)
    await world.documents.put(request_name(record.id), {"text": 42})  # not a request any more

    with pytest.raises(ValueError, match="validation error"):
        await world.jobs.run(record.id, dequeue_count=1, message_id="m-1")
    assert world.record(record.id).status == "queued"

    assert await world.jobs.run(record.id, dequeue_count=3, message_id="m-1") == "failed"
    failed = world.record(record.id)
    assert failed.error is not None
    assert (failed.error.status, failed.error.body.error.code) == (500, "internal_error")
    assert world.narrations.calls == []


async def test_a_write_that_storage_applied_but_reported_failed_does_not_stop_the_owner(world: World) -> None:
    world.narrations.script(Narrated(segments=2))
    record = await world.jobs.submit(request(), ASYNC)

    async def progress_applied_then_reported_lost() -> None:
        # The first progress write reaches Storage (a new ETag) but its answer is lost.
        stored = world.record(record.id)
        stored.segments_done, stored.segments_total = 1, 2
        await world.documents.put(record_name(record.id), stored.model_dump(mode="json"))

    async def arm() -> None:
        world.documents.before("put", record_name(record.id), progress_applied_then_reported_lost)

    world.narrations.before = arm
    assert await world.jobs.run(record.id, dequeue_count=1, message_id="m-1") == "succeeded"
    assert world.record(record.id).status == "succeeded"


# --- Storage and queue failures -----------------------------------------------------------------


async def test_a_queue_failure_on_submit_fails_the_record_and_releases_the_claim(world: World) -> None:
    world.queue.fail_next()

    with pytest.raises(StorageUnavailableError):
        await world.jobs.submit(request(), ASYNC)

    [job_id] = [
        n.removeprefix("jobs/").removesuffix(".json")
        for n in world.documents.names()
        if n.startswith("jobs/")
    ]
    failed = world.record(job_id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.status == 503
    assert failed.error.body.error.code == "storage_unavailable"
    assert world.documents.document(request_name(job_id)) is None
    assert world.cache_entry(failed) is None
    assert world.queue.sent == []

    again = await world.jobs.submit(request(), ASYNC)  # not a follower of the failed job
    assert again.leader is None
    assert world.queue.sent == [again.id]


async def test_a_storage_failure_recording_the_result_requeues_and_the_retry_reuses_the_audio(
    world: World,
) -> None:
    """``run``: a transient failure before the last delivery puts the job back to queued and
    raises. The result is already in the reuse cache, so the retry does not narrate again."""
    record = await world.jobs.submit(request(), ASYNC)
    world.narrations.after = lambda: world.documents.fail_next(
        1, operations=("put",), prefix=record_name(record.id)
    )

    with pytest.raises(StorageUnavailableError):
        await world.jobs.run(record.id, dequeue_count=1)

    queued = world.record(record.id)
    assert queued.status == "queued"
    assert queued.last_error is not None
    assert queued.last_error.code == "storage_unavailable"
    entry = world.cache_entry(queued)
    assert entry is not None
    assert entry["state"] == "succeeded"

    world.narrations.after = None
    assert await world.jobs.run(record.id, dequeue_count=2) == "reused"
    done = world.record(record.id)
    assert done.status == "succeeded"
    assert done.reused_from is None  # its own audio
    assert len(world.narrations.calls) == 1
    assert world.documents.document(request_name(record.id)) is None


async def test_a_storage_failure_recording_the_result_on_the_last_delivery_fails_the_job(
    world: World,
) -> None:
    """``run``: a transient failure on the last delivery fails the job, even though the
    audio was stored (and remains reusable)."""
    record = await world.jobs.submit(request(), ASYNC)
    world.narrations.after = lambda: world.documents.fail_next(
        1, operations=("put",), prefix=record_name(record.id)
    )

    assert await world.jobs.run(record.id, dequeue_count=3) == "failed"

    failed = world.record(record.id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.status == 503
    assert failed.error.body.error.code == "storage_unavailable"
    entry = world.cache_entry(failed)
    assert entry is not None
    assert entry["state"] == "succeeded"  # the next identical request reuses the audio
    reused = await world.jobs.submit(request(), ASYNC)
    assert reused.status == "succeeded"
    assert reused.reused_from == record.id


async def test_storage_failing_for_the_result_and_the_requeue_is_taken_over_by_the_redelivery(
    world: World,
) -> None:
    """Issue 10 item 3: the write back to queued fails too, so the record stays running; the
    redelivery (a higher dequeue count) takes the job over and finishes it (reusing the audio
    already remembered) instead of ignoring it."""
    record = await world.jobs.submit(request(), ASYNC)
    world.narrations.after = lambda: world.documents.fail_next(
        2, operations=("put",), prefix=record_name(record.id)
    )

    with pytest.raises(StorageUnavailableError):
        await world.jobs.run(record.id, dequeue_count=1, message_id="m-1")
    assert world.record(record.id).status == "running"  # not put back to queued

    world.narrations.after = None
    assert await world.jobs.run(record.id, dequeue_count=2, message_id="m-1") == "reused"
    done = world.record(record.id)
    assert (done.status, done.attempts, done.reused_from) == ("succeeded", 1, None)
    assert len(world.narrations.calls) == 1
    assert world.documents.document(request_name(record.id)) is None


async def test_a_transient_failure_whose_requeue_fails_is_narrated_again_by_the_redelivery(
    world: World,
) -> None:
    world.narrations.script(ServiceUnavailableError("Azure OpenAI answered 503"))
    record = await world.jobs.submit(request(), ASYNC)
    world.narrations.after = lambda: world.documents.fail_next(
        1, operations=("put",), prefix=record_name(record.id)
    )

    with pytest.raises(ServiceUnavailableError):
        await world.jobs.run(record.id, dequeue_count=1, message_id="m-1")
    assert world.record(record.id).status == "running"

    world.narrations.after = None
    assert await world.jobs.run(record.id, dequeue_count=2, message_id="m-1") == "succeeded"
    assert len(world.narrations.calls) == 2


async def test_storage_failing_for_the_result_and_the_failure_on_the_last_delivery_raises(
    world: World,
) -> None:
    """``_fail``'s docstring: a Storage failure marking the job failed propagates (the host
    moves the last delivery's message to the poison queue); the stuck rule re-enqueues the
    job, and the new message's delivery finishes it from the remembered audio."""
    record = await world.jobs.submit(request(), ASYNC)
    world.narrations.after = lambda: world.documents.fail_next(
        2, operations=("put",), prefix=record_name(record.id)
    )

    with pytest.raises(StorageUnavailableError):
        await world.jobs.run(record.id, dequeue_count=3, message_id="m-1")

    stuck = world.record(record.id)
    assert stuck.status == "running"
    assert world.cache_entry(stuck) is not None  # cleanup after the failed write did not run
    assert world.documents.document(request_name(record.id)) is not None

    await world.backdate_heartbeat(record.id, world.settings.stale_seconds + 1)
    assert (await world.jobs.status(record.id)).record.status == "queued"
    assert world.queue.sent == [record.id, record.id]
    world.narrations.after = None
    assert await world.jobs.run(record.id, dequeue_count=1, message_id="m-2") == "reused"
    assert (await world.jobs.status(record.id)).record.status == "succeeded"
    assert len(world.narrations.calls) == 1


async def test_progress_writes_that_fail_do_not_fail_the_job(world: World) -> None:
    world.narrations.script(Narrated(segments=2))
    record = await world.jobs.submit(request(), ASYNC)
    # Once the job is running, the next two record writes (both segments' progress) fail.
    world.narrations.before = lambda: world.documents.fail_next(
        2, operations=("put",), prefix=record_name(record.id)
    )

    assert await world.jobs.run(record.id, dequeue_count=1) == "succeeded"

    assert world.record(record.id).status == "succeeded"
    raised = [c for c in world.documents.calls if c.name == record_name(record.id) and c.outcome == "raised"]
    assert [(c.document or {}).get("segments_done") for c in raised] == [1, 2]


async def test_a_storage_failure_reading_the_job_raises_for_the_host_to_retry(world: World) -> None:
    record = await world.jobs.submit(request(), ASYNC)
    world.documents.fail_next(1, operations=("get",), prefix=record_name(record.id))

    with pytest.raises(StorageUnavailableError):
        await world.jobs.run(record.id, dequeue_count=1)
    assert world.record(record.id).status == "queued"
    assert await world.jobs.run(record.id, dequeue_count=2) == "succeeded"


# --- Storage stopped at every stage of a job ----------------------------------------------------


async def operations_of_a_clean_delivery() -> int:
    world = make_world()
    world.narrations.script(Narrated(segments=2))
    record = await world.jobs.submit(request(), ASYNC)
    before = len(world.documents.calls)
    assert await world.jobs.run(record.id, dequeue_count=1, message_id="m") == "succeeded"
    return len(world.documents.calls) - before


@pytest.mark.parametrize("outcome", ["narrated", "refused"])
@pytest.mark.parametrize("lasting", [1, 2, 3], ids=["1 delivery", "2 deliveries", "every delivery"])
async def test_storage_stopping_at_any_stage_of_a_job_never_leaves_it_unfinished(
    outcome: str, lasting: int
) -> None:
    """Storage stops just before the n-th Storage operation of the first delivery, for every
    n (reading the job, the reuse lookup, the request, the start, each progress write, the
    reuse entry, the result, the clean-up) and stays down for ``lasting`` deliveries (with
    every delivery, the host moves the message to the poison queue). Then the host redelivers
    with rising dequeue counts, and polls let time pass: every job ends with its real outcome,
    nothing is left behind, and the text is narrated at most twice."""
    operations = await operations_of_a_clean_delivery()
    assert operations >= 9
    for stage in range(operations + 1):
        world = make_world()
        if outcome == "narrated":
            world.narrations.script(*[Narrated(segments=2)] * 3)
        else:
            world.narrations.script(*[AuthenticationError("401 at the handshake")] * 3)
        host = Host(world)
        record = await world.jobs.submit(request(), ASYNC)
        world.documents.outage(after=stage)
        for _ in range(lasting):
            await host.deliver()
        finished_in_the_outage = world.record(record.id).status in FINAL_STATUSES
        world.documents.heal()

        final = await settle(world, host, record.id)

        where = f"Storage stopped before operation {stage} for {lasting} deliveries"
        if outcome == "narrated":
            assert final.status == "succeeded", where
            assert final.result is not None
            assert final.result.blob_name in world.outputs.blobs, where
            entry = world.cache_entry(final)
            assert entry is not None
            assert entry["state"] == "succeeded", where
        else:
            assert final.status == "failed", where
            assert final.error is not None
            assert final.error.body.error.code == "upstream_authentication_failed", where
            # A claim left behind (its release is best effort) binds nobody to the failed job:
            again = await world.jobs.submit(request(), ASYNC)
            assert (again.status, again.leader) == ("queued", None), where
        assert len(world.narrations.calls) <= 2, where
        if not (finished_in_the_outage and host.poisoned):
            assert world.documents.document(request_name(record.id)) is None, where
        # else: every delivery after the outcome was recorded failed; the lifecycle rule
        # of the jobs container removes the stored request.
        assert not host.visible, where
        assert not host.in_flight, where
        assert world.record(record.id) == final
