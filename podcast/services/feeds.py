"""A show's podcast feed as RSS 2.0 with the iTunes and Podcasting 2.0 namespaces.

Built with lxml's element tree, which escapes every text and attribute value itself (``&``,
``<``, ``]]>`` and quotes can never end an element or a CDATA section early); what lxml
refuses, characters XML 1.0 cannot carry at all (C0 controls but tab and line breaks, lone
surrogates, U+FFFE and U+FFFF), is removed first by :func:`xml_text`. feedgen was not used:
it knows iTunes' tags but not the ``podcast:`` namespace (transcripts, chapters, guid),
which would have meant writing an extension on top of the same lxml calls. Items also carry
Podlove Simple Chapters (``psc:``) from the episode entry's chapters, and repeat their
``podcast:`` links under the namespace's old URI for podcastparser (see :func:`_item`).

:func:`render_feed` is pure: the service (:mod:`podcast.services.shows`) gathers the show,
its newest episodes and their freshly signed links, and this module only writes them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Final

from podcast.models import CATEGORY_SEPARATOR
from podcast.wire import EpisodeEntry, ShowDetails

if TYPE_CHECKING:
    from lxml import etree

ITUNES_NS: Final = "http://www.itunes.com/dtds/podcast-1.0.dtd"
PODCAST_NS: Final = "https://podcastindex.org/namespace/1.0"
PODCAST_LEGACY_NS: Final = "https://github.com/Podcastindex-org/podcast-namespace/blob/main/docs/1.0.md"
"""The namespace's first URI (its GitHub page), the only one podcastparser 0.6 (gPodder) knows."""
PSC_NS: Final = "http://podlove.org/simple-chapters"
ATOM_NS: Final = "http://www.w3.org/2005/Atom"
CONTENT_TYPE: Final = "application/rss+xml; charset=utf-8"
AUDIO_TYPES: Final = {"mp3": "audio/mpeg", "wav": "audio/wav"}
GENERATOR: Final = "podcast (Azure Functions text-to-podcast)"
_PODCAST_GUID_NAMESPACE: Final = uuid.UUID("ead4c236-bf58-58c6-a2c6-a6b28d128cb6")
"""The Podcasting 2.0 namespace's UUIDv5 namespace for ``podcast:guid``."""
_NSMAP: Final = {
    "itunes": ITUNES_NS,
    "podcast": PODCAST_NS,
    "podcastlegacy": PODCAST_LEGACY_NS,
    "psc": PSC_NS,
    "atom": ATOM_NS,
}
_NOT_XML: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(value: str) -> str:
    """``value`` without the characters XML 1.0 cannot hold (everything else is escaped by lxml)."""
    return _NOT_XML.sub("", value)


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One episode with the links signed for this build."""

    entry: EpisodeEntry
    audio_url: str
    transcript_url: str
    captions_url: str | None = None
    srt_url: str | None = None
    chapters_url: str | None = None


def podcast_guid(feed_identity: str) -> str:
    """The channel's ``podcast:guid``: UUIDv5 of the feed URL without its scheme and token,
    as the namespace prescribes, so it survives token rotation."""
    return str(uuid.uuid5(_PODCAST_GUID_NAMESPACE, feed_identity))


def duration(seconds: float) -> str:
    """``itunes:duration`` as ``HH:MM:SS`` (whole seconds, rounded up so a short clip is not 0)."""
    total = max(1, int(-(-seconds // 1)))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _add(parent: etree._Element, tag: str, text: str | None = None, **attributes: str) -> etree._Element:
    element = parent.makeelement(tag, {key: xml_text(value) for key, value in attributes.items()})
    parent.append(element)
    if text is not None:
        element.text = xml_text(text)
    return element


def _itunes(name: str) -> str:
    return f"{{{ITUNES_NS}}}{name}"


def _podcast(name: str, namespace: str = PODCAST_NS) -> str:
    return f"{{{namespace}}}{name}"


def npt(seconds: float) -> str:
    """A Podlove chapter ``start`` as Normal Play Time ``HH:MM:SS.mmm`` (milliseconds rounded,
    as the MP3's ID3 chapters are)."""
    hours, rest = divmod(round(seconds * 1000), 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


def render_feed(
    show: ShowDetails,
    items: Sequence[FeedItem],
    *,
    feed_url: str,
    feed_identity: str,
    built_at: datetime,
) -> bytes:
    """The feed document (UTF-8 XML with its declaration) of ``show`` with ``items`` in the
    order given (newest first). ``feed_url`` is the URL apps fetch (the channel's link and
    ``atom:link rel=self``); ``feed_identity`` is the token-less identity of ``podcast:guid``."""
    # lxml is loaded on the first feed, not at the app's import (cold starts).
    from lxml import etree

    rss = etree.Element("rss", {"version": "2.0"}, nsmap=_NSMAP)
    channel = _add(rss, "channel")
    _add(channel, "title", show.title)
    _add(channel, "link", feed_url)
    _add(channel, "description", show.description or show.title)
    _add(channel, f"{{{ATOM_NS}}}link", href=feed_url, rel="self", type="application/rss+xml")
    if show.language:
        _add(channel, "language", show.language)
    _add(channel, "generator", GENERATOR)
    _add(channel, "lastBuildDate", format_datetime(built_at, usegmt=True))
    _add(channel, _podcast("guid"), podcast_guid(feed_identity))
    if show.author:
        _add(channel, _itunes("author"), show.author)
    if show.description:
        _add(channel, _itunes("summary"), show.description)
    if show.artwork_url:
        _add(channel, _itunes("image"), href=show.artwork_url)
        image = _add(channel, "image")
        _add(image, "url", show.artwork_url)
        _add(image, "title", show.title)
        _add(image, "link", feed_url)
    if show.category:
        # "Arts > Books" is Apple's nesting: <itunes:category text="Arts"><itunes:category text="Books"/>.
        # The name is the element's text *attribute* (Apple ignores element content).
        top, _, sub = show.category.partition(CATEGORY_SEPARATOR)
        category = _add(channel, _itunes("category"))
        category.set("text", xml_text(top))
        if sub:
            _add(category, _itunes("category")).set("text", xml_text(sub))
    if show.owner_email:
        owner = _add(channel, _itunes("owner"))
        if show.author:
            _add(owner, _itunes("name"), show.author)
        _add(owner, _itunes("email"), show.owner_email)
    _add(channel, _itunes("explicit"), "true" if show.explicit else "false")
    _add(channel, _itunes("type"), "episodic")
    for item in items:
        _item(channel, item, show)
    return bytes(etree.tostring(rss, encoding="UTF-8", xml_declaration=True, pretty_print=False))


def _item(channel: etree._Element, item: FeedItem, show: ShowDetails) -> None:
    entry = item.entry
    published = datetime.fromisoformat(entry.created_at.replace("Z", "+00:00"))
    element = _add(channel, "item")
    _add(element, "title", entry.title or f"Narration of {published:%Y-%m-%d %H:%M} UTC")
    _add(element, "description", entry.description or entry.title or show.title)
    _add(element, "guid", entry.id, isPermaLink="false")
    _add(element, "pubDate", format_datetime(published, usegmt=True))
    _add(element, "enclosure", url=item.audio_url, length=str(entry.bytes), type=AUDIO_TYPES[entry.format])
    _add(element, _itunes("duration"), duration(entry.duration_seconds))
    _add(element, _itunes("episodeType"), "full")
    _add(element, _itunes("explicit"), "true" if show.explicit else "false")
    if item.captions_url:
        _add(element, _podcast("transcript"), url=item.captions_url, type="text/vtt", rel="captions")
    if item.srt_url:
        _add(element, _podcast("transcript"), url=item.srt_url, type="application/x-subrip", rel="captions")
    _add(element, _podcast("transcript"), url=item.transcript_url, type="application/json")
    if item.chapters_url:
        _add(element, _podcast("chapters"), url=item.chapters_url, type="application/json+chapters")
    # The same links again under the namespace's old URI, because podcastparser 0.6 (gPodder and
    # apps built on it) maps podcast: tags only by that URI; apps that know the official one skip
    # an unknown namespace. podcastparser keeps the last transcript it reads, so the most widely
    # played format, WebVTT, comes last.
    legacy: list[tuple[str, str, str | None]] = [(item.transcript_url, "application/json", None)]
    if item.srt_url:
        legacy.append((item.srt_url, "application/x-subrip", "captions"))
    if item.captions_url:
        legacy.append((item.captions_url, "text/vtt", "captions"))
    for url, media_type, rel in legacy:
        attributes = {"url": url, "type": media_type} | ({"rel": rel} if rel else {})
        _add(element, _podcast("transcript", PODCAST_LEGACY_NS), **attributes)
    if item.chapters_url:
        _add(
            element,
            _podcast("chapters", PODCAST_LEGACY_NS),
            url=item.chapters_url,
            type="application/json+chapters",
        )
    if entry.chapters:
        chapters = _add(element, f"{{{PSC_NS}}}chapters", version="1.2")
        for chapter in entry.chapters:
            _add(chapters, f"{{{PSC_NS}}}chapter", start=npt(chapter.start_seconds), title=chapter.title)
