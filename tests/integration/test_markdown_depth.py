"""Deep Markdown outlines through the blob trigger: read in full up to the cap, refused
beyond it with a final error record, never narrated with their tail missing."""

from __future__ import annotations

import json

import pytest

import function_app
from emulator import RealtimeEmulator
from podcast.services.documents import MAX_MARKDOWN_NESTING
from testkit import host
from testkit.azurite import AzuriteServer
from tests.integration.test_blob_trigger import INPUT, outputs, upload


def outline(levels: int) -> bytes:
    lines = ["# Outline", ""] + ["  " * i + f"- Point {i + 1}" for i in range(levels)]
    return ("\n".join(lines) + "\n\nThat is the whole outline.\n").encode()


@pytest.fixture
def document_env(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_AUDIO_MAX_RETRIES", "0")
    monkeypatch.setenv("NARRATION_INPUT_CONTAINER", INPUT)


async def test_an_outline_ten_levels_deep_is_narrated_to_its_last_line(
    document_env: None, azurite: AzuriteServer, container_name: str, emulator: RealtimeEmulator
) -> None:
    await host.call(function_app.narrate_document, upload(azurite, "deep.md", outline(10)))

    stored = outputs(azurite, container_name)
    assert sorted(stored) == ["deep.json", "deep.srt", "deep.vtt", "deep.wav"]
    transcript = json.loads(stored["deep.json"])["transcript"]
    assert "Point 10." in transcript
    assert transcript.endswith("That is the whole outline.")


async def test_an_outline_deeper_than_the_cap_gets_a_final_error_and_is_not_narrated(
    document_env: None, azurite: AzuriteServer, container_name: str, emulator: RealtimeEmulator
) -> None:
    await host.call(
        function_app.narrate_document, upload(azurite, "deeper.md", outline(MAX_MARKDOWN_NESTING + 1))
    )

    stored = outputs(azurite, container_name)
    assert sorted(stored) == ["deeper.error.json"]
    record = json.loads(stored["deeper.error.json"])
    assert (record["status"], record["final"]) == ("failed", True)
    assert (record["error"]["code"], record["error"]["field"]) == ("markdown_too_deep", "document")
    assert emulator.handshakes == 0
