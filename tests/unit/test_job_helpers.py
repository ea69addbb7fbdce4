"""The pieces of the asynchronous job service that need no service: the audio estimate,
``Retry-After``, request headers, queue message bodies and when a job is stuck."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from podcast.engine.segments import split_text
from podcast.http.headers import submit_options
from podcast.models import RequestLimits, SubmitOptions, parse_request
from podcast.services.records import (
    PARALLEL_SESSIONS,
    estimate_audio_seconds,
    expected_generation_seconds,
    expected_segments,
    job_id_from_message,
    retry_after,
    retry_after_seconds,
)
from podcast.settings import DEFAULT_SEGMENT_WORDS
from podcast.wire import ErrorDetails, JobRecord, job_timestamp

# --- Pieces ------------------------------------------------------------------------------------------


def test_the_audio_estimate_counts_150_words_a_minute_or_the_episode_length() -> None:
    limits = RequestLimits()
    assert estimate_audio_seconds(parse_request({"text": "word " * 150}, limits)) == 60.0
    assert estimate_audio_seconds(parse_request({"text": "字" * 600}, limits)) == 40.0
    episode = parse_request({"text": "About rivers.", "mode": "episode", "target_minutes": 1.5}, limits)
    assert estimate_audio_seconds(episode) == 90.0


def test_retry_after_shrinks_as_segments_finish_and_stays_between_2_and_60_seconds() -> None:
    # One segment of 120 s: 0.5 s to first audio, then 3.5 s of audio a second.
    assert retry_after_seconds(120.0) == 35
    assert retry_after_seconds(120.0, done=2, total=3) == 12
    assert retry_after_seconds(1.0) == 2
    assert retry_after_seconds(10_000.0) == 60


def test_a_text_of_several_segments_is_expected_to_take_its_longest_round_of_parallel_sessions() -> None:
    # 172.8 s: four parallel segments of 43.2 s; 600 s: two rounds of four 75 s segments.
    assert expected_generation_seconds(172.8) == pytest.approx(0.5 + 43.2 / 3.5)
    assert expected_generation_seconds(600.0) == pytest.approx(2 * (0.5 + 75 / 3.5))
    assert expected_generation_seconds(121.0) < expected_generation_seconds(120.0), "split in parallel"


@pytest.mark.parametrize("words", [1, 150, 299, 300, 301, 320, 450, 601, 800, 1200, 1201, 2000, 3333])
def test_the_expected_segments_are_the_segments_the_engine_makes(words: int) -> None:
    sentence = "Rivers bend because water is lazy and stone is not."  # ten words
    text = " ".join([sentence] * (words // 10) + ["Rivers"] * (words % 10))
    audio = estimate_audio_seconds(parse_request({"text": text}, RequestLimits(max_text_characters=50_000)))
    segments = split_text(text, DEFAULT_SEGMENT_WORDS, parallelism=PARALLEL_SESSIONS)
    assert expected_segments(audio) == len(segments)


def test_request_headers_are_read_in_any_letter_case() -> None:
    options = submit_options(
        {"prefer": "wait=5, Respond-Async", "CACHE-CONTROL": "no-store", "idempotency-key": " k1 "}
    )
    assert options == SubmitOptions(respond_async=True, reuse=False, remember=False, idempotency_key="k1")
    assert submit_options({}) == SubmitOptions()


def test_a_queue_message_is_a_job_id_or_its_base64() -> None:
    job_id = uuid.uuid4().hex
    assert job_id_from_message(job_id.encode()) == job_id
    assert job_id_from_message(base64.b64encode(job_id.encode())) == job_id
    assert job_id_from_message("../jobs/x") is None


def test_a_record_of_an_earlier_version_with_a_bare_internal_error_still_loads() -> None:
    stored = {
        "id": uuid.uuid4().hex,
        "status": "queued",
        "created_at": "2026-11-25T11:10:37.000Z",
        "updated_at": "2026-11-25T11:10:38.000Z",
        "estimated_audio_seconds": 12.0,
        "sas_expiry_minutes": 60,
        "attempts": 1,
        "last_error": {"code": "internal_error"},
    }

    record = JobRecord.model_validate(stored)

    assert record.last_error is not None
    assert record.last_error.code == "internal_error"
    assert record.model_dump(mode="json")["last_error"] == {
        "code": "internal_error",
        "message": "an unexpected error occurred",
        "field": None,
    }


def test_a_running_jobs_retry_after_counts_down_with_the_time_since_it_started() -> None:
    started = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
    record = JobRecord(
        id="0" * 32,
        status="running",
        created_at=job_timestamp(started),
        updated_at=job_timestamp(started),
        estimated_audio_seconds=172.8,  # four parallel segments: 12.8 s expected
        sas_expiry_minutes=60,
        started_at=job_timestamp(started),
        segments_total=4,
    )
    assert retry_after(record, at=started) == 13
    assert retry_after(record, at=started + timedelta(seconds=5)) == 8
    assert retry_after(record, at=started + timedelta(seconds=11)) == 2
    assert retry_after(record, at=started + timedelta(seconds=60)) == 2, "overdue: poll soon"
    record.segments_done = 3
    assert retry_after(record, at=started) == 4, "the share of segments left, when smaller"
    record.started_at = "not a time"
    assert retry_after(record, at=started) == 4
    record.status = "succeeded"
    assert retry_after(record) == 1


def test_a_job_waiting_for_its_redelivery_is_polled_when_that_comes() -> None:
    failed = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
    record = JobRecord(
        id="0" * 32,
        status="queued",
        created_at=job_timestamp(failed - timedelta(seconds=30)),
        updated_at=job_timestamp(failed),
        estimated_audio_seconds=24.0,  # one short segment
        sas_expiry_minutes=60,
        attempts=1,
        last_error=ErrorDetails(code="upstream_unavailable", message="Azure OpenAI unreachable", field=None),
    )
    expected = retry_after(record, at=failed)  # the estimate alone, without the redelivery

    assert 2 <= expected < 20
    assert retry_after(record, at=failed, redelivery_seconds=30) == 30 + expected
    assert retry_after(record, at=failed, redelivery_seconds=60) == 60, "at most a minute"
    assert retry_after(record, at=failed + timedelta(seconds=20), redelivery_seconds=30) == 10 + expected
    assert retry_after(record, at=failed + timedelta(seconds=29.5), redelivery_seconds=30) == 1 + expected
    assert retry_after(record, at=failed + timedelta(seconds=30), redelivery_seconds=30) == expected, "due"
    assert retry_after(record, at=failed + timedelta(seconds=90), redelivery_seconds=30) == expected
    # A stalled job's new message is visible at once; a job never tried waits for no redelivery.
    record.last_error = ErrorDetails(code="job_stalled", message="stalled", field=None)
    assert retry_after(record, at=failed, redelivery_seconds=30) == expected
    record.last_error = None
    assert retry_after(record, at=failed, redelivery_seconds=30) == expected
    record.last_error = ErrorDetails(code="upstream_unavailable", message="x", field=None)
    record.updated_at = "not a time"
    assert retry_after(record, at=failed, redelivery_seconds=30) == expected


STUCK_AT = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)


def stuck_record(
    status: str, *, updated: str | None, heartbeat: str | None = None, **fields: Any
) -> JobRecord:
    return JobRecord.model_validate(
        {
            "id": "0" * 32,
            "status": status,
            "created_at": "2026-12-01T09:00:00.000Z",
            "updated_at": updated,
            "heartbeat_at": heartbeat,
            "estimated_audio_seconds": 1.0,
            "sas_expiry_minutes": 60,
            **fields,
        }
    )


@pytest.mark.parametrize(
    ("record", "stuck"),
    [
        (stuck_record("queued", updated="2026-12-01T09:55:00.000Z"), False),  # exactly 300 s
        (stuck_record("queued", updated="2026-12-01T09:54:59.999Z"), True),  # 300.001 s
        (stuck_record("queued", updated="not a time"), True),
        (stuck_record("queued", updated="2026-12-01T09:00:00.000Z", leader="1" * 32), False),
        (
            stuck_record("running", updated="2026-12-01T09:59:59.000Z", heartbeat="2026-12-01T09:54:59.999Z"),
            True,
        ),
        (
            stuck_record("running", updated="2026-12-01T09:54:00.000Z", heartbeat="2026-12-01T09:55:00.000Z"),
            False,
        ),
        (stuck_record("succeeded", updated="2026-12-01T09:00:00.000Z"), False),
        (stuck_record("failed", updated="2026-12-01T09:00:00.000Z"), False),
    ],
    ids=[
        "queued at the limit",
        "queued just past it",
        "queued unreadable",
        "a follower",
        "running, heartbeat past it",
        "running, heartbeat at the limit",
        "succeeded",
        "failed",
    ],
)
def test_a_job_is_stuck_queued_or_running_past_the_stale_timeout(record: JobRecord, stuck: bool) -> None:
    assert record.is_stuck(300.0, STUCK_AT) is stuck
