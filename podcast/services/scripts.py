"""Conversation scripts: written once per content, and a failed one never billed twice.

:class:`ScriptService` writes the script of a :class:`~podcast.models.ScriptRequest` with the
:class:`~podcast.engine.scriptwriter.ScriptWriter` (``POST /api/scripts``, and the first half
of ``mode: "conversation"``) and remembers the outcome in the jobs container, at
``scripts/<content key>.json`` (:class:`~podcast.wire.ScriptCacheEntry`). The content key
hashes the request's :meth:`~podcast.models.ScriptRequest.fingerprint` (text, speakers,
target_minutes, style, language, instructions) with the deployment that writes.

Why remember a failure: a script the model keeps getting wrong ends in
:class:`~podcast.errors.ScriptInvalidError`, a 502 as the issue asks, after every attempt was
paid for. Power Automate's and Logic Apps' default retry policy repeats a 5xx up to four
times, and every repeat would pay for all the attempts again. So the failure is stored with
its status and body, and an identical request within :data:`FAILURE_MEMORY_SECONDS` is
answered with that same 502 from Storage, without calling the model: the script is billed
once. (``Idempotency-Key`` is not needed for this: the content key already makes a repeated
request the same request.) A stored script is answered again the same way, so a flow that
writes the script and then sends it back gets the same turns every time.

``Cache-Control: no-cache`` writes afresh (and replaces the entry); ``no-store`` neither
reads nor writes entries. Entries are best effort: Storage failing costs only the reuse.
Two identical requests at the same moment may both be written (and billed); no claim is
taken, as the content reuse of narrations does for jobs.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from pydantic import ValidationError

from podcast.engine.scriptwriter import ScriptWriter, WrittenScript
from podcast.errors import PodcastError, ScriptInvalidError
from podcast.models import ScriptRequest, SubmitOptions
from podcast.storage.documents import DocumentStore
from podcast.storage.names import blob_name, check_blob_segment
from podcast.wire import ErrorBody, JobError, ScriptCacheEntry, Usage, job_timestamp

log = logging.getLogger(__name__)

FAILURE_MEMORY_SECONDS: Final = 3600.0
"""How long a failed script is answered from Storage: longer than any default retry policy
of Power Automate or Logic Apps keeps retrying (four retries, at most about four minutes)."""


def script_key(request: ScriptRequest, deployment: str) -> str:
    """The content key (SHA-256, hex) of a script: what decides it, and the deployment."""
    return hashlib.sha256(f"v1\n{deployment}\n{request.fingerprint()}".encode()).hexdigest()


def entry_name(key: str) -> str:
    """``scripts/<key>.json``."""
    return blob_name("scripts", f"{check_blob_segment(key, field='script key')}.json")


class ScriptService:
    """Writes scripts with ``writer`` (of ``deployment``) and keeps their outcomes in
    ``documents`` (the jobs container). ``budget_seconds`` bounds one script's writing."""

    def __init__(
        self,
        writer: ScriptWriter,
        documents: DocumentStore,
        *,
        deployment: str,
        budget_seconds: float | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.writer = writer
        self.documents = documents
        self.deployment = deployment
        self.budget_seconds = budget_seconds
        self.clock = clock

    async def write(
        self, request: ScriptRequest, options: SubmitOptions, *, budget_seconds: float | None = None
    ) -> WrittenScript:
        """The script of ``request``: the stored one (``replies`` 0, no usage) unless
        ``options.reuse`` is off, else newly written and stored unless ``options.remember``
        is off. Raises the stored :class:`~podcast.errors.ScriptInvalidError` for a request
        that failed so less than :data:`FAILURE_MEMORY_SECONDS` ago, or the writer's
        :class:`~podcast.errors.PodcastError` (a new ``ScriptInvalidError`` is stored first)."""
        key = script_key(request, self.deployment)
        if options.reuse:
            stored = await self._stored(key)
            if stored is not None:
                return _answer(stored, request)
        try:
            written = await self.writer.write(
                request.request,
                request.speakers,
                budget_seconds=self.budget_seconds if budget_seconds is None else budget_seconds,
            )
        except ScriptInvalidError as error:
            if options.remember:
                await self._put(
                    key,
                    ScriptCacheEntry(
                        state="failed",
                        updated_at=job_timestamp(self.clock()),
                        usage=error.billed_usage,
                        error=JobError(status=error.http_status, body=ErrorBody.from_error(error)),
                    ),
                )
            raise
        if options.remember:
            await self._put(
                key,
                ScriptCacheEntry(
                    state="succeeded",
                    updated_at=job_timestamp(self.clock()),
                    usage=written.usage,
                    script=written.document,
                ),
            )
        return written

    async def _stored(self, key: str) -> ScriptCacheEntry | None:
        """The entry still worth answering with: a script, or a failure younger than
        :data:`FAILURE_MEMORY_SECONDS` (``None`` when unreadable, or Storage fails)."""
        try:
            loaded = await self.documents.get(entry_name(key))
        except PodcastError as error:
            log.warning("script cache unavailable (%s): writing afresh", error.code)
            return None
        if loaded is None:
            return None
        try:
            entry = ScriptCacheEntry.model_validate(loaded[0])
        except ValidationError:
            log.warning("script cache entry %s is not readable: ignored", key[:12])
            return None
        if entry.state == "failed":
            written_at = datetime.fromisoformat(entry.updated_at.replace("Z", "+00:00"))
            if self.clock() - written_at > timedelta(seconds=FAILURE_MEMORY_SECONDS):
                return None
        return entry

    async def _put(self, key: str, entry: ScriptCacheEntry) -> None:
        try:
            await self.documents.put(entry_name(key), entry.model_dump(mode="json"))
        except PodcastError as error:
            log.warning("could not store the script outcome (%s)", error.code)


def _answer(entry: ScriptCacheEntry, request: ScriptRequest) -> WrittenScript:
    """A stored outcome as this request's answer (its own title), or its stored failure raised."""
    if entry.script is None:
        assert entry.error is not None
        details = entry.error.body.error
        attempts = (details.model_extra or {}).get("attempts")
        log.info("script failure answered from the script cache (not billed again)")
        raise ScriptInvalidError.replayed(details.message, attempts if isinstance(attempts, int) else 0)
    log.info("script answered from the script cache")
    title = request.request.title or entry.script.title
    return WrittenScript(document=entry.script.model_copy(update={"title": title}), usage=Usage(), replies=0)
