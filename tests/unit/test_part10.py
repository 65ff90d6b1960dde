"""The whole-object check every fetcher applies: the element walk accepts
whole objects in every encoding real archives hold (explicit and implicit VR,
big endian, deflated, encapsulated pixel data, undefined-length sequences,
implicit VR inside an explicit UN) and refuses an object cut anywhere but
between two elements, with stray bytes after it, or with a length that runs
past its end; a Part-10 answer for another instance is refused too."""

from __future__ import annotations

import io
import re
import struct
from dataclasses import replace
from functools import cache
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from trolleyfs.demo import sampledata
from trolleyfs.errors import ProtocolError
from trolleyfs.part10 import (
    Expected,
    Identity,
    check_part10,
    check_whole,
    identity_of,
    identity_problem,
    part10_sop_instance_uid,
)

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


@cache
def sample() -> bytes:
    return next(iter(sampledata.generate()))


def encoded(syntax: str, data: bytes | None = None, nested: bool = False) -> bytes:
    """The sample object re-encoded in ``syntax`` (optionally with nested sequences)."""
    ds = pydicom.dcmread(io.BytesIO(data or sample()))
    if nested:
        inner = Dataset()
        inner.CodeValue, inner.CodingSchemeDesignator = "113691", "DCM"
        item = Dataset()
        item.ConceptNameCodeSequence = Sequence([inner])
        ds.ContentSequence = Sequence([item, Dataset()])
    if syntax in (JPEG2000Lossless, RLELossless):
        ds.compress(syntax)
    else:
        ds.file_meta.TransferSyntaxUID = UID(syntax)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def element_ends(data: bytes) -> set[int]:
    """Where top-level elements end, by pydicom: cuts there look like whole objects."""
    ds = pydicom.dcmread(io.BytesIO(data), defer_size=None)
    ends = {len(data)}
    f = io.BytesIO(data)
    pydicom.filereader.read_preamble(f, False)
    pydicom.filereader._read_file_meta_info(f)
    start = f.tell()
    ends.add(start)
    implicit, little = ds.original_encoding
    assert implicit is not None and little is not None  # read from bytes: known
    for elem in pydicom.filereader.data_element_generator(io.BytesIO(data[start:]), implicit, little):
        assert isinstance(elem, RawDataElement)  # an undefined-length sequence comes parsed, without a length
        ends.add(start + elem.value_tell + (elem.length if elem.length != 0xFFFFFFFF else 0))
    return ends


# (big endian: pydicom does not write it; its test file ExplVR_BigEnd.dcm is checked below)
SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
]


@pytest.mark.parametrize("syntax", SYNTAXES, ids=lambda s: pydicom.uid.UID(s).name)
@pytest.mark.parametrize("nested", [False, True], ids=["flat", "sequences"])
def test_whole_objects_pass(syntax: str, nested: bool) -> None:
    data = encoded(syntax, nested=nested)
    check_whole(data)
    assert check_part10(data, "pacs", "x") == pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID


@pytest.mark.parametrize(
    "syntax",
    [ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless, RLELossless],
    ids=lambda s: pydicom.uid.UID(s).name,
)
def test_every_cut_inside_an_element_or_before_the_pixels_is_refused(syntax: str) -> None:
    """Cutting between two top-level elements leaves a shorter object no walk
    can tell from a whole one, unless the cut drops the pixel data of an
    image (Rows came before it): every other cut is refused."""
    data = encoded(syntax, nested=True)
    rows_end = data.index(b"\x28\x00\x10\x00") + 10  # (0028,0010) Rows: tag, 4-byte header rest, US value
    boundaries = element_ends(data)
    accepted = []
    for cut in range(len(data) - 1, 131, -1):
        try:
            check_whole(data[:cut])
        except ValueError:
            continue
        accepted.append(cut)
    assert accepted, "cuts between elements before Rows are undetectable: the test should see some"
    assert all(cut in boundaries and cut < rows_end for cut in accepted), accepted


def test_stray_bytes_after_the_last_element_are_refused() -> None:
    for tail in (b"\x00", b"\x00\x00", b"garbage!", b"\r\n"):
        with pytest.raises(ValueError, match=r"stray bytes|no valid VR"):
            check_whole(sample() + tail)


def test_a_deflated_object_cut_short_is_refused() -> None:
    data = encoded(DeflatedExplicitVRLittleEndian)
    check_whole(data)
    for cut in (len(data) - 20, len(data) // 2, 400):
        with pytest.raises(ValueError, match="deflated"):
            check_whole(data[:cut])


def test_a_length_running_past_the_end_names_the_element() -> None:
    data = bytearray(sample())
    at = data.rfind(b"\xe0\x7f\x10\x00OW\x00\x00")
    struct.pack_into("<I", data, at + 8, struct.unpack_from("<I", data, at + 8)[0] + 2)
    with pytest.raises(ValueError, match=r"\(7FE0,0010\) declares"):
        check_whole(bytes(data))


def test_an_explicit_un_of_undefined_length_holds_implicit_vr_items() -> None:
    """PS3.5 6.2.2: a sequence whose VR the writer did not know."""
    item = struct.pack("<HHI", 0x0008, 0x0100, 6) + b"113691"  # implicit VR inside
    un = (
        struct.pack("<HH2sHI", 0x0009, 0x1010, b"UN", 0, 0xFFFFFFFF)
        + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
        + item
        + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
        + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    )
    data = sample()
    pixels = data.rfind(b"\xe0\x7f\x10\x00")
    whole = data[:pixels] + un + data[pixels:]
    check_whole(whole)
    with pytest.raises(ValueError, match=r"undefined-length|sequence"):
        check_whole(data[:pixels] + un[:-8] + data[pixels:])  # its delimiter missing


def test_the_meta_group_names_explicit_but_the_dataset_is_implicit() -> None:
    """Archives hold such objects; pydicom reads them: so must the check."""
    check_whole((PYDICOM_FILES / "SC_rgb_jpeg.dcm").read_bytes())


@pytest.mark.parametrize("name", ["MR_truncated.dcm", "rtplan_truncated.dcm"])
def test_truncated_files_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="declares"):
        check_whole((PYDICOM_FILES / name).read_bytes())


def test_pydicoms_whole_test_files_all_pass() -> None:
    skip = {
        "MR_truncated.dcm",
        "rtplan_truncated.dcm",
        "ExplVR_BigEndNoMeta.dcm",
        "ExplVR_LitEndNoMeta.dcm",
        "no_meta.dcm",
        "rtstruct.dcm",
    }  # truncated, or no Part-10 header
    files = [p for p in sorted(PYDICOM_FILES.glob("*.dcm")) if p.name not in skip]
    assert len(files) > 60
    for path in files:
        check_whole(path.read_bytes())


def test_check_part10_refuses_damage_and_other_instances_as_protocol_errors() -> None:
    data = sample()
    uid = part10_sop_instance_uid(data)
    with pytest.raises(ProtocolError, match=f"pacs: instance 1: object {uid} is damaged or incomplete"):
        check_part10(data[:-100], "pacs", "instance 1")
    with pytest.raises(ProtocolError, match="sent instance"):
        check_part10(data, "pacs", "instance 1", expect="1.2.3")
    with pytest.raises(ProtocolError, match="not a DICOM object"):
        check_part10(b"<html>oops</html>", "pacs", "instance 1")
    with pytest.raises(ProtocolError, match="no data elements"):
        check_part10(data[: data.index(b"\x08\x00", 132 + 200)], "pacs", "instance 1")  # the meta group alone


# --------------------------------------------------------------------------- who an object says it is


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_identity_is_read_from_the_dataset_in_every_encoding(syntax):
    data = encoded(syntax, nested=True)
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    want = Identity(ds.SOPInstanceUID, ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID)
    assert identity_of(data) == want  # reading only the head
    assert check_whole(data) == want  # and on the way of the whole walk


def test_identity_of_big_endian():
    path = PYDICOM_FILES / "ExplVR_BigEnd.dcm"
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    ident = identity_of(path.read_bytes())
    assert (ident.sop, ident.study, ident.series) == (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID)


def _rewritten(meta_uid: str | None = None, **changes: str) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(sample()))
    if meta_uid is not None:
        ds.file_meta.MediaStorageSOPInstanceUID = UID(meta_uid)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    return buf.getvalue()


def test_an_object_is_refused_when_it_is_not_the_one_expected():
    ds = pydicom.dcmread(io.BytesIO(sample()), stop_before_pixels=True)
    uid, study, series = ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID
    here = Expected(uid, series, study, ds.PatientID)
    assert check_part10(sample(), "pacs", "instance 1", here) == uid
    cases = {
        "its file meta names instance 1.2.3 but its dataset is instance": _rewritten(meta_uid="1.2.3"),
        f"it belongs to study 1.9, not to study {study} where it was listed": _rewritten(StudyInstanceUID="1.9"),
        f"it belongs to series 1.9, not to series {series} where it was listed": _rewritten(SeriesInstanceUID="1.9"),
        "it belongs to patient ID 'OTHER'": _rewritten(PatientID="OTHER"),
    }
    for problem, data in cases.items():
        expected = replace(here, instance=None) if "file meta" in problem else here
        with pytest.raises(ProtocolError, match=re.escape(problem)):
            check_part10(data, "pacs", "instance 1", expected)
        assert identity_problem(identity_of(data), expected) is not None
    # what the asker does not know is not compared; padding is not a difference
    assert identity_problem(identity_of(_rewritten(PatientID="OTHER")), replace(here, patient_id=None)) is None
    assert identity_problem(identity_of(sample()), replace(here, patient_id=f" {ds.PatientID} ")) is None
