"""The shared tier's storage: values (instances, listings) stored under keys,
checked on the way out, and whether keys exist.

Key names: ``<prefix>:<kind>:{<name>}`` for a value's meta record and
``<prefix>:<kind>:{<name>}:<write>:<i>`` for its chunks (kinds: ``o``
instances, ``l`` listings; ``lease`` and ``n``, a series' list of published
objects, are not values).  The braces are a
Redis Cluster hash tag: all keys of one value sit in one slot, on one shard,
so they are read with one MGET and a value never spans nodes.  ``<name>`` is
readable (``<server>/<uid>``) or, with a key file, an HMAC of it.

Every method returns a plain "not there" when Redis is unavailable (see
:mod:`.link`); a value that is partial, evicted in part, corrupt or not what
its key promises is counted, deleted and reported as not there."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import trio

from .codec import Meta, chunk_keys, decode, encode
from .crypto import Sealer, Unreadable
from .link import Link

log = logging.getLogger("trolleyfs.cluster")

BATCH_BYTES = 8 * 2**20  # chunks are read and written this much per call
NEWS_TTL_S = 600.0  # a series' list of published objects lives this long after its last entry
_DROP = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


@dataclass
class TierCounters:
    """What ``stats.json`` shows of the shared tier."""

    hits: int = 0  # instances served from the tier
    misses: int = 0  # instances looked for and not there
    bytes_read: int = 0
    bytes_written: int = 0
    objects_written: int = 0  # instances (kind "o") published
    listing_hits: int = 0
    listing_misses: int = 0
    corrupt: int = 0  # values found partial or damaged: dropped, fetched again
    leases_taken: int = 0
    leases_waited: int = 0  # times this node waited for another node's fetch


class ClusterTier:
    def __init__(self, link: Link, sealer: Sealer, ttl: float, chunk_bytes: int, prefix: str) -> None:
        self.link = link
        self.sealer = sealer
        self.ttl = ttl
        self.counters = TierCounters()
        self._chunk = chunk_bytes
        self._batch = max(1, BATCH_BYTES // chunk_bytes)
        self._prefix = prefix
        self._objects = f"{prefix}:o:"  # instances are kind "o"

    def key(self, kind: str, name: str) -> str:
        """The key of the value (or lease) ``name`` of ``kind``."""
        return f"{self._prefix}:{kind}:{{{self.sealer.name(name)}}}"

    # ------------------------------------------------------------------ values
    async def get(self, key: str, accept: Callable[[bytes], bool] | None = None) -> tuple[bytes, float] | None:
        """The value under ``key`` and the seconds it has left, or None (not
        there, unreadable, refused by ``accept``, or Redis unavailable)."""
        head = await self.link.run(lambda c: _meta_and_ttl(c, key), None)
        if head is None:
            return None
        raw, pttl = head
        if raw is None:
            return None
        try:
            meta = Meta.load(raw)
        except Unreadable as exc:
            await self._drop(key, raw, str(exc))
            return None
        keys = chunk_keys(key, meta)
        stored: list[bytes | None] = []
        for i in range(0, len(keys), self._batch):
            batch = keys[i : i + self._batch]
            got = await self.link.run(partial(_mget, keys=batch), None)
            if got is None:
                return None
            stored.extend(got)
        try:
            data = await trio.to_thread.run_sync(decode, meta, stored, self.sealer, key)
            if accept is not None and not accept(data):
                raise Unreadable("not the object its key names")
        except Unreadable as exc:
            await self._drop(key, raw, str(exc))
            return None
        self.counters.bytes_read += len(data)
        return data, max(pttl, 0) / 1000.0

    async def put(self, key: str, data: bytes, ttl: float) -> bool:
        """Store ``data`` under ``key`` for ``ttl`` seconds: the chunks first,
        then the meta record that makes them visible."""
        meta, stored = await trio.to_thread.run_sync(encode, data, self._chunk, self.sealer, key)
        ttl_ms = max(1, int(ttl * 1000))
        pairs = list(zip(chunk_keys(key, meta), stored, strict=True))
        for i in range(0, len(pairs), self._batch):
            batch = pairs[i : i + self._batch]
            if not await self.link.run(partial(_set_all, pairs=batch, ttl_ms=ttl_ms), False):
                return False
        if not await self.link.run(lambda c: bool(c.set(key, meta.dump(), px=ttl_ms)), False):
            return False
        self.counters.bytes_written += len(data)
        if key.startswith(self._objects):
            self.counters.objects_written += 1
        return True

    async def exist(self, keys: Sequence[str]) -> list[bool] | None:
        """Which of ``keys`` exist (None: Redis unavailable)."""
        if not keys:
            return []
        return await self.link.run(lambda c: _exist(c, keys), None)

    async def announce(self, news: str, name: str) -> None:
        """Append ``name`` to the list ``news`` (kept :data:`NEWS_TTL_S`)."""
        await self.link.run(partial(_announce, news=news, name=name, ttl_ms=int(NEWS_TTL_S * 1000)), None)

    async def news(self, news: str, start: int, lease: str) -> tuple[list[str], bool] | None:
        """The names appended to ``news`` from position ``start`` on, and
        whether ``lease`` is held (None: Redis unavailable)."""
        return await self.link.run(partial(_news, news=news, start=start, lease=lease), None)

    async def _drop(self, key: str, raw: bytes, why: str) -> None:
        """Delete a value that failed its checks (unless it was rewritten meanwhile)."""
        self.counters.corrupt += 1
        log.warning("shared cache: %s is unusable (%s): fetching it again", key, why)
        await self.link.run(lambda c: c.register_script(_DROP)(keys=[key], args=[raw]), None)

    def stats(self) -> dict[str, object]:
        state = "up" if self.link.breaker.up else "backing off"
        return {
            "state": state,
            "servers": self.link.config.where(),
            "encrypted": self.sealer.encrypted,
            "outages": self.link.breaker.outages,
            "last_error": self.link.breaker.last_error,
            **asdict(self.counters),
        }


# --------------------------------------------------------------------------- in worker threads


def _pipeline(client: Any) -> Any:
    """A pipeline without MULTI/EXEC (a cluster client's pipeline never has one)."""
    from redis.cluster import RedisCluster

    return client.pipeline() if isinstance(client, RedisCluster) else client.pipeline(transaction=False)  # type: ignore[no-untyped-call]


def _meta_and_ttl(client: Any, key: str) -> tuple[bytes | None, int]:
    p = _pipeline(client)
    p.get(key)
    p.pttl(key)
    raw, pttl = p.execute()
    return raw, int(pttl)


def _mget(client: Any, keys: Sequence[str]) -> list[bytes | None]:
    return list(client.mget(keys))


def _set_all(client: Any, pairs: Sequence[tuple[str, bytes | memoryview]], ttl_ms: int) -> bool:
    p = _pipeline(client)
    for k, v in pairs:
        p.set(k, v, px=ttl_ms)
    return all(p.execute())


def _exist(client: Any, keys: Sequence[str]) -> list[bool]:
    p = _pipeline(client)
    for k in keys:
        p.exists(k)
    return [bool(n) for n in p.execute()]


def _announce(client: Any, news: str, name: str, ttl_ms: int) -> None:
    p = _pipeline(client)
    p.rpush(news, name)
    p.pexpire(news, ttl_ms)
    p.execute()


def _news(client: Any, news: str, start: int, lease: str) -> tuple[list[str], bool]:
    p = _pipeline(client)
    p.lrange(news, start, -1)
    p.exists(lease)
    names, held = p.execute()
    return [n.decode() for n in names], bool(held)
