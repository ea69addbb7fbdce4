"""Narrating a text of any length: segments in parallel, checked against the source, stitched.

The text is split into segments (:mod:`podcast.segments`), each narrated in its own
Realtime session (a fresh context: earlier audio is never billed again as input), up to
``concurrency`` at once, the longest first (so the slots finish together). Each segment's
transcript is compared with its source (:mod:`podcast.fidelity`); below the threshold the
segment is narrated again with firmer instructions. A segment that ends ``incomplete`` for
``max_output_tokens`` is split in two and each half narrated. Finished segments go straight
to a :class:`PieceSink` (in Blob Storage, a block each; a long segment's opening goes while
the rest streams, :mod:`podcast.engine.parts`), faded at the edges and followed by a pause,
so memory depends on the concurrency and the segment size, never on the length of the text.
Each segment is brought to podcast loudness (-16 LUFS, true peak under -1 dBTP:
:mod:`podcast.audio.loudness`) before it is stored, so segments, sessions and voices match.

Rate limiting lowers the concurrency (halved on a 429, raised again by one after a run of
successes) instead of failing the narration while retries remain.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Final, Protocol, TypeVar

from podcast.audio import captions, loudness
from podcast.engine import audio, scaffolding
from podcast.engine.fidelity import similarity
from podcast.engine.instructions import WORDS_PER_MINUTE, build_instructions, strip_scaffolding, user_message
from podcast.engine.parts import PartSink, StreamedParts, split_bytes
from podcast.engine.realtime import Narrator, VoiceSessions
from podcast.engine.responses import SpokenText
from podcast.engine.segments import Segment, joiner, size_in_words, split_text
from podcast.errors import (
    FidelityError,
    PodcastError,
    RateLimitedError,
    ResponseIncompleteError,
)
from podcast.models import NarrationRequest
from podcast.settings import NarrationSettings
from podcast.wire import SegmentReport, Usage

log = logging.getLogger(__name__)
_T = TypeVar("_T")

FIRMER_RULES: Final = (
    "IMPORTANT: an earlier attempt did NOT read the text exactly. This time read EVERY word "
    "EXACTLY as written, in order, from the first word to the last. Do not change, add, skip "
    "or rephrase a single word.\n\n"
)
MARKER_RULES: Final = (
    "IMPORTANT: an earlier attempt read the marker lines aloud. The marker lines (<<< and >>>) "
    "only show where the text begins and ends: never say them, and read nothing but the text "
    "between them.\n\n"
)
MAX_FINISHING_IN_HAND: Final = 8
"""At most this many segments of a narration wait to be finished (leveled, timed, staged) while
others stream: one per slot up to here, so the memory of a narration at a higher concurrency
grows with its streams only."""
FINISHING_THREADS: Final = 2
"""Segments of one narration levelled and timed at once (CPU-bound, in worker threads): more
than the cores would only hold more audio and more working arrays in memory at once."""
_FINISHING: Final = ThreadPoolExecutor(
    min(32, (os.cpu_count() or 1) + 4), thread_name_prefix="podcast-finishing"
)
"""Levelling and caption timing run here, not in the event loop's default executor, which
stays free for what the loop hands it: aiohttp looks up ``.netrc`` in it before every Storage
request (and resolves names there), so with several narrations in one process a staging
request would wait behind their levelling for a thread. As many threads as the default
executor has: fewer made narrations wait for each other's levelling at the end (8 at once:
the last one's tail 0.5 s with six threads, 1.0 s with two)."""


async def _finish(function: Callable[..., _T], *args: object) -> _T:
    """``function(*args)`` in a finishing thread, with this task's context (as ``asyncio.to_thread``)."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(_FINISHING, context.run, function, *args)


MAX_SPLIT_DEPTH: Final = 3
"""A segment cut short by the output-token cap is halved at most this many times."""

ProgressCallback = Callable[[int, int], Awaitable[None]]
"""``on_progress(segments_done, segments_total)``."""


class PieceSink(Protocol):
    """Where finished segments go, by position (any order): e.g. a blob's staged blocks."""

    async def stage(self, index: int, pcm: bytes | bytearray) -> None: ...


@dataclass(frozen=True, slots=True)
class NarratedText:
    """The outcome of :func:`narrate_text` (the audio itself went to the sink)."""

    transcript: str
    pcm_bytes: int
    usage: Usage
    segments: tuple[SegmentReport, ...]
    fidelity: float | None
    """Overall word similarity, weighted by segment length (``None`` in episode mode)."""
    warnings: tuple[str, ...] = ()
    loudness_lufs: float | None = None
    """Integrated loudness of the whole narration (each segment was brought to -16 LUFS)."""
    sources: tuple[tuple[str, str], ...] = ()
    """Each segment's source text and the break after it (``paragraph``, ``sentence``, ``end``)."""
    words: tuple[captions.Word, ...] = ()
    """Every word said, timed in the narration's audio (for captions)."""
    speech_onsets: tuple[float, ...] = ()
    """Where speech starts again after each pause (seconds in the audio)."""
    segment_words: tuple[int, ...] = ()
    """How many of :attr:`words` each segment said, in segment order (``words`` is their concatenation)."""

    @property
    def duration_seconds(self) -> float:
        return audio.duration_seconds(self.pcm_bytes)


@dataclass
class _Piece:
    """A narrated segment (or the halves of one), before it is placed in the audio."""

    pcm: bytes | bytearray
    transcript: str
    usage: Usage
    attempts: int
    similarity: float | None
    splits: int = 0
    warnings: list[str] = field(default_factory=list)
    marks: tuple[tuple[int, str], ...] = ()
    """Transcript deltas with the audio bytes before them (see :class:`SpokenText`)."""


class AdaptiveLimiter:
    """A concurrency limit that halves on rate limiting and grows back by one per run of successes."""

    def __init__(self, maximum: int, *, successes_to_grow: int = 4) -> None:
        self.maximum = maximum
        self.limit = maximum
        self.lowest = maximum
        self._active = 0
        self._successes = 0
        self._successes_to_grow = successes_to_grow
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._active < self.limit)
            self._active += 1

    async def __aexit__(self, *exc_info: object) -> None:
        async with self._changed:
            self._active -= 1
            self._changed.notify_all()

    def rate_limited(self) -> None:
        self.limit = max(1, self.limit // 2)
        self.lowest = min(self.lowest, self.limit)
        self._successes = 0

    async def succeeded(self) -> None:
        self._successes += 1
        if self._successes >= self._successes_to_grow and self.limit < self.maximum:
            self._successes = 0
            async with self._changed:
                self.limit += 1
                self._changed.notify_all()


async def narrate_text(
    narrator: Narrator,
    request: NarrationRequest,
    sink: PieceSink,
    settings: NarrationSettings,
    *,
    budget_seconds: float,
    on_progress: ProgressCallback | None = None,
) -> NarratedText:
    """Narrate ``request`` segment by segment into ``sink``; see the module docstring.

    Piece ``2i`` of the sink is segment ``i``'s audio (leveled, faded at the edges) followed
    by the pause after it (none after the last); piece ``2i + 1`` is empty. Raises the first segment's
    :class:`~podcast.errors.PodcastError` (the others are cancelled); in ``fail``
    policy, :class:`~podcast.errors.FidelityError` when a segment cannot reach the
    threshold.
    """
    verbatim = request.mode == "read"
    if verbatim:
        segments = split_text(request.text, settings.segment_max_words, parallelism=settings.concurrency)
    else:
        segments = [Segment(0, request.text, "end")]
    return await narrate_segments(
        narrator,
        request,
        segments,
        sink,
        settings,
        verbatim=verbatim,
        budget_seconds=budget_seconds,
        on_progress=on_progress,
    )


async def narrate_segments(
    narrator: Narrator,
    request: NarrationRequest,
    segments: Sequence[Segment],
    sink: PieceSink,
    settings: NarrationSettings,
    *,
    verbatim: bool,
    budget_seconds: float,
    voices: Sequence[str] | None = None,
    sessions: VoiceSessions | None = None,
    on_progress: ProgressCallback | None = None,
) -> NarratedText:
    """Narrate ``segments`` (indexed 0 to n-1, in order) into ``sink`` as :func:`narrate_text`
    does, each in ``voices[i]`` (default: the request's voice), each checked against its text
    when ``verbatim`` (retried, halved at the token cap); the pause after segment ``i`` is
    ``settings.pause_after(segments[i].boundary)``. With ``sessions``, segments of one voice
    share Realtime sessions as out-of-band responses (:class:`~podcast.engine.realtime.VoiceSessions`)."""
    instructions = build_instructions(request)
    deadline = time.monotonic() + budget_seconds
    limiter = AdaptiveLimiter(settings.concurrency)
    finishing = asyncio.Semaphore(FINISHING_THREADS)
    # Openings staged while their segments stream (each a copy of most of its segment): as
    # many at once as segments are finished at once.
    openings = asyncio.Semaphore(FINISHING_THREADS)
    sizes: dict[int, tuple[int, int]] = {}  # index -> (speech bytes, pause bytes)
    pieces: dict[int, _Piece] = {}
    levels: dict[int, loudness.Leveled] = {}
    timed: dict[int, captions.TimedSpeech] = {}
    done = 0

    def on_retry(error: PodcastError) -> None:
        if isinstance(error, RateLimitedError):
            limiter.rate_limited()
            log.warning("rate limited: concurrency lowered to %d", limiter.limit)

    # A segment holds its audio until it is leveled, timed and staged; its Realtime slot is
    # free again as soon as its response is done. Segments in hand are those streaming
    # (`concurrency`, or more when they are short: as many as keep their words, so about
    # their audio, within `concurrency` segments of `segment_max_words`) plus one being
    # finished per slot, up to MAX_FINISHING_IN_HAND: every slot streams its next segment
    # while its last one is leveled and staged instead of idling until then. With fewer (one
    # per finishing thread, or half the slots) a round's slots waited for Storage to take the
    # round before: 0.40 s of 8.07 at concurrency 4, 30 minutes at 60 s/s (`python -m
    # benchmarks.phases`), and the peak memory of 60 minutes is no higher, as each segment's
    # audio is staged without a copy. Longest first makes every slot's segment end at about
    # the same time. Memory still depends only on the concurrency and the segment size. A
    # script's short turns wait to be leveled as the next ones stream. Segments that arrive
    # faster than they are finished wait unnarrated instead of piling up in memory.
    longest = max((size_in_words(s.text) for s in segments), default=1)
    streaming = max(
        settings.concurrency, settings.concurrency * settings.segment_max_words // max(1, longest)
    )
    in_hand = asyncio.Semaphore(streaming + min(settings.concurrency, MAX_FINISHING_IN_HAND))

    async def narrate_segment(segment: Segment) -> None:
        async with in_hand:
            await _segment(segment)

    async def _segment(segment: Segment) -> None:
        nonlocal done
        voice = request.voice if voices is None else voices[segment.index]
        # Piece 2i is segment i's speech and the pause after it, piece 2i + 1 stays empty:
        # one block (or its opening and the rest), one request to Storage instead of two (a
        # script has a pause after every turn). A long segment's opening is staged while the
        # rest streams (podcast.engine.parts) when the sink takes parts.
        split = split_bytes(size_in_words(segment.text) * 60.0 / WORDS_PER_MINUTE)
        streamed = (
            StreamedParts(
                sink,
                2 * segment.index,
                _finish,
                split=split,
                fade_seconds=settings.fade_seconds,
                openings=openings,
            )
            if isinstance(sink, PartSink) and split is not None
            else None
        )
        try:
            async with limiter:
                piece = await _narrate_piece(
                    narrator,
                    request,
                    segment.text,
                    voice,
                    instructions,
                    settings,
                    verbatim,
                    deadline,
                    on_retry,
                    0,
                    sessions,
                    on_audio=streamed.feed if streamed is not None else None,
                )
            await limiter.succeeded()
            # Faded in place: the narration's own buffer is staged, never copied whole again.
            speech = piece.pcm if isinstance(piece.pcm, bytearray) else bytearray(piece.pcm)
            piece.pcm = b""
            speech_bytes = len(speech)
            pause = audio.silence(settings.pause_after(segment.boundary))
            async with finishing:
                # In two parts (then timed in the audio as it came), or levelled whole.
                leveled = await streamed.finish(speech, pause) if streamed is not None else None
                in_parts = leveled is not None
                if leveled is None:
                    leveled = await _finish(loudness.level_in_place, speech)
                levels[segment.index] = leveled
                timed[segment.index] = await _finish(
                    captions.time_words, speech, piece.transcript, piece.marks
                )
            if streamed is not None and in_parts:  # staging holds no finishing slot
                await streamed.stage_rest()
            else:
                if streamed is not None:
                    await streamed.close()  # no opening is staged after the whole
                audio.fade_edges_in_place(speech, settings.fade_seconds)
                # The pause extends the buffer in place (a large one is remapped, not copied).
                speech += pause
                await sink.stage(2 * segment.index, speech)
        finally:
            if streamed is not None:
                await streamed.close()
        await sink.stage(2 * segment.index + 1, b"")
        sizes[segment.index] = (speech_bytes, len(pause))
        del speech
        pieces[segment.index] = piece
        done += 1
        if on_progress is not None:
            await on_progress(done, len(segments))

    # Longest first: the last round of sessions is then the shortest segments, so the slots
    # finish close together (each segment still goes to its own place in the audio).
    longest_first = sorted(segments, key=lambda s: size_in_words(s.text), reverse=True)
    await _all_or_first_error([narrate_segment(s) for s in longest_first])

    reports: list[SegmentReport] = []
    words: list[captions.Word] = []
    segment_words: list[int] = []
    onsets: list[float] = []
    transcript_parts: list[str] = []
    usage = Usage()
    warnings: list[str] = []
    position = 0
    for segment in segments:
        piece = pieces[segment.index]
        speech_bytes, pause_bytes = sizes[segment.index]
        reports.append(
            SegmentReport(
                index=segment.index,
                start_seconds=audio.duration_seconds(position),
                end_seconds=audio.duration_seconds(position + speech_bytes),
                transcript=piece.transcript,
                similarity=piece.similarity,
                attempts=piece.attempts,
                splits=piece.splits,
            )
        )
        placed = timed[segment.index].shifted(audio.duration_seconds(position))
        words += placed.words
        segment_words.append(len(placed.words))
        onsets += placed.onsets
        position += speech_bytes + pause_bytes
        transcript_parts.append(piece.transcript)
        transcript_parts.append(
            {"paragraph": "\n\n", "turn": "\n\n", "sentence": " "}.get(segment.boundary, "")
        )
        usage += piece.usage
        warnings += piece.warnings
    fidelity = None
    if verbatim:
        weights = [max(1, size_in_words(s.text)) for s in segments]
        scores = [pieces[s.index].similarity or 0.0 for s in segments]
        fidelity = sum(w * score for w, score in zip(weights, scores, strict=True)) / sum(weights)
    if limiter.lowest < limiter.maximum:
        warnings.append(f"rate limited: concurrency was lowered to {limiter.lowest}")
    return NarratedText(
        transcript="".join(transcript_parts).strip(),
        pcm_bytes=position,
        usage=usage,
        segments=tuple(reports),
        fidelity=fidelity,
        warnings=tuple(warnings),
        loudness_lufs=loudness.combined_lufs(levels.values()),
        sources=tuple((segment.text, segment.boundary) for segment in segments),
        words=tuple(words),
        speech_onsets=tuple(onsets),
        segment_words=tuple(segment_words),
    )


async def _narrate_piece(
    narrator: Narrator,
    request: NarrationRequest,
    text: str,
    voice: str,
    instructions: str,
    settings: NarrationSettings,
    verbatim: bool,
    deadline: float,
    on_retry: Callable[[PodcastError], None],
    depth: int,
    sessions: VoiceSessions | None = None,
    *,
    on_audio: Callable[[bytearray], None] | None = None,
) -> _Piece:
    """Narrate ``text`` until it is faithful enough (read mode), halving it when it is too long;
    ``on_audio`` is each attempt's (as :meth:`Narrator.narrate`'s), not the halves'."""
    best: tuple[SpokenText, float, tuple[bool, bool, float]] | None = None
    usage = Usage()
    attempts = 0
    rules = ""  # what the next attempt is told beyond the instructions, from what went wrong
    for attempt in range(1, settings.fidelity_attempts + 1):
        attempts = attempt
        try:
            narration = await narrator.narrate(
                user_message(request, text),
                voice=voice,
                instructions=rules + instructions,
                budget_seconds=deadline - time.monotonic(),
                on_retry=on_retry,
                sessions=sessions,
                on_audio=on_audio,
            )
        except ResponseIncompleteError as error:
            usage += error.billed_usage
            halves = _halves(text) if error.reason == "max_output_tokens" and depth < MAX_SPLIT_DEPTH else []
            if len(halves) < 2:
                if best is None:
                    raise
                log.warning("segment attempt %d was cut short: the best earlier attempt is kept", attempt)
                break
            log.info("segment hit the output token cap; narrating it in two halves")
            parts = [
                await _narrate_piece(
                    narrator,
                    request,
                    half,
                    voice,
                    instructions,
                    settings,
                    verbatim,
                    deadline,
                    on_retry,
                    depth + 1,
                    sessions,
                )
                for half in halves
            ]
            return _joined(parts, usage, attempts, settings)
        except PodcastError as error:
            if best is None:
                raise
            # A second reading failed: the best earlier one stands (with its warnings) rather
            # than the segment failing after it had been read.
            usage += error.billed_usage
            log.warning(
                "segment attempt %d failed (%s): the best earlier attempt is kept", attempt, error.code
            )
            break
        usage += narration.billed_usage
        narration, cut = await _without_scaffolding(narration, text)
        score = similarity(text, narration.transcript) if verbatim else 1.0
        rank = (score >= settings.min_fidelity, cut, score)
        if best is None or rank > best[2]:
            best = (narration, score, rank)
        if score >= settings.min_fidelity and cut:
            break
        rules = (FIRMER_RULES if score < settings.min_fidelity else "") + ("" if cut else MARKER_RULES)
        if not cut:
            log.warning("segment audio has spoken marker lines that could not be cut (attempt %d)", attempt)
        else:
            log.warning(
                "segment similarity %.3f below %.3f (attempt %d)", score, settings.min_fidelity, attempt
            )
    assert best is not None
    narration, score, (_, cut, _) = best
    warnings: list[str] = []
    if not cut:
        warnings.append(
            f"a segment's audio still says the marker lines around the text after {attempts} attempts "
            "(no pause to cut them at); its transcript does not"
        )
    if score < settings.min_fidelity:
        message = (
            f"a segment read with word similarity {score:.2f} after {attempts} attempts; "
            f"the threshold is {settings.min_fidelity:.2f}"
        )
        if settings.fidelity_policy == "fail":
            raise FidelityError(message)
        warnings.append(message)
    return _Piece(
        pcm=narration.audio,
        transcript=narration.transcript,
        usage=usage,
        attempts=attempts,
        similarity=score if verbatim else None,
        warnings=warnings,
        marks=narration.transcript_marks,
    )


async def _without_scaffolding(narration: SpokenText, text: str) -> tuple[SpokenText, bool]:
    """``narration`` without the prompt scaffolding the model may have said, and whether its
    audio is free of it too. The transcript loses the marker lines (and their spoken forms);
    marker speech at either end is cut from the audio and the marks follow the cut
    (:func:`~podcast.engine.scaffolding.cut_spoken_markers`). When the cut cannot be placed
    with confidence (no pause between the markers and the text) the audio is kept whole and
    ``False`` returned: the caller then narrates the segment again, as for a fidelity
    failure (up to ``fidelity_attempts``; the attempt kept is the best that reads the text
    well enough, preferring one whose audio is clean, and a warning says when it is not).
    A guessed cut could take the text's first words with it, and a warning alone would
    keep audio that says what the transcript does not; another attempt (with the firmer
    rules) usually reads the text alone. A reply without spoken markers costs nothing
    more: the cut is only looked for when the transcript had scaffolding to strip."""
    transcript = strip_scaffolding(narration.transcript, text)
    if transcript == narration.transcript.strip():
        return replace(narration, transcript=transcript), True
    marks = await _finish(
        scaffolding.cut_spoken_markers,
        narration.audio,
        narration.transcript,
        narration.transcript_marks,
        text,
    )
    if marks is None:
        return replace(narration, transcript=transcript), False
    return replace(narration, transcript=transcript, transcript_marks=marks), True


def _halves(text: str) -> list[str]:
    """``text`` in two parts at the most natural boundary near its middle (or ``[text]``)."""
    words = size_in_words(text)
    if words < 2:
        return [text]
    pieces = split_text(text, max(1, math.ceil(words / 2)))
    if len(pieces) < 2:
        return [text]
    # The cut between pieces whose first half is nearest half the words.
    ends = list(itertools.accumulate(size_in_words(piece.text) for piece in pieces))
    cut = min(range(1, len(pieces)), key=lambda index: abs(ends[index - 1] - words / 2))
    return [_joined_text(pieces[:cut]), _joined_text(pieces[cut:])]


def _joined_text(pieces: Sequence[Segment]) -> str:
    text = pieces[0].text
    for before, piece in itertools.pairwise(pieces):
        text += ("\n\n" if before.boundary == "paragraph" else joiner(before.text)) + piece.text
    return text


def _joined(parts: list[_Piece], usage: Usage, attempts: int, settings: NarrationSettings) -> _Piece:
    gap = audio.silence(settings.sentence_pause_seconds)
    scored = [p.similarity for p in parts if p.similarity is not None]
    marks: list[tuple[int, str]] = []
    offset = 0
    for part in parts:
        marks += [(offset + at, text) for at, text in part.marks]
        marks.append((offset + len(part.pcm), " "))  # the halves' transcripts are joined by a space
        offset += len(part.pcm) + len(gap)
    return _Piece(
        pcm=gap.join(audio.fade_edges(p.pcm, settings.fade_seconds) for p in parts),
        transcript=" ".join(p.transcript for p in parts),
        usage=sum((p.usage for p in parts), usage),
        attempts=attempts + sum(p.attempts for p in parts),
        similarity=min(scored) if scored else None,
        splits=1 + sum(p.splits for p in parts),
        warnings=[w for p in parts for w in p.warnings],
        marks=tuple(marks),
    )


async def _all_or_first_error(coroutines: list[Awaitable[None]]) -> None:
    """Run ``coroutines`` concurrently; on the first failure cancel the rest and raise it."""
    try:
        async with asyncio.TaskGroup() as group:
            for coroutine in coroutines:
                group.create_task(coroutine)  # type: ignore[arg-type]
    except BaseExceptionGroup as group_error:
        raise _first_leaf(group_error) from None


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        leaves: list[BaseException] = list(error.exceptions)
        error = next((e for e in leaves if isinstance(e, PodcastError)), leaves[0])
    return error
