"""Transfer syntaxes on the storage side of DIMSE, through real mounts (issue
17, defects 6 and 7): a losslessly stored object never arrives lossy, and a
losslessly compressed one arrives as stored.

* C-MOVE from dcmtk's dcmqrscp started with ``+xy -xy`` (it proposes JPEG
  Baseline beside the uncompressed syntaxes when it sends): the receiver must
  take an uncompressed syntax, and the files are the stored datasets (the old
  receiver took JPEG Baseline, dcmqrscp could not convert 16-bit CT to it, and
  every C-MOVE failed with 0xA702: the mount did not start).
* The same from dcmqrscp started with ``-xs`` (it proposes JPEG Lossless
  beside the uncompressed syntaxes): the receiver took JPEG Lossless first,
  dcmqrscp could not compress to it, and every C-MOVE failed (0xA702).
* A lossy syntax is accepted only from a context that offers nothing else,
  and said once in the log (a pynetdicom sender calling as the PACS).
* C-GET from pynetdicom's qrscp, which cannot decompress and picks Implicit VR
  from a context offering several syntaxes: CT stored as RLE and MR stored as
  JPEG-LS lossless must arrive as stored (the old contexts gave neither a
  context of its own: EIO)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, JPEGLSLossless, RLELossless
from pynetdicom import AE

from tests.conftest import MOVE_AET
from tests.mounting import by_sop_uid, dataset_bytes, mounted
from tests.servers.dcmqrscp import Dcmqrscp, free_port
from tests.servers.qrscp import QrScp, in_syntax
from tests.servers.qrscp import dataset_bytes as stored_dataset

pytestmark = pytest.mark.integration

ALL = '\n[[folders]]\nname = "all"\nquery = {}\n'


def cmove_config(qr: Dcmqrscp, store_port: int) -> str:
    ae = f'host = "{qr.host}", port = {qr.port}, called_aet = "{qr.aet}"'
    return f"""
[servers.pacs]
search   = {{ protocol = "dicom-qr", {ae} }}
retrieve = {{ protocol = "c-move", {ae}, store_port = {store_port}, store_aet = "{MOVE_AET}" }}
timeout = 60
retries = 0
{ALL}"""


def syntax_of(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta.TransferSyntaxUID)


def uid_of(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


@pytest.fixture(scope="module")
def store_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def jpeg_proposing(sample_files, store_port) -> Iterator[Dcmqrscp]:
    """dcmqrscp that prefers and proposes JPEG Baseline (``+xy -xy``)."""
    qr = Dcmqrscp(
        sample_files, move_destinations={"trolleyfs": (MOVE_AET, "127.0.0.1", store_port)}, options=["+xy", "-xy"]
    )
    qr.start()
    try:
        yield qr
    finally:
        qr.cleanup()


@pytest.fixture(scope="module")
def lossless_proposing(sample_files) -> Iterator[tuple[Dcmqrscp, int]]:
    """dcmqrscp that proposes JPEG Lossless beside the uncompressed syntaxes
    (``-xs``), with a receiving port of its own."""
    port = free_port()
    qr = Dcmqrscp(sample_files, move_destinations={"trolleyfs": (MOVE_AET, "127.0.0.1", port)}, options=["-xs"])
    qr.start()
    try:
        yield qr, port
    finally:
        qr.cleanup()


def _moved_uncompressed(qr: Dcmqrscp, port: int, sample_files: list[bytes], tmp_path) -> str:
    """Every file of a mount over C-MOVE from ``qr`` (the pre-flight read
    works): in Explicit VR, its dataset the stored one.  The mount's log."""
    by_uid = by_sop_uid(sample_files)
    with mounted(cmove_config(qr, port), tmp_path) as m:
        files = sorted((m.path / "all").rglob("*.dcm"))
        assert len(files) == len(sample_files)
        for f in files:
            data = f.read_bytes()
            assert syntax_of(data) == ExplicitVRLittleEndian, f
            assert dataset_bytes(data) == dataset_bytes(by_uid[uid_of(data)]), f
        return m.log_text()


def test_c_move_from_a_sender_proposing_jpeg_lossless_arrives_uncompressed(lossless_proposing, sample_files, tmp_path):
    qr, port = lossless_proposing
    _moved_uncompressed(qr, port, sample_files, tmp_path)


def test_c_move_from_a_sender_proposing_jpeg_baseline_arrives_uncompressed(
    jpeg_proposing, store_port, sample_files, tmp_path
):
    assert "lossy" not in _moved_uncompressed(jpeg_proposing, store_port, sample_files, tmp_path)


def test_a_lossy_syntax_only_when_a_context_offers_nothing_else(jpeg_proposing, store_port, tmp_path):
    """A sender calling as the PACS (its AE title, its address) proposes JPEG
    Baseline alone for secondary captures and beside Explicit VR for CT."""
    with mounted(cmove_config(jpeg_proposing, store_port), tmp_path, "--no-check") as m:
        accepted = []
        for _ in range(2):
            ae = AE(ae_title=jpeg_proposing.aet)
            ae.add_requested_context(pydicom.uid.SecondaryCaptureImageStorage, [JPEGBaseline8Bit])
            ae.add_requested_context(pydicom.uid.CTImageStorage, [JPEGBaseline8Bit, ExplicitVRLittleEndian])
            assoc = ae.associate("127.0.0.1", store_port, ae_title=MOVE_AET)
            assert assoc.is_established
            try:
                accepted.append({cx.abstract_syntax: cx.transfer_syntax[0] for cx in assoc.accepted_contexts})
            finally:
                assoc.release()
        for got in accepted:
            assert got == {
                pydicom.uid.SecondaryCaptureImageStorage: JPEGBaseline8Bit,  # nothing else offered
                pydicom.uid.CTImageStorage: ExplicitVRLittleEndian,
            }
        lossy = [line for line in m.log_text().splitlines() if "offers only lossy" in line]
        assert len(lossy) == 2 and "WARNING" in lossy[0] and "DEBUG" in lossy[1], lossy  # said once
        assert "JPEG Baseline (Process 1) for Secondary Capture Image Storage" in lossy[0]
        assert f"{jpeg_proposing.aet}@127.0.0.1" in lossy[0]


@pytest.fixture(scope="module")
def compressed_qrscp(sample_files) -> Iterator[QrScp]:
    """qrscp holding the CT studies as RLE Lossless and the MR studies as JPEG-LS lossless."""
    stored = []
    for data in sample_files:
        modality = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).Modality
        stored.append(in_syntax(data, RLELossless if modality == "CT" else JPEGLSLossless))
    with QrScp(stored) as server:
        yield server


def test_c_get_of_rle_ct_and_jpeg_ls_mr_from_qrscp_arrives_as_stored(compressed_qrscp, tmp_path):
    qr = compressed_qrscp
    ae = f'host = "{qr.host}", port = {qr.port}, called_aet = "{qr.aet}"'
    config = f"""
[servers.qrscp]
search   = {{ protocol = "dicom-qr", {ae} }}
retrieve = {{ protocol = "c-get", {ae} }}
timeout = 60
retries = 0
{ALL}"""
    with mounted(config, tmp_path) as m:
        series = sorted(d for d in (m.path / "all").glob("*/*") if d.is_dir())
        assert series
        seen = set()
        for d in series:
            for f in sorted(d.iterdir()):
                data = f.read_bytes()
                uid = os.getxattr(f, "user.dicom.SOPInstanceUID").decode()
                stored = qr.stored(uid)
                assert syntax_of(data) == syntax_of(stored), f
                assert stored_dataset(data) == stored_dataset(stored), f
                seen.add(syntax_of(data))
        assert seen == {RLELossless, JPEGLSLossless}
