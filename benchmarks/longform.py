"""Long-form narration benchmark: wall time, peak memory and input tokens, in one command.

``python -m benchmarks.longform [--quick] [--check]`` starts its own Azurite and two Realtime
API emulators in separate processes (so their CPU and memory are not the narrating
process's): one paced at ``--speed`` seconds of audio per wall-clock second, one instant
(for the token baseline, where pacing does not matter). Every measured narration then runs
in a fresh process (:mod:`benchmarks.worker`) through the production path, and the results
are printed as three tables:

1. Wall time of a text of about ``--minutes`` (30) minutes of audio at each
   ``--concurrency`` (1, 4, 8), as a ratio to the ideal (speech seconds / speed /
   concurrency) and to concurrency 1 measured in the same run. Target: at most 1.25x the
   ideal at concurrency 4 and 8.
2. Peak RSS of the narrating process for ``--rss-minutes`` (5, 30, 60) minutes of audio at
   ``--rss-concurrency`` (4, the app's default). Target: the longest at most 30 MB above
   the shortest.
3. Input tokens billed per minute of output audio: ours (one Realtime session per segment,
   summed from the result's usage) against one conversation for everything (the same
   segments as consecutive responses on one connection, which re-bills earlier audio).
   Target: ours flat in the length (within 10 %).

Targets are benchmarks, not tests: the exit status is 0 whatever the numbers, unless
``--check`` is given (then 1 when a target is missed). ``--json PATH`` also writes every
measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import heapq
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from openai import AsyncOpenAI
from openai.types.realtime import RealtimeErrorEvent, ResponseAudioDeltaEvent, ResponseDoneEvent

from benchmarks.texts import WORDS_PER_MINUTE, prose_for_minutes
from podcast.engine import audio
from podcast.engine.instructions import build_instructions, user_message
from podcast.engine.realtime import MAX_OUTPUT_TOKENS_LIMIT
from podcast.engine.segments import DEFAULT_MAX_WORDS, split_text
from podcast.models import RequestLimits, parse_request
from testkit.azurite import AzuriteNotInstalledError, AzuriteServer, azurite_executable

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
API_KEY: Final = "benchmark-key"
DEPLOYMENT: Final = "gpt-realtime-mini"
WALL_TARGET: Final = 1.25
"""Wall time at concurrency 4 and 8 at most this many times the ideal."""
WALL_TARGET_CONCURRENCIES: Final = (4, 8)
RSS_TARGET_BYTES: Final = 30_000_000
"""Peak RSS of the longest narration at most this much above the shortest's."""
TOKENS_FLATNESS_TARGET: Final = 1.10
"""Ours: input tokens per output minute of the longest narration within 10 % of the shortest's."""
AZURITE_EXTENT_MEMORY_MB: Final = 4096
"""In-memory Azurite keeps every staged block: room for all the runs' audio (~3 MB a minute)."""
_APP_SETTING_PREFIXES: Final = ("AZURE_OPENAI_AUDIO_", "NARRATION_", "AZURE_CLIENT_ID")


# --- Services in their own processes ---------------------------------------------------------


class BenchmarkAzurite(AzuriteServer):
    """The tests' Azurite launcher with room for hours of audio in memory."""

    def _command(self) -> list[str]:
        command = super()._command()
        if "--extentMemoryLimit" in command:
            command[command.index("--extentMemoryLimit") + 1] = str(AZURITE_EXTENT_MEMORY_MB)
        return command


class EmulatorProcess:
    """``python -m emulator`` in a child process (synthetic speech), on a free port."""

    def __init__(self, speed: float | None, log_path: Path) -> None:
        self.speed = speed
        self.log_path = log_path
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30.0) -> None:
        command = [sys.executable, "-m", "emulator", "--host", "127.0.0.1", "--port", "0"]
        command += ["--api-key", API_KEY, "--engine", "synthetic", "--log-level", "WARNING"]
        command += ["--speed", "instant" if self.speed is None else repr(self.speed)]
        with self.log_path.open("w") as log:
            self._process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        assert self._process.stdout is not None
        deadline = time.monotonic() + timeout
        for line in self._process.stdout:
            if line.startswith("AZURE_OPENAI_AUDIO_ENDPOINT="):
                self.url = line.split("=", 1)[1].strip()
                return
            if time.monotonic() > deadline:
                break
        self.stop()
        raise RuntimeError(f"the emulator did not start; see {self.log_path}")

    @property
    def websocket_base_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/openai/v1"

    def cpu_seconds(self) -> float | None:
        """User plus system CPU time of the emulator process so far (Linux; else ``None``)."""
        if self._process is None:
            return None
        try:
            fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


# --- Measurements ----------------------------------------------------------------------------


@dataclass
class Run:
    """One narration in a fresh worker process (see :mod:`benchmarks.worker`)."""

    minutes: float
    concurrency: int
    data: dict[str, Any] = field(default_factory=dict)
    emulator_cpu_seconds: float | None = None

    @property
    def speech_seconds(self) -> float:
        return float(self.data["speech_seconds"])

    @property
    def wall_seconds(self) -> float:
        return float(self.data["wall_seconds"])

    @property
    def max_rss_bytes(self) -> int:
        return int(self.data["max_rss_kib"]) * 1024

    @property
    def input_tokens_per_minute(self) -> float:
        return float(self.data["input_tokens"]) / (self.speech_seconds / 60)


@dataclass(frozen=True)
class Conversation:
    """The baseline: every segment as a response in one conversation on one connection."""

    minutes: float
    responses: int
    input_tokens: int
    audio_seconds: float

    @property
    def input_tokens_per_minute(self) -> float:
        return self.input_tokens / (self.audio_seconds / 60)


def segments_makespan(durations: Sequence[float], concurrency: int) -> float:
    """When the last of ``durations`` would end if each started, in order, on the first free
    of ``concurrency`` slots, with no overhead at all: the best the narration can do with
    these segments (the limiter hands out slots in segment order)."""
    slots = [0.0] * concurrency
    for duration in durations:
        heapq.heappush(slots, heapq.heappop(slots) + duration)
    return max(slots)


def worker_env(
    emulator: EmulatorProcess, azurite: AzuriteServer, container: str, concurrency: int
) -> dict[str, str]:
    """The environment of a worker: app settings for the emulator and Azurite, nothing inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_APP_SETTING_PREFIXES)}
    env.update(
        {
            "AZURE_OPENAI_AUDIO_ENDPOINT": emulator.url,
            "AZURE_OPENAI_AUDIO_API_KEY": API_KEY,
            "AZURE_OPENAI_AUDIO_DEPLOYMENT": DEPLOYMENT,
            "AZURE_OPENAI_AUDIO_TIMEOUT_SECONDS": "600",
            "NARRATION_STORAGE": azurite.connection_string,
            "NARRATION_OUTPUT_CONTAINER": container,
            "NARRATION_CONCURRENCY": str(concurrency),
            "NARRATION_TIME_BUDGET_SECONDS": "3600",
            "NARRATION_MAX_TEXT_CHARACTERS": "1000000",
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    return env


def run_worker(run: Run, emulator: EmulatorProcess, azurite: AzuriteServer) -> None:
    """Narrate ``run`` in a fresh process; fill in its measurements."""
    container = f"bench-{uuid.uuid4().hex[:16]}"
    command = [sys.executable, "-m", "benchmarks.worker", "--minutes", repr(run.minutes)]
    cpu_before = emulator.cpu_seconds()
    try:
        finished = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env=worker_env(emulator, azurite, container, run.concurrency),
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
    finally:
        _delete_container(azurite, container)
    cpu_after = emulator.cpu_seconds()
    if finished.returncode != 0:
        raise RuntimeError(
            f"the worker for {run.minutes:g} min at concurrency {run.concurrency} failed "
            f"(exit {finished.returncode}):\n{finished.stderr.strip()[-3000:]}"
        )
    run.data = json.loads(finished.stdout.strip().splitlines()[-1])
    if cpu_before is not None and cpu_after is not None:
        run.emulator_cpu_seconds = cpu_after - cpu_before


def _delete_container(azurite: AzuriteServer, container: str) -> None:
    with (
        BlobServiceClient.from_connection_string(azurite.connection_string) as service,
        contextlib.suppress(ResourceNotFoundError),
    ):
        service.delete_container(container)


async def one_conversation(
    emulator: EmulatorProcess, minutes: float, segment_words: int, seed: int = 0
) -> Conversation:
    """Narrate the same segments as the app, as consecutive responses in ONE conversation.

    One connection: ``session.update`` once (the app's instructions), then per segment
    ``conversation.item.create`` (the app's user message) and ``response.create``, waiting
    for ``response.done`` each time. The service bills the whole conversation as input.
    """
    request = parse_request(
        {"text": prose_for_minutes(minutes, seed=seed)}, RequestLimits(max_text_characters=1_000_000)
    )
    segments = split_text(request.text, segment_words)
    client = AsyncOpenAI(
        api_key=API_KEY, base_url=emulator.url + "/openai/v1", websocket_base_url=emulator.websocket_base_url
    )
    input_tokens = 0
    audio_bytes = 0
    try:
        async with client.realtime.connect(model=DEPLOYMENT) as connection:
            await connection.session.update(
                session={
                    "type": "realtime",
                    "output_modalities": ["audio"],
                    "instructions": build_instructions(request),
                    "max_output_tokens": MAX_OUTPUT_TOKENS_LIMIT,
                    "audio": {
                        "input": {"turn_detection": None},
                        "output": {
                            "voice": request.voice,
                            "format": {"type": "audio/pcm", "rate": 24_000},
                        },
                    },
                }
            )
            for segment in segments:
                await connection.conversation.item.create(
                    item={
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": user_message(request, segment.text)}],
                    }
                )
                await connection.response.create()
                while True:
                    event = await connection.recv()
                    if isinstance(event, ResponseAudioDeltaEvent):
                        audio_bytes += len(base64.b64decode(event.delta))
                    elif isinstance(event, RealtimeErrorEvent):
                        raise RuntimeError(f"the baseline conversation failed: {event.error.message}")
                    elif isinstance(event, ResponseDoneEvent):
                        response = event.response
                        if response.status != "completed" or response.usage is None:
                            raise RuntimeError(f"a baseline response ended {response.status}")
                        input_tokens += response.usage.input_tokens or 0
                        break
    finally:
        await client.close()
    return Conversation(minutes, len(segments), input_tokens, audio.duration_seconds(audio_bytes))


# --- The report ------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [
        "  ".join(
            h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True))
        )
    ]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append(
            "  ".join(
                c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(lines)


def _mb(value: float) -> str:
    return f"{value / 1e6:.1f}"


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def report(
    args: argparse.Namespace, wall_runs: list[Run], rss_runs: list[Run], conversations: list[Conversation]
) -> tuple[str, list[Check]]:
    """The printed report and the target checks."""
    checks: list[Check] = []
    out: list[str] = []
    base = wall_runs[0]
    speech = base.speech_seconds
    out.append(
        f"\n1. Wall time: {speech / 60:.1f} min of audio ({base.data['words']:,} words, "
        f"{base.data['segments']} segments), emulator paced at {args.speed:g} s of audio per second"
    )
    rows = []
    for run in wall_runs:
        ideal = run.speech_seconds / args.speed / run.concurrency
        ratio = run.wall_seconds / ideal
        bound = segments_makespan(run.data["segment_speech_seconds"], run.concurrency) / args.speed
        vs_one = run.wall_seconds / base.wall_seconds
        target = ""
        if run.concurrency in WALL_TARGET_CONCURRENCIES:
            passed = ratio <= WALL_TARGET
            target = f"<= {WALL_TARGET:.2f}x  {_verdict(passed)}"
            checks.append(
                Check(
                    f"wall time at concurrency {run.concurrency}",
                    passed,
                    f"{ratio:.2f}x the ideal (target <= {WALL_TARGET:.2f}x)",
                )
            )
        emulator_load = (
            f"{run.emulator_cpu_seconds / run.wall_seconds:.0%}"
            if run.emulator_cpu_seconds is not None
            else "n/a"
        )
        rows.append(
            [
                str(run.concurrency),
                f"{run.wall_seconds:.2f}",
                f"{ideal:.2f}",
                f"{ratio:.2f}x",
                f"{bound / ideal:.2f}x",
                f"{vs_one:.3f} ({1 / run.concurrency:.3f})",
                f"{run.data['cpu_seconds']:.1f}",
                emulator_load,
                target,
            ]
        )
    out.append(
        _table(
            [
                "concurrency",
                "wall s",
                "ideal s",
                "wall/ideal",
                "segments/ideal",
                "wall/c1 (ideal)",
                "client CPU s",
                "emulator CPU",
                "target",
            ],
            rows,
        )
    )
    out.append(
        "   ideal = speech seconds / speed / concurrency; segments = when the segments, started in order\n"
        "   on the first free slot with no overhead, would end (the best these segments allow);\n"
        "   client CPU = the narrating process; emulator CPU = its share of one core during the run"
    )

    shortest, longest = rss_runs[0], rss_runs[-1]
    out.append(
        f"\n2. Peak RSS of the narrating process (concurrency {args.rss_concurrency}, fresh process each)"
    )
    rows = []
    for run in rss_runs:
        ready = run.data.get("ready_rss_kib")
        rows.append(
            [
                f"{run.speech_seconds / 60:.1f} min",
                str(run.data["segments"]),
                _mb(ready * 1024) if ready else "n/a",
                _mb(run.max_rss_bytes),
                f"{(run.max_rss_bytes - shortest.max_rss_bytes) / 1e6:+.1f}",
                f"{run.wall_seconds:.1f}",
            ]
        )
    out.append(
        _table(
            [
                "audio",
                "segments",
                "RSS before (MB)",
                "peak RSS (MB)",
                f"vs {shortest.minutes:g} min (MB)",
                "wall s",
            ],
            rows,
        )
    )
    growth = longest.max_rss_bytes - shortest.max_rss_bytes
    passed = growth <= RSS_TARGET_BYTES
    out.append(
        f"   {longest.minutes:g} min vs {shortest.minutes:g} min: {growth / 1e6:+.1f} MB "
        f"(target <= {RSS_TARGET_BYTES / 1e6:.0f} MB)  {_verdict(passed)}"
    )
    out.append("   RSS before = after imports and a warm-up narration, before the measured one")
    checks.append(
        Check(
            f"peak RSS {longest.minutes:g} vs {shortest.minutes:g} min",
            passed,
            f"{growth / 1e6:+.1f} MB (target <= {RSS_TARGET_BYTES / 1e6:.0f} MB)",
        )
    )

    out.append(
        "\n3. Input tokens billed per minute of output audio: ours (a session per segment) and one\n"
        "   conversation for everything (the same segments, instructions and messages as consecutive\n"
        "   responses on one connection; instant emulator, since pacing does not change tokens)"
    )
    rows = []
    for run, conversation in zip(rss_runs, conversations, strict=True):
        ours, theirs = run.input_tokens_per_minute, conversation.input_tokens_per_minute
        rows.append(
            [
                f"{run.speech_seconds / 60:.1f} min",
                f"{run.data['input_tokens']:,}",
                f"{ours:,.0f}",
                f"{conversation.input_tokens:,}",
                f"{theirs:,.0f}",
                f"{ours / theirs:.3f}",
            ]
        )
    out.append(
        _table(
            [
                "audio",
                "ours: input",
                "ours: per min",
                "one conversation: input",
                "one conversation: per min",
                "ours/baseline",
            ],
            rows,
        )
    )
    ours_growth = longest.input_tokens_per_minute / shortest.input_tokens_per_minute
    their_growth = conversations[-1].input_tokens_per_minute / conversations[0].input_tokens_per_minute
    passed = ours_growth <= TOKENS_FLATNESS_TARGET
    out.append(
        f"   per-minute growth {longest.minutes:g} vs {shortest.minutes:g} min: ours {ours_growth:.3f}x "
        f"(target flat, <= {TOKENS_FLATNESS_TARGET:.2f}x)  {_verdict(passed)}; "
        f"one conversation {their_growth:.2f}x"
    )
    checks.append(
        Check(
            "input tokens per output minute flat",
            passed,
            f"{ours_growth:.3f}x from {shortest.minutes:g} to {longest.minutes:g} min (target <= "
            f"{TOKENS_FLATNESS_TARGET:.2f}x; one conversation: {their_growth:.2f}x)",
        )
    )

    out.append(
        "\nTargets" + (" (a --quick run: the targets are meant for the full run)" if args.quick else "")
    )
    for check in checks:
        out.append(f"  {_verdict(check.passed)}  {check.name}: {check.detail}")
    return "\n".join(out), checks


# --- Main ------------------------------------------------------------------------------------


def _minutes_list(value: str) -> list[float]:
    try:
        minutes = sorted({float(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError("expected comma-separated minutes, e.g. 5,30,60") from None
    if len(minutes) < 2 or minutes[0] <= 0:
        raise argparse.ArgumentTypeError("give at least two positive lengths")
    return minutes


def _int_list(value: str) -> list[int]:
    try:
        numbers = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError("expected comma-separated whole numbers, e.g. 1,4,8") from None
    if not numbers or numbers[0] < 1 or numbers[-1] > 16:
        raise argparse.ArgumentTypeError("concurrencies must be from 1 to 16")
    return numbers


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.longform",
        description="Long-form narration benchmark against the Realtime emulator and Azurite.",
    )
    parser.add_argument("--speed", type=float, default=60.0, help="seconds of audio per second (default 60)")
    parser.add_argument(
        "--minutes", type=float, default=30.0, help="audio of the wall-time text (default 30)"
    )
    parser.add_argument(
        "--concurrency", type=_int_list, default=[1, 4, 8], help="concurrencies to time (default 1,4,8)"
    )
    parser.add_argument(
        "--rss-minutes",
        type=_minutes_list,
        default=[5.0, 30.0, 60.0],
        help="lengths for peak RSS and tokens (default 5,30,60)",
    )
    parser.add_argument(
        "--rss-concurrency", type=int, default=4, help="concurrency of the RSS and token runs (default 4)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smaller run: 10 minutes timed, 2/5/10 minutes for RSS and tokens",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--json", type=Path, default=None, help="also write every measurement to this file")
    return parser


@contextlib.contextmanager
def services(
    workdir: Path, speed: float
) -> Iterator[tuple[BenchmarkAzurite, EmulatorProcess, EmulatorProcess]]:
    """Azurite, a paced emulator and an instant emulator, each in its own process."""
    azurite = BenchmarkAzurite(workdir / "azurite", executable=azurite_executable())
    paced = EmulatorProcess(speed, workdir / "emulator-paced.log")
    instant = EmulatorProcess(None, workdir / "emulator-instant.log")
    try:
        azurite.start()
        paced.start()
        instant.start()
        yield azurite, paced, instant
    finally:
        instant.stop()
        paced.stop()
        azurite.stop()


def measure(
    wall_runs: list[Run], rss_runs: list[Run], speed: float, segment_words: int
) -> list[Conversation]:
    """Fill in every run (each in a fresh worker process), then measure the baseline conversations."""
    with (
        tempfile.TemporaryDirectory(prefix="podcast-bench-") as folder,
        services(Path(folder), speed) as (azurite, paced, instant),
    ):
        done: dict[tuple[float, int], Run] = {}
        for run in wall_runs + rss_runs:
            key = (run.minutes, run.concurrency)
            if key in done:
                run.data, run.emulator_cpu_seconds = done[key].data, done[key].emulator_cpu_seconds
                continue
            print(
                f"  narrating {run.minutes:g} min at concurrency {run.concurrency} ...", end=" ", flush=True
            )
            run_worker(run, paced, azurite)
            done[key] = run
            print(f"{run.wall_seconds:.1f} s", flush=True)
        print("  one conversation for everything (instant emulator) ...", end=" ", flush=True)
        conversations = [asyncio.run(one_conversation(instant, r.minutes, segment_words)) for r in rss_runs]
        print("done", flush=True)
    return conversations


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.concurrency = sorted({1, *args.concurrency})  # concurrency 1 is what the others compare with
    if args.quick:
        args.minutes, args.rss_minutes = 10.0, [2.0, 5.0, 10.0]
    if args.speed <= 0:
        raise SystemExit("--speed must be positive")
    segment_words = DEFAULT_MAX_WORDS
    print(
        f"Long-form narration benchmark: Python {platform.python_version()}, {os.cpu_count()} CPUs; "
        f"emulator (synthetic voice, {WORDS_PER_MINUTE} words a minute) paced at {args.speed:g} s/s; "
        f"Azurite; segments of at most {segment_words} words",
        flush=True,
    )
    started = time.monotonic()
    wall_runs = [Run(args.minutes, c) for c in args.concurrency]
    rss_runs = [Run(m, args.rss_concurrency) for m in args.rss_minutes]
    try:
        conversations = measure(wall_runs, rss_runs, args.speed, segment_words)
    except (AzuriteNotInstalledError, RuntimeError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    text, checks = report(args, wall_runs, rss_runs, conversations)
    print(text)
    print(f"\nFinished in {time.monotonic() - started:.0f} s.")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "speed": args.speed,
                    "wall": [{"concurrency": r.concurrency, **r.data} for r in wall_runs],
                    "rss": [{"concurrency": r.concurrency, **r.data} for r in rss_runs],
                    "one_conversation": [c.__dict__ for c in conversations],
                    "checks": [c.__dict__ for c in checks],
                },
                indent=2,
            )
        )
    if args.check and not all(check.passed for check in checks):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
