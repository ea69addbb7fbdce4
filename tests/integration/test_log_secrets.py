"""No logger, at any level, shows a key, a token, a SAS signature, an account key or the text.

Every logger is captured at DEBUG (the root at DEBUG with a handler that keeps every record,
propagated ones included; the same handler on every logger that does not propagate, and as
``logging.lastResort``), while the decorated functions run as the host runs them: a
narration with an API key and an account key (SAS links), an asynchronous job polled with a
``code=`` function key, the Entra ID path (bearer tokens for the Realtime API and Storage,
user delegation SAS), and failures (a 401 handshake, a content filter refusal). Each record
is checked as a handler could show it: the formatted line, the message, its arguments, and
its exception and stack text.

Each flow runs twice: with the levels as the app sets them, and with every logger forced
back to DEBUG after the app is built (an operator turning on library debugging), where only
the redaction stands between the frames and headers and the log. A control run without the
redaction shows that the capture does see the secrets when they are logged.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

import function_app
from emulator import Fault, FaultKind, RealtimeEmulator
from podcast.app import App
from podcast.logs import RedactingFilter
from podcast.settings import Settings
from testkit import host
from testkit.azurite import AzuriteServer
from testkit.credentials import FakeTokenCredential, token_claims

CANARY = "Quokka marmalade sails past Zanzibar at seven thirty one"
TEXT = f"Welcome to the show. {CANARY}. Then we talk about rivers and why they bend."
API_KEY = f"sk-podcast-canary-{uuid.uuid4().hex}"
FUNCTION_KEY = f"function-canary-{uuid.uuid4().hex}"
ASYNC = {"Prefer": "respond-async"}


class Capture(logging.Handler):
    """Keeps every record it is handed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def shown(self) -> str:
        """Everything any handler could make of the records."""
        assert not self.filters, "the capture relies on nothing but what the app installed globally"
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        parts: list[str] = []
        for record in self.records:
            parts += [formatter.format(record), str(record.msg), repr(record.args)]
            if record.exc_info:
                parts.append(formatter.formatException(record.exc_info))
            parts += [record.exc_text or "", record.stack_info or ""]
        return "\n".join(parts)


@contextlib.contextmanager
def every_logger_at_debug() -> Iterator[Capture]:
    capture = Capture()
    root = logging.getLogger()
    saved_root_level = root.level
    saved_last_resort = logging.lastResort
    silent = [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]
    root.setLevel(logging.DEBUG)
    root.addHandler(capture)  # after the app is built: its install() put no filter on this handler
    for logger in silent:
        logger.addHandler(capture)
    logging.lastResort = capture
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        for logger in silent:
            logger.removeHandler(capture)
        root.setLevel(saved_root_level)
        logging.lastResort = saved_last_resort


@contextlib.contextmanager
def libraries_forced_to_debug() -> Iterator[None]:
    """Every logger at DEBUG, whatever the app set (undone afterwards)."""
    loggers = [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    loggers += [logging.getLogger(name) for name in ("websockets.client", "websockets.server", "openai")]
    saved = {logger: logger.level for logger in loggers}
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        for logger, level in saved.items():
            logger.setLevel(level)


def quiet_libraries_said_nothing(capture: Capture) -> bool:
    """With the levels as the app sets them, the libraries made no record below WARNING: the
    redaction was never needed for them (the emulator's own server logger is not the app's)."""
    chatty = [
        record
        for record in capture.records
        if record.levelno < logging.WARNING
        and record.name.split(".")[0] in {"websockets", "openai", "httpx", "httpcore", "azure", "msal"}
    ]
    return not chatty


@dataclass
class Secrets:
    """What must never be shown, gathered as the flows run."""

    values: set[str] = field(default_factory=set)

    def add(self, *values: str) -> None:
        for value in values:
            if value:
                self.values.update({value, unquote(value)})

    def add_sas(self, url: str) -> None:
        self.add(*parse_qs(urlsplit(url).query).get("sig", []))

    def assert_absent_from(self, shown: str) -> None:
        leaked = sorted(value[:12] + "…" for value in self.values if value in shown)
        assert not leaked, f"secrets in the logs: {leaked}"
        assert CANARY not in shown, "the narrated text is in the logs"
        assert "Quokka marmalade" not in shown


async def post(body: dict[str, Any], headers: dict[str, str] | None = None) -> host.HttpAnswer:
    return await host.call_http(
        function_app.create_narration,
        host.http_request(
            "POST",
            "narrations",
            json=body,
            headers=headers,
            url=f"https://podcast.example.net/api/narrations?code={FUNCTION_KEY}",
        ),
    )


async def poll(location: str) -> host.HttpAnswer:
    return await host.call_http(
        function_app.get_narration, host.http_request("GET", "narrations/{id}", url=location)
    )


# --- API key and account key ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_emulator() -> Iterator[RealtimeEmulator]:
    """An emulator of this module's own, with a key nothing else uses."""
    server = RealtimeEmulator(api_key=API_KEY, engine="synthetic").start_in_thread()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def keyed_app(
    monkeypatch: pytest.MonkeyPatch,
    keyed_emulator: RealtimeEmulator,
    azurite: AzuriteServer,
    container_name: str,
) -> AsyncIterator[Secrets]:
    keyed_emulator.reset()
    queue = f"jobs-{uuid.uuid4().hex[:16]}"
    for name, value in {
        "AZURE_OPENAI_AUDIO_ENDPOINT": keyed_emulator.url,
        "AZURE_OPENAI_AUDIO_API_KEY": API_KEY,
        "AZURE_OPENAI_AUDIO_MAX_RETRIES": "0",
        "AZURE_OPENAI_AUDIO_TIMEOUT_SECONDS": "5",
        "NARRATION_STORAGE": azurite.connection_string,
        "NARRATION_OUTPUT_CONTAINER": container_name,
        "NARRATION_QUEUE": queue,
    }.items():
        monkeypatch.setenv(name, value)
    secrets = Secrets()
    account_key = next(
        part.split("=", 1)[1]
        for part in azurite.connection_string.split(";")
        if part.startswith("AccountKey=")
    )
    secrets.add(API_KEY, FUNCTION_KEY, account_key)
    yield secrets
    await function_app.graph.aclose()
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        for container in (container_name, f"{container_name}-jobs"):
            with contextlib.suppress(ResourceNotFoundError):
                service.delete_container(container)
    with (
        QueueClient.from_connection_string(azurite.connection_string, queue) as client,
        contextlib.suppress(ResourceNotFoundError),
    ):
        client.delete_queue()


async def keyed_flows(secrets: Secrets, emulator: RealtimeEmulator, azurite: AzuriteServer) -> None:
    """Success and failure on both paths, with an API key and an account key."""
    narrated = await post({"text": TEXT})
    assert narrated.status == 200, narrated.json()
    secrets.add_sas(narrated.json()["audio_url"])

    accepted = await post({"text": f"{TEXT} Once more, as a job."}, ASYNC)
    assert accepted.status == 202, accepted.json()
    with QueueClient.from_connection_string(
        azurite.connection_string, Settings.from_env().jobs.queue_name
    ) as queue:
        await host.deliver(function_app.narration_worker, queue)
    polled = await poll(accepted.headers["Location"])
    assert polled.status == 200, polled.json()
    secrets.add_sas(polled.json()["audio_url"])

    emulator.inject(Fault(FaultKind.HANDSHAKE_401))
    refused = await post({"text": f"{TEXT} Refused at the handshake."})
    assert refused.status == 502, refused.json()

    emulator.inject(Fault(FaultKind.CONTENT_FILTER))
    filtered = await post({"text": f"{TEXT} Filtered half-way."})
    assert filtered.status == 422, filtered.json()


@pytest.mark.parametrize("forced", [False, True], ids=["levels as set", "libraries forced to debug"])
async def test_no_key_signature_or_text_is_logged_with_keys(
    keyed_app: Secrets, keyed_emulator: RealtimeEmulator, azurite: AzuriteServer, forced: bool
) -> None:
    function_app.graph.get()  # the app is built (and sets its levels) before any forcing
    with (
        every_logger_at_debug() as capture,
        libraries_forced_to_debug() if forced else contextlib.nullcontext(),
    ):
        await keyed_flows(keyed_app, keyed_emulator, azurite)

    assert len(keyed_app.values) >= 5, "the key, function key, account key and SAS signatures"
    assert capture.records, "the capture saw the app's own records"
    keyed_app.assert_absent_from(capture.shown())
    if forced:
        shown = capture.shown()
        assert "> TEXT [payload not logged]" in shown, "frames were logged, without their payload"
        assert "> Authorization: [redacted]" in shown, "the handshake header was logged, redacted"
    else:
        assert quiet_libraries_said_nothing(capture)


async def test_the_capture_does_see_secrets_when_nothing_redacts_them(
    keyed_app: Secrets, keyed_emulator: RealtimeEmulator, azurite: AzuriteServer
) -> None:
    """The control: with the record factory, the root handlers' filters and the levels undone,
    the same capture finds the key and the text, so the tests above can fail."""
    factory = logging.getLogRecordFactory()
    function_app.graph.get()
    filtered = [
        (handler, found)
        for handler in logging.getLogger().handlers
        for found in handler.filters
        if isinstance(found, RedactingFilter)
    ]
    with every_logger_at_debug() as capture:
        logging.setLogRecordFactory(logging.LogRecord)
        for handler, found in filtered:
            handler.removeFilter(found)
        try:
            with libraries_forced_to_debug():
                narrated = await post({"text": TEXT})
        finally:
            logging.setLogRecordFactory(factory)
            for handler, found in filtered:
                handler.addFilter(found)
    assert narrated.status == 200
    shown = capture.shown()
    assert API_KEY in shown
    assert "Quokka marmalade" in shown


# --- Entra ID tokens --------------------------------------------------------------------------------


class RecordingCredential(FakeTokenCredential):
    """A :class:`FakeTokenCredential` that remembers every token it hands out."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: list[str] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        token = await super().get_token(*scopes, **kwargs)
        self.tokens.append(token.token)
        return token

    async def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        info = await super().get_token_info(*scopes, options=options)
        self.tokens.append(info.token)
        return info


@pytest.mark.parametrize("forced", [False, True], ids=["levels as set", "libraries forced to debug"])
async def test_no_token_or_delegation_signature_is_logged_on_the_entra_id_path(
    monkeypatch: pytest.MonkeyPatch, azurite_oauth: AzuriteServer, container_name: str, forced: bool
) -> None:
    assert azurite_oauth.tls is not None
    cafile = str(azurite_oauth.tls.cert_path)
    credential = RecordingCredential()
    accepted_tokens: list[str] = []

    def entra_token(token: str) -> bool:
        accepted_tokens.append(token)
        return bool(token_claims(token).get("oid"))

    realtime = RealtimeEmulator(
        api_key=f"never-{uuid.uuid4().hex}", engine="synthetic", token_validator=entra_token
    ).start_in_thread()
    for name in ("AZURE_OPENAI_AUDIO_API_KEY", "NARRATION_STORAGE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        "AZURE_OPENAI_AUDIO_ENDPOINT": realtime.url,
        "AZURE_OPENAI_AUDIO_MAX_RETRIES": "0",
        "AZURE_OPENAI_AUDIO_TIMEOUT_SECONDS": "10",
        "NARRATION_STORAGE__blobServiceUri": azurite_oauth.blob_endpoint,
        "NARRATION_STORAGE__queueServiceUri": azurite_oauth.queue_endpoint,
        "NARRATION_OUTPUT_CONTAINER": container_name,
    }.items():
        monkeypatch.setenv(name, value)
    function_app.graph.use(
        lambda: App(Settings.from_env(), credential=credential, client_kwargs={"connection_verify": cafile})
    )
    secrets = Secrets()
    try:
        function_app.graph.get()
        with (
            every_logger_at_debug() as capture,
            libraries_forced_to_debug() if forced else contextlib.nullcontext(),
        ):
            narrated = await post({"text": TEXT})
            realtime.inject(Fault(FaultKind.HANDSHAKE_401))
            refused = await post({"text": f"{TEXT} Refused."})
    finally:
        await function_app.graph.aclose()
        function_app.graph.use(App.from_env)
        realtime.stop()
        with (
            BlobServiceClient(
                azurite_oauth.blob_endpoint, credential=FakeTokenCredential().sync(), connection_verify=cafile
            ) as service,
            contextlib.suppress(ResourceNotFoundError),
        ):
            service.delete_container(container_name)

    assert narrated.status == 200, narrated.json()
    assert refused.status == 502, refused.json()
    assert accepted_tokens, "the Realtime API was reached with a bearer token"
    assert "skoid" in narrated.json()["audio_url"], "a user delegation SAS"
    secrets.add(FUNCTION_KEY, *credential.tokens, *accepted_tokens)
    secrets.add_sas(narrated.json()["audio_url"])
    assert len(credential.tokens) >= 2, "tokens for Storage and for Azure OpenAI"
    secrets.assert_absent_from(capture.shown())
    if forced:
        assert "Authorization: [redacted]" in capture.shown()
    else:
        assert quiet_libraries_said_nothing(capture)
