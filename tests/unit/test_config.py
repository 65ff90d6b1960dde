"""Config parsing: the documented shape is accepted; every mistake is one
ConfigError naming the file, the key and the problem."""

from __future__ import annotations

import datetime as dt
import os
from typing import cast

import pytest

from trolleyfs.config import ConfigError, load, parse, parse_date
from trolleyfs.credentials import BasicLogin
from trolleyfs.endpoints import AeEndpoint, CMoveEndpoint, QidoEndpoint, UrlEndpoint
from trolleyfs.model import QueryLevel

GOOD = """
[servers.pacs]
search   = { protocol = "qido-rs", url = "http://127.0.0.1:8042/dicom-web" }
retrieve = { protocol = "wado-rs", url = "http://127.0.0.1:8042/dicom-web" }
auth     = { type = "basic", username = "alice", password = "s3cr3t-pw" }

[[folders]]
name  = "recent-ct"
query = { ModalitiesInStudy = "CT", PatientName = "TEST*" }
min_study_date = "2020-01-01"
max_study_date = "-7d"
include_fields = ["PatientBirthDate"]
query_level = "series"
"""


def test_the_documented_example_parses():
    cfg = parse(GOOD, "pacs.toml")
    srv = cfg.servers["pacs"]
    assert isinstance(srv.retrieve, UrlEndpoint) and isinstance(srv.auth, BasicLogin)
    assert srv.search.protocol == "qido-rs" and srv.retrieve.url == "http://127.0.0.1:8042/dicom-web"
    assert srv.auth.type == "basic" and srv.auth.password.get() == "s3cr3t-pw"
    assert "s3cr3t-pw" not in repr(srv) and "s3cr3t-pw" not in str(
        cfg
    )  # secrets never show in reprs (and so not in logs)
    (f,) = cfg.folders
    assert f.min_study_date is not None and f.max_study_date is not None
    assert f.server == "pacs"  # the only server is the default
    assert dict(f.query) == {"ModalitiesInStudy": "CT", "PatientName": "TEST*"}
    assert f.min_study_date.resolve() == dt.date(2020, 1, 1)
    assert f.max_study_date.resolve(dt.date(2024, 1, 10)) == dt.date(2024, 1, 3)
    assert f.include_fields == ("PatientBirthDate",) and f.query_level is QueryLevel.SERIES


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-02-03", dt.date(2021, 2, 3)),
        ("20210203", dt.date(2021, 2, 3)),
        ("today", dt.date(2024, 5, 1)),
        ("-2w", dt.date(2024, 4, 17)),
        ("-1y", dt.date(2023, 5, 2)),
    ],
)
def test_dates(text, expected):
    assert parse_date(text).resolve(dt.date(2024, 5, 1)) == expected


def _broken(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        (_broken('PatientName = "TEST*"', 'PatientNme = "TEST*"'), "folders[0].query.PatientNme", "unknown query key"),
        (
            _broken('ModalitiesInStudy = "CT"', 'ModalitiesInStudy = "CT\u00e9"'),
            "folders[0].query.ModalitiesInStudy",
            "must be ASCII",
        ),
        (_broken('"2020-01-01"', '"2020-13-45"'), "folders[0].min_study_date", "is not a date"),
        (_broken('name  = "recent-ct"', 'name = "recent-ct"\nserver = "nope"'), "folders[0].server", "unknown server"),
        (
            _broken(
                'search   = { protocol = "qido-rs", url = "http://127.0.0.1:8042/dicom-web" }',
                'search   = { protocol = "qido-rs" }',
            ),
            "servers.pacs.search.url",
            "is missing",
        ),
        (_broken('protocol = "qido-rs"', 'protocol = "qido"'), "servers.pacs.search.protocol", "unknown search"),
        (
            _broken('url = "http://127.0.0.1:8042/dicom-web" }\nretrieve', 'url = "ftp://x" }\nretrieve'),
            "servers.pacs.search.url",
            "not an http",
        ),
        (
            _broken('password = "s3cr3t-pw"', 'password_env = "NO_SUCH_VAR_TROLLEYFS"'),
            "servers.pacs.auth.password_env",
            "is not set",
        ),
        (
            _broken('password = "s3cr3t-pw"', 'password_file = "/no/such/file"'),
            "servers.pacs.auth.password_file",
            "no such file",
        ),
        (_broken('type = "basic"', 'type = "kerberos"'), "servers.pacs.auth.type", "unknown auth type"),
        (
            _broken('include_fields = ["PatientBirthDate"]', 'include_fields = ["NotAKeyword"]'),
            "folders[0].include_fields",
            "not a DICOM keyword",
        ),
        (_broken('query_level = "series"', 'query_level = "patient"'), "folders[0].query_level", "is not one of"),
        (_broken("[[folders]]", 'timeout = "fast"\n[[folders]]'), "servers.pacs.timeout", "must be a number"),
        (_broken('name  = "recent-ct"', "name  = 12"), "folders[0].name", "must be a string"),
        (_broken('name  = "recent-ct"', 'name  = "a/b"'), "folders[0].name", "not usable"),
        (_broken('name  = "recent-ct"', 'name  = "by-uid"'), "folders[0].name", "reserved"),
        (GOOD + "\n[cache]\nmemory_mb = 1\n", "cache.memory_mb", "between 16 and"),
        (GOOD + '\n[names]\nstudy = "{NoSuchKeyword}"\n', "names.study", "not a DICOM keyword"),
        (GOOD + "\n[extra]\nx = 1\n", "extra", "unknown key"),
        (_broken('max_study_date = "-7d"', 'max_study_date = "2019-01-01"'), "folders[0].min_study_date", "after"),
        (
            _broken(
                'url = "http://127.0.0.1:8042/dicom-web" }\nretrieve', 'url = "http://x/d", space_as = "_" }\nretrieve'
            ),
            "servers.pacs.search.space_as",
            "expected one of 'auto', '%20', '?', '*'",
        ),
    ],
)
def test_mistakes_name_file_key_and_problem(text, key, words):
    with pytest.raises(ConfigError) as exc:
        parse(text, "pacs.toml")
    msg = str(exc.value)
    assert msg.startswith(f"pacs.toml: {key}: "), msg
    assert words in msg and "\n" not in msg


def test_malformed_toml_is_one_line():
    with pytest.raises(ConfigError) as exc:
        parse("[servers.pacs\nsearch = 1", "x.toml")
    assert str(exc.value).startswith("x.toml: not valid TOML") and "\n" not in str(exc.value)


def test_folder_needs_server_when_several(tmp_path):
    two = (
        GOOD + '\n[servers.other]\nsearch = { protocol = "mint", url = "http://h/mint" }\n'
        'retrieve = { protocol = "wado-uri", url = "http://h/wado" }\n'
    )
    with pytest.raises(ConfigError, match=r"folders\[0\]\.server: is missing"):
        parse(two, "p.toml")


def test_secret_from_env_and_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TFS_PW", "from-env")
    cfg = parse(_broken('password = "s3cr3t-pw"', 'password_env = "TFS_PW"'), "p.toml")
    assert isinstance(cfg.servers["pacs"].auth, BasicLogin)
    assert cfg.servers["pacs"].auth.password.get() == "from-env"
    pw = tmp_path / "pw"
    pw.write_text("from-file\n")
    cfg = parse(_broken('password = "s3cr3t-pw"', f'password_file = "{pw}"'), "p.toml")
    assert isinstance(cfg.servers["pacs"].auth, BasicLogin)
    assert cfg.servers["pacs"].auth.password.get() == "from-file"


def test_dimse_endpoints():
    cfg = parse(
        GOOD.replace(
            'search   = { protocol = "qido-rs", url = "http://127.0.0.1:8042/dicom-web" }',
            'search   = { protocol = "dicom-qr", host = "127.0.0.1", port = 4242, called_aet = "ORTHANC" }',
        ),
        "p.toml",
    )
    ep = cfg.servers["pacs"].search
    assert isinstance(ep, AeEndpoint)
    assert (ep.host, ep.port, ep.called_aet, ep.calling_aet) == ("127.0.0.1", 4242, "ORTHANC", "TROLLEYFS")
    with pytest.raises(ConfigError, match="port: 70000 is not a TCP port"):
        parse(
            GOOD.replace(
                'search   = { protocol = "qido-rs", url = "http://127.0.0.1:8042/dicom-web" }',
                'search   = { protocol = "dicom-qr", host = "h", port = 70000 }',
            ),
            "p.toml",
        )


def test_load_missing_file_and_readable_password_warning(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load(tmp_path / "nope.toml")
    p = tmp_path / "p.toml"
    p.write_text(GOOD)
    p.chmod(0o644)
    assert any("can be read by others" in w for w in load(p).warnings)
    p.chmod(0o600)
    assert load(p).warnings == ()


CMOVE = """
[servers.pacs]
search   = { protocol = "dicom-qr", host = "pacs", port = 104, called_aet = "PACS", calling_aet = "ME" }
retrieve = { protocol = "c-move", host = "pacs", port = 104, called_aet = "PACS", calling_aet = "ME", store_port = 11112 }
"""


def test_c_move_destination_defaults_to_the_calling_aet():
    ep = parse(CMOVE, "p.toml").servers["pacs"].retrieve
    assert isinstance(ep, CMoveEndpoint)
    # store_host "": the address that routes to the PACS (trolleyfs/retrieve/senders.py)
    assert (ep.protocol, ep.store_port, ep.store_aet, ep.store_host) == ("c-move", 11112, "ME", "")
    assert ep.reads_need_callback  # the mount's pre-flight reads one instance
    ep = (
        parse(
            CMOVE.replace("store_port = 11112", 'store_port = 4006, store_aet = "DEST", store_host = "127.0.0.1"'),
            "p.toml",
        )
        .servers["pacs"]
        .retrieve
    )
    assert isinstance(ep, CMoveEndpoint)
    assert (ep.store_port, ep.store_aet, ep.store_host) == (4006, "DEST", "127.0.0.1")


@pytest.mark.parametrize(
    ("new", "key", "words"),
    [
        ("", "servers.pacs.retrieve.store_port", "is missing"),
        ("store_port = 70000", "servers.pacs.retrieve.store_port", "is not a TCP port"),
        (
            'store_port = 11112, store_aet = "A-NAME-FAR-TOO-LONG"',
            "servers.pacs.retrieve.store_aet",
            "not a valid AE title",
        ),
        ('store_port = 11112, store_host = " "', "servers.pacs.retrieve.store_host", "an address to listen on"),
        ('store_port = 11112, move_aet = "X"', "servers.pacs.retrieve.move_aet", "unknown key"),
    ],
)
def test_c_move_mistakes(new, key, words):
    text = CMOVE.replace(", store_port = 11112", ", " + new if new else "")
    with pytest.raises(ConfigError) as info:
        parse(text, "p.toml")
    assert info.value.key == key and words in str(info.value), str(info.value)


def test_space_as_per_search_endpoint():
    text = _broken(
        'url = "http://127.0.0.1:8042/dicom-web" }\nretrieve',
        'url = "http://127.0.0.1:8042/dicom-web", space_as = "?" }\nretrieve',
    )
    assert cast(QidoEndpoint, parse(text, "pacs.toml").servers["pacs"].search).space_as == "?"
    assert cast(QidoEndpoint, parse(GOOD, "pacs.toml").servers["pacs"].search).space_as == "auto"


# Values that passed validation before and then failed the first `ls` (or
# hung, or crashed the loader): each is one ConfigError naming its key now.
_DIMSE = GOOD.replace(
    'search   = { protocol = "qido-rs", url = "http://127.0.0.1:8042/dicom-web" }',
    'search   = { protocol = "dicom-qr", host = "127.0.0.1", port = 4242, called_aet = "ORTHANC" }',
)


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        (_broken('"2020-01-01"', '"-99999999y"'), "folders[0].min_study_date", "more than 200 years"),
        (_broken('"2020-01-01"', '"-73001d"'), "folders[0].min_study_date", "more than 200 years"),
        (_broken('"2020-01-01"', '"00010101"'), "folders[0].min_study_date", "is not between 1800-01-01"),
        (_broken('"2020-01-01"', "2020-01-01T10:00:00"), "folders[0].min_study_date", "date-time"),
        (_broken("[[folders]]", "timeout = inf\n[[folders]]"), "servers.pacs.timeout", "finite"),
        (_broken("[[folders]]", "timeout = nan\n[[folders]]"), "servers.pacs.timeout", "finite"),
        (_broken("[[folders]]", "timeout = 1e308\n[[folders]]"), "servers.pacs.timeout", "at most 3600"),
        (_broken("[[folders]]", "timeout = 1" + "0" * 400 + "\n[[folders]]"), "servers.pacs.timeout", "too large"),
        (GOOD + "\n[cache]\nfolder_ttl = inf\n", "cache.folder_ttl", "finite"),
        (GOOD + "\n[cache]\nseries_ttl = 1e12\n", "cache.series_ttl", "at most"),
        (GOOD + "\n[cache]\nmemory_mb = 9223372036854775807\n", "cache.memory_mb", "between 16 and"),
        (GOOD + '\n[cache]\ndisk_dir = "~no-such-user-trolleyfs/c"\n', "cache.disk_dir", "cannot expand"),
        (GOOD + '\n[cache]\ndisk_dir = "/dev/null"\n', "cache.disk_dir", "not a directory"),
        (_broken('PatientName = "TEST*"', 'PatientName = "TEST\\u0000*"'), "folders[0].query.PatientName", "control"),
        (_broken('PatientName = "TEST*"', f'PatientName = "{"A" * 65}"'), "folders[0].query.PatientName", "longer"),
        (_broken('name  = "recent-ct"', 'name = "a\\nb"'), "folders[0].name", "control"),
        (_broken('password = "s3cr3t-pw"', 'password = "pw\\r\\nX-Evil: 1"'), "servers.pacs.auth.password", "control"),
        (
            _broken('password = "s3cr3t-pw"', 'password_file = "/dev/zero"'),
            "servers.pacs.auth.password_file",
            "regular",
        ),
        (_broken('username = "alice"', 'username = "al:ice"'), "servers.pacs.auth.username", "':'"),
        (
            _broken('url = "http://127.0.0.1:8042/dicom-web" }\nretrieve', 'url = "http://[::1" }\nretrieve'),
            "servers.pacs.search.url",
            "usable URL",
        ),
        (_broken("[[folders]]", 'ca_bundle = "/dev/zero"\n[[folders]]'), "servers.pacs.ca_bundle", "regular"),
        (_DIMSE.replace('called_aet = "ORTHANC"', 'called_aet = "ÄRZTE"'), "servers.pacs.search.called_aet", "ASCII"),
        (_DIMSE.replace('called_aet = "ORTHANC"', 'called_aet = "    "'), "servers.pacs.search.called_aet", "AE title"),
        (_DIMSE.replace('host = "127.0.0.1"', 'host = "a b"'), "servers.pacs.search.host", "not a host name"),
        (GOOD + '\n[names]\nseries = "{SeriesNumber:99999999}"\n', "names.series", "not a format"),
        (GOOD + '\n[names]\nseries = "{SeriesNumber:c}"\n', "names.series", "not a format"),
        (GOOD + '\n[names]\nstudy = "{PatientName!x}"\n', "names.study", "conversions"),
        (GOOD + '\n[cache.shared]\nurl = "redis://[h"\n', "cache.shared.url", "not a URL"),
        (GOOD + '\n[cache.shared]\nurl = "redis://h"\nttl = nan\n', "cache.shared.ttl", "at least 1 second"),
        (GOOD + f'\n[cache.shared]\nurl = "redis://h"\nttl = "{"9" * 400}"\n', "cache.shared.ttl", "at most"),
        ('"a\\nb" = 1', '"a\nb"', "unknown key"),  # the key as it is; the message escapes it
        ("a = " + "[" * 5000 + "]" * 5000, None, "nested too deeply"),
        ("a = " + "9" * 5000, None, "not valid TOML"),
    ],
)
def test_values_that_used_to_pass_are_one_config_error(text, key, words):
    with pytest.raises(ConfigError) as exc:
        parse(text, "pacs.toml")
    msg = str(exc.value)
    assert exc.value.key == key and words in msg and "\n" not in msg, msg


def test_a_fifo_is_not_read_as_a_config(tmp_path):
    fifo = tmp_path / "p.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is not a regular file"):
        load(fifo)  # reading it would block for ever


def test_dates_resolve_for_centuries_to_come():
    far = dt.date(2999, 1, 1)
    for text in ("-200y", "-73000d", "-10428w", "-2433m", "today", "1800-01-01", "99991231"):
        spec = parse_date(text)
        assert len(spec.resolve(far).strftime("%Y%m%d")) == 8
        assert len(spec.resolve().strftime("%Y%m%d")) == 8
