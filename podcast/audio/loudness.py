"""Loudness to podcast levels: each segment at -16 LUFS integrated, true peak at most -1 dBTP.

A narration is made of segments from separate Realtime sessions (and, in one narration, the
model's level drifts between them); each is produced whole before it is stored, so each is
measured (ITU-R BS.1770-4 integrated loudness, with ``pyloudnorm``), brought to
:data:`TARGET_LUFS` with one gain, and passed through a look-ahead true-peak limiter
(:func:`limit_true_peak`) that keeps the 4× oversampled peak under the ceiling. Segments
then match each other (and voices match each other) to well within 1.5 LU, and the whole
narration, whose pauses are silence that BS.1770's gates leave out, measures the target.

The limiter aims :data:`LIMITER_MARGIN_DB` under the -1 dBTP ceiling: MP3 encoding raises
peaks a little, and the ceiling must hold for the decoded file too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import numpy as np
import pyloudnorm
from numpy.typing import NDArray
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import firwin, upfirdn

from podcast.audio import ANALYSIS_LOCK, SAMPLE_RATE

__all__ = [
    "CEILING_DBTP",
    "TARGET_LUFS",
    "Leveled",
    "combined_lufs",
    "level_in_place",
    "limit_true_peak",
    "true_peak_dbtp",
]

TARGET_LUFS: Final = -16.0
"""Integrated loudness of every narration (the common podcast target; Apple asks -16 ±1)."""
CEILING_DBTP: Final = -1.0
"""True peak never above this."""
LIMITER_MARGIN_DB: Final = 1.0
"""The limiter's own ceiling is this far below :data:`CEILING_DBTP` (room for MP3 overshoot)."""
OVERSAMPLING: Final = 4
"""BS.1770-4's true-peak meter: 4× oversampling."""
LOOKAHEAD_SECONDS: Final = 0.005
"""The limiter's gain reaches each peak smoothly over this long (no click, no distortion burst)."""
_MIN_SECONDS: Final = 0.4
"""BS.1770 measures 400 ms blocks: shorter audio has no integrated loudness."""
_PASSES: Final = 6
_TOLERANCE_LU: Final = 0.1
_INTERPOLATOR: Final = firwin(48, 1 / OVERSAMPLING, window=("kaiser", 6.0)) * OVERSAMPLING
"""A 48-tap (12 per phase) interpolating low-pass, the size BS.1770-4 Annex 2 uses."""
_DELAY: Final = (len(_INTERPOLATOR) - 1) // 2
_PEAK_BLOCK: Final = 1 << 15
"""Samples oversampled at a time."""
_PEAK_CONTEXT: Final = len(_INTERPOLATOR) // OVERSAMPLING + 2
"""Input samples either side of a block that its oversampled values depend on."""


def _oversampled(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """``x`` at 4× the rate, aligned with it (``OVERSAMPLING`` values per input sample)."""
    up: NDArray[np.float64] = upfirdn(_INTERPOLATOR, x, OVERSAMPLING)
    return up[_DELAY : _DELAY + len(x) * OVERSAMPLING]


@dataclass(frozen=True, slots=True)
class Leveled:
    """What :func:`level_in_place` did to one segment."""

    seconds: float
    measured_lufs: float | None
    """The loudness as it came (``None``: too short or silent to measure)."""
    lufs: float | None
    """The loudness after gain and limiting (``None`` when not measurable)."""
    gain_db: float
    true_peak_dbtp: float | None


def _samples(pcm: bytes | bytearray | memoryview) -> NDArray[np.float64]:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0


def _loudness(meter: pyloudnorm.Meter, x: NDArray[np.float64]) -> float | None:
    if len(x) < _MIN_SECONDS * meter.rate:
        return None
    value = float(meter.integrated_loudness(x))
    return value if math.isfinite(value) else None


def _sample_peaks(x: NDArray[np.float64]) -> NDArray[np.float32]:
    """Each sample's true peak: the largest of ``|x|`` and its 4× oversampled values there.
    Computed in blocks with the interpolator's context on each side, so the values are those
    of the whole signal oversampled at once, in a few blocks of memory."""
    peaks = np.empty(len(x), dtype=np.float32)
    for start in range(0, len(x), _PEAK_BLOCK):
        end = min(len(x), start + _PEAK_BLOCK)
        low, high = max(0, start - _PEAK_CONTEXT), min(len(x), end + _PEAK_CONTEXT)
        over = np.abs(_oversampled(x[low:high])).reshape(high - low, OVERSAMPLING).max(axis=1)
        peaks[start:end] = np.maximum(over[start - low : end - low], np.abs(x[start:end]))
    return peaks


def true_peak_dbtp(x: NDArray[np.float64]) -> float:
    """The true peak of ``x`` (floats, full scale 1.0) in dBTP, 4× oversampled."""
    if not len(x):
        return -math.inf
    peak = float(np.max(_sample_peaks(x)))
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def _limiter_gain(
    peaks: NDArray[np.float32], gain: float, ceiling_dbtp: float, sample_rate: int
) -> NDArray[np.float32] | None:
    """The limiter's smooth gain for a signal with these sample ``peaks`` raised by ``gain``
    (``None`` when no peak goes over ``ceiling_dbtp``): what each sample needs, spread over
    :data:`LOOKAHEAD_SECONDS` either side by a minimum filter, then smoothed by a moving
    average no wider than that, so it never rises above what any sample needs and never jumps."""
    ceiling = np.float32(10 ** (ceiling_dbtp / 20) / gain)
    needed = np.minimum(np.float32(1.0), ceiling / np.maximum(peaks, np.float32(1e-12)))
    if needed.min() >= 1.0:
        return None
    width = max(1, round(LOOKAHEAD_SECONDS * sample_rate))
    spread = minimum_filter1d(needed, size=2 * width + 1, mode="nearest")
    del needed
    smoothed: NDArray[np.float32] = uniform_filter1d(spread, size=width, mode="nearest")
    return smoothed


def limit_true_peak(
    x: NDArray[np.float64], ceiling_dbtp: float, sample_rate: int = SAMPLE_RATE
) -> NDArray[np.float64]:
    """``x`` with a smooth gain that keeps every 4× oversampled peak at or under ``ceiling_dbtp``
    (``x`` itself, the same object, when no peak is over); see :func:`_limiter_gain`."""
    envelope = _limiter_gain(_sample_peaks(x), 1.0, ceiling_dbtp, sample_rate)
    if envelope is None:
        return x
    result: NDArray[np.float64] = x * envelope
    return result


def level_in_place(
    buffer: bytearray,
    *,
    target_lufs: float = TARGET_LUFS,
    ceiling_dbtp: float = CEILING_DBTP,
    sample_rate: int = SAMPLE_RATE,
) -> Leveled:
    """Bring the PCM16 mono ``buffer`` to ``target_lufs`` with its true peak under
    ``ceiling_dbtp`` (less :data:`LIMITER_MARGIN_DB`), in place.

    Audio too short or too quiet to measure is left as it is. The loudness is measured
    again after limiting (the limiter takes some away) and the gain corrected, up to
    :data:`_PASSES` times, until it is within 0.1 LU of the target. CPU-bound (a few
    hundredths of the audio's duration): call it in a worker thread.
    """
    with ANALYSIS_LOCK:
        return _level(buffer, target_lufs, ceiling_dbtp, sample_rate)


def _level(buffer: bytearray, target_lufs: float, ceiling_dbtp: float, sample_rate: int) -> Leveled:
    # Memory: the sample peaks and the limiter's gain (float32) and one float64 copy of the
    # audio at a time, besides pyloudnorm's own while it measures.
    x = _samples(buffer)
    meter = pyloudnorm.Meter(sample_rate)
    measured = _loudness(meter, x)
    seconds = len(x) / sample_rate
    if measured is None:
        peak = true_peak_dbtp(x) if len(x) else None
        return Leveled(seconds, None, None, 0.0, peak)
    peaks = _sample_peaks(x)
    del x
    limiter_ceiling = ceiling_dbtp - LIMITER_MARGIN_DB
    # K-weighting is linear, so a gain moves the loudness by exactly that many dB; only the
    # limiter takes some away, and the next passes give it back (speech with sharp peaks
    # needs three or four). Peaks scale with the gain, so they are found once.
    gain_db = target_lufs - measured
    level: float | None = None
    y: NDArray[np.float64] | None = None
    for _ in range(_PASSES):
        gain = 10 ** (gain_db / 20)
        envelope = _limiter_gain(peaks, gain, limiter_ceiling, sample_rate)
        y = _samples(buffer)
        y *= gain
        if envelope is None:  # nothing to limit: the loudness is what the gain made it
            level = measured + gain_db
            break
        y *= envelope
        del envelope
        level = _loudness(meter, y)
        if level is None or abs(level - target_lufs) <= _TOLERANCE_LU:
            break
        gain_db += target_lufs - level
    assert y is not None
    del peaks
    peak_dbtp = true_peak_dbtp(y)
    y *= 32768.0
    np.round(y, out=y)
    np.clip(y, -32768, 32767, out=y)
    buffer[:] = y.astype("<i2").tobytes()
    return Leveled(seconds, measured, level, gain_db, peak_dbtp)


def combined_lufs(parts: Iterable[Leveled]) -> float | None:
    """The loudness of the parts played one after another, silence between them left out:
    the power mean of their loudness weighted by their durations (as BS.1770's gating
    would see segments that are each at one level). ``None`` when none was measurable."""
    weights = [(part.seconds, part.lufs) for part in parts if part.lufs is not None and part.seconds > 0]
    total = sum(seconds for seconds, _ in weights)
    if not total:
        return None
    power = sum(seconds * 10 ** (lufs / 10) for seconds, lufs in weights if lufs is not None) / total
    return 10 * math.log10(power)
