"""What the listing protocols share: the attributes asked for at each level,
the query string of an HTTP search, and rows made unique by their UID."""

from __future__ import annotations

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
INSTANCE_FIELDS = ("SOPInstanceUID", "SOPClassUID", "InstanceNumber")

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


def unique_rows(rows: list[dict[str, str]], key: str) -> dict[str, dict[str, str]]:
    """Rows by their UID ``key``, the first one kept, rows without the UID dropped."""
    out: dict[str, dict[str, str]] = {}
    for row in rows:
        uid = row.get(key, "").strip()
        if uid and uid not in out:
            out[uid] = row
    return out
