"""IHE XDS-I.b Retrieve Imaging Document Set (RAD-69): a SOAP 1.2 POST naming
the wanted objects, answered by an MTOM/XOP ``multipart/related`` body.

The answer's first (root) part is the SOAP envelope: a ``RegistryResponse``
status, perhaps a ``RegistryErrorList``, and one ``DocumentResponse`` per
object, whose ``<Document>`` points at a later part by ``cid:`` (or, when the
server inlines small documents, holds them base64-encoded).  The envelope maps
each part to its DocumentUniqueId, which for RAD-69 is the SOP Instance UID.

A failed request is not multipart at all: an ``application/soap+xml`` envelope
with a ``RegistryErrorList`` (HTTP 200, as Vitrea sends it) or a SOAP Fault
(usually HTTP 500).  Error codes the config lists in ``ignore_errors`` are
skipped instead of failing.

The body is parsed as it arrives: only the part being received is held.
The envelopes themselves are :mod:`trolleyfs.retrieve.rad69_soap`'s."""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from dataclasses import dataclass, field, replace

import httpx
import trio

from ..errors import IgnoredError, ProtocolError, RemoteError
from ..model import InstanceRef, SeriesRef
from ..multipart import MultipartError, MultipartParser, Part, boundary_of, content_type_params
from ..part10 import Expected, check_part10
from ..transport.http import HttpEndpoint, iter_body
from .rad69_soap import (
    ACTION,
    TRANSFER_SYNTAXES,
    Envelope,
    RegistryError,
    build_request,
    describe_errors,
    parse_envelope,
    registry_error,
)

log = logging.getLogger("trolleyfs.rad69")

REQUEST_CONTENT_TYPE = f'application/soap+xml; charset=utf-8; action="{ACTION}"'
ACCEPT = "multipart/related, application/soap+xml, application/xop+xml"
# A non-multipart answer is an error envelope (or inline base64 documents):
# held whole, so it is capped.
MAX_ENVELOPE_BYTES = 256 * 1024 * 1024


@dataclass
class _Outcome:
    """What one exchange reported besides the objects it yielded."""

    errors: list[RegistryError] = field(default_factory=list)
    promised: set[str] = field(default_factory=set)
    delivered: set[str] = field(default_factory=set)

    @property
    def undelivered(self) -> set[str]:
        return self.promised - self.delivered


# --------------------------------------------------------------------------- the fetcher


class Rad69:
    """A :class:`~trolleyfs.model.Fetcher` over one RAD-69 endpoint."""

    def __init__(
        self,
        endpoint: HttpEndpoint,
        ignore_errors: tuple[str, ...] = (),
        transfer_syntaxes: tuple[str, ...] = TRANSFER_SYNTAXES,
    ) -> None:
        """``transfer_syntaxes``: the ones the request names, preferred first."""
        self.ep = endpoint
        self.name = endpoint.name
        self.ignore_errors = frozenset(ignore_errors)
        self.transfer_syntaxes = transfer_syntaxes

    async def aclose(self) -> None:
        pass

    def _ignored(self, err: RegistryError) -> bool:
        return err.code in self.ignore_errors or err.short_code in self.ignore_errors

    # ----------------------------------------------------------------- public

    async def fetch_instance(self, ref: InstanceRef) -> bytes:
        what = f"instance {ref.instance_uid}"
        outcome = _Outcome()
        found: bytes | None = None
        async with aclosing(self._retrieve(ref.series, [ref.instance_uid], what, outcome)) as items:
            async for uid, data in items:
                if uid == ref.instance_uid:
                    found = data
        if found is not None:
            return found
        errors = [e for e in outcome.errors if not e.is_warning]
        if errors and all(self._ignored(e) for e in errors):
            raise IgnoredError(describe_errors(errors)[1], server=self.name, what=what)
        if errors:
            raise registry_error([e for e in errors if not self._ignored(e)], self.name, what)
        raise ProtocolError("the answer does not hold the object", server=self.name, what=what)

    async def fetch_series(self, ref: SeriesRef, instance_uids: list[str]) -> AsyncGenerator[tuple[str, bytes], None]:
        """One request for the series.  Servers such as Vitrea fail a whole
        request when some of its objects are missing, naming them: the rest are
        then asked for once more.  Objects whose errors are ignored are simply
        not yielded; other errors are raised after everything obtainable was."""
        what = f"series {ref.series_uid}"
        pending = list(dict.fromkeys(instance_uids))
        errors: list[RegistryError] = []
        undelivered: set[str] = set()
        for attempt in range(2):
            if not pending:
                break
            outcome = _Outcome()
            async with aclosing(self._retrieve(ref, pending, what, outcome)) as items:
                async for item in items:
                    yield item
            failed = [e for e in outcome.errors if not e.is_warning]
            errors += failed
            undelivered |= outcome.undelivered
            named = {e.location for e in failed} & set(pending)
            if attempt or outcome.delivered or not named or len(named) == len(pending):
                break
            log.info(
                "%s: %s: %d objects failed; asking for the other %d",
                self.name,
                what,
                len(named),
                len(pending) - len(named),
            )
            pending = [u for u in pending if u not in named]
        skipped = [e for e in errors if self._ignored(e)]
        if skipped:
            log.info("%s", IgnoredError(describe_errors(skipped)[1], server=self.name, what=what))
        fatal = [e for e in errors if not self._ignored(e)]
        if fatal:
            raise registry_error(fatal, self.name, what)
        if undelivered:
            raise ProtocolError(
                f"the envelope announced {len(undelivered)} objects that the body did not hold"
                f" (e.g. {min(undelivered)})",
                server=self.name,
                what=what,
            )

    # ----------------------------------------------------------------- exchange

    async def _retrieve(
        self, ref: SeriesRef, uids: list[str], what: str, outcome: _Outcome
    ) -> AsyncGenerator[tuple[str, bytes], None]:
        """POST one request; yield each verified object; record errors in ``outcome``."""
        body = build_request(ref.study_uid, ref.series_uid, uids, self.ep.url, self.transfer_syntaxes)
        wanted = set(uids)
        expected = Expected.of_series(ref)
        async with self._post(body, what) as resp, self._chunks(resp, what) as chunks:
            ctype = resp.headers.get("content-type", "")
            media, params = content_type_params(ctype) if ctype.strip() else ("", {})
            if media.startswith("multipart/"):
                async with (
                    aclosing(self._multipart(chunks, ctype, params.get("start", ""), what)) as parts,
                    aclosing(self._objects(parts, wanted, expected, what, outcome)) as items,
                ):
                    async for item in items:
                        yield item
                return
            data = await self._read_capped(chunks, what)
            status = resp.status_code
        env = self._envelope(data, media, what, status)
        outcome.errors += env.errors
        for uid, obj in env.inline.items():
            if accepted := self._accept(uid, obj, wanted, expected, what, outcome):
                yield accepted

    @asynccontextmanager
    async def _chunks(self, resp: httpx.Response, what: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """The body's chunks.  However the reading ends (an error, or a consumer
        that stopped early), the response is closed and the chunk iterator then
        run to its end: that finishes httpx's chain of async generators, which
        would otherwise be left to the garbage collector (and trio warns)."""
        chunks = iter_body(resp, self.name, what, self.ep.server.timeout)
        try:
            yield chunks
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(max(1.0, self.ep.server.timeout)):
                await resp.aclose()
                try:
                    async for _ in chunks:  # only what was buffered before the close
                        pass
                except RemoteError:
                    pass  # the closed stream reports itself closed: that is the end

    async def _objects(
        self, parts: AsyncIterator[Part], wanted: set[str], expected: Expected, what: str, outcome: _Outcome
    ) -> AsyncGenerator[tuple[str, bytes], None]:
        """The objects of a multipart answer; the root part comes first from
        :meth:`_multipart` and maps Content-IDs to UIDs for the parts after it."""
        env: Envelope | None = None
        async for part in parts:
            if env is None:
                env = self._envelope(part.body, part.content_type, what)
                outcome.errors += env.errors
                outcome.promised |= set(env.documents.values()) | set(env.inline)
                for uid, data in env.inline.items():
                    if accepted := self._accept(uid, data, wanted, expected, what, outcome):
                        yield accepted
                continue
            listed = env.documents.get(part.content_id)
            problem = part.length_problem()
            if problem:
                raise ProtocolError(
                    f"part <{part.content_id}> (object {listed or 'not in the envelope'}) {problem}: damaged, refused",
                    server=self.name,
                    what=what,
                )
            data = _decoded(part, self.name, what)
            if listed is not None:
                uid = listed
            else:
                # not referenced (a server that numbers Content-IDs its own way):
                # acceptable only if it is an object we asked for
                uid = check_part10(data, self.name, what, expected)
                if uid not in wanted:
                    raise ProtocolError(
                        f"part <{part.content_id}> is not in the envelope and holds unrequested object {uid}",
                        server=self.name,
                        what=what,
                    )
            if accepted := self._accept(uid, data, wanted, expected, what, outcome):
                yield accepted
        if env is None:
            raise ProtocolError("multipart answer without parts", server=self.name, what=what)

    def _accept(
        self, uid: str, data: bytes, wanted: set[str], expected: Expected, what: str, outcome: _Outcome
    ) -> tuple[str, bytes] | None:
        """Check an object (whole, the instance the envelope names, of the
        study and series asked for); None if it was already delivered (sent twice)."""
        check_part10(data, self.name, f"{what}: object {uid}", replace(expected, instance=uid))
        if uid not in wanted:
            raise ProtocolError(f"server sent unrequested object {uid}", server=self.name, what=what)
        if uid in outcome.delivered:
            log.warning("%s: %s: object %s sent twice", self.name, what, uid)
            return None
        outcome.delivered.add(uid)
        return uid, data

    async def _multipart(
        self, chunks: AsyncIterator[bytes], ctype: str, start: str, what: str
    ) -> AsyncGenerator[Part, None]:
        """Parts as they complete.  The root part (the envelope) must come first,
        as every MTOM server sends it: the parts after it are only understood
        with its Content-ID map, and holding them until it came would hold a
        series.  ``start``, if the Content-Type gives one, must name it."""
        start = start.strip().strip("<>")
        first = True
        try:
            parser = MultipartParser(boundary_of(ctype))
            async for chunk in chunks:
                for part in parser.feed(chunk):
                    if first and start and part.content_id != start:
                        raise ProtocolError(
                            f"the first part is <{part.content_id}>, not the root part <{start}>",
                            server=self.name,
                            what=what,
                        )
                    first = False
                    yield part
            parser.close()
        except MultipartError as exc:
            raise ProtocolError(str(exc), server=self.name, what=what) from None

    def _envelope(self, data: bytes, media: str, what: str, status: int | None = None) -> Envelope:
        """Parse an envelope, raising for a Fault or for an answer that is no
        envelope (``status`` is given for a whole answer, not a root part)."""
        try:
            env = parse_envelope(data)
        except ValueError as exc:
            if status is not None and "xml" not in media:
                detail = _snippet(data)
                raise ProtocolError(
                    f"expected multipart/related or SOAP, got HTTP {status} {media or 'without Content-Type'}"
                    + (f": {detail}" if detail else ""),
                    server=self.name,
                    what=what,
                ) from None
            raise ProtocolError(f"unreadable SOAP envelope: {exc}", server=self.name, what=what) from None
        if env.fault is not None:
            raise ProtocolError(f"SOAP fault: {env.fault}", server=self.name, what=what)
        return env

    async def _read_capped(self, chunks: AsyncIterator[bytes], what: str) -> bytes:
        buf = bytearray()
        async for chunk in chunks:
            buf += chunk
            if len(buf) > MAX_ENVELOPE_BYTES:
                raise ProtocolError("non-multipart answer too large", server=self.name, what=what)
        return bytes(buf)

    def _post(self, body: bytes, what: str) -> AbstractAsyncContextManager[httpx.Response]:
        """POST with the endpoint's deadline and retries; a SOAP answer with an
        error status is handed out too (read whole), so that its Fault reason or
        RegistryErrorList is reported, not just "HTTP 500"."""
        headers = {"Content-Type": REQUEST_CONTENT_TYPE, "Accept": ACCEPT}
        return self.ep.stream("POST", self.ep.url, what, content=body, headers=headers, accept_error=_is_soap_answer)


def _is_soap_answer(resp: httpx.Response) -> bool:
    """An error status whose body is a SOAP Fault or RegistryErrorList."""
    if "xml" not in resp.headers.get("content-type", "").lower():
        return False
    try:
        env = parse_envelope(resp.content)
    except ValueError:
        return False
    return env.fault is not None or bool(env.errors)


def _decoded(part: Part, server: str, what: str) -> bytes:
    """A part's bytes (binary, as MTOM sends them; base64 if a server says so)."""
    cte = part.headers.get("content-transfer-encoding", "binary").strip().lower()
    if cte != "base64":
        return part.body
    try:
        return base64.b64decode(b"".join(part.body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"part <{part.content_id}> is not valid base64", server=server, what=what) from None


def _snippet(body: bytes) -> str:
    """A few words of an unexpected answer: an HTML page's <title>, else its text."""
    text = body[:4096].decode("utf-8", "replace")
    m = re.search(r"<title>(.*?)</title>", text, re.S | re.I)
    text = m.group(1) if m else re.sub(r"<[^>]*>", " ", text)
    return " ".join(text.split())[:160]
