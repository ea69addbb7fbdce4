"""Server messages of a Realtime connection: audio deltas on a fast path, every other event typed.

Nearly all the bytes of a narration arrive as ``response.output_audio.delta`` events: a
few hundred a minute, each carrying tens of kilobytes of base64 PCM. Building the SDK's
typed event for each (``connection.recv()``: ``json.loads``, then pydantic validation
against the whole server-event union, 46 classes tried one after the other) and decoding
with ``base64.b64decode`` costs more than receiving them. So :func:`parse_message` takes
the raw message (``connection.recv_bytes()``) and parses it with orjson:

- an audio delta becomes a :class:`DecodedAudioDelta` (its PCM and response id) without
  parsing its base64 as JSON at all, when the message is plain enough to be sure what a
  parser would make of it (:func:`_plain_audio_delta`), else a :class:`RawAudioDelta` with
  the two fields the narration reads;
- a transcript delta whose required fields are all there with exactly their declared JSON
  types becomes a :class:`RawTranscriptDelta`: the SDK's validation could only accept it,
  unchanged (any other transcript delta is validated by the SDK's class, below);
- any other event whose ``type`` names exactly one class of the SDK's union is validated
  by that class alone (``model_validate``): the union can only ever accept that class
  (every other one requires another ``type`` literal), so the result is the SDK's;
- everything else, an event that fails validation, and anything orjson cannot parse go
  to the SDK's own ``parse_event``, so the fallback handling and its errors are exactly
  the SDK's.

Audio is decoded with ``pybase64`` (SIMD: some thirty times faster than ``binascii``) and,
only when it refuses, by ``binascii.a2b_base64(..., strict_mode=True)``, whose verdict
counts: the result is exactly strict ``binascii``'s, errors included (:func:`decode_audio`).
"""

from __future__ import annotations

import binascii
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, cast, get_args

import orjson
import pybase64
from openai.types.realtime import RealtimeServerEvent
from pydantic import BaseModel, ValidationError

from podcast.errors import NarrationError

AUDIO_DELTA_TYPE: Final = "response.output_audio.delta"
TRANSCRIPT_DELTA_TYPE: Final = "response.output_audio_transcript.delta"
_TRANSCRIPT_FIELDS: Final = (
    ("event_id", str),
    ("response_id", str),
    ("item_id", str),
    ("output_index", int),
    ("content_index", int),
    ("delta", str),
)
"""The required fields of the SDK's ``ResponseAudioTranscriptDeltaEvent`` and their types."""


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


@dataclass(frozen=True, slots=True)
class DecodedAudioDelta:
    """A ``response.output_audio.delta`` whose ``delta`` was a string of valid base64: its PCM,
    and ``response_id`` as the JSON value it is (``None`` when absent)."""

    response_id: object
    pcm: bytes


@dataclass(frozen=True, slots=True)
class RawTranscriptDelta:
    """A ``response.output_audio_transcript.delta`` whose fields are all of their declared
    types: the values the SDK's validated event would carry."""

    response_id: str
    item_id: str
    content_index: int
    delta: str


_DELTA_KEY: Final = b'"delta"'
_JSON_SPACE: Final = b" \t\n\r"


def _plain_audio_delta(data: bytes) -> DecodedAudioDelta | None:
    """``data`` as :func:`parse_message` would give it, decoded, when it is an audio delta
    whose base64 can be taken from the bytes as they are; ``None`` when not sure.

    The value after the one ``"delta"`` in the message is cut out and the rest parsed
    (a few hundred bytes instead of tens of kilobytes). That is what parsing the whole
    gives when: no backslash is left (so no key is spelt with escapes), ``"delta"``
    occurs nowhere else (so the key found is the only delta key, and the rest, parsed,
    shows it is the top-level one), and the value decodes as base64 (so it is a JSON string
    with nothing to unescape)."""
    at = data.find(_DELTA_KEY)
    if at < 0:
        return None
    begin = at + len(_DELTA_KEY)
    length = len(data)
    while begin < length and data[begin] in _JSON_SPACE:
        begin += 1
    if begin >= length or data[begin] != 0x3A:  # ":"
        return None
    begin += 1
    while begin < length and data[begin] in _JSON_SPACE:
        begin += 1
    if begin >= length or data[begin] != 0x22:  # the opening quote
        return None
    begin += 1
    end = data.find(b'"', begin)
    if end < 0 or data.find(_DELTA_KEY, end) >= 0:
        return None
    head, tail = data[:begin], data[end:]
    if b"\\" in head or b"\\" in tail:
        return None
    try:
        rest = orjson.loads(head + tail)
    except orjson.JSONDecodeError:
        return None
    if type(rest) is not dict or rest.get("type") != AUDIO_DELTA_TYPE or rest.get("delta") != "":
        return None
    try:
        pcm = pybase64.b64decode(memoryview(data)[begin:end], validate=True)
    except (binascii.Error, ValueError):
        return None  # the whole message is parsed, and the error is decode_audio's
    return DecodedAudioDelta(rest.get("response_id"), pcm)


def parse_message(
    data: bytes | str, parse_event: Callable[[bytes | str], RealtimeServerEvent]
) -> DecodedAudioDelta | RawAudioDelta | RawTranscriptDelta | RealtimeServerEvent:
    """The server message ``data``: a :class:`DecodedAudioDelta` or :class:`RawAudioDelta`
    for an audio delta, a :class:`RawTranscriptDelta` for a well-typed transcript delta, the
    SDK's validated event for a valid event of a known type, otherwise ``parse_event(data)``
    (the SDK's ``connection.parse_event``), which also decides, and raises on, anything that
    is not valid JSON."""
    if type(data) is bytes:
        plain = _plain_audio_delta(data)
        if plain is not None:
            return plain
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return parse_event(data)
    if type(value) is not dict:
        return parse_event(data)
    kind = value.get("type")
    if kind == AUDIO_DELTA_TYPE:
        return RawAudioDelta(value.get("response_id"), value.get("delta"))
    if kind == TRANSCRIPT_DELTA_TYPE and all(type(value.get(k)) is t for k, t in _TRANSCRIPT_FIELDS):
        return RawTranscriptDelta(
            value["response_id"], value["item_id"], value["content_index"], value["delta"]
        )
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
        return pybase64.b64decode(delta, validate=True)
    except (binascii.Error, ValueError):
        pass  # refused: strict binascii decides (it accepts a little more on Python 3.11 and 3.12)
    try:
        return binascii.a2b_base64(delta, strict_mode=True)
    except (binascii.Error, ValueError):
        raise NarrationError("Azure OpenAI sent audio that is not valid base64") from None
