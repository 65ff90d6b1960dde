"""How DIMSE failures become :mod:`trolleyfs.errors`: final C-FIND/C-GET
statuses, and associations that were rejected, refused or never answered."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID

from ..errors import AccessDenied, ProtocolError, RemoteError, Unavailable

PENDING = (0xFF00, 0xFF01)


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


def not_established_error(
    assoc: Any,
    connected: bool,
    rejection: Any,
    where: str,
    contexts: Sequence[tuple[str, Sequence[str]]],
    server: str,
    what: str,
) -> RemoteError:
    """The error for an association that was not established: ``connected``
    says whether the TCP connection was made, ``rejection`` is the
    A-ASSOCIATE-RJ PDU or primitive if one came."""
    if assoc.is_rejected or getattr(rejection, "result", None) in (0x01, 0x02):
        return rejection_error(rejection, where, server, what)
    if not connected:
        return Unavailable(f"cannot connect to {where}", server=server, what=what)
    if getattr(assoc, "rejected_contexts", None) and not assoc.accepted_contexts:
        names = ", ".join(UID(a).name for a, _ in contexts[:3]) + (", ..." if len(contexts) > 3 else "")
        return ProtocolError(f"{where} accepts none of the proposed services ({names})", server=server, what=what)
    return Unavailable(f"association with {where} aborted or not answered", server=server, what=what)


def rejection_error(rsp: Any, where: str, server: str, what: str) -> RemoteError:
    """``rsp``: the A-ASSOCIATE-RJ PDU or primitive.  A transient rejection
    (busy, limits reached) may pass; a permanent one is a refusal."""
    reason = getattr(rsp, "reason_str", None) or "no reason given"
    msg = f"association rejected by {where}: {reason}"
    if getattr(rsp, "result", None) == 0x02:
        return Unavailable(msg + " (transient)", server=server, what=what)
    return AccessDenied(msg, server=server, what=what)
