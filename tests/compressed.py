"""Generated studies stored compressed, for the views' tests and the
benchmark: one series per transfer syntax (RLE Lossless, JPEG 2000 lossless,
JPEG-LS lossless, JPEG lossless SV1, JPEG baseline), encoded by pydicom's
encoder plugins or GDCM from the uncompressed sample images."""

from __future__ import annotations

import io
import os
import tempfile
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from trolleyfs.demo import sampledata

SYNTAXES = {
    "RLE": RLELossless,
    "J2K": JPEG2000Lossless,
    "JLS": JPEGLSLossless,
    "JPEGLL": JPEGLosslessSV1,
    "JPEG8": JPEGBaseline8Bit,
}


def _gdcm(data: bytes, ts: str) -> bytes:
    """Encode with GDCM (pydicom has no JPEG encoder)."""
    import gdcm

    kinds: dict[str, Any] = {
        JPEGLosslessSV1: gdcm.TransferSyntax.JPEGLosslessProcess14_1,
        JPEGBaseline8Bit: gdcm.TransferSyntax.JPEGBaselineProcess1,
    }
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in.dcm"), os.path.join(d, "out.dcm")
        with open(src, "wb") as f:
            f.write(data)
        reader = gdcm.ImageReader()
        reader.SetFileName(src)
        assert reader.Read(), "GDCM cannot read the generated object"
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(kinds[ts]))
        change.SetInput(reader.GetImage())
        assert change.Change(), f"GDCM cannot encode {ts}"
        writer = gdcm.ImageWriter()
        writer.SetFileName(dst)
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        assert writer.Write()
        with open(dst, "rb") as f:
            return f.read()


def compress(data: bytes, ts: str) -> bytes:
    """A Part-10 object re-encoded in ``ts`` (same instance)."""
    if ts in (JPEGLosslessSV1, JPEGBaseline8Bit):
        return _gdcm(data, ts)
    ds = dcmread(io.BytesIO(data))
    ds.compress(ts)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def eight_bit(data: bytes) -> bytes:
    """The object with 8-bit pixels (for JPEG baseline)."""
    ds = dcmread(io.BytesIO(data))
    ds.PixelData = (ds.pixel_array >> 4).astype(np.uint8).tobytes()
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    for k in ("RescaleIntercept", "RescaleSlope", "WindowCenter", "WindowWidth"):
        if k in ds:
            delattr(ds, k)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def noisy(data: bytes, seed: int) -> bytes:
    """The object with noise added to its pixels, so that it compresses about
    as much as a real CT slice (2-3x lossless) rather than a smooth gradient."""
    ds = dcmread(io.BytesIO(data))
    rng = np.random.default_rng(seed)
    arr = ds.pixel_array.astype(np.int32) + rng.integers(0, 64, ds.pixel_array.shape)
    ds.PixelData = np.clip(arr, 0, 4095).astype(np.uint16).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def study(per_series: int = 3, size: int = 64, patient: str = "COMP^TEST", pid: str = "C001") -> sampledata.StudySpec:
    """A CT study with one series per transfer syntax in :data:`SYNTAXES` (in that order)."""
    series = tuple(sampledata.SeriesSpec("CT", name, per_series, size, size) for name in SYNTAXES)
    return sampledata.StudySpec(patient, pid, "20240301", "Compressed", series, "C1001")


def generate(spec: sampledata.StudySpec | None = None, noise: bool = False) -> list[bytes]:
    """The objects of ``spec`` (default: :func:`study`), each series in its
    syntax (named by its description); ``noise``: see :func:`noisy`."""
    spec = spec or study()
    out = []
    for series_idx, series in enumerate(spec.series):
        ts = SYNTAXES[series.description]
        for n in range(series.instances):
            data = sampledata.make_instance(spec, 0, series, series_idx, n)
            if noise:
                data = noisy(data, series_idx * 100_000 + n)
            out.append(compress(eight_bit(data) if ts == JPEGBaseline8Bit else data, ts))
    return out
