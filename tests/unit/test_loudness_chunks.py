"""Leveling's chunked internals (podcast.audio.loudness) give, to the bit, what computing over
the whole segment gives: the K-weighted audio kept only as the filters' state per chunk, the
true peaks found a chunk of candidates at a time and only those reaching the floor kept."""

from __future__ import annotations

import math

import numpy as np
import pytest

from podcast.audio.loudness import _Meter, _oversampled, _TruePeaks, true_peak_dbtp

RATE = 24_000


def _direct_true_peak(x: np.ndarray) -> float:
    """The 4x true peak from every oversampled value (the interpolator, whole)."""
    return 20 * math.log10(max(np.max(np.abs(_oversampled(x))), np.max(np.abs(x))))


def test_true_peaks_are_found_in_pieces_as_over_the_whole() -> None:
    """Several chunks of candidates, peaks at both ends."""
    rng = np.random.default_rng(11)
    x = np.clip(rng.normal(0, 0.3, 3 * 65_536 + 777), -1, 1)
    x[0], x[-1] = 0.999, -0.999
    assert true_peak_dbtp(x) == pytest.approx(_direct_true_peak(x), abs=1e-9)

    floor = 0.5
    peaks = _TruePeaks.above(x, floor)
    direct = np.maximum(np.abs(_oversampled(x)).reshape(len(x), 4).max(axis=1), np.abs(x))
    np.testing.assert_array_equal(peaks.at, np.flatnonzero(direct >= floor))
    np.testing.assert_allclose(peaks.peaks, direct[direct >= floor], rtol=0, atol=1e-12)


def test_the_weighted_audio_is_filtered_again_to_the_bit() -> None:
    rng = np.random.default_rng(5)
    t = np.arange(9 * RATE) / RATE
    x = np.round(np.sin(2 * np.pi * 150 * t) * np.abs(np.sin(2 * np.pi * 2.1 * t)) * 12_000)
    x = (x + rng.normal(0, 300, len(x))).astype("<i2")
    meter = _Meter(len(x), RATE)
    whole = meter.weighted(x, 1 / 32768)
    powers, weighted = meter.analysed(x, 1 / 32768)

    np.testing.assert_array_equal(powers, meter.powers(whole))
    for start, stop in ((0, 10), (65_530, 65_542), (100_000, 200_000), (len(x) - 5, len(x)), (7, 7)):
        np.testing.assert_array_equal(weighted[start:stop], whole[start:stop])
