"""Reading a Part-10 object for de-identification and writing it back, in
the transfer syntax it came in, with pixel data untouched.

pydicom reads the object without decoding pixel data (Pixel Data is bytes
to it, and encapsulated frames stay as they are), and writes it back in the
object's own transfer syntax: explicit or implicit VR, little or big endian,
deflated, or any compressed syntax; the pixel data's bytes are the same.

The output is deterministic: the 128-byte preamble is zeros (it may hold
anything, a TIFF header or a name), and the file meta information is built
anew with only what PS3.10 asks for: the SOP class, the new SOP Instance
UID, the transfer syntax and trolleyfs's implementation UID and version name
(no Source/Sending/Receiving AE Title, no private information), so nothing
about the machine or the run enters the bytes."""

from __future__ import annotations

import io

from pydicom import dcmread, dcmwrite
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from .errors import NotPart10

PREAMBLE = bytes(128)
# 2.25 + the integer of uuid5(NAMESPACE_URL, "https://trolleyfs/deid"): trolleyfs's de-identifier
IMPLEMENTATION_UID = "2.25.282789832584893515854450932012518316948"
IMPLEMENTATION_NAME = "TROLLEYFS_DEID"
UNDEFINED_LENGTH = 0xFFFFFFFF
# a Sequence Delimitation Item, (FFFE,E0DD) with length 0, little and big endian
_DELIMITERS = (b"\xfe\xff\xdd\xe0\x00\x00\x00\x00", b"\xff\xfe\xe0\xdd\x00\x00\x00\x00")


def read(data: bytes) -> Dataset:
    """The dataset (with its file meta) of a Part-10 object; NotPart10 if
    ``data`` is not one."""
    if len(data) < 132 or data[128:132] != b"DICM":
        raise NotPart10("not a Part-10 object: no 'DICM' marker at byte 128")
    try:
        ds = dcmread(io.BytesIO(data))
    except Exception as exc:  # pydicom raises many kinds on broken input
        raise NotPart10(f"not a readable Part-10 object: {type(exc).__name__}: {exc}") from None
    if not ds.file_meta.get("TransferSyntaxUID"):
        raise NotPart10("not a Part-10 object: its file meta has no Transfer Syntax UID")
    if ds.file_meta.TransferSyntaxUID != DeflatedExplicitVRLittleEndian:  # positions are in the inflated stream
        _check_whole(ds, data)
    return ds


def _check_whole(ds: Dataset, data: bytes) -> None:
    """NotPart10 unless the data set's last element ends where ``data`` does:
    pydicom stops quietly at a cut inside an element, and such an object
    must not pass for a whole one."""
    keys = list(ds.keys())
    if not keys:
        raise NotPart10("not a Part-10 object: no data set after the file meta")
    last = ds.get_item(keys[-1])
    if not isinstance(last, RawDataElement):
        return
    whole = data[-8:] in _DELIMITERS if last.length == UNDEFINED_LENGTH else last.value_tell + last.length == len(data)
    if not whole:
        raise NotPart10(f"not a whole Part-10 object: it is cut or followed by other bytes after {last.tag}")


def file_meta(sop_class: str, sop_instance: str, transfer_syntax: str) -> FileMetaDataset:
    """The file meta information of a de-identified object."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_NAME
    return meta


def write(ds: Dataset) -> bytes:
    """``ds`` (whose file meta is set) as a Part-10 object."""
    ds.preamble = PREAMBLE
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()
