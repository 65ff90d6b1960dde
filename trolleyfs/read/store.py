"""Where reads get their bytes: :class:`Store` reads an instance from the
memory cache, else from a fetch already in flight, else from the disk cache,
else by starting a fetch (which, with a cluster tier, looks in Redis before
asking the server: :mod:`.cluster`).  Readahead comes in at one place per
source: after a disk-cache hit (:mod:`.diskahead`) and on a miss
(:mod:`.readahead`).  The store builds its parts from its settings and the
caches handed to it, and composes their ``stats()``.

Two things are told on the way, for the limits and the audit: a read that
must fetch is first admitted by its server's limits (a ``trolleyfs
prefetch`` read outside the background hours is refused, EAGAIN; a user's
read always runs), a reader who joins a fetch in flight hurries it to its own
priority (:meth:`~.flights.Flight.join`), and where the bytes came from is
told to the audit (:func:`~trolleyfs.audit.source.served_from`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import trio

from ..audit.source import served_from
from ..errors import ProtocolError
from ..limits.server import Limits
from ..model import Fetcher, InstanceRef
from ..stats import Stats
from .budget import ReadaheadBudget, budget_for
from .caches import Caches
from .cluster import ClusterReads
from .disk import DiskCache
from .diskahead import DiskReadahead
from .flights import Flight, Flights
from .memory import MemoryCache
from .parts import ReadParts
from .placement import AS_LISTED, Placement, placement_problem
from .readahead import SeriesReadahead
from .single import SingleFetch

log = logging.getLogger("trolleyfs.store")


def _ignore(uid: str, data: bytes) -> None:
    pass


@dataclass(frozen=True)
class ReadSettings:
    """How the read path behaves (the composition root fills it from ``[cache]``)."""

    memory_bytes: int = 512 * 2**20  # the memory cache's bound
    readahead_series: int = 2  # series read ahead at once; 0: no series readahead


@dataclass(frozen=True)
class Around:
    """What a Store works with besides its fetchers, each optional."""

    disk: DiskCache | None = None  # the disk cache
    on_readahead: Callable[[str, bytes], None] = _ignore  # sees readahead data as it arrives
    cluster: ClusterReads | None = None  # the cluster tier, between the local caches and the servers
    placement: Placement = AS_LISTED  # what objects of each form must say they are
    limits: Limits | None = None  # the servers' background hours (None: always open)


class Store:
    def __init__(
        self,
        settings: ReadSettings,
        fetchers: Mapping[str, Fetcher],
        stats: Stats,
        nursery: trio.Nursery,
        around: Around = Around(),
    ) -> None:
        """``fetchers`` by server; background work runs in ``nursery``."""
        disk, on_readahead, cluster, limits = around.disk, around.on_readahead, around.cluster, around.limits
        self._stats = stats
        self._placement = around.placement
        self._limits = limits
        self._cluster = cluster
        self._readahead = settings.readahead_series > 0
        self._budget = ReadaheadBudget(budget_for(settings.memory_bytes))
        memory = MemoryCache(settings.memory_bytes, on_evict=self._evicted)
        self._caches = Caches(memory, disk, nursery)
        self._flights = Flights()
        parts = ReadParts(fetchers, stats, self._flights, self._caches, self._budget, nursery, on_readahead, cluster)
        self._single = SingleFetch(parts)
        self._series = SeriesReadahead(max(1, settings.readahead_series), parts, self._single, limits)
        self._disk_ahead = DiskReadahead(parts)

    async def get(self, server: str, ref: InstanceRef, siblings: Callable[[], list[str]] | None = None) -> bytes:
        """The Part-10 bytes of ``ref`` (in its form: cached under ``ref.key``).
        ``siblings`` (giving all instance UIDs of the series; called only on a
        miss) enables readahead of the series.  What is returned is always the
        instance ``ref`` names, of its study and series (and patient, where
        known), whichever cache or server it came from: anything else is a
        ProtocolError (the read's EIO), logged naming both."""
        data = await self._get(server, ref, siblings)
        problem = placement_problem(data, ref, self._placement)
        if problem is not None:
            self._stats.misplaced_refused += 1
            raise ProtocolError(f"object refused: {problem}", server=server, what=f"instance {ref.instance_uid}")
        return data

    async def _get(self, server: str, ref: InstanceRef, siblings: Callable[[], list[str]] | None) -> bytes:
        key = ref.key
        if not self._readahead:
            siblings = None
        data = self._caches.from_memory(key)
        if data is not None:
            served_from("memory")
            return await self._served(key, data)
        flight = self._flights.get(key)
        if flight is None:
            data = await self._caches.from_disk(key)
            if data is not None:
                served_from("disk")
                self._caches.keep(key, data)
                if siblings is not None:
                    self._disk_ahead.after_hit(ref, siblings)  # readahead hook: disk
                return data
            flight = self._flights.get(key)  # may have started while we read the disk
        if flight is None:
            if self._limits is not None:
                self._limits.of(server).admit()  # a prefetch's read, outside the background hours: EAGAIN
            flight = self._fetch(server, ref, siblings)
        else:
            flight.join()
        if flight.by_series and not flight.done.is_set():
            await self._wait_for_series(server, ref, flight)
        await flight.done.wait()
        if flight.worth_asking_alone:
            # the series stream failed or did not carry this one: ask for it alone
            log.debug("instance %s: series fetch did not deliver it (%s); fetching it alone", key, flight.error)
            self._flights.close(key, flight)
            return await self._get(server, ref, None)
        if flight.error is not None:
            raise flight.error
        assert flight.data is not None
        served_from(flight.source)
        return await self._served(key, flight.data)

    async def _wait_for_series(self, server: str, ref: InstanceRef, flight: Flight) -> None:
        """Wait for a file the series stream has not brought yet, unless the
        stream is (or gets) paused at the readahead budget, full of files nobody
        read yet: then fetch this one alone.  A reader going through the series
        out of order never waits for the stream's patience to run out."""
        async with trio.open_nursery() as race:

            async def arrived() -> None:
                await flight.done.wait()
                race.cancel_scope.cancel()

            async def paused() -> None:
                await self._budget.until_paused()
                log.debug(
                    "instance %s: the series stream is paused at the readahead budget; fetching it alone",
                    ref.instance_uid,
                )
                self._single.rescue(server, ref, flight)
                race.cancel_scope.cancel()

            race.start_soon(arrived)
            race.start_soon(paused)

    def _fetch(self, server: str, ref: InstanceRef, siblings: Callable[[], list[str]] | None) -> Flight:
        if siblings is None:
            return self._single.start(server, ref)
        return self._series.flight_for(server, ref, siblings)  # readahead hook: miss

    @property
    def caches(self) -> Caches:
        """The cache layer (the derived-objects cache keeps its bundles in its disk cache)."""
        return self._caches

    def size_of(self, key: str) -> int | None:
        """The size of an instance (by its cache key, ``InstanceRef.key``) if
        known without fetching it; always the length of what :meth:`get`
        returns for it."""
        return self._caches.size_of(key)

    def cached_in(self, uid: str) -> tuple[bool, bool]:
        """Whether an instance is in the memory cache, and in the disk cache
        (nothing counted, nothing fetched)."""
        return self._caches.in_memory(uid), self._caches.on_disk(uid)

    def stats(self) -> dict[str, object]:
        """The caches' and readahead's state, as ``.trolleyfs/stats.json`` shows it."""
        readahead = self._series.stats() | self._flights.stats() | self._disk_ahead.stats() | self._budget.stats()
        shared = None if self._cluster is None else self._cluster.stats()
        # stats.json keeps its keys: "prefetch" is the readahead's state there
        return self._caches.stats() | {"prefetch": readahead, "shared_cache": shared}

    async def drain(self, patience: float = 30.0) -> None:
        """At unmount: let queued disk-cache writes finish (bounded in time)."""
        await self._caches.drain(patience)

    async def _served(self, uid: str, data: bytes) -> bytes:
        """A reader got ``uid``: it no longer counts as read-ahead-but-unread."""
        await self._budget.read(uid)
        return data

    def _evicted(self, uid: str, size: int) -> None:
        if self._budget.consume(uid):
            self._stats.prefetched_unused_evicted += 1
