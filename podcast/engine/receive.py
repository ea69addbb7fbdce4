"""Server messages of a Realtime connection: audio deltas on a fast path, every other event typed.

Nearly all the bytes of a narration arrive as ``response.output_audio.delta`` events: a
few hundred a minute, each carrying tens of kilobytes of base64 PCM. Building the SDK's
typed event for each (``connection.recv()``: ``json.loads``, then pydantic validation
against the whole server-event union, 46 classes tried one after the other) and decoding
with ``base64.b64decode`` costs more than receiving them. So :func:`parse_message` takes
the raw message (``connection.recv_bytes()``) and parses it with orjson:

- an audio delta becomes a :class:`RawAudioDelta` with the two fields the narration reads;
- any other event whose ``type`` names exactly one class of the SDK's union is validated
  by that class alone (``model_validate``): the union can only ever accept that class
  (every other one requires another ``type`` literal), so the result is the SDK's;
- everything else, an event that fails validation, and anything orjson cannot parse go
  to the SDK's own ``parse_event``, so the fallback handling and its errors are exactly
  the SDK's.

:func:`decode_audio` is ``base64.b64decode(delta, validate=True)`` without its Python
wrapper: ``binascii.a2b_base64(..., strict_mode=True)`` is what it calls, and raises the
same errors for the same input.
"""

from __future__ import annotations

import binascii
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, cast, get_args

import orjson
from openai.types.realtime import RealtimeServerEvent
from pydantic import BaseModel, ValidationError

from podcast.errors import NarrationError

AUDIO_DELTA_TYPE: Final = "response.output_audio.delta"


def _event_classes() -> Mapping[str, type[BaseModel]]:
    """The SDK's server-event classes by their ``type``, for the types exactly one class has."""
    union = get_args(RealtimeServerEvent)[0]  # Annotated[Union[...], discriminator]
    owners: dict[str, type[BaseModel]] = {}
    counts: Counter[str] = Counter()
    for cls in get_args(union):
        field = cls.model_fields.get("type")
        for name in get_args(field.annotation) if field is not None else ():
            if isinstance(name, str):
                owners[name] = cls
                counts[name] += 1
    return {name: cls for name, cls in owners.items() if counts[name] == 1}


_EVENT_CLASSES: Final = _event_classes()


@dataclass(frozen=True, slots=True)
class RawAudioDelta:
    """A ``response.output_audio.delta`` as the server sent it, not yet decoded.

    ``response_id`` and ``delta`` are the JSON values as they are (``None`` when absent),
    the same values the SDK's unvalidated event would carry.
    """

    response_id: object
    delta: object


def parse_message(
    data: bytes | str, parse_event: Callable[[bytes | str], RealtimeServerEvent]
) -> RawAudioDelta | RealtimeServerEvent:
    """The server message ``data``: a :class:`RawAudioDelta` for an audio delta, the SDK's
    validated event for a valid event of a known type, otherwise ``parse_event(data)``
    (the SDK's ``connection.parse_event``), which also decides, and raises on, anything
    that is not valid JSON."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return parse_event(data)
    if type(value) is not dict:
        return parse_event(data)
    kind = value.get("type")
    if kind == AUDIO_DELTA_TYPE:
        return RawAudioDelta(value.get("response_id"), value.get("delta"))
    cls = _EVENT_CLASSES.get(kind) if type(kind) is str else None
    if cls is not None:
        try:
            return cast(RealtimeServerEvent, cls.model_validate(value))
        except ValidationError:
            pass  # the SDK then builds the event without validation
    return parse_event(data)


def decode_audio(delta: object) -> bytes:
    """The PCM of an audio delta's base64 ``delta``; ``b""`` when it is empty or not a string.

    Raises :class:`~podcast.errors.NarrationError` for anything that is not strict base64
    (a character outside the alphabet, misplaced padding, a non-ASCII character).
    """
    if not isinstance(delta, str) or not delta:
        return b""
    try:
        return binascii.a2b_base64(delta, strict_mode=True)
    except (binascii.Error, ValueError):
        raise NarrationError("Azure OpenAI sent audio that is not valid base64") from None
