"""Azure Functions entry points (Python v2 programming model).

The handlers are thin: they parse the trigger's input, call one function of the
:mod:`podcast` package and map its errors to responses. Everything else lives in the
package, where it is tested without the Functions host.
"""

from __future__ import annotations

import logging

import azure.functions as func

from podcast.errors import PodcastError
from podcast.http.openapi import openapi_document
from podcast.http.responses import error_response, internal_error_response, json_response
from podcast.services.jobs import job_reply, run_queued_job, submit_narration
from podcast.services.pipeline import health_report, narrate_upload

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

# The Azure SDKs log every HTTP request at INFO, with URLs: keep them out of the logs.
logging.getLogger("azure").setLevel(logging.WARNING)


@app.function_name("create_narration")
@app.route(route="narrations", methods=["POST"])
async def create_narration(req: func.HttpRequest) -> func.HttpResponse:
    """``POST /api/narrations``: narrate the JSON request and answer with the audio link and
    transcript (200), or, with ``Prefer: respond-async`` or a long text, accept it as a job
    (202 with ``Location`` and ``Retry-After``)."""
    try:
        reply = await submit_narration(
            req.get_body(),
            content_type=req.headers.get("Content-Type"),
            headers=req.headers,
            url=req.url,
            params=req.params,
        )
    except PodcastError as error:
        return error_response(error)
    except Exception:
        return internal_error_response()
    return json_response(reply.status, reply.body, reply.headers)


@app.function_name("get_narration")
@app.route(route="narrations/{id}", methods=["GET"])
async def get_narration(req: func.HttpRequest) -> func.HttpResponse:
    """``GET /api/narrations/{id}``: a job's status (202), result (200) or error; 404 if unknown."""
    job_id = req.route_params.get("id") or req.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    try:
        reply = await job_reply(job_id, url=req.url, headers=req.headers, params=req.params)
    except PodcastError as error:
        return error_response(error)
    except Exception:
        return internal_error_response()
    return json_response(reply.status, reply.body, reply.headers)


@app.function_name("narration_worker")
@app.queue_trigger(arg_name="msg", queue_name="%NARRATION_QUEUE%", connection="NARRATION_STORAGE")
async def narration_worker(msg: func.QueueMessage) -> None:
    """A queued narration job (the message is its id): narrate it and record the outcome.

    Returns normally once the job is finished, failed for good, or not to be run; raises
    only for a transient failure before the last delivery, so the host retries it.
    """
    await run_queued_job(msg.get_body(), dequeue_count=msg.dequeue_count)


@app.function_name("openapi")
@app.route(route="openapi.json", methods=["GET"])
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    """``GET /api/openapi.json``: the OpenAPI 2.0 definition (for a Power Automate custom connector)."""
    return json_response(200, openapi_document(request_url=req.url, headers=req.headers))


@app.function_name("health")
@app.route(route="health", methods=["GET"])
def health(req: func.HttpRequest) -> func.HttpResponse:
    """``GET /api/health``: which settings are present and which auth modes are in use."""
    healthy, report = health_report()
    return json_response(200 if healthy else 503, report)


@app.function_name("narrate_document")
@app.blob_trigger(
    arg_name="blob",
    path="%NARRATION_INPUT_CONTAINER%/{name}",
    connection="NARRATION_STORAGE",
    source=func.BlobSource.EVENT_GRID,
)
async def narrate_document(blob: func.InputStream) -> None:
    """A document uploaded to the input container: narrate it beside its name in the output.

    Returns normally for documents that can never be narrated (their ``.error.json`` says
    why); raises only for transient failures, so the host retries those.
    """
    properties = getattr(blob, "blob_properties", None) or {}
    etag = properties.get("ETag") or properties.get("Etag")
    await narrate_upload(blob.name or "", blob.read(), etag=str(etag) if etag else None)
