"""The pyfuse3 Operations: thin handlers over :mod:`trolleyfs.tree`.

Every handler goes through :func:`_op`, the one place where errors become
errno values: our errors carry their errno, anything unexpected is logged
with its traceback and becomes EIO.  No exception other than FUSEError ever
reaches pyfuse3's main loop (which would end the mount).  Every handler also
runs under a deadline so that no ``ls``, ``stat`` or ``read`` hangs forever.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pyfuse3
import trio

from .errors import TrolleyError
from .tree import DirNode, FileNode, Node, Tree, is_probe

log = logging.getLogger("trolleyfs.fs")
T = TypeVar("T")

BLOCK = 128 * 1024
DIR_ATTR_TIMEOUT = 60.0


def _op(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    name = fn.__name__

    @functools.wraps(fn)
    async def handler(self: Operations, *args: Any) -> T:
        self.tree.stats.fuse_ops[name] += 1
        try:
            with trio.fail_after(self.op_deadline):
                return await fn(self, *args)
        except pyfuse3.FUSEError:
            raise
        except TrolleyError as exc:
            self._log_error(name, exc)
            self.tree.stats.errors[errno.errorcode.get(exc.errno, str(exc.errno))] += 1
            raise pyfuse3.FUSEError(exc.errno) from None
        except trio.TooSlowError:
            log.warning("%s: no answer within %.0f s", name, self.op_deadline)
            self.tree.stats.errors["ETIMEDOUT"] += 1
            raise pyfuse3.FUSEError(errno.EIO) from None
        except Exception:
            log.exception("%s: unexpected error", name)
            self.tree.stats.errors["EIO"] += 1
            raise pyfuse3.FUSEError(errno.EIO) from None

    return handler


def _erofs(name: str) -> Callable[..., Awaitable[Any]]:
    async def refuse(self: Operations, *args: Any) -> Any:
        raise pyfuse3.FUSEError(errno.EROFS)

    refuse.__name__ = name
    return refuse


def _notify_store(inodes: list[int], data: bytes) -> None:
    for ino in inodes:
        try:
            pyfuse3.notify_store(ino, 0, data)
        except OSError:
            pass  # the kernel dropped the inode, or cannot: it will ask when read


class Operations(pyfuse3.Operations):
    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, tree: Tree, op_deadline: float) -> None:
        super().__init__()
        self.tree = tree
        self.op_deadline = op_deadline
        self.uid, self.gid = os.getuid(), os.getgid()
        self._handles: dict[int, Any] = {}
        self._next_fh = 1
        self._last_error: tuple[str, float] = ("", 0.0)
        self.nursery: trio.Nursery | None = None  # for background page-cache pushes
        self._push_limiter = trio.CapacityLimiter(1)

    def _log_error(self, op: str, exc: TrolleyError) -> None:
        # the same cause for a burst of files (a server down) is logged once
        msg = str(exc)
        now = time.monotonic()
        if msg != self._last_error[0] or now - self._last_error[1] > 30:
            log.warning("%s failed: %s", op, msg)
        self._last_error = (msg, now)

    def _new_handle(self, value: Any) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = value
        return fh

    def push(self, uid: str, data: bytes) -> None:
        """Readahead data: hand it to the kernel's page cache for each file that
        shows this instance, so that reading it costs no FUSE request at all.

        The kernel locks the pages it stores into; a reader of the same file may
        hold one while it waits for this very process to answer its read.  So
        the store runs in a worker thread, never on the loop that answers."""
        inodes = [n.ino for n in self.tree.instance_nodes.get(uid, ()) if n.ino is not None]
        if inodes and self.nursery is not None:
            self.nursery.start_soon(self._push_pages, inodes, data)

    async def _push_pages(self, inodes: list[int], data: bytes) -> None:
        await trio.to_thread.run_sync(_notify_store, inodes, data, limiter=self._push_limiter)

    # ------------------------------------------------------------------ attrs
    def _attrs(self, node: Node) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = node.ino or 0
        a.generation = 0
        a.st_uid, a.st_gid = self.uid, self.gid
        ns = int(node.mtime * 1e9)
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = ns
        a.st_blksize = BLOCK
        if isinstance(node, DirNode):
            a.st_mode = stat.S_IFDIR | 0o555
            a.st_nlink = 2
            a.st_size = 0
            a.attr_timeout = a.entry_timeout = min(node.ttl, DIR_ATTR_TIMEOUT)
        else:
            assert isinstance(node, FileNode)
            size = node.known_size(self.tree)
            a.st_mode = stat.S_IFREG | 0o444
            a.st_nlink = 1
            a.st_size = size or 0
            # an unknown size must not be believed: the kernel asks again (getattr)
            a.attr_timeout = node.attr_timeout if size is not None else 0.0
            a.entry_timeout = 3600.0 if not node.direct_io else 0.0
        a.st_blocks = (a.st_size + 511) // 512
        return a

    async def _attrs_with_size(self, node: Node) -> pyfuse3.EntryAttributes:
        if isinstance(node, FileNode) and node.known_size(self.tree) is None:
            await node.read_all(self.tree)  # the size of a DICOM object is only known once fetched
        return self._attrs(node)

    # ------------------------------------------------------------------ lookups
    @_op
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent = self.tree.node(parent_inode)
        if not isinstance(parent, DirNode):
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        text = os.fsdecode(name)
        if name in (b".", b".."):
            raise pyfuse3.FUSEError(errno.ENOENT)
        control = parent is self.tree.root and text == ".trolleyfs"
        if is_probe(text) and parent.cached_child(text) is None and not control:
            raise pyfuse3.FUSEError(errno.ENOENT)  # desktop probes: no request
        node = await parent.lookup(self.tree, text)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        self.tree.remember(node)
        return self._attrs(node)

    @_op
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext | None = None) -> pyfuse3.EntryAttributes:
        return await self._attrs_with_size(self.tree.node(inode))

    async def forget(self, inode_list: list[tuple[int, int]]) -> None:
        for ino, n in inode_list:
            self.tree.forget(ino, n)

    # ------------------------------------------------------------------ directories
    @_op
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        node = self.tree.node(inode)
        if not isinstance(node, DirNode):
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        # a snapshot per handle: offsets stay stable while the kernel pages through it
        entries = sorted((await node.children(self.tree)).items())
        return self._new_handle(entries)

    @_op
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        entries = self._handles[fh]
        for i in range(start_id, len(entries)):
            name, node = entries[i]
            ino = self.tree.remember(node)  # readdirplus: each entry sent counts as a lookup
            if not pyfuse3.readdir_reply(token, os.fsencode(name), self._attrs(node), i + 1):
                self.tree.forget(ino, 1)  # the buffer was full: this one was not sent
                break

    async def releasedir(self, fh: int) -> None:
        self._handles.pop(fh, None)

    # ------------------------------------------------------------------ files
    @_op
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self.tree.node(inode)
        if isinstance(node, DirNode):
            raise pyfuse3.FUSEError(errno.EISDIR)
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND | os.O_CREAT):
            raise pyfuse3.FUSEError(errno.EROFS)
        assert isinstance(node, FileNode)
        data = await node.read_all(self.tree)
        return pyfuse3.FileInfo(fh=self._new_handle(data), keep_cache=not node.direct_io, direct_io=node.direct_io)

    async def read(self, fh: int, off: int, size: int) -> memoryview:
        # the hot path, and it never waits: no deadline wrapper, no copy (pyfuse3
        # takes any buffer); the object was fetched whole at open
        self.tree.stats.fuse_ops["read"] += 1
        try:
            data: bytes = self._handles[fh]
        except KeyError:
            raise pyfuse3.FUSEError(errno.EBADF) from None
        return memoryview(data)[off : off + size]

    async def release(self, fh: int) -> None:
        self._handles.pop(fh, None)

    @_op
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = BLOCK
        s.f_blocks = s.f_bfree = s.f_bavail = 0
        s.f_files = len(self.tree.nodes)
        s.f_ffree = s.f_favail = 0
        s.f_namemax = 255
        return s

    # ------------------------------------------------------------------ xattrs
    @_op
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        return [k.encode() for k in self.tree.node(inode).xattrs()]

    @_op
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        value = self.tree.node(inode).xattrs().get(os.fsdecode(name))
        if value is None:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return value.encode("utf-8", "surrogateescape")

    # ------------------------------------------------------------------ writes: never
    setattr = _erofs("setattr")
    mknod = _erofs("mknod")
    mkdir = _erofs("mkdir")
    unlink = _erofs("unlink")
    rmdir = _erofs("rmdir")
    symlink = _erofs("symlink")
    rename = _erofs("rename")
    link = _erofs("link")
    create = _erofs("create")
    write = _erofs("write")
    setxattr = _erofs("setxattr")
    removexattr = _erofs("removexattr")
