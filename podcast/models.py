"""The narration request: what a caller may ask for, validated before any work starts.

One schema serves ``POST /api/narrations`` and uploaded ``.json`` files::

    {"text": "...", "mode": "read", "style": "podcast", "voice": "marin",
     "language": "es-MX", "instructions": "...", "title": "...", "sas_expiry_minutes": 60}

Callers are mostly Power Automate flows, so the contract is strict about types but
forgiving where flows are clumsy:

- JSON types are strict: ``text`` must be a string, numbers must be JSON numbers (``"60"``
  and ``true`` are rejected, never coerced), NaN and Infinity are rejected.
- ``null`` for an optional field means "not given", and so does an empty or
  whitespace-only string (flows send ``""`` for an unset parameter).
- ``mode``, ``style`` and ``voice`` match case-insensitively; ``language`` tags are
  normalized (``es-mx`` becomes ``es-MX``, ``zh_hant_tw`` becomes ``zh-Hant-TW``).
- Unknown fields are rejected by name, with a did-you-mean suggestion.

:func:`parse_request` is the single entry point. It raises exactly one
:class:`~podcast.errors.RequestValidationError` (400) that names the field and says what
is allowed, or :class:`~podcast.errors.TextTooLongError` (413) when the text or the body
is too large. Messages never repeat the caller's text.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, NoReturn, get_args
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from podcast.errors import RequestTooLargeError, RequestValidationError, TextTooLongError
from podcast.languages import normalize_language_tag
from podcast.settings import (
    DEFAULT_MAX_SAS_EXPIRY_MINUTES,
    DEFAULT_MAX_TEXT_CHARACTERS,
    DEFAULT_SAS_EXPIRY_MINUTES,
    MAX_INSTRUCTIONS_CHARACTERS,
    MAX_SAS_EXPIRY_SETTING,
    MAX_SCRIPT_CHARACTERS,
    MAX_SCRIPT_TURNS,
    MAX_SPEAKER_DESCRIPTION_CHARACTERS,
    MAX_SPEAKER_NAME_CHARACTERS,
    MAX_SPEAKERS,
    MAX_TEXT_CHARACTERS_SETTING,
    MAX_TITLE_CHARACTERS,
    RequestLimits,
)
from podcast.voices import DEFAULT_VOICE, REALTIME_VOICES, voice_error
from podcast.wire import AudioFormat, ScriptChapter, ScriptDocument, ScriptTurn, ShowDetails, Speaker

__all__ = [
    "CONVERSATION_STYLES",
    "DEFAULT_MAX_SAS_EXPIRY_MINUTES",
    "DEFAULT_MAX_TEXT_CHARACTERS",
    "DEFAULT_SAS_EXPIRY_MINUTES",
    "DEFAULT_SPEAKERS",
    "DEFAULT_TARGET_MINUTES",
    "EPISODE_STYLES",
    "LIMITS_CONTEXT_KEY",
    "MAX_CONVERSATION_MINUTES",
    "MAX_INSTRUCTIONS_CHARACTERS",
    "MAX_SAS_EXPIRY_SETTING",
    "MAX_SPEAKERS",
    "MAX_TARGET_MINUTES",
    "MAX_TEXT_CHARACTERS_SETTING",
    "MAX_TITLE_CHARACTERS",
    "MIN_TARGET_MINUTES",
    "MODES",
    "READ_STYLES",
    "Mode",
    "NarrationRequest",
    "RequestLimits",
    "ScriptRequest",
    "Style",
    "has_speakable_text",
    "parse_request",
    "parse_script_request",
    "parse_show",
]

Mode = Literal["read", "episode", "script", "conversation"]
"""``read``: the text is read verbatim. ``episode``: a short episode is made about it.
``script``: a conversation ``script`` is voiced verbatim, each turn by its speaker's voice.
``conversation``: the model writes a dialogue about the text for the speakers, then it is voiced
as a script is."""
Style = Literal["podcast", "narration", "lecture", "summary"]
"""Delivery presets; which ones are allowed depends on the mode (see :data:`READ_STYLES`)."""

MODES: Final[tuple[Mode, ...]] = get_args(Mode)
READ_STYLES: Final[tuple[Style, ...]] = ("podcast", "narration", "lecture")
"""Styles for ``read``: warm podcast host, neutral audiobook narrator, measured lecturer."""
EPISODE_STYLES: Final[tuple[Style, ...]] = ("podcast", "summary", "lecture")
"""Styles for ``episode``: podcast episode, spoken briefing, explainer."""
CONVERSATION_STYLES: Final[tuple[Style, ...]] = EPISODE_STYLES
"""Styles for ``conversation``: hosts chatting, a briefing dialogue, an explainer dialogue."""
_STYLES_BY_MODE: Final[Mapping[str, tuple[Style, ...]]] = {
    "read": READ_STYLES,
    "episode": EPISODE_STYLES,
    "script": READ_STYLES,
    "conversation": CONVERSATION_STYLES,
}
SPEAKER_MODES: Final[tuple[Mode, ...]] = ("script", "conversation")
"""The modes that take ``speakers`` (each turn is voiced by one of them); ``conversation``
without them has :data:`DEFAULT_SPEAKERS`."""
_SPEAKER_NAME_FORBIDDEN: Final = re.compile(r"[<>&:\[\]{}]")
"""Characters a speaker's name may not hold: it labels ``Name: ...`` transcript lines and
WebVTT ``<v Name>`` voice tags, which these would break."""
_BLANK_LOOKALIKES: Final = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2800\u3164\ufe00-\ufe0f\uffa0\U000e0100-\U000e01ef]"
)
"""Characters that show as nothing although Unicode does not class them as invisible (C*):
the Hangul fillers and the braille blank (letters and symbols by category), the combining
grapheme joiner, Khmer's inherent vowels and the variation selectors (marks). They spoof a
blank or look-alike speaker name, and a text of only them has nothing to say."""

DEFAULT_TARGET_MINUTES: Final = 2.0
MIN_TARGET_MINUTES: Final = 0.5
MAX_TARGET_MINUTES: Final = 3.0
"""The longest ``episode`` (one Realtime response speaks it)."""
MAX_CONVERSATION_MINUTES: Final = 30.0
"""The longest ``conversation``: written as an outline and sections, voiced turn by turn."""
_MAX_MINUTES_BY_MODE: Final[Mapping[str, float]] = {
    "episode": MAX_TARGET_MINUTES,
    "conversation": MAX_CONVERSATION_MINUTES,
}

SHOW_SLUG_PATTERN: Final = "^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
"""A show's slug: 1 to 64 lower-case ASCII letters, digits and inner hyphens."""
_SHOW_SLUG: Final = re.compile(SHOW_SLUG_PATTERN)

LIMITS_CONTEXT_KEY: Final = "limits"
"""Key of the :class:`RequestLimits` in the validation context of ``model_validate``."""


# --- validation helpers -----------------------------------------------------------------

_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f]")
"""Unicode category Cc: C0 controls, DEL and C1 controls."""
_CONTROL_EXCEPT_LINE_BREAKS: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Cc without ``\\n`` and ``\\t`` (``\\r`` is normalized to ``\\n`` before the check)."""


def _fail(field: str | None, message: str, *, kind: str = "invalid_request", **details: Any) -> NoReturn:
    """Raise the one pydantic error type that :func:`parse_request` turns back into ours.

    The final message travels in the context (rendered as ``{message}``) so braces in it
    are never treated as a template.
    """
    raise PydanticCustomError(kind, "{message}", {"message": message, "field": field, **details})


def _json_type(value: object) -> str:
    """How a value reads in JSON terms, for messages: ``a number``, ``null``, ``a list``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _shown(value: str, limit: int = 40) -> str:
    """A short, single-line echo of a caller's value for a message."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in value[:limit])
    return cleaned + ("..." if len(value) > limit else "")


def _require_string(field: str, value: object) -> str:
    if not isinstance(value, str):
        _fail(field, f"{field} must be a string; got {_json_type(value)}")
    return value


def _clean_text(field: str, value: str, *, multiline: bool, limit: int, too_long_kind: str) -> str:
    """Check and normalize free text: no lone surrogates, ``\\r\\n``/``\\r`` → ``\\n``, NFC,
    trimmed, at most ``limit`` characters, and no control characters other than line
    breaks and tabs (none at all unless ``multiline``).

    Raises ``too_long_kind`` with ``length``/``limit`` details when too long, so the text
    field can become a 413. Lengths count Unicode code points after normalization.
    """
    if len(value) > 4 * limit + 4096:  # cannot shrink to the limit: fail before the heavy work
        _fail(field, f"{field} is too long", kind=too_long_kind, length=len(value), limit=limit)
    surrogate = _LONE_SURROGATE.search(value)
    if surrogate:
        _fail(
            field,
            f"{field} contains a lone UTF-16 surrogate (U+{ord(surrogate.group()):04X}) at character "
            f"{surrogate.start() + 1}, which is not valid Unicode; send valid UTF-8 text",
        )
    value = unicodedata.normalize("NFC", value.replace("\r\n", "\n").replace("\r", "\n")).strip()
    if len(value) > limit:
        _fail(
            field,
            f"{field} has {len(value):,} characters; the limit is {limit:,}",
            kind=too_long_kind,
            length=len(value),
            limit=limit,
        )
    control = (_CONTROL_EXCEPT_LINE_BREAKS if multiline else _CONTROL).search(value)
    if control:
        what = "only line breaks and tabs are" if multiline else "no control characters are"
        _fail(
            field,
            f"{field} contains the control character U+{ord(control.group()):04X} at character "
            f"{control.start() + 1}; {what} allowed",
        )
    return value


def has_speakable_text(text: str) -> bool:
    """Whether ``text`` has anything a narrator can say: a letter or a digit (Unicode
    categories L* and N*, in any script or direction).

    Punctuation, symbols (emoji included), combining marks alone, spaces, invisible
    format characters (zero-width spaces and joiners, direction marks) and the letters that
    show as blanks (the Hangul fillers, :data:`_BLANK_LOOKALIKES`) are not speakable:
    text made only of them would be answered with silence or with words that are not in
    it (an emoji's name), which read mode cannot check and nobody asked for.
    """
    return any(unicodedata.category(ch)[0] in "LN" and not _BLANK_LOOKALIKES.match(ch) for ch in text)


def _choice(field: str, value: str, allowed: Iterable[str], what: str) -> str:
    options = tuple(allowed)
    folded = value.strip().lower()
    if folded in options:
        return folded
    _fail(field, f"{field} '{_shown(value)}' is not {what}; choose one of: {', '.join(options)}")


def _limits(info: ValidationInfo) -> RequestLimits:
    context = info.context
    if isinstance(context, Mapping):
        limits = context.get(LIMITS_CONTEXT_KEY)
        if isinstance(limits, RequestLimits):
            return limits
    return RequestLimits()


def _without_default(extra: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """A ``json_schema_extra`` that adds ``extra`` and drops the schema's ``default``: ``text``
    defaults to ``""`` only so that a script can stand in for it, which is no value to send."""

    def update(schema: dict[str, Any]) -> None:
        schema.pop("default", None)
        schema.update(extra)

    return update


def _require_list(field: str, value: object, what: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        _fail(field, f"{field} must be {what}; got {_json_type(value)}")
    return list(value)


def _object(
    field: str, value: object, allowed: tuple[str, ...], *, required: tuple[str, ...]
) -> Mapping[str, Any]:
    """``value`` as a JSON object with only ``allowed`` keys and every ``required`` one
    (``null`` counts as absent); errors name ``field.key``."""
    if isinstance(value, Speaker | ScriptTurn | ScriptChapter):
        value = value.model_dump()
    if not isinstance(value, Mapping):
        _fail(field, f"{field} must be an object with {', '.join(allowed)}; got {_json_type(value)}")
    for key in value:
        if key not in allowed:
            _fail(
                f"{field}.{_shown(str(key))}",
                f"{field} has the unknown field '{_shown(str(key))}'; allowed fields: {', '.join(allowed)}",
                kind="unknown_field",
            )
    present = {key: item for key, item in value.items() if item is not None}
    for key in required:
        if key not in present:
            _fail(f"{field}.{key}", f"{field}.{key} is required", kind="missing_field")
    return present


def _speaker(field: str, value: object) -> Speaker:
    entry = _object(field, value, ("name", "voice", "description"), required=("name", "voice"))
    name = _clean_text(
        f"{field}.name",
        _require_string(f"{field}.name", entry["name"]),
        multiline=False,
        limit=MAX_SPEAKER_NAME_CHARACTERS,
        too_long_kind="invalid_request",
    )
    name = re.sub(r"\s+", " ", name)
    if not has_speakable_text(name):
        _fail(f"{field}.name", f"{field}.name must have a letter or a digit")
    invisible = next(
        (ch for ch in name if unicodedata.category(ch)[0] == "C" or _BLANK_LOOKALIKES.match(ch)), None
    )
    if invisible is not None:  # direction marks, zero-width characters: a label must read as it shows
        _fail(f"{field}.name", f"{field}.name contains the invisible character U+{ord(invisible):04X}")
    forbidden = _SPEAKER_NAME_FORBIDDEN.search(name)
    if forbidden:
        _fail(
            f"{field}.name",
            f"{field}.name may not contain '{forbidden.group()}' (names label transcript lines and captions)",
        )
    voice = _require_string(f"{field}.voice", entry["voice"]).strip()
    if voice.lower() not in REALTIME_VOICES:
        _fail(f"{field}.voice", f"{field}.voice {voice_error(_shown(voice))}")
    description = None
    if "description" in entry:
        description = (
            _clean_text(
                f"{field}.description",
                _require_string(f"{field}.description", entry["description"]),
                multiline=False,
                limit=MAX_SPEAKER_DESCRIPTION_CHARACTERS,
                too_long_kind="invalid_request",
            )
            or None
        )
    return Speaker(name=name, voice=voice.lower(), description=description)


def _check_text_or_script(prepared: dict[str, Any]) -> bool:
    """Exactly one of ``text`` and ``script``; a script sets mode ``script`` (the only mode it
    takes: with ``conversation``, which writes its own, the error names ``script``), and mode
    ``script`` needs one. Returns whether there is a script."""
    has_script = prepared.get("script") is not None
    if "text" in prepared and has_script:
        _fail("script", "send either text or script, not both (a script's turns are the text to read)")
    if has_script:
        mode = prepared.setdefault("mode", "script")
        if isinstance(mode, str) and mode.strip().lower() == "conversation":
            _fail(
                "script",
                "mode 'conversation' writes its own script from text; to voice this script as "
                "written, remove mode (or set it to 'script'), else send text instead of script",
            )
        if not (isinstance(mode, str) and mode.strip().lower() == "script"):
            _fail("mode", "a script is voiced in script mode; remove mode or set it to 'script'")
        if "voice" in prepared:
            _fail("voice", "voice does not apply to a script; give each of the speakers a voice")
        return True
    if isinstance(prepared.get("mode"), str) and prepared["mode"].strip().lower() == "script":
        _fail(
            "script",
            "script is required in script mode: a list of turns {speaker, text}",
            kind="missing_field",
        )
    if "text" not in prepared:
        _fail("text", "text is required; send the text to narrate as a JSON string", kind="missing_field")
    return False


# --- the model ----------------------------------------------------------------------------


class NarrationRequest(BaseModel):
    """A validated narration request. Immutable; every field is already normalized.

    Build one with :func:`parse_request` (which turns validation failures into
    :class:`~podcast.errors.RequestValidationError`), or with ``model_validate(data,
    context={"limits": RequestLimits(...)})``; without a context the default limits apply.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", strict=True, hide_input_in_errors=True, defer_build=True
    )

    # The descriptions, x-ms-summary and x-ms-visibility are what the OpenAPI definition
    # publishes (podcast.http.openapi); the bounds that are settings (text's maximum length,
    # sas_expiry_minutes' maximum) are added there from the defaults.
    text: str = Field(
        default="",
        min_length=1,
        description="The text to narrate. Trimmed; at most NARRATION_MAX_TEXT_CHARACTERS characters "
        f"(default {DEFAULT_MAX_TEXT_CHARACTERS:,}); no control characters except newline and tab. "
        "Required unless a script is given (never both).",
        json_schema_extra=_without_default({"x-ms-summary": "Text", "x-ms-visibility": "important"}),
    )
    """The text to read or to make an episode about: trimmed, NFC, ``\\n`` line breaks. In
    script mode it is derived (never sent): the turns' texts joined by blank lines, so the
    character count and the length estimate of a script work as for a text."""
    mode: Mode = Field(
        default="read",
        description="read: the text is read verbatim. episode: a short podcast episode about the text. "
        "script: the script is voiced verbatim (the default when a script is given). "
        "conversation: a dialogue about the text between the speakers (default: two hosts) is "
        "written, then voiced.",
        json_schema_extra={"x-ms-summary": "Mode", "x-ms-visibility": "important"},
    )
    target_minutes: float = Field(
        default=DEFAULT_TARGET_MINUTES,
        ge=MIN_TARGET_MINUTES,
        le=MAX_CONVERSATION_MINUTES,
        description=f"Length of an episode, {MIN_TARGET_MINUTES:g} to {MAX_TARGET_MINUTES:g} minutes, or of "
        f"a conversation, {MIN_TARGET_MINUTES:g} to {MAX_CONVERSATION_MINUTES:g}; episode and conversation "
        "modes only.",
        json_schema_extra={"x-ms-summary": "Episode Length (Minutes)", "x-ms-visibility": "advanced"},
    )
    """Length in minutes of an episode (0.5 to 3) or a conversation (0.5 to 30). Ignored, and
    never given, in read mode."""
    style: Style = Field(
        default="podcast",
        description="read mode: podcast, narration or lecture. episode mode: podcast, summary or lecture.",
        json_schema_extra={"x-ms-summary": "Style", "x-ms-visibility": "advanced"},
    )
    voice: str = Field(
        default=DEFAULT_VOICE,
        description="A Realtime voice; the default is NARRATION_DEFAULT_VOICE (marin).",
        json_schema_extra={
            "enum": list(REALTIME_VOICES),
            "x-ms-summary": "Voice",
            "x-ms-visibility": "important",
        },
    )
    """A realtime voice in lower case (see :data:`podcast.voices.REALTIME_VOICES`)."""
    language: str | None = Field(
        default=None,
        description="A BCP 47 tag (en, es-MX, zh-CN) the narration is pinned to.",
        examples=["es-MX"],
        json_schema_extra={"x-ms-summary": "Language", "x-ms-visibility": "advanced"},
    )
    """A normalized BCP 47 tag (``es-MX``) the narration is pinned to, or ``None``."""
    instructions: str | None = Field(
        default=None,
        max_length=MAX_INSTRUCTIONS_CHARACTERS,
        description=f"At most {MAX_INSTRUCTIONS_CHARACTERS:,} characters. Shapes the delivery only; "
        "can never make read mode do anything but read.",
        json_schema_extra={"x-ms-summary": "Delivery Instructions", "x-ms-visibility": "advanced"},
    )
    """Extra delivery guidance from the caller (at most 1,000 characters)."""
    title: str | None = Field(
        default=None,
        max_length=MAX_TITLE_CHARACTERS,
        description=f"At most {MAX_TITLE_CHARACTERS} characters; the download file name and metadata.",
        json_schema_extra={"x-ms-summary": "Title", "x-ms-visibility": "important"},
    )
    """A single-line title (at most 200 characters) for the file name and metadata."""
    format: AudioFormat = Field(
        default="wav",
        description="wav: 24 kHz 16-bit mono PCM. mp3: 24 kHz mono at NARRATION_MP3_BITRATE_KBPS "
        "(default 64 kbit/s), with ID3 tags and chapters. Default: wav, or mp3 for a show's episode "
        "(Apple Podcasts takes no WAV).",
        # No default in the schema: a connector's form would send it, and a show's episode
        # would then be a WAV.
        json_schema_extra=_without_default({"x-ms-summary": "Audio Format", "x-ms-visibility": "advanced"}),
    )
    """The stored audio's format (``wav`` or ``mp3``): ``mp3`` when a request with a ``show``
    names none (podcast apps, Apple's first, take MP3 enclosures), else ``wav``."""
    sas_expiry_minutes: int = Field(
        default=DEFAULT_SAS_EXPIRY_MINUTES,
        ge=1,
        description="Minutes the audio link stays valid, 1 to NARRATION_MAX_SAS_EXPIRY_MINUTES "
        f"(default {DEFAULT_MAX_SAS_EXPIRY_MINUTES:,}). Each status request signs a fresh link.",
        json_schema_extra={"x-ms-summary": "Link Lifetime (Minutes)", "x-ms-visibility": "advanced"},
    )
    """How long the returned SAS URL stays valid."""
    show: str | None = Field(
        default=None,
        pattern=SHOW_SLUG_PATTERN,
        description="A show (created with PUT /api/shows/{show}) whose podcast feed gets this narration "
        "as an episode: lower-case letters, digits and inner hyphens, at most 64.",
        json_schema_extra={"x-ms-summary": "Show", "x-ms-visibility": "advanced"},
    )
    """The show whose feed lists this narration, or ``None``."""
    speakers: tuple[Speaker, ...] | None = Field(
        default=None,
        description=f"1 to {MAX_SPEAKERS} speakers of a script or a conversation (default in "
        "conversation mode: Maya (marin) and Theo (cedar)): a unique name (at most "
        f"{MAX_SPEAKER_NAME_CHARACTERS} characters; it labels the transcript and the captions), a Realtime "
        f"voice and an optional description (at most {MAX_SPEAKER_DESCRIPTION_CHARACTERS} characters).",
        json_schema_extra={"x-ms-summary": "Speakers", "x-ms-visibility": "advanced"},
    )
    """The speakers of a script or conversation (names unique case-insensitively), or ``None``."""
    script: tuple[ScriptTurn, ...] | None = Field(
        default=None,
        description=f"A conversation to voice verbatim instead of text: up to {MAX_SCRIPT_TURNS:,} turns "
        f"of {{speaker, text}}, at most {MAX_SCRIPT_CHARACTERS:,} characters of text together; each "
        "speaker is one of speakers. Sets mode to script.",
        json_schema_extra={"x-ms-summary": "Script", "x-ms-visibility": "advanced"},
    )
    """The turns, each ``speaker`` spelled as in :attr:`speakers`, each text cleaned like ``text``."""
    chapters: tuple[ScriptChapter, ...] | None = Field(
        default=None,
        description="Chapters of a script: {title, turn}, turn the index (from 0) of the turn that opens "
        "the chapter, in increasing order. MP3 narrations carry them as ID3 chapters.",
        json_schema_extra={"x-ms-summary": "Chapters", "x-ms-visibility": "advanced"},
    )
    """Chapters of a script (turns strictly increasing and inside the script), or ``None``."""

    @model_validator(mode="before")
    @classmethod
    def _prepare(cls, data: Any, info: ValidationInfo) -> Any:
        """Reject unknown fields by name; drop ``null``s; fill the defaults that are settings."""
        if not isinstance(data, Mapping):
            _fail(None, f"the request must be a JSON object; got {_json_type(data)}", kind="invalid_json")
        fields = tuple(cls.model_fields)
        for key in data:
            if key not in fields:
                name = str(key)
                hint = difflib.get_close_matches(name.lower(), fields, n=1, cutoff=0.6)
                suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
                _fail(
                    _shown(name),
                    f"unknown field '{_shown(name)}'{suggestion}; allowed fields: {', '.join(fields)}",
                    kind="unknown_field",
                )
        prepared = {key: value for key, value in data.items() if value is not None or key == "text"}
        for key in ("mode", "style", "voice", "language", "instructions", "title", "format", "show"):
            value = prepared.get(key)
            if isinstance(value, str) and not value.strip():
                del prepared[key]
        if prepared.get("chapters") == []:  # flows send [] for an unset list
            del prepared["chapters"]
        limits = _limits(info)
        if not _check_text_or_script(prepared):  # a script's voices are its speakers'
            prepared.setdefault("voice", limits.default_voice)
        prepared.setdefault("sas_expiry_minutes", limits.default_sas_expiry_minutes)
        if "show" in prepared:  # an episode: what podcast apps play
            prepared.setdefault("format", "mp3")
        return prepared

    @field_validator("text", mode="before")
    @classmethod
    def _check_text(cls, value: object, info: ValidationInfo) -> str:
        if value is None:
            _fail("text", "text is required and must be a string; got null")
        text = _clean_text(
            "text",
            _require_string("text", value),
            multiline=True,
            limit=_limits(info).max_text_characters,
            too_long_kind="text_too_long",
        )
        if not text:
            _fail("text", "text is empty; send the text to narrate (whitespace alone is not enough)")
        if not has_speakable_text(text):
            _fail(
                "text",
                "text has nothing to say: it has no letter or digit, only punctuation, symbols, emoji, "
                "marks or invisible characters; send text with words to read",
                kind="no_speakable_text",
            )
        return text

    @field_validator("speakers", mode="before")
    @classmethod
    def _check_speakers(cls, value: object) -> tuple[Speaker, ...]:
        items = _require_list("speakers", value, f"a list of 1 to {MAX_SPEAKERS} speakers")
        if not 1 <= len(items) <= MAX_SPEAKERS:
            _fail("speakers", f"speakers must have 1 to {MAX_SPEAKERS} speakers; got {len(items)}")
        speakers: list[Speaker] = []
        seen: dict[str, int] = {}
        for index, item in enumerate(items):
            speaker = _speaker(f"speakers[{index}]", item)
            key = speaker.name.casefold()
            if key in seen:
                _fail(
                    f"speakers[{index}].name",
                    f"speakers[{index}].name '{_shown(speaker.name)}' is the name of speakers[{seen[key]}] "
                    "too (names are compared without case); give each speaker a different name",
                )
            seen[key] = index
            speakers.append(speaker)
        return tuple(speakers)

    @field_validator("script", mode="before")
    @classmethod
    def _check_script(cls, value: object) -> tuple[ScriptTurn, ...]:
        items = _require_list("script", value, "a list of turns {speaker, text}")
        if not items:
            _fail("script", "script is empty; send at least one turn {speaker, text}")
        if len(items) > MAX_SCRIPT_TURNS:
            _fail(
                "script",
                f"script has {len(items):,} turns; the limit is {MAX_SCRIPT_TURNS:,}",
                kind="script_too_long",
            )
        turns: list[ScriptTurn] = []
        characters = 0
        for index, item in enumerate(items):
            field = f"script[{index}]"
            entry = _object(field, item, ("speaker", "text"), required=("speaker", "text"))
            # Spaced as the speakers' names are, so a name with a no-break space still matches.
            speaker = re.sub(r"\s+", " ", _require_string(f"{field}.speaker", entry["speaker"]).strip())
            if not speaker:
                _fail(f"{field}.speaker", f"{field}.speaker is empty; name one of the speakers")
            text = _clean_text(
                f"{field}.text",
                _require_string(f"{field}.text", entry["text"]),
                multiline=True,
                limit=MAX_SCRIPT_CHARACTERS,
                too_long_kind="script_too_long",
            )
            if not has_speakable_text(text):
                what = "is empty" if not text else "has nothing to say (no letter or digit)"
                _fail(f"{field}.text", f"{field}.text {what}; every turn needs words to read")
            characters += len(text)
            if characters > MAX_SCRIPT_CHARACTERS:
                _fail(
                    "script",
                    f"script has more than {MAX_SCRIPT_CHARACTERS:,} characters of text (the limit) by "
                    f"{field}; shorten it or split it into several narrations",
                    kind="script_too_long",
                )
            turns.append(ScriptTurn(speaker=speaker, text=text))
        return tuple(turns)

    @field_validator("chapters", mode="before")
    @classmethod
    def _check_chapters(cls, value: object) -> tuple[ScriptChapter, ...]:
        items = _require_list("chapters", value, "a list of chapters {title, turn}")
        chapters: list[ScriptChapter] = []
        for index, item in enumerate(items):
            field = f"chapters[{index}]"
            entry = _object(field, item, ("title", "turn"), required=("title", "turn"))
            title = _clean_text(
                f"{field}.title",
                _require_string(f"{field}.title", entry["title"]),
                multiline=False,
                limit=MAX_TITLE_CHARACTERS,
                too_long_kind="invalid_request",
            )
            if not title:
                _fail(f"{field}.title", f"{field}.title is empty")
            turn = entry["turn"]
            if isinstance(turn, bool) or not isinstance(turn, int) or turn < 0:
                _fail(f"{field}.turn", f"{field}.turn must be the index (a whole number from 0) of a turn")
            if chapters and turn <= chapters[-1].turn:
                _fail(
                    f"{field}.turn",
                    f"{field}.turn must be after chapters[{index - 1}].turn ({chapters[-1].turn})",
                )
            chapters.append(ScriptChapter(title=title, turn=turn))
        return tuple(chapters)

    @field_validator("mode", mode="before")
    @classmethod
    def _check_mode(cls, value: object) -> str:
        return _choice("mode", _require_string("mode", value), MODES, "a mode")

    @field_validator("format", mode="before")
    @classmethod
    def _check_format(cls, value: object) -> str:
        return _choice("format", _require_string("format", value), get_args(AudioFormat), "an audio format")

    @field_validator("target_minutes", mode="before")
    @classmethod
    def _check_target_minutes(cls, value: object, info: ValidationInfo) -> float:
        # ``mode`` is declared before ``target_minutes``, so it is validated (or missing) by now.
        mode = info.data.get("mode", "read")
        maximum = _MAX_MINUTES_BY_MODE.get(mode, MAX_TARGET_MINUTES)
        allowed = f"a number of minutes from {MIN_TARGET_MINUTES:g} to {maximum:g}"
        if mode in _MAX_MINUTES_BY_MODE:
            allowed += f" in {mode} mode"
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail("target_minutes", f"target_minutes must be {allowed}; got {_json_type(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            _fail("target_minutes", f"target_minutes must be {allowed}; NaN and Infinity are not allowed")
        if not MIN_TARGET_MINUTES <= value <= maximum:
            _fail("target_minutes", f"target_minutes must be {allowed}; got {_number(value)}")
        return float(value)

    @field_validator("style", mode="before")
    @classmethod
    def _check_style(cls, value: object) -> str:
        return _choice("style", _require_string("style", value), get_args(Style), "a style")

    @field_validator("voice", mode="before")
    @classmethod
    def _check_voice(cls, value: object) -> str:
        voice = _require_string("voice", value).strip()
        if voice.lower() in REALTIME_VOICES:
            return voice.lower()
        _fail("voice", f"voice {voice_error(_shown(voice))}")

    @field_validator("language", mode="before")
    @classmethod
    def _check_language(cls, value: object) -> str:
        raw = _require_string("language", value).strip()
        tag = normalize_language_tag(raw)
        if tag is None:
            _fail(
                "language",
                f"language '{_shown(raw)}' is not a language tag; use a BCP 47 tag such as "
                "en, es-MX, pt-BR, zh-CN or zh-Hant-TW (language, optional script, optional region)",
            )
        return tag

    @field_validator("instructions", mode="before")
    @classmethod
    def _check_instructions(cls, value: object) -> str:
        return _clean_text(
            "instructions",
            _require_string("instructions", value),
            multiline=True,
            limit=MAX_INSTRUCTIONS_CHARACTERS,
            too_long_kind="invalid_request",
        )

    @field_validator("title", mode="before")
    @classmethod
    def _check_title(cls, value: object) -> str:
        return _clean_text(
            "title",
            _require_string("title", value),
            multiline=False,
            limit=MAX_TITLE_CHARACTERS,
            too_long_kind="invalid_request",
        )

    @field_validator("show", mode="before")
    @classmethod
    def _check_show(cls, value: object) -> str:
        slug = _require_string("show", value).strip()
        problem = show_slug_problem(slug)
        if problem is not None:
            _fail("show", problem)
        return slug

    @field_validator("sas_expiry_minutes", mode="before")
    @classmethod
    def _check_sas_expiry(cls, value: object, info: ValidationInfo) -> int:
        maximum = _limits(info).max_sas_expiry_minutes
        allowed = f"a whole number of minutes from 1 to {maximum}"
        if isinstance(value, str):
            _fail(
                "sas_expiry_minutes",
                f"sas_expiry_minutes must be {allowed} sent as a JSON number, not a string "
                f'(send 60, not "60")',
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail("sas_expiry_minutes", f"sas_expiry_minutes must be {allowed}; got {_json_type(value)}")
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            _fail("sas_expiry_minutes", f"sas_expiry_minutes must be {allowed}; got {_number(value)}")
        if not 1 <= value <= maximum:
            _fail("sas_expiry_minutes", f"sas_expiry_minutes must be {allowed}; got {_number(value)}")
        return int(value)

    @model_validator(mode="after")
    def _check_combinations(self) -> NarrationRequest:
        """``target_minutes`` only with episode mode; the style must exist in the mode."""
        if self.mode == "read" and "target_minutes" in self.model_fields_set:
            _fail(
                "target_minutes",
                "target_minutes applies to episode and conversation modes only; remove it or set mode "
                "to 'episode' or 'conversation'",
            )
        allowed = _STYLES_BY_MODE[self.mode]
        if self.style not in allowed:
            _fail(
                "style",
                f"style '{self.style}' is not available in {self.mode} mode; "
                f"choose one of: {', '.join(allowed)}",
            )
        self._check_conversation()
        return self

    def _check_conversation(self) -> None:
        """Speakers only in the modes that voice them; every turn by a known speaker (its name
        spelled as in ``speakers``); chapters only with a script, each at one of its turns."""
        if self.speakers is not None and self.mode not in SPEAKER_MODES:
            _fail(
                "speakers",
                "speakers apply to a script or a conversation; remove them, send a script or set mode "
                f"to 'conversation' (mode {self.mode})",
            )
        if self.chapters is not None and self.script is None:
            _fail("chapters", "chapters apply to a script only; remove them or send a script")
        if self.script is None:
            return
        if "target_minutes" in self.model_fields_set:
            _fail("target_minutes", "target_minutes does not apply to a script: its length is its turns'")
        if self.speakers is None:
            _fail("speakers", "speakers is required with a script: 1 to 4 {name, voice} the turns name")
        names = {speaker.name.casefold(): speaker.name for speaker in self.speakers}
        turns: list[ScriptTurn] = []
        for index, turn in enumerate(self.script):
            name = names.get(turn.speaker.casefold())
            if name is None:
                _fail(
                    f"script[{index}].speaker",
                    f"script[{index}].speaker '{_shown(turn.speaker)}' is not one of the speakers; "
                    f"choose one of: {', '.join(names.values())}",
                )
            turns.append(turn if name == turn.speaker else ScriptTurn(speaker=name, text=turn.text))
        for index, chapter in enumerate(self.chapters or ()):
            if chapter.turn >= len(self.script):
                _fail(
                    f"chapters[{index}].turn",
                    f"chapters[{index}].turn is {chapter.turn}, but the script's turns are "
                    f"0 to {len(self.script) - 1}",
                )
        # Derived fields, set without marking them as sent (model_dump(exclude_unset=True)
        # gives back what the caller sent, so a stored request validates again).
        object.__setattr__(self, "script", tuple(turns))
        object.__setattr__(self, "text", "\n\n".join(turn.text for turn in turns))

    def script_document(self) -> ScriptDocument:
        """The script of a script-mode request as the voice stage takes it. Raises
        ``ValueError`` for a request without a script."""
        if self.script is None or self.speakers is None:
            raise ValueError("the request has no script")
        return ScriptDocument(
            title=self.title,
            speakers=list(self.speakers),
            script=list(self.script),
            chapters=list(self.chapters or ()),
        )

    def fingerprint(self) -> str:
        """SHA-256 (hex) of everything that decides the audio, for idempotency and caching.

        Covers text, mode, style, voice, language, instructions, the audio format, the show,
        a conversation's or script's speakers, a script's turns and chapters and, in episode and
        conversation modes, target_minutes; not title or sas_expiry_minutes. Stable across
        processes and versions of this module unless the prompt contract changes (bump ``v`` then).
        """
        canonical = {
            "v": 1,
            "text": self.text,
            "mode": self.mode,
            "target_minutes": self.target_minutes if self.mode in _MAX_MINUTES_BY_MODE else None,
            "style": self.style,
            "voice": self.voice,
            "language": self.language,
            "instructions": self.instructions,
        }
        if self.format != "wav":  # keeps the fingerprints of WAV narrations made before formats existed
            canonical["format"] = self.format
        if self.show is not None:  # a show's episode is reused only within that show (its feed has it)
            canonical["show"] = self.show
        if self.script is not None:  # the voices and the turns decide the audio; chapters its tags
            canonical["speakers"] = [[s.name, s.voice] for s in self.speakers or ()]
            canonical["script"] = [[turn.speaker, turn.text] for turn in self.script]
            canonical["chapters"] = [[c.title, c.turn] for c in self.chapters or ()]
        elif self.mode == "conversation":  # its hosts (personas too) shape the script it writes
            hosts = self.speakers or DEFAULT_SPEAKERS
            canonical["speakers"] = [[s.name, s.voice, s.description] for s in hosts]
        encoded = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(encoded.encode("utf-8")).hexdigest()

    def download_name(self, suffix: str = ".wav") -> str:
        """A file name safe for Content-Disposition, blob names and every OS.

        ``"My Episode!"`` → ``"My Episode!.wav"``; accents are dropped (``Café`` →
        ``Cafe``); anything but ASCII letters, digits, spaces and ``- _ . , ( ) ! '`` is
        removed; runs of spaces collapse; at most 100 characters before ``suffix``.
        Falls back to ``narration.wav`` when nothing usable is left (no title, an
        all-CJK title, a reserved Windows name such as ``CON``).
        """
        return download_name(self.title, suffix)


def download_name(title: str | None, suffix: str = ".wav") -> str:
    """The ASCII file name of :meth:`NarrationRequest.download_name` for ``title``."""
    ascii_title = unicodedata.normalize("NFKD", title or "").encode("ascii", "ignore").decode()
    kept = re.sub(r"[^A-Za-z0-9 \-_.,()!']+", " ", ascii_title)
    stem = re.sub(r"\s+", " ", kept)[:100].strip(" .-_,'")
    if not stem or stem.split(".")[0].upper() in _WINDOWS_RESERVED_NAMES:
        stem = "narration"
    return f"{stem}{suffix}"


def unicode_download_name(title: str | None, suffix: str = ".wav") -> str:
    """The title itself as a file name, for RFC 5987's ``filename*``: NFC, no control
    characters, none of the characters Windows forbids (``<>:"/\\|?*``, replaced by ``_``),
    at most 100 characters before ``suffix``; the ASCII name when nothing is left."""
    cleaned = "".join(
        "_" if ch in '<>:"/\\|?*' else ch
        for ch in unicodedata.normalize("NFC", title or "")
        if unicodedata.category(ch)[0] != "C"
    )
    stem = re.sub(r"\s+", " ", cleaned)[:100].strip(" .")
    if not stem or stem.split(".")[0].upper() in _WINDOWS_RESERVED_NAMES:
        return download_name(title, suffix)
    return f"{stem}{suffix}"


_WINDOWS_RESERVED_NAMES: Final = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"{name}{n}" for name in ("COM", "LPT") for n in range(1, 10)}
)


def _number(value: float) -> str:
    """A number for a message, without echoing hundreds of digits."""
    shown = repr(value)
    return shown if math.isfinite(value) and len(shown) <= 20 else "a number far out of range"


# --- parsing -------------------------------------------------------------------------------


class _FlaggedObject(dict[str, Any]):
    """A JSON object refused as it was parsed: ``key`` had a lone UTF-16 surrogate
    (``problem == "surrogate"``) or came more than once (``"duplicate"``; the object then
    holds the keys before it)."""

    key: str
    problem: Literal["duplicate", "surrogate"]


def _flagged(result: dict[str, Any], key: str, problem: Literal["duplicate", "surrogate"]) -> _FlaggedObject:
    flagged = _FlaggedObject(result)
    flagged.key, flagged.problem = key, problem
    return flagged


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if _LONE_SURROGATE.search(key):
            return _flagged(result, key, "surrogate")
        if key in result:
            return _flagged(result, key, "duplicate")
        result[key] = value
    return result


def _first_flagged(value: object, path: str = "") -> tuple[str, _FlaggedObject] | None:
    """The first refused object in ``value`` (document order) and the path of the key at
    fault (``speakers[0].voice``), the key shown as :func:`_shown` shows it."""
    if isinstance(value, dict):
        # A refused object holds the keys before the one at fault: any refused among them
        # comes first in the document.
        for key, item in value.items():
            if isinstance(item, dict | list):
                found = _first_flagged(item, f"{path}.{_shown(key)}" if path else _shown(key))
                if found is not None:
                    return found
        if isinstance(value, _FlaggedObject):
            key = _shown(value.key)
            return (f"{path}.{key}" if path else key), value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict | list):
                found = _first_flagged(item, f"{path}[{index}]")
                if found is not None:
                    return found
    return None


def _parse_int(digits: str) -> int | float:
    """Integers as usual, but one too long for ``int()`` (over 4,300 digits) becomes ±inf
    so the field it belongs to rejects it by name, instead of a bare ``ValueError``."""
    if len(digits) <= 1_000:
        return int(digits)
    return -math.inf if digits.startswith("-") else math.inf


def _decode(body: bytes, limits: RequestLimits) -> str:
    if len(body) > limits.max_body_bytes:
        raise RequestTooLargeError(len(body), limits.max_body_bytes, limits.max_text_characters)
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    if body.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(body) >= 2 and 0 in body[:2]):
        raise RequestValidationError(
            "the request body must be UTF-8 JSON; it looks like UTF-16 or UTF-32", code="invalid_json"
        )
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestValidationError(
            f"the request body must be UTF-8 JSON; byte 0x{body[exc.start]:02X} at offset "
            f"{exc.start} is not valid UTF-8",
            code="invalid_json",
        ) from None


def _load_json(document: str) -> object:
    if not document.strip():
        raise RequestValidationError(
            'the request body is empty; send a JSON object such as {"text": "..."}', code="invalid_json"
        )
    flagged = False

    def object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal flagged
        result = _object_pairs(pairs)
        flagged = flagged or isinstance(result, _FlaggedObject)
        return result

    try:
        data = json.loads(document, object_pairs_hook=object_pairs, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            code="invalid_json",
        ) from None
    except RecursionError:
        raise RequestValidationError(
            "the request body is not valid JSON for this endpoint: it is nested too deeply",
            code="invalid_json",
        ) from None
    found = _first_flagged(data) if flagged else None
    if found is not None:
        field, refused = found
        if refused.problem == "surrogate":
            character = _LONE_SURROGATE.search(refused.key)
            assert character is not None
            raise RequestValidationError(
                f"the request body has a field name with a lone UTF-16 surrogate "
                f"(U+{ord(character.group()):04X}), which is not valid Unicode: '{field}'; "
                "send valid UTF-8 JSON",
                field=field,
            )
        raise RequestValidationError(
            f"the request body has the field '{field}' more than once; "
            "send each field once so the request is not ambiguous",
            field=field,
            code="duplicate_field",
        )
    return data


def _to_request_error(exc: ValidationError) -> RequestValidationError:
    """The first error (field order: text first) as our error; text over the limit → 413."""
    try:
        error = exc.errors(include_url=False)[0]
    except UnicodeEncodeError:  # pydantic cannot render an error that holds a lone surrogate
        return RequestValidationError(
            "the request has a name or value that is not valid Unicode (a lone UTF-16 surrogate); "
            "send valid UTF-8 JSON"
        )
    context = error.get("ctx") or {}
    loc = ".".join(str(part) for part in error["loc"]) or None
    field: str | None = context.get("field", loc)
    if error["type"] == "text_too_long":
        return TextTooLongError(int(context["length"]), int(context["limit"]), field=field or "text")
    if error["type"] == "missing":
        return RequestValidationError(
            f"{field} is required; send the text to narrate as a JSON string"
            if field == "text"
            else f"{field} is required",
            field=field,
            code="missing_field",
        )
    if "message" in context:
        code = error["type"] if error["type"] != "invalid_request" else None
        return RequestValidationError(str(context["message"]), field=field, code=code)
    return RequestValidationError(f"{field or 'request'}: {error['msg']}", field=field)


def _document(body: bytes | str | Mapping[str, Any], limits: RequestLimits) -> Mapping[str, Any]:
    """The JSON object of a request body (see :func:`parse_request` for the rules)."""
    data: object
    if isinstance(body, bytes | bytearray | memoryview):
        data = _load_json(_decode(bytes(body), limits))
    elif isinstance(body, str):
        if len(body) > limits.max_body_bytes:  # characters <= bytes, so this never rejects a valid body
            raise RequestTooLargeError(
                len(body.encode("utf-8", "surrogatepass")), limits.max_body_bytes, limits.max_text_characters
            )
        data = _load_json(body.removeprefix("\ufeff"))
    else:
        data = body
    if not isinstance(data, Mapping):
        raise RequestValidationError(
            f'the request body must be a JSON object such as {{"text": "..."}}; got {_json_type(data)}',
            code="invalid_json",
        )
    return data


def parse_request(body: bytes | str | Mapping[str, Any], limits: RequestLimits) -> NarrationRequest:
    """Validate a request body (raw bytes, a JSON string, or an already-parsed mapping).

    Bytes must be UTF-8 JSON (a UTF-8 byte-order mark is tolerated) and no larger than
    ``limits.max_body_bytes``; the document must be one JSON object with no key twice in
    any of its objects (``duplicate_field``, naming the key's path) and no lone surrogate in
    a key. Raises :class:`~podcast.errors.TextTooLongError` (413) for text over
    ``limits.max_text_characters`` or an oversized body (:class:`RequestTooLargeError`),
    otherwise :class:`~podcast.errors.RequestValidationError` (400) whose ``field`` is the
    field at fault (``None`` for body-level problems) and whose message names it and
    says what is allowed. ``code`` is ``invalid_json``, ``duplicate_field``,
    ``unknown_field``, ``missing_field``, ``no_speakable_text`` (a text without a letter or
    digit: see :func:`has_speakable_text`) or ``invalid_request``.
    """
    data = _document(body, limits)
    _check_conversation_voice(data, limits)
    try:
        return NarrationRequest.model_validate(data, context={LIMITS_CONTEXT_KEY: limits})
    except ValidationError as exc:
        raise _to_request_error(exc) from None


def _check_conversation_voice(data: Mapping[str, Any], limits: RequestLimits) -> None:
    """A caller's ``voice`` beside ``mode: "conversation"`` is refused (the speakers have the
    voices), except the default voice, which a connector's form sends when left as it is.
    Checked on what callers send only: a stored job's request, validated again when it runs,
    carries the default voice the service filled in (whatever the default was then)."""
    mode, voice = data.get("mode"), data.get("voice")
    if not (isinstance(mode, str) and mode.strip().lower() == "conversation"):
        return
    if voice is None or (isinstance(voice, str) and voice.strip().lower() in ("", limits.default_voice)):
        return
    raise RequestValidationError(
        "voice does not apply to a conversation: each speaker has a voice; give them in "
        "speakers ([{name, voice}]), or leave voice out for the default hosts",
        field="voice",
    )


@dataclass(frozen=True, slots=True)
class SubmitOptions:
    """What a caller asked for beside the request itself (from the HTTP headers)."""

    respond_async: bool = False
    """Run as a job and answer 202 (``Prefer: respond-async``, RFC 7240)."""
    reuse: bool = True
    """``False``: narrate afresh even when identical audio exists (``Cache-Control: no-cache``)."""
    remember: bool = True
    """``False``: keep the result out of the reuse cache (``Cache-Control: no-store``)."""
    idempotency_key: str | None = None


# --- shows ----------------------------------------------------------------------------------

MAX_SHOW_DESCRIPTION_CHARACTERS: Final = 4_000
_EMAIL: Final = re.compile(
    r"[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+"
)


def show_slug_problem(slug: str) -> str | None:
    """Why ``slug`` is not a show's slug (:data:`SHOW_SLUG_PATTERN`), or ``None`` when it is one."""
    if _SHOW_SLUG.fullmatch(slug):
        return None
    return (
        f"show '{_shown(slug)}' is not a show name: use 1 to 64 lower-case letters, digits and "
        "hyphens, starting and ending with a letter or digit (e.g. daily-digest)"
    )


def check_show_slug(slug: str) -> str:
    """``slug`` when it is a show's slug; else :class:`RequestValidationError` naming ``show``."""
    problem = show_slug_problem(slug)
    if problem is not None:
        raise RequestValidationError(problem, field="show", code="invalid_show")
    return slug


APPLE_PODCAST_CATEGORIES: Final[Mapping[str, tuple[str, ...]]] = {
    "Arts": ("Books", "Design", "Fashion & Beauty", "Food", "Performing Arts", "Visual Arts"),
    "Business": ("Careers", "Entrepreneurship", "Investing", "Management", "Marketing", "Non-Profit"),
    "Comedy": ("Comedy Interviews", "Improv", "Stand-Up"),
    "Education": ("Courses", "How To", "Language Learning", "Self-Improvement"),
    "Fiction": ("Comedy Fiction", "Drama", "Science Fiction"),
    "Government": (),
    "History": (),
    "Health & Fitness": (
        "Alternative Health",
        "Fitness",
        "Medicine",
        "Mental Health",
        "Nutrition",
        "Sexuality",
    ),
    "Kids & Family": ("Education for Kids", "Parenting", "Pets & Animals", "Stories for Kids"),
    "Leisure": (
        "Animation & Manga",
        "Automotive",
        "Aviation",
        "Crafts",
        "Games",
        "Hobbies",
        "Home & Garden",
        "Video Games",
    ),
    "Music": ("Music Commentary", "Music History", "Music Interviews"),
    "News": (
        "Business News",
        "Daily News",
        "Entertainment News",
        "News Commentary",
        "Politics",
        "Sports News",
        "Tech News",
    ),
    "Religion & Spirituality": (
        "Buddhism",
        "Christianity",
        "Hinduism",
        "Islam",
        "Judaism",
        "Religion",
        "Spirituality",
    ),
    "Science": (
        "Astronomy",
        "Chemistry",
        "Earth Sciences",
        "Life Sciences",
        "Mathematics",
        "Natural Sciences",
        "Nature",
        "Physics",
        "Social Sciences",
    ),
    "Society & Culture": (
        "Documentary",
        "Personal Journals",
        "Philosophy",
        "Places & Travel",
        "Relationships",
    ),
    "Sports": (
        "Baseball",
        "Basketball",
        "Cricket",
        "Fantasy Sports",
        "Football",
        "Golf",
        "Hockey",
        "Rugby",
        "Running",
        "Soccer",
        "Swimming",
        "Tennis",
        "Volleyball",
        "Wilderness",
        "Wrestling",
    ),
    "Technology": (),
    "True Crime": (),
    "TV & Film": ("After Shows", "Film History", "Film Interviews", "Film Reviews", "TV Reviews"),
}
"""Apple Podcasts' categories and their subcategories, spelt as Apple matches them (case and
``&`` included): a feed with any other ``itunes:category`` is refused by Apple's directory."""
CATEGORY_SEPARATOR: Final = " > "
"""Between a category and its subcategory in a show's ``category`` (``Arts > Books``)."""


def _category_names() -> dict[str, str]:
    """Every accepted spelling folded (case, ``&``/``and``, ``-``/space) to its canonical form:
    a category, ``Category > Subcategory``, and a subcategory alone."""
    names: dict[str, str] = {}
    for top, subs in APPLE_PODCAST_CATEGORIES.items():
        names[_fold_category(top)] = top
        for sub in subs:
            full = f"{top}{CATEGORY_SEPARATOR}{sub}"
            names[_fold_category(full)] = full
            names.setdefault(_fold_category(sub), full)  # a name that is also a category stays it
    return names


def _fold_category(name: str) -> str:
    folded = re.sub(r"\s*[>/]\s*", ">", name.casefold().replace("&", " and "))
    return re.sub(r"[\s-]+", " ", folded).strip()


_CATEGORY_NAMES: Final = _category_names()


def _check_category(text: str) -> str:
    """``text`` as Apple spells it (``Arts``, ``Arts > Books``; a subcategory alone gets its
    category), or a 400 naming the field and suggesting the nearest."""
    found = _CATEGORY_NAMES.get(_fold_category(text))
    if found is not None:
        return found
    hint = difflib.get_close_matches(_fold_category(text), list(_CATEGORY_NAMES), n=1, cutoff=0.6)
    suggestion = f" (did you mean '{_CATEGORY_NAMES[hint[0]]}'?)" if hint else ""
    _fail(
        "category",
        f"category '{_shown(text)}' is not an Apple Podcasts category{suggestion}; give one of "
        f"{', '.join(APPLE_PODCAST_CATEGORIES)}, or a subcategory as 'Arts > Books'",
    )


class ShowRequest(ShowDetails):
    """A validated ``PUT /api/shows/{show}`` body: :class:`~podcast.wire.ShowDetails`, strict.

    Text fields are cleaned like a narration's title (NFC, trimmed, no control characters;
    the description may have line breaks); ``language`` is a normalized BCP 47 tag,
    ``artwork_url`` an absolute ``https`` URL, ``owner_email`` an address. Unknown fields
    are refused by name.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", strict=True, hide_input_in_errors=True, defer_build=True
    )

    @model_validator(mode="before")
    @classmethod
    def _prepare(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            _fail(None, f"the show must be a JSON object; got {_json_type(data)}", kind="invalid_json")
        fields = tuple(cls.model_fields)
        for key in data:
            if key not in fields:
                name = str(key)
                hint = difflib.get_close_matches(name.lower(), fields, n=1, cutoff=0.6)
                suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
                _fail(
                    _shown(name),
                    f"unknown field '{_shown(name)}'{suggestion}; allowed fields: {', '.join(fields)}",
                    kind="unknown_field",
                )
        prepared = {key: value for key, value in data.items() if value is not None}
        for key, value in list(prepared.items()):
            if isinstance(value, str) and not value.strip() and key != "title":
                del prepared[key]
        return prepared

    @field_validator("title", "author", mode="before")
    @classmethod
    def _check_line(cls, value: object, info: ValidationInfo) -> str:
        field = str(info.field_name)
        text = _clean_text(
            field,
            _require_string(field, value),
            multiline=False,
            limit=MAX_TITLE_CHARACTERS,
            too_long_kind="invalid_request",
        )
        if not text:
            _fail(field, f"{field} is empty")
        return text

    @field_validator("category", mode="before")
    @classmethod
    def _check_category(cls, value: object, info: ValidationInfo) -> str:
        return _check_category(cls._check_line(value, info))

    @field_validator("description", mode="before")
    @classmethod
    def _check_description(cls, value: object) -> str:
        return _clean_text(
            "description",
            _require_string("description", value),
            multiline=True,
            limit=MAX_SHOW_DESCRIPTION_CHARACTERS,
            too_long_kind="invalid_request",
        )

    @field_validator("language", mode="before")
    @classmethod
    def _check_language(cls, value: object) -> str:
        return NarrationRequest._check_language(value)

    @field_validator("artwork_url", mode="before")
    @classmethod
    def _check_artwork(cls, value: object) -> str:
        url = _require_string("artwork_url", value).strip()
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname or len(url) > 2_000 or _CONTROL.search(url):
            _fail(
                "artwork_url",
                "artwork_url must be an absolute https URL of an image (at most 2,000 characters)",
            )
        if any(ch.isspace() for ch in url):
            _fail("artwork_url", "artwork_url must not contain spaces; percent-encode them (%20)")
        return url

    @field_validator("owner_email", mode="before")
    @classmethod
    def _check_email(cls, value: object) -> str:
        email = _require_string("owner_email", value).strip()
        if len(email) > 254 or not _EMAIL.fullmatch(email):
            _fail("owner_email", "owner_email must be an e-mail address such as podcasts@example.com")
        return email

    @field_validator("explicit", mode="before")
    @classmethod
    def _check_explicit(cls, value: object) -> bool:
        if not isinstance(value, bool):
            _fail("explicit", f"explicit must be true or false; got {_json_type(value)}")
        return value


def parse_show(body: bytes | str | Mapping[str, Any], limits: RequestLimits) -> ShowRequest:
    """Validate a ``PUT /api/shows/{show}`` body like :func:`parse_request` validates a
    narration's: one :class:`~podcast.errors.RequestValidationError` (400) naming the field
    (``title`` is required), or :class:`RequestTooLargeError` (413) for a body over
    ``limits.max_body_bytes``."""
    data: object
    if isinstance(body, bytes | bytearray | memoryview):
        data = _load_json(_decode(bytes(body), limits))
    elif isinstance(body, str):
        data = _load_json(body.removeprefix("\ufeff"))
    else:
        data = body
    if not isinstance(data, Mapping):
        raise RequestValidationError(
            f'the show must be a JSON object such as {{"title": "..."}}; got {_json_type(data)}',
            code="invalid_json",
        )
    try:
        return ShowRequest.model_validate(data)
    except ValidationError as exc:
        raise _to_request_error(exc) from None


# --- conversation scripts (the script writer) ---------------------------------------------------

DEFAULT_SPEAKERS: Final[tuple[Speaker, ...]] = (
    Speaker(
        name="Maya",
        voice="marin",
        description="The host: curious and warm; she guides the conversation, asks the questions a "
        "listener would ask and keeps it moving.",
    ),
    Speaker(
        name="Theo",
        voice="cedar",
        description="The co-host: calm and knowledgeable; he explains the details of the source with "
        "its own examples, and sometimes asks back.",
    ),
)
"""The two hosts of a conversation whose request names no ``speakers``."""


@dataclass(frozen=True, slots=True)
class ScriptRequest:
    """A request to write a conversation script (``POST /api/scripts``, and ``mode:
    "conversation"``): the narration request and its speakers (:data:`DEFAULT_SPEAKERS`
    when it names none)."""

    request: NarrationRequest
    speakers: tuple[Speaker, ...] = DEFAULT_SPEAKERS

    def fingerprint(self) -> str:
        """SHA-256 (hex) of what decides the script: the request's fingerprint and the speakers,
        but not the audio's format nor the show it goes to (the same script serves them all)."""
        speakers = [speaker.model_dump(mode="json") for speaker in self.speakers]
        content = self.request.model_copy(update={"format": "wav", "show": None})
        encoded = json.dumps(
            {"v": 1, "request": content.fingerprint(), "speakers": speakers},
            sort_keys=True,
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def parse_script_request(body: bytes | str | Mapping[str, Any], limits: RequestLimits) -> ScriptRequest:
    """Validate a script request (``POST /api/scripts``): the fields of a conversation
    narration request (:func:`parse_request`; ``mode`` defaults to, and must be,
    ``conversation``), its ``speakers`` validated as a narration request's (errors name the
    field and index, ``speakers[1].voice``) and :data:`DEFAULT_SPEAKERS` when it names none;
    ``format``, ``show`` and ``sas_expiry_minutes`` only at their defaults (a script has no
    audio). Raises as :func:`parse_request` does."""
    fields = dict(_document(body, limits))
    mode = fields.get("mode")
    if mode is None or (isinstance(mode, str) and not mode.strip()):
        fields["mode"] = "conversation"
    request = parse_request(fields, limits)
    if request.mode != "conversation":
        raise RequestValidationError("mode must be 'conversation' for a script (or left out)", field="mode")
    _check_audio_fields(request, limits)
    return ScriptRequest(request, request.speakers or DEFAULT_SPEAKERS)


def _check_audio_fields(request: NarrationRequest, limits: RequestLimits) -> None:
    """A script has no audio: ``format``, ``show`` and ``sas_expiry_minutes`` are refused on
    ``POST /api/scripts`` (they would be silently dropped), unless at their defaults (a body
    reused from a narration request, or a form left as it is, asks for nothing)."""
    given = {  # show first: it makes the format's default mp3
        "show": request.show is not None,
        "format": request.format != "wav",
        "sas_expiry_minutes": request.sas_expiry_minutes != limits.default_sas_expiry_minutes,
    }
    for field, asked in given.items():
        if asked:
            raise RequestValidationError(
                f"{field} does not apply to a script, which has no audio: give it with the "
                "script (speakers and script) to POST /api/narrations",
                field=field,
            )
