"""Issue 18, item 5: a query value with a space finds its studies on Orthanc
without configuration (Orthanc 1.10 does not decode the query string, so a
space sent as ``%20`` matches nothing there).  The space goes out as a
wildcard and only exact matches are kept: studies whose value has another
character in the space's place, which the wildcard also matches, are left
out.  ``space_as`` still overrides.

Against a real Orthanc of this module's own: the sample studies plus a few
whose descriptions and names differ from the ones asked for only where the
space is."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.mounting import mounted
from trolleyfs.demo import sampledata
from trolleyfs.demo.orthanc import Orthanc
from trolleyfs.demo.sampledata import SeriesSpec, StudySpec

pytestmark = pytest.mark.integration

# differ from "CT Chest" and "VAN DER BERG^JAN" only where the space is
LOOKALIKES = [
    StudySpec("LOOK^ALIKE", "L001", "20200101", "CT-Chest", (SeriesSpec("CT", "Axial", 1),), "L1"),
    StudySpec("LOOK^ALIKE", "L001", "20200102", "CT_Chest", (SeriesSpec("CT", "Axial", 1),), "L2"),
    StudySpec("VAN DER BERG^JAN", "L002", "20200103", "MR Knee", (SeriesSpec("MR", "PD", 1),), "L3"),
    StudySpec("VAN-DER BERG^JAN", "L003", "20200104", "MR Knee", (SeriesSpec("MR", "PD", 1),), "L4"),
]


@pytest.fixture(scope="module")
def pacs(sample_files, tmp_path_factory) -> Iterator[Orthanc]:
    server = Orthanc(workdir=str(tmp_path_factory.mktemp("orthanc-spaces")))
    server.start(timeout=120)
    try:
        server.upload(sample_files)
        server.upload(sampledata.generate(LOOKALIKES))
        yield server
    finally:
        server.cleanup()


def config(orthanc: Orthanc, space_as: str = "") -> str:
    extra = f', space_as = "{space_as}"' if space_as else ""
    return f"""
[servers.pacs]
search   = {{ protocol = "qido-rs", url = "{orthanc.dicomweb}"{extra} }}
retrieve = {{ protocol = "wado-rs", url = "{orthanc.dicomweb}" }}
timeout = 10

[[folders]]
name = "chest"
query = {{ StudyDescription = "CT Chest" }}

[[folders]]
name = "chest-star"
query = {{ StudyDescription = "CT Ch*" }}

[[folders]]
name = "van-der"
query = {{ PatientName = "VAN DER*" }}

[[folders]]
name = "one-chest"
query = {{ StudyDescription = "CT Chest" }}
limit = 1
"""


def test_a_space_in_a_value_finds_exactly_its_studies_on_orthanc_without_configuration(pacs, tmp_path):
    with mounted(config(pacs), tmp_path) as m:
        assert os.listdir(m.path / "chest") == ["2021-03-04 TEST ALICE CT Chest"]
        assert os.listdir(m.path / "chest-star") == ["2021-03-04 TEST ALICE CT Chest"]
        assert os.listdir(m.path / "van-der") == ["2020-01-03 VAN DER BERG JAN MR Knee"]
        # the limit counts exact matches, not what the wildcard also found
        assert os.listdir(m.path / "one-chest") == ["2021-03-04 TEST ALICE CT Chest"]
        # a path query, as a user types it
        assert os.listdir(m.path / "query" / "StudyDescription=CT Chest") == ["2021-03-04 TEST ALICE CT Chest"]
        assert os.listdir(m.path / "query" / "PatientName=VAN DER BERG^JAN") == ["2020-01-03 VAN DER BERG JAN MR Knee"]
        # the study's series and files are there as usual
        study = m.path / "chest" / "2021-03-04 TEST ALICE CT Chest"
        assert sorted(os.listdir(study)) == ["001 CT Axial 5mm", "002 CT Coronal"]


def test_space_as_still_overrides(pacs, tmp_path):
    """``space_as = "%20"`` sends the space percent-encoded, as for a server
    that decodes the query string: Orthanc then matches nothing, as before."""
    with mounted(config(pacs, "%20"), tmp_path) as m:
        assert os.listdir(m.path / "chest") == []
    with mounted(config(pacs, "?"), tmp_path, name="question") as m:
        assert os.listdir(m.path / "chest") == ["2021-03-04 TEST ALICE CT Chest"]  # exact matches kept here too
