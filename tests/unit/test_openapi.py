"""The OpenAPI 2.0 definition (openapi.json, and GET /api/openapi.json): valid Swagger 2.0,
current, and true to the request model and to real responses."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, get_args

import pytest
from openapi_schema_validator import OAS30Validator, validate
from openapi_spec_validator import OpenAPIV2SpecValidator
from openapi_spec_validator import validate as validate_spec
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

import function_app
from podcast.errors import RequestValidationError
from podcast.http.openapi import DEFAULT_HOST, build_definition, render, sample_response
from podcast.models import (
    DEFAULT_MAX_SAS_EXPIRY_MINUTES,
    DEFAULT_MAX_TEXT_CHARACTERS,
    EPISODE_STYLES,
    MAX_CONVERSATION_MINUTES,
    MAX_INSTRUCTIONS_CHARACTERS,
    MAX_TITLE_CHARACTERS,
    MIN_TARGET_MINUTES,
    MODES,
    READ_STYLES,
    NarrationRequest,
    RequestLimits,
    Style,
    parse_request,
)
from podcast.voices import DEFAULT_VOICE, REALTIME_VOICES
from podcast.wire import Usage
from testkit import host
from testkit.openapi import openapi_schema

COMMITTED = Path(__file__).resolve().parents[2] / "openapi.json"


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return build_definition()


# --- The file ----------------------------------------------------------------------------------


def test_the_committed_openapi_json_is_the_generated_definition(definition: dict[str, Any]) -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(definition), (
        "openapi.json is out of date: run python -m podcast.http.openapi --write openapi.json"
    )


FILE_OPERATIONS = ("audio", "captions.vtt", "captions.srt", "transcript.json", "chapters.json")


def _without_file_schemas(definition: dict[str, Any]) -> dict[str, Any]:
    """The definition with each response ``{"type": "file"}`` made a binary string.

    Swagger 2.0 allows ``file`` as the root type of a Response Object's schema (and custom
    connectors use it for downloads), but the validator's JSON Schema of 2.0 does not know
    it (a known gap of the published schema.json), so the file responses are checked by
    ``test_downloads_are_files_of_their_content_type`` instead.
    """
    copied = copy.deepcopy(definition)
    for name in FILE_OPERATIONS:
        for response in copied["paths"][f"/narrations/{{id}}/{name}"]["get"]["responses"].values():
            if response.get("schema") == {"type": "file"}:
                response["schema"] = {"type": "string", "format": "binary"}
    return copied


def test_the_definition_is_valid_openapi_2(definition: dict[str, Any]) -> None:
    validate_spec(_without_file_schemas(definition), cls=OpenAPIV2SpecValidator)
    assert definition["swagger"] == "2.0"


def test_downloads_are_files_of_their_content_type(definition: dict[str, Any]) -> None:
    produces = {
        "audio": ["audio/wav", "audio/mpeg"],
        "captions.vtt": ["text/vtt"],
        "captions.srt": ["application/x-subrip"],
        "transcript.json": ["application/json"],
        "chapters.json": ["application/json+chapters"],
    }
    for name in FILE_OPERATIONS:
        operation = definition["paths"][f"/narrations/{{id}}/{name}"]["get"]
        assert operation["produces"] == produces[name]
        responses = operation["responses"]
        assert responses["200"]["schema"] == responses["206"]["schema"] == {"type": "file"}
        assert responses["404"]["schema"] == {"$ref": "#/definitions/Error"}
        assert "416" in responses
        assert [p["name"] for p in operation["parameters"]] == ["id", "Range", "If-None-Match"]
        assert "304" in responses
    text = json.dumps(_without_file_schemas(definition))
    assert '"file"' not in text  # no other schema uses the file type


def test_the_validator_would_catch_a_broken_definition(definition: dict[str, Any]) -> None:
    broken = copy.deepcopy(definition)
    broken["paths"]["/narrations"]["post"]["parameters"][0]["in"] = "cookie"
    with pytest.raises(OpenAPIValidationError):
        validate_spec(broken, cls=OpenAPIV2SpecValidator)


def test_the_async_operation_declares_202_with_location_and_retry_after(definition: dict[str, Any]) -> None:
    create = definition["paths"]["/narrations"]["post"]
    for operation in (create, definition["paths"]["/narrations/{id}"]["get"]):
        accepted = operation["responses"]["202"]
        assert set(accepted["headers"]) == {"Location", "Retry-After"}
        assert accepted["schema"] == {"$ref": "#/definitions/NarrationJob"}
        assert operation["responses"]["200"]["schema"] == {"$ref": "#/definitions/NarrationResult"}
        assert operation["responses"]["default"]["schema"] == {"$ref": "#/definitions/Error"}
    prefer = next(p for p in create["parameters"] if p["name"] == "Prefer")
    assert (prefer["required"], prefer["default"], prefer["x-ms-visibility"]) == (
        True,
        "respond-async",
        "internal",
    )
    assert definition["securityDefinitions"]["function_key"]["name"] == "x-functions-key"


# --- The request: every field, enum and bound of the model ----------------------------------------


def test_the_request_schema_has_exactly_the_model_fields_and_defaults(definition: dict[str, Any]) -> None:
    schema = definition["definitions"]["NarrationRequest"]
    properties = schema["properties"]

    assert list(properties) == list(NarrationRequest.model_fields)
    assert "required" not in schema, "text or script: neither is required alone"
    assert schema["additionalProperties"] is False
    assert properties["mode"]["enum"] == list(MODES)
    assert properties["style"]["enum"] == list(get_args(Style))
    assert set(READ_STYLES) | set(EPISODE_STYLES) == set(properties["style"]["enum"])
    assert properties["voice"]["enum"] == list(REALTIME_VOICES)
    defaults = {name: prop.get("default") for name, prop in properties.items()}
    assert defaults == {
        "text": None,
        "mode": "read",
        "target_minutes": 2.0,
        "style": "podcast",
        "voice": DEFAULT_VOICE,
        "language": None,
        "instructions": None,
        "title": None,
        "format": None,  # wav, or mp3 for a show's episode: a form must not send "wav"
        "sas_expiry_minutes": 60,
        "show": None,
        "speakers": None,
        "script": None,
        "chapters": None,
    }
    types = {name: prop["type"] for name, prop in properties.items()}
    assert types == {
        "text": "string",
        "mode": "string",
        "target_minutes": "number",
        "style": "string",
        "voice": "string",
        "language": "string",
        "instructions": "string",
        "title": "string",
        "format": "string",
        "sas_expiry_minutes": "integer",
        "show": "string",
        "speakers": "array",
        "script": "array",
        "chapters": "array",
    }
    assert all(prop["description"] and prop["x-ms-summary"] for prop in properties.values())


def test_every_enum_value_in_the_schema_is_accepted_by_the_model(definition: dict[str, Any]) -> None:
    properties = definition["definitions"]["NarrationRequest"]["properties"]
    limits = RequestLimits()
    for voice in properties["voice"]["enum"]:
        assert parse_request({"text": "hi", "voice": voice}, limits).voice == voice
    for style in READ_STYLES:
        assert parse_request({"text": "hi", "style": style}, limits).style == style
    for style in EPISODE_STYLES:
        assert parse_request({"text": "hi", "mode": "episode", "style": style}, limits).style == style


BOUNDS: list[tuple[str, str, Any, dict[str, Any], Any]] = [
    # field, schema keyword, limit, other fields, value just past the limit
    ("text", "maxLength", DEFAULT_MAX_TEXT_CHARACTERS, {}, "x" * (DEFAULT_MAX_TEXT_CHARACTERS + 1)),
    ("instructions", "maxLength", MAX_INSTRUCTIONS_CHARACTERS, {}, "x" * (MAX_INSTRUCTIONS_CHARACTERS + 1)),
    ("title", "maxLength", MAX_TITLE_CHARACTERS, {}, "x" * (MAX_TITLE_CHARACTERS + 1)),
    (
        "target_minutes",
        "maximum",
        MAX_CONVERSATION_MINUTES,
        {"mode": "conversation"},
        MAX_CONVERSATION_MINUTES + 0.5,
    ),
    ("target_minutes", "minimum", MIN_TARGET_MINUTES, {"mode": "episode"}, MIN_TARGET_MINUTES - 0.1),
    ("sas_expiry_minutes", "maximum", DEFAULT_MAX_SAS_EXPIRY_MINUTES, {}, DEFAULT_MAX_SAS_EXPIRY_MINUTES + 1),
    ("sas_expiry_minutes", "minimum", 1, {}, 0),
]


@pytest.mark.parametrize(
    ("name", "keyword", "limit", "others", "beyond"), BOUNDS, ids=[f"{b[0]} {b[1]}" for b in BOUNDS]
)
def test_each_bound_in_the_schema_is_where_the_model_starts_refusing(
    definition: dict[str, Any], name: str, keyword: str, limit: Any, others: dict[str, Any], beyond: Any
) -> None:
    prop = definition["definitions"]["NarrationRequest"]["properties"][name]
    assert prop[keyword] == limit
    at_limit = "x" * limit if keyword == "maxLength" else limit
    body = {"text": "hi", **others, name: at_limit}

    assert getattr(parse_request(body, RequestLimits()), name) == at_limit
    with pytest.raises(RequestValidationError) as refused:
        parse_request({**body, name: beyond}, RequestLimits())
    assert refused.value.field == name


# --- The responses: the keys of real bodies ----------------------------------------------------------


def test_the_result_schema_has_exactly_the_keys_of_to_response_and_of_usage(
    definition: dict[str, Any],
) -> None:
    result = definition["definitions"]["NarrationResult"]
    keys = list(sample_response().model_dump(mode="json"))

    # Absent from narrations made before captions, chapters and loudness existed (and without them).
    optional = ["captions_url", "captions_blob_name", "srt_blob_name", "chapters_blob_name", "loudness_lufs"]

    assert list(result["properties"]) == keys
    assert result["required"] == [key for key in keys if key not in optional]
    assert list(definition["definitions"]["Usage"]["properties"]) == list(Usage().model_dump())
    validate(result["example"], openapi_schema(definition, "NarrationResult"), cls=OAS30Validator)


# --- Served by the app -------------------------------------------------------------------------------


async def test_the_app_serves_the_definition_for_its_own_host() -> None:
    request = host.http_request(
        "GET", "openapi.json", url="https://myapp.azurewebsites.net/api/openapi.json?code=k"
    )

    response = await host.call_http(function_app.openapi, request)

    served = json.loads(response.get_body())
    assert response.status_code == 200
    assert served["host"] == "myapp.azurewebsites.net"
    assert served == build_definition(host="myapp.azurewebsites.net")
    assert build_definition()["host"] == DEFAULT_HOST
