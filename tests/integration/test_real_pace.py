"""A ~3-minute text at the real service's pace (the emulator's ``REAL_PACE``), through the
HTTP function as the host calls it: the synchronous path finishes well within its time
budget, and the ``Retry-After`` a caller of the asynchronous path is given is within a
sensible factor of the time the narration really takes (measured: 161-164 s of audio in
~17 s either way; ``Retry-After: 14`` at acceptance).

About 30 s of wall time in all (each narration ~13 s): the real pace is the point.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from azure.storage.queue import QueueClient

import function_app
from emulator import REAL_PACE, RealtimeEmulator
from podcast.models import NarrationRequest
from podcast.services.records import estimate_audio_seconds
from podcast.settings import JobSettings, PipelineSettings
from testkit import host
from testkit.azurite import AzuriteServer

SENTENCES = [
    "The lighthouse keeper climbed the spiral stairs before dawn to trim the wick and wipe the glass.",
    "Below him the harbour woke slowly, gulls circling the fishing boats that rocked against the quay.",
    "He wrote the weather in his logbook, the wind from the north west and the swell rising by the hour.",
    "By noon a grey line of cloud had crept over the sea and the ferry captain sent word he would wait.",
]
TEXT = "\n\n".join(" ".join(SENTENCES[(p + s) % 4] for s in range(4)) for p in range(6))
"""Twenty-four sentences, about 430 words: just under the three minutes the synchronous path takes."""

FACTOR = 2.0
"""How much longer than the real completion time a ``Retry-After`` may be (a caller would
wait for nothing)."""
UNDER_FACTOR = 3.0
"""How much shorter it may be (a caller polls again: cheaper, and a loaded machine is slower)."""


@pytest.fixture(scope="module")
def emulator_server() -> Iterator[RealtimeEmulator]:
    """This module's emulator streams at the real pace (the suite's default is instant); it
    accepts any key (authentication is tested elsewhere)."""
    server = RealtimeEmulator(api_key=None, engine="synthetic", pace=REAL_PACE).start_in_thread()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def real_pace_env(jobs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The production defaults for the response timeout and retries (the suite shortens them)."""
    monkeypatch.delenv("AZURE_OPENAI_AUDIO_TIMEOUT_SECONDS")
    monkeypatch.delenv("AZURE_OPENAI_AUDIO_MAX_RETRIES")
    return jobs_env


async def post(headers: dict[str, str] | None = None) -> host.HttpAnswer:
    request = host.http_request("POST", "narrations", json={"text": TEXT}, headers=headers)
    return await host.call_http(function_app.create_narration, request)


async def poll(location: str) -> host.HttpAnswer:
    request = host.http_request("GET", "narrations/{id}", url=location)
    return await host.call_http(function_app.get_narration, request)


def test_the_text_is_about_three_minutes_and_goes_the_synchronous_way() -> None:
    estimate = estimate_audio_seconds(NarrationRequest(text=TEXT))
    assert 170 <= estimate <= JobSettings().sync_max_audio_seconds


async def test_three_minutes_at_real_pace_finish_synchronously_well_within_the_budget(
    real_pace_env: dict[str, str], emulator: RealtimeEmulator
) -> None:
    started = time.monotonic()
    answer = await post()
    elapsed = time.monotonic() - started

    body = answer.json()
    assert answer.status == 200, body
    assert 150 <= body["duration_seconds"] <= 190
    budget = PipelineSettings().time_budget_seconds
    assert elapsed < budget / 4, f"{elapsed:.1f}s of a {budget:.0f}s budget"
    assert REAL_PACE.speed is not None
    one_session = body["duration_seconds"] / REAL_PACE.speed
    assert elapsed < one_session, "segments ran in parallel sessions"
    print(f"\nsynchronous: {body['duration_seconds']:.1f}s of audio in {elapsed:.1f}s")


async def test_the_retry_after_of_a_job_is_within_a_factor_of_its_real_completion_time(
    real_pace_env: dict[str, str], emulator: RealtimeEmulator, azurite: AzuriteServer
) -> None:
    accepted = await post({"Prefer": "respond-async"})
    assert accepted.status == 202, accepted.json()
    first_retry_after = int(accepted.headers["Retry-After"])
    location = accepted.headers["Location"]

    polls: list[tuple[float, int, str]] = []
    started = time.monotonic()
    with QueueClient.from_connection_string(
        azurite.connection_string, real_pace_env["NARRATION_QUEUE"]
    ) as client:
        worker = asyncio.create_task(host.deliver(function_app.narration_worker, client))
        while not worker.done():
            answer = await poll(location)
            if answer.status != 202:
                break  # finished: the worker is only tidying up
            at = time.monotonic() - started
            polls.append((at, int(answer.headers["Retry-After"]), answer.json()["status"]))
            await asyncio.wait({worker}, timeout=1.0)
        assert await worker is not None
    completed = time.monotonic() - started
    final = await poll(location)
    assert final.status == 200, final.json()

    print(f"\nasynchronous: done in {completed:.1f}s; Retry-After {first_retry_after}s at acceptance")
    for at, retry_after, status in polls:
        print(
            f"  poll at {at:5.1f}s: {status:8} Retry-After {retry_after}s (done {completed - at:5.1f}s later)"
        )
    assert completed / UNDER_FACTOR <= first_retry_after <= completed * FACTOR
    for at, retry_after, _ in polls:
        remaining = completed - at
        assert retry_after <= max(2 * FACTOR, remaining * FACTOR), (at, retry_after, remaining)
