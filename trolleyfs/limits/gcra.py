"""The rate rule: GCRA, the generic cell rate algorithm, and the bucket
interface the limiter's queue asks.

Why GCRA rather than a token bucket: the two admit exactly the same
traffic (GCRA is a token bucket written as one number), but GCRA keeps a
single value per bucket, the *theoretical arrival time* (TAT), and updates
it in one step.  That makes the cluster-wide bucket one Redis key changed by
one short Lua script (:mod:`.redis_gcra`), with the same arithmetic as the
local bucket here, so a node and a cluster honour the same, documented
bound.

A bucket of ``rate`` units per second and ``capacity`` units (the burst):
each unit moves the TAT on by ``1 / rate`` seconds; a cost is granted when
the new TAT lies at most ``capacity / rate`` seconds ahead of now.  So from
idle a bucket grants ``capacity`` units at once, then ``rate`` per second,
and **in any window of W seconds it grants at most rate x W + capacity
units**.  A single cost larger than the capacity is granted only when the
bucket is full (idle for capacity / rate seconds) and puts it in debt; the
limiter splits such costs into pieces no larger than the capacity, so the
bound holds for them too."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import trio

# Float tolerance (seconds) when comparing a TAT with now: a waiter woken
# exactly at its computed time must not be refused by a rounding error.
EPSILON_S = 1e-9


@dataclass(frozen=True)
class Attempt:
    """A bucket's answer: ``granted``, or the seconds until the same cost
    would fit (``wait_s``); ``at``: the bucket's clock at the decision (the
    Redis server's, for a cluster bucket)."""

    granted: bool
    wait_s: float
    at: float


class Bucket(Protocol):
    """What the limiter's queue asks: may ``cost`` units go now?"""

    @property
    def rate(self) -> float:
        """Units per second."""

    @property
    def capacity(self) -> float:
        """The burst, in units: the largest cost granted at once."""

    async def attempt(self, cost: float) -> Attempt: ...

    def describe(self) -> dict[str, object]: ...


class Gcra:
    """GCRA's state and arithmetic: ``rate`` units per second, a burst of ``capacity`` units."""

    __slots__ = ("capacity", "interval", "rate", "tat", "tolerance")

    def __init__(self, rate: float, capacity: float) -> None:
        if not (rate > 0 and capacity > 0 and math.isfinite(rate) and math.isfinite(capacity)):
            raise ValueError(f"rate and capacity must be finite and positive, not {rate!r} and {capacity!r}")
        self.rate = rate
        self.capacity = capacity
        self.interval = 1.0 / rate  # seconds per unit
        self.tolerance = capacity / rate  # seconds the TAT may run ahead of now
        self.tat = -math.inf  # idle since ever: the bucket is full

    def attempt(self, cost: float, now: float) -> Attempt:
        """Grant ``cost`` units at ``now`` (moving the TAT on), or say how long to wait."""
        tat = max(self.tat, now)
        new = tat + cost * self.interval
        limit = max(self.tolerance, cost * self.interval)  # a cost beyond the burst: only when full
        if new - now <= limit + EPSILON_S:
            self.tat = new
            return Attempt(True, 0.0, now)
        return Attempt(False, new - limit - now, now)

    def level(self, now: float) -> float:
        """Units that could be granted at once at ``now``."""
        ahead = max(self.tat, now) - now
        return max(0.0, (self.tolerance - ahead) * self.rate)


class LocalBucket:
    """A :class:`Gcra` on this node's clock (trio's by default, so that tests
    run it on a :class:`trio.testing.MockClock`)."""

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float] = trio.current_time) -> None:
        self.gcra = Gcra(rate, capacity)
        self.rate, self.capacity = rate, capacity
        self._clock = clock

    def attempt_now(self, cost: float) -> Attempt:
        return self.gcra.attempt(cost, self._clock())

    async def attempt(self, cost: float) -> Attempt:
        return self.attempt_now(cost)

    def describe(self) -> dict[str, object]:
        return {"kind": "local", "available": round(self.gcra.level(self._clock()), 3)}


def capacity_for(rate: float, burst_s: float, smallest: float = 1.0) -> float:
    """The burst of a bucket in units: ``burst_s`` seconds' worth, and at least
    ``smallest`` (one request: a request cannot be split)."""
    return max(rate * burst_s, smallest)
