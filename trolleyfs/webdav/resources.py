"""The tree as WsgiDAV resources: a read-only DAVProvider whose collections
are the tree's directories and whose non-collections are its files.

A URL path is walked from the root one name at a time with the tree's own
``lookup`` (so names desktops probe for are answered from what is known,
without a request); a path whose last name is such a probe is walked through
listings already held only, so it never costs a request at all.  Every walk,
listing and read is one call through the :class:`~.bridge.Bridge`.

With an audit trail, a GET is recorded when its body has been sent (or when
reading the file failed), with the bytes sent, and a collection when its
members are listed (a PROPFIND of depth 1), under the authenticated WebDAV
user (:mod:`trolleyfs.audit.access`).

Sizes in PROPFIND are the FUSE side's: a file whose size is not known yet is
fetched to know it (``learn_size``, as FUSE's ``getattr`` does), unless the
server is told to report known sizes only (see :class:`FileResource`).  A GET
or HEAD reads the file first (as a FUSE ``open`` does: whole, or in ranges
for a zip), so its Content-Length and ranges are exact.
"""

from __future__ import annotations

import errno
import hashlib
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from wsgidav.dav_error import HTTP_INTERNAL_ERROR, DAVError
from wsgidav.dav_provider import DAVCollection, DAVNonCollection, DAVProvider

from ..audit.access import Access, Auditor
from ..audit.record import Who, identify
from ..audit.source import noting
from ..tree.base import DirNode, FileNode, Node, Ranges, is_probe
from .bridge import Bridge
from .propfind import StartResponse, propfind
from .requester import Requester

REQUESTER_KEY = "trolleyfs.requester"  # environ key: the Requester of this request (set by the gate)
READ_METHODS = ("GET", "HEAD")
RANGE_BLOCK = 1024 * 1024  # bytes asked of a ranged file (a zip) per call into the core
CONTENT_TYPES = {".dcm": "application/dicom", ".json": "application/dicom+json", ".zip": "application/zip"}


def split_path(path: str) -> list[str] | None:
    """The names of a URL path (already percent-decoded by the HTTP server and
    normalized by WsgiDAV); None if any cannot be a name in the tree (``.``,
    ``..``, NUL).  An encoded slash stays ``%2F`` inside a name, which then
    names nothing: tree names never hold a slash."""
    names = [n for n in path.split("/") if n]
    if any(n in (".", "..") or "\x00" in n for n in names):
        return None
    return names


@dataclass
class Content:
    """A file's bytes for one GET or HEAD: whole, or an open ranged reader."""

    size: int
    data: bytes | None = None
    ranges: Ranges | None = None
    access: Access | None = None  # the audit's record of this GET, written when the body has been sent


class TreeProvider(DAVProvider):  # type: ignore[misc]  # WsgiDAV has no type hints
    """The tree, read-only, through ``bridge``."""

    def __init__(self, root: DirNode, bridge: Bridge, learn_sizes: bool = True, audit: Auditor | None = None) -> None:
        """``learn_sizes``: a PROPFIND fetches a file whose size is not known
        yet (False: it reports the sizes known without fetching only);
        ``audit``: where GETs and listings are recorded (None: nowhere)."""
        super().__init__()
        self.root = root
        self.bridge = bridge
        self.learn_sizes = learn_sizes
        self.audit = audit

    def __repr__(self) -> str:
        return "trolleyfs tree (read-only)"

    def is_readonly(self) -> bool:
        return True

    def custom_request_handler(
        self, environ: dict[str, Any], start_response: StartResponse, default_handler: Callable[..., Any]
    ) -> Any:
        """WsgiDAV's seam for a provider's own methods: PROPFIND is streamed
        (:mod:`.propfind`), everything else is WsgiDAV's."""
        if environ.get("REQUEST_METHOD") == "PROPFIND":
            return propfind(self, environ, start_response)
        return default_handler(environ, start_response)

    def get_resource_inst(self, path: str, environ: dict[str, Any]) -> DAVCollection | DAVNonCollection | None:
        names = split_path(path)
        if names is None:
            return None
        prepare = environ.get("REQUEST_METHOD") in READ_METHODS
        audit = self.audit if environ.get("REQUEST_METHOD") == "GET" else None

        async def find() -> tuple[Node | None, Content | None]:
            node = await walk(self.root, names)
            if prepare and isinstance(node, FileNode):
                if audit is None:
                    return node, await read(node)
                audit.admit()
                access = audit.opened(who(environ), node)
                try:
                    with noting(access.note):
                        content = await read(node)
                except Exception as exc:
                    audit.closed(access, result=_result(exc))
                    raise
                content.access = access
                return node, content
            return node, None

        node, content = self.bridge.run(requester(environ), f"{environ.get('REQUEST_METHOD')} {path}", find)
        if node is None:
            return None
        return resource(posixpath.join("/", *names), node, environ, self, content)


async def walk(root: DirNode, names: list[str]) -> Node | None:
    """The node at ``names`` below ``root``; None if there is none.  When the
    last name is a desktop's probe, only listings already held are used."""
    cached_only = bool(names) and is_probe(names[-1])
    node: Node = root
    for name in names:
        if not isinstance(node, DirNode):
            return None
        found = node.cached_child(name) if cached_only else await node.lookup(name)
        if found is None:
            return None
        node = found
    return node


async def read(node: FileNode) -> Content:
    """A file's content for a GET or HEAD, as FUSE's ``open`` gets it."""
    ranges = await node.open_ranges()
    if ranges is None:
        data = await node.read_all()
        return Content(len(data), data=data)
    size = getattr(ranges, "size", None)
    if not isinstance(size, int):
        size = node.known_size()
        if size is None:
            await node.learn_size()
            size = node.known_size()
    if size is None:
        raise DAVError(HTTP_INTERNAL_ERROR, "the size of this file cannot be known")
    return Content(size, ranges=ranges)


def requester(environ: Mapping[str, Any]) -> Requester | None:
    r = environ.get(REQUESTER_KEY)
    return r if isinstance(r, Requester) else None


def who(environ: Mapping[str, Any]) -> Who:
    """The audit's user of a request: the authenticated WebDAV user (no uid, no process)."""
    r = requester(environ)
    return identify(None, None, user=r.user if r is not None and r.user else "anonymous")


def _result(exc: BaseException) -> str:
    """What the client got, as the audit records it (an errno name, as on FUSE)."""
    code = getattr(exc, "errno", None)
    return errno.errorcode.get(code, "EIO") if isinstance(code, int) else "EIO"


def resource(
    path: str,
    node: Node,
    environ: dict[str, Any],
    provider: TreeProvider,
    content: Content | None = None,
    known: int | None = None,
) -> DAVCollection | DAVNonCollection:
    """``known``: the file's size as the core knew it when it was listed."""
    if isinstance(node, DirNode):
        return DirResource(path, node, environ, provider)
    assert isinstance(node, FileNode)
    return FileResource(path, node, environ, provider, content, known)


Listed = list[tuple[str, Node, int | None]]  # name, node, and a file's size if already known


def _known(node: Node) -> int | None:
    """A file's size if known without reading: asked on the loop, never from a
    worker thread (the caches it reads are the loop's)."""
    return node.known_size() if isinstance(node, FileNode) else None


class DirResource(DAVCollection):  # type: ignore[misc]
    def __init__(self, path: str, node: DirNode, environ: dict[str, Any], provider: TreeProvider) -> None:
        super().__init__(path, environ)
        self.node = node
        self.tree = provider
        self._audited = False

    def _children(self) -> Listed:
        audit = None if self._audited else self.tree.audit
        self._audited = True  # one line per collection listed, however often its members are asked for
        node, environ = self.node, self.environ

        async def listed() -> list[tuple[str, Node]]:
            if audit is None:
                return sorted((await node.children()).items())
            audit.admit()
            try:
                found = sorted((await node.children()).items())
            except Exception as exc:
                audit.listed(who(environ), node, _result(exc))
                raise
            audit.listed(who(environ), node)
            return found

        async def children() -> Listed:
            return [(name, child, _known(child)) for name, child in await listed()]

        return self.tree.bridge.run(requester(self.environ), f"list {self.path}", children)

    def get_member_names(self) -> list[str]:
        return [name for name, _, _ in self._children()]

    def get_member(self, name: str) -> DAVCollection | DAVNonCollection | None:
        for n, child, size in self._children():
            if n == name:
                return resource(posixpath.join(self.path, name), child, self.environ, self.tree, known=size)
        return None

    def get_member_list(self) -> list[DAVCollection | DAVNonCollection]:
        # one call into the core for the whole listing (sizes known included), not one per member
        return [
            resource(posixpath.join(self.path, name), child, self.environ, self.tree, known=size)
            for name, child, size in self._children()
        ]

    def get_display_name(self) -> str:
        return self.node.name

    def get_creation_date(self) -> float:
        return self.node.mtime

    def get_last_modified(self) -> float:
        return self.node.mtime

    def get_etag(self) -> None:
        return None

    def support_etag(self) -> bool:
        return False


class FileResource(DAVNonCollection):  # type: ignore[misc]
    """A file.  The size of a DICOM object is known once it has been fetched
    (no listing protocol reports it); a PROPFIND that shows the size of a
    file not fetched yet fetches it, as ``ls -l`` on the mount does: with
    readahead, the first file of a series fetches the series in one request,
    so listing a series with sizes costs about what copying it costs, once.
    Clients need the size: davfs2 serves a file listed without one as empty
    (``cp`` then copies 0 bytes, silently), rclone fails such a copy with
    "sizes differ" unless given ``--ignore-size``.  With ``learn_sizes``
    off, a file not fetched yet has no ``getcontentlength`` and listings
    never fetch.  GET and HEAD always know the size."""

    def __init__(
        self,
        path: str,
        node: FileNode,
        environ: dict[str, Any],
        provider: TreeProvider,
        content: Content | None,
        known: int | None = None,
    ) -> None:
        super().__init__(path, environ)
        self.node = node
        self.tree = provider
        self.content = content
        self._known = known

    def get_content_length(self) -> int | None:
        if self.content is not None:
            return self.content.size
        if self._known is None:
            node, learn = self.node, self.tree.learn_sizes

            async def size() -> int | None:
                if node.known_size() is None and learn:
                    await node.learn_size()
                return node.known_size()

            self._known = self.tree.bridge.run(requester(self.environ), f"size of {self.path}", size)
        return self._known

    def get_content_type(self) -> str:
        return CONTENT_TYPES.get(posixpath.splitext(self.node.name)[1].lower(), "application/octet-stream")

    def get_display_name(self) -> str:
        return self.node.name

    def get_creation_date(self) -> float:
        return self.node.mtime

    def get_last_modified(self) -> float:
        return self.node.mtime

    def get_etag(self) -> str | None:
        key = self.node.content_key  # an instance in one transfer syntax: its bytes never change
        return hashlib.sha256(key.encode()).hexdigest()[:40] if key else None

    def support_etag(self) -> bool:
        return self.node.content_key is not None

    def support_ranges(self) -> bool:
        return True

    def get_content(self) -> WholeReader | RangedReader:
        c = self.content
        if c is None:  # WsgiDAV reads content only in GET, for which it was prepared
            raise DAVError(HTTP_INTERNAL_ERROR, "content not prepared")
        if c.data is not None:
            return WholeReader(c.data, self._closed)
        assert c.ranges is not None
        return RangedReader(self, c.ranges, c.size, self._closed)

    def _closed(self, sent: int) -> None:
        """The body was sent (``sent`` bytes): the GET's audit line."""
        c, audit = self.content, self.tree.audit
        if c is not None and c.access is not None and audit is not None:
            access, c.access = c.access, None  # (once)
            access.nbytes = sent
            audit.closed(access)


def _nobody(sent: int) -> None:
    pass


class WholeReader:
    """A file held whole, read as WsgiDAV reads a file object; ``on_close``
    is told the bytes read when it is closed."""

    def __init__(self, data: bytes, on_close: Callable[[int], None] = _nobody) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._sent = 0
        self._on_close = on_close

    def seek(self, pos: int) -> None:
        self._pos = pos

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        out = bytes(self._data[self._pos : end])
        self._pos += len(out)
        self._sent += len(out)
        return out

    def close(self) -> None:
        self._data = memoryview(b"")
        self._on_close(self._sent)


class RangedReader:
    """A file read piece by piece from the core (a zip): each read is one call
    through the bridge, so a large archive is streamed, never held."""

    def __init__(self, res: FileResource, ranges: Ranges, size: int, on_close: Callable[[int], None] = _nobody) -> None:
        self._res = res
        self._ranges = ranges
        self._size = size
        self._pos = 0
        self._sent = 0
        self._on_close = on_close

    def seek(self, pos: int) -> None:
        self._pos = pos

    def read(self, size: int = -1) -> bytes:
        want = self._size - self._pos if size < 0 else min(size, self._size - self._pos)
        if want <= 0:
            return b""
        pos, n = self._pos, min(want, RANGE_BLOCK)
        ranges = self._ranges

        content = self._res.content
        access = content.access if content is not None else None

        async def piece() -> bytes:
            if access is None:
                return bytes(await ranges.read(pos, n))
            with noting(access.note):
                return bytes(await ranges.read(pos, n))

        out = self._res.tree.bridge.run(requester(self._res.environ), f"read {self._res.path}", piece)
        if not out:  # the file ended before its size: never serve a short file as whole
            raise DAVError(HTTP_INTERNAL_ERROR, "the file ended early")
        self._pos += len(out)
        self._sent += len(out)
        return out

    def close(self) -> None:
        self._on_close(self._sent)
