"""Helpers of the limiter tests: a bucket that notes what it granted (around
a real one), and the check that grants stay under a cap in every window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from trolleyfs.limits.gcra import Attempt, Bucket

# windows (seconds) every grant stream is checked in; 0: a burst at one instant
WINDOWS = (0.0, 0.05, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Recording:
    """Passes every attempt to ``bucket``; notes ``(at, cost)`` of each grant,
    ``at`` on the bucket's own clock (the Redis server's, for a cluster bucket)."""

    bucket: Bucket
    grants: list[tuple[float, float]] = field(default_factory=list)
    refusals: int = 0

    @property
    def rate(self) -> float:
        return self.bucket.rate

    @property
    def capacity(self) -> float:
        return self.bucket.capacity

    async def attempt(self, cost: float) -> Attempt:
        got = await self.bucket.attempt(cost)
        if got.granted:
            self.grants.append((got.at, cost))
        else:
            self.refusals += 1
        return got

    def describe(self) -> dict[str, object]:
        return self.bucket.describe()


def worst_window(grants: Sequence[tuple[float, float]], rate: float, capacity: float) -> tuple[float, float, float]:
    """The window (start, length) whose grants exceed ``rate x length +
    capacity`` the most, and by how much (negative: all under the cap)."""
    ordered = sorted(grants)
    worst = (-float("inf"), 0.0, 0.0)
    for i, (start, _) in enumerate(ordered):
        for length in WINDOWS:
            total = sum(cost for at, cost in ordered[i:] if at <= start + length)
            excess = total - (rate * length + capacity)
            if excess > worst[0]:
                worst = (excess, start, length)
    return worst[1], worst[2], worst[0]


def assert_under_cap(grants: list[tuple[float, float]], rate: float, capacity: float) -> None:
    start, length, excess = worst_window(grants, rate, capacity)
    assert excess <= 1e-6 * max(1.0, capacity), (
        f"{excess:.6g} units over the cap in the {length} s from {start:.6f} (rate {rate}, burst {capacity})"
    )
