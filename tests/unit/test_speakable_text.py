"""Text with nothing to say is refused before any session: the rule, its limits, and segments.

Speakable means at least one letter or digit (Unicode categories L* and N*) in any script.
"""

from __future__ import annotations

import json

import pytest

from podcast.engine.instructions import user_message
from podcast.engine.segments import split_text
from podcast.errors import RequestValidationError
from podcast.models import RequestLimits, has_speakable_text, parse_request

LIMITS = RequestLimits()

NOTHING_TO_SAY = {
    "zero-width space": "\u200b",
    "zero-width joiner and non-joiner": "\u200d\u200c\u2060\ufeff",
    "zero-width characters and punctuation": "\u200b.\u200d!?\u200c…",
    "punctuation": "?!...;:,",
    "horizontal rules": "---\n\n***\n\n___",
    "markdown heading markers": "###\n#\n######",
    "the instructions' marker lines": "<<<\n>>>",
    "a fenced empty text": user_message(parse_request({"text": "x"}, LIMITS), "").replace("x", ""),
    "emoji": "🎉🎉 👍🏽 ❤️",
    "emoji ZWJ sequence": "👩\u200d💻",
    "flags": "🇫🇷🇯🇵",
    "symbols": "$ € % + = © ™ → ★",
    "direction marks and punctuation": "\u200f\u200e\u202b!\u202c",
    "a combining mark alone": "\u0301\u0301",
    "scene break": "* * *",
}

SPEAKABLE = {
    "one Latin letter": "a",
    "one digit": "7",
    "one Hebrew letter (RTL)": "א",
    "Arabic with a direction mark": "\u200fمرحبا!",
    "Arabic-Indic digit": "\u0661",
    "one CJK character": "話",
    "Devanagari": "नमस्ते",
    "mixed scripts": "Hello, мир, 世界, שלום",
    "a letter among emoji": "🎉 a 🎉",
    "a letter among zero-width characters": "\u200b\u200bb\u200b",
    "keycap digit emoji": "1\ufe0f\u20e3",
    "a number with symbols": "$5",
    "Roman numeral (Nl)": "Ⅻ",
}


@pytest.mark.parametrize("text", NOTHING_TO_SAY.values(), ids=NOTHING_TO_SAY.keys())
def test_text_with_nothing_to_say_is_a_400_naming_text(text: str) -> None:
    assert not has_speakable_text(text)
    with pytest.raises(RequestValidationError) as caught:
        parse_request(json.dumps({"text": text}).encode(), LIMITS)

    error = caught.value
    assert (error.http_status, error.code, error.field) == (400, "no_speakable_text", "text")
    assert error.message.startswith("text has nothing to say")
    assert not error.transient
    assert error.retry_after is None
    assert text.strip() not in error.message, "the message never repeats the text"


@pytest.mark.parametrize("text", SPEAKABLE.values(), ids=SPEAKABLE.keys())
def test_one_letter_or_digit_in_any_script_is_enough(text: str) -> None:
    assert has_speakable_text(text)
    assert parse_request({"text": text}, LIMITS).text


def test_episode_mode_follows_the_same_rule() -> None:
    with pytest.raises(RequestValidationError) as caught:
        parse_request({"text": "🎙️ …", "mode": "episode"}, LIMITS)
    assert caught.value.code == "no_speakable_text"


def test_the_emptiness_rule_still_comes_first() -> None:
    with pytest.raises(RequestValidationError) as caught:
        parse_request({"text": " \n\t "}, LIMITS)
    assert caught.value.message.startswith("text is empty")


# --- segments ------------------------------------------------------------------------------------


def test_a_trailing_scene_break_never_becomes_a_segment_of_its_own() -> None:
    text = " ".join(["word"] * 10) + "\n\n* * *"

    for parallelism in (1, 4):
        segments = split_text(text, 10, parallelism=parallelism)
        assert all(has_speakable_text(segment.text) for segment in segments), segments
        assert "* * *" in segments[-1].text
        assert segments[-1].boundary == "end"


def test_a_leading_marker_joins_the_first_segment_with_speech() -> None:
    text = "!!!\n\n" + " ".join(["word"] * 10) + "\n\nmore words here."

    segments = split_text(text, 10)

    assert [segment.index for segment in segments] == list(range(len(segments)))
    assert all(has_speakable_text(segment.text) for segment in segments), segments
    assert segments[0].text.startswith("!!!")


def test_every_character_of_the_text_is_kept_in_the_segments() -> None:
    text = "First part here.\n\n---\n\n" + " ".join(["word"] * 12) + "\n\n…\n\nLast."

    segments = split_text(text, 6)

    joined = "".join(segment.text for segment in segments)
    assert sorted(joined.replace(" ", "").replace("\n", "")) == sorted(
        text.replace(" ", "").replace("\n", "")
    )
    assert all(has_speakable_text(segment.text) for segment in segments)


def test_at_the_length_limit_nothing_to_say_is_a_400_and_one_more_character_a_413() -> None:
    limit = LIMITS.max_text_characters
    with pytest.raises(RequestValidationError) as at_limit:
        parse_request({"text": "\u200b" * limit}, LIMITS)
    with pytest.raises(RequestValidationError) as over:
        parse_request({"text": "\u200b" * (limit + 1)}, LIMITS)

    assert (at_limit.value.http_status, at_limit.value.code) == (400, "no_speakable_text")
    assert (over.value.http_status, over.value.code) == (413, "text_too_long")
    assert parse_request({"text": "\u200b" * (limit - 1) + "a"}, LIMITS).text.endswith("a")
