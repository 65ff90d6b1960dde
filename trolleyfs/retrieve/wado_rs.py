"""WADO-RS (PS3.18 10.4): instances and whole series as multipart/related
streams of Part-10 objects, passed on byte for byte (``transfer-syntax=*``
asks the server not to transcode; a fetcher built with a transfer syntax asks
for that one instead, and what the server sent is checked by its caller,
:mod:`trolleyfs.views.forms`)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from urllib.parse import quote

from ..errors import ProtocolError
from ..model import InstanceRef, SeriesRef
from ..multipart import MultipartError, Part, boundary_of, iter_parts
from ..part10 import check_part10
from ..transport.http import HttpEndpoint, iter_body

ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def accept_for(transfer_syntax: str) -> str:
    """The Accept header asking for objects in ``transfer_syntax`` (``*``: as stored)."""
    return f'multipart/related; type="application/dicom"; transfer-syntax={transfer_syntax}'


def _p(uid: str) -> str:
    return quote(uid, safe="")


class WadoRS:
    """A :class:`~trolleyfs.model.Fetcher` over one WADO-RS endpoint."""

    def __init__(self, endpoint: HttpEndpoint, transfer_syntax: str = "*") -> None:
        self.ep = endpoint
        self.name = endpoint.name
        self._accept = accept_for(transfer_syntax)

    async def aclose(self) -> None:
        pass

    async def _parts(self, url: str, what: str) -> AsyncGenerator[Part, None]:
        async with self.ep.stream("GET", url, what, headers={"Accept": self._accept}) as resp:
            try:
                boundary = boundary_of(resp.headers.get("content-type", ""))
                body = iter_body(resp, self.name, what, self.ep.server.timeout)
                async for part in iter_parts(body, boundary):
                    yield part
            except MultipartError as exc:
                raise ProtocolError(str(exc), server=self.name, what=what) from None

    async def fetch_instance(self, ref: InstanceRef) -> bytes:
        what = f"instance {ref.instance_uid}"
        url = f"{self.ep.url}/studies/{_p(ref.study_uid)}/series/{_p(ref.series_uid)}/instances/{_p(ref.instance_uid)}"
        found: bytes | None = None
        async with aclosing(self._parts(url, what)) as parts:
            async for part in parts:
                if found is not None:
                    raise ProtocolError("more than one object in an instance answer", server=self.name, what=what)
                check_part10(part.body, self.name, what, ref.instance_uid)
                found = part.body
        if found is None:
            raise ProtocolError("empty answer", server=self.name, what=what)
        return found

    async def fetch_series(self, ref: SeriesRef, instance_uids: list[str]) -> AsyncGenerator[tuple[str, bytes], None]:
        what = f"series {ref.series_uid}"
        url = f"{self.ep.url}/studies/{_p(ref.study_uid)}/series/{_p(ref.series_uid)}"
        async with aclosing(self._parts(url, what)) as parts:
            async for part in parts:
                yield check_part10(part.body, self.name, what), part.body
