"""The pyfuse3 Operations: thin handlers over the tree's inode table.

Every handler that may wait goes through :func:`_op`, the one place where
errors become errno values: our errors carry their errno, anything
unexpected is logged with its traceback and becomes EIO; and the one place
that bounds an operation's time, so that no ``ls``, ``stat`` or ``open``
hangs forever: an idle deadline (:mod:`trolleyfs.idle`), which the remote
answers the operation waits for move on while they arrive (a folder listing
that is a 20,000-row C-FIND is not cut off while rows come in), within an
overall bound.  No exception other than FUSEError ever reaches pyfuse3's
main loop (which would end the mount).  Three handlers never wait and so
have no deadline: ``read`` of a file held whole (its bytes came at ``open``;
a file read in ranges goes through ``_op``), ``forget`` and ``release``.

Handlers that may fetch run in the priority of their caller (a user's
request, or a ``trolleyfs prefetch`` that marked itself: :mod:`.callers`),
which the servers' limits serve in that order.  With an audit trail, each
file opened is recorded when it is released (who opened it, what it shows,
where its bytes came from, how many it held) and each directory when it is
listed (:mod:`trolleyfs.audit.access`); an access the trail refuses (its
``on_failure = "block"``) fails with EIO before anything is read.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Concatenate, ParamSpec, TypeVar

import pyfuse3
import trio

from ..audit.access import Access, Auditor
from ..audit.source import SourceNote, noting
from ..errors import TrolleyError
from ..idle import IdleDeadline, idle_deadline, overall_bound, timed_out
from ..limits.priority import Priority, priority
from ..stats import Stats
from ..tree.base import DirNode, FileNode, Node, Ranges
from ..tree.inodes import InodeTable
from .callers import BACKGROUND_XATTR, Caller, Callers
from .pagecache import PagePusher

log = logging.getLogger("trolleyfs.fs")
T = TypeVar("T")
P = ParamSpec("P")

BLOCK = 128 * 1024
DIR_ATTR_TIMEOUT = 60.0
FILE_ENTRY_TIMEOUT = 3600.0
SAME_ERROR_QUIET_S = 30.0  # the same error again within this time is not logged again
LEARNT_KEPT = 4096  # stats that fetched a file, remembered for the open that follows
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND | os.O_CREAT


def _op(
    fn: Callable[Concatenate[Operations, P], Awaitable[T]],
) -> Callable[Concatenate[Operations, P], Coroutine[Any, Any, T]]:
    """Count the call, bound its time, and turn every error into a FUSEError."""
    name = fn.__name__

    @functools.wraps(fn)
    async def handler(self: Operations, /, *args: P.args, **kwargs: P.kwargs) -> T:
        self._stats.fuse_ops[name] += 1
        idle = self._op_deadline
        deadline: IdleDeadline | None = None
        try:
            with idle_deadline(idle, overall_bound(idle)) as deadline:
                return await fn(self, *args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except TrolleyError as exc:
            self._log_error(name, exc)
            self._stats.errors[errno.errorcode.get(exc.errno, str(exc.errno))] += 1
            raise pyfuse3.FUSEError(exc.errno) from None
        except trio.TooSlowError:
            log.warning("%s: %s", name, timed_out(deadline, idle))
            self._stats.errors["ETIMEDOUT"] += 1
            raise pyfuse3.FUSEError(errno.EIO) from None
        except Exception:
            log.exception("%s: unexpected error", name)
            self._stats.errors["EIO"] += 1
            raise pyfuse3.FUSEError(errno.EIO) from None

    return handler


def _result(exc: BaseException) -> str:
    """What the reader got, as the audit records it (an errno name)."""
    if isinstance(exc, (pyfuse3.FUSEError, TrolleyError)):
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return "EIO"


def _noting(access: Access | None) -> AbstractContextManager[SourceNote | None]:
    return noting(access.note) if access is not None else nullcontext()


def _erofs(name: str) -> Any:
    """A handler for a write operation: always EROFS.  (Typed ``Any``: it stands
    in for handlers of many signatures, and ignores its arguments.)"""

    async def refuse(self: Operations, *args: object) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    refuse.__name__ = name
    return refuse


class Operations(pyfuse3.Operations):
    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(
        self,
        inodes: InodeTable,
        stats: Stats,
        op_deadline: float,
        audit: Auditor | None = None,
        pushes: PagePusher | None = None,
    ) -> None:
        """``op_deadline``: seconds one operation may go without progress, all
        retries included (and at most :func:`~trolleyfs.idle.overall_bound` of it in all);
        ``audit``: where accesses are recorded (None: nowhere); ``pushes``:
        what stores readahead into the page cache (an open waits for its file's)."""
        super().__init__()
        self._pushes = pushes
        self._inodes = inodes
        self._stats = stats
        self._op_deadline = op_deadline
        self._audit = audit
        self._callers = Callers(audit=audit is not None)
        self._accesses: dict[int, Access] = {}  # open files being audited
        self._learnt: dict[int, tuple[int, str]] = {}  # inode -> (thread, source) of a stat that fetched it
        self._urgency: dict[int, Priority] = {}  # open files read in ranges: their opener's priority
        self._uid, self._gid = os.getuid(), os.getgid()
        self._dirs: dict[int, list[tuple[str, Node]]] = {}  # open directories: their entries
        self._files: dict[int, bytes] = {}  # open files: their content
        self._ranged: dict[int, Ranges] = {}  # open files read in ranges
        self._next_fh = 1
        self._last_error: tuple[str, float] = ("", 0.0)

    def _log_error(self, op: str, exc: TrolleyError) -> None:
        # the same cause for a burst of files (a server down) is logged once
        msg = str(exc)
        now = time.monotonic()
        if msg != self._last_error[0] or now - self._last_error[1] > SAME_ERROR_QUIET_S:
            log.warning("%s failed: %s", op, msg)
        self._last_error = (msg, now)

    async def _caller(self, ctx: pyfuse3.RequestContext) -> Caller:
        """Who asks (for the audit) and in which priority."""
        return await self._callers.of(ctx.uid, ctx.pid)

    async def _urgency_of(self, ctx: pyfuse3.RequestContext | None) -> Priority:
        """The priority of a request that is not audited (a lookup, a stat)."""
        if ctx is None:
            return Priority.USER
        return (await self._callers.of(ctx.uid, ctx.pid, identified=False)).urgency

    def _new_fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        return fh

    # ------------------------------------------------------------------ attrs
    def _attrs(self, ino: int, node: Node) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = ino
        a.generation = 0
        a.st_uid, a.st_gid = self._uid, self._gid
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
            size = node.known_size()
            a.st_mode = stat.S_IFREG | 0o444
            a.st_nlink = 1
            a.st_size = size or 0
            # an unknown size must not be believed: the kernel asks again (getattr)
            a.attr_timeout = node.attr_timeout if size is not None else 0.0
            a.entry_timeout = FILE_ENTRY_TIMEOUT if not node.direct_io else 0.0
        a.st_blocks = (a.st_size + 511) // 512
        return a

    # ------------------------------------------------------------------ lookups
    @_op
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent = self._inodes.node(parent_inode)
        if not isinstance(parent, DirNode):
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        if name in (b".", b".."):
            raise pyfuse3.FUSEError(errno.ENOENT)
        with priority(await self._urgency_of(ctx)):
            node = await parent.lookup(os.fsdecode(name))
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attrs(self._inodes.remember(node), node)

    @_op
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext | None = None) -> pyfuse3.EntryAttributes:
        node = self._inodes.node(inode)
        if isinstance(node, FileNode) and node.known_size() is None:
            note = SourceNote() if self._audit is not None and ctx is not None else None
            with priority(await self._urgency_of(ctx)), noting(note):
                await node.learn_size()  # the size of a DICOM object is only known once fetched
            if ctx is not None and note is not None and note.source is not None:
                self._learnt_by(inode, ctx.pid, note.source)
        return self._attrs(inode, node)

    def _learnt_by(self, inode: int, tid: int, source: str) -> None:
        """A stat by thread ``tid`` fetched the file to learn its size: when the
        same thread opens it next (``cp`` and ``rsync`` stat a file, then open
        it), the open's bytes count as from where the stat got them."""
        self._learnt.pop(inode, None)
        self._learnt[inode] = (tid, source)
        while len(self._learnt) > LEARNT_KEPT:
            del self._learnt[next(iter(self._learnt))]

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for ino, n in inode_list:
            self._inodes.forget(ino, n)

    # ------------------------------------------------------------------ directories
    @_op
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        node = self._inodes.node(inode)
        if not isinstance(node, DirNode):
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        caller = await self._caller(ctx)
        if self._audit is not None:
            self._audit.admit()
        try:
            with priority(caller.urgency):
                children = await node.children()
        except BaseException as exc:
            if self._audit is not None and caller.who is not None and not isinstance(exc, trio.Cancelled):
                self._audit.listed(caller.who, node, _result(exc))
            raise
        if self._audit is not None and caller.who is not None:
            self._audit.listed(caller.who, node)
        # a snapshot per handle: offsets stay stable while the kernel pages through it
        fh = self._new_fh()
        self._dirs[fh] = sorted(children.items())
        return fh

    @_op
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        entries = self._dirs[fh]
        for i in range(start_id, len(entries)):
            name, node = entries[i]
            ino = self._inodes.remember(node)  # readdirplus: each entry sent counts as a lookup
            if not pyfuse3.readdir_reply(token, os.fsencode(name), self._attrs(ino, node), i + 1):
                self._inodes.forget(ino, 1)  # the buffer was full: this one was not sent
                break

    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    # ------------------------------------------------------------------ files
    @_op
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self._inodes.node(inode)
        if isinstance(node, DirNode):
            raise pyfuse3.FUSEError(errno.EISDIR)
        if flags & WRITE_FLAGS:
            raise pyfuse3.FUSEError(errno.EROFS)
        assert isinstance(node, FileNode)
        caller = await self._caller(ctx)
        audit, access = self._audit, None
        if audit is not None and caller.who is not None:
            audit.admit()
            access = audit.opened(caller.who, node)
            learnt = self._learnt.pop(inode, None)
            if learnt is not None and learnt[0] == ctx.pid:
                access.note.source = learnt[1]
        fh = self._new_fh()
        try:
            with priority(caller.urgency), _noting(access):
                ranges = await node.open_ranges()
                if ranges is not None:
                    self._ranged[fh] = ranges
                    self._urgency[fh] = caller.urgency
                else:
                    data = self._files[fh] = await node.read_all()
                    if access is not None:  # held whole: handed over at open (the kernel may read it from its cache)
                        access.nbytes = len(data)
                    if self._pushes is not None and node.keep_cache:  # its pages on their way: read from there
                        await self._pushes.settled(inode)
        except BaseException as exc:
            if audit is not None and access is not None and not isinstance(exc, trio.Cancelled):
                audit.closed(access, result=_result(exc))
            raise
        if access is not None:
            self._accesses[fh] = access
        return pyfuse3.FileInfo(fh=fh, keep_cache=node.keep_cache and not node.direct_io, direct_io=node.direct_io)

    # pyfuse3 takes any buffer, not only the bytes its stub promises
    async def read(self, fh: int, off: int, size: int) -> memoryview:  # type: ignore[override]
        # the hot path, and it never waits: no deadline wrapper, no copy; the
        # object was fetched whole at open (files read in ranges, zips, go
        # through read_ranged, which may wait and so has a deadline)
        self._stats.fuse_ops["read"] += 1
        try:
            data = self._files[fh]
        except KeyError:
            return await self.read_ranged(fh, off, size)
        return memoryview(data)[off : off + size]

    @_op
    async def read_ranged(self, fh: int, off: int, size: int) -> memoryview:
        """A read of a file never held whole (a zip): may wait for the caches or a server."""
        try:
            ranges = self._ranged[fh]
        except KeyError:
            raise pyfuse3.FUSEError(errno.EBADF) from None
        access = self._accesses.get(fh)
        with priority(self._urgency.get(fh, Priority.USER)), _noting(access):
            data = await ranges.read(off, size)
        if access is not None:
            access.nbytes += len(data)
        return memoryview(data)

    async def release(self, fh: int) -> None:
        self._files.pop(fh, None)
        self._ranged.pop(fh, None)
        self._urgency.pop(fh, None)
        access = self._accesses.pop(fh, None)
        if access is not None and self._audit is not None:
            self._audit.closed(access)

    @_op
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = BLOCK
        s.f_blocks = s.f_bfree = s.f_bavail = 0
        s.f_files = len(self._inodes)
        s.f_ffree = s.f_favail = 0
        s.f_namemax = 255
        return s

    # ------------------------------------------------------------------ xattrs
    @_op
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        return [k.encode() for k in self._inodes.node(inode).xattrs()]

    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        if not name.startswith(b"user."):
            # Only user.* attributes are kept: security labels and POSIX ACLs are
            # not supported, and saying so (ENOTSUP, not "no such attribute")
            # lets `ls -l` stop asking for them after the first entry
            self._stats.fuse_ops["getxattr"] += 1
            raise pyfuse3.FUSEError(errno.ENOTSUP)
        return await self._user_xattr(inode, name, ctx)

    async def _xattr_value(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        if name == BACKGROUND_XATTR.encode():  # `trolleyfs prefetch` marks its process: see .callers
            await self._callers.mark(ctx.pid)
            return b"prefetch"
        value = self._inodes.node(inode).xattrs().get(os.fsdecode(name))
        if value is None:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return value.encode("utf-8", "surrogateescape")

    _xattr_value.__name__ = "getxattr"  # counted and logged as the operation it answers
    _user_xattr = _op(_xattr_value)

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
