"""``trolleyfs prefetch`` through real mounts of real Orthancs: --check fetches
nothing (counted at a proxy) and says what is missing; a prefetch fills the
caches with one series request per series; the bar is drawn on a terminal
(under ``script``) and plain lines go down a pipe; Ctrl-C stops it cleanly; and
the offline promise: prefetch, stop Orthanc, remount, read everything."""

from __future__ import annotations

import errno
import os
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.mounting import TROLLEYFS, force_unmount, mounted, wait_for, wait_mounted, wait_process_gone
from tests.servers.proxy import FaultProxy
from trolleyfs.demo import sampledata
from trolleyfs.demo.orthanc import Orthanc

pytestmark = pytest.mark.integration

ALICE_FILES = 12 + 6 + 8  # P001: two studies, three series


def config(url: str, disk: Path | None, folders: str = "", cache_extra: str = "") -> str:
    lines = ([f'disk_dir = "{disk}"'] if disk else []) + ([cache_extra] if cache_extra else [])
    cache = "[cache]\n" + "\n".join(lines) + "\n" if lines else ""
    return f"""
[servers.pacs]
search   = {{ protocol = "qido-rs", url = "{url}/dicom-web" }}
retrieve = {{ protocol = "wado-rs", url = "{url}/dicom-web" }}
timeout = 5
retries = 1
[[folders]]
name = "alice"
query = {{ PatientID = "P001" }}
[[folders]]
name = "bob"
query = {{ PatientID = "P002" }}
{folders}
{cache}
"""


def prefetch(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TROLLEYFS, "prefetch", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def retrieves(proxy: FaultProxy) -> int:
    """WADO-RS requests: paths that end with a series or instance UID (not a search)."""
    with proxy.lock:
        return sum(
            1 for ln in proxy.log if "/series/" in ln and not ln.split("?")[0].endswith(("/series", "/instances"))
        )


def list_tree(d: Path) -> list[Path]:
    """Every file under ``d``, found by listing only (os.walk never stats a file)."""
    return sorted(Path(root) / f for root, _, files in os.walk(d) for f in files)


@pytest.fixture
def proxy(orthanc):
    with FaultProxy(orthanc.url) as p:
        yield p


def test_check_fetches_nothing_and_prefetch_fills_the_caches_a_series_at_a_time(orthanc, proxy, tmp_path):
    with mounted(config(proxy.url, tmp_path / "cache"), tmp_path) as m:
        with proxy.lock:
            proxy.log.clear()  # what the pre-flight asked (it reads one instance)
        alice = m.path / "alice"
        res = prefetch("--check", alice)
        assert res.returncode == 1, res
        assert (
            f"check: 0 of {ALICE_FILES} files would be read without the server (in the disk cache: 0); "
            f"{ALICE_FILES} missing" in res.stdout
        )
        assert "  missing: " in res.stdout and "... and 16 more" in res.stdout
        assert retrieves(proxy) == 0 and m.stats()["instances_fetched"] == 0  # listed, nothing fetched
        res = prefetch(alice)
        assert res.returncode == 0, res
        assert f"prefetch: read {ALICE_FILES} of {ALICE_FILES} files" in res.stdout
        assert f"in the disk cache: {ALICE_FILES} of {ALICE_FILES} files" in res.stdout
        assert retrieves(proxy) <= 2 * 3  # per series: its first file, then one series request
        # (a WADO-RS series answer carries the series' first file again)
        assert ALICE_FILES <= m.stats()["instances_fetched"] <= ALICE_FILES + 3
        res = prefetch("--check", alice, m.path / "bob" / "2022-07-20 TEST BOB MR Brain" / "001 MR T1 sag" / "0001.dcm")
        assert res.returncode == 1, res
        assert (
            f"{ALICE_FILES} of {ALICE_FILES + 1} files would be read without the server "
            f"(in the disk cache: {ALICE_FILES}); 1 missing" in res.stdout
        )
        before = retrieves(proxy)
        files = list_tree(alice)
        assert len(files) == ALICE_FILES
        for f in files:
            assert f.read_bytes() == orthanc.instance_file(os.getxattr(f, "user.dicom.SOPInstanceUID").decode())
        assert retrieves(proxy) == before  # all from the caches
        res = prefetch("--check", alice)
        assert res.returncode == 0 and f"{ALICE_FILES} of {ALICE_FILES} files would be read" in res.stdout, res


def test_the_mount_root_counts_each_instance_once_and_walks_only_its_folders(orthanc, sample_files, tmp_path):
    """Issue 18, item 8: from the root, ``prefetch`` walks the folders (not
    by-uid/, by-accession/, by-patient/ or query/, which show the same studies
    again), and a study shown by two folders counts once; what the user names
    is walked whatever it is; and one file is "1 file"."""
    everything = '[[folders]]\nname = "everything"\nquery = {}\n'
    with mounted(config(orthanc.url, tmp_path / "cache", everything), tmp_path) as m:
        # studies looked up by number, patient, query and UID: shown again under the root's own directories
        for looked_up in (
            m.path / "by-accession" / "A1001",
            m.path / "by-patient" / "P001",
            m.path / "query" / "PatientID=P002",
            m.path / "by-uid" / sampledata.uid("study", "P004", 4),
        ):
            assert list_tree(looked_up)
        total = len(sample_files)  # every instance once, though alice and bob are also under "everything"
        res = prefetch("--check", m.path)
        assert res.returncode == 1, res
        assert f"check: 0 of {total} files would be read without the server" in res.stdout, res.stdout
        res = prefetch(m.path / "by-accession" / "A1001")  # named: walked
        assert res.returncode == 0 and "prefetch: read 18 of 18 files" in res.stdout, res
        res = prefetch("--check", m.path)
        assert f"check: 18 of {total} files would be read without the server" in res.stdout, res.stdout
        one = m.path / "bob" / "2022-07-20 TEST BOB MR Brain" / "001 MR T1 sag" / "0001.dcm"
        res = prefetch(one)
        assert res.returncode == 0 and "prefetch: read 1 of 1 file, " in res.stdout, res
        res = prefetch("--check", one)
        assert res.returncode == 0 and "check: 1 of 1 file would be read without the server" in res.stdout, res


def test_plain_lines_in_a_pipe_and_a_bar_on_a_terminal(proxy, tmp_path):
    if shutil.which("script") is None:
        pytest.fail("script is not installed (apt-get install bsdutils)")
    with mounted(config(proxy.url, None), tmp_path) as m:
        list_tree(m.path / "alice")  # listed now; the reads below are what is slow
        proxy.delay = 0.2
        res = prefetch("--interval", "0.05", "--jobs", "2", m.path / "alice")
        assert res.returncode == 0, res
        lines = res.stdout.splitlines()
        assert "\r" not in res.stdout and all(ln.startswith("prefetch: ") for ln in lines), lines
        assert lines[0] == f"prefetch: reading {ALICE_FILES} files (size not known yet)"
        progress = [
            ln for ln in lines if re.match(r"^prefetch: \d+/26 files, [\d.]+/~?[\d.]+ MB, [\d.]+ MB/s, ETA ", ln)
        ]
        assert progress, lines  # at least one periodic line while the slow reads went on
        assert lines[-1].startswith(f"prefetch: read {ALICE_FILES} of {ALICE_FILES} files")
        proxy.delay = 0.0
        cmd = shlex.join([*TROLLEYFS, "prefetch", str(m.path / "bob")])
        tty = subprocess.run(
            ["script", "-qec", cmd, "/dev/null"], capture_output=True, timeout=300, stdin=subprocess.DEVNULL
        )
        assert tty.returncode == 0, tty
        out = tty.stdout.decode()  # carriage returns kept: they are how a bar redraws itself
        assert "\r" in out and "100%|" in out and "14/14 files" in out and "B/s" in out, out  # tqdm's bar
        assert "prefetch: read 14 of 14 files" in out


def _ctrl_c_as_in_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_a_prefetch_cleanly_and_the_mount_goes_on(proxy, tmp_path):
    # one request per file (no readahead), each waiting 2 s at the server: the
    # prefetch takes about a minute, so its Ctrl-C comes long before it could
    # end, however slow or busy the machine; a read in progress ends within 2 s
    with mounted(config(proxy.url, None, cache_extra='readahead = "off"'), tmp_path) as m:
        list_tree(m.path / "alice")
        proxy.delay = 2.0
        out = tmp_path / "prefetch.out"
        with open(out, "w") as f:
            # as from a terminal: a shell without job control (a CI script run in the
            # background) starts its children with SIGINT ignored, and so would this one be
            proc = subprocess.Popen(
                [*TROLLEYFS, "prefetch", "--jobs", "1", str(m.path / "alice")],
                stdout=f,
                stderr=subprocess.PIPE,
                text=True,
                preexec_fn=_ctrl_c_as_in_a_terminal,
            )
        try:
            wait_for(lambda: "reading" in out.read_text(), "the prefetch to start reading")
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()  # reaps it and closes its pipe
        assert proc.returncode == 130
        assert re.search(r"^prefetch: stopped: \d+ of 26 files read", out.read_text(), re.M), out.read_text()
        assert "Traceback" not in err, err
        proxy.reset()
        files = list_tree(m.path / "alice")
        assert len(files) == ALICE_FILES and len(files[-1].read_bytes()) > 1000  # the mount still serves


def test_offline_after_prefetch_every_file_reads_from_the_disk_cache_after_a_remount(sample_files, tmp_path):
    disk = tmp_path / "cache"
    want = {}
    server = Orthanc(workdir=str(tmp_path / "orthanc"))
    server.start(timeout=120)
    try:
        server.upload(sample_files)
        cfg_text = config(server.url, disk)
        with mounted(cfg_text, tmp_path, name="online") as m:
            res = prefetch(m.path / "alice")
            assert res.returncode == 0, res
            for f in list_tree(m.path / "alice"):
                want[str(f.relative_to(m.path))] = f.read_bytes()
            bob = list_tree(m.path / "bob")  # listed, never read
            assert len(bob) == 14
    finally:
        server.cleanup()  # the PACS is gone from here on
    assert len(want) == ALICE_FILES
    cfg = tmp_path / "offline.toml"
    cfg.write_text(cfg_text)
    cfg.chmod(0o600)
    mnt = tmp_path / "offline"
    mnt.mkdir()
    try:
        res = subprocess.run(
            [*TROLLEYFS, "mount", "--log-file", str(tmp_path / "offline.log"), str(cfg), str(mnt)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0, res
        warnings = res.stderr.strip().splitlines()
        assert len(warnings) == 1 and warnings[0].startswith("trolleyfs: warning: server 'pacs'"), res.stderr
        assert "unreachable" in warnings[0] and "mounting offline" in warnings[0]
        wait_mounted(mnt, None, tmp_path / "offline.log")
        got = {str(f.relative_to(mnt)): f.read_bytes() for f in list_tree(mnt / "alice")}
        assert got.keys() == want.keys()
        assert all(got[k] == want[k] for k in want)  # byte-identical, from the disk cache
        res = prefetch("--check", mnt / "alice")
        assert res.returncode == 0 and "26 of 26 files would be read without the server" in res.stdout, res
        bob = list_tree(mnt / "bob")
        assert len(bob) == 14  # its listing was kept, its files were not
        with pytest.raises(OSError) as exc:
            bob[0].read_bytes()
        assert exc.value.errno == errno.EIO
        for never_listed in (mnt / "by-uid" / sampledata.uid("study", "P004", 4), mnt / "by-patient" / "P004"):
            with pytest.raises(OSError) as exc:
                os.listdir(never_listed)
            assert exc.value.errno == errno.EIO, never_listed
    finally:
        force_unmount(mnt)
        wait_process_gone(str(cfg))
    # with nothing kept for a server, an unreachable one still fails the mount
    empty = tmp_path / "empty.toml"
    empty.write_text(config(server.url, tmp_path / "empty-cache"))
    empty.chmod(0o600)
    res = subprocess.run([*TROLLEYFS, "mount", str(empty), str(mnt)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "failed: pacs: study search: cannot connect" in res.stderr, res
    assert not os.path.ismount(mnt)
