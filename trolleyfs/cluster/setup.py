"""Building the cluster tier from its settings (the link, the tier and its
leases), and probing it for ``trolleyfs check``: a write, a read and a
delete of a test key, and Redis's eviction policy."""

from __future__ import annotations

import os
from typing import Any

from .crypto import Sealer
from .leases import Leases
from .link import Link, describe
from .once import Cluster
from .settings import SharedConfig
from .tier import ClusterTier

# policies that evict our keys when Redis is full; anything else refuses writes instead
EVICTING = (
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
)


def build_cluster(config: SharedConfig, link: Link | None = None) -> Cluster:
    key = bytes.fromhex(config.key.get()) if config.key is not None else None
    tier = ClusterTier(link or Link(config), Sealer(key), config.ttl, config.chunk_kb * 1024, config.prefix)
    return Cluster(tier, Leases(tier))


def _policy(client: Any) -> str | None:
    """Redis's maxmemory-policy, if this user may ask (CONFIG may be refused to an ACL user)."""
    from redis.exceptions import ResponseError

    try:
        got = client.config_get("maxmemory-policy")
    except ResponseError:
        return None
    if got and all(isinstance(v, dict) for v in got.values()):  # a cluster client: one answer per node
        got = next(iter(got.values()))
    policy = got.get("maxmemory-policy") or got.get(b"maxmemory-policy")
    return policy.decode() if isinstance(policy, bytes) else policy


def _roundtrip(client: Any, key: str) -> str:
    value = os.urandom(16)
    client.set(key, value, px=10_000)
    back = client.get(key)
    client.delete(key)
    if back != value:
        raise RuntimeError("a value written was not read back")
    policy = _policy(client)
    if policy is None:
        return "write, read and delete ok"
    note = "" if policy in EVICTING else " (not an eviction policy: when full, Redis refuses writes)"
    return f"write, read and delete ok; maxmemory-policy {policy}{note}"


async def check_cluster(config: SharedConfig) -> tuple[bool, str]:
    """Whether the tier answers with these credentials, and what it said."""
    shared = build_cluster(config)
    key = shared.tier.key("check", os.urandom(8).hex())
    try:
        return True, await shared.tier.link.check(lambda c: _roundtrip(c, key))
    except Exception as exc:
        return False, describe(exc)
    finally:
        await shared.tier.link.aclose()
