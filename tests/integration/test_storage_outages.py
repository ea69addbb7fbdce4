"""Storage failing under the app for real (Azurite): containers deleted between and during
requests, Storage refusing connections right after the WAV commit, two writers of one blob.

Failures come from :class:`testkit.storage.ScriptedTransport`, the SDK's own aiohttp
transport that sends chosen requests to a closed port (a refused connection, retried by the
SDK as usual), or acts right after a chosen response (delete the container once the first
audio is staged). Nothing of the app is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

import function_app
from emulator import RealtimeEmulator
from podcast.app import App
from podcast.engine import audio
from podcast.errors import StorageUnavailableError
from podcast.settings import Settings
from podcast.storage.blobs import BlobStore
from testkit import host
from testkit.azurite import AzuriteServer
from testkit.storage import FAST_FAILING, ScriptedTransport, http, is_block_staged, is_wav_commit

TEXT = "Welcome back. Today the river, tomorrow the sea, and after that the long way home."
ASYNC = {"Prefer": "respond-async"}


@dataclass
class Env:
    azurite: AzuriteServer
    emulator: RealtimeEmulator
    output: str
    jobs: str
    input: str
    queue: str
    transport: ScriptedTransport

    def service(self) -> BlobServiceClient:
        return BlobServiceClient.from_connection_string(self.azurite.connection_string)

    def blobs(self, container: str | None = None) -> dict[str, bytes]:
        with self.service() as service:
            client = service.get_container_client(container or self.output)
            if not client.exists():
                return {}
            return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs()}

    def delete_container(self, container: str) -> None:
        with self.service() as service:
            service.delete_container(container)


@pytest.fixture
async def env(
    jobs_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    azurite: AzuriteServer,
    emulator: RealtimeEmulator,
    container_name: str,
) -> AsyncIterator[Env]:
    transport = ScriptedTransport()
    monkeypatch.setenv("NARRATION_INPUT_CONTAINER", f"{container_name}-in")
    function_app.graph.use(
        lambda: App(Settings.from_env(), blob_options=FAST_FAILING, client_kwargs={"transport": transport})
    )
    try:
        yield Env(
            azurite,
            emulator,
            container_name,
            jobs_env["jobs_container"],
            f"{container_name}-in",
            jobs_env["NARRATION_QUEUE"],
            transport,
        )
    finally:
        await function_app.graph.aclose()
        function_app.graph.use(App.from_env)
        with (
            BlobServiceClient.from_connection_string(azurite.connection_string) as service,
            contextlib.suppress(ResourceNotFoundError),
        ):
            service.delete_container(f"{container_name}-in")


async def post(body: dict[str, Any], headers: dict[str, str] | None = None) -> host.HttpAnswer:
    request = host.http_request(
        "POST", "narrations", json=body, headers={"Cache-Control": "no-cache", **(headers or {})}
    )
    return await host.call_http(function_app.create_narration, request)


def failing(env: Env, count: int) -> Callable[[], Awaitable[None]]:
    """An action that makes the next ``count`` Storage requests fail."""

    async def fail() -> None:
        env.transport.fail_next(count)

    return fail


def check_link(body: dict[str, Any]) -> None:
    """The 200 body's link serves a whole WAV as long as the body says."""
    status, wav, _ = http("GET", body["audio_url"])
    assert status == 200
    assert struct.unpack_from("<I", wav, 40)[0] == len(wav) - 44
    assert audio.wav_info(wav).duration_seconds == pytest.approx(body["duration_seconds"], abs=0.001)


# --- A container that disappears ---------------------------------------------------------------


async def test_containers_deleted_between_requests_are_created_again(
    env: Env, azurite: AzuriteServer
) -> None:
    first = await post({"text": TEXT})
    assert first.status == 200, first.json()

    env.delete_container(env.output)
    second = await post({"text": TEXT})
    assert second.status == 200, second.json()
    check_link(second.json())

    env.delete_container(env.output)
    env.delete_container(env.jobs)
    accepted = await post({"text": TEXT}, ASYNC)
    assert accepted.status == 202, accepted.json()
    with QueueClient.from_connection_string(azurite.connection_string, env.queue) as queue:
        deliveries = await host.drain(function_app.narration_worker, queue)
    assert [d.error for d in deliveries] == [None]
    job = accepted.json()["id"]
    polled = await host.call_http(
        function_app.get_narration, host.http_request("GET", "narrations/{id}", route_params={"id": job})
    )
    assert polled.status == 200, polled.json()
    check_link(polled.json())


async def test_an_output_container_deleted_between_documents_is_created_again(env: Env) -> None:
    with env.service() as service:
        service.create_container(env.input)
        for name in ("one.txt", "two.txt"):
            service.get_blob_client(env.input, name).upload_blob(f"Document {name}.".encode())
        etags = {
            n: service.get_blob_client(env.input, n).get_blob_properties().etag
            for n in ("one.txt", "two.txt")
        }

    await host.call(
        function_app.narrate_document,
        host.blob_input_stream(env.input, "one.txt", b"Document one.txt.", etag=etags["one.txt"]),
    )
    env.delete_container(env.output)
    await host.call(
        function_app.narrate_document,
        host.blob_input_stream(env.input, "two.txt", b"Document two.txt.", etag=etags["two.txt"]),
    )
    assert sorted(env.blobs()) == ["two.json", "two.srt", "two.vtt", "two.wav"]


@pytest.mark.parametrize("sentences", [1, 12])
async def test_an_output_container_deleted_mid_narration_fails_the_request_transiently_and_the_next_succeeds(
    env: Env, sentences: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NARRATION_SEGMENT_WORDS", "30")
    text = " ".join(f"Part {i} of the story, where the river turns again." for i in range(sentences))
    env.transport.after(is_block_staged, lambda: asyncio.to_thread(env.delete_container, env.output))

    failed = await post({"text": text})

    assert failed.status == 503, failed.json()
    assert failed.json()["error"]["code"] == "storage_unavailable"
    assert failed.headers["Retry-After"]
    assert env.blobs() == {}, "nothing visible"

    again = await post({"text": text})
    assert again.status == 200, again.json()
    check_link(again.json())


# --- Storage failing right after the WAV commit ------------------------------------------------


@pytest.mark.parametrize("failures", [1, 2, 5, 9])
async def test_storage_failing_right_after_the_wav_commit_leaves_nothing_visible(
    env: Env, failures: int
) -> None:
    env.transport.after(is_wav_commit, failing(env, failures))

    answer = await post({"text": TEXT})

    if failures <= 2:
        # The SDK's own retry absorbs one refused connection per request, and the two
        # caption files are written at once: each takes one of two failures.
        assert answer.status == 200, answer.json()
        assert env.transport.failed == failures
        assert len(env.blobs()) == 4  # audio, captions (WebVTT, SRT), transcript
        return
    assert answer.status == 503, answer.json()
    assert answer.json()["error"]["code"] == "storage_unavailable"
    assert env.blobs() == {}, "no WAV without its transcript, nothing at all"
    assert env.transport.failed == failures

    # The failed narration was not remembered for reuse: the same request narrates afresh.
    sessions = len(env.emulator.sessions)
    again = await host.call_http(
        function_app.create_narration, host.http_request("POST", "narrations", json={"text": TEXT})
    )
    assert again.status == 200, again.json()
    assert len(env.emulator.sessions) == sessions + 1
    names = ("blob_name", "transcript_blob_name", "captions_blob_name", "srt_blob_name")
    assert sorted(env.blobs()) == sorted(again.json()[name] for name in names)


async def test_a_wav_left_by_storage_that_stays_down_is_never_served(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.transport.after(is_wav_commit, failing(env, 10_000))
    answer = await post({"text": TEXT})
    assert answer.status == 503, answer.json()
    assert "could not remove its partial output" in caplog.text
    env.transport.fail_next(0)

    left = env.blobs()
    assert [name.endswith(".wav") for name in left] == [True], "only the WAV, never a transcript"
    assert env.blobs(env.jobs) == {}, "no reuse entry points at it"
    sessions = len(env.emulator.sessions)
    again = await host.call_http(
        function_app.create_narration, host.http_request("POST", "narrations", json={"text": TEXT})
    )
    assert again.status == 200
    assert len(env.emulator.sessions) == sessions + 1, "narrated afresh, not served from the leftover"


async def test_a_document_whose_new_version_fails_after_the_wav_commit_leaves_no_mixed_pair(env: Env) -> None:
    with env.service() as service:
        service.create_container(env.input)
        blob = service.get_blob_client(env.input, "doc.txt")
        blob.upload_blob(b"The first version.")
        first = blob.get_blob_properties().etag
    await host.call(
        function_app.narrate_document,
        host.blob_input_stream(env.input, "doc.txt", b"The first version.", etag=first),
    )
    assert sorted(env.blobs()) == ["doc.json", "doc.srt", "doc.vtt", "doc.wav"]
    with env.service() as service:
        blob = service.get_blob_client(env.input, "doc.txt")
        blob.upload_blob(b"The second version, longer.", overwrite=True)
        second = blob.get_blob_properties().etag

    env.transport.after(is_wav_commit, failing(env, 4))
    stream = host.blob_input_stream(env.input, "doc.txt", b"The second version, longer.", etag=second)
    with pytest.raises(StorageUnavailableError):
        await host.call(function_app.narrate_document, stream)

    stored = env.blobs()
    assert "doc.wav" not in stored, "not the new WAV"
    assert "doc.json" not in stored, "nor the old transcript, whose audio it replaced"
    assert json.loads(stored["doc.error.json"])["status"] == "retrying"

    retry = host.blob_input_stream(env.input, "doc.txt", b"The second version, longer.", etag=second)
    await host.call(function_app.narrate_document, retry)
    stored = env.blobs()
    assert sorted(stored) == ["doc.json", "doc.srt", "doc.vtt", "doc.wav"]
    assert json.loads(stored["doc.json"])["transcript"] == "The second version, longer."


# --- Two writers of one WAV ----------------------------------------------------------------------


def pcm(value: int, samples: int) -> bytes:
    return struct.pack("<h", value) * samples


@pytest.mark.parametrize("first", ["a", "b"])
async def test_two_writers_of_one_name_never_mix_their_blocks(blob_store: BlobStore, first: str) -> None:
    writers = {"a": blob_store.wav_writer("same.wav"), "b": blob_store.wav_writer("same.wav")}
    pieces = {"a": [pcm(1, 1000), pcm(2, 3000)], "b": [pcm(3, 2000), pcm(4, 500), pcm(5, 700)]}
    for index in range(3):  # staged interleaved, the same indexes
        for key in ("a", "b"):
            if index < len(pieces[key]):
                await writers[key].stage(index, pieces[key][index])
    second = "b" if first == "a" else "a"

    await writers[first].commit(download_name="x.wav", metadata={})
    with pytest.raises(StorageUnavailableError, match="lost before its commit"):
        await writers[second].commit(download_name="x.wav", metadata={})

    url, _ = await blob_store.read_url("same.wav", expires_in=timedelta(minutes=5))
    _, wav, _ = http("GET", url)
    assert wav[44:] == b"".join(pieces[first])
    assert struct.unpack_from("<I", wav, 40)[0] == len(wav) - 44


async def test_azurite_restarted_empty_between_requests_needs_no_app_restart(
    jobs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, throwaway_azurite: AzuriteServer
) -> None:
    """Every container and the job queue gone at once (an emulator restarted in memory)."""
    monkeypatch.setenv("NARRATION_STORAGE", throwaway_azurite.connection_string)
    function_app.graph.use(lambda: App(Settings.from_env(), blob_options=FAST_FAILING))
    try:
        for round_ in range(2):
            synchronous = await post({"text": TEXT})
            assert synchronous.status == 200, (round_, synchronous.json())
            check_link(synchronous.json())
            accepted = await post({"text": TEXT}, ASYNC)
            assert accepted.status == 202, (round_, accepted.json())
            with QueueClient.from_connection_string(
                throwaway_azurite.connection_string, jobs_env["NARRATION_QUEUE"]
            ) as queue:
                deliveries = await host.drain(function_app.narration_worker, queue)
            assert [d.error for d in deliveries] == [None]
            polled = await host.call_http(
                function_app.get_narration,
                host.http_request("GET", "narrations/{id}", route_params={"id": accepted.json()["id"]}),
            )
            assert polled.status == 200, (round_, polled.json())
            if round_ == 0:
                throwaway_azurite.stop()
                throwaway_azurite.start()
    finally:
        await function_app.graph.aclose()
        function_app.graph.use(App.from_env)


async def test_a_result_whose_transcript_document_is_gone_is_not_reused(env: Env) -> None:
    plain = host.http_request("POST", "narrations", json={"text": TEXT})
    first = await host.call_http(function_app.create_narration, plain)
    assert first.status == 200
    reused = await host.call_http(
        function_app.create_narration, host.http_request("POST", "narrations", json={"text": TEXT})
    )
    assert reused.json()["id"] == first.json()["id"], "an identical request is reused"
    sessions = len(env.emulator.sessions)

    with env.service() as service:
        service.get_blob_client(env.output, first.json()["transcript_blob_name"]).delete_blob()
    again = await host.call_http(
        function_app.create_narration, host.http_request("POST", "narrations", json={"text": TEXT})
    )

    assert again.status == 200
    assert again.json()["id"] != first.json()["id"]
    assert len(env.emulator.sessions) == sessions + 1
