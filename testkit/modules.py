"""What a cold start may load: the narrating stack, and a filter for modules under it.

Indexing the functions, the health and OpenAPI functions and the job-status probe must load
none of it (``tests/unit/test_function_app.py``, ``tests/integration/test_cold_start.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
NARRATING_STACK: Final = (
    "openai",
    "websockets",
    "tenacity",
    "rapidfuzz",
    "numpy",
    "scipy",
    "threadpoolctl",
    "lameenc",
    "lxml",
    "podcast.engine.realtime",
    "podcast.engine.receive",
    "podcast.engine.responses",
    "podcast.engine.longform",
    "podcast.audio.loudness",
    "podcast.audio.mp3",
    "podcast.services.narrations",
)
"""What narrating (the Realtime connection, levelling, MP3) or a feed needs, and nothing else."""


def under(modules: Iterable[str], roots: tuple[str, ...]) -> list[str]:
    """The ``modules`` that are one of ``roots`` or inside one, sorted."""
    return sorted(m for m in modules if any(m == r or m.startswith(r + ".") for r in roots))
