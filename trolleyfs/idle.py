"""Deadlines that bound silence, not progress.

A remote answer may take long and still be healthy: a C-FIND of 20,000 studies
whose rows keep arriving, a body that keeps streaming.  A deadline on the whole
answer cuts it off however steadily it arrives (and cuts it again on every
retry); what must be bounded is the time *nothing* arrives.  So:

* :func:`idle_deadline` is ``trio.fail_after(idle)`` whose deadline moves to
  ``now + idle`` each time progress is reported, and never past its
  ``overall`` bound (``None``: no bound).  It raises ``trio.TooSlowError``;
  :attr:`IdleDeadline.overran` says whether the overall bound ended it.
* :func:`progress` reports progress to every idle deadline around the calling
  task: they nest (an association step's inside a FUSE operation's), and one
  report moves them all.
* :class:`ThreadReporter` does the same from any thread (pynetdicom's), hopping
  to the trio loop at most once at a time however often it is called.
* :class:`Beacon` lends one task's progress to the tasks waiting for its
  result (a listing that several lookups wait for), so that their deadlines
  see the work they wait on.

Who reports: the DICOM association on every PDU received, the HTTP client on
every chunk of a body, the C-MOVE retrieval on every object; see the README
("Errors") for the bounds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Protocol

import trio

# An answer that keeps arriving is cut off after this long anyway: a real
# archive's longest answers take minutes (50,000 C-FIND rows at 1,000 a second,
# a 2 GB object at 10 MB/s), an hour leaves room for a slow link, and a server
# that trickles forever still ends.
OVERALL_S = 3600.0
OVERALL_IDLE_FACTOR = 10  # ... or ten idle deadlines, when that is longer


def overall_bound(idle: float) -> float:
    """The overall bound of an idle deadline of ``idle`` seconds."""
    return max(OVERALL_S, OVERALL_IDLE_FACTOR * idle)


class Sink(Protocol):
    """Something progress is reported to."""

    def progress(self) -> None: ...


_SINKS: ContextVar[tuple[Sink, ...]] = ContextVar("trolleyfs_idle_sinks", default=())


class IdleDeadline:
    """The deadline of one :func:`idle_deadline` block."""

    def __init__(self, idle: float, overall: float | None) -> None:
        self.idle, self.overall = idle, overall
        self.scope = trio.CancelScope()
        self.reports = 0  # progress reports received
        self._end = math.inf
        self._open = False

    def _start(self) -> None:
        now = trio.current_time()
        self._end = math.inf if self.overall is None else now + self.overall
        self.scope.deadline = min(now + self.idle, self._end)
        self._open = True

    def progress(self) -> None:
        """Something arrived: the deadline is ``idle`` seconds from now."""
        if self._open:
            self.reports += 1
            self.scope.deadline = min(trio.current_time() + self.idle, self._end)

    @property
    def overran(self) -> bool:
        """Whether the overall bound (not silence) ended the block."""
        return self.scope.cancelled_caught and self.scope.deadline >= self._end


def timed_out(deadline: IdleDeadline | None, idle: float) -> str:
    """Why an :func:`idle_deadline` block of ``idle`` seconds ended, for a
    log line (``deadline`` None: the block had not begun)."""
    if deadline is not None and deadline.overran:
        return f"not done after {deadline.overall:.0f} s (answers were still arriving)"
    return f"no answer within {idle:.0f} s"


@contextmanager
def idle_deadline(idle: float, overall: float | None = None) -> Iterator[IdleDeadline]:
    """Like ``trio.fail_after(idle)``, but :func:`progress` (or a reporter made
    inside) moves the deadline on; at most ``overall`` seconds in all."""
    deadline = IdleDeadline(idle, overall)
    token = _SINKS.set((*_SINKS.get(), deadline))
    try:
        with deadline.scope:
            deadline._start()
            yield deadline
    finally:
        deadline._open = False
        _SINKS.reset(token)
    if deadline.scope.cancelled_caught:
        raise trio.TooSlowError


def progress() -> None:
    """Report progress to every idle deadline around the calling task."""
    for sink in _SINKS.get():
        sink.progress()


class ThreadReporter:
    """Reports progress from any thread to the idle deadlines around the trio
    task that made it.  Calls are coalesced: while one hop to the trio loop is
    pending, further calls cost nothing (the hop, when it runs, reports at a
    time after all of them)."""

    def __init__(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._sinks = _SINKS.get()
        self._pending = False

    def __call__(self) -> None:
        if self._pending or not self._sinks:
            return
        self._pending = True
        with suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self._report)

    def _report(self) -> None:  # on the trio loop
        self._pending = False  # first: a call from now on schedules another hop
        for sink in self._sinks:
            sink.progress()


class Beacon:
    """One task's progress, lent to the tasks that wait for its result.

    The working task runs inside :meth:`reporting` (its progress reaches the
    beacon too); a waiting task waits inside :meth:`listening` (what reaches
    the beacon reaches the deadlines around it)."""

    def __init__(self) -> None:
        self._listeners: list[tuple[Sink, ...]] = []

    def progress(self) -> None:
        for sinks in list(self._listeners):
            for sink in sinks:
                sink.progress()

    @contextmanager
    def reporting(self) -> Iterator[None]:
        token = _SINKS.set((*_SINKS.get(), self))
        try:
            yield
        finally:
            _SINKS.reset(token)

    @contextmanager
    def listening(self) -> Iterator[None]:
        sinks = _SINKS.get()
        self._listeners.append(sinks)
        try:
            yield
        finally:
            self._listeners.remove(sinks)
