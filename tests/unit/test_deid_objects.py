"""De-identified Part-10 objects (trolleyfs.deid, PS3.15 Annex E's basic
profile): no identifying value left in any byte, in any transfer syntax;
pixel data and transfer syntax unchanged; UIDs consistent across a series
and its references; the same bytes for the same key, in another process too;
other pseudonyms for another key; broken input refused with one line."""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from tests.identifying import Study, leaks, make_object, make_series, table_tags
from trolleyfs.deid import Deidentifier, NotPart10
from trolleyfs.deid.codec import IMPLEMENTATION_UID

KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))
UID_FORM = re.compile(r"^2\.25\.(0|[1-9][0-9]*)$")


def read(data: bytes) -> Dataset:
    return dcmread(io.BytesIO(data))


def compressed(data: bytes, syntax: str) -> bytes:
    ds = read(data)
    ds.compress(syntax, generate_instance_uid=False)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def source(charset: str, syntax: str, letter: str = "A") -> tuple[Study, bytes]:
    study = Study(letter, 1, charset=charset)
    modality = "CT" if charset == "ISO_IR 192" else "MR"
    stored = ExplicitVRLittleEndian if syntax in (JPEG2000Lossless, RLELossless) else syntax
    data = make_object(study, modality, 1, 0, 2, syntax=stored)
    return study, compressed(data, syntax) if stored != syntax else data


SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEG2000Lossless,
]


def test_the_generated_objects_hold_what_the_search_looks_for() -> None:
    """The search below can fail: the sources leak everything it looks for."""
    study, data = source("ISO_IR 192", ExplicitVRLittleEndian)
    found = leaks(data, study.secrets)
    secrets = study.secrets
    assert len(found) >= len(secrets.uids) + len(secrets.blobs) + 400
    assert any("MÜLLER" in f and "utf-8" in f for f in found)
    study, data = source("ISO_IR 100", ExplicitVRLittleEndian, "B")
    assert any("SØRENSEN" in f and "latin-1" in f for f in leaks(data, study.secrets))


@pytest.mark.parametrize("charset", ["ISO_IR 192", "ISO_IR 100"])
@pytest.mark.parametrize("syntax", SYNTAXES, ids=lambda s: UID(s).keyword)
def test_no_identifying_value_survives_in_any_byte(charset: str, syntax: str) -> None:
    study, data = source(charset, syntax)
    out = Deidentifier(KEY).part10(data)
    assert leaks(out, study.secrets) == []
    before, after = read(data), read(out)
    assert after.file_meta.TransferSyntaxUID == syntax
    assert after.PixelData == before.PixelData  # the very bytes, encapsulated or native, either byte order
    assert out[:128] == bytes(128)
    assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID != before.SOPInstanceUID
    assert after.file_meta.ImplementationClassUID == IMPLEMENTATION_UID
    assert "SourceApplicationEntityTitle" not in after.file_meta
    assert after.SpecificCharacterSet == charset
    assert after.SOPClassUID == before.SOPClassUID


def test_private_overlay_and_curve_groups_are_gone_at_every_depth() -> None:
    _study, data = source("ISO_IR 192", ExplicitVRLittleEndian)
    before, after = read(data), read(Deidentifier(KEY).part10(data))
    assert any(e.tag.is_private for e in before.iterall())
    assert any(e.tag.group >> 8 in (0x50, 0x60) for e in before)
    tags = [e.tag for e in after.iterall()]
    assert not [t for t in tags if t.is_private or t.group >> 8 in (0x50, 0x60) or t.element == 0]
    # a table sequence that is not removed (X) keeps its items, de-identified
    kept = [t for t, row in table_tags().items() if row[2] != "X" and before.get(t) is not None]
    sequences = [t for t in kept if before[t].VR == "SQ"]
    assert len(sequences) >= 15
    for tag in sequences:
        assert len(after[tag].value) == len(before[tag].value) == 1, tag


def test_uids_agree_across_a_series_and_its_references() -> None:
    study = Study("C", 3)
    sources = make_series(study, "CT", 5, 4)
    d = Deidentifier(KEY)
    outs = [read(d.part10(s)) for s in sources]
    originals = [read(s) for s in sources]
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert {o.get(keyword) for o in outs} == {d.uid(originals[0].get(keyword))}
    new_uid = {orig.SOPInstanceUID: out.SOPInstanceUID for orig, out in zip(originals, outs, strict=True)}
    for orig, out in zip(originals, outs, strict=True):
        ref = orig.ReferencedImageSequence[0].ReferencedSOPInstanceUID
        assert out.ReferencedImageSequence[0].ReferencedSOPInstanceUID == new_uid[ref] == d.uid(ref)
        assert out.SourceImageSequence[0].ReferencedSOPInstanceUID == new_uid[ref]
        assert (
            out.ReferencedImageSequence[0].ReferencedSOPClassUID
            == orig.ReferencedImageSequence[0].ReferencedSOPClassUID
        )
    every = [e.value for o in outs for e in o.iterall() if e.VR == "UI" and e.value]
    replaced = [u for u in every if not u.startswith("1.2.840.10008.")]
    assert replaced and all(UID_FORM.match(u) and len(u) <= 64 and UID(u).is_valid for u in replaced)
    assert len(set(new_uid.values())) == 4


def test_the_same_key_gives_the_same_bytes_also_in_a_fresh_process(tmp_path: Path) -> None:
    _study, data = source("ISO_IR 192", ExplicitVRLittleEndian)
    first = Deidentifier(KEY).part10(data)
    assert Deidentifier(KEY).part10(data) == first
    path = tmp_path / "in.dcm"
    path.write_bytes(data)
    code = (
        "import hashlib, sys\n"
        "from trolleyfs.deid import Deidentifier\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "print(hashlib.sha256(Deidentifier(bytes.fromhex(sys.argv[2])).part10(data)).hexdigest())\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(path), KEY.hex()],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"},
    )
    assert run.stdout.strip() == hashlib.sha256(first).hexdigest()


def test_another_key_gives_other_pseudonyms() -> None:
    study, data = source("ISO_IR 192", ExplicitVRLittleEndian)
    options = ["retain-longitudinal-temporal-information-modified-dates"]
    one, two = read(Deidentifier(KEY, options).part10(data)), read(Deidentifier(OTHER_KEY, options).part10(data))
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "StudyDate"):
        assert one.get(keyword) != two.get(keyword), keyword
    assert leaks(Deidentifier(OTHER_KEY, options).part10(data), study.secrets, dates=False, times=False) == []


def test_patient_pseudonyms_are_keyed_by_the_patient_not_the_study() -> None:
    d = Deidentifier(KEY)
    first = read(d.part10(make_object(Study("D", 4), "CT", 1, 0, 1)))
    again = read(d.part10(make_object(Study("E", 5, patient_id="MKDPID77", patient_name="OTHER^FORM"), "MR", 2, 0, 1)))
    other = read(d.part10(make_object(Study("F", 6), "CT", 1, 0, 1)))
    assert first.PatientID == again.PatientID != other.PatientID
    assert str(first.PatientName) == str(again.PatientName) == f"ANON^{first.PatientID}"
    assert first.StudyInstanceUID != again.StudyInstanceUID
    assert re.fullmatch(r"[A-Z2-7]{16}", first.PatientID)


def test_what_was_done_is_recorded() -> None:
    _study, data = source("ISO_IR 192", ExplicitVRLittleEndian)
    out = read(Deidentifier(KEY, ["clean-descriptors", "retain-uids", "retain-safe-private"]).part10(data))
    assert out.PatientIdentityRemoved == "YES"
    codes = [(c.CodeValue, c.CodingSchemeDesignator) for c in out.DeidentificationMethodCodeSequence]
    assert codes == [("113100", "DCM"), ("113105", "DCM"), ("113110", "DCM")]  # safe private: nothing kept, not claimed
    assert "Basic Application Confidentiality Profile" in out.DeidentificationMethod
    assert all(len(v) <= 64 for v in out.DeidentificationMethod)
    assert out.LongitudinalTemporalInformationModified == "REMOVED"
    assert out.SOPInstanceUID == read(data).SOPInstanceUID  # retain-uids


@pytest.mark.parametrize(
    "data",
    [b"", b"not dicom at all" * 20, bytes(128) + b"DICM", bytes(128) + b"DICM" + b"\x02\x00\x10\x00UI"],
    ids=["empty", "text", "marker only", "cut meta"],
)
def test_what_is_not_a_part10_object_is_refused_with_one_line(data: bytes) -> None:
    with pytest.raises(NotPart10) as info:
        Deidentifier(KEY).part10(data)
    assert "\n" not in str(info.value) and "Part-10" in str(info.value)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless], ids=str)
def test_a_cut_object_or_one_with_trailing_bytes_is_refused(syntax: str) -> None:
    _study, data = source("ISO_IR 192", syntax)
    d = Deidentifier(KEY)
    for bad in (data[:1000], data[: len(data) // 2], data[:-1], data + b"\0\0\0\0"):
        with pytest.raises(NotPart10, match="whole Part-10 object"):
            d.part10(bad)


def test_the_key_must_be_long_enough() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Deidentifier(b"short")
