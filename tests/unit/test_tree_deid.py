"""The tree of a ``[deidentify]`` mount, over a searcher answering from a
dict and a reader that records what it is asked: names, mtimes and xattrs
show only de-identified values; files are read in the de-identified form
(by the original UIDs and Patient ID); ``by-uid/`` finds a study by the new
UID the mount has shown, and never asks the server for a name it cannot
know; instances whose pixels may identify are left out from their listing,
or at once when a read found them out; a series left with nothing is gone
from its study."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from trolleyfs.config import CacheConfig, Config, Folder
from trolleyfs.credentials import Secret
from trolleyfs.deid import DeidConfig, Deidentifier
from trolleyfs.model import Instance, InstanceRef, Query, Series, Study
from trolleyfs.read.convert.deidentify import DeidForms
from trolleyfs.stats import Stats
from trolleyfs.tree.base import DirNode, FileNode
from trolleyfs.tree.inodes import UidIndex
from trolleyfs.tree.tree import Tree
from trolleyfs.wiring import build_tree

KEY = bytes(range(7, 39))
CT, SC = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.7"
STUDY, PID, NAME, ACC = "1.2.3.4", "REALPID42", "SMITH^ALICE", "ACC9917"
NAMES = {
    "study": "{StudyDate} {PatientName} {StudyDescription}",
    "series": "{SeriesNumber:03} {Modality}",
    "instance": "{InstanceNumber:04}",
}


class Searcher:
    """One study of three series: CT (one instance flagged Burned In
    Annotation YES), a Secondary Capture series, and a CT series whose
    listing carries no flag (its instances are found out when read)."""

    name = "pacs"

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def find_studies(self, query: Query) -> list[Study]:
        self.calls["studies"] += 1
        wanted = query.filters.get("StudyInstanceUID")
        if wanted not in (None, STUDY):
            return []
        attrs = {
            "PatientID": PID,
            "PatientName": NAME,
            "AccessionNumber": ACC,
            "StudyDate": "20240102",
            "StudyTime": "101500",
            "StudyDescription": "HEAD OF SMITH",
            "RetrieveURL": f"http://pacs/studies/{STUDY}",
        }
        return [Study(STUDY, attrs)]

    async def find_series(self, study_uid: str) -> list[Series]:
        self.calls["series"] += 1
        return [
            Series(study_uid, f"{STUDY}.1", {"SeriesNumber": "1", "Modality": "CT", "SeriesDescription": "SMITH"}),
            Series(study_uid, f"{STUDY}.2", {"SeriesNumber": "2", "Modality": "CT"}),
            Series(study_uid, f"{STUDY}.3", {"SeriesNumber": "3", "Modality": "CT"}),
        ]

    async def find_instances(self, study_uid: str, series_uid: str) -> list[Instance]:
        self.calls["instances"] += 1
        n = int(series_uid.rsplit(".", 1)[1])
        out = []
        for i in (1, 2, 3):
            attrs = {"InstanceNumber": str(i), "SOPClassUID": SC if n == 2 else CT}
            if n == 1:
                attrs["BurnedInAnnotation"] = "YES" if i == 2 else "NO"
            out.append(Instance(study_uid, series_uid, f"{series_uid}.{i}", attrs))
        return out

    async def aclose(self) -> None:
        pass


class Reader:
    def __init__(self) -> None:
        self.refs: list[InstanceRef] = []

    async def get(self, server: str, ref: InstanceRef, siblings: Callable[[], list[str]] | None = None) -> bytes:
        self.refs.append(ref)
        return b"x"

    def size_of(self, key: str) -> int | None:
        return None

    def cached_in(self, uid: str) -> tuple[bool, bool]:
        return False, False

    def stats(self) -> dict[str, object]:
        return {}


def deid_tree() -> tuple[Tree, Searcher, Reader, DeidForms]:
    deid_cfg = DeidConfig("k", Secret(KEY.hex()))
    cache = CacheConfig()
    config = Config("t.toml", {}, (Folder("all", "pacs", {}),), NAMES, cache, deidentify=deid_cfg)
    searcher, reader = Searcher(), Reader()
    forms = DeidForms(Deidentifier(KEY))
    return build_tree(config, {"pacs": searcher}, reader, Stats(), UidIndex(), deid=forms), searcher, reader, forms


async def lookup(node: DirNode, *names: str) -> DirNode | FileNode | None:
    found: object = node
    for name in names:
        assert isinstance(found, DirNode)
        found = await found.lookup(name)
        if found is None:
            return None
    assert isinstance(found, DirNode | FileNode)
    return found


def everything(node: object) -> str:
    """What a node shows: its name, mtime and xattrs."""
    assert isinstance(node, DirNode | FileNode)
    return f"{node.name} {node.mtime} {node.xattrs()}"


async def test_names_mtimes_and_xattrs_show_only_deidentified_values() -> None:
    tree, _, reader, _ = deid_tree()
    d = Deidentifier(KEY)
    folder = await lookup(tree.root, "all")
    assert isinstance(folder, DirNode)
    (study_name,) = await folder.children()
    study = await lookup(folder, study_name)
    assert isinstance(study, DirNode)
    shown = [everything(study)]
    for series_name in await study.children():
        series = await lookup(study, series_name)
        assert isinstance(series, DirNode)
        shown.append(everything(series))
        for file_name in await series.children():
            f = await lookup(series, file_name)
            shown.append(everything(f))
            assert isinstance(f, FileNode)
            await f.read_all()
    text = " ".join(shown)
    for real in (STUDY, PID, "SMITH", "ALICE", ACC, "2024", "HEAD", "http"):
        assert real not in text
    assert d.uid(STUDY) in text and d.uid(f"{STUDY}.3.1") in text
    assert study_name.startswith("ANON ")
    # files are read by their original UIDs and Patient ID, in the de-identified form
    assert reader.refs and all(r.form == d.form and r.patient_id == PID for r in reader.refs)
    assert {r.instance_uid for r in reader.refs} == {
        f"{STUDY}.1.1",
        f"{STUDY}.1.3",
        f"{STUDY}.3.1",
        f"{STUDY}.3.2",
        f"{STUDY}.3.3",
    }


async def test_by_uid_opens_a_new_uid_its_folders_show_even_before_they_were_listed() -> None:
    """A new UID noted yesterday opens on a fresh mount: a miss lists the
    folders (once per their listing's TTL) and looks again; the original UID
    opens nothing."""
    tree, searcher, _, _ = deid_tree()
    new = Deidentifier(KEY).uid(STUDY)
    found = await lookup(tree.root, "by-uid", new)
    assert found is not None and found.name == new
    assert searcher.calls["studies"] == 2  # the folder's listing, then the study by its original UID
    assert await lookup(tree.root, "by-uid", STUDY) is None  # the original opens nothing
    assert await lookup(tree.root, "by-uid", "2.25.1234") is None  # nor a UID no folder shows
    assert searcher.calls["studies"] == 2  # the folder's listing is not asked again within its TTL


async def test_by_accession_finds_the_real_number_and_shows_the_study_deidentified() -> None:
    tree, searcher, _, _ = deid_tree()
    found = await lookup(tree.root, "by-accession", ACC)
    assert isinstance(found, DirNode)
    (name,) = await found.children()
    assert ACC not in name and "SMITH" not in name and name.startswith("ANON ")
    assert searcher.calls["studies"] == 1
    # the real number stays where it was typed: a listing of by-accession/ never shows it
    by_accession = await lookup(tree.root, "by-accession")
    assert isinstance(by_accession, DirNode)
    assert dict(await by_accession.children()) == {}
    assert await lookup(tree.root, "by-accession", ACC) is found  # still opens, without a new search
    assert searcher.calls["studies"] == 1


async def test_instances_that_may_identify_are_left_out_by_listing_or_once_found_out() -> None:
    tree, searcher, _, forms = deid_tree()
    study = await lookup(tree.root, "all")
    assert isinstance(study, DirNode)
    study = await lookup(study, next(iter(await study.children())))
    assert isinstance(study, DirNode)
    # the Secondary Capture series is gone (its instance listing was asked while listing the study)
    assert sorted(await study.children()) == ["001 CT", "003 CT"]
    assert searcher.calls["instances"] == 3
    one = await lookup(study, "001 CT")
    assert isinstance(one, DirNode)
    assert sorted(await one.children()) == ["0001.dcm", "0003.dcm"]  # Burned In Annotation YES: left out
    three = await lookup(study, "003 CT")
    assert isinstance(three, DirNode)
    assert sorted(await three.children()) == ["0001.dcm", "0002.dcm", "0003.dcm"]
    forms.excluded.add(f"{STUDY}.3.2")  # a read found it out
    assert sorted(await three.children()) == ["0001.dcm", "0003.dcm"]
    assert await lookup(three, "0002.dcm") is None
    assert sorted(await study.children()) == ["001 CT", "003 CT"]
    forms.excluded.add(f"{STUDY}.3.1")
    forms.excluded.add(f"{STUDY}.3.3")
    assert sorted(await study.children()) == ["001 CT"]  # nothing left to show
    assert searcher.calls["instances"] == 3  # all of that without asking again
