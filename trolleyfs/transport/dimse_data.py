"""DICOM datasets as trolleyfs reads and writes them: a C-FIND answer as
``{keyword: string}`` attributes (raw values kept as sent), and the
identifier of a C-FIND or C-GET request."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

log = logging.getLogger("trolleyfs.dimse")

_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN", "SQ", "US or SS", "US or OW", "US or SS or OW", "OB or OW"}
_TEXT_NO_BACKSLASH = {"LT", "ST", "UT"}
_MULTI_DELIMS = {0x5C}
_TEXT_DELIMS = {0x0D, 0x0A, 0x09, 0x0C}
_PN_DELIMS = {0x5C, 0x5E, 0x3D}
_SKIP = {"QueryRetrieveLevel", "SpecificCharacterSet"}


def _encodings(ds: Dataset) -> list[str]:
    """Python codecs for the dataset's SpecificCharacterSet, read from the raw
    element; an unknown or broken value falls back to the default repertoire."""
    elem = ds.get_item(0x00080005)
    if elem is None:
        return ["iso8859"]
    raw = elem.value
    try:
        if isinstance(raw, bytes):
            terms: Any = [t.strip() for t in raw.decode("ascii", "replace").split("\\")]
        elif isinstance(raw, str):
            terms = [raw]
        else:
            terms = [str(t) for t in raw]
        return convert_encodings(terms)
    except Exception:  # pydicom raises LookupError or warns-then-raises on unknown terms
        return ["iso8859"]


def _raw_text(vr: str, value: bytes, encodings: list[str]) -> str:
    delims = _PN_DELIMS if vr == "PN" else (_TEXT_DELIMS if vr in _TEXT_NO_BACKSLASH else _MULTI_DELIMS)
    try:
        text = decode_bytes(value, encodings, delims)
    except Exception:
        text = value.decode("latin-1")
    text = text.rstrip("\x00 ")
    if vr in _TEXT_NO_BACKSLASH:
        return text
    return "\\".join(v.strip("\x00 ") for v in text.split("\\"))


def _value_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(_value_text(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bytes):
        return ""
    return str(value).strip("\x00 ")


def attrs_from_dataset(ds: Dataset) -> dict[str, str]:
    """A C-FIND result as ``{keyword: string}``.

    Text values are decoded from the raw bytes pydicom keeps until first
    access, so an invalid value (a date of ``13495156``, a UID with a space)
    comes through as sent instead of failing the listing.  Person names keep
    their DICOM form (``DOE^JOHN``), multiple values are joined with a
    backslash; sequences, binary values, private and empty elements are left
    out."""
    encodings = _encodings(ds)
    out: dict[str, str] = {}
    for tag in list(ds.keys()):
        if tag.group in (0x0000, 0x0002) or tag.is_private:
            continue
        kw = keyword_for_tag(tag)
        if not kw or kw in _SKIP:
            continue
        try:
            elem = ds.get_item(tag)
            if isinstance(elem, RawDataElement):
                vr = str(elem.VR or dictionary_VR(tag))
                if vr in _BINARY_VRS or not isinstance(elem.value, bytes):
                    continue
                if vr in ("US", "SS", "UL", "SL", "FL", "FD", "AT", "UV", "SV"):
                    text = _value_text(ds[tag].value)  # binary numbers: let pydicom unpack them
                else:
                    text = _raw_text(vr, elem.value, encodings)
            elif isinstance(elem, DataElement):
                if elem.VR in _BINARY_VRS:
                    continue
                text = _value_text(elem.value)
            else:
                continue
        except Exception as exc:  # a value pydicom cannot make sense of: leave it out, keep the rest
            log.debug("skipping unreadable %s: %s", kw, exc)
            continue
        if text:
            out[kw] = text
    return out


def query_dataset(level: str, keys: dict[str, str], return_keys: Sequence[str]) -> Dataset:
    """A C-FIND/C-GET identifier: matching ``keys`` with values, ``return_keys``
    empty.  Keywords pydicom does not know are skipped (config validation keeps
    them out, but a bad one must not stop a listing)."""
    ds = Dataset()
    text = "".join(keys.values())
    if not text.isascii():
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.QueryRetrieveLevel = level
    for kw in dict.fromkeys(return_keys):
        if kw in keys or kw in _SKIP:
            continue
        try:
            vr = dictionary_VR(kw).split(" or ")[0]
        except (KeyError, ValueError):  # pydicom raises either for an unknown keyword
            log.debug("not a DICOM keyword, not asked for: %s", kw)
            continue
        ds.add_new(kw, vr, [] if vr == "SQ" else None)
    for kw, value in keys.items():
        try:
            vr = dictionary_VR(kw).split(" or ")[0]
        except (KeyError, ValueError):
            log.debug("not a DICOM keyword, not matched on: %s", kw)
            continue
        ds.add_new(kw, vr, value)
    return ds


def retrieve_identifier(level: str, study_uid: str, series_uid: str, instance_uid: str | None = None) -> Dataset:
    """The identifier of a C-GET or C-MOVE at SERIES or IMAGE level."""
    keys = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid}
    if instance_uid is not None:
        keys["SOPInstanceUID"] = instance_uid
    return query_dataset(level, keys, ())
