"""The CLI's error contract without a mount: one line, the right exit code,
whatever wrapping (trio's exception groups) the error arrived in."""

from __future__ import annotations

import pytest

from trolleyfs import cli
from trolleyfs.errors import ConfigError, Unavailable, UserError
from trolleyfs.mount import fuse_options


def run_with(monkeypatch, exc: BaseException) -> int:
    def boom(args):
        raise exc

    monkeypatch.setattr(cli, "cmd_check", boom)
    return cli.main(["check", "x.toml"])


@pytest.mark.parametrize(
    ("exc", "code", "text"),
    [
        (ConfigError("p.toml", "servers.a.url", "is missing"), 2, "trolleyfs: p.toml: servers.a.url: is missing"),
        (ExceptionGroup("nursery", [ConfigError("p.toml", "k", "bad")]), 2, "trolleyfs: p.toml: k: bad"),
        (
            ExceptionGroup("outer", [ExceptionGroup("inner", [Unavailable("down", server="pacs")])]),
            1,
            "trolleyfs: pacs: down",
        ),
        (ExceptionGroup("n", [RuntimeError("fuse_session_new() failed")]), 1, "could not mount"),
    ],
)
def test_errors_are_one_line(monkeypatch, capsys, exc, code, text):
    assert run_with(monkeypatch, exc) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and text in err and "Traceback" not in err


def test_bugs_are_not_hidden(monkeypatch):
    with pytest.raises(ZeroDivisionError):
        run_with(monkeypatch, ZeroDivisionError())


def test_mount_options():
    opts = fuse_options(["ro,_netdev,nofail,noauto,x-systemd.automount", "allow_other"], "/etc/p.toml")
    assert {"ro", "default_permissions", "allow_other", "fsname=trolleyfs:/etc/p.toml"} <= opts
    assert "_netdev" not in opts and "nofail" not in opts
    assert "allow_other" not in fuse_options([], "p.toml")
    with pytest.raises(UserError, match="read-only"):
        fuse_options(["rw"])
    with pytest.raises(UserError, match="unknown mount option 'max_readahead=1'"):
        fuse_options(["max_readahead=1"])


# A config whose only fault is the value under test: without that value
# ``check`` would go on to probe the server (nothing listens at port 9: exit 1).
ISSUE_17_CONFIG = """
[servers.pacs]
search   = {{ protocol = "qido-rs", url = "http://127.0.0.1:9/dicom-web" }}
retrieve = {{ protocol = "wado-rs", url = "http://127.0.0.1:9/dicom-web" }}
{server}

[[folders]]
name = "recent"
{folder}
"""


@pytest.mark.parametrize(
    ("server", "folder", "key"),
    [
        ("", 'min_study_date = "-99999999y"', "folders[0].min_study_date"),
        ("timeout = inf", "", "servers.pacs.timeout"),
        ("timeout = nan", "", "servers.pacs.timeout"),
        ("timeout = 1e308", "", "servers.pacs.timeout"),
    ],
)
def test_a_bad_value_is_one_line_and_exit_2_before_anything_is_asked(tmp_path, capsys, server, folder, key):
    cfg = tmp_path / "p.toml"
    cfg.write_text(ISSUE_17_CONFIG.format(server=server, folder=folder))
    assert cli.main(["check", str(cfg)]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # no "config ok", no probe
    assert err.count("\n") == 1 and err.startswith(f"trolleyfs: {cfg}: {key}: "), err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["mount", "unmount", "check", "prefetch", "webdav", "demo"])
def test_every_command_has_help_with_examples_and_exit_codes(capsys, command):
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: trolleyfs {command}")
    description = out.split("\n\n")[1]
    assert len(description.split()) >= 10, out  # says what it does, not only its name
    examples = out[out.index("examples:") :]
    assert f"trolleyfs {command}" in examples
    codes = out[out.index("exit codes:") :]
    assert all(f"  {code}  " in codes for code in ("0", "2")), codes


def test_version(capsys):
    from trolleyfs import __version__

    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"trolleyfs {__version__}"


def test_the_main_help_names_every_command_and_where_to_read_on(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for command in ("mount", "unmount", "check", "prefetch", "webdav", "demo"):
        assert f"    {command} " in out or f"    {command}\n" in out, command
    assert "examples:" in out and "docs/" in out
