"""Protocol-neutral data: queries, the objects a search returns, references to
fetch, and the two interfaces every protocol module implements.

Attributes are kept as ``{DICOM keyword: string}``: multi-valued attributes are
joined with a backslash, person names use their DICOM form (``DOE^JOHN``).
Keeping plain strings (not pydicom datasets) lets a listing survive the invalid
values real servers send (a date of ``13495156``, a UID with a space).
"""

from __future__ import annotations

import datetime as _dt
import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class QueryLevel(enum.Enum):
    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


@dataclass(frozen=True)
class Query:
    """A study-level search (the shape of dicomtrolley's ``Query``).

    ``filters`` maps DICOM keywords to match values (wildcards ``*`` and ``?``
    as the server supports them).  ``level`` says how deep the search should
    go in one request where the protocol can (MINT, DICOM-QR); deeper levels
    not returned are resolved lazily later.
    """

    filters: Mapping[str, str] = field(default_factory=dict)
    min_study_date: _dt.date | None = None
    max_study_date: _dt.date | None = None
    include_fields: tuple[str, ...] = ()
    level: QueryLevel = QueryLevel.STUDY
    limit: int | None = None

    def study_date_range(self) -> str | None:
        """The DICOM range matching value for StudyDate, or None."""
        if self.min_study_date is None and self.max_study_date is None:
            return None
        lo = self.min_study_date.strftime("%Y%m%d") if self.min_study_date else ""
        hi = self.max_study_date.strftime("%Y%m%d") if self.max_study_date else ""
        return lo if lo == hi else f"{lo}-{hi}"


@dataclass
class Instance:
    study_uid: str
    series_uid: str
    uid: str
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> InstanceRef:
        return InstanceRef(self.study_uid, self.series_uid, self.uid)


@dataclass
class Series:
    study_uid: str
    uid: str
    attrs: dict[str, str] = field(default_factory=dict)
    instances: list[Instance] | None = None  # filled when the search went this deep

    @property
    def ref(self) -> SeriesRef:
        return SeriesRef(self.study_uid, self.uid)


@dataclass
class Study:
    uid: str
    attrs: dict[str, str] = field(default_factory=dict)
    series: list[Series] | None = None  # filled when the search went this deep


def form_key(instance_uid: str, form: str = "") -> str:
    """The cache key of an instance in a form: its SOP Instance UID as stored,
    ``<uid>@<form>`` in another form (a transfer syntax UID), so that both
    forms of an instance can be cached side by side."""
    return f"{instance_uid}@{form}" if form else instance_uid


@dataclass(frozen=True)
class SeriesRef:
    """A series; ``form`` is "" for its objects as stored, else the transfer
    syntax UID they are wanted in.  ``patient_id`` as for :class:`InstanceRef`."""

    study_uid: str
    series_uid: str
    form: str = ""
    patient_id: str | None = field(default=None, compare=False)

    def key_of(self, instance_uid: str) -> str:
        """The cache key of one of the series' instances in this form."""
        return form_key(instance_uid, self.form)


@dataclass(frozen=True)
class InstanceRef:
    """An instance; ``form`` as for :class:`SeriesRef`.  ``patient_id`` is the
    Patient ID its study was listed under, if known: not part of its identity
    (not compared), only checked against the object's own."""

    study_uid: str
    series_uid: str
    instance_uid: str
    form: str = ""
    patient_id: str | None = field(default=None, compare=False)

    @property
    def series(self) -> SeriesRef:
        return SeriesRef(self.study_uid, self.series_uid, self.form, self.patient_id)

    @property
    def key(self) -> str:
        """The cache key of this instance in this form."""
        return form_key(self.instance_uid, self.form)


class Searcher(Protocol):
    """Lists what a server holds.  Raises :mod:`trolleyfs.errors` exceptions."""

    name: str

    async def find_studies(self, query: Query) -> list[Study]: ...

    async def find_series(self, study_uid: str) -> list[Series]: ...

    async def find_instances(self, study_uid: str, series_uid: str) -> list[Instance]: ...

    async def aclose(self) -> None: ...


class Fetcher(Protocol):
    """Reads Part-10 objects.  Bytes are returned exactly as the server sent them,
    and only when whole: a truncated or non-DICOM answer raises ProtocolError.
    A ref's ``form`` is honoured by :mod:`trolleyfs.read.convert.forms`' fetchers;
    protocol fetchers serve objects as stored (or as they were built to ask)."""

    name: str

    async def fetch_instance(self, ref: InstanceRef) -> bytes: ...

    def fetch_series(self, ref: SeriesRef, instance_uids: list[str]) -> AsyncIterator[tuple[str, bytes]]:
        """Yield ``(SOPInstanceUID, Part-10 bytes)`` for the series' instances as
        they arrive, in any order.  ``instance_uids`` are the ones wanted (for
        protocols that must name them); objects the server does not send are
        simply not yielded."""
        ...

    async def aclose(self) -> None: ...


class MetadataSource(Protocol):
    """A server's WADO-RS ``/metadata``: the headers of a series or a study as
    DICOM JSON instance objects, pixel data left out."""

    name: str

    async def series(self, study_uid: str, series_uid: str) -> list[dict[str, Any]]: ...

    async def study(self, study_uid: str) -> list[dict[str, Any]]: ...
