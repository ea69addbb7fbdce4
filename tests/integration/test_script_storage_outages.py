"""Storage failing part-way through a script narration, for real (Azurite, the SDK's own
transport sending chosen requests to a closed port): while the turns' audio is staged, right
after the audio commit (the transcript write fails), and in a conversation whose script was
already stored. The answer is a mapped 503 with ``Retry-After``, never a 200 with a broken
link; no audio is left that a later identical request could take for a finished narration;
and the retry once Storage is back succeeds, on the synchronous and on the job path."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from azure.storage.queue import QueueClient

import function_app
from emulator import RealtimeEmulator
from podcast.app import App
from podcast.engine import audio
from podcast.settings import Settings
from testkit import host
from testkit.azurite import AzuriteServer
from testkit.storage import FAST_FAILING, ScriptedTransport, blobs_in, http, is_block_staged, is_wav_commit

SPEAKERS = [{"name": "Maya", "voice": "marin"}, {"name": "Leo", "voice": "cedar"}]
SCRIPT = [
    {"speaker": "Maya", "text": "Welcome back. Today the river, and why it bends."},
    {"speaker": "Leo", "text": "Water runs faster on the outside of a bend."},
    {"speaker": "Maya", "text": "So the outer bank wears away, year after year."},
    {"speaker": "Leo", "text": "And the inside fills with sand. That is all for today."},
]
SCRIPTED = {"speakers": SPEAKERS, "script": SCRIPT, "title": "Bends"}
CONVERSATION = {"text": "Rivers bend. Fast water erodes the outer bank.", "mode": "conversation"}
STAYS_DOWN = 10_000
"""Refused requests that outlast any retry: Storage stays down until the test restores it."""
NAMES = ("blob_name", "transcript_blob_name", "captions_blob_name", "srt_blob_name")


@dataclass
class Env:
    azurite: AzuriteServer
    emulator: RealtimeEmulator
    output: str
    jobs: str
    queue: str
    transport: ScriptedTransport

    def outputs(self) -> list[str]:
        return blobs_in(self.azurite, self.output)

    def stored(self, prefix: str) -> list[str]:
        return [name for name in blobs_in(self.azurite, self.jobs) if name.startswith(prefix)]

    def storage_down(self, requests: int = STAYS_DOWN) -> Any:
        """An action that makes the next ``requests`` Storage requests fail."""

        async def stop() -> None:
            self.transport.fail_next(requests)

        return stop

    def storage_back(self) -> None:
        self.transport.fail_next(0)


@pytest.fixture
async def env(
    jobs_env: dict[str, str], azurite: AzuriteServer, emulator: RealtimeEmulator, container_name: str
) -> AsyncIterator[Env]:
    transport = ScriptedTransport()
    function_app.graph.use(
        lambda: App(Settings.from_env(), blob_options=FAST_FAILING, client_kwargs={"transport": transport})
    )
    try:
        jobs, queue = jobs_env["jobs_container"], jobs_env["NARRATION_QUEUE"]
        yield Env(azurite, emulator, container_name, jobs, queue, transport)
    finally:
        await function_app.graph.aclose()
        function_app.graph.use(App.from_env)


async def post(body: dict[str, Any], headers: dict[str, str] | None = None) -> host.HttpAnswer:
    request = host.http_request("POST", "narrations", json=body, headers=headers or {})
    return await host.call_http(function_app.create_narration, request)


def check_succeeded(env: Env, answer: host.HttpAnswer) -> None:
    """A 200 whose link serves a whole WAV, and exactly its four files in the output container."""
    assert answer.status == 200, answer.json()
    body = answer.json()
    status, wav, _ = http("GET", body["audio_url"])
    assert status == 200
    assert struct.unpack_from("<I", wav, 40)[0] == len(wav) - 44
    assert audio.wav_info(wav).duration_seconds == pytest.approx(body["duration_seconds"], abs=0.001)
    assert env.outputs() == sorted(body[name] for name in NAMES)


def script_sessions(emulator: RealtimeEmulator) -> int:
    """Script replies the model was asked for (text-only sessions)."""
    return sum(1 for s in emulator.sessions if s.client_events[0]["session"]["output_modalities"] == ["text"])


def check_refused(answer: host.HttpAnswer) -> None:
    assert answer.status == 503, answer.json()
    assert answer.json()["error"]["code"] == "storage_unavailable"
    assert int(answer.headers["Retry-After"]) >= 1
    assert "audio_url" not in answer.json()


@pytest.mark.parametrize(
    ("moment", "refused"),
    [
        ("staging", STAYS_DOWN),  # the turns' audio is being staged: down until restored
        ("after_commit", 4),  # the transcript write fails (two tries of two), then the clean-up runs
    ],
)
async def test_a_script_narration_whose_storage_fails_part_way_is_a_503_and_the_retry_succeeds(
    env: Env, moment: str, refused: int
) -> None:
    env.transport.after(is_block_staged if moment == "staging" else is_wav_commit, env.storage_down(refused))

    failed = await post(SCRIPTED)

    check_refused(failed)
    env.storage_back()
    assert env.outputs() == [], "no audio, transcript or captions left behind"
    assert env.stored("narrations/") == [], "nothing findable by id"
    assert env.stored("cache/") == [], "nothing reusable"

    sessions = len(env.emulator.sessions)
    again = await post(SCRIPTED)
    check_succeeded(env, again)
    assert len(env.emulator.sessions) > sessions, "narrated afresh: nothing half-made was reused"
    assert again.json()["transcript"].startswith("Maya: Welcome back.")


async def test_a_conversation_whose_voicing_storage_fails_keeps_its_script_and_the_retry_voices_it(
    env: Env,
) -> None:
    env.transport.after(is_block_staged, env.storage_down())

    failed = await post(CONVERSATION)

    check_refused(failed)
    env.storage_back()
    assert env.outputs() == []
    assert len(env.stored("scripts/")) == 1, "the script was stored before the voicing failed"
    writing = script_sessions(env.emulator)

    again = await post(CONVERSATION)
    check_succeeded(env, again)
    assert script_sessions(env.emulator) == writing, "the stored script voiced, none written again"


async def test_a_script_job_whose_storage_fails_mid_audio_is_delivered_again_and_succeeds(
    env: Env, azurite: AzuriteServer
) -> None:
    accepted = await post(SCRIPTED, {"Prefer": "respond-async"})
    assert accepted.status == 202, accepted.json()

    # Storage goes down once the first delivery has staged audio and stays down for the rest
    # of that delivery (whatever its own retries), then comes back for the next delivery.
    env.transport.after(is_block_staged, env.storage_down())
    with QueueClient.from_connection_string(azurite.connection_string, env.queue) as queue:
        first = await host.deliver(function_app.narration_worker, queue, raise_errors=False)
        env.storage_back()
        assert first is not None, "the job was queued"
        deliveries = [first, *await host.drain(function_app.narration_worker, queue)]

    assert [type(d.error).__name__ for d in deliveries] == ["StorageUnavailableError", "NoneType"]
    polled = await host.call_http(
        function_app.get_narration,
        host.http_request("GET", "narrations/{id}", url=accepted.headers["Location"]),
    )
    check_succeeded(env, polled)


async def test_a_conversation_job_asked_to_write_afresh_pays_for_its_script_once_over_deliveries(
    env: Env, azurite: AzuriteServer
) -> None:
    first = await post(CONVERSATION)
    check_succeeded(env, first)
    writing = script_sessions(env.emulator)

    accepted = await post(CONVERSATION, {"Prefer": "respond-async", "Cache-Control": "no-cache"})
    assert accepted.status == 202, accepted.json()
    # The first delivery writes the script afresh (no-cache), then Storage refuses its audio:
    # the message comes back, and the second delivery voices the script the first wrote.
    env.transport.after(is_block_staged, env.storage_down())
    with QueueClient.from_connection_string(azurite.connection_string, env.queue) as queue:
        failed = await host.deliver(function_app.narration_worker, queue, raise_errors=False)
        env.storage_back()
        assert failed is not None, "the job was queued"
        assert script_sessions(env.emulator) == writing + 1, "no-cache: written afresh"
        deliveries = [failed, *await host.drain(function_app.narration_worker, queue)]

    assert [type(d.error).__name__ for d in deliveries] == ["StorageUnavailableError", "NoneType"]
    assert script_sessions(env.emulator) == writing + 1, "the redelivery did not pay for it again"
    polled = await host.call_http(
        function_app.get_narration,
        host.http_request("GET", "narrations/{id}", url=accepted.headers["Location"]),
    )
    assert polled.status == 200, polled.json()
