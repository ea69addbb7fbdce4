"""A local managed identity token endpoint: App Service's protocol, on 127.0.0.1.

In App Service (and Azure Functions) the platform sets ``IDENTITY_ENDPOINT`` and
``IDENTITY_HEADER``; azure-identity's ``ManagedIdentityCredential`` (also inside
``DefaultAzureCredential``) then asks for each token with::

    GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=<resource>&client_id=<id>
    X-IDENTITY-HEADER: {IDENTITY_HEADER}

(``client_id`` only for a user-assigned identity; see ``azure/identity/_credentials/
app_service.py`` and ``_internal/managed_identity_client.py``) and expects
``{"access_token", "expires_on" (epoch seconds, as a string), "resource", "token_type"}``.

:class:`ManagedIdentityEndpoint` answers that with unsigned JWTs like
:class:`~testkit.credentials.FakeTokenCredential`'s (audience = the resource, so Azurite's
``--oauth basic`` accepts the Storage ones), records every request, and, like App Service,
refuses a client id that is not one of its identities (HTTP 400) and a wrong or missing
header (HTTP 401). Point a process at it with :attr:`ManagedIdentityEndpoint.env`.
"""

from __future__ import annotations

import json
import secrets
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from testkit.credentials import unsigned_token

HOST = "127.0.0.1"
API_VERSION = "2019-08-01"
PATH = "/msi/token"


@dataclass(frozen=True)
class TokenRequest:
    """One request the endpoint received, and what it answered."""

    resource: str | None
    client_id: str | None
    api_version: str | None
    header_ok: bool
    status: int


class ManagedIdentityEndpoint:
    """App Service's managed identity endpoint for the user-assigned identities ``client_ids``
    (each with its own object id, all in one tenant).

    Runs in a thread of its own (:meth:`start`/:meth:`stop`, or ``with``), so it serves
    every event loop and synchronous clients alike.
    """

    def __init__(
        self,
        client_ids: Iterable[str],
        *,
        tenant_id: str | None = None,
        lifetime_seconds: int = 3600,
    ) -> None:
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.object_ids = {client_id: str(uuid.uuid4()) for client_id in client_ids}
        """The principal (object) id of each identity, by client id: the tokens' ``oid``."""
        self.header = secrets.token_urlsafe(24)
        self.lifetime_seconds = lifetime_seconds
        self._lock = threading.Lock()
        self._requests: list[TokenRequest] = []
        self._issued: set[str] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- what it saw ---------------------------------------------------------------------

    @property
    def requests(self) -> list[TokenRequest]:
        """Every request so far, in order."""
        with self._lock:
            return list(self._requests)

    def issued(self, token: str) -> bool:
        """Whether this endpoint issued ``token``."""
        with self._lock:
            return token in self._issued

    # --- where it is ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/msi/token`` (valid once started)."""
        if self._server is None:
            raise RuntimeError("the endpoint has not been started")
        return f"http://{HOST}:{self._server.server_address[1]}{PATH}"

    @property
    def env(self) -> dict[str, str]:
        """The variables App Service sets for its managed identity endpoint."""
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.header}

    # --- answering -----------------------------------------------------------------------

    def _answer(self, path: str, header: str | None) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(path)
        query = {name: values[0] for name, values in parse_qs(parts.query).items()}
        resource, client_id = query.get("resource"), query.get("client_id")
        header_ok = header is not None and secrets.compare_digest(header, self.header)
        status, body = 200, {}
        if parts.path != PATH:
            status, body = 404, {"error": "not_found"}
        elif not header_ok:
            status, body = 401, {"error": "unauthorized", "error_description": "X-IDENTITY-HEADER"}
        elif query.get("api-version") != API_VERSION or not resource:
            status, body = 400, {"error": "invalid_request", "error_description": "api-version, resource"}
        elif client_id is None or client_id not in self.object_ids:
            status, body = (
                400,
                {
                    "error": "invalid_request",
                    "error_description": "No User Assigned or Delegated Managed Identity found",
                },
            )
        else:
            token = unsigned_token(
                tenant_id=self.tenant_id,
                object_id=self.object_ids[client_id],
                audience=resource,
                lifetime_seconds=self.lifetime_seconds,
            )
            body = {
                "access_token": token.token,
                "expires_on": str(token.expires_on),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": client_id,
            }
        with self._lock:
            self._requests.append(
                TokenRequest(resource, client_id, query.get("api-version"), header_ok, status)
            )
            if status == 200:
                self._issued.add(body["access_token"])
        return status, body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = endpoint._answer(self.path, self.headers.get("X-IDENTITY-HEADER"))
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the requests are recorded instead

        return Handler

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> ManagedIdentityEndpoint:
        """Listen on a free loopback port; returns itself."""
        if self._server is None:
            self._server = ThreadingHTTPServer((HOST, 0), self._handler())
            self._server.daemon_threads = True
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="managed-identity-endpoint", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and wait for the server thread."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> ManagedIdentityEndpoint:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
