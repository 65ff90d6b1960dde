"""The derived-objects cache: bundles kept in memory and in the disk cache
(the real one, through the Store's cache layer) under keys that cannot be an
instance's; one make per key at a time, not cancelled with a reader; what is
not final, or failed, kept nowhere; readers' deadlines hear a busy make."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from trolleyfs.errors import RemoteError
from trolleyfs.idle import idle_deadline
from trolleyfs.read.caches import Caches
from trolleyfs.read.derived import Bundle, Busy, DerivedCache, decode, encode
from trolleyfs.read.disk import DiskCache
from trolleyfs.read.memory import MemoryCache

KEY = DerivedCache.key("nifti", "nifti:dcm2niix-v1:in:z6", "1.2.3", "", "abc")
VOLUME = Bundle((("series.json", b'{"a": 1}'), ("series.nii.gz", b"\x1f\x8b" + bytes(range(256)) * 4)))


class Maker:
    """A make that counts its runs and answers what it is told to."""

    def __init__(self, answer: Bundle = VOLUME, sleep: float = 0.0, busy: bool = False) -> None:
        self.answer, self.sleep, self.busy = answer, sleep, busy
        self.runs = 0
        self.failure: Exception | None = None

    async def __call__(self, busy: Busy) -> Bundle:
        self.runs += 1
        if self.busy:
            with busy():
                await trio.sleep(self.sleep)
        else:
            await trio.sleep(self.sleep)
        if self.failure is not None:
            raise self.failure
        return self.answer


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as n:
        yield n
        n.cancel_scope.cancel()


def test_a_bundle_is_one_blob_and_back() -> None:
    for bundle in (VOLUME, Bundle((), "dcm2niix: No valid DICOM images were found (exit status 2)"), Bundle()):
        assert decode(encode(bundle)) == bundle
    blob = encode(VOLUME)
    for bad in (b"", b"\x00" * 40, blob[:-1], blob + b"x", blob.replace(b"derived-1", b"derived-9")):
        with pytest.raises(ValueError, match="derived-object blob"):
            decode(bad)


def test_keys_cannot_be_an_instance_s() -> None:
    assert KEY.startswith("derived:") and "@" not in KEY.split("\t")[0]
    with pytest.raises(ValueError, match="tab"):
        DerivedCache.key("nifti", "a\tb")


async def test_a_second_read_is_made_once_and_served_from_memory(nursery: trio.Nursery) -> None:
    cache, make = DerivedCache(2**20, None, nursery), Maker()
    assert cache.manifest(KEY) is None
    assert await cache.get(KEY, make) == VOLUME
    assert await cache.get(KEY, make) == VOLUME
    assert make.runs == 1 and cache.made == 1 and cache.memory_hits == 1
    assert cache.manifest(KEY) == (("series.json", 8), ("series.nii.gz", 1026))
    with pytest.raises(ValueError, match="not a derived-object key"):
        await cache.get("1.2.3", make)


async def test_readers_at_once_share_one_make(nursery: trio.Nursery) -> None:
    cache, make = DerivedCache(2**20, None, nursery), Maker(sleep=0.05)
    got: list[Bundle] = []

    async def read() -> None:
        got.append(await cache.get(KEY, make))

    async with trio.open_nursery() as readers:
        for _ in range(5):
            readers.start_soon(read)
    assert make.runs == 1 and got == [VOLUME] * 5 and cache.stats()["in_flight"] == 0


async def test_what_is_not_final_is_made_again(nursery: trio.Nursery) -> None:
    timed_out = Bundle((), "dcm2niix: did not finish within 300 s (killed)", final=False)
    cache, make = DerivedCache(2**20, None, nursery), Maker(timed_out)
    assert await cache.get(KEY, make) == timed_out
    make.answer = VOLUME
    assert await cache.get(KEY, make) == VOLUME
    assert await cache.get(KEY, make) == VOLUME
    assert make.runs == 2 and cache.not_kept == 1


async def test_a_final_empty_answer_is_kept(nursery: trio.Nursery) -> None:
    nothing = Bundle((), "dcm2niix: No valid DICOM images were found (exit status 2)")
    cache, make = DerivedCache(2**20, None, nursery), Maker(nothing)
    assert await cache.get(KEY, make) == nothing
    assert await cache.get(KEY, make) == nothing
    assert make.runs == 1 and cache.manifest(KEY) == ()


async def test_a_failed_read_of_the_series_fails_its_readers_and_is_tried_again(nursery: trio.Nursery) -> None:
    cache, make = DerivedCache(2**20, None, nursery), Maker(sleep=0.01)
    make.failure = RemoteError("the PACS said 503")
    got: list[BaseException] = []

    async def read() -> None:
        try:
            await cache.get(KEY, make)
        except RemoteError as exc:
            got.append(exc)

    async with trio.open_nursery() as readers:
        readers.start_soon(read)
        readers.start_soon(read)
    assert len(got) == 2 and all(e is make.failure for e in got) and make.runs == 1
    make.failure = None
    assert await cache.get(KEY, make) == VOLUME and make.runs == 2


async def test_a_bug_in_a_make_is_eio_and_logged(nursery: trio.Nursery, caplog: pytest.LogCaptureFixture) -> None:
    cache, make = DerivedCache(2**20, None, nursery), Maker()
    make.failure = KeyError("oops")
    with (
        caplog.at_level(logging.ERROR, "trolleyfs.views"),
        pytest.raises(RemoteError, match="cannot make the nifti view"),
    ):
        await cache.get(KEY, make)
    assert any(r.getMessage().startswith("making the nifti view ") for r in caplog.records)
    assert not any("1.2.3" in r.getMessage() for r in caplog.records)  # the key's parts are not logged


async def test_a_reader_that_gives_up_does_not_waste_the_make(nursery: trio.Nursery) -> None:
    cache, make = DerivedCache(2**20, None, nursery), Maker(sleep=0.2)
    with trio.move_on_after(0.05) as scope:
        await cache.get(KEY, make)
    assert scope.cancelled_caught
    assert await cache.get(KEY, make) == VOLUME
    assert make.runs == 1


async def test_a_bundle_larger_than_memory_is_served_not_kept(nursery: trio.Nursery) -> None:
    cache, make = DerivedCache(100, None, nursery), Maker()
    assert await cache.get(KEY, make) == VOLUME
    assert await cache.get(KEY, make) == VOLUME
    assert make.runs == 2 and cache.stats()["bundles"] == 0
    assert cache.manifest(KEY) == VOLUME.manifest()


async def test_a_busy_make_keeps_its_readers_deadlines_alive(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    """A conversion longer than a read's silence deadline does not fail the
    read while it says it is busy; a make that only waits (for a server that
    says nothing) does, and what it makes is still kept for the next read."""
    cache = DerivedCache(2**20, None, nursery)
    busy = Maker(sleep=100.0, busy=True)
    with idle_deadline(5.0):
        assert await cache.get(KEY, busy) == VOLUME
    quiet = Maker(sleep=100.0)
    other = DerivedCache.key("preview", "p", "1.2.3", "", "abc")
    with pytest.raises(trio.TooSlowError), idle_deadline(5.0):
        await cache.get(other, quiet)
    await trio.sleep(200)
    assert await cache.get(other, quiet) == VOLUME and quiet.runs == 1


async def test_bundles_outlive_a_remount_in_the_disk_cache(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Written by the Store's disk writer beside the instances (drained at
    unmount), read back by the next mount without a make; an instance under
    the same UID is another file."""
    disk_dir = tmp_path / "disk"
    async with trio.open_nursery() as n:
        caches = Caches(MemoryCache(2**20), DiskCache(str(disk_dir), 2**24), n)
        cache = DerivedCache(2**20, caches, n)
        assert await cache.get(KEY, Maker()) == VOLUME
        caches.keep("1.2.3", b"an instance")
        await caches.to_disk("1.2.3", b"an instance")
        await caches.drain()
        n.cancel_scope.cancel()
    async with trio.open_nursery() as n:
        disk = DiskCache(str(disk_dir), 2**24)
        assert disk.get("1.2.3") == b"an instance" and disk.size_of(KEY) == len(encode(VOLUME))
        caches = Caches(MemoryCache(2**20), disk, n)
        cache, make = DerivedCache(2**20, caches, n), Maker()
        assert await cache.get(KEY, make) == VOLUME
        assert make.runs == 0 and cache.disk_hits == 1 and cache.manifest(KEY) == VOLUME.manifest()
        # a file under a derived key that is not a bundle (passed its checksum): made anew, said once
        other = DerivedCache.key("preview", "p", "1.2.3", "", "abc")
        disk.put(other, b"not a bundle")
        with caplog.at_level(logging.WARNING, "trolleyfs.views"):
            assert await cache.get(other, make) == VOLUME
        assert make.runs == 1 and sum("not a derived object" in r.getMessage() for r in caplog.records) == 1
        n.cancel_scope.cancel()
