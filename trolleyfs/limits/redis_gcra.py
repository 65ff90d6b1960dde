"""The cluster-wide bucket: the same GCRA as :mod:`.gcra`, its one number
(the TAT) kept in Redis and moved by a Lua script, so that every node of a
cluster draws on one bucket per server and limit.

The script reads Redis's own clock (``TIME``), so the nodes' clocks do not
matter; tests pass a clock of their own (``now``).  It is called through the
shared tier's :class:`~trolleyfs.cluster.link.Link` (redis-py in worker
threads, its deadline, back-off, ACL user and TLS): one connection pool and
one notion of "Redis is down" per mount.

Keys, all of one server in one Redis Cluster slot (the braces are a hash
tag): ``<prefix>:limit:{<server>}:bytes`` and ``...:requests`` hold a TAT
(they expire when the bucket is full again), ``...:nodes`` is a sorted set
of the nodes that took from the server in the last :data:`NODES_WINDOW_S`.
All nodes must configure the same limits for a server (each call passes
its rate and burst).

**When Redis is unavailable** (down, refusing us, too slow, or backing
off), the bucket falls back to a local GCRA with this node's share: the
rate and burst divided by the number of nodes Redis last reported (1 if this
node never reached Redis), and logs that once per outage; when Redis
answers again it logs that too and the shared bucket takes over."""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Callable
from functools import partial
from typing import Any

from ..cluster.link import Link, describe
from .gcra import Attempt, LocalBucket

log = logging.getLogger("trolleyfs.limits")

NODES_WINDOW_S = 600.0  # a node counts towards the share for this long after its last take
SCRIPT_COMMANDS = "+zadd +zremrangebyscore +zcard +time"  # what the script calls beyond get/set/pexpire
_NAME = re.compile(r"[^A-Za-z0-9_.-]")

# KEYS: the TAT, the node set.  ARGV: interval (s/unit), tolerance (s), cost,
# now ('' = the server's TIME), node id, node window (s).
# Returns {granted 0/1, wait_s, now, nodes}; floats as strings (Lua numbers
# would be truncated to integers on the way out).
GCRA_LUA = """
local now = tonumber(ARGV[4])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local interval, tolerance, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '') or now
if tat < now then tat = now end
local new = tat + cost * interval
local limit = math.max(tolerance, cost * interval)
local granted, wait = 0, 0
if new - now <= limit + 1e-9 then
  granted = 1
  redis.call('SET', KEYS[1], string.format('%.17g', new), 'PX', math.ceil((new - now) * 1000) + 1000)
else
  wait = new - limit - now
end
local window = tonumber(ARGV[6])
redis.call('ZADD', KEYS[2], now, ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
redis.call('PEXPIRE', KEYS[2], math.ceil(window * 1000))
local nodes = redis.call('ZCARD', KEYS[2])
return {granted, string.format('%.17g', wait), string.format('%.17g', now), nodes}
"""


def limit_keys(prefix: str, server: str, kind: str) -> tuple[str, str]:
    """The bucket's key and the node set's key for ``server``'s ``kind`` limit."""
    tag = f"{prefix}:limit:{{{_NAME.sub('_', server)}}}"
    return f"{tag}:{kind}", f"{tag}:nodes"


def node_id() -> str:
    """This process's name in the node set: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def _run_script(client: Any, keys: list[str], args: list[str]) -> list[Any]:
    return list(client.register_script(GCRA_LUA)(keys=keys, args=args))


async def check_limits_script(link: Link, prefix: str) -> tuple[bool, str]:
    """For ``trolleyfs check``: run the script once on a key of its own
    (which expires at once) with Redis's clock; whether it worked, and what
    Redis said (an ACL without ``+zadd`` or ``+time`` fails here, not later
    in the middle of the reads, where it would make the whole shared tier
    back off)."""
    keys = list(limit_keys(prefix, f"check-{os.urandom(4).hex()}", "requests"))
    args = ["1", "1", "0", "", node_id(), "1"]
    try:
        got = await link.check(partial(_run_script, keys=keys, args=args))
    except Exception as exc:  # redis-py's errors (NOPERM, ...), OSError, TooSlowError
        said = describe(exc)
        if "can't run this command" in said or "NOPERM" in said or "NoPermission" in said:
            said += f" (the limits need {SCRIPT_COMMANDS} besides the shared tier's commands)"
        return False, said
    return True, f"the limits' script ran on Redis's clock ({float(got[2]):.0f})"


class RedisBucket:
    """A bucket of ``rate`` units per second and ``capacity`` units shared
    by every node through Redis; a local share while Redis is unavailable.
    ``now``: a clock to pass to the script instead of Redis's (tests);
    ``local_clock``: the fallback bucket's clock."""

    def __init__(  # noqa: PLR0913 - the bucket, then keyword-only knobs for tests and the fallback
        self,
        link: Link,
        prefix: str,
        server: str,
        kind: str,
        rate: float,
        capacity: float,
        *,
        smallest: float = 1.0,
        now: Callable[[], float] | None = None,
        node: str | None = None,
        local_clock: Callable[[], float] | None = None,
    ) -> None:
        self.link = link
        self.rate, self.full_capacity = rate, capacity
        self.key, self.nodes_key = limit_keys(prefix, server, kind)
        self._what = f"{server} {kind}"
        self._smallest = smallest
        self._now = now
        self._node = node or node_id()
        self._local_clock = local_clock
        self.nodes = 1  # nodes taking from this server, as Redis last said
        self.fallback = self._share(1)
        self.falling_back = False
        self.fallbacks = 0  # outages seen
        self.granted_locally = 0  # grants made by the fallback

    @property
    def capacity(self) -> float:
        """The burst the limiter splits costs by: this node's share's while falling back."""
        return self.fallback.capacity if self.falling_back else self.full_capacity

    def _share(self, nodes: int) -> LocalBucket:
        rate, capacity = self.rate / nodes, max(self.full_capacity / nodes, self._smallest)
        if self._local_clock is None:
            return LocalBucket(rate, capacity)
        return LocalBucket(rate, capacity, self._local_clock)

    async def attempt(self, cost: float) -> Attempt:
        args = [
            repr(1.0 / self.rate),
            repr(self.full_capacity / self.rate),
            repr(float(cost)),
            repr(self._now()) if self._now is not None else "",
            self._node,
            repr(NODES_WINDOW_S),
        ]
        got = await self.link.run(partial(_run_script, keys=[self.key, self.nodes_key], args=args), None)
        if got is None:
            return self._local(cost)
        try:
            granted, wait, at, nodes = int(got[0]), float(got[1]), float(got[2]), max(1, int(got[3]))
        except (TypeError, ValueError, IndexError):
            log.warning("limits %s: Redis answered %r: using this node's share", self._what, got)
            return self._local(cost)
        if self.falling_back:
            self.falling_back = False
            log.info("limits %s: Redis answers again: the limit is shared by the cluster again", self._what)
        if nodes != self.nodes:
            self.nodes = nodes
            self.fallback = self._share(nodes)
        return Attempt(bool(granted), wait, at)

    def _local(self, cost: float) -> Attempt:
        if not self.falling_back:
            self.falling_back = True
            self.fallbacks += 1
            log.warning(
                "limits %s: Redis unavailable (%s): holding this node to its share, 1/%d of the limit",
                self._what,
                self.link.breaker.last_error or "backing off",
                self.nodes,
            )
        attempt = self.fallback.attempt_now(cost)
        if attempt.granted:
            self.granted_locally += 1
        return attempt

    def describe(self) -> dict[str, object]:
        return {
            "kind": "cluster",
            "state": f"local share 1/{self.nodes}" if self.falling_back else "shared through Redis",
            "nodes": self.nodes,
            "fallbacks": self.fallbacks,
        }
