"""Issue 18, item 1: a mount is served offline only when the very server
that filled the disk cache cannot be reached (refused, timed out, 5xx); a
TLS failure, a 4xx, or another server (a changed port, ``https://`` against
plain HTTP) is an error, exit 1, in one line.  An offline mount says so: in
``stats.json``, in ``trolleyfs check``, and on systemd's status line.

The servers are real: an Orthanc of this test's own (stopped and started
again), the TCP forwarder in front of it (plain, or terminating TLS with a
test CA's certificate) on a fixed port, and a small HTTP server answering one
status on that same port."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.certs import make_ca, make_leaf
from tests.mounting import TROLLEYFS, force_unmount, mounted, stop, wait_for, wait_mounted, wait_process_gone
from tests.servers.tcpcount import forwarding
from trolleyfs.demo.orthanc import Orthanc, free_port

pytestmark = pytest.mark.integration

ALICE_FILES = 12 + 6 + 8  # P001: two studies, three series


def config(url: str, disk: Path, extra: str = "") -> str:
    return f"""
[servers.pacs]
search   = {{ protocol = "qido-rs", url = "{url}/dicom-web" }}
retrieve = {{ protocol = "wado-rs", url = "{url}/dicom-web" }}
timeout = 5
retries = 0
{extra}
[[folders]]
name = "alice"
query = {{ PatientID = "P001" }}
[cache]
disk_dir = "{disk}"
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(text)
    cfg.chmod(0o600)
    return cfg


def mount(cfg: Path, mnt: Path, log: Path) -> subprocess.CompletedProcess[str]:
    """``trolleyfs mount`` as a user runs it: it returns once mounted (or not)."""
    mnt.mkdir(exist_ok=True)
    return subprocess.run(
        [*TROLLEYFS, "mount", "--log-file", str(log), str(cfg), str(mnt)], capture_output=True, text=True, timeout=120
    )


def one_line_error(res: subprocess.CompletedProcess[str], *words: str) -> None:
    assert res.returncode == 1, res
    err = res.stderr.strip()
    assert "\n" not in err and err.startswith("trolleyfs: ") and "Traceback" not in err, err
    for w in words:
        assert w in err, err


def fill(text: str, tmp_path: Path, name: str) -> None:
    """Mount ``text``, list the folder and read every file (the disk cache keeps them)."""
    with mounted(text, tmp_path, name=name) as m:
        files = sorted(p for p in (m.path / "alice").rglob("*.dcm"))
        assert len(files) == ALICE_FILES
        for f in files:
            assert f.read_bytes()[128:132] == b"DICM"


@pytest.fixture
def orthanc(sample_files, tmp_path) -> Iterator[Orthanc]:
    """An Orthanc of this test's own, which the test may stop and start again."""
    server = Orthanc(workdir=str(tmp_path / "orthanc"))
    server.start(timeout=120)
    try:
        server.upload(sample_files)
        yield server
    finally:
        server.cleanup()


@contextlib.contextmanager
def answering(port: int, status: int) -> Iterator[None]:
    """An HTTP server on ``port`` that answers every request with ``status``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"message": f"answered {status} by the test"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer.allow_reuse_address = True
    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@contextlib.contextmanager
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET; yields its
    path and the messages received so far (filled by a thread)."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    got: list[str] = []
    done = threading.Event()

    def receive() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                got.append(sock.recv(4096).decode())

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    try:
        yield path, got
    finally:
        done.set()
        thread.join(10)
        sock.close()


def test_the_server_that_filled_the_cache_unreachable_mounts_offline_and_says_so(orthanc, tmp_path):
    disk = tmp_path / "cache"
    text = config(orthanc.url, disk)
    fill(text, tmp_path, "online")
    orthanc.stop()  # the PACS is gone from here on
    cfg = write(tmp_path, "offline", text)
    mnt = tmp_path / "offline"
    try:
        res = mount(cfg, mnt, tmp_path / "offline.log")
        assert res.returncode == 0, res
        assert "mounting offline" in res.stderr and res.stderr.count("\n") == 1, res.stderr
        wait_mounted(mnt, None, tmp_path / "offline.log")
        files = sorted((mnt / "alice").rglob("*.dcm"))
        assert len(files) == ALICE_FILES and all(f.read_bytes()[128:132] == b"DICM" for f in files)
        stats = json.loads((mnt / ".trolleyfs" / "stats.json").read_text())
        entry = stats["offline"]["pacs"]
        assert "cannot connect" in entry["reason"] and entry["since"] and entry["for_s"] >= 0
        assert entry["oldest_listing_shown_age_s"] >= 0 and entry["oldest_listing_shown"]
    finally:
        force_unmount(mnt)
        wait_process_gone(str(cfg))
    # `check` says it: the search row is offline (not FAILED), and the exit code is 1
    res = subprocess.run([*TROLLEYFS, "check", str(cfg)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res
    search = next(ln for ln in res.stdout.splitlines() if ln.startswith("pacs ") and " search " in ln)
    assert "offline: " in search and "the disk cache keeps" in search, res.stdout
    retrieve = next(ln for ln in res.stdout.splitlines() if ln.startswith("pacs ") and " retrieve " in ln)
    assert "skipped: not tried" in retrieve, res.stdout
    # under systemd (Type=notify): READY=1, then a status line naming the offline server
    with notify_socket(tmp_path) as (path, said):
        log = tmp_path / "fg.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [*TROLLEYFS, "mount", "-f", str(cfg), str(mnt)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "NOTIFY_SOCKET": path},
            )
        try:
            wait_mounted(mnt, proc, log)
            wait_for(
                lambda: any("OFFLINE: pacs unreachable since" in m for m in said),
                "the status line",
                detail=said.__repr__,
            )
            assert any("READY=1" in m for m in said)
            force_unmount(mnt)
            assert proc.wait(120) == 0  # unmounted: it ends by itself
        finally:
            force_unmount(mnt)
            stop(proc)


def tls_context(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a certificate for 127.0.0.1 from a test CA, and the CA."""
    d = tmp_path / "tls"
    d.mkdir()
    make_ca(d, "ca")
    make_leaf(
        d,
        "server",
        "ca",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1\n",
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "server.pem", d / "server.key")
    return ctx, d / "ca.pem"


def test_only_an_outage_of_that_same_server_mounts_offline(orthanc, tmp_path):
    disk = tmp_path / "cache"
    mnt = tmp_path / "mnt"
    log = tmp_path / "mount.log"
    ctx, ca = tls_context(tmp_path)
    plain_port, tls_port = free_port(), free_port()
    plain = f"http://127.0.0.1:{plain_port}"
    secure = f"https://127.0.0.1:{tls_port}"
    trust = f'ca_bundle = "{ca}"'
    # the disk cache is filled from two addresses: plain HTTP and HTTPS, each in front of the Orthanc
    with forwarding("127.0.0.1", orthanc.http_port, plain_port):
        fill(config(plain, disk), tmp_path, "plain")
    with forwarding("127.0.0.1", orthanc.http_port, tls_port, ctx):
        fill(config(secure, disk, trust), tmp_path, "secure")
    try:
        # the same address as filled the cache, now speaking plain HTTP to https://: a TLS failure, not an outage
        with forwarding("127.0.0.1", orthanc.http_port, tls_port):
            res = mount(write(tmp_path, "tls-gone", config(secure, disk, trust)), mnt, log)
        one_line_error(res, "TLS handshake failed")
        # the same address answering 4xx (429: ask later) is an answer: exit 1
        with answering(plain_port, 429):
            res = mount(write(tmp_path, "busy", config(plain, disk)), mnt, log)
        one_line_error(res, "429", "answered 429 by the test")
        # (b) a changed port: another server, whose listings the cache never kept
        other = f"http://127.0.0.1:{free_port()}"
        res = mount(write(tmp_path, "port", config(other, disk)), mnt, log)
        one_line_error(res, "cannot connect", "keeps nothing listed from this server")
        # (c) https:// against Orthanc's plain HTTP
        res = mount(write(tmp_path, "https", config(orthanc.url.replace("http:", "https:"), disk, trust)), mnt, log)
        one_line_error(res, "TLS handshake failed", "use http://")
        assert not os.path.ismount(mnt)
        # ... but a 5xx is an outage: served offline from what it filled
        with answering(plain_port, 503):
            cfg = write(tmp_path, "down", config(plain, disk))
            res = mount(cfg, mnt, log)
            assert res.returncode == 0 and "mounting offline" in res.stderr and "503" in res.stderr, res
            wait_mounted(mnt, None, log)
            assert len(sorted((mnt / "alice").rglob("*.dcm"))) == ALICE_FILES
            assert "503" in json.loads((mnt / ".trolleyfs" / "stats.json").read_text())["offline"]["pacs"]["reason"]
    finally:
        force_unmount(mnt)
        wait_process_gone(str(tmp_path / "down.toml"))
