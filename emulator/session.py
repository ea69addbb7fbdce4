"""One emulated Realtime session: the protocol spoken over one accepted WebSocket.

The session keeps the conversation, applies the service's rules to client events (answering
broken ones with ``error`` events that echo the client ``event_id``) and runs each response
as its own task, so client events keep being read while audio streams.

A response speaks the user text it answers verbatim: the trailing user message(s) of its
context (the conversation, or the out-of-band ``input``), or else the last user message
with text, leaving out ``<<<``/``>>>`` marker lines as instructed narrators do. Audio and
transcript deltas interleave; the transcript is exactly what was spoken. A text-only
response to a script-writing brief is answered with the JSON :mod:`emulator.writer` writes,
in text deltas of a few words each.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import json
import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson
import pybase64
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from emulator import protocol
from emulator.faults import Fault, FaultBook, FaultKind, paraphrase, throttling_error
from emulator.protocol import audio_tokens, error_event, new_id, server_event, text_tokens
from emulator.speech import SpeechEngine, vary_level
from emulator.writer import INVALID_SCRIPT_REPLY, written_reply
from podcast.engine.audio import BYTES_PER_SECOND, SAMPLE_RATE, SAMPLE_WIDTH
from podcast.voices import voice_error

log = logging.getLogger("emulator")

DELTA_SECONDS_CYCLE: Final[tuple[float, ...]] = (0.2, 0.3, 0.5, 0.1, 0.4)
"""Durations of successive audio deltas (all within the 100-500 ms the service sends)."""
_INSTANT_YIELD_EVERY: Final = 16
_TEXT_DELTA_WORDS: Final = 8
"""Words per ``response.output_text.delta`` (the service streams text in small pieces)."""
_MID_STREAM_FAULTS: Final = frozenset(
    {
        FaultKind.ERROR_EVENT,
        FaultKind.RATE_LIMIT_ERROR_EVENT,
        FaultKind.CLOSE_MID_STREAM,
        FaultKind.CONTENT_FILTER,
    }
)
_FAILING_FAULTS: Final = frozenset({FaultKind.FAILED, FaultKind.RATE_LIMITED, FaultKind.INSUFFICIENT_QUOTA})
_WORD_TOKEN: Final = re.compile(r"\s*\S+")
_MARKER_LINE: Final = re.compile(r"\s*(?:<{3,}|>{3,})\s*")
_SERVER_ERROR_MESSAGE: Final = (
    "The server had an error while processing your request. Sorry about that! You can retry your "
    "request, or contact us through an Azure support request at: https://go.microsoft.com/fwlink/"
    "?linkid=2213926 if the error persists."
)

ResponseStatus = Literal[
    "in_progress", "completed", "incomplete", "failed", "cancelled", "error", "closed", "hung"
]


@dataclass
class ResponseRecord:
    """What happened to one response. ``status`` adds three emulator-only values to the
    API's: ``error`` (ended by an ``error`` event), ``closed`` (the connection dropped
    mid-stream) and ``hung`` (nothing was ever sent)."""

    id: str
    conversation: Literal["auto", "none"]
    voice: str
    output_modalities: list[str]
    status: ResponseStatus = "in_progress"
    status_reason: str | None = None
    fault: FaultKind | None = None
    audio_seconds: float = 0.0
    audio_bytes: int = 0
    audio_deltas: int = 0
    transcript: str = ""
    usage: dict[str, Any] | None = None
    started_at: float = field(default_factory=time.monotonic)
    synthesized_at: float | None = None
    """When its speech was rendered (``None`` for no audio): the wait before streaming."""
    first_audio_at: float | None = None
    finished_at: float | None = None


@dataclass
class SessionRecord:
    """One accepted WebSocket: how it authenticated, every event both ways, its responses.

    ``auth`` is the header that carried the accepted credential (``"api-key"`` or
    ``"bearer"``; ``"none"`` when the emulator accepts anything and none was sent);
    ``token_validated`` is true when a bearer token was accepted by the token validator.
    Audio payloads in recorded events are replaced by ``""`` plus an ``emulator_audio_bytes``
    count unless the emulator records audio.
    """

    id: str
    model: str
    auth: str
    token_validated: bool = False
    client_events: list[dict[str, Any]] = field(default_factory=list)
    server_events: list[dict[str, Any]] = field(default_factory=list)
    responses: list[ResponseRecord] = field(default_factory=list)
    opened_at: float = field(default_factory=time.time)
    closed_at: float | None = None
    close_code: int | None = None


@dataclass(frozen=True)
class SessionSettings:
    """What every session of one emulator shares."""

    engine: SpeechEngine
    faults: FaultBook
    speed: float | None = None
    first_audio_delay: float = 0.0
    record_audio: bool = False
    level_variation_db: float = 0.0
    """Spread of the speech level between voices and sessions (:func:`emulator.speech.vary_level`)."""


@dataclass
class _Item:
    """A conversation item as the client sees it, with what it costs as input."""

    body: dict[str, Any]
    audio_seconds: float = 0.0

    @property
    def id(self) -> str:
        return str(self.body["id"])


@dataclass
class _Response:
    record: ResponseRecord
    context: list[_Item]
    instructions: str
    spoken_input: str
    max_output_tokens: int | str
    metadata: dict[str, Any] | None
    fault: Fault | None
    task: asyncio.Task[None] | None = None
    cancel_requested: bool = False

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def in_conversation(self) -> bool:
        return self.record.conversation == "auto"


class ClientEventError(Exception):
    """A client event breaks a rule; becomes an ``error`` event."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


class RealtimeSession:
    """Serves one connection until it closes. Call :meth:`run` once."""

    def __init__(
        self, connection: ServerConnection, record: SessionRecord, settings: SessionSettings
    ) -> None:
        self._connection = connection
        self._record = record
        self._settings = settings
        self._config = protocol.default_session(record.id, record.model, time.time())
        self._conversation_id = new_id("conv")
        self._items: list[_Item] = []
        self._audio_buffer = bytearray()
        self._voice_locked: str | None = None
        self._responses: dict[str, _Response] = {}
        self._closed = asyncio.Event()

    async def run(self) -> None:
        """Send ``session.created``, then answer client events until the socket closes."""
        try:
            await self._send(server_event("session.created", session=self._config))
            async for message in self._connection:
                await self._on_message(message)
        except ConnectionClosed:
            pass
        finally:
            self._closed.set()
            tasks = [response.task for response in self._responses.values() if response.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._record.closed_at = time.time()
            self._record.close_code = self._connection.close_code

    async def _send(self, event: dict[str, Any]) -> None:
        # orjson: the standard library's encoder took a tenth of the emulator's CPU, scanning
        # each delta's ~20 kB of base64 for characters to escape. Compact, UTF-8, a text frame.
        await self._connection.send(orjson.dumps(event), text=True)
        self._record.server_events.append(self._for_record(event, "delta"))

    def _for_record(self, event: dict[str, Any], audio_field: str) -> dict[str, Any]:
        audio = event.get(audio_field)
        if self._settings.record_audio or event["type"] not in _AUDIO_EVENTS or not isinstance(audio, str):
            return event
        return {**event, audio_field: "", "emulator_audio_bytes": len(audio) * 3 // 4}

    async def _on_message(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except (ValueError, UnicodeDecodeError):
            await self._send(
                error_event("The server could not parse the message as JSON.", code="invalid_json")
            )
            return
        if not isinstance(event, dict):
            await self._send(error_event("Each message must be a JSON object.", code="invalid_json"))
            return
        self._record.client_events.append(self._for_record(event, "audio"))
        client_event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        problem = protocol.client_event_problem(event)
        if problem is not None:
            await self._send(
                error_event(
                    problem.message,
                    error_type=problem.error_type,
                    code=problem.code,
                    param=problem.param,
                    client_event_id=client_event_id,
                )
            )
            return
        handler = getattr(self, "_on_" + event["type"].replace(".", "_"))
        try:
            await handler(event)
        except ClientEventError as exc:
            await self._send(
                error_event(exc.message, code=exc.code, param=exc.param, client_event_id=client_event_id)
            )

    # -- session -------------------------------------------------------------------------

    async def _on_session_update(self, event: dict[str, Any]) -> None:
        update: dict[str, Any] = event["session"]
        output = (update.get("audio") or {}).get("output") or {}
        if output.get("voice") is not None:
            self._check_voice(output["voice"], "session.audio.output.voice")
        _check_output_format(output.get("format"), "session.audio.output.format")
        _check_max_output_tokens(update.get("max_output_tokens"), "session.max_output_tokens")
        _check_modalities(update.get("output_modalities"), "session.output_modalities")
        speed = output.get("speed")
        if speed is not None and not 0.25 <= speed <= 1.5:
            raise ClientEventError(
                "invalid_value",
                "Invalid 'session.audio.output.speed': expected 0.25 to 1.5.",
                "session.audio.output.speed",
            )
        model = update.get("model")
        if model is not None and model != self._record.model:
            raise ClientEventError("invalid_value", "The session's model cannot be changed.", "session.model")
        self._config = protocol.merge_session(self._config, update)
        await self._send(server_event("session.updated", session=self._config))

    def _check_voice(self, voice: str, param: str) -> None:
        problem = voice_error(voice)
        if problem is not None:
            raise ClientEventError("invalid_value", f"Invalid value for '{param}': {problem}.", param)
        if self._voice_locked is not None and voice != self._voice_locked:
            raise ClientEventError(
                "cannot_update_voice",
                "Cannot update a conversation's voice if assistant audio is present.",
                param,
            )

    # -- conversation --------------------------------------------------------------------

    async def _on_conversation_item_create(self, event: dict[str, Any]) -> None:
        body = _item_body(event["item"])
        if body.get("type") == "message" and body.get("role") == "assistant":
            body["status"] = "completed"
        position = self._insert_position(event.get("previous_item_id"))
        await self._add_item(_Item(body), position)

    def _insert_position(self, previous_item_id: str | None) -> int:
        if previous_item_id is None:
            return len(self._items)
        if previous_item_id == "root":
            return 0
        for index, item in enumerate(self._items):
            if item.id == previous_item_id:
                return index + 1
        raise ClientEventError(
            "invalid_value",
            f"Invalid value for 'previous_item_id': no item with id '{previous_item_id[:64]}'.",
            "previous_item_id",
        )

    async def _add_item(self, item: _Item, position: int) -> None:
        if any(existing.id == item.id for existing in self._items):
            raise ClientEventError(
                "invalid_value", f"Item with id '{item.id[:64]}' already exists.", "item.id"
            )
        previous = self._items[position - 1].id if position > 0 else None
        self._items.insert(position, item)
        await self._send(server_event("conversation.item.added", previous_item_id=previous, item=item.body))
        await self._send(server_event("conversation.item.done", previous_item_id=previous, item=item.body))

    def _find_item(self, item_id: str, param: str = "item_id") -> _Item:
        for item in self._items:
            if item.id == item_id:
                return item
        raise ClientEventError(
            "invalid_value", f"Conversation item with id '{item_id[:64]}' not found.", param
        )

    async def _on_conversation_item_delete(self, event: dict[str, Any]) -> None:
        item = self._find_item(event["item_id"])
        self._items.remove(item)
        await self._send(server_event("conversation.item.deleted", item_id=item.id))

    async def _on_conversation_item_retrieve(self, event: dict[str, Any]) -> None:
        item = self._find_item(event["item_id"])
        await self._send(server_event("conversation.item.retrieved", item=item.body))

    async def _on_conversation_item_truncate(self, event: dict[str, Any]) -> None:
        item = self._find_item(event["item_id"])
        audio_end_ms: int = event["audio_end_ms"]
        if item.body.get("role") != "assistant" or item.audio_seconds <= 0:
            raise ClientEventError(
                "invalid_value", "Only assistant messages with audio can be truncated.", "item_id"
            )
        if audio_end_ms < 0 or audio_end_ms / 1000 > item.audio_seconds:
            raise ClientEventError(
                "invalid_value", "'audio_end_ms' is beyond the end of the item's audio.", "audio_end_ms"
            )
        item.audio_seconds = audio_end_ms / 1000
        # The service drops the transcript of truncated audio.
        item.body = {**item.body, "content": [{**part, "transcript": ""} for part in item.body["content"]]}
        await self._send(
            server_event(
                "conversation.item.truncated",
                item_id=item.id,
                content_index=event["content_index"],
                audio_end_ms=audio_end_ms,
            )
        )

    # -- input audio (accepted for completeness; narration never sends audio) -------------

    async def _on_input_audio_buffer_append(self, event: dict[str, Any]) -> None:
        try:
            self._audio_buffer += base64.b64decode(event["audio"], validate=True)
        except (binascii.Error, ValueError):
            raise ClientEventError("invalid_value", "'audio' is not valid base64.", "audio") from None

    async def _on_input_audio_buffer_commit(self, event: dict[str, Any]) -> None:
        if not self._audio_buffer:
            raise ClientEventError(
                "input_audio_buffer_commit_empty", "Error committing input audio buffer: buffer is empty."
            )
        body = {
            "id": new_id("item"),
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        seconds = len(self._audio_buffer) / BYTES_PER_SECOND
        self._audio_buffer.clear()
        previous = self._items[-1].id if self._items else None
        await self._send(
            server_event("input_audio_buffer.committed", previous_item_id=previous, item_id=body["id"])
        )
        await self._add_item(_Item(body, audio_seconds=seconds), len(self._items))

    async def _on_input_audio_buffer_clear(self, event: dict[str, Any]) -> None:
        self._audio_buffer.clear()
        await self._send(server_event("input_audio_buffer.cleared"))

    async def _on_output_audio_buffer_clear(self, event: dict[str, Any]) -> None:
        raise ClientEventError(
            "invalid_value",
            "output_audio_buffer.clear is only supported for WebRTC and SIP connections.",
            "type",
        )

    # -- responses -----------------------------------------------------------------------

    async def _on_response_cancel(self, event: dict[str, Any]) -> None:
        response_id = event.get("response_id")
        candidates = [
            response
            for response in self._responses.values()
            if response.id == response_id or (response_id is None and response.in_conversation)
        ]
        if not candidates:
            raise ClientEventError(
                "response_cancel_not_active", "Cancellation failed: no active response found."
            )
        # A hung response ignores the cancel too: the point of the fault is that nothing comes back.
        candidates[0].cancel_requested = True

    async def _on_response_create(self, event: dict[str, Any]) -> None:
        params: dict[str, Any] = event.get("response") or {}
        conversation = params.get("conversation", "auto")
        if conversation not in ("auto", "none"):
            raise ClientEventError(
                "invalid_value",
                "Invalid value for 'response.conversation': expected 'auto' or 'none'.",
                "response.conversation",
            )
        if conversation == "auto":
            active = next((r for r in self._responses.values() if r.in_conversation), None)
            if active is not None:
                raise ClientEventError(
                    "conversation_already_has_active_response",
                    f"Conversation already has an active response in progress: {active.id}. Wait until "
                    "the response is finished before creating a new one.",
                )
        output = (params.get("audio") or {}).get("output") or {}
        session_voice = (self._config.get("audio") or {}).get("output", {}).get("voice")
        voice: str = output.get("voice") or session_voice or protocol.DEFAULT_SESSION_VOICE
        if output.get("voice") is not None:
            self._check_voice(voice, "response.audio.output.voice")
        _check_output_format(output.get("format"), "response.audio.output.format")
        _check_max_output_tokens(params.get("max_output_tokens"), "response.max_output_tokens")
        _check_modalities(params.get("output_modalities"), "response.output_modalities")
        if "input" in params:
            context = [self._resolve_input(entry, index) for index, entry in enumerate(params["input"])]
        else:
            context = list(self._items)
        spoken_input = _text_to_speak(context)
        record = ResponseRecord(
            id=new_id("resp"),
            conversation=conversation,
            voice=voice,
            output_modalities=list(params.get("output_modalities") or self._config["output_modalities"]),
        )
        fault = self._settings.faults.take_response_fault(spoken_input)
        record.fault = fault.kind if fault is not None else None
        response = _Response(
            record=record,
            context=context,
            instructions=params.get("instructions", self._config.get("instructions")) or "",
            spoken_input=spoken_input,
            max_output_tokens=params.get("max_output_tokens")
            or self._config.get("max_output_tokens")
            or "inf",
            metadata=params.get("metadata"),
            fault=fault,
        )
        self._record.responses.append(record)
        self._responses[record.id] = response
        response.task = asyncio.create_task(self._run_response(response), name=f"emulator-{record.id}")

    def _resolve_input(self, entry: dict[str, Any], index: int) -> _Item:
        if entry.get("type") == "item_reference":
            return self._find_item(entry["id"], f"response.input[{index}].id")
        return _Item(_item_body(entry))

    async def _run_response(self, response: _Response) -> None:
        record = response.record
        try:
            await _ResponseStream(self, response).run()
        except ConnectionClosed:
            if record.status == "in_progress":
                record.status = "closed"
        finally:
            record.finished_at = time.monotonic()
            if record.status != "hung":
                self._responses.pop(record.id, None)
            log.info(
                "response %s session=%s status=%s reason=%s fault=%s audio=%.2fs bytes=%d deltas=%d "
                "tokens_in=%s tokens_out=%s synth=%s first_audio=%s took=%.3fs",
                record.id,
                self._record.id,
                record.status,
                record.status_reason,
                record.fault.value if record.fault else None,
                record.audio_seconds,
                record.audio_bytes,
                record.audio_deltas,
                (record.usage or {}).get("input_tokens"),
                (record.usage or {}).get("output_tokens"),
                _since(record.started_at, record.synthesized_at),
                _since(record.started_at, record.first_audio_at),
                record.finished_at - record.started_at,
            )


class _Rendered:
    """Speech whose length is known before it is made (for the token cap) and whose bytes are
    made as the stream reaches them: ``pieces`` in order, ``length`` bytes in all."""

    def __init__(self, length: int, pieces: Iterator[bytes]) -> None:
        self._length = length
        self._pieces = pieces
        self._made = bytearray()

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, part: slice) -> bytes:
        stop = self._length if part.stop is None else min(part.stop, self._length)
        while len(self._made) < stop:
            self._made += next(self._pieces)
        return bytes(self._made[part])


def _since(start: float, moment: float | None) -> str:
    return "-" if moment is None else f"{moment - start:.3f}s"


_AUDIO_EVENTS: Final = frozenset({"response.output_audio.delta", "input_audio_buffer.append"})


class _ResponseStream:
    """Produces the events of one response, in the service's order."""

    def __init__(self, session: RealtimeSession, response: _Response) -> None:
        self.session = session
        self.response = response
        self.record = response.record
        self.item_id = new_id("item")
        self.previous_item_id: str | None = None
        self.conversation_item: _Item | None = None
        self.audio = "audio" in self.record.output_modalities

    async def send(self, event: dict[str, Any]) -> None:
        await self.session._send(event)

    def ids(self) -> dict[str, Any]:
        return {"response_id": self.record.id, "item_id": self.item_id, "output_index": 0, "content_index": 0}

    def response_body(
        self, status: str, output: list[dict[str, Any]], status_details: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return {
            "object": "realtime.response",
            "id": self.record.id,
            "status": status,
            "status_details": status_details,
            "output": output,
            "conversation_id": self.session._conversation_id if self.response.in_conversation else None,
            "output_modalities": self.record.output_modalities,
            "max_output_tokens": self.response.max_output_tokens,
            "audio": {"output": {"format": dict(protocol.PCM_FORMAT), "voice": self.record.voice}},
            "usage": self.record.usage,
            "metadata": self.response.metadata,
        }

    def item_body(self, status: str, transcript: str | None) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if transcript is not None:
            content.append(
                {"type": "output_audio", "transcript": transcript}
                if self.audio
                else {"type": "output_text", "text": transcript}
            )
        return {
            "id": self.item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": content,
        }

    def part(self, transcript: str) -> dict[str, Any]:
        return (
            {"type": "audio", "transcript": transcript}
            if self.audio
            else {"type": "text", "text": transcript}
        )

    def usage(self, output_text: int, output_audio: int) -> dict[str, Any]:
        input_text = text_tokens(self.response.instructions)
        input_audio = 0
        for item in self.response.context:
            input_text += text_tokens(_item_text(item.body, include_transcripts=False))
            input_audio += audio_tokens(item.audio_seconds)
        return protocol.usage(
            input_text=input_text, input_audio=input_audio, output_text=output_text, output_audio=output_audio
        )

    async def run(self) -> None:
        response, record, session = self.response, self.record, self.session
        fault_kind = response.fault.kind if response.fault else None
        if fault_kind is FaultKind.HANG:
            record.status = "hung"
            await session._closed.wait()
            return
        created_at = time.monotonic()
        cap = _token_cap(response.max_output_tokens)
        await self.send(server_event("response.created", response=self.response_body("in_progress", [])))
        await self.send(protocol.rate_limits_event(cap))
        if fault_kind in _FAILING_FAULTS:
            await self.fail(response.fault)
            return
        spoken = response.spoken_input
        if fault_kind is FaultKind.PARAPHRASE:
            spoken = paraphrase(spoken)
        elif fault_kind is FaultKind.SPEAK_MARKERS:
            spoken = f"Less than less than less than. {spoken} Greater than greater than greater than."
        elif fault_kind is FaultKind.NO_AUDIO:
            spoken = ""
        if not self.audio:
            reply = written_reply(spoken)
            if fault_kind is FaultKind.INVALID_SCRIPT:
                spoken = (response.fault.message if response.fault else None) or INVALID_SCRIPT_REPLY
            elif reply is not None:
                spoken = reply
        engine = session._settings.engine
        speaks = self.audio and bool(spoken.strip())
        planned = getattr(engine, "plan", None) if speaks else None
        synthesis = (
            asyncio.create_task(asyncio.to_thread(engine.synthesize, spoken, record.voice))
            if speaks and planned is None
            else None
        )
        pcm: bytes | _Rendered
        try:
            await self.open_item()
            if planned is not None:
                # Rendered as it streams (the synthetic voice): the first delta goes out at
                # once instead of after the whole segment's speech, as the model's would.
                pcm = _Rendered(*planned(spoken, record.voice))
            else:
                pcm = await synthesis if synthesis is not None else b""
        finally:
            if synthesis is not None and not synthesis.done():
                synthesis.cancel()
        if speaks:
            record.synthesized_at = time.monotonic()
        words = _word_tokens(spoken)
        plan = _plan_output(pcm if self.audio else None, words, cap, fault_kind)
        delay = created_at + session._settings.first_audio_delay - time.monotonic()
        if delay > 0 and plan.samples:
            await asyncio.sleep(delay)
        outcome = await self.stream(pcm, words, plan)
        if outcome is not None:
            await self.close_item(*outcome)

    async def open_item(self) -> None:
        await self.send(
            server_event(
                "response.output_item.added",
                response_id=self.record.id,
                output_index=0,
                item=self.item_body("in_progress", None),
            )
        )
        if self.response.in_conversation:
            items = self.session._items
            self.previous_item_id = items[-1].id if items else None
            self.conversation_item = _Item(self.item_body("in_progress", None))
            items.append(self.conversation_item)
            await self.send(
                server_event(
                    "conversation.item.added",
                    previous_item_id=self.previous_item_id,
                    item=self.item_body("in_progress", None),
                )
            )
        await self.send(server_event("response.content_part.added", **self.ids(), part=self.part("")))

    async def stream(
        self, pcm: bytes | _Rendered, words: Sequence[tuple[int, str]], plan: _OutputPlan
    ) -> tuple[ResponseStatus, dict[str, Any] | None, str] | None:
        """Send the deltas; return ``(status, status_details, transcript)``, or ``None`` when
        a fault ended the response without ``response.done``."""
        settings, record = self.session._settings, self.record
        fault = self.response.fault
        mid_stream_fault = fault if fault is not None and fault.kind in _MID_STREAM_FAULTS else None
        fault_at_sample = round(mid_stream_fault.at * plan.samples) if mid_stream_fault else 0
        status: ResponseStatus = plan.status
        details = plan.status_details
        sent_words = 0
        start = time.monotonic()
        for number, (begin, end) in enumerate(_chunks(plan.samples)):
            if self.response.cancel_requested:
                status, details = "cancelled", {"type": "cancelled", "reason": "client_cancelled"}
                break
            if (
                mid_stream_fault is not None
                and begin >= fault_at_sample
                and (begin > 0 or fault_at_sample == 0)
            ):
                break
            if settings.speed is not None:
                wait = start + end / SAMPLE_RATE / settings.speed - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            elif number % _INSTANT_YIELD_EVERY == _INSTANT_YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let other connections run during long instant responses
            spoken_words = plan.words_before(end)
            if spoken_words > sent_words:
                delta = "".join(token for _, token in words[sent_words:spoken_words])
                await self.send(server_event(_transcript_delta_type(self.audio), **self.ids(), delta=delta))
                sent_words = spoken_words
            chunk = pcm[begin * SAMPLE_WIDTH : end * SAMPLE_WIDTH]
            if settings.level_variation_db:
                # Per delta, as it goes out (the same samples as varying the whole at once): a
                # pass over the whole segment before its first delta held every session's loop.
                chunk = vary_level(chunk, record.voice, self.session._record.id, settings.level_variation_db)
            await self.send(
                server_event(
                    "response.output_audio.delta",
                    **self.ids(),
                    delta=pybase64.b64encode(chunk).decode("ascii"),
                )
            )
            if record.audio_deltas == 0:
                record.first_audio_at = time.monotonic()
            record.audio_deltas += 1
            record.audio_bytes += len(chunk)
            record.audio_seconds = record.audio_bytes / BYTES_PER_SECOND
            self.note_audio()
        else:
            if plan.samples == 0 and plan.words > sent_words and not self.response.cancel_requested:
                # No audio (text modality, or nothing audible): the text goes out on its own.
                for first in range(sent_words, plan.words, _TEXT_DELTA_WORDS):
                    last = min(plan.words, first + _TEXT_DELTA_WORDS)
                    delta = "".join(token for _, token in words[first:last])
                    await self.send(
                        server_event(_transcript_delta_type(self.audio), **self.ids(), delta=delta)
                    )
                    if settings.speed is None and (first // _TEXT_DELTA_WORDS) % _INSTANT_YIELD_EVERY == 0:
                        await asyncio.sleep(0)
                sent_words = plan.words
        transcript = "".join(token for _, token in words[:sent_words])
        record.transcript = transcript
        if mid_stream_fault is not None and status not in ("cancelled",):
            if mid_stream_fault.kind is FaultKind.ERROR_EVENT:
                record.status = "error"
                await self.send(
                    error_event(
                        mid_stream_fault.message
                        or f"{_SERVER_ERROR_MESSAGE} (include session ID in your message: "
                        f"{self.session._record.id})",
                        error_type=mid_stream_fault.error_type or "server_error",
                        code=mid_stream_fault.code,
                    )
                )
                return None
            if mid_stream_fault.kind is FaultKind.RATE_LIMIT_ERROR_EVENT:
                record.status = "error"
                error = throttling_error(mid_stream_fault)
                await self.send(error_event(error["message"], error_type=error["type"], code=error["code"]))
                return None
            if mid_stream_fault.kind is FaultKind.CLOSE_MID_STREAM:
                record.status = "closed"
                if mid_stream_fault.close_code == 1006:
                    self.session._connection.transport.abort()
                else:
                    await self.session._connection.close(mid_stream_fault.close_code, "server error")
                return None
            status, details = "incomplete", {"type": "incomplete", "reason": "content_filter"}
        return status, details, transcript

    def note_audio(self) -> None:
        if self.session._voice_locked is None:
            self.session._voice_locked = self.record.voice
        if self.conversation_item is not None:
            self.conversation_item.audio_seconds = self.record.audio_seconds

    async def close_item(
        self, status: ResponseStatus, details: dict[str, Any] | None, transcript: str
    ) -> None:
        record = self.record
        item_status = "completed" if status == "completed" else "incomplete"
        if self.audio:
            await self.send(server_event("response.output_audio.done", **self.ids()))
            await self.send(
                server_event("response.output_audio_transcript.done", **self.ids(), transcript=transcript)
            )
        else:
            await self.send(server_event("response.output_text.done", **self.ids(), text=transcript))
        await self.send(server_event("response.content_part.done", **self.ids(), part=self.part(transcript)))
        await self.send(
            server_event(
                "response.output_item.done",
                response_id=record.id,
                output_index=0,
                item=self.item_body(item_status, transcript),
            )
        )
        if self.conversation_item is not None:
            self.conversation_item.body = self.item_body(item_status, transcript)
            await self.send(
                server_event(
                    "conversation.item.done",
                    previous_item_id=self.previous_item_id,
                    item=self.item_body(item_status, transcript),
                )
            )
        output_text = text_tokens(transcript)
        record.usage = self.usage(output_text, audio_tokens(record.audio_seconds))
        record.status = status
        record.status_reason = (details or {}).get("reason")
        await self.send(
            server_event(
                "response.done",
                response=self.response_body(status, [self.item_body(item_status, transcript)], details),
            )
        )

    async def fail(self, fault: Fault | None) -> None:
        record = self.record
        record.usage = self.usage(0, 0)
        record.status = "failed"
        if fault is not None and fault.kind is not FaultKind.FAILED:
            error = throttling_error(fault)
        else:
            error = {
                "type": (fault.error_type if fault else None) or "server_error",
                "code": (fault.code if fault else None) or "server_error",
                "message": (fault.message if fault else None) or _SERVER_ERROR_MESSAGE,
            }
        await self.send(
            server_event(
                "response.done",
                response=self.response_body("failed", [], {"type": "failed", "error": error}),
            )
        )


@dataclass(frozen=True)
class _OutputPlan:
    """How much of the synthesized output a response sends, and how it ends."""

    samples: int
    words: int
    word_start_samples: tuple[int, ...]
    status: ResponseStatus
    status_details: dict[str, Any] | None

    def words_before(self, sample: int) -> int:
        """How many words start before ``sample`` (never more than the plan's words)."""
        return min(self.words, bisect.bisect_left(self.word_start_samples, sample))


def _plan_output(
    pcm: bytes | _Rendered | None, words: Sequence[tuple[int, str]], cap: int, fault: FaultKind | None
) -> _OutputPlan:
    """Apply the output token cap: audio (20 tokens/s) plus transcript text tokens.

    ``pcm`` is ``None`` for a text-only response. When the full output does not fit, the
    largest prefix that does is kept, with the transcript cut to the words started in it.
    """
    text_length = words[-1][0] + len(words[-1][1].lstrip()) if words else 0
    prefix_lengths = [0]
    for _, token in words:
        prefix_lengths.append(prefix_lengths[-1] + len(token))
    total_samples = len(pcm) // SAMPLE_WIDTH if pcm is not None else 0
    if pcm is None:
        # Text only: words are the unit of output.
        starts = tuple(range(len(words)))

        def cost(count: int) -> int:
            return _text_tokens_for_length(prefix_lengths[min(count, len(words))])

        limit_units = len(words)
    else:
        starts = tuple(int(offset / max(text_length, 1) * total_samples) for offset, _ in words)

        def cost(count: int) -> int:
            spoken = bisect.bisect_left(starts, count) if count else 0
            return audio_tokens(count / SAMPLE_RATE) + _text_tokens_for_length(prefix_lengths[spoken])

        limit_units = total_samples
    full_cost = cost(limit_units)
    if fault is FaultKind.MAX_OUTPUT_TOKENS:
        cap = min(cap, max(1, full_cost // 2))
    if full_cost <= cap:
        units = limit_units
        status: ResponseStatus = "completed"
        details: dict[str, Any] | None = None
    else:
        low, high = 0, limit_units  # the largest unit count whose cost fits the cap
        while low < high:
            middle = (low + high + 1) // 2
            if cost(middle) <= cap:
                low = middle
            else:
                high = middle - 1
        units = low
        status, details = "incomplete", {"type": "incomplete", "reason": "max_output_tokens"}
    if pcm is None:
        return _OutputPlan(0, units, starts, status, details)
    spoken_words = bisect.bisect_left(starts, units) if units else 0
    return _OutputPlan(units, spoken_words, starts, status, details)


def _text_tokens_for_length(length: int) -> int:
    """Text tokens of a text ``length`` characters long (as :func:`protocol.text_tokens`)."""
    return -(-length // 4)


def _token_cap(max_output_tokens: int | str) -> int:
    if isinstance(max_output_tokens, int):
        return min(max_output_tokens, protocol.MODEL_MAX_OUTPUT_TOKENS)
    return protocol.MODEL_MAX_OUTPUT_TOKENS


def _chunks(total_samples: int) -> list[tuple[int, int]]:
    """``(begin, end)`` sample ranges of the audio deltas covering ``total_samples``."""
    chunks: list[tuple[int, int]] = []
    begin = 0
    number = 0
    while begin < total_samples:
        length = round(DELTA_SECONDS_CYCLE[number % len(DELTA_SECONDS_CYCLE)] * SAMPLE_RATE)
        end = min(total_samples, begin + length)
        chunks.append((begin, end))
        begin = end
        number += 1
    return chunks


def _word_tokens(text: str) -> list[tuple[int, str]]:
    """Split ``text`` into ``(offset, token)`` pairs, each token one word with the space
    before it, so any prefix of tokens joins to a prefix of ``text`` without trailing space."""
    text = text.strip()
    tokens: list[tuple[int, str]] = []
    for match in _WORD_TOKEN.finditer(text):
        token = match.group()
        tokens.append((match.start() + len(token) - len(token.lstrip()), token))
    return tokens


def _transcript_delta_type(audio: bool) -> str:
    return "response.output_audio_transcript.delta" if audio else "response.output_text.delta"


def _item_body(item: dict[str, Any]) -> dict[str, Any]:
    """The item as the service echoes it: with an id, ``object`` and ``status``."""
    body = dict(item)
    body.setdefault("id", new_id("item"))
    if body.get("id") is None:
        body["id"] = new_id("item")
    body.setdefault("object", "realtime.item")
    if body.get("type") == "message":
        body.setdefault("status", "completed")
    return body


def _item_text(body: dict[str, Any], *, include_transcripts: bool) -> str:
    """The text of an item's content; audio transcripts only when asked (audio is billed as audio)."""
    parts: list[str] = []
    for part in body.get("content") or []:
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append(part.get("text") or "")
        elif include_transcripts and kind in ("input_audio", "output_audio", "audio"):
            parts.append(part.get("transcript") or "")
    if body.get("type") in ("function_call", "function_call_output"):
        parts.append(str(body.get("arguments") or body.get("output") or ""))
    return " ".join(part for part in parts if part)


def _text_to_speak(context: Sequence[_Item]) -> str:
    """The trailing user message(s) of ``context``, else the last user message with text."""
    trailing: list[str] = []
    for item in reversed(context):
        body = item.body
        if body.get("type") != "message" or body.get("role") == "system":
            continue
        if body.get("role") != "user":
            break
        text = _user_text(body)
        if text:
            trailing.append(text)
    if trailing:
        return "\n".join(reversed(trailing))
    for item in reversed(context):
        if item.body.get("type") == "message" and item.body.get("role") == "user":
            text = _user_text(item.body)
            if text:
                return text
    return ""


def _user_text(body: dict[str, Any]) -> str:
    """The text a narrator reads from a user message: its ``input_text`` parts, without
    marker lines (a line of only ``<<<`` or ``>>>``, or longer runs), which the production
    instructions fence the text with and tell the model never to read."""
    text = " ".join(
        part.get("text") or "" for part in body.get("content") or [] if part.get("type") == "input_text"
    )
    return "\n".join(line for line in text.splitlines() if not _MARKER_LINE.fullmatch(line)).strip()


def _check_output_format(output_format: dict[str, Any] | None, param: str) -> None:
    """Only ``audio/pcm`` at 24 kHz: the emulator does not encode G.711 (``pcmu``/``pcma``)."""
    if output_format is None:
        return
    if (
        output_format.get("type", "audio/pcm") != "audio/pcm"
        or output_format.get("rate", SAMPLE_RATE) != SAMPLE_RATE
    ):
        raise ClientEventError(
            "invalid_value",
            f"Invalid value for '{param}': the emulator only produces audio/pcm at {SAMPLE_RATE} Hz.",
            f"{param}.type",
        )


def _check_max_output_tokens(value: int | str | None, param: str) -> None:
    if value is None or value == "inf":
        return
    if isinstance(value, str) or not 1 <= value <= protocol.MODEL_MAX_OUTPUT_TOKENS:
        raise ClientEventError(
            "invalid_value",
            f"Invalid value for '{param}': expected an integer from 1 to {protocol.MODEL_MAX_OUTPUT_TOKENS} "
            "or 'inf'.",
            param,
        )


def _check_modalities(modalities: list[str] | None, param: str) -> None:
    if modalities is not None and len(set(modalities)) != 1:
        raise ClientEventError(
            "invalid_value",
            f"Invalid value for '{param}': choose exactly one of ['audio'] or ['text'].",
            param,
        )


__all__ = [
    "ClientEventError",
    "RealtimeSession",
    "ResponseRecord",
    "SessionRecord",
    "SessionSettings",
]
