"""dcmtk's ``dcmqrscp`` as a second real DICOM Q/R peer (C-FIND, C-GET), filled
with DICOM objects by dcmtk's ``storescu``.

``dcmqrscp`` has no option to choose the address it listens on and binds to all
interfaces.  Test servers must listen on loopback only, so it is started with a
tiny ``LD_PRELOAD`` shim (compiled here with the system C compiler) that turns
a ``bind()`` to the wildcard address into a ``bind()`` to 127.0.0.1 / ::1.

Use as a context manager::

    with Dcmqrscp(files).start() as qr:
        ... qr.host, qr.port, qr.aet ...
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path


def _dcmtk(name: str) -> str:
    """dcmtk's binary: Debian's first, since pynetdicom installs a ``storescu``
    of its own (other options) into the virtualenv's bin directory."""
    debian = f"/usr/bin/{name}"
    return debian if os.path.exists(debian) else (shutil.which(name) or debian)


DCMQRSCP = _dcmtk("dcmqrscp")
STORESCU = _dcmtk("storescu")

_SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

/* bind() to the wildcard address becomes bind() to loopback */
int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real_bind)(int, const struct sockaddr *, socklen_t);
    if (!real_bind) real_bind = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    if (addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in a;
        memcpy(&a, addr, sizeof a);
        if (a.sin_addr.s_addr == htonl(INADDR_ANY)) {
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
        }
    } else if (addr && addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 a;
        memcpy(&a, addr, sizeof a);
        if (memcmp(&a.sin6_addr, &in6addr_any, sizeof a.sin6_addr) == 0) {
            a.sin6_addr = in6addr_loopback;
            return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
        }
    }
    return real_bind(fd, addr, len);
}
"""


# Debian's dcmtk leaves Nagle's algorithm on unless told otherwise: with it every
# small DIMSE message waits for a delayed ACK (about 40 ms a message).
_NODELAY = {"TCP_NODELAY": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _compile_shim(workdir: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("a C compiler is needed to keep dcmqrscp on loopback (apt-get install gcc)")
    src, lib = workdir / "loopback_bind.c", workdir / "loopback_bind.so"
    src.write_text(_SHIM_C)
    proc = subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(src), "-ldl"], capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"cannot compile the loopback shim: {proc.stderr.decode(errors='replace')}")
    return lib


def _listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp* shows them) with a socket listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, _, hexport = fields[1].rpartition(":")
            if int(hexport, 16) == port and fields[3] == "0A":  # 0A = LISTEN
                found.add(addr)
    return found


_LOOPBACK_HEX = {"0100007F", "00000000000000000000000001000000"}


class Dcmqrscp:
    """A running ``dcmqrscp`` holding ``files`` (Part-10 bytes) under AE title ``aet``."""

    def __init__(
        self,
        files: Iterable[bytes] = (),
        aet: str = "STORE",
        port: int | None = None,
        move_destinations: dict[str, tuple[str, str, int]] | None = None,
        options: Sequence[str] = (),
    ) -> None:
        """``move_destinations``: name -> (AE title, host, port) of the C-MOVE
        destinations it knows (its HostTable); ``options``: more command-line
        options (e.g. ``-xy``: propose JPEG Baseline beside the uncompressed
        syntaxes when it sends)."""
        self.files = list(files)
        self.aet = aet
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.move_destinations = dict(move_destinations or {})
        self.options = list(options)
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def _config(self, storage: Path) -> str:
        return (
            f"NetworkTCPPort = {self.port}\n"
            "MaxPDUSize = 65536\n"
            "MaxAssociations = 16\n"
            "HostTable BEGIN\n"
            + "".join(f"{n} = ({a}, {h}, {p})\n" for n, (a, h, p) in self.move_destinations.items())
            + "HostTable END\n"
            "VendorTable BEGIN\nVendorTable END\n"
            "AETable BEGIN\n"
            f"{self.aet} {storage} RW (200, 1024mb) ANY\n"
            "AETable END\n"
        )

    def start(self, timeout: float = 120.0) -> Dcmqrscp:
        for binary in (DCMQRSCP, STORESCU):
            if not os.path.exists(binary):
                raise RuntimeError(f"{binary} is not installed (apt-get install dcmtk)")
        self.dir = Path(tempfile.mkdtemp(prefix="trolleyfs-dcmqrscp-"))
        try:
            self._start(timeout)
            self._fill(timeout)
        except BaseException:
            self.cleanup()
            raise
        return self

    def _start(self, timeout: float) -> None:
        assert self.dir is not None
        storage = self.dir / "storage"
        storage.mkdir()
        cfg = self.dir / "dcmqrscp.cfg"
        cfg.write_text(self._config(storage))
        env = dict(os.environ, LD_PRELOAD=str(_compile_shim(self.dir)), **_NODELAY)
        # own session: teardown signals the whole group, including the children forked per association
        with open(self.dir / "dcmqrscp.log", "wb") as log:
            self.proc = subprocess.Popen(
                [DCMQRSCP, "-c", str(cfg), "-ll", "warn", *self.options],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.dir,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dcmqrscp exited with {self.proc.returncode}: {self.log()}")
            addrs = _listening_addresses(self.port)
            if addrs:
                if not addrs <= _LOOPBACK_HEX:
                    raise RuntimeError(f"dcmqrscp listens beyond loopback ({addrs}): the bind shim did not work")
                return
            time.sleep(0.05)
        raise RuntimeError(f"dcmqrscp did not listen on port {self.port} within {timeout}s: {self.log()}")

    def _fill(self, timeout: float) -> None:
        """Send the files with storescu (one association)."""
        if not self.files:
            return
        assert self.dir is not None
        inbox = self.dir / "inbox"
        inbox.mkdir()
        paths = []
        for i, data in enumerate(self.files):
            p = inbox / f"{i:05}.dcm"
            p.write_bytes(data)
            paths.append(str(p))
        proc = subprocess.run(
            [STORESCU, "-aet", "TROLLEYFS-FILL", "-aec", self.aet, self.host, str(self.port), *paths],
            capture_output=True,
            timeout=timeout + len(paths) * 0.5,
            env=dict(os.environ, **_NODELAY),
        )
        if proc.returncode != 0:
            out = (proc.stdout + proc.stderr).decode(errors="replace")[-2000:]
            raise RuntimeError(f"storescu failed with {proc.returncode}: {out}")
        shutil.rmtree(inbox, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.dir / "dcmqrscp.log").read_text(errors="replace")[-2000:] if self.dir else ""
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # the group we created with start_new_session
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # forked per-association children share the group; make sure none is left
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None

    def __enter__(self) -> Dcmqrscp:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
