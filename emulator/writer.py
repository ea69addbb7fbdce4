"""The emulator's script writer: deterministic text replies to script-writing requests.

A text-only response (``output_modalities: ["text"]``) whose user message starts with the
writer's ``BRIEF: {json}`` line (:mod:`podcast.engine.scriptwriter`) is answered the way an
obedient model would, from the numbered source parts (``[n] …``, one a line) in the message:

- ``"task": "outline"``: ``{"title", "sections": [{"title", "summary", "parts"}]}`` with
  exactly the asked number of sections, the parts dealt to them in order, contiguously
  (each part in one section; when there are fewer parts than sections, parts are reused);
- ``"task": "script"``: ``{"turns": [{"speaker", "text"}]}``: an opening turn when the brief
  says ``opening`` (a welcome naming the speakers), then the source's sentences in order,
  two a turn, dealt to the speakers in turn, as many as fit the brief's ``words``, then a
  closing turn when it says ``close``.

Any other text-only response keeps echoing its input (see :mod:`emulator.session`).
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

BRIEF_PREFIX: Final = "BRIEF: "
OPENING_WORDS: Final = "Welcome to the show!"
CLOSING_TEXT: Final = "That is all for today. Thanks for listening, and goodbye!"
INVALID_SCRIPT_REPLY: Final = "Sure! Here is a lively conversation about your text, with two hosts."
"""What the ``invalid_script`` fault answers instead of the JSON: prose, as a chatty model might."""

_PART: Final = re.compile(r"^\[(\d+)\]\s?(.*)$")
_SENTENCE_END: Final = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+")
SENTENCES_PER_TURN: Final = 2


def brief_of(message: str) -> dict[str, Any] | None:
    """The brief of a script-writing message, or ``None`` when it has none."""
    for line in message.splitlines():
        if line.startswith(BRIEF_PREFIX):
            try:
                brief = json.loads(line.removeprefix(BRIEF_PREFIX))
            except ValueError:
                return None
            return brief if isinstance(brief, dict) else None
    return None


def source_parts(message: str) -> dict[int, str]:
    """The numbered source parts of a message: ``{number: text}``."""
    parts: dict[int, str] = {}
    for line in message.splitlines():
        match = _PART.match(line.strip())
        if match:
            parts[int(match.group(1))] = match.group(2).strip()
    return parts


def written_reply(message: str) -> str | None:
    """The reply to a script-writing ``message`` (see the module docstring), or ``None``."""
    brief = brief_of(message)
    if brief is None:
        return None
    parts = source_parts(message)
    if brief.get("task") == "outline":
        return json.dumps(outline(parts, int(brief.get("sections") or 1)), ensure_ascii=False)
    if brief.get("task") == "script":
        return json.dumps({"turns": script(brief, parts)}, ensure_ascii=False)
    return None


def outline(parts: dict[int, str], sections: int) -> dict[str, Any]:
    numbers = sorted(parts)
    groups: list[list[int]] = []
    if len(numbers) >= sections:
        size, extra = divmod(len(numbers), sections)
        start = 0
        for index in range(sections):
            end = start + size + (1 if index < extra else 0)
            groups.append(numbers[start:end])
            start = end
    else:
        groups = [[numbers[index % len(numbers)]] if numbers else [] for index in range(sections)]
    planned = [
        {
            "title": f"Part {index + 1}: {_first_words(parts.get(group[0], ''), 5)}"
            if group
            else f"Part {index + 1}",
            "summary": _first_words(parts.get(group[0], ""), 12) if group else "",
            "parts": group,
        }
        for index, group in enumerate(groups)
    ]
    return {"title": _first_words(parts.get(numbers[0], "") if numbers else "", 6), "sections": planned}


def script(brief: dict[str, Any], parts: dict[int, str]) -> list[dict[str, str]]:
    speakers = [str(name) for name in brief.get("speakers") or ["Host"]]
    budget = int(brief.get("words") or 150)
    turns: list[dict[str, str]] = []
    if brief.get("opening"):
        others = speakers[1:]
        with_whom = f", and with me is {' and '.join(others)}" if others else ""
        about = f" Today: {brief['section']}." if brief.get("section") else ""
        turns.append(
            {"speaker": speakers[0], "text": f"{OPENING_WORDS} I'm {speakers[0]}{with_whom}.{about}"}
        )
    sentences = [
        sentence
        for number in sorted(parts)
        for sentence in _SENTENCE_END.split(parts[number])
        if sentence.strip()
    ]
    used = sum(len(turn["text"].split()) for turn in turns)
    spoken: list[str] = []
    for sentence in sentences:
        if spoken and used + len(sentence.split()) > budget:
            break
        spoken.append(sentence.strip())
        used += len(sentence.split())
    for index in range(0, len(spoken), SENTENCES_PER_TURN):
        speaker = speakers[(len(turns)) % len(speakers)]
        turns.append({"speaker": speaker, "text": " ".join(spoken[index : index + SENTENCES_PER_TURN])})
    if brief.get("close"):
        turns.append({"speaker": speakers[0], "text": CLOSING_TEXT})
    return turns


def _first_words(text: str, count: int) -> str:
    return " ".join(re.sub(r"[^\w\s'-]", " ", text).split()[:count])
