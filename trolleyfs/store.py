"""Where reads get their bytes: memory cache, disk cache, then the server.

* Single-flight: one fetch per instance at a time; other readers of the same
  instance wait for it (a :class:`_Flight`), never start another.
* Readahead: the first miss in a series fetches that instance alone (so its
  first byte does not wait behind a series) and starts one background fetch of
  the whole series (``readahead_series`` at a time).  Each instance's waiters
  are woken as soon as its own bytes arrive, not when the series is done.
  Prefetched objects go into the same caches; while the not-yet-read prefetched
  bytes exceed the prefetch budget, the series stream is paused (TCP flow
  control holds the server), so a huge series cannot push the memory cache out.
* If readahead slots are all busy, a reader fetches its own instance directly:
  eight readers of eight series never queue behind each other.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field

import trio

from .cache import DiskCache, MemoryCache
from .config import CacheConfig
from .errors import IgnoredError, NotFound, RemoteError, TrolleyError
from .model import Fetcher, InstanceRef, SeriesRef
from .stats import Stats

log = logging.getLogger("trolleyfs.store")


PREFETCH_PATIENCE_S = 30.0
READAHEAD_GRACE_S = 0.02  # a series readahead waits this long after the first file, unless a second is asked for
PROGRESS_EVERY_S = 5.0
DISK_READAHEAD_WORKERS = 3  # a long prefetch says how far it got this often


class _Abandoned(TrolleyError):
    """A prefetch stopped because its data was not being read."""


class _Flight:
    """One fetch of one instance in progress."""

    __slots__ = ("done", "data", "error", "by_series")

    def __init__(self, by_series: bool) -> None:
        self.done = trio.Event()
        self.data: bytes | None = None
        self.error: BaseException | None = None
        self.by_series = by_series

    def finish(self, data: bytes | None = None, error: BaseException | None = None) -> None:
        if not self.done.is_set():
            self.data, self.error = data, error
            self.done.set()


@dataclass
class _SeriesJob:
    ref: SeriesRef
    uids: set[str]
    received: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)


class Store:
    def __init__(
        self,
        config: CacheConfig,
        fetchers: Mapping[str, Fetcher],
        stats: Stats,
        nursery: trio.Nursery,
        on_prefetched: Callable[[str, bytes], None] = lambda uid, data: None,  # TEMP shim for wt-b
    ) -> None:
        self.config = config
        self.fetchers = fetchers
        self._stats = stats  # TEMP shim for wt-b: the name `stats` is the stats() method now
        self.nursery = nursery
        self._sizes: dict[str, int] = {}  # TEMP shim for wt-b
        self.on_prefetched: Callable[[str, bytes], None] | None = on_prefetched  # readahead data, as it arrives
        self.prefetch_budget = max(config.memory_mb * 2**20 // 2, 16 * 2**20)
        self.unread: dict[str, int] = {}  # prefetched, in memory, not read yet
        self.unread_bytes = 0
        self._budget_changed = trio.Condition()
        self.memory = MemoryCache(config.memory_mb * 2**20, on_evict=self._evicted)
        self.disk = DiskCache(config.disk_dir, config.disk_mb * 2**20) if config.disk_dir else None
        self.flights: dict[str, _Flight] = {}
        self.series_jobs: dict[SeriesRef, _SeriesJob] = {}
        self.pending_series: dict[SeriesRef, object] = {}  # readahead about to start
        self.disk_jobs: set[SeriesRef] = set()  # series being read ahead from the disk cache
        self.readahead_slots = trio.Semaphore(config.readahead_series)
        self.disk_limiter = trio.CapacityLimiter(4)
        self._to_disk: trio.MemorySendChannel[tuple[str, bytes]] | None = None
        self._writer_done = trio.Event()
        if self.disk is not None:
            self._to_disk, queue = trio.open_memory_channel[tuple[str, bytes]](64)
            nursery.start_soon(self._disk_writer, queue)

    # ------------------------------------------------------------------ helpers
    def _evicted(self, uid: str, size: int) -> None:
        if uid in self.unread:
            self._stats.prefetched_unused_evicted += 1
            self._consume(uid)

    def _consume(self, uid: str) -> None:
        size = self.unread.pop(uid, None)
        if size is not None:
            self.unread_bytes -= size

    def size_hint(self, uid: str) -> int | None:
        """The size of an instance if known without fetching it."""
        size = self.memory.size_of(uid)
        if size is None and self.disk is not None:
            size = self.disk.size_of(uid)
        return size

    def _store(self, uid: str, data: bytes) -> None:
        self.memory.put(uid, data)
        self._sizes[uid] = len(data)  # TEMP shim for wt-b

    def size_of(self, uid: str) -> int | None:  # TEMP shim for wt-b
        """The size of an instance if known without fetching it."""
        size = self._sizes.get(uid)
        return size if size is not None else self.size_hint(uid)

    def stats(self) -> dict[str, object]:  # TEMP shim for wt-b
        """The caches' and the readahead's state, as stats.json shows it."""
        return {
            "memory_cache": {"bytes": self.memory.bytes_used, "limit": self.memory.max_bytes,
                             "objects": len(self.memory), "hits": self.memory.hits, "misses": self.memory.misses},
            "disk_cache": None if self.disk is None else {
                "dir": str(self.disk.dir), "bytes": self.disk.bytes_used, "limit": self.disk.max_bytes,
                "hits": self.disk.hits, "misses": self.disk.misses, "corrupt": self.disk.corrupt},
            "prefetch": {"series_running": len(self.series_jobs), "in_flight": len(self.flights),
                         "series_pending": len(self.pending_series),
                         "disk_readahead_running": len(self.disk_jobs),
                         "unread_bytes": self.unread_bytes, "budget": self.prefetch_budget},
        }  # fmt: skip

    async def _disk_get(self, uid: str) -> bytes | None:
        if self.disk is None or self.disk.size_of(uid) is None:
            return None
        return await trio.to_thread.run_sync(self.disk.get, uid, limiter=self.disk_limiter)

    async def _disk_put(self, uid: str, data: bytes) -> None:
        """Queue an object for the disk cache.  Writing happens in the background
        (a fetch never waits for the disk) unless the queue is full."""
        if self._to_disk is not None:
            try:
                await self._to_disk.send((uid, data))
            except trio.ClosedResourceError:
                pass  # unmounting

    async def drain(self, patience: float = 30.0) -> None:
        """At unmount: let queued disk-cache writes finish (bounded in time)."""
        if self._to_disk is None:
            return
        await self._to_disk.aclose()
        with trio.move_on_after(patience):
            await self._writer_done.wait()

    async def _disk_writer(self, queue: trio.MemoryReceiveChannel[tuple[str, bytes]]) -> None:
        assert self.disk is not None
        try:
            async for uid, data in queue:
                if self.disk.size_of(uid) is None:
                    await trio.to_thread.run_sync(self.disk.put, uid, data, limiter=self.disk_limiter)
        finally:
            self._writer_done.set()

    # ------------------------------------------------------------------ reads
    async def get(
        self, server: str, ref: InstanceRef, siblings: Callable[[], list[str]] | None = None
    ) -> bytes:
        """The Part-10 bytes of ``ref``.  ``siblings`` (giving all instance UIDs of
        the series; called only on a miss) enables readahead of the series."""
        uid = ref.instance_uid
        readahead = siblings is not None and self.config.readahead == "series"
        data = self.memory.get(uid)
        if data is not None:
            return await self._served(uid, data)
        flight = self.flights.get(uid)
        if flight is None:
            data = await self._disk_get(uid)
            if data is not None:
                self._store(uid, data)
                if readahead:
                    assert siblings is not None
                    self._start_disk_readahead(ref, siblings)
                return data
            flight = self.flights.get(uid)  # may have started while we read the disk
        if flight is None and readahead and ref.series in self.pending_series:
            # a second file of a series whose readahead is about to start: the
            # access is sequential, so start it now and take this file from it
            assert siblings is not None
            del self.pending_series[ref.series]
            self._start_series(server, ref.series, siblings())
            flight = self.flights.get(uid)
        if flight is None:
            # this file alone first (its first byte should not wait behind a
            # series), then the rest of its series in the background
            flight = self._start_single(server, ref)
            if readahead and ref.series not in self.series_jobs and ref.series not in self.pending_series:
                assert siblings is not None
                self.pending_series[ref.series] = mark = object()
                self.nursery.start_soon(self._series_after, server, ref.series, siblings, flight, mark)
        await flight.done.wait()
        if flight.error is not None and flight.by_series and not isinstance(flight.error, IgnoredError):
            # the series stream failed or did not carry this one: ask for it alone
            log.debug("instance %s: series fetch did not deliver it (%s); fetching it alone", uid, flight.error)
            if self.flights.get(uid) is flight:
                del self.flights[uid]
            return await self.get(server, ref, None)
        if flight.error is not None:
            raise flight.error
        assert flight.data is not None
        return await self._served(uid, flight.data)

    async def _served(self, uid: str, data: bytes) -> bytes:
        """A reader got ``uid``: it no longer counts as prefetched-but-unread."""
        self._consume(uid)
        await self._wake_budget()
        return data

    async def _wait_for_budget(self, sref: SeriesRef) -> None:
        """Pause a prefetch while too many prefetched bytes wait to be read; give
        up (the rest is then fetched on demand) if nobody reads for a while."""
        if self.unread_bytes <= self.prefetch_budget:
            return
        async with self._budget_changed:
            with trio.move_on_after(PREFETCH_PATIENCE_S) as scope:
                while self.unread_bytes > self.prefetch_budget:
                    await self._budget_changed.wait()
        if scope.cancelled_caught:
            raise _Abandoned(f"prefetched data unread for {PREFETCH_PATIENCE_S:.0f} s")

    async def _wake_budget(self) -> None:
        if self._budget_changed.statistics().tasks_waiting:
            async with self._budget_changed:
                self._budget_changed.notify_all()

    def _start_single(self, server: str, ref: InstanceRef) -> _Flight:
        flight = _Flight(by_series=False)
        self.flights[ref.instance_uid] = flight
        self.nursery.start_soon(self._run_single, server, ref, flight)
        return flight

    async def _run_single(self, server: str, ref: InstanceRef, flight: _Flight) -> None:
        uid = ref.instance_uid
        try:
            self._stats.requests[server] += 1
            data = await self.fetchers[server].fetch_instance(ref)
            self._stats.instances_fetched += 1
            self._stats.bytes_fetched[server] += len(data)
            self._store(uid, data)
            flight.finish(data)
            await self._disk_put(uid, data)
        except (TrolleyError, trio.TooSlowError) as exc:
            flight.finish(error=exc)
        except Exception as exc:  # a bug in a protocol module: fail the read, keep the mount
            log.exception("fetching instance %s", uid)
            flight.finish(error=exc)
        finally:
            flight.finish(error=RemoteError("fetch cancelled", server=server, what=f"instance {uid}"))
            if self.flights.get(uid) is flight:
                del self.flights[uid]

    async def _series_after(
        self, server: str, sref: SeriesRef, siblings: Callable[[], list[str]], first: _Flight, mark: object
    ) -> None:
        """Start the series readahead once the first file has arrived and its
        reader has had a moment to read it (so the two do not compete for its
        first byte), unless that fetch failed or a second file already started it."""
        await first.done.wait()
        if first.error is None:
            await trio.sleep(READAHEAD_GRACE_S)
        if self.pending_series.get(sref) is mark:
            del self.pending_series[sref]
            if first.error is None:
                self._start_series(server, sref, siblings())

    def _start_disk_readahead(self, ref: InstanceRef, siblings: Callable[[], list[str]]) -> None:
        """A disk-cache hit: load the series' next files from disk in the background."""
        sref = ref.series
        if self.disk is None or sref in self.disk_jobs:
            return
        uids = siblings()
        at = uids.index(ref.instance_uid) + 1 if ref.instance_uid in uids else 0
        order = [u for u in uids[at:] + uids[:at] if self.disk.size_of(u) is not None and not self.memory.peek(u)]
        if order:
            self.disk_jobs.add(sref)
            self.nursery.start_soon(self._run_disk_readahead, sref, order)

    async def _run_disk_readahead(self, sref: SeriesRef, uids: list[str]) -> None:
        """A few workers read the files in order (reading and checking a file
        releases the GIL, so they overlap), stopping at the prefetch budget."""
        todo = iter(uids)

        async def worker() -> None:
            for u in todo:
                if self.memory.peek(u) or u in self.flights:
                    continue
                data = await self._disk_get(u)
                if data is None or self.memory.peek(u):
                    continue
                self._store(u, data)
                self.unread[u] = len(data)
                self.unread_bytes += len(data)
                if self.on_prefetched is not None:
                    self.on_prefetched(u, data)
                await self._wait_for_budget(sref)

        try:
            async with trio.open_nursery() as workers:
                for _ in range(DISK_READAHEAD_WORKERS):
                    workers.start_soon(worker)
        except* _Abandoned:
            pass
        finally:
            self.disk_jobs.discard(sref)

    def _start_series(self, server: str, sref: SeriesRef, siblings: list[str]) -> bool:
        """Start a background fetch of the series' uncached instances, if a slot is free."""
        if sref in self.series_jobs:
            return False
        wanted = {u for u in siblings if u not in self.flights and not self.memory.peek(u)}
        if self.disk is not None:
            wanted = {u for u in wanted if self.disk.size_of(u) is None}
        if not wanted:
            return False
        try:
            self.readahead_slots.acquire_nowait()
        except trio.WouldBlock:
            return False
        job = _SeriesJob(sref, wanted)
        self.series_jobs[sref] = job
        for u in wanted:
            self.flights[u] = _Flight(by_series=True)
        self.nursery.start_soon(self._run_series, server, job, sorted(wanted))
        return True

    async def _run_series(self, server: str, job: _SeriesJob, uids: list[str]) -> None:
        sref = job.ref
        self._stats.series_prefetches += 1
        self._stats.requests[server] += 1
        log.info("prefetching series %s: %d instances", sref.series_uid, len(uids))
        error: BaseException | None = None
        try:
            async with aclosing(self.fetchers[server].fetch_series(sref, uids)) as stream:
                next_report = time.monotonic() + PROGRESS_EVERY_S
                async for uid, data in stream:
                    flight = self.flights.get(uid)
                    job.received += 1
                    job.bytes += len(data)
                    if time.monotonic() >= next_report:
                        next_report += PROGRESS_EVERY_S
                        log.info("series %s: %d of %d instances, %.1f MB so far", sref.series_uid,
                                 job.received, len(uids), job.bytes / 1e6)  # fmt: skip
                    self._stats.instances_fetched += 1
                    self._stats.bytes_fetched[server] += len(data)
                    if flight is None or not flight.by_series or flight.done.is_set():
                        continue  # not asked for, or already fetched another way
                    self._store(uid, data)
                    self.unread[uid] = len(data)
                    self.unread_bytes += len(data)
                    flight.finish(data)
                    if self.on_prefetched is not None:
                        self.on_prefetched(uid, data)
                    if self.flights.get(uid) is flight:
                        del self.flights[uid]
                    await self._disk_put(uid, data)
                    await self._wait_for_budget(sref)
        except (TrolleyError, trio.TooSlowError) as exc:
            error = exc
            log.warning("prefetch of series %s stopped: %s", sref.series_uid, exc)
        except Exception as exc:
            error = exc
            log.exception("prefetch of series %s", sref.series_uid)
        finally:
            missing = NotFound("not in the series answer", server=server, what=f"series {sref.series_uid}")
            for u in uids:
                flight = self.flights.get(u)
                if flight is not None and flight.by_series:
                    flight.finish(error=error or missing)
                    del self.flights[u]
            del self.series_jobs[sref]
            self.readahead_slots.release()
            took = time.monotonic() - job.started
            log.info(
                "series %s: %d instances, %.1f MB in %.2f s",
                sref.series_uid, job.received, job.bytes / 1e6, took,
            )  # fmt: skip
