"""The voice stage of a conversation: a script's turns, each read verbatim in its speaker's voice.

:func:`voice_script` plans the script as segments of the long-form engine
(:func:`podcast.engine.longform.narrate_segments`): a turn is one segment, or several when it
is longer than ``segment_max_words`` (split at paragraphs and sentences, all in the turn's
voice). So every turn gets what any segment of a text gets: a fresh context (an out-of-band
response in a session of its speaker's voice, :class:`~podcast.engine.realtime.VoiceSessions`:
a session voices several turns of one speaker one after another, and nothing said before is
billed again), the verbatim guard (word similarity,
retried with firmer rules, halved at the output-token cap), loudness leveling to the same
-16 LUFS whichever the voice, staging straight into the audio's block writer in script order
(constant memory), and parallelism bounded by the concurrency setting. Between turns is
``turn_pause_seconds`` of silence.

What it adds is the speakers: per-turn timings (:class:`~podcast.wire.TurnReport`), a
transcript with ``Name: `` labels, captions that never span two turns and carry the speaker,
and chapters at the turns the script's chapters name.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from podcast.audio import captions
from podcast.audio.id3 import Chapter
from podcast.engine.longform import NarratedText, PieceSink, ProgressCallback, narrate_segments
from podcast.engine.realtime import Narrator, VoiceSessions
from podcast.engine.segments import Segment, split_text
from podcast.models import NarrationRequest
from podcast.settings import NarrationSettings
from podcast.wire import ScriptDocument, TurnReport


@dataclass(frozen=True, slots=True)
class VoicedScript:
    """The outcome of :func:`voice_script` (the audio itself went to the sink)."""

    narrated: NarratedText
    """The engine's result: segments (one or more per turn), usage, fidelity, loudness, words."""
    turns: tuple[TurnReport, ...]
    transcript: str
    """Each turn's transcript as ``Name: what was said``, turns separated by blank lines."""
    cues: tuple[captions.Cue, ...]
    """Captions with speakers; none spans two turns."""
    chapters: tuple[Chapter, ...]
    """The script's chapters placed in the audio (none when the script has fewer than two)."""


@dataclass(frozen=True, slots=True)
class _Planned:
    segments: list[Segment]
    voices: list[str]
    turn_of_segment: list[int]
    speakers: list[str]
    """Each turn's speaker, named as in the script's speakers."""


def plan(script: ScriptDocument, max_words: int) -> _Planned:
    """Segments of ``script`` in order: each turn split to at most ``max_words`` (a turn's last
    segment ends at a ``turn`` boundary, the script's last at ``end``), with each segment's
    voice and turn. A turn's speaker is matched to the speakers without case; ``KeyError``
    for one that is none of them."""
    by_name = {speaker.name.casefold(): speaker for speaker in script.speakers}
    speakers: list[str] = []
    segments: list[Segment] = []
    voices: list[str] = []
    turn_of_segment: list[int] = []
    for number, turn in enumerate(script.script):
        speaker = by_name.get(turn.speaker.casefold())
        if speaker is None:
            raise KeyError(f"turn {number}'s speaker is not one of the script's speakers")
        speakers.append(speaker.name)
        parts = split_text(turn.text, max_words) or [Segment(0, turn.text, "end")]
        last = number == len(script.script) - 1
        for position, part in enumerate(parts):
            boundary = part.boundary if position < len(parts) - 1 else ("end" if last else "turn")
            segments.append(Segment(len(segments), part.text, boundary))
            voices.append(speaker.voice)
            turn_of_segment.append(number)
    return _Planned(segments, voices, turn_of_segment, speakers)


async def voice_script(
    narrator: Narrator,
    request: NarrationRequest,
    script: ScriptDocument,
    sink: PieceSink,
    settings: NarrationSettings,
    *,
    budget_seconds: float,
    on_progress: ProgressCallback | None = None,
) -> VoicedScript:
    """Voice every turn of ``script`` verbatim with its speaker's voice into ``sink`` (pieces
    as :func:`~podcast.engine.longform.narrate_text` stages them), and describe the result.

    ``request`` gives the delivery (``style``, ``language``, ``instructions``); its text and
    voice are not used. Every turn's speaker must be one of ``script.speakers`` (matched
    without case; labels use the speakers' spelling) and chapters must name turns of the
    script, else ``KeyError``/``IndexError`` before anything is narrated. Raises
    the first segment's :class:`~podcast.errors.PodcastError` (the others are cancelled).
    """
    planned = plan(script, settings.segment_max_words)
    for chapter in script.chapters:
        if not 0 <= chapter.turn < len(script.script):
            raise IndexError(f"chapter '{chapter.title}' names turn {chapter.turn}, not in the script")
    async with VoiceSessions() as sessions:
        narrated = await narrate_segments(
            narrator,
            request,
            planned.segments,
            sink,
            settings,
            verbatim=True,
            budget_seconds=budget_seconds,
            voices=planned.voices,
            sessions=sessions,
            on_progress=on_progress,
        )
    turns = _turns(planned, narrated)
    transcript = "\n\n".join(f"{turn.speaker}: {turn.text}" for turn in turns)
    return VoicedScript(
        narrated=narrated,
        turns=turns,
        transcript=transcript,
        cues=_cues(narrated.words, narrated.speech_onsets, turns, _turn_words(planned, narrated)),
        chapters=_chapters(script, turns, narrated.duration_seconds),
    )


def _turn_words(planned: _Planned, narrated: NarratedText) -> list[int]:
    """How many of ``narrated.words`` each turn said (its segments' counts added up)."""
    counts = [0] * len(planned.speakers)
    for segment, owner in enumerate(planned.turn_of_segment):
        counts[owner] += narrated.segment_words[segment]
    return counts


def _turns(planned: _Planned, narrated: NarratedText) -> tuple[TurnReport, ...]:
    grouped: dict[int, list[int]] = {}
    for segment, owner in enumerate(planned.turn_of_segment):
        grouped.setdefault(owner, []).append(segment)
    reports: list[TurnReport] = []
    for number, speaker in enumerate(planned.speakers):
        members = [narrated.segments[i] for i in grouped[number]]
        reports.append(
            TurnReport(
                index=number,
                speaker=speaker,
                voice=planned.voices[grouped[number][0]],
                start=members[0].start_seconds,
                end=members[-1].end_seconds,
                text=" ".join(segment.transcript.strip() for segment in members).strip(),
            )
        )
    return tuple(reports)


def _cues(
    words: Sequence[captions.Word],
    onsets: Sequence[float],
    turns: Sequence[TurnReport],
    turn_words: Sequence[int],
) -> tuple[captions.Cue, ...]:
    """Captions made turn by turn, each with its speaker: a turn's cues hold the words its own
    responses said (``turn_words[i]`` of ``words``, in order), never a word of a neighbour
    whose timing falls across the boundary, and stay within the turn (from its start to the
    next turn's start)."""
    cues: list[captions.Cue] = []
    position = 0
    ordered = sorted(onsets)
    for number, (turn, count) in enumerate(zip(turns, turn_words, strict=True)):
        limit = turns[number + 1].start if number + 1 < len(turns) else float("inf")
        mine = list(words[position : position + count])
        position += count
        inside = ordered[bisect.bisect_left(ordered, turn.start - 0.01) : bisect.bisect_left(ordered, limit)]
        for cue in captions.make_cues(mine, inside):
            # A turn's words are timed within its own segments' audio, so these only guard.
            start, end = max(cue.start, turn.start), min(cue.end, limit)
            cues.append(captions.Cue(cue.lines, start, end, speaker=turn.speaker))
    return tuple(cues)


def _chapters(
    script: ScriptDocument, turns: Sequence[TurnReport], total_seconds: float
) -> tuple[Chapter, ...]:
    """The script's chapters in the audio: each from its turn's start (the first from 0) to
    the next one's; none when there are fewer than two (one chapter says nothing)."""
    if len(script.chapters) < 2:
        return ()
    starts = [0.0 if n == 0 else turns[c.turn].start for n, c in enumerate(script.chapters)]
    ends = [*starts[1:], total_seconds]
    return tuple(
        Chapter(chapter.title, start, end)
        for chapter, start, end in zip(script.chapters, starts, ends, strict=True)
    )
