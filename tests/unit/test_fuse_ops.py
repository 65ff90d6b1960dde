"""The FUSE handlers called directly, without a kernel, over a small fake
tree: attributes, lookups and their counts, directory paging, reads, errno
translation, and the page-cache pusher with a fake notify_store."""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Awaitable

import pyfuse3
import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from tests.fakes.fuse import CTX, DEADLINE
from trolleyfs.errors import NotFound, TrolleyError, Unavailable
from trolleyfs.fuse.ops import Operations
from trolleyfs.fuse.pagecache import PagePusher
from trolleyfs.idle import overall_bound, progress
from trolleyfs.stats import Stats
from trolleyfs.tree.base import DirNode, FileNode, ListedDir, Node, StaticDir
from trolleyfs.tree.inodes import ROOT_INO, InodeTable, UidIndex


class FakeFile(FileNode):
    """A file whose bytes come from ``data`` (or whose read raises ``error``);
    its size is known only once read, as for a DICOM object."""

    def __init__(
        self, name: str, parent: DirNode, data: bytes = b"", error: BaseException | None = None, uid: str | None = None
    ) -> None:
        super().__init__(name, parent, 1_700_000_000.5)
        self.data, self.error, self.uid = data, error, uid
        self.reads = 0
        self.read = False

    @property
    def instance_uid(self) -> str | None:
        return self.uid

    def known_size(self) -> int | None:
        return len(self.data) if self.read else None

    async def read_all(self) -> bytes:
        self.reads += 1
        if self.error is not None:
            raise self.error
        self.read = True
        return self.data

    def xattrs(self) -> dict[str, str]:
        return {"user.dicom.Modality": "CT"}


class SlowFile(FakeFile):
    async def read_all(self) -> bytes:
        await trio.sleep_forever()
        raise AssertionError


class CountingDir(ListedDir):
    """A listed directory whose listing counts as one request."""

    def __init__(self, name: str, parent: StaticDir, names: list[str]) -> None:
        super().__init__(name, parent, 0.0, ttl=300.0)
        self.names = names
        self.requests = 0

    async def _resolve(self) -> dict[str, Node]:
        self.requests += 1
        return {n: FakeFile(n, self, n.encode()) for n in self.names}


class World:
    def __init__(self) -> None:
        self.root = StaticDir("", None, 0.0)
        self.index = UidIndex()
        self.inodes = InodeTable(self.root, self.index)
        self.stats = Stats()
        self.ops = Operations(self.inodes, self.stats, DEADLINE)
        self.file = FakeFile("a.dcm", self.root, b"0123456789", uid="1.2.3")
        self.listed = CountingDir("listed", self.root, [f"f{i}.dcm" for i in range(5)])
        self.errors: dict[str, BaseException] = {
            "gone.dcm": NotFound("no such instance", server="pacs"),
            "down.dcm": Unavailable("connection refused", server="pacs"),
            "bug.dcm": RuntimeError("a bug"),
            "denied.dcm": TrolleyError("generic"),
        }
        self.root.add(
            [self.file, self.listed, StaticDir(".trolleyfs", self.root, 0.0), SlowFile("slow.dcm", self.root)]
        )
        self.root.add(FakeFile(n, self.root, error=e) for n, e in self.errors.items())

    async def lookup(self, name: str, parent: int = ROOT_INO) -> pyfuse3.EntryAttributes:
        return await self.ops.lookup(parent, os.fsencode(name), CTX)


async def fuse_errno(call: Awaitable[object]) -> int:
    """The errno a handler answered with (it must answer with one)."""
    with pytest.raises(pyfuse3.FUSEError) as info:
        await call
    return info.value.errno


@pytest.fixture
def world() -> World:
    return World()


# ------------------------------------------------------------------ lookup and attributes


async def test_lookup_counts_for_the_kernel_and_gives_directory_and_file_attributes(world: World) -> None:
    d = await world.lookup("listed")
    assert stat.S_ISDIR(d.st_mode) and d.st_mode & 0o777 == 0o555 and d.st_ino != ROOT_INO
    assert d.attr_timeout == d.entry_timeout == 60.0  # min(ttl, 60)
    assert d.st_uid == os.getuid() and d.st_gid == os.getgid()
    f = await world.lookup("a.dcm")
    assert stat.S_ISREG(f.st_mode) and f.st_mode & 0o777 == 0o444
    assert f.st_size == 0 and f.attr_timeout == 0.0  # size unknown: not to be believed
    assert f.st_mtime_ns == 1_700_000_000_500_000_000
    assert world.file.reads == 0  # a lookup reads nothing
    again = await world.lookup("a.dcm")
    assert again.st_ino == f.st_ino and world.inodes.lookups(f.st_ino) == 2
    await world.ops.forget([(f.st_ino, 2), (d.st_ino, 1)])
    assert len(world.inodes) == 1  # only the root is left
    assert world.stats.fuse_ops["lookup"] == 3


async def test_getattr_of_a_file_of_unknown_size_reads_it_once(world: World) -> None:
    ino = (await world.lookup("a.dcm")).st_ino
    a = await world.ops.getattr(ino, CTX)
    assert a.st_size == 10 and a.attr_timeout == 3600.0 and a.st_blocks == 1 and world.file.reads == 1
    a = await world.ops.getattr(ino, CTX)
    assert a.st_size == 10 and world.file.reads == 1  # known now
    root = await world.ops.getattr(ROOT_INO, CTX)
    assert stat.S_ISDIR(root.st_mode) and root.st_ino == ROOT_INO


async def test_lookup_errors(world: World) -> None:
    assert await fuse_errno(world.lookup("nothing")) == errno.ENOENT
    assert await fuse_errno(world.lookup(".")) == errno.ENOENT
    assert await fuse_errno(world.lookup("..")) == errno.ENOENT
    ino = (await world.lookup("a.dcm")).st_ino
    assert await fuse_errno(world.lookup("x", parent=ino)) == errno.ENOTDIR
    assert await fuse_errno(world.ops.getattr(9999, CTX)) == errno.ENOENT  # an inode we never gave out
    assert world.stats.errors == {"ENOENT": 1}  # only our own errors are counted as errors


async def test_desktop_probes_are_enoent_without_a_request(world: World) -> None:
    listed = (await world.lookup("listed")).st_ino
    for name in ("desktop.ini", "Thumbs.db", ".hidden", "autorun.inf", ".DS_Store"):
        assert await fuse_errno(world.lookup(name, parent=listed)) == errno.ENOENT
    assert world.listed.requests == 0
    assert (await world.lookup(".trolleyfs")).st_ino > ROOT_INO  # a known dot name is found
    assert (await world.lookup("f1.dcm", parent=listed)).st_size == 0
    assert world.listed.requests == 1


# ------------------------------------------------------------------ errno translation


async def test_errors_become_their_errno_and_are_counted(world: World) -> None:
    inos = {name: (await world.lookup(name)).st_ino for name in world.errors}
    assert await fuse_errno(world.ops.open(inos["gone.dcm"], os.O_RDONLY, CTX)) == errno.ENOENT
    assert await fuse_errno(world.ops.open(inos["down.dcm"], os.O_RDONLY, CTX)) == errno.EIO
    assert await fuse_errno(world.ops.getattr(inos["down.dcm"], CTX)) == errno.EIO
    assert await fuse_errno(world.ops.open(inos["bug.dcm"], os.O_RDONLY, CTX)) == errno.EIO  # logged, not raised
    assert await fuse_errno(world.ops.open(inos["denied.dcm"], os.O_RDONLY, CTX)) == errno.EIO
    assert world.stats.errors == {"ENOENT": 1, "EIO": 4}
    assert world.stats.fuse_ops["open"] == 4 and world.stats.fuse_ops["getattr"] == 1


async def test_an_operation_past_its_deadline_is_eio(world: World, autojump_clock: trio.abc.Clock) -> None:
    ino = (await world.lookup("slow.dcm")).st_ino
    assert await fuse_errno(world.ops.open(ino, os.O_RDONLY, CTX)) == errno.EIO
    assert world.stats.errors == {"ETIMEDOUT": 1}


class TricklingDir(ListedDir):
    """A listing whose answer arrives in ``gaps`` (each gap ends with a row:
    progress, as a C-FIND row or a body chunk reports it), then ends, or
    falls silent for ever with ``then_silent``."""

    def __init__(self, name: str, parent: StaticDir, gaps: list[float], then_silent: bool = False) -> None:
        super().__init__(name, parent, 0.0, ttl=300.0)
        self.gaps, self.then_silent = gaps, then_silent

    async def _resolve(self) -> dict[str, Node]:
        for gap in self.gaps:
            await trio.sleep(gap)
            progress()
        if self.then_silent:
            await trio.sleep_forever()
        return {f"f{i}.dcm": FakeFile(f"f{i}.dcm", self, b"x") for i in range(len(self.gaps))}


async def test_a_listing_that_keeps_arriving_is_not_cut_by_the_operation_deadline(
    world: World, autojump_clock: trio.abc.Clock
) -> None:
    slow = TricklingDir("slow", world.root, [DEADLINE * 0.9] * 10)  # nine deadlines long, never one silent
    world.root.add([slow])
    ino = (await world.lookup("slow")).st_ino
    looked_up: list[int] = []

    async def lookup_meanwhile() -> None:  # waits for the same listing: its deadline sees that progress too
        looked_up.append((await world.lookup("f3.dcm", parent=ino)).st_ino)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(world.ops.opendir, ino, CTX)
        await trio.sleep(DEADLINE * 0.5)
        nursery.start_soon(lookup_meanwhile)
    assert len(looked_up) == 1 and world.stats.errors == {}
    assert trio.current_time() == pytest.approx(9 * DEADLINE)


async def test_a_listing_that_falls_silent_is_eio_one_deadline_after_its_last_progress(
    world: World, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    world.root.add([TricklingDir("stalls", world.root, [DEADLINE * 0.9] * 3, then_silent=True)])
    ino = (await world.lookup("stalls")).st_ino
    start = trio.current_time()
    assert await fuse_errno(world.ops.opendir(ino, CTX)) == errno.EIO
    assert trio.current_time() - start == pytest.approx(3 * DEADLINE * 0.9 + DEADLINE)
    assert world.stats.errors == {"ETIMEDOUT": 1}
    assert f"opendir: no answer within {DEADLINE:.0f} s" in caplog.text


async def test_a_listing_that_never_ends_is_eio_at_the_overall_bound(
    world: World, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    bound = overall_bound(DEADLINE)
    world.root.add([TricklingDir("endless", world.root, [DEADLINE * 0.5] * int(bound / DEADLINE * 3))])
    ino = (await world.lookup("endless")).st_ino
    start = trio.current_time()
    assert await fuse_errno(world.ops.opendir(ino, CTX)) == errno.EIO
    assert trio.current_time() - start == pytest.approx(bound)
    assert f"opendir: not done after {bound:.0f} s" in caplog.text


async def test_every_write_is_erofs(world: World) -> None:
    ino = (await world.lookup("a.dcm")).st_ino
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC, os.O_WRONLY | os.O_APPEND):
        assert await fuse_errno(world.ops.open(ino, flags, CTX)) == errno.EROFS
    assert world.file.reads == 0
    ops = world.ops
    assert await fuse_errno(ops.write(1, 0, b"x")) == errno.EROFS
    assert await fuse_errno(ops.mkdir(ROOT_INO, b"d", 0o755, CTX)) == errno.EROFS
    assert await fuse_errno(ops.unlink(ROOT_INO, b"a.dcm", CTX)) == errno.EROFS
    assert await fuse_errno(ops.rename(ROOT_INO, b"a.dcm", ROOT_INO, b"b.dcm", 0, CTX)) == errno.EROFS
    assert await fuse_errno(ops.create(ROOT_INO, b"new", 0o644, os.O_WRONLY, CTX)) == errno.EROFS
    assert await fuse_errno(ops.setxattr(ino, b"user.x", b"1", CTX)) == errno.EROFS
    fields = pyfuse3.SetattrFields()
    assert await fuse_errno(ops.setattr(ino, pyfuse3.EntryAttributes(), fields, None, CTX)) == errno.EROFS


# ------------------------------------------------------------------ directories


class Replies:
    """Stands in for pyfuse3.readdir_reply: collects entries, and says the
    buffer is full after ``room`` of them."""

    def __init__(self, room: int = 1000) -> None:
        self.room = room
        self.entries: list[tuple[str, int, int]] = []

    def __call__(self, token: object, name: bytes, attrs: pyfuse3.EntryAttributes, next_id: int) -> bool:
        if len(self.entries) >= self.room:
            return False
        self.entries.append((os.fsdecode(name), attrs.st_ino, next_id))
        return True


async def test_readdir_pages_through_a_snapshot_and_counts_only_entries_sent(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed = (await world.lookup("listed")).st_ino
    fh = await world.ops.opendir(listed, CTX)
    first = Replies(room=2)
    monkeypatch.setattr(pyfuse3, "readdir_reply", first)
    await world.ops.readdir(fh, 0, object())  # type: ignore[arg-type]
    assert [(n, i) for n, _, i in first.entries] == [("f0.dcm", 1), ("f1.dcm", 2)]
    assert len(world.inodes) == 4  # root, listed, and the two sent (the third, not sent, was forgotten)
    rest = Replies()
    monkeypatch.setattr(pyfuse3, "readdir_reply", rest)
    await world.ops.readdir(fh, 2, object())  # type: ignore[arg-type]
    assert [n for n, _, _ in rest.entries] == ["f2.dcm", "f3.dcm", "f4.dcm"]
    for _, ino, _ in first.entries + rest.entries:
        assert world.inodes.lookups(ino) == 1  # readdirplus: one lookup per entry sent
    await world.ops.releasedir(fh)
    assert world.listed.requests == 1


async def test_opendir_of_a_file_and_open_of_a_directory(world: World) -> None:
    f = (await world.lookup("a.dcm")).st_ino
    d = (await world.lookup("listed")).st_ino
    assert await fuse_errno(world.ops.opendir(f, CTX)) == errno.ENOTDIR
    assert await fuse_errno(world.ops.open(d, os.O_RDONLY, CTX)) == errno.EISDIR


async def test_a_failing_listing_is_the_listing_error(world: World) -> None:
    class Broken(CountingDir):
        async def _resolve(self) -> dict[str, Node]:
            raise Unavailable("timeout", server="pacs")

    world.root.add([Broken("broken", world.root, [])])
    ino = (await world.lookup("broken")).st_ino
    assert await fuse_errno(world.ops.opendir(ino, CTX)) == errno.EIO
    assert await fuse_errno(world.lookup("anything", parent=ino)) == errno.EIO


# ------------------------------------------------------------------ files, xattrs, statfs


async def test_open_reads_whole_and_read_slices_it(world: World) -> None:
    ino = (await world.lookup("a.dcm")).st_ino
    info = await world.ops.open(ino, os.O_RDONLY, CTX)
    assert info.keep_cache and not info.direct_io and world.file.reads == 1
    assert bytes(await world.ops.read(info.fh, 2, 3)) == b"234"
    assert bytes(await world.ops.read(info.fh, 8, 100)) == b"89"
    assert bytes(await world.ops.read(info.fh, 20, 5)) == b""
    assert world.file.reads == 1 and world.stats.fuse_ops["read"] == 3
    await world.ops.release(info.fh)
    assert await fuse_errno(world.ops.read(info.fh, 0, 1)) == errno.EBADF


async def test_xattrs_and_statfs(world: World) -> None:
    ino = (await world.lookup("a.dcm")).st_ino
    assert await world.ops.listxattr(ino, CTX) == [b"user.dicom.Modality"]
    assert await world.ops.getxattr(ino, b"user.dicom.Modality", CTX) == b"CT"
    assert await fuse_errno(world.ops.getxattr(ino, b"user.nothing", CTX)) == pyfuse3.ENOATTR
    # other namespaces are not supported (not merely empty): `ls -l` then stops asking each entry
    for name in (b"security.selinux", b"system.posix_acl_access", b"trusted.x"):
        assert await fuse_errno(world.ops.getxattr(ino, name, CTX)) == errno.ENOTSUP
    assert world.stats.fuse_ops["getxattr"] == 5
    s = await world.ops.statfs(CTX)
    assert s.f_files == 2 and s.f_namemax == 255 and s.f_bavail == 0


# ------------------------------------------------------------------ page-cache pushes


async def test_readahead_is_pushed_to_every_inode_showing_the_instance(world: World) -> None:
    stored: list[tuple[int, int, bytes]] = []

    def notify_store(ino: int, offset: int, data: bytes) -> None:
        if ino == failing:
            raise OSError(errno.ENOENT, "the kernel dropped it")
        stored.append((ino, offset, data))

    other = FakeFile("b.dcm", world.root, uid="1.2.3")  # the same instance under another name
    world.root.add([other])
    a = (await world.lookup("a.dcm")).st_ino
    b = (await world.lookup("b.dcm")).st_ino
    failing = -1
    async with trio.open_nursery() as nursery:
        pusher = PagePusher(world.index.inodes_of, nursery, notify_store)
        pusher.push("1.2.3", b"data")
        pusher.push("9.9.9", b"nobody shows this")
    assert sorted(stored) == [(a, 0, b"data"), (b, 0, b"data")]
    await world.ops.forget([(b, 1)])
    stored.clear()
    failing = a
    async with trio.open_nursery() as nursery:
        PagePusher(world.index.inodes_of, nursery, notify_store).push("1.2.3", b"again")
    assert stored == []  # b is forgotten; a failed, quietly


async def test_an_open_waits_until_its_files_pages_are_stored(world: World) -> None:
    # a cold `cp -r` opens each file as its bytes arrive: the open returns once
    # they are in the page cache, so the reads that follow never reach trolleyfs
    gate = threading.Event()
    stored: list[int] = []

    def notify_store(ino: int, offset: int, data: bytes) -> None:
        assert gate.wait(60), "never let through"
        stored.append(ino)

    other = FakeFile("b.dcm", world.root, b"other", uid="4.5.6")
    world.root.add([FakeFile("c.dcm", world.root, b"pushed", uid="1.2.3"), other])
    c = (await world.lookup("c.dcm")).st_ino
    b = (await world.lookup("b.dcm")).st_ino
    opened: list[str] = []
    async with trio.open_nursery() as nursery:
        pusher = PagePusher(world.index.inodes_of, nursery, notify_store)
        ops = Operations(world.inodes, world.stats, DEADLINE, pushes=pusher)
        pusher.push("1.2.3", b"pushed")

        async def open_(ino: int, name: str) -> None:
            info = await ops.open(ino, os.O_RDONLY, CTX)
            opened.append(name)
            await ops.release(info.fh)

        nursery.start_soon(open_, b, "b")  # nothing on its way to b: opens at once
        nursery.start_soon(open_, c, "c")
        await wait_all_tasks_blocked()
        assert opened == ["b"] and stored == []  # c waits for its pages
        gate.set()
    assert opened == ["b", "c"] and stored == [c]
