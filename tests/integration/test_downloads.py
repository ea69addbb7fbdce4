"""Lasting access: ``GET /api/narrations/{id}`` for synchronous narrations, and the download
routes (``/audio``, ``/transcript.json``, captions) with ``Range``, against the emulator and
Azurite, called as the Functions host calls them."""

from __future__ import annotations

import email
import email.policy
import json
from typing import Any
from urllib.parse import unquote

import pytest
from azure.storage.blob import BlobServiceClient

import function_app
from podcast.engine import audio
from testkit import host
from testkit.storage import http

TEXT = "Welcome to the show. Today we talk about rivers, and why they bend the way they do."


async def narrate(body: dict[str, Any]) -> dict[str, Any]:
    request = host.http_request("POST", "narrations", json=body)
    answer = await host.call_http(function_app.create_narration, request)
    assert answer.status == 200, answer.body
    result: dict[str, Any] = answer.json()
    return result


async def get(route: str, narration_id: str, headers: dict[str, str] | None = None) -> host.HttpAnswer:
    functions = {
        "narrations/{id}": function_app.get_narration,
        "narrations/{id}/audio": function_app.get_narration_audio,
        "narrations/{id}/captions.vtt": function_app.get_narration_captions,
        "narrations/{id}/captions.srt": function_app.get_narration_srt,
        "narrations/{id}/transcript.json": function_app.get_narration_transcript,
        "narrations/{id}/chapters.json": function_app.get_narration_chapters,
    }
    request = host.http_request("GET", route, route_params={"id": narration_id}, headers=headers)
    return await host.call_http(functions[route], request)


async def test_a_synchronous_narration_is_found_by_its_id_with_a_fresh_link(app_env: dict[str, str]) -> None:
    first = await narrate({"text": TEXT, "title": "Rivers", "sas_expiry_minutes": 7})

    answer = await get("narrations/{id}", first["id"])

    assert answer.status == 200, answer.body
    again = answer.json()
    assert again["id"] == first["id"]
    assert again["blob_name"] == first["blob_name"]
    assert again["transcript"] == first["transcript"]
    assert again["expires_at"] >= first["expires_at"]  # signed now, with the request's 7 minutes
    code, wav, _ = http("GET", again["audio_url"])
    assert code == 200
    assert audio.wav_info(wav).duration_seconds == pytest.approx(first["duration_seconds"], abs=0.001)
    assert "sp=r" in again["audio_url"]


async def test_the_audio_route_sends_the_file_with_its_type_and_name(app_env: dict[str, str]) -> None:
    result = await narrate({"text": TEXT, "title": 'Café "Rivers" / Ünïcode ✓'})
    _, stored, _ = http("GET", result["audio_url"])

    answer = await get("narrations/{id}/audio", result["id"])

    assert answer.status == 200
    assert answer.body == stored
    assert answer.headers["Content-Type"] == "audio/wav"
    assert answer.headers["Accept-Ranges"] == "bytes"
    disposition = answer.headers["Content-Disposition"]
    assert disposition.startswith("attachment; ")
    parsed = email.message_from_string(f"Content-Disposition: {disposition}\n\n", policy=email.policy.default)
    ascii_name = parsed["Content-Disposition"].params["filename"]
    assert ascii_name == "Cafe Rivers Unicode.wav"
    assert not set(ascii_name) & set('"\\/')
    exact = unquote(disposition.split("filename*=UTF-8''", 1)[1])
    assert exact == "Café _Rivers_ _ Ünïcode ✓.wav"  # the title, without what Windows forbids
    _, _, sas_headers = http("GET", result["audio_url"])  # the blob itself is named the same way
    stored_disposition = {k.lower(): v for k, v in sas_headers.items()}["content-disposition"]
    assert stored_disposition == disposition


async def test_a_current_copy_is_answered_304(app_env: dict[str, str]) -> None:
    result = await narrate({"text": TEXT})
    first = await get("narrations/{id}/audio", result["id"])
    etag = first.headers["ETag"]

    for names_it in (etag, f"W/{etag}", f'"old", {etag}', "*"):
        answer = await get("narrations/{id}/audio", result["id"], {"If-None-Match": names_it})
        assert (answer.status, answer.body) == (304, b""), names_it
        assert answer.headers["ETag"] == etag
        # A cache copies a 304's headers onto its copy: never relabel the WAV as text/plain.
        assert answer.headers["Content-Type"] == first.headers["Content-Type"] == "audio/wav"
    ranged = await get("narrations/{id}/audio", result["id"], {"If-None-Match": etag, "Range": "bytes=0-9"})
    assert ranged.status == 304, "If-None-Match is decided before Range"
    stale = await get("narrations/{id}/audio", result["id"], {"If-None-Match": '"another"'})
    assert (stale.status, stale.body) == (200, first.body)


async def test_ranges_are_honoured(app_env: dict[str, str]) -> None:
    result = await narrate({"text": TEXT})
    whole = (await get("narrations/{id}/audio", result["id"])).body
    size = len(whole)
    etag = (await get("narrations/{id}/audio", result["id"])).headers["ETag"]

    async def ranged(value: str, **extra: str) -> host.HttpAnswer:
        return await get("narrations/{id}/audio", result["id"], {"Range": value, **extra})

    header = await ranged("bytes=0-43")
    assert (header.status, header.body, header.headers["Content-Range"]) == (
        206,
        whole[:44],
        f"bytes 0-43/{size}",
    )
    assert header.headers["Content-Type"] == "audio/wav"
    tail = await ranged("bytes=-10")
    assert (tail.status, tail.body, tail.headers["Content-Range"]) == (
        206,
        whole[-10:],
        f"bytes {size - 10}-{size - 1}/{size}",
    )
    assert (await ranged(f"bytes={size - 1}-")).body == whole[-1:]
    assert (await ranged(f"bytes=100-{size * 10}")).body == whole[100:]  # clipped to the end
    assert (await ranged(f"bytes=-{size * 2}")).body == whole  # a suffix longer than the file
    merged = await ranged("bytes=10-19, 15-29,30-31")  # overlapping and adjacent: one range
    assert (merged.status, merged.body) == (206, whole[10:32])

    for unsatisfiable in (f"bytes={size}-", f"bytes={size + 5}-{size + 9}", "bytes=-0"):
        refused = await ranged(unsatisfiable)
        assert refused.status == 416, unsatisfiable
        assert refused.headers["Content-Range"] == f"bytes */{size}"
    for ignored in ("bytes=5-3", "bytes=abc", "items=0-1", "bytes=-", "bytes=0-1," + "2-3," * 20):
        assert (await ranged(ignored)).body == whole, ignored
    assert (await ranged("bytes=0-9", **{"If-Range": '"another"'})).status == 200
    assert (await ranged("bytes=0-9", **{"If-Range": etag})).status == 206

    several = await ranged("bytes=0-3,-4")
    assert several.status == 206
    content_type = several.headers["Content-Type"]
    assert content_type.startswith("multipart/byteranges; boundary=")
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + several.body, policy=email.policy.default
    )
    parts = list(message.iter_parts())
    assert [p["Content-Range"] for p in parts] == [f"bytes 0-3/{size}", f"bytes {size - 4}-{size - 1}/{size}"]
    assert [p.get_payload(decode=True) for p in parts] == [whole[:4], whole[-4:]]
    assert {p["Content-Type"] for p in parts} == {"audio/wav"}


async def test_the_transcript_document_is_served(app_env: dict[str, str]) -> None:
    result = await narrate({"text": TEXT})

    answer = await get("narrations/{id}/transcript.json", result["id"])

    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    document = json.loads(answer.body)
    assert (document["id"], document["transcript"]) == (result["id"], result["transcript"])
    assert "audio_url" not in document


CHAPTERED = (
    "Rivers\n\nRivers bend because water is lazy and always takes the easiest way downhill to the sea.\n\n"
    "Deltas\n\nWhere the river meets the sea it drops its sand and builds new land, year after year."
)


async def test_the_chapters_are_served_as_json_chapters_and_404_without_them(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NARRATION_SEGMENT_WORDS", "20")  # one heading per segment
    result = await narrate({"text": CHAPTERED, "title": "Rivers"})
    plain = await narrate({"text": TEXT})

    answer = await get("narrations/{id}/chapters.json", result["id"])

    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"] == "application/json+chapters"
    assert answer.headers["Content-Disposition"] == 'attachment; filename="Rivers.chapters.json"'
    document = json.loads(answer.body)
    transcript = json.loads((await get("narrations/{id}/transcript.json", result["id"])).body)
    assert document["version"] == "1.2.0"
    assert [(c["title"], c["startTime"], c["endTime"]) for c in document["chapters"]] == [
        (c["title"], c["start"], c["end"]) for c in transcript["chapters"]
    ]
    assert [c["title"] for c in document["chapters"]] == ["Rivers", "Deltas"]
    assert result["chapters_blob_name"] == result["blob_name"].removesuffix(".wav") + ".chapters.json"
    assert "chapters_blob_name" not in plain
    missing = await get("narrations/{id}/chapters.json", plain["id"])
    assert (missing.status, missing.json()["error"]["code"]) == (404, "narration_not_found")


@pytest.mark.parametrize(
    "route",
    [
        "narrations/{id}",
        "narrations/{id}/audio",
        "narrations/{id}/transcript.json",
        "narrations/{id}/captions.vtt",
        "narrations/{id}/chapters.json",
    ],
)
@pytest.mark.parametrize("narration_id", ["0" * 32, "not-an-id", "../../etc", "A" * 32])
async def test_unknown_ids_are_404(app_env: dict[str, str], route: str, narration_id: str) -> None:
    answer = await get(route, narration_id)

    assert answer.status == 404
    assert answer.json()["error"]["code"] in {"job_not_found", "narration_not_found"}


async def test_a_narration_whose_audio_is_gone_is_404(
    app_env: dict[str, str], azurite, container_name
) -> None:

    result = await narrate({"text": TEXT})
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.get_container_client(container_name).delete_blob(result["blob_name"])

    expected = {"narrations/{id}": "job_not_found", "narrations/{id}/audio": "narration_not_found"}
    for route, code in expected.items():
        answer = await get(route, result["id"])
        assert answer.status == 404, route
        assert answer.json()["error"]["code"] == code


async def test_an_answer_over_the_inline_limit_is_a_redirect_to_a_fresh_link(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NARRATION_DOWNLOAD_INLINE_MAX_MB", "1")
    limit = 1 << 20
    result = await narrate({"text": " ".join([TEXT] * 6), "title": "Long rivers"})
    _, stored, _ = http("GET", result["audio_url"])
    assert len(stored) > limit + 1  # about 30 s of WAV: over the limit

    whole = await get("narrations/{id}/audio", result["id"])
    assert whole.status == 302
    location = whole.headers["Location"]
    assert whole.json()["url"] == location
    assert whole.json()["size_bytes"] == len(stored)
    assert whole.headers["Cache-Control"] == "no-store"
    assert "sp=r" in location  # a fresh read-only link
    assert location != result["audio_url"]
    code, body, headers = http("GET", location)
    assert code == 200
    assert body == stored
    assert headers["content-type"] == "audio/wav"
    assert 'filename="Long rivers.wav"' in headers["content-disposition"]

    # Ranges up to the limit are still answered here, so a client can fetch the file in pieces.
    at_limit = await get("narrations/{id}/audio", result["id"], {"Range": f"bytes=0-{limit - 1}"})
    assert at_limit.status == 206
    assert at_limit.body == stored[:limit]
    over = await get("narrations/{id}/audio", result["id"], {"Range": f"bytes=0-{limit}"})
    assert over.status == 302
    rest = await get("narrations/{id}/audio", result["id"], {"Range": f"bytes={limit}-"})
    assert rest.status == 206
    assert at_limit.body + rest.body == stored
    # Small files are unaffected.
    captions = await get("narrations/{id}/captions.vtt", result["id"])
    assert captions.status == 200
    assert captions.body.startswith(b"WEBVTT")
