"""Checks shared by every fetcher: a body handed out must be a whole Part-10
object, and the one that was asked for."""

from __future__ import annotations

from ..errors import ProtocolError
from ..model import part10_sop_instance_uid


def check_part10(data: bytes, server: str, what: str, expect_uid: str | None = None) -> str:
    """Return the SOP Instance UID of ``data``; raise ProtocolError if it is not
    a Part-10 object or not the one expected."""
    try:
        uid = part10_sop_instance_uid(data)
    except ValueError as exc:
        raise ProtocolError(f"answer is not a DICOM object: {exc}", server=server, what=what) from None
    if expect_uid is not None and uid != expect_uid:
        raise ProtocolError(f"server sent instance {uid} instead", server=server, what=what)
    return uid
