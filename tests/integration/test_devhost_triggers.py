"""The dev host's queue worker and blob watcher (``podcast.devhost``) against a real Azurite,
with trigger functions of the test's own: deliveries, dequeue counts, the poison queue,
redelivery of a failed blob and of a changed one."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import azure.functions as func
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from podcast.devhost import BlobWatcher, QueueWorker
from podcast.http.hosting import BlobFunction, QueueFunction, QueueSettings
from testkit.azurite import AzuriteServer

POLL = 0.05


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(POLL)


async def _running(run: Callable[[], Coroutine[Any, Any, None]], body: Callable[[], Awaitable[Any]]) -> Any:
    task = asyncio.create_task(run())
    try:
        return await body()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_queue_messages_are_delivered_decoded_and_a_failing_one_ends_in_the_poison_queue(
    azurite: AzuriteServer,
) -> None:
    name = f"dh-{uuid.uuid4().hex[:12]}"
    deliveries: list[tuple[bytes, int]] = []

    async def trigger(msg: func.QueueMessage) -> None:
        deliveries.append((msg.get_body(), msg.dequeue_count or 0))
        if msg.get_body() == b"bad-job":
            raise RuntimeError("always fails")

    environ = {"QUEUE_NAME": name, "STORAGE": azurite.connection_string}
    worker = QueueWorker(
        QueueFunction("trigger", trigger, "%QUEUE_NAME%", "STORAGE"),
        environ,
        POLL,
        QueueSettings(max_dequeue_count=3, visibility_timeout=0.0),
    )
    with (
        QueueClient.from_connection_string(
            azurite.connection_string, name, message_encode_policy=TextBase64EncodePolicy()
        ) as queue,
        QueueClient.from_connection_string(azurite.connection_string, f"{name}-poison") as poison,
    ):
        queue.create_queue()
        poison.create_queue()
        queue.send_message("good-job")
        queue.send_message("bad-job")
        with QueueClient.from_connection_string(azurite.connection_string, name) as raw:
            raw.send_message("not base64!")  # undecodable: poisoned too, without reaching the function

        async def body() -> None:
            await _until(lambda: len(poison.peek_messages(max_messages=5)) == 2)

        await _running(worker.run, body)
        poisoned = [m.content for m in poison.receive_messages()]
        left = queue.peek_messages(max_messages=5)
        queue.delete_queue()
        poison.delete_queue()

    assert (b"good-job", 1) in deliveries
    assert {job for job, _ in deliveries} == {b"good-job", b"bad-job"}
    assert [count for job, count in deliveries if job == b"bad-job"] == [1, 2, 3]
    assert sorted(poisoned) == sorted([base64.b64encode(b"bad-job").decode(), "not base64!"])
    assert left == []


async def test_new_and_changed_blobs_are_delivered_at_least_once_and_a_failing_one_given_up(
    azurite: AzuriteServer,
) -> None:
    container = f"dh-input-{uuid.uuid4().hex[:12]}"
    deliveries: list[tuple[str, bytes, str]] = []
    failures = {"retry.txt": 1, "broken.txt": 99}

    async def trigger(blob: func.InputStream) -> None:
        properties = getattr(blob, "blob_properties", None) or {}
        deliveries.append((blob.name or "", blob.read(), str(properties.get("ETag"))))
        short = (blob.name or "").split("/", 1)[1]
        if failures.get(short, 0) > 0:
            failures[short] -= 1
            raise RuntimeError("transient")

    environ = {"INPUT": container, "STORAGE": azurite.connection_string}
    watcher = BlobWatcher(
        BlobFunction("trigger", trigger, "%INPUT%/{name}", "STORAGE"), environ, POLL, threshold=2
    )
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        client = service.get_container_client(container)
        client.create_container()
        client.upload_blob("before-start.txt", b"old")

        def names() -> list[str]:
            return [name for name, _, _ in deliveries]

        async def body() -> None:
            await watcher.ready.wait()
            client.upload_blob("notes/a.txt", b"first")
            await _until(lambda: names().count(f"{container}/notes/a.txt") == 1)
            client.upload_blob("notes/a.txt", b"second", overwrite=True)  # a new version: a new event
            client.upload_blob("retry.txt", b"r")
            client.upload_blob("broken.txt", b"b")
            await _until(lambda: names().count(f"{container}/notes/a.txt") == 2)
            await _until(lambda: names().count(f"{container}/retry.txt") == 2)
            await _until(lambda: names().count(f"{container}/broken.txt") == 2)
            await asyncio.sleep(POLL * 10)  # given up: no third delivery

        await _running(watcher.run, body)
        etag = client.get_blob_client("notes/a.txt").get_blob_properties().etag
        client.delete_container()

    assert f"{container}/before-start.txt" not in names()
    assert names().count(f"{container}/broken.txt") == 2
    assert names().count(f"{container}/retry.txt") == 2
    versions = [(data, tag) for name, data, tag in deliveries if name == f"{container}/notes/a.txt"]
    assert [data for data, _ in versions] == [b"first", b"second"]
    assert versions[1][1] == etag
