"""The production narrator against the local Realtime API emulator: results, faults, retries, auth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions

from emulator import Fault, FaultKind, RealtimeEmulator
from podcast.engine import audio
from podcast.engine.instructions import DEFAULT_READ_INSTRUCTIONS
from podcast.engine.realtime import Narrator
from podcast.engine.responses import AudioDelta
from podcast.errors import (
    AuthenticationError,
    DeploymentNotFoundError,
    NarrationTimeoutError,
    RateLimitedError,
    RealtimeServerError,
    ResponseFailedError,
    ResponseIncompleteError,
    ServiceUnavailableError,
)
from podcast.settings import RealtimeSettings, realtime_base_url
from testkit.credentials import FakeTokenCredential, token_claims

TEXT = "The quick brown fox jumps over the lazy dog. Then it runs into the quiet forest and sleeps."
KEY = "emulator-key"


def settings_for(emulator: RealtimeEmulator, **overrides: object) -> RealtimeSettings:
    values: dict[str, object] = {
        "endpoint": realtime_base_url(emulator.url),
        "api_key": KEY,
        "response_timeout_seconds": 10.0,
        "max_retries": 2,
    }
    values.update(overrides)
    return RealtimeSettings(**values)  # type: ignore[arg-type]


async def no_wait(_: float) -> None:
    return None


@pytest.fixture
async def narrator(emulator: RealtimeEmulator) -> AsyncIterator[Narrator]:
    async with Narrator(settings_for(emulator), sleep=no_wait) as made:
        yield made


async def test_narration_returns_the_audio_and_transcript_the_server_sent(
    narrator: Narrator, emulator: RealtimeEmulator
) -> None:
    narration = await narrator.narrate(TEXT, voice="cedar")

    [session] = emulator.sessions
    [response] = session.responses
    assert narration.transcript == response.transcript == TEXT
    assert len(narration.audio) == response.audio_bytes
    assert narration.duration_seconds == pytest.approx(response.audio_seconds)
    assert narration.duration_seconds > 3, "about 150 words a minute"
    assert narration.voice == response.voice == "cedar"
    assert response.usage is not None
    assert narration.usage.output_audio_tokens == response.usage["output_token_details"]["audio_tokens"]
    assert narration.usage.input_tokens == response.usage["input_tokens"] > 0
    assert narration.response_id == response.id
    assert narration.attempts == 1


async def test_the_session_is_configured_with_the_ga_shape(
    narrator: Narrator, emulator: RealtimeEmulator
) -> None:
    await narrator.narrate(TEXT, voice="sage")

    update = next(e for e in emulator.sessions[0].client_events if e["type"] == "session.update")
    assert update["session"]["type"] == "realtime"
    assert update["session"]["audio"]["output"]["voice"] == "sage"
    assert update["session"]["instructions"] == DEFAULT_READ_INSTRUCTIONS
    errors = [e for e in emulator.sessions[0].server_events if e["type"] == "error"]
    assert errors == [], "the emulator accepted every client event"


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        (Fault(FaultKind.HANDSHAKE_401), AuthenticationError),
        (Fault(FaultKind.HANDSHAKE_403), AuthenticationError),
        (Fault(FaultKind.HANDSHAKE_404), DeploymentNotFoundError),
        (Fault(FaultKind.CONTENT_FILTER), ResponseIncompleteError),
        (Fault(FaultKind.MAX_OUTPUT_TOKENS), ResponseIncompleteError),
        (
            Fault(FaultKind.ERROR_EVENT, error_type="invalid_request_error", code="bad_thing"),
            RealtimeServerError,
        ),
        (Fault(FaultKind.FAILED, error_type="invalid_request_error"), ResponseFailedError),
    ],
)
async def test_permanent_faults_raise_their_typed_error_after_one_attempt(
    narrator: Narrator, emulator: RealtimeEmulator, fault: Fault, error_type: type[Exception]
) -> None:
    emulator.inject(fault)
    with pytest.raises(error_type):
        await narrator.narrate(TEXT)
    assert emulator.handshakes == 1


@pytest.mark.parametrize(
    "fault",
    [
        Fault(FaultKind.HANDSHAKE_429, retry_after=1),
        Fault(FaultKind.HANDSHAKE_500),
        Fault(FaultKind.HANDSHAKE_503),
        Fault(FaultKind.ERROR_EVENT),
        Fault(FaultKind.CLOSE_MID_STREAM),
        Fault(FaultKind.CLOSE_MID_STREAM, close_code=1006),
        Fault(FaultKind.NO_AUDIO),
        Fault(FaultKind.FAILED),
    ],
    ids=lambda f: f"{f.kind.value}-{f.close_code}" if f.kind is FaultKind.CLOSE_MID_STREAM else f.kind.value,
)
async def test_transient_faults_are_retried_and_the_retry_gives_the_whole_audio(
    narrator: Narrator, emulator: RealtimeEmulator, fault: Fault
) -> None:
    emulator.inject(fault)
    narration = await narrator.narrate(TEXT)

    assert narration.attempts == 2
    assert narration.transcript == TEXT
    good = emulator.sessions[-1].responses[-1]
    assert len(narration.audio) == good.audio_bytes, "no audio of the failed attempt is kept"


async def test_a_hanging_response_times_out_and_is_retried(emulator: RealtimeEmulator) -> None:
    emulator.inject(Fault(FaultKind.HANG))
    async with Narrator(settings_for(emulator, response_timeout_seconds=1.0), sleep=no_wait) as narrator:
        narration = await narrator.narrate(TEXT)
    assert narration.attempts == 2


async def test_a_hang_on_every_attempt_ends_in_a_timeout(emulator: RealtimeEmulator) -> None:
    emulator.inject(Fault(FaultKind.HANG, times=None))
    settings = settings_for(emulator, response_timeout_seconds=1.0, max_retries=1)
    async with Narrator(settings, sleep=no_wait) as narrator:
        with pytest.raises(NarrationTimeoutError):
            await narrator.narrate(TEXT)
    assert emulator.handshakes == 2


async def test_audio_that_keeps_coming_past_the_limit_still_times_out() -> None:
    """One deadline bounds the whole attempt, not each message: a response streaming
    steadily (here at 1 s of audio a second, 30 s of it) ends in a timeout at the limit,
    from narrate() and from stream() alike, with each attempt's audio discarded."""
    long_text = " ".join([TEXT] * 12)
    async with RealtimeEmulator(api_key=KEY, engine="synthetic", speed=1.0) as emu:
        settings = settings_for(emu, response_timeout_seconds=1.0, max_retries=0)
        async with Narrator(settings, sleep=no_wait) as narrator:
            started = time.monotonic()
            with pytest.raises(NarrationTimeoutError):
                await narrator.narrate(long_text)
            # A per-message deadline would run the whole 30 s; the slack is for a loaded CI.
            assert time.monotonic() - started < 6.0
            received: list[object] = []

            async def consume() -> None:
                async for event in narrator.stream(long_text, time_limit=1.0):
                    received.append(event)

            with pytest.raises(NarrationTimeoutError):
                await consume()
            assert any(isinstance(e, AudioDelta) for e in received), "audio was arriving at the limit"
            assert time.monotonic() - started < 12.0


async def test_rate_limiting_beyond_the_retries_keeps_the_retry_after(emulator: RealtimeEmulator) -> None:
    emulator.inject(Fault(FaultKind.HANDSHAKE_429, times=None, retry_after=7))
    async with Narrator(settings_for(emulator, max_retries=1), sleep=no_wait) as narrator:
        with pytest.raises(RateLimitedError) as caught:
            await narrator.narrate(TEXT)
    assert caught.value.retry_after == pytest.approx(7)


async def test_a_budget_too_short_for_a_retry_gives_up_at_once(emulator: RealtimeEmulator) -> None:
    emulator.inject(Fault(FaultKind.HANDSHAKE_503, times=None, retry_after=5))
    async with Narrator(settings_for(emulator, max_retries=5), sleep=no_wait) as narrator:
        with pytest.raises(ServiceUnavailableError):
            await narrator.narrate(TEXT, budget_seconds=3)
    assert emulator.handshakes == 1


async def test_the_output_token_cap_ends_incomplete_with_the_reason(narrator: Narrator) -> None:
    with pytest.raises(ResponseIncompleteError) as caught:
        await narrator.narrate(TEXT, max_output_tokens=20)
    assert caught.value.reason == "max_output_tokens"
    assert caught.value.audio_seconds > 0


async def test_a_wrong_key_is_an_authentication_error(emulator: RealtimeEmulator) -> None:
    async with Narrator(settings_for(emulator, api_key="wrong"), sleep=no_wait) as narrator:
        with pytest.raises(AuthenticationError, match="401"):
            await narrator.narrate(TEXT)


async def test_an_unknown_deployment_is_not_found(emulator: RealtimeEmulator) -> None:
    async with Narrator(settings_for(emulator, deployment="gpt-nope"), sleep=no_wait) as narrator:
        with pytest.raises(DeploymentNotFoundError):
            await narrator.narrate(TEXT)


async def test_without_a_key_an_entra_token_for_cognitive_services_is_sent() -> None:
    seen: list[str] = []

    def accept(token: str) -> bool:
        seen.append(token)
        return token_claims(token).get("aud") == "https://cognitiveservices.azure.com"

    async with RealtimeEmulator(api_key=KEY, engine="synthetic", token_validator=accept) as emu:
        credential = FakeTokenCredential()
        settings = RealtimeSettings(endpoint=realtime_base_url(emu.url), api_key=None)
        async with Narrator(settings, credential=credential) as narrator:
            narration = await narrator.narrate(TEXT)
        assert narration.transcript == TEXT
        assert emu.sessions[0].token_validated
    assert {token_claims(token)["oid"] for token in seen} == {credential.object_id}
    assert credential.scopes_requested == [("https://cognitiveservices.azure.com/.default",)]


async def test_a_credential_that_cannot_get_a_token_is_an_authentication_error(
    emulator: RealtimeEmulator,
) -> None:
    class NoIdentity(FakeTokenCredential):
        async def get_token_info(
            self, *scopes: str, options: TokenRequestOptions | None = None
        ) -> AccessTokenInfo:
            raise RuntimeError("no managed identity endpoint")

        async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            raise RuntimeError("no managed identity endpoint")

    settings = settings_for(emulator, api_key=None)
    async with Narrator(settings, credential=NoIdentity(), sleep=no_wait) as narrator:
        with pytest.raises(AuthenticationError, match="managed identity"):
            await narrator.narrate(TEXT)


# --- The command line ------------------------------------------------------------------------


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "podcast", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_cli_writes_a_wav_of_exactly_the_audio_the_server_sent(
    emulator: RealtimeEmulator, tmp_path: Path
) -> None:
    out = tmp_path / "out.wav"
    env = {"AZURE_OPENAI_AUDIO_ENDPOINT": emulator.url, "AZURE_OPENAI_AUDIO_API_KEY": KEY}
    result = run_cli(["narrate", "--text", TEXT, "--voice", "ash", "--out", str(out), "--json"], env)

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    info = audio.wav_info(out.read_bytes())
    assert (info.sample_rate, info.sample_width, info.channels) == (24_000, 2, 1)
    response = emulator.sessions[-1].responses[-1]
    assert info.frames * 2 == response.audio_bytes
    assert info.duration_seconds == pytest.approx(summary["duration_seconds"], abs=0.001)
    assert summary["transcript"] == TEXT


def test_the_cli_without_settings_explains_how_to_start_the_emulator(tmp_path: Path) -> None:
    env = {"AZURE_OPENAI_AUDIO_ENDPOINT": "", "AZURE_OPENAI_AUDIO_API_KEY": ""}
    result = run_cli(["narrate", "--text", "Hi", "--out", str(tmp_path / "x.wav")], env)
    assert result.returncode == 2
    assert "AZURE_OPENAI_AUDIO_ENDPOINT" in result.stderr
    assert "python -m emulator" in result.stderr
    assert not (tmp_path / "x.wav").exists()


def test_the_cli_reports_a_narration_failure_without_writing_a_file(
    emulator: RealtimeEmulator, tmp_path: Path
) -> None:
    env = {"AZURE_OPENAI_AUDIO_ENDPOINT": emulator.url, "AZURE_OPENAI_AUDIO_API_KEY": "wrong-key"}
    result = run_cli(["narrate", "--text", TEXT, "--out", str(tmp_path / "x.wav")], env)
    assert result.returncode == 1
    assert "upstream_authentication_failed" in result.stderr
    assert "wrong-key" not in result.stderr + result.stdout
    assert not (tmp_path / "x.wav").exists()
