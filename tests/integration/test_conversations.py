"""Conversation scripts through the HTTP function, against the Realtime emulator and Azurite:
every turn voiced verbatim by its speaker's voice (told apart by the emulator's per-voice
pitch and its session log), in script order, timed in the transcript document as it is in the
stored audio, with a labelled transcript, WebVTT voice tags and SRT labels; the verbatim guard
per turn; the job path; and bad scripts refused before anything is narrated or stored."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import numpy as np
import pytest
import webvtt
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

import function_app
from emulator import Fault, FaultKind, RealtimeEmulator
from podcast.engine import audio
from testkit import host
from testkit.azurite import AzuriteServer
from testkit.decoding import mp3_chapters
from testkit.storage import blobs_in, http
from testkit.voices import identify_voice

SPEAKERS = [
    {"name": "Maya", "voice": "marin", "description": "the host"},
    {"name": "Leo", "voice": "cedar"},
    {"name": "Ines", "voice": "echo"},
]
VOICE_OF = {speaker["name"]: speaker["voice"] for speaker in SPEAKERS}
SCRIPT = [
    {
        "speaker": "Maya",
        "text": "Welcome back to the show. Today we follow a river from the hills to the sea.",
    },
    {
        "speaker": "Leo",
        "text": "Rivers rarely run straight for long, and the reason is simple once you see it.",
    },
    {
        "speaker": "Ines",
        "text": "Water pushes against the outer bank of a bend, so the bend keeps growing wider.",
    },
    {"speaker": "Maya", "text": "And on the inside of the curve the current slows and drops its sand."},
    {
        "speaker": "Leo",
        "text": "Given enough years, a flood cuts across the neck and leaves a quiet lake behind.",
    },
]
CHAPTERS = [{"title": "Opening", "turn": 0}, {"title": "Why rivers bend", "turn": 1}]


def seconds(timestamp: str) -> float:
    hours, minutes, rest = timestamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(rest)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


async def post(body: dict[str, Any] | bytes, headers: dict[str, str] | None = None) -> host.HttpAnswer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = host.http_request(
        "POST", "narrations", body=raw, headers={"Content-Type": "application/json", **(headers or {})}
    )
    return await host.call_http(function_app.create_narration, request)


def stored_json(azurite: AzuriteServer, container: str, name: str) -> dict[str, Any]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        loaded: dict[str, Any] = json.loads(
            service.get_blob_client(container, name).download_blob().readall()
        )
    return loaded


def check_voiced(
    body: dict[str, Any], document: dict[str, Any], wav: bytes, emulator: RealtimeEmulator
) -> None:
    """The stored audio, transcript document and emulator log agree with ``SCRIPT``."""
    assert body["mode"] == "script"
    assert body["transcript"] == "\n\n".join(f"{t['speaker']}: {t['text']}" for t in SCRIPT)
    turns = document["turns"]
    assert [(t["index"], t["speaker"], t["voice"]) for t in turns] == [
        (n, t["speaker"], VOICE_OF[t["speaker"]]) for n, t in enumerate(SCRIPT)
    ]
    assert [t["text"] for t in turns] == [t["text"] for t in SCRIPT]
    assert document["speakers"] == [{"description": None, **s} for s in SPEAKERS]

    # Who voiced what, from the emulator's own log: one response per turn, the turn's voice.
    voiced = {
        (r.transcript, r.voice) for s in emulator.sessions for r in s.responses if r.status == "completed"
    }
    for turn in SCRIPT:
        assert (turn["text"], VOICE_OF[turn["speaker"]]) in voiced

    # The audio: each turn's stretch is speech in its voice, the pause between turns is silence.
    pcm = np.frombuffer(wav[audio.WAV_HEADER_SIZE :], "<i2")
    assert audio.wav_info(wav).duration_seconds == pytest.approx(document["duration_seconds"], abs=0.001)
    previous_end = 0.0
    for turn in turns:
        start, end = round(turn["start"] * 24_000), round(turn["end"] * 24_000)
        assert turn["start"] >= previous_end
        stretch = pcm[start:end]
        assert identify_voice(stretch.tobytes(), list(VOICE_OF.values())) == turn["voice"]
        assert np.abs(stretch[:2400].astype(float)).max() > 1000, "the turn starts with its speech"
        gap = pcm[round(previous_end * 24_000) + 240 : max(start - 240, round(previous_end * 24_000) + 240)]
        if previous_end:
            assert gap.size >= 0.3 * 24_000
            assert np.abs(gap.astype(float)).max() < 50, "the pause between turns is silent"
        previous_end = turn["end"]


async def test_a_three_speaker_script_is_voiced_turn_by_turn(
    app_env: dict[str, str], azurite: AzuriteServer, container_name: str, emulator: RealtimeEmulator
) -> None:
    answer = await post({"speakers": SPEAKERS, "script": SCRIPT, "chapters": CHAPTERS, "title": "Rivers"})
    assert answer.status == 200, answer.body
    body = answer.json()
    document = stored_json(azurite, container_name, body["transcript_blob_name"])
    _, wav, _ = http("GET", body["audio_url"])
    check_voiced(body, document, wav, emulator)
    for session in emulator.sessions:  # a session keeps its voice and never grows a conversation
        assert len({r.voice for r in session.responses}) == 1
        assert all(r.conversation == "none" for r in session.responses)

    code, vtt, _ = http("GET", body["captions_url"])
    assert code == 200
    cues = webvtt.from_string(vtt.decode(), strict=True).captions
    assert cues
    assert all(cue.voice for cue in cues)
    spoken: dict[str, list[str]] = {}
    for cue in cues:
        turn = next(t for t in document["turns"] if t["start"] - 0.05 <= seconds(cue.start) < t["end"] + 0.05)
        assert cue.voice == turn["speaker"]
        assert seconds(cue.end) > seconds(cue.start), "no cue is empty"
        assert seconds(cue.end) <= turn["end"] + 0.05, "a cue never runs into the next turn"
        spoken.setdefault(turn["speaker"], []).extend(words(cue.text))
    for name in VOICE_OF:
        assert spoken[name] == [w for t in SCRIPT if t["speaker"] == name for w in words(t["text"])]
    srt = stored_json_text(azurite, container_name, body["srt_blob_name"])
    assert re.search(r"^Maya: Welcome back", srt, re.MULTILINE)
    assert re.search(r"^Leo: Rivers rarely", srt, re.MULTILINE)


async def test_a_scripts_result_names_its_first_speakers_voice_not_the_default(
    app_env: dict[str, str], azurite: AzuriteServer, container_name: str
) -> None:
    speakers = [*SPEAKERS[1:], SPEAKERS[0]]  # Leo (cedar) first; nobody speaks in the default voice
    answer = await post({"speakers": speakers, "script": SCRIPT[:2]})
    assert answer.status == 200, answer.body
    body = answer.json()

    assert body["voice"] == "cedar"
    assert stored_json(azurite, container_name, body["transcript_blob_name"])["voice"] == "cedar"


def stored_json_text(azurite: AzuriteServer, container: str, name: str) -> str:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        return service.get_blob_client(container, name).download_blob().readall().decode()


async def test_one_session_voices_a_speakers_turns_out_of_band(
    app_env: dict[str, str],
    azurite: AzuriteServer,
    container_name: str,
    emulator: RealtimeEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NARRATION_CONCURRENCY", "1")
    answer = await post({"speakers": SPEAKERS, "script": SCRIPT})
    assert answer.status == 200, answer.body
    body = answer.json()
    document = stored_json(azurite, container_name, body["transcript_blob_name"])
    _, wav, _ = http("GET", body["audio_url"])
    check_voiced(body, document, wav, emulator)
    by_voice = {s.responses[0].voice: s for s in emulator.sessions}
    assert len(emulator.sessions) == len(by_voice) == 3, "one session per speaker"
    assert [r.transcript for r in by_voice["marin"].responses] == [SCRIPT[0]["text"], SCRIPT[3]["text"]]
    assert [r.transcript for r in by_voice["cedar"].responses] == [SCRIPT[1]["text"], SCRIPT[4]["text"]]
    updates = [e for e in by_voice["marin"].client_events if e["type"] == "session.update"]
    assert len(updates) == 1, "the session is configured once"
    assert not [e for e in by_voice["marin"].client_events if e["type"] == "conversation.item.create"]
    first, second = (r.usage or {} for r in by_voice["marin"].responses)
    # Out of band: the second turn's input is its own text, not the first turn's audio again.
    assert second["input_tokens"] < first["input_tokens"] + first["output_tokens"]
    assert second["input_token_details"]["audio_tokens"] == 0


async def test_a_script_written_elsewhere_is_voiced_with_its_writing_usage_added(
    app_env: dict[str, str], azurite: AzuriteServer, container_name: str, emulator: RealtimeEmulator
) -> None:
    """The entry point conversation mode calls once it has written a script."""
    from podcast.models import parse_request
    from podcast.wire import ScriptDocument, Usage

    app = function_app.graph.get()
    request = parse_request({"text": "A source text the script was written from."}, app.settings.limits)
    script = ScriptDocument.model_validate({"speakers": SPEAKERS, "script": SCRIPT})
    writing = Usage(input_tokens=1000, output_tokens=200)
    stored = await app.narrations.voice_script(request, script, usage=writing)
    document = stored_json(azurite, container_name, stored.transcript_blob_name)
    assert [(t["speaker"], t["voice"]) for t in document["turns"]] == [
        (t["speaker"], VOICE_OF[t["speaker"]]) for t in SCRIPT
    ]
    assert stored.transcript.startswith("Maya: Welcome back")
    voiced = sum((r.usage or {}).get("output_tokens", 0) for s in emulator.sessions for r in s.responses)
    assert document["usage"]["output_tokens"] == voiced + 200
    assert document["usage"]["input_tokens"] >= 1000


async def test_mp3_script_carries_the_scripts_chapters(
    app_env: dict[str, str], azurite: AzuriteServer, container_name: str, emulator: RealtimeEmulator
) -> None:
    answer = await post({"speakers": SPEAKERS, "script": SCRIPT, "chapters": CHAPTERS, "format": "mp3"})
    assert answer.status == 200, answer.body
    body = answer.json()
    document = stored_json(azurite, container_name, body["transcript_blob_name"])
    _, mp3, _ = http("GET", body["audio_url"])
    marks = mp3_chapters(mp3)
    assert [c["tags"]["title"] for c in marks] == ["Opening", "Why rivers bend"]
    assert float(marks[0]["start_time"]) == 0.0
    assert float(marks[1]["start_time"]) == pytest.approx(document["turns"][1]["start"], abs=0.002)
    assert float(marks[-1]["end_time"]) == pytest.approx(body["duration_seconds"], abs=0.002)


async def test_identical_scripts_at_once_are_each_voiced_right(
    app_env: dict[str, str], azurite: AzuriteServer, container_name: str, emulator: RealtimeEmulator
) -> None:
    body = {"speakers": SPEAKERS, "script": SCRIPT}
    first, second = await asyncio.gather(post(body, {"Cache-Control": "no-cache"}), post(body))
    assert (first.status, second.status) == (200, 200), (first.body, second.body)
    for answer in (first, second):
        result = answer.json()
        document = stored_json(azurite, container_name, result["transcript_blob_name"])
        _, wav, _ = http("GET", result["audio_url"])
        check_voiced(result, document, wav, emulator)


async def test_a_turn_that_fails_the_verbatim_guard_is_read_again(
    app_env: dict[str, str], azurite: AzuriteServer, container_name: str, emulator: RealtimeEmulator
) -> None:
    emulator.inject(Fault(FaultKind.PARAPHRASE, match="outer bank"))
    answer = await post({"speakers": SPEAKERS, "script": SCRIPT})
    assert answer.status == 200, answer.body
    body = answer.json()
    document = stored_json(azurite, container_name, body["transcript_blob_name"])
    _, wav, _ = http("GET", body["audio_url"])
    check_voiced(body, document, wav, emulator)
    echo = [r for s in emulator.sessions for r in s.responses if r.voice == "echo"]
    assert [r.fault is not None for r in echo] == [True, False], "paraphrased once, then read again"
    assert [s["attempts"] for s in document["segments"]] == [1, 1, 2, 1, 1]


async def test_a_long_script_runs_as_a_job(
    jobs_env: dict[str, str],
    azurite: AzuriteServer,
    emulator: RealtimeEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer = await post({"speakers": SPEAKERS, "script": SCRIPT}, {"Prefer": "respond-async"})
    assert answer.status == 202, answer.body
    assert not emulator.sessions, "nothing is narrated before the worker runs"
    with QueueClient.from_connection_string(azurite.connection_string, jobs_env["NARRATION_QUEUE"]) as client:
        deliveries = await host.drain(function_app.narration_worker, client)
    assert [d.error for d in deliveries] == [None]
    status = await host.call_http(
        function_app.get_narration,
        host.http_request("GET", "narrations/{id}", url=answer.headers["Location"]),
    )
    assert status.status == 200, status.body
    body = status.json()
    document = stored_json(azurite, jobs_env["NARRATION_OUTPUT_CONTAINER"], body["transcript_blob_name"])
    _, wav, _ = http("GET", body["audio_url"])
    check_voiced(body, document, wav, emulator)


BAD_SCRIPTS: list[tuple[dict[str, Any], str]] = [
    (
        {"speakers": SPEAKERS, "script": [*SCRIPT[:3], {"speaker": "Nobody", "text": "Hi."}]},
        "script[3].speaker",
    ),
    ({"speakers": [*SPEAKERS, {"name": "maya", "voice": "ash"}], "script": SCRIPT}, "speakers[3].name"),
    (
        {"speakers": [SPEAKERS[0], {"name": "Leo", "voice": "onyx"}], "script": SCRIPT[:1]},
        "speakers[1].voice",
    ),
    (
        {"speakers": [*SPEAKERS, *({"name": f"S{n}", "voice": "ash"} for n in range(2))], "script": SCRIPT},
        "speakers",
    ),
    ({"speakers": SPEAKERS, "script": [SCRIPT[0], {"speaker": "Leo", "text": " \n "}]}, "script[1].text"),
    ({"speakers": SPEAKERS, "script": SCRIPT, "text": "Read this instead."}, "script"),
    ({"speakers": SPEAKERS}, "text"),
]


@pytest.mark.parametrize(("body", "field"), BAD_SCRIPTS, ids=[field for _, field in BAD_SCRIPTS])
async def test_a_bad_script_is_refused_with_nothing_narrated_or_stored(
    app_env: dict[str, str],
    azurite: AzuriteServer,
    container_name: str,
    emulator: RealtimeEmulator,
    body: dict[str, Any],
    field: str,
) -> None:
    answer = await post(body)
    assert answer.status == 400, answer.body
    assert answer.json()["error"]["field"] == field
    assert field in answer.json()["error"]["message"]
    assert not emulator.sessions
    assert not emulator.handshakes
    assert blobs_in(azurite, container_name) == []
