"""Applying the profile to a pydicom Dataset, in place: every attribute at
every depth, the items of every sequence included.

Besides the table's rows (resolved by :mod:`.table`):

- private attributes (odd groups, their creators included) are removed:
  trolleyfs has no list of private attributes known to be safe, so the Retain
  Safe Private option removes them too;
- an overlay is removed whole (every attribute of its 60xx group, not only
  its Overlay Data and Comments, which the table names), and so is a curve
  (50xx): trolleyfs cannot clean a bitmap, and an overlay without its data
  would make the object invalid;
- group lengths (gggg,0000) and Data Set Trailing Padding go: their values
  would be wrong, or could hide anything;
- the Patient ID and Patient Name become the subject's keyed pseudonyms (the
  table's Z and Z/D allow a dummy; a keyed one lets a researcher group a
  patient's studies); in a nested item, the item's own Patient ID decides;
- a sequence whose action is D or Z keeps its items, as "a dummy value"
  (Z allows one too: a sequence without items would be invalid where it is
  Type 1 or 3, as most are); in them every free text and date the table does
  not list becomes a dummy too (Code Value and Code Meaning, Text Value), and
  the attributes the table lists follow their own rows, so that a dummied
  sequence says nothing.  Inside a sequence whose action is C such texts are
  cleaned (see :mod:`.values`).  Coded strings (CS), UIDs the table does not
  list (SOP Class UIDs) and numbers keep the items valid.

Elements that are kept are not decoded: the walk reads a value only where it
changes it, and never touches pixel data."""

from __future__ import annotations

import enum
from typing import Any

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from .keyed import Keyed, patient_identity
from .table import Act, Profile, table_vr
from .values import STRING_VRS, TEXT_VRS, Subject, string_values

PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
PADDING = 0xFFFCFFFC
UNDEFINED_LENGTH = 0xFFFFFFFF
_ZERO_BYTES = {"OB": 2, "OW": 2, "OF": 4, "OD": 8, "OL": 4, "OV": 8, "UN": 2}
NUMBER_VRS = frozenset({"FL", "FD", "SL", "SS", "UL", "US", "SV", "UV", "AT"})
_DATE_VRS = frozenset({"DA", "DT", "TM"})


class Mode(enum.Enum):
    """How attributes that the table does not list are treated in an item."""

    NORMAL = "kept"
    DUMMY = "dummied"  # inside a sequence whose action is D
    CLEAN = "cleaned"  # inside a sequence whose action is C


def strings(value: Any) -> list[str]:
    """A decoded element value as a list of strings (PN in its DICOM form)."""
    if value is None or value == "":
        return []
    if isinstance(value, bytes):
        return [value.decode("latin-1")]
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value]
    return [str(value)]


class Walker:
    """De-identifies datasets of one subject with one profile and key."""

    def __init__(self, profile: Profile, keyed: Keyed, subject: Subject) -> None:
        self.profile, self.keyed, self.subject = profile, keyed, subject
        self._drop_groups = {
            0x5000: profile.curves is not Act.KEEP,
            0x6000: profile.overlay_data is not Act.KEEP,
        }

    def walk(self, ds: Dataset) -> None:
        """De-identify ``ds`` (a whole object's dataset, without file meta)."""
        self._dataset(ds, Mode.NORMAL, 0)

    def _dropped(self, tag: int) -> bool:
        group = tag >> 16
        if group & 1:
            return self.profile.private is not Act.KEEP
        return tag & 0xFFFF == 0 or tag == PADDING or group == 0x0002 or self._drop_groups.get(group & 0xFF00, False)

    def _dataset(self, ds: Dataset, mode: Mode, depth: int) -> None:
        for key in list(ds.keys()):
            tag = int(key)
            if self._dropped(tag):
                del ds[key]
                continue
            if tag in (PATIENT_ID, PATIENT_NAME):
                self._patient(ds, key, depth)
                continue
            act = self.profile.action(tag)
            vr = self._vr(ds, key)
            if vr == "SQ":
                self._sequence(ds, key, act, mode, depth)
                continue
            if act is None:
                act = self._unlisted(vr, mode)
            if act is not Act.KEEP:
                self._apply(ds, key, act, vr)

    @staticmethod
    def _unlisted(vr: str, mode: Mode) -> Act:
        """The action for an attribute the table does not list, in ``mode``."""
        if mode is Mode.DUMMY and (vr in TEXT_VRS or vr in _DATE_VRS):
            return Act.DUMMY
        if mode is Mode.CLEAN and vr in TEXT_VRS:
            return Act.CLEAN
        return Act.KEEP

    @staticmethod
    def _vr(ds: Dataset, key: BaseTag) -> str:
        elem = ds.get_item(key)
        if not isinstance(elem, RawDataElement):
            return str(elem.VR)
        if elem.VR not in (None, "UN"):
            return str(elem.VR)
        known = table_vr(int(key))
        if known is not None and known != "SQ" and " or " not in known:
            return known
        if known == "SQ" or elem.length == UNDEFINED_LENGTH:
            return str(ds[key].VR)  # converts; an undefined-length UN becomes a sequence
        return known or "UN"

    def _sequence(self, ds: Dataset, key: BaseTag, act: Act | None, mode: Mode, depth: int) -> None:
        if act is Act.REMOVE:
            del ds[key]
            return
        elem = ds[key]
        inner = {Act.EMPTY: Mode.DUMMY, Act.DUMMY: Mode.DUMMY, Act.CLEAN: Mode.CLEAN}.get(act, mode) if act else mode
        for item in elem.value:
            self._dataset(item, inner, depth + 1)

    def _apply(self, ds: Dataset, key: BaseTag, act: Act, vr: str) -> None:
        if act is Act.REMOVE:
            del ds[key]
            return
        if vr in STRING_VRS:
            new = string_values(act, vr, strings(ds[key].value), self.subject, self.keyed.uid)
            if new is None:
                del ds[key]
            else:
                ds[key] = DataElement(key, vr, new[0] if len(new) == 1 else (new or None))
            return
        if act is Act.EMPTY:
            ds[key] = DataElement(key, vr, None)
        elif act is Act.DUMMY and vr in _ZERO_BYTES:
            ds[key] = DataElement(key, vr, bytes(_ZERO_BYTES[vr]))
        elif act is Act.DUMMY and vr in NUMBER_VRS:
            ds[key] = DataElement(key, vr, 0)
        else:  # a UID or cleaning asked of a binary value, or a VR without a dummy
            del ds[key]

    def _patient(self, ds: Dataset, key: BaseTag, depth: int) -> None:
        """Patient ID and Patient Name: the subject's pseudonyms at the top;
        in a nested item, the pseudonyms of the item's own Patient ID, or
        empty where the item has none."""
        if depth == 0:
            pid, name = self.subject.patient_id, self.subject.patient_name
        else:
            original = strings(ds[PATIENT_ID].value) if PATIENT_ID in ds else []
            own = original[0].strip() if original else ""
            identity = patient_identity(own, None) if own else None
            pid = self.keyed.patient_id(identity) if identity else ""
            name = self.keyed.patient_name(identity) if identity else ""
        if int(key) == PATIENT_ID:
            ds[key] = DataElement(key, "LO", pid)
        else:
            ds[key] = DataElement(key, "PN", name)
