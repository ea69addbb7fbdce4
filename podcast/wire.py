"""The JSON documents the service sends and stores, as pydantic models.

Each model is the one definition of a document's keys, their order, their types and what
they mean: ``Field(description=..., json_schema_extra={"x-ms-summary": ...})`` on every
field is what :mod:`podcast.http.openapi` publishes (Power Automate shows ``x-ms-summary``
as the field's label). Dump a document with ``model.model_dump(mode="json")``; read one
with ``Model.model_validate(data)``.

- :class:`NarrationResponse`: the 200 body of ``POST /api/narrations`` (and of a finished
  job), with :class:`Usage`; stored in job records and the content cache without its link.
- :class:`TranscriptDocument`: the ``.json`` beside each WAV (with :class:`SegmentReport`
  and, for uploaded documents, :class:`DocumentSource`).
- :class:`JobStatusDocument`: the 202 body (with :class:`JobProgress`).
- :class:`JobRecord`, :class:`CacheEntry`, :class:`IdempotencyEntry`: what the job service
  keeps in the jobs container.
- :class:`ErrorBody` (:class:`ErrorDetails`): every error body.

Stored documents are read leniently so that old and new versions of the app interoperate:
unknown keys are ignored (extra ones in :class:`ErrorDetails` are kept), and a field added
later must have a default. Timestamps are kept as the strings they were written as (the
job service writes milliseconds, the pipeline does not), so a document read and written
again is unchanged.

This is a bottom layer: it imports nothing from ``podcast`` but :mod:`podcast.voices`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, Protocol, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from podcast.voices import REALTIME_VOICES

__all__ = [
    "JOB_ID_PATTERN",
    "AudioFormat",
    "CacheEntry",
    "CacheState",
    "DocumentClaim",
    "DocumentSource",
    "EpisodeChapter",
    "EpisodeEntry",
    "ErrorBody",
    "ErrorDetails",
    "IdempotencyEntry",
    "JobError",
    "JobProgress",
    "JobRecord",
    "JobStatus",
    "JobStatusDocument",
    "JsonChapter",
    "JsonChapters",
    "NarrationIndex",
    "NarrationMode",
    "NarrationResponse",
    "ScriptCacheEntry",
    "ScriptChapter",
    "ScriptDocument",
    "ScriptTurn",
    "SegmentReport",
    "ShowDetails",
    "ShowList",
    "ShowRecord",
    "ShowView",
    "Speaker",
    "TranscriptDocument",
    "TurnReport",
    "Usage",
    "Visibility",
    "iso_timestamp",
    "job_timestamp",
]

JOB_ID_PATTERN: Final = "^[0-9a-f]{32}$"
"""A job id: 32 lower-case hex digits (a random UUID)."""

Visibility = Literal["important", "advanced", "internal"]
"""``x-ms-visibility``: how prominently Power Automate shows a field."""
NarrationMode = Literal["read", "episode", "script", "conversation"]
"""The same values as :data:`podcast.models.Mode` (a test keeps them equal)."""
JobStatus = Literal["queued", "running", "succeeded", "failed"]
CacheState = Literal["pending", "succeeded"]


# --- Timestamps and shared field types ---------------------------------------------------------


def iso_timestamp(moment: datetime) -> str:
    """UTC ISO 8601 with ``Z`` as narrations write it: ``2026-11-25T11:10:37Z`` (microseconds
    only when there are any)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def job_timestamp(moment: datetime) -> str:
    """UTC ISO 8601 with milliseconds and ``Z`` as the job service writes it:
    ``2026-11-25T11:10:37.000Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` header (a list, weak or strong, or ``*``) names ``etag``
    (RFC 9110's weak comparison)."""
    candidates = (part.strip().removeprefix("W/") for part in if_none_match.split(","))
    return any(candidate in (etag.removeprefix("W/"), "*") for candidate in candidates)


def _parse_timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _now() -> datetime:
    return datetime.now(UTC)


def _round1(value: float) -> float:
    return round(value, 1)


def _round3(value: float) -> float:
    return round(value, 3)


def _round4(value: float) -> float:
    return round(value, 4)


def _is_none(value: object) -> bool:
    return value is None


def _is_zero(value: object) -> bool:
    return value == 0


Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
"""A UTC ISO 8601 timestamp, kept as written (see :func:`iso_timestamp`, :func:`job_timestamp`)."""
Seconds = Annotated[float, AfterValidator(_round3)]
"""Seconds of audio, rounded to the millisecond."""
Similarity = Annotated[float, AfterValidator(_round4)]
"""Word similarity, 0 to 1, rounded to four places."""
Voice = Annotated[str, WithJsonSchema({"type": "string", "enum": list(REALTIME_VOICES)})]
"""A Realtime voice. Not checked on reading, so a stored document outlives a voice's removal."""

# defer_build: a model's validator is built on its first use, not at import (cold starts).
_FROZEN: Final = ConfigDict(frozen=True, defer_build=True)
_DOCUMENT: Final = ConfigDict(frozen=True, json_schema_serialization_defaults_required=True, defer_build=True)
"""A document that always carries every key (the published schema lists them as required)."""


# --- Narrations ----------------------------------------------------------------------------


class Usage(BaseModel):
    """Tokens billed by Azure OpenAI; adds up across responses (``a + b``).

    ``total_tokens`` is stored (so it keeps its place among the keys) but always equals
    ``input_tokens + output_tokens``: it is computed when not given, and a different value
    is refused.
    """

    model_config = _FROZEN

    input_tokens: int = Field(default=0, description="Input tokens (text and audio).")
    output_tokens: int = Field(default=0, description="Output tokens (text and audio).")
    total_tokens: int = Field(default=0, description="Input plus output tokens.")
    input_text_tokens: int = Field(default=0, description="Input text tokens.")
    input_audio_tokens: int = Field(default=0, description="Input audio tokens.")
    input_cached_tokens: int = Field(default=0, description="Input tokens served from the cache.")
    output_text_tokens: int = Field(default=0, description="Output text (transcript) tokens.")
    output_audio_tokens: int = Field(
        default=0, description="Output audio tokens (about 20 a second of audio)."
    )

    @model_validator(mode="after")
    def _total(self) -> Self:
        expected = self.input_tokens + self.output_tokens
        if "total_tokens" not in self.model_fields_set:
            object.__setattr__(self, "total_tokens", expected)
        elif self.total_tokens != expected:
            raise ValueError(
                f"total_tokens is {self.total_tokens}, not input plus output tokens ({expected})"
            )
        return self

    def __add__(self, other: Usage) -> Usage:
        names = [name for name in type(self).model_fields if name != "total_tokens"]
        return Usage(**{name: getattr(self, name) + getattr(other, name) for name in names})


class SegmentReport(BaseModel):
    """One segment of a narration: where it sits in the audio and how faithful it was."""

    model_config = _DOCUMENT

    index: int = Field(
        description="Position of the segment, from 0.", json_schema_extra={"x-ms-summary": "Index"}
    )
    start_seconds: Seconds = Field(
        description="Where the segment starts in the audio.",
        json_schema_extra={"x-ms-summary": "Start (Seconds)"},
    )
    end_seconds: Seconds = Field(
        description="Where the segment ends in the audio.",
        json_schema_extra={"x-ms-summary": "End (Seconds)"},
    )
    transcript: str = Field(
        description="What was said in the segment, as the model transcribed its own audio.",
        json_schema_extra={"x-ms-summary": "Transcript"},
    )
    similarity: Similarity | None = Field(
        description="Word similarity of the segment's transcript to its text, 0 to 1 (null in episode mode).",
        json_schema_extra={"x-ms-summary": "Similarity"},
    )
    attempts: int = Field(
        description="Realtime responses it took (more than 1 after a retry).",
        json_schema_extra={"x-ms-summary": "Attempts"},
    )
    splits: int = Field(
        default=0,
        description="How many times the segment was halved after hitting the output-token cap.",
        json_schema_extra={"x-ms-summary": "Splits"},
    )


# --- Fields of the 200 body that the transcript document shares (one description each) ---

_Id = Annotated[
    str,
    Field(
        description="The narration's id (the base name of its blobs).",
        json_schema_extra={"x-ms-summary": "Narration ID"},
    ),
]
_Container = Annotated[
    str,
    Field(
        description="The Blob Storage container holding the audio.",
        json_schema_extra={"x-ms-summary": "Container"},
    ),
]
_BlobName = Annotated[
    str, Field(description="The WAV's blob name.", json_schema_extra={"x-ms-summary": "Audio Blob Name"})
]
_Transcript = Annotated[
    str,
    Field(
        description="What was said, as the model transcribed its own audio.",
        json_schema_extra={"x-ms-summary": "Transcript"},
    ),
]
_DurationSeconds = Annotated[
    Seconds,
    Field(description="Length of the audio.", json_schema_extra={"x-ms-summary": "Duration (Seconds)"}),
]
_Voice = Annotated[Voice, Field(description="The voice used.", json_schema_extra={"x-ms-summary": "Voice"})]
_NarrationVoice = Annotated[
    Voice,
    Field(
        description="The voice used; for a script or conversation, its first speaker's (each "
        "speaker's voice is in the transcript document's speakers).",
        json_schema_extra={"x-ms-summary": "Voice"},
    ),
]
_Mode = Annotated[
    NarrationMode,
    Field(description="read, episode or conversation.", json_schema_extra={"x-ms-summary": "Mode"}),
]
_Style = Annotated[str, Field(description="The delivery style.", json_schema_extra={"x-ms-summary": "Style"})]
_Language = Annotated[
    str | None,
    Field(
        description="The BCP 47 tag the narration was pinned to, if any.",
        json_schema_extra={"x-ms-summary": "Language"},
    ),
]
_Title = Annotated[
    str | None, Field(description="The title, if any.", json_schema_extra={"x-ms-summary": "Title"})
]
AudioFormat = Literal["wav", "mp3"]
"""The stored audio's format: WAV (PCM16) or MP3 (mono, constant bitrate)."""
_Format = Annotated[
    AudioFormat,
    Field(
        description="wav (24 kHz 16-bit mono PCM) or mp3 (24 kHz mono, constant bitrate).",
        json_schema_extra={"x-ms-summary": "Format"},
    ),
]
_CaptionsBlobName = Annotated[
    str | None,
    Field(
        exclude_if=_is_none,
        description="The WebVTT captions' blob name (beside the audio).",
        json_schema_extra={"x-ms-summary": "Captions Blob Name"},
    ),
]
_SrtBlobName = Annotated[
    str | None,
    Field(
        exclude_if=_is_none,
        description="The SRT captions' blob name (beside the audio).",
        json_schema_extra={"x-ms-summary": "SRT Captions Blob Name"},
    ),
]
_ChaptersBlobName = Annotated[
    str | None,
    Field(
        exclude_if=_is_none,
        description="The chapters' blob name (beside the audio; Podcasting 2.0 JSON chapters), "
        "when the narration has chapters.",
        json_schema_extra={"x-ms-summary": "Chapters Blob Name"},
    ),
]
_Loudness = Annotated[
    float | None,
    AfterValidator(lambda value: None if value is None else round(value, 1)),
    Field(
        exclude_if=_is_none,
        description="Integrated loudness of the audio in LUFS (ITU-R BS.1770; the target is -16), "
        "measured before MP3 encoding (an MP3 decodes within about half a LU of it).",
        json_schema_extra={"x-ms-summary": "Loudness (LUFS)"},
    ),
]
_SampleRate = Annotated[
    int,
    Field(
        description="Samples a second (24,000; 16-bit mono PCM).",
        json_schema_extra={"x-ms-summary": "Sample Rate"},
    ),
]
_Characters = Annotated[
    int,
    Field(description="Characters in the narrated text.", json_schema_extra={"x-ms-summary": "Characters"}),
]
_Fidelity = Annotated[
    Similarity | None,
    Field(
        description="Word similarity of the transcript to the text, 0 to 1 (null in episode mode).",
        json_schema_extra={"x-ms-summary": "Fidelity"},
    ),
]
_Warnings = Annotated[
    tuple[str, ...],
    Field(
        description="Anything worth knowing (e.g. low fidelity kept by policy).",
        json_schema_extra={"x-ms-summary": "Warnings"},
    ),
]
_Usage = Annotated[
    Usage, Field(description="Tokens billed by Azure OpenAI.", json_schema_extra={"x-ms-summary": "Usage"})
]


class NarrationResponse(BaseModel):
    """The JSON body of a successful ``POST /api/narrations`` (and of a finished job).

    Job records and the content cache keep it with ``audio_url`` and ``expires_at`` null
    (:meth:`without_link`); each answer signs a fresh link (:meth:`with_link`). The
    published schema describes the HTTP answer, which always has the link, so those two are
    not marked nullable there.
    """

    model_config = _DOCUMENT

    id: _Id
    audio_url: Annotated[str | None, WithJsonSchema({"type": "string", "format": "uri"})] = Field(
        description="Read-only SAS link to the WAV, valid until expires_at.",
        json_schema_extra={"x-ms-summary": "Audio URL"},
    )
    expires_at: Annotated[str | None, WithJsonSchema({"type": "string", "format": "date-time"})] = Field(
        description="When audio_url stops working (UTC).",
        json_schema_extra={"x-ms-summary": "Link Expires At"},
    )
    container: _Container
    blob_name: _BlobName
    transcript_blob_name: str = Field(
        description="The transcript document's blob name (the same fields, without the link, plus "
        "segment timings).",
        json_schema_extra={"x-ms-summary": "Transcript Blob Name"},
    )
    transcript: _Transcript
    duration_seconds: _DurationSeconds
    voice: _NarrationVoice
    mode: _Mode
    style: _Style
    language: _Language
    title: _Title
    format: _Format = "wav"
    sample_rate: _SampleRate
    characters: _Characters
    segments: int = Field(
        description="Segments the text was narrated in (one Realtime session each).",
        json_schema_extra={"x-ms-summary": "Segments"},
    )
    fidelity: _Fidelity
    warnings: _Warnings
    usage: _Usage
    captions_url: Annotated[str | None, WithJsonSchema({"type": "string", "format": "uri"})] = Field(
        default=None,
        exclude_if=_is_none,
        description="Read-only SAS link to the WebVTT captions, valid until expires_at.",
        json_schema_extra={"x-ms-summary": "Captions URL"},
    )
    captions_blob_name: _CaptionsBlobName = None
    srt_blob_name: _SrtBlobName = None
    chapters_blob_name: _ChaptersBlobName = None
    loudness_lufs: _Loudness = None

    def without_link(self) -> NarrationResponse:
        """The body as job records and the cache keep it: ``audio_url`` and ``expires_at`` null
        (and no ``captions_url``)."""
        return self.model_copy(update={"audio_url": None, "expires_at": None, "captions_url": None})

    def with_link(self, audio_url: str, expires_at: datetime | str) -> NarrationResponse:
        """The body with a freshly signed link (``expires_at`` a UTC datetime or a timestamp)."""
        expiry = iso_timestamp(expires_at) if isinstance(expires_at, datetime) else expires_at
        return self.model_copy(update={"audio_url": audio_url, "expires_at": expiry})


class NarrationIndex(BaseModel):
    """``narrations/<id>.json`` in the jobs container: a stored narration found by its id alone
    (``GET /api/narrations/{id}`` and its files, for synchronous narrations too)."""

    model_config = _DOCUMENT

    result: NarrationResponse = Field(
        description="The narration's 200 body, without its link.",
        json_schema_extra={"x-ms-summary": "Result"},
    )
    sas_expiry_minutes: int = Field(
        description="Minutes each link signed for it stays valid (the request's sas_expiry_minutes).",
        json_schema_extra={"x-ms-summary": "Link Lifetime (Minutes)"},
    )


class DocumentSource(BaseModel):
    """The uploaded document a narration was made from (blob trigger only)."""

    model_config = _DOCUMENT

    blob_name: str = Field(
        description="The uploaded blob's name in the input container.",
        json_schema_extra={"x-ms-summary": "Source Blob Name"},
    )
    etag: str | None = Field(
        description="The uploaded blob's ETag, if known.", json_schema_extra={"x-ms-summary": "ETag"}
    )
    sha256: str = Field(
        description="SHA-256 (hex) of the uploaded content; the same content is narrated once.",
        json_schema_extra={"x-ms-summary": "SHA-256"},
    )
    bytes: int = Field(
        description="Size of the uploaded content.", json_schema_extra={"x-ms-summary": "Bytes"}
    )


class NarrationChapter(BaseModel):
    """A chapter of a narration: its title and where it starts and ends in the audio."""

    model_config = _DOCUMENT

    title: str = Field(description="The chapter's title.", json_schema_extra={"x-ms-summary": "Title"})
    start: Seconds = Field(
        description="Where the chapter starts in the audio (seconds).",
        json_schema_extra={"x-ms-summary": "Start (Seconds)"},
    )
    end: Seconds = Field(
        description="Where it ends: the next chapter's start, or the end of the audio (seconds).",
        json_schema_extra={"x-ms-summary": "End (Seconds)"},
    )


class TranscriptDocument(BaseModel):
    """The JSON stored beside each WAV (``<base>.json``): the response's fields without the
    link, when it was made, and the segments instead of their count; ``source`` only for
    uploaded documents."""

    model_config = _DOCUMENT

    id: _Id
    container: _Container
    blob_name: _BlobName
    transcript_blob_name: str = Field(
        description="This document's blob name.", json_schema_extra={"x-ms-summary": "Transcript Blob Name"}
    )
    transcript: _Transcript
    duration_seconds: _DurationSeconds
    voice: _NarrationVoice
    mode: _Mode
    style: _Style
    language: _Language
    title: _Title
    format: _Format = "wav"
    sample_rate: _SampleRate
    characters: _Characters
    segments: tuple[SegmentReport, ...] = Field(
        description="The segments (one Realtime session each): timings, transcript and fidelity.",
        json_schema_extra={"x-ms-summary": "Segments"},
    )
    fidelity: _Fidelity
    warnings: _Warnings
    usage: _Usage
    created_at: Timestamp = Field(
        description="When the narration was started (UTC).", json_schema_extra={"x-ms-summary": "Created At"}
    )
    min_fidelity: float | None = Field(
        description="The fidelity a segment had to reach (NARRATION_MIN_FIDELITY), if any.",
        json_schema_extra={"x-ms-summary": "Minimum Fidelity"},
    )
    source: DocumentSource | None = Field(
        default=None,
        exclude_if=_is_none,
        description="The uploaded document narrated (absent for HTTP requests).",
        json_schema_extra={"x-ms-summary": "Source"},
    )
    captions_blob_name: _CaptionsBlobName = None
    srt_blob_name: _SrtBlobName = None
    chapters_blob_name: _ChaptersBlobName = None
    loudness_lufs: _Loudness = None
    speakers: tuple[Speaker, ...] | None = Field(
        default=None,
        exclude_if=_is_none,
        description="A script's speakers (absent for other modes).",
        json_schema_extra={"x-ms-summary": "Speakers"},
    )
    turns: tuple[TurnReport, ...] | None = Field(
        default=None,
        exclude_if=_is_none,
        description="A script's turns in order: speaker, voice, start and end in the audio, what was said "
        "(absent for other modes).",
        json_schema_extra={"x-ms-summary": "Turns"},
    )
    chapters: tuple[NarrationChapter, ...] | None = Field(
        default=None,
        exclude_if=_is_none,
        description="The chapters, in order (the MP3's ID3 chapters; for a WAV, the same list): "
        "title, start and end in the audio. Absent when there are none.",
        json_schema_extra={"x-ms-summary": "Chapters"},
    )

    @classmethod
    def from_response(
        cls,
        response: NarrationResponse,
        *,
        created_at: datetime | str,
        min_fidelity: float | None,
        segments: tuple[SegmentReport, ...] | list[SegmentReport],
        source: DocumentSource | Mapping[str, Any] | None = None,
        speakers: Sequence[Speaker] | None = None,
        turns: Sequence[TurnReport] | None = None,
        chapters: Sequence[NarrationChapter] = (),
    ) -> TranscriptDocument:
        """The transcript document of ``response`` (whose link, if any, is left out); a
        script's ``speakers`` and ``turns``; the ``chapters`` (none: left out)."""
        fields = response.model_dump(exclude={"audio_url", "expires_at", "captions_url"})
        return cls.model_validate(
            {
                **fields,
                "segments": tuple(segments),
                "created_at": iso_timestamp(created_at) if isinstance(created_at, datetime) else created_at,
                "min_fidelity": min_fidelity,
                "source": source,
                "speakers": None if speakers is None else tuple(speakers),
                "turns": None if turns is None else tuple(turns),
                "chapters": tuple(chapters) or None,
            }
        )


# --- Conversations ---------------------------------------------------------------------------


class Speaker(BaseModel):
    """One voice of a conversation: who speaks (the label in transcripts and captions) and with
    which Realtime voice. Request validation (names unique, 1 to 4 speakers) is in
    :mod:`podcast.models`; this is the stored and returned shape."""

    model_config = _DOCUMENT

    name: str = Field(
        description="The speaker's name, as it labels the transcript and the captions.",
        json_schema_extra={"x-ms-summary": "Name"},
    )
    voice: _Voice
    description: str | None = Field(
        default=None,
        description="A short persona the script writer follows (not read aloud).",
        json_schema_extra={"x-ms-summary": "Description"},
    )


class ScriptTurn(BaseModel):
    """One turn of a script: what one speaker says, read verbatim."""

    model_config = _DOCUMENT

    speaker: str = Field(
        description="The name of the speaker who says the turn (one of the speakers).",
        json_schema_extra={"x-ms-summary": "Speaker"},
    )
    text: str = Field(description="What the speaker says.", json_schema_extra={"x-ms-summary": "Text"})


class ScriptChapter(BaseModel):
    """A chapter of a script: its title and the index of the turn that opens it."""

    model_config = _DOCUMENT

    title: str = Field(description="The chapter's title.", json_schema_extra={"x-ms-summary": "Title"})
    turn: int = Field(
        ge=0,
        description="Index (from 0) of the script turn that opens the chapter.",
        json_schema_extra={"x-ms-summary": "First Turn"},
    )


class TurnReport(BaseModel):
    """One voiced turn of a script: who said it, where it sits in the audio, what was said."""

    model_config = _DOCUMENT

    index: int = Field(
        description="Position of the turn in the script, from 0.", json_schema_extra={"x-ms-summary": "Index"}
    )
    speaker: str = Field(description="The speaker's name.", json_schema_extra={"x-ms-summary": "Speaker"})
    voice: _Voice
    start: Seconds = Field(
        description="Where the turn's speech starts in the audio (seconds).",
        json_schema_extra={"x-ms-summary": "Start (Seconds)"},
    )
    end: Seconds = Field(
        description="Where the turn's speech ends in the audio (seconds; the pause after it follows).",
        json_schema_extra={"x-ms-summary": "End (Seconds)"},
    )
    text: str = Field(
        description="What was said in the turn, as the model transcribed its own audio.",
        json_schema_extra={"x-ms-summary": "Text"},
    )


class ScriptDocument(BaseModel):
    """A conversation script: what ``POST /api/scripts`` returns and what a narration request
    accepts back as ``speakers`` + ``script`` (+ ``chapters``) to be voiced verbatim."""

    model_config = _DOCUMENT

    title: str | None = Field(
        default=None, description="The episode's title, if any.", json_schema_extra={"x-ms-summary": "Title"}
    )
    speakers: list[Speaker] = Field(
        description="The speakers, 1 to 4.", json_schema_extra={"x-ms-summary": "Speakers"}
    )
    script: list[ScriptTurn] = Field(
        description="The turns in the order they are spoken.", json_schema_extra={"x-ms-summary": "Script"}
    )
    chapters: list[ScriptChapter] = Field(
        default_factory=list,
        description="Chapters from the outline, in order (empty when there is none).",
        json_schema_extra={"x-ms-summary": "Chapters"},
    )


# --- Errors --------------------------------------------------------------------------------


class ErrorDetails(BaseModel):
    """What went wrong. Extra keys that some errors add (``upstream_code``, ``reason``) are
    kept; ``setting`` is present only for a missing or malformed setting."""

    model_config = ConfigDict(frozen=True, extra="allow", defer_build=True)

    code: str = Field(
        description="Stable, machine-readable (e.g. invalid_request, rate_limited).",
        json_schema_extra={"x-ms-summary": "Error Code"},
    )
    message: str = Field(
        description="What went wrong and what is allowed; never repeats the text.",
        json_schema_extra={"x-ms-summary": "Error Message"},
    )
    field: str | None = Field(
        description="The request field or header at fault, if any.",
        json_schema_extra={"x-ms-summary": "Field"},
    )
    setting: Annotated[str | None, WithJsonSchema({"type": "string"})] = Field(
        default=None,
        exclude_if=_is_none,
        description="The missing or malformed app setting (not_configured).",
        json_schema_extra={"x-ms-summary": "Setting"},
    )


class Reportable(Protocol):
    """An error that can say how it is reported (:class:`podcast.errors.PodcastError`)."""

    def body(self) -> dict[str, Any]: ...


class ErrorBody(BaseModel):
    """Every error body: ``{"error": {"code", "message", "field", ...}}``."""

    model_config = _FROZEN

    error: ErrorDetails

    @classmethod
    def from_error(cls, error: Reportable) -> ErrorBody:
        """The body for ``error`` (:meth:`podcast.errors.PodcastError.body`)."""
        return cls.model_validate(error.body())


# --- Jobs ----------------------------------------------------------------------------------


class JobProgress(BaseModel):
    """Segments narrated so far, of how many (``segments_total`` null until known)."""

    model_config = _FROZEN

    segments_done: int = Field(default=0, json_schema_extra={"x-ms-summary": "Segments Done"})
    segments_total: int | None = Field(default=None, json_schema_extra={"x-ms-summary": "Segments Total"})


class JobStatusDocument(BaseModel):
    """The JSON body of a 202 (and of a ``POST`` that made or found a job)."""

    model_config = _DOCUMENT

    id: str = Field(
        pattern=JOB_ID_PATTERN,
        description="The job's id; its status URL is /api/narrations/{id}.",
        json_schema_extra={"x-ms-summary": "Job ID"},
    )
    status: JobStatus = Field(
        description="queued, running, succeeded or failed. The status URL answers 202 until the job is "
        "succeeded (200, the narration) or failed (the error and its status).",
        json_schema_extra={"x-ms-summary": "Status"},
    )
    progress: JobProgress = Field(
        description="Segments narrated so far, of how many (null until known).",
        json_schema_extra={"x-ms-summary": "Progress"},
    )
    estimated_audio_seconds: Annotated[float, AfterValidator(_round1)] = Field(
        description="Expected audio length: 150 words a minute, or the episode length.",
        json_schema_extra={"x-ms-summary": "Estimated Audio (Seconds)"},
    )
    created_at: Timestamp = Field(
        description="When the job was accepted (UTC).", json_schema_extra={"x-ms-summary": "Created At"}
    )
    updated_at: Timestamp = Field(
        description="The job's last change or heartbeat (UTC).",
        json_schema_extra={"x-ms-summary": "Updated At"},
    )

    @classmethod
    def from_record(cls, record: JobRecord) -> JobStatusDocument:
        """The status of ``record`` (what ``status_document`` builds)."""
        return cls(
            id=record.id,
            status=record.status,
            progress=JobProgress(segments_done=record.segments_done, segments_total=record.segments_total),
            estimated_audio_seconds=record.estimated_audio_seconds,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class JobError(BaseModel):
    """How a job failed: the HTTP status and body its status URL answers with."""

    model_config = _DOCUMENT

    status: int = Field(
        description="The HTTP status of the failure.", json_schema_extra={"x-ms-summary": "Status"}
    )
    body: ErrorBody = Field(description="The error body.", json_schema_extra={"x-ms-summary": "Error"})
    retry_after_seconds: int | None = Field(
        default=None,
        exclude_if=_is_none,
        description="For a transient failure: the Retry-After (seconds) its answer carries, as the "
        "synchronous call's would (submitting the request again may then succeed).",
        json_schema_extra={"x-ms-summary": "Retry After"},
    )


class JobRecord(BaseModel):
    """A job as stored in ``jobs/<id>.json`` (mutable: the job service rewrites it as the job moves).

    ``status`` moves ``queued`` → ``running`` → ``succeeded`` or ``failed`` (back to
    ``queued`` after a transient failure that the host will retry, or once when the job was
    stuck, :meth:`is_stuck`: see :mod:`podcast.services.jobs` for who may move it when). ``result`` is the
    200 body without its link (:meth:`NarrationResponse.without_link`); ``error`` the status
    and body a failed job answers with. A *follower* (``leader`` set) shares the fate of the
    job narrating the same content; ``reused_from`` names the job whose audio a reused
    result is.
    """

    model_config = ConfigDict(
        validate_assignment=True, json_schema_serialization_defaults_required=True, defer_build=True
    )

    id: str = Field(description="The job's id (32 hex digits).", json_schema_extra={"x-ms-summary": "Job ID"})
    status: JobStatus = Field(
        description="queued, running, succeeded or failed.", json_schema_extra={"x-ms-summary": "Status"}
    )
    created_at: Timestamp = Field(
        description="When the job was accepted (UTC).", json_schema_extra={"x-ms-summary": "Created At"}
    )
    updated_at: Timestamp = Field(
        description="The job's last change or heartbeat (UTC).",
        json_schema_extra={"x-ms-summary": "Updated At"},
    )
    estimated_audio_seconds: float = Field(
        description="Expected audio length: 150 words a minute, or the episode length.",
        json_schema_extra={"x-ms-summary": "Estimated Audio (Seconds)"},
    )
    sas_expiry_minutes: int = Field(
        description="Minutes each signed link to the result stays valid.",
        json_schema_extra={"x-ms-summary": "Link Lifetime (Minutes)"},
    )
    cache_key: str | None = Field(
        default=None,
        description="The content-reuse key of the request (null when not looked up).",
        json_schema_extra={"x-ms-summary": "Cache Key"},
    )
    reuse: bool = Field(
        default=True,
        description="Whether a finished narration of the same content may answer (not with Cache-Control).",
        json_schema_extra={"x-ms-summary": "Reuse"},
    )
    store_result: bool = Field(
        default=True,
        description="Whether the result goes into the content cache (not with Cache-Control: no-store).",
        json_schema_extra={"x-ms-summary": "Store Result"},
    )
    leader: str | None = Field(
        default=None,
        description="The job narrating the same content that this follower waits for, if any.",
        json_schema_extra={"x-ms-summary": "Leader"},
    )
    reused_from: str | None = Field(
        default=None,
        description="The job whose audio the result reuses, if any.",
        json_schema_extra={"x-ms-summary": "Reused From"},
    )
    attempts: int = Field(
        default=0,
        description="The dequeue count of the delivery that last started the job: how many "
        "times the host had delivered that queue message by then.",
        json_schema_extra={"x-ms-summary": "Attempts"},
    )
    message_id: str | None = Field(
        default=None,
        exclude_if=_is_none,
        description="The id of the queue message whose delivery last started the job (absent "
        "when unknown); attempts counts that message's deliveries.",
        json_schema_extra={"x-ms-summary": "Message ID"},
    )
    requeues: int = Field(
        default=0,
        exclude_if=_is_zero,
        description="Times the job was put on the queue again because it made no progress "
        "(at most once; absent when never).",
        json_schema_extra={"x-ms-summary": "Re-enqueued"},
    )
    started_at: Timestamp | None = Field(
        default=None,
        description="When the worker last started it (UTC).",
        json_schema_extra={"x-ms-summary": "Started At"},
    )
    heartbeat_at: Timestamp | None = Field(
        default=None,
        description="The worker's last heartbeat (UTC).",
        json_schema_extra={"x-ms-summary": "Heartbeat At"},
    )
    finished_at: Timestamp | None = Field(
        default=None,
        description="When it succeeded or failed (UTC).",
        json_schema_extra={"x-ms-summary": "Finished At"},
    )
    segments_done: int = Field(
        default=0,
        description="Segments narrated so far.",
        json_schema_extra={"x-ms-summary": "Segments Done"},
    )
    segments_total: int | None = Field(
        default=None,
        description="Segments in all (null until known).",
        json_schema_extra={"x-ms-summary": "Segments Total"},
    )
    last_error: ErrorDetails | None = Field(
        default=None,
        description="The transient error the last attempt ended with, if it is to be retried.",
        json_schema_extra={"x-ms-summary": "Last Error"},
    )
    result: NarrationResponse | None = Field(
        default=None,
        description="The narration, without its link, once succeeded.",
        json_schema_extra={"x-ms-summary": "Result"},
    )
    error: JobError | None = Field(
        default=None,
        description="The status and body of the failure, once failed.",
        json_schema_extra={"x-ms-summary": "Error"},
    )

    @field_validator("last_error", mode="before")
    @classmethod
    def _complete_last_error(cls, value: Any) -> Any:
        # Earlier versions recorded an unexpected failure as {"code": "internal_error"} alone.
        if isinstance(value, Mapping) and "code" in value:
            return {"message": "an unexpected error occurred", "field": None, **value}
        return value

    def touch(self, now: datetime | None = None) -> None:
        """Record a change (or a heartbeat) at ``now``."""
        self.updated_at = job_timestamp(now or _now())

    def finish_with_result(
        self, result: NarrationResponse | Mapping[str, Any], *, reused_from: str | None = None
    ) -> None:
        """Mark the job succeeded with ``result`` (kept as given: pass it without its link)."""
        moment = _now()
        self.status = "succeeded"
        self.result = NarrationResponse.model_validate(result)
        self.reused_from = reused_from
        self.error = None
        self.finished_at = job_timestamp(moment)
        if self.segments_total is not None:
            self.segments_done = self.segments_total
        self.touch(moment)

    def finish_with_error(
        self, body: ErrorBody | Mapping[str, Any], *, status: int, retry_after_seconds: int | None = None
    ) -> None:
        """Mark the job failed: its status URL answers ``status`` with ``body`` (an error body,
        e.g. ``ErrorBody.from_error(error)`` with ``status=error.http_status``) and, for a
        transient failure, ``Retry-After: retry_after_seconds``."""
        moment = _now()
        self.status = "failed"
        self.error = JobError(
            status=int(status), body=ErrorBody.model_validate(body), retry_after_seconds=retry_after_seconds
        )
        self.finished_at = job_timestamp(moment)
        self.touch(moment)

    def is_stale(self, stale_seconds: float, now: datetime | None = None) -> bool:
        """``running`` with no heartbeat or progress for longer than ``stale_seconds``."""
        if self.status != "running":
            return False
        last = _parse_timestamp(self.heartbeat_at) or _parse_timestamp(self.updated_at)
        if last is None:
            return True
        return ((now or _now()) - last).total_seconds() > stale_seconds

    def is_stuck(self, stale_seconds: float, now: datetime | None = None) -> bool:
        """Not finished and making no progress: ``running`` and stale (:meth:`is_stale`), or
        ``queued`` with no change for longer than ``stale_seconds`` (no delivery started it).
        A follower is never stuck itself: it follows its leader."""
        if self.leader is not None:
            return False
        if self.status == "running":
            return self.is_stale(stale_seconds, now)
        if self.status != "queued":
            return False
        last = _parse_timestamp(self.updated_at)
        if last is None:
            return True
        return ((now or _now()) - last).total_seconds() > stale_seconds

    def status_document(self) -> JobStatusDocument:
        """The 202 body for this job."""
        return JobStatusDocument.from_record(self)


class CacheEntry(BaseModel):
    """``cache/<content key>.json``: a claim by the job narrating that content (``pending``,
    no ``result`` key) or the finished result, without its link (``succeeded``)."""

    model_config = _DOCUMENT

    state: CacheState = Field(
        description="pending or succeeded.", json_schema_extra={"x-ms-summary": "State"}
    )
    job_id: str | None = Field(
        description="The job that claimed or made it (null for a synchronous narration).",
        json_schema_extra={"x-ms-summary": "Job ID"},
    )
    updated_at: Timestamp = Field(
        description="When the entry was written (UTC).", json_schema_extra={"x-ms-summary": "Updated At"}
    )
    result: NarrationResponse | None = Field(
        default=None,
        exclude_if=_is_none,
        description="The narration, without its link (succeeded only).",
        json_schema_extra={"x-ms-summary": "Result"},
    )

    @model_validator(mode="after")
    def _result_when_succeeded(self) -> Self:
        if self.state == "succeeded" and self.result is None:
            raise ValueError("a succeeded cache entry needs its result")
        return self


class IdempotencyEntry(BaseModel):
    """``idempotency/<sha256 of the key>.json``: the job an ``Idempotency-Key`` made."""

    model_config = _DOCUMENT

    job_id: str = Field(description="The job the key made.", json_schema_extra={"x-ms-summary": "Job ID"})
    request_hash: str = Field(
        description="SHA-256 of the whole validated request; the same key with another request is a 422.",
        json_schema_extra={"x-ms-summary": "Request Hash"},
    )
    created_at: Timestamp = Field(
        description="When the key was first used (UTC).", json_schema_extra={"x-ms-summary": "Created At"}
    )


class DocumentClaim(BaseModel):
    """``documents/<sha256 of the source name>.json`` in the jobs container: the one delivery
    narrating an uploaded document's version (see :mod:`podcast.services.documents`)."""

    model_config = _DOCUMENT

    version: str = Field(description="The source blob's ETag that this delivery narrates.")
    sha256: str = Field(description="SHA-256 of that version's bytes.")
    attempt: str = Field(description="A random id of the claiming delivery.")
    expires_at: Timestamp = Field(description="When the claim lapses unless renewed (UTC).")


# --- Shows and podcast feeds -------------------------------------------------------------------


class ShowDetails(BaseModel):
    """A show's own settings: what its feed's channel says about it (``PUT /api/shows/{show}``'s
    body; :class:`podcast.models.ShowRequest` validates it)."""

    model_config = _DOCUMENT

    title: str = Field(
        description="The show's title (at most 200 characters).",
        json_schema_extra={"x-ms-summary": "Title", "x-ms-visibility": "important"},
    )
    description: str | None = Field(
        default=None,
        description="What the show is about (at most 4,000 characters; line breaks allowed).",
        json_schema_extra={"x-ms-summary": "Description", "x-ms-visibility": "important"},
    )
    author: str | None = Field(
        default=None,
        description="Who makes the show (itunes:author; at most 200 characters).",
        json_schema_extra={"x-ms-summary": "Author", "x-ms-visibility": "advanced"},
    )
    language: str | None = Field(
        default=None,
        description="The show's language, a BCP 47 tag such as en or es-MX.",
        json_schema_extra={"x-ms-summary": "Language", "x-ms-visibility": "advanced"},
    )
    artwork_url: str | None = Field(
        default=None,
        description="An https URL of the show's square artwork (itunes:image; 1400 to 3000 pixels).",
        json_schema_extra={"x-ms-summary": "Artwork URL", "x-ms-visibility": "advanced"},
    )
    explicit: bool = Field(
        default=False,
        description="Whether the show contains explicit content (itunes:explicit).",
        json_schema_extra={"x-ms-summary": "Explicit", "x-ms-visibility": "advanced"},
    )
    category: str | None = Field(
        default=None,
        description="An Apple Podcasts category such as News or Technology, or a category and "
        "subcategory as 'Arts > Books' (itunes:category; Apple's spelling is filled in).",
        json_schema_extra={"x-ms-summary": "Category", "x-ms-visibility": "advanced"},
    )
    owner_email: str | None = Field(
        default=None,
        description="The owner's e-mail address (itunes:owner), which directories use to verify the show.",
        json_schema_extra={"x-ms-summary": "Owner E-mail", "x-ms-visibility": "advanced"},
    )


class ShowRecord(BaseModel):
    """``shows/<slug>/show.json`` in the jobs container: a show's settings and the SHA-256 of
    its current feed token (the token itself is never stored)."""

    model_config = _DOCUMENT

    slug: str
    details: ShowDetails
    token_sha256: str
    """Hex SHA-256 of the current feed token; rotating the token replaces it."""
    created_at: Timestamp
    updated_at: Timestamp


class ShowView(ShowDetails):
    """A show as ``PUT``/``GET /api/shows/{show}`` and the token rotation answer it."""

    slug: str = Field(
        description="The show's name in URLs and in narration requests' show field.",
        json_schema_extra={"x-ms-summary": "Show"},
    )
    feed_url: str | None = Field(
        description="The feed's URL with its token, for a podcast app: given when the show is "
        "created and when its token is rotated, null otherwise (only the token's hash is kept).",
        json_schema_extra={"x-ms-summary": "Feed URL"},
    )
    created_at: Timestamp = Field(
        description="When the show was created (UTC).", json_schema_extra={"x-ms-summary": "Created At"}
    )
    updated_at: Timestamp = Field(
        description="When the show's settings or token last changed (UTC).",
        json_schema_extra={"x-ms-summary": "Updated At"},
    )


class ShowList(BaseModel):
    """``GET /api/shows``: every show, by slug."""

    model_config = _DOCUMENT

    shows: list[ShowView] = Field(
        description="The shows, by slug (without feed URLs).", json_schema_extra={"x-ms-summary": "Shows"}
    )


class EpisodeChapter(BaseModel):
    """A chapter of an episode as its feed item lists it (Podlove Simple Chapters)."""

    model_config = _DOCUMENT

    title: str
    start_seconds: Seconds


class JsonChapter(BaseModel):
    """One chapter of a :class:`JsonChapters` file."""

    model_config = _FROZEN

    startTime: Seconds  # the format's own (camelCase) names
    endTime: Seconds
    title: str


class JsonChapters(BaseModel):
    """``<base>.chapters.json`` beside a narration's audio: its chapters in the Podcasting 2.0
    JSON chapters format (``application/json+chapters``, version 1.2.0 of the podcast
    namespace's ``jsonChapters.md``), which the feed links as ``podcast:chapters``: apps that
    do not read the MP3's ID3 chapters (or are given a WAV) show these."""

    model_config = _FROZEN

    version: Literal["1.2.0"] = "1.2.0"
    title: str | None = None
    chapters: list[JsonChapter]


class EpisodeEntry(BaseModel):
    """``shows/<slug>/episodes/<inverted time>-<id>.json`` in the jobs container: one stored
    narration of a show, all that its feed item needs without reading anything else.

    Written once, after the narration's audio is committed; the same narration writes the
    same name again (idempotent). Names sort newest first, so a feed lists one page by prefix.
    """

    model_config = _DOCUMENT

    id: str
    """The narration id: the item's GUID."""
    title: str | None
    description: str
    """The start of the transcript (the item's description)."""
    created_at: Timestamp
    audio_blob_name: str
    format: AudioFormat
    bytes: int
    """The audio's size (the enclosure's ``length``)."""
    duration_seconds: Seconds
    transcript_blob_name: str
    captions_blob_name: str | None = None
    srt_blob_name: str | None = None
    chapters_blob_name: str | None = None
    """The narration's :class:`JsonChapters` file, when it has chapters."""
    chapters: list[EpisodeChapter] = []
    """The narration's chapters (those of its ID3 tag), at most
    ``podcast.services.narrations.MAX_EPISODE_CHAPTERS``; empty
    when it has none or the entry predates them."""


class ScriptCacheEntry(BaseModel):
    """``scripts/<content key>.json`` in the jobs container: the claim of the one writer
    writing that content now (``writing``, with its ``attempt`` and ``expires_at``), the
    script written for it (``succeeded``), or the failure a caller's retry is answered with
    instead of being billed again (``failed``, with the status and body; see
    :mod:`podcast.services.scripts`)."""

    model_config = _DOCUMENT

    state: Literal["writing", "succeeded", "failed"] = Field(description="writing, succeeded or failed.")
    updated_at: Timestamp = Field(description="When the entry was written (UTC).")
    usage: Usage = Field(
        default_factory=Usage, description="The tokens writing it cost (every reply, rejected ones included)."
    )
    script: ScriptDocument | None = Field(
        default=None, exclude_if=_is_none, description="The script (succeeded)."
    )
    error: JobError | None = Field(default=None, exclude_if=_is_none, description="The failure (failed).")
    attempt: str | None = Field(
        default=None, exclude_if=_is_none, description="A random id of the claiming writer (writing)."
    )
    expires_at: Timestamp | None = Field(
        default=None,
        exclude_if=_is_none,
        description="When the claim lapses unless renewed (writing, UTC): then another writer takes over.",
    )

    @model_validator(mode="after")
    def _outcome(self) -> Self:
        if self.state == "writing":
            if self.script is not None or self.error is not None or not self.attempt or not self.expires_at:
                raise ValueError("a writing script cache entry has an attempt and expires_at, no outcome")
            return self
        if (self.script is None) == (self.error is None):
            raise ValueError("a script cache entry has exactly one of script and error")
        if (self.state == "succeeded") != (self.script is not None):
            raise ValueError("a succeeded script cache entry has a script, a failed one an error")
        return self
