"""The speed goals (issue 24), each measured beside its baseline in the same
run and printed with its target and whether it was met:

* G1 cold ``cp -r`` of the big series from a fresh mount with an empty disk
  cache, against (1) one raw WADO-RS series request split into files and (2)
  dicomtrolley downloading the same series;
* G2 the CPU the trolleyfs process spends per GB on that cold copy (user +
  system time from /proc, steadier than any wall-clock ratio on a busy machine);
* G3 a warm ``cp -r`` (same mount again) against ``cp -r`` of the same files
  from a local disk (both read from memory: the local files are in the page
  cache), and the FUSE requests per file it costs;
* G4 the first byte of one instance on a cold mount against one raw WADO-RS
  instance request;
* G5 ``ls -l`` of a folder of 2,000 studies from a fresh mount against the
  raw QIDO-RS study search it needs (one request for all of them);
* G6 cold copies over C-GET and C-MOVE against pynetdicom's own SCU fetching
  the same series in a plain loop (the ceiling of that library here).

Medians of ``repeat`` rounds.  Nothing here asserts on a timing."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pydicom
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from bench.baselines import ACCEPT, dicomtrolley_download, server_ceiling
from bench.mount import mounted
from trolleyfs.demo import sampledata
from trolleyfs.demo.orthanc import Orthanc
from trolleyfs.search.fields import STUDY_FIELDS, encode_query
from trolleyfs.transport.storage import get_contexts, scp_role_items

CLK_TCK = os.sysconf("SC_CLK_TCK")
MOVE_AET = "TROLLEYFS"


@dataclass
class Goal:
    label: str
    value: float
    baseline: float
    unit: str  # "x" (a ratio of the two), "s/GB", "req/file"
    target: float  # at most this
    detail: str = ""

    @property
    def measure(self) -> float:
        return self.value / self.baseline if self.unit == "x" else self.value

    @property
    def met(self) -> bool:
        return self.measure <= self.target


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (and its reaped threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15 of the line)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def cp(src: Path, dst: Path) -> float:
    return timed(lambda: subprocess.run(["cp", "-r", str(src), str(dst)], check=True))


def fuse_requests(stats: dict[str, object]) -> int:
    ops = stats.get("fuse_ops")
    return sum(ops.values()) if isinstance(ops, dict) else 0


def _config(url: str, cache: str, folder: str = 'PatientName = "BENCH*"') -> str:
    return f"""
[servers.bench]
search   = {{ protocol = "qido-rs", url = "{url}/dicom-web" }}
retrieve = {{ protocol = "wado-rs", url = "{url}/dicom-web" }}

[[folders]]
name = "bench"
query = {{ {folder} }}

[cache]
{cache}
"""


def _dimse_config(orthanc: Orthanc, retrieve: str, store_port: int) -> str:
    ae = f'host = "127.0.0.1", port = {orthanc.dicom_port}, called_aet = "{orthanc.aet}"'
    store = f', store_host = "127.0.0.1", store_port = {store_port}' if retrieve == "c-move" else ""
    return f"""
[servers.bench]
search   = {{ protocol = "dicom-qr", {ae} }}
retrieve = {{ protocol = "{retrieve}", {ae}{store} }}
timeout = 60

[[folders]]
name = "bench"
query = {{ PatientName = "BENCH*" }}
"""


# ------------------------------------------------------------------ pynetdicom's own SCU, in a plain loop


def _series_identifier(study: str, series: str) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    return ds


def pynetdicom_get(orthanc: Orthanc, study: str, series: str, out: Path) -> int:
    """A C-GET of the series by pynetdicom, each object written as it comes."""
    out.mkdir()
    n = [0]

    def store(event: evt.Event) -> int:
        (out / f"{n[0]:05}.dcm").write_bytes(event.encoded_dataset())
        n[0] += 1
        return 0x0000

    ae = AE(ae_title="PLAINSCU")
    ae.maximum_pdu_size = 1 << 20
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for abstract, syntaxes in get_contexts():
        ae.add_requested_context(abstract, list(syntaxes))
    assoc = ae.associate(
        "127.0.0.1",
        orthanc.dicom_port,
        ae_title=orthanc.aet,
        ext_neg=list(scp_role_items()),
        evt_handlers=[(evt.EVT_C_STORE, store)],
        max_pdu=1 << 20,
    )
    assert assoc.is_established
    for _status, _ident in assoc.send_c_get(
        _series_identifier(study, series), StudyRootQueryRetrieveInformationModelGet
    ):
        pass
    assoc.release()
    return n[0]


def pynetdicom_move(orthanc: Orthanc, study: str, series: str, out: Path, store_port: int) -> int:
    """A C-MOVE of the series by pynetdicom into a pynetdicom storage SCP that
    writes each object as it comes."""
    out.mkdir()
    n = [0]
    lock = threading.Lock()

    def store(event: evt.Event) -> int:
        with lock:
            k = n[0]
            n[0] += 1
        (out / f"{k:05}.dcm").write_bytes(event.encoded_dataset())
        return 0x0000

    scp = AE(ae_title=MOVE_AET)
    scp.maximum_pdu_size = 1 << 20
    for cx in AllStoragePresentationContexts:
        if cx.abstract_syntax is not None:
            scp.add_supported_context(cx.abstract_syntax)
    server = scp.start_server(("127.0.0.1", store_port), block=False, evt_handlers=[(evt.EVT_C_STORE, store)])
    try:
        scu = AE(ae_title="PLAINSCU")
        scu.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = scu.associate("127.0.0.1", orthanc.dicom_port, ae_title=orthanc.aet)
        assert assoc.is_established
        for _status, _ident in assoc.send_c_move(
            _series_identifier(study, series), MOVE_AET, StudyRootQueryRetrieveInformationModelMove
        ):
            pass
        assoc.release()
    finally:
        assert server is not None
        server.shutdown()
    return n[0]


# ------------------------------------------------------------------ the goals


def list_studies(n: int) -> list[sampledata.StudySpec]:
    """``n`` studies of one tiny instance each, PatientName LIST^...: a big folder to list."""
    return [
        sampledata.StudySpec(
            f"LIST^P{i:05}", f"L{i:05}", "20240102", "Listed", (sampledata.SeriesSpec("OT", "One", 1, 8, 8),)
        )
        for i in range(n)
    ]


@dataclass
class Setting:
    """Where the goals are measured: the Orthanc, the big series and a folder of many studies."""

    orthanc: Orthanc
    study: str
    series: str
    study_name: str  # the big study's directory name in the mount
    instances: int
    series_mb: float
    many: int  # studies whose PatientName starts with LIST (G5)
    work: Path  # on disk
    dest: Path  # a tmpfs
    repeat: int
    move_port: int  # where the Orthanc sends C-MOVEs (its modality TROLLEYFS)


def settle() -> None:
    """Write back what earlier rounds left dirty (a disk cache just deleted, a
    copy), so that no round pays for the one before it in the kernel."""
    subprocess.run(["sync"], check=True)


def _median(label: str, fn: Callable[[int], float], repeat: int) -> float:
    values = []
    for i in range(repeat):
        settle()
        values.append(fn(i))
    print(f"  {label}: {', '.join(f'{v:.3f}' for v in values)}", flush=True)
    return statistics.median(values)


def _whole(s: Setting, download: Callable[[], int]) -> float:
    """How long a baseline's download took, once it is known to have written the whole series."""
    got: list[int] = []
    t = timed(lambda: got.append(download()))
    assert got == [s.instances], (got, s.instances)
    return t


def _fresh(dest: Path, name: str) -> Path:
    p = dest / name
    shutil.rmtree(p, ignore_errors=True)
    return p


def copy_goals(s: Setting) -> list[Goal]:
    """G1-G3: the cold copy with a disk cache (time and CPU), the warm copy."""
    o = s.orthanc
    ceiling = _median(
        "(1) raw WADO-RS series request -> files",
        lambda i: _whole(s, lambda: server_ceiling(o, s.study, s.series, _fresh(s.dest, f"ceiling{i}"))),
        s.repeat,
    )
    dt = _median(
        "(2) dicomtrolley series download",
        lambda i: _whole(s, lambda: dicomtrolley_download(o, s.study, s.series, _fresh(s.dest, f"dt{i}"))),
        s.repeat,
    )
    cold: list[float] = []
    cpu: list[float] = []
    warm: list[float] = []
    warm_requests: list[float] = []
    for i in range(s.repeat):
        disk = s.work / f"disk{i}"
        with mounted(_config(o.url, f'disk_dir = "{disk}"'), s.work, name=f"goal{i}") as m:
            (series_dir,) = list((m.path / "bench" / s.study_name).iterdir())
            settle()
            before = cpu_seconds(m.proc.pid)
            cold.append(cp(series_dir, _fresh(s.dest, f"cold{i}")))
            cpu.append(cpu_seconds(m.proc.pid) - before)
            shutil.rmtree(s.dest / f"cold{i}")
            ops = fuse_requests(m.stats())
            warm.append(cp(series_dir, _fresh(s.dest, f"warm{i}")))
            warm_requests.append((fuse_requests(m.stats()) - ops - 1) / s.instances)  # less stats.json's own read
        shutil.rmtree(disk, ignore_errors=True)
        print(f"  cold {cold[-1]:.3f} s, {cpu[-1]:.2f} CPU s; warm {warm[-1]:.3f} s", flush=True)
    # the local baseline: the same files from a local disk, already in the page cache
    local_src = s.work / "local-copy"
    shutil.rmtree(local_src, ignore_errors=True)
    shutil.copytree(s.dest / f"warm{s.repeat - 1}", local_src)
    cp(local_src, _fresh(s.dest, "local-warmup"))
    local = _median(
        "local cp -r of the same files (page cache)", lambda i: cp(local_src, _fresh(s.dest, f"local{i}")), s.repeat
    )
    gb = s.series_mb / 1000
    cold_s = statistics.median(cold)
    return [
        Goal("G1a cold cp -r, disk cache on / (1) raw WADO-RS request", cold_s, ceiling, "x", 1.3),
        Goal("G1b cold cp -r, disk cache on / (2) dicomtrolley", cold_s, dt, "x", 0.8),
        Goal("G2 trolleyfs CPU per GB on the cold copy", statistics.median(cpu) / gb, 0.0, "s/GB", 3.5),
        Goal("G3a warm cp -r / local cp -r of the same files", statistics.median(warm), local, "x", 2.0),
        Goal("G3b FUSE requests per file, warm copy", statistics.median(warm_requests), 0.0, "req/file", 1.05),
    ]


def first_byte_goal(s: Setting) -> Goal:
    """G4: the first byte of the series' middle instance, cold mount, against one raw request."""
    o = s.orthanc
    with httpx.Client(timeout=60) as c:
        c.get(f"{o.dicomweb}/studies", params={"limit": "1"})  # a warm connection, as the mount has
        names = sorted(
            p["00080018"]["Value"][0]
            for p in c.get(f"{o.dicomweb}/studies/{s.study}/series/{s.series}/instances").json()
        )
        mid = names[len(names) // 2]
        url = f"{o.dicomweb}/studies/{s.study}/series/{s.series}/instances/{mid}"
        raw = _median(
            "(5a) raw WADO-RS instance request",
            lambda i: timed(lambda: c.get(url, headers={"Accept": ACCEPT}).raise_for_status()),
            s.repeat,
        )

    def cold(i: int) -> float:
        with mounted(_config(o.url, ""), s.work, name=f"ttfb{i}") as m:
            (series_dir,) = list((m.path / "bench" / s.study_name).iterdir())
            target = sorted(series_dir.iterdir())[s.instances // 2]

            def first_byte() -> None:
                with open(target, "rb") as f:
                    assert f.read(1) == b"\0"

            return timed(first_byte)

    return Goal(
        "G4 first byte of one instance, cold mount / raw request",
        _median("(5b) first byte", cold, s.repeat),
        raw,
        "x",
        1.5,
    )


def listing_goal(s: Setting) -> Goal:
    """G5: ``ls -l`` of the many-studies folder from a fresh mount against
    the raw QIDO-RS search for all of them in one request, asking for the
    attributes trolleyfs asks for (its STUDY_FIELDS)."""
    o = s.orthanc

    # the query string as trolleyfs sends it: Orthanc does not percent-decode ``*`` (httpx would send %2A)
    query = encode_query(
        [("PatientName", "LIST*"), ("limit", str(s.many + 10))] + [("includefield", f) for f in STUDY_FIELDS]
    )

    def raw(i: int) -> float:
        with httpx.Client(timeout=120) as c:
            got: list[httpx.Response] = []
            t = timed(lambda: got.append(c.get(f"{o.dicomweb}/studies?{query}").raise_for_status()))
        assert len(got[0].json()) == s.many, (len(got[0].json()), s.many)
        return t

    def ls(i: int) -> float:
        with mounted(_config(o.url, "", 'PatientName = "LIST*"'), s.work, name=f"ls{i}") as m:
            done: list[subprocess.CompletedProcess[bytes]] = []
            t = timed(
                lambda: done.append(
                    subprocess.run(["ls", "-l", str(m.path / "bench")], check=True, capture_output=True)
                )
            )
            assert len(done[0].stdout.splitlines()) >= s.many, len(done[0].stdout.splitlines())
            return t

    base = _median(f"raw QIDO-RS search of {s.many} studies", raw, s.repeat)
    return Goal(
        f"G5 ls -l of a {s.many}-study folder, fresh mount / raw search", _median("ls -l", ls, s.repeat), base, "x", 1.5
    )


def dimse_goal(s: Setting, retrieve: str) -> Goal:
    """G6: a cold copy over C-GET or C-MOVE against pynetdicom's own SCU."""
    o = s.orthanc
    port = s.move_port

    def plain(i: int) -> float:
        out = _fresh(s.dest, f"plain-{retrieve}{i}")
        if retrieve == "c-get":
            return timed(lambda: pynetdicom_get(o, s.study, s.series, out))
        return timed(lambda: pynetdicom_move(o, s.study, s.series, out, port))

    def mount_copy(i: int) -> float:
        with mounted(_dimse_config(o, retrieve, port), s.work, name=f"{retrieve}{i}") as m:
            (series_dir,) = list((m.path / "bench" / s.study_name).iterdir())
            t = cp(series_dir, _fresh(s.dest, f"{retrieve}{i}"))
            assert len(os.listdir(s.dest / f"{retrieve}{i}")) == s.instances
            return t

    base = _median(f"pynetdicom {retrieve} in a plain loop", plain, s.repeat)
    value = _median(f"trolleyfs {retrieve}", mount_copy, s.repeat)
    return Goal(f"G6 cold cp -r over {retrieve.upper()} / pynetdicom's own SCU", value, base, "x", 1.3)


def goals(s: Setting) -> list[Goal]:
    return [*copy_goals(s), first_byte_goal(s), listing_goal(s), dimse_goal(s, "c-get"), dimse_goal(s, "c-move")]


def print_goals(rows: list[Goal]) -> None:
    head = f"| {'goal':<64} | {'trolleyfs':>10} | {'baseline':>10} | {'measure':>12} | target | met |"
    print(head)
    print("|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|")
    for g in rows:
        base = f"{g.baseline:>8.3f} s" if g.unit == "x" else ""
        value = f"{g.value:>8.3f} s" if g.unit == "x" else f"{g.value:>10.2f}"
        measure = f"{g.measure:.2f}{g.unit if g.unit == 'x' else ' ' + g.unit}"
        print(
            f"| {g.label:<64} | {value:>10} | {base:>10} | {measure:>12} | <= {g.target:g} | {'yes' if g.met else 'NO'} |"
        )
