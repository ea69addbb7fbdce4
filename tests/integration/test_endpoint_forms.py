"""The endpoint forms users paste, and a deployment that is not a Realtime model, through
the HTTP function as the host calls it (the emulator and an independent scripted server)."""

from __future__ import annotations

import json

import pytest

import function_app
from emulator import RealtimeEmulator
from testkit import host
from testkit.azurite import AzuriteServer
from testkit.scripted_server import ScriptedServer
from testkit.storage import blobs_in


async def narrate(text: str = "Rivers bend because water is lazy.") -> host.HttpAnswer:
    request = host.http_request("POST", "narrations", json={"text": text})
    return await host.call_http(function_app.create_narration, request)


@pytest.mark.parametrize(
    "suffix",
    [
        "/openai/v1/realtime?model=gpt-realtime-mini",
        "/openai/realtime?api-version=2025-04-01-preview&deployment=gpt-realtime-mini",
        "/openai/v1/",
    ],
)
async def test_the_portals_target_uri_works_as_the_endpoint(
    app_env: dict[str, str], emulator: RealtimeEmulator, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_AUDIO_ENDPOINT", emulator.url + suffix)
    monkeypatch.delenv("AZURE_OPENAI_AUDIO_DEPLOYMENT", raising=False)

    answer = await narrate()

    assert answer.status == 200, answer.json()
    assert [(h.path, h.model, h.status) for h in emulator.handshake_log] == [
        ("/openai/v1/realtime", "gpt-realtime-mini", 101)
    ]


async def test_the_deployment_named_in_the_endpoint_is_the_one_used(
    app_env: dict[str, str], emulator: RealtimeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_AUDIO_ENDPOINT", emulator.url + "/openai/v1/realtime?model=not-deployed")
    monkeypatch.delenv("AZURE_OPENAI_AUDIO_DEPLOYMENT", raising=False)

    answer = await narrate()

    assert answer.status == 502, answer.json()
    assert answer.json()["error"]["code"] == "deployment_not_found"
    assert [h.model for h in emulator.handshake_log] == ["not-deployed"]


async def test_settings_that_disagree_on_the_deployment_are_a_configuration_error_before_any_call(
    app_env: dict[str, str], emulator: RealtimeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AZURE_OPENAI_AUDIO_ENDPOINT", emulator.url + "/openai/v1/realtime?model=gpt-realtime-mini"
    )
    monkeypatch.setenv("AZURE_OPENAI_AUDIO_DEPLOYMENT", "gpt-realtime")

    answer = await narrate()

    error = answer.json()["error"]
    assert (answer.status, error["code"], error["setting"]) == (
        503,
        "not_configured",
        "AZURE_OPENAI_AUDIO_DEPLOYMENT",
    )
    assert "AZURE_OPENAI_AUDIO_ENDPOINT" in error["message"]
    assert emulator.handshakes == 0


async def test_a_deployment_that_is_not_a_realtime_model_is_reported_with_the_services_code(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, azurite: AzuriteServer, container_name: str
) -> None:
    body = {
        "error": {
            "code": "OperationNotSupported",
            "message": "The chatCompletion operation does not work with the specified model, gpt-4o. "
            "Please choose different model and try again.",
        }
    }
    server = ScriptedServer(
        lambda _: [], handshake_statuses=[400] * 5, handshake_body=json.dumps(body).encode()
    )
    async with server:
        monkeypatch.setenv("AZURE_OPENAI_AUDIO_ENDPOINT", server.url)
        answer = await narrate()

    error = answer.json()["error"]
    assert answer.status == 503
    assert error["code"] == "upstream_not_configured"
    assert error["upstream_code"] == "OperationNotSupported"
    assert error["setting"] == "AZURE_OPENAI_AUDIO_DEPLOYMENT"
    assert "does not work with the specified model" in error["message"]
    assert "Retry-After" not in answer.headers, "retrying cannot help until the setting changes"
    assert server.connections == 1
    assert app_env["AZURE_OPENAI_AUDIO_API_KEY"] not in json.dumps(error)
    assert blobs_in(azurite, container_name) == []
