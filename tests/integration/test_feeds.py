"""Shows and their podcast feeds, through the decorated functions as the host calls them,
against the Realtime emulator and Azurite: feed clients nobody here wrote (feedparser,
podcastparser) and a strict XML parser read the feed, its enclosures download and decode,
concurrent narrations into one show all appear, and tokens rotate without an oracle."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import feedparser
import podcastparser
import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient
from lxml import etree
from mutagen.id3 import ID3

import function_app
from podcast.app import App
from podcast.engine import audio
from podcast.services.shows import ENTRY_METADATA, episode_name
from podcast.settings import Settings
from podcast.wire import EpisodeChapter, EpisodeEntry, iso_timestamp
from testkit import decoding, host
from testkit.azurite import AzuriteServer
from testkit.storage import FAST_FAILING, blobs_in, http
from testkit.storage_faults import StorageSwitch, SwitchedTransport

HOSTILE = "Rivers & <bends> ]]> 🎙️ שלום \u202bمرحبا\u202c \"q\" 'a'"
PODCAST = "{https://podcastindex.org/namespace/1.0}"
INPUT = "narration-input-feeds"
ASYNC = {"Prefer": "respond-async"}


def blob_counts(azurite: AzuriteServer) -> dict[str, int]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        return {
            c.name: len(list(service.get_container_client(c.name).list_blobs()))
            for c in service.list_containers()
        }


async def put_show(slug: str, body: dict[str, Any]) -> host.HttpAnswer:
    request = host.http_request("PUT", "shows/{show}", json=body, route_params={"show": slug})
    return await host.call_http(function_app.put_show, request)


async def create_show(slug: str, **fields: Any) -> str:
    answer = await put_show(slug, {"title": HOSTILE, **fields})
    assert answer.status == 201, answer.body
    feed_url: str = answer.json()["feed_url"]
    return feed_url


async def get_feed(url: str, headers: dict[str, str] | None = None) -> host.HttpAnswer:
    request = host.http_request("GET", "shows/{show}/feed.xml", url=url, headers=headers)
    return await host.call_http(function_app.get_show_feed, request)


async def narrate(body: dict[str, Any], headers: dict[str, str] | None = None) -> host.HttpAnswer:
    request = host.http_request("POST", "narrations", json=body, headers=headers)
    return await host.call_http(function_app.create_narration, request)


async def narrated(body: dict[str, Any]) -> dict[str, Any]:
    answer = await narrate(body)
    assert answer.status == 200, answer.body
    result: dict[str, Any] = answer.json()
    return result


def strict(body: bytes) -> etree._Element:
    return etree.fromstring(body, etree.XMLParser(recover=False, resolve_entities=False, no_network=True))


def with_token(url: str, token: str) -> str:
    return url.split("?", 1)[0] + f"?token={token}"


@pytest.fixture
def captured() -> Iterator[list[logging.LogRecord]]:
    """Every record any logger makes at DEBUG while the test runs."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    handler, level = Keep(logging.DEBUG), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_a_shows_feed_lists_its_narrations_for_real_feed_clients(app_env: dict[str, str]) -> None:
    feed_url = await create_show("daily-digest", author="Ada & Co", language="en", explicit=False)
    assert parse_qs(urlsplit(feed_url).query)["token"][0]
    shown = await host.call_http(
        function_app.get_show, host.http_request("GET", "shows/{show}", route_params={"show": "daily-digest"})
    )
    assert shown.status == 200
    assert shown.json()["feed_url"] is None  # only its hash is kept

    results = await asyncio.gather(
        narrated(
            {
                "text": "Rivers bend because water is lazy.",
                "title": HOSTILE,
                "show": "daily-digest",
                "format": "wav",
            }
        ),
        narrated({"text": "Mountains rise slowly.", "show": "daily-digest"}),  # a show's default: MP3
        narrated({"text": "This one is in no show."}),
    )
    wav, mp3 = results[0], results[1]
    assert (wav["format"], mp3["format"]) == ("wav", "mp3")
    assert any("Apple Podcasts" in warning for warning in wav["warnings"]), "a WAV episode is warned of"
    assert not any("Apple Podcasts" in warning for warning in mp3["warnings"] + results[2]["warnings"])

    answer = await get_feed(feed_url)
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"] == "application/rss+xml; charset=utf-8"
    root = strict(answer.body)
    items = root.findall("channel/item")
    assert {i.findtext("guid") for i in items} == {wav["id"], mp3["id"]}
    dates = [datetime.strptime(i.findtext("pubDate") or "", "%a, %d %b %Y %H:%M:%S GMT") for i in items]
    assert dates == sorted(dates, reverse=True)

    parsed = feedparser.parse(answer.body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.feed.title == HOSTILE
    by_id = {entry.id: entry for entry in parsed.entries}
    assert by_id[wav["id"]].title == HOSTILE
    for result, media_type in ((wav, "audio/wav"), (mp3, "audio/mpeg")):
        entry = by_id[result["id"]]
        (enclosure,) = entry.enclosures
        assert enclosure.type == media_type
        code, data, _ = http("GET", enclosure.href)  # a fresh read-only link to Azurite
        assert code == 200
        assert int(enclosure.length) == len(data)
        decoded = decoding.decode(data, ".wav" if media_type == "audio/wav" else ".mp3")
        seconds = len(decoded) / audio.SAMPLE_RATE
        assert seconds == pytest.approx(result["duration_seconds"], abs=0.1)
        hours, minutes, whole = (int(part) for part in entry.itunes_duration.split(":"))
        assert hours * 3600 + minutes * 60 + whole == -(-int(result["duration_seconds"] * 1000) // 1000)
        # The JSON transcript and the WebVTT captions download too.
        transcript = json.loads(http("GET", entry.podcast_transcript["url"])[1])
        assert transcript["id"] == result["id"]
        element = next(i for i in items if i.findtext("guid") == result["id"])
        vtt = next(t for t in element.iterfind(f"{PODCAST}transcript") if t.get("type") == "text/vtt")
        assert http("GET", vtt.get("url") or "")[1].startswith(b"WEBVTT")

    episodes = podcastparser.parse(feed_url, io.BytesIO(answer.body))["episodes"]
    assert {e["guid"] for e in episodes} == {wav["id"], mp3["id"]}
    assert all(e["enclosures"][0]["file_size"] > 0 and e["total_time"] >= 1 for e in episodes)

    # Links of one period are the same in every build, and keep at least half their lifetime.
    rebuilt = feedparser.parse((await get_feed(feed_url)).body)
    assert {e.enclosures[0].href for e in rebuilt.entries} == {e.enclosures[0].href for e in parsed.entries}
    expiry = parse_qs(urlsplit(parsed.entries[0].enclosures[0].href).query)["se"][0]
    left = datetime.fromisoformat(expiry.replace("Z", "+00:00")) - datetime.now(UTC)
    assert timedelta(hours=84) < left <= timedelta(hours=168)

    # Polling: the same feed is a 304 without a body; a changed show is a new feed.
    again = await get_feed(feed_url, {"If-None-Match": answer.headers["ETag"]})
    assert (again.status, again.body) == (304, b"")
    assert (await put_show("daily-digest", {"title": "Renamed"})).status == 200
    renamed = await get_feed(feed_url, {"If-None-Match": answer.headers["ETag"]})
    assert renamed.status == 200
    assert feedparser.parse(renamed.body).feed.title == "Renamed"
    one = await get_feed(f"{feed_url}&limit=1")
    assert len(feedparser.parse(one.body).entries) == 1
    for bad in ("0", "101", "x", "-1"):
        refused = await get_feed(f"{feed_url}&limit={bad}")
        assert (refused.status, refused.json()["error"]["field"]) == (400, "limit")


async def test_a_document_narrated_again_without_chapters_keeps_no_old_chapters(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, azurite: AzuriteServer
) -> None:
    """A revised document's outputs are replaced: its earlier chapters file goes too, and the
    feed links none for the new narration."""
    monkeypatch.setenv("NARRATION_INPUT_CONTAINER", INPUT)
    monkeypatch.setenv("NARRATION_SEGMENT_WORDS", "20")
    feed_url = await create_show("revisions")
    name = "shows/revisions/notes.txt"
    outputs_container = app_env["NARRATION_OUTPUT_CONTAINER"]

    async def upload_and_narrate(text: str) -> None:
        with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
            container = service.get_container_client(INPUT)
            if not container.exists():
                container.create_container()
            blob = container.get_blob_client(name)
            blob.upload_blob(text.encode(), overwrite=True)
            stream = host.blob_input_stream(
                INPUT, name, blob.download_blob().readall(), etag=blob.get_blob_properties().etag
            )
        await host.call(function_app.narrate_document, stream)

    def chapters_file() -> bytes | None:
        with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
            blob = service.get_container_client(outputs_container).get_blob_client(
                "shows/revisions/notes.chapters.json"
            )
            return blob.download_blob().readall() if blob.exists() else None

    await upload_and_narrate(CHAPTERED_TEXT)
    first = chapters_file()
    assert first is not None
    assert [c["title"] for c in json.loads(first)["chapters"]] == [
        "Rivers",
        "Oxbow lakes & <deltas>",
        "Deltas",
    ]
    (entry,) = feedparser.parse((await get_feed(feed_url)).body).entries
    assert json.loads(http("GET", entry.podcast_chapters["url"])[1]) == json.loads(first)

    await upload_and_narrate("No headings here at all, only one short paragraph.")
    assert chapters_file() is None
    (newer,) = feedparser.parse((await get_feed(feed_url)).body).entries
    assert newer.id != entry.id
    assert "podcast_chapters" not in newer


CHAPTERED_TEXT = (
    "Rivers\n\nRivers bend because water is lazy and always takes the easiest way downhill to the sea.\n\n"
    "Oxbow lakes & <deltas>\n\nA bend cut off from its river becomes a lake shaped like a horseshoe.\n\n"
    "Deltas\n\nWhere the river meets the sea it drops its sand and builds new land, year after year."
)


async def test_podcastparser_and_feedparser_read_the_mp3s_own_chapters_and_the_transcripts(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NARRATION_SEGMENT_WORDS", "20")  # one heading per segment
    feed_url = await create_show("chaptered-show")
    mp3 = await narrated(
        {"text": CHAPTERED_TEXT, "format": "mp3", "title": "Rivers", "show": "chaptered-show"}
    )
    plain = await narrated({"text": "No headings here at all.", "show": "chaptered-show"})

    answer = await get_feed(feed_url)
    assert answer.status == 200, answer.body
    strict(answer.body)
    episodes = {e["guid"]: e for e in podcastparser.parse(feed_url, io.BytesIO(answer.body))["episodes"]}
    episode = episodes[mp3["id"]]
    code, data, _ = http("GET", episode["enclosures"][0]["url"])
    assert code == 200
    tag = ID3(io.BytesIO(data))  # type: ignore[no-untyped-call]
    toc = tag["CTOC:toc"].child_element_ids
    narrated_chapters = [
        (str(tag[f"CHAP:{name}"].sub_frames["TIT2"]), tag[f"CHAP:{name}"].start_time) for name in toc
    ]
    assert [title for title, _ in narrated_chapters] == ["Rivers", "Oxbow lakes & <deltas>", "Deltas"]
    # podcastparser reads Podlove Simple Chapters in whole seconds; feedparser to the millisecond.
    assert episode["chapters"] == [{"start": ms // 1000, "title": title} for title, ms in narrated_chapters]
    assert "chapters" not in episodes[plain["id"]]
    entries = {e.id: e for e in feedparser.parse(answer.body).entries}
    entry = entries[mp3["id"]]
    assert [(c.title, round(c.start_parsed.total_seconds() * 1000)) for c in entry.psc_chapters.chapters] == (
        narrated_chapters
    )
    # The same chapters as a Podcasting 2.0 JSON chapters file (podcast:chapters), which
    # podcastparser finds too; a narration without chapters links none.
    assert entry.podcast_chapters["type"] == "application/json+chapters"
    assert episode["chapters_json_url"] == entry.podcast_chapters["url"]
    code, body, headers = http("GET", entry.podcast_chapters["url"])
    assert code == 200
    assert headers["content-type"] == "application/json+chapters"
    document = json.loads(body)
    assert (document["version"], document["title"]) == ("1.2.0", "Rivers")
    listed = document["chapters"]
    assert [c["title"] for c in listed] == [title for title, _ in narrated_chapters]
    for chapter, (_, ms) in zip(listed, narrated_chapters, strict=True):
        assert chapter["startTime"] == pytest.approx(ms / 1000, abs=0.0015)
    assert [c["endTime"] for c in listed[:-1]] == [c["startTime"] for c in listed[1:]]
    assert listed[-1]["endTime"] == pytest.approx(mp3["duration_seconds"], abs=0.0015)
    assert "podcast_chapters" not in entries[plain["id"]]
    assert "chapters_json_url" not in episodes[plain["id"]]
    # Its transcript link (the old namespace URI's) is the WebVTT captions, which download.
    for result in (mp3, plain):
        transcript_url = episodes[result["id"]]["transcript_url"]
        assert urlsplit(transcript_url).path.endswith(".vtt")
        assert http("GET", transcript_url)[1].startswith(b"WEBVTT")


async def test_entries_without_metadata_are_read_and_unreadable_ones_skipped(app_env: dict[str, str]) -> None:
    feed_url = await create_show("by-hand")
    app = function_app.graph.get()
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    entry = EpisodeEntry(
        id="d" * 32,
        title="Written without metadata",
        description="An entry an older version wrote.",
        created_at=iso_timestamp(moment),
        audio_blob_name="2026/01/02/d.wav",
        format="wav",
        bytes=1000,
        duration_seconds=1.5,
        transcript_blob_name="2026/01/02/d.json",
    )
    await app.job_documents.put(episode_name("by-hand", entry.id, moment), entry.model_dump(mode="json"))
    later = moment + timedelta(days=1)
    await app.job_documents.put(episode_name("by-hand", "e" * 32, later), {"id": "e" * 32})  # incomplete

    (item,) = feedparser.parse((await get_feed(feed_url)).body).entries
    assert (item.id, item.title, item.itunes_duration) == ("d" * 32, "Written without metadata", "00:00:02")


async def test_a_document_narrated_again_takes_one_place_in_a_limited_feed(app_env: dict[str, str]) -> None:
    """Each narration of a revised document adds an entry for the same audio blob; the feed
    shows its newest only, and the older ones take no place of ``limit``."""
    feed_url = await create_show("revised")
    app = function_app.graph.get()
    start = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def entry(number: int, audio: str) -> EpisodeEntry:
        return EpisodeEntry(
            id=f"{number:032x}",
            title=f"Episode {number}",
            description="",
            created_at=iso_timestamp(start + timedelta(days=number)),
            audio_blob_name=audio,
            format="wav",
            bytes=1000,
            duration_seconds=1.5,
            transcript_blob_name=audio.replace(".wav", ".json"),
        )

    for number in (1, 2, 3):
        await app.shows.add_episode("revised", entry(number, f"2026/01/0{number}/e{number}.wav"))
    for number in (4, 5, 6):  # three narrations of one document: one audio blob, replaced
        await app.shows.add_episode("revised", entry(number, "shows/revised/notes.wav"))

    parsed = feedparser.parse((await get_feed(f"{feed_url}&limit=3")).body)
    assert [item.title for item in parsed.entries] == ["Episode 6", "Episode 3", "Episode 2"]
    everything = feedparser.parse((await get_feed(feed_url)).body)
    assert [item.title for item in everything.entries] == ["Episode 6", "Episode 3", "Episode 2", "Episode 1"]


async def test_an_entry_whose_chapters_outgrow_its_metadata_is_read_from_its_blob(
    app_env: dict[str, str],
) -> None:
    feed_url = await create_show("many-chapters")
    app = function_app.graph.get()
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    chapters = [
        EpisodeChapter(title=secrets.token_urlsafe(90), start_seconds=number * 61.5) for number in range(100)
    ]
    entry = EpisodeEntry(
        id="f" * 32,
        title="Many chapters",
        description="Chapter titles that do not compress.",
        created_at=iso_timestamp(moment),
        audio_blob_name="2026/01/02/f.mp3",
        format="mp3",
        bytes=1000,
        duration_seconds=6200.0,
        transcript_blob_name="2026/01/02/f.json",
        chapters=chapters,
    )
    name = await app.shows.add_episode("many-chapters", entry)
    ((listed, _, metadata),) = await app.job_documents.first(name, 1)
    assert listed == name
    assert ENTRY_METADATA not in metadata  # too large for metadata: the feed reads the blob

    (episode,) = podcastparser.parse(feed_url, io.BytesIO((await get_feed(feed_url)).body))["episodes"]
    assert episode["chapters"] == [{"start": int(c.start_seconds), "title": c.title} for c in chapters]


async def test_concurrent_narrations_into_one_show_all_appear(
    jobs_env: dict[str, str], azurite: AzuriteServer
) -> None:
    feed_url = await create_show("busy")
    texts = [f"Item number {n} of the busy show." for n in range(6)]

    results = await asyncio.gather(*(narrated({"text": text, "show": "busy"}) for text in texts))
    queued = await narrate(
        {"text": "A queued item of the busy show.", "show": "busy"}, {"Prefer": "respond-async"}
    )
    assert queued.status == 202, queued.body
    with QueueClient.from_connection_string(azurite.connection_string, jobs_env["NARRATION_QUEUE"]) as client:
        await host.drain(function_app.narration_worker, client)

    ids = {entry.id for entry in feedparser.parse((await get_feed(feed_url)).body).entries}
    assert ids == {r["id"] for r in results} | {queued.json()["id"]}


async def test_an_unknown_or_invalid_show_is_refused_before_anything_is_narrated(
    jobs_env: dict[str, str], azurite: AzuriteServer
) -> None:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        before = {
            c.name: len(list(service.get_container_client(c.name).list_blobs()))
            for c in service.list_containers()
        }

    unknown = await narrate({"text": "Hello there.", "show": "no-such-show"})
    queued = await narrate({"text": "Hello there.", "show": "no-such-show"}, {"Prefer": "respond-async"})
    invalid = await narrate({"text": "Hello there.", "show": "Not A Slug"})

    for answer in (unknown, queued):
        assert answer.status == 404, answer.body
        assert answer.json()["error"]["code"] == "show_not_found"
        assert answer.json()["error"]["field"] == "show"
    assert (invalid.status, invalid.json()["error"]["field"]) == (400, "show")
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        after = {
            c.name: len(list(service.get_container_client(c.name).list_blobs()))
            for c in service.list_containers()
        }
    assert after == before
    bad_put = await put_show("Bad_Slug", {"title": "x"})
    assert (bad_put.status, bad_put.json()["error"]["field"]) == (400, "show")
    no_title = await put_show("fine", {"author": "x"})
    assert (no_title.status, no_title.json()["error"]["field"]) == (400, "title")


async def test_rotated_wrong_and_missing_tokens_are_the_same_404_and_never_logged(
    app_env: dict[str, str], captured: list[logging.LogRecord]
) -> None:
    old_url = await create_show("secret-show")
    old_token = parse_qs(urlsplit(old_url).query)["token"][0]
    assert (await get_feed(old_url)).status == 200

    rotated = await host.call_http(
        function_app.rotate_show_token,
        host.http_request("POST", "shows/{show}/token", route_params={"show": "secret-show"}),
    )
    assert rotated.status == 200
    new_url = rotated.json()["feed_url"]
    new_token = parse_qs(urlsplit(new_url).query)["token"][0]
    assert new_token != old_token
    assert (await get_feed(new_url)).status == 200

    refusals = [
        await get_feed(old_url),
        await get_feed(with_token(new_url, new_token[:-1] + ("A" if new_token[-1] != "A" else "B"))),
        await get_feed(new_url.split("?", 1)[0]),
        await get_feed(with_token(new_url.replace("secret-show", "other-show"), new_token)),
    ]
    assert {(answer.status, answer.body) for answer in refusals} == {(404, refusals[0].body)}
    assert refusals[0].json()["error"]["code"] == "show_not_found"
    invalid = await get_feed(with_token(new_url.replace("secret-show", "Secret"), new_token))
    assert (invalid.status, invalid.json()["error"]["field"]) == (400, "show")

    formatter = logging.Formatter("%(name)s %(message)s")
    shown = "\n".join(formatter.format(record) + repr(record.args) for record in captured)
    assert "secret-show" in shown  # the capture sees the service's own records
    assert old_token not in shown
    assert new_token not in shown


async def test_concurrent_creates_of_one_show_keep_one_token(app_env: dict[str, str]) -> None:
    answers = await asyncio.gather(*(put_show("raced", {"title": f"Title {n}"}) for n in range(5)))

    assert sorted(a.status for a in answers) == [200, 200, 200, 200, 201]
    (created,) = [a for a in answers if a.status == 201]
    feed = await get_feed(created.json()["feed_url"])
    assert feed.status == 200
    assert feedparser.parse(feed.body).feed.title in {f"Title {n}" for n in range(5)}


async def test_a_document_in_a_shows_folder_becomes_an_episode(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, azurite: AzuriteServer
) -> None:
    monkeypatch.setenv("NARRATION_INPUT_CONTAINER", INPUT)
    feed_url = await create_show("uploads")
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        container = service.get_container_client(INPUT)
        if not container.exists():
            container.create_container()
        streams = []
        for name in ("shows/uploads/field notes.txt", "shows/nobody/notes.txt"):
            blob = container.get_blob_client(name)
            blob.upload_blob(b"The river bends because water is lazy.", overwrite=True)
            streams.append(
                host.blob_input_stream(
                    INPUT, name, blob.download_blob().readall(), etag=blob.get_blob_properties().etag
                )
            )
    for stream in streams:
        await host.call(function_app.narrate_document, stream)

    (entry,) = feedparser.parse((await get_feed(feed_url)).body).entries
    assert entry.title == "field notes"
    assert entry.enclosures[0].href.split("?", 1)[0].endswith("/shows/uploads/field%20notes.mp3")
    assert entry.enclosures[0].type == "audio/mpeg"

    # Saved again with other text: its audio is replaced, and the feed lists the new narration only.
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        blob = service.get_container_client(INPUT).get_blob_client("shows/uploads/field notes.txt")
        blob.upload_blob(b"Mountains rise slowly, a little every year, and wear away again.", overwrite=True)
        etag = blob.get_blob_properties().etag
        again = host.blob_input_stream(INPUT, blob.blob_name, blob.download_blob().readall(), etag=etag)
    await host.call(function_app.narrate_document, again)
    (newer,) = feedparser.parse((await get_feed(feed_url)).body).entries
    assert newer.id != entry.id
    code, data, _ = http("GET", newer.enclosures[0].href)
    assert (code, len(data)) == (200, int(newer.enclosures[0].length))
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        outputs = service.get_container_client(app_env["NARRATION_OUTPUT_CONTAINER"])
        error = json.loads(outputs.get_blob_client("shows/nobody/notes.error.json").download_blob().readall())
    assert (error["error"]["code"], error["error"]["field"], error["final"]) == (
        "show_not_found",
        "show",
        True,
    )


async def test_a_narration_whose_episode_cannot_be_written_fails_and_leaves_nothing(
    app_env: dict[str, str], azurite: AzuriteServer
) -> None:
    switch = StorageSwitch()
    function_app.graph.use(
        lambda: App(
            Settings.from_env(),
            blob_options=FAST_FAILING,
            client_kwargs={"transport": SwitchedTransport(switch)},
        )
    )
    try:
        feed_url = await create_show("fragile")
        switch.stop_at("PUT", "/shows/fragile/episodes/")  # Storage goes away as the episode is written

        async def come_back() -> None:
            while not switch.stopped:
                await asyncio.sleep(0.01)
            switch.start()  # in time for the clean-up

        returning = asyncio.create_task(come_back())
        answer = await narrate({"text": "This episode will not make it.", "show": "fragile"})
        await returning

        assert answer.status == 503, answer.body
        assert answer.json()["error"]["code"] == "storage_unavailable"
        assert blobs_in(azurite, app_env["NARRATION_OUTPUT_CONTAINER"]) == []
        assert feedparser.parse((await get_feed(feed_url)).body).entries == []
    finally:
        await function_app.graph.aclose()
        function_app.graph.use(App.from_env)
