"""Hostile document names, through the decorated blob function, with an account key and with
a bearer token (managed identity: the token does not sign the path, and the client normalises
``..`` away, so only the app's own rule keeps a name in its container).

Before and after each attack every container of the account is listed with every blob's
ETag: nothing may change anywhere, no Storage request may be sent at all, nothing narrated,
and the function returns normally (so the host does not retry it).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

import function_app
from emulator import RealtimeEmulator
from podcast.app import App
from podcast.settings import Settings
from testkit import host
from testkit.azurite import AzuriteServer
from testkit.credentials import FakeTokenCredential
from testkit.storage import ScriptedTransport, account_snapshot

pytestmark = pytest.mark.azurite

KEY = "emulator-key"
JOB_ID = "0123456789abcdef0123456789abcdef"
REQUEST = json.dumps({"text": "Injected words.", "voice": "ash"}).encode()


@dataclass
class Target:
    """The app under attack and the account it lives in."""

    output: str
    input: str
    jobs: str
    other: str
    transport: ScriptedTransport
    service: Callable[[], BlobServiceClient]
    emulator: RealtimeEmulator


def prepare(service: BlobServiceClient, target: Target) -> None:
    """Containers an escaping name could reach, with something in each to overwrite."""
    for container in (target.input, target.jobs, target.other, target.output):
        with contextlib.suppress(ResourceExistsError):
            service.create_container(container)
    service.get_blob_client(target.jobs, f"jobs/{JOB_ID}.json").upload_blob(b'{"status":"queued"}')
    service.get_blob_client(target.other, "x.wav").upload_blob(b"someone else's audio")
    service.get_blob_client(target.output, "kept.json").upload_blob(b"{}")


async def configure(
    monkeypatch: pytest.MonkeyPatch,
    emulator: RealtimeEmulator,
    container_name: str,
    storage: dict[str, str],
    app: Callable[[ScriptedTransport], App],
    service: Callable[[], BlobServiceClient],
    transport: ScriptedTransport,
) -> Target:
    settings = {
        "AZURE_OPENAI_AUDIO_ENDPOINT": emulator.url,
        "AZURE_OPENAI_AUDIO_API_KEY": KEY,
        "AZURE_OPENAI_AUDIO_MAX_RETRIES": "0",
        "NARRATION_OUTPUT_CONTAINER": container_name,
        "NARRATION_INPUT_CONTAINER": f"{container_name}-in",
        **storage,
    }
    monkeypatch.delenv("NARRATION_STORAGE", raising=False)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    function_app.graph.use(lambda: app(transport))
    target = Target(
        container_name,
        f"{container_name}-in",
        f"{container_name}-jobs",
        f"other-{uuid.uuid4().hex[:12]}",
        transport,
        service,
        emulator,
    )
    with service() as client:
        prepare(client, target)
    return target


def cleanup(service: BlobServiceClient, target: Target) -> None:
    for container in (target.output, target.input, target.jobs, target.other):
        with contextlib.suppress(ResourceNotFoundError):
            service.delete_container(container)


@pytest.fixture(params=["keys", "managed identity"])
async def target(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    container_name: str,
    emulator: RealtimeEmulator,
) -> AsyncIterator[Target]:
    """The app with an account key (shared-key requests on Azurite), or with a bearer token
    (Azurite over HTTPS with OAuth, the app's token credential)."""
    if request.param == "keys":
        azurite: AzuriteServer = request.getfixturevalue("azurite")
        transport = ScriptedTransport()

        def service() -> BlobServiceClient:
            return BlobServiceClient.from_connection_string(azurite.connection_string)

        storage = {"NARRATION_STORAGE": azurite.connection_string}
        credential = None
    else:
        oauth: AzuriteServer = request.getfixturevalue("azurite_oauth")
        assert oauth.tls is not None
        cafile = str(oauth.tls.cert_path)
        transport = ScriptedTransport(connection_verify=cafile)

        def service() -> BlobServiceClient:
            return BlobServiceClient(
                oauth.blob_endpoint, credential=FakeTokenCredential().sync(), connection_verify=cafile
            )

        storage = {"NARRATION_STORAGE__blobServiceUri": oauth.blob_endpoint}
        credential = FakeTokenCredential()

    target = await configure(
        monkeypatch,
        emulator,
        container_name,
        storage,
        lambda t: App(Settings.from_env(), credential=credential, client_kwargs={"transport": t}),
        service,
        transport,
    )
    yield target
    await function_app.graph.aclose()
    function_app.graph.use(App.from_env)
    with service() as client:
        cleanup(client, target)


def hostile_names(target: Target) -> list[str]:
    return [
        f"../{target.other}/x.txt",
        f"../{target.jobs}/jobs/{JOB_ID}.json",
        f"../{target.input}/again.json",
        f"notes/../../{target.other}/y.md",
        f"..\\{target.other}\\z.txt",
        f"\uff0e\uff0e/{target.other}/w.txt",
        "/leading-slash.txt",
        "a//b.txt",
        "./here.txt",
        "a/./b.txt",
        "ends-with-dot./c.txt",
        "bell\x07.txt",
        "new\nline.txt",
        "n" * 1021 + ".txt",
        "/".join(["s"] * 255) + ".txt",
        # An API narration's own name (its id is public): the outputs would replace its files.
        f"2026/12/03/{JOB_ID}.md",
        f"2026/12/03/{JOB_ID.upper()}.txt",
        # Bases whose .json is another document's output: notes.txt's chapters, failure record.
        "notes.chapters.txt",
        "shows/daily/notes.error.md",
        f"2026/12/03/{JOB_ID}.chapters.txt",
    ]


async def test_a_hostile_name_writes_nothing_anywhere_and_is_not_retried(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    with target.service() as service:
        before = account_snapshot(service)
    assert target.other in before

    for name in hostile_names(target):
        stream = host.blob_input_stream(target.input, name, REQUEST)
        await host.call(function_app.narrate_document, stream)  # returns: never retried

    with target.service() as service:
        assert account_snapshot(service) == before
    assert target.transport.sent == [], "refused before any Storage call"
    assert target.emulator.handshakes == 0
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == len(hostile_names(target))
    assert all("\n" not in r.getMessage() and "\x07" not in r.getMessage() for r in refused)
    assert "Injected" not in caplog.text


@pytest.mark.parametrize(
    ("name", "accepted"),
    [
        # The longest name whose outputs (<base>.chapters.json is the longest) fit in 1,024.
        ("n" * 1010 + ".txt", True),
        ("n" * 1011 + ".txt", False),
        ("n" * 1020 + ".txt", False),  # a valid blob name itself: its outputs are not
        ("/".join(["s"] * 253) + "/last.txt", True),  # 254 segments
        ("/".join(["s"] * 254) + "/last.txt", False),  # 255 segments
    ],
    ids=["1014-chars", "1015-chars", "1024-chars", "254-segments", "255-segments"],
)
async def test_names_at_the_limits(
    target: Target, name: str, accepted: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING")
    with target.service() as service:
        service.get_blob_client(target.input, name).upload_blob(b"Words at the limit.", overwrite=True)
        before = account_snapshot(service)

    await host.call(
        function_app.narrate_document, host.blob_input_stream(target.input, name, b"Words at the limit.")
    )

    with target.service() as service:
        after = account_snapshot(service)
    base = name.removesuffix(".txt")
    changed = {c for c in after.keys() | before.keys() if after.get(c) != before.get(c)}
    if accepted:
        assert changed == {target.output}
        made = {f"{base}.wav", f"{base}.json", f"{base}.vtt", f"{base}.srt"}
        assert set(after[target.output]) - set(before[target.output]) == made
    else:
        assert changed == set()
        assert target.emulator.handshakes == 0
        (refused,) = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        if len(name) <= 1024 and "/" not in name:  # the source's name is fine: its outputs' are not
            assert "too long for its outputs" in refused
            assert "at most 1,010 characters" in refused
