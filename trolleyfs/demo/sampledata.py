"""Generated sample studies: used by ``make demo``, the tests and the benchmark.

Deterministic: the same arguments give the same UIDs and bytes, so names and
contents are stable across runs.  The images are synthetic (no patient data).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, CTImageStorage, ExplicitVRLittleEndian, MRImageStorage

ROOT = "1.2.826.0.1.3680043.10.1087"  # a UID root for generated sample data


def uid(*parts: object) -> str:
    digest = int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest(), 16)
    return f"{ROOT}.{digest % 10**30}"


@dataclass(frozen=True)
class SeriesSpec:
    modality: str
    description: str
    instances: int
    rows: int = 64
    cols: int = 64


@dataclass(frozen=True)
class StudySpec:
    patient_name: str
    patient_id: str
    date: str  # YYYYMMDD
    description: str
    series: tuple[SeriesSpec, ...]
    accession: str = ""


def default_studies() -> list[StudySpec]:
    """A few patients, studies and series: small but varied, with awkward names."""
    return [
        StudySpec(
            "TEST^ALICE",
            "P001",
            "20210304",
            "CT Chest",
            (SeriesSpec("CT", "Axial 5mm", 12), SeriesSpec("CT", "Coronal", 6)),
            "A1001",
        ),
        StudySpec("TEST^ALICE", "P001", "20230115", "CT Abdomen", (SeriesSpec("CT", "Portal venous", 8),), "A1002"),
        StudySpec(
            "TEST^BOB",
            "P002",
            "20220720",
            "MR Brain",
            (SeriesSpec("MR", "T1 sag", 5), SeriesSpec("MR", "T2 ax", 5), SeriesSpec("MR", "FLAIR", 4)),
            "A2001",
        ),
        StudySpec(
            "TEST^CAROL/../X",
            "P003",
            "20240202",
            "CT Head/Neck",
            (SeriesSpec("CT", "Bone", 3), SeriesSpec("CT", "Bone", 3)),
            "A3001",
        ),
        StudySpec("OTHER^DAVE", "P004", "20190911", "MR Knee", (SeriesSpec("MR", "PD fs", 4),), "A4001"),
    ]


def _pixels(rows: int, cols: int, seed: int) -> bytes:
    try:
        import numpy as np
    except ImportError:
        return _pixels_py(rows, cols, seed)
    y, x = np.mgrid[0:rows, 0:cols]
    cx, cy, r2 = cols // 2, rows // 2, (min(rows, cols) // 4 + seed % 7) ** 2
    img = ((y * 4 + seed) & 0x3FF) + (x & 0xFF) + np.where((x - cx) ** 2 + (y - cy) ** 2 < r2, 600, 0)
    data: bytes = img.astype("<u2").tobytes()
    return data


def _pixels_py(rows: int, cols: int, seed: int) -> bytes:
    # a smooth gradient plus a seed-dependent disc: compresses like an image, differs per slice
    out = bytearray(rows * cols * 2)
    cx, cy, r2 = cols // 2, rows // 2, (min(rows, cols) // 4 + seed % 7) ** 2
    for y in range(rows):
        base = (y * 4 + seed) & 0x3FF
        row = [base + (x & 0xFF) + (600 if (x - cx) ** 2 + (y - cy) ** 2 < r2 else 0) for x in range(cols)]
        struct.pack_into(f"<{cols}H", out, y * cols * 2, *row)
    return bytes(out)


def make_instance(study: StudySpec, study_idx: int, series: SeriesSpec, series_idx: int, n: int) -> bytes:
    """One Part-10 object."""
    s_uid = uid("study", study.patient_id, study_idx)
    se_uid = uid("series", study.patient_id, study_idx, series_idx)
    i_uid = UID(uid("instance", study.patient_id, study_idx, series_idx, n))
    sop_class = CTImageStorage if series.modality == "CT" else MRImageStorage
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = i_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, i_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = s_uid, se_uid
    ds.FrameOfReferenceUID = uid("for", study.patient_id, study_idx, series_idx)
    ds.PatientName, ds.PatientID = study.patient_name, study.patient_id
    ds.PatientSex, ds.PatientBirthDate = "O", "19700101"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study.date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.StudyDescription, ds.SeriesDescription = study.description, series.description
    ds.AccessionNumber, ds.StudyID = study.accession, str(study_idx + 1)
    ds.Modality = series.modality
    ds.SeriesNumber, ds.InstanceNumber = series_idx + 1, n + 1
    ds.InstitutionName = "trolleyfs sample hospital"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [-100.0, -100.0, float(n) * 2.5]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = 2.5
    ds.SliceLocation = float(n) * 2.5
    ds.Rows, ds.Columns = series.rows, series.cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if series.modality == "CT":
        ds.RescaleIntercept, ds.RescaleSlope, ds.KVP = -1024, 1, 120
    else:
        ds.MagneticFieldStrength, ds.EchoTime, ds.RepetitionTime = 1.5, 20, 500
    ds.WindowCenter, ds.WindowWidth = 600, 1200
    ds.PixelData = _pixels(series.rows, series.cols, n + 31 * series_idx + 7 * study_idx)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def generate(studies: list[StudySpec] | None = None) -> Iterator[bytes]:
    """Every instance of ``studies`` (default: :func:`default_studies`)."""
    for si, study in enumerate(studies or default_studies()):
        for sei, series in enumerate(study.series):
            for n in range(series.instances):
                yield make_instance(study, si, series, sei, n)


def bench_studies(n_studies: int = 100, big_series: int = 500, size: int = 512) -> list[StudySpec]:
    """The benchmark's data set: one study holding a large CT series, and many small studies."""
    today = _dt.date(2024, 1, 1)
    thin = SeriesSpec("CT", "Thin", big_series, size, size)
    big = StudySpec("BENCH^BIG", "B000", "20240101", "Bench big CT", (thin,))
    small = [
        StudySpec(
            f"BENCH^P{i:03}",
            f"B{i:03}",
            (today - _dt.timedelta(days=i)).strftime("%Y%m%d"),
            "Bench small",
            (SeriesSpec("CT", "Scout", 2),),
        )
        for i in range(1, n_studies)
    ]
    return [big, *small]
