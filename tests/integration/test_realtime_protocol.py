"""The narrator follows the GA Realtime protocol, not the emulator's habits.

These tests run the real ``openai`` SDK client against :mod:`testkit.scripted_server`, an
independent server that shares no code with the emulator.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Callable, Mapping

import pytest

from podcast.engine.realtime import Narrator, RetryPolicy
from podcast.engine.responses import AudioDelta, ResponseDone, TranscriptDelta
from podcast.errors import (
    AuthenticationError,
    ConnectionLostError,
    DeploymentNotFoundError,
    EmptyAudioError,
    NarrationError,
    NarrationTimeoutError,
    PodcastError,
    QuotaExceededError,
    RateLimitedError,
    RealtimeServerError,
    RequestValidationError,
    ResponseCancelledError,
    ResponseFailedError,
    ResponseIncompleteError,
    ServiceUnavailableError,
    UpstreamConfigurationError,
)
from podcast.settings import DEPLOYMENT_SETTING, RealtimeSettings, realtime_base_url
from testkit.scripted_server import ScriptedServer, audio_event, response_done, tone, transcript_event


def narrator_for(
    server_url: str, *, retries: int = 0, timeout: float = 10.0, sleeps: list[float] | None = None
) -> Narrator:
    async def record_sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    settings = RealtimeSettings(
        endpoint=realtime_base_url(server_url),
        api_key="scripted-key",
        response_timeout_seconds=timeout,
        max_retries=retries,
    )
    return Narrator(settings, sleep=record_sleep, jitter=lambda: 0.0)


def happy_script(server: ScriptedServer) -> list[object]:
    """Other delta sizes than the emulator's, transcript after audio, unknown extra events."""
    return [
        {
            "type": "response.created",
            "event_id": server.event_id(),
            "response": {"id": "resp_1", "status": "in_progress"},
        },
        {"type": "output_audio_buffer.started", "event_id": server.event_id(), "response_id": "resp_1"},
        {"type": "some.future_event", "event_id": None, "payload": {"x": 1}},
        audio_event(server, tone(0.02)),
        audio_event(server, tone(1.3, 330)),
        audio_event(server, b""),
        audio_event(server, tone(0.01, 440)),
        transcript_event(server, "Hello "),
        transcript_event(server, "there."),
        {
            "type": "response.output_audio_transcript.done",
            "event_id": server.event_id(),
            "response_id": "resp_1",
            "item_id": "item_a",
            "output_index": 0,
            "content_index": 0,
            "transcript": "Hello there.",
        },
        {"type": "rate_limits.updated", "event_id": server.event_id(), "rate_limits": []},
        response_done(server),
    ]


async def test_narration_collects_every_audio_delta_and_the_final_transcript() -> None:
    async with ScriptedServer(happy_script) as server, narrator_for(server.url) as narrator:
        narration = await narrator.narrate("Hello there.", voice="cedar")

    assert narration.audio == tone(0.02) + tone(1.3, 330) + tone(0.01, 440)
    assert narration.duration_seconds == pytest.approx(1.33)
    assert narration.transcript == "Hello there."
    assert narration.status == "completed"
    assert narration.usage.output_audio_tokens == 30
    assert narration.usage.total_tokens == 60
    assert narration.session_id == "sess_scripted"
    assert narration.response_id == "resp_1"
    assert narration.attempts == 1
    assert narration.timings.first_audio_seconds is not None
    assert narration.timings.total_seconds >= narration.timings.first_audio_seconds


async def test_narrator_configures_a_ga_session_before_asking_for_a_response() -> None:
    async with ScriptedServer(happy_script) as server, narrator_for(server.url) as narrator:
        await narrator.narrate("Read me.", voice="cedar", instructions="Read it.", max_output_tokens=1234)

    kinds = [event["type"] for event in server.received]
    assert kinds == ["session.update", "conversation.item.create", "response.create"]
    session = server.received[0]["session"]
    assert session["type"] == "realtime"
    assert session["output_modalities"] == ["audio"]
    assert session["instructions"] == "Read it."
    assert session["max_output_tokens"] == 1234
    assert session["audio"]["output"]["voice"] == "cedar"
    assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    item = server.received[1]["item"]
    assert item["role"] == "user"
    assert item["content"] == [{"type": "input_text", "text": "Read me."}]
    headers = {k.lower(): v for k, v in server.handshake_headers_seen[0].items()}
    assert headers["authorization"] == "Bearer scripted-key"


async def test_stream_yields_audio_and_transcript_as_they_arrive_then_done() -> None:
    async with ScriptedServer(happy_script) as server, narrator_for(server.url) as narrator:
        events = [event async for event in narrator.stream("Hello there.")]

    assert [type(e) for e in events[:3]] == [AudioDelta, AudioDelta, AudioDelta]
    assert [e.text for e in events if isinstance(e, TranscriptDelta)] == ["Hello ", "there."]
    assert isinstance(events[-1], ResponseDone)
    assert events[-1].audio_bytes == sum(len(e.pcm) for e in events if isinstance(e, AudioDelta))


async def test_events_that_leave_out_fields_do_not_crash_the_narrator() -> None:
    """The SDK builds events without validation: a left-out field reads as ``None``."""

    def script(server: ScriptedServer) -> list[object]:
        return [
            {"type": "response.created"},
            {"type": "response.created", "event_id": None, "response": None},
            {"type": "response.output_audio.delta", "event_id": None},
            {"type": "response.output_audio.delta", "delta": base64.b64encode(tone(0.1)).decode()},
            {"type": "response.output_audio_transcript.delta", "delta": None},
            {"type": "response.output_audio_transcript.delta", "delta": "Hi."},
            {"type": "response.output_audio_transcript.done"},
            {"type": "session.created", "session": None},
            {"type": "response.done", "event_id": None, "response": None},
            {"type": "response.done", "response": {"id": "resp_1", "usage": None, "status_details": None}},
        ]

    async with ScriptedServer(script) as server, narrator_for(server.url) as narrator:
        narration = await narrator.narrate("Hi.")

    assert narration.audio == tone(0.1)
    assert narration.transcript == "Hi."
    assert narration.status == "completed"
    assert narration.usage.total_tokens == 0
    assert narration.session_id is None, "the last session.created had no session"
    assert narration.response_id is None, "no response.created named the response"


async def test_a_failed_response_or_an_error_without_details_is_still_typed() -> None:
    def failed(server: ScriptedServer) -> list[object]:
        failure = {"status": "failed", "status_details": {"error": None}}
        return [{"type": "response.done", "response": failure}]

    def error(server: ScriptedServer) -> list[object]:
        return [{"type": "error", "event_id": None}]

    async with ScriptedServer(failed) as server, narrator_for(server.url) as narrator:
        with pytest.raises(ResponseFailedError, match="no details"):
            await narrator.narrate("Hi.")
    async with ScriptedServer(error) as server, narrator_for(server.url) as narrator:
        with pytest.raises(RealtimeServerError, match="no message"):
            await narrator.narrate("Hi.")


async def test_events_of_another_response_are_ignored() -> None:
    def script(server: ScriptedServer) -> list[object]:
        return [
            {"type": "response.created", "event_id": server.event_id(), "response": {"id": "resp_1"}},
            audio_event(server, tone(0.5, 500), response_id="resp_other"),
            transcript_event(server, "noise", response_id="resp_other"),
            response_done(server, response_id="resp_other"),
            audio_event(server, tone(0.2)),
            transcript_event(server, "mine"),
            response_done(server),
        ]

    async with ScriptedServer(script) as server, narrator_for(server.url) as narrator:
        narration = await narrator.narrate("x")

    assert narration.audio == tone(0.2)
    assert narration.transcript == "mine"


@pytest.mark.parametrize(
    ("status", "details", "error_type", "attribute", "expected"),
    [
        (
            "incomplete",
            {"type": "incomplete", "reason": "max_output_tokens"},
            ResponseIncompleteError,
            "reason",
            "max_output_tokens",
        ),
        (
            "incomplete",
            {"type": "incomplete", "reason": "content_filter"},
            ResponseIncompleteError,
            "code",
            "content_filtered",
        ),
        (
            "cancelled",
            {"type": "cancelled", "reason": "client_cancelled"},
            ResponseCancelledError,
            "reason",
            "client_cancelled",
        ),
        (
            "failed",
            {"type": "failed", "error": {"type": "invalid_request_error", "code": "bad", "message": "nope"}},
            ResponseFailedError,
            "server_code",
            "bad",
        ),
    ],
)
async def test_a_response_that_does_not_complete_is_a_typed_error_with_its_reason(
    status: str, details: dict[str, object], error_type: type[Exception], attribute: str, expected: str
) -> None:
    def script(server: ScriptedServer) -> list[object]:
        return [audio_event(server, tone(0.3)), response_done(server, status=status, status_details=details)]

    async with ScriptedServer(script) as server, narrator_for(server.url, retries=2) as narrator:
        with pytest.raises(error_type) as caught:
            await narrator.narrate("x")

    assert getattr(caught.value, attribute) == expected
    assert server.connections == 1, "a permanent failure is not retried"


async def test_an_error_event_becomes_a_typed_error_with_code_and_message() -> None:
    def script(server: ScriptedServer) -> list[object]:
        return [
            audio_event(server, tone(0.1)),
            {
                "type": "error",
                "event_id": None,
                "error": {
                    "type": "invalid_request_error",
                    "code": "invalid_value",
                    "message": "Invalid voice",
                    "param": "voice",
                },
            },
        ]

    async with ScriptedServer(script) as server, narrator_for(server.url, retries=3) as narrator:
        with pytest.raises(RealtimeServerError) as caught:
            await narrator.narrate("x")

    assert caught.value.server_code == "invalid_value"
    assert "Invalid voice" in caught.value.message
    assert not caught.value.transient
    assert server.connections == 1


async def test_a_connection_closed_before_response_done_is_an_error_not_a_short_result() -> None:
    def script(server: ScriptedServer) -> list[object]:
        return [audio_event(server, tone(0.5)), transcript_event(server, "Half"), "close"]

    async with ScriptedServer(script) as server, narrator_for(server.url) as narrator:
        with pytest.raises(ConnectionLostError, match="closed before the response finished"):
            await narrator.narrate("x")


async def test_a_completed_response_without_audio_is_an_error() -> None:
    def script(server: ScriptedServer) -> list[object]:
        return [response_done(server)]

    async with ScriptedServer(script) as server, narrator_for(server.url) as narrator:
        with pytest.raises(EmptyAudioError):
            await narrator.narrate("x")


async def test_a_silent_server_times_out() -> None:
    def script(server: ScriptedServer) -> list[object]:
        return [audio_event(server, tone(0.1)), "hang"]

    async with ScriptedServer(script) as server, narrator_for(server.url, timeout=1.0) as narrator:
        with pytest.raises(NarrationTimeoutError):
            await narrator.narrate("x")


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(401, AuthenticationError), (403, AuthenticationError), (404, DeploymentNotFoundError)],
)
async def test_permanent_handshake_rejections_are_typed_and_not_retried(
    status: int, error_type: type[Exception]
) -> None:
    server = ScriptedServer(happy_script, handshake_statuses=[status])
    async with server, narrator_for(server.url, retries=3) as narrator:
        with pytest.raises(error_type):
            await narrator.narrate("x")
    assert server.connections == 1


async def test_rate_limiting_keeps_retry_after_and_is_retried_then_succeeds() -> None:
    sleeps: list[float] = []
    async with (
        ScriptedServer(
            happy_script, handshake_statuses=[429, 503], handshake_headers={"Retry-After": "2"}
        ) as server,
        narrator_for(server.url, retries=3, sleeps=sleeps) as narrator,
    ):
        narration = await narrator.narrate("x")

    assert narration.attempts == 3
    assert server.connections == 3
    assert sleeps[0] >= 2.0, "the server's retry-after is honoured"
    assert len(sleeps) == 2


async def test_rate_limiting_that_outlasts_the_retries_reports_retry_after() -> None:
    async with (
        ScriptedServer(
            happy_script, handshake_statuses=[429, 429], handshake_headers={"retry-after-ms": "1500"}
        ) as server,
        narrator_for(server.url, retries=1) as narrator,
    ):
        with pytest.raises(RateLimitedError) as caught:
            await narrator.narrate("x")
    assert caught.value.retry_after == pytest.approx(1.5)
    assert caught.value.http_status == 429
    assert server.connections == 2


async def test_backoff_grows_exponentially_between_retries() -> None:
    sleeps: list[float] = []
    server = ScriptedServer(happy_script, handshake_statuses=[500, 500, 500])
    async with server, narrator_for(server.url, retries=3, sleeps=sleeps) as narrator:
        await narrator.narrate("x")
    assert sleeps == [0.25, 0.5, 1.0]  # base 0.5 s doubled, times the (zero) jitter factor 0.5


def test_retry_delay_is_jittered_within_half_to_full_backoff() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    assert policy.delay(0, None, 0.0) == 0.5
    assert policy.delay(0, None, 0.999) == pytest.approx(0.9995)
    assert policy.delay(10, None, 1.0) == 8.0
    assert policy.delay(0, 5.0, 0.0) == 5.0


async def test_an_unreachable_endpoint_is_service_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with narrator_for(f"http://127.0.0.1:{port}") as narrator:
        with pytest.raises(ServiceUnavailableError, match="could not reach"):
            await narrator.narrate("x")


async def test_invalid_arguments_are_rejected_before_connecting() -> None:
    async with ScriptedServer(happy_script) as server, narrator_for(server.url) as narrator:
        with pytest.raises(RequestValidationError, match="fable"):
            await narrator.narrate("x", voice="fable")
        with pytest.raises(RequestValidationError, match="empty"):
            await narrator.narrate("   ")
        with pytest.raises(RequestValidationError, match="max_output_tokens"):
            await narrator.narrate("x", max_output_tokens=5000)
    assert server.connections == 0


# --- Throttling inside a session, quota, and handshake bodies ---------------------------------

RATE_LIMIT_MESSAGE = (
    "Rate limit reached for gpt-realtime-mini in organization org-x on tokens per min (TPM): "
    "Limit 40000, Used 39512, Requested 1830. Please try again in {}."
)


def throttled_then_happy(*failures: Mapping[str, object]) -> Callable[[ScriptedServer], list[object]]:
    """A script whose first responses fail with ``failures`` (a ``response.done`` status
    details or an ``error`` event's ``error``), then succeeds."""
    remaining = list(failures)

    def script(server: ScriptedServer) -> list[object]:
        if not remaining:
            return happy_script(server)
        failure = remaining.pop(0)
        if failure.get("kind") == "error_event":
            body = {k: v for k, v in failure.items() if k != "kind"}
            return [
                audio_event(server, tone(0.1)),
                {"type": "error", "event_id": server.event_id(), "error": body},
            ]
        return [response_done(server, status="failed", status_details={"type": "failed", "error": failure})]

    return script


async def test_a_rate_limited_response_is_retried_after_the_wait_in_its_message() -> None:
    sleeps: list[float] = []
    failures = (
        {"type": "tokens", "code": "rate_limit_exceeded", "message": RATE_LIMIT_MESSAGE.format("20s")},
        {
            "kind": "error_event",
            "type": "tokens",
            "code": "rate_limit_exceeded",
            "message": RATE_LIMIT_MESSAGE.format("850ms"),
        },
    )
    retried: list[PodcastError] = []
    async with (
        ScriptedServer(throttled_then_happy(*failures)) as server,
        narrator_for(server.url, retries=3, sleeps=sleeps) as narrator,
    ):
        narration = await narrator.narrate("x", on_retry=retried.append)

    assert narration.attempts == 3
    assert server.connections == 3
    assert sleeps[0] == pytest.approx(20.0), "the message's 20s is waited for"
    assert sleeps[1] >= 0.85
    assert [type(error) for error in retried] == [RateLimitedError, RateLimitedError]
    assert narration.billed_usage.input_tokens == 40, "the failed response's tokens are billed too"


async def test_a_rate_limit_longer_than_the_budget_goes_to_the_caller_with_its_wait() -> None:
    failure = {
        "type": "tokens",
        "code": "rate_limit_exceeded",
        "message": RATE_LIMIT_MESSAGE.format("1m26.4s"),
    }
    async with (
        ScriptedServer(throttled_then_happy(failure)) as server,
        narrator_for(server.url, retries=3) as narrator,
    ):
        with pytest.raises(RateLimitedError) as caught:
            await narrator.narrate("x", budget_seconds=60)
    assert caught.value.retry_after == pytest.approx(86.4)
    assert caught.value.http_status == 429
    assert server.connections == 1


@pytest.mark.parametrize(
    "failure",
    [
        {
            "type": "insufficient_quota",
            "code": "insufficient_quota",
            "message": "You exceeded your current quota.",
        },
        {
            "kind": "error_event",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
            "message": "No quota.",
        },
    ],
)
async def test_insufficient_quota_fails_at_once_without_retrying(failure: Mapping[str, object]) -> None:
    async with (
        ScriptedServer(throttled_then_happy(failure)) as server,
        narrator_for(server.url, retries=3) as narrator,
    ):
        with pytest.raises(QuotaExceededError) as caught:
            await narrator.narrate("x")
    assert server.connections == 1
    assert (caught.value.http_status, caught.value.code, caught.value.transient) == (
        402,
        "insufficient_quota",
        False,
    )
    assert caught.value.retry_after is None
    assert "quota" in caught.value.message


NOT_REALTIME = {
    "error": {
        "code": "OperationNotSupported",
        "message": "The chatCompletion operation does not work with the specified model, gpt-realtime-mini. "
        "Please choose different model and try again.",
    }
}


async def test_a_handshake_400_with_a_body_is_a_configuration_error_with_the_services_code() -> None:
    server = ScriptedServer(
        happy_script, handshake_statuses=[400], handshake_body=json.dumps(NOT_REALTIME).encode()
    )
    async with server, narrator_for(server.url, retries=3) as narrator:
        with pytest.raises(UpstreamConfigurationError) as caught:
            await narrator.narrate("x")
    error = caught.value
    assert server.connections == 1, "not retried"
    assert (error.http_status, error.transient, error.setting) == (503, False, DEPLOYMENT_SETTING)
    assert error.upstream_code == "OperationNotSupported"
    assert "OperationNotSupported" in error.message
    assert "does not work with the specified model" in error.message
    assert error.to_dict()["upstream_code"] == "OperationNotSupported"
    assert "scripted-key" not in error.message


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'{"error": "flat"}', b'{"other": {}}'])
async def test_a_handshake_400_without_a_usable_body_stays_a_narration_error(body: bytes) -> None:
    server = ScriptedServer(happy_script, handshake_statuses=[400], handshake_body=body)
    async with server, narrator_for(server.url) as narrator:
        with pytest.raises(NarrationError, match="HTTP 400") as caught:
            await narrator.narrate("x")
    assert not isinstance(caught.value, UpstreamConfigurationError)


async def test_a_handshake_body_never_carries_the_key_into_the_error() -> None:
    body = {"error": {"code": "BadRequest", "message": "key scripted-key is not valid " + "x" * 1000}}
    server = ScriptedServer(happy_script, handshake_statuses=[400], handshake_body=json.dumps(body).encode())
    async with server, narrator_for(server.url) as narrator:
        with pytest.raises(UpstreamConfigurationError) as caught:
            await narrator.narrate("x")
    assert "scripted-key" not in caught.value.message
    assert len(caught.value.upstream_message) <= 300


async def test_a_handshake_429_for_quota_is_permanent() -> None:
    body = {"error": {"code": "insufficient_quota", "message": "You exceeded your current quota."}}
    server = ScriptedServer(
        happy_script, handshake_statuses=[429, 429], handshake_body=json.dumps(body).encode()
    )
    async with server, narrator_for(server.url, retries=3) as narrator:
        with pytest.raises(QuotaExceededError):
            await narrator.narrate("x")
    assert server.connections == 1
