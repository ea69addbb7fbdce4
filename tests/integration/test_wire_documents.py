"""Every JSON document a real job stores in Azurite, and every body it answers, is a wire
model's (podcast.wire): it loads into its model and dumps back unchanged. A succeeding job
(with an Idempotency-Key, so every kind of stored document is made) and a failing one, called
as Functions calls them (the HTTP function, the queue-triggered worker fed from Azurite's
queue), against the Realtime emulator."""

from __future__ import annotations

import json
import uuid
from typing import Any

from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient
from pydantic import BaseModel

import function_app
from emulator import Fault, FaultKind, RealtimeEmulator
from podcast.wire import (
    CacheEntry,
    ErrorBody,
    IdempotencyEntry,
    JobRecord,
    JobStatusDocument,
    NarrationIndex,
    NarrationResponse,
    TranscriptDocument,
)
from testkit import host
from testkit.azurite import AzuriteServer

TEXT = "Welcome to the show. Today we talk about rivers, and why they bend the way they do."
URL = "https://podcast.example.net/api/narrations"
ASYNC = {"Prefer": "respond-async"}
STORED: dict[str, type[BaseModel]] = {
    "jobs": JobRecord,
    "cache": CacheEntry,
    "idempotency": IdempotencyEntry,
    "narrations": NarrationIndex,
}
"""The model of each document in the jobs container, by its folder."""


async def post(body: dict[str, Any], headers: dict[str, str]) -> host.HttpAnswer:
    request = host.http_request(
        "POST",
        "narrations",
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
        url=URL,
    )
    return await host.call_http(function_app.create_narration, request)


async def poll(location: str) -> host.HttpAnswer:
    request = host.http_request("GET", "narrations/{id}", url=location)
    return await host.call_http(function_app.get_narration, request)


async def deliver(azurite: AzuriteServer, env: dict[str, str]) -> None:
    with QueueClient.from_connection_string(azurite.connection_string, env["NARRATION_QUEUE"]) as client:
        assert await host.deliver(function_app.narration_worker, client) is not None


def stored_documents(azurite: AzuriteServer, container: str) -> dict[str, Any]:
    """Every ``.json`` blob in ``container``, parsed (key order as stored)."""
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        client = service.get_container_client(container)
        if not client.exists():
            return {}
        return {
            blob.name: json.loads(client.download_blob(blob.name).readall())
            for blob in client.list_blobs()
            if blob.name.endswith(".json")
        }


def assert_unchanged(model: type[BaseModel], document: Any, what: str) -> None:
    """``document`` loads into ``model`` and dumps back as the same JSON, key order included."""
    dumped = model.model_validate(document).model_dump(mode="json")
    assert dumped == document, what
    assert json.dumps(dumped) == json.dumps(document), f"{what}: key order"


def check_jobs_container(documents: dict[str, Any], seen: set[tuple[str, Any]]) -> None:
    for name, document in documents.items():
        if name.endswith(".request.json"):  # the stored request: a NarrationRequest, not a wire model
            continue
        model = STORED[name.split("/", 1)[0]]
        assert_unchanged(model, document, name)
        seen.add((model.__name__, document.get("status") or document.get("state")))


async def test_every_document_a_real_job_stores_and_answers_is_a_wire_model(
    jobs_env: dict[str, str], azurite: AzuriteServer, container_name: str, emulator: RealtimeEmulator
) -> None:
    seen: set[tuple[str, Any]] = set()
    accepted = await post(
        {"text": TEXT, "title": "Rivers", "language": "en"}, {**ASYNC, "Idempotency-Key": str(uuid.uuid4())}
    )
    assert accepted.status == 202
    assert_unchanged(JobStatusDocument, accepted.json(), "202 body")
    check_jobs_container(stored_documents(azurite, jobs_env["jobs_container"]), seen)

    await deliver(azurite, jobs_env)
    done = await poll(accepted.headers["Location"])
    assert done.status == 200, done.json()
    assert_unchanged(NarrationResponse, done.json(), "200 body")
    assert done.json()["audio_url"], "answered with a link"

    (transcript,) = stored_documents(azurite, container_name).values()
    assert_unchanged(TranscriptDocument, transcript, "transcript document")
    check_jobs_container(stored_documents(azurite, jobs_env["jobs_container"]), seen)
    assert {
        ("JobRecord", "queued"),
        ("JobRecord", "succeeded"),
        ("CacheEntry", "pending"),
        ("CacheEntry", "succeeded"),
        ("IdempotencyEntry", None),
    } <= seen


async def test_every_document_a_failing_job_stores_and_answers_is_a_wire_model(
    jobs_env: dict[str, str], azurite: AzuriteServer, emulator: RealtimeEmulator
) -> None:
    emulator.inject(Fault(FaultKind.HANDSHAKE_401, times=None))
    accepted = await post({"text": "Another text entirely."}, ASYNC)
    assert accepted.status == 202
    assert_unchanged(JobStatusDocument, accepted.json(), "202 body")

    await deliver(azurite, jobs_env)
    failure = await poll(accepted.headers["Location"])

    assert failure.status == 502, failure.json()
    assert_unchanged(ErrorBody, failure.json(), "error body")
    seen: set[tuple[str, Any]] = set()
    check_jobs_container(stored_documents(azurite, jobs_env["jobs_container"]), seen)
    assert ("JobRecord", "failed") in seen
    (record,) = (
        JobRecord.model_validate(document)
        for name, document in stored_documents(azurite, jobs_env["jobs_container"]).items()
        if name.startswith("jobs/") and not name.endswith(".request.json")
    )
    assert record.error is not None
    assert record.error.body.model_dump(mode="json") == failure.json()
