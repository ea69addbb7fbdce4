"""File download answers: a stored file, whole (200) or in ranges (206), or 416, or a
redirect (302) to a fresh read-only link when the answer would be larger than a limit.

The body is read from Storage for each answer (only the requested bytes for a range).
The Python Functions worker sends an ``HttpResponse`` body as a whole (streaming needs the
FastAPI HTTP-streams extension, which switches every HTTP function of the app to FastAPI
types), so an answer is held in memory while it is sent: answers larger than
``inline_max_bytes`` are a ``302 Found`` to the blob's own read-only link instead, which
Storage serves with the same content type, file name and ``Range`` support. Ranges up to
the limit are still answered here, so a client that does not follow redirects can fetch a
large file in pieces.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from email.utils import format_datetime
from typing import Final

import azure.functions as func

from podcast.http.ranges import UNSATISFIABLE, WHOLE, content_range, multipart_body, select_ranges
from podcast.http.responses import json_response
from podcast.storage.files import BlobFileInfo
from podcast.wire import etag_matches

__all__ = ["file_response"]

_DEFAULT_TYPE: Final = "application/octet-stream"

Reader = Callable[[BlobFileInfo, int, "int | None"], Awaitable[bytes]]
"""``read(file, offset, length)``: bytes of a stored file."""
Linker = Callable[[BlobFileInfo], Awaitable[str]]
"""``link(file)``: a fresh read-only link to a stored file."""


async def file_response(
    req: func.HttpRequest,
    file: BlobFileInfo,
    read: Reader,
    *,
    inline_max_bytes: int | None = None,
    link: Linker | None = None,
) -> func.HttpResponse:
    """The answer to a ``GET`` of ``file``: 304 when ``If-None-Match`` names its ETag (the
    caller's copy is current), else 200 with every byte, 206 with the ``Range`` asked
    for (``multipart/byteranges`` for several), or 416 with ``Content-Range: bytes */size``;
    with ``link``, a ``302`` to ``await link(file)`` instead of a 200 or 206 of more than
    ``inline_max_bytes`` (the JSON body names the link too, for clients that read it)."""
    content_type = file.content_type or _DEFAULT_TYPE
    # Content-Type is a header of its own: the mimetype alone would gain a "; charset=utf-8".
    headers = {
        "Content-Type": content_type,
        "Accept-Ranges": "bytes",
        "ETag": file.etag,
        "Cache-Control": "private, no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if file.content_disposition:
        headers["Content-Disposition"] = file.content_disposition
    if file.last_modified is not None:
        headers["Last-Modified"] = format_datetime(file.last_modified, usegmt=True)
    if_none_match = req.headers.get("If-None-Match")
    if if_none_match is not None and etag_matches(if_none_match, file.etag):  # before any Range
        # Content-Type as the copy's own: a cache updates its stored headers from a 304's (RFC 9111 4.3.4).
        current = {
            k: v
            for k, v in headers.items()
            if k in ("Content-Type", "ETag", "Last-Modified", "Cache-Control")
        }
        return func.HttpResponse(b"", status_code=304, headers=current)
    selection = select_ranges(
        req.headers.get("Range"), file.size, if_range=req.headers.get("If-Range"), etag=file.etag
    )
    if selection == UNSATISFIABLE:
        headers["Content-Range"] = f"bytes */{file.size}"
        return func.HttpResponse(b"", status_code=416, headers=headers, mimetype=content_type)
    answer_bytes = file.size if selection == WHOLE else sum(last - first + 1 for first, last in selection)
    if link is not None and inline_max_bytes is not None and answer_bytes > inline_max_bytes:
        url = await link(file)
        where = {"url": url, "size_bytes": file.size, "content_type": content_type}
        return json_response(302, where, {"Location": url, "X-Content-Type-Options": "nosniff"})
    if selection == WHOLE:
        return func.HttpResponse(
            await read(file, 0, None), status_code=200, headers=headers, mimetype=content_type
        )
    if len(selection) == 1:
        first, last = selection[0]
        headers["Content-Range"] = content_range(first, last, file.size)
        body = await read(file, first, last - first + 1)
        return func.HttpResponse(body, status_code=206, headers=headers, mimetype=content_type)
    boundary = uuid.uuid4().hex
    parts = [(first, last, await read(file, first, last - first + 1)) for first, last in selection]
    body = multipart_body(parts, file.size, content_type, boundary)
    headers["Content-Type"] = f"multipart/byteranges; boundary={boundary}"
    return func.HttpResponse(body, status_code=206, headers=headers, mimetype=headers["Content-Type"])
