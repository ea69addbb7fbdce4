"""Job records and the other documents of the jobs container, and the job estimates.

Blob layout (in the jobs container, ``NARRATION_JOBS_CONTAINER``):

- ``jobs/<id>.json``: the job record (:class:`JobRecord`), small, rewritten as the job moves;
- ``jobs/<id>.request.json``: the validated request (the text can exceed a queue message's
  64 KB), removed once the job is finished;
- ``idempotency/<sha256 of the key>.json``: ``Idempotency-Key`` → job id and a hash of the
  request;
- ``cache/<content key>.json``: content reuse (:mod:`podcast.services.reuse`).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from podcast.models import NarrationRequest

JOB_ID: Final = re.compile(r"[0-9a-f]{32}")
"""A job id: 32 lower-case hex digits (a random UUID), unguessable."""

JobStatus = Literal["queued", "running", "succeeded", "failed"]
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


def iso(moment: datetime) -> str:
    """Milliseconds and ``Z``: the timestamps of job documents."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


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


def request_hash(request: NarrationRequest) -> str:
    """A hash of the whole validated request (title and link lifetime included), which an
    ``Idempotency-Key`` must keep: the same key with another request is a 422."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
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


# --- The job record ---------------------------------------------------------------------------


@dataclass
class JobRecord:
    """A job as stored in ``jobs/<id>.json``.

    ``status`` moves ``queued`` → ``running`` → ``succeeded`` or ``failed`` (back to
    ``queued`` after a transient failure that the host will retry). ``result`` is the
    synchronous 200 body without ``audio_url``/``expires_at`` (a fresh link is signed on
    each read, for ``sas_expiry_minutes``); ``error`` is ``{"status": <HTTP status>,
    "body": <error body>}``. A *follower* (``leader`` set) shares the fate of the job
    narrating the same content; ``reused_from`` names the job whose audio a reused result is.
    """

    id: str
    status: JobStatus
    created_at: str
    updated_at: str
    estimated_audio_seconds: float
    sas_expiry_minutes: int
    cache_key: str | None = None
    reuse: bool = True
    store_result: bool = True
    leader: str | None = None
    reused_from: str | None = None
    attempts: int = 0
    started_at: str | None = None
    heartbeat_at: str | None = None
    finished_at: str | None = None
    segments_done: int = 0
    segments_total: int | None = None
    last_error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> JobRecord:
        """Read a stored record (unknown keys, e.g. from a newer version, are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in document.items() if key in names})

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    def touch(self, moment: datetime | None = None) -> None:
        self.updated_at = iso(moment or now())

    def finish_with_result(self, result: Mapping[str, Any], *, reused_from: str | None = None) -> None:
        moment = now()
        self.status = "succeeded"
        self.result = dict(result)
        self.reused_from = reused_from
        self.error = None
        self.finished_at = iso(moment)
        if self.segments_total is not None:
            self.segments_done = self.segments_total
        self.touch(moment)

    def finish_with_error(self, status: int, body: Mapping[str, Any]) -> None:
        """Failed, with the HTTP status and error body a poll will answer."""
        moment = now()
        self.status = "failed"
        self.error = {"status": int(status), "body": dict(body)}
        self.finished_at = iso(moment)
        self.touch(moment)

    def is_stale(self, stale_seconds: float, moment: datetime | None = None) -> bool:
        """``running`` with no heartbeat or progress for longer than ``stale_seconds``."""
        if self.status != "running":
            return False
        last = _parse_iso(self.heartbeat_at) or _parse_iso(self.updated_at)
        if last is None:
            return True
        return ((moment or now()) - last).total_seconds() > stale_seconds

    def retry_after(self) -> int:
        """Seconds a poller should wait (1 once the job is finished)."""
        if self.finished:
            return 1
        return retry_after_seconds(self.estimated_audio_seconds, self.segments_done, self.segments_total)


def status_document(record: JobRecord) -> dict[str, Any]:
    """The JSON body of a 202 (and of a ``POST`` that made or found a job)."""
    return {
        "id": record.id,
        "status": record.status,
        "progress": {"segments_done": record.segments_done, "segments_total": record.segments_total},
        "estimated_audio_seconds": round(record.estimated_audio_seconds, 1),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }
