"""Fetchers that serve objects in a form other than as stored.

:class:`TranscodingFetcher` gives objects in one transfer syntax: it asks the
server for that syntax where the retrieve protocol can ask (WADO-RS
``transfer-syntax`` in Accept, WADO-URI ``transferSyntax``, RAD-69's
TransferSyntaxUIDList), checks the syntax of what came back, and converts
locally (:class:`~.transcode.Converter`) whatever the server sent in another
syntax or would not transcode.  A series whose objects the server once failed
to transcode is fetched as stored from then on and converted locally.

:class:`FormFetcher` is what the Store sees per server: it hands a request to
the stored-form fetcher or to the transcoding one by the ref's ``form``."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field, replace

import cachetools

from ...errors import AccessDenied, NotFound, RemoteError
from ...model import Fetcher, InstanceRef, SeriesRef
from ...part10 import part10_transfer_syntax
from .transcode import ConversionError, Converter, syntax_name

log = logging.getLogger("trolleyfs.transcode")

SERIES_REMEMBERED = 10_000  # series known not to be transcoded by their server


def _gives_up(exc: RemoteError) -> bool:
    """A failure that asking for the stored form would not cure."""
    return isinstance(exc, (NotFound, AccessDenied))


class TranscodingFetcher:
    """A Fetcher of objects in ``target``, whatever the ref's form says."""

    def __init__(self, stored: Fetcher, asking: Fetcher | None, converter: Converter, target: str) -> None:
        """``stored`` fetches objects as stored; ``asking`` (None if the protocol
        cannot ask) asks the server for ``target``."""
        self.name = stored.name
        self._stored, self._asking = stored, asking
        self._converter = converter
        self.target = target
        self._local: cachetools.LRUCache[tuple[str, str], bool] = cachetools.LRUCache(SERIES_REMEMBERED)
        self.by_server = 0  # objects the server sent in the target syntax
        self.server_declined = 0  # times the server did not (error or another syntax)

    async def aclose(self) -> None:
        pass  # the inner fetchers belong to whoever built them

    def _ask_server(self, ref: SeriesRef) -> bool:
        return self._asking is not None and (ref.study_uid, ref.series_uid) not in self._local

    def _declined(self, ref: SeriesRef, why: str) -> None:
        self.server_declined += 1
        if (ref.study_uid, ref.series_uid) not in self._local:
            log.info(
                "%s: series %s: the server did not transcode to %s (%s): converting here",
                self.name,
                ref.series_uid,
                syntax_name(self.target),
                why,
            )
        self._local[(ref.study_uid, ref.series_uid)] = True

    async def _in_target(self, data: bytes, ref: SeriesRef, what: str) -> bytes:
        """``data`` as the server sent it, in the target syntax (converted here if need be)."""
        try:
            sent = part10_transfer_syntax(data)
        except ValueError:
            sent = ""
        if sent == self.target:
            self.by_server += 1
            return data
        self._declined(ref, f"it sent {syntax_name(sent)}")
        return await self._converter.convert(data, self.target, f"{self.name}: {what}")

    async def fetch_instance(self, ref: InstanceRef) -> bytes:
        what = f"instance {ref.instance_uid}"
        if self._asking is not None and self._ask_server(ref.series):
            try:
                data = await self._asking.fetch_instance(ref)
            except RemoteError as exc:
                if _gives_up(exc):
                    raise
                self._declined(ref.series, str(exc))
            else:
                return await self._in_target(data, ref.series, what)
        data = await self._stored.fetch_instance(replace(ref, form=""))
        return await self._converter.convert(data, self.target, f"{self.name}: {what}")

    async def fetch_series(self, ref: SeriesRef, instance_uids: list[str]) -> AsyncGenerator[tuple[str, bytes], None]:
        what = f"series {ref.series_uid}"
        wanted = set(instance_uids)  # a WADO-RS series answer holds them all: convert only these
        if self._asking is not None and self._ask_server(ref):
            sent = 0
            try:
                async with aclosing(_gen(self._asking.fetch_series(ref, instance_uids))) as objects:
                    async for uid, data in objects:
                        if uid not in wanted:
                            continue
                        sent += 1
                        yield uid, await self._in_target(data, ref, f"{what}: instance {uid}")
                return
            except RemoteError as exc:
                if sent or _gives_up(exc):
                    raise  # what was handed out stays; the rest is asked for one by one
                self._declined(ref, str(exc))
        async with aclosing(_gen(self._stored.fetch_series(replace(ref, form=""), instance_uids))) as objects:
            async for uid, data in objects:
                if uid not in wanted:
                    continue
                try:
                    converted = await self._converter.convert(data, self.target, f"{self.name}: {what}: instance {uid}")
                except ConversionError:
                    continue  # logged; left out of the series, so its reader asks for it alone (and fails)
                yield uid, converted

    def stats(self) -> dict[str, int]:
        return {"transcoded_by_server": self.by_server, "server_declined": self.server_declined}


async def _gen(stream: AsyncIterator[tuple[str, bytes]]) -> AsyncGenerator[tuple[str, bytes], None]:
    """A fetcher's series stream as an async generator (closable by ``aclosing``)."""
    try:
        async for item in stream:
            yield item
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


class FormFetcher:
    """One server's Fetcher as the Store sees it: objects as stored, or in a
    transfer syntax by the ref's ``form``."""

    def __init__(self, stored: Fetcher, forms: Mapping[str, Fetcher]) -> None:
        self.name = stored.name
        self._stored = stored
        self._forms = dict(forms)

    def _for(self, form: str) -> Fetcher:
        if not form:
            return self._stored
        try:
            return self._forms[form]
        except KeyError:  # the tree only asks for the forms its folders configure
            raise RemoteError(f"no fetcher for form {form!r}", server=self.name) from None

    async def aclose(self) -> None:
        pass

    async def fetch_instance(self, ref: InstanceRef) -> bytes:
        return await self._for(ref.form).fetch_instance(ref)

    def fetch_series(self, ref: SeriesRef, instance_uids: list[str]) -> AsyncIterator[tuple[str, bytes]]:
        return self._for(ref.form).fetch_series(ref, instance_uids)


@dataclass
class Conversions:
    """Each server's Fetcher as the Store sees it, and the converting fetchers
    among them (for their counters in ``stats.json``)."""

    fetchers: dict[str, Fetcher]
    converter: Converter = field(default_factory=Converter)
    transcoders: list[TranscodingFetcher] = field(default_factory=list)

    def stats(self) -> dict[str, int]:
        out = self.converter.stats()
        for t in self.transcoders:
            for k, v in t.stats().items():
                out[k] = out.get(k, 0) + v
        return out
