"""The ``.nifti`` and ``.png`` views of a series over the tree's fakes, with
the real engines (dcm2niix, the previewer) and the real derived-objects
cache: listing makes nothing and reads nothing; a ``.nifti`` directory reads
the series (with readahead) and names dcm2niix's files after the series; a
preview reads one instance alone; a series that gains an instance is made
anew; a file whose size changed since ``stat`` is EIO, never other bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import trio

from tests import series
from tests.fakes.tree import NAMES, FakeSearcher, child, names_of
from trolleyfs.config import CacheConfig, Config, Folder
from trolleyfs.derive.metadata import Metadata
from trolleyfs.derive.nifti import Dcm2niix, find_dcm2niix
from trolleyfs.derive.preview import Previewer
from trolleyfs.derive.zipstream import Crcs
from trolleyfs.errors import ProtocolError
from trolleyfs.model import InstanceRef
from trolleyfs.read.derived import DerivedCache
from trolleyfs.stats import Stats
from trolleyfs.tree.inodes import UidIndex
from trolleyfs.tree.seriesviews import AnalysisParts, DerivedFile, NiftiDir, PreviewFile
from trolleyfs.tree.tree import Tree
from trolleyfs.tree.viewdirs import ViewParts
from trolleyfs.wiring import build_tree

STUDY = "DOE JANE study 0"


class SeriesReader:
    """The Store over generated CT series: instance ``<series>.<n>`` is slice
    ``n`` of a CT of the series' size (made anew when the series grows)."""

    def __init__(self, pacs: FakeSearcher) -> None:
        self.pacs = pacs
        self.gets: list[tuple[str, bool]] = []  # (instance UID, with siblings)

    async def get(self, server: str, ref: InstanceRef, siblings: Callable[[], list[str]] | None = None) -> bytes:
        self.gets.append((ref.instance_uid, siblings is not None))
        n = self.pacs.studies[ref.study_uid][ref.series_uid]
        return series.ct(slices=n, size=32, key=f"{ref.series_uid}-{n}")[int(ref.instance_uid.rsplit(".", 1)[1]) - 1]

    def size_of(self, key: str) -> int | None:
        return None

    def cached_in(self, uid: str) -> tuple[bool, bool]:
        return False, False

    def stats(self) -> dict[str, object]:
        return {}


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as n:
        yield n
        n.cancel_scope.cancel()


def make(nursery: trio.Nursery, series_ttl: float = 3600.0) -> tuple[Tree, FakeSearcher, SeriesReader, AnalysisParts]:
    binary = find_dcm2niix()
    assert binary is not None, "dcm2niix is a dependency: run `make venv`"
    pacs = FakeSearcher({"1.1": {"1.1.1": 4, "1.1.2": 5}})
    folders = (Folder("all", "pacs", {}, views=("nifti", "preview")),)
    reader = SeriesReader(pacs)
    parts = AnalysisParts(DerivedCache(2**24, None, nursery), Dcm2niix(binary), Previewer(), trio.CapacityLimiter(1))
    views = ViewParts(Metadata({}, reader), Crcs(), analysis=parts)
    config = Config("t.toml", {}, folders, NAMES, CacheConfig(series_ttl=series_ttl))
    return build_tree(config, {"pacs": pacs}, reader, Stats(), UidIndex(), views), pacs, reader, parts


async def test_listing_the_views_makes_and_reads_nothing(nursery: trio.Nursery) -> None:
    tree, _, reader, parts = make(nursery)
    study = await child(tree.root, "views", "all", STUDY)
    assert await names_of(study) == ["001 CT.nifti", "001 CT.png", "002 CT.nifti", "002 CT.png"]
    png = await child(study, "001 CT.png")
    assert isinstance(png, PreviewFile) and png.known_size() is None
    assert isinstance(await child(study, "001 CT.nifti"), NiftiDir)
    assert reader.gets == [] and parts.derived.made == 0
    assert tree.root.cached_child("views") is not None


async def test_a_nifti_directory_holds_dcm2niix_s_files_under_the_series_name(nursery: trio.Nursery) -> None:
    tree, _, reader, parts = make(nursery)
    nifti = await child(tree.root, "views", "all", STUDY, "002 CT.nifti")
    assert isinstance(nifti, NiftiDir)
    assert nifti.cached_child("002 CT.nii.gz") is None  # nothing known before it is looked into
    assert await names_of(nifti) == ["002 CT.json", "002 CT.nii.gz"]
    assert sorted(reader.gets) == [(f"1.1.2.{i}", True) for i in range(1, 6)]  # the series, with readahead
    volume = await child(nifti, "002 CT.nii.gz")
    assert isinstance(volume, DerivedFile) and nifti.cached_child("002 CT.nii.gz") is volume
    data = await volume.read_all()
    assert data[:2] == b"\x1f\x8b" and volume.known_size() == len(data)
    assert parts.nifti is not None and parts.nifti.counters.conversions == 1 and len(reader.gets) == 5


async def test_a_preview_reads_one_instance_alone(nursery: trio.Nursery) -> None:
    tree, _, reader, parts = make(nursery)
    png = await child(tree.root, "views", "all", STUDY, "002 CT.png")
    assert isinstance(png, PreviewFile)
    data = await png.read_all()
    assert data.startswith(b"\x89PNG") and png.known_size() == len(data)
    assert reader.gets == [("1.1.2.3", False)]  # the middle one by Instance Number, no readahead
    assert await png.read_all() == data and len(reader.gets) == 1 and parts.previewer.counters.conversions == 1


async def test_a_series_that_gains_an_instance_is_converted_anew(nursery: trio.Nursery) -> None:
    tree, pacs, _, parts = make(nursery, series_ttl=0.05)
    nifti = await child(tree.root, "views", "all", STUDY, "001 CT.nifti")
    volume = await child(nifti, "001 CT.nii.gz")
    assert isinstance(volume, DerivedFile)
    stat_size = volume.known_size()
    pacs.studies["1.1"]["1.1.1"] = 6
    await trio.sleep(0.1)  # the series' listing is old: listed again at the next look
    with pytest.raises(ProtocolError, match="the series changed"):
        await volume.read_all()  # never bytes of another length than stat said
    assert volume.known_size() != stat_size
    assert len(await volume.read_all()) == volume.known_size()
    assert parts.nifti is not None and parts.nifti.counters.conversions == 2
    assert await child(nifti, "001 CT.nii.gz") is volume  # the same node (inode) for the same file
