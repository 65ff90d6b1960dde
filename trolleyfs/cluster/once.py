"""Fetching something once in the whole cluster: take it from the tier if it
is there; else, if another node holds its lease, wait for it to appear;
else take the lease, fetch it, publish it, and release the lease.

A wait ends when the value appears, when no lease on it is held any more
(its holder finished without a result, or died and the lease expired: then
this node tries to take the lease itself), or when Redis becomes
unavailable (then this node fetches for itself)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio

from .leases import Leases
from .tier import ClusterTier

POLL_S = 0.05  # how often a waiting node looks for what it waits for


async def wait_while_leased(tier: ClusterTier, leases: Leases, keys: Sequence[str], names: Sequence[str]) -> None:
    """Return once any of ``keys`` exists or none of the leases ``names`` is
    held, or Redis is unavailable."""
    lease_keys = [leases.key(n) for n in names]
    while True:
        found = await tier.exist([*keys, *lease_keys])
        if found is None or any(found[: len(keys)]) or not any(found[len(keys) :]):
            return
        await trio.sleep(POLL_S)


@dataclass(frozen=True)
class Cluster:
    """The cluster tier of a mount and its leases."""

    tier: ClusterTier
    leases: Leases


async def fetch_once(
    cluster: Cluster,
    key: str,
    lease: str,
    fetch: Callable[[], Awaitable[bytes]],
    ttl: float,
    *,
    arrived: Callable[[bytes], None] = lambda data: None,
    accept: Callable[[bytes], bool] | None = None,
    also_wait_for: Sequence[str] = (),
) -> tuple[bytes, float | None]:
    """The value of ``key``, and the seconds it has left in the tier (None: it
    was fetched here, by ``fetch`` under the lease ``lease``, and published
    for ``ttl`` seconds; ``arrived`` sees it before it is published).
    ``also_wait_for``: other leases whose holders are fetching it too (a
    series lease covers its instances)."""
    tier, leases = cluster.tier, cluster.leases
    while True:
        found = await tier.get(key, accept)
        if found is not None:
            return found
        others = [n for n in also_wait_for if not leases.mine(n)]
        held = await tier.exist([leases.key(n) for n in others]) if others else None
        if held and any(held):
            tier.counters.leases_waited += 1
            await wait_while_leased(tier, leases, [key], others)
            if (found := await tier.get(key, accept)) is not None:
                return found
        taken = await leases.take(lease)
        if taken is None:
            tier.counters.leases_waited += 1
            await wait_while_leased(tier, leases, [key], [lease])
            continue
        async with leases.holding(taken):
            data = await fetch()
            arrived(data)
            await tier.put(key, data, ttl)
        return data, None
