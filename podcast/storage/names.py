"""The one rule for blob names built from input: they stay inside their container.

A blob URL is ``<account>/<container>/<name>``. The Storage clients normalise the path
(``a/../b`` becomes ``b``) before sending it, and a bearer token (managed identity) does not
sign the path, so a name with a ``..`` segment silently addresses *another container*
(``../narrations-jobs/jobs/<id>.json`` overwrote a job record; ``../narration-input/x.json``
re-triggered the blob trigger). Shared-key requests fail instead (the signature covers the
unnormalised path), but not by design. So every name built from input is checked here,
before any Storage call, and :class:`~podcast.storage.blobs.BlobStore` and
:class:`~podcast.storage.documents.JsonDocuments` check every name they are given again.

A name is refused (:class:`~podcast.errors.BlobNameError`, which names the rule and never
quotes the name) when it

- is empty, longer than 1,024 characters or has more than 254 ``/``-separated segments
  (Azure's limits);
- starts with ``/`` or has an empty segment (``a//b``, a trailing ``/``);
- contains a backslash (some clients and proxies treat it as ``/``) or a control character
  (including unpaired surrogates, which cannot be encoded);
- has a segment that is ``.`` or ``..``, also after Unicode compatibility normalisation
  (``．．``, fullwidth dots), or that ends with ``.`` (Azure advises against it: some
  layers strip trailing dots, which would merge names).

Percent signs need no rule: the SDK percent-encodes the name (``%2e`` is sent as
``%252e``), so an encoded ``..`` stays a literal name.
"""

from __future__ import annotations

import unicodedata
from typing import Final

from podcast.errors import BlobNameError

__all__ = [
    "MAX_NAME_CHARACTERS",
    "MAX_SEGMENTS",
    "blob_name",
    "check_blob_name",
    "check_blob_segment",
    "log_safe",
]

MAX_NAME_CHARACTERS: Final = 1024
"""Azure's limit on a blob name's length, in characters."""
MAX_SEGMENTS: Final = 254
"""Azure's limit on path segments in a blob name."""


def _problem(name: str) -> str | None:
    """Why ``name`` breaks the rule (see the module docstring), or ``None``."""
    if not name:
        return "is empty"
    if len(name) > MAX_NAME_CHARACTERS:
        return f"is longer than {MAX_NAME_CHARACTERS:,} characters"
    if name.startswith("/"):
        return "starts with '/'"
    if "\\" in name:
        return "contains a backslash"
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name):
        return "contains a control character"
    segments = name.split("/")
    if len(segments) > MAX_SEGMENTS:
        return f"has more than {MAX_SEGMENTS} path segments"
    for segment in segments:
        if not segment:
            return "has an empty path segment ('//' or a trailing '/')"
        if unicodedata.normalize("NFKC", segment) in (".", "..") or segment in (".", ".."):
            return "has a '.' or '..' path segment"
        if segment.endswith(".") or unicodedata.normalize("NFKC", segment).endswith("."):
            return "has a path segment that ends with '.'"
    return None


def check_blob_name(name: str, *, field: str = "name") -> str:
    """``name`` itself when it follows the rule, else :class:`BlobNameError` naming ``field``
    (what the name was built from: ``document``, ``job id``, ...)."""
    problem = _problem(name)
    if problem is not None:
        raise BlobNameError(f"the {field} cannot be used as a blob name: it {problem}", field=field)
    return name


def check_blob_segment(value: str, *, field: str) -> str:
    """``value`` itself when it can be one segment of a blob name (the rule, and no ``/``:
    an id or key that becomes part of a name), else :class:`BlobNameError` naming ``field``."""
    if "/" in value:
        raise BlobNameError(f"the {field} cannot be used in a blob name: it contains '/'", field=field)
    return check_blob_name(value, field=field)


def blob_name(*parts: str, field: str = "name") -> str:
    """``parts`` joined with ``/``, checked as one name (each part may hold ``/`` itself)."""
    return check_blob_name("/".join(parts), field=field)


def log_safe(name: str, limit: int = 80) -> str:
    """``name`` for a log line: escaped (``ascii``: no control characters, no terminal tricks)
    and shortened to about ``limit`` characters."""
    shown = ascii(name)[1:-1]
    return shown if len(shown) <= limit else f"{shown[: limit // 2]}...{shown[-(limit // 2 - 10) :]}"
