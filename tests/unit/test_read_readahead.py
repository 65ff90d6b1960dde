"""Series readahead, counted at a fake fetcher on trio's virtual clock: when
it starts (after the grace, or at once on a second file), what happens when
its slots are busy, the readahead budget's pause and give-up, the fall back to
single fetches when a series answer fails or lacks an object, and its logs."""

from __future__ import annotations

import logging
from typing import Any, cast

import trio
import trio.testing

from tests.fakes.reading import FakeFetcher, MiB, objects_for, opened, part10_object, ref, siblings_of, uids
from trolleyfs.errors import NotFound
from trolleyfs.read.budget import READAHEAD_PATIENCE_S
from trolleyfs.read.readahead import PROGRESS_EVERY_S, READAHEAD_GRACE_S, RETRY_FAILED_S
from trolleyfs.read.store import Store
from trolleyfs.stats import Stats


def prefetch(store: Store) -> dict[str, Any]:
    return cast("dict[str, Any]", store.stats()["prefetch"])


async def test_the_first_miss_fetches_alone_and_the_series_follows_after_the_grace(autojump_clock):
    names = uids(6)
    fetcher = FakeFetcher(objects_for(names))
    pushed: list[str] = []
    async with opened(fetcher, lambda uid, data: pushed.append(uid)) as store:
        assert await store.get("pacs", ref(names[0]), siblings_of(names)) == fetcher.objects[names[0]]
        assert fetcher.single_calls == [names[0]] and fetcher.series_calls == []
        assert prefetch(store)["series_pending"] == 1
        await trio.sleep(READAHEAD_GRACE_S / 2)
        assert fetcher.series_calls == []  # still in its grace
        await trio.sleep(READAHEAD_GRACE_S)
        assert fetcher.series_calls == [names[1:]]  # one request for the rest
        assert sorted(pushed) == names[1:]  # handed on as they arrived
        for u in names:
            assert await store.get("pacs", ref(u), siblings_of(names)) == fetcher.objects[u]
        assert fetcher.single_calls == [names[0]] and len(fetcher.series_calls) == 1
        assert prefetch(store) == {
            "series_running": 0,
            "series_pending": 0,
            "in_flight": 0,
            "disk_readahead_running": 0,
            "unread_bytes": 0,
            "budget": 256 * MiB,
        }


async def test_a_second_file_of_the_series_starts_it_at_once(autojump_clock):
    names = uids(6)
    fetcher = FakeFetcher(objects_for(names))
    stats = Stats()
    async with opened(fetcher, stats=stats) as store:
        await store.get("pacs", ref(names[0]), siblings_of(names))
        t0 = trio.current_time()
        assert await store.get("pacs", ref(names[1]), siblings_of(names)) == fetcher.objects[names[1]]
        assert trio.current_time() - t0 < READAHEAD_GRACE_S  # virtual time: it did not wait for the grace
        assert fetcher.single_calls == [names[0]] and fetcher.series_calls == [names[1:]]
        assert prefetch(store)["series_pending"] == 0
        await trio.sleep(1)  # the grace of the first file passes: nothing more is started
        assert len(fetcher.series_calls) == 1 and stats.series_prefetches == 1


async def test_readahead_off_fetches_only_what_is_read(autojump_clock):
    names = uids(4)
    fetcher = FakeFetcher(objects_for(names))
    async with opened(fetcher, readahead="off") as store:
        await store.get("pacs", ref(names[0]), siblings_of(names))
        await trio.sleep(1)
        await store.get("pacs", ref(names[1]), siblings_of(names))
        assert fetcher.single_calls == names[:2] and fetcher.series_calls == []


async def test_with_all_slots_busy_a_reader_fetches_its_own_instance(autojump_clock):
    a, b = uids(4, "1.2.3.4"), uids(4, "1.2.3.5")
    fetcher = FakeFetcher(objects_for(a + b))
    fetcher.series_gate = trio.Event()  # series answers hang: the one slot stays busy
    async with opened(fetcher, readahead_series=1) as store:
        await store.get("pacs", ref(a[0]), siblings_of(a))
        await trio.sleep(READAHEAD_GRACE_S * 2)
        assert fetcher.series_calls == [a[1:]] and prefetch(store)["series_running"] == 1
        # another series: its first file alone; after the grace no slot is free
        await store.get("pacs", ref(b[0]), siblings_of(b))
        await trio.sleep(READAHEAD_GRACE_S * 2)
        assert prefetch(store)["series_pending"] == 0 and len(fetcher.series_calls) == 1
        # its next files do not queue behind series a: each is fetched directly
        assert await store.get("pacs", ref(b[1]), siblings_of(b)) == fetcher.objects[b[1]]
        assert await store.get("pacs", ref(b[2]), siblings_of(b)) == fetcher.objects[b[2]]
        assert fetcher.single_calls == [a[0], b[0], b[1], b[2]]
        fetcher.series_gate.set()
        assert await store.get("pacs", ref(a[3]), siblings_of(a)) == fetcher.objects[a[3]]
        assert fetcher.single_calls == [a[0], b[0], b[1], b[2]]  # a[3] came with its series


def big_series(n: int = 20) -> tuple[list[str], FakeFetcher]:
    names = uids(n)
    return names, FakeFetcher({u: part10_object(u, 4 * MiB, i) for i, u in enumerate(names)})


async def test_the_series_stream_pauses_while_unread_bytes_exceed_the_budget(autojump_clock):
    names, fetcher = big_series()
    async with opened(fetcher, memory_mb=64) as store:  # budget 32 MiB
        await store.get("pacs", ref(names[0]), siblings_of(names))
        await trio.sleep(1)
        # 8 objects make 32 MiB (not over); the 9th goes over and the stream waits
        assert fetcher.pulled == 9 and prefetch(store)["unread_bytes"] == 36 * MiB
        await trio.sleep(READAHEAD_PATIENCE_S / 2)
        assert fetcher.pulled == 9 and prefetch(store)["series_running"] == 1
        await store.get("pacs", ref(names[1]), siblings_of(names))  # one read: room for one more
        await trio.testing.wait_all_tasks_blocked()
        assert fetcher.pulled == 10 and prefetch(store)["unread_bytes"] == 36 * MiB
        for u in names[2:]:  # a reader going through the series is never starved
            assert await store.get("pacs", ref(u), siblings_of(names)) == fetcher.objects[u]
        assert fetcher.pulled == 19 and fetcher.single_calls == [names[0]]


async def test_an_unread_prefetch_gives_up_after_its_patience(autojump_clock):
    names, fetcher = big_series()
    stats = Stats()
    async with opened(fetcher, stats=stats, memory_mb=64) as store:
        await store.get("pacs", ref(names[0]), siblings_of(names))
        await trio.sleep(READAHEAD_PATIENCE_S - 1)
        assert prefetch(store)["series_running"] == 1 and fetcher.closed == 0
        await trio.sleep(2 + READAHEAD_GRACE_S)
        assert prefetch(store)["series_running"] == 0 and prefetch(store)["in_flight"] == 0
        assert fetcher.pulled == 9 and fetcher.closed == 1  # the stream was closed, not left hanging
        # what was prefetched is still served from memory; the rest is fetched on demand
        assert await store.get("pacs", ref(names[5]), siblings_of(names)) == fetcher.objects[names[5]]
        assert await store.get("pacs", ref(names[15]), siblings_of(names)) == fetcher.objects[names[15]]
        assert fetcher.single_calls == [names[0], names[15]] and len(fetcher.series_calls) == 1


async def read_all_at_once(store, names: list[str]) -> dict[str, bytes]:
    got: dict[str, bytes] = {}

    async def read(u: str) -> None:
        got[u] = await store.get("pacs", ref(u), siblings_of(names))

    async with trio.open_nursery() as readers:
        for u in names:
            readers.start_soon(read, u)
    return got


async def test_readers_fall_back_to_single_fetches_when_the_series_fetch_fails(autojump_clock):
    names = uids(8)
    fetcher = FakeFetcher(objects_for(names))
    fetcher.fail_series_after = 3
    async with opened(fetcher) as store:
        await store.get("pacs", ref(names[0]), siblings_of(names))
        got = await read_all_at_once(store, names[1:])  # all wait on the series' flights
        assert got == {u: fetcher.objects[u] for u in names[1:]}
        assert fetcher.series_calls == [names[1:]] and fetcher.closed == 1
        assert fetcher.single_calls[0] == names[0]
        assert sorted(fetcher.single_calls[1:]) == names[4:]  # the three sent were not asked again


async def test_an_instance_missing_from_the_series_answer_is_fetched_alone(autojump_clock):
    names = uids(6)
    fetcher = FakeFetcher(objects_for(names))
    fetcher.series_skip = {names[4]}
    async with opened(fetcher) as store:
        await store.get("pacs", ref(names[0]), siblings_of(names))
        got = await read_all_at_once(store, names[1:])
        assert got == {u: fetcher.objects[u] for u in names[1:]}
        assert fetcher.series_calls == [names[1:]] and fetcher.single_calls == [names[0], names[4]]
        assert store.size_of(names[4]) == len(fetcher.objects[names[4]])


async def test_a_long_series_prefetch_logs_its_progress(autojump_clock, caplog):
    names = uids(8)
    fetcher = FakeFetcher(objects_for(names))
    fetcher.series_delay = 2.1  # 7 objects over 14.7 s
    caplog.set_level(logging.INFO, logger="trolleyfs.store")
    async with opened(fetcher) as store:
        await store.get("pacs", ref(names[0]), siblings_of(names))
        await trio.sleep(20)
        progress = [r.getMessage() for r in caplog.records if "so far" in r.getMessage()]
        assert PROGRESS_EVERY_S == 5.0  # so: reports after the objects at 6.3 s and 10.5 s
        assert [p.split(": ", 1)[1] for p in progress] == [
            "3 of 7 instances, 0.0 MB so far",
            "5 of 7 instances, 0.0 MB so far",
        ]
        assert any("7 instances, 0.0 MB in" in r.getMessage() for r in caplog.records)


async def test_prefetched_objects_evicted_unread_are_counted_and_leave_the_budget(autojump_clock):
    names = uids(6)
    fetcher = FakeFetcher(objects_for(names, size=300 * 1024))
    stats = Stats()
    async with opened(fetcher, stats=stats, memory_mb=1) as store:  # room for three objects
        await store.get("pacs", ref(names[0]), siblings_of(names))
        await trio.sleep(1)
        assert fetcher.pulled == 5
        # the file read went first (no count), then two prefetched ones nobody read
        assert stats.prefetched_unused_evicted == 2
        assert prefetch(store)["unread_bytes"] == sum(len(fetcher.objects[u]) for u in names[3:])
        assert store.stats()["memory_cache"]["objects"] == 3  # type: ignore[index]
        assert await store.get("pacs", ref(names[1]), siblings_of(names)) == fetcher.objects[names[1]]
        assert fetcher.single_calls == [names[0], names[1]]  # evicted: fetched again


async def test_a_reader_out_of_order_is_not_held_by_a_paused_stream(autojump_clock):
    """The stream pauses at the budget before it reaches the file a reader jumps
    to: that file is fetched alone at once, and the stream stays paused."""
    names, fetcher = big_series()
    async with opened(fetcher, memory_mb=64) as store:  # budget 32 MiB: the stream pauses after 9 objects
        await store.get("pacs", ref(names[0]), siblings_of(names))
        await trio.sleep(1)
        assert fetcher.pulled == 9 and prefetch(store)["series_running"] == 1
        assert await store.get("pacs", ref(names[15]), siblings_of(names)) == fetcher.objects[names[15]]
        assert fetcher.single_calls == [names[0], names[15]]
        assert prefetch(store)["series_running"] == 1 and fetcher.pulled == 9  # still paused, not abandoned
        # a file the stream is about to bring while it runs is still taken from the stream
        for u in names[1:15]:
            assert await store.get("pacs", ref(u), siblings_of(names)) == fetcher.objects[u]
        assert fetcher.single_calls == [names[0], names[15]]


# --------------------------------------------------------------------------- failed series are remembered


async def _read_all(store, names: list[str]) -> None:
    for u in names:
        await store.get("pacs", ref(u), siblings_of(names))
        await trio.sleep(READAHEAD_GRACE_S * 2)


async def test_a_series_the_server_refuses_is_asked_once_then_read_file_by_file(autojump_clock, caplog):
    """A 404 for series retrieval (a server without it): one series request for
    the whole server, one warning, every file read alone at once."""
    a, b = uids(20, "1.2.3.4"), uids(10, "1.2.3.5")
    fetcher = FakeFetcher(objects_for(a + b))
    fetcher.fail_series_after, fetcher.series_error = 0, NotFound
    caplog.set_level(logging.INFO, logger="trolleyfs.store")
    async with opened(fetcher) as store:
        await _read_all(store, a)
        await _read_all(store, b)
        assert len(fetcher.series_calls) == 1
        assert sorted(fetcher.single_calls) == sorted(a + b)  # each file once, alone
        warned = [r for r in caplog.records if "series retrieval failed" in r.getMessage()]
        assert len(warned) == 1 and "one by one" in warned[0].getMessage()


async def test_timeouts_skip_the_series_then_the_server_then_it_is_tried_again(autojump_clock):
    """A series whose fetch times out is not asked again; a second such series
    makes the whole server read file by file, for RETRY_FAILED_S."""
    a, b, c, d = uids(6, "1.2.3.4"), uids(6, "1.2.3.5"), uids(6, "1.2.3.6"), uids(6, "1.2.3.7")
    fetcher = FakeFetcher(objects_for(a + b + c + d))
    fetcher.fail_series_after = 0  # Unavailable, as a timeout is
    async with opened(fetcher) as store:
        await _read_all(store, a)
        assert len(fetcher.series_calls) == 1  # not once per file read
        await _read_all(store, b)
        assert len(fetcher.series_calls) == 2
        await _read_all(store, c)
        assert len(fetcher.series_calls) == 2  # two in a row: the server is skipped
        fetcher.fail_series_after = None
        await trio.sleep(RETRY_FAILED_S)
        await store.get("pacs", ref(d[0]), siblings_of(d))
        await trio.sleep(READAHEAD_GRACE_S * 2)
        assert fetcher.series_calls[2] == d[1:]  # tried again after the pause


async def test_a_series_answer_without_any_object_asked_for_counts_as_failed(autojump_clock):
    names = uids(8)
    fetcher = FakeFetcher(objects_for(names))
    fetcher.series_skip = set(names)  # answers, but holds none of them (damaged parts were left out)
    async with opened(fetcher) as store:
        await _read_all(store, names)
        assert len(fetcher.series_calls) == 1
        assert sorted(fetcher.single_calls) == names
