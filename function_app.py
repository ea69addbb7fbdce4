"""Azure Functions entry points (Python v2 programming model).

The handlers are thin: they parse the trigger's input, call one function of the
:mod:`podcast` package and map its errors to responses. Everything else lives in the
package, where it is tested without the Functions host.
"""

from __future__ import annotations

import logging

import azure.functions as func

from podcast.errors import PodcastError
from podcast.http import error_response, internal_error_response, json_response
from podcast.pipeline import health_report, narrate_body, narrate_upload

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

# The Azure SDKs log every HTTP request at INFO, with URLs: keep them out of the logs.
logging.getLogger("azure").setLevel(logging.WARNING)


@app.function_name("create_narration")
@app.route(route="narrations", methods=["POST"])
async def create_narration(req: func.HttpRequest) -> func.HttpResponse:
    """``POST /api/narrations``: narrate the JSON request, answer with the audio link and transcript."""
    try:
        result = await narrate_body(req.get_body(), content_type=req.headers.get("Content-Type"))
    except PodcastError as error:
        return error_response(error)
    except Exception:
        return internal_error_response()
    return json_response(200, result.to_response())


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
