"""Faults the emulator can inject, and the thread-safe book that hands them out.

A :class:`Fault` fires at most ``times`` times (``None``: every time) and is used up when
it has. Handshake faults fire on the next WebSocket handshakes, whatever the request;
response faults fire on the next ``response.create`` whose spoken input contains
``match`` (any response when ``match`` is ``None``).
"""

from __future__ import annotations

import enum
import re
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final


class FaultKind(enum.StrEnum):
    """What goes wrong. The value is the name used on the command line."""

    HANDSHAKE_401 = "handshake_401"
    HANDSHAKE_403 = "handshake_403"
    HANDSHAKE_404 = "handshake_404"
    HANDSHAKE_429 = "handshake_429"
    HANDSHAKE_500 = "handshake_500"
    HANDSHAKE_503 = "handshake_503"
    ERROR_EVENT = "error_event"
    """An ``error`` event part-way through the audio; nothing more for that response."""
    CLOSE_MID_STREAM = "close_mid_stream"
    """The connection drops part-way through the audio, without ``response.done``."""
    HANG = "hang"
    """Nothing at all is sent for the response, ever."""
    NO_AUDIO = "no_audio"
    """``response.done`` "completed" without a single audio delta and an empty transcript."""
    CONTENT_FILTER = "content_filter"
    """Some audio, then ``response.done`` "incomplete" with reason ``content_filter``."""
    FAILED = "failed"
    """``response.done`` "failed" with ``status_details.error``, no audio."""
    PARAPHRASE = "paraphrase"
    """Some words are replaced, deterministically, in both the audio and the transcript."""
    SPEAK_MARKERS = "speak_markers"
    """The marker lines around the text are read aloud too, in words ("less than less than…")."""
    MAX_OUTPUT_TOKENS = "max_output_tokens"
    """The response stops half-way with "incomplete"/``max_output_tokens``, as if capped."""
    RATE_LIMITED = "rate_limited"
    """In-session throttling: ``response.done`` "failed" with ``rate_limit_exceeded`` and
    "Please try again in <retry_after>" in the message, no audio."""
    RATE_LIMIT_ERROR_EVENT = "rate_limit_error_event"
    """In-session throttling as an ``error`` event (``rate_limit_exceeded``) part-way
    through the audio; nothing more for that response."""
    INSUFFICIENT_QUOTA = "insufficient_quota"
    """``response.done`` "failed" with ``insufficient_quota``, no audio."""
    INVALID_SCRIPT = "invalid_script"
    """A script-writing (text-only) response completes with a reply that is not the JSON
    asked for: ``message`` when given (e.g. JSON naming an unknown speaker), else prose."""

    @property
    def is_handshake(self) -> bool:
        return self.value.startswith("handshake_")

    @property
    def http_status(self) -> int:
        """The HTTP status of a handshake fault; ``ValueError`` for response faults."""
        if not self.is_handshake:
            raise ValueError(f"{self.value} is not a handshake fault")
        return int(self.value.removeprefix("handshake_"))


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault to inject.

    ``times``: how many times it fires (``None``: unlimited). ``match``: response faults
    fire only for responses whose spoken input contains this substring (ignored by
    handshake faults). ``retry_after``: seconds sent in ``retry-after`` (and
    ``retry-after-ms``) with a handshake 429 or 503, and the wait named in the message of
    ``rate_limited`` and ``rate_limit_error_event`` (default 0.85 s, written "850ms").
    ``at``: the fraction of the response's audio sent before a mid-stream fault
    (``error_event``, ``rate_limit_error_event``, ``close_mid_stream``, ``content_filter``)
    fires. ``code``/``error_type``/``message``: override the error sent by ``error_event``,
    ``failed`` and the throttling faults. ``close_code``: the close code for
    ``close_mid_stream``; 1006 aborts the TCP connection without a close frame. ``nth``: the
    fault lets the first ``nth - 1`` matching responses (or handshakes) through and fires
    from the ``nth`` on.
    """

    kind: FaultKind
    times: int | None = 1
    match: str | None = None
    retry_after: float | None = None
    at: float = 0.5
    code: str | None = None
    error_type: str | None = None
    message: str | None = None
    close_code: int = 1011
    nth: int = 1

    def __post_init__(self) -> None:
        # Accept the plain names too ("hang"), as the command line does.
        object.__setattr__(self, "kind", FaultKind(self.kind))
        if self.times is not None and self.times < 1:
            raise ValueError("Fault.times must be at least 1 (or None for unlimited)")
        if not 0.0 <= self.at <= 1.0:
            raise ValueError("Fault.at must be a fraction from 0 to 1")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("Fault.retry_after cannot be negative")
        if self.nth < 1:
            raise ValueError("Fault.nth must be at least 1")


DEFAULT_THROTTLE_RETRY_AFTER: Final = 0.85


def throttling_error(fault: Fault) -> dict[str, str]:
    """The ``{type, code, message}`` of a throttling fault, shaped as the service words
    them ("Rate limit reached for ... Please try again in 850ms." / ``insufficient_quota``)."""
    if fault.kind is FaultKind.INSUFFICIENT_QUOTA:
        return {
            "type": fault.error_type or "insufficient_quota",
            "code": fault.code or "insufficient_quota",
            "message": fault.message
            or "You exceeded your current quota, please check your plan and billing details.",
        }
    seconds = DEFAULT_THROTTLE_RETRY_AFTER if fault.retry_after is None else fault.retry_after
    return {
        "type": fault.error_type or "tokens",
        "code": fault.code or "rate_limit_exceeded",
        "message": fault.message
        or (
            "Rate limit reached for gpt-realtime-mini in organization org-emulator on tokens per min "
            f"(TPM): Limit 40000, Used 39512, Requested 1830. Please try again in {_duration(seconds)}. "
            "Visit https://platform.openai.com/account/rate-limits to learn more."
        ),
    }


def _duration(seconds: float) -> str:
    """``seconds`` written as the service does: ``850ms``, ``20s``, ``1m26.4s``."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(round(seconds, 3), 60)
    text = f"{rest:g}s"
    return f"{int(minutes)}m{text}" if minutes else text


def parse_fault(spec: str) -> Fault:
    """Parse a command-line fault: ``KIND``, ``KIND:TIMES`` or ``KIND:always``, optionally
    followed by ``:RETRY_AFTER`` (seconds, for ``handshake_429``/``503`` and the throttling
    faults) and ``:NTH`` (the first response it fires on), e.g. ``rate_limited:1:20:2``.
    Raises ``ValueError`` with the valid kinds listed when ``spec`` is malformed.
    """
    name, _, rest = spec.strip().partition(":")
    try:
        kind = FaultKind(name.strip().lower())
    except ValueError:
        valid = ", ".join(kind.value for kind in FaultKind)
        raise ValueError(f"unknown fault {name!r}; choose one of: {valid}") from None
    times_text, _, rest = rest.partition(":")
    retry_text, _, nth_text = rest.partition(":")
    times: int | None = 1
    if times_text.strip().lower() in ("always", "inf", "*"):
        times = None
    elif times_text.strip():
        times = int(times_text)
    retry_after = float(retry_text) if retry_text.strip() else None
    nth = int(nth_text) if nth_text.strip() else 1
    return Fault(kind, times=times, retry_after=retry_after, nth=nth)


@dataclass(slots=True)
class _PendingFault:
    fault: Fault
    remaining: int | None
    passed: int = 0
    """Matching responses let through so far (until ``fault.nth - 1``)."""


class FaultBook:
    """The pending faults. Every method is safe to call from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[_PendingFault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._pending.append(_PendingFault(fault, fault.times))

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def pending(self) -> list[Fault]:
        """The faults that can still fire, in the order they were added."""
        with self._lock:
            return [entry.fault for entry in self._pending]

    def take_handshake_fault(self) -> Fault | None:
        """Use up and return the first pending handshake fault, if any."""
        return self._take(lambda fault: fault.kind.is_handshake)

    def take_response_fault(self, spoken_input: str) -> Fault | None:
        """Use up and return the first response fault that applies to ``spoken_input``."""
        return self._take(
            lambda fault: not fault.kind.is_handshake and (fault.match is None or fault.match in spoken_input)
        )

    def _take(self, applies: Callable[[Fault], bool]) -> Fault | None:
        with self._lock:
            for index, entry in enumerate(self._pending):
                if not applies(entry.fault):
                    continue
                if entry.passed < entry.fault.nth - 1:
                    entry.passed += 1
                    continue
                if entry.remaining is not None:
                    entry.remaining -= 1
                    if entry.remaining <= 0:
                        del self._pending[index]
                return entry.fault
        return None


_PARAPHRASE_SWAPS: Final[dict[str, str]] = {
    "the": "this",
    "and": "plus",
    "big": "large",
    "small": "little",
    "quick": "fast",
    "start": "begin",
    "end": "finish",
    "say": "state",
    "said": "stated",
    "very": "really",
    "good": "fine",
    "great": "wonderful",
    "many": "numerous",
    "often": "frequently",
    "begin": "start",
    "show": "display",
    "help": "assist",
    "use": "employ",
    "about": "regarding",
    "because": "since",
}
_PARAPHRASE_FALLBACKS: Final = ("certainly", "perhaps", "notably", "basically", "simply", "truly")
_WORD_PATTERN: Final = re.compile(r"[A-Za-z]{3,}")


def paraphrase(text: str) -> str:
    """``text`` with some words changed, the same way every time.

    Every third word of three or more letters is replaced (by a synonym when one is known,
    else by a filler word picked from the word's CRC-32), keeping its capitalisation. Text
    without such words gets ``" Indeed."`` appended, so the result always differs.
    """
    eligible = list(_WORD_PATTERN.finditer(text))
    if not eligible:
        return text + " Indeed."
    out: list[str] = []
    last = 0
    for position, match in enumerate(eligible):
        if position % 3 != 0:
            continue
        word = match.group()
        lower = word.lower()
        replacement = (
            _PARAPHRASE_SWAPS.get(lower)
            or _PARAPHRASE_FALLBACKS[zlib.crc32(lower.encode()) % len(_PARAPHRASE_FALLBACKS)]
        )
        if replacement == lower:
            replacement = "indeed"
        if word.isupper() and len(word) > 1:
            replacement = replacement.upper()
        elif word[0].isupper():
            replacement = replacement.capitalize()
        out.append(text[last : match.start()])
        out.append(replacement)
        last = match.end()
    out.append(text[last:])
    return "".join(out)
