"""The Power Platform custom connector package (connector/): current, valid against the
PowerPlatformConnectors JSON schemas (vendored in connector/schemas), clean under the
certification rules that can be checked offline, and with a usable icon."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from PIL import Image

from podcast.http.connector import FINAL_STATUS, certification_problems, connector_definition
from podcast.http.openapi import build_definition, render

ROOT = Path(__file__).resolve().parents[2]
CONNECTOR = ROOT / "connector"
SCHEMAS = CONNECTOR / "schemas"


COMMENT_OR_STRING = re.compile(r'("(?:\\.|[^"\\])*")|//[^\n]*')
"""A JSON string (kept) or a ``//`` comment outside strings (dropped)."""


def load_schema(name: str) -> dict[str, Any]:
    """A vendored schema. Upstream's files hold ``//`` comments, which JSON does not allow:
    they are dropped (``//`` inside strings, as in URLs, is kept)."""
    text = (SCHEMAS / name).read_text(encoding="utf-8")
    return dict(json.loads(COMMENT_OR_STRING.sub(lambda m: m.group(1) or "", text)))


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return connector_definition()


@pytest.fixture(scope="module")
def swagger_validator() -> jsonschema.protocols.Validator:
    schema = load_schema("apiDefinition.swagger.schema.json")
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def api_properties() -> dict[str, Any]:
    return dict(json.loads((CONNECTOR / "apiProperties.json").read_text(encoding="utf-8")))


# --- The files -----------------------------------------------------------------------------------


def test_the_committed_definition_is_the_generated_one(definition: dict[str, Any]) -> None:
    committed = (CONNECTOR / "apiDefinition.swagger.json").read_text(encoding="utf-8")
    assert committed == render(definition), (
        "connector/apiDefinition.swagger.json is out of date: run "
        "python -m podcast.http.connector --write connector/apiDefinition.swagger.json"
    )


def test_the_schemas_name_their_source() -> None:
    source = (SCHEMAS / "SOURCE.md").read_text(encoding="utf-8")
    assert "microsoft/PowerPlatformConnectors" in source
    for schema in SCHEMAS.glob("*.json"):
        assert schema.name in source


# --- The PowerPlatformConnectors schemas ---------------------------------------------------------


def test_the_definition_is_valid_against_the_connector_schema(
    definition: dict[str, Any], swagger_validator: jsonschema.protocols.Validator
) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in swagger_validator.iter_errors(definition)]
    assert errors == []


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d["paths"]["/narrations/{id}"]["get"]["parameters"][0].update({"in": "cookie"}),
        lambda d: d["paths"]["/narrations"]["post"].update({"x-ms-unknown": True}),
        lambda d: d.update({"host": "https://with-a-scheme.example"}),
    ],
    ids=["parameter-location", "unknown-x-ms-extension", "host-with-scheme"],
)
def test_the_connector_schema_catches_a_broken_definition(
    definition: dict[str, Any], swagger_validator: jsonschema.protocols.Validator, breakage: Any
) -> None:
    broken = copy.deepcopy(definition)
    breakage(broken)
    assert list(swagger_validator.iter_errors(broken))


def test_api_properties_are_valid_against_their_schema() -> None:
    schema = load_schema("paconn-apiProperties.schema.json")
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert [e.message for e in validator.iter_errors(api_properties())] == []
    broken = api_properties()
    del broken["properties"]["iconBrandColor"]
    assert list(validator.iter_errors(broken))


def test_the_connection_asks_for_a_function_key_sent_as_x_functions_key(definition: dict[str, Any]) -> None:
    parameters = api_properties()["properties"]["connectionParameters"]
    assert parameters["api_key"]["type"] == "securestring"
    assert parameters["api_key"]["uiDefinition"]["constraints"]["required"] == "true"
    [scheme] = definition["securityDefinitions"].values()
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "x-functions-key")
    assert definition["security"] == [{name: []} for name in definition["securityDefinitions"]]


# --- Certification rules -------------------------------------------------------------------------


def test_the_definition_passes_the_offline_certification_rules(definition: dict[str, Any]) -> None:
    assert certification_problems(definition) == []


def test_the_plain_openapi_definition_would_not_pass() -> None:
    problems = certification_problems(build_definition())
    assert any("beside $ref" in p for p in problems)
    assert any("responses with a schema" in p for p in problems)
    assert any("x-ms-url-encoding" in p for p in problems)


@pytest.mark.parametrize(
    ("breakage", "problem"),
    [
        (
            lambda d: d["paths"]["/narrations"]["post"]["responses"]["default"].update(
                {"schema": {"type": "object"}}
            ),
            "the default response has a schema",
        ),
        (
            lambda d: d["paths"]["/narrations"]["post"]["responses"]["400"].update(
                {"schema": {"type": "object"}}
            ),
            "the 400 response has a schema",
        ),
        (
            lambda d: d["paths"]["/narrations"]["post"]["responses"]["200"]["schema"].update(
                {"description": "x"}
            ),
            "beside $ref",
        ),
        (
            lambda d: d["paths"]["/narrations/{id}"]["get"]["parameters"][0].pop("x-ms-url-encoding"),
            "has no x-ms-url-encoding",
        ),
        (lambda d: d["paths"]["/narrations"]["post"].pop("summary"), "no summary"),
        (lambda d: d["paths"]["/narrations"]["post"].pop("description"), "no description"),
        (
            lambda d: d["paths"]["/narrations"]["post"]["parameters"][0].pop("x-ms-summary"),
            "parameter Prefer has no x-ms-summary",
        ),
        (
            lambda d: d["definitions"]["NarrationResult"]["properties"]["audio_url"].pop("x-ms-summary"),
            "property audio_url has no x-ms-summary",
        ),
        (
            lambda d: d["definitions"]["NarrationRequest"]["properties"]["text"].pop("description"),
            "property text has no description",
        ),
        (
            lambda d: d["paths"]["/narrations"]["post"]["responses"]["202"].update(
                {"schema": {"type": "object"}}
            ),
            "2 responses with a schema",
        ),
    ],
)
def test_each_rule_catches_its_breakage(definition: dict[str, Any], breakage: Any, problem: str) -> None:
    broken = copy.deepcopy(definition)
    breakage(broken)
    assert any(problem in p for p in certification_problems(broken)), certification_problems(broken)


def test_the_connector_has_the_apis_operations_and_parameters(definition: dict[str, Any]) -> None:
    source = build_definition()
    for path, item in source["paths"].items():
        for method, operation in item.items():
            mine = definition["paths"][path][method]
            assert mine["operationId"] == operation["operationId"]
            assert [p["name"] for p in mine.get("parameters", [])] == [
                p["name"] for p in operation.get("parameters", [])
            ]
            assert set(mine["responses"]) == set(operation["responses"])
            assert mine["responses"][FINAL_STATUS].get("schema") == operation["responses"][FINAL_STATUS].get(
                "schema"
            )
    assert definition["definitions"]["NarrationRequest"]["properties"].keys() == (
        source["definitions"]["NarrationRequest"]["properties"].keys()
    )


def test_the_async_operation_keeps_location_and_retry_after(definition: dict[str, Any]) -> None:
    accepted = definition["paths"]["/narrations"]["post"]["responses"]["202"]
    assert set(accepted["headers"]) == {"Location", "Retry-After"}
    prefer = definition["paths"]["/narrations"]["post"]["parameters"][0]
    assert (prefer["name"], prefer["default"], prefer["x-ms-visibility"]) == (
        "Prefer",
        "respond-async",
        "internal",
    )


def test_the_host_can_be_the_apps(definition: dict[str, Any]) -> None:
    mine = connector_definition(host="func-abc-hash.eastus2-01.azurewebsites.net")
    assert mine["host"] == "func-abc-hash.eastus2-01.azurewebsites.net"
    assert {**mine, "host": definition["host"]} == definition


def test_the_title_meets_the_naming_rules(definition: dict[str, Any]) -> None:
    title = definition["info"]["title"]
    assert len(title) <= 30
    assert not {"api", "connector"} & set(title.lower().split())


# --- The icon -------------------------------------------------------------------------------------


def test_the_icon_is_a_square_png_on_the_brand_colour() -> None:
    path = CONNECTOR / "icon.png"
    assert path.stat().st_size < 1_000_000
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert width == height
        assert 100 <= width <= 230
        rgba = image.convert("RGBA")
        brand = api_properties()["properties"]["iconBrandColor"]
        expected = (*(int(brand[i : i + 2], 16) for i in (1, 3, 5)), 255)
        for corner in ((0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1)):
            assert rgba.getpixel(corner) == expected
        assert expected[:3] != (255, 255, 255)
        assert rgba.getchannel("A").getextrema() == (255, 255), "the icon must be opaque"
        assert len(rgba.getcolors(maxcolors=1 << 16) or ()) > 2, "the icon has no drawing"
