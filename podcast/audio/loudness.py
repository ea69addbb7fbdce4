"""Loudness to podcast levels: each segment at -16 LUFS integrated, true peak at most -1 dBTP.

A narration is made of segments from separate Realtime sessions (and, in one narration, the
model's level drifts between them); each is produced whole before it is stored, so each is
measured (ITU-R BS.1770-4 integrated loudness, with ``pyloudnorm``), brought to
:data:`TARGET_LUFS` with one gain, and passed through a look-ahead true-peak limiter
(:func:`limit_true_peak`) that keeps the 4× oversampled peak under the ceiling. Segments
then match each other (and voices match each other) to well within 1.5 LU, and the whole
narration, whose pauses are silence that BS.1770's gates leave out, measures the target.

A segment still streaming can be levelled in parts instead (:func:`level_opening`,
:func:`level_part`, :func:`finish_parts`): at the gain its opening alone would get, each part
limited exactly as within the whole at that gain; the whole is then measured as
:func:`level_in_place` measures it, and kept only within :data:`STREAMED_TOLERANCE_LU` of the
target (the caller levels it whole otherwise).

The limiter aims :data:`LIMITER_MARGIN_DB` under the -1 dBTP ceiling: MP3 encoding raises
peaks a little, and the ceiling must hold for the decoded file too.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final, TypeVar

import numpy as np
import pyloudnorm
from numpy.typing import NDArray
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import firwin, sosfilt, upfirdn
from threadpoolctl import threadpool_limits

try:  # scipy's own kernel behind sosfilt, in place: the wrapper copies its input and validates
    # every call (a third of the filtering's CPU at these chunk sizes); the public function
    # is the fallback, and a test checks the two agree.
    from scipy.signal._sosfilt import _sosfilt as _sosfilt_in_place
except ImportError:  # pragma: no cover - another scipy layout
    _sosfilt_in_place = None

from podcast.audio import SAMPLE_RATE

# One BLAS thread for the process. The true-peak search multiplies small matrices; OpenBLAS
# splits each product across its threads, which then spin on the CPU waiting for the next
# one: leveling cost twice its own work (124 against 57 ms of CPU per audio minute on 2 cores,
# emulator speech at varied levels). Narrations already run side by side, so the threads
# bought no wall time either.
threadpool_limits(limits=1, user_api="blas")

__all__ = [
    "CEILING_DBTP",
    "PART_CONTEXT_SAMPLES",
    "STREAMED_TOLERANCE_LU",
    "TARGET_LUFS",
    "Leveled",
    "LeveledPart",
    "combined_lufs",
    "finish_parts",
    "level_in_place",
    "level_opening",
    "level_part",
    "limit_true_peak",
    "part_bin_samples",
    "part_lead_samples",
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
_CHUNK: Final = 8000
"""Whole-segment passes work this many samples at a time, in buffers made once per pass: as
floats 64,000 bytes, under the allocator's mmap threshold as the app sets it
(``MALLOC_MMAP_THRESHOLD_=65536``, ``infra/app/function.bicep``). Every larger temporary array
would be mapped, faulted in page by page and unmapped again: with 64 k-sample chunks that
doubled leveling's CPU."""
_PASS_CHUNK: Final = 24000
"""The passes that only filter, square and scale (the meter, the gain) work this many samples
at a time: their buffer is made once per pass and every step writes into it, so no temporary
of this size is made (the true-peak products do make them: :data:`_CHUNK`), and a larger
chunk saves a third of their numpy calls' overhead; 192,000 bytes stay in a core's L2 cache."""
_TILE: Final = 256
"""True peaks are screened a tile of this many samples at a time (by its largest sample)."""
_ESTIMATE_MARGIN: Final = 2e-6
"""The float32 estimate of a true peak is within this fraction of ``_OVERSHOOT`` times the
largest sample of the exact value (13 products summed: at most 14 float32 roundings)."""
_FULL_SCALE: Final = 32768.0
_PEAK_HEADROOM: Final = 10 ** (1.5 / 20)
"""True peaks are found 1.5 dB under the ceiling, so later passes' gains need no new search."""
_FILTER_TAIL_SECONDS: Final = 0.5
"""After this long the K-weighting filter's response to a sample is below 1e-50 of it
(its slowest poles have radius 0.990 at 24 kHz): a change to the audio is followed this far."""
_PAIRED_MIN_TAILS: Final = 4
"""Audio at least this many filter tails long is filtered as two lanes at once
(:meth:`_Meter._paired_energies`): the second lane's warm-up is then at most a quarter of it."""
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
    inner = not len(at) or (at[0] >= _REACH and at[-1] < length - _REACH)
    padded, shift = (samples, -_REACH) if inner else (np.pad(samples, _REACH), 0)
    peaks = np.empty(len(at))
    windows = np.empty((len(_PHASES), min(len(at), _CHUNK)))
    for begin in range(0, len(at), _CHUNK):
        part = at[begin : begin + _CHUNK]
        rows = windows[:, : len(part)]
        for s in range(len(_PHASES)):
            rows[s] = padded[part + (s + shift)]
        between = np.abs(_PHASES.T @ rows).max(axis=0)
        peaks[begin : begin + len(part)] = np.maximum(between, np.abs(rows[_REACH]))
    return peaks * scale if scale != 1.0 else peaks


def _tile_peaks(samples: _Samples) -> NDArray[np.float64]:
    """The largest magnitude in each :data:`_TILE` samples of ``samples`` (the last tile may be short)."""
    length = len(samples)
    whole = length // _TILE
    tiles = np.empty(-(-length // _TILE))
    if whole:
        body = samples[: whole * _TILE].reshape(whole, _TILE)
        np.maximum(body.max(axis=1), -body.min(axis=1).astype(np.float64), out=tiles[:whole])
    if whole < len(tiles):
        rest = samples[whole * _TILE :]
        tiles[whole] = max(float(rest.max()), -float(rest.min()))
    return tiles


def _screened(
    samples: _Samples, threshold: float, tiles: NDArray[np.float64] | None = None
) -> NDArray[np.intp]:
    """The samples whose true peak may exceed ``threshold`` (in the units of ``samples``),
    sorted, once each: every other sample's true peak is at most ``threshold``. ``tiles``:
    their :func:`_tile_peaks`, when the caller has them.

    A sample's true peak is at most :data:`_OVERSHOOT` times the largest sample within
    :data:`_REACH` of it, so tiles whose neighbourhood is under ``threshold / _OVERSHOOT``
    are passed over whole. In the others every sample's true peak is estimated in float32
    (contiguous, a few times cheaper than the exact products), and a sample is kept when its
    estimate is within the estimate's rounding error of ``threshold``.

    Speech has a few hundred such runs of tiles a minute, most of them short: they are
    gathered side by side into one buffer of about :data:`_CHUNK` samples (each with its
    :data:`_REACH` neighbours either side) and estimated together, so the numpy calls are
    per buffer, not per run."""
    length = len(samples)
    if tiles is None:
        tiles = _tile_peaks(samples) if length else np.empty(0)
    hot = np.flatnonzero(tiles > threshold / _OVERSHOOT)
    if not len(hot):
        return np.empty(0, dtype=np.intp)
    margin = _ESTIMATE_MARGIN * _OVERSHOOT * float(tiles.max())
    breaks = np.flatnonzero(np.diff(hot) > 1)
    firsts = hot[np.concatenate(([0], breaks + 1))]
    lasts = hot[np.concatenate((breaks, [len(hot) - 1]))]
    phases = _PHASES.T.astype(np.float32)
    # Every buffer is made once per call: with the app's allocator settings each array of
    # 64 kB or more would be mapped, faulted in and unmapped again at every group.
    window = np.empty(_CHUNK + 2 * _REACH, dtype=np.float32)
    rows = np.empty((len(_PHASES), _CHUNK), dtype=np.float32)
    products = np.empty((OVERSAMPLING, _CHUNK), dtype=np.float32)
    estimates = np.empty(_CHUNK, dtype=np.float32)
    centres = np.empty(_CHUNK, dtype=np.float32)
    kept: list[NDArray[np.intp]] = []
    for group in _packed_runs(firsts.tolist(), lasts.tolist(), length):
        offsets, at = [], 0
        for begin, end in group:
            # window[at + i] = samples[begin - _REACH + i], zeros beyond the ends
            low, high = max(0, begin - _REACH), min(length, end + _REACH)
            piece = window[at : at + end - begin + 2 * _REACH]
            if low > begin - _REACH or high < end + _REACH:
                piece[:] = 0.0
            piece[low - (begin - _REACH) : high - (begin - _REACH)] = samples[low:high]
            offsets.append(at)
            at += len(piece)
        count = at - 2 * _REACH
        block = rows[:, :count]
        for s in range(len(_PHASES)):
            block[s] = window[s : s + count]
        product = products[:, :count]
        np.matmul(phases, block, out=product)
        np.abs(product, out=product)
        estimate = estimates[:count]
        np.max(product, axis=0, out=estimate)
        np.maximum(estimate, np.abs(block[_REACH], out=centres[:count]), out=estimate)
        # estimate[offsets[r] + i] is that of sample begins[r] + i, for i < counts[r]
        found = np.flatnonzero(estimate > threshold - margin)
        if not len(found):
            continue
        starts = np.array(offsets, dtype=np.intp)
        begins = np.array([begin for begin, _ in group], dtype=np.intp)
        counts = np.array([end - begin for begin, end in group], dtype=np.intp)
        run = np.searchsorted(starts, found, side="right") - 1
        inside = found - starts[run]
        keep = inside < counts[run]
        kept.append(begins[run[keep]] + inside[keep])
    return np.concatenate(kept) if kept else np.empty(0, dtype=np.intp)


def _packed_runs(firsts: list[int], lasts: list[int], length: int) -> Iterator[list[tuple[int, int]]]:
    """The samples of each run of hot tiles ``firsts[r]`` to ``lasts[r]`` and the
    :data:`_REACH` either side (``(begin, end)``, within ``0`` and ``length``), cut into
    pieces of at most :data:`_CHUNK` samples and packed in order into groups whose pieces,
    each with :data:`_REACH` neighbours either side, fill at most ``_CHUNK + 2 * _REACH``."""
    capacity = _CHUNK + 2 * _REACH
    group: list[tuple[int, int]] = []
    used = 0
    for first, last in zip(firsts, lasts, strict=True):
        run_begin = max(0, first * _TILE - _REACH)
        run_end = min(length, (last + 1) * _TILE + _REACH)
        for begin in range(run_begin, run_end, _CHUNK):
            end = min(run_end, begin + _CHUNK)
            need = end - begin + 2 * _REACH
            if used + need > capacity:
                yield group
                group, used = [], 0
            group.append((begin, end))
            used += need
    if group:
        yield group


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
    """The true peak after leveling (``None``: no audio), or a bound of it when
    ``true_peak_exact`` is false. Only what limiting needs is measured: every true peak
    within :data:`_PEAK_HEADROOM` of the limiter's ceiling, exactly. A segment whose peak is
    lower is reported at that bound (:data:`_PEAK_HEADROOM` under the ceiling), which it
    does not exceed; :func:`true_peak_dbtp` measures any audio exactly."""
    true_peak_exact: bool = True
    """Whether ``true_peak_dbtp`` is the true peak itself rather than a bound of it."""


_Filtered = TypeVar("_Filtered", np.float64, np.complex128)


def _filter_in_place(sos: NDArray[_Filtered], block: NDArray[_Filtered], state: NDArray[_Filtered]) -> None:
    """``block`` (shape ``(1, n)``) through the sections ``sos`` from ``state`` (shape
    ``(1, sections, 2)``), both updated in place, as ``sosfilt(sos, block[0], zi=state[0])``;
    all three of one type, real or complex."""
    if _sosfilt_in_place is not None:
        _sosfilt_in_place(sos, block, state)
    else:  # pragma: no cover - another scipy layout
        block[0], state[0] = sosfilt(sos, block[0], zi=state[0])


@functools.cache
def _k_weighting(rate: int) -> tuple[NDArray[np.float64], float]:
    """pyloudnorm's K-weighting at ``rate``: its second-order sections and their passband gain
    (designed once per rate: a meter is made per segment). Shared: never written to (scipy's
    kernel takes it as a writable buffer, so it cannot be marked read-only)."""
    stages = pyloudnorm.Meter(rate)._filters.values()
    sos = np.ascontiguousarray([[*stage.b, *stage.a] for stage in stages], dtype=np.float64)
    return sos, math.prod(stage.passband_gain for stage in stages)


class _Meter:
    """ITU-R BS.1770-4 integrated loudness of mono audio of one length, computed as
    ``pyloudnorm.Meter(rate).integrated_loudness`` does (its K-weighting filters, its block
    bounds, its gates), with numpy instead of a Python loop per block.

    The K-weighted audio is never kept: one pass sums its squares between consecutive block
    bounds (:meth:`energies`: 100 ms apart, every 400 ms block is four of them), and a
    block's power is the sum of its parts (:meth:`powers`). Audio changed in places (the
    limiter's spans) is measured again by filtering only around them (:meth:`limited`)."""

    def __init__(self, length: int, rate: int) -> None:
        self._sos, self._gain = _k_weighting(rate)
        self._length = length
        count = int(np.round((length / rate - _BLOCK_SECONDS) / (_BLOCK_SECONDS * _BLOCK_STEP))) + 1
        steps = np.arange(max(count, 0)) * _BLOCK_STEP
        lower = (_BLOCK_SECONDS * steps * rate).astype(np.intp)
        upper = (_BLOCK_SECONDS * (steps + 1) * rate).astype(np.intp)
        self._bounds = np.union1d(np.union1d(lower, upper), [0])
        """Part ``k`` of the audio is samples ``bounds[k]`` up to ``bounds[k + 1]`` (the last: to the end)."""
        self._lower = np.searchsorted(self._bounds, lower)
        self._upper = np.searchsorted(self._bounds, upper)
        self._scale = 1.0 / (_BLOCK_SECONDS * rate)
        self._tail = round(_FILTER_TAIL_SECONDS * rate)

    def weighted(self, x: _Samples, scale: float = 1.0) -> NDArray[np.float64]:
        """``x * scale`` through the K-weighting filters (zero initial state), as
        :meth:`energies` filters it: the weighted audio itself, for checks."""
        out = np.empty(len(x))
        state = np.zeros((1, len(self._sos), 2))
        for begin in range(0, len(x), _PASS_CHUNK):
            block = out[begin : begin + _PASS_CHUNK].reshape(1, -1)
            np.multiply(x[begin : begin + _PASS_CHUNK], scale * self._gain, out=block[0])
            block += _DENORMAL_GUARD
            _filter_in_place(self._sos, block, state)
        return out

    def energies(
        self,
        x: _Samples,
        scale: float = 1.0,
        begin: int = 0,
        end: int | None = None,
        spans: list[tuple[int, NDArray[np.float64]]] | None = None,
    ) -> NDArray[np.float64]:
        """The sum of squares of each part (see ``_bounds``) of the K-weighted ``x * scale``,
        limited by the gains of ``spans`` (start sample, gains from there; in order), filtered
        from zero state at ``begin`` up to ``end``: parts outside are 0, and a part holding
        ``begin`` or ``end`` has only what of it lies between."""
        end = len(x) if end is None else end
        sums = np.zeros(len(self._bounds))
        factor = scale * self._gain
        spans = spans or []
        if end - begin >= _PAIRED_MIN_TAILS * self._tail:
            self._paired_energies(sums, x, factor, begin, end, spans)
            return sums
        buffer = np.empty((1, min(_PASS_CHUNK, max(end - begin, 1))))
        state = np.zeros((1, len(self._sos), 2))
        span = _first_span(spans, begin)
        for low in range(begin, end, _PASS_CHUNK):
            high = min(end, low + _PASS_CHUNK)
            block = buffer[:, : high - low]
            part = block[0]
            np.multiply(x[low:high], factor, out=part)
            span = _limit_chunk(part, low, spans, span)
            part += _DENORMAL_GUARD
            _filter_in_place(self._sos, block, state)
            np.square(part, out=part)
            self._add_parts(sums, part, low)
        return sums

    def _paired_energies(
        self,
        sums: NDArray[np.float64],
        x: _Samples,
        factor: float,
        begin: int,
        end: int,
        spans: list[tuple[int, NDArray[np.float64]]],
    ) -> None:
        """:meth:`energies` of ``begin`` to ``end`` into ``sums``, filtered as two lanes at once.

        The filter's recursion is latency-bound: one lane leaves the CPU mostly waiting.
        The first half is the real part of a complex signal and the second half its
        imaginary part, filtered together by the same real sections (a complex sample times
        a real coefficient is each part times it, exactly: each lane is what filtering it
        alone gives, bit for bit), at about 0.7 times the CPU. The second lane starts
        :data:`_FILTER_TAIL_SECONDS` before the first one ends, from zero state, and what it
        gives there is dropped: by then its state is the whole audio's to far below a
        float's resolution (as :meth:`limited` relies on)."""
        lane = (end - begin + self._tail + 1) // 2
        second = end - lane  # the second lane counts from begin + lane on
        counted = begin + lane
        sos = self._sos.astype(np.complex128)
        buffer = np.empty((1, min(_PASS_CHUNK, lane)), dtype=np.complex128)
        squares = np.empty(buffer.shape[1])
        state = np.zeros((1, len(sos), 2), dtype=np.complex128)
        guard = complex(_DENORMAL_GUARD, _DENORMAL_GUARD)
        span_a, span_b = _first_span(spans, begin), _first_span(spans, second)
        for offset in range(0, lane, _PASS_CHUNK):
            size = min(_PASS_CHUNK, lane - offset)
            block = buffer[:, :size]
            a, b = block[0].real, block[0].imag
            low_a, low_b = begin + offset, second + offset
            np.multiply(x[low_a : low_a + size], factor, out=a)
            span_a = _limit_chunk(a, low_a, spans, span_a)
            np.multiply(x[low_b : low_b + size], factor, out=b)
            span_b = _limit_chunk(b, low_b, spans, span_b)
            block += guard
            _filter_in_place(sos, block, state)
            part = squares[:size]
            np.square(a, out=part)
            self._add_parts(sums, part, low_a)
            skip = max(0, counted - low_b)
            if skip < size:
                np.square(b[skip:], out=part[: size - skip])
                self._add_parts(sums, part[: size - skip], low_b + skip)

    def _add_parts(self, sums: NDArray[np.float64], squares: NDArray[np.float64], low: int) -> None:
        """Add ``squares`` (of samples ``low`` on) to the sums of the parts they fall in."""
        bounds = self._bounds
        high = low + len(squares)
        first = int(np.searchsorted(bounds, low, side="right")) - 1
        last = int(np.searchsorted(bounds, high, side="left"))
        at = np.concatenate(([low], bounds[first + 1 : last])) - low
        sums[first:last] += np.add.reduceat(squares, at)

    def powers(self, sums: NDArray[np.float64]) -> NDArray[np.float64]:
        """Each block's mean square of the K-weighted audio, from its parts' :meth:`energies`."""
        running = np.concatenate(([0.0], np.cumsum(sums)))
        powers: NDArray[np.float64] = (running[self._upper] - running[self._lower]) * self._scale
        return powers

    def limited(
        self,
        sums: NDArray[np.float64],
        x: _Samples,
        scale: float,
        gain: float,
        spans: list[tuple[int, NDArray[np.float64]]],
    ) -> NDArray[np.float64]:
        """The parts' :meth:`energies` of ``x * scale * gain`` limited by ``spans``, from
        ``sums`` (those of ``x * scale``). K-weighting is linear: a part away from every span
        is ``gain**2`` times its sum. Around each run of spans (and for
        :data:`_FILTER_TAIL_SECONDS` after it, where the filters still answer the change)
        the parts are filtered again, from zero state that much earlier: by then the state
        matches the whole audio's to far below a float's resolution."""
        result = sums * gain**2
        bounds = self._bounds
        edges = np.append(bounds, max(self._length, int(bounds[-1])))
        regions: list[list[int]] = []
        for start, g in spans:
            first = int(np.searchsorted(bounds, start, side="right")) - 1
            reach = min(self._length, start + len(g) + self._tail)
            last = int(np.searchsorted(bounds, reach, side="left"))
            if regions and edges[first] - edges[regions[-1][1]] <= self._tail:
                regions[-1][1] = max(regions[-1][1], last)
            else:
                regions.append([first, last])
        for first, last in regions:
            begin = max(0, int(edges[first]) - self._tail)
            end = min(self._length, int(edges[last]))
            result[first:last] = self.energies(x, scale * gain, begin, end, spans)[first:last]
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


def true_peak_dbtp(x: NDArray[np.float64]) -> float:
    """The true peak of ``x`` (floats, full scale 1.0) in dBTP, 4× oversampled."""
    return _true_peak_dbtp(x)


def _true_peak_dbtp(samples: _Samples, scale: float = 1.0) -> float:
    if not len(samples):
        return -math.inf
    tiles = _tile_peaks(samples)
    sample_peak = float(tiles.max())
    if sample_peak <= 0:
        return -math.inf
    # Only samples near those within the overshoot of the sample peak can hold the true peak.
    at = _screened(samples, sample_peak, tiles)
    peaks = _peaks_at(samples, at, scale)
    return 20 * math.log10(max(sample_peak * scale, float(peaks.max()) if len(peaks) else 0.0))


@dataclass(frozen=True, slots=True)
class _TruePeaks:
    """The true peaks of some audio at every sample where they may exceed ``floor`` (``at``,
    sorted); every other sample's true peak is at most ``floor``."""

    floor: float
    at: NDArray[np.intp]
    peaks: NDArray[np.float64]
    sample_peak: float
    """The largest magnitude of the samples themselves (unscaled, 0 for no samples)."""

    @classmethod
    def above(cls, samples: _Samples, floor: float, scale: float = 1.0) -> _TruePeaks:
        """Those of ``samples * scale``."""
        tiles = _tile_peaks(samples) if len(samples) else np.empty(0)
        at = _screened(samples, floor / scale, tiles)
        return cls(floor, at, _peaks_at(samples, at, scale), float(tiles.max()) if len(tiles) else 0.0)


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
) -> tuple[float, bool]:
    """The true peak (dBTP) of the leveled audio: ``pcm`` (of ``true_peaks``) at ``gain``,
    limited in ``spans``, and ``True``; or, when it is at most every other sample's bound
    (``gain * true_peaks.floor``), that bound and ``False``. Away from the spans it is
    ``gain`` times those peaks (linear); near them it is measured on the limited audio."""
    length = len(pcm)
    near = np.zeros(length, dtype=bool)
    best = 0.0
    for start, g in spans:
        stop = start + len(g)
        near[max(0, start - _REACH) : min(length, stop + _REACH)] = True
        begin, end = max(0, start - 2 * _REACH), min(length, stop + 2 * _REACH)
        local = pcm[begin:end].astype(np.float64)
        local *= gain / _FULL_SCALE
        local[start - begin : stop - begin] *= g
        inside = np.arange(max(0, start - _REACH), min(length, stop + _REACH)) - begin
        best = max(best, float(_peaks_at(local, inside).max()))
    kept = ~near[true_peaks.at]
    if kept.any():
        best = max(best, float(gain * true_peaks.peaks[kept].max()))
    bound = gain * true_peaks.floor
    if best < bound:
        return 20 * math.log10(bound), False
    return 20 * math.log10(best), True


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
    once; each pass works only where the limiter acts. CPU-bound (about 16 ms per minute of
    audio): call it in a worker thread.
    """
    pcm = np.frombuffer(buffer, dtype="<i2")  # read and written in place
    plan = _plan(pcm, target_lufs, ceiling_dbtp, sample_rate)
    if plan is None:
        seconds = len(pcm) / sample_rate
        return Leveled(seconds, None, None, 0.0, _true_peak_dbtp(pcm, 1 / _FULL_SCALE) if len(pcm) else None)
    peak, exact = _limited_true_peak(pcm, plan.true_peaks, plan.gain, plan.spans)
    _apply_gain(pcm, plan.gain, plan.spans, plan.true_peaks.sample_peak)
    return Leveled(len(pcm) / sample_rate, plan.measured, plan.level, plan.gain_db, peak, exact)


@dataclass(frozen=True, slots=True)
class _Plan:
    """How :func:`level_in_place` levels some audio: its gain, the limiter's spans at that gain."""

    measured: float
    gain_db: float
    """The gain reported (when the passes ran out: the correction the last pass asked for)."""
    gain: float
    """The gain applied, of the last pass (linear): the one ``spans`` are for."""
    level: float | None
    spans: list[tuple[int, NDArray[np.float64]]]
    true_peaks: _TruePeaks
    sums: NDArray[np.float64]
    """The meter's parts' energies of the audio as it came."""


def _plan(pcm: NDArray[np.int16], target_lufs: float, ceiling_dbtp: float, sample_rate: int) -> _Plan | None:
    """The gain, limiter spans and resulting loudness of :func:`level_in_place` for ``pcm``
    (``None``: too short or silent to measure)."""
    length = len(pcm)
    scale = 1 / _FULL_SCALE
    meter = _Meter(length, sample_rate)
    sums = meter.energies(pcm, scale) if length >= _MIN_SECONDS * sample_rate else None
    measured = meter.integrated(meter.powers(sums)) if sums is not None else None
    if measured is None or sums is None:
        return None
    ceiling = 10 ** ((ceiling_dbtp - LIMITER_MARGIN_DB) / 20)
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
            # Found once with room for the next passes' gains (they rarely add 1.5 dB). Only
            # peaks over the ceiling count, so none lower is searched for (screening from the
            # sample peak instead, to report the true peak exactly, cost as much again).
            true_peaks = _TruePeaks.above(pcm, ceiling / gain / _PEAK_HEADROOM, scale)
        spans = _limiter_gain(true_peaks, length, gain, ceiling, sample_rate)
        if not spans:  # nothing to limit: the loudness is what the gain made it
            level = measured + gain_db
            break
        level = meter.integrated(meter.powers(meter.limited(sums, pcm, scale, gain, spans)))
        if level is None or abs(level - target_lufs) <= _TOLERANCE_LU:
            break
        gain_db += target_lufs - level
    assert true_peaks is not None  # the audio is at ``gain``, which made ``spans``
    return _Plan(measured, gain_db, gain, level, spans, true_peaks, sums)


# --- Levelling a segment while it streams ----------------------------------------------------

PART_CONTEXT_SAMPLES: Final = 2048
"""Samples after a part that :func:`level_part` needs beside it (and before it, with the
filter's warm-up): the limiter's gain at a sample depends on the true peaks within about 1.5
look-aheads (180 samples at 24 kHz) and a true peak on the 6 samples either side, so with this
much around it a part is limited exactly as it would be within the whole segment."""
STREAMED_TOLERANCE_LU: Final = 0.5
"""A segment levelled in parts (:func:`finish_parts`) at the gain of its opening is kept when
the whole then measures within this of the target; otherwise it is levelled again whole."""


def part_bin_samples(sample_rate: int = SAMPLE_RATE) -> int:
    """Parts begin and end on multiples of this (BS.1770's 100 ms steps), so each part's
    measurement is whole steps of the segment's (:func:`level_part`)."""
    return round(_BLOCK_SECONDS * _BLOCK_STEP * sample_rate)


def part_lead_samples(sample_rate: int = SAMPLE_RATE) -> int:
    """Samples before a part that :func:`level_part` needs (the K-weighting filter's warm-up)."""
    return max(round(_FILTER_TAIL_SECONDS * sample_rate), PART_CONTEXT_SAMPLES)


@dataclass(frozen=True, slots=True)
class LeveledPart:
    """One part of a segment levelled by :func:`level_opening` or :func:`level_part`."""

    pcm: bytearray | memoryview
    """The part's samples, levelled (PCM16): a buffer of its own (:func:`level_part`), or the
    part of the window it was levelled in (:func:`level_opening`)."""
    begin: int
    """Its first sample in the segment."""
    spans: list[tuple[int, NDArray[np.float64]]]
    """The limiter's gains in the part (start sample in the segment, the gains from there)."""
    peak: float
    """Its true peak after levelling (linear), or the bound of it when ``exact`` is false."""
    exact: bool
    energies: NDArray[np.float64]
    """The K-weighted sums of squares of the part as it came, per step of
    :func:`part_bin_samples` from ``begin`` (the last one may be short)."""


def level_opening(
    window: bytes | bytearray,
    end: int,
    *,
    target_lufs: float = TARGET_LUFS,
    ceiling_dbtp: float = CEILING_DBTP,
    sample_rate: int = SAMPLE_RATE,
) -> tuple[float, LeveledPart] | None:
    """The gain (dB) for a segment still streaming, from its opening: what
    :func:`level_in_place` would give ``window`` (PCM16 mono, the segment's first samples:
    ``end`` and :data:`PART_CONTEXT_SAMPLES` after them); and its samples up to ``end``
    levelled at that gain as the segment's first part, in place in ``window`` (a view of it is
    the part's ``pcm``). ``None`` when the opening is too quiet to measure. CPU-bound."""
    samples = np.frombuffer(window, dtype="<i2")
    _check_part(0, end, sample_rate)
    if end > len(samples):
        raise ValueError("the window does not hold the opening")
    plan = _plan(samples, target_lufs, ceiling_dbtp, sample_rate)
    if plan is None:
        return None
    # The opening's own measurement up to ``end`` is the segment's: both filter from its start.
    energies = plan.sums[: end // part_bin_samples(sample_rate)].copy()
    part = _leveled_part(window, 0, end, plan.gain, plan.spans, plan.true_peaks, energies, in_place=True)
    return 20 * math.log10(plan.gain), part


def level_part(
    window: bytes | bytearray,
    offset: int,
    begin: int,
    end: int,
    gain_db: float,
    *,
    ceiling_dbtp: float = CEILING_DBTP,
    sample_rate: int = SAMPLE_RATE,
) -> LeveledPart:
    """Samples ``begin`` to ``end`` of a segment at ``gain_db``, true peaks limited under
    ``ceiling_dbtp`` (less :data:`LIMITER_MARGIN_DB`), exactly as :func:`level_in_place`
    would give them for the whole segment at that gain, and measured as it measures them.
    ``window`` holds the segment's PCM16 from sample ``offset``: at least
    :func:`part_lead_samples` before the part and :data:`PART_CONTEXT_SAMPLES` after it, or
    to the segment's start or end; ``begin`` (and ``end``, unless it is the segment's end) is
    a multiple of :func:`part_bin_samples`. The part is levelled into a buffer of its own
    (``window`` is not changed). CPU-bound."""
    samples = np.frombuffer(window, dtype="<i2")
    if not offset <= begin <= end <= offset + len(samples):
        raise ValueError("the window does not hold the part")
    _check_part(begin, None, sample_rate)
    gain = 10 ** (gain_db / 20)
    ceiling = 10 ** ((ceiling_dbtp - LIMITER_MARGIN_DB) / 20)
    # True peaks and the limiter around the part only; the filter's warm-up before it.
    low = max(0, begin - offset - PART_CONTEXT_SAMPLES)
    near = samples[low : end - offset + PART_CONTEXT_SAMPLES]
    true_peaks = _TruePeaks.above(near, ceiling / gain / _PEAK_HEADROOM, 1 / _FULL_SCALE)
    spans = _limiter_gain(true_peaks, len(near), gain, ceiling, sample_rate)
    lead = part_lead_samples(sample_rate) if begin else 0
    if begin - offset < lead:
        raise ValueError("the window does not hold the part's lead")
    energies = _energies_from(samples[begin - offset - lead : end - offset], lead, sample_rate)
    at = begin - offset
    shifted = [(start + low, g) for start, g in spans]
    peaks = _TruePeaks(true_peaks.floor, true_peaks.at + low, true_peaks.peaks, true_peaks.sample_peak)
    return _leveled_part(window, at, at + end - begin, gain, shifted, peaks, energies, begin, in_place=False)


def _check_part(begin: int, end: int | None, sample_rate: int) -> None:
    step = part_bin_samples(sample_rate)
    if begin % step or (end is not None and end % step):
        raise ValueError(f"a part must begin (and an opening end) on a multiple of {step} samples")


def _energies_from(x: NDArray[np.int16], lead: int, sample_rate: int) -> NDArray[np.float64]:
    """The K-weighted sums of squares of ``x[lead:]`` per step of :func:`part_bin_samples`
    (the last may be short), filtered from zero state at ``x[0]`` (``lead`` is a multiple of
    the step: the warm-up, whose steps are dropped)."""
    step = part_bin_samples(sample_rate)
    length = len(x)
    if length < round(_BLOCK_SECONDS * sample_rate * 2.5):
        # Too short for the meter's steps to be whole 100 ms ones: measured directly.
        sos, gain = _k_weighting(sample_rate)
        block = np.multiply(x, gain / _FULL_SCALE).reshape(1, -1) + _DENORMAL_GUARD
        _filter_in_place(sos, block, np.zeros((1, len(sos), 2)))
        squares = np.square(block[0])
        edges = np.arange(0, length, step)
        return np.add.reduceat(squares, edges)[lead // step :] if length else np.zeros(0)
    meter = _Meter(length, sample_rate)
    sums = meter.energies(x, 1 / _FULL_SCALE)
    return _folded(sums, lead // step + -(-(length - lead) // step))[lead // step :]


def _folded(values: NDArray[np.float64], count: int) -> NDArray[np.float64]:
    """``values`` (per 100 ms step) as ``count`` of them: cut, padded with zeros, or what lies
    beyond the last added into it (a meter's last part runs to the end of the audio, and its
    bounds are the multiples of the step)."""
    out = np.zeros(count)
    kept = min(len(values), count)
    out[:kept] = values[:kept]
    out[kept - 1] += values[kept:].sum()
    return out


def _leveled_part(
    window: bytes | bytearray,
    low: int,
    high: int,
    gain: float,
    spans: list[tuple[int, NDArray[np.float64]]],
    true_peaks: _TruePeaks,
    energies: NDArray[np.float64],
    begin: int = 0,
    *,
    in_place: bool,
) -> LeveledPart:
    """Samples ``low`` to ``high`` of ``window`` at ``gain``, limited by ``spans`` (in the
    window) and their true peaks, as the part of a segment from sample ``begin``."""
    inner: list[tuple[int, NDArray[np.float64]]] = []
    for start, g in spans:
        first, last = max(start, low), min(start + len(g), high)
        if first < last:
            inner.append((first - low, g[first - start : last - start]))
    if in_place:
        if not isinstance(window, bytearray):
            raise TypeError("a part levelled in place needs a bytearray window")
        out: bytearray | memoryview = memoryview(window)[low * 2 : high * 2]
    else:
        out = bytearray(memoryview(window)[low * 2 : high * 2])  # one copy
    part = np.frombuffer(out, dtype="<i2")
    inside = (true_peaks.at >= low) & (true_peaks.at < high)
    local = _TruePeaks(true_peaks.floor, true_peaks.at[inside] - low, true_peaks.peaks[inside], 0.0)
    peak, exact = _limited_true_peak(part, local, gain, inner) if len(part) else (-math.inf, False)
    _apply_gain(part, gain, inner, true_peaks.sample_peak)  # the window's: at least the part's
    del part  # no view of ``out`` is left: a buffer of its own may grow (the pause after it)
    return LeveledPart(
        out,
        begin,
        [(start + begin, g) for start, g in inner],
        10 ** (peak / 20) if math.isfinite(peak) else 0.0,
        exact,
        energies,
    )


def finish_parts(
    segment: bytes | bytearray,
    gain_db: float,
    parts: Iterable[LeveledPart],
    *,
    target_lufs: float = TARGET_LUFS,
    sample_rate: int = SAMPLE_RATE,
) -> Leveled | None:
    """What levelling the whole ``segment`` (PCM16, as it came) in ``parts`` (in order, from
    its start to its end) at ``gain_db`` did: its loudness as :func:`level_in_place` measures
    it, limiter included; or ``None`` when that is more than :data:`STREAMED_TOLERANCE_LU` from
    ``target_lufs`` (or unmeasurable), and the segment should be levelled whole instead. Only
    the limiter's spans are filtered again. CPU-bound."""
    pcm = np.frombuffer(segment, dtype="<i2")
    length = len(pcm)
    done = list(parts)
    if length < _MIN_SECONDS * sample_rate or not done:
        return None
    meter = _Meter(length, sample_rate)
    sums = _folded(np.concatenate([part.energies for part in done]), len(meter._bounds))
    measured = meter.integrated(meter.powers(sums))
    if measured is None:
        return None
    spans = [span for part in done for span in part.spans]
    gain = 10 ** (gain_db / 20)
    scale = 1 / _FULL_SCALE
    level = (
        meter.integrated(meter.powers(meter.limited(sums, pcm, scale, gain, spans)))
        if spans
        else measured + gain_db
    )
    if level is None or abs(level - target_lufs) > STREAMED_TOLERANCE_LU:
        return None
    best = max(done, key=lambda part: (part.peak, part.exact))
    peak = 20 * math.log10(best.peak) if best.peak > 0 else None
    return Leveled(length / sample_rate, measured, level, gain_db, peak, best.exact)


def _first_span(spans: list[tuple[int, NDArray[np.float64]]], begin: int) -> int:
    """The first of ``spans`` (in order) that reaches past sample ``begin``."""
    return bisect.bisect_left([start + len(g) for start, g in spans], begin + 1)


def _limit_chunk(
    chunk: NDArray[np.float64], begin: int, spans: list[tuple[int, NDArray[np.float64]]], first: int
) -> int:
    """``chunk`` (samples ``begin`` on) times the limiter gains of ``spans`` (start sample, gains
    from there; in order) that reach into it, in place, looking from span ``first`` on (no
    earlier span reaches this far); returns where the next, later chunk should look from."""
    end = begin + len(chunk)
    while first < len(spans) and spans[first][0] + len(spans[first][1]) <= begin:
        first += 1
    for start, g in spans[first:]:
        if start >= end:
            break
        low, high = max(begin, start), min(end, start + len(g))
        chunk[low - begin : high - begin] *= g[low - start : high - start]
    return first


def _apply_gain(
    pcm: NDArray[np.int16],
    gain: float,
    spans: list[tuple[int, NDArray[np.float64]]],
    sample_peak: float,
) -> None:
    """``pcm`` times ``gain``, limited in ``spans`` (in order), rounded to the nearest
    integer and clipped to PCM16, in place, :data:`_PASS_CHUNK` samples at a time.
    ``sample_peak``: the largest magnitude in ``pcm``."""
    length = len(pcm)
    if not length:
        return
    # Clipping can change nothing when no sample times the gain (the spans only lower it)
    # rounds beyond PCM16: then the rounding writes the PCM16 itself.
    clip = sample_peak * gain >= 32767.5
    part = np.empty(min(_PASS_CHUNK, length))
    span = 0
    for begin in range(0, length, _PASS_CHUNK):
        end = min(length, begin + _PASS_CHUNK)
        view = part[: end - begin]
        np.multiply(pcm[begin:end], gain, out=view)
        span = _limit_chunk(view, begin, spans, span)
        if clip:
            np.rint(view, out=view)
            np.clip(view, -32768, 32767, out=view)
            pcm[begin:end] = view
        else:
            np.rint(view, out=pcm[begin:end], casting="unsafe")


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
