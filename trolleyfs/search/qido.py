"""QIDO-RS (PS3.18 10.6): study, series and instance searches over HTTP,
following limit/offset paging.  The query string is built by
:func:`~trolleyfs.search.fields.encode_query`, not by httpx (see there)."""

from __future__ import annotations

import json
import logging

from ..dicomjson import attrs_from_json
from ..errors import ProtocolError
from ..model import Instance, Query, Series, Study
from ..transport.http import HttpEndpoint
from .fields import INSTANCE_FIELDS, SERIES_FIELDS, STUDY_FIELDS, encode_query, unique_rows

log = logging.getLogger("trolleyfs.qido")

MAX_PAGES = 10_000


class QidoRS:
    """A :class:`~trolleyfs.model.Searcher` over one QIDO-RS endpoint."""

    def __init__(self, endpoint: HttpEndpoint, page_size: int = 1000) -> None:
        self.ep = endpoint
        self.name = endpoint.name
        self.page_size = page_size

    async def aclose(self) -> None:
        pass

    async def _search(
        self, path: str, params: list[tuple[str, str]], what: str, limit: int | None = None
    ) -> list[dict[str, str]]:
        """All results of a search, following limit/offset paging."""
        results: list[dict[str, str]] = []
        offset = 0
        first_uid_of_last_page = None
        for _ in range(MAX_PAGES):
            want = self.page_size if limit is None else min(self.page_size, limit - len(results))
            page_params = params + [("limit", str(want)), ("offset", str(offset))]
            url = f"{self.ep.url}{path}?{encode_query(page_params)}"
            resp = await self.ep.request(
                "GET", url, what, headers={"Accept": "application/dicom+json, application/json"}
            )
            page = self._parse(resp.status_code, resp.headers.get("content-type", ""), resp.content, what)
            if page and offset and first_uid_of_last_page == json.dumps(page[0], sort_keys=True):
                log.warning("%s: server ignores QIDO-RS offset; listing may be incomplete", self.name)
                break
            first_uid_of_last_page = json.dumps(page[0], sort_keys=True) if page else None
            results.extend(page)
            offset += len(page)
            if len(page) < want or (limit is not None and len(results) >= limit):
                break
        return results

    def _parse(self, status: int, ctype: str, body: bytes, what: str) -> list[dict[str, str]]:
        if status == 204 or not body.strip():
            return []
        if "json" not in ctype.lower():
            raise ProtocolError(f"expected DICOM JSON, got {ctype or 'no Content-Type'}", server=self.name, what=what)
        try:
            data = json.loads(body)
            if not isinstance(data, list):
                raise ValueError("top level is not a JSON array")
            return [attrs_from_json(obj) for obj in data]
        except ValueError as exc:
            raise ProtocolError(f"bad QIDO-RS answer: {exc}", server=self.name, what=what) from None

    async def find_studies(self, query: Query) -> list[Study]:
        params = [(k, v) for k, v in query.filters.items()]
        date_range = query.study_date_range()
        if date_range:
            params.append(("StudyDate", date_range))
        fields = dict.fromkeys(STUDY_FIELDS + tuple(query.include_fields))
        params += [("includefield", f) for f in fields]
        rows = await self._search("/studies", params, "study search", limit=query.limit)
        return [Study(uid, row) for uid, row in unique_rows(rows, "StudyInstanceUID").items()]

    async def find_series(self, study_uid: str) -> list[Series]:
        params = [("includefield", f) for f in SERIES_FIELDS]
        rows = await self._search(f"/studies/{study_uid}/series", params, f"series of study {study_uid}")
        return [Series(study_uid, uid, row) for uid, row in unique_rows(rows, "SeriesInstanceUID").items()]

    async def find_instances(self, study_uid: str, series_uid: str) -> list[Instance]:
        params = [("includefield", f) for f in INSTANCE_FIELDS]
        rows = await self._search(
            f"/studies/{study_uid}/series/{series_uid}/instances", params, f"instances of series {series_uid}"
        )
        unique = unique_rows(rows, "SOPInstanceUID")
        return [Instance(study_uid, series_uid, uid, row) for uid, row in unique.items()]
