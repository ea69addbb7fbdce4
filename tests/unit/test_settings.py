"""The one settings object: read once, sections that fail only when used, documented names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from podcast.errors import ConfigurationError
from podcast.settings import (
    CLIENT_ID_SETTING,
    CONCURRENCY_SETTING,
    ENDPOINT_SETTING,
    STORAGE_SETTING,
    WEBSITE_HOSTNAME_SETTING,
    DocumentSettings,
    FeedSettings,
    JobSettings,
    NarrationSettings,
    PipelineSettings,
    RealtimeSettings,
    RequestLimits,
    Settings,
    StorageSettings,
)

README = Path(__file__).resolve().parents[2] / "README.md"
GOOD = {ENDPOINT_SETTING: "https://res.openai.azure.com", STORAGE_SETTING: "UseDevelopmentStorage=true"}


def test_reading_never_raises_and_a_broken_section_raises_only_when_used() -> None:
    settings = Settings.from_env({STORAGE_SETTING: "UseDevelopmentStorage=true", CONCURRENCY_SETTING: "lots"})

    with pytest.raises(ConfigurationError) as missing:
        _ = settings.realtime
    assert missing.value.setting == ENDPOINT_SETTING
    with pytest.raises(ConfigurationError) as malformed:
        _ = settings.narration
    assert malformed.value.setting == CONCURRENCY_SETTING
    assert "lots" not in malformed.value.message
    assert settings.storage.output_container == "narrations"
    assert settings.limits == RequestLimits()
    assert settings.jobs.jobs_container == "narrations-jobs"


def test_the_jobs_container_follows_the_output_container_and_needs_storage() -> None:
    custom = Settings.from_env({**GOOD, "NARRATION_OUTPUT_CONTAINER": "episodes"})
    assert custom.jobs.jobs_container == "episodes-jobs"
    assert Settings.from_env({**GOOD, "NARRATION_JOBS_CONTAINER": "my-jobs"}).jobs.jobs_container == "my-jobs"

    with pytest.raises(ConfigurationError) as caught:
        _ = Settings.from_env({ENDPOINT_SETTING: "https://res.openai.azure.com"}).jobs
    assert caught.value.setting == STORAGE_SETTING


def test_the_client_id_serves_every_token_and_the_connection_specific_one_wins() -> None:
    assert Settings.from_env({**GOOD, CLIENT_ID_SETTING: "a"}).client_id == "a"
    both = {**GOOD, CLIENT_ID_SETTING: "a", f"{STORAGE_SETTING}__clientId": "b"}
    assert Settings.from_env(both).client_id == "b"
    assert Settings.from_env(GOOD).client_id is None
    assert Settings.from_env(
        {**GOOD, WEBSITE_HOSTNAME_SETTING: " app.azurewebsites.net "}
    ).website_hostname == ("app.azurewebsites.net")


def test_sections_built_directly_never_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONCURRENCY_SETTING, "not a number")
    monkeypatch.setenv("AZURE_OPENAI_AUDIO_MAX_RETRIES", "99")

    assert NarrationSettings().concurrency == 4
    assert RealtimeSettings(endpoint="http://127.0.0.1:1").max_retries == 3
    built = Settings(realtime=RealtimeSettings(endpoint="http://127.0.0.1:1"))
    assert built.narration.concurrency == 4
    with pytest.raises(ConfigurationError) as caught:
        _ = built.storage
    assert caught.value.setting == STORAGE_SETTING


def test_sections_validate_values_given_by_name_like_settings() -> None:
    with pytest.raises(ConfigurationError) as caught:
        NarrationSettings.load({CONCURRENCY_SETTING: "0"})
    assert caught.value.setting == CONCURRENCY_SETTING
    assert caught.value.message == f"{CONCURRENCY_SETTING} must be a whole number from 1 to 16"
    with pytest.raises(ConfigurationError):
        JobSettings.load({"NARRATION_QUEUE": "Bad_Queue"})
    assert NarrationSettings.from_env({"NARRATION_FIDELITY_POLICY": " FAIL "}).fidelity_policy == "fail"


def test_every_documented_setting_is_read_and_every_read_setting_is_documented() -> None:
    table = README.read_text(encoding="utf-8").split("## Settings", 1)[1].split("\n## ", 1)[0]
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    documented = {name for cell in first_cells for name in re.findall(r"`([A-Z][A-Za-z0-9_]+)`", cell)}
    sections = (
        RealtimeSettings,
        StorageSettings,
        RequestLimits,
        NarrationSettings,
        PipelineSettings,
        JobSettings,
        DocumentSettings,
        FeedSettings,
    )
    read = {name for section in sections for name in section.setting_names()} | {CLIENT_ID_SETTING}

    assert read - documented == set(), "settings the app reads but the README does not list"
    assert documented - read == set(), "settings the README lists but the app does not read"
