"""``trolleyfs prefetch`` under the servers' limits: it marks its own process
as background work (so the mount serves users' reads and series readahead
first, see :mod:`trolleyfs.fuse.callers`), and when the mount refuses one of
its reads because a server's background hours are shut (EAGAIN), it waits
for them, saying when they open, or, asked not to wait, stops with one line
saying so.

When the hours open is read from the mount itself (``.trolleyfs/stats.json``:
each server's window), so the prefetch needs no config.  Before it walks its
paths (each folder, study and series listed is a search of the server) it
waits for the hours of the servers they belong to, so nothing at all is asked
of a server outside its hours.  All readers share one wait: the first refused
read starts it, the others join it, and each retries its file when it ends."""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
from dataclasses import dataclass

import trio

from .errors import UserError
from .fuse.callers import BACKGROUND_XATTR
from .progress import Progress
from .rootnames import CONTROL_DIR, STATS_FILE

SERVER_XATTR = "user.trolleyfs.server"  # a folder's or study's server, as the mount names it
RECHECK_S = 60.0  # the mount's windows are read again at least this often while waiting
REFUSED_AGAIN_S = 5.0  # refused while the mount shows every window open (its clock ran past ours): try again
EX_TEMPFAIL = 75  # sysexits.h: try again later (cron and systemd timers can tell it from a failure)


def mark_background(root: str) -> None:
    """Tell the mount at ``root`` that this process is a prefetch (blocking)."""
    try:
        os.getxattr(root, BACKGROUND_XATTR)
    except OSError as exc:  # a mount of an older trolleyfs: the reads are a user's, as before
        if exc.errno not in (errno.ENODATA, errno.ENOTSUP):
            raise UserError(f"{root}: cannot mark this prefetch as background work: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class Shut:
    """A server whose background hours are shut, and when they open."""

    server: str
    hours: str
    opens: _dt.datetime

    def says(self) -> str:
        return f"{self.server}'s background hours ({self.hours}) open at {self.opens.isoformat(timespec='minutes')}"


def shut_windows(root: str) -> list[Shut]:
    """The servers of the mount at ``root`` whose background hours are shut
    now, soonest opening first (blocking: reads the mount's stats)."""
    try:
        with open(os.path.join(root, CONTROL_DIR, STATS_FILE), encoding="utf-8") as f:
            limits = json.load(f).get("limits") or {}
    except (OSError, ValueError):
        return []
    out = []
    for server, state in limits.items():
        window = state.get("window") if isinstance(state, dict) else None
        if isinstance(window, dict) and not window.get("open") and window.get("opens"):
            try:
                opens = _dt.datetime.fromisoformat(window["opens"])
            except (TypeError, ValueError):
                continue
            out.append(Shut(server, str(window.get("background_hours")), opens))
    return sorted(out, key=lambda s: s.opens)


def servers_of(path: str, root: str) -> set[str] | None:
    """The server a prefetch of ``path`` reads from: the one its folder (the
    first directory below the mount's root) names; None when that names none
    (the root itself, ``by-uid/``, ``query/``, ``views/``: any of the mount's
    servers).  Only the folder is asked: it is known without a search, while
    a study or series below it may have to be listed first.  Blocking."""
    rel = os.path.relpath(os.path.normpath(path), os.path.normpath(root))
    if rel in (".", "") or rel.startswith(".."):
        return None
    folder = os.path.join(root, rel.split(os.sep, 1)[0])
    try:
        return {os.getxattr(folder, SERVER_XATTR).decode()}
    except OSError:
        return None


class NotWaiting(Exception):
    """A read was refused outside the background hours and ``--no-wait`` was given."""


class HoursGate:
    """The one wait of a prefetch's readers for the background hours."""

    def __init__(self, roots: list[str], progress: Progress, wait: bool = True) -> None:
        self._roots = sorted(roots, key=len, reverse=True)  # the deepest root a path is under is its mount
        self._progress = progress
        self._wait = wait
        self._open: trio.Event | None = None  # set when the current wait ends
        self.waited_s = 0.0
        self.said: list[str] = []  # what each wait said (for the summary)

    def mark(self) -> None:
        """Mark this process as background work for each mount (blocking)."""
        for root in self._roots:
            mark_background(root)

    def _root_of(self, path: str) -> str:
        return next((r for r in self._roots if path == r or path.startswith(r.rstrip("/") + "/")), self._roots[0])

    async def refused(self, path: str) -> None:
        """A read of ``path`` was refused (EAGAIN): return when it may be tried
        again, or raise :class:`NotWaiting`."""
        if self._open is not None:
            await self._open.wait()
            return
        self._open = trio.Event()
        try:
            await self._until_open(self._root_of(path))
        finally:
            self._open.set()
            self._open = None

    async def before_walk(self, paths: list[str]) -> None:
        """Return when the background hours of every server the ``paths``
        belong to are open (or raise :class:`NotWaiting`): the walk's searches
        wait for them as the reads do."""
        for path in paths:
            root = self._root_of(path)
            servers = await trio.to_thread.run_sync(servers_of, path, root)
            while shut := await self._shut(root, servers):
                await self._wait_for(shut, root, servers)

    async def _until_open(self, root: str) -> None:
        """After a refused read: wait for the first shut window of any server."""
        shut = await self._shut(root, None)
        if not shut and self._wait:  # they opened meanwhile, or the mount's clock says otherwise: look again soon
            await trio.sleep(REFUSED_AGAIN_S)
            return
        await self._wait_for(shut, root, None)

    async def _shut(self, root: str, servers: set[str] | None) -> list[Shut]:
        """The shut windows of ``servers`` (None: of any), soonest first."""

        def now() -> list[Shut]:
            return [s for s in shut_windows(root) if servers is None or s.server in servers]

        return await trio.to_thread.run_sync(now)

    async def _wait_for(self, shut: list[Shut], root: str, servers: set[str] | None) -> None:
        """Wait until the first of ``shut`` opens, saying so (or raise
        :class:`NotWaiting` when asked not to wait)."""
        if not self._wait:
            what = shut[0].says() if shut else "a server's background hours are shut"
            raise NotWaiting(f"outside the background hours: {what}; not waiting (--no-wait)")
        text = f"waiting: {shut[0].says()}"
        self.said.append(text)
        self._progress.waiting(text)
        started = trio.current_time()
        try:
            while shut:
                left = (shut[0].opens - _dt.datetime.now(_dt.UTC)).total_seconds()
                await trio.sleep(min(max(left, 1.0), RECHECK_S))
                shut = [s for s in await self._shut(root, servers) if s.server == shut[0].server]
        finally:
            self.waited_s += trio.current_time() - started
            self._progress.waiting(None)
