"""The demo's studies: the README's session, on images that look real.

A chest CT of 240 slices of 512x512 (1.25 mm) with a 5 mm reconstruction and
an abdominal CT stored RLE-compressed, a brain MR (its T2 series stored as
JPEG 2000 lossless), and an older head CT that the demo's folder leaves out:
about 150 MB of
generated objects (:mod:`.phantom`), no patient data.  Made lazily, one object
at a time, so that the upload starts at once.  (The tests' small sample data
is :mod:`.sampledata`, which this does not touch.)"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    MRImageStorage,
    RLELossless,
)

from .phantom import Geometry, ct_slice, mr_slice
from .sampledata import ROOT, uid

# the chest CT's Study Instance UID, short enough to type (the README's `by-uid/` example)
CHEST_CT_UID = f"{ROOT}.1.1"


@dataclass(frozen=True)
class DemoSeries:
    modality: str
    description: str
    geometry: Geometry
    syntax: str = ExplicitVRLittleEndian  # as the archive stores it


@dataclass(frozen=True)
class DemoStudy:
    patient_name: str
    patient_id: str
    birth_date: str
    sex: str
    date: str  # YYYYMMDD
    time: str
    description: str
    accession: str
    series: tuple[DemoSeries, ...]
    study_uid: str = ""


def demo_studies() -> list[DemoStudy]:
    return [
        DemoStudy(
            "TEST^ALICE",
            "P001",
            "19610412",
            "F",
            "20210304",
            "093012",
            "CT Chest",
            "A1001",
            (
                DemoSeries("CT", "Axial 1.25mm", Geometry(240, thickness=1.25, top=-20.0)),
                DemoSeries("CT", "Axial 5mm", Geometry(60, thickness=5.0, top=-20.0), RLELossless),
            ),
            CHEST_CT_UID,
        ),
        DemoStudy(
            "TEST^ALICE",
            "P001",
            "19610412",
            "F",
            "20230115",
            "141500",
            "CT Abdomen",
            "A1002",
            (DemoSeries("CT", "Portal venous", Geometry(80, thickness=2.5, top=-240.0), RLELossless),),
        ),
        DemoStudy(
            "TEST^BOB",
            "P002",
            "19750920",
            "M",
            "20220720",
            "110000",
            "MR Brain",
            "A2001",
            (
                DemoSeries("MR", "T1 axial", Geometry(24, size=256, spacing=0.9, thickness=5.0, top=60.0)),
                DemoSeries(
                    "MR", "T2 axial", Geometry(24, size=256, spacing=0.9, thickness=5.0, top=60.0), JPEG2000Lossless
                ),
            ),
        ),
        DemoStudy(
            "TEST^ALICE",
            "P001",
            "19610412",
            "F",
            "20190911",
            "080000",
            "CT Head",
            "A0901",
            (DemoSeries("CT", "Head 5mm", Geometry(30, size=256, spacing=0.9, thickness=5.0, top=100.0)),),
        ),
    ]


def make_demo_instance(study: DemoStudy, si: int, series: DemoSeries, sei: int, n: int) -> bytes:
    """One Part-10 object of the demo, in its series' transfer syntax."""
    g = series.geometry
    study_uid = study.study_uid or uid("demo-study", study.patient_id, si)
    sop_class = CTImageStorage if series.modality == "CT" else MRImageStorage
    sop_uid = UID(uid("demo-instance", study.patient_id, si, sei, n))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study.date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = study.time
    ds.AccessionNumber, ds.Modality = study.accession, series.modality
    ds.Manufacturer, ds.InstitutionName = "trolleyfs demo", "trolleyfs sample hospital"
    ds.ReferringPhysicianName = "TEST^REFERRER"
    ds.StudyDescription, ds.SeriesDescription = study.description, series.description
    ds.PatientName, ds.PatientID = study.patient_name, study.patient_id
    ds.PatientBirthDate, ds.PatientSex = study.birth_date, study.sex
    ds.BodyPartExamined = {"CT Chest": "CHEST", "CT Abdomen": "ABDOMEN"}.get(study.description, "HEAD")
    ds.SliceThickness = g.thickness
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = uid("demo-series", study.patient_id, si, sei)
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = str(si + 1), sei + 1, n + 1
    ds.ImagePositionPatient = g.origin(n)
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.FrameOfReferenceUID = uid("demo-for", study.patient_id, si)
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = g.z(n)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = g.size
    ds.PixelSpacing = [g.spacing, g.spacing]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if series.modality == "CT":
        ds.KVP, ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 120, -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = (-600, 1500) if study.description == "CT Chest" else (40, 400)
        pixels = ct_slice(g, n, seed=si * 10 + sei)
    else:
        ds.MagneticFieldStrength, ds.EchoTime, ds.RepetitionTime = 1.5, 15 if sei == 0 else 90, 500
        ds.WindowCenter, ds.WindowWidth = 900, 1800
        pixels = mr_slice(g, n, seed=si * 10 + sei)
    ds.PixelData = pixels.tobytes()
    if series.syntax != ExplicitVRLittleEndian:
        ds.compress(series.syntax, pixels)  # RLE or JPEG 2000 lossless: what archives store
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def generate_demo(studies: list[DemoStudy] | None = None) -> Iterator[bytes]:
    """Every object of the demo, made as it is asked for."""
    for si, study in enumerate(studies if studies is not None else demo_studies()):
        for sei, series in enumerate(study.series):
            for n in range(series.geometry.count):
                yield make_demo_instance(study, si, series, sei, n)


def instance_count(studies: list[DemoStudy] | None = None) -> int:
    return sum(s.geometry.count for study in (studies or demo_studies()) for s in study.series)
