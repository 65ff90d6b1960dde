"""What DICOM-QR listings and C-GET reads share: one association driven from
trio, status and dataset conversion.

pynetdicom blocks, so every step of an association (open, C-FIND, C-GET,
release) runs in a worker thread, each step under its own deadline
(``server.timeout``).  pynetdicom's own ACSE/DIMSE/network timeouts are set to
the same value, so a worker thread ends by itself even when nobody waits for
it any more.  When a deadline passes or the caller is cancelled, the trio side
returns at once and the association is aborted: the worker thread is woken
(it would otherwise sleep until pynetdicom's timeout) and aborts when its step
ends; see :class:`Association`.

Associations of one server are bounded by one ``trio.CapacityLimiter`` of
``server.max_connections``, shared by the server's searcher and fetcher: an
association is a connection the PACS counts, whichever of the two opened it.
"""

from __future__ import annotations

import functools
import logging
import random
import socket
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
from pynetdicom import AE, _config, evt
from pynetdicom.pdu import A_ASSOCIATE_RJ
from pynetdicom.pdu_primitives import A_P_ABORT
from pynetdicom.transport import AssociationSocket

from .config import Endpoint, Server
from .errors import AccessDenied, ProtocolError, RemoteError, Unavailable

log = logging.getLogger("trolleyfs.dimse")

# pynetdicom formats every C-FIND/C-GET identifier for its log whatever the log
# level: CPU for nothing, and it decodes the values we want to read raw.
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False

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
        except (KeyError, ValueError):  # pydicom raises either for an unknown keyword
            log.debug("not a DICOM keyword, not asked for: %s", kw)
            continue
        ds.add_new(kw, vr, [] if vr == "SQ" else None)
    for kw, value in keys.items():
        try:
            vr = dictionary_VR(kw).split(" or ")[0]
        except (KeyError, ValueError):
            log.debug("not a DICOM keyword, not matched on: %s", kw)
            continue
        ds.add_new(kw, vr, value)
    return ds


# --------------------------------------------------------------------------- association


class _Socket(AssociationSocket):
    """pynetdicom's socket, closed also when the connection failed: pynetdicom
    calls ``shutdown()`` first, which raises on an unconnected socket, and so
    skips ``close()`` (the socket then leaks until garbage collection, with a
    ResourceWarning)."""

    def _shutdown_socket(self) -> None:
        sock = self.socket
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            sock.close()


class _AE(AE):
    def _create_socket(self, assoc: Any, address: Any, tls_args: Any) -> AssociationSocket:
        sock = _Socket(assoc, address=address)
        sock.tls_args = tls_args
        return sock


def make_ae(server: Server, ep: Endpoint) -> AE:
    ae = _AE(ae_title=ep.calling_aet)
    ae.acse_timeout = server.timeout
    ae.dimse_timeout = server.timeout
    ae.network_timeout = server.timeout
    ae.connection_timeout = min(server.timeout, CONNECT_TIMEOUT_MAX)
    ae.maximum_pdu_size = MAX_PDU
    return ae


_ae_cache: dict[tuple[Any, ...], AE] = {}
_ae_lock = threading.Lock()


def cached_ae(server: Server, ep: Endpoint, contexts: Sequence[tuple[str, Sequence[str]]]) -> AE:
    """An AE with ``contexts`` requested, built once per configuration: adding
    a hundred presentation contexts costs pynetdicom tens of milliseconds of
    UID validation, too much to pay on every association.  One AE serves
    concurrent associations (each copies the contexts it requests)."""
    key = (ep.calling_aet, server.timeout, tuple((a, tuple(s)) for a, s in contexts))
    with _ae_lock:
        ae = _ae_cache.get(key)
        if ae is None:
            ae = make_ae(server, ep)
            for abstract, syntaxes in contexts:
                if syntaxes:
                    ae.add_requested_context(abstract, list(syntaxes))
                else:
                    ae.add_requested_context(abstract)  # pynetdicom's default transfer syntaxes
            _ae_cache[key] = ae
        return ae


def _no_delay(assoc: Any) -> None:
    """Turn Nagle's algorithm off on the association's socket.  pynetdicom
    writes a DIMSE command and its dataset as separate PDUs; with Nagle on, the
    second waits for the peer's delayed ACK (40 ms here) and every C-FIND costs
    about 50-100 ms instead of a few."""
    try:
        assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError) as exc:  # not fatal: only slower
        log.debug("cannot set TCP_NODELAY: %s", exc)


def _wake(assoc: Any) -> None:
    """Wake the worker thread waiting on ``assoc`` as a peer abort would.

    pynetdicom wakes a thread waiting for the peer only when the *peer* aborts
    or the connection drops; otherwise it sleeps until its ACSE or DIMSE
    timeout.  A thread waiting for the association answer reads the ACSE queue,
    one waiting for a C-FIND/C-GET response the DIMSE queue: each gets what a
    peer abort would have put there, and the thread then winds down by itself."""
    try:
        if assoc.is_established:
            assoc.dimse.msg_queue.put((None, None))
        else:
            assoc.dul.to_user_queue.put(A_P_ABORT())
    except Exception as exc:  # pynetdicom internals changed: the thread ends at its own timeout instead
        log.debug("cannot wake the association thread: %s", exc)


def _abort_assoc(assoc: Any) -> None:
    try:
        assoc.abort()
    except Exception as exc:  # already gone: nothing left to do
        log.debug("abort: %s", exc)
    finally:
        # pynetdicom 3.0 means to close the socket at the end of abort() but
        # does not (a NameError it swallows): the socket would stay open until
        # garbage collection
        try:
            sock = assoc.dul.socket
            if sock is not None:
                sock._shutdown_socket()
        except Exception as exc:
            log.debug("closing the socket: %s", exc)


class Association:
    """One DICOM association, opened, used and closed from trio.

    ``async with Association(...) as a:`` opens it (holding a slot of the
    server's limiter until it is closed); ``await a.call(fn, *args)`` runs
    ``fn(pynetdicom_association, *args)`` in a worker thread under the
    deadline; leaving the block releases the association, or aborts it when
    the block ends with an exception (cancellation included).

    Aborting is serialized with the worker thread: pynetdicom breaks (its DUL
    thread raises on a P-DATA after the A-ABORT) when one thread aborts while
    another still sends.  So while a worker step runs, :meth:`abort` only
    wakes it and the worker aborts when its step ends; with no step running
    a helper thread aborts at once."""

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
        self._lock = threading.Lock()
        self._busy = False  # a worker step is running
        self._aborted_assoc: Any = None  # the association an abort was started on
        self._limiter = limiter_for(server)

    # -- running blocking steps

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(assoc, *args)`` in a thread, under ``server.timeout``."""
        return await self._run(functools.partial(fn, self.assoc, *args))

    def start(self, fn: Callable[..., T], *args: Any, deliver: Callable[[Any], None]) -> None:
        """``fn(assoc, *args)`` in a thread of its own, not awaited: ``deliver``
        gets its ``outcome.Outcome`` in that thread.  For a step that streams
        results to trio while the caller keeps going (C-GET of a series)."""
        step = functools.partial(self._step, functools.partial(fn, self.assoc, *args))
        trio.lowlevel.start_thread_soon(step, deliver, name=f"trolleyfs-dimse {self.what}")

    async def _run(self, fn: Callable[[], T]) -> T:
        timeout = self.server.timeout
        try:
            with trio.fail_after(timeout):
                try:
                    return await trio.to_thread.run_sync(self._step, fn, abandon_on_cancel=True)
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

    def _step(self, fn: Callable[[], T]) -> T:
        """A worker thread's step; aborts at its end when asked to meanwhile."""
        with self._lock:
            if self.aborted:
                raise Unavailable("association aborted", server=self.name, what=self.what)
            self._busy = True
        try:
            return fn()
        finally:
            with self._lock:
                self._busy = False
                assoc = self._claim_abort()
            if assoc is not None:
                _abort_assoc(assoc)

    def _claim_abort(self) -> Any:
        """The association to abort now, once (call with the lock held)."""
        if self.aborted and self.assoc is not None and self._aborted_assoc is not self.assoc:
            self._aborted_assoc = self.assoc
            return self.assoc
        return None

    def abort(self) -> None:
        """Abort, without blocking the caller (trio thread or any other)."""
        with self._lock:
            self.aborted = True
            assoc, busy = self.assoc, self._busy
            claimed = None if busy else self._claim_abort()
        if assoc is not None and busy:
            _wake(assoc)
        elif claimed is not None:
            threading.Thread(target=_abort_assoc, args=(claimed,), name="trolleyfs-dimse-abort", daemon=True).start()

    # -- opening and closing

    def _open(self) -> Any:
        ae = cached_ae(self.server, self.ep, self.contexts)
        connected = threading.Event()
        rejections: list[Any] = []

        def on_pdu(event: Any) -> None:
            # pynetdicom sometimes reports a rejection as an abort: when the peer
            # closes the connection right after its A-ASSOCIATE-RJ, pynetdicom
            # sees the socket closed before it reads the answer.  Seen here.
            if isinstance(event.pdu, A_ASSOCIATE_RJ):
                rejections.append(event.pdu)

        def on_connect(event: Any) -> None:  # in pynetdicom's DUL thread, while _open() waits
            connected.set()
            _no_delay(event.assoc)
            with self._lock:
                self.assoc = event.assoc  # from now on abort() can wake the negotiation
                aborted = self.aborted
            if aborted:
                _wake(event.assoc)

        handlers = [*self.handlers, (evt.EVT_CONN_OPEN, on_connect), (evt.EVT_PDU_RECV, on_pdu)]
        assoc = ae.associate(
            self.ep.host, self.ep.port, ae_title=self.ep.called_aet, ext_neg=self.ext_neg or None,
            evt_handlers=handlers, max_pdu=MAX_PDU,
        )  # fmt: skip
        with self._lock:
            self.assoc = assoc
        if self.aborted:  # the caller gave up meanwhile; _step() aborts the association
            raise Unavailable("cancelled", server=self.name, what=self.what)
        if assoc.is_established:
            return assoc
        with self._lock:
            self.aborted = True  # _step() winds down what is left of it and closes the socket
        rejection = rejections[0] if rejections else getattr(assoc.acceptor, "primitive", None)
        raise self._not_established(assoc, connected.is_set(), rejection)

    def _not_established(self, assoc: Any, connected: bool, rejection: Any) -> RemoteError:
        where = self.ep.where()
        if assoc.is_rejected or getattr(rejection, "result", None) in (0x01, 0x02):
            return self._rejected(rejection, where)
        if not connected:
            return Unavailable(f"cannot connect to {where}", server=self.name, what=self.what)
        if getattr(assoc, "rejected_contexts", None) and not assoc.accepted_contexts:
            return ProtocolError(
                f"{where} accepts none of the proposed services ({self._context_names()})",
                server=self.name, what=self.what,
            )  # fmt: skip
        return Unavailable(f"association with {where} aborted or not answered", server=self.name, what=self.what)

    def _rejected(self, rsp: Any, where: str) -> RemoteError:
        """``rsp``: the A-ASSOCIATE-RJ PDU or primitive."""
        reason = getattr(rsp, "reason_str", None) or "no reason given"
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
