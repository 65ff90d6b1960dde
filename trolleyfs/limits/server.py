"""The limits of one server as the transport sees them: before each HTTP
request or DICOM association, :meth:`ServerLimits.request`; for each chunk
of bytes received, :meth:`ServerLimits.received` (or wrap a body iterator in
:meth:`ServerLimits.body`).  Both take the caller's priority from the
context (:func:`~.priority.current`) unless given one, and return once the
server's limits allow; :meth:`stats` says what was taken and what was
waited, and why.

Bytes are charged as they arrive, and the caller waits before reading
more: the socket is not read meanwhile, so TCP slows the server down, and
what is read stays within the rate in every window (plus what the kernel
buffered).  The background hours are looked at when a request starts; a
transfer under way is never stopped half-way.

The transport is handed :meth:`ServerLimits.pace` (a
:class:`~trolleyfs.transport.pace.Pace`): the rates only.  The read path
decides about the background hours before it starts background work
(:meth:`ServerLimits.admit`: readahead is skipped, a prefetch's read refused
until they open), so no transfer waits hours inside a request's deadline."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field

import trio

from ..cluster.link import Link
from .gcra import Bucket, LocalBucket, capacity_for
from .hours import Hours
from .priority import Priority, Urgency, as_urgency, current
from .queue import RateLimiter, Waited
from .redis_gcra import RedisBucket
from .settings import LimitsConfig
from .window import OutsideHours, Window


@dataclass
class WaitTotals:
    """Seconds waited for one server, by reason and by priority."""

    rate: float = 0.0  # for the bucket (mb_per_s, requests_per_s)
    window: float = 0.0  # for the background hours
    priority: float = 0.0  # behind more urgent (or earlier) callers
    waits: int = 0  # takes that waited at all
    by_priority: dict[str, float] = field(default_factory=lambda: {p.label: 0.0 for p in Priority})

    def add(self, urgency: Urgency, rate: float = 0.0, window: float = 0.0, priority: float = 0.0) -> None:
        if rate or window or priority:
            self.rate += rate
            self.window += window
            self.priority += priority
            self.waits += 1
            self.by_priority[urgency.value.label] += rate + window + priority

    def as_dict(self) -> dict[str, object]:
        return {
            "rate": round(self.rate, 3),
            "window": round(self.window, 3),
            "priority": round(self.priority, 3),
            "waits": self.waits,
            "by_priority": {k: round(v, 3) for k, v in self.by_priority.items()},
        }


class ServerLimits:
    """Rates and background hours of server ``server`` (each may be absent:
    then it only counts)."""

    def __init__(
        self,
        server: str,
        config: LimitsConfig,
        *,
        bytes_limiter: RateLimiter | None = None,
        requests_limiter: RateLimiter | None = None,
        window: Window | None = None,
    ) -> None:
        self.server, self.config = server, config
        self.bytes_limiter, self.requests_limiter, self.window = bytes_limiter, requests_limiter, window
        self.bytes = 0
        self.requests = 0
        self.waited = WaitTotals()
        self.outside_hours = {p.label: 0 for p in Priority}  # background work refused or skipped: the window was shut

    async def request(self, urgency: Urgency | Priority | None = None, *, hours: bool = True) -> None:
        """Before an HTTP request or a DICOM association: wait for the
        background hours (priorities 1 and 2; not with ``hours=False``) and
        for ``requests_per_s``."""
        who = as_urgency(urgency)
        window = 0.0
        if self.window is not None and hours:
            window = await self.window.wait_open(who)
        took = Waited()
        if self.requests_limiter is not None:
            took = await self.requests_limiter.take(1, who)
        self.requests += 1
        self.waited.add(who, rate=took.rate, window=window, priority=took.priority)

    async def received(self, nbytes: int, urgency: Urgency | Priority | None = None) -> None:
        """After ``nbytes`` arrived from the server, before reading more: wait for ``mb_per_s``."""
        if nbytes <= 0:
            return
        self.bytes += nbytes
        if self.bytes_limiter is not None:
            who = as_urgency(urgency)
            took = await self.bytes_limiter.take(nbytes, who)
            self.waited.add(who, rate=took.rate, priority=took.priority)

    async def body(
        self, chunks: AsyncIterable[bytes], urgency: Urgency | Priority | None = None
    ) -> AsyncIterator[bytes]:
        """``chunks``, each charged before it is handed on (and before the next is read)."""
        who = as_urgency(urgency)
        async for chunk in chunks:
            await self.received(len(chunk), who)
            yield chunk

    def admit(self, urgency: Urgency | Priority | None = None) -> None:
        """For background work that should not wait: raise
        :class:`~.window.OutsideHours` outside the background hours."""
        if self.window is not None:
            try:
                self.window.admit(urgency)
            except OutsideHours:
                self.outside_hours[as_urgency(urgency).value.label] += 1
                raise

    async def wait_open(self, urgency: Urgency | Priority | None = None) -> float:
        """Wait for the background hours (at once for priority 0); seconds waited."""
        if self.window is None:
            return 0.0
        who = as_urgency(urgency)
        waited = await self.window.wait_open(who)
        self.waited.add(who, window=waited)
        return waited

    def pace(self) -> Pacing:
        """What the transport is handed: the rates, in the caller's priority."""
        return Pacing(self)

    @property
    def limited(self) -> bool:
        """Whether any limit applies (else this only counts)."""
        return self.config.limited

    def stats(self) -> dict[str, object]:
        out: dict[str, object] = {
            "limits": self.config.as_dict(),
            "bytes": self.bytes,
            "requests": self.requests,
            "waited_s": self.waited.as_dict(),
        }
        if self.window is not None:
            out["outside_hours"] = dict(self.outside_hours)
        if self.bytes_limiter is not None:
            out["bytes_bucket"] = self.bytes_limiter.describe()
        if self.requests_limiter is not None:
            out["requests_bucket"] = self.requests_limiter.describe()
        if self.window is not None:
            out["window"] = self.window.describe()
        return out


class Pacing:
    """A server's rates as the transport asks them (the
    :class:`~trolleyfs.transport.pace.Pace` interface): in the calling task's
    priority, or, once :meth:`bound`, in the priority of the task that bound it."""

    __slots__ = ("_limits", "_urgency")

    def __init__(self, limits: ServerLimits, urgency: Urgency | None = None) -> None:
        self._limits, self._urgency = limits, urgency

    async def request(self) -> None:
        await self._limits.request(self._urgency, hours=False)

    async def received(self, nbytes: int) -> None:
        await self._limits.received(nbytes, self._urgency)

    def bound(self) -> Pacing:
        # the Urgency itself, not its value: a read that joins the work later still hurries it
        return Pacing(self._limits, current() if self._urgency is None else self._urgency)

    @property
    def receive_buffer(self) -> int | None:
        return receive_buffer(self._limits.config.bytes_per_s)


# a connection under a byte rate gets a socket receive buffer of this much of the rate (the
# kernel doubles it): enough to keep the rate over a link of this round trip, small enough
# that what arrives ahead of the limits is a fraction of a second's worth
BUFFER_S = 0.1
BUFFER_MIN, BUFFER_MAX = 64 * 1024, 4 * 1024 * 1024


def receive_buffer(bytes_per_s: float | None) -> int | None:
    """The SO_RCVBUF for connections to a server limited to ``bytes_per_s``."""
    if bytes_per_s is None:
        return None
    return int(min(max(bytes_per_s * BUFFER_S, BUFFER_MIN), BUFFER_MAX))


def build_limits(
    server: str,
    config: LimitsConfig | None,
    *,
    link: Link | None = None,
    prefix: str = "trolleyfs",
    clock: Callable[[], float] = trio.current_time,
    redis_clock: Callable[[], float] | None = None,
    window: Callable[[str, Hours], Window] | None = None,
) -> ServerLimits:
    """The limits of ``server``: shared through Redis when ``link`` (the
    shared tier's) is given, local otherwise.  ``clock``: the local buckets'
    clock; ``redis_clock``: a clock for the Redis script instead of Redis's
    own (tests); ``window``: builds the background-hours window (tests pass
    their clocks through it)."""
    config = config or LimitsConfig()

    def limiter(kind: str, rate: float | None) -> RateLimiter | None:
        if rate is None:
            return None
        capacity = capacity_for(rate, config.burst_s)
        bucket: Bucket
        if link is None:
            bucket = LocalBucket(rate, capacity, clock)
        else:
            bucket = RedisBucket(link, prefix, server, kind, rate, capacity, now=redis_clock, local_clock=clock)
        return RateLimiter(bucket)

    hours = None
    if config.background_hours is not None:
        make = window or Window
        hours = make(server, config.background_hours)
    return ServerLimits(
        server,
        config,
        bytes_limiter=limiter("bytes", config.bytes_per_s),
        requests_limiter=limiter("requests", config.requests_per_s),
        window=hours,
    )


class Limits:
    """The limits of every server of a mount (:meth:`of` gives an unlimited,
    counting one for a server without limits)."""

    def __init__(self, servers: dict[str, ServerLimits] | None = None) -> None:
        self._servers = dict(servers or {})

    @property
    def limited(self) -> bool:
        """Whether any server has a limit (else priorities never matter)."""
        return any(s.limited for s in self._servers.values())

    def of(self, server: str) -> ServerLimits:
        found = self._servers.get(server)
        if found is None:
            found = self._servers[server] = ServerLimits(server, LimitsConfig())
        return found

    def stats(self) -> dict[str, object]:
        return {name: limits.stats() for name, limits in sorted(self._servers.items())}
