"""DICOM C-GET (PS3.4 C.4.3) with the Study Root model: the server sends the
objects back over our own association as C-STORE sub-operations, so no
inbound port is needed (unlike C-MOVE).

We take the Storage SCP role for the storage SOP classes and transfer
syntaxes of :mod:`trolleyfs.transport.storage`, laid out so that a server
that can send an object in the syntax it stores it in does (Explicit VR and
the common compressed syntaxes in contexts of their own, ahead of Implicit
VR), within the 128 contexts an association may carry.  An object in a syntax
no accepted context has may be converted by the server (or fail as a
sub-operation: reported as an error for that object).

The bytes handed out are the dataset exactly as received, behind a Part-10
header (preamble, ``DICM``, file meta built by pynetdicom from the C-STORE
request and the negotiated transfer syntax): ``Event.encoded_dataset()``
never decodes or re-encodes the dataset.

Each object received is charged to the server's limits (its bytes) in the
thread that received it, before its C-STORE is answered, with the priority
of the read that asked (captured when the C-GET starts): while the limits
hold it, the server waits for the answer and sends nothing more."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing, suppress
from dataclasses import dataclass, field, replace
from typing import Any

import outcome
import trio
from pydicom import uid as tsuid
from pydicom.dataset import Dataset
from pynetdicom import evt

from ..endpoints import CGetEndpoint, Server
from ..errors import NotFound, ProtocolError, RemoteError, Unavailable
from ..idle import idle_deadline, overall_bound
from ..model import InstanceRef, SeriesRef
from ..part10 import Expected, check_part10
from ..transport import storage
from ..transport.dimse import Association, pace_of, with_dimse_retries
from ..transport.dimse_data import retrieve_identifier
from ..transport.dimse_errors import status_error, status_text
from ..transport.dimse_result import Outcome, RetrieveResult, final_response
from ..transport.pace import ThreadCharge
from ..transport.retry import retry_stream

log = logging.getLogger("trolleyfs.cget")

GET_MODEL = tsuid.UID("1.2.840.10008.5.1.4.1.2.2.3")  # Study Root Query/Retrieve Information Model - GET

SERIES_BUFFER = 4  # objects waiting for the consumer before the sender is held up


def get_contexts() -> list[tuple[str, tuple[str, ...]]]:
    """The presentation contexts of a C-GET association: the Q/R GET model
    first, then the storage contexts (:mod:`trolleyfs.transport.storage`)."""
    return [(GET_MODEL, ()), *storage.get_contexts(storage.MAX_CONTEXTS - 1)]


@dataclass
class _Receiver:
    """Takes the C-STORE sub-operations of one C-GET, in the thread that runs
    the C-GET.  ``deliver`` hands an object on; when it fails (the consumer is
    gone) the sub-operation is refused and further ones too."""

    name: str
    what: str
    deliver: Callable[[str, bytes], None]
    expected: Expected = field(default_factory=Expected)  # the study and series asked for
    charge: ThreadCharge | None = None  # the server's limits, charged for each object
    received: set[str] = field(default_factory=set)
    errors: list[RemoteError] = field(default_factory=list)
    stopped: bool = False

    def on_store(self, event: Any) -> int:
        if self.stopped:
            return 0xA700  # Refused: out of resources
        try:
            data = event.encoded_dataset()
            uid = check_part10(data, self.name, self.what, self.expected)
        except ProtocolError as exc:
            self.errors.append(exc)
            return 0xC000  # Error: cannot understand
        except Exception as exc:
            self.errors.append(
                ProtocolError(f"unreadable C-STORE sub-operation: {exc}", server=self.name, what=self.what)
            )
            return 0xC000
        try:
            if self.charge is not None:
                self.charge.charge(len(data))  # holds the server up while the limits say so
            self.deliver(uid, data)
        except BaseException as exc:  # consumer gone, trio run over: stop taking objects
            log.debug("%s: %s: object %s not delivered: %r", self.name, self.what, uid, exc)
            self.stopped = True
            return 0xA700
        self.received.add(uid)
        return 0x0000


def _get_blocking(assoc: Any, identifier: Dataset) -> RetrieveResult:
    """One C-GET (in a worker thread); C-STORE sub-operations arrive in the
    receiver bound to the association, in this same thread."""
    return final_response(assoc.send_c_get(identifier, GET_MODEL))


class CGet:
    """A :class:`~trolleyfs.model.Fetcher` over C-GET."""

    def __init__(self, server: Server, endpoint: CGetEndpoint) -> None:
        self.server, self.ep = server, endpoint
        self.name = server.name
        self._contexts = get_contexts()
        self._roles = storage.scp_role_items()

    async def aclose(self) -> None:
        pass

    def _association(self, what: str, receiver: _Receiver) -> Association:
        return Association(
            self.server,
            self.ep,
            what,
            self._contexts,
            ext_neg=self._roles,
            handlers=[(evt.EVT_C_STORE, receiver.on_store)],
        )

    def _failure(self, result: RetrieveResult, receiver: _Receiver, what: str) -> RemoteError | None:
        """The error a finished C-GET stands for, or None when all went well."""
        if receiver.errors:
            return receiver.errors[0]
        outcome = result.outcome(len(receiver.received))
        if outcome is Outcome.DONE:
            return None
        failed = result.count("NumberOfFailedSuboperations")
        if outcome is Outcome.SOME_FAILED:
            return ProtocolError(
                f"server could not send {failed or len(result.failed_uids()) or 'some'} object(s) "
                f"({status_text(result.status)}){result.failed_text()}"
                + "; a storage SOP class trolleyfs does not propose, or a transfer syntax the server cannot convert?",
                server=self.name,
                what=what,
            )
        if outcome is Outcome.NOTHING_SENT:
            # Orthanc answers a C-GET that matches nothing with 0xC000 and no sub-operations
            return NotFound(f"server has nothing to send ({status_text(result.status)})", server=self.name, what=what)
        return status_error(result.status, self.name, what, "C-GET")

    # -- one instance

    async def fetch_instance(self, ref: InstanceRef) -> bytes:
        what = f"instance {ref.instance_uid}"
        identifier = retrieve_identifier("IMAGE", ref.study_uid, ref.series_uid, ref.instance_uid)

        expected = Expected.of_instance(ref)

        async def attempt() -> bytes:
            got: dict[str, bytes] = {}
            charge = ThreadCharge(pace_of(self.server))
            receiver = _Receiver(self.name, what, got.__setitem__, replace(expected, instance=None), charge=charge)
            async with self._association(what, receiver) as a:
                result = await a.call(_get_blocking, identifier)
            data = got.get(ref.instance_uid)
            if data is not None:  # what was asked for came whole: other trouble is not ours
                check_part10(data, self.name, what, expected)
                return data
            err = self._failure(result, receiver, what)
            if err is not None:
                raise err
            if got:
                check_part10(next(iter(got.values())), self.name, what, expected)  # raises: wrong object
            raise NotFound("server sent nothing (no such instance)", server=self.name, what=what)

        return await with_dimse_retries(self.server, attempt, what)

    # -- a whole series

    async def fetch_series(self, ref: SeriesRef, instance_uids: list[str]) -> AsyncGenerator[tuple[str, bytes], None]:
        """One C-GET at SERIES level (``instance_uids`` is not needed: the server
        sends the whole series).  Objects are yielded as they arrive; a failure
        before the first one is retried, after it raised."""
        what = f"series {ref.series_uid}"
        identifier = retrieve_identifier("SERIES", ref.study_uid, ref.series_uid)
        items = retry_stream(
            lambda: self._stream(identifier, what, Expected.of_series(ref)),
            retries=self.server.retries,
            catch=(Unavailable,),
            what=what,
            name=self.name,
        )
        async with aclosing(items):
            async for item in items:
                yield item

    async def _stream(
        self, identifier: Dataset, what: str, expected: Expected
    ) -> AsyncGenerator[tuple[str, bytes], None]:
        """Run the C-GET in a thread of its own and pass objects through a
        bounded memory channel: the C-STORE handler waits (holding up the
        server) while the consumer is behind.  No nursery: the generator must be
        able to yield between objects, and a nursery must not span a yield."""
        token = trio.lowlevel.current_trio_token()
        send, recv = trio.open_memory_channel[tuple[str, bytes]](SERIES_BUFFER)

        def deliver(uid: str, data: bytes) -> None:  # worker thread
            trio.from_thread.run(send.send, (uid, data), trio_token=token)

        charge = ThreadCharge(pace_of(self.server))
        receiver = _Receiver(self.name, what, deliver, expected, charge=charge)
        done: list[outcome.Outcome[RetrieveResult]] = []  # what the C-GET thread ended with

        def finished(result: outcome.Outcome[RetrieveResult]) -> None:  # worker thread, after the C-GET
            done.append(result)
            with suppress(trio.RunFinishedError):
                token.run_sync_soon(send.close)

        async with self._association(what, receiver) as a:
            a.start(_get_blocking, identifier, deliver=finished)
            async with recv:
                while True:
                    try:
                        # silence bounded, not the object: a large one whose PDUs keep coming is waited for
                        # (and the limits holding an object back are not the server's silence)
                        with idle_deadline(self.server.timeout, overall_bound(self.server.timeout)):
                            a.report_progress_here()
                            with charge.beacon.listening():
                                item = await recv.receive()
                    except trio.EndOfChannel:
                        break
                    except trio.TooSlowError:
                        raise Unavailable(
                            f"no object from {self.ep.where()} for {self.server.timeout:g} s",
                            server=self.name,
                            what=what,
                        ) from None
                    yield item
            try:
                result = done[0].unwrap()
            except RemoteError:
                raise
            except Exception as exc:
                raise ProtocolError(f"C-GET failed: {type(exc).__name__}: {exc}", server=self.name, what=what) from None
        err = self._failure(result, receiver, what)
        if err is not None and not isinstance(err, NotFound):  # NotFound: nothing to send, nothing yielded
            raise err
