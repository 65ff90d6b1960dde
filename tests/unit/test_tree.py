"""The tree on its own, over a fake searcher and a fake reader: lazy listings
and their TTLs (on trio's MockClock), refreshes that fail, stable names and
inodes, by-uid across servers, the inode table and its UID index, stats.json."""

from __future__ import annotations

import datetime
import json

import pytest
import trio

from tests.fakes.tree import FOLDER_TTL, FakeSearcher, child, make_tree, names_of
from trolleyfs.errors import NotFound, Unavailable
from trolleyfs.rootnames import BY_UID_DIR, CONTROL_DIR, STATS_FILE
from trolleyfs.tree.base import DirNode, FileNode, StaticDir
from trolleyfs.tree.dirs import SeriesDir, StudyDir
from trolleyfs.tree.files import InstanceFile
from trolleyfs.tree.inodes import ROOT_INO, InodeTable, UidIndex


async def test_nothing_is_searched_until_listed_and_each_level_asks_once() -> None:
    pacs = FakeSearcher({"1.1": {"1.1.1": 2, "1.1.2": 1}})
    tree, _, stats, _ = make_tree({"pacs": pacs})
    assert await names_of(tree.root) == [CONTROL_DIR, "all", "by-accession", "by-patient", BY_UID_DIR, "query"]
    assert pacs.calls == {}  # the root is static
    folder = await child(tree.root, "all")
    assert pacs.calls == {}  # found without listing it
    assert await names_of(folder) == ["DOE JANE study 0"]
    assert pacs.queries[0].filters == {"PatientName": "DOE*"}
    study = await child(folder, "DOE JANE study 0")
    assert pacs.calls == {"studies": 1}
    assert await names_of(study) == ["001 CT", "002 CT"]
    assert await names_of(await child(study, "001 CT")) == ["0001.dcm", "0002.dcm"]
    assert pacs.calls == {"studies": 1, "series": 1, "instances": 1}
    assert stats.requests == {"pacs": 3}  # every search counted for its server


async def test_a_listing_is_kept_for_its_ttl_and_refreshed_after(autojump_clock: trio.abc.Clock) -> None:
    pacs = FakeSearcher({"1.1": {"1.1.1": 1}})
    tree, _, _, _ = make_tree({"pacs": pacs})
    folder = await child(tree.root, "all")
    await names_of(folder)
    await trio.sleep(FOLDER_TTL - 1)
    await names_of(folder)
    assert pacs.calls["studies"] == 1
    await trio.sleep(2)
    pacs.studies["1.2"] = {}
    pacs.descriptions["1.2"] = "new"
    assert await names_of(folder) == ["DOE JANE new", "DOE JANE study 0"]
    assert pacs.calls["studies"] == 2


async def test_concurrent_listers_share_one_search() -> None:
    pacs = FakeSearcher({"1.1": {}})
    tree, _, _, _ = make_tree({"pacs": pacs})
    folder = await child(tree.root, "all")
    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(names_of, folder)
    assert pacs.calls["studies"] == 1


async def test_a_failed_first_listing_raises_and_a_failed_refresh_keeps_the_old_one(
    autojump_clock: trio.abc.Clock,
) -> None:
    pacs = FakeSearcher({"1.1": {}})
    tree, _, _, _ = make_tree({"pacs": pacs})
    folder = await child(tree.root, "all")
    pacs.fail = Unavailable("down", server="pacs")
    with pytest.raises(Unavailable):
        await names_of(folder)
    pacs.fail = None
    before = await names_of(folder)
    assert pacs.calls["studies"] == 2
    await trio.sleep(FOLDER_TTL + 1)
    pacs.fail = Unavailable("down", server="pacs")
    assert await names_of(folder) == before  # the old listing, not an error
    assert pacs.calls["studies"] == 3
    await trio.sleep(5)
    assert await names_of(folder) == before
    assert pacs.calls["studies"] == 3  # no retry yet: not a request per lookup while the server is down
    await trio.sleep(6)
    pacs.fail = None
    pacs.descriptions["1.1"] = "renamed"
    assert await names_of(folder) == ["DOE JANE renamed"]  # retried about 10 s later
    assert pacs.calls["studies"] == 4


async def test_names_nodes_and_inodes_stay_across_a_refresh(autojump_clock: trio.abc.Clock) -> None:
    pacs = FakeSearcher({"1.1": {"1.1.1": 1}, "1.2": {}})
    tree, _, _, _ = make_tree({"pacs": pacs})
    folder = await child(tree.root, "all")
    study = await child(folder, "DOE JANE study 0")
    other = await child(folder, "DOE JANE study 1")
    ino = tree.inodes.remember(study)
    await trio.sleep(FOLDER_TTL + 1)
    pacs.descriptions["1.1"] = "renamed"
    assert await names_of(folder) == ["DOE JANE renamed", "DOE JANE study 1"]
    assert await child(folder, "DOE JANE renamed") is study  # the same node under its new name
    assert await child(folder, "DOE JANE study 1") is other
    assert study.name == "DOE JANE renamed" and study.path == "/all/DOE JANE renamed"
    assert isinstance(study, StudyDir) and study.xattrs()["user.dicom.StudyDescription"] == "renamed"
    assert tree.inodes.remember(study) == ino and tree.inodes.lookups(ino) == 2


async def test_series_and_instances_are_sorted_by_number_and_collisions_get_a_uid_tag(
    autojump_clock: trio.abc.Clock,
) -> None:
    pacs = FakeSearcher({"1.1": {"1.1.1": 3}})
    tree, _, _, _ = make_tree({"pacs": pacs})
    series = await child(tree.root, "all", "DOE JANE study 0", "001 CT")
    assert await names_of(series) == ["0001.dcm", "0002.dcm", "0003.dcm"]
    assert isinstance(series, SeriesDir)
    assert series.sibling_uids() == ["1.1.1.1", "1.1.1.2", "1.1.1.3"]
    folder = await child(tree.root, "all")
    pacs.studies["1.2"] = {}
    pacs.descriptions["1.2"] = pacs.descriptions["1.1"]
    await trio.sleep(FOLDER_TTL + 1)
    names = await names_of(folder)
    assert len(names) == 2 and all(n.startswith("DOE JANE study 0 ~") for n in names)


async def test_a_deeper_search_fills_the_levels_below_without_requests() -> None:
    pacs = FakeSearcher({"1.1": {"1.1.1": 2}}, deep=True)
    tree, _, _, _ = make_tree({"pacs": pacs})
    series = await child(tree.root, "all", "DOE JANE study 0", "001 CT")
    assert await names_of(series) == ["0001.dcm", "0002.dcm"]
    assert pacs.calls == {"studies": 1}


async def test_instance_files_read_through_the_reader_with_their_series_siblings() -> None:
    pacs = FakeSearcher({"1.1": {"1.1.1": 3}})
    tree, reader, _, _ = make_tree({"pacs": pacs})
    f = await child(tree.root, "all", "DOE JANE study 0", "001 CT", "0002.dcm")
    assert isinstance(f, InstanceFile)
    assert f.known_size() is None  # not read yet: unknown
    assert await f.read_all() == b"1.1.1.2" * 3
    assert reader.gets == [("pacs", "1.1.1.2", ["1.1.1.1", "1.1.1.2", "1.1.1.3"])]
    assert f.known_size() == 21
    assert f.xattrs()["user.dicom.SOPInstanceUID"] == "1.1.1.2"
    assert f.xattrs()["user.dicom.InstanceNumber"] == "2"


# ------------------------------------------------------------------ by-uid


async def test_by_uid_asks_each_server_in_turn_and_keeps_what_it_found() -> None:
    a, b = FakeSearcher({"1.1": {}}), FakeSearcher({"2.2": {"2.2.1": 1}})
    tree, _, stats, _ = make_tree({"a": a, "b": b})
    by_uid = await child(tree.root, BY_UID_DIR)
    assert await names_of(by_uid) == []
    study = await child(by_uid, "2.2")
    assert (a.calls["studies"], b.calls["studies"]) == (1, 1)
    assert a.queries[0].filters == {"StudyInstanceUID": "2.2"} and a.queries[0].limit == 1
    assert isinstance(study, StudyDir) and study.server == "b"
    assert await names_of(study) == ["001 CT"]
    assert b.calls["series"] == 1 and a.calls["series"] == 0
    assert await child(by_uid, "2.2") is study
    assert await names_of(by_uid) == ["2.2"]
    assert (a.calls["studies"], b.calls["studies"]) == (1, 1)  # found once, kept
    assert await child(by_uid, "1.1") is not None
    assert (a.calls["studies"], b.calls["studies"]) == (2, 1)  # the first server had it
    assert stats.requests == {"a": 2, "b": 2}


async def test_by_uid_costs_nothing_for_names_that_are_not_uids() -> None:
    a = FakeSearcher({"1.1": {}})
    tree, _, _, _ = make_tree({"a": a})
    by_uid = await child(tree.root, BY_UID_DIR)
    assert isinstance(by_uid, DirNode)
    for name in ("desktop.ini", ".hidden", "Thumbs.db", "1..2", "abc", "1." + "2" * 70):
        assert await by_uid.lookup(name) is None
    assert a.calls == {}


async def test_by_uid_unknown_everywhere_is_none_and_fails_only_if_every_server_failed() -> None:
    a, b = FakeSearcher({"1.1": {}}), FakeSearcher({"2.2": {}})
    tree, _, _, _ = make_tree({"a": a, "b": b})
    by_uid = await child(tree.root, BY_UID_DIR)
    assert isinstance(by_uid, DirNode)
    assert await by_uid.lookup("9.9") is None
    a.fail = Unavailable("down", server="a")
    assert await by_uid.lookup("2.2") is not None  # one server down: the other answers
    assert await by_uid.lookup("9.9") is None
    b.fail = Unavailable("down", server="b")
    with pytest.raises(Unavailable):
        await by_uid.lookup("9.9")


async def test_probe_names_never_list_a_directory() -> None:
    pacs = FakeSearcher({"1.1": {"1.1.1": 1}})
    tree, _, _, _ = make_tree({"pacs": pacs})
    folder = await child(tree.root, "all")
    assert isinstance(folder, DirNode)
    for name in ("desktop.ini", ".git", "autorun.inf", "folder.jpg"):
        assert await folder.lookup(name) is None
    assert pacs.calls == {}
    assert await child(tree.root, CONTROL_DIR) is not None  # a static directory knows its dot names


# ------------------------------------------------------------------ inodes


class Leaf(FileNode):
    def __init__(self, name: str, parent: DirNode, uid: str | None = None) -> None:
        super().__init__(name, parent, 0.0)
        self._uid = uid

    @property
    def instance_uid(self) -> str | None:
        return self._uid


def make_table() -> tuple[InodeTable, StaticDir, UidIndex]:
    root = StaticDir("", None, 0.0)
    index = UidIndex()
    return InodeTable(root, index), root, index


def test_an_inode_is_freed_only_when_the_kernel_forgot_every_lookup() -> None:
    table, root, _ = make_table()
    leaf = Leaf("a", root)
    ino = table.remember(leaf)
    assert ino != ROOT_INO and table.remember(leaf) == ino and table.lookups(ino) == 2
    assert table.node(ino) is leaf and table.ino_of(leaf) == ino and len(table) == 2
    table.forget(ino, 1)
    assert table.node(ino) is leaf and table.lookups(ino) == 1
    table.forget(ino, 1)
    with pytest.raises(NotFound):
        table.node(ino)
    assert table.ino_of(leaf) is None and len(table) == 1
    table.forget(ino, 1)  # again: ignored
    again = table.remember(leaf)
    assert again != ino and table.lookups(again) == 1  # numbers are not reused


def test_the_root_is_never_forgotten_and_forgetting_many_at_once_works() -> None:
    table, root, _ = make_table()
    assert table.remember(root) == ROOT_INO and table.lookups(ROOT_INO) == 0
    table.forget(ROOT_INO, 10)
    assert table.node(ROOT_INO) is root
    leaf = Leaf("a", root)
    ino = next(table.remember(leaf) for _ in range(5))
    table.forget(ino, 5)
    assert table.ino_of(leaf) is None
    with pytest.raises(NotFound):
        table.node(12345)


def test_the_uid_index_follows_the_kernel_and_is_pruned_on_forget() -> None:
    table, root, index = make_table()
    one, two, plain = Leaf("a", root, "1.2.3"), Leaf("b", root, "1.2.3"), Leaf("c", root)  # one instance, two paths
    i1, i2 = table.remember(one), table.remember(two)
    table.remember(plain)
    table.remember(one)
    assert index.inodes_of("1.2.3") == sorted([i1, i2]) and len(index) == 1
    table.forget(i2, 1)
    assert index.inodes_of("1.2.3") == [i1]
    table.forget(i1, 1)
    assert index.inodes_of("1.2.3") == [i1]  # one lookup left
    table.forget(i1, 1)
    assert index.inodes_of("1.2.3") == [] and len(index) == 0


async def test_instance_files_the_kernel_knows_are_indexed_by_uid() -> None:
    pacs = FakeSearcher({"1.1": {"1.1.1": 2}})
    tree, _, _, index = make_tree({"pacs": pacs})
    f = await child(tree.root, "all", "DOE JANE study 0", "001 CT", "0001.dcm")
    same = await child(tree.root, BY_UID_DIR, "1.1", "001 CT", "0001.dcm")
    assert f is not same and index.inodes_of("1.1.1.1") == []  # unknown to the kernel so far
    ino = tree.inodes.remember(f)
    ino2 = tree.inodes.remember(same)
    tree.inodes.remember(await child(tree.root, "all", "DOE JANE study 0"))
    assert index.inodes_of("1.1.1.1") == [ino, ino2] and len(index) == 1
    tree.inodes.forget(ino, 1)
    assert index.inodes_of("1.1.1.1") == [ino2]


# ------------------------------------------------------------------ stats.json


async def test_stats_json_shows_counters_store_state_and_inodes() -> None:
    pacs = FakeSearcher({"1.1": {"1.1.1": 1}})
    tree, reader, stats, _ = make_tree({"pacs": pacs})
    f = await child(tree.root, "all", "DOE JANE study 0", "001 CT", "0001.dcm")
    tree.inodes.remember(f)
    assert isinstance(f, FileNode)
    await f.read_all()
    stats.fuse_ops["read"] += 2
    stats_file = await child(tree.root, CONTROL_DIR, STATS_FILE)
    assert isinstance(stats_file, FileNode) and stats_file.direct_io and stats_file.attr_timeout == 0
    data = await stats_file.read_all()
    assert stats_file.known_size() == len(data) and data.endswith(b"\n")
    doc = json.loads(data)
    assert doc["requests"] == {"pacs": 3} and doc["fuse_ops"] == {"read": 2}
    assert doc["memory_cache"] == {"objects": 1} and doc["disk_cache"] is None and doc["prefetch"] == {"in_flight": 0}
    assert doc["inodes"] == 2 == len(tree.inodes)
    assert set(doc) == set(stats.as_dict()) | set(reader.stats()) | {"inodes"}
    tree.inodes.remember(stats_file)
    assert json.loads(await stats_file.read_all())["inodes"] == 3  # rendered afresh at each read


async def test_folder_xattrs_and_study_mtime() -> None:
    pacs = FakeSearcher({"1.1": {}})
    tree, _, _, _ = make_tree({"pacs": pacs})
    folder = await child(tree.root, "all")
    assert folder.xattrs() == {"user.trolleyfs.server": "pacs", "user.trolleyfs.query": '{"PatientName": "DOE*"}'}
    study = await child(folder, "DOE JANE study 0")
    assert study.mtime == datetime.datetime(2024, 1, 2).timestamp()
    assert folder.mtime == tree.mount_time
