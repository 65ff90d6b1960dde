"""Local conversion between transfer syntaxes (pydicom and its plugins, no
server): every stored syntax the tests generate into every target, pixel for
pixel; an object that cannot be converted fails with a one-line error naming
it and both syntaxes, and is never returned half-converted."""

from __future__ import annotations

import errno
import io
import logging

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG2MPML, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless

from tests import compressed
from trolleyfs.part10 import part10_sop_instance_uid, part10_transfer_syntax
from trolleyfs.read.convert.transcode import ConversionError, Converter, convert_bytes
from trolleyfs.syntaxes import TARGETS


@pytest.fixture(scope="module")
def stored() -> dict[str, bytes]:
    """One object per stored syntax (compressed ones and the two uncompressed)."""
    spec = compressed.study(per_series=1, size=32)
    out = {part10_transfer_syntax(f): f for f in compressed.generate(spec)}
    plain = next(iter(out.values()))
    ds = dcmread(io.BytesIO(plain))
    ds.decompress()
    for ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = ts
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out[ts] = buf.getvalue()
    return out


def pixels(data: bytes) -> np.ndarray:
    return dcmread(io.BytesIO(data)).pixel_array


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_stored_syntax_converts_to_every_target_pixel_for_pixel(stored: dict[str, bytes], target: str) -> None:
    assert len(stored) == 7
    for source, data in stored.items():
        out = convert_bytes(data, target)
        assert part10_transfer_syntax(out) == target, (source, target)
        assert part10_sop_instance_uid(out) == part10_sop_instance_uid(data)
        assert np.array_equal(pixels(out), pixels(data)), (source, target)
        if source == target:
            assert out is data  # already there: the very bytes, not a rewrite


async def test_a_corrupt_frame_fails_with_a_line_naming_the_object_and_both_syntaxes(
    stored: dict[str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    ds = dcmread(io.BytesIO(stored[JPEG2000Lossless]))
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 200])  # a J2K start, then nothing sane
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    conv = Converter(threads=1)
    with caplog.at_level(logging.WARNING, logger="trolleyfs.transcode"), pytest.raises(ConversionError) as err:
        await conv.convert(buf.getvalue(), ExplicitVRLittleEndian, "pacs: instance 1.2.3")
    assert err.value.errno == errno.EIO
    for text in (str(err.value), caplog.text):
        assert "instance 1.2.3" in text and "JPEG 2000" in text and "Explicit VR Little Endian" in text
    assert conv.stats() == {"converted_locally": 0, "conversions_failed": 1}


async def test_a_syntax_without_a_decoder_fails(stored: dict[str, bytes]) -> None:
    ds = dcmread(io.BytesIO(stored[JPEG2000Lossless]))
    ds.file_meta.TransferSyntaxUID = MPEG2MPML  # video: nothing here decodes it
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    with pytest.raises(ConversionError, match="MPEG2"):
        await Converter().convert(buf.getvalue(), ExplicitVRLittleEndian, "instance 1.2.3")


async def test_what_is_not_a_part10_object_fails() -> None:
    with pytest.raises(ConversionError, match="not a Part-10 object"):
        await Converter().convert(b"<html>busy</html>", ExplicitVRLittleEndian, "instance 1.2.3")


async def test_the_converter_counts_and_passes_through_what_is_already_in_the_target(stored: dict[str, bytes]) -> None:
    conv = Converter()
    same = stored[ExplicitVRLittleEndian]
    assert await conv.convert(same, ExplicitVRLittleEndian, "x") is same
    out = await conv.convert(stored[JPEG2000Lossless], ExplicitVRLittleEndian, "x")
    assert part10_transfer_syntax(out) == ExplicitVRLittleEndian
    assert conv.stats() == {"converted_locally": 1, "conversions_failed": 0}
