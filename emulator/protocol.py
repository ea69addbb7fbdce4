"""GA Realtime protocol pieces: ids, server event builders, client event validation, tokens.

Builders return plain ``dict`` events that validate against
``openai.types.realtime.RealtimeServerEvent``; each one gets a fresh ``event_id``.
Client events are validated with the SDK's own pydantic models, and problems come back as
:class:`ClientEventProblem` values shaped like the service's ``error`` events.
"""

from __future__ import annotations

import math
import random
import string
from dataclasses import dataclass
from typing import Any, Final, get_args

import pydantic
from openai import BaseModel as SdkModel
from openai.types.realtime import RealtimeClientEvent, RealtimeSessionCreateRequest
from openai.types.realtime.response_item_reference import ResponseItemReference

from podcast.engine.audio import SAMPLE_RATE

AUDIO_TOKENS_PER_SECOND: Final = 20
"""Audio tokens per second of audio, for output and (re-billed) input alike."""
MODEL_MAX_OUTPUT_TOKENS: Final = 4096
"""The per-response output cap of ``gpt-realtime-mini``; also what ``"inf"`` means."""
SESSION_LIFETIME_SECONDS: Final = 60 * 60
DEFAULT_SESSION_VOICE: Final = "alloy"
DEFAULT_INSTRUCTIONS: Final = (
    "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI. Act like a "
    "human, but remember that you aren't a human and that you can't do human things in the "
    "real world. Your voice and personality should be warm and engaging, with a lively and "
    "playful tone. Talk quickly. You should always call a function if you can."
)
PCM_FORMAT: Final[dict[str, Any]] = {"type": "audio/pcm", "rate": SAMPLE_RATE}

_ID_ALPHABET: Final = string.ascii_letters + string.digits
_IDS: Final = random.Random()
"""Ids need to be unique, not secret: ``secrets`` made every event's id cost a tenth of the
emulator's CPU (22 system calls' worth of random bits)."""


def new_id(prefix: str) -> str:
    """A service-style id such as ``resp_Cx3...`` (prefix, underscore, 22 random characters)."""
    return prefix + "_" + "".join(_IDS.choices(_ID_ALPHABET, k=22))


def server_event(event_type: str, **fields: Any) -> dict[str, Any]:
    """A server event of ``event_type`` with a fresh ``event_id`` and ``fields``."""
    return {"type": event_type, "event_id": new_id("event"), **fields}


def error_event(
    message: str,
    *,
    error_type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    client_event_id: str | None = None,
) -> dict[str, Any]:
    """An ``error`` event; ``client_event_id`` echoes the client event that caused it."""
    return server_event(
        "error",
        error={
            "type": error_type,
            "code": code,
            "message": message,
            "param": param,
            "event_id": client_event_id,
        },
    )


def text_tokens(text: str) -> int:
    """Estimated text tokens: one per four characters, rounded up."""
    return math.ceil(len(text) / 4)


def audio_tokens(seconds: float) -> int:
    """Audio tokens for ``seconds`` of audio (20 a second, rounded up)."""
    # Round first so float noise (e.g. 0.1 * 20 = 2.0000000000000004) cannot add a token.
    return math.ceil(round(seconds * AUDIO_TOKENS_PER_SECOND, 6))


def default_session(session_id: str, model: str, now: float) -> dict[str, Any]:
    """The session a new connection starts with, as ``session.created`` reports it."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(now) + SESSION_LIFETIME_SECONDS,
        "audio": {
            "input": {
                "format": dict(PCM_FORMAT),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 200,
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {"format": dict(PCM_FORMAT), "voice": DEFAULT_SESSION_VOICE, "speed": 1.0},
        },
        "include": None,
    }


def merge_session(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``current`` with the fields present in ``update`` replaced (objects merged deeply).

    ``null`` in the update clears a field, as the service documents. Neither argument is
    modified.
    """
    merged = dict(current)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "turn_detection":
            merged[key] = merge_session(merged[key], value)
        else:
            merged[key] = value
    return merged


def rate_limits_event(output_tokens_reserved: int) -> dict[str, Any]:
    """``rate_limits.updated`` as sent right after ``response.created``."""
    return server_event(
        "rate_limits.updated",
        rate_limits=[
            {"name": "requests", "limit": 10_000, "remaining": 9_999, "reset_seconds": 0.006},
            {
                "name": "tokens",
                "limit": 2_000_000,
                "remaining": 2_000_000 - output_tokens_reserved,
                "reset_seconds": round(output_tokens_reserved * 60 / 2_000_000, 3),
            },
        ],
    )


def usage(*, input_text: int, input_audio: int, output_text: int, output_audio: int) -> dict[str, Any]:
    """A response's ``usage`` object (no cached tokens: the emulator has no prompt cache)."""
    input_total = input_text + input_audio
    output_total = output_text + output_audio
    return {
        "total_tokens": input_total + output_total,
        "input_tokens": input_total,
        "output_tokens": output_total,
        "input_token_details": {
            "text_tokens": input_text,
            "audio_tokens": input_audio,
            "image_tokens": 0,
            "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": output_text, "audio_tokens": output_audio},
    }


@dataclass(frozen=True, slots=True)
class ClientEventProblem:
    """Why a client event is rejected: the ``error`` event's code, message and param."""

    code: str
    message: str
    param: str | None = None
    error_type: str = "invalid_request_error"


def _client_event_classes() -> dict[str, type[SdkModel]]:
    classes: dict[str, type[SdkModel]] = {}
    for member in get_args(get_args(RealtimeClientEvent)[0]):
        for literal in get_args(member.model_fields["type"].annotation):
            classes[literal] = member
    return classes


CLIENT_EVENT_CLASSES: Final[dict[str, type[SdkModel]]] = _client_event_classes()
"""Every GA client event type, and the SDK model that describes it."""

_TYPE_ERRORS: Final = frozenset(
    {
        "string_type",
        "int_type",
        "int_parsing",
        "float_type",
        "float_parsing",
        "bool_type",
        "bool_parsing",
        "list_type",
        "dict_type",
        "model_type",
        "model_attributes_type",
    }
)


def client_event_problem(event: dict[str, Any]) -> ClientEventProblem | None:
    """Validate a decoded client event against the SDK's models; ``None`` when it is valid.

    Problems, first found wins: an unknown ``type`` (``invalid_value``, param ``type``), a
    missing field (``missing_required_parameter``), a wrong type (``invalid_type``), a bad
    value (``invalid_value``) or a field the API does not know (``unknown_parameter``).
    ``response.create`` may carry ``item_reference`` inputs, which are checked on their own.
    """
    event_type = event.get("type")
    if not isinstance(event_type, str) or event_type not in CLIENT_EVENT_CLASSES:
        shown = str(event_type)[:64]
        valid = ", ".join(f"'{name}'" for name in sorted(CLIENT_EVENT_CLASSES))
        return ClientEventProblem(
            "invalid_value", f"Invalid value: '{shown}'. Supported values are: {valid}.", "type"
        )
    if event_type == "session.update":
        problem = _session_update_problem(event)
        if problem is not None:
            return problem
    if event_type == "response.create":
        event, problem = _without_item_references(event)
        if problem is not None:
            return problem
    try:
        model = CLIENT_EVENT_CLASSES[event_type].model_validate(event)
    except pydantic.ValidationError as exc:
        return _problem_from_validation_error(exc, event)
    unknown = _first_unknown_parameter(model, "")
    if unknown is not None:
        return ClientEventProblem("unknown_parameter", f"Unknown parameter: '{unknown}'.", unknown)
    return None


def _without_item_references(event: dict[str, Any]) -> tuple[dict[str, Any], ClientEventProblem | None]:
    response = event.get("response")
    if not isinstance(response, dict) or not isinstance(response.get("input"), list):
        return event, None
    kept: list[Any] = []
    for index, item in enumerate(response["input"]):
        if not (isinstance(item, dict) and item.get("type") == "item_reference"):
            kept.append(item)
            continue
        try:
            reference = ResponseItemReference.model_validate(item)
        except pydantic.ValidationError as exc:
            return event, _problem_from_validation_error(exc, item, prefix=f"response.input[{index}]")
        for key in reference.model_extra or {}:
            param = f"response.input[{index}].{key}"
            return event, ClientEventProblem("unknown_parameter", f"Unknown parameter: '{param}'.", param)
    return {**event, "response": {**response, "input": kept}}, None


def _session_update_problem(event: dict[str, Any]) -> ClientEventProblem | None:
    session = event.get("session")
    if session is None:
        return ClientEventProblem(
            "missing_required_parameter", "Missing required parameter: 'session'.", "session"
        )
    if isinstance(session, dict):
        if "type" not in session:
            return ClientEventProblem(
                "missing_required_parameter", "Missing required parameter: 'session.type'.", "session.type"
            )
        if session["type"] != "realtime":
            return ClientEventProblem(
                "invalid_value",
                f"Invalid value: '{str(session['type'])[:32]}'. The emulator supports only "
                "'realtime' sessions on this endpoint.",
                "session.type",
            )
        # Validate against the realtime member alone, so errors name real fields instead of
        # mixing in the transcription-session alternative of the union.
        try:
            RealtimeSessionCreateRequest.model_validate(session)
        except pydantic.ValidationError as exc:
            return _problem_from_validation_error(exc, session, prefix="session")
    return None


def _problem_from_validation_error(
    exc: pydantic.ValidationError, data: Any, prefix: str = ""
) -> ClientEventProblem:
    errors = exc.errors(include_url=False)
    # Union members each report their own errors; the deepest one is the most specific.
    best = max(errors, key=lambda error: len(_param_path(error["loc"], data)))
    path = _param_path(best["loc"], data)
    param = ".".join(part for part in (prefix, path) if part)
    if best["type"] == "missing":
        return ClientEventProblem(
            "missing_required_parameter", f"Missing required parameter: '{param}'.", param
        )
    if best["type"] in _TYPE_ERRORS:
        return ClientEventProblem("invalid_type", f"Invalid type for '{param}': {best['msg']}.", param)
    return ClientEventProblem("invalid_value", f"Invalid value for '{param}': {best['msg']}.", param)


def _param_path(location: tuple[int | str, ...], data: Any) -> str:
    """Turn a pydantic error location into an API parameter path like ``item.content[0].text``.

    Location parts that are not in ``data`` (union member tags) are skipped, except a
    final missing field name.
    """
    path = ""
    current = data
    for position, part in enumerate(location):
        if isinstance(part, int) and isinstance(current, list) and 0 <= part < len(current):
            path += f"[{part}]"
            current = current[part]
        elif isinstance(part, str) and isinstance(current, dict) and part in current:
            path = f"{path}.{part}" if path else part
            current = current[part]
        elif position == len(location) - 1 and isinstance(part, str) and isinstance(current, dict):
            path = f"{path}.{part}" if path else part
    return path


def _first_unknown_parameter(value: Any, path: str) -> str | None:
    if isinstance(value, SdkModel):
        for key in value.model_extra or {}:
            return f"{path}.{key}" if path else key
        for name in type(value).model_fields:
            found = _first_unknown_parameter(getattr(value, name), f"{path}.{name}" if path else name)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, element in enumerate(value):
            found = _first_unknown_parameter(element, f"{path}[{index}]")
            if found is not None:
                return found
    return None
