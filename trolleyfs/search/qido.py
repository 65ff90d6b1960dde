"""QIDO-RS (PS3.18 10.6): study, series and instance searches over HTTP,
following limit/offset paging.  The query string is built by
:func:`~trolleyfs.search.fields.encode_query`, not by httpx (see there).

Paging as real servers need it:

* results are counted by their UID (duplicates merged), and a search with a
  ``limit`` returns at most that many, whatever the server sends;
* some servers cap a page silently (Google's Healthcare API: 100 studies,
  DICOM-RST: 200) or say so with a ``Warning: 299`` header.  A short page
  with the warning, or at least :data:`MIN_CAP_PROBE` results, is followed
  by one more request: an empty answer proves the listing complete (and
  pages up to that length need no such request again), more results reveal
  the server's cap, which is then the page size for that kind of search;
* some ignore ``offset``: paging stops at a page that repeats what was seen,
  and the log says the listing may be incomplete only when it may (the
  repeated page was as long as the page asked for, or as the server's cap).

A broken answer never costs more than it must: one attribute with a bad key
or value shape is left out, a raw control character or invalid UTF-8 inside a
value is accepted (each logged once per answer); only a body that is not
DICOM JSON at all fails the listing, with a one-line error."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from ..dicomjson import attrs_from_json
from ..errors import ProtocolError
from ..model import Instance, Query, Series, Study
from ..transport.http import HttpEndpoint
from .fields import AUTO, INSTANCE_FIELDS, SERIES_FIELDS, STUDY_FIELDS, UniqueRows, encode_query, spaced

log = logging.getLogger("trolleyfs.qido")

MAX_PAGES = 10_000
MIN_CAP_PROBE = 50  # a short page this long may be a silent cap: the next page is asked for


@dataclass
class _Paging:
    """What a server has shown about its pages, for one kind of search."""

    cap: int | None = None  # the most results it returns per request, once seen
    complete_up_to: int = 0  # short pages up to this length were seen to be the whole answer


class QidoRS:
    """A :class:`~trolleyfs.model.Searcher` over one QIDO-RS endpoint."""

    def __init__(self, endpoint: HttpEndpoint, page_size: int = 1000, space_as: str = AUTO) -> None:
        self.ep = endpoint
        self.name = endpoint.name
        self.page_size = page_size
        self.space_as = space_as
        self._paging: dict[str, _Paging] = {}  # by kind of search: studies, series, instances

    async def aclose(self) -> None:
        pass

    def _learn(self, paging: _Paging, kind: str, short: int, answered: bool, new: bool) -> None:
        """What the page after a short page of ``short`` results shows: new
        results reveal a cap (then the page size), nothing proves the listing
        complete (pages up to that length are then trusted)."""
        if answered and new:
            paging.cap = short
            log.info("%s: the server returns at most %d results per %s search; paging by that", self.name, short, kind)
        elif not answered:
            paging.complete_up_to = max(paging.complete_up_to, short)

    async def _search(
        self,
        path: str,
        params: list[tuple[str, str]],
        what: str,
        key: str,
        limit: int | None = None,
        keep: Callable[[dict[str, str]], bool] | None = None,
    ) -> dict[str, dict[str, str]]:
        """All results of a search by their UID ``key``, following paging;
        with ``keep``, only the results it keeps (and ``limit`` counts those)."""
        kind = path.rsplit("/", 1)[-1]
        paging = self._paging.setdefault(kind, _Paging())
        listing = UniqueRows(key)
        offset = 0
        probing: int | None = None  # the length of a short page whose follower is being asked for

        def kept() -> int:
            return len(listing.rows) if keep is None else sum(1 for r in listing.rows.values() if keep(r))

        for _ in range(MAX_PAGES):
            size = min(self.page_size, paging.cap or self.page_size)
            want = size if limit is None or keep is not None else min(size, limit - len(listing.rows))
            page, more_said = await self._page(path, [*params, ("limit", str(want)), ("offset", str(offset))], what)
            new = listing.add(page)
            short_before = probing or 0  # a short page came before: was it a cap?
            if probing is not None:
                self._learn(paging, kind, probing, bool(page), bool(new))
                probing = None
            if limit is not None and kept() >= limit:
                break
            if not page:
                break
            if not new:  # the page repeats what was seen: the server ignores offset
                if len(page) in (want, paging.cap, short_before):
                    log.warning(
                        "%s: %s: the server ignores the QIDO-RS offset; the listing may be incomplete "
                        "(%d results shown)",
                        self.name,
                        what,
                        len(listing.rows),
                    )
                break
            offset += len(page)
            if len(page) >= want:
                continue  # a full page (or more than asked: the server ignores limit)
            if more_said or len(page) == paging.cap:
                continue
            if paging.cap is None and len(page) >= MIN_CAP_PROBE and len(page) > paging.complete_up_to:
                probing = len(page)
                continue
            break
        else:
            log.warning("%s: %s: stopped after %d pages; the listing may be incomplete", self.name, what, MAX_PAGES)
        rows = listing.rows if keep is None else {uid: r for uid, r in listing.rows.items() if keep(r)}
        if limit is not None and len(rows) > limit:
            rows = dict(list(rows.items())[:limit])
        return rows

    async def _page(self, path: str, params: list[tuple[str, str]], what: str) -> tuple[list[dict[str, str]], bool]:
        """One request: its results, and whether the server said more exist (Warning 299)."""
        url = f"{self.ep.url}{path}?{encode_query(params)}"  # spaces in values: see find_studies
        resp = await self.ep.request("GET", url, what, headers={"Accept": "application/dicom+json, application/json"})
        page = self._parse(resp, what)
        more = any(w.strip().startswith("299") for w in resp.headers.get_list("warning"))
        return page, more

    def _parse(self, resp: httpx.Response, what: str) -> list[dict[str, str]]:
        body, ctype = resp.content, resp.headers.get("content-type", "")
        if resp.status_code == 204 or not body.strip():
            return []
        if "json" not in ctype.lower():
            raise ProtocolError(f"expected DICOM JSON, got {ctype or 'no Content-Type'}", server=self.name, what=what)
        try:
            data = _loads(body, self.name, what)
            if not isinstance(data, list):
                raise ValueError("top level is not a JSON array")
            problems: list[str] = []
            rows = [attrs_from_json(obj, problems) for obj in data]
        except RecursionError:
            raise ProtocolError("bad QIDO-RS answer: JSON nested too deeply", server=self.name, what=what) from None
        except ValueError as exc:
            raise ProtocolError(f"bad QIDO-RS answer: {exc}"[:300], server=self.name, what=what) from None
        if problems:
            log.warning(
                "%s: %s: %d malformed attributes left out (%s)", self.name, what, len(problems), "; ".join(problems[:3])
            )
        return rows

    async def find_studies(self, query: Query) -> list[Study]:
        sent = spaced(query.filters, self.space_as)  # spaces as wildcards, and the exact matches kept
        params = list(sent.filters.items())
        date_range = query.study_date_range()
        if date_range:
            params.append(("StudyDate", date_range))
        fields = dict.fromkeys(STUDY_FIELDS + tuple(query.include_fields) + tuple(sent.checks))
        params += [("includefield", f) for f in fields]
        keep = sent.keeps if sent.checks else None
        rows = await self._search("/studies", params, "study search", "StudyInstanceUID", query.limit, keep)
        return [Study(uid, row) for uid, row in rows.items()]

    async def find_series(self, study_uid: str) -> list[Series]:
        params = [("includefield", f) for f in SERIES_FIELDS]
        rows = await self._search(
            f"/studies/{study_uid}/series", params, f"series of study {study_uid}", "SeriesInstanceUID"
        )
        return [Series(study_uid, uid, row) for uid, row in rows.items()]

    async def find_instances(self, study_uid: str, series_uid: str) -> list[Instance]:
        path = f"/studies/{study_uid}/series/{series_uid}/instances"
        rows = await self._search(
            path, [("includefield", f) for f in INSTANCE_FIELDS], f"instances of series {series_uid}", "SOPInstanceUID"
        )
        return [Instance(study_uid, series_uid, uid, row) for uid, row in rows.items()]


def _loads(body: bytes, server: str, what: str) -> object:
    """JSON, forgiving what is wrong inside a value only: a raw control
    character (strict JSON forbids it) or invalid UTF-8 (replaced)."""
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        text = body.decode("utf-8", errors="replace")
        log.warning("%s: %s: invalid UTF-8 in the answer, replaced", server, what)
    except json.JSONDecodeError as exc:
        if "control character" not in exc.msg:
            raise
        text = body.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if "control character" not in exc.msg:
            raise
        data = json.loads(text, strict=False)
        log.warning("%s: %s: control characters inside values of the answer, kept", server, what)
    return data
