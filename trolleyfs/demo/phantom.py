"""Synthetic CT and MR slices for the demo: a body outline, lungs, heart,
spine, liver and kidneys (CT, in Hounsfield units) or a head (MR), on a real
slice geometry, with a little deterministic noise.  Generated here (numpy), no
patient data: the same arguments give the same pixels.

Not anatomy, but images that look like what a viewer, ``dcm2niix`` or a
thumbnail expects: a 512x512 slice of 16-bit values with the right rescale,
spacing and position, so that a series stacks into a volume."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

AIR, LUNG, FAT, SOFT, BLOOD, LIVER, KIDNEY, BONE = -1000, -820, -90, 40, 55, 60, 35, 700
LUNG_LEVELS = 24  # lung widths from the base of the chest to its top
NOISE_FIELDS = 16  # different noise fields, cycled through the slices


@dataclass(frozen=True)
class Geometry:
    """Where a series' slices lie: ``count`` axial slices of ``size`` x ``size``
    pixels of ``spacing`` mm, ``thickness`` mm apart, the first at ``top`` mm
    (patient z, head up), going down."""

    count: int
    size: int = 512
    spacing: float = 0.7
    thickness: float = 1.25
    top: float = 0.0

    def z(self, n: int) -> float:
        return self.top - n * self.thickness

    def origin(self, n: int) -> list[float]:
        """ImagePositionPatient of slice ``n``: its first pixel's centre."""
        half = self.size * self.spacing / 2
        return [-half + self.spacing / 2, -half + self.spacing / 2, round(self.z(n), 3)]


def _ellipse(
    x: NDArray[np.float64], y: NDArray[np.float64], cx: float, cy: float, rx: float, ry: float
) -> NDArray[np.bool_]:
    result: NDArray[np.bool_] = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0
    return result


@functools.lru_cache(maxsize=4)
def _grid(g: Geometry) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Pixel centres in mm from the slice's centre (x to the patient's left, y to the back)."""
    c = (np.arange(g.size) - (g.size - 1) / 2) * g.spacing
    y, x = np.meshgrid(c, c, indexing="ij")
    return x, y


@functools.lru_cache(maxsize=4)
def _trunk(g: Geometry, chest: bool) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """What does not change from slice to slice in a region: HU and the body mask."""
    x, y = _grid(g)
    hu = np.full(x.shape, AIR, dtype=np.float32)
    body_rx, body_ry = (165.0, 115.0) if chest else (160.0, 120.0)
    body = _ellipse(x, y, 0, 0, body_rx, body_ry)
    hu[body] = FAT
    hu[_ellipse(x, y, 0, 0, body_rx - 12, body_ry - 12)] = SOFT
    if chest:
        hu[_ellipse(x, y, 18, -25, 45, 38)] = BLOOD  # heart
        hu[_ellipse(x, y, -5, -10, 12, 12)] = BLOOD + 20  # aorta
    else:
        hu[_ellipse(x, y, -55, -20, 80, 60)] = LIVER
        for side in (-1, 1):
            hu[_ellipse(x, y, side * 65, 55, 22, 30)] = KIDNEY
        hu[_ellipse(x, y, 10, 30, 11, 11)] = BLOOD  # aorta
    hu[_ellipse(x, y, 0, 75, 18, 16)] = BONE  # vertebral body
    hu[_ellipse(x, y, 0, 98, 7, 9)] = BONE + 200  # spinous process
    hu[(y > body_ry + 12) & (y < body_ry + 20) & (np.abs(x) < 150)] = 200  # the table
    return hu, body


@functools.lru_cache(maxsize=64)
def _lungs(g: Geometry, level: int) -> NDArray[np.bool_]:
    """Both lungs at one of :data:`LUNG_LEVELS` widths."""
    x, y = _grid(g)
    depth = 0.2 + 0.8 * level / (LUNG_LEVELS - 1)
    mask = np.zeros(x.shape, dtype=bool)
    for side in (-1, 1):
        mask |= _ellipse(x, y, side * 68, -5, 55 * depth + 20, 80 * depth + 10)
    return mask


@functools.lru_cache(maxsize=4)
def _noise(size: int, seed: int) -> NDArray[np.float32]:
    """:data:`NOISE_FIELDS` fields of noise (12 HU), cycled through the slices."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((NOISE_FIELDS, size, size), dtype=np.float32) * 12


def ct_slice(g: Geometry, n: int, seed: int = 0) -> NDArray[np.uint16]:
    """Slice ``n`` of a CT of the trunk, as stored values (HU + 1024).  The
    chest (lungs, heart) lies above z = -250 mm, the abdomen (liver, kidneys) below."""
    z = g.z(n)
    chest = z > -250
    base, body = _trunk(g, chest)
    hu = base.copy()
    if chest:
        level = round(min(1.0, max(0.0, (z + 250) / 200)) * (LUNG_LEVELS - 1))  # wider towards the top
        hu[_lungs(g, level) & (base == SOFT)] = LUNG
    hu += _noise(g.size, seed)[n % NOISE_FIELDS] * body
    hu += 1024
    np.clip(hu, 0, 4095, out=hu)
    return hu.astype(np.uint16)


def mr_slice(g: Geometry, n: int, seed: int = 0) -> NDArray[np.uint16]:
    """Slice ``n`` of an MR of the head (arbitrary intensities, 12 bits)."""
    x, y = _grid(g)
    z = g.z(n)
    scale = max(0.3, 1 - abs(z + g.count * g.thickness / 2) / (g.count * g.thickness))
    img = np.zeros(x.shape, dtype=np.float64)
    img[_ellipse(x, y, 0, 0, 75 * scale, 95 * scale)] = 300  # scalp and skull
    img[_ellipse(x, y, 0, 0, 68 * scale, 88 * scale)] = 900  # brain
    for side in (-1, 1):
        img[_ellipse(x, y, side * 12 * scale, -5, 6 * scale, 22 * scale)] = 1800  # ventricles
    img += np.abs(_noise(g.size, seed)[n % NOISE_FIELDS]) * 2
    return np.clip(img, 0, 4095).astype(np.uint16)
