"""Every search protocol x every retrieve protocol, mounted for real and read
through the kernel: the same sample data from Orthanc (QIDO-RS, WADO-RS,
WADO-URI, C-FIND, C-GET), dcmtk's dcmqrscp (C-FIND, C-GET) and the in-repo
MINT and RAD69 servers."""

from __future__ import annotations

import os

import pytest

from tests.mounting import by_sop_uid, dataset_bytes, mounted
from tests.servers.base import SampleIndex
from tests.servers.mint import MintServer
from tests.servers.rad69 import Rad69Server

pytestmark = pytest.mark.integration

STUDIES = {
    "2019-09-11 OTHER DAVE MR Knee",
    "2021-03-04 TEST ALICE CT Chest",
    "2022-07-20 TEST BOB MR Brain",
    "2023-01-15 TEST ALICE CT Abdomen",
    "2024-02-02 TEST CAROL_.._X CT Head_Neck",
}
SEARCHES = ["qido-rs", "mint", "dicom-qr@orthanc", "dicom-qr@dcmqrscp"]
RETRIEVES = ["wado-rs", "wado-uri", "rad69", "c-get@orthanc", "c-get@dcmqrscp", "c-move@orthanc", "c-move@dcmqrscp"]


@pytest.fixture(scope="module")
def peers(orthanc, dcmqrscp, move_port, sample_files):
    index = SampleIndex(sample_files)
    mint, rad69 = MintServer(index), Rad69Server(index)
    mint.start()
    try:
        rad69.start()
        try:
            yield {"orthanc": orthanc, "mint": mint, "rad69": rad69, "dcmqrscp": dcmqrscp, "move_port": move_port}
        finally:
            rad69.stop()
    finally:
        mint.stop()


def endpoint(name: str, peers) -> str:
    o = peers["orthanc"]
    proto, _, peer = name.partition("@")
    if proto in ("qido-rs", "wado-rs"):
        return f'{{ protocol = "{proto}", url = "{o.dicomweb}" }}'
    if proto == "wado-uri":
        return f'{{ protocol = "wado-uri", url = "{o.wado_uri}" }}'
    if proto == "mint":
        return f'{{ protocol = "mint", url = "{peers["mint"].url}" }}'
    if proto == "rad69":
        return f'{{ protocol = "rad69", url = "{peers["rad69"].url}" }}'
    # C-MOVE: trolleyfs's receiver listens where the peers send (they know it as TROLLEYFS)
    store = f', store_host = "127.0.0.1", store_port = {peers["move_port"]}' if proto == "c-move" else ""
    if peer == "orthanc":
        return f'{{ protocol = "{proto}", host = "127.0.0.1", port = {o.dicom_port}, called_aet = "{o.aet}"{store} }}'
    qr = peers["dcmqrscp"]
    return f'{{ protocol = "{proto}", host = "{qr.host}", port = {qr.port}, called_aet = "{qr.aet}"{store} }}'


@pytest.mark.parametrize("retrieve", RETRIEVES)
@pytest.mark.parametrize("search", SEARCHES)
def test_every_combination_lists_and_reads_every_file(search, retrieve, peers, sample_files, tmp_path):
    by_uid = by_sop_uid(sample_files)
    cfg = f"""
[servers.pacs]
search   = {endpoint(search, peers)}
retrieve = {endpoint(retrieve, peers)}
timeout = 20

[[folders]]
name = "all"
query = {{}}
"""
    with mounted(cfg, tmp_path) as m:
        assert set(os.listdir(m.path / "all")) == STUDIES
        files = sorted((m.path / "all").rglob("*.dcm"))
        assert len(files) == len(sample_files)
        for f in files:
            data = f.read_bytes()
            assert os.stat(f).st_size == len(data)
            want = by_uid[os.getxattr(f, "user.dicom.SOPInstanceUID").decode()]
            if retrieve.startswith(("c-get", "c-move")):
                # DIMSE moves datasets, not files: the file meta group is written
                # anew; the dataset must be byte for byte what was stored
                assert dataset_bytes(data) == dataset_bytes(want), f
            else:
                assert data == want, f
