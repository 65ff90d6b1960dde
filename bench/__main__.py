"""`make bench`: trolleyfs against its baselines, measured in one run, printed
side by side.  Not a test: nothing here asserts on a timing.

Data: one series of 500 CT instances of 512x512x16 bit (about 260 MB) in a
study of its own, and 99 small studies, so a folder of 100 studies.  All of it
in a throw-away Orthanc on loopback.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench import goals
from bench import nifti as bench_nifti
from bench import protect as bench_protect
from bench import views as bench_views
from bench import webdav as bench_webdav
from bench.baselines import ACCEPT, dicomtrolley_download, server_ceiling
from bench.cluster import three_nodes
from bench.mount import mounted
from tests.mounting import TROLLEYFS
from trolleyfs.demo import sampledata
from trolleyfs.demo.orthanc import Orthanc, free_port
from trolleyfs.part10 import check_part10, part10_sop_instance_uid


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def config(url: str, cache: str) -> str:
    return f"""
[servers.bench]
search   = {{ protocol = "qido-rs", url = "{url}/dicom-web" }}
retrieve = {{ protocol = "wado-rs", url = "{url}/dicom-web" }}

[[folders]]
name = "bench"
query = {{ PatientName = "BENCH*" }}

[cache]
{cache}
"""


MOVE_AET = "TROLLEYFS"


def dimse_config(orthanc: Orthanc, retrieve: str, store_port: int) -> str:
    """DICOM-QR listings and C-GET or C-MOVE reads on Orthanc's DICOM port."""
    ae = f'host = "127.0.0.1", port = {orthanc.dicom_port}, called_aet = "{orthanc.aet}"'
    store = (
        f', store_host = "127.0.0.1", store_port = {store_port}, store_aet = "{MOVE_AET}"'
        if retrieve == "c-move"
        else ""
    )
    return f"""
[servers.bench]
search   = {{ protocol = "dicom-qr", {ae} }}
retrieve = {{ protocol = "{retrieve}", {ae}{store} }}
timeout = 60

[[folders]]
name = "bench"
query = {{ PatientName = "BENCH*" }}
"""


class PeakRSS:
    """Polls a process's resident set size; VmHWM gives the kernel's own peak."""

    def __init__(self, pid: int) -> None:
        self.pid, self._stop = pid, threading.Event()
        self.samples: list[int] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _field(self, name: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self._field("VmRSS"))
            time.sleep(0.02)

    def __enter__(self) -> PeakRSS:
        self.before = self._field("VmRSS")
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = max(self._field("VmHWM"), *self.samples)
        self._stop.set()
        self.thread.join()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--instances", type=int, default=500)
    ap.add_argument("--studies", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is shown")
    ap.add_argument("--many", type=int, default=2000, help="studies in the folder of the listing goal (G5)")
    ap.add_argument("--only", choices=("all", "goals"), default="all", help="goals: only the speed goals (issue 24)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="trolleyfs-bench-"))
    # copies go to a tmpfs, so that the disk's write-back does not blur the
    # numbers of what is measured: the servers and the filesystems
    dest = Path(tempfile.mkdtemp(prefix="trolleyfs-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    results: list[tuple[str, float, float | None, str]] = []  # label, seconds, MB, target
    try:
        print(
            f"generating {args.instances} CT instances of 512x512 and {args.studies - 1} small studies ...", flush=True
        )
        specs = sampledata.bench_studies(args.studies, args.instances)
        move_port = free_port()  # where trolleyfs receives C-MOVEs; Orthanc knows it as TROLLEYFS
        with Orthanc(
            workdir=str(work / "orthanc"), modalities={"trolleyfs": (MOVE_AET, "127.0.0.1", move_port)}
        ) as orthanc:
            orthanc.upload(sampledata.generate(specs))
            big = specs[0]
            study = sampledata.uid("study", big.patient_id, 0)
            series = sampledata.uid("series", big.patient_id, 0, 0)
            files = [sampledata.make_instance(big, 0, big.series[0], 0, n) for n in (0, args.instances // 2)]
            series_mb = sum(len(b) for b in files) / 2 * args.instances / 1e6
            mid_uid = sampledata.uid("instance", big.patient_id, 0, 0, args.instances // 2)
            print(f"Orthanc holds {args.studies} studies; the big series is {series_mb:.0f} MB", flush=True)

            goal_rows = measure_goals(args, orthanc, big, series_mb, work, dest, move_port)
            if args.only == "goals":
                raise _GoalsOnly(goal_rows)

            def runs(label: str, fn: Callable[[int], float], mb: float | None, target: str = "") -> None:
                times = []
                for i in range(args.repeat):
                    for p in list(dest.iterdir()):
                        shutil.rmtree(p, ignore_errors=True)
                    subprocess.run(["sync"])
                    times.append(fn(i))
                results.append((label, statistics.median(times), mb, target))
                print(f"  {label}: {', '.join(f'{t:.3f}' for t in times)} s", flush=True)

            def whole(download: Callable[[], int]) -> float:
                got: list[int] = []
                t = timed(lambda: got.append(download()))
                assert got == [args.instances], (got, args.instances)
                return t

            def out(name: str, i: int) -> Path:
                p = dest / f"{name}-{i}"
                shutil.rmtree(p, ignore_errors=True)
                return p

            # (1) the server ceiling, and (2) the seed library
            runs(
                "(1) server ceiling: httpx, 1 WADO-RS series request -> files",
                lambda i: whole(lambda: server_ceiling(orthanc, study, series, out("ceiling", i))),
                series_mb,
            )
            runs(
                "(2) dicomtrolley 4.1.0: WADO-RS series download",
                lambda i: whole(lambda: dicomtrolley_download(orthanc, study, series, out("dt", i))),
                series_mb,
            )

            mount_tmp = work / "mounts"
            mount_tmp.mkdir()
            disk = work / "diskcache"
            study_name = f"2024-01-01 BENCH BIG {big.description}"

            # (3) cold cp -r from a fresh mount with the default cache settings, (4a) warm: again
            warm: list[float] = []

            def cold(i: int) -> float:
                with mounted(config(orthanc.url, ""), mount_tmp, name=f"cold{i}") as m:
                    (series_dir,) = list((m.path / "bench" / study_name).iterdir())
                    t = timed(lambda: subprocess.run(["cp", "-r", str(series_dir), str(out("cold", i))], check=True))
                    assert len(os.listdir(dest / f"cold-{i}")) == args.instances
                    shutil.rmtree(dest / f"cold-{i}")
                    warm.append(
                        timed(lambda: subprocess.run(["cp", "-r", str(series_dir), str(out("warm", i))], check=True))
                    )
                return t

            runs("(3) trolleyfs cold: cp -r of the series, fresh mount", cold, series_mb, "<= 1.3x (1), < (2)")
            results.append(
                ("(4a) trolleyfs warm: cp -r again, same mount", statistics.median(warm), series_mb, ">= 500 MB/s")
            )
            print(f"  (4a): {', '.join(f'{t:.3f}' for t in warm)} s", flush=True)
            # (13) the cold copy again without, with never-reached limits and with an audit file
            results += bench_protect.rows(orthanc, study_name, series_mb, args.instances, mount_tmp, dest, args.repeat)

            # (4b) after a remount: a disk cache filled by an earlier mount serves it
            disk_cache = f'disk_dir = "{disk}"\ndisk_mb = 2048'
            with mounted(config(orthanc.url, disk_cache), mount_tmp, name="fill") as m:
                (series_dir,) = list((m.path / "bench" / study_name).iterdir())
                subprocess.run(["cp", "-r", str(series_dir), str(out("fill", 0))], check=True)

            def remount(i: int) -> float:
                with mounted(config(orthanc.url, disk_cache), mount_tmp, name=f"re{i}") as m:
                    (series_dir,) = list((m.path / "bench" / study_name).iterdir())
                    os.listdir(series_dir)
                    before = m.requests()
                    t = timed(lambda: subprocess.run(["cp", "-r", str(series_dir), str(out("re", i))], check=True))
                    assert m.stats()["instances_fetched"] == 0, "after remount the disk cache should serve all"
                    assert m.requests() == before
                return t

            runs("(4b) trolleyfs after remount: cp -r from the disk cache", remount, series_mb, ">= 500 MB/s")

            # (5) time to first byte of one instance, against one raw WADO-RS instance request
            with httpx.Client(timeout=60) as c:
                c.get(f"{orthanc.dicomweb}/studies", params={"limit": "1"})  # a warm connection, as the mount has

                def raw(i: int) -> float:
                    url = f"{orthanc.dicomweb}/studies/{study}/series/{series}/instances/{mid_uid}"
                    return timed(lambda: c.get(url, headers={"Accept": ACCEPT}).raise_for_status())

                runs("(5a) raw WADO-RS request for one instance", raw, None)

            def ttfb(i: int) -> float:
                shutil.rmtree(disk, ignore_errors=True)
                with mounted(config(orthanc.url, "memory_mb = 1024"), mount_tmp, name=f"ttfb{i}") as m:
                    (series_dir,) = list((m.path / "bench" / study_name).iterdir())
                    target = sorted(series_dir.iterdir())[args.instances // 2]

                    def first_byte() -> None:
                        with open(target, "rb") as f:
                            assert f.read(1) == b"\0"

                    return timed(first_byte)

            runs("(5b) trolleyfs first byte of one instance (cold mount)", ttfb, None, "<= 1.5x (5a)")

            # (6) listings of the 100-study folder, and find over one study
            def listing(cmd: list[str], warm_first: bool) -> Callable[[int], float]:
                def run(i: int) -> float:
                    with mounted(config(orthanc.url, ""), mount_tmp, name=f"ls{i}") as m:
                        path = m.path / "bench"
                        if "find" in cmd:
                            path = path / study_name
                        if warm_first:
                            subprocess.run([*cmd, str(path)], check=True, capture_output=True)
                        res: list[subprocess.CompletedProcess[bytes]] = []

                        def go() -> None:
                            res.append(subprocess.run([*cmd, str(path)], check=True, capture_output=True))

                        t = timed(go)
                        n = len(res[0].stdout.splitlines())
                        assert n >= (args.studies if "ls" in cmd else 1), n
                        return t

                return run

            runs("(6a) ls of the 100-study folder (cold)", listing(["ls"], False), None)
            runs("(6b) ls -l of the 100-study folder (cold)", listing(["ls", "-l"], False), None)
            runs("(6c) find over the big study (cold)", listing(["find"], False), None)
            with httpx.Client(timeout=60) as c:
                url = f"{orthanc.dicomweb}/studies/{study}/series/{series}/instances"
                runs(
                    "(6d) raw QIDO-RS instance search of the big series (what (6c) waits for)",
                    lambda i: timed(lambda: c.get(url, params={"includefield": "InstanceNumber"}).raise_for_status()),
                    None,
                )

            # (9) the DIMSE reads: a cold cp -r of the series by C-GET, and by C-MOVE into
            # trolleyfs's storage receiver (both from Orthanc's DICOM port)
            def dimse_cold(retrieve: str) -> Callable[[int], float]:
                def run(i: int) -> float:
                    cfg = dimse_config(orthanc, retrieve, move_port)
                    with mounted(cfg, mount_tmp, name=f"{retrieve}{i}") as m:
                        (series_dir,) = list((m.path / "bench" / study_name).iterdir())
                        t = timed(
                            lambda: subprocess.run(["cp", "-r", str(series_dir), str(out(retrieve, i))], check=True)
                        )
                        assert len(os.listdir(dest / f"{retrieve}-{i}")) == args.instances
                        return t

                return run

            runs("(9a) trolleyfs cold, C-GET: cp -r of the series, fresh mount", dimse_cold("c-get"), series_mb)
            runs("(9b) trolleyfs cold, C-MOVE: cp -r of the series, fresh mount", dimse_cold("c-move"), series_mb)

            # (11) trolleyfs prefetch (the command, start-up included) on a fresh mount: the big series,
            # and the whole 100-study folder (listing it included)
            small = specs[1]
            small_mb = (
                (len(specs) - 1)
                * sum(
                    len(sampledata.make_instance(small, 1, small.series[0], 0, n))
                    for n in range(small.series[0].instances)
                )
                / 1e6
            )

            def prefetched(target: Callable[[Path], Path], instances: int) -> Callable[[int], float]:
                def run(i: int) -> float:
                    with mounted(config(orthanc.url, ""), mount_tmp, name=f"pf{i}") as m:
                        path = target(m.path)
                        t = timed(
                            lambda: subprocess.run([*TROLLEYFS, "prefetch", str(path)], check=True, capture_output=True)
                        )
                        assert m.stats()["instances_fetched"] >= instances
                    return t

                return run

            runs(
                "(11a) trolleyfs prefetch of the series, fresh mount",
                prefetched(lambda p: p / "bench" / study_name, args.instances),
                series_mb,
            )
            runs(
                "(11b) trolleyfs prefetch of the 100-study folder, fresh mount",
                prefetched(lambda p: p / "bench", args.instances + 2 * (len(specs) - 1)),
                series_mb + small_mb,
            )

            # (7) peak RSS while copying a study larger than the memory cache
            mem_mb = 64
            with mounted(config(orthanc.url, f"memory_mb = {mem_mb}"), mount_tmp, name="rss") as m:
                assert m.proc is not None
                sdir = m.path / "bench" / study_name
                with PeakRSS(m.proc.pid) as rss:
                    t = timed(lambda: subprocess.run(["cp", "-r", str(sdir), str(out("rss", 0))], check=True))
                print(f"  (7): {t:.3f} s, peak RSS {rss.peak / 2**20:.0f} MiB (before: {rss.before / 2**20:.0f} MiB)")
            results.append(
                (
                    f"(7) peak RSS of trolleyfs copying the {series_mb:.0f} MB study, memory_mb = {mem_mb}",
                    rss.peak / 2**20,
                    None,
                    f"< {mem_mb + 150} MiB",
                )
            )
            for p in list(dest.iterdir()):  # keep tmpfs use small between measurements
                shutil.rmtree(p, ignore_errors=True)

            # (8) a compressed series as stored and through the uncompressed view
            results += bench_views.rows(orthanc, mount_tmp, dest, args.repeat)
            # (13) a series' NIfTI view, cold and warm, against dcm2niix on a local copy
            results += bench_nifti.rows(orthanc, mount_tmp, dest, args.repeat)
            # (w) the big series over WebDAV (rclone, and parallel GETs) beside the FUSE mount, cold and warm
            results += bench_webdav.rows(orthanc, mount_tmp, dest, args.instances, args.repeat)
            # (10) three nodes copying the series at the same moment, without and with the shared tier
            results.extend(three_nodes(orthanc, study_name, series_mb, args.instances, args.repeat, mount_tmp, dest))
        if args.only != "goals":
            # (12) what checking each object costs on the hot path, in-process: the
            # meta-group UID check alone, and the whole-object element walk
            objects = [sampledata.make_instance(big, 0, big.series[0], 0, n) for n in range(args.instances)]
            runs(
                "(12a) Part-10 UID check of the series' objects (in-process CPU)",
                lambda i: timed(lambda: [part10_sop_instance_uid(o) for o in objects]),
                series_mb,
            )
            runs(
                "(12b) whole-object check: UID + element walk (in-process CPU)",
                lambda i: timed(lambda: [check_part10(o, "bench", "x") for o in objects]),
                series_mb,
            )
    except _GoalsOnly as only:
        goal_rows = only.rows
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(dest, ignore_errors=True)

    if results:
        print_table(results, args)
    print("\nThe speed goals (issue 24), each beside its baseline in this run:")
    goals.print_goals(goal_rows)
    return 0


class _GoalsOnly(Exception):
    """``--only goals``: the goals are measured, the rest of the bench is not."""

    def __init__(self, rows: list[goals.Goal]) -> None:
        super().__init__("goals only")
        self.rows = rows


def measure_goals(
    args: argparse.Namespace,
    orthanc: Orthanc,
    big: sampledata.StudySpec,
    series_mb: float,
    work: Path,
    dest: Path,
    move_port: int,
) -> list[goals.Goal]:
    """The goals of issue 24 (bench/goals.py), on the big series and a folder of ``--many`` studies."""
    print(f"uploading {args.many} one-instance studies for the listing goal ...", flush=True)
    orthanc.upload(sampledata.generate(goals.list_studies(args.many)))
    setting = goals.Setting(
        orthanc,
        sampledata.uid("study", big.patient_id, 0),
        sampledata.uid("series", big.patient_id, 0, 0),
        f"2024-01-01 BENCH BIG {big.description}",
        args.instances,
        series_mb,
        args.many,
        work,
        dest,
        args.repeat,
        move_port,
    )
    return goals.goals(setting)


def print_table(results: list[tuple[str, float, float | None, str]], args: argparse.Namespace) -> None:
    base = results[0][1]
    raw_one = next((s for label, s, _, _ in results if label.startswith("(5a)")), None)
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.machine(),
    )
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print()
    print(
        f"machine: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; median of {args.repeat} runs; copies written to a tmpfs"
    )
    head = f"| {'measurement':<72} | {'result':>10} | {'MB/s':>7} | {'vs (1)':>7} | target |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for label, value, mb, target in results:
        if label.startswith("(10") and mb is not None:  # three nodes: the MB/s of all three copies; what the PACS sent
            print(f"| {label:<72} | {value:>8.3f} s | {mb / value:7.0f} | {value / base:6.2f}x | {target} |")
            continue
        if label.startswith("(7)"):
            print(f"| {label:<72} | {value:>7.0f} MiB | {'':>7} | {'':>7} | {target} |")
            continue
        rate = f"{mb / value:7.0f}" if mb else ""
        ratio = (
            f"{value / base:6.2f}x"
            if mb
            else (f"{value / raw_one:5.2f}x(5a)" if label.startswith("(5b)") and raw_one else "")
        )
        print(f"| {label:<72} | {value:>8.3f} s | {rate:>7} | {ratio:>7} | {target} |")


if __name__ == "__main__":
    sys.exit(main())
