"""The narration request: every field's contract, and every way a body can be wrong.

Each rejection checks the status (400 or 413), the field named, and that the message
says what the problem is.
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

import pytest
from pydantic import ValidationError

from podcast.errors import ConfigurationError, RequestTooLargeError, RequestValidationError, TextTooLongError
from podcast.languages import display_name
from podcast.models import (
    EPISODE_STYLES,
    READ_STYLES,
    NarrationRequest,
    RequestLimits,
    parse_request,
    parse_script_request,
    parse_show,
)
from podcast.voices import REALTIME_VOICES

LIMITS = RequestLimits()
ALL_VOICES = ", ".join(REALTIME_VOICES)


def body(**fields: Any) -> bytes:
    """A UTF-8 JSON body with ``text`` "Hello there." plus ``fields`` (``text=...`` overrides)."""
    return json.dumps({"text": "Hello there.", **fields}).encode()


def parse(**fields: Any) -> NarrationRequest:
    return parse_request(body(**fields), LIMITS)


def rejected(payload: bytes | str | dict[str, Any], limits: RequestLimits = LIMITS) -> RequestValidationError:
    with pytest.raises(RequestValidationError) as caught:
        parse_request(payload, limits)
    return caught.value


def assert_rejects(
    error: RequestValidationError, *, status: int = 400, field: str | None, says: str | list[str]
) -> None:
    assert error.http_status == status
    assert error.field == field
    for phrase in [says] if isinstance(says, str) else says:
        assert phrase in error.message
    if field is not None and error.code not in ("duplicate_field", "unknown_field"):
        assert error.message.startswith(field)


# --- a valid body and its defaults ------------------------------------------------------


def test_a_body_with_only_text_gets_every_default() -> None:
    request = parse_request(b'{"text": "Hello there."}', LIMITS)

    assert request.text == "Hello there."
    assert request.mode == "read"
    assert request.target_minutes == 2.0
    assert request.style == "podcast"
    assert request.voice == "marin"
    assert request.language is None
    assert request.instructions is None
    assert request.title is None
    assert request.sas_expiry_minutes == 60


def test_a_full_episode_body_keeps_every_field() -> None:
    request = parse(
        mode="episode",
        target_minutes=1.5,
        style="summary",
        voice="cedar",
        language="pt-BR",
        instructions="Upbeat.",
        title="Weekly update",
        sas_expiry_minutes=120,
    )

    assert (request.mode, request.target_minutes, request.style) == ("episode", 1.5, "summary")
    assert (request.voice, request.language) == ("cedar", "pt-BR")
    assert (request.instructions, request.title, request.sas_expiry_minutes) == (
        "Upbeat.",
        "Weekly update",
        120,
    )


def test_bytes_a_json_string_and_a_mapping_parse_to_the_same_request() -> None:
    fields = {"text": "Same text.", "voice": "ash", "mode": "episode"}

    from_bytes = parse_request(json.dumps(fields).encode(), LIMITS)
    from_string = parse_request(json.dumps(fields), LIMITS)
    from_mapping = parse_request(fields, LIMITS)

    assert from_bytes == from_string == from_mapping


def test_a_utf8_byte_order_mark_is_tolerated_in_bytes_and_strings() -> None:
    assert parse_request(b"\xef\xbb\xbf" + body(), LIMITS).text == "Hello there."
    assert parse_request("\ufeff" + body().decode(), LIMITS).text == "Hello there."


def test_the_default_voice_and_expiry_come_from_the_limits() -> None:
    limits = RequestLimits(default_voice="cedar", max_sas_expiry_minutes=30)

    request = parse_request(body(), limits)

    assert request.voice == "cedar"
    assert request.sas_expiry_minutes == 30


@pytest.mark.parametrize(
    "field",
    ["mode", "target_minutes", "style", "voice", "language", "instructions", "title", "sas_expiry_minutes"],
)
def test_null_for_an_optional_field_means_not_given(field: str) -> None:
    assert parse(**{field: None}) == parse()


@pytest.mark.parametrize("field", ["mode", "style", "voice", "language", "instructions", "title"])
@pytest.mark.parametrize("blank", ["", "   "])
def test_an_empty_string_for_an_optional_text_field_means_not_given(field: str, blank: str) -> None:
    assert parse(**{field: blank}) == parse()


def test_model_validate_without_a_context_uses_the_default_limits() -> None:
    request = NarrationRequest.model_validate({"text": "Hi"})

    assert (request.voice, request.sas_expiry_minutes) == ("marin", 60)


def test_a_request_is_immutable() -> None:
    request = parse()

    with pytest.raises(ValidationError):
        request.text = "changed"


# --- settings ---------------------------------------------------------------------------


def test_limits_from_an_empty_environment_are_the_documented_defaults() -> None:
    assert RequestLimits.from_env({}) == RequestLimits(
        max_text_characters=20_000, max_sas_expiry_minutes=1440, default_voice="marin"
    )


def test_limits_are_read_from_their_settings() -> None:
    env = {
        "NARRATION_MAX_TEXT_CHARACTERS": "5000",
        "NARRATION_MAX_SAS_EXPIRY_MINUTES": "90",
        "NARRATION_DEFAULT_VOICE": "cedar",
    }

    assert RequestLimits.from_env(env) == RequestLimits(
        max_text_characters=5000, max_sas_expiry_minutes=90, default_voice="cedar"
    )


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("NARRATION_MAX_TEXT_CHARACTERS", "many"),
        ("NARRATION_MAX_TEXT_CHARACTERS", "0"),
        ("NARRATION_MAX_TEXT_CHARACTERS", "20000.5"),
        ("NARRATION_MAX_SAS_EXPIRY_MINUTES", "-1"),
        ("NARRATION_MAX_SAS_EXPIRY_MINUTES", "20000"),
        ("NARRATION_DEFAULT_VOICE", "nova"),
    ],
)
def test_a_malformed_limit_setting_is_a_configuration_error_naming_it(setting: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RequestLimits.from_env({setting: value})

    assert caught.value.setting == setting
    assert caught.value.http_status == 503


# --- body-level problems ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        # Python 3.13's json points at the trailing comma itself, 3.11's at the brace after it.
        (b'{"text": "Hi",}', "line 1, column 14" if sys.version_info >= (3, 13) else "line 1, column 15"),
        (b'{"text": "Hi"', "line 1, column 14"),
        (b'{\n  "text": "Hi"\n  "mode": "read"\n}', "line 3, column 3"),
        (b"{'text': 'Hi'}", "line 1, column 2"),
        (b'{"text": "Hi"} trailing', "line 1, column 16"),
    ],
)
def test_malformed_json_is_a_400_that_says_where(payload: bytes, where: str) -> None:
    error = rejected(payload)

    assert_rejects(error, field=None, says=["not valid JSON", where])
    assert error.code == "invalid_json"


@pytest.mark.parametrize("payload", [b"", b"   \n", ""])
def test_an_empty_body_is_a_400_that_shows_the_expected_shape(payload: bytes | str) -> None:
    assert_rejects(rejected(payload), field=None, says=["empty", '{"text": "..."}'])


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b'["Hello"]', "a list"),
        (b'"Hello"', "a string"),
        (b"42", "a number"),
        (b"null", "null"),
        (b"true", "a boolean"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_400_naming_what_it_is(payload: bytes, kind: str) -> None:
    assert_rejects(rejected(payload), field=None, says=["must be a JSON object", f"got {kind}"])


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_a_utf16_or_utf32_body_is_a_400_asking_for_utf8(encoding: str) -> None:
    payload = json.dumps({"text": "Hello"}).encode(encoding)

    assert_rejects(rejected(payload), field=None, says=["must be UTF-8 JSON", "UTF-16"])


def test_a_latin1_body_is_a_400_naming_the_bad_byte() -> None:
    payload = '{"text": "café"}'.encode("latin-1")

    assert_rejects(rejected(payload), field=None, says=["must be UTF-8 JSON", "0xE9", "offset 13"])


def test_a_duplicate_key_is_a_400_naming_the_key() -> None:
    error = rejected(b'{"text": "one", "voice": "ash", "voice": "cedar"}')

    assert_rejects(error, field="voice", says=["'voice' more than once", "ambiguous"])
    assert error.code == "duplicate_field"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (
            '{"speakers": [{"name": "A", "voice": "ash", "voice": "echo"}], '
            '"script": [{"speaker": "A", "text": "x"}]}',
            "speakers[0].voice",
        ),
        (
            '{"speakers": [{"name": "A", "name": "B", "voice": "ash"}], '
            '"script": [{"speaker": "A", "text": "x"}]}',
            "speakers[0].name",
        ),
        (
            '{"speakers": [{"name": "A", "voice": "ash"}], "script": [{"speaker": "A", "text": "one"}, '
            '{"speaker": "A", "text": "First", "text": "Second"}]}',
            "script[1].text",
        ),
        ('{"text": "Hi there", "chapters": [{"title": "x", "turn": 0, "turn": 1}]}', "chapters[0].turn"),
        # The first duplicate in the document is named, however deep.
        ('{"text": "Hi", "text": "Bye", "chapters": [{"title": "x", "title": "y"}]}', "text"),
        ('{"chapters": [{"title": "x", "title": "y"}], "text": "Hi", "text": "Bye"}', "chapters[0].title"),
    ],
)
def test_a_duplicate_key_in_a_nested_object_is_a_400_naming_its_path(payload: str, field: str) -> None:
    """Parsers differ on which value of a repeated key wins (Python and JavaScript take the
    last), so a repeat anywhere is refused, as at the top level, never read as the first."""
    error = rejected(payload.encode())

    assert (error.code, error.field) == ("duplicate_field", field)
    assert f"'{field}' more than once" in error.message


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ('{"text": "Hi there", "\\ud800": 1}', "?"),
        ('{"\\udc00x": 1, "text": "Hi there"}', "?x"),
        (
            '{"speakers": [{"name": "A", "\\udfff": "ash"}], "script": [{"speaker": "A", "text": "x"}]}',
            "speakers[0].?",
        ),
    ],
)
def test_a_field_name_with_a_lone_surrogate_is_a_400_not_a_crash(payload: str, field: str) -> None:
    error = rejected(payload.encode())

    assert (error.http_status, error.field) == (400, field)
    assert "lone UTF-16 surrogate" in error.message
    json.dumps(error.body())  # the answer itself is valid JSON text


@pytest.mark.parametrize(
    ("parse", "payload"),
    [
        (parse_show, b'{"title": "A", "\\ud800": 1}'),
        (parse_show, b'{"title": "A", "title": "B"}'),
        (parse_script_request, b'{"text": "abc def", "\\udc00x": 1}'),
        (
            parse_script_request,
            b'{"speakers": [{"name": "A", "voice": "ash", "voice": "echo"}], "text": "abc"}',
        ),
    ],
)
def test_shows_and_scripts_refuse_bad_keys_as_narrations_do(parse: Any, payload: bytes) -> None:
    with pytest.raises(RequestValidationError) as caught:
        parse(payload, LIMITS)
    assert caught.value.http_status == 400
    assert caught.value.field is not None
    json.dumps(caught.value.body())


def test_an_unknown_field_with_a_very_long_name_is_named_shortened() -> None:
    error = rejected(json.dumps({"text": "Hi there", "k" * 100_000: 1}).encode())

    assert error.code == "unknown_field"
    assert error.field == "k" * 40 + "..."
    assert len(error.message) < 1_000


def test_deeply_nested_junk_is_a_400_not_a_crash() -> None:
    depth = 100_000
    error = rejected(b'{"text": ' + b"[" * depth + b"]" * depth + b"}")

    assert_rejects(error, field=None, says="nested too deeply")


def test_nested_junk_in_a_field_is_a_400_naming_the_field() -> None:
    error = rejected(b'{"text": "Hi", "mode": {"a": [[[{"b": null}]]]}}')

    assert_rejects(error, field="mode", says="must be a string; got an object")


@pytest.mark.parametrize("as_string", [False, True])
def test_a_10_mb_body_fails_fast_with_413(as_string: bool) -> None:
    payload = json.dumps({"text": "word " * 2_000_000})
    started = time.perf_counter()

    error = rejected(payload if as_string else payload.encode())

    assert time.perf_counter() - started < 0.5
    assert isinstance(error, RequestTooLargeError)
    assert_rejects(
        error, status=413, field=None, says=[f"{len(payload):,} bytes", "at most 20,000 characters"]
    )


def test_a_10_mb_text_in_a_mapping_fails_fast_with_413() -> None:
    started = time.perf_counter()

    error = rejected({"text": "x" * 10_000_000})

    assert time.perf_counter() - started < 0.5
    assert_rejects(error, status=413, field="text", says="the limit is 20000")


def test_the_body_limit_admits_the_longest_text_even_when_every_character_is_escaped() -> None:
    # A CJK Extension B letter: 12 bytes each as "\ud840\udc00" (emoji alone would have nothing to say)
    text = "\U00020000" * LIMITS.max_text_characters
    payload = json.dumps(
        {"text": text, "instructions": "\u00e9" * 1000, "title": "\u00e9" * 200}, ensure_ascii=True
    ).encode()

    assert parse_request(payload, LIMITS).text == text


def test_the_body_limit_admits_the_longest_script_with_every_speaker_and_chapter_escaped() -> None:
    letter = "\U00020000"  # 12 bytes as "\ud840\udc00"
    names = [chr(0x20001 + n) * 40 for n in range(4)]
    speakers = [{"name": name, "voice": "shimmer", "description": letter * 300} for name in names]
    turns = [{"speaker": names[n % 4], "text": letter * 40} for n in range(1_000)]
    chapters = [{"title": letter * 200, "turn": n} for n in range(1_000)]
    payload = json.dumps(
        {
            "speakers": speakers,
            "script": turns,
            "chapters": chapters,
            "instructions": letter * 1000,
            "title": letter * 200,
        },
        ensure_ascii=True,
    ).encode()

    request = parse_request(payload, LIMITS)

    assert len(payload) <= LIMITS.max_body_bytes
    assert len(request.chapters or ()) == 1_000


# --- text -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (42, "a number"),
        (4.2, "a number"),
        (True, "a boolean"),
        (["Hi"], "a list"),
        ({"t": "Hi"}, "an object"),
    ],
)
def test_text_that_is_not_a_string_is_a_400(value: object, kind: str) -> None:
    assert_rejects(rejected(body(text=value)), field="text", says=f"text must be a string; got {kind}")


def test_null_text_is_a_400() -> None:
    assert_rejects(rejected(body(text=None)), field="text", says="must be a string; got null")


def test_missing_text_is_a_400() -> None:
    error = rejected(b'{"voice": "ash"}')

    assert_rejects(error, field="text", says="text is required")
    assert error.code == "missing_field"


@pytest.mark.parametrize("text", ["", "   ", "\n\t \r\n", "\u3000"])
def test_empty_or_whitespace_text_is_a_400(text: str) -> None:
    assert_rejects(rejected(body(text=text)), field="text", says="text is empty")


def test_text_is_trimmed_and_its_line_endings_become_newlines() -> None:
    assert parse(text="  One\r\ntwo\rthree\n\tfour  \n").text == "One\ntwo\nthree\n\tfour"


def test_text_is_nfc_normalized() -> None:
    assert parse(text="Cafe\u0301").text == "Caf\u00e9"


def test_text_over_the_limit_is_a_413_that_states_the_limit() -> None:
    error = rejected(body(text="a" * 20_001))

    assert isinstance(error, TextTooLongError)
    assert_rejects(error, status=413, field="text", says=["20001 characters", "the limit is 20000"])
    assert (error.length, error.limit) == (20_001, 20_000)


def test_text_exactly_at_the_limit_is_accepted_and_surrounding_whitespace_does_not_count() -> None:
    assert len(parse(text="  " + "a" * 20_000 + "\n").text) == 20_000


def test_the_text_limit_is_the_configured_one() -> None:
    limits = RequestLimits(max_text_characters=10)

    assert parse_request(body(text="0123456789"), limits).text == "0123456789"
    assert_rejects(
        rejected(body(text="0123456789X"), limits), status=413, field="text", says="the limit is 10"
    )


@pytest.mark.parametrize(
    ("character", "code"),
    [
        ("\x00", "U+0000"),
        ("\x07", "U+0007"),
        ("\x1b", "U+001B"),
        ("\x0b", "U+000B"),
        ("\x7f", "U+007F"),
        ("\x85", "U+0085"),
    ],
)
def test_control_characters_in_text_are_a_400_naming_the_character(character: str, code: str) -> None:
    error = rejected(body(text=f"Bell{character}here"))

    assert_rejects(error, field="text", says=[code, "at character 5", "only line breaks and tabs"])


def test_a_lone_surrogate_escaped_in_json_is_a_400() -> None:
    error = rejected(b'{"text": "broken \\ud800 pair"}')

    assert_rejects(error, field="text", says=["lone UTF-16 surrogate", "U+D800", "not valid Unicode"])


def test_a_lone_surrogate_in_a_mapping_is_a_400() -> None:
    assert_rejects(rejected({"text": "x\udfff"}), field="text", says="U+DFFF")


def test_a_surrogate_pair_escaped_in_json_is_one_valid_character() -> None:
    assert parse_request(b'{"text": "smile \\ud83d\\ude00"}', LIMITS).text == "smile \U0001f600"


@pytest.mark.parametrize(
    "text",
    [
        "zero\u200bwidth\u200dspace\ufeffand joiners",
        "family \U0001f468\u200d\U0001f469\u200d\U0001f467 and flags \U0001f1f2\U0001f1fd",
        "\u202bمرحبا بالعالم\u202c and \u05e9\u05dc\u05d5\u05dd \u200f",
        "你好，世界。こんにちは。안녕하세요.",
        "Tabs\tand\nnew lines",
    ],
)
def test_unusual_but_valid_unicode_text_is_accepted_unchanged(text: str) -> None:
    assert parse(text=text).text == text


# --- mode, target_minutes and style ------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "mode"), [("read", "read"), ("episode", "episode"), (" Episode ", "episode")]
)
def test_mode_matches_case_insensitively(given: str, mode: str) -> None:
    assert parse(mode=given).mode == mode


def test_an_unknown_mode_is_a_400_listing_the_modes() -> None:
    assert_rejects(rejected(body(mode="podcast")), field="mode", says=["'podcast'", "read, episode"])


def test_a_mode_that_is_not_a_string_is_a_400() -> None:
    assert_rejects(rejected(body(mode=1)), field="mode", says="must be a string; got a number")


@pytest.mark.parametrize("minutes", [0.5, 1, 2.25, 3])
def test_target_minutes_from_half_a_minute_to_three_are_accepted_in_episode_mode(minutes: float) -> None:
    request = parse(mode="episode", target_minutes=minutes)

    assert request.target_minutes == minutes
    assert isinstance(request.target_minutes, float)


@pytest.mark.parametrize("minutes", [0.49, 3.01, 0, -1, 1e308, 10**30])
def test_target_minutes_out_of_range_is_a_400_stating_the_range(minutes: float) -> None:
    error = rejected(body(mode="episode", target_minutes=minutes))

    assert_rejects(error, field="target_minutes", says="from 0.5 to 3")


@pytest.mark.parametrize(("value", "kind"), [("2", "a string"), (True, "a boolean"), ([2], "a list")])
def test_target_minutes_that_is_not_a_number_is_a_400(value: object, kind: str) -> None:
    assert_rejects(
        rejected(body(mode="episode", target_minutes=value)), field="target_minutes", says=f"got {kind}"
    )


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_numbers_in_json_are_rejected(literal: bytes) -> None:
    error = rejected(b'{"text": "Hi", "mode": "episode", "target_minutes": ' + literal + b"}")

    assert_rejects(error, field="target_minutes", says="NaN and Infinity are not allowed")


@pytest.mark.parametrize("mode_field", [{}, {"mode": "read"}])
def test_target_minutes_with_read_mode_is_a_400_saying_it_is_for_episodes(mode_field: dict[str, str]) -> None:
    error = rejected(body(target_minutes=2, **mode_field))

    assert_rejects(error, field="target_minutes", says="applies to episode and conversation modes only")


@pytest.mark.parametrize(
    ("mode", "style"), [("read", s) for s in READ_STYLES] + [("episode", s) for s in EPISODE_STYLES]
)
def test_every_documented_style_is_accepted_in_its_mode(mode: str, style: str) -> None:
    assert parse(mode=mode, style=style).style == style


def test_style_matches_case_insensitively() -> None:
    assert parse(style=" Lecture").style == "lecture"


@pytest.mark.parametrize(
    ("mode", "style", "allowed"),
    [
        ("read", "summary", "podcast, narration, lecture"),
        ("episode", "narration", "podcast, summary, lecture"),
    ],
)
def test_a_style_from_the_other_mode_is_a_400_listing_the_styles_of_this_mode(
    mode: str, style: str, allowed: str
) -> None:
    error = rejected(body(mode=mode, style=style))

    assert_rejects(error, field="style", says=[f"'{style}'", f"{mode} mode", allowed])


def test_an_unknown_style_is_a_400_listing_styles() -> None:
    assert_rejects(rejected(body(style="jazz")), field="style", says=["'jazz'", "podcast"])


# --- voice ------------------------------------------------------------------------------------


@pytest.mark.parametrize("voice", REALTIME_VOICES)
def test_every_realtime_voice_is_accepted(voice: str) -> None:
    assert parse(voice=voice).voice == voice


@pytest.mark.parametrize(
    ("given", "voice"), [("Marin", "marin"), (" CEDAR ", "cedar"), ("sHiMmEr", "shimmer")]
)
def test_voice_matches_case_insensitively(given: str, voice: str) -> None:
    assert parse(voice=given).voice == voice


@pytest.mark.parametrize("voice", ["fable", "onyx", "nova", "Nova"])
def test_a_text_to_speech_only_voice_is_a_400_listing_the_realtime_voices(voice: str) -> None:
    error = rejected(body(voice=voice))

    assert_rejects(error, field="voice", says=[f"'{voice}'", "text-to-speech", ALL_VOICES])


def test_an_unknown_voice_is_a_400_listing_the_realtime_voices() -> None:
    assert_rejects(
        rejected(body(voice="robot")), field="voice", says=["'robot'", "not a realtime voice", ALL_VOICES]
    )


def test_a_very_long_voice_is_not_echoed_in_full() -> None:
    error = rejected(body(voice="x" * 5000))

    assert_rejects(error, field="voice", says="not a realtime voice")
    assert len(error.message) < 300


def test_a_voice_that_is_not_a_string_is_a_400() -> None:
    assert_rejects(rejected(body(voice=["marin"])), field="voice", says="must be a string; got a list")


# --- language ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "tag", "name"),
    [
        ("en", "en", "English"),
        ("es-mx", "es-MX", "Spanish (Mexico)"),
        ("ZH-cn", "zh-CN", "Chinese (China)"),
        ("zh-hant-tw", "zh-Hant-TW", "Chinese (Traditional, Taiwan)"),
        ("pt_BR", "pt-BR", "Portuguese (Brazil)"),
        ("es-419", "es-419", "Spanish (Latin America)"),
        ("fil", "fil", "Filipino"),
        ("sr-Cyrl", "sr-Cyrl", "Serbian (Cyrillic)"),
        ("en-ZZ", "en-ZZ", "English (ZZ)"),
        ("qaa", "qaa", None),
    ],
)
def test_language_tags_are_normalized_and_named(given: str, tag: str, name: str | None) -> None:
    request = parse(language=given)

    assert request.language == tag
    assert display_name(tag) == name


@pytest.mark.parametrize(
    "language",
    [
        "english",
        "e",
        "en-",
        "en-USA",
        "en-US-x-private",
        "en-US-x-?",
        "zh-Hant-TW-extra",
        "12",
        "en US",
        "e\u0301n",
        "xx-QQ",
        "xx",
        "es-999",
        "x-private",
        "i-klingon",
        "de-1996",
    ],
)
def test_a_language_that_is_not_a_bcp47_tag_is_a_400_with_examples(language: str) -> None:
    assert_rejects(rejected(body(language=language)), field="language", says=["not a language tag", "es-MX"])


def test_a_language_that_is_not_a_string_is_a_400() -> None:
    assert_rejects(rejected(body(language=44)), field="language", says="must be a string")


def test_language_display_name_is_none_for_an_unknown_language() -> None:
    assert display_name("xx-US") is None
    assert display_name("ja-JP") == "Japanese (Japan)"


# --- instructions and title --------------------------------------------------------------


def test_instructions_are_trimmed_and_kept() -> None:
    assert (
        parse(instructions="  Slow down at the end.\r\nSmile.  ").instructions
        == "Slow down at the end.\nSmile."
    )


def test_instructions_at_1000_characters_are_accepted_and_over_is_a_400() -> None:
    assert parse(instructions="a" * 1000).instructions == "a" * 1000

    error = rejected(body(instructions="a" * 1001))

    assert_rejects(error, field="instructions", says=["1,001 characters", "the limit is 1,000"])
    assert not isinstance(error, TextTooLongError)


def test_control_characters_in_instructions_are_a_400() -> None:
    assert_rejects(rejected(body(instructions="Loud\x00")), field="instructions", says="U+0000")


def test_a_title_at_200_characters_is_accepted_and_over_is_a_400() -> None:
    assert parse(title="t" * 200).title == "t" * 200
    assert_rejects(rejected(body(title="t" * 201)), field="title", says="the limit is 200")


@pytest.mark.parametrize(("character", "code"), [("\n", "U+000A"), ("\t", "U+0009"), ("\x1f", "U+001F")])
def test_a_title_with_any_control_character_is_a_400(character: str, code: str) -> None:
    assert_rejects(
        rejected(body(title=f"Bad{character}title")), field="title", says=[code, "no control characters"]
    )


def test_a_title_that_is_not_a_string_is_a_400() -> None:
    assert_rejects(rejected(body(title=7)), field="title", says="must be a string; got a number")


# --- sas_expiry_minutes --------------------------------------------------------------------------


@pytest.mark.parametrize("minutes", [1, 60, 1440])
def test_sas_expiry_from_one_minute_to_the_maximum_is_accepted(minutes: int) -> None:
    assert parse(sas_expiry_minutes=minutes).sas_expiry_minutes == minutes


def test_an_integral_float_expiry_is_the_same_whole_number() -> None:
    request = parse_request(b'{"text": "Hi", "sas_expiry_minutes": 90.0}', LIMITS)

    assert request.sas_expiry_minutes == 90
    assert isinstance(request.sas_expiry_minutes, int)


@pytest.mark.parametrize("minutes", [0, -5, 1441, 10**40, 10**2000, 2.5])
def test_sas_expiry_out_of_range_or_fractional_is_a_400_stating_the_range(minutes: float) -> None:
    assert_rejects(
        rejected(body(sas_expiry_minutes=minutes)), field="sas_expiry_minutes", says="from 1 to 1440"
    )


def test_a_number_too_long_for_python_int_is_rejected_by_field_name() -> None:
    error = rejected(b'{"text": "Hi", "sas_expiry_minutes": ' + b"9" * 5000 + b"}")

    assert_rejects(error, field="sas_expiry_minutes", says=["from 1 to 1440", "far out of range"])


def test_the_sas_expiry_maximum_is_the_configured_one() -> None:
    limits = RequestLimits(max_sas_expiry_minutes=30)

    assert_rejects(
        rejected(body(sas_expiry_minutes=31), limits), field="sas_expiry_minutes", says="from 1 to 30"
    )


@pytest.mark.parametrize("flag", [True, False])
def test_a_boolean_expiry_is_not_a_number(flag: bool) -> None:
    assert_rejects(rejected(body(sas_expiry_minutes=flag)), field="sas_expiry_minutes", says="got a boolean")


def test_a_string_expiry_is_rejected_and_the_message_says_to_send_a_number() -> None:
    error = rejected(body(sas_expiry_minutes="60"))

    assert_rejects(error, field="sas_expiry_minutes", says=["JSON number, not a string", 'not "60"'])


def test_a_nan_expiry_is_rejected() -> None:
    error = rejected(b'{"text": "Hi", "sas_expiry_minutes": NaN}')

    assert_rejects(error, field="sas_expiry_minutes", says="whole number")


# --- unknown fields and error precedence ----------------------------------------------------


def test_an_unknown_field_is_a_400_naming_it_with_a_suggestion_and_the_allowed_fields() -> None:
    error = rejected(body(voise="marin"))

    assert_rejects(
        error,
        field="voise",
        says=["unknown field 'voise'", "did you mean 'voice'?", "allowed fields: text, mode"],
    )
    assert error.code == "unknown_field"


@pytest.mark.parametrize(
    ("typo", "meant"),
    [("Text", "text"), ("sas_expiry", "sas_expiry_minutes"), ("targetMinutes", "target_minutes")],
)
def test_common_typos_get_the_right_suggestion(typo: str, meant: str) -> None:
    assert f"did you mean '{meant}'?" in rejected(body(**{typo: 1})).message


def test_an_unrelated_unknown_field_gets_no_suggestion() -> None:
    error = rejected(body(zzzzzz=1))

    assert_rejects(error, field="zzzzzz", says="unknown field 'zzzzzz'")
    assert "did you mean" not in error.message


def test_an_unknown_field_is_reported_before_invalid_values() -> None:
    assert rejected(body(text=5, voice="nova", colour="red")).field == "colour"


def test_the_text_error_is_reported_before_errors_in_later_fields() -> None:
    assert rejected(body(text="", voice="nova", sas_expiry_minutes=0)).field == "text"


def test_the_error_body_carries_the_field() -> None:
    assert rejected(body(voice="nova")).to_dict() == {
        "code": "invalid_request",
        "message": "voice 'nova' is a text-to-speech voice that the Realtime API does not offer; "
        f"choose one of: {ALL_VOICES}",
        "field": "voice",
    }


def test_messages_never_repeat_the_text() -> None:
    secret = "confidential quarterly numbers"

    for payload in (body(text=secret + "\x07"), body(text=secret * 1000)):
        assert secret not in rejected(payload, RequestLimits(max_text_characters=100)).message


# --- fingerprint ----------------------------------------------------------------------------


def test_the_fingerprint_is_a_pinned_sha256_hex_digest() -> None:
    fingerprint = parse().fingerprint()

    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint)
    assert fingerprint == "3ca02ae7d8dde1bd2a4c6039aaf1873a3268a745ff498d7bb042008342ee41ba"


def test_equivalent_bodies_have_the_same_fingerprint() -> None:
    plain = parse_request(b'{"text": "Hello there.", "voice": "cedar", "language": "es-MX"}', LIMITS)
    messy = parse_request(
        b'{"language": "es_mx", "voice": "Cedar", "text": "  Hello there.\\r\\n", '
        b'"style": "podcast", "mode": "read"}',
        LIMITS,
    )

    assert messy.fingerprint() == plain.fingerprint()


def test_title_and_sas_expiry_do_not_change_the_fingerprint() -> None:
    assert parse(title="A title", sas_expiry_minutes=5).fingerprint() == parse().fingerprint()


@pytest.mark.parametrize(
    "change",
    [
        {"text": "Hello there!"},
        {"mode": "episode"},
        {"style": "lecture"},
        {"voice": "ash"},
        {"language": "en"},
        {"instructions": "Slowly."},
    ],
)
def test_every_field_that_shapes_the_audio_changes_the_fingerprint(change: dict[str, str]) -> None:
    assert parse(**change).fingerprint() != parse().fingerprint()


def test_target_minutes_changes_the_fingerprint_of_an_episode() -> None:
    assert parse(mode="episode", target_minutes=1).fingerprint() != parse(mode="episode").fingerprint()


# --- download_name -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "name"),
    [
        (None, "narration.wav"),
        ("My Episode!", "My Episode!.wav"),
        ("Café  au   lait", "Cafe au lait.wav"),
        ("../../etc/passwd", "etc passwd.wav"),
        ('a<b>c:"d"|e?*f\\g', "a b c d e f g.wav"),
        ("播客节目", "narration.wav"),
        ("CON", "narration.wav"),
        ("nul.txt", "narration.wav"),
        ("...", "narration.wav"),
        ("Q3 (final), v2.1", "Q3 (final), v2.1.wav"),
    ],
)
def test_download_name_is_a_safe_file_name_from_the_title(title: str | None, name: str) -> None:
    assert parse(title=title).download_name() == name


def test_a_long_title_gives_a_name_of_at_most_100_characters_before_the_suffix() -> None:
    name = parse(title="word " * 40).download_name(".txt")

    assert name.endswith("word.txt")
    assert len(name) <= 104
