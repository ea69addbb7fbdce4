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

One writer per content, also for identical requests at the same moment. The entry doubles
as the writer's *claim*, as a document delivery's claim does (:mod:`podcast.services.documents`):
a conditional create (or an ``If-Match`` replace of an outcome that may be written afresh)
of ``state: "writing"`` with the writer's random ``attempt`` and an ``expires_at``
``NARRATION_SCRIPT_CLAIM_SECONDS`` ahead, renewed every third of that while it writes. The
outcome replaces the claim; a writer failing otherwise (a transient error, a timeout,
cancelled) removes it. An identical request that finds a live claim waits for the outcome:
in this instance it awaits the writer's own result (no Storage reads), from another instance
it reads the entry again (every 0.1 s, doubling to 1 s), for at most
``NARRATION_SCRIPT_WAIT_SECONDS`` (and never past its own budget); then it is answered
:class:`~podcast.errors.ScriptInProgressError` (503, ``Retry-After``), not billed. A claim
whose writer died lapses at its ``expires_at``, and the first waiter to replace it
(``If-Match``) writes instead. A waiter is answered the outcome as an identical later
request is: a script (``replies`` 0, no usage) or the stored 502.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from pydantic import ValidationError

from podcast.engine.scriptwriter import ScriptWriter, WrittenScript
from podcast.errors import PodcastError, ScriptInProgressError, ScriptInvalidError
from podcast.models import ScriptRequest, SubmitOptions
from podcast.storage.documents import DocumentStore
from podcast.storage.names import blob_name, check_blob_segment
from podcast.wire import ErrorBody, JobError, ScriptCacheEntry, Usage, job_timestamp

log = logging.getLogger(__name__)

FAILURE_MEMORY_SECONDS: Final = 3600.0
"""How long a failed script is answered from Storage: longer than any default retry policy
of Power Automate or Logic Apps keeps retrying (four retries, at most about four minutes)."""
FIRST_POLL_SECONDS: Final = 0.1
"""The first wait before a waiter reads another instance's claimed entry again (doubling)."""
MAX_POLL_SECONDS: Final = 1.0
"""The longest wait between two reads of a claimed entry (one GET a second per waiter)."""
IN_PROGRESS_RETRY_AFTER_SECONDS: Final = 5.0
"""``Retry-After`` of a :class:`~podcast.errors.ScriptInProgressError`: the retry waits again."""


def script_key(request: ScriptRequest, deployment: str) -> str:
    """The content key (SHA-256, hex) of a script: what decides it, and the deployment."""
    return hashlib.sha256(f"v1\n{deployment}\n{request.fingerprint()}".encode()).hexdigest()


def entry_name(key: str) -> str:
    """``scripts/<key>.json``."""
    return blob_name("scripts", f"{check_blob_segment(key, field='script key')}.json")


class ScriptService:
    """Writes scripts with ``writer`` (of ``deployment``) and keeps their outcomes in
    ``documents`` (the jobs container). ``budget_seconds`` bounds one script's writing;
    ``claim_seconds`` and ``wait_seconds`` are ``NARRATION_SCRIPT_CLAIM_SECONDS`` and
    ``NARRATION_SCRIPT_WAIT_SECONDS`` (see the module docstring)."""

    def __init__(
        self,
        writer: ScriptWriter,
        documents: DocumentStore,
        *,
        deployment: str,
        budget_seconds: float | None = None,
        claim_seconds: float = 60.0,
        wait_seconds: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.writer = writer
        self.documents = documents
        self.deployment = deployment
        self.budget_seconds = budget_seconds
        self.claim_seconds = claim_seconds
        self.wait_seconds = wait_seconds
        self.clock = clock
        self._writing: dict[str, asyncio.Future[WrittenScript]] = {}
        """This instance's writers by content key, awaited by its identical requests."""

    async def write(
        self,
        request: ScriptRequest,
        options: SubmitOptions,
        *,
        budget_seconds: float | None = None,
        written_since: datetime | None = None,
    ) -> WrittenScript:
        """The script of ``request``: the stored one (``replies`` 0, no usage) unless
        ``options.reuse`` is off, else newly written and stored unless ``options.remember``
        is off; an identical request being written meanwhile is waited for. Raises the stored
        :class:`~podcast.errors.ScriptInvalidError` for a request that failed so less than
        :data:`FAILURE_MEMORY_SECONDS` ago, :class:`~podcast.errors.ScriptInProgressError`
        when the identical request being written did not finish while this one waited, or
        the writer's :class:`~podcast.errors.PodcastError` (a new ``ScriptInvalidError`` is
        stored first).

        ``written_since``: with ``options.reuse`` off, an outcome stored at or after this moment
        still answers (and a writer still at work is waited for), so a job asked to write
        afresh pays for that once, not again on each redelivery."""
        asked, asked_since = options, written_since  # as the caller gave them, for a second try
        if not options.reuse and written_since is not None:
            options = dataclasses.replace(options, reuse=True)
        else:
            written_since = None
        key = script_key(request, self.deployment)
        budget = self.budget_seconds if budget_seconds is None else budget_seconds
        started = time.monotonic()
        if options.reuse:
            leader = self._writing.get(key)
            if leader is not None:
                wait = self.wait_seconds if budget is None else min(self.wait_seconds, budget)
                try:
                    return _retitled(await asyncio.wait_for(asyncio.shield(leader), wait), request)
                except TimeoutError:
                    raise _in_progress() from None
                except ScriptInvalidError as error:
                    raise ScriptInvalidError.replayed(error.message, error.attempts) from None
                except asyncio.CancelledError:
                    if not leader.cancelled():
                        raise  # this request itself was cancelled
                    # The writer was cancelled (its caller went away): this request writes.
                left = None if budget is None else budget - (time.monotonic() - started)
                return await self.write(request, asked, budget_seconds=left, written_since=asked_since)
        outcome: asyncio.Future[WrittenScript] = asyncio.get_running_loop().create_future()
        ours = key not in self._writing
        if ours:
            self._writing[key] = outcome
        try:
            written = await self._write(key, request, options, budget, started, written_since)
        except BaseException as error:
            if isinstance(error, PodcastError):
                outcome.set_exception(error)
            else:
                outcome.cancel()
            raise
        else:
            outcome.set_result(written)
            return written
        finally:
            if ours and self._writing.get(key) is outcome:
                del self._writing[key]
            if outcome.done() and not outcome.cancelled():
                outcome.exception()  # retrieved: no "never retrieved" warning without waiters

    async def _write(
        self,
        key: str,
        request: ScriptRequest,
        options: SubmitOptions,
        budget: float | None,
        started: float,
        written_since: datetime | None = None,
    ) -> WrittenScript:
        """Claim the content (or answer with its outcome, waiting for a live claim), write,
        store the outcome in place of the claim."""
        attempt = uuid.uuid4().hex
        claimed = False
        if options.remember:
            wait = self.wait_seconds if budget is None else min(self.wait_seconds, budget)
            found = await self._claim(
                key, request, attempt, options, deadline=started + wait, written_since=written_since
            )
            if isinstance(found, WrittenScript):
                return found
            claimed = found
        left = None if budget is None else budget - (time.monotonic() - started)
        if left is not None and left <= 0:
            if claimed:
                await self._release(key, attempt)
            raise ScriptInProgressError(
                "an identical script request was being written and this one's time budget ran out "
                "while it waited; try again",
                retry_after=IN_PROGRESS_RETRY_AFTER_SECONDS,
            )
        keeper = asyncio.create_task(self._keep(key, attempt)) if claimed else None
        try:
            written = await self.writer.write(request.request, request.speakers, budget_seconds=left)
        except ScriptInvalidError as error:
            if options.remember:
                failure = ScriptCacheEntry(
                    state="failed",
                    updated_at=job_timestamp(self.clock()),
                    usage=error.billed_usage,
                    error=JobError(status=error.http_status, body=ErrorBody.from_error(error)),
                )
                if not await self._put(key, failure) and claimed:
                    await self._release(key, attempt)
            raise
        except BaseException:
            if claimed:
                await asyncio.shield(self._release(key, attempt))
            raise
        finally:
            if keeper is not None:  # stopped before the outcome replaces the claim
                keeper.cancel()
                await asyncio.wait([keeper])
        if options.remember:
            stored = await self._put(
                key,
                ScriptCacheEntry(
                    state="succeeded",
                    updated_at=job_timestamp(self.clock()),
                    usage=written.usage,
                    script=written.document,
                ),
            )
            if not stored and claimed:
                await self._release(key, attempt)
        return written

    async def _claim(
        self,
        key: str,
        request: ScriptRequest,
        attempt: str,
        options: SubmitOptions,
        *,
        deadline: float,
        written_since: datetime | None = None,
    ) -> WrittenScript | bool:
        """Take the claim on ``key`` (``True``), or answer with the outcome a live claim's
        writer stored meanwhile (reuse only). ``False`` when Storage fails: the script is
        written without a claim (best effort, as the entries are). Raises the stored
        ``ScriptInvalidError``, or :class:`ScriptInProgressError` at ``deadline``."""
        pause = FIRST_POLL_SECONDS
        while True:
            try:
                entry, etag = await self._entry(key)
            except PodcastError as error:
                log.warning("script cache unavailable (%s): writing afresh", error.code)
                return False
            if (
                options.reuse
                and entry is not None
                and entry.state != "writing"
                and self._answerable(entry, written_since)
            ):
                return _answer(entry, request)
            live = entry is not None and entry.state == "writing" and not self._lapsed(entry)
            if live and options.reuse:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _in_progress()
                await asyncio.sleep(min(pause, remaining))
                pause = min(MAX_POLL_SECONDS, pause * 2)
                continue
            # No entry, an outcome to write afresh (no-cache, or a failure remembered long
            # enough), or a claim whose writer died: take it, unless another request did first.
            if live:  # no-cache beside another writer: written afresh, that writer left alone
                return False
            document = self._claim_document(attempt)
            try:
                if etag is None:
                    taken = await self.documents.put(entry_name(key), document, create=True)
                else:
                    taken = await self.documents.put(entry_name(key), document, etag=etag)
            except PodcastError as error:
                log.warning("could not claim the script (%s): writing without a claim", error.code)
                return False
            if taken:
                if entry is not None and entry.state == "writing":
                    log.warning("script claim %s lapsed (its writer died?): taken over", key[:12])
                return True
            pause = FIRST_POLL_SECONDS  # another request claimed it first: wait for that one

    def _claim_document(self, attempt: str) -> dict[str, object]:
        now = self.clock()
        return ScriptCacheEntry(
            state="writing",
            updated_at=job_timestamp(now),
            attempt=attempt,
            expires_at=job_timestamp(now + timedelta(seconds=self.claim_seconds)),
        ).model_dump(mode="json")

    def _lapsed(self, entry: ScriptCacheEntry) -> bool:
        assert entry.expires_at is not None
        return _parse(entry.expires_at) <= self.clock()

    def _answerable(self, entry: ScriptCacheEntry, written_since: datetime | None = None) -> bool:
        """A script, or a failure younger than :data:`FAILURE_MEMORY_SECONDS`; stored at or
        after ``written_since`` when given."""
        if written_since is not None and _parse(entry.updated_at) < written_since:
            return False
        if entry.state == "failed":
            return self.clock() - _parse(entry.updated_at) <= timedelta(seconds=FAILURE_MEMORY_SECONDS)
        return entry.state == "succeeded"

    async def _entry(self, key: str) -> tuple[ScriptCacheEntry | None, str | None]:
        """The entry (``None`` when there is none or it is unreadable) and its ETag (``None``
        when there is no blob). Raises :class:`~podcast.errors.StorageError`."""
        loaded = await self.documents.get(entry_name(key))
        if loaded is None:
            return None, None
        try:
            return ScriptCacheEntry.model_validate(loaded[0]), loaded[1]
        except ValidationError:
            log.warning("script cache entry %s is not readable: replaced", key[:12])
            return None, loaded[1]

    async def _keep(self, key: str, attempt: str) -> None:
        """Renew the claim every third of its lifetime until cancelled or lost (best effort)."""
        while True:
            await asyncio.sleep(self.claim_seconds / 3)
            try:
                entry, etag = await self._entry(key)
                if entry is None or entry.attempt != attempt or etag is None:
                    log.warning("script claim %s was taken over by another writer", key[:12])
                    return
                await self.documents.put(entry_name(key), self._claim_document(attempt), etag=etag)
            except PodcastError as error:
                log.warning("script claim not renewed (%s)", error.code)

    async def _release(self, key: str, attempt: str) -> None:
        """Remove this writer's claim if it still holds it (best effort)."""
        with contextlib.suppress(PodcastError):
            entry, etag = await self._entry(key)
            if entry is not None and entry.attempt == attempt and etag is not None:
                await self.documents.delete(entry_name(key), etag=etag)

    async def _put(self, key: str, entry: ScriptCacheEntry) -> bool:
        """Store an outcome (in place of any claim); ``False`` when Storage failed."""
        try:
            await self.documents.put(entry_name(key), entry.model_dump(mode="json"))
        except PodcastError as error:
            log.warning("could not store the script outcome (%s)", error.code)
            return False
        return True


def _in_progress() -> ScriptInProgressError:
    return ScriptInProgressError(
        "an identical script request is being written; its outcome is answered to a retry "
        "without being billed again",
        retry_after=IN_PROGRESS_RETRY_AFTER_SECONDS,
    )


def _parse(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def _retitled(written: WrittenScript, request: ScriptRequest) -> WrittenScript:
    """Another request's script as this request's answer: its own title, nothing billed."""
    title = request.request.title or written.document.title
    document = written.document.model_copy(update={"title": title})
    return WrittenScript(document=document, usage=Usage(), replies=0)


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
