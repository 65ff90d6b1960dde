"""The cluster-wide rate limit against real Redis (a single redis-server and
a 3-master Redis Cluster): two limiters (two "nodes", each with its own
connection) sharing one Redis stay under one cap together, in every window
of the time passed to the script; when Redis goes away each node falls back
to its share (half, with two nodes), says so once, and the pair still stays
under the cap.  The limiters run on trio's MockClock going 10 times faster
than real time (the Redis calls are real); that clock is the time the
script decides on, so grants are counted per window on the server's
clock."""

from __future__ import annotations

import logging
import os
import random
import tomllib
from collections.abc import Iterator

import pytest
import trio
from trio.testing import MockClock

from tests.limits_check import Recording, assert_under_cap
from tests.servers.redisserver import RedisServer
from trolleyfs.cluster.link import Link
from trolleyfs.cluster.settings import SharedConfig, parse_shared
from trolleyfs.credentials import Secret
from trolleyfs.limits.priority import Priority, priority
from trolleyfs.limits.queue import RateLimiter
from trolleyfs.limits.redis_gcra import RedisBucket, check_limits_script
from trolleyfs.tomltable import Table

from .conftest import Backend, need

pytestmark = pytest.mark.integration

RATE, BURST = 2000.0, 200.0  # units per second, units
COSTS = (10, 50, 150, 200)
# the README's ACL for the shared tier, plus what the limits' script needs
LIMITS_ACL = (
    "trolleyfs on >right-password ~trolleyfs:* resetchannels -@all +get +set +mget +exists +pttl +del +pexpire "
    "+rpush +lrange +eval +evalsha +script|load +ping +zadd +zremrangebyscore +zcard +time"
)


@pytest.fixture
def fast_clock() -> MockClock:
    """Virtual time, 10 times faster than real time, not jumping: the Redis
    calls in worker threads take real time (and 10 times as much virtual)."""
    return MockClock(rate=10)


def shared_config(lines: str) -> SharedConfig:
    # a generous deadline: virtual seconds go fast, a busy machine's Redis call must not look like an outage
    return parse_shared(Table("t.toml", "cache.shared", tomllib.loads(lines + "\ntimeout = 60\n")))


class Node:
    """One node's limiter on the shared bucket, and what it was granted."""

    def __init__(self, config: SharedConfig, prefix: str) -> None:
        self.link = Link(config)
        self.redis = RedisBucket(self.link, prefix, "pacs", "bytes", RATE, BURST, now=trio.current_time)
        self.recording = Recording(self.redis)
        self.limiter = RateLimiter(self.recording)

    async def read_until(self, end: float, seed: int) -> None:
        """Three readers (a user, a readahead, a prefetch) taking until ``end``."""
        rng = random.Random(seed)

        async def reader(level: Priority) -> None:
            with priority(level):
                while trio.current_time() < end:
                    await self.limiter.take(rng.choice(COSTS))

        async with trio.open_nursery() as nursery:
            for level in Priority:
                nursery.start_soon(reader, level)


async def run_nodes(nodes: list[Node], seconds: float) -> None:
    end = trio.current_time() + seconds
    async with trio.open_nursery() as nursery:
        for i, node in enumerate(nodes):
            nursery.start_soon(node.read_until, end, i)


async def test_two_nodes_sharing_one_redis_stay_under_one_cap(backend: Backend, fast_clock: MockClock) -> None:
    config = shared_config(backend.lines)
    prefix = f"trolleyfs-t{os.urandom(3).hex()}"
    nodes = [Node(config, prefix), Node(config, prefix)]
    try:
        await run_nodes(nodes, 5.0)
    finally:
        for node in nodes:
            await node.link.aclose()
    grants = [g for node in nodes for g in node.recording.grants]
    assert all(node.redis.fallbacks == 0 and node.redis.nodes == 2 for node in nodes)  # all through Redis
    assert all(len(node.recording.grants) >= 3 for node in nodes)  # both nodes were served
    assert sum(node.recording.refusals for node in nodes) > 0  # and they were held back
    assert sum(cost for _, cost in grants) > 2 * BURST  # beyond the bursts: by the rate
    assert_under_cap(grants, RATE, BURST)  # one cap for the two together, in every window
    keys = backend.keys(f"{prefix}:*")
    assert keys == sorted(k.encode() for k in (f"{prefix}:limit:{{pacs}}:bytes", f"{prefix}:limit:{{pacs}}:nodes"))


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own (it stops it), with the documented ACL user."""
    need("redis-server")
    with RedisServer(users=(LIMITS_ACL,)) as server:
        yield server


async def test_redis_down_each_node_falls_back_to_its_share(
    own_redis: RedisServer, fast_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trolleyfs.limits")
    config = SharedConfig(urls=(own_redis.url,), username="trolleyfs", password=Secret("right-password"), timeout=60)
    nodes = [Node(config, "trolleyfs"), Node(config, "trolleyfs")]
    try:
        await run_nodes(nodes, 2.0)
        assert all(node.redis.fallbacks == 0 and node.redis.nodes == 2 for node in nodes)  # the ACL is enough
        await trio.to_thread.run_sync(own_redis.stop)
        for node in nodes:
            await node.limiter.take(1)
            assert node.redis.falling_back
        before = [len(node.recording.grants) for node in nodes]
        await run_nodes(nodes, 5.0)
    finally:
        for node in nodes:
            await node.link.aclose()
    alone = [node.recording.grants[n:] for node, n in zip(nodes, before, strict=True)]
    for node, grants in zip(nodes, alone, strict=True):
        assert sum(cost for _, cost in grants) > BURST  # it went on, by its own share
        assert_under_cap(grants, RATE / 2, BURST / 2)
        assert node.redis.fallbacks == 1 and node.redis.describe()["state"] == "local share 1/2"
    assert_under_cap(alone[0] + alone[1], RATE, BURST)
    warnings = [r.getMessage() for r in caplog.records if r.name == "trolleyfs.limits" and r.levelno == logging.WARNING]
    assert len(warnings) == 2  # once per node, however many takes
    assert all(w.startswith("limits pacs bytes: Redis unavailable (") and "1/2 of the limit" in w for w in warnings)


async def test_by_default_the_script_decides_on_redis_clock(own_redis: RedisServer) -> None:
    config = SharedConfig(urls=(own_redis.url,), username="trolleyfs", password=Secret("right-password"))
    link = Link(config)
    bucket = RedisBucket(link, "trolleyfs", "pacs", "requests", rate=0.001, capacity=3.0)  # one per 1000 s
    try:
        answers = [await bucket.attempt(1) for _ in range(4)]
    finally:
        await link.aclose()
    with own_redis.admin() as admin:
        seconds, micros = admin.time()
    redis_now = seconds + micros / 1e6
    assert [a.granted for a in answers] == [True, True, True, False]  # the burst of 3, then the rate
    assert answers[3].wait_s == pytest.approx(1000.0, abs=1.0)
    assert all(redis_now - 60 < a.at <= redis_now for a in answers)  # Redis's TIME, not trio's clock
    assert bucket.fallbacks == 0


async def test_check_runs_the_script_and_names_a_missing_permission(own_redis: RedisServer) -> None:
    ok_link = Link(SharedConfig(urls=(own_redis.url,), username="trolleyfs", password=Secret("right-password")))
    with own_redis.admin() as admin:
        admin.acl_setuser(
            "narrow",
            enabled=True,
            passwords=["+pw"],
            keys=["trolleyfs:*"],
            commands=["+eval", "+evalsha", "+get", "+set"],
        )
    narrow_link = Link(SharedConfig(urls=(own_redis.url,), username="narrow", password=Secret("pw")))
    try:
        assert (await check_limits_script(ok_link, "trolleyfs"))[0]
        ok, said = await check_limits_script(narrow_link, "trolleyfs")
    finally:
        await ok_link.aclose()
        await narrow_link.aclose()
    assert not ok and said.startswith("ResponseError: The user executing the script can't run this command")
    assert said.endswith("(the limits need +zadd +zremrangebyscore +zcard +time besides the shared tier's commands)")
