"""What every node of the tree is: a named file or directory with an mtime and
extended attributes.  A directory lists its children and looks one up by name;
:class:`ListedDir` keeps a listing for a TTL and refreshes it lazily."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Protocol

import trio

from ..errors import NotFound, ProtocolError, TrolleyError
from ..idle import Beacon

log = logging.getLogger("trolleyfs.tree")

# names desktops and file managers probe for; never worth a network request
PROBE_NAMES = frozenset({"desktop.ini", "autorun.inf", "Desktop.ini", "AutoRun.inf", "folder.jpg", "Thumbs.db"})
RETRY_FAILED_REFRESH_S = 10.0  # a failed refresh keeps the old listing and is retried this much later


def is_probe(name: str) -> bool:
    """A name that desktops look for everywhere (hidden files, ``desktop.ini``)."""
    return name.startswith(".") or name in PROBE_NAMES


def dicom_xattrs(attrs: Mapping[str, str], **uids: str) -> dict[str, str]:
    """``user.dicom.<keyword>`` extended attributes for DICOM attributes and UIDs."""
    out = {f"user.dicom.{k}": v for k, v in attrs.items()}
    out.update({f"user.dicom.{k}": v for k, v in uids.items()})
    return out


def _listed_yet_missing(exc: TrolleyError, path: str) -> TrolleyError:
    """A directory that is there (its parent's listing shows it) but whose
    contents the server says do not exist: that is the server's error (EIO,
    logged), not a missing directory (ENOENT would tell ``cp -r`` the
    directory vanished)."""
    if not isinstance(exc, NotFound):
        return exc
    return ProtocolError(f"{exc} (yet {path} was listed by it: its contents cannot be fetched)")


class Node:
    """A file or directory.  Identity matters: the inode table maps this very
    object to its inode, so a refresh that keeps the object keeps the inode."""

    def __init__(self, name: str, parent: DirNode | None, mtime: float) -> None:
        self._name = name
        self.parent = parent
        self.mtime = mtime

    @property
    def name(self) -> str:
        return self._name

    def rename(self, name: str) -> None:
        """A refresh of the parent's listing named this node anew."""
        self._name = name

    @property
    def path(self) -> str:
        """Where the node is, for log messages."""
        parts = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return "/" + "/".join(reversed(parts))

    @property
    def instance_uid(self) -> str | None:
        """The SOPInstanceUID whose bytes this node shows, if any."""
        return None

    @property
    def content_key(self) -> str | None:
        """The cache key of the bytes this node shows (the instance UID, or
        ``<uid>@<transfer syntax>`` for a converted file), if any."""
        return self.instance_uid

    def xattrs(self) -> dict[str, str]:
        return {}


class Ranges(Protocol):
    """An open file read piece by piece (:meth:`FileNode.open_ranges`)."""

    async def read(self, offset: int, size: int) -> bytes | memoryview: ...


class FileNode(Node):
    """A regular file, read whole (or, for large generated files, in ranges:
    :meth:`open_ranges`)."""

    direct_io = False  # True for files whose content changes between reads
    attr_timeout = 3600.0  # seconds the kernel may keep a known size
    keep_cache = True  # the kernel may keep the file's pages between opens

    def known_size(self) -> int | None:
        """The size if known without reading (or None: read it to know)."""
        raise NotImplementedError

    async def learn_size(self) -> None:
        """Make :meth:`known_size` known (may fetch); by default, by reading."""
        await self.read_all()

    async def read_all(self) -> bytes:
        raise NotImplementedError

    async def open_ranges(self) -> Ranges | None:
        """For a file never held whole: its content, read at any offset, fixed
        for as long as it is open.  None (the default): read it whole."""
        return None


class DirNode(Node):
    """A directory."""

    def __init__(self, name: str, parent: DirNode | None, mtime: float, ttl: float) -> None:
        super().__init__(name, parent, mtime)
        self.ttl = ttl  # seconds a listing is kept

    async def children(self) -> Mapping[str, Node]:
        """All children by name (may ask a server)."""
        raise NotImplementedError

    def cached_child(self, name: str) -> Node | None:
        """The child called ``name`` if known without asking anybody."""
        raise NotImplementedError

    async def lookup(self, name: str) -> Node | None:
        """The child called ``name``.  Names desktops probe for are answered from
        what is known already: they never cost a request."""
        if is_probe(name):
            return self.cached_child(name)
        return (await self.children()).get(name)


class StaticDir(DirNode):
    """A directory whose children are fixed when it is built."""

    def __init__(self, name: str, parent: DirNode | None, mtime: float, ttl: float = 3600.0) -> None:
        super().__init__(name, parent, mtime, ttl)
        self._static: dict[str, Node] = {}

    def add(self, nodes: Iterable[Node]) -> None:
        """Add children (while building the tree: they name this dir as parent)."""
        self._static.update((n.name, n) for n in nodes)

    async def children(self) -> Mapping[str, Node]:
        return self._static

    def cached_child(self, name: str) -> Node | None:
        return self._static.get(name)


class ListedDir(DirNode):
    """A directory whose children come from a search: listed when first looked
    at, kept for ``ttl`` seconds, refreshed lazily after that.  A refresh that
    fails keeps the old listing (and is retried a little later)."""

    def __init__(self, name: str, parent: DirNode | None, mtime: float, ttl: float) -> None:
        super().__init__(name, parent, mtime, ttl)
        self._children: dict[str, Node] | None = None
        self._listed_at = 0.0
        self._age = 0.0  # how old the listing being resolved was when it arrived (shared by another node)
        self._lock = trio.Lock()
        self._listing = Beacon()  # the progress of a listing in flight, for those who wait for it

    async def _resolve(self) -> dict[str, Node]:
        """Build the children (may ask the server)."""
        raise NotImplementedError

    def _fresh(self) -> bool:
        return self._children is not None and trio.current_time() - self._listed_at < self.ttl

    async def children(self) -> Mapping[str, Node]:
        if self._fresh():
            assert self._children is not None
            return self._children
        with self._listing.listening():  # a listing in flight makes progress for this wait too
            await self._lock.acquire()
        try:
            return await self._refresh()
        finally:
            self._lock.release()

    async def _refresh(self) -> Mapping[str, Node]:
        """List (with the lock held) unless another task just did."""
        if self._fresh():
            assert self._children is not None
            return self._children
        self._age = 0.0
        try:
            with self._listing.reporting():
                fresh = await self._resolve()
        except TrolleyError as exc:
            if self._children is None:
                raise _listed_yet_missing(exc, self.path) from None
            log.warning(
                "%s: refresh failed, keeping the listing from %.0f s ago: %s",
                self.path,
                trio.current_time() - self._listed_at,
                exc,
            )
            self._listed_at = trio.current_time() - self.ttl + min(self.ttl, RETRY_FAILED_REFRESH_S)
            return self._children
        self._children, self._listed_at = fresh, trio.current_time() - min(self._age, self.ttl)
        return fresh

    def cached_child(self, name: str) -> Node | None:
        return None if self._children is None else self._children.get(name)

    def _current(self) -> Iterable[Node]:
        """The children of the last listing (none before the first)."""
        return (self._children or {}).values()
