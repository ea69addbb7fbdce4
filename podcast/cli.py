"""Command line: ``python -m podcast narrate ...``.

Narrates with the configured Azure OpenAI endpoint (or the local emulator) and writes a
WAV file, printing the transcript, duration and token usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from podcast.app import App
from podcast.engine import audio
from podcast.engine.instructions import DEFAULT_READ_INSTRUCTIONS
from podcast.engine.responses import SpokenText
from podcast.errors import ConfigurationError, PodcastError
from podcast.settings import ENDPOINT_SETTING
from podcast.voices import DEFAULT_VOICE, REALTIME_VOICES

EMULATOR_HINT = """\
To narrate without Azure, start the local Realtime API emulator in another terminal:

    python -m emulator --host 127.0.0.1 --port 8765

and point the settings at it:

    export AZURE_OPENAI_AUDIO_ENDPOINT=http://127.0.0.1:8765
    export AZURE_OPENAI_AUDIO_API_KEY=emulator-key
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m podcast", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    narrate = commands.add_parser("narrate", help="narrate text into a WAV file")
    source = narrate.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the text to narrate")
    source.add_argument("--file", type=Path, help="a UTF-8 text file to narrate ('-' for standard input)")
    narrate.add_argument("--voice", default=DEFAULT_VOICE, choices=REALTIME_VOICES, help="realtime voice")
    narrate.add_argument("--instructions", help="replace the default verbatim-narrator instructions")
    narrate.add_argument("--out", type=Path, default=Path("narration.wav"), help="WAV file to write")
    narrate.add_argument("--json", action="store_true", help="print the result as JSON")
    narrate.add_argument("-v", "--verbose", action="store_true", help="log protocol progress to stderr")
    return parser


def _read_text(args: argparse.Namespace) -> str:
    if args.text is not None:
        return str(args.text)
    if str(args.file) == "-":
        return sys.stdin.read()
    return Path(args.file).read_text(encoding="utf-8-sig")


async def _narrate(args: argparse.Namespace, text: str) -> SpokenText:
    app = App.from_env()
    try:
        return await app.narrator.narrate(
            text, voice=args.voice, instructions=args.instructions or DEFAULT_READ_INSTRUCTIONS
        )
    finally:
        await app.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code (0 ok, 1 failed, 2 usage)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    try:
        text = _read_text(args)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read the text: {exc}", file=sys.stderr)
        return 2
    try:
        narration = asyncio.run(_narrate(args, text))
    except ConfigurationError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.setting == ENDPOINT_SETTING:
            print(EMULATOR_HINT, file=sys.stderr)
        return 2
    except PodcastError as exc:
        print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
        return 1
    args.out.write_bytes(audio.pcm_to_wav(narration.audio))
    summary = {
        "out": str(args.out),
        "duration_seconds": round(narration.duration_seconds, 3),
        "voice": narration.voice,
        "attempts": narration.attempts,
        "usage": narration.usage.model_dump(mode="json"),
        "transcript": narration.transcript,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(narration.transcript)
        print(
            f"\nwrote {args.out}: {narration.duration_seconds:.2f} s, voice {narration.voice}, "
            f"{narration.usage.input_tokens} input + {narration.usage.output_tokens} output tokens"
        )
    return 0
