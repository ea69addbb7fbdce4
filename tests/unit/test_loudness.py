"""Loudness leveling (podcast.audio.loudness) on signals of known level, measured with
pyloudnorm and an independent 4x true-peak estimate (scipy's resample_poly), and the fast
paths (vectorised meter, true peaks only where they can matter) against the direct ones."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pyloudnorm
import pytest
from scipy.signal import resample_poly, sosfilt

from podcast.audio import loudness
from podcast.audio.loudness import (
    CEILING_DBTP,
    TARGET_LUFS,
    Leveled,
    _Meter,
    _oversampled,
    _peaks_at,
    combined_lufs,
    level_in_place,
    limit_true_peak,
    true_peak_dbtp,
)

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


# --- The fast paths against the direct computations ------------------------------------------


def _direct_true_peak(x: np.ndarray) -> float:
    """The 4x true peak from every oversampled value (the interpolator, whole)."""
    return 20 * math.log10(max(np.max(np.abs(_oversampled(x))), np.max(np.abs(x))))


@pytest.mark.parametrize("seed", range(4))
def test_the_meter_measures_what_pyloudnorm_measures(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.frombuffer(speechlike(rng.uniform(0.4, 9.0), rng.uniform(0.01, 0.9), seed), "<i2") / 32768
    x = x * (rng.uniform(0, 1, len(x)) > 0.3 * seed / 3)  # drop-outs: blocks under the gates too
    meter = _Meter(len(x), RATE)

    ours = meter.integrated(meter.powers(meter.energies(x)))

    assert ours == pytest.approx(pyloudnorm.Meter(RATE).integrated_loudness(x), abs=1e-9)


def test_scipys_in_place_filter_is_what_sosfilt_computes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The meter filters with scipy's kernel in place; the public ``sosfilt`` is its
    fallback, and both give the same K-weighted audio."""
    x = np.frombuffer(speechlike(2.0, 0.4, 5), "<i2") / 32768
    meter = _Meter(len(x), RATE)
    fast = meter.weighted(x)
    monkeypatch.setattr(loudness, "_sosfilt_in_place", None)
    np.testing.assert_array_equal(meter.weighted(x), fast)
    gain = meter._gain
    expected = sosfilt(meter._sos, x * gain + loudness._DENORMAL_GUARD)
    np.testing.assert_allclose(fast, expected, rtol=1e-12, atol=1e-18)


def part_sums(meter: _Meter, weighted: np.ndarray) -> np.ndarray:
    """The sum of squares of ``weighted`` between consecutive block bounds, one part at a time."""
    edges = [*meter._bounds.tolist(), len(weighted)]
    return np.array([np.sum(weighted[a:b] ** 2) for a, b in itertools.pairwise(edges)])


@pytest.mark.parametrize("extra", [-1, 0, 1, 24_000 * 57 + 3])
def test_long_audio_filtered_as_two_lanes_measures_what_one_lane_measures(extra: int) -> None:
    """From four filter tails on, the meter filters the two halves of the audio at once
    (the second from a warm-up just before it); its parts' energies are those of the audio
    K-weighted in one pass, limiter spans on either lane and across the middle included."""
    tail = round(loudness._FILTER_TAIL_SECONDS * RATE)
    length = loudness._PAIRED_MIN_TAILS * tail + extra
    x = np.frombuffer(speechlike(length / RATE + 1, 0.4, 9), "<i2")[:length] / 32768
    meter = _Meter(length, RATE)
    rng = np.random.default_rng(4)
    middle = length // 2
    starts = (100, middle - 250, middle + tail, length - 500)
    spans = [(start, rng.uniform(0.2, 1.0, 500)) for start in starts]
    limited = 1.3 * x
    for start, g in spans:
        limited[start : start + len(g)] *= g

    expected = part_sums(meter, meter.weighted(limited))
    np.testing.assert_allclose(meter.energies(x, 1.3, spans=spans), expected, rtol=1e-9, atol=1e-18)
    np.testing.assert_allclose(meter.energies(x), part_sums(meter, meter.weighted(x)), rtol=1e-9, atol=1e-18)


def test_a_change_is_measured_from_what_it_changes() -> None:
    """Block powers of ``gain * x`` limited in spans, from the parts' energies of ``x``,
    equal to measuring the limited audio whole (spans at both ends, close together, apart)."""
    x = np.frombuffer(speechlike(5.0, 0.4, 3), "<i2") / 32768
    meter = _Meter(len(x), RATE)
    sums = meter.energies(x)
    rng = np.random.default_rng(3)
    spans = [(start, rng.uniform(0.2, 1.0, 300)) for start in (0, 2_000, 2_400, 50_000, len(x) - 300)]
    changed = 1.7 * x
    for start, g in spans:
        changed[start : start + len(g)] *= g

    ours = meter.limited(sums, x, 1.0, 1.7, spans)

    expected = meter.powers(meter.energies(changed))
    np.testing.assert_allclose(meter.powers(ours), expected, rtol=1e-9, atol=1e-15)
    assert not np.allclose(meter.powers(sums) * 1.7**2, expected, rtol=1e-6)  # the spans changed it


@pytest.mark.parametrize("level", [0.001, 0.3, 0.999])
def test_true_peaks_are_those_of_every_oversampled_value(level: float) -> None:
    rng = np.random.default_rng(int(level * 1000))
    voiced = np.frombuffer(speechlike(2.0, level, 1), "<i2") / 32768
    noise = np.clip(rng.normal(0, level / 3, 4_000), -1, 1)  # energy up to Nyquist: big overshoots
    edges = np.concatenate(([level, -level], voiced[:50], noise, [level]))  # peaks at both ends
    for x in (voiced, noise, edges):
        assert true_peak_dbtp(x) == pytest.approx(_direct_true_peak(x), abs=1e-9)
        at = np.arange(len(x))
        direct = np.maximum(np.abs(_oversampled(x)).reshape(len(x), 4).max(axis=1), np.abs(x))
        np.testing.assert_allclose(_peaks_at(x, at), direct, rtol=0, atol=1e-12)


def test_the_limiter_keeps_every_oversampled_value_at_its_ceiling() -> None:
    """Limited only where the true peaks are (found without oversampling everything), yet
    every oversampled value ends up at the ceiling (within 0.001 dB: the gain glides
    between samples, which the interpolated values between them see)."""
    x = np.frombuffer(speechlike(3.0, 0.9, 2), "<i2") / 32768
    x = x + np.clip(np.random.default_rng(2).normal(0, 0.05, len(x)), -1, 1)  # sharp peaks
    limited = limit_true_peak(x, -6.0)

    assert _direct_true_peak(limited) <= -6.0 + 0.001
    assert _direct_true_peak(x) > -3.0  # there was plenty to limit
    assert limit_true_peak(x, 3.0) is x  # nothing over: the same object


def test_audio_limited_in_every_pass_keeps_its_true_peak_under_the_limiter_ceiling() -> None:
    """Heavy-tailed peaks over quiet speech: every pass limits (the level never quite gets
    back), and the stored audio is the last pass's, its true peak at the limiter's ceiling."""
    rng = np.random.default_rng(7)
    speech = np.frombuffer(speechlike(8.0, 0.05, 4), "<i2")
    buffer = bytearray(np.clip(speech + rng.standard_t(2, len(speech)) * 300, -32768, 32767).astype("<i2"))

    result = level_in_place(buffer)

    leveled = np.frombuffer(buffer, "<i2") / 32768
    assert result.lufs is not None
    assert abs(result.lufs - TARGET_LUFS) > 0.1  # it never got there
    assert _direct_true_peak(leveled) <= CEILING_DBTP - 1.0 + 0.01
    assert result.true_peak_dbtp == pytest.approx(CEILING_DBTP - 1.0, abs=0.01)


def test_filtering_through_digital_silence_stays_out_of_subnormal_floats() -> None:
    # A burst and then 20 s of exact zeros, as speech with pauses (and the zeros between the
    # limiter's spans) gives the K-weighting filters: without the guard their states decay into
    # subnormal floats, which the CPU handles some 30 times slower.
    x = np.zeros(20 * RATE)
    x[:RATE] = np.random.default_rng(3).standard_normal(RATE) * 0.1
    meter = _Meter(len(x), RATE)
    weighted = meter.weighted(x)
    tiny = np.finfo(np.float64).tiny
    subnormal = (weighted != 0) & (np.abs(weighted) < tiny)
    assert not subnormal.any(), f"{int(subnormal.sum())} subnormal samples"
    # and the guard changes nothing that can be measured
    ours = meter.integrated(meter.powers(meter.energies(x)))
    assert ours == pytest.approx(pyloudnorm.Meter(RATE).integrated_loudness(x), abs=1e-9)


@pytest.mark.parametrize("level", [0.05, 0.5, 0.999])
def test_screening_keeps_every_sample_whose_true_peak_exceeds_the_threshold(level: float) -> None:
    """Tiles far under the threshold are passed over and the rest estimated in float32: no
    sample over the threshold is ever left out, whether PCM16 or floats, at any threshold."""
    rng = np.random.default_rng(int(level * 100))
    voiced = np.frombuffer(speechlike(1.0, level, 6), "<i2")
    noise = np.clip(rng.normal(0, level / 3, 3_000), -1, 1)
    for x, unit in ((voiced, 32768.0), (voiced / 32768, 1.0), (noise, 1.0)):
        as_float = np.asarray(x, dtype=np.float64) / unit
        direct = np.maximum(np.abs(_oversampled(as_float)).reshape(len(x), 4).max(axis=1), np.abs(as_float))
        for fraction in (0.3, 0.8, 0.95, 1.0):
            threshold = fraction * float(direct.max())
            kept = loudness._screened(x, threshold * unit)
            assert set(np.flatnonzero(direct > threshold)) <= set(kept.tolist())
            assert len(kept) < len(x)  # and it did pass over something


def test_the_true_peak_is_reported_exactly_near_the_ceiling_and_as_a_bound_under_it() -> None:
    """Only peaks the limiter may act on are measured: a segment whose peak is well under the
    ceiling reports the bound 1.5 dB under the limiter's ceiling (and is under it), a limited
    one its true peak itself."""
    t = np.arange(5 * RATE) / RATE
    sine = bytearray(np.round(0.01 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes())
    rng = np.random.default_rng(8)
    speech = np.frombuffer(speechlike(5.0, 0.05, 8), "<i2")
    spiky = bytearray(np.clip(speech + rng.standard_t(2, len(speech)) * 300, -32768, 32767).astype("<i2"))

    low, limited = level_in_place(sine), level_in_place(spiky)

    assert not low.true_peak_exact
    assert low.true_peak_dbtp is not None
    assert low.true_peak_dbtp == pytest.approx(CEILING_DBTP - 1.0 - 1.5)
    assert _direct_true_peak(np.frombuffer(sine, "<i2") / 32768) < low.true_peak_dbtp - 6  # a sine: -12 dBTP
    assert limited.true_peak_exact
    stored = _direct_true_peak(np.frombuffer(spiky, "<i2") / 32768)  # rounded to PCM16
    assert limited.true_peak_dbtp == pytest.approx(stored, abs=0.001)


# --- Levelled in parts while streaming ---------------------------------------------------------

STEP = loudness.part_bin_samples(RATE)
LEAD = loudness.part_lead_samples(RATE)
CONTEXT = loudness.PART_CONTEXT_SAMPLES


def in_parts(buffer: bytearray, part: int) -> tuple[float, list[loudness.LeveledPart]]:
    """``buffer`` levelled as the stream stager does it: the opening sets the gain, each later
    part gets only its lead and context, the last one the whole as its window."""
    opened = loudness.level_opening(buffer[: (part + CONTEXT) * 2], part)
    assert opened is not None
    gain_db, first = opened
    parts = [first]
    begin = part
    samples = len(buffer) // 2
    while begin + part + CONTEXT <= samples:
        low = begin - LEAD
        window = buffer[low * 2 : (begin + part + CONTEXT) * 2]
        parts.append(loudness.level_part(window, low, begin, begin + part, gain_db))
        begin += part
    parts.append(loudness.level_part(buffer, 0, begin, samples, gain_db))
    return gain_db, parts


def whole_at(buffer: bytearray, gain_db: float) -> np.ndarray:
    """The whole of ``buffer`` at ``gain_db``, limited as level_in_place limits it."""
    pcm = np.frombuffer(buffer, "<i2").copy()
    gain = 10 ** (gain_db / 20)
    ceiling = 10 ** ((CEILING_DBTP - loudness.LIMITER_MARGIN_DB) / 20)
    peaks = loudness._TruePeaks.above(pcm, ceiling / gain / loudness._PEAK_HEADROOM, 1 / 32768)
    spans = loudness._limiter_gain(peaks, len(pcm), gain, ceiling, RATE)
    assert spans  # the limiter acts: these checks are about parts meeting its spans
    loudness._apply_gain(pcm, gain, spans, peaks.sample_peak)
    return pcm


def loud_speech(seconds: float, seed: int) -> bytearray:
    """Speech with sharp peaks everywhere (the limiter acts at every part's edges too)."""
    rng = np.random.default_rng(seed)
    speech = np.frombuffer(speechlike(seconds, 0.05, seed), "<i2").astype(np.float64)
    clicks = rng.standard_t(2, len(speech)) * 400
    return bytearray(np.clip(speech + clicks, -32768, 32767).astype("<i2").tobytes())


@pytest.mark.parametrize(
    ("part", "extra"), [(20 * STEP, 0), (20 * STEP, 1), (20 * STEP, CONTEXT - 1), (7 * STEP, 999)]
)
def test_parts_are_the_whole_levelled_at_the_openings_gain(part: int, extra: int) -> None:
    buffer = loud_speech(9.0, 3)[: (4 * part + CONTEXT + extra) * 2]

    gain_db, parts = in_parts(buffer, part)

    opening = bytearray(buffer[: (part + CONTEXT) * 2])
    assert gain_db == pytest.approx(20 * math.log10(10 ** (level_in_place(opening).gain_db / 20)), abs=3.0)
    joined = np.frombuffer(b"".join(bytes(p.pcm) for p in parts), "<i2")
    expected = whole_at(buffer, gain_db)
    assert len(joined) == len(expected) == len(buffer) // 2
    assert [p.begin for p in parts] == [k * part for k in range(len(parts))]
    # Limited exactly as the whole: a sample may differ by one step of rounding at most.
    difference = np.abs(joined.astype(np.int32) - expected)
    assert difference.max() <= 1
    assert np.count_nonzero(difference) <= 3
    spans = [span for p in parts for span in p.spans]
    assert spans
    assert all(a[0] + len(a[1]) <= b[0] for a, b in itertools.pairwise(spans))


def test_the_parts_measure_as_the_whole_and_stand_only_near_the_target() -> None:
    buffer = loud_speech(12.0, 5)
    gain_db, parts = in_parts(buffer, 40 * STEP)

    result = loudness.finish_parts(buffer, gain_db, parts)

    assert result is not None
    assert result.lufs is not None
    whole = level_in_place(bytearray(buffer))
    assert result.measured_lufs == pytest.approx(whole.measured_lufs, abs=1e-9)
    joined = np.frombuffer(b"".join(bytes(p.pcm) for p in parts), "<i2") / 32768
    assert result.lufs == pytest.approx(pyloudnorm.Meter(RATE).integrated_loudness(joined), abs=0.01)
    assert abs(result.lufs - TARGET_LUFS) <= loudness.STREAMED_TOLERANCE_LU
    assert result.true_peak_dbtp is not None
    assert result.true_peak_dbtp <= CEILING_DBTP - 1.0 + 0.01
    assert _direct_true_peak(joined) <= CEILING_DBTP - 1.0 + 0.02


def test_parts_levelled_at_a_gain_off_by_more_than_the_tolerance_are_refused() -> None:
    buffer = speechlike(12.0, 0.2, 4)
    gain_db, parts = in_parts(buffer, 40 * STEP)
    assert loudness.finish_parts(buffer, gain_db, parts) is not None
    for off in (2.0, -1.0):  # the limiter takes back some of a higher gain
        again = [
            loudness.level_part(buffer, 0, p.begin, p.begin + len(p.pcm) // 2, gain_db + off) for p in parts
        ]
        assert loudness.finish_parts(buffer, gain_db + off, again) is None


def test_an_opening_that_is_quieter_than_the_rest_is_refused_at_the_end() -> None:
    quiet, loud = speechlike(6.0, 0.05, 1), speechlike(20.0, 0.4, 2)
    buffer = quiet + loud
    gain_db, parts = in_parts(buffer, 40 * STEP)

    assert gain_db > 20  # from the quiet opening
    assert loudness.finish_parts(buffer, gain_db, parts) is None


def test_a_silent_opening_and_windows_without_their_lead_are_refused() -> None:
    silence = bytearray(2 * (40 * STEP + CONTEXT))
    assert loudness.level_opening(silence, 40 * STEP) is None
    buffer = speechlike(6.0, 0.2)
    with pytest.raises(ValueError, match="lead"):
        loudness.level_part(
            buffer[2 * (STEP * 20 - LEAD + 2) :], STEP * 20 - LEAD + 2, STEP * 20, STEP * 40, 0.0
        )
    with pytest.raises(ValueError, match="multiple"):
        loudness.level_part(buffer, 0, STEP * 20 + 1, STEP * 40, 0.0)
    with pytest.raises(ValueError, match="window"):
        loudness.level_part(buffer, 0, STEP * 20, len(buffer), 0.0)
