"""The waiting room in front of a bucket: callers take units (bytes or
requests) and wait, in priority order, until the bucket grants them.

Rules:

* A caller goes straight to the bucket only when nobody of the same or a
  more urgent priority is waiting; otherwise it queues.
* Only the head of the queue (most urgent, then first come) asks the bucket;
  when refused it sleeps until the bucket says the cost will fit, or until
  the head changes (a more urgent caller arrived, or a waiter was hurried,
  see :class:`~.priority.Urgency`).  So a waiting user's read (priority 0)
  is served before any waiting readahead or prefetch, and waits at most for
  the burst already granted to others plus its own cost.
* A cost larger than the bucket's capacity is taken in pieces of at most the
  capacity, each queued on its own: a large prefetch chunk never holds the
  bucket for longer than one burst, and more urgent callers get in between.
* A cancelled waiter leaves the queue and passes the turn on.

Time spent waiting is counted by reason: ``rate`` (at the head, waiting for
the bucket) and ``priority`` (behind other waiters).  A waiter wakes at
least every :data:`PROGRESS_S` and reports progress to the idle deadlines
around it (:mod:`trolleyfs.idle`): a request or a body held back here is
held by us, not by a silent server, and must not time out for it.  All of
this runs in the trio thread; no lock is needed."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import trio

from ..idle import progress
from .gcra import Attempt, Bucket
from .priority import Priority, Urgency, as_urgency

PROGRESS_S = 0.2  # a waiter tells the deadlines around it that the wait is ours this often


@dataclass
class Waited:
    """Seconds one take spent waiting, by reason."""

    rate: float = 0.0
    priority: float = 0.0

    @property
    def total(self) -> float:
        return self.rate + self.priority

    def add(self, other: Waited) -> None:
        self.rate += other.rate
        self.priority += other.priority


class _Waiter:
    __slots__ = ("seq", "urgency", "wake")

    def __init__(self, urgency: Urgency, seq: int) -> None:
        self.urgency = urgency
        self.seq = seq
        self.wake = trio.Event()

    def key(self) -> tuple[int, int]:
        return (int(self.urgency.value), self.seq)


class RateLimiter:
    """Priority-ordered access to one :class:`~.gcra.Bucket`."""

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self.taken = 0.0  # units granted
        self.grants = 0

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _head(self) -> _Waiter | None:
        return min(self._waiters, key=_Waiter.key) if self._waiters else None

    def _kick_head(self) -> None:
        head = self._head()
        if head is not None:
            head.wake.set()

    def _ahead_of(self, urgency: Urgency) -> bool:
        """Whether someone waits who goes before a newcomer of ``urgency``."""
        return any(w.urgency.value <= urgency.value for w in self._waiters)

    async def take(self, cost: float, urgency: Urgency | Priority | None = None) -> Waited:
        """Wait until ``cost`` units are granted; ``urgency``: the caller's
        (None: the current context's, :func:`~.priority.current`)."""
        who = as_urgency(urgency)
        waited = Waited()
        left = float(cost)
        while left > 1e-9:  # (pieces of a non-integral burst may leave a rounding error)
            piece = min(left, self.bucket.capacity)
            waited.add(await self._take_piece(piece, who))
            left -= piece
        return waited

    async def _take_piece(self, cost: float, urgency: Urgency) -> Waited:
        first: Attempt | None = None
        if not self._ahead_of(urgency):
            first = await self.bucket.attempt(cost)
            if first.granted:
                self._granted(cost)
                return Waited()
        return await self._queue(cost, urgency, first)

    def _granted(self, cost: float) -> None:
        self.taken += cost
        self.grants += 1

    async def _queue(self, cost: float, urgency: Urgency, first: Attempt | None) -> Waited:
        """Wait in the queue; ``first``: the bucket's refusal just now, if it was asked."""
        me = _Waiter(urgency, next(self._seq))
        waited = Waited()
        self._waiters.append(me)

        def hurried() -> None:  # my urgency rose: I may be the head now, and the old head is not
            me.wake.set()
            self._kick_head()

        try:
            with urgency.listen(hurried):
                while True:
                    me.wake = trio.Event()  # before asking: a kick during the attempt is not lost
                    deadline = math.inf
                    at_head = self._head() is me
                    if at_head:
                        attempt = first or await self.bucket.attempt(cost)
                        if attempt.granted:
                            self._granted(cost)
                            return waited
                        deadline = trio.current_time() + attempt.wait_s
                    first = None  # only ever good for the first look
                    started = trio.current_time()
                    while not me.wake.is_set() and trio.current_time() < deadline:
                        with trio.move_on_at(min(deadline, trio.current_time() + PROGRESS_S)):
                            await me.wake.wait()
                        progress()  # our own wait: not the server's silence
                    spent = trio.current_time() - started
                    if at_head:
                        waited.rate += spent
                    else:
                        waited.priority += spent
        finally:
            was_head = self._head() is me
            self._waiters.remove(me)
            if was_head:
                self._kick_head()

    def describe(self) -> dict[str, object]:
        return {"waiting": len(self._waiters), **self.bucket.describe()}
