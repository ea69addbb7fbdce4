"""Logging that never carries a credential or the text being narrated.

With the root logger at DEBUG (a Functions host set to ``Debug``, a developer's
``logging.basicConfig(level=logging.DEBUG)``), libraries log what this app must never
show: ``websockets`` logs the handshake's ``Authorization: Bearer <token>`` or
``api-key: <key>`` header and every frame (which holds the text and its transcript),
azure-core logs request URLs and headers, the identity libraries log token traffic.

:func:`install` (idempotent; :class:`~podcast.app.App` calls it when the object graph is
built and ``function_app`` when it is imported) sets two lines of defence:

1. **Levels.** The loggers in :data:`QUIET_LOGGERS` are set to ``WARNING`` (a stricter level
   already set is kept), so their request, header and frame logs are never made.
2. **Redaction.** Every record is rewritten as it is made, by a log record factory: it
   applies to every handler, those added later and ``logging.lastResort`` included, which a
   filter cannot do (a logger's filters do not see its children's records; a handler's
   filters only its own). A :class:`RedactingFilter` on the root logger's handlers also
   catches records made without the factory (``logging.makeLogRecord``). The message is
   formatted with its arguments and the exception and stack text are formatted, then
   :func:`redact` masks what looks like a secret, and WebSocket frame payloads are dropped.

The rewritten record keeps no arguments and no ``exc_info`` (the traceback survives as
redacted ``exc_text``, which every ``logging.Formatter`` appends), so nothing unredacted is
left on it for a handler to format. Redaction is a pattern match, not a proof: the first
line of defence is that this app never logs a secret or the text, and the levels.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable
from typing import Any, Final

__all__ = ["QUIET_LOGGERS", "REDACTED", "RedactingFilter", "install", "redact", "scrub"]

REDACTED: Final = "[redacted]"

QUIET_LOGGERS: Final = (
    "websockets",
    "websockets.client",
    "websockets.server",
    "openai",
    "httpx",
    "httpcore",
    "azure",
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.identity",
    "azure.storage",
    "msal",
    "urllib3",
    "aiohttp",
)
"""Loggers that log requests, headers, URLs or frames below ``WARNING``. The parents cover
their children; the children are named too, in case something set their own level."""

# Names of secrets to mask (not secrets).
_SECRET_NAMES: Final = (
    r"api[-_]?key|x-functions-key|ocp-apim-subscription-key|client[-_]?secret|password|"  # noqa: S105
    r"access[-_]?token|refresh[-_]?token|id[-_]?token|x-identity-header|secret|"
    r"token"  # a show's feed token in its feed URL (?token=...)
)
_SEPARATOR: Final = r"""(?:["']?\s*[:=]\s*["']?|["']\s*,\s*["'])"""
"""``name: value``, ``name=value``, ``"name": "value"`` and a tuple's ``'name', 'value'``."""
_PATTERNS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # JSON Web Tokens (Entra ID access tokens; unsigned ones end with a bare ".").
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),
    # An Authorization header's whole value, as a header line or in a dict or tuple repr.
    (
        re.compile(rf"""(?i)(\b(?:proxy-)?authorization{_SEPARATOR})[^"'\r\n}}\]]+"""),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"(?i)\b(bearer|sharedkey)\s+[A-Za-z0-9\-._~+/:=]+"), rf"\1 {REDACTED}"),
    # Named secrets: headers, query strings, JSON, keyword arguments.
    (
        re.compile(rf"""(?i)(\b(?:{_SECRET_NAMES}){_SEPARATOR})[^"'\s,;&)}}\]]+"""),
        rf"\1{REDACTED}",
    ),
    # SAS signatures and function keys in URLs; connection string secrets.
    (
        re.compile(
            r"(?i)(?<![a-z])((?:sig|signature)(?:=|%3D))[^&%\s\"'#,;]+(?:%[0-9A-F]{2}[^&%\s\"'#,;]*)*"
        ),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"(?i)([?&]code=)[^&\s\"'#]+"), rf"\1{REDACTED}"),
    (
        re.compile(r"(?i)\b(AccountKey|SharedAccessKey|SharedAccessSignature)=[^;\s\"']+"),
        rf"\1={REDACTED}",
    ),
    # A long padded base64 string on its own: a Storage account key (88 characters).
    (re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{40,}={1,2}(?![A-Za-z0-9+/=])"), REDACTED),
)
_FRAME: Final = re.compile(r"^([<>] (?:TEXT|BINARY|CONT|PING|PONG)\b).*", re.DOTALL)
"""websockets' frame log lines (``> TEXT '{...}' [812 bytes]``): the payload holds the text."""
_SCRUBBED: Final = "_podcast_redacted"


def redact(text: str) -> str:
    """``text`` with bearer tokens, JWTs, ``Authorization`` and ``api-key`` values, other
    named secrets, SAS signatures (``sig=``), ``code=`` function keys, connection string
    keys and padded base64 keys replaced by :data:`REDACTED`."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def scrub(record: logging.LogRecord) -> logging.LogRecord:
    """Rewrite ``record`` in place so that nothing unredacted is left on it (see the module
    docstring); a record already scrubbed is left alone. Never raises."""
    if _is_scrubbed(record):
        return record
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: say so without the arguments
        message = f"{record.msg!s} (arguments could not be formatted)"
    message = _FRAME.sub(r"\1 [payload not logged]", message)
    record.msg = redact(message)
    record.args = None
    if record.exc_info:
        record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_info = None
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    setattr(record, _SCRUBBED, record.msg)
    return record


def _is_scrubbed(record: logging.LogRecord) -> bool:
    """Whether ``record`` is as :func:`scrub` left it (``makeLogRecord`` overwrites a
    scrubbed record's fields, the mark included, so the mark is the message it left)."""
    return getattr(record, _SCRUBBED, None) is record.msg and not record.args and not record.exc_info


class RedactingFilter(logging.Filter):
    """A handler filter that scrubs every record it sees (and drops none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub(record)
        return True


_RecordFactory = Callable[..., logging.LogRecord]


class _RedactingFactory:
    """A log record factory that scrubs what the factory before it makes."""

    def __init__(self, previous: _RecordFactory) -> None:
        self.previous = previous

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        return scrub(self.previous(*args, **kwargs))


def install() -> None:
    """Quiet :data:`QUIET_LOGGERS`, install the redacting record factory (unless installed)
    and put a :class:`RedactingFilter` on each root handler (unless it has one)."""
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)
    if not isinstance(logging.getLogRecordFactory(), _RedactingFactory):
        logging.setLogRecordFactory(_RedactingFactory(logging.getLogRecordFactory()))
    for handler in logging.getLogger().handlers:
        if not any(isinstance(existing, RedactingFilter) for existing in handler.filters):
            handler.addFilter(RedactingFilter())
