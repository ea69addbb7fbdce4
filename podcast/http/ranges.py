"""HTTP range requests (RFC 9110 §14) for file downloads: which bytes to send.

:func:`select_ranges` reads a ``Range`` header against a representation of ``size`` bytes
and answers with what to send:

- :data:`WHOLE` (200): no ``Range``, another unit than ``bytes``, a header that does not
  parse (RFC 9110 says to ignore it then), an ``If-Range`` that does not match the ETag,
  or more ranges than :data:`MAX_RANGES` (a server may ignore a Range header; this keeps a
  hostile header from making one answer of thousands of parts);
- a list of ``(first, last)`` byte positions (206), inclusive, sorted and with overlapping
  or adjacent ranges merged; one range is sent as it is, several as
  ``multipart/byteranges``;
- :data:`UNSATISFIABLE` (416) when the ranges parse but none of them overlaps the
  representation (``bytes=1000-`` of a 1,000-byte file, ``bytes=-0``, any range of an
  empty file).

werkzeug's parser (which ``azure.functions`` brings) is not used: it refuses overlapping
ranges and ``-0``, which RFC 9110 defines (merged, and unsatisfiable).
"""

from __future__ import annotations

import re
from typing import Final, Literal

__all__ = ["MAX_RANGES", "UNSATISFIABLE", "WHOLE", "content_range", "multipart_body", "select_ranges"]

WHOLE: Final = "whole"
UNSATISFIABLE: Final = "unsatisfiable"
MAX_RANGES: Final = 16
_RANGE_SPEC: Final = re.compile(r"(\d*)-(\d*)")
_MAX_DIGITS: Final = 19

Selection = list[tuple[int, int]] | Literal["whole", "unsatisfiable"]


def select_ranges(header: str | None, size: int, *, if_range: str | None = None, etag: str = "") -> Selection:
    """What to send for ``Range: header`` of ``size`` bytes (see the module docstring).

    ``if_range`` is the request's ``If-Range``: the ranges apply only when it is the current
    (strong) ``etag``; a date or another tag means the whole file.
    """
    if header is None or not header.strip():
        return WHOLE
    if if_range is not None and if_range.strip() != etag:
        return WHOLE
    unit, _, specs = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or not specs.strip():
        return WHOLE
    parts = [part.strip() for part in specs.split(",")]
    parts = [part for part in parts if part]  # RFC 9110 §5.6.1: empty list elements are ignored
    if not parts or len(parts) > MAX_RANGES:
        return WHOLE
    wanted: list[tuple[int, int]] = []
    for part in parts:
        match = _RANGE_SPEC.fullmatch(part)
        if match is None or len(match[1]) > _MAX_DIGITS or len(match[2]) > _MAX_DIGITS:
            return WHOLE
        first, last = match[1], match[2]
        if first:
            start = int(first)
            end = int(last) if last else size - 1
            if last and end < start:
                return WHOLE  # an invalid range-spec makes the whole header invalid
            if start < size:
                wanted.append((start, min(end, size - 1)))
        elif last:
            suffix = int(last)
            if suffix > 0 and size > 0:
                wanted.append((max(0, size - suffix), size - 1))
        else:
            return WHOLE  # "-" alone
    if not wanted:
        return UNSATISFIABLE
    wanted.sort()
    merged = [wanted[0]]
    for start, end in wanted[1:]:
        last_start, last_end = merged[-1]
        if start <= last_end + 1:
            merged[-1] = (last_start, max(last_end, end))
        else:
            merged.append((start, end))
    return merged


def content_range(first: int, last: int, size: int) -> str:
    """The ``Content-Range`` value of one part: ``bytes 0-99/1000``."""
    return f"bytes {first}-{last}/{size}"


def multipart_body(parts: list[tuple[int, int, bytes]], size: int, content_type: str, boundary: str) -> bytes:
    """A ``multipart/byteranges; boundary=<boundary>`` body (RFC 9110 §14.6) of ``parts``
    (``first``, ``last``, the bytes)."""
    chunks: list[bytes] = []
    for first, last, data in parts:
        head = (
            f"--{boundary}\r\nContent-Type: {content_type}\r\n"
            f"Content-Range: {content_range(first, last, size)}\r\n\r\n"
        )
        chunks += [head.encode("ascii"), data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode("ascii"))
    return b"".join(chunks)
