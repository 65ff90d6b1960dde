"""Who is behind a FUSE request: the process (from the request's uid and
pid) for the audit, and the priority its reads get under the servers' limits.

A user's read is priority 0.  ``trolleyfs prefetch`` reads through the
mount like any program, so the mount cannot tell its reads from a user's by
what they ask; the prefetch therefore marks its own process first, by
reading the extended attribute :data:`BACKGROUND_XATTR` of the mount's root
(``getfattr -n user.trolleyfs.background MOUNT`` does the same for any
program).  From then on every request of that process runs at
:attr:`~trolleyfs.limits.priority.Priority.PREFETCH`: queued behind users'
reads and series readahead, and refused (EAGAIN) outside the servers'
background hours when it would have to fetch.  Why a mark and not the
program's name: a name is what ``/proc/PID/comm`` says (``python3`` for
``python -m trolleyfs``, anything for a renamed copy) and another program may
bear it; a mark is asked for explicitly, only ever lowers the priority of
the process that asked, and ends with that process.

The kernel names the calling *thread* (the prefetch reads in worker
threads): its process is looked up in ``/proc``, and a process is known by
its id and start time, so a pid reused after the prefetch ended is not
taken for it.  Looking a caller up costs a worker thread's hop; it is done
only while the audit is on or a process is marked."""

from __future__ import annotations

from dataclasses import dataclass

import trio

from ..audit.record import Who, identify, process_of
from ..limits.priority import Priority

BACKGROUND_XATTR = "user.trolleyfs.background"
PRUNE_S = 60.0  # marks of processes that ended are dropped at least this often


@dataclass(frozen=True)
class Caller:
    who: Who | None  # None: not identified (no audit)
    urgency: Priority


USER = Caller(None, Priority.USER)


def start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, ``/proc/PID/stat``
    field 22); None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
        return raw[raw.rindex(b")") + 2 :].split()[19].decode()
    except (OSError, ValueError, IndexError):
        return None


def _look(uid: int, tid: int, audit: bool) -> tuple[Who | None, int, str | None]:
    """In a worker thread: who, the process of thread ``tid``, and its start time."""
    who = identify(uid, tid) if audit else None
    pid = who.pid if who is not None and who.pid is not None else process_of(tid)
    return who, pid, start_time(pid)


class Callers:
    def __init__(self, audit: bool) -> None:
        """``audit``: identify every caller (user name, process name)."""
        self._audit = audit
        self._marked: dict[int, str] = {}  # pid -> start time: processes marked as background work
        self._pruned = 0.0

    @property
    def marked(self) -> int:
        return len(self._marked)

    async def of(self, uid: int, tid: int, identified: bool = True) -> Caller:
        """The caller of a request made by thread ``tid`` of user ``uid``:
        identified (with the audit on) where ``identified``, its priority always."""
        if self._marked and trio.current_time() - self._pruned > PRUNE_S:
            await self._prune()
        audit = self._audit and identified
        if not audit and not self._marked:
            return USER
        who, pid, started = await trio.to_thread.run_sync(_look, uid, tid, audit)
        background = started is not None and self._marked.get(pid) == started
        return Caller(who, Priority.PREFETCH if background else Priority.USER)

    async def mark(self, tid: int) -> None:
        """The process of thread ``tid`` asks to be treated as background work
        (for as long as it lives); marks of processes that ended are dropped."""
        pid = await trio.to_thread.run_sync(process_of, tid)
        started = await trio.to_thread.run_sync(start_time, pid)
        await self._prune()
        if started is not None:
            self._marked[pid] = started

    async def _prune(self) -> None:
        self._pruned = trio.current_time()
        alive = {p: await trio.to_thread.run_sync(start_time, p) for p in list(self._marked)}
        self._marked = {p: t for p, t in self._marked.items() if alive.get(p) == t}
