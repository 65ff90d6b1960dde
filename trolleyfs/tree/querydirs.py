"""Queries in the path: ``by-accession/<AccessionNumber>``,
``by-patient/<PatientID>`` and ``query/<Keyword>=<value>[,...]`` at the root.

Each is answered on lookup, on every configured server, the results merged
(a study found on two servers is shown once, from the first in config order)
and each study kept with the server it came from; below them is the usual
study / series / instance tree.  A lookup's listing is kept for ``folder_ttl``
seconds, so looking the same path up again costs no request.  The three
directories list only what was looked up lately (the last :data:`RECENT`).

A path component is percent-decoded after it is split, so a value can hold
any character a name cannot: ``%2F`` for ``/``, ``%2C`` for ``,``, ``%25`` for
``%``.  ``query/`` takes the keys, wildcards and date forms of a folder's
query (checked by the same code as the config); a name that is not a valid
query is ENOENT with one log line, and never a request.  An accession number
or patient ID that matches nothing is ENOENT too; a ``query/`` that matches
nothing is an empty directory."""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

import trio

from ..errors import TrolleyError
from ..folders import DateSpec, date_range_problem, dates_as_written, parse_date, query_value, to_query
from ..listings.identity import search_key
from ..model import Query, Study
from ..rootnames import BY_ACCESSION_DIR, BY_PATIENT_DIR, QUERY_DIR
from .base import DirNode, ListedDir, Node, is_probe
from .context import Context
from .dirs import StudyDir, relist

log = logging.getLogger("trolleyfs.tree")

RECENT = 100  # lookups each of the three directories remembers (and lists)
BAD_NAME_QUIET_S = 30.0  # the same bad name is logged once in this time


@dataclass(frozen=True)
class PathQuery:
    """A study search written in a path component."""

    filters: Mapping[str, str]
    min_study_date: DateSpec | None = None
    max_study_date: DateSpec | None = None
    limit: int | None = None
    extra: Mapping[str, str] = field(default_factory=dict)  # the non-filter keys as written

    def query(self) -> Query:
        """The search, its relative dates resolved now."""
        return to_query(self.filters, self.min_study_date, self.max_study_date, limit=self.limit)

    def key(self) -> str:
        """What names the search for keeping its result (dates as written)."""
        return search_key(self.query(), *dates_as_written(self.min_study_date, self.max_study_date))


def _value(text: str) -> str:
    try:
        value = unquote(text, errors="strict")
        value.encode("utf-8")  # a name that was not UTF-8 decodes to surrogates
    except UnicodeError:
        raise ValueError(f"{text!r} is not UTF-8 (write other bytes as %XX of their UTF-8)") from None
    if not value:
        raise ValueError("an empty value matches everything: leave the key out instead")
    return value


def single_value_query(keyword: str, name: str) -> PathQuery:
    """``by-accession/<value>`` and ``by-patient/<value>``."""
    value = _value(name)
    try:
        return PathQuery({keyword: query_value(keyword, value)})
    except ValueError as exc:
        raise ValueError(f"{keyword}: {exc}") from None


def parse_query(name: str) -> PathQuery:
    """``Keyword=value[,Keyword=value...]``; also ``min_study_date``,
    ``max_study_date`` (the dates of a folder: ``2020-01-01``, ``-30d``, ...)
    and ``limit``.  Raises ValueError naming the offending key."""
    filters: dict[str, str] = {}
    extra: dict[str, str] = {}
    for item in name.split(","):
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"{item!r} is not Keyword=value")
        if key in filters or key in extra:
            raise ValueError(f"{key}: given twice")
        try:
            value = _value(raw)
            if key in ("min_study_date", "max_study_date"):
                parse_date(value)
                extra[key] = value
            elif key == "limit":
                if not value.isdigit() or int(value) < 1:
                    raise ValueError(f"{value!r} is not a whole number of at least 1")
                extra[key] = value
            else:
                filters[key] = query_value(key, value)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    lo = parse_date(extra["min_study_date"]) if "min_study_date" in extra else None
    hi = parse_date(extra["max_study_date"]) if "max_study_date" in extra else None
    problem = date_range_problem(lo, hi, filters)
    if problem:
        raise ValueError(f"{problem[0]}: {problem[1]}")
    limit = int(extra["limit"]) if "limit" in extra else None
    return PathQuery(filters, lo, hi, limit, extra)


class QueryDir(ListedDir):
    """The studies one path query finds, on every server."""

    def __init__(self, name: str, parent: DirNode, ctx: Context, spec: PathQuery) -> None:
        super().__init__(name, parent, ctx.mount_time, ctx.ttls.studies)
        self._ctx = ctx
        self.spec = spec

    async def _resolve(self) -> dict[str, Node]:
        listings = self._ctx.listings
        found: dict[str, tuple[str, Study]] = {}  # study UID -> (server, study), first server first
        query, key = self.spec.query(), self.spec.key()
        for server in listings.servers:
            for study in await listings.find_studies(server, query, key):
                found.setdefault(study.uid, (server, study))
        studies = [study for _, study in found.values()]
        old = {(n.server, n.study.uid): n for n in self._current() if isinstance(n, StudyDir)}
        return relist(
            self._ctx.names["study"],
            studies,
            lambda s: old.get((found[s.uid][0], s.uid)),  # kept only if it comes from the same server
            StudyDir.update,
            lambda name, s: StudyDir(name, self, self._ctx, found[s.uid][0], s),
            shown=self._ctx.presenter.study,
        )

    def xattrs(self) -> dict[str, str]:
        query = dict(self.spec.filters) | dict(self.spec.extra)
        return {"user.trolleyfs.query": json.dumps(query, sort_keys=True)}


class QueryRootDir(DirNode):
    """``by-accession``, ``by-patient`` or ``query``: a directory whose children
    are made by looking them up."""

    def __init__(self, name: str, parent: DirNode, ctx: Context) -> None:
        super().__init__(name, parent, ctx.mount_time, float("inf"))
        self._ctx = ctx
        self._recent: OrderedDict[str, QueryDir] = OrderedDict()  # looked up lately, found or not
        self._shown: OrderedDict[str, QueryDir] = OrderedDict()  # ... and found: what a listing shows
        self._bad_logged: dict[str, float] = {}

    def _spec(self, name: str) -> PathQuery:
        if self.name == BY_ACCESSION_DIR:
            return single_value_query("AccessionNumber", name)
        if self.name == BY_PATIENT_DIR:
            return single_value_query("PatientID", name)
        return parse_query(name)

    async def children(self) -> Mapping[str, Node]:
        # the names looked up, found: ls shows them, but not on a de-identified
        # mount, where each is a real accession number, patient ID or query
        return dict(self._shown) if self._ctx.presenter.lists_lookups else {}

    def cached_child(self, name: str) -> Node | None:
        return self._shown.get(name)

    async def lookup(self, name: str) -> Node | None:
        if is_probe(name):
            return self.cached_child(name)
        node = self._recent.get(name)
        if node is None:
            try:
                spec = self._spec(name)
            except ValueError as exc:
                self._log_bad(name, str(exc))
                return None  # not a query: no request
            node = QueryDir(name, self, self._ctx, spec)
        _remember(self._recent, name, node)
        try:
            found = await node.children()
        except TrolleyError:
            self._shown.pop(name, None)
            raise
        if not found and self.name != QUERY_DIR:
            self._shown.pop(name, None)
            return None  # no such accession number or patient
        _remember(self._shown, name, node)
        return node

    def _log_bad(self, name: str, problem: str) -> None:
        now = trio.current_time()
        if now - self._bad_logged.get(name, float("-inf")) < BAD_NAME_QUIET_S:
            return
        if len(self._bad_logged) >= RECENT:
            self._bad_logged.clear()
        self._bad_logged[name] = now
        log.warning("%s/%s: not a query, no such directory: %s", self.name, name, problem)


def _remember(recent: OrderedDict[str, QueryDir], name: str, node: QueryDir) -> None:
    recent[name] = node
    recent.move_to_end(name)
    while len(recent) > RECENT:
        recent.popitem(last=False)


def query_roots(root: DirNode, ctx: Context) -> list[DirNode]:
    """The three directories, for the root."""
    return [QueryRootDir(n, root, ctx) for n in (BY_ACCESSION_DIR, BY_PATIENT_DIR, QUERY_DIR)]
