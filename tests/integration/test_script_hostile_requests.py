"""Hostile values and limits ±1 sent to the script endpoints as Functions calls them
(``POST /api/scripts`` and ``POST /api/narrations`` with a script), against the emulator and
Azurite: each refused one is a 400 (413 for a body too large) naming the field and index,
with no model call and nothing written anywhere in the account; the limits themselves are
accepted (a script at both limits goes to the job path, accepted without being voiced)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

import function_app
from emulator import RealtimeEmulator
from podcast.settings import MAX_SCRIPT_CHARACTERS, MAX_SCRIPT_TURNS, RequestLimits
from testkit import host
from testkit.azurite import AzuriteServer
from testkit.storage import account_snapshot

TEXT = "Rivers bend because water flows faster on the outside."
SPEAKERS = [{"name": "Maya", "voice": "marin"}, {"name": "Leo", "voice": "cedar"}]
SCRIPT = [{"speaker": "Maya", "text": "Hello there."}, {"speaker": "Leo", "text": "Hi, Maya."}]
LIMITS = RequestLimits()
TURN_CHARACTERS = MAX_SCRIPT_CHARACTERS // MAX_SCRIPT_TURNS  # 40: both limits reached at once


def scripted(**changes: Any) -> dict[str, Any]:
    return {"speakers": SPEAKERS, "script": SCRIPT, **changes}


def turns(count: int, characters: int = TURN_CHARACTERS) -> list[dict[str, str]]:
    """``count`` turns of ``characters`` each (words, so that each is speakable)."""
    text = ("word " * characters)[:characters].strip().ljust(characters, "x")
    return [{"speaker": ("Maya", "Leo")[n % 2], "text": text} for n in range(count)]


def named(name: str) -> dict[str, Any]:
    return {"speakers": [{"name": name, "voice": "marin"}], "script": [{"speaker": name, "text": "Hi."}]}


async def send(route: str, body: bytes, headers: dict[str, str] | None = None) -> host.HttpAnswer:
    function = function_app.create_script if route == "scripts" else function_app.create_narration
    request = host.http_request(
        "POST", route, body=body, headers={"Content-Type": "application/json", **(headers or {})}
    )
    return await host.call_http(function, request)


def raw(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body, allow_nan=True).encode()


BOTH = ("scripts", "narrations")
REFUSED: list[tuple[tuple[str, ...], Any, str | None]] = [
    # Bodies that are not one JSON object.
    (BOTH, b"[]", None),
    (BOTH, b'"Rivers bend."', None),
    (BOTH, b"null", None),
    (BOTH, b"42", None),
    (BOTH, b"true", None),
    (BOTH, b"[" * 50_000 + b"]" * 50_000, None),
    (BOTH, b'{"text": "Hi."} {"text": "Hi."}', None),
    (BOTH, b'{"text": "\\ud800 bends"}', "text"),
    # target_minutes around its limits.
    (("scripts",), {"text": TEXT, "target_minutes": 0}, "target_minutes"),
    (("scripts",), {"text": TEXT, "target_minutes": 0.49}, "target_minutes"),
    (("scripts",), {"text": TEXT, "target_minutes": 30.01}, "target_minutes"),
    (("scripts",), b'{"text": "Hi.", "target_minutes": NaN}', "target_minutes"),
    (("scripts",), b'{"text": "Hi.", "target_minutes": 1e400}', "target_minutes"),
    (("narrations",), {"text": TEXT, "mode": "conversation", "target_minutes": 30.01}, "target_minutes"),
    (("narrations",), {"text": TEXT, "mode": "conversation", "target_minutes": 0}, "target_minutes"),
    # Speaker names that do not read as they show.
    (("narrations",), named("Ma\u202eya"), "speakers[0].name"),
    (("narrations",), named("Ma\u200bya"), "speakers[0].name"),
    (("narrations",), named("\u3164"), "speakers[0].name"),
    (("narrations",), named("Ma\u3164ya"), "speakers[0].name"),
    (("narrations",), named("Ma\u034fya"), "speakers[0].name"),
    (("scripts",), {"text": TEXT, "speakers": [{"name": "\u2800", "voice": "ash"}]}, "speakers[0].name"),
    (("scripts",), {"text": TEXT, "speakers": [{"name": "A\u2066B", "voice": "ash"}]}, "speakers[0].name"),
    # Turns naming no speaker, or with nothing to say.
    (("narrations",), scripted(script=[{"speaker": "Ma\u200bya", "text": "Hi."}]), "script[0].speaker"),
    (
        ("narrations",),
        scripted(script=[SCRIPT[0], {"speaker": "Leo", "text": "\u3164\u3164"}]),
        "script[1].text",
    ),
    (
        ("narrations",),
        scripted(script=[SCRIPT[0], {"speaker": "Leo", "text": "\u200b\u2060"}]),
        "script[1].text",
    ),
    # Four speakers, not five; 1,000 turns and 40,000 characters, not one more.
    (
        ("narrations",),
        scripted(speakers=[{"name": f"Host {n}", "voice": "ash"} for n in range(5)]),
        "speakers",
    ),
    (
        ("scripts",),
        {"text": TEXT, "speakers": [{"name": f"H{n}", "voice": "ash"} for n in range(5)]},
        "speakers",
    ),
    (("narrations",), scripted(script=turns(MAX_SCRIPT_TURNS + 1)), "script"),
    (
        ("narrations",),
        scripted(script=[*turns(MAX_SCRIPT_TURNS - 1), *turns(1, TURN_CHARACTERS + 1)]),
        "script",
    ),
    (
        ("narrations",),
        scripted(script=[{"speaker": "Maya", "text": "a" * (MAX_SCRIPT_CHARACTERS + 1)}]),
        "script[0].text",
    ),
    # Chapters at turns that are not there.
    (("narrations",), scripted(chapters=[{"title": "A", "turn": len(SCRIPT)}]), "chapters[0].turn"),
    (("narrations",), scripted(chapters=[{"title": "A", "turn": 10**30}]), "chapters[0].turn"),
    (("narrations",), scripted(chapters=[{"title": "A", "turn": 1.5}]), "chapters[0].turn"),
    (("scripts",), {"text": TEXT, "chapters": [{"title": "A", "turn": 0}]}, "chapters"),
    # The audio's fields: a script has none, so they would be dropped without a word.
    (("scripts",), {"text": TEXT, "format": "mp3"}, "format"),
    (("scripts",), {"text": TEXT, "format": " MP3 "}, "format"),
    (("scripts",), {"text": TEXT, "show": "daily-digest"}, "show"),
    (("scripts",), {"text": TEXT, "sas_expiry_minutes": 59}, "sas_expiry_minutes"),
    (("scripts",), {"text": TEXT, "sas_expiry_minutes": 61}, "sas_expiry_minutes"),
]
CASES = [(route, body, field) for routes, body, field in REFUSED for route in routes]


@pytest.mark.parametrize(("route", "body", "field"), CASES, ids=[f"{n}-{c[0]}" for n, c in enumerate(CASES)])
async def test_a_hostile_script_request_is_refused_naming_the_field_with_nothing_done(
    jobs_env: dict[str, str],
    emulator: RealtimeEmulator,
    azurite: AzuriteServer,
    route: str,
    body: Any,
    field: str | None,
) -> None:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        before = account_snapshot(service)

        answer = await send(route, raw(body))

        assert answer.status == 400, answer.json()
        error = answer.json()["error"]
        assert error["field"] == field, error
        assert emulator.sessions == [], "nothing narrated, no script written"
        assert account_snapshot(service) == before, "nothing stored anywhere"


async def test_a_body_larger_than_any_valid_request_is_a_413_before_it_is_read_as_json(
    jobs_env: dict[str, str], emulator: RealtimeEmulator
) -> None:
    huge = b'{"text": "' + b"a" * LIMITS.max_body_bytes + b'"}'
    for route in BOTH:
        answer = await send(route, huge)
        assert answer.status == 413, answer.json()
        assert answer.json()["error"]["code"] == "request_too_large"
    assert emulator.sessions == []


async def test_a_script_at_both_limits_is_accepted_as_a_job(
    jobs_env: dict[str, str], emulator: RealtimeEmulator
) -> None:
    body = scripted(
        script=turns(MAX_SCRIPT_TURNS),
        speakers=[{"name": name, "voice": "ash"} for name in ("Maya", "Leo", "Ana", "Ben")],
        chapters=[{"title": "End", "turn": MAX_SCRIPT_TURNS - 1}],
    )
    assert sum(len(turn["text"]) for turn in body["script"]) == MAX_SCRIPT_CHARACTERS

    answer = await send("narrations", raw(body))

    assert answer.status == 202, answer.json()
    assert emulator.sessions == [], "queued, not voiced here"
