"""`make bench` rows for the NIfTI view (issue 22): reading a series' NIfTI
through a mount, against running ``dcm2niix`` on a local copy of the same
files, side by side in the same run.

The series: a CT of 512x512 slices with real geometry (tests/series.py), in
an Orthanc on loopback.  Rows:

- (13a) ``dcm2niix -z y -b y -ba y -c ""`` on a local copy (tmpfs), as a
  user runs it: the baseline;
- (13b) cold: a fresh mount reads the ``.nii.gz`` (the series fetched from
  the PACS, then converted);
- (13c) the series already in the mount's cache (read once with ``cp -r``):
  the conversion alone, what (13a) does;
- (13d) warm: the same mount reads it again (the derived-objects cache);
- (13e) after a remount with a disk cache: read from the disk cache.

Run alone: ``.venv/bin/python -m bench.nifti [--slices N] [--repeat N]``."""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.mount import mounted
from tests import series
from trolleyfs.demo.orthanc import Orthanc
from trolleyfs.derive.nifti import find_dcm2niix

Row = tuple[str, float, float | None, str]
STUDY = "2024-05-01 TEST DERIVE Derived views"


def _config(orthanc: Orthanc, cache: str = "") -> str:
    return f"""
[servers.bench]
search   = {{ protocol = "qido-rs", url = "{orthanc.dicomweb}" }}
retrieve = {{ protocol = "wado-rs", url = "{orthanc.dicomweb}" }}
timeout = 60

[[folders]]
name = "nifti"
query = {{ PatientID = "D001" }}
views = ["nifti"]

[cache]
memory_mb = 1024
{cache}
"""


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def _read(paths: list[Path]) -> float:
    t0 = time.perf_counter()
    for p in paths:
        p.read_bytes()
    return time.perf_counter() - t0


def rows(orthanc: Orthanc, mount_tmp: Path, dest: Path, repeat: int, slices: int = 200) -> list[Row]:
    """Upload the series, then measure; returns the table rows."""
    print(f"generating a {slices}-slice CT of 512x512 for the NIfTI rows ...", flush=True)
    files = series.ct(slices=slices, size=512, key="bench-nifti")
    orthanc.upload(files)
    mb = sum(len(f) for f in files) / 1e6
    binary = find_dcm2niix()
    assert binary is not None, "dcm2niix is a dependency of trolleyfs"
    times: dict[str, list[float]] = {k: [] for k in ("local", "cold", "cached", "warm", "remount")}
    disk = mount_tmp / "nifti-disk"
    name = "002 CT Phantom oblique"
    out_mb = 0.0
    for i in range(repeat):
        shutil.rmtree(disk, ignore_errors=True)
        local = dest / f"nifti-local-{i}"
        # cold: a fresh mount; looking into the .nifti directory converts, so the lookup is timed too
        with mounted(_config(orthanc, f'disk_dir = "{disk}"\ndisk_mb = 4096'), mount_tmp, name=f"nd{i}") as m:
            volume_dir = m.path / "views" / "nifti" / STUDY / f"{name}.nifti"
            t0 = time.perf_counter()
            volumes = sorted(volume_dir.glob("*.nii.gz"))
            _read(volumes)
            times["cold"].append(time.perf_counter() - t0)
            times["warm"].append(_read(volumes))
            out_mb = sum(p.stat().st_size for p in volumes) / 1e6
            subprocess.run(["cp", "-r", str(m.path / "nifti" / STUDY / name), str(local)], check=True)
        with mounted(_config(orthanc, f'disk_dir = "{disk}"\ndisk_mb = 4096'), mount_tmp, name=f"nr{i}") as m:
            volume_dir = m.path / "views" / "nifti" / STUDY / f"{name}.nifti"
            t0 = time.perf_counter()
            _read(sorted(volume_dir.glob("*.nii.gz")))
            times["remount"].append(time.perf_counter() - t0)
            assert m.stats()["views"]["nifti"]["conversions"] == 0, "the disk cache should serve the volume"
        with mounted(_config(orthanc), mount_tmp, name=f"nw{i}") as m:
            subprocess.run(["cp", "-r", str(m.path / "nifti" / STUDY / name), str(dest / f"nifti-cp-{i}")], check=True)
            fetched = m.stats()["instances_fetched"]
            volume_dir = m.path / "views" / "nifti" / STUDY / f"{name}.nifti"
            t0 = time.perf_counter()
            _read(sorted(volume_dir.glob("*.nii.gz")))
            times["cached"].append(time.perf_counter() - t0)
            assert m.stats()["instances_fetched"] == fetched, (fetched, m.stats()["instances_fetched"])
        out = dest / f"nifti-out-{i}"
        out.mkdir()
        times["local"].append(_timed([binary, "-z", "y", "-b", "y", "-ba", "y", "-c", "", "-o", str(out), str(local)]))
        for p in (local, out, dest / f"nifti-cp-{i}"):
            shutil.rmtree(p, ignore_errors=True)
    for k, v in times.items():
        print(f"  (13) {k}: {', '.join(f'{t:.3f}' for t in v)} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    what = f"{slices} x 512x512 CT, {mb:.0f} MB in, {out_mb:.0f} MB .nii.gz out"
    return [
        ("(13a) dcm2niix -z y on a local copy of a CT series", med["local"], mb, what),
        ("(13b) its NIfTI view, cold: fresh mount, series fetched + converted", med["cold"], mb, ""),
        ("(13c) its NIfTI view, the series in the mount's cache: conversion", med["cached"], mb, "~ (13a)"),
        ("(13d) its NIfTI view, warm: read again, same mount", med["warm"], mb, ""),
        ("(13e) its NIfTI view after a remount, from the disk cache", med["remount"], mb, ""),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--slices", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="trolleyfs-bench-nifti-"))
    dest = Path(tempfile.mkdtemp(prefix="trolleyfs-bench-nifti-", dir="/dev/shm"))
    try:
        with Orthanc(workdir=str(work / "orthanc")) as orthanc:
            (work / "mounts").mkdir()
            results = rows(orthanc, work / "mounts", dest, args.repeat, args.slices)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(dest, ignore_errors=True)
    for label, seconds, mb, target in results:
        rate = f"{mb / seconds:7.0f} MB/s" if mb else ""
        print(f"| {label:<90} | {seconds:8.3f} s | {rate} | {target} |")


if __name__ == "__main__":
    main()
