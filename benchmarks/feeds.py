"""Feed build benchmark: a show with 10,000 episodes in its index, against a real Azurite.

``python -m benchmarks.feeds [--episodes 10000] [--builds 50] [--limit 100] [--check] [--json PATH]``
starts its own Azurite, creates a show through :class:`~podcast.services.shows.ShowService`
(the app's object graph, :class:`~podcast.app.App`), writes ``--episodes`` entries into its
index with the service's own :meth:`~podcast.services.shows.ShowService.add_episode` (64 at
a time, as that many narrations finishing together would), then measures:

1. **Feed build time** (``--builds`` times): the whole of
   :meth:`~podcast.services.shows.ShowService.feed` with the limit (the show record, one
   List Blobs call for the newest ``--limit`` entries, every link signed, the XML written).
   Target: 95th percentile at most 500 ms.
2. **A poll answered 304** (the app sent the feed's ETag): the record and one listing only.

Each entry carries its content in its blob's metadata, so a build reads no entry blob; the
links are signed in one batch (:meth:`~podcast.storage.blobs.BlobStore.read_urls`).
3. For comparison, **listing every entry** of the show once (what a feed without the
   index's order and limit would have to do at least).

The feed of the last build is parsed with feedparser to check it holds ``--limit`` items,
newest first. Exit status 0 unless ``--check`` is given and the target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser

from podcast.app import App
from podcast.models import parse_show
from podcast.settings import FeedSettings, RequestLimits, Settings, StorageSettings
from podcast.wire import EpisodeEntry, iso_timestamp
from testkit.azurite import AzuriteServer

TARGET_P95_MS = 500.0
SLUG = "bench-show"
WRITERS = 64


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _entry(number: int, start: datetime) -> EpisodeEntry:
    created = start + timedelta(minutes=number)
    narration_id = f"{number:032x}"
    base = f"{created:%Y/%m/%d}/{narration_id}"
    return EpisodeEntry(
        id=narration_id,
        title=f"Daily digest & notes #{number} <{created:%Y-%m-%d}>",
        description="Today we talk about rivers, and why they bend the way they do. " * 8,
        created_at=iso_timestamp(created),
        audio_blob_name=f"{base}.mp3",
        format="mp3",
        bytes=1_500_000 + number,
        duration_seconds=180.0 + number % 60,
        transcript_blob_name=f"{base}.json",
        captions_blob_name=f"{base}.vtt",
        srt_blob_name=f"{base}.srt",
    )


async def _run(args: argparse.Namespace, azurite: AzuriteServer) -> dict[str, Any]:
    storage = StorageSettings(connection_string=azurite.connection_string, output_container="bench-out")
    settings = Settings(storage=storage, feeds=FeedSettings(max_items=max(args.limit, 100)))
    app = App(settings)
    try:
        shows = app.shows
        created = await shows.put(SLUG, parse_show({"title": "Benchmark show"}, RequestLimits()))
        assert created.token is not None
        token = created.token

        start = datetime(2020, 1, 1, tzinfo=UTC)
        gate = asyncio.Semaphore(WRITERS)

        async def add(number: int) -> None:
            async with gate:
                await shows.add_episode(SLUG, _entry(number, start))

        began = time.perf_counter()
        await asyncio.gather(*(add(n) for n in range(args.episodes)))
        write_seconds = time.perf_counter() - began

        feed_url = f"http://localhost/api/shows/{SLUG}/feed.xml?token={token}"
        identity = f"localhost/api/shows/{SLUG}/feed.xml"

        async def build(if_none_match: str | None = None) -> tuple[float, Any]:
            began = time.perf_counter()
            feed = await shows.feed(
                SLUG,
                token,
                limit=args.limit,
                feed_url=feed_url,
                feed_identity=identity,
                if_none_match=if_none_match,
            )
            return (time.perf_counter() - began) * 1000, feed

        await build()  # warm: connections, the container client
        builds: list[float] = []
        last = None
        for _ in range(args.builds):
            elapsed, last = await build()
            builds.append(elapsed)
        assert last is not None
        assert last.body is not None
        polls = [(await build(last.etag))[0] for _ in range(args.builds)]

        began = time.perf_counter()
        container = app.blob_service.get_container_client(settings.jobs.jobs_container)
        count = 0
        async for _blob in container.list_blobs(name_starts_with=f"shows/{SLUG}/episodes/"):
            count += 1
        list_all_ms = (time.perf_counter() - began) * 1000

        parsed = feedparser.parse(last.body)
        ids = [entry.id for entry in parsed.entries]
        newest = [f"{n:032x}" for n in range(args.episodes - 1, args.episodes - 1 - args.limit, -1)]
        return {
            "episodes": args.episodes,
            "limit": args.limit,
            "builds": args.builds,
            "write_seconds": round(write_seconds, 1),
            "build_ms": {
                "p50": round(statistics.median(builds), 1),
                "p95": round(_percentile(builds, 0.95), 1),
                "max": round(max(builds), 1),
            },
            "not_modified_ms": {
                "p50": round(statistics.median(polls), 1),
                "p95": round(_percentile(polls, 0.95), 1),
            },
            "list_every_entry_ms": round(list_all_ms, 1),
            "listed": count,
            "feed_bytes": len(last.body),
            "items": len(parsed.entries),
            "newest_first": ids == newest,
        }
    finally:
        await app.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--builds", type=int, default=50)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--check", action="store_true", help="exit 1 when the p95 target is missed")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder, AzuriteServer(Path(folder)) as azurite:
        figures = asyncio.run(_run(args, azurite))
    build = figures["build_ms"]
    print(
        f"feed of {figures['items']} items from an index of {figures['episodes']:,} episodes "
        f"({figures['feed_bytes']:,} bytes, newest first: {figures['newest_first']})"
    )
    print(f"  index written in {figures['write_seconds']} s ({WRITERS} writers)")
    print(
        f"  build: p50 {build['p50']} ms, p95 {build['p95']} ms, max {build['max']} ms "
        f"over {figures['builds']} builds (target p95 <= {TARGET_P95_MS:.0f} ms)"
    )
    polls = figures["not_modified_ms"]
    print(f"  304 poll: p50 {polls['p50']} ms, p95 {polls['p95']} ms")
    listed = f"{figures['list_every_entry_ms']} ms ({figures['listed']:,})"
    print(f"  for comparison, listing every entry once: {listed}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    passed = (
        build["p95"] <= TARGET_P95_MS and figures["newest_first"] and figures["items"] == figures["limit"]
    )
    print("PASS" if passed else "FAIL")
    return 0 if passed or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
