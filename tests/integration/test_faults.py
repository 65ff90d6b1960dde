"""Faults with real processes: a proxy that fails, stalls, truncates and
garbles answers in front of a real Orthanc, and an Orthanc killed mid-read
and started again.  The mount stays up, errors are EIO/ENOENT/EACCES, nothing
wrong or partial is ever read, and everything read afterwards is exact."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import cast

import httpx
import pytest

from tests.mounting import mounted
from tests.servers.proxy import FaultProxy
from trolleyfs.demo import sampledata
from trolleyfs.demo.orthanc import Orthanc

pytestmark = pytest.mark.integration


def config(url: str, cache: str = "") -> str:
    return f"""
[servers.pacs]
search   = {{ protocol = "qido-rs", url = "{url}/dicom-web" }}
retrieve = {{ protocol = "wado-rs", url = "{url}/dicom-web" }}
timeout = 2
retries = 1

[[folders]]
name = "all"
query = {{}}

[cache]
folder_ttl = 0
{cache}
"""


@pytest.fixture
def proxy(orthanc):
    with FaultProxy(orthanc.url) as p:
        yield p


def expect_errno(code: int, fn, *args) -> None:
    with pytest.raises(OSError) as exc:
        fn(*args)
    assert exc.value.errno == code, exc.value


def exact(path: Path, orthanc: Orthanc) -> bool:
    return path.read_bytes() == orthanc.instance_file(os.getxattr(path, "user.dicom.SOPInstanceUID").decode())


def all_files(m):
    return sorted((m.path / "all").rglob("*.dcm"))


@pytest.mark.parametrize(
    "fault",
    [
        {"fail_status": 500},
        {"fail_status": 503},
        {"cut_after": 3000},  # the body stops mid-object
        {"garbage": True},  # bytes that are not a multipart body of DICOM
        {"refuse": True},  # the connection drops without an answer
    ],
    ids=["500", "503", "truncated", "garbage", "reset"],
)
def test_bad_retrieve_answers_fail_reads_then_recover(proxy, orthanc, tmp_path, fault):
    with mounted(config(proxy.url), tmp_path) as m:
        files = all_files(m)  # listing works: only retrieves are faulted
        for k, v in fault.items():
            setattr(proxy, k, v)
        # only retrieves are left to fail: every listing was done by all_files()
        expect_errno(errno.EIO, files[0].read_bytes)
        expect_errno(errno.EIO, os.stat, files[1])  # stat needs the object too
        assert os.listdir(m.path / "all")  # the mount still answers
        proxy.reset()
        for f in files[2:8]:
            assert exact(f, orthanc)
        assert exact(files[0], orthanc)
        errors = m.stats()["errors"]
        assert errors.get("EIO", 0) >= 2


def test_stalled_server_gives_eio_not_a_hang(proxy, orthanc, tmp_path):
    with mounted(config(proxy.url), tmp_path) as m:
        files = all_files(m)
        proxy.stall = 60  # the body stops flowing after its first chunk
        # the stall outlasts the request deadline (timeout x (retries + 2)): had
        # the read waited for the body instead, it would have succeeded
        expect_errno(errno.EIO, files[0].read_bytes)
        assert re.search(r"timed out|deadline|no answer", m.log_text()), m.log_text()[-2000:]
        proxy.reset()
        assert exact(files[1], orthanc)


def test_stalled_listing_gives_eio_then_works(proxy, tmp_path):
    with mounted(config(proxy.url), tmp_path) as m:
        proxy.delay = 60
        expect_errno(errno.EIO, os.listdir, m.path / "all")
        proxy.reset()
        assert len(os.listdir(m.path / "all")) == 5


def test_listing_errors_and_stale_listings(proxy, tmp_path):
    with mounted(config(proxy.url), tmp_path) as m:
        proxy.fail_status = 500
        expect_errno(errno.EIO, os.listdir, m.path / "all")  # nothing cached yet: an error, not an empty folder
        proxy.reset()
        names = os.listdir(m.path / "all")
        assert len(names) == 5
        proxy.fail_status = 500  # folder_ttl = 0: the next ls asks again, fails, and keeps the last listing
        assert os.listdir(m.path / "all") == names


def test_401_is_eacces_and_404_for_a_listed_file_is_eio(proxy, orthanc, tmp_path):
    """A file the server listed but will not send is the server's error (EIO,
    logged), never "No such file or directory" (issue 18, item 2)."""
    with mounted(config(proxy.url), tmp_path) as m:
        files = all_files(m)
        proxy.fail_status = 401
        expect_errno(errno.EACCES, files[0].read_bytes)
        proxy.fail_status = 404
        expect_errno(errno.EIO, files[1].read_bytes)
        assert "was listed by it: the file cannot be fetched" in m.log_text()
        proxy.reset()
        assert exact(files[0], orthanc) and exact(files[1], orthanc)


def test_concurrent_readers_during_faults(proxy, orthanc, tmp_path):
    with mounted(config(proxy.url), tmp_path) as m:
        files = all_files(m)
        outcomes: list[str] = []
        lock = threading.Lock()

        def reader(paths):
            for p in paths:
                try:
                    ok = exact(p, orthanc)
                    with lock:
                        outcomes.append("exact" if ok else "WRONG")
                except OSError as exc:
                    with lock:
                        outcomes.append(errno.errorcode[cast(int, exc.errno)])

        proxy.cut_after = 20000  # every answer longer than this is cut
        threads = [threading.Thread(target=reader, args=(files[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        proxy.reset()  # the server heals while readers are running
        for t in threads:
            t.join(120)
        assert "WRONG" not in outcomes
        assert set(outcomes) <= {"exact", "EIO"} and len(outcomes) == len(files)
        assert all(exact(f, orthanc) for f in files)  # afterwards: every file exact


def test_server_killed_mid_series_and_restarted(sample_files, tmp_path):
    big = [
        sampledata.StudySpec(
            "KILL^ME", "K1", "20200101", "Kill test", (sampledata.SeriesSpec("CT", "Long", 40, 256, 256),)
        )
    ]
    files = list(sampledata.generate(big))
    server = Orthanc(workdir=str(tmp_path / "orthanc"))
    server.start(timeout=120)
    try:
        server.upload(files)
        with mounted(config(server.url), tmp_path) as m:
            series_dir = next((m.path / "all").glob("*/*"))
            paths = sorted(series_dir.iterdir())
            assert len(paths) == 40
            assert exact(paths[0], server)  # starts the series prefetch
            assert server.proc is not None
            server.proc.send_signal(signal.SIGKILL)  # gone, mid-series if still streaming
            server.proc.wait()
            failed = 0
            for p in paths[1:]:
                try:
                    p.read_bytes()  # either already prefetched (exact, checked below) or EIO
                except OSError as exc:
                    assert exc.errno == errno.EIO
                    failed += 1
            server.start(timeout=120)  # same ports, same storage
            for p in paths:
                assert exact(p, server)
            assert "Traceback" not in m.log_text()
    finally:
        server.cleanup()


def test_unmount_during_reads_and_prefetch_ends_cleanly(proxy, tmp_path):
    with mounted(config(proxy.url), tmp_path) as m:
        files = all_files(m)
        proxy.stall = 3  # keep prefetches running
        readers = [
            subprocess.Popen(["cat", str(f)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for f in files[::6]
        ]
        time.sleep(0.5)
        res = subprocess.run(["fusermount3", "-u", "-z", str(m.path)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        for r in readers:
            r.wait(30)
        assert m.proc.wait(30) == 0
        assert not os.path.ismount(m.path)
        log = m.log_text()
        assert "Traceback" not in log and "unmounted" in log


def test_sigterm_during_reads_exits_zero(proxy, tmp_path):
    with mounted(config(proxy.url), tmp_path) as m:
        files = all_files(m)
        proxy.stall = 3
        readers = [
            subprocess.Popen(["cat", str(f)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for f in files[::6]
        ]
        time.sleep(0.5)
        m.proc.send_signal(signal.SIGTERM)
        assert m.proc.wait(30) == 0
        for r in readers:
            r.wait(30)
        assert not os.path.ismount(m.path)
        assert "Traceback" not in m.log_text()


def test_orthanc_answers_directly_after_faults(orthanc):
    # the shared Orthanc is unharmed by the proxy tests
    assert httpx.get(f"{orthanc.url}/system", timeout=5).status_code == 200
