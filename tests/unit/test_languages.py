"""BCP 47 language tags: normalization, rejection and English names (podcast.languages)."""

from __future__ import annotations

import pytest

from podcast.languages import display_name, normalize_language_tag


@pytest.mark.parametrize(
    ("given", "tag"),
    [
        ("en", "en"),
        ("EN", "en"),
        ("es_mx", "es-MX"),
        ("es-mx", "es-MX"),
        ("zh_hant_tw", "zh-Hant-TW"),
        ("ZH-HANT-TW", "zh-Hant-TW"),
        ("pt_BR", "pt-BR"),
        ("es-419", "es-419"),
        ("sr-cyrl", "sr-Cyrl"),
        ("fil", "fil"),
        ("yue-HK", "yue-HK"),
        ("en-ZZ", "en-ZZ"),
        ("qaa", "qaa"),
        ("iw", "iw"),  # deprecated codes are re-cased, not replaced
        ("tl", "tl"),
        ("en-UK", "en-GB"),  # not a registered region, but what people write: accepted as before
        ("en_uk", "en-GB"),
    ],
)
def test_tags_are_normalized(given: str, tag: str) -> None:
    assert normalize_language_tag(given) == tag


@pytest.mark.parametrize(
    "value",
    [
        "",
        "e",
        "english",
        "xx",
        "xx-QQ",
        "xx-US",
        "en-QQQQ",
        "es-999",
        "en-",
        "-en",
        "en--US",
        "en-USA",
        "zh-cmn",
        "en-US-x-private",
        "en-US-x-?",
        "x-private",
        "i-klingon",
        "de-1996",
        "zh-Hant-TW-extra",
        "en-a-bbb",
        "12",
        "en US",
        " en",
        "e\u0301n",
        "ẹn",
    ],
)
def test_anything_but_a_registered_language_script_region_tag_is_rejected(value: str) -> None:
    assert normalize_language_tag(value) is None


@pytest.mark.parametrize(
    ("tag", "name"),
    [
        ("en", "English"),
        ("es-MX", "Spanish (Mexico)"),
        ("zh-CN", "Chinese (China)"),
        ("zh-Hant-TW", "Chinese (Traditional, Taiwan)"),
        ("pt-BR", "Portuguese (Brazil)"),
        ("es-419", "Spanish (Latin America)"),
        ("sr-Cyrl", "Serbian (Cyrillic)"),
        ("fil", "Filipino"),
        ("de", "German"),
        ("ja-JP", "Japanese (Japan)"),
        ("en-ZZ", "English (ZZ)"),
        ("en-Qaaa", "English (Qaaa)"),
        ("qaa", None),
        ("und", None),
        ("xx-US", None),
        ("english", None),
    ],
)
def test_display_names_are_english(tag: str, name: str | None) -> None:
    assert display_name(tag) == name
