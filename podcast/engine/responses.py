"""What one Realtime response yields: the typed server events turned into audio and
transcript pieces, the final status checked, and the result types of a narration.

:class:`ResponseState` is fed the server events of one attempt (the SDK's typed events, and
audio deltas from the fast path of :mod:`podcast.engine.receive`) and turns them into stream
events; :meth:`ResponseState.finish` checks the final
``response.done`` and returns a :class:`ResponseDone` or raises the typed error of the
failure, carrying the tokens it billed. Throttling reported inside the session (an
``error`` event or a ``failed`` response with ``rate_limit_exceeded``, or
``insufficient_quota``) is classified by :func:`throttling_error`, so it is retried like a
handshake 429 (or, for quota, never).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from openai.types.realtime import (
    RealtimeError,
    RealtimeErrorEvent,
    RealtimeResponse,
    RealtimeResponseStatus,
    RealtimeResponseUsage,
    RealtimeServerEvent,
    ResponseAudioDeltaEvent,
    ResponseAudioTranscriptDeltaEvent,
    ResponseAudioTranscriptDoneEvent,
    ResponseCreatedEvent,
    ResponseDoneEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    SessionCreatedEvent,
)
from openai.types.realtime.realtime_response_status import Error as ResponseStatusError
from pydantic import BaseModel

from podcast.engine import audio
from podcast.engine.receive import DecodedAudioDelta, RawAudioDelta, RawTranscriptDelta, decode_audio
from podcast.errors import (
    ConnectionLostError,
    EmptyAudioError,
    NarrationError,
    QuotaExceededError,
    RateLimitedError,
    RealtimeServerError,
    ResponseCancelledError,
    ResponseFailedError,
    ResponseIncompleteError,
)
from podcast.wire import Usage

DEFAULT_RATE_LIMIT_RETRY_SECONDS: Final = 5.0
"""The wait assumed when a rate-limit message says none (or nothing we can read)."""
MAX_RATE_LIMIT_RETRY_SECONDS: Final = 24 * 3600.0
"""A longer wait read from a message is taken as a misreading and capped here."""
_RATE_LIMIT_CODES: Final = frozenset({"rate_limit_exceeded", "rate_limit_error", "too_many_requests", "429"})
_QUOTA_CODES: Final = frozenset({"insufficient_quota", "quota_exceeded"})
_RATE_LIMIT_MESSAGE: Final = re.compile(r"\brate[ _-]?limit", re.IGNORECASE)
_QUOTA_MESSAGE: Final = re.compile(r"\b(insufficient[ _]quota|exceeded your current quota)\b", re.IGNORECASE)
_DURATION_PART: Final = (
    r"\d+(?:\.\d+)?\s*(?:ms|milliseconds?|h|hours?|m(?![a-z])|min(?:ute)?s?|s|sec(?:ond)?s?)(?![a-z])"
)
_RETRY_IN: Final = re.compile(
    rf"(?:try again|retry)\s+(?:in|after)\s+((?:{_DURATION_PART}\s*)+)", re.IGNORECASE
)
_DURATION_PIECE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)", re.IGNORECASE)
_UNIT_SECONDS: Final = {"ms": 0.001, "h": 3600.0, "m": 60.0, "s": 1.0}


def retry_after_from_message(message: str | None) -> float:
    """Seconds to wait, read from a rate-limit message ("Please try again in 1m26.4s",
    "in 20s", "in 850ms", "retry after 2.5 seconds"); :data:`DEFAULT_RATE_LIMIT_RETRY_SECONDS`
    when the message names no wait we can read. Never negative, at most a day."""
    found = _RETRY_IN.search(message or "")
    if found is None:
        return DEFAULT_RATE_LIMIT_RETRY_SECONDS
    seconds = 0.0
    for amount, unit in _DURATION_PIECE.findall(found.group(1)):
        unit = unit.lower()
        key = "ms" if unit.startswith(("ms", "milli")) else unit[0]
        seconds += float(amount) * _UNIT_SECONDS[key]
    return min(MAX_RATE_LIMIT_RETRY_SECONDS, seconds)


def throttling_error(
    error_type: str | None, code: str | None, message: str | None
) -> RateLimitedError | QuotaExceededError | None:
    """The typed error for a rate-limit or quota failure reported inside a session (an
    ``error`` event or a ``failed`` response), classified on type, code and message; else
    ``None``. Quota is checked first: an exhausted quota must never be retried."""
    labels = {str(label).strip().lower() for label in (error_type, code) if label}
    text = str(message or "")
    if labels & _QUOTA_CODES or _QUOTA_MESSAGE.search(text):
        return QuotaExceededError(text[:300] or None)
    if labels & _RATE_LIMIT_CODES or _RATE_LIMIT_MESSAGE.search(text):
        return RateLimitedError(
            f"Azure OpenAI is rate limiting the session ({code or error_type or 'rate limit'})",
            retry_after=retry_after_from_message(text),
        )
    return None


def usage_from_event(usage: RealtimeResponseUsage | None) -> Usage:
    """The tokens of the SDK's ``RealtimeResponseUsage``, tolerating missing or malformed parts."""
    if not isinstance(usage, RealtimeResponseUsage):
        return Usage()
    inp, out = usage.input_token_details, usage.output_token_details
    return Usage(
        input_tokens=_int(usage.input_tokens),
        output_tokens=_int(usage.output_tokens),
        input_text_tokens=_int(inp.text_tokens) if inp is not None else 0,
        input_audio_tokens=_int(inp.audio_tokens) if inp is not None else 0,
        input_cached_tokens=_int(inp.cached_tokens) if inp is not None else 0,
        output_text_tokens=_int(out.text_tokens) if out is not None else 0,
        output_audio_tokens=_int(out.audio_tokens) if out is not None else 0,
    )


@dataclass(frozen=True, slots=True)
class Timings:
    """Seconds from sending ``response.create``: to the first audio, and to ``response.done``."""

    first_audio_seconds: float | None
    total_seconds: float


@dataclass(frozen=True, slots=True)
class ResponseDone:
    """The end of a successful response: everything except the audio itself."""

    transcript: str
    status: str
    usage: Usage
    timings: Timings
    audio_bytes: int
    voice: str
    response_id: str | None
    session_id: str | None

    @property
    def duration_seconds(self) -> float:
        return audio.duration_seconds(self.audio_bytes)


@dataclass(frozen=True, slots=True)
class AudioDelta:
    """A piece of PCM16 24 kHz mono audio, in order."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class TranscriptDelta:
    """A piece of the transcript of what is being said."""

    text: str


StreamEvent: TypeAlias = AudioDelta | TranscriptDelta | ResponseDone


@dataclass(frozen=True, slots=True)
class SpokenText:
    """One text read by one Realtime response (after any retries): PCM16 24 kHz mono
    ``audio``, what was said, and what it cost.

    ``audio`` is a buffer of its own (the deltas appended as they came): its owner may change it
    in place, e.g. fade its edges, without copying the whole narration again."""

    audio: bytearray
    transcript: str
    status: str
    usage: Usage
    """Tokens of the successful attempt."""
    billed_usage: Usage
    """Tokens of every attempt, including failed ones that still billed."""
    timings: Timings
    voice: str
    attempts: int
    response_id: str | None = None
    session_id: str | None = None
    transcript_marks: tuple[tuple[int, str], ...] = ()
    """Each transcript delta with the bytes of audio that had arrived before it: where in
    the audio its words are (a first estimate, for captions)."""

    @property
    def duration_seconds(self) -> float:
        return audio.duration_seconds(self.audio)


@dataclass
class ResponseState:
    """What one attempt has seen so far; turns server events into stream events.

    An event that fails the SDK's validation is still built, *without* validation: a
    field the server left out reads as ``None`` whatever its declared type, and an event
    type the SDK does not know is built as some other event class with its own ``type``.
    So each case matches the class *and* its ``type``, and every field that a
    non-conforming server might leave out is read as optional.
    """

    voice: str
    expects_audio: bool = True
    """``False`` for a text-only response (``output_modalities: ["text"]``): its text is
    gathered as the transcript, and no audio is no failure."""
    session_id: str | None = None
    response_id: str | None = None
    requested_at: float = 0.0
    first_audio_at: float | None = None
    audio_bytes: int = 0
    transcript_parts: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    done: RealtimeResponse | None = None

    def handle(
        self, event: RealtimeServerEvent | DecodedAudioDelta | RawAudioDelta | RawTranscriptDelta
    ) -> list[StreamEvent]:
        """Process one server event (audio and transcript deltas may come from the fast path,
        :mod:`podcast.engine.receive`); return what to yield. Raises on ``error`` events."""
        match event:
            case DecodedAudioDelta():
                return self._pcm(event.response_id, event.pcm)
            case RawAudioDelta():
                return self._audio(event.response_id, event.delta)
            case RawTranscriptDelta():
                return self._transcript(event.response_id, event.item_id, event.content_index, event.delta)
            case ResponseAudioDeltaEvent(type="response.output_audio.delta"):
                return self._audio(event.response_id, event.delta)
            case ResponseAudioTranscriptDeltaEvent(type="response.output_audio_transcript.delta"):
                return self._transcript(event.response_id, event.item_id, event.content_index, event.delta)
            case ResponseTextDeltaEvent(type="response.output_text.delta"):
                return self._transcript(event.response_id, event.item_id, event.content_index, event.delta)
            case ResponseTextDoneEvent(type="response.output_text.done"):
                text: object = event.text
                if self._ours(event.response_id) and isinstance(text, str):
                    self.transcript_parts[_key(event.item_id, event.content_index)] = [text]
            case ResponseAudioTranscriptDoneEvent(type="response.output_audio_transcript.done"):
                transcript: object = event.transcript
                if self._ours(event.response_id) and isinstance(transcript, str):
                    # The final transcript is authoritative; deltas may have been partial.
                    self.transcript_parts[_key(event.item_id, event.content_index)] = [transcript]
            case SessionCreatedEvent(type="session.created"):
                # The session's ``id`` is not among the SDK's declared fields: an extra.
                session: object = event.session
                extra = session.model_extra if isinstance(session, BaseModel) else None
                self.session_id = (extra or {}).get("id")
            case ResponseCreatedEvent(type="response.created"):
                created: RealtimeResponse | None = event.response
                if self.response_id is None and isinstance(created, RealtimeResponse):
                    self.response_id = created.id
            case RealtimeErrorEvent(type="error"):
                raise server_error(event.error)
            case ResponseDoneEvent(type="response.done"):
                response: RealtimeResponse | None = event.response
                if isinstance(response, RealtimeResponse) and (
                    self.response_id is None or response.id in (None, self.response_id)
                ):
                    self.done = response
        return []

    def finish(self, total_seconds: float) -> ResponseDone:
        """Check the final status; return the result or raise its typed error."""
        assert self.done is not None, "finish() is called once response.done has arrived"
        response = self.done
        status: str = response.status or "completed"
        usage = usage_from_event(response.usage)
        details: RealtimeResponseStatus | None = response.status_details
        if not isinstance(details, RealtimeResponseStatus):
            details = RealtimeResponseStatus()
        if status == "incomplete":
            error: NarrationError = ResponseIncompleteError(
                details.reason, audio_seconds=audio.duration_seconds(self.audio_bytes)
            )
        elif status == "failed":
            failure: ResponseStatusError | None = details.error
            if not isinstance(failure, ResponseStatusError):
                failure = ResponseStatusError()
            error = throttling_error(failure.type, failure.code, failure.message) or ResponseFailedError(
                f"Azure OpenAI failed the response: {failure.message or 'no details'}",
                error_type=failure.type,
                server_code=failure.code,
            )
        elif status == "cancelled":
            error = ResponseCancelledError(details.reason)
        elif status != "completed":
            error = NarrationError(f"unexpected response status {status!r}")
        elif self.audio_bytes == 0 and self.expects_audio:
            error = EmptyAudioError("Azure OpenAI completed the response without any audio")
        else:
            transcript = "".join("".join(parts) for parts in self.transcript_parts.values())
            first = None if self.first_audio_at is None else self.first_audio_at - self.requested_at
            return ResponseDone(
                transcript=transcript.strip(),
                status=status,
                usage=usage,
                timings=Timings(first_audio_seconds=first, total_seconds=total_seconds),
                audio_bytes=self.audio_bytes,
                voice=self.voice,
                response_id=self.response_id,
                session_id=self.session_id,
            )
        error.billed_usage = usage
        raise error

    def lost(self, message: str) -> ConnectionLostError:
        """The error for a connection that closed before ``response.done``."""
        seconds = audio.duration_seconds(self.audio_bytes)
        return ConnectionLostError(f"{message}; {seconds:.1f}s of audio received and discarded")

    def _audio(self, response_id: object, delta: object) -> list[StreamEvent]:
        if not self._ours(response_id):
            return []
        return self._pcm(response_id, decode_audio(delta))

    def _pcm(self, response_id: object, pcm: bytes) -> list[StreamEvent]:
        if not pcm or not self._ours(response_id):
            return []
        if self.first_audio_at is None:
            self.first_audio_at = time.monotonic()
        self.audio_bytes += len(pcm)
        return [AudioDelta(pcm)]

    def _transcript(
        self, response_id: object, item_id: str | None, content_index: int | None, delta: str | None
    ) -> list[StreamEvent]:
        if not self._ours(response_id) or not delta:
            return []
        self._parts(item_id, content_index).append(delta)
        return [TranscriptDelta(delta)]

    def _ours(self, response_id: object) -> bool:
        return self.response_id is None or response_id is None or response_id == self.response_id

    def _parts(self, item_id: str | None, content_index: int | None) -> list[str]:
        return self.transcript_parts.setdefault(_key(item_id, content_index), [])


def _key(item_id: str | None, content_index: int | None) -> tuple[str, int]:
    """Which output content a transcript belongs to (missing parts read as empty, 0)."""
    return (str(item_id or ""), _int(content_index))


def server_error(error: RealtimeError | None) -> NarrationError:
    """The typed error of an ``error`` event: rate limiting and quota as such, else a
    :class:`RealtimeServerError` with the event's code and message."""
    if not isinstance(error, RealtimeError):
        return RealtimeServerError("no message", server_code=None, error_type=None, param=None)
    throttled = throttling_error(error.type, error.code, error.message)
    if throttled is not None:
        return throttled
    return RealtimeServerError(
        str(error.message or "no message")[:500],
        server_code=error.code,
        error_type=error.type,
        param=error.param,
    )


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
