"""A stand-in for the Azure Functions host: what it hands the app's functions, and what it
does with their outcome.

Every test that calls a function of :mod:`function_app` goes through here:

* :func:`http_request` builds the :class:`azure.functions.HttpRequest` the host builds
  (absolute URL ``http://localhost:7071/api/<route>``, query string parsed into ``params``,
  route parameters matched from the URL), and :func:`call_http` calls the function with it
  and returns an :class:`HttpAnswer`;
* :func:`deliver` and :func:`drain` feed the queue trigger from a real (Azurite) queue:
  receive with a visibility timeout, decode the base64 text (the trigger's default
  ``messageEncoding``), call the function, delete the message on success and make it
  visible again on an exception (``host.json``'s ``visibilityTimeout``, default 0) or move
  it to ``<queue>-poison`` after ``maxDequeueCount`` deliveries;
* :func:`blob_input_stream` builds the :class:`azure.functions.blob.InputStream` the blob
  trigger receives.

The decorated functions of the v2 programming model are ``FunctionBuilder`` objects: the
function the host runs is the one the user wrote (:func:`user_function`). Like the host,
:func:`call` awaits a coroutine function and runs a plain one in a worker thread. Those,
route matching, ``host.json``'s settings and the trigger inputs are shared with the local
development host (:mod:`podcast.http.hosting`).
"""

from __future__ import annotations

import contextlib
import json as jsonlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.functions.blob import InputStream
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient
from azure.storage.queue import QueueMessage as StoredMessage

from podcast.http import hosting
from podcast.http.hosting import (
    DEFAULT_MAX_DEQUEUE_COUNT,
    HOST_JSON,
    QueueSettings,
    call,
    decode_message,
    match_route,
    queue_settings,
    user_function,
)

__all__ = [
    "DEFAULT_MAX_DEQUEUE_COUNT",
    "HOST_JSON",
    "QueueSettings",
    "call",
    "decode_message",
    "queue_settings",
    "user_function",
]

LOCAL_BASE_URL = "http://localhost:7071/api"
"""Where ``func start`` serves the HTTP functions (``routePrefix`` ``api``)."""
AZURITE_BLOB_URL = "http://127.0.0.1:10000/devstoreaccount1"


# --- HTTP -------------------------------------------------------------------------------------------


class Headers(Mapping[str, str]):
    """Response headers with case-insensitive lookup (names keep their first spelling)."""

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        for name, value in (items or {}).items():
            self._items.setdefault(name.lower(), (name, value))

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


@dataclass(frozen=True)
class HttpAnswer:
    """What the host sends back for an :class:`azure.functions.HttpResponse`."""

    status: int
    headers: Headers
    body: bytes
    mimetype: str | None = None
    charset: str | None = None
    response: func.HttpResponse | None = field(default=None, repr=False, compare=False)

    @property
    def status_code(self) -> int:
        return self.status

    def get_body(self) -> bytes:
        return self.body

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    @classmethod
    def from_response(cls, response: func.HttpResponse) -> HttpAnswer:
        headers = dict(response.headers)
        if response.mimetype and not any(name.lower() == "content-type" for name in headers):
            content_type = response.mimetype
            if response.charset:
                content_type += f"; charset={response.charset}"
            headers["Content-Type"] = content_type
        return cls(
            status=response.status_code,
            headers=Headers(headers),
            body=response.get_body() or b"",
            mimetype=response.mimetype,
            charset=response.charset,
            response=response,
        )


def _fill_route(route: str, route_params: Mapping[str, str]) -> str:
    path = route
    for name, value in route_params.items():
        path = path.replace(f"{{{name}}}", quote(str(value), safe=""))
    return path


def _match_route(route: str, path: str) -> dict[str, str]:
    """The ``{name}`` segments of ``route`` matched against the URL path (after ``/api/``)."""
    return match_route(route, path) or {}


def http_request(
    method: str,
    route: str,
    *,
    body: bytes | str | None = None,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    route_params: Mapping[str, str] | None = None,
    url: str | None = None,
) -> func.HttpRequest:
    """An HTTP request for the function at ``route`` (e.g. ``"narrations/{id}"``), as the
    host builds it.

    Without ``url`` the URL is ``http://localhost:7071/api/<route>`` with ``route_params``
    filled in and ``params`` as its query string. With ``url`` (absolute or, as some hosts
    give it, relative) the URL is kept as given. Either way ``params`` are the URL's query
    parameters (plus any given), and route parameters not given are matched from the URL
    path. ``json`` is serialised as the body, with ``Content-Type: application/json``
    unless a content type is given.
    """
    if body is not None and json is not None:
        raise TypeError("give body or json, not both")
    given_headers = dict(headers or {})
    if json is not None:
        raw = jsonlib.dumps(json).encode()
        if not any(name.lower() == "content-type" for name in given_headers):
            given_headers["Content-Type"] = "application/json"
    elif isinstance(body, str):
        raw = body.encode()
    else:
        raw = body or b""
    if url is None:
        path = _fill_route(route.strip("/"), route_params or {})
        url = f"{LOCAL_BASE_URL}/{path}"
        if params:
            url += "?" + urlencode(dict(params))
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(params or {})
    matched = _match_route(route, parts.path)
    matched.update(route_params or {})
    if parts.netloc and not any(name.lower() == "host" for name in given_headers):
        given_headers["Host"] = parts.netloc
    return func.HttpRequest(
        method=method.upper(),
        url=url,
        body=raw,
        headers=given_headers,
        params=query,
        route_params=matched,
    )


async def call_http(function: Any, request: func.HttpRequest) -> HttpAnswer:
    """Call an HTTP-triggered function with ``request`` and return what the host would send."""
    response = await call(function, request)
    if not isinstance(response, func.HttpResponse):
        raise TypeError(f"an HTTP function returned {type(response).__name__}, not an HttpResponse")
    return HttpAnswer.from_response(response)


# --- Queue trigger ----------------------------------------------------------------------------------


def queue_message(
    body: bytes | str,
    *,
    id: str = "message-id",
    dequeue_count: int = 1,
    pop_receipt: str | None = None,
) -> QueueMessage:
    """A :class:`azure.functions.QueueMessage` with an already decoded ``body``."""
    raw = body.encode() if isinstance(body, str) else body
    return QueueMessage(  # type: ignore[no-untyped-call]
        id=id, body=raw, dequeue_count=dequeue_count, pop_receipt=pop_receipt
    )


def trigger_message(stored: StoredMessage, encoding: str = "base64") -> QueueMessage:
    """What the queue trigger receives for a message received from the queue."""
    return queue_message(
        decode_message(str(stored.content), encoding),
        id=stored.id,
        dequeue_count=stored.dequeue_count or 1,
        pop_receipt=stored.pop_receipt,
    )


def receive(client: QueueClient, *, visibility_timeout: int = 60) -> StoredMessage | None:
    """The next visible message (hidden for ``visibility_timeout`` seconds), or ``None``."""
    return client.receive_message(visibility_timeout=visibility_timeout)


@dataclass(frozen=True)
class Delivery:
    """One delivery: the message the function got and the exception it raised, if any."""

    message: QueueMessage
    error: BaseException | None = None
    poisoned: bool = False


async def deliver(
    function: Any,
    client: QueueClient,
    *,
    visibility_timeout: int = 60,
    encoding: str = "base64",
    settings: QueueSettings | None = None,
    raise_errors: bool = True,
) -> Delivery | None:
    """Do what the host does with the next message in ``client``'s queue: receive it (its
    dequeue count goes up), decode it, call ``function``; delete the message if the call
    returns. If it raises, the message becomes visible again after ``settings``'
    ``visibility_timeout`` (default: at once; ``queue_settings()`` is host.json's) or, on its
    ``maxDequeueCount``-th delivery, moves to
    ``<queue>-poison``; the exception is re-raised (``raise_errors``) or returned in the
    :class:`Delivery`. ``None`` when no message is waiting.
    """
    # Tests redeliver a failed message at once instead of waiting out host.json's
    # visibilityTimeout (a minute); a test of the back-off passes queue_settings() itself.
    settings = settings or replace(queue_settings(), visibility_timeout=0.0)
    stored = receive(client, visibility_timeout=visibility_timeout)
    if stored is None:
        return None
    message = trigger_message(stored, encoding)
    try:
        await call(function, message)
    except BaseException as error:
        poisoned = (stored.dequeue_count or 1) >= settings.max_dequeue_count
        if poisoned:
            _to_poison_queue(client, stored)
        else:
            client.update_message(
                stored, pop_receipt=stored.pop_receipt, visibility_timeout=int(settings.visibility_timeout)
            )
        if raise_errors or not isinstance(error, Exception):
            raise
        return Delivery(message, error, poisoned)
    client.delete_message(stored)
    return Delivery(message)


def _to_poison_queue(client: QueueClient, stored: StoredMessage) -> None:
    """Move ``stored`` to ``<queue>-poison``, as the host does after ``maxDequeueCount``."""
    account_url = client.primary_endpoint.split("?", 1)[0].rsplit("/", 1)[0]
    with QueueClient(account_url, f"{client.queue_name}-poison", credential=client.credential) as poison:
        with contextlib.suppress(ResourceExistsError):
            poison.create_queue()
        poison.send_message(stored.content)
    client.delete_message(stored)


async def drain(
    function: Any,
    client: QueueClient,
    *,
    max_rounds: int = 10,
    visibility_timeout: int = 60,
    encoding: str = "base64",
    settings: QueueSettings | None = None,
) -> list[Delivery]:
    """Deliver messages until the queue is empty, at most ``max_rounds`` deliveries; a
    failing call does not stop the loop (its exception is in its :class:`Delivery`).
    Raises :class:`AssertionError` if messages are still waiting after ``max_rounds``."""
    deliveries: list[Delivery] = []
    for _ in range(max_rounds):
        delivery = await deliver(
            function,
            client,
            visibility_timeout=visibility_timeout,
            encoding=encoding,
            settings=settings,
            raise_errors=False,
        )
        if delivery is None:
            return deliveries
        deliveries.append(delivery)
    if client.peek_messages(max_messages=1):
        raise AssertionError(f"the queue still holds messages after {max_rounds} deliveries")
    return deliveries


# --- Blob trigger -----------------------------------------------------------------------------------


def blob_input_stream(
    container: str,
    name: str,
    data: bytes,
    *,
    etag: str | None = None,
    uri: str | None = None,
    content_type: str | None = None,
) -> InputStream:
    """The :class:`azure.functions.blob.InputStream` the blob trigger gets for the blob
    ``name`` in ``container`` of the default Azurite account (or at ``uri``)."""
    return hosting.blob_input_stream(
        container, name, data, account_url=AZURITE_BLOB_URL, etag=etag, content_type=content_type, uri=uri
    )
