"""The CPU floor of receiving a narration, in a fresh process, for :mod:`benchmarks.longform`.

``python -m benchmarks.floor --minutes 30`` asks the emulator of the app settings in the
environment for exactly what the app would (the same segments, instructions and user
messages, ``NARRATION_CONCURRENCY`` sessions at once, in segment order) over a bare
``websockets`` connection with the SDK's websocket settings (no ``max_size``; compression
off unless ``--compression``), and does nothing with the answers but the least any client
must: receive each message, parse its JSON (orjson) and base64-decode the audio
(``binascii.a2b_base64``). No SDK, no storage, no fidelity check.

It prints one JSON line: the CPU time of the timed part (``time.process_time``), and its
breakdown: JSON parsing and base64 decoding (each timed around its own calls with
``time.thread_time``), and the rest (the websocket layer: reading frames, unmasking, the
event loop, and with ``--compression`` inflating), plus the bytes received on the socket
and in the messages. An untimed warm-up response comes first, as in :mod:`benchmarks.worker`.
With ``--pybase64`` it decodes with ``pybase64`` (SIMD), as the app does, instead: a floor
that leaves the app no cheaper decoder to gain by. With ``--level`` it keeps each session's
audio and, after the timed part, levels it as the app does
(:func:`podcast.audio.loudness.level_in_place`), timed on its own (``level_cpu_seconds``):
the share of the client's CPU that loudness levelling takes.
"""

from __future__ import annotations

import argparse
import asyncio
import binascii
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pybase64
from websockets.asyncio.client import ClientConnection, connect

from benchmarks.texts import prose_for_minutes
from benchmarks.worker import WARM_UP_TEXT
from podcast.engine import audio
from podcast.engine.instructions import build_instructions, user_message
from podcast.engine.realtime import MAX_OUTPUT_TOKENS_LIMIT
from podcast.engine.segments import split_text
from podcast.models import NarrationRequest, parse_request
from podcast.settings import Settings


@dataclass
class Tally:
    """What the timed part received and what parsing and decoding it cost."""

    messages: int = 0
    audio_deltas: int = 0
    message_bytes: int = 0
    socket_bytes: int = 0
    pcm_bytes: int = 0
    json_seconds: float = 0.0
    base64_seconds: float = 0.0
    decode: Any = None
    """The base64 decoder (``binascii.a2b_base64`` unless ``--pybase64``)."""
    audio: dict[str, list[bytes]] = field(default_factory=dict)
    """Each session's PCM, kept only to level it afterwards (``--level``)."""
    keep_audio: bool = False


def _count_socket_bytes(connection: ClientConnection, tally: Tally) -> None:
    """Count the bytes the transport hands the connection (compressed, frame headers included)."""
    received = connection.data_received

    def counting(data: bytes) -> None:
        tally.socket_bytes += len(data)
        received(data)

    connection.data_received = counting  # type: ignore[method-assign]


def session_config(request: NarrationRequest) -> dict[str, Any]:
    """The narrator's ``session.update`` session (podcast.engine.realtime)."""
    return {
        "type": "realtime",
        "output_modalities": ["audio"],
        "instructions": build_instructions(request),
        "max_output_tokens": MAX_OUTPUT_TOKENS_LIMIT,
        "audio": {
            "input": {"turn_detection": None},
            "output": {"voice": request.voice, "format": {"type": "audio/pcm", "rate": audio.SAMPLE_RATE}},
        },
    }


async def receive_one(
    url: str, api_key: str, request: NarrationRequest, text: str, compression: bool, tally: Tally
) -> None:
    """One session: configure, send the text, ask for a response, receive until ``response.done``."""
    async with connect(
        url,
        additional_headers={"Authorization": f"Bearer {api_key}"},
        max_size=None,
        compression="deflate" if compression else None,
        user_agent_header=None,
    ) as connection:
        _count_socket_bytes(connection, tally)
        content = [{"type": "input_text", "text": user_message(request, text)}]
        for event in (
            {"type": "session.update", "session": session_config(request)},
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": content},
            },
            {"type": "response.create"},
        ):
            await connection.send(json.dumps(event))
        clock = time.thread_time
        while True:
            message = await connection.recv(decode=False)
            started = clock()
            event = orjson.loads(message)
            parsed = clock()
            tally.json_seconds += parsed - started
            tally.messages += 1
            tally.message_bytes += len(message)
            kind = event.get("type")
            if kind == "response.output_audio.delta":
                pcm = (
                    binascii.a2b_base64(event["delta"], strict_mode=True)
                    if tally.decode is None
                    else tally.decode(event["delta"], validate=True)
                )
                tally.base64_seconds += clock() - parsed
                tally.audio_deltas += 1
                tally.pcm_bytes += len(pcm)
                if tally.keep_audio:
                    tally.audio.setdefault(text, []).append(pcm)
            elif kind == "response.done":
                return
            elif kind == "error":
                raise RuntimeError(f"the emulator sent an error: {event.get('error')}")


def level_seconds(tally: Tally) -> float:
    """CPU seconds of the app's loudness levelling (:func:`podcast.audio.loudness.level_in_place`)
    of each session's audio, one after another, as the app levels each segment."""
    from podcast.audio.loudness import level_in_place

    started = time.process_time()
    for pieces in tally.audio.values():
        level_in_place(bytearray().join(pieces))
    return time.process_time() - started


async def receive_all(
    minutes: float, seed: int, compression: bool, level: bool = False, fast_base64: bool = False
) -> dict[str, Any]:
    settings = Settings.from_env()
    realtime, narration = settings.realtime, settings.narration
    assert realtime.api_key, "the floor talks to the emulator with an API key"
    url = f"{realtime.endpoint}/realtime?model={realtime.deployment}"
    limits = settings.limits
    warm_up = parse_request(json.dumps({"text": WARM_UP_TEXT}).encode(), limits)
    await receive_one(url, realtime.api_key, warm_up, warm_up.text, compression, Tally())

    request = parse_request(
        json.dumps({"text": prose_for_minutes(minutes, seed=seed), "title": "Benchmark"}).encode(), limits
    )
    segments = split_text(request.text, narration.segment_max_words, parallelism=narration.concurrency)
    slots = asyncio.Semaphore(narration.concurrency)
    tally = Tally(keep_audio=level, decode=pybase64.b64decode if fast_base64 else None)

    async def one(text: str) -> None:
        async with slots:
            await receive_one(url, realtime.api_key or "", request, text, compression, tally)

    started_cpu, started = time.process_time(), time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for segment in segments:
            group.create_task(one(segment.text))
    cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started
    return {
        "level_cpu_seconds": level_seconds(tally) if level else None,
        "minutes_requested": minutes,
        "segments": len(segments),
        "compression": compression,
        "pybase64": fast_base64,
        "concurrency": narration.concurrency,
        "speech_seconds": audio.duration_seconds(tally.pcm_bytes),
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "json_seconds": tally.json_seconds,
        "base64_seconds": tally.base64_seconds,
        "messages": tally.messages,
        "audio_deltas": tally.audio_deltas,
        "message_bytes": tally.message_bytes,
        "socket_bytes": tally.socket_bytes,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__)
    parser.add_argument("--minutes", type=float, required=True, help="minutes of speech to receive")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated prose")
    parser.add_argument("--compression", action="store_true", help="negotiate permessage-deflate")
    parser.add_argument(
        "--level", action="store_true", help="then level each session's audio as the app does (timed apart)"
    )
    parser.add_argument("--pybase64", action="store_true", help="decode with pybase64, as the app does")
    args = parser.parse_args(argv)
    result = asyncio.run(receive_all(args.minutes, args.seed, args.compression, args.level, args.pybase64))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
