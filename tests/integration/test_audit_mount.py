"""The audit trail through real mounts of the session's Orthanc and through
``trolleyfs webdav``: a ``cp -r`` of N files writes N read lines (the
reader's uid, user, pid and process, each file's path and UIDs, where its
bytes came from, how many) and a list line per directory; another user's
read through ``-o allow_other`` is recorded under that user; a WebDAV GET
under the authenticated WebDAV user; SIGHUP reopens the file (logrotate's
``create``) and the mount goes on."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.mounting import mounted, qido_config, wait_for
from tests.webdav import serving
from trolleyfs.audit.record import SOURCES

pytestmark = pytest.mark.integration

SERIES = "2021-03-04 TEST ALICE CT Chest/001 CT Axial 5mm"  # 12 files
FOLDER = '[[folders]]\nname = "alice"\nquery = { PatientID = "P001" }\n'


def audit_config(orthanc, audit: Path, extra: str = "") -> str:
    return qido_config(orthanc, FOLDER, extra=extra) + f'\n[audit]\nfile = "{audit}"\n'


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def reads(path: Path, process: str | None = None) -> list[dict[str, Any]]:
    return [r for r in lines(path) if r["action"] == "read" and (process is None or r["process"] == process)]


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory other users can reach (pytest's temp dirs are root's only)."""
    d = Path(tempfile.mkdtemp(prefix="trolleyfs-audit-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_cp_r_of_n_files_writes_n_lines_naming_the_reader_and_the_objects(orthanc, uid_of, tmp_path):
    audit = tmp_path / "audit.jsonl"
    with mounted(audit_config(orthanc, audit), tmp_path) as m:
        series = m.path / "alice" / SERIES
        uids = {f.name: uid_of(f) for f in series.iterdir()}  # (a file's own xattrs would fetch it)
        series_uid = os.getxattr(series, "user.dicom.SeriesInstanceUID").decode()
        study_uid = os.getxattr(series.parent, "user.dicom.StudyInstanceUID").decode()
        cp = subprocess.Popen(["cp", "-r", str(series), str(tmp_path / "copy")])
        assert cp.wait(300) == 0
        wait_for(lambda: len(reads(audit, "cp")) >= len(uids), "the audit lines of the copy")
        mode = stat.S_IMODE(audit.stat().st_mode)
        written = m.stats()["audit"]
    got = reads(audit, "cp")
    assert len(got) == len(uids) == 12
    me = pwd.getpwuid(os.getuid()).pw_name
    for r in got:
        name = r["path"].rsplit("/", 1)[1]
        assert r["path"] == f"/alice/{SERIES}/{name}"
        assert (r["uid"], r["user"], r["pid"], r["process"]) == (os.getuid(), me, cp.pid, "cp")
        assert (r["study"], r["series"], r["instance"]) == (study_uid, series_uid, uids[name])
        assert r["bytes"] == (tmp_path / "copy" / name).stat().st_size and r["result"] == "ok"
        assert r["source"] in SOURCES and r["server"] == "pacs" and r["patient"] == "P001"
        assert r["accession"] == "A1001" and r["sop_class"] == "1.2.840.10008.5.1.4.1.1.2"
    assert "pacs" in {r["source"] for r in got}  # nothing was cached before: the first came from the PACS
    listed = [r for r in lines(audit) if r["action"] == "list" and r["process"] == "cp"]
    assert [r["path"] for r in listed] == [f"/alice/{SERIES}"] and listed[0]["series"] == series_uid
    assert mode == 0o600 and written["healthy"] and written["dropped"] == 0


def test_another_users_read_through_allow_other_is_recorded_as_that_user(orthanc, world_dir):
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv is not installed (util-linux)")
    nobody = pwd.getpwnam("nobody")
    audit = world_dir / "audit.jsonl"
    with mounted(audit_config(orthanc, audit), world_dir, "-o", "allow_other") as m:
        first = sorted((m.path / "alice" / SERIES).iterdir())[0]
        as_nobody = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
        res = subprocess.run([*as_nobody, "cat", str(first)], capture_output=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert res.stdout[128:132] == b"DICM"
        wait_for(lambda: len(reads(audit, "cat")) == 1, "the audit line of nobody's read")
    (r,) = reads(audit, "cat")
    assert (r["uid"], r["user"]) == (nobody.pw_uid, "nobody")
    assert r["path"] == f"/alice/{SERIES}/{first.name}" and r["bytes"] == len(res.stdout)


def test_sighup_reopens_the_audit_file_and_the_mount_goes_on(orthanc, tmp_path):
    audit = tmp_path / "audit.jsonl"
    with mounted(audit_config(orthanc, audit), tmp_path) as m:
        files = sorted((m.path / "alice" / SERIES).iterdir())
        files[0].read_bytes()
        wait_for(lambda: len(reads(audit)) == 1, "the first line")
        audit.rename(tmp_path / "audit.jsonl.1")  # logrotate's create mode: move, then SIGHUP
        assert m.proc is not None
        m.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: m.stats()["audit"]["reopen_requests"] == 1, "the SIGHUP to be taken")
        files[1].read_bytes()
        wait_for(lambda: len(reads(audit)) == 1, "a line in the new file")
        assert os.path.ismount(m.path)
    assert [r["path"].rsplit("/", 1)[1] for r in reads(tmp_path / "audit.jsonl.1")] == [files[0].name]
    assert [r["path"].rsplit("/", 1)[1] for r in reads(audit)] == [files[1].name]
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600


def test_a_webdav_get_is_recorded_under_the_webdav_user(orthanc, tmp_path):
    audit = tmp_path / "audit.jsonl"
    users = '\n[webdav]\nusers = { alice = { password_env = "TFS_TEST_ALICE_PW" } }\n'
    cfg = audit_config(orthanc, audit) + users
    env = {"TFS_TEST_ALICE_PW": "wonderland"}
    with serving(cfg, tmp_path, env=env, auth=("alice", "wonderland")) as dav, dav.client() as c:
        r = c.get(dav.href(f"alice/{SERIES}/0001.dcm"))  # (the walk to it lists no collection's members)
        r.raise_for_status()
        listing = c.request("PROPFIND", dav.href(f"alice/{SERIES}"), headers={"Depth": "1"})
        assert listing.status_code == 207
        with pytest.raises(httpx.HTTPStatusError):
            httpx.get(dav.href(f"alice/{SERIES}/0002.dcm"), timeout=60).raise_for_status()  # no password: 401
        wait_for(lambda: len(reads(audit)) == 1, "the GET's line")
    (got,) = reads(audit)
    assert (got["user"], got["uid"], got["pid"], got["process"]) == ("alice", None, None, "")
    assert got["path"] == f"/alice/{SERIES}/0001.dcm" and got["bytes"] == len(r.content)
    assert got["source"] == "pacs" and got["instance"] and got["series"] and got["study"]
    listed = [x for x in lines(audit) if x["action"] == "list"]
    assert [x["path"] for x in listed] == [f"/alice/{SERIES}"] and listed[0]["user"] == "alice"
