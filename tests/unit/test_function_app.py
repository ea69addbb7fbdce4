"""The Functions entry points without any service: ``GET /api/health`` called as the host
calls it, the function index the host reads (routes, methods, auth levels, triggers), and
what indexing it (``import function_app``) and the light functions load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any, Final

import pytest

import function_app
from testkit import host
from testkit.modules import NARRATING_STACK, REPO_ROOT, under

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


# --- What a cold start loads ----------------------------------------------------------------------

HANDLER_ONLY: Final = (
    "podcast.wire",
    "podcast.models",
    "podcast.services",
    "podcast.engine",
    "podcast.http.openapi",
    "podcast.http.shows",
)
"""Our modules that only some functions need: they load on a function's first call."""
HEALTH_AND_OPENAPI: Final = """
import asyncio
import function_app
from testkit import host

async def main():
    health = await host.call_http(function_app.health, host.http_request("GET", "health"))
    openapi = await host.call_http(function_app.openapi, host.http_request("GET", "openapi.json"))
    print(json.dumps([health.status, openapi.status]))

asyncio.run(main())
"""


def loaded_after(code: str) -> tuple[list[str], set[str]]:
    """The last line ``code`` printed (as JSON) and the modules loaded in a fresh interpreter
    without any app setting (the probe's own ``json`` and ``sys`` are loaded first)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "NARRATION_"))}
    probe = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    *printed, modules = done.stdout.strip().splitlines()
    return printed, set(json.loads(modules))


def test_indexing_the_functions_loads_only_what_every_function_needs() -> None:
    _, modules = loaded_after("import function_app")
    assert {"function_app", "podcast.settings", "podcast.app", "azure.storage.blob.aio"} <= modules
    assert under(modules, HANDLER_ONLY + NARRATING_STACK) == []


def test_health_and_openapi_load_neither_the_realtime_stack_nor_numpy() -> None:
    printed, modules = loaded_after(HEALTH_AND_OPENAPI)
    assert json.loads(printed[-1]) == [503, 200], "health names the missing settings; the definition"
    assert "podcast.http.openapi" in modules, "the probe sees what a call loads"
    assert under(modules, NARRATING_STACK) == []


def test_the_probe_sees_the_narrating_stack_when_it_is_loaded() -> None:
    """The checks above could fail: a narrating import shows up in the same probe."""
    _, modules = loaded_after("import function_app, podcast.engine.realtime, podcast.audio.loudness")
    assert {"openai", "websockets", "numpy", "podcast.wire"} <= set(
        under(modules, NARRATING_STACK + HANDLER_ONLY)
    )
