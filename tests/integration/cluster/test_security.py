"""Keeping the tier private: TLS with a client certificate, an ACL user with
only the permissions the README lists, and value encryption (``key_file``).
Whoever reads Redis sees neither images, nor names, nor UIDs; another node
with the key reads it all back; ``trolleyfs check`` says what is wrong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.certs import make_ca, make_leaf
from tests.servers.redisserver import RedisClusterServers, RedisServer, TLSFiles
from trolleyfs.cluster.once import fetch_once
from trolleyfs.cluster.settings import SharedConfig
from trolleyfs.cluster.setup import build_cluster, check_cluster
from trolleyfs.credentials import Secret

from .nodes import (
    ACL,
    CLUSTER_ACL,
    SERIES_UID,
    STUDY_UID,
    check,
    copied,
    cp_all,
    node_config,
    nodes,
    series_dir,
    shared_stats,
    wait_idle,
    write_secret,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    d = tmp_path_factory.mktemp("redis-tls")
    make_ca(d, "ca")
    make_leaf(
        d,
        "server",
        "ca",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    make_leaf(
        d,
        "client",
        "ca",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    return TLSFiles(d / "server.pem", d / "server.key", d / "ca.pem", d / "client.pem", d / "client.key")


def shared_lines(url: str, tls: TLSFiles, password: Path, key: Path | None, cert: bool = True, ca: bool = True) -> str:
    lines = [f'url = "{url}"', 'username = "trolleyfs"', f'password_file = "{password}"']
    if ca:
        lines.append(f'ca_bundle = "{tls.ca}"')
    if cert:
        lines += [f'client_cert = "{tls.client_cert}"', f'client_key = "{tls.client_key}"']
    if key is not None:
        lines.append(f'key_file = "{key}"')
    return "\n".join(lines)


def test_tls_acl_and_a_key_file_keep_the_tier_unreadable_to_redis(tls, proxy, expected, tmp_path, capsys):
    with RedisServer(users=(ACL,), admin_password="admin-password", tls=tls) as redis_server:
        assert redis_server.url.startswith("rediss://")
        password = write_secret(tmp_path / "redis.pw", "right-password")
        key = tmp_path / "tier.key"
        key.write_bytes(os.urandom(32))
        key.chmod(0o600)
        config = node_config(proxy.url, shared_lines(redis_server.url, tls, password, key))
        with nodes(2, config, tmp_path) as (one, two):
            (out1,) = cp_all([series_dir(one)], tmp_path / "one")
            wait_idle(one)
            assert shared_stats(one)["encrypted"] is True and shared_stats(one)["objects_written"] == len(expected)
            # what Redis holds: no UID, no name, no image, in any key or value
            secrets = [STUDY_UID, SERIES_UID, *expected, "CLUSTER", "pacs/"]
            with redis_server.admin() as admin:
                keys = list(admin.scan_iter(count=1000))
                assert len(keys) > 3 * len(expected)  # the chunks and meta records, and the listings
                for k in keys:
                    assert not any(s.encode() in k for s in secrets), k
                    value = b"\n".join(admin.lrange(k, 0, -1)) if admin.type(k) == b"list" else admin.get(k)
                    assert b"DICM" not in value and not any(s.encode() in value for s in secrets), k
            requests = len(proxy.log)
            (out2,) = cp_all([series_dir(two)], tmp_path / "two")
            assert copied(out1) == expected and copied(out2) == expected
            assert len(proxy.log) == requests  # all of it came back out of the encrypted tier
            assert shared_stats(two)["hits"] == len(expected) and shared_stats(two)["corrupt"] == 0
            assert "right-password" not in one.log_text() + two.log_text()
        code, text = check(tmp_path / "node1.toml", capsys)
        assert code == 0 and "write, read and delete ok" in text, text


def test_check_says_why_the_tier_cannot_be_used(tls, proxy, tmp_path, capsys):
    with RedisServer(users=(ACL,), admin_password="admin-password", tls=tls) as redis_server:
        password = write_secret(tmp_path / "redis.pw", "right-password")
        cases = {
            "no-client-cert": (
                shared_lines(redis_server.url, tls, password, None, cert=False),
                "",
            ),  # refused: how varies
            "untrusted": (shared_lines(redis_server.url, tls, password, None, ca=False), "certificate verify failed"),
            "plain-to-tls": (
                shared_lines(redis_server.url.replace("rediss", "redis"), tls, password, None, cert=False, ca=False),
                "",
            ),
        }
        for name, (lines, why) in cases.items():
            path = tmp_path / f"{name}.toml"
            write_secret(path, node_config(proxy.url, lines))
            code, text = check(path, capsys)
            row = next(line for line in text.splitlines() if line.startswith("shared"))
            assert code == 1 and "FAILED" in row and why in row, (name, text)
            assert "right-password" not in text


async def test_a_cluster_acl_user_with_the_documented_permissions_works() -> None:
    with RedisClusterServers(users=(CLUSTER_ACL,)) as cluster:
        config = SharedConfig(
            urls=tuple(cluster.urls), cluster=True, username="trolleyfs", password=Secret("right-password"), chunk_kb=16
        )
        ok, detail = await check_cluster(config)
        assert ok, detail
        shared = build_cluster(config)
        try:
            key = shared.tier.key("o", "pacs/1.2.3")

            async def fetch() -> bytes:
                return b"DICM" * 20_000

            assert (await fetch_once(shared, key, "i:pacs/1.2.3", fetch, 60))[1] is None
            data, left = await fetch_once(shared, key, "i:pacs/1.2.3", fetch, 60)
            assert data == b"DICM" * 20_000 and left is not None  # the second came out of the Cluster
            assert shared.tier.link.breaker.up and shared.tier.link.failures == 0
        finally:
            await shared.tier.link.aclose()
        # without the cluster permissions the client cannot even learn the slots: it says so, it does not hang
        narrow = SharedConfig(urls=tuple(cluster.urls), cluster=True, username="plain", password=Secret("pw"))
        cluster_users = [n.admin() for n in cluster.nodes]
        for c in cluster_users:
            c.acl_setuser("plain", enabled=True, passwords=["+pw"], keys=["trolleyfs:*"], commands=["+get", "+set"])
            c.close()
        ok, detail = await check_cluster(narrow)
        assert not ok and "Cluster" in detail, detail
