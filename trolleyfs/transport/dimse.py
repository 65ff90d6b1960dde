"""One DICOM association, opened, used and closed from trio.

pynetdicom blocks, so every step of an association (open, C-FIND, C-GET,
release) runs in a worker thread, each step under its own deadline.  The
deadline bounds silence, not the step (:mod:`trolleyfs.idle`): it is
``server.timeout`` from the last PDU received, so a C-FIND whose 20,000 rows
keep arriving runs to its end, and a peer that goes quiet for ``timeout`` is
given up on; the whole step is bounded by :func:`~trolleyfs.idle.overall_bound`.
Every PDU received is also progress for the deadlines around the caller (the
FUSE operation's).  pynetdicom's own ACSE/DIMSE/network timeouts are set to
``timeout`` too (each bounds one wait of its own, not a whole answer), so a
worker thread ends by itself even when nobody waits for it any more.  When a
deadline passes or the caller is cancelled, the trio side returns at once and
the association is aborted: the worker thread is woken (it would otherwise
sleep until pynetdicom's timeout) and aborts when its step ends; see
:class:`Association`.

Associations of one server are bounded by the server's
``association_limiter`` (``max_connections``), shared by its searcher and
fetcher.  Failures are mapped by :mod:`trolleyfs.transport.dimse_errors`.

The server's limits are shared the same way: the composition root hands the
server's :class:`~.pace.Pace` over with :func:`pace_associations` (kept beside
its association limiter, for whichever of its protocol objects opens an
association), and each association opened waits for the request rate first
(:meth:`Association.__aenter__`); the objects C-GET and C-MOVE receive are
charged as bytes where they arrive (:func:`pace_of`, :mod:`trolleyfs.retrieve`).
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import outcome
import trio
from pynetdicom import AE, evt
from pynetdicom.events import EventHandlerType
from pynetdicom.pdu import A_ASSOCIATE_RJ
from pynetdicom.pdu_primitives import A_P_ABORT
from pynetdicom.transport import AssociationSocket

from ..endpoints import AeEndpoint, Server
from ..errors import ProtocolError, RemoteError, Unavailable
from ..idle import IdleDeadline, ThreadReporter, idle_deadline, overall_bound
from .dimse_errors import not_established_error
from .pace import Pace
from .retry import with_retries

log = logging.getLogger("trolleyfs.dimse")

T = TypeVar("T")

# pynetdicom's default (16 KiB) makes a C-GET of a big series cost many more
# round trips and copies; the peer sends PDUs up to the size we announce.
MAX_PDU = 1024 * 1024
CONNECT_TIMEOUT_MAX = 10.0


def limiter_for(server: Server) -> trio.CapacityLimiter:
    """The association limiter of ``server``, shared by its searcher and fetcher."""
    return server.association_limiter


# the pace of each server, kept by its association limiter (one per configured Server object)
_paces: weakref.WeakKeyDictionary[trio.CapacityLimiter, Pace] = weakref.WeakKeyDictionary()


def pace_associations(server: Server, pace: Pace) -> None:
    """Charge every association to ``server`` (its searcher's and its fetcher's,
    and the objects they receive) to ``pace``: the composition root's call."""
    _paces[limiter_for(server)] = pace


def pace_of(server: Server) -> Pace | None:
    """The pace of ``server``'s associations (None: not limited, not counted)."""
    return _paces.get(limiter_for(server))


async def with_dimse_retries(server: Server, attempt: Callable[[], Awaitable[T]], what: str) -> T:
    """Run ``attempt`` again (after a backoff) while it fails with Unavailable,
    ``server.retries`` times at most.  Rejections, protocol errors and
    not-found answers are not retried."""
    return await with_retries(attempt, retries=server.retries, catch=(Unavailable,), what=what, name=server.name)


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


def make_ae(server: Server, ep: AeEndpoint) -> AE:
    ae = _AE(ae_title=ep.calling_aet)
    ae.acse_timeout = server.timeout
    ae.dimse_timeout = server.timeout
    ae.network_timeout = server.timeout
    ae.connection_timeout = min(server.timeout, CONNECT_TIMEOUT_MAX)
    ae.maximum_pdu_size = MAX_PDU
    return ae


_ae_cache: dict[tuple[Any, ...], AE] = {}
_ae_lock = threading.Lock()


def cached_ae(server: Server, ep: AeEndpoint, contexts: Sequence[tuple[str, Sequence[str]]]) -> AE:
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


def _nobody() -> None:
    pass


REACTOR_SETTLE_S = 5.0  # at most this long for pynetdicom's reactor to resume (see settle_reactor)


def settle_reactor(assoc: Any) -> None:
    """Return once pynetdicom's reactor thread has resumed after the last
    DIMSE exchange on ``assoc`` (blocking, in the worker thread).

    Each ``send_c_*`` pauses the reactor (it clears a checkpoint, then waits
    until the reactor says it is paused) and resumes it at its end.  When the
    reactor thread has not run since that resume (a busy machine), it still
    says "paused" from before: the next ``send_c_*`` then takes it for paused
    at once and sends its request, the reactor wakes, takes the answer off the
    queue as an unexpected request and drops it ("Received unexpected C-FIND
    service message"), and the search ends with a success and no rows: a study
    without series.  So before a new exchange: if the reactor was told to run
    but has not woken yet, wait until it has (pynetdicom 2 and 3; an
    association without these attributes is not waited for)."""
    checkpoint = getattr(assoc, "_reactor_checkpoint", None)
    if checkpoint is None or not checkpoint.is_set():
        return
    deadline = time.monotonic() + REACTOR_SETTLE_S
    while getattr(assoc, "_is_paused", False) and time.monotonic() < deadline:
        time.sleep(0.0002)


class Association:
    """One DICOM association, opened, used and closed from trio.

    ``async with Association(...) as a:`` opens it (holding a slot of the
    server's limiter until it is closed); ``await a.call(fn, *args)`` runs
    ``fn(pynetdicom_association, *args)`` in a worker thread under the idle
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
        ep: AeEndpoint,
        what: str,
        contexts: Sequence[tuple[str, Sequence[str]]],
        *,
        ext_neg: Sequence[Any] = (),
        handlers: Sequence[tuple[Any, Callable[..., Any]]] = (),
        charge_pdus: bool = False,
    ) -> None:
        """``charge_pdus``: the bytes of every PDU the peer sends during a
        :meth:`call` are charged to the server's pace when it returns (C-FIND
        answers; C-GET and the C-MOVE receiver charge each object as it
        arrives instead)."""
        self.server, self.ep, self.what = server, ep, what
        self.charge_pdus = charge_pdus
        self.received = 0  # bytes of the PDUs received (counted in pynetdicom's thread)
        self.name = server.name
        self.contexts, self.ext_neg, self.handlers = contexts, list(ext_neg), list(handlers)
        self.assoc: Any = None
        self.aborted = False
        self._lock = threading.Lock()
        self._busy = False  # a worker step is running
        self._aborted_assoc: Any = None  # the association an abort was started on
        self._limiter = limiter_for(server)
        self._report: Callable[[], None] = _nobody  # called (in pynetdicom's thread) on every PDU received

    # -- running blocking steps

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(assoc, *args)`` in a thread, until ``server.timeout`` passes
        without a PDU from the peer."""
        before = self.received
        result = await self._run(functools.partial(fn, self.assoc, *args))
        pace = pace_of(self.server) if self.charge_pdus else None
        if pace is not None:
            await pace.received(self.received - before)  # the answers count against mb_per_s too
        return result

    def start(self, fn: Callable[..., T], *args: Any, deliver: Callable[[outcome.Outcome[T]], None]) -> None:
        """``fn(assoc, *args)`` in a thread of its own, not awaited: ``deliver``
        gets its ``outcome.Outcome`` in that thread.  For a step that streams
        results to trio while the caller keeps going (C-GET of a series); the
        caller bounds its waits itself (see :meth:`report_progress_here`)."""
        self.report_progress_here()
        step = functools.partial(self._step, functools.partial(fn, self.assoc, *args))
        trio.lowlevel.start_thread_soon(step, deliver, name=f"trolleyfs-dimse {self.what}")

    def report_progress_here(self) -> None:
        """From now on every PDU received is progress for the idle deadlines
        around the calling task (:mod:`trolleyfs.idle`)."""
        self._report = ThreadReporter()

    def _on_data(self, event: Any) -> None:  # pynetdicom's thread, on every PDU received
        self.received += len(event.data)
        self._report()

    async def _run(self, fn: Callable[[], T]) -> T:
        timeout = self.server.timeout
        deadline: IdleDeadline | None = None
        try:
            with idle_deadline(timeout, overall_bound(timeout)) as deadline:
                self.report_progress_here()
                try:
                    return await trio.to_thread.run_sync(self._step, fn, abandon_on_cancel=True)
                except trio.Cancelled:
                    self.abort()
                    raise
        except trio.TooSlowError:
            raise Unavailable(self._silence(deadline), server=self.name, what=self.what) from None
        except RemoteError:
            raise
        except Exception as exc:  # pynetdicom's ValueError/RuntimeError on a broken association
            self.abort()
            raise ProtocolError(
                f"DICOM association failed: {type(exc).__name__}: {exc}", server=self.name, what=self.what
            ) from None

    def _silence(self, deadline: IdleDeadline | None) -> str:
        timeout = self.server.timeout
        if deadline is not None and deadline.overran:
            return f"the answer from {self.ep.where()} was still not complete after {deadline.overall:g} s"
        if deadline is not None and deadline.reports:
            return f"no answer from {self.ep.where()} for {timeout:g} s (it had begun to answer)"
        return f"no answer from {self.ep.where()} within {timeout:g} s"

    def _step(self, fn: Callable[[], T]) -> T:
        """A worker thread's step; aborts at its end when asked to meanwhile."""
        with self._lock:
            if self.aborted:
                raise Unavailable("association aborted", server=self.name, what=self.what)
            self._busy = True
        try:
            if self.assoc is not None:
                settle_reactor(self.assoc)
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

        handlers: list[EventHandlerType] = [
            *self.handlers,
            (evt.EVT_CONN_OPEN, on_connect),
            (evt.EVT_PDU_RECV, on_pdu),
            (evt.EVT_DATA_RECV, self._on_data),
        ]
        assoc = ae.associate(
            self.ep.host,
            self.ep.port,
            ae_title=self.ep.called_aet,
            ext_neg=self.ext_neg or None,
            evt_handlers=handlers,
            max_pdu=MAX_PDU,
        )
        with self._lock:
            self.assoc = assoc
        if self.aborted:  # the caller gave up meanwhile; _step() aborts the association
            raise Unavailable("cancelled", server=self.name, what=self.what)
        if assoc.is_established:
            return assoc
        with self._lock:
            self.aborted = True  # _step() winds down what is left of it and closes the socket
        rejection = rejections[0] if rejections else getattr(assoc.acceptor, "primitive", None)
        raise not_established_error(
            assoc, connected.is_set(), rejection, self.ep.where(), self.contexts, self.name, self.what
        )

    async def __aenter__(self) -> Association:
        pace = pace_of(self.server)
        if pace is not None:
            await pace.request()  # before a slot is taken: a wait for the rate holds no connection
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
