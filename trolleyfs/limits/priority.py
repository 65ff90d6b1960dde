"""Who is waiting for a fetch: a user (0), series readahead (1) or
``trolleyfs prefetch`` (2), carried in a context variable so that the
transport needs no new parameters.

The read path sets it where the work starts::

    with priority(Priority.READAHEAD):
        ...  # every request and every byte fetched in here is readahead

and :func:`current` reads it wherever a limiter is asked.  Trio copies the
context of the task that calls ``nursery.start_soon`` into the new task
(at that moment), and ``trio.to_thread.run_sync`` runs the function in a
copy of the caller's context, so the value follows the work into the tasks
and worker threads it starts.  Threads trio did not start (pynetdicom's
event handlers) do not see it: pass the :class:`Urgency` along explicitly.
A task spawned by a user's read inherits the user's priority: a readahead
task started from a read must set its own at its top.  Unset, the priority
is :attr:`Priority.USER`: an unmarked fetch is never held back.

The value is an :class:`Urgency`, a small mutable cell, rather than a bare
number, so that a fetch can be hurried while it waits: when a user's read
joins a flight that a prefetch started, the read path calls
``urgency.raise_to(Priority.USER)`` on the flight's urgency and the waiting
fetch moves to the front of its queue (and stops waiting for the background
hours).  Urgencies only ever rise.  Everything here runs in the trio thread."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class Priority(enum.IntEnum):
    """Lower is served first."""

    USER = 0  # the file a process opened, a listing being shown
    READAHEAD = 1  # the rest of a series, fetched in advance
    PREFETCH = 2  # ``trolleyfs prefetch``: warming a folder

    @property
    def label(self) -> str:
        return self.name.lower()


class Urgency:
    """The priority of one piece of work; :meth:`raise_to` hurries it, and
    whoever listens (a limiter holding it in its queue, a wait for the
    background hours) is told at once."""

    __slots__ = ("_listeners", "value")

    def __init__(self, value: Priority = Priority.USER) -> None:
        self.value = Priority(value)
        self._listeners: list[Callable[[], None]] = []

    def raise_to(self, value: Priority) -> None:
        """Make this work at least as urgent as ``value`` (never less urgent)."""
        if value < self.value:
            self.value = Priority(value)
            for listener in list(self._listeners):
                listener()

    @contextmanager
    def listen(self, listener: Callable[[], None]) -> Iterator[None]:
        """Call ``listener`` (synchronously) whenever this urgency rises, while the body runs."""
        self._listeners.append(listener)
        try:
            yield
        finally:
            self._listeners.remove(listener)

    def __repr__(self) -> str:
        return f"Urgency({self.value.label})"


_USER = Urgency(Priority.USER)  # the default, shared: nobody raises USER any further
_current: ContextVar[Urgency] = ContextVar("trolleyfs_priority", default=_USER)


def current() -> Urgency:
    """The urgency of the work this task (or worker thread) is doing."""
    return _current.get()


@contextmanager
def priority(value: Priority | Urgency) -> Iterator[Urgency]:
    """Mark everything the body does (and the tasks it starts) as ``value``;
    yields the :class:`Urgency`, to be kept where others may hurry it (a flight)."""
    urgency = value if isinstance(value, Urgency) else Urgency(value)
    token = _current.set(urgency)
    try:
        yield urgency
    finally:
        _current.reset(token)


def as_urgency(value: Priority | Urgency | None) -> Urgency:
    """``value`` as an :class:`Urgency`; None: the current one."""
    if value is None:
        return current()
    return value if isinstance(value, Urgency) else Urgency(value)
