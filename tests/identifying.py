"""CT and MR series that hold identifying values in every attribute of PS3.15
Table E.1-1 (the de-identification table) that pydicom's dictionary knows,
for the de-identification tests.

Each value is unique and easy to find in bytes: texts are markers like
``MKA0042``, UIDs come from a root of their own, dates are in 1987, times
carry a unique fraction.  A sequence of the table gets one item holding
identifying attributes of its own (a person's name, an institution, a date,
a referenced UID, a private element) and, for a code sequence, a code made
of markers.  Besides the table's rows there are private elements at every
level (a creator, a text, bytes, a sequence), an overlay (60xx) and a curve
(50xx) group with texts and bits, and the patient's name and ID inside
free-text comments.  Every value put in is recorded in the study's
:class:`Secrets`, which the tests search the output for.

The images themselves are sound: real CT or MR geometry (axial slices, one
per position), the modules their IODs ask for, pixel values below 2048 (so
no two consecutive bytes of pixel data can spell text)."""

from __future__ import annotations

import datetime as _dt
import io
import json
import zlib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, CTImageStorage, ExplicitVRBigEndian, ExplicitVRLittleEndian, MRImageStorage

ROOT = "1.2.826.0.1.3680043.10.1077"  # this test data's own UID root
SKIPPED_GROUPS = (0x0000, 0x0002)  # command and file meta elements are not dataset attributes
CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage}
CHARSETS = {"ISO_IR 192": "utf-8", "ISO_IR 100": "latin-1"}


def table_rows() -> list[list[Any]]:
    """The rows of the shipped table (read as data, not through trolleyfs)."""
    text = resources.files("trolleyfs.deid").joinpath("data", "annex_e.json").read_text(encoding="utf-8")
    return list(json.loads(text)["attributes"])


@cache
def table_tags() -> dict[int, list[Any]]:
    """Exact-tag rows by tag, for attributes in pydicom's dictionary."""
    out = {}
    for row in table_rows():
        t = row[0]
        if len(t) == 11 and "X" not in t:
            tag = int(t[1:5] + t[6:10], 16)
            if keyword_for_tag(tag):
                out[tag] = row
    return out


@dataclass
class Secrets:
    """Every identifying value put into a study."""

    texts: set[str] = field(default_factory=set)
    uids: set[str] = field(default_factory=set)
    dates: set[str] = field(default_factory=set)
    times: set[str] = field(default_factory=set)
    blobs: set[bytes] = field(default_factory=set)


@dataclass
class Study:
    """A patient's study: who, which character set, and the values put in."""

    letter: str  # makes this study's markers its own
    number: int
    charset: str = "ISO_IR 192"
    patient_id: str = ""
    patient_name: str = ""
    accession: str = ""
    uid: str = ""
    date: str = "19870304"
    secrets: Secrets = field(default_factory=Secrets)
    top: dict[str, Any] = field(default_factory=dict)  # keyword -> value as put at the top level

    def __post_init__(self) -> None:
        name = {"ISO_IR 192": "MÜLLER", "ISO_IR 100": "SØRENSEN"}[self.charset]
        self.patient_id = self.patient_id or f"MK{self.letter}PID77"
        self.patient_name = self.patient_name or f"MK{self.letter}{name}^JÖRG{self.letter}MK"
        self.accession = self.accession or f"MK{self.letter}ACC31"
        self.uid = self.uid or f"{ROOT}.{self.number}.1"
        self.secrets.texts |= {self.patient_id, self.accession, *self.patient_name.split("^")}
        self.secrets.uids.add(self.uid)
        self.secrets.dates.add(self.date)

    def text(self, n: int, kind: str = "") -> str:
        marker = f"MK{self.letter}{n:04d}{kind}"
        self.secrets.texts.add(marker)
        return marker

    def new_uid(self, *parts: int) -> str:
        uid = ".".join([ROOT, str(self.number), *map(str, parts)])
        self.secrets.uids.add(uid)
        return uid

    def a_date(self, n: int) -> str:
        day = (_dt.date(1987, 1, 1) + _dt.timedelta(days=n % 300)).strftime("%Y%m%d")
        self.secrets.dates.add(day)
        return day

    def a_time(self, n: int) -> str:
        tm = f"{10 + n % 10:02d}{n % 60:02d}{(n * 7) % 60:02d}.{n:04d}{self.number % 100:02d}"
        self.secrets.times.add(tm)
        return tm

    def blob(self, n: int, size: int = 16) -> bytes:
        data = self.text(n, "B").encode("ascii").ljust(size, b"_")
        self.secrets.blobs.add(data[:10])
        return data


def _private(study: Study, ds: Dataset, n: int, nested: bool) -> None:
    """A private block with a creator, a text, bytes and (at the top) a sequence."""
    ds.add_new(0x00090010, "LO", study.text(n, "CR"))
    ds.add_new(0x00091001, "LO", study.text(n, "PV"))
    ds.add_new(0x00091002, "UN", study.blob(n + 1))
    ds.add_new(0x00091003, "PN", f"{study.text(n, 'PF')}^{study.patient_name}")
    if not nested:
        inner = Dataset()
        inner.PatientName = study.patient_name
        inner.add_new(0x00111010, "LO", study.text(n, "PI"))
        ds.add_new(0x00091004, "SQ", Sequence([inner]))


def _item(study: Study, keyword: str, n: int, ref: str) -> Dataset:
    """The one item of a table sequence: identifying attributes of its own."""
    item = Dataset()
    item.ReferencedSOPClassUID = CTImageStorage
    item.ReferencedSOPInstanceUID = ref
    if keyword not in ("ReferencedImageSequence", "SourceImageSequence"):
        item.PersonName = f"{study.text(n, 'P')}^{study.text(n, 'Q')}"
        item.InstitutionName = study.text(n, "I")
        item.AcquisitionDate = study.a_date(n)
        item.ObservationDateTime = study.a_date(n + 1) + "101500"
    if keyword.endswith("CodeSequence"):
        item.CodeValue = study.text(n, "C")
        item.CodingSchemeDesignator = "99" + study.text(n)
        item.CodeMeaning = f"{study.text(n, 'M')} of {study.patient_name}"
    _private(study, item, n, nested=True)
    return item


def _value(study: Study, tag: int, vr: str, n: int, ref: str) -> Any:
    """An identifying value of ``vr`` for the table's attribute ``tag``."""
    kind = vr[:1]
    if vr in ("AE", "CS", "SH"):
        return study.text(n, kind)
    if vr in ("LO", "UC"):
        return study.text(n, vr)
    if vr == "PN":
        return f"{study.text(n, 'F')}^{study.text(n, 'G')}"
    if vr in ("LT", "ST", "UT"):
        return f"Note {study.text(n, 'T')} on {study.patient_name}, ID {study.patient_id}"
    if vr == "UR":
        return f"http://{study.text(n, 'U').lower()}.example.org/"
    if vr == "DA":
        return study.a_date(n)
    if vr == "DT":
        return study.a_date(n) + study.a_time(n)
    if vr == "TM":
        return study.a_time(n)
    if vr == "DS":
        return f"7{n:04d}.{study.number % 10}5"
    if vr == "IS":
        return f"7{n:04d}"
    if vr == "AS":
        return "042Y"
    if vr == "UI":
        return study.new_uid(9, n)
    if vr in ("OB", "UN"):
        return study.blob(n)
    if vr in ("US", "SS", "UL", "SL"):
        return 3
    if vr == "SQ":
        return Sequence([_item(study, keyword_for_tag(tag), n, ref)])
    raise ValueError(f"no identifying value for VR {vr}")


def _table_attributes(study: Study, ds: Dataset, ref: str) -> None:
    for n, (tag, _row) in enumerate(sorted(table_tags().items())):
        if tag >> 16 in SKIPPED_GROUPS or tag in ds:
            continue
        vr = dictionary_VR(tag).split(" or ")[0]
        ds.add_new(tag, vr, _value(study, tag, vr, n + 1, ref))
    ds.OtherPatientIDs = [study.text(901, "O"), study.text(902, "O")]
    ds.OtherPatientIDsSequence[0].PatientID = study.text(903, "O")
    ds.ImageComments = f"Images of {study.patient_name}, {study.patient_id}, accession {study.accession}"


def _graphics(study: Study, ds: Dataset, rows: int, cols: int) -> None:
    """An overlay (group 6000) and a curve (group 5000), each with texts."""
    ds.add_new(0x60000010, "US", rows)
    ds.add_new(0x60000011, "US", cols)
    ds.add_new(0x60000022, "LO", study.text(950, "OD"))
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60001500, "LO", study.text(951, "OL"))
    ds.add_new(0x60003000, "OW", study.blob(952, rows * cols // 8))
    ds.add_new(0x60004000, "LT", study.text(953, "OC"))
    ds.add_new(0x50000005, "US", 2)
    ds.add_new(0x50000010, "US", 4)
    ds.add_new(0x50000020, "CS", "POLY")
    ds.add_new(0x50000022, "LO", study.text(954, "CV"))
    ds.add_new(0x50003000, "OB", study.blob(955))


def _image(ds: Dataset, modality: str, index: int, size: int, big_endian: bool) -> None:
    """The geometry and pixels of slice ``index`` of an axial series."""
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [-120.0, -130.0, -50.0 + 2.5 * index]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = 2.5
    ds.SliceLocation = -50.0 + 2.5 * index
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    y, x = np.mgrid[0:size, 0:size]
    pixels = ((x * 3 + y * 5 + index * 37) % 2000).astype(">u2" if big_endian else "<u2")
    ds.PixelData = pixels.tobytes()
    if modality == "CT":
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.KVP, ds.AcquisitionNumber = 120, 1
    else:
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
        ds.MRAcquisitionType, ds.EchoTime, ds.RepetitionTime = "2D", 12.0, 500.0
        ds.EchoTrainLength, ds.MagneticFieldStrength, ds.ImagingFrequency = 1, 1.5, 63.9
        ds.ImagedNucleus, ds.EchoNumbers, ds.SpacingBetweenSlices = "1H", 1, 2.5
        ds.AcquisitionNumber = 1


def make_object(
    study: Study,
    modality: str,
    series: int,
    index: int,
    count: int,
    *,
    size: int = 64,
    every_attribute: bool = True,
    syntax: str = ExplicitVRLittleEndian,
) -> bytes:
    """Slice ``index`` of ``count`` in series number ``series`` of ``study``,
    as Part-10 bytes; with ``every_attribute`` the table's attributes too."""
    ds = Dataset()
    ds.SpecificCharacterSet = study.charset
    ds.SOPClassUID = CLASSES[modality]
    ds.SOPInstanceUID = study.new_uid(series, 2, index)
    ds.StudyInstanceUID = study.uid
    ds.SeriesInstanceUID = study.new_uid(series, 1)
    ds.FrameOfReferenceUID = study.new_uid(series, 3)
    ds.Modality, ds.Manufacturer = modality, "ACME"
    ds.PatientName, ds.PatientID = study.patient_name, study.patient_id
    ds.PatientBirthDate, ds.PatientSex = study.a_date(400), "F"
    ds.StudyDate, ds.StudyTime = study.date, study.a_time(401)
    ds.SeriesDate, ds.SeriesTime = study.a_date(402 + series), study.a_time(402 + series)
    ds.ContentDate, ds.ContentTime = study.a_date(450 + series), study.a_time(450 + index)
    ds.AccessionNumber, ds.ReferringPhysicianName = study.accession, f"{study.text(405, 'R')}^DR"
    ds.StudyID, ds.StudyDescription = study.text(406, "S"), f"{modality} chest of {study.patient_name}"
    ds.SeriesNumber, ds.InstanceNumber = series, index + 1
    ds.SeriesDescription = study.text(407 + series, "SD")
    ds.InstitutionName, ds.StationName = study.text(408, "IN"), study.text(409, "ST")
    ds.PatientPosition, ds.Laterality = "HFS", ""
    _image(ds, modality, index, size, syntax == ExplicitVRBigEndian)
    ref = study.new_uid(series, 2, (index + 1) % count)  # the next slice of this series
    ds.ReferencedImageSequence = Sequence([Dataset()])
    ds.ReferencedImageSequence[0].ReferencedSOPClassUID = CLASSES[modality]
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = ref
    if every_attribute:
        _table_attributes(study, ds, ref)
        _private(study, ds, 960, nested=False)
        _graphics(study, ds, ds.Rows, ds.Columns)
    study.top = {k.keyword: k.value for k in ds if k.keyword}
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    ds.file_meta.SourceApplicationEntityTitle = study.text(970, "AE")
    ds.preamble = study.blob(971, 128)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def make_series(study: Study, modality: str, series: int, count: int, **kwargs: Any) -> list[bytes]:
    """The ``count`` slices of one series."""
    return [make_object(study, modality, series, i, count, **kwargs) for i in range(count)]


ENCODINGS = ("ascii", "utf-8", "latin-1", "utf-16-le", "utf-16-be")
_DEFLATED = "1.2.840.10008.1.2.1.99"


def plain_bytes(data: bytes) -> bytes:
    """The bytes to search: a deflated object's data set inflated."""
    end = _meta_end(data)
    if _DEFLATED.encode("ascii") not in data[:end]:
        return data
    return data[:end] + zlib.decompress(data[end:], -zlib.MAX_WBITS)


def _meta_end(data: bytes) -> int:
    """Where a Part-10 object's file meta information ends."""
    group_length = int.from_bytes(data[140:144], "little")  # (0002,0000) UL, right after 'DICM'
    return 144 + group_length


def leaks(data: bytes, secrets: Secrets, *, dates: bool = True, times: bool = True) -> list[str]:
    """Every recorded identifying value found in ``data`` (inflated if it is
    deflated), texts in every encoding that can spell them."""
    data = plain_bytes(data)
    found = []
    for text in sorted(secrets.texts):
        for encoding in ENCODINGS:
            try:
                needle = text.encode(encoding)
            except UnicodeEncodeError:
                continue
            if needle in data:
                found.append(f"{text!r} in {encoding}")
    numbers = set(secrets.uids) | (secrets.dates if dates else set()) | (secrets.times if times else set())
    found += [f"{v!r}" for v in sorted(numbers) if v.encode("ascii") in data]
    found += [f"{b!r}" for b in sorted(secrets.blobs) if b in data]
    return found
