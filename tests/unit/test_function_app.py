"""The Functions entry points without any service: ``GET /api/health`` called as the host
calls it, and the function index the host reads (routes, methods, auth levels, triggers)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import function_app
from testkit import host

# --- Health ---------------------------------------------------------------------------------------


async def test_health_reports_settings_and_auth_modes_without_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_AUDIO_ENDPOINT", "https://example.openai.azure.com")
    monkeypatch.setenv("AZURE_OPENAI_AUDIO_API_KEY", "super-secret-key")
    monkeypatch.setenv(
        "NARRATION_STORAGE",
        "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net",
    )
    request = host.http_request("GET", "health")

    response = await host.call_http(function_app.health, request)

    body = json.loads(response.get_body())
    assert response.status_code == 200
    assert body["realtime"]["auth_mode"] == "key"
    assert body["storage"]["auth_mode"] == "connection_string"
    assert "super-secret-key" not in response.get_body().decode()
    assert "c2VjcmV0" not in response.get_body().decode()


async def test_health_without_a_key_reports_managed_identity_and_names_missing_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_AUDIO_ENDPOINT", "https://example.openai.azure.com")
    monkeypatch.delenv("AZURE_OPENAI_AUDIO_API_KEY", raising=False)
    monkeypatch.delenv("NARRATION_STORAGE", raising=False)
    monkeypatch.delenv("NARRATION_STORAGE__blobServiceUri", raising=False)
    request = host.http_request("GET", "health")

    response = await host.call_http(function_app.health, request)

    body = json.loads(response.get_body())
    assert response.status_code == 503
    assert body["realtime"]["auth_mode"] == "managed_identity"
    assert body["storage"] == {
        "configured": False,
        "problem": body["storage"]["problem"],
        "setting": "NARRATION_STORAGE",
    }


# --- The function index ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def functions() -> Iterator[dict[str, dict[str, Any]]]:
    function_app.app.functions_bindings = None  # get_functions() is not idempotent
    yield {
        str(f.get_function_name()): json.loads(f.get_function_json())
        for f in function_app.app.get_functions()
    }
    function_app.app.functions_bindings = None


def test_the_app_exposes_the_routes_methods_and_auth_level(functions: dict[str, dict[str, Any]]) -> None:
    create = next(b for b in functions["create_narration"]["bindings"] if b["type"] == "httpTrigger")
    assert create["route"] == "narrations"
    assert create["methods"] == ["POST"]
    assert create["authLevel"] == "FUNCTION"
    health = next(b for b in functions["health"]["bindings"] if b["type"] == "httpTrigger")
    assert (health["route"], health["methods"], health["authLevel"]) == ("health", ["GET"], "FUNCTION")


def test_the_app_exposes_the_job_routes_and_the_queue_trigger(functions: dict[str, dict[str, Any]]) -> None:
    status = next(b for b in functions["get_narration"]["bindings"] if b["type"] == "httpTrigger")
    assert (status["route"], status["methods"], status["authLevel"]) == (
        "narrations/{id}",
        ["GET"],
        "FUNCTION",
    )
    spec = next(b for b in functions["openapi"]["bindings"] if b["type"] == "httpTrigger")
    assert (spec["route"], spec["methods"], spec["authLevel"]) == ("openapi.json", ["GET"], "FUNCTION")
    (trigger,) = functions["narration_worker"]["bindings"]
    assert trigger["type"] == "queueTrigger"
    assert trigger["direction"] == "IN"
    assert (trigger["name"], trigger["queueName"], trigger["connection"]) == (
        "msg",
        "%NARRATION_QUEUE%",
        "NARRATION_STORAGE",
    )


def test_the_blob_trigger_binding_uses_event_grid_and_the_shared_connection() -> None:
    function_app.app.functions_bindings = None
    functions = {
        f.get_function_name(): json.loads(f.get_function_json()) for f in function_app.app.get_functions()
    }
    [binding] = functions["narrate_document"]["bindings"]
    assert binding["type"] == "blobTrigger"
    assert binding["path"] == "%NARRATION_INPUT_CONTAINER%/{name}"
    assert binding["connection"] == "NARRATION_STORAGE"
    assert binding["source"] == "EventGrid"
