"""`make demo` runs `trolleyfs demo`: a local Orthanc with generated studies,
mounted with the README's config, so that the README's session works as
printed: every command of it is run here against the demo (``/mnt/pacs`` the
demo's mount point, ``~`` a temp dir), what the README prints for an ``ls`` is
what the mount lists, and its last command, ``trolleyfs unmount``, ends the
demo, which removes everything it made."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mounting import TROLLEYFS_BIN, force_unmount, stop, wait_for
from trolleyfs.demo.runner import CONFIG, SESSION

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
SETUP = ("pipx install", "make install", "trolleyfs mount")  # the user's own steps: the demo does them


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
        return "stops the demo" in out.read_text()

    try:
        wait_for(ready, "the demo to start (Orthanc, sample upload, mount)", detail=out.read_text)
    except AssertionError:
        stop(proc)
        raise
    found = re.search(r"data in ([^ )]+)\) \.\.\.", out.read_text())
    assert found is not None, out.read_text()
    return proc, mnt, out, found.group(1)


def readme_session() -> list[tuple[str, list[str]]]:
    """The README's session: each command and the lines it prints there."""
    text = README.read_text()
    block = re.search(r"^## A session\n.*?^```\n(.*?)^```", text, re.M | re.S)
    assert block, "the README has no session block under '## A session'"
    steps: list[tuple[str, list[str]]] = []
    for line in block.group(1).splitlines():
        if line.startswith("$ "):
            steps.append((re.sub(r"\s{2,}#.*$", "", line[2:]).strip(), []))
        elif steps and line.strip():
            steps[-1][1].append(line)
    return steps


def readme_config() -> str:
    """The README's minimal config block (the first ```toml block)."""
    block = re.search(r"^```toml\n(.*?)^```", README.read_text(), re.M | re.S)
    assert block, "the README has no ```toml block"
    return block.group(1)


def test_the_readme_shows_the_demos_session_and_config():
    commands = [cmd for cmd, _ in readme_session() if not cmd.startswith(SETUP)]
    assert commands == list(SESSION)
    demo = CONFIG.format(dicomweb="http://127.0.0.1:8042/dicom-web")
    assert readme_config().strip() == demo.strip()


def test_the_readmes_session_runs_as_printed_against_the_demo(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc, mnt, out, workdir = start_demo(tmp_path)
    try:
        for cmd, printed in readme_session():
            if cmd.startswith(SETUP):
                continue
            run = cmd.replace("/mnt/pacs", str(mnt))  # (a temp dir without spaces)
            done = subprocess.run(["bash", "-c", run], capture_output=True, text=True, timeout=300, env=env)
            assert done.returncode == 0, (cmd, done.stdout, done.stderr)
            if cmd.startswith("ls ") and printed:  # in columns on a terminal (quoted as ls quotes), a name a line here
                shown = {name for line in printed for name in shlex.split(line)}
                assert set(done.stdout.splitlines()) == shown, (cmd, done.stdout)
            if cmd.startswith("trolleyfs prefetch"):  # its summary, up to the numbers of this machine
                assert printed[-1].split(",")[0] in done.stdout, (cmd, done.stdout)
        assert len(list((home / "case1").glob("*.dcm"))) == 240
        assert len(list((home / "nifti").glob("*.nii"))) == 1  # dcm2niix stacked the 240 slices into a volume
        assert proc.wait(60) == 0  # the session's `trolleyfs unmount` ended the demo
        assert not os.path.ismount(mnt)
        assert not os.path.exists(workdir)  # Orthanc's data is gone
        assert "Traceback" not in out.read_text()
    finally:
        force_unmount(mnt)
        stop(proc)


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


def test_ctrl_c_unmounts_and_cleans_up(tmp_path):
    proc, mnt, out, workdir = start_demo(tmp_path)
    try:
        assert os.path.isdir(workdir)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(30) == 0
        assert not os.path.ismount(mnt)
        assert not os.path.exists(workdir)
        assert "Traceback" not in out.read_text()
    finally:
        force_unmount(mnt)
        stop(proc)
