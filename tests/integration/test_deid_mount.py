"""A de-identified mount (issue 19), through real mounts over a real Orthanc
holding studies with an identifying value in every attribute of PS3.15 Table
E.1-1 (:mod:`tests.deidcohort`), with a disk cache and a real redis-server
as the shared tier:

- no identifying value in any byte of any file (instances, the views' JSON
  and zips, ``stats.json``), any name, any xattr;
- every served object is its original de-identified: pixel data identical,
  new UIDs consistent across instances and references, one pseudonym per
  patient, the names and xattrs the objects' values;
- the same bytes from a second mount (another process) with the same key,
  other pseudonyms with another key; the burned-in series are absent;
- dcmtk's dcmdump reads every file, dicom3tools' dciodvfy finds no new error,
  dcm2niix converts a de-identified series (on the mount) to the original's
  voxels (nibabel);
- after all that, neither the disk cache nor Redis holds an original
  identity; ``by-accession/<real>`` and ``by-patient/<real>`` open the
  de-identified study, ``by-uid/`` opens it by its new UID only."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from tests.deidcohort import KEY, MODIFIED, NIFTI_SERIES, OTHER_KEY, Cohort, make_cohort
from tests.deidwalk import Opened, Seen, open_and_walk, real
from tests.mounting import mounted, qido_config, wait_for
from tests.servers.redisserver import RedisServer
from trolleyfs.demo.orthanc import ORTHANC, Orthanc

pytestmark = pytest.mark.integration

RLE = "1.2.840.10008.1.2.5"


def need(binary: str) -> None:
    if not shutil.which(binary) and not os.path.exists(binary):
        pytest.fail(f"{binary} is not installed: run `make test`, which installs it")


# ------------------------------------------------------------------ fixtures: one PACS, one Redis, the mounts


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return make_cohort()


@pytest.fixture(scope="module")
def pacs(cohort: Cohort, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    need(ORTHANC)
    server = Orthanc(workdir=str(tmp_path_factory.mktemp("orthanc-deid")))
    try:
        server.start(timeout=120)
        server.upload(cohort.files)
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def redis_tier() -> Iterator[RedisServer]:
    need("redis-server")
    with RedisServer() as server:
        yield server


def key_file(where: Path, key: bytes) -> Path:
    path = where / "deid.key"
    path.write_bytes(key)
    path.chmod(0o600)
    return path


def deid_config(pacs: Orthanc, where: Path, key: bytes, options: str, shared: str = "") -> str:
    return qido_config(
        pacs,
        folders=f"""
[[folders]]
name = "research"
views = ["metadata", "zip", "nifti", "preview"]

[[folders]]
name = "rle"
transfer_syntax = "{RLE}"

[cache]
disk_dir = "{where / "cache"}"
{shared}

[deidentify]
key_file = "{key_file(where, key)}"
options = [{options}]
""",
    )


@pytest.fixture(scope="module")
def first(pacs: Orthanc, redis_tier: RedisServer, cohort: Cohort, tmp_path_factory: pytest.TempPathFactory):
    """The mount with the modified-dates option, a disk cache and the shared
    tier, walked whole once."""
    where = tmp_path_factory.mktemp("deid-first")
    shared = f'[cache.shared]\nurl = "{redis_tier.url}"'
    with mounted(deid_config(pacs, where, KEY, f'"{MODIFIED}"', shared), where) as m:
        yield open_and_walk(m, cohort)


@pytest.fixture(scope="module")
def second(pacs: Orthanc, cohort: Cohort, tmp_path_factory: pytest.TempPathFactory):
    """Another mount (another process, cache and no tier) with the same key and options."""
    where = tmp_path_factory.mktemp("deid-second")
    with mounted(deid_config(pacs, where, KEY, f'"{MODIFIED}"'), where) as m:
        yield open_and_walk(m, cohort)


@pytest.fixture(scope="module")
def other(pacs: Orthanc, cohort: Cohort, tmp_path_factory: pytest.TempPathFactory):
    """A mount with another key and the basic profile (dates and times removed)."""
    where = tmp_path_factory.mktemp("deid-other")
    with mounted(deid_config(pacs, where, OTHER_KEY, ""), where) as m:
        yield open_and_walk(m, cohort)


# ------------------------------------------------------------------ nothing identifying anywhere


def _leaks(opened: Opened, cohort: Cohort, times: bool) -> list[str]:
    found = []
    seen = opened.seen
    served = sum(len(f) for f in cohort.served().values())
    assert len([p for p in seen.files if p.endswith(".dcm")]) >= 2 * served  # research/ and rle/, every served object
    for path, data in seen.files.items():
        found += [f"{path}: {leak}" for leak in cohort.found_in(data, times=times)]
    for path, attrs in seen.xattrs.items():
        for name, value in attrs.items():
            if name == "user.trolleyfs.query" and set(path.split("/")) & opened.typed:
                continue  # the query the user typed, echoed
            found += [
                f"{path}: xattr {name}: {leak}" for leak in cohort.found_in(name.encode() + b"=" + value, times=times)
            ]
    for path in [*seen.files, *seen.xattrs]:
        shown = "/".join(part for part in path.split("/") if part not in opened.typed)
        found += [f"name {path}: {leak}" for leak in cohort.found_in(shown.encode(), times=times)]
    return found


def test_no_identifying_value_in_any_byte_name_or_xattr(first: Opened, other: Opened, cohort: Cohort) -> None:
    """Every marker, original UID and date (and, with the basic profile, time)
    is absent from every file, name and xattr: instances in two forms, the
    metadata JSON and zips, the NIfTI (its header and BIDS sidecar) and
    preview views, stats.json, the study found by its real accession number
    and Patient ID."""
    for opened in (first, other):
        seen = opened.seen
        assert any(p.endswith(".zip") for p in seen.files) and any(p.endswith(".json") for p in seen.files)
        assert any(p.endswith(".nii.gz") for p in seen.files) and any(p.endswith(".png") for p in seen.files)
        assert ".trolleyfs/stats.json" in seen.files
        assert any("user.trolleyfs.cached" in attrs for attrs in seen.xattrs.values())  # the cache state, checked too
        assert any(p.startswith("by-accession/") for p in seen.files)
        assert any(p.startswith("by-patient/") for p in seen.files)
    # the modified-dates option keeps times of day, as the standard's option says
    assert _leaks(first, cohort, times=False) == []
    assert _leaks(other, cohort, times=True) == []
    # what the walk would have found in the originals: the search finds what is there
    assert all(cohort.found_in(f) for f in cohort.files)


# ------------------------------------------------------------------ the objects: their originals de-identified


def _originals(cohort: Cohort) -> dict[tuple[str, bytes], Dataset]:
    """The served originals by (Modality, PixelData): unique in this cohort."""
    out: dict[tuple[str, bytes], Dataset] = {}
    for files in cohort.served().values():
        for data in files:
            ds = dcmread(io.BytesIO(data))
            out[(ds.Modality, ds.PixelData)] = ds
    assert len(out) == sum(len(f) for f in cohort.served().values())
    return out


def _pairs(seen: Seen, top: str, cohort: Cohort) -> list[tuple[str, Dataset, Dataset]]:
    """(path, de-identified, original) for every instance file under ``top``."""
    originals = _originals(cohort)
    pairs = [(p, ds, originals[(ds.Modality, ds.PixelData)]) for p, ds in seen.datasets(top).items()]
    assert sorted(o.SOPInstanceUID for _, _, o in pairs) == sorted(o.SOPInstanceUID for o in originals.values())
    return pairs


def _one_to_one(pairs: list[tuple[str, str]]) -> dict[str, str]:
    forward = dict(pairs)
    assert len(forward) == len(set(pairs)) == len(set(forward.values()))  # each original one new value, and back
    return forward


def test_every_object_is_its_original_deidentified(first: Opened, cohort: Cohort) -> None:
    """Pixel data identical (each served original matched once by its pixels),
    UIDs replaced one to one across instances, series, studies, frames of
    reference and references, one pseudonym per patient, dates shifted by one
    offset per patient, and the names and xattrs show the objects' values."""
    pairs = _pairs(first.seen, "research", cohort)
    uids = []
    for path, new, old in pairs:
        assert new.file_meta.MediaStorageSOPInstanceUID == new.SOPInstanceUID
        for kw in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID"):
            assert str(getattr(new, kw)).startswith("2.25.") and getattr(new, kw) != getattr(old, kw)
            uids.append((str(getattr(old, kw)), str(getattr(new, kw))))
        assert new.PatientIdentityRemoved == "YES" and new.PatientID != old.PatientID
        attrs = first.seen.xattrs[path]
        assert attrs["user.dicom.SOPInstanceUID"].decode() == new.SOPInstanceUID
        assert attrs["user.dicom.PatientID"].decode() == new.PatientID
        assert attrs["user.dicom.StudyDate"].decode() == new.StudyDate
        series_dir = first.seen.xattrs[str(Path(path).parent)]
        assert series_dir["user.dicom.SeriesInstanceUID"].decode() == new.SeriesInstanceUID
        study_dir = first.seen.xattrs[str(Path(path).parent.parent)]
        assert study_dir["user.dicom.StudyInstanceUID"].decode() == new.StudyInstanceUID
        assert new.StudyDate[:4] in Path(path).parent.parent.name  # the name shows the shifted date
    mapping = _one_to_one(uids)
    for _, new, old in pairs:  # references name the new UIDs of the very instances they named
        assert (
            new.ReferencedImageSequence[0].ReferencedSOPInstanceUID
            == mapping[old.ReferencedImageSequence[0].ReferencedSOPInstanceUID]
        )
    _one_to_one([(str(old.PatientID), str(new.PatientID)) for _, new, old in pairs])
    shifts: dict[str, set[int]] = {}
    for _, new, old in pairs:
        for kw in ("StudyDate", "SeriesDate", "ContentDate"):
            days = (np.datetime64(_iso(getattr(old, kw))) - np.datetime64(_iso(getattr(new, kw)))).astype(int)
            shifts.setdefault(str(old.PatientID), set()).add(int(days))
    assert all(len(s) == 1 and next(iter(s)) >= 365 for s in shifts.values()), shifts


def _iso(da: str) -> str:
    return f"{da[:4]}-{da[4:6]}-{da[6:]}"


def test_a_folder_with_a_transfer_syntax_is_converted_then_deidentified(first: Opened, cohort: Cohort) -> None:
    """rle/ holds the same de-identified instances in RLE Lossless: the same new
    UIDs, the same pixels once decoded."""
    research = {ds.SOPInstanceUID: ds for ds in first.seen.datasets("research").values()}
    rle = first.seen.datasets("rle")
    assert len(rle) == len(research)
    for ds in rle.values():
        assert ds.file_meta.TransferSyntaxUID == RLE
        same = research[ds.SOPInstanceUID]
        assert ds.PatientID == same.PatientID and ds.StudyDate == same.StudyDate
        assert np.array_equal(ds.pixel_array, same.pixel_array)


def test_views_hold_the_deidentified_files(first: Opened) -> None:
    """Each zip holds the folder's very files; each metadata document the
    headers of the de-identified objects (never the server's /metadata)."""
    seen = first.seen
    zips = {p: b for p, b in seen.under("views/research").items() if p.endswith(".zip")}
    assert zips
    for path, data in zips.items():
        parent = str(Path(path).parent.relative_to("views"))  # the folder's directory the zip is made of
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            assert z.testzip() is None
            for member in z.namelist():
                assert z.read(member) == seen.files[f"{parent}/{member}"], member
    for path, data in seen.under("views/research").items():
        if not path.endswith(".json") or ".nifti/" in path:  # (a NIfTI's BIDS sidecar is no metadata document)
            continue
        doc = json.loads(data)
        files = seen.under(path[len("views/") : -len(".json")])
        uids = sorted(str(dcmread(io.BytesIO(b)).SOPInstanceUID) for b in files.values())
        assert sorted(item["00080018"]["Value"][0] for item in doc) == uids
        assert all(item["00120062"]["Value"] == ["YES"] for item in doc)  # Patient Identity Removed
        assert all("7FE00010" not in item for item in doc)
    views = first.mount.stats()["views"]
    assert views["metadata_from_server"] == 0 and views["metadata_from_objects"] > 0
    assert views["deidentified"] > 0 and views["deid_failed"] == 0


def test_burned_in_series_are_absent(first: Opened, cohort: Cohort) -> None:
    """Study B shows only its CT series: the series flagged Burned In
    Annotation YES and the Secondary Capture are absent, left out by their
    listings (no object of theirs was read)."""
    study_b = first.seen.datasets("research")
    b_new_pid = {ds.PatientID for ds in study_b.values() if ds.Rows == 96}
    assert len(b_new_pid) == 1
    b_dirs = {Path(p).parent.parent for p, ds in study_b.items() if ds.PatientID in b_new_pid}
    assert len(b_dirs) == 1
    series = sorted(os.listdir(first.mount.path / next(iter(b_dirs))))
    assert len(series) == 1 and series[0].startswith("001 CT"), series
    assert first.mount.stats()["views"]["deid_left_out"] == 0


# ------------------------------------------------------------------ the same bytes with the same key


def test_the_same_key_gives_the_same_bytes_and_another_key_other_pseudonyms(
    first: Opened, second: Opened, other: Opened
) -> None:
    """A second process with the same key and options serves byte-identical
    files under the same names (instances, zips, documents); another key
    gives other names, UIDs and patient pseudonyms."""
    mine = {p: b for p, b in first.seen.files.items() if not p.startswith((".trolleyfs", "by-"))}
    theirs = {p: b for p, b in second.seen.files.items() if not p.startswith((".trolleyfs", "by-"))}
    assert sorted(mine) == sorted(theirs)
    assert [p for p in mine if mine[p] != theirs[p]] == []
    ours = first.seen.datasets("research").values()
    others = other.seen.datasets("research").values()
    assert len(ours) == len(others)
    for kw in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "PatientID", "PatientName"):
        assert not {str(getattr(d, kw)) for d in ours} & {str(getattr(d, kw)) for d in others}, kw
    assert not set(os.listdir(first.mount.path / "research")) & set(os.listdir(other.mount.path / "research"))


# ------------------------------------------------------------------ judged by tools no one here wrote


def _dciodvfy_errors(path: Path) -> Counter[str]:
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return Counter(line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error"))


def test_dcmdump_and_dciodvfy_judge_them_as_their_sources(first: Opened, cohort: Cohort, tmp_path: Path) -> None:
    """dcmdump reads every de-identified file on the mount without a word;
    dciodvfy finds in one file of each series no error its original lacks."""
    need("dcmdump")
    need("dciodvfy")
    by_series: dict[str, tuple[Path, Dataset]] = {}
    for path, _, old in _pairs(first.seen, "research", cohort):
        on_mount = first.mount.path / path
        run = subprocess.run(["dcmdump", "-q", "+L", str(on_mount)], capture_output=True, text=True, errors="replace")
        assert run.returncode == 0 and run.stderr == "", (path, run.stderr)
        by_series.setdefault(str(old.SeriesInstanceUID), (on_mount, old))
    for n, (on_mount, old) in enumerate(by_series.values()):
        source = tmp_path / f"source{n}.dcm"
        source.write_bytes(
            next(
                f
                for f in cohort.files
                if dcmread(io.BytesIO(f), stop_before_pixels=True).SOPInstanceUID == old.SOPInstanceUID
            )
        )
        new_errors = set(_dciodvfy_errors(on_mount) - _dciodvfy_errors(source))
        assert new_errors == set(), (on_mount, new_errors)


def _nifti(folder: Path, out: Path) -> nib.Nifti1Image:
    out.mkdir()
    run = subprocess.run(
        ["dcm2niix", "-z", "n", "-f", "series", "-o", str(out), str(folder)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert (out / "series.nii").exists(), (sorted(out.iterdir()), run.stdout)
    image = nib.load(out / "series.nii")
    assert isinstance(image, nib.Nifti1Image)
    return image


def test_dcm2niix_makes_the_original_voxels_of_a_series_on_the_mount(
    first: Opened, cohort: Cohort, tmp_path: Path
) -> None:
    """dcm2niix reads a de-identified series straight from the mount and makes
    the same voxels and geometry as from the original files."""
    need("dcm2niix")
    originals = tmp_path / "originals"
    originals.mkdir()
    for i, data in enumerate(cohort.series[NIFTI_SERIES]):
        (originals / f"{i:03d}.dcm").write_bytes(data)
    series_dir = next(
        first.mount.path / Path(p).parent for p, ds in first.seen.datasets("research").items() if ds.Rows == 96
    )
    assert len(os.listdir(series_dir)) == len(cohort.series[NIFTI_SERIES])
    original = _nifti(originals, tmp_path / "nii-original")
    deidentified = _nifti(series_dir, tmp_path / "nii-deidentified")
    assert original.shape == deidentified.shape == (96, 96, 10)
    assert np.array_equal(np.asarray(original.dataobj), np.asarray(deidentified.dataobj))
    assert np.allclose(original.affine, deidentified.affine)
    assert float(np.asarray(deidentified.dataobj).std()) > 0


# ------------------------------------------------------------------ caches and the shared tier


def test_no_original_on_disk_or_in_redis(first: Opened, redis_tier: RedisServer, cohort: Cohort) -> None:
    """After the walks, the disk cache holds de-identified objects only (and
    no listing), and Redis holds de-identified objects named by their new
    UIDs: no original identity in any file, file name, key or value."""
    disk = Path(first.mount.config).parent / "cache"
    kept = [p for p in disk.rglob("*") if p.is_file()]
    assert len(kept) >= 2 * sum(len(f) for f in cohort.served().values())  # both forms of every served object
    assert not (disk / "listings").exists()
    for p in kept:
        assert cohort.found_in(p.read_bytes(), times=False) == [], p
        assert cohort.found_in(str(p.relative_to(disk)).encode()) == [], p
    with redis_tier.admin() as admin:
        keys = list(admin.scan_iter(count=1000))
        assert any(b":o:" in k for k in keys)
        assert not any(b":l:" in k for k in keys)  # no listing shared
        for k in keys:
            assert cohort.found_in(k) == [], k
            kind = admin.type(k)
            if kind == b"string":
                values = [admin.get(k) or b""]
            elif kind == b"list":
                values = admin.lrange(k, 0, -1)
            elif kind == b"hash":
                values = [b"%s=%s" % kv for kv in admin.hgetall(k).items()]
            else:
                values = []
            for v in values:
                assert cohort.found_in(v, times=False) == [], k


# ------------------------------------------------------------------ finding a study


def test_finding_a_study_by_its_real_numbers_and_its_new_uid(first: Opened, cohort: Cohort) -> None:
    """by-accession/<real> and by-patient/<real> show the de-identified study
    (the same directory as in the folder); by-uid/ opens it by its new UID,
    not by the original."""
    root = first.mount.path
    acc, _ = real(cohort, "A")
    (found,) = os.listdir(root / "by-accession" / acc)
    study_a = {ds.StudyInstanceUID for ds in first.seen.datasets(f"by-accession/{acc}").values()}
    (new_uid,) = study_a
    in_folder = {p.split("/")[1] for p, ds in first.seen.datasets("research").items() if ds.StudyInstanceUID == new_uid}
    assert {found} == in_folder
    assert sorted(os.listdir(root / "by-uid" / new_uid)) == sorted(os.listdir(root / "research" / found))
    with pytest.raises(OSError) as exc:
        os.listdir(root / "by-uid" / cohort.study("A").uid)
    assert exc.value.errno == errno.ENOENT
    _, pid = real(cohort, "B")
    (found_b,) = os.listdir(root / "by-patient" / pid)
    assert first.seen.datasets(f"by-patient/{pid}")
    with pytest.raises(OSError) as exc:
        os.listdir(root / "by-patient" / "NOBODY-HERE")
    assert exc.value.errno == errno.ENOENT
    assert found_b != found
    for looked_up in ("by-accession", "by-patient", "query"):  # what was typed is never listed to others
        assert os.listdir(root / looked_up) == [], looked_up


def test_keep_originals_lets_the_caches_hold_originals_and_serves_the_same_bytes(
    first: Opened, pacs: Orthanc, cohort: Cohort, tmp_path: Path
) -> None:
    """``keep_originals = true``: the same de-identified files, byte for byte;
    the disk cache now holds the original objects and the listings too
    (what the default keeps off the disk)."""
    config = deid_config(pacs, tmp_path, KEY, f'"{MODIFIED}"').replace(
        "[deidentify]\n", "[deidentify]\nkeep_originals = true\n"
    )
    with mounted(config, tmp_path) as m:
        for top in ("research", "rle"):
            mine = first.seen.under(top)
            theirs = {str(p.relative_to(m.path)): p.read_bytes() for p in (m.path / top).rglob("*.dcm")}
            assert sorted(mine) == sorted(theirs)
            assert [p for p in mine if mine[p] != theirs[p]] == []
        disk = tmp_path / "cache"
        assert (disk / "listings").is_dir()
        originals = [p for p in disk.rglob("*") if p.is_file() and p.read_bytes()[128:132] == b"DICM"]
        assert sum(1 for p in originals if cohort.found_in(p.read_bytes()[:-32])) >= sum(
            len(f) for f in cohort.served().values()
        )


def test_the_audit_of_a_deidentified_mount_names_the_real_patient_and_the_originals(
    pacs: Orthanc, cohort: Cohort, tmp_path: Path
) -> None:
    """The access record is the hospital's, not the researcher's: a ``cp -r``
    on a de-identified mount is recorded with the real Patient ID, accession
    number and original UIDs (what NEN 7513 and ATNA ask: whose images were
    read), under the path the reader saw, which holds none of them."""
    audit = tmp_path / "audit.jsonl"
    config = deid_config(pacs, tmp_path, KEY, f'"{MODIFIED}"') + f'\n[audit]\nfile = "{audit}"\n'
    with mounted(config, tmp_path) as m:
        copy = tmp_path / "copy"
        subprocess.run(["cp", "-r", str(m.path / "research"), str(copy)], check=True, timeout=300)
        copied = list(copy.rglob("*.dcm"))

        def reads() -> list[dict[str, Any]]:
            return [r for r in map(json.loads, audit.read_text().splitlines()) if r["action"] == "read"]

        wait_for(lambda: len(reads()) >= len(copied), "the audit lines of the copy")
    read = [r for r in reads() if r["process"] == "cp"]
    assert copied and len(read) >= len(copied)
    studies = {s.uid: s for s in cohort.studies}
    for r in read:
        study = studies[r["study"]]  # the original Study Instance UID
        assert (r["patient"], r["accession"]) == (study.patient_id, study.accession)
        assert r["result"] == "ok" and r["path"].startswith("/research/")
        assert cohort.found_in(r["path"].encode()) == []  # the path is the de-identified one
