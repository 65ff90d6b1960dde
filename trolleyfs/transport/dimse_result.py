"""The final response of a C-GET or C-MOVE: its status, the sub-operation
counts and the failed instances a server may list."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset

from .dimse_errors import PENDING


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
