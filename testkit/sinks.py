"""A piece sink in memory, for tests and benchmarks that narrate without Storage."""

from __future__ import annotations


class MemoryPieces:
    """A :class:`~podcast.engine.longform.PieceSink` that keeps the pieces in memory, by index."""

    def __init__(self) -> None:
        self.pieces: dict[int, bytes] = {}

    async def stage(self, index: int, pcm: bytes | bytearray) -> None:
        self.pieces[index] = bytes(pcm)

    def pcm(self) -> bytes:
        """Every piece, in index order."""
        return b"".join(self.pieces[i] for i in sorted(self.pieces))
