"""The NIfTI and preview views through real mounts over an Orthanc of our own
holding generated series: a CT with real geometry, an MR with three echoes,
a single localizer, a colour screen capture, a multi-frame object and an SR.

Every ``.nii.gz`` is judged by nibabel against what ``dcm2niix`` makes of a
local copy of the same files (copied out of the mount's folder: as the folder
serves them, as stored or in its transfer syntax); the sidecars against
dcm2niix's; the previews by Pillow.  The counters in ``stats.json`` show what
each step cost: listing converts nothing, a preview reads one instance, a
second read and a read after a remount with a disk cache convert nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.uid import JPEG2000Lossless

from tests import series
from tests.conftest import _need
from tests.mounting import mounted
from trolleyfs.demo.orthanc import ORTHANC, Orthanc
from trolleyfs.derive.nifti import find_dcm2niix
from trolleyfs.part10 import part10_transfer_syntax

pytestmark = pytest.mark.integration

STUDY = "2024-05-01 TEST DERIVE Derived views"
CT, MR, SCOUT, SR = "002 CT Phantom oblique", "003 MR ME GRE", "001 CT Topogram", "099 SR Report"
CAPTURE, CINE = "004 OT Screen capture", "005 OT Cine"
ALL = [SCOUT, CT, MR, CAPTURE, CINE, SR]
IMAGES = [s for s in ALL if s != SR]
VERSION_KEYS = {"ConversionSoftware", "ConversionSoftwareVersion"}


@pytest.fixture(scope="module")
def objects() -> list[bytes]:
    return [
        *series.localizer(),
        *series.ct(),
        *series.mr_multiecho(),
        *series.rgb_capture(),
        *series.multiframe(),
        *series.structured_report(),
    ]


@pytest.fixture(scope="module")
def pacs(objects, tmp_path_factory):
    _need(ORTHANC)
    server = Orthanc(workdir=str(tmp_path_factory.mktemp("orthanc-analysis")))
    server.start(timeout=120)
    try:
        assert server.upload(objects) == len(objects)
        yield server
    finally:
        server.cleanup()


def config(pacs: Orthanc, disk: Path | None = None) -> str:
    cache = f'[cache]\ndisk_dir = "{disk}"\ndisk_mb = 512\n' if disk else ""
    return f"""
[servers.pacs]
search   = {{ protocol = "qido-rs", url = "{pacs.dicomweb}" }}
retrieve = {{ protocol = "wado-rs", url = "{pacs.dicomweb}" }}
timeout = 20

[[folders]]
name = "research"
query = {{ PatientID = "D001" }}
views = ["nifti", "preview"]

[[folders]]
name = "j2k"
query = {{ PatientID = "D001" }}
transfer_syntax = "{JPEG2000Lossless}"
views = ["nifti"]

{cache}"""


def load(path: Path) -> nib.Nifti1Image:
    image = nib.load(path)
    assert isinstance(image, nib.Nifti1Image), path
    return image


def dcm2niix() -> str:
    found = find_dcm2niix()
    assert found is not None, "dcm2niix is a dependency: run `make venv`"
    return found


def reference(files: Path, where: Path) -> dict[str, Path]:
    """dcm2niix run directly on a local copy of ``files``: suffix -> file."""
    src, out = where / "dicom", where / "out"
    shutil.copytree(files, src)
    out.mkdir()
    done = subprocess.run(
        [dcm2niix(), "-z", "y", "-b", "y", "-ba", "y", "-c", "", "-f", "ref", "-o", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode in (0, 2), done.stdout + done.stderr  # 2: no valid DICOM
    return {p.name[len("ref") :]: p for p in sorted(out.iterdir())}


def ls_sizes(directory: Path) -> dict[str, int]:
    """Name -> size as ``ls -l`` shows them."""
    done = subprocess.run(["ls", "-ln", str(directory)], capture_output=True, text=True, check=True, timeout=120)
    rows = [line.split(maxsplit=8) for line in done.stdout.splitlines() if not line.startswith("total")]
    return {row[8]: int(row[4]) for row in rows}


def assert_same_as_dcm2niix(nifti_dir: Path, series_name: str, ref: dict[str, Path]) -> None:
    """The view holds dcm2niix's files under the series' name: volumes equal
    in voxels, affine and header; sidecars equal but for the version fields."""
    ours = {p.name[len(series_name) :]: p for p in sorted(nifti_dir.iterdir())}
    assert all(p.name.startswith(series_name) for p in ours.values())
    assert sorted(ours) == sorted(ref) and any(s.endswith(".nii.gz") for s in ours), (sorted(ours), sorted(ref))
    for suffix, path in ours.items():
        if suffix.endswith(".nii.gz"):
            mine, theirs = load(path), load(ref[suffix])
            assert mine.shape == theirs.shape and mine.get_data_dtype() == theirs.get_data_dtype()
            assert np.array_equal(np.asanyarray(mine.dataobj), np.asanyarray(theirs.dataobj)), path
            assert np.array_equal(mine.affine, theirs.affine), path
            assert mine.header.binaryblock == theirs.header.binaryblock, path
        elif suffix.endswith(".json"):
            mine_json, theirs_json = json.loads(path.read_bytes()), json.loads(ref[suffix].read_bytes())
            assert set(mine_json) >= VERSION_KEYS
            for key in VERSION_KEYS:
                del mine_json[key], theirs_json[key]
            assert mine_json == theirs_json, path
        else:
            assert path.read_bytes() == ref[suffix].read_bytes(), path


def views_of(stats: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    return stats["views"]["nifti"], stats["views"]["preview"]


def read_everything(views: Path) -> dict[str, bytes]:
    """Every file of the study's analysis views: path (relative) -> bytes."""
    out = {}
    for name in ALL:
        out[f"{name}.png"] = (views / f"{name}.png").read_bytes()
        for f in sorted((views / f"{name}.nifti").iterdir()):
            out[f"{name}.nifti/{f.name}"] = f.read_bytes()
    return out


def test_nifti_and_previews_through_a_mount(pacs, tmp_path):
    with mounted(config(pacs), tmp_path) as m:
        views = m.path / "views" / "research" / STUDY
        # listing the study's views converts nothing and fetches nothing
        assert sorted(os.listdir(views)) == sorted([f"{s}.nifti" for s in ALL] + [f"{s}.png" for s in ALL])
        subprocess.run(["ls", str(views)], check=True, capture_output=True, timeout=120)
        nifti, preview = views_of(m.stats())
        assert nifti["conversions"] + nifti["failures"] == 0 and preview["conversions"] + preview["failures"] == 0
        assert m.stats()["instances_fetched"] == 0

        # ls -l renders the previews (their size is exact only then): one instance each, never the series
        sizes = ls_sizes(views)
        nifti, preview = views_of(m.stats())
        assert preview["conversions"] == len(IMAGES) and preview["failures"] == 1  # the SR has no image
        assert nifti["conversions"] + nifti["failures"] == 0  # a .nifti directory is converted when looked into
        assert m.stats()["instances_fetched"] == len(ALL)
        for name in IMAGES:
            png = (views / f"{name}.png").read_bytes()
            assert sizes[f"{name}.png"] == len(png) == os.stat(views / f"{name}.png").st_size > 0
            assert png == (views / f"{name}.png").read_bytes()  # the same bytes on every read
            with Image.open(views / f"{name}.png") as image:
                image.load()
                assert image.format == "PNG" and max(image.size) <= 256
                pixels = np.asarray(image)
                assert pixels.std() > 5 and len(np.unique(pixels)) > 4, name  # not blank
        assert sizes[f"{SR}.png"] == 0 and (views / f"{SR}.png").read_bytes() == b""

        # every series' NIfTI is what dcm2niix makes of a local copy of the folder's files
        for name in ALL:
            nifti_dir = views / f"{name}.nifti"
            listed = ls_sizes(nifti_dir)
            assert listed == {f.name: len(f.read_bytes()) for f in nifti_dir.iterdir()}
            ref = reference(m.path / "research" / STUDY / name, tmp_path / "ref" / name)
            if name == SR:
                assert listed == {} and ref == {}
            else:
                assert_same_as_dcm2niix(nifti_dir, name, ref)
        nifti, _ = views_of(m.stats())
        assert nifti["conversions"] == len(IMAGES) and nifti["failures"] == 1
        assert sorted(os.listdir(views / f"{MR}.nifti")) == [
            f"{MR}_e{e}{x}" for e in (1, 2, 3) for x in (".json", ".nii.gz")
        ]
        assert load(views / f"{SCOUT}.nifti" / f"{SCOUT}.nii.gz").shape[:3] == (128, 128, 1)  # dcm2niix's -i n

        # a second read costs nothing
        fetched, before = m.stats()["instances_fetched"], views_of(m.stats())
        assert read_everything(views) == read_everything(views)
        assert views_of(m.stats()) == before and m.stats()["instances_fetched"] == fetched

        # what dcm2niix could not convert: an empty directory and one log line with its message
        log = m.log_text().splitlines()
        said = [line for line in log if f"{SR}.nifti: no NIfTI: dcm2niix: " in line]
        assert len(said) == 1 and "No valid DICOM" in said[0], "\n".join(log[-30:])
        assert len([line for line in log if f"{SR}.png: no preview: " in line]) == 1


def test_the_folder_s_transfer_syntax_is_what_dcm2niix_reads(pacs, tmp_path):
    """A folder served as JPEG 2000: dcm2niix gets the J2K files (as a local copy
    of them would give) and makes the same voxels as from the stored ones."""
    with mounted(config(pacs), tmp_path) as m:
        for name in (CT, MR):
            files = m.path / "j2k" / STUDY / name
            assert all(part10_transfer_syntax(f.read_bytes()) == JPEG2000Lossless for f in files.iterdir())
            j2k = m.path / "views" / "j2k" / STUDY / f"{name}.nifti"
            assert_same_as_dcm2niix(j2k, name, reference(files, tmp_path / "ref" / name))
            stored = m.path / "views" / "research" / STUDY / f"{name}.nifti"
            for f in j2k.glob("*.nii.gz"):
                a, b = load(f), load(stored / f.name)
                assert np.array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj))
                assert np.array_equal(a.affine, b.affine)
        assert views_of(m.stats())[0]["conversions"] == 4  # two series in two forms


def test_a_remount_with_a_disk_cache_converts_nothing(pacs, tmp_path):
    disk = tmp_path / "disk"
    with mounted(config(pacs, disk), tmp_path, name="first") as m:
        views = m.path / "views" / "research" / STUDY
        first = read_everything(views)
        nifti, preview = views_of(m.stats())
        assert nifti["conversions"] == len(IMAGES) and preview["conversions"] == len(IMAGES)
    with mounted(config(pacs, disk), tmp_path, name="second") as m:
        views = m.path / "views" / "research" / STUDY
        sizes = ls_sizes(views)
        assert all(sizes[f"{s}.png"] == len(first[f"{s}.png"]) for s in ALL)
        assert read_everything(views) == first
        nifti, preview = views_of(m.stats())
        assert nifti == {"conversions": 0, "failures": 0, "bytes_out": 0, "seconds": 0.0}
        assert preview == {"conversions": 0, "failures": 0, "bytes_out": 0, "seconds": 0.0}
        assert m.stats()["instances_fetched"] == 0
        assert m.stats()["views"]["derived_cache"]["disk_hits"] == 2 * len(ALL)


def test_readers_at_once_share_one_conversion(pacs, tmp_path):
    with mounted(config(pacs), tmp_path) as m:
        volume = m.path / "views" / "research" / STUDY / f"{CT}.nifti" / f"{CT}.nii.gz"
        got: list[bytes] = []
        errors: list[BaseException] = []

        def read() -> None:
            try:
                got.append(volume.read_bytes())
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=read) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors and len(got) == 4 and len(set(got)) == 1
        nifti, _ = views_of(m.stats())
        assert nifti["conversions"] == 1 and nifti["failures"] == 0
