"""A show's feed document (podcast.services.feeds) read by feed clients nobody here wrote
(feedparser, podcastparser) and by a strict XML parser, with hostile titles and descriptions;
the show's request validation; episode names; the feed token in logs."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import feedparser
import podcastparser
import pytest
from lxml import etree

import function_app
from podcast.errors import RequestValidationError
from podcast.http.openapi import build_definition
from podcast.logs import redact
from podcast.models import parse_request, parse_show
from podcast.services.feeds import FeedItem, duration, npt, render_feed, xml_text
from podcast.services.shows import episode_name
from podcast.settings import RequestLimits
from podcast.wire import EpisodeChapter, EpisodeEntry, ShowDetails

HOSTILE = "Tom & Jerry <b>bold</b> ]]> \"quoted\" 'single' 🎙️🚀 שלום עולם مرحبا \u202eevil\u202c"
CONTROLS = "bell\x07 nul\x00 esc\x1b vt\x0b ff\x0c lone\ud800 nonchar\ufffe end"
BUILT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CHAPTERS = [(HOSTILE, 0.0), ("Oxbow lakes", 61.2346), ("Deltas", 3723.5)]


def entry(
    number: int, *, title: str | None = HOSTILE, description: str = HOSTILE, **extra: Any
) -> EpisodeEntry:
    created = BUILT - timedelta(hours=number)
    fields: dict[str, Any] = {
        "id": f"{number:032x}",
        "title": title,
        "description": description,
        "created_at": created.isoformat().replace("+00:00", "Z"),
        "audio_blob_name": f"2026/11/25/{number:032x}.mp3",
        "format": "mp3",
        "bytes": 12_345 + number,
        "duration_seconds": 3725.2 + number,
        "transcript_blob_name": f"2026/11/25/{number:032x}.json",
        "captions_blob_name": f"2026/11/25/{number:032x}.vtt",
        "srt_blob_name": f"2026/11/25/{number:032x}.srt",
    }
    return EpisodeEntry.model_validate(fields)


def item(value: EpisodeEntry, chapters: bool = False) -> FeedItem:
    base = f"https://acct.blob.core.windows.net/out/{value.id}"
    return FeedItem(
        entry=value,
        audio_url=f"{base}.mp3?sv=1&sp=r&sig=abc%2B&se=x",
        transcript_url=f"{base}.json?sp=r&sig=t",
        captions_url=f"{base}.vtt?sp=r&sig=v",
        srt_url=f"{base}.srt?sp=r&sig=s",
        chapters_url=f"{base}.chapters.json?sp=r&sig=c" if chapters else None,
    )


SHOW = ShowDetails(
    title=HOSTILE,
    description=f"{HOSTILE}\nsecond line",
    author="Ada & Co <ada@example.com>",
    language="he",
    artwork_url="https://example.com/art.png?a=1&b=2",
    explicit=False,
    category="Technology",
    owner_email="ada@example.com",
)
FEED_URL = "https://app.example.net/api/shows/daily/feed.xml?token=tok&x=1"
IDENTITY = "app.example.net/api/shows/daily/feed.xml"


@pytest.fixture(scope="module")
def feed() -> bytes:
    chaptered = entry(1).model_copy(
        update={"chapters": [EpisodeChapter(title=title, start_seconds=start) for title, start in CHAPTERS]}
    )
    items = [item(chaptered, chapters=True), item(entry(2, description=CONTROLS)), item(entry(3, title=None))]
    return render_feed(
        SHOW,
        items,
        feed_url=FEED_URL,
        feed_identity="app.example.net/api/shows/daily/feed.xml",
        built_at=BUILT,
    )


def test_a_strict_xml_parser_reads_the_hostile_feed_back_exactly(feed: bytes) -> None:
    root = etree.fromstring(feed, etree.XMLParser(recover=False, resolve_entities=False))
    channel = root.find("channel")
    assert channel is not None
    assert channel.findtext("title") == HOSTILE
    titles = [element.findtext("title") for element in channel.iterfind("item")]
    assert titles[:2] == [HOSTILE, HOSTILE]
    assert titles[2] == "Narration of 2026-11-25 09:00 UTC"
    descriptions = [element.findtext("description") for element in channel.iterfind("item")]
    assert descriptions[1] == "bell nul esc vt ff lone nonchar end"  # only what XML cannot hold is gone
    assert b"<![CDATA[" not in feed  # ]]> is escaped text, never a section end
    assert feed.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")


def test_feedparser_reads_the_channel_items_enclosures_and_guids(feed: bytes) -> None:
    parsed = feedparser.parse(feed)

    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "rss20"
    assert parsed.feed.title == HOSTILE
    assert parsed.feed.language == "he"
    assert parsed.feed.image.href == "https://example.com/art.png?a=1&b=2"
    assert parsed.feed.author_detail.name.startswith("Ada & Co")
    assert [e.id for e in parsed.entries] == [f"{n:032x}" for n in (1, 2, 3)]
    assert all(e.guidislink is False for e in parsed.entries)
    first = parsed.entries[0]
    assert first.title == HOSTILE
    (enclosure,) = first.enclosures
    assert enclosure.href == item(entry(1)).audio_url
    assert enclosure.type == "audio/mpeg"
    assert enclosure.length == str(12_346)
    assert first.itunes_duration == "01:02:07"  # 3726.2 s, rounded up
    assert first.published_parsed[:5] == (2026, 11, 25, 11, 0)


def test_podcastparser_reads_durations_transcripts_and_chapters(feed: bytes) -> None:
    parsed = podcastparser.parse(FEED_URL, io.BytesIO(feed))

    assert parsed["title"] == HOSTILE
    assert parsed["cover_url"] == "https://example.com/art.png?a=1&b=2"
    episodes = parsed["episodes"]
    assert [e["guid"] for e in episodes] == [f"{n:032x}" for n in (1, 2, 3)]
    assert [e["total_time"] for e in episodes] == [3727, 3728, 3729]
    first = episodes[0]
    (enclosure,) = first["enclosures"]
    assert (enclosure["url"], enclosure["mime_type"], enclosure["file_size"]) == (
        item(entry(1)).audio_url,
        "audio/mpeg",
        12_346,
    )
    assert first["title"] == HOSTILE
    assert first["published"] == int((BUILT - timedelta(hours=1)).timestamp())


def test_podcastparser_reads_the_transcript_and_chapters_links_and_the_simple_chapters(feed: bytes) -> None:
    # podcastparser 0.6.11 knows the podcast: namespace only by its old URI (the namespace's
    # GitHub page): it reads the links the feed repeats under that URI, the WebVTT transcript
    # (it keeps the last one) and the chapters file, and the Podlove Simple Chapters.
    first, second, third = podcastparser.parse(FEED_URL, io.BytesIO(feed))["episodes"]

    assert first["transcript_url"] == item(entry(1)).captions_url
    assert first["chapters_json_url"] == item(entry(1), chapters=True).chapters_url
    assert "chapters_json_url" not in second
    # Normal Play Time read back in whole seconds (podcastparser drops the fraction).
    assert first["chapters"] == [{"start": int(start), "title": title} for title, start in CHAPTERS]
    assert "chapters" not in second
    no_captions = item(entry(4))
    only_json = FeedItem(
        entry=no_captions.entry, audio_url=no_captions.audio_url, transcript_url="https://x/t.json"
    )
    rendered = render_feed(SHOW, [only_json], feed_url=FEED_URL, feed_identity=IDENTITY, built_at=BUILT)
    (alone,) = podcastparser.parse(FEED_URL, io.BytesIO(rendered))["episodes"]
    assert alone["transcript_url"] == "https://x/t.json"
    assert third["transcript_url"] == item(entry(3)).captions_url


def test_the_simple_chapters_start_at_the_narrations_times_to_the_millisecond(feed: bytes) -> None:
    root = etree.fromstring(feed)
    psc = "{http://podlove.org/simple-chapters}"
    first, second = root.findall("channel/item")[:2]
    (chapters,) = first.findall(f"{psc}chapters")
    assert chapters.get("version") == "1.2"
    assert [(c.get("title"), c.get("start")) for c in chapters] == [
        (HOSTILE, "00:00:00.000"),
        ("Oxbow lakes", "00:01:01.235"),
        ("Deltas", "01:02:03.500"),
    ]
    assert second.find(f"{psc}chapters") is None
    assert npt(3599.9996) == "01:00:00.000"


def test_feedparser_reads_the_transcript_and_chapters_links(feed: bytes) -> None:
    parsed = feedparser.parse(feed)
    assert not parsed.bozo, parsed.get("bozo_exception")
    first, second, _ = parsed.entries

    assert first.podcast_transcript == {"url": item(entry(1)).transcript_url, "type": "application/json"}
    assert first.podcast_chapters == {
        "url": item(entry(1), chapters=True).chapters_url,
        "type": "application/json+chapters",
    }
    assert "podcast_chapters" not in second
    # The Podlove Simple Chapters, which feedparser knows too.
    assert [(c.title, c.start_parsed.total_seconds()) for c in first.psc_chapters.chapters] == [
        (title, round(start, 3)) for title, start in CHAPTERS
    ]
    assert "psc_chapters" not in second


def test_every_transcript_has_its_type_and_the_chapters_link_only_when_there_is_one(feed: bytes) -> None:
    root = etree.fromstring(feed)
    podcast = "{https://podcastindex.org/namespace/1.0}"
    first, second = root.findall("channel/item")[:2]
    transcripts = [(t.get("type"), t.get("url")) for t in first.iterfind(f"{podcast}transcript")]
    expected = item(entry(1))
    assert transcripts == [
        ("text/vtt", expected.captions_url),
        ("application/x-subrip", expected.srt_url),
        ("application/json", expected.transcript_url),
    ]
    chapters = first.find(f"{podcast}chapters")
    assert chapters is not None
    assert chapters.get("type") == "application/json+chapters"
    assert second.find(f"{podcast}chapters") is None
    # The same links under the namespace's old URI, the WebVTT last (podcastparser keeps the last).
    legacy = "{https://github.com/Podcastindex-org/podcast-namespace/blob/main/docs/1.0.md}"
    repeated = [(t.get("type"), t.get("url")) for t in first.iterfind(f"{legacy}transcript")]
    assert repeated == transcripts[::-1]
    assert [c.get("url") for c in first.iterfind(f"{legacy}chapters")] == [chapters.get("url")]
    assert second.find(f"{legacy}chapters") is None
    guid = root.findtext(f"channel/{podcast}guid")
    assert guid is not None
    assert len(guid) == 36


def test_xml_text_removes_only_what_xml_cannot_carry() -> None:
    assert xml_text("a\tb\nc\rd") == "a\tb\nc\rd"
    assert xml_text(CONTROLS) == "bell nul esc vt ff lone nonchar end"
    assert xml_text(HOSTILE) == HOSTILE


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0.0, "00:00:01"), (0.2, "00:00:01"), (59.0, "00:00:59"), (59.001, "00:01:00")]
)
def test_durations_are_whole_seconds_rounded_up(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


def test_episode_names_sort_newest_first_and_repeat_for_the_same_narration() -> None:
    moments = [BUILT + timedelta(milliseconds=n) for n in (0, 1, 1000, 86_400_000)]
    names = [episode_name("daily", f"{n:032x}", moment) for n, moment in enumerate(moments)]

    assert sorted(names) == names[::-1]
    assert episode_name("daily", f"{0:032x}", moments[0]) == names[0]


@pytest.mark.parametrize("slug", ["a", "daily-digest", "a" * 64, "0-9"])
def test_show_slugs_that_are_accepted(slug: str) -> None:
    assert parse_request({"text": "Hello there.", "show": slug}, RequestLimits()).show == slug


@pytest.mark.parametrize("slug", ["A", "-a", "a-", "a" * 65, "a_b", "a/b", "a b", "é", 5, True, ["a"]])
def test_show_slugs_that_are_refused_name_the_field(slug: object) -> None:
    with pytest.raises(RequestValidationError) as refused:
        parse_request({"text": "Hello there.", "show": slug}, RequestLimits())
    assert refused.value.field == "show"
    assert refused.value.http_status == 400


def test_the_show_is_part_of_the_reuse_key_only_when_given() -> None:
    limits = RequestLimits()
    plain = parse_request({"text": "Hello there."}, limits)
    assert parse_request({"text": "Hello there.", "show": ""}, limits).fingerprint() == plain.fingerprint()
    assert parse_request({"text": "Hello there.", "show": "a"}, limits).fingerprint() != plain.fingerprint()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": " "}, "title"),
        ({"title": "x\x07"}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "x", "description": "d" * 4001}, "description"),
        ({"title": "x", "language": "not a tag"}, "language"),
        ({"title": "x", "artwork_url": "http://example.com/a.png"}, "artwork_url"),
        ({"title": "x", "artwork_url": "https://exa mple.com/a.png"}, "artwork_url"),
        ({"title": "x", "explicit": "yes"}, "explicit"),
        ({"title": "x", "owner_email": "nobody"}, "owner_email"),
        ({"title": "x", "artwork": "https://example.com/a.png"}, "artwork"),
        ({"title": 5}, "title"),
        ({"title": "x", "category": "Nonsense"}, "category"),
        ({"title": "x", "category": "Arts > Golf"}, "category"),
        ({"title": "x", "category": "Technology > Gadgets"}, "category"),
    ],
)
def test_invalid_shows_are_refused_naming_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(RequestValidationError) as refused:
        parse_show(body, RequestLimits())
    assert refused.value.field == field


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("Technology", "Technology"),
        ("health and fitness", "Health & Fitness"),
        ("ARTS > books", "Arts > Books"),
        ("Arts/Books", "Arts > Books"),
        ("Books", "Arts > Books"),
        ("how-to", "Education > How To"),
        ("Religion", "Religion & Spirituality > Religion"),
        ("Kids & Family", "Kids & Family"),
    ],
)
def test_a_category_is_stored_as_apple_spells_it(given: str, stored: str) -> None:
    assert parse_show({"title": "x", "category": given}, RequestLimits()).category == stored


def test_an_unknown_category_is_refused_with_the_nearest_name() -> None:
    with pytest.raises(RequestValidationError) as refused:
        parse_show({"title": "x", "category": "Tecnology"}, RequestLimits())
    assert refused.value.field == "category"
    assert "did you mean 'Technology'?" in refused.value.message


def test_a_subcategory_is_nested_in_its_category_as_apple_reads_it() -> None:
    show = SHOW.model_copy(update={"category": "Arts > Books"})
    rendered = render_feed(show, [], feed_url=FEED_URL, feed_identity=IDENTITY, built_at=BUILT)
    root = etree.fromstring(rendered)
    itunes = "{http://www.itunes.com/dtds/podcast-1.0.dtd}category"
    (top,) = root.find("channel").findall(itunes)  # type: ignore[union-attr]
    assert top.get("text") == "Arts"
    assert [sub.get("text") for sub in top.findall(itunes)] == ["Books"]
    parsed = feedparser.parse(rendered)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert [(t.term, t.scheme) for t in parsed.feed.tags][:2] == [
        ("Arts", "http://www.itunes.com/"),
        ("Books", "http://www.itunes.com/"),
    ]


def test_a_valid_show_is_normalized() -> None:
    show = parse_show(
        b'{"title": " Caf\\u0065\\u0301 ", "language": "es-mx", "description": "a\\r\\nb", "category": ""}',
        RequestLimits(),
    )
    assert (show.title, show.language, show.description, show.category) == ("Café", "es-MX", "a\nb", None)


@pytest.mark.parametrize(
    "line",
    [
        "GET https://app.example.net/api/shows/daily/feed.xml?token={t}&limit=5",
        "Request URL: 'https://app.example.net/api/shows/daily/feed.xml?token={t}'",
        "url=/api/shows/daily/feed.xml?limit=1&token={t}",
    ],
)
def test_a_feed_token_in_a_url_is_masked(line: str) -> None:
    token = "Zx9-_Qm3kP0aV7rT2bW8yL5nC1dF6gH4jK0sE3uI7oA"
    masked = redact(line.format(t=token))
    assert token not in masked
    assert "[redacted]" in masked


def test_only_the_feed_is_anonymous_and_every_show_route_is_described() -> None:
    function_app.app.functions_bindings = None  # get_functions() is not idempotent
    try:
        triggers = {
            str(f.get_function_name()): next(
                b for b in json.loads(f.get_function_json())["bindings"] if b["type"] == "httpTrigger"
            )
            for f in function_app.app.get_functions()
            if "httpTrigger" in f.get_function_json()
        }
    finally:
        function_app.app.functions_bindings = None
    routes = {name: (t["route"], tuple(t["methods"]), t["authLevel"]) for name, t in triggers.items()}
    assert routes["put_show"] == ("shows/{show}", ("PUT",), "FUNCTION")
    assert routes["get_show"] == ("shows/{show}", ("GET",), "FUNCTION")
    assert routes["rotate_show_token"] == ("shows/{show}/token", ("POST",), "FUNCTION")
    assert routes["get_show_feed"] == ("shows/{show}/feed.xml", ("GET",), "ANONYMOUS")
    assert [name for name, route in routes.items() if route[2] != "FUNCTION"] == ["get_show_feed"]
    paths = build_definition()["paths"]
    for route, methods, _ in routes.values():
        if route.startswith("shows/"):
            assert {m.lower() for m in methods} <= set(paths[f"/{route}"])
    assert paths["/shows/{show}/feed.xml"]["get"]["security"] == []
