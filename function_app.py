"""Azure Functions entry points (Python v2 programming model).

Thin on purpose: each function hands its trigger's input to :mod:`podcast.http.handlers`
with the object graph (:class:`podcast.app.App`) of the running event loop, which this
module keeps and nothing else.
"""

from __future__ import annotations

import azure.functions as func

from podcast import logs
from podcast.app import AppHolder
from podcast.http import handlers

# Before anything logs: no logger, at any level, shows a key, a token or the text (podcast.logs).
logs.install()

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
graph = AppHolder()
"""One :class:`~podcast.app.App` per event loop, built from the app settings on first use."""


@app.function_name("create_narration")
@app.route(route="narrations", methods=["POST"])
async def create_narration(req: func.HttpRequest) -> func.HttpResponse:
    """``POST /api/narrations``: narrate the JSON request and answer with the audio link and
    transcript (200), or, with ``Prefer: respond-async`` or a long text, accept it as a job
    (202 with ``Location`` and ``Retry-After``)."""
    return await handlers.create_narration(req, graph.get())


@app.function_name("create_script")
@app.route(route="scripts", methods=["POST"])
async def create_script(req: func.HttpRequest) -> func.HttpResponse:
    """``POST /api/scripts``: write the conversation script of the JSON request and answer with
    it (200), without voicing it."""
    return await handlers.create_script(req, graph.get())


@app.function_name("get_narration")
@app.route(route="narrations/{id}", methods=["GET"])
async def get_narration(req: func.HttpRequest) -> func.HttpResponse:
    """``GET /api/narrations/{id}``: a job's status (202), result (200) or error; 404 if unknown."""
    return await handlers.get_narration(req, graph.get())


@app.function_name("get_narration_audio")
@app.route(route="narrations/{id}/audio", methods=["GET"])
async def get_narration_audio(req: func.HttpRequest) -> func.HttpResponse:
    """``GET /api/narrations/{id}/audio``: the audio file (its type, its file name, ``Range``)."""
    return await handlers.download_narration_file(req, graph.get(), "audio")


@app.function_name("get_narration_captions")
@app.route(route="narrations/{id}/captions.vtt", methods=["GET"])
async def get_narration_captions(req: func.HttpRequest) -> func.HttpResponse:
    """``GET /api/narrations/{id}/captions.vtt``: the WebVTT captions."""
    return await handlers.download_narration_file(req, graph.get(), "captions")


@app.function_name("get_narration_srt")
@app.route(route="narrations/{id}/captions.srt", methods=["GET"])
async def get_narration_srt(req: func.HttpRequest) -> func.HttpResponse:
    """``GET /api/narrations/{id}/captions.srt``: the SRT captions."""
    return await handlers.download_narration_file(req, graph.get(), "srt")


@app.function_name("get_narration_transcript")
@app.route(route="narrations/{id}/transcript.json", methods=["GET"])
async def get_narration_transcript(req: func.HttpRequest) -> func.HttpResponse:
    """``GET /api/narrations/{id}/transcript.json``: the transcript document."""
    return await handlers.download_narration_file(req, graph.get(), "transcript")


@app.function_name("get_narration_chapters")
@app.route(route="narrations/{id}/chapters.json", methods=["GET"])
async def get_narration_chapters(req: func.HttpRequest) -> func.HttpResponse:
    """``GET /api/narrations/{id}/chapters.json``: the chapters (Podcasting 2.0 JSON chapters)."""
    return await handlers.download_narration_file(req, graph.get(), "chapters")


@app.function_name("put_show")
@app.route(route="shows/{show}", methods=["PUT"])
async def put_show(req: func.HttpRequest) -> func.HttpResponse:
    """``PUT /api/shows/{show}``: create a show (201, with its feed URL) or replace its settings."""
    return await handlers.put_show(req, graph.get())


@app.function_name("get_show")
@app.route(route="shows/{show}", methods=["GET"])
async def get_show(req: func.HttpRequest) -> func.HttpResponse:
    """``GET /api/shows/{show}``: the show's settings; 404 if unknown."""
    return await handlers.get_show(req, graph.get())


@app.function_name("rotate_show_token")
@app.route(route="shows/{show}/token", methods=["POST"])
async def rotate_show_token(req: func.HttpRequest) -> func.HttpResponse:
    """``POST /api/shows/{show}/token``: a new feed URL; the old one stops working."""
    return await handlers.rotate_show_token(req, graph.get())


@app.function_name("get_show_feed")
@app.route(route="shows/{show}/feed.xml", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def get_show_feed(req: func.HttpRequest) -> func.HttpResponse:
    """``GET /api/shows/{show}/feed.xml?token=...``: the podcast feed (RSS). Anonymous, since
    podcast apps send no key: the show's feed token in the URL is the access control."""
    return await handlers.get_show_feed(req, graph.get())


@app.function_name("narration_worker")
@app.queue_trigger(arg_name="msg", queue_name="%NARRATION_QUEUE%", connection="NARRATION_STORAGE")
async def narration_worker(msg: func.QueueMessage) -> None:
    """A queued narration job (the message is its id): narrate it and record the outcome.

    Returns normally (the host deletes the message) only when no part of the job depends
    on this delivery any more; raises (the host delivers it again) when anything was left
    undone, e.g. a transient failure or Storage failing while recording the job.
    """
    await handlers.narration_worker(msg, graph.get())


@app.function_name("openapi")
@app.route(route="openapi.json", methods=["GET"])
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    """``GET /api/openapi.json``: the OpenAPI 2.0 definition (for a Power Automate custom connector)."""
    return handlers.openapi(req)


@app.function_name("player")
@app.route(route="player", methods=["GET"])
def player(req: func.HttpRequest) -> func.HttpResponse:
    """``GET /api/player?code=<key>``: a page to narrate a text or file and play the result
    with its transcript (it calls this API with the key from its address)."""
    return handlers.player(req)


@app.function_name("health")
@app.route(route="health", methods=["GET"])
def health(req: func.HttpRequest) -> func.HttpResponse:
    """``GET /api/health``: which settings are present and which auth modes are in use
    (read from the app settings as they are now)."""
    return handlers.health()


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
    await handlers.narrate_document(blob, graph.get())
