"""Hostile attribute values through a real mount, listed over QIDO-RS and over
C-FIND: names stay safe, unique and readable (path separators, NUL and other
control characters, dot names), and every file still reads back exactly."""

from __future__ import annotations

import os

import pytest

from tests.mounting import by_sop_uid, mounted, qido_config
from trolleyfs.demo import sampledata
from trolleyfs.demo.orthanc import Orthanc

pytestmark = pytest.mark.integration

NASTY = [
    ("A/B^..", "../../etc/passwd"),
    ("CTRL\x01\x1f^X", "tab\there\x7fdel"),
    ("LONG^" + "Z" * 60, "desc " + "é" * 200),
    ("DOT^.", ".hidden"),
    ("NUL\x00^IN", "nul\x00/\x00desc"),
    ("SAME^NAME", "Same"),
    ("SAME^NAME", "Same"),  # a second study that renders to the same name
]


@pytest.fixture(scope="module")
def files():
    studies = [
        sampledata.StudySpec(
            p, f"N{i}", "20200101", d, (sampledata.SeriesSpec("CT", d, 2), sampledata.SeriesSpec("CT", d, 2))
        )
        for i, (p, d) in enumerate(NASTY)
    ]
    return list(sampledata.generate(studies))


def _config(orthanc: Orthanc) -> str:
    """The Orthanc listed over QIDO-RS (folder ``all``) and over C-FIND (``all-qr``)."""
    folders = '[[folders]]\nname = "all"\nserver = "pacs"\nquery = {}\n'
    folders += '[[folders]]\nname = "all-qr"\nserver = "qr"\nquery = {}\n'
    qr = f"""
[servers.qr]
search   = {{ protocol = "dicom-qr", host = "127.0.0.1", port = {orthanc.dicom_port}, called_aet = "{orthanc.aet}" }}
retrieve = {{ protocol = "wado-rs", url = "{orthanc.dicomweb}" }}
timeout = 10
"""
    return qido_config(orthanc, folders) + qr


@pytest.mark.parametrize("folder", ["all", "all-qr"])
def test_hostile_names_are_safe_unique_and_readable(files, tmp_path, folder):
    with Orthanc(workdir=str(tmp_path / "orthanc")) as orthanc:
        orthanc.upload(files)
        with mounted(_config(orthanc), tmp_path) as m:
            studies = os.listdir(m.path / folder)
            assert len(studies) == len(NASTY) == len(set(studies))
            for name in studies:
                raw = name.encode()
                assert len(raw) <= 255 and b"/" not in raw and not name.startswith(".")
                assert all(ch >= " " and ch != "\x7f" for ch in name), repr(name)
            assert sum(1 for s in studies if s.startswith("2020-01-01 SAME NAME Same ~")) == 2
            by_uid = by_sop_uid(files)
            seen = 0
            for study in studies:
                series = os.listdir(m.path / folder / study)
                assert len(series) == 2 == len(set(series))
                for s in series:
                    for f in (m.path / folder / study / s).iterdir():
                        uid = os.getxattr(f, "user.dicom.SOPInstanceUID").decode()
                        assert f.read_bytes() == orthanc.instance_file(uid) and uid in by_uid
                        seen += 1
            assert seen == len(files)
