"""Uploaded documents to narration requests: ``.txt``, ``.md`` and ``.json``.

- ``.txt``: UTF-8 text (a byte-order mark is fine); other encodings are refused.
- ``.md``/``.markdown``: Markdown made speakable with ``markdown-it-py``: headings, emphasis,
  lists and link texts are read; code blocks, images, HTML and link targets are not;
  a table becomes "Table omitted." Lists and block quotes may nest up to
  :data:`MAX_MARKDOWN_NESTING` levels; a deeper document is refused (``markdown_too_deep``)
  rather than narrated with its deeper levels silently missing.
- ``.json``: the same request schema as ``POST /api/narrations``, so a flow can choose
  the voice, style and instructions per file.

A document under ``shows/<slug>/`` (any type) is published to that show's feed, like a
request's ``show`` field; the show must exist (else the ``.error.json`` says ``show_not_found``).

Every problem raises :class:`~podcast.errors.DocumentError` (a permanent
:class:`~podcast.errors.RequestValidationError`): retrying cannot fix a document.

:class:`DocumentService` is what the blob trigger runs: ``<name-without-extension>.wav``
and ``.json`` in the output container, idempotent by content hash, with an ``.error.json``
record for documents that cannot be narrated or whose retries ran out.

Event Grid delivers at least once, and a document saved twice in a row is two versions
arriving close together. Each version (the source blob's ETag) is narrated by one delivery:

1. The name is checked first (:mod:`podcast.storage.names`): a name with ``.``/``..``
   segments, a leading ``/``, a backslash, ... is refused before any Storage call, logged
   escaped, and not retried (status ``rejected``).
2. A delivery whose ETag is no longer the source's (a newer version exists, or the source
   was deleted) does nothing (``superseded``): the newer version's delivery narrates.
3. The delivery *claims* the document: a conditional create of
   ``documents/<sha256 of the name>.json`` in the jobs container (:class:`~podcast.wire.DocumentClaim`),
   valid ``NARRATION_DOCUMENT_CLAIM_SECONDS`` (60) and renewed every third of that while it
   narrates. A second delivery of the same version that finds a live claim does nothing and
   returns (``duplicate``; the claimant's own delivery is retried by the host if it fails or
   dies). A claim that lapsed (its worker died) or that names an older version is taken
   over, conditionally on its ETag.
4. With the claim, a version whose content (SHA-256) the ``.json`` already records is
   skipped; otherwise it is narrated (its WAV blocks are its own) and, just before the
   commit, the claim and the source's ETag are checked again: a narration whose source
   changed or whose claim was taken is discarded with nothing stored (``superseded``).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import hashlib
import logging
import re
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any, Final, Literal, Protocol, TypeVar

from markdown_it import MarkdownIt
from markdown_it.token import Token
from pydantic import ValidationError

from podcast.audio.id3 import OMITTED_TABLE
from podcast.errors import (
    BlobNameError,
    ConfigurationError,
    DocumentError,
    PodcastError,
    RequestValidationError,
    SupersededError,
)
from podcast.models import MAX_TITLE_CHARACTERS, NarrationRequest, parse_request, show_slug_problem
from podcast.services.narrations import NARRATION_BASE, OUTPUT_SUFFIXES, NarrationService, StoredNarration
from podcast.settings import (
    INPUT_CONTAINER_SETTING,
    OUTPUT_CONTAINER_SETTING,
    DocumentSettings,
    RequestLimits,
    StorageSettings,
)
from podcast.storage.documents import DocumentStore
from podcast.storage.names import MAX_NAME_CHARACTERS, blob_name, check_blob_name, log_safe
from podcast.wire import DocumentClaim, DocumentSource, ErrorBody, iso_timestamp, job_timestamp

log = logging.getLogger(__name__)
T = TypeVar("T")

TEXT_EXTENSIONS: Final = (".txt", ".text")
MARKDOWN_EXTENSIONS: Final = (".md", ".markdown")
JSON_EXTENSIONS: Final = (".json",)
SUPPORTED_EXTENSIONS: Final = TEXT_EXTENSIONS + MARKDOWN_EXTENSIONS + JSON_EXTENSIONS


_URL: Final = re.compile(r"(?:https?|ftp)://\S+|www\.\S+\.\S+")
_SENTENCE_END: Final = re.compile(r"[.!?…:;。！？]$")
_BLANK_RUNS: Final = re.compile(r"[ \t]+")
_SPACE_BEFORE_PUNCTUATION: Final = re.compile(r"\s+([.,;:!?])")


def request_from_document(
    name: str, data: bytes, limits: DocumentSettings, request_limits: RequestLimits
) -> NarrationRequest:
    """The narration request a document asks for; raise :class:`DocumentError` if none.

    ``name`` is the blob's name (its extension decides the format; its stem becomes the
    title unless a JSON request gives one).
    """
    path = PurePosixPath(name)
    extension = path.suffix.lower()
    if extension not in SUPPORTED_EXTENSIONS:
        shown = extension or "no extension"
        raise DocumentError(
            f"{shown!s} files are not narrated; upload {', '.join(SUPPORTED_EXTENSIONS)}",
            field="document",
            code="unsupported_document_type",
        )
    if not data:
        raise DocumentError("the document is empty", field="document", code="empty_document")
    if len(data) > limits.max_bytes:
        raise DocumentError(
            f"the document has {len(data):,} bytes; the limit is {limits.max_bytes:,}",
            field="document",
            code="document_too_large",
        )
    show = show_of(name)
    text = decode_utf8(data)
    effective = limits.request_limits(request_limits)
    title = path.stem[:MAX_TITLE_CHARACTERS] or None
    try:
        if extension in JSON_EXTENSIONS:
            request = parse_request(text, effective)
            if show is not None and request.show not in (None, show):
                raise DocumentError(
                    f"the document is under shows/{show}/ but its request names another show",
                    field="show",
                    code="show_conflict",
                )
            update: dict[str, object] = {"title": request.title or title, "show": request.show or show}
            if show is not None and "format" not in request.model_fields_set:
                update["format"] = "mp3"  # an episode, as a request naming the show would be
            return request.model_copy(update=update)
        spoken = markdown_to_speech(text) if extension in MARKDOWN_EXTENSIONS else text
        if not spoken.strip():
            raise DocumentError(
                "the document has no text to narrate", field="document", code="empty_document"
            )
        return parse_request({"text": spoken, "title": title, "show": show}, effective)
    except DocumentError:
        raise
    except RequestValidationError as error:
        raise DocumentError(error.message, field=error.field, code=error.code) from None


SHOWS_FOLDER: Final = "shows"
ERROR_SUFFIX: Final = ".error.json"
"""A document's failure record, ``<name without extension>.error.json`` beside its outputs."""
_LONGEST_SUFFIX: Final = max(len(suffix) for suffix in (*OUTPUT_SUFFIXES, ERROR_SUFFIX))
_OUTPUT_STEMS: Final = tuple(
    suffix.removesuffix(".json") for suffix in (*OUTPUT_SUFFIXES, ERROR_SUFFIX) if suffix.count(".") > 1
)
"""The endings whose base's ``.json`` is another base's output (``.chapters``, ``.error``)."""


def show_of(name: str) -> str | None:
    """The show a document is published to: ``shows/<slug>/<any name>`` names one (any
    document type; a ``.json`` request may also name it in its ``show`` field), else ``None``.
    Raises :class:`DocumentError` (field ``show``) for a folder that is not a show's slug."""
    parts = PurePosixPath(name).parts
    if len(parts) < 3 or parts[0] != SHOWS_FOLDER:
        return None
    problem = show_slug_problem(parts[1])
    if problem is not None:
        raise DocumentError(problem, field="show", code="invalid_show")
    return parts[1]


def decode_utf8(data: bytes) -> str:
    """Decode UTF-8 (with or without a byte-order mark); refuse binary and other encodings."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise DocumentError(
            "the document is UTF-16 or UTF-32; save it as UTF-8",
            field="document",
            code="unsupported_encoding",
        )
    if b"\x00" in data[:8192]:
        raise DocumentError(
            "the document looks binary (it contains NUL bytes), not text",
            field="document",
            code="unsupported_encoding",
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DocumentError(
            f"the document is not UTF-8 (invalid byte at position {error.start}); save it as UTF-8",
            field="document",
            code="unsupported_encoding",
        ) from None


MAX_MARKDOWN_NESTING: Final = 100
"""Lists and block quotes (together) nested deeper than this are refused: far beyond real
documents (outlines rarely pass 10), and still a bounded parse."""

# markdown-it drops, without a word, everything below its nesting cap (CommonMark preset: 20,
# an outline of 9 levels). A list level takes two (list and item), a block quote one; the
# margin keeps the cap out of reach of any document within MAX_MARKDOWN_NESTING.
_MAX_PARSER_NESTING: Final = 2 * MAX_MARKDOWN_NESTING + 4
_MARKDOWN = MarkdownIt("commonmark", {"maxNesting": _MAX_PARSER_NESTING}).enable(["table", "strikethrough"])
_CONTAINER_OPEN: Final = frozenset({"blockquote_open", "bullet_list_open", "ordered_list_open"})
_CONTAINER_CLOSE: Final = frozenset({"blockquote_close", "bullet_list_close", "ordered_list_close"})
_LEADING_MARKERS: Final = re.compile(r"(?:[ \t]*(?:>|(?:[-+*]|\d{1,9}[.)])(?=[ \t]|$)))+")
"""A line's run of block quote and list markers (``> - 1. x``: three containers opened)."""
_MARKER: Final = re.compile(r">|[-+*]|\d{1,9}[.)]")
_THEMATIC_BREAK: Final = re.compile(r"[ \t]*([-*_])(?:[ \t]*\1){2,}[ \t]*")


def markdown_to_speech(source: str) -> str:
    """Markdown as text a narrator can read: one paragraph per block, blank lines between.

    Raises :class:`DocumentError` (``markdown_too_deep``, field ``document``) for lists and
    block quotes nested more than :data:`MAX_MARKDOWN_NESTING` levels, or any document the
    parser could not read to its end, so no text is ever lost silently.
    """
    blocks: list[str] = []
    tokens = _parse_markdown(source)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token.type == "table_open":
            blocks.append(OMITTED_TABLE)  # chapters know it is no heading
            index = _skip_to(tokens, index, "table_close")
        elif token.type == "inline":
            text = _inline_text(token.children or [])
            if text:
                blocks.append(_as_sentence(text) if _in_list_item(tokens, index) else text)
        # fence, code_block, html_block, hr: not narrated.
        index += 1
    return "\n\n".join(blocks)


def _parse_markdown(source: str) -> list[Token]:
    """The block tokens of ``source``, checked to cover all of it (see :func:`markdown_to_speech`)."""
    # One line opening more containers than allowed ("- - - ... x") is refused before the
    # parse, whose time grows with the line's length times the nesting cap.
    most = _most_markers_on_a_line(source)
    if most > MAX_MARKDOWN_NESTING:
        raise _too_deep(f"{most} levels deep")
    try:
        tokens = _MARKDOWN.parse(source)
    except RecursionError:
        raise _too_deep(f"more than {MAX_MARKDOWN_NESTING} levels deep") from None
    depth = deepest = 0
    for token in tokens:
        if token.type in _CONTAINER_OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif token.type in _CONTAINER_CLOSE:
            depth -= 1
        # Inside a container opened here the parser is at level + 1: at its cap it skips the rest.
        if token.nesting == 1 and token.level + 1 >= _MAX_PARSER_NESTING:
            raise _too_deep(f"more than {MAX_MARKDOWN_NESTING} levels deep")
    if deepest > MAX_MARKDOWN_NESTING:
        raise _too_deep(f"{deepest} levels deep")
    return tokens


def _too_deep(found: str) -> DocumentError:
    return DocumentError(
        f"the Markdown nests lists or block quotes {found}; at most {MAX_MARKDOWN_NESTING} levels "
        "are narrated, and deeper text would be lost: flatten the outline",
        field="document",
        code="markdown_too_deep",
    )


def _most_markers_on_a_line(source: str) -> int:
    """The most block quote and list markers any line of ``source`` starts with (a thematic
    break such as ``* * *`` has none)."""
    most = 0
    for line in source.splitlines():
        match = _LEADING_MARKERS.match(line)
        if match and not _THEMATIC_BREAK.fullmatch(line):
            most = max(most, len(_MARKER.findall(match.group())))
    return most


def _inline_text(children: Sequence[Token]) -> str:
    parts: list[str] = []
    in_link_to: str | None = None
    link_parts: list[str] = []
    for child in children:
        if child.type == "link_open":
            in_link_to = str(child.attrGet("href") or "")
            link_parts = []
        elif child.type == "link_close":
            label = "".join(link_parts).strip()
            # An autolink's text is its target: a URL is never read aloud.
            if label and label != in_link_to and not _URL.fullmatch(label):
                parts.append(label)
            in_link_to = None
        elif child.type in ("text", "code_inline"):
            (link_parts if in_link_to is not None else parts).append(_URL.sub("", child.content))
        elif child.type in ("softbreak", "hardbreak"):
            (link_parts if in_link_to is not None else parts).append(" ")
        # image, html_inline, em/strong/s markers: nothing to say.
    text = _BLANK_RUNS.sub(" ", "".join(parts)).strip()
    return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text)


def _in_list_item(tokens: Sequence[Token], index: int) -> bool:
    """Whether the inline token at ``index`` is a list item's first line (said as a sentence).
    A heading is not: it stays a short line without end punctuation, as a plain text's
    headings are, which the segments keep with what follows and chapters start at."""
    if index < 2:
        return False
    return tokens[index - 1].type == "paragraph_open" and tokens[index - 2].type == "list_item_open"


def _as_sentence(text: str) -> str:
    return text if _SENTENCE_END.search(text) else f"{text}."


def _skip_to(tokens: Sequence[Token], index: int, closing: str) -> int:
    while index < len(tokens) and tokens[index].type != closing:
        index += 1
    return index


# --- The blob trigger's service -------------------------------------------------------------

DocumentStatus = Literal["narrated", "skipped", "failed", "rejected", "duplicate", "superseded"]


@dataclass(frozen=True, slots=True)
class DocumentOutcome:
    """What became of an uploaded document: ``narrated``; ``skipped`` (this content was
    narrated before); ``failed`` (see its ``.error.json``); ``rejected`` (an unsafe name:
    nothing stored anywhere); ``duplicate`` (another delivery is narrating this version);
    ``superseded`` (a newer version or another delivery took over: nothing stored)."""

    status: DocumentStatus
    base: str
    """Output blob names without extension (``<base>.wav``, ``.json``, ``.error.json``);
    empty for a rejected name."""
    result: StoredNarration | None = None
    error: PodcastError | None = None


class Sources(Protocol):
    """The input container, as far as a delivery needs it (:class:`~podcast.storage.blobs.BlobStore`)."""

    async def etag(self, blob_name: str) -> str | None:
        """The source blob's current ETag, or ``None`` when it no longer exists."""
        ...


def claim_name(source_name: str) -> str:
    """``documents/<sha256 of the source name>.json``: where a document's claim lives."""
    return blob_name("documents", f"{hashlib.sha256(source_name.encode('utf-8')).hexdigest()}.json")


def _same_version(left: str | None, right: str | None) -> bool:
    """ETags compared without their quotes (the host and the SDK may differ in quoting)."""

    def bare(etag: str | None) -> str | None:
        return None if etag is None else etag.removeprefix("W/").strip('"')

    return left is not None and bare(left) == bare(right)


class _Claim:
    """One delivery's claim on a document version (see the module docstring, step 3)."""

    def __init__(
        self, store: DocumentStore, source_name: str, version: str, sha256: str, seconds: int
    ) -> None:
        self.store = store
        self.name = claim_name(source_name)
        self.version = version
        self.sha256 = sha256
        self.seconds = seconds
        self.attempt = uuid.uuid4().hex
        self._renewing = asyncio.Lock()

    def _document(self) -> dict[str, Any]:
        expires = datetime.now(UTC) + timedelta(seconds=self.seconds)
        claim = DocumentClaim(
            version=self.version, sha256=self.sha256, attempt=self.attempt, expires_at=job_timestamp(expires)
        )
        return claim.model_dump(mode="json")

    async def _current(self) -> tuple[DocumentClaim | None, str] | None:
        found = await self.store.get(self.name)
        if found is None:
            return None
        try:
            return DocumentClaim.model_validate(found[0]), found[1]
        except ValidationError:
            return None, found[1]  # unreadable: treated as lapsed

    async def acquire(self) -> bool:
        """Take the claim: ``False`` when another delivery holds a live claim on this version."""
        for _ in range(3):
            if await self.store.put(self.name, self._document(), create=True):
                return True
            current = await self._current()
            if current is None:
                continue  # released meanwhile: try creating it again
            holder, etag = current
            if holder is not None and holder.attempt == self.attempt:
                return True
            live = holder is not None and _parse(holder.expires_at) > datetime.now(UTC)
            if live and holder is not None and _same_version(holder.version, self.version):
                return False
            # Lapsed (its worker died), unreadable, or an older version's: take it over.
            if await self.store.put(self.name, self._document(), etag=etag):
                return True
        return False

    async def renew(self) -> bool:
        """Extend the claim; ``False`` when it is no longer this delivery's."""
        async with self._renewing:  # the keeper and the check before the commit
            current = await self._current()
            if current is None or current[0] is None or current[0].attempt != self.attempt:
                return False
            return await self.store.put(self.name, self._document(), etag=current[1])

    async def keep(self) -> None:
        """Renew every third of the claim's lifetime until cancelled (best effort)."""
        while True:
            await asyncio.sleep(self.seconds / 3)
            try:
                if not await self.renew():
                    log.warning("document claim %s was taken over by another delivery", self.attempt[:8])
                    return
            except PodcastError as error:
                log.warning("document claim not renewed (%s)", error.code)

    async def release(self) -> None:
        """Remove the claim if it is still this delivery's (best effort)."""
        with contextlib.suppress(PodcastError):
            current = await self._current()
            if current is not None and current[0] is not None and current[0].attempt == self.attempt:
                await self.store.delete(self.name, etag=current[1])


def _parse(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


class DocumentService:
    """Narrates documents uploaded to the input container (``sources``) into the output
    container, one delivery per document version (``claims``: the jobs container)."""

    def __init__(
        self,
        narrations: NarrationService,
        storage: StorageSettings,
        documents: DocumentSettings,
        limits: RequestLimits,
        *,
        sources: Sources,
        claims: DocumentStore,
    ) -> None:
        self.narrations = narrations
        self.outputs = narrations.outputs
        self.storage = storage
        self.settings = documents
        self.limits = limits
        self.sources = sources
        self.claims = claims

    async def narrate_upload(
        self, blob_name: str, data: bytes, *, etag: str | None = None
    ) -> DocumentOutcome:
        """What the blob trigger does with an uploaded blob (``<input container>/<name>``).

        Raises only for transient failures that the host should retry (see
        :meth:`narrate_document`), and :class:`ConfigurationError` when the input and output
        containers are the same (outputs would trigger again).
        """
        if self.storage.input_container == self.storage.output_container:
            raise ConfigurationError(
                OUTPUT_CONTAINER_SETTING,
                f"must differ from {INPUT_CONTAINER_SETTING} (outputs would trigger again)",
            )
        prefix = f"{self.storage.input_container}/"
        source_name = blob_name[len(prefix) :] if blob_name.startswith(prefix) else blob_name
        return await self.narrate_document(source_name, data, etag=etag)

    async def narrate_document(
        self, source_name: str, data: bytes, *, etag: str | None = None
    ) -> DocumentOutcome:
        """Narrate an uploaded document into ``<name-without-extension>.wav`` and ``.json``.

        ``etag`` is the version the host delivered (without one, the source's current ETag
        is taken). Once per version and content (see the module docstring): a rejected
        name, a superseded version, a duplicate delivery or content already narrated
        returns without narrating. A document that can never be narrated gets
        ``.error.json`` and no raise. A transient failure raises (the host retries) after
        recording the attempt in ``.error.json``; the ``max_attempts``-th transient failure
        is recorded as final and does not raise. Success removes any ``.error.json``.
        """
        try:
            check_blob_name(source_name, field="document")
            path = PurePosixPath(source_name)
            base = str(path.with_suffix("")) if "." in path.name else source_name
            if len(base) + _LONGEST_SUFFIX > MAX_NAME_CHARACTERS:
                raise BlobNameError(
                    "the document's name is too long for its outputs: without its extension it "
                    f"may have at most {MAX_NAME_CHARACTERS - _LONGEST_SUFFIX:,} characters (its "
                    f"outputs add up to {_LONGEST_SUFFIX} to it, and Azure allows "
                    f"{MAX_NAME_CHARACTERS:,} in a blob name)",
                    field="document",
                )
            error_blob = blob_name(f"{base}{ERROR_SUFFIX}", field="document")
            blob_name(f"{base}.wav", field="document")
            if base.endswith(_OUTPUT_STEMS):
                # notes.chapters.txt's transcript would be notes.txt's chapters file (and
                # notes.error.txt's its failure record): two documents writing one blob.
                raise BlobNameError(
                    "a document's name without its extension may not end in .chapters or .error: "
                    "its outputs would replace those of the document without that ending",
                    field="document",
                )
            if NARRATION_BASE.fullmatch(base):
                # A narration's id is public (its URLs, the feed's guid): a document named so
                # would replace that narration's audio, captions and transcript.
                raise BlobNameError(
                    "a document may not be named like the service's own narrations "
                    "(<yyyy>/<mm>/<dd>/<32 hex digits>): its outputs would replace one",
                    field="document",
                )
        except BlobNameError as error:
            log.warning("document %s refused: %s", log_safe(source_name), error.message)
            return DocumentOutcome("rejected", "", error=error)

        sha256 = hashlib.sha256(data).hexdigest()
        current = await self.sources.etag(source_name)
        if current is None or (etag is not None and not _same_version(etag, current)):
            log.info("document %s changed or is gone: this delivery is superseded", log_safe(source_name))
            return DocumentOutcome("superseded", base)
        version = etag or current
        source = DocumentSource(blob_name=source_name, etag=version, sha256=sha256, bytes=len(data))
        claim = _Claim(self.claims, source_name, version, sha256, self.settings.claim_seconds)
        if not await claim.acquire():
            log.info("document %s is being narrated by another delivery", log_safe(source_name))
            return DocumentOutcome("duplicate", base)
        try:
            return await self._narrate_claimed(source_name, data, base, error_blob, source, claim)
        finally:
            await asyncio.shield(claim.release())

    async def _narrate_claimed(
        self, source_name: str, data: bytes, base: str, error_blob: str, source: DocumentSource, claim: _Claim
    ) -> DocumentOutcome:
        max_attempts = self.settings.max_attempts
        await self.outputs.ensure_container()
        existing = await self.outputs.read_json(f"{base}.json")
        if existing and (existing.get("source") or {}).get("sha256") == source.sha256:
            log.info("document %s already narrated; skipping", log_safe(source_name))
            return DocumentOutcome("skipped", base)

        async def still_current() -> None:
            if not await claim.renew():
                raise SupersededError("another delivery took over this document's narration")
            if not _same_version(await self.sources.etag(source_name), source.etag):
                raise SupersededError("the document changed while it was narrated")

        keeper = asyncio.create_task(claim.keep())
        try:
            request = request_from_document(source_name, data, self.settings, self.limits)
            result = await self.narrations.produce(
                request,
                narration_id=self.narrations.new_id(),
                base=base,
                created_at=self.narrations.clock(),
                link_expires_in=None,
                source=source,
                before_commit=still_current,
            )
        except SupersededError as error:
            log.info("document %s: narration discarded (%s)", log_safe(source_name), error.message)
            return DocumentOutcome("superseded", base, error=error)
        except PodcastError as error:
            previous = await _quietly(self.outputs.read_json(error_blob))
            attempts = 1
            if previous and (previous.get("source") or {}).get("sha256") == source.sha256:
                attempts = int(previous.get("attempts", 0)) + 1
            final = not error.transient or attempts >= max_attempts
            record = {
                "status": "failed" if final else "retrying",
                "final": final,
                "attempts": attempts,
                "max_attempts": max_attempts if error.transient else 1,
                "error": ErrorBody.from_error(error).error.model_dump(mode="json"),
                "source": source.model_dump(mode="json"),
                "updated_at": iso_timestamp(datetime.now(UTC)),
            }
            await _quietly(self.outputs.upload_json(error_blob, record))
            log.warning(
                "document %s failed (%s), attempt %d, %s",
                log_safe(source_name),
                error.code,
                attempts,
                "final" if final else "will be retried",
            )
            if final:
                return DocumentOutcome("failed", base, error=error)
            raise
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        await _quietly(self.outputs.delete_if_exists(error_blob))
        return DocumentOutcome("narrated", base, result=result)


async def _quietly(awaitable: Awaitable[T]) -> T | None:
    """Await a best-effort Storage call; a failure (already being reported) gives ``None``."""
    try:
        return await awaitable
    except PodcastError:
        return None
