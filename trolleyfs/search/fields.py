"""What the listing protocols share: the attributes asked for at each level,
the query string of an HTTP search, and rows made unique by their UID
(the first answer for an object kept; another may fill what it lacks)."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

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
