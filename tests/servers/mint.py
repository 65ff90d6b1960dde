"""A MINT test server answering from the generated sample data the way a
Vitrea Connection server does (see tests/fixtures/recorded/mint_*):

* ``GET {url}/studies`` with DICOM keyword filters (``*``/``?`` wildcards,
  backslash-separated UID lists, ``a-b`` date ranges), ``min_study_date`` and
  ``max_study_date`` (both or neither, ``YYYYMMDD``), ``QueryLevel``,
  ``IncludeFields`` (comma-separated; fields not valid at the level are left
  out) and ``limit`` (number of ``<study>`` elements, 0 = all).  An unknown
  parameter or a non-study-level filter is a 400, so a client sending the
  wrong names notices.
* Quirks: study attributes come after the ``<series>`` elements, instances
  carry ``00020010`` (transfer syntax), a requested Type 2 attribute the data
  lacks (ReferringPhysicianName) is sent without ``val``, and optionally each
  study is split over two ``<study>`` elements (``split_duplicates``) or the
  XML declares ``encoding='UTF-3'`` (``bad_declaration``), or values carry
  control characters XML 1.0 forbids (``control_chars``).
* ``fail_with`` = 401 / 500 serves the recorded Jetty HTML pages with that
  status; ``"html"`` serves the 401 page with status 200.  ``fail_times``
  limits how many requests fail (None: all).

Use::

    with MintServer(SampleIndex(sample_files)) as server:
        url = server.url   # http://127.0.0.1:PORT/rest/api/vault/mint -> search url of the config
"""

from __future__ import annotations

import re
import threading
import uuid
from pathlib import Path
from xml.sax.saxutils import escape

import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword

from .base import Request, Response, SampleIndex, TestHTTPServer

PREFIX = "/rest/api/vault/mint"
RECORDED = Path(__file__).resolve().parent.parent / "fixtures" / "recorded"
HTML_TYPE = "text/html;charset=iso-8859-1"

# What may be returned at each QueryLevel (a subset of the Vitrea manual's lists).
STUDY_KEYS = frozenset(
    {
        "PatientID",
        "PatientName",
        "PatientSex",
        "PatientBirthDate",
        "StudyInstanceUID",
        "AccessionNumber",
        "StudyID",
        "StudyDate",
        "StudyTime",
        "ModalitiesInStudy",
        "ReferringPhysicianName",
        "StudyDescription",
        "InstitutionName",
        "InstitutionalDepartmentName",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
        "SOPClassesInStudy",
    }
)
SERIES_KEYS = frozenset(
    {
        "SeriesInstanceUID",
        "Modality",
        "SeriesDate",
        "SeriesTime",
        "SeriesDescription",
        "BodyPartExamined",
        "FrameOfReferenceUID",
        "ProtocolName",
        "SeriesNumber",
        "NumberOfSeriesRelatedInstances",
    }
)
INSTANCE_KEYS = frozenset(
    {
        "SOPInstanceUID",
        "SOPClassUID",
        "Rows",
        "Columns",
        "NumberOfFrames",
        "BitsAllocated",
        "ContentDate",
        "ContentTime",
        "TransferSyntaxUID",
        "InstanceNumber",
    }
)
DEFAULT_FIELDS = ("StudyInstanceUID", "PatientName", "PatientID")
TYPE2_EMPTY = ("ReferringPhysicianName",)  # absent from the sample data, sent without val
META = {"QueryLevel", "IncludeFields", "limit", "min_study_date", "max_study_date"}
LEVELS = ("STUDY", "SERIES", "INSTANCE")


class BadRequest(Exception):
    pass


def _tag(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return f"{tag:08x}"


def _attr(keyword: str, vr: str, value: str | None) -> str:
    val = "" if value is None else f' val="{escape(value, {chr(34): "&quot;"})}"'
    return f'<attr tag="{_tag(keyword)}" vr="{vr}"{val} />'


def _value(ds: pydicom.Dataset, keyword: str) -> tuple[str, str | None] | None:
    """``(VR, value)`` of an element of ``ds``, value None when empty; None when absent."""
    if keyword not in ds:
        return None
    elem = ds[keyword]
    if elem.VR == "SQ":
        return None
    if elem.VM == 0 or elem.value is None:
        return elem.VR, None
    values = elem.value if elem.VM > 1 else [elem.value]
    return elem.VR, "\\".join(str(v) for v in values)


def _pattern(value: str, case: bool) -> re.Pattern[str]:
    """``*`` and ``?`` as DICOM wildcards; everything else literal."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in value)
    return re.compile(body, re.S if case else re.S | re.I)


def _matches(keyword: str, wanted: str, have: str) -> bool:
    """DICOM matching as far as the tests need: universal, wildcards, UID lists, ranges."""
    if wanted == "":
        return True
    vr = dictionary_VR(keyword)
    if vr == "DA" and "-" in wanted:
        lo, _, hi = wanted.partition("-")
        return bool(have) and (not lo or have >= lo) and (not hi or have <= hi)
    options = wanted.split("\\")
    haves = have.split("\\") if keyword == "ModalitiesInStudy" else [have]
    return any(
        _pattern(opt, case=vr != "PN").fullmatch(h)
        if ("*" in opt or "?" in opt)
        else (opt.lower() == h.lower() if vr == "PN" else opt == h)
        for opt in options
        for h in haves
    )


class _Study:
    """One study's summary and its datasets, from the sample index."""

    def __init__(self, uid: str, datasets: list[pydicom.Dataset]) -> None:
        self.uid = uid
        self.first = datasets[0]
        self.series: dict[str, list[pydicom.Dataset]] = {}
        for ds in sorted(datasets, key=lambda d: (int(d.SeriesNumber), int(d.InstanceNumber))):
            self.series.setdefault(ds.SeriesInstanceUID, []).append(ds)
        self.computed = {
            "ModalitiesInStudy": ("CS", "\\".join(sorted({ds.Modality for ds in datasets}))),
            "NumberOfStudyRelatedSeries": ("IS", str(len(self.series))),
            "NumberOfStudyRelatedInstances": ("IS", str(len(datasets))),
            "SOPClassesInStudy": ("UI", "\\".join(sorted({ds.SOPClassUID for ds in datasets}))),
        }

    def value(self, keyword: str) -> str:
        if keyword in self.computed:
            return self.computed[keyword][1]
        got = _value(self.first, keyword)
        return (got[1] or "") if got else ""

    def study_attrs(self, fields: list[str]) -> str:
        out = []
        for kw in fields:
            if kw not in STUDY_KEYS:
                continue
            got = self.computed.get(kw) or _value(self.first, kw)
            if got is None and kw in TYPE2_EMPTY:
                got = (dictionary_VR(kw), None)
            if got is not None:
                out.append(_attr(kw, *got))
        return "".join(out)


def _series_xml(datasets: list[pydicom.Dataset], fields: list[str], level: str) -> str:
    first = datasets[0]
    parts = ["<series>"]
    if level == "INSTANCE":
        for ds in datasets:
            parts.append("<instance>")
            parts.append(_attr("SOPInstanceUID", "UI", ds.SOPInstanceUID))
            parts.append(_attr("TransferSyntaxUID", "UI", ds.file_meta.TransferSyntaxUID))
            for kw in fields:
                if kw in INSTANCE_KEYS and kw not in ("SOPInstanceUID", "TransferSyntaxUID"):
                    got = _value(ds, kw)
                    if got:
                        parts.append(_attr(kw, *got))
            parts.append("</instance>")
    parts.append(_attr("SeriesInstanceUID", "UI", first.SeriesInstanceUID))
    for kw in fields:
        if kw == "NumberOfSeriesRelatedInstances":
            parts.append(_attr(kw, "IS", str(len(datasets))))
        elif kw in SERIES_KEYS and kw != "SeriesInstanceUID":
            got = _value(first, kw)
            if got:
                parts.append(_attr(kw, *got))
    parts.append("</series>")
    return "".join(parts)


class MintServer(TestHTTPServer):
    """The MINT test server; ``url`` is the MINT base URL (``.../rest/api/vault/mint``)."""

    def __init__(
        self,
        index: SampleIndex,
        *,
        split_duplicates: bool = False,
        bad_declaration: bool = False,
        control_chars: bool = False,
    ) -> None:
        super().__init__({("GET", PREFIX + "/studies"): self._studies})
        self.split_duplicates = split_duplicates
        self.bad_declaration = bad_declaration
        self.control_chars = control_chars
        self.fail_with: int | str | None = None
        self.fail_times: int | None = None
        self._fail_lock = threading.Lock()
        self.studies = [_Study(uid, dss) for uid, dss in index.studies().items()]
        self.studies.sort(key=lambda s: (s.value("StudyDate"), s.uid), reverse=True)

    @property
    def url(self) -> str:
        return self.root_url + PREFIX

    @property
    def root_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        assert isinstance(host, str)  # bound to "127.0.0.1"
        return f"http://{host}:{port}"

    # ------------------------------------------------------------ handler

    def _studies(self, req: Request) -> Response:
        failure = self._failure()
        if failure is not None:
            return failure
        try:
            return self._search(req)
        except BadRequest as exc:
            return Response(400, str(exc).encode(), content_type="text/plain")

    def _failure(self) -> Response | None:
        with self._fail_lock:
            if self.fail_with is None or self.fail_times == 0:
                return None
            if self.fail_times is not None:
                self.fail_times -= 1
            mode = self.fail_with
        if mode == 500:
            return Response(500, (RECORDED / "mint_error_500_jetty.html").read_bytes(), content_type=HTML_TYPE)
        page = (RECORDED / "mint_401_jetty.html").read_bytes()
        return Response(401 if mode == 401 else 200, page, content_type=HTML_TYPE)

    def _search(self, req: Request) -> Response:
        filters, level, fields, limit, dates = self._parse(req)
        found = [s for s in self.studies if self._match(s, filters, dates)]
        elements = []
        for study in found:
            elements += self._study_elements(study, level, fields)
        if limit:
            elements = elements[:limit]
        enc = "UTF-3" if self.bad_declaration else "UTF-8"
        queryfields = ",".join(f"{k}={v}" for k, v in filters)
        body = (
            f"<?xml version='1.0' encoding='{enc}'?>"
            f'<studySearchResults xmlns="http://medical.nema.org/mint" QueryLevel="{level}" '
            f'queryfields="{escape(queryfields, {chr(34): "&quot;"})}" includefields="{",".join(fields)}">'
            + "".join(elements)
            + "</studySearchResults>"
        )
        if self.control_chars:  # as Java servers write them: raw in LO values, and as a character reference
            body = body.replace('vr="LO" val="', 'vr="LO" val="\x0b').replace('vr="SH" val="', 'vr="SH" val="&#1;')
        ctype = "application/xml" if self.bad_declaration else "application/xml;charset=UTF-8"
        return Response(200, body.encode("utf-8"), content_type=ctype)

    def _parse(self, req: Request) -> tuple[list[tuple[str, str]], str, list[str], int, tuple[str, str] | None]:
        filters: list[tuple[str, str]] = []
        for key, value in req.query:
            if key in META:
                continue
            if tag_for_keyword(key) is None:
                raise BadRequest(f"unknown query parameter {key}")
            if key not in STUDY_KEYS:
                raise BadRequest(f"{key} is not a study-level query key")
            filters.append((key, value))
        level = req.arg("QueryLevel", "STUDY") or "STUDY"
        if level not in LEVELS:
            raise BadRequest(f"bad QueryLevel {level}")
        fields = list(DEFAULT_FIELDS)
        for kw in (req.arg("IncludeFields") or "").split(","):
            if kw and tag_for_keyword(kw) is None:
                raise BadRequest(f"unknown include field {kw}")
            if kw and kw not in fields:
                fields.append(kw)
        try:
            limit = int(req.arg("limit", "0") or "0")
        except ValueError:
            raise BadRequest("limit is not a number") from None
        lo, hi = req.arg("min_study_date"), req.arg("max_study_date")
        if (lo is None) != (hi is None):
            raise BadRequest("min_study_date and max_study_date go together")
        for d in (lo, hi):
            if d is not None and not re.fullmatch(r"\d{8}", d):
                raise BadRequest(f"bad date {d}")
        return filters, level, fields, limit, (lo, hi) if lo is not None and hi is not None else None

    @staticmethod
    def _match(study: _Study, filters: list[tuple[str, str]], dates: tuple[str, str] | None) -> bool:
        if dates is not None and not dates[0] <= study.value("StudyDate") <= dates[1]:
            return False
        return all(_matches(k, v, study.value(k)) for k, v in filters)

    def _study_elements(self, study: _Study, level: str, fields: list[str]) -> list[str]:
        series = list(study.series.values()) if level != "STUDY" else []
        groups = [series[0::2], series[1::2]] if self.split_duplicates else [series]
        out = []
        for i, group in enumerate(groups):
            mint_uuid = uuid.uuid5(uuid.NAMESPACE_OID, f"{study.uid}/{i}")
            out.append(
                f'<study studyUUID="{mint_uuid}" version="1" lastModified="2024-01-01T10:15:00.000Z">'
                + "".join(_series_xml(dss, fields, level) for dss in group)
                + study.study_attrs(fields)
                + "</study>"
            )
        return out
