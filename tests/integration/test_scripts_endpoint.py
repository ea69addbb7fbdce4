"""``POST /api/scripts`` as Functions calls it, against the emulator and Azurite: the script,
its defaults, bad requests (400 naming the field, nothing written or stored), and a failed
script answered again from Storage so that a caller's retry is not billed twice."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

import function_app
from emulator import Fault, FaultKind, RealtimeEmulator
from emulator.writer import CLOSING_TEXT
from podcast.models import DEFAULT_SPEAKERS
from podcast.wire import ErrorBody, ScriptCacheEntry, ScriptDocument
from testkit import host
from testkit.azurite import AzuriteServer

TEXT = "Rivers bend because water flows faster on the outside. The fast water erodes the bank."
RETRIED_BY_DEFAULT = {408, 429} | set(range(500, 600))


async def call(body: dict[str, Any] | bytes, headers: dict[str, str] | None = None) -> host.HttpAnswer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = host.http_request(
        "POST", "scripts", body=raw, headers={"Content-Type": "application/json", **(headers or {})}
    )
    return await host.call_http(function_app.create_script, request)


def stored_scripts(azurite: AzuriteServer, container: str) -> list[str]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        client = service.get_container_client(container)
        if not client.exists():
            return []
        return [blob.name for blob in client.list_blobs(name_starts_with="scripts/")]


async def test_a_script_is_written_with_the_default_hosts_and_answered_again_from_storage(
    jobs_env: dict[str, str], emulator: RealtimeEmulator, azurite: AzuriteServer
) -> None:
    answer = await call({"text": TEXT, "target_minutes": 1, "title": "Bends"})

    assert answer.status == 200, answer.json()
    document = ScriptDocument.model_validate(answer.json())
    assert document.title == "Bends"
    assert [(s.name, s.voice) for s in document.speakers] == [("Maya", "marin"), ("Theo", "cedar")]
    assert document.speakers == list(DEFAULT_SPEAKERS)
    assert document.script[-1].text == CLOSING_TEXT
    assert len(emulator.sessions) == 1
    (name,) = stored_scripts(azurite, jobs_env["jobs_container"])

    again = await call({"text": TEXT, "target_minutes": 1, "title": "Other title", "mode": "Conversation"})
    assert again.status == 200
    assert len(emulator.sessions) == 1, "the identical request is not written (nor billed) again"
    assert again.json() == {**answer.json(), "title": "Other title"}
    assert stored_scripts(azurite, jobs_env["jobs_container"]) == [name]

    fresh = await call({"text": TEXT, "target_minutes": 1}, {"Cache-Control": "no-cache"})
    assert fresh.status == 200
    assert len(emulator.sessions) == 2


async def test_the_given_speakers_write_the_script(
    jobs_env: dict[str, str], emulator: RealtimeEmulator
) -> None:
    speakers = [
        {"name": "Ana", "voice": "Coral", "description": "A geologist."},
        {"name": "Ben", "voice": "ash"},
        {"name": "Caro", "voice": "sage", "description": ""},
    ]
    text = f"{TEXT} The slow water drops sand. Over many years the bend grows. It can become a loop."
    answer = await call({"text": text, "speakers": speakers, "style": "lecture", "language": "es-mx"})

    assert answer.status == 200, answer.json()
    body = answer.json()
    assert body["speakers"] == [
        {"name": "Ana", "voice": "coral", "description": "A geologist."},
        {"name": "Ben", "voice": "ash", "description": None},
        {"name": "Caro", "voice": "sage", "description": None},
    ]
    assert {turn["speaker"] for turn in body["script"]} == {"Ana", "Ben", "Caro"}
    instructions = emulator.sessions[0].client_events[0]["session"]["instructions"]
    assert "- Ana: A geologist." in instructions
    assert "Spanish (Mexico) (es-MX)" in instructions
    assert "DELIVERY (lecture)" in instructions


async def test_a_script_that_stays_invalid_is_a_502_that_a_retry_gets_again_without_new_billing(
    jobs_env: dict[str, str], emulator: RealtimeEmulator, azurite: AzuriteServer
) -> None:
    emulator.inject(Fault(FaultKind.INVALID_SCRIPT, times=None))
    request = {"text": TEXT, "target_minutes": 2}

    first = await call(request)
    assert first.status == 502
    assert "Retry-After" not in first.headers
    error = ErrorBody.model_validate(first.json()).error
    assert (error.code, error.field, (error.model_extra or {}).get("attempts")) == ("script_invalid", None, 3)
    assert "without being billed again" in error.message
    assert TEXT[:20] not in error.message
    assert len(emulator.sessions) == 3
    (name,) = stored_scripts(azurite, jobs_env["jobs_container"])
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        stored = service.get_blob_client(jobs_env["jobs_container"], name).download_blob().readall()
    entry = ScriptCacheEntry.model_validate_json(stored)
    assert entry.state == "failed"
    assert entry.usage.output_tokens == sum(s.responses[0].usage["output_tokens"] for s in emulator.sessions)  # type: ignore[index]

    # What Power Automate's default policy does with a 502: send it again, up to four times.
    assert first.status in RETRIED_BY_DEFAULT
    for _ in range(4):
        retry = await call(request)
        assert (retry.status, retry.json()) == (502, first.json())
    assert len(emulator.sessions) == 3, "no retry reached the model"

    emulator.reset()  # the fault is gone: a changed request, or no-cache, is written afresh
    assert (await call({**request, "target_minutes": 2.5})).status == 200
    assert (await call(request, {"Cache-Control": "no-cache"})).status == 200
    assert len(emulator.sessions) == 2
    assert (await call(request)).status == 200, "the fresh script replaced the stored failure"
    assert len(emulator.sessions) == 2


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({}, "text", "text is required"),
        ({"text": TEXT, "speakers": "Maya"}, "speakers", "must be a list"),
        ({"text": TEXT, "speakers": []}, "speakers", "1 to 4 speakers; got 0"),
        (
            {"text": TEXT, "speakers": [{"name": f"S{i}", "voice": "ash"} for i in range(5)]},
            "speakers",
            "got 5",
        ),
        ({"text": TEXT, "speakers": [{"voice": "ash"}]}, "speakers[0].name", "is required"),
        (
            {"text": TEXT, "speakers": [{"name": "Ana", "voice": "ash"}, {"name": " ana", "voice": "sage"}]},
            "speakers[1].name",
            "is the name of speakers[0]",
        ),
        (
            {"speakers": [{"name": "Ana", "voice": "ash"}], "script": [{"speaker": "Ana", "text": "Hi."}]},
            "script",
            "writes its own script",
        ),
        (
            {"text": TEXT, "speakers": [{"name": "Ana", "voice": "nova"}]},
            "speakers[0].voice",
            "text-to-speech",
        ),
        ({"text": TEXT, "speakers": [{"name": "Ana"}]}, "speakers[0].voice", "is required"),
        (
            {"text": TEXT, "speakers": [{"name": "Ana", "voice": "ash", "age": 3}]},
            "speakers[0].age",
            "unknown",
        ),
        ({"text": TEXT, "speakers": [{"name": "A\nB", "voice": "ash"}]}, "speakers[0].name", "control"),
        ({"text": TEXT, "speakers": [{"name": "A" * 41, "voice": "ash"}]}, "speakers[0].name", "limit is 40"),
        ({"text": TEXT, "speakers": ["Ana"]}, "speakers[0]", "must be an object"),
        ({"text": TEXT, "target_minutes": 30.5}, "target_minutes", "from 0.5 to 30"),
        ({"text": TEXT, "target_minutes": "5"}, "target_minutes", "got a string"),
        ({"text": TEXT, "mode": "read"}, "mode", "must be 'conversation'"),
        ({"text": TEXT, "mode": "episode", "target_minutes": 10}, "target_minutes", "from 0.5 to 3"),
        ({"text": TEXT, "style": "narration"}, "style", "not available in conversation mode"),
        ({"text": TEXT, "languag": "en"}, "languag", "did you mean 'language'"),
    ],
)
async def test_bad_requests_are_400_naming_the_field_and_nothing_is_written(
    jobs_env: dict[str, str],
    emulator: RealtimeEmulator,
    azurite: AzuriteServer,
    body: dict[str, Any],
    field: str,
    says: str,
) -> None:
    answer = await call(body)

    assert answer.status == 400, answer.json()
    error = answer.json()["error"]
    assert error["field"] == field
    assert says in error["message"]
    assert emulator.sessions == []
    assert stored_scripts(azurite, jobs_env["jobs_container"]) == []


async def test_the_limits_of_target_minutes_and_speakers_are_accepted(
    jobs_env: dict[str, str], emulator: RealtimeEmulator
) -> None:
    four = [
        {"name": name, "voice": voice}
        for name, voice in zip("ABCD", ("ash", "sage", "coral", "verse"), strict=True)
    ]
    answer = await call({"text": TEXT, "target_minutes": 0.5, "speakers": four})
    assert answer.status == 200, answer.json()
    assert len(answer.json()["speakers"]) == 4
    longest = await call({"text": TEXT, "target_minutes": 30})
    assert longest.status == 200, longest.json()
    assert len(emulator.sessions) == 1 + 1 + 6, "an outline, then six sections of five minutes"
