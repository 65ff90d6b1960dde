"""Fetching one instance alone from its server, into a :class:`~.flights.Flight`
that every reader of it waits on.  The bytes are kept in memory, then queued
for the disk cache.  With a shared tier the instance is first looked for
there, and fetched from the server at most once in the cluster.  The fetch
runs under the flight's urgency (:mod:`trolleyfs.limits.priority`): the
priority of whoever started it, raised by whoever joins it."""

from __future__ import annotations

import logging
from functools import partial

import trio

from ..errors import RemoteError, TrolleyError
from ..limits.priority import priority
from ..model import InstanceRef
from .flights import Flight
from .parts import ReadParts

log = logging.getLogger("trolleyfs.store")


class SingleFetch:
    def __init__(self, parts: ReadParts) -> None:
        self._fetchers = parts.fetchers
        self._cluster = parts.cluster
        self._stats = parts.stats
        self._flights = parts.flights
        self._caches = parts.caches
        self._nursery = parts.nursery

    def start(self, server: str, ref: InstanceRef) -> Flight:
        """Start fetching ``ref`` in the background; its flight is registered at once."""
        flight = self._flights.open(ref.key, by_series=False)
        self._nursery.start_soon(self._run, server, ref, flight)
        return flight

    def rescue(self, server: str, ref: InstanceRef, flight: Flight) -> None:
        """Fetch ``ref`` alone into the series flight its readers wait on (once):
        whichever answer comes first serves them."""
        if not flight.rescued and not flight.done.is_set():
            flight.rescued = True
            self._nursery.start_soon(self._run, server, ref, flight)

    async def _run(self, server: str, ref: InstanceRef, flight: Flight) -> None:
        uid = ref.key

        def arrived(data: bytes, source: str = "pacs") -> None:
            self._caches.keep(uid, data)
            flight.finish(data, source=source)

        try:
            with priority(flight.urgency):
                if self._cluster is None:
                    data, from_pacs = await self._from_server(server, ref), True
                else:
                    fetch = partial(self._from_server, server, ref)
                    data, from_pacs = await self._cluster.instance(server, ref, fetch, arrived)
            if not flight.done.is_set():
                arrived(data, "pacs" if from_pacs else "shared")
            await self._caches.to_disk(uid, data)
        except (TrolleyError, trio.TooSlowError) as exc:
            flight.finish(error=exc)
        except Exception as exc:  # a bug in a protocol module: fail the read, keep the mount
            log.exception("fetching instance %s", uid)
            flight.finish(error=exc)
        finally:
            flight.finish(error=RemoteError("fetch cancelled", server=server, what=f"instance {uid}"))
            self._flights.close(uid, flight)

    async def _from_server(self, server: str, ref: InstanceRef) -> bytes:
        self._stats.requests[server] += 1
        data = await self._fetchers[server].fetch_instance(ref)
        self._stats.instances_fetched += 1
        self._stats.bytes_fetched[server] += len(data)
        return data
