"""Queries in the path, without a kernel: how ``query/`` names are parsed and
checked, what ``by-accession``, ``by-patient`` and ``query`` find over fake
servers, what they cost (nothing for a bad name, nothing again within the
folder TTL, on trio's MockClock), and how several servers' results merge."""

from __future__ import annotations

import datetime
import fnmatch
import logging

import pytest
import trio

from tests.fakes.tree import FOLDER_TTL, FakeSearcher, child, make_tree, names_of
from trolleyfs.errors import Unavailable
from trolleyfs.model import Query, Study
from trolleyfs.rootnames import BY_ACCESSION_DIR, BY_PATIENT_DIR, QUERY_DIR
from trolleyfs.tree.base import DirNode
from trolleyfs.tree.dirs import StudyDir
from trolleyfs.tree.querydirs import (
    RECENT,
    QueryDir,
    parse_query,
    single_value_query,
)


class PatientSearcher(FakeSearcher):
    """A FakeSearcher whose studies have an accession number and patient, and
    whose study search matches them (``*`` and ``?`` as wildcards)."""

    def __init__(self, studies: dict[str, dict[str, str]]) -> None:
        super().__init__({uid: {f"{uid}.1": 1} for uid in studies})
        self.attrs = studies

    async def find_studies(self, query: Query) -> list[Study]:
        everything = await super().find_studies(Query())
        self.queries[-1] = query
        out = []
        for s in everything:
            s.attrs.update(self.attrs[s.uid])
            if all(fnmatch.fnmatchcase(s.attrs.get(k, ""), v) for k, v in query.filters.items()):
                out.append(s)
        return out


# ------------------------------------------------------------------ parsing


def test_a_query_name_takes_the_keys_wildcards_and_dates_of_a_folder() -> None:
    q = parse_query("PatientName=DOE*,ModalitiesInStudy=CT\\MR,min_study_date=-30d,max_study_date=today,limit=5")
    assert q.filters == {"PatientName": "DOE*", "ModalitiesInStudy": "CT\\MR"}
    assert q.limit == 5
    today = datetime.date.today()
    query = q.query()
    assert query.min_study_date == today - datetime.timedelta(days=30) and query.max_study_date == today
    assert parse_query("StudyDate=20200101-20201231").filters == {"StudyDate": "20200101-20201231"}
    # percent escapes are decoded after the split: a value may hold '/', ',' and '%'
    assert parse_query("AccessionNumber=2024%2F77%2C1,StudyDescription=50%25").filters == {
        "AccessionNumber": "2024/77,1",
        "StudyDescription": "50%",
    }
    assert parse_query("min_study_date=2020-01-01").query().min_study_date == datetime.date(2020, 1, 1)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("PatientNme=DOE", "PatientNme: unknown query key"),
        ("Foo=1,PatientName=DOE", "Foo: unknown query key"),
        ("min_study_date=yesterday", "min_study_date: 'yesterday' is not a date"),
        ("max_study_date=2020-13-01", "max_study_date: '2020-13-01' is not a date"),
        ("PatientName", "'PatientName' is not Keyword=value"),
        ("=DOE", "'=DOE' is not Keyword=value"),
        ("PatientName=", "PatientName: an empty value matches everything"),
        ("PatientID=1,PatientID=2", "PatientID: given twice"),
        ("PatientName=A\\B", "PatientName: must be a single value"),
        ("limit=0", "limit: '0' is not a whole number"),
        ("min_study_date=2021-01-01,max_study_date=2020-01-01", "min_study_date: 2021-01-01 is after"),
        ("StudyDate=2020,min_study_date=-1d", "min_study_date: cannot be combined with query.StudyDate"),
        ("PatientName=%FF", "PatientName: '%FF' is not UTF-8"),
        ("ModalitiesInStudy=CT%C3%A9", "ModalitiesInStudy: must be ASCII (a CS value"),
        ("StudyDate=2020%C2%B2", "StudyDate: must be ASCII (a DA value"),
    ],
)
def test_a_bad_query_name_says_what_is_wrong(name: str, problem: str) -> None:
    with pytest.raises(ValueError, match="^" + problem.replace("\\", "\\\\").replace("(", "\\(")) as exc:
        parse_query(name)
    assert "\n" not in str(exc.value)


def test_names_and_descriptions_may_hold_any_character() -> None:
    """PN and LO values are sent in UTF-8 (ISO_IR 192); only the VRs of the
    default repertoire (CS, DA, UI, ...) are held to ASCII."""
    assert parse_query("PatientName=M%C3%BCller*,StudyDescription=Sch%C3%A4del").filters == {
        "PatientName": "Müller*",
        "StudyDescription": "Schädel",
    }


def test_single_value_names_are_decoded_and_checked() -> None:
    assert single_value_query("AccessionNumber", "2024%2F77").filters == {"AccessionNumber": "2024/77"}
    assert single_value_query("PatientID", "P0*").filters == {"PatientID": "P0*"}
    with pytest.raises(ValueError, match="AccessionNumber: must be a single value"):
        single_value_query("AccessionNumber", "A\\B")


# ------------------------------------------------------------------ lookups

STUDIES = {
    "1.1": {"AccessionNumber": "A1", "PatientID": "P1", "StudyDescription": "chest"},
    "1.2": {"AccessionNumber": "A2", "PatientID": "P1", "StudyDescription": "head"},
    "1.3": {"AccessionNumber": "A3", "PatientID": "P2", "StudyDescription": "knee"},
}


async def test_by_accession_and_by_patient_find_studies_and_list_what_was_found() -> None:
    pacs = PatientSearcher(STUDIES)
    tree, _, stats, _ = make_tree({"pacs": pacs})
    by_acc = await child(tree.root, BY_ACCESSION_DIR)
    assert await names_of(by_acc) == [] and pacs.calls == {}  # never listed in full
    d = await child(by_acc, "A1")
    assert isinstance(d, QueryDir)
    assert await names_of(d) == ["DOE JANE chest"]
    assert pacs.queries[-1].filters == {"AccessionNumber": "A1"}
    study = await child(d, "DOE JANE chest")
    assert isinstance(study, StudyDir) and study.xattrs()["user.trolleyfs.server"] == "pacs"
    assert await names_of(study) == ["001 CT"]
    assert await names_of(await child(tree.root, BY_PATIENT_DIR, "P1")) == ["DOE JANE chest", "DOE JANE head"]
    assert pacs.queries[-1].filters == {"PatientID": "P1"}
    assert isinstance(by_acc, DirNode)
    assert await by_acc.lookup("A9") is None  # matches nothing: no such directory
    assert await names_of(by_acc) == ["A1"]  # what was found lately
    assert await names_of(await child(tree.root, QUERY_DIR, "PatientID=P*")) == [
        "DOE JANE chest",
        "DOE JANE head",
        "DOE JANE knee",
    ]
    empty = await child(tree.root, QUERY_DIR, "PatientID=NOBODY")
    assert await names_of(empty) == []  # a query that matches nothing is an empty directory
    assert stats.requests == {"pacs": pacs.calls["studies"] + pacs.calls["series"]}


async def test_a_bad_name_is_no_directory_costs_no_request_and_is_logged_once(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.abc.Clock
) -> None:
    pacs = PatientSearcher(STUDIES)
    tree, _, _, _ = make_tree({"pacs": pacs})
    query = await child(tree.root, QUERY_DIR)
    assert isinstance(query, DirNode)
    with caplog.at_level(logging.WARNING, "trolleyfs.tree"):
        for _ in range(3):
            assert await query.lookup("PatientNme=DOE") is None
        assert await query.lookup("min_study_date=yesterday") is None
        assert await query.lookup(".hidden") is None and await query.lookup("desktop.ini") is None
    assert pacs.calls == {}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "query/PatientNme=DOE" in lines[0] and "PatientNme: unknown query key" in lines[0]
    assert "min_study_date: 'yesterday' is not a date" in lines[1]
    await trio.sleep(60)
    with caplog.at_level(logging.WARNING, "trolleyfs.tree"):
        assert await query.lookup("PatientNme=DOE") is None
    assert len(caplog.records) == 3  # said again after a while


async def test_looking_up_the_same_path_again_costs_nothing_within_the_folder_ttl(
    autojump_clock: trio.abc.Clock,
) -> None:
    pacs = PatientSearcher(STUDIES)
    tree, _, _, _ = make_tree({"pacs": pacs})
    by_acc = await child(tree.root, BY_ACCESSION_DIR)
    first = await child(by_acc, "A1")
    await names_of(first)
    await trio.sleep(FOLDER_TTL - 1)
    assert await child(by_acc, "A1") is first
    assert await names_of(first) == ["DOE JANE chest"]
    assert isinstance(by_acc, DirNode)
    assert await by_acc.lookup("A9") is None
    assert await by_acc.lookup("A9") is None  # nothing found is remembered too
    assert pacs.calls["studies"] == 2
    await trio.sleep(2)
    assert await child(by_acc, "A1") is first  # the same node (and inode), asked again
    assert pacs.calls["studies"] == 3


async def test_several_servers_are_merged_and_each_study_keeps_its_server() -> None:
    a = PatientSearcher(
        {
            "1.1": {"AccessionNumber": "A1", "StudyDescription": "on a"},
            "9.9": {"AccessionNumber": "A1", "StudyDescription": "on both"},
        }
    )
    b = PatientSearcher(
        {
            "2.1": {"AccessionNumber": "A1", "StudyDescription": "on b"},
            "9.9": {"AccessionNumber": "A1", "StudyDescription": "on both"},
        }
    )
    tree, reader, _, _ = make_tree({"a": a, "b": b})
    d = await child(tree.root, BY_ACCESSION_DIR, "A1")
    assert await names_of(d) == ["DOE JANE on a", "DOE JANE on b", "DOE JANE on both"]
    servers = {}
    for name in await names_of(d):
        study = await child(d, name)
        assert isinstance(study, StudyDir)
        servers[name] = study.server
    assert servers == {"DOE JANE on a": "a", "DOE JANE on b": "b", "DOE JANE on both": "a"}  # the first server's
    f = await child(d, "DOE JANE on b", "001 CT", "0001.dcm")
    await f.read_all()  # type: ignore[attr-defined]
    assert reader.gets[-1][0] == "b"  # read from the server it came from


async def test_a_server_that_fails_fails_the_lookup_rather_than_hide_its_studies() -> None:
    a, b = PatientSearcher(STUDIES), PatientSearcher(STUDIES)
    tree, _, _, _ = make_tree({"a": a, "b": b})
    by_acc = await child(tree.root, BY_ACCESSION_DIR)
    assert isinstance(by_acc, DirNode)
    b.fail = Unavailable("down", server="b")
    with pytest.raises(Unavailable):
        await by_acc.lookup("A1")
    assert await names_of(by_acc) == []
    b.fail = None
    assert await by_acc.lookup("A1") is not None


async def test_the_lookups_remembered_are_bounded() -> None:
    pacs = PatientSearcher({f"1.{i}": {"PatientID": f"P{i}"} for i in range(RECENT + 5)})
    tree, _, _, _ = make_tree({"pacs": pacs})
    by_pat = await child(tree.root, BY_PATIENT_DIR)
    for i in range(RECENT + 5):
        await child(by_pat, f"P{i}")
    shown = await names_of(by_pat)
    assert len(shown) == RECENT and "P0" not in shown and f"P{RECENT + 4}" in shown


async def test_query_dir_xattrs_show_the_query() -> None:
    pacs = PatientSearcher(STUDIES)
    tree, _, _, _ = make_tree({"pacs": pacs})
    d = await child(tree.root, QUERY_DIR, "PatientID=P1,min_study_date=-7d")
    assert d.xattrs() == {"user.trolleyfs.query": '{"PatientID": "P1", "min_study_date": "-7d"}'}
