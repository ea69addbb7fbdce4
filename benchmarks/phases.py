"""Where the wall time of a long-form narration goes: per-segment phase timestamps, both sides.

``python -m benchmarks.phases --minutes 30 --concurrency 8`` (or ``--narrations 8 --minutes 7
--concurrency 1`` for the fleet) starts Azurite and a paced emulator (``--speed``, 60 s/s by
default) logging each response, narrates in a fresh worker process through the production
path (as :mod:`benchmarks.worker`), and prints, per segment, when (seconds from the start of
the timed narration):

- ``slot``: it got its Realtime slot (``Narrator.narrate`` called), after waiting for a
  segment in hand to be finished;
- ``first``: its first audio delta arrived; ``done``: its ``response.done`` arrived;
- ``level``, ``timed``: loudness levelling and caption timing ended (worker threads);
- ``staged``: its speech, with the pause after it, was staged in Blob Storage (a long
  segment's opening while the rest streams, then the rest: :mod:`podcast.engine.parts`);

and, from the emulator's log, how long it took to render the speech before its first delta
(``synth``) and when its first delta went out. It sums the time the slots stood idle between
one segment's ``response.done`` and the next ``slot``, and measures the worker's event-loop
lag (a 5 ms ticker: how late it woke), to tell the client's cost from the test peers'.

The timings wrap the production functions from outside (this module patches them in the
worker process only); nothing in ``podcast/`` knows about them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
_RESPONSE_LINE = re.compile(
    r"response (?P<id>\S+) .*?audio=(?P<audio>[\d.]+)s .*?synth=(?P<synth>[\d.]+)s "
    r"first_audio=(?P<first>[\d.]+)s took=(?P<took>[\d.]+)s"
)


# --- In the worker process -------------------------------------------------------------------


def _instrument(events: list[dict[str, Any]], clock: list[float]) -> None:
    """Wrap the production steps of a segment so each records its start and end."""
    from podcast.audio import captions, loudness
    from podcast.engine.realtime import Narrator
    from podcast.engine.responses import ResponseState
    from podcast.storage.blobs import BlobStore, WavBlockWriter
    from podcast.storage.files import BlobFiles

    def now() -> float:
        return time.monotonic() - clock[0]

    moments: dict[object, tuple[float, float | None]] = {}
    finish = ResponseState.finish

    def timed_finish(self: ResponseState, total_seconds: float) -> Any:
        done = finish(self, total_seconds)
        moments[done.response_id] = (self.requested_at, self.first_audio_at)
        return done

    ResponseState.finish = timed_finish  # type: ignore[method-assign]

    narrate = Narrator.narrate

    async def timed_narrate(self: Narrator, text: str, **kwargs: Any) -> Any:
        started = now()
        result = await narrate(self, text, **kwargs)
        ended = now()
        requested, first = moments.get(result.response_id, (None, None))
        events.append(
            {
                "kind": "narrate",
                "words": len(text.split()),
                "slot": started,
                "requested": None if requested is None else requested - clock[0],
                "first": None if first is None else first - clock[0],
                "done": ended,
                "audio_seconds": len(result.audio) / 48_000,
            }
        )
        return result

    Narrator.narrate = timed_narrate  # type: ignore[method-assign]

    def wrap_thread(module: Any, name: str) -> None:
        original = getattr(module, name)

        def timed(pcm: Any, *args: Any) -> Any:
            started = now()
            result = original(pcm, *args)
            event = {"kind": name, "bytes": len(pcm), "start": started, "end": now()}
            if name == "finish_parts":  # the whole's loudness in parts, or None: levelled whole again
                event["lufs"] = None if result is None else result.lufs
            events.append(event)
            return result

        setattr(module, name, timed)

    wrap_thread(loudness, "level_in_place")
    wrap_thread(loudness, "level_opening")
    wrap_thread(loudness, "level_part")
    wrap_thread(loudness, "finish_parts")
    wrap_thread(captions, "time_words")
    stage = WavBlockWriter.stage
    stage_part = WavBlockWriter.stage_part

    async def timed_stage_part(self: WavBlockWriter, index: int, part: int, pcm: Any) -> None:
        started = now()
        await stage_part(self, index, part, pcm)
        events.append({"kind": f"stage part {part}", "bytes": len(pcm), "start": started, "end": now()})

    WavBlockWriter.stage_part = timed_stage_part  # type: ignore[method-assign]

    async def timed_stage(self: WavBlockWriter, index: int, pcm: bytes | bytearray) -> None:
        started = now()
        await stage(self, index, pcm)
        if index % 2 == 0:
            events.append({"kind": "stage", "bytes": len(pcm), "start": started, "end": now()})

    WavBlockWriter.stage = timed_stage  # type: ignore[method-assign]

    def wrap_async(owner: Any, name: str, kind: str) -> None:
        original = getattr(owner, name)

        async def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
            started = now()
            try:
                return await original(self, *args, **kwargs)
            finally:
                events.append({"kind": kind, "start": started, "end": now()})

        setattr(owner, name, timed)

    def wrap_sync(owner: Any, name: str, kind: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = now()
            try:
                return original(*args, **kwargs)
            finally:
                events.append({"kind": kind, "start": started, "end": now()})

        setattr(owner, name, timed)

    # What follows the last segment: the cues, the commit, the captions, the documents.
    from podcast.services import narrations

    wrap_sync(narrations, "make_cues", "make the captions' cues")  # on the event loop
    wrap_async(WavBlockWriter, "commit", "commit the audio")
    wrap_async(BlobFiles, "put_text", "put a caption file")
    wrap_async(BlobStore, "upload_json", "upload a JSON document")


async def _lag_ticker(lags: list[float], interval: float = 0.005) -> None:
    loop = asyncio.get_running_loop()
    while True:
        expected = loop.time() + interval
        await asyncio.sleep(interval)
        lags.append(loop.time() - expected)


def worker_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--narrations", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from benchmarks import worker

    events: list[dict[str, Any]] = []
    clock = [time.monotonic()]
    lags: list[float] = []
    _instrument(events, clock)
    real_narrate = worker._narrate if not args.narrations else worker._narrate_many

    async def with_ticker(*a: Any, **k: Any) -> Any:
        ticker = asyncio.create_task(_lag_ticker(lags))
        try:
            return await real_narrate(*a, **k)
        finally:
            ticker.cancel()

    if args.narrations:
        worker._narrate_many = with_ticker
    else:
        worker._narrate = with_ticker
    from podcast.engine import longform

    original_narrate_text = longform.narrate_text
    started_once = [False]

    async def narrate_text(*a: Any, **k: Any) -> Any:
        # Skip the warm-up (its text is WARM_UP_TEXT): restart the clock for the timed one.
        request = a[1]
        if request.text != worker.WARM_UP_TEXT and not started_once[0]:
            started_once[0] = True
            clock[0] = time.monotonic()
            events.clear()
            lags.clear()
        return await original_narrate_text(*a, **k)

    from podcast.services import narrations

    narrations.narrate_text = narrate_text  # type: ignore[attr-defined]
    if args.narrations:
        result = worker.run_many(args.minutes, args.narrations)
    else:
        result = worker.run(args.minutes, 0)
    args.out.write_text(json.dumps({"result": result, "events": events, "lags": lags}))
    return 0


# --- The driver --------------------------------------------------------------------------------


def _emulator_responses(log_text: str) -> list[dict[str, float]]:
    return [
        {k: float(v) for k, v in m.groupdict().items() if k != "id"}
        for m in _RESPONSE_LINE.finditer(log_text)
        if float(m.group("audio")) > 5
    ]


def report(data: dict[str, Any], responses: list[dict[str, float]], concurrency: int, speed: float) -> str:
    events = data["events"]
    result = data["result"]
    narrates = sorted((e for e in events if e["kind"] == "narrate"), key=lambda e: e["slot"])
    levels = sorted((e for e in events if e["kind"] == "level_in_place"), key=lambda e: e["start"])
    kinds = ("level_opening", "level_part", "finish_parts", "stage part 0", "stage part 1")
    streamed = {
        kind: sorted((e for e in events if e["kind"] == kind), key=lambda e: e["start"]) for kind in kinds
    }
    times = sorted((e for e in events if e["kind"] == "time_words"), key=lambda e: e["start"])
    stages = sorted((e for e in events if e["kind"] == "stage"), key=lambda e: e["start"])
    out = []
    wall = result["wall_seconds"]
    speech = result["speech_seconds"]
    out.append(
        f"wall {wall:.2f} s for {speech:.0f} s of speech at {speed:g} s/s, concurrency {concurrency}: "
        f"ideal {speech / speed / concurrency:.2f} s, ratio {wall / (speech / speed / concurrency):.2f}x; "
        f"client CPU {result['narration_cpu_seconds']:.2f} s"
    )
    out.append(" seg  words  audio s   slot    req  first   done  paced   (first-req  stream-paced)")
    for index, e in enumerate(narrates):
        paced = e["audio_seconds"] / speed
        stream = e["done"] - (e["first"] or e["slot"])
        out.append(
            f" {index:3d} {e['words']:6d} {e['audio_seconds']:8.1f} {e['slot']:6.2f} "
            f"{(e['requested'] or 0):6.2f} "
            f"{(e['first'] or 0):6.2f} {e['done']:6.2f} {paced:6.2f}   "
            f"({(e['first'] or e['slot']) - (e['requested'] or e['slot']):5.2f}  {stream - paced:+6.2f})"
        )

    def span(items: list[dict[str, Any]], name: str) -> str:
        if not items:
            return f"{name}: none"
        durations = [i["end"] - i["start"] for i in items]
        return (
            f"{name}: {len(items)} x mean {statistics.mean(durations) * 1000:.0f} ms "
            f"(max {max(durations) * 1000:.0f}), sum {sum(durations):.2f} s"
        )

    out.append("   " + span(levels, "level_in_place (thread; a segment levelled whole)"))
    out.append("   " + span(streamed["level_opening"], "level_opening (thread, while the rest streams)"))
    out.append("   " + span(streamed["stage part 0"], "stage the opening (while the rest streams)"))
    out.append("   " + span(streamed["level_part"], "level_part (thread; the rest, after response.done)"))
    out.append("   " + span(streamed["finish_parts"], "finish_parts (thread; the whole measured)"))
    measured = [e["lufs"] for e in streamed["finish_parts"]]
    kept = [lufs for lufs in measured if lufs is not None]
    if measured:
        out.append(
            f"      the parts kept: {len(kept)} of {len(measured)}"
            + (f", the whole at {min(kept):.2f} to {max(kept):.2f} LUFS" if kept else "")
        )
    out.append("   " + span(streamed["stage part 1"], "stage the rest (its pause appended)"))
    out.append("   " + span(times, "time_words (thread)"))
    out.append("   " + span(stages, "stage a whole segment's block (its pause appended)"))
    # Slot idle: at each slot's start, how long since the earliest unconsumed response.done.
    dones = sorted(e["done"] for e in narrates)
    slots = sorted(e["slot"] for e in narrates)
    idle = [slot - done for slot, done in zip(slots[concurrency:], dones, strict=False)]
    if idle:
        out.append(
            f"   slot idle between a response.done and the next segment's start: {len(idle)} x mean "
            f"{statistics.mean(idle) * 1000:.0f} ms (max {max(idle) * 1000:.0f}), sum {sum(idle):.2f} s"
        )
    opens = [(e["requested"] or e["slot"]) - e["slot"] for e in narrates]
    out.append(
        f"   slot -> response.create sent (handshake, session.update): mean "
        f"{statistics.mean(opens) * 1000:.0f} ms, "
        f"max {max(opens) * 1000:.0f} ms"
    )
    firsts = [(e["first"] or e["slot"]) - (e["requested"] or e["slot"]) for e in narrates]
    out.append(
        f"   response.create -> first audio (client): mean {statistics.mean(firsts) * 1000:.0f} ms, "
        f"max {max(firsts) * 1000:.0f} ms"
    )
    lag_stream = [e["done"] - (e["first"] or e["slot"]) - e["audio_seconds"] / speed for e in narrates]
    out.append(
        f"   streaming beyond its pace (first audio -> done minus audio/speed): mean "
        f"{statistics.mean(lag_stream) * 1000:+.0f} ms, max {max(lag_stream) * 1000:+.0f} ms"
    )
    last_done = max(dones)
    out.append(f"   after the last response.done: {wall - last_done:.2f} s (finish, stage, commit):")
    for e in sorted(
        (e for e in events if e.get("end", 0) > last_done and "start" in e), key=lambda e: e["start"]
    ):
        out.append(f"      {e['kind']:28s} {e['start'] - last_done:+6.3f} .. {e['end'] - last_done:+6.3f} s")
    lags = data["lags"]
    if lags:
        lags_sorted = sorted(lags)
        out.append(
            f"   worker event-loop lag (5 ms ticker): p50 {lags_sorted[len(lags) // 2] * 1000:.1f} ms, "
            f"p99 {lags_sorted[int(len(lags) * 0.99)] * 1000:.1f} ms, max {lags_sorted[-1] * 1000:.0f} ms, "
            f"> 20 ms: {sum(1 for lag in lags if lag > 0.02)} times, "
            f"{sum(lag for lag in lags if lag > 0.02):.2f} s"
        )
    if responses:
        synth = [r["synth"] for r in responses]
        first = [r["first"] for r in responses]
        over = [r["took"] - r["first"] - r["audio"] / speed for r in responses]
        out.append(
            f"   emulator, {len(responses)} responses: synthesis before streaming mean "
            f"{statistics.mean(synth) * 1000:.0f} ms (max {max(synth) * 1000:.0f}); first delta out after "
            f"mean {statistics.mean(first) * 1000:.0f} ms (max {max(first) * 1000:.0f}); streaming beyond "
            f"its pace mean {statistics.mean(over) * 1000:+.0f} ms (max {max(over) * 1000:+.0f})"
        )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return worker_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m benchmarks.phases", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--narrations", type=int, default=0, help="a fleet of this many narrations at once")
    parser.add_argument("--speed", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    from benchmarks.longform import BenchmarkAzurite, EmulatorProcess, _delete_container, worker_env
    from testkit.azurite import azurite_executable

    with tempfile.TemporaryDirectory(prefix="podcast-phases-") as folder:
        work = Path(folder)
        azurite = BenchmarkAzurite(work / "azurite", executable=azurite_executable())
        emulator = EmulatorProcess(args.speed, work / "emulator.log", log_level="INFO")
        azurite.start()
        emulator.start()
        try:
            for _ in range(args.repeats):
                container = f"phases-{uuid.uuid4().hex[:12]}"
                out = work / "phases.json"
                log_start = emulator.log_path.stat().st_size
                command = [
                    sys.executable,
                    "-m",
                    "benchmarks.phases",
                    "--worker",
                    "--minutes",
                    repr(args.minutes),
                ]
                command += ["--out", str(out)]
                if args.narrations:
                    command += ["--narrations", str(args.narrations)]
                cpu_before = emulator.cpu_seconds()
                try:
                    subprocess.run(
                        command,
                        cwd=REPO_ROOT,
                        env=worker_env(emulator, azurite, container, args.concurrency),
                        check=True,
                    )
                finally:
                    _delete_container(azurite, container)
                cpu_after = emulator.cpu_seconds()
                data = json.loads(out.read_text())
                with emulator.log_path.open() as log:
                    log.seek(log_start)
                    responses = _emulator_responses(log.read())
                print(report(data, responses, args.concurrency, args.speed))
                if cpu_before is not None and cpu_after is not None:
                    wall = data["result"]["wall_seconds"]
                    print(
                        f"   emulator CPU {cpu_after - cpu_before:.2f} s (whole run, warm-up included; "
                        f"timed wall {wall:.2f} s)"
                    )
        finally:
            emulator.stop()
            azurite.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
