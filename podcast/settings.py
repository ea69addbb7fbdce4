"""Every setting of the app, in one object: :class:`Settings`, read once per object graph.

The app settings (environment variables in Azure, ``local.settings.json`` locally) keep
their documented names; each section below is a ``pydantic-settings`` model whose fields
carry those names as aliases, so a test builds a section (or the whole :class:`Settings`)
directly by field name, and :meth:`Settings.from_env` reads an environment (``os.environ``
by default) by setting name. Building a section never reads the environment by itself.

A malformed value raises :class:`~podcast.errors.ConfigurationError` naming the setting and
saying what is allowed; values are never echoed, because some are secrets. Blank values
count as unset. :meth:`Settings.from_env` itself never raises: a section that cannot be read
keeps its error, which is raised when (and only when) that section is used, so a bad
request is still answered 400 on an app whose Azure OpenAI endpoint is missing, and the
health report names every problem at once.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, Self, TypeVar
from urllib.parse import parse_qsl, urlsplit

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from podcast.audio import DEFAULT_BITRATE_KBPS, MP3_BITRATES_KBPS
from podcast.errors import ConfigurationError
from podcast.voices import DEFAULT_VOICE, voice_error

ENDPOINT_SETTING: Final = "AZURE_OPENAI_AUDIO_ENDPOINT"
DEPLOYMENT_SETTING: Final = "AZURE_OPENAI_AUDIO_DEPLOYMENT"
API_KEY_SETTING: Final = "AZURE_OPENAI_AUDIO_API_KEY"
TIMEOUT_SETTING: Final = "AZURE_OPENAI_AUDIO_TIMEOUT_SECONDS"
RETRIES_SETTING: Final = "AZURE_OPENAI_AUDIO_MAX_RETRIES"
VOICE_SETTING: Final = "NARRATION_DEFAULT_VOICE"
CLIENT_ID_SETTING: Final = "AZURE_CLIENT_ID"
WEBSITE_HOSTNAME_SETTING: Final = "WEBSITE_HOSTNAME"

STORAGE_SETTING: Final = "NARRATION_STORAGE"
OUTPUT_CONTAINER_SETTING: Final = "NARRATION_OUTPUT_CONTAINER"
INPUT_CONTAINER_SETTING: Final = "NARRATION_INPUT_CONTAINER"

MAX_TEXT_CHARACTERS_SETTING: Final = "NARRATION_MAX_TEXT_CHARACTERS"
MAX_SAS_EXPIRY_SETTING: Final = "NARRATION_MAX_SAS_EXPIRY_MINUTES"
DOWNLOAD_INLINE_SETTING: Final = "NARRATION_DOWNLOAD_INLINE_MAX_MB"

SEGMENT_WORDS_SETTING: Final = "NARRATION_SEGMENT_WORDS"
CONCURRENCY_SETTING: Final = "NARRATION_CONCURRENCY"
MIN_FIDELITY_SETTING: Final = "NARRATION_MIN_FIDELITY"
FIDELITY_ATTEMPTS_SETTING: Final = "NARRATION_FIDELITY_ATTEMPTS"
FIDELITY_POLICY_SETTING: Final = "NARRATION_FIDELITY_POLICY"
PARAGRAPH_PAUSE_SETTING: Final = "NARRATION_PARAGRAPH_PAUSE_SECONDS"
SENTENCE_PAUSE_SETTING: Final = "NARRATION_SENTENCE_PAUSE_SECONDS"
TURN_PAUSE_SETTING: Final = "NARRATION_TURN_PAUSE_SECONDS"
TIME_BUDGET_SETTING: Final = "NARRATION_TIME_BUDGET_SECONDS"
SCRIPT_CLAIM_SETTING: Final = "NARRATION_SCRIPT_CLAIM_SECONDS"
SCRIPT_WAIT_SETTING: Final = "NARRATION_SCRIPT_WAIT_SECONDS"
MP3_BITRATE_SETTING: Final = "NARRATION_MP3_BITRATE_KBPS"
SHOW_NAME_SETTING: Final = "NARRATION_SHOW_NAME"

QUEUE_SETTING: Final = "NARRATION_QUEUE"
JOBS_CONTAINER_SETTING: Final = "NARRATION_JOBS_CONTAINER"
SYNC_MAX_AUDIO_SETTING: Final = "NARRATION_SYNC_MAX_AUDIO_SECONDS"
JOB_TIME_BUDGET_SETTING: Final = "NARRATION_JOB_TIME_BUDGET_SECONDS"
JOB_STALE_SETTING: Final = "NARRATION_JOB_STALE_SECONDS"
JOB_MAX_QUEUED_SETTING: Final = "NARRATION_JOB_MAX_QUEUED_SECONDS"
MAX_DEQUEUE_SETTING: Final = "NARRATION_QUEUE_MAX_DEQUEUE_COUNT"

MAX_DOCUMENT_BYTES_SETTING: Final = "NARRATION_MAX_DOCUMENT_BYTES"
MAX_DOCUMENT_CHARACTERS_SETTING: Final = "NARRATION_MAX_DOCUMENT_CHARACTERS"
DOCUMENT_ATTEMPTS_SETTING: Final = "NARRATION_DOCUMENT_MAX_ATTEMPTS"
DOCUMENT_CLAIM_SETTING: Final = "NARRATION_DOCUMENT_CLAIM_SECONDS"

FEED_LINK_HOURS_SETTING: Final = "NARRATION_FEED_LINK_HOURS"
FEED_MAX_ITEMS_SETTING: Final = "NARRATION_FEED_MAX_ITEMS"
DEFAULT_FEED_MAX_ITEMS: Final = 100

DEFAULT_DEPLOYMENT: Final = "gpt-realtime-mini"
DEFAULT_OUTPUT_CONTAINER: Final = "narrations"
DEFAULT_INPUT_CONTAINER: Final = "narration-input"
DEFAULT_QUEUE: Final = "narration-jobs"
DEFAULT_MAX_TEXT_CHARACTERS: Final = 20_000
DEFAULT_MAX_SAS_EXPIRY_MINUTES: Final = 1440
DEFAULT_SAS_EXPIRY_MINUTES: Final = 60
DEFAULT_SEGMENT_WORDS: Final = 300
"""About two minutes of speech: far below the ~3.4 minutes one response can hold."""
MAX_HEARTBEAT_SECONDS: Final = 60.0
COGNITIVE_SERVICES_SCOPE: Final = "https://cognitiveservices.azure.com/.default"

MAX_INSTRUCTIONS_CHARACTERS: Final = 1_000
MAX_TITLE_CHARACTERS: Final = 200
MAX_SPEAKERS: Final = 4
"""A conversation has 1 to 4 speakers."""
MAX_SPEAKER_NAME_CHARACTERS: Final = 40
MAX_SPEAKER_DESCRIPTION_CHARACTERS: Final = 300
MAX_SCRIPT_TURNS: Final = 1_000
"""The most turns a ``script`` may have."""
MAX_SCRIPT_CHARACTERS: Final = 40_000
"""The most characters a ``script``'s turns may hold together: about 45 minutes of speech, room
for a 30-minute conversation (the text limit's order; one constant, so a script written by
conversation mode can always be sent back)."""
_SCRIPT_TURN_OVERHEAD_CHARACTERS: Final = 32 + MAX_SPEAKER_NAME_CHARACTERS
"""A turn's JSON around its text: ``{"speaker": "<name>", "text": ""},``."""
_CHAPTER_OVERHEAD_CHARACTERS: Final = 32
"""A chapter's JSON around its title: ``{"title": "", "turn": 999},``."""
_SPEAKER_OVERHEAD_CHARACTERS: Final = 64
"""A speaker's JSON around its name and description:
``{"name": "", "voice": "shimmer", "description": ""},``."""
_JSON_ESCAPE_BYTES_PER_CHARACTER: Final = 12
"""Worst case JSON bytes per character: an astral character as ``\\ud83d\\ude00``."""
_BODY_OVERHEAD_BYTES: Final = 16_384
"""Room for field names, numbers, whitespace and the short fields around the text."""

FidelityPolicy = Literal["fail", "warn"]
_T = TypeVar("_T")


# --- Reading settings -----------------------------------------------------------------------


def _whole(alias: str, default: int, low: int, high: int) -> Any:
    """A whole-number setting from ``low`` to ``high``."""
    return Field(
        default,
        validation_alias=alias,
        ge=low,
        le=high,
        json_schema_extra={"problem": f"must be a whole number from {low} to {high}"},
    )


def _number(alias: str, default: float, low: float, high: float) -> Any:
    """A (finite) number setting from ``low`` to ``high``."""
    return Field(
        default,
        validation_alias=alias,
        ge=low,
        le=high,
        allow_inf_nan=False,
        json_schema_extra={"problem": f"must be a number from {low:g} to {high:g}"},
    )


def _storage_name(value: str) -> str:
    """A container or queue name: 3-63 lower-case letters, digits and single hyphens."""
    ok = (
        3 <= len(value) <= 63
        and value[0].isalnum()
        and value[-1].isalnum()
        and all(ch.islower() or ch.isdigit() or ch == "-" for ch in value)
        and value.isascii()
        and "--" not in value
    )
    if not ok:
        raise ValueError("not a storage name")
    return value


StorageName = Annotated[str, AfterValidator(_storage_name)]


def _container(alias: str, default: str) -> Any:
    return Field(
        default,
        validation_alias=alias,
        json_schema_extra={
            "problem": "must be a container name: 3-63 lower-case letters, digits and single hyphens"
        },
    )


class _Section(BaseSettings):
    """A group of settings. Built from keyword arguments (field names) or, by
    :meth:`from_env`, from an environment mapping (setting names)."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="ignore",
        populate_by_name=True,
        case_sensitive=True,
        validate_default=False,
        defer_build=True,  # validators built on first use, not at import (cold starts)
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what the caller passes: an environment is read by from_env, explicitly, once.
        return (init_settings,)

    @classmethod
    def setting_names(cls) -> tuple[str, ...]:
        """The app setting names this section reads."""
        return tuple(
            str(info.validation_alias)
            for info in cls.model_fields.values()
            if isinstance(info.validation_alias, str)
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """Read the section from ``env`` (default ``os.environ``); blank values count as
        unset. Raises :class:`ConfigurationError` naming the first malformed setting."""
        env = os.environ if env is None else env
        values = {name: env[name].strip() for name in cls.setting_names() if env.get(name, "").strip()}
        return cls.load(values)

    @classmethod
    def load(cls, values: Mapping[str, Any]) -> Self:
        """Validate ``values`` (by setting name), turning pydantic's error into ours."""
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            raise cls._configuration_error(exc) from None

    @classmethod
    def _configuration_error(cls, exc: ValidationError) -> ConfigurationError:
        error = exc.errors(include_url=False, include_input=False)[0]
        name = str(error["loc"][0]) if error["loc"] else ""
        for field_name, info in cls.model_fields.items():
            if name in (field_name, info.validation_alias):
                extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
                setting = str(info.validation_alias or field_name)
                return ConfigurationError(setting, str(extra.get("problem", "is not valid")))
        return ConfigurationError(name or cls.__name__, "is not valid")


# --- Azure OpenAI Realtime ------------------------------------------------------------------


AZURE_ENDPOINT_SUFFIXES: Final = (
    ".openai.azure.com",
    ".cognitiveservices.azure.com",
    ".services.ai.azure.com",
)
_ENDPOINT_PATH_SUFFIXES: Final = ("/openai/v1/realtime", "/openai/realtime", "/openai/v1", "/openai")
_ENDPOINT_QUERY_NAMES: Final = frozenset({"model", "deployment", "api-version"})
_DEPLOYMENT_PATTERN: Final = r"^[^/?#&= ]+$"
_DEPLOYMENT_MAX_LENGTH: Final = 64


@dataclass(frozen=True, slots=True)
class RealtimeEndpoint:
    """An endpoint setting, read: the SDK's ``websocket_base_url`` and the deployment the
    pasted URL named (``model=`` or ``deployment=``), if any."""

    base_url: str
    deployment: str | None = None


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_realtime_endpoint(endpoint: str, *, setting: str = ENDPOINT_SETTING) -> RealtimeEndpoint:
    """Read every form of the endpoint users paste (see :func:`realtime_base_url`).

    Raises :class:`ConfigurationError` naming ``setting`` (never echoing the value) for a
    URL that is not an endpoint: another scheme, plain ``http`` off the local machine,
    credentials in it, a fragment, a query parameter other than ``model``, ``deployment``
    and ``api-version``, two different deployments, an AI Foundry project path
    (``/api/projects/...``), or another path on an Azure host.
    """
    url = endpoint.strip()
    if not url:
        raise ConfigurationError(setting, "is empty")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        raise ConfigurationError(setting, "is not a valid URL") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in ("https", "http", "wss", "ws") or not host:
        raise ConfigurationError(
            setting, "must be an https:// URL such as https://<resource>.openai.azure.com"
        )
    if parts.username or parts.password:
        raise ConfigurationError(setting, "must not contain a user name or password")
    if parts.fragment:
        raise ConfigurationError(setting, "must not contain a fragment")
    if scheme in ("http", "ws") and not _is_loopback(host):
        raise ConfigurationError(
            setting,
            "must use https:// (http:// is accepted only for a local emulator on localhost or 127.0.0.1)",
        )
    deployment = _deployment_in_query(parts.query, setting)
    path = parts.path.rstrip("/")
    if "/api/projects" in path.lower():
        raise ConfigurationError(
            setting,
            "is an AI Foundry project endpoint (.../api/projects/...), which the Realtime API does "
            "not use; set it to the resource endpoint instead, https://<resource>.services.ai.azure.com "
            "(or https://<resource>.openai.azure.com, .cognitiveservices.azure.com), shown under the "
            "resource's Keys and Endpoint",
        )
    for suffix in _ENDPOINT_PATH_SUFFIXES:
        if path.lower().endswith(suffix):
            path = path[: -len(suffix)]
            break
    if path and host.endswith(AZURE_ENDPOINT_SUFFIXES):
        raise ConfigurationError(
            setting,
            "has a path Azure OpenAI does not serve; set the resource root, "
            "https://<resource>.openai.azure.com (optionally with /openai/v1)",
        )
    ws_scheme = "ws" if scheme in ("http", "ws") else "wss"
    return RealtimeEndpoint(f"{ws_scheme}://{parts.netloc}{path}/openai/v1", deployment)


def _deployment_in_query(query: str, setting: str) -> str | None:
    """The deployment a pasted URL's query names (``model=`` or the preview's
    ``deployment=``); ``api-version`` is dropped (the GA endpoint refuses it)."""
    names: set[str] = set()
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name.lower() not in _ENDPOINT_QUERY_NAMES:
            raise ConfigurationError(
                setting,
                "may have only model=, deployment= or api-version= in its query string "
                f"(a key belongs in {API_KEY_SETTING})",
            )
        if name.lower() != "api-version" and value.strip():
            names.add(value.strip())
    if len(names) > 1:
        raise ConfigurationError(setting, "names two different deployments (model= and deployment=)")
    deployment = next(iter(names), None)
    if deployment is not None and (
        len(deployment) > _DEPLOYMENT_MAX_LENGTH or not re.fullmatch(_DEPLOYMENT_PATTERN, deployment)
    ):
        raise ConfigurationError(setting, "names a deployment (model=) that is not a deployment name")
    return deployment


def realtime_base_url(endpoint: str, *, setting: str = ENDPOINT_SETTING) -> str:
    """Turn a resource endpoint into the SDK's ``websocket_base_url`` (``.../openai/v1``).

    Accepts the resource root on ``*.openai.azure.com``, ``*.cognitiveservices.azure.com``
    or ``*.services.ai.azure.com`` (or a gateway in front of one), with or without a
    trailing ``/``, ``/openai/v1`` or the portal's whole target URI
    (``wss://.../openai/v1/realtime?model=<deployment>``, or the preview's
    ``.../openai/realtime?api-version=...&deployment=...``), all stripped to the resource
    root; and ``http://127.0.0.1:PORT`` (or ``localhost``) for the local emulator.
    ``https`` becomes ``wss`` and ``http`` becomes ``ws``.
    """
    return parse_realtime_endpoint(endpoint, setting=setting).base_url


class RealtimeSettings(_Section):
    """How to reach the Azure OpenAI Realtime deployment.

    ``api_key`` is ``None`` when Microsoft Entra ID (managed identity) is to be used.
    """

    endpoint: str = Field(validation_alias=ENDPOINT_SETTING)
    """The ``websocket_base_url``, normalized (``wss://.../openai/v1``)."""
    deployment: str = Field(
        default=DEFAULT_DEPLOYMENT,
        validation_alias=DEPLOYMENT_SETTING,
        max_length=_DEPLOYMENT_MAX_LENGTH,
        pattern=_DEPLOYMENT_PATTERN,
        json_schema_extra={"problem": "must be a deployment name (letters, digits, - _ .)"},
    )
    api_key: str | None = Field(default=None, validation_alias=API_KEY_SETTING, repr=False)
    response_timeout_seconds: float = _number(TIMEOUT_SETTING, 180.0, 1.0, 3600.0)
    """Overall time allowed for one response, from ``response.create`` to ``response.done``."""
    max_retries: int = _whole(RETRIES_SETTING, 3, 0, 10)
    """Retries of transient failures (so at most ``max_retries + 1`` attempts)."""

    @model_validator(mode="before")
    @classmethod
    def _require_endpoint(cls, data: Any) -> Any:
        if (
            isinstance(data, Mapping)
            and not str(data.get(ENDPOINT_SETTING, data.get("endpoint", ""))).strip()
        ):
            raise ConfigurationError(
                ENDPOINT_SETTING,
                "is not set; set it to your Azure OpenAI resource endpoint "
                "(https://<resource>.openai.azure.com) or to a local emulator "
                "(python -m emulator, then http://127.0.0.1:PORT)",
            )
        return data

    @model_validator(mode="before")
    @classmethod
    def _deployment_from_endpoint(cls, data: Any) -> Any:
        """Take the deployment from a pasted target URI (``?model=``) when it is not set."""
        if not isinstance(data, Mapping):
            return data
        endpoint = str(data.get(ENDPOINT_SETTING, data.get("endpoint", ""))).strip()
        named = parse_realtime_endpoint(endpoint).deployment if endpoint else None
        if named is None:
            return data
        deployment_key = next((k for k in (DEPLOYMENT_SETTING, "deployment") if k in data), None)
        if deployment_key is None:
            return {**data, DEPLOYMENT_SETTING: named}
        if str(data[deployment_key]).strip() != named:
            raise ConfigurationError(
                DEPLOYMENT_SETTING,
                f"disagrees with the deployment named in {ENDPOINT_SETTING} (model= or deployment=); "
                "make them the same or remove one",
            )
        return data

    @field_validator("endpoint")
    @classmethod
    def _normalize_endpoint(cls, value: str) -> str:
        return realtime_base_url(value)

    @field_validator("api_key")
    @classmethod
    def _blank_key_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value else None

    @property
    def auth_mode(self) -> str:
        """``"key"`` or ``"managed_identity"`` (any Entra ID credential)."""
        return "key" if self.api_key else "managed_identity"


# --- Blob Storage -----------------------------------------------------------------------------


class StorageSettings(_Section):
    """How to reach Blob Storage, in the same shapes as Functions' own connections.

    Exactly one of ``connection_string`` and ``blob_service_uri`` is set. With a service
    URI, the app's one token credential is used (``client_id`` selects a user-assigned
    identity).
    """

    connection_string: str | None = Field(default=None, repr=False)
    blob_service_uri: str | None = None
    queue_service_uri: str | None = None
    client_id: str | None = None
    output_container: StorageName = _container(OUTPUT_CONTAINER_SETTING, DEFAULT_OUTPUT_CONTAINER)
    input_container: StorageName = _container(INPUT_CONTAINER_SETTING, DEFAULT_INPUT_CONTAINER)

    @property
    def auth_mode(self) -> str:
        """``"connection_string"`` or ``"managed_identity"``."""
        return "connection_string" if self.connection_string else "managed_identity"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, prefix: str = STORAGE_SETTING) -> Self:
        """Read ``NARRATION_STORAGE`` or ``NARRATION_STORAGE__blobServiceUri`` (and friends)."""
        env = os.environ if env is None else env

        def get(name: str) -> str:
            return env.get(name, "").strip()

        containers = {
            name: get(name) for name in (OUTPUT_CONTAINER_SETTING, INPUT_CONTAINER_SETTING) if get(name)
        }
        connection_string = get(prefix)
        blob_uri = get(f"{prefix}__blobServiceUri") or get(f"{prefix}__serviceUri")
        queue_uri = get(f"{prefix}__queueServiceUri")
        client_id = get(f"{prefix}__clientId") or get(CLIENT_ID_SETTING)
        if connection_string:
            if "=" not in connection_string:
                raise ConfigurationError(
                    prefix, "must be a storage connection string (or UseDevelopmentStorage=true)"
                )
            return cls.load({"connection_string": connection_string, **containers})
        if blob_uri:
            for name, uri in (
                (f"{prefix}__blobServiceUri", blob_uri),
                (f"{prefix}__queueServiceUri", queue_uri),
            ):
                if uri and urlsplit(uri).scheme not in ("https", "http"):
                    raise ConfigurationError(name, "must be an https:// service URI")
            return cls.load(
                {
                    "blob_service_uri": blob_uri.rstrip("/"),
                    "queue_service_uri": queue_uri.rstrip("/") or None,
                    "client_id": client_id or None,
                    **containers,
                }
            )
        raise ConfigurationError(
            prefix,
            f"is not set; set {prefix} to a connection string (UseDevelopmentStorage=true for "
            f"Azurite) or {prefix}__blobServiceUri to use a managed identity",
        )

    @classmethod
    def setting_names(cls) -> tuple[str, ...]:
        return (
            STORAGE_SETTING,
            f"{STORAGE_SETTING}__blobServiceUri",
            f"{STORAGE_SETTING}__queueServiceUri",
            f"{STORAGE_SETTING}__clientId",
            OUTPUT_CONTAINER_SETTING,
            INPUT_CONTAINER_SETTING,
        )


# --- Request limits -------------------------------------------------------------------------


class RequestLimits(_Section):
    """The request limits that are settings rather than constants.

    ``default_voice`` is used when a request names no voice. ``max_body_bytes`` is the
    largest body that could hold a valid request, so bigger bodies fail with 413 before
    being decoded.
    """

    max_text_characters: int = _whole(MAX_TEXT_CHARACTERS_SETTING, DEFAULT_MAX_TEXT_CHARACTERS, 1, 1_000_000)
    max_sas_expiry_minutes: int = _whole(MAX_SAS_EXPIRY_SETTING, DEFAULT_MAX_SAS_EXPIRY_MINUTES, 1, 10_080)
    """At most 7 days, the longest a user-delegation SAS may live."""
    download_inline_max_mb: int = _whole(DOWNLOAD_INLINE_SETTING, 64, 1, 1024)
    """A download route answers with at most this many MiB itself (the worker holds the body
    in memory); a larger answer is a redirect to a fresh read-only link."""
    default_voice: str = Field(default=DEFAULT_VOICE, validation_alias=VOICE_SETTING)

    @field_validator("default_voice")
    @classmethod
    def _check_voice(cls, voice: str) -> str:
        problem = voice_error(voice)
        if problem:
            message = problem.replace(f"'{voice[:40]}' ", "names a voice that ", 1)
            raise ConfigurationError(VOICE_SETTING, message)
        return voice

    @property
    def default_sas_expiry_minutes(self) -> int:
        """60 minutes, or the maximum when that is shorter."""
        return min(DEFAULT_SAS_EXPIRY_MINUTES, self.max_sas_expiry_minutes)

    @property
    def max_body_bytes(self) -> int:
        """Bytes enough for the longest valid request even if every character is ``\\u``-escaped:
        the text or the longest script, with every speaker and a chapter at every turn."""
        script = MAX_SCRIPT_CHARACTERS + MAX_SCRIPT_TURNS * _SCRIPT_TURN_OVERHEAD_CHARACTERS
        chapters = MAX_SCRIPT_TURNS * (MAX_TITLE_CHARACTERS + _CHAPTER_OVERHEAD_CHARACTERS)
        speakers = MAX_SPEAKERS * (
            MAX_SPEAKER_NAME_CHARACTERS + MAX_SPEAKER_DESCRIPTION_CHARACTERS + _SPEAKER_OVERHEAD_CHARACTERS
        )
        characters = (
            max(self.max_text_characters, script)
            + MAX_INSTRUCTIONS_CHARACTERS
            + MAX_TITLE_CHARACTERS
            + chapters
            + speakers
        )
        return characters * _JSON_ESCAPE_BYTES_PER_CHARACTER + _BODY_OVERHEAD_BYTES


def default_voice(env: Mapping[str, str] | None = None) -> str:
    """The voice used when a request names none (``NARRATION_DEFAULT_VOICE``, else ``marin``)."""
    voice = (os.environ if env is None else env).get(VOICE_SETTING, "")
    return RequestLimits.from_env({VOICE_SETTING: voice}).default_voice


# --- Long-form narration ---------------------------------------------------------------------


class NarrationSettings(_Section):
    """How a long narration is carried out."""

    segment_max_words: int = _whole(SEGMENT_WORDS_SETTING, DEFAULT_SEGMENT_WORDS, 20, 450)
    concurrency: int = _whole(CONCURRENCY_SETTING, 4, 1, 16)
    min_fidelity: float = _number(MIN_FIDELITY_SETTING, 0.9, 0.0, 1.0)
    """Least word similarity (1 - word error rate) a read-mode segment must reach."""
    fidelity_attempts: int = _whole(FIDELITY_ATTEMPTS_SETTING, 3, 1, 10)
    """Narrations of one segment at most, to reach ``min_fidelity``."""
    fidelity_policy: FidelityPolicy = Field(
        default="warn",
        validation_alias=FIDELITY_POLICY_SETTING,
        json_schema_extra={"problem": "must be 'fail' or 'warn'"},
    )
    """Below the threshold after every attempt: ``fail`` the narration, or ``warn`` and keep the best."""
    mp3_bitrate_kbps: int = Field(
        default=DEFAULT_BITRATE_KBPS,
        validation_alias=MP3_BITRATE_SETTING,
        json_schema_extra={
            "problem": "must be an MP3 bitrate in kbit/s: " + ", ".join(map(str, MP3_BITRATES_KBPS))
        },
    )
    """Constant bitrate of ``format: mp3`` narrations (24 kHz mono); 64 suits speech."""
    show_name: str = Field(
        default="Narrations",
        validation_alias=SHOW_NAME_SETTING,
        min_length=1,
        max_length=200,
        json_schema_extra={"problem": "must be 1 to 200 characters"},
    )
    """The show (artist and album) in MP3 narrations' ID3 tags."""
    paragraph_pause_seconds: float = _number(PARAGRAPH_PAUSE_SETTING, 0.75, 0.0, 5.0)
    sentence_pause_seconds: float = _number(SENTENCE_PAUSE_SETTING, 0.3, 0.0, 5.0)
    turn_pause_seconds: float = _number(TURN_PAUSE_SETTING, 0.35, 0.0, 5.0)
    """Silence between two turns of a conversation script."""
    fade_seconds: float = 0.005

    @field_validator("mp3_bitrate_kbps")
    @classmethod
    def _check_bitrate(cls, value: int) -> int:
        if value not in MP3_BITRATES_KBPS:
            raise ValueError("not an MP3 bitrate")
        return value

    @field_validator("fidelity_policy", mode="before")
    @classmethod
    def _fold_policy(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    def pause_after(self, boundary: str) -> float:
        """Seconds of silence after a segment that ends at ``boundary``."""
        pauses = {
            "paragraph": self.paragraph_pause_seconds,
            "sentence": self.sentence_pause_seconds,
            "turn": self.turn_pause_seconds,
        }
        return pauses.get(boundary, 0.0)


class PipelineSettings(_Section):
    """The synchronous narration's time budget, and how identical script requests wait for one writer."""

    time_budget_seconds: float = _number(TIME_BUDGET_SETTING, 200.0, 10.0, 3600.0)
    """The whole narration, retries included, must finish within this (HTTP allows 230 s)."""
    script_claim_seconds: float = _number(SCRIPT_CLAIM_SETTING, 60.0, 0.5, 3600.0)
    """How long a script writer's claim on its content lasts without renewal (renewed every
    third of it while it writes): a writer that dies holds identical requests back this long
    at most, then one of them takes over (:mod:`podcast.services.scripts`)."""
    script_wait_seconds: float = _number(SCRIPT_WAIT_SETTING, 60.0, 0.0, 3600.0)
    """How long a script request identical to one being written waits for that outcome
    (never longer than its own time budget) before it is answered 503 ``script_in_progress``
    with ``Retry-After``."""


# --- Asynchronous jobs ---------------------------------------------------------------------------


class JobSettings(_Section):
    """How asynchronous narrations are run."""

    queue_name: StorageName = Field(
        default=DEFAULT_QUEUE,
        validation_alias=QUEUE_SETTING,
        json_schema_extra={
            "problem": "must be a queue name: 3-63 lower-case letters, digits and single hyphens"
        },
    )
    jobs_container: StorageName = _container(JOBS_CONTAINER_SETTING, "narrations-jobs")
    """Default: the output container's name plus ``-jobs`` (see :meth:`Settings.from_env`)."""
    sync_max_audio_seconds: float = _number(SYNC_MAX_AUDIO_SETTING, 180.0, 0.0, 86_400.0)
    """Requests expected to give more audio than this run asynchronously (0: all of them)."""
    job_time_budget_seconds: float = _number(JOB_TIME_BUDGET_SETTING, 540.0, 10.0, 3600.0)
    """Leaves a minute of host.json's ``functionTimeout`` (10 minutes) for storing the result."""
    stale_seconds: float = _number(JOB_STALE_SETTING, 300.0, 1.0, 86_400.0)
    """A ``running`` job without a heartbeat, or a ``queued`` one without a change, for this
    long is stuck: re-enqueued once, then failed. Keep it above host.json's ``visibilityTimeout``."""
    max_queued_seconds: float = _number(JOB_MAX_QUEUED_SETTING, 3600.0, 1.0, 604_800.0)
    """A re-enqueued job still ``queued`` is failed only after this long without a change (and
    never sooner than ``stale_seconds``): a queue backlog is a wait, not a loss, and
    re-enqueueing is harmless while failing is not."""

    @property
    def queued_limit_seconds(self) -> float:
        """How long a re-enqueued job may stay ``queued`` before it is failed."""
        return max(self.max_queued_seconds, self.stale_seconds)

    max_dequeue_count: int = _whole(MAX_DEQUEUE_SETTING, 3, 1, 100)
    """Matches host.json's ``extensions.queues.maxDequeueCount``."""

    @property
    def heartbeat_seconds(self) -> float:
        """How often a running job's record is touched: a quarter of the stale timeout, at most 60 s."""
        return min(MAX_HEARTBEAT_SECONDS, self.stale_seconds / 4)

    @staticmethod
    def default_jobs_container(output_container: str) -> str:
        return f"{output_container[:58].rstrip('-')}-jobs"


# --- Uploaded documents -------------------------------------------------------------------------


class DocumentSettings(_Section):
    """Limits and retries for uploaded documents (larger than the HTTP endpoint's)."""

    max_bytes: int = _whole(MAX_DOCUMENT_BYTES_SETTING, 1_048_576, 1, 16_777_216)
    max_characters: int = _whole(MAX_DOCUMENT_CHARACTERS_SETTING, 50_000, 1, 1_000_000)
    max_attempts: int = _whole(DOCUMENT_ATTEMPTS_SETTING, 2, 1, 10)
    """Matches host.json's ``extensions.blobs.poisonBlobThreshold``."""
    claim_seconds: int = _whole(DOCUMENT_CLAIM_SETTING, 60, 5, 3600)
    """How long a delivery's claim on a document version lasts without renewal (renewed every
    third of it while narrating): a worker that dies blocks that version this long at most."""

    def request_limits(self, base: RequestLimits) -> RequestLimits:
        """``base`` with the document text limit."""
        return base.model_copy(update={"max_text_characters": self.max_characters})


# --- Shows and podcast feeds ----------------------------------------------------------------------


class FeedSettings(_Section):
    """What ``GET /api/shows/{show}/feed.xml`` puts in a feed."""

    link_hours: int = _whole(FEED_LINK_HOURS_SETTING, 168, 1, 168)
    """Hours each link of a feed (enclosure, transcript, chapters) stays valid: long enough for
    an app to download an episode it saw in the feed; at most 7 days, a user-delegation SAS's
    limit. A feed answered ``304 Not Modified`` is at most half of this old."""
    max_items: int = _whole(FEED_MAX_ITEMS_SETTING, DEFAULT_FEED_MAX_ITEMS, 1, 1000)
    """The most episodes in a feed (the newest); ``?limit=`` may ask for fewer."""


# --- All of them ------------------------------------------------------------------------------

Section = Literal["realtime", "storage", "limits", "narration", "pipeline", "jobs", "documents", "feeds"]


class Settings:
    """Every section, read once; a section that could not be read raises its
    :class:`ConfigurationError` when used.

    Build one directly (``Settings(realtime=RealtimeSettings(endpoint=...), storage=...)``;
    unspecified sections take their defaults, and a missing ``realtime`` or ``storage``
    raises when used), or with :meth:`from_env`.
    """

    def __init__(
        self,
        *,
        realtime: RealtimeSettings | None = None,
        storage: StorageSettings | None = None,
        limits: RequestLimits | None = None,
        narration: NarrationSettings | None = None,
        pipeline: PipelineSettings | None = None,
        jobs: JobSettings | None = None,
        documents: DocumentSettings | None = None,
        feeds: FeedSettings | None = None,
        client_id: str | None = None,
        website_hostname: str | None = None,
        problems: Mapping[Section, ConfigurationError] | None = None,
    ) -> None:
        self._realtime = realtime
        self._storage = storage
        self._limits = limits or RequestLimits()
        self._narration = narration or NarrationSettings()
        self._pipeline = pipeline or PipelineSettings()
        self._documents = documents or DocumentSettings()
        self._feeds = feeds or FeedSettings()
        if jobs is None and storage is not None:
            jobs = JobSettings(jobs_container=JobSettings.default_jobs_container(storage.output_container))
        self._jobs = jobs
        self._problems: dict[Section, ConfigurationError] = dict(problems or {})
        self.client_id = client_id or (storage.client_id if storage is not None else None)
        """A user-assigned managed identity's client id, for every Entra ID token the app gets."""
        self.website_hostname = website_hostname
        """The app's host name as App Service sets it (``WEBSITE_HOSTNAME``), for absolute URLs."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every section from ``env`` (default: ``os.environ``, read now and only now)."""
        env = dict(os.environ if env is None else env)
        problems: dict[Section, ConfigurationError] = {}

        def read(section: Section, reader: Any) -> Any:
            try:
                return reader()
            except ConfigurationError as error:
                problems[section] = error
                return None

        storage: StorageSettings | None = read("storage", lambda: StorageSettings.from_env(env))

        def jobs() -> JobSettings:
            if storage is None:
                raise problems["storage"]
            default = JobSettings.default_jobs_container(storage.output_container)
            return JobSettings.from_env(
                {**env, JOBS_CONTAINER_SETTING: env.get(JOBS_CONTAINER_SETTING, "").strip() or default}
            )

        return cls(
            realtime=read("realtime", lambda: RealtimeSettings.from_env(env)),
            storage=storage,
            limits=read("limits", lambda: RequestLimits.from_env(env)),
            narration=read("narration", lambda: NarrationSettings.from_env(env)),
            pipeline=read("pipeline", lambda: PipelineSettings.from_env(env)),
            jobs=read("jobs", jobs),
            documents=read("documents", lambda: DocumentSettings.from_env(env)),
            feeds=read("feeds", lambda: FeedSettings.from_env(env)),
            client_id=(env.get(f"{STORAGE_SETTING}__clientId", "") or env.get(CLIENT_ID_SETTING, "")).strip()
            or None,
            website_hostname=env.get(WEBSITE_HOSTNAME_SETTING, "").strip() or None,
            problems=problems,
        )

    def _get(self, section: Section, value: _T | None) -> _T:
        problem = self._problems.get(section)
        if problem is not None:
            raise problem
        if value is None:  # only realtime and storage may be missing; they raise before this
            raise ConfigurationError(section, "is not configured")
        return value

    @property
    def realtime(self) -> RealtimeSettings:
        if self._realtime is None and "realtime" not in self._problems:
            RealtimeSettings.from_env({})  # raises: the endpoint is not set
        return self._get("realtime", self._realtime)

    @property
    def storage(self) -> StorageSettings:
        if self._storage is None and "storage" not in self._problems:
            StorageSettings.from_env({})  # raises: no connection is set
        return self._get("storage", self._storage)

    @property
    def limits(self) -> RequestLimits:
        return self._get("limits", self._limits)

    @property
    def narration(self) -> NarrationSettings:
        return self._get("narration", self._narration)

    @property
    def pipeline(self) -> PipelineSettings:
        return self._get("pipeline", self._pipeline)

    @property
    def jobs(self) -> JobSettings:
        if self._jobs is None:
            self.storage  # noqa: B018 - raises the storage problem the default depends on
        return self._get("jobs", self._jobs)

    @property
    def documents(self) -> DocumentSettings:
        return self._get("documents", self._documents)

    @property
    def feeds(self) -> FeedSettings:
        return self._get("feeds", self._feeds)
