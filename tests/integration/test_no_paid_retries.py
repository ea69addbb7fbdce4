"""Nothing is paid for twice: text with nothing to say never opens a session, and a
permanent, token-costing failure is answered so that the default retry policies of Power
Automate and Logic Apps (408, 429 and 5xx, four times) do not send it again.

Called as the Functions host calls the decorated functions, against the Realtime emulator
(its content-filter and paraphrase faults) and a real Azurite.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.storage.queue import QueueClient

import function_app
from emulator import Fault, FaultKind, RealtimeEmulator
from testkit import host
from testkit.azurite import AzuriteServer
from testkit.storage import blobs_in
from tests.integration.test_blob_trigger import INPUT, outputs, upload

TEXT = "Welcome to the show. Today we talk about rivers, and why they bend the way they do."
ASYNC = {"Prefer": "respond-async"}
RETRIED_BY_DEFAULT = {408, 429} | set(range(500, 600))
NOTHING_TO_SAY = {
    "zero-width": "\u200b\u200d\ufeff\u2060",
    "punctuation": "... ?! ;",
    "markers": "---\n\n***\n\n###\n\n<<<\n>>>",
    "emoji": "🎉 👍🏽 🇫🇷",
}


async def post(body: dict[str, Any], headers: dict[str, str] | None = None) -> host.HttpAnswer:
    return await host.call_http(
        function_app.create_narration,
        host.http_request("POST", "narrations", json=body, headers=headers),
    )


async def poll(location: str) -> host.HttpAnswer:
    return await host.call_http(
        function_app.get_narration, host.http_request("GET", "narrations/{id}", url=location)
    )


# --- Text with nothing to say ---------------------------------------------------------------------


@pytest.mark.parametrize("text", NOTHING_TO_SAY.values(), ids=NOTHING_TO_SAY.keys())
@pytest.mark.parametrize("headers", [None, ASYNC], ids=["sync", "async"])
async def test_text_with_nothing_to_say_is_a_400_before_any_session_and_stores_nothing(
    jobs_env: dict[str, str],
    emulator: RealtimeEmulator,
    azurite: AzuriteServer,
    container_name: str,
    text: str,
    headers: dict[str, str] | None,
) -> None:
    response = await post({"text": text}, headers)

    assert response.status == 400, response.json()
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("no_speakable_text", "text")
    assert "Retry-After" not in response.headers
    assert emulator.handshakes == 0
    assert blobs_in(azurite, container_name) == []
    assert blobs_in(azurite, jobs_env["jobs_container"]) == [], "no job, request or cache entry"


@pytest.fixture
def document_env(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_AUDIO_MAX_RETRIES", "0")
    monkeypatch.setenv("NARRATION_INPUT_CONTAINER", INPUT)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("breaks.txt", "* * *\n\n\u200b\u200b\n\n…".encode()),
        ("emoji.txt", "🎉🎉🎉".encode()),
        ("request.json", json.dumps({"text": "!!! ???"}).encode()),
    ],
)
async def test_a_document_with_nothing_to_say_gets_a_final_error_record_at_once(
    document_env: None,
    azurite: AzuriteServer,
    container_name: str,
    emulator: RealtimeEmulator,
    name: str,
    data: bytes,
) -> None:
    for _ in range(2):  # a redelivery answers the same, and still narrates nothing
        await host.call(function_app.narrate_document, upload(azurite, name, data))  # no raise: no retry

    base = name.rsplit(".", 1)[0]
    stored = outputs(azurite, container_name)
    assert sorted(stored) == [f"{base}.error.json"]
    record = json.loads(stored[f"{base}.error.json"])
    assert (record["status"], record["final"], record["max_attempts"]) == ("failed", True, 1)
    assert (record["error"]["code"], record["error"]["field"]) == ("no_speakable_text", "text")
    assert emulator.handshakes == 0


# --- Permanent, token-costing failures --------------------------------------------------------------


async def test_a_content_filter_refusal_is_a_422_without_retry_after_and_stores_nothing(
    app_env: dict[str, str], emulator: RealtimeEmulator, azurite: AzuriteServer, container_name: str
) -> None:
    emulator.inject(Fault(FaultKind.CONTENT_FILTER, times=None))

    response = await post({"text": TEXT})

    assert response.status == 422, response.json()
    assert response.status not in RETRIED_BY_DEFAULT
    assert response.json()["error"]["code"] == "content_filtered"
    assert "Retry-After" not in response.headers
    assert len(emulator.sessions) == 1, "a refusal is not narrated again by the app either"
    assert blobs_in(azurite, container_name) == []


async def test_a_narration_that_never_reads_verbatim_is_a_422(
    app_env: dict[str, str],
    emulator: RealtimeEmulator,
    azurite: AzuriteServer,
    container_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NARRATION_FIDELITY_POLICY", "fail")
    emulator.inject(Fault(FaultKind.PARAPHRASE, times=None))

    response = await post({"text": TEXT})

    assert response.status == 422, response.json()
    assert response.json()["error"]["code"] == "fidelity_too_low"
    assert "Retry-After" not in response.headers
    assert blobs_in(azurite, container_name) == []


async def test_a_dropped_connection_is_a_503_with_retry_after(
    app_env: dict[str, str], emulator: RealtimeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_AUDIO_MAX_RETRIES", "0")
    emulator.inject(Fault(FaultKind.CLOSE_MID_STREAM, times=None))

    response = await post({"text": TEXT})

    assert response.status == 503, response.json()
    assert response.json()["error"]["code"] == "upstream_connection_lost"
    assert int(response.headers["Retry-After"]) >= 1


async def test_a_job_refused_by_the_content_filter_fails_422_once_and_is_never_run_again(
    jobs_env: dict[str, str], emulator: RealtimeEmulator, azurite: AzuriteServer, container_name: str
) -> None:
    emulator.inject(Fault(FaultKind.CONTENT_FILTER, times=None))
    accepted = await post({"text": TEXT}, ASYNC)
    assert accepted.status == 202

    with QueueClient.from_connection_string(azurite.connection_string, jobs_env["NARRATION_QUEUE"]) as q:
        delivered = await host.deliver(function_app.narration_worker, q)
        assert delivered is not None
        assert delivered.error is None, "returns: the host deletes the message"
        assert q.peek_messages() == [], "nothing left to deliver again"

    for _ in range(2):  # polling again gives the same answer, and narrates nothing
        polled = await poll(accepted.headers["Location"])
        assert polled.status == 422, polled.json()
        assert polled.json()["error"]["code"] == "content_filtered"
        assert "Retry-After" not in polled.headers
    assert len(emulator.sessions) == 1
    assert blobs_in(azurite, container_name) == []


async def test_a_text_that_runs_over_the_output_cap_even_when_it_cannot_be_halved_is_a_422(
    app_env: dict[str, str], emulator: RealtimeEmulator, azurite: AzuriteServer, container_name: str
) -> None:
    emulator.inject(Fault(FaultKind.MAX_OUTPUT_TOKENS, times=None))

    response = await post({"text": "Supercalifragilisticexpialidocious"})

    assert response.status == 422, response.json()
    error = response.json()["error"]
    assert (error["code"], error["reason"]) == ("narration_incomplete", "max_output_tokens")
    assert "Retry-After" not in response.headers
    assert len(emulator.sessions) == 1, "one word cannot be halved: no second paid attempt"
    assert blobs_in(azurite, container_name) == []
