"""The main job, end to end: narrate a sample text through the HTTP trigger's own code.

Run by ``scripts/demo.sh``, which starts Azurite and the Realtime emulator and sets the
app settings. Calls ``function_app.create_narration`` exactly as the Functions host would (through
:mod:`testkit.host`),
prints the SAS URL and the transcript, then downloads the WAV through that URL and checks
it. Exits non-zero if any step fails.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import function_app
from podcast.engine import audio
from testkit import host

SAMPLE = {
    "text": (
        "Welcome to the podcast service. You send us text, and we send back a link to spoken audio. "
        "Behind the scenes, a realtime voice model reads your words aloud, exactly as written, "
        "and the recording is stored safely until you download it."
    ),
    "voice": "marin",
    "style": "podcast",
    "title": "Podcast service demo",
}


async def narrate() -> tuple[int, dict[str, object]]:
    request = host.http_request("POST", "narrations", json=SAMPLE)
    try:
        answer = await host.call_http(function_app.create_narration, request)
    finally:
        await function_app.graph.aclose()
    return answer.status, answer.json()


def main() -> int:
    status, body = asyncio.run(narrate())
    if status != 200:
        print(f"narration failed with HTTP {status}: {json.dumps(body, indent=2)}", file=sys.stderr)
        return 1
    url = str(body["audio_url"])
    print(f"SAS URL:    {url}")
    print(f"Expires at: {body['expires_at']}")
    print(f"Transcript: {body['transcript']}")
    with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 - the SAS URL we just made
        wav = answer.read()
    info = audio.wav_info(wav)
    out = Path(".run/demo-narration.wav")
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(wav)
    print(
        f"Downloaded: {len(wav):,} bytes through the SAS URL -> {out}: {info.duration_seconds:.2f} s, "
        f"{info.sample_rate} Hz, {info.sample_width * 8}-bit, {info.channels} channel"
    )
    if (info.sample_rate, info.sample_width, info.channels) != (24_000, 2, 1):
        print("the WAV is not 24 kHz 16-bit mono", file=sys.stderr)
        return 1
    if abs(info.duration_seconds - float(str(body["duration_seconds"]))) > 0.001:
        print("the WAV's duration does not match the response", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
