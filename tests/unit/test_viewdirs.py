"""The ``views`` directory over the tree's fakes: where the views are (never
inside a folder), their names, the folder's own listings reused (no second
search), nodes kept across refreshes, and a zip node read in ranges whose
members are the folder's files."""

from __future__ import annotations

import io
import zipfile

import pytest

from tests.fakes.tree import NAMES, FakeReader, FakeSearcher, child, names_of
from trolleyfs.config import CacheConfig, Config, Folder
from trolleyfs.derive.metadata import Metadata
from trolleyfs.derive.zipstream import Crcs
from trolleyfs.errors import ProtocolError
from trolleyfs.stats import Stats
from trolleyfs.tree.files import InstanceFile
from trolleyfs.tree.inodes import UidIndex
from trolleyfs.tree.tree import Tree
from trolleyfs.tree.viewdirs import MetadataFile, ViewParts, ViewsFolder, ZipFile
from trolleyfs.wiring import build_tree

STUDIES = {"1.1": {"1.1.1": 2, "1.1.2": 3}, "1.2": {"1.2.1": 1}}
STUDY = "DOE JANE study 0"


def make(views: tuple[str, ...] = ("metadata", "zip")) -> tuple[Tree, FakeSearcher, FakeReader]:
    pacs = FakeSearcher(STUDIES)
    folders = (Folder("all", "pacs", {}, views=views), Folder("plain", "pacs", {}))
    config = Config("t.toml", {}, folders, NAMES, CacheConfig())
    reader = FakeReader()
    parts = ViewParts(Metadata({}, reader), Crcs())
    return build_tree(config, {"pacs": pacs}, reader, Stats(), UidIndex(), parts), pacs, reader


async def test_views_live_beside_the_folders_and_a_folder_still_holds_only_studies() -> None:
    tree, pacs, _ = make()
    assert await names_of(tree.root) == [
        ".trolleyfs",
        "all",
        "by-accession",
        "by-patient",
        "by-uid",
        "plain",
        "query",
        "views",
    ]
    assert await names_of(await child(tree.root, "views")) == ["all"]  # only folders that ask for views
    assert await names_of(await child(tree.root, "all")) == [STUDY, "DOE JANE study 1"]
    assert await names_of(await child(tree.root, "views", "all")) == [
        STUDY,
        f"{STUDY}.json",
        f"{STUDY}.zip",
        "DOE JANE study 1",
        "DOE JANE study 1.json",
        "DOE JANE study 1.zip",
    ]
    assert await names_of(await child(tree.root, "views", "all", STUDY)) == [
        "001 CT.json",
        "001 CT.zip",
        "002 CT.json",
        "002 CT.zip",
    ]
    assert await names_of(await child(tree.root, "all", STUDY)) == ["001 CT", "002 CT"]
    assert pacs.calls["studies"] == 1 and pacs.calls["series"] == 1  # the views use the folder's listings


async def test_no_views_no_views_directory() -> None:
    tree, _, _ = make(views=())
    assert "views" not in await names_of(tree.root)


async def test_only_the_views_asked_for() -> None:
    tree, _, _ = make(views=("zip",))
    assert await names_of(await child(tree.root, "views", "all", STUDY)) == ["001 CT.zip", "002 CT.zip"]


async def test_view_nodes_are_kept_across_listings() -> None:
    tree, _, _ = make()
    views = await child(tree.root, "views", "all")
    assert isinstance(views, ViewsFolder)
    first = dict(await views.children())
    again = dict(await views.children())
    assert all(first[n] is again[n] for n in first)


def instance_bytes(uid: str) -> bytes:
    return uid.encode() * 3  # what FakeReader serves


async def test_a_series_zip_holds_the_series_files_under_its_name() -> None:
    tree, _, reader = make()
    z = await child(tree.root, "views", "all", STUDY, "002 CT.zip")
    assert isinstance(z, ZipFile)
    assert z.known_size() is None and reader.gets == []  # nothing read by a listing
    await z.learn_size()
    size = z.known_size()
    assert size is not None
    stream = await z.open_ranges()
    data = await stream.read(0, size + 10)
    assert len(data) == size
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        assert zf.namelist() == ["002 CT/0001.dcm", "002 CT/0002.dcm", "002 CT/0003.dcm"]
        series = await child(tree.root, "all", STUDY, "002 CT")
        for name in zf.namelist():
            f = await child(series, name.split("/")[1])
            assert isinstance(f, InstanceFile) and zf.read(name) == await f.read_all()


async def test_a_study_zip_holds_every_series() -> None:
    tree, _, _ = make()
    z = await child(tree.root, "views", "all", f"{STUDY}.zip")
    assert isinstance(z, ZipFile)
    stream = await z.open_ranges()
    with zipfile.ZipFile(io.BytesIO(await stream.read(0, stream.size))) as zf:
        assert [n.split("/", 1)[1] for n in zf.namelist()] == [
            "001 CT/0001.dcm",
            "001 CT/0002.dcm",
            "002 CT/0001.dcm",
            "002 CT/0002.dcm",
            "002 CT/0003.dcm",
        ]
        assert all(n.startswith(f"{STUDY}/") for n in zf.namelist())
        assert zf.read(f"{STUDY}/001 CT/0002.dcm") == instance_bytes("1.1.1.2")


async def test_metadata_without_a_metadata_source_reads_the_objects() -> None:
    tree, _, reader = make()
    m = await child(tree.root, "views", "all", STUDY, "001 CT.json")
    assert isinstance(m, MetadataFile) and m.known_size() is None
    # FakeReader's objects are not DICOM: the document cannot be built, and the error says why
    with pytest.raises(ProtocolError, match="cannot read its header"):
        await m.read_all()
    assert [uid for _, uid, _ in reader.gets] == ["1.1.1.1"]
