"""The attributes that record what was done (PS3.15 E.1.1 and PS3.3 C.7.1.1):
Patient Identity Removed = YES, De-identification Method (text), the
De-identification Method Code Sequence (CID 7050: 113100 and the codes of
the options applied) and Longitudinal Temporal Information Modified
(MODIFIED when dates were shifted, UNMODIFIED when kept, REMOVED otherwise).

The Retain Safe Private option is accepted but not claimed: trolleyfs keeps
no private attribute (it has no list of safe ones), so it records only what
it did."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from pydicom.dataset import Dataset

from .keyed import ENGINE_VERSION
from .options import Option, profile_code
from .table import DATA_FILE

_LO_MAX = 64


@cache
def edition() -> str:
    """The edition of the standard the shipped table is from ("DICOM Standard 2024b")."""
    text = resources.files(__package__).joinpath("data", DATA_FILE).read_text(encoding="utf-8")
    return str(json.loads(text)["about"]["edition"])


def applied(options: frozenset[Option]) -> list[Option]:
    """The options recorded as applied, in the order of their codes."""
    return sorted((o for o in options if o is not Option.RETAIN_SAFE_PRIVATE), key=lambda o: o.code.value)


def temporal(options: frozenset[Option]) -> str:
    """The value of Longitudinal Temporal Information Modified."""
    if Option.RETAIN_MODIFIED_DATES in options:
        return "MODIFIED"
    if Option.RETAIN_FULL_DATES in options:
        return "UNMODIFIED"
    return "REMOVED"


def method_text(options: frozenset[Option]) -> list[str]:
    """The values of De-identification Method (each at most 64 characters)."""
    texts = [profile_code().meaning, *(o.code.meaning for o in applied(options))]
    texts.append(f"trolleyfs {ENGINE_VERSION}, PS3.15 E.1-1 of {edition()}")
    texts.append("private attributes, overlays and curves removed")
    return [t[:_LO_MAX] for t in texts]


def record(ds: Dataset, options: frozenset[Option]) -> None:
    """Set the attributes that record the de-identification on ``ds``."""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = method_text(options)
    items = []
    for code in (profile_code(), *(o.code for o in applied(options))):
        item = Dataset()
        item.CodeValue = code.value
        item.CodingSchemeDesignator = code.scheme_designator
        item.CodeMeaning = code.meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = items
    ds.LongitudinalTemporalInformationModified = temporal(options)
