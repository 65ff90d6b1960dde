"""NIfTI by dcm2niix (trolleyfs.derive.nifti), judged by nibabel against
dcm2niix run here directly on a local copy of the same files: voxels,
affine and sidecar equal; the same bytes on every run; one volume per echo;
nothing (and one line) for what dcm2niix cannot convert; a deadline that
kills and cleans up."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import trio
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless, RLELossless

from tests import series
from tests.conftest import _need
from trolleyfs.derive.counters import DeriveCounters
from trolleyfs.derive.nifti import Dcm2niix, NiftiResult, find_dcm2niix
from trolleyfs.part10 import part10_sop_instance_uid

pytestmark = pytest.mark.integration

VERSION_KEYS = {"ConversionSoftware", "ConversionSoftwareVersion"}
DEBIAN_DCM2NIIX = "/usr/bin/dcm2niix"


def _binary() -> str:
    found = find_dcm2niix()
    if found is None:
        pytest.fail("dcm2niix is not installed: run `make venv` (the dcm2niix wheel is a dependency)")
    return found


def reference(objects: list[bytes], where: Path, binary: str, *extra: str) -> dict[str, Path]:
    """dcm2niix run directly on a local copy (files named by SOP Instance UID,
    as a user's export would be), its own gzip: suffix -> file."""
    src, out = where / "dicom", where / "out"
    src.mkdir(parents=True)
    out.mkdir()
    for data in objects:
        (src / f"{part10_sop_instance_uid(data)}.dcm").write_bytes(data)
    done = subprocess.run(
        [binary, "-z", "y", "-b", "y", "-ba", "y", "-c", "", *extra, "-f", "ref", "-o", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode in (0, 2), done.stdout + done.stderr  # 2: no valid DICOM
    return {p.name[len("ref") :]: p for p in sorted(out.iterdir())}


def unpack(result: NiftiResult, name: str, where: Path) -> dict[str, Path]:
    """The engine's files written out: suffix -> file."""
    where.mkdir(parents=True)
    found = {}
    for file_name, data in result.files:
        assert file_name.startswith(name)
        (where / file_name).write_bytes(data)
        found[file_name[len(name) :]] = where / file_name
    return found


def load_nifti(path: Path) -> nib.Nifti1Image:
    """A volume dcm2niix made, as nibabel reads it (NIfTI-1)."""
    image = nib.load(path)
    assert isinstance(image, nib.Nifti1Image), image
    return image


def assert_same_as_reference(ours: dict[str, Path], ref: dict[str, Path]) -> None:
    """Every file of ours is one of dcm2niix's: NIfTI voxels, affine and
    header equal (nibabel), sidecars equal apart from the version fields."""
    assert sorted(ours) == sorted(ref)
    assert any(s.endswith(".nii.gz") for s in ours)
    for suffix, path in ours.items():
        if suffix.endswith(".nii.gz"):
            mine, theirs = load_nifti(path), load_nifti(ref[suffix])
            assert mine.shape == theirs.shape
            assert mine.get_data_dtype() == theirs.get_data_dtype()
            assert np.array_equal(np.asanyarray(mine.dataobj), np.asanyarray(theirs.dataobj))
            assert np.array_equal(mine.affine, theirs.affine)
            assert mine.header.binaryblock == theirs.header.binaryblock
        elif suffix.endswith(".json"):
            mine_json, theirs_json = json.loads(path.read_bytes()), json.loads(ref[suffix].read_bytes())
            assert set(mine_json) >= VERSION_KEYS
            for key in VERSION_KEYS:
                del mine_json[key], theirs_json[key]
            assert mine_json == theirs_json
        else:  # .bval, .bvec and the like
            assert path.read_bytes() == ref[suffix].read_bytes()


async def convert_and_compare(objects: list[bytes], tmp_path: Path, name: str) -> dict[str, Path]:
    engine = Dcm2niix(_binary())
    result = await engine.convert(objects, name)
    assert result.final and result.message is None, result.message
    ours = unpack(result, name, tmp_path / "ours")
    ref = await trio.to_thread.run_sync(reference, objects, tmp_path / "ref", _binary())
    assert_same_as_reference(ours, ref)
    return ours


@pytest.mark.parametrize(
    "kind",
    [{"oblique": True, "signed": False}, {"oblique": False, "signed": True, "slope": 0.5}],
    ids=["oblique", "axial"],
)
async def test_a_ct_series_is_what_dcm2niix_makes_of_a_local_copy(tmp_path: Path, kind: dict[str, object]) -> None:
    objects = series.ct(key=f"ct-{sorted(kind.items())}", **kind)  # type: ignore[arg-type]
    ours = await convert_and_compare(objects, tmp_path, "2 Phantom")
    assert sorted(ours) == [".json", ".nii.gz"]
    image = load_nifti(ours[".nii.gz"])
    assert image.shape == (128, 128, 24)
    assert np.allclose(image.header.get_zooms(), (0.75, 0.75, 2.5), atol=1e-4)
    # the slices step along the generated normal (DICOM LPS -> NIfTI RAS flips x and y)
    ds = pydicom.dcmread(io.BytesIO(objects[0]))
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:]) * np.array([-1, -1, 1])
    slice_axis = image.affine[:3, 2] / np.linalg.norm(image.affine[:3, 2])
    assert abs(abs(slice_axis @ normal) - 1) < 1e-4
    # voxels in Hounsfield units: the phantom's lungs, tissue and bone are there
    hu = image.get_fdata()
    assert hu.min() < -900 and hu.max() > 650 and abs(np.median(hu[hu > -200]) - 40) < 30


async def test_a_multi_echo_series_gives_one_volume_per_echo(tmp_path: Path) -> None:
    ours = await convert_and_compare(series.mr_multiecho(), tmp_path, "3 ME GRE")
    assert sorted(ours) == ["_e1.json", "_e1.nii.gz", "_e2.json", "_e2.nii.gz", "_e3.json", "_e3.nii.gz"]
    echo_times = [json.loads(ours[f"_e{e}.json"].read_bytes())["EchoTime"] for e in (1, 2, 3)]
    assert echo_times == [0.01, 0.03, 0.06]
    means = [load_nifti(ours[f"_e{e}.nii.gz"]).get_fdata().mean() for e in (1, 2, 3)]
    assert means[0] > means[1] > means[2]  # T2 decay
    assert all(load_nifti(ours[f"_e{e}.nii.gz"]).shape == (64, 64, 12) for e in (1, 2, 3))


@pytest.mark.parametrize(
    "ts", [RLELossless, JPEG2000Lossless, JPEGLSLossless, JPEGLosslessSV1], ids=["rle", "j2k", "jls", "jpegll"]
)
async def test_a_compressed_series_gives_the_volume_of_its_uncompressed_twin(tmp_path: Path, ts: str) -> None:
    plain = series.ct(slices=8, key="twin")
    ours = await convert_and_compare(series.compressed(plain, ts), tmp_path / "c", "s")
    twin = unpack(await Dcm2niix(_binary()).convert(plain, "s"), "s", tmp_path / "plain")
    a, b = load_nifti(ours[".nii.gz"]), load_nifti(twin[".nii.gz"])
    assert np.array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj))
    assert np.array_equal(a.affine, b.affine)


async def test_the_same_series_gives_the_same_bytes_whatever_the_order(tmp_path: Path) -> None:
    objects = series.mr_multiecho(slices=6)
    first = await Dcm2niix(_binary(), tmp_dir=str(tmp_path)).convert(objects, "x")
    again = await Dcm2niix(_binary()).convert(list(reversed(objects)), "x")
    assert first.files == again.files
    for file_name, data in first.files:
        if file_name.endswith(".gz"):
            assert data[3] & 0x08 == 0  # FLG: no file name stored
            assert data[4:8] == b"\0\0\0\0"  # MTIME: none


async def test_sidecar_and_header_hold_no_identifying_value(tmp_path: Path) -> None:
    """-ba y and -c "": no patient name, ID, birth date, study date or image
    comment in any output, compressed or not."""
    result = await Dcm2niix(_binary()).convert(series.ct(slices=4, key="anon"), "a")
    assert result.files
    everything = b"".join(gzip.decompress(d) if n.endswith(".gz") else d for n, d in result.files)
    for value in (b"TEST^DERIVE", b"TEST DERIVE", b"D001", b"19700101", b"20240501", b"2024-05-01", b"generated for"):
        assert value not in everything
    sidecar = json.loads(dict(result.files)["a.json"])
    assert not {"PatientName", "PatientID", "PatientBirthDate", "AcquisitionDateTime", "ImageComments"} & set(sidecar)


async def test_an_sr_gives_nothing_and_dcm2niix_s_message() -> None:
    result = await Dcm2niix(_binary()).convert(series.structured_report(), "sr")
    assert result.files == () and result.final
    assert result.message is not None and "\n" not in result.message
    assert result.message.startswith("dcm2niix: ") and "No valid DICOM" in result.message


async def test_a_single_localizer_is_a_2d_volume_by_default_and_nothing_with_skip_2d(tmp_path: Path) -> None:
    """dcm2niix's default makes a one-slice volume of a scout (as a user's run
    does); ``skip_2d`` (``-i y``) makes nothing of it, nor of a screenshot."""
    ours = await convert_and_compare(series.localizer(), tmp_path, "scout")
    assert load_nifti(ours[".nii.gz"]).shape[:3] == (128, 128, 1)
    skipping = Dcm2niix(_binary(), skip_2d=True)
    for objects in (series.localizer(), series.rgb_capture()):
        result = await skipping.convert(objects, "x")
        assert result.files == () and result.final
        assert result.message is not None and "-i y" in result.message
    # skip_2d leaves volumes alone
    assert [n for n, _ in (await skipping.convert(series.ct(slices=3, key="v"), "v")).files] == ["v.json", "v.nii.gz"]


async def test_debian_s_dcm2niix_gives_the_same_voxels_and_affine(tmp_path: Path) -> None:
    """A second opinion: Debian 12's dcm2niix (v1.0.20220720) on a local copy."""
    _need(DEBIAN_DCM2NIIX)
    for label, objects in (("ct", series.ct()), ("mr", series.mr_multiecho())):
        result = await Dcm2niix(_binary()).convert(objects, "s")
        ours = unpack(result, "s", tmp_path / label / "ours")
        ref = await trio.to_thread.run_sync(reference, objects, tmp_path / label / "ref", DEBIAN_DCM2NIIX)
        volumes = sorted(s for s in ours if s.endswith(".nii.gz"))
        assert volumes == sorted(s for s in ref if s.endswith(".nii.gz"))
        for suffix in volumes:
            mine, theirs = load_nifti(ours[suffix]), load_nifti(ref[suffix])
            assert np.array_equal(np.asanyarray(mine.dataobj), np.asanyarray(theirs.dataobj))
            assert np.allclose(mine.affine, theirs.affine, atol=1e-5)


async def test_a_run_cut_by_the_timeout_makes_nothing_and_leaves_no_directory(tmp_path: Path) -> None:
    counters = DeriveCounters()
    engine = Dcm2niix(_binary(), timeout=0, tmp_dir=str(tmp_path), counters=counters)
    result = await engine.convert(series.ct(slices=6, key="t"), "t")
    assert result.files == () and not result.final
    assert result.message == "dcm2niix: did not finish within 0 s (killed)"
    assert os.listdir(tmp_path) == []
    assert counters.failures == 1 and counters.conversions == 0


async def test_temporary_directories_are_private_and_conversions_bounded(tmp_path: Path) -> None:
    """With ``concurrency=1`` four conversions started together never have two
    private directories at once; each is mode 0700 and gone afterwards."""
    engine = Dcm2niix(_binary(), concurrency=1, tmp_dir=str(tmp_path))
    seen: list[int] = []
    modes: set[int] = set()
    done = trio.Event()

    def look() -> None:
        entries = [tmp_path / e for e in os.listdir(tmp_path)]
        seen.append(len(entries))
        for e in entries:
            with contextlib.suppress(FileNotFoundError):
                modes.add(stat.S_IMODE(e.stat().st_mode))

    async def watch() -> None:
        while not done.is_set():
            await trio.to_thread.run_sync(look)

    objects = series.ct(slices=12, key="bound")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        async with trio.open_nursery() as runs:
            for i in range(4):
                runs.start_soon(engine.convert, objects, f"r{i}")
        done.set()
    assert max(seen) == 1 and modes == {0o700}
    assert os.listdir(tmp_path) == []
    assert engine.counters.conversions == 4 and engine.counters.failures == 0


async def test_counters_and_the_form_name(tmp_path: Path) -> None:
    engine = Dcm2niix(_binary())
    made = await engine.convert(series.ct(slices=3, key="n"), "n")
    await engine.convert(series.structured_report(), "sr")
    assert engine.counters.as_dict()["conversions"] == 1 and engine.counters.failures == 1
    assert engine.counters.bytes_out == made.size > 0
    said = (await trio.run_process([_binary(), "--version"], capture_stdout=True, check=False)).stdout.decode()
    version = await engine.version()
    assert version.startswith("v1.0.") and version in said
    assert await engine.form() == f"nifti:dcm2niix-{version}:in:z6"
    assert await Dcm2niix(_binary(), skip_2d=True, gzip_level=1).form() == f"nifti:dcm2niix-{version}:iy:z1"


def test_the_wheel_s_binary_is_preferred() -> None:
    import dcm2niix  # the PyPI wheel

    assert Path(_binary()).resolve() == Path(dcm2niix.bin).resolve()
    assert shutil.which(_binary())


async def test_a_bad_name_or_no_objects() -> None:
    engine = Dcm2niix(_binary())
    for bad in ("", "a/b", "..", "a\0b"):
        with pytest.raises(ValueError, match="not a usable output name"):
            await engine.convert(series.ct(slices=2, key="b"), bad)
    result = await engine.convert([], "empty")
    assert result.files == () and result.message == "dcm2niix: the series has no objects"
