"""A slow C-FIND SCP (pynetdicom): answers a STUDY-level search with ``rows``
studies at a pace it is told, for tests of deadlines that must bound silence,
not progress.

After every ``every`` rows it pauses ``pause`` seconds; with ``gap`` it pauses
that long once, after row ``gap_after`` (a silence longer than a deadline).
A C-CANCEL is honoured (the mount's pre-flight asks for one study).  The
server runs in a thread of the test process, on loopback and a free port.

Use::

    with SlowFind(rows=20_000, every=100, pause=0.05) as scp:
        ... scp.host, scp.port, scp.aet, scp.sent, scp.patient_names() ...
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]

from tests.servers.dcmqrscp import free_port

AET = "SLOWFIND"
UID_ROOT = "1.2.826.0.1.3680043.10.1017"


def study_uid(i: int) -> str:
    return f"{UID_ROOT}.{i + 1}"


def patient_name(i: int) -> str:
    return f"SLOW^P{i:05d}"


class SlowFind:
    """The server; ``sent`` counts the rows sent by the last complete answer,
    ``answers`` the C-FINDs answered to their end (not cancelled)."""

    def __init__(self, rows: int, every: int, pause: float, gap: float = 0.0, gap_after: int = 0) -> None:
        self.rows, self.every, self.pause = rows, every, pause
        self.gap, self.gap_after = gap, gap_after
        self.host, self.port, self.aet = "127.0.0.1", free_port(), AET
        self.sent = 0
        self.answers = 0
        self._lock = threading.Lock()
        self._server: Any = None

    def total_pause(self) -> float:
        """The seconds of pauses in one whole answer (not counting ``gap``)."""
        return (self.rows // self.every) * self.pause

    def longest_pause(self) -> float:
        return max(self.pause, self.gap)

    def patient_names(self) -> list[str]:
        return [patient_name(i) for i in range(self.rows)]

    def _row(self, i: int) -> Dataset:
        # few attributes: pynetdicom spends most of a row's time encoding them
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.StudyInstanceUID = study_uid(i)
        ds.PatientName = patient_name(i)
        ds.StudyDate = "20240102"
        return ds

    def _on_find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        level = str(event.identifier.get("QueryRetrieveLevel", ""))
        if level != "STUDY":  # only studies here
            yield 0x0000, None
            return
        for i in range(self.rows):
            if event.is_cancelled:
                yield 0xFE00, None
                return
            if i and i % self.every == 0:
                time.sleep(self.pause)
            if self.gap and i == self.gap_after:
                time.sleep(self.gap)
            yield 0xFF00, self._row(i)
        with self._lock:
            self.sent = self.rows
            self.answers += 1
        yield 0x0000, None

    def __enter__(self) -> SlowFind:
        ae = AE(ae_title=AET)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        ae.network_timeout = ae.dimse_timeout = ae.acse_timeout = 120
        self._server = ae.start_server(
            (self.host, self.port), block=False, evt_handlers=[(evt.EVT_C_FIND, self._on_find)]
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
