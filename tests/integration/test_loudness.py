"""Podcast loudness through the HTTP function: the emulator speaks each voice and each
session at its own level (several dB apart), and every narration leaves at -16 LUFS ±1 with
its true peak at most -1 dBTP, its segments and voices within 1.5 LU of each other.
Measured on the stored file: pyloudnorm for loudness, ffmpeg (decoding the MP3, and its
ebur128 true-peak meter) for the rest."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

import function_app
from emulator import RealtimeEmulator
from emulator.speech import level_offset_db
from testkit import host
from testkit.decoding import decode, ffmpeg_true_peak_dbtp, integrated_lufs
from testkit.storage import http

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (scripts/setup.sh)")

PARAGRAPHS = [
    "Rivers rarely run straight for long. A small bend grows as water pushes against the outer bank.",
    "On the inside of the curve the current slows, and sand settles into a quiet beach of its own.",
    "Over many years the loops grow wider, until a flood cuts across the neck and leaves a lake behind.",
    "These cutoff lakes are called oxbows, and many of them are home to birds, fish and frogs.",
]
TEXT = "\n\n".join(PARAGRAPHS)
LOUD, QUIET = "cedar", "coral"  # the emulator speaks them about 4.3 dB apart, before session drift


async def narrate(body: dict[str, Any]) -> tuple[dict[str, Any], bytes, dict[str, Any]]:
    answer = await host.call_http(
        function_app.create_narration, host.http_request("POST", "narrations", json=body)
    )
    assert answer.status == 200, answer.body
    result = answer.json()
    _, data, _ = http("GET", result["audio_url"])
    transcript = await host.call_http(
        function_app.get_narration_transcript,
        host.http_request("GET", "narrations/{id}/transcript.json", route_params={"id": result["id"]}),
    )
    return result, data, json.loads(transcript.body)


@pytest.mark.parametrize("audio_format", ["wav", "mp3"])
async def test_voices_and_segments_leave_at_podcast_loudness(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, emulator: RealtimeEmulator, audio_format: str
) -> None:
    monkeypatch.setenv("NARRATION_SEGMENT_WORDS", "20")
    levels: dict[str, float] = {}
    for voice in (LOUD, QUIET):
        result, data, document = await narrate({"text": TEXT, "voice": voice, "format": audio_format})
        samples = decode(data, f".{audio_format}")
        lufs = integrated_lufs(samples)
        levels[voice] = lufs

        assert abs(lufs - (-16.0)) <= 1.0, (voice, lufs)
        assert ffmpeg_true_peak_dbtp(data, f".{audio_format}") <= -1.0
        # Reported from the PCM before encoding; the MP3 encoder's loss is made up before encoding.
        assert result["loudness_lufs"] == pytest.approx(lufs, abs=0.5)
        segments = document["segments"]
        assert len(segments) >= 4
        per_segment = [
            integrated_lufs(samples[round(s["start_seconds"] * 24_000) : round(s["end_seconds"] * 24_000)])
            for s in segments
        ]
        assert max(per_segment) - min(per_segment) <= 1.5, per_segment
    assert abs(levels[LOUD] - levels[QUIET]) <= 1.5

    # The emulator really did speak them at different levels: this test can fail.
    offsets = [level_offset_db(s.responses[0].voice, s.id, 8.0) for s in emulator.sessions if s.responses]
    assert max(offsets) - min(offsets) >= 3.0
    assert level_offset_db(LOUD, "", 8.0) - level_offset_db(QUIET, "", 8.0) >= 4.0


async def test_speakers_of_a_script_are_matched_in_loudness(
    app_env: dict[str, str], emulator: RealtimeEmulator
) -> None:
    """Two speakers whose voices the emulator speaks about 4 dB apart (plus each session's
    drift): every turn leaves within 1.5 LU of every other, the episode at -16 LUFS ±1."""
    lines = [*PARAGRAPHS, *PARAGRAPHS[::-1]]
    speakers = [{"name": "Ana", "voice": LOUD}, {"name": "Ben", "voice": QUIET}]
    script = [{"speaker": speakers[n % 2]["name"], "text": line} for n, line in enumerate(lines)]
    _, data, document = await narrate({"speakers": speakers, "script": script})
    samples = decode(data, ".wav")

    assert abs(integrated_lufs(samples) - (-16.0)) <= 1.0
    assert ffmpeg_true_peak_dbtp(data, ".wav") <= -1.0
    per_turn = {
        (t["index"], t["voice"]): integrated_lufs(
            samples[round(t["start"] * 24_000) : round(t["end"] * 24_000)]
        )
        for t in document["turns"]
    }
    assert len(per_turn) == len(script)
    assert max(per_turn.values()) - min(per_turn.values()) <= 1.5, per_turn
    by_voice = {v: [lufs for (_, voice), lufs in per_turn.items() if voice == v] for v in (LOUD, QUIET)}
    assert abs(sum(by_voice[LOUD]) / 4 - sum(by_voice[QUIET]) / 4) <= 1.0, by_voice

    # Spoken apart for real: the sessions that voiced these turns were several dB apart.
    offsets = [
        level_offset_db(r.voice, s.id, 8.0)
        for s in emulator.sessions
        for r in s.responses
        if r.status == "completed" and r.transcript in lines
    ]
    assert len(offsets) >= len(script)
    assert max(offsets) - min(offsets) >= 3.0, offsets
