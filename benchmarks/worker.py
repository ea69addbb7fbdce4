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

``--trace-memory PATH`` (off by default: tracing slows the narration several times and
allocates itself) traces the timed narration with :mod:`tracemalloc`: while it runs, a
snapshot is taken whenever the traced memory reaches a new high (by 2 MB or more), and at
the end the top allocation sites of the highest snapshot (by traceback) are written to
``PATH`` beside glibc's heap figures (``mallinfo2``: in use, free but held, mmapped), and
the JSON line gets ``traced_peak_bytes`` and ``traced_end_bytes``. Python objects and numpy
arrays are both traced (numpy reports its buffers to tracemalloc); what RSS holds beyond the
traced peak is the interpreter, the libraries' C allocations and the allocator's free space.

``--narrations N`` narrates N different texts of ``--minutes`` at once in the one process
(one app, as a Function instance carries concurrent requests) and prints each one's wall
time and segments instead.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import logging
import resource
import sys
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

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


class MemoryTrace:
    """The highest :mod:`tracemalloc` snapshot of a narration (see ``--trace-memory``)."""

    FRAMES: Final = 12
    STEP_BYTES: Final = 2_000_000
    INTERVAL_SECONDS: Final = 0.2

    def __init__(self) -> None:
        self.highest: tracemalloc.Snapshot | None = None
        self.highest_bytes = 0
        self.highest_rss_kib: int | None = None
        self.end_bytes = 0
        self.peak_bytes = 0

    async def watch(self) -> None:
        """Snapshot whenever the traced memory rises :data:`STEP_BYTES` above the last snapshot."""
        while True:
            current, _ = tracemalloc.get_traced_memory()
            if current >= self.highest_bytes + self.STEP_BYTES:
                self.highest, self.highest_bytes = tracemalloc.take_snapshot(), current
                self.highest_rss_kib = current_rss_kib()
            await asyncio.sleep(self.INTERVAL_SECONDS)

    def report(self, path: Path, top: int = 40) -> None:
        lines = [
            f"traced peak {self.peak_bytes / 1e6:.1f} MB, at the end {self.end_bytes / 1e6:.1f} MB; "
            f"highest snapshot {self.highest_bytes / 1e6:.1f} MB (RSS then {self.highest_rss_kib} KiB, "
            f"peak RSS {max_rss_kib()} KiB)",
            f"glibc heap: {mallinfo()}",
        ]
        if self.highest is not None:
            snapshot = self.highest.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
            by_file = snapshot.statistics("filename")
            lines.append("\nby file:")
            lines += [
                f"  {s.size / 1e6:8.2f} MB {s.count:9d}  {s.traceback[0].filename}" for s in by_file[:25]
            ]
            lines.append("\nby traceback:")
            for stat in snapshot.statistics("traceback")[:top]:
                lines.append(f"{stat.size / 1e6:8.2f} MB in {stat.count} blocks")
                lines += [f"      {frame.filename}:{frame.lineno}" for frame in stat.traceback]
        path.write_text("\n".join(lines) + "\n")


def mallinfo() -> dict[str, int] | None:
    """glibc's ``mallinfo2()``: bytes in use, free but held, mmapped, and arenas (``None`` elsewhere)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        function = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    names = [
        "arena",
        "ordblks",
        "smblks",
        "hblks",
        "hblkhd",
        "usmblks",
        "fsmblks",
        "uordblks",
        "fordblks",
        "keepcost",
    ]

    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in names]

    function.restype = Info
    info = function()
    return {
        name: int(getattr(info, name)) for name in ("arena", "hblkhd", "uordblks", "fordblks", "keepcost")
    }


async def _narrate(
    text: str, audio_format: str = "wav", trace: MemoryTrace | None = None
) -> tuple[StoredNarration, float, float, int | None]:
    """The timed narration: its result, wall and CPU seconds, and the RSS before it."""
    app = App.from_env()
    try:
        limits = app.settings.limits
        await app.narrations.narrate(parse_request(json.dumps({"text": WARM_UP_TEXT}).encode(), limits))
        ready_rss = current_rss_kib()
        watcher = None
        if trace is not None:
            tracemalloc.start(MemoryTrace.FRAMES)
            watcher = asyncio.create_task(trace.watch())
        started, started_cpu = time.perf_counter(), time.process_time()
        body = {"text": text, "title": "Benchmark", "format": audio_format}
        result = await app.narrations.narrate(parse_request(json.dumps(body).encode(), limits))
        wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
        if trace is not None and watcher is not None:
            watcher.cancel()
            trace.end_bytes, trace.peak_bytes = tracemalloc.get_traced_memory()
        return result, wall, cpu, ready_rss
    finally:
        await app.aclose()


def run(
    minutes: float, seed: int, audio_format: str = "wav", trace_path: Path | None = None
) -> dict[str, Any]:
    """Narrate ``minutes`` of prose as ``audio_format``; return the measurements (see the
    module docstring)."""
    text = prose_for_minutes(minutes, seed=seed)
    started_cpu = time.process_time()
    trace = MemoryTrace() if trace_path is not None else None
    result, wall, narration_cpu, ready_rss = asyncio.run(_narrate(text, audio_format, trace))
    traced: dict[str, Any] = {}
    if trace is not None and trace_path is not None:
        trace.report(trace_path)
        traced = {"traced_peak_bytes": trace.peak_bytes, "traced_end_bytes": trace.end_bytes}
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
        **traced,
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
    parser.add_argument(
        "--trace-memory",
        type=Path,
        default=None,
        metavar="PATH",
        help="trace the narration's allocations (slow) and write the top sites to PATH",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    if args.narrations:
        result = run_many(args.minutes, args.narrations)
    else:
        result = run(args.minutes, args.seed, args.format, args.trace_memory)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
