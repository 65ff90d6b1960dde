"""A small PNG preview of a series: its middle image, windowed as the series
says.

Why the middle slice and not a montage: it needs one instance (one fetch
from the PACS, one decode) where a montage needs several, and at 256 pixels
on the long side a montage's tiles would be too small to tell anything by;
the middle of a stack sorted by Instance Number is the slice most likely to
show the anatomy.  For a multi-frame object the middle frame.

- :func:`preview_instances` says which instances to fetch: the middle one by
  Instance Number (then listing order), then its neighbours as spares, best
  first.  The caller fetches those (through the caches) and passes their
  bytes, in that order, to :func:`render_preview`, which uses the first one
  that holds a decodable image.
- Grey images: modality values (Rescale Slope/Intercept applied) through the
  first Window Center/Width (VOI LUT Function LINEAR, LINEAR_EXACT or
  SIGMOID, PS3.3 C.11.2.1.2); without a window, the 0.5th to 99.5th
  percentile of the frame's values.  MONOCHROME1 is inverted.  Colour: RGB
  (YBR converted, PALETTE COLOR looked up).
- Shown with square physical pixels (Pixel Spacing, Imager Pixel Spacing or
  Pixel Aspect Ratio), scaled down (never up) to :data:`MAX_SIDE` pixels on
  the long side, 8-bit grey or RGB, PNG with no text or time chunks: the same
  objects give the same bytes on every run (for one Pillow build).
- :func:`render_preview` is pure and blocking (run it in a worker thread);
  :class:`Previewer` does that for async callers, bounded, and counts;
  :meth:`Previewer.render_first` fetches the candidates one at a time and
  stops at the first that gives an image (so a preview costs one instance
  unless the middle one holds none).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import PIL
import trio
from PIL import Image

from .counters import DeriveCounters
from .frames import Frame, NoImage, middle_frame

FORM_VERSION = 1  # raise when a change here changes the bytes made
MAX_SIDE = 256
PERCENTILES = (0.5, 99.5)
PNG_LEVEL = 9


@dataclass(frozen=True)
class Preview:
    """``png``: the image, or None when no object gave one; then ``message``
    says why in one line (for the caller to log)."""

    png: bytes | None
    message: str | None = None


def preview_instances(instances: Sequence[tuple[str, int | None]], count: int = 1) -> list[str]:
    """The SOP Instance UIDs to fetch for a preview, best first: ``instances``
    are (UID, Instance Number or None) in listing order; the middle one by
    Instance Number, then listing order, and with ``count`` > 1 its nearest
    neighbours (as spares when the middle one holds no image)."""
    ordered = sorted(range(len(instances)), key=lambda i: (instances[i][1] is None, instances[i][1] or 0, i))
    if not ordered:
        return []
    middle = (len(ordered) - 1) // 2
    picks: list[int] = [middle]
    step = 1
    while len(picks) < min(count, len(ordered)):
        for candidate in (middle + step, middle - step):
            if 0 <= candidate < len(ordered) and len(picks) < count:
                picks.append(candidate)
        step += 1
    return [instances[ordered[p]][0] for p in picks]


def window(values: np.ndarray, centre: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """Modality values -> display values 0..1 (PS3.3 C.11.2.1.2.1)."""
    if function == "SIGMOID":
        out: np.ndarray = 1.0 / (1.0 + np.exp(-4.0 * (values - centre) / width))
        return out
    if function == "LINEAR_EXACT":
        return np.clip((values - centre) / width + 0.5, 0.0, 1.0)
    if width <= 1:  # LINEAR needs width >= 1; a width of 1 is a threshold at the centre
        return (values > centre - 0.5).astype(np.float64)
    return np.clip((values - (centre - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def display(frame: Frame) -> np.ndarray:
    """The frame as 8-bit grey (rows x columns) or RGB (rows x columns x 3)."""
    if frame.colour:
        return frame.pixels
    values = frame.pixels
    finite = values[np.isfinite(values)]
    if frame.window is not None:
        shown = window(values, *frame.window)
    elif finite.size:
        low, high = (float(v) for v in np.percentile(finite, PERCENTILES))
        if high <= low:
            low, high = float(finite.min()), float(finite.max())
        shown = np.clip((values - low) / (high - low), 0.0, 1.0) if high > low else np.zeros_like(values)
    else:
        shown = np.zeros_like(values)
    shown = np.nan_to_num(shown, nan=0.0)
    if frame.invert:
        shown = 1.0 - shown
    out: np.ndarray = np.round(shown * 255).astype(np.uint8)
    return out


def size_for(rows: int, cols: int, spacing: tuple[float, float] | None, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """(width, height) of the preview: square physical pixels, the long side
    ``max_side`` at most and never longer than the image's own long side."""
    height, width = float(rows), float(cols)
    if spacing is not None:
        height, width = rows * spacing[0], cols * spacing[1]
    scale = min(max_side, max(rows, cols)) / max(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def encode_png(pixels: np.ndarray, spacing: tuple[float, float] | None, max_side: int = MAX_SIDE) -> bytes:
    """8-bit grey or RGB pixels as a PNG, resized (see :func:`size_for`)."""
    image = Image.fromarray(np.ascontiguousarray(pixels))  # uint8: "L" for 2-D, "RGB" for 3 samples
    size = size_for(pixels.shape[0], pixels.shape[1], spacing, max_side)
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=PNG_LEVEL, optimize=False)
    return out.getvalue()


def render_preview(objects: Sequence[bytes], max_side: int = MAX_SIDE) -> Preview:
    """The preview of a series from ``objects`` (Part-10 bytes, best first:
    see :func:`preview_instances`): the first that holds a decodable image.
    Never raises for what is in the objects; the message names the last
    problem when none gave an image."""
    message = "no objects"
    for data in objects:
        try:
            frame = middle_frame(data)
            return Preview(encode_png(display(frame), frame.spacing, max_side))
        except NoImage as exc:
            message = str(exc)
        except Exception as exc:  # a decoder's error on data from outside: one line, no traceback
            message = f"cannot decode the image: {type(exc).__name__}: {exc}".splitlines()[0][:300]
    return Preview(None, message)


class Previewer:
    """:func:`render_preview` for async callers: in a worker thread, at most
    ``concurrency`` at once, counted in ``counters``."""

    def __init__(self, concurrency: int = 1, counters: DeriveCounters | None = None, max_side: int = MAX_SIDE) -> None:
        self.counters = counters if counters is not None else DeriveCounters()
        self.max_side = max_side
        self._limiter = trio.CapacityLimiter(max(1, concurrency))

    async def render(self, objects: Sequence[bytes]) -> Preview:
        """The preview of ``objects`` (see :func:`render_preview`)."""
        async with self._limiter:
            started = trio.current_time()
            result = await trio.to_thread.run_sync(render_preview, list(objects), self.max_side)
            made = len(result.png) if result.png is not None else None
            self.counters.record(made, trio.current_time() - started)
        return result

    def form(self) -> str:
        """A name for what this previewer makes, for the key under which the
        caller caches it: it changes with anything that changes the bytes
        (this module's rendering, the size, Pillow's and zlib's versions)."""
        return f"preview:v{FORM_VERSION}:s{self.max_side}:pil-{PIL.__version__}:zlib-{zlib.ZLIB_RUNTIME_VERSION}"

    async def render_first(
        self,
        candidates: Sequence[Callable[[], Awaitable[bytes]]],
        busy: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> Preview:
        """The preview of the first of ``candidates`` (fetches of objects,
        best first: see :func:`preview_instances`) that gives an image; each
        is fetched only when the ones before it gave none.  Counted once.
        Whatever a fetch raises is raised.  ``busy()`` is entered around
        the waits for a renderer and the renders (the caller's readers hear
        that work goes on)."""
        message, seconds = "no objects", 0.0
        for fetch in candidates:
            data = await fetch()
            with busy():
                async with self._limiter:
                    started = trio.current_time()
                    result = await trio.to_thread.run_sync(render_preview, [data], self.max_side)
                    seconds += trio.current_time() - started
            if result.png is not None:
                self.counters.record(len(result.png), seconds)
                return result
            message = result.message or message
        self.counters.record(None, seconds)
        return Preview(None, message)
