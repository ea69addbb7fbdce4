"""Settings, read from the environment (app settings in Azure, ``local.settings.json`` locally).

Every reader takes the environment as a mapping (``os.environ`` by default) so tests pass
their own. A missing or malformed setting raises :class:`~podcast.errors.ConfigurationError`
naming the setting; values are never echoed, because some are secrets.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from podcast.errors import ConfigurationError
from podcast.voices import DEFAULT_VOICE, voice_error

ENDPOINT_SETTING: Final = "AZURE_OPENAI_AUDIO_ENDPOINT"
DEPLOYMENT_SETTING: Final = "AZURE_OPENAI_AUDIO_DEPLOYMENT"
API_KEY_SETTING: Final = "AZURE_OPENAI_AUDIO_API_KEY"
VOICE_SETTING: Final = "NARRATION_DEFAULT_VOICE"
TIMEOUT_SETTING: Final = "AZURE_OPENAI_AUDIO_TIMEOUT_SECONDS"
RETRIES_SETTING: Final = "AZURE_OPENAI_AUDIO_MAX_RETRIES"

STORAGE_SETTING: Final = "NARRATION_STORAGE"
OUTPUT_CONTAINER_SETTING: Final = "NARRATION_OUTPUT_CONTAINER"
INPUT_CONTAINER_SETTING: Final = "NARRATION_INPUT_CONTAINER"

DEFAULT_DEPLOYMENT: Final = "gpt-realtime-mini"
DEFAULT_OUTPUT_CONTAINER: Final = "narrations"
DEFAULT_INPUT_CONTAINER: Final = "narration-input"
COGNITIVE_SERVICES_SCOPE: Final = "https://cognitiveservices.azure.com/.default"


def realtime_base_url(endpoint: str, *, setting: str = ENDPOINT_SETTING) -> str:
    """Turn a resource endpoint into the SDK's ``websocket_base_url`` (``.../openai/v1``).

    Accepts ``https://<resource>.openai.azure.com``, the same with a trailing slash or
    ``/openai/v1``, and ``http://127.0.0.1:PORT`` for the local emulator. ``https`` becomes
    ``wss`` and ``http`` becomes ``ws``.
    """
    url = endpoint.strip().rstrip("/")
    if not url:
        raise ConfigurationError(setting, "is empty")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        raise ConfigurationError(setting, "is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http", "wss", "ws") or not parts.hostname:
        raise ConfigurationError(
            setting, "must be an https:// URL such as https://<resource>.openai.azure.com"
        )
    if parts.username or parts.password:
        raise ConfigurationError(setting, "must not contain a user name or password")
    if parts.query or parts.fragment:
        raise ConfigurationError(setting, "must not contain a query string or fragment")
    path = parts.path.rstrip("/")
    for suffix in ("/openai/v1", "/openai"):
        if path.lower().endswith(suffix):
            path = path[: -len(suffix)]
            break
    ws_scheme = {"https": "wss", "wss": "wss", "http": "ws", "ws": "ws"}[scheme]
    return f"{ws_scheme}://{parts.netloc}{path}/openai/v1"


def int_setting(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(name, f"must be a whole number from {low} to {high}") from None
    if not low <= value <= high:
        raise ConfigurationError(name, f"must be a whole number from {low} to {high}")
    return value


def float_setting(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(name, f"must be a number from {low:g} to {high:g}") from None
    if not low <= value <= high:
        raise ConfigurationError(name, f"must be a number from {low:g} to {high:g}")
    return value


@dataclass(frozen=True, slots=True)
class RealtimeSettings:
    """How to reach the Azure OpenAI Realtime deployment.

    ``api_key`` is ``None`` when Microsoft Entra ID (managed identity) is to be used.
    """

    endpoint: str
    """The ``websocket_base_url``, already normalized (``wss://.../openai/v1``)."""
    deployment: str = DEFAULT_DEPLOYMENT
    api_key: str | None = field(default=None, repr=False)
    response_timeout_seconds: float = 180.0
    """Overall time allowed for one response, from ``response.create`` to ``response.done``."""
    max_retries: int = 3
    """Retries of transient failures (so at most ``max_retries + 1`` attempts)."""

    @property
    def auth_mode(self) -> str:
        """``"key"`` or ``"managed_identity"`` (any Entra ID credential)."""
        return "key" if self.api_key else "managed_identity"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RealtimeSettings:
        """Read the settings; raise :class:`ConfigurationError` naming what is wrong."""
        env = os.environ if env is None else env
        endpoint = env.get(ENDPOINT_SETTING, "").strip()
        if not endpoint:
            raise ConfigurationError(
                ENDPOINT_SETTING,
                "is not set; set it to your Azure OpenAI resource endpoint "
                "(https://<resource>.openai.azure.com) or to a local emulator "
                "(python -m emulator, then http://127.0.0.1:PORT)",
            )
        deployment = env.get(DEPLOYMENT_SETTING, "").strip() or DEFAULT_DEPLOYMENT
        if any(ch in deployment for ch in "/?#&= ") or len(deployment) > 64:
            raise ConfigurationError(DEPLOYMENT_SETTING, "must be a deployment name (letters, digits, - _ .)")
        api_key = env.get(API_KEY_SETTING, "").strip() or None
        return cls(
            endpoint=realtime_base_url(endpoint),
            deployment=deployment,
            api_key=api_key,
            response_timeout_seconds=float_setting(env, TIMEOUT_SETTING, 180.0, 1.0, 3600.0),
            max_retries=int_setting(env, RETRIES_SETTING, 3, 0, 10),
        )


def default_voice(env: Mapping[str, str] | None = None) -> str:
    """The voice used when a request names none (``NARRATION_DEFAULT_VOICE``, else ``marin``)."""
    env = os.environ if env is None else env
    voice = env.get(VOICE_SETTING, "").strip() or DEFAULT_VOICE
    problem = voice_error(voice)
    if problem:
        raise ConfigurationError(VOICE_SETTING, problem.replace(f"'{voice[:40]}' ", "names a voice that ", 1))
    return voice


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """How to reach Blob Storage, in the same shapes as Functions' own connections.

    Exactly one of ``connection_string`` and ``blob_service_uri`` is set. With a service
    URI, ``DefaultAzureCredential`` is used (``client_id`` selects a user-assigned identity).
    """

    connection_string: str | None = field(default=None, repr=False)
    blob_service_uri: str | None = None
    queue_service_uri: str | None = None
    client_id: str | None = None
    output_container: str = DEFAULT_OUTPUT_CONTAINER
    input_container: str = DEFAULT_INPUT_CONTAINER

    @property
    def auth_mode(self) -> str:
        """``"connection_string"`` or ``"managed_identity"``."""
        return "connection_string" if self.connection_string else "managed_identity"

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, prefix: str = STORAGE_SETTING
    ) -> StorageSettings:
        """Read ``NARRATION_STORAGE`` or ``NARRATION_STORAGE__blobServiceUri`` (and friends)."""
        env = os.environ if env is None else env
        output_container = container_setting(env, OUTPUT_CONTAINER_SETTING, DEFAULT_OUTPUT_CONTAINER)
        input_container = container_setting(env, INPUT_CONTAINER_SETTING, DEFAULT_INPUT_CONTAINER)
        connection_string = env.get(prefix, "").strip()
        blob_uri = (env.get(f"{prefix}__blobServiceUri", "") or env.get(f"{prefix}__serviceUri", "")).strip()
        queue_uri = env.get(f"{prefix}__queueServiceUri", "").strip() or None
        client_id = (env.get(f"{prefix}__clientId", "") or env.get("AZURE_CLIENT_ID", "")).strip() or None
        if connection_string:
            if "=" not in connection_string:
                raise ConfigurationError(
                    prefix, "must be a storage connection string (or UseDevelopmentStorage=true)"
                )
            return cls(
                connection_string=connection_string,
                output_container=output_container,
                input_container=input_container,
            )
        if blob_uri:
            for name, uri in (
                (f"{prefix}__blobServiceUri", blob_uri),
                (f"{prefix}__queueServiceUri", queue_uri),
            ):
                if uri is not None and urlsplit(uri).scheme not in ("https", "http"):
                    raise ConfigurationError(name, "must be an https:// service URI")
            return cls(
                blob_service_uri=blob_uri.rstrip("/"),
                queue_service_uri=queue_uri.rstrip("/") if queue_uri else None,
                client_id=client_id,
                output_container=output_container,
                input_container=input_container,
            )
        raise ConfigurationError(
            prefix,
            f"is not set; set {prefix} to a connection string (UseDevelopmentStorage=true for "
            f"Azurite) or {prefix}__blobServiceUri to use a managed identity",
        )


def container_setting(env: Mapping[str, str], name: str, default: str) -> str:
    """A blob container name from setting ``name`` (``default`` when unset), checked against
    Storage's naming rules; raises :class:`ConfigurationError` naming the setting."""
    value = env.get(name, "").strip() or default
    ok = (
        3 <= len(value) <= 63
        and value[0].isalnum()
        and value[-1].isalnum()
        and all(ch.islower() or ch.isdigit() or ch == "-" for ch in value)
        and "--" not in value
    )
    if not ok:
        raise ConfigurationError(
            name, "must be a container name: 3-63 lower-case letters, digits and single hyphens"
        )
    return value
