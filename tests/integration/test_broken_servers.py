"""Broken and quirky servers, through real mounts: each test puts one wrong
answer that real servers send in front of trolleyfs (the DICOMweb, MINT and
RAD69 test servers in tests/servers, and pynetdicom's qrscp) and checks what
a user sees: data that is sound is served exactly, data that is not is EIO
with a log line naming the server and the object, a listing survives a bad
value, nothing is served twice from a server that cannot do it, and the log
holds no traceback."""

from __future__ import annotations

import errno
import io
import os
import subprocess

import pydicom
import pytest

from tests.integration.brokenweb import ALL, config, files_of, no_traceback, qido, read_errno, series_dirs, wado
from tests.mounting import TROLLEYFS, mounted
from tests.servers.mint import MintServer
from tests.servers.qrscp import QrScp, dataset_bytes, in_syntax
from tests.servers.rad69 import Rad69Server

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- reads: never a wrong byte


def test_parts_whose_content_length_lies_are_refused_never_served(web, index, tmp_path, uid_of):
    """Defect 1: each part declares the whole object's length and holds half of it."""
    web.lying_lengths = "all"
    with mounted(config(qido(web), wado(web)), tmp_path) as m:
        first, second = series_dirs(m)[:2]
        files = sorted(first.iterdir())
        for f in files:
            assert read_errno(f) == errno.EIO
        uid = uid_of(files[0])
        assert f"pacs: instance {uid}: part 1 (object {uid}) declares Content-Length" in m.log_text()
        # only the series answers lie: the first file comes alone, the readahead's
        # parts are refused, and each other file is then read alone: all exact
        web.lying_lengths = "series"
        for f in sorted(second.iterdir()):
            assert f.read_bytes() == index.files[uid_of(f)]
        assert web.count(r"/series/[^/]+$") >= 1 and "damaged objects refused" in m.log_text()
        web.lying_lengths = None  # nothing of the damaged answers was kept: the first series is exact now
        assert all(f.read_bytes() == index.files[uid_of(f)] for f in files)
        no_traceback(m)


@pytest.mark.parametrize("protocol", ["wado-rs", "wado-rs-no-part-lengths", "wado-uri", "rad69"])
def test_objects_cut_short_inside_consistent_framing_are_refused(web, index, tmp_path, uid_of, protocol):
    """Defect 2: the framing is consistent, the object's own element lengths
    run past its end.  Every retrieve protocol checks the object itself."""
    web.cut_objects = True
    web.part_lengths = protocol != "wado-rs-no-part-lengths"
    rad69 = Rad69Server(index).start()
    rad69.mode = "cut-object"
    try:
        retrieve = {
            "wado-uri": f'{{ protocol = "wado-uri", url = "{web.root_url}/wado" }}',
            "rad69": f'{{ protocol = "rad69", url = "{rad69.url}" }}',
        }.get(protocol, wado(web))
        with mounted(config(qido(web), retrieve), tmp_path) as m:
            files = sorted(series_dirs(m)[0].iterdir())
            for f in files:
                assert read_errno(f) == errno.EIO
            assert "is damaged or incomplete" in m.log_text()
            web.cut_objects, rad69.mode = False, "ok"
            assert all(f.read_bytes() == index.files[uid_of(f)] for f in files)
            no_traceback(m)
    finally:
        rad69.stop()


def test_duplicated_parts_identical_are_served_different_are_refused(web, index, tmp_path, uid_of):
    """Defect 7: the object asked for, sent twice."""
    web.duplicates = "same"
    with mounted(config(qido(web), wado(web)), tmp_path) as m:
        first, second = series_dirs(m)[:2]
        for f in sorted(first.iterdir()):  # alone, then by the series readahead
            assert f.read_bytes() == index.files[uid_of(f)]
        web.duplicates = "different"  # the second copy has one byte changed
        files = sorted(second.iterdir())
        assert read_errno(files[0]) == errno.EIO  # an instance answer with two different copies
        assert "copies of the instance that differ" in m.log_text()
        for f in files[1:]:  # never the altered copy
            try:
                assert f.read_bytes() == index.files[uid_of(f)]
            except OSError as exc:
                assert exc.errno == errno.EIO
        no_traceback(m)


def test_single_part_answers_406_and_parts_without_lengths_are_read_exactly(web, index, tmp_path, uid_of):
    """Quirks: an instance answered by a bare application/dicom body; a server
    that refuses the first Accept form with 406 (tried once per server, then
    remembered); multipart parts without Content-Length (dcm4chee)."""
    web.single_part = True
    web.strict_accept = 'multipart/related; type="application/dicom"'
    web.part_lengths = False
    with mounted(config(qido(web), wado(web)), tmp_path) as m:
        refused_before = web.count(r"/series/[^/]+/instances/", 406)  # the pre-flight's read learnt it once too
        files = files_of(m)
        for f in files:
            assert f.read_bytes() == index.files[uid_of(f)]
        assert web.count(r"/series/[^/]+/instances/", 406) - refused_before == 1
        assert web.count(r"/series/[^/]+$", 406) == 0  # the series requests used the form that worked
        assert web.count(r"/series/[^/]+$", 200) >= 1
        no_traceback(m)


def test_a_server_without_series_retrieval_is_asked_once(web, index, tmp_path):
    """Defect 9: series-level WADO-RS answers 404.  Copying the whole folder
    (9 series) makes one failing series request and logs it once; every file
    is read alone, exactly."""
    web.series_404 = True
    with mounted(config(qido(web), wado(web)), tmp_path) as m:
        dest = tmp_path / "copy"
        subprocess.run(["cp", "-r", str(m.path / "all"), str(dest)], check=True, timeout=300)
        copied = sorted(dest.rglob("*.dcm"))
        assert len(copied) == len(index.files)
        assert sorted(f.read_bytes() for f in copied) == sorted(index.files.values())
        assert web.count(r"/series/[^/]+$") == 1
        assert m.log_text().count("series retrieval failed") == 1
        no_traceback(m)


# --------------------------------------------------------------------------- listings: never hide a study


def test_a_listed_series_whose_instance_search_fails_is_eio_and_check_agrees(web, tmp_path):
    """Defect 10: the server lists a series, then answers 404 for its
    instances.  That is EIO (not "No such file or directory"); `check` finds
    the search answering, as the mount did, and says it could not try a read
    (skipped, exit 3: nothing failed, not everything was tried)."""
    web.instance_search_404 = True
    cfg = config(qido(web), wado(web))
    with mounted(cfg, tmp_path) as m:
        series = series_dirs(m)[0]
        with pytest.raises(OSError) as exc:
            os.listdir(series)
        assert exc.value.errno == errno.EIO
        done = subprocess.run(
            ["cp", "-r", str(series), str(tmp_path / "copy")], capture_output=True, text=True, timeout=120
        )
        assert done.returncode != 0 and "No such file" not in done.stderr and "Input/output error" in done.stderr
        assert "was listed by it: its contents cannot be fetched" in m.log_text()
        check = subprocess.run([*TROLLEYFS, "check", str(m.config)], capture_output=True, text=True, timeout=120)
        assert check.returncode == 3, check.stdout + check.stderr
        search_row, retrieve_row = check.stdout.splitlines()[2:4]  # after "config ok" and the table's head
        assert "ok: answered (1 study)" in search_row
        assert "skipped: not tried (no instance could be listed to read" in retrieve_row and "404" in retrieve_row
        no_traceback(m)


def test_malformed_qido_answers_keep_the_listing_or_fail_in_one_line(web, tmp_path):
    """Defects 4 and 5: attributes with keys that are not tags are left out
    (the studies stay); a deeply nested answer is EIO with one log line."""
    web.bad_keys = True
    folders = ALL + '\n[[folders]]\nname = "again"\nquery = {}\n'
    with mounted(config(qido(web), wado(web), folders), tmp_path) as m:
        assert len(os.listdir(m.path / "all")) == 5
        assert "malformed attributes left out" in m.log_text()
        web.nested = True
        with pytest.raises(OSError) as exc:
            os.listdir(m.path / "again")
        assert exc.value.errno == errno.EIO
        assert "JSON nested too deeply" in m.log_text()
        no_traceback(m)


def test_mint_control_characters_keep_the_study_and_its_series(index, web, tmp_path):
    """Defect 3: raw control characters and references to them inside values."""
    with MintServer(index, control_chars=True) as mint:
        search = f'{{ protocol = "mint", url = "{mint.url}" }}'
        retrieve = f'{{ protocol = "wado-uri", url = "{web.root_url}/wado" }}'
        with mounted(config(search, retrieve), tmp_path) as m:
            studies = sorted((m.path / "all").iterdir())
            assert len(studies) == 5
            assert sum(len(os.listdir(s)) for s in studies) == 9  # every series of every study
            assert "XML 1.0 forbids" in m.log_text()
            no_traceback(m)


def test_folder_limit_holds_and_a_complete_folder_is_not_called_incomplete(web, tmp_path):
    """Defect 6 and the false warning: the server ignores limit and offset and
    sends all 10,005 studies every time."""
    web.extra_studies = 10_000
    web.ignore_limit = web.ignore_offset = True
    folders = '\n[[folders]]\nname = "capped"\nquery = {}\nlimit = 500\n' + ALL
    with mounted(config(qido(web), wado(web), folders), tmp_path) as m:
        assert len(os.listdir(m.path / "capped")) == 500
        assert len(os.listdir(m.path / "all")) == 10_005
        assert "incomplete" not in m.log_text()
        no_traceback(m)


def test_a_silently_capped_server_is_paged_through(web, tmp_path):
    """Google's default: at most 100 studies per request, no warning."""
    web.extra_studies = 245
    web.cap = 100
    with mounted(config(qido(web), wado(web)), tmp_path) as m:
        assert len(os.listdir(m.path / "all")) == 250
        assert "at most 100 results per studies search" in m.log_text()


def test_a_space_in_a_query_value(web, orthanc, tmp_path):
    """A server that matches `*` but not `?`, case-sensitively, and decodes
    %20 finds "CT Chest" sent as is; Orthanc 1.10, which does not decode the
    query, finds it with ``space_as = "?"``."""
    web.star_only = True
    folders = '\n[[folders]]\nname = "chest"\nquery = { StudyDescription = "CT Chest" }\n'
    folders += '\n[[folders]]\nname = "wrong"\nquery = { StudyDescription = "CT?Chest" }\n'
    with mounted(config(qido(web), wado(web), folders), tmp_path, name="web") as m:
        assert len(os.listdir(m.path / "chest")) == 1
        assert os.listdir(m.path / "wrong") == []  # `?` is no wildcard there: the old advice fails
        assert web.count("studies") >= 1
    on_orthanc = config(
        f'{{ protocol = "qido-rs", url = "{orthanc.dicomweb}", space_as = "?" }}',
        f'{{ protocol = "wado-rs", url = "{orthanc.dicomweb}" }}',
        folders,
    )
    with mounted(on_orthanc, tmp_path, name="orthanc") as m:
        assert len(os.listdir(m.path / "chest")) == 1


# --------------------------------------------------------------------------- DIMSE: pynetdicom's qrscp


def test_qrscp_limit_counts_studies_and_cget_keeps_the_stored_syntax(qrscp, tmp_path, uid_of):
    """Defects 8 and 11: qrscp answers a STUDY-level C-FIND with one row per
    instance (the limit must count studies); as a C-GET sender it uses a
    context of the object's own transfer syntax if one was accepted, else it
    converts: each dataset must come as stored (Explicit VR, Implicit VR,
    JPEG 2000 lossless)."""
    ae = f'host = "127.0.0.1", port = {qrscp.port}, called_aet = "{qrscp.aet}"'
    folders = '\n[[folders]]\nname = "two"\nquery = {}\nlimit = 2\n' + ALL
    cfg = config(f'{{ protocol = "dicom-qr", {ae} }}', f'{{ protocol = "c-get", {ae} }}', folders)
    with mounted(cfg, tmp_path) as m:
        assert len(os.listdir(m.path / "two")) == 2
        files = files_of(m)
        assert len(files) == len(qrscp.files)
        syntaxes = set()
        for f in files:
            data = f.read_bytes()
            stored = qrscp.stored(uid_of(f))
            assert dataset_bytes(data) == dataset_bytes(stored), f
            syntaxes.add(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta.TransferSyntaxUID)
        assert len(syntaxes) == 3  # the three syntaxes the objects are stored in
        no_traceback(m)


@pytest.fixture(scope="module")
def qrscp(sample_files):
    """qrscp holding the sample studies in three transfer syntaxes."""
    varied = []
    for data in sample_files:
        description = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).StudyDescription
        if description.startswith("MR"):
            data = in_syntax(data, pydicom.uid.ImplicitVRLittleEndian)
        elif description == "CT Abdomen":
            data = in_syntax(data, pydicom.uid.JPEG2000Lossless)
        varied.append(data)
    with QrScp(varied) as server:
        yield server
