"""DICOM Query/Retrieve C-FIND (PS3.4 C.4.1) with the Study Root model.

Searches are hierarchical: a SERIES query names its study, an IMAGE query its
study and series (strict SCPs such as dcmqrscp refuse identifiers without the
unique keys of the levels above).  ``Query.level`` deeper than STUDY is
answered eagerly, over the same association: after the study C-FIND, one
C-FIND per study for its series (and one per series for its instances), each
with its own deadline, so ``Study.series`` / ``Series.instances`` come back
filled and the tree needs no further round trips.

A deadline bounds silence, not the answer: a C-FIND goes on while its rows
keep arriving, however many there are, and fails once the peer says nothing
for ``timeout`` (see :class:`~trolleyfs.transport.dimse.Association`).

Every failure is an error, never an empty listing: a final status other than
success, a rejected or aborted association, no answer in time."""

from __future__ import annotations

import logging
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID

from ..endpoints import DicomQrEndpoint, Server
from ..errors import ProtocolError
from ..model import Instance, Query, QueryLevel, Series, Study
from ..transport.dimse import Association, with_dimse_retries
from ..transport.dimse_data import attrs_from_dataset, query_dataset
from ..transport.dimse_errors import PENDING, status_error
from .fields import INSTANCE_FIELDS, SERIES_FIELDS, STUDY_FIELDS, unique_rows

log = logging.getLogger("trolleyfs.dimse")

FIND_MODEL = UID("1.2.840.10008.5.1.4.1.2.2.1")  # Study Root Query/Retrieve Information Model - FIND
FIND_CONTEXTS: list[tuple[str, tuple[str, ...]]] = [(FIND_MODEL, ())]  # () = pynetdicom's default transfer syntaxes
_FIND_MSG_ID = 1
_LEVEL_KEYS = {"STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}


def _find_blocking(
    assoc: Any, identifier: Dataset, limit: int | None, key: str, server: str, what: str
) -> list[dict[str, str]]:
    """One C-FIND (in a worker thread): the results as attribute dicts.

    With a ``limit`` a C-CANCEL is sent once enough distinct results (by their
    UID ``key``) came in: some SCPs (pynetdicom's qrscp) answer a STUDY-level
    search with one row per stored instance.  Results still arriving are
    dropped and the cancel status (0xFE00) then counts as success."""
    rows: list[dict[str, str]] = []
    distinct: set[str] = set()
    cancelled = False
    for status, ident in assoc.send_c_find(identifier, FIND_MODEL, msg_id=_FIND_MSG_ID):
        code = status.get("Status")
        if code in PENDING:
            if ident is not None and not cancelled:
                row = attrs_from_dataset(ident)
                rows.append(row)
                distinct.add(row.get(key, "").strip())
                distinct.discard("")
            if limit is not None and len(distinct) >= limit and not cancelled:
                cancelled = True
                _send_cancel(assoc)
            continue
        if code == 0x0000 or (code == 0xFE00 and cancelled):
            return rows
        raise status_error(status, server, what, "C-FIND")
    raise ProtocolError("C-FIND ended without a final status", server=server, what=what)


def _send_cancel(assoc: Any) -> None:
    for cx in assoc.accepted_contexts:
        if cx.abstract_syntax == FIND_MODEL:
            assoc.send_c_cancel(_FIND_MSG_ID, cx.context_id)
            return


class DicomQR:
    """A :class:`~trolleyfs.model.Searcher` over C-FIND."""

    def __init__(self, server: Server, endpoint: DicomQrEndpoint) -> None:
        self.server, self.ep = server, endpoint
        self.name = server.name

    async def aclose(self) -> None:
        pass

    def _association(self, what: str) -> Association:
        return Association(self.server, self.ep, what, FIND_CONTEXTS, charge_pdus=True)

    async def _find(
        self,
        a: Association,
        level: str,
        keys: dict[str, str],
        fields: tuple[str, ...],
        what: str,
        limit: int | None = None,
    ) -> list[dict[str, str]]:
        identifier = query_dataset(level, keys, fields)
        return await a.call(_find_blocking, identifier, limit, _LEVEL_KEYS[level], self.name, what)

    # -- the three levels, on an open association

    @staticmethod
    def study_identifier(query: Query) -> Dataset:
        """The C-FIND identifier of a study search."""
        keys = dict(query.filters)
        date_range = query.study_date_range()
        if date_range:
            keys["StudyDate"] = date_range
        return query_dataset("STUDY", keys, ("StudyInstanceUID", *STUDY_FIELDS, *query.include_fields))

    async def _studies(self, a: Association, query: Query) -> list[Study]:
        what = "study search"
        identifier = self.study_identifier(query)
        rows = await a.call(_find_blocking, identifier, query.limit, _LEVEL_KEYS["STUDY"], self.name, what)
        studies = [Study(uid, row) for uid, row in unique_rows(rows, "StudyInstanceUID").items()]
        return studies if query.limit is None else studies[: query.limit]

    async def _series(self, a: Association, study_uid: str) -> list[Series]:
        keys = {"StudyInstanceUID": study_uid}
        rows = await self._find(a, "SERIES", keys, SERIES_FIELDS, f"series of study {study_uid}")
        return [Series(study_uid, uid, row) for uid, row in unique_rows(rows, "SeriesInstanceUID").items()]

    async def _instances(self, a: Association, study_uid: str, series_uid: str) -> list[Instance]:
        keys = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid}
        rows = await self._find(a, "IMAGE", keys, INSTANCE_FIELDS, f"instances of series {series_uid}")
        return [Instance(study_uid, series_uid, uid, row) for uid, row in unique_rows(rows, "SOPInstanceUID").items()]

    # -- the Searcher interface

    async def find_studies(self, query: Query) -> list[Study]:
        async def attempt() -> list[Study]:
            async with self._association("study search") as a:
                studies = await self._studies(a, query)
                if query.level is not QueryLevel.STUDY:
                    for study in studies:
                        study.series = await self._series(a, study.uid)
                        if query.level is QueryLevel.INSTANCE:
                            for series in study.series:
                                series.instances = await self._instances(a, study.uid, series.uid)
                return studies

        return await with_dimse_retries(self.server, attempt, "study search")

    async def find_series(self, study_uid: str) -> list[Series]:
        what = f"series of study {study_uid}"

        async def attempt() -> list[Series]:
            async with self._association(what) as a:
                return await self._series(a, study_uid)

        return await with_dimse_retries(self.server, attempt, what)

    async def find_instances(self, study_uid: str, series_uid: str) -> list[Instance]:
        what = f"instances of series {series_uid}"

        async def attempt() -> list[Instance]:
            async with self._association(what) as a:
                return await self._instances(a, study_uid, series_uid)

        return await with_dimse_retries(self.server, attempt, what)
