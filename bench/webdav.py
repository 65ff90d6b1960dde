"""`make bench` rows (w1-w6) for the WebDAV front end: a cold and a warm copy
of the big series with rclone over WebDAV, beside ``cp -r`` of the same series
from the FUSE mount of the same config.  Not a test: nothing here asserts on a
timing.  Run alone:

    .venv/bin/python -m bench.webdav [--instances 500] [--repeat 3]

Cold: a fresh server (empty caches), so the copy includes the PROPFIND that
learns the sizes (one series request with readahead) and the reads.  Warm:
the same server again, everything in its memory cache.  rclone copies with
``--transfers 8`` (its default is 4).  rclone's WebDAV backend paces its own
requests at least 10 ms apart (its pacer; the option to change that came
in rclone 1.63, after Debian 12's 1.60), so its rows are bounded by the client at about
100 files a second whatever the server does.  The server's own speed is the
next pair of rows: 8 threads of keep-alive GETs (httpx) over the PROPFIND's
list, as a desktop without a pacer would read.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.mount import mounted
from tests.webdav import Served, propfind, serving
from trolleyfs.demo import sampledata
from trolleyfs.demo.orthanc import Orthanc

Row = tuple[str, float, float | None, str]


def _config(url: str) -> str:
    return f"""
[servers.bench]
search   = {{ protocol = "qido-rs", url = "{url}/dicom-web" }}
retrieve = {{ protocol = "wado-rs", url = "{url}/dicom-web" }}

[[folders]]
name = "bench"
query = {{ PatientName = "BENCH*" }}
"""


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def _rclone(url: str, path: str, target: Path) -> list[str]:
    return [
        "rclone",
        "--config",
        "/dev/null",
        "--transfers",
        "8",
        "copy",
        f":webdav,url='{url.rstrip('/')}':{path}",
        str(target),
    ]


def _series_path(orthanc: Orthanc, work: Path) -> str:
    """The tree path of the big series (the first series of the bench folder's
    BIG study)."""
    with serving(_config(orthanc.url), work, name="bench-names") as dav:
        (study,) = [p for p in propfind(dav, "bench", "1") if " BENCH BIG " in p]
        return sorted(p for p in propfind(dav, study, "1") if p != study)[0]


def _parallel_get(dav: Served, series_path: str, target: Path, threads: int = 8) -> float:
    """Seconds to list the series (PROPFIND) and GET every file into
    ``target`` with ``threads`` keep-alive connections."""
    target.mkdir()
    t0 = time.perf_counter()
    names = [p for p in propfind(dav, series_path, "1") if p != series_path]
    clients = [dav.client() for _ in range(threads)]

    def get(i: int) -> None:
        for path in names[i::threads]:
            r = clients[i].get(dav.href(path))
            r.raise_for_status()
            (target / path.rsplit("/", 1)[1]).write_bytes(r.content)

    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(get, range(threads)))
    finally:
        for c in clients:
            c.close()
    return time.perf_counter() - t0


def rows(orthanc: Orthanc, work: Path, dest: Path, instances: int, repeat: int) -> list[Row]:
    """Cold and warm copies over WebDAV (rclone) and over FUSE (cp -r)."""
    series_path = _series_path(orthanc, work)
    kinds = ("dav cold", "dav warm", "get cold", "get warm", "fuse cold", "fuse warm")
    times: dict[str, list[float]] = {k: [] for k in kinds}
    mb = 0.0
    for i in range(repeat):
        with serving(_config(orthanc.url), work, name=f"bench-dav-{i}", log_level="info") as dav:
            for kind in ("cold", "warm"):
                target = dest / f"dav-{kind}-{i}"
                times[f"dav {kind}"].append(_timed(_rclone(dav.url, series_path, target)))
                assert len(os.listdir(target)) == instances
                mb = sum(p.stat().st_size for p in target.iterdir()) / 1e6
                shutil.rmtree(target)
        with serving(_config(orthanc.url), work, name=f"bench-get-{i}", log_level="info") as dav:
            for kind in ("cold", "warm"):
                target = dest / f"get-{kind}-{i}"
                times[f"get {kind}"].append(_parallel_get(dav, series_path, target))
                assert len(os.listdir(target)) == instances
                shutil.rmtree(target)
        with mounted(_config(orthanc.url), work, name=f"bench-fuse-{i}") as m:
            for kind in ("cold", "warm"):
                target = dest / f"fuse-{kind}-{i}"
                times[f"fuse {kind}"].append(_timed(["cp", "-r", str(m.path / series_path), str(target)]))
                assert len(os.listdir(target)) == instances
                shutil.rmtree(target)
        for label, t in times.items():
            print(f"  {label}: {t[-1]:.3f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    return [
        (f"(w1) rclone over WebDAV, cold: a {instances}-instance series", med["dav cold"], mb, "rclone paces"),
        ("(w2) the same, warm (server's memory cache)", med["dav warm"], mb, "rclone paces"),
        ("(w3) 8 threads of GETs over WebDAV, cold", med["get cold"], mb, ""),
        ("(w4) the same, warm", med["get warm"], mb, ""),
        (
            "(w5) cp -r from the FUSE mount, cold",
            med["fuse cold"],
            mb,
            f"GETs cold {med['get cold'] / med['fuse cold']:.2f}x",
        ),
        (
            "(w6) cp -r from the FUSE mount, warm",
            med["fuse warm"],
            mb,
            f"GETs warm {med['get warm'] / med['fuse warm']:.2f}x",
        ),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--instances", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is shown")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="trolleyfs-bench-webdav-"))
    dest = Path(tempfile.mkdtemp(prefix="trolleyfs-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        specs = sampledata.bench_studies(1, args.instances)
        print(f"generating {args.instances} CT instances of 512x512 ...", flush=True)
        with Orthanc(workdir=str(work / "orthanc")) as orthanc:
            orthanc.upload(sampledata.generate(specs))
            for label, seconds, mb, note in rows(orthanc, work, dest, args.instances, args.repeat):
                rate = f"{mb / seconds:.0f} MB/s" if mb else ""
                print(f"{label:<60} {seconds:8.3f} s  {rate:>9}  {note}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(dest, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
