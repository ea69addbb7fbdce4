"""Loudness leveling (podcast.audio.loudness) on signals of known level, measured with
pyloudnorm and an independent 4x true-peak estimate (scipy's resample_poly)."""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm
import pytest
from scipy.signal import resample_poly

from podcast.audio.loudness import CEILING_DBTP, TARGET_LUFS, Leveled, combined_lufs, level_in_place

RATE = 24_000


def speechlike(seconds: float, level: float, seed: int = 0) -> bytearray:
    """Bursts of harmonics with pauses (crest factor like speech), peaking near ``level``."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 110 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 2.3 * t + rng.uniform(0, 6)), 0, None) ** 2
    x = voiced * envelope
    x = x / np.max(np.abs(x)) * level
    return bytearray(np.round(x * 32767).astype("<i2").tobytes())


def measure(buffer: bytearray) -> tuple[float, float]:
    x = np.frombuffer(buffer, "<i2").astype(np.float64) / 32768
    lufs = pyloudnorm.Meter(RATE).integrated_loudness(x)
    peak = 20 * math.log10(np.max(np.abs(resample_poly(x, 4, 1))))
    return lufs, peak


@pytest.mark.parametrize("level", [0.02, 0.2, 0.99])
def test_quiet_and_loud_segments_leave_at_the_target_under_the_ceiling(level: float) -> None:
    buffer = speechlike(6.0, level)
    before, _ = measure(buffer)

    result = level_in_place(buffer)

    lufs, peak = measure(buffer)
    assert abs(lufs - TARGET_LUFS) <= 0.3, (before, lufs)
    assert peak <= CEILING_DBTP - 0.5
    assert result.lufs == pytest.approx(lufs, abs=0.05)
    assert result.measured_lufs == pytest.approx(before, abs=0.05)
    assert len(buffer) == 6 * RATE * 2


def test_the_limiter_gain_moves_smoothly() -> None:
    """A spike far above the rest is limited by a gain that glides (no step: no click)."""
    buffer = speechlike(4.0, 0.3)
    x = np.frombuffer(buffer, "<i2").astype(np.float64)
    at = RATE + int(np.argmax(np.abs(x[RATE : 2 * RATE])))  # inside a voiced burst
    x[at : at + 5] = 32000
    buffer[:] = np.round(x).astype("<i2").tobytes()

    result = level_in_place(buffer)

    y = np.frombuffer(buffer, "<i2").astype(np.float64)
    _, peak = measure(buffer)
    assert peak <= CEILING_DBTP
    around = slice(at - 240, at + 240)  # 10 ms either side: all voiced
    gain = y[around] / (x[around] * 10 ** (result.gain_db / 20))
    assert gain.min() < 0.5  # the spike was limited hard
    assert np.max(np.abs(np.diff(gain))) < 0.05  # ...by a gain without steps


def test_silence_and_very_short_audio_are_left_alone() -> None:
    silent = bytearray(RATE * 2)
    short = speechlike(0.3, 0.5)
    original = bytes(short)

    assert level_in_place(silent).lufs is None
    assert level_in_place(short).gain_db == 0.0
    assert bytes(short) == original
    assert level_in_place(bytearray()).seconds == 0.0


def test_combined_loudness_is_the_power_mean_by_duration() -> None:
    parts = [Leveled(10.0, -30.0, -16.0, 14.0, -3.0), Leveled(30.0, -20.0, -16.0, 4.0, -3.0)]
    assert combined_lufs(parts) == pytest.approx(-16.0)
    assert combined_lufs([Leveled(1.0, None, None, 0.0, None)]) is None
    mixed = combined_lufs([Leveled(1.0, -20, -20.0, 0, -3), Leveled(1.0, -10, -10.0, 0, -3)])
    assert mixed == pytest.approx(10 * math.log10((10**-2 + 10**-1) / 2))
