"""Storage that stops answering at a chosen moment, seen by the real Azure SDK.

:class:`StorageSwitch` is what a test holds: :meth:`~StorageSwitch.stop_at` arms it to
stop at the first request that matches (a method, a blob or queue path, and text in the
body, e.g. the ``PUT`` of ``jobs/<id>.json`` whose body says ``"status":"running"``) or
:meth:`~StorageSwitch.stop` stops it at once; :meth:`~StorageSwitch.start` brings it back.
While stopped, every request through :class:`SwitchedTransport` goes to a closed port of
the loopback interface instead of Azurite, so the SDK's own retry policy sees real
connection refusals, retries and gives up with the ``ServiceRequestError`` an unreachable
account gives; Azurite itself keeps running with its data, as an account does during a
network outage.

Give the app one transport per Storage client::

    App(settings, client_kwargs={"transport": SwitchedTransport(switch)})

(the app passes ``client_kwargs`` to its blob and its queue client).
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from azure.core.pipeline.transport import AioHttpTransport


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Trigger:
    """Which request stops Storage: its method, a fragment of its URL path and of its body
    (empty: any), after ``skip`` earlier matches."""

    method: str
    path: str
    body: str = ""
    skip: int = 0


@dataclass(frozen=True, slots=True)
class Seen:
    """A request the transport was asked to send, and whether Storage refused it."""

    method: str
    path: str
    refused: bool


class StorageSwitch:
    """Whether Storage answers (see the module docstring). Thread-safe; :attr:`seen` lists
    every request in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = False
        self._trigger: Trigger | None = None
        self._matches = 0
        self.dead_port = closed_port()
        self.seen: list[Seen] = []

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        """Stop answering now."""
        with self._lock:
            self._stopped, self._trigger = True, None

    def stop_at(self, method: str, path: str, body: str = "", *, skip: int = 0) -> None:
        """Stop answering at the first request matching ``method``, ``path`` and ``body``
        (after ``skip`` earlier matches): that request fails, and so does every later one
        until :meth:`start`."""
        with self._lock:
            self._trigger, self._matches = Trigger(method.upper(), path, body, skip), 0

    def start(self) -> None:
        """Answer again (and forget any armed trigger)."""
        with self._lock:
            self._stopped, self._trigger = False, None

    def refuses(self, request: Any) -> bool:
        """Whether ``request`` is refused (arming the outage when it is the trigger)."""
        path = urlsplit(request.url).path
        with self._lock:
            trigger = self._trigger
            if not self._stopped and trigger is not None and _matches(trigger, request, path):
                if self._matches >= trigger.skip:
                    self._stopped, self._trigger = True, None
                self._matches += 1
            self.seen.append(Seen(request.method, path, self._stopped))
            return self._stopped


def _matches(trigger: Trigger, request: Any, path: str) -> bool:
    """``request`` is the SDK's ``azure.core.pipeline.transport.HttpRequest``."""
    if request.method.upper() != trigger.method or trigger.path not in path:
        return False
    if not trigger.body:
        return True
    body = request.body
    text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else str(body or "")
    return trigger.body in text


class SwitchedTransport(AioHttpTransport):  # type: ignore[misc]  # azure.core exports it lazily, untyped
    """The SDK's aiohttp transport, sending to a closed port while ``switch`` is stopped."""

    def __init__(self, switch: StorageSwitch, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._switch = switch

    async def send(self, request: Any, **kwargs: Any) -> Any:
        if self._switch.refuses(request):
            parts = urlsplit(request.url)
            request.url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{self._switch.dead_port}"))
        return await super().send(request, **kwargs)
