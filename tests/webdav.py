"""The WebDAV server for tests: ``trolleyfs webdav`` runs as a subprocess on a
free loopback port; it is always ended (SIGTERM, then a kill), also when the
test fails.  Also: a self-signed certificate, davfs2 mounts that are always
unmounted, and the PROPFIND answer read as a dict."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.mounting import TROLLEYFS, wait_for
from trolleyfs.demo.orthanc import free_port

DAV = "{DAV:}"

# the sample study and series the WebDAV tests read (the tree path of tests/integration/test_webdav.py)
STUDY = "2021-03-04 TEST ALICE CT Chest"
SERIES = f"all/{STUDY}/001 CT Axial 5mm"


def need(tool: str) -> None:
    """Fail (never skip) when a client the tests use is missing."""
    if not shutil.which(tool):
        pytest.fail(f"{tool} is not installed: run `make test`, which installs it")


def rclone(*args: str) -> subprocess.CompletedProcess[str]:
    """rclone without a config file; no retries, so that a first attempt that
    fails (a size that differs) fails the test instead of being retried."""
    need("rclone")
    return subprocess.run(
        ["rclone", "--config", "/dev/null", "--retries", "1", "--low-level-retries", "1", *args],
        capture_output=True,
        text=True,
        timeout=280,
    )


def remote(url: str, path: str) -> str:
    return f":webdav,url='{url.rstrip('/')}':{path}"


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    need("curl")
    return subprocess.run(["curl", "-s", "-S", "--max-time", "60", *args], capture_output=True, timeout=120)


@dataclass
class Served:
    url: str  # with a trailing slash
    proc: subprocess.Popen[bytes]
    log: Path
    auth: tuple[str, str] | None = None
    verify: ssl.SSLContext | bool = True  # trusting the test's CA for TLS

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=self.auth, verify=self.verify, timeout=120, **kw)  # type: ignore[arg-type]

    def href(self, path: str) -> str:
        """The URL of a tree path (``a/b c/d.dcm``), percent-encoded."""
        return self.url + quote(path.strip("/"))

    def stats(self) -> dict[str, Any]:
        with self.client() as c:
            r = c.get(".trolleyfs/stats.json")
            r.raise_for_status()
            stats: dict[str, Any] = r.json()
            return stats

    def requests(self) -> int:
        """Requests made to the archive so far."""
        return sum(self.stats()["requests"].values())

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _answering(url: str, verify: ssl.SSLContext | bool) -> bool:
    try:
        httpx.options(url, verify=verify, timeout=5)
    except httpx.HTTPError:
        return False
    return True


@contextmanager
def serving(
    config_text: str,
    tmp_path: Path,
    *args: str,
    name: str = "dav",
    env: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    tls_ca: str | None = None,
    host: str = "127.0.0.1",
    log_level: str = "debug",
) -> Iterator[Served]:
    """``trolleyfs webdav`` on ``config_text``, listening on a free port of
    ``host`` (reached through loopback), until the block ends; it logs at
    ``log_level`` (the benchmarks serve at the default, ``info``)."""
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(config_text)
    cfg.chmod(0o600)
    log = tmp_path / f"{name}.log"
    port = free_port()
    listen = ["--listen", f"{host}:{port}"]
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            [*TROLLEYFS, "webdav", "--log-level", log_level, *listen, *args, str(cfg)],
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
    scheme = "https" if tls_ca else "http"
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=tls_ca) if tls_ca else True
    url = f"{scheme}://127.0.0.1:{port}/"
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"trolleyfs webdav exited with {proc.returncode}:\n{log.read_text()}")
            return _answering(url, verify)

        wait_for(ready, f"the WebDAV server at {url}", detail=lambda: log.read_text())
        yield Served(url, proc, log, auth, verify)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then a kill if it does not end; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def propfind(served: Served, path: str, depth: str = "1", body: str | None = None) -> dict[str, dict[str, str]]:
    """A PROPFIND's answer: tree path -> {property local name: text} of the
    properties answered 200 (``resourcetype`` is "collection" or "")."""
    with served.client() as c:
        r = c.request("PROPFIND", served.href(path), headers={"Depth": depth}, content=body)
    assert r.status_code == 207, (r.status_code, r.text[:500])
    out = {}
    for resp in ET.fromstring(r.content).iter(f"{DAV}response"):
        href = unquote(urlsplit(resp.findtext(f"{DAV}href") or "").path).strip("/")
        props: dict[str, str] = {}
        for ps in resp.iter(f"{DAV}propstat"):
            if " 200 " not in (ps.findtext(f"{DAV}status") or ""):
                continue
            for prop in ps.iter(f"{DAV}prop"):
                for p in prop:
                    local = p.tag.removeprefix(DAV)
                    props[local] = "collection" if p.find(f"{DAV}collection") is not None else (p.text or "")
        out[href] = props
    return out


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trolleyfs test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    ssl.create_default_context(cafile=str(cert_path))  # a usable CA file, or this fails here
    return cert_path, key_path


@contextmanager
def davfs_mounted(url: str, tmp_path: Path, user: str = "anonymous", password: str = "anonymous") -> Iterator[Path]:
    """davfs2 mounts ``url`` read-only (as root); always unmounted after."""
    if not shutil.which("mount.davfs"):
        raise AssertionError("davfs2 is not installed: run `make test`, which installs it")
    mnt = tmp_path / "davfs"
    mnt.mkdir()
    secrets = tmp_path / "davfs.secrets"
    secrets.write_text(f'{url} "{user}" "{password}"\n')
    secrets.chmod(0o600)
    # davfs2 works as its own user, which cannot enter pytest's private temp dirs
    cache = Path(tempfile.mkdtemp(prefix="trolleyfs-davfs-"))
    cache.chmod(0o777)
    conf = tmp_path / "davfs.conf"
    # buf_size 64: davfs2 1.6.1 on Linux 6.16+ fails every listing with "Invalid argument" without it
    conf.write_text(f"buf_size 64\nuse_locks 0\nsecrets {secrets}\ncache_dir {cache}\n")
    res = subprocess.run(
        ["mount", "-t", "davfs", "-o", f"ro,conf={conf}", url, str(mnt)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    try:
        assert res.returncode == 0, f"mount -t davfs failed ({res.returncode}): {res.stderr}"
        yield mnt
    finally:
        with suppress(subprocess.TimeoutExpired):
            subprocess.run(["umount", str(mnt)], capture_output=True, timeout=120)
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        shutil.rmtree(cache, ignore_errors=True)
