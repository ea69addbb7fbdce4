"""Real responses of ``POST /api/narrations`` (against the emulator and Azurite) match the
OpenAPI definition's schemas."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_schema_validator import OAS30Validator, validate

import function_app
from podcast.http.openapi import build_definition
from testkit import host
from testkit.openapi import openapi_schema

ASYNC = {"Prefer": "respond-async"}


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return build_definition()


async def post(
    body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], host.HttpAnswer]:
    request = host.http_request("POST", "narrations", json=body, headers=headers)
    response = await host.call_http(function_app.create_narration, request)
    return response.status, response.json(), response


async def test_real_200_and_202_bodies_match_their_schemas(
    definition: dict[str, Any], jobs_env: dict[str, str]
) -> None:
    status, synchronous, _ = await post({"text": "Rivers bend.", "title": "Rivers", "language": "en"})
    assert status == 200
    status, accepted, _ = await post({"text": "Rivers bend slowly."}, ASYNC)
    assert status == 202
    status, refused, _ = await post({"text": "hi", "voise": "marin"})
    assert status == 400

    validate(synchronous, openapi_schema(definition, "NarrationResult"), cls=OAS30Validator)
    result = definition["definitions"]["NarrationResult"]
    # Every required key, and the optional ones it has, in the schema's order.
    assert list(synchronous) == [key for key in result["properties"] if key in synchronous]
    assert set(result["required"]) <= set(synchronous)
    validate(accepted, openapi_schema(definition, "NarrationJob"), cls=OAS30Validator)
    assert list(accepted) == list(definition["definitions"]["NarrationJob"]["properties"])
    validate(refused, openapi_schema(definition, "Error"), cls=OAS30Validator)
