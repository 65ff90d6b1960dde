"""The final response of a C-GET or C-MOVE: its status, the sub-operation
counts and the failed instances a server may list, and what it says
happened (:class:`Outcome`: the one reading of a final status both
operations share; each words its errors itself)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pydicom.dataset import Dataset

from .dimse_errors import PENDING


class Outcome(enum.Enum):
    """What a retrieval's final response says happened."""

    DONE = "done"  # success, or warnings with no failed sub-operation
    NO_STATUS = "no status"  # the response carries no status code
    UNKNOWN_DESTINATION = "unknown destination"  # C-MOVE: 0xA801
    SOME_FAILED = "some failed"  # failed sub-operations, or a warning saying so
    NOTHING_SENT = "nothing sent"  # a failure (0xCxxx) with no object sent and none arrived
    FAILED = "failed"  # any other failure status


UNKNOWN_DESTINATION = 0xA801


@dataclass
class RetrieveResult:
    """The last (non-pending) response of a C-GET or C-MOVE."""

    status: Dataset
    identifier: Dataset | None

    @property
    def code(self) -> int | None:
        code = self.status.get("Status")
        return code if isinstance(code, int) else None

    def count(self, keyword: str) -> int:
        """A sub-operation count (``NumberOfCompletedSuboperations`` etc.), 0 if absent."""
        value = self.status.get(keyword)
        return value if isinstance(value, int) else 0

    def outcome(self, received: int, out_of_resources_is_partial: bool = False) -> Outcome:
        """What happened, ``received`` objects having arrived here.  With
        ``out_of_resources_is_partial`` (C-MOVE) a 0xA7xx after some objects
        arrived means some failed (the PACS ran out of resources on the way)."""
        code = self.code
        if code is None:
            return Outcome.NO_STATUS
        failed = self.count("NumberOfFailedSuboperations")
        if code == 0x0000 or (code == 0xB000 and not failed):
            return Outcome.DONE
        if code == UNKNOWN_DESTINATION:
            return Outcome.UNKNOWN_DESTINATION
        if failed or code == 0xB000 or (out_of_resources_is_partial and 0xA700 <= code <= 0xA7FF and received):
            return Outcome.SOME_FAILED
        if 0xC000 <= code <= 0xCFFF and not received and not self.count("NumberOfCompletedSuboperations"):
            return Outcome.NOTHING_SENT
        return Outcome.FAILED

    def failed_uids(self) -> list[str]:
        if self.identifier is None:
            return []
        try:
            value = self.identifier.get("FailedSOPInstanceUIDList")
        except Exception:  # a malformed list must not hide the failure itself
            return []
        if value is None:
            return []
        values = [value] if isinstance(value, str) else list(value)
        return [str(v).strip("\x00 ") for v in values if str(v).strip("\x00 ")]

    def failed_text(self) -> str:
        """``": uid, uid ... and N more"`` for messages, or ``""``."""
        uids = self.failed_uids()
        if not uids:
            return ""
        return ": " + ", ".join(uids[:5]) + (f" and {len(uids) - 5} more" if len(uids) > 5 else "")


def final_response(responses: object) -> RetrieveResult:
    """The last non-pending ``(status, identifier)`` of pynetdicom's response
    generator (``send_c_get`` / ``send_c_move``); blocking, for a worker thread."""
    final = RetrieveResult(Dataset(), None)
    for status, ident in responses:  # type: ignore[attr-defined]
        if status.get("Status") in PENDING:
            continue
        final = RetrieveResult(status, ident)
    return final
