"""MP3 encoding of a narration as one stream: a LAME encoder and the Info (Xing) frame.

:class:`Mp3Stream` feeds PCM16 mono to one ``lameenc`` encoder (LAME built in) for the whole
narration, so segments and pauses join inside the encoder: no encoder delay or padding at
a seam, no gap, no click. The output is constant-bitrate MPEG-2 Layer III, 24 kHz mono,
whose frames all have the same size (at 24 kHz a frame is ``3 × kbit/s`` bytes, never padded).

:func:`info_frame` builds the frame that goes first in the file (LAME writes it last, in
place, which a blob assembled from blocks cannot do, so it is built once the counts are
known): an ``Info`` tag (the Xing header of a CBR file: frame count, byte count, seek table)
and the LAME tag (encoder delay and padding), so players show the exact duration, seek
correctly and decoders that read the LAME tag (ffmpeg, foobar2000, iTunes) drop the
encoder's delay and padding: the decoded audio has exactly the samples encoded.

LAME's output decodes :data:`LAME_LOSS_DB` quieter than its input (a flat loss across the
spectrum, the same at 32-160 kbit/s, with ffmpeg's decoder and with LAME's own mpglib), so
:class:`Mp3Stream` raises the PCM by that much first: the MP3 decodes at the loudness the
narration was leveled to (the limiter's 2 dB of headroom leaves room for it).
"""

from __future__ import annotations

import struct
from typing import Final

import lameenc
import numpy as np

from podcast.audio import DEFAULT_BITRATE_KBPS, MP3_BITRATES_KBPS, SAMPLE_RATE

__all__ = [
    "DEFAULT_BITRATE_KBPS",
    "MP3_BITRATES_KBPS",
    "MP3_CONTENT_TYPE",
    "Mp3Stream",
    "info_frame",
]

MP3_CONTENT_TYPE: Final = "audio/mpeg"
LAME_QUALITY: Final = 3
LAME_LOSS_DB: Final = 0.44
"""How much quieter LAME's MP3 decodes than its PCM (integrated loudness of leveled Piper
speech, ffmpeg and mpglib decoders, 32-160 kbit/s: 0.42-0.45 dB); made up before encoding."""
_MAKE_UP: Final = np.float32(10 ** (LAME_LOSS_DB / 20))
_MAKE_UP_SAMPLES: Final = 1 << 15
"""LAME's ``-q 3`` (the command-line encoder's default for CBR): 2 is slower, 7 fastest."""

SAMPLES_PER_FRAME: Final = 576
"""MPEG-2 Layer III."""
ENCODER_DELAY: Final = 576
"""Samples LAME puts before the first input sample (what its own LAME tag records; decoders
add their 529-sample decoder delay)."""
_BITRATE_INDEX: Final[dict[int, int]] = {
    kbps: index for index, kbps in enumerate((0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160))
}
_SAMPLE_RATE_INDEX: Final[dict[int, int]] = {22_050: 0, 24_000: 1, 16_000: 2}
_SIDE_INFO_BYTES: Final = 9
"""MPEG-2 (LSF) mono side information after the 4-byte frame header."""
_XING_FLAGS: Final = 0x0F
"""Frames, bytes, seek table (TOC) and quality are present."""
_TAG_BYTES: Final = 4 + _SIDE_INFO_BYTES + 120 + 36
"""Header, side info, Info tag with TOC and quality, LAME tag."""
_ENCODER_VERSION: Final = b"LAME3.100"


class Mp3Stream:
    """One LAME encoder for a whole narration (not thread-safe: one feeder at a time).

    :meth:`encode` takes PCM16 mono bytes and returns whatever MP3 frames are ready;
    :meth:`flush` ends the stream. ``samples`` and ``bytes_out`` count what went in and out.
    """

    def __init__(self, bitrate_kbps: int = DEFAULT_BITRATE_KBPS, sample_rate: int = SAMPLE_RATE) -> None:
        if bitrate_kbps not in MP3_BITRATES_KBPS:
            raise ValueError(f"bitrate must be one of {MP3_BITRATES_KBPS} kbit/s")
        if sample_rate not in _SAMPLE_RATE_INDEX:
            raise ValueError("sample rate must be an MPEG-2 rate (16, 22.05 or 24 kHz)")
        self.bitrate_kbps = bitrate_kbps
        self.sample_rate = sample_rate
        self.frame_bytes = 72_000 * bitrate_kbps // sample_rate
        self.samples = 0
        self.bytes_out = 0
        self._encoder = lameenc.Encoder()
        self._encoder.set_bit_rate(bitrate_kbps)
        self._encoder.set_in_sample_rate(sample_rate)
        self._encoder.set_out_sample_rate(sample_rate)
        self._encoder.set_channels(1)
        self._encoder.set_quality(LAME_QUALITY)
        self._flushed = False

    def encode(self, pcm: bytes | bytearray | memoryview) -> bytes:
        """MP3 frames for ``pcm`` (whole samples) and whatever the encoder still held."""
        if self._flushed:
            raise RuntimeError("the MP3 stream is already flushed")
        if len(pcm) % 2:
            raise ValueError("PCM16 audio must have an even number of bytes")
        if not pcm:
            return b""
        self.samples += len(pcm) // 2
        samples = np.frombuffer(pcm, dtype="<i2")
        parts = []
        for start in range(0, len(samples), _MAKE_UP_SAMPLES):  # small windows: no whole float copy
            raised = samples[start : start + _MAKE_UP_SAMPLES] * _MAKE_UP
            np.clip(np.rint(raised, out=raised), -32768, 32767, out=raised)
            parts.append(self._encoder.encode(raised.astype("<i2").tobytes()))
        out = b"".join(parts)
        self.bytes_out += len(out)
        return out

    def flush(self) -> bytes:
        """The last frames (the encoder's buffered samples, padded to a whole frame)."""
        if self._flushed:
            return b""
        self._flushed = True
        out = bytes(self._encoder.flush())
        self.bytes_out += len(out)
        return out

    @property
    def frames(self) -> int:
        """Audio frames out so far (every frame has :attr:`frame_bytes` bytes)."""
        return self.bytes_out // self.frame_bytes

    def info_frame(self) -> bytes:
        """The Info/LAME frame for everything encoded (call after :meth:`flush`)."""
        if not self._flushed:
            raise RuntimeError("flush the MP3 stream before building its Info frame")
        return info_frame(
            frames=self.frames,
            audio_bytes=self.bytes_out,
            samples=self.samples,
            bitrate_kbps=self.bitrate_kbps,
            sample_rate=self.sample_rate,
        )


def info_frame(*, frames: int, audio_bytes: int, samples: int, bitrate_kbps: int, sample_rate: int) -> bytes:
    """The first frame of a CBR MPEG-2 Layer III mono file: Info tag and LAME tag.

    ``frames`` and ``audio_bytes`` count the audio frames that follow it; ``samples`` is
    the number of PCM samples encoded (for the encoder padding). As LAME writes it, the
    frame count leaves this frame out and the byte count includes it. Its bitrate is the
    stream's, or 64 kbit/s when a smaller frame could not hold the tags.
    """
    tag_kbps = bitrate_kbps
    while 72_000 * tag_kbps // sample_rate < _TAG_BYTES:
        tag_kbps = next(k for k in sorted(_BITRATE_INDEX) if k > tag_kbps)
    size = 72_000 * tag_kbps // sample_rate
    header = bytes(
        (
            0xFF,
            0xF3,  # MPEG-2, Layer III, no CRC
            (_BITRATE_INDEX[tag_kbps] << 4) | (_SAMPLE_RATE_INDEX[sample_rate] << 2),
            0xC4,  # mono, original
        )
    )
    total_bytes = audio_bytes + size
    toc = bytes(min(255, (256 * i) // 100) for i in range(100))  # CBR: bytes grow linearly with time
    padding = frames * SAMPLES_PER_FRAME - samples - ENCODER_DELAY
    if not 0 <= padding < 4096 or ENCODER_DELAY >= 4096:
        raise ValueError("the frame and sample counts do not belong to one LAME stream")
    xing = b"Info" + struct.pack(">III", _XING_FLAGS, frames, total_bytes) + toc + struct.pack(">I", 0)
    delay_padding = (ENCODER_DELAY << 12) | padding
    lame = (
        _ENCODER_VERSION
        + bytes((0x01, 0))  # tag revision 0, CBR; lowpass unknown
        + bytes(8)  # peak amplitude and replay gains: not computed
        + bytes((0, min(255, bitrate_kbps)))  # encoding flags and ATH; bitrate
        + delay_padding.to_bytes(3, "big")
        + bytes(4)  # misc, MP3 gain, preset and surround
        + struct.pack(">I", total_bytes)  # music length: the whole file without ID3 tags
        + bytes(2)  # music CRC: not computed (readers only compare it when it is set)
    )
    body = header + bytes(_SIDE_INFO_BYTES) + xing + lame
    body += struct.pack(">H", crc16(body))
    assert len(body) == _TAG_BYTES
    return body + bytes(size - len(body))


def crc16(data: bytes) -> int:
    """CRC-16/ARC (polynomial 0x8005, reflected), the LAME tag's checksum."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc
