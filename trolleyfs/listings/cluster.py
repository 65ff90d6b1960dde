"""Searches shared through the cluster tier: a study, series or instance
search is asked of the PACS by one node of the cluster and kept in Redis for
the TTL of its level (:class:`~.sources.ListingTTLs`), so N
nodes listing one folder cost one search.  A result comes back with its age,
so a node keeps it only for what is left of its TTL.

Results are stored as ``{"v": 2, "items": [...]}`` (:mod:`.codec`) through the
same checked, chunked and optionally encrypted values as instances.  Version
1 (each item a dataclass dump) is no longer read: such a value is asked again
and replaced, as an expired one is."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ..cluster.once import Cluster, fetch_once
from ..model import Instance, Series, Study
from .codec import Listed, decode_instance, decode_series, decode_study, dumps, from_items, items
from .identity import short_name
from .ttls import ListingTTLs

FORMAT = 2
FORMAT_HEAD = b'{"v":2,'
T = TypeVar("T", bound=Listed)


def dump(result: Sequence[Listed]) -> bytes:
    """A search result as stored."""
    return dumps({"v": FORMAT, "items": items(result)})


def load(raw: bytes, decode: Callable[[Any], T]) -> list[T]:
    """The items of a stored result; ValueError if it is not one."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not a stored search result: not JSON") from None
    if not isinstance(doc, dict) or doc.get("v") != FORMAT or "items" not in doc:
        raise ValueError("not a stored search result")
    return from_items(doc["items"], decode)


class ClusterListings:
    """``studies``/``series``/``instances``: ``(result, age in seconds)``, from
    the tier or from ``search`` (asked by one node of the cluster)."""

    def __init__(self, cluster: Cluster, ttls: ListingTTLs) -> None:
        self._cluster = cluster
        self._tier = cluster.tier
        self._ttls = ttls

    async def studies(
        self, server: str, key: str, search: Callable[[], Awaitable[list[Study]]]
    ) -> tuple[list[Study], float]:
        """``key``: the search's identity (:func:`.identity.search_key`)."""
        return await self._shared("studies", f"{server}/studies/{short_name(key)}", search, decode_study)

    async def series(
        self, server: str, study_uid: str, search: Callable[[], Awaitable[list[Series]]]
    ) -> tuple[list[Series], float]:
        return await self._shared("series", f"{server}/series/{study_uid}", search, decode_series)

    async def instances(
        self, server: str, series_uid: str, search: Callable[[], Awaitable[list[Instance]]]
    ) -> tuple[list[Instance], float]:
        return await self._shared("instances", f"{server}/instances/{series_uid}", search, decode_instance)

    async def _shared(
        self, level: str, name: str, search: Callable[[], Awaitable[list[T]]], make: Callable[[Any], T]
    ) -> tuple[list[T], float]:
        ttl: float = getattr(self._ttls, level)
        if ttl <= 0:
            return await search(), 0.0
        fresh: list[list[T]] = []

        async def fetch() -> bytes:
            fresh.append(await search())
            return dump(fresh[0])

        raw, left = await fetch_once(
            self._cluster,
            self._tier.key("l", name),
            f"l:{name}",
            fetch,
            ttl,
            accept=lambda raw: raw.startswith(FORMAT_HEAD),
        )
        if left is None:
            self._tier.counters.listing_misses += 1
            return fresh[0], 0.0
        try:
            items = load(raw, make)
        except ValueError:
            return await search(), 0.0
        self._tier.counters.listing_hits += 1
        return items, max(0.0, ttl - left)
