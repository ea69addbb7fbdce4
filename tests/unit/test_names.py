"""The blob name rule (podcast.storage.names) and every place that builds a name from input."""

from __future__ import annotations

import pytest

from podcast.errors import BlobNameError
from podcast.services.documents import claim_name
from podcast.services.records import idempotency_name, record_name, request_name
from podcast.services.reuse import entry_name
from podcast.storage.names import (
    MAX_NAME_CHARACTERS,
    MAX_SEGMENTS,
    blob_name,
    check_blob_name,
    check_blob_segment,
    log_safe,
)

HOSTILE = {
    "../other/x.txt": "'.' or '..' path segment",
    "../narrations-jobs/jobs/0123456789abcdef0123456789abcdef.json": "'.' or '..' path segment",
    "a/../../b.txt": "'.' or '..' path segment",
    "./x.txt": "'.' or '..' path segment",
    "a/./x.txt": "'.' or '..' path segment",
    "a/..": "'.' or '..' path segment",
    "\uff0e\uff0e/fullwidth.txt": "'.' or '..' path segment",
    "/etc/passwd.txt": "starts with '/'",
    "a\\..\\b.txt": "backslash",
    "a\\b.txt": "backslash",
    "a//b.txt": "empty path segment",
    "folder/": "empty path segment",
    "x\x00.txt": "control character",
    "x\n.txt": "control character",
    "x\x7f.txt": "control character",
    "x\ud800.txt": "control character",
    "ends./x.txt": "ends with '.'",
    "x.txt.": "ends with '.'",
    "": "is empty",
    "a" * (MAX_NAME_CHARACTERS + 1): "longer than 1,024",
    "/".join(["s"] * (MAX_SEGMENTS + 1)): "more than 254 path segments",
}


@pytest.mark.parametrize(("name", "rule"), HOSTILE.items(), ids=[ascii(n)[:40] for n in HOSTILE])
def test_a_name_that_could_leave_its_container_or_that_azure_refuses_is_refused(name: str, rule: str) -> None:
    with pytest.raises(BlobNameError, match=rule) as raised:
        check_blob_name(name, field="document")
    assert raised.value.field == "document"
    assert raised.value.code == "invalid_blob_name"
    assert raised.value.http_status == 400
    if len(name) > 3:
        assert name not in raised.value.message, "the message never quotes the name"


@pytest.mark.parametrize(
    "name",
    [
        "notes.txt",
        "reports/q3.md",
        "a..b.txt",  # dots inside a segment are fine
        "..hidden.txt",
        "...txt",
        "caf\u00e9/\u65e5\u672c.md",
        "%2e%2e/encoded.txt",  # the SDK percent-encodes '%': a literal name
        "with space/and+plus.txt",
        "a" * MAX_NAME_CHARACTERS,
        "/".join(["s"] * MAX_SEGMENTS),
    ],
)
def test_ordinary_names_and_the_exact_limits_are_accepted(name: str) -> None:
    assert check_blob_name(name) == name


def test_a_segment_may_not_hold_a_slash_and_joined_names_are_checked_whole() -> None:
    assert check_blob_segment("0123abcd", field="job id") == "0123abcd"
    with pytest.raises(BlobNameError, match="contains '/'"):
        check_blob_segment("a/b", field="job id")
    assert blob_name("jobs", "x.json") == "jobs/x.json"
    with pytest.raises(BlobNameError):
        blob_name("jobs", "../x.json")


@pytest.mark.parametrize("hostile", ["../x", "a/b", "..", "", "x\x00"])
def test_job_record_and_reuse_names_refuse_ids_that_are_not_one_safe_segment(hostile: str) -> None:
    for build in (record_name, request_name, entry_name):
        with pytest.raises(BlobNameError):
            build(hostile)


def test_keys_and_document_names_never_become_part_of_a_name_themselves() -> None:
    for key in ("../../x", "a/b", "\x00", "k" * 5000):
        name = idempotency_name(key)
        assert name.startswith("idempotency/")
        assert len(name) == len("idempotency/") + 64 + 5
        assert check_blob_name(name) == name
        claim = claim_name(key)
        assert claim.startswith("documents/")
        assert check_blob_name(claim) == claim


def test_names_are_escaped_and_shortened_for_logs() -> None:
    assert log_safe("a\nb\x1b[31m") == "a\\nb\\x1b[31m"
    assert "\n" not in log_safe("x\n" * 100)
    assert len(log_safe("y" * 5000)) <= 80
