"""What the listing protocols share: the attributes asked for at each level,
the query string of an HTTP search (and how a space in a value is sent), and
rows made unique by their UID (the first answer for an object kept; another
may fill what it lacks)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from pydicom.datadict import dictionary_VR

STUDY_FIELDS = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "PatientName",
    "PatientID",
    "AccessionNumber",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
SERIES_FIELDS = (
    "SeriesInstanceUID",
    "SeriesNumber",
    "Modality",
    "SeriesDescription",
    "NumberOfSeriesRelatedInstances",
)
# SOP class and the two flags: what a de-identified mount needs to leave out, from the listing, the
# instances whose pixels may identify (trolleyfs.deid.LISTING_FIELDS, with the series' Modality)
INSTANCE_FIELDS = (
    "SOPInstanceUID",
    "SOPClassUID",
    "InstanceNumber",
    "BurnedInAnnotation",
    "RecognizableVisualFeatures",
)

# Query values are sent as given: servers such as Orthanc 1.10 do not
# percent-decode ``*`` or ``^`` (``PatientName=TEST%2A`` matches nothing there).
# Only characters that cannot stand in a query string are percent-encoded
# (``/`` can: Orthanc matches ``AccessionNumber=2024/77`` but not ``2024%2F77``);
# a space is sent as ``space`` (``%20``, or a wildcard for servers that do not
# decode it).
_SAFE = "*?^,-._~:/"


def encode_query(params: list[tuple[str, str]], space: str = "%20") -> str:
    """``k=v&k2=v2`` with DICOM wildcards and separators left as they are."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe=_SAFE).replace('%20', space)}" for k, v in params)


# A space in a query value.  Orthanc 1.10 does not decode the query string, so
# ``%20`` matches nothing there, and a space cannot stand unencoded in a URL.
# What is sound everywhere: send a wildcard in its place, where the
# attribute's matching takes wildcards (PS3.4 C.2.2.2.4: the string VRs; not
# dates, times, numbers or UIDs, which hold no spaces anyway), and keep only
# the results whose value has a space there.  The local check takes the
# user's own wildcards as the server does (``*`` any run, ``?`` one
# character), and ignores case (the server has already matched by its own
# case rules: a case-sensitive server returns nothing the check would keep
# wrongly, and a case-insensitive one, as for names, is not contradicted), so
# it only ever drops results whose character in the space's place is not a
# space.  A result that lacks the attribute is kept (nothing to judge by).
AUTO = "auto"
SPACE_WILDCARD = "*"  # what "auto" sends for a space: every server takes ``*``; some take ``?`` literally
WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})


def takes_wildcards(keyword: str) -> bool:
    """Whether matching on ``keyword`` takes ``*`` and ``?`` (by its VR)."""
    try:
        return dictionary_VR(keyword) in WILDCARD_VRS
    except KeyError:
        return False


def _pattern(value: str) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in value)
    return re.compile(body, re.S | re.I)


@dataclass
class SpacedQuery:
    """A study search's filters as sent, and the local checks of the values
    whose spaces went out as wildcards (keyword -> the value as written)."""

    filters: dict[str, str]
    checks: dict[str, re.Pattern[str]] = field(default_factory=dict)

    def keeps(self, row: Mapping[str, str]) -> bool:
        """Whether a result matches each checked value with its spaces as spaces."""
        for keyword, pattern in self.checks.items():
            have = row.get(keyword)
            if have is None:
                continue
            if not any(pattern.fullmatch(v.strip()) for v in (have, *have.split("\\"))):
                return False
        return True


def spaced(filters: Mapping[str, str], space_as: str = AUTO) -> SpacedQuery:
    """The filters to send, spaces replaced as ``space_as`` says: ``"auto"``:
    by :data:`SPACE_WILDCARD` where the attribute takes wildcards (and checked
    here), else ``%20``; ``"?"`` or ``"*"``: by that wildcard (checked here);
    ``"%20"``: sent as spaces (percent-encoded)."""
    out = SpacedQuery(dict(filters))
    if space_as == "%20":
        return out
    for keyword, value in filters.items():
        if " " not in value or (space_as == AUTO and not takes_wildcards(keyword)):
            continue
        out.filters[keyword] = value.replace(" ", SPACE_WILDCARD if space_as == AUTO else space_as)
        out.checks[keyword] = _pattern(value)
    return out


class UniqueRows:
    """The rows of one search by their UID (``key``): the first row of a UID
    is kept, rows without the UID are dropped.  A search answered in pages
    (QIDO-RS), or one row per instance (some C-FIND SCPs), adds its rows as
    they come."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.rows: dict[str, dict[str, str]] = {}

    def add(self, rows: Iterable[dict[str, str]]) -> int:
        """Add rows; the number of UIDs not seen before."""
        new = 0
        for row in rows:
            uid = row.get(self.key, "").strip()
            if uid and uid not in self.rows:
                self.rows[uid] = row
                new += 1
        return new


def unique_rows(rows: Iterable[dict[str, str]], key: str) -> dict[str, dict[str, str]]:
    """Rows by their UID ``key`` (see :class:`UniqueRows`)."""
    unique = UniqueRows(key)
    unique.add(rows)
    return unique.rows


def fill_missing(into: dict[str, str], new: dict[str, str]) -> None:
    """Add to ``into`` what it lacks from another answer for the same object: a
    value fills an absent or empty one, never replaces another."""
    for key, value in new.items():
        if not into.get(key):
            into[key] = value
