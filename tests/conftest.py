"""Shared fixtures: a real Orthanc on loopback holding the generated sample
data, and the sample data itself.  Everything started here is stopped here,
also when a test fails."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.servers.dcmqrscp import Dcmqrscp
from trolleyfs.demo import sampledata
from trolleyfs.demo.orthanc import ORTHANC, Orthanc
from trolleyfs.transport.tuning import tune

tune()  # the library settings trolleyfs runs with, as the CLI applies them at start-up


@pytest.fixture(scope="session")
def sample_files() -> list[bytes]:
    return list(sampledata.generate())


def _need(binary: str) -> None:
    if not (shutil.which(binary) or os.path.exists(binary)):
        pytest.fail(f"{binary} is not installed: run `make test`, which installs it")


def _orthanc_with_samples(sample_files, tmp_path_factory, name: str, users: dict[str, str] | None = None):
    _need(ORTHANC)
    server = Orthanc(workdir=str(tmp_path_factory.mktemp(name)), users=users)
    server.start(timeout=120)  # a slow, busy machine may need a while
    try:
        server.upload(sample_files)
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def orthanc(sample_files, tmp_path_factory):
    """An Orthanc with the sample data, without authentication."""
    yield from _orthanc_with_samples(sample_files, tmp_path_factory, "orthanc")


@pytest.fixture(scope="session")
def orthanc_auth(sample_files, tmp_path_factory):
    """An Orthanc with the sample data behind basic auth (alice / secret)."""
    yield from _orthanc_with_samples(sample_files, tmp_path_factory, "orthanc-auth", {"alice": "secret"})


@pytest.fixture(scope="session")
def dcmqrscp(sample_files):
    """dcmtk's dcmqrscp with the sample data: a second real DIMSE peer."""
    _need("dcmqrscp")
    qr = Dcmqrscp(sample_files)
    qr.start()
    try:
        yield qr
    finally:
        qr.cleanup()
