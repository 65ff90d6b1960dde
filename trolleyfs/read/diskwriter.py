"""The disk-cache writer: objects are queued on a bounded channel and written
by one background task, so a fetch never waits for the disk (unless the queue
is full).  What has queued up while a write ran is written by the next one
in one worker thread (a series arriving costs a handful of thread hand-offs,
not one per object).  At unmount, :meth:`DiskWriter.drain` lets the queue
empty, bounded in time."""

from __future__ import annotations

import contextlib

import trio

from .disk import DiskCache

QUEUE_LENGTH = 64
BATCH_BYTES = 64 << 20  # written by one thread hand-off at most


class DiskWriter:
    def __init__(self, disk: DiskCache, limiter: trio.CapacityLimiter, nursery: trio.Nursery) -> None:
        self._disk = disk
        self._limiter = limiter  # shared with disk reads: bounds the threads touching the disk
        self._send, receive = trio.open_memory_channel[tuple[str, bytes]](QUEUE_LENGTH)
        self._done = trio.Event()
        nursery.start_soon(self._run, receive)

    async def put(self, uid: str, data: bytes) -> None:
        """Queue an object; waits only while the queue is full.  After
        :meth:`drain` started, objects are dropped."""
        with contextlib.suppress(trio.ClosedResourceError):  # unmounting
            await self._send.send((uid, data))

    async def drain(self, patience: float = 30.0) -> None:
        """Take no more objects; wait (at most ``patience`` seconds) until the
        queued ones are written."""
        await self._send.aclose()
        with trio.move_on_after(patience):
            await self._done.wait()

    async def _run(self, queue: trio.MemoryReceiveChannel[tuple[str, bytes]]) -> None:
        try:
            async for first in queue:
                batch, size = [first], len(first[1])
                while size < BATCH_BYTES:
                    try:
                        item = queue.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    batch.append(item)
                    size += len(item[1])
                todo = [(uid, data) for uid, data in batch if self._disk.size_of(uid) is None]
                if todo:
                    await trio.to_thread.run_sync(self._write, todo, limiter=self._limiter)
        finally:
            self._done.set()

    def _write(self, batch: list[tuple[str, bytes]]) -> None:
        for uid, data in batch:
            self._disk.put(uid, data)
