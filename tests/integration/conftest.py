"""Fixtures of the integration tests that use the in-repo test servers: the
sample data's index, a DICOMweb test server (fresh per test: its switches
start off), and a file's SOP Instance UID from where it is in a mount."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.servers.base import SampleIndex
from tests.servers.dicomweb import DicomWebServer


@pytest.fixture(scope="module")
def index(sample_files) -> SampleIndex:
    return SampleIndex(sample_files)


@pytest.fixture
def web(index) -> Iterator[DicomWebServer]:
    with DicomWebServer(index) as server:
        yield server


@pytest.fixture(scope="module")
def uid_of(index: SampleIndex) -> Callable[[Path], str]:
    """A file's SOP Instance UID from its series directory and its name (the
    file's own xattrs would ask for its size, so fetch it)."""
    by_number = {(ds.SeriesInstanceUID, int(ds.InstanceNumber)): uid for uid, ds in index.datasets.items()}

    def uid(path: Path) -> str:
        series = os.getxattr(path.parent, "user.dicom.SeriesInstanceUID").decode()
        return by_number[(series, int(path.stem))]

    return uid


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration is an integration test (needs real
    servers or a real mount): marked here, in one place, whatever its file says."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)
