"""The DICOM JSON model (PS3.18 F.2) as plain ``{keyword: string}`` attributes.

Parsed by hand rather than with ``pydicom.Dataset.from_json`` so that values
real servers send invalid (a date of ``13495156``) never break a listing.  An
attribute the server got wrong (a key that is not eight hex digits, a value of
the wrong shape) is left out and reported to the caller, which logs it once:
one bad attribute never costs the study."""

from __future__ import annotations

import re
from typing import Any

from pydicom.datadict import keyword_for_tag

_TAG = re.compile(r"[0-9A-Fa-f]{8}")
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")

PIXEL_TAGS = frozenset({"7FE00008", "7FE00009", "7FE00010"})  # float, double float and (integer) pixel data


class _Malformed(ValueError):
    """A value whose shape the DICOM JSON model does not allow."""


def _value_text(vr: str, value: Any) -> str:
    if isinstance(value, dict):  # PN: {"Alphabetic": ..., "Ideographic": ...}
        groups = [value.get(k) or "" for k in _PN_GROUPS]
        if not all(isinstance(g, str) for g in groups):
            raise _Malformed("a person name group that is not a string")
        while groups and not groups[-1]:
            groups.pop()
        return "=".join(groups)
    if isinstance(value, list):
        raise _Malformed("a list inside a value")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


def attrs_from_json(obj: Any, problems: list[str] | None = None) -> dict[str, str]:
    """``{"0020000D": {"vr": "UI", "Value": ["1.2"]}}`` -> ``{"StudyInstanceUID": "1.2"}``.
    Sequences and binary values are left out; unknown (private) tags too.
    Attributes that are malformed are left out and described in ``problems``."""
    out: dict[str, str] = {}
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object per result, got {type(obj).__name__}")
    for tag, elem in obj.items():
        if not _TAG.fullmatch(tag):
            if problems is not None:
                problems.append(f"key {tag[:40]!r} is not a tag")
            continue
        if not isinstance(elem, dict):
            if problems is not None:
                problems.append(f"{tag}: not a JSON object")
            continue
        vr = str(elem.get("vr", ""))
        if vr == "SQ" or "InlineBinary" in elem or "BulkDataURI" in elem:
            continue
        kw = keyword_for_tag(int(tag, 16))
        if not kw:
            continue
        values = elem.get("Value")
        if not isinstance(values, list):
            continue
        try:
            out[kw] = "\\".join(_value_text(vr, v) for v in values)
        except _Malformed as exc:
            if problems is not None:
                problems.append(f"{tag} ({kw}): {exc}")
    return out
