"""What DICOM-QR listings and C-GET reads share: one association driven from
trio, status and dataset conversion.

pynetdicom blocks, so every step of an association (open, C-FIND, C-GET,
release) runs in a worker thread, each step under its own deadline
(``server.timeout``).  pynetdicom's own ACSE/DIMSE/network timeouts are set to
the same value, so a worker thread ends by itself even when nobody waits for
it any more.  When a deadline passes or the caller is cancelled the
association is aborted at once, from a helper thread (aborting blocks), and
the worker thread waiting for the next DIMSE message is woken up.

Associations of one server are bounded by one ``trio.CapacityLimiter`` of
``server.max_connections``, shared by the server's searcher and fetcher: an
association is a connection the PACS counts, whichever of the two opened it.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import trio
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName
from pynetdicom import AE, evt

from .config import Endpoint, Server
from .errors import AccessDenied, ProtocolError, RemoteError, Unavailable

log = logging.getLogger("trolleyfs.dimse")

T = TypeVar("T")

# pynetdicom's default (16 KiB) makes a C-GET of a big series cost many more
# round trips and copies; the peer sends PDUs up to the size we announce.
MAX_PDU = 1024 * 1024
CONNECT_TIMEOUT_MAX = 10.0

# --------------------------------------------------------------------------- limiter

_limiters: weakref.WeakKeyDictionary[Server, trio.CapacityLimiter] = weakref.WeakKeyDictionary()
_limiters_lock = threading.Lock()


def limiter_for(server: Server) -> trio.CapacityLimiter:
    """The association limiter of ``server``, shared by its searcher and fetcher."""
    with _limiters_lock:
        lim = _limiters.get(server)
        if lim is None:
            lim = _limiters[server] = trio.CapacityLimiter(server.max_connections)
        return lim


# --------------------------------------------------------------------------- statuses


def status_text(status: Dataset) -> str:
    code = status.get("Status")
    text = f"status 0x{code:04X}" if isinstance(code, int) else "no status"
    comment = status.get("ErrorComment")
    if comment:
        text += f" ({str(comment).strip()})"
    return text


def status_error(status: Dataset, server: str, what: str, service: str) -> RemoteError:
    """The error for a final C-FIND/C-GET status that is not success.

    0xA7xx (out of resources) may pass: Unavailable, retryable.  0xA900
    (identifier does not match the SOP class), 0xCxxx (unable to process), 0x0122
    (SOP class not supported) and anything unknown will not: ProtocolError.
    A missing status means pynetdicom got no answer: timeout or aborted
    association."""
    code = status.get("Status")
    if not isinstance(code, int):
        return Unavailable(f"{service}: no answer (DIMSE timeout or association aborted)", server=server, what=what)
    msg = f"{service} failed: {status_text(status)}"
    if 0xA700 <= code <= 0xA7FF:
        return Unavailable(msg + " (out of resources)", server=server, what=what)
    if code == 0xFE00:
        return Unavailable(msg + " (cancelled by the server)", server=server, what=what)
    return ProtocolError(msg, server=server, what=what)


PENDING = (0xFF00, 0xFF01)


# --------------------------------------------------------------------------- datasets


_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN", "SQ", "US or SS", "US or OW", "US or SS or OW", "OB or OW"}
_TEXT_NO_BACKSLASH = {"LT", "ST", "UT"}
_MULTI_DELIMS = {0x5C}
_TEXT_DELIMS = {0x0D, 0x0A, 0x09, 0x0C}
_PN_DELIMS = {0x5C, 0x5E, 0x3D}
_SKIP = {"QueryRetrieveLevel", "SpecificCharacterSet"}


def _encodings(ds: Dataset) -> list[str]:
    """Python codecs for the dataset's SpecificCharacterSet, read from the raw
    element; an unknown or broken value falls back to the default repertoire."""
    elem = ds.get_item(0x00080005)
    if elem is None:
        return ["iso8859"]
    raw = elem.value
    try:
        if isinstance(raw, bytes):
            terms: Any = [t.strip() for t in raw.decode("ascii", "replace").split("\\")]
        elif isinstance(raw, str):
            terms = [raw]
        else:
            terms = [str(t) for t in raw]
        return convert_encodings(terms)
    except Exception:  # pydicom raises LookupError or warns-then-raises on unknown terms
        return ["iso8859"]


def _raw_text(vr: str, value: bytes, encodings: list[str]) -> str:
    delims = _PN_DELIMS if vr == "PN" else (_TEXT_DELIMS if vr in _TEXT_NO_BACKSLASH else _MULTI_DELIMS)
    try:
        text = decode_bytes(value, encodings, delims)
    except Exception:
        text = value.decode("latin-1")
    text = text.rstrip("\x00 ")
    if vr in _TEXT_NO_BACKSLASH:
        return text
    return "\\".join(v.strip("\x00 ") for v in text.split("\\"))


def _value_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(_value_text(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bytes):
        return ""
    return str(value).strip("\x00 ")


def attrs_from_dataset(ds: Dataset) -> dict[str, str]:
    """A C-FIND result as ``{keyword: string}``.

    Text values are decoded from the raw bytes pydicom keeps until first
    access, so an invalid value (a date of ``13495156``, a UID with a space)
    comes through as sent instead of failing the listing.  Person names keep
    their DICOM form (``DOE^JOHN``), multiple values are joined with a
    backslash; sequences, binary values, private and empty elements are left
    out."""
    encodings = _encodings(ds)
    out: dict[str, str] = {}
    for tag in list(ds.keys()):
        if tag.group in (0x0000, 0x0002) or tag.is_private:
            continue
        kw = keyword_for_tag(tag)
        if not kw or kw in _SKIP:
            continue
        try:
            elem = ds.get_item(tag)
            if isinstance(elem, RawDataElement):
                vr = str(elem.VR or dictionary_VR(tag))
                if vr in _BINARY_VRS or not isinstance(elem.value, bytes):
                    continue
                if vr in ("US", "SS", "UL", "SL", "FL", "FD", "AT", "UV", "SV"):
                    text = _value_text(ds[tag].value)  # binary numbers: let pydicom unpack them
                else:
                    text = _raw_text(vr, elem.value, encodings)
            elif isinstance(elem, DataElement):
                if elem.VR in _BINARY_VRS:
                    continue
                text = _value_text(elem.value)
            else:
                continue
        except Exception as exc:  # a value pydicom cannot make sense of: leave it out, keep the rest
            log.debug("skipping unreadable %s: %s", kw, exc)
            continue
        if text:
            out[kw] = text
    return out


def query_dataset(level: str, keys: dict[str, str], return_keys: Sequence[str]) -> Dataset:
    """A C-FIND/C-GET identifier: matching ``keys`` with values, ``return_keys``
    empty.  Keywords pydicom does not know are skipped (config validation keeps
    them out, but a bad one must not stop a listing)."""
    ds = Dataset()
    text = "".join(keys.values())
    if not text.isascii():
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.QueryRetrieveLevel = level
    for kw in dict.fromkeys(return_keys):
        if kw in keys or kw in _SKIP:
            continue
        try:
            vr = dictionary_VR(kw).split(" or ")[0]
        except KeyError:
            log.debug("not a DICOM keyword, not asked for: %s", kw)
            continue
        ds.add_new(kw, vr, [] if vr == "SQ" else None)
    for kw, value in keys.items():
        try:
            vr = dictionary_VR(kw).split(" or ")[0]
        except KeyError:
            log.debug("not a DICOM keyword, not matched on: %s", kw)
            continue
        ds.add_new(kw, vr, value)
    return ds


# --------------------------------------------------------------------------- association


def make_ae(server: Server, ep: Endpoint) -> AE:
    ae = AE(ae_title=ep.calling_aet)
    ae.acse_timeout = server.timeout
    ae.dimse_timeout = server.timeout
    ae.network_timeout = server.timeout
    ae.connection_timeout = min(server.timeout, CONNECT_TIMEOUT_MAX)
    ae.maximum_pdu_size = MAX_PDU
    return ae


def _abort_now(assoc: Any) -> None:
    """Abort ``assoc`` and wake a thread waiting for its next DIMSE message
    (pynetdicom only wakes it when the *peer* aborts; otherwise it would sleep
    until the DIMSE timeout)."""
    try:
        assoc.abort()
    except Exception as exc:  # already gone: nothing left to do
        log.debug("abort: %s", exc)
    finally:
        try:
            assoc.dimse.msg_queue.put((None, None))
        except Exception:
            pass


class Association:
    """One DICOM association, opened, used and closed from trio.

    ``async with Association(...) as a:`` opens it (holding a slot of the
    server's limiter until it is closed); ``await a.call(fn, *args)`` runs
    ``fn(pynetdicom_association, *args)`` in a worker thread under the
    deadline; leaving the block releases the association, or aborts it when
    the block ends with an exception (cancellation included)."""

    def __init__(
        self,
        server: Server,
        ep: Endpoint,
        what: str,
        contexts: Sequence[tuple[str, Sequence[str]]],
        *,
        ext_neg: Sequence[Any] = (),
        handlers: Sequence[tuple[Any, Callable[..., Any]]] = (),
    ) -> None:
        self.server, self.ep, self.what = server, ep, what
        self.name = server.name
        self.contexts, self.ext_neg, self.handlers = contexts, list(ext_neg), list(handlers)
        self.assoc: Any = None
        self.aborted = False
        self._limiter = limiter_for(server)

    # -- running blocking steps

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(assoc, *args)`` in a thread, under ``server.timeout``."""
        return await self._run(functools.partial(fn, self.assoc, *args))

    async def _run(self, fn: Callable[[], T]) -> T:
        timeout = self.server.timeout
        try:
            with trio.fail_after(timeout):
                try:
                    return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)
                except trio.Cancelled:
                    self.abort()
                    raise
        except trio.TooSlowError:
            raise Unavailable(
                f"no answer from {self.ep.where()} within {timeout:g} s", server=self.name, what=self.what
            ) from None
        except RemoteError:
            raise
        except Exception as exc:  # pynetdicom's ValueError/RuntimeError on a broken association
            self.abort()
            raise ProtocolError(f"DICOM association failed: {type(exc).__name__}: {exc}", server=self.name,
                                what=self.what) from None  # fmt: skip

    def abort(self) -> None:
        """Abort now, without blocking the caller (trio thread or worker)."""
        self.aborted = True
        assoc = self.assoc
        if assoc is not None:
            threading.Thread(target=_abort_now, args=(assoc,), name="trolleyfs-dimse-abort", daemon=True).start()

    # -- opening and closing

    def _open(self) -> Any:
        ae = make_ae(self.server, self.ep)
        for abstract, syntaxes in self.contexts:
            if syntaxes:
                ae.add_requested_context(abstract, list(syntaxes))
            else:
                ae.add_requested_context(abstract)  # pynetdicom's default transfer syntaxes
        connected = threading.Event()
        handlers = [*self.handlers, (evt.EVT_CONN_OPEN, lambda _e: connected.set())]
        assoc = ae.associate(
            self.ep.host, self.ep.port, ae_title=self.ep.called_aet, ext_neg=self.ext_neg or None,
            evt_handlers=handlers, max_pdu=MAX_PDU,
        )  # fmt: skip
        self.assoc = assoc
        if self.aborted:  # the caller gave up while we were connecting
            _abort_now(assoc)
            raise Unavailable("cancelled", server=self.name, what=self.what)
        if assoc.is_established:
            return assoc
        where = self.ep.where()
        if assoc.is_rejected:
            raise self._rejected(assoc, where)
        if not connected.is_set():
            raise Unavailable(f"cannot connect to {where}", server=self.name, what=self.what)
        if getattr(assoc, "rejected_contexts", None) and not assoc.accepted_contexts:
            raise ProtocolError(
                f"{where} accepts none of the proposed services ({self._context_names()})",
                server=self.name, what=self.what,
            )  # fmt: skip
        raise Unavailable(f"association with {where} aborted or not answered", server=self.name, what=self.what)

    def _rejected(self, assoc: Any, where: str) -> RemoteError:
        rsp = getattr(assoc.acceptor, "primitive", None)
        reason = getattr(rsp, "reason_str", "no reason given") if rsp is not None else "no reason given"
        msg = f"association rejected by {where}: {reason}"
        if getattr(rsp, "result", None) == 0x02:  # rejected-transient: busy, limits reached
            return Unavailable(msg + " (transient)", server=self.name, what=self.what)
        return AccessDenied(msg, server=self.name, what=self.what)

    def _context_names(self) -> str:
        from pydicom.uid import UID

        return ", ".join(UID(a).name for a, _ in self.contexts[:3]) + (", ..." if len(self.contexts) > 3 else "")

    async def __aenter__(self) -> Association:
        await self._limiter.acquire_on_behalf_of(self)
        try:
            await self._run(self._open)
        except BaseException:
            self._limiter.release_on_behalf_of(self)
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            if exc_type is None and not self.aborted:
                try:
                    await self._run(self._release)
                except RemoteError as exc:
                    log.debug("%s: release failed, aborted: %s", self.name, exc)
                    self.abort()
            else:
                self.abort()
        finally:
            self._limiter.release_on_behalf_of(self)

    def _release(self) -> None:
        if self.assoc is not None and self.assoc.is_established:
            self.assoc.release()


# --------------------------------------------------------------------------- retries


async def with_retries(server: Server, attempt: Callable[[], Awaitable[T]], what: str) -> T:
    """Run ``attempt`` again (after a jittered backoff) while it fails with
    Unavailable, ``server.retries`` times at most.  Rejections, protocol errors
    and not-found answers are not retried."""
    for n in range(server.retries + 1):
        try:
            return await attempt()
        except Unavailable as exc:
            if n >= server.retries:
                raise
            log.debug("%s: retrying %s after: %s", server.name, what, exc)
            await trio.sleep(min(2.0, 0.1 * 2**n) * (0.5 + random.random()))
    raise AssertionError("unreachable")
