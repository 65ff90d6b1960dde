"""`make bench` rows for the uncompressed view: a series stored compressed,
copied with ``cp -r`` as stored and through ``transfer_syntax =
"uncompressed"``, each from a fresh mount, side by side in the same run.

Two series of 512x512x16-bit CT slices (with noise, so that they compress
about as real ones do): JPEG 2000 lossless (Orthanc 1.10
cannot transcode it: trolleyfs decodes it itself) and RLE lossless (Orthanc
transcodes it when asked)."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from bench.mount import mounted
from tests import compressed
from trolleyfs.demo import sampledata
from trolleyfs.demo.orthanc import Orthanc

Row = tuple[str, float, float | None, str]


def _config(url: str) -> str:
    return f"""
[servers.bench]
search   = {{ protocol = "qido-rs", url = "{url}/dicom-web" }}
retrieve = {{ protocol = "wado-rs", url = "{url}/dicom-web" }}

[[folders]]
name = "stored"
query = {{ PatientName = "VIEWS*" }}

[[folders]]
name = "plain"
query = {{ PatientName = "VIEWS*" }}
transfer_syntax = "uncompressed"
"""


def _cp(src: Path, target: Path) -> float:
    """Seconds ``cp -r`` takes."""
    t0 = time.perf_counter()
    subprocess.run(["cp", "-r", str(src), str(target)], check=True)
    return time.perf_counter() - t0


def rows(orthanc: Orthanc, mount_tmp: Path, dest: Path, repeat: int, instances: int = 100) -> list[Row]:
    """Upload the two series, then measure; returns the table rows."""
    spec = sampledata.StudySpec(
        "VIEWS^BENCH",
        "V001",
        "20240105",
        "Views bench",
        tuple(sampledata.SeriesSpec("CT", name, instances, 512, 512) for name in ("J2K", "RLE")),
    )
    print(f"encoding {instances} JPEG 2000 and {instances} RLE slices of 512x512 ...", flush=True)
    files = compressed.generate(spec, noise=True)
    orthanc.upload(files)
    per_series = {name: files[i * instances : (i + 1) * instances] for i, name in enumerate(("J2K", "RLE"))}
    study_name = "2024-01-05 VIEWS BENCH Views bench"
    out: list[Row] = []
    for name, series_dir in (("J2K", "001 CT J2K"), ("RLE", "002 CT RLE")):
        stored_mb = sum(len(b) for b in per_series[name]) / 1e6
        times: dict[str, list[float]] = {"stored": [], "plain": []}
        how, plain_mb = "", 0.0
        for i in range(repeat):
            for folder in ("stored", "plain") if i % 2 == 0 else ("plain", "stored"):
                with mounted(_config(orthanc.url), mount_tmp, name=f"v{name}{folder}{i}") as m:
                    src = m.path / folder / study_name / series_dir
                    target = dest / f"v-{name}-{folder}-{i}"
                    times[folder].append(_cp(src, target))
                    assert len(os.listdir(target)) == instances
                    if folder == "plain":
                        plain_mb = sum(p.stat().st_size for p in target.iterdir()) / 1e6
                        views = m.stats()["views"]
                        how = (
                            f"{views['transcoded_by_server']} transcoded by Orthanc, "
                            f"{views['converted_locally']} decoded here"
                        )
                    shutil.rmtree(target)
        print(
            f"  (8) {name}: as stored {', '.join(f'{t:.3f}' for t in times['stored'])} s; "
            f"uncompressed view {', '.join(f'{t:.3f}' for t in times['plain'])} s ({how})",
            flush=True,
        )
        stored_s, plain_s = statistics.median(times["stored"]), statistics.median(times["plain"])
        tag, view = ("8a", "8b") if name == "J2K" else ("8c", "8d")
        kind = "JPEG 2000 lossless" if name == "J2K" else "RLE lossless"
        out.append(
            (
                f"({tag}) cp -r of a {instances}-slice {kind} series, as stored",
                stored_s,
                None,
                f"{stored_mb:.0f} MB, {stored_mb / stored_s:.0f} MB/s",
            )
        )
        out.append(
            (
                f'({view}) the same through transfer_syntax = "uncompressed"',
                plain_s,
                None,
                f"{plain_s / stored_s:.2f}x ({tag}); {plain_mb:.0f} MB out; {how}",
            )
        )
    return out
