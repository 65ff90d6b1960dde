"""Issue 18, items 2, 3, 4, 6 and 7: what a new user meets at the command line.

* a wrong retrieve URL fails the mount (one instance is read first), and a
  listed file whose retrieval fails is EIO, never "No such file";
* a mount in the background logs somewhere it can be found: syslog where it
  answers, else a file it names once, and systemd's journal under systemd;
* a mount point that holds files is refused unless ``-o nonempty``;
* ``check`` says ok only for what ran and passed (``skipped`` otherwise, with
  its own exit code);
* errors say what the server said (not a cut JSON document), with a hint for
  the common mistakes: Orthanc's REST root for its DICOMweb root, a busy
  unmount, a mount point that is a file.

The mounts and commands are real processes against the session's Orthanc
(and, where a test needs one empty, an Orthanc of its own)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mounting import TROLLEYFS, force_unmount, mounted, qido_config, stop, wait_for, wait_process_gone
from trolleyfs.demo.orthanc import Orthanc, free_port

pytestmark = pytest.mark.integration

FOLDER = '\n[[folders]]\nname = "all"\nquery = {}\n'


def run(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TROLLEYFS, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def one_line(res: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    err = res.stderr.strip()
    assert res.returncode == code, res
    assert "\n" not in err and err.startswith("trolleyfs: ") and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


def write(tmp_path: Path, text: str, name: str = "pacs") -> Path:
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(text)
    cfg.chmod(0o600)
    return cfg


def config(search: str, retrieve: str, folders: str = FOLDER) -> str:
    return f"""
[servers.pacs]
search   = {{ protocol = "qido-rs", url = "{search}" }}
retrieve = {{ protocol = "wado-rs", url = "{retrieve}" }}
timeout = 10
retries = 0
{folders}
"""


@pytest.fixture
def mnt(tmp_path) -> Iterator[Path]:
    m = tmp_path / "mnt"
    m.mkdir()
    yield m
    force_unmount(m)


# --------------------------------------------------------------------------- item 2: retrieval


def test_a_wrong_retrieve_url_fails_the_mount_and_a_listed_file_that_cannot_be_fetched_is_eio(orthanc, tmp_path, mnt):
    cfg = write(tmp_path, config(orthanc.dicomweb, orthanc.url))  # retrieve at Orthanc's REST root: 404s
    res = run("mount", cfg, mnt)
    one_line(res, 1, "server 'pacs' retrieve", "404", "DICOMweb root")
    assert not os.path.ismount(mnt)
    # mounted anyway (--no-check): the files are listed, and reading one is an I/O error, logged
    with mounted(config(orthanc.dicomweb, orthanc.url), tmp_path, "--no-check", name="nocheck") as m:
        one = next((m.path / "all").rglob("*.dcm"))
        done = subprocess.run(["cp", str(one), str(tmp_path / "x.dcm")], capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and "Input/output error" in done.stderr, done.stderr
        assert "No such file" not in done.stderr
        assert "was listed by it: the file cannot be fetched" in m.log_text()


# --------------------------------------------------------------------------- item 3: logs


@contextlib.contextmanager
def syslog_socket(path: Path) -> Iterator[list[str]]:
    """A datagram socket that receives what a syslog client sends."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    got: list[str] = []
    done = threading.Event()

    def receive() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                got.append(sock.recv(65536).decode(errors="replace"))

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    try:
        yield got
    finally:
        done.set()
        thread.join(10)
        sock.close()


def daemon_mount(cfg: Path, mnt: Path, env: dict[str, str], stderr: Path | None = None) -> tuple[int, str]:
    """``trolleyfs mount`` as a user (or systemd) runs it; its exit code and what it said."""
    base = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "INVOCATION_ID", "XDG_STATE_HOME")}
    with open(stderr or os.devnull, "wb") as err_file:
        proc = subprocess.run(
            [*TROLLEYFS, "mount", str(cfg), str(mnt)],
            stdout=subprocess.PIPE,
            stderr=err_file if stderr else subprocess.PIPE,
            timeout=120,
            env={**base, **env},
        )
    said = stderr.read_text() if stderr else proc.stderr.decode()
    return proc.returncode, said


def test_without_syslog_a_background_mount_logs_to_a_file_it_names(orthanc, tmp_path, mnt):
    cfg = write(tmp_path, qido_config(orthanc, FOLDER))
    state = tmp_path / "state"
    env = {"XDG_STATE_HOME": str(state), "TROLLEYFS_SYSLOG_SOCKET": str(tmp_path / "no-syslog-here")}
    try:
        code, said = daemon_mount(cfg, mnt, env)
        assert code == 0, said
        log = state / "trolleyfs" / "trolleyfs.log"
        assert said.strip() == f"trolleyfs: no syslog here ({tmp_path / 'no-syslog-here'}): logging to {log}"
        wait_for(lambda: "mounted" in log.read_text(), "the mount's log line in its file", detail=log.read_text)
        os.listdir(mnt / "all")
    finally:
        force_unmount(mnt)
        wait_process_gone(str(cfg))
    assert "unmounted" in log.read_text()


def test_a_background_mount_logs_to_syslog_where_it_answers(orthanc, tmp_path, mnt):
    cfg = write(tmp_path, qido_config(orthanc, FOLDER))
    with syslog_socket(tmp_path / "log.sock") as got:
        try:
            code, said = daemon_mount(cfg, mnt, {"TROLLEYFS_SYSLOG_SOCKET": str(tmp_path / "log.sock")})
            assert code == 0 and said == "", said
            wait_for(
                lambda: any("trolleyfs[" in g and "mounted" in g for g in got), "a syslog datagram", detail=got.__repr__
            )
        finally:
            force_unmount(mnt)
            wait_process_gone(str(cfg))


def test_under_systemd_a_background_mount_logs_to_the_journal_on_stderr(orthanc, tmp_path, mnt):
    cfg = write(tmp_path, qido_config(orthanc, FOLDER))
    journal = tmp_path / "journal"
    try:
        code, _ = daemon_mount(cfg, mnt, {"INVOCATION_ID": "0123456789abcdef"}, stderr=journal)
        assert code == 0, journal.read_text()
        wait_for(
            lambda: "INFO trolleyfs: mounted" in journal.read_text(), "a log line on stderr", detail=journal.read_text
        )
        assert not journal.read_text().startswith("20")  # no time stamp: the journal adds its own
    finally:
        force_unmount(mnt)
        wait_process_gone(str(cfg))


# --------------------------------------------------------------------------- item 4: a mount point with files


def test_a_mount_point_that_holds_files_is_refused_unless_nonempty(orthanc, tmp_path, mnt):
    cfg = write(tmp_path, qido_config(orthanc, FOLDER))
    (mnt / "notes.txt").write_text("mine")
    for args in (["mount", cfg, mnt], ["mount", "-f", cfg, mnt]):
        one_line(run(*args), 2, "not empty", "1 entry", "-o nonempty")
        assert not os.path.ismount(mnt) and (mnt / "notes.txt").read_text() == "mine"
    try:
        res = run("mount", "-o", "nonempty", cfg, mnt)
        assert res.returncode == 0, res
        assert "notes.txt" not in os.listdir(mnt) and "all" in os.listdir(mnt)  # hidden while mounted
    finally:
        force_unmount(mnt)
        wait_process_gone(str(cfg))
    assert (mnt / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------- item 6: check's three states


def test_check_says_skipped_for_what_it_could_not_try(tmp_path):
    with Orthanc(workdir=str(tmp_path / "empty")) as empty:  # holds no study: nothing to read
        cfg = write(tmp_path, config(empty.dicomweb, empty.dicomweb, ""))
        res = run("check", cfg)
    assert res.returncode == 3, res
    rows = res.stdout.splitlines()[2:]
    assert "ok: answered (no studies)" in rows[0]
    assert "skipped: not tried (the server holds no study to read)" in rows[1]
    # a search that fails: FAILED, and the read it would have led to is skipped, not ok
    down = f"http://127.0.0.1:{free_port()}/dicom-web"
    res = run("check", write(tmp_path, config(down, down, ""), "down"))
    assert res.returncode == 1, res
    search, retrieve = res.stdout.splitlines()[2:4]
    assert "FAILED: " in search and "cannot connect" in search
    assert "skipped: not tried (the search failed)" in retrieve and "ok" not in retrieve.split()[4:5]


# --------------------------------------------------------------------------- item 7: messages


def test_a_server_message_is_summarized_with_a_hint_for_orthancs_rest_root(orthanc, tmp_path, mnt):
    cfg = write(tmp_path, config(orthanc.url, orthanc.dicomweb))  # search at the REST root: 400 with a JSON body
    err = one_line(run("mount", cfg, mnt), 1, "HTTP 400 Bad Request", "DICOMweb root", "/dicom-web")
    assert "{" not in err and "HttpError" not in err, err  # the words, not a cut document
    assert 'Bad request (Missing "since" argument' in err, err
    res = run("check", cfg)
    search = res.stdout.splitlines()[2]
    assert res.returncode == 1 and "FAILED: " in search and "DICOMweb root" in search and "{" not in search, res


def test_a_busy_unmount_says_how_to_detach(orthanc, tmp_path):
    with mounted(qido_config(orthanc, FOLDER), tmp_path) as m:
        sleeper = subprocess.Popen(["sleep", "120"], cwd=m.path / "all")  # a shell left inside the mount
        try:
            err = one_line(run("unmount", m.path), 2, "busy", f"trolleyfs unmount -z {m.path}")
            assert os.path.ismount(m.path), err
            assert run("unmount", "-z", m.path).returncode == 0
            assert not os.path.ismount(m.path)
        finally:
            stop(sleeper)


def test_a_mount_point_that_is_a_file_is_called_a_file(orthanc, tmp_path):
    cfg = write(tmp_path, qido_config(orthanc, FOLDER))
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    one_line(run("mount", cfg, a_file), 2, "mount point is a file, not a directory")
    one_line(run("mount", cfg, a_file / "sub"), 2, f"{a_file} is a file, not a directory")
    one_line(run("unmount", a_file), 2, "is a file, not a mount point")
    one_line(run("demo", "--mountpoint", a_file), 2, "mount point is a file, not a directory")
    assert a_file.read_text() == "mine"
    one_line(run("mount", cfg, tmp_path / "nowhere"), 2, "does not exist", "mkdir -p")
