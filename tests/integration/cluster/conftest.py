"""Fixtures of the cluster tests: a real redis-server and a 3-master Redis
Cluster (session-wide, flushed before each test), an Orthanc holding the
cohort series behind a counting proxy.  Everything is stopped here, also
when a test fails."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.mounting import by_sop_uid
from tests.servers.proxy import FaultProxy
from tests.servers.redisserver import RedisClusterServers, RedisServer
from trolleyfs.demo import sampledata
from trolleyfs.demo.orthanc import ORTHANC, Orthanc

from .nodes import SPEC


def need(binary: str) -> None:
    if not shutil.which(binary) and not os.path.exists(binary):
        pytest.fail(f"{binary} is not installed: run `make test`, which installs it")


@pytest.fixture(scope="session")
def redis_single() -> Iterator[RedisServer]:
    """Debian's redis-server on loopback."""
    need("redis-server")
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A 3-master Redis Cluster on loopback, made by redis-cli --cluster create."""
    need("redis-server")
    need("redis-cli")
    with RedisClusterServers() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def expected() -> dict[str, bytes]:
    """The cohort series' files, by SOP Instance UID."""
    return by_sop_uid(list(sampledata.generate([SPEC])))


@pytest.fixture(scope="session")
def pacs(expected, tmp_path_factory) -> Iterator[Orthanc]:
    """An Orthanc holding only the cohort series."""
    need(ORTHANC)
    server = Orthanc(workdir=str(tmp_path_factory.mktemp("orthanc-cluster")))
    try:
        server.start(timeout=120)
        server.upload(list(expected.values()))
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def proxy(pacs) -> Iterator[FaultProxy]:
    """The PACS behind a proxy that counts requests and bytes (fresh for each test)."""
    with FaultProxy(pacs.url) as p:
        yield p


@dataclass
class Backend:
    """A flushed Redis (single or cluster) and the TOML lines that point at it."""

    kind: str
    lines: str
    admin: Any

    def keys(self, pattern: str) -> list[bytes]:
        return sorted(self.admin.scan_iter(match=pattern, count=1000))


@pytest.fixture(params=["single", "cluster"])
def backend(request) -> Iterator[Backend]:
    """Each test using this runs against a single Redis and against the Redis Cluster."""
    if request.param == "single":
        server = request.getfixturevalue("redis_single")
        with server.admin() as admin:
            admin.flushall()
            yield Backend("single", f'url = "{server.url}"', admin)
    else:
        cluster = request.getfixturevalue("redis_cluster")
        cluster.flush()
        urls = ", ".join(f'"{u}"' for u in cluster.urls)
        admin = cluster.admin()
        try:
            yield Backend("cluster", f"url = [{urls}]\ncluster = true", admin)
        finally:
            admin.close()
