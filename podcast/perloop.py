"""One object per running event loop: the process-wide clients of an async app.

Azure Functions wants one static client per process; aio clients belong to the event loop
that made them, and tests start a new loop for every test. :class:`PerLoop` keeps one object
for the running loop (and an optional key, such as the settings it was made from), makes a
new one when either changes, and closes it only from the loop that made it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    """Holds one ``T`` for the running event loop; ``close`` releases one."""

    def __init__(self, close: Callable[[T], Awaitable[None]]) -> None:
        self._close = close
        self._value: T | None = None
        self._key: tuple[asyncio.AbstractEventLoop, Hashable] | None = None

    def get(self, make: Callable[[], T], key: Hashable = None) -> T:
        """The object for the running loop and ``key``, made by ``make()`` when there is none.

        An object of another loop or key is dropped without closing: its connections
        belong to a loop that may be gone. Raises ``RuntimeError`` outside a running loop.
        """
        wanted = (asyncio.get_running_loop(), key)
        if self._value is None or self._key != wanted:
            self._value = make()
            self._key = wanted
        return self._value

    async def close(self) -> None:
        """Forget the object, closing it when the running loop made it."""
        value, key = self._value, self._key
        self.forget()
        if value is not None and key is not None and key[0] is asyncio.get_running_loop():
            await self._close(value)

    def forget(self) -> None:
        """Forget the object without closing it (for tests between event loops)."""
        self._value = None
        self._key = None
