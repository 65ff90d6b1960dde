"""The ``[webdav]`` table: the documented shape parses, every mistake is one
ConfigError naming the key, the loopback rule, and the config read with the
table as without it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from trolleyfs.config import ConfigError, load, parse
from trolleyfs.errors import UserError
from trolleyfs.tomltable import Table
from trolleyfs.webdav.settings import Listen, WebdavConfig, check_exposure, is_loopback, parse_listen, parse_webdav

BASE = """
[servers.pacs]
search   = { protocol = "qido-rs", url = "http://127.0.0.1:8042/dicom-web" }
retrieve = { protocol = "wado-rs", url = "http://127.0.0.1:8042/dicom-web" }
auth     = { type = "basic", username = "alice", password_env = "TFS_UNIT_PACS_PW" }
timeout = 7.5

[[folders]]
name = "recent \\"ct\\" ü"
query = { ModalitiesInStudy = "CT", PatientName = "TEST*" }
min_study_date = "-7d"
include_fields = ["PatientBirthDate"]

[[folders]]
name = "old"
query = {}
max_study_date = 2020-01-01

[cache]
memory_mb = 64
"""


def table(data: dict[str, Any]) -> Table:
    return Table("pacs.toml", "webdav", data)


def test_the_documented_table_parses(tmp_path, monkeypatch):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    monkeypatch.setenv("TFS_UNIT_ALICE", "pw-alice")
    (tmp_path / "bob.pw").write_text("pw-bob\n")
    wd = parse_webdav(
        table(
            {
                "listen": "0.0.0.0:8443",
                "tls_cert": str(cert),
                "tls_key": str(key),
                "users": {
                    "alice": {"password_env": "TFS_UNIT_ALICE"},
                    "bob": {"password_file": str(tmp_path / "bob.pw")},
                },
                "threads": 8,
                "sizes": "known",
            }
        )
    )
    assert wd.listen == Listen("0.0.0.0", 8443) and wd.tls and wd.url() == "https://0.0.0.0:8443/"
    assert {u: s.get() for u, s in wd.users.items()} == {"alice": "pw-alice", "bob": "pw-bob"}
    assert "pw-alice" not in repr(wd)  # secrets never show in reprs, so not in logs
    assert wd.threads == 8 and wd.sizes == "known" and not wd.allow_insecure_remote
    default = parse_webdav(table({}))
    assert default.listen == Listen("127.0.0.1", 8080) and not default.tls and not default.users
    assert default.sizes == "fetch"


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        ({"listen": "8080"}, "webdav.listen", "HOST:PORT"),
        ({"listen": "1.2.3.4:70000"}, "webdav.listen", "out of range"),
        ({"tls_cert": "/nonexistent.pem"}, "webdav.tls_key", "give both"),
        ({"tls_cert": "/no/c.pem", "tls_key": "/no/k.pem"}, "webdav.tls_cert", "no such file"),
        ({"users": {"alice": {"password_env": "TFS_UNIT_UNSET_VAR"}}}, "webdav.users.alice.password_env", "not set"),
        ({"users": {"alice": {}}}, "webdav.users.alice.password", "is missing"),
        ({"users": {"a:b": {"password": "x"}}}, 'webdav.users."a:b"', "user name"),
        ({"users": {"alice": {"password": ""}}}, "webdav.users.alice", "empty"),
        ({"users": {"alice": {"password": "x", "role": "admin"}}}, "webdav.users.alice.role", "unknown key"),
        ({"threads": 0}, "webdav.threads", "between"),
        ({"sizes": "always"}, "webdav.sizes", "fetch, known"),
        ({"listne": "x"}, "webdav.listne", "unknown key"),
        ({"allow_insecure_remote": "yes"}, "webdav.allow_insecure_remote", "boolean"),
    ],
)
def test_each_mistake_names_its_key(data, key, words):
    with pytest.raises(ConfigError) as err:
        parse_webdav(table(data))
    assert err.value.key == key
    assert words in err.value.problem


def test_listen_forms():
    assert parse_listen("[::1]:8080") == Listen("::1", 8080)
    assert str(parse_listen("[::1]:8080")) == "[::1]:8080"
    assert parse_listen(":8080") == Listen("0.0.0.0", 8080)
    assert parse_listen("localhost:1") == Listen("localhost", 1)
    for bad in ("[zz]:80", "host", "a:b:80", "1.2.3.4:0"):
        with pytest.raises(ValueError, match=r"is not HOST:PORT|out of range"):
            parse_listen(bad)


def test_beyond_loopback_needs_tls_and_users():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.3.4.5", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "pacs.example.org"))
    loop = parse_webdav(table({}))
    assert check_exposure(loop) == []  # loopback: anonymous plain HTTP is fine
    wide = parse_webdav(table({"listen": "0.0.0.0:8080", "users": {"alice": {"password": "x"}}}))
    with pytest.raises(UserError, match=r"without TLS \(tls_cert, tls_key\).*--allow-insecure-remote"):
        check_exposure(wide)
    (warning,) = check_exposure(wide, insecure_flag=True)
    assert "as told" in warning
    told = parse_webdav(table({"listen": "10.1.2.3:80", "allow_insecure_remote": True}))
    assert "without TLS (tls_cert, tls_key) and users" in check_exposure(told)[0]


def test_the_config_with_the_table_is_the_config_without_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TFS_UNIT_PACS_PW", "pacs-pw")
    monkeypatch.setenv("TFS_UNIT_ALICE", "pw-alice")
    path = tmp_path / "pacs.toml"
    path.write_text(
        BASE + '\n[webdav]\nlisten = "127.0.0.1:9090"\nusers = { alice = { password_env = "TFS_UNIT_ALICE" } }\n'
    )
    path.chmod(0o600)
    cfg = load(str(path))
    wd = cfg.webdav
    assert replace(cfg, webdav=None) == parse(BASE, str(path))  # the rest read as without the table
    assert wd is not None and wd.listen.port == 9090 and wd.users["alice"].get() == "pw-alice"
    assert cfg.warnings == ()
    without = tmp_path / "plain.toml"
    without.write_text(BASE)
    assert load(str(without)).webdav is None  # `trolleyfs webdav` then listens on its default, 8080
    assert WebdavConfig().listen.port == 8080
    # a readable file with an inline password is warned about, as for the servers' passwords
    path.write_text(BASE + '\n[webdav]\nusers = { alice = { password = "inline" } }\n')
    path.chmod(0o644)
    assert any("can be read by others" in w for w in load(str(path)).warnings)
    # a mistake in the table is one line naming it
    path.write_text(BASE + '\n[webdav]\nlisten = "nowhere"\n')
    with pytest.raises(ConfigError, match=r"pacs.toml: webdav.listen: 'nowhere' is not HOST:PORT"):
        load(str(path))
