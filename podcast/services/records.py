"""Where the jobs container keeps each document, and the estimates a job is answered with.

Blob layout (in the jobs container, ``NARRATION_JOBS_CONTAINER``):

- ``jobs/<id>.json``: the job record (:class:`~podcast.wire.JobRecord`), small, rewritten as the job moves;
- ``jobs/<id>.request.json``: the validated request (the text can exceed a queue message's
  64 KB), removed once the job is finished;
- ``idempotency/<sha256 of the key>.json``: ``Idempotency-Key`` → job id and a hash of the
  request (:class:`~podcast.wire.IdempotencyEntry`);
- ``cache/<content key>.json``: content reuse (:mod:`podcast.services.reuse`);
- ``narrations/<id>.json``: every stored narration by its id (:mod:`podcast.services.downloads`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from datetime import UTC, datetime
from typing import Final

from podcast.models import NarrationRequest
from podcast.wire import JobRecord, job_timestamp

JOB_ID: Final = re.compile(r"[0-9a-f]{32}")
"""A job id: 32 lower-case hex digits (a random UUID), unguessable."""

FINAL_STATUSES: Final = frozenset({"succeeded", "failed"})

WORDS_PER_MINUTE: Final = 150
"""Speaking rate used to estimate the audio length of a ``read`` request."""
CHARACTERS_PER_WORD: Final = 6
"""Texts without spaces (Chinese, Japanese) count this many characters as a word."""
GENERATION_SPEED: Final = 4.0
"""Assumed seconds of audio produced per wall-clock second (parallel segment sessions),
for ``Retry-After`` only."""
MIN_RETRY_AFTER_SECONDS: Final = 2
MAX_RETRY_AFTER_SECONDS: Final = 60


def record_name(job_id: str) -> str:
    return f"jobs/{job_id}.json"


def request_name(job_id: str) -> str:
    return f"jobs/{job_id}.request.json"


def idempotency_name(key: str) -> str:
    return f"idempotency/{hashlib.sha256(key.encode('utf-8')).hexdigest()}.json"


def now() -> datetime:
    return datetime.now(UTC)


iso = job_timestamp


# --- Estimates ------------------------------------------------------------------------------


def estimate_audio_seconds(request: NarrationRequest) -> float:
    """Expected audio length: ``target_minutes`` for an episode; for ``read``, the words at
    150 a minute (a text without spaces counts six characters as a word)."""
    if request.mode == "episode":
        return request.target_minutes * 60.0
    words = max(len(request.text.split()), math.ceil(len(request.text) / CHARACTERS_PER_WORD))
    return words * 60.0 / WORDS_PER_MINUTE


def retry_after_seconds(estimated_audio_seconds: float, done: int = 0, total: int | None = None) -> int:
    """Seconds until a poll is worth making: the expected remaining generation time
    (audio length / :data:`GENERATION_SPEED`, less the share of segments done), 2 to 60."""
    remaining = estimated_audio_seconds / GENERATION_SPEED
    if total:
        remaining = remaining * max(0, total - done) / total
    return int(min(MAX_RETRY_AFTER_SECONDS, max(MIN_RETRY_AFTER_SECONDS, math.ceil(remaining))))


def idempotency_hash(request: NarrationRequest) -> str:
    """SHA-256 (hex) of the whole validated request, title and link lifetime included: an
    ``Idempotency-Key`` is bound to it (stored as ``request_hash``), and the same key with
    another request is a 422. Unlike the reuse key, it covers what does not change the audio."""
    fields = request.model_dump(mode="json")
    if fields.get("format") == "wav":  # the hash of a WAV request stays what it was before formats
        del fields["format"]
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def job_id_from_message(body: bytes | str) -> str | None:
    """The job id in a queue message: the id itself, or base64 of it (as the queue holds it,
    should the host ever pass the raw text). ``None`` for anything else."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else body
    text = text.strip()
    if JOB_ID.fullmatch(text):
        return text
    try:
        decoded = base64.b64decode(text, validate=True).decode("ascii").strip()
    except (ValueError, UnicodeDecodeError):
        return None
    return decoded if JOB_ID.fullmatch(decoded) else None


def retry_after(record: JobRecord) -> int:
    """Seconds a poller of ``record`` should wait (1 once the job is finished)."""
    if record.status in FINAL_STATUSES:
        return 1
    return retry_after_seconds(record.estimated_audio_seconds, record.segments_done, record.segments_total)
