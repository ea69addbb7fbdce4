"""Long-form narration: parallel segments, the verbatim guard, splitting, stitching, block uploads."""

from __future__ import annotations

import array
import asyncio
import io
import json
import threading
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

import function_app
from emulator import Fault, FaultKind, RealtimeEmulator
from podcast.engine import audio
from podcast.engine.fidelity import similarity, words
from podcast.engine.longform import (
    MAX_FINISHING_IN_HAND,
    AdaptiveLimiter,
    NarratedText,
    PieceSink,
    _halves,
    narrate_segments,
)
from podcast.engine.realtime import Narrator
from podcast.engine.segments import Segment, _sentences, size_in_words, split_text
from podcast.models import RequestLimits, parse_request
from podcast.settings import NarrationSettings, RealtimeSettings, realtime_base_url
from testkit import host
from testkit.azurite import AzuriteServer
from testkit.sinks import MemoryPieces
from tests.integration.conftest import EMULATOR_KEY

PARAGRAPHS = [
    " ".join(
        f"In chapter {c} the traveller crosses river number {s} before the evening bell." for s in range(5)
    )
    for c in ("one", "two", "three", "four")
]
TEXT = "\n\n".join(PARAGRAPHS)


async def narrate(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = host.http_request("POST", "narrations", json=body)
    response = await host.call_http(function_app.create_narration, request)
    return response.status, response.json()


def stored(azurite: AzuriteServer, container: str, name: str) -> bytes:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        return service.get_blob_client(container, name).download_blob().readall()


def blob_names(azurite: AzuriteServer, container: str) -> list[str]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        client = service.get_container_client(container)
        return [b.name for b in client.list_blobs()] if client.exists() else []


@pytest.fixture
def long_form_env(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NARRATION_SEGMENT_WORDS", "80")
    monkeypatch.setenv("AZURE_OPENAI_AUDIO_MAX_RETRIES", "2")


async def test_each_segment_is_its_own_session_and_the_wav_is_speech_plus_pauses(
    long_form_env: None, emulator: RealtimeEmulator, azurite: AzuriteServer, container_name: str
) -> None:
    status, body = await narrate({"text": TEXT})

    assert status == 200, body
    responses = [r for s in emulator.sessions for r in s.responses]
    assert len(emulator.sessions) == len(responses) == body["segments"] == 4
    assert all(len(s.responses) == 1 for s in emulator.sessions), "no conversation is reused"
    document = json.loads(stored(azurite, container_name, body["transcript_blob_name"]))
    spoken = sum(r.audio_seconds for r in responses)
    pauses = 3 * 0.75  # paragraph breaks between the four segments
    assert body["duration_seconds"] == pytest.approx(spoken + pauses, abs=0.01)
    info = audio.wav_info(stored(azurite, container_name, body["blob_name"]))
    assert info.duration_seconds == pytest.approx(body["duration_seconds"], abs=0.001)
    assert words(body["transcript"]) == words(TEXT)
    assert body["fidelity"] == 1.0
    starts = [s["start_seconds"] for s in document["segments"]]
    ends = [s["end_seconds"] for s in document["segments"]]
    assert starts[0] == 0.0
    assert all(e > s for s, e in zip(starts, ends, strict=True))
    assert all(
        next_start == pytest.approx(end + 0.75, abs=0.001)
        for end, next_start in zip(ends, starts[1:], strict=False)
    )
    assert ends[-1] == pytest.approx(body["duration_seconds"], abs=0.001)


async def test_the_seams_start_and_end_at_silence(
    long_form_env: None, azurite: AzuriteServer, container_name: str
) -> None:
    status, body = await narrate({"text": TEXT})
    assert status == 200
    with wave.open(io.BytesIO(stored(azurite, container_name, body["blob_name"]))) as wav:
        pcm = wav.readframes(wav.getnframes())
    samples = array.array("h", pcm)
    document = json.loads(stored(azurite, container_name, body["transcript_blob_name"]))
    for segment in document["segments"]:
        first = round(segment["start_seconds"] * 24_000)
        last = round(segment["end_seconds"] * 24_000) - 1
        assert samples[first] == 0
        assert abs(samples[last]) <= 1
        # The fade keeps the first few samples small: no jump from the pause before.
        assert max(abs(x) for x in samples[first : first + 24]) < 2_000


async def test_a_paraphrased_segment_is_narrated_again_and_the_report_shows_it(
    long_form_env: None, emulator: RealtimeEmulator
) -> None:
    emulator.inject(Fault(FaultKind.PARAPHRASE, match="chapter three"))

    status, body = await narrate({"text": TEXT})

    assert status == 200, body
    assert words(body["transcript"]) == words(TEXT)
    assert body["fidelity"] == 1.0
    assert len(emulator.sessions) == 5, "four segments and one repeat"
    paraphrased = [r for s in emulator.sessions for r in s.responses if r.fault == "paraphrase"]
    assert len(paraphrased) == 1
    assert similarity(PARAGRAPHS[2], paraphrased[0].transcript) < 0.9


async def test_the_segment_report_records_attempts_and_similarity(
    long_form_env: None, emulator: RealtimeEmulator, azurite: AzuriteServer, container_name: str
) -> None:
    emulator.inject(Fault(FaultKind.PARAPHRASE, match="chapter two"))
    status, body = await narrate({"text": TEXT})
    assert status == 200
    segments = json.loads(stored(azurite, container_name, body["transcript_blob_name"]))["segments"]
    assert [s["attempts"] for s in segments] == [1, 2, 1, 1]
    assert all(s["similarity"] == 1.0 for s in segments)


async def test_a_segment_cut_off_by_the_token_cap_is_split_and_narrated_in_halves(
    long_form_env: None, emulator: RealtimeEmulator, azurite: AzuriteServer, container_name: str
) -> None:
    emulator.inject(Fault(FaultKind.MAX_OUTPUT_TOKENS, match="chapter four"))

    status, body = await narrate({"text": TEXT})

    assert status == 200, body
    assert words(body["transcript"]) == words(TEXT)
    segments = json.loads(stored(azurite, container_name, body["transcript_blob_name"]))["segments"]
    assert [s["splits"] for s in segments] == [0, 0, 0, 1]
    assert len(emulator.sessions) == 4 + 1 + 1, "the cut segment, then its two halves"


CHINESE = "".join(f"这是第{n}句话，河流慢慢地流向远方的大海。" for n in "一二三四五六七八九十")
"""One paragraph of ten Chinese sentences, written as Chinese is: no space anywhere."""


async def test_a_chinese_segment_cut_off_by_the_token_cap_is_halved_between_sentences(
    long_form_env: None, emulator: RealtimeEmulator, azurite: AzuriteServer, container_name: str
) -> None:
    """Chinese puts no space after a full stop: the segments and the halves of one cut by
    the token cap still fall between sentences, and the halves are about equal."""
    emulator.inject(Fault(FaultKind.MAX_OUTPUT_TOKENS, match="第二句"))

    status, body = await narrate({"text": CHINESE, "language": "zh-CN"})

    assert status == 200, body
    assert body["transcript"].replace(" ", "") == CHINESE, "every character, once, in order"
    segments = json.loads(stored(azurite, container_name, body["transcript_blob_name"]))["segments"]
    assert all(s["transcript"].endswith("。") for s in segments), "segments end at sentence ends"
    [cut] = [s for s in segments if s["splits"]]
    halves = [
        response.transcript
        for session in emulator.sessions
        for response in session.responses
        if response.fault is None and response.transcript in cut["transcript"]
    ]
    assert len(halves) == 2, halves
    assert "".join(halves) == cut["transcript"].replace(" ", "")
    assert all(half.endswith("。") for half in halves), "halved between sentences"
    sentence = size_in_words("这是第一句话，河流慢慢地流向远方的大海。")
    assert abs(size_in_words(halves[0]) - size_in_words(halves[1])) <= sentence, halves


async def test_a_segment_that_never_reads_faithfully_fails_under_the_fail_policy(
    long_form_env: None,
    emulator: RealtimeEmulator,
    azurite: AzuriteServer,
    container_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NARRATION_FIDELITY_POLICY", "fail")
    emulator.inject(Fault(FaultKind.PARAPHRASE, times=None, match="chapter one"))

    status, body = await narrate({"text": TEXT})

    assert status == 422
    assert body["error"]["code"] == "fidelity_too_low"
    assert blob_names(azurite, container_name) == [], "nothing is visible for a failed narration"


async def test_a_segment_that_never_reads_faithfully_is_kept_with_a_warning_under_the_warn_policy(
    long_form_env: None, emulator: RealtimeEmulator
) -> None:
    emulator.inject(Fault(FaultKind.PARAPHRASE, times=None, match="chapter one"))

    status, body = await narrate({"text": TEXT})

    assert status == 200
    assert body["fidelity"] < 0.95
    assert any("similarity" in warning for warning in body["warnings"])


async def test_rate_limiting_lowers_the_concurrency_instead_of_failing(
    long_form_env: None, emulator: RealtimeEmulator
) -> None:
    emulator.inject(Fault(FaultKind.HANDSHAKE_429, times=2, retry_after=0))

    status, body = await narrate({"text": TEXT})

    assert status == 200, body
    assert any("concurrency was lowered" in warning for warning in body["warnings"])


@pytest.mark.parametrize("kind", [FaultKind.RATE_LIMITED, FaultKind.RATE_LIMIT_ERROR_EVENT])
async def test_a_segment_throttled_inside_its_session_is_retried_and_the_narration_has_all_the_text(
    long_form_env: None,
    emulator: RealtimeEmulator,
    azurite: AzuriteServer,
    container_name: str,
    kind: FaultKind,
) -> None:
    emulator.inject(Fault(kind, match="chapter two", retry_after=0.05))

    status, body = await narrate({"text": TEXT})

    assert status == 200, body
    assert words(body["transcript"]) == words(TEXT)
    assert body["segments"] == 4
    throttled = [r for s in emulator.sessions for r in s.responses if r.fault is kind]
    assert len(throttled) == 1
    assert len(emulator.sessions) == 5, "the throttled segment was narrated again in a new session"
    assert any("concurrency was lowered" in warning for warning in body["warnings"])
    document = json.loads(stored(azurite, container_name, body["transcript_blob_name"]))
    assert [segment["attempts"] for segment in document["segments"]] == [1, 1, 1, 1], (
        "a throttled attempt is a retry of the same reading, not a fidelity attempt"
    )
    info = audio.wav_info(stored(azurite, container_name, body["blob_name"]))
    assert info.duration_seconds == pytest.approx(body["duration_seconds"], abs=0.001)


async def test_insufficient_quota_fails_the_narration_at_once_and_stores_nothing(
    long_form_env: None, emulator: RealtimeEmulator, azurite: AzuriteServer, container_name: str
) -> None:
    emulator.inject(Fault(FaultKind.INSUFFICIENT_QUOTA, times=None, match="chapter two"))

    status, body = await narrate({"text": TEXT})

    assert status == 402, body
    assert body["error"]["code"] == "insufficient_quota"
    assert "quota" in body["error"]["message"]
    quota = [r for s in emulator.sessions for r in s.responses if r.fault is FaultKind.INSUFFICIENT_QUOTA]
    assert len(quota) == 1, "never retried"
    assert len(emulator.sessions) <= 4
    assert blob_names(azurite, container_name) == []


async def test_a_failed_segment_leaves_nothing_visible(
    long_form_env: None, emulator: RealtimeEmulator, azurite: AzuriteServer, container_name: str
) -> None:
    emulator.inject(Fault(FaultKind.CONTENT_FILTER, times=None, match="chapter four"))

    status, body = await narrate({"text": TEXT})

    assert status == 422
    assert body["error"]["code"] == "content_filtered"
    assert blob_names(azurite, container_name) == []


# --- Segmentation ------------------------------------------------------------------------------


def test_segments_break_at_paragraphs_then_sentences_and_never_inside_a_word() -> None:
    text = "# A heading\n\n" + TEXT + "\n\n" + "One very long sentence, " * 80 + "ends here."
    segments = split_text(text, 60)

    assert [w for s in segments for w in s.text.split()] == text.split(), "every word, in order, once"
    assert all(size_in_words(s.text) <= 60 for s in segments)
    assert segments[0].text.startswith("# A heading\n\nIn chapter one"), "a heading stays with what follows"
    assert segments[-1].boundary == "end"
    assert split_text(text, 60) == segments, "deterministic"


@pytest.mark.parametrize(
    "text",
    [
        "".join(f"这是第{n}句话，河流慢慢地流向远方的大海。" for n in "一二三四五六七八九十" * 3),
        "".join(f"「{n}番目の文です」と彼女は言った。川は静かに流れる！本当？" for n in range(12)),
    ],
    ids=["chinese", "japanese"],
)
def test_chinese_and_japanese_break_at_sentence_ends_and_are_joined_without_spaces(text: str) -> None:
    segments = split_text(text, 60)

    assert len(segments) > 1
    assert "".join(s.text for s in segments) == text, "no character added, lost or moved"
    assert all(s.text.endswith(("。", "！", "？")) for s in segments), [s.text[-6:] for s in segments]
    assert all(size_in_words(s.text) <= 60 for s in segments)


def test_quotes_and_brackets_closing_a_sentence_stay_with_it() -> None:
    text = (
        'He said "Stop." Then he left (slowly.) She asked: \u201cWhy?\u201d Nobody knew.\u2019 '
        "They waited [for hours.] It ended.\n\n"
        "\u300c\u3053\u3093\u306b\u3061\u306f\u3002\u300d\u3068\u8a00\u3063\u305f\u3002"
        "\u300e\u5143\u6c17\uff1f\u300f\u306f\u3044\u3002"
    )
    segments = split_text(text, 4)  # every sentence fits, no two do

    assert len(segments) >= 8
    assert "".join("".join(s.text.split()) for s in segments) == "".join(text.split()), "no character lost"
    assert not any(
        s.text.startswith(('"', ")", "\u201d", "\u2019", "]", "\u300d", "\u300f")) for s in segments
    )


@pytest.mark.parametrize(
    "sentence",
    [
        "We met Dr. Smith there.",
        "See Fig. 2 for the bend.",
        "The river, e.g. the Nile, floods.",
        "It was written by J. R. Tolkien once.",
        "It opened at 5 p.m. and closed late.",
        "Mr. and Mrs. Lee came.",
        "2. Oxbow lakes bend.",
        "b) The delta grows.",
        "IV. The sea waits.",
    ],
)
def test_no_sentence_ends_at_what_does_not_end_one(sentence: str) -> None:
    assert _sentences(f"First words. {sentence} Last words.") == ["First words.", sentence, "Last words."]
    # Nor is a segment cut there: each sentence fits one, no two do.
    segments = split_text(f"These are the first words. {sentence}", max(5, len(sentence.split())))
    assert [s.text for s in segments] == ["These are the first words.", sentence]


def test_a_glued_sentence_too_long_for_a_segment_is_cut_at_the_ends_it_skipped_first() -> None:
    text = "Then we went with plan B. Nobody said no. The vote was held in room C. It passed easily."

    texts = [s.text for s in split_text(text, 12)]

    assert texts == [
        "Then we went with plan B. Nobody said no.",
        "The vote was held in room C. It passed easily.",
    ]


@pytest.mark.parametrize("unit", ["A. ", "J. R. ", "Dr. ", "no. ", "2. ", "Hi. "])
def test_splitting_is_linear_in_the_text(unit: str) -> None:
    # CPU time, not wall time: the bound is about the algorithm (gluing each piece onto a
    # growing sentence took 30 s for 40,000 characters of "A. "), and CI runs two passes at once.
    text = unit * (200_000 // len(unit))
    started = time.process_time()
    segments = split_text(text, 300)
    assert time.process_time() - started < 3.0
    assert "".join(s.text for s in segments).replace(" ", "") == text.replace(" ", "")


def test_sentence_ends_are_still_cuts_in_any_case() -> None:
    text = "The river bends. the sea waits! Does it? yes. Mr. Lee agrees."
    assert _sentences(text) == ["The river bends.", "the sea waits!", "Does it?", "yes.", "Mr. Lee agrees."]


def test_a_chinese_sentence_is_sized_by_its_characters_alone() -> None:
    sentence = "这是第一句话，河流慢慢地流向远方的大海。"  # 18 characters and two marks

    assert size_in_words(sentence) == round(18 / 1.5)
    assert size_in_words(sentence * 10) == round(180 / 1.5), "no extra word per sentence"
    assert size_in_words("In chapter one the traveller crosses, slowly — at dusk.") == 10
    assert size_in_words("안녕하세요 세계") == 2 + round(7 / 1.5), "Korean, spaced, as before"


def test_halves_are_cut_at_the_sentence_nearest_the_middle() -> None:
    text = " ".join(["river"] * 48) + " bends. " + " ".join(["water"] * 48) + " flows. Truly done."

    first, second = _halves(text)

    assert (size_in_words(first), size_in_words(second)) == (49, 51)
    assert f"{first} {second}" == text


def test_the_fidelity_measure_is_one_minus_the_word_error_rate() -> None:
    assert similarity("The cat sat on the mat.", "the cat sat on the mat") == 1.0
    assert similarity("The cat sat on the mat.", "The dog sat on the mat.") == pytest.approx(5 / 6)
    assert similarity("The cat sat on the mat.", "The cat sat.") == pytest.approx(0.5)
    assert similarity("one two", "completely different words here and more") == 0.0
    assert similarity("It’s here", "it's here") == 1.0


async def test_the_adaptive_limiter_halves_on_rate_limiting_and_grows_back() -> None:
    limiter = AdaptiveLimiter(8, successes_to_grow=2)
    limiter.rate_limited()
    limiter.rate_limited()
    assert limiter.limit == 2
    active = 0
    peak = 0

    async def work() -> None:
        nonlocal active, peak
        async with limiter:
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.01)
            active -= 1
        await limiter.succeeded()

    await asyncio.gather(*(work() for _ in range(10)))
    assert peak <= 7
    assert limiter.limit > 2
    assert limiter.lowest == 2


class _HeldUntilTheOtherSegmentIsStaged(MemoryPieces):
    """A piece sink that holds the first segment's audio until the other segment's arrives:
    only an engine that starts the next response while a finished segment is still being
    leveled and stored gets past it."""

    def __init__(self) -> None:
        super().__init__()
        self.first: int | None = None
        self.other_staged = asyncio.Event()

    async def stage(self, index: int, pcm: bytes | bytearray) -> None:
        segment = index // 2
        if self.first is None:
            self.first = segment
        if segment != self.first:
            self.other_staged.set()
        elif index % 2 == 0:
            async with asyncio.timeout(10):
                await self.other_staged.wait()
        await super().stage(index, pcm)


async def narrate_two_paragraphs(
    emulator: RealtimeEmulator, sink: PieceSink, *, concurrency: int
) -> NarratedText:
    """The first two paragraphs as two segments, read verbatim into ``sink``."""
    segments = [Segment(0, PARAGRAPHS[0], "paragraph"), Segment(1, PARAGRAPHS[1], "end")]
    settings = RealtimeSettings(endpoint=realtime_base_url(emulator.url), api_key=EMULATOR_KEY)
    async with Narrator(settings) as narrator:
        return await narrate_segments(
            narrator,
            parse_request({"text": TEXT}, RequestLimits()),
            segments,
            sink,
            NarrationSettings(concurrency=concurrency),
            verbatim=True,
            budget_seconds=60,
        )


async def test_segments_are_finished_without_the_event_loops_default_executor(
    emulator: RealtimeEmulator,
) -> None:
    """Levelling and caption timing run in threads of their own: with every thread of the
    loop's default executor taken (aiohttp's netrc lookups before each Storage request, other
    narrations' work), a narration still finishes, and the default executor is never asked."""
    loop = asyncio.get_running_loop()
    release = threading.Event()
    default = ThreadPoolExecutor(2)
    loop.set_default_executor(default)
    taken = [loop.run_in_executor(None, release.wait) for _ in range(2)]
    sink = MemoryPieces()
    try:
        async with asyncio.timeout(30):
            narrated = await narrate_two_paragraphs(emulator, sink, concurrency=2)
    finally:
        release.set()
        await asyncio.gather(*taken)
        default.shutdown()

    assert narrated.loudness_lufs == pytest.approx(-16.0, abs=0.5), "levelled"
    assert len(narrated.words) == len(words(PARAGRAPHS[0] + " " + PARAGRAPHS[1])), "timed"
    assert sorted(sink.pieces) == [0, 1, 2, 3]


async def test_a_slot_is_free_once_its_response_is_done_not_once_its_segment_is_stored(
    emulator: RealtimeEmulator,
) -> None:
    sink = _HeldUntilTheOtherSegmentIsStaged()
    narrated = await narrate_two_paragraphs(emulator, sink, concurrency=1)

    assert [r.status for s in emulator.sessions for r in s.responses] == ["completed", "completed"]
    assert sorted(sink.pieces) == [0, 1, 2, 3]
    assert words(narrated.transcript) == words(PARAGRAPHS[0] + " " + PARAGRAPHS[1])


class _StagingHeld(MemoryPieces):
    """A piece sink whose speech staging waits until released, counting how many segments
    wait in it at once (each holds its audio in memory meanwhile)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0
        self.most_waiting = 0
        self.release = asyncio.Event()

    async def stage(self, index: int, pcm: bytes | bytearray) -> None:
        if index % 2 == 0:
            self.waiting += 1
            self.most_waiting = max(self.most_waiting, self.waiting)
            async with asyncio.timeout(20):
                await self.release.wait()
            self.waiting -= 1
        await super().stage(index, pcm)


@pytest.mark.parametrize("concurrency", [1, 2, 4, 8, 12])
async def test_each_slot_streams_its_next_segment_while_its_last_one_is_stored_and_no_more(
    emulator: RealtimeEmulator, concurrency: int
) -> None:
    """Storage slow to take the segments' audio: every slot still starts its next segment
    (so with staging held, twice the concurrency of segments end up waiting for it), but no
    more than that are ever held in memory (beyond eight slots, eight more); released, the
    narration completes in order."""
    held = concurrency + min(concurrency, MAX_FINISHING_IN_HAND)
    sentences = [
        f"Sentence number {n} of the long text is read here aloud, word by word, so that each of them "
        "is a whole segment of its own."
        for n in range(30)
    ]
    last = len(sentences) - 1
    segments = [Segment(i, s, "sentence" if i < last else "end") for i, s in enumerate(sentences)]
    sink = _StagingHeld()
    settings = RealtimeSettings(endpoint=realtime_base_url(emulator.url), api_key=EMULATOR_KEY)
    narration_settings = NarrationSettings(
        concurrency=concurrency, segment_max_words=size_in_words(sentences[0])
    )
    async with Narrator(settings) as narrator:
        task = asyncio.create_task(
            narrate_segments(
                narrator,
                parse_request({"text": " ".join(sentences)}, RequestLimits()),
                segments,
                sink,
                narration_settings,
                verbatim=True,
                budget_seconds=60,
            )
        )
        async with asyncio.timeout(20):
            while sink.waiting < held:
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # nothing more starts while they wait
        assert sink.most_waiting == held
        assert sum(len(s.responses) for s in emulator.sessions) == held
        sink.release.set()
        narrated = await task
    assert sorted(sink.pieces) == list(range(2 * len(segments)))
    assert words(narrated.transcript) == words(" ".join(sentences))
