"""The voices the GA Realtime API offers, and their validation.

`fable`, `onyx` and `nova` are text-to-speech voices only: the Realtime API rejects
them, so we do too, with a message that lists the voices that exist.
"""

from __future__ import annotations

from typing import Final

REALTIME_VOICES: Final[tuple[str, ...]] = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
"""Every voice `gpt-realtime-mini` can speak with (``marin`` and ``cedar`` sound best)."""

DEFAULT_VOICE: Final[str] = "marin"

TTS_ONLY_VOICES: Final[frozenset[str]] = frozenset({"fable", "onyx", "nova"})


def voice_error(voice: str) -> str | None:
    """Return why ``voice`` is not a realtime voice, or ``None`` when it is one.

    The message never repeats the value verbatim beyond a short prefix, so a caller's
    odd input cannot flood logs.
    """
    if voice in REALTIME_VOICES:
        return None
    valid = ", ".join(REALTIME_VOICES)
    shown = voice[:40]
    if voice.lower() in TTS_ONLY_VOICES:
        return (
            f"'{shown}' is a text-to-speech voice that the Realtime API does not offer; "
            f"choose one of: {valid}"
        )
    return f"'{shown}' is not a realtime voice; choose one of: {valid}"
