"""Series readahead after a miss.

* The first miss in a series fetches that instance alone (its first byte does
  not wait behind a series); the rest of the series is fetched in one
  background request :data:`READAHEAD_GRACE_S` after that file arrived, or at
  once when a second file of the series is asked for (the access is then
  sequential).
* ``readahead_series`` series are fetched at a time; when all slots are busy,
  a reader fetches its own instance directly, so readers of different series
  never queue behind each other.
* Each instance's waiters are woken as soon as its own bytes arrive, not when
  the series is done.  Objects read ahead go into the same caches and count
  against the readahead budget (the stream pauses while it is exceeded).
* When the series fetch fails or does not carry an instance, that instance's
  flight fails and its reader falls back to a fetch of it alone (in
  :class:`~.store.Store`).
* A series fetch that failed, or delivered nothing of what it was asked for,
  is not tried again for that series (for :data:`RETRY_FAILED_S`): its files
  are read one by one at once.  When the server shows it cannot retrieve
  series at all (404 or another refusal, or :data:`FAILURES_IN_A_ROW` series
  failing in a row, say timeouts), no series of that server is read ahead
  for that long either.  Each is logged once.
* With a shared tier, what it holds of the series is taken from it and the
  rest is streamed from the server by one node of the cluster
  (:mod:`.shared`); each object is handed on the same way, whatever its source.
  The stream then never pauses at the readahead budget (other nodes may be
  following it): objects this node has no room for stay in the tier only.
* A series is fetched at readahead priority (or the prefetch's, when a
  ``trolleyfs prefetch`` read started it), under its server's limits
  (:mod:`trolleyfs.limits`); a reader who joins one of its files hurries the
  whole stream to the reader's priority.  Outside the server's background
  hours no series is read ahead: the file asked for is fetched alone.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial

import trio

from ..errors import NotFound, TrolleyError, Unavailable
from ..limits.priority import Priority, Urgency, current, priority
from ..limits.server import Limits
from ..limits.window import OutsideHours
from ..model import InstanceRef, SeriesRef
from .flights import Flight
from .parts import ReadParts
from .single import SingleFetch

log = logging.getLogger("trolleyfs.store")

READAHEAD_GRACE_S = 0.02  # a series readahead waits this long after the first file, unless a second is asked for
RETRY_FAILED_S = 600.0  # a series (or server) whose series retrieval failed is read file by file this long
FAILURES_IN_A_ROW = 2  # series of one server failing one after the other (timeouts, 5xx): the server is skipped
PROGRESS_EVERY_S = 5.0  # a long readahead says how far it got this often


@dataclass
class _SeriesJob:
    server: str
    ref: SeriesRef
    uids: list[str]
    urgency: Urgency
    wanted: frozenset[str] = frozenset()
    received: int = 0
    delivered: int = 0  # objects of the answer that were asked for
    bytes: int = 0
    started: float = field(default_factory=trio.current_time)
    next_report: float = 0.0  # when to log the progress next


class _FailedSeries:
    """Which series, and which servers, not to read ahead for a while."""

    def __init__(self) -> None:
        self._series: dict[SeriesRef, float] = {}  # until when
        self._servers: dict[str, float] = {}
        self._in_a_row: dict[str, int] = {}

    def blocked(self, server: str, sref: SeriesRef) -> bool:
        now = trio.current_time()
        return self._servers.get(server, now) > now or self._series.get(sref, now) > now

    def succeeded(self, server: str) -> None:
        self._in_a_row.pop(server, None)

    def failed(self, server: str, sref: SeriesRef, error: BaseException | None) -> None:
        """A series fetch of ``server`` delivered nothing it was asked for."""
        until = trio.current_time() + RETRY_FAILED_S
        self._series[sref] = until
        self._in_a_row[server] = self._in_a_row.get(server, 0) + 1
        refused = error is not None and not isinstance(error, (Unavailable, trio.TooSlowError))
        if refused or self._in_a_row[server] >= FAILURES_IN_A_ROW:
            if self._servers.get(server, 0.0) < trio.current_time():
                log.warning(
                    "%s: series retrieval failed (%s); reading its files one by one for the next %.0f min",
                    server,
                    error or "the answers held none of the objects asked for",
                    RETRY_FAILED_S / 60,
                )
            self._servers[server] = until
        else:
            log.info("series %s: not read ahead again for %.0f min", sref.series_uid, RETRY_FAILED_S / 60)
        for key in [k for k, t in self._series.items() if t <= trio.current_time()]:
            del self._series[key]


class SeriesReadahead:
    def __init__(self, slots: int, parts: ReadParts, single: SingleFetch, limits: Limits | None = None) -> None:
        """``slots``: series read ahead at once; ``single`` fetches a file alone;
        ``limits``: the servers' background hours (None: always)."""
        self._limits = limits
        self._slots = trio.Semaphore(slots)
        self._cluster = parts.cluster
        self._fetchers = parts.fetchers
        self._stats = parts.stats
        self._flights = parts.flights
        self._caches = parts.caches
        self._budget = parts.budget
        self._single = single
        self._nursery = parts.nursery
        self._on_readahead = parts.on_readahead
        self._jobs: dict[SeriesRef, _SeriesJob] = {}  # series being fetched
        self._pending: dict[SeriesRef, object] = {}  # readahead about to start (in its grace)
        self._failed = _FailedSeries()

    def flight_for(self, server: str, ref: InstanceRef, siblings: Callable[[], list[str]]) -> Flight:
        """A miss of ``ref`` (not cached, not in flight): the flight that will
        bring it, readahead of its series started or scheduled.  ``siblings``
        gives all instance UIDs of the series."""
        sref = ref.series
        if self._failed.blocked(server, sref):
            return self._single.start(server, ref)  # its series retrieval failed: file by file
        if sref in self._pending:
            # a second file of a series whose readahead is about to start: the
            # access is sequential, so start it now and take this file from it
            del self._pending[sref]
            self._start(server, sref, siblings())
            flight = self._flights.get(ref.key)
            if flight is not None:
                return flight
        # this file alone first, then the rest of its series in the background
        flight = self._single.start(server, ref)
        if sref not in self._jobs and sref not in self._pending:
            self._pending[sref] = mark = object()
            self._nursery.start_soon(self._after_first, server, sref, siblings, flight, mark)
        return flight

    def stats(self) -> dict[str, object]:
        return {"series_running": len(self._jobs), "series_pending": len(self._pending)}

    async def _after_first(
        self, server: str, sref: SeriesRef, siblings: Callable[[], list[str]], first: Flight, mark: object
    ) -> None:
        """Start the series readahead once the first file has arrived and its
        reader has had a moment to read it (so the two do not compete for its
        first byte), unless that fetch failed or a second file already started it."""
        await first.done.wait()
        if first.error is None:
            await trio.sleep(READAHEAD_GRACE_S)
        if self._pending.get(sref) is mark:
            del self._pending[sref]
            if first.error is None:
                self._start(server, sref, siblings())

    def _in_hours(self, server: str, urgency: Urgency) -> bool:
        """Whether background work of ``urgency`` may fetch from ``server`` now."""
        if self._limits is None:
            return True
        try:
            self._limits.of(server).admit(urgency)
        except OutsideHours as exc:
            log.debug("series readahead skipped: %s", exc)
            return False
        return True

    def _start(self, server: str, sref: SeriesRef, siblings: list[str]) -> bool:
        """Start a background fetch of the series' uncached instances, if a slot
        is free and the server's background hours are open."""
        if sref in self._jobs or self._failed.blocked(server, sref):
            return False
        urgency = Urgency(max(current().value, Priority.READAHEAD))  # a prefetch's readahead stays a prefetch
        if not self._in_hours(server, urgency):
            return False
        key = sref.key_of  # flights and caches know an instance by its key in the series' form
        wanted = {u for u in siblings if key(u) not in self._flights and not self._caches.holds(key(u))}
        if not wanted:
            return False
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            return False
        job = _SeriesJob(server, sref, sorted(wanted), urgency, frozenset(wanted))
        self._jobs[sref] = job
        for u in job.uids:
            self._flights.open(key(u), by_series=True, urgency=urgency)
        self._nursery.start_soon(self._run, server, job)
        return True

    async def _run(self, server: str, job: _SeriesJob) -> None:
        sref, uids = job.ref, job.uids
        self._stats.series_prefetches += 1
        log.info("reading ahead series %s: %d instances", sref.series_uid, len(uids))
        error: BaseException | None = None
        ended = False  # the answer ended, well or badly (not cancelled at unmount)
        try:
            await self._take(server, job)
            ended = True
        except (TrolleyError, trio.TooSlowError) as exc:
            error, ended = exc, True
            log.warning("readahead of series %s stopped: %s", sref.series_uid, exc)
        except Exception as exc:
            error, ended = exc, True
            log.exception("readahead of series %s", sref.series_uid)
        finally:
            if job.delivered:
                self._failed.succeeded(server)
            elif ended:
                self._failed.failed(server, sref, error)
            missing = NotFound("not in the series answer", server=server, what=f"series {sref.series_uid}")
            for u in uids:
                flight = self._flights.get(sref.key_of(u))
                if flight is not None and flight.by_series:
                    flight.finish(error=error or missing)
                    self._flights.close(sref.key_of(u), flight)
            del self._jobs[sref]
            self._slots.release()
            took = trio.current_time() - job.started
            log.info(
                "series %s: %d instances, %.1f MB in %.2f s",
                sref.series_uid,
                job.received,
                job.bytes / 1e6,
                took,
            )

    async def _take(self, server: str, job: _SeriesJob) -> None:
        """Bring the series: from the shared tier and the server, or from the
        server alone."""
        job.next_report = trio.current_time() + PROGRESS_EVERY_S
        with priority(job.urgency):
            if self._cluster is None:
                await self._stream(job, job.uids)
            else:
                await self._cluster.series(
                    server, job.ref, job.uids, partial(self._deliver, job), partial(self._stream, job)
                )

    async def _stream(self, job: _SeriesJob, uids: list[str]) -> None:
        """Fetch ``uids`` of the series from the server in one request and hand
        each object on as it arrives.  The stream is closed on the way out,
        whatever happens."""
        server = job.server
        self._stats.requests[server] += 1
        stream = self._fetchers[server].fetch_series(job.ref, uids)
        asked = set(uids)  # a protocol may send the whole series: the rest is somewhere already
        try:
            async for uid, data in stream:
                self._stats.instances_fetched += 1
                self._stats.bytes_fetched[server] += len(data)
                await self._deliver(job, uid, data, publish=uid in asked, source="pacs")
        finally:
            await _close(stream)

    async def _deliver(
        self, job: _SeriesJob, uid: str, data: bytes, publish: bool = False, source: str = "shared"
    ) -> None:
        """One object of the series arrived (from ``source``: the tier by default,
        as the tier calls this): to its waiters and the caches (and, with
        ``publish``, to the shared tier), pausing at the readahead budget."""
        job.received += 1
        job.bytes += len(data)
        if uid in job.wanted:
            job.delivered += 1
        if trio.current_time() >= job.next_report:
            job.next_report += PROGRESS_EVERY_S
            log.info(
                "series %s: %d of %d instances, %.1f MB so far",
                job.ref.series_uid,
                job.received,
                len(job.uids),
                job.bytes / 1e6,
            )
        key = job.ref.key_of(uid)  # flights and caches know it by its key in the series' form
        flight = self._flights.get(key)
        wanted = flight is not None and flight.by_series and not flight.done.is_set()
        # with a shared tier the stream never pauses for this node's budget (other nodes may be
        # following it): what this node has no room for is left in the tier, and read from there
        spill = self._cluster is not None and self._budget.unread_bytes >= self._budget.limit
        if flight is not None and wanted:  # else: not asked for, or already fetched another way
            if not spill:
                self._caches.keep(key, data)
                self._budget.arrived(key, len(data))
                self._on_readahead(key, data)
            flight.finish(data, source=source)
            self._flights.close(key, flight)
        if publish and self._cluster is not None:
            await self._cluster.publish(job.server, job.ref, uid, data)
        if wanted and not spill:
            await self._caches.to_disk(key, data)
            if self._cluster is None:
                await self._budget.wait()


async def _close(stream: AsyncIterator[tuple[str, bytes]]) -> None:
    """Close a series stream (an async generator) so its connection is released at once."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
