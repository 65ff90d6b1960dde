"""A fake Fetcher for the read-path tests: serves objects from a dict, counts
every call, and can be told to block, fail, skip objects or go slowly."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from trolleyfs.config import CacheConfig
from trolleyfs.errors import RemoteError, Unavailable
from trolleyfs.model import InstanceRef, SeriesRef
from trolleyfs.read.store import Store
from trolleyfs.stats import Stats

STUDY, SERIES = "1.2.3", "1.2.3.4"
MiB = 2**20


def uids(n: int, series: str = SERIES) -> list[str]:
    """``n`` instance UIDs whose string order (the order series readahead asks
    for them) is their numeric order."""
    assert n <= 90
    return [f"{series}.{10 + i}" for i in range(n)]


def objects_for(names: list[str], size: int = 1000) -> dict[str, bytes]:
    """Distinct contents and distinct sizes per object."""
    return {u: bytes([i % 251]) * (size + i) for i, u in enumerate(names)}


def ref(uid: str) -> InstanceRef:
    return InstanceRef(STUDY, uid.rsplit(".", 1)[0], uid)


def siblings_of(names: list[str]) -> Callable[[], list[str]]:
    return lambda: list(names)


class FakeFetcher:
    name = "fake"

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.single_calls: list[str] = []
        self.series_calls: list[list[str]] = []
        self.pulled = 0  # objects the series streams handed out
        self.closed = 0  # series streams closed
        self.single_gate: trio.Event | None = None  # set: single fetches may answer
        self.series_gate: trio.Event | None = None  # set: series streams may start sending
        self.fail_series_after: int | None = None  # objects sent before a series stream breaks
        self.series_skip: set[str] = set()  # objects a series answer leaves out
        self.series_delay = 0.0  # seconds between objects of a series answer
        self.series_error: type[RemoteError] = Unavailable  # what a broken series stream raises

    async def fetch_instance(self, ref: InstanceRef) -> bytes:
        self.single_calls.append(ref.instance_uid)
        if self.single_gate is not None:
            await self.single_gate.wait()
        return self.objects[ref.instance_uid]

    async def fetch_series(self, ref: SeriesRef, instance_uids: list[str]) -> AsyncIterator[tuple[str, bytes]]:
        self.series_calls.append(list(instance_uids))
        try:
            if self.series_gate is not None:
                await self.series_gate.wait()
            for sent, uid in enumerate(u for u in instance_uids if u not in self.series_skip):
                if self.fail_series_after is not None and sent >= self.fail_series_after:
                    raise self.series_error("connection reset", server="fake", what=f"series {ref.series_uid}")
                if self.series_delay:
                    await trio.sleep(self.series_delay)
                self.pulled += 1
                yield uid, self.objects[uid]
        finally:
            self.closed += 1

    async def aclose(self) -> None:
        pass


@asynccontextmanager
async def opened(
    fetcher: FakeFetcher,
    on_prefetched: Callable[[str, bytes], None] = lambda uid, data: None,
    stats: Stats | None = None,
    **cache: object,
) -> AsyncIterator[Store]:
    """A Store on ``fetcher`` (server "pacs"), its background tasks cancelled on exit."""
    async with trio.open_nursery() as nursery:
        config = CacheConfig(**cache)  # type: ignore[arg-type]
        store = Store(config, {"pacs": fetcher}, stats or Stats(), nursery, on_prefetched)
        yield store
        nursery.cancel_scope.cancel()
