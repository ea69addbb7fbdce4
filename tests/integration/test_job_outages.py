"""Storage stopping at each stage of a job, and deliveries that overlap, on Azurite.

The app's Storage clients send through :class:`testkit.storage_faults.SwitchedTransport`:
at the chosen request (reading the job, starting it, a progress write, the reuse entry,
the result, the clean-up) Storage stops answering, so the real SDK retries and fails with
the connection refusals of an unreachable account, while Azurite keeps the data. The host
(:mod:`testkit.host`) then does what the Functions host does: redeliver with rising
dequeue counts, move the message to the poison queue after ``maxDequeueCount``, delete it
when the function returns. Every job must end with its result (or a clear error), with no
message left behind and never answered 202 forever.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

import function_app
from emulator import Fault, FaultKind, RealtimeEmulator
from podcast.app import App
from podcast.engine import audio
from podcast.settings import Settings
from podcast.wire import JobRecord
from testkit import host
from testkit.azurite import AzuriteServer
from testkit.storage import FAST_FAILING, blobs_in, http
from testkit.storage_faults import StorageSwitch, SwitchedTransport
from tests.integration.test_jobs import ASYNC, TEXT, jobs_blobs, pending_messages, poll, post, queue_client

STALE_SECONDS = 1.0


STORED = ("blob_name", "transcript_blob_name", "captions_blob_name", "srt_blob_name")
"""The response fields naming what a narration stores: audio, transcript, captions."""


@pytest.fixture
async def switch(jobs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[StorageSwitch]:
    """The app's Storage, switchable (``jobs_env`` with a 1 s stale timeout)."""
    monkeypatch.setenv("NARRATION_JOB_STALE_SECONDS", str(STALE_SECONDS))
    monkeypatch.setenv("NARRATION_JOB_MAX_QUEUED_SECONDS", str(STALE_SECONDS))
    storage = StorageSwitch()
    function_app.graph.use(
        lambda: App(
            Settings.from_env(),
            blob_options=FAST_FAILING,
            client_kwargs={"transport": SwitchedTransport(storage)},
        )
    )
    try:
        yield storage
    finally:
        await function_app.graph.aclose()
        function_app.graph.use(App.from_env)


def poisoned(azurite: AzuriteServer, env: dict[str, str]) -> int:
    with QueueClient.from_connection_string(
        azurite.connection_string, f"{env['NARRATION_QUEUE']}-poison"
    ) as client:
        try:
            return int(client.get_queue_properties().approximate_message_count or 0)
        except ResourceNotFoundError:
            return 0


def stored_record(azurite: AzuriteServer, env: dict[str, str], job_id: str) -> JobRecord:
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        blob = service.get_blob_client(env["jobs_container"], f"jobs/{job_id}.json")
        return JobRecord.model_validate(json.loads(blob.download_blob().readall()))


async def settle(
    azurite: AzuriteServer, env: dict[str, str], location: str, *, rounds: int = 10
) -> dict[str, Any]:
    """As the host and a poller would: deliver what is visible, poll, and let the stale
    timeout pass when nothing was delivered, until the job is finished and no message is
    left; the final body and status. Fails when the job is still unfinished (202 forever)."""
    for _ in range(rounds):
        with queue_client(azurite, env) as client:
            delivered = await host.deliver(function_app.narration_worker, client, raise_errors=False)
        status, body, _ = await poll(location)
        if status != 202 and not pending_messages(azurite, env):
            return {"status": status, **body}
        if delivered is None:
            await asyncio.sleep(STALE_SECONDS + 0.2)
    raise AssertionError(f"the job is still {body.get('status')} after {rounds} rounds")


STAGES: list[tuple[str, str, str, str]] = [
    ("reading the job", "GET", "/jobs/{id}.json", ""),
    ("starting it", "PUT", "/jobs/{id}.json", '"status":"running"'),
    ("the first progress write", "PUT", "/jobs/{id}.json", '"segments_done":1'),
    ("remembering the result", "PUT", "/cache/", '"state":"succeeded"'),
    ("recording the result", "PUT", "/jobs/{id}.json", '"status":"succeeded"'),
    ("removing the stored request", "DELETE", "/jobs/{id}.request.json", ""),
]


@pytest.mark.parametrize("lasting", [1, 3], ids=["one delivery", "every delivery"])
@pytest.mark.parametrize(("method", "path", "body"), [s[1:] for s in STAGES], ids=[s[0] for s in STAGES])
async def test_storage_stopped_at_a_stage_of_a_job_then_back_finishes_the_job(
    switch: StorageSwitch,
    jobs_env: dict[str, str],
    azurite: AzuriteServer,
    container_name: str,
    emulator: RealtimeEmulator,
    method: str,
    path: str,
    body: str,
    lasting: int,
) -> None:
    _, accepted, response = await post({"text": TEXT}, ASYNC)
    job_id, location = accepted["id"], response.headers["Location"]

    switch.stop_at(method, path.format(id=job_id), body)
    with queue_client(azurite, jobs_env) as client:
        first = await host.deliver(function_app.narration_worker, client, raise_errors=False)
        assert first is not None
        assert first.error is not None, "a delivery that left work undone is not acknowledged"
        assert switch.stopped, "Storage stopped at that stage"
        for _ in range(lasting - 1):  # Storage still stopped: the host redelivers, then gives up
            again = await host.deliver(function_app.narration_worker, client, raise_errors=False)
            assert again is not None
            assert again.error is not None
    switch.start()
    assert poisoned(azurite, jobs_env) == (1 if lasting == 3 else 0)

    final = await settle(azurite, jobs_env, location)

    assert final["status"] == 200, final
    assert final["transcript"] == TEXT
    code, wav, _ = http("GET", final["audio_url"])
    assert code == 200
    assert audio.wav_info(wav).duration_seconds == pytest.approx(final["duration_seconds"], abs=0.001)
    assert sorted(blobs_in(azurite, container_name)) == sorted(final[name] for name in STORED)
    left = f"jobs/{job_id}.request.json" in jobs_blobs(azurite, jobs_env)
    # Only when every delivery after the recorded result failed is the request left, for the
    # jobs container's lifecycle rule (README): no delivery remains to remove it.
    assert left == (method == "DELETE" and lasting == 3), "the text is not kept"
    assert pending_messages(azurite, jobs_env) == []
    assert len(emulator.sessions) <= 2, "narrated at most twice"
    record = stored_record(azurite, jobs_env, job_id)
    assert record.status == "succeeded"
    finished_first = method == "DELETE"  # the result was recorded before Storage stopped
    assert record.requeues == (1 if lasting == 3 and not finished_first else 0), (
        "re-enqueued only when every delivery failed before the job was finished"
    )


async def test_a_permanent_failure_whose_recording_fails_is_recorded_by_the_redelivery(
    switch: StorageSwitch, jobs_env: dict[str, str], azurite: AzuriteServer, emulator: RealtimeEmulator
) -> None:
    emulator.inject(Fault(FaultKind.HANDSHAKE_401, times=None))
    _, accepted, response = await post({"text": TEXT}, ASYNC)

    switch.stop_at("PUT", f"/jobs/{accepted['id']}.json", '"status":"failed"')
    with queue_client(azurite, jobs_env) as client:
        first = await host.deliver(function_app.narration_worker, client, raise_errors=False)
    assert first is not None
    assert first.error is not None
    switch.start()

    final = await settle(azurite, jobs_env, response.headers["Location"])

    assert final["status"] == 502
    assert final["error"]["code"] == "upstream_authentication_failed"
    assert pending_messages(azurite, jobs_env) == []


async def test_two_deliveries_of_the_same_message_at_once_finish_the_job_once(
    switch: StorageSwitch,
    jobs_env: dict[str, str],
    azurite: AzuriteServer,
    container_name: str,
    emulator: RealtimeEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first delivery's visibility lapses while it narrates (its instance stopped
    renewing it): the host delivers the message again, dequeue count 2. The second takes
    over, the first stops at its next write, and the job is finished once."""
    monkeypatch.setenv("NARRATION_SEGMENT_WORDS", "20")
    monkeypatch.setenv(
        "AZURE_OPENAI_AUDIO_TIMEOUT_SECONDS", "4"
    )  # the first delivery outlasts its visibility
    paragraphs = [
        "The first paragraph opens the story with a river in the hills.",
        "The second paragraph follows the river down into the wide valley.",
        "The third paragraph, the slow one, ends the story at the sea.",
    ]
    emulator.inject(Fault(FaultKind.HANG, times=1, match="slow one"))  # 4 s until its retry
    _, accepted, response = await post({"text": "\n\n".join(paragraphs)}, ASYNC)
    location = response.headers["Location"]

    with queue_client(azurite, jobs_env) as client:
        stored = host.receive(client, visibility_timeout=1)
        assert stored is not None
        first = asyncio.create_task(host.call(function_app.narration_worker, host.trigger_message(stored)))
        while True:  # the first delivery is narrating
            _, polled, _ = await poll(location)
            if polled["status"] == "running" and polled["progress"]["segments_done"] >= 1:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.1)  # its visibility lapses
        again = host.receive(client, visibility_timeout=60)
        assert again is not None
        assert again.dequeue_count == 2
        second = asyncio.create_task(host.call(function_app.narration_worker, host.trigger_message(again)))
        outcomes = await asyncio.gather(first, second, return_exceptions=True)
        client.delete_message(again)  # the second returned: the host deletes the message

    assert list(outcomes) == [None, None], outcomes
    status, done, _ = await poll(location)
    assert status == 200, done
    assert done["segments"] == 3
    assert done["transcript"].split() == " ".join(paragraphs).split()
    _, wav, _ = http("GET", done["audio_url"])
    info = audio.wav_info(wav)
    assert info.duration_seconds == pytest.approx(done["duration_seconds"], abs=0.001)
    assert sorted(blobs_in(azurite, container_name)) == sorted(done[name] for name in STORED)
    record = stored_record(azurite, jobs_env, accepted["id"])
    assert (record.status, record.attempts, record.message_id) == ("succeeded", 2, again.id)
    assert pending_messages(azurite, jobs_env) == []


async def test_storage_stopped_at_the_re_enqueue_fails_the_job_when_it_is_stuck_again(
    switch: StorageSwitch, jobs_env: dict[str, str], azurite: AzuriteServer, emulator: RealtimeEmulator
) -> None:
    """Every message of the job is lost, and Storage stops just as a poll re-enqueues it
    (the record says re-enqueued, the message is never sent): the next poll that finds it
    stuck fails it, instead of 202 forever."""
    _, accepted, response = await post({"text": TEXT}, ASYNC)
    location = response.headers["Location"]
    with queue_client(azurite, jobs_env) as client:
        client.clear_messages()
    await asyncio.sleep(STALE_SECONDS + 0.2)

    switch.stop_at("POST", f"/{jobs_env['NARRATION_QUEUE']}/messages")
    status, polled, _ = await poll(location)
    assert (status, polled["status"]) == (202, "queued"), polled
    assert switch.stopped
    switch.start()
    assert pending_messages(azurite, jobs_env) == []
    await asyncio.sleep(STALE_SECONDS + 0.2)

    status, polled, _ = await poll(location)
    assert status == 503, polled
    assert polled["error"]["code"] == "job_stalled"
    assert stored_record(azurite, jobs_env, accepted["id"]).requeues == 1
    assert emulator.handshakes == 0
