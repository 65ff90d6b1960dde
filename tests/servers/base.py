"""A small threaded HTTP server for tests, on 127.0.0.1 and a free port, plus an
index of the generated sample data that the protocol test servers answer from
(the same objects the Orthanc fixture holds)."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qsl, urlsplit

import pydicom
from pydicom.uid import UID


@dataclass
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    raw_query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def arg(self, name: str, default: str | None = None) -> str | None:
        for k, v in self.query:
            if k == name:
                return v
        return default


@dataclass
class Response:
    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/plain"


Handler = Callable[[Request], Response]


class TestHTTPServer:
    """Routes ``(method, path prefix) -> handler``; the longest prefix wins.
    ``requests`` records every request, for tests that count them."""

    __test__ = False  # not a pytest class

    def __init__(self, routes: dict[tuple[str, str], Handler] | None = None) -> None:
        self.routes: dict[tuple[str, str], Handler] = dict(routes or {})
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        outer = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else each answer waits ~40 ms for a delayed ACK

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(
                    self.command,
                    parts.path,
                    parse_qsl(parts.query, keep_blank_values=True),
                    parts.query,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                with outer._lock:
                    outer.requests.append(req)
                resp = outer.dispatch(req)
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.content_type)
                for k, v in resp.headers.items():
                    self.send_header(k, v)
                if isinstance(resp.body, (bytes, bytearray)):
                    self.send_header("Content-Length", str(len(resp.body)))
                    self.end_headers()
                    self.wfile.write(resp.body)
                else:  # streamed: chunked transfer encoding
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    try:
                        for chunk in resp.body:
                            if chunk:
                                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.write(b"0\r\n\r\n")
                    except _Abort:
                        self.close_connection = True
                        return

            def _safe(self) -> None:
                try:
                    self._handle()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client went away: nothing to answer

            do_GET = do_POST = do_HEAD = _safe

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def dispatch(self, req: Request) -> Response:
        best = None
        for (method, prefix), handler in self.routes.items():
            longer = best is None or len(prefix) > len(best[0])
            if method == req.method and req.path.startswith(prefix) and longer:
                best = (prefix, handler)
        if best is None:
            return Response(404, b"no route", content_type="text/plain")
        return best[1](req)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        assert isinstance(host, str)  # bound to "127.0.0.1"
        return f"http://{host}:{port}"

    def start(self) -> Self:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Abort(Exception):
    """Raise from a streamed body to cut the connection mid-body."""


Abort = _Abort


# The lies a test server can tell about an object it is asked for (SampleIndex.lie)
LIES = ("rewritten-meta", "foreign-content", "other-patient")


class SampleIndex:
    """The generated sample objects, by UID, with their parsed headers."""

    def __init__(self, files: Iterable[bytes]) -> None:
        self.files: dict[str, bytes] = {}
        self.datasets: dict[str, pydicom.Dataset] = {}
        for data in files:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            self.files[ds.SOPInstanceUID] = data
            self.datasets[ds.SOPInstanceUID] = ds

    def studies(self) -> dict[str, list[pydicom.Dataset]]:
        out: dict[str, list[pydicom.Dataset]] = {}
        for ds in self.datasets.values():
            out.setdefault(ds.StudyInstanceUID, []).append(ds)
        return out

    def series(self, study_uid: str) -> dict[str, list[pydicom.Dataset]]:
        out: dict[str, list[pydicom.Dataset]] = {}
        for ds in self.datasets.values():
            if ds.StudyInstanceUID == study_uid:
                out.setdefault(ds.SeriesInstanceUID, []).append(ds)
        return out

    def lie(self, uid: str, how: str) -> bytes:
        """Object ``uid`` as a lying server sends it:

        * ``rewritten-meta``: another instance of the same series, its file
          meta group rewritten to name ``uid`` (the dataset is the other one's);
        * ``foreign-content``: an object that is ``uid`` by its SOP Instance
          UID (meta and dataset), of another study, series and patient, with
          zeroed pixels;
        * ``other-patient``: ``uid`` in its own study and series, but of
          another patient (Patient ID and name), with zeroed pixels."""
        ds = self.datasets[uid]
        if how == "rewritten-meta":
            siblings = sorted(
                (d for d in self.datasets.values() if d.SeriesInstanceUID == ds.SeriesInstanceUID),
                key=lambda d: int(d.InstanceNumber),
            )
            other = siblings[(siblings.index(ds) + 1) % len(siblings)]
            if other is ds:
                raise ValueError(f"series of {uid} has one instance: no other to send")
            changed = pydicom.dcmread(io.BytesIO(self.files[other.SOPInstanceUID]))
            changed.file_meta.MediaStorageSOPInstanceUID = UID(uid)
        elif how in ("foreign-content", "other-patient"):
            changed = pydicom.dcmread(io.BytesIO(self.files[uid]))
            if how == "foreign-content":
                changed.StudyInstanceUID = changed.StudyInstanceUID + ".9"
                changed.SeriesInstanceUID = changed.SeriesInstanceUID + ".9"
            changed.PatientID = "SOMEONE-ELSE"
            changed.PatientName = "OTHER^PATIENT"
            if "PixelData" in changed:
                changed.PixelData = bytes(len(changed.PixelData))
        else:
            raise ValueError(f"unknown lie {how!r} (known: {', '.join(LIES)})")
        out = io.BytesIO()
        changed.save_as(out, enforce_file_format=False)  # as it is: enforcing would mend the meta group
        data = out.getvalue()
        assert data[128:132] == b"DICM"
        return data
