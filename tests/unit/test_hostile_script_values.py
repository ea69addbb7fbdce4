"""Script values that look like something they are not: blank look-alike letters in names
and turns, names spaced with no-break or line separators, and the script cache's claim entry."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from podcast.errors import RequestValidationError
from podcast.models import RequestLimits, has_speakable_text, parse_request
from podcast.wire import ScriptCacheEntry

LIMITS = RequestLimits()


@pytest.mark.parametrize("blank", ["\u3164", "\u115f\u1160", "\uffa0", "\u2800", "\u034f", "\ufe0f"])
def test_letters_that_show_as_blanks_have_nothing_to_say(blank: str) -> None:
    assert not has_speakable_text(blank * 3)
    assert has_speakable_text(f"{blank}Hi")
    with pytest.raises(RequestValidationError) as refused:
        parse_request({"speakers": [{"name": f"Ma{blank}ya", "voice": "marin"}], "script": []}, LIMITS)
    assert refused.value.field == "speakers[0].name"


def test_real_hangul_and_other_scripts_still_speak() -> None:
    assert has_speakable_text("한국어")
    assert has_speakable_text("ㄱ")  # a compatibility jamo is a letter, not a filler


@pytest.mark.parametrize("space", ["\u00a0", "\u2028", "\u3000", "  "])
def test_a_name_spaced_oddly_matches_a_turn_spaced_the_same_way(space: str) -> None:
    name = f"Ana{space}Lima"
    request = parse_request(
        {"speakers": [{"name": name, "voice": "marin"}], "script": [{"speaker": name, "text": "Hola."}]},
        LIMITS,
    )
    assert request.speakers is not None
    assert request.script is not None
    assert request.speakers[0].name == request.script[0].speaker == "Ana Lima"


def test_a_claim_entry_has_its_writer_and_expiry_and_no_outcome() -> None:
    claim = ScriptCacheEntry(
        state="writing",
        updated_at="2026-01-01T00:00:00Z",
        attempt="a" * 32,
        expires_at="2026-01-01T00:01:00Z",
    )
    assert ScriptCacheEntry.model_validate(claim.model_dump(mode="json")) == claim
    with pytest.raises(ValidationError):
        ScriptCacheEntry(state="writing", updated_at="2026-01-01T00:00:00Z")
    with pytest.raises(ValidationError):
        ScriptCacheEntry(state="succeeded", updated_at="2026-01-01T00:00:00Z", attempt="a" * 32)
