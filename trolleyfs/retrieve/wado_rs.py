"""WADO-RS (PS3.18 10.4): instances and whole series as multipart/related
streams of Part-10 objects, passed on byte for byte (``transfer-syntax=*``
asks the server not to transcode; a fetcher built with a transfer syntax asks
for that one instead, and what the server sent is checked by its caller,
:mod:`trolleyfs.read.convert.forms`).

What real servers send besides that, and what is done with it:

* a part whose ``Content-Length`` disagrees with its bytes, or whose object
  is cut short or not DICOM, is damaged: never served.  An instance answer
  holding one fails; in a series answer the part is left out (its reader then
  asks for the instance alone) and the series says so in one log line.
* the instance asked for sent twice: identical copies are one object;
  copies that differ are refused.  Other objects in an instance answer are
  ignored.
* a single-part ``application/dicom`` body instead of ``multipart/related``:
  accepted when it is one whole object (of the instance asked for).
* 406 Not Acceptable (servers strict about the ``Accept`` header): the next
  form in :data:`ACCEPTS` is tried once; the one that worked is remembered for
  the server."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from urllib.parse import quote

import httpx
import xxhash

from ..errors import ProtocolError
from ..model import InstanceRef, SeriesRef
from ..multipart import MultipartError, Part, boundary_of, content_type_params, iter_parts
from ..part10 import Expected, check_part10, part10_sop_instance_uid
from ..transport.http import HttpEndpoint, iter_body

log = logging.getLogger("trolleyfs.wado_rs")

# The Accept headers tried, in order: the stored bytes (no transcoding), then
# what strict servers accept (they may then send a default transfer syntax),
# then a single object.
ACCEPTS = (
    'multipart/related; type="application/dicom"; transfer-syntax=*',
    'multipart/related; type="application/dicom"',
    "application/dicom",
)
ACCEPT = ACCEPTS[0]


def accept_for(transfer_syntax: str) -> str:
    """The Accept header asking for objects in ``transfer_syntax`` (``*``: as stored)."""
    return f'multipart/related; type="application/dicom"; transfer-syntax={transfer_syntax}'


MAX_SINGLE_PART = 4 << 30  # a single-part answer is held whole: bounded


def _p(uid: str) -> str:
    return quote(uid, safe="")


def _uid_of(data: bytes) -> str:
    try:
        return part10_sop_instance_uid(data)
    except ValueError:
        return "?"


def _is_406(resp: httpx.Response) -> bool:
    return resp.status_code == 406


class WadoRS:
    """A :class:`~trolleyfs.model.Fetcher` over one WADO-RS endpoint."""

    def __init__(self, endpoint: HttpEndpoint, transfer_syntax: str = "*") -> None:
        self.ep = endpoint
        self.name = endpoint.name
        # a transcoding request asks for its syntax only: another form would not be what it asked for
        self._accepts = ACCEPTS if transfer_syntax == "*" else (accept_for(transfer_syntax),)
        self._accept = 0  # index into the Accept forms: the one this server took last

    async def aclose(self) -> None:
        pass

    async def _parts(self, url: str, what: str) -> AsyncGenerator[Part, None]:
        """The parts of the answer, trying the next Accept form on a 406."""
        accepts = self._accepts
        for index in range(self._accept, len(accepts)):
            headers = {"Accept": accepts[index]}
            async with self.ep.stream("GET", url, what, headers=headers, accept_error=_is_406) as resp:
                if resp.status_code == 406:
                    if index + 1 < len(accepts):
                        log.info(
                            "%s: %s: HTTP 406 for Accept: %s; trying Accept: %s",
                            self.name,
                            what,
                            accepts[index],
                            accepts[index + 1],
                        )
                        continue
                    raise ProtocolError(
                        f"HTTP 406 Not Acceptable for every Accept form tried ({len(accepts)})",
                        server=self.name,
                        what=what,
                    )
                if index != self._accept:
                    log.warning(
                        "%s: the server accepts only Accept: %s; using it from now on", self.name, accepts[index]
                    )
                    self._accept = index
                async with aclosing(self._answer_parts(resp, what)) as parts:
                    async for part in parts:
                        yield part
                return

    async def _answer_parts(self, resp: httpx.Response, what: str) -> AsyncGenerator[Part, None]:
        ctype = resp.headers.get("content-type", "")
        body = iter_body(resp, self.name, what, self.ep.server.timeout)
        media, _ = content_type_params(ctype) if ctype.strip() else ("", {})
        if media == "application/dicom":  # one object, not multipart
            buf = bytearray()
            async for chunk in body:
                buf += chunk
                if len(buf) > MAX_SINGLE_PART:
                    raise ProtocolError("single-part answer too large", server=self.name, what=what)
            yield Part({"content-type": ctype}, bytes(buf))
            return
        try:
            boundary = boundary_of(ctype)
            async for part in iter_parts(body, boundary):
                yield part
        except MultipartError as exc:
            raise ProtocolError(str(exc), server=self.name, what=what) from None

    def _checked(self, part: Part, index: int, what: str, expected: Expected) -> str:
        """The SOP Instance UID of the whole object a part holds; ProtocolError
        if the part is damaged (its length), its object is not whole, or it is
        not of the study and series asked for (:func:`~trolleyfs.part10.check_part10`)."""
        problem = part.length_problem()
        if problem:
            raise ProtocolError(
                f"part {index} (object {_uid_of(part.body)}) {problem}: damaged, refused", server=self.name, what=what
            )
        return check_part10(part.body, self.name, what, expected)

    async def fetch_instance(self, ref: InstanceRef) -> bytes:
        what = f"instance {ref.instance_uid}"
        url = f"{self.ep.url}/studies/{_p(ref.study_uid)}/series/{_p(ref.series_uid)}/instances/{_p(ref.instance_uid)}"
        copies: list[bytes] = []
        others: set[str] = set()
        expected = Expected.of_series(ref)
        async with aclosing(self._parts(url, what)) as parts:
            index = 0
            async for part in parts:
                index += 1
                uid = self._checked(part, index, what, expected)
                if uid == ref.instance_uid:
                    copies.append(part.body)
                else:
                    others.add(uid)
        if not copies:
            if others:
                raise ProtocolError(f"server sent instance {min(others)} instead", server=self.name, what=what)
            raise ProtocolError("empty answer", server=self.name, what=what)
        if any(c != copies[0] for c in copies[1:]):
            raise ProtocolError(
                f"the answer holds {len(copies)} copies of the instance that differ: refused",
                server=self.name,
                what=what,
            )
        if len(copies) > 1 or others:
            log.info(
                "%s: %s: %d identical copies and %d other objects in the answer; serving the one asked for",
                self.name,
                what,
                len(copies),
                len(others),
            )
        return copies[0]

    async def fetch_series(self, ref: SeriesRef, instance_uids: list[str]) -> AsyncGenerator[tuple[str, bytes], None]:
        what = f"series {ref.series_uid}"
        url = f"{self.ep.url}/studies/{_p(ref.study_uid)}/series/{_p(ref.series_uid)}"
        seen: dict[str, tuple[int, int]] = {}  # uid -> (length, XXH3 of the whole object): duplicates
        refused: list[ProtocolError] = []
        expected = Expected.of_series(ref)
        try:
            async with aclosing(self._parts(url, what)) as parts:
                index = 0
                async for part in parts:
                    index += 1
                    try:
                        uid = self._checked(part, index, what, expected)
                    except ProtocolError as exc:
                        refused.append(exc)
                        continue
                    mark = (len(part.body), xxhash.xxh3_64_intdigest(part.body))  # a duplicate: the same?
                    if uid in seen:
                        if seen[uid] != mark:
                            log.warning("%s: %s: a second, different copy of object %s left out", self.name, what, uid)
                        continue
                    seen[uid] = mark
                    yield uid, part.body
        finally:
            if refused:
                log.warning(
                    "%s: %s: %d damaged objects refused (their files are read alone): %s",
                    self.name,
                    what,
                    len(refused),
                    refused[0],
                )
