"""Start a throw-away Orthanc on loopback (for ``make demo``, the tests and the
benchmark): free ports, storage in a temp dir, DICOMweb, C-FIND and C-GET on.

Debian's package ships ``/usr/sbin/Orthanc`` and the DICOMweb plugin; it does
not start a service in containers, so we run the binary ourselves."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import httpx

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
PLUGIN_DIRS = ["/usr/share/orthanc/plugins", "/usr/lib/orthanc/plugins"]


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the process that started us dies, so that a
    killed demo, test or benchmark never leaves an Orthanc behind (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def dicomweb_plugin() -> str:
    for d in PLUGIN_DIRS:
        p = Path(d) / "libOrthancDicomWeb.so"
        if p.exists():
            return str(p)
    raise RuntimeError("Orthanc's DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)")


class Orthanc:
    """A running Orthanc.  Use as a context manager, or call start()/stop()."""

    def __init__(
        self,
        workdir: str | None = None,
        users: dict[str, str] | None = None,
        aet: str = "ORTHANC",
        http_port: int | None = None,
        dicom_port: int | None = None,
        keep_storage: bool = False,
        modalities: dict[str, tuple[str, str, int]] | None = None,
    ) -> None:
        """``modalities``: name -> (AE title, host, port) of the DICOM peers it
        knows, e.g. trolleyfs's C-MOVE receiver."""
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="trolleyfs-orthanc-"))
        self.users = users or {}
        self.aet = aet
        self.http_port = http_port or free_port()
        self.dicom_port = dicom_port or free_port()
        self.keep_storage = keep_storage
        self.modalities = dict(modalities or {})
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def wado_uri(self) -> str:
        return f"{self.url}/wado"

    def _auth(self) -> tuple[str, str] | None:
        return next(iter(self.users.items()), None)

    def config(self) -> dict[str, object]:
        return {
            "Name": "trolleyfs-test",
            "StorageDirectory": str(self.dir / "db"),
            "IndexDirectory": str(self.dir / "db"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": self.users,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowMove": True,
            "DicomModalities": {name: list(peer) for name, peer in self.modalities.items()},
            "DicomCheckCalledAet": False,
            "DicomCheckModalityHost": False,
            "StorageCompression": False,
            "HttpCompressionEnabled": False,
            "KeepAlive": True,
            "HttpThreadsCount": 16,
            "LimitFindResults": 0,
            "LimitFindInstances": 0,
            "StableAge": 1,
            "Plugins": [dicomweb_plugin()],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado"},
        }

    def start(self, timeout: float = 30.0) -> Orthanc:
        if not os.path.exists(ORTHANC):
            raise RuntimeError("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)")
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg = self.dir / "orthanc.json"
        cfg.write_text(json.dumps(self.config(), indent=1))
        # dcmtk-based DIMSE (Orthanc's DICOM port) leaves Nagle on unless told: ~50 ms per C-FIND
        env = dict(os.environ, TCP_NODELAY="1")
        with open(self.dir / "orthanc.log", "wb") as log:
            self.proc = subprocess.Popen(
                [ORTHANC, str(cfg)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                env=env,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.proc.returncode}; see {self.dir / 'orthanc.log'}")
            try:
                r = httpx.get(f"{self.url}/system", auth=self._auth(), timeout=1)
                if r.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir and not self.keep_storage:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Orthanc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def upload(self, files: Iterable[bytes], workers: int = 4) -> int:
        """POST Part-10 objects to /instances; returns how many were stored.
        ``files`` is consumed as the uploads go (at most a few objects held at
        once), so a generator may make them while the first ones travel."""
        from concurrent.futures import Future, ThreadPoolExecutor

        with httpx.Client(auth=self._auth(), timeout=60) as client:

            def one(data: bytes) -> None:
                r = client.post(f"{self.url}/instances", content=data, headers={"Content-Type": "application/dicom"})
                r.raise_for_status()

            pending: list[Future[None]] = []
            done = 0
            with ThreadPoolExecutor(workers) as pool:
                for data in files:
                    pending.append(pool.submit(one, data))
                    while len(pending) > 2 * workers:
                        pending.pop(0).result()
                        done += 1
                for f in pending:
                    f.result()
                    done += 1
            return done

    def instance_file(self, sop_uid: str) -> bytes:
        """Orthanc's own stored copy of an instance."""
        with httpx.Client(auth=self._auth(), timeout=60) as client:
            r = client.post(f"{self.url}/tools/lookup", content=sop_uid)
            r.raise_for_status()
            oid = next(x["ID"] for x in r.json() if x["Type"] == "Instance")
            f = client.get(f"{self.url}/instances/{oid}/file")
            f.raise_for_status()
            return f.content
