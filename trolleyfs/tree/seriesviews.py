"""The analysis views of a series, beside its ``.json`` and ``.zip``:

```
views/<folder>/<study>/<series>.nifti/    what dcm2niix makes of the series (<series>.nii.gz, <series>.json, ...)
views/<folder>/<study>/<series>.png       a preview: its middle image
```

Both are made of the series' objects as the folder's files deliver them
(through the Store: its caches, in the folder's form), by the engines of
:mod:`trolleyfs.derive`, and kept in the :class:`~trolleyfs.read.derived.DerivedCache`
as a form of the series: under a key made of the view, its engine's form
(dcm2niix's version and options; the preview's renderer), the series, the
folder's form and the cache keys of the objects it is made of (so a series
that gains an instance is made anew).

Nothing is made by listing ``views/<folder>/<study>/``: the ``.nifti`` and
``.png`` names come from the folder's listing.  Looking inside a ``.nifti``
directory converts the series (what is in it depends on what dcm2niix
makes); ``stat`` of the ``.png`` renders it (its size is exact only then, as
for zips).  A series dcm2niix makes nothing of has an empty ``.nifti``
directory, a series with no image an empty ``.png``, with one log line each.

The NIfTI view reads the whole series (with the Store's series readahead);
the preview reads one instance, the middle one, alone (no readahead), and its
neighbours only when it holds no image."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import trio

from ..derive.nifti import Dcm2niix
from ..derive.preview import Previewer, preview_instances
from ..errors import NotFound, ProtocolError, TrolleyError
from ..read.derived import Bundle, Busy, DerivedCache
from .base import DirNode, FileNode, Node
from .dirs import SeriesDir
from .files import InstanceFile

log = logging.getLogger("trolleyfs.views")

NIFTI_SUFFIX = ".nifti"
PREVIEW_SUFFIX = ".png"
STEM = "series"  # the name dcm2niix's files are made under; shown under the series' name
PREVIEW_FILE = "preview.png"
PREVIEW_CANDIDATES = 3  # the middle instance, then its neighbours if it holds no image
VIEW_ATTR_TIMEOUT = 1.0  # a view follows its series' listing: the kernel asks again soon


@dataclass
class AnalysisParts:
    """What the analysis views are made with (built by :mod:`trolleyfs.wiring`):
    the derived-objects cache, the engines (``nifti`` None when no folder
    asks for NIfTI) and how many NIfTI conversions may run at once, reading
    their series included (each holds its series in memory)."""

    derived: DerivedCache
    nifti: Dcm2niix | None
    previewer: Previewer
    nifti_slots: trio.CapacityLimiter

    def stats(self) -> dict[str, object]:
        nifti = self.nifti.counters.as_dict() if self.nifti is not None else None
        return {"nifti": nifti, "preview": self.previewer.counters.as_dict(), "derived_cache": self.derived.stats()}


async def _files(series: SeriesDir) -> list[InstanceFile]:
    """The series' instance files, in listing order (Instance Number)."""
    return [f for f in (await series.children()).values() if isinstance(f, InstanceFile)]


def _digest(files: Sequence[InstanceFile]) -> str:
    """What the view is made of: the cache keys of the objects, in any order."""
    return hashlib.sha256("\n".join(sorted(f.content_key for f in files)).encode()).hexdigest()[:32]


def _form(files: Sequence[InstanceFile]) -> str:
    return files[0].source.form if files else ""


def _number(value: str | None) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _alone(f: InstanceFile) -> Callable[[], Awaitable[bytes]]:
    """Read one file's object through the Store as the file does, but alone:
    without the series readahead a read of a file starts."""

    async def fetch() -> bytes:
        return await f.source.reader.get(f.source.server, f.ref)  # no siblings: no readahead

    return fetch


class DerivedFile(FileNode):
    """One file dcm2niix made, read from its bundle (cached, or made anew)."""

    attr_timeout = VIEW_ATTR_TIMEOUT
    keep_cache = False  # follows the series' listing

    def __init__(self, name: str, parent: NiftiDir, made_as: str, size: int) -> None:
        super().__init__(name, parent, parent.mtime)
        self._dir = parent
        self.made_as = made_as  # its name in the bundle
        self.size = size

    def known_size(self) -> int | None:
        return self.size

    async def read_all(self) -> bytes:
        data = (await self._dir.bundle()).file(self.made_as)
        if data is None:
            raise NotFound(f"{self.path}: dcm2niix no longer makes this file (the series changed)")
        if len(data) != self.size:  # never serve bytes of another length than stat said
            self.size = len(data)
            raise ProtocolError(f"{self.path}: the series changed since its size was given; read it again")
        return data


class NiftiDir(DirNode):
    """``<series>.nifti/``: the files dcm2niix makes of the series."""

    def __init__(self, name: str, parent: DirNode, series: SeriesDir, nifti: Dcm2niix, parts: AnalysisParts) -> None:
        super().__init__(name, parent, series.mtime, series.ttl)
        self._series, self._nifti, self._parts = series, nifti, parts
        self._nodes: dict[str, DerivedFile] = {}  # by the name in the bundle
        self._names: dict[str, Node] = {}

    def _shown(self, made_as: str) -> str:
        stem = self.name.removesuffix(NIFTI_SUFFIX)
        return stem + made_as[len(STEM) :] if made_as.startswith(STEM) else made_as

    async def bundle(self) -> Bundle:
        """What dcm2niix makes of the series as now listed (cached, or converted now)."""
        files = await _files(self._series)
        try:
            form = await self._nifti.form()
        except OSError as exc:  # dcm2niix cannot be run here at all
            raise TrolleyError(f"{self.path}: {exc}") from None
        key = DerivedCache.key("nifti", form, self._series.series.uid, _form(files), _digest(files))
        return await self._parts.derived.get(key, lambda busy: self._convert(files, busy))

    async def _convert(self, files: Sequence[InstanceFile], busy: Busy) -> Bundle:
        slots = self._parts.nifti_slots
        with busy():  # waiting for other conversions, each bounded by the timeout
            await slots.acquire()
        try:
            objects = [await f.read_all() for f in files]  # the first read starts the series readahead
            with busy():
                result = await self._nifti.convert(objects, STEM)
        finally:
            slots.release()
        if not result.files and result.final:
            log.info("%s: no NIfTI: %s", self.path, result.message)
        elif not result.files:
            log.warning("%s: no NIfTI this time (tried again at the next read): %s", self.path, result.message)
        elif result.message:
            log.info("%s: %s", self.path, result.message)
        return Bundle(result.files, result.message, result.final)

    async def children(self) -> Mapping[str, Node]:
        bundle = await self.bundle()
        nodes: dict[str, DerivedFile] = {}
        names: dict[str, Node] = {}
        for made_as, data in bundle.files:
            shown = self._shown(made_as)
            node = self._nodes.get(made_as)
            if node is None:
                node = DerivedFile(shown, self, made_as, len(data))
            else:
                node.rename(shown)
                node.size = len(data)
            nodes[made_as] = node
            names[shown] = node
        self._nodes, self._names = nodes, names
        return names

    def cached_child(self, name: str) -> Node | None:
        return self._names.get(name)

    def xattrs(self) -> dict[str, str]:
        return self._series.xattrs()


class PreviewFile(FileNode):
    """``<series>.png``: the series' middle image (empty when it has none)."""

    attr_timeout = VIEW_ATTR_TIMEOUT
    keep_cache = False  # follows the series' listing

    def __init__(self, name: str, parent: DirNode, series: SeriesDir, parts: AnalysisParts) -> None:
        super().__init__(name, parent, series.mtime)
        self._series, self._parts = series, parts
        self._key: str | None = None  # as last read

    def known_size(self) -> int | None:
        manifest = None if self._key is None else self._parts.derived.manifest(self._key)
        return None if manifest is None else sum(size for _, size in manifest)

    async def read_all(self) -> bytes:
        files = await _files(self._series)
        picks = preview_instances(
            [(f.instance.uid, _number(f.instance.attrs.get("InstanceNumber"))) for f in files], PREVIEW_CANDIDATES
        )
        by_uid = {f.instance.uid: f for f in files}
        chosen = [by_uid[uid] for uid in picks]
        previewer = self._parts.previewer
        key = DerivedCache.key("preview", previewer.form(), self._series.series.uid, _form(files), _digest(chosen))
        self._key = key
        bundle = await self._parts.derived.get(key, lambda busy: self._render(chosen, busy))
        return bundle.file(PREVIEW_FILE) or b""

    async def _render(self, chosen: Sequence[InstanceFile], busy: Busy) -> Bundle:
        made = await self._parts.previewer.render_first([_alone(f) for f in chosen], busy)
        if made.png is None:
            log.info("%s: no preview: %s", self.path, made.message)
            return Bundle((), made.message)
        return Bundle(((PREVIEW_FILE, made.png),))

    def xattrs(self) -> dict[str, str]:
        return self._series.xattrs()


def series_views(
    name: str, parent: DirNode, series: SeriesDir, kinds: Sequence[str], parts: AnalysisParts | None
) -> list[tuple[str, str, Callable[[str], Node]]]:
    """``(kind, entry name, build(name))`` of the analysis views of ``series``
    (shown as ``name``) that ``kinds`` asks for."""
    out: list[tuple[str, str, Callable[[str], Node]]] = []
    if parts is None:
        return out
    nifti = parts.nifti
    if "nifti" in kinds and nifti is not None:
        out.append(("nifti", f"{name}{NIFTI_SUFFIX}", lambda n: NiftiDir(n, parent, series, nifti, parts)))
    if "preview" in kinds:
        out.append(("png", f"{name}{PREVIEW_SUFFIX}", lambda n: PreviewFile(n, parent, series, parts)))
    return out
