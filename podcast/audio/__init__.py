"""Audio processing for podcast-ready output: MP3 encoding (:mod:`.mp3`), loudness
(:mod:`.loudness`), captions (:mod:`.captions`) and ID3 tags with chapters (:mod:`.id3`).

Everything here works on the PCM the Realtime API sends (signed 16-bit little-endian,
24,000 samples a second, one channel) and knows nothing of Storage, HTTP or Azure OpenAI;
:mod:`podcast.engine` and :mod:`podcast.storage` use it.
"""

from __future__ import annotations

import threading
from typing import Final

SAMPLE_RATE: Final[int] = 24_000
"""Samples per second of the Realtime API's ``audio/pcm`` (:data:`podcast.engine.audio.SAMPLE_RATE`)."""
MP3_BITRATES_KBPS: Final[tuple[int, ...]] = (32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
"""The MPEG-2 Layer III bitrates (kbit/s) offered: below 32 speech is muffled at 24 kHz."""
DEFAULT_BITRATE_KBPS: Final = 64
"""Speech, mono: transparent enough for a voice, 0.48 MB a minute (a sixth of the WAV)."""
ANALYSIS_LOCK: Final = threading.Lock()
"""Held while one segment's PCM is timed (caption timing: a bounded block of frames as floats
at a time, then a few numbers per frame and per word), so one segment at a time per process
is timed however many segments are narrated at once. Leveling does not take it: it works on
the PCM16 buffer in place, 8,000 samples at a time, and keeps only sums of squares per 100 ms
part (:mod:`podcast.audio.loudness`). Neither holds floats for a whole segment: their memory
does not grow with the segment, nor with the narration."""
