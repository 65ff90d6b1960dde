"""`make bench`, rows (8): three nodes (three trolleyfs mounts, each its own
process) copy the big series at the same moment, without a shared tier and
with one (a single Redis, and a 3-master Redis Cluster), in the same run.
What the PACS sent is counted by a TCP forwarder in front of Orthanc; the
time is until the last of the three copies is done.  Not a test: nothing
here asserts on a timing."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import trio

from bench.mount import mounted
from tests.servers.redisserver import RedisClusterServers, RedisServer
from tests.servers.tcpcount import CountingForwarder
from trolleyfs.demo.orthanc import Orthanc

Row = tuple[str, float, float | None, str]


class Forwarder:
    """The counting TCP forwarder, in a thread with its own trio loop."""

    def __init__(self, port: int) -> None:
        self.fwd = CountingForwarder("127.0.0.1", port)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._scope = nursery.cancel_scope
            await nursery.start(self.fwd.run)
            self._ready.set()

    def __enter__(self) -> Forwarder:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the counting forwarder did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._token.run_sync_soon(self._scope.cancel)
        self._thread.join(30)


def node_config(url: str, shared: str) -> str:
    return f"""
[servers.bench]
search   = {{ protocol = "qido-rs", url = "{url}/dicom-web" }}
retrieve = {{ protocol = "wado-rs", url = "{url}/dicom-web" }}

[[folders]]
name = "bench"
query = {{ PatientName = "BENCH*" }}

{shared}
"""


def three_nodes(
    orthanc: Orthanc, study_name: str, series_mb: float, instances: int, repeat: int, mount_tmp: Path, dest: Path
) -> list[Row]:
    """The (8) rows: one per configuration, median of ``repeat`` runs."""
    rows: list[Row] = []
    with Forwarder(orthanc.http_port) as fwd, RedisServer() as single, RedisClusterServers() as cluster:
        pacs = f"http://127.0.0.1:{fwd.fwd.port}"
        urls = ", ".join(f'"{u}"' for u in cluster.urls)
        setups: list[tuple[str, str, Callable[[], None]]] = [
            ("(10a) 3 nodes cp -r the series at once, no shared tier", "", lambda: None),
            (
                "(10b) 3 nodes cp -r the series at once, shared tier: one Redis",
                f'[cache.shared]\nurl = "{single.url}"',
                lambda: _flush(single),
            ),
            (
                "(10c) 3 nodes cp -r the series at once, shared tier: Redis Cluster",
                f"[cache.shared]\nurl = [{urls}]",
                cluster.flush,
            ),
        ]
        for label, shared, flush in setups:
            times, sent = [], []
            for i in range(repeat):
                flush()
                t, b = _run(
                    node_config(pacs, shared), fwd.fwd, study_name, instances, mount_tmp, dest, f"n{len(rows)}{i}"
                )
                times.append(t)
                sent.append(b)
            ratio = statistics.median(sent) / (series_mb * 1e6)
            print(
                f"  {label}: {', '.join(f'{t:.3f}' for t in times)} s; the PACS sent "
                f"{', '.join(f'{b / 1e6:.0f}' for b in sent)} MB",
                flush=True,
            )
            rows.append(
                (
                    label,
                    statistics.median(times),
                    3 * series_mb,
                    f"PACS sent {statistics.median(sent) / 1e6:.0f} MB = {ratio:.2f}x the series",
                )
            )
    return rows


def _flush(server: RedisServer) -> None:
    with server.admin() as admin:
        admin.flushall()


def _run(
    config: str, fwd: CountingForwarder, study_name: str, instances: int, mount_tmp: Path, dest: Path, name: str
) -> tuple[float, int]:
    """Mount three nodes, copy the series on all three at once; the seconds
    until the last copy is done and the bytes the PACS sent meanwhile."""
    outs = [dest / f"{name}-{k}" for k in range(3)]
    with ExitStack() as stack:
        ms = [stack.enter_context(mounted(config, mount_tmp, "--no-check", name=f"{name}{k}")) for k in range(3)]
        dirs = []
        for m in ms:
            (series_dir,) = list((m.path / "bench" / study_name).iterdir())
            dirs.append(series_dir)
        before = fwd.bytes_down
        t0 = time.perf_counter()
        procs = [subprocess.Popen(["cp", "-r", str(d), str(o)]) for d, o in zip(dirs, outs, strict=True)]
        for p in procs:
            if p.wait() != 0:
                raise RuntimeError("cp -r failed")
        took = time.perf_counter() - t0
        sent = fwd.bytes_down - before
        for o in outs:
            assert len(os.listdir(o)) == instances, o
    for o in outs:
        shutil.rmtree(o, ignore_errors=True)
    return took, sent
