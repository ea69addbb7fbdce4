"""Memory of a segment's analysis (leveling and caption timing) does not grow with the
segment: traced with tracemalloc (Python objects and numpy buffers alike), a segment of two
minutes needs hardly more than one of 30 seconds, and less than the segment as floats.

Whole-segment float copies (8 bytes a sample, 23 MB for two minutes) held by two finishing
threads at once made a 60-minute narration's peak RSS 40 to 50 MB above a 5-minute one's: its
segments are the longest (the 5-minute text is cut shorter to use the concurrency)."""

from __future__ import annotations

import functools
import tracemalloc
from collections.abc import Callable

import numpy as np

from podcast.audio.captions import time_words
from podcast.audio.loudness import level_in_place

RATE = 24_000


def traced_peak(work: Callable[[], object]) -> int:
    """The most memory ``work`` held at once, in bytes."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def syllables(seconds: float, seed: int = 0) -> bytearray:
    """A tone in bursts at a few levels 0.6 s apart (speech's rhythm, with pauses; peaks the
    limiter leaves alone)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    levels = 10 ** (rng.uniform(-3, 0, int(seconds * 1.7) + 2) / 20)
    envelope = np.clip(np.sin(2 * np.pi * 1.7 * t), 0, None) ** 2 * levels[(t * 1.7).astype(int)]
    return bytearray(np.round(0.3 * np.sin(2 * np.pi * 190 * t) * envelope * 32767).astype("<i2"))


def test_leveling_memory_does_not_grow_with_the_segment() -> None:
    short, long = syllables(30.0, 1), syllables(120.0, 1)
    short_peak = traced_peak(functools.partial(level_in_place, short))
    long_peak = traced_peak(functools.partial(level_in_place, long))

    # Four times the audio: less than its PCM more (no float, no index per sample).
    assert long_peak <= short_peak + len(long) - len(short), (short_peak, long_peak)
    assert long_peak < 4 * len(long), long_peak  # less than the segment as floats alone


def test_caption_timing_memory_does_not_grow_with_the_segment() -> None:
    memory = {}
    for seconds in (30, 120):
        pcm = bytes(syllables(seconds, 2))
        words = round(seconds * 1.7)
        text = " ".join(f"word{i}," if i % 9 == 8 else f"word{i}" for i in range(words))
        memory[seconds] = traced_peak(functools.partial(time_words, pcm, text))

    assert memory[120] <= memory[30] + 2_000_000, memory
    assert memory[120] < 4 * len(syllables(120, 2)), memory  # less than the segment as floats
