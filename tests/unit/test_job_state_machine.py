"""The asynchronous job state machine (JobService and ReuseCache) over in-memory fakes.

queued → running → succeeded or failed, followers, Idempotency-Key races, stale jobs,
re-queueing and Storage faults, in milliseconds and offline. The fakes
(:mod:`testkit.fakes`) are held to Blob Storage's behaviour by
``tests/integration/test_document_store_contract.py``; what the real Storage and queue do
end to end is ``tests/integration/test_jobs.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
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
from podcast.services.records import idempotency_name, iso, now, record_name, request_name
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

    async def backdate_heartbeat(self, job_id: str, seconds: float) -> None:
        """Make the stored record look as if its worker last reported ``seconds`` ago."""
        record = self.record(job_id)
        record.heartbeat_at = record.updated_at = iso(now() - timedelta(seconds=seconds))
        await self.documents.put(record_name(job_id), record.model_dump(mode="json"))


def make_world(
    *, stale_seconds: float = 300.0, max_dequeue_count: int = 3, segment_seconds: float = 0.0
) -> World:
    documents, queue, outputs = InMemoryDocuments(), InMemoryQueue(), InMemoryOutputs("narrations")
    narrations = ScriptedNarrations(outputs, deployment="fake-realtime", segment_seconds=segment_seconds)
    reuse = ReuseCache(documents, outputs)
    settings = JobSettings(
        stale_seconds=stale_seconds, max_dequeue_count=max_dequeue_count, job_time_budget_seconds=120.0
    )
    jobs = JobService(documents, queue, narrations, reuse, settings)
    return World(documents, queue, outputs, narrations, reuse, settings, jobs)


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


# --- Stale jobs -------------------------------------------------------------------------------


async def test_a_running_job_without_heartbeat_is_marked_stalled_when_polled(world: World) -> None:
    record = await world.jobs.submit(request(), ASYNC)
    running = world.record(record.id)
    running.status = "running"
    running.started_at = iso(now())
    await world.documents.put(record_name(record.id), running.model_dump(mode="json"))
    assert (await world.jobs.status(record.id)).record.status == "running"  # fresh: left alone

    await world.backdate_heartbeat(record.id, world.settings.stale_seconds + 1)
    view = await world.jobs.status(record.id)

    assert view.record.status == "failed"
    assert view.record.error is not None
    assert view.record.error.status == 503
    assert view.record.error.body.error.code == "job_stalled"
    assert world.record(record.id) == view.record  # written, not just answered
    assert world.documents.document(request_name(record.id)) is None
    assert world.cache_entry(view.record) is None
    assert await world.jobs.run(record.id, dequeue_count=2) == "ignored"  # never narrated after all


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


async def test_a_message_for_a_job_running_elsewhere_is_ignored(world: World) -> None:
    record = await world.jobs.submit(request(), ASYNC)

    async def second_delivery() -> None:
        assert await world.jobs.run(record.id, dequeue_count=2) == "ignored"

    world.narrations.after = second_delivery
    assert await world.jobs.run(record.id, dequeue_count=1) == "succeeded"
    assert len(world.narrations.calls) == 1


async def test_a_delivery_that_loses_the_start_to_another_is_ignored(world: World) -> None:
    record = await world.jobs.submit(request(), ASYNC)

    async def another_delivery_starts_it() -> None:
        other = world.record(record.id)
        other.status = "running"
        other.heartbeat_at = iso(now())
        await world.documents.put(record_name(record.id), other.model_dump(mode="json"))

    world.documents.before("put", record_name(record.id), another_delivery_starts_it)
    assert await world.jobs.run(record.id, dequeue_count=1) == "ignored"
    assert world.narrations.calls == []


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


async def test_storage_failing_for_the_result_and_the_requeue_leaves_the_job_running_until_stale(
    world: World,
) -> None:
    """Not what ``run``'s docstring promises ("after putting the job back to queued, so the
    host retries"): the re-queue write fails silently, the record stays ``running``, the
    host's retry ignores the job as running elsewhere, and only the stale rule ends it."""
    record = await world.jobs.submit(request(), ASYNC)
    world.narrations.after = lambda: world.documents.fail_next(
        2, operations=("put",), prefix=record_name(record.id)
    )

    with pytest.raises(StorageUnavailableError):
        await world.jobs.run(record.id, dequeue_count=1)

    assert world.record(record.id).status == "running"  # not put back to queued
    assert await world.jobs.run(record.id, dequeue_count=2) == "ignored"  # the retry does nothing
    assert len(world.narrations.calls) == 1

    await world.backdate_heartbeat(record.id, world.settings.stale_seconds + 1)
    view = await world.jobs.status(record.id)
    assert view.record.status == "failed"
    assert view.record.error is not None
    assert view.record.error.body.error.code == "job_stalled"


async def test_storage_failing_for_the_result_and_the_failure_on_the_last_delivery_raises(
    world: World,
) -> None:
    """``_fail``'s docstring: a Storage failure marking the job failed propagates, and the
    stale rule marks the job failed later. (``run``'s says a transient failure on the last
    delivery returns ``"failed"``; here it raises, and no host retry follows a last delivery.)"""
    record = await world.jobs.submit(request(), ASYNC)
    world.narrations.after = lambda: world.documents.fail_next(
        2, operations=("put",), prefix=record_name(record.id)
    )

    with pytest.raises(StorageUnavailableError):
        await world.jobs.run(record.id, dequeue_count=3)

    stuck = world.record(record.id)
    assert stuck.status == "running"
    assert world.cache_entry(stuck) is not None  # cleanup after the failed write did not run
    assert world.documents.document(request_name(record.id)) is not None

    await world.backdate_heartbeat(record.id, world.settings.stale_seconds + 1)
    view = await world.jobs.status(record.id)
    assert view.record.status == "failed"
    assert view.record.error is not None
    assert view.record.error.body.error.code == "job_stalled"
    assert world.documents.document(request_name(record.id)) is None


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
