"""`make demo` runs `trolleyfs demo`: a local Orthanc with sample studies,
mounted and browsable; Ctrl-C unmounts and removes everything it made."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest

from tests.mounting import TROLLEYFS_BIN, force_unmount, stop, wait_for

pytestmark = pytest.mark.integration


def start_demo(tmp_path):
    mnt = tmp_path / "demo"
    out = tmp_path / "demo.out"
    with open(out, "wb") as f:
        proc = subprocess.Popen(
            [TROLLEYFS_BIN, "demo", "--mountpoint", str(mnt)],
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the demo exited with {proc.returncode}:\n{out.read_text()}")
        return "Press Ctrl-C" in out.read_text()

    try:
        wait_for(ready, "the demo to start (Orthanc, sample upload, mount)", detail=out.read_text)
    except AssertionError:
        stop(proc)
        raise
    found = re.search(r"data in ([^ )]+)\) \.\.\.", out.read_text())
    assert found is not None, out.read_text()
    return proc, mnt, out, found.group(1)


def test_demo_stops_orthanc_when_terminated_after_an_external_unmount(tmp_path):
    proc, mnt, out, workdir = start_demo(tmp_path)
    try:
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=True)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, out.read_text()
        assert not os.path.exists(workdir)
        assert workdir not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    finally:
        force_unmount(mnt)
        stop(proc)


def test_demo_mounts_a_browsable_pacs_and_cleans_up(tmp_path):
    proc, mnt, out, workdir = start_demo(tmp_path)
    try:
        assert os.path.isdir(workdir)
        assert sorted(os.listdir(mnt)) == [
            ".trolleyfs",
            "all-studies",
            "by-accession",
            "by-patient",
            "by-uid",
            "query",
            "since-2022",
            "test-patients-ct",
        ]
        assert len(os.listdir(mnt / "all-studies")) == 5
        one = next((mnt / "all-studies").rglob("*.dcm"))
        assert one.read_bytes()[128:132] == b"DICM"
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(30) == 0
        assert not os.path.ismount(mnt)
        assert not os.path.exists(workdir)  # Orthanc's data is gone
        assert "Traceback" not in out.read_text()
    finally:
        force_unmount(mnt)
        stop(proc)
