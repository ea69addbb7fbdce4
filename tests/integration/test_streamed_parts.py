"""A segment's opening levelled and staged while the rest streams (podcast.engine.parts),
against a paced emulator and Azurite: the opening reaches Storage before the response is done,
the WAV is the kept attempt's audio at the target loudness, and every way the parts cannot
stand (a retried attempt, a fidelity retry, Storage failing during the opening, an opening far
from the rest) gives the segment staged whole or the kept attempt's parts, nothing of another.
"""

from __future__ import annotations

import asyncio
import io
import time
import wave
from collections.abc import Iterator

import numpy as np
import pyloudnorm
import pytest
from azure.storage.blob import BlobServiceClient

from emulator import Fault, FaultKind, RealtimeEmulator
from emulator.speech import SyntheticEngine
from podcast.audio import loudness
from podcast.engine import audio
from podcast.engine.instructions import WORDS_PER_MINUTE
from podcast.engine.longform import NarratedText, narrate_segments
from podcast.engine.parts import StreamedParts, split_bytes
from podcast.engine.realtime import Narrator
from podcast.engine.segments import Segment
from podcast.errors import StorageUnavailableError
from podcast.models import RequestLimits, parse_request
from podcast.settings import NarrationSettings, RealtimeSettings, StorageSettings, realtime_base_url
from podcast.storage.blobs import BlobStore, WavBlockWriter
from testkit.azurite import AzuriteServer
from testkit.storage import FAST_FAILING, ScriptedTransport
from tests.integration.conftest import EMULATOR_KEY

SPEED = 30.0
"""Seconds of audio the emulator sends per second: a two-minute segment streams for 4 s, the
last fifth of it (after its opening is staged) for 0.75 s."""
SENTENCES = [
    "The lighthouse keeper climbed the spiral stairs before dawn to trim the wick and wipe the glass.",
    "Below him the harbour woke slowly, gulls circling the fishing boats that rocked against the quay.",
    "He wrote the weather in his logbook, the wind from the north west and the swell rising by the hour.",
    "By noon a grey line of cloud had crept over the sea and the ferry captain sent word he would wait.",
]
LONG = " ".join(SENTENCES[s % 4] for s in range(16))
"""About 290 words: two minutes of synthetic speech, its opening staged while the rest streams."""
SHORT = "The orchard behind the mill was quiet in the heat, and an old dog slept in the shade."
"""Under 20 words: too short to be split, staged whole at the end."""


@pytest.fixture(scope="module")
def emulator_server() -> Iterator[RealtimeEmulator]:
    """This module's emulator streams at :data:`SPEED` (the suite's default is instant)."""
    server = RealtimeEmulator(api_key=EMULATOR_KEY, engine="synthetic", speed=SPEED).start_in_thread()
    try:
        yield server
    finally:
        server.stop()


class TimedWriter(WavBlockWriter):
    """The production writer, noting when each part and each whole piece reached Storage."""

    def __init__(self, store: BlobStore, blob_name: str) -> None:
        super().__init__(store, blob_name)
        self.parts: list[tuple[int, int, int, float]] = []
        self.wholes: list[tuple[int, int]] = []

    async def stage_part(self, index: int, part: int, pcm: bytes | bytearray | memoryview) -> None:
        await super().stage_part(index, part, pcm)
        self.parts.append((index, part, len(pcm), time.monotonic()))

    async def stage(self, index: int, pcm: bytes | bytearray) -> None:
        await super().stage(index, pcm)
        if pcm:
            self.wholes.append((index, len(pcm)))


async def narrate(
    emulator: RealtimeEmulator, writer: WavBlockWriter, texts: list[str], *, attempts: int = 2
) -> NarratedText:
    segments = [
        Segment(i, text, "paragraph" if i < len(texts) - 1 else "end") for i, text in enumerate(texts)
    ]
    settings = RealtimeSettings(endpoint=realtime_base_url(emulator.url), api_key=EMULATOR_KEY, max_retries=2)
    async with Narrator(settings) as narrator:
        narrated = await narrate_segments(
            narrator,
            parse_request({"text": "\n\n".join(texts)}, RequestLimits()),
            segments,
            writer,
            NarrationSettings(concurrency=2, segment_max_words=400, fidelity_attempts=attempts),
            verbatim=True,
            budget_seconds=120,
        )
    await writer.commit(download_name="test.wav", metadata={})
    return narrated


def committed(azurite: AzuriteServer, container: str, name: str) -> tuple[list[tuple[str, int]], np.ndarray]:
    """The blob's committed blocks (id, size) and its PCM."""
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        blob = service.get_blob_client(container, name)
        blocks = blob.get_block_list("committed")[0]
        data = blob.download_blob().readall()
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (24000, 1, 2)
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    return [(b.id, b.size) for b in blocks], pcm


def lufs(pcm: np.ndarray) -> float:
    return float(pyloudnorm.Meter(audio.SAMPLE_RATE).integrated_loudness(pcm / 32768))


def split_of(text: str) -> int:
    split = split_bytes(len(text.split()) * 60 / WORDS_PER_MINUTE)
    assert split is not None
    return split


async def test_a_long_segments_opening_reaches_storage_while_the_rest_streams(
    emulator: RealtimeEmulator, blob_store: BlobStore, azurite: AzuriteServer, container_name: str
) -> None:
    writer = TimedWriter(blob_store, "parts.wav")
    narrated = await narrate(emulator, writer, [LONG, SHORT])

    long_response = next(r for s in emulator.sessions for r in s.responses if "lighthouse" in r.transcript)
    speech = long_response.audio_bytes
    split = split_of(LONG)
    assert split < speech
    pause = len(audio.silence(NarrationSettings().paragraph_pause_seconds))
    # The long segment's opening went to Storage before its response was done; the rest and
    # the pause after it went after; the short segment was staged whole.
    assert [(i, p, n) for i, p, n, _ in writer.parts] == [(0, 0, split), (0, 1, speech - split + pause)]
    assert long_response.finished_at is not None
    assert writer.parts[0][3] < long_response.finished_at, "staged while the response streamed"
    assert [index for index, _ in writer.wholes] == [2]
    blocks, pcm = committed(azurite, container_name, "parts.wav")
    assert [block_id.split("-")[1] for block_id, _ in blocks] == ["hdr", "prt", "prt", "pcm"]
    assert sum(size for _, size in blocks) == 44 + narrated.pcm_bytes
    # The segment is one level throughout, within the tolerance of the target, under the ceiling.
    first = pcm[: speech // 2]
    assert abs(lufs(first) - loudness.TARGET_LUFS) <= loudness.STREAMED_TOLERANCE_LU
    assert narrated.loudness_lufs is not None
    assert abs(narrated.loudness_lufs - loudness.TARGET_LUFS) <= loudness.STREAMED_TOLERANCE_LU
    assert narrated.segments[0].end_seconds == pytest.approx(audio.duration_seconds(speech))
    assert len(narrated.words) == len((LONG + " " + SHORT).split()), "every word timed"


def staged_parts(writer: TimedWriter) -> list[tuple[int, int]]:
    return [(index, part) for index, part, _, _ in writer.parts]


def kinds(blocks: list[tuple[str, int]]) -> list[str]:
    return [block_id.split("-")[1] for block_id, _ in blocks]


async def test_a_connection_lost_mid_stream_restarts_the_parts_with_the_retried_attempt(
    emulator: RealtimeEmulator, blob_store: BlobStore, azurite: AzuriteServer, container_name: str
) -> None:
    """The first attempt streams 97 % (its opening staged) and its connection drops: the retry
    stages its own opening again, and only its parts are in the WAV."""
    emulator.inject(Fault(FaultKind.CLOSE_MID_STREAM, match="lighthouse", at=0.97))
    writer = TimedWriter(blob_store, "retried.wav")
    narrated = await narrate(emulator, writer, [LONG])

    responses = [r for s in emulator.sessions for r in s.responses]
    assert [r.status for r in responses] == ["closed", "completed"]
    # The first attempt's opening was staged before the drop; the retry staged its own again.
    assert staged_parts(writer) == [(0, 0), (0, 0), (0, 1)]
    blocks, pcm = committed(azurite, container_name, "retried.wav")
    assert kinds(blocks) == ["hdr", "prt", "prt"]
    assert (
        len(pcm) * 2
        == narrated.pcm_bytes
        == responses[1].audio_bytes + len(audio.silence(NarrationSettings().pause_after("end")))
    )
    assert abs(lufs(pcm) - loudness.TARGET_LUFS) <= loudness.STREAMED_TOLERANCE_LU


async def test_a_fidelity_retry_keeps_only_the_faithful_readings_parts(
    emulator: RealtimeEmulator, blob_store: BlobStore, azurite: AzuriteServer, container_name: str
) -> None:
    """The first reading is paraphrased (other words, another length) and streams whole, its
    opening staged; the faithful second reading's parts replace it."""
    emulator.inject(Fault(FaultKind.PARAPHRASE, match="lighthouse"))
    writer = TimedWriter(blob_store, "faithful.wav")
    narrated = await narrate(emulator, writer, [LONG])

    paraphrased, faithful = (r for s in emulator.sessions for r in s.responses)
    assert paraphrased.audio_bytes != faithful.audio_bytes
    assert staged_parts(writer) == [(0, 0), (0, 0), (0, 1)]
    blocks, pcm = committed(azurite, container_name, "faithful.wav")
    assert kinds(blocks) == ["hdr", "prt", "prt"]
    assert len(pcm) * 2 == faithful.audio_bytes
    assert narrated.segments[0].attempts == 2
    assert narrated.transcript.split() == LONG.split()


async def test_storage_failing_during_a_part_stages_the_segment_whole(
    emulator: RealtimeEmulator, azurite: AzuriteServer, container_name: str, storage_settings: StorageSettings
) -> None:
    """The opening's Put Block meets refused connections until the SDK gives up: the segment
    is levelled and staged whole at the end (exactly on target), and the WAV holds it."""
    transport = ScriptedTransport()
    store = BlobStore.from_settings(storage_settings, options=FAST_FAILING, transport=transport)
    await store.ensure_container()
    transport.fail_next(2)  # the opening's request and the SDK's one retry (FAST_FAILING)
    try:
        writer = TimedWriter(store, "outage.wav")
        narrated = await narrate(emulator, writer, [LONG])
    finally:
        await store.close()

    assert transport.failed == 2
    assert staged_parts(writer) == []
    assert [index for index, _ in writer.wholes] == [0]
    blocks, pcm = committed(azurite, container_name, "outage.wav")
    assert kinds(blocks) == ["hdr", "pcm"]
    assert len(pcm) * 2 == narrated.pcm_bytes
    assert lufs(pcm) == pytest.approx(loudness.TARGET_LUFS, abs=0.1)


async def test_an_opening_far_quieter_than_the_rest_is_levelled_whole(
    emulator: RealtimeEmulator, blob_store: BlobStore, azurite: AzuriteServer, container_name: str
) -> None:
    """A reading whispered but for its end: the opening's gain would leave the whole far too
    loud, so the opening staged is dropped and the segment levelled whole, on target."""
    quiet = " ".join(SENTENCES[s % 4] for s in range(8))
    loud = " ".join(SENTENCES[(s + 1) % 4] for s in range(8))
    writer = TimedWriter(blob_store, "uneven.wav")

    engine = emulator._settings.engine
    assert isinstance(engine, SyntheticEngine)
    original = engine.plan

    def uneven(text: str, voice: str) -> tuple[int, Iterator[bytes]]:
        """The synthetic voice (as it plans its speech), whispering all but the last 15 %."""
        pcm = np.frombuffer(b"".join(original(text, voice)[1]), "<i2").astype(np.float64)
        pcm[: len(pcm) * 85 // 100] *= 0.1
        speech = np.clip(pcm, -32768, 32767).astype("<i2").tobytes()
        return len(speech), iter([speech])

    engine.plan = uneven  # type: ignore[method-assign]
    try:
        narrated = await narrate(emulator, writer, [quiet + " " + loud])
    finally:
        del engine.plan
    assert staged_parts(writer) == [(0, 0)], "the opening was staged while it streamed"
    assert [index for index, _ in writer.wholes] == [0]
    blocks, pcm = committed(azurite, container_name, "uneven.wav")
    assert kinds(blocks) == ["hdr", "pcm"]
    assert len(pcm) * 2 == narrated.pcm_bytes
    assert lufs(pcm) == pytest.approx(loudness.TARGET_LUFS, abs=0.1)


def data_of(azurite: AzuriteServer, container: str, name: str) -> bytes:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        return service.get_blob_client(container, name).download_blob().readall()[44:]


async def test_the_writer_commits_each_piece_as_its_parts_as_last_staged(
    blob_store: BlobStore, azurite: AzuriteServer, container_name: str
) -> None:
    await blob_store.ensure_container()
    writer = blob_store.wav_writer("pieces.wav")
    await writer.stage_part(2, 0, b"a0" * 3)
    await writer.stage_part(2, 1, b"a1" * 3)
    await writer.stage_part(2, 2, b"a2" * 3)
    await writer.stage(0, b"w0" * 2)
    await writer.stage_part(4, 0, b"c0")
    await writer.stage_part(2, 1, b"A1" * 4)  # replaces parts 1 and 2 of piece 2
    await writer.stage(4, b"W4")  # a whole piece replaces the parts
    await writer.stage_part(6, 0, b"x0")
    await writer.stage(6, b"")  # an empty piece drops them
    assert writer.pcm_bytes == 4 + 6 + 8 + 2

    await writer.commit(download_name="pieces.wav", metadata={})

    assert data_of(azurite, container_name, "pieces.wav") == b"w0w0" + b"a0a0a0" + b"A1A1A1A1" + b"W4"
    blocks, _ = committed(azurite, container_name, "pieces.wav")
    assert kinds(blocks) == ["hdr", "pcm", "prt", "prt", "pcm"]
    # Part 0 begins a piece again, whatever it was.
    again = blob_store.wav_writer("again.wav")
    await again.stage(0, b"ww")
    await again.stage_part(0, 0, b"p0")
    await again.stage_part(0, 1, b"p1")
    await again.stage_part(0, 0, b"q0")
    await again.commit(download_name="again.wav", metadata={})
    assert data_of(azurite, container_name, "again.wav") == b"q0"


@pytest.mark.parametrize(
    ("index", "part", "pcm", "problem"),
    [
        (0, 1, b"xx", "does not follow"),
        (0, 0, b"", "empty"),
        (0, 0, b"xxx", "even"),
        (-1, 0, b"xx", "negative"),
        (0, WavBlockWriter.MAX_PARTS, b"xx", "part must be"),
        (10**7, 0, b"xx", "too large"),
    ],
)
async def test_the_writer_refuses_parts_out_of_order_or_out_of_range(
    blob_store: BlobStore, index: int, part: int, pcm: bytes, problem: str
) -> None:
    writer = blob_store.wav_writer("refused.wav")
    with pytest.raises(ValueError, match=problem):
        await writer.stage_part(index, part, pcm)
    await writer.stage(0, b"ww")
    with pytest.raises(ValueError, match="does not follow"):
        await writer.stage_part(0, 1, b"xx")  # after a whole piece, parts begin at 0
    assert writer.pcm_bytes == 2


async def test_two_deliveries_of_one_long_narration_at_once_leave_one_whole_wav(
    emulator: RealtimeEmulator, blob_store: BlobStore, azurite: AzuriteServer, container_name: str
) -> None:
    """At-least-once delivery: two writers of one blob stage their openings at the same time.
    Each commits only its own blocks, or fails cleanly when the other's commit discarded them:
    the blob is one delivery's audio whole, never parts of both."""
    writers = [TimedWriter(blob_store, "twice.wav"), TimedWriter(blob_store, "twice.wav")]
    outcomes = await asyncio.gather(*(narrate(emulator, w, [LONG]) for w in writers), return_exceptions=True)

    assert all(len(w.parts) == 2 for w in writers), "both staged their opening while streaming"
    kept = [o for o in outcomes if isinstance(o, NarratedText)]
    assert kept, outcomes
    assert all(isinstance(o, (NarratedText, StorageUnavailableError)) for o in outcomes), outcomes
    blocks, pcm = committed(azurite, container_name, "twice.wav")
    tokens = {block_id.split("-")[0] for block_id, _ in blocks}
    assert len(tokens) == 1, "the WAV's blocks are one delivery's"
    assert kinds(blocks) == ["hdr", "prt", "prt"]
    assert len(pcm) * 2 in {o.pcm_bytes for o in kept}
    assert abs(lufs(pcm) - loudness.TARGET_LUFS) <= loudness.STREAMED_TOLERANCE_LU


async def test_an_opening_still_queued_when_its_response_is_done_is_never_staged(
    blob_store: BlobStore, azurite: AzuriteServer, container_name: str
) -> None:
    """The narration's openings are all taken (its last round reaches its splits together):
    a segment done before its opening left the queue is levelled and staged whole, and its
    opening is dropped, not made later behind the others."""
    speech = SyntheticEngine().synthesize(LONG, "alloy")
    split = split_bytes(len(speech) / audio.BYTES_PER_SECOND)
    assert split is not None
    writer = TimedWriter(blob_store, "queued.wav")
    taken = asyncio.Semaphore(1)
    await taken.acquire()  # every opening slot held by other segments

    async def run(function: object, *args: object) -> object:
        return await asyncio.to_thread(function, *args)  # type: ignore[arg-type]

    parts = StreamedParts(writer, 0, run, split=split, fade_seconds=0.02, openings=taken)
    buffer = bytearray()
    for begin in range(0, len(speech), 9600):  # as the deltas arrive
        buffer += speech[begin : begin + 9600]
        parts.feed(buffer)
        await asyncio.sleep(0)
    assert await parts.finish(buffer, audio.silence(0.5)) is None
    taken.release()  # the slot frees: the dropped opening must not take it now
    await asyncio.sleep(0.2)
    await parts.close()
    assert staged_parts(writer) == []

    leveled = loudness.level_in_place(buffer)  # the caller's whole path
    assert leveled.lufs == pytest.approx(loudness.TARGET_LUFS, abs=0.1)
    await writer.stage(0, buffer)
    await writer.commit(download_name="queued.wav", metadata={})
    blocks, pcm = committed(azurite, container_name, "queued.wav")
    assert kinds(blocks) == ["hdr", "pcm"]
    assert pcm.tobytes() == bytes(buffer)


async def test_an_opening_that_left_the_queue_is_kept_when_its_response_is_done(
    blob_store: BlobStore, azurite: AzuriteServer, container_name: str
) -> None:
    """The other side of the queue: an opening being made when the response is done is
    waited for, and the segment is its two parts, on target."""
    speech = SyntheticEngine().synthesize(LONG, "alloy")
    split = split_bytes(len(speech) / audio.BYTES_PER_SECOND)
    assert split is not None
    writer = TimedWriter(blob_store, "begun.wav")

    async def run(function: object, *args: object) -> object:
        return await asyncio.to_thread(function, *args)  # type: ignore[arg-type]

    parts = StreamedParts(writer, 0, run, split=split, fade_seconds=0.02, openings=asyncio.Semaphore(1))
    buffer = bytearray()
    for begin in range(0, len(speech), 9600):
        buffer += speech[begin : begin + 9600]
        parts.feed(buffer)
        await asyncio.sleep(0)  # the opening's task leaves the queue at once
    leveled = await parts.finish(buffer, audio.silence(0.5))
    assert leveled is not None
    await parts.stage_rest()
    await parts.close()
    await writer.commit(download_name="begun.wav", metadata={})
    assert staged_parts(writer) == [(0, 0), (0, 1)]
    blocks, pcm = committed(azurite, container_name, "begun.wav")
    assert kinds(blocks) == ["hdr", "prt", "prt"]
    assert lufs(pcm) == pytest.approx(loudness.TARGET_LUFS, abs=0.1)
