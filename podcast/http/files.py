"""File download answers: a stored file, whole (200) or in ranges (206), or 416.

The body is read from Storage for each answer (only the requested bytes for a range);
the Python Functions worker sends an ``HttpResponse`` body as a whole, so a full download
holds the file in memory for the duration of the answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from email.utils import format_datetime
from typing import Final

import azure.functions as func

from podcast.http.ranges import UNSATISFIABLE, WHOLE, content_range, multipart_body, select_ranges
from podcast.storage.files import BlobFileInfo

__all__ = ["file_response"]

_DEFAULT_TYPE: Final = "application/octet-stream"

Reader = Callable[[BlobFileInfo, int, "int | None"], Awaitable[bytes]]
"""``read(file, offset, length)``: bytes of a stored file."""


async def file_response(req: func.HttpRequest, file: BlobFileInfo, read: Reader) -> func.HttpResponse:
    """The answer to a ``GET`` of ``file``: 200 with every byte, 206 with the ``Range`` asked
    for (``multipart/byteranges`` for several), or 416 with ``Content-Range: bytes */size``."""
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
    selection = select_ranges(
        req.headers.get("Range"), file.size, if_range=req.headers.get("If-Range"), etag=file.etag
    )
    if selection == UNSATISFIABLE:
        headers["Content-Range"] = f"bytes */{file.size}"
        return func.HttpResponse(b"", status_code=416, headers=headers, mimetype=content_type)
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
