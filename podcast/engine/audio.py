"""PCM16 audio helpers: WAV framing (a :mod:`struct`-packed header), durations, fades.

All audio in this project is what the Realtime API sends: signed 16-bit little-endian
PCM, 24,000 samples a second, one channel. Functions here take and return ``bytes`` of
that format unless they say otherwise.
"""

from __future__ import annotations

import array
import io
import struct
import sys
import wave
from dataclasses import dataclass
from typing import Final

from podcast.errors import AudioFormatError

SAMPLE_RATE: Final = 24_000
"""Samples per second of Realtime ``audio/pcm`` output."""
SAMPLE_WIDTH: Final[int] = 2
"""Bytes per sample (PCM16)."""
CHANNELS: Final[int] = 1
BYTES_PER_SECOND: Final[int] = SAMPLE_RATE * SAMPLE_WIDTH * CHANNELS
WAV_HEADER_SIZE: Final[int] = 44
"""Size of the canonical RIFF/WAVE header for PCM: RIFF chunk, ``fmt `` chunk, ``data`` chunk."""
_WAV_HEADER: Final = struct.Struct("<4sI4s4sIHHIIHH4sI")
"""RIFF id, RIFF size, WAVE id; fmt id, fmt size (16), format tag (1 = PCM), channels,
sample rate, byte rate, block align, bits per sample; data id, data size. Little-endian."""
assert _WAV_HEADER.size == WAV_HEADER_SIZE
_MAX_PCM_SIZE: Final[int] = 0xFFFFFFFF - (WAV_HEADER_SIZE - 8)
"""The RIFF size (everything after its first 8 bytes) is a 32-bit field."""


@dataclass(frozen=True, slots=True)
class WavInfo:
    """What a WAV file's header says, and its exact duration."""

    sample_rate: int
    sample_width: int
    channels: int
    frames: int

    @property
    def duration_seconds(self) -> float:
        return self.frames / self.sample_rate


def check_pcm(pcm: bytes | bytearray | memoryview) -> None:
    """Raise :class:`AudioFormatError` if ``pcm`` is not whole PCM16 mono frames."""
    if len(pcm) % (SAMPLE_WIDTH * CHANNELS):
        raise AudioFormatError(f"PCM16 mono audio must have an even number of bytes, got {len(pcm)}")


def duration_seconds(pcm: bytes | bytearray | memoryview | int, sample_rate: int = SAMPLE_RATE) -> float:
    """Exact duration in seconds of PCM16 mono audio, given as bytes or a byte count."""
    size = pcm if isinstance(pcm, int) else len(pcm)
    return size / (sample_rate * SAMPLE_WIDTH * CHANNELS)


def silence(seconds: float, sample_rate: int = SAMPLE_RATE) -> bytes:
    """PCM16 mono digital silence of ``seconds`` (rounded to whole samples)."""
    if seconds < 0:
        raise ValueError("silence cannot be negative")
    return bytes(round(seconds * sample_rate) * SAMPLE_WIDTH * CHANNELS)


def pcm_to_wav(pcm: bytes | bytearray | memoryview, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Frame PCM16 mono audio as a WAV file (44-byte header, then the samples)."""
    check_pcm(pcm)
    return wav_header(len(pcm), sample_rate) + bytes(pcm)


def wav_header(pcm_size: int, sample_rate: int = SAMPLE_RATE) -> bytes:
    """The 44-byte WAV header for ``pcm_size`` bytes of PCM16 mono that follow it.

    For streaming uploads, where the header is written once the size is known.
    """
    if pcm_size < 0 or pcm_size % (SAMPLE_WIDTH * CHANNELS) or pcm_size > _MAX_PCM_SIZE:
        raise AudioFormatError(f"invalid PCM16 mono size: {pcm_size}")
    block_align = SAMPLE_WIDTH * CHANNELS
    return _WAV_HEADER.pack(
        b"RIFF",
        WAV_HEADER_SIZE - 8 + pcm_size,
        b"WAVE",
        b"fmt ",
        16,
        1,
        CHANNELS,
        sample_rate,
        sample_rate * block_align,
        block_align,
        SAMPLE_WIDTH * 8,
        b"data",
        pcm_size,
    )


def wav_info(data: bytes | bytearray | memoryview) -> WavInfo:
    """Read a WAV file's header; raise :class:`AudioFormatError` if it is not a WAV."""
    try:
        with wave.open(io.BytesIO(bytes(data)), "rb") as wav:
            return WavInfo(
                sample_rate=wav.getframerate(),
                sample_width=wav.getsampwidth(),
                channels=wav.getnchannels(),
                frames=wav.getnframes(),
            )
    except (wave.Error, EOFError) as exc:
        raise AudioFormatError(f"not a PCM WAV file: {exc}") from exc


def fade_edges(
    pcm: bytes | bytearray | memoryview, seconds: float = 0.005, sample_rate: int = SAMPLE_RATE
) -> bytes:
    """A copy of ``pcm`` with its first and last ``seconds`` ramped from and to silence.

    Pieces joined after this start and end at zero, so a seam never jumps (no click),
    whatever DC offset or phase the pieces had. See :func:`fade_edges_in_place`.
    """
    buffer = bytearray(pcm)
    fade_edges_in_place(buffer, seconds, sample_rate)
    return bytes(buffer)


def fade_edges_in_place(buffer: bytearray, seconds: float = 0.005, sample_rate: int = SAMPLE_RATE) -> None:
    """Ramp the first and last ``seconds`` of PCM16 ``buffer`` linearly from and to silence,
    touching only those samples (no copy of the rest)."""
    check_pcm(buffer)
    ramp = fade_samples(len(buffer) // SAMPLE_WIDTH, seconds, sample_rate)
    fade_in_place(buffer, ramp, at_start=True)
    fade_in_place(buffer, ramp, at_start=False)


def fade_samples(samples: int, seconds: float = 0.005, sample_rate: int = SAMPLE_RATE) -> int:
    """How many samples at each edge of audio ``samples`` long :func:`fade_edges_in_place` ramps."""
    return min(samples // 2, round(seconds * sample_rate))


def fade_in_place(buffer: bytearray | memoryview, ramp: int, *, at_start: bool) -> None:
    """Ramp the first (``at_start``) or the last ``ramp`` samples of PCM16 ``buffer`` from or to
    silence as :func:`fade_edges_in_place` does (a part of a segment: its opening or its end)."""
    check_pcm(buffer)
    if ramp <= 0:
        return
    edge_bytes = ramp * SAMPLE_WIDTH
    if edge_bytes > len(buffer):
        raise ValueError("the ramp is longer than the audio")
    start = 0 if at_start else len(buffer) - edge_bytes
    edge = array.array("h", bytes(buffer[start : start + edge_bytes]))
    if sys.byteorder == "big":
        edge.byteswap()
    for i in range(ramp):
        position = i if at_start else ramp - 1 - i
        edge[position] = int(edge[position] * i / ramp)
    if sys.byteorder == "big":
        edge.byteswap()
    buffer[start : start + edge_bytes] = edge.tobytes()
