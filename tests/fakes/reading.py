"""A fake Fetcher for the read-path tests: serves objects from a dict, counts
every call, and can be told to block, fail, skip objects or go slowly.  The
objects are minimal Part-10 objects naming their instance, series and study
(the Store serves nothing else)."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from trolleyfs.config import CacheConfig
from trolleyfs.errors import RemoteError, Unavailable
from trolleyfs.model import InstanceRef, SeriesRef
from trolleyfs.read.store import Around, Store
from trolleyfs.stats import Stats
from trolleyfs.wiring import disk_cache, read_settings

STUDY, SERIES = "1.2.3", "1.2.3.4"
MiB = 2**20


def uids(n: int, series: str = SERIES) -> list[str]:
    """``n`` instance UIDs whose string order (the order series readahead asks
    for them) is their numeric order."""
    assert n <= 90
    return [f"{series}.{10 + i}" for i in range(n)]


def _element(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00"
    if vr in (b"OB", b"UN"):
        return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def part10_object(uid: str, size: int, fill: int = 0, study: str = STUDY, patient_id: str = "") -> bytes:
    """A whole Part-10 object (explicit VR little endian) of exactly ``size``
    bytes (even): instance ``uid`` in series ``uid`` less its last component,
    in ``study`` (of ``patient_id``, if given), filled up with bytes of
    ``fill`` (in a private OB element)."""
    series = uid.rsplit(".", 1)[0]
    sop_class = b"1.2.840.10008.5.1.4.1.1.7"
    meta = (
        _element(0x0002, 0x0001, b"OB", b"\x00\x01")
        + _element(0x0002, 0x0002, b"UI", sop_class)
        + _element(0x0002, 0x0003, b"UI", uid.encode())
        + _element(0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1")
    )
    dataset = (
        _element(0x0008, 0x0016, b"UI", sop_class)
        + _element(0x0008, 0x0018, b"UI", uid.encode())
        + (_element(0x0010, 0x0020, b"LO", patient_id.encode()) if patient_id else b"")
        + _element(0x0020, 0x000D, b"UI", study.encode())
        + _element(0x0020, 0x000E, b"UI", series.encode())
    )
    group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(meta))
    head = b"\x00" * 128 + b"DICM" + group_length + meta + dataset
    filler = size - len(head) - 12  # the OB element's header
    if filler < 0 or filler % 2:
        raise ValueError(f"a Part-10 object of {size} bytes cannot be made ({len(head) + 12} at least, even)")
    return head + _element(0x0029, 0x1010, b"OB", bytes([fill]) * filler)


def objects_for(names: list[str], size: int = 1000) -> dict[str, bytes]:
    """Distinct contents and distinct sizes per object (Part-10 objects of
    about ``size`` bytes)."""
    return {u: part10_object(u, size + 2 * i, i % 251) for i, u in enumerate(names)}


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
    on_readahead: Callable[[str, bytes], None] = lambda uid, data: None,
    stats: Stats | None = None,
    **cache: object,
) -> AsyncIterator[Store]:
    """A Store on ``fetcher`` (server "pacs"), its background tasks cancelled on exit."""
    async with trio.open_nursery() as nursery:
        config = CacheConfig(**cache)  # type: ignore[arg-type]
        settings, disk = read_settings(config), disk_cache(config)
        store = Store(settings, {"pacs": fetcher}, stats or Stats(), nursery, Around(disk, on_readahead))
        yield store
        nursery.cancel_scope.cancel()
