"""One frame of a DICOM image as values to display, with what the object
says about showing them.

:func:`middle_frame` decodes only the middle frame of an object (its only
one for a single-frame image) with pydicom's pixel decoders (the plugins the
project installs: pylibjpeg-openjpeg, pyjpegls, pylibjpeg-rle, python-gdcm,
Pillow), so a compressed multi-frame object costs one frame's decode.  Grey
images come back as modality values (Rescale Slope/Intercept or a Modality
LUT applied: Hounsfield units for CT) with their first Window Center/Width
and VOI LUT Function; colour images as 8-bit RGB (YBR converted by pydicom,
PALETTE COLOR through its lookup table).  Values of enhanced multi-frame
objects are looked up in the frame's functional groups, then the shared ones,
then the top level.  Blocking and pure: call it in a worker thread."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut
from pydicom.pixels.utils import pixel_array

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class NoImage(ValueError):
    """The object holds no image to show (an SR, a presentation state...)."""


@dataclass(frozen=True)
class Frame:
    """``pixels``: rows x columns modality values (float64) for a grey image,
    rows x columns x 3 ``uint8`` RGB for a colour one; ``window``: (centre,
    width, VOI LUT Function) or None; ``invert``: MONOCHROME1 (high values
    dark); ``spacing``: (between rows, between columns) in any one unit, or
    None when the object says nothing about its pixels' shape."""

    pixels: np.ndarray
    colour: bool
    window: tuple[float, float, str] | None
    invert: bool
    spacing: tuple[float, float] | None


def _first(value: Any) -> float | None:
    """The first of a possibly multi-valued number; None when absent or not a number."""
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def _item(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    """The first item of functional group ``sequence`` for frame ``index``
    (per-frame groups first, then shared), or None."""
    places: list[Dataset] = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and index < len(per_frame):
        places.append(per_frame[index])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        places.append(shared[0])
    for group in places:
        seq = group.get(sequence)
        if seq:
            item: Dataset = seq[0]
            return item
    return None


def _lookup(ds: Dataset, index: int, sequence: str, keyword: str) -> Any:
    """``keyword`` from frame ``index``'s functional group ``sequence``, else the top level."""
    item = _item(ds, index, sequence)
    if item is not None and keyword in item:
        return item[keyword].value
    return ds.get(keyword)


def _window(ds: Dataset, index: int) -> tuple[float, float, str] | None:
    centre = _first(_lookup(ds, index, "FrameVOILUTSequence", "WindowCenter"))
    width = _first(_lookup(ds, index, "FrameVOILUTSequence", "WindowWidth"))
    if centre is None or width is None or not np.isfinite(centre) or not width > 0:
        return None
    function = _lookup(ds, index, "FrameVOILUTSequence", "VOILUTFunction") or "LINEAR"
    return centre, width, str(function).strip().upper()


def _spacing(ds: Dataset, index: int) -> tuple[float, float] | None:
    for value in (
        _lookup(ds, index, "PixelMeasuresSequence", "PixelSpacing"),
        ds.get("ImagerPixelSpacing"),
        ds.get("PixelAspectRatio"),
    ):
        try:
            row, col = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if row > 0 and col > 0 and np.isfinite(row) and np.isfinite(col):
            return row, col
    return None


def _to_uint8(arr: np.ndarray, bits: int) -> np.ndarray:
    """Colour samples of ``bits`` bits as 8-bit."""
    if arr.dtype == np.uint8:
        return arr
    shift = max(0, bits - 8)
    out: np.ndarray = np.clip(arr.astype(np.int64) >> shift, 0, 255).astype(np.uint8)
    return out


def _modality(arr: np.ndarray, ds: Dataset, index: int) -> np.ndarray:
    """Stored values -> modality values (float64)."""
    if "ModalityLUTSequence" in ds:
        out: np.ndarray = apply_modality_lut(arr, ds).astype(np.float64)
        return out
    slope = _first(_lookup(ds, index, "PixelValueTransformationSequence", "RescaleSlope"))
    intercept = _first(_lookup(ds, index, "PixelValueTransformationSequence", "RescaleIntercept"))
    values: np.ndarray = arr.astype(np.float64)
    if slope is not None and slope != 0:
        values = values * slope
    if intercept is not None:
        values = values + intercept
    return values


def frame_count(ds: Dataset) -> int:
    """Number of Frames, 1 when absent or nonsense."""
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def middle_frame(data: bytes) -> Frame:
    """The middle frame of the Part-10 object ``data`` (see the module's
    docstring).  Raises NoImage when it has no pixel data; whatever pydicom or
    a decoder raises when the pixels cannot be decoded."""
    ds = dcmread(io.BytesIO(data))
    if not any(k in ds for k in PIXEL_KEYWORDS):
        raise NoImage(f"no pixel data in a {ds.get('Modality', '?')} object of SOP class {ds.get('SOPClassUID', '?')}")
    index = (frame_count(ds) - 1) // 2
    arr = pixel_array(ds, index=index)  # YBR becomes RGB (pydicom's default as_rgb)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8)
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        bits = 16 if rgb.dtype.itemsize > 1 else 8
        return Frame(_to_uint8(rgb, bits), True, None, False, _spacing(ds, index))
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        return Frame(_to_uint8(arr[..., :3], bits), True, None, False, _spacing(ds, index))
    if arr.ndim != 2:
        raise NoImage(f"a frame of shape {arr.shape} is not an image")
    return Frame(
        _modality(arr, ds, index),
        False,
        _window(ds, index),
        photometric == "MONOCHROME1",
        _spacing(ds, index),
    )
