"""A cluster of mounts reads each image from the PACS once: real processes on
loopback (an Orthanc behind the counting proxy, a real redis-server and a
3-master Redis Cluster, several trolleyfs mounts with the same config).

What is counted: requests and body bytes at the proxy (what the PACS sent),
and each node's stats.json.  No timings."""

from __future__ import annotations

import os
import threading

import pytest

from tests.mounting import wait_for

from .nodes import (
    SERIES_LEASE,
    copied,
    cp_all,
    finish,
    node_config,
    nodes,
    objects_in,
    searches,
    series_dir,
    shared_stats,
    stall_the_series_stream,
    start_cp,
    wait_idle,
)

pytestmark = pytest.mark.integration


def test_three_nodes_copying_one_series_at_once_cost_the_pacs_about_one_series(backend, proxy, expected, tmp_path):
    with nodes(3, node_config(proxy.url, backend.lines), tmp_path) as ms:
        outs = cp_all([series_dir(m) for m in ms], tmp_path / "copies")
        for out in outs:
            assert copied(out) == expected  # every file byte-identical on every node
        for m in ms:
            wait_idle(m)
        size = sum(len(b) for b in expected.values())
        stats = [shared_stats(m) for m in ms]
        assert proxy.bytes_out <= 1.1 * size, (proxy.bytes_out, size, stats)  # searches included
        assert sum(s["hits"] for s in stats) >= 2 * len(expected) - 2  # the other nodes read it from Redis
        assert sum(s["objects_written"] for s in stats) >= len(expected)  # every object was published
        assert all(s["state"] == "up" and s["corrupt"] == 0 for s in stats)
        assert "Traceback" not in "".join(m.log_text() for m in ms)


def test_a_series_read_after_another_node_read_it_costs_the_pacs_nothing(backend, proxy, expected, tmp_path):
    with nodes(2, node_config(proxy.url, backend.lines), tmp_path) as (one, two):
        (out1,) = cp_all([series_dir(one)], tmp_path / "one")
        wait_idle(one)
        requests, sent = len(proxy.log), proxy.bytes_out
        (out2,) = cp_all([series_dir(two)], tmp_path / "two")  # listing it too: the searches are shared
        assert copied(out1) == expected and copied(out2) == expected
        assert len(proxy.log) == requests and proxy.bytes_out == sent, proxy.log[requests:]
        s = shared_stats(two)
        assert s["hits"] == len(expected) and s["misses"] == 0 and s["listing_hits"] == 3
        assert two.stats()["requests"] == {} and two.stats()["instances_fetched"] == 0


def test_a_folder_listed_on_three_nodes_costs_one_search_per_level(backend, proxy, tmp_path):
    with nodes(3, node_config(proxy.url, backend.lines), tmp_path) as ms:
        assert len(proxy.log) == 0  # mounted without the pre-flight search

        def on_all(path_of) -> list[list[str]]:
            """``ls`` of one directory on every node at the same moment."""
            results: list[list[str]] = [[] for _ in ms]
            threads = [
                threading.Thread(target=lambda i=i, m=m: results.__setitem__(i, sorted(os.listdir(path_of(m)))))
                for i, m in enumerate(ms)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            return results

        studies = on_all(lambda m: m.path / "cohort")
        assert studies[0] == studies[1] == studies[2] and len(studies[0]) == 1
        assert searches(proxy, "studies") == 1, proxy.log
        series = on_all(lambda m: m.path / "cohort" / studies[0][0])
        assert series[0] == series[1] == series[2] and len(series[0]) == 1
        assert searches(proxy, "series") == 1, proxy.log
        files = on_all(lambda m: m.path / "cohort" / studies[0][0] / series[0][0])
        assert files[0] == files[1] == files[2] and len(files[0]) == 40
        assert searches(proxy, "instances") == 1, proxy.log
        assert len(proxy.log) == 3
        assert sum(shared_stats(m)["listing_hits"] for m in ms) == 6


def test_when_the_node_streaming_a_series_dies_the_others_finish_it(redis_single, proxy, expected, tmp_path):
    with redis_single.admin() as admin:
        admin.flushall()
        with nodes(3, node_config(proxy.url, f'url = "{redis_single.url}"'), tmp_path) as (one, two, three):
            first = sorted(series_dir(one).iterdir())[0]
            stall_the_series_stream(proxy)
            assert first.read_bytes() in expected.values()
            wait_for(lambda: admin.exists(SERIES_LEASE) == 1, "node 1 to take the series lease")
            wait_for(lambda: objects_in(admin) >= 3, "node 1 to publish a few objects")
            outs = [tmp_path / "copy2", tmp_path / "copy3"]
            procs = [start_cp(series_dir(m), o) for m, o in zip((two, three), outs, strict=True)]
            wait_for(
                lambda: all(shared_stats(m)["leases_waited"] >= 1 for m in (two, three)),
                "nodes 2 and 3 to wait for node 1's series",
            )
            one.proc.kill()  # SIGKILL, mid-series: nothing cleaned up, the lease is left to expire
            one.proc.wait(30)
            proxy.reset()  # node 1's stalled answer ends; later requests are not stalled
            finish(procs)
            for out in outs:
                assert copied(out) == expected
            stats = [shared_stats(m) for m in (two, three)]
            assert sum(s["leases_taken"] for s in stats) >= 1  # one of them took the series over
            assert sum(s["hits"] for s in stats) >= len(expected) + 3  # the other one, and what node 1 published
            assert "Traceback" not in two.log_text() + three.log_text()
