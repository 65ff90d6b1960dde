"""The readahead byte budget: how many bytes read ahead sit in memory not read
yet.  While that is more than the budget, a readahead pauses in
:meth:`ReadaheadBudget.wait` (a paused series stream holds the server through
TCP flow control), so a huge series cannot push the memory cache out; if
nobody reads for :data:`READAHEAD_PATIENCE_S`, it gives up (:class:`Abandoned`)."""

from __future__ import annotations

import trio

from ..errors import TrolleyError

READAHEAD_PATIENCE_S = 30.0
MIN_BUDGET = 16 * 2**20


class Abandoned(TrolleyError):
    """A readahead stopped because its data was not being read."""


def budget_for(memory_bytes: int) -> int:
    """Half the memory cache, at least 16 MiB."""
    return max(memory_bytes // 2, MIN_BUDGET)


class ReadaheadBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._unread: dict[str, int] = {}  # read ahead, in memory, not read yet
        self._unread_bytes = 0
        self._changed = trio.Condition()
        self._paused = 0  # readaheads waiting for readers right now
        self._pause_event = trio.Event()  # set while one is

    @property
    def unread_bytes(self) -> int:
        return self._unread_bytes

    def arrived(self, uid: str, size: int) -> None:
        """An object was read ahead into memory."""
        self._unread_bytes += size - self._unread.get(uid, 0)
        self._unread[uid] = size

    def consume(self, uid: str) -> bool:
        """``uid`` no longer waits to be read (read, or evicted); whether it did."""
        size = self._unread.pop(uid, None)
        if size is None:
            return False
        self._unread_bytes -= size
        return True

    async def read(self, uid: str) -> None:
        """A reader got ``uid``: consume it and wake paused readaheads."""
        self.consume(uid)
        if self._changed.statistics().tasks_waiting:
            async with self._changed:
                self._changed.notify_all()

    async def wait(self) -> None:
        """Return once the unread bytes are within the budget; raise
        :class:`Abandoned` if that takes longer than the patience."""
        if self._unread_bytes <= self.limit:
            return
        self._paused += 1
        self._pause_event.set()
        try:
            async with self._changed:
                with trio.move_on_after(READAHEAD_PATIENCE_S) as scope:
                    while self._unread_bytes > self.limit:
                        await self._changed.wait()
        finally:
            self._paused -= 1
            if not self._paused:
                self._pause_event = trio.Event()
        if scope.cancelled_caught:
            raise Abandoned(f"data read ahead unread for {READAHEAD_PATIENCE_S:.0f} s")

    async def until_paused(self) -> None:
        """Return once a readahead is paused at the budget (at once if one is)."""
        await self._pause_event.wait()

    def stats(self) -> dict[str, object]:
        return {"unread_bytes": self._unread_bytes, "budget": self.limit}
