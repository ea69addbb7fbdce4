"""The DocumentStore contract, run against the real store and the fake alike.

Every test runs twice: on :class:`~podcast.storage.documents.JsonDocuments` over Azurite
and on :class:`testkit.fakes.InMemoryDocuments`. Passing both is what entitles the unit
tests of the job state machine (``tests/unit/test_job_state_machine.py``) to trust the fake:
whatever the fake promises about missing names, create-only writes, If-Match ETags,
conditional deletes and concurrency, Blob Storage does too.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob.aio import BlobServiceClient

from podcast.storage.documents import Container, DocumentStore, JsonDocuments
from testkit.azurite import AzuriteServer
from testkit.fakes import InMemoryDocuments


@pytest.fixture(params=["in-memory", pytest.param("azurite", marks=pytest.mark.azurite)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[DocumentStore]:
    """A fresh, empty document store: the fake, or a container of its own on Azurite
    (deleted afterwards)."""
    if request.param == "in-memory":
        yield InMemoryDocuments()
        return
    azurite: AzuriteServer = request.getfixturevalue("azurite")
    name = f"contract-{uuid.uuid4().hex[:20]}"
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        try:
            yield JsonDocuments(Container(service.get_container_client(name)))
        finally:
            with contextlib.suppress(ResourceNotFoundError):
                await service.delete_container(name)


async def test_a_missing_name_reads_as_none(store: DocumentStore) -> None:
    assert await store.get("jobs/missing.json") is None


async def test_a_document_comes_back_as_written_with_an_etag(store: DocumentStore) -> None:
    document = {"id": "a", "n": 1, "nested": {"list": [1, 2.5, None, True]}}
    assert await store.put("jobs/a.json", document)
    loaded = await store.get("jobs/a.json")
    assert loaded is not None
    assert loaded[0] == document
    assert isinstance(loaded[1], str)
    assert loaded[1]


async def test_create_only_writes_once(store: DocumentStore) -> None:
    assert await store.put("idempotency/k.json", {"job": 1}, create=True) is True
    assert await store.put("idempotency/k.json", {"job": 2}, create=True) is False
    loaded = await store.get("idempotency/k.json")
    assert loaded is not None
    assert loaded[0] == {"job": 1}


async def test_an_unconditional_put_replaces_the_document(store: DocumentStore) -> None:
    assert await store.put("n.json", {"v": 1})
    assert await store.put("n.json", {"v": 2})
    loaded = await store.get("n.json")
    assert loaded is not None
    assert loaded[0] == {"v": 2}


async def test_put_with_the_right_etag_writes_and_a_wrong_or_stale_one_does_not(store: DocumentStore) -> None:
    await store.put("r.json", {"v": 1})
    first = await store.get("r.json")
    assert first is not None
    assert await store.put("r.json", {"v": 2}, etag=first[1]) is True
    # first[1] is stale now: the write above changed the ETag.
    assert await store.put("r.json", {"v": 3}, etag=first[1]) is False
    assert await store.put("r.json", {"v": 4}, etag='"0x8D000000DEADBEE"') is False
    loaded = await store.get("r.json")
    assert loaded is not None
    assert loaded[0] == {"v": 2}


async def test_replace_returns_the_new_etag_that_the_next_replace_needs(store: DocumentStore) -> None:
    await store.put("chain.json", {"v": 0})
    loaded = await store.get("chain.json")
    assert loaded is not None
    first = await store.replace("chain.json", {"v": 1}, etag=loaded[1])
    assert first is not None
    assert first != loaded[1]
    second = await store.replace("chain.json", {"v": 2}, etag=first)
    assert second is not None
    assert await store.replace("chain.json", {"v": 3}, etag=first) is None, "first is stale now"
    assert await store.replace("chain.json", {"v": 4}, etag=loaded[1]) is None
    again = await store.get("chain.json")
    assert again == ({"v": 2}, second), "the ETag returned is the blob's ETag"
    await store.delete("chain.json")
    assert await store.replace("chain.json", {"v": 5}, etag=second) is None
    assert await store.get("chain.json") is None


async def test_exactly_one_of_ten_concurrent_replaces_wins_and_gets_the_etag(store: DocumentStore) -> None:
    await store.put("owner.json", {"owner": None})
    loaded = await store.get("owner.json")
    assert loaded is not None

    tags = await asyncio.gather(
        *(store.replace("owner.json", {"owner": i}, etag=loaded[1]) for i in range(10))
    )

    winners = [(i, tag) for i, tag in enumerate(tags) if tag is not None]
    assert len(winners) == 1
    [(owner, tag)] = winners
    assert await store.get("owner.json") == ({"owner": owner}, tag)


async def test_put_with_an_etag_on_a_deleted_or_missing_blob_is_refused(store: DocumentStore) -> None:
    await store.put("d.json", {"v": 1})
    loaded = await store.get("d.json")
    assert loaded is not None
    await store.delete("d.json")
    assert await store.put("d.json", {"v": 2}, etag=loaded[1]) is False
    assert await store.get("d.json") is None
    assert await store.put("never.json", {"v": 1}, etag=loaded[1]) is False
    assert await store.get("never.json") is None


async def test_delete_with_a_stale_etag_leaves_the_blob_and_with_the_right_one_removes_it(
    store: DocumentStore,
) -> None:
    await store.put("c.json", {"v": 1})
    stale = await store.get("c.json")
    assert stale is not None
    await store.put("c.json", {"v": 2})
    current = await store.get("c.json")
    assert current is not None
    await store.delete("c.json", etag=stale[1])  # changed meanwhile: a no-op, no error
    still = await store.get("c.json")
    assert still is not None
    assert still[0] == {"v": 2}
    await store.delete("c.json", etag=current[1])
    assert await store.get("c.json") is None


async def test_deleting_a_missing_name_is_fine(store: DocumentStore) -> None:
    await store.delete("gone.json")
    await store.delete("gone.json", etag='"0x8D000000DEADBEE"')
    assert await store.get("gone.json") is None


async def test_the_etag_changes_on_every_write(store: DocumentStore) -> None:
    etags: list[str] = []
    await store.put("e.json", {"v": 0}, create=True)
    for value in range(1, 4):
        loaded = await store.get("e.json")
        assert loaded is not None
        etags.append(loaded[1])
        if value % 2:
            assert await store.put("e.json", {"v": value}, etag=loaded[1])
        else:
            assert await store.put("e.json", {"v": value})  # the same document would do, too
    loaded = await store.get("e.json")
    assert loaded is not None
    etags.append(loaded[1])
    assert len(set(etags)) == len(etags) == 4
    # Even rewriting identical content makes a new ETag.
    assert await store.put("e.json", loaded[0])
    again = await store.get("e.json")
    assert again is not None
    assert again[1] != loaded[1]


async def test_exactly_one_of_ten_concurrent_create_only_puts_wins(store: DocumentStore) -> None:
    outcomes = await asyncio.gather(
        *(store.put("idempotency/race.json", {"winner": i}, create=True) for i in range(10))
    )
    assert outcomes.count(True) == 1
    loaded = await store.get("idempotency/race.json")
    assert loaded is not None
    assert loaded[0] == {"winner": outcomes.index(True)}


async def test_exactly_one_of_ten_concurrent_if_match_puts_wins(store: DocumentStore) -> None:
    await store.put("cache/k.json", {"state": "pending"})
    loaded = await store.get("cache/k.json")
    assert loaded is not None
    outcomes = await asyncio.gather(
        *(store.put("cache/k.json", {"writer": i}, etag=loaded[1]) for i in range(10))
    )
    assert outcomes.count(True) == 1
    final = await store.get("cache/k.json")
    assert final is not None
    assert final[0] == {"writer": outcomes.index(True)}


async def test_documents_round_trip_unicode(store: DocumentStore) -> None:
    document = {
        "text": "Grüße, 你好, こんにちは, مرحبا, emoji 🎙️, combining é, zero\u200bwidth",
        "keys are unicode too: ß": ["ä", "\u00e9", "🎧", "\U0001f3a4"],
        "escapes": 'quote " backslash \\ newline \n tab \t',
    }
    assert await store.put("jobs/unicode.request.json", document)
    loaded = await store.get("jobs/unicode.request.json")
    assert loaded is not None
    assert loaded[0] == document


async def test_changing_a_dict_after_put_or_get_does_not_change_the_stored_document(
    store: DocumentStore,
) -> None:
    document: dict[str, object] = {"list": [1], "nested": {"v": 1}}
    await store.put("alias.json", document)
    document["list"] = [2]
    loaded = await store.get("alias.json")
    assert loaded is not None
    loaded[0]["nested"]["v"] = 99
    again = await store.get("alias.json")
    assert again is not None
    assert again[0] == {"list": [1], "nested": {"v": 1}}
