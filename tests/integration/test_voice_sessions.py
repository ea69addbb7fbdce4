"""Sessions kept for a voice (:class:`~podcast.engine.realtime.VoiceSessions`) against
:mod:`testkit.scripted_server`, an independent server: texts of one voice share a connection
as out-of-band responses, configured once; a session that failed is never used again."""

from __future__ import annotations

import itertools

from podcast.engine.realtime import Narrator, VoiceSessions
from podcast.errors import ConnectionLostError
from podcast.settings import RealtimeSettings, realtime_base_url
from testkit.scripted_server import ScriptedServer, audio_event, response_done, tone, transcript_event

POOLED_CEDAR = ["session.update", "response.create", "response.create"]
"""A cedar session configured once, then two responses in it."""


def narrator_for(url: str, retries: int = 0) -> Narrator:
    settings = RealtimeSettings(
        endpoint=realtime_base_url(url),
        api_key="scripted-key",
        response_timeout_seconds=10,
        max_retries=retries,
    )

    async def no_sleep(seconds: float) -> None:
        return None

    return Narrator(settings, sleep=no_sleep, jitter=lambda: 0.0)


def spoken(numbers: itertools.count[int]) -> object:
    """Each response gets its own id, audio and transcript ("Turn 1.", "Turn 2.", ...)."""

    def script(server: ScriptedServer) -> list[object]:
        number = next(numbers)
        rid = f"resp_{number}"
        return [
            {"type": "response.created", "event_id": server.event_id(), "response": {"id": rid}},
            audio_event(server, tone(0.2, 200 + 50 * number), response_id=rid, item_id=f"item_{number}"),
            transcript_event(server, f"Turn {number}.", response_id=rid, item_id=f"item_{number}"),
            response_done(server, response_id=rid),
        ]

    return script


async def test_texts_of_one_voice_share_a_session_as_out_of_band_responses() -> None:
    numbers = itertools.count(1)
    async with ScriptedServer(spoken(numbers)) as server:  # type: ignore[arg-type]
        narrator = narrator_for(server.url)
        try:
            async with VoiceSessions() as sessions:
                first = await narrator.narrate("Turn one.", voice="cedar", sessions=sessions)
                second = await narrator.narrate("Turn two.", voice="cedar", sessions=sessions)
                other = await narrator.narrate("Turn three.", voice="marin", sessions=sessions)
        finally:
            await narrator.close()
        assert (first.transcript, second.transcript, other.transcript) == ("Turn 1.", "Turn 2.", "Turn 3.")
        assert (sessions.opened, sessions.reused) == (2, 1)
        assert len(server.handshake_headers_seen) == 2, "one connection per voice"
    kinds = [event["type"] for event in server.received]
    assert kinds == [
        "session.update",
        "response.create",
        "response.create",
        "session.update",
        "response.create",
    ]
    creates = [event["response"] for event in server.received if event["type"] == "response.create"]
    assert all(create["conversation"] == "none" for create in creates)
    texts = [create["input"][0]["content"][0]["text"] for create in creates]
    assert texts == ["Turn one.", "Turn two.", "Turn three."]
    assert all(create["instructions"] for create in creates)
    updates = [event["session"] for event in server.received if event["type"] == "session.update"]
    assert [u["audio"]["output"]["voice"] for u in updates] == ["cedar", "marin"]


async def test_a_session_that_failed_is_closed_and_a_new_one_opened() -> None:
    numbers = itertools.count(1)
    happy = spoken(numbers)

    def script(server: ScriptedServer) -> list[object]:
        creates = sum(1 for event in server.received if event["type"] == "response.create")
        return ["close"] if creates == 2 else happy(server)  # type: ignore[operator]

    async with ScriptedServer(script) as server:
        narrator = narrator_for(server.url, retries=1)
        try:
            async with VoiceSessions() as sessions:
                await narrator.narrate("Turn one.", voice="cedar", sessions=sessions)
                retried = await narrator.narrate("Turn two.", voice="cedar", sessions=sessions)
                assert retried.attempts == 2
                assert (sessions.opened, sessions.reused) == (2, 1)
        finally:
            await narrator.close()
        assert len(server.handshake_headers_seen) == 2
    kinds = [event["type"] for event in server.received]
    assert kinds == [
        "session.update",
        "response.create",
        "response.create",
        "session.update",
        "response.create",
    ]


async def test_without_a_pool_nothing_changes_one_session_per_text() -> None:
    async with ScriptedServer(spoken(itertools.count(1))) as server:  # type: ignore[arg-type]
        narrator = narrator_for(server.url)
        try:
            await narrator.narrate("Turn one.", voice="cedar")
        finally:
            await narrator.close()
    assert [event["type"] for event in server.received] == [
        "session.update",
        "conversation.item.create",
        "response.create",
    ]


async def test_a_dropped_connection_surfaces_when_no_retry_is_left() -> None:
    async with ScriptedServer(lambda server: ["close"]) as server:
        narrator = narrator_for(server.url)
        try:
            async with VoiceSessions() as sessions:
                try:
                    await narrator.narrate("Turn one.", voice="cedar", sessions=sessions)
                except ConnectionLostError:
                    pass
                else:
                    raise AssertionError("the dropped connection must raise")
                assert sessions._take("cedar") is None, "the failed session is not kept"
        finally:
            await narrator.close()
