"""A DICOMweb test server (QIDO-RS, WADO-RS, WADO-URI) answering from the
generated sample data, with switches that make it answer the way broken or
quirky real servers do.  Each switch sends exactly one kind of wrong answer:

* ``lying_lengths`` (``"all"`` or ``"series"``: series answers only):
  WADO-RS parts declare the whole object's ``Content-Length`` but hold only
  its first half (the boundary is right);
* ``cut_objects``: objects cut short inside consistent framing (WADO-RS part
  lengths and the WADO-URI body length match the cut bytes);
* ``part_lengths = False``: parts without a ``Content-Length`` (dcm4chee);
* ``duplicates``: ``"same"`` sends each object twice, ``"different"`` the
  second copy with one byte changed in its pixel data;
* ``single_part``: an instance request answered by a bare ``application/dicom`` body;
* ``strict_accept``: any other ``Accept`` header than this one gets 406;
* ``series_404``: series-level WADO-RS answers 404 (instances still work);
* ``instance_search_404``: the instance search of a listed series answers 404;
* ``cap`` (with ``cap_warning``: a ``Warning: 299``), ``ignore_offset``,
  ``ignore_limit``: QIDO-RS paging as Google, DICOM-RST and others do it;
* ``extra_studies``: that many synthetic studies (listable, not readable);
* ``bad_keys``: study results carry attributes whose keys are not tags;
* ``nested``: study results carry one deeply nested value;
* ``lie`` (one of :data:`~.base.LIES`): every object served is a lie about
  the one asked for (:meth:`~.base.SampleIndex.lie`), in WADO-RS instance and
  series answers and WADO-URI;
* ``html_200`` / ``empty_200``: every retrieve (WADO-RS, WADO-URI) answered
  200 with an HTML error page (a portal's login or error page) / an empty body;
* ``star_only``: matching as one independent server does it: ``*`` is a
  wildcard, ``?`` a literal, case-sensitive; the query string is percent-decoded.

``requests`` (of the underlying server) records everything asked.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from urllib.parse import unquote

import pydicom
from pydicom.datadict import tag_for_keyword

from .base import Request, Response, SampleIndex, TestHTTPServer

PREFIX = "/dicom-web"
BOUNDARY = "trolleyfs-test-boundary-8c1f"
STUDY_KEYS = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "PatientName",
    "PatientID",
    "AccessionNumber",
)
SERIES_KEYS = ("SeriesInstanceUID", "SeriesNumber", "Modality", "SeriesDescription")
INSTANCE_KEYS = ("SOPInstanceUID", "SOPClassUID", "InstanceNumber")
NESTING = 100_000


def _json_value(ds: pydicom.Dataset, keyword: str) -> dict[str, object] | None:
    if keyword not in ds:
        return None
    elem = ds[keyword]
    vr = elem.VR
    values = [] if elem.value in (None, "") else (list(elem.value) if elem.VM > 1 else [elem.value])
    if vr == "PN":
        out: list[object] = [{"Alphabetic": str(v)} for v in values]
    elif vr == "IS":
        out = [int(v) for v in values]
    else:
        out = [str(v) for v in values]
    return {"vr": vr, "Value": out} if out else {"vr": vr}


def _row(ds: pydicom.Dataset, keys: tuple[str, ...]) -> dict[str, object]:
    row: dict[str, object] = {}
    for kw in keys:
        value = _json_value(ds, kw)
        if value is not None:
            row[f"{tag_for_keyword(kw):08X}"] = value
    return row


class DicomWebServer(TestHTTPServer):
    """Configure ``search``/``retrieve`` with ``url`` (``http://127.0.0.1:PORT/dicom-web``)."""

    def __init__(self, index: SampleIndex) -> None:
        super().__init__({("GET", PREFIX): self._route, ("GET", "/wado"): self._wado_uri})
        self.index = index
        self.lying_lengths: str | None = None
        self.cut_objects = False
        self.part_lengths = True
        self.duplicates: str | None = None
        self.single_part = False
        self.strict_accept: str | None = None
        self.series_404 = False
        self.instance_search_404 = False
        self.cap: int | None = None
        self.cap_warning = False
        self.ignore_offset = False
        self.ignore_limit = False
        self.extra_studies = 0
        self.bad_keys = False
        self.nested = False
        self.star_only = False
        self.lie: str | None = None
        self.html_200 = False
        self.empty_200 = False
        self.lock = threading.Lock()
        self.statuses: list[tuple[str, int]] = []  # (path, status) of every answer

    @property
    def url(self) -> str:
        return super().url + PREFIX

    @property
    def root_url(self) -> str:
        return super().url

    def count(self, pattern: str, status: int | None = None) -> int:
        """Answers whose path matches the regex ``pattern`` (and had ``status``)."""
        with self.lock:
            return sum(1 for p, s in self.statuses if re.search(pattern, p) and (status is None or s == status))

    def _route(self, req: Request) -> Response:
        resp = self._answer(req)
        with self.lock:
            self.statuses.append((req.path, resp.status))
        return resp

    def _answer(self, req: Request) -> Response:
        parts = req.path[len(PREFIX) :].strip("/").split("/")
        if parts[-1] in ("studies", "series", "instances") and len(parts) % 2 == 1:
            return self._qido(req, parts)
        if len(parts) in (4, 6) and parts[0] == "studies" and parts[2] == "series":
            return self._wado_rs(req, parts)
        return Response(404, b"no such resource")

    # ------------------------------------------------------------------ QIDO-RS

    def _matches(self, wanted: str, have: str, keyword: str) -> bool:
        if wanted == "":
            return True
        if self.star_only:
            body = "".join(".*" if c == "*" else re.escape(c) for c in wanted)
            return re.fullmatch(body, have, re.S) is not None
        body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in wanted)
        if keyword == "StudyDate" and "-" in wanted:
            lo, _, hi = wanted.partition("-")
            return (not lo or have >= lo) and (not hi or have <= hi)
        return re.fullmatch(body, have, re.S | re.I) is not None

    def _qido(self, req: Request, parts: list[str]) -> Response:
        query = [(k, unquote(v)) for k, v in (p.split("=", 1) for p in req.raw_query.split("&") if "=" in p)]
        filters = [(k, v) for k, v in query if k not in ("limit", "offset", "includefield", "fuzzymatching")]
        if parts == ["studies"]:
            rows = self._study_rows(filters)
        elif len(parts) == 3:
            series = self.index.series(parts[1])
            rows = [_row(dss[0], SERIES_KEYS) for dss in series.values()]
        else:
            if self.instance_search_404:
                return Response(404, b'{"error": "not found"}', content_type="application/json")
            dss = self.index.series(parts[1]).get(parts[3], [])
            rows = [_row(ds, INSTANCE_KEYS) for ds in sorted(dss, key=lambda d: int(d.InstanceNumber))]
        offset = 0 if self.ignore_offset else int(dict(query).get("offset", "0") or 0)
        limit = None if self.ignore_limit else int(dict(query).get("limit", "0") or 0) or None
        page = rows[offset:]
        if limit is not None:
            page = page[:limit]
        headers = {}
        if self.cap is not None and len(page) > self.cap:
            page = page[: self.cap]
            if self.cap_warning:
                headers["Warning"] = '299 test: "The number of results exceeded the maximum supported by the server.'
                headers["Warning"] += ' Additional results can be requested."'
        if not page:
            return Response(204, b"", headers, "application/dicom+json")
        body = json.dumps(page).encode()
        if self.nested and parts == ["studies"]:
            body = body[:-1] + b', {"00081030": {"vr": "LO", "Value": ' + b"[" * NESTING + b"]" * NESTING + b"}}]"
        return Response(200, body, headers, "application/dicom+json")

    def _study_rows(self, filters: list[tuple[str, str]]) -> list[dict[str, object]]:
        rows = []
        for _, dss in sorted(self.index.studies().items(), key=lambda kv: (kv[1][0].StudyDate, kv[0])):
            first = dss[0]
            if not all(self._matches(v, str(first.get(k, "")), k) for k, v in filters):
                continue
            row = _row(first, STUDY_KEYS)
            row["00080061"] = {"vr": "CS", "Value": sorted({ds.Modality for ds in dss})}
            if self.bad_keys:
                row["ZZZZ0010"] = {"vr": "LO", "Value": ["not a tag"]}
                row["123456789012"] = {"vr": "LO", "Value": ["a tag too long"]}
                row["(0008,1030)"] = {"vr": "LO", "Value": ["a tag in the wrong form"]}
            rows.append(row)
        for i in range(self.extra_studies):
            if filters:
                break
            rows.append(
                {
                    "0020000D": {"vr": "UI", "Value": [f"2.25.{10**6 + i}"]},
                    "00100010": {"vr": "PN", "Value": [{"Alphabetic": f"SYNTH^{i:05}"}]},
                    "00081030": {"vr": "LO", "Value": [f"Synthetic {i:05}"]},
                }
            )
        return rows

    # ------------------------------------------------------------------ WADO-RS

    def _objects(self, parts: list[str]) -> list[bytes] | None:
        series = self.index.series(parts[1]).get(parts[3])
        if series is None:
            return None
        if len(parts) == 6:
            ds = next((d for d in series if d.SOPInstanceUID == parts[5]), None)
            return None if ds is None else [self._file(ds.SOPInstanceUID)]
        return [self._file(d.SOPInstanceUID) for d in sorted(series, key=lambda d: int(d.InstanceNumber))]

    def _file(self, uid: str) -> bytes:
        return self.index.files[uid] if self.lie is None else self.index.lie(uid, self.lie)

    def _broken_200(self) -> Response | None:
        if self.html_200:
            page = b"<html><head><title>Error</title></head><body>Session expired: please log in</body></html>"
            return Response(200, page, content_type="text/html")
        if self.empty_200:
            return Response(200, b"", content_type="application/dicom")
        return None

    def _wado_rs(self, req: Request, parts: list[str]) -> Response:
        if broken := self._broken_200():
            return broken
        accept = req.headers.get("accept", "")
        if self.strict_accept is not None and accept != self.strict_accept:
            return Response(406, b"Not Acceptable", content_type="text/plain")
        if len(parts) == 4 and self.series_404:
            return Response(404, b"series retrieval is not supported", content_type="text/plain")
        objects = self._objects(parts)
        if objects is None:
            return Response(404, b"no such object", content_type="text/plain")
        if self.single_part and len(parts) == 6:
            return Response(200, self._cut(objects[0]), content_type="application/dicom")
        lying = self.lying_lengths == "all" or (self.lying_lengths == "series" and len(parts) == 4)
        return Response(
            200,
            self._multipart(objects, lying),
            content_type=f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
        )

    def _cut(self, data: bytes) -> bytes:
        return data[: len(data) * 2 // 3] if self.cut_objects else data

    def _multipart(self, objects: list[bytes], lying: bool) -> Iterator[bytes]:
        for data in objects:
            copies = [data]
            if self.duplicates == "same":
                copies.append(data)
            elif self.duplicates == "different":
                copies.append(data[:-1] + bytes([data[-1] ^ 0xFF]))
            for copy in copies:
                body = self._cut(copy)
                declared = len(copy)
                if lying:
                    body = copy[: len(copy) // 2]
                headers = "Content-Type: application/dicom\r\n"
                if self.part_lengths:
                    headers += f"Content-Length: {declared if lying else len(body)}\r\n"
                yield f"--{BOUNDARY}\r\n{headers}\r\n".encode() + body + b"\r\n"
        yield f"--{BOUNDARY}--\r\n".encode()

    # ------------------------------------------------------------------ WADO-URI

    def _wado_uri(self, req: Request) -> Response:
        if broken := self._broken_200():
            return broken
        uid = req.arg("objectUID") or ""
        ds = self.index.datasets.get(uid)
        if req.arg("requestType") != "WADO" or ds is None or ds.SeriesInstanceUID != req.arg("seriesUID"):
            return Response(404, b"no such object")
        return Response(200, self._cut(self._file(uid)), content_type="application/dicom")
