"""The Part-10 checks every fetcher and the tests share: reading an object's
SOP Instance UID from its file meta group, cheaply, and refusing a body that
is not a whole Part-10 object or not the one asked for."""

from __future__ import annotations

from .errors import ProtocolError

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def _meta_text(data: bytes | memoryview, element: int) -> str | None:
    """The text of file meta element (0002,``element``), or None if absent;
    ValueError if ``data`` is not a Part-10 file.

    Reads only the file meta group (always explicit VR little endian, PS3.10
    7.1), without pydicom: this runs once per object fetched, on the hot path."""
    mv = memoryview(data)
    if len(mv) < 144 or mv[128:132].tobytes() != b"DICM":
        raise ValueError("not a DICOM Part-10 object (too short, or no DICM prefix)")
    pos, end = 132, len(mv)
    while pos + 8 <= end:
        group, elem = int.from_bytes(mv[pos : pos + 2], "little"), int.from_bytes(mv[pos + 2 : pos + 4], "little")
        if group != 0x0002:
            break
        vr = bytes(mv[pos + 4 : pos + 6])
        if vr in _LONG_VRS:
            if pos + 12 > end:
                break
            length, value_at = int.from_bytes(mv[pos + 8 : pos + 12], "little"), pos + 12
        else:
            length, value_at = int.from_bytes(mv[pos + 6 : pos + 8], "little"), pos + 8
        if not vr.isalpha() or value_at + length > end:
            raise ValueError("corrupt DICOM file meta information")
        if elem == element:
            return bytes(mv[value_at : value_at + length]).decode("ascii", "replace").rstrip("\x00 ") or None
        pos = value_at + length
    return None


def part10_sop_instance_uid(data: bytes | memoryview) -> str:
    """The MediaStorageSOPInstanceUID of a Part-10 object, raising ValueError if
    ``data`` is not a Part-10 file."""
    uid = _meta_text(data, 0x0003)
    if uid is None:
        raise ValueError("Part-10 object without MediaStorageSOPInstanceUID")
    return uid


def part10_transfer_syntax(data: bytes | memoryview) -> str:
    """The TransferSyntaxUID of a Part-10 object, raising ValueError if ``data``
    is not a Part-10 file or names none."""
    ts = _meta_text(data, 0x0010)
    if ts is None:
        raise ValueError("Part-10 object without TransferSyntaxUID")
    return ts


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
