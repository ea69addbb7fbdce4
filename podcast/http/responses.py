"""HTTP responses for the triggers: JSON bodies and the mapping of errors to statuses.

Every error body has one shape, ``{"error": {"code", "message", "field", ...}}``.
Transient errors carry ``Retry-After`` (the service's value when known).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import azure.functions as func

from podcast.errors import PodcastError

log = logging.getLogger(__name__)


def json_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> func.HttpResponse:
    """A JSON response that no cache keeps (it holds a SAS link)."""
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False),
        status_code=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
        mimetype="application/json",
        charset="utf-8",
    )


def error_response(error: PodcastError) -> func.HttpResponse:
    """The response for a known failure: its status, body and, when transient, ``Retry-After``."""
    headers: dict[str, str] = {}
    seconds = error.retry_after_header()
    if seconds is not None:
        headers["Retry-After"] = str(seconds)
    if error.http_status >= 500:
        log.warning("request failed: %s (%s)", error.code, type(error).__name__)
    return json_response(error.http_status, error.body(), headers)


def internal_error_response() -> func.HttpResponse:
    """A 500 for a bug: logs the traceback, tells the caller nothing internal."""
    log.exception("unexpected error")
    error = PodcastError("an unexpected error occurred; it has been logged")
    return json_response(500, error.body())
