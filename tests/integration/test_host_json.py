"""host.json's queue settings, as the host applies them: a throttled job backs off for
``visibilityTimeout`` instead of being retried at once (Azurite and the emulator)."""

from __future__ import annotations

import json

import pytest
from azure.storage.queue import QueueClient

import function_app
from emulator import Fault, FaultKind, RealtimeEmulator
from podcast.errors import PodcastError
from testkit import host
from testkit.azurite import AzuriteServer


async def test_a_throttled_job_is_hidden_for_the_visibility_timeout_before_its_retry(
    jobs_env: dict[str, str],
    azurite: AzuriteServer,
    emulator: RealtimeEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = host.queue_settings()
    assert settings.visibility_timeout >= 30, "host.json must make a failed job wait before its retry"
    monkeypatch.setenv("AZURE_OPENAI_AUDIO_MAX_RETRIES", "0")
    emulator.inject(Fault(FaultKind.HANDSHAKE_429, times=None, retry_after=1))
    request = host.http_request(
        "POST",
        "narrations",
        body=json.dumps({"text": "A short text, narrated as a queued job."}).encode(),
        headers={"Content-Type": "application/json", "Prefer": "respond-async"},
        url="https://podcast.example.net/api/narrations",
    )
    accepted = await host.call_http(function_app.create_narration, request)
    assert accepted.status == 202

    with QueueClient.from_connection_string(azurite.connection_string, jobs_env["NARRATION_QUEUE"]) as client:
        with pytest.raises(PodcastError) as raised:
            await host.deliver(function_app.narration_worker, client, settings=settings)
        assert raised.value.transient
        # Still queued, but invisible: nothing can take it again until the timeout passes.
        assert client.get_queue_properties().approximate_message_count == 1
        assert client.peek_messages() == []
        assert await host.deliver(function_app.narration_worker, client, settings=settings) is None
    assert emulator.handshakes == 1
