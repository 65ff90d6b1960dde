"""Files read in ranges through the FUSE handlers (no kernel): open keeps a
ranged reader instead of the whole content, reads go to it at their offsets,
its errors become errno values, and getattr learns an unknown size without
reading the file whole."""

from __future__ import annotations

import errno

import pyfuse3
import pytest

from tests.fakes.fuse import CTX, DEADLINE
from trolleyfs.errors import Unavailable
from trolleyfs.fuse.ops import Operations
from trolleyfs.stats import Stats
from trolleyfs.tree.base import DirNode, FileNode, StaticDir
from trolleyfs.tree.inodes import InodeTable, UidIndex


class Ranged:
    def __init__(self, data: bytes, fail: bool) -> None:
        self.data, self.fail = data, fail
        self.reads: list[tuple[int, int]] = []

    async def read(self, offset: int, size: int) -> bytes:
        self.reads.append((offset, size))
        if self.fail:
            raise Unavailable("server gone", server="pacs")
        return self.data[offset : offset + size]


class Big(FileNode):
    """A file read only in ranges; its size is known once learned."""

    keep_cache = False

    def __init__(self, parent: DirNode, fail: bool = False) -> None:
        super().__init__("big.zip", parent, 0.0)
        self.data = bytes(range(256)) * 1000
        self.size: int | None = None
        self.ranges = Ranged(self.data, fail)

    def known_size(self) -> int | None:
        return self.size

    async def learn_size(self) -> None:
        self.size = len(self.data)

    async def read_all(self) -> bytes:
        raise AssertionError("never read whole")

    async def open_ranges(self) -> Ranged:
        return self.ranges


def world(fail: bool = False) -> tuple[Operations, int, Big]:
    root = StaticDir("", None, 0.0)
    big = Big(root, fail)
    root.add([big])
    inodes = InodeTable(root, UidIndex())
    return Operations(inodes, Stats(), DEADLINE), inodes.remember(big), big


async def test_getattr_learns_the_size_and_reads_go_to_the_ranges() -> None:
    ops, ino, big = world()
    attrs = await ops.getattr(ino, CTX)
    assert attrs.st_size == len(big.data)
    info = await ops.open(ino, 0, CTX)
    assert not info.keep_cache
    assert bytes(await ops.read(info.fh, 1000, 300)) == big.data[1000:1300]
    assert bytes(await ops.read(info.fh, len(big.data) - 10, 100)) == big.data[-10:]
    assert big.ranges.reads == [(1000, 300), (len(big.data) - 10, 100)]
    await ops.release(info.fh)
    with pytest.raises(pyfuse3.FUSEError) as err:
        await ops.read(info.fh, 0, 10)
    assert err.value.errno == errno.EBADF


async def test_a_failing_range_is_eio() -> None:
    ops, ino, _ = world(fail=True)
    info = await ops.open(ino, 0, CTX)
    with pytest.raises(pyfuse3.FUSEError) as err:
        await ops.read(info.fh, 0, 10)
    assert err.value.errno == errno.EIO
