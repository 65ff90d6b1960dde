"""The cache layer: the memory cache, the optional disk cache (read in worker
threads, written by the background writer) and the size record, behind one
object.  Every object kept goes through :meth:`Caches.keep`, so its size is
recorded in one place; :meth:`Caches.size_of` is the one answer to "how big is
this instance" without fetching it."""

from __future__ import annotations

import trio

from .disk import DiskCache
from .diskwriter import DiskWriter
from .memory import MemoryCache
from .sizes import Sizes

DISK_THREADS = 4  # worker threads reading or writing the disk cache at once


class Caches:
    def __init__(self, memory: MemoryCache, disk: DiskCache | None, nursery: trio.Nursery) -> None:
        self._memory = memory
        self._disk = disk
        self._sizes = Sizes()
        self._limiter = trio.CapacityLimiter(DISK_THREADS)
        self._writer = DiskWriter(disk, self._limiter, nursery) if disk is not None else None

    # ------------------------------------------------------------------ memory
    def from_memory(self, uid: str) -> bytes | None:
        """The object if it is in memory (counted as a hit or a miss)."""
        return self._memory.get(uid)

    def in_memory(self, uid: str) -> bool:
        """Whether the object is in memory (not counted, LRU order untouched)."""
        return self._memory.peek(uid)

    def keep(self, uid: str, data: bytes) -> None:
        """Keep an object in memory (unless it is larger than the memory cache)
        and record its size."""
        self._sizes.record(uid, len(data))
        self._memory.put(uid, data)

    # ------------------------------------------------------------------ disk
    @property
    def has_disk(self) -> bool:
        return self._disk is not None

    def on_disk(self, uid: str) -> bool:
        return self._disk is not None and self._disk.size_of(uid) is not None

    def holds(self, uid: str) -> bool:
        """Whether the object is in memory or on disk (nothing counted)."""
        return self.in_memory(uid) or self.on_disk(uid)

    async def from_disk(self, uid: str) -> bytes | None:
        """The object from the disk cache (in a worker thread), or None."""
        if self._disk is None or self._disk.size_of(uid) is None:
            return None
        return await trio.to_thread.run_sync(self._disk.get, uid, limiter=self._limiter)

    async def to_disk(self, uid: str, data: bytes) -> None:
        """Queue an object for the disk cache (written in the background)."""
        if self._writer is not None:
            await self._writer.put(uid, data)

    async def drain(self, patience: float = 30.0) -> None:
        """At unmount: let queued disk-cache writes finish (bounded in time)."""
        if self._writer is not None:
            await self._writer.drain(patience)

    # ------------------------------------------------------------------ sizes
    def size_of(self, uid: str) -> int | None:
        """The instance's size if known without fetching it: recorded when it was
        kept, or found in the memory or disk cache (and then recorded)."""
        size = self._sizes.get(uid)
        if size is not None:
            return size
        size = self._memory.size_of(uid)
        if size is None and self._disk is not None:
            size = self._disk.size_of(uid)
        if size is not None:
            self._sizes.record(uid, size)
        return size

    def stats(self) -> dict[str, object]:
        return {
            "memory_cache": self._memory.stats(),
            "disk_cache": None if self._disk is None else self._disk.stats(),
        }
