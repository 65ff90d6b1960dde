"""The ``[[folders]]`` of the config: what a folder is (a study search on one
server), its dates (absolute or relative to today) and query values, and
reading one from its TOML table.  The checks of dates and query values are
shared with the ``query/`` paths of the mount.

Every value is checked so that a folder that loads can be listed: dates lie
within :data:`EARLIEST` and :data:`LATEST`, and a relative one reaches back at
most :data:`MAX_DAYS_BACK` days (so it resolves, and formats as a DICOM date,
for centuries to come); query values are single lines of at most
:data:`MAX_VALUE_CHARS` characters per value."""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR

from .model import Query, QueryLevel
from .naming import sanitize
from .syntaxes import VIEWS, parse_transfer_syntax
from .tomltable import Table, control_problem, kind_name

# Study-level keywords a folder query may filter on (dicomtrolley's Query
# fields and the other study-level return keys of the Study Root model).
QUERY_KEYS = frozenset(
    {
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "PatientBirthDate",
        "PatientSex",
        "OtherPatientIDs",
        "AccessionNumber",
        "StudyInstanceUID",
        "StudyID",
        "StudyDate",
        "StudyTime",
        "StudyDescription",
        "ModalitiesInStudy",
        "SOPClassesInStudy",
        "InstitutionName",
        "InstitutionalDepartmentName",
        "ReferringPhysicianName",
        "NameOfPhysiciansReadingStudy",
    }
)

EARLIEST = _dt.date(1800, 1, 1)  # DICOM dates have four-digit years; no study is older
LATEST = _dt.date(9999, 12, 31)
MAX_DAYS_BACK = 200 * 365  # "-200y"
MAX_VALUE_CHARS = 64  # the longest value of the query keys' VRs (LO, PN, UI)
# VRs whose values hold only the default character repertoire (PS3.5 6.2): no
# Specific Character Set applies to them, so a C-FIND cannot send anything else
ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"})
MAX_INCLUDE_FIELDS = 200
MAX_LIMIT = 10_000_000


@dataclass(frozen=True)
class DateSpec:
    """An absolute date or one relative to today (``-7d``, ``-2w``, ``-1y``, ``today``)."""

    text: str
    absolute: _dt.date | None
    days_back: int = 0

    def resolve(self, today: _dt.date | None = None) -> _dt.date:
        if self.absolute is not None:
            return self.absolute
        return (today or _dt.date.today()) - _dt.timedelta(days=self.days_back)


@dataclass(frozen=True)
class Folder:
    """A top-level directory: a study search on one server."""

    name: str
    server: str
    query: Mapping[str, str]
    min_study_date: DateSpec | None = None
    max_study_date: DateSpec | None = None
    include_fields: tuple[str, ...] = ()
    query_level: QueryLevel = QueryLevel.STUDY
    limit: int | None = None
    transfer_syntax: str | None = None  # serve files in this transfer syntax UID (None: as stored)
    views: tuple[str, ...] = ()  # "metadata", "zip", "nifti", "preview": offered under views/<folder>/

    def study_query(self, today: _dt.date | None = None) -> Query:
        """The study search a listing of this folder sends (dates resolved for ``today``)."""
        return to_query(
            self.query,
            self.min_study_date,
            self.max_study_date,
            include_fields=self.include_fields,
            level=self.query_level,
            limit=self.limit,
            today=today,
        )


def to_query(
    filters: Mapping[str, str],
    lo: DateSpec | None,
    hi: DateSpec | None,
    *,
    include_fields: tuple[str, ...] = (),
    level: QueryLevel = QueryLevel.STUDY,
    limit: int | None = None,
    today: _dt.date | None = None,
) -> Query:
    """A study search written with date specs (a folder's, a path's), its
    relative dates resolved for ``today``."""
    return Query(
        filters=dict(filters),
        min_study_date=lo.resolve(today) if lo else None,
        max_study_date=hi.resolve(today) if hi else None,
        include_fields=include_fields,
        level=level,
        limit=limit,
    )


def dates_as_written(lo: DateSpec | None, hi: DateSpec | None) -> tuple[str, str]:
    """A search's date bounds as written (``-7d``), for naming what is kept of
    it: a folder's listing is found again on another day."""
    return (lo.text if lo else "", hi.text if hi else "")


_REL_DATE = re.compile(r"-(\d{1,9})([dwmy])")
_UNIT_DAYS = {"d": 1, "w": 7, "m": 30, "y": 365}


def check_date(day: _dt.date) -> None:
    """ValueError unless ``day`` is a date (not a date-time) a study may have."""
    if isinstance(day, _dt.datetime):
        raise ValueError(f"{day.isoformat()} is a date-time: give a date (YYYY-MM-DD)")
    if not EARLIEST <= day <= LATEST:
        raise ValueError(f"{day.isoformat()} is not between {EARLIEST.isoformat()} and {LATEST.isoformat()}")


def parse_date(text: str) -> DateSpec:
    """``2020-01-01``, ``20200101``, ``today``, ``-7d``, ``-2w``, ``-6m``, ``-1y``."""
    t = text.strip().lower()
    if t == "today":
        return DateSpec(text, None, 0)
    m = _REL_DATE.fullmatch(t)
    if m:
        days = int(m.group(1)) * _UNIT_DAYS[m.group(2)]
        if days > MAX_DAYS_BACK:
            raise ValueError(f"{text!r} reaches back more than 200 years")
        return DateSpec(text, None, days)
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            day = _dt.datetime.strptime(t, fmt).date()
        except ValueError:
            continue
        check_date(day)
        return DateSpec(text, day)
    raise ValueError(
        f"{text!r} is not a date (use YYYY-MM-DD, YYYYMMDD, 'today' or a relative form like '-7d', '-2w', '-6m', '-1y')"
    )


def query_value(key: str, value: object) -> str:
    """A study query's value for ``key``, as it is sent (the checks of a
    folder's ``query`` table, shared by the ``query/`` paths of the mount).
    Raises ValueError saying what is wrong."""
    if key not in QUERY_KEYS:
        raise ValueError(f"unknown query key (expected one of: {', '.join(sorted(QUERY_KEYS))})")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"must be a string, not {kind_name(value)}")
    if isinstance(value, int) and not -(10**MAX_VALUE_CHARS) < value < 10**MAX_VALUE_CHARS:
        raise ValueError(f"is longer than {MAX_VALUE_CHARS} characters")
    text = str(value)
    problem = control_problem(text)
    if problem:
        raise ValueError(problem)
    vr = dictionary_VR(key)
    if vr in ASCII_VRS and not text.isascii():
        raise ValueError(f"must be ASCII (a {vr} value holds no other characters)")
    if "\\" in text and key != "ModalitiesInStudy":
        raise ValueError("must be a single value (no backslash)")
    if any(len(v) > MAX_VALUE_CHARS for v in text.split("\\")):
        raise ValueError(f"is longer than {MAX_VALUE_CHARS} characters")
    return text


def date_range_problem(lo: DateSpec | None, hi: DateSpec | None, query: Mapping[str, str]) -> tuple[str, str] | None:
    """``(key, problem)`` if a study date range cannot be used with ``query``."""
    if lo and hi and lo.resolve() > hi.resolve():
        return "min_study_date", f"{lo.text} is after max_study_date {hi.text}"
    if (lo or hi) and "StudyDate" in query:
        return "min_study_date" if lo else "max_study_date", "cannot be combined with query.StudyDate"
    return None


FOLDER_KEYS = {
    "name",
    "server",
    "query",
    "min_study_date",
    "max_study_date",
    "include_fields",
    "query_level",
    "limit",
    "transfer_syntax",
    "views",
}


def _keyword_ok(word: str) -> bool:
    from pydicom.datadict import tag_for_keyword  # here: pydicom takes a tenth of a second to import

    return tag_for_keyword(word) is not None


def _date(t: Table, key: str) -> DateSpec | None:
    v = t.get_any(key, (str, _dt.date))
    if v is None:
        return None
    try:
        if isinstance(v, _dt.date):
            check_date(v)
            return DateSpec(v.isoformat(), v)
        return parse_date(str(v))
    except ValueError as exc:
        raise t.error(key, str(exc)) from None


def _folder_name(t: Table, reserved: Collection[str]) -> str:
    name = t.require("name", str)
    if not name or sanitize(name) != name:
        raise t.error("name", f"{name!r} is not usable as a directory name")
    if name in reserved:
        raise t.error("name", f"{name!r} is reserved")
    return name


def _folder_server(t: Table, servers: Mapping[str, object]) -> str:
    server = t.get("server", str)
    if server is None:
        if len(servers) != 1:
            raise t.error("server", f"is missing (there are {len(servers)} servers: say which)")
        return next(iter(servers))
    if server not in servers:
        raise t.error("server", f"names unknown server {server!r} (known: {', '.join(servers) or 'none'})")
    return server


def _folder_query(t: Table) -> dict[str, str]:
    q = t.table("query")
    if q is None:
        return {}
    query: dict[str, str] = {}
    for k, v in q.data.items():
        try:
            query[k] = query_value(k, v)
        except ValueError as exc:
            raise q.error(k, str(exc)) from None
    return query


def _include_fields(t: Table) -> tuple[str, ...]:
    inc = t.get("include_fields", list, [])
    if len(inc) > MAX_INCLUDE_FIELDS:
        raise t.error("include_fields", f"has more than {MAX_INCLUDE_FIELDS} keywords")
    for f in inc:
        if not isinstance(f, str) or not _keyword_ok(f):
            raise t.error("include_fields", f"{f!r} is not a DICOM keyword")
    return tuple(inc)


def _query_level(t: Table) -> QueryLevel:
    level_text = t.get("query_level", str, "study")
    try:
        return QueryLevel(level_text.lower())
    except ValueError:
        raise t.error("query_level", f"{level_text!r} is not one of: study, series, instance") from None


def _views(t: Table) -> tuple[str, ...]:
    views = t.get("views", list, [])
    for v in views:
        if v not in VIEWS:
            raise t.error("views", f"{v!r} is not a view (expected some of: {', '.join(VIEWS)})")
    return tuple(dict.fromkeys(views))


def parse_folder(t: Table, servers: Mapping[str, object], reserved: Collection[str]) -> Folder:
    """One ``[[folders]]`` table; ``servers`` are the configured ones by name."""
    t.check_keys(FOLDER_KEYS)
    name = _folder_name(t, reserved)
    server = _folder_server(t, servers)
    query = _folder_query(t)
    lo, hi = _date(t, "min_study_date"), _date(t, "max_study_date")
    problem = date_range_problem(lo, hi, query)
    if problem:
        raise t.error(*problem)
    limit = t.get("limit", int)
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise t.error("limit", f"must be between 1 and {MAX_LIMIT}")
    try:
        transfer_syntax = parse_transfer_syntax(t.get("transfer_syntax", str, ""))
    except ValueError as exc:
        raise t.error("transfer_syntax", str(exc)) from None
    return Folder(
        name=name,
        server=server,
        query=query,
        min_study_date=lo,
        max_study_date=hi,
        include_fields=_include_fields(t),
        query_level=_query_level(t),
        limit=limit,
        transfer_syntax=transfer_syntax,
        views=_views(t),
    )
