"""``[cache.shared]``: the documented shape parses; each mistake is one
ConfigError naming file, key and problem; secrets stay hidden; secrets that
others can read are warned about."""

from __future__ import annotations

import base64
import os

import pytest

from tests.certs import self_signed
from trolleyfs.cluster.settings import DEFAULT_TTL_S, parse_duration
from trolleyfs.config import ConfigError, load, parse

BASE = """
[servers.pacs]
search   = { protocol = "qido-rs", url = "http://127.0.0.1:8042/dicom-web" }
retrieve = { protocol = "wado-rs", url = "http://127.0.0.1:8042/dicom-web" }

[cache.shared]
"""


def shared(lines: str, path: str = "pacs.toml"):
    return parse(BASE + lines, path).cache.shared


def test_the_documented_example_parses(monkeypatch):
    monkeypatch.setenv("REDIS_PW", "hunter2-redis")
    s = shared('url = "redis://cache.example:6379/0"\nusername = "trolleyfs"\npassword_env = "REDIS_PW"\nttl = "30d"')
    assert s.urls == ("redis://cache.example:6379/0",) and not s.cluster and not s.tls
    assert s.username == "trolleyfs" and s.password.get() == "hunter2-redis"
    assert s.ttl == 30 * 86400 and s.key is None and s.prefix == "trolleyfs" and s.chunk_kb == 1024
    assert "hunter2-redis" not in repr(s)


def test_no_shared_table_means_no_tier_and_defaults():
    assert parse(BASE.replace("[cache.shared]", "")).cache.shared is None
    assert shared('url = "redis://h"').ttl == DEFAULT_TTL_S


def test_several_urls_or_cluster_true_mean_a_redis_cluster():
    s = shared('url = ["redis://a:7000", "redis://b:7001"]')
    assert s.cluster and s.urls == ("redis://a:7000", "redis://b:7001")
    assert shared('url = "redis://a:7000"\ncluster = true').cluster
    assert shared('url = "rediss://a:7000"').tls


@pytest.mark.parametrize(
    ("lines", "key", "problem"),
    [
        ("", "cache.shared.url", "is missing"),
        ('url = "http://h:6379"', "cache.shared.url", "is not a redis:// or rediss:// URL"),
        ('url = "redis://alice:pw@h:6379"', "cache.shared.url", "must not hold credentials"),
        ('url = "redis://h:99999"', "cache.shared.url", "invalid port"),
        ('url = "redis://h/x"', "cache.shared.url", "database number"),
        ('url = "redis://h/2"\ncluster = true', "cache.shared.url", "only database 0"),
        ('url = ["redis://a", "redis://b"]\ncluster = false', "cache.shared.cluster", "not possible"),
        ('url = ["redis://a", "rediss://b"]', "cache.shared.url", "mixes"),
        ("url = []", "cache.shared.url", "non-empty array"),
        ('url = "redis://h"\nttl = "soon"', "cache.shared.ttl", "is not a duration"),
        ('url = "redis://h"\nttl = 0', "cache.shared.ttl", "at least 1 second"),
        ('url = "redis://h"\ncolor = "red"', "cache.shared.color", "unknown key"),
        ('url = "redis://h"\nca_bundle = "/no/such.pem"', "cache.shared.ca_bundle", "no such file"),
        ('url = "redis://h"\nverify = false', "cache.shared.verify", "needs a rediss:// url"),
        ('url = "redis://h"\npassword_env = "NOT_SET_ANYWHERE_42"', "cache.shared.password_env", "is not set"),
        ('url = "redis://h"\npassword = "a"\npassword_env = "B"', "cache.shared.password_env", "give only one"),
        ('url = "redis://h"\ntimeout = 0', "cache.shared.timeout", "more than 0"),
        ('url = "redis://h"\nmax_connections = 0', "cache.shared.max_connections", "between 1 and 256"),
        ('url = "redis://h"\nprefix = "a b"', "cache.shared.prefix", "letters, digits"),
        ('url = "redis://h"\nchunk_kb = 1', "cache.shared.chunk_kb", "between 16 and 65536"),
        ('url = "redis://h"\nkey_file = "/no/such.key"', "cache.shared.key_file", "no such file"),
    ],
)
def test_each_mistake_is_one_line_naming_the_key(lines, key, problem):
    with pytest.raises(ConfigError) as err:
        shared(lines)
    msg = str(err.value)
    assert msg.startswith(f"pacs.toml: {key}: ") and problem in msg and "\n" not in msg, msg


def test_a_tls_table_names_files_that_exist(tmp_path):
    ca, key = self_signed(tmp_path)
    s = shared(f'url = "rediss://h:6380"\nca_bundle = "{ca}"\nclient_cert = "{ca}"\nclient_key = "{key}"')
    assert s.tls and s.ca_bundle == str(ca) and s.client_cert == str(ca) and s.verify
    with pytest.raises(ConfigError, match="client_key: needs client_cert"):
        shared(f'url = "rediss://h"\nclient_key = "{ca}"')
    with pytest.raises(ConfigError, match="ca_bundle: cannot be used with verify = false"):
        shared(f'url = "rediss://h"\nca_bundle = "{ca}"\nverify = false')


def test_tls_files_are_loaded_as_tls_loads_them(tmp_path):
    ca, _key = self_signed(tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_text("x")
    with pytest.raises(ConfigError, match=r"cache\.shared\.ca_bundle: .*junk.pem holds no usable CA certificate"):
        shared(f'url = "rediss://h"\nca_bundle = "{junk}"')
    with pytest.raises(ConfigError, match=r"cache\.shared\.client_cert: cannot use the certificate/key"):
        shared(f'url = "rediss://h"\nclient_cert = "{ca}"\nclient_key = "{junk}"')
    with pytest.raises(ConfigError, match=r"cache\.shared\.ca_bundle: .* is not a regular file"):
        shared('url = "rediss://h"\nca_bundle = "/dev/zero"')


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (45, 45),
        (2.5, 2.5),
        ("45s", 45),
        ("90m", 5400),
        ("12h", 43200),
        ("30d", 2592000),
        ("2w", 1209600),
        (" 7 D ", 604800),
    ],
)
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


def test_a_key_file_may_be_raw_hex_or_base64_and_must_be_32_bytes(tmp_path):
    key = os.urandom(32)
    forms = {"raw": key, "hex": key.hex().encode() + b"\n", "b64": base64.b64encode(key) + b"\n"}
    for name, content in forms.items():
        (tmp_path / name).write_bytes(content)
        s = shared(f'url = "redis://h"\nkey_file = "{tmp_path / name}"')
        assert s.key is not None and bytes.fromhex(s.key.get()) == key, name
        assert key.hex() not in repr(s)
    (tmp_path / "short").write_bytes(os.urandom(20).hex().encode())  # 40 hex digits: 20 bytes
    with pytest.raises(ConfigError, match=r"key_file: must hold a 32-byte key .* head -c 32 /dev/urandom"):
        shared(f'url = "redis://h"\nkey_file = "{tmp_path / "short"}"')


def test_secrets_others_can_read_are_warned_about(tmp_path):
    key = tmp_path / "tier.key"
    key.write_bytes(os.urandom(32))
    cfg = tmp_path / "c.toml"
    cfg.write_text(BASE + f'url = "redis://h"\npassword = "pw-in-file"\nkey_file = "{key}"')
    cfg.chmod(0o644)
    key.chmod(0o644)
    warnings = load(cfg).warnings
    assert any("cache.shared holds a password" in w for w in warnings)
    assert any("the shared cache's key can be read by others" in w for w in warnings)
    assert not any("pw-in-file" in w for w in warnings)
    cfg.chmod(0o600)
    key.chmod(0o600)
    assert load(cfg).warnings == ()
