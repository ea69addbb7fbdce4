"""Uploaded documents narrated by the blob trigger, against the emulator and a real Azurite."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest
from azure.storage.blob import BlobServiceClient

import function_app
from emulator import Fault, FaultKind, RealtimeEmulator
from podcast.engine import audio
from testkit import host
from testkit.azurite import AzuriteServer

KEY = "emulator-key"
INPUT = "narration-input-test"


@pytest.fixture
def document_env(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The app settings, with no Realtime retries (the host retries uploads), a test input
    container and a small document size limit."""
    monkeypatch.setenv("AZURE_OPENAI_AUDIO_MAX_RETRIES", "0")
    monkeypatch.setenv("NARRATION_INPUT_CONTAINER", INPUT)
    monkeypatch.setenv("NARRATION_MAX_DOCUMENT_BYTES", "20000")


def upload(azurite: AzuriteServer, name: str, data: bytes) -> func.blob.InputStream:
    """Put ``data`` in the input container, and describe it as the host would to the trigger."""
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        container = service.get_container_client(INPUT)
        if not container.exists():
            container.create_container()
        blob = container.get_blob_client(name)
        blob.upload_blob(data, overwrite=True)
        properties = blob.get_blob_properties()
        stored = blob.download_blob().readall()
        url = blob.url
    return host.blob_input_stream(INPUT, name, stored, etag=properties.etag, uri=url)


def outputs(azurite: AzuriteServer, container: str) -> dict[str, bytes]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        client = service.get_container_client(container)
        if not client.exists():
            return {}
        return {b.name: client.get_blob_client(b.name).download_blob().readall() for b in client.list_blobs()}


def spoken_texts(emulator: RealtimeEmulator) -> list[str]:
    return [r.transcript for s in emulator.sessions for r in s.responses]


MARKDOWN = b"""# Field notes

The *river* bends because **water** is lazy. Read [the survey](https://example.com/secret-target) later.

- Erosion on the outside.
- Deposits on the inside

```python
print("never narrated")
```

| bank | speed |
|------|-------|
| left | slow  |

![diagram](figure.png)
"""


@pytest.mark.parametrize(
    ("name", "data", "expected_voice"),
    [
        ("notes.txt", b"Plain words about rivers. They bend.\n", "marin"),
        ("bom.txt", "\ufeffA text that starts with a byte order mark.".encode(), "marin"),
        ("folder/field notes.md", MARKDOWN, "marin"),
        (
            "request.json",
            json.dumps({"text": "Chosen by a flow.", "voice": "ash", "style": "lecture"}).encode(),
            "ash",
        ),
    ],
)
async def test_an_uploaded_document_gets_a_wav_and_a_transcript_document_beside_its_name(
    document_env: None,
    azurite: AzuriteServer,
    container_name: str,
    emulator: RealtimeEmulator,
    name: str,
    data: bytes,
    expected_voice: str,
) -> None:
    await host.call(function_app.narrate_document, upload(azurite, name, data))

    base = name.rsplit(".", 1)[0]
    stored = outputs(azurite, container_name)
    assert sorted(stored) == [f"{base}.json", f"{base}.srt", f"{base}.vtt", f"{base}.wav"]
    document: dict[str, Any] = json.loads(stored[f"{base}.json"])
    info = audio.wav_info(stored[f"{base}.wav"])
    assert (info.sample_rate, info.sample_width, info.channels) == (24_000, 2, 1)
    assert info.duration_seconds == pytest.approx(document["duration_seconds"], abs=0.001)
    assert document["voice"] == expected_voice
    assert document["source"]["blob_name"] == name
    assert document["source"]["etag"]
    assert len(document["source"]["sha256"]) == 64
    assert document["transcript"] == " ".join(spoken_texts(emulator)).strip()


async def test_markdown_code_blocks_images_tables_and_link_targets_are_not_narrated(
    document_env: None, azurite: AzuriteServer, container_name: str, emulator: RealtimeEmulator
) -> None:
    await host.call(function_app.narrate_document, upload(azurite, "notes.md", MARKDOWN))

    spoken = " ".join(spoken_texts(emulator))
    assert "The river bends because water is lazy." in spoken
    assert "the survey" in spoken
    assert "Erosion on the outside." in spoken
    assert "Table omitted." in spoken
    for never in (
        "never narrated",
        "print",
        "example.com",
        "secret-target",
        "figure.png",
        "diagram",
        "```",
        "*",
        "|",
    ):
        assert never not in spoken


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("image.png", b"\x89PNG\r\n\x1a\n" + bytes(100), "unsupported_document_type"),
        ("binary.txt", b"abc\x00\x01\x02def", "unsupported_encoding"),
        ("empty.txt", b"", "empty_document"),
        ("blank.md", b"```\ncode only\n```\n", "empty_document"),
        ("huge.txt", b"word " * 5000, "document_too_large"),
        ("latin1.txt", "Caf\u00e9 cr\u00e8me".encode("latin-1"), "unsupported_encoding"),
        ("utf16.txt", "Hello".encode("utf-16"), "unsupported_encoding"),
        ("bad.json", b'{"text": "hi", "voice": "nova"}', "invalid_request"),
        ("noext", b"Some text", "unsupported_document_type"),
    ],
)
async def test_a_document_that_can_never_be_narrated_gets_an_error_record_and_no_retry(
    document_env: None,
    azurite: AzuriteServer,
    container_name: str,
    emulator: RealtimeEmulator,
    name: str,
    data: bytes,
    code: str,
) -> None:
    await host.call(function_app.narrate_document, upload(azurite, name, data))  # does not raise

    base = name.rsplit(".", 1)[0]
    stored = outputs(azurite, container_name)
    assert sorted(stored) == [f"{base}.error.json"]
    record = json.loads(stored[f"{base}.error.json"])
    assert record["status"] == "failed"
    assert record["final"] is True
    assert record["error"]["code"] == code
    assert record["error"]["message"]
    assert emulator.handshakes == 0


async def test_the_same_content_twice_is_narrated_once(
    document_env: None, azurite: AzuriteServer, emulator: RealtimeEmulator
) -> None:
    document = upload(azurite, "once.txt", b"Only once, please.")
    await host.call(function_app.narrate_document, document)
    await host.call(function_app.narrate_document, upload(azurite, "once.txt", b"Only once, please."))
    assert len(emulator.sessions) == 1

    await host.call(
        function_app.narrate_document, upload(azurite, "once.txt", b"Changed content, narrate again.")
    )
    assert len(emulator.sessions) == 2


async def test_a_transient_fault_raises_for_a_retry_that_leaves_one_complete_result(
    document_env: None, azurite: AzuriteServer, container_name: str, emulator: RealtimeEmulator
) -> None:
    emulator.inject(Fault(FaultKind.CLOSE_MID_STREAM))
    document = upload(azurite, "retry.txt", b"Try, try again.")

    with pytest.raises(Exception, match="connection closed"):
        await host.call(function_app.narrate_document, document)
    assert "retry.wav" not in outputs(azurite, container_name), "no partial audio under the final name"
    assert json.loads(outputs(azurite, container_name)["retry.error.json"])["status"] == "retrying"

    await host.call(function_app.narrate_document, upload(azurite, "retry.txt", b"Try, try again."))

    stored = outputs(azurite, container_name)
    assert sorted(stored) == ["retry.json", "retry.srt", "retry.vtt", "retry.wav"]
    assert json.loads(stored["retry.json"])["transcript"] == "Try, try again."


async def test_after_the_last_attempt_the_error_record_is_final_and_nothing_raises(
    document_env: None, azurite: AzuriteServer, container_name: str, emulator: RealtimeEmulator
) -> None:
    emulator.inject(Fault(FaultKind.HANDSHAKE_503, times=None))
    with pytest.raises(Exception, match="unavailable"):
        await host.call(function_app.narrate_document, upload(azurite, "doomed.txt", b"Never to be."))
    await host.call(function_app.narrate_document, upload(azurite, "doomed.txt", b"Never to be."))

    record = json.loads(outputs(azurite, container_name)["doomed.error.json"])
    assert (record["status"], record["final"], record["attempts"], record["max_attempts"]) == (
        "failed",
        True,
        2,
        2,
    )
    assert record["error"]["code"] == "upstream_unavailable"
