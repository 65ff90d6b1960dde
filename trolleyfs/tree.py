"""The directory tree: folders -> studies -> series -> instance files.

Each level is resolved lazily by the server's searcher when somebody first
looks, and kept for a TTL per level.  The inode table hands out numbers as the
kernel learns about nodes and drops them when the kernel forgets them.
Nothing here knows about FUSE.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
import time
from collections.abc import Iterable
from typing import Any

import trio

from .config import Config, Folder
from .errors import NotFound, TrolleyError
from .model import Instance, Query, Series, Study
from .naming import names_for
from .read.store import Store
from .servers import Remote
from .stats import Stats

log = logging.getLogger("trolleyfs.tree")

ROOT_INO = 1
UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
# names desktops and file managers probe for; never worth a network request
PROBE_NAMES = frozenset({"desktop.ini", "autorun.inf", "Desktop.ini", "AutoRun.inf", "folder.jpg", "Thumbs.db"})


def is_probe(name: str) -> bool:
    return name.startswith(".") or name in PROBE_NAMES


def _epoch(date: str | None, tm: str | None, default: float) -> float:
    if not date or not re.match(r"^\d{8}$", date.strip()):
        return default
    t = (tm or "").strip().split(".")[0]
    t = (t + "000000")[:6] if re.match(r"^\d{2,6}$", t) else "000000"
    try:
        return _dt.datetime.strptime(date.strip() + t, "%Y%m%d%H%M%S").timestamp()
    except ValueError:
        return default


class Node:
    is_dir = False

    def __init__(self, name: str, parent: DirNode | None, mtime: float) -> None:
        self.name = name
        self.parent = parent
        self.mtime = mtime
        self.ino: int | None = None

    @property
    def path(self) -> str:
        parts = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return "/" + "/".join(reversed(parts))

    def xattrs(self) -> dict[str, str]:
        return {}


class FileNode(Node):
    direct_io = False  # True for files whose size is only known when read
    attr_timeout = 3600.0

    def known_size(self, tree: Tree) -> int | None:
        raise NotImplementedError

    async def read_all(self, tree: Tree) -> bytes:
        raise NotImplementedError


class DirNode(Node):
    is_dir = True
    ttl = 3600.0  # seconds a listing is kept

    def __init__(self, name: str, parent: DirNode | None, mtime: float) -> None:
        super().__init__(name, parent, mtime)
        self._children: dict[str, Node] | None = None
        self._listed_at = 0.0
        self._lock = trio.Lock()
        self._prefilled: list | None = None  # children a deeper search already returned

    def prefill(self, items: list | None) -> None:
        """Children the parent's search returned (MINT/DICOM-QR at a deeper
        query level): the next listing uses them instead of asking."""
        self._prefilled = items

    def _take_prefilled(self) -> list | None:
        items, self._prefilled = self._prefilled, None
        return items

    def _named(
        self, tree: Tree, level: str, objs: list, key: str, suffix: str = ""
    ) -> list[tuple[str, Any, Node | None]]:
        """``(name, object, the child already showing it or None)`` per object:
        names from the level's template; a refresh reuses nodes (and inodes)."""
        old = {getattr(n, key): n for n in (self._children or {}).values() if hasattr(n, key)}
        names = names_for(tree.config.names[level], [(o.attrs, o.uid) for o in objs], suffix)
        return [(name, o, old.get(o.uid)) for name, o in zip(names, objs, strict=True)]

    async def _resolve(self, tree: Tree) -> dict[str, Node]:
        """Build the children (may ask the server)."""
        raise NotImplementedError

    async def children(self, tree: Tree) -> dict[str, Node]:
        if self._children is not None and time.monotonic() - self._listed_at < self.ttl:
            return self._children
        async with self._lock:
            if self._children is not None and time.monotonic() - self._listed_at < self.ttl:
                return self._children
            try:
                fresh = await self._resolve(tree)
            except TrolleyError as exc:
                if self._children is None:
                    raise
                log.warning("%s: refresh failed, keeping the listing from %.0f s ago: %s",
                            self.path, time.monotonic() - self._listed_at, exc)  # fmt: skip
                self._listed_at = time.monotonic() - self.ttl + min(self.ttl, 10.0)  # retry in 10 s
                return self._children
            self._children, self._listed_at = fresh, time.monotonic()
            return fresh

    async def lookup(self, tree: Tree, name: str) -> Node | None:
        return (await self.children(tree)).get(name)

    def cached_child(self, name: str) -> Node | None:
        return None if self._children is None else self._children.get(name)


class StaticDir(DirNode):
    def __init__(self, name: str, parent: DirNode | None, mtime: float, children: Iterable[Node] = ()) -> None:
        super().__init__(name, parent, mtime)
        self._static = {c.name: c for c in children}

    def add(self, node: Node) -> None:
        self._static[node.name] = node

    async def children(self, tree: Tree) -> dict[str, Node]:
        return self._static


class StudyListDir(DirNode):
    """A directory whose children are studies."""

    def _study_nodes(self, tree: Tree, server: str, studies: list[Study]) -> dict[str, Node]:
        out: dict[str, Node] = {}
        for name, study, node in self._named(tree, "study", studies, "study_uid"):
            if isinstance(node, StudyDir) and node.server == server:
                node.name, node.study = name, study
                if study.series is not None:
                    node.prefill(study.series)
            else:
                node = StudyDir(name, self, tree, server, study)
            out[name] = node
        return out


class FolderDir(StudyListDir):
    def __init__(self, folder: Folder, parent: DirNode, tree: Tree) -> None:
        super().__init__(folder.name, parent, tree.mount_time)
        self.folder = folder
        self.ttl = tree.config.cache.folder_ttl

    def query(self) -> Query:
        f = self.folder
        return Query(
            filters=dict(f.query),
            min_study_date=f.min_study_date.resolve() if f.min_study_date else None,
            max_study_date=f.max_study_date.resolve() if f.max_study_date else None,
            include_fields=f.include_fields,
            level=f.query_level,
            limit=f.limit,
        )

    async def _resolve(self, tree: Tree) -> dict[str, Node]:
        studies = await tree.find_studies(self.folder.server, self.query())
        return self._study_nodes(tree, self.folder.server, studies)

    def xattrs(self) -> dict[str, str]:
        return {"user.trolleyfs.server": self.folder.server,
                "user.trolleyfs.query": json.dumps(dict(self.folder.query), sort_keys=True)}  # fmt: skip


class ByUidDir(StudyListDir):
    """``by-uid/<StudyInstanceUID>``: any study by UID, on any configured server.
    Lists the studies looked up so far."""

    ttl = float("inf")

    def __init__(self, parent: DirNode, tree: Tree) -> None:
        super().__init__("by-uid", parent, tree.mount_time)
        self._found: dict[str, Node] = {}

    async def children(self, tree: Tree) -> dict[str, Node]:
        return self._found

    async def lookup(self, tree: Tree, name: str) -> Node | None:
        if name in self._found:
            return self._found[name]
        if not UID_RE.match(name) or len(name) > 64:
            return None  # not a UID: no request
        async with self._lock:
            if name in self._found:
                return self._found[name]
            errors: list[TrolleyError] = []
            for server in tree.remotes:
                try:
                    studies = await tree.find_studies(server, Query(filters={"StudyInstanceUID": name}, limit=1))
                except TrolleyError as exc:
                    errors.append(exc)
                    continue
                match = [s for s in studies if s.uid == name]
                if match:
                    node = StudyDir(name, self, tree, server, match[0])
                    self._found[name] = node
                    return node
            if errors and len(errors) == len(tree.remotes):
                raise errors[0]
            return None


class StudyDir(DirNode):
    def __init__(self, name: str, parent: DirNode, tree: Tree, server: str, study: Study) -> None:
        when = _epoch(study.attrs.get("StudyDate"), study.attrs.get("StudyTime"), tree.mount_time)
        super().__init__(name, parent, when)
        self.server, self.study = server, study
        self.ttl = tree.config.cache.study_ttl
        self.prefill(study.series)

    @property
    def study_uid(self) -> str:
        return self.study.uid

    async def _resolve(self, tree: Tree) -> dict[str, Node]:
        series = self._take_prefilled()
        if series is None:
            series = await tree.find_series(self.server, self.study.uid)
        series.sort(key=_series_order)
        out: dict[str, Node] = {}
        for name, s, node in self._named(tree, "series", series, "series_uid"):
            if isinstance(node, SeriesDir):
                node.name, node.series = name, s
                if s.instances is not None:
                    node.prefill(s.instances)
            else:
                node = SeriesDir(name, self, tree, self.server, s, self.mtime)
            out[name] = node
        return out

    def xattrs(self) -> dict[str, str]:
        return _dicom_xattrs(self.study.attrs, StudyInstanceUID=self.study.uid)


def _int(value: str | None) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return 1 << 31


def _series_order(s: Series) -> tuple[int, str]:
    return (_int(s.attrs.get("SeriesNumber")), s.uid)


def _instance_order(i: Instance) -> tuple[int, str]:
    return (_int(i.attrs.get("InstanceNumber")), i.uid)


class SeriesDir(DirNode):
    def __init__(self, name: str, parent: DirNode, tree: Tree, server: str, series: Series, mtime: float) -> None:
        super().__init__(name, parent, mtime)
        self.server, self.series = server, series
        self.ttl = tree.config.cache.series_ttl
        self.prefill(series.instances)

    @property
    def series_uid(self) -> str:
        return self.series.uid

    async def _resolve(self, tree: Tree) -> dict[str, Node]:
        instances = self._take_prefilled()
        if instances is None:
            instances = await tree.find_instances(self.server, self.series.study_uid, self.series.uid)
        instances.sort(key=_instance_order)
        out: dict[str, Node] = {}
        for name, inst, node in self._named(tree, "instance", instances, "instance_uid", ".dcm"):
            if isinstance(node, InstanceFile):
                node.name = name
            else:
                node = InstanceFile(name, self, self.server, inst, self.mtime)
                tree.instance_nodes.setdefault(inst.uid, []).append(node)
            out[name] = node
        return out

    def sibling_uids(self) -> list[str]:
        return [n.instance_uid for n in (self._children or {}).values() if isinstance(n, InstanceFile)]

    def xattrs(self) -> dict[str, str]:
        return _dicom_xattrs(self.series.attrs, SeriesInstanceUID=self.series.uid,
                             StudyInstanceUID=self.series.study_uid)  # fmt: skip


class InstanceFile(FileNode):
    def __init__(self, name: str, parent: SeriesDir, server: str, instance: Instance, mtime: float) -> None:
        super().__init__(name, parent, mtime)
        self.server, self.instance = server, instance

    @property
    def instance_uid(self) -> str:
        return self.instance.uid

    def known_size(self, tree: Tree) -> int | None:
        return tree.store.size_of(self.instance.uid)

    async def read_all(self, tree: Tree) -> bytes:
        parent = self.parent
        siblings = parent.sibling_uids if isinstance(parent, SeriesDir) else None
        return await tree.store.get(self.server, self.instance.ref, siblings)

    def xattrs(self) -> dict[str, str]:
        return _dicom_xattrs(self.instance.attrs, SOPInstanceUID=self.instance.uid,
                             SeriesInstanceUID=self.instance.series_uid,
                             StudyInstanceUID=self.instance.study_uid)  # fmt: skip


class StatsFile(FileNode):
    """``.trolleyfs/stats.json``: counters, cache and prefetch state, as JSON."""

    direct_io = True
    attr_timeout = 0.0

    def known_size(self, tree: Tree) -> int | None:
        return len(self.render(tree))

    async def read_all(self, tree: Tree) -> bytes:
        return self.render(tree)

    def render(self, tree: Tree) -> bytes:
        doc = tree.stats.as_dict() | tree.store.stats() | {"inodes": len(tree.nodes)}
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def _dicom_xattrs(attrs: dict[str, str], **uids: str) -> dict[str, str]:
    out = {f"user.dicom.{k}": v for k, v in attrs.items()}
    out.update({f"user.dicom.{k}": v for k, v in uids.items()})
    return out


class Tree:
    def __init__(self, config: Config, remotes: dict[str, Remote], store: Store, stats: Stats) -> None:
        self.config, self.remotes, self.store, self.stats = config, remotes, store, stats
        self.mount_time = time.time()
        self.instance_nodes: dict[str, list[InstanceFile]] = {}  # SOP UID -> its files (one per path)
        self.root = StaticDir("", None, self.mount_time)
        for folder in config.folders:
            self.root.add(FolderDir(folder, self.root, self))
        self.root.add(ByUidDir(self.root, self))
        control = StaticDir(".trolleyfs", self.root, self.mount_time)
        control.add(StatsFile("stats.json", control, self.mount_time))
        self.root.add(control)
        self.root.ino = ROOT_INO
        self.nodes: dict[int, Node] = {ROOT_INO: self.root}
        self.lookups: dict[int, int] = {}
        self._next_ino = ROOT_INO + 1

    # ---------------------------------------------------------------- inodes
    def remember(self, node: Node) -> int:
        """Give ``node`` an inode (if it has none) and count one kernel lookup."""
        if node.ino is None:
            node.ino = self._next_ino
            self._next_ino += 1
            self.nodes[node.ino] = node
        if node.ino != ROOT_INO:
            self.lookups[node.ino] = self.lookups.get(node.ino, 0) + 1
        return node.ino

    def forget(self, ino: int, n: int) -> None:
        if ino == ROOT_INO or ino not in self.lookups:
            return
        left = self.lookups[ino] - n
        if left > 0:
            self.lookups[ino] = left
            return
        del self.lookups[ino]
        node = self.nodes.pop(ino, None)
        if node is not None:
            node.ino = None

    def node(self, ino: int) -> Node:
        try:
            return self.nodes[ino]
        except KeyError:
            raise NotFound(f"unknown inode {ino}") from None

    # ---------------------------------------------------------------- searches
    async def find_studies(self, server: str, query: Query) -> list[Study]:
        self.stats.requests[server] += 1
        log.debug("%s: study search %s", server, dict(query.filters))
        studies = await self.remotes[server].searcher.find_studies(query)
        log.debug("%s: %d studies", server, len(studies))
        return studies

    async def find_series(self, server: str, study_uid: str) -> list[Series]:
        self.stats.requests[server] += 1
        log.debug("%s: series of study %s", server, study_uid)
        return await self.remotes[server].searcher.find_series(study_uid)

    async def find_instances(self, server: str, study_uid: str, series_uid: str) -> list[Instance]:
        self.stats.requests[server] += 1
        log.debug("%s: instances of series %s", server, series_uid)
        return await self.remotes[server].searcher.find_instances(study_uid, series_uid)
