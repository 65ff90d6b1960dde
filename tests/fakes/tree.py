"""Fakes of the tree's collaborators: a searcher answering from a dict and
counting its calls, a reader, and helpers to build a tree and walk it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from trolleyfs.config import CacheConfig, Config, Folder
from trolleyfs.errors import TrolleyError
from trolleyfs.model import Instance, InstanceRef, Query, Series, Study
from trolleyfs.stats import Stats
from trolleyfs.tree.base import DirNode, Node
from trolleyfs.tree.inodes import UidIndex
from trolleyfs.tree.tree import Tree
from trolleyfs.wiring import build_tree

NAMES = {
    "study": "{PatientName} {StudyDescription}",
    "series": "{SeriesNumber:03} {Modality}",
    "instance": "{InstanceNumber:04}",
}
FOLDER_TTL, STUDY_TTL, SERIES_TTL = 60.0, 300.0, 3600.0


class FakeSearcher:
    """A server's listings; each answer is made of new objects, as a real
    server's would be.  Counts every search by kind."""

    name = "fake"

    def __init__(self, studies: dict[str, dict[str, int]], deep: bool = False) -> None:
        # study UID -> {series UID: number of instances}
        self.studies = studies
        self.descriptions = {uid: f"study {i}" for i, uid in enumerate(studies)}
        self.deep = deep  # answer study searches down to the instances (as MINT can)
        self.calls: Counter[str] = Counter()
        self.queries: list[Query] = []
        self.fail: TrolleyError | None = None

    def _instances(self, study_uid: str, series_uid: str) -> list[Instance]:
        n = self.studies[study_uid][series_uid]
        # listed in reverse: the tree orders them by InstanceNumber
        return [
            Instance(study_uid, series_uid, f"{series_uid}.{i}", {"InstanceNumber": str(i)}) for i in range(n, 0, -1)
        ]

    def _series(self, study_uid: str) -> list[Series]:
        out = []
        for k, uid in enumerate(self.studies[study_uid]):
            s = Series(study_uid, uid, {"SeriesNumber": str(k + 1), "Modality": "CT"})
            if self.deep:
                s.instances = self._instances(study_uid, uid)
            out.append(s)
        return out

    async def find_studies(self, query: Query) -> list[Study]:
        self.calls["studies"] += 1
        self.queries.append(query)
        if self.fail:
            raise self.fail
        wanted = query.filters.get("StudyInstanceUID")
        out = []
        for uid in self.studies:
            if wanted is None or wanted == uid:
                attrs = {"PatientName": "DOE^JANE", "StudyDescription": self.descriptions[uid], "StudyDate": "20240102"}
                out.append(Study(uid, attrs, self._series(uid) if self.deep else None))
        return out

    async def find_series(self, study_uid: str) -> list[Series]:
        self.calls["series"] += 1
        if self.fail:
            raise self.fail
        return self._series(study_uid)

    async def find_instances(self, study_uid: str, series_uid: str) -> list[Instance]:
        self.calls["instances"] += 1
        if self.fail:
            raise self.fail
        return self._instances(study_uid, series_uid)

    async def aclose(self) -> None:
        pass


class FakeReader:
    """The Store: bytes made from the UID; sizes known once read."""

    def __init__(self) -> None:
        self.gets: list[tuple[str, str, list[str] | None]] = []
        self.sizes: dict[str, int] = {}

    async def get(self, server: str, ref: InstanceRef, siblings: Callable[[], list[str]] | None = None) -> bytes:
        self.gets.append((server, ref.instance_uid, siblings() if siblings else None))
        data = ref.instance_uid.encode() * 3
        self.sizes[ref.instance_uid] = len(data)
        return data

    def size_of(self, uid: str) -> int | None:
        return self.sizes.get(uid)

    def cached_in(self, uid: str) -> tuple[bool, bool]:
        return uid in self.sizes, False

    def stats(self) -> dict[str, object]:
        return {"memory_cache": {"objects": len(self.sizes)}, "disk_cache": None, "prefetch": {"in_flight": 0}}


def make_tree(
    searchers: dict[str, FakeSearcher], folders: tuple[Folder, ...] | None = None
) -> tuple[Tree, FakeReader, Stats, UidIndex]:
    if folders is None:
        folders = (Folder("all", next(iter(searchers)), {"PatientName": "DOE*"}),)
    cache = CacheConfig(folder_ttl=FOLDER_TTL, study_ttl=STUDY_TTL, series_ttl=SERIES_TTL)
    config = Config(path="test.toml", servers={}, folders=folders, names=NAMES, cache=cache)
    reader, stats, index = FakeReader(), Stats(), UidIndex()
    return build_tree(config, searchers, reader, stats, index), reader, stats, index


async def child(node: Node, *names: str) -> Node:
    for name in names:
        assert isinstance(node, DirNode)
        found = await node.lookup(name)
        assert found is not None, name
        node = found
    return node


async def names_of(node: Node) -> list[str]:
    assert isinstance(node, DirNode)
    return sorted(await node.children())


# ------------------------------------------------------------------ listings
