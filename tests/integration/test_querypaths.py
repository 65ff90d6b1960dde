"""Queries in the path through the kernel, against real Orthancs:
``by-accession``, ``by-patient`` and ``query/`` find the right studies and read
them byte-identical; a ``query/`` path shows what the same ``[[folders]]``
query shows; bad names and repeated lookups cost no request (counted at a
proxy); two servers' results are merged."""

from __future__ import annotations

import datetime
import errno
import os
from pathlib import Path

import pytest

from tests.mounting import mounted
from tests.servers.proxy import FaultProxy
from trolleyfs.demo import sampledata
from trolleyfs.demo.orthanc import Orthanc

pytestmark = pytest.mark.integration

ALICE_CHEST = "2021-03-04 TEST ALICE CT Chest"
ALICE_ABDOMEN = "2023-01-15 TEST ALICE CT Abdomen"
CAROL = "2024-02-02 TEST CAROL_.._X CT Head_Neck"
# a second site: one study shares an accession number with the first server's,
# one has a slash in its accession number and patient ID
SECOND_SITE = [
    sampledata.StudySpec(
        "SECOND^SITE", "S001", "20200505", "CT Chest elsewhere", (sampledata.SeriesSpec("CT", "Axial", 3),), "A1001"
    ),
    sampledata.StudySpec(
        "SLASH^PAT", "S/2", "20200606", "MR Spine", (sampledata.SeriesSpec("MR", "T2", 2),), "2024/77"
    ),
]


def config(url: str, extra: str = "") -> str:
    today = datetime.date.today()
    since_2022 = f"-{(today - datetime.date(2022, 1, 1)).days}d"  # a relative date that means 2022-01-01 today
    return f"""
[servers.pacs]
search   = {{ protocol = "qido-rs", url = "{url}/dicom-web" }}
retrieve = {{ protocol = "wado-rs", url = "{url}/dicom-web" }}
timeout = 10
{extra}
[[folders]]
name = "test-ct-recent"
server = "pacs"
query = {{ PatientName = "TEST*", ModalitiesInStudy = "CT" }}
min_study_date = "{since_2022}"
"""


def query_path(mnt: Path) -> Path:
    since_2022 = f"-{(datetime.date.today() - datetime.date(2022, 1, 1)).days}d"
    return mnt / "query" / f"PatientName=TEST*,ModalitiesInStudy=CT,min_study_date={since_2022}"


@pytest.fixture
def proxy(orthanc):
    with FaultProxy(orthanc.url) as p:
        yield p


def files_under(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file())


def assert_identical(files: list[Path], server: Orthanc) -> None:
    for f in files:
        assert f.read_bytes() == server.instance_file(os.getxattr(f, "user.dicom.SOPInstanceUID").decode()), f


def test_by_accession_and_by_patient_show_the_right_studies_and_read_them_whole(orthanc, proxy, tmp_path):
    with mounted(config(proxy.url), tmp_path) as m:
        assert {"by-accession", "by-patient", "query", "by-uid"} <= set(os.listdir(m.path))
        acc = m.path / "by-accession" / "A1001"
        assert os.listdir(acc) == [ALICE_CHEST]
        assert sorted(os.listdir(acc / ALICE_CHEST)) == ["001 CT Axial 5mm", "002 CT Coronal"]
        files = files_under(acc)
        assert len(files) == 12 + 6
        assert_identical(files, orthanc)
        assert sorted(os.listdir(m.path / "by-patient" / "P001")) == [ALICE_CHEST, ALICE_ABDOMEN]
        bob = files_under(m.path / "by-patient" / "P002")
        assert len(bob) == 14 and {os.getxattr(f, "user.dicom.StudyInstanceUID").decode() for f in bob} == {
            sampledata.uid("study", "P002", 2)
        }
        assert_identical(bob[:3], orthanc)
        assert len(os.listdir(m.path / "by-patient" / "P00*")) == 5  # matched as the server matches
        with pytest.raises(FileNotFoundError):
            os.listdir(m.path / "by-accession" / "A9999")
        assert sorted(os.listdir(m.path / "by-accession")) == ["A1001"]  # only what was looked up lately
        assert sorted(os.listdir(m.path / "by-patient")) == ["P00*", "P001", "P002"]


def test_a_query_path_shows_what_the_same_folder_query_shows(proxy, tmp_path):
    with mounted(config(proxy.url), tmp_path) as m:
        from_path = sorted(os.listdir(query_path(m.path)))
        assert from_path == sorted(os.listdir(m.path / "test-ct-recent")) == [ALICE_ABDOMEN, CAROL]
        assert os.listdir(m.path / "query" / "PatientName=TEST?ALICE,StudyDate=20210304") == [ALICE_CHEST]
        assert os.listdir(m.path / "query" / "PatientName=NOBODY*") == []  # a search that finds nothing
        assert os.getxattr(query_path(m.path) / CAROL, "user.trolleyfs.server") == b"pacs"


def test_bad_keys_are_enoent_without_a_request_and_logged_by_name(proxy, tmp_path):
    with mounted(config(proxy.url), tmp_path) as m:
        os.listdir(m.path)
        before = proxy.count()
        for name in (
            "PatientNme=DOE",
            "Foo=1,PatientName=DOE*",
            "min_study_date=yesterday",
            "PatientName=A\\B",
            "PatientName",
            "limit=x",
        ):
            with pytest.raises(OSError) as exc:
                os.stat(m.path / "query" / name)
            assert exc.value.errno == errno.ENOENT, name
        assert proxy.count() == before, proxy.log[before:]
        log = m.log_text()
        assert "query/PatientNme=DOE: not a query, no such directory: PatientNme: unknown query key" in log
        assert "Foo: unknown query key" in log
        assert "min_study_date: 'yesterday' is not a date" in log


def test_looking_up_the_same_paths_again_within_the_folder_ttl_costs_no_request(proxy, tmp_path):
    with mounted(config(proxy.url), tmp_path) as m:
        paths = [m.path / "by-accession" / "A1001", m.path / "by-patient" / "P001", query_path(m.path)]
        for p in paths:
            os.listdir(p)
        before = proxy.count()
        for _ in range(3):
            for p in paths:
                os.listdir(p)
                os.stat(p)
            os.listdir(m.path / "by-accession")
        assert proxy.count() == before, proxy.log[before:]


@pytest.fixture(scope="module")
def second_site(tmp_path_factory):
    with Orthanc(workdir=str(tmp_path_factory.mktemp("second-site"))) as o:
        o.upload(sampledata.generate(SECOND_SITE))
        yield o


def test_two_servers_are_merged_and_each_study_reads_from_its_own(orthanc, second_site, tmp_path):
    site2 = f"""
[servers.site2]
search   = {{ protocol = "qido-rs", url = "{second_site.dicomweb}" }}
retrieve = {{ protocol = "wado-rs", url = "{second_site.dicomweb}" }}
timeout = 10
"""
    with mounted(config(orthanc.url, site2), tmp_path) as m:
        acc = m.path / "by-accession" / "A1001"
        assert sorted(os.listdir(acc)) == ["2020-05-05 SECOND SITE CT Chest elsewhere", ALICE_CHEST]
        assert os.getxattr(acc / ALICE_CHEST, "user.trolleyfs.server") == b"pacs"
        elsewhere = acc / "2020-05-05 SECOND SITE CT Chest elsewhere"
        assert os.getxattr(elsewhere, "user.trolleyfs.server") == b"site2"
        assert_identical(files_under(elsewhere), second_site)
        assert_identical(files_under(acc / ALICE_CHEST)[:2], orthanc)
        # characters a name cannot hold, percent-escaped
        assert os.listdir(m.path / "by-accession" / "2024%2F77") == ["2020-06-06 SLASH PAT MR Spine"]
        assert os.listdir(m.path / "by-patient" / "S%2F2") == ["2020-06-06 SLASH PAT MR Spine"]
        assert len(files_under(m.path / "query" / "AccessionNumber=2024%2F77,PatientName=SLASH*")) == 2
