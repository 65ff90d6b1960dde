"""MINT study searches, as a Vitrea Connection server answers them.

One request shape: ``GET {url}/studies?<DICOM keyword filters>&min_study_date=..
&max_study_date=..&QueryLevel=STUDY|SERIES|INSTANCE&IncludeFields=a,b&limit=n``
(the parameter names dicomtrolley sends).  The answer is a
``studySearchResults`` XML document in the ``http://medical.nema.org/mint``
namespace::

    <study studyUUID=".." ...>
      <series>
        <instance><attr tag="00080018" vr="UI" val=".."/></instance>
        <attr tag="0020000e" vr="UI" val=".."/>
      </series>
      <attr tag="0020000d" vr="UI" val=".."/>   (study attrs may follow the series)
    </study>

Real servers' quirks handled here: ``val`` missing (an attribute present but
empty), a bogus XML encoding declaration, control characters XML forbids
inside values (replaced by U+FFFD, logged once per answer), one StudyInstanceUID spread over
several ``<study>`` elements (merged), and HTML error pages where XML belongs
(an error, never an empty listing).  MINT has no offset paging; ``limit`` caps
the number of ``<study>`` elements.
"""

from __future__ import annotations

import codecs
import logging
import re
import xml.parsers.expat
from dataclasses import dataclass, field
from functools import lru_cache
from typing import ClassVar

import httpx
import trio
from pydicom.datadict import keyword_for_tag

from ..errors import ProtocolError
from ..model import Instance, Query, QueryLevel, Series, Study
from ..transport.http import HttpEndpoint
from ..transport.http_errors import describe_status
from . import fields
from .fields import AUTO, encode_query, fill_missing

log = logging.getLogger("trolleyfs.mint")

MINT_NS = "http://medical.nema.org/mint"

# Return keys a MINT search asks for beyond every protocol's (search.fields):
# a few the Vitrea Connection manual lists as valid at that QueryLevel (a
# study-level key is valid at every level).
MINT_STUDY_EXTRA = ("PatientBirthDate", "PatientSex")
MINT_SERIES_EXTRA = ("SeriesDate", "SeriesTime")

# Vitrea wants both ends of a date range; an open end is sent as these.
EARLIEST_DATE = "19000101"
LATEST_DATE = "99991231"

INSTANCE_CACHE_TTL = 10.0  # seconds a study's instance listing serves sibling series
_INSTANCE_CACHE_SIZE = 8
_PARSE_THREADS = 2


class MintParseError(ValueError):
    """The body is not a MINT ``studySearchResults`` document."""


# ---------------------------------------------------------------- requests


def fields_for(level: QueryLevel, extra: tuple[str, ...] = ()) -> list[str]:
    """The IncludeFields for a search at ``level``: every level down to it, then ``extra``."""
    names = [*fields.STUDY_FIELDS, *MINT_STUDY_EXTRA]
    if level in (QueryLevel.SERIES, QueryLevel.INSTANCE):
        names += [*fields.SERIES_FIELDS, *MINT_SERIES_EXTRA]
    if level is QueryLevel.INSTANCE:
        names += fields.INSTANCE_FIELDS
    return list(dict.fromkeys(names + list(extra)))


def build_params(query: Query) -> list[tuple[str, str]]:
    """The query string parameters of a study search, in a stable order."""
    params = [(k, v) for k, v in query.filters.items() if v != ""]
    if query.min_study_date or query.max_study_date:
        lo = query.min_study_date.strftime("%Y%m%d") if query.min_study_date else EARLIEST_DATE
        hi = query.max_study_date.strftime("%Y%m%d") if query.max_study_date else LATEST_DATE
        params += [("min_study_date", lo), ("max_study_date", hi)]
    params.append(("QueryLevel", query.level.name))
    params.append(("IncludeFields", ",".join(fields_for(query.level, query.include_fields))))
    if query.limit:
        params.append(("limit", str(query.limit)))
    return params


# ---------------------------------------------------------------- parsing


@dataclass
class _Node:
    """One ``<study>``, ``<series>`` or ``<instance>`` as read, before UIDs are checked."""

    attrs: dict[str, str] = field(default_factory=dict)
    children: list[_Node] = field(default_factory=list)


@lru_cache(maxsize=4096)
def tag_keyword(tag: str) -> str:
    """``0020000d`` -> ``StudyInstanceUID``; an unknown or private tag stays as 8 hex digits."""
    try:
        number = int(tag, 16)
    except ValueError:
        return ""
    if not 0 <= number <= 0xFFFFFFFF:
        return ""
    return keyword_for_tag(number) or f"{number:08X}"


def _clean(value: str, vr: str) -> str:
    """Drop DICOM padding; UIDs lose every surrounding space (servers pad them too)."""
    if vr == "UI":
        return "\\".join(part.strip(" \x00") for part in value.split("\\"))
    return value.rstrip(" \x00")


class _Reader:
    """expat callbacks that collect studies, series, instances and their direct ``<attr>``s.

    ``<attr>`` elements nested deeper (sequence items) are skipped: a sequence
    is kept as an empty value, since attrs are flat strings."""

    _PARENT: ClassVar[dict[str, str]] = {"study": "studySearchResults", "series": "study", "instance": "series"}

    def __init__(self) -> None:
        self.root: str | None = None
        self.studies: list[_Node] = []
        # open elements: (local name, the node it is, if it is a study/series/instance
        # in the right place, or the root).  Anything else carries None.
        self._stack: list[tuple[str, _Node | None]] = []

    def start(self, name: str, attrs: dict[str, str]) -> None:
        ns, _, local = name.rpartition("}")
        if not self._stack:
            self.root = local
            if local != "studySearchResults":
                raise MintParseError(f"root element is <{local}>, not <studySearchResults>")
            if ns and ns != MINT_NS:
                log.debug("MINT answer in namespace %r", ns)
            self._stack.append((local, _Node()))
            return
        parent_name, parent = self._stack[-1]
        node = None
        if parent is not None and self._PARENT.get(local) == parent_name:
            node = _Node()
            (self.studies if local == "study" else parent.children).append(node)
        elif local == "attr" and parent is not None and parent_name != "studySearchResults":
            self._attr(parent, attrs)
        self._stack.append((local, node))

    def end(self, name: str) -> None:
        self._stack.pop()

    def _attr(self, node: _Node, attrs: dict[str, str]) -> None:
        keyword = tag_keyword(attrs.get("tag", "").strip())
        if not keyword:
            log.debug("MINT attr with a bad tag skipped: %r", attrs)
            return
        vr = attrs.get("vr", "").strip().upper()
        value = "" if vr == "SQ" else _clean(attrs.get("val", ""), vr)
        node.attrs.setdefault(keyword, value)


def _refuse_doctype(*_args: object) -> None:
    raise MintParseError("DOCTYPE declarations are not accepted in a MINT answer")


def _text_encoding(body: bytes, charset: str | None) -> str:
    """The codec to decode ``body`` with: the HTTP charset, else the XML
    declaration's, else UTF-8; a name Python does not know is skipped, because
    servers declare nonsense (``encoding='UTF-3'``)."""
    candidates = [charset]
    m = re.match(rb"\s*<\?xml[^>]*?encoding\s*=\s*['\"]([A-Za-z0-9._:-]+)['\"]", body[:200])
    if m:
        candidates.append(m.group(1).decode("ascii"))
    for name in candidates:
        if not name:
            continue
        try:
            return codecs.lookup(name).name
        except LookupError:
            log.debug("unknown encoding %r in a MINT answer", name)
    return "utf-8"


# Characters XML 1.0 forbids, raw or as character references: Java servers write
# control characters found in DICOM values as they are.  They are data errors in
# one value, not a broken document: replaced, and the value kept.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_XML_FORBIDDEN_REF = re.compile(
    r"&#(?:0*(?:[0-8]|1[124-9]|2[0-9]|3[01]|6553[45])"  # decimal
    r"|[xX]0*(?:[0-8]|[bBcC]|[eEfF]|1[0-9a-fA-F]|[fF]{3}[eEfF]));"  # hexadecimal
)


def read_studies(body: bytes, charset: str | None = None) -> list[_Node]:
    """Parse a ``studySearchResults`` body into raw nodes.  Raises MintParseError.

    The text is decoded by Python and handed to expat as UTF-8 with that
    encoding forced, so the document's own declaration is never trusted.
    DOCTYPE (and with it every entity declaration) is refused, so neither
    external entities nor entity expansion bombs can happen."""
    text = body.decode(_text_encoding(body, charset), errors="replace").lstrip("\ufeff")
    text, bad = _XML_FORBIDDEN.subn("\ufffd", text)
    text, bad_refs = _XML_FORBIDDEN_REF.subn("&#xFFFD;", text)
    if bad or bad_refs:
        log.warning(
            "MINT answer: %d characters XML 1.0 forbids (control characters in values) replaced by U+FFFD",
            bad + bad_refs,
        )
    parser = xml.parsers.expat.ParserCreate("UTF-8", namespace_separator="}")
    reader = _Reader()
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_doctype
    parser.ExternalEntityRefHandler = lambda *a: 0  # never fetched (and no DOCTYPE gets this far)
    try:
        parser.Parse(text.encode("utf-8"), True)
    except xml.parsers.expat.ExpatError as exc:
        raise MintParseError(f"not well-formed XML: {exc}") from None
    if reader.root is None:
        raise MintParseError("no XML element in the answer")
    return reader.studies


def _uid(node: _Node, keyword: str) -> str:
    return node.attrs.get(keyword, "").split("\\")[0].strip()


def to_studies(raw: list[_Node], level: QueryLevel) -> list[Study]:
    """Model objects from parsed nodes, one Study per StudyInstanceUID.

    Series (and instances) are filled only when the search went that deep;
    elements without their UID are skipped with a warning."""
    studies: dict[str, Study] = {}
    for node in raw:
        uid = _uid(node, "StudyInstanceUID")
        if not uid:
            log.warning("MINT <study> without StudyInstanceUID skipped")
            continue
        series = None
        if level is not QueryLevel.STUDY:
            series = [s for s in (_to_series(uid, child, level) for child in node.children) if s is not None]
        _merge_study(studies, Study(uid, dict(node.attrs), series))
    return list(studies.values())


def _to_series(study_uid: str, node: _Node, level: QueryLevel) -> Series | None:
    uid = _uid(node, "SeriesInstanceUID")
    if not uid:
        log.warning("MINT <series> without SeriesInstanceUID in study %s skipped", study_uid)
        return None
    instances = None
    if level is QueryLevel.INSTANCE:
        instances = []
        for child in node.children:
            sop = _uid(child, "SOPInstanceUID")
            if sop:
                instances.append(Instance(study_uid, uid, sop, dict(child.attrs)))
            else:
                log.warning("MINT <instance> without SOPInstanceUID in series %s skipped", uid)
    return Series(study_uid, uid, dict(node.attrs), instances)


def _merge_study(studies: dict[str, Study], study: Study) -> None:
    """Vitrea can list one StudyInstanceUID as several MINT studies (different
    studyUUIDs): they are one folder, so their series and instances are joined."""
    have = studies.get(study.uid)
    if have is None:
        studies[study.uid] = study
        study.series = _dedup_series(study.series) if study.series is not None else None
        return
    fill_missing(have.attrs, study.attrs)
    if study.series is None:
        return
    if have.series is None:
        have.series = []
    have.series = _dedup_series(have.series + study.series)


def _dedup_series(series: list[Series]) -> list[Series]:
    out: dict[str, Series] = {}
    for s in series:
        have = out.get(s.uid)
        if have is None:
            out[s.uid] = Series(s.study_uid, s.uid, dict(s.attrs), _dedup_instances(s.instances))
            continue
        fill_missing(have.attrs, s.attrs)
        if s.instances is not None:
            have.instances = _dedup_instances((have.instances or []) + s.instances)
    return list(out.values())


def _dedup_instances(instances: list[Instance] | None) -> list[Instance] | None:
    if instances is None:
        return None
    out: dict[str, Instance] = {}
    for inst in instances:
        if inst.uid in out:
            fill_missing(out[inst.uid].attrs, inst.attrs)
        else:
            out[inst.uid] = inst
    return list(out.values())


def parse_response(body: bytes, level: QueryLevel, charset: str | None = None) -> list[Study]:
    """A whole MINT answer body -> merged studies.  Raises MintParseError."""
    return to_studies(read_studies(body, charset), level)


def _looks_like_html(body: bytes) -> bool:
    head = body[:512].lstrip().lower()
    return head.startswith((b"<html", b"<!doctype html", b"<head", b"<body")) or b"<html" in head[:200]


# ---------------------------------------------------------------- searcher


class Mint:
    """A Searcher over one MINT endpoint (``url`` is the part before ``/studies``)."""

    def __init__(
        self, endpoint: HttpEndpoint, instance_cache_ttl: float = INSTANCE_CACHE_TTL, space_as: str = AUTO
    ) -> None:
        self.ep = endpoint
        self.space_as = space_as
        self.name = endpoint.name
        self.instance_cache_ttl = instance_cache_ttl
        self._parse_limiter = trio.CapacityLimiter(_PARSE_THREADS)
        # study UID -> (expiry, {series UID: instances}); lets the series of one
        # study share the one instance-level search MINT can do.
        self._instances: dict[str, tuple[float, dict[str, list[Instance]]]] = {}
        self._instance_locks: dict[str, trio.Lock] = {}

    async def aclose(self) -> None:
        self._instances.clear()

    async def _search(self, params: list[tuple[str, str]], level: QueryLevel, what: str) -> list[Study]:
        space = "%20" if self.space_as == AUTO else self.space_as  # "auto" on MINT: servers decode the query
        url = f"{self.ep.url}/studies?{encode_query(params, space)}"
        resp = await self.ep.request("GET", url, what, headers={"Accept": "application/xml, text/xml;q=0.9"})
        body = self._checked_body(resp, what)
        if body is None:
            return []
        try:
            return await trio.to_thread.run_sync(
                parse_response, body, level, resp.charset_encoding, limiter=self._parse_limiter
            )
        except MintParseError as exc:
            raise ProtocolError(f"bad MINT answer: {exc}", server=self.name, what=what) from None

    def _checked_body(self, resp: httpx.Response, what: str) -> bytes | None:
        """The body if it can be MINT XML; None for "no content"; else ProtocolError.
        An HTML page in a 2xx answer is a login or error page, never an empty result."""
        body = resp.content
        ctype = resp.headers.get("content-type", "").lower()
        if resp.status_code == 204:
            return None
        if "html" in ctype or _looks_like_html(body):
            raise ProtocolError(
                f"expected MINT XML, got an HTML page ({describe_status(resp)})", server=self.name, what=what
            )
        if ctype and "xml" not in ctype:
            raise ProtocolError(f"expected MINT XML, got {ctype}", server=self.name, what=what)
        if not body.strip():
            raise ProtocolError("empty answer where MINT XML belongs", server=self.name, what=what)
        return body

    async def find_studies(self, query: Query) -> list[Study]:
        studies = await self._search(build_params(query), query.level, "MINT study search")
        if query.limit is not None and len(studies) > query.limit:
            studies = studies[: query.limit]
        return studies

    async def find_series(self, study_uid: str) -> list[Series]:
        query = Query(filters={"StudyInstanceUID": study_uid}, level=QueryLevel.SERIES)
        studies = await self._search(build_params(query), QueryLevel.SERIES, f"series of study {study_uid}")
        return [s for study in studies if study.uid == study_uid for s in study.series or []]

    async def find_instances(self, study_uid: str, series_uid: str) -> list[Instance]:
        by_series = await self._study_instances(study_uid, f"instances of series {series_uid}")
        return list(by_series.get(series_uid, []))

    async def _study_instances(self, study_uid: str, what: str) -> dict[str, list[Instance]]:
        """Every instance of a study by series: MINT cannot search one series, so
        one INSTANCE-level search serves all of a study's series for a few seconds."""
        lock = self._instance_locks.setdefault(study_uid, trio.Lock())
        try:
            async with lock:
                cached = self._instances.get(study_uid)
                if cached and cached[0] > trio.current_time():
                    return cached[1]
                query = Query(filters={"StudyInstanceUID": study_uid}, level=QueryLevel.INSTANCE)
                studies = await self._search(build_params(query), QueryLevel.INSTANCE, what)
                by_series: dict[str, list[Instance]] = {}
                for study in studies:
                    if study.uid == study_uid:
                        for s in study.series or []:
                            by_series.setdefault(s.uid, []).extend(s.instances or [])
                if self.instance_cache_ttl > 0:
                    self._remember(study_uid, by_series)
                return by_series
        finally:
            # the last one out drops the lock (a waiter already owns it when released to one)
            idle = not lock.locked() and not lock.statistics().tasks_waiting
            if idle and self._instance_locks.get(study_uid) is lock:
                del self._instance_locks[study_uid]

    def _remember(self, study_uid: str, by_series: dict[str, list[Instance]]) -> None:
        now = trio.current_time()
        for uid in [u for u, (expiry, _) in self._instances.items() if expiry <= now]:
            del self._instances[uid]
        while len(self._instances) >= _INSTANCE_CACHE_SIZE:
            del self._instances[next(iter(self._instances))]
        self._instances[study_uid] = (now + self.instance_cache_ttl, by_series)
