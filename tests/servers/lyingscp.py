"""A DICOM Q/R peer that lies about what it sends: a pynetdicom AE answering
C-GET and C-MOVE (Study Root) from the sample index, each object sent being
a lie (:meth:`~tests.servers.base.SampleIndex.lie`) about the one asked for:
right SOP Instance UID, another study, series and patient.  No real archive
does this on purpose; archives that misfile objects do it by accident, and no
installable peer can be made to.  Listings come from elsewhere (the DICOMweb
test server's QIDO-RS, which tells the truth).

Use::

    with LyingScp(index, destinations={"TROLLEYFS": ("127.0.0.1", port)}) as scp:
        ... scp.host, scp.port, scp.aet ...
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pydicom
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, MRImageStorage
from pynetdicom import AE, evt
from pynetdicom.events import EventHandlerType
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # pynetdicom makes its SOP classes at import time
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from tests.servers.base import SampleIndex
from tests.servers.dcmqrscp import free_port

AET = "LIAR"
PENDING = 0xFF00
MOVE_DESTINATION_UNKNOWN = 0xA801
STORAGE = (CTImageStorage, MRImageStorage)  # what the sample data holds
SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


class LyingScp:
    def __init__(
        self, index: SampleIndex, lie: str = "foreign-content", destinations: dict[str, tuple[str, int]] | None = None
    ) -> None:
        self.index, self.lie = index, lie
        self.destinations = dict(destinations or {})
        self.host, self.port, self.aet = "127.0.0.1", free_port(), AET
        self.sent = 0  # objects sent, by C-GET or C-MOVE
        self._server: Any = None

    def start(self) -> LyingScp:
        ae = AE(ae_title=self.aet)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelMove)
        for cls in STORAGE:  # C-GET: the requestor takes the SCP role for these
            ae.add_supported_context(cls, SYNTAXES, scu_role=True, scp_role=True)
            ae.add_requested_context(cls, SYNTAXES)  # C-MOVE: what we propose to the destination
        handlers: list[EventHandlerType] = [(evt.EVT_C_GET, self._get), (evt.EVT_C_MOVE, self._move)]
        self._server = ae.start_server((self.host, self.port), block=False, evt_handlers=handlers)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> LyingScp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _objects(self, identifier: pydicom.Dataset) -> list[pydicom.Dataset]:
        level = str(identifier.get("QueryRetrieveLevel", ""))
        if level == "IMAGE":
            wanted = identifier.SOPInstanceUID
            uids = [wanted] if isinstance(wanted, str) else list(wanted)
        elif level == "SERIES":
            series = identifier.SeriesInstanceUID
            uids = [u for u, ds in self.index.datasets.items() if ds.SeriesInstanceUID == series]
        else:
            uids = []
        return [pydicom.dcmread(io.BytesIO(self.index.lie(u, self.lie))) for u in uids if u in self.index.datasets]

    def _get(self, event: Any) -> Iterator[Any]:
        objects = self._objects(event.identifier)
        yield len(objects)
        for ds in objects:
            self.sent += 1
            yield PENDING, ds

    def _move(self, event: Any) -> Iterator[Any]:
        name = event.move_destination
        destination = self.destinations.get((name.decode() if isinstance(name, bytes) else name).strip())
        if destination is None:
            yield None, None
            return
        yield destination
        objects = self._objects(event.identifier)
        yield len(objects)
        for ds in objects:
            self.sent += 1
            yield PENDING, ds
