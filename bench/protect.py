"""`make bench` rows for what protecting the PACS and auditing cost a read
that they never hold back: a cold ``cp -r`` of the big series from a fresh
mount without limits or audit, with limits so high they are never reached
(the buckets, the priority queue and the small socket buffer all in the
way), and with an audit file (a line per file and per folder), each run in
turn in the same round, side by side.

Also runnable alone, on an Orthanc of its own (``python -m bench.protect
--instances 200``), for a quick look at these rows only."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.mount import mounted
from trolleyfs.demo import sampledata
from trolleyfs.demo.orthanc import Orthanc

Row = tuple[str, float, float | None, str]
NEVER = "limits = { mb_per_s = 100000, requests_per_s = 100000 }"  # the largest allowed: never reached


def _config(url: str, server_extra: str = "", extra: str = "") -> str:
    return f"""
[servers.bench]
search   = {{ protocol = "qido-rs", url = "{url}/dicom-web" }}
retrieve = {{ protocol = "wado-rs", url = "{url}/dicom-web" }}
{server_extra}

[[folders]]
name = "bench"
query = {{ PatientName = "BENCH*" }}
{extra}
"""


def rows(
    orthanc: Orthanc, study_name: str, series_mb: float, instances: int, mount_tmp: Path, dest: Path, repeat: int
) -> list[Row]:
    audit = mount_tmp / "audit.jsonl"
    variants = {
        "plain": _config(orthanc.url),
        "limits": _config(orthanc.url, NEVER),
        "audit": _config(orthanc.url, extra=f'[audit]\nfile = "{audit}"'),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    lines = 0
    for i in range(repeat):
        order = list(variants) if i % 2 == 0 else list(reversed(variants))
        for kind in order:
            with mounted(variants[kind], mount_tmp, name=f"p{kind}{i}") as m:
                (series_dir,) = list((m.path / "bench" / study_name).iterdir())
                target = dest / f"p-{kind}-{i}"
                t0 = time.perf_counter()
                subprocess.run(["cp", "-r", str(series_dir), str(target)], check=True)
                times[kind].append(time.perf_counter() - t0)
                assert len(os.listdir(target)) == instances
                shutil.rmtree(target)
                if kind == "limits":
                    waited = m.stats()["limits"]["bench"]["waited_s"]
                    assert waited["waits"] == 0, waited  # never held back
        if audit.exists():
            lines = sum(1 for ln in audit.read_text().splitlines() if json.loads(ln)["process"] == "cp")
            audit.unlink()
    for kind, ts in times.items():
        print(f"  (13) {kind}: {', '.join(f'{t:.3f}' for t in ts)} s", flush=True)
    plain = statistics.median(times["plain"])
    out: list[Row] = [
        ("(13a) trolleyfs cold cp -r, no limits, no audit (baseline of 13b/c)", plain, series_mb, ""),
        (
            "(13b) the same with limits never reached (buckets, queue, buffer)",
            statistics.median(times["limits"]),
            series_mb,
            "~ (13a)",
        ),
        (
            f"(13c) the same with an audit file ({lines} lines per copy)",
            statistics.median(times["audit"]),
            series_mb,
            "~ (13a)",
        ),
    ]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--instances", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="trolleyfs-bench-"))
    dest = Path(tempfile.mkdtemp(prefix="trolleyfs-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        specs = sampledata.bench_studies(1, args.instances)
        big = specs[0]
        print(f"generating {args.instances} CT instances of 512x512 ...", flush=True)
        with Orthanc(workdir=str(work / "orthanc")) as orthanc:
            files = list(sampledata.generate(specs))
            orthanc.upload(files)
            mb = sum(len(b) for b in files) / 1e6
            (work / "mounts").mkdir()
            got = rows(
                orthanc,
                f"2024-01-01 BENCH BIG {big.description}",
                mb,
                args.instances,
                work / "mounts",
                dest,
                args.repeat,
            )
        base = got[0][1]
        for label, seconds, size, _ in got:
            rate = f"{size / seconds:.0f} MB/s" if size else ""
            print(f"| {label:<72} | {seconds:.3f} s | {rate:>9} | {seconds / base:.2f}x (13a) |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(dest, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
