"""Searches for the tree: each asked of the named server's searcher, counted
in :class:`~trolleyfs.stats.Stats` (one request per search) and logged.
With a shared tier, a search is asked once in the cluster and its result
shared for its level's TTL; a result comes with its age (:class:`Listed`),
so the tree keeps it only for what is left of that TTL."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from ..model import Instance, Query, Searcher, Series, Study
from ..shared.listings import SharedListings
from ..stats import Stats

log = logging.getLogger("trolleyfs.tree")

T = TypeVar("T")


class Listed(list[T]):
    """A search result, and how many seconds old it is (0: just asked)."""

    def __init__(self, items: Iterable[T], age: float = 0.0) -> None:
        super().__init__(items)
        self.age = age


def listing_age(items: Sequence[object]) -> float:
    """How old a search result is (0 unless it came from the shared tier)."""
    return items.age if isinstance(items, Listed) else 0.0


class Listings:
    def __init__(self, searchers: Mapping[str, Searcher], stats: Stats, shared: SharedListings | None = None) -> None:
        self._searchers = dict(searchers)
        self._stats = stats
        self._shared = shared

    @property
    def servers(self) -> tuple[str, ...]:
        """The servers, in the order of the config."""
        return tuple(self._searchers)

    async def find_studies(self, server: str, query: Query) -> Listed[Study]:
        async def search() -> list[Study]:
            self._stats.requests[server] += 1
            log.debug("%s: study search %s", server, dict(query.filters))
            studies = await self._searchers[server].find_studies(query)
            log.debug("%s: %d studies", server, len(studies))
            return studies

        if self._shared is None:
            return Listed(await search())
        return Listed(*await self._shared.studies(server, query, search))

    async def find_series(self, server: str, study_uid: str) -> Listed[Series]:
        async def search() -> list[Series]:
            self._stats.requests[server] += 1
            log.debug("%s: series of study %s", server, study_uid)
            return await self._searchers[server].find_series(study_uid)

        if self._shared is None:
            return Listed(await search())
        return Listed(*await self._shared.series(server, study_uid, search))

    async def find_instances(self, server: str, study_uid: str, series_uid: str) -> Listed[Instance]:
        async def search() -> list[Instance]:
            self._stats.requests[server] += 1
            log.debug("%s: instances of series %s", server, series_uid)
            return await self._searchers[server].find_instances(study_uid, series_uid)

        if self._shared is None:
            return Listed(await search())
        return Listed(*await self._shared.instances(server, series_uid, search))
