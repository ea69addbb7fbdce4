"""Range headers (RFC 9110 §14) against a representation's size: what to send."""

from __future__ import annotations

import pytest

from podcast.http.ranges import MAX_RANGES, UNSATISFIABLE, WHOLE, select_ranges


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, WHOLE),
        ("", 100, WHOLE),
        ("bytes=0-0", 100, [(0, 0)]),
        ("bytes=0-99", 100, [(0, 99)]),
        ("bytes=0-100", 100, [(0, 99)]),
        ("bytes=99-", 100, [(99, 99)]),
        ("bytes=100-", 100, UNSATISFIABLE),
        ("bytes=-1", 100, [(99, 99)]),
        ("bytes=-100", 100, [(0, 99)]),
        ("bytes=-101", 100, [(0, 99)]),
        ("bytes=-0", 100, UNSATISFIABLE),
        ("bytes=0-0", 0, UNSATISFIABLE),
        ("bytes=-5", 0, UNSATISFIABLE),
        ("BYTES = 1-2", 100, [(1, 2)]),  # whitespace around "=" is tolerated
        ("Bytes=1-2", 100, [(1, 2)]),  # the unit is case-insensitive
        ("bytes=1-2,,  ,4-5", 100, [(1, 2), (4, 5)]),  # empty list elements are ignored
        ("bytes=4-5,1-2", 100, [(1, 2), (4, 5)]),
        ("bytes=1-2,3-4", 100, [(1, 4)]),  # adjacent: merged
        ("bytes=1-10,5-6", 100, [(1, 10)]),  # contained: merged
        ("bytes=1-2,200-300", 100, [(1, 2)]),  # the unsatisfiable one is dropped
        ("bytes=2-1", 100, WHOLE),
        ("bytes=-", 100, WHOLE),
        ("bytes=1", 100, WHOLE),
        ("bytes=+1-2", 100, WHOLE),
        ("bytes=0x1-2", 100, WHOLE),
        ("bytes=1-2-3", 100, WHOLE),
        ("lines=1-2", 100, WHOLE),
        ("bytes=" + "9" * 20 + "-", 100, WHOLE),  # absurd numbers are not parsed
        ("bytes=" + ",".join(["0-0"] * MAX_RANGES), 100, [(0, 0)]),
        ("bytes=" + ",".join(["0-0"] * (MAX_RANGES + 1)), 100, WHOLE),
    ],
)
def test_select_ranges(header: str | None, size: int, expected: object) -> None:
    assert select_ranges(header, size) == expected


def test_if_range_applies_the_ranges_only_to_the_same_version() -> None:
    assert select_ranges("bytes=0-1", 10, if_range='"v1"', etag='"v1"') == [(0, 1)]
    assert select_ranges("bytes=0-1", 10, if_range='"v0"', etag='"v1"') == WHOLE
    assert select_ranges("bytes=0-1", 10, if_range="Tue, 01 Dec 2026 10:00:00 GMT", etag='"v1"') == WHOLE
