"""WADO-URI (PS3.18 9, formerly "WADO"): one GET per instance, answered by
the Part-10 object itself.

The query string is built here, not by httpx: Orthanc 1.10 rejects
``contentType=application%2Fdicom`` (it does not percent-decode the slash), so
the slash must go out as is.  Series have no WADO-URI request of their own:
a series is its instances fetched in parallel, bounded by the server's
``max_connections``."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from urllib.parse import quote

import trio

from ..errors import NotFound, ProtocolError, RemoteError
from ..model import InstanceRef, SeriesRef
from ..part10 import Expected, check_part10
from ..transport.http import HttpEndpoint

log = logging.getLogger("trolleyfs.wado_uri")

ACCEPT = "application/dicom, application/octet-stream;q=0.5, */*;q=0.1"
# answers that are certainly not an object: an error page or a message
_NOT_DICOM = re.compile(r"^text/|html|xml|json", re.I)


def _uid(value: str) -> str:
    return quote(value, safe=".")


def instance_url(base: str, ref: InstanceRef, transfer_syntax: str | None = None) -> str:
    """The WADO-URI request for one Part-10 object (``transferSyntax`` asks the
    server to transcode it; servers may ignore it)."""
    sep = "&" if "?" in base else "?"  # a configured URL may carry its own parameters
    ts = f"&transferSyntax={_uid(transfer_syntax)}" if transfer_syntax else ""
    return (
        f"{base}{sep}requestType=WADO&studyUID={_uid(ref.study_uid)}&seriesUID={_uid(ref.series_uid)}"
        f"&objectUID={_uid(ref.instance_uid)}&contentType=application/dicom{ts}"
    )


def _snippet(body: bytes) -> str:
    """A few words of an error page, for the message: its <title> if it has one."""
    text = body[:4096].decode("utf-8", "replace")
    m = re.search(r"<title>(.*?)</title>", text, re.S | re.I)
    text = m.group(1) if m else re.sub(r"<[^>]*>", " ", text)
    return " ".join(text.split())[:160]


class WadoURI:
    """A :class:`~trolleyfs.model.Fetcher` over one WADO-URI endpoint."""

    def __init__(self, endpoint: HttpEndpoint, transfer_syntax: str | None = None) -> None:
        self.ep = endpoint
        self.name = endpoint.name
        self._transfer_syntax = transfer_syntax
        # one limiter per server, shared by every series being read, so that
        # parallel reads never exceed what the server was configured to take
        self.limiter = trio.CapacityLimiter(endpoint.server.max_connections)

    async def aclose(self) -> None:
        pass

    async def fetch_instance(self, ref: InstanceRef) -> bytes:
        what = f"instance {ref.instance_uid}"
        url = instance_url(self.ep.url, ref, self._transfer_syntax)
        resp = await self.ep.request("GET", url, what, headers={"Accept": ACCEPT})
        ctype = resp.headers.get("content-type", "").split(";")[0].strip()
        body = resp.content
        if _NOT_DICOM.search(ctype):
            detail = _snippet(body)
            raise ProtocolError(
                f"expected application/dicom, got {ctype}" + (f": {detail}" if detail else ""),
                server=self.name,
                what=what,
            )
        check_part10(body, self.name, what, Expected.of_instance(ref))
        return body

    async def fetch_series(self, ref: SeriesRef, instance_uids: list[str]) -> AsyncIterator[tuple[str, bytes]]:
        """Instances in batches fetched in parallel.  Each batch runs in its own
        nursery that is closed before anything is yielded: yielding from inside a
        nursery would hand its cancel scope to the consumer's task.  A batch is
        twice the connection limit, so the limiter stays busy while a batch's
        slowest requests finish, and at most that many objects are held."""
        batch = 2 * self.ep.server.max_connections
        for start in range(0, len(instance_uids), batch):
            done = await self._fetch_batch(ref, instance_uids[start : start + batch])
            for item in done:
                yield item

    async def _fetch_batch(self, ref: SeriesRef, uids: list[str]) -> list[tuple[str, bytes]]:
        done: list[tuple[str, bytes]] = []
        failure: list[RemoteError] = []

        async def one(uid: str, cancel: trio.CancelScope) -> None:
            try:
                async with self.limiter:
                    data = await self.fetch_instance(InstanceRef(ref.study_uid, ref.series_uid, uid))
            except NotFound as exc:
                log.info("%s", exc)  # gone since it was listed: simply not yielded
                return
            except RemoteError as exc:
                if not failure:
                    failure.append(exc)
                cancel.cancel()
                return
            done.append((uid, data))

        async with trio.open_nursery() as nursery:
            for uid in uids:
                nursery.start_soon(one, uid, nursery.cancel_scope)
        if failure:
            raise failure[0]
        return done
