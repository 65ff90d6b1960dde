"""What an action does to a value given as strings: the one place that
decides the text of a dummy, a shifted date, a cleaned descriptor or a new
UID, used both for the attributes of an object (:mod:`.walk`) and for those
of a listing (:mod:`.listing`), so that both say the same.

A :class:`Subject` is the patient an object or a study belongs to, as far as
the rules need it: the identity that pseudonyms and the date shift are keyed
by, and the identifiers (name parts, Patient ID, Accession Number) that
cleaning takes out of free text.  Both an object and its study's listing row
hold these, so both clean and shift alike.

Cleaning (action C on a text) is what trolleyfs can do without reading the
text's meaning: every occurrence of the subject's name parts, Patient ID and
Accession Number (as whole words, in any case) becomes ``*``.  Other
identifying words stay; that is why C only happens where the config chose a
clean or retain option.  Dates shift back by whole days, so times of day
(TM) are kept as they are and a DT keeps its time and offset."""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable
from dataclasses import dataclass

from .keyed import Keyed, patient_identity
from .table import Act

DUMMY_TEXT = "DEIDENTIFIED"
MASK = "*"
_DUMMIES = {
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "AS": "000D",
    "DS": "0",
    "IS": "0",
    "UR": "urn:x-trolleyfs:deidentified",
}
STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
# free text: dummied inside a dummied sequence, cleaned inside a cleaned one
TEXT_VRS = frozenset({"AE", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
SINGLE_VALUED = frozenset({"LT", "ST", "UT", "UR"})  # a backslash is part of the text
_MIN_TOKEN = 2


def dummy_text(vr: str) -> str:
    """The dummy value of a string VR (D): valid for the VR, the same every time."""
    return _DUMMIES.get(vr, DUMMY_TEXT)


def _shift_day(day: _dt.date, days: int) -> _dt.date:
    try:
        return day - _dt.timedelta(days=days)
    except OverflowError:
        return _dt.date(1, 1, 1)


def shift_date(value: str, days: int) -> str:
    """A DA value moved back ``days`` days; the dummy date if it is no date."""
    text = value.strip()
    digits = text.replace(".", "") if len(text) == 10 and text[4] == "." and text[7] == "." else text  # ACR-NEMA
    try:
        day = _dt.datetime.strptime(digits, "%Y%m%d").date()
    except ValueError:
        return dummy_text("DA")
    moved = _shift_day(day, days)
    return f"{moved.year:04d}{moved.month:02d}{moved.day:02d}"


_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(.*)$")


def shift_datetime(value: str, days: int) -> str:
    """A DT value moved back ``days`` days, at its own precision (a year
    alone moves as its first day does); its time and offset are kept."""
    text = value.strip()
    m = _DT.match(text)
    if not m:
        return dummy_text("DT")
    year, month, day, rest = m.groups()
    if day is None and rest:
        return dummy_text("DT")
    try:
        when = _dt.date(int(year), int(month or 1), int(day or 1))
    except ValueError:
        return dummy_text("DT")
    moved = _shift_day(when, days)
    head = f"{moved.year:04d}{moved.month:02d}{moved.day:02d}"
    return head[: 4 + (2 if month else 0) + (2 if day else 0)] + rest


@dataclass(frozen=True)
class Subject:
    """The patient of an object or a study: identity, pseudonyms, date shift
    and the pattern of identifiers that cleaning masks."""

    identity: str
    patient_id: str
    patient_name: str
    shift_days: int
    mask: re.Pattern[str] | None

    @classmethod
    def of(
        cls,
        keyed: Keyed,
        *,
        patient_id: str | None,
        study_uid: str | None,
        patient_name: str | None,
        accession: str | None,
    ) -> Subject:
        identity = patient_identity(patient_id, study_uid)
        words = re.split(r"[\^=\s]+", patient_name or "")
        words += [(patient_id or "").strip(), (accession or "").strip()]
        tokens = sorted({w for w in words if len(w) >= _MIN_TOKEN}, key=lambda w: (-len(w), w))
        mask = None
        if tokens:
            alternatives = "|".join(re.escape(t) for t in tokens)
            mask = re.compile(rf"(?<![0-9A-Za-z])(?:{alternatives})(?![0-9A-Za-z])", re.IGNORECASE)
        return cls(identity, keyed.patient_id(identity), keyed.patient_name(identity), keyed.shift_days(identity), mask)

    def clean(self, text: str) -> str:
        """``text`` with the subject's name parts, ID and accession number masked."""
        return self.mask.sub(MASK, text) if self.mask else text


def clean_value(vr: str, value: str, subject: Subject) -> str | None:
    """One value under C: a date shifted, a time kept, a text cleaned; None
    for a VR that cannot be cleaned (the attribute is then removed)."""
    if vr == "DA":
        return shift_date(value, subject.shift_days)
    if vr == "DT":
        return shift_datetime(value, subject.shift_days)
    if vr == "TM":
        return value
    if vr in TEXT_VRS or vr == "CS":
        return subject.clean(value)
    return None


def string_values(
    act: Act, vr: str, values: list[str], subject: Subject, uid: Callable[[str], str]
) -> list[str] | None:
    """The new values of a string attribute under ``act``; None to remove it.
    An empty attribute stays empty (D and U have nothing to replace)."""
    present = [v for v in values if v.strip().strip("\0")]
    if act is Act.KEEP:
        return values
    if act is Act.REMOVE:
        return None
    if act is Act.EMPTY or not present:
        return []
    if act is Act.UID or (act is Act.DUMMY and vr == "UI"):
        return [uid(v) for v in present]
    if act is Act.DUMMY:
        return [dummy_text(vr)]
    cleaned = [clean_value(vr, v, subject) for v in values]
    if any(c is None for c in cleaned):
        return None
    return [c for c in cleaned if c is not None]
