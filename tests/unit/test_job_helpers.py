"""The pieces of the asynchronous job service that need no service: the audio estimate,
``Retry-After``, request headers, queue message bodies and when a job is stuck."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from podcast.http.headers import submit_options
from podcast.models import RequestLimits, SubmitOptions, parse_request
from podcast.services.records import estimate_audio_seconds, job_id_from_message, retry_after_seconds
from podcast.wire import JobRecord

# --- Pieces ------------------------------------------------------------------------------------------


def test_the_audio_estimate_counts_150_words_a_minute_or_the_episode_length() -> None:
    limits = RequestLimits()
    assert estimate_audio_seconds(parse_request({"text": "word " * 150}, limits)) == 60.0
    assert estimate_audio_seconds(parse_request({"text": "字" * 600}, limits)) == 40.0
    episode = parse_request({"text": "About rivers.", "mode": "episode", "target_minutes": 1.5}, limits)
    assert estimate_audio_seconds(episode) == 90.0


def test_retry_after_shrinks_as_segments_finish_and_stays_between_2_and_60_seconds() -> None:
    assert retry_after_seconds(120.0) == 30
    assert retry_after_seconds(120.0, done=2, total=3) == 10
    assert retry_after_seconds(1.0) == 2
    assert retry_after_seconds(10_000.0) == 60


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
