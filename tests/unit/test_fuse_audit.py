"""The FUSE handlers with an audit trail and the limits' priorities, called
directly over a real tree (fake searcher and reader): one line per file
opened (at release, with its bytes and their source) and per directory
listed, naming the caller and the objects; an access refused with EIO while
a blocking trail cannot be written; control files not recorded; and a
process that marked itself as background work (as ``trolleyfs prefetch``
does) reads at prefetch priority, nobody else."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyfuse3
import pytest
import trio

from tests.audit_check import until
from tests.fakes.fuse import DEADLINE
from tests.fakes.tree import NAMES, FakeReader, FakeSearcher, child, names_of
from trolleyfs.audit.access import Auditor, subject_of
from trolleyfs.audit.settings import AuditConfig
from trolleyfs.audit.source import served_from
from trolleyfs.audit.trail import AuditTrail
from trolleyfs.config import CacheConfig, Config, Folder
from trolleyfs.fuse.callers import BACKGROUND_XATTR
from trolleyfs.fuse.ops import Operations
from trolleyfs.limits.priority import Priority, current
from trolleyfs.model import InstanceRef
from trolleyfs.stats import Stats
from trolleyfs.tree.base import Node
from trolleyfs.tree.inodes import ROOT_INO, UidIndex
from trolleyfs.wiring import build_tree

STUDY, SERIES = "1.2.840.99.1", "1.2.840.99.1.1"


@dataclass(frozen=True)
class Ctx:
    """What ops read of pyfuse3's RequestContext (whose fields cannot be set)."""

    uid: int
    pid: int
    gid: int = 0
    umask: int = 0


ME = Ctx(os.getuid(), os.getpid())


class NotingReader(FakeReader):
    """Tells the audit its bytes came from ``source``; notes each read's priority."""

    def __init__(self) -> None:
        super().__init__()
        self.source = "disk"
        self.priorities: list[Priority] = []

    async def get(self, server: str, ref: InstanceRef, siblings: Callable[[], list[str]] | None = None) -> bytes:
        self.priorities.append(current().value)
        served_from(self.source)
        return await super().get(server, ref, siblings)


class Mount:
    def __init__(self, tmp_path: Path, on_failure: str = "continue", file: str | None = None) -> None:
        self.audit = Path(file or tmp_path / "audit.jsonl")
        self.trail = AuditTrail(AuditConfig(file=str(self.audit), on_failure=on_failure), retry_s=0.02)
        self.trail.start()
        searcher = FakeSearcher({STUDY: {SERIES: 3}})
        self.reader = NotingReader()
        folders = (Folder("all", "pacs", {"PatientName": "DOE*"}),)
        config = Config(path="test.toml", servers={}, folders=folders, names=NAMES, cache=CacheConfig())
        stats = Stats()
        self.tree = build_tree(config, {"pacs": searcher}, self.reader, stats, UidIndex())
        self.ops = Operations(self.tree.inodes, stats, DEADLINE, Auditor(self.trail))

    async def node(self, *names: str) -> tuple[int, Node]:
        ino = ROOT_INO
        for name in names:
            ino = (await self.ops.lookup(ino, os.fsencode(name), ME)).st_ino  # type: ignore[arg-type]
        return ino, self.tree.inodes.node(ino)

    def lines(self) -> list[dict[str, Any]]:
        self.trail.close()
        return [json.loads(line) for line in self.audit.read_text().splitlines()]


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Mount]:
    m = Mount(tmp_path)
    try:
        yield m
    finally:
        m.trail.close()


async def series_path(m: Mount) -> list[str]:
    (study,) = await names(m, "all")
    (series,) = await names(m, "all", study)
    return ["all", study, series]


async def names(m: Mount, *path: str) -> list[str]:
    return await names_of(await child(m.tree.root, *path))


async def test_a_file_opened_and_released_is_one_line_naming_reader_objects_source_and_bytes(mount: Mount) -> None:
    path = await series_path(mount)
    ino, node = await mount.node(*path, "0001.dcm")
    info = await mount.ops.open(ino, os.O_RDONLY, ME)  # type: ignore[arg-type]
    assert mount.trail.stats()["records"] == 0  # nothing until it is closed
    data = await mount.ops.read(info.fh, 0, 4096)
    await mount.ops.release(info.fh)
    (line,) = [r for r in mount.lines() if r["action"] == "read"]
    ps = await trio.run_process(["ps", "-o", "comm=", "-p", str(os.getpid())], capture_stdout=True)
    comm = ps.stdout.decode().strip()
    assert (line["uid"], line["pid"], line["process"]) == (os.getuid(), os.getpid(), comm)
    assert line["path"] == "/" + "/".join([*path, "0001.dcm"]) == node.path
    assert (line["study"], line["series"], line["instance"]) == (STUDY, SERIES, f"{SERIES}.1")
    assert (line["source"], line["bytes"], line["server"], line["result"]) == ("disk", len(data), "pacs", "ok")


async def test_a_listing_is_a_line_and_a_failed_open_is_a_line_with_its_error(mount: Mount) -> None:
    path = await series_path(mount)
    ino, _ = await mount.node(*path)
    fh = await mount.ops.opendir(ino, ME)  # type: ignore[arg-type]
    await mount.ops.releasedir(fh)
    file_ino, _ = await mount.node(*path, "0002.dcm")

    async def broken(*args: object) -> bytes:
        raise OSError("disk gone")

    mount.reader.get = broken  # type: ignore[method-assign,assignment]  # a reader whose disk is gone
    with pytest.raises(pyfuse3.FUSEError) as info:
        await mount.ops.open(file_ino, os.O_RDONLY, ME)  # type: ignore[arg-type]
    assert info.value.errno == errno.EIO
    listed, failed = mount.lines()[-2:]
    assert (listed["action"], listed["path"], listed["series"], listed["bytes"]) == (
        "list",
        "/" + "/".join(path),
        SERIES,
        0,
    )
    assert (failed["action"], failed["result"], failed["instance"]) == ("read", "EIO", f"{SERIES}.2")


async def test_control_files_are_not_recorded(mount: Mount) -> None:
    ino, _ = await mount.node(".trolleyfs", "stats.json")
    info = await mount.ops.open(ino, os.O_RDONLY, ME)  # type: ignore[arg-type]
    await mount.ops.release(info.fh)
    assert mount.lines() == []


async def test_while_a_blocking_trail_cannot_be_written_opening_fails_with_eio_and_reads_nothing(
    tmp_path: Path,
) -> None:
    m = Mount(tmp_path, on_failure="block", file="/dev/full")
    try:
        path = await series_path(m)  # listing is refused too once the trail fails: list first
        ino, _ = await m.node(*path, "0001.dcm")
        info = await m.ops.open(ino, os.O_RDONLY, ME)  # type: ignore[arg-type]
        await m.ops.release(info.fh)  # its line cannot be written to /dev/full
        await until(lambda: not m.trail.healthy, "the trail to fail")
        before = len(m.reader.gets)
        with pytest.raises(pyfuse3.FUSEError) as refused:
            await m.ops.open(ino, os.O_RDONLY, ME)  # type: ignore[arg-type]
        assert refused.value.errno == errno.EIO and len(m.reader.gets) == before
        dir_ino, _ = await m.node(*path)
        with pytest.raises(pyfuse3.FUSEError):
            await m.ops.opendir(dir_ino, ME)  # type: ignore[arg-type]
        assert m.trail.stats()["refused"] == 2
    finally:
        m.trail.close(timeout=0.5)


async def test_a_process_that_marked_itself_reads_at_prefetch_priority_and_no_other(mount: Mount) -> None:
    path = await series_path(mount)
    ino, _ = await mount.node(*path, "0001.dcm")
    other = await trio.lowlevel.open_process(["sleep", "60"])
    try:
        stranger = Ctx(os.getuid(), other.pid)
        assert await mount.ops.getxattr(ROOT_INO, BACKGROUND_XATTR.encode(), ME) == b"prefetch"  # type: ignore[arg-type]
        for ctx in (ME, stranger):
            info = await mount.ops.open(ino, os.O_RDONLY, ctx)  # type: ignore[arg-type]
            await mount.ops.release(info.fh)
    finally:
        other.kill()
        await other.wait()
    assert mount.reader.priorities[-2:] == [Priority.PREFETCH, Priority.USER]


async def test_the_subject_of_a_node_is_read_from_it_and_its_parents(mount: Mount) -> None:
    path = await series_path(mount)
    _, file = await mount.node(*path, "0003.dcm")
    s = subject_of(file)
    assert (s.study, s.series, s.instance, s.server) == (STUDY, SERIES, f"{SERIES}.3", "pacs")
    _, study = await mount.node(*path[:2])
    s = subject_of(study)
    assert (s.study, s.series, s.instance, s.server) == (STUDY, None, None, "pacs")
    assert subject_of(mount.tree.root).study is None
