"""The script writer against the emulator: text-only responses, the token cap on text, short
and long (outline + parallel sections) scripts, and invalid replies retried then refused."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from emulator import Fault, FaultKind, RealtimeEmulator
from emulator.writer import CLOSING_TEXT, OPENING_WORDS
from podcast.engine.realtime import Narrator
from podcast.engine.responses import SpokenText
from podcast.engine.scriptwriter import MAX_ATTEMPTS, ScriptWriter
from podcast.errors import ScriptInvalidError
from podcast.models import DEFAULT_SPEAKERS, NarrationRequest, RequestLimits, parse_request
from podcast.settings import RealtimeSettings, realtime_base_url
from podcast.wire import ScriptDocument, Speaker
from testkit.realtime_client import narrate, of_type, only, validate_server_event
from tests.integration.conftest import EMULATOR_KEY

NAMES = {speaker.name for speaker in DEFAULT_SPEAKERS}
SHORT_SOURCE = (
    "Rivers bend because water flows faster on the outside of a curve. "
    "The fast water erodes the outer bank. The slow water on the inside drops sand. "
    "Over many years the bend grows into a loop."
)
LONG_SOURCE = "\n\n".join(
    f"Topic {n} begins with a plain fact number {n}. A second sentence about topic {n} adds a detail. "
    f"The third sentence of topic {n} gives an example. A fourth one of topic {n} closes the paragraph."
    for n in range(1, 61)
)
TEXT_SESSION = {
    "type": "realtime",
    "output_modalities": ["text"],
    "instructions": "Write the script.",
    "audio": {"input": {"turn_detection": None}},
}


def conversation(text: str, minutes: float, **fields: Any) -> NarrationRequest:
    return parse_request(
        {"text": text, "mode": "conversation", "target_minutes": minutes, **fields}, RequestLimits()
    )


@pytest.fixture
async def narrator(emulator: RealtimeEmulator) -> AsyncIterator[Narrator]:
    settings = RealtimeSettings(endpoint=realtime_base_url(emulator.url), api_key=EMULATOR_KEY, max_retries=0)
    async with Narrator(settings) as made:
        yield made


class CountingModel:
    """The real narrator, counting how many replies are being written at once."""

    def __init__(self, narrator: Narrator) -> None:
        self.narrator = narrator
        self.active = 0
        self.most = 0

    async def write_text(
        self,
        message: str,
        *,
        instructions: str,
        max_output_tokens: int = 4096,
        budget_seconds: float | None = None,
    ) -> SpokenText:
        self.active += 1
        self.most = max(self.most, self.active)
        try:
            await asyncio.sleep(0.01)  # lets the other sections start: what a real reply's latency does
            return await self.narrator.write_text(
                message,
                instructions=instructions,
                max_output_tokens=max_output_tokens,
                budget_seconds=budget_seconds,
            )
        finally:
            self.active -= 1


def briefs(emulator: RealtimeEmulator) -> list[dict[str, Any]]:
    """The BRIEF of every request the emulator received, in order."""
    found = []
    for session in emulator.sessions:
        for event in session.client_events:
            if event["type"] == "conversation.item.create":
                text = event["item"]["content"][0]["text"]
                line = next(line for line in text.splitlines() if line.startswith("BRIEF: "))
                found.append({**json.loads(line.removeprefix("BRIEF: ")), "_message": text})
    return found


def parts_of(message: str) -> set[int]:
    return {int(number) for number in re.findall(r"^\[(\d+)\] ", message, re.MULTILINE)}


# --- The emulator's text output -------------------------------------------------------------------


async def test_a_text_only_response_streams_text_events_that_the_sdk_validates(
    emulator: RealtimeEmulator,
) -> None:
    brief = {"task": "script", "speakers": ["Maya", "Theo"], "words": 200, "opening": True, "close": True}
    message = f"BRIEF: {json.dumps(brief)}\nSource:\n<<<\n[1] {SHORT_SOURCE}\n>>>"
    events = await narrate(emulator, message, session=TEXT_SESSION)

    for event in events:
        validate_server_event(event)
    types = [event["type"] for event in events]
    assert not [kind for kind in types if "audio" in kind]
    start = types.index("response.created")
    deltas = of_type(events, "response.output_text.delta")
    assert types[start:] == [
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * len(deltas),
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    assert len(deltas) > 3, "text streams in small pieces"
    text = only(events, "response.output_text.done")["text"]
    assert "".join(delta["delta"] for delta in deltas) == text
    assert only(events, "response.content_part.added")["part"]["type"] == "text"
    assert only(events, "response.content_part.done")["part"] == {"type": "text", "text": text}
    done = only(events, "response.done")["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"] == [{"type": "output_text", "text": text}]
    assert done["usage"]["output_token_details"] == {"text_tokens": -(-len(text) // 4), "audio_tokens": 0}
    turns = json.loads(text)["turns"]
    assert turns[0]["text"].startswith(OPENING_WORDS)
    assert turns[-1]["text"] == CLOSING_TEXT
    assert {turn["speaker"] for turn in turns} == {"Maya", "Theo"}


@pytest.mark.parametrize("cap", [1, 25, 60])
async def test_the_token_cap_cuts_text_and_ends_incomplete(emulator: RealtimeEmulator, cap: int) -> None:
    brief = {"task": "script", "speakers": ["Maya", "Theo"], "words": 200, "opening": True, "close": True}
    message = f"BRIEF: {json.dumps(brief)}\n[1] {SHORT_SOURCE}"
    events = await narrate(emulator, message, session={**TEXT_SESSION, "max_output_tokens": cap})

    for event in events:
        validate_server_event(event)
    done = only(events, "response.done")["response"]
    assert (done["status"], done["status_details"]["reason"]) == ("incomplete", "max_output_tokens")
    assert done["usage"]["output_tokens"] <= cap
    text = only(events, "response.output_text.done")["text"]
    assert -(-len(text) // 4) <= cap
    assert (text != "") == (cap > 1), "whole words that fit are sent (the first takes more than 1 token)"
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


# --- Short and long scripts -----------------------------------------------------------------------


async def test_a_short_script_is_one_reply_that_opens_and_closes(
    emulator: RealtimeEmulator, narrator: Narrator
) -> None:
    written = await ScriptWriter(narrator).write(
        conversation(SHORT_SOURCE, 1, title="Bends", style="summary", language="en"), DEFAULT_SPEAKERS
    )

    document = written.document
    ScriptDocument.model_validate(document.model_dump(mode="json"))
    assert written.replies == 1
    assert document.chapters == []
    assert document.title == "Bends"
    assert document.speakers == list(DEFAULT_SPEAKERS)
    assert document.script[0].text.startswith(OPENING_WORDS)
    assert document.script[-1].text == CLOSING_TEXT
    assert {turn.speaker for turn in document.script} == NAMES
    spoken = " ".join(turn.text for turn in document.script[1:-1])
    assert spoken == SHORT_SOURCE
    (session,) = emulator.sessions
    update = session.client_events[0]["session"]
    assert (update["output_modalities"], update["max_output_tokens"]) == (["text"], 4096)
    assert "summary" in update["instructions"]
    assert "English (en)" in update["instructions"]
    assert written.usage.output_text_tokens == session.responses[0].usage["output_tokens"]  # type: ignore[index]
    assert written.usage.output_audio_tokens == 0


async def test_a_long_script_is_an_outline_then_sections_in_parallel_without_repeats(
    emulator: RealtimeEmulator, narrator: Narrator
) -> None:
    speakers = (
        Speaker(name="Ana", voice="coral"),
        Speaker(name="Ben", voice="ash"),
        Speaker(name="Caro", voice="sage"),
    )
    model = CountingModel(narrator)
    written = await ScriptWriter(model, concurrency=4).write(conversation(LONG_SOURCE, 12), speakers)

    document = written.document
    asked = briefs(emulator)
    outline, sections = asked[0], asked[1:]
    assert outline["task"] == "outline"
    assert outline["sections"] == 3
    assert [brief["task"] for brief in sections] == ["script"] * 3
    assert written.replies == 4
    assert model.most == 3, "the sections are written at once"
    # Each section is given only its own source parts, the parts together cover the source once.
    given = [parts_of(brief["_message"]) for brief in sections]
    assert set.union(*given) == parts_of(outline["_message"])
    assert sum(len(parts) for parts in given) == len(set.union(*given))
    # The neighbours' titles, the opening only in the first, the close only in the last.
    titles = [chapter.title for chapter in document.chapters]
    assert len(titles) == 3
    assert all(brief["outline"] == titles for brief in sections)
    assert [(b["section"], b["previous"], b["next"]) for b in sections] == [
        (titles[0], None, titles[1]),
        (titles[1], titles[0], titles[2]),
        (titles[2], titles[1], None),
    ]
    assert [(b["opening"], b["close"]) for b in sections] == [(True, False), (False, False), (False, True)]
    assert all(brief["words"] == 600 for brief in sections)  # 12 minutes at 150 words, in three
    # Chapters start at each section's first turn; one opening, one close.
    turns = document.script
    assert document.chapters[0].turn == 0
    assert [chapter.turn for chapter in document.chapters] == sorted({c.turn for c in document.chapters})
    assert [i for i, t in enumerate(turns) if t.text.startswith(OPENING_WORDS)] == [0]
    assert [i for i, t in enumerate(turns) if t.text == CLOSING_TEXT] == [len(turns) - 1]
    assert {turn.speaker for turn in turns} == {"Ana", "Ben", "Caro"}
    sentences = [s for turn in turns[1:-1] for s in re.split(r"(?<=\.) ", turn.text)]
    assert len(sentences) == len(set(sentences)), "no sentence is said twice"
    assert len(sentences) > 100
    # Every reply stays within the output cap.
    for session in emulator.sessions:
        assert session.responses[0].status == "completed"
        assert session.responses[0].usage["output_tokens"] <= 4096  # type: ignore[index]


# --- Invalid replies ------------------------------------------------------------------------------


async def test_an_invalid_reply_is_asked_for_again_with_the_problem_named(
    emulator: RealtimeEmulator, narrator: Narrator
) -> None:
    emulator.inject(Fault(FaultKind.INVALID_SCRIPT, times=1))
    written = await ScriptWriter(narrator).write(conversation(SHORT_SOURCE, 1), DEFAULT_SPEAKERS)

    assert written.replies == 2
    first, second = briefs(emulator)
    assert "NOTE:" not in first["_message"]
    assert "NOTE: your previous reply was not usable (the reply is not a JSON object)" in second["_message"]
    assert written.document.script[-1].text == CLOSING_TEXT
    billed = sum(session.responses[0].usage["output_tokens"] for session in emulator.sessions)  # type: ignore[index]
    assert written.usage.output_tokens == billed


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (None, "the reply is not a JSON object"),
        (
            '{"turns": [{"speaker": "Zed", "text": "Hi there."}]}',
            "turns[0].speaker is not one of the speakers",
        ),
        ('{"turns": [{"speaker": "Maya", "text": "  "}]}', "turns[0].text is empty"),
        ('{"turns": []}', "the reply has no turns"),
        ('{"lines": [{"speaker": "Maya", "text": "Hi."}]}', "turns: Field required"),
        ('{"turns": [{"speaker": "Maya", "text": 3}]}', "turns.0.text"),
    ],
)
async def test_a_reply_that_stays_invalid_is_a_502_with_every_attempt_billed(
    emulator: RealtimeEmulator, narrator: Narrator, reply: str | None, problem: str
) -> None:
    emulator.inject(Fault(FaultKind.INVALID_SCRIPT, times=None, message=reply))
    with pytest.raises(ScriptInvalidError) as failed:
        await ScriptWriter(narrator).write(conversation(SHORT_SOURCE, 1), DEFAULT_SPEAKERS)

    error = failed.value
    assert (error.http_status, error.code, error.transient, error.attempts) == (
        502,
        "script_invalid",
        False,
        3,
    )
    assert problem in error.message
    assert "Zed" not in error.message
    assert len(emulator.sessions) == MAX_ATTEMPTS
    usages = [session.responses[0].usage or {} for session in emulator.sessions]
    billed = error.billed_usage
    assert billed.input_tokens == sum(usage["input_tokens"] for usage in usages)
    assert (
        billed.output_tokens
        == billed.output_text_tokens
        == sum(usage["output_tokens"] for usage in usages)
        > 0
    )


async def test_a_speakers_name_in_another_letter_case_is_corrected_not_refused(
    emulator: RealtimeEmulator, narrator: Narrator
) -> None:
    emulator.inject(
        Fault(FaultKind.INVALID_SCRIPT, message='{"turns": [{"speaker": " theo ", "text": "Hi  there."}]}')
    )
    written = await ScriptWriter(narrator).write(conversation(SHORT_SOURCE, 1), DEFAULT_SPEAKERS)
    assert [(t.speaker, t.text) for t in written.document.script] == [("Theo", "Hi there.")]


async def test_a_reply_cut_off_by_the_token_cap_is_written_again(
    emulator: RealtimeEmulator, narrator: Narrator
) -> None:
    emulator.inject(Fault(FaultKind.MAX_OUTPUT_TOKENS, times=1))
    written = await ScriptWriter(narrator).write(conversation(SHORT_SOURCE, 1), DEFAULT_SPEAKERS)

    assert written.replies == 2
    assert [session.responses[0].status for session in emulator.sessions] == ["incomplete", "completed"]
    assert "cut off by the output token limit" in briefs(emulator)[1]["_message"]


async def test_an_outline_that_leaves_parts_out_or_repeats_them_is_asked_for_again(
    emulator: RealtimeEmulator, narrator: Narrator
) -> None:
    bad = json.dumps(
        {"title": "T", "sections": [{"title": "A", "parts": [1, 2]}, {"title": "B", "parts": [2]}]}
    )
    emulator.inject(Fault(FaultKind.INVALID_SCRIPT, times=1, message=bad))
    written = await ScriptWriter(narrator).write(conversation(LONG_SOURCE, 6), DEFAULT_SPEAKERS)

    outline_retry = briefs(emulator)[1]
    assert outline_retry["task"] == "outline"
    assert "sections[1].parts repeats part 2 of an earlier section" in outline_retry["_message"]
    assert len(written.document.chapters) == 2
