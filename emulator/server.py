"""The emulator's WebSocket server: handshake rules (path, auth, model, faults) and sessions.

Only ``/openai/v1/realtime?model=<deployment>`` upgrades; every rejection is a real HTTP
response with an Azure-style JSON body ``{"error": {"code", "message"}}``, so the SDK
raises ``websockets.exceptions.InvalidStatus``. ``GET /`` and ``GET /health`` answer
``200 {"status": "ok"}`` for readiness checks and are not counted as handshakes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from emulator.faults import Fault, FaultBook
from emulator.protocol import new_id
from emulator.session import RealtimeSession, SessionRecord, SessionSettings
from emulator.speech import SpeechEngine, make_engine

log = logging.getLogger("emulator")

REALTIME_PATH: Final = "/openai/v1/realtime"
DEFAULT_MODELS: Final[tuple[str, ...]] = ("gpt-realtime-mini",)
DEFAULT_API_KEY: Final = "emulator-key"
DEFAULT_LEVEL_VARIATION_DB: Final = 8.0
"""Speech level spread between voices and sessions: about ±4 dB."""
MAX_CLIENT_MESSAGE_BYTES: Final = 16 * 1024 * 1024
_HEALTH_PATHS: Final = frozenset({"/", "/health"})

_ERROR_BODIES: Final[dict[int, tuple[str, str]]] = {
    400: ("BadRequest", "Missing required query parameter 'model'."),
    401: (
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
        "valid key for an active subscription and use a correct regional API endpoint for your resource.",
    ),
    403: ("PermissionDenied", "The principal does not have permission to perform this operation."),
    404: (
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created the deployment within the "
        "last 5 minutes, please wait a moment and try again.",
    ),
    429: (
        "429",
        "Requests to the Realtime API have exceeded the token rate limit of your current pricing tier. "
        "Please retry after the time in the retry-after header.",
    ),
    500: ("InternalServerError", "The server had an error while processing your request."),
    503: (
        "ServiceUnavailable",
        "The service is temporarily unable to process your request. Try again later.",
    ),
}


@dataclass(frozen=True, slots=True)
class Pace:
    """How fast responses stream: ``speed`` seconds of audio per wall-clock second in each
    session (``None``: as fast as possible) and ``first_audio_delay`` seconds from
    ``response.create`` to the first audio."""

    speed: float | None
    first_audio_delay: float = 0.0


INSTANT_PACE: Final = Pace(None, 0.0)
"""The default: no waiting (what the test suite uses)."""
REAL_PACE: Final = Pace(3.5, 0.5)
"""Near the real service: a few seconds of audio per second per session, first audio after
about half a second (``gpt-realtime-mini`` streams faster than it speaks)."""
PACES: Final[dict[str, Pace]] = {"instant": INSTANT_PACE, "real": REAL_PACE}
PACE_ENV: Final = "REALTIME_EMULATOR_PACE"
"""Environment variable read by ``python -m emulator`` when ``--pace`` is not given."""


def parse_pace(value: str) -> Pace:
    """``instant``, ``real``, or a speed in seconds of audio per second (``4`` or ``4x``,
    with the real pace's first-audio delay). Raises ``ValueError`` for anything else."""
    text = value.strip().lower()
    if text in PACES:
        return PACES[text]
    try:
        speed = float(text.removesuffix("x"))
    except ValueError:
        raise ValueError(f"pace must be one of {', '.join(PACES)} or a speed such as 4x") from None
    if not 0 < speed < math.inf:
        raise ValueError("a pace's speed must be a positive number")
    return Pace(speed, REAL_PACE.first_audio_delay)


@dataclass(frozen=True, slots=True)
class HandshakeRecord:
    """One WebSocket handshake attempt: where it went and the HTTP status it got (101 = accepted)."""

    path: str
    model: str | None
    status: int
    auth: str
    at: float


class RealtimeEmulator:
    """A local stand-in for the Azure OpenAI GA Realtime WebSocket API.

    ``api_key=None`` accepts any credentials. ``speed`` is seconds of audio sent per
    wall-clock second (``None``: as fast as possible); ``pace`` sets ``speed`` and
    ``first_audio_delay`` together (:data:`REAL_PACE` or ``"real"`` for a pace near the
    service's, ``"instant"``), overriding them. ``engine`` is an engine name (see
    :mod:`emulator.speech`) or an object with ``synthesize(text, voice)``.
    ``token_validator`` accepts bearer tokens other than the API key (Entra ID tests).
    ``record_audio`` keeps audio payloads in the recorded events (off: they are elided).
    ``level_variation_db`` spreads the speech level between voices and sessions (several dB,
    as a real model's level varies), so loudness matching is tested for real; 0 turns it off.

    Use ``async with emulator:`` inside an event loop, or :meth:`start_in_thread` and
    :meth:`stop` from synchronous code. :meth:`inject`, :meth:`clear_faults`,
    :meth:`reset` and the record properties are safe from any thread.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = DEFAULT_API_KEY,
        models: Iterable[str] = DEFAULT_MODELS,
        speed: float | None = None,
        engine: str | SpeechEngine = "auto",
        first_audio_delay: float = 0.0,
        token_validator: Callable[[str], bool] | None = None,
        *,
        faults: Iterable[Fault] = (),
        record_audio: bool = False,
        level_variation_db: float = DEFAULT_LEVEL_VARIATION_DB,
        pace: Pace | str | None = None,
    ) -> None:
        if pace is not None:
            chosen = parse_pace(pace) if isinstance(pace, str) else pace
            speed, first_audio_delay = chosen.speed, chosen.first_audio_delay
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive seconds of audio per second, or None for instant")
        if first_audio_delay < 0:
            raise ValueError("first_audio_delay cannot be negative")
        self.host = host
        self.api_key = api_key
        self.models = tuple(models)
        self.token_validator = token_validator
        self._requested_port = port
        self._faults = FaultBook()
        for fault in faults:
            self._faults.add(fault)
        self._settings = SessionSettings(
            engine=make_engine(engine) if isinstance(engine, str) else engine,
            faults=self._faults,
            speed=speed,
            first_audio_delay=first_audio_delay,
            record_audio=record_audio,
            level_variation_db=level_variation_db,
        )
        self._sessions: list[SessionRecord] = []
        self._handshakes: list[HandshakeRecord] = []
        self._server: Server | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None

    # -- settings and records ------------------------------------------------------------

    @property
    def engine_name(self) -> str:
        return self._settings.engine.name

    @property
    def speed(self) -> float | None:
        return self._settings.speed

    @property
    def first_audio_delay(self) -> float:
        return self._settings.first_audio_delay

    @property
    def port(self) -> int:
        """The port listened on (the real one when constructed with ``port=0``)."""
        if self._port is None:
            raise RuntimeError("the emulator is not running")
        return self._port

    @property
    def url(self) -> str:
        """``http://HOST:PORT``: the value for ``AZURE_OPENAI_AUDIO_ENDPOINT``."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def websocket_base_url(self) -> str:
        """``ws://HOST:PORT/openai/v1``: the SDK's ``websocket_base_url``."""
        return "ws" + self.url.removeprefix("http") + "/openai/v1"

    @property
    def sessions(self) -> list[SessionRecord]:
        """One record per accepted WebSocket, oldest first (a copy of the list)."""
        return list(self._sessions)

    @property
    def handshakes(self) -> int:
        """WebSocket handshake attempts so far, rejected ones included."""
        return len(self._handshakes)

    @property
    def handshake_log(self) -> list[HandshakeRecord]:
        return list(self._handshakes)

    def inject(self, fault: Fault) -> None:
        """Queue ``fault``; it fires on the next matching handshake or response."""
        self._faults.add(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def pending_faults(self) -> list[Fault]:
        return self._faults.pending()

    def reset(self) -> None:
        """Forget the records and the pending faults."""
        self._sessions.clear()
        self._handshakes.clear()
        self._faults.clear()

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening in the running event loop."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._server = await serve(
            self._serve_connection,
            self.host,
            self._requested_port,
            process_request=self._process_request,
            max_size=MAX_CLIENT_MESSAGE_BYTES,
            server_header="realtime-emulator",
            logger=logging.getLogger("emulator.websockets"),
        )
        self._port = int(next(iter(self._server.sockets)).getsockname()[1])
        log.info(
            "listening on %s (engine=%s speed=%s models=%s)",
            self.url, self.engine_name, self.speed or "instant", ",".join(self.models),
        )  # fmt: skip

    async def aclose(self) -> None:
        """Close every connection (code 1001) and stop listening."""
        server, self._server = self._server, None
        if server is not None:
            server.close(close_connections=True)
            await server.wait_closed()
            self._port = None

    async def __aenter__(self) -> RealtimeEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def start_in_thread(self, timeout: float = 30.0) -> RealtimeEmulator:
        """Run the emulator on its own event loop in a daemon thread; return once listening."""
        if self._thread is not None:
            raise RuntimeError("the emulator is already running in a thread")
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
                loop.close()

        thread = threading.Thread(target=run, name="realtime-emulator", daemon=True)
        thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("the emulator did not start in time")
        if failure:
            thread.join(timeout)
            raise failure[0]
        self._thread, self._thread_loop = thread, loop
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop an emulator started with :meth:`start_in_thread` and wait for its thread."""
        thread, loop = self._thread, self._thread_loop
        if thread is None or loop is None:
            if self._server is not None:
                raise RuntimeError("started with start(): use 'await emulator.aclose()' instead")
            return
        asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = self._thread_loop = None

    # -- connections ---------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path in _HEALTH_PATHS and "upgrade" not in request.headers:
            return _json_response(connection, 200, {"status": "ok"})
        query = parse_qs(parts.query)
        model = query["model"][0] if query.get("model") else None
        auth, accepted, _ = self._authenticate(request.headers, query)
        fault = self._faults.take_handshake_fault()
        if fault is not None:
            status = fault.kind.http_status
        else:
            status = self._handshake_status(parts.path, query, model, accepted)
        self._handshakes.append(HandshakeRecord(parts.path, model, status, auth, time.time()))
        if status == 101:
            return None
        log.info("handshake rejected status=%d path=%s auth=%s", status, parts.path, auth)
        return _error_response(connection, status, fault.retry_after if fault is not None else None)

    def _handshake_status(
        self, path: str, query: dict[str, list[str]], model: str | None, accepted: bool
    ) -> int:
        """The HTTP status for a handshake without faults: 101 when it may upgrade."""
        if path.rstrip("/") != REALTIME_PATH:
            return 404
        if not accepted:
            return 401
        if "api-version" in query:
            # The GA endpoint rejects the preview-style api-version parameter with 401.
            return 401
        if model is None:
            return 400
        if model not in self.models:
            return 404
        return 101

    def _authenticate(self, headers: Headers, query: dict[str, list[str]]) -> tuple[str, bool, bool]:
        """Return ``(auth kind, accepted, accepted by the token validator)``."""
        candidates: list[tuple[str, str]] = []
        if "api-key" in headers:
            candidates.append(("api-key", headers["api-key"]))
        authorization = headers.get("authorization", "")
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            candidates.append(("bearer", credential.strip()))
        if "api-key" in query:
            candidates.append(("api-key", query["api-key"][0]))
        if self.api_key is None:
            return (candidates[0][0] if candidates else "none"), True, False
        for kind, value in candidates:
            if value == self.api_key:
                return kind, True, False
        for kind, value in candidates:
            if kind == "bearer" and self.token_validator is not None and self.token_validator(value):
                return kind, True, True
        return (candidates[0][0] if candidates else "none"), False, False

    async def _serve_connection(self, connection: ServerConnection) -> None:
        request = connection.request
        assert request is not None
        parts = urlsplit(request.path)
        query = parse_qs(parts.query)
        auth, _, token_validated = self._authenticate(request.headers, query)
        record = SessionRecord(
            id=new_id("sess"), model=query["model"][0], auth=auth, token_validated=token_validated
        )
        self._sessions.append(record)
        log.info("session %s opened model=%s auth=%s", record.id, record.model, auth)
        started = time.monotonic()
        try:
            await RealtimeSession(connection, record, self._settings).run()
        finally:
            log.info(
                "session %s closed code=%s client_events=%d server_events=%d responses=%d took=%.3fs",
                record.id,
                record.close_code,
                len(record.client_events),
                len(record.server_events),
                len(record.responses),
                time.monotonic() - started,
            )


def _json_response(
    connection: ServerConnection, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    response = connection.respond(status, json.dumps(body))
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _error_response(connection: ServerConnection, status: int, retry_after: float | None) -> Response:
    code, message = _ERROR_BODIES.get(status, (str(status), "The request failed."))
    request_id = new_id("req")
    headers = {"x-request-id": request_id, "apim-request-id": request_id}
    if retry_after is not None:
        headers["retry-after"] = str(math.ceil(retry_after))
        headers["retry-after-ms"] = str(round(retry_after * 1000))
    return _json_response(connection, status, {"error": {"code": code, "message": message}}, headers)
