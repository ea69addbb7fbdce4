"""Who speaks in a stretch of audio: a pitch estimate, and the nearest of known voices.

The emulator's engines give each realtime voice its own pitch (the synthetic engine's
:func:`emulator.speech.voice_pitch_hz`, Piper shifted by :func:`emulator.speech.piper_semitones`,
espeak-ng's voice variants), so the median fundamental frequency of a turn tells voices apart
without trusting anything the service says about them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from emulator.speech import voice_pitch_hz
from podcast.engine.audio import SAMPLE_RATE

FRAME_SECONDS = 0.04
MIN_PITCH_HZ = 60.0
MAX_PITCH_HZ = 400.0


def pitch_hz(pcm: bytes | bytearray | memoryview, sample_rate: int = SAMPLE_RATE) -> float | None:
    """The median fundamental frequency of the voiced frames of PCM16 mono ``pcm`` (frames of
    40 ms, loud enough, whose autocorrelation peak in 60-400 Hz is at least half the frame's
    energy), or ``None`` when none is voiced."""
    samples = np.frombuffer(bytes(pcm), "<i2").astype(np.float64)
    frame = int(FRAME_SECONDS * sample_rate)
    count = samples.size // frame
    if count == 0:
        return None
    frames = samples[: count * frame].reshape(count, frame)
    frames = frames - frames.mean(axis=1, keepdims=True)
    level = np.sqrt(np.mean(frames**2, axis=1))
    frames = frames[level >= max(200.0, 0.3 * float(np.median(level)))]
    if frames.size == 0:
        return None
    spectrum = np.fft.rfft(frames, n=2 * frame, axis=1)
    correlation = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :frame]
    # Unbiased: each lag's sum has frame - lag terms.
    correlation = correlation / (frame - np.arange(frame)) * frame
    shortest, longest = int(sample_rate / MAX_PITCH_HZ), int(sample_rate / MIN_PITCH_HZ)
    window = correlation[:, shortest : longest + 1]
    best = np.argmax(window, axis=1)
    strength = window[np.arange(len(best)), best] / np.maximum(correlation[:, 0], 1e-9)
    voiced = strength >= 0.5
    if not voiced.any():
        return None
    return float(np.median(sample_rate / (shortest + best[voiced])))


def nearest_voice(pitch: float, references: Mapping[str, float]) -> str:
    """The voice of ``references`` (voice → pitch in Hz) nearest ``pitch`` on a log scale."""
    return min(references, key=lambda voice: abs(np.log(pitch / references[voice])))


def identify_voice(
    pcm: bytes | bytearray | memoryview, voices: Mapping[str, float] | list[str] | tuple[str, ...]
) -> str | None:
    """Which of ``voices`` speaks ``pcm``: a mapping gives each voice's measured reference
    pitch (e.g. :func:`pitch_hz` of the engine's own speech); a list of names means the
    synthetic engine's base pitches. ``None`` when nothing in ``pcm`` is voiced."""
    references = voices if isinstance(voices, Mapping) else {voice: voice_pitch_hz(voice) for voice in voices}
    pitch = pitch_hz(pcm)
    return None if pitch is None else nearest_voice(pitch, references)
