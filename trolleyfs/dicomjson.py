"""The DICOM JSON model (PS3.18 F.2) as plain ``{keyword: string}`` attributes.

Parsed by hand rather than with ``pydicom.Dataset.from_json`` so that values
real servers send invalid (a date of ``13495156``) never break a listing."""

from __future__ import annotations

from typing import Any

from pydicom.datadict import keyword_for_tag


def _value_text(vr: str, value: Any) -> str:
    if isinstance(value, dict):  # PN: {"Alphabetic": ..., "Ideographic": ...}
        groups = [value.get(k, "") for k in ("Alphabetic", "Ideographic", "Phonetic")]
        while groups and not groups[-1]:
            groups.pop()
        return "=".join(str(g) for g in groups)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


def attrs_from_json(obj: Any) -> dict[str, str]:
    """``{"0020000D": {"vr": "UI", "Value": ["1.2"]}}`` -> ``{"StudyInstanceUID": "1.2"}``.
    Sequences and binary values are left out; unknown (private) tags too."""
    out: dict[str, str] = {}
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object per result, got {type(obj).__name__}")
    for tag, elem in obj.items():
        if not isinstance(elem, dict):
            continue
        vr = str(elem.get("vr", ""))
        if vr == "SQ" or "InlineBinary" in elem or "BulkDataURI" in elem:
            continue
        try:
            kw = keyword_for_tag(int(tag, 16))
        except (TypeError, ValueError):
            continue
        if not kw:
            continue
        values = elem.get("Value")
        if not isinstance(values, list):
            continue
        out[kw] = "\\".join(_value_text(vr, v) for v in values)
    return out
