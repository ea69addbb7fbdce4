"""The wire models (podcast.wire): each document round-trips, and each is exactly what the
services write today (the 200 and 202 bodies, the transcript document, the job record, the
cache and idempotency entries, the error body), including documents read back from a real
Azurite after a real job."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

import pytest
from azure.storage.blob import BlobServiceClient
from pydantic import BaseModel, Field, ValidationError

from emulator import Fault, FaultKind, RealtimeEmulator
from podcast.engine.longform import SegmentReport as EngineSegmentReport
from podcast.engine.realtime import Usage as EngineUsage
from podcast.errors import (
    ConfigurationError,
    PodcastError,
    RealtimeServerError,
    RequestValidationError,
    ResponseIncompleteError,
    TextTooLongError,
)
from podcast.http.openapi import sample_job, sample_response, sample_result, swagger_schema
from podcast.http.responses import error_body
from podcast.models import MODES, NarrationRequest
from podcast.services import jobs
from podcast.services.jobs import JobSettings, status_document, stored_result
from podcast.services.pipeline import transcript_document
from podcast.voices import REALTIME_VOICES
from podcast.wire import (
    CacheEntry,
    DocumentSource,
    ErrorBody,
    ErrorDetails,
    IdempotencyEntry,
    JobError,
    JobProgress,
    JobRecord,
    JobStatusDocument,
    NarrationMode,
    NarrationResponse,
    SegmentReport,
    TranscriptDocument,
    Usage,
    iso_timestamp,
    job_timestamp,
)
from testkit.azurite import AzuriteServer
from tests.test_jobs import ASYNC, TEXT, deliver, poll, post

MOMENT = datetime(2026, 11, 25, 11, 10, 37, tzinfo=UTC)
SOURCE = {"blob_name": "in/rivers.txt", "etag": '"0x8DC"', "sha256": "ab" * 32, "bytes": 44}


def json_round_trip(document: BaseModel) -> None:
    """Dumped to JSON and read back, a document is equal to itself and dumps the same."""
    dumped = document.model_dump(mode="json")
    again = type(document).model_validate(json.loads(json.dumps(dumped)))
    assert again == document
    assert again.model_dump(mode="json") == dumped


def _error_details_sorted(value: Any) -> Any:
    """``value`` with the keys of error details (``{"code", "message", ...}``) sorted: today's
    bodies put ``field`` first, the model puts it after ``message``, as the schema lists it."""
    if isinstance(value, dict):
        items = {key: _error_details_sorted(item) for key, item in value.items()}
        return dict(sorted(items.items())) if {"code", "message"} <= set(items) else items
    if isinstance(value, list):
        return [_error_details_sorted(item) for item in value]
    return value


def assert_same_json(model_dump: dict[str, Any], today: dict[str, Any]) -> None:
    """The same JSON, key order included at every level (but inside error details)."""
    assert model_dump == today
    assert json.dumps(_error_details_sorted(model_dump)) == json.dumps(_error_details_sorted(today))


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """Both the wire models and the job service read the same fixed "now"."""
    monkeypatch.setattr("podcast.wire._now", lambda: MOMENT)
    monkeypatch.setattr("podcast.services.jobs._now", lambda: MOMENT)
    return MOMENT


def narration_result(**changes: Any) -> Any:
    return dataclasses.replace(sample_result(), **changes)


def response_of(result: Any) -> NarrationResponse:
    """A :class:`NarrationResponse` from the pipeline's ``NarrationResult``, field by field."""
    return NarrationResponse(
        id=result.id,
        audio_url=result.audio_url,
        expires_at=iso_timestamp(result.expires_at) if result.expires_at else None,
        container=result.container,
        blob_name=result.blob_name,
        transcript_blob_name=result.transcript_blob_name,
        transcript=result.transcript,
        duration_seconds=result.duration_seconds,
        voice=result.request.voice,
        mode=result.request.mode,
        style=result.request.style,
        language=result.request.language,
        title=result.request.title,
        sample_rate=24_000,
        characters=len(result.request.text),
        segments=len(result.segments) or 1,
        fidelity=result.fidelity,
        warnings=result.warnings,
        usage=Usage(**dataclasses.asdict(result.usage)),
    )


# --- Narrations --------------------------------------------------------------------------------


def test_the_sample_response_is_the_pipelines_to_response_key_for_key() -> None:
    assert_same_json(sample_response().model_dump(mode="json"), sample_result().to_response())


def test_a_response_rounds_like_to_response_and_keeps_null_fields() -> None:
    request = NarrationRequest.model_validate(
        {"text": "Rivers bend.", "mode": "episode", "language": "es-mx"}
    )
    result = narration_result(
        request=request,
        audio_url=None,
        expires_at=None,
        duration_seconds=3.912_345_6,
        fidelity=None,
        segments=(),
        warnings=("low fidelity kept",),
        usage=EngineUsage(input_tokens=7, output_tokens=5, input_cached_tokens=2),
    )

    response = response_of(result)

    assert_same_json(response.model_dump(mode="json"), result.to_response())
    assert response.duration_seconds == 3.912
    assert response_of(narration_result(fidelity=0.987_654_3)).fidelity == 0.9877
    json_round_trip(response)


def test_a_response_is_stored_without_its_link_and_answered_with_a_fresh_one() -> None:
    response = sample_response()

    stored = response.without_link()

    assert stored.model_dump(mode="json") == stored_result(response.model_dump(mode="json"))
    relinked = stored.with_link("https://x/y.wav?sig=z", MOMENT)
    assert (relinked.audio_url, relinked.expires_at) == ("https://x/y.wav?sig=z", "2026-11-25T11:10:37Z")
    json_round_trip(stored)


def test_documents_are_immutable() -> None:
    response = sample_response()
    with pytest.raises(ValidationError):
        setattr(response, "title", "Other")  # noqa: B010
    with pytest.raises(ValidationError):
        setattr(response.usage, "input_tokens", 1)  # noqa: B010


def test_usage_has_todays_keys_in_todays_order_and_adds_up() -> None:
    engine = EngineUsage(1, 2, 3, 4, 5, 6, 7)
    usage = Usage(**dataclasses.asdict(engine))

    assert_same_json(usage.model_dump(mode="json"), engine.to_dict())
    assert (usage + usage).model_dump() == (engine + engine).to_dict()
    assert Usage().model_dump() == EngineUsage().to_dict()
    assert Usage.model_validate(engine.to_dict()) == usage
    json_round_trip(usage)
    with pytest.raises(ValidationError, match="total_tokens"):
        Usage(input_tokens=1, output_tokens=2, total_tokens=4)


def test_a_segment_report_is_todays_to_dict() -> None:
    engine = EngineSegmentReport(2, 1.234_567, 9.876_543, "Rivers bend.", 0.912_345, 2, 1)
    report = SegmentReport(**dataclasses.asdict(engine))

    assert_same_json(report.model_dump(mode="json"), engine.to_dict())
    unfaithful = SegmentReport.model_validate(EngineSegmentReport(0, 0, 1, "x", None, 1).to_dict())
    assert unfaithful.similarity is None
    json_round_trip(report)


def test_the_transcript_document_is_todays_with_and_without_a_source() -> None:
    result = sample_result()
    document = TranscriptDocument.from_response(
        response_of(result),
        created_at=result.created_at,
        min_fidelity=result.min_fidelity,
        segments=[SegmentReport.model_validate(s.to_dict()) for s in result.segments],
    )

    assert_same_json(document.model_dump(mode="json"), transcript_document(result))
    assert "source" not in document.model_dump(mode="json"), "absent, not null, for HTTP requests"
    json_round_trip(document)

    uploaded = {**transcript_document(narration_result(audio_url=None, expires_at=None)), "source": SOURCE}
    loaded = TranscriptDocument.model_validate(uploaded)
    assert loaded.source == DocumentSource.model_validate(SOURCE)
    assert_same_json(loaded.model_dump(mode="json"), uploaded)
    json_round_trip(loaded)


# --- Errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        RequestValidationError("voice 'x' is not a realtime voice", field="voice"),
        TextTooLongError(20_001, 20_000),
        ConfigurationError("AZURE_OPENAI_AUDIO_ENDPOINT", "is required"),
        RealtimeServerError("boom", server_code=None, error_type="server_error"),
        ResponseIncompleteError("max_output_tokens"),
        PodcastError("an unexpected error occurred; it has been logged"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_an_error_body_is_todays_error_body(error: PodcastError) -> None:
    body = ErrorBody.from_error(error)

    assert body.model_dump(mode="json") == error_body(error)
    assert ErrorBody.model_validate(error_body(error)) == body
    json_round_trip(body)


def test_an_error_body_keeps_extra_keys_and_has_a_setting_only_when_there_is_one() -> None:
    details = ErrorDetails.model_validate({"code": "c", "message": "m", "field": None, "upstream_code": "x"})
    assert details.model_dump() == {"code": "c", "message": "m", "field": None, "upstream_code": "x"}
    assert "setting" not in ErrorDetails(code="c", message="m", field=None).model_dump(mode="json")
    with pytest.raises(ValidationError):
        ErrorDetails.model_validate({"code": "c", "message": "m"})  # field is always there


# --- Jobs --------------------------------------------------------------------------------------


def stored_records() -> list[dict[str, Any]]:
    """Job records as today's job service writes them, in every state it writes."""
    moment = "2026-11-25T11:10:37.000Z"
    queued = jobs.JobRecord(
        id=uuid.uuid4().hex,
        status="queued",
        created_at=moment,
        updated_at=moment,
        estimated_audio_seconds=312.04,
        sas_expiry_minutes=60,
        cache_key="c" * 64,
    )
    running = dataclasses.replace(
        queued, status="running", attempts=1, started_at=moment, heartbeat_at=moment, segments_total=3
    )
    succeeded = dataclasses.replace(running)
    succeeded.finish_with_result(stored_result(sample_result().to_response()))
    failed = dataclasses.replace(running)
    failed.finish_with_error(ConfigurationError("AZURE_OPENAI_AUDIO_ENDPOINT", "is required"))
    requeued = dataclasses.replace(
        running,
        status="queued",
        last_error=error_body(RealtimeServerError("x", server_code="s", error_type="server_error"))["error"],
    )
    follower = dataclasses.replace(queued, leader=uuid.uuid4().hex, reuse=False, store_result=False)
    reused = dataclasses.replace(queued)
    reused.finish_with_result(stored_result(sample_result().to_response()), reused_from=uuid.uuid4().hex)
    return [r.to_dict() for r in (queued, running, succeeded, failed, requeued, follower, reused)]


@pytest.mark.parametrize("stored", stored_records(), ids=lambda d: f"{d['status']}-{d['attempts']}")
def test_a_job_record_loads_todays_records_and_dumps_the_same_dict(stored: dict[str, Any]) -> None:
    record = JobRecord.model_validate(stored)

    assert_same_json(record.model_dump(mode="json"), stored)
    assert JobRecord.model_validate(json.loads(json.dumps(stored))).model_dump(mode="json") == stored
    assert record.status_document().model_dump(mode="json") == status_document(
        jobs.JobRecord.from_dict(stored)
    )


def test_a_job_record_ignores_unknown_keys_and_fills_later_fields_with_their_defaults() -> None:
    stored = stored_records()[0]
    newer = {**stored, "priority": "high", "result": None}
    older = {key: stored[key] for key in list(stored)[:6]}  # only the fields without a default

    assert JobRecord.model_validate(newer).model_dump(mode="json") == stored
    assert JobRecord.model_validate(older).model_dump(mode="json") == stored | {"cache_key": None}
    assert "priority" not in JobRecord.model_validate(newer).model_dump()


def test_the_job_record_methods_do_what_todays_do(frozen_clock: datetime) -> None:
    stored = stored_records()[1]  # running, 3 segments
    response = stored_result(sample_result().to_response())
    error = ConfigurationError("AZURE_OPENAI_AUDIO_ENDPOINT", "is required")

    today, model = jobs.JobRecord.from_dict(stored), JobRecord.model_validate(stored)
    today.finish_with_result(response, reused_from="f" * 32)
    model.finish_with_result(NarrationResponse.model_validate(response), reused_from="f" * 32)
    assert model.model_dump(mode="json") == today.to_dict()

    today, model = jobs.JobRecord.from_dict(stored), JobRecord.model_validate(stored)
    today.finish_with_error(error)
    model.finish_with_error(ErrorBody.from_error(error), status=error.http_status)
    assert model.model_dump(mode="json") == today.to_dict()
    other = JobRecord.model_validate(stored)
    other.finish_with_error_body(error.http_status, error_body(error))
    assert other == model

    later = frozen_clock + timedelta(seconds=90)
    today, model = jobs.JobRecord.from_dict(stored), JobRecord.model_validate(stored)
    today.touch(later)
    model.touch(later)
    assert model.model_dump(mode="json") == today.to_dict()
    assert model.updated_at == job_timestamp(later) == "2026-11-25T11:12:07.000Z"


@pytest.mark.parametrize(
    ("changes", "age_seconds"),
    [
        ({}, 10),
        ({}, 400),
        ({"heartbeat_at": None}, 400),
        ({"heartbeat_at": None, "updated_at": "not a time"}, 0),
        ({"status": "queued"}, 400),
    ],
)
def test_staleness_is_judged_as_today(changes: dict[str, Any], age_seconds: float) -> None:
    stored = {**stored_records()[1], **changes}
    now = datetime(2026, 11, 25, 11, 10, 37, tzinfo=UTC) + timedelta(seconds=age_seconds)
    settings = JobSettings(stale_seconds=300)

    today = jobs.JobRecord.from_dict(stored).is_stale(settings, now)

    assert JobRecord.model_validate(stored).is_stale(settings.stale_seconds, now) is today


def test_the_status_document_is_todays_and_checks_the_job_id() -> None:
    record = sample_job()
    today = jobs.JobRecord.from_dict(record.model_dump(mode="json"))

    document = JobStatusDocument.from_record(record)

    assert_same_json(document.model_dump(mode="json"), status_document(today))
    assert document.progress == JobProgress(segments_done=1, segments_total=3)
    json_round_trip(document)
    with pytest.raises(ValidationError):
        JobStatusDocument.model_validate({**document.model_dump(), "id": "../cache/x"})


def test_cache_and_idempotency_entries_are_todays_documents() -> None:
    pending = {"state": "pending", "job_id": uuid.uuid4().hex, "updated_at": "2026-11-25T11:10:37.000Z"}
    succeeded = {
        "state": "succeeded",
        "job_id": None,
        "updated_at": "2026-11-25T11:10:37.000Z",
        "result": stored_result(sample_result().to_response()),
    }
    mapping = {"job_id": uuid.uuid4().hex, "request_hash": "d" * 64, "created_at": "2026-11-25T11:10:37.000Z"}

    for document, model in ((pending, CacheEntry), (succeeded, CacheEntry), (mapping, IdempotencyEntry)):
        loaded = model.model_validate({**document, "written_by": "a newer version"})
        assert_same_json(loaded.model_dump(mode="json"), document)
        json_round_trip(loaded)
    with pytest.raises(ValidationError, match="result"):
        CacheEntry.model_validate({**succeeded, "result": None})


def test_a_job_error_is_the_status_and_the_body() -> None:
    error = JobError(status=503, body=ErrorBody.from_error(ConfigurationError("X", "is required")))
    assert error.model_dump(mode="json") == {
        "status": 503,
        "body": {
            "error": {"code": "not_configured", "message": "X is required", "field": None, "setting": "X"}
        },
    }


# --- Against real stored documents -------------------------------------------------------------


def stored_documents(azurite: AzuriteServer, container: str) -> dict[str, dict[str, Any]]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        client = service.get_container_client(container)
        if not client.exists():
            return {}
        return {
            blob.name: json.loads(client.download_blob(blob.name).readall())
            for blob in client.list_blobs()
            if blob.name.endswith(".json")
        }


async def test_every_document_a_real_job_stores_and_answers_is_a_wire_model(
    jobs_env: dict[str, str], azurite: AzuriteServer, container_name: str, emulator: RealtimeEmulator
) -> None:
    headers = {**ASYNC, "Idempotency-Key": str(uuid.uuid4())}
    status, accepted, response = await post({"text": TEXT, "title": "Rivers", "language": "en"}, headers)
    assert status == 202
    assert_same_json(JobStatusDocument.model_validate(accepted).model_dump(mode="json"), accepted)
    pending = stored_documents(azurite, jobs_env["jobs_container"])

    await deliver(azurite, jobs_env)
    status, done, _ = await poll(response.headers["Location"])
    assert status == 200
    emulator.inject(Fault(FaultKind.HANDSHAKE_401, times=None))
    _, refused, failing = await post({"text": "Another text entirely."}, ASYNC)
    await deliver(azurite, jobs_env)
    status, failure, _ = await poll(failing.headers["Location"])
    assert status == 502

    assert_same_json(NarrationResponse.model_validate(done).model_dump(mode="json"), done)
    assert_same_json(ErrorBody.model_validate(failure).model_dump(mode="json"), failure)
    finished = stored_documents(azurite, jobs_env["jobs_container"])
    documents = {**{f"pending:{name}": d for name, d in pending.items()}, **finished}
    models: dict[str, type[BaseModel]] = {
        "jobs": JobRecord,
        "cache": CacheEntry,
        "idempotency": IdempotencyEntry,
    }
    seen = set()
    for name, document in documents.items():
        if name.endswith(".request.json"):
            continue
        model = models[name.removeprefix("pending:").split("/", 1)[0]]
        assert model.model_validate(document).model_dump(mode="json") == document, name
        seen.add((model.__name__, document.get("status") or document.get("state")))
    assert {
        ("JobRecord", "queued"),
        ("JobRecord", "succeeded"),
        ("JobRecord", "failed"),
        ("CacheEntry", "pending"),
        ("CacheEntry", "succeeded"),
        ("IdempotencyEntry", None),
    } <= seen

    (transcript,) = stored_documents(azurite, container_name).values()
    assert_same_json(TranscriptDocument.model_validate(transcript).model_dump(mode="json"), transcript)
    assert refused["status"] == "queued"


# --- The models as a layer and as a schema -------------------------------------------------------


def test_the_literal_types_match_the_services() -> None:
    assert get_args(NarrationMode) == MODES
    assert get_args(JobRecord.model_fields["status"].annotation) == get_args(jobs.JobStatus)
    assert [f.name for f in dataclasses.fields(jobs.JobRecord)] == list(JobRecord.model_fields)
    assert swagger_schema(NarrationResponse, mode="serialization")["properties"]["voice"]["enum"] == list(
        REALTIME_VOICES
    )


def test_the_wire_module_imports_nothing_above_it() -> None:
    code = "import sys, podcast.wire; print(sorted(m for m in sys.modules if m.startswith('podcast')))"
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        .stdout.strip()
        .replace("'", '"')
    )
    assert set(loaded) <= {"podcast", "podcast.wire", "podcast.errors", "podcast.voices"}


@pytest.mark.parametrize("model", [NarrationRequest, NarrationResponse, JobStatusDocument, ErrorDetails])
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
