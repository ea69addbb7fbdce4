"""WAV framing: the 44-byte header read back by :mod:`wave`, by hand and by ``soxi``."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import wave
from pathlib import Path

import pytest

from podcast.engine import audio
from podcast.errors import AudioFormatError

SIZES = [0, 2, 3 * 60 * 60 * audio.BYTES_PER_SECOND]  # nothing, one sample, three hours


@pytest.mark.parametrize("size", SIZES)
def test_the_header_parses_with_wave(size: int) -> None:
    header = audio.wav_header(size)

    assert len(header) == audio.WAV_HEADER_SIZE == 44
    with wave.open(io.BytesIO(header)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 24_000)
        assert wav.getcomptype() == "NONE"
        assert wav.getnframes() == size // 2
    assert audio.wav_info(header).duration_seconds == size / audio.BYTES_PER_SECOND


@pytest.mark.parametrize("size", SIZES)
def test_the_header_is_the_canonical_pcm_layout(size: int) -> None:
    fields = struct.unpack("<4sI4s4sIHHIIHH4sI", audio.wav_header(size))

    assert fields == (
        b"RIFF",
        36 + size,  # everything after the RIFF size field
        b"WAVE",
        b"fmt ",
        16,  # PCM fmt chunk
        1,  # WAVE_FORMAT_PCM
        1,  # mono
        24_000,
        48_000,  # bytes per second
        2,  # block align
        16,  # bits per sample
        b"data",
        size,
    )


def test_a_header_at_another_sample_rate() -> None:
    with wave.open(io.BytesIO(audio.wav_header(32_000, sample_rate=16_000))) as wav:
        assert (wav.getframerate(), wav.getnframes()) == (16_000, 16_000)
    assert struct.unpack_from("<II", audio.wav_header(0, sample_rate=16_000), 24) == (16_000, 32_000)


@pytest.mark.parametrize("size", [-2, 1, 3, 2**32])
def test_sizes_that_are_not_pcm16_mono_or_do_not_fit_are_refused(size: int) -> None:
    with pytest.raises(AudioFormatError):
        audio.wav_header(size)


def test_pcm_to_wav_is_the_header_then_the_samples() -> None:
    pcm = bytes(range(256)) * 3
    wav = audio.pcm_to_wav(pcm)

    assert wav == audio.wav_header(len(pcm)) + pcm
    with wave.open(io.BytesIO(wav)) as reader:
        assert reader.readframes(reader.getnframes()) == pcm


@pytest.mark.skipif(shutil.which("soxi") is None, reason="soxi (sox) is not installed")
@pytest.mark.parametrize("seconds", [0.0, 1 / 24_000, 1.5])
def test_soxi_reads_the_same_format_and_length(tmp_path: Path, seconds: float) -> None:
    pcm = audio.silence(seconds)
    path = tmp_path / "a.wav"
    path.write_bytes(audio.pcm_to_wav(pcm))

    def soxi(option: str) -> str:
        return subprocess.run(["soxi", option, str(path)], check=True, capture_output=True, text=True).stdout

    assert soxi("-r").strip() == "24000"
    assert soxi("-c").strip() == "1"
    assert soxi("-b").strip() == "16"
    assert soxi("-e").strip() == "Signed Integer PCM"
    assert int(soxi("-s")) == len(pcm) // 2
