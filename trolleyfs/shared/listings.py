"""Searches shared through the tier: a study, series or instance search is
asked of the PACS by one node of the cluster and kept in Redis for the TTL
of its level (``folder_ttl``, ``study_ttl``, ``series_ttl``), so N nodes
listing one folder cost one search.  A result comes back with its age, so a
node keeps it only for what is left of its TTL.

Results are stored as JSON (``{"v": 1, "items": [...]}``) through the same
checked, chunked and optionally encrypted values as instances."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from typing import Any, TypeVar

from ..model import Instance, Query, Series, Study
from .leases import Leases
from .once import fetch_once
from .tier import SharedTier

FORMAT_HEAD = b'{"v":1,'
T = TypeVar("T")


def query_name(query: Query) -> str:
    """A study search as a stable name: a hash of everything that shapes its answer."""
    canon = json.dumps(
        {
            "filters": sorted(query.filters.items()),
            "study_date": query.study_date_range(),
            "include": list(query.include_fields),
            "level": query.level.value,
            "limit": query.limit,
        },
        sort_keys=True,
    )
    return hashlib.sha256(canon.encode()).hexdigest()[:32]


def dump(items: Sequence[Any]) -> bytes:
    """A search result (a list of model dataclasses) as stored."""
    return json.dumps({"v": 1, "items": [asdict(i) for i in items]}, separators=(",", ":")).encode()


def _instance(d: dict[str, Any]) -> Instance:
    return Instance(str(d["study_uid"]), str(d["series_uid"]), str(d["uid"]), dict(d["attrs"]))


def _series(d: dict[str, Any]) -> Series:
    inst = d.get("instances")
    return Series(
        str(d["study_uid"]), str(d["uid"]), dict(d["attrs"]), None if inst is None else [_instance(i) for i in inst]
    )


def _study(d: dict[str, Any]) -> Study:
    series = d.get("series")
    return Study(str(d["uid"]), dict(d["attrs"]), None if series is None else [_series(s) for s in series])


def load(raw: bytes, make: Callable[[dict[str, Any]], T]) -> list[T]:
    """The items of a stored result; ValueError if it is not one."""
    try:
        return [make(d) for d in json.loads(raw)["items"]]
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a stored search result: {exc}") from None


class SharedListings:
    """``studies``/``series``/``instances``: ``(result, age in seconds)``, from
    the tier or from ``search`` (asked by one node of the cluster)."""

    def __init__(
        self, tier: SharedTier, leases: Leases, folder_ttl: float, study_ttl: float, series_ttl: float
    ) -> None:
        self._tier, self._leases = tier, leases
        self._ttl = {"studies": folder_ttl, "series": study_ttl, "instances": series_ttl}

    async def studies(
        self, server: str, query: Query, search: Callable[[], Awaitable[list[Study]]]
    ) -> tuple[list[Study], float]:
        return await self._shared("studies", f"{server}/studies/{query_name(query)}", search, _study)

    async def series(
        self, server: str, study_uid: str, search: Callable[[], Awaitable[list[Series]]]
    ) -> tuple[list[Series], float]:
        return await self._shared("series", f"{server}/series/{study_uid}", search, _series)

    async def instances(
        self, server: str, series_uid: str, search: Callable[[], Awaitable[list[Instance]]]
    ) -> tuple[list[Instance], float]:
        return await self._shared("instances", f"{server}/instances/{series_uid}", search, _instance)

    async def _shared(
        self, level: str, name: str, search: Callable[[], Awaitable[list[T]]], make: Callable[[dict[str, Any]], T]
    ) -> tuple[list[T], float]:
        ttl = self._ttl[level]
        if ttl <= 0:
            return await search(), 0.0
        fresh: list[list[T]] = []

        async def fetch() -> bytes:
            fresh.append(await search())
            return dump(fresh[0])

        raw, left = await fetch_once(
            self._tier,
            self._leases,
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
