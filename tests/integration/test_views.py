"""The views through real mounts, against an Orthanc of our own holding
studies stored compressed (RLE, JPEG 2000 and JPEG-LS lossless, JPEG
lossless, JPEG baseline) and one study with an object that cannot be decoded.

Per retrieve protocol (WADO-RS, WADO-URI, RAD-69, C-GET): the uncompressed
view decodes to exactly the pixels the stored objects decode to, carries
Explicit VR Little Endian and converts with dcm2niix; the metadata documents
parse as DICOM JSON and list every instance; ``unzip -t`` passes and every
member is byte-identical to its file in the tree.  A proxy shows that a
series' metadata costs no pixel data where the server offers ``/metadata``."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from tests import compressed
from tests.mounting import by_sop_uid, mounted
from tests.servers.base import SampleIndex
from tests.servers.proxy import FaultProxy
from tests.servers.rad69 import Rad69Server
from trolleyfs.demo.orthanc import ORTHANC, Orthanc
from trolleyfs.part10 import part10_sop_instance_uid, part10_transfer_syntax

pytestmark = pytest.mark.integration

STUDY = "2024-03-01 COMP TEST Compressed"
SERIES = ["001 CT RLE", "002 CT J2K", "003 CT JLS", "004 CT JPEGLL", "005 CT JPEG8"]
RETRIEVES = ["wado-rs", "wado-uri", "rad69", "c-get"]
# Orthanc's C-GET sends every object in the syntax it negotiated (Explicit VR
# Little Endian), converting RLE, JPEG-LS and JPEG itself; it has no JPEG 2000
# codec, so it cannot send the J2K series over C-GET at all, as stored or not.
CGET_SERIES = [s for s in SERIES if "J2K" not in s]


def _need(binary: str) -> None:
    if not (shutil.which(binary) or os.path.exists(binary)):
        pytest.fail(f"{binary} is not installed: run `make test`, which installs it")


def broken_files() -> list[bytes]:
    """A study (patient C002) of two J2K objects; the second's codestream is junk."""
    spec = compressed.study(per_series=2, size=32, patient="BROKEN^TEST", pid="C002")
    spec = type(spec)(spec.patient_name, spec.patient_id, spec.date, "Broken", spec.series[1:2], "C2001")
    good, bad = compressed.generate(spec)
    ds = pydicom.dcmread(io.BytesIO(bad))
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 200])
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return [good, buf.getvalue()]


@pytest.fixture(scope="module")
def stored() -> list[bytes]:
    return compressed.generate()


@pytest.fixture(scope="module")
def broken() -> list[bytes]:
    return broken_files()


@pytest.fixture(scope="module")
def pacs(stored, broken, tmp_path_factory):
    """Our own Orthanc with the compressed studies (the session's stays as it is)."""
    _need(ORTHANC)
    server = Orthanc(workdir=str(tmp_path_factory.mktemp("orthanc-views")))
    server.start(timeout=120)
    try:
        assert server.upload(stored + broken) == len(stored) + len(broken)
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def rad69(stored, broken):
    srv = Rad69Server(SampleIndex(stored + broken)).start()
    try:
        yield srv
    finally:
        srv.stop()


def config(pacs, rad69, retrieve: str, folders: str) -> str:
    if retrieve == "c-get":  # a DIMSE-only server: no /metadata, documents are built from the objects
        dimse = f'host = "127.0.0.1", port = {pacs.dicom_port}, called_aet = "{pacs.aet}"'
        search, get = f'{{ protocol = "dicom-qr", {dimse} }}', f'{{ protocol = "c-get", {dimse} }}'
    else:
        search = f'{{ protocol = "qido-rs", url = "{pacs.dicomweb}" }}'
        get = {
            "wado-rs": f'{{ protocol = "wado-rs", url = "{pacs.dicomweb}" }}',
            "wado-uri": f'{{ protocol = "wado-uri", url = "{pacs.wado_uri}" }}',
            "rad69": f'{{ protocol = "rad69", url = "{rad69.url}" }}',
        }[retrieve]
    return f"""
[servers.pacs]
search   = {search}
retrieve = {get}
timeout = 20
{folders}
"""


FOLDERS = """
[[folders]]
name = "plain"
query = { PatientID = "C001" }
transfer_syntax = "uncompressed"
views = ["metadata", "zip"]

[[folders]]
name = "stored"
query = { PatientID = "C001" }
views = ["zip"]
"""


def pixels(data: bytes) -> np.ndarray:
    return pydicom.dcmread(io.BytesIO(data)).pixel_array


def sop_uid(path: Path) -> str:
    return os.getxattr(path, "user.dicom.SOPInstanceUID").decode()


def check_uncompressed(root: Path, originals: dict[str, bytes], series: list[str], as_stored: bool) -> None:
    assert sorted(os.listdir(root / "plain" / STUDY)) == SERIES
    files = sorted(f for s in series for f in (root / "plain" / STUDY / s).iterdir())
    assert len(files) == 3 * len(series)
    for f in files:
        data = f.read_bytes()
        assert os.stat(f).st_size == len(data), f
        assert part10_transfer_syntax(data) == ExplicitVRLittleEndian, f
        original = originals[sop_uid(f)]
        assert part10_transfer_syntax(original) != ExplicitVRLittleEndian
        assert np.array_equal(pixels(data), pixels(original)), f
        assert pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID == sop_uid(f)
    if as_stored:  # next to it, as stored: the same instances in their own syntax
        for f in sorted((root / "stored" / STUDY).rglob("*.dcm")):
            assert part10_transfer_syntax(f.read_bytes()) == part10_transfer_syntax(originals[sop_uid(f)])


def check_dcm2niix(root: Path, out: Path, series: list[str]) -> None:
    _need("dcm2niix")
    out.mkdir()
    for s in series:
        done = subprocess.run(
            ["dcm2niix", "-f", "%s", "-o", str(out), str(root / "plain" / STUDY / s)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    assert len(list(out.glob("*.nii"))) == len(series)


def check_metadata(root: Path, originals: dict[str, bytes], series_read: list[str]) -> None:
    views = root / "views" / "plain"
    assert sorted(os.listdir(views)) == [STUDY, f"{STUDY}.json", f"{STUDY}.zip"]
    all_uids: set[str] = set()
    for series in series_read:
        doc = json.loads((views / STUDY / f"{series}.json").read_bytes())
        assert isinstance(doc, list)
        in_tree = [sop_uid(f) for f in sorted((root / "plain" / STUDY / series).iterdir())]
        assert [d["00080018"]["Value"][0] for d in doc] == in_tree  # every instance, in the tree's order
        for item in doc:
            assert "7FE00010" not in item
            ds = pydicom.Dataset.from_json(item, bulk_data_uri_handler=lambda *a: b"")
            assert ds.SeriesDescription == series.split()[-1] and ds.Rows == 64
        all_uids |= set(in_tree)
    if series_read == SERIES:
        study = json.loads((views / f"{STUDY}.json").read_bytes())
        assert {d["00080018"]["Value"][0] for d in study} == all_uids == set(originals)


def check_zips(root: Path, series: list[str], folder: str) -> None:
    _need("unzip")
    views = root / "views" / folder
    archives = [(views / STUDY / f"{s}.zip", root / folder / STUDY, f"{s}/") for s in series]
    if series == SERIES:
        archives.append((views / f"{STUDY}.zip", root / folder, f"{STUDY}/"))
    for archive, base, prefix in archives:
        done = subprocess.run(["unzip", "-t", str(archive)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "No errors detected" in done.stdout, done.stdout + done.stderr
        with zipfile.ZipFile(archive) as zf:  # random access through the kernel
            names = zf.namelist()
            assert names and all(n.startswith(prefix) for n in names)
            assert sorted(names) == sorted(str(p.relative_to(base)) for p in (base / prefix).rglob("*.dcm"))
            for name in reversed(names):
                assert zf.read(name) == (base / name).read_bytes(), name
        assert os.stat(archive).st_size == archive.stat().st_size == len(archive.read_bytes())


@pytest.mark.parametrize("retrieve", RETRIEVES)
def test_the_views_through_each_retrieve_protocol(retrieve, pacs, rad69, stored, tmp_path):
    originals = by_sop_uid(stored)
    series = CGET_SERIES if retrieve == "c-get" else SERIES
    with mounted(config(pacs, rad69, retrieve, FOLDERS), tmp_path) as m:
        check_uncompressed(m.path, originals, series, as_stored=retrieve != "c-get")
        check_dcm2niix(m.path, tmp_path / "nifti", series)
        check_metadata(m.path, originals, series)
        check_zips(m.path, series, "plain")
        check_zips(m.path, series, "stored")  # the files as stored, zipped
        views = m.stats()["views"]
        assert views["conversions_failed"] == 0
        if retrieve == "wado-rs":  # Orthanc transcodes RLE, JPEG-LS and JPEG, not JPEG 2000
            assert views["transcoded_by_server"] > 0 and views["converted_locally"] > 0
        elif retrieve == "c-get":  # C-GET takes each object in its stored syntax (issue 14): converted here
            assert views["transcoded_by_server"] == 0 and views["converted_locally"] > 0
            assert views["metadata_from_objects"] > 0 and views["metadata_from_server"] == 0
        else:  # Orthanc ignores WADO-URI's transferSyntax; our RAD-69 server sends as stored
            assert views["transcoded_by_server"] == 0 and views["converted_locally"] == len(stored)
        if retrieve != "c-get":
            assert views["metadata_from_server"] > 0 and views["metadata_from_objects"] == 0


def test_a_compressed_target_and_an_object_that_cannot_be_converted(pacs, rad69, stored, broken, tmp_path):
    folders = """
[[folders]]
name = "j2k"
query = { PatientID = "C001" }
transfer_syntax = "1.2.840.10008.1.2.4.90"

[[folders]]
name = "broken"
query = { PatientID = "C002" }
transfer_syntax = "uncompressed"
views = ["zip"]

[[folders]]
name = "broken-stored"
query = { PatientID = "C002" }
"""
    originals = by_sop_uid(stored)
    with mounted(config(pacs, rad69, "wado-rs", folders), tmp_path) as m:
        for f in sorted((m.path / "j2k" / STUDY / SERIES[0]).iterdir()):  # RLE as stored
            data = f.read_bytes()
            assert part10_transfer_syntax(data) == JPEG2000Lossless
            assert np.array_equal(pixels(data), pixels(originals[sop_uid(f)]))
        study = next(iter(os.listdir(m.path / "broken")))
        good, bad = sorted((m.path / "broken" / study).rglob("*.dcm"))
        assert part10_transfer_syntax(good.read_bytes()) == ExplicitVRLittleEndian
        bad_uid = part10_sop_instance_uid(broken[1])
        with pytest.raises(OSError) as err:  # (its size is only known once converted: stat fails too)
            bad.read_bytes()
        assert err.value.errno == errno.EIO
        with pytest.raises(OSError) as err:  # nor is its series' zip served without it
            (m.path / "views" / "broken" / study / f"{good.parent.name}.zip").read_bytes()
        assert err.value.errno == errno.EIO
        log = m.log_text()
        assert any(
            bad_uid in line and "cannot convert from JPEG 2000" in line and "Explicit VR Little Endian" in line
            for line in log.splitlines()
        ), log[-3000:]
        stored_bad = m.path / "broken-stored" / study / bad.parent.name / bad.name
        assert stored_bad.read_bytes() == by_sop_uid(broken)[bad_uid]  # as stored it is served as stored


def test_reading_a_series_metadata_downloads_no_pixel_data(pacs, rad69, tmp_path):
    with FaultProxy(pacs.dicomweb) as proxy:
        cfg = f"""
[servers.pacs]
search   = {{ protocol = "qido-rs", url = "{proxy.url}" }}
retrieve = {{ protocol = "wado-rs", url = "{proxy.url}" }}
timeout = 20

[[folders]]
name = "meta"
query = {{ PatientID = "C001" }}
views = ["metadata"]
"""
        with mounted(cfg, tmp_path) as m:
            before = proxy.count()
            doc = json.loads((m.path / "views" / "meta" / STUDY / f"{SERIES[1]}.json").read_bytes())
            assert len(doc) == 3
            with proxy.lock:
                seen = proxy.log[before:]
            metadata = [r for r in seen if r.split("?")[0].endswith("/metadata")]
            searches = [r for r in seen if "?" in r and "/metadata" not in r]
            assert len(metadata) == 1 and sorted(metadata + searches) == sorted(seen), seen
            assert m.stats()["instances_fetched"] == 0 and sum(m.stats()["bytes_fetched"].values()) == 0
