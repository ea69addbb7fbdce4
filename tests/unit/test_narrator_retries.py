"""Narrator.narrate's retry policy, on scripted attempts (no server): what is retried, how
long each wait is, what is billed and reported."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from podcast.engine.realtime import Narrator, RetryPolicy
from podcast.engine.responses import AudioDelta, ResponseDone, StreamEvent, Timings
from podcast.errors import (
    AuthenticationError,
    ConnectionLostError,
    PodcastError,
    RateLimitedError,
    ServiceUnavailableError,
)
from podcast.settings import RealtimeSettings
from podcast.wire import Usage

PCM = b"\x01\x00" * 100


def billed(error: PodcastError, tokens: int) -> PodcastError:
    error.billed_usage = Usage(input_tokens=tokens)
    return error


class Scripted:
    """A narrator whose attempts fail with the scripted errors, then succeed."""

    def __init__(self, outcomes: list[PodcastError | Exception | None], **policy: Any) -> None:
        self.outcomes = list(outcomes)
        self.sleeps: list[float] = []
        self.jitters = 0
        self.retried: list[PodcastError] = []
        self.time_limits: list[float | None] = []

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        def jitter() -> float:
            self.jitters += 1
            return 0.5

        settings = RealtimeSettings(endpoint="ws://127.0.0.1:9/openai/v1", api_key="k", max_retries=3)
        self.narrator = Narrator(settings, retry=RetryPolicy(**policy), sleep=sleep, jitter=jitter)
        self.narrator.stream = self.stream  # type: ignore[method-assign]

    async def stream(
        self, text: str, *, time_limit: float | None = None, **_: Any
    ) -> AsyncGenerator[StreamEvent]:
        self.time_limits.append(time_limit)
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome
        yield AudioDelta(PCM)
        yield ResponseDone(
            transcript="ok",
            status="completed",
            usage=Usage(input_tokens=1, output_tokens=2),
            timings=Timings(first_audio_seconds=0.1, total_seconds=0.2),
            audio_bytes=len(PCM),
            voice="marin",
            response_id="r",
            session_id="s",
        )

    async def narrate(self, **kwargs: Any) -> Any:
        return await self.narrator.narrate("Hello.", on_retry=self.retried.append, **kwargs)


async def test_transient_errors_are_retried_with_jittered_exponential_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors = [
        billed(ConnectionLostError("lost"), 5),
        ServiceUnavailableError("down"),
        RateLimitedError("slow"),
    ]
    scripted = Scripted([*errors, None], base_delay=1.0, max_delay=3.0)

    with caplog.at_level(logging.WARNING, logger="podcast.engine.realtime"):
        narration = await scripted.narrate()

    assert narration.audio == PCM
    assert narration.attempts == 4
    assert narration.usage == Usage(input_tokens=1, output_tokens=2)
    assert narration.billed_usage == Usage(input_tokens=6, output_tokens=2)
    # min(max_delay, base * 2**n) * (0.5 + jitter / 2), jitter 0.5
    assert scripted.sleeps == [0.75, 1.5, 2.25]
    assert scripted.jitters == 3
    assert scripted.retried == errors
    assert [r.getMessage() for r in caplog.records] == [
        f"realtime attempt 1 failed ({errors[0].code}); retrying in 0.75s",
        f"realtime attempt 2 failed ({errors[1].code}); retrying in 1.50s",
        f"realtime attempt 3 failed ({errors[2].code}); retrying in 2.25s",
    ]


async def test_at_most_max_retries_then_the_last_error_with_every_attempts_billing() -> None:
    errors = [billed(ConnectionLostError(f"lost {i}"), i + 1) for i in range(4)]
    scripted = Scripted([*errors, None], max_retries=2)

    with pytest.raises(ConnectionLostError) as caught:
        await scripted.narrate()

    assert caught.value is errors[2]
    assert caught.value.billed_usage == Usage(input_tokens=1 + 2 + 3)
    assert len(scripted.sleeps) == 2
    assert scripted.jitters == 2, "no jitter drawn for an error that is not retried"
    assert scripted.retried == errors[:2]


async def test_a_permanent_error_is_raised_at_once() -> None:
    error = billed(AuthenticationError("no"), 4)
    scripted = Scripted([error, None])

    with pytest.raises(AuthenticationError) as caught:
        await scripted.narrate()

    assert caught.value is error
    assert caught.value.billed_usage == Usage(input_tokens=4)
    assert (scripted.sleeps, scripted.jitters, scripted.retried) == ([], 0, [])


async def test_an_unexpected_exception_is_not_retried() -> None:
    scripted = Scripted([RuntimeError("bug"), None])

    with pytest.raises(RuntimeError, match="bug"):
        await scripted.narrate()
    assert scripted.sleeps == []


async def test_the_servers_retry_after_is_honoured_up_to_max_retry_after() -> None:
    scripted = Scripted([RateLimitedError("slow", retry_after=9), None], max_retry_after=10)
    await scripted.narrate()
    assert scripted.sleeps == [9]

    too_long = RateLimitedError("slow", retry_after=11)
    scripted = Scripted([too_long, None], max_retry_after=10)
    with pytest.raises(RateLimitedError) as caught:
        await scripted.narrate()
    assert caught.value is too_long
    assert (scripted.sleeps, scripted.jitters, scripted.retried) == ([], 0, [])


async def test_no_retry_starts_that_could_not_finish_before_the_deadline() -> None:
    error = ServiceUnavailableError("down", retry_after=5)
    scripted = Scripted([error, None])

    with pytest.raises(ServiceUnavailableError) as caught:
        await scripted.narrate(budget_seconds=5.5)

    assert caught.value is error
    assert scripted.sleeps == []
    assert scripted.jitters == 1, "the wait is drawn, then found too long for the budget"
    assert scripted.time_limits[0] is not None
    assert scripted.time_limits[0] <= 5.5

    scripted = Scripted([ServiceUnavailableError("down", retry_after=1), None])
    await scripted.narrate(budget_seconds=60)
    assert scripted.sleeps == [1]


@pytest.mark.parametrize(("wait", "retried"), [(86.4, True), (90.0, True), (90.001, False)])
async def test_an_in_session_wait_of_up_to_90_seconds_is_waited_for_when_the_budget_allows(
    wait: float, retried: bool
) -> None:
    # "Please try again in 1m26.4s": a long job keeps its finished segments instead of failing.
    error = RateLimitedError("rate limited inside the session", retry_after=wait)
    scripted = Scripted([error, None])
    if retried:
        await scripted.narrate(budget_seconds=540)
        assert scripted.sleeps == [wait]
        assert scripted.retried == [error]
    else:
        with pytest.raises(RateLimitedError):
            await scripted.narrate(budget_seconds=540)
        assert scripted.sleeps == []
    short_budget = Scripted([RateLimitedError("again", retry_after=wait), None])
    with pytest.raises(RateLimitedError):
        await short_budget.narrate(budget_seconds=wait + 0.5)
