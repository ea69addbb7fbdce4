"""Captions beside the audio, through the HTTP function: a working captions_url, the
/captions.vtt and /captions.srt routes, cues an independent WebVTT parser reads, that carry
the transcript word for word and start where the voice does."""

from __future__ import annotations

import numpy as np
import pytest
import webvtt

import function_app
from emulator import RealtimeEmulator
from podcast.engine import audio
from testkit import host
from testkit.storage import http

TEXT = (
    "Rivers rarely run straight for long. A small bend grows as water pushes against the outer bank, "
    "and on the inside of the curve the current slows.\n\nOver many years the loops grow wider, until a "
    "flood cuts across the neck and leaves a lake behind."
)


def seconds(timestamp: str) -> float:
    hours, minutes, rest = timestamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(rest)


async def test_captions_are_stored_linked_and_timed_to_the_voice(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, emulator: RealtimeEmulator
) -> None:
    monkeypatch.setenv("NARRATION_SEGMENT_WORDS", "20")
    request = host.http_request("POST", "narrations", json={"text": TEXT, "title": "Rivers"})
    answer = await host.call_http(function_app.create_narration, request)
    assert answer.status == 200, answer.body
    body = answer.json()

    code, vtt, headers = http("GET", body["captions_url"])
    assert code == 200
    assert headers["content-type"].startswith("text/vtt")
    route = await host.call_http(
        function_app.get_narration_captions,
        host.http_request("GET", "narrations/{id}/captions.vtt", route_params={"id": body["id"]}),
    )
    assert route.body == vtt
    assert 'filename="Rivers.vtt"' in route.headers["Content-Disposition"]
    srt = await host.call_http(
        function_app.get_narration_srt,
        host.http_request("GET", "narrations/{id}/captions.srt", route_params={"id": body["id"]}),
    )
    assert srt.status == 200
    assert srt.body.decode().startswith("1\n00:00:")

    cues = webvtt.from_string(vtt.decode("utf-8"), strict=True).captions
    assert " ".join(c.text.replace("\n", " ") for c in cues).split() == body["transcript"].split()
    _, wav, _ = http("GET", body["audio_url"])
    pcm = np.frombuffer(wav[audio.WAV_HEADER_SIZE :], "<i2").astype(float)
    previous_end = 0.0
    for cue in cues:
        start, end = seconds(cue.start), seconds(cue.end)
        assert previous_end <= start < end <= body["duration_seconds"] + 0.001
        assert end - start <= 7.0
        assert all(len(line) <= 42 for line in cue.text.splitlines())
        assert len(cue.text.splitlines()) <= 2
        onset = pcm[int(start * 24_000) : int((start + 0.1) * 24_000)]
        assert np.sqrt(np.mean(onset**2)) > 300, f"cue at {cue.start} starts in silence"
        previous_end = end

    again = await host.call_http(
        function_app.get_narration,
        host.http_request("GET", "narrations/{id}", route_params={"id": body["id"]}),
    )
    assert http("GET", again.json()["captions_url"])[1] == vtt  # a fresh link on every call
