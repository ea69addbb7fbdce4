"""In-memory collaborators for the job state machine: fast, offline and proven faithful.

:class:`~podcast.services.jobs.JobService` and :class:`~podcast.services.reuse.ReuseCache`
depend on protocols (:class:`~podcast.storage.documents.DocumentStore`,
:class:`~podcast.services.jobs.Queue`, :class:`~podcast.services.jobs.Narrations`,
:class:`~podcast.services.reuse.Outputs`); these fakes implement them without Storage or
Azure OpenAI, so the state machine runs in milliseconds in ``tests/unit``:

- :class:`InMemoryDocuments`: a ``DocumentStore`` with the semantics of
  :class:`~podcast.storage.documents.JsonDocuments` on Blob Storage. The contract test
  ``tests/integration/test_document_store_contract.py`` runs the same checks against both,
  which is what makes the fake trustworthy: change one, and the test says whether the other
  still agrees.
- :class:`InMemoryQueue`: a ``Queue`` that records the ids it was sent.
- :class:`InMemoryOutputs`: the ``Outputs`` a reuse cache needs (blob existence, signed links).
- :class:`ScriptedNarrations`: ``Narrations`` whose outcomes a test scripts in advance.

Each fake can be told to fail (``fail_next``), and :class:`InMemoryDocuments` can run a
test's code just before an operation (``before``), to stage a race deterministically.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

from podcast.engine.longform import ProgressCallback
from podcast.errors import PodcastError, StorageError, StorageUnavailableError
from podcast.models import NarrationRequest, SubmitOptions
from podcast.services.narrations import StoredNarration
from podcast.wire import SegmentReport, Usage

Operation = Literal["get", "put", "delete"]
OPERATIONS: tuple[Operation, ...] = ("get", "put", "delete")
Action = Callable[[], Awaitable[None] | None]
"""What a hook runs: a plain or an async function of no arguments."""

_etags = itertools.count(0x8DC0_0000_0000_0000)
"""One counter for every fake store, so ETags never repeat (Azure's never do either)."""


def _new_etag() -> str:
    return f'"0x{next(_etags):X}"'


async def _run(action: Action) -> None:
    outcome = action()
    if inspect.isawaitable(outcome):
        await outcome


@dataclass
class _Fault:
    remaining: int
    operations: frozenset[Operation]
    prefix: str
    error: Callable[[], PodcastError]
    passing: int = 0
    """Matching operations still let through before the fault starts."""

    def matches(self, operation: Operation, name: str) -> bool:
        if self.remaining <= 0 or operation not in self.operations or not name.startswith(self.prefix):
            return False
        if self.passing > 0:
            self.passing -= 1
            return False
        return True


@dataclass
class _Hook:
    operation: Operation
    prefix: str
    action: Action


@dataclass(frozen=True, slots=True)
class Call:
    """One operation an :class:`InMemoryDocuments` was asked to do (whether or not it
    succeeded): ``document`` is the JSON put (``None`` for get and delete), ``outcome`` is
    ``"ok"``, ``"missing"`` (get, delete), ``"refused"`` (a put or delete whose condition
    failed) or ``"raised"``."""

    operation: Operation
    name: str
    document: dict[str, Any] | None
    etag: str | None
    create: bool
    outcome: str


class InMemoryDocuments:
    """A :class:`~podcast.storage.documents.DocumentStore` in a dict, with Blob Storage's rules.

    Contract (what ``JsonDocuments`` on Azurite does too; the contract test checks both):

    - ``get`` returns a *new* dict and the current ETag, or ``None`` for a missing name.
      Documents are stored as JSON text, so every ``put`` and ``get`` is a JSON round trip:
      changing a dict after ``put`` or after ``get`` never changes what is stored, and a
      document that JSON cannot represent raises ``TypeError`` (as ``json.dumps`` does).
    - Every successful ``put`` gives the blob a new ETag, never used before by any name.
    - ``put(create=True)`` writes only when the name is absent (its ``etag`` is ignored,
      as ``JsonDocuments`` ignores it), else returns ``False``.
    - ``put(etag=...)`` writes only when the name exists with that ETag, else ``False``
      (a deleted blob's ETag never matches).
    - ``put()`` without conditions always writes.
    - ``replace(etag=...)`` is ``put(etag=...)`` returning the new ETag instead of ``True``
      (``None`` instead of ``False``).
    - ``delete`` removes the name; with ``etag``, only when it still has that ETag. A
      missing name, or a changed one, is silently left alone.

    Test hooks, beyond the protocol:

    - :meth:`fail_next` makes the next ``count`` matching operations raise
      :class:`~podcast.errors.StorageUnavailableError` (or the error given) without
      touching the store; :meth:`outage` makes every operation after the next ``after``
      raise it, until :meth:`heal`;
    - :meth:`before` runs a test's function once, just before the next matching operation
      (e.g. another request taking an Idempotency-Key between a read and a write);
    - :attr:`calls` lists every operation asked for, :meth:`writes` the documents
      successfully written at a name, in order; :meth:`names` and :meth:`document`
      read the store without going through hooks or faults.
    """

    def __init__(self) -> None:
        self._blobs: dict[str, tuple[str, str]] = {}
        self._faults: list[_Fault] = []
        self._hooks: list[_Hook] = []
        self.calls: list[Call] = []
        self._lock = asyncio.Lock()

    # --- Test hooks ---------------------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        *,
        operations: tuple[Operation, ...] = OPERATIONS,
        prefix: str = "",
        error: Callable[[], PodcastError] | None = None,
    ) -> None:
        """Make the next ``count`` operations among ``operations`` on names starting with
        ``prefix`` raise ``error()`` (default: a ``StorageUnavailableError``)."""
        self._faults.append(
            _Fault(
                count,
                frozenset(operations),
                prefix,
                error or (lambda: StorageUnavailableError("Storage is unavailable (injected)")),
            )
        )

    def outage(self, *, after: int = 0) -> None:
        """Storage goes down after the next ``after`` operations: every later operation raises
        :class:`~podcast.errors.StorageUnavailableError` until :meth:`heal`."""
        self._faults.append(
            _Fault(
                1 << 30,
                frozenset(OPERATIONS),
                "",
                lambda: StorageUnavailableError("Storage is unavailable (injected outage)"),
                passing=after,
            )
        )

    def heal(self) -> None:
        """Storage is back: every pending fault (``fail_next``, ``outage``) is dropped."""
        self._faults.clear()

    def before(self, operation: Operation, prefix: str, action: Action) -> None:
        """Run ``action`` once, just before the next ``operation`` on a name starting with
        ``prefix`` (the hook is removed first, so the action's own operations pass)."""
        self._hooks.append(_Hook(operation, prefix, action))

    def names(self) -> list[str]:
        """The stored names, sorted."""
        return sorted(self._blobs)

    def document(self, name: str) -> dict[str, Any] | None:
        """The document stored at ``name`` (a copy), bypassing hooks and faults."""
        stored = self._blobs.get(name)
        return None if stored is None else _loads(name, stored[0])

    def writes(self, name: str) -> list[dict[str, Any]]:
        """Every document successfully written at ``name``, oldest first."""
        return [
            c.document
            for c in self.calls
            if c.name == name and c.operation == "put" and c.outcome == "ok" and c.document is not None
        ]

    async def _enter(self, operation: Operation, name: str) -> None:
        for hook in self._hooks:
            if hook.operation == operation and name.startswith(hook.prefix):
                self._hooks.remove(hook)
                await _run(hook.action)
                break
        for fault in self._faults:
            if fault.matches(operation, name):
                fault.remaining -= 1
                raise fault.error()

    # --- DocumentStore ----------------------------------------------------------------------

    async def get(self, name: str) -> tuple[dict[str, Any], str] | None:
        """The JSON object at ``name`` (a fresh copy) and its ETag, or ``None``."""
        try:
            await self._enter("get", name)
        except PodcastError:
            self.calls.append(Call("get", name, None, None, False, "raised"))
            raise
        await asyncio.sleep(0)  # a real store yields to other tasks here
        stored = self._blobs.get(name)
        self.calls.append(Call("get", name, None, None, False, "missing" if stored is None else "ok"))
        if stored is None:
            return None
        text, etag = stored
        return _loads(name, text), etag

    async def put(
        self, name: str, document: Mapping[str, Any], *, etag: str | None = None, create: bool = False
    ) -> bool:
        """See the class docstring: create-only, If-Match, or unconditional."""
        return await self._write(name, document, etag=etag, create=create) is not None

    async def replace(self, name: str, document: Mapping[str, Any], *, etag: str) -> str | None:
        """``put(etag=...)`` that returns the new ETag (``None`` when refused); a ``put``
        for the hooks, faults and :attr:`calls`."""
        return await self._write(name, document, etag=etag, create=False)

    async def _write(
        self, name: str, document: Mapping[str, Any], *, etag: str | None, create: bool
    ) -> str | None:
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        snapshot = json.loads(text)
        try:
            await self._enter("put", name)
        except PodcastError:
            self.calls.append(Call("put", name, snapshot, etag, create, "raised"))
            raise
        await asyncio.sleep(0)
        written: str | None = None
        async with self._lock:  # the condition check and the write are one step, as in Storage
            current = self._blobs.get(name)
            if create:
                allowed = current is None
            elif etag is not None:
                allowed = current is not None and current[1] == etag
            else:
                allowed = True
            if allowed:
                written = _new_etag()
                self._blobs[name] = (text, written)
        self.calls.append(Call("put", name, snapshot, etag, create, "ok" if allowed else "refused"))
        return written

    async def delete(self, name: str, *, etag: str | None = None) -> None:
        """Remove ``name`` (only if it still has ``etag``); missing or changed is fine."""
        try:
            await self._enter("delete", name)
        except PodcastError:
            self.calls.append(Call("delete", name, None, etag, False, "raised"))
            raise
        await asyncio.sleep(0)
        async with self._lock:
            current = self._blobs.get(name)
            if current is None:
                outcome = "missing"
            elif etag is not None and current[1] != etag:
                outcome = "refused"
            else:
                del self._blobs[name]
                outcome = "ok"
        self.calls.append(Call("delete", name, None, etag, False, outcome))


def _loads(name: str, text: str) -> dict[str, Any]:
    document = json.loads(text)
    if not isinstance(document, dict):  # pragma: no cover - put only takes mappings
        raise StorageError(f"blob {name!r} is not a JSON object")
    return document


class InMemoryQueue:
    """A :class:`~podcast.services.jobs.Queue` that records what it was sent.

    Contract: ``send(job_id)`` appends ``job_id`` to :attr:`sent`, unless a failure is
    pending (:meth:`fail_next`): then it raises that error and records nothing, as a send
    that Storage refused leaves no message.
    """

    def __init__(self) -> None:
        self.sent: list[str] = []
        self._failures: deque[PodcastError] = deque()

    def fail_next(self, count: int = 1, error: Callable[[], PodcastError] | None = None) -> None:
        """Make the next ``count`` sends raise ``error()`` (default ``StorageUnavailableError``)."""
        make = error or (lambda: StorageUnavailableError("the queue is unavailable (injected)"))
        self._failures.extend(make() for _ in range(count))

    async def send(self, job_id: str) -> None:
        await asyncio.sleep(0)
        if self._failures:
            raise self._failures.popleft()
        self.sent.append(job_id)


class InMemoryOutputs:
    """The :class:`~podcast.services.reuse.Outputs` of one fake output container.

    Contract: :meth:`exists` is ``True`` for names added (:meth:`add`) and not removed;
    :meth:`read_url` does not check existence (like ``BlobStore.read_url``) and returns
    ``https://fake.blob.core.windows.net/<container>/<name>?sp=r&se=<expiry>&sig=<fake>``
    and the expiry, ``expires_in`` from the clock to the second; a non-positive
    ``expires_in`` raises ``ValueError``. Every link's ``sig`` is different; links signed
    are listed in :attr:`signed`.
    """

    def __init__(
        self, container: str = "narrations", *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.container = container
        self.blobs: set[str] = set()
        self.signed: list[str] = []
        self._clock = clock

    def add(self, *blob_names: str) -> None:
        self.blobs.update(blob_names)

    def remove(self, *blob_names: str) -> None:
        self.blobs.difference_update(blob_names)

    async def exists(self, blob_name: str) -> bool:
        await asyncio.sleep(0)
        return blob_name in self.blobs

    async def read_url(self, blob_name: str, *, expires_in: timedelta) -> tuple[str, datetime]:
        if expires_in <= timedelta(0):
            raise ValueError("expires_in must be positive")
        expires_at = (self._clock() + expires_in).replace(microsecond=0)
        expiry = quote(expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"), safe="")
        url = (
            f"https://fake.blob.core.windows.net/{self.container}/{quote(blob_name)}"
            f"?sp=r&se={expiry}&sig=fake-{uuid.uuid4().hex[:16]}"
        )
        self.signed.append(url)
        return url, expires_at


@dataclass(frozen=True, slots=True)
class Narrated:
    """A scripted successful narration: the values of the :class:`StoredNarration` made."""

    segments: int = 1
    """Segments narrated (``on_progress`` is awaited once per segment)."""
    transcript: str | None = None
    """Default: the request's text."""
    duration_seconds: float = 2.5
    usage: Usage = field(default_factory=lambda: Usage(input_tokens=100, output_tokens=200))
    fidelity: float | None = 1.0
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NarrateCall:
    """One call of :meth:`ScriptedNarrations.narrate` and the progress it reported."""

    request: NarrationRequest
    narration_id: str | None
    time_budget_seconds: float | None
    progress: list[tuple[int, int]]


class ScriptedNarrations:
    """:class:`~podcast.services.jobs.Narrations` that play a script instead of narrating.

    Contract: each :meth:`narrate` call takes the next outcome from :attr:`outcomes`
    (:meth:`script`; a :class:`Narrated` by default when the script is empty) and records a
    :class:`NarrateCall` in :attr:`calls`. For a :class:`Narrated`, it awaits
    ``on_progress(done, total)`` for ``done`` = 1 .. ``segments`` as the real pipeline
    does (sleeping ``segment_seconds`` before each), adds the WAV and its ``.json`` to
    ``outputs`` (named ``<yyyy>/<mm>/<dd>/<id>``, ``id`` the ``narration_id``), signs a
    link for ``request.sas_expiry_minutes`` and returns the :class:`StoredNarration`. For
    a :class:`~podcast.errors.PodcastError`, it raises it before any progress and stores
    nothing (as the real service leaves nothing of a failed narration). ``before`` and
    ``after``, when set, run once per call: first thing, and just before it returns or
    raises.
    """

    def __init__(
        self,
        outputs: InMemoryOutputs | None = None,
        *,
        deployment: str = "fake-realtime",
        segment_seconds: float = 0.0,
        before: Action | None = None,
        after: Action | None = None,
    ) -> None:
        self.outputs = outputs or InMemoryOutputs()
        self._deployment = deployment
        self.segment_seconds = segment_seconds
        self.before = before
        self.after = after
        self.outcomes: deque[Narrated | PodcastError] = deque()
        self.calls: list[NarrateCall] = []

    @property
    def deployment(self) -> str:
        return self._deployment

    def script(self, *outcomes: Narrated | PodcastError) -> None:
        """Queue the outcomes of the next calls, in order."""
        self.outcomes.extend(outcomes)

    async def narrate(
        self,
        request: NarrationRequest,
        *,
        narration_id: str | None = None,
        on_progress: ProgressCallback | None = None,
        time_budget_seconds: float | None = None,
        options: SubmitOptions | None = None,
        written_since: datetime | None = None,
    ) -> StoredNarration:
        outcome = self.outcomes.popleft() if self.outcomes else Narrated()
        call = NarrateCall(request, narration_id, time_budget_seconds, [])
        self.calls.append(call)
        try:
            if self.before is not None:
                await _run(self.before)
            if isinstance(outcome, PodcastError):
                raise outcome
            for done in range(1, outcome.segments + 1):
                await asyncio.sleep(self.segment_seconds)
                call.progress.append((done, outcome.segments))
                if on_progress is not None:
                    await on_progress(done, outcome.segments)
            return await self._store(request, narration_id or uuid.uuid4().hex, outcome)
        finally:
            if self.after is not None:
                await _run(self.after)

    async def _store(
        self, request: NarrationRequest, narration_id: str, outcome: Narrated
    ) -> StoredNarration:
        created_at = datetime.now(UTC)
        base = f"{created_at:%Y/%m/%d}/{narration_id}"
        url, expires_at = await self.outputs.read_url(
            f"{base}.wav", expires_in=timedelta(minutes=request.sas_expiry_minutes)
        )
        self.outputs.add(f"{base}.wav", f"{base}.json")
        transcript = outcome.transcript if outcome.transcript is not None else request.text
        share = outcome.duration_seconds / outcome.segments
        segments = tuple(
            SegmentReport(
                index=i,
                start_seconds=i * share,
                end_seconds=(i + 1) * share,
                transcript=transcript if outcome.segments == 1 else f"segment {i}",
                similarity=outcome.fidelity,
                attempts=1,
            )
            for i in range(outcome.segments)
        )
        return StoredNarration(
            id=narration_id,
            audio_url=url,
            expires_at=expires_at,
            container=self.outputs.container,
            blob_name=f"{base}.wav",
            transcript_blob_name=f"{base}.json",
            transcript=transcript,
            duration_seconds=outcome.duration_seconds,
            request=request,
            usage=outcome.usage,
            created_at=created_at,
            segments=segments,
            fidelity=outcome.fidelity,
            min_fidelity=None,
            warnings=outcome.warnings,
        )
