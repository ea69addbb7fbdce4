"""Uploaded documents to narration requests: ``.txt``, ``.md`` and ``.json``.

- ``.txt``: UTF-8 text (a byte-order mark is fine); other encodings are refused.
- ``.md``/``.markdown``: Markdown made speakable with ``markdown-it-py``: headings, emphasis,
  lists and link texts are read; code blocks, images, HTML and link targets are not;
  a table becomes "Table omitted."
- ``.json``: the same request schema as ``POST /api/narrations``, so a flow can choose
  the voice, style and instructions per file.

Every problem raises :class:`DocumentError` (a permanent
:class:`~podcast.errors.RequestValidationError`): retrying cannot fix a document.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Final

from markdown_it import MarkdownIt
from markdown_it.token import Token

from podcast.errors import RequestValidationError
from podcast.models import MAX_TITLE_CHARACTERS, NarrationRequest, RequestLimits, parse_request
from podcast.settings import int_setting

TEXT_EXTENSIONS: Final = (".txt", ".text")
MARKDOWN_EXTENSIONS: Final = (".md", ".markdown")
JSON_EXTENSIONS: Final = (".json",)
SUPPORTED_EXTENSIONS: Final = TEXT_EXTENSIONS + MARKDOWN_EXTENSIONS + JSON_EXTENSIONS

MAX_DOCUMENT_BYTES_SETTING: Final = "NARRATION_MAX_DOCUMENT_BYTES"
MAX_DOCUMENT_CHARACTERS_SETTING: Final = "NARRATION_MAX_DOCUMENT_CHARACTERS"

_URL: Final = re.compile(r"(?:https?|ftp)://\S+|www\.\S+\.\S+")
_SENTENCE_END: Final = re.compile(r"[.!?…:;。！？]$")
_BLANK_RUNS: Final = re.compile(r"[ \t]+")
_SPACE_BEFORE_PUNCTUATION: Final = re.compile(r"\s+([.,;:!?])")


class DocumentError(RequestValidationError):
    """A document that can never be narrated (wrong type, encoding, size, or content)."""

    code = "unsupported_document"


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    """Limits for uploaded documents (larger than the synchronous HTTP endpoint's)."""

    max_bytes: int = 1_048_576
    max_characters: int = 50_000

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> DocumentLimits:
        import os

        env = dict(os.environ) if env is None else env
        return cls(
            max_bytes=int_setting(env, MAX_DOCUMENT_BYTES_SETTING, 1_048_576, 1, 16_777_216),
            max_characters=int_setting(env, MAX_DOCUMENT_CHARACTERS_SETTING, 50_000, 1, 1_000_000),
        )

    def request_limits(self, base: RequestLimits) -> RequestLimits:
        """``base`` with the document text limit."""
        return RequestLimits(
            max_text_characters=self.max_characters,
            max_sas_expiry_minutes=base.max_sas_expiry_minutes,
            default_voice=base.default_voice,
        )


def request_from_document(
    name: str, data: bytes, limits: DocumentLimits, request_limits: RequestLimits
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
    text = decode_utf8(data)
    effective = limits.request_limits(request_limits)
    title = path.stem[:MAX_TITLE_CHARACTERS] or None
    try:
        if extension in JSON_EXTENSIONS:
            request = parse_request(text, effective)
            return request if request.title else request.model_copy(update={"title": title})
        spoken = markdown_to_speech(text) if extension in MARKDOWN_EXTENSIONS else text
        if not spoken.strip():
            raise DocumentError(
                "the document has no text to narrate", field="document", code="empty_document"
            )
        return parse_request({"text": spoken, "title": title}, effective)
    except DocumentError:
        raise
    except RequestValidationError as error:
        raise DocumentError(error.message, field=error.field, code=error.code) from None


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


_MARKDOWN = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def markdown_to_speech(source: str) -> str:
    """Markdown as text a narrator can read: one paragraph per block, blank lines between."""
    blocks: list[str] = []
    tokens = _MARKDOWN.parse(source)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token.type == "table_open":
            blocks.append("Table omitted.")
            index = _skip_to(tokens, index, "table_close")
        elif token.type == "inline":
            text = _inline_text(token.children or [])
            if text:
                blocks.append(_as_sentence(text) if _in_list_or_heading(tokens, index) else text)
        # fence, code_block, html_block, hr: not narrated.
        index += 1
    return "\n\n".join(blocks)


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


def _in_list_or_heading(tokens: Sequence[Token], index: int) -> bool:
    """Whether the inline token at ``index`` is a heading or a list item's first line."""
    previous = tokens[index - 1] if index else None
    if previous is None:
        return False
    if previous.type == "heading_open":
        return True
    return previous.type == "paragraph_open" and index >= 2 and tokens[index - 2].type == "list_item_open"


def _as_sentence(text: str) -> str:
    return text if _SENTENCE_END.search(text) else f"{text}."


def _skip_to(tokens: Sequence[Token], index: int, closing: str) -> int:
    while index < len(tokens) and tokens[index].type != closing:
        index += 1
    return index
