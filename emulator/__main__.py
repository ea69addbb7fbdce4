"""Run the Realtime API emulator stand-alone: ``python -m emulator --port 8765``.

Prints the endpoint and the settings that point the app at it, logs one line per
connection and response (ids, sizes, durations; never text) to stderr, and stops cleanly
on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from emulator.faults import Fault, FaultKind, parse_fault
from emulator.server import (
    DEFAULT_API_KEY,
    DEFAULT_MODELS,
    PACE_ENV,
    PACES,
    Pace,
    RealtimeEmulator,
    parse_pace,
)
from emulator.speech import ENGINE_NAMES, SpeechEngineUnavailable
from podcast.settings import API_KEY_SETTING, DEPLOYMENT_SETTING, ENDPOINT_SETTING


def _speed(value: str) -> float:
    """Seconds of audio per second; ``inf`` for 'instant' (``None`` is "not given")."""
    if value.lower() == "instant":
        return math.inf
    speed = float(value)
    if speed <= 0:
        raise argparse.ArgumentTypeError("speed must be positive, or 'instant'")
    return speed


def _pace(value: str) -> Pace:
    try:
        return parse_pace(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fault(value: str) -> Fault:
    try:
        return parse_fault(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emulator",
        description="Local emulator of the Azure OpenAI GA Realtime WebSocket API.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default 0)")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument(
        "--api-key", default=DEFAULT_API_KEY, help=f"key clients must send (default {DEFAULT_API_KEY})"
    )
    auth.add_argument("--no-auth", action="store_true", help="accept any credentials")
    parser.add_argument(
        "--pace",
        type=_pace,
        default=None,
        help=f"{' or '.join(PACES)} (about 3.5 s of audio a second, first audio after 0.5 s) or a "
        f"speed such as 4x; default ${PACE_ENV}, else instant. --speed and --first-audio-delay "
        "override its parts",
    )
    parser.add_argument(
        "--speed",
        type=_speed,
        default=None,
        help="seconds of audio sent per wall-clock second, or 'instant' (default: the pace's)",
    )
    parser.add_argument("--engine", choices=ENGINE_NAMES, default="auto", help="speech engine (default auto)")
    parser.add_argument(
        "--first-audio-delay",
        type=float,
        default=None,
        help="seconds before a response's first audio (default: the pace's)",
    )
    parser.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="KIND[:TIMES[:RETRY_AFTER[:NTH]]]",
        help="inject a fault (repeatable); TIMES is a count or 'always'; RETRY_AFTER sets the wait of "
        "handshake_429/503 and of the throttling faults; NTH is the first matching response it fires on. "
        f"Kinds: {', '.join(kind.value for kind in FaultKind)}",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        help=f"deployment name to accept (repeatable; default {', '.join(DEFAULT_MODELS)})",
    )
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser


def resolve_pace(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[float | None, float]:
    """``(speed, first_audio_delay)`` from ``--pace`` (else ``$REALTIME_EMULATOR_PACE``,
    else instant), with ``--speed`` and ``--first-audio-delay`` overriding its parts.
    Raises ``ValueError`` for a malformed environment value."""
    pace: Pace = args.pace if args.pace is not None else parse_pace(env.get(PACE_ENV, "") or "instant")
    speed = pace.speed if args.speed is None else (None if math.isinf(args.speed) else args.speed)
    delay = pace.first_audio_delay if args.first_audio_delay is None else args.first_audio_delay
    return speed, delay


async def serve(emulator: RealtimeEmulator, models: Sequence[str], api_key: str | None) -> None:
    """Start ``emulator``, print how to reach it, and run until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    async with emulator:
        print(f"Realtime API emulator listening on {emulator.websocket_base_url}/realtime")
        print(
            f"engine={emulator.engine_name} speed={emulator.speed or 'instant'} "
            f"first_audio_delay={emulator.first_audio_delay:g}s models={','.join(models)}"
        )
        for fault in emulator.pending_faults:
            print(f"fault: {fault.kind.value} times={fault.times if fault.times is not None else 'always'}")
        print("Settings for the app:")
        print(f"{ENDPOINT_SETTING}={emulator.url}")
        print(f"{API_KEY_SETTING}={api_key if api_key is not None else 'any-value'}")
        print(f"{DEPLOYMENT_SETTING}={models[0]}", flush=True)
        await stop.wait()
        logging.getLogger("emulator").info("stopping")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    models = tuple(args.model or DEFAULT_MODELS)
    api_key = None if args.no_auth else args.api_key
    try:
        speed, delay = resolve_pace(args, os.environ)
    except ValueError as exc:
        print(f"error: {PACE_ENV}: {exc}", file=sys.stderr)
        return 2
    try:
        emulator = RealtimeEmulator(
            host=args.host,
            port=args.port,
            api_key=api_key,
            models=models,
            speed=speed,
            engine=args.engine,
            first_audio_delay=delay,
            faults=args.fault,
        )
    except SpeechEngineUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(emulator, models, api_key))
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
