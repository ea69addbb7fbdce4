"""Decoding and measuring stored audio with tools the app does not use: ffmpeg decodes MP3
(and measures the true peak with its ``ebur128`` filter), pyloudnorm measures loudness."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from typing import Any

import numpy as np
import pyloudnorm

from podcast.engine import audio

FFMPEG = shutil.which("ffmpeg")


def decode(data: bytes, suffix: str) -> np.ndarray:
    """Mono float samples (full scale 1.0) at 24 kHz of a WAV or MP3 file, decoded by ffmpeg
    from a file (it drops an MP3's encoder delay and padding only when it can seek)."""
    if suffix == ".wav":
        return np.frombuffer(data[audio.WAV_HEADER_SIZE :], "<i2").astype(np.float64) / 32768
    assert FFMPEG is not None, "ffmpeg is needed (scripts/setup.sh installs it)"
    with tempfile.NamedTemporaryFile(suffix=suffix) as file:
        file.write(data)
        file.flush()
        done = subprocess.run(
            [FFMPEG, "-v", "error", "-i", file.name, "-f", "s16le", "-ac", "1", "-ar", "24000", "pipe:1"],
            capture_output=True,
            check=True,
        )
    return np.frombuffer(done.stdout, "<i2").astype(np.float64) / 32768


def integrated_lufs(samples: np.ndarray) -> float:
    """ITU-R BS.1770-4 integrated loudness (pyloudnorm)."""
    return float(pyloudnorm.Meter(audio.SAMPLE_RATE).integrated_loudness(samples))


def ffmpeg_true_peak_dbtp(data: bytes, suffix: str) -> float:
    """The true peak ffmpeg's ``ebur128`` filter measures (4× oversampled), in dBTP."""
    assert FFMPEG is not None, "ffmpeg is needed (scripts/setup.sh installs it)"
    with tempfile.NamedTemporaryFile(suffix=suffix) as file:
        file.write(data)
        file.flush()
        done = subprocess.run(
            [
                FFMPEG,
                "-hide_banner",
                "-nostats",
                "-i",
                file.name,
                "-af",
                "ebur128=peak=true",
                "-f",
                "null",
                "-",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    summary = done.stderr.rsplit("Summary:", 1)[-1]
    match = re.search(r"True peak:\s+Peak:\s+(-?[\d.]+|-inf)", summary)
    assert match is not None, summary
    return float(match.group(1))


def mp3_chapters(mp3: bytes) -> list[dict[str, Any]]:
    """The ID3 chapters of ``mp3`` as ffprobe reads them, in order of their start (ffprobe
    lists them in no particular order; the CTOC orders them by time)."""
    with tempfile.NamedTemporaryFile(suffix=".mp3") as file:
        file.write(mp3)
        file.flush()
        command = ["ffprobe", "-v", "error", "-show_chapters", "-of", "json", file.name]
        done = subprocess.run(command, capture_output=True, check=True)
    return sorted(json.loads(done.stdout)["chapters"], key=lambda c: float(c["start_time"]))
