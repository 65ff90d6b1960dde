"""Disk readahead: after a disk-cache hit, the series' next files are loaded
from the disk cache into memory in the background (a few workers, in the
series' order from the file just read), within the readahead budget."""

from __future__ import annotations

from collections.abc import Callable

import trio

from ..model import InstanceRef, SeriesRef
from .budget import Abandoned
from .parts import ReadParts

DISK_READAHEAD_WORKERS = 3  # reading and checking a file releases the GIL, so they overlap


class DiskReadahead:
    def __init__(self, parts: ReadParts) -> None:
        self._caches = parts.caches
        self._flights = parts.flights
        self._budget = parts.budget
        self._nursery = parts.nursery
        self._on_readahead = parts.on_readahead
        self._running: set[SeriesRef] = set()  # series being read ahead from the disk cache

    def after_hit(self, ref: InstanceRef, siblings: Callable[[], list[str]]) -> None:
        """``ref`` came from the disk cache: load the rest of its series from disk
        (the files after it first, then those before), unless already running."""
        sref = ref.series
        if not self._caches.has_disk or sref in self._running:
            return
        uids = siblings()
        at = uids.index(ref.instance_uid) + 1 if ref.instance_uid in uids else 0
        keys = [sref.key_of(u) for u in uids[at:] + uids[:at]]  # in the form of the file just read
        order = [k for k in keys if self._caches.on_disk(k) and not self._caches.in_memory(k)]
        if order:
            self._running.add(sref)
            self._nursery.start_soon(self._run, sref, order)

    async def _run(self, sref: SeriesRef, keys: list[str]) -> None:
        todo = iter(keys)

        async def worker() -> None:
            for u in todo:
                if self._caches.in_memory(u) or u in self._flights:
                    continue
                data = await self._caches.from_disk(u)
                if data is None or self._caches.in_memory(u):
                    continue
                self._caches.keep(u, data)
                self._budget.arrived(u, len(data))
                self._on_readahead(u, data)
                await self._budget.wait()

        try:
            async with trio.open_nursery() as workers:
                for _ in range(DISK_READAHEAD_WORKERS):
                    workers.start_soon(worker)
        except* Abandoned:
            pass
        finally:
            self._running.discard(sref)

    def stats(self) -> dict[str, object]:
        return {"disk_readahead_running": len(self._running)}
