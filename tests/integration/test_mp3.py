"""MP3 narrations: one encoder across the narration, staged as blocks on Azurite, with an
Info/LAME frame, decoded by ffmpeg (a decoder the project does not use); and ``format``
through the HTTP function."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import shutil
import subprocess
import tempfile
import tracemalloc
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from azure.storage.queue import QueueClient

import function_app
from podcast.audio.mp3 import Mp3Stream
from podcast.errors import StorageError
from podcast.settings import StorageSettings
from podcast.storage.blobs import BlobStore
from podcast.storage.mp3 import Mp3BlockWriter
from testkit import host
from testkit.azurite import AzuriteServer
from testkit.decoding import mp3_chapters
from testkit.storage import FAST_FAILING, http
from testkit.storage_faults import StorageSwitch, SwitchedTransport

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (scripts/setup.sh)")

_MINUTE = timedelta(minutes=1)
TEXT = "Welcome to the show. Today we talk about rivers, and why they bend the way they do."


def decode(mp3: bytes) -> np.ndarray:
    """PCM16 samples ffmpeg decodes from ``mp3`` (gapless: encoder delay and padding dropped;
    from a file, since ffmpeg drops the end padding only when it can seek)."""
    with tempfile.NamedTemporaryFile(suffix=".mp3") as file:
        file.write(mp3)
        file.flush()
        done = subprocess.run(
            ["ffmpeg", "-v", "error", "-i", file.name, "-f", "s16le", "-ac", "1", "-ar", "24000", "pipe:1"],
            capture_output=True,
            check=True,
        )
    return np.frombuffer(done.stdout, "<i2")


def probe(mp3: bytes) -> dict[str, Any]:
    """What ffprobe reads from ``mp3`` as a file (its duration comes from the Info frame)."""
    with tempfile.NamedTemporaryFile(suffix=".mp3") as file:
        file.write(mp3)
        file.flush()
        done = subprocess.run(
            ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", file.name],
            capture_output=True,
            check=True,
        )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def tone_pieces(count: int, seconds: float) -> list[bytes]:
    """``count`` pieces of a continuous gliding tone: any gap or jump at a seam shows."""
    total = int(count * seconds * 24_000)
    t = np.arange(total) / 24_000
    signal = (9000 * np.sin(2 * np.pi * (220 * t + 40 * t**2))).astype("<i2")
    cut = np.linspace(0, total, count + 1).astype(int)
    return [signal[a:b].tobytes() for a, b in itertools.pairwise(cut)]


async def test_pieces_in_any_order_make_one_stream_identical_to_encoding_it_whole(
    blob_store: BlobStore,
) -> None:
    pieces = [*tone_pieces(7, 0.9), b""]  # the last pause is empty, as the engine stages it
    writer = Mp3BlockWriter(blob_store, "order.mp3", bitrate_kbps=64)
    for index in (5, 2, 7, 0, 6, 1, 4, 3):
        await writer.stage(index, pieces[index])
    samples = await writer.commit(download_name="order.mp3", metadata={"narration_id": "x"}) // 2

    _, stored, headers = http("GET", (await blob_store.read_url("order.mp3", expires_in=_MINUTE))[0])
    whole = Mp3Stream(64)
    expected = whole.encode(b"".join(pieces)) + whole.flush()
    assert headers["content-type"] == "audio/mpeg"
    assert stored[len(whole.info_frame()) :] == expected  # the seams are inside one encoder
    assert stored[: len(whole.info_frame())] == whole.info_frame()
    decoded = decode(stored)
    assert len(decoded) == samples == sum(len(p) for p in pieces) // 2  # exact, gapless
    original = np.frombuffer(b"".join(pieces), "<i2").astype(float)
    error = decoded.astype(float) - original
    assert np.sqrt(np.mean(error**2)) < 0.05 * np.sqrt(np.mean(original**2))  # aligned, no gap


async def test_a_piece_staged_twice_is_refused(blob_store: BlobStore) -> None:
    writer = Mp3BlockWriter(blob_store, "twice.mp3", bitrate_kbps=64)
    await writer.stage(1, bytes(480))
    with pytest.raises(ValueError, match="already staged"):
        await writer.stage(1, bytes(480))
    assert not await blob_store.exists("twice.mp3")


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_pieces_staged_at_once_in_any_order_make_the_same_stream(
    blob_store: BlobStore, seed: int
) -> None:
    """As the engine stages them: speech at 2i and an empty piece at 2i + 1, from tasks that
    finish in any order, some while the encoder is busy with an earlier piece."""
    speech = tone_pieces(9, 1.7)
    pieces = [piece for one in speech for piece in (one, b"")]
    order = random.Random(seed)
    delays = [order.uniform(0, 0.05) for _ in pieces]
    writer = Mp3BlockWriter(blob_store, f"at-once-{seed}.mp3", bitrate_kbps=64)

    async def stage(index: int) -> None:
        await asyncio.sleep(delays[index])
        await writer.stage(index, pieces[index])

    await asyncio.gather(*(stage(index) for index in order.sample(range(len(pieces)), len(pieces))))
    await writer.commit(download_name="x.mp3", metadata={})

    _, stored, _ = http("GET", (await blob_store.read_url(f"at-once-{seed}.mp3", expires_in=_MINUTE))[0])
    whole = Mp3Stream(64)
    expected = whole.encode(b"".join(pieces)) + whole.flush()
    assert stored == whole.info_frame() + expected


async def test_a_piece_out_of_turn_is_let_go_while_the_encoder_is_busy(blob_store: BlobStore) -> None:
    """Piece 0 takes the encoder for a while; pieces after it are written to the file and
    their calls return meanwhile (the narration's audio is let go, its stream goes on), and
    the call in turn encodes them after its own."""
    first, second, third = tone_pieces(1, 240.0)[0], *tone_pieces(2, 2.0)
    writer = Mp3BlockWriter(blob_store, "busy.mp3", bitrate_kbps=64)
    in_turn = asyncio.create_task(writer.stage(0, first))
    await asyncio.sleep(0)  # it holds the encoder now
    await writer.stage(2, third)
    await writer.stage(1, second)
    assert not in_turn.done(), "the pieces out of turn waited for the encoder"
    await in_turn
    assert writer.mp3_bytes > 0.95 * 244 * 64_000 / 8  # all three were encoded by the call in turn
    await writer.commit(download_name="busy.mp3", metadata={})
    _, stored, _ = http("GET", (await blob_store.read_url("busy.mp3", expires_in=_MINUTE))[0])
    whole = Mp3Stream(64)
    expected = whole.encode(first + second + third) + whole.flush()
    assert stored == whole.info_frame() + expected


async def test_storage_failing_mid_stream_breaks_the_writer_and_commits_nothing(
    storage_settings: StorageSettings,
) -> None:
    """The second block's Put Block is refused (the SDK retries, then gives up): that call
    raises, and the writer refuses the pieces and the commit after it, instead of committing
    a stream with a hole."""
    switch = StorageSwitch()
    store = BlobStore.from_settings(
        storage_settings, options=FAST_FAILING, transport=SwitchedTransport(switch)
    )
    try:
        await store.ensure_container()
        writer = Mp3BlockWriter(store, "outage.mp3", bitrate_kbps=64)
        switch.stop_at("PUT", "/outage.mp3", skip=1)
        with pytest.raises(StorageError):
            await writer.stage(0, tone_pieces(1, 300.0)[0])  # about 2.3 blocks of MP3
        switch.start()
        with pytest.raises(RuntimeError, match="failed earlier"):
            await writer.stage(1, bytes(4800))
        with pytest.raises(RuntimeError, match="failed earlier"):
            await writer.commit(download_name="outage.mp3", metadata={})
        assert not await store.exists("outage.mp3")
    finally:
        await store.close()


@pytest.mark.parametrize("bitrate", [32, 64, 160])
async def test_players_see_the_exact_duration_and_bitrate(blob_store: BlobStore, bitrate: int) -> None:
    writer = Mp3BlockWriter(blob_store, f"b{bitrate}.mp3", bitrate_kbps=bitrate)
    pieces = tone_pieces(2, 2.5)
    for index, piece in enumerate(pieces):
        await writer.stage(index, piece)
    await writer.commit(download_name="x.mp3", metadata={})
    _, stored, _ = http("GET", (await blob_store.read_url(f"b{bitrate}.mp3", expires_in=_MINUTE))[0])

    info = probe(stored)
    (stream,) = info["streams"]
    assert (stream["codec_name"], stream["sample_rate"], stream["channels"]) == ("mp3", "24000", 1)
    assert int(stream["bit_rate"]) == bitrate * 1000
    frames_seconds = float(info["format"]["duration"])
    # The Info frame count in whole frames: the encoder delay and padding are within three frames.
    assert 5.0 <= frames_seconds <= 5.0 + 3 * 576 / 24_000
    assert len(decode(stored)) == 5 * 24_000


async def test_memory_does_not_grow_with_the_length(blob_store: BlobStore) -> None:
    """Eight minutes in 30-second pieces, staged last first (the worst order): the peak is
    about one piece and one block, not the audio."""
    piece = tone_pieces(1, 30.0)[0]  # 1.44 MB of PCM
    writer = Mp3BlockWriter(blob_store, "long.mp3", bitrate_kbps=64)
    tracemalloc.start()
    try:
        for index in reversed(range(16)):
            await writer.stage(index, piece)
        await writer.commit(download_name="long.mp3", metadata={})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert writer.mp3_bytes > 3_800_000  # 8 minutes at 64 kbit/s
    assert peak < 6_000_000, f"peak {peak:,} bytes"


async def test_format_mp3_through_the_http_function(app_env: dict[str, str]) -> None:
    request = host.http_request(
        "POST", "narrations", json={"text": TEXT, "format": "MP3", "title": "River Talk"}
    )
    answer = await host.call_http(function_app.create_narration, request)
    assert answer.status == 200, answer.body
    body = answer.json()

    assert body["format"] == "mp3"
    assert body["blob_name"].endswith(".mp3")
    code, mp3, headers = http("GET", body["audio_url"])
    assert code == 200
    assert headers["content-type"] == "audio/mpeg"
    assert 'filename="River Talk.mp3"' in headers["content-disposition"]
    assert len(decode(mp3)) == round(body["duration_seconds"] * 24_000)
    download = await host.call_http(
        function_app.get_narration_audio,
        host.http_request("GET", "narrations/{id}/audio", route_params={"id": body["id"]}),
    )
    assert download.body == mp3
    assert download.headers["Content-Type"] == "audio/mpeg"
    assert 'filename="River Talk.mp3"' in download.headers["Content-Disposition"]
    transcript = await host.call_http(
        function_app.get_narration_transcript,
        host.http_request("GET", "narrations/{id}/transcript.json", route_params={"id": body["id"]}),
    )
    document = json.loads(transcript.body)
    assert (document["format"], document["blob_name"]) == ("mp3", body["blob_name"])


@pytest.mark.parametrize("value", ["ogg", "", "wav ", 3, None])
async def test_the_format_field_is_checked(app_env: dict[str, str], value: object) -> None:
    request = host.http_request("POST", "narrations", json={"text": TEXT, "format": value})
    answer = await host.call_http(function_app.create_narration, request)

    if value in ("", None, "wav "):  # not given (flows send "" and null), or wav after trimming
        assert answer.status == 200
        assert answer.json()["format"] == "wav"
        return
    assert answer.status == 400
    error = answer.json()["error"]
    assert error["field"] == "format"
    assert error["message"].startswith("format ")
    if isinstance(value, str):
        assert "wav, mp3" in error["message"]


async def test_a_bad_bitrate_setting_is_named_never_echoed(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, blob_store: BlobStore
) -> None:
    monkeypatch.setenv("NARRATION_MP3_BITRATE_KBPS", "65536")
    await function_app.graph.aclose()
    request = host.http_request("POST", "narrations", json={"text": TEXT, "format": "mp3"})
    answer = await host.call_http(function_app.create_narration, request)

    assert answer.status == 503
    error = answer.json()["error"]
    assert error["setting"] == "NARRATION_MP3_BITRATE_KBPS"
    assert "65536" not in answer.body.decode()


async def test_mp3_tags_and_chapters_as_ffprobe_reads_them(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NARRATION_SEGMENT_WORDS", "20")
    monkeypatch.setenv("NARRATION_SHOW_NAME", "River Radio")
    text = (
        "How rivers bend\n\nRivers rarely run straight for long. A small bend grows as water pushes "
        "against the outer bank.\n\nOxbow lakes\n\nOver many years the loops grow wider, until a flood "
        "cuts across the neck and leaves a lake behind."
    )
    request = host.http_request("POST", "narrations", json={"text": text, "format": "mp3", "title": "Rivers"})
    answer = await host.call_http(function_app.create_narration, request)
    assert answer.status == 200, answer.body
    body = answer.json()
    _, mp3, _ = http("GET", body["audio_url"])

    with tempfile.NamedTemporaryFile(suffix=".mp3") as file:
        file.write(mp3)
        file.flush()
        done = subprocess.run(
            ["ffprobe", "-v", "error", "-show_chapters", "-show_format", "-of", "json", file.name],
            capture_output=True,
            check=True,
        )
    info = json.loads(done.stdout)
    tags = info["format"]["tags"]
    assert (tags["title"], tags["artist"], tags["album"]) == ("Rivers", "River Radio", "River Radio")
    assert tags["narration_id"] == body["id"]
    # ffprobe lists ID3 chapters in no particular order: by their start, as the CTOC orders them.
    marks = sorted(info["chapters"], key=lambda c: float(c["start_time"]))
    titles = [c["tags"]["title"] for c in marks]
    assert titles == ["How rivers bend", "Oxbow lakes"]
    starts = [float(c["start_time"]) for c in marks]
    assert starts[0] == 0.0
    assert 0.0 < starts[1] < body["duration_seconds"]
    assert float(marks[0]["end_time"]) == starts[1]
    assert float(marks[-1]["end_time"]) == pytest.approx(body["duration_seconds"], abs=0.002)
    assert len(decode(mp3)) == round(body["duration_seconds"] * 24_000)  # the tag does not disturb decoding

    # The transcript document lists the same chapters (a WAV's only list of them).
    document = await host.call_http(
        function_app.get_narration_transcript,
        host.http_request("GET", "narrations/{id}/transcript.json", route_params={"id": body["id"]}),
    )
    listed = document.json()["chapters"]
    assert [c["title"] for c in listed] == titles
    assert [c["start"] for c in listed] == pytest.approx(starts, abs=0.001)
    assert [c["end"] for c in listed] == pytest.approx([float(c["end_time"]) for c in marks], abs=0.002)


async def test_headings_inside_one_segment_are_chapters_where_they_are_said(app_env: dict[str, str]) -> None:
    text = (
        "How rivers bend\n\nRivers rarely run straight for long. A small bend grows as water pushes "
        "against the outer bank.\n\nOxbow lakes\n\nOver many years the loops grow wider, until a flood "
        "cuts across the neck.\n\nDeltas\n\nWhere the river meets the sea, it drops its sand and builds land."
    )
    request = host.http_request("POST", "narrations", json={"text": text, "format": "mp3", "title": "Rivers"})
    answer = await host.call_http(function_app.create_narration, request)
    assert answer.status == 200, answer.body
    body = answer.json()
    assert body["segments"] == 1
    _, mp3, _ = http("GET", body["audio_url"])
    _, vtt, _ = http("GET", body["captions_url"])

    marks = mp3_chapters(mp3)
    assert [c["tags"]["title"] for c in marks] == ["How rivers bend", "Oxbow lakes", "Deltas"]
    # Each starts just before the caption cue its heading's first word opens.
    cues = [block.split("\n") for block in vtt.decode().split("\n\n")[1:] if "-->" in block]
    for mark, word in zip(marks[1:], ["Oxbow", "Deltas"], strict=True):
        (timing,) = [lines[0] for lines in cues if any(line.startswith(word) for line in lines[1:])]
        minutes, seconds = timing.split(" --> ")[0].rsplit(":", 1)
        cue_start = int(minutes.split(":")[-1]) * 60 + float(seconds)
        assert cue_start - 1.0 < float(mark["start_time"]) <= cue_start + 0.01


async def test_an_mp3_job_is_downloadable_by_its_job_id(
    jobs_env: dict[str, str], azurite: AzuriteServer
) -> None:
    request = host.http_request(
        "POST",
        "narrations",
        json={"text": TEXT, "format": "mp3", "title": "Job"},
        headers={"Prefer": "respond-async"},
    )
    accepted = await host.call_http(function_app.create_narration, request)
    assert accepted.status == 202, accepted.body
    job_id = accepted.json()["id"]
    early = await host.call_http(
        function_app.get_narration_audio,
        host.http_request("GET", "narrations/{id}/audio", route_params={"id": job_id}),
    )
    assert early.status == 404  # nothing to download before the worker ran

    with QueueClient.from_connection_string(azurite.connection_string, jobs_env["NARRATION_QUEUE"]) as queue:
        assert await host.deliver(function_app.narration_worker, queue) is not None

    download = await host.call_http(
        function_app.get_narration_audio,
        host.http_request(
            "GET", "narrations/{id}/audio", route_params={"id": job_id}, headers={"Range": "bytes=0-2"}
        ),
    )
    assert (download.status, download.body) == (206, b"ID3")
    assert download.headers["Content-Type"] == "audio/mpeg"
    assert 'filename="Job.mp3"' in download.headers["Content-Disposition"]


async def test_an_episode_has_no_chapters_from_its_sources_headings(app_env: dict[str, str]) -> None:
    text = (
        "How rivers bend\n\nRivers rarely run straight for long, and a small bend grows wider.\n\n"
        "Oxbow lakes\n\nA flood cuts across the neck of a loop and leaves a lake behind.\n\n"
        "Deltas\n\nAt the sea the river drops its sand and splits into many channels."
    )
    body = {"text": text, "mode": "episode", "format": "mp3", "title": "Rivers", "target_minutes": 1}
    answer = await host.call_http(
        function_app.create_narration, host.http_request("POST", "narrations", json=body)
    )
    assert answer.status == 200, answer.body
    result = answer.json()
    _, mp3, _ = http("GET", result["audio_url"])
    assert mp3_chapters(mp3) == [], "the episode's words are the model's, not the source's"
    document = await host.call_http(
        function_app.get_narration_transcript,
        host.http_request("GET", "narrations/{id}/transcript.json", route_params={"id": result["id"]}),
    )
    assert "chapters" not in document.json()
