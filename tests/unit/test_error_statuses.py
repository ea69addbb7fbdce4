"""Which failures are worth retrying, and the status that says so.

Power Automate and Logic Apps retry 408, 429 and 5xx by default. The rule (podcast.errors'
docstring): transient → 429/503/504 with Retry-After; a request that can never succeed as
sent → 4xx without Retry-After (422 when Azure OpenAI already spent tokens on it); the
remaining 5xx are service-side problems that no automatic retry pays for.
"""

from __future__ import annotations

import inspect
import re

import pytest

from podcast import errors
from podcast.errors import (
    FidelityError,
    PodcastError,
    RealtimeServerError,
    ResponseFailedError,
    ResponseIncompleteError,
)
from podcast.http.responses import error_response

TRANSIENT_STATUSES = {429, 503, 504}
RETRIED_BY_DEFAULT = {408, 429} | set(range(500, 600))


def every_error_class() -> list[type[PodcastError]]:
    found: list[type[PodcastError]] = [PodcastError]
    for cls in found:
        found.extend(sub for sub in cls.__subclasses__() if sub not in found)
    return found


def instances() -> list[PodcastError]:
    """One instance of every error class (more for those whose details decide the status)."""
    made: list[PodcastError] = [
        errors.ConfigurationError("SOME_SETTING", "is missing"),
        errors.UpstreamConfigurationError(
            "AZURE_OPENAI_AUDIO_DEPLOYMENT",
            "names a deployment that is not a Realtime model",
            upstream_code="OperationNotSupported",
            upstream_message="not supported",
        ),
        errors.QuotaExceededError("insufficient_quota"),
        errors.RequestValidationError("text is bad", field="text"),
        errors.TextTooLongError(10, 5),
        errors.RequestTooLargeError(100, 50, 10),
        errors.DocumentError("bad document", field="document"),
        errors.IdempotencyKeyReusedError(),
        errors.JobNotFoundError(),
        errors.JobStalledError(),
        RealtimeServerError("boom", server_code="server_error", error_type="server_error"),
        RealtimeServerError("bad", server_code="invalid_value", error_type="invalid_request_error"),
        ResponseIncompleteError("content_filter"),
        ResponseIncompleteError("max_output_tokens"),
        ResponseIncompleteError("turn_detected"),
        ResponseIncompleteError(None),
        ResponseFailedError("failed", error_type="server_error"),
        ResponseFailedError("failed", error_type="invalid_request_error"),
        errors.ResponseCancelledError("client_cancelled"),
        errors.ScriptInvalidError("script", "the reply is not JSON", attempts=3),
    ]
    covered = {type(error) for error in made}
    for cls in every_error_class():
        if cls not in covered:
            made.append(cls("a message"))  # every other class takes just a message
    return made


INSTANCES = instances()


@pytest.mark.parametrize("error", INSTANCES, ids=lambda e: f"{type(e).__name__}-{e.code}-{e.http_status}")
def test_the_status_says_whether_a_retry_can_help(error: PodcastError) -> None:
    response = error_response(error)
    has_retry_after = "Retry-After" in response.headers

    if error.transient:
        assert error.http_status in TRANSIENT_STATUSES
        assert has_retry_after
    else:
        assert not has_retry_after, "a permanent failure never invites a retry"
    if 400 <= error.http_status < 500 and error.http_status != 429:
        assert not error.transient, "a 4xx other than 429 says: do not send it again"
    assert response.status_code == error.http_status


@pytest.mark.parametrize(
    "error",
    [
        ResponseIncompleteError("content_filter"),
        ResponseIncompleteError("max_output_tokens"),
        FidelityError("a segment read with word similarity 0.40 after 3 attempts"),
    ],
    ids=lambda e: e.code,
)
def test_token_costing_permanent_failures_are_422_which_no_default_policy_retries(
    error: PodcastError,
) -> None:
    assert (error.http_status, error.transient) == (422, False)
    assert error.http_status not in RETRIED_BY_DEFAULT
    assert error.body()["error"]["code"] in ("content_filtered", "narration_incomplete", "fidelity_too_low")


_ROW = re.compile(r"^[\s│├└─]*([A-Z]\w+)\s+(\d{3}(?: / \d{3})?)\s+(yes / no|yes|no)?", re.MULTILINE)


def documented_rows() -> dict[str, tuple[str, str | None]]:
    doc = inspect.getdoc(errors) or ""
    tree = doc[doc.index("PodcastError ") :]
    return {name: (status, transient) for name, status, transient in _ROW.findall(tree)}


def test_the_error_tree_in_the_module_docstring_lists_every_class_with_its_status() -> None:
    rows = documented_rows()

    assert {cls.__name__ for cls in every_error_class()} == set(rows)
    for name, (status, transient) in rows.items():
        cls = getattr(errors, name)
        if " / " in status:
            statuses = {int(part) for part in status.split(" / ")}
            seen = {error.http_status for error in INSTANCES if type(error) is cls}
            assert seen == statuses, name
            continue
        assert cls.http_status == int(status), name
        if transient in ("yes", "no"):
            assert cls.transient == (transient == "yes"), name
