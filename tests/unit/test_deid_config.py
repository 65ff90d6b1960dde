"""The [deidentify] table: the key file (32+ random bytes or their hex, not a
passphrase, not readable by others), the options by their names in the
standard (validated, aliases accepted), and the node's switches; every
problem one line naming file, key and problem."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trolleyfs.deid import DeidConfig, Deidentifier, Option, parse_deidentify
from trolleyfs.deid.options import parse_option, parse_options
from trolleyfs.errors import ConfigError
from trolleyfs.tomltable import Table

RANDOM = bytes(range(200, 240))


def key_file(tmp_path: Path, content: bytes, mode: int = 0o600) -> str:
    path = tmp_path / "deid.key"
    path.write_bytes(content)
    os.chmod(path, mode)
    return str(path)


def parse(data: dict[str, object]) -> DeidConfig:
    return parse_deidentify(Table("/etc/trolleyfs.toml", "deidentify", data))


def test_a_full_table(tmp_path: Path) -> None:
    cfg = parse(
        {
            "key_file": key_file(tmp_path, RANDOM),
            "options": ["Retain Longitudinal Temporal Information With Modified Dates Option", "clean_descriptors"],
            "include_burned_in": True,
            "keep_originals": True,
        }
    )
    assert cfg.key_bytes() == RANDOM
    assert cfg.options == {Option.RETAIN_MODIFIED_DATES, Option.CLEAN_DESCRIPTORS}
    assert cfg.include_burned_in and cfg.keep_originals
    assert RANDOM.hex() not in repr(cfg)
    d = Deidentifier(cfg.key_bytes(), cfg.options)
    assert d.form == Deidentifier(RANDOM, ["clean-descriptors", Option.RETAIN_MODIFIED_DATES]).form
    assert d.form != Deidentifier(RANDOM).form != Deidentifier(bytes(32)).form


def test_defaults_and_a_hex_key(tmp_path: Path) -> None:
    cfg = parse({"key_file": key_file(tmp_path, (RANDOM.hex()[:40] + "\n" + RANDOM.hex()[40:] + "\n").encode())})
    assert cfg.key_bytes() == RANDOM
    assert cfg.options == frozenset() and not cfg.include_burned_in and not cfg.keep_originals


@pytest.mark.parametrize(
    ("content", "mode", "problem"),
    [
        (RANDOM[:31], 0o600, "at least 32"),
        (b"correct horse battery staple and more words", 0o600, "passphrase"),
        ((RANDOM.hex()[:62]).encode(), 0o600, "at least 32"),
        (RANDOM, 0o644, "read or changed by other users"),
        (RANDOM, 0o620, "read or changed by other users"),
        (RANDOM * 200, 0o600, "bytes long"),
    ],
    ids=["short", "passphrase", "short hex", "world-readable", "group-writable", "too long"],
)
def test_a_bad_key_file_is_one_line_naming_file_and_key(
    tmp_path: Path, content: bytes, mode: int, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse({"key_file": key_file(tmp_path, content, mode)})
    message = str(info.value)
    assert message.startswith("/etc/trolleyfs.toml: deidentify.key_file: ") and problem in message
    assert "\n" not in message and RANDOM.hex()[:16] not in message


@pytest.mark.parametrize(
    ("data", "key", "problem"),
    [
        ({}, "key_file", "is missing"),
        ({"key_file": "/nonexistent/deid.key"}, "key_file", "no such file"),
        ({"options": ["retain-everything"]}, "options", "not an option of PS3.15 Annex E"),
        ({"options": ["clean-pixel-data"]}, "options", "never changes pixel data"),
        ({"options": "retain-uids"}, "options", "must be an array"),
        ({"options": [1]}, "options", "must be an array of option names"),
        (
            {
                "options": [
                    "retain-longitudinal-temporal-information-full-dates",
                    "Retain Longitudinal Temporal Information Modified Dates Option",
                ]
            },
            "options",
            "exclude each other",
        ),
        ({"include_burned_in": "yes"}, "include_burned_in", "must be a boolean"),
        ({"key": "x"}, "key", "unknown key"),
    ],
)
def test_a_bad_table_is_one_line_naming_the_key(
    tmp_path: Path, data: dict[str, object], key: str, problem: str
) -> None:
    table = {"key_file": key_file(tmp_path, RANDOM), **data}
    if key == "key_file" and "key_file" not in data:
        del table["key_file"]
    with pytest.raises(ConfigError) as info:
        parse(table)
    assert str(info.value).startswith(f"/etc/trolleyfs.toml: deidentify.{key}: ") and problem in str(info.value)


def test_every_option_has_its_column_and_its_code_in_cid_7050() -> None:
    for option in Option:
        assert parse_option(option.value) is option
        assert parse_option(option.code.meaning) is option  # CID 7050's code meaning
        assert option.code.scheme_designator == "DCM" and option.code.value.startswith("1131")
    assert parse_option("Basic Application Confidentiality Profile") is None
    assert len({o.code.value for o in Option}) == len({o.column for o in Option}) == 10
    assert parse_options([]) == frozenset()


def test_the_config_file_holds_the_table(tmp_path: Path) -> None:
    """``[deidentify]`` in a whole config: parsed into Config.deidentify; a
    problem in it is one line naming the file and ``deidentify.<key>``."""
    from trolleyfs.config import parse as parse_config

    servers = '[servers.pacs]\nsearch = { protocol = "qido-rs", url = "http://pacs/dicom-web" }\n'
    servers += 'retrieve = { protocol = "wado-rs", url = "http://pacs/dicom-web" }\n'
    assert parse_config(servers, "t.toml").deidentify is None
    key = key_file(tmp_path, RANDOM)
    cfg = parse_config(f'{servers}[deidentify]\nkey_file = "{key}"\n', "t.toml")
    assert cfg.deidentify is not None and cfg.deidentify.key_bytes() == RANDOM
    assert not cfg.deidentify.keep_originals
    with pytest.raises(ConfigError, match=r"^t\.toml: deidentify\.keep_original: ") as exc:
        parse_config(f'{servers}[deidentify]\nkey_file = "{key}"\nkeep_original = true\n', "t.toml")
    assert "\n" not in str(exc.value)
