"""Identical script requests at the same moment, as Functions calls them, against the emulator
and Azurite: written (and billed) once, in one instance and across two, the 502 shared, a
waiter that runs out of patience answered 503 with ``Retry-After``, and a claim left by a
writer that was killed taken over once it lapses.

Model calls are counted from the emulator's own log (``emulator.sessions``: one Realtime
session per script reply). The second instance is a second :class:`~podcast.app.App` (its
own clients and its own script service: all the two share is Azurite) or, for the writer
that dies, a separate Python process killed with ``SIGKILL``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from azure.core.pipeline.transport import HttpRequest
from azure.storage.blob import BlobServiceClient

import function_app
from emulator import Fault, FaultKind, RealtimeEmulator
from podcast.app import App
from podcast.http import handlers
from podcast.settings import Settings
from podcast.wire import ScriptCacheEntry
from testkit import host
from testkit.azurite import AzuriteServer
from testkit.storage import FAST_FAILING, ScriptedTransport

TEXT = "Rivers bend because water flows faster on the outside. The fast water erodes the bank."
REQUEST = {"text": TEXT, "target_minutes": 1}
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(60)


def script_request(body: dict[str, Any] | None = None) -> Any:
    return host.http_request("POST", "scripts", json=body or REQUEST)


async def call(body: dict[str, Any] | None = None) -> host.HttpAnswer:
    """``POST /api/scripts`` through ``function_app`` (this instance)."""
    return await host.call_http(function_app.create_script, script_request(body))


async def call_on(app: App, body: dict[str, Any] | None = None) -> host.HttpAnswer:
    """``POST /api/scripts`` on another instance: what ``function_app.create_script`` does
    with that instance's object graph."""

    async def create_script(req: Any) -> Any:
        return await handlers.create_script(req, app)

    return await host.call_http(create_script, script_request(body))


def writing_sessions(emulator: RealtimeEmulator) -> int:
    """Script replies the model was asked for (text-only sessions)."""
    return sum(
        1
        for session in emulator.sessions
        if session.client_events and session.client_events[0]["session"].get("output_modalities") == ["text"]
    )


def entries(azurite: AzuriteServer, container: str) -> list[ScriptCacheEntry]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        client = service.get_container_client(container)
        if not client.exists():
            return []
        return [
            ScriptCacheEntry.model_validate_json(client.download_blob(blob.name).readall())
            for blob in client.list_blobs(name_starts_with="scripts/")
        ]


def is_claim_written(request: HttpRequest, status: int) -> bool:
    body = request.body
    text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else str(body or "")
    return request.method == "PUT" and "/scripts/" in request.url and status == 201 and '"writing"' in text


def is_entry_read(request: HttpRequest, status: int) -> bool:
    return request.method == "GET" and "/scripts/" in request.url and status in (200, 206)


Instances = tuple[ScriptedTransport, App, ScriptedTransport]


@pytest.fixture
async def instances(jobs_env: dict[str, str]) -> AsyncIterator[Instances]:
    """This instance (``function_app``'s graph) and another one, each with its own Storage
    transport."""
    here = ScriptedTransport()
    function_app.graph.use(
        lambda: App(Settings.from_env(), blob_options=FAST_FAILING, client_kwargs={"transport": here})
    )
    there = ScriptedTransport()
    other = App(
        Settings.from_env(),
        blob_options=FAST_FAILING,
        client_kwargs={"transport": there},
    )
    try:
        yield here, other, there
    finally:
        await other.aclose()
        await function_app.graph.aclose()
        function_app.graph.use(App.from_env)


@pytest.mark.parametrize("count", [2, 5])
async def test_identical_requests_at_once_in_one_instance_are_written_once(
    jobs_env: dict[str, str], emulator: RealtimeEmulator, azurite: AzuriteServer, count: int
) -> None:
    answers = await asyncio.gather(*(call() for _ in range(count)))

    assert [a.status for a in answers] == [200] * count, [a.json() for a in answers]
    assert all(a.json() == answers[0].json() for a in answers), "one script for all of them"
    assert writing_sessions(emulator) == 1
    assert [e.state for e in entries(azurite, jobs_env["jobs_container"])] == ["succeeded"]


async def test_a_script_that_stays_invalid_is_one_502_for_requests_at_once(
    jobs_env: dict[str, str], emulator: RealtimeEmulator, azurite: AzuriteServer
) -> None:
    emulator.inject(Fault(FaultKind.INVALID_SCRIPT, times=None))

    answers = await asyncio.gather(*(call() for _ in range(3)))

    assert [a.status for a in answers] == [502] * 3
    assert all(a.json() == answers[0].json() for a in answers)
    assert answers[0].json()["error"]["code"] == "script_invalid"
    assert writing_sessions(emulator) == 3, "one writer's three attempts, nobody else's"
    assert [e.state for e in entries(azurite, jobs_env["jobs_container"])] == ["failed"]


async def test_identical_conversations_at_once_write_their_script_once(
    jobs_env: dict[str, str], emulator: RealtimeEmulator
) -> None:
    body = {"text": TEXT, "mode": "conversation", "target_minutes": 0.5}

    answers = await asyncio.gather(
        *(
            host.call_http(function_app.create_narration, host.http_request("POST", "narrations", json=body))
            for _ in range(2)
        )
    )

    assert [a.status for a in answers] == [200, 200], [a.json() for a in answers]
    assert writing_sessions(emulator) == 1, "the script is written once; each narration voices it"
    assert answers[0].json()["transcript"] == answers[1].json()["transcript"]


@pytest.mark.parametrize(("here_count", "there_count"), [(1, 1), (3, 2)])
async def test_identical_requests_at_once_on_two_instances_are_written_once(
    instances: Instances,
    emulator: RealtimeEmulator,
    azurite: AzuriteServer,
    jobs_env: dict[str, str],
    here_count: int,
    there_count: int,
) -> None:
    here, other, there = instances
    seen = asyncio.Event()
    for transport in (here, there):  # whichever instance claims waits until the other saw its claim
        transport.after(is_claim_written, _waiting_for(seen))
        transport.after(is_entry_read, _set(seen))

    answers = await asyncio.gather(
        *(call() for _ in range(here_count)), *(call_on(other) for _ in range(there_count))
    )

    assert [a.status for a in answers] == [200] * (here_count + there_count), [a.json() for a in answers]
    assert all(a.json() == answers[0].json() for a in answers)
    assert writing_sessions(emulator) == 1
    assert [e.state for e in entries(azurite, jobs_env["jobs_container"])] == ["succeeded"]


@pytest.mark.parametrize("where", ["this instance", "another instance"])
async def test_a_waiter_gets_a_503_with_retry_after_when_the_writer_is_slow_then_the_script(
    instances: Instances, emulator: RealtimeEmulator, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    here, _, _ = instances
    monkeypatch.setenv("NARRATION_SCRIPT_WAIT_SECONDS", "0.3")  # both instances wait 0.3 s at most
    impatient_instance = App(Settings.from_env(), blob_options=FAST_FAILING)
    claimed, gave_up = asyncio.Event(), asyncio.Event()

    async def slow_writer() -> None:  # this instance's writer takes until the waiter gave up
        claimed.set()
        await gave_up.wait()

    here.after(is_claim_written, slow_writer)

    async def waiting() -> host.HttpAnswer:
        await claimed.wait()
        try:
            return await (call() if where == "this instance" else call_on(impatient_instance))
        finally:
            gave_up.set()

    try:
        writer, waiter = await asyncio.gather(call(), waiting())
        retry = await (call() if where == "this instance" else call_on(impatient_instance))
    finally:
        await impatient_instance.aclose()

    assert waiter.status == 503, waiter.json()
    assert waiter.json()["error"]["code"] == "script_in_progress"
    assert int(waiter.headers["Retry-After"]) >= 1
    assert writer.status == 200
    assert (retry.status, retry.json()) == (200, writer.json())
    assert writing_sessions(emulator) == 1


async def test_a_claim_left_by_a_killed_writer_is_taken_over_once_it_lapses(
    jobs_env: dict[str, str],
    emulator: RealtimeEmulator,
    azurite: AzuriteServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NARRATION_SCRIPT_CLAIM_SECONDS", "1")
    emulator.inject(Fault(FaultKind.HANG))  # the first writer's reply never comes
    program = (
        "import asyncio, function_app\n"
        "from testkit import host\n"
        f"request = host.http_request('POST', 'scripts', json={REQUEST!r})\n"
        "asyncio.run(host.call_http(function_app.create_script, request))\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", program], cwd=ROOT, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while not emulator.sessions or not emulator.sessions[0].responses:  # claimed, and writing
            assert writer.poll() is None, "the writer process ended before it was killed"
            assert time.monotonic() < deadline, "the writer process never asked for a script"
            await asyncio.sleep(0.05)
        (claim,) = entries(azurite, jobs_env["jobs_container"])
        assert claim.state == "writing"
    finally:
        writer.kill()
        writer.wait()

    started = time.monotonic()
    answer = await call()
    waited = time.monotonic() - started

    assert answer.status == 200, answer.json()
    assert writing_sessions(emulator) == 2, "the dead writer's reply and the one that took over"
    assert waited < 5, "taken over once the claim lapsed (1 s), not after the wait (60 s)"
    (entry,) = entries(azurite, jobs_env["jobs_container"])
    assert entry.state == "succeeded"
    assert json.loads(answer.body)["script"] == entry.model_dump(mode="json")["script"]["script"]


def _waiting_for(event: asyncio.Event) -> Callable[[], Awaitable[None]]:
    async def wait() -> None:
        await event.wait()

    return wait


def _set(event: asyncio.Event) -> Callable[[], Awaitable[None]]:
    async def set_it() -> None:
        event.set()

    return set_it
