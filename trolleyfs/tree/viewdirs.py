"""The ``views`` directory (its nodes: ``viewdirs``): for each folder that asks for views, its studies
again, as documents and archives rather than images.

```
views/<folder>/<study>.json            the study's headers (DICOM JSON)
views/<folder>/<study>.zip             the study: <study>/<series>/<instance>.dcm
views/<folder>/<study>/<series>.json   the series' headers
views/<folder>/<study>/<series>.zip    the series: <series>/<instance>.dcm
views/<folder>/<study>/<series>.nifti/ what dcm2niix makes of the series (:mod:`.seriesviews`)
views/<folder>/<study>/<series>.png    a preview of the series (:mod:`.seriesviews`)
```

They live outside the folder so that a viewer importing a study (or the
whole folder) sees each image exactly once and nothing else it would try to
load.  The names are the folder's, its listings are the folder's very nodes
(no second search), and an archive's members are the folder's files (in the
folder's transfer syntax)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..derive.metadata import Metadata
from ..derive.zipstream import Crcs, Member, ZipStream, archive_size
from ..model import InstanceRef
from .base import DirNode, FileNode, Node, StaticDir
from .dirs import FolderDir, SeriesDir, StudyDir
from .files import InstanceFile
from .seriesviews import AnalysisParts, series_views

log = logging.getLogger("trolleyfs.tree")

VIEW_ATTR_TIMEOUT = 1.0  # a view's size follows its listing: the kernel asks again soon


@dataclass
class ViewParts:
    """What the views directory is made with (built by :mod:`trolleyfs.wiring`):
    the metadata documents, the zips' CRCs, the counters of the
    converting fetchers (shown with the views' in ``stats.json``) and, when a
    folder asks for NIfTI or previews, what makes those."""

    metadata: Metadata
    crcs: Crcs
    converted: Callable[[], dict[str, int]] = dict
    analysis: AnalysisParts | None = None

    def stats(self) -> dict[str, object]:
        analysis = self.analysis.stats() if self.analysis is not None else {}
        return {"views": self.converted() | self.metadata.stats() | analysis}


async def _sorted_children(d: DirNode) -> list[tuple[str, Node]]:
    return sorted((await d.children()).items())


async def _files_of(series: SeriesDir) -> list[tuple[str, InstanceFile]]:
    return [(n, f) for n, f in await _sorted_children(series) if isinstance(f, InstanceFile)]


async def _series_of(study: StudyDir) -> list[tuple[str, SeriesDir]]:
    return [(n, s) for n, s in await _sorted_children(study) if isinstance(s, SeriesDir)]


class MetadataFile(FileNode):
    """A series' or a study's headers as one DICOM JSON document."""

    attr_timeout = VIEW_ATTR_TIMEOUT
    keep_cache = False  # the document follows the listing

    def __init__(self, name: str, parent: DirNode, of: SeriesDir | StudyDir, metadata: Metadata, ttl: float) -> None:
        super().__init__(name, parent, of.mtime)
        self._of = of
        self._metadata = metadata
        self._ttl = ttl

    def _where(self) -> tuple[str, str, str | None]:
        if isinstance(self._of, SeriesDir):
            return self._of.server, self._of.series.study_uid, self._of.series.uid
        return self._of.server, self._of.study.uid, None

    def known_size(self) -> int | None:
        return self._metadata.cached_size(self._metadata.key(*self._where()))

    async def _instances(self) -> list[list[InstanceRef]]:
        series = [self._of] if isinstance(self._of, SeriesDir) else [s for _, s in await _series_of(self._of)]
        return [[f.ref for _, f in await _files_of(s)] for s in series]  # in the files' form

    async def read_all(self) -> bytes:
        server, study, series = self._where()
        return await self._metadata.document(server, study, series, self._instances, self._ttl)

    def xattrs(self) -> dict[str, str]:
        return self._of.xattrs()


class ZipFile(FileNode):
    """A series or a study as a zip archive (stored), streamed from the files."""

    attr_timeout = VIEW_ATTR_TIMEOUT
    keep_cache = False  # the archive follows the listing

    def __init__(self, name: str, parent: DirNode, of: SeriesDir | StudyDir, crcs: Crcs) -> None:
        super().__init__(name, parent, of.mtime)
        self._of = of
        self._crcs = crcs
        self._listed: list[tuple[str, InstanceFile]] | None = None  # (path in the archive, file) as last listed

    async def _files(self) -> list[tuple[str, InstanceFile]]:
        if isinstance(self._of, SeriesDir):
            files = [(f"{self._of.name}/{n}", f) for n, f in await _files_of(self._of)]
        else:
            files = [
                (f"{self._of.name}/{sn}/{n}", f) for sn, s in await _series_of(self._of) for n, f in await _files_of(s)
            ]
        self._listed = files
        return files

    def known_size(self) -> int | None:
        if self._listed is None:
            return None
        sizes = [f.known_size() for _, f in self._listed]
        if any(s is None for s in sizes):
            return None
        return archive_size([p for p, _ in self._listed], [s for s in sizes if s is not None])

    async def _members(self) -> list[Member]:
        """The members with their sizes, fetching (through the caches) those whose size is unknown."""
        members = []
        for path, f in await self._files():
            size = f.known_size()
            if size is None:
                size = len(await f.read_all())
            members.append(Member(path, size, f.mtime, f.content_key, f.read_all))
        return members

    async def learn_size(self) -> None:
        await self._members()

    async def read_all(self) -> bytes:  # only for completeness: the mount reads zips in ranges
        stream = await self.open_ranges()
        return await stream.read(0, stream.size)

    async def open_ranges(self) -> ZipStream:
        return ZipStream(await self._members(), self._crcs)

    def xattrs(self) -> dict[str, str]:
        return self._of.xattrs()


class _Mirror(DirNode):
    """A directory whose entries are made from another directory's children;
    each entry node is kept for as long as the child it is made from."""

    def __init__(self, name: str, parent: DirNode, of: DirNode) -> None:
        super().__init__(name, parent, of.mtime, of.ttl)
        self._of = of
        self._made: dict[tuple[Node, str], Node] = {}  # (child, kind) -> node
        self._names: dict[str, Node] = {}

    def _entries(self, name: str, child: Node) -> Sequence[tuple[str, str, Callable[[str], Node]]]:
        """``(kind, entry name, build(name))`` for the entries a child gives."""
        raise NotImplementedError

    async def children(self) -> Mapping[str, Node]:
        names: dict[str, Node] = {}
        made: dict[tuple[Node, str], Node] = {}
        for cname, child in (await self._of.children()).items():
            for kind, name, build in self._entries(cname, child):
                node = self._made.get((child, kind))
                if node is None:
                    node = build(name)
                else:
                    node.rename(name)
                if name in names:
                    log.debug("%s: %r shows twice; the second is left out", self.path, name)
                    continue
                names[name] = made[(child, kind)] = node
        self._made, self._names = made, names
        return names

    def cached_child(self, name: str) -> Node | None:
        return self._names.get(name)


class ViewsStudy(_Mirror):
    """``views/<folder>/<study>/``: per series, ``.json``, ``.zip``, ``.nifti/``
    and ``.png``, as the folder asks."""

    def __init__(
        self, name: str, parent: DirNode, study: StudyDir, kinds: tuple[str, ...], parts: ViewParts, series_ttl: float
    ) -> None:
        super().__init__(name, parent, study)
        self._kinds, self._metadata, self._crcs, self._ttl = kinds, parts.metadata, parts.crcs, series_ttl
        self._analysis = parts.analysis

    def _entries(self, name: str, child: Node) -> Sequence[tuple[str, str, Callable[[str], Node]]]:
        if not isinstance(child, SeriesDir):
            return ()
        out: list[tuple[str, str, Callable[[str], Node]]] = []
        if "metadata" in self._kinds:
            out.append(("json", f"{name}.json", lambda n: MetadataFile(n, self, child, self._metadata, self._ttl)))
        if "zip" in self._kinds:
            out.append(("zip", f"{name}.zip", lambda n: ZipFile(n, self, child, self._crcs)))
        out += series_views(name, self, child, self._kinds, self._analysis)
        return out

    def xattrs(self) -> dict[str, str]:
        return self._of.xattrs()


class ViewsFolder(_Mirror):
    """``views/<folder>/``: per study, a directory of its series' views, and
    the study's own ``.json`` and/or ``.zip``."""

    def __init__(
        self, parent: DirNode, folder: FolderDir, parts: ViewParts, study_ttl: float, series_ttl: float
    ) -> None:
        super().__init__(folder.name, parent, folder)
        self._kinds = folder.folder.views
        self._parts, self._metadata, self._crcs = parts, parts.metadata, parts.crcs
        self._study_ttl, self._series_ttl = study_ttl, series_ttl

    def _entries(self, name: str, child: Node) -> Sequence[tuple[str, str, Callable[[str], Node]]]:
        if not isinstance(child, StudyDir):
            return ()
        out: list[tuple[str, str, Callable[[str], Node]]] = [
            (
                "dir",
                name,
                lambda n: ViewsStudy(n, self, child, self._kinds, self._parts, self._series_ttl),
            ),
        ]
        if "metadata" in self._kinds:
            out.append(
                ("json", f"{name}.json", lambda n: MetadataFile(n, self, child, self._metadata, self._study_ttl))
            )
        if "zip" in self._kinds:
            out.append(("zip", f"{name}.zip", lambda n: ZipFile(n, self, child, self._crcs)))
        return out

    def xattrs(self) -> dict[str, str]:
        return self._of.xattrs()


def views_dir(
    root: DirNode, name: str, folders: Sequence[FolderDir], parts: ViewParts, study_ttl: float, series_ttl: float
) -> StaticDir:
    """The ``views`` directory, with one directory per folder that has views."""
    views = StaticDir(name, root, root.mtime)
    views.add([ViewsFolder(views, f, parts, study_ttl, series_ttl) for f in folders if f.folder.views])
    return views
