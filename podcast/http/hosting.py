"""What the Azure Functions host does with a v2-model ``FunctionApp``, for hosts outside Azure.

Shared by the local development host (:mod:`podcast.devhost`) and the test kit
(``testkit/host.py``), so both call the app's own decorated functions the same way:

* :func:`function_index`: the app's functions as the host indexes them (their
  ``function.json`` bindings: HTTP routes, methods and auth levels, queue and blob triggers),
  so routes added to ``function_app.py`` are served without being listed anywhere else;
* :func:`match_route` and :func:`resolve_setting` (``%NAME%`` binding expressions);
* :func:`call`: a coroutine function awaited, a plain one run in a worker thread;
* :func:`queue_settings` (``host.json``'s ``extensions.queues``), :func:`decode_message`
  (the queue trigger's ``messageEncoding``) and :func:`blob_input_stream`.

Nothing here talks to Storage or opens a socket.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import azure.functions as func
from azure.functions.blob import InputStream

HOST_JSON: Final = Path(__file__).resolve().parents[2] / "host.json"
"""The app's ``host.json`` (beside ``function_app.py``)."""
DEFAULT_MAX_DEQUEUE_COUNT: Final = 5
"""The host's default ``maxDequeueCount`` when ``host.json`` sets none."""
DEFAULT_FUNCTION_TIMEOUT_SECONDS: Final = 300.0
"""The host's default ``functionTimeout`` (Consumption plan) when ``host.json`` sets none."""
DEFAULT_POISON_BLOB_THRESHOLD: Final = 5
"""The blob extension's default ``poisonBlobThreshold``."""


# --- Calling a function as the host does ----------------------------------------------------------


def user_function(function: Any) -> Callable[..., Any]:
    """The Python function behind a v2 decorator (``FunctionBuilder``), or ``function`` itself."""
    built = getattr(function, "_function", None)
    getter = getattr(built, "get_user_function", None)
    return getter() if callable(getter) else function  # type: ignore[no-any-return]


async def call(function: Any, argument: Any) -> Any:
    """Call a trigger function with its one input: awaited if it is a coroutine function,
    else (as the host runs synchronous functions) in a worker thread."""
    target = user_function(function)
    if inspect.iscoroutinefunction(target):
        return await target(argument)
    result = await asyncio.to_thread(target, argument)
    if inspect.isawaitable(result):
        return await result
    return result


# --- The function index ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpFunction:
    """An HTTP-triggered function: its route (without the ``api/`` prefix), methods and auth level."""

    name: str
    function: Callable[..., Any]
    route: str
    methods: tuple[str, ...]
    auth_level: str


@dataclass(frozen=True)
class QueueFunction:
    """A queue-triggered function: the queue name (maybe a ``%SETTING%``) and its connection setting."""

    name: str
    function: Callable[..., Any]
    queue_name: str
    connection: str


@dataclass(frozen=True)
class BlobFunction:
    """A blob-triggered function: its path (``<container>/{name}``, maybe with ``%SETTING%``)."""

    name: str
    function: Callable[..., Any]
    path: str
    connection: str


@dataclass(frozen=True)
class FunctionIndex:
    """The functions of an app, by trigger kind; a trigger kind not listed here is ignored."""

    http: tuple[HttpFunction, ...]
    queues: tuple[QueueFunction, ...]
    blobs: tuple[BlobFunction, ...]


def function_index(app: func.FunctionApp) -> FunctionIndex:
    """Index ``app``'s functions from their ``function.json`` bindings, as the host does."""
    # get_functions() builds the bindings once per call and raises on a second build.
    app.functions_bindings = None
    http: list[HttpFunction] = []
    queues: list[QueueFunction] = []
    blobs: list[BlobFunction] = []
    try:
        functions = app.get_functions()
        for function in functions:
            name = str(function.get_function_name())
            target = function.get_user_function()
            for binding in json.loads(function.get_function_json())["bindings"]:
                kind = binding.get("type")
                if kind == "httpTrigger":
                    methods = binding.get("methods") or ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
                    http.append(
                        HttpFunction(
                            name=name,
                            function=target,
                            route=str(binding.get("route") or name).strip("/"),
                            methods=tuple(str(method).upper() for method in methods),
                            auth_level=str(binding.get("authLevel", "FUNCTION")).upper(),
                        )
                    )
                elif kind == "queueTrigger":
                    queues.append(QueueFunction(name, target, binding["queueName"], binding["connection"]))
                elif kind == "blobTrigger":
                    blobs.append(BlobFunction(name, target, binding["path"], binding["connection"]))
    finally:
        app.functions_bindings = None
    return FunctionIndex(tuple(http), tuple(queues), tuple(blobs))


def resolve_setting(expression: str, environ: Mapping[str, str] | None = None) -> str:
    """A binding expression with each ``%NAME%`` replaced by that app setting.

    Raises :class:`KeyError` naming the setting when it is not set (the host refuses to
    start such a function).
    """
    environ = os.environ if environ is None else environ
    parts = expression.split("%")
    if len(parts) % 2 == 0:
        raise ValueError(f"unbalanced % in the binding expression {expression!r}")
    resolved = []
    for index, part in enumerate(parts):
        if index % 2 == 0:
            resolved.append(part)
        elif part not in environ:
            raise KeyError(part)
        else:
            resolved.append(environ[part])
    return "".join(resolved)


def match_route(route: str, path: str) -> dict[str, str] | None:
    """The ``{name}`` parameters of ``route`` matched against a URL path (after ``/api/``),
    or ``None`` when it does not match. Literal segments match case-insensitively, as the
    host's router does; ``{name:constraint}`` and ``{name?}`` name the parameter ``name``."""
    wanted = route.strip("/").split("/")
    segments = path.strip("/").split("/")
    if segments[:1] == ["api"]:
        segments = segments[1:]
    if len(segments) != len(wanted):
        return None
    params: dict[str, str] = {}
    for pattern, segment in zip(wanted, segments, strict=True):
        if pattern.startswith("{") and pattern.endswith("}"):
            if not segment:
                return None
            params[pattern[1:-1].split(":", 1)[0].rstrip("?")] = segment
        elif pattern.lower() != segment.lower():
            return None
    return params


# --- host.json ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueSettings:
    """``host.json``'s ``extensions.queues`` settings (the host's defaults where it sets none)."""

    max_dequeue_count: int = DEFAULT_MAX_DEQUEUE_COUNT
    visibility_timeout: float = 0.0


_TIMESPAN: Final = re.compile(r"(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d{1,7})?)")
"""A .NET ``TimeSpan`` as ``host.json`` writes one: ``[d.]hh:mm:ss[.fffffff]``."""


def timespan_seconds(value: str) -> float:
    """A ``host.json`` time span (``hh:mm:ss``, ``d.hh:mm:ss``, fractions of a second) in
    seconds; :class:`ValueError` for anything else (the host itself refuses such a file)."""
    match = _TIMESPAN.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"not a host.json time span ([d.]hh:mm:ss): {value!r}")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86_400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _host_json(host_json: Path) -> dict[str, Any]:
    return json.loads(host_json.read_text()) if host_json.exists() else {}


@cache
def queue_settings(host_json: Path = HOST_JSON) -> QueueSettings:
    """The queue settings of the app's ``host.json``."""
    queues = _host_json(host_json).get("extensions", {}).get("queues", {})
    return QueueSettings(
        max_dequeue_count=int(queues.get("maxDequeueCount", DEFAULT_MAX_DEQUEUE_COUNT)),
        visibility_timeout=timespan_seconds(queues["visibilityTimeout"])
        if "visibilityTimeout" in queues
        else 0.0,
    )


@cache
def function_timeout_seconds(host_json: Path = HOST_JSON) -> float:
    """``host.json``'s ``functionTimeout`` in seconds."""
    value = _host_json(host_json).get("functionTimeout")
    return timespan_seconds(value) if value else DEFAULT_FUNCTION_TIMEOUT_SECONDS


@cache
def poison_blob_threshold(host_json: Path = HOST_JSON) -> int:
    """``host.json``'s ``extensions.blobs.poisonBlobThreshold``: deliveries before a blob is given up."""
    blobs = _host_json(host_json).get("extensions", {}).get("blobs", {})
    return int(blobs.get("poisonBlobThreshold", DEFAULT_POISON_BLOB_THRESHOLD))


# --- Trigger inputs -------------------------------------------------------------------------------


def decode_message(content: str, encoding: str = "base64") -> bytes:
    """The message body the queue trigger gets for the stored text ``content``."""
    if encoding == "none":
        return content.encode()
    try:
        return base64.b64decode(content, validate=True)
    except binascii.Error as error:
        raise ValueError(f"the message is not base64 (the trigger's messageEncoding): {content!r}") from error


def blob_input_stream(
    container: str,
    name: str,
    data: bytes,
    *,
    account_url: str,
    etag: str | None = None,
    content_type: str | None = None,
    uri: str | None = None,
) -> InputStream:
    """The :class:`azure.functions.blob.InputStream` the blob trigger gets for the blob
    ``name`` in ``container``: its content, ``<container>/<name>`` as its name, its URL and
    its properties (``ETag``, ``ContentLength``, ``BlobType``, ``ContentType``). Its URL is
    ``uri`` when given, else the blob's under ``account_url``."""
    properties: dict[str, Any] = {"ContentLength": len(data), "BlobType": "BlockBlob"}
    if etag is not None:
        properties["ETag"] = etag
    if content_type is not None:
        properties["ContentType"] = content_type
    return InputStream(
        data=data,
        name=f"{container}/{name}",
        length=len(data),
        uri=uri or f"{account_url.rstrip('/')}/{container}/{quote(name)}",
        blob_properties=properties,
    )
