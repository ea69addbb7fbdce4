"""One narration over the GA Realtime WebSocket API, with typed errors and bounded retries.

:class:`Narrator` opens a Realtime session per narration with the official ``openai`` SDK
(``AsyncOpenAI(websocket_base_url=...).realtime.connect(model=deployment)``), configures
the session (``session.type="realtime"``, audio-only output, the voice, PCM16 at 24 kHz),
sends the text as one ``input_text`` message and asks for one response.

It follows the protocol, not any one server's habits: it dispatches on the SDK's typed
server events (``openai.types.realtime``), ignores event types it does not need, accepts
any delta sizes and any interleaving of audio and transcript, and finishes only on
``response.done`` for its own response. Messages are parsed by :mod:`podcast.engine.receive`:
an audio delta gives the same two fields without the SDK's models, every other event is the
SDK's own class for its type (validated by it), anything else the SDK's ``parse_event``.

Two ways to use it:

- :meth:`Narrator.narrate` returns a :class:`SpokenText` with all the audio, retrying
  transient failures (429, 5xx, dropped connections, time-outs) with exponential
  backoff and jitter.
- :meth:`Narrator.write_text` asks the same deployment for a text-only response
  (``output_modalities: ["text"]``, e.g. a script to be voiced later) and returns its text,
  with the same retries, errors and billing as :meth:`Narrator.narrate`.
- :meth:`Narrator.stream` yields :class:`AudioDelta` and :class:`TranscriptDelta` as they
  arrive and a final :class:`ResponseDone`, in one attempt, so a caller can keep memory
  flat; errors are raised, never returned as a short result.

Given :class:`VoiceSessions`, :meth:`Narrator.narrate` keeps a session open once its
response is done and voices a later text of the same voice in it, as an out-of-band
response (``response.create`` with ``conversation: "none"``, the instructions and the text
as its ``input``): the conversation never grows, so nothing said before is billed again,
and the handshake and ``session.update`` are paid once per session instead of once per text.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, cast

from openai import AsyncOpenAI, OpenAIError
from openai.types.realtime import (
    ConversationItemCreateEventParam,
    RealtimeSessionCreateRequestParam,
    ResponseCreateEventParam,
    SessionUpdateEventParam,
)
from tenacity import AsyncRetrying, RetryCallState
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from podcast.engine import audio
from podcast.engine.connection import BufferedClientConnection
from podcast.engine.instructions import DEFAULT_READ_INSTRUCTIONS
from podcast.engine.receive import parse_message
from podcast.engine.responses import (
    AudioDelta,
    ResponseDone,
    ResponseState,
    SpokenText,
    StreamEvent,
    TranscriptDelta,
)
from podcast.errors import (
    AuthenticationError,
    ConnectionLostError,
    DeploymentNotFoundError,
    NarrationError,
    NarrationTimeoutError,
    PodcastError,
    QuotaExceededError,
    RateLimitedError,
    RequestValidationError,
    ServiceUnavailableError,
    UpstreamConfigurationError,
)
from podcast.settings import (
    COGNITIVE_SERVICES_SCOPE,
    DEPLOYMENT_SETTING,
    ENDPOINT_SETTING,
    RealtimeSettings,
)
from podcast.voices import DEFAULT_VOICE, voice_error
from podcast.wire import Usage

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

log = logging.getLogger(__name__)

MAX_OUTPUT_TOKENS_LIMIT = 4096
"""The most output tokens one Realtime response may produce (about 3.4 minutes of audio)."""

CLOSE_TIMEOUT_SECONDS = 1.0
"""How long closing a connection may wait for the server's close frame (e.g. after a cancel)."""

MAX_UPSTREAM_MESSAGE_CHARACTERS: Final = 300
"""How much of a handshake error body's message an error carries."""

MaxOutputTokens: TypeAlias = int | Literal["inf"]
Output: TypeAlias = Literal["audio", "text"]
"""What a response produces: speech (with its transcript), or text alone."""
TokenProvider: TypeAlias = Callable[[], Awaitable[str]]


# --- Retry policy ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter for transient failures.

    The n-th retry (n from 0) waits ``min(max_delay, base_delay * 2**n)`` scaled by a
    random factor in [0.5, 1), and never less than a server's ``retry-after``. A
    ``retry-after`` longer than ``max_retry_after`` is not waited for: the error goes to
    the caller, who can pass it on (HTTP 429 with ``Retry-After``). A shorter one is waited
    for when the call's time budget allows it (an in-session "try again in 1m26s" included).
    """

    max_retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_after: float = 90.0

    def delay(self, retry_index: int, retry_after: float | None, jitter: float) -> float:
        backoff = min(self.max_delay, self.base_delay * 2.0**retry_index) * (0.5 + jitter / 2)
        return max(backoff, retry_after or 0.0)


# --- Sessions kept for reuse ---------------------------------------------------------------------


@dataclass
class _OpenSession:
    manager: Any
    connection: Any
    session_id: str | None


class VoiceSessions:
    """Open Realtime sessions that finished a response, kept by voice until :meth:`aclose`.

    A session's voice is fixed once it has spoken, so a session is only ever taken again
    for its own voice; each serves one response at a time (taken, then given back once that
    response is done, closed instead after any failure). Create one per narration and close
    it when the narration ends (``async with``), well within a session's 30 to 60 minutes.
    """

    def __init__(self) -> None:
        self._idle: dict[str, list[_OpenSession]] = {}
        self.opened = 0
        """Sessions opened for responses narrated with this pool."""
        self.reused = 0
        """Responses voiced in a session that had voiced one before."""

    def _take(self, voice: str) -> _OpenSession | None:
        idle = self._idle.get(voice)
        return idle.pop() if idle else None

    def _give_back(self, voice: str, session: _OpenSession) -> None:
        self._idle.setdefault(voice, []).append(session)

    async def aclose(self) -> None:
        """Close every idle session, all at once (so closing takes one close handshake, at
        most :data:`CLOSE_TIMEOUT_SECONDS`, however many sessions there are)."""
        sessions = [session for idle in self._idle.values() for session in idle]
        self._idle.clear()
        await asyncio.gather(*(_close_quietly(session.connection) for session in sessions))

    async def __aenter__(self) -> VoiceSessions:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _close_quietly(connection: Any) -> None:
    """Close ``connection``, waiting at most :data:`CLOSE_TIMEOUT_SECONDS`; failures are moot."""
    with contextlib.suppress(Exception, asyncio.TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await connection.close()


# --- The narrator ------------------------------------------------------------------------------


class Narrator:
    """Narrates text through one Azure OpenAI Realtime deployment.

    Create one per process and reuse it (it holds the SDK client). Call :meth:`close`
    when done; it closes the SDK client, never the credential.

    ``credential`` is the app's async Azure token credential (managed identity in Azure),
    required when ``settings.api_key`` is ``None``; its tokens are cached by the bearer
    token provider. ``sleep`` and ``jitter`` are injectable so tests run retries without
    waiting. ``compression`` offers permessage-deflate to the server; it is off because
    inflating costs the client more CPU than the bytes it saves are worth (about the
    floor's CPU again for about half the bytes on synthetic speech, and a stream at real
    time is only about 65 kB/s; ``bash benchmarks/run.sh`` measures both).
    """

    def __init__(
        self,
        settings: RealtimeSettings,
        *,
        credential: AsyncTokenCredential | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        open_timeout: float = 15.0,
        compression: bool = False,
    ) -> None:
        self.settings = settings
        self.retry = retry or RetryPolicy(max_retries=settings.max_retries)
        self._sleep = sleep
        self._jitter = jitter
        api_key: str | TokenProvider
        if settings.api_key:
            api_key = settings.api_key
        elif credential is None:
            raise ValueError("a Narrator without an API key needs a token credential")
        else:
            from azure.identity.aio import get_bearer_token_provider

            api_key = _entra_token_provider(get_bearer_token_provider(credential, COGNITIVE_SERVICES_SCOPE))
        http_base = settings.endpoint.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
        self._client = AsyncOpenAI(
            api_key=api_key,
            base_url=http_base,
            websocket_base_url=settings.endpoint,
            max_retries=0,
        )
        self._open_timeout = open_timeout
        self._compression = "deflate" if compression else None

    async def close(self) -> None:
        """Release the SDK client (the credential is its owner's to close)."""
        await self._client.close()

    async def __aenter__(self) -> Narrator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def narrate(
        self,
        text: str,
        *,
        voice: str = DEFAULT_VOICE,
        instructions: str = DEFAULT_READ_INSTRUCTIONS,
        max_output_tokens: MaxOutputTokens = MAX_OUTPUT_TOKENS_LIMIT,
        budget_seconds: float | None = None,
        on_retry: Callable[[PodcastError], None] | None = None,
        sessions: VoiceSessions | None = None,
        output: Output = "audio",
        on_audio: Callable[[bytearray], None] | None = None,
    ) -> SpokenText:
        """Narrate ``text`` and return all its audio, retrying transient failures.

        With ``sessions``, an idle session of ``voice`` is used if there is one (else a new
        one is opened), the text is sent as an out-of-band response, and the session is
        given back once the response is done (see the module docstring).

        ``on_audio(pcm)`` is called after each audio delta is appended to the attempt's
        buffer ``pcm`` (a new one for each attempt; the result's ``audio`` is the last one):
        e.g. to store the audio while it streams. It must not block or raise, and must not
        change ``pcm`` or keep a view of it (the buffer grows after it returns).

        With ``output="text"`` the response is text only (see :meth:`write_text`): the
        result's ``transcript`` is the text and its ``audio`` is empty (``sessions`` are for
        audio only).

        ``budget_seconds`` bounds the whole call, retries and waits included (each attempt
        gets what is left, up to the response timeout); no retry starts that could not
        finish in time. ``on_retry(error)`` is called before each retry (e.g. to lower a
        caller's concurrency on rate limiting). Raises a
        :class:`~podcast.errors.NarrationError` subclass when the narration cannot be done
        (:class:`~podcast.errors.UpstreamConfigurationError` when the service refuses the
        deployment itself); never returns partial audio. A raised error carries ``billed_usage``: the tokens
        of every attempt.
        """
        deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
        billed = Usage()
        attempts = 0

        async def attempt() -> SpokenText:
            nonlocal attempts, billed
            attempts += 1
            pcm = bytearray()
            marks: list[tuple[int, str]] = []
            try:
                done = await self._collect(
                    text,
                    voice,
                    instructions,
                    max_output_tokens,
                    _remaining(deadline, self.settings.response_timeout_seconds),
                    pcm,
                    marks,
                    sessions,
                    output,
                    on_audio,
                )
            except PodcastError as error:
                billed += error.billed_usage
                raise
            billed += done.usage
            return SpokenText(
                audio=pcm,
                transcript=done.transcript,
                status=done.status,
                usage=done.usage,
                billed_usage=billed,
                timings=done.timings,
                voice=done.voice,
                attempts=attempts,
                response_id=done.response_id,
                session_id=done.session_id,
                transcript_marks=tuple(marks),
            )

        def before_sleep(state: RetryCallState) -> None:
            error = _failure(state)
            if on_retry is not None:
                on_retry(error)
            log.warning(
                "realtime attempt %d failed (%s); retrying in %.2fs",
                state.attempt_number,
                error.code,
                state.upcoming_sleep,
            )

        retrying = AsyncRetrying(
            # Checked in this order after each failed attempt; the jitter is drawn only
            # for an error that is retried, and the deadline is checked with the wait.
            retry=self._retryable,
            wait=self._wait,
            stop=lambda state: _past_deadline(deadline, state.upcoming_sleep),
            before_sleep=before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return await retrying(attempt)
        except PodcastError as error:
            error.billed_usage = billed
            raise

    async def _collect(
        self,
        text: str,
        voice: str,
        instructions: str,
        max_output_tokens: MaxOutputTokens,
        time_limit: float,
        pcm: bytearray,
        marks: list[tuple[int, str]],
        sessions: VoiceSessions | None = None,
        output: Output = "audio",
        on_audio: Callable[[bytearray], None] | None = None,
    ) -> ResponseDone:
        """One attempt drained into ``pcm`` (each delta appended as it arrives) and each
        transcript delta, with the audio bytes before it, into ``marks``; return its final
        event. Nothing is awaited between the stream's events here, so one deadline covers
        the whole attempt instead of a timeout per message.

        One growing buffer, not a list of deltas joined at the end: the join held the segment
        twice, and thousands of delta-sized blocks freed at once left the allocator's arenas
        fragmented by about as much again, both growing with the segment (large buffers are
        mapped, ``MALLOC_MMAP_THRESHOLD_``, so growing one remaps pages instead of copying)."""
        _check_arguments(text, voice, max_output_tokens)
        limit = _time_limit(time_limit, self.settings.response_timeout_seconds)
        deadline = asyncio.get_running_loop().time() + limit
        events = self._events(
            text,
            voice,
            instructions,
            max_output_tokens,
            limit,
            deadline,
            per_message=False,
            sessions=sessions,
            output=output,
        )
        try:
            async with asyncio.timeout_at(deadline), contextlib.aclosing(events):
                async for event in events:
                    if isinstance(event, AudioDelta):
                        pcm += event.pcm
                        if on_audio is not None:
                            on_audio(pcm)
                    elif isinstance(event, TranscriptDelta):
                        marks.append((len(pcm), event.text))
                    elif isinstance(event, ResponseDone):
                        return event
        except TimeoutError:
            raise _timed_out(limit) from None
        raise ConnectionLostError("the narration stream ended without a result")

    async def write_text(
        self,
        message: str,
        *,
        instructions: str,
        max_output_tokens: MaxOutputTokens = MAX_OUTPUT_TOKENS_LIMIT,
        budget_seconds: float | None = None,
    ) -> SpokenText:
        """Send ``message`` with ``instructions`` for a text-only response and return it
        (``transcript`` is the model's text, ``audio`` empty), retrying transient failures
        exactly as :meth:`narrate` does. A response cut by ``max_output_tokens`` raises
        :class:`~podcast.errors.ResponseIncompleteError`; raised errors carry ``billed_usage``.
        """
        return await self.narrate(
            message,
            instructions=instructions,
            max_output_tokens=max_output_tokens,
            budget_seconds=budget_seconds,
            output="text",
        )

    def _retryable(self, state: RetryCallState) -> bool:
        """Whether the failed attempt may be retried: a transient :class:`PodcastError`, a
        retry left, and no server ``retry-after`` longer than the policy waits for."""
        error = state.outcome.exception() if state.outcome is not None else None
        if not isinstance(error, PodcastError) or not error.transient:
            return False
        if state.attempt_number > self.retry.max_retries:
            return False
        return error.retry_after is None or error.retry_after <= self.retry.max_retry_after

    def _wait(self, state: RetryCallState) -> float:
        """Seconds before the next attempt: the policy's jittered backoff or ``retry-after``."""
        return self.retry.delay(state.attempt_number - 1, _failure(state).retry_after, self._jitter())

    async def stream(
        self,
        text: str,
        *,
        voice: str = DEFAULT_VOICE,
        instructions: str = DEFAULT_READ_INSTRUCTIONS,
        max_output_tokens: MaxOutputTokens = MAX_OUTPUT_TOKENS_LIMIT,
        time_limit: float | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Narrate ``text`` once, yielding audio and transcript as they arrive.

        The last event is a :class:`ResponseDone`; anything else ends in a raised
        :class:`~podcast.errors.NarrationError` (or
        :class:`~podcast.errors.UpstreamConfigurationError`). ``time_limit`` (default: the settings'
        response timeout) bounds the whole attempt, handshake included.
        """
        _check_arguments(text, voice, max_output_tokens)
        limit = _time_limit(time_limit, self.settings.response_timeout_seconds)
        # The deadline bounds only our own awaits, never the consumer's time between events.
        deadline = asyncio.get_running_loop().time() + limit
        events = self._events(text, voice, instructions, max_output_tokens, limit, deadline, per_message=True)
        async with contextlib.aclosing(events):
            async for event in events:
                yield event

    async def _events(
        self,
        text: str,
        voice: str,
        instructions: str,
        max_output_tokens: MaxOutputTokens,
        limit: float,
        deadline: float,
        *,
        per_message: bool,
        sessions: VoiceSessions | None = None,
        output: Output = "audio",
    ) -> AsyncGenerator[StreamEvent, None]:
        """The events of one attempt (see :meth:`stream`). With ``per_message`` every await
        here is bounded by ``deadline`` (the event loop's clock) on its own; without it the
        caller bounds the whole iteration by ``deadline`` and its ``TimeoutError`` is the
        caller's to translate."""
        state = ResponseState(voice=voice, expects_audio=output == "audio")
        started = time.monotonic()
        kept = sessions._take(voice) if sessions is not None else None
        if kept is not None:
            assert sessions is not None
            sessions.reused += 1
            manager, state.session_id = kept.manager, kept.session_id
        else:
            manager = self._client.realtime.connect(
                model=self.settings.deployment,
                websocket_connection_options=cast(
                    Any,
                    {
                        "open_timeout": min(self._open_timeout, limit),
                        "close_timeout": CLOSE_TIMEOUT_SECONDS,
                        "compression": self._compression,
                        "create_connection": BufferedClientConnection,
                    },
                ),
            )
        try:
            if kept is not None:
                connection = kept.connection
                opening: tuple[Any, ...] = (out_of_band_response(text, instructions, max_output_tokens),)
            else:
                async with asyncio.timeout_at(deadline):
                    connection = await manager.enter()
                if sessions is not None:
                    sessions.opened += 1
                    opening = (
                        {
                            "type": "session.update",
                            "session": _session_config(voice, instructions, max_output_tokens),
                        },
                        out_of_band_response(text, instructions, max_output_tokens),
                    )
                else:
                    opening = opening_events(text, voice, instructions, max_output_tokens, output)
            reusable = False
            try:
                async with asyncio.timeout_at(deadline):
                    for event in opening:
                        # What connection.send(event) sends: the SDK's transform of these
                        # typed dicts is the identity (a test checks), and costs about 1 ms.
                        await connection.send_raw(json.dumps(event))
                state.requested_at = time.monotonic()
                log.info(
                    "realtime response requested: deployment=%s voice=%s characters=%d",
                    self.settings.deployment,
                    voice,
                    len(text),
                )
                # Audio deltas skip the SDK's union of 46 event models (podcast.engine.receive).
                receive, parse = connection.recv_bytes, connection.parse_event
                while state.done is None:
                    if per_message:
                        async with asyncio.timeout_at(deadline):
                            message = await receive()
                    else:
                        message = await receive()
                    for item in state.handle(parse_message(message, parse)):
                        yield item
                reusable = sessions is not None
            finally:
                if reusable and sessions is not None:
                    # The response is over (whatever its status): the session can voice another.
                    sessions._give_back(voice, _OpenSession(manager, connection, state.session_id))
                else:
                    await _close_quietly(connection)
        except TimeoutError:
            raise _timed_out(limit) from None
        except InvalidStatus as exc:
            raise _handshake_error(exc, secret=self.settings.api_key) from None
        except InvalidURI as exc:
            raise ServiceUnavailableError(f"invalid Realtime URL: {exc}") from None
        except ConnectionClosed:
            raise state.lost("the connection closed before the response finished") from None
        except (InvalidHandshake, OSError) as exc:
            raise ServiceUnavailableError(f"could not reach Azure OpenAI ({type(exc).__name__})") from None
        except ValueError:
            raise NarrationError("Azure OpenAI sent a message that is not valid JSON") from None
        except OpenAIError as exc:
            raise ServiceUnavailableError(f"the Realtime connection failed ({type(exc).__name__})") from None
        done = state.finish(time.monotonic() - started)
        log.info(
            "realtime response done: response=%s status=%s audio=%.2fs first_audio=%s "
            "total=%.2fs tokens=%d/%d",
            done.response_id,
            done.status,
            done.duration_seconds,
            f"{done.timings.first_audio_seconds:.2f}s"
            if done.timings.first_audio_seconds is not None
            else "-",
            done.timings.total_seconds,
            done.usage.input_tokens,
            done.usage.output_tokens,
        )
        yield done


# --- Internals -------------------------------------------------------------------------------


def _entra_token_provider(provider: Callable[[], Awaitable[str]]) -> TokenProvider:
    """Wrap the Entra token provider so a credential failure is a clear, typed error."""

    async def token() -> str:
        try:
            return await provider()
        except Exception as exc:  # azure.identity raises several unrelated types
            raise AuthenticationError(
                "could not get a Microsoft Entra ID token for Azure OpenAI "
                f"({type(exc).__name__}); assign a managed identity with the "
                "'Cognitive Services OpenAI User' role, or set AZURE_OPENAI_AUDIO_API_KEY"
            ) from None

    return token


def opening_events(
    text: str,
    voice: str,
    instructions: str,
    max_output_tokens: MaxOutputTokens,
    output: Output = "audio",
) -> tuple[SessionUpdateEventParam, ConversationItemCreateEventParam, ResponseCreateEventParam]:
    """What a narration sends, in order: the GA ``session.update`` for audio-only narration
    (text-only with ``output="text"``), ``text`` as one user message, and ``response.create``."""
    session = (
        _session_config(voice, instructions, max_output_tokens)
        if output == "audio"
        else _text_session_config(instructions, max_output_tokens)
    )
    return (
        {"type": "session.update", "session": session},
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
        },
        {"type": "response.create"},
    )


def out_of_band_response(
    text: str, instructions: str, max_output_tokens: MaxOutputTokens
) -> ResponseCreateEventParam:
    """``response.create`` for ``text`` outside the conversation: ``conversation: "none"``, the
    text as its only ``input``, the instructions (and token cap) for this response alone."""
    return {
        "type": "response.create",
        "response": {
            "conversation": "none",
            "instructions": instructions,
            "max_output_tokens": max_output_tokens,
            "output_modalities": ["audio"],
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}],
        },
    }


def _session_config(
    voice: str, instructions: str, max_output_tokens: MaxOutputTokens
) -> RealtimeSessionCreateRequestParam:
    """The GA ``session.update`` session for audio-only narration."""
    return {
        "type": "realtime",
        "output_modalities": ["audio"],
        "instructions": instructions,
        "max_output_tokens": max_output_tokens,
        "audio": {
            "input": {"turn_detection": None},
            "output": {"voice": voice, "format": {"type": "audio/pcm", "rate": audio.SAMPLE_RATE}},
        },
    }


def _text_session_config(
    instructions: str, max_output_tokens: MaxOutputTokens
) -> RealtimeSessionCreateRequestParam:
    """The GA ``session.update`` session for a text-only response (no voice is ever used)."""
    return {
        "type": "realtime",
        "output_modalities": ["text"],
        "instructions": instructions,
        "max_output_tokens": max_output_tokens,
        "audio": {"input": {"turn_detection": None}},
    }


def _check_arguments(text: str, voice: str, max_output_tokens: MaxOutputTokens) -> None:
    if not text or not text.strip():
        raise RequestValidationError("text must not be empty", field="text")
    problem = voice_error(voice)
    if problem:
        raise RequestValidationError(f"voice: {problem}", field="voice")
    if max_output_tokens != "inf" and not 1 <= max_output_tokens <= MAX_OUTPUT_TOKENS_LIMIT:
        raise RequestValidationError(
            f"max_output_tokens must be from 1 to {MAX_OUTPUT_TOKENS_LIMIT} or 'inf'",
            field="max_output_tokens",
        )


def _time_limit(time_limit: float | None, default: float) -> float:
    """The seconds an attempt may take (``default`` when not given); raises
    :class:`~podcast.errors.NarrationTimeoutError` when none are left."""
    limit = default if time_limit is None else time_limit
    if limit <= 0:
        raise NarrationTimeoutError("no time was left for the narration")
    return limit


def _timed_out(limit: float) -> NarrationTimeoutError:
    return NarrationTimeoutError(f"no complete response from Azure OpenAI within {limit:.0f} seconds")


def _remaining(deadline: float | None, cap: float) -> float:
    return cap if deadline is None else min(cap, deadline - time.monotonic())


def _past_deadline(deadline: float | None, wait: float) -> bool:
    """Whether a retry after ``wait`` seconds could not finish (a second at least) in time."""
    return deadline is not None and time.monotonic() + wait + 1.0 >= deadline


def _failure(state: RetryCallState) -> PodcastError:
    """The error of the attempt that failed (only retried errors get here)."""
    error = state.outcome.exception() if state.outcome is not None else None
    assert isinstance(error, PodcastError)
    return error


def _handshake_error(exc: InvalidStatus, *, secret: str | None = None) -> PodcastError:
    """The typed error of a rejected handshake, from its status and its JSON error body."""
    status = exc.response.status_code
    headers = exc.response.headers
    retry_after = _retry_after(headers)
    code, message = _error_body(exc.response.body, secret)
    if status in (401, 403):
        return AuthenticationError(
            f"Azure OpenAI rejected the credentials (HTTP {status}); check "
            "AZURE_OPENAI_AUDIO_API_KEY or the identity's 'Cognitive Services OpenAI User' role"
        )
    if status == 404:
        return DeploymentNotFoundError(
            "Azure OpenAI has no such Realtime deployment (HTTP 404); check "
            "AZURE_OPENAI_AUDIO_DEPLOYMENT and AZURE_OPENAI_AUDIO_ENDPOINT"
        )
    if status == 429:
        if (code or "").lower() == "insufficient_quota":
            return QuotaExceededError(message or None)
        return RateLimitedError("Azure OpenAI is rate limiting requests (HTTP 429)", retry_after=retry_after)
    if status == 408 or status >= 500:
        return ServiceUnavailableError(
            f"Azure OpenAI is unavailable (HTTP {status})", retry_after=retry_after
        )
    if status == 400 and (code or message):
        # e.g. OperationNotSupported: the deployment exists but is not a Realtime model.
        detail = f"{code or 'error'}: {message}" if message else str(code)
        return UpstreamConfigurationError(
            DEPLOYMENT_SETTING,
            f"is not usable over the Realtime API: Azure OpenAI answered the handshake with "
            f"HTTP 400 ({detail}); set it to a Realtime model deployment (gpt-realtime-mini, "
            f"gpt-realtime) on the resource of {ENDPOINT_SETTING}",
            upstream_code=code,
            upstream_message=message,
        )
    return NarrationError(f"Azure OpenAI refused the connection (HTTP {status})")


def _error_body(body: bytes | None, secret: str | None) -> tuple[str | None, str]:
    """``(code, message)`` of an Azure-style ``{"error": {"code", "message"}}`` body
    (``(None, "")`` for anything else), the message shortened and any ``secret`` blanked."""
    try:
        document = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError):
        return None, ""
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return None, ""
    code = error.get("code")
    message = error.get("message")
    code_text = str(code)[:64] if isinstance(code, str | int) and str(code) else None
    message_text = " ".join(str(message).split())[:MAX_UPSTREAM_MESSAGE_CHARACTERS] if message else ""
    if secret:
        message_text = message_text.replace(secret, "***")
    return code_text, message_text


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
