"""The fidelity measure, judged by an independent word error rate implementation (jiwer)."""

from __future__ import annotations

import random

import jiwer
import pytest

from podcast.engine.fidelity import similarity, words

VOCABULARY = ["the", "cat", "sat", "on", "mat", "it's", "a", "dog", "ran", "far", "away", "and", "back"]


def _edited(reference: list[str], rng: random.Random) -> list[str]:
    """``reference`` with random substitutions, insertions and deletions."""
    out = list(reference)
    for _ in range(rng.randint(0, max(1, len(reference)))):
        operation = rng.choice(("substitute", "insert", "delete"))
        position = rng.randint(0, len(out))
        if operation == "insert" or not out:
            out.insert(position, rng.choice(VOCABULARY))
        elif operation == "delete":
            del out[min(position, len(out) - 1)]
        else:
            out[min(position, len(out) - 1)] = rng.choice(VOCABULARY)
    return out


def _written(word_list: list[str], rng: random.Random) -> str:
    """The words as a person might write them: some capitals, punctuation, typographic apostrophes."""
    written = []
    for word in word_list:
        if rng.random() < 0.2:
            word = word.capitalize()
        if rng.random() < 0.2:
            word = word.replace("'", "’")
        if rng.random() < 0.2:
            word += rng.choice((",", ".", "!", "?", ";"))
        written.append(word)
    return " ".join(written)


def test_similarity_is_one_minus_jiwers_word_error_rate_floored_at_zero() -> None:
    rng = random.Random(20261201)
    for _ in range(500):
        reference = [rng.choice(VOCABULARY) for _ in range(rng.randint(1, 30))]
        hypothesis = _edited(reference, rng)
        source, transcript = _written(reference, rng), _written(hypothesis, rng)
        assert words(source) == reference
        assert words(transcript) == hypothesis
        expected = max(0.0, 1.0 - jiwer.wer(" ".join(reference), " ".join(hypothesis)))
        assert similarity(source, transcript) == pytest.approx(expected), (source, transcript)


def test_similarity_of_empty_texts() -> None:
    assert similarity("", "") == 1.0
    assert similarity("...", "") == 1.0
    assert similarity("", "words here") == 0.0
    assert similarity("some words", "") == 0.0
    assert similarity("some words", "") == max(0.0, 1.0 - jiwer.wer("some words", ""))
