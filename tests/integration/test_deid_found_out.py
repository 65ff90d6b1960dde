"""A de-identified mount over a server whose instance listings do not carry
the burned-in flags (the DICOMweb test server answers SOP Class and Instance
Number only) and over a server that lies about what it sends, through real
mounts:

- an instance flagged Burned In Annotation YES is listed (nothing said
  otherwise), its read fails with ENOENT, and it is gone from the next
  listing; a series left with nothing is gone from its study;
- an original that is not the instance its path names (of another study,
  series and patient) is refused before it is de-identified (EIO, the log
  says why), and nothing of it is kept: once the server tells the truth
  every file is its original de-identified."""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.deidcohort import KEY, changed
from tests.identifying import Study, make_series
from tests.integration.brokenweb import config, no_traceback, qido, read_errno, wado
from tests.mounting import Mount, mounted
from tests.servers.base import SampleIndex
from tests.servers.dicomweb import DicomWebServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def study() -> Study:
    return Study("C", 303)


@pytest.fixture(scope="module")
def files(study: Study) -> list[bytes]:
    """Series 1: three CT slices, the second flagged Burned In Annotation YES;
    series 2: two CT slices, both flagged."""
    one = make_series(study, "CT", 1, 3, every_attribute=False)
    one[1] = changed(one[1], BurnedInAnnotation="YES")
    two = [changed(f, BurnedInAnnotation="YES") for f in make_series(study, "CT", 2, 2, every_attribute=False)]
    return one + two


@pytest.fixture
def web(files: list[bytes]) -> Iterator[DicomWebServer]:
    server = DicomWebServer(SampleIndex(files))
    with server:
        yield server


def deid_mount(web: DicomWebServer, tmp_path: Path) -> AbstractContextManager[Mount]:
    key = tmp_path / "deid.key"
    key.write_bytes(KEY)
    key.chmod(0o600)
    extra = f'[deidentify]\nkey_file = "{key}"\n'
    return mounted(config(qido(web), wado(web), extra=extra), tmp_path)


def only(path: Path) -> Path:
    (child,) = path.iterdir()
    return child


def test_an_instance_found_out_when_read_is_gone_from_the_next_listing(web, study, tmp_path) -> None:
    with deid_mount(web, tmp_path) as m:
        study_dir = only(m.path / "all")
        series = sorted(study_dir.iterdir())
        assert [s.name for s in series] == ["001 CT", "002 CT"]  # the listing does not say what they hold
        first = sorted(series[0].iterdir())
        assert [f.name for f in first] == ["0001.dcm", "0002.dcm", "0003.dcm"]
        assert read_errno(first[1]) == errno.ENOENT
        assert sorted(os.listdir(series[0])) == ["0001.dcm", "0003.dcm"]
        for f in (first[0], first[2]):
            ds = dcmread(io.BytesIO(f.read_bytes()))
            assert ds.PatientIdentityRemoved == "YES" and ds.PatientID != study.patient_id
        for f in sorted(series[1].iterdir()):
            assert read_errno(f) == errno.ENOENT, f
        assert sorted(os.listdir(study_dir)) == ["001 CT"]
        assert m.stats()["views"]["deid_left_out"] >= 3
        assert "left out of the de-identified mount: Burned In Annotation is YES" in m.log_text()
        no_traceback(m)


def test_an_original_that_is_not_the_instance_of_its_path_is_refused(web, files, tmp_path) -> None:
    web.lie = "foreign-content"
    with deid_mount(web, tmp_path) as m:
        first = sorted(sorted(only(m.path / "all").iterdir())[0].iterdir())
        for f in (first[0], first[2]):
            assert read_errno(f) == errno.EIO, f
        log = m.log_text()
        assert "where it was listed" in log, log[-3000:]
        assert m.stats()["views"]["deidentified"] == 0  # nothing of the lie was de-identified, nor kept
        web.lie = None
        originals = {dcmread(io.BytesIO(f)).InstanceNumber: dcmread(io.BytesIO(f)) for f in files[:3]}
        for f in (first[0], first[2]):
            ds = dcmread(io.BytesIO(f.read_bytes()))
            original = originals[ds.InstanceNumber]
            assert ds.PixelData == original.PixelData  # the true object, not the zeroed pixels of the lie
            assert ds.PatientID != original.PatientID and ds.PatientIdentityRemoved == "YES"
        no_traceback(m)
