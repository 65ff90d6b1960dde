"""When the shared tier fails, reads do not: Redis stopped or hung mid-read,
refusing our password, full, or holding damaged values.  Reads are then
byte-exact from the PACS, with one warning and never an error; a damaged
value is fetched again, never served.  Real redis-server processes on
loopback, real mounts."""

from __future__ import annotations

import errno

import pytest

from tests.mounting import wait_for
from tests.servers.redisserver import RedisServer

from .nodes import (
    ACL,
    SERIES_LEASE,
    SHARED_WARNING,
    check,
    copied,
    cp_all,
    finish,
    node_config,
    nodes,
    series_dir,
    shared_stats,
    stall_the_series_stream,
    start_cp,
    wait_idle,
    write_secret,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("how", ["stopped", "hung"])
def test_redis_going_away_mid_read_leaves_reads_exact_with_one_warning(how, proxy, expected, tmp_path):
    with RedisServer() as redis_server, redis_server.admin() as admin:
        config = node_config(proxy.url, f'url = "{redis_server.url}"\ntimeout = 0.5')
        with nodes(2, config, tmp_path) as (a, b):
            first = sorted(series_dir(a).iterdir())[0]
            stall_the_series_stream(proxy)  # node a is mid-series, holding the lease
            assert first.read_bytes() in expected.values()
            wait_for(lambda: admin.exists(SERIES_LEASE) == 1, "node a to take the series lease")
            copy_b = start_cp(series_dir(b), tmp_path / "b")
            wait_for(lambda: shared_stats(b)["leases_waited"] >= 1, "node b to wait for node a's series")
            if how == "stopped":
                redis_server.stop()
            else:
                redis_server.pause()  # SIGSTOP: connections open, nothing answers
            proxy.reset()
            finish([copy_b])
            (copy_a,) = cp_all([series_dir(a)], tmp_path / "a")
            assert copied(tmp_path / "b") == expected and copied(copy_a) == expected
            for m in (a, b):
                wait_idle(m)
                log = m.log_text()
                assert log.count(SHARED_WARNING) == 1, log[-3000:]
                s = shared_stats(m)
                assert s["state"] == "backing off" and s["outages"] == 1, s
                assert m.stats()["errors"] == {} and "Traceback" not in log


def test_a_wrong_redis_password_leaves_reads_exact_with_one_warning(proxy, expected, tmp_path, capsys):
    with RedisServer(users=(ACL,), admin_password="admin-password") as redis_server:
        wrong = write_secret(tmp_path / "wrong.pw", "wrong-horse-battery")
        shared = f'url = "{redis_server.url}"\nusername = "trolleyfs"\npassword_file = "{wrong}"'
        with nodes(1, node_config(proxy.url, shared), tmp_path) as (m,):
            (out,) = cp_all([series_dir(m)], tmp_path / "copy")
            assert copied(out) == expected
            wait_idle(m)
            log = m.log_text()
            assert log.count(SHARED_WARNING) == 1 and "wrong-horse-battery" not in log
            s = shared_stats(m)
            assert s["state"] == "backing off" and "Authentication" in s["last_error"], s
            assert m.stats()["errors"] == {}
        code, text = check(tmp_path / "node1.toml", capsys)
        assert code == 1 and "FAILED" in text and "Authentication" in text and "wrong-horse-battery" not in text
        # the ACL user with the right password and only the permissions the README lists
        right = write_secret(tmp_path / "right.pw", "right-password")
        shared = f'url = "{redis_server.url}"\nusername = "trolleyfs"\npassword_file = "{right}"'
        (tmp_path / "right").mkdir()
        with nodes(1, node_config(proxy.url, shared), tmp_path / "right") as (m,):
            (out,) = cp_all([series_dir(m)], tmp_path / "copy-right")
            assert copied(out) == expected
            wait_idle(m)
            s = shared_stats(m)
            assert s["state"] == "up" and s["objects_written"] == len(expected) and s["last_error"] == "", s
            assert SHARED_WARNING not in m.log_text()
        code, text = check(tmp_path / "right" / "node1.toml", capsys)
        assert code == 0 and "write, read and delete ok" in text, text


def test_a_full_redis_that_refuses_writes_leaves_reads_exact_with_one_warning(proxy, expected, tmp_path):
    with (
        RedisServer(extra=("maxmemory 2mb", "maxmemory-policy noeviction")) as redis_server,
        nodes(1, node_config(proxy.url, f'url = "{redis_server.url}"'), tmp_path) as (m,),
    ):
        (out,) = cp_all([series_dir(m)], tmp_path / "copy")
        assert copied(out) == expected
        wait_idle(m)
        log = m.log_text()
        assert log.count(SHARED_WARNING) == 1 and "OutOfMemoryError" in log, log[-3000:]
        assert m.stats()["errors"] == {}


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "key_file"])
def test_a_damaged_or_missing_chunk_is_fetched_again_never_served(backend, encrypted, proxy, expected, tmp_path):
    shared = backend.lines
    if encrypted:
        shared += f'\nkey_file = "{write_secret(tmp_path / "tier.key", "ab" * 32)}"'
    config = node_config(proxy.url, shared)
    with nodes(2, config, tmp_path) as (one, two):
        cp_all([series_dir(one)], tmp_path / "one")
        wait_idle(one)
        metas = [k for k in backend.keys("trolleyfs:o:*") if k.endswith(b"}")]
        assert len(metas) == len(expected)
        chunks = {m: backend.keys(m.decode() + ":*") for m in metas[:3]}
        assert all(len(c) == 3 for c in chunks.values()), chunks  # 128 kB objects in 64 kB chunks
        deleted, changed, cut = (chunks[m] for m in metas[:3])
        backend.admin.delete(deleted[1])  # evicted, or expired early
        value = backend.admin.get(changed[0])
        backend.admin.set(changed[0], value[:100] + bytes([value[100] ^ 1]) + value[101:], keepttl=True)  # a bit flips
        backend.admin.set(cut[2], backend.admin.get(cut[2])[:-10], keepttl=True)  # a truncated write
        (copy,) = cp_all([series_dir(two)], tmp_path / "two")
        assert copied(copy) == expected  # the three came from the PACS again
        wait_idle(two)
        s = shared_stats(two)
        assert s["corrupt"] == 3 and s["hits"] == len(expected) - 3, s
        assert two.stats()["instances_fetched"] >= 3
        assert len([k for k in backend.keys("trolleyfs:o:*") if k.endswith(b"}")]) == len(expected)  # republished
        assert two.stats()["errors"] == {}


def test_a_failing_pacs_with_the_tier_up_is_a_clean_eio_then_reads_work(redis_single, proxy, expected, tmp_path):
    with redis_single.admin() as admin:
        admin.flushall()
    with nodes(1, node_config(proxy.url, f'url = "{redis_single.url}"'), tmp_path) as (m,):
        files = sorted(series_dir(m).iterdir())
        proxy.fail_status = 503
        with pytest.raises(OSError) as raised:
            files[0].read_bytes()
        assert raised.value.errno == errno.EIO
        proxy.reset()
        (out,) = cp_all([series_dir(m)], tmp_path / "copy")
        assert copied(out) == expected
        log = m.log_text()
        assert "Traceback" not in log and "ExceptionGroup" not in log, log[-3000:]
        assert shared_stats(m)["state"] == "up" and m.stats()["errors"] == {"EIO": 1}
