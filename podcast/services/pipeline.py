"""From a validated request to stored audio: narrate, frame as WAV, upload, sign a link.

:class:`NarrationService` is what the triggers call (through :func:`narrate_body`). It
guarantees that a failed narration leaves nothing in Storage and that a result is only
returned when the WAV and its transcript document are both stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any, Final, Literal, TypeVar

from podcast.engine import audio
from podcast.engine.longform import NarrationSettings, ProgressCallback, SegmentReport, narrate_text
from podcast.engine.realtime import Narrator, Usage
from podcast.errors import ConfigurationError, PodcastError, RequestValidationError
from podcast.http.responses import error_body
from podcast.models import NarrationRequest, RequestLimits, parse_request
from podcast.perloop import PerLoop
from podcast.services.documents import DocumentLimits, request_from_document
from podcast.settings import RealtimeSettings, StorageSettings, float_setting, int_setting
from podcast.storage.blobs import BlobStore, close_store, get_store

log = logging.getLogger(__name__)

TIME_BUDGET_SETTING: Final = "NARRATION_TIME_BUDGET_SECONDS"

DOCUMENT_ATTEMPTS_SETTING: Final = "NARRATION_DOCUMENT_MAX_ATTEMPTS"
DEFAULT_DOCUMENT_ATTEMPTS: Final = 2
"""Matches host.json's ``extensions.blobs.poisonBlobThreshold``."""

JSON_CONTENT_TYPES: Final = ("application/json", "text/json")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    """How a narration is carried out (all have defaults; see the README's settings table)."""

    time_budget_seconds: float = 200.0
    """The whole narration, retries included, must finish within this (HTTP allows 230 s)."""
    narration: NarrationSettings = field(default_factory=NarrationSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PipelineSettings:
        env = os.environ if env is None else env
        return cls(
            time_budget_seconds=float_setting(env, TIME_BUDGET_SETTING, 200.0, 10.0, 3600.0),
            narration=NarrationSettings.from_env(env),
        )


@dataclass(frozen=True, slots=True)
class DocumentOutcome:
    """What became of an uploaded document: ``narrated``, ``skipped`` (done before) or ``failed``."""

    status: Literal["narrated", "skipped", "failed"]
    base: str
    """Output blob names without extension (``<base>.wav``, ``.json``, ``.error.json``)."""
    result: NarrationResult | None = None
    error: PodcastError | None = None


@dataclass(frozen=True, slots=True)
class NarrationResult:
    """A stored narration, as the HTTP response and the transcript document describe it."""

    id: str
    audio_url: str | None
    """Read-only SAS link (``None`` for uploaded documents, which get no link)."""
    expires_at: datetime | None
    container: str
    blob_name: str
    transcript_blob_name: str
    transcript: str
    duration_seconds: float
    request: NarrationRequest
    usage: Usage
    created_at: datetime
    segments: tuple[SegmentReport, ...] = field(default=())
    fidelity: float | None = None
    """Overall word similarity of the transcript to the text (``None`` in episode mode)."""
    min_fidelity: float | None = None
    warnings: tuple[str, ...] = ()

    def to_response(self) -> dict[str, Any]:
        """The JSON body of a successful ``POST /api/narrations``."""
        return {
            "id": self.id,
            "audio_url": self.audio_url,
            "expires_at": _iso(self.expires_at) if self.expires_at else None,
            "container": self.container,
            "blob_name": self.blob_name,
            "transcript_blob_name": self.transcript_blob_name,
            "transcript": self.transcript,
            "duration_seconds": round(self.duration_seconds, 3),
            "voice": self.request.voice,
            "mode": self.request.mode,
            "style": self.request.style,
            "language": self.request.language,
            "title": self.request.title,
            "format": "wav",
            "sample_rate": audio.SAMPLE_RATE,
            "characters": len(self.request.text),
            "segments": len(self.segments) or 1,
            "fidelity": None if self.fidelity is None else round(self.fidelity, 4),
            "warnings": list(self.warnings),
            "usage": self.usage.to_dict(),
        }


class NarrationService:
    """Narrates requests with one :class:`Narrator` and stores results in one :class:`BlobStore`."""

    def __init__(
        self,
        narrator: Narrator,
        store: BlobStore,
        settings: PipelineSettings | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.narrator = narrator
        self.store = store
        self.settings = settings or PipelineSettings()
        self._clock = clock
        self._new_id = new_id

    async def close(self) -> None:
        await self.narrator.close()
        await self.store.close()

    async def narrate(
        self,
        request: NarrationRequest,
        *,
        narration_id: str | None = None,
        on_progress: ProgressCallback | None = None,
        time_budget_seconds: float | None = None,
    ) -> NarrationResult:
        """Narrate ``request``, store the WAV and its transcript document, return a read link.

        Blobs are named ``<yyyy>/<mm>/<dd>/<id>.wav`` and ``.json`` (``narration_id``
        defaults to a new random id). ``on_progress(done, total)`` is awaited as segments
        finish. ``time_budget_seconds`` overrides the settings' budget (e.g. for queued
        jobs, which are not bound by HTTP's 230 seconds). Raises a
        :class:`~podcast.errors.PodcastError`; when it does, nothing of this narration is
        left in Storage.
        """
        created_at = self._clock()
        narration_id = narration_id or self._new_id()
        return await self._produce(
            request,
            narration_id=narration_id,
            base=f"{created_at:%Y/%m/%d}/{narration_id}",
            created_at=created_at,
            link_expires_in=timedelta(minutes=request.sas_expiry_minutes),
            on_progress=on_progress,
            time_budget_seconds=time_budget_seconds,
        )

    async def _produce(
        self,
        request: NarrationRequest,
        *,
        narration_id: str,
        base: str,
        created_at: datetime,
        link_expires_in: timedelta | None,
        source: Mapping[str, Any] | None = None,
        on_progress: ProgressCallback | None = None,
        time_budget_seconds: float | None = None,
    ) -> NarrationResult:
        """Narrate, then store ``<base>.wav`` and then ``<base>.json`` (the completion mark).

        Each upload is atomic (a blob is visible only once committed); if anything fails,
        whatever this call wrote is removed again before the error propagates.
        """
        started = time.monotonic()
        blob_name, transcript_blob_name = f"{base}.wav", f"{base}.json"
        # Fail before paying for a narration when Storage is unreachable (or the identity
        # may not sign links): the container check and the link come first.
        await self.store.ensure_container()
        url: str | None = None
        expires_at: datetime | None = None
        if link_expires_in is not None:
            url, expires_at = await self.store.read_url(blob_name, expires_in=link_expires_in)
        # Segments are staged as blocks as they finish; nothing is visible until commit().
        writer = self.store.wav_writer(blob_name)
        narration = await narrate_text(
            self.narrator,
            request,
            writer,
            self.settings.narration,
            budget_seconds=time_budget_seconds or self.settings.time_budget_seconds,
            on_progress=on_progress,
        )
        result = NarrationResult(
            id=narration_id,
            audio_url=url,
            expires_at=expires_at,
            container=self.store.container,
            blob_name=blob_name,
            transcript_blob_name=transcript_blob_name,
            transcript=narration.transcript,
            duration_seconds=narration.duration_seconds,
            request=request,
            usage=narration.usage,
            created_at=created_at,
            segments=narration.segments,
            fidelity=narration.fidelity,
            min_fidelity=self.settings.narration.min_fidelity,
            warnings=narration.warnings,
        )
        written: list[str] = []
        try:
            await writer.commit(
                download_name=request.download_name(),
                metadata={
                    "narration_id": narration_id,
                    "voice": request.voice,
                    "mode": request.mode,
                    "style": request.style,
                    "duration_seconds": f"{narration.duration_seconds:.3f}",
                    "characters": str(len(request.text)),
                },
            )
            written.append(blob_name)
            document = transcript_document(result)
            if source is not None:
                document["source"] = dict(source)
            await self.store.upload_json(transcript_blob_name, document)
        except BaseException:
            await self._discard(*written)
            raise
        log.info(
            "narration %s stored: characters=%d segments=%d audio=%.2fs elapsed=%.2fs tokens=%d",
            narration_id,
            len(request.text),
            len(narration.segments),
            narration.duration_seconds,
            time.monotonic() - started,
            narration.usage.total_tokens,
        )
        return result

    async def narrate_document(
        self,
        source_name: str,
        data: bytes,
        *,
        etag: str | None = None,
        limits: DocumentLimits | None = None,
        request_limits: RequestLimits | None = None,
        max_attempts: int = DEFAULT_DOCUMENT_ATTEMPTS,
    ) -> DocumentOutcome:
        """Narrate an uploaded document into ``<name-without-extension>.wav`` and ``.json``.

        Idempotent: when ``.json`` already records this content (SHA-256), nothing is
        narrated. A document that can never be narrated gets ``.error.json`` and no raise.
        A transient failure raises (the host retries) after recording the attempt in
        ``.error.json``; the ``max_attempts``-th transient failure is recorded as final and
        does not raise. Success removes any ``.error.json``.
        """
        base = (
            str(PurePosixPath(source_name).with_suffix(""))
            if "." in PurePosixPath(source_name).name
            else source_name
        )
        error_blob = f"{base}.error.json"
        source = {
            "blob_name": source_name,
            "etag": etag,
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
        }
        await self.store.ensure_container()
        existing = await self.store.read_json(f"{base}.json")
        if existing and (existing.get("source") or {}).get("sha256") == source["sha256"]:
            log.info("document %s already narrated; skipping", _short(source_name))
            return DocumentOutcome("skipped", base)
        try:
            request = request_from_document(
                source_name,
                data,
                limits or DocumentLimits.from_env(),
                request_limits or RequestLimits.from_env(),
            )
            result = await self._produce(
                request,
                narration_id=self._new_id(),
                base=base,
                created_at=self._clock(),
                link_expires_in=None,
                source=source,
            )
        except PodcastError as error:
            previous = await _quietly(self.store.read_json(error_blob))
            attempts = 1
            if previous and (previous.get("source") or {}).get("sha256") == source["sha256"]:
                attempts = int(previous.get("attempts", 0)) + 1
            final = not error.transient or attempts >= max_attempts
            record = {
                "status": "failed" if final else "retrying",
                "final": final,
                "attempts": attempts,
                "max_attempts": max_attempts if error.transient else 1,
                "error": error_body(error)["error"],
                "source": source,
                "updated_at": _iso(self._clock()),
            }
            await _quietly(self.store.upload_json(error_blob, record))
            log.warning(
                "document %s failed (%s), attempt %d, %s",
                _short(source_name),
                error.code,
                attempts,
                "final" if final else "will be retried",
            )
            if final:
                return DocumentOutcome("failed", base, error=error)
            raise
        await _quietly(self.store.delete_if_exists(error_blob))
        return DocumentOutcome("narrated", base, result=result)

    async def _discard(self, *blob_names: str) -> None:
        """Best-effort removal of a failed narration's blobs (never masks the real error)."""
        for name in blob_names:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.delete_if_exists(name))


async def _quietly(awaitable: Awaitable[T]) -> T | None:
    """Await a best-effort Storage call; a failure (already being reported) gives ``None``."""
    try:
        return await awaitable
    except PodcastError:
        return None


def _short(name: str) -> str:
    """A blob name shortened for logs."""
    return name if len(name) <= 80 else f"{name[:40]}...{name[-30:]}"


def transcript_document(result: NarrationResult) -> dict[str, Any]:
    """The JSON stored beside the WAV: the response fields (without the SAS link) and timings."""
    document = result.to_response()
    document.pop("audio_url")
    document.pop("expires_at")
    document["created_at"] = _iso(result.created_at)
    document["min_fidelity"] = result.min_fidelity
    document["segments"] = [s.to_dict() for s in result.segments]
    return document


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- The process-wide service and the trigger entry points ---------------------------------

_services: PerLoop[NarrationService] = PerLoop(lambda service: service.narrator.close())


def get_service() -> NarrationService:
    """The process-wide service, made on first use inside the running event loop.

    Raises :class:`~podcast.errors.ConfigurationError` naming a missing setting.
    """

    def make() -> NarrationService:
        realtime = RealtimeSettings.from_env()
        storage = StorageSettings.from_env()
        return NarrationService(Narrator(realtime), get_store(storage), PipelineSettings.from_env())

    return _services.get(make)


async def close_service() -> None:
    """Close and forget the process-wide service and its store (from the loop that made them)."""
    await _services.close()
    await close_store()


def check_content_type(content_type: str | None) -> None:
    """Accept JSON (or no content type at all); anything else is a 400 naming the header."""
    if not content_type:
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in JSON_CONTENT_TYPES and not media_type.endswith("+json"):
        raise RequestValidationError(
            f"Content-Type must be application/json, not {media_type[:60]!r}",
            field="Content-Type",
            code="unsupported_content_type",
        )


async def narrate_body(body: bytes, *, content_type: str | None = None) -> NarrationResult:
    """Validate an HTTP body and narrate it: what ``POST /api/narrations`` does.

    Validation happens first: an invalid request raises
    :class:`~podcast.errors.RequestValidationError` before any connection is opened.
    """
    check_content_type(content_type)
    request = parse_request(body, RequestLimits.from_env())
    return await get_service().narrate(request)


async def narrate_upload(blob_name: str, data: bytes, *, etag: str | None = None) -> DocumentOutcome:
    """What the blob trigger does with an uploaded blob (``<input container>/<name>``).

    Raises only for transient failures that the host should retry (see
    :meth:`NarrationService.narrate_document`).
    """
    storage = StorageSettings.from_env()
    if storage.input_container == storage.output_container:
        raise ConfigurationError(
            "NARRATION_OUTPUT_CONTAINER",
            "must differ from NARRATION_INPUT_CONTAINER (outputs would trigger again)",
        )
    prefix = f"{storage.input_container}/"
    source_name = blob_name[len(prefix) :] if blob_name.startswith(prefix) else blob_name
    max_attempts = int_setting(os.environ, DOCUMENT_ATTEMPTS_SETTING, DEFAULT_DOCUMENT_ATTEMPTS, 1, 10)
    return await get_service().narrate_document(source_name, data, etag=etag, max_attempts=max_attempts)


def health_report(env: Mapping[str, str] | None = None) -> tuple[bool, dict[str, Any]]:
    """Whether the app is configured, and which settings and auth modes are in use.

    Never contains a secret: only presence, names and modes.
    """
    env = os.environ if env is None else env
    report: dict[str, Any] = {}
    healthy = True
    sections: dict[str, Callable[[], dict[str, Any]]] = {
        "realtime": lambda: _realtime_health(RealtimeSettings.from_env(env)),
        "storage": lambda: _storage_health(StorageSettings.from_env(env)),
        "limits": lambda: _limits_health(RequestLimits.from_env(env), PipelineSettings.from_env(env)),
        "jobs": lambda: _jobs_health(env),
    }
    for name, read in sections.items():
        try:
            report[name] = {"configured": True, **read()}
        except ConfigurationError as error:
            healthy = False
            report[name] = {"configured": False, "problem": error.message, "setting": error.setting}
    return healthy, {"status": "ok" if healthy else "not_configured", **report}


def _realtime_health(settings: RealtimeSettings) -> dict[str, Any]:
    return {
        "endpoint_host": settings.endpoint.split("://", 1)[1].split("/", 1)[0],
        "deployment": settings.deployment,
        "auth_mode": settings.auth_mode,
        "response_timeout_seconds": settings.response_timeout_seconds,
        "max_retries": settings.max_retries,
    }


def _storage_health(settings: StorageSettings) -> dict[str, Any]:
    return {
        "auth_mode": settings.auth_mode,
        "output_container": settings.output_container,
        "input_container": settings.input_container,
    }


def _jobs_health(env: Mapping[str, str]) -> dict[str, Any]:
    from podcast.services.jobs import JobSettings  # jobs builds on this module

    jobs = JobSettings.from_env(env)
    return {
        "queue": jobs.queue_name,
        "jobs_container": jobs.jobs_container,
        "sync_max_audio_seconds": jobs.sync_max_audio_seconds,
        "job_time_budget_seconds": jobs.job_time_budget_seconds,
    }


def _limits_health(limits: RequestLimits, pipeline: PipelineSettings) -> dict[str, Any]:
    return {
        "max_text_characters": limits.max_text_characters,
        "max_sas_expiry_minutes": limits.max_sas_expiry_minutes,
        "default_voice": limits.default_voice,
        "time_budget_seconds": pipeline.time_budget_seconds,
        "concurrency": pipeline.narration.concurrency,
        "segment_max_words": pipeline.narration.segment_max_words,
        "min_fidelity": pipeline.narration.min_fidelity,
        "fidelity_policy": pipeline.narration.fidelity_policy,
    }
