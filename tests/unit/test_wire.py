"""The wire models (podcast.wire) against what the previous version of the service wrote.

A deployed app upgraded in place must read the job records, reuse entries and transcript
documents its previous version stored, and answer the same JSON. The golden files in
``tests/unit/data/wire/`` were written by the previous version's own code (commit 09cbaf7,
before the wire models existed): a throwaway script run in a checkout of that commit called
``NarrationResult.to_response()``, ``transcript_document()``, ``stored_result()``,
``status_document()``, ``error_body()``, the old ``JobRecord`` methods, and the old
``JobService`` itself (``submit``, ``run``, ``reply``) on an in-memory jobs store, with a
fixed clock (from 2026-11-25T11:10:37Z) and fixed ids (``md5("job-<n>")``). Their names say
what they hold: ``response_*`` (200 bodies), ``transcript_*``, ``status_*`` (202 bodies),
``record_*`` (job records, the old service's own), ``method_*`` (a running record before and
after each old ``JobRecord`` method, at 2026-11-25T11:12:37Z), ``cache_*``,
``idempotency_*``, ``error_*`` (error bodies) and ``stale_cases`` (the old ``is_stale``).

Here each golden loads into its model and dumps back unchanged (key order included, but
inside error details, where the old ``error_body`` put ``field`` first), and the current
code (``StoredNarration``, ``JobRecord``, ``PodcastError.body``, ``ReuseCache`` and
``JobService``) writes the same documents for the same inputs.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, get_args

import pytest
from pydantic import BaseModel, Field, ValidationError

from podcast.errors import (
    AuthenticationError,
    ConfigurationError,
    JobStalledError,
    PodcastError,
    RealtimeServerError,
    RequestValidationError,
    ResponseIncompleteError,
    TextTooLongError,
)
from podcast.http.openapi import sample_job, sample_request, sample_response, swagger_schema
from podcast.models import MODES, NarrationRequest, SubmitOptions
from podcast.services.jobs import JobService
from podcast.services.narrations import StoredNarration
from podcast.services.reuse import ReuseCache
from podcast.settings import JobSettings
from podcast.voices import REALTIME_VOICES
from podcast.wire import (
    CacheEntry,
    DocumentSource,
    ErrorBody,
    ErrorDetails,
    IdempotencyEntry,
    JobError,
    JobRecord,
    JobStatusDocument,
    NarrationMode,
    NarrationResponse,
    SegmentReport,
    TranscriptDocument,
    Usage,
    job_timestamp,
)
from testkit.fakes import InMemoryDocuments, InMemoryQueue

GOLDEN = Path(__file__).resolve().parent / "data" / "wire"
MOMENT = datetime(2026, 11, 25, 11, 10, 37, tzinfo=UTC)
"""The old scenario's clock started here."""
METHODS_MOMENT = MOMENT + timedelta(seconds=120)
"""The clock of the ``method_*`` goldens."""
MODELS: Mapping[str, type[BaseModel]] = {
    "response": NarrationResponse,
    "transcript": TranscriptDocument,
    "status": JobStatusDocument,
    "record": JobRecord,
    "method": JobRecord,
    "cache": CacheEntry,
    "idempotency": IdempotencyEntry,
    "error": ErrorBody,
}
NOT_A_DOCUMENT = frozenset({"stale_cases", "error_job_failed"})
"""Goldens of other shapes: the old ``is_stale`` table, and a failed job's status and body."""
OLD_INTERNAL_ERROR: Mapping[str, str] = {"code": "internal_error"}
"""What the previous version recorded as ``last_error`` after an unexpected exception: no
``message``, no ``field``. Such records (and the failed record one later becomes) load, with
the two keys completed."""
COMPLETED_INTERNAL_ERROR: Mapping[str, Any] = {
    "code": "internal_error",
    "message": "an unexpected error occurred",
    "field": None,
}
WITH_A_BARE_LAST_ERROR = frozenset({"record_requeued_unexpected", "record_failed"})
LATER_RECORD_FIELDS: Mapping[str, Any] = {"message_id": None, "requeues": 0}
"""Job record fields added after the goldens (issue 10 items 3 and 4), with their defaults:
a record leaves them out while they hold them, so old records are written back unchanged."""


def as_written_again(name: str) -> dict[str, Any]:
    """The golden ``name`` as the current version writes it back after reading it."""
    old = golden(name)
    return {**old, "last_error": dict(COMPLETED_INTERNAL_ERROR)} if name in WITH_A_BARE_LAST_ERROR else old


def golden(name: str) -> Any:
    return json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))


def golden_names() -> list[str]:
    return sorted(path.stem for path in GOLDEN.glob("*.json") if path.stem not in NOT_A_DOCUMENT)


def model_of(name: str) -> type[BaseModel]:
    return MODELS[name.split("_", 1)[0]]


def _error_details_sorted(value: Any) -> Any:
    """``value`` with the keys of error details (``{"code", "message", ...}``) sorted: the old
    bodies put ``field`` first, the model puts it after ``message``, as the schema lists it."""
    if isinstance(value, dict):
        items = {key: _error_details_sorted(item) for key, item in value.items()}
        return dict(sorted(items.items())) if {"code", "message"} <= set(items) else items
    if isinstance(value, list):
        return [_error_details_sorted(item) for item in value]
    return value


def assert_same_json(dumped: Any, old: Any) -> None:
    """The same JSON, key order included at every level (but inside error details)."""
    assert dumped == old
    assert json.dumps(_error_details_sorted(dumped)) == json.dumps(_error_details_sorted(old))


def json_round_trip(document: BaseModel) -> None:
    """Dumped to JSON and read back, a document is equal to itself and dumps the same."""
    dumped = document.model_dump(mode="json")
    again = type(document).model_validate(json.loads(json.dumps(dumped)))
    assert again == document
    assert again.model_dump(mode="json") == dumped


class Clock:
    """One fixed, movable "now" for the wire models, the job service and the reuse cache."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, moment: datetime) -> None:
        self.moment = moment
        monkeypatch.setattr("podcast.wire._now", lambda: self.moment)
        monkeypatch.setattr("podcast.services.jobs.now", lambda: self.moment)
        monkeypatch.setattr("podcast.services.reuse._now", lambda: job_timestamp(self.moment))

    def at(self, seconds: float) -> None:
        self.moment = MOMENT + timedelta(seconds=seconds)

    def at_timestamp(self, value: str) -> None:
        self.moment = datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch, METHODS_MOMENT)


# --- Every golden document is its model's --------------------------------------------------------


def test_there_is_a_golden_of_every_kind() -> None:
    assert {name.split("_", 1)[0] for name in golden_names()} == set(MODELS)
    assert len(golden_names()) >= 40


@pytest.mark.parametrize("name", golden_names())
def test_each_old_document_loads_into_its_model_and_dumps_back_unchanged(name: str) -> None:
    old = golden(name)

    document = model_of(name).model_validate(old)

    assert_same_json(document.model_dump(mode="json"), as_written_again(name))
    json_round_trip(document)


@pytest.mark.parametrize("name", golden_names())
def test_each_old_document_ignores_keys_a_newer_version_adds(name: str) -> None:
    old = golden(name)
    model = model_of(name)
    newer = {**old, "written_by": "a newer version"} if model is not ErrorBody else {**old, "trace": "x"}

    assert_same_json(model.model_validate(newer).model_dump(mode="json"), as_written_again(name))


@pytest.mark.parametrize("name", sorted(n for n in golden_names() if n.startswith("record_")))
def test_a_record_from_before_a_field_was_added_gets_its_default(name: str) -> None:
    old = golden(name)
    required = [key for key, info in JobRecord.model_fields.items() if info.is_required()]
    oldest = {key: old[key] for key in required}
    defaults = {
        key: info.get_default(call_default_factory=True)
        for key, info in JobRecord.model_fields.items()
        if not info.is_required() and key not in LATER_RECORD_FIELDS
    }

    loaded = JobRecord.model_validate(oldest)
    assert loaded.model_dump(mode="json") == {**oldest, **defaults}
    assert {key: getattr(loaded, key) for key in LATER_RECORD_FIELDS} == LATER_RECORD_FIELDS
    assert list(old) == [key for key in JobRecord.model_fields if key not in LATER_RECORD_FIELDS], (
        "the old record's keys, in the old order"
    )


def test_the_error_of_a_failed_job_is_its_answer() -> None:
    failed = golden("error_job_failed")

    error = JobError.model_validate(failed)

    assert_same_json(error.model_dump(mode="json"), failed)
    assert ErrorBody.model_validate(failed["body"]).error.code == "upstream_authentication_failed"


def test_a_transient_job_failure_keeps_its_retry_after_and_an_old_one_has_none() -> None:
    failed = golden("error_job_failed")
    assert JobError.model_validate(failed).retry_after_seconds is None  # stored before the field

    transient = JobError.model_validate({**failed, "status": 503, "retry_after_seconds": 12})
    stored = transient.model_dump(mode="json")

    assert stored["retry_after_seconds"] == 12
    assert JobError.model_validate(stored) == transient
    assert "retry_after_seconds" not in JobError.model_validate(failed).model_dump(mode="json")


def test_an_old_record_with_a_bare_internal_error_loads_with_its_last_error_completed() -> None:
    old = golden("record_requeued_unexpected")
    assert old["last_error"] == OLD_INTERNAL_ERROR

    loaded = JobRecord.model_validate(old)

    assert loaded.last_error is not None
    assert loaded.last_error.code == "internal_error"
    assert loaded.model_dump(mode="json") == {**old, "last_error": dict(COMPLETED_INTERNAL_ERROR)}


# --- Narrations: the current code answers and stores the same JSON ------------------------------

SAMPLE_ID = "c9071842f8854f59a410cc4211bc108e"
SAMPLE_TEXT = "Welcome to the show. Today: why rivers bend."
SAMPLE_BASE = f"2026/11/25/{SAMPLE_ID}"


def sample_narration() -> StoredNarration:
    """The current twin of the old ``podcast.http.openapi.sample_result()``."""
    return StoredNarration(
        id=SAMPLE_ID,
        audio_url=f"https://account.blob.core.windows.net/narrations/{SAMPLE_BASE}.wav?sv=...&sp=r&sig=...",
        expires_at=MOMENT.replace(hour=12),
        container="narrations",
        blob_name=f"{SAMPLE_BASE}.wav",
        transcript_blob_name=f"{SAMPLE_BASE}.json",
        transcript=SAMPLE_TEXT,
        duration_seconds=3.912,
        request=sample_request(),
        usage=Usage(
            input_tokens=512,
            output_tokens=91,
            input_text_tokens=512,
            output_text_tokens=13,
            output_audio_tokens=78,
        ),
        created_at=MOMENT,
        segments=(
            SegmentReport(
                index=0,
                start_seconds=0.0,
                end_seconds=3.912,
                transcript=SAMPLE_TEXT,
                similarity=1.0,
                attempts=1,
            ),
        ),
        fidelity=1.0,
        min_fidelity=0.9,
    )


def test_the_sample_narration_answers_and_is_stored_as_before() -> None:
    response = sample_narration().to_response()

    assert_same_json(response.model_dump(mode="json"), golden("response_sample"))
    assert_same_json(response.without_link().model_dump(mode="json"), golden("response_sample_stored"))
    # The published example also shows the fields that came with captions, chapters and loudness.
    added = {"captions_url", "captions_blob_name", "srt_blob_name", "chapters_blob_name", "loudness_lufs"}
    assert_same_json(sample_response().model_dump(mode="json", exclude=added), golden("response_sample"))


def test_an_episode_without_link_or_fidelity_rounds_as_before() -> None:
    request = NarrationRequest.model_validate(
        {"text": "Rivers bend. Oceans wait.", "mode": "episode", "language": "es-mx", "style": "lecture"}
    )
    narration = replace(
        sample_narration(),
        request=request,
        audio_url=None,
        expires_at=None,
        duration_seconds=3.912_345_6,
        fidelity=None,
        segments=(),
        warnings=("low fidelity kept",),
        usage=Usage(
            input_tokens=7,
            output_tokens=5,
            input_text_tokens=1,
            input_audio_tokens=6,
            input_cached_tokens=2,
            output_text_tokens=1,
            output_audio_tokens=4,
        ),
    )

    response = narration.to_response()

    assert_same_json(response.model_dump(mode="json"), golden("response_episode_unrounded"))
    assert response.duration_seconds == 3.912


def test_the_transcript_document_is_as_before_with_and_without_a_source() -> None:
    document = sample_narration().transcript_document()
    assert_same_json(document.model_dump(mode="json"), golden("transcript_sample"))
    assert "source" not in document.model_dump(mode="json"), "absent, not null, for HTTP requests"

    uploaded = replace(
        sample_narration(),
        id="0b5c2d3e4f5061728394a5b6c7d8e9f0",
        audio_url=None,
        expires_at=None,
        blob_name="episodes/rivers.wav",
        transcript_blob_name="episodes/rivers.json",
        segments=(
            SegmentReport(
                index=0,
                start_seconds=0.0,
                end_seconds=1.234_567,
                transcript="Welcome to the show.",
                similarity=0.987_654_3,
                attempts=1,
            ),
            SegmentReport(
                index=1,
                start_seconds=1.234_567,
                end_seconds=3.912,
                transcript="Today: why rivers bend.",
                similarity=None,
                attempts=2,
                splits=1,
            ),
        ),
        min_fidelity=None,
    )
    source = DocumentSource(
        blob_name="episodes/rivers.txt", etag='"0x8DC1A2B3C4D5E6F"', sha256="ab" * 32, bytes=44
    )

    assert_same_json(
        uploaded.transcript_document(source).model_dump(mode="json"), golden("transcript_uploaded")
    )


def test_documents_are_immutable() -> None:
    response = NarrationResponse.model_validate(golden("response_sample"))
    with pytest.raises(ValidationError):
        setattr(response, "title", "Other")  # noqa: B010
    with pytest.raises(ValidationError):
        setattr(response.usage, "input_tokens", 1)  # noqa: B010


def test_usage_adds_up_and_refuses_a_wrong_total() -> None:
    usage = Usage.model_validate(golden("response_episode_unrounded")["usage"])
    assert (usage + usage).model_dump() == {key: 2 * value for key, value in usage.model_dump().items()}
    assert Usage().model_dump() == dict.fromkeys(Usage.model_fields, 0)
    with pytest.raises(ValidationError, match="total_tokens"):
        Usage(input_tokens=1, output_tokens=2, total_tokens=4)


# --- Errors -----------------------------------------------------------------------------------

ERRORS: Mapping[str, Callable[[], PodcastError]] = {
    "validation": lambda: RequestValidationError("voice 'x' is not a realtime voice", field="voice"),
    "too_long": lambda: TextTooLongError(20_001, 20_000),
    "not_configured": lambda: ConfigurationError("AZURE_OPENAI_AUDIO_ENDPOINT", "is required"),
    "upstream_error": lambda: RealtimeServerError(
        "boom", server_code="server_error_x", error_type="server_error"
    ),
    "upstream_error_no_code": lambda: RealtimeServerError(
        "boom", server_code=None, error_type="invalid_request"
    ),
    "incomplete": lambda: ResponseIncompleteError("max_output_tokens"),
    "internal": lambda: PodcastError("an unexpected error occurred; it has been logged"),
    "job_stalled": JobStalledError,
}


@pytest.mark.parametrize("kind", list(ERRORS))
def test_an_error_body_is_the_old_error_body(kind: str) -> None:
    error, old = ERRORS[kind](), golden(f"error_{kind}")

    assert json.dumps(error.body()) == json.dumps(old), "the same keys in the same order"
    assert_same_json(ErrorBody.from_error(error).model_dump(mode="json"), old)


def test_error_details_keep_extra_keys_and_have_a_setting_only_when_there_is_one() -> None:
    details = ErrorDetails.model_validate({"code": "c", "message": "m", "field": None, "upstream_code": "x"})
    assert details.model_dump() == {"code": "c", "message": "m", "field": None, "upstream_code": "x"}
    assert "setting" not in ErrorDetails(code="c", message="m", field=None).model_dump(mode="json")
    with pytest.raises(ValidationError):
        ErrorDetails.model_validate({"code": "c", "message": "m"})  # field is always there


# --- Jobs: the JobRecord methods and the status documents ---------------------------------------


def running() -> JobRecord:
    return JobRecord.model_validate(golden("method_start"))


def test_finish_with_result_is_the_old_method(clock: Clock) -> None:
    record = running()
    record.finish_with_result(golden("response_sample_stored"), reused_from="f" * 32)
    assert_same_json(record.model_dump(mode="json"), golden("method_finish_with_result"))


def test_finish_with_error_is_the_old_method(clock: Clock) -> None:
    error = ERRORS["not_configured"]()
    record = running()
    record.finish_with_error(ErrorBody.from_error(error), status=error.http_status)
    assert_same_json(record.model_dump(mode="json"), golden("method_finish_with_error"))

    record = running()
    record.finish_with_error(ERRORS["upstream_error"]().body(), status=502)  # the old finish_with_error_body
    assert_same_json(record.model_dump(mode="json"), golden("method_finish_with_error_body"))


def test_touch_is_the_old_method(clock: Clock) -> None:
    record = running()
    record.touch(MOMENT + timedelta(seconds=90))
    assert_same_json(record.model_dump(mode="json"), golden("method_touch"))
    assert record.updated_at == "2026-11-25T11:12:07.000Z"


@pytest.mark.parametrize("case", golden("stale_cases"), ids=lambda case: f"{case['now']}-{case['stale']}")
def test_staleness_is_judged_as_before(case: dict[str, Any]) -> None:
    record = JobRecord.model_validate(case["record"])
    assert record.is_stale(case["stale_seconds"], datetime.fromisoformat(case["now"])) is case["stale"]


@pytest.mark.parametrize(
    ("record", "status"),
    [
        ("record_queued", "status_queued"),
        ("record_follower_queued", "status_follower_queued"),
        ("record_reused", "status_reused"),
    ],
)
def test_the_status_document_of_an_old_record_is_the_old_202_body(record: str, status: str) -> None:
    document = JobRecord.model_validate(golden(record)).status_document()
    assert_same_json(document.model_dump(mode="json"), golden(status))
    json_round_trip(document)


def test_the_sample_jobs_status_document_is_the_old_one_and_checks_the_id() -> None:
    document = sample_job().status_document()
    assert_same_json(document.model_dump(mode="json"), golden("status_sample_job"))
    assert document.estimated_audio_seconds == 312.0
    with pytest.raises(ValidationError):
        JobStatusDocument.model_validate({**document.model_dump(), "id": "../cache/x"})


def test_a_succeeded_cache_entry_needs_its_result() -> None:
    with pytest.raises(ValidationError, match="result"):
        CacheEntry.model_validate({**golden("cache_succeeded"), "result": None})


# --- The current services on the old documents --------------------------------------------------


async def documents_with(documents: Mapping[str, Any] | None = None) -> InMemoryDocuments:
    """The in-memory document store of the test kit, holding ``documents``."""
    store = InMemoryDocuments()
    for name, document in (documents or {}).items():
        await store.put(name, document)
    return store


class Outputs:
    """The output container as the reuse cache sees it: every WAV exists; links as the old run's."""

    container = "narrations"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    async def exists(self, name: str) -> bool:
        return True

    async def read_url(self, name: str, *, expires_in: timedelta) -> tuple[str, datetime]:
        url = f"https://account.blob.core.windows.net/narrations/{name}?sv=...&sp=r&sig=..."
        return url, self.clock.moment + expires_in


def record_name(record: str) -> str:
    return f"jobs/{golden(record)['id']}.json"


async def test_the_reuse_cache_writes_and_signs_as_before(clock: Clock) -> None:
    documents = InMemoryDocuments()
    reuse = ReuseCache(documents, Outputs(clock))
    pending, succeeded = golden("cache_pending"), golden("cache_succeeded")
    key = golden("record_queued")["cache_key"]

    clock.at_timestamp(pending["updated_at"])
    await reuse.claim(key, pending["job_id"], etag=None)
    assert_same_json(documents.document(f"cache/{key}.json"), pending)

    clock.at_timestamp(succeeded["updated_at"])
    result = NarrationResponse.model_validate(succeeded["result"]).with_link("https://x/y.wav", MOMENT)
    await reuse.remember(key, succeeded["job_id"], result)
    assert_same_json(documents.document(f"cache/{key}.json"), succeeded)

    clock.at(100)  # when the old run polled the job
    signed = await reuse.signed(NarrationResponse.model_validate(golden("record_succeeded")["result"]), 60)
    assert_same_json(signed.model_dump(mode="json"), golden("response_job_poll"))


def job_service(documents: InMemoryDocuments, clock: Clock, **kwargs: Any) -> JobService:
    # The old run failed a re-enqueued job at the next stale timeout; the queued limit
    # (NARRATION_JOB_MAX_QUEUED_SECONDS, an hour by default) is set to the same to replay it.
    settings = JobSettings(max_queued_seconds=300)
    assert settings.stale_seconds == 300, "the old run's setting"
    reuse = ReuseCache(documents, Outputs(clock))
    return JobService(documents, kwargs.get("queue"), kwargs.get("narrations"), reuse, settings)  # type: ignore[arg-type]


async def test_a_follower_polled_takes_its_leaders_result_as_before(clock: Clock) -> None:
    leader, follower = golden("record_succeeded"), golden("record_follower_queued")
    documents = await documents_with(
        {record_name("record_succeeded"): leader, record_name("record_follower_queued"): follower}
    )
    service = job_service(documents, clock)

    clock.at(101)
    view = await service.status(follower["id"])

    assert_same_json(
        documents.document(record_name("record_follower_queued")), golden("record_follower_succeeded")
    )
    assert view.result is not None
    assert view.result.id == leader["id"]


def requeued_then_stalled(requeued_at: str, failed_at: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The deliberate difference of issue 10 item 4: where the old version failed the job
    whose worker died (``record_stalled``), the current one first re-enqueues it once (the
    first record), and fails it only when it is stuck again (the second)."""
    abandoned, stalled = golden("record_running_abandoned"), golden("record_stalled")
    note = {
        "code": "job_stalled",
        "message": "no progress for 300s while running; re-enqueued",
        "field": None,
    }

    def with_requeues(document: dict[str, Any]) -> dict[str, Any]:
        items = list(document.items())
        at = list(document).index("attempts") + 1
        return dict([*items[:at], ("requeues", 1), *items[at:]])

    requeued = with_requeues({**abandoned, "status": "queued", "updated_at": requeued_at, "last_error": note})
    message = (
        "the narration job made no progress for 300s while queued, also after it was re-enqueued "
        "once; submit the request again"
    )
    error = {"status": 503, "body": {"error": {"code": "job_stalled", "message": message, "field": None}}}
    failed = with_requeues(
        {**stalled, "updated_at": failed_at, "finished_at": failed_at, "last_error": note, "error": error}
    )
    return requeued, failed


async def test_a_job_whose_worker_died_is_re_enqueued_once_then_failed(clock: Clock) -> None:
    abandoned = golden("record_running_abandoned")
    documents = await documents_with({record_name("record_running_abandoned"): abandoned})
    queue = InMemoryQueue()
    service = job_service(documents, clock, queue=queue)
    requeued, failed = requeued_then_stalled("2026-11-25T11:22:48.000Z", "2026-11-25T11:27:49.000Z")

    clock.at(410 + 20 + 301)
    view = await service.status(abandoned["id"])
    assert view.record.status == "queued"
    assert_same_json(documents.document(record_name("record_running_abandoned")), requeued)
    assert queue.sent == [abandoned["id"]]

    clock.at(410 + 20 + 301 + 301)
    view = await service.status(abandoned["id"])
    assert view.record.status == "failed"
    assert_same_json(documents.document(record_name("record_running_abandoned")), failed)


class Abandoned(BaseException):
    """The worker process dies mid-narration."""


class Narrations:
    """The narration service as the job service uses it, narrating as the old run's fake did."""

    deployment = "gpt-realtime-mini"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.script: list[BaseException | None] = []
        self.on_running: Callable[[], None] | None = None

    async def narrate(
        self,
        request: NarrationRequest,
        *,
        narration_id: str | None = None,
        on_progress: Any = None,
        time_budget_seconds: float | None = None,
        options: Any = None,
        written_since: Any = None,
    ) -> StoredNarration:
        assert narration_id is not None
        outcome = self.script.pop(0) if self.script else None
        self.clock.moment += timedelta(seconds=20)
        await on_progress(1, 3)
        if self.on_running is not None:
            self.on_running()
        if outcome is not None:
            raise outcome
        created = self.clock.moment
        url, expires_at = await Outputs(self.clock).read_url(
            f"{created:%Y/%m/%d}/{narration_id}.wav", expires_in=timedelta(minutes=request.sas_expiry_minutes)
        )
        self.clock.moment += timedelta(seconds=40)
        parts = ["Welcome to the show.", "Today we talk about rivers,", "and why they bend."]
        return StoredNarration(
            id=narration_id,
            audio_url=url,
            expires_at=expires_at,
            container="narrations",
            blob_name=f"{created:%Y/%m/%d}/{narration_id}.wav",
            transcript_blob_name=f"{created:%Y/%m/%d}/{narration_id}.json",
            transcript=" ".join(parts),
            duration_seconds=7.654_321,
            request=request,
            usage=Usage(
                input_tokens=1500,
                output_tokens=300,
                input_text_tokens=1500,
                input_audio_tokens=0,
                input_cached_tokens=128,
                output_text_tokens=40,
                output_audio_tokens=260,
            ),
            created_at=created,
            segments=tuple(
                SegmentReport(
                    index=i,
                    start_seconds=i * 2.5,
                    end_seconds=(i + 1) * 2.5 + 0.1,
                    transcript=part,
                    similarity=0.999_97 if i else 1.0,
                    attempts=1,
                )
                for i, part in enumerate(parts)
            ),
            fidelity=0.999_91,
            min_fidelity=0.9,
        )


@pytest.fixture
def job_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """The old run's job ids: ``md5("job-<n>")``."""

    counter = iter(range(1, 1000))
    fixed = SimpleNamespace(
        uuid4=lambda: uuid.UUID(hashlib.md5(f"job-{next(counter)}".encode()).hexdigest())  # noqa: S324
    )
    monkeypatch.setattr("podcast.services.jobs.uuid", fixed)


TEXT = "Welcome to the show. Today we talk about rivers, and why they bend the way they do."


async def test_the_current_job_service_writes_what_the_old_one_wrote(clock: Clock, job_ids: None) -> None:
    """The old run replayed on the current JobService: every record, entry and answer the same."""
    documents, queue, narrations = InMemoryDocuments(), InMemoryQueue(), Narrations(clock)
    service = job_service(documents, clock, queue=queue, narrations=narrations)
    rivers = NarrationRequest.model_validate({"text": TEXT, "title": "Rivers", "language": "en"})
    snapshots: dict[str, Any] = {}

    def record(job_id: str) -> Any:
        return documents.document(f"jobs/{job_id}.json")

    clock.at(0)
    accepted = await service.submit(rivers, SubmitOptions(respond_async=True, idempotency_key="key-1"))
    assert_same_json(accepted.status_document().model_dump(mode="json"), golden("status_queued"))
    assert_same_json(record(accepted.id), golden("record_queued"))
    (key_name,) = [n for n in documents.names() if n.startswith("idempotency/")]
    assert_same_json(documents.document(key_name), golden("idempotency_entry"))
    (cache_name,) = [n for n in documents.names() if n.startswith("cache/")]
    assert_same_json(documents.document(cache_name), golden("cache_pending"))

    clock.at(5)
    follower = await service.submit(rivers, SubmitOptions(respond_async=True))
    assert_same_json(follower.status_document().model_dump(mode="json"), golden("status_follower_queued"))
    assert_same_json(record(follower.id), golden("record_follower_queued"))

    clock.at(10)
    narrations.on_running = lambda: snapshots.setdefault("running", record(accepted.id))
    assert await service.run(accepted.id, dequeue_count=1) == "succeeded"
    assert_same_json(snapshots["running"], golden("record_running"))
    assert_same_json(record(accepted.id), golden("record_succeeded"))
    assert_same_json(documents.document(cache_name), golden("cache_succeeded"))
    clock.at(100)
    view = await service.status(accepted.id)
    assert view.result is not None
    assert_same_json(view.result.model_dump(mode="json"), golden("response_job_poll"))

    clock.at(101)
    await service.status(follower.id)
    assert_same_json(record(follower.id), golden("record_follower_succeeded"))

    clock.at(102)
    reused = await service.submit(rivers, SubmitOptions(respond_async=True))
    assert_same_json(reused.status_document().model_dump(mode="json"), golden("status_reused"))
    assert_same_json(record(reused.id), golden("record_reused"))

    next_id = golden("record_no_store_queued")["id"]
    clock.at(300)
    failing_request = NarrationRequest.model_validate(
        {"text": "A text that fails.", "mode": "read", "sas_expiry_minutes": 30}
    )
    failing = await service.submit(
        failing_request, SubmitOptions(respond_async=True, reuse=False, remember=False)
    )
    assert failing.id == next_id
    assert_same_json(record(failing.id), golden("record_no_store_queued"))
    narrations.script = [
        RealtimeServerError("the server had an error", server_code="server_error", error_type="server_error"),
        RuntimeError("a bug"),
        AuthenticationError("Azure OpenAI refused the credentials (HTTP 401)"),
    ]
    clock.at(310)
    with pytest.raises(RealtimeServerError):
        await service.run(failing.id, dequeue_count=1)
    assert_same_json(record(failing.id), golden("record_requeued"))
    clock.at(320)
    with pytest.raises(RuntimeError):
        await service.run(failing.id, dequeue_count=2)
    # The one deliberate difference: the current version writes a complete ErrorDetails.
    new_internal_error = {
        "code": "internal_error",
        "message": "an unexpected error occurred; it has been logged",
        "field": None,
    }
    old = golden("record_requeued_unexpected")
    assert old["last_error"] == OLD_INTERNAL_ERROR
    assert_same_json(record(failing.id), {**old, "last_error": new_internal_error})
    clock.at(330)
    assert await service.run(failing.id, dequeue_count=3) == "failed"
    assert_same_json(record(failing.id), {**golden("record_failed"), "last_error": new_internal_error})
    view = await service.status(failing.id)
    assert view.record.error is not None
    assert_same_json(view.record.error.model_dump(mode="json"), golden("error_job_failed"))

    clock.at(400)
    dying = await service.submit(
        NarrationRequest.model_validate({"text": "The worker dies while this is narrated."}),
        SubmitOptions(respond_async=True),
    )
    narrations.script = [Abandoned()]
    clock.at(410)
    with pytest.raises(Abandoned):
        await service.run(dying.id, dequeue_count=1)
    assert_same_json(record(dying.id), golden("record_running_abandoned"))
    clock.at(410 + 20 + 301)
    await service.status(dying.id)
    requeued, failed = requeued_then_stalled("2026-11-25T11:22:48.000Z", "2026-11-25T11:27:49.000Z")
    assert_same_json(record(dying.id), requeued)
    clock.at(410 + 20 + 301 + 301)
    await service.status(dying.id)
    assert_same_json(record(dying.id), failed)


# --- The models as a layer and as a schema -------------------------------------------------------


def test_the_literal_types_match_the_services() -> None:
    assert get_args(NarrationMode) == MODES
    assert get_args(JobRecord.model_fields["status"].annotation) == (
        "queued",
        "running",
        "succeeded",
        "failed",
    )
    assert list(golden("record_queued")) == [
        k for k in JobRecord.model_fields if k not in LATER_RECORD_FIELDS
    ]
    assert swagger_schema(NarrationResponse, mode="serialization")["properties"]["voice"]["enum"] == list(
        REALTIME_VOICES
    )


def test_the_wire_module_imports_nothing_above_it() -> None:
    code = (
        "import json, sys, podcast.wire\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('podcast'))))"
    )
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    )
    assert set(loaded) <= {"podcast", "podcast.wire", "podcast.voices", "podcast.languages"}


@pytest.mark.parametrize(
    "model",
    [NarrationResponse, TranscriptDocument, JobStatusDocument, ErrorDetails, JobRecord, SegmentReport],
)
def test_every_published_field_has_a_description_and_a_summary(model: type[BaseModel]) -> None:
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        assert info.description, name
        assert isinstance(extra, dict), name
        assert extra.get("x-ms-summary"), name
    for name, info in Usage.model_fields.items():
        assert info.description, name


def test_the_swagger_adapter_translates_or_refuses() -> None:
    class Sample(BaseModel):
        """A docstring that is not published."""

        count: int | None = None
        ratio: float = Field(default=0.5, gt=0, json_schema_extra={"x-ms-summary": "Ratio"})
        kind: Literal["only"] = "only"

    serialized = swagger_schema(Sample, mode="serialization")
    validated = swagger_schema(Sample, mode="validation")

    assert "description" not in serialized
    assert serialized["properties"]["count"] == {"type": "integer", "x-nullable": True}
    assert validated["properties"]["count"] == {"type": "integer"}, "null is the default: optional"
    assert serialized["properties"]["kind"] == {"type": "string", "enum": ["only"]}
    assert validated["properties"]["ratio"] == {
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
        "default": 0.5,
        "x-ms-summary": "Ratio",
    }

    class Pair(BaseModel):
        pair: tuple[int, int]

    with pytest.raises(RuntimeError, match="prefixItems"):
        swagger_schema(Pair, mode="validation")
