"""Asynchronous narration jobs, called as Functions calls them: ``POST /api/narrations`` with
``Prefer: respond-async`` (or a long text), the queue-triggered worker fed with the real
message from Azurite's queue, and ``GET /api/narrations/{id}`` polled at the ``Location``,
against the Realtime emulator and a real Azurite."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

import function_app
from emulator import Fault, FaultKind, RealtimeEmulator
from podcast.engine import audio
from podcast.errors import PodcastError
from podcast.models import RequestLimits, parse_request
from podcast.services.records import idempotency_hash, idempotency_name, request_name
from testkit import host
from testkit.azurite import AzuriteServer
from testkit.storage import blobs_in, http

TEXT = "Welcome to the show. Today we talk about rivers, and why they bend the way they do."
FUNCTION_KEY = "secret-function-key"
COLLECTION_URL = "https://podcast.example.net/api/narrations"
ASYNC = {"Prefer": "respond-async"}


# --- Fixtures and helpers ----------------------------------------------------------------------


def post_request(
    body: dict[str, Any] | bytes,
    headers: dict[str, str] | None = None,
    *,
    url: str = f"{COLLECTION_URL}?code={FUNCTION_KEY}",
) -> func.HttpRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return host.http_request(
        "POST",
        "narrations",
        body=raw,
        headers={"Content-Type": "application/json", **(headers or {})},
        url=url,
    )


async def post(
    body: dict[str, Any] | bytes, headers: dict[str, str] | None = None, **kwargs: Any
) -> tuple[int, dict[str, Any], host.HttpAnswer]:
    response = await host.call_http(function_app.create_narration, post_request(body, headers, **kwargs))
    return response.status, response.json(), response


async def poll(location: str) -> tuple[int, dict[str, Any], host.HttpAnswer]:
    """GET the ``Location`` as the Functions host would route it."""
    response = await host.call_http(
        function_app.get_narration, host.http_request("GET", "narrations/{id}", url=location)
    )
    return response.status, response.json(), response


def queue_client(azurite: AzuriteServer, env: dict[str, str]) -> QueueClient:
    """A plain client: it reads message text exactly as stored (no decoding)."""
    return QueueClient.from_connection_string(azurite.connection_string, env["NARRATION_QUEUE"])


def pending_messages(azurite: AzuriteServer, env: dict[str, str]) -> list[str]:
    """The job ids waiting in the queue (peeked: they stay there)."""
    with queue_client(azurite, env) as client:
        try:
            peeked = client.peek_messages(max_messages=32)
        except ResourceNotFoundError:
            return []
        return [base64.b64decode(m.content).decode("ascii") for m in peeked]


async def deliver(azurite: AzuriteServer, env: dict[str, str]) -> None:
    """Do what the Functions host does with the next message: receive it (its dequeue count
    goes up), decode the base64 text, call the trigger, delete the message if the call
    returns and make it visible again at once if it raises (host.json's default)."""
    with queue_client(azurite, env) as client:
        delivered = await host.deliver(function_app.narration_worker, client)
        assert delivered is not None, "a message should be waiting in the queue"


def jobs_blobs(azurite: AzuriteServer, env: dict[str, str]) -> list[str]:
    return blobs_in(azurite, env["jobs_container"])


async def wait_for(condition: Any, timeout: float = 10.0) -> dict[str, Any]:
    """Poll until ``await condition()`` returns a body; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await condition()
        if found is not None:
            return dict(found)
        await asyncio.sleep(0.05)
    raise AssertionError("the condition never held")


# --- The asynchronous pattern, end to end -------------------------------------------------------


async def test_prefer_respond_async_gets_202_with_a_location_that_answers_200_once_the_worker_ran(
    jobs_env: dict[str, str], azurite: AzuriteServer, container_name: str, emulator: RealtimeEmulator
) -> None:
    status, body, response = await post({"text": TEXT, "voice": "coral", "title": "River Talk"}, ASYNC)

    assert status == 202, body
    job_id = body["id"]
    assert body["status"] == "queued"
    assert body["progress"] == {"segments_done": 0, "segments_total": None}
    location = response.headers["Location"]
    assert location == f"{COLLECTION_URL}/{job_id}?code={FUNCTION_KEY}", "absolute, and the key still works"
    assert int(response.headers["Retry-After"]) >= 1
    assert emulator.handshakes == 0, "nothing is narrated before the worker runs"
    assert blobs_in(azurite, container_name) == [], "the output container holds only finished audio"
    assert pending_messages(azurite, jobs_env) == [job_id]
    with queue_client(azurite, jobs_env) as client:
        (raw,) = client.peek_messages()
    assert raw.content == base64.b64encode(job_id.encode()).decode(), "base64 text, the trigger's default"

    status, body, response = await poll(location)
    assert (status, body["status"]) == (202, "queued")
    assert response.headers["Location"] == location
    assert "Retry-After" in response.headers

    await deliver(azurite, jobs_env)

    status, body, response = await poll(location)
    assert status == 200, body
    assert body["id"] == job_id
    assert body["transcript"] == TEXT
    assert (body["voice"], body["title"], body["format"]) == ("coral", "River Talk", "wav")
    assert "Location" not in response.headers
    code, wav, headers = http("GET", body["audio_url"])
    assert code == 200
    assert headers["content-type"] == "audio/wav"
    info = audio.wav_info(wav)
    assert (info.sample_rate, info.channels) == (24_000, 1)
    assert info.duration_seconds == pytest.approx(body["duration_seconds"], abs=0.001)
    assert blobs_in(azurite, container_name) == sorted(
        [body["blob_name"], body["transcript_blob_name"], body["captions_blob_name"], body["srt_blob_name"]]
    )
    assert f"jobs/{job_id}.request.json" not in jobs_blobs(azurite, jobs_env), "the text is not kept"
    assert pending_messages(azurite, jobs_env) == []


async def test_a_text_too_long_for_the_synchronous_budget_is_accepted_as_a_job_without_asking(
    jobs_env: dict[str, str], azurite: AzuriteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NARRATION_SYNC_MAX_AUDIO_SECONDS", "10")
    short = "Five words, read at once."  # 2 s of audio
    long = " ".join(["Rivers bend because water is lazy."] * 5)  # 30 words: 12 s

    short_status, _, _ = await post({"text": short})
    long_status, body, response = await post({"text": long})

    assert short_status == 200
    assert long_status == 202
    assert body["estimated_audio_seconds"] == 12.0
    assert response.headers["Location"].endswith(f"/api/narrations/{body['id']}?code={FUNCTION_KEY}")
    assert pending_messages(azurite, jobs_env) == [body["id"]]


async def test_retry_after_follows_the_expected_audio_length(jobs_env: dict[str, str]) -> None:
    _, _, short = await post({"text": TEXT}, ASYNC)
    _, _, long = await post({"text": "word " * 1000}, ASYNC)

    assert int(short.headers["Retry-After"]) < int(long.headers["Retry-After"]) <= 60


async def test_a_key_sent_as_a_header_stays_out_of_the_location(jobs_env: dict[str, str]) -> None:
    _, body, response = await post(
        {"text": TEXT}, {**ASYNC, "x-functions-key": FUNCTION_KEY}, url=COLLECTION_URL
    )

    assert response.headers["Location"] == f"{COLLECTION_URL}/{body['id']}"
    assert FUNCTION_KEY not in json.dumps(body)


async def test_a_relative_request_url_gets_an_absolute_location_from_the_host_header(
    jobs_env: dict[str, str],
) -> None:
    _, body, response = await post(
        {"text": TEXT}, {**ASYNC, "Host": "myapp.azurewebsites.net"}, url="/api/narrations"
    )

    assert response.headers["Location"] == f"https://myapp.azurewebsites.net/api/narrations/{body['id']}"


BAD_ASYNC_REQUESTS: list[tuple[str, dict[str, Any] | bytes, dict[str, str], int, str | None]] = [
    ("malformed json", b'{"text": "hi"', {}, 400, None),
    ("unknown field", {"text": "hi", "voise": "marin"}, {}, 400, "voise"),
    ("tts-only voice", {"text": "hi", "voice": "nova"}, {}, 400, "voice"),
    ("oversized text", {"text": "word " * 5000}, {}, 413, "text"),
    ("empty idempotency key", {"text": "hi"}, {"Idempotency-Key": "  "}, 400, "Idempotency-Key"),
    ("control character in key", {"text": "hi"}, {"Idempotency-Key": "a\u0001b"}, 400, "Idempotency-Key"),
]


@pytest.mark.parametrize(
    ("body", "headers", "status", "field"),
    [case[1:] for case in BAD_ASYNC_REQUESTS],
    ids=[case[0] for case in BAD_ASYNC_REQUESTS],
)
async def test_a_bad_asynchronous_request_is_refused_at_once_and_nothing_is_stored_or_queued(
    jobs_env: dict[str, str],
    azurite: AzuriteServer,
    container_name: str,
    emulator: RealtimeEmulator,
    body: dict[str, Any] | bytes,
    headers: dict[str, str],
    status: int,
    field: str | None,
) -> None:
    got_status, got, response = await post(body, {**ASYNC, **headers})

    assert got_status == status, got
    assert "Location" not in response.headers
    if field is not None:
        assert got["error"]["field"] == field
    assert emulator.handshakes == 0
    assert blobs_in(azurite, container_name) == []
    assert jobs_blobs(azurite, jobs_env) == []
    assert pending_messages(azurite, jobs_env) == []


# --- Progress, heartbeats and failures --------------------------------------------------------


async def test_a_running_job_reports_segment_progress_and_its_heartbeat_keeps_it_alive(
    jobs_env: dict[str, str],
    azurite: AzuriteServer,
    emulator: RealtimeEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NARRATION_SEGMENT_WORDS", "20")
    monkeypatch.setenv("NARRATION_JOB_STALE_SECONDS", "1")  # heartbeat every 0.25 s
    # 4 s until the retry: the poll 1.5 s after the second segment comes well before it,
    # even on a loaded machine (2 s left no margin).
    monkeypatch.setenv("AZURE_OPENAI_AUDIO_TIMEOUT_SECONDS", "4")
    paragraphs = [
        "The first paragraph opens the story with a river in the hills.",
        "The second paragraph follows the river down into the wide valley.",
        "The third paragraph, the slow one, ends the story at the sea.",
    ]
    emulator.inject(Fault(FaultKind.HANG, times=1, match="slow one"))
    _, _, response = await post({"text": "\n\n".join(paragraphs)}, ASYNC)
    location = response.headers["Location"]

    worker = asyncio.create_task(deliver(azurite, jobs_env))

    async def two_of_three_done() -> dict[str, Any] | None:
        status, polled, _ = await poll(location)
        assert status == 202, polled
        done = polled["status"] == "running" and polled["progress"] == {
            "segments_done": 2,
            "segments_total": 3,
        }
        return polled if done else None

    await wait_for(two_of_three_done)
    await asyncio.sleep(1.5)  # longer than the stale timeout: only the heartbeat keeps the job alive
    status, polled, running = await poll(location)
    assert (status, polled["status"]) == (202, "running"), polled
    assert int(running.headers["Retry-After"]) >= 2
    await worker

    status, polled, _ = await poll(location)
    assert status == 200, polled
    assert polled["segments"] == 3
    assert polled["transcript"].split() == " ".join(paragraphs).split()


async def test_a_job_whose_worker_died_is_re_enqueued_once_and_narrated_by_the_new_message(
    jobs_env: dict[str, str],
    azurite: AzuriteServer,
    emulator: RealtimeEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NARRATION_JOB_STALE_SECONDS", "1")
    monkeypatch.setenv("AZURE_OPENAI_AUDIO_TIMEOUT_SECONDS", "60")
    emulator.inject(Fault(FaultKind.HANG, times=1))
    _, _, response = await post({"text": TEXT}, ASYNC)
    location = response.headers["Location"]
    with queue_client(azurite, jobs_env) as client:
        message = host.receive(client, visibility_timeout=60)  # hidden for a minute: its worker dies
    assert message is not None
    worker = asyncio.create_task(host.call(function_app.narration_worker, host.trigger_message(message)))

    async def hanging() -> dict[str, Any] | None:
        # Running, and its response hung: the fault is spent on this delivery, not the next
        # (under load the worker could be cancelled before it asked for a response).
        _, polled, _ = await poll(location)
        hung = any(r.status == "hung" for s in emulator.sessions for r in s.responses)
        return polled if polled["status"] == "running" and hung else None

    await wait_for(hanging)
    worker.cancel()  # the process dies: nothing more is written
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    await asyncio.sleep(1.3)

    status, polled, _ = await poll(location)
    assert (status, polled["status"]) == (202, "queued"), polled
    assert pending_messages(azurite, jobs_env) == [polled["id"]], "a new message; the first is still hidden"
    await deliver(azurite, jobs_env)

    status, polled, _ = await poll(location)
    assert status == 200, polled
    assert polled["transcript"] == TEXT
    assert emulator.handshakes == 2


async def test_a_job_whose_every_delivery_is_lost_is_re_enqueued_once_then_reported_failed(
    jobs_env: dict[str, str],
    azurite: AzuriteServer,
    emulator: RealtimeEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NARRATION_JOB_STALE_SECONDS", "1")
    monkeypatch.setenv("NARRATION_JOB_MAX_QUEUED_SECONDS", "1")
    _, body, response = await post({"text": TEXT}, ASYNC)
    location = response.headers["Location"]
    answers = []
    for _ in range(2):
        with queue_client(azurite, jobs_env) as client:
            client.clear_messages()  # the message is lost (deleted, expired, poisoned elsewhere)
        await asyncio.sleep(1.1)
        status, polled, _ = await poll(location)
        answers.append((status, polled.get("status") or polled["error"]["code"]))

    assert answers == [(202, "queued"), (503, "job_stalled")]
    status, polled, response = await poll(location)
    assert status == 503
    assert "re-enqueued once" in polled["error"]["message"]
    assert "Location" not in response.headers
    assert "Retry-After" not in response.headers  # polling again gives the same answer
    assert f"jobs/{body['id']}.request.json" not in jobs_blobs(azurite, jobs_env), "the text is not kept"
    assert emulator.handshakes == 0


async def test_a_permanent_failure_marks_the_job_failed_with_the_error_and_is_not_retried(
    jobs_env: dict[str, str], azurite: AzuriteServer, emulator: RealtimeEmulator, container_name: str
) -> None:
    emulator.inject(Fault(FaultKind.HANDSHAKE_401, times=None))
    _, _, response = await post({"text": TEXT}, ASYNC)

    await deliver(azurite, jobs_env)  # returns normally: the host deletes the message

    status, body, polled = await poll(response.headers["Location"])
    assert status == 502
    assert body["error"]["code"] == "upstream_authentication_failed"
    assert "Retry-After" not in polled.headers
    assert pending_messages(azurite, jobs_env) == []
    assert blobs_in(azurite, container_name) == []


async def test_a_transient_failure_is_retried_by_the_host_and_the_last_delivery_marks_the_job_failed(
    jobs_env: dict[str, str],
    azurite: AzuriteServer,
    emulator: RealtimeEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_AUDIO_MAX_RETRIES", "0")
    emulator.inject(Fault(FaultKind.HANDSHAKE_503, times=None))
    _, _, response = await post({"text": TEXT}, ASYNC)
    location = response.headers["Location"]

    for delivery in (1, 2):
        with pytest.raises(PodcastError) as raised:
            await deliver(azurite, jobs_env)
        assert raised.value.transient
        status, body, waiting = await poll(location)
        assert (status, body["status"]) == (202, "queued"), f"delivery {delivery} is retried"
        # The host shows the message again after host.json's visibilityTimeout (60 s): a poll
        # is worth making then, not every two seconds.
        assert 55 <= int(waiting.headers["Retry-After"]) <= 60
    await deliver(azurite, jobs_env)  # the third and last (host.json maxDequeueCount) returns

    status, body, polled = await poll(location)
    assert status == 503
    assert body["error"]["code"] == "upstream_unavailable"
    # As the synchronous call would have answered: a transient error says when to try again.
    assert int(polled.headers["Retry-After"]) >= 1
    assert pending_messages(azurite, jobs_env) == [], "nothing is left to become a poison message"
    assert emulator.handshakes == 3


async def test_messages_that_name_no_job_are_dropped_without_an_error(
    jobs_env: dict[str, str], emulator: RealtimeEmulator
) -> None:
    for body in (b"not a job id", uuid.uuid4().hex.encode(), b""):
        message = host.queue_message(body, id="m", dequeue_count=1)
        await host.call(function_app.narration_worker, message)
    assert emulator.handshakes == 0


@pytest.mark.parametrize(
    "job_id",
    [uuid.uuid4().hex, uuid.uuid4().hex.upper(), "..%2Fcache%2Fx", "../../cache/x", "jobs", "x" * 32],
    ids=["unknown", "upper case", "encoded path", "path", "word", "not hex"],
)
async def test_an_unknown_or_malformed_job_id_is_a_404(jobs_env: dict[str, str], job_id: str) -> None:
    status, body, _ = await poll(f"{COLLECTION_URL}/{job_id}")

    assert status == 404
    assert body["error"]["code"] == "job_not_found"


# --- Idempotency and reuse -------------------------------------------------------------------------


async def test_the_same_request_twice_is_narrated_once_on_either_path(
    jobs_env: dict[str, str], azurite: AzuriteServer, emulator: RealtimeEmulator
) -> None:
    _, first, response = await post({"text": TEXT}, ASYNC)
    await deliver(azurite, jobs_env)
    status, done, _ = await poll(response.headers["Location"])
    assert status == 200
    assert len(emulator.sessions) == 1

    status, again, response = await post({"text": TEXT, "sas_expiry_minutes": 5}, ASYNC)
    assert (status, again["status"]) == (202, "succeeded")
    assert again["id"] != first["id"]
    assert pending_messages(azurite, jobs_env) == [], "nothing to narrate"
    status, reused, _ = await poll(response.headers["Location"])
    assert status == 200
    assert reused["blob_name"] == done["blob_name"]
    assert http("GET", reused["audio_url"])[0] == 200

    status, synchronous, _ = await post({"text": TEXT})
    assert status == 200
    links = ("audio_url", "expires_at", "captions_url")  # signed afresh for each answer
    assert {k: v for k, v in synchronous.items() if k not in links} == {
        k: v for k, v in done.items() if k not in links
    }, "a finished job's body is exactly the synchronous body"
    assert len(emulator.sessions) == 1, "one Realtime session for three identical requests"
    assert emulator.handshakes == 1

    status, fresh, _ = await post({"text": TEXT}, {"Cache-Control": "no-cache"})
    assert status == 200
    assert fresh["blob_name"] != done["blob_name"]
    assert len(emulator.sessions) == 2, "no-cache narrates again"


async def test_an_identical_request_while_the_first_is_queued_waits_for_the_same_narration(
    jobs_env: dict[str, str], azurite: AzuriteServer, emulator: RealtimeEmulator
) -> None:
    _, first, first_response = await post({"text": TEXT, "sas_expiry_minutes": 30}, ASYNC)
    _, second, second_response = await post({"text": TEXT, "sas_expiry_minutes": 90}, ASYNC)

    assert second["id"] != first["id"]
    assert pending_messages(azurite, jobs_env) == [first["id"]], "one narration queued"
    assert (await poll(second_response.headers["Location"]))[0] == 202
    await deliver(azurite, jobs_env)

    _, one, _ = await poll(first_response.headers["Location"])
    status, other, _ = await poll(second_response.headers["Location"])
    assert status == 200
    assert other["blob_name"] == one["blob_name"]
    assert other["expires_at"] > one["expires_at"], "each job keeps its own link lifetime"
    assert len(emulator.sessions) == 1


async def test_the_same_idempotency_key_gets_the_same_job_and_another_request_with_it_a_422(
    jobs_env: dict[str, str], azurite: AzuriteServer, emulator: RealtimeEmulator
) -> None:
    key = {**ASYNC, "Idempotency-Key": str(uuid.uuid4()), "Cache-Control": "no-cache"}

    _, first, first_response = await post({"text": TEXT}, key)
    _, retried, retried_response = await post({"text": f"  {TEXT}\n"}, key)  # the same, once trimmed

    assert retried["id"] == first["id"]
    assert retried_response.headers["Location"] == first_response.headers["Location"]
    assert pending_messages(azurite, jobs_env) == [first["id"]]

    status, conflict, _ = await post({"text": "Something else entirely."}, key)
    assert status == 422
    assert conflict["error"]["code"] == "idempotency_key_reused"
    assert conflict["error"]["field"] == "Idempotency-Key"

    await deliver(azurite, jobs_env)
    _, after, _ = await post({"text": TEXT}, key)
    assert after["id"] == first["id"]
    assert after["status"] == "succeeded"
    assert len(emulator.sessions) == 1


async def test_a_new_request_with_the_key_of_a_failed_job_starts_a_new_job(
    jobs_env: dict[str, str], azurite: AzuriteServer, emulator: RealtimeEmulator
) -> None:
    key = {**ASYNC, "Idempotency-Key": "flow-run-42"}
    emulator.inject(Fault(FaultKind.HANDSHAKE_404, times=1))
    _, failed, _ = await post({"text": TEXT}, key)
    await deliver(azurite, jobs_env)

    status, retried, response = await post({"text": TEXT}, key)
    assert status == 202
    assert retried["id"] != failed["id"]
    await deliver(azurite, jobs_env)
    assert (await poll(response.headers["Location"]))[0] == 200


async def test_a_show_job_from_before_mp3_episodes_is_replayed_by_its_key_and_narrated_as_a_wav(
    jobs_env: dict[str, str], azurite: AzuriteServer, emulator: RealtimeEmulator
) -> None:
    """A show request without ``format`` was a WAV before a show's episodes were MP3 by default:
    its Idempotency-Key (bound to the WAV request's hash) still finds its job, and the job,
    whose stored request names no format, is still narrated as the WAV its record describes."""
    show = host.http_request("PUT", "shows/{show}", json={"title": "Legacy"}, route_params={"show": "legacy"})
    assert (await host.call_http(function_app.put_show, show)).status == 201
    body = {"text": TEXT, "show": "legacy"}
    key = {**ASYNC, "Idempotency-Key": "flow-run-before-the-deploy", "Cache-Control": "no-cache"}
    _, submitted, _ = await post(body, key)
    # What the earlier version stored: the key bound to the WAV request's hash, no format.
    documents = function_app.graph.get().job_documents
    wav = parse_request({**body, "format": "wav"}, RequestLimits())
    mapping, mapping_etag = await documents.get(idempotency_name(key["Idempotency-Key"])) or ({}, None)
    await documents.put(
        idempotency_name(key["Idempotency-Key"]),
        {**mapping, "request_hash": idempotency_hash(wav)},
        etag=mapping_etag,
    )
    stored, stored_etag = await documents.get(request_name(submitted["id"])) or ({}, None)
    assert stored["format"] == "mp3", "a request stored now names its format"
    await documents.put(
        request_name(submitted["id"]),
        {name: value for name, value in stored.items() if name != "format"},
        etag=stored_etag,
    )

    status, replayed, _ = await post(body, key)
    assert status == 202, replayed
    assert replayed["id"] == submitted["id"]
    status, other, _ = await post({**body, "text": "Something else entirely."}, key)
    assert (status, other["error"]["code"]) == (422, "idempotency_key_reused")

    await deliver(azurite, jobs_env)
    status, done, _ = await poll(f"{COLLECTION_URL}/{submitted['id']}?code={FUNCTION_KEY}")
    assert status == 200, done
    assert (done["format"], done["blob_name"].rsplit(".", 1)[1]) == ("wav", "wav")
