"""The directories that come from searches: a configured folder (its studies),
``by-uid`` (any study by its UID, on any server), a study (its series) and a
series (its instance files).

Children are named by the level's template, over what the presenter shows
of each object (:mod:`.presenter`: as listed, or de-identified); a refresh
reuses the node (and so the inode) of each object it still lists.  A search
that went deeper than asked (MINT, DICOM-QR at series or instance level)
pre-fills the children's listings, which then cost no request of their own."""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from typing import Protocol, TypeVar

import trio

from ..errors import TrolleyError
from ..folders import Folder, dates_as_written
from ..listings.identity import search_key
from ..listings.sources import listing_age
from ..model import Instance, Query, Series, Study
from ..naming import names_for
from ..rootnames import BY_UID_DIR
from .base import DirNode, ListedDir, Node, dicom_xattrs
from .cachestate import CACHE_XATTR, cache_state
from .context import Context
from .files import FileSource, InstanceFile
from .presenter import Shown

UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MAX_UID_LEN = 64
SERIES_LISTED_AT_ONCE = 4  # instance listings asked at once when a study's series are checked for served files


class _Object(Protocol):
    @property
    def uid(self) -> str: ...

    @property
    def attrs(self) -> dict[str, str]: ...


Obj = TypeVar("Obj", bound=_Object)
N = TypeVar("N", bound=Node)


def _as_listed(o: _Object) -> Shown:
    return Shown(o.uid, o.attrs)


def relist(
    template: str,
    objs: Sequence[Obj],
    kept: Callable[[Obj], N | None],
    update: Callable[[N, str, Obj], None],
    create: Callable[[str, Obj], N],
    suffix: str = "",
    shown: Callable[[Obj], Shown] = _as_listed,
) -> dict[str, Node]:
    """The children of a fresh listing, by name (names from ``template`` over
    what is ``shown`` of each object): the node that showed an object in the
    last listing (``kept``) is kept, and told its name and object anew
    (``update``), so its inode stays; a new object gets a new node (``create``)."""
    out: dict[str, Node] = {}
    views = [shown(o) for o in objs]
    for name, o in zip(names_for(template, [(v.attrs, v.uid) for v in views], suffix), objs, strict=True):
        node = kept(o)
        if node is not None:
            update(node, name, o)
        else:
            node = create(name, o)
        out[name] = node
    return out


def _epoch(date: str | None, tm: str | None, default: float) -> float:
    """A DICOM date and time as seconds since the epoch (``default`` if invalid)."""
    if not date or not re.match(r"^\d{8}$", date.strip()):
        return default
    t = (tm or "").strip().split(".")[0]
    t = (t + "000000")[:6] if re.match(r"^\d{2,6}$", t) else "000000"
    try:
        return _dt.datetime.strptime(date.strip() + t, "%Y%m%d%H%M%S").timestamp()
    except ValueError:
        return default


def _int(value: str | None) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return 1 << 31


def _series_order(s: Series) -> tuple[int, str]:
    return (_int(s.attrs.get("SeriesNumber")), s.uid)


def _instance_order(i: Instance) -> tuple[int, str]:
    return (_int(i.attrs.get("InstanceNumber")), i.uid)


class SeriesDir(ListedDir):
    """A series: its instance files (those the presenter serves)."""

    def __init__(
        self,
        name: str,
        parent: DirNode,
        ctx: Context,
        server: str,
        series: Series,
        mtime: float,
        study: Study,
    ) -> None:
        """``study``: the study it is listed in (its Patient ID: the patient
        the files must be of)."""
        super().__init__(name, parent, mtime, ctx.ttls.instances)
        self._ctx = ctx
        self.server, self.series = server, series
        self.study = study
        self._prefilled = series.instances
        self._generation = ctx.presenter.generation  # of the instances left out, when last filtered
        self.all_left_out = False  # it listed instances, and none of them is served

    @property
    def patient_id(self) -> str | None:
        """The Patient ID its study is listed under, if any."""
        return self.study.attrs.get("PatientID")

    def update(self, name: str, series: Series, study: Study) -> None:
        """The study's listing was refreshed and still shows this series."""
        self.rename(name)
        self.series = series
        self.study = study
        if series.instances is not None:
            self._prefilled = series.instances

    async def _resolve(self) -> dict[str, Node]:
        instances, self._prefilled = self._prefilled, None
        if instances is None:
            instances = await self._ctx.listings.find_instances(self.server, self.series.study_uid, self.series.uid)
            self._age = listing_age(instances)
        present = self._ctx.presenter
        self._generation = present.generation
        served = [i for i in instances if present.serves(i, self.series)]
        self.all_left_out = bool(instances) and not served
        old = {n.instance_uid: n for n in self._current() if isinstance(n, InstanceFile)}
        source = FileSource(
            self._ctx.reader,
            self.server,
            self.sibling_uids,
            self._ctx.form,
            lambda: self.patient_id,
            self._instance_xattrs,
        )
        return relist(
            self._ctx.names["instance"],
            sorted(served, key=_instance_order),
            lambda i: old.get(i.uid),
            lambda node, name, _: node.rename(name),
            lambda name, i: InstanceFile(name, self, i, source),
            ".dcm",
            lambda i: present.instance(i, self.series, self.study),
        )

    async def children(self) -> Mapping[str, Node]:
        """The files; an instance found not to be served since the listing
        (a read found it must be left out) is gone from it at once."""
        await super().children()
        self.drop_left_out()
        assert self._children is not None
        return self._children

    def drop_left_out(self) -> None:
        """Leave out of the current listing the files found not to be served since."""
        present = self._ctx.presenter
        if present.generation == self._generation or self._children is None:
            return
        self._generation = present.generation
        served = {
            n: c
            for n, c in self._children.items()
            if not isinstance(c, InstanceFile) or present.serves(c.instance, self.series)
        }
        if len(served) != len(self._children):
            self.all_left_out = not any(isinstance(c, InstanceFile) for c in served.values())
            self._children = served

    def _instance_xattrs(self, instance: Instance) -> dict[str, str]:
        present = self._ctx.presenter
        shown = present.instance(instance, self.series, self.study)
        return dicom_xattrs(
            shown.attrs,
            SOPInstanceUID=shown.uid,
            SeriesInstanceUID=present.uid(instance.series_uid),
            StudyInstanceUID=present.uid(instance.study_uid),
        )

    def sibling_uids(self) -> list[str]:
        """The instance UIDs of the series, in listing order."""
        return [n.instance_uid for n in self._current() if isinstance(n, InstanceFile)]

    def xattrs(self) -> dict[str, str]:
        present = self._ctx.presenter
        shown = present.series(self.series, self.study)
        out = dicom_xattrs(
            shown.attrs, SeriesInstanceUID=shown.uid, StudyInstanceUID=present.uid(self.series.study_uid)
        )
        if self._children is not None:  # once listed: what a read would take from the caches
            files = [n for n in self._current() if isinstance(n, InstanceFile)]
            out[CACHE_XATTR] = cache_state(self.server, files, self._ctx.reader)
        return out


class StudyDir(ListedDir):
    """A study: its series (those with a file the presenter serves)."""

    def __init__(self, name: str, parent: DirNode, ctx: Context, server: str, study: Study) -> None:
        shown = ctx.presenter.study(study).attrs
        when = _epoch(shown.get("StudyDate"), shown.get("StudyTime"), ctx.mount_time)
        super().__init__(name, parent, when, ctx.ttls.series)
        self._ctx = ctx
        self.server, self.study = server, study
        self._prefilled = study.series
        self._generation = ctx.presenter.generation

    async def children(self) -> Mapping[str, Node]:
        """The series; one whose every file was found not to be served since
        the listing (reads found them out) is gone from it at once."""
        children = await super().children()
        present = self._ctx.presenter
        if present.generation != self._generation and self._children is not None:
            self._generation = present.generation
            for c in self._children.values():
                if isinstance(c, SeriesDir):
                    c.drop_left_out()
            shown = {n: c for n, c in self._children.items() if not (isinstance(c, SeriesDir) and c.all_left_out)}
            if len(shown) != len(self._children):
                self._children = children = shown
        return children

    def update(self, name: str, study: Study) -> None:
        """The parent's listing was refreshed and still shows this study."""
        self.rename(name)
        self.study = study
        if study.series is not None:
            self._prefilled = study.series

    async def _resolve(self) -> dict[str, Node]:
        series, self._prefilled = self._prefilled, None
        if series is None:
            series = await self._ctx.listings.find_series(self.server, self.study.uid)
            self._age = listing_age(series)
        self._generation = self._ctx.presenter.generation
        if self._ctx.presenter.filters_series:
            series = await self._served_series(series)
        old = {n.series.uid: n for n in self._current() if isinstance(n, SeriesDir)}
        study, present = self.study, self._ctx.presenter
        return relist(
            self._ctx.names["series"],
            sorted(series, key=_series_order),
            lambda s: old.get(s.uid),
            lambda node, name, s: node.update(name, s, study),
            lambda name, s: SeriesDir(name, self, self._ctx, self.server, s, self.mtime, study),
            shown=lambda s: present.series(s, study),
        )

    async def _served_series(self, series: Sequence[Series]) -> list[Series]:
        """The series that show a file: each one's instances are listed now
        (they fill its directory, which then costs no request of its own), and
        a series none of whose instances is served is left out.  A series
        whose instances cannot be listed now is shown (its listing fails or
        works when it is opened)."""
        limiter = trio.CapacityLimiter(SERIES_LISTED_AT_ONCE)

        async def fill(s: Series) -> None:
            async with limiter:
                with suppress(TrolleyError):
                    s.instances = list(await self._ctx.listings.find_instances(self.server, self.study.uid, s.uid))

        async with trio.open_nursery() as nursery:
            for s in series:
                if s.instances is None:
                    nursery.start_soon(fill, s)
        present = self._ctx.presenter
        return [s for s in series if not s.instances or any(present.serves(i, s) for i in s.instances)]

    def xattrs(self) -> dict[str, str]:
        shown = self._ctx.presenter.study(self.study)
        return dicom_xattrs(shown.attrs, StudyInstanceUID=shown.uid) | {"user.trolleyfs.server": self.server}


class FolderDir(ListedDir):
    """A configured folder: the studies its query finds on its server."""

    def __init__(self, folder: Folder, parent: DirNode, ctx: Context) -> None:
        super().__init__(folder.name, parent, ctx.mount_time, ctx.ttls.studies)
        self._ctx = ctx
        self.folder = folder

    def query(self) -> Query:
        return self.folder.study_query()

    async def _resolve(self) -> dict[str, Node]:
        server = self.folder.server
        f = self.folder
        key = search_key(self.query(), *dates_as_written(f.min_study_date, f.max_study_date))
        studies = await self._ctx.listings.find_studies(server, self.query(), key)
        self._age = listing_age(studies)
        old = {n.study.uid: n for n in self._current() if isinstance(n, StudyDir) and n.server == server}
        return relist(
            self._ctx.names["study"],
            studies,
            lambda s: old.get(s.uid),
            StudyDir.update,
            lambda name, s: StudyDir(name, self, self._ctx, server, s),
            shown=self._ctx.presenter.study,
        )

    def xattrs(self) -> dict[str, str]:
        return {
            "user.trolleyfs.server": self.folder.server,
            "user.trolleyfs.query": json.dumps(dict(self.folder.query), sort_keys=True),
        }


class ByUidDir(DirNode):
    """``by-uid/<StudyInstanceUID>``: any study by UID, on any configured server
    (asked in config order).  Lists the studies looked up so far; a name that
    is not a UID costs no request.  The UID is the one shown (de-identified:
    a new UID, found among the studies the mount's folders show, see
    :mod:`.presenter`)."""

    def __init__(self, parent: DirNode, ctx: Context) -> None:
        super().__init__(BY_UID_DIR, parent, ctx.mount_time, float("inf"))
        self._ctx = ctx
        self._found: dict[str, Node] = {}
        self._lock = trio.Lock()

    async def children(self) -> Mapping[str, Node]:
        return self._found

    def cached_child(self, name: str) -> Node | None:
        return self._found.get(name)

    async def lookup(self, name: str) -> Node | None:
        if name in self._found:
            return self._found[name]
        if not UID_RE.match(name) or len(name) > MAX_UID_LEN:
            return None  # not a UID: no request
        async with self._lock:
            if name in self._found:
                return self._found[name]
            return await self._search(name)

    async def _search(self, name: str) -> Node | None:
        uid = self._ctx.presenter.study_of(name)
        if uid is None:  # a de-identified UID not shown by this mount (noted yesterday, before a remount)
            await self._list_folders()
            uid = self._ctx.presenter.study_of(name)
        if uid is None:
            return None  # no folder shows it: there is nothing to ask for
        servers = self._ctx.listings.servers
        query = Query(filters={"StudyInstanceUID": uid}, limit=1)
        errors: list[TrolleyError] = []
        for server in servers:
            try:
                studies = await self._ctx.listings.find_studies(server, query)
            except TrolleyError as exc:
                errors.append(exc)
                continue
            match = [s for s in studies if s.uid == uid]
            if match:
                node = StudyDir(name, self, self._ctx, server, match[0])
                self._found[name] = node
                return node
        if errors and len(errors) == len(servers):
            raise errors[0]
        return None

    async def _list_folders(self) -> None:
        """List the configured folders (each at most once per its listing's
        TTL), so that the presenter knows the new UIDs of their studies."""
        parent = self.parent
        if parent is None:
            return
        for node in list((await parent.children()).values()):
            if isinstance(node, FolderDir):
                with suppress(TrolleyError):  # a folder that cannot be listed shows nothing
                    await node.children()
