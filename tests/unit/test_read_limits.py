"""The read path under the servers' limits, on trio's virtual clock with a
fake fetcher: the background hours (a prefetch's read refused, a user's read
alone while readahead is skipped), the priorities fetches run under (series
readahead, a prefetch, a user joining a prefetch's flight hurries it), and
where the bytes of a read came from, as the audit is told."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from zoneinfo import ZoneInfo

import pytest
import trio
import trio.testing

from tests.fakes.reading import FakeFetcher, objects_for, ref, siblings_of, uids
from trolleyfs.audit.source import noting
from trolleyfs.limits.hours import Hours
from trolleyfs.limits.priority import Priority, current, priority
from trolleyfs.limits.server import Limits, build_limits
from trolleyfs.limits.settings import LimitsConfig
from trolleyfs.limits.window import OutsideHours, Window
from trolleyfs.model import InstanceRef, SeriesRef
from trolleyfs.read.disk import DiskCache
from trolleyfs.read.store import Around, ReadSettings, Store
from trolleyfs.stats import Stats

NOON = dt.datetime(2026, 6, 1, 12, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))


def limits_at(now: dt.datetime, hours: str = "19:00-07:00") -> Limits:
    """The limits of server "pacs" with ``hours``, the wall clock standing at ``now``."""

    def window(server: str, h: Hours) -> Window:
        return Window(server, h, tz=now.tzinfo, now=lambda: now)

    config = LimitsConfig(background_hours=Hours.parse(hours))
    return Limits({"pacs": build_limits("pacs", config, window=window)})


class WatchingFetcher(FakeFetcher):
    """Notes the priority each fetch runs under (the urgency object, to see it hurried)."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        super().__init__(objects)
        self.urgencies: list[tuple[str, object]] = []

    async def fetch_instance(self, ref: InstanceRef) -> bytes:
        self.urgencies.append(("instance", current()))
        return await super().fetch_instance(ref)

    async def fetch_series(self, ref: SeriesRef, instance_uids: list[str]) -> AsyncIterator[tuple[str, bytes]]:
        self.urgencies.append(("series", current()))
        async for item in super().fetch_series(ref, instance_uids):
            yield item


@asynccontextmanager
async def store_of(
    fetcher: FakeFetcher, limits: Limits | None = None, disk: DiskCache | None = None, readahead: int = 2
) -> AsyncIterator[Store]:
    async with trio.open_nursery() as nursery:
        settings = ReadSettings(memory_bytes=64 * 2**20, readahead_series=readahead)
        yield Store(settings, {"pacs": fetcher}, Stats(), nursery, Around(disk, limits=limits))
        nursery.cancel_scope.cancel()


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()
    await trio.sleep(1)  # past the readahead's grace
    await trio.testing.wait_all_tasks_blocked()


async def test_outside_the_hours_a_users_read_fetches_its_file_and_nothing_more(autojump_clock):
    names = uids(6)
    fetcher = FakeFetcher(objects_for(names))
    limits = limits_at(NOON)
    async with store_of(fetcher, limits) as store:
        assert await store.get("pacs", ref(names[0]), siblings_of(names)) == fetcher.objects[names[0]]
        await settle()
        assert await store.get("pacs", ref(names[1]), siblings_of(names)) == fetcher.objects[names[1]]
        await settle()
    assert fetcher.single_calls == names[:2] and fetcher.series_calls == []  # no readahead
    assert limits.of("pacs").outside_hours["readahead"] >= 1


async def test_outside_the_hours_a_prefetchs_read_is_refused_before_anything_is_asked(autojump_clock):
    names = uids(3)
    fetcher = FakeFetcher(objects_for(names))
    async with store_of(fetcher, limits_at(NOON)) as store:
        with priority(Priority.PREFETCH), pytest.raises(OutsideHours, match=r"open at 2026-06-01T19:00") as info:
            await store.get("pacs", ref(names[0]), siblings_of(names))
        assert info.value.errno == 11  # EAGAIN
        assert fetcher.single_calls == [] and fetcher.series_calls == []
        # what is cached is read at any hour
        await store.get("pacs", ref(names[1]), siblings_of(names))
        with priority(Priority.PREFETCH):
            assert await store.get("pacs", ref(names[1])) == fetcher.objects[names[1]]


async def test_inside_the_hours_readahead_runs_at_readahead_priority_and_a_prefetchs_at_its_own(autojump_clock):
    names, others = uids(4), uids(4, series="1.2.3.5")
    fetcher = WatchingFetcher(objects_for(names + others))
    evening = NOON.replace(hour=20)
    async with store_of(fetcher, limits_at(evening)) as store:
        await store.get("pacs", ref(names[0]), siblings_of(names))
        await store.get("pacs", ref(names[1]), siblings_of(names))  # the second file: the series follows
        await settle()
        with priority(Priority.PREFETCH):
            await store.get("pacs", ref(others[0]), siblings_of(others))
            await store.get("pacs", ref(others[1]), siblings_of(others))
        await settle()
    seen = [(kind, u.value) for kind, u in fetcher.urgencies]  # type: ignore[attr-defined]
    assert seen == [
        ("instance", Priority.USER),
        ("series", Priority.READAHEAD),
        ("instance", Priority.PREFETCH),
        ("series", Priority.PREFETCH),
    ]


async def test_a_user_joining_a_prefetchs_fetch_hurries_it_to_the_users_priority(autojump_clock):
    names = uids(2)
    fetcher = WatchingFetcher(objects_for(names))
    fetcher.single_gate = trio.Event()
    async with store_of(fetcher, readahead=0) as store, trio.open_nursery() as readers:

        async def prefetch() -> None:
            with priority(Priority.PREFETCH):
                await store.get("pacs", ref(names[0]))

        readers.start_soon(prefetch)
        await trio.testing.wait_all_tasks_blocked()
        ((_, urgency),) = fetcher.urgencies
        assert urgency.value == Priority.PREFETCH  # type: ignore[attr-defined]
        readers.start_soon(store.get, "pacs", ref(names[0]))  # a user's read of the same file
        await trio.testing.wait_all_tasks_blocked()
        assert urgency.value == Priority.USER  # type: ignore[attr-defined]  # the waiting fetch itself
        fetcher.single_gate.set()
    assert fetcher.single_calls == [names[0]]


async def test_the_audit_is_told_where_a_reads_bytes_came_from(mock_clock, tmp_path):
    mock_clock.autojump_threshold = 1.0  # the disk cache works in threads: no virtual jump while they do
    names = uids(3)
    fetcher = FakeFetcher(objects_for(names))
    disk = DiskCache(str(tmp_path / "disk"), 2**30)

    async def source_of(store: Store, uid: str, siblings: Callable[[], list[str]] | None = None) -> str | None:
        with noting() as note:
            await store.get("pacs", ref(uid), siblings)
        return note.source

    async with store_of(fetcher, disk=disk, readahead=0) as store:
        assert await source_of(store, names[0]) == "pacs"
        assert await source_of(store, names[0]) == "memory"
        await store.drain()
    async with store_of(fetcher, disk=disk, readahead=0) as store:  # a new mount: memory empty, disk kept
        assert await source_of(store, names[0]) == "disk"
        assert await source_of(store, names[0]) == "memory"
        fetcher.single_gate = trio.Event()
        got: list[str | None] = []
        async with trio.open_nursery() as readers:
            readers.start_soon(store.get, "pacs", ref(names[1]))  # someone else starts the fetch
            await trio.testing.wait_all_tasks_blocked()

            async def joiner() -> None:
                got.append(await source_of(store, names[1]))

            readers.start_soon(joiner)
            await trio.testing.wait_all_tasks_blocked()
            fetcher.single_gate.set()
        assert got == ["pacs"]  # a read that waited for a fetch got its bytes from the PACS
