"""Cluster-wide leases: before fetching something from the PACS a node takes
its lease (``SET key token NX PX``); other nodes see it and wait for the
result instead of fetching it too.

A lease lives :data:`LEASE_S` seconds and is renewed every
:data:`RENEW_S` while its holder works, so the lease of a node that died
expires soon and the next node fetches.  Renewing and releasing check the
token (a small Lua script), so a node never extends or frees another's
lease.  When Redis is unavailable every lease is granted at once, without a
token: each node then fetches for itself, as without a shared tier."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from .tier import ClusterTier

log = logging.getLogger("trolleyfs.cluster")

LEASE_S = 10.0  # a lease not renewed for this long has lost its holder
RENEW_S = 3.0
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_TAKEN, _HELD_ELSEWHERE = "taken", "held"


@dataclass(frozen=True)
class Lease:
    """A lease this node holds; ``token`` None: Redis is unavailable, nothing
    was taken (and nothing is renewed or released)."""

    key: str
    token: str | None


class Leases:
    def __init__(self, tier: ClusterTier, lease_s: float = LEASE_S, renew_s: float = RENEW_S) -> None:
        self._tier = tier
        self._lease_ms = int(lease_s * 1000)
        self._renew_s = renew_s
        self._mine: set[str] = set()  # lease keys this node holds

    def key(self, name: str) -> str:
        return self._tier.key("lease", name)

    async def take(self, name: str) -> Lease | None:
        """The lease on ``name``, or None when another node holds it."""
        key = self.key(name)
        if key in self._mine:
            return None  # this node is at it already (another task)
        token = os.urandom(8).hex()
        ms = self._lease_ms
        got = await self._tier.link.run(
            lambda c: _HELD_ELSEWHERE if c.set(key, token, nx=True, px=ms) is None else _TAKEN, None
        )
        if got == _HELD_ELSEWHERE:
            return None
        if got is None:
            return Lease(key, None)
        self._tier.counters.leases_taken += 1
        return Lease(key, token)

    def mine(self, name: str) -> bool:
        return self.key(name) in self._mine

    @asynccontextmanager
    async def holding(self, lease: Lease) -> AsyncIterator[None]:
        """Keep ``lease`` renewed while the body runs; release it at the end."""
        if lease.token is None:
            yield
            return
        self._mine.add(lease.key)
        inner: BaseException | None = None
        try:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._renew, lease)
                    try:
                        yield
                    finally:
                        nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                # what the body raised, as it raised it (the renewal task raises nothing)
                if len(group.exceptions) != 1:
                    raise
                inner = group.exceptions[0]
            if inner is not None:
                raise inner
        finally:
            self._mine.discard(lease.key)
            with trio.CancelScope(shield=True), trio.move_on_after(self._tier.link.deadline):
                token = lease.token
                await self._tier.link.run(lambda c: c.register_script(_RELEASE)(keys=[lease.key], args=[token]), None)

    async def _renew(self, lease: Lease) -> None:
        ms = self._lease_ms
        while True:
            await trio.sleep(self._renew_s)
            kept = await self._tier.link.run(
                lambda c: c.register_script(_RENEW)(keys=[lease.key], args=[lease.token, ms]), None
            )
            if kept == 0:
                log.debug("lease %s was lost (expired): another node may be fetching too", lease.key)
