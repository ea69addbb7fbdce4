"""One measured narration in a fresh process, for :mod:`benchmarks.longform`.

``python -m benchmarks.worker --minutes 30`` narrates about that many minutes of
:func:`benchmarks.texts.prose_for_minutes` through the production path
(the app's object graph, :class:`podcast.app.App`: ``NarrationService`` with ``Narrator``
and ``BlobStore``, segments staged as blocks), configured by the app settings in the
environment, and prints one JSON line: timings, sizes, tokens and the process's peak RSS.

A short warm-up narration runs first (same service, untimed), so the timed run does not
pay for lazy imports or the container check. Peak RSS is the whole process's
(``getrusage(RUSAGE_SELF).ru_maxrss``): imports and warm-up included, which is why the
benchmark compares lengths by their difference. ``narration_cpu_seconds`` is the CPU of the
timed narration alone.

``--format mp3`` narrates to MP3 (encoded while the narration streams) instead of WAV.

``--narrations N`` narrates N different texts of ``--minutes`` at once in the one process
(one app, as a Function instance carries concurrent requests) and prints each one's wall
time and segments instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.texts import prose_for_minutes
from podcast.app import App
from podcast.models import parse_request
from podcast.services.narrations import StoredNarration

WARM_UP_TEXT = "Warming up the connection before the measured narration."


def max_rss_kib() -> int:
    """The process's peak resident set size so far, in KiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS reports bytes


def current_rss_kib() -> int | None:
    """The process's resident set size now, in KiB (Linux; ``None`` elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


async def _narrate(text: str, audio_format: str = "wav") -> tuple[StoredNarration, float, float, int | None]:
    """The timed narration: its result, wall and CPU seconds, and the RSS before it."""
    app = App.from_env()
    try:
        limits = app.settings.limits
        await app.narrations.narrate(parse_request(json.dumps({"text": WARM_UP_TEXT}).encode(), limits))
        ready_rss = current_rss_kib()
        started, started_cpu = time.perf_counter(), time.process_time()
        body = {"text": text, "title": "Benchmark", "format": audio_format}
        result = await app.narrations.narrate(parse_request(json.dumps(body).encode(), limits))
        return result, time.perf_counter() - started, time.process_time() - started_cpu, ready_rss
    finally:
        await app.aclose()


def run(minutes: float, seed: int, audio_format: str = "wav") -> dict[str, Any]:
    """Narrate ``minutes`` of prose as ``audio_format``; return the measurements (see the
    module docstring)."""
    text = prose_for_minutes(minutes, seed=seed)
    started_cpu = time.process_time()
    result, wall, narration_cpu, ready_rss = asyncio.run(_narrate(text, audio_format))
    speech = sum(s.end_seconds - s.start_seconds for s in result.segments)
    return {
        "minutes_requested": minutes,
        "format": audio_format,
        "words": len(text.split()),
        "characters": len(text),
        "segments": len(result.segments),
        "segment_speech_seconds": [round(s.end_seconds - s.start_seconds, 3) for s in result.segments],
        "speech_seconds": speech,
        "duration_seconds": result.duration_seconds,
        "wall_seconds": wall,
        "cpu_seconds": time.process_time() - started_cpu,
        "narration_cpu_seconds": narration_cpu,
        "input_tokens": result.usage.input_tokens,
        "input_text_tokens": result.usage.input_text_tokens,
        "input_audio_tokens": result.usage.input_audio_tokens,
        "output_tokens": result.usage.output_tokens,
        "output_audio_tokens": result.usage.output_audio_tokens,
        "fidelity": result.fidelity,
        "attempts": sum(s.attempts for s in result.segments),
        "warnings": list(result.warnings),
        "ready_rss_kib": ready_rss,
        "max_rss_kib": max_rss_kib(),
    }


async def _narrate_many(texts: list[str]) -> tuple[list[tuple[StoredNarration, float]], float, float]:
    """The texts narrated at once by one app: each result with its wall seconds, then the
    whole wall and CPU seconds."""
    app = App.from_env()
    try:
        limits = app.settings.limits
        await app.narrations.narrate(parse_request(json.dumps({"text": WARM_UP_TEXT}).encode(), limits))
        started, started_cpu = time.perf_counter(), time.process_time()

        async def one(text: str) -> tuple[StoredNarration, float]:
            request = parse_request(json.dumps({"text": text, "title": "Benchmark"}).encode(), limits)
            result = await app.narrations.narrate(request)
            return result, time.perf_counter() - started

        results = await asyncio.gather(*(one(text) for text in texts))
        return list(results), time.perf_counter() - started, time.process_time() - started_cpu
    finally:
        await app.aclose()


def run_many(minutes: float, narrations: int) -> dict[str, Any]:
    """``narrations`` different texts of ``minutes`` each, narrated at once in this process."""
    texts = [prose_for_minutes(minutes, seed=seed) for seed in range(narrations)]
    results, wall, cpu = asyncio.run(_narrate_many(texts))
    return {
        "minutes_requested": minutes,
        "narrations": [
            {
                "wall_seconds": seconds,
                "segment_speech_seconds": [
                    round(s.end_seconds - s.start_seconds, 3) for s in result.segments
                ],
                "attempts": sum(s.attempts for s in result.segments),
            }
            for result, seconds in results
        ],
        "wall_seconds": wall,
        "narration_cpu_seconds": cpu,
        "speech_seconds": sum(
            s.end_seconds - s.start_seconds for result, _ in results for s in result.segments
        ),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker", description=__doc__)
    parser.add_argument("--minutes", type=float, required=True, help="minutes of speech to narrate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated prose")
    parser.add_argument("--format", choices=["wav", "mp3"], default="wav", help="audio format (default wav)")
    parser.add_argument(
        "--narrations", type=int, default=0, help="narrate this many texts at once instead (seeds 0, 1, ...)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    if args.narrations:
        result = run_many(args.minutes, args.narrations)
    else:
        result = run(args.minutes, args.seed, args.format)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
