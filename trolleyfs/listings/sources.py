"""Searches, asked of the named server's searcher, counted
in :class:`~trolleyfs.stats.Stats` (one request per search asked of a PACS)
and logged.  A result comes with its age (:class:`Listed`), so the tree keeps
it only for what is left of its level's TTL.

Where a result may come from, nearest first:

* the disk cache (:mod:`.disk`, with ``disk_dir``): every result is kept on
  disk, and a kept one is used while it is younger than its level's TTL (a
  remount, or another path to the same study, costs no request) or while the
  server is unreachable (a timeout, a refused connection, a 5xx).  After such a
  failure the server is not asked again for :data:`OFFLINE_RETRY_S` seconds for
  anything kept on disk, so an offline mount lists at disk speed;
* the cluster tier (:mod:`.cluster`, with ``[cache.shared]``): a search is asked once in the
  cluster and its result shared for its level's TTL;
* the server."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import trio

from ..errors import Unavailable
from ..model import Instance, Query, Searcher, Series, Study
from ..stats import Stats
from .cluster import ClusterListings
from .codec import decode_instance, decode_series, decode_study
from .disk import SavedListings
from .identity import search_key
from .ttls import ListingTTLs

log = logging.getLogger("trolleyfs.listings")

OFFLINE_RETRY_S = 30.0  # after a server failed, kept listings are used this long without asking it
T = TypeVar("T")


class Listed(list[T]):
    """A search result, and how many seconds old it is (0: just asked)."""

    def __init__(self, items: Iterable[T], age: float = 0.0) -> None:
        super().__init__(items)
        self.age = age


def listing_age(items: Sequence[object]) -> float:
    """How old a search result is (0 unless it was kept or shared)."""
    return items.age if isinstance(items, Listed) else 0.0


class Listings:
    def __init__(
        self,
        searchers: Mapping[str, Searcher],
        stats: Stats,
        saved: SavedListings | None = None,
        ttls: ListingTTLs | None = None,
        clock: Callable[[], float] = time.time,
        cluster: ClusterListings | None = None,
        identities: Mapping[str, str] | None = None,
    ) -> None:
        """``ttls``: how long a kept result is used without asking; ``clock`` is
        the wall clock the ages of kept results are measured on; ``cluster``: the
        cluster's tier; ``identities``: each server's identity
        (:func:`.identity.server_identity`), which names what is kept of it on
        disk and in the tier (by default its name)."""
        self._searchers = dict(searchers)
        self._stats = stats
        self._saved = saved
        self._ttls = ttls or ListingTTLs()
        self._clock = clock
        self._cluster = cluster
        self._offline_until: dict[str, float] = {}  # server -> trio time
        self._ids = dict(identities or {})

    @property
    def servers(self) -> tuple[str, ...]:
        """The servers, in the order of the config."""
        return tuple(self._searchers)

    def identity(self, server: str) -> str:
        """What names what is kept of ``server``: its identity."""
        return self._ids.get(server, server)

    def holds_saved(self, server: str) -> bool:
        """Whether listings of ``server`` are kept on disk."""
        return self._saved is not None and self._saved.holds(self.identity(server))

    async def find_studies(self, server: str, query: Query, key: str | None = None) -> Listed[Study]:
        """The studies ``query`` finds on ``server``; ``key`` (see
        :func:`.identity.search_key`) names the search for keeping its result."""
        key = key or search_key(query)

        async def search() -> list[Study]:
            self._stats.requests[server] += 1
            log.debug("%s: study search %s", server, dict(query.filters))
            studies = await self._searchers[server].find_studies(query)
            log.debug("%s: %d studies", server, len(studies))
            return studies

        async def ask() -> Listed[Study]:
            if self._cluster is None:
                return Listed(await search())
            return Listed(*await self._cluster.studies(self.identity(server), key, search))

        return await self._listed(server, "studies", key, ask, decode_study)

    async def find_series(self, server: str, study_uid: str) -> Listed[Series]:
        async def search() -> list[Series]:
            self._stats.requests[server] += 1
            log.debug("%s: series of study %s", server, study_uid)
            return await self._searchers[server].find_series(study_uid)

        async def ask() -> Listed[Series]:
            if self._cluster is None:
                return Listed(await search())
            return Listed(*await self._cluster.series(self.identity(server), study_uid, search))

        return await self._listed(server, "series", study_uid, ask, decode_series)

    async def find_instances(self, server: str, study_uid: str, series_uid: str) -> Listed[Instance]:
        async def search() -> list[Instance]:
            self._stats.requests[server] += 1
            log.debug("%s: instances of series %s", server, series_uid)
            return await self._searchers[server].find_instances(study_uid, series_uid)

        async def ask() -> Listed[Instance]:
            if self._cluster is None:
                return Listed(await search())
            return Listed(*await self._cluster.instances(self.identity(server), series_uid, search))

        return await self._listed(server, "instances", f"{study_uid}/{series_uid}", ask, decode_instance)

    async def _listed(
        self,
        server: str,
        level: str,
        key: str,
        ask: Callable[[], Awaitable[Listed[Any]]],
        decode: Callable[[Any], Any],
    ) -> Listed[Any]:
        key = f"{level} {key}"
        kept_as = self.identity(server)
        saved = self._saved
        if saved is not None:
            age = await trio.to_thread.run_sync(saved.age, kept_as, key, self._clock())
            fresh = age is not None and age < getattr(self._ttls, level)
            if age is not None and (fresh or self._offline(server)):
                kept = await trio.to_thread.run_sync(saved.load, kept_as, key, decode)
                if kept is not None:
                    self._stats.shown_offline(server, age)  # counted while the server is offline
                    return Listed(kept, age)
        try:
            found = await ask()
        except Unavailable as exc:
            self._went_offline(server, exc)
            kept = None if saved is None else await trio.to_thread.run_sync(saved.load, kept_as, key, decode)
            if kept is None:
                raise
            if saved is not None and (age := await trio.to_thread.run_sync(saved.age, kept_as, key, self._clock())):
                self._stats.shown_offline(server, age)
            log.debug("%s: %s from the disk cache (server unreachable)", server, key)
            return Listed(kept)  # kept by the tree for its TTL, then the server is asked again
        self._back_online(server)
        if saved is not None:
            await trio.to_thread.run_sync(saved.save, kept_as, key, found)
        return found

    def _offline(self, server: str) -> bool:
        return trio.current_time() < self._offline_until.get(server, float("-inf"))

    def _went_offline(self, server: str, exc: Unavailable) -> None:
        if server not in self._offline_until and self.holds_saved(server):
            self._stats.went_offline(server, exc.cause)  # stats.json: no UID of what was asked
            log.warning(
                "%s is unreachable (%s): listing from the disk cache; asking again in %.0f s",
                server,
                exc,
                OFFLINE_RETRY_S,
            )
        self._offline_until[server] = trio.current_time() + OFFLINE_RETRY_S

    def _back_online(self, server: str) -> None:
        was_offline = self._stats.back_online(server)  # also when the mount began offline
        if self._offline_until.pop(server, None) is not None or was_offline:
            log.info("%s answers again", server)
