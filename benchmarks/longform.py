"""Long-form narration benchmark: wall time, peak memory and input tokens, in one command.

``python -m benchmarks.longform [--quick] [--check]`` starts its own Azurite and two Realtime
API emulators in separate processes (so their CPU and memory are not the narrating
process's): one paced at ``--speed`` seconds of audio per wall-clock second, one instant
(for the token baseline, where pacing does not matter). Every measured narration then runs
in a fresh process (:mod:`benchmarks.worker`) through the production path, and the results
are printed as six tables:

1. Wall time of a text of about ``--minutes`` (30) minutes of audio at each
   ``--concurrency`` (1, 4, 8), as a ratio to the ideal (speech seconds / speed /
   concurrency) and to concurrency 1 measured in the same run. Target: at most 1.08x the
   ideal at concurrency 4 and 1.10x at 8.
2. Peak RSS of the narrating process for ``--rss-minutes`` (5, 30, 60) minutes of audio at
   ``--rss-concurrency`` (4, the app's default), and for the shortest and longest again as
   MP3 (``--no-rss-mp3`` skips those). Target: the longest at most 30 MB above the shortest,
   for each format.
3. Input tokens billed per minute of output audio: ours (one Realtime session per segment,
   summed from the result's usage) against one conversation for everything (the same
   segments as consecutive responses on one connection, which re-bills earlier audio).
   Target: ours flat in the length (within 10 %).
4. Client CPU per minute of audio against the floor (:mod:`benchmarks.floor`: the same
   segments from the same emulator over bare websockets, only parsed and decoded), with the
   floor's breakdown and the floor with permessage-deflate. Target: at most 1.25x.
5. ``--fleet-narrations`` (8) narrations at once in one process, each against its own
   ideal. Target: none above 1.10x (no stream falls behind).
6. Cold start: ``import function_app`` against importing the SDKs alone
   (:data:`SDK_MODULES`), and no third-party package beyond theirs. Target: at most 1.05x.

``--trace-memory FOLDER`` traces the allocations of each RSS run not already measured as a
wall-time run (:mod:`benchmarks.worker`'s ``--trace-memory``: the top sites at the highest
traced moment, per run); tracing slows the runs and adds its own memory to their RSS.

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
WALL_TARGETS: Final = {4: 1.08, 8: 1.10}
"""Wall time at concurrency 4 and 8 at most this many times the ideal."""
CPU_TARGET: Final = 1.25
"""Client CPU per audio minute at most this many times the floor's."""
FLEET_TARGET: Final = 1.10
"""Each of the concurrent narrations at most this many times its own ideal: none falls behind."""
COLD_START_TARGET: Final = 1.05
"""``import function_app`` at most this many times the import of the SDKs alone."""
SDK_MODULES: Final = (
    "azure.functions",
    "azure.storage.blob.aio",
    "azure.storage.queue.aio",
    "pydantic",
    "pydantic_settings",
)
"""The SDKs ``function_app`` stands on at import (its triggers, Storage clients, settings, models)."""
ALLOCATOR_SETTINGS: Final = {
    "MALLOC_ARENA_MAX": "2",
    "MALLOC_MMAP_THRESHOLD_": "65536",
    "MALLOC_TRIM_THRESHOLD_": "131072",
}
"""glibc's allocator settings of the deployed app (``infra/app/function.bicep``), for every worker."""
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

    def __init__(self, speed: float | None, log_path: Path, log_level: str = "WARNING") -> None:
        self.speed = speed
        self.log_path = log_path
        self.log_level = log_level
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30.0) -> None:
        command = [sys.executable, "-m", "emulator", "--host", "127.0.0.1", "--port", "0"]
        command += ["--api-key", API_KEY, "--engine", "synthetic", "--log-level", self.log_level]
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
    format: str = "wav"

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
    """When the last of ``durations`` would end if each started, longest first, on the first
    free of ``concurrency`` slots, with no overhead at all: the best the narration can do
    with these segments (the app hands out slots longest first, by words)."""
    slots = [0.0] * concurrency
    for duration in sorted(durations, reverse=True):
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
            **ALLOCATOR_SETTINGS,
        }
    )
    return env


def run_process(
    module: str,
    minutes: float,
    concurrency: int,
    emulator: EmulatorProcess,
    azurite: AzuriteServer,
    extra: Sequence[str] = (),
) -> tuple[dict[str, Any], float | None]:
    """``python -m module --minutes ...`` in a fresh process with the app settings: its JSON
    line, and the emulator's CPU seconds meanwhile."""
    container = f"bench-{uuid.uuid4().hex[:16]}"
    command = [sys.executable, "-m", module, "--minutes", repr(minutes), *extra]
    cpu_before = emulator.cpu_seconds()
    try:
        finished = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env=worker_env(emulator, azurite, container, concurrency),
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
            f"{module} for {minutes:g} min at concurrency {concurrency} failed "
            f"(exit {finished.returncode}):\n{finished.stderr.strip()[-3000:]}"
        )
    data = json.loads(finished.stdout.strip().splitlines()[-1])
    emulator_cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return data, emulator_cpu


def run_worker(
    run: Run, emulator: EmulatorProcess, azurite: AzuriteServer, trace_folder: Path | None = None
) -> None:
    """Narrate ``run`` in a fresh process; fill in its measurements. With ``trace_folder``,
    its allocations are traced into ``<format>-<minutes>min-c<concurrency>.txt`` there
    (``benchmarks.worker --trace-memory``: slower, so its wall time means nothing)."""
    extra: tuple[str, ...] = ("--format", run.format) if run.format != "wav" else ()
    if trace_folder is not None:
        trace_folder.mkdir(parents=True, exist_ok=True)
        name = f"{run.format}-{run.minutes:g}min-c{run.concurrency}.txt"
        extra += ("--trace-memory", str(trace_folder / name))
    run.data, run.emulator_cpu_seconds = run_process(
        "benchmarks.worker", run.minutes, run.concurrency, emulator, azurite, extra
    )


@dataclass
class CpuRuns:
    """Client and floor on the same text, concurrency and emulator, alternating; the least of each."""

    minutes: float
    concurrency: int
    client: list[dict[str, Any]] = field(default_factory=list)
    floor: list[dict[str, Any]] = field(default_factory=list)
    floor_compressed: list[dict[str, Any]] = field(default_factory=list)
    floor_pybase64: list[dict[str, Any]] = field(default_factory=list)

    @staticmethod
    def per_minute(data: dict[str, Any], key: str = "narration_cpu_seconds") -> float:
        return float(data[key]) / (float(data["speech_seconds"]) / 60)

    def best(self, runs: list[dict[str, Any]]) -> dict[str, Any]:
        key = "narration_cpu_seconds" if runs is self.client else "cpu_seconds"
        return min(runs, key=lambda data: self.per_minute(data, key))

    def client_per_minute(self) -> float:
        return self.per_minute(self.best(self.client))

    def floor_per_minute(self, runs: list[dict[str, Any]] | None = None) -> float:
        return self.per_minute(self.best(self.floor if runs is None else runs), "cpu_seconds")


@dataclass
class Fleet:
    """Several narrations at once in one process (:func:`benchmarks.worker.run_many`)."""

    narrations: int
    minutes: float
    concurrency: int
    speed: float
    data: dict[str, Any] = field(default_factory=dict)
    emulator_cpu_seconds: float | None = None

    def ratios(self) -> list[float]:
        """Each narration's wall time over its ideal (its segments at its concurrency, no overhead)."""
        return [
            n["wall_seconds"]
            / (segments_makespan(n["segment_speech_seconds"], self.concurrency) / self.speed)
            for n in self.data["narrations"]
        ]


@dataclass(frozen=True)
class ColdStart:
    sdk_seconds: float
    app_seconds: float
    python_seconds: float
    extra_packages: tuple[str, ...]
    unused_sdks: tuple[str, ...] = ()
    """SDK modules of the baseline that ``import function_app`` does not load: they would pad it."""

    @property
    def ratio(self) -> float:
        return self.app_seconds / self.sdk_seconds


def _import_seconds(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, env=_import_env())
    return time.perf_counter() - started


def _import_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONDONTWRITEBYTECODE": "1"}


def _loaded_packages(code: str) -> set[str]:
    return {m.split(".")[0] for m in _loaded_modules(code)}


def _loaded_modules(code: str) -> set[str]:
    probe = code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        check=True,
        env=_import_env(),
        capture_output=True,
        text=True,
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def measure_cold_start(repeats: int) -> ColdStart:
    """The least of ``repeats`` fresh interpreters each: bare, the SDKs alone, ``import function_app``
    (alternating, bytecode already cached), the top-level packages the app loads beyond the SDKs',
    and the SDK modules it does not load (the baseline must be what the app stands on, no more)."""
    sdk_code = "import " + ", ".join(SDK_MODULES)
    app_code = "import function_app"
    caching = {k: v for k, v in _import_env().items() if k != "PYTHONDONTWRITEBYTECODE"}
    for code in (sdk_code, app_code):  # compile and cache the bytecode first, as a deployment does
        subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, env=caching)
    python, sdk, app = [], [], []
    for _ in range(repeats):
        python.append(_import_seconds("pass"))
        sdk.append(_import_seconds(sdk_code))
        app.append(_import_seconds(app_code))
    app_modules = _loaded_modules(app_code)
    extra = {m.split(".")[0] for m in app_modules} - _loaded_packages(sdk_code) - {"function_app", "podcast"}
    stdlib = set(sys.stdlib_module_names)
    return ColdStart(
        min(sdk),
        min(app),
        min(python),
        tuple(sorted(p for p in extra if p not in stdlib and not p.startswith("_"))),
        tuple(m for m in SDK_MODULES if m not in app_modules),
    )


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


@dataclass
class Measured:
    """Everything one run measured."""

    wall_runs: list[Run]
    rss_runs: list[Run]
    conversations: list[Conversation] = field(default_factory=list)
    mp3_rss_runs: list[Run] = field(default_factory=list)
    """The shortest and longest RSS lengths again, narrated to MP3."""
    cpu: CpuRuns | None = None
    fleet: Fleet | None = None
    cold_start: ColdStart | None = None


def report(args: argparse.Namespace, measured: Measured) -> tuple[str, list[Check]]:
    """The printed report and the target checks."""
    wall_runs, rss_runs, conversations = measured.wall_runs, measured.rss_runs, measured.conversations
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
        wall_target = WALL_TARGETS.get(run.concurrency)
        if wall_target is not None:
            passed = ratio <= wall_target
            target = f"<= {wall_target:.2f}x  {_verdict(passed)}"
            checks.append(
                Check(
                    f"wall time at concurrency {run.concurrency}",
                    passed,
                    f"{ratio:.2f}x the ideal (target <= {wall_target:.2f}x)",
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
        "   ideal = speech seconds / speed / concurrency; segments = when the segments, started\n"
        "   longest first on the first free slot with no overhead, would end (the best they allow);\n"
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
    if len(measured.mp3_rss_runs) >= 2:
        first, last = measured.mp3_rss_runs[0], measured.mp3_rss_runs[-1]
        rows = [
            [
                f"{run.speech_seconds / 60:.1f} min",
                str(run.data["segments"]),
                _mb(run.max_rss_bytes),
                f"{(run.max_rss_bytes - first.max_rss_bytes) / 1e6:+.1f}",
                f"{(run.max_rss_bytes - shortest.max_rss_bytes) / 1e6:+.1f}",
                f"{run.wall_seconds:.1f}",
            ]
            for run in measured.mp3_rss_runs
        ]
        out.append("   The same as MP3 (encoded while the narration streams, staged as blocks):")
        out.append(
            _table(
                [
                    "audio",
                    "segments",
                    "peak RSS (MB)",
                    f"vs {first.minutes:g} min MP3 (MB)",
                    f"vs {shortest.minutes:g} min WAV (MB)",
                    "wall s",
                ],
                rows,
            )
        )
        mp3_growth = last.max_rss_bytes - first.max_rss_bytes
        mp3_passed = mp3_growth <= RSS_TARGET_BYTES
        out.append(
            f"   MP3 {last.minutes:g} min vs {first.minutes:g} min: {mp3_growth / 1e6:+.1f} MB "
            f"(target <= {RSS_TARGET_BYTES / 1e6:.0f} MB)  {_verdict(mp3_passed)}"
        )
        checks.append(
            Check(
                f"MP3 peak RSS {last.minutes:g} vs {first.minutes:g} min",
                mp3_passed,
                f"{mp3_growth / 1e6:+.1f} MB (target <= {RSS_TARGET_BYTES / 1e6:.0f} MB)",
            )
        )
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

    if measured.cpu is not None:
        out.extend(_cpu_report(measured.cpu, args.speed, checks))
    if measured.fleet is not None:
        out.extend(_fleet_report(measured.fleet, checks))
    if measured.cold_start is not None:
        out.extend(_cold_start_report(measured.cold_start, checks))

    out.append(
        "\nTargets" + (" (a --quick run: the targets are meant for the full run)" if args.quick else "")
    )
    for check in checks:
        out.append(f"  {_verdict(check.passed)}  {check.name}: {check.detail}")
    return "\n".join(out), checks


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _cpu_report(cpu: CpuRuns, speed: float, checks: list[Check]) -> list[str]:
    out = [
        f"\n4. Client CPU per minute of audio: {cpu.minutes:g} min at concurrency {cpu.concurrency}, "
        f"emulator paced at {speed:g} s/s; the least of {len(cpu.client)} alternating runs each"
    ]
    client = cpu.best(cpu.client)
    floor = cpu.best(cpu.floor)
    client_pm, floor_pm = cpu.client_per_minute(), cpu.floor_per_minute()
    ratio = client_pm / floor_pm
    passed = ratio <= CPU_TARGET
    minutes = float(floor["speech_seconds"]) / 60
    framing = float(floor["cpu_seconds"]) - float(floor["json_seconds"]) - float(floor["base64_seconds"])
    rows = [
        [
            "client (the app: SDK, fast path, fidelity, levelling, captions, Storage)",
            _ms(client_pm),
            f"{ratio:.2f}x",
            "",
            "",
        ],
        [
            "floor: receive + parse + decode",
            _ms(floor_pm),
            "1.00x",
            _mb(float(floor["socket_bytes"]) / minutes),
            "",
        ],
        [
            "  websocket framing and event loop",
            _ms(framing / minutes),
            "",
            "",
            f"{framing / float(floor['cpu_seconds']):.0%}",
        ],
        [
            "  JSON (orjson)",
            _ms(float(floor["json_seconds"]) / minutes),
            "",
            "",
            f"{float(floor['json_seconds']) / float(floor['cpu_seconds']):.0%}",
        ],
        [
            "  base64 (binascii)",
            _ms(float(floor["base64_seconds"]) / minutes),
            "",
            "",
            f"{float(floor['base64_seconds']) / float(floor['cpu_seconds']):.0%}",
        ],
    ]
    levelled = [float(f["level_cpu_seconds"]) for f in cpu.floor if f.get("level_cpu_seconds") is not None]
    if levelled:
        level_pm = min(levelled) / minutes
        rows.insert(
            1,
            [
                "  of the client: loudness levelling (the same audio, alone)",
                _ms(level_pm),
                f"{level_pm / floor_pm:.2f}x",
                "",
                f"{level_pm / client_pm:.0%}",
            ],
        )
    if cpu.floor_pybase64:
        fast_pm = cpu.floor_per_minute(cpu.floor_pybase64)
        rows.append(
            [
                "floor decoding with pybase64 (as the app does)",
                _ms(fast_pm),
                f"{fast_pm / floor_pm:.2f}x",
                "",
                "",
            ]
        )
        rows.append(["  client against it", "", f"{client_pm / fast_pm:.2f}x", "", ""])
    if cpu.floor_compressed:
        compressed = cpu.best(cpu.floor_compressed)
        compressed_pm = cpu.floor_per_minute(cpu.floor_compressed)
        rows.append(
            [
                "floor with permessage-deflate",
                _ms(compressed_pm),
                f"{compressed_pm / floor_pm:.2f}x",
                _mb(float(compressed["socket_bytes"]) / minutes),
                "",
            ]
        )
        rows.append(["  decompression (the difference)", _ms(compressed_pm - floor_pm), "", "", ""])
    out.append(
        _table(["", "CPU ms per audio min", "vs floor", "MB per audio min on the socket", "share"], rows)
    )
    out.append(
        f"   client/floor: {ratio:.2f}x (target <= {CPU_TARGET:.2f}x)  {_verdict(passed)}; "
        f"{client['narration_cpu_seconds']:.2f} s vs {floor['cpu_seconds']:.2f} s CPU for "
        f"{minutes:.1f} min of audio ({floor['messages']:,} messages, {floor['audio_deltas']:,} audio deltas)"
    )
    out.append(
        "   floor = a bare websockets client with the SDK's websocket settings asking for the same segments\n"
        "   and only parsing (orjson) and base64-decoding (binascii) each message; framing = the rest"
    )
    if cpu.floor_compressed:
        compressed = cpu.best(cpu.floor_compressed)
        saved = 1 - float(compressed["socket_bytes"]) / float(floor["socket_bytes"])
        cost = cpu.floor_per_minute(cpu.floor_compressed) - floor_pm
        out.append(
            f"   permessage-deflate: {saved:.0%} fewer bytes for {_ms(cost)} ms more CPU per audio minute "
            f"({cost / floor_pm:+.0%} of the floor); at 1x real time a stream is "
            f"{float(floor['socket_bytes']) / float(floor['speech_seconds']) / 1000:.0f} kB/s uncompressed"
        )
    checks.append(
        Check("client CPU per audio minute", passed, f"{ratio:.2f}x the floor (target <= {CPU_TARGET:.2f}x)")
    )
    return out


def _fleet_report(fleet: Fleet, checks: list[Check]) -> list[str]:
    ratios = fleet.ratios()
    worst = max(ratios)
    passed = worst <= FLEET_TARGET
    streams = fleet.narrations * fleet.concurrency
    out = [
        f"\n5. {fleet.narrations} narrations at once in one process ({fleet.minutes:g} min each, concurrency "
        f"{fleet.concurrency} each: {streams} streams), emulator paced at {fleet.speed:g} s/s"
    ]
    rows = []
    for index, (narration, ratio) in enumerate(zip(fleet.data["narrations"], ratios, strict=True)):
        ideal = segments_makespan(narration["segment_speech_seconds"], fleet.concurrency) / fleet.speed
        rows.append(
            [
                str(index + 1),
                str(len(narration["segment_speech_seconds"])),
                f"{sum(narration['segment_speech_seconds']):.0f}",
                f"{narration['wall_seconds']:.2f}",
                f"{ideal:.2f}",
                f"{ratio:.2f}x",
            ]
        )
    out.append(_table(["narration", "segments", "speech s", "wall s", "ideal s", "wall/ideal"], rows))
    cpu = float(fleet.data["narration_cpu_seconds"])
    wall = float(fleet.data["wall_seconds"])
    emulator = f"{fleet.emulator_cpu_seconds / wall:.0%}" if fleet.emulator_cpu_seconds is not None else "n/a"
    out.append(
        f"   the slowest {worst:.2f}x its ideal (target <= {FLEET_TARGET:.2f}x: no stream falls behind)  "
        f"{_verdict(passed)}; client CPU {cpu:.2f} s in {wall:.2f} s ({cpu / wall:.0%} of a core), "
        f"emulator {emulator} of a core"
    )
    checks.append(
        Check(
            f"{fleet.narrations} narrations at once keep up",
            passed,
            f"slowest {worst:.2f}x its ideal (target <= {FLEET_TARGET:.2f}x)",
        )
    )
    return out


def _cold_start_report(cold: ColdStart, checks: list[Check]) -> list[str]:
    passed = cold.ratio <= COLD_START_TARGET and not cold.extra_packages and not cold.unused_sdks
    out = ["\n6. Cold start: a fresh interpreter's import (the least of several, bytecode cached)"]
    out.append(
        _table(
            ["import", "seconds", "vs SDKs"],
            [
                ["nothing (python -c pass)", f"{cold.python_seconds:.3f}", ""],
                ["the SDKs alone: " + ", ".join(SDK_MODULES), f"{cold.sdk_seconds:.3f}", "1.00x"],
                ["function_app", f"{cold.app_seconds:.3f}", f"{cold.ratio:.3f}x"],
            ],
        )
    )
    extra = ", ".join(cold.extra_packages) or "none"
    out.append(
        f"   function_app/SDKs {cold.ratio:.3f}x (target <= {COLD_START_TARGET:.2f}x); third-party packages "
        f"beyond the SDKs': {extra}; SDKs it does not load: {', '.join(cold.unused_sdks) or 'none'}  "
        f"{_verdict(passed)}"
    )
    checks.append(
        Check(
            "cold start", passed, f"{cold.ratio:.3f}x the SDKs' import (target <= {COLD_START_TARGET:.2f}x)"
        )
    )
    return out


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
        "--no-rss-mp3",
        dest="rss_mp3",
        action="store_false",
        help="skip the MP3 peak RSS runs (by default the shortest and longest RSS lengths again as MP3)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smaller run: 10 minutes timed, 2/5/10 minutes for RSS and tokens",
    )
    parser.add_argument(
        "--cpu-minutes", type=float, default=10.0, help="audio of the client/floor CPU runs (default 10)"
    )
    parser.add_argument(
        "--cpu-concurrency", type=int, default=4, help="concurrency of the CPU runs (default 4)"
    )
    parser.add_argument(
        "--cpu-repeats",
        type=int,
        default=5,
        help="alternating client/floor runs, least taken (default 5: on 2 shared cores a run "
        "varies by 20 %%, the least of 3 by about 10 %%; 0: none)",
    )
    parser.add_argument(
        "--fleet-narrations",
        type=int,
        default=8,
        help="narrations at once in one process (default 8; 0: none)",
    )
    parser.add_argument(
        "--fleet-minutes", type=float, default=7.0, help="audio of each (default 7: 4 segments)"
    )
    parser.add_argument(
        "--fleet-concurrency",
        type=int,
        default=1,
        help="NARRATION_CONCURRENCY of the fleet (default 1: 8 streams, the load of concurrency 8)",
    )
    parser.add_argument(
        "--fleet-speed", type=float, default=None, help="pace of the fleet's emulator (default --speed)"
    )
    parser.add_argument(
        "--import-repeats",
        type=int,
        default=11,
        help="fresh interpreters per import timing (default 11; 0: none)",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--json", type=Path, default=None, help="also write every measurement to this file")
    parser.add_argument(
        "--trace-memory",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="trace each RSS run's allocations (tracemalloc, slow) into a report per run in FOLDER",
    )
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
    args: argparse.Namespace, wall_runs: list[Run], rss_runs: list[Run], segment_words: int
) -> Measured:
    """Fill in every run (each in a fresh worker process), then the CPU comparison, the fleet,
    the baseline conversations and the cold start."""
    measured = Measured(wall_runs, rss_runs)
    if args.rss_mp3:
        lengths = sorted({min(r.minutes for r in rss_runs), max(r.minutes for r in rss_runs)})
        measured.mp3_rss_runs = [Run(m, args.rss_concurrency, format="mp3") for m in lengths]
    with (
        tempfile.TemporaryDirectory(prefix="podcast-bench-") as folder,
        services(Path(folder), args.speed) as (azurite, paced, instant),
    ):
        done: dict[tuple[float, int, str], Run] = {}
        for run in wall_runs + rss_runs + measured.mp3_rss_runs:
            key = (run.minutes, run.concurrency, run.format)
            if key in done:
                run.data, run.emulator_cpu_seconds = done[key].data, done[key].emulator_cpu_seconds
                continue
            print(
                f"  narrating {run.minutes:g} min ({run.format}) at concurrency {run.concurrency} ...",
                end=" ",
                flush=True,
            )
            traced = any(run is r for r in rss_runs + measured.mp3_rss_runs)
            run_worker(run, paced, azurite, args.trace_memory if traced else None)
            done[key] = run
            print(f"{run.wall_seconds:.1f} s", flush=True)
        if args.cpu_repeats:
            cpu = measured.cpu = CpuRuns(args.cpu_minutes, args.cpu_concurrency)
            print(
                f"  client and floor, {cpu.minutes:g} min at concurrency {cpu.concurrency}, "
                f"{args.cpu_repeats} times ...",
                end=" ",
                flush=True,
            )
            for _ in range(args.cpu_repeats):
                for module, extra, into in (
                    ("benchmarks.worker", (), cpu.client),
                    ("benchmarks.floor", ("--level",), cpu.floor),
                    ("benchmarks.floor", ("--compression",), cpu.floor_compressed),
                    ("benchmarks.floor", ("--pybase64",), cpu.floor_pybase64),
                ):
                    into.append(run_process(module, cpu.minutes, cpu.concurrency, paced, azurite, extra)[0])
            print("done", flush=True)
        if args.fleet_narrations:
            fleet = measured.fleet = Fleet(
                args.fleet_narrations,
                args.fleet_minutes,
                args.fleet_concurrency,
                args.fleet_speed or args.speed,
            )
            print(f"  {fleet.narrations} narrations at once at {fleet.speed:g} s/s ...", end=" ", flush=True)
            with contextlib.ExitStack() as stack:
                emulator = paced
                if fleet.speed != args.speed:
                    emulator = EmulatorProcess(fleet.speed, Path(folder) / "emulator-fleet.log")
                    emulator.start()
                    stack.callback(emulator.stop)
                fleet.data, fleet.emulator_cpu_seconds = run_process(
                    "benchmarks.worker",
                    fleet.minutes,
                    fleet.concurrency,
                    emulator,
                    azurite,
                    ("--narrations", str(fleet.narrations)),
                )
            print(f"{fleet.data['wall_seconds']:.1f} s", flush=True)
        print("  one conversation for everything (instant emulator) ...", end=" ", flush=True)
        measured.conversations = [
            asyncio.run(one_conversation(instant, r.minutes, segment_words)) for r in rss_runs
        ]
        print("done", flush=True)
    if args.import_repeats:
        print("  cold start ...", end=" ", flush=True)
        measured.cold_start = measure_cold_start(args.import_repeats)
        print("done", flush=True)
    return measured


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.concurrency = sorted({1, *args.concurrency})  # concurrency 1 is what the others compare with
    if args.quick:
        args.minutes, args.rss_minutes = 10.0, [2.0, 5.0, 10.0]
        args.cpu_minutes = min(args.cpu_minutes, 5.0)
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
        measured = measure(args, wall_runs, rss_runs, segment_words)
    except (AzuriteNotInstalledError, RuntimeError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    text, checks = report(args, measured)
    print(text)
    print(f"\nFinished in {time.monotonic() - started:.0f} s.")
    if args.json is not None:
        cpu, fleet = measured.cpu, measured.fleet
        args.json.write_text(
            json.dumps(
                {
                    "speed": args.speed,
                    "wall": [{"concurrency": r.concurrency, **r.data} for r in wall_runs],
                    "rss": [{"concurrency": r.concurrency, **r.data} for r in rss_runs],
                    "rss_mp3": [{"concurrency": r.concurrency, **r.data} for r in measured.mp3_rss_runs],
                    "one_conversation": [c.__dict__ for c in measured.conversations],
                    "cpu": None if cpu is None else cpu.__dict__,
                    "fleet": None if fleet is None else fleet.__dict__,
                    "cold_start": None if measured.cold_start is None else measured.cold_start.__dict__,
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
