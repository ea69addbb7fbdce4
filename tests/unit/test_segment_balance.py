"""Balanced segments keep parallel rounds even: the slowest segment of a round sets its time."""

from __future__ import annotations

import heapq
import statistics

import pytest

from benchmarks.texts import prose_for_minutes
from podcast.engine.segments import DEFAULT_MAX_WORDS, split_text


def makespan(sizes: list[int], slots: int) -> float:
    """When the last segment ends, each started in order on the first free of ``slots``."""
    ends = [0.0] * slots
    for size in sizes:
        heapq.heappush(ends, heapq.heappop(ends) + size)
    return max(ends)


@pytest.mark.parametrize(("concurrency", "mean_limit", "worst_limit"), [(4, 1.05, 1.08), (8, 1.07, 1.12)])
def test_parallel_rounds_end_close_to_the_ideal(
    concurrency: int, mean_limit: float, worst_limit: float
) -> None:
    ratios = []
    for minutes in (10, 20, 30, 60):
        for seed in range(3):
            segments = split_text(
                prose_for_minutes(minutes, seed=seed), DEFAULT_MAX_WORDS, parallelism=concurrency
            )
            assert len(segments) % concurrency == 0
            sizes = [len(segment.text) for segment in segments]
            ratios.append(makespan(sizes, concurrency) / (sum(sizes) / concurrency))
    assert statistics.mean(ratios) <= mean_limit
    assert max(ratios) <= worst_limit
