"""Writes one MP3 blob from PCM pieces, encoded while the narration streams, in constant memory.

:class:`Mp3BlockWriter` has the interface of :class:`~podcast.storage.blobs.WavBlockWriter`
(``stage(index, pcm)`` in any order, then ``commit``), so the narration engine does not know
the format. One encoder (:class:`~podcast.audio.mp3.Mp3Stream`) takes every piece in index
order, so the seams are inside one MP3 stream; a piece that arrives before its
predecessors, or while the encoder is busy with them, waits in a temporary file (not in
memory) until its turn, and its :meth:`~Mp3BlockWriter.stage` returns once it is written
there (unless the encoder came free meanwhile: then that call feeds it, as the call in turn
does): a segment's audio is let go while the encoder catches up, and the narration streams on
(with the pieces waiting for the encoder in memory, their segments' slots held, peak RSS at 60
minutes was 29.4 to 31.1 MB above 5 minutes, against 18.8 to 19.5 now: ``python -m benchmarks.longform``,
60x, concurrency 4, where one encoder is what limits the pace). Encoded frames are staged as blocks
of about :data:`BLOCK_BYTES`; :meth:`Mp3BlockWriter.commit` encodes what still waits, flushes
the encoder, then stages the head block (ID3 tag, when given, and the Info/LAME frame, which
needs the final frame count) and commits it first. Until then nothing is visible under the
blob name. Memory: one piece being encoded, one block of MP3, whatever size the file is.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import IO, Final

from podcast.audio.mp3 import MP3_CONTENT_TYPE, Mp3Stream
from podcast.storage.blobs import BlobStore

__all__ = ["BLOCK_BYTES", "Mp3BlockWriter"]

BLOCK_BYTES: Final = 1 << 20
"""MP3 bytes per staged block (about 2 minutes at 64 kbit/s)."""
_READ_BYTES: Final = 1 << 20
"""PCM read back from the temporary file, and fed to the encoder, at a time."""


class Mp3BlockWriter:
    """One MP3 blob from PCM16 pieces staged by index (see the module docstring).

    Each index may be staged once (an empty piece still counts: it lets later pieces be
    encoded). Safe for concurrent :meth:`stage` calls from tasks of one event loop: the call
    whose piece is next in turn encodes it and then whatever waits in the file after it; any
    other call only writes its piece to the file. The encoder runs in a worker thread so the
    loop keeps serving the other sessions. Once encoding or staging a block has failed, the
    writer refuses further pieces and the commit (the stream has a hole).
    """

    def __init__(self, store: BlobStore, blob_name: str, *, bitrate_kbps: int) -> None:
        self.blob_name = blob_name
        self._staging = store.staging(blob_name)
        self._stream = Mp3Stream(bitrate_kbps)
        self._attempt = uuid.uuid4().hex[:8]
        """Block ids of this writer differ from any earlier attempt's at the same blob name."""
        self._next = 0
        self._staged: set[int] = set()
        self._waiting: dict[int, tuple[int, int]] = {}
        """index -> (offset, length) in the temporary file, for pieces written there."""
        self._spool: IO[bytes] | None = None
        self._spool_end = 0
        """Where the next piece goes in the file (reserved before it is written)."""
        self._spool_lock = threading.Lock()
        """One seek-and-write or seek-and-read on the file at a time (worker threads)."""
        self._buffer = bytearray()
        self._blocks: list[str] = []
        self._lock = asyncio.Lock()
        """Held by the one task feeding the encoder (a stage in turn, or the commit)."""
        self._broken = False
        self.pcm_bytes = 0
        """Bytes of PCM staged so far."""

    def _block_id(self, kind: str, number: int) -> str:
        return f"{self._attempt}-{kind}-{number:08d}"  # ids of one blob must have one length

    async def stage(self, index: int, pcm: bytes | bytearray) -> None:
        """Take ``pcm`` (whole PCM16 samples) as piece ``index``: encode it, and the pieces
        waiting after it, when it is next and the encoder is free; otherwise write it to the
        file to wait for its turn. Raises :class:`ValueError` for a bad or repeated index,
        and :class:`RuntimeError` once the writer is broken (see the class)."""
        if index < 0:
            raise ValueError("piece index must not be negative")
        if len(pcm) % 2:
            raise ValueError("PCM16 pieces must have an even number of bytes")
        self._check_usable()
        if index in self._staged:
            raise ValueError(f"piece {index} was already staged")
        self._staged.add(index)
        self.pcm_bytes += len(pcm)
        if index == self._next and not self._lock.locked():
            async with self._lock:
                with self._breaks_on_failure():
                    await self._encode(pcm)
                    self._next += 1
                    await self._encode_waiting(until=None)
            return
        with self._breaks_on_failure():
            self._waiting[index] = await self._spool_piece(pcm)
        # The task feeding the encoder takes this piece when it gets there; if none is (it
        # stopped, before this piece was in the file, at the turn of this one), this call does.
        if self._next in self._waiting and not self._lock.locked():
            async with self._lock:
                with self._breaks_on_failure():
                    await self._encode_waiting(until=None)

    @contextlib.contextmanager
    def _breaks_on_failure(self) -> Iterator[None]:
        """Mark the writer broken when the block fails: a piece half encoded, or not in the
        file, would leave a hole in the stream."""
        try:
            yield
        except BaseException:
            self._broken = True
            raise

    def _check_usable(self) -> None:
        if self._broken:
            raise RuntimeError("the MP3 stream failed earlier; it cannot take more or be committed")

    async def commit(
        self,
        *,
        download_name: str,
        metadata: Mapping[str, str],
        id3: bytes = b"",
        disposition: str | None = None,
    ) -> int:
        """Make the MP3 visible: ``id3`` (a whole ID3v2 tag, if any) and the Info frame, then
        the audio (named as :meth:`~podcast.storage.blobs.BlockStaging.commit` says). Pieces
        never staged are skipped (the others keep their order). Returns the number of PCM
        bytes encoded."""
        async with self._lock:
            self._check_usable()
            with self._breaks_on_failure():
                await self._encode_waiting(until=max(self._staged, default=-1))
            self._buffer += await asyncio.to_thread(self._stream.flush)
            await self._stage_buffer()
            head_id = self._block_id("hdr", 0)
            await self._staging.stage(head_id, id3 + self._stream.info_frame())
            await self._staging.commit(
                [head_id, *self._blocks],
                content_type=MP3_CONTENT_TYPE,
                download_name=download_name,
                metadata=metadata,
                disposition=disposition,
            )
            self._close_spool()
            return self._stream.samples * 2

    @property
    def mp3_bytes(self) -> int:
        """Bytes of MP3 audio frames encoded so far (without the head block)."""
        return self._stream.bytes_out

    async def _encode_waiting(self, *, until: int | None) -> None:
        """Encode the waiting pieces that are next in turn; with ``until``, every piece up
        to that index, skipping the ones never staged."""
        while True:
            if self._next in self._waiting:
                offset, length = self._waiting.pop(self._next)
                for start in range(offset, offset + length, _READ_BYTES):
                    chunk = await asyncio.to_thread(
                        self._spool_read, start, min(_READ_BYTES, offset + length - start)
                    )
                    await self._encode(chunk)
                self._next += 1
            elif until is not None and self._next <= until:
                self._next += 1
            else:
                return

    async def _encode(self, pcm: bytes | bytearray) -> None:
        for start in range(0, len(pcm), _READ_BYTES):
            self._buffer += await asyncio.to_thread(self._stream.encode, pcm[start : start + _READ_BYTES])
            if len(self._buffer) >= BLOCK_BYTES:
                await self._stage_buffer()

    async def _stage_buffer(self) -> None:
        if not self._buffer:
            return
        block_id = self._block_id("mp3", len(self._blocks))
        await self._staging.stage(block_id, self._buffer)
        self._blocks.append(block_id)
        self._buffer = bytearray()

    async def _spool_piece(self, pcm: bytes | bytearray) -> tuple[int, int]:
        """Write ``pcm`` to the temporary file at a place of its own: (offset, length)."""
        offset = self._spool_end
        self._spool_end += len(pcm)
        if pcm:
            await asyncio.to_thread(self._spool_write, offset, pcm)
        return offset, len(pcm)

    def _spool_write(self, offset: int, pcm: bytes | bytearray) -> None:
        with self._spool_lock:
            if self._spool is None:
                self._spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed by commit or the finalizer
            self._spool.seek(offset)
            self._spool.write(pcm)

    def _spool_read(self, offset: int, length: int) -> bytes:
        with self._spool_lock:
            assert self._spool is not None
            self._spool.seek(offset)
            return self._spool.read(length)

    def _close_spool(self) -> None:
        with self._spool_lock:
            if self._spool is not None:
                self._spool.close()
                self._spool = None

    def __del__(self) -> None:
        self._close_spool()
