"""The read path's Store without readahead in the way: single-flight, the size
record, the disk writer at unmount, disk readahead after a disk hit, and the
shape of stats().  A fake fetcher counts every request."""

from __future__ import annotations

from dataclasses import replace

import pytest
import trio
import trio.testing

from tests.fakes.reading import FakeFetcher, MiB, objects_for, opened, part10_object, ref, siblings_of, uids
from trolleyfs.errors import ProtocolError
from trolleyfs.read.disk import DiskCache
from trolleyfs.read.sizes import Sizes
from trolleyfs.stats import Stats


async def test_concurrent_reads_of_one_instance_make_one_fetch(autojump_clock):
    names = uids(3)
    fetcher = FakeFetcher(objects_for(names))
    fetcher.single_gate = trio.Event()
    got: list[bytes] = []
    async with opened(fetcher, readahead="off") as store:

        async def read() -> None:
            got.append(await store.get("pacs", ref(names[0])))

        async with trio.open_nursery() as readers:
            for _ in range(8):
                readers.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            assert store.stats()["prefetch"]["in_flight"] == 1  # type: ignore[index]
            fetcher.single_gate.set()
        assert got == [fetcher.objects[names[0]]] * 8
        assert fetcher.single_calls == [names[0]]
        assert store.stats()["prefetch"]["in_flight"] == 0  # type: ignore[index]
        # a later read comes from memory
        assert await store.get("pacs", ref(names[0])) == fetcher.objects[names[0]]
        assert fetcher.single_calls == [names[0]]


async def test_a_failed_fetch_fails_every_waiting_reader_and_is_not_kept(autojump_clock):
    fetcher = FakeFetcher({})  # knows nothing: fetch_instance raises KeyError (a "bug")
    fetcher.single_gate = trio.Event()
    errors: list[BaseException] = []
    async with opened(fetcher, readahead="off") as store:

        async def read() -> None:
            try:
                await store.get("pacs", ref("1.2.3.4.0"))
            except Exception as exc:
                errors.append(exc)

        async with trio.open_nursery() as readers:
            for _ in range(3):
                readers.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            fetcher.single_gate.set()
        assert len(errors) == 3 and all(isinstance(e, KeyError) for e in errors)
        assert fetcher.single_calls == ["1.2.3.4.0"]
        assert store.size_of("1.2.3.4.0") is None


async def test_size_of_agrees_with_get_also_after_eviction(autojump_clock):
    names = uids(6)
    objects = objects_for(names, size=300 * 1024)
    objects[names[5]] = part10_object(names[5], 2 * MiB)  # larger than the whole memory cache: served, not kept
    fetcher = FakeFetcher(objects)
    async with opened(fetcher, memory_mb=1, readahead="off") as store:
        assert store.size_of(names[0]) is None  # unknown, and asking did not fetch
        assert fetcher.single_calls == []
        got = {u: await store.get("pacs", ref(u)) for u in names}
        memory = store.stats()["memory_cache"]
        assert memory["objects"] < 5  # type: ignore[index]  # the first ones were evicted
        for u in names:
            assert store.size_of(u) == len(got[u]) == len(objects[u])
        assert len(fetcher.single_calls) == 6  # size_of fetched nothing


def test_the_size_record_is_bounded():
    sizes = Sizes(max_entries=3)
    for i in range(4):
        sizes.record(str(i), i * 10)
    assert len(sizes) == 3 and sizes.get("0") is None and sizes.get("3") == 30


async def test_disk_writes_are_drained_at_unmount(tmp_path):
    names = uids(5)
    fetcher = FakeFetcher(objects_for(names, size=50_000))
    async with opened(fetcher, readahead="off", disk_dir=str(tmp_path)) as store:
        for u in names:
            await store.get("pacs", ref(u))
        with trio.fail_after(60):  # a hang guard, not a measurement
            await store.drain()
        await store.get("pacs", ref(names[0]))  # a read after draining still works (from memory)
    disk = DiskCache(str(tmp_path), 10**9)  # what the next mount finds
    assert {u: disk.get(u) for u in names} == fetcher.objects


async def test_disk_readahead_after_a_disk_hit(tmp_path):
    names = uids(8)
    fetcher = FakeFetcher(objects_for(names, size=20_000))
    async with opened(fetcher, readahead="off", disk_dir=str(tmp_path)) as store:
        for u in names:
            await store.get("pacs", ref(u))
        await store.drain()
    assert len(fetcher.single_calls) == 8

    again = FakeFetcher(fetcher.objects)  # a remount: memory empty, disk full
    pushed: dict[str, bytes] = {}
    all_pushed = trio.Event()

    def on_readahead(uid: str, data: bytes) -> None:
        pushed[uid] = data
        if len(pushed) == len(names) - 1:
            all_pushed.set()

    async with opened(again, on_readahead, disk_dir=str(tmp_path)) as store:
        assert store.size_of(names[3]) == len(fetcher.objects[names[3]])  # known from the disk cache
        assert await store.get("pacs", ref(names[3]), siblings_of(names)) == fetcher.objects[names[3]]
        with trio.fail_after(60):  # a hang guard, not a measurement
            await all_pushed.wait()
        await trio.testing.wait_all_tasks_blocked()  # its workers end
        assert pushed == {u: fetcher.objects[u] for u in names if u != names[3]}
        for u in names:
            assert await store.get("pacs", ref(u), siblings_of(names)) == fetcher.objects[u]
        s = store.stats()
        assert s["disk_cache"]["hits"] == 8  # type: ignore[index]  # one read, seven read ahead
        assert s["memory_cache"]["hits"] == 8  # type: ignore[index]  # every file of the second pass
        assert s["prefetch"]["unread_bytes"] == 0  # type: ignore[index]  # all read now
        assert s["prefetch"]["disk_readahead_running"] == 0  # type: ignore[index]
    assert again.single_calls == [] and again.series_calls == []


async def test_stats_has_the_shape_stats_json_shows(tmp_path, autojump_clock):
    names = uids(2)
    fetcher = FakeFetcher(objects_for(names))
    stats = Stats()
    async with opened(fetcher, stats=stats, readahead="off", memory_mb=64) as store:
        await store.get("pacs", ref(names[0]))
        s = store.stats()
        assert s == {
            "memory_cache": {"bytes": 1000, "limit": 64 * MiB, "objects": 1, "hits": 0, "misses": 1},
            "disk_cache": None,
            "prefetch": {
                "series_running": 0,
                "series_pending": 0,
                "in_flight": 0,
                "disk_readahead_running": 0,
                "unread_bytes": 0,
                "budget": 32 * MiB,
            },
            "shared_cache": None,  # no [cache.shared]
        }
        assert stats.instances_fetched == 1 and stats.bytes_fetched["pacs"] == 1000 and stats.requests["pacs"] == 1
    async with opened(fetcher, disk_dir=str(tmp_path), disk_mb=1, memory_mb=1) as store:
        disk = store.stats()["disk_cache"]
        assert disk == {"dir": str(tmp_path), "bytes": 0, "limit": MiB, "hits": 0, "misses": 0, "corrupt": 0}
        assert store.stats()["prefetch"]["budget"] == 16 * MiB  # type: ignore[index]  # the least budget


async def test_the_store_serves_only_the_instance_its_ref_places(autojump_clock):
    """The last gate, whatever the protocol let through and whichever cache it
    comes from: an object of another study (or series, or patient) than the
    ref's is a ProtocolError, counted, and never returned."""
    names = uids(2)
    objects = objects_for(names)
    objects[names[1]] = part10_object(names[1], 2000, study="9.9.9", patient_id="P1")  # filed elsewhere
    stats = Stats()
    async with opened(FakeFetcher(objects), stats=stats, readahead="off") as store:
        with pytest.raises(ProtocolError, match=f"belongs to study 9.9.9, not to study {ref(names[1]).study_uid}"):
            await store.get("pacs", ref(names[1]))
        assert await store.get("pacs", ref(names[0])) == objects[names[0]]
        # from memory now: asked as placed in another series, it is refused
        with pytest.raises(ProtocolError, match="belongs to series"):
            await store.get("pacs", replace(ref(names[0]), series_uid="1.2.3.999"))
        good = replace(ref(names[1]), study_uid="9.9.9")
        assert await store.get("pacs", replace(good, patient_id="P1")) == objects[names[1]]
        with pytest.raises(ProtocolError, match="patient ID 'P1'"):
            await store.get("pacs", replace(good, patient_id="P2"))
        assert stats.misplaced_refused == 3
