"""Benchmarks: ``python -m benchmarks.longform`` (see the README's "Benchmarks" section)."""
