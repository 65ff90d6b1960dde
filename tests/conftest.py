"""Shared fixtures: a real Orthanc on loopback holding the generated sample
data, and the sample data itself.  Everything started here is stopped here,
also when a test fails."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.peers import Peer
from tests.servers.dcmqrscp import Dcmqrscp
from trolleyfs.demo import sampledata
from trolleyfs.demo.orthanc import ORTHANC, Orthanc, free_port
from trolleyfs.transport.tuning import tune

tune()  # the library settings trolleyfs runs with, as the CLI applies them at start-up


@pytest.fixture(scope="session", autouse=True)
def _state_home(tmp_path_factory) -> None:
    """Mounts in the background log to a file under $XDG_STATE_HOME where
    there is no syslog: the tests' own, never the machine's /var/log."""
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="session")
def sample_files() -> list[bytes]:
    return list(sampledata.generate())


def _need(binary: str) -> None:
    if not (shutil.which(binary) or os.path.exists(binary)):
        pytest.fail(f"{binary} is not installed: run `make test`, which installs it")


# The C-MOVE destination the session's DICOM peers know: trolleyfs's storage
# receiver listens as this AE title on this loopback port in the C-MOVE tests.
MOVE_AET = "TROLLEYFS"


@pytest.fixture(scope="session")
def move_port() -> int:
    """The port the peers send C-MOVE objects to (free when the session began)."""
    return free_port()


def _orthanc_with_samples(
    sample_files, tmp_path_factory, name: str, move_port: int, users: dict[str, str] | None = None
):
    _need(ORTHANC)
    server = Orthanc(
        workdir=str(tmp_path_factory.mktemp(name)),
        users=users,
        modalities={"trolleyfs": (MOVE_AET, "127.0.0.1", move_port)},
    )
    server.start(timeout=120)  # a slow, busy machine may need a while
    try:
        server.upload(sample_files)
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def orthanc(sample_files, tmp_path_factory, move_port):
    """An Orthanc with the sample data, without authentication; it knows the
    C-MOVE destination TROLLEYFS at ``move_port``."""
    yield from _orthanc_with_samples(sample_files, tmp_path_factory, "orthanc", move_port)


@pytest.fixture(scope="session")
def orthanc_auth(sample_files, tmp_path_factory, move_port):
    """An Orthanc with the sample data behind basic auth (alice / secret)."""
    yield from _orthanc_with_samples(sample_files, tmp_path_factory, "orthanc-auth", move_port, {"alice": "secret"})


@pytest.fixture(scope="session")
def dcmqrscp(sample_files, move_port):
    """dcmtk's dcmqrscp with the sample data: a second real DIMSE peer; it knows
    the C-MOVE destination TROLLEYFS at ``move_port``."""
    _need("dcmqrscp")
    qr = Dcmqrscp(sample_files, move_destinations={"trolleyfs": (MOVE_AET, "127.0.0.1", move_port)})
    qr.start()
    try:
        yield qr
    finally:
        qr.cleanup()


@pytest.fixture(params=["orthanc", "dcmqrscp"])
def peer(request) -> Peer:
    """Each real DICOM peer of the session in turn."""
    if request.param == "orthanc":
        o = request.getfixturevalue("orthanc")
        return Peer("orthanc", "127.0.0.1", o.dicom_port, o.aet)
    q = request.getfixturevalue("dcmqrscp")
    return Peer("dcmqrscp", q.host, q.port, q.aet)
