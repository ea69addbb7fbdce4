"""The redaction of log records (podcast.logs): what is masked, what is kept, and that the
installed record factory reaches every handler, children's records and ``lastResort``."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from podcast import logs
from podcast.logs import REDACTED, RedactingFilter, redact, scrub

API_KEY = "k3y-0f-the-0penai-resource-7d1e9a52"
JWT = (
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOiJodHRwczovL2NvZ25pdGl2ZXNlcnZpY2VzLmF6dXJlLmNvbSJ9"
    ".c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
)
UNSIGNED_JWT = "eyJhbGciOiAibm9uZSJ9.eyJvaWQiOiAiYWJjIn0."
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
SIG = "hMAC%2Bsignature%3D0123456789abcdef"
FUNCTION_KEY = "fUnCt10nKeY-abcdefghijklmnop=="


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        (f"> Authorization: Bearer {JWT}", JWT),
        (f"> authorization: Bearer {UNSIGNED_JWT}", UNSIGNED_JWT),
        (f"{{'Authorization': 'Bearer {JWT}', 'x': 1}}", JWT),
        (f"[('authorization', 'SharedKey devstoreaccount1:{ACCOUNT_KEY[:44]}')]", ACCOUNT_KEY[:44]),
        (f"> api-key: {API_KEY}", API_KEY),
        (f"headers={{'api-key': '{API_KEY}'}}", API_KEY),
        (f'{{"api_key": "{API_KEY}"}}', API_KEY),
        (f"GET /openai/v1/realtime?model=gpt&api-key={API_KEY} HTTP/1.1", API_KEY),
        (f"x-functions-key: {FUNCTION_KEY}", FUNCTION_KEY),
        (f"https://app.example.net/api/narrations/1?code={FUNCTION_KEY}", FUNCTION_KEY),
        (f"https://a.blob.core.windows.net/c/b.wav?sv=2024-11-04&sp=r&sig={SIG}&se=x", SIG),
        (f"https://a.blob.core.windows.net/c/b.wav?sig={SIG}", SIG),
        (f"next=https%3A%2F%2Fa.blob.core.windows.net%2Fc%3Fsp%3Dr%26sig%3D{SIG}%26se%3Dx", SIG),
        (f"AccountName=dev;AccountKey={ACCOUNT_KEY};BlobEndpoint=http://x", ACCOUNT_KEY),
        (f"SharedAccessSignature=sv=2024&sig={SIG};BlobEndpoint=x", SIG),
        (f"invalid key {ACCOUNT_KEY} given", ACCOUNT_KEY),
        (f"token {JWT} expired", JWT),
        (f"client_secret={API_KEY}", API_KEY),
        (f"'x-identity-header': '{API_KEY}'", API_KEY),
    ],
)
def test_secrets_are_masked_wherever_they_sit(line: str, secret: str) -> None:
    masked = redact(line)

    assert secret not in masked
    assert REDACTED in masked


@pytest.mark.parametrize(
    "line",
    [
        "job 5d41402abc4b2a76b9719d911017c592 running (delivery 1)",
        "request failed: upstream_authentication_failed (AuthenticationError)",
        "realtime response done: response=resp_1 status=completed audio=3.91s tokens=512/91",
        "source sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "handshake rejected status=401 path=/openai/v1/realtime auth=api-key",
    ],
)
def test_ordinary_log_lines_are_kept_as_they_are(line: str) -> None:
    assert redact(line) == line


def record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("websockets.client", logging.DEBUG, __file__, 1, msg, args, exc_info)


def formatted(item: logging.LogRecord) -> str:
    """Everything a handler could show: the formatted line (exception text included), the
    message, the arguments and the exception and stack."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    parts = [formatter.format(item), str(item.msg), repr(item.args)]
    if item.exc_info:
        parts.append(formatter.formatException(item.exc_info))
    parts += [item.exc_text or "", item.stack_info or ""]
    return "\n".join(parts)


def test_a_scrubbed_record_keeps_no_argument_or_exception_that_holds_a_secret() -> None:
    try:
        raise RuntimeError(f"connect failed with Authorization: Bearer {JWT}")
    except RuntimeError as error:
        item = record("> %s: %s", "api-key", API_KEY, exc=error)

    scrub(item)

    shown = formatted(item)
    assert API_KEY not in shown
    assert JWT not in shown
    assert "api-key: [redacted]" in shown
    assert "RuntimeError" in shown, "the traceback is kept, redacted"
    assert item.args is None
    assert item.exc_info is None


def test_websocket_frame_payloads_are_dropped() -> None:
    frame = 'TEXT \'{"type":"conversation.item.create","text":"my private words"}\' [90 bytes]'
    item = record("> %s", frame)

    scrub(item)

    assert item.getMessage() == "> TEXT [payload not logged]"
    assert "private" not in formatted(item)


def test_an_unformattable_record_is_still_scrubbed_and_never_raises() -> None:
    item = record(f"api-key={API_KEY} %d", "not a number")

    scrub(item)

    assert API_KEY not in formatted(item)
    assert "could not be formatted" in item.getMessage()


@pytest.fixture
def installed() -> Iterator[None]:
    """podcast.logs installed, with the logging state restored afterwards."""
    factory = logging.getLogRecordFactory()
    levels = {name: logging.getLogger(name).level for name in logs.QUIET_LOGGERS}
    last_resort = logging.lastResort
    logs.install()
    yield
    logging.setLogRecordFactory(factory)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    logging.lastResort = last_resort


def test_install_quiets_the_chatty_libraries_and_keeps_a_stricter_level(installed: None) -> None:
    for name in logs.QUIET_LOGGERS:
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING, name
    logging.getLogger("azure.identity").setLevel(logging.ERROR)
    logs.install()
    assert logging.getLogger("azure.identity").level == logging.ERROR


def test_install_is_idempotent(installed: None) -> None:
    factory = logging.getLogRecordFactory()
    logs.install()
    logs.install()
    assert logging.getLogRecordFactory() is factory


def test_records_of_child_loggers_reach_every_handler_redacted_even_at_debug(installed: None) -> None:
    """Even a library logger someone turned to DEBUG again, and a handler added after install
    (no filter of its own), never shows the key: a filter on a parent logger could not do this."""
    child = logging.getLogger("websockets.client.some.child")
    child.setLevel(logging.DEBUG)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    child.addHandler(handler)
    try:
        child.debug("> %s: %s", "Authorization", f"Bearer {JWT}")
        child.debug("> api-key: %s", API_KEY)
    finally:
        child.removeHandler(handler)
        child.setLevel(logging.NOTSET)
    output = stream.getvalue()
    assert JWT not in output
    assert API_KEY not in output
    assert output.count(REDACTED) == 2


def test_the_last_resort_handler_shows_only_redacted_records(installed: None) -> None:
    stream = io.StringIO()
    logging.lastResort = logging.StreamHandler(stream)
    orphan = logging.getLogger("podcast-test-orphan")
    orphan.propagate = False  # no handler anywhere: logging falls back to lastResort
    orphan.warning("connection string AccountKey=%s;", ACCOUNT_KEY)
    assert "AccountKey=[redacted]" in stream.getvalue()
    assert ACCOUNT_KEY not in stream.getvalue()


def test_the_root_handlers_filter_catches_records_made_without_the_factory(installed: None) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logs.install()
        assert any(isinstance(f, RedactingFilter) for f in handler.filters)
        made = logging.makeLogRecord({"name": "remote", "msg": "sig=%s", "args": (SIG,), "levelno": 30})
        handler.handle(made)
    finally:
        root.removeHandler(handler)
    assert SIG not in stream.getvalue()
