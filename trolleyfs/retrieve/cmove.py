"""DICOM C-MOVE (PS3.4 C.4.2) with the Study Root model, for PACS that offer
no C-GET: we ask the PACS to send the objects to our own storage SCP (the
move destination, :mod:`.storescp`), which it must know by AE title, host and
port.  The receiver hands this retrieval only objects that come from this
server's senders (:class:`~.senders.Senders`: its AE title and host unless
the config names others).

A file read moves one instance (IMAGE level); series readahead moves the whole
series (SERIES level) and hands each object on as soon as its C-STORE has
arrived.  The final C-MOVE response is checked: a failure status, a move
destination the PACS does not know (0xA801) or failed sub-operations become an
error naming the server and the objects; objects the PACS reports as sent that
never arrive end the retrieval after ``timeout`` seconds.  A PACS sends its
final response only after its sub-operations, so normally every object is
already here when it comes; the wait covers PACS that answer early."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import replace

import outcome
import trio
from pydicom.dataset import Dataset
from pydicom.uid import UID

from ..endpoints import CMoveEndpoint, Server
from ..errors import NotFound, ProtocolError, RemoteError, Unavailable
from ..idle import idle_deadline, overall_bound, progress
from ..model import InstanceRef, SeriesRef
from ..part10 import Expected, check_part10
from ..transport.dimse import Association, pace_of, with_dimse_retries
from ..transport.dimse_data import retrieve_identifier
from ..transport.dimse_errors import status_error, status_text
from ..transport.dimse_result import Outcome, RetrieveResult, final_response
from ..transport.pace import ThreadCharge
from ..transport.retry import retry_stream
from .senders import Senders
from .storescp import Inbox, Item, Marker, StoreReceiver

log = logging.getLogger("trolleyfs.cmove")

MOVE_MODEL = UID("1.2.840.10008.5.1.4.1.2.2.2")  # Study Root Query/Retrieve Information Model - MOVE


class _Done(Marker):
    """Put on a retrieval's inbox after the C-MOVE's final response."""

    __slots__ = ("result",)

    def __init__(self, result: outcome.Outcome[RetrieveResult]) -> None:
        self.result = result


class CMove:
    """A :class:`~trolleyfs.model.Fetcher` over C-MOVE into ``receiver``."""

    def __init__(self, server: Server, endpoint: CMoveEndpoint, receiver: StoreReceiver, senders: Senders) -> None:
        self.server, self.ep, self.receiver, self.senders = server, endpoint, receiver, senders
        self.name = server.name
        self._contexts = [(MOVE_MODEL, ())]

    async def aclose(self) -> None:
        pass

    # -- one instance

    async def fetch_instance(self, ref: InstanceRef) -> bytes:
        what = f"instance {ref.instance_uid}"
        identifier = retrieve_identifier("IMAGE", ref.study_uid, ref.series_uid, ref.instance_uid)

        async def attempt() -> bytes:
            charge = ThreadCharge(pace_of(self.server))
            with self.receiver.expect(self.senders, instance=ref.instance_uid, charge=charge) as inbox:
                got = {uid: data async for uid, data in self._move(identifier, inbox, what, charge)}
            data = got.get(ref.instance_uid)
            if data is None:
                raise NotFound("the PACS sent nothing (no such instance)", server=self.name, what=what)
            check_part10(data, self.name, what, Expected.of_instance(ref))
            return data

        return await with_dimse_retries(self.server, attempt, what)

    # -- a whole series

    async def fetch_series(self, ref: SeriesRef, instance_uids: list[str]) -> AsyncGenerator[Item, None]:
        """One C-MOVE at SERIES level; objects are yielded as they arrive.  A
        failure before the first one is retried, after it raised."""
        what = f"series {ref.series_uid}"
        identifier = retrieve_identifier("SERIES", ref.study_uid, ref.series_uid)

        expected = Expected.of_series(ref)

        async def stream() -> AsyncGenerator[Item, None]:
            charge = ThreadCharge(pace_of(self.server))
            with self.receiver.expect(self.senders, series=ref.series_uid, charge=charge) as inbox:
                async with aclosing(self._move(identifier, inbox, what, charge)) as items:
                    async for uid, data in items:
                        try:  # the receiver routed it by its series: is it of this study, whole, itself?
                            check_part10(data, self.name, what, replace(expected, instance=uid))
                        except ProtocolError as exc:
                            log.warning("%s (left out: its file is read alone)", exc)
                            continue
                        yield uid, data

        items = retry_stream(stream, retries=self.server.retries, catch=(Unavailable,), what=what, name=self.name)
        async with aclosing(items):
            async for item in items:
                yield item

    # -- the move itself

    async def _move(
        self, identifier: Dataset, inbox: Inbox, what: str, charge: ThreadCharge
    ) -> AsyncGenerator[Item, None]:
        """Run the C-MOVE in a thread of its own; yield what the receiver gets
        for this retrieval until the final response (and the objects it counts)
        are in; the receiver charges each to ``charge`` (waits that are not
        the PACS's silence).  No nursery: a generator must be able to yield
        between objects."""
        token = trio.lowlevel.current_trio_token()
        timeout = self.server.timeout

        def finished(result: outcome.Outcome[RetrieveResult]) -> None:  # worker thread, after the C-MOVE
            gone = (trio.BrokenResourceError, trio.ClosedResourceError, trio.RunFinishedError, trio.Cancelled)
            with contextlib.suppress(*gone):  # the retrieval is over already
                trio.from_thread.run(inbox.send.send, _Done(result), trio_token=token)

        received = 0
        result: RetrieveResult | None = None
        async with Association(self.server, self.ep, what, self._contexts) as a:
            a.start(_move_blocking, identifier, self.ep.store_aet, deliver=finished)
            while result is None or received < result.count("NumberOfCompletedSuboperations"):
                try:
                    # each pending C-MOVE response (a PDU on this association) is progress too
                    with idle_deadline(timeout, overall_bound(timeout)):
                        a.report_progress_here()
                        with charge.beacon.listening():
                            item = await inbox.receive.receive()
                except trio.TooSlowError:
                    raise self._silence(result, received, what) from None
                progress()  # an object or the final answer arrived: the wait for it goes on
                if isinstance(item, _Done):
                    result = self._final(item.result, what)
                elif not isinstance(item, Marker):
                    received += 1
                    yield item
        err = self._failure(result, received, what)
        if err is not None:
            raise err

    def _final(self, result: outcome.Outcome[RetrieveResult], what: str) -> RetrieveResult:
        try:
            return result.unwrap()
        except RemoteError:
            raise
        except Exception as exc:
            raise ProtocolError(f"C-MOVE failed: {type(exc).__name__}: {exc}", server=self.name, what=what) from None

    def _silence(self, result: RetrieveResult | None, received: int, what: str) -> RemoteError:
        """Nothing arrived for ``timeout`` seconds."""
        if result is None:
            return Unavailable(
                f"no answer from {self.ep.where()} to the C-MOVE for {self.server.timeout:g} s",
                server=self.name,
                what=what,
            )
        sent = result.count("NumberOfCompletedSuboperations")
        return ProtocolError(
            f"the PACS reports {sent} object(s) sent to {self.ep.store_aet} but {received} arrived here within "
            f"{self.server.timeout:g} s: does the PACS's entry for {self.ep.store_aet} point at this machine and "
            f"port {self.ep.store_port}?",
            server=self.name,
            what=what,
        )

    def _failure(self, result: RetrieveResult | None, received: int, what: str) -> RemoteError | None:
        """The error a finished C-MOVE stands for, or None when all went well."""
        assert result is not None
        outcome = result.outcome(received, out_of_resources_is_partial=True)
        if outcome is Outcome.DONE:
            return None
        failed = result.count("NumberOfFailedSuboperations")
        if outcome is Outcome.UNKNOWN_DESTINATION:
            return ProtocolError(
                f"the PACS does not know the move destination {self.ep.store_aet!r} ({status_text(result.status)}):"
                f" register AE {self.ep.store_aet} at this machine's address, port {self.ep.store_port}, on the PACS",
                server=self.name,
                what=what,
            )
        if outcome is Outcome.SOME_FAILED:
            return ProtocolError(
                f"the PACS could not deliver {failed or len(result.failed_uids()) or 'some'} object(s) to "
                f"{self.ep.store_aet} ({status_text(result.status)}){result.failed_text()}; can the PACS reach port "
                f"{self.ep.store_port} of this machine (firewall), and does trolleyfs accept the storage class?",
                server=self.name,
                what=what,
            )
        if outcome is Outcome.NOTHING_SENT:
            # Orthanc answers so for a destination it does not know, for one it
            # cannot reach, and for a UID it does not hold alike
            return ProtocolError(
                f"the PACS sent nothing for the C-MOVE to {self.ep.store_aet} ({status_text(result.status)}): does "
                f"the PACS know AE {self.ep.store_aet} (this machine, port {self.ep.store_port}), can it reach that "
                "port (firewall), and does it hold the object?",
                server=self.name,
                what=what,
            )
        return status_error(result.status, self.name, what, "C-MOVE")


def _move_blocking(assoc: object, identifier: Dataset, move_aet: str) -> RetrieveResult:
    """One C-MOVE (in a worker thread): waits for the final response; the
    objects arrive meanwhile at the receiver, on other associations."""
    return final_response(assoc.send_c_move(identifier, move_aet, MOVE_MODEL))  # type: ignore[attr-defined]
