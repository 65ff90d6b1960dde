"""A zip archive (stored, not compressed) of files that live elsewhere,
streamed: its layout is computed from its members' names and sizes, so its
exact size is known before a byte is read, and a read at any offset builds
just the bytes asked for from the headers and the members' own bytes.  The
archive is never held whole.

Each member's CRC-32 goes into its local header and its central directory
entry; it is computed when the member's bytes are first read and remembered
(:class:`Crcs`), so reading the central directory (which ``unzip`` and
Python's ``zipfile`` do first) reads every member once.  ZIP64 records are
written when the archive or a member reaches 4 GiB or holds 65535 members or
more; names are UTF-8 (flag bit 11)."""

from __future__ import annotations

import bisect
import struct
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import cachetools

from ..errors import TrolleyError

LOCAL = struct.Struct("<IHHHHHIIIHH")  # local file header, 30 bytes
CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # central directory header, 46 bytes
END = struct.Struct("<IHHHHIIH")  # end of central directory, 22 bytes
END64 = struct.Struct("<IQHHIIQQQQ")  # ZIP64 end of central directory record, 56 bytes
LOCATOR64 = struct.Struct("<IIQI")  # ZIP64 end of central directory locator, 20 bytes
LOCAL_EXTRA64 = struct.Struct("<HHQQ")  # ZIP64 extra field: sizes, 20 bytes
CENTRAL_EXTRA64 = struct.Struct("<HHQQQ")  # ZIP64 extra field: sizes and offset, 28 bytes
MAX32, MAX16 = 0xFFFFFFFF, 0xFFFF
UTF8_NAMES = 0x0800
UNIX_READ_ONLY = 0o100444 << 16  # external attributes: a regular file, r--r--r--
CRCS_KEPT = 1_000_000


class MemberChanged(TrolleyError):
    """A member's bytes are not the size the archive was laid out for (EIO)."""


class Crcs:
    """CRC-32 of member contents by cache key (contents never change), bounded."""

    def __init__(self, max_entries: int = CRCS_KEPT) -> None:
        self._lru: cachetools.LRUCache[str, int] = cachetools.LRUCache(maxsize=max_entries)

    def get(self, key: str) -> int | None:
        return self._lru.get(key)

    def of(self, key: str, data: bytes) -> int:
        crc = self._lru.get(key)
        if crc is None:
            crc = self._lru[key] = zlib.crc32(data)
        return crc


@dataclass(frozen=True)
class Member:
    """One file in the archive: its path there, its size, its time, the cache
    key of its content and how to read it."""

    path: str
    size: int
    mtime: float
    key: str
    read: Callable[[], Awaitable[bytes]]


def _dos_time(mtime: float) -> tuple[int, int]:
    t = time.localtime(min(max(mtime, 315532800.0), 4354819199.0))  # 1980-01-01 .. 2107-12-31
    year = min(max(t.tm_year, 1980), 2107)
    return (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2), ((year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday


def _layout(names: Sequence[bytes], sizes: Sequence[int], zip64: bool) -> tuple[list[int], int, int]:
    """Local header offsets, the central directory's offset and its size."""
    offsets, pos = [], 0
    local_extra = LOCAL_EXTRA64.size if zip64 else 0
    for name, size in zip(names, sizes, strict=True):
        offsets.append(pos)
        pos += LOCAL.size + len(name) + local_extra + size
    central_extra = CENTRAL_EXTRA64.size if zip64 else 0
    cd_size = sum(CENTRAL.size + len(n) + central_extra for n in names)
    return offsets, pos, cd_size


def _needs_zip64(names: Sequence[bytes], sizes: Sequence[int]) -> bool:
    if len(names) >= MAX16 or any(s >= MAX32 for s in sizes):
        return True
    _, cd_offset, cd_size = _layout(names, sizes, False)
    return cd_offset + cd_size + END.size > MAX32


def _total(cd_offset: int, cd_size: int, zip64: bool) -> int:
    return cd_offset + cd_size + (END64.size + LOCATOR64.size if zip64 else 0) + END.size


def archive_size(paths: Sequence[str], sizes: Sequence[int]) -> int:
    """The exact size of the archive of these members."""
    names = [p.encode() for p in paths]
    zip64 = _needs_zip64(names, sizes)
    _, cd_offset, cd_size = _layout(names, sizes, zip64)
    return _total(cd_offset, cd_size, zip64)


class ZipStream:
    """An archive of ``members``, read at any offset (a :class:`~trolleyfs.tree.base.Ranges`)."""

    def __init__(self, members: Sequence[Member], crcs: Crcs, force_zip64: bool = False) -> None:
        self.members = list(members)
        self._crcs = crcs
        self._names = [m.path.encode() for m in self.members]
        sizes = [m.size for m in self.members]
        self.zip64 = force_zip64 or _needs_zip64(self._names, sizes)
        self._offsets, self._cd_offset, self._cd_size = _layout(self._names, sizes, self.zip64)
        self._version = 45 if self.zip64 else 20
        self._tail: bytes | None = None  # central directory and end records, once built
        self.size = _total(self._cd_offset, self._cd_size, self.zip64)

    async def read(self, offset: int, size: int) -> bytes:
        """The archive's bytes ``[offset, offset + size)`` (fewer at its end)."""
        end = min(offset + size, self.size)
        out = bytearray()
        pos = offset
        while pos < end:
            if pos >= self._cd_offset:
                tail = await self._tail_bytes()
                out += tail[pos - self._cd_offset : end - self._cd_offset]
                break
            i = bisect.bisect_right(self._offsets, pos) - 1
            header = LOCAL.size + len(self._names[i]) + (LOCAL_EXTRA64.size if self.zip64 else 0)
            start = self._offsets[i]
            data = await self._member_data(i)
            piece: bytes | memoryview
            if pos < start + header:
                h = self._local_header(i, data)
                piece = h[pos - start : min(end, start + header) - start]
            else:
                at = pos - start - header
                piece = memoryview(data)[at : at + (end - pos)]
            out += piece
            pos += len(piece)
        return bytes(out)

    async def _member_data(self, i: int) -> bytes:
        m = self.members[i]
        data = await m.read()
        if len(data) != m.size:  # the layout was computed from this size: never serve a shifted archive
            raise MemberChanged(f"{m.path}: {len(data)} bytes, the archive was laid out for {m.size}")
        self._crcs.of(m.key, data)
        return data

    async def _crc(self, i: int) -> int:
        crc = self._crcs.get(self.members[i].key)
        if crc is None:
            await self._member_data(i)
            crc = self._crcs.get(self.members[i].key)
            assert crc is not None
        return crc

    def _local_header(self, i: int, data: bytes) -> bytes:
        m, name = self.members[i], self._names[i]
        tm, dt = _dos_time(m.mtime)
        crc = self._crcs.of(m.key, data)
        size32 = MAX32 if self.zip64 else m.size
        extra = LOCAL_EXTRA64.pack(1, 16, m.size, m.size) if self.zip64 else b""
        head = LOCAL.pack(0x04034B50, self._version, UTF8_NAMES, 0, tm, dt, crc, size32, size32, len(name), len(extra))
        return head + name + extra

    async def _tail_bytes(self) -> bytes:
        if self._tail is None:
            crcs = [await self._crc(i) for i in range(len(self.members))]
            self._tail = self._central(crcs) + self._end()
        return self._tail

    def _central(self, crcs: list[int]) -> bytes:
        parts = []
        for m, name, crc, off in zip(self.members, self._names, crcs, self._offsets, strict=True):
            tm, dt = _dos_time(m.mtime)
            if self.zip64:
                extra = CENTRAL_EXTRA64.pack(1, 24, m.size, m.size, off)
                size32 = off32 = MAX32
            else:
                extra, size32, off32 = b"", m.size, off
            parts.append(
                CENTRAL.pack(
                    0x02014B50,
                    (3 << 8) | self._version,
                    self._version,
                    UTF8_NAMES,
                    0,
                    tm,
                    dt,
                    crc,
                    size32,
                    size32,
                    len(name),
                    len(extra),
                    0,
                    0,
                    0,
                    UNIX_READ_ONLY,
                    off32,
                )
            )
            parts.append(name + extra)
        return b"".join(parts)

    def _end(self) -> bytes:
        n = len(self.members)
        if not self.zip64:
            return END.pack(0x06054B50, 0, 0, n, n, self._cd_size, self._cd_offset, 0)
        end64_at = self._cd_offset + self._cd_size
        return (
            END64.pack(0x06064B50, END64.size - 12, (3 << 8) | 45, 45, 0, 0, n, n, self._cd_size, self._cd_offset)
            + LOCATOR64.pack(0x07064B50, 0, end64_at, 1)
            + END.pack(0x06054B50, 0, 0, min(n, MAX16), min(n, MAX16), MAX32, MAX32, 0)
        )
