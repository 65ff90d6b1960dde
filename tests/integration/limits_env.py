"""What the limits' integration tests share: an Orthanc holding large series
(made for these tests), its mount config behind a counting forwarder, and
the checks of a timeline against a rate (bounds from above only).

The slack every byte check allows, besides the documented burst: what the
forwarder has read from the PACS but trolleyfs has not charged yet, per
connection (:func:`buffered`): trolleyfs's socket receive buffer (it asks
for a tenth of a second of the rate; the kernel doubles that and may
overshoot it by one 64 KiB loopback segment), as much again read out of it
and being charged (trolleyfs reads up to 1 MiB at once: whatever the buffer
held), the forwarder's send buffer (set small here; doubled, plus a
segment) and the forwarder's read in hand (64 KiB)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.limits_check import worst_window
from trolleyfs.demo import sampledata
from trolleyfs.demo.orthanc import ORTHANC, Orthanc
from trolleyfs.demo.sampledata import SeriesSpec, StudySpec
from trolleyfs.limits.server import receive_buffer

MB = 1_000_000
FORWARDER_SNDBUF = 32 * 1024  # the forwarder's send buffer towards trolleyfs (the kernel doubles it)
READ = 64 * 1024  # what the forwarder reads at once
SEGMENT = 64 * 1024  # the largest segment on loopback: a socket buffer may hold one more than its size


def buffered(rate: float) -> int:
    """Bytes one connection may hold between the forwarder's count and trolleyfs's charge."""
    received = 2 * (receive_buffer(rate) or 0) + SEGMENT  # in trolleyfs's socket buffer
    return 2 * received + 2 * FORWARDER_SNDBUF + SEGMENT + READ


BIG = StudySpec(
    "LIMITS^TEST",
    "L001",
    "20250105",
    "CT limits",
    (
        SeriesSpec("CT", "Big A", 16, 512, 512),  # 16 x 524 kB
        SeriesSpec("CT", "Big B", 16, 512, 512),
        SeriesSpec("CT", "Small", 24, 64, 64),  # 24 x 9 kB
    ),
    "LIM1",
)
SERIES_A, SERIES_B, SMALL = "001 CT Big A", "002 CT Big B", "003 CT Small"


def need(binary: str) -> None:
    import os
    import shutil

    if not shutil.which(binary) and not os.path.exists(binary):
        pytest.fail(f"{binary} is not installed: run `make test`, which installs it")


def big_files() -> list[bytes]:
    return list(sampledata.generate([BIG]))


def start_big_pacs(workdir: Path, move_to: int | None = None) -> Iterator[Orthanc]:
    """An Orthanc holding the big study; ``move_to``: the port of its C-MOVE
    destination TROLLEYFS (on loopback)."""
    need(ORTHANC)
    modalities = {"trolleyfs": ("TROLLEYFS", "127.0.0.1", move_to)} if move_to else None
    server = Orthanc(workdir=str(workdir), modalities=modalities)
    try:
        server.start(timeout=120)
        server.upload(big_files())
        yield server
    finally:
        server.cleanup()


def config(url: str, limits: str, extra: str = "", cache: str = "") -> str:
    """A mount of the big study through ``url`` (QIDO-RS and WADO-RS) with ``limits``."""
    return f"""
[servers.pacs]
search   = {{ protocol = "qido-rs", url = "{url}/dicom-web" }}
retrieve = {{ protocol = "wado-rs", url = "{url}/dicom-web" }}
timeout = 30
limits = {{ {limits} }}
{extra}
[[folders]]
name = "lim"
query = {{ PatientID = "L001" }}
{cache}
"""


def study_dir(mount: Path) -> Path:
    (study,) = (mount / "lim").iterdir()
    return study


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_bytes_under(timeline: list[tuple[float, int]], rate: float, burst: float, connections: int) -> float:
    """Every window of the timeline holds at most ``rate x W + burst`` bytes,
    plus what ``connections`` connections may buffer; the worst excess over
    ``rate x W + burst`` (negative: under it), for the report."""
    slack = buffered(rate) * connections
    start, length, excess = worst_window(list(timeline), rate, burst)
    assert excess <= slack, (
        f"{excess / MB:.2f} MB over {rate / MB:g} MB/s x {length} s + a burst of {burst / MB:g} MB in the window "
        f"from {start:.3f} (slack for buffers: {slack / MB:g} MB)"
    )
    return excess


def assert_requests_under(times: list[float], rate: float, burst: float) -> float:
    """Every window holds at most ``rate x W + burst`` requests, plus one: a
    request granted at the end of one window may reach the forwarder in the next."""
    start, length, excess = worst_window([(t, 1.0) for t in times], rate, burst)
    assert excess <= 1, f"{excess:.0f} requests over {rate:g}/s x {length} s + {burst:g} in the window from {start:.3f}"
    return excess
