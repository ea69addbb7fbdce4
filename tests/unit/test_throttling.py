"""Rate limiting and quota reported inside an open Realtime session: the wait read from the
service's message, and the typed errors both report forms (``error`` event, failed
``response.done``) become."""

from __future__ import annotations

import pytest
from openai.types.realtime import RealtimeError, RealtimeResponse, RealtimeResponseStatus
from openai.types.realtime.realtime_response_status import Error as ResponseStatusError

from podcast.engine.responses import (
    DEFAULT_RATE_LIMIT_RETRY_SECONDS,
    MAX_RATE_LIMIT_RETRY_SECONDS,
    ResponseState,
    retry_after_from_message,
    server_error,
    throttling_error,
)
from podcast.errors import (
    QuotaExceededError,
    RateLimitedError,
    RealtimeServerError,
    ResponseFailedError,
)
from podcast.wire import Usage

AZURE = (
    "Rate limit reached for gpt-realtime-mini in organization org-x on tokens per min (TPM): "
    "Limit 40000, Used 39512, Requested 1830. Please try again in {}. Visit "
    "https://platform.openai.com/account/rate-limits to learn more."
)


@pytest.mark.parametrize(
    ("wait", "seconds"),
    [
        ("1m26.4s", 86.4),
        ("20s", 20.0),
        ("850ms", 0.85),
        ("2.5 seconds", 2.5),
        ("1 second", 1.0),
        ("50.597142857s", 50.597142857),
        ("2m", 120.0),
        ("2 minutes", 120.0),
        ("1h2m3s", 3723.0),
        ("0s", 0.0),
        ("1ms", 0.001),
        ("999ms", 0.999),
        ("1000ms", 1.0),
        ("59.999s", 59.999),
        ("1m0s", 60.0),
        ("1m0.001s", 60.001),
    ],
)
def test_every_form_of_the_wait_is_read(wait: str, seconds: float) -> None:
    assert retry_after_from_message(AZURE.format(wait)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "message",
    [
        "Please retry after 2.5 seconds.",
        "Try again in 2.5s",
        "please TRY AGAIN IN 2.5 SECONDS",
    ],
)
def test_the_phrase_before_the_wait_may_vary(message: str) -> None:
    assert retry_after_from_message(message) == pytest.approx(2.5)


@pytest.mark.parametrize(
    "message",
    [
        None,
        "",
        "Rate limit reached. Please try again later.",
        "Please try again in a moment.",
        "Please try again in -5s.",
        "Please try again in 5 parsecs.",
        "Please try again in s.",
        "Limit 40000, Used 39512, Requested 1830.",
    ],
)
def test_a_message_without_a_readable_wait_gets_the_default(message: str | None) -> None:
    assert retry_after_from_message(message) == DEFAULT_RATE_LIMIT_RETRY_SECONDS


def test_an_absurd_wait_is_capped() -> None:
    assert retry_after_from_message("Please try again in 99999h.") == MAX_RATE_LIMIT_RETRY_SECONDS
    assert retry_after_from_message("Please try again in 24h.") == MAX_RATE_LIMIT_RETRY_SECONDS
    assert retry_after_from_message("Please try again in 23h59m59s.") == 86_399.0


@pytest.mark.parametrize(
    ("error_type", "code", "message"),
    [
        ("tokens", "rate_limit_exceeded", AZURE.format("20s")),
        ("rate_limit_exceeded", None, AZURE.format("20s")),
        ("server_error", None, AZURE.format("20s")),
        (None, "rate_limit_exceeded", "Please try again in 20s."),
    ],
)
def test_rate_limiting_is_recognised_by_type_code_or_message(
    error_type: str | None, code: str | None, message: str
) -> None:
    error = throttling_error(error_type, code, message)
    assert isinstance(error, RateLimitedError)
    assert error.retry_after == pytest.approx(20.0)
    assert (error.transient, error.http_status, error.code) == (True, 429, "rate_limited")
    assert "org-x" not in error.message


@pytest.mark.parametrize(
    ("error_type", "code", "message"),
    [
        ("insufficient_quota", "insufficient_quota", "You exceeded your current quota."),
        ("invalid_request_error", "insufficient_quota", None),
        ("tokens", None, "You exceeded your current quota, please check your plan and billing details."),
        ("insufficient_quota", "rate_limit_exceeded", AZURE.format("20s")),
    ],
)
def test_quota_is_recognised_first_and_is_permanent(
    error_type: str | None, code: str | None, message: str | None
) -> None:
    error = throttling_error(error_type, code, message)
    assert isinstance(error, QuotaExceededError)
    assert (error.transient, error.retry_after, error.http_status) == (False, None, 402)
    assert error.code == "insufficient_quota"
    assert "quota" in error.message
    assert "billing" in error.message


@pytest.mark.parametrize(
    ("error_type", "code", "message"),
    [("server_error", "server_error", "The server had an error."), (None, None, None), ("tokens", "x", "")],
)
def test_other_errors_are_not_throttling(
    error_type: str | None, code: str | None, message: str | None
) -> None:
    assert throttling_error(error_type, code, message) is None


def test_an_error_event_of_rate_limiting_or_quota_is_typed_as_such() -> None:
    limited = server_error(
        RealtimeError(type="tokens", code="rate_limit_exceeded", message=AZURE.format("850ms"))
    )
    assert isinstance(limited, RateLimitedError)
    assert limited.retry_after == pytest.approx(0.85)
    quota = server_error(RealtimeError(type="insufficient_quota", code="insufficient_quota", message="No."))
    assert isinstance(quota, QuotaExceededError)
    other = server_error(RealtimeError(type="invalid_request_error", code="invalid_value", message="Bad."))
    assert isinstance(other, RealtimeServerError)


def _failed(error: ResponseStatusError) -> ResponseState:
    state = ResponseState(voice="marin")
    state.done = RealtimeResponse.model_construct(
        id="r",
        status="failed",
        status_details=RealtimeResponseStatus(type="failed", error=error),
        usage=None,
    )
    return state


def test_a_failed_response_of_rate_limiting_is_retryable_and_keeps_what_it_billed() -> None:
    state = _failed(
        ResponseStatusError(type="tokens", code="rate_limit_exceeded", message=AZURE.format("1m26.4s"))
    )
    with pytest.raises(RateLimitedError) as caught:
        state.finish(1.0)
    assert caught.value.retry_after == pytest.approx(86.4)
    assert caught.value.billed_usage == Usage()


def test_a_failed_response_of_another_kind_stays_a_response_failure() -> None:
    with pytest.raises(ResponseFailedError):
        _failed(ResponseStatusError(type="server_error", code="server_error", message="Oops")).finish(1.0)
    with pytest.raises(QuotaExceededError):
        _failed(ResponseStatusError(type="insufficient_quota", code="insufficient_quota")).finish(1.0)
