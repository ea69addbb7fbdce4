"""BCP 47 language tags: normalization and English display names, from :mod:`langcodes`.

A narration may be pinned to a language given as a tag of the shape ``language[-script]
[-region]`` (``en``, ``es-MX``, ``zh-Hant-TW``, ``es-419``). Tags are checked against the
IANA language subtag registry that ``langcodes`` ships, and their English names come from
CLDR (the ``language_data`` package).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["display_name", "normalize_language_tag"]

_SHAPE: Final = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z]{4})?(?:[-_](?:[A-Za-z]{2}|[0-9]{3}))?")
"""``language[-script][-region]``, with ``-`` or ``_``: extended language subtags, variants,
extensions and private use (``en-US-x-private``) are not accepted."""
_UNKNOWN: Final = "Unknown "
"""How CLDR names a subtag it has no name for (``Unknown Region [QM]``, ``Unknown language``)."""


def normalize_language_tag(value: str) -> str | None:
    """``es_mx`` → ``es-MX``, ``zh_hant_tw`` → ``zh-Hant-TW``, ``EN`` → ``en``.

    ``None`` unless ``value`` is a valid tag of the shape ``language[-script][-region]``
    whose subtags are all registered (``xx-QQ``, ``english``, ``es-999`` are not). Codes are
    kept as given, only re-cased: deprecated codes such as ``iw`` are not replaced. The one
    exception is the region ``UK``, which is not a registered region but what many people
    write for the United Kingdom (and was accepted before the registry was checked): it
    becomes ``GB`` (``en-UK`` → ``en-GB``).
    """
    if not _SHAPE.fullmatch(value):
        return None
    subtags = value.replace("_", "-").split("-")
    if len(subtags) > 1 and subtags[-1].upper() == "UK":
        subtags[-1] = "GB"
    tag = "-".join(subtags)
    # Imported on the first tag: its registry takes longer to load than the rest of the app,
    # and a cold start that answers health, OpenAPI or a status poll never needs it.
    import langcodes

    if not langcodes.tag_is_valid(tag):
        return None
    language = langcodes.Language.get(tag, normalize=False)
    if not language.is_valid():
        return None
    return language.to_tag()


def display_name(tag: str) -> str | None:
    """English name of a normalized tag: ``es-MX`` → ``Spanish (Mexico)``,
    ``zh-Hant-TW`` → ``Chinese (Traditional, Taiwan)``, ``en`` → ``English``.

    ``None`` when ``tag`` is not a valid tag or its language has no name (``qaa``, ``und``:
    instructions then name the tag alone). Scripts and regions without a name are shown as
    their codes (``en-ZZ`` → ``English (ZZ)``).
    """
    normalized = normalize_language_tag(tag)
    if normalized is None:
        return None
    import langcodes  # loaded by normalize_language_tag above

    language = langcodes.Language.get(normalized, normalize=False)
    name = language.language_name("en")
    if not language.language or name.startswith(_UNKNOWN):
        return None
    details = []
    if language.script:
        script = language.script_name("en")
        details.append(language.script if script.startswith(_UNKNOWN) else script)
    if language.territory:
        region = language.territory_name("en")
        details.append(language.territory if region.startswith(_UNKNOWN) else region)
    return f"{name} ({', '.join(details)})" if details else name
