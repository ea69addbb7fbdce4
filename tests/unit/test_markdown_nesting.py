"""Deeply nested Markdown is narrated in full up to the cap, and refused beyond it: never
silently cut (markdown-it's CommonMark preset stopped an outline at 9 levels and dropped the
rest of the document)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from podcast.errors import DocumentError
from podcast.services.documents import MAX_MARKDOWN_NESTING, markdown_to_speech, request_from_document
from podcast.settings import DocumentSettings, RequestLimits

END = "The closing paragraph is read too."


def outline(levels: int) -> str:
    return "\n".join("  " * i + f"- Level {i + 1}" for i in range(levels)) + f"\n\n{END}\n"


def numbered(levels: int) -> str:
    return "\n".join("   " * i + f"1. Level {i + 1}" for i in range(levels)) + f"\n\n{END}\n"


def quotes(levels: int) -> str:
    return "\n".join(">" * (i + 1) + f" Level {i + 1}" for i in range(levels)) + f"\n\n{END}\n"


def one_line(levels: int) -> str:
    return "- " * (levels - 1) + "- Level x\n\n" + END


SHAPES: dict[str, Callable[[int], str]] = {
    "bullets": outline,
    "numbers": numbered,
    "quotes": quotes,
    "one line": one_line,
}


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("levels", [9, 10, 11, 50, MAX_MARKDOWN_NESTING - 1, MAX_MARKDOWN_NESTING])
def test_every_level_and_the_rest_of_the_document_are_read_up_to_the_cap(
    shape: Callable[[int], str], levels: int
) -> None:
    spoken = markdown_to_speech(shape(levels))

    assert spoken.endswith(END)
    if shape is not one_line:
        assert [f"Level {n}" for n in range(1, levels + 1)] == [
            line.rstrip(".") for line in spoken.split("\n\n") if line.startswith("Level")
        ]


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("levels", [MAX_MARKDOWN_NESTING + 1, 2 * MAX_MARKDOWN_NESTING + 5, 1_000])
def test_deeper_than_the_cap_is_refused_by_name_never_cut(shape: Callable[[int], str], levels: int) -> None:
    """1,000 indented levels are about a megabyte, the default document size limit."""
    with pytest.raises(DocumentError) as caught:
        markdown_to_speech(shape(levels))

    error = caught.value
    assert (error.code, error.field, error.http_status, error.transient) == (
        "markdown_too_deep",
        "document",
        400,
        False,
    )
    assert f"at most {MAX_MARKDOWN_NESTING} levels" in error.message
    if levels == MAX_MARKDOWN_NESTING + 1:
        assert f"{levels} levels deep" in error.message


def test_an_uploaded_document_too_deep_is_a_document_error() -> None:
    with pytest.raises(DocumentError) as caught:
        request_from_document(
            "outline.md", outline(MAX_MARKDOWN_NESTING + 1).encode(), DocumentSettings(), RequestLimits()
        )
    assert caught.value.code == "markdown_too_deep"


def test_a_long_thematic_break_is_not_mistaken_for_nesting() -> None:
    assert markdown_to_speech("Before.\n\n" + "* " * 300 + "\n\nAfter.") == "Before.\n\nAfter."


def test_a_hostile_megabyte_of_list_markers_is_refused_quickly() -> None:
    # CPU time, not wall time: the bound is about the algorithm (a quadratic parse takes
    # minutes), and CI runs two test passes side by side.
    started = time.process_time()
    with pytest.raises(DocumentError):
        markdown_to_speech("- " * 500_000 + "x")
    assert time.process_time() - started < 2.0
