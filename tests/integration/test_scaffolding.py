"""The transcript is what was said, without scaffolding: when the model (the emulator's
``speak_markers`` fault) reads the marker lines around the text aloud, neither the response
nor the transcript document carries them, and the fidelity check is not fooled."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import webvtt
from numpy.typing import NDArray

import function_app
from emulator import Fault, FaultKind, RealtimeEmulator
from podcast.engine import audio
from testkit import host
from testkit.storage import http

TEXT = "Welcome to the show. Today we talk about rivers, and why they bend the way they do."
LONGER = (
    "Rivers rarely run straight for long. A small bend grows as water pushes against the outer bank, "
    "and on the inside of the curve the current slows. Over many years the loops grow wider, until a "
    "flood cuts across the neck and leaves a lake behind."
)


async def test_spoken_markers_never_reach_the_transcript(
    app_env: dict[str, str], emulator: RealtimeEmulator
) -> None:
    emulator.inject(Fault(FaultKind.SPEAK_MARKERS))
    request = host.http_request("POST", "narrations", json={"text": TEXT})
    answer = await host.call_http(function_app.create_narration, request)

    assert answer.status == 200, answer.body
    body = answer.json()
    said = emulator.sessions[0].responses[0].transcript
    assert said.lower().startswith("less than less than less than")  # the model did say them
    assert body["transcript"] == TEXT
    assert body["fidelity"] == 1.0
    assert len(emulator.sessions) == 1  # no retry was needed
    document = await host.call_http(
        function_app.get_narration_transcript,
        host.http_request("GET", "narrations/{id}/transcript.json", route_params={"id": body["id"]}),
    )
    stored = json.loads(document.body)
    assert stored["transcript"] == TEXT
    assert [s["transcript"] for s in stored["segments"]] == [TEXT]


def seconds(timestamp: str) -> float:
    hours, minutes, rest = timestamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(rest)


async def narrated(
    emulator: RealtimeEmulator, *faults: Fault
) -> tuple[dict[str, Any], NDArray[np.int16], list[Any]]:
    """The response, the stored audio's samples and the caption cues of narrating ``LONGER``
    afresh (no reuse) with ``faults`` injected."""
    for fault in faults:
        emulator.inject(fault)
    request = host.http_request(
        "POST", "narrations", json={"text": LONGER}, headers={"Cache-Control": "no-store"}
    )
    answer = await host.call_http(function_app.create_narration, request)
    assert answer.status == 200, answer.body
    body = answer.json()
    _, wav, _ = http("GET", body["audio_url"])
    _, vtt, _ = http("GET", body["captions_url"])
    samples = np.frombuffer(wav[audio.WAV_HEADER_SIZE :], "<i2")
    return body, samples, webvtt.from_string(vtt.decode("utf-8"), strict=True).captions


def first_sound(samples: NDArray[np.int16]) -> float:
    """Seconds to the first sample louder than -40 dBFS."""
    return float(np.argmax(np.abs(samples.astype(np.int32)) > 328)) / audio.SAMPLE_RATE


def last_sound(samples: NDArray[np.int16]) -> float:
    """Seconds to the end of the last sample louder than -40 dBFS."""
    loud = np.abs(samples.astype(np.int32)) > 328
    return (len(samples) - int(np.argmax(loud[::-1]))) / audio.SAMPLE_RATE


async def test_spoken_markers_are_cut_from_the_audio_and_the_captions_follow(
    app_env: dict[str, str], emulator: RealtimeEmulator
) -> None:
    plain, plain_samples, plain_cues = await narrated(emulator)
    emulator.reset()
    body, samples, cues = await narrated(emulator, Fault(FaultKind.SPEAK_MARKERS))

    response = emulator.sessions[0].responses[0]
    assert response.transcript.lower().startswith("less than less than less than")  # the model said them
    assert response.transcript.lower().endswith("greater than greater than greater than.")
    assert response.audio_seconds > plain["duration_seconds"] + 3  # about two seconds each
    assert len(emulator.sessions) == 1  # cut, not narrated again
    assert body["transcript"] == LONGER
    assert body["warnings"] == plain["warnings"] == []
    # The markers' speech is gone: the audio is as long as without them, the voice starts at
    # once and says the text for as long, and the pause after the last word is kept.
    assert body["duration_seconds"] == pytest.approx(plain["duration_seconds"], abs=0.1)
    assert first_sound(samples) < 0.1
    speech = last_sound(samples) - first_sound(samples)
    assert speech == pytest.approx(last_sound(plain_samples) - first_sound(plain_samples), abs=0.05)
    # The captions are timed in the cut audio as in the audio that never had the markers.
    assert len(cues) > 2
    assert [c.text for c in cues] == [c.text for c in plain_cues]
    assert seconds(cues[0].start) < 0.1
    for cue, plain_cue in zip(cues, plain_cues, strict=True):
        assert seconds(cue.start) == pytest.approx(seconds(plain_cue.start), abs=0.1)
        assert seconds(cue.end) == pytest.approx(seconds(plain_cue.end), abs=0.1)
    assert seconds(cues[-1].end) <= body["duration_seconds"]
