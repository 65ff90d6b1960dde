"""Which associations the C-MOVE receiver lets in, and what it says about
the others: pynetdicom event handlers for one receiver.

* EVT_REQUESTED: an association addressed to another AE title, or not from
  a sender of one of the servers using the receiver (calling AE title and
  peer address, :class:`~.senders.Senders`), is rejected with an
  A-ASSOCIATE-RJ (permanent; "called AE title not recognised", "calling AE
  title not recognised", or "no reason given" for the PACS's AE title from
  another address), and a log line names the sender and why.
* EVT_REJECTED: pynetdicom's own rejections (e.g. too many associations at
  once) are logged the same way.
* EVT_ACCEPTED: an association with no acceptable presentation context is
  logged (its C-STOREs will fail), and so is a lossy transfer syntax accepted
  because a context offered nothing else (objects stored so arrive as stored;
  the PACS may compress others lossy).

Every warning is logged once per sender (and class), at debug level after: a
foreign sender knocking again does not flood the log."""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable
from typing import Any

from pydicom.uid import UID
from pynetdicom import evt

from ..transport.storage import LOSSY
from .senders import Senders

log = logging.getLogger("trolleyfs.storescp")

# A-ASSOCIATE-RJ (PS3.8 9.3.4): rejected permanent, by the service user, and why
REJECT_PERMANENT, BY_USER = 0x01, 0x01
NO_REASON, CALLING_AET_UNKNOWN, CALLED_AET_UNKNOWN = 0x01, 0x03, 0x07
_REJECT_REASONS = {
    (0x01, 0x02): "application context not supported",
    (0x01, 0x03): "calling AE title not recognised",
    (0x01, 0x07): "called AE title not recognised",
    (0x02, 0x02): "protocol version not supported",
    (0x03, 0x01): "temporary congestion",
    (0x03, 0x02): "too many associations at once",
}


class Once:
    """Log a warning the first time for each key, at debug level after.
    Bounded (forgets everything at :data:`LIMIT` keys)."""

    LIMIT = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[Hashable] = set()

    def warn(self, key: Hashable, msg: str, *args: object) -> None:
        with self._lock:
            first = key not in self._seen
            if first:
                if len(self._seen) >= self.LIMIT:
                    self._seen.clear()
                self._seen.add(key)
        log.log(logging.WARNING if first else logging.DEBUG, msg, *args)


def requestor(assoc: Any) -> tuple[str, str]:
    """The calling AE title and peer address of an association."""
    req = assoc.requestor
    try:
        address = str(req.address)
    except (AttributeError, ValueError):
        address = "?"
    aet = req.ae_title or getattr(req.primitive, "calling_ae_title", "") or ""
    return str(aet).strip(), address


def class_name(uid: str) -> str:
    return UID(uid).name or uid


class Admission:
    """The association handlers of the receiver answering as ``aet`` for the
    servers whose ``senders`` (a list the receiver keeps adding to) use it."""

    def __init__(self, aet: str, senders: list[Senders]) -> None:
        self.aet = aet
        self.senders = senders
        self.once = Once()
        self.rejected = 0  # associations rejected

    def handlers(self) -> list[Any]:
        return [
            (evt.EVT_REQUESTED, self._on_request),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
        ]

    def why_not(self, aet: str, address: str) -> str | None:
        """None if some server using this receiver sends as ``aet`` from ``address``."""
        reasons = []
        for senders in self.senders:
            why = senders.why_not(aet, address)
            if why is None:
                return None
            reasons.append(why)
        return "; ".join(reasons) or "no server uses this receiver"

    def _refused(self, aet: str, address: str, why: str) -> None:
        self.rejected += 1
        key = ("association", aet, address, why)
        self.once.warn(key, "C-MOVE receiver: refused association from %s@%s: %s", aet, address, why)

    def _on_request(self, event: Any) -> None:
        """EVT_REQUESTED (the association's thread): reject what is not from a PACS we asked."""
        assoc = event.assoc
        aet, address = requestor(assoc)
        called = str(assoc.requestor.primitive.called_ae_title).strip()
        if called != self.aet:
            why, diagnostic = f"it is addressed to {called!r}, this receiver is {self.aet!r}", CALLED_AET_UNKNOWN
        else:
            found = self.why_not(aet, address)
            if found is None:
                return
            known = any(aet in s.aets for s in self.senders)
            why, diagnostic = found, NO_REASON if known else CALLING_AET_UNKNOWN
        self._refused(aet, address, why)
        # as pynetdicom's own rejections do: the A-ASSOCIATE-RJ goes out, then
        # the association waits (in its own thread) until the peer has closed
        assoc.acse.send_reject(REJECT_PERMANENT, BY_USER, diagnostic)
        assoc.kill()

    def _on_rejected(self, event: Any) -> None:
        """EVT_REJECTED: pynetdicom's own rejections (e.g. too many associations)."""
        aet, address = requestor(event.assoc)
        rj = event.assoc.acceptor.primitive
        why = _REJECT_REASONS.get((getattr(rj, "result_source", 0), getattr(rj, "diagnostic", 0)), "no reason given")
        self._refused(aet, address, why)

    def _on_accepted(self, event: Any) -> None:
        """EVT_ACCEPTED: say what cannot be received, and what is accepted lossy."""
        assoc = event.assoc
        aet, address = requestor(assoc)
        rejected = assoc.rejected_contexts
        names = sorted({class_name(cx.abstract_syntax) for cx in rejected})
        if not assoc.accepted_contexts:
            self.once.warn(
                ("no context", aet, address),
                "C-MOVE receiver: association from %s@%s has no presentation context this receiver accepts (%s)",
                aet,
                address,
                ", ".join(names[:5]) or "none proposed",
            )
            return
        if rejected:  # senders propose every class they know (dcmqrscp: retired ones too)
            log.debug("C-MOVE receiver: %s@%s: contexts not accepted: %s", aet, address, ", ".join(names))
        for cx in assoc.accepted_contexts:
            syntax = cx.transfer_syntax[0]
            if syntax in LOSSY:
                self.once.warn(
                    ("lossy", aet, address, cx.abstract_syntax),
                    "C-MOVE receiver: %s@%s offers only lossy %s for %s: accepted (objects stored so arrive as"
                    " stored; the PACS may compress others lossy)",
                    aet,
                    address,
                    UID(syntax).name,
                    class_name(cx.abstract_syntax),
                )
