"""The whole path through the kernel: a real Orthanc (QIDO-RS + WADO-RS), a
real FUSE mount, and the programs people use on it."""

from __future__ import annotations

import errno
import mmap
import os
import shutil
import subprocess

import pydicom
import pytest

from tests.mounting import TROLLEYFS_BIN, mounted, qido_config, wait_process_gone
from trolleyfs.demo import sampledata

pytestmark = pytest.mark.integration

FOLDERS = """
[[folders]]
name = "all"
query = {}

[[folders]]
name = "test-ct"
query = { PatientName = "TEST*", ModalitiesInStudy = "CT" }

[[folders]]
name = "since-2022"
query = {}
min_study_date = "2022-01-01"

[[folders]]
name = "bob-uid"
query = { PatientID = "P002" }
include_fields = ["PatientBirthDate", "InstitutionName"]
"""

EXPECTED_ALL = {
    "2019-09-11 OTHER DAVE MR Knee",
    "2021-03-04 TEST ALICE CT Chest",
    "2022-07-20 TEST BOB MR Brain",
    "2023-01-15 TEST ALICE CT Abdomen",
    "2024-02-02 TEST CAROL_.._X CT Head_Neck",
}


@pytest.fixture(scope="module")
def mnt(orthanc, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mount")
    # a second server entry on the same Orthanc with page_size = 2 forces
    # limit/offset paging over the 5 studies of "all-paged".  (Orthanc 1.10
    # applies offset before computed filters such as ModalitiesInStudy, so
    # filtered folders are not paged here; see the README.)
    paged = f"""
[servers.paged]
search   = {{ protocol = "qido-rs", url = "{orthanc.dicomweb}", page_size = 2 }}
retrieve = {{ protocol = "wado-rs", url = "{orthanc.dicomweb}" }}

[[folders]]
name = "all-paged"
server = "paged"
query = {{}}
"""
    cfg = (
        qido_config(
            orthanc,
            FOLDERS.replace('name = "all"\n', 'name = "all"\nserver = "pacs"\n')
            .replace('name = "test-ct"\n', 'name = "test-ct"\nserver = "pacs"\n')
            .replace('name = "since-2022"\n', 'name = "since-2022"\nserver = "pacs"\n')
            .replace('name = "bob-uid"\n', 'name = "bob-uid"\nserver = "pacs"\n'),
        )
        + paged
    )
    with mounted(cfg, tmp) as m:
        yield m


def test_root_lists_folders_and_by_uid(mnt):
    assert sorted(os.listdir(mnt.path)) == sorted(
        [
            ".trolleyfs",
            "all",
            "all-paged",
            "by-accession",
            "by-patient",
            "by-uid",
            "bob-uid",
            "query",
            "since-2022",
            "test-ct",
        ]
    )


def test_listing_names_and_does_not_download(mnt):
    before = mnt.stats()["instances_fetched"]
    assert set(os.listdir(mnt.path / "all")) == EXPECTED_ALL
    assert set(os.listdir(mnt.path / "all-paged")) == EXPECTED_ALL  # all 5 despite page_size = 2
    study = mnt.path / "all" / "2022-07-20 TEST BOB MR Brain"
    assert sorted(os.listdir(study)) == ["001 MR T1 sag", "002 MR T2 ax", "003 MR FLAIR"]
    assert sorted(os.listdir(study / "003 MR FLAIR")) == ["0001.dcm", "0002.dcm", "0003.dcm", "0004.dcm"]
    # `ls` (names only) and find never fetch an instance
    subprocess.run(["find", str(mnt.path / "all")], check=True, capture_output=True)
    assert mnt.stats()["instances_fetched"] == before


def test_ls_l_asks_the_unsupported_attributes_once_not_per_entry(mnt):
    # ls -l asks each entry for its security label and ACLs; "not supported"
    # (rather than "none") lets it stop after the first: a big folder costs no extra round trips
    os.listdir(mnt.path / "all")  # listed first: only ls -l's own requests are counted
    before = mnt.stats()["fuse_ops"].get("getxattr", 0)
    out = subprocess.run(["ls", "-l", str(mnt.path / "all")], check=True, capture_output=True, text=True).stdout
    asked = mnt.stats()["fuse_ops"]["getxattr"] - before
    assert len(out.splitlines()) == 1 + len(EXPECTED_ALL)
    assert 0 < asked <= 2, asked  # security.selinux and system.posix_acl_access, once each
    study = mnt.path / "all" / "2022-07-20 TEST BOB MR Brain"
    assert os.getxattr(study, "user.dicom.PatientID") == b"P002"  # the user.* attributes are all still there
    with pytest.raises(OSError) as err:
        os.getxattr(study, "security.selinux")
    assert err.value.errno == errno.ENOTSUP


def test_folder_queries_filter(mnt):
    assert set(os.listdir(mnt.path / "test-ct")) == {
        "2021-03-04 TEST ALICE CT Chest",
        "2023-01-15 TEST ALICE CT Abdomen",
        "2024-02-02 TEST CAROL_.._X CT Head_Neck",
    }
    assert set(os.listdir(mnt.path / "since-2022")) == {
        "2022-07-20 TEST BOB MR Brain",
        "2023-01-15 TEST ALICE CT Abdomen",
        "2024-02-02 TEST CAROL_.._X CT Head_Neck",
    }
    assert os.listdir(mnt.path / "bob-uid") == ["2022-07-20 TEST BOB MR Brain"]


def test_every_file_is_byte_identical_and_stat_agrees(mnt, orthanc, sample_files):
    files = sorted((mnt.path / "all").rglob("*.dcm"))
    assert len(files) == len(sample_files)
    for f in files:
        data = f.read_bytes()
        uid = os.getxattr(f, "user.dicom.SOPInstanceUID").decode()
        assert data == orthanc.instance_file(uid), f
        assert os.stat(f).st_size == len(data)


def test_cp_r_copies_byte_identical(mnt, orthanc, tmp_path):
    src = mnt.path / "test-ct"
    subprocess.run(["cp", "-r", str(src), str(tmp_path / "copy")], check=True)
    copied = sorted((tmp_path / "copy").rglob("*.dcm"))
    assert len(copied) == 12 + 6 + 8 + 3 + 3
    for f in copied:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        assert f.read_bytes() == orthanc.instance_file(ds.SOPInstanceUID)
    # the copy has the mount's layout
    rel = {str(p.relative_to(tmp_path / "copy")) for p in copied}
    assert {str(p.relative_to(src)) for p in src.rglob("*.dcm")} == rel


def test_a_cold_copy_reads_readahead_from_the_page_cache(orthanc, tmp_path):
    # the series readahead stores each object into the kernel's page cache as
    # it arrives, and each file's open waits for that: only the first file of
    # each series (fetched alone) is read through trolleyfs, and every byte is right
    with mounted(qido_config(orthanc, FOLDERS), tmp_path) as m:
        src = m.path / "all" / "2021-03-04 TEST ALICE CT Chest"
        series = sorted(os.listdir(src))
        subprocess.run(["cp", "-r", str(src), str(tmp_path / "copy")], check=True)
        reads = m.stats()["fuse_ops"].get("read", 0)
    copied = sorted((tmp_path / "copy").rglob("*.dcm"))
    assert len(series) == 2 and len(copied) == 12 + 6
    for f in copied:
        assert f.read_bytes() == orthanc.instance_file(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
    assert reads <= 2 * len(series), reads  # not one or more per file: 18 or more


def test_consumers(mnt, tmp_path, orthanc):
    series = mnt.path / "all" / "2021-03-04 TEST ALICE CT Chest" / "001 CT Axial 5mm"
    f = series / "0003.dcm"
    want = orthanc.instance_file(os.getxattr(f, "user.dicom.SOPInstanceUID").decode())
    # cat
    assert subprocess.run(["cat", str(f)], check=True, capture_output=True).stdout == want
    # python open().read() in small pieces and mmap
    with open(f, "rb") as fh:
        assert b"".join(iter(lambda: fh.read(1000), b"")) == want
    with open(f, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        assert mm[:] == want
    # pydicom
    ds = pydicom.dcmread(f)
    assert ds.InstanceNumber == 3 and ds.pixel_array.shape == (64, 64)
    # dcmtk
    out = subprocess.run(["dcmdump", str(f)], check=True, capture_output=True, text=True).stdout
    assert "TEST^ALICE" in out
    # rsync
    subprocess.run(["rsync", "-r", str(series) + "/", str(tmp_path / "rs")], check=True)
    assert (tmp_path / "rs" / "0003.dcm").read_bytes() == want
    assert len(list((tmp_path / "rs").iterdir())) == 12
    # dcm2niix over a series directory
    out_dir = tmp_path / "nii"
    out_dir.mkdir()
    res = subprocess.run(["dcm2niix", "-z", "n", "-o", str(out_dir), str(series)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert list(out_dir.glob("*.nii")), res.stdout


def test_writes_answer_erofs(mnt):
    study_dir = mnt.path / "all" / "2022-07-20 TEST BOB MR Brain"
    f = next((study_dir / "001 MR T1 sag").iterdir())
    attempts = [
        lambda: open(mnt.path / "new-file", "w"),  # noqa: SIM115 - the open itself must fail
        lambda: open(f, "r+b"),  # noqa: SIM115
        lambda: open(f, "ab"),  # noqa: SIM115
        lambda: os.mkdir(study_dir / "x"),
        lambda: os.unlink(f),
        lambda: os.rmdir(study_dir / "001 MR T1 sag"),
        lambda: os.rename(f, f.with_name("y.dcm")),
        lambda: os.symlink("/etc/passwd", mnt.path / "all" / "link"),
        lambda: os.chmod(f, 0o777),
        lambda: os.truncate(f, 0),
        lambda: os.setxattr(f, "user.x", b"1"),
        lambda: os.utime(f, (0, 0)),
    ]
    for attempt in attempts:
        with pytest.raises(OSError) as exc:
            attempt()
        assert exc.value.errno == errno.EROFS, attempt
    # and nothing changed
    assert f.stat().st_mode & 0o777 == 0o444


def test_desktop_probes_are_enoent_without_requests(mnt):
    os.listdir(mnt.path / "all")
    before = mnt.requests()
    for name in (".Trash", ".Trash-1000", ".xdg-volume-info", "desktop.ini", "autorun.inf", ".hidden"):
        for where in (mnt.path, mnt.path / "all", mnt.path / "by-uid"):
            assert not (where / name).exists()
    assert not (mnt.path / "by-uid" / "not-a-uid").exists()
    assert mnt.requests() == before


def test_by_uid_finds_any_study(mnt, tmp_path):
    dave = sampledata.uid("study", "P004", 4)  # not in test-ct, since-2022 or bob-uid
    assert not (mnt.path / "by-uid" / "1.2.3.4.5.6.7").exists()
    d = mnt.path / "by-uid" / dave
    assert sorted(os.listdir(d)) == ["001 MR PD fs"]
    assert len(os.listdir(d / "001 MR PD fs")) == 4
    assert dave in os.listdir(mnt.path / "by-uid")


def test_names_are_stable_across_remounts(orthanc, tmp_path):
    cfg = qido_config(orthanc, FOLDERS)
    trees = []
    for i in range(2):
        with mounted(cfg, tmp_path, name=f"m{i}") as m:
            trees.append(sorted(str(p.relative_to(m.path)) for p in (m.path / "all").rglob("*")))
    assert trees[0] == trees[1] and len(trees[0]) == 5 + 9 + 50


def test_daemon_mount_and_unmount(orthanc, tmp_path):
    cfg = tmp_path / "d.toml"
    cfg.write_text(qido_config(orthanc, FOLDERS))
    mnt = tmp_path / "d"
    mnt.mkdir()
    log = tmp_path / "d.log"
    try:
        res = subprocess.run(
            [TROLLEYFS_BIN, "mount", "--log-file", str(log), str(cfg), str(mnt)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        assert os.path.ismount(mnt)  # ready when the command returns
        assert "all" in os.listdir(mnt)
        res = subprocess.run([TROLLEYFS_BIN, "unmount", str(mnt)], capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        assert not os.path.ismount(mnt)
        wait_process_gone(str(cfg))  # the daemon is gone once unmounted
        assert "unmounted" in log.read_text()
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)])
        subprocess.run(["pkill", "-f", str(cfg)])


def test_sigterm_unmounts_and_exits_zero(orthanc, tmp_path):
    with mounted(qido_config(orthanc, FOLDERS), tmp_path) as m:
        os.listdir(m.path / "all")
        m.proc.terminate()
        assert m.proc.wait(15) == 0
        assert not os.path.ismount(m.path)


def test_which_tools_exist():
    for tool in ("dcmdump", "dcm2niix", "rsync", "fusermount3"):
        assert shutil.which(tool), f"{tool} missing: `make test` installs it"
