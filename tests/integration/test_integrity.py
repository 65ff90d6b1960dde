"""A file holds exactly the instance its path names, or it fails.  Through
real mounts, servers that lie about what they send, over every retrieve
protocol: an object whose file meta names the instance asked for while its
dataset is another one, and an object that is the instance asked for but of
another study, series and patient, and one of its own study and series but
another patient.  Each is refused (EIO, one log line naming
both), nothing of it is cached (the same files read exactly once the server
tells the truth), and no file ever holds a foreign byte."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest

from tests.integration.brokenweb import config, no_traceback, qido, read_errno, series_dirs, wado
from tests.mounting import mounted
from tests.servers.dcmqrscp import free_port
from tests.servers.lyingscp import LyingScp
from tests.servers.rad69 import Rad69Server

pytestmark = pytest.mark.integration

REFUSALS = {
    "rewritten-meta": "refused: its file meta names instance",
    "foreign-content": "where it was listed",
    "other-patient": "it belongs to patient ID 'SOMEONE-ELSE', not to",
}


def _retrieve(protocol: str, web, rad69: Rad69Server | None) -> str:
    if protocol == "rad69":
        assert rad69 is not None
        return f'{{ protocol = "rad69", url = "{rad69.url}" }}'
    return {"wado-rs": wado(web), "wado-uri": f'{{ protocol = "wado-uri", url = "{web.root_url}/wado" }}'}[protocol]


@pytest.mark.parametrize("lie", sorted(REFUSALS))
@pytest.mark.parametrize("protocol", ["wado-rs", "wado-uri", "rad69"])
def test_an_object_that_is_not_the_one_its_path_names_is_refused_and_never_kept(
    web, index, tmp_path, uid_of, lie, protocol
):
    """Every file of a series is read (the first alone, the rest by the series
    readahead where the protocol has one, then alone again): none opens, the
    log says why, and once the server tells the truth every file is exact."""
    rad69 = Rad69Server(index).start()
    try:
        web.lie, rad69.mode = lie, lie
        with mounted(config(qido(web), _retrieve(protocol, web, rad69)), tmp_path) as m:
            series = series_dirs(m)[0]
            files = sorted(series.iterdir())
            assert len(files) > 1  # rewritten-meta sends another instance of the series
            for f in files:
                assert read_errno(f) == errno.EIO, f
            log = m.log_text()
            assert REFUSALS[lie] in log, log[-3000:]
            if lie == "foreign-content":
                study = index.datasets[uid_of(files[0])].StudyInstanceUID
                assert f"it belongs to study {study}.9, not to study {study} where it was listed" in log
            web.lie, rad69.mode = None, "ok"
            for f in files:
                assert f.read_bytes() == index.files[uid_of(f)], f
            assert m.stats()["instances_fetched"] >= len(files)
            no_traceback(m)
    finally:
        rad69.stop()


def test_a_copy_of_a_series_from_a_lying_server_copies_nothing_foreign(web, index, tmp_path, uid_of):
    """``cp -r`` of a study whose server files another patient's objects under
    it: cp fails on every file, and the copy holds no byte of them."""
    web.lie = "foreign-content"
    with mounted(config(qido(web), wado(web)), tmp_path) as m:
        study = series_dirs(m)[0].parent
        dest = tmp_path / "copy"
        done = subprocess.run(["cp", "-r", str(study), str(dest)], capture_output=True, text=True, timeout=300)
        assert done.returncode != 0 and "Input/output error" in done.stderr
        for f in dest.rglob("*.dcm"):  # cp may leave empty files behind: never a foreign byte
            assert f.read_bytes() == b"", f
        no_traceback(m)


@pytest.mark.parametrize("protocol", ["c-get", "c-move"])
def test_dimse_objects_of_another_study_are_refused(web, index, tmp_path, uid_of, protocol):
    """C-GET and C-MOVE: the peer sends, for each instance asked for, an object
    with its SOP Instance UID but of another study, series and patient."""
    store_port = free_port()
    with LyingScp(index, destinations={"TROLLEYFS": ("127.0.0.1", store_port)}) as liar:
        ae = f'host = "{liar.host}", port = {liar.port}, called_aet = "{liar.aet}"'
        extra = f', store_port = {store_port}, store_host = "127.0.0.1"' if protocol == "c-move" else ""
        retrieve = f'{{ protocol = "{protocol}", {ae}{extra} }}'
        with mounted(config(qido(web), retrieve), tmp_path, "--no-check") as m:
            files = sorted(series_dirs(m)[0].iterdir())
            for f in files:
                assert read_errno(f) == errno.EIO, f
            study = index.datasets[uid_of(files[0])].StudyInstanceUID
            log = m.log_text()
            assert f"it belongs to study {study}.9, not to study {study} where it was listed" in log, log[-3000:]
            assert liar.sent >= len(files)
            no_traceback(m)


@pytest.mark.parametrize("answer", ["html_200", "empty_200"])
@pytest.mark.parametrize("protocol", ["wado-rs", "wado-uri"])
def test_an_html_page_or_an_empty_body_under_200_is_no_file(web, index, tmp_path, uid_of, answer, protocol):
    """A portal's error page, or nothing, with status 200: EIO, then exact."""
    setattr(web, answer, True)
    with mounted(config(qido(web), _retrieve(protocol, web, None)), tmp_path) as m:
        files = sorted(series_dirs(m)[0].iterdir())
        for f in files:
            assert read_errno(f) == errno.EIO, f
        setattr(web, answer, False)
        for f in files:
            assert f.read_bytes() == index.files[uid_of(f)], f
        no_traceback(m)


INJECTIONS = [  # (a plain ".." is the kernel's: it never reaches the mount as a name)
    "%2E%2E",
    "..%2F..%2Fetc",
    "PatientName=%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "PatientName=*%00*",
    "AccessionNumber=A1001%26PatientName=*",
    "PatientName=*,PatientName=%2A",
    "StudyDate=20210304%0A",
]


def test_percent_encoded_injection_in_query_paths_leaves_the_tree_and_asks_nothing_wrong(web, index, tmp_path):
    """Names that try to climb out of the tree, smuggle a second parameter or
    a NUL into the search: each is a clear ENOENT (no request) or a search
    for exactly the value written (an empty result), and the mount holds."""
    with mounted(config(qido(web), wado(web)), tmp_path) as m:
        before = len(web.requests)
        for root in ("query", "by-accession", "by-patient"):
            for name in INJECTIONS:
                path = m.path / root / name
                try:
                    found = os.listdir(path)
                except OSError as exc:
                    assert exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EINVAL), (path, exc)
                    continue
                assert found == [], (path, found)  # nothing matches such a value literally
        for req in web.requests[before:]:
            keys = [k for k, _, _ in (p.partition("=") for p in req.raw_query.split("&")) if k != "includefield"]
            assert len(keys) == len(set(keys)), req.raw_query  # no parameter smuggled in
            assert "%00" not in req.raw_query and "\x00" not in req.raw_query, req.raw_query
        assert os.listdir(m.path / "all")  # the mount holds
        no_traceback(m)
