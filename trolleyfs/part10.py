"""The Part-10 checks every fetcher and the tests share: reading an object's
SOP Instance UID from its file meta group, cheaply; walking its data elements
to prove it is whole; reading who the object says it is (its SOP Instance,
Series and Study Instance UIDs and Patient ID, from the dataset itself); and
refusing a body that is not a whole Part-10 object or not the one asked for.

The walk reads each top-level element's tag, VR and length and jumps over its
value (no value is decoded, no pixel data touched); only sequences and
encapsulated pixel data of undefined length are entered, to find their
delimiters.  The elements must end exactly where the object ends: an object
cut short inside consistent framing (its own lengths run past its end) or
followed by stray bytes is refused.  Explicit and implicit VR little endian,
explicit VR big endian and deflated explicit VR are walked; an object is
walked once per fetch, on the hot path, so this uses ``struct`` on the bytes
as they are (a CT image of about 150 elements costs some tens of microseconds)."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ProtocolError

if TYPE_CHECKING:
    from .model import InstanceRef, SeriesRef

_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xE000, 0xE00D, 0xE0DD

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95")  # deflated explicit VR LE; JPIP referenced deflate
MAX_INFLATED = 4 << 30
MAX_DEFLATE_TRAILER = 8  # a deflated dataset larger than this is refused rather than inflated


class _Layout:
    """How element headers are packed in one encoding."""

    __slots__ = ("short", "tag", "u32")

    def __init__(self, order: str) -> None:
        self.tag = struct.Struct(order + "HH")
        self.short = struct.Struct(order + "HH2sH")  # explicit VR: tag, VR, 16-bit length
        self.u32 = struct.Struct(order + "I")


_LE, _BE = _Layout("<"), _Layout(">")

# The top-level elements that say which object this is (read during the walk)
SOP_INSTANCE_UID = 0x00080018
PATIENT_ID = 0x00100020
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
IDENTITY_TAGS = frozenset({SOP_INSTANCE_UID, PATIENT_ID, STUDY_INSTANCE_UID, SERIES_INSTANCE_UID})


@dataclass(frozen=True)
class Identity:
    """Who an object says it is: its file meta's Media Storage SOP Instance
    UID and, from the dataset itself, its SOP Instance, Study and Series
    Instance UIDs and Patient ID (None where an element is absent)."""

    meta_sop: str | None
    sop: str | None
    study: str | None
    series: str | None
    patient_id: str | None


@dataclass(frozen=True)
class Expected:
    """What an object must say it is, as far as the asker knows (None: not
    known, not compared): the instance, series and study it was asked as, and
    the patient its study was listed under."""

    instance: str | None = None
    series: str | None = None
    study: str | None = None
    patient_id: str | None = None

    @classmethod
    def of_series(cls, ref: SeriesRef | InstanceRef) -> Expected:
        """Any object of ``ref``'s series: its study, series and patient."""
        return cls(series=ref.series_uid, study=ref.study_uid, patient_id=ref.patient_id)

    @classmethod
    def of_instance(cls, ref: InstanceRef) -> Expected:
        """The instance ``ref`` names, in its series, study and patient."""
        return cls(ref.instance_uid, ref.series_uid, ref.study_uid, ref.patient_id)


def _text(value: bytes | None) -> str | None:
    """A UI/LO value as text: trailing NUL and space padding removed."""
    if value is None:
        return None
    return value.decode("ascii", "replace").strip("\x00 ")


def _meta(mv: memoryview) -> tuple[str | None, str | None, int]:
    """(MediaStorageSOPInstanceUID, TransferSyntaxUID, where the dataset starts)
    of a Part-10 object; ValueError if ``mv`` is not one.  The meta group is
    always explicit VR little endian (PS3.10 7.1)."""
    if len(mv) < 144 or mv[128:132].tobytes() != b"DICM":
        raise ValueError("not a DICOM Part-10 object (too short, or no DICM prefix)")
    pos, end = 132, len(mv)
    uid = syntax = None
    while pos + 8 <= end:
        group, elem, vr, length = _LE.short.unpack_from(mv, pos)
        if group != 0x0002:
            break
        if vr in _LONG_VRS:
            if pos + 12 > end:
                break
            length, value_at = _LE.u32.unpack_from(mv, pos + 8)[0], pos + 12
        else:
            value_at = pos + 8
        if not vr.isalpha() or value_at + length > end:
            raise ValueError("corrupt DICOM file meta information")
        if elem in (0x0003, 0x0010):
            text = bytes(mv[value_at : value_at + length]).decode("ascii", "replace").rstrip("\x00 ")
            if elem == 0x0003:
                uid = text or None
            else:
                syntax = text or None
        pos = value_at + length
    return uid, syntax, pos


def part10_sop_instance_uid(data: bytes | memoryview) -> str:
    """The MediaStorageSOPInstanceUID of a Part-10 object, raising ValueError if
    ``data`` is not a Part-10 file.  Reads only the file meta group, without pydicom."""
    uid, _, _ = _meta(memoryview(data))
    if uid is None:
        raise ValueError("Part-10 object without MediaStorageSOPInstanceUID")
    return uid


def part10_transfer_syntax(data: bytes | memoryview) -> str:
    """The TransferSyntaxUID of a Part-10 object, raising ValueError if ``data``
    is not a Part-10 file or names none."""
    _, syntax, _ = _meta(memoryview(data))
    if syntax is None:
        raise ValueError("Part-10 object without TransferSyntaxUID")
    return syntax


def _where(group: int, elem: int) -> str:
    return f"element ({group:04X},{elem:04X})"


def walk_elements(  # noqa: C901 - the hot loop of every read: one function, no calls per element
    buf: bytes | memoryview,
    pos: int,
    end: int,
    explicit: bool,
    layout: _Layout = _LE,
    capture: dict[int, bytes] | None = None,
    stop_after: int | None = None,
) -> None:
    """Walk the data elements of a dataset from ``pos``; raise ValueError unless
    they end exactly at ``end``.  The values of the top-level elements whose
    tags are in :data:`IDENTITY_TAGS` are put into ``capture`` (by tag); with
    ``stop_after`` the walk ends at the first top-level element past that tag
    (it then proves nothing about the rest of the object).  An image (it has Rows) must have its pixel
    data: a cut right before the pixel data element is a cut too.  Undefined-length sequences (and encapsulated
    pixel data) are entered to find their delimiters; values of defined length
    are jumped over.  An explicit-VR ``UN`` of undefined length holds implicit
    VR items (PS3.5 6.2.2).  No recursion: nesting depth costs no stack."""
    tag_s, short_s, u32 = layout.tag, layout.short, layout.u32
    # open undefined-length containers: (True: items of a sequence | False: a nested dataset, explicit VR?)
    stack: list[tuple[bool, bool]] = []
    rows = pixels = False  # at the top level: (0028,0010) Rows seen, a (7FE0,xxxx) pixel data element seen
    if pos >= end:
        raise ValueError("no data elements after the file meta group")
    while True:
        if pos == end and not stack:
            if rows and not pixels:
                raise ValueError("an image without its pixel data (cut before it?)")
            return
        if pos + 8 > end:
            if stack:
                raise ValueError(f"ends inside an undefined-length sequence ({end - pos} bytes left, need a delimiter)")
            raise ValueError(f"{end - pos} stray bytes after the last element")
        if stack and stack[-1][0]:  # items of a sequence, or fragments of encapsulated pixel data
            group, elem = tag_s.unpack_from(buf, pos)
            length = u32.unpack_from(buf, pos + 4)[0]
            if group != 0xFFFE or elem not in (_ITEM, _SEQ_END):
                raise ValueError(f"{_where(group, elem)} where a sequence item belongs")
            pos += 8
            if elem == _SEQ_END:
                stack.pop()
            elif length == _UNDEFINED:
                stack.append((False, stack[-1][1]))
            elif pos + length > end:
                raise ValueError(f"a sequence item declares {length} bytes, {end - pos} left")
            else:
                pos += length
            continue
        in_explicit = stack[-1][1] if stack else explicit
        if in_explicit:
            group, elem, vr, length = short_s.unpack_from(buf, pos)
            if group == 0xFFFE:
                vr = b""
                length = u32.unpack_from(buf, pos + 4)[0]
                value_at = pos + 8
            elif vr in _LONG_VRS:
                if pos + 12 > end:
                    raise ValueError(f"{_where(group, elem)} is cut inside its header")
                length, value_at = u32.unpack_from(buf, pos + 8)[0], pos + 12
            elif not (vr.isalpha() and vr.isupper()):
                raise ValueError(f"{_where(group, elem)} has no valid VR ({bytes(vr)!r})")
            else:
                value_at = pos + 8
        else:
            group, elem = tag_s.unpack_from(buf, pos)
            vr, length, value_at = b"", u32.unpack_from(buf, pos + 4)[0], pos + 8
        if group == 0xFFFE:
            if elem == _ITEM_END and stack:
                stack.pop()
                pos = value_at
                continue
            raise ValueError(f"unexpected delimiter {_where(group, elem)}")
        if not stack:
            if group == 0x7FE0:
                pixels = True
            elif group == 0x0028 and elem == 0x0010:
                rows = True
            tag = group << 16 | elem
            if stop_after is not None and tag > stop_after:
                return
            if capture is not None and tag in IDENTITY_TAGS and length != _UNDEFINED and value_at + length <= end:
                capture[tag] = bytes(buf[value_at : value_at + length])
        if length == _UNDEFINED:
            if in_explicit and vr not in (b"SQ", b"UN", b"OB", b"OW"):
                raise ValueError(f"{_where(group, elem)} ({vr.decode('ascii', 'replace')}) has an undefined length")
            stack.append((True, in_explicit and vr != b"UN"))
            pos = value_at
            continue
        if value_at + length > end:
            raise ValueError(f"{_where(group, elem)} declares {length} bytes, {max(0, end - value_at)} left")
        pos = value_at + length


def _dataset(mv: memoryview) -> tuple[bytes | memoryview, int, bool, _Layout, str | None]:
    """(buffer, start, explicit VR?, byte order, MediaStorageSOPInstanceUID) of
    a Part-10 object's dataset; a deflated dataset is inflated first."""
    uid, syntax, start = _meta(mv)
    if syntax in DEFLATED:
        inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            body = inflate.decompress(mv[start:], MAX_INFLATED)
        except zlib.error as exc:
            raise ValueError(f"deflated dataset cannot be inflated: {exc}") from None
        # a few bytes may follow the stream (a pad byte; some writers leave a zlib or gzip trailer)
        if not inflate.eof or inflate.unconsumed_tail or len(inflate.unused_data) > MAX_DEFLATE_TRAILER:
            raise ValueError("deflated dataset is cut short (or has bytes after its end)")
        return body, 0, _looks_explicit(memoryview(body), 0), _LE, uid
    layout = _BE if syntax == EXPLICIT_BE else _LE
    # the first element tells explicit from implicit VR, as pydicom decides it:
    # archives hold objects whose meta group names the other one
    return mv, start, _looks_explicit(mv, start), layout, uid


def _identity(meta_sop: str | None, found: dict[int, bytes]) -> Identity:
    return Identity(
        meta_sop,
        _text(found.get(SOP_INSTANCE_UID)),
        _text(found.get(STUDY_INSTANCE_UID)),
        _text(found.get(SERIES_INSTANCE_UID)),
        _text(found.get(PATIENT_ID)),
    )


def check_whole(data: bytes | memoryview) -> Identity:
    """Raise ValueError unless ``data`` is a whole Part-10 object: its meta group
    readable and its data elements ending exactly at its end.  Returns who the
    object says it is (read on the way: no second walk)."""
    buf, start, explicit, layout, meta_sop = _dataset(memoryview(data))
    found: dict[int, bytes] = {}
    walk_elements(buf, start, len(buf), explicit, layout, found)
    return _identity(meta_sop, found)


def identity_of(data: bytes | memoryview) -> Identity:
    """Who a Part-10 object says it is, reading only its elements up to the
    Series Instance UID (a few dozen, whatever the object's size); ValueError
    if it is not a Part-10 object or those elements cannot be read."""
    buf, start, explicit, layout, meta_sop = _dataset(memoryview(data))
    found: dict[int, bytes] = {}
    walk_elements(buf, start, len(buf), explicit, layout, found, stop_after=SERIES_INSTANCE_UID)
    return _identity(meta_sop, found)


def identity_problem(ident: Identity, expected: Expected) -> str | None:
    """Why an object is not the one expected, or None.  Its file meta and its
    dataset must name the same SOP Instance UID (a rewritten meta group hides
    another object); every UID and the Patient ID the asker knows must be the
    object's own (an object the server filed elsewhere is not the one listed).
    An image must name its SOP Instance UID, and the study and series the
    asker knows; an absent Patient ID is not compared (nor a non-ASCII one,
    whose character set the walk does not decode)."""
    if ident.sop is None:
        return "its dataset has no SOP Instance UID (0008,0018)"
    if ident.meta_sop is not None and ident.meta_sop != ident.sop:
        return f"its file meta names instance {ident.meta_sop} but its dataset is instance {ident.sop}"
    if expected.instance is not None and ident.sop != expected.instance:
        return f"it is instance {ident.sop}, not {expected.instance}"
    if expected.study is not None and ident.study is not None and ident.study != expected.study:
        return f"it belongs to study {ident.study}, not to study {expected.study} where it was listed"
    if expected.series is not None and ident.series is not None and ident.series != expected.series:
        return f"it belongs to series {ident.series}, not to series {expected.series} where it was listed"
    if expected.study is not None and ident.study is None:
        return f"it names no study (listed in study {expected.study})"
    if expected.series is not None and ident.series is None:
        return f"it names no series (listed in series {expected.series})"
    if (
        expected.patient_id
        and ident.patient_id
        and ident.patient_id.isascii()
        and expected.patient_id.strip() != ident.patient_id
    ):
        listed = expected.patient_id.strip()
        return f"it belongs to patient ID {ident.patient_id!r}, not to {listed!r} whose study lists it"
    return None


def _looks_explicit(mv: memoryview, start: int) -> bool:
    """Whether the dataset at ``start`` begins with an explicit VR (two capital
    letters where an implicit VR element has the low half of its length)."""
    vr = bytes(mv[start + 4 : start + 6])
    return len(vr) == 2 and vr.isalpha() and vr.isupper()


def check_part10(data: bytes, server: str, what: str, expect: str | Expected | None = None) -> str:
    """Return the SOP Instance UID of ``data``; raise ProtocolError if it is not
    a whole Part-10 object, if its file meta and dataset name different
    instances, or if it is not the one expected (an instance UID, or what the
    asker knows of it: :class:`Expected`)."""
    expected = Expected(instance=expect) if isinstance(expect, str) else expect or Expected()
    try:
        uid = part10_sop_instance_uid(data)
    except ValueError as exc:
        raise ProtocolError(f"answer is not a DICOM object: {exc}", server=server, what=what) from None
    if expected.instance is not None and uid != expected.instance:
        raise ProtocolError(f"server sent instance {uid} instead", server=server, what=what)
    try:
        ident = check_whole(data)
    except ValueError as exc:
        raise ProtocolError(f"object {uid} is damaged or incomplete: {exc}", server=server, what=what) from None
    except struct.error as exc:  # pragma: no cover - every read is bounds-checked first
        raise ProtocolError(f"object {uid} is unreadable: {exc}", server=server, what=what) from None
    problem = identity_problem(ident, expected)
    if problem is not None:
        raise ProtocolError(f"object {uid} refused: {problem}", server=server, what=what)
    return uid
