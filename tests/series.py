"""Generated series for the derived views (NIfTI by dcm2niix, previews):

- :func:`ct` a CT-like stack with real geometry (positions stepping along the
  slice normal of an axial or oblique orientation, pixel spacing, slice
  thickness, rescale slope/intercept, 16-bit signed or unsigned) holding an
  ellipsoid phantom (body, lungs, spine, a lesion) in Hounsfield units;
- :func:`mr_multiecho` an MR-like multi-echo stack (one volume per echo time);
- :func:`rgb_capture` a colour secondary capture (RGB or YBR_FULL);
- :func:`multiframe` a multi-frame object whose frames differ;
- :func:`monochrome1` a CR-like MONOCHROME1 image;
- :func:`compressed` any of those re-encoded (RLE, JPEG 2000 lossless, ...);
- :func:`localizer` and :func:`structured_report`, which dcm2niix makes no
  volume of.

No patient data; deterministic (the same arguments give the same UIDs and
bytes on every run).  Each function returns the Part-10 objects of one series.
"""

from __future__ import annotations

import io
import math

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.processing import convert_color_space
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    BasicTextSRStorage,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
)

from tests.compressed import compress
from trolleyfs.demo.sampledata import uid

STUDY = uid("derive", "study")
PATIENT = ("TEST^DERIVE", "D001")


def _base(sop_class: str, series_key: str, n: int, modality: str, description: str, number: int) -> Dataset:
    """The attributes every generated object has: UIDs, patient, study, series."""
    i_uid = UID(uid("derive", series_key, n))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = i_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, i_uid
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = uid("derive", "series", series_key)
    ds.PatientName, ds.PatientID = PATIENT
    ds.PatientSex, ds.PatientBirthDate = "O", "19700101"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = "20240501"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "093000"
    ds.AcquisitionTime = f"0930{n % 60:02}"
    ds.StudyDescription, ds.SeriesDescription = "Derived views", description
    ds.AccessionNumber, ds.StudyID = "D1001", "1"
    ds.Modality, ds.Manufacturer = modality, "TROLLEYFS"
    ds.SeriesNumber, ds.InstanceNumber = number, n + 1
    ds.ImageComments = "generated for the trolleyfs tests"
    return ds


def _grey(ds: Dataset, pixels: np.ndarray, signed: bool) -> None:
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, ds.get("PhotometricInterpretation", "MONOCHROME2")
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = pixels.astype("<i2" if signed else "<u2").tobytes()


def _save(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _unit(v: np.ndarray) -> np.ndarray:
    out: np.ndarray = v / np.linalg.norm(v)
    return out


def phantom_hu(size: int, slices: int, k: int) -> np.ndarray:
    """Slice ``k`` of a body-like ellipsoid phantom in Hounsfield units: air
    around a soft-tissue body, two lungs, a spine, a small bright lesion."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    x = (x - size / 2 + 0.5) / (size / 2)
    y = (y - size / 2 + 0.5) / (size / 2)
    z = (k - slices / 2 + 0.5) / (slices / 2)

    def inside(cx: float, cy: float, cz: float, ax: float, ay: float, az: float) -> np.ndarray:
        mask: np.ndarray = ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + ((z - cz) / az) ** 2 <= 1
        return mask

    hu = np.full((size, size), -1000.0)
    hu[inside(0, 0, 0, 0.9, 0.65, 1.6)] = 40
    hu[inside(-0.4, -0.05, 0.1, 0.3, 0.4, 0.9)] = -820
    hu[inside(0.4, -0.05, 0.1, 0.3, 0.4, 0.9)] = -780
    hu[inside(0, 0.45, 0, 0.12, 0.12, 2.0)] = 700
    hu[inside(0.3, -0.2, 0.3, 0.08, 0.08, 0.2)] = 90
    hu += 12 * np.sin(7 * x + 3 * y + k)  # texture, so that no two slices compress alike
    return hu


def ct(
    slices: int = 24,
    size: int = 128,
    oblique: bool = True,
    signed: bool = False,
    slope: float = 1.0,
    window: tuple[list[float], list[float]] | None = ([40.0, 500.0], [400.0, 2000.0]),
    key: str = "ct",
) -> list[bytes]:
    """A CT-like series: ``slices`` slices of ``size`` x ``size`` pixels, 0.75 mm
    pixels, 2.5 mm apart along the slice normal (oblique: tilted 20 degrees
    about the patient's left-right axis), stored unsigned with intercept -1024
    or signed with intercept 0, scaled by ``slope``; ``window``: centres and
    widths (several values each: a viewer takes the first), or none."""
    tilt = math.radians(20 if oblique else 0)
    row = np.array([1.0, 0.0, 0.0])
    col = _unit(np.array([0.0, math.cos(tilt), -math.sin(tilt)]))
    normal = np.cross(row, col)
    spacing, step = 0.75, 2.5
    origin = np.array([-size * spacing / 2, -size * spacing / 2, -40.0])
    intercept = 0.0 if signed else -1024.0
    out = []
    for k in range(slices):
        ds = _base(CTImageStorage, key, k, "CT", f"Phantom {'oblique' if oblique else 'axial'}", 2)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.FrameOfReferenceUID = uid("derive", "for", key)
        pos = origin + k * step * normal
        ds.ImagePositionPatient = [round(float(v), 4) for v in pos]
        ds.ImageOrientationPatient = [round(float(v), 6) for v in (*row, *col)]
        ds.SliceLocation = round(float(pos @ normal), 4)
        ds.PixelSpacing = [spacing, spacing]
        ds.SliceThickness = step
        ds.KVP, ds.ConvolutionKernel = 120, "STANDARD"
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = intercept, slope, "HU"
        if window:
            ds.WindowCenter, ds.WindowWidth = window
        stored = np.round((phantom_hu(size, slices, k) - intercept) / slope)
        _grey(ds, stored, signed)
        out.append(_save(ds))
    return out


def mr_multiecho(slices: int = 12, size: int = 64, echoes: tuple[float, ...] = (10.0, 30.0, 60.0)) -> list[bytes]:
    """An MR-like multi-echo series: every slice position once per echo time
    (EchoTime and EchoNumbers differ), signal falling with T2 decay."""
    out = []
    row, col = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])  # sagittal
    normal = np.cross(row, col)
    n = 0
    for e, te in enumerate(echoes):
        for k in range(slices):
            ds = _base(MRImageStorage, "mr", n, "MR", "ME GRE", 3)
            ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
            ds.FrameOfReferenceUID = uid("derive", "for", "mr")
            pos = np.array([-30.0, -96.0, 96.0]) + k * 4.0 * normal
            ds.ImagePositionPatient = [round(float(v), 4) for v in pos]
            ds.ImageOrientationPatient = [*row, *col]
            ds.SliceLocation = round(float(pos @ normal), 4)
            ds.PixelSpacing, ds.SliceThickness, ds.SpacingBetweenSlices = [3.0, 3.0], 4.0, 4.0
            ds.EchoTime, ds.EchoNumbers, ds.EchoTrainLength = te, e + 1, len(echoes)
            ds.RepetitionTime, ds.FlipAngle, ds.MagneticFieldStrength = 800.0, 25.0, 3.0
            ds.ScanningSequence, ds.SequenceVariant, ds.MRAcquisitionType = "GR", "SP", "2D"
            ds.AcquisitionNumber = 1
            hu = phantom_hu(size, slices, k)
            t2 = np.where(hu > 0, 100.0, 40.0)  # longer T2 in the "soft tissue" than in the "lungs"
            density = np.clip((hu + 1000) / 1100, 0, 1)
            signal = 2000 * density * np.exp(-te / t2)
            _grey(ds, np.round(signal), signed=False)
            out.append(_save(ds))
            n += 1
    return out


def rgb_capture(ybr: bool = False, rows: int = 120, cols: int = 160) -> list[bytes]:
    """One colour secondary capture: a hue sweep with a dark disc (RGB, or
    YBR_FULL when ``ybr``)."""
    ds = _base(SecondaryCaptureImageStorage, "sc-ybr" if ybr else "sc", 0, "OT", "Screen capture", 4)
    ds.ConversionType = "WSD"
    y, x = np.mgrid[0:rows, 0:cols]
    rgb = np.stack([255 * x / (cols - 1), 255 * y / (rows - 1), 255 - 255 * x / (cols - 1)], axis=-1)
    rgb[(x - cols / 2) ** 2 + (y - rows / 2) ** 2 < (rows / 4) ** 2] = (20, 20, 20)
    pixels = np.round(rgb).astype(np.uint8)
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if ybr:
        pixels = convert_color_space(pixels, "RGB", "YBR_FULL")
    ds.PhotometricInterpretation = "YBR_FULL" if ybr else "RGB"
    ds.PixelData = pixels.tobytes()
    return [_save(ds)]


def multiframe_frame(k: int, rows: int = 96, cols: int = 96) -> np.ndarray:
    """Frame ``k`` of :func:`multiframe`: a disc whose size grows with ``k``."""
    y, x = np.mgrid[0:rows, 0:cols]
    disc = (x - cols / 2) ** 2 + (y - rows / 2) ** 2 < (4 + 4 * k) ** 2
    out: np.ndarray = (200 + 40 * k + 3000 * disc + 5 * x).astype(np.uint16)
    return out


def multiframe(frames: int = 7) -> list[bytes]:
    """One multi-frame grayscale object (frames differ: see :func:`multiframe_frame`)."""
    ds = _base(MultiFrameGrayscaleWordSecondaryCaptureImageStorage, "mf", 0, "OT", "Cine", 5)
    ds.ConversionType = "WSD"
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.FrameTime = 40.0
    _grey(ds, np.stack([multiframe_frame(k) for k in range(frames)]), signed=False)
    return [_save(ds)]


def monochrome1(rows: int = 200, cols: int = 150) -> list[bytes]:
    """One CR-like image stored MONOCHROME1 (high values are dark), with a
    window, unsigned 12 bits in 16."""
    ds = _base(ComputedRadiographyImageStorage, "cr", 0, "CR", "Chest PA", 6)
    ds.PhotometricInterpretation = "MONOCHROME1"
    y, x = np.mgrid[0:rows, 0:cols]
    body = ((x - cols / 2) / (cols * 0.4)) ** 2 + ((y - rows / 2) / (rows * 0.45)) ** 2 < 1
    pixels = 3500 - 2000 * body - 3 * y
    _grey(ds, pixels, signed=False)
    ds.BitsStored, ds.HighBit = 12, 11
    ds.WindowCenter, ds.WindowWidth = 2300, 3000
    return [_save(ds)]


def compressed(objects: list[bytes], ts: str) -> list[bytes]:
    """``objects`` re-encoded in the transfer syntax ``ts`` (same instances)."""
    return [compress(data, ts) for data in objects]


def localizer() -> list[bytes]:
    """A single CT localizer image (a scout): no volume to make."""
    ds = _base(CTImageStorage, "scout", 0, "CT", "Topogram", 1)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.FrameOfReferenceUID = uid("derive", "for", "scout")
    ds.ImagePositionPatient = [-250.0, 0.0, 200.0]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]
    ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 1.0
    ds.RescaleIntercept, ds.RescaleSlope = -1024.0, 1.0
    _grey(ds, phantom_hu(128, 1, 0) + 1024, signed=False)
    return [_save(ds)]


def structured_report() -> list[bytes]:
    """A Basic Text SR: no pixels at all."""
    ds = _base(BasicTextSRStorage, "sr", 0, "SR", "Report", 99)
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    title = Dataset()
    title.CodeValue, title.CodingSchemeDesignator, title.CodeMeaning = "11528-7", "LN", "Radiology Report"
    ds.ConceptNameCodeSequence = Sequence([title])
    item = Dataset()
    item.RelationshipType, item.ValueType, item.TextValue = "CONTAINS", "TEXT", "No findings (generated)."
    name = Dataset()
    name.CodeValue, name.CodingSchemeDesignator, name.CodeMeaning = "121071", "DCM", "Finding"
    item.ConceptNameCodeSequence = Sequence([name])
    ds.ContentSequence = Sequence([item])
    return [_save(ds)]
