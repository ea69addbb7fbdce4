"""The OpenAPI 2.0 (Swagger) definition of the HTTP API, generated from the code it describes.

Power Automate and Logic Apps custom connectors import OpenAPI 2.0. The definitions are the
models' own JSON Schemas (:meth:`~pydantic.BaseModel.model_json_schema`), so a field's type,
bounds, description, ``x-ms-summary`` and ``x-ms-visibility`` are declared once, on the
model, and cannot drift from it:

- the request from :class:`~podcast.models.NarrationRequest` (as validated: its defaults);
- the 200 body from :class:`~podcast.wire.NarrationResponse` (with :class:`~podcast.wire.Usage`),
  the 202 body from :class:`~podcast.wire.JobStatusDocument` and every error body from
  :class:`~podcast.wire.ErrorBody` (as serialized).

:func:`swagger_schema` turns JSON Schema (draft 2020-12, as pydantic writes it) into a
Swagger 2.0 schema: ``anyOf [X, null]`` becomes X with ``x-nullable`` (in a request, a field
whose default is null is simply optional: null counts as not given), ``$defs`` become
``#/definitions/...`` for the models published as definitions and are inlined otherwise,
``const`` becomes a one-value ``enum``, ``examples`` an ``example``; titles, model
docstrings and (outside the request) defaults are left out. A keyword it cannot translate
raises :class:`RuntimeError`. The bounds that are settings (the text's maximum length, the
link lifetime's maximum) are their defaults, added here; the examples are sample model
instances.

The committed ``openapi.json`` is ``python -m podcast.http.openapi --write openapi.json``; a
test checks it is current and valid. The app serves the same document at
``GET /api/openapi.json`` with the ``host`` of the request.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from podcast import __version__
from podcast.engine import audio
from podcast.errors import RequestValidationError
from podcast.models import (
    DEFAULT_MAX_SAS_EXPIRY_MINUTES,
    DEFAULT_MAX_TEXT_CHARACTERS,
    LIMITS_CONTEXT_KEY,
    MAX_SPEAKERS,
    SHOW_SLUG_PATTERN,
    NarrationRequest,
    RequestLimits,
    ShowRequest,
    parse_request,
)
from podcast.settings import DEFAULT_FEED_MAX_ITEMS
from podcast.voices import DEFAULT_VOICE
from podcast.wire import (
    JOB_ID_PATTERN,
    ErrorBody,
    JobRecord,
    JobStatusDocument,
    NarrationResponse,
    ScriptDocument,
    ShowView,
    Speaker,
    Usage,
    iso_timestamp,
)

__all__ = [
    "BASE_PATH",
    "DEFAULT_HOST",
    "DEFINITIONS",
    "JOB_ID_PATTERN",
    "build_definition",
    "definition_schemas",
    "main",
    "openapi_document",
    "render",
    "sample_error",
    "sample_job",
    "sample_job_status",
    "sample_request",
    "sample_response",
    "swagger_schema",
]

DEFAULT_HOST: Final = "your-function-app.azurewebsites.net"
"""The host in the committed file; replace it with your app's when importing the file."""
BASE_PATH: Final = "/api"

DEFINITIONS: Final[Mapping[str, tuple[type[BaseModel], JsonSchemaMode]]] = {
    # definition name: (model, whether it is read (validation) or written (serialization))
    "NarrationRequest": (NarrationRequest, "validation"),
    "NarrationResult": (NarrationResponse, "serialization"),
    "NarrationJob": (JobStatusDocument, "serialization"),
    "Usage": (Usage, "serialization"),
    "Error": (ErrorBody, "serialization"),
    "Show": (ShowRequest, "validation"),
    "ShowResult": (ShowView, "serialization"),
    "Script": (ScriptDocument, "serialization"),
}
"""The models published under ``definitions``; any other model they use is inlined."""

_DESCRIPTIONS: Final[Mapping[str, str]] = {
    "NarrationRequest": "Unknown fields are rejected by name. null, or an empty string for an "
    "optional field, counts as not given.",
    "Show": "A show's settings (its feed's channel). Unknown fields are rejected by name.",
    "ScriptRequest": "A conversation narration request (mode conversation, the default here) with "
    "its speakers, but none of the audio's fields (format, show, sas_expiry_minutes: give them "
    "with the script to CreateNarration). Unknown fields are rejected by name.",
    "Script": "A conversation script: send it back as speakers and script to have it voiced verbatim.",
}
"""Definition-level descriptions (model docstrings are written for Python readers)."""

_SETTING_BOUNDS: Final[Mapping[str, Mapping[str, Mapping[str, Any]]]] = {
    "NarrationRequest": {
        "text": {"maxLength": DEFAULT_MAX_TEXT_CHARACTERS},
        "sas_expiry_minutes": {"maximum": DEFAULT_MAX_SAS_EXPIRY_MINUTES},
    },
}
"""Bounds that are settings (NARRATION_MAX_TEXT_CHARACTERS, NARRATION_MAX_SAS_EXPIRY_MINUTES),
published at their defaults."""

# --- JSON Schema (draft 2020-12) to Swagger 2.0 ----------------------------------------------

_KEY_ORDER: Final = (
    "$ref",
    "type",
    "format",
    "pattern",
    "enum",
    "minLength",
    "maxLength",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "uniqueItems",
    "items",
    "readOnly",
    "x-nullable",
    "required",
    "additionalProperties",
    "properties",
    "default",
    "example",
    "description",
)
"""The order of a schema's keys in the file (then ``x-`` extensions, as declared)."""

_KEPT: Final = frozenset(_KEY_ORDER) - {"$ref", "properties", "items", "additionalProperties", "default"}
_DROPPED: Final = frozenset({"title"})
_DEFS_PREFIX: Final = "#/$defs/"
_JSON_TYPES: Final = ((bool, "boolean"), (str, "string"), (int, "integer"), (float, "number"))


def _ordered(schema: Mapping[str, Any]) -> dict[str, Any]:
    rank = {key: index for index, key in enumerate(_KEY_ORDER)}
    return dict(sorted(schema.items(), key=lambda item: rank.get(item[0], len(rank))))


def _json_type(values: Sequence[Any]) -> str:
    for python_type, name in _JSON_TYPES:
        if all(isinstance(value, python_type) for value in values):
            return name
    raise RuntimeError(f"cannot describe the enum {list(values)!r} in OpenAPI 2.0")


class _Converter:
    """One model's JSON Schema to Swagger 2.0 (see :func:`swagger_schema`)."""

    def __init__(self, defs: Mapping[str, Any], references: Mapping[str, str], mode: JsonSchemaMode) -> None:
        self.defs = defs
        self.references = references
        self.mode = mode

    def model(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        """A model's own schema, without its docstring (a description for Python readers)."""
        converted = self.node(schema)
        converted.pop("description", None)
        return converted

    def node(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        rest = dict(schema)
        if "$ref" in rest:
            return self._reference(str(rest.pop("$ref")), rest)
        if "anyOf" in rest:
            return self._nullable(rest.pop("anyOf"), rest)
        converted: dict[str, Any] = {}
        for key, value in rest.items():
            if key in _DROPPED:
                continue
            if key == "properties":
                converted[key] = {name: self.node(child) for name, child in value.items()}
            elif key == "items":
                converted[key] = self.node(value)
            elif key == "additionalProperties":
                converted[key] = value if isinstance(value, bool) else self.node(value)
            elif key == "default":
                # A response's fields are always there: a default says nothing to its reader.
                if self.mode == "validation" and value is not None:
                    converted[key] = value
            elif key == "const":
                converted["enum"] = [value]
            elif key == "examples":
                converted["example"] = value[0]
            elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
                converted[key.removeprefix("exclusive").lower()] = value
                converted[key] = True
            elif key in _KEPT or key.startswith("x-"):
                converted[key] = value
            else:
                raise RuntimeError(f"the JSON Schema keyword {key!r} has no OpenAPI 2.0 equivalent")
        if "enum" in converted and "type" not in converted:
            converted["type"] = _json_type(converted["enum"])
        return _ordered(converted)

    def _reference(self, ref: str, siblings: Mapping[str, Any]) -> dict[str, Any]:
        if not ref.startswith(_DEFS_PREFIX):
            raise RuntimeError(f"cannot follow the reference {ref!r}")
        name = ref.removeprefix(_DEFS_PREFIX)
        extra = self.node(siblings)
        if name in self.references:
            return _ordered({"$ref": f"#/definitions/{self.references[name]}", **extra})
        return _ordered({**self.model(self.defs[name]), **extra})

    def _nullable(self, options: Sequence[Mapping[str, Any]], siblings: Mapping[str, Any]) -> dict[str, Any]:
        kept = [option for option in options if option != {"type": "null"}]
        if len(options) != 2 or len(kept) != 1:
            raise RuntimeError(f"OpenAPI 2.0 has no union; cannot describe anyOf {list(options)!r}")
        converted = {**self.node(kept[0]), **self.node(siblings)}
        # In a request, null for a field whose default is null counts as not given: the
        # field is optional, not nullable.
        if not (self.mode == "validation" and siblings.get("default", ...) is None):
            converted["x-nullable"] = True
        return _ordered(converted)


def swagger_schema(
    model: type[BaseModel], *, mode: JsonSchemaMode, references: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``model``'s JSON Schema as a Swagger 2.0 schema.

    ``mode`` is ``"validation"`` for what the API reads (defaults are published) and
    ``"serialization"`` for what it writes. ``references`` maps model class names to the
    definitions they are published as (a ``$ref`` to one of them stays a reference); every
    other model is inlined where it is used.
    """
    document = model.model_json_schema(mode=mode)
    defs = document.pop("$defs", {})
    return _Converter(defs, references or {}, mode).model(document)


def definition_schemas() -> dict[str, Any]:
    """The ``definitions`` section: :data:`DEFINITIONS` converted, with the setting bounds,
    the definition descriptions and the examples from sample instances."""
    references = {model.__name__: name for name, (model, _) in DEFINITIONS.items()}
    examples: Mapping[str, BaseModel] = {
        "NarrationResult": sample_response(),
        "NarrationJob": sample_job_status(),
        "Error": sample_error(),
    }
    definitions: dict[str, Any] = {}
    for name, (model, mode) in DEFINITIONS.items():
        schema = swagger_schema(model, mode=mode, references=references)
        for field, bounds in _SETTING_BOUNDS.get(name, {}).items():
            schema["properties"][field] = _ordered({**schema["properties"][field], **bounds})
        if name in _DESCRIPTIONS:
            schema["description"] = _DESCRIPTIONS[name]
        if name in examples:
            schema["example"] = examples[name].model_dump(mode="json")
        definitions[name] = _ordered(schema)
    definitions["ScriptRequest"] = _script_request(definitions["NarrationRequest"], references)
    return definitions


def _script_request(narration: Mapping[str, Any], references: Mapping[str, str]) -> dict[str, Any]:
    """``POST /scripts``' body: the narration request's fields but a script's own (``script``,
    ``chapters``) and the audio's, ``speakers`` shown prominently with its default."""
    speaker = swagger_schema(Speaker, mode="validation", references=references)
    speakers = {
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_SPEAKERS,
        "items": speaker,
        "description": "1 to 4 speakers, names unique; default: Maya (marin) and Theo (cedar).",
        "x-ms-summary": "Speakers",
        "x-ms-visibility": "important",
    }
    # A script's own fields are not asked for, nor the audio's (a script has none) nor a
    # voice (the speakers have them): the service refuses them unless at their defaults.
    left_out = {"script", "chapters", "format", "sas_expiry_minutes", "show", "voice"}
    properties = {name: value for name, value in narration["properties"].items() if name not in left_out}
    properties["speakers"] = speakers
    return _ordered({**narration, "properties": properties, "description": _DESCRIPTIONS["ScriptRequest"]})


# --- Samples: real model objects, the definitions' examples ---------------------------------

_SAMPLE_TIME: Final = datetime(2026, 11, 25, 11, 10, 37, tzinfo=UTC)
_SAMPLE_TEXT: Final = "Welcome to the show. Today: why rivers bend."
_SAMPLE_ID: Final = "c9071842f8854f59a410cc4211bc108e"
_SAMPLE_BASE: Final = f"{_SAMPLE_TIME:%Y/%m/%d}/{_SAMPLE_ID}"
_SAMPLE_URL: Final = (
    f"https://account.blob.core.windows.net/narrations/{_SAMPLE_BASE}.wav?sv=...&sp=r&sig=..."
)
_SAMPLE_USAGE: Final[Mapping[str, int]] = {
    "input_tokens": 512,
    "output_tokens": 91,
    "input_text_tokens": 512,
    "output_text_tokens": 13,
    "output_audio_tokens": 78,
}


def sample_request() -> NarrationRequest:
    """A fixed request (default limits, whatever the environment says)."""
    return NarrationRequest.model_validate(
        {"text": _SAMPLE_TEXT, "voice": DEFAULT_VOICE, "title": "Rivers"},
        context={LIMITS_CONTEXT_KEY: RequestLimits()},
    )


def sample_response() -> NarrationResponse:
    """A fixed 200 body, the example of ``NarrationResult``."""
    request = sample_request()
    return NarrationResponse(
        id=_SAMPLE_ID,
        audio_url=_SAMPLE_URL,
        expires_at=iso_timestamp(_SAMPLE_TIME.replace(hour=12)),
        container="narrations",
        blob_name=f"{_SAMPLE_BASE}.wav",
        transcript_blob_name=f"{_SAMPLE_BASE}.json",
        transcript=_SAMPLE_TEXT,
        duration_seconds=3.912,
        voice=request.voice,
        mode=request.mode,
        style=request.style,
        language=request.language,
        title=request.title,
        sample_rate=audio.SAMPLE_RATE,
        characters=len(request.text),
        segments=1,
        fidelity=1.0,
        warnings=(),
        usage=Usage(**_SAMPLE_USAGE),
        captions_url=_SAMPLE_URL.replace(".wav?", ".vtt?"),
        captions_blob_name=f"{_SAMPLE_BASE}.vtt",
        srt_blob_name=f"{_SAMPLE_BASE}.srt",
        chapters_blob_name=f"{_SAMPLE_BASE}.chapters.json",
        loudness_lufs=-16.0,
    )


def sample_job() -> JobRecord:
    """A fixed running job."""
    return JobRecord(
        id="5d41402abc4b2a76b9719d911017c592",
        status="running",
        created_at="2026-11-25T11:10:37.000Z",
        updated_at="2026-11-25T11:11:07.000Z",
        estimated_audio_seconds=312.0,
        sas_expiry_minutes=60,
        segments_done=1,
        segments_total=3,
    )


def sample_job_status() -> JobStatusDocument:
    """The 202 body of :func:`sample_job`, the example of ``NarrationJob``."""
    return sample_job().status_document()


def sample_error() -> ErrorBody:
    """The body of a real refusal (a request without text), the example of ``Error``."""
    try:
        parse_request({}, RequestLimits())
    except RequestValidationError as error:
        return ErrorBody.from_error(error)
    raise AssertionError("a request without text was accepted")


# --- Building the definition ------------------------------------------------------------------


_ASYNC_HEADERS: Final = {
    "Location": {
        "type": "string",
        "description": "Absolute URL of the job's status (GET). It keeps a code= function key the "
        "request carried in its URL; with the x-functions-key header, send the header again.",
    },
    "Retry-After": {
        "type": "integer",
        "description": "Seconds to wait before polling (from the expected audio length).",
    },
}


def _errors(*statuses: int) -> dict[str, Any]:
    meaning = {
        400: "Invalid request: not JSON, or a missing, unknown or invalid field or header (see field); "
        "no_speakable_text: a text without a letter or digit.",
        402: "Azure OpenAI quota exhausted (insufficient_quota): check its quota and billing; do not retry.",
        404: "No job with this id.",
        413: "Text or body too long.",
        422: "Sending the same request again cannot succeed, so it is not retried: content_filtered "
        "(Azure OpenAI's content filter), fidelity_too_low (the text could not be read verbatim), "
        "narration_incomplete (over the output limit), or idempotency_key_reused.",
        429: "Azure OpenAI is rate limiting; Retry-After says when to try again.",
        502: "Azure OpenAI or Storage refused the narration (credentials, deployment, an error "
        "event): the operator must fix it; no Retry-After. script_invalid: the model's script stayed "
        "invalid after its retries; the same request is answered with the same error, not billed again.",
        503: "Azure OpenAI or Storage unreachable or the connection dropped (Retry-After: worth "
        "retrying), a setting missing, or a queued job stalled. script_in_progress (Retry-After): an "
        "identical script is being written; the retry is answered with it.",
        504: "The narration did not finish in time (Retry-After: worth retrying).",
    }
    responses: dict[str, Any] = {
        str(status): {"description": meaning[status], "schema": {"$ref": "#/definitions/Error"}}
        for status in statuses
    }
    responses["default"] = {
        "description": "Any other failure, same shape.",
        "schema": {"$ref": "#/definitions/Error"},
    }
    return responses


def _if_none_match(copy: str) -> dict[str, object]:
    """The ``If-None-Match`` header parameter: the ETag of ``copy``, answered 304 while current."""
    return {
        "name": "If-None-Match",
        "in": "header",
        "required": False,
        "type": "string",
        "x-ms-visibility": "internal",
        "x-ms-summary": "If-None-Match",
        "description": f"The ETag of {copy}: 304 when it is still current.",
    }


def _download(
    operation_id: str, summary: str, description: str, produces: list[str], *, visibility: str = "advanced"
) -> dict[str, Any]:
    """A ``GET /narrations/{id}/<file>`` operation: the file (``type: file``), whole or a range."""
    file = {"type": "file"}
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "x-ms-visibility": visibility,
        "produces": produces,
        "parameters": [
            {
                "name": "id",
                "in": "path",
                "required": True,
                "type": "string",
                "pattern": JOB_ID_PATTERN,
                "x-ms-summary": "Narration ID",
                "description": "The narration's id (the id of the 200 or 202 answer).",
            },
            {
                "name": "Range",
                "in": "header",
                "required": False,
                "type": "string",
                "x-ms-visibility": "internal",
                "x-ms-summary": "Range",
                "description": "Bytes to send (RFC 9110), e.g. bytes=0-1023; absent: the whole file.",
            },
            _if_none_match("a copy already held"),
        ],
        "responses": {
            "200": {"description": "The whole file.", "schema": file},
            "304": {"description": "The copy named by If-None-Match is current."},
            "206": {
                "description": "The requested range (or ranges, as multipart/byteranges).",
                "schema": file,
            },
            "302": {
                "description": (
                    "The answer would be larger than NARRATION_DOWNLOAD_INLINE_MAX_MB: Location (and the "
                    "body's url) is a fresh read-only link to the file, which also honours Range."
                ),
                "headers": {"Location": {"type": "string", "description": "The read-only link."}},
            },
            "404": {
                "description": "No narration, or no such file, with this id.",
                "schema": {"$ref": "#/definitions/Error"},
            },
            "416": {"description": "No requested range overlaps the file (Content-Range: bytes */size)."},
            "default": {
                "description": "Any other failure, a JSON error.",
                "schema": {"$ref": "#/definitions/Error"},
            },
        },
    }


def build_definition(host: str = DEFAULT_HOST, scheme: str = "https") -> dict[str, Any]:
    """The whole OpenAPI 2.0 definition, for ``host`` (no scheme, no path)."""
    create = {
        "operationId": "CreateNarration",
        "summary": "Narrate text",
        "description": "Narrates the text with Azure OpenAI gpt-realtime-mini and stores a WAV. "
        "With Prefer: respond-async (always sent by this definition) the answer is 202 with a "
        "Location to poll: Power Automate and Logic Apps poll it until the narration is done and "
        "return its result. Without it, short texts are answered at once with 200.",
        "x-ms-visibility": "important",
        "consumes": ["application/json"],
        "parameters": [
            {
                "name": "Prefer",
                "in": "header",
                "required": True,
                "type": "string",
                "enum": ["respond-async"],
                "default": "respond-async",
                "x-ms-visibility": "internal",
                "x-ms-summary": "Prefer",
                "description": "respond-async: answer 202 and narrate in the background. The API "
                "itself does not require it (without it, short texts are narrated synchronously).",
            },
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "type": "string",
                "maxLength": 255,
                "x-ms-visibility": "advanced",
                "x-ms-summary": "Idempotency Key",
                "description": "Any unique string (e.g. the flow run id): a retried request with the same "
                "key gets the same job. The same key with a different request is a 422.",
            },
            {
                "name": "Cache-Control",
                "in": "header",
                "required": False,
                "type": "string",
                "enum": ["no-cache", "no-store"],
                "x-ms-visibility": "advanced",
                "x-ms-summary": "Reuse Control",
                "description": "Identical requests reuse audio already made. no-cache narrates afresh; "
                "no-store also keeps the result from being reused.",
            },
            {
                "name": "body",
                "in": "body",
                "required": True,
                "schema": {"$ref": "#/definitions/NarrationRequest"},
                "x-ms-summary": "Narration",
            },
        ],
        "responses": {
            "200": {
                "description": "Narrated (synchronous request).",
                "schema": {"$ref": "#/definitions/NarrationResult"},
            },
            "202": {
                "description": "Accepted as a job: poll Location until it answers other than 202.",
                "headers": _ASYNC_HEADERS,
                "schema": {"$ref": "#/definitions/NarrationJob"},
            },
            **_errors(400, 402, 413, 422, 429, 502, 503, 504),
        },
    }
    status = {
        "operationId": "GetNarration",
        "summary": "Get a narration job",
        "description": "202 with progress while the job is queued or running; 200 with the narration "
        "(and a fresh audio link) when done; the error and its status when it failed.",
        "x-ms-visibility": "advanced",
        "parameters": [
            {
                "name": "id",
                "in": "path",
                "required": True,
                "type": "string",
                "pattern": JOB_ID_PATTERN,
                "x-ms-summary": "Job ID",
                "description": "The job id from the 202 answer.",
            }
        ],
        "responses": {
            "200": {"description": "Done.", "schema": {"$ref": "#/definitions/NarrationResult"}},
            "202": {
                "description": "Queued or running.",
                "headers": _ASYNC_HEADERS,
                "schema": {"$ref": "#/definitions/NarrationJob"},
            },
            **_errors(402, 404, 422, 429, 502, 503, 504),
        },
    }
    audio = _download(
        "GetNarrationAudio",
        "Download the audio",
        "The audio file itself (WAV or MP3, as narrated), with its file name from the title in "
        "Content-Disposition: attach it to an email or save it to SharePoint or OneDrive. Range "
        "requests are honoured (206; 416 when no range overlaps the file).",
        ["audio/wav", "audio/mpeg"],
        visibility="important",
    )
    captions = _download(
        "GetNarrationCaptions",
        "Download the captions (WebVTT)",
        "WebVTT captions timed to the audio.",
        ["text/vtt"],
    )
    srt = _download(
        "GetNarrationSrtCaptions",
        "Download the captions (SRT)",
        "SubRip captions timed to the audio.",
        ["application/x-subrip"],
    )
    transcript = _download(
        "GetNarrationTranscript",
        "Download the transcript document",
        "The transcript document stored beside the audio: the narration's fields and each "
        "segment's timing, transcript and fidelity.",
        ["application/json"],
    )
    chapters = _download(
        "GetNarrationChapters",
        "Download the chapters",
        "The narration's chapters (at its headings, or about every minute) as Podcasting 2.0 JSON "
        "chapters: startTime, endTime (seconds) and title of each. 404 for a narration without "
        "chapters.",
        ["application/json+chapters"],
    )
    show_parameter = {
        "name": "show",
        "in": "path",
        "required": True,
        "type": "string",
        "pattern": SHOW_SLUG_PATTERN,
        "x-ms-summary": "Show",
        "description": "The show's name: lower-case letters, digits and inner hyphens (e.g. daily-digest).",
    }
    show_result = {"$ref": "#/definitions/ShowResult"}
    no_show = {
        "404": {
            "description": "No show with this name (show_not_found); for the feed, also a wrong or "
            "rotated token (the same answer).",
            "schema": {"$ref": "#/definitions/Error"},
        }
    }
    put_show = {
        "operationId": "PutShow",
        "summary": "Create or update a show",
        "description": "Creates the show (201, with its feed URL and token, shown only now) or replaces "
        "its settings (200; its token and feed URL stay). Narrations with this show in their show "
        "field become episodes of its podcast feed.",
        "x-ms-visibility": "advanced",
        "consumes": ["application/json"],
        "parameters": [
            show_parameter,
            {
                "name": "body",
                "in": "body",
                "required": True,
                "schema": {"$ref": "#/definitions/Show"},
                "x-ms-summary": "Show",
            },
        ],
        "responses": {
            "200": {"description": "Updated (feed_url is null: the token stays).", "schema": show_result},
            "201": {"description": "Created, with the feed URL.", "schema": show_result},
            **_errors(400, 413, 503),
        },
    }
    get_show = {
        "operationId": "GetShow",
        "summary": "Get a show",
        "description": "The show's settings (feed_url is null: rotate the token for a new feed URL).",
        "x-ms-visibility": "advanced",
        "parameters": [show_parameter],
        "responses": {
            "200": {"description": "The show.", "schema": show_result},
            **no_show,
            **_errors(400, 503),
        },
    }
    rotate = {
        "operationId": "RotateShowToken",
        "summary": "Rotate a show's feed token",
        "description": "A new feed token and URL; the old feed URL stops working at once (404). Links "
        "already in apps' copies of the feed expire on their own (NARRATION_FEED_LINK_HOURS).",
        "x-ms-visibility": "advanced",
        "parameters": [show_parameter],
        "responses": {
            "200": {"description": "The show with its new feed URL.", "schema": show_result},
            **no_show,
            **_errors(400, 503),
        },
    }
    feed = {
        "operationId": "GetShowFeed",
        "summary": "Get a show's podcast feed",
        "description": "RSS 2.0 with the iTunes and Podcasting 2.0 namespaces, newest episode first, "
        "for podcast apps: no function key, the token in the URL is the access control. Unknown "
        "shows and wrong tokens are both 404.",
        "x-ms-visibility": "internal",
        "security": [],
        "produces": ["application/rss+xml"],
        "parameters": [
            show_parameter,
            {
                "name": "token",
                "in": "query",
                "required": True,
                "type": "string",
                "x-ms-summary": "Feed Token",
                "description": "The show's feed token (from its feed URL).",
            },
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "type": "integer",
                "minimum": 1,
                "maximum": DEFAULT_FEED_MAX_ITEMS,
                "x-ms-summary": "Episodes",
                "description": "At most this many episodes (default and maximum: NARRATION_FEED_MAX_ITEMS).",
            },
            _if_none_match("a copy of the feed"),
        ],
        "responses": {
            "200": {"description": "The feed (RSS 2.0 XML).", "schema": {"type": "string"}},
            "304": {"description": "The copy named by If-None-Match is current."},
            **no_show,
            **_errors(400, 503),
        },
    }
    script = {
        "operationId": "CreateScript",
        "summary": "Write a conversation script",
        "description": "Writes the dialogue that mode conversation would voice (the speakers talk "
        "about the text, for target_minutes up to 30) and returns it without voicing it, to review "
        "or edit and send back as script. An identical request gets the same script from Storage.",
        "x-ms-visibility": "important",
        "consumes": ["application/json"],
        "parameters": [
            {
                "name": "Cache-Control",
                "in": "header",
                "required": False,
                "type": "string",
                "enum": ["no-cache", "no-store"],
                "x-ms-visibility": "advanced",
                "x-ms-summary": "Reuse Control",
                "description": "An identical request gets the stored script (or its stored failure). "
                "no-cache writes afresh; no-store also keeps the result from being stored.",
            },
            {
                "name": "body",
                "in": "body",
                "required": True,
                "schema": {"$ref": "#/definitions/ScriptRequest"},
                "x-ms-summary": "Script Request",
            },
        ],
        "responses": {
            "200": {"description": "The script.", "schema": {"$ref": "#/definitions/Script"}},
            **_errors(400, 402, 413, 422, 429, 502, 503, 504),
        },
    }
    health = {
        "operationId": "GetHealth",
        "summary": "Check the configuration",
        "description": "Which settings are present and which auth modes are in use, never their values.",
        "x-ms-visibility": "internal",
        "responses": {
            "200": {"description": "Configured.", "schema": {"type": "object", "additionalProperties": True}},
            "503": {
                "description": "A setting is missing.",
                "schema": {"type": "object", "additionalProperties": True},
            },
        },
    }
    player = {
        "operationId": "GetPlayer",
        "summary": "Open the player page",
        "description": "An HTML page (for a browser, at /api/player?code=<key>) to narrate a text or "
        "file and play the result with its transcript.",
        "x-ms-visibility": "internal",
        "produces": ["text/html"],
        "responses": {"200": {"description": "The page.", "schema": {"type": "string"}}},
    }
    return {
        "swagger": "2.0",
        "info": {
            "title": "Podcast narration",
            "description": "Text to podcast-style narration with Azure OpenAI gpt-realtime-mini: "
            "a read-only link to a WAV in Blob Storage, and the transcript.",
            "version": __version__,
        },
        "host": host,
        "basePath": BASE_PATH,
        "schemes": [scheme],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {
            "function_key": {
                "type": "apiKey",
                "in": "header",
                "name": "x-functions-key",
                "description": "An Azure Functions function (or host) key.",
            }
        },
        "security": [{"function_key": []}],
        "paths": {
            "/narrations": {"post": create},
            "/narrations/{id}": {"get": status},
            "/narrations/{id}/audio": {"get": audio},
            "/narrations/{id}/captions.vtt": {"get": captions},
            "/narrations/{id}/captions.srt": {"get": srt},
            "/narrations/{id}/transcript.json": {"get": transcript},
            "/narrations/{id}/chapters.json": {"get": chapters},
            "/shows/{show}": {"put": put_show, "get": get_show},
            "/shows/{show}/token": {"post": rotate},
            "/shows/{show}/feed.xml": {"get": feed},
            "/scripts": {"post": script},
            "/health": {"get": health},
            "/player": {"get": player},
        },
        "definitions": definition_schemas(),
    }


def render(definition: Mapping[str, Any]) -> str:
    """The definition as the committed file holds it (2-space indent, UTF-8, final newline)."""
    return json.dumps(definition, indent=2, ensure_ascii=False) + "\n"


def openapi_document(request_url: str = "", headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The definition for the app that serves it: the request's host and scheme (the
    ``Host`` header for a relative URL), else the placeholder host."""
    parts = urlsplit(request_url)
    host, scheme = parts.netloc, parts.scheme.lower()
    if not host:
        lowered = {name.lower(): value for name, value in (headers or {}).items()}
        host = lowered.get("host", "").strip()
    if scheme not in ("http", "https"):
        scheme = "https"
    if not host or any(ch in host for ch in "/\\ @{}"):
        host = DEFAULT_HOST
    return build_definition(host=host, scheme=scheme)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m podcast.http.openapi [--write PATH]``: print (or write) the committed definition."""
    parser = argparse.ArgumentParser(prog="python -m podcast.http.openapi", description=main.__doc__)
    parser.add_argument("--write", type=Path, help="write the definition to this file (e.g. openapi.json)")
    arguments = parser.parse_args(argv)
    text = render(build_definition())
    if arguments.write:
        arguments.write.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
