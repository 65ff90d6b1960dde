"""Searches for the tree: each asked of the named server's searcher, counted
in :class:`~trolleyfs.stats.Stats` (one request per search) and logged."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ..model import Instance, Query, Searcher, Series, Study
from ..stats import Stats

log = logging.getLogger("trolleyfs.tree")


class Listings:
    def __init__(self, searchers: Mapping[str, Searcher], stats: Stats) -> None:
        self._searchers = dict(searchers)
        self._stats = stats

    @property
    def servers(self) -> tuple[str, ...]:
        """The servers, in the order of the config."""
        return tuple(self._searchers)

    async def find_studies(self, server: str, query: Query) -> list[Study]:
        self._stats.requests[server] += 1
        log.debug("%s: study search %s", server, dict(query.filters))
        studies = await self._searchers[server].find_studies(query)
        log.debug("%s: %d studies", server, len(studies))
        return studies

    async def find_series(self, server: str, study_uid: str) -> list[Series]:
        self._stats.requests[server] += 1
        log.debug("%s: series of study %s", server, study_uid)
        return await self._searchers[server].find_series(study_uid)

    async def find_instances(self, server: str, study_uid: str, series_uid: str) -> list[Instance]:
        self._stats.requests[server] += 1
        log.debug("%s: instances of series %s", server, series_uid)
        return await self._searchers[server].find_instances(study_uid, series_uid)
