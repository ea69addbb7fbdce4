"""Issue 14's two halves joined, through the HTTP functions against the emulator and Azurite:
``mode: "conversation"`` written by the script writer and voiced by the voice stage (both
default hosts, a labelled transcript, ``<v Name>`` captions, the outline's chapters in the MP3
and in a show's feed), and a script from ``POST /api/scripts`` sent back to be voiced."""

from __future__ import annotations

import io
import json
from typing import Any

import podcastparser
import pytest
import webvtt
from azure.storage.blob import BlobServiceClient

import function_app
from emulator import Fault, FaultKind, RealtimeEmulator
from podcast.models import DEFAULT_SPEAKERS
from testkit import host
from testkit.azurite import AzuriteServer
from testkit.decoding import mp3_chapters
from testkit.storage import http

VOICE_OF = {speaker.name: speaker.voice for speaker in DEFAULT_SPEAKERS}
SOURCE = "\n\n".join(
    f"Topic {n} starts with a plain fact about rivers. A second sentence on topic {n} adds a detail. "
    f"The third sentence of topic {n} gives an example. A fourth one closes topic {n}."
    for n in range(1, 9)
)
LONG = 6  # minutes: over one reply's 5, so an outline and sections, hence chapters


async def post(route: str, function: Any, body: dict[str, Any]) -> host.HttpAnswer:
    request = host.http_request("POST", route, json=body)
    return await host.call_http(function, request)


def text_sessions(emulator: RealtimeEmulator) -> int:
    return sum(1 for s in emulator.sessions for r in s.responses if "audio" not in r.output_modalities)


def stored_json(azurite: AzuriteServer, container: str, name: str) -> dict[str, Any]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        data = service.get_blob_client(container, name).download_blob().readall()
    loaded: dict[str, Any] = json.loads(data)
    return loaded


def spoken(emulator: RealtimeEmulator) -> set[tuple[str, str]]:
    """(transcript, voice) of every audio response the emulator gave."""
    return {
        (r.transcript, r.voice)
        for s in emulator.sessions
        for r in s.responses
        if "audio" in r.output_modalities
    }


async def test_a_conversation_is_written_then_voiced_by_both_hosts_into_a_show(
    jobs_env: dict[str, str],
    emulator: RealtimeEmulator,
    azurite: AzuriteServer,
    container_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NARRATION_SYNC_MAX_AUDIO_SECONDS", str(LONG * 60 + 1))  # answered at once
    show = host.http_request("PUT", "shows/{show}", json={"title": "Rivers"}, route_params={"show": "rivers"})
    created = await host.call_http(function_app.put_show, show)
    assert created.status == 201, created.body
    body = {"text": SOURCE, "mode": "conversation", "target_minutes": LONG, "format": "mp3", "title": "Bends"}

    answer = await post("narrations", function_app.create_narration, {**body, "show": "rivers"})

    assert answer.status == 200, answer.body
    result = answer.json()
    assert result["mode"] == "conversation"
    lines = result["transcript"].split("\n\n")
    assert {line.split(": ", 1)[0] for line in lines} == {"Maya", "Theo"}
    document = stored_json(azurite, container_name, result["transcript_blob_name"])
    turns = document["turns"]
    assert [f"{t['speaker']}: {t['text']}" for t in turns] == lines
    assert all(t["voice"] == VOICE_OF[t["speaker"]] for t in turns)
    voiced = spoken(emulator)
    assert all((t["text"], t["voice"]) in voiced for t in turns), "each turn in its host's voice"
    billed = sum((r.usage or {}).get("output_tokens", 0) for s in emulator.sessions for r in s.responses)
    assert result["usage"]["output_tokens"] == billed, "the writing's tokens are in the usage"

    vtt = http("GET", result["captions_url"])[1].decode()
    assert "<v Maya>" in vtt
    assert "<v Theo>" in vtt
    assert {cue.voice for cue in webvtt.from_string(vtt, strict=True).captions} == {"Maya", "Theo"}

    # The same request (but the audio's format) on POST /api/scripts is answered from the
    # script cache: not written again.
    writing = text_sessions(emulator)
    script = await post("scripts", function_app.create_script, {**body, "format": None})
    assert script.status == 200, script.body
    assert text_sessions(emulator) == writing
    written = script.json()
    assert [f"{t['speaker']}: {t['text']}" for t in written["script"]] == lines
    titles = [c["title"] for c in written["chapters"]]
    assert len(titles) >= 2
    marks = mp3_chapters(http("GET", result["audio_url"])[1])
    assert [m["tags"]["title"] for m in marks] == titles
    for mark, chapter in zip(marks, written["chapters"], strict=True):
        assert float(mark["start_time"]) == pytest.approx(turns[chapter["turn"]]["start"], abs=0.002)

    feed_url = created.json()["feed_url"]
    feed = await host.call_http(
        function_app.get_show_feed, host.http_request("GET", "shows/{show}/feed.xml", url=feed_url)
    )
    assert feed.status == 200
    (episode,) = podcastparser.parse(feed_url, io.BytesIO(feed.body))["episodes"]
    assert episode["guid"] == result["id"]
    assert [c["title"] for c in episode["chapters"]] == titles


async def test_a_written_script_sent_back_is_voiced_as_written(
    jobs_env: dict[str, str], emulator: RealtimeEmulator
) -> None:
    written = await post("scripts", function_app.create_script, {"text": SOURCE, "target_minutes": 1})
    assert written.status == 200, written.body
    document = written.json()
    edited = [{**turn, "text": turn["text"].replace("Topic 1", "Topic one")} for turn in document["script"]]
    sent = {"speakers": document["speakers"], "script": edited, "chapters": document["chapters"]}

    refused = await post("narrations", function_app.create_narration, {**sent, "mode": "conversation"})
    assert refused.status == 400
    assert refused.json()["error"]["field"] == "script"

    writing = text_sessions(emulator)
    answer = await post("narrations", function_app.create_narration, sent)
    assert answer.status == 200, answer.body
    result = answer.json()
    assert result["mode"] == "script"
    assert text_sessions(emulator) == writing, "a script sent back is not written again"
    assert result["transcript"] == "\n\n".join(f"{t['speaker']}: {t['text']}" for t in edited)
    voiced = spoken(emulator)
    assert all((t["text"], VOICE_OF[t["speaker"]]) in voiced for t in edited)


async def test_no_cache_has_a_conversations_script_written_afresh_after_a_remembered_502(
    jobs_env: dict[str, str], emulator: RealtimeEmulator, azurite: AzuriteServer
) -> None:
    body = {"text": SOURCE, "mode": "conversation", "target_minutes": 0.5}
    emulator.inject(Fault(FaultKind.INVALID_SCRIPT, times=None))
    failed = await post("narrations", function_app.create_narration, body)
    assert failed.status == 502, failed.body
    assert failed.json()["error"]["code"] == "script_invalid"
    emulator.reset()  # the fault is gone (and the log too): the model would write a valid script now
    writing = text_sessions(emulator)

    again = await post("narrations", function_app.create_narration, body)
    assert again.status == 502, "the remembered failure answers a default retry"
    assert text_sessions(emulator) == writing, "and it is not billed again"

    fresh = await host.call_http(
        function_app.create_narration,
        host.http_request("POST", "narrations", json=body, headers={"Cache-Control": "no-cache"}),
    )
    assert fresh.status == 200, fresh.body
    assert text_sessions(emulator) > writing, "no-cache has the script written afresh"
    assert fresh.json()["mode"] == "conversation"


async def test_a_conversation_far_shorter_than_asked_says_so(
    jobs_env: dict[str, str], emulator: RealtimeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NARRATION_SYNC_MAX_AUDIO_SECONDS", str(10 * 60 + 1))  # answered at once
    short = "Rivers bend. Fast water wears the outer bank. Slow water drops sand on the inner bank."
    asked = await post(
        "narrations",
        function_app.create_narration,
        {"text": short, "mode": "conversation", "target_minutes": 10},
    )
    assert asked.status == 200, asked.body
    body = asked.json()
    assert body["duration_seconds"] < 5 * 60
    (warning,) = [w for w in body["warnings"] if "asked for" in w]
    assert f"runs {body['duration_seconds'] / 60:.1f} minutes of the 10 asked for" in warning

    enough = await post(
        "narrations",
        function_app.create_narration,
        {"text": short, "mode": "conversation", "target_minutes": 0.5},
    )
    assert enough.status == 200, enough.body
    assert not [w for w in enough.json()["warnings"] if "asked for" in w], "long enough: no warning"
