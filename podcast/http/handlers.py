"""The Functions-facing layer: what each entry point of ``function_app.py`` does.

Each handler takes the trigger's input and the :class:`~podcast.app.App` of the running
loop, calls one service and turns its answer (or its :class:`~podcast.errors.PodcastError`)
into the response. Validation always comes first: an invalid request is answered 400
before a setting it does not need is read, anything is stored or Azure OpenAI is contacted.
This package is the only code that imports ``azure.functions``.

A handler imports what only it needs (the request models, the wire models, the services'
helpers, the OpenAPI document) when it is first called: ``import function_app``, which the
Functions host does to index the functions, loads no more than every function needs (the
settings, the error tree, the app graph's definition); see the README's cold start.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import azure.functions as func

from podcast.errors import JobNotFoundError, NarrationNotFoundError, PodcastError
from podcast.http.health import health_report
from podcast.http.player import player_response
from podcast.http.responses import error_response, internal_error_response, json_response
from podcast.settings import Settings

if TYPE_CHECKING:
    from podcast.app import App
    from podcast.services.downloads import FileKind
    from podcast.wire import JobRecord

log = logging.getLogger(__name__)


async def _answer(handler: Callable[[], Awaitable[func.HttpResponse]]) -> func.HttpResponse:
    """Run ``handler``; a known failure becomes its mapped response, anything else a 500."""
    try:
        return await handler()
    except PodcastError as error:
        return error_response(error)
    except Exception:
        return internal_error_response()


async def create_narration(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """``POST /api/narrations``: the narration (200), or the accepted job (202)."""

    from podcast.http.headers import check_content_type, submit_options
    from podcast.models import parse_request

    async def handle() -> func.HttpResponse:
        check_content_type(req.headers.get("Content-Type"))
        request = parse_request(req.get_body(), app.settings.limits)
        options = submit_options(req.headers)
        narrations = app.narrations  # names a missing setting before anything is stored
        if request.show is not None:  # 404 now, also for a request that would be queued
            await app.shows.require(request.show)
        if not app.jobs.should_queue(request, options):
            return json_response(200, (await narrations.respond(request, options)).model_dump(mode="json"))
        record = await app.jobs.submit(request, options)
        return _accepted(req, app, record, collection=True)

    return await _answer(handle)


async def create_script(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """``POST /api/scripts``: the conversation script (200) that ``mode: "conversation"``
    would voice, without voicing it, for a person to review, edit and send back as ``script``.
    An identical request is answered from the script cache, its failure (502) included."""

    from podcast.http.headers import check_content_type, submit_options
    from podcast.models import parse_script_request

    async def handle() -> func.HttpResponse:
        check_content_type(req.headers.get("Content-Type"))
        request = parse_script_request(req.get_body(), app.settings.limits)
        options = submit_options(req.headers)
        written = await app.scripts.write(request, options)
        return json_response(200, written.document.model_dump(mode="json"))

    return await _answer(handle)


async def get_narration(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """``GET /api/narrations/{id}``: 202 while queued or running, the 200 body (fresh link)
    once succeeded (and at once for a synchronous narration), the error body and status once
    failed, 404 for an unknown id."""

    from podcast.services.records import JOB_ID

    async def handle() -> func.HttpResponse:
        job_id = req.route_params.get("id") or req.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        if not JOB_ID.fullmatch(job_id):
            raise JobNotFoundError()
        try:
            view = await app.jobs.status(job_id)
        except JobNotFoundError:  # not a job: a synchronous narration, found by its id
            try:
                signed = await app.downloads.signed(job_id)
            except NarrationNotFoundError:
                raise JobNotFoundError() from None
            return json_response(200, signed.model_dump(mode="json"))
        if view.result is not None:
            return json_response(200, view.result.model_dump(mode="json"))
        if view.record.status == "failed" and view.record.error is not None:
            error = view.record.error
            # A transient failure answers as the synchronous call would have: with Retry-After.
            headers = (
                {} if error.retry_after_seconds is None else {"Retry-After": str(error.retry_after_seconds)}
            )
            return json_response(error.status, error.body.model_dump(mode="json"), headers)
        return _accepted(req, app, view.record, collection=False)

    return await _answer(handle)


async def download_narration_file(req: func.HttpRequest, app: App, kind: FileKind) -> func.HttpResponse:
    """``GET /api/narrations/{id}/audio`` (and ``/captions.vtt``, ``/captions.srt``,
    ``/transcript.json``, ``/chapters.json``): the stored file with its content type and
    ``Content-Disposition``, honouring ``Range`` and ``If-Range`` (206, 416; see
    :mod:`podcast.http.ranges`); an answer over ``NARRATION_DOWNLOAD_INLINE_MAX_MB`` is a 302
    to a fresh read-only link."""

    from podcast.http.files import file_response
    from podcast.services.downloads import REDIRECT_LINK_MINUTES

    async def handle() -> func.HttpResponse:
        narration_id = req.route_params.get("id") or ""
        downloads = app.downloads
        file = await downloads.file(narration_id, kind)
        limits = app.settings.limits
        minutes = min(REDIRECT_LINK_MINUTES, limits.max_sas_expiry_minutes)
        return await file_response(
            req,
            file,
            downloads.read,
            inline_max_bytes=limits.download_inline_max_mb << 20,
            link=functools.partial(downloads.link, minutes=minutes),
        )

    return await _answer(handle)


async def put_show(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """``PUT /api/shows/{show}``: see :func:`podcast.http.shows.put_show`."""
    from podcast.http import shows

    return await _answer(lambda: shows.put_show(req, app))


async def get_show(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """``GET /api/shows/{show}``: see :func:`podcast.http.shows.get_show`."""
    from podcast.http import shows

    return await _answer(lambda: shows.get_show(req, app))


async def rotate_show_token(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """``POST /api/shows/{show}/token``: see :func:`podcast.http.shows.rotate_token`."""
    from podcast.http import shows

    return await _answer(lambda: shows.rotate_token(req, app))


async def get_show_feed(req: func.HttpRequest, app: App) -> func.HttpResponse:
    """``GET /api/shows/{show}/feed.xml``: see :func:`podcast.http.shows.get_feed`."""
    from podcast.http import shows

    return await _answer(lambda: shows.get_feed(req, app))


def _accepted(req: func.HttpRequest, app: App, record: JobRecord, *, collection: bool) -> func.HttpResponse:
    """202 with the job's absolute ``Location``, ``Retry-After`` and status document."""
    from podcast.http.headers import job_url
    from podcast.http.hosting import queue_settings
    from podcast.services.records import retry_after

    location = job_url(
        req.url,
        headers=req.headers,
        params=req.params,
        job_id=record.id if collection else None,
        website_hostname=app.settings.website_hostname,
    )
    wait = retry_after(record, redelivery_seconds=queue_settings().visibility_timeout)
    headers = {"Location": location, "Retry-After": str(wait)}
    return json_response(202, record.status_document().model_dump(mode="json"), headers)


def openapi(req: func.HttpRequest) -> func.HttpResponse:
    """``GET /api/openapi.json``: the OpenAPI 2.0 definition with the request's host."""
    from podcast.http.openapi import openapi_document

    return json_response(200, openapi_document(request_url=req.url, headers=req.headers))


def player(req: func.HttpRequest) -> func.HttpResponse:
    """``GET /api/player``: the narration player page (see :mod:`podcast.http.player`)."""
    return player_response()


def health(settings: Settings | None = None) -> func.HttpResponse:
    """``GET /api/health``: 200 when configured, 503 naming what is missing. Without
    ``settings``, the app settings are read as they are now: the report is about the
    configuration, so it never shows one that an app graph read earlier."""
    healthy, report = health_report(settings or Settings.from_env())
    return json_response(200 if healthy else 503, report)


async def narration_worker(msg: func.QueueMessage, app: App) -> None:
    """A queued job's message (its id): see :meth:`~podcast.services.jobs.JobService.run`."""
    await app.jobs.run(msg.get_body(), dequeue_count=msg.dequeue_count or 1, message_id=msg.id or None)


async def narrate_document(blob: func.InputStream, app: App) -> None:
    """An uploaded document: see :meth:`~podcast.services.documents.DocumentService.narrate_upload`."""
    properties = getattr(blob, "blob_properties", None) or {}
    etag = properties.get("ETag") or properties.get("Etag")
    await app.documents.narrate_upload(blob.name or "", blob.read(), etag=str(etag) if etag else None)
