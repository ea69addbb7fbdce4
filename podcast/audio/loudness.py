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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np
import pyloudnorm
from numpy.typing import NDArray
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import firwin, sosfilt, upfirdn
from threadpoolctl import threadpool_limits

from podcast.audio import SAMPLE_RATE

# One BLAS thread for the process. The true-peak search multiplies small matrices; OpenBLAS
# splits each product across its threads, which then spin on the CPU waiting for the next
# one: leveling cost twice its own work (124 against 57 ms of CPU per audio minute on 2 cores,
# emulator speech at varied levels). Narrations already run side by side, so the threads
# bought no wall time either.
threadpool_limits(limits=1, user_api="blas")

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
_REACH: Final = 6
"""Each oversampled value between samples ``n`` and ``n + 1`` is a sum over ``x[n - 6 : n + 7]``."""


_Samples = NDArray[np.int16] | NDArray[np.float64]
"""PCM16 as it is stored, or floats."""


def _phase_matrix() -> NDArray[np.float64]:
    """``window @ matrix``: the :data:`OVERSAMPLING` interpolated values at a sample from
    the :data:`_REACH` samples either side of it (``window[s] = x[n - _REACH + s]``), exactly
    what :func:`_oversampled` computes there (its full convolution, zeros beyond the ends)."""
    span = 2 * _REACH + 1
    matrix = np.zeros((span, OVERSAMPLING))
    for s in range(span):
        for phase in range(OVERSAMPLING):
            tap = OVERSAMPLING * (_REACH - s) + phase + _DELAY
            if 0 <= tap < len(_INTERPOLATOR):
                matrix[s, phase] = _INTERPOLATOR[tap]
    return matrix


_PHASES: Final = _phase_matrix()
_OVERSHOOT: Final = max(1.0, float(np.abs(_PHASES).sum(axis=0).max()))
"""No interpolated value exceeds this many times the largest sample within :data:`_REACH`."""
_BLOCK_SECONDS: Final = 0.4
_BLOCK_STEP: Final = 0.25
"""BS.1770-4 gating blocks: 400 ms, 75 % overlap (pyloudnorm's defaults)."""
_ABSOLUTE_GATE_LUFS: Final = -70.0
_CHUNK: Final = 1 << 16
"""Whole-segment passes work this many samples at a time: memory stays small for any length."""
_FULL_SCALE: Final = 32768.0
_PEAK_HEADROOM: Final = 10 ** (1.5 / 20)
"""True peaks are found 1.5 dB under the ceiling, so later passes' gains need no new search."""
_FILTER_TAIL_SECONDS: Final = 0.5
"""After this long the K-weighting filter's response to a sample is below 1e-50 of it
(its slowest poles have radius 0.990 at 24 kHz): a change to the audio is followed this far."""
_DENORMAL_GUARD: Final = 1e-20
"""Added to every sample the K-weighting filters take. Their recursive states decay towards
zero through digital silence (pauses, the zeros between limited spans) into subnormal floats,
which the CPU handles some 30 times slower (measured: 218 against 7.7 ns a sample; espeak's
speech took 0.93 s a minute to level instead of 0.04 s). The guard keeps the states normal;
what it adds to a block's power (about 1e-40) is far below a float's resolution of it."""


def _oversampled(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """``x`` at 4× the rate, aligned with it (``OVERSAMPLING`` values per input sample)."""
    up: NDArray[np.float64] = upfirdn(_INTERPOLATOR, x, OVERSAMPLING)
    return up[_DELAY : _DELAY + len(x) * OVERSAMPLING]


def _peaks_at(samples: _Samples, at: NDArray[np.intp], scale: float = 1.0) -> NDArray[np.float64]:
    """The true peak at each sample ``at`` (sorted) of ``samples * scale``: the largest of
    ``|x[n]|`` and the magnitudes of the oversampled values that follow it (as
    :func:`_oversampled` gives them). Computed :data:`_CHUNK` samples at a time."""
    length = len(samples)
    peaks = np.empty(len(at))
    windows = np.empty((len(_PHASES), min(len(at), _CHUNK)))
    for begin in range(0, len(at), _CHUNK):
        part = at[begin : begin + _CHUNK]
        rows = windows[:, : len(part)]
        inner = part[0] >= _REACH and part[-1] < length - _REACH
        for s in range(len(_PHASES)):
            if inner:
                rows[s] = samples[part + (s - _REACH)]
            else:  # zeros beyond the ends (without padding a copy of the whole)
                spots = part + (s - _REACH)
                outside = (spots < 0) | (spots >= length)
                rows[s] = samples[np.clip(spots, 0, length - 1)]
                rows[s][outside] = 0.0
        between = np.abs(_PHASES.T @ rows).max(axis=0)
        peaks[begin : begin + len(part)] = np.maximum(between, np.abs(rows[_REACH]))
    return peaks * scale if scale != 1.0 else peaks


def _candidates(samples: _Samples, threshold: float) -> Iterator[NDArray[np.intp]]:
    """The samples whose true peak may exceed ``threshold`` (in the units of ``samples``):
    those within :data:`_REACH` of a sample beyond ``threshold / _OVERSHOOT`` either way
    (no other true peak can reach it). Sorted, once each, in pieces of :data:`_CHUNK` (the
    last one shorter), found a chunk of samples at a time: memory for one piece, whatever
    the length of the audio."""
    limit = threshold / _OVERSHOOT
    length = len(samples)
    pending: list[NDArray[np.intp]] = []
    count = 0
    for begin in range(0, length, _CHUNK):
        end = min(length, begin + _CHUNK)
        low = max(0, begin - _REACH)
        part = samples[low : min(length, end + _REACH)]
        hot = np.flatnonzero((part > limit) | (part < -limit)) + (low - begin)
        near = np.zeros(end - begin, dtype=bool)
        for offset in range(-_REACH, _REACH + 1):
            spots = hot + offset
            near[spots[(spots >= 0) & (spots < end - begin)]] = True
        pending.append(np.flatnonzero(near) + begin)
        count += len(pending[-1])
        while count >= _CHUNK or (end == length and count):
            joined = np.concatenate(pending)
            yield joined[:_CHUNK]
            pending, count = [joined[_CHUNK:]], len(joined) - min(_CHUNK, len(joined))


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


class _Meter:
    """ITU-R BS.1770-4 integrated loudness of mono audio of one length, computed as
    ``pyloudnorm.Meter(rate).integrated_loudness`` does (its K-weighting filters, its block
    bounds, its gates), with numpy instead of a Python loop per block, and split in two
    steps (filtered block powers, then gating) so a change to part of the audio is
    measured again from the parts it changes (:meth:`changed_powers`)."""

    def __init__(self, length: int, rate: int) -> None:
        stages = pyloudnorm.Meter(rate)._filters.values()
        self._sos = np.array([[*stage.b, *stage.a] for stage in stages])
        self._gain = math.prod(stage.passband_gain for stage in stages)
        self._length = length
        self._rate = rate
        count = int(np.round((length / rate - _BLOCK_SECONDS) / (_BLOCK_SECONDS * _BLOCK_STEP))) + 1
        steps = np.arange(count) * _BLOCK_STEP
        self._lower = (_BLOCK_SECONDS * steps * rate).astype(np.intp)
        self._upper = (_BLOCK_SECONDS * (steps + 1) * rate).astype(np.intp)
        self._scale = 1.0 / (_BLOCK_SECONDS * rate)
        self._tail = round(_FILTER_TAIL_SECONDS * rate)

    def weighted(self, x: _Samples, scale: float = 1.0) -> NDArray[np.float64]:
        """``x * scale`` through the K-weighting filters (zero initial state), a chunk at a time."""
        out = np.empty(len(x))
        state = np.zeros((len(self._sos), 2))
        factor = scale * self._gain
        for begin in range(0, len(x), _CHUNK):
            part = x[begin : begin + _CHUNK] * factor
            part += _DENORMAL_GUARD
            out[begin : begin + len(part)], state = sosfilt(self._sos, part, zi=state)
        return out

    def analysed(self, x: _Samples, scale: float = 1.0) -> tuple[NDArray[np.float64], _Weighted]:
        """The block powers of ``x * scale`` (as :meth:`powers` of :meth:`weighted` gives them,
        to the bit) and its K-weighted audio as a :class:`_Weighted`: in one pass, holding
        one chunk of floats at a time, never the whole (8 bytes a sample)."""
        states = np.empty((len(x) // _CHUNK + 1, len(self._sos), 2))
        factor = scale * self._gain

        def chunks() -> Iterator[NDArray[np.float64]]:
            state = np.zeros((len(self._sos), 2))
            for begin in range(0, len(x), _CHUNK):
                states[begin // _CHUNK] = state
                part = x[begin : begin + _CHUNK] * factor
                part += _DENORMAL_GUARD
                out, state = sosfilt(self._sos, part, zi=state)
                yield out

        powers = self._powers(chunks(), len(x))
        return powers, _Weighted(self._sos, x, factor, states)

    def _sums(self, values: NDArray[np.float64], offset: int = 0) -> NDArray[np.float64]:
        """Each block's sum of ``values`` (which start at sample ``offset``, zero elsewhere)."""
        total = np.concatenate(([0.0], np.cumsum(values)))
        last = len(values)
        upper = np.clip(self._upper - offset, 0, last)
        lower = np.clip(self._lower - offset, 0, last)
        sums: NDArray[np.float64] = total[upper] - total[lower]
        return sums

    def powers(self, weighted: NDArray[np.float64]) -> NDArray[np.float64]:
        """Each block's mean square of the K-weighted audio ``weighted``: the difference of
        the running sum of squares at its bounds (a chunk of squares at a time)."""
        chunks = (weighted[begin : begin + _CHUNK] for begin in range(0, len(weighted), _CHUNK))
        return self._powers(chunks, len(weighted))

    def _powers(self, chunks: Iterable[NDArray[np.float64]], length: int) -> NDArray[np.float64]:
        """:meth:`powers` of the K-weighted audio given as consecutive chunks of :data:`_CHUNK`."""
        bounds = np.union1d(self._lower, self._upper)
        running = np.zeros(len(bounds))
        carried = 0.0
        begin = 0
        for part in chunks:
            total = np.cumsum(part * part)
            total += carried
            first, last = np.searchsorted(bounds, (begin, begin + len(part)), side="right")
            running[first:last] = total[bounds[first:last] - begin - 1]
            carried = float(total[-1])
            begin += len(part)
        running[bounds > length] = carried  # a last block reaching past the end
        upper = running[np.searchsorted(bounds, self._upper)]
        lower = running[np.searchsorted(bounds, self._lower)]
        powers: NDArray[np.float64] = (upper - lower) * self._scale
        return powers

    def changed_powers(
        self,
        powers: NDArray[np.float64],
        weighted: NDArray[np.float64] | _Weighted,
        gain: float,
        changes: list[tuple[int, NDArray[np.float64]]],
    ) -> NDArray[np.float64]:
        """The block powers of ``gain * x + d``, from those of ``x`` (``powers``), its
        K-weighted samples (``weighted``) and ``d``: nonzero only in ``changes``, each a
        start sample and the values from there. K-weighting is linear, so the weighted
        audio is ``gain * weighted`` plus the filtered ``d``, which dies out within
        :data:`_FILTER_TAIL_SECONDS` of each change: only those stretches of ``weighted`` are
        read (a :class:`_Weighted` filters them again)."""
        result = powers * gain**2
        for start, values in _merged(changes, self._tail, self._length):
            filtered = self.weighted(values)
            stop = start + len(values)
            cross = 2.0 * gain * weighted[start:stop] * filtered + filtered * filtered
            result += self._sums(cross, start) * self._scale
        return result

    def integrated(self, powers: NDArray[np.float64]) -> float | None:
        """The gated loudness of blocks of ``powers`` (``None``: silent, nothing above the gates)."""
        with np.errstate(divide="ignore"):
            block_lufs = -0.691 + 10.0 * np.log10(powers)
        above = powers[block_lufs >= _ABSOLUTE_GATE_LUFS]
        if not len(above):
            return None
        relative = -0.691 + 10.0 * math.log10(float(np.mean(above))) - 10.0
        gated = powers[(block_lufs > relative) & (block_lufs > _ABSOLUTE_GATE_LUFS)]
        if not len(gated):
            return None
        value = -0.691 + 10.0 * math.log10(float(np.mean(gated)))
        return value if math.isfinite(value) else None


class _Weighted:
    """The K-weighted audio of one segment without holding it (8 bytes a sample): the
    filters' state at the start of every :data:`_CHUNK` (a few hundred bytes a minute).
    ``weighted[start:stop]`` filters the chunks it falls in again from their states, exactly
    as the whole was filtered, so it is the same to the bit (see :meth:`_Meter.analysed`).
    The last chunk filtered is kept: the stretches a pass reads come in order, often
    several in one chunk."""

    def __init__(
        self, sos: NDArray[np.float64], x: _Samples, factor: float, states: NDArray[np.float64]
    ) -> None:
        self._sos = sos
        self._x = x
        self._factor = factor
        self._states = states
        self._kept: tuple[int, NDArray[np.float64]] = (-1, np.empty(0))

    def __len__(self) -> int:
        return len(self._x)

    def _chunk(self, index: int) -> NDArray[np.float64]:
        if self._kept[0] != index:
            part = self._x[index * _CHUNK : (index + 1) * _CHUNK] * self._factor
            part += _DENORMAL_GUARD
            self._kept = (index, sosfilt(self._sos, part, zi=self._states[index])[0])
        return self._kept[1]

    def __getitem__(self, key: slice) -> NDArray[np.float64]:
        start, stop, _ = key.indices(len(self._x))
        out = np.empty(max(0, stop - start))
        for index in range(start // _CHUNK, (stop - 1) // _CHUNK + 1 if stop > start else 0):
            begin = index * _CHUNK
            low, high = max(start, begin), min(stop, begin + _CHUNK)
            out[low - start : high - start] = self._chunk(index)[low - begin : high - begin]
        return out


def _merged(
    changes: list[tuple[int, NDArray[np.float64]]], tail: int, length: int
) -> list[tuple[int, NDArray[np.float64]]]:
    """``changes`` (start, values; in order, not overlapping) gathered into runs that each
    end ``tail`` samples (or the audio's end) after their last change, zeros between."""
    groups: list[list[tuple[int, NDArray[np.float64]]]] = []
    reach = -1
    for start, values in changes:
        if not groups or start > reach:
            groups.append([])
        groups[-1].append((start, values))
        reach = max(reach, min(length, start + len(values) + tail))
    merged: list[tuple[int, NDArray[np.float64]]] = []
    for group in groups:
        begin = group[0][0]
        end = min(length, max(start + len(values) for start, values in group) + tail)
        run = np.zeros(end - begin)
        for start, values in group:
            run[start - begin : start - begin + len(values)] += values
        merged.append((begin, run))
    return merged


def true_peak_dbtp(x: NDArray[np.float64]) -> float:
    """The true peak of ``x`` (floats, full scale 1.0) in dBTP, 4× oversampled."""
    return _true_peak_dbtp(x)


def _true_peak_dbtp(samples: _Samples, scale: float = 1.0) -> float:
    if not len(samples):
        return -math.inf
    sample_peak = max(float(samples.max()), -float(samples.min()))
    if sample_peak <= 0:
        return -math.inf
    # Only samples near those within the overshoot of the sample peak can hold the true peak.
    found = [float(_peaks_at(samples, at, scale).max()) for at in _candidates(samples, sample_peak)]
    return 20 * math.log10(max(sample_peak * scale, *found))


@dataclass(frozen=True, slots=True)
class _TruePeaks:
    """The true peaks of some audio at every sample where they reach ``floor`` (``at``,
    sorted); every other sample's true peak is under ``floor``."""

    floor: float
    at: NDArray[np.intp]
    peaks: NDArray[np.float64]

    @classmethod
    def above(cls, samples: _Samples, floor: float, scale: float = 1.0) -> _TruePeaks:
        """Those of ``samples * scale``, measured a piece of candidates at a time: memory for
        one piece and the peaks kept (a few near the ceiling), not for every candidate (a
        sixth of speech's samples)."""
        at: list[NDArray[np.intp]] = [np.empty(0, dtype=np.intp)]
        peaks: list[NDArray[np.float64]] = [np.empty(0)]
        for candidates in _candidates(samples, floor / scale):
            found = _peaks_at(samples, candidates, scale)
            reaching = found >= floor
            at.append(candidates[reaching])
            peaks.append(found[reaching])
        return cls(floor, np.concatenate(at), np.concatenate(peaks))


def _limiter_gain(
    true_peaks: _TruePeaks, length: int, gain: float, ceiling: float, sample_rate: int
) -> list[tuple[int, NDArray[np.float64]]]:
    """Where the limiter's gain for ``gain * x`` is below 1: (start sample, the gain from
    there), in order; empty when no true peak is over ``ceiling``. ``true_peaks`` are those of
    ``x`` (``length`` samples), with ``gain * true_peaks.floor`` at most ``ceiling`` (linear).

    The gain each sample needs is spread over :data:`LOOKAHEAD_SECONDS` either side by a
    minimum filter, then smoothed by a moving average no wider than that, so it never rises
    above what any sample needs and never jumps. It is computed around each group of
    limited samples only: everywhere else every sample needs 1 and so the gain is 1.
    """
    assert gain * true_peaks.floor <= ceiling
    peaks = gain * true_peaks.peaks
    limited = peaks > ceiling
    at = true_peaks.at[limited]
    if not len(at):
        return []
    needed = ceiling / peaks[limited]
    width = max(1, round(LOOKAHEAD_SECONDS * sample_rate))
    reach = 2 * width + 2  # beyond what the two filters together look at (1.5 widths)
    groups = np.split(np.arange(len(at)), np.flatnonzero(np.diff(at) > 4 * reach) + 1)
    spans: list[tuple[int, NDArray[np.float64]]] = []
    for group in groups:
        first, last = int(at[group[0]]), int(at[group[-1]])
        begin, end = max(0, first - 2 * reach), min(length, last + 2 * reach + 1)
        local = np.ones(end - begin)
        local[at[group] - begin] = needed[group]
        spread = minimum_filter1d(local, size=2 * width + 1, mode="nearest")
        smooth = uniform_filter1d(spread, size=width, mode="nearest")
        keep_begin, keep_end = max(begin, first - reach), min(end, last + reach + 1)
        spans.append((keep_begin, smooth[keep_begin - begin : keep_end - begin]))
    return spans


def _limited_true_peak(
    pcm: NDArray[np.int16],
    true_peaks: _TruePeaks,
    gain: float,
    spans: list[tuple[int, NDArray[np.float64]]],
) -> float:
    """The true peak (dBTP) of the leveled audio: ``pcm`` (of ``true_peaks``) at ``gain``,
    limited in ``spans``. Away from the spans it is ``gain`` times those peaks (linear);
    near them it is measured on the limited audio; when that cannot show the peak is above
    every other sample's (``gain * true_peaks.floor``), the leveled audio is measured whole."""
    length = len(pcm)
    best = 0.0
    for start, g in spans:
        stop = start + len(g)
        begin, end = max(0, start - 2 * _REACH), min(length, stop + 2 * _REACH)
        local = pcm[begin:end].astype(np.float64)
        local *= gain / _FULL_SCALE
        local[start - begin : stop - begin] *= g
        inside = np.arange(max(0, start - _REACH), min(length, stop + _REACH)) - begin
        best = max(best, float(_peaks_at(local, inside).max()))
    # The true peaks not within _REACH of a span (spans are in order: the union of their
    # reaches is where one starting at or before a sample still covers it).
    kept = np.ones(len(true_peaks.at), dtype=bool)
    if spans:
        reach_starts = np.array([start - _REACH for start, _ in spans])
        reach_ends = np.maximum.accumulate([start + len(g) + _REACH for start, g in spans])
        last = np.searchsorted(reach_starts, true_peaks.at, side="right") - 1
        kept = (last < 0) | (true_peaks.at >= reach_ends[np.maximum(last, 0)])
    if kept.any():
        best = max(best, float(gain * true_peaks.peaks[kept].max()))
    if best < gain * true_peaks.floor:
        return _true_peak_dbtp(_leveled(pcm, gain, spans))
    return 20 * math.log10(best)


def _leveled(
    pcm: NDArray[np.int16], gain: float, spans: list[tuple[int, NDArray[np.float64]]]
) -> NDArray[np.float64]:
    """``pcm`` as floats (full scale 1.0) at ``gain``, limited in ``spans``."""
    y = pcm.astype(np.float64)
    y *= gain / _FULL_SCALE
    for start, g in spans:
        y[start : start + len(g)] *= g
    return y


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
    spans = _limiter_gain(_TruePeaks.above(x, ceiling), len(x), 1.0, ceiling, sample_rate)
    if not spans:
        return x
    result = x.copy()
    for start, gain in spans:
        result[start : start + len(gain)] *= gain
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
    :data:`_PASSES` times, until it is within 0.1 LU of the target. The audio is filtered
    once; each pass works only where the limiter acts. CPU-bound (about a millisecond per
    ten seconds of audio): call it in a worker thread.

    Memory: a few chunks of :data:`_CHUNK` floats, the filters' state per chunk and the true
    peaks near the ceiling, whatever the length of the buffer (no float copy of it is made);
    only the limiter's gain where it acts, and the changes it makes, are floats per sample.
    """
    pcm = np.frombuffer(buffer, dtype="<i2")  # read and written in place
    length = len(pcm)
    seconds = length / sample_rate
    scale = 1 / _FULL_SCALE
    meter = _Meter(length, sample_rate)
    weighted: _Weighted | None = None
    powers: NDArray[np.float64] | None = None
    if length >= _MIN_SECONDS * sample_rate:
        powers, weighted = meter.analysed(pcm, scale)
    measured = meter.integrated(powers) if powers is not None else None
    if measured is None or weighted is None or powers is None:
        return Leveled(seconds, None, None, 0.0, _true_peak_dbtp(pcm, scale) if length else None)
    ceiling = 10 ** ((ceiling_dbtp - LIMITER_MARGIN_DB) / 20)
    sample_peak = max(int(pcm.max()), -int(pcm.min())) * scale
    # K-weighting is linear, so a gain moves the loudness by exactly that many dB; only the
    # limiter takes some away, and the next passes give it back (speech with sharp peaks
    # needs three or four). Each pass measures again only around what the limiter changed.
    gain_db = target_lufs - measured
    spans: list[tuple[int, NDArray[np.float64]]] = []
    true_peaks: _TruePeaks | None = None
    level: float | None = None
    for _ in range(_PASSES):
        gain = 10 ** (gain_db / 20)
        if true_peaks is None or gain * true_peaks.floor > ceiling:
            # Found once with room for the next passes' gains (they rarely add 1.5 dB), and
            # at least from the sample peak, so the largest found is the true peak.
            floor = min(ceiling / gain / _PEAK_HEADROOM, sample_peak)
            true_peaks = _TruePeaks.above(pcm, floor, scale)
        spans = _limiter_gain(true_peaks, length, gain, ceiling, sample_rate)
        if not spans:  # nothing to limit: the loudness is what the gain made it
            level = measured + gain_db
            break
        changes = [(start, pcm[start : start + len(g)] * (gain * scale) * (g - 1.0)) for start, g in spans]
        level = meter.integrated(meter.changed_powers(powers, weighted, gain, changes))
        if level is None or abs(level - target_lufs) <= _TOLERANCE_LU:
            break
        gain_db += target_lufs - level
    del weighted
    assert true_peaks is not None  # the audio is at ``gain``, which made ``spans``
    peak = _limited_true_peak(pcm, true_peaks, gain, spans)
    for begin in range(0, length, _CHUNK):
        end = min(length, begin + _CHUNK)
        part = pcm[begin:end] * (gain * scale)
        for start, g in spans:
            low, high = max(begin, start), min(end, start + len(g))
            if low < high:
                part[low - begin : high - begin] *= g[low - start : high - start]
        np.multiply(part, _FULL_SCALE, out=part)
        np.rint(part, out=part)
        np.clip(part, -32768, 32767, out=part)
        pcm[begin:end] = part
    return Leveled(seconds, measured, level, gain_db, peak)


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
