"""pynetdicom's ``qrscp`` application as a third real DICOM Q/R peer: it runs
from the virtualenv (it needs SQLAlchemy), listens on loopback, is filled by
C-STORE, and answers C-FIND and C-GET.  Two of its habits are what the tests
need: a STUDY-level C-FIND answers one row per stored instance, and as a
C-GET sender it uses an accepted context of the object's own transfer syntax
when there is one (otherwise it converts: from a context offering Explicit
and Implicit VR it accepts Implicit).

It stores each object re-encoded by pydicom in the transfer syntax it was
received in: :meth:`QrScp.stored` is that file, what "as the archive stores
it" means for this peer.

Use::

    with QrScp(files) as qr:
        ... qr.host, qr.port, qr.aet, qr.stored(uid) ...
"""

from __future__ import annotations

import io
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import pydicom
from pydicom.uid import UID
from pynetdicom import AE

from tests.servers.dcmqrscp import free_port

AET = "QRSCP"


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"qrscp exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"qrscp did not listen within {timeout:.0f} s:\n{log.read_text()}") from None
            time.sleep(0.1)


class QrScp:
    def __init__(self, files: Iterable[bytes]) -> None:
        self.files = list(files)
        self.host, self.port, self.aet = "127.0.0.1", free_port(), AET
        self.dir = Path(tempfile.mkdtemp(prefix="trolleyfs-qrscp-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> QrScp:
        cfg = self.dir / "qrscp.ini"
        cfg.write_text(
            "[DEFAULT]\n"
            f"ae_title: {AET}\nport: {self.port}\nmax_pdu: 16382\n"
            "acse_timeout: 30\ndimse_timeout: 30\nnetwork_timeout: 30\n"
            f"bind_address: 127.0.0.1\ninstance_location: {self.dir / 'instances'}\n"
            f"database_location: {self.dir / 'instances.sqlite'}\nlog_identifier: False\n"
        )
        log = self.dir / "qrscp.log"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pynetdicom", "qrscp", "-c", str(cfg), "-ll", "warn"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.dir,
            )
        try:
            _wait_listening(self.port, self.proc, log)
            self._store(self.files)
        except BaseException:
            self.cleanup()
            raise
        return self

    def _store(self, files: list[bytes]) -> None:
        datasets = [pydicom.dcmread(io.BytesIO(f)) for f in files]
        ae = AE("LOADER")
        for syntax in {ds.file_meta.TransferSyntaxUID for ds in datasets}:
            for cls in {ds.SOPClassUID for ds in datasets}:
                ae.add_requested_context(cls, syntax)
        assoc = ae.associate(self.host, self.port, ae_title=self.aet)
        if not assoc.is_established:
            raise RuntimeError("cannot associate with qrscp to fill it")
        try:
            for ds in datasets:
                status = assoc.send_c_store(ds)
                if status.get("Status") != 0x0000:
                    raise RuntimeError(f"qrscp refused {ds.SOPInstanceUID}: {status}")
        finally:
            assoc.release()

    def stored(self, uid: str) -> bytes:
        """The object as qrscp stores it."""
        return (self.dir / "instances" / uid).read_bytes()

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> QrScp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def in_syntax(data: bytes, syntax: str) -> bytes:
    """A Part-10 object re-encoded in ``syntax``: Implicit VR, or compressed
    (pydicom's encoders: RLE, JPEG 2000 and JPEG-LS lossless)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    if syntax == pydicom.uid.ImplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = UID(syntax)
    else:
        ds.compress(syntax, generate_instance_uid=False)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def dataset_bytes(part10: bytes) -> bytes:
    """The dataset of a Part-10 object (what DIMSE moves), without preamble and meta group."""
    f = io.BytesIO(part10)
    pydicom.filereader.read_preamble(f, False)
    pydicom.filereader._read_file_meta_info(f)
    return part10[f.tell() :]
