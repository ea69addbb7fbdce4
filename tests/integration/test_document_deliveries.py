"""The same document delivered more than once, and documents overwritten while narrated,
through the decorated blob function as the host calls it, against a paced Realtime emulator
(so narrations really overlap) and a real Azurite.

Every result is checked from the outside: the WAV header's sizes against its data, the
``.json``'s duration against the WAV, the WAV's PCM byte for byte against the same text
narrated alone (so no audio of another version or delivery is inside), the Realtime sessions
opened (one narration per version), and the commits Storage received.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import struct
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

import function_app
from emulator import RealtimeEmulator
from podcast.app import App
from podcast.services.documents import claim_name
from podcast.settings import Settings
from podcast.wire import DocumentClaim, job_timestamp
from testkit import host
from testkit.azurite import AzuriteServer
from testkit.storage import ScriptedTransport, is_block_staged

KEY = "emulator-key"
PACE = 25.0
"""Seconds of audio the emulator sends per second: slow enough for deliveries to overlap."""


def sentences(count: int, topic: str) -> str:
    return " ".join(f"Sentence {i} tells how the {topic} river bends near town {i}." for i in range(count))


@pytest.fixture(scope="module")
def paced_server() -> Iterator[RealtimeEmulator]:
    # Every session at one level: the tests compare stored audio byte for byte with a
    # reference narration, and leveling sessions spoken at different levels rounds differently.
    server = RealtimeEmulator(
        api_key=KEY, engine="synthetic", speed=PACE, level_variation_db=0.0
    ).start_in_thread()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def paced(paced_server: RealtimeEmulator) -> RealtimeEmulator:
    paced_server.reset()
    return paced_server


@dataclass(frozen=True)
class Version:
    """One saved version of an input blob."""

    container: str
    name: str
    data: bytes
    etag: str

    def stream(self) -> func.blob.InputStream:
        """What the host hands the trigger for one delivery of this version (each delivery
        gets its own stream)."""
        return host.blob_input_stream(self.container, self.name, self.data, etag=self.etag)


@dataclass
class Env:
    azurite: AzuriteServer
    emulator: RealtimeEmulator
    output: str
    input: str
    jobs: str
    transport: ScriptedTransport

    def service(self) -> BlobServiceClient:
        return BlobServiceClient.from_connection_string(self.azurite.connection_string)

    def upload(self, name: str, data: bytes) -> Version:
        """Store ``data`` as ``name`` in the input container."""
        with self.service() as service:
            container = service.get_container_client(self.input)
            with contextlib.suppress(Exception):
                container.create_container()
            blob = container.get_blob_client(name)
            blob.upload_blob(data, overwrite=True)
            etag = blob.get_blob_properties().etag
        return Version(self.input, name, data, str(etag))

    def outputs(self) -> dict[str, bytes]:
        with self.service() as service:
            client = service.get_container_client(self.output)
            if not client.exists():
                return {}
            return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs()}

    def wav_metadata(self, name: str) -> dict[str, str]:
        with self.service() as service:
            return dict(service.get_blob_client(self.output, name).get_blob_properties().metadata)

    def wav_commits(self, name: str) -> int:
        return sum(
            1 for method, url in self.transport.sent if method == "PUT" and f"/{name}?comp=blocklist" in url
        )

    def sessions_speaking(self, text: str) -> int:
        """Realtime responses that spoke part of ``text``."""
        return sum(
            1
            for session in self.emulator.sessions
            for response in session.responses
            if response.transcript and response.transcript.strip() in text
        )


@pytest.fixture
async def env(
    monkeypatch: pytest.MonkeyPatch, azurite: AzuriteServer, container_name: str, paced: RealtimeEmulator
) -> AsyncIterator[Env]:
    transport = ScriptedTransport()
    settings = {
        "AZURE_OPENAI_AUDIO_ENDPOINT": paced.url,
        "AZURE_OPENAI_AUDIO_API_KEY": KEY,
        "AZURE_OPENAI_AUDIO_MAX_RETRIES": "0",
        "AZURE_OPENAI_AUDIO_TIMEOUT_SECONDS": "20",
        "NARRATION_STORAGE": azurite.connection_string,
        "NARRATION_OUTPUT_CONTAINER": container_name,
        "NARRATION_INPUT_CONTAINER": f"{container_name}-in",
        "NARRATION_SEGMENT_WORDS": "40",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    function_app.graph.use(lambda: App(Settings.from_env(), client_kwargs={"transport": transport}))
    try:
        yield Env(azurite, paced, container_name, f"{container_name}-in", f"{container_name}-jobs", transport)
    finally:
        await function_app.graph.aclose()
        function_app.graph.use(App.from_env)
        with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
            for container in (container_name, f"{container_name}-in", f"{container_name}-jobs"):
                with contextlib.suppress(ResourceNotFoundError):
                    service.delete_container(container)


async def deliver(version: Version) -> None:
    await host.call(function_app.narrate_document, version.stream())


def check_complete(env: Env, base: str, text: str, data: bytes) -> tuple[bytes, dict[str, Any]]:
    """The WAV and ``.json`` of ``base``: whole, consistent, and of ``data``'s version."""
    stored = env.outputs()
    wav, document = stored[f"{base}.wav"], json.loads(stored[f"{base}.json"])
    riff_size, data_size = struct.unpack_from("<I", wav, 4)[0], struct.unpack_from("<I", wav, 40)[0]
    assert (wav[:4], wav[36:40]) == (b"RIFF", b"data")
    assert data_size == len(wav) - 44, "the WAV header's data size disagrees with its data"
    assert riff_size == len(wav) - 8
    assert document["duration_seconds"] == pytest.approx(data_size / 48_000, abs=0.001)
    assert " ".join(document["transcript"].split()) == text
    assert document["source"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert env.wav_metadata(f"{base}.wav")["narration_id"] == document["id"]
    return wav, document


async def reference_wav(env: Env, text: str, name: str) -> bytes:
    """The same text narrated alone, with nothing racing it."""
    data = text.encode()
    await deliver(env.upload(f"reference/{name}.txt", data))
    return check_complete(env, f"reference/{name}", text, data)[0]


# --- The same version delivered at once ------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "deliveries"),
    [(1, 2), (4, 2), (12, 2), (30, 2), (7, 3), (20, 4)],
    ids=lambda v: str(v),
)
async def test_the_same_version_delivered_at_once_is_narrated_once_and_stored_whole(
    env: Env, count: int, deliveries: int
) -> None:
    text = sentences(count, "north")
    data = text.encode()
    stream = env.upload("doc.txt", data)

    await asyncio.gather(*(deliver(stream) for _ in range(deliveries)))

    wav, document = check_complete(env, "doc", text, data)
    assert env.sessions_speaking(text) == len(document["segments"]), "one narration of the version"
    assert all(segment["attempts"] == 1 for segment in document["segments"])
    assert env.wav_commits("doc.wav") == 1
    assert sorted(env.outputs()) == ["doc.json", "doc.srt", "doc.vtt", "doc.wav"]
    assert wav[44:] == (await reference_wav(env, text, "doc"))[44:], "no audio of another delivery"
    with env.service() as service:
        assert not service.get_blob_client(env.jobs, claim_name("doc.txt")).exists(), "claim released"


async def test_a_redelivery_after_the_narration_does_nothing(env: Env) -> None:
    text = sentences(3, "east")
    stream = env.upload("again.txt", text.encode())
    await deliver(stream)
    first = env.emulator.handshakes
    await asyncio.gather(deliver(stream), deliver(stream))
    assert env.emulator.handshakes == first
    check_complete(env, "again", text, text.encode())


# --- A document overwritten while it is narrated ---------------------------------------------


@pytest.mark.parametrize(("old_count", "new_count"), [(30, 1), (30, 8), (12, 40)], ids=lambda v: str(v))
async def test_a_document_overwritten_while_narrated_keeps_only_the_newer_version(
    env: Env, old_count: int, new_count: int, caplog: pytest.LogCaptureFixture
) -> None:
    old_text, new_text = sentences(old_count, "old"), sentences(new_count, "new")
    old = env.upload("story.txt", old_text.encode())
    newer: list[asyncio.Task[None]] = []

    async def save_again_and_deliver() -> None:
        # The older narration has staged its first audio: the document is saved again.
        stream = await asyncio.to_thread(env.upload, "story.txt", new_text.encode())
        newer.append(asyncio.create_task(deliver(stream)))

    env.transport.after(is_block_staged, save_again_and_deliver)
    caplog.set_level("INFO", logger="podcast")

    await deliver(old)
    await asyncio.gather(*newer)

    assert newer, "the document was saved again while the first version was narrated"
    assert env.sessions_speaking(old_text) >= 1, "the older version was being narrated"
    wav, _ = check_complete(env, "story", new_text, new_text.encode())
    assert env.wav_commits("story.wav") == 1, "the older narration never committed"
    assert "narration discarded" in caplog.text
    assert wav[44:] == (await reference_wav(env, new_text, "story"))[44:]


async def test_a_delivery_of_a_version_already_replaced_narrates_nothing(env: Env) -> None:
    old = env.upload("late.txt", b"The first words.")
    new = env.upload("late.txt", b"The second words, saved right after.")

    await deliver(old)
    assert env.emulator.handshakes == 0
    assert env.outputs() == {}

    await deliver(new)
    check_complete(env, "late", new.data.decode(), new.data)


# --- Claims: live ones are respected, lapsed ones taken over ---------------------------------


def put_claim(env: Env, source_name: str, version: str, *, expires_in: timedelta) -> None:
    claim = DocumentClaim(
        version=version,
        sha256="0" * 64,
        attempt="another-worker",
        expires_at=job_timestamp(datetime.now(UTC) + expires_in),
    )
    with env.service() as service:
        container = service.get_container_client(env.jobs)
        with contextlib.suppress(Exception):
            container.create_container()
        document = json.dumps(claim.model_dump(mode="json"))
        container.upload_blob(claim_name(source_name), document, overwrite=True)


async def test_a_live_claim_on_the_same_version_makes_a_delivery_a_duplicate(env: Env) -> None:
    stream = env.upload("claimed.txt", b"Someone else is reading this.")
    put_claim(env, "claimed.txt", stream.etag, expires_in=timedelta(minutes=1))

    await deliver(stream)  # returns: the claimant's own delivery is retried if it fails

    assert env.emulator.handshakes == 0
    assert env.outputs() == {}


@pytest.mark.parametrize("holder", ["lapsed", "older version"])
async def test_a_lapsed_claim_or_one_for_an_older_version_is_taken_over(env: Env, holder: str) -> None:
    stream = env.upload("taken.txt", b"The worker that claimed this died.")
    etag = stream.etag
    if holder == "lapsed":
        put_claim(env, "taken.txt", etag, expires_in=timedelta(seconds=-1))
    else:
        put_claim(env, "taken.txt", '"0x8DEADBEEF"', expires_in=timedelta(minutes=1))

    await deliver(stream)

    check_complete(env, "taken", "The worker that claimed this died.", b"The worker that claimed this died.")
    with env.service() as service:
        assert not service.get_blob_client(env.jobs, claim_name("taken.txt")).exists()
