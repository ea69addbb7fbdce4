"""The OpenAPI 2.0 (Swagger) definition of the HTTP API, generated from the code it describes.

Power Automate and Logic Apps custom connectors import OpenAPI 2.0. The definition is built
from the models themselves, so it cannot drift from them silently:

- the request schema from :class:`~podcast.models.NarrationRequest`'s fields (names,
  required, defaults, enums from the ``Literal`` types, bounds from the model's constants);
- the 200 schema from the keys of a real :meth:`NarrationResult.to_response()
  <podcast.services.pipeline.NarrationResult.to_response>` (and :meth:`Usage.to_dict()
  <podcast.engine.realtime.Usage.to_dict>`), which is also the example;
- the 202 schema from :func:`podcast.services.jobs.status_document`.

Every field must have a description here: generation raises :class:`RuntimeError` when a
field was added to, or removed from, a model without this module following. The committed
``openapi.json`` is ``python -m podcast.http.openapi --write openapi.json``; a test checks it is
current and valid. The app serves the same document at ``GET /api/openapi.json`` with the
``host`` of the request.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic_core import PydanticUndefined

from podcast import __version__
from podcast.engine.longform import SegmentReport
from podcast.engine.realtime import Usage
from podcast.models import (
    DEFAULT_MAX_SAS_EXPIRY_MINUTES,
    DEFAULT_MAX_TEXT_CHARACTERS,
    LIMITS_CONTEXT_KEY,
    MAX_INSTRUCTIONS_CHARACTERS,
    MAX_TARGET_MINUTES,
    MAX_TITLE_CHARACTERS,
    MIN_TARGET_MINUTES,
    NarrationRequest,
    RequestLimits,
)
from podcast.services.narrations import NarrationResult
from podcast.services.records import JobRecord, status_document
from podcast.voices import DEFAULT_VOICE, REALTIME_VOICES

DEFAULT_HOST: Final = "your-function-app.azurewebsites.net"
"""The host in the committed file; replace it with your app's when importing the file."""
BASE_PATH: Final = "/api"
JOB_ID_PATTERN: Final = "^[0-9a-f]{32}$"

Visibility = Literal["important", "advanced", "internal"]

# --- What each field means (the schemas' types and bounds come from the models) ---------------

REQUEST_FIELDS: Final[Mapping[str, tuple[str, str, Visibility]]] = {
    # name: (x-ms-summary, description, x-ms-visibility)
    "text": (
        "Text",
        "The text to narrate. Trimmed; at most NARRATION_MAX_TEXT_CHARACTERS characters "
        f"(default {DEFAULT_MAX_TEXT_CHARACTERS:,}); no control characters except newline and tab.",
        "important",
    ),
    "mode": (
        "Mode",
        "read: the text is read verbatim. episode: a short podcast episode about the text.",
        "important",
    ),
    "target_minutes": (
        "Episode Length (Minutes)",
        f"Length of an episode, {MIN_TARGET_MINUTES:g} to {MAX_TARGET_MINUTES:g} minutes; episode mode only.",
        "advanced",
    ),
    "style": (
        "Style",
        "read mode: podcast, narration or lecture. episode mode: podcast, summary or lecture.",
        "advanced",
    ),
    "voice": (
        "Voice",
        "A Realtime voice; the default is NARRATION_DEFAULT_VOICE (marin).",
        "important",
    ),
    "language": (
        "Language",
        "A BCP 47 tag (en, es-MX, zh-CN) the narration is pinned to.",
        "advanced",
    ),
    "instructions": (
        "Delivery Instructions",
        f"At most {MAX_INSTRUCTIONS_CHARACTERS:,} characters. Shapes the delivery only; "
        "can never make read mode do anything but read.",
        "advanced",
    ),
    "title": (
        "Title",
        f"At most {MAX_TITLE_CHARACTERS} characters; the download file name and metadata.",
        "important",
    ),
    "sas_expiry_minutes": (
        "Link Lifetime (Minutes)",
        "Minutes the audio link stays valid, 1 to NARRATION_MAX_SAS_EXPIRY_MINUTES "
        f"(default {DEFAULT_MAX_SAS_EXPIRY_MINUTES:,}). Each status request signs a fresh link.",
        "advanced",
    ),
}

_REQUEST_BOUNDS: Final[Mapping[str, Mapping[str, Any]]] = {
    "text": {"minLength": 1, "maxLength": DEFAULT_MAX_TEXT_CHARACTERS},
    "target_minutes": {"minimum": MIN_TARGET_MINUTES, "maximum": MAX_TARGET_MINUTES},
    "voice": {"enum": list(REALTIME_VOICES)},
    "language": {"example": "es-MX"},
    "instructions": {"maxLength": MAX_INSTRUCTIONS_CHARACTERS},
    "title": {"maxLength": MAX_TITLE_CHARACTERS},
    "sas_expiry_minutes": {"minimum": 1, "maximum": DEFAULT_MAX_SAS_EXPIRY_MINUTES},
}

_STRING: Final = {"type": "string"}
_NULLABLE_STRING: Final = {"type": "string", "x-nullable": True}
_INTEGER: Final = {"type": "integer"}
_NUMBER: Final = {"type": "number"}

RESPONSE_FIELDS: Final[Mapping[str, tuple[str, str, Mapping[str, Any]]]] = {
    # name: (x-ms-summary, description, schema)
    "id": ("Narration ID", "The narration's id (the base name of its blobs).", _STRING),
    "audio_url": (
        "Audio URL",
        "Read-only SAS link to the WAV, valid until expires_at.",
        {"type": "string", "format": "uri"},
    ),
    "expires_at": (
        "Link Expires At",
        "When audio_url stops working (UTC).",
        {"type": "string", "format": "date-time"},
    ),
    "container": ("Container", "The Blob Storage container holding the audio.", _STRING),
    "blob_name": ("Audio Blob Name", "The WAV's blob name.", _STRING),
    "transcript_blob_name": (
        "Transcript Blob Name",
        "The transcript document's blob name (the same fields, without the link, plus segment timings).",
        _STRING,
    ),
    "transcript": ("Transcript", "What was said, as the model transcribed its own audio.", _STRING),
    "duration_seconds": ("Duration (Seconds)", "Length of the audio.", _NUMBER),
    "voice": ("Voice", "The voice used.", {"type": "string", "enum": list(REALTIME_VOICES)}),
    "mode": (
        "Mode",
        "read or episode.",
        {"type": "string", "enum": list(get_args(NarrationRequest.model_fields["mode"].annotation))},
    ),
    "style": ("Style", "The delivery style.", {"type": "string"}),
    "language": ("Language", "The BCP 47 tag the narration was pinned to, if any.", _NULLABLE_STRING),
    "title": ("Title", "The title, if any.", _NULLABLE_STRING),
    "format": ("Format", "Always wav.", {"type": "string", "enum": ["wav"]}),
    "sample_rate": ("Sample Rate", "Samples a second (24,000; 16-bit mono PCM).", _INTEGER),
    "characters": ("Characters", "Characters in the narrated text.", _INTEGER),
    "segments": ("Segments", "Segments the text was narrated in (one Realtime session each).", _INTEGER),
    "fidelity": (
        "Fidelity",
        "Word similarity of the transcript to the text, 0 to 1 (null in episode mode).",
        {"type": "number", "x-nullable": True},
    ),
    "warnings": (
        "Warnings",
        "Anything worth knowing (e.g. low fidelity kept by policy).",
        {"type": "array", "items": _STRING},
    ),
    "usage": ("Usage", "Tokens billed by Azure OpenAI.", {"$ref": "#/definitions/Usage"}),
}

USAGE_FIELDS: Final[Mapping[str, str]] = {
    "input_tokens": "Input tokens (text and audio).",
    "output_tokens": "Output tokens (text and audio).",
    "total_tokens": "Input plus output tokens.",
    "input_text_tokens": "Input text tokens.",
    "input_audio_tokens": "Input audio tokens.",
    "input_cached_tokens": "Input tokens served from the cache.",
    "output_text_tokens": "Output text (transcript) tokens.",
    "output_audio_tokens": "Output audio tokens (about 20 a second of audio).",
}

JOB_FIELDS: Final[Mapping[str, tuple[str, str, Mapping[str, Any]]]] = {
    "id": (
        "Job ID",
        "The job's id; its status URL is /api/narrations/{id}.",
        {"type": "string", "pattern": JOB_ID_PATTERN},
    ),
    "status": (
        "Status",
        "queued, running, succeeded or failed. The status URL answers 202 until the job is "
        "succeeded (200, the narration) or failed (the error and its status).",
        {"type": "string", "enum": ["queued", "running", "succeeded", "failed"]},
    ),
    "progress": (
        "Progress",
        "Segments narrated so far, of how many (null until known).",
        {
            "type": "object",
            "properties": {
                "segments_done": {"type": "integer", "x-ms-summary": "Segments Done"},
                "segments_total": {"type": "integer", "x-nullable": True, "x-ms-summary": "Segments Total"},
            },
        },
    ),
    "estimated_audio_seconds": (
        "Estimated Audio (Seconds)",
        "Expected audio length: 150 words a minute, or the episode length.",
        _NUMBER,
    ),
    "created_at": (
        "Created At",
        "When the job was accepted (UTC).",
        {"type": "string", "format": "date-time"},
    ),
    "updated_at": (
        "Updated At",
        "The job's last change or heartbeat (UTC).",
        {"type": "string", "format": "date-time"},
    ),
}

# --- Samples: real model objects, whose keys the schemas must cover exactly --------------------

_SAMPLE_TIME: Final = datetime(2026, 11, 25, 11, 10, 37, tzinfo=UTC)
_SAMPLE_TEXT: Final = "Welcome to the show. Today: why rivers bend."


def sample_request() -> NarrationRequest:
    """A fixed request (default limits, whatever the environment says)."""
    return NarrationRequest.model_validate(
        {"text": _SAMPLE_TEXT, "voice": DEFAULT_VOICE, "title": "Rivers"},
        context={LIMITS_CONTEXT_KEY: RequestLimits()},
    )


def sample_result() -> NarrationResult:
    """A fixed :class:`NarrationResult`, the source of the 200 schema's keys and example."""
    narration_id = "c9071842f8854f59a410cc4211bc108e"
    base = f"{_SAMPLE_TIME:%Y/%m/%d}/{narration_id}"
    return NarrationResult(
        id=narration_id,
        audio_url=f"https://account.blob.core.windows.net/narrations/{base}.wav?sv=...&sp=r&sig=...",
        expires_at=_SAMPLE_TIME.replace(hour=12),
        container="narrations",
        blob_name=f"{base}.wav",
        transcript_blob_name=f"{base}.json",
        transcript=_SAMPLE_TEXT,
        duration_seconds=3.912,
        request=sample_request(),
        usage=Usage(
            input_tokens=512,
            output_tokens=91,
            input_text_tokens=512,
            output_text_tokens=13,
            output_audio_tokens=78,
        ),
        created_at=_SAMPLE_TIME,
        segments=(SegmentReport(0, 0.0, 3.912, _SAMPLE_TEXT, 1.0, 1),),
        fidelity=1.0,
        min_fidelity=0.9,
    )


def sample_job() -> JobRecord:
    """A fixed running job, the source of the 202 schema's keys and example."""
    moment = "2026-11-25T11:10:37.000Z"
    return JobRecord(
        id="5d41402abc4b2a76b9719d911017c592",
        status="running",
        created_at=moment,
        updated_at="2026-11-25T11:11:07.000Z",
        estimated_audio_seconds=312.0,
        sas_expiry_minutes=60,
        segments_done=1,
        segments_total=3,
    )


# --- Building the definition ------------------------------------------------------------------


def _annotation_schema(annotation: Any) -> dict[str, Any]:
    """The JSON type (and enum, for a ``Literal``) of a field annotation."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(options) != 1:
            raise RuntimeError(f"cannot describe the annotation {annotation!r}")
        return _annotation_schema(options[0])
    if origin is Literal:
        values = list(get_args(annotation))
        return {"type": "string", "enum": values}
    for python_type, name in ((bool, "boolean"), (str, "string"), (int, "integer"), (float, "number")):
        if annotation is python_type:
            return {"type": name}
    raise RuntimeError(f"cannot describe the annotation {annotation!r}")


def _checked_keys(what: str, described: Sequence[str], actual: Sequence[str]) -> None:
    if set(described) != set(actual):
        missing = sorted(set(actual) - set(described))
        extra = sorted(set(described) - set(actual))
        raise RuntimeError(
            f"podcast.http.openapi is out of date with {what}: describe {missing}, remove {extra}"
        )


def request_schema() -> dict[str, Any]:
    """``NarrationRequest`` as a Swagger schema (from the pydantic model's fields)."""
    fields = NarrationRequest.model_fields
    _checked_keys("NarrationRequest", list(REQUEST_FIELDS), list(fields))
    properties: dict[str, Any] = {}
    for name, info in fields.items():
        summary, description, visibility = REQUEST_FIELDS[name]
        schema = _annotation_schema(info.annotation)
        schema.update(_REQUEST_BOUNDS.get(name, {}))
        if info.default is not PydanticUndefined and info.default is not None:
            schema["default"] = info.default
        schema.update({"description": description, "x-ms-summary": summary, "x-ms-visibility": visibility})
        properties[name] = schema
    required = [name for name, info in fields.items() if info.is_required()]
    return {
        "type": "object",
        "required": required,
        "additionalProperties": False,
        "properties": properties,
        "description": "Unknown fields are rejected by name. null, or an empty string for an "
        "optional field, counts as not given.",
    }


def result_schema() -> dict[str, Any]:
    """The synchronous 200 body (and a finished job's), from a real ``to_response()``."""
    example = sample_result().to_response()
    _checked_keys("NarrationResult.to_response()", list(RESPONSE_FIELDS), list(example))
    properties = {}
    for name in example:
        summary, description, schema = RESPONSE_FIELDS[name]
        properties[name] = {**schema, "description": description, "x-ms-summary": summary}
    return {"type": "object", "required": list(example), "properties": properties, "example": example}


def usage_schema() -> dict[str, Any]:
    keys = list(Usage().to_dict())
    _checked_keys("Usage.to_dict()", list(USAGE_FIELDS), keys)
    return {
        "type": "object",
        "properties": {name: {"type": "integer", "description": USAGE_FIELDS[name]} for name in keys},
    }


def job_schema() -> dict[str, Any]:
    """The 202 body (a job's status document), from :func:`podcast.services.jobs.status_document`."""
    example = status_document(sample_job())
    _checked_keys("podcast.services.jobs.status_document()", list(JOB_FIELDS), list(example))
    properties = {}
    for name in example:
        summary, description, schema = JOB_FIELDS[name]
        properties[name] = {**schema, "description": description, "x-ms-summary": summary}
    return {"type": "object", "required": list(example), "properties": properties, "example": example}


def error_schema() -> dict[str, Any]:
    """``{"error": {"code", "message", "field", ...}}`` (see :func:`podcast.http.responses.error_body`)."""
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "field"],
                "additionalProperties": True,
                "properties": {
                    "code": {
                        "type": "string",
                        "description": "Stable, machine-readable (e.g. invalid_request, rate_limited).",
                        "x-ms-summary": "Error Code",
                    },
                    "message": {
                        "type": "string",
                        "description": "What went wrong and what is allowed; never repeats the text.",
                        "x-ms-summary": "Error Message",
                    },
                    "field": {
                        "type": "string",
                        "x-nullable": True,
                        "description": "The request field or header at fault, if any.",
                        "x-ms-summary": "Field",
                    },
                    "setting": {
                        "type": "string",
                        "description": "The missing or malformed app setting (not_configured).",
                        "x-ms-summary": "Setting",
                    },
                },
            }
        },
        "example": {
            "error": {
                "code": "missing_field",
                "message": "text is required; send the text to narrate as a JSON string",
                "field": "text",
            }
        },
    }


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
        400: "Invalid request: not JSON, or a missing, unknown or invalid field or header (see field).",
        404: "No job with this id.",
        413: "Text or body too long.",
        422: "Idempotency-Key already used with a different request.",
        429: "Azure OpenAI is rate limiting; Retry-After says when to try again.",
        502: "Azure OpenAI or Storage refused or failed the narration.",
        503: "Azure OpenAI or Storage unreachable, a setting missing, or a queued job stalled.",
        504: "The narration did not finish in time.",
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
            **_errors(400, 413, 422, 429, 502, 503, 504),
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
            **_errors(404, 429, 502, 503, 504),
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
            "/health": {"get": health},
        },
        "definitions": {
            "NarrationRequest": request_schema(),
            "NarrationResult": result_schema(),
            "NarrationJob": job_schema(),
            "Usage": usage_schema(),
            "Error": error_schema(),
        },
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
