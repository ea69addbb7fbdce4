"""``GET /api/player``: the narration player page, one self-contained HTML file.

The page (``player.html`` beside this module) has its CSS and script inline and loads
nothing from elsewhere, so it works offline and needs no build step. It reads the function
key from its own ``?code=`` and sends it as ``x-functions-key`` on its calls to this API.

Each answer carries a fresh nonce in a strict Content-Security-Policy that allows only the
page's own inline ``<style>`` and ``<script>``, fetches from this origin, and media from
HTTPS (the SAS link of the audio, on any storage account) or loopback (Azurite). It is never
cached (its URL holds a key) and sends no ``Referer`` (which would carry the key to Storage).
"""

from __future__ import annotations

import secrets
from functools import cache
from importlib.resources import files
from typing import Final

import azure.functions as func

NONCE_PLACEHOLDER: Final = "{{nonce}}"

_POLICY: Final = (
    "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
    "media-src 'self' https: http://127.0.0.1:* http://localhost:*; img-src 'self' data:; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)


@cache
def page_template() -> str:
    """The page's HTML with :data:`NONCE_PLACEHOLDER` where each answer's nonce goes."""
    return files("podcast.http").joinpath("player.html").read_text(encoding="utf-8")


def player_response() -> func.HttpResponse:
    """The page with a new nonce, its Content-Security-Policy and no caching."""
    nonce = secrets.token_urlsafe(18)
    return func.HttpResponse(
        page_template().replace(NONCE_PLACEHOLDER, nonce),
        status_code=200,
        headers={
            "Content-Type": "text/html; charset=utf-8",
            "Content-Security-Policy": _POLICY.format(nonce=nonce),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
        },
        mimetype="text/html",
        charset="utf-8",
    )
