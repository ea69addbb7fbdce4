"""What the HTTP request's headers and URL say: content type, ``Prefer``, ``Cache-Control``,
``Idempotency-Key``, and the absolute URL of a job."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from podcast.errors import RequestValidationError
from podcast.models import SubmitOptions

JSON_CONTENT_TYPES: Final = ("application/json", "text/json")
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 255
_HOST: Final = re.compile(r"[A-Za-z0-9.\-]+(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?")


def check_content_type(content_type: str | None) -> None:
    """Accept JSON (or no content type at all); anything else is a 400 naming the header."""
    if not content_type:
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in JSON_CONTENT_TYPES and not media_type.endswith("+json"):
        raise RequestValidationError(
            f"Content-Type must be application/json, not {media_type[:60]!r}",
            field="Content-Type",
            code="unsupported_content_type",
        )


def submit_options(headers: Mapping[str, str]) -> SubmitOptions:
    """Read ``Prefer``, ``Cache-Control`` and ``Idempotency-Key`` (any letter case).

    Raises :class:`RequestValidationError` (400) for an unusable ``Idempotency-Key``.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    prefer = _directives(lowered.get("prefer", ""))
    cache = _directives(lowered.get("cache-control", ""))
    key = lowered.get("idempotency-key")
    if key is not None:
        key = key.strip()
        if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not all(" " <= ch <= "~" for ch in key):
            raise RequestValidationError(
                f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII "
                "characters (a UUID is a good choice)",
                field="Idempotency-Key",
                code="invalid_idempotency_key",
            )
    no_store = "no-store" in cache
    return SubmitOptions(
        respond_async="respond-async" in prefer,
        reuse=not (no_store or "no-cache" in cache),
        remember=not no_store,
        idempotency_key=key,
    )


def _directives(value: str) -> set[str]:
    """``"respond-async, wait=10"`` → ``{"respond-async", "wait"}`` (names only, lower case)."""
    names = set()
    for part in value.split(","):
        name = part.split(";", 1)[0].split("=", 1)[0].strip().lower()
        if name:
            names.add(name)
    return names


def job_url(
    request_url: str,
    *,
    headers: Mapping[str, str],
    params: Mapping[str, str],
    job_id: str | None = None,
    website_hostname: str | None = None,
) -> str:
    """The absolute URL of a job, built from the request's URL.

    With ``job_id`` the request is the collection (``POST .../narrations``) and the id is
    appended; without, the request URL is the job's own (``GET .../narrations/<id>``). Only
    the ``code`` query parameter (a function key the caller sent in the URL) is kept, so
    the URL keeps working for a poller that sends no header. A relative request URL (as
    some hosts and tests give) is made absolute with the ``Host`` header, else
    ``website_hostname`` (App Service's ``WEBSITE_HOSTNAME``), else ``localhost``.
    """
    parts = urlsplit(request_url)
    lowered = {name.lower(): value for name, value in headers.items()}
    scheme, netloc = parts.scheme.lower(), parts.netloc
    if scheme not in ("http", "https") or not netloc:
        netloc = next(
            (
                host.strip()
                for host in (lowered.get("host", ""), website_hostname or "")
                if _HOST.fullmatch(host.strip())
            ),
            "localhost",
        )
        forwarded = lowered.get("x-forwarded-proto", "").strip().lower()
        local = netloc.startswith(("localhost", "127.", "[::1]"))
        scheme = forwarded if forwarded in ("http", "https") else ("http" if local else "https")
    path = parts.path or "/api/narrations"
    if job_id is not None:
        path = f"{path.rstrip('/')}/{job_id}"
    code = params.get("code") or dict(parse_qsl(parts.query)).get("code")
    return urlunsplit((scheme, netloc, path, urlencode({"code": code}) if code else "", ""))


def feed_urls(
    request_url: str,
    *,
    headers: Mapping[str, str],
    slug: str,
    token: str,
    website_hostname: str | None = None,
) -> tuple[str, str]:
    """A show's feed URL with ``token`` (what a podcast app subscribes to), and its identity
    without scheme and token (``podcast:guid``'s input), from any request under ``.../shows/``.

    The host is found as for :func:`job_url`; the path is the request's up to ``/shows/``, so
    a route prefix other than ``/api`` is kept. No function key is added: the feed is
    anonymous at the Functions layer and its token is its access control.
    """
    base = urlsplit(job_url(request_url, headers=headers, params={}, website_hostname=website_hostname))
    prefix = base.path.split("/shows/", 1)[0] if "/shows/" in base.path else "/api"
    path = f"{prefix.rstrip('/')}/shows/{slug}/feed.xml"
    url = urlunsplit((base.scheme, base.netloc, path, urlencode({"token": token}), ""))
    return url, f"{base.netloc}{path}"
