"""The transcript is what was said, without scaffolding: when the model (the emulator's
``speak_markers`` fault) reads the marker lines around the text aloud, neither the response
nor the transcript document carries them, and the fidelity check is not fooled."""

from __future__ import annotations

import json

import function_app
from emulator import Fault, FaultKind, RealtimeEmulator
from testkit import host

TEXT = "Welcome to the show. Today we talk about rivers, and why they bend the way they do."


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
