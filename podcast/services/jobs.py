"""Asynchronous narration jobs: the async request-reply pattern that Power Automate, Logic
Apps and most HTTP clients follow (202 Accepted + ``Location`` + ``Retry-After``, poll until
a non-202 answer).

``POST /api/narrations`` (:func:`submit_narration`) validates the request exactly as before,
then either narrates at once (the synchronous path, bound by HTTP's 230 s) or, when the
caller sends ``Prefer: respond-async`` or the text is too long for the synchronous budget
(:func:`estimate_audio_seconds` against ``NARRATION_SYNC_MAX_AUDIO_SECONDS``), stores a
job and enqueues its id for the queue-triggered worker (:func:`run_queued_job`), which runs
the same pipeline with a longer budget. ``GET /api/narrations/{id}`` (:func:`job_reply`)
answers 202 while the job is queued or running, then exactly the synchronous 200 body (with
a fresh SAS link) or the error body with its status.

Storage (all in the jobs container, ``NARRATION_JOBS_CONTAINER``, by default the output
container's name plus ``-jobs``, so the output container holds only audio and transcripts):

- ``jobs/<id>.json``: the job record (:class:`JobRecord`), small, rewritten as the job moves;
- ``jobs/<id>.request.json``: the validated request (the text can exceed a queue message's
  64 KB), removed once the job is finished;
- ``idempotency/<sha256 of the key>.json``: ``Idempotency-Key`` → job id and a hash of the
  request;
- ``cache/<content key>.json``: content reuse. The key hashes the request's
  :meth:`~podcast.models.NarrationRequest.fingerprint` (text, mode, style, voice, language,
  instructions, episode length) with the deployment name. It holds either a claim by the job
  narrating that content (``pending``) or the finished result (``succeeded``).

Identical requests reuse audio (synchronous and asynchronous paths alike): a finished
result is answered again with a fresh link, and an asynchronous request identical to one
still queued or running becomes a *follower* of that job (no second narration, no second
queue message). ``Cache-Control: no-cache`` narrates afresh; ``no-store`` also keeps the
result out of the cache. Concurrent duplicates that race past each other may still be
narrated twice; that costs money, never correctness.

Stale jobs: the worker writes a heartbeat every quarter of ``NARRATION_JOB_STALE_SECONDS``
(at most every 60 s) and on each finished segment. A status request that finds a job
``running`` without an update for longer than that marks it failed (``job_stalled``, 503);
it is never re-enqueued, so a job is paid for at most by the deliveries of its one message.

Nothing here logs the text, keys, Location URLs or SAS signatures: only job ids, statuses
and error codes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from podcast.errors import (
    ConfigurationError,
    IdempotencyKeyReusedError,
    JobNotFoundError,
    JobStalledError,
    PodcastError,
    RequestValidationError,
    StorageError,
)
from podcast.http.responses import error_body
from podcast.models import NarrationRequest, RequestLimits, parse_request
from podcast.perloop import PerLoop
from podcast.services.pipeline import check_content_type, get_service
from podcast.settings import STORAGE_SETTING, StorageSettings, container_setting, float_setting, int_setting
from podcast.storage.blobs import BlobClientOptions, download_json, get_store, map_storage_error

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

log = logging.getLogger(__name__)

QUEUE_SETTING: Final = "NARRATION_QUEUE"
DEFAULT_QUEUE: Final = "narration-jobs"
JOBS_CONTAINER_SETTING: Final = "NARRATION_JOBS_CONTAINER"
SYNC_MAX_AUDIO_SETTING: Final = "NARRATION_SYNC_MAX_AUDIO_SECONDS"
DEFAULT_SYNC_MAX_AUDIO_SECONDS: Final = 180.0
JOB_TIME_BUDGET_SETTING: Final = "NARRATION_JOB_TIME_BUDGET_SECONDS"
DEFAULT_JOB_TIME_BUDGET_SECONDS: Final = 540.0
"""Leaves a minute of host.json's ``functionTimeout`` (10 minutes) for storing the result."""
JOB_STALE_SETTING: Final = "NARRATION_JOB_STALE_SECONDS"
DEFAULT_JOB_STALE_SECONDS: Final = 300.0
MAX_DEQUEUE_SETTING: Final = "NARRATION_QUEUE_MAX_DEQUEUE_COUNT"
DEFAULT_MAX_DEQUEUE_COUNT: Final = 3
"""Matches host.json's ``extensions.queues.maxDequeueCount``."""

WORDS_PER_MINUTE: Final = 150
"""Speaking rate used to estimate the audio length of a ``read`` request."""
CHARACTERS_PER_WORD: Final = 6
"""Texts without spaces (Chinese, Japanese) count this many characters as a word."""
GENERATION_SPEED: Final = 4.0
"""Assumed seconds of audio produced per wall-clock second (parallel segment sessions),
for ``Retry-After`` only."""
MIN_RETRY_AFTER_SECONDS: Final = 2
MAX_RETRY_AFTER_SECONDS: Final = 60
MAX_HEARTBEAT_SECONDS: Final = 60.0
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 255

JOB_ID: Final = re.compile(r"[0-9a-f]{32}")
"""A job id: 32 lower-case hex digits (a random UUID), unguessable."""
_QUEUE_NAME: Final = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
_HOST: Final = re.compile(r"[A-Za-z0-9.\-]+(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?")

JobStatus = Literal["queued", "running", "succeeded", "failed"]
FINAL_STATUSES: Final = frozenset({"succeeded", "failed"})
_GENEROUS_LIMITS: Final = RequestLimits(max_text_characters=1_000_000, max_sas_expiry_minutes=10_080)
"""Stored requests were validated on submission; settings changed since must not reject them."""


# --- Settings -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobSettings:
    """How asynchronous narrations are run (every field has a setting; see the README)."""

    queue_name: str = DEFAULT_QUEUE
    jobs_container: str = "narrations-jobs"
    sync_max_audio_seconds: float = DEFAULT_SYNC_MAX_AUDIO_SECONDS
    """Requests expected to give more audio than this run asynchronously (0: all of them)."""
    job_time_budget_seconds: float = DEFAULT_JOB_TIME_BUDGET_SECONDS
    stale_seconds: float = DEFAULT_JOB_STALE_SECONDS
    max_dequeue_count: int = DEFAULT_MAX_DEQUEUE_COUNT

    @property
    def heartbeat_seconds(self) -> float:
        """How often a running job's record is touched: a quarter of the stale timeout, at most 60 s."""
        return min(MAX_HEARTBEAT_SECONDS, self.stale_seconds / 4)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> JobSettings:
        """Read the settings; a malformed one raises :class:`ConfigurationError` naming it."""
        env = os.environ if env is None else env
        queue_name = env.get(QUEUE_SETTING, "").strip() or DEFAULT_QUEUE
        if not _QUEUE_NAME.fullmatch(queue_name):
            raise ConfigurationError(
                QUEUE_SETTING, "must be a queue name: 3-63 lower-case letters, digits and single hyphens"
            )
        output = StorageSettings.from_env(env).output_container
        default_jobs = f"{output[:58].rstrip('-')}-jobs"
        return cls(
            queue_name=queue_name,
            jobs_container=container_setting(env, JOBS_CONTAINER_SETTING, default_jobs),
            sync_max_audio_seconds=float_setting(
                env, SYNC_MAX_AUDIO_SETTING, DEFAULT_SYNC_MAX_AUDIO_SECONDS, 0.0, 86_400.0
            ),
            job_time_budget_seconds=float_setting(
                env, JOB_TIME_BUDGET_SETTING, DEFAULT_JOB_TIME_BUDGET_SECONDS, 10.0, 3600.0
            ),
            stale_seconds=float_setting(env, JOB_STALE_SETTING, DEFAULT_JOB_STALE_SECONDS, 1.0, 86_400.0),
            max_dequeue_count=int_setting(env, MAX_DEQUEUE_SETTING, DEFAULT_MAX_DEQUEUE_COUNT, 1, 100),
        )


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


def content_key(request: NarrationRequest, deployment: str) -> str:
    """The content-reuse key: what decides the audio (the request's fingerprint) and the deployment."""
    return hashlib.sha256(f"v1\n{deployment}\n{request.fingerprint()}".encode()).hexdigest()


def request_hash(request: NarrationRequest) -> str:
    """A hash of the whole validated request (title and link lifetime included), which an
    ``Idempotency-Key`` must keep: the same key with another request is a 422."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --- Request headers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubmitOptions:
    """What the request headers ask for."""

    respond_async: bool = False
    """``Prefer: respond-async`` (RFC 7240)."""
    reuse: bool = True
    """``False`` with ``Cache-Control: no-cache`` or ``no-store``: narrate afresh."""
    store: bool = True
    """``False`` with ``Cache-Control: no-store``: keep the result out of the content cache."""
    idempotency_key: str | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> SubmitOptions:
        """Read ``Prefer``, ``Cache-Control`` and ``Idempotency-Key`` (any letter case).

        Raises :class:`RequestValidationError` (400) for an unusable ``Idempotency-Key``.
        """
        lowered = {name.lower(): value for name, value in headers.items()}
        prefer = _directives(lowered.get("prefer", ""))
        cache = _directives(lowered.get("cache-control", ""))
        key = lowered.get("idempotency-key")
        if key is not None:
            key = key.strip()
            if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not all(" " <= ch <= "~" for ch in key):
                raise RequestValidationError(
                    f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII "
                    "characters (a UUID is a good choice)",
                    field="Idempotency-Key",
                    code="invalid_idempotency_key",
                )
        no_store = "no-store" in cache
        return cls(
            respond_async="respond-async" in prefer,
            reuse=not (no_store or "no-cache" in cache),
            store=not no_store,
            idempotency_key=key,
        )


def _directives(value: str) -> set[str]:
    """``"respond-async, wait=10"`` → ``{"respond-async", "wait"}`` (names only, lower case)."""
    names = set()
    for part in value.split(","):
        name = part.split(";", 1)[0].split("=", 1)[0].strip().lower()
        if name:
            names.add(name)
    return names


# --- URLs -----------------------------------------------------------------------------------


def job_url(
    request_url: str,
    *,
    headers: Mapping[str, str],
    params: Mapping[str, str],
    job_id: str | None = None,
) -> str:
    """The absolute URL of a job, built from the request's URL.

    With ``job_id`` the request is the collection (``POST .../narrations``) and the id is
    appended; without, the request URL is the job's own (``GET .../narrations/<id>``). Only
    the ``code`` query parameter (a function key the caller sent in the URL) is kept, so
    the URL keeps working for a poller that sends no header. A relative request URL (as
    some hosts and tests give) is made absolute with the ``Host`` header, else
    ``WEBSITE_HOSTNAME`` (set by App Service), else ``localhost``.
    """
    parts = urlsplit(request_url)
    lowered = {name.lower(): value for name, value in headers.items()}
    scheme, netloc = parts.scheme.lower(), parts.netloc
    if scheme not in ("http", "https") or not netloc:
        netloc = next(
            (
                host.strip()
                for host in (lowered.get("host", ""), os.environ.get("WEBSITE_HOSTNAME", ""))
                if _HOST.fullmatch(host.strip())
            ),
            "localhost",
        )
        forwarded = lowered.get("x-forwarded-proto", "").strip().lower()
        local = netloc.startswith(("localhost", "127.", "[::1]"))
        scheme = forwarded if forwarded in ("http", "https") else ("http" if local else "https")
    path = parts.path or "/api/narrations"
    if job_id is not None:
        path = f"{path.rstrip('/')}/{job_id}"
    code = params.get("code") or dict(parse_qsl(parts.query)).get("code")
    return urlunsplit((scheme, netloc, path, urlencode({"code": code}) if code else "", ""))


# --- The job record -------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


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

    def touch(self, now: datetime | None = None) -> None:
        self.updated_at = _iso(now or _now())

    def finish_with_result(self, result: Mapping[str, Any], *, reused_from: str | None = None) -> None:
        moment = _now()
        self.status = "succeeded"
        self.result = dict(result)
        self.reused_from = reused_from
        self.error = None
        self.finished_at = _iso(moment)
        if self.segments_total is not None:
            self.segments_done = self.segments_total
        self.touch(moment)

    def finish_with_error(self, error: PodcastError) -> None:
        self.finish_with_error_body(error.http_status, error_body(error))

    def finish_with_error_body(self, status: int, body: Mapping[str, Any]) -> None:
        moment = _now()
        self.status = "failed"
        self.error = {"status": int(status), "body": dict(body)}
        self.finished_at = _iso(moment)
        self.touch(moment)

    def is_stale(self, settings: JobSettings, now: datetime | None = None) -> bool:
        """``running`` with no heartbeat or progress for longer than ``stale_seconds``."""
        if self.status != "running":
            return False
        last = _parse_iso(self.heartbeat_at) or _parse_iso(self.updated_at)
        if last is None:
            return True
        return ((now or _now()) - last).total_seconds() > settings.stale_seconds


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


def stored_result(response: Mapping[str, Any]) -> dict[str, Any]:
    """A 200 body as kept in a record: the same keys, in order, without the SAS link."""
    return {**response, "audio_url": None, "expires_at": None}


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer for the function handlers: status, JSON body, extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


# --- Storage of jobs: records in blobs, ids in a queue ----------------------------------------

_JSON_CONTENT: Final = ContentSettings(content_type="application/json; charset=utf-8")


def record_name(job_id: str) -> str:
    return f"jobs/{job_id}.json"


def request_name(job_id: str) -> str:
    return f"jobs/{job_id}.request.json"


def idempotency_name(key: str) -> str:
    return f"idempotency/{hashlib.sha256(key.encode('utf-8')).hexdigest()}.json"


def cache_name(key: str) -> str:
    return f"cache/{key}.json"


class JobStore:
    """JSON documents in the jobs container (with ETags for conditional writes) and the
    job queue. One per process (see :func:`get_jobs`); every method maps Azure errors to
    :class:`~podcast.errors.StorageError` / ``StorageUnavailableError``."""

    def __init__(
        self,
        service: BlobServiceClient,
        settings: JobSettings,
        storage: StorageSettings,
        *,
        credential: AsyncTokenCredential | None = None,
        owns_credential: bool = False,
    ) -> None:
        self.settings = settings
        self._service = service
        self._container = service.get_container_client(settings.jobs_container)
        self._storage = storage
        self._credential = credential
        self._owns_credential = owns_credential
        self._queue: QueueClient | None = None
        self._container_ready = False
        self._queue_ready = False
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: JobSettings, storage: StorageSettings) -> JobStore:
        """A store on ``NARRATION_STORAGE``: a connection string, or service URIs with
        ``DefaultAzureCredential`` (user-assigned identity ``storage.client_id``)."""
        kwargs = BlobClientOptions().client_kwargs()
        if storage.connection_string:
            try:
                service = BlobServiceClient.from_connection_string(storage.connection_string, **kwargs)
            except ValueError:
                raise StorageError("the storage connection string is malformed") from None
            return cls(service, settings, storage)
        if not storage.blob_service_uri:
            raise StorageError("StorageSettings has neither a connection string nor a blob service URI")
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential(managed_identity_client_id=storage.client_id)
        try:
            service = BlobServiceClient(storage.blob_service_uri, credential=credential, **kwargs)
        except ValueError as exc:
            raise StorageError(f"the blob service URI cannot be used: {exc}") from None
        return cls(service, settings, storage, credential=credential, owns_credential=True)

    def _queue_client(self) -> QueueClient:
        if self._queue is None:
            kwargs: dict[str, Any] = {
                "message_encode_policy": TextBase64EncodePolicy(),
                # The SDK's exponential retry, short: after about 1 s and 3 s (default: 15 s, 18 s, 24 s).
                "initial_backoff": 1,
                "increment_base": 2,
                "random_jitter_range": 1,
                "retry_total": 2,
                "connection_timeout": 5.0,
                "read_timeout": 30.0,
            }
            name = self.settings.queue_name
            if self._storage.connection_string:
                self._queue = QueueClient.from_connection_string(
                    self._storage.connection_string, name, **kwargs
                )
            elif self._storage.queue_service_uri:
                self._queue = QueueClient(
                    self._storage.queue_service_uri, name, credential=self._credential, **kwargs
                )
            else:
                raise ConfigurationError(
                    f"{STORAGE_SETTING}__queueServiceUri",
                    "is not set; asynchronous narrations need the queue service URI "
                    "(https://<account>.queue.core.windows.net) with identity-based storage",
                )
        return self._queue

    def check_queue(self) -> None:
        """Raise ``ConfigurationError`` now if the queue cannot be reached with these settings."""
        self._queue_client()

    async def enqueue(self, job_id: str) -> None:
        """Send ``job_id`` (base64 text, as the Functions queue trigger expects) to the queue,
        creating the queue first if needed."""
        queue = self._queue_client()
        try:
            if not self._queue_ready:
                with contextlib.suppress(ResourceExistsError):
                    await queue.create_queue()
                self._queue_ready = True
            await queue.send_message(job_id)
        except AzureError as exc:
            raise map_storage_error(exc, f"enqueueing job {job_id}") from exc

    async def _ensure_container(self) -> None:
        async with self._lock:
            if self._container_ready:
                return
            try:
                await self._container.create_container()
            except ResourceExistsError:
                pass
            except AzureError as exc:
                raise map_storage_error(exc, f"creating container {self.settings.jobs_container!r}") from exc
            self._container_ready = True

    async def get(self, name: str) -> tuple[dict[str, Any], str] | None:
        """The JSON object at ``name`` and its ETag, or ``None`` when there is none."""
        return await download_json(self._container, name)

    async def put(
        self, name: str, document: Mapping[str, Any], *, etag: str | None = None, create: bool = False
    ) -> bool:
        """Write ``document`` at ``name``: only if absent (``create``), only if unchanged since
        ``etag``, or else unconditionally. ``False`` when the condition did not hold."""
        await self._ensure_container()
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        conditions: dict[str, Any] = {}
        if etag is not None and not create:
            conditions = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        for attempt in (1, 2):
            try:
                await self._container.upload_blob(
                    name, body, overwrite=not create, content_settings=_JSON_CONTENT, **conditions
                )
                return True
            except (ResourceExistsError, ResourceModifiedError) as exc:
                if create or etag is not None:
                    return False
                raise map_storage_error(exc, f"writing {name!r}") from exc
            except ResourceNotFoundError as exc:
                if etag is not None:
                    return False  # the blob is gone: its ETag cannot match
                if attempt == 2:
                    raise map_storage_error(exc, f"writing {name!r}") from exc
                self._container_ready = False  # the container was deleted meanwhile
                await self._ensure_container()
            except HttpResponseError as exc:
                if exc.status_code == 412:
                    return False
                raise map_storage_error(exc, f"writing {name!r}") from exc
            except AzureError as exc:
                raise map_storage_error(exc, f"writing {name!r}") from exc
        return False  # pragma: no cover - the loop always returns or raises

    async def delete(self, name: str, *, etag: str | None = None) -> None:
        """Delete ``name`` (only if unchanged since ``etag``); missing or changed is fine."""
        conditions: dict[str, Any] = {}
        if etag is not None:
            conditions = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        try:
            await self._container.delete_blob(name, **conditions)
        except (ResourceNotFoundError, ResourceModifiedError):
            return
        except HttpResponseError as exc:
            if exc.status_code != 412:
                raise map_storage_error(exc, f"deleting {name!r}") from exc
        except AzureError as exc:
            raise map_storage_error(exc, f"deleting {name!r}") from exc

    async def close(self) -> None:
        await self._service.close()
        if self._queue is not None:
            await self._queue.close()
        if self._owns_credential and self._credential is not None:
            await self._credential.close()


# --- The job service ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Reusable:
    """A finished narration of the same content whose audio still exists."""

    job_id: str | None
    result: dict[str, Any]


class JobService:
    """Submission, status and work of narration jobs on one :class:`JobStore`.

    The narration itself is the process-wide :class:`~podcast.services.pipeline.NarrationService`
    (:func:`~podcast.services.pipeline.get_service`); links are signed by the process-wide output
    :class:`~podcast.storage.blobs.BlobStore` (:func:`~podcast.storage.blobs.get_store`).
    """

    def __init__(self, store: JobStore, settings: JobSettings | None = None) -> None:
        self.store = store
        self.settings = settings or store.settings

    # --- POST ---------------------------------------------------------------------------

    async def submit(
        self,
        request: NarrationRequest,
        options: SubmitOptions,
        *,
        url: str,
        headers: Mapping[str, str],
        params: Mapping[str, str],
    ) -> Reply:
        """Narrate a validated request now (200) or accept it as a job (202); see the module
        docstring. Raises a :class:`~podcast.errors.PodcastError` (a missing setting, a
        narration or Storage failure)."""
        service = get_service()
        key = content_key(request, service.narrator.settings.deployment)
        estimate = estimate_audio_seconds(request)
        if options.respond_async or estimate > self.settings.sync_max_audio_seconds:
            for _ in range(3):
                reply = await self._submit_job(request, options, key, estimate, url, headers, params)
                if reply is not None:
                    return reply
            raise StorageError("the Idempotency-Key kept changing hands; try again")
        if options.reuse:
            reusable = await self._reusable(key)
            if reusable is not None:
                log.info("narration %s reused for a synchronous request", reusable.result.get("id"))
                return Reply(200, await self._signed(reusable.result, request.sas_expiry_minutes))
        result = await service.narrate(request)
        response = result.to_response()
        if options.store:
            await self._remember(key, None, stored_result(response))
        return Reply(200, response)

    async def _submit_job(
        self,
        request: NarrationRequest,
        options: SubmitOptions,
        key: str,
        estimate: float,
        url: str,
        headers: Mapping[str, str],
        params: Mapping[str, str],
    ) -> Reply | None:
        """Find or make the job; ``None`` when another request took the Idempotency-Key
        between our read and our write (the caller tries again and finds that job)."""
        store = self.store
        store.check_queue()
        fingerprint = request_hash(request)
        key_name = idempotency_name(options.idempotency_key) if options.idempotency_key else None
        key_etag: str | None = None
        if key_name is not None:
            mapped = await store.get(key_name)
            if mapped is not None:
                document, key_etag = mapped
                if document.get("request_hash") != fingerprint:
                    raise IdempotencyKeyReusedError()
                existing = await self._current(str(document.get("job_id", "")))
                if existing is not None and existing.status != "failed":
                    log.info("job %s found again by its idempotency key", existing.id)
                    return self._accepted(existing, url, headers, params, collection=True)
                # The key's job failed (or vanished): this request starts a new job.

        now = _iso(_now())
        record = JobRecord(
            id=uuid.uuid4().hex,
            status="queued",
            created_at=now,
            updated_at=now,
            estimated_audio_seconds=estimate,
            sas_expiry_minutes=request.sas_expiry_minutes,
            cache_key=key,
            reuse=options.reuse,
            store_result=options.store,
        )
        claim_etag: str | None = None
        leader = True
        if options.reuse:
            reusable = await self._reusable(key)
            if reusable is not None:
                record.finish_with_result(reusable.result, reused_from=reusable.job_id)
                leader = False
            else:
                active, claim_etag = await self._active_leader(key)
                if active is not None:
                    record.leader = active.id
                    record.segments_total = active.segments_total
                    leader = False
        if leader:
            await store.put(request_name(record.id), request.model_dump(mode="json", exclude_unset=True))
        await store.put(record_name(record.id), record.to_dict(), create=True)

        if key_name is not None:
            mapping = {"job_id": record.id, "request_hash": fingerprint, "created_at": now}
            if not await store.put(key_name, mapping, etag=key_etag, create=key_etag is None):
                # Another request with this key won the race: answer with its job instead.
                await store.delete(record_name(record.id))
                await store.delete(request_name(record.id))
                return None

        if leader:
            if options.store:
                claim = {"state": "pending", "job_id": record.id, "updated_at": now}
                claimed = await store.put(cache_name(key), claim, etag=claim_etag, create=claim_etag is None)
                if not claimed and claim_etag is not None:  # the stale claim was removed meanwhile
                    await store.put(cache_name(key), claim, create=True)
            try:
                await store.enqueue(record.id)
            except PodcastError as error:
                record.finish_with_error(error)
                with contextlib.suppress(PodcastError):
                    await store.put(record_name(record.id), record.to_dict())
                    await self._release_claim(record)
                    await store.delete(request_name(record.id))
                raise
        log.info(
            "job %s accepted: %s, estimated audio %.0fs",
            record.id,
            "narration queued"
            if leader
            else ("following job " + record.leader if record.leader else "reusing finished audio"),
            estimate,
        )
        return self._accepted(record, url, headers, params, collection=True)

    def _accepted(
        self,
        record: JobRecord,
        url: str,
        headers: Mapping[str, str],
        params: Mapping[str, str],
        *,
        collection: bool,
    ) -> Reply:
        """202 with the job's absolute ``Location``, ``Retry-After`` and status document."""
        location = job_url(url, headers=headers, params=params, job_id=record.id if collection else None)
        wait = retry_after_seconds(
            record.estimated_audio_seconds, record.segments_done, record.segments_total
        )
        if record.status in FINAL_STATUSES:
            wait = 1
        return Reply(202, status_document(record), {"Location": location, "Retry-After": str(wait)})

    # --- GET ----------------------------------------------------------------------------

    async def reply(
        self, job_id: str, *, url: str, headers: Mapping[str, str], params: Mapping[str, str]
    ) -> Reply:
        """What ``GET /api/narrations/{id}`` answers: 202 while queued or running, the
        synchronous 200 body (fresh link) once succeeded, the error body and status once
        failed. Raises :class:`~podcast.errors.JobNotFoundError` for an unknown or
        malformed id."""
        if not JOB_ID.fullmatch(job_id):
            raise JobNotFoundError()
        record = await self._current(job_id)
        if record is None:
            raise JobNotFoundError()
        if record.status == "succeeded" and record.result is not None:
            return Reply(200, await self._signed(record.result, record.sas_expiry_minutes))
        if record.status == "failed" and record.error is not None:
            return Reply(int(record.error["status"]), dict(record.error["body"]))
        return self._accepted(record, url, headers, params, collection=False)

    async def _current(self, job_id: str, *, depth: int = 0) -> JobRecord | None:
        """The job's record brought up to date: a stale ``running`` job is marked failed, a
        follower takes its leader's outcome. ``None`` when there is no such job."""
        if not JOB_ID.fullmatch(job_id):
            return None
        loaded = await self.store.get(record_name(job_id))
        if loaded is None:
            return None
        document, etag = loaded
        record = JobRecord.from_dict(document)
        if record.status in FINAL_STATUSES:
            return record
        if record.leader is not None:
            leader = await self._current(record.leader, depth=depth + 1) if depth < 2 else None
            if leader is None:
                record.finish_with_error(JobStalledError("the narration this job was waiting for is gone"))
            elif leader.status == "succeeded" and leader.result is not None:
                record.finish_with_result(leader.result, reused_from=leader.id)
            elif leader.status == "failed" and leader.error is not None:
                record.finish_with_error_body(leader.error["status"], leader.error["body"])
            else:
                record.status = leader.status
                record.segments_done, record.segments_total = leader.segments_done, leader.segments_total
                return record
            with contextlib.suppress(PodcastError):  # materialize; the next read repeats it otherwise
                await self.store.put(record_name(job_id), record.to_dict(), etag=etag)
            return record
        if record.is_stale(self.settings):
            record.finish_with_error(JobStalledError())
            if await self.store.put(record_name(job_id), record.to_dict(), etag=etag):
                log.warning(
                    "job %s had no heartbeat for %.0fs: marked failed", job_id, self.settings.stale_seconds
                )
                await self._release_claim(record)
                with contextlib.suppress(PodcastError):
                    await self.store.delete(request_name(job_id))
                return record
            # The worker wrote meanwhile, so it is alive: read its version.
            return await self._current(job_id, depth=depth + 1) if depth < 2 else record
        return record

    # --- Content reuse --------------------------------------------------------------------

    async def _reusable(self, key: str) -> _Reusable | None:
        """A finished narration of this content whose WAV still exists, if any."""
        loaded = await self.store.get(cache_name(key))
        if loaded is None:
            return None
        document, _ = loaded
        result = document.get("result")
        if document.get("state") != "succeeded" or not isinstance(result, dict):
            return None
        output = get_store()
        if result.get("container") != output.container or not await output.exists(
            str(result.get("blob_name"))
        ):
            return None
        job_id = document.get("job_id")
        return _Reusable(str(job_id) if job_id else None, result)

    async def _active_leader(self, key: str) -> tuple[JobRecord | None, str | None]:
        """The queued or running job that claimed this content, if any; else ``None`` and the
        ETag of the cache document to replace (``None`` when there is none)."""
        loaded = await self.store.get(cache_name(key))
        if loaded is None:
            return None, None
        document, etag = loaded
        if document.get("state") == "pending":
            leader = await self._current(str(document.get("job_id", "")))
            if leader is not None and leader.status in ("queued", "running"):
                return leader, etag
        return None, etag

    async def _remember(self, key: str, job_id: str | None, result: Mapping[str, Any]) -> None:
        """Record a finished narration for reuse (best effort: a failure only costs reuse)."""
        document = {
            "state": "succeeded",
            "job_id": job_id,
            "updated_at": _iso(_now()),
            "result": dict(result),
        }
        try:
            await self.store.put(cache_name(key), document)
        except PodcastError as error:
            log.warning("could not record narration for reuse (%s)", error.code)

    async def _release_claim(self, record: JobRecord) -> None:
        """Remove this job's ``pending`` claim on its content (best effort)."""
        if record.cache_key is None:
            return
        with contextlib.suppress(PodcastError):
            loaded = await self.store.get(cache_name(record.cache_key))
            if loaded is not None:
                document, etag = loaded
                if document.get("state") == "pending" and document.get("job_id") == record.id:
                    await self.store.delete(cache_name(record.cache_key), etag=etag)

    async def _signed(self, result: Mapping[str, Any], sas_expiry_minutes: int) -> dict[str, Any]:
        """A stored 200 body with a fresh read-only link valid for ``sas_expiry_minutes``."""
        url, expires_at = await get_store().read_url(
            str(result["blob_name"]), expires_in=timedelta(minutes=sas_expiry_minutes)
        )
        return {
            **result,
            "audio_url": url,
            "expires_at": expires_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }

    # --- The worker -----------------------------------------------------------------------

    async def run(self, body: bytes | str, *, dequeue_count: int) -> str:
        """Carry out the job named by a queue message; return what happened (for logs, tests).

        Returns normally when the job is done with, whatever its outcome: finished
        (``succeeded``, ``reused``), ``failed`` (a permanent error, or a transient one on
        the last delivery, ``NARRATION_QUEUE_MAX_DEQUEUE_COUNT``), or nothing to do
        (``ignored``: a malformed message, an unknown job, a finished job, a follower, or a
        job another worker is running). Raises the error of a transient failure before the
        last delivery, after putting the job back to ``queued``, so the host retries.
        """
        job_id = job_id_from_message(body)
        if job_id is None:
            log.warning("queue message is not a job id: ignored")
            return "ignored"
        loaded = await self.store.get(record_name(job_id))
        if loaded is None:
            log.warning("job %s does not exist: message ignored", job_id)
            return "ignored"
        document, etag = loaded
        record = JobRecord.from_dict(document)
        if record.status in FINAL_STATUSES or record.leader is not None:
            return "ignored"
        if record.status == "running" and not record.is_stale(self.settings):
            log.warning("job %s is running elsewhere: message ignored", job_id)
            return "ignored"
        last = dequeue_count >= self.settings.max_dequeue_count
        try:
            return await self._work(record, etag, dequeue_count)
        except PodcastError as error:
            if error.transient and not last:
                await self._requeue(record, error_body(error)["error"])
                log.warning(
                    "job %s attempt %d failed (%s): will be retried", job_id, dequeue_count, error.code
                )
                raise
            await self._fail(record, error)
            log.warning("job %s failed (%s) on delivery %d", job_id, error.code, dequeue_count)
            return "failed"
        except Exception:
            if not last:
                log.exception("job %s attempt %d failed unexpectedly: will be retried", job_id, dequeue_count)
                await self._requeue(record, {"code": "internal_error"})
                raise
            log.exception("job %s failed unexpectedly on its last delivery", job_id)
            await self._fail(record, PodcastError("an unexpected error occurred; it has been logged"))
            return "failed"

    async def _work(self, record: JobRecord, etag: str, dequeue_count: int) -> str:
        store = self.store
        reusable = await self._reusable(record.cache_key) if record.cache_key else None
        if reusable is not None and (record.reuse or reusable.job_id == record.id):
            reused_from = reusable.job_id if reusable.job_id != record.id else None
            record.finish_with_result(reusable.result, reused_from=reused_from)
            await store.put(record_name(record.id), record.to_dict())
            await self._cleanup(record)
            return "reused"

        loaded = await store.get(request_name(record.id))
        if loaded is None:
            raise PodcastError("the job's stored request is missing")
        request = NarrationRequest.model_validate(loaded[0], context={"limits": _GENEROUS_LIMITS})
        service = get_service()

        moment = _now()
        record.status = "running"
        record.attempts = dequeue_count
        record.started_at = record.heartbeat_at = _iso(moment)
        record.segments_done = 0
        record.touch(moment)
        if not await store.put(record_name(record.id), record.to_dict(), etag=etag):
            log.warning("job %s changed while being started (another delivery?): message ignored", record.id)
            return "ignored"
        log.info("job %s running (delivery %d)", record.id, dequeue_count)

        progress = _Progress(store, record)
        heartbeat = asyncio.create_task(progress.beat(self.settings.heartbeat_seconds))
        try:
            result = await service.narrate(
                request,
                narration_id=record.id,
                on_progress=progress.update,
                time_budget_seconds=self.settings.job_time_budget_seconds,
            )
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        response = stored_result(result.to_response())
        if record.store_result and record.cache_key:
            await self._remember(record.cache_key, record.id, response)
        record.finish_with_result(response)
        await store.put(record_name(record.id), record.to_dict())
        await self._cleanup(record)
        log.info("job %s succeeded", record.id)
        return "succeeded"

    async def _requeue(self, record: JobRecord, error: Mapping[str, Any]) -> None:
        record.status = "queued"
        record.last_error = dict(error)
        record.touch()
        with contextlib.suppress(PodcastError):
            await self.store.put(record_name(record.id), record.to_dict())

    async def _fail(self, record: JobRecord, error: PodcastError) -> None:
        """Mark the job failed with ``error``. A Storage failure here propagates: the host
        then retries, and failing that the stale rule marks the job failed."""
        record.finish_with_error(error)
        await self.store.put(record_name(record.id), record.to_dict())
        await self._release_claim(record)
        await self._cleanup(record)

    async def _cleanup(self, record: JobRecord) -> None:
        """Remove the finished job's stored request (the text), best effort."""
        with contextlib.suppress(PodcastError):
            await self.store.delete(request_name(record.id))


class _Progress:
    """Writes a running job's progress and heartbeat, one write at a time, best effort."""

    def __init__(self, store: JobStore, record: JobRecord) -> None:
        self._store = store
        self._record = record
        self._lock = asyncio.Lock()

    async def update(self, done: int, total: int) -> None:
        self._record.segments_done, self._record.segments_total = done, total
        await self._write()

    async def beat(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self._write()

    async def _write(self) -> None:
        async with self._lock:
            moment = _now()
            self._record.heartbeat_at = _iso(moment)
            self._record.touch(moment)
            try:
                await self._store.put(record_name(self._record.id), self._record.to_dict())
            except PodcastError as error:
                log.warning("job %s: progress not recorded (%s)", self._record.id, error.code)


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


# --- The process-wide service and the trigger entry points ------------------------------------

_jobs: PerLoop[JobService] = PerLoop(lambda jobs: jobs.store.close())


def get_jobs() -> JobService:
    """The process-wide job service, made on first use inside the running event loop (and
    again when the loop, the jobs container, the queue or the Storage connection change;
    other settings are re-read on every call). Raises ``ConfigurationError``."""
    settings = JobSettings.from_env()
    storage = StorageSettings.from_env()
    jobs = _jobs.get(
        lambda: JobService(JobStore.from_settings(settings, storage)),
        key=(settings.jobs_container, settings.queue_name, storage),
    )
    jobs.settings = settings
    return jobs


async def close_jobs() -> None:
    """Close and forget the process-wide job service (call from the loop that made it)."""
    await _jobs.close()


async def submit_narration(
    body: bytes,
    *,
    content_type: str | None,
    headers: Mapping[str, str],
    url: str,
    params: Mapping[str, str],
) -> Reply:
    """``POST /api/narrations``: validate, then narrate now (200) or accept a job (202).

    Validation is exactly the synchronous endpoint's and comes first: an invalid request
    (body or headers) raises :class:`~podcast.errors.RequestValidationError` before any
    setting is read, anything is stored or enqueued, or Azure OpenAI is contacted. Then
    a missing setting raises ``ConfigurationError``; narration and Storage failures raise
    their :class:`~podcast.errors.PodcastError`.
    """
    check_content_type(content_type)
    request = parse_request(body, RequestLimits.from_env())
    options = SubmitOptions.from_headers(headers)
    get_service()  # names a missing Azure OpenAI setting before Storage is touched
    return await get_jobs().submit(request, options, url=url, headers=headers, params=params)


async def job_reply(job_id: str, *, url: str, headers: Mapping[str, str], params: Mapping[str, str]) -> Reply:
    """``GET /api/narrations/{id}``: see :meth:`JobService.reply`."""
    if not JOB_ID.fullmatch(job_id):
        raise JobNotFoundError()
    return await get_jobs().reply(job_id, url=url, headers=headers, params=params)


async def run_queued_job(body: bytes | str, *, dequeue_count: int | None) -> str:
    """The queue trigger: see :meth:`JobService.run`. ``dequeue_count`` ``None`` counts as 1."""
    return await get_jobs().run(body, dequeue_count=dequeue_count or 1)


__all__ = [
    "JobRecord",
    "JobService",
    "JobSettings",
    "JobStore",
    "Reply",
    "SubmitOptions",
    "close_jobs",
    "content_key",
    "estimate_audio_seconds",
    "get_jobs",
    "job_id_from_message",
    "job_reply",
    "job_url",
    "retry_after_seconds",
    "run_queued_job",
    "status_document",
    "submit_narration",
]
