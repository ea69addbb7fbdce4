"""Server messages of a Realtime connection: audio deltas on a fast path, every other event typed.

Nearly all the bytes of a narration arrive as ``response.output_audio.delta`` events: a
few hundred a minute, each carrying tens of kilobytes of base64 PCM. Building the SDK's
typed event for each (``connection.recv()``: ``json.loads`` then ``construct_type``
over the whole server-event union) and decoding with ``base64.b64decode`` costs more
than receiving them. So :func:`parse_message` takes the raw message
(``connection.recv_bytes()``), parses it with orjson and, for an audio delta only, returns
a :class:`RawAudioDelta` with the two fields the narration reads; everything else (and
anything orjson cannot parse) goes to the SDK's own ``parse_event``, so the typed
handling, and its errors, are exactly the SDK's.

:func:`decode_audio` is ``base64.b64decode(delta, validate=True)`` without its Python
wrapper: ``binascii.a2b_base64(..., strict_mode=True)`` is what it calls, and raises the
same errors for the same input.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

import orjson

from podcast.errors import NarrationError

AUDIO_DELTA_TYPE: Final = "response.output_audio.delta"

Event = TypeVar("Event")


@dataclass(frozen=True, slots=True)
class RawAudioDelta:
    """A ``response.output_audio.delta`` as the server sent it, not yet decoded.

    ``response_id`` and ``delta`` are the JSON values as they are (``None`` when absent),
    the same values the SDK's unvalidated event would carry.
    """

    response_id: object
    delta: object


def parse_message(data: bytes | str, parse_event: Callable[[bytes | str], Event]) -> RawAudioDelta | Event:
    """The server message ``data``: a :class:`RawAudioDelta` for an audio delta, otherwise
    ``parse_event(data)`` (the SDK's ``connection.parse_event``), which also decides, and
    raises on, anything that is not valid JSON."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return parse_event(data)
    if type(value) is dict and value.get("type") == AUDIO_DELTA_TYPE:
        return RawAudioDelta(value.get("response_id"), value.get("delta"))
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
