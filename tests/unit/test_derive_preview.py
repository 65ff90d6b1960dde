"""Previews of a series (trolleyfs.derive.preview): PNGs judged by Pillow,
the window judged against pydicom's own VOI LUT code, colour against the
generated pixels, compressed objects against their uncompressed twins."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels.processing import apply_modality_lut, apply_windowing
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, JPEGLosslessSV1, JPEGLSLossless, RLELossless

from tests import series
from tests.compressed import compress, eight_bit
from trolleyfs.derive.counters import DeriveCounters
from trolleyfs.derive.preview import MAX_SIDE, Previewer, preview_instances, render_preview, size_for, window

SMALL = 200 * 1024  # "well under a few hundred KB"


def _png(objects: list[bytes]) -> bytes:
    result = render_preview(objects)
    assert result.png is not None, result.message
    return result.png


def _pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        return np.asarray(image)


def _middle(objects: list[bytes]) -> bytes:
    return objects[(len(objects) - 1) // 2]


def _rewrite(data: bytes, **changes: object) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _checked(png: bytes, mode: str) -> np.ndarray:
    """The common promises: a PNG in ``mode``, small, not blank, no text chunks."""
    assert len(png) < SMALL
    with Image.open(io.BytesIO(png)) as image:
        assert image.mode == mode
        assert max(image.size) <= MAX_SIDE
        assert image.info == {}  # no tEXt/zTXt/iTXt/tIME chunks, no gamma or dpi
    pixels = _pixels(png)
    assert pixels.std() > 10
    return pixels


def test_the_middle_instance_by_instance_number_then_its_neighbours() -> None:
    listed = [("a", 5), ("b", 1), ("c", 3), ("d", 2), ("e", 4)]
    assert preview_instances(listed) == ["c"]
    assert preview_instances(listed, count=3) == ["c", "e", "d"]
    assert preview_instances(listed, count=9) == ["c", "e", "d", "a", "b"]
    # without numbers: listing order, after the numbered ones
    assert preview_instances([("x", None), ("y", None), ("z", None), ("w", None)]) == ["y"]
    assert preview_instances([("x", None), ("n", 7)], count=2) == ["n", "x"]
    assert preview_instances([]) == []


def test_linear_window_follows_the_standard() -> None:
    c, w = 40.0, 400.0
    values = np.array([c - 0.5 - (w - 1) / 2 - 1, c - 0.5, c - 0.5 + (w - 1) / 2 + 1])
    assert window(values, c, w).tolist() == [0.0, 0.5, 1.0]
    assert window(np.array([c]), c, w, "LINEAR_EXACT").tolist() == [0.5]
    assert window(np.array([c]), c, w, "SIGMOID").tolist() == [0.5]


def test_a_ct_preview_is_windowed_as_pydicom_windows_it() -> None:
    """The PNG's grey values equal pydicom's apply_windowing over the modality
    values, scaled to 0..255 (to within 1 for rounding)."""
    data = _middle(series.ct())
    png = _png([data])
    pixels = _checked(png, "L")
    ds = pydicom.dcmread(io.BytesIO(data))
    hu = apply_modality_lut(ds.pixel_array, ds)
    shown = apply_windowing(hu, ds)  # first window; output range: the modality range of the stored bits
    low, high = 0 * ds.RescaleSlope + ds.RescaleIntercept, 65535 * ds.RescaleSlope + ds.RescaleIntercept
    expected = np.round((shown - low) / (high - low) * 255)
    assert pixels.shape == expected.shape  # 128 x 128 square pixels: not resized
    assert np.abs(pixels.astype(int) - expected).max() <= 1


def test_the_window_changes_what_the_ct_preview_shows() -> None:
    """A soft-tissue window (40/400) shows tissue (40 HU) mid-grey and the lungs
    (-800 HU) black; a lung window (-600/1500) shows the lungs dark grey and
    tissue nearly white; only the first of several values counts."""
    soft = _pixels(_png([_middle(series.ct(window=([40.0], [400.0]), key="w1"))]))
    lungs = _pixels(_png([_middle(series.ct(window=([-600.0], [1500.0]), key="w2"))]))
    both = _pixels(_png([_middle(series.ct(window=([40.0, -600.0], [400.0, 1500.0]), key="w3"))]))
    assert np.array_equal(soft, both)
    hu = series.phantom_hu(128, 24, 11)
    tissue, lung = (abs(hu - 40) < 15), (hu < -700) & (hu > -900)
    assert abs(soft[tissue].mean() - 128) < 10 and abs(lungs[tissue].mean() - 237) < 10
    assert soft[lung].max() == 0 and abs(lungs[lung].mean() - 93) < 10
    assert lungs.mean() > soft.mean() + 40


def test_without_a_window_the_values_range_is_shown() -> None:
    pixels = _checked(_png([_middle(series.ct(window=None, key="nw"))]), "L")
    assert pixels.min() == 0 and pixels.max() == 255
    assert (pixels == 0).mean() < 0.5 and (pixels == 255).mean() < 0.5  # percentiles, not a threshold


@pytest.mark.parametrize("signed", [False, True])
def test_signed_and_unsigned_storage_give_the_same_picture(signed: bool) -> None:
    """The same Hounsfield units stored unsigned (intercept -1024) or signed (intercept 0)."""
    unsigned = _pixels(_png([_middle(series.ct(key="u"))]))
    other = _pixels(_png([_middle(series.ct(signed=signed, key="s"))]))
    assert np.array_equal(unsigned, other)


def test_the_same_objects_give_the_same_bytes() -> None:
    objects = series.ct()
    assert _png([_middle(objects)]) == _png([_middle(series.ct())])


def test_a_big_image_is_scaled_down_and_stays_small() -> None:
    data = series.ct(slices=1, size=512, key="big")[0]
    pixels = _checked(_png([data]), "L")
    assert pixels.shape == (MAX_SIDE, MAX_SIDE)


def test_pixels_are_shown_square() -> None:
    """Rows 2 mm apart, columns 1 mm: a 100 x 200 image is as tall as it is wide."""
    data = _rewrite(series.monochrome1(rows=100, cols=200)[0], PixelSpacing=[2.0, 1.0])
    pixels = _pixels(_png([data]))
    assert pixels.shape == (200, 200)
    assert size_for(1000, 500, (0.5, 1.0)) == (256, 256)
    assert size_for(512, 256, None) == (128, 256)


def test_rgb_is_shown_as_it_is() -> None:
    data = series.rgb_capture()[0]
    pixels = _checked(_png([data]), "RGB")
    assert np.array_equal(pixels, pydicom.dcmread(io.BytesIO(data)).pixel_array)


def test_ybr_is_converted_to_rgb() -> None:
    rgb = _pixels(_png(series.rgb_capture()))
    ybr = _checked(_png(series.rgb_capture(ybr=True)), "RGB")
    assert np.abs(rgb.astype(int) - ybr).max() <= 3  # YBR_FULL round trip in 8 bits


def test_monochrome1_is_inverted() -> None:
    data = series.monochrome1()[0]
    inverted = _checked(_png([data]), "L")
    plain = _pixels(_png([_rewrite(data, PhotometricInterpretation="MONOCHROME2")]))
    assert np.abs(inverted.astype(int) + plain - 255).max() <= 1
    hu = pydicom.dcmread(io.BytesIO(data)).pixel_array
    body = hu < 2000  # low stored values: the body, bright in MONOCHROME1
    assert inverted[body].mean() > inverted[~body].mean() + 50


def test_a_multiframe_object_shows_its_middle_frame() -> None:
    """Frame k holds a disc of radius 4 + 4k: the preview's disc is frame 3's of 7."""
    pixels = _checked(_png(series.multiframe(frames=7)), "L")
    bright = int((pixels > 200).sum())
    areas = {k: np.pi * (4 + 4 * k) ** 2 for k in range(7)}
    assert min(areas, key=lambda k: abs(areas[k] - bright)) == 3
    assert abs(bright - areas[3]) < 60


@pytest.mark.parametrize("ts", [RLELossless, JPEG2000Lossless, JPEGLSLossless, JPEGLosslessSV1])
def test_losslessly_compressed_objects_give_the_same_preview(ts: str) -> None:
    plain = series.ct(slices=3, key="c")
    assert _png([compress(plain[1], ts)]) == _png([plain[1]])
    frames = series.multiframe()
    assert _png(series.compressed(frames, ts)) == _png(frames)


def test_a_jpeg_baseline_object_gives_a_preview() -> None:
    data = compress(eight_bit(_middle(series.ct(window=None, key="j8"))), JPEGBaseline8Bit)
    _checked(_png([data]), "L")


def test_an_object_without_pixels_gives_nothing_and_says_why() -> None:
    result = render_preview(series.structured_report())
    assert result.png is None
    assert result.message is not None and "no pixel data" in result.message and "\n" not in result.message


def test_a_spare_is_used_when_the_first_object_has_no_image() -> None:
    ct = _middle(series.ct())
    assert _png([series.structured_report()[0], ct]) == _png([ct])


def test_an_undecodable_image_gives_nothing_and_one_line() -> None:
    data = _rewrite(_middle(series.ct(slices=3, key="bad")), PixelData=b"\x00" * 10)
    result = render_preview([data])
    assert result.png is None
    assert result.message is not None and result.message.startswith("cannot decode") and "\n" not in result.message


async def test_the_previewer_renders_in_a_thread_and_counts() -> None:
    counters = DeriveCounters()
    previewer = Previewer(concurrency=2, counters=counters)
    made = await previewer.render([_middle(series.ct())])
    assert made.png == _png([_middle(series.ct())])
    assert (await previewer.render(series.structured_report())).png is None
    assert counters.conversions == 1 and counters.failures == 1 and counters.bytes_out == len(made.png)
