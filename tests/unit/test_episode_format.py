"""A show's episode is an MP3 unless the request asks for a WAV: podcast apps (Apple's
first) take MP3 enclosures, not WAV ones."""

from __future__ import annotations

import json
from typing import Any

import pytest

from podcast.models import parse_request
from podcast.services.documents import request_from_document
from podcast.settings import DocumentSettings, RequestLimits

LIMITS = RequestLimits()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, "wav"),
        ({"format": None}, "wav"),
        ({"show": "daily"}, "mp3"),
        ({"show": "daily", "format": None}, "mp3"),
        ({"show": "daily", "format": ""}, "mp3"),
        ({"show": "daily", "format": "wav"}, "wav"),
        ({"show": "daily", "format": " WAV "}, "wav"),
        ({"show": "", "format": None}, "wav"),  # no show
        ({"show": None}, "wav"),
    ],
)
def test_a_show_makes_the_default_format_mp3(fields: dict[str, Any], expected: str) -> None:
    request = parse_request({"text": "Rivers bend.", **fields}, LIMITS)

    assert request.format == expected
    # A stored job's request, validated again when it runs, keeps the format it was given.
    stored = request.model_dump(mode="json", exclude_unset=True)  # as a job stores it
    assert parse_request(stored, LIMITS).format == expected


@pytest.mark.parametrize(
    ("name", "body", "expected"),
    [
        ("notes.txt", b"Rivers bend.", "wav"),
        ("shows/daily/notes.txt", b"Rivers bend.", "mp3"),
        ("shows/daily/notes.md", b"# Rivers\n\nThey bend.", "mp3"),
        ("shows/daily/notes.json", json.dumps({"text": "Rivers bend."}).encode(), "mp3"),
        ("shows/daily/notes.json", json.dumps({"text": "Rivers bend.", "format": "wav"}).encode(), "wav"),
        ("shows/daily/notes.json", json.dumps({"text": "Rivers bend.", "format": None}).encode(), "mp3"),
        ("notes.json", json.dumps({"text": "Rivers bend.", "show": "daily"}).encode(), "mp3"),
        ("notes.json", json.dumps({"text": "Rivers bend."}).encode(), "wav"),
    ],
)
def test_a_document_for_a_show_is_an_mp3_unless_its_request_says_wav(
    name: str, body: bytes, expected: str
) -> None:
    request = request_from_document(name, body, DocumentSettings(), LIMITS)

    assert request.format == expected
