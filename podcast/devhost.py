"""A local development host: the function app's own functions on ``http://localhost:7071/api``.

``python -m podcast.devhost`` (or ``bash scripts/demo.sh --serve``) does locally what the
Azure Functions host does, since Core Tools cannot be installed on these machines:

* **HTTP**: every HTTP-triggered function of the app (found from its bindings by
  :func:`~podcast.http.hosting.function_index`, so new routes need no change here) is
  served under ``/api/<route>`` with its methods. Functions with an auth level other than
  ``ANONYMOUS`` need the local key (``x-functions-key`` or ``?code=``); a missing or wrong
  key is ``401``, an unknown route or method ``404``, an exception ``500``, as on Azure.
* **Queue triggers**: each queue is drained from Storage (Azurite) as the host does:
  a message is received hidden for ``functionTimeout``, its base64 text decoded, the
  function called; the message is deleted when it returns, made visible again after
  ``host.json``'s ``visibilityTimeout`` when it raises, and moved to ``<queue>-poison``
  when it raises on delivery ``maxDequeueCount``. One message at a time per queue.
* **Blob triggers**: the trigger's container is listed every ``--poll`` seconds and each
  blob that is new or changed (a new ETag) since the host started is delivered, as Event
  Grid would, at least once: a delivery that raises is repeated at the next poll, up to
  ``poisonBlobThreshold`` deliveries. Blobs present at start are not delivered (no event
  announced them). The container is created if missing.

Settings come from the environment; those not set are read from ``local.settings.json``
(else ``local.settings.example.json``), as ``func start`` does. When the storage is
``UseDevelopmentStorage=true`` (or Azurite's default ports) and Azurite is not running,
it is started (``scripts/azurite.sh``); when ``AZURE_OPENAI_AUDIO_ENDPOINT`` is a loopback
URL with nothing listening, the Realtime emulator is started there. Both are stopped again
on Ctrl-C (SIGINT) or SIGTERM, along with the app's clients. The access log shows method,
path and status, never the query string (it may hold the key).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import importlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Final
from urllib.parse import quote, urlsplit

import azure.functions as func
from aiohttp import web
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage
from azure.storage.blob.aio import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueMessage as StoredMessage
from azure.storage.queue.aio import QueueClient
from multidict import CIMultiDict

from podcast.http.hosting import (
    BlobFunction,
    FunctionIndex,
    HttpFunction,
    QueueFunction,
    QueueSettings,
    blob_input_stream,
    call,
    decode_message,
    function_index,
    function_timeout_seconds,
    match_route,
    poison_blob_threshold,
    queue_settings,
    resolve_setting,
)

log = logging.getLogger("podcast.devhost")

DEFAULT_PORT: Final = 7071
ROUTE_PREFIX: Final = "api"
DEVELOPMENT_STORAGE: Final = "UseDevelopmentStorage=true"
AZURITE_PORTS: Final = (10000, 10001)
ROOT: Final = Path(__file__).resolve().parents[1]
"""The app's folder: ``function_app.py``, ``host.json``, ``local.settings*.json``, ``scripts/``."""


# --- Settings and the services they name -----------------------------------------------------------


def load_local_settings(root: Path = ROOT, environ: MutableMapping[str, str] | None = None) -> Path | None:
    """Put the ``Values`` of ``local.settings.json`` (else ``local.settings.example.json``)
    into ``environ`` for the names it does not set already; the file read, or ``None``."""
    environ = os.environ if environ is None else environ
    for name in ("local.settings.json", "local.settings.example.json"):
        path = root / name
        if path.exists():
            values = json.loads(path.read_text(encoding="utf-8")).get("Values", {})
            for key, value in values.items():
                environ.setdefault(key, str(value))
            return path
    return None


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _is_loopback(host: str | None) -> bool:
    return host in ("127.0.0.1", "localhost", "::1")


def _uses_default_azurite(connection: str) -> bool:
    if connection.strip().rstrip(";") == DEVELOPMENT_STORAGE:
        return True
    parts = dict(part.split("=", 1) for part in connection.split(";") if "=" in part)
    blob = urlsplit(parts.get("BlobEndpoint", ""))
    return _is_loopback(blob.hostname) and blob.port == AZURITE_PORTS[0]


@dataclass
class Services:
    """Azurite and the emulator when this host started them (it stops only those)."""

    azurite: bool = False
    emulator: subprocess.Popen[bytes] | None = None
    started: list[str] = field(default_factory=list)

    def ensure(self, environ: Mapping[str, str], *, pace: str, root: Path = ROOT) -> None:
        """Start what the settings point at but is not running (see the module docstring)."""
        connections = {environ.get(name, "") for name in ("NARRATION_STORAGE", "AzureWebJobsStorage")}
        if any(_uses_default_azurite(c) for c in connections if c) and not all(
            _listening("127.0.0.1", port) for port in AZURITE_PORTS
        ):
            subprocess.run(
                ["bash", str(root / "scripts" / "azurite.sh"), "start"], check=True, capture_output=True
            )
            self.azurite = True
            self.started.append("Azurite (scripts/azurite.sh, in memory)")
        endpoint = urlsplit(environ.get("AZURE_OPENAI_AUDIO_ENDPOINT", ""))
        local = endpoint.scheme == "http" and _is_loopback(endpoint.hostname) and endpoint.port
        if local and endpoint.port and not _listening(endpoint.hostname or "127.0.0.1", endpoint.port):
            self._start_emulator(environ, endpoint.port, pace, root)

    def _start_emulator(self, environ: Mapping[str, str], port: int, pace: str, root: Path) -> None:
        logs = root / ".run"
        logs.mkdir(exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "emulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--pace",
            pace,
        ]
        key = environ.get("AZURE_OPENAI_AUDIO_API_KEY")
        command += ["--api-key", key] if key else ["--no-auth"]
        with (logs / "devhost-emulator.log").open("wb") as output:
            self.emulator = subprocess.Popen(command, cwd=root, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not _listening("127.0.0.1", port):
            if self.emulator.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Realtime emulator did not start: see {logs / 'devhost-emulator.log'}"
                )
            time.sleep(0.1)
        self.started.append(f"the Realtime emulator (127.0.0.1:{port}, pace {pace})")

    def stop(self, root: Path = ROOT) -> None:
        """Stop what :meth:`ensure` started."""
        if self.emulator is not None and self.emulator.poll() is None:
            self.emulator.send_signal(signal.SIGINT)
            try:
                self.emulator.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.emulator.kill()
                self.emulator.wait()
        if self.azurite:
            subprocess.run(
                ["bash", str(root / "scripts" / "azurite.sh"), "stop"], check=False, capture_output=True
            )


# --- HTTP --------------------------------------------------------------------------------------------


def _specificity(function: HttpFunction) -> int:
    """Literal segments first, as the host's router prefers ``a/b`` to ``a/{x}``."""
    return -sum(1 for segment in function.route.split("/") if not segment.startswith("{"))


def _headers(request: web.Request) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _to_aiohttp(response: func.HttpResponse) -> web.Response:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in response.headers.items():
        headers.add(name, value)
    if "Content-Type" not in headers and response.mimetype:
        charset = f"; charset={response.charset}" if response.charset else ""
        headers["Content-Type"] = f"{response.mimetype}{charset}"
    return web.Response(status=response.status_code, body=response.get_body() or b"", headers=headers)


class HttpHost:
    """The app's HTTP functions behind ``/api/{route}``, with function-key checks."""

    def __init__(self, functions: Sequence[HttpFunction], key: str) -> None:
        self._functions = sorted(functions, key=_specificity)
        self._key = key

    def application(self) -> web.Application:
        app = web.Application(client_max_size=110 * 1024 * 1024)  # the host's 100 MB request limit
        app.router.add_route("*", f"/{ROUTE_PREFIX}/{{tail:.*}}", self.handle)
        return app

    def _authorised(self, request: web.Request) -> bool:
        given = request.headers.get("x-functions-key") or request.query.get("code") or ""
        return hmac.compare_digest(given.encode(), self._key.encode())

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """One request: the first function whose route and method match, else 404."""
        started = time.monotonic()
        answer = await self._answer(request)
        log.info(
            "%s /%s/%s -> %d (%.0f ms)",
            request.method,
            ROUTE_PREFIX,
            # Percent-encoded again: a decoded CR, NUL or terminal escape would forge or garble lines.
            quote(request.match_info["tail"], safe="/:@!$&'()*+,;=-._~"),
            answer.status,
            (time.monotonic() - started) * 1000,
        )
        return answer

    async def _answer(self, request: web.Request) -> web.Response:
        path = request.match_info["tail"]
        for function in self._functions:
            params = match_route(function.route, path)
            if params is None or request.method.upper() not in function.methods:
                continue
            if function.auth_level != "ANONYMOUS" and not self._authorised(request):
                return web.Response(status=401)
            http_request = func.HttpRequest(
                method=request.method.upper(),
                url=str(request.url),
                headers=_headers(request),
                params=dict(request.query),
                route_params=params,
                body=await request.read(),
            )
            try:
                response = await call(function.function, http_request)
            except Exception as error:
                log.error("function %s raised %s", function.name, type(error).__name__)
                return web.Response(status=500)
            return _to_aiohttp(response)
        return web.Response(status=404)


# --- Queue and blob triggers -------------------------------------------------------------------------


def _connection_string(connection: str, environ: Mapping[str, str]) -> str:
    value = environ.get(connection, "")
    if not value:
        raise RuntimeError(
            f"the trigger's connection setting {connection} is not set "
            "(the local host needs a connection string there, e.g. UseDevelopmentStorage=true)"
        )
    return value


class QueueWorker:
    """Drains one queue into its function (see the module docstring)."""

    def __init__(
        self,
        function: QueueFunction,
        environ: Mapping[str, str],
        poll_seconds: float,
        settings: QueueSettings | None = None,
    ) -> None:
        self.function = function
        self.queue = resolve_setting(function.queue_name, environ)
        self._connection = _connection_string(function.connection, environ)
        self._poll = poll_seconds
        self._settings = settings or queue_settings()
        self._hidden_for = int(function_timeout_seconds())

    async def run(self) -> None:
        async with QueueClient.from_connection_string(self._connection, self.queue) as client:
            while True:
                try:
                    stored = await client.receive_message(visibility_timeout=self._hidden_for)
                except ResourceNotFoundError:  # no queue until the first job creates it
                    stored = None
                if stored is None:
                    await asyncio.sleep(self._poll)
                    continue
                await self._deliver(client, stored)

    async def _deliver(self, client: QueueClient, stored: StoredMessage) -> None:
        count = stored.dequeue_count or 1
        try:
            # A message that is not base64 fails its delivery, as on the host (and ends in the poison queue).
            message = QueueMessage(  # type: ignore[no-untyped-call]
                id=stored.id,
                body=decode_message(str(stored.content)),
                dequeue_count=count,
                pop_receipt=stored.pop_receipt,
            )
            await call(self.function.function, message)
        except Exception as error:
            if count >= self._settings.max_dequeue_count:
                log.warning(
                    "%s: message %s raised %s on delivery %d: moved to the poison queue",
                    self.function.name,
                    stored.id,
                    type(error).__name__,
                    count,
                )
                await self._poison(client, stored)
            else:
                log.warning(
                    "%s: message %s raised %s on delivery %d: visible again in %.0f s",
                    self.function.name,
                    stored.id,
                    type(error).__name__,
                    count,
                    self._settings.visibility_timeout,
                )
                await client.update_message(
                    stored,
                    pop_receipt=stored.pop_receipt,
                    visibility_timeout=int(self._settings.visibility_timeout),
                )
            return
        await client.delete_message(stored)

    async def _poison(self, client: QueueClient, stored: StoredMessage) -> None:
        async with QueueClient.from_connection_string(self._connection, f"{self.queue}-poison") as poison:
            with contextlib.suppress(ResourceExistsError):
                await poison.create_queue()
            await poison.send_message(stored.content)
        await client.delete_message(stored)


class BlobWatcher:
    """Delivers new and changed blobs of one container to its function (see the module docstring)."""

    def __init__(
        self,
        function: BlobFunction,
        environ: Mapping[str, str],
        poll_seconds: float,
        threshold: int | None = None,
    ) -> None:
        self.function = function
        self.container = resolve_setting(function.path, environ).split("/", 1)[0]
        self._connection = _connection_string(function.connection, environ)
        self._poll = poll_seconds
        self._threshold = threshold or poison_blob_threshold()
        self._seen: dict[str, str] = {}
        self._failures: dict[tuple[str, str], int] = {}
        self.ready = asyncio.Event()

    async def run(self) -> None:
        async with BlobServiceClient.from_connection_string(self._connection) as service:
            container = service.get_container_client(self.container)
            with contextlib.suppress(ResourceExistsError):
                await container.create_container()
            async for blob in container.list_blobs():
                self._seen[blob.name] = _bare(blob.etag)
            self.ready.set()
            while True:
                await asyncio.sleep(self._poll)
                async for blob in container.list_blobs():
                    if self._seen.get(blob.name) != _bare(blob.etag):
                        await self._deliver(container, blob.name)

    async def _deliver(self, container: ContainerClient, name: str) -> None:
        try:
            downloaded = await container.download_blob(name)
            data = await downloaded.readall()
        except ResourceNotFoundError:  # deleted since it was listed
            self._seen.pop(name, None)
            return
        # The version downloaded (it may be newer than the one listed), with its ETag as Storage sends it.
        etag = str(downloaded.properties.etag)
        stream = blob_input_stream(
            self.container,
            name,
            data,
            account_url=container.url.rsplit("/", 1)[0],
            etag=etag,
            content_type=downloaded.properties.content_settings.content_type,
        )
        version = (name, _bare(etag))
        try:
            await call(self.function.function, stream)
        except Exception as error:
            tries = self._failures[version] = self._failures.get(version, 0) + 1
            if tries < self._threshold:
                log.warning(
                    "%s: a blob raised %s (delivery %d): delivered again",
                    self.function.name,
                    type(error).__name__,
                    tries,
                )
                return
            log.warning(
                "%s: a blob raised %s on delivery %d: given up",
                self.function.name,
                type(error).__name__,
                tries,
            )
        self._failures.pop(version, None)
        self._seen[name] = version[1]


def _bare(etag: object) -> str:
    """An ETag without quotes (listings and downloads spell it differently)."""
    return str(etag).removeprefix("W/").strip('"')


# --- The host ----------------------------------------------------------------------------------------


@dataclass
class DevHost:
    """The app's functions served and triggered locally (see the module docstring)."""

    index: FunctionIndex
    key: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    poll_seconds: float = 0.5
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    async def serve(self, stop: asyncio.Event, *, announce: bool = True) -> None:
        """Serve until ``stop`` is set, then stop the triggers and the server."""
        runner = web.AppRunner(HttpHost(self.index.http, self.key).application(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        watchers = [BlobWatcher(f, self.environ, self.poll_seconds) for f in self.index.blobs]
        workers = [QueueWorker(f, self.environ, self.poll_seconds) for f in self.index.queues]
        tasks = [asyncio.create_task(w.run(), name=w.function.name) for w in workers]
        tasks += [asyncio.create_task(w.run(), name=w.function.name) for w in watchers]
        try:
            await asyncio.wait(
                [asyncio.create_task(w.ready.wait()) for w in watchers]
                or [asyncio.create_task(asyncio.sleep(0))],
                timeout=10,
            )
            if announce:
                self._announce(workers, watchers)
            stopping = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopping and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await runner.cleanup()

    def _announce(self, workers: Sequence[QueueWorker], watchers: Sequence[BlobWatcher]) -> None:
        shown = "localhost" if self.host in ("127.0.0.1", "0.0.0.0", "localhost") else self.host
        base = f"http://{shown}:{self.port}/{ROUTE_PREFIX}"
        lines = [f"Function key (send as x-functions-key or ?code=): {self.key}", "HTTP functions:"]
        for function in self.index.http:
            lines.append(f"  {','.join(function.methods):<6} {base}/{function.route}  [{function.name}]")
        for worker in workers:
            lines.append(f"Queue trigger {worker.function.name}: draining queue {worker.queue}")
        for watcher in watchers:
            lines.append(f"Blob trigger {watcher.function.name}: uploads to container {watcher.container}")
        if any(function.route == "player" for function in self.index.http):
            lines.append(f"Player: {base}/player?code={self.key}")
        lines.append("Press Ctrl-C to stop.")
        print("\n".join(lines), flush=True)


async def _close_app(module: ModuleType) -> None:
    graph: Any = getattr(module, "graph", None)
    closer = getattr(graph, "aclose", None)
    if callable(closer):
        await closer()


async def _main(args: argparse.Namespace, module: ModuleType) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    host = DevHost(function_index(module.app), args.key, args.host, args.port, args.poll)
    try:
        await host.serve(stop)
    finally:
        await _close_app(module)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m podcast.devhost", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--key", default=None, help="the function key to require (default: a new random one)")
    parser.add_argument(
        "--pace", default="instant", help="pace of an emulator this host starts (instant, real, 4x)"
    )
    parser.add_argument(
        "--poll", type=float, default=0.5, help="seconds between queue and blob polls (default 0.5)"
    )
    parser.add_argument("--app", default="function_app", help="module holding the FunctionApp `app`")
    parser.add_argument("--no-services", action="store_true", help="start neither Azurite nor the emulator")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the local host until Ctrl-C; 0 after a clean stop."""
    args = parse_args(argv)
    args.key = args.key or secrets.token_urlsafe(24)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    settings_file = load_local_settings()
    if settings_file is not None:
        log.info("settings not in the environment are read from %s", settings_file.name)
    sys.path.insert(0, str(ROOT))
    module = importlib.import_module(args.app)
    services = Services()
    try:
        if not args.no_services:
            services.ensure(os.environ, pace=args.pace)
            for started in services.started:
                log.info("started %s", started)
        asyncio.run(_main(args, module))
    finally:
        services.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
