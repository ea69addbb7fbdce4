"""The Realtime WebSocket connection, read into one buffer of its own.

asyncio's socket transport hands a plain :class:`asyncio.Protocol` (as websockets'
:class:`~websockets.asyncio.client.ClientConnection` is) a new ``bytes`` for every read,
made at the read's full size of 256 KiB and then cut to what arrived. An allocation that
large is a fresh mapping (``MALLOC_MMAP_THRESHOLD_``): every read of a narration's stream
mapped, faulted in, remapped and unmapped memory, which cost about as much CPU as reading
the audio itself. :class:`BufferedClientConnection` is the same connection as an
:class:`asyncio.BufferedProtocol`: the transport reads into a buffer the connection made
once, and websockets' parser copies each read out of it, as it copies every read anyway.
Over TLS the transport does the same with the decrypted bytes.
"""

from __future__ import annotations

import asyncio
from typing import Final

from websockets.asyncio.client import ClientConnection

__all__ = ["READ_BUFFER_BYTES", "BufferedClientConnection"]

READ_BUFFER_BYTES: Final = 256 * 1024
"""The most one read takes (asyncio's own read size for sockets)."""


class BufferedClientConnection(ClientConnection, asyncio.BufferedProtocol):
    """websockets' client connection, reading into a buffer it keeps (see the module
    docstring); pass it as ``create_connection`` to ``websockets.asyncio.client.connect``
    (the SDK's ``websocket_connection_options``). Everything else is websockets' own."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._read_buffer = memoryview(bytearray(READ_BUFFER_BYTES))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        # websockets' reader appends what it is given to its own buffer before parsing,
        # and keeps no reference to it: the view is free again when this returns.
        self.data_received(self._read_buffer[:nbytes])  # type: ignore[arg-type]
