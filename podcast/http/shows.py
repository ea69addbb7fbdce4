"""The shows API and the podcast feed: ``PUT``/``GET /api/shows/{show}``,
``POST /api/shows/{show}/token`` and ``GET /api/shows/{show}/feed.xml?token=...``.

The feed route is anonymous at the Functions layer (podcast apps send no headers): its
``token`` query parameter is its only access control, checked by
:meth:`~podcast.services.shows.ShowService.feed`. The token is never logged
(:mod:`podcast.logs` masks ``token=``).
"""

from __future__ import annotations

from email.utils import format_datetime
from typing import Final

import azure.functions as func

from podcast.app import App
from podcast.errors import RequestValidationError
from podcast.http.headers import check_content_type, feed_urls
from podcast.http.responses import json_response
from podcast.models import check_show_slug, parse_show
from podcast.services.feeds import CONTENT_TYPE
from podcast.services.shows import ShowState

FEED_CACHE_CONTROL: Final = "private, max-age=300"
"""Apps may keep a feed five minutes; its ETag makes each later poll a cheap 304."""


def _slug(req: func.HttpRequest) -> str:
    return check_show_slug(req.route_params.get("show") or "")


def _view(req: func.HttpRequest, app: App, state: ShowState) -> dict[str, object]:
    url = None
    if state.token is not None:
        url, _ = feed_urls(
            req.url,
            headers=req.headers,
            slug=state.record.slug,
            token=state.token,
            website_hostname=app.settings.website_hostname,
        )
    return state.view(url).model_dump(mode="json")


async def put_show(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """``PUT /api/shows/{show}``: 201 with the feed URL when created, else 200 (settings
    replaced, token kept, ``feed_url`` null)."""
    slug = _slug(req)
    check_content_type(req.headers.get("Content-Type"))
    details = parse_show(req.get_body(), app.settings.limits)
    state = await app.shows.put(slug, details)
    return json_response(201 if state.created else 200, _view(req, app, state))


async def get_show(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """``GET /api/shows/{show}``: the show's settings (no feed URL: rotate for a new one)."""
    return json_response(200, _view(req, app, await app.shows.get(_slug(req))))


async def rotate_token(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """``POST /api/shows/{show}/token``: a new feed token; the old feed URL stops working."""
    return json_response(200, _view(req, app, await app.shows.rotate(_slug(req))))


def _limit(req: func.HttpRequest, maximum: int) -> int | None:
    raw = req.params.get("limit")
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 6 or not 1 <= int(raw) <= maximum:
        raise RequestValidationError(
            f"limit must be a whole number from 1 to {maximum} (NARRATION_FEED_MAX_ITEMS)", field="limit"
        )
    return int(raw)


async def get_feed(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """``GET /api/shows/{show}/feed.xml?token=...[&limit=N]``: the RSS feed (200), ``304``
    when ``If-None-Match`` has its ETag, 404 for an unknown show or a wrong token alike."""
    slug = _slug(req)
    limit = _limit(req, app.settings.feeds.max_items)
    token = req.params.get("token") or ""
    feed_url, identity = feed_urls(
        req.url, headers=req.headers, slug=slug, token=token, website_hostname=app.settings.website_hostname
    )
    feed = await app.shows.feed(
        slug,
        token,
        limit=limit,
        feed_url=feed_url,
        feed_identity=identity,
        if_none_match=req.headers.get("If-None-Match"),
    )
    headers = {
        "ETag": feed.etag,
        "Last-Modified": format_datetime(feed.last_modified, usegmt=True),
        "Cache-Control": FEED_CACHE_CONTROL,
        "X-Content-Type-Options": "nosniff",
        "Content-Type": CONTENT_TYPE,
    }
    if feed.body is None:
        return func.HttpResponse(b"", status_code=304, headers=headers)
    return func.HttpResponse(feed.body, status_code=200, headers=headers, mimetype="application/rss+xml")
