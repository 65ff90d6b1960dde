"""The storage SCP a C-MOVE sends to: one listening socket per mount (per
bind address, port and AE title), started before the mount and stopped at
unmount.

A C-MOVE asks the PACS to open its own association to us and C-STORE the
objects.  Each retrieval registers what it waits for (an instance, or every
instance of a series) with :meth:`StoreReceiver.expect` and reads the objects
from a trio channel as they arrive; an object that nobody waits for (a late
answer to a retrieval that gave up, a foreign sender) is refused and never
served.  Only associations addressed to our AE title are accepted.

pynetdicom serves each association in a thread of its own; the C-STORE handler
hands an object to trio and waits until the retrieval has room for it, which
holds the PACS up (TCP flow control) while a reader is behind.

The bytes handed out are the dataset exactly as the PACS sent it, behind a
Part-10 header that pynetdicom builds from the C-STORE request and the
negotiated transfer syntax (``Event.encoded_dataset()`` does not decode)."""

from __future__ import annotations

import errno
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
from ..transport.storage import scp_contexts

log = logging.getLogger("trolleyfs.storescp")

# C-STORE statuses (PS3.4 B.2.3) we answer with
SUCCESS = 0x0000
NOT_AUTHORIZED = 0x0124  # nobody here asked for this object
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
    """Where a receiver listens and the AE title it answers to."""

    host: str
    port: int
    aet: str

    def where(self) -> str:
        return f"{self.aet}@{self.host}:{self.port}"


class _Expectation:
    """One retrieval's objects: the send side of its channel."""

    __slots__ = ("received", "send")

    def __init__(self, send: trio.MemorySendChannel[Message]) -> None:
        self.send = send
        self.received = 0


class StoreReceiver:
    """A storage SCP for the C-MOVEs of one mount."""

    def __init__(self, address: ReceiverAddress, timeout: float) -> None:
        self.address = address
        self._timeout = timeout
        self._lock = threading.Lock()
        self._by_instance: dict[str, _Expectation] = {}
        self._by_series: dict[str, _Expectation] = {}
        self._server: Any = None
        self._token: trio.lowlevel.TrioToken | None = None
        self.refused = 0  # objects nobody asked for
        self.accepted = 0

    # ------------------------------------------------------------------ life
    async def start(self) -> None:
        """Listen (idempotent).  A port that is taken or not ours to bind is a
        UserError naming it, before anything is mounted."""
        if self._server is not None:
            return
        self._token = trio.lowlevel.current_trio_token()
        self._server = await trio.to_thread.run_sync(self._listen)
        log.info("C-MOVE receiver listening as %s", self.address.where())

    def _listen(self) -> Any:
        ae = AE(ae_title=self.address.aet)
        ae.require_called_aet = True  # only associations addressed to us
        ae.maximum_pdu_size = MAX_PDU
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self._timeout
        for uid, syntaxes in scp_contexts():  # the sender picks the stored syntax where we take it
            ae.add_supported_context(uid, list(syntaxes))
        try:
            return ae.start_server(
                (self.address.host, self.address.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on_store)]
            )
        except OSError as exc:
            hint = (
                " (another program listens there: choose another store_port)" if exc.errno == errno.EADDRINUSE else ""
            )
            raise UserError(
                f"C-MOVE receiver: cannot listen on {self.address.host}:{self.address.port}: "
                f"{exc.strerror or exc}{hint}"
            ) from None

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(server.shutdown)
            log.debug("C-MOVE receiver %s stopped", self.address.where())

    # ------------------------------------------------------------------ retrievals
    @contextmanager
    def expect(self, *, instance: str | None = None, series: str | None = None) -> Iterator[Inbox]:
        """Register a retrieval waiting for ``instance`` or the instances of
        ``series``; objects arrive in the inbox handed out until the block ends.
        The channel is unbounded for one instance (a C-MOVE of one object must
        never wait for its reader) and small for a series (flow control)."""
        if (instance is None) == (series is None):
            raise ValueError("expect() takes an instance or a series")
        send, recv = trio.open_memory_channel[Message](math.inf if instance is not None else 4)
        table, key = (self._by_instance, instance) if instance is not None else (self._by_series, series)
        assert key is not None
        with self._lock:
            if key in table:
                raise RuntimeError(f"a retrieval already waits for {key}")
            table[key] = _Expectation(send)
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
        try:
            data = event.encoded_dataset()
            uid = part10_sop_instance_uid(data)
            check_whole(data)  # a cut or damaged dataset is refused, never handed on
        except Exception as exc:
            log.warning("C-MOVE receiver: unreadable object from %s: %s", _sender(event), exc)
            return CANNOT_UNDERSTAND
        targets = self._targets(uid, event)
        if not targets:
            self.refused += 1
            log.warning("C-MOVE receiver: refused instance %s from %s: no retrieval waits for it", uid, _sender(event))
            return NOT_AUTHORIZED
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


def _sender(event: Any) -> str:
    try:
        req = event.assoc.requestor
        return f"{req.ae_title}@{req.address}"
    except AttributeError:
        return "a peer"


class Receivers:
    """The receivers of one mount, one per address; servers that name the same
    address share it.  Started before the mount, closed after it."""

    def __init__(self) -> None:
        self._all: dict[tuple[str, int], StoreReceiver] = {}

    def get(self, address: ReceiverAddress, timeout: float) -> StoreReceiver:
        key = (address.host, address.port)
        found = self._all.get(key)
        if found is None:
            found = self._all[key] = StoreReceiver(address, timeout)
        elif found.address.aet != address.aet:
            raise UserError(
                f"C-MOVE receivers: port {address.port} is configured with two AE titles "
                f"({found.address.aet}, {address.aet}); one port answers to one AE title"
            )
        return found

    async def start(self) -> None:
        for receiver in self._all.values():
            await receiver.start()

    async def aclose(self) -> None:
        for receiver in self._all.values():
            await receiver.aclose()
