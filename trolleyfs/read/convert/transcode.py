"""Converting a Part-10 object to another transfer syntax, locally, with
pydicom and its decoder plugins: ``pylibjpeg-openjpeg`` (JPEG 2000),
``pyjpegls`` (JPEG-LS), ``pylibjpeg-rle`` or pydicom itself (RLE),
``python-gdcm`` (JPEG lossless, JPEG 12-bit) and Pillow (JPEG baseline).

A conversion decodes every frame and writes the whole object anew, in a
worker thread (at most :data:`CONVERT_THREADS` at once, so the event loop
keeps answering).  It returns the whole converted object or raises
:class:`ConversionError` (EIO) after a log line naming the object and both
syntaxes: an object is never served half-converted, nor silently left in its
stored syntax.  The SOP Instance UID is kept: a lossless re-encoding is the
same instance."""

from __future__ import annotations

import io
import logging
import os

import trio
from pydicom import dcmread
from pydicom.uid import UID

from ...errors import TrolleyError
from ...part10 import part10_sop_instance_uid, part10_transfer_syntax

log = logging.getLogger("trolleyfs.transcode")

CONVERT_THREADS = max(1, os.cpu_count() or 1)
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class ConversionError(TrolleyError):
    """An object could not be converted (unsupported syntax, corrupt frame)."""


def syntax_name(uid: str) -> str:
    """``JPEG 2000 Image Compression (Lossless Only) (1.2.840.10008.1.2.4.90)``."""
    name = UID(uid).name
    return f"{name} ({uid})" if name != uid else uid


def convert_bytes(data: bytes, target: str) -> bytes:
    """``data`` (a Part-10 object) in ``target``; ``data`` itself when it is in
    ``target`` already.  Raises whatever pydicom or a plugin raises."""
    source = part10_transfer_syntax(data)
    if source == target:
        return data
    ds = dcmread(io.BytesIO(data))
    want = UID(target)
    has_pixels = any(k in ds for k in PIXEL_KEYWORDS)
    if "PixelData" in ds and ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress(generate_instance_uid=False)  # to Explicit VR Little Endian; YBR becomes RGB
    elif "PixelData" in ds and not ds.original_encoding[1] and ds.BitsAllocated > 8:
        raise ValueError("big endian pixel data is not converted")
    if want.is_compressed:
        if not has_pixels:
            raise ValueError("the object has no pixel data to compress")
        ds.compress(want, generate_instance_uid=False)
    else:
        ds.file_meta.TransferSyntaxUID = want
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


class Converter:
    """Local conversions, in worker threads under one limiter."""

    def __init__(self, threads: int = CONVERT_THREADS) -> None:
        self._limiter = trio.CapacityLimiter(threads)
        self.converted = 0
        self.failed = 0

    async def convert(self, data: bytes, target: str, what: str) -> bytes:
        """``data`` in ``target``, checked; ConversionError if that cannot be done."""
        try:
            source = part10_transfer_syntax(data)
        except ValueError as exc:
            raise ConversionError(f"{what}: not a Part-10 object: {exc}") from None
        if source == target:
            return data
        try:
            out = await trio.to_thread.run_sync(convert_bytes, data, target, limiter=self._limiter)
            self._check(data, out, target)
        except Exception as exc:
            self.failed += 1
            log.warning(
                "%s: cannot convert from %s to %s: %s: %s",
                what,
                syntax_name(source),
                syntax_name(target),
                type(exc).__name__,
                exc,
            )
            raise ConversionError(
                f"{what}: cannot convert from {syntax_name(source)} to {syntax_name(target)}: {exc}"
            ) from None
        self.converted += 1
        return out

    @staticmethod
    def _check(before: bytes, after: bytes, target: str) -> None:
        if part10_transfer_syntax(after) != target:
            raise ValueError(f"the result is in {part10_transfer_syntax(after)}")
        if part10_sop_instance_uid(after) != part10_sop_instance_uid(before):
            raise ValueError("the result is another instance")

    def stats(self) -> dict[str, int]:
        return {"converted_locally": self.converted, "conversions_failed": self.failed}
