"""A RAD-69 (Retrieve Imaging Document Set) test server answering like Vitrea.

It serves the generated sample data at ``<url>`` (``http://127.0.0.1:PORT/rad69``):

* a request for objects it holds gets ``multipart/related`` (MTOM/XOP) with a
  ``----=_Part_...`` boundary: the SOAP envelope part, then one
  ``application/dicom`` part per object, referenced by ``cid:`` from the
  envelope (Content-IDs hold an ``@``, so the ``cid:`` URLs are %-encoded);
* a request naming any object it does not hold gets what Vitrea sends: HTTP 200
  ``application/soap+xml`` with a ``RegistryErrorList`` of ``XDSMissingDocument``
  (or, with ``partial_success``, a multipart answer with the errors in the
  envelope and the objects it does hold);
* a request that is not a RAD-69 SOAP 1.2 request gets a Sender fault (HTTP 400).

``mode`` makes it misbehave: ``fault`` (HTTP 500 SOAP Receiver fault),
``truncate`` (the body ends cleanly in the middle of a DICOM part), ``abort``
(the connection is cut there), ``not-dicom`` (a part holds text),
``html500`` (an HTML error page with status 500), ``cut-object`` (every
object cut short inside consistent framing: the boundary follows the cut),
``rewritten-meta`` and ``foreign-content`` (every object a lie about the one
asked for: :meth:`~tests.servers.base.SampleIndex.lie`).

Bodies are streamed in chunks, so a truncated answer is cut as a real one is.
Use ``with Rad69Server() as srv:`` or ``srv = Rad69Server(index).start()`` ...
``srv.stop()``; configure ``retrieve = { protocol = "rad69", url = srv.url }``.
"""

from __future__ import annotations

import random
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

from tests.servers.base import LIES, Abort, Request, Response, SampleIndex, TestHTTPServer

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
ACTION = "urn:ihe:rad:2009:RetrieveImagingDocumentSet"
MODES = ("ok", "fault", "truncate", "abort", "not-dicom", "html500", "cut-object", *LIES)
FAULT_REASON = "Unable to reach the image archive (test fault)"


@dataclass
class Rad69Request:
    """What a client asked for: ``documents`` are (study, series, SOP UID)."""

    action: str
    documents: list[tuple[str, str, str]]
    repository_uids: list[str]
    transfer_syntaxes: list[str]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_request(body: bytes) -> Rad69Request:
    """Read a RetrieveImagingDocumentSetRequest; ValueError if it is not one."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ValueError(f"request is not XML: {exc}") from None
    if root.tag != f"{{{SOAP12}}}Envelope":
        raise ValueError(f"not a SOAP 1.2 envelope: {root.tag}")
    action = "".join(e.text or "" for e in root.iter() if _local(e.tag) == "Action").strip()
    docs, repos = [], []
    for study in (e for e in root.iter() if _local(e.tag) == "StudyRequest"):
        for series in (e for e in study if _local(e.tag) == "SeriesRequest"):
            for doc in (e for e in series if _local(e.tag) == "DocumentRequest"):
                fields = {_local(c.tag): (c.text or "").strip() for c in doc}
                docs.append(
                    (
                        study.get("studyInstanceUID", ""),
                        series.get("seriesInstanceUID", ""),
                        fields.get("DocumentUniqueId", ""),
                    )
                )
                repos.append(fields.get("RepositoryUniqueId", ""))
    syntaxes = [(e.text or "").strip() for e in root.iter() if _local(e.tag) == "TransferSyntaxUID"]
    return Rad69Request(action, docs, repos, syntaxes)


def _response_header() -> str:
    return (
        '<?xml version="1.0" encoding="utf-8" ?>'
        f'<env:Envelope xmlns:env="{SOAP12}"><env:Header>'
        '<a:Action xmlns:a="http://www.w3.org/2005/08/addressing" env:mustUnderstand="true">'
        "urn:ihe:iti:2007:RetrieveDocumentSetResponse</a:Action>"
        f'<a:RelatesTo xmlns:a="http://www.w3.org/2005/08/addressing">urn:uuid:{uuid.uuid4()}</a:RelatesTo>'
        "</env:Header><env:Body>"
        '<RetrieveDocumentSetResponse xmlns="urn:ihe:iti:xds-b:2007" '
        'xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0">'
    )


def _registry_response(status: str, missing: list[str]) -> str:
    status_urn = f"urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:{status}"
    if not missing:
        return f'<rs:RegistryResponse status="{status_urn}"/>'
    errors = "".join(
        '<rs:RegistryError codeContext="Unable to locate SOP from MINT." errorCode="XDSMissingDocument" '
        f'location={quoteattr(uid)} severity="urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"/>'
        for uid in missing
    )
    return (
        f'<rs:RegistryResponse status="{status_urn}">'
        f"<rs:RegistryErrorList>{errors}</rs:RegistryErrorList></rs:RegistryResponse>"
    )


def error_envelope(missing: list[str]) -> bytes:
    """What Vitrea answers when objects are missing (cf. the recorded file)."""
    return (
        _response_header()
        + _registry_response("Failure", missing)
        + "</RetrieveDocumentSetResponse></env:Body></env:Envelope>"
    ).encode()


def success_envelope(documents: list[tuple[str, str]], missing: list[str]) -> bytes:
    """The root part: one DocumentResponse per (SOP UID, Content-ID)."""
    status = "PartialSuccess" if missing else "Success"
    docs = "".join(
        "<DocumentResponse><RepositoryUniqueId>1.3.6.1.4.1000</RepositoryUniqueId>"
        f"<DocumentUniqueId>{escape(uid)}</DocumentUniqueId><HomeCommunityId/>"
        "<mimeType>application/dicom</mimeType>"
        '<Document><xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" '
        f'href="cid:{quote(cid, safe="")}"/></Document></DocumentResponse>'
        for uid, cid in documents
    )
    return (
        _response_header()
        + _registry_response(status, missing)
        + docs
        + "</RetrieveDocumentSetResponse></env:Body></env:Envelope>"
    ).encode()


def fault_envelope(code: str, reason: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<env:Envelope xmlns:env="{SOAP12}"><env:Body><env:Fault>'
        f"<env:Code><env:Value>env:{code}</env:Value></env:Code>"
        f'<env:Reason><env:Text xml:lang="en">{escape(reason)}</env:Text></env:Reason>'
        "</env:Fault></env:Body></env:Envelope>"
    ).encode()


class Rad69Server:
    """See the module docstring.  ``requests`` lists every HTTP request received."""

    def __init__(self, index: SampleIndex | None = None, path: str = "/rad69", chunk_size: int = 16 * 1024) -> None:
        if index is None:
            from trolleyfs.demo import sampledata

            index = SampleIndex(sampledata.generate())
        self.index = index
        self.path = path
        self.chunk_size = chunk_size
        self.mode = "ok"
        self.partial_success = False
        self.http = TestHTTPServer({("POST", path): self._handle})
        self.http.httpd.handle_error = self._handle_error  # type: ignore[method-assign]
        # headers and body go out in separate writes: without this each answer
        # waits ~40 ms for a delayed ACK (the handler class is this server's own)
        self.http.httpd.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        return self.http.url + self.path

    @property
    def requests(self) -> list[Request]:
        return self.http.requests

    def start(self) -> Rad69Server:
        self.http.start()
        return self

    def stop(self) -> None:
        self.http.stop()

    def __enter__(self) -> Rad69Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up mid-answer (as trolleyfs does on a bad part) is
        expected here: only other errors are printed."""
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            ThreadingHTTPServer.handle_error(self.http.httpd, request, client_address)  # type: ignore[arg-type]

    # ----------------------------------------------------------------- answers

    def _handle(self, req: Request) -> Response:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}")
        if self.mode == "html500":
            page = b"<html><head><title>500 Internal Server Error</title></head><body>Oops</body></html>"
            return Response(500, page, content_type="text/html")
        if not req.headers.get("content-type", "").startswith("application/soap+xml"):
            return self._fault(400, "Sender", f"expected application/soap+xml, got {req.headers.get('content-type')}")
        try:
            parsed = parse_request(req.body)
        except ValueError as exc:
            return self._fault(400, "Sender", str(exc))
        if parsed.action != ACTION or not parsed.documents or not all(parsed.repository_uids):
            return self._fault(400, "Sender", f"not a RetrieveImagingDocumentSet request (action {parsed.action!r})")
        if self.mode == "fault":
            return self._fault(500, "Receiver", FAULT_REASON)
        found, missing = [], []
        for study, series, uid in parsed.documents:
            ds = self.index.datasets.get(uid)
            if ds is not None and ds.StudyInstanceUID == study and ds.SeriesInstanceUID == series:
                found.append(uid)
            else:
                missing.append(uid)
        if missing and not self.partial_success:
            return Response(200, error_envelope(missing), content_type="application/soap+xml; charset=utf-8")
        boundary = f"----=_Part_{random.randint(1, 99)}_{random.randint(10**9, 2 * 10**9)}.{int(time.time() * 1000)}"
        root = f"root.message@{uuid.uuid4()}.rad69.test"
        ctype = (
            f'multipart/related; type="application/xop+xml"; boundary="{boundary}"; '
            f'start="<{root}>"; start-info="application/soap+xml"'
        )
        return Response(200, self._body(boundary, root, found, missing), content_type=ctype)

    def _fault(self, status: int, code: str, reason: str) -> Response:
        return Response(status, fault_envelope(code, reason), content_type="application/soap+xml; charset=utf-8")

    def _body(self, boundary: str, root: str, found: list[str], missing: list[str]) -> Iterator[bytes]:
        """The MTOM body in ``chunk_size`` chunks (small pieces are joined: one
        tiny write after another stalls on Nagle and delayed ACKs)."""
        buf = bytearray()
        try:
            for piece in self._pieces(boundary, root, found, missing):
                buf += piece
                while len(buf) >= self.chunk_size:
                    yield bytes(buf[: self.chunk_size])
                    del buf[: self.chunk_size]
        except Abort:
            if buf:
                yield bytes(buf)
            raise
        if buf:
            yield bytes(buf)

    def _pieces(self, boundary: str, root: str, found: list[str], missing: list[str]) -> Iterator[bytes]:
        """The MTOM body; the misbehaving modes strike in the last part."""
        cids = [(uid, f"{uuid.uuid4()}@rad69.test") for uid in found]
        yield (
            f"--{boundary}\r\n"
            'Content-Type: application/xop+xml; charset=utf-8; type="application/soap+xml"\r\n'
            "Content-Transfer-Encoding: binary\r\n"
            f"Content-ID: <{root}>\r\n\r\n"
        ).encode() + success_envelope(cids, missing)
        for i, (uid, cid) in enumerate(cids):
            last = i == len(cids) - 1
            data = self.index.lie(uid, self.mode) if self.mode in LIES else self.index.files[uid]
            if last and self.mode == "not-dicom":
                data = b"This is not a DICOM object, but the server says it is.\r\n" * 20
            if self.mode == "cut-object":
                data = data[: len(data) * 2 // 3]
            yield (
                f"\r\n--{boundary}\r\n"
                "Content-Type: application/dicom\r\n"
                "Content-Transfer-Encoding: binary\r\n"
                f"Content-ID: <{cid}>\r\n\r\n"
            ).encode()
            if last and self.mode in ("truncate", "abort"):
                yield data[: len(data) // 2]
                if self.mode == "abort":
                    raise Abort()
                return  # "truncate": the HTTP message ends cleanly, the multipart body does not
            yield data
        yield f"\r\n--{boundary}--\r\n".encode()
