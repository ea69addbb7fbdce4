"""Settings read from the environment: normalisation, defaults and errors that name the setting."""

from __future__ import annotations

import pytest

from podcast.errors import ConfigurationError
from podcast.settings import (
    API_KEY_SETTING,
    DEPLOYMENT_SETTING,
    ENDPOINT_SETTING,
    INPUT_CONTAINER_SETTING,
    OUTPUT_CONTAINER_SETTING,
    RETRIES_SETTING,
    STORAGE_SETTING,
    TIMEOUT_SETTING,
    VOICE_SETTING,
    RealtimeSettings,
    StorageSettings,
    default_voice,
    parse_realtime_endpoint,
    realtime_base_url,
)

SECRET_KEY = "sk-0123456789abcdef-SECRET"
ENDPOINT = "https://myres.openai.azure.com"

# --- realtime_base_url ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("https://myres.openai.azure.com", "wss://myres.openai.azure.com/openai/v1"),
        ("https://myres.openai.azure.com/", "wss://myres.openai.azure.com/openai/v1"),
        ("https://myres.openai.azure.com/openai/v1", "wss://myres.openai.azure.com/openai/v1"),
        ("https://myres.openai.azure.com/openai/v1/", "wss://myres.openai.azure.com/openai/v1"),
        ("https://myres.openai.azure.com/openai", "wss://myres.openai.azure.com/openai/v1"),
        ("  https://myres.openai.azure.com  ", "wss://myres.openai.azure.com/openai/v1"),
        ("HTTPS://myres.openai.azure.com/OpenAI/V1", "wss://myres.openai.azure.com/openai/v1"),
        ("http://127.0.0.1:8765", "ws://127.0.0.1:8765/openai/v1"),
        ("http://127.0.0.1:8765/openai/v1", "ws://127.0.0.1:8765/openai/v1"),
        ("wss://myres.openai.azure.com/openai/v1", "wss://myres.openai.azure.com/openai/v1"),
        ("ws://localhost:9000", "ws://localhost:9000/openai/v1"),
        ("https://gateway.example.com/aoai", "wss://gateway.example.com/aoai/openai/v1"),
        ("https://myres.cognitiveservices.azure.com", "wss://myres.cognitiveservices.azure.com/openai/v1"),
        (
            "https://myres.cognitiveservices.azure.com/openai/v1/",
            "wss://myres.cognitiveservices.azure.com/openai/v1",
        ),
        ("https://myres.services.ai.azure.com/", "wss://myres.services.ai.azure.com/openai/v1"),
        ("https://myres.services.ai.azure.com/openai/v1", "wss://myres.services.ai.azure.com/openai/v1"),
        (
            "wss://myres.openai.azure.com/openai/v1/realtime?model=rt",
            "wss://myres.openai.azure.com/openai/v1",
        ),
        (
            "https://myres.openai.azure.com/openai/v1/realtime/?model=rt",
            "wss://myres.openai.azure.com/openai/v1",
        ),
        (
            "wss://myres.openai.azure.com/openai/realtime?api-version=2025-04-01-preview&deployment=rt",
            "wss://myres.openai.azure.com/openai/v1",
        ),
        ("https://myres.openai.azure.com/?api-version=2025-04-01", "wss://myres.openai.azure.com/openai/v1"),
        ("http://localhost:8765/openai/v1/realtime?model=rt", "ws://localhost:8765/openai/v1"),
        ("http://[::1]:8765", "ws://[::1]:8765/openai/v1"),
    ],
)
def test_realtime_base_url_normalises(endpoint: str, expected: str) -> None:
    assert realtime_base_url(endpoint) == expected


@pytest.mark.parametrize(
    ("endpoint", "problem"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("https://myres.openai.azure.com/?api-key=abc", "query string"),
        ("https://myres.openai.azure.com/openai/v1/realtime?model=a&deployment=b", "two different"),
        ("https://myres.openai.azure.com/openai/v1/realtime?model=a%2Fb", "not a deployment name"),
        ("https://myres.openai.azure.com/openai/v1/realtime?model=" + "x" * 65, "not a deployment name"),
        ("https://myres.openai.azure.com/#frag", "fragment"),
        ("https://myres.services.ai.azure.com/api/projects/myproject", "AI Foundry project"),
        ("https://myres.services.ai.azure.com/api/projects/p/openai/v1", "AI Foundry project"),
        ("https://myres.openai.azure.com/openai/deployments/rt", "path Azure OpenAI does not serve"),
        ("http://myres.openai.azure.com", "must use https://"),
        ("ws://10.0.0.5:8765", "must use https://"),
        ("http://127.0.0.1.example.com:8765", "must use https://"),
        ("ftp://myres.openai.azure.com", "https://"),
        ("myres.openai.azure.com", "https://"),
        ("https://", "https://"),
        ("https://user:pw@myres.openai.azure.com", "user name or password"),
        ("https://myres.openai.azure.com:notaport", "not a valid URL"),
    ],
)
def test_realtime_base_url_rejects(endpoint: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        realtime_base_url(endpoint)
    assert caught.value.setting == ENDPOINT_SETTING
    assert problem in caught.value.message
    assert caught.value.message.startswith(ENDPOINT_SETTING)


def test_a_deployment_name_at_the_length_limit_is_taken_from_the_endpoint() -> None:
    name = "x" * 64
    assert parse_realtime_endpoint(ENDPOINT + "/openai/v1/realtime?model=" + name).deployment == name
    assert parse_realtime_endpoint(ENDPOINT + "/openai/v1/realtime?model=a&model=a").deployment == "a"
    assert parse_realtime_endpoint(ENDPOINT + "/openai/v1").deployment is None


def test_the_project_endpoint_error_says_what_to_set() -> None:
    with pytest.raises(ConfigurationError) as caught:
        realtime_base_url("https://myres.services.ai.azure.com/api/projects/myproject")
    assert "https://<resource>.services.ai.azure.com" in caught.value.message
    assert "myproject" not in caught.value.message


def test_realtime_base_url_errors_do_not_echo_credentials() -> None:
    with pytest.raises(ConfigurationError) as caught:
        realtime_base_url("https://user:hunter2@myres.openai.azure.com")
    assert "hunter2" not in str(caught.value)


# --- RealtimeSettings -------------------------------------------------------------------


def test_realtime_settings_with_key() -> None:
    settings = RealtimeSettings.from_env(
        {
            ENDPOINT_SETTING: ENDPOINT + "/",
            DEPLOYMENT_SETTING: "my-realtime",
            API_KEY_SETTING: f"  {SECRET_KEY}  ",
            TIMEOUT_SETTING: "42.5",
            RETRIES_SETTING: "5",
        }
    )
    assert settings.endpoint == "wss://myres.openai.azure.com/openai/v1"
    assert settings.deployment == "my-realtime"
    assert settings.api_key == SECRET_KEY
    assert settings.auth_mode == "key"
    assert settings.response_timeout_seconds == 42.5
    assert settings.max_retries == 5
    assert SECRET_KEY not in repr(settings)


def test_realtime_settings_defaults_to_managed_identity() -> None:
    settings = RealtimeSettings.from_env({ENDPOINT_SETTING: ENDPOINT, API_KEY_SETTING: "  "})
    assert settings.api_key is None
    assert settings.auth_mode == "managed_identity"
    assert settings.deployment == "gpt-realtime-mini"
    assert settings.response_timeout_seconds == 180.0
    assert settings.max_retries == 3


def test_realtime_settings_for_the_local_emulator() -> None:
    settings = RealtimeSettings.from_env(
        {ENDPOINT_SETTING: "http://127.0.0.1:8765", API_KEY_SETTING: "emulator-key"}
    )
    assert settings.endpoint == "ws://127.0.0.1:8765/openai/v1"


def test_missing_endpoint_names_the_setting_and_not_the_key() -> None:
    with pytest.raises(ConfigurationError) as caught:
        RealtimeSettings.from_env({API_KEY_SETTING: SECRET_KEY})
    error = caught.value
    assert error.setting == ENDPOINT_SETTING
    assert ENDPOINT_SETTING in error.message
    assert "is not set" in error.message
    assert SECRET_KEY not in str(error)
    assert SECRET_KEY not in repr(error.to_dict())
    assert error.http_status == 503


def test_endpoint_with_query_is_rejected_without_echoing_the_key() -> None:
    with pytest.raises(ConfigurationError) as caught:
        RealtimeSettings.from_env(
            {ENDPOINT_SETTING: ENDPOINT + "?api-key=" + SECRET_KEY, API_KEY_SETTING: SECRET_KEY}
        )
    assert caught.value.setting == ENDPOINT_SETTING
    assert SECRET_KEY not in str(caught.value)


@pytest.mark.parametrize(
    "endpoint",
    [
        ENDPOINT + "/openai/v1/realtime?model=my-rt",
        "wss://myres.openai.azure.com/openai/v1/realtime?model=my-rt",
        ENDPOINT + "/openai/realtime?api-version=2025-04-01-preview&deployment=my-rt",
    ],
)
def test_the_deployment_comes_from_a_pasted_target_uri_when_it_is_not_set(endpoint: str) -> None:
    settings = RealtimeSettings.from_env({ENDPOINT_SETTING: endpoint})
    assert (settings.endpoint, settings.deployment) == ("wss://myres.openai.azure.com/openai/v1", "my-rt")
    assert RealtimeSettings(endpoint=endpoint).deployment == "my-rt"


def test_a_deployment_set_twice_must_agree() -> None:
    uri = ENDPOINT + "/openai/v1/realtime?model=my-rt"
    agreed = RealtimeSettings.from_env({ENDPOINT_SETTING: uri, DEPLOYMENT_SETTING: "my-rt"})
    assert agreed.deployment == "my-rt"
    with pytest.raises(ConfigurationError) as caught:
        RealtimeSettings.from_env({ENDPOINT_SETTING: uri, DEPLOYMENT_SETTING: "other-rt"})
    assert caught.value.setting == DEPLOYMENT_SETTING
    assert ENDPOINT_SETTING in caught.value.message
    assert DEPLOYMENT_SETTING in caught.value.message
    assert "other-rt" not in caught.value.message
    assert "my-rt" not in caught.value.message
    with pytest.raises(ConfigurationError):
        RealtimeSettings(endpoint=uri, deployment="other-rt")


@pytest.mark.parametrize("deployment", ["a/b", "name?x", "has space", "x" * 65])
def test_bad_deployment_names_are_rejected(deployment: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RealtimeSettings.from_env({ENDPOINT_SETTING: ENDPOINT, DEPLOYMENT_SETTING: deployment})
    assert caught.value.setting == DEPLOYMENT_SETTING


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        (TIMEOUT_SETTING, "soon"),
        (TIMEOUT_SETTING, "0.5"),
        (TIMEOUT_SETTING, "3601"),
        (RETRIES_SETTING, "2.5"),
        (RETRIES_SETTING, "-1"),
        (RETRIES_SETTING, "11"),
    ],
)
def test_out_of_range_numbers_are_rejected(setting: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RealtimeSettings.from_env({ENDPOINT_SETTING: ENDPOINT, setting: value})
    assert caught.value.setting == setting
    assert value not in caught.value.message


def test_realtime_settings_read_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENDPOINT_SETTING, "http://127.0.0.1:9999")
    monkeypatch.delenv(API_KEY_SETTING, raising=False)
    assert RealtimeSettings.from_env().endpoint == "ws://127.0.0.1:9999/openai/v1"


# --- default_voice ----------------------------------------------------------------------


def test_default_voice_is_marin() -> None:
    assert default_voice({}) == "marin"
    assert default_voice({VOICE_SETTING: "  "}) == "marin"


def test_default_voice_from_setting() -> None:
    assert default_voice({VOICE_SETTING: "cedar"}) == "cedar"


@pytest.mark.parametrize("voice", ["nova", "not-a-voice"])
def test_unknown_default_voice_names_the_setting(voice: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        default_voice({VOICE_SETTING: voice})
    assert caught.value.setting == VOICE_SETTING
    assert caught.value.message.startswith(VOICE_SETTING)


# --- StorageSettings --------------------------------------------------------------------


def test_storage_from_connection_string() -> None:
    connection_string = (
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net"
    )
    settings = StorageSettings.from_env({STORAGE_SETTING: connection_string})
    assert settings.connection_string == connection_string
    assert settings.blob_service_uri is None
    assert settings.auth_mode == "connection_string"
    assert settings.output_container == "narrations"
    assert settings.input_container == "narration-input"
    assert "c2VjcmV0" not in repr(settings)


def test_storage_development_storage() -> None:
    settings = StorageSettings.from_env({STORAGE_SETTING: "UseDevelopmentStorage=true"})
    assert settings.connection_string == "UseDevelopmentStorage=true"


def test_storage_identity_based_connection() -> None:
    settings = StorageSettings.from_env(
        {
            f"{STORAGE_SETTING}__blobServiceUri": "https://acct.blob.core.windows.net/",
            f"{STORAGE_SETTING}__queueServiceUri": "https://acct.queue.core.windows.net/",
            f"{STORAGE_SETTING}__clientId": "11111111-2222-3333-4444-555555555555",
            f"{STORAGE_SETTING}__credential": "managedidentity",
        }
    )
    assert settings.connection_string is None
    assert settings.blob_service_uri == "https://acct.blob.core.windows.net"
    assert settings.queue_service_uri == "https://acct.queue.core.windows.net"
    assert settings.client_id == "11111111-2222-3333-4444-555555555555"
    assert settings.auth_mode == "managed_identity"


def test_storage_service_uri_form_and_azure_client_id() -> None:
    settings = StorageSettings.from_env(
        {f"{STORAGE_SETTING}__serviceUri": "https://acct.blob.core.windows.net", "AZURE_CLIENT_ID": "cid"}
    )
    assert settings.blob_service_uri == "https://acct.blob.core.windows.net"
    assert settings.queue_service_uri is None
    assert settings.client_id == "cid"


def test_storage_connection_specific_client_id_wins() -> None:
    settings = StorageSettings.from_env(
        {
            f"{STORAGE_SETTING}__blobServiceUri": "https://acct.blob.core.windows.net",
            f"{STORAGE_SETTING}__clientId": "specific",
            "AZURE_CLIENT_ID": "global",
        }
    )
    assert settings.client_id == "specific"


def test_storage_connection_string_wins_over_service_uri() -> None:
    settings = StorageSettings.from_env(
        {
            STORAGE_SETTING: "UseDevelopmentStorage=true",
            f"{STORAGE_SETTING}__blobServiceUri": "https://acct.blob.core.windows.net",
        }
    )
    assert settings.auth_mode == "connection_string"
    assert settings.blob_service_uri is None


def test_storage_other_prefix() -> None:
    settings = StorageSettings.from_env(
        {"AzureWebJobsStorage__blobServiceUri": "https://acct.blob.core.windows.net"},
        prefix="AzureWebJobsStorage",
    )
    assert settings.blob_service_uri == "https://acct.blob.core.windows.net"


def test_storage_missing_names_both_forms() -> None:
    with pytest.raises(ConfigurationError) as caught:
        StorageSettings.from_env({})
    assert caught.value.setting == STORAGE_SETTING
    assert f"{STORAGE_SETTING}__blobServiceUri" in caught.value.message
    assert "UseDevelopmentStorage=true" in caught.value.message


def test_storage_connection_string_without_pairs_is_rejected_without_echo() -> None:
    with pytest.raises(ConfigurationError) as caught:
        StorageSettings.from_env({STORAGE_SETTING: "c2VjcmV0LWtleQ"})
    assert caught.value.setting == STORAGE_SETTING
    assert "c2VjcmV0LWtleQ" not in str(caught.value)


@pytest.mark.parametrize(
    ("setting", "uri"),
    [
        (f"{STORAGE_SETTING}__blobServiceUri", "acct.blob.core.windows.net"),
        (f"{STORAGE_SETTING}__queueServiceUri", "ftp://acct.queue.core.windows.net"),
    ],
)
def test_storage_service_uris_must_be_urls(setting: str, uri: str) -> None:
    env = {f"{STORAGE_SETTING}__blobServiceUri": "https://acct.blob.core.windows.net", setting: uri}
    with pytest.raises(ConfigurationError) as caught:
        StorageSettings.from_env(env)
    assert caught.value.setting == setting


def test_storage_custom_containers() -> None:
    settings = StorageSettings.from_env(
        {
            STORAGE_SETTING: "UseDevelopmentStorage=true",
            OUTPUT_CONTAINER_SETTING: "podcast-out-2",
            INPUT_CONTAINER_SETTING: " in1 ",
        }
    )
    assert settings.output_container == "podcast-out-2"
    assert settings.input_container == "in1"


@pytest.mark.parametrize(
    "name", ["ab", "x" * 64, "Upper", "under_score", "-lead", "trail-", "dou--ble", "sp ace", "dot.ted"]
)
@pytest.mark.parametrize("setting", [OUTPUT_CONTAINER_SETTING, INPUT_CONTAINER_SETTING])
def test_storage_invalid_container_names(setting: str, name: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        StorageSettings.from_env({STORAGE_SETTING: "UseDevelopmentStorage=true", setting: name})
    assert caught.value.setting == setting
    assert "container name" in caught.value.message


@pytest.mark.parametrize("name", ["abc", "a" * 63, "a-1-b", "123"])
def test_storage_valid_container_names(name: str) -> None:
    settings = StorageSettings.from_env(
        {STORAGE_SETTING: "UseDevelopmentStorage=true", OUTPUT_CONTAINER_SETTING: name}
    )
    assert settings.output_container == name
