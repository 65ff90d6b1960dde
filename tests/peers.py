"""The session's real DICOM peers (Orthanc's DICOM port, dcmtk's dcmqrscp) as
tests address them; the ``peer`` fixture in tests/conftest.py gives each in turn."""

from __future__ import annotations

from dataclasses import dataclass

from trolleyfs.endpoints import Server
from trolleyfs.protocols import endpoint


@dataclass(frozen=True)
class Peer:
    kind: str  # orthanc | dcmqrscp
    host: str
    port: int
    aet: str

    def server(
        self, *, called_aet: str | None = None, port: int | None = None, timeout: float = 10.0, retries: int = 0
    ) -> Server:
        """A DICOM-QR + C-GET server config for this peer."""
        ep = endpoint("dicom-qr", host=self.host, port=port or self.port, called_aet=called_aet or self.aet)
        get = endpoint("c-get", host=self.host, port=port or self.port, called_aet=called_aet or self.aet)
        return Server(f"{self.kind}-qr", ep, get, timeout=timeout, retries=retries, max_connections=4)
