"""The studies the de-identified mount tests serve from a real Orthanc: two
patients whose objects hold an identifying value in every attribute of PS3.15
Table E.1-1 that pydicom knows (:mod:`tests.identifying`: nested sequences,
private elements at every depth, overlays and curves, names and IDs in free
text, other patient IDs), in UTF-8 and Latin-1, CT and MR; and two series
whose pixels may identify the patient (Burned In Annotation YES, and a
Secondary Capture that does not say NO), which a de-identified mount must
leave out.  Everything put in is recorded in each study's ``secrets``."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from functools import cached_property

from pydicom import dcmread
from pydicom.uid import UID, SecondaryCaptureImageStorage

from tests.identifying import ROOT, Secrets, Study, leaks, make_series, plain_bytes

KEY = bytes(range(100, 132))
OTHER_KEY = bytes(range(1, 33))
MODIFIED = "retain-longitudinal-temporal-information-modified-dates"
NIFTI_SERIES = ("B", 1)  # the series dcm2niix converts (enough slices for a volume)


# Every text put in holds "MK" (upper case; lower case in URLs); every UID starts with the data's root;
# dates are 8 digits of 1987 not inside a number or a UID; times are 6 digits, a dot and 6 digits.
_TEXT_HINTS = tuple(h.encode(e) for h in ("MK", "mk") for e in ("ascii", "utf-16-le", "utf-16-be"))
_ROOTS = tuple(ROOT.encode(e) for e in ("ascii", "utf-16-le", "utf-16-be"))
_DATES = re.compile(rb"(?<![0-9.])(1987[0-9]{4})")
_TIMES = re.compile(rb"(?<![0-9])([0-9]{6}\.[0-9]{6})")


def changed(data: bytes, **changes: str) -> bytes:
    """``data`` with some top-level attributes set (SOPClassUID in the file meta too)."""
    ds = dcmread(io.BytesIO(data))
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    if "SOPClassUID" in changes:
        ds.file_meta.MediaStorageSOPClassUID = UID(changes["SOPClassUID"])
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@dataclass
class Cohort:
    studies: list[Study]
    series: dict[tuple[str, int], list[bytes]] = field(default_factory=dict)  # (study letter, series number)
    left_out: set[tuple[str, int]] = field(default_factory=set)  # series that must not be served

    @property
    def files(self) -> list[bytes]:
        return [f for files in self.series.values() for f in files]

    def served(self) -> dict[tuple[str, int], list[bytes]]:
        return {k: v for k, v in self.series.items() if k not in self.left_out}

    def study(self, letter: str) -> Study:
        return next(s for s in self.studies if s.letter == letter)

    @cached_property
    def all_secrets(self) -> Secrets:
        return self.secrets()

    def secrets(self) -> Secrets:
        """Every identifying value of every study."""
        out = Secrets()
        for s in self.studies:
            out.texts |= s.secrets.texts
            out.uids |= s.secrets.uids
            out.dates |= s.secrets.dates
            out.times |= s.secrets.times
            out.blobs |= s.secrets.blobs
        return out

    def found_in(self, data: bytes, *, times: bool = True) -> list[str]:
        """Every identifying value found in ``data`` (texts in every encoding
        that spells them, also in lower case; UIDs; dates; times unless the
        option that keeps them is chosen).  Fast where nothing is there: the
        texts are looked for one by one only where "MK" occurs."""
        data = plain_bytes(data) if data[128:132] == b"DICM" else data
        secrets = self.all_secrets
        found = [f"a UID under {ROOT}" for r in _ROOTS if r in data]
        if any(h in data for h in _TEXT_HINTS):
            found += leaks(data, secrets, dates=False, times=False)
            found += [f"{t.lower()!r} (lower case)" for t in secrets.texts if t.lower().encode() in data]
        found += [f"date {m.decode()}" for m in _DATES.findall(data) if m.decode() in secrets.dates]
        if times:
            found += [f"time {m.decode()}" for m in _TIMES.findall(data) if m.decode() in secrets.times]
        return found


def make_cohort() -> Cohort:
    a = Study("A", 301, charset="ISO_IR 192")
    b = Study("B", 302, charset="ISO_IR 100")
    cohort = Cohort([a, b])
    cohort.series[("A", 1)] = make_series(a, "CT", 1, 3)
    cohort.series[("A", 2)] = make_series(a, "MR", 2, 3)
    cohort.series[("B", 1)] = make_series(b, "CT", 1, 10, size=96)
    cohort.series[("B", 3)] = [changed(f, BurnedInAnnotation="YES") for f in make_series(b, "CT", 3, 2)]
    screens = make_series(b, "CT", 4, 2)
    cohort.series[("B", 4)] = [changed(f, SOPClassUID=SecondaryCaptureImageStorage, Modality="OT") for f in screens]
    cohort.left_out = {("B", 3), ("B", 4)}
    return cohort
