"""WADO-RS ``/metadata`` (PS3.18 10.4.1.1.2): the headers of a series or a
study as DICOM JSON, without pixel data, in one request.  A
:class:`~trolleyfs.model.MetadataSource` over a DICOMweb endpoint (the
server's QIDO-RS or WADO-RS URL), used by the metadata views."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from ..dicomjson import PIXEL_TAGS
from ..errors import ProtocolError
from ..transport.http import HttpEndpoint

Items = list[dict[str, Any]]


def checked(doc: Any, server: str, what: str) -> Items:
    """A ``/metadata`` answer as a list of instance objects, pixel data left
    out; ProtocolError if it is not a JSON array of objects.  Objects are
    otherwise kept as sent (Vitrea 9.2 leaves SOPInstanceUID out)."""
    if not isinstance(doc, list):
        raise ProtocolError("metadata is not a JSON array", server=server, what=what)
    out = []
    for item in doc:
        if not isinstance(item, dict):
            raise ProtocolError("metadata holds something that is not a JSON object", server=server, what=what)
        out.append({tag: elem for tag, elem in item.items() if tag.upper() not in PIXEL_TAGS})
    return out


class WadoMetadata:
    """WADO-RS ``/metadata`` of one DICOMweb endpoint."""

    def __init__(self, endpoint: HttpEndpoint) -> None:
        self.ep = endpoint
        self.name = endpoint.name

    async def _get(self, path: str, what: str) -> Items:
        resp = await self.ep.request(
            "GET", f"{self.ep.url}{path}", what, headers={"Accept": "application/dicom+json, application/json"}
        )
        try:
            doc = json.loads(resp.content)
        except ValueError as exc:
            raise ProtocolError(f"metadata is not JSON: {exc}", server=self.name, what=what) from None
        return checked(doc, self.name, what)

    async def series(self, study_uid: str, series_uid: str) -> Items:
        q = quote
        return await self._get(
            f"/studies/{q(study_uid, safe='')}/series/{q(series_uid, safe='')}/metadata",
            f"metadata of series {series_uid}",
        )

    async def study(self, study_uid: str) -> Items:
        return await self._get(f"/studies/{quote(study_uid, safe='')}/metadata", f"metadata of study {study_uid}")
