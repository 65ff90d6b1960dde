"""The storage SCP a C-MOVE sends to: one listening port per mount (per port
and AE title), started before the mount and stopped at unmount.

A C-MOVE asks the PACS to open its own association to us and C-STORE the
objects.  Each retrieval registers what it waits for (an instance, or every
instance of a series) and who may send it (its server's :class:`~.senders.Senders`)
with :meth:`StoreReceiver.expect`, and reads the objects from a trio channel as
they arrive.  Who gets in:

* an association is accepted only if it is addressed to our AE title and comes
  from a sender of one of the servers using this receiver (calling AE title and
  peer address); every other one is rejected, with a log line naming the
  sender and why (:mod:`.admission`);
* an object is handed only to a retrieval whose own server sent it; one that
  nobody (or only another server's retrieval) waits for is refused (status
  0x0124) and never served: it cannot satisfy or disturb a waiting read.

The receiver binds ``store_host`` if the config names one, else the address of
this machine that routes to the PACS (:func:`~.senders.listen_address`), so it
is not reachable on interfaces the PACS does not use.  It accepts the transfer
syntaxes of :func:`~trolleyfs.transport.storage.scp_contexts` (a lossy one only
when a context offers nothing else).

pynetdicom serves each association in a thread of its own; the C-STORE handler
hands an object to trio and waits until the retrieval has room for it, which
holds the PACS up (TCP flow control) while a reader is behind.  Before that it
charges the object's bytes to the limits of the retrieval's server (its
:class:`~trolleyfs.transport.pace.ThreadCharge`, carrying the priority of the
read that asked), so the PACS also waits while those limits say so.

The bytes handed out are the dataset exactly as the PACS sent it, behind a
Part-10 header that pynetdicom builds from the C-STORE request and the
negotiated transfer syntax (``Event.encoded_dataset()`` does not decode)."""

from __future__ import annotations

import errno
import ipaddress
import logging
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import trio
from pynetdicom import AE, evt

from ..errors import UserError
from ..part10 import check_whole, part10_sop_instance_uid
from ..transport.pace import ThreadCharge
from ..transport.storage import scp_contexts
from .admission import Admission, requestor
from .senders import Senders, listen_address

log = logging.getLogger("trolleyfs.storescp")

# C-STORE statuses (PS3.4 B.2.3) we answer with
SUCCESS = 0x0000
NOT_AUTHORIZED = 0x0124  # nobody here asked for this object, or not from this sender
CANNOT_UNDERSTAND = 0xC000
OUT_OF_RESOURCES = 0xA700  # the retrieval that asked for it is gone
MAX_PDU = 1024 * 1024

Item = tuple[str, bytes]  # (SOP Instance UID, Part-10 bytes)


class Marker:
    """What a retrieval posts on its own inbox besides objects (e.g. "the
    C-MOVE has ended")."""


Message = Item | Marker


@dataclass(frozen=True)
class Inbox:
    """A retrieval's channel: the receiver sends objects to it; the retrieval
    may post markers of its own."""

    send: trio.MemorySendChannel[Message]
    receive: trio.MemoryReceiveChannel[Message]


@dataclass(frozen=True)
class ReceiverAddress:
    """Where a receiver listens and the AE title it answers to; ``host`` is
    empty for "the address that routes to the PACS"."""

    host: str
    port: int
    aet: str

    def where(self) -> str:
        return f"{self.aet}@{self.host or '*'}:{self.port}"


class _Expectation:
    """One retrieval's objects: the send side of its channel, and who may send them."""

    __slots__ = ("charge", "received", "send", "senders")

    def __init__(
        self, send: trio.MemorySendChannel[Message], senders: Senders, charge: ThreadCharge | None = None
    ) -> None:
        self.send = send
        self.senders = senders
        self.charge = charge  # the limits of the retrieval's server
        self.received = 0


class StoreReceiver:
    """A storage SCP for the C-MOVEs of one mount, on one port."""

    def __init__(self, address: ReceiverAddress, timeout: float) -> None:
        self.address = address
        self._timeout = timeout
        self._lock = threading.Lock()
        self._by_instance: dict[str, _Expectation] = {}
        self._by_series: dict[str, _Expectation] = {}
        self._senders: list[Senders] = []
        self._binds: list[tuple[str, str]] = []  # (store_host, PACS host) of each server
        self._servers: list[Any] = []
        self._token: trio.lowlevel.TrioToken | None = None
        self._admission = Admission(address.aet, self._senders)
        self.listening: list[str] = []  # the addresses bound, once started
        self.refused = 0  # objects nobody (of the senders allowed) asked for
        self.accepted = 0

    def add_server(self, senders: Senders, store_host: str, pacs_host: str) -> None:
        """A server whose retrievals use this receiver: its senders get in, and
        the receiver listens on ``store_host`` (or the address routing to ``pacs_host``)."""
        self._senders.append(senders)
        self._binds.append((store_host, pacs_host))

    # ------------------------------------------------------------------ life
    async def start(self) -> None:
        """Listen (idempotent).  A port that is taken or not ours to bind is a
        UserError naming it, before anything is mounted."""
        if self._servers:
            return
        self._token = trio.lowlevel.current_trio_token()
        self._servers = await trio.to_thread.run_sync(self._listen)
        where = ", ".join(f"{a}:{self.address.port}" for a in self.listening)
        log.info(
            "C-MOVE receiver listening as %s on %s, for %s",
            self.address.aet,
            where,
            "; ".join(f"{s.server}: {s.describe()}" for s in self._senders) or "nobody",
        )

    def _addresses(self) -> list[str]:
        found = dict.fromkeys(listen_address(host, pacs) for host, pacs in self._binds or [("", "127.0.0.1")])

        def unspecified(a: str) -> bool:
            try:
                return ipaddress.ip_address(a).is_unspecified
            except ValueError:
                return False

        if "::" in found:
            return ["::"]  # dual-stack: IPv4 too
        if any(unspecified(a) for a in found):
            return [a for a in found if unspecified(a) or ":" in a]
        return list(found)

    def _listen(self) -> list[Any]:
        for senders in self._senders:
            senders.resolve()
        self.listening = self._addresses()
        ae = AE(ae_title=self.address.aet)
        ae.require_called_aet = True  # also checked (and logged) by the admission
        ae.maximum_pdu_size = MAX_PDU
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self._timeout
        for uid, syntaxes in scp_contexts():  # the sender picks the stored syntax where we take it
            ae.add_supported_context(uid, list(syntaxes))
        handlers = [*self._admission.handlers(), (evt.EVT_C_STORE, self._on_store)]
        servers: list[Any] = []
        try:
            for host in self.listening:
                servers.append(ae.start_server((host, self.address.port), block=False, evt_handlers=handlers))
        except OSError as exc:
            for server in servers:
                server.shutdown()
            hint = (
                " (another program listens there: choose another store_port)" if exc.errno == errno.EADDRINUSE else ""
            )
            raise UserError(
                f"C-MOVE receiver: cannot listen on {host}:{self.address.port}: {exc.strerror or exc}{hint}"
            ) from None
        return servers

    async def aclose(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(server.shutdown)
        if servers:
            log.debug("C-MOVE receiver %s stopped", self.address.where())

    # ------------------------------------------------------------------ retrievals
    @contextmanager
    def expect(
        self,
        senders: Senders,
        *,
        instance: str | None = None,
        series: str | None = None,
        charge: ThreadCharge | None = None,
    ) -> Iterator[Inbox]:
        """Register a retrieval waiting for ``instance`` or the instances of
        ``series`` from ``senders``; objects arrive in the inbox handed out
        until the block ends, each charged to ``charge`` first.  The channel is
        unbounded for one instance (a C-MOVE of one object must never wait for
        its reader) and small for a series (flow control)."""
        if (instance is None) == (series is None):
            raise ValueError("expect() takes an instance or a series")
        send, recv = trio.open_memory_channel[Message](math.inf if instance is not None else 4)
        table, key = (self._by_instance, instance) if instance is not None else (self._by_series, series)
        assert key is not None
        with self._lock:
            if key in table:
                raise RuntimeError(f"a retrieval already waits for {key}")
            table[key] = _Expectation(send, senders, charge)
        try:
            yield Inbox(send, recv)
        finally:
            with self._lock:
                del table[key]
            send.close()
            recv.close()  # a handler still waiting to deliver gets BrokenResourceError

    def _targets(self, uid: str, event: Any) -> list[_Expectation]:
        with self._lock:
            found = self._by_instance.get(uid)
            by_series = bool(self._by_series)
        targets = [found] if found is not None else []
        if by_series:
            series = _series_uid(event)
            with self._lock:
                extra = self._by_series.get(series) if series else None
            if extra is not None:
                targets.append(extra)
        return targets

    def _on_store(self, event: Any) -> int:
        """pynetdicom's C-STORE handler (an association thread)."""
        aet, address = requestor(event.assoc)
        try:
            data = event.encoded_dataset()
            uid = part10_sop_instance_uid(data)
            check_whole(data)  # a cut or damaged dataset is refused, never handed on
        except Exception as exc:
            log.warning("C-MOVE receiver: unreadable object from %s@%s: %s", aet, address, exc)
            return CANNOT_UNDERSTAND
        waiting = self._targets(uid, event)
        targets = [t for t in waiting if t.senders.why_not(aet, address) is None]
        if not targets:
            self.refused += 1
            if waiting:  # another server's sender: it must not satisfy that retrieval
                why = "; ".join(filter(None, (t.senders.why_not(aet, address) for t in waiting)))
                self._admission.once.warn(
                    ("object", aet, address),
                    "C-MOVE receiver: refused instance %s from %s@%s: %s",
                    uid,
                    aet,
                    address,
                    why,
                )
            else:  # a PACS finishing an abandoned series: one warning per sender, not one per object
                self._admission.once.warn(
                    ("unasked", aet, address),
                    "C-MOVE receiver: refused instance %s from %s@%s: no retrieval waits for it"
                    " (more from this sender are logged at debug level)",
                    uid,
                    aet,
                    address,
                )
            return NOT_AUTHORIZED
        charge = next((t.charge for t in targets if t.charge is not None), None)
        if charge is not None:
            try:
                charge.charge(len(data))  # the PACS waits while the limits of the server asked hold it
            except (trio.RunFinishedError, trio.Cancelled):
                return OUT_OF_RESOURCES
        delivered = False
        for target in targets:
            try:
                trio.from_thread.run(target.send.send, (uid, data), trio_token=self._token)
                target.received += 1
                delivered = True
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.RunFinishedError, trio.Cancelled):
                continue  # that retrieval ended meanwhile
        if not delivered:
            self.refused += 1
            return OUT_OF_RESOURCES
        self.accepted += 1
        return SUCCESS


def _series_uid(event: Any) -> str | None:
    try:
        value = event.dataset.get("SeriesInstanceUID")
    except Exception:  # a dataset pydicom cannot parse: it matches no series
        return None
    return str(value).strip("\x00 ") if value else None


class Receivers:
    """The receivers of one mount, one per port; servers that name the same
    port share it (and must give it the same AE title).  Started before the
    mount, closed after it."""

    def __init__(self) -> None:
        self._all: dict[int, StoreReceiver] = {}

    def get(self, address: ReceiverAddress, timeout: float, senders: Senders, pacs_host: str) -> StoreReceiver:
        """The receiver on ``address.port``, which now also takes ``senders``
        and listens on ``address.host`` (or the address routing to ``pacs_host``)."""
        found = self._all.get(address.port)
        if found is None:
            found = self._all[address.port] = StoreReceiver(address, timeout)
        elif found.address.aet != address.aet:
            raise UserError(
                f"C-MOVE receivers: port {address.port} is configured with two AE titles "
                f"({found.address.aet}, {address.aet}); one port answers to one AE title"
            )
        found.add_server(senders, address.host, pacs_host)
        return found

    async def start(self) -> None:
        for receiver in self._all.values():
            await receiver.start()

    async def aclose(self) -> None:
        for receiver in self._all.values():
            await receiver.aclose()
