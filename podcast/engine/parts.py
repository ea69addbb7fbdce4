"""A segment's opening levelled and staged while the rest of it streams.

A segment streams from the model for a while (minutes at real speed, seconds at the
emulator's 60x) and was levelled and staged whole after its ``response.done``: the last round
of a narration then uploaded every slot's whole segment at once, after all streaming had
ended, and nothing overlapped that upload. Here, once a segment's audio reaches
:data:`SPLIT_FRACTION` of its expected length, that opening is levelled
(:func:`~podcast.audio.loudness.level_opening`: exactly as levelling it alone would, limiter
included) and staged as the segment's first part while the rest streams. At the end only the
rest is levelled, at the opening's gain (:func:`~podcast.audio.loudness.level_part`: limited
exactly as within the whole), and staged, and the whole is measured
(:func:`~podcast.audio.loudness.finish_parts`): within
:data:`~podcast.audio.loudness.STREAMED_TOLERANCE_LU` of the target the parts stand, otherwise
the segment is levelled and staged whole as before (the opening staged is then never
committed). The audio as it came is kept until then, as before, so nothing is lost either way.

One split, not a part every few seconds: each Put Block costs the client about 1.3 ms of CPU
whatever its size, and the opening's gain is the better the more of the segment it has heard.
Openings are made a few at a time per narration (the ``openings`` semaphore it shares: as
many as its segments levelled at once, two); a segment whose response is done while its
opening still waits its turn (the last round reaches its splits together) is levelled and
staged whole at once instead: waiting behind the others only delays the end of the round.

Only what can be kept is staged early: an attempt that is not the one kept (a retry, a
fidelity failure, a cut of spoken markers that changed the audio, a segment halved at the
token cap) leaves its opening uncommitted and the segment is staged whole. Storage failing
while the opening is staged only means the segment is staged whole at the end (with the
store's own retries); the error of that staging, if any, is the segment's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

from podcast.audio import loudness
from podcast.engine import audio

log = logging.getLogger(__name__)

SPLIT_FRACTION: Final = 0.6
"""The opening is staged once the audio reaches this share of the segment's expected length
(its words at :data:`~podcast.engine.instructions.WORDS_PER_MINUTE`): a reading 40 % faster
than expected still reaches it before its end. Early enough for a narration's last round,
whose segments all reach it at about the same time, to stage its openings while it streams
(at 0.8, Storage took most of them only after the last response: 1.17-1.19x the ideal wall
time at concurrency 8, against 1.11x); three fifths of a segment still set its gain within
0.1 LU of levelling it whole (``python -m benchmarks.phases`` reports the loudness)."""
MIN_OPENING_SECONDS: Final = 10.0
"""A segment expected shorter than this over :data:`SPLIT_FRACTION` is staged whole."""
_CONTEXT_BYTES: Final = loudness.PART_CONTEXT_SAMPLES * audio.SAMPLE_WIDTH
_STEP_BYTES: Final = loudness.part_bin_samples() * audio.SAMPLE_WIDTH

Runner = Callable[..., Awaitable[Any]]
"""``run(function, *args)``: ``function(*args)`` where CPU-bound work may run (a thread)."""


@runtime_checkable
class PartSink(Protocol):
    """A piece sink that also takes a piece in parts, in order (as
    :meth:`~podcast.storage.blobs.WavBlockWriter.stage_part`)."""

    async def stage(self, index: int, pcm: bytes | bytearray) -> None: ...

    async def stage_part(self, index: int, part: int, pcm: bytes | bytearray | memoryview) -> None: ...


def split_bytes(expected_seconds: float) -> int | None:
    """Where a segment expected to last ``expected_seconds`` is split (bytes of PCM, whole
    100 ms steps), or ``None`` when it is too short to be staged in parts."""
    split = expected_seconds * SPLIT_FRACTION
    if split < MIN_OPENING_SECONDS:
        return None
    return int(split * audio.BYTES_PER_SECOND) // _STEP_BYTES * _STEP_BYTES


@dataclass
class _Attempt:
    """One narration attempt's buffer and what has been made of it."""

    buffer: bytearray
    seen: int = 0
    """Bytes of the buffer when it was last fed."""
    opening: asyncio.Task[tuple[float, loudness.LeveledPart] | None] | None = None
    """Levelling and staging the opening: its gain (dB) and part once staged (``None``: not staged)."""
    started: bool = False
    """Whether the opening has left the queue (:attr:`StreamedParts._openings`) and is being made."""


class StreamedParts:
    """Levels and stages piece ``index`` of ``sink`` in two parts, the opening while the rest
    streams (``split``: its length in bytes, from :func:`split_bytes`; ``openings`` bounds how
    many segments sharing it copy, level and stage their openings at once).

    Pass :meth:`feed` as the narrator's ``on_audio``; when the narration is done, call
    :meth:`finish` with the audio kept and the pause after it, then :meth:`stage_rest`;
    always :meth:`close`. ``run`` runs the levelling (CPU-bound)."""

    def __init__(
        self,
        sink: PartSink,
        index: int,
        run: Runner,
        *,
        split: int,
        fade_seconds: float,
        openings: asyncio.Semaphore | None = None,
    ) -> None:
        if split <= 0 or split % _STEP_BYTES:
            raise ValueError("the split must be a positive number of whole 100 ms steps")
        self._sink = sink
        self._index = index
        self._run = run
        self._split = split
        self._ramp = audio.fade_samples(split // audio.SAMPLE_WIDTH, fade_seconds)
        self._openings = openings or asyncio.Semaphore(1)
        """Held while an opening is copied, levelled and staged (shared by a narration's segments)."""
        self._attempt: _Attempt | None = None
        self._rest: bytearray | None = None
        self._last: asyncio.Task[Any] | None = None
        """The latest opening task of any attempt: the next one waits for it (block ids repeat)."""
        self._enabled = 0 <= self._ramp <= loudness.PART_CONTEXT_SAMPLES

    def feed(self, pcm: bytearray) -> None:
        """Note that ``pcm`` (an attempt's growing buffer) has grown; once the opening and the
        context after it have arrived, start levelling and staging the opening. Never blocks,
        never raises."""
        attempt = self._attempt
        if attempt is None or attempt.buffer is not pcm:
            if attempt is not None and attempt.opening is not None:
                attempt.opening.cancel()  # another attempt: its opening can never be kept
            attempt = self._attempt = _Attempt(pcm)
        attempt.seen = len(pcm)
        if attempt.opening is None and self._enabled and attempt.seen >= self._split + _CONTEXT_BYTES:
            attempt.opening = asyncio.create_task(self._stage_opening(attempt, self._last))
            self._last = attempt.opening

    async def _stage_opening(
        self, attempt: _Attempt, before: asyncio.Task[Any] | None
    ) -> tuple[float, loudness.LeveledPart] | None:
        if before is not None:  # an earlier attempt's opening: never staged after this one
            await asyncio.gather(before, return_exceptions=True)
        async with self._openings:
            if attempt is not self._attempt:
                return None
            attempt.started = True
            # A copy (``pcm`` grows meanwhile), levelled in place and staged: as many at once as
            # :attr:`_openings` lets, so a narration's slots do not each hold one at once.
            window = attempt.buffer[: self._split + _CONTEXT_BYTES]
            try:
                opened = await self._run(loudness.level_opening, window, self._split // audio.SAMPLE_WIDTH)
                if opened is None:  # a silent opening: the whole decides at the end
                    return None
                gain_db, part = opened
                audio.fade_in_place(part.pcm, self._ramp, at_start=True)
                await self._sink.stage_part(self._index, 0, part.pcm)
            except Exception as error:
                log.warning(
                    "staging a segment's opening failed (%s): the segment will be staged whole",
                    type(error).__name__,
                )
                return None
        # What the end needs of it is its measurement: its audio (a view of the window) is
        # let go now, not held until the segment ends (a copy of most of it per segment).
        return gain_db, dataclasses.replace(part, pcm=bytearray())

    async def finish(self, pcm: bytearray, pause: bytes) -> loudness.Leveled | None:
        """Level the rest of ``pcm`` (the audio kept for the segment, as it came), with
        ``pause`` after it, as the last part (staged by :meth:`stage_rest`), and say what
        levelling did; or ``None`` when the parts cannot stand (another attempt's audio, audio
        changed since it streamed, no opening staged, the whole off target): the caller then
        levels and stages it whole, which replaces them. ``pcm`` is not changed."""
        attempt = self._attempt
        if (
            attempt is None
            or attempt.buffer is not pcm
            or attempt.seen != len(pcm)
            or attempt.opening is None
        ):
            return None  # another attempt's audio, audio changed since, or no opening staged
        if not attempt.started:
            # Still queued behind other segments' openings (a narration's last round reaches
            # its splits together): levelled and staged whole now, it is done sooner than
            # after the queue, and one block instead of two.
            attempt.opening.cancel()
            return None
        opened = await attempt.opening
        if opened is None:
            return None
        gain_db, opening = opened
        half = audio.SAMPLE_WIDTH
        # The whole as the window (read only, no copy: ``pcm`` no longer grows).
        rest = await self._run(loudness.level_part, pcm, 0, self._split // half, len(pcm) // half, gain_db)
        leveled: loudness.Leveled | None = await self._run(
            loudness.finish_parts, pcm, gain_db, [opening, rest]
        )
        if leveled is None:
            log.info("a segment levelled from its opening came out off target: levelled whole")
            return None
        assert isinstance(rest.pcm, bytearray)  # levelled into a buffer of its own
        audio.fade_in_place(rest.pcm, self._ramp, at_start=False)
        rest.pcm.extend(pause)
        self._rest = rest.pcm
        return leveled

    async def stage_rest(self) -> None:
        """Stage the rest :meth:`finish` levelled (Storage's errors are the segment's)."""
        if self._rest is None:
            raise RuntimeError("nothing is finished to be staged")
        rest, self._rest = self._rest, None
        await self._sink.stage_part(self._index, 1, rest)

    async def close(self) -> None:
        """Stop staging the opening (one being staged is abandoned: it is never committed)."""
        self._attempt = None
        if self._last is not None:
            self._last.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(self._last, return_exceptions=True)
            self._last = None
