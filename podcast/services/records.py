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
from typing import Any, Final

from podcast.models import NarrationRequest
from podcast.settings import DEFAULT_SEGMENT_WORDS, NarrationSettings
from podcast.storage.names import blob_name, check_blob_segment
from podcast.wire import JobRecord, job_timestamp

JOB_ID: Final = re.compile(r"[0-9a-f]{32}")
"""A job id: 32 lower-case hex digits (a random UUID), unguessable."""

FINAL_STATUSES: Final = frozenset({"succeeded", "failed"})

WORDS_PER_MINUTE: Final = 150
"""Speaking rate used to estimate the audio length of a ``read`` request."""
CHARACTERS_PER_WORD: Final = 6
"""Texts without spaces (Chinese, Japanese) count this many characters as a word."""
GENERATION_SPEED: Final = 3.5
"""Assumed seconds of audio one Realtime session produces per wall-clock second, for
``Retry-After`` only (measured at the emulator's real pace; the service streams faster
than it speaks)."""
FIRST_AUDIO_SECONDS: Final = 0.5
"""Assumed wait for a session's first audio."""
SEGMENT_SECONDS: Final = DEFAULT_SEGMENT_WORDS * 60.0 / WORDS_PER_MINUTE
"""The audio of one full segment at the default ``NARRATION_SEGMENT_WORDS``."""
PARALLEL_SESSIONS: Final = int(NarrationSettings.model_fields["concurrency"].default)
"""Segments narrated at once at the default ``NARRATION_CONCURRENCY``."""
MIN_RETRY_AFTER_SECONDS: Final = 2
MAX_RETRY_AFTER_SECONDS: Final = 60


def record_name(job_id: str) -> str:
    """``jobs/<id>.json``; raises :class:`~podcast.errors.BlobNameError` for an id that is not
    one safe name segment (:mod:`podcast.storage.names`)."""
    return blob_name("jobs", f"{check_blob_segment(job_id, field='job id')}.json")


def request_name(job_id: str) -> str:
    """``jobs/<id>.request.json`` (the same rule as :func:`record_name`)."""
    return blob_name("jobs", f"{check_blob_segment(job_id, field='job id')}.request.json")


def idempotency_name(key: str) -> str:
    """``idempotency/<sha256 of the key>.json``: the caller's key never becomes part of a name."""
    return blob_name("idempotency", f"{hashlib.sha256(key.encode('utf-8')).hexdigest()}.json")


def now() -> datetime:
    return datetime.now(UTC)


iso = job_timestamp


# --- Estimates ------------------------------------------------------------------------------


def estimate_audio_seconds(request: NarrationRequest) -> float:
    """Expected audio length: ``target_minutes`` for an episode or a conversation; for
    ``read``, the words at 150 a minute (a text without spaces counts six characters as a word)."""
    if request.mode in ("episode", "conversation"):
        return request.target_minutes * 60.0
    words = max(len(request.text.split()), math.ceil(len(request.text) / CHARACTERS_PER_WORD))
    return words * 60.0 / WORDS_PER_MINUTE


def expected_segments(audio_seconds: float) -> int:
    """How many segments :func:`~podcast.engine.segments.split_text` makes of a text of
    ``audio_seconds`` at the default settings: as many full segments as needed, made a
    multiple of :data:`PARALLEL_SESSIONS` where none is then shorter than a third of one."""
    needed = max(1, math.ceil(audio_seconds / SEGMENT_SECONDS))
    if needed == 1:
        return 1
    rounded_up = PARALLEL_SESSIONS * math.ceil(needed / PARALLEL_SESSIONS)
    return max(needed, min(rounded_up, int(audio_seconds * 3 // SEGMENT_SECONDS)))


def expected_generation_seconds(audio_seconds: float) -> float:
    """Wall-clock seconds a narration of ``audio_seconds`` is expected to take as the
    long-form engine runs it with the default settings: :func:`expected_segments` of about
    equal size, :data:`PARALLEL_SESSIONS` at a time, each taking its first-audio wait plus
    its audio at :data:`GENERATION_SPEED`."""
    segments = expected_segments(audio_seconds)
    rounds = math.ceil(segments / PARALLEL_SESSIONS)
    return rounds * (FIRST_AUDIO_SECONDS + audio_seconds / segments / GENERATION_SPEED)


def _moment(timestamp: str | None) -> datetime | None:
    """A record's timestamp, or ``None`` when it is not one."""
    if not timestamp:
        return None
    try:
        return datetime.fromisoformat(timestamp)
    except ValueError:
        return None


def retry_after_seconds(
    estimated_audio_seconds: float, done: int = 0, total: int | None = None, *, elapsed: float | None = None
) -> int:
    """Seconds until a poll is worth making: the expected remaining generation time
    (:func:`expected_generation_seconds`, less the share of segments done, and less the
    ``elapsed`` seconds since the narration started: segments run in parallel, so the
    time gone by says more than the segments finished), 2 to 60."""
    expected = expected_generation_seconds(estimated_audio_seconds)
    remaining = expected
    if total:
        remaining = remaining * max(0, total - done) / total
    if elapsed is not None:
        remaining = min(remaining, expected - elapsed)
    return int(min(MAX_RETRY_AFTER_SECONDS, max(MIN_RETRY_AFTER_SECONDS, math.ceil(remaining))))


def idempotency_hash(request: NarrationRequest) -> str:
    """SHA-256 (hex) of the whole validated request, title and link lifetime included: an
    ``Idempotency-Key`` is bound to it (stored as ``request_hash``), and the same key with
    another request is a 422. Unlike the reuse key, it covers what does not change the audio."""
    fields = request.model_dump(mode="json")
    if fields.get("format") == "wav":  # the hash of a WAV request stays what it was before formats
        del fields["format"]
    if fields.get("show") is None:  # nor does that of a request without a show, from before shows
        fields.pop("show", None)
    for name in ("speakers", "script", "chapters"):  # nor does a text request's since scripts came
        if fields.get(name) is None:
            del fields[name]
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def idempotency_hashes(request: NarrationRequest) -> tuple[str, ...]:
    """The hashes an ``Idempotency-Key`` of ``request`` may be bound to: :func:`idempotency_hash`,
    and for a show's MP3 episode also that of the same request as a WAV, which is what the
    same body (no ``format``) meant before a show's episodes were MP3 by default: its replay
    is the same request, not a 422."""
    current = idempotency_hash(request)
    if request.show is None or request.format != "mp3":
        return (current,)
    return current, idempotency_hash(request.model_copy(update={"format": "wav"}))


def stored_request_fields(document: dict[str, Any]) -> dict[str, Any]:
    """A job's stored request (``jobs/<id>.request.json``) as it is validated again when the
    job runs. A show's request stored before a show's episodes were MP3 by default names no
    ``format`` (it was WAV, and its record and reuse key are a WAV's); since then every
    stored show request names its format."""
    if document.get("show") is not None and "format" not in document:
        return {**document, "format": "wav"}
    return document


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


def retry_after(record: JobRecord, *, at: datetime | None = None, redelivery_seconds: float = 0.0) -> int:
    """Seconds a poller of ``record`` should wait at ``at`` (default now; 1 once the job is finished).

    A queued job whose last attempt failed transiently (``last_error``) starts again only when
    the host makes its message visible again, ``redelivery_seconds`` (``host.json``'s
    ``visibilityTimeout``) after that attempt recorded its failure (``updated_at``): until
    then a poll is worth making at that moment plus the narration's expected time (at most
    :data:`MAX_RETRY_AFTER_SECONDS`), not every few seconds. A stalled job's new message
    (``job_stalled``) is visible at once."""
    if record.status in FINAL_STATUSES:
        return 1
    moment = at or now()
    started = _moment(record.started_at) if record.status == "running" else None
    elapsed = None if started is None else max(0.0, (moment - started).total_seconds())
    expected = retry_after_seconds(
        record.estimated_audio_seconds, record.segments_done, record.segments_total, elapsed=elapsed
    )
    if (
        record.status == "queued"
        and record.last_error is not None
        and record.last_error.code != "job_stalled"
        and redelivery_seconds > 0
    ):
        failed = _moment(record.updated_at)
        hidden = 0.0 if failed is None else redelivery_seconds - (moment - failed).total_seconds()
        if hidden > 0:
            return int(min(MAX_RETRY_AFTER_SECONDS, math.ceil(hidden) + expected))
    return expected
