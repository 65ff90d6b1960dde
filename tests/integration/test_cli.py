"""The command line as a user meets it: one-line errors, exit codes, nothing
mounted after a mistake; `check` explains a broken server.

Start-up costs seconds on a slow machine, so the installed console script runs
as a real process only where the path under test needs one (a daemon forking,
the script's own start-up); other errors, which happen before anything forks or
mounts, go through the same ``cli.main`` in this process."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.mounting import TROLLEYFS_BIN, force_unmount, qido_config
from trolleyfs import cli
from trolleyfs.demo.orthanc import free_port

pytestmark = pytest.mark.integration

FOLDER = '\n[[folders]]\nname = "all"\nquery = {}\n'


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The installed ``trolleyfs`` script in a process of its own."""
    return subprocess.run(
        [TROLLEYFS_BIN, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


@pytest.fixture
def run_here(capsys):
    """``cli.main`` in this process, with its output as a finished process has it."""

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        capsys.readouterr()
        code = cli.main(list(args))
        out = capsys.readouterr()
        return subprocess.CompletedProcess(["trolleyfs", *args], code, out.out, out.err)

    return call


@pytest.fixture
def mnt(tmp_path):
    m = tmp_path / "mnt"
    m.mkdir()
    yield m
    force_unmount(m)


def assert_one_line_failure(res: subprocess.CompletedProcess[str], *words: str) -> None:
    assert res.returncode != 0
    err = res.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("trolleyfs: ")
    for w in words:
        assert w in err, err


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[servers.pacs\n", ("not valid TOML",)),
        ('[servers.pacs]\nsearch = { protocol = "qido-rs", url = "http://x" }\n', ("servers.pacs.retrieve", "missing")),
        (
            '[servers.p]\nsearch = { protocol = "qido-rs", url = "http://x" }\n'
            'retrieve = { protocol = "wado-rs", url = "http://x" }\n[[folders]]\nname = "a"\nquery = { Foo = "1" }\n',
            ("folders[0].query.Foo", "unknown query key"),
        ),
        (
            '[servers.p]\nsearch = { protocol = "qido-rs", url = "http://x" }\n'
            'retrieve = { protocol = "wado-rs", url = "http://x" }\n[[folders]]\nname = "a"\nmin_study_date = "yesterday"\n',
            ("folders[0].min_study_date", "is not a date"),
        ),
        (
            '[servers.p]\nsearch = { protocol = "qido-rs", url = "http://x" }\n'
            'retrieve = { protocol = "wado-rs", url = "http://x" }\n[[folders]]\nname = "a"\nserver = "q"\n',
            ("folders[0].server", "unknown server 'q'"),
        ),
    ],
)
def test_bad_config_one_line_and_nothing_mounted(tmp_path, mnt, run_here, text, words):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    for args in (["mount", str(cfg), str(mnt)], ["mount", "--foreground", str(cfg), str(mnt)], ["check", str(cfg)]):
        res = run_here(*args)
        assert res.returncode == 2
        assert_one_line_failure(res, str(cfg), *words)
        assert not os.path.ismount(mnt)


def test_bad_config_from_the_installed_script(tmp_path, mnt):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[servers.pacs\n")
    for args in (["mount", str(cfg), str(mnt)], ["check", str(cfg)]):
        res = run(*args)
        assert res.returncode == 2
        assert_one_line_failure(res, str(cfg), "not valid TOML")
        assert not os.path.ismount(mnt)


def test_missing_config_and_bad_mountpoint(tmp_path, mnt, orthanc, run_here):
    run = run_here
    assert_one_line_failure(run("mount", str(tmp_path / "nope.toml"), str(mnt)), "nope.toml", "no such file")
    cfg = tmp_path / "ok.toml"
    cfg.write_text(qido_config(orthanc, FOLDER))
    assert_one_line_failure(run("mount", str(cfg), str(tmp_path / "nodir")), "does not exist")
    assert_one_line_failure(run("mount", str(cfg), str(cfg)), "not a directory")
    assert_one_line_failure(run("mount", "-o", "rw", str(cfg), str(mnt)), "read-only")
    assert_one_line_failure(run("mount", "-o", "bogus_opt", str(cfg), str(mnt)), "unknown mount option")
    assert_one_line_failure(run("unmount", str(mnt)), "nothing is mounted")
    assert not os.path.ismount(mnt)


def test_unreachable_server_is_refused_before_mounting(tmp_path, mnt):
    cfg = tmp_path / "down.toml"
    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    cfg.write_text(
        f'[servers.pacs]\nsearch = {{ protocol = "qido-rs", url = "{url}" }}\n'
        f'retrieve = {{ protocol = "wado-rs", url = "{url}" }}\ntimeout = 3\nretries = 0\n' + FOLDER
    )
    for args in (["mount", str(cfg), str(mnt)], ["mount", "-f", str(cfg), str(mnt)]):
        res = run(*args)
        assert_one_line_failure(res, "pacs", "cannot connect")
        assert not os.path.ismount(mnt)


def test_wrong_password(tmp_path, mnt, orthanc_auth):
    cfg = tmp_path / "pw.toml"
    cfg.write_text(
        qido_config(
            orthanc_auth, FOLDER, extra='auth = { type = "basic", username = "alice", password = "wrong-pw-123" }'
        )
    )
    cfg.chmod(0o600)
    res = run("mount", str(cfg), str(mnt))
    assert_one_line_failure(res, "pacs", "401")
    assert "wrong-pw-123" not in res.stderr
    assert not os.path.ismount(mnt)


def test_check_reports_each_server(tmp_path, orthanc, orthanc_auth, run_here):
    run = run_here
    cfg = tmp_path / "two.toml"
    good = qido_config(orthanc, "", server="good")
    bad = qido_config(orthanc_auth, "", server="locked")
    cfg.write_text(good + bad)
    res = run("check", str(cfg))
    assert res.returncode == 1
    lines = res.stdout.splitlines()
    assert "config ok" in lines[0]
    good_rows = [ln for ln in lines if ln.startswith("good ")]
    locked_rows = [ln for ln in lines if ln.startswith("locked ")]
    assert len(good_rows) == 3 and all("ok:" in ln for ln in good_rows)  # search, retrieve, limits
    assert any("read one instance" in ln for ln in good_rows)
    assert any(ln.split()[1] == "limits" and ln.endswith("ok: no limits") for ln in good_rows)
    assert any("FAILED" in ln and "401" in ln for ln in locked_rows)
    # with the right password, all ok and exit 0
    cfg.write_text(
        good
        + bad.replace(
            "timeout = 10", 'timeout = 10\nauth = { type = "basic", username = "alice", password = "secret" }'
        )
    )
    cfg.chmod(0o600)
    res = run("check", str(cfg))
    assert res.returncode == 0, res.stdout + res.stderr
