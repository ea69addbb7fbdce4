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

from podcast.audio import SAMPLE_RATE

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


def true_peak_dbtp(x: NDArray[np.float64]) -> float:
    """The true peak of ``x`` (floats, full scale 1.0) in dBTP, 4× oversampled."""
    if not len(x):
        return -math.inf
    peak = float(max(np.max(np.abs(_oversampled(x))), np.max(np.abs(x))))
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def limit_true_peak(
    x: NDArray[np.float64], ceiling_dbtp: float, sample_rate: int = SAMPLE_RATE
) -> NDArray[np.float64]:
    """``x`` with a smooth gain that keeps every 4× oversampled peak at or under ``ceiling_dbtp``
    (``x`` itself, the same object, when no peak is over).

    The gain each sample needs is spread over :data:`LOOKAHEAD_SECONDS` either side by a
    minimum filter, then smoothed by a moving average no wider than that, so it never rises
    above what any sample needs and never jumps.
    """
    ceiling = 10 ** (ceiling_dbtp / 20)
    over = np.abs(_oversampled(x))
    peaks = np.maximum(over.reshape(len(x), OVERSAMPLING).max(axis=1), np.abs(x))
    needed = np.minimum(1.0, ceiling / np.maximum(peaks, 1e-12))
    if needed.min() >= 1.0:
        return x
    width = max(1, round(LOOKAHEAD_SECONDS * sample_rate))
    spread = minimum_filter1d(needed, size=2 * width + 1, mode="nearest")
    result: NDArray[np.float64] = x * uniform_filter1d(spread, size=width, mode="nearest")
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
    x = _samples(buffer)
    meter = pyloudnorm.Meter(sample_rate)
    measured = _loudness(meter, x)
    seconds = len(x) / sample_rate
    if measured is None:
        peak = true_peak_dbtp(x) if len(x) else None
        return Leveled(seconds, None, None, 0.0, peak)
    limiter_ceiling = ceiling_dbtp - LIMITER_MARGIN_DB
    # K-weighting is linear, so a gain moves the loudness by exactly that many dB; only the
    # limiter takes some away, and the next passes give it back (speech with sharp peaks
    # needs three or four).
    gain_db = target_lufs - measured
    y = x
    level: float | None = None
    for _ in range(_PASSES):
        gained = x * 10 ** (gain_db / 20)
        y = limit_true_peak(gained, limiter_ceiling, sample_rate)
        if y is gained:  # nothing to limit: the loudness is what the gain made it
            level = measured + gain_db
            break
        level = _loudness(meter, y)
        if level is None or abs(level - target_lufs) <= _TOLERANCE_LU:
            break
        gain_db += target_lufs - level
    pcm = np.clip(np.round(y * 32768.0), -32768, 32767).astype("<i2")
    buffer[:] = pcm.tobytes()
    return Leveled(seconds, measured, level, gain_db, true_peak_dbtp(y))


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
