"""Writing a conversation script with the Realtime deployment's text output.

:class:`ScriptWriter` turns a conversation request (the source ``text``, its speakers,
``target_minutes``, ``style``, ``language``, the producer's notes) into a
:class:`~podcast.wire.ScriptDocument` of turns ``{speaker, text}`` that the voice stage
reads verbatim. It uses the same :class:`~podcast.engine.realtime.Narrator` (connection,
credential, retries of transient failures) with ``output_modalities: ["text"]``.

The size of one reply is bounded by the 4,096-token output cap, so:

- a conversation of at most :data:`SECTION_WORDS` words (5 minutes at 150 words a minute) is
  written in one reply, which opens and closes it;
- a longer one is planned first: an *outline* reply splits it into sections, each with a
  title, a summary and the numbers of the source parts it covers (each part in one section
  only). The sections are then written in parallel (``concurrency`` at once), each reply
  given only its own source parts, the episode's section titles and its neighbours'
  titles, its share of the word budget, and whether it opens (the first) or closes (the
  last) the episode. The outline's sections become the script's chapters, each starting at
  the index of its section's first turn.

Every request sends a BRIEF line of JSON then the source, fenced, split into numbered parts
``[1] …`` (each on one line); the instructions (:mod:`podcast.engine.instructions`) say what the
JSON reply must look like. A reply is parsed with pydantic and checked: a JSON object of the
asked shape (a markdown code fence around it is tolerated), every turn by one of the given
speakers (a name's letter case is corrected), no empty turn; an outline with an allowed
number of sections whose parts exist and do not overlap. A reply that fails, or that the
token cap cut off, is asked for again up to :data:`MAX_ATTEMPTS` times in all, the problem
named in the next brief; then :class:`~podcast.errors.ScriptInvalidError` (502) is raised
with the tokens of every attempt. A turn that repeats, word for word, a turn of an earlier
section is dropped.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from podcast.engine.instructions import fenced, outline_instructions, script_instructions, word_budget
from podcast.engine.responses import SpokenText
from podcast.engine.segments import size_in_words, split_text
from podcast.errors import NarrationTimeoutError, PodcastError, ResponseIncompleteError, ScriptInvalidError
from podcast.models import NarrationRequest, has_speakable_text
from podcast.wire import ScriptChapter, ScriptDocument, ScriptTurn, Speaker, Usage

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_SECTIONS",
    "SECTION_WORDS",
    "ScriptWriter",
    "TextModel",
    "WrittenScript",
]

SECTION_MINUTES: Final = 5.0
"""The most one reply writes: 750 words, about 1,000 text tokens plus the JSON around the
turns, well under the 4,096-token output cap (room for a wordier model or another script)."""
SECTION_WORDS: Final = word_budget(SECTION_MINUTES)
MAX_SECTIONS: Final = 12
"""An outline may plan more sections than the fewest needed (shorter ones), up to this many."""
MAX_ATTEMPTS: Final = 3
"""Replies asked for per outline or section before the script is given up as invalid."""
MAX_OUTPUT_TOKENS: Final = 4096
MAX_PART_WORDS: Final = 150
"""The longest numbered source part an outline refers to."""
MIN_PART_WORDS: Final = 30

_FENCE: Final = re.compile(r"^\s*```[A-Za-z]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)

T = TypeVar("T")


class TextModel(Protocol):
    """What writes the text (:class:`~podcast.engine.realtime.Narrator`)."""

    async def write_text(
        self,
        message: str,
        *,
        instructions: str,
        max_output_tokens: int = ...,
        budget_seconds: float | None = ...,
    ) -> SpokenText: ...


@dataclass(frozen=True, slots=True)
class WrittenScript:
    """A written script and what writing it cost."""

    document: ScriptDocument
    usage: Usage
    """Tokens of every reply, the rejected ones included."""
    replies: int
    """How many replies were asked for (outline and sections, retries included)."""


class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class _Turn(_Reply):
    speaker: str
    text: str


class _Script(_Reply):
    turns: list[_Turn]


class _Section(_Reply):
    title: str
    summary: str = ""
    parts: list[int]


class _Outline(_Reply):
    title: str = ""
    sections: list[_Section]


@dataclass(frozen=True, slots=True)
class _Brief:
    """One section to write."""

    index: int
    title: str | None
    summary: str | None
    parts: tuple[int, ...]
    words: int
    opening: bool
    close: bool
    previous: str | None
    next: str | None
    outline: tuple[str, ...]


class _InvalidReply(Exception):
    """A reply that is not what was asked for; the message says why (never quoting it)."""


class ScriptWriter:
    """Writes conversation scripts with one :class:`TextModel`. Holds no state between calls."""

    def __init__(self, model: TextModel, *, concurrency: int = 4, attempts: int = MAX_ATTEMPTS) -> None:
        if concurrency < 1 or attempts < 1:
            raise ValueError("concurrency and attempts must be at least 1")
        self._model = model
        self._concurrency = concurrency
        self._attempts = attempts

    async def write(
        self,
        request: NarrationRequest,
        speakers: Sequence[Speaker],
        *,
        budget_seconds: float | None = None,
    ) -> WrittenScript:
        """The script of ``request`` (a ``conversation`` request) for ``speakers``.

        ``budget_seconds`` bounds the whole script, every reply and retry included (no
        reply starts without time left: :class:`~podcast.errors.NarrationTimeoutError`). Raises
        :class:`~podcast.errors.ScriptInvalidError` when a reply stays invalid, or the
        model's own :class:`~podcast.errors.PodcastError`; either carries ``billed_usage``,
        the tokens of every reply so far.
        """
        names = tuple(speaker.name for speaker in speakers)
        words = word_budget(request.target_minutes)
        sections_needed = math.ceil(words / SECTION_WORDS)
        source_words = max(1, size_in_words(request.text))
        part_words = max(MIN_PART_WORDS, min(MAX_PART_WORDS, source_words // max(1, 2 * sections_needed)))
        parts = tuple(" ".join(segment.text.split()) for segment in split_text(request.text, part_words))
        ledger = _Ledger(None if budget_seconds is None else time.monotonic() + budget_seconds)
        script_rules = script_instructions(request, speakers)
        try:
            if sections_needed == 1:
                title: str | None = request.title
                briefs = [
                    _Brief(0, None, None, tuple(range(1, len(parts) + 1)), words, True, True, None, None, ())
                ]
            else:
                outline = await self._ask(
                    "outline",
                    lambda note: _outline_message(sections_needed, parts, note),
                    outline_instructions(request),
                    lambda text: _parse_outline(text, len(parts), sections_needed),
                    ledger,
                )
                title = request.title or (outline.title.strip() or None)
                briefs = _briefs(outline, words)
            semaphore = asyncio.Semaphore(self._concurrency)

            async def section(brief: _Brief) -> list[ScriptTurn]:
                async with semaphore:
                    return await self._ask(
                        "script",
                        lambda note: _script_message(brief, names, parts, note),
                        script_rules,
                        lambda text: _parse_script(text, names),
                        ledger,
                    )

            written = await _gather_all([section(brief) for brief in briefs])
        except PodcastError as error:
            error.billed_usage = ledger.usage
            raise
        turns: list[ScriptTurn] = []
        chapters: list[ScriptChapter] = []
        said: set[str] = set()
        for brief, section_turns in zip(briefs, written, strict=True):
            start = len(turns)
            kept = [turn for turn in section_turns if _said_key(turn.text) not in said]
            said.update(_said_key(turn.text) for turn in section_turns)
            turns.extend(kept)
            if brief.title is not None and kept:
                chapters.append(ScriptChapter(title=brief.title, turn=start))
        document = ScriptDocument(title=title, speakers=list(speakers), script=turns, chapters=chapters)
        return WrittenScript(document=document, usage=ledger.usage, replies=ledger.replies)

    async def _ask(
        self,
        what: str,
        message: Callable[[str | None], str],
        instructions: str,
        parse: Callable[[str], T],
        ledger: _Ledger,
    ) -> T:
        """One reply, asked for again while it is invalid (at most ``attempts`` in all)."""
        problem: str | None = None
        for _ in range(self._attempts):
            ledger.replies += 1
            try:
                reply = await self._model.write_text(
                    message(problem),
                    instructions=instructions,
                    max_output_tokens=MAX_OUTPUT_TOKENS,
                    budget_seconds=ledger.remaining(),
                )
            except ResponseIncompleteError as error:
                ledger.usage += error.billed_usage
                if error.reason != "max_output_tokens":
                    raise
                problem = "the reply was cut off by the output token limit; write fewer, shorter turns"
                continue
            except PodcastError as error:
                ledger.usage += error.billed_usage
                raise
            ledger.usage += reply.billed_usage
            try:
                return parse(reply.transcript)
            except _InvalidReply as invalid:
                problem = str(invalid)
        assert problem is not None
        raise ScriptInvalidError(what, problem, attempts=self._attempts)


class _Ledger:
    """The tokens and replies of one script, shared by its parallel sections."""

    def __init__(self, deadline: float | None) -> None:
        self.usage = Usage()
        self.replies = 0
        self.deadline = deadline

    def remaining(self) -> float | None:
        """Seconds left for the next reply (``None``: unbounded); raises when none are."""
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise NarrationTimeoutError("no time was left to write the rest of the script")
        return left


async def _gather_all(calls: Sequence[Awaitable[T]]) -> list[T]:
    """Every result in order; on the first failure the others are cancelled and awaited
    (so their tokens are in the ledger) before it is raised."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


# --- Briefs ----------------------------------------------------------------------------------


def _source(parts: Sequence[str], numbers: Sequence[int]) -> str:
    return fenced("\n".join(f"[{number}] {parts[number - 1]}" for number in numbers))


def _note(problem: str | None) -> str:
    if problem is None:
        return ""
    return f"NOTE: your previous reply was not usable ({problem}). Reply with only the JSON object.\n"


def _outline_message(sections: int, parts: Sequence[str], problem: str | None) -> str:
    brief = {"task": "outline", "sections": sections, "parts": len(parts)}
    return (
        f"BRIEF: {json.dumps(brief)}\n{_note(problem)}Here is the source text, in numbered parts:\n"
        + _source(parts, range(1, len(parts) + 1))
    )


def _script_message(brief: _Brief, names: Sequence[str], parts: Sequence[str], problem: str | None) -> str:
    header = {
        "task": "script",
        "speakers": list(names),
        "words": brief.words,
        "opening": brief.opening,
        "close": brief.close,
        "section": brief.title,
        "summary": brief.summary,
        "previous": brief.previous,
        "next": brief.next,
        "outline": list(brief.outline),
    }
    return (
        f"BRIEF: {json.dumps(header, ensure_ascii=False)}\n{_note(problem)}"
        "Here is the source text for this part of the conversation:\n" + _source(parts, brief.parts)
    )


def _briefs(outline: _Outline, words: int) -> list[_Brief]:
    sections = outline.sections
    titles = tuple(section.title.strip() for section in sections)
    share = max(5, words // len(sections))
    last = len(sections) - 1
    return [
        _Brief(
            index=index,
            title=titles[index],
            summary=section.summary.strip() or None,
            parts=tuple(sorted(set(section.parts))),
            words=share,
            opening=index == 0,
            close=index == last,
            previous=titles[index - 1] if index > 0 else None,
            next=titles[index + 1] if index < last else None,
            outline=titles,
        )
        for index, section in enumerate(sections)
    ]


# --- Replies ---------------------------------------------------------------------------------


def _json_text(reply: str) -> str:
    text = reply.strip()
    match = _FENCE.match(text)
    return match.group(1) if match else text


def _validated(model: type[_Reply], reply: str) -> _Reply:
    text = _json_text(reply)
    if not text:
        raise _InvalidReply("the reply was empty")
    try:
        value = json.loads(text)
    except ValueError:
        raise _InvalidReply("the reply is not a JSON object") from None
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"]) or "the reply"
        raise _InvalidReply(f"{where}: {error['msg']}") from None


def _parse_script(reply: str, names: Sequence[str]) -> list[ScriptTurn]:
    script = _validated(_Script, reply)
    assert isinstance(script, _Script)
    if not script.turns:
        raise _InvalidReply("the reply has no turns")
    by_folded = {name.casefold(): name for name in names}
    turns: list[ScriptTurn] = []
    for index, turn in enumerate(script.turns):
        name = by_folded.get(" ".join(turn.speaker.split()).casefold())
        if name is None:
            raise _InvalidReply(f"turns[{index}].speaker is not one of the speakers {', '.join(names)}")
        text = " ".join(turn.text.split())
        if not has_speakable_text(text):
            raise _InvalidReply(f"turns[{index}].text is empty")
        turns.append(ScriptTurn(speaker=name, text=text))
    return turns


def _parse_outline(reply: str, part_count: int, needed: int) -> _Outline:
    outline = _validated(_Outline, reply)
    assert isinstance(outline, _Outline)
    sections = outline.sections
    most = max(needed, MAX_SECTIONS)
    if not needed <= len(sections) <= most:
        raise _InvalidReply(f"the outline has {len(sections)} sections; it needs {needed} to {most}")
    seen: set[int] = set()
    for index, section in enumerate(sections):
        if not section.title.strip():
            raise _InvalidReply(f"sections[{index}].title is empty")
        if not section.parts:
            raise _InvalidReply(f"sections[{index}].parts is empty")
        for number in section.parts:
            if not 1 <= number <= part_count:
                raise _InvalidReply(f"sections[{index}].parts names part {number}; there are {part_count}")
            if number in seen and part_count >= len(sections):
                raise _InvalidReply(f"sections[{index}].parts repeats part {number} of an earlier section")
        seen.update(section.parts)
    if len(seen) < part_count:
        raise _InvalidReply(f"the outline leaves {part_count - len(seen)} source parts out")
    return outline


def _said_key(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())
