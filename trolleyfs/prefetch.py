"""``trolleyfs prefetch [--check] PATH...``: warm a mount's caches by reading
everything under each PATH through it, or (``--check``) count how many of
those files a read would take from the caches, without fetching anything.

Reading through the mount fills the memory cache and, when one is
configured, the disk cache (objects and listings), whatever the protocol, and
stays within what the mount allows each server (its connections, the series
fetched at once).  Files are handed to ``--jobs`` readers in series order, so
a series costs the request of its first file and one series request.

What a PATH holds is walked once: from a mount's root, only its folders
(``by-uid/``, ``by-accession/``, ``by-patient/``, ``query/`` and ``views/``
show again what the folders hold, or what was looked up), unless the user
names them; and a series reached twice (two folders showing one study) is
read and counted once.

What is cached comes from each series directory's ``user.trolleyfs.cached``
attribute (:mod:`trolleyfs.tree.cachestate`); nothing here ever ``stat``\\ s an
instance file, since the size of a file not yet fetched is only learnt by
fetching it.

Under the servers' limits its reads come last (after users' reads and series
readahead), and outside a server's background hours the mount refuses them:
it waits for the hours, saying when they open, or with ``--no-wait`` stops
(:mod:`trolleyfs.prefetchhours`).  Exit codes: 0 all done (or all cached), 1
something failed (or is missing), 2 a bad argument, 75 stopped outside the
background hours (``--no-wait``), 130 stopped by Ctrl-C."""

from __future__ import annotations

import errno
import json
import os
import pathlib
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import trio

from .errors import UserError
from .prefetchhours import EX_TEMPFAIL, HoursGate, NotWaiting
from .progress import Progress, Tally, progress_for
from .rootnames import CONTROL_DIR, RESERVED_NAMES, STATS_FILE, VIEWS_DIR
from .tree.cachestate import CACHE_XATTR

CHUNK = 1 << 20
DISK_SETTLE_S = 10.0  # after reading, wait this long without progress for the disk cache's writes
MAX_SHOWN = 10  # failures or missing files named in the summary
# a mount root's own directories: walked only when named (they show the folders' studies again)
NOT_FROM_ROOT = RESERVED_NAMES | {VIEWS_DIR}
SERIES_XATTR = "user.dicom.SeriesInstanceUID"


def plural(n: int, word: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass
class Group:
    """Files of one series directory under the PATHs, and its cache state."""

    dir: str
    names: list[str]
    whole: bool  # all files of the directory (else only those named as PATHs)
    state: dict[str, Any]

    def paths(self) -> list[str]:
        return [os.path.join(self.dir, n) for n in self.names]

    def series(self) -> tuple[str, str, str] | None:
        """What the files are: (server, SeriesInstanceUID, form), the same for
        a series wherever the tree shows it (None if unknown)."""
        try:
            uid = os.getxattr(self.dir, SERIES_XATTR).decode()
        except OSError:
            return None
        return str(self.state.get("server", "")), uid, str(self.state.get("form", ""))


@dataclass
class Walk:
    groups: list[Group] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dirs: int = 0
    files: int = 0


def _is_dir(path: str) -> bool:
    """Whether ``path`` is a directory, learnt by opening it as one: a stat
    would fetch an instance file whose size is not known yet."""
    try:
        os.scandir(path).close()
        return True
    except NotADirectoryError:
        return False
    except OSError as exc:
        raise UserError(f"{path}: {exc.strerror or exc}") from None


def mount_root(path: str) -> str:
    """The trolleyfs mount ``path`` is in (UserError if none), looked for from
    the top down: the directories above a mount are not the mount's, and
    nothing below its root is looked up (a study there is found by a search
    of its server, which must wait for the server's background hours; a
    directory opened is listed, a file stat-ed is fetched)."""
    parts = pathlib.PurePath(path).parts
    for n in range(1, len(parts) + 1):
        top = os.path.join(*parts[:n])
        if os.path.ismount(top) and os.path.isfile(os.path.join(top, CONTROL_DIR, STATS_FILE)):
            return top
    if not os.path.lexists(path):  # outside every mount: a stat asks no server
        raise UserError(f"{path}: No such file or directory")
    raise UserError(f"{path}: not inside a trolleyfs mount")


def _state(directory: str) -> dict[str, Any]:
    try:
        doc = json.loads(os.getxattr(directory, CACHE_XATTR))
    except OSError:
        raise OSError(f"{directory}: holds files that are not DICOM instances of the mount") from None
    if not isinstance(doc, dict):
        raise OSError(f"{directory}: unreadable {CACHE_XATTR}")
    return doc


def _scan(directory: str) -> tuple[list[str], list[str]]:
    dirs, files = [], []
    with os.scandir(directory) as it:
        for e in it:
            if e.is_dir(follow_symlinks=False):
                if e.name != CONTROL_DIR:
                    dirs.append(e.path)
            elif e.is_file(follow_symlinks=False):
                files.append(e.name)
    return sorted(dirs), sorted(files)


async def walk(paths: list[str], jobs: int, progress: Progress) -> Walk:
    """Every series directory under ``paths`` (and the files named directly),
    listed ``jobs`` directories at a time."""
    out = Walk()
    limiter = trio.CapacityLimiter(jobs)
    seen: set[str] = set()
    roots: set[str] = set()  # named mount roots: walked for their folders only

    async def visit(directory: str, nursery: trio.Nursery) -> None:
        if directory in seen:
            return
        seen.add(directory)
        try:
            dirs, files = await trio.to_thread.run_sync(_scan, directory, limiter=limiter, abandon_on_cancel=True)
            state = await trio.to_thread.run_sync(_state, directory, abandon_on_cancel=True) if files else {}
        except OSError as exc:
            out.errors.append(f"{directory}: cannot list: {exc.strerror or exc}")
            return
        out.dirs += 1
        out.files += len(files)
        progress.listing(out.dirs, out.files)
        if files:
            out.groups.append(Group(directory, files, True, state))
        for d in dirs:
            if directory in roots and os.path.basename(d) in NOT_FROM_ROOT:
                continue
            nursery.start_soon(visit, d, nursery)

    singles: dict[str, list[str]] = {}
    async with trio.open_nursery() as nursery:
        for p in paths:
            if await trio.to_thread.run_sync(_is_dir, p):  # (never a stat of a file: that would fetch it)
                roots.update([p] if await trio.to_thread.run_sync(os.path.ismount, p) else [])
                nursery.start_soon(visit, p, nursery)
            else:
                singles.setdefault(os.path.dirname(p), []).append(os.path.basename(p))
    for directory, names in singles.items():
        if directory in seen:
            continue  # the whole directory is read anyway
        try:
            state = await trio.to_thread.run_sync(_state, directory)
        except OSError as exc:
            out.errors.append(str(exc))
            continue
        out.groups.append(Group(directory, sorted(set(names)), False, state))
    out.groups.sort(key=lambda g: g.dir)
    out.groups = await trio.to_thread.run_sync(_once, out.groups)
    return out


def _once(groups: list[Group]) -> list[Group]:
    """Each series once (blocking: reads xattrs): a series shown in two places
    (two folders holding one study) is read and counted where it comes first,
    whole directories before single files."""
    whole: set[tuple[str, str, str]] = set()
    named: set[tuple[tuple[str, str, str], str]] = set()
    out = []
    for g in sorted(groups, key=lambda g: not g.whole):
        key = g.series()
        if key is None:
            out.append(g)
        elif g.whole:
            if key not in whole:
                whole.add(key)
                out.append(g)
        else:
            g.names = [n for n in g.names if key not in whole and (key, n) not in named]
            named.update((key, n) for n in g.names)
            if g.names:
                out.append(g)
    return sorted(out, key=lambda g: g.dir)


def _counts(group: Group) -> tuple[int, int, list[str]]:
    """``(cached, on disk, missing paths)`` of a group, from its state: for
    single files the state is per directory, so doubt counts as missing."""
    st = group.state
    missing = set(st.get("missing", []))
    complete = bool(st.get("missing_complete", False))
    if group.whole and complete:
        return int(st["cached"]), int(st["on_disk"]), [os.path.join(group.dir, n) for n in sorted(missing)]
    gone = [n for n in group.names if n in missing or not complete]
    all_on_disk = st.get("on_disk") == st.get("files")
    cached = len(group.names) - len(gone)
    return cached, cached if all_on_disk else 0, [os.path.join(group.dir, n) for n in gone]


def _read_file(path: str) -> int:
    n = 0
    buf = bytearray(CHUNK)
    with open(path, "rb", buffering=0) as f:
        while got := f.readinto(buf):
            n += got
    return n


async def read_all(
    groups: list[Group], jobs: int, tally: Tally, progress: Progress, errors: list[str], hours: HoursGate
) -> None:
    send, receive = trio.open_memory_channel[str](0)
    limiter = trio.CapacityLimiter(jobs)

    async def read(path: str) -> int:
        """One file; while the mount refuses it outside the background hours, wait and try again."""
        while True:
            try:
                return await trio.to_thread.run_sync(_read_file, path, limiter=limiter, abandon_on_cancel=True)
            except OSError as exc:
                if exc.errno != errno.EAGAIN:
                    raise
            await hours.refused(path)

    async def reader(queue: trio.MemoryReceiveChannel[str]) -> None:
        async with queue:
            async for path in queue:
                try:
                    n = await read(path)
                except OSError as exc:
                    tally.failed += 1
                    errors.append(f"{path}: {exc.strerror or exc}")
                    progress.advance(tally, 0)
                    continue
                tally.done += 1
                tally.done_bytes += n
                progress.advance(tally, n)

    async with trio.open_nursery() as nursery:
        for _ in range(jobs):
            nursery.start_soon(reader, receive.clone())
        await receive.aclose()
        async with send:
            for g in groups:
                for p in g.paths():
                    await send.send(p)


async def _ticking(progress: Progress, every: float, tally: list[Tally]) -> None:
    while True:
        await trio.sleep(every)
        progress.tick(tally[0] if tally else None)


async def _settle_on_disk(groups: list[Group]) -> int:
    """Files of ``groups`` in the disk cache, once its background writes are
    done (or made no progress for :data:`DISK_SETTLE_S`)."""
    best, since = -1, trio.current_time()
    while True:
        on_disk = 0
        for g in groups:
            try:
                g.state = await trio.to_thread.run_sync(_state, g.dir)
            except OSError:
                continue
            on_disk += _counts(g)[1]
        total = sum(len(g.names) for g in groups)
        if on_disk > best:
            best, since = on_disk, trio.current_time()
        if on_disk >= total or trio.current_time() - since > DISK_SETTLE_S:
            return on_disk
        await trio.sleep(0.2)


@dataclass
class Outcome:
    tally: Tally = field(default_factory=Tally)
    errors: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    failed: bool = False
    walked: bool = False  # whether the paths were listed (not yet while waiting for the hours)

    def stopped(self) -> str:
        """How far it got, for a run stopped early."""
        t = self.tally
        if not self.walked:
            return "stopped before listing anything"
        return f"stopped: {t.done} of {plural(t.files, 'file')} read ({t.done_bytes / 1e6:.1f} MB)"


async def _run(
    paths: list[str],
    check: bool,
    jobs: int,
    every: float,
    disk: bool,
    progress: Progress,
    out: Outcome,
    hours: HoursGate,
) -> None:
    tallies: list[Tally] = []
    async with trio.open_nursery() as ticker:
        ticker.start_soon(_ticking, progress, every, tallies)
        if not check:  # listing is asking the server too: not outside its background hours
            await hours.before_walk(paths)
        w = await walk(paths, jobs, progress)
        out.walked = True
        out.errors.extend(w.errors)
        t = out.tally
        t.files = sum(len(g.names) for g in w.groups)
        if check:
            ticker.cancel_scope.cancel()
            _report_check(w, t, disk, out)
            return
        for g in w.groups:
            sized, size = int(g.state.get("sized", 0)), int(g.state.get("bytes", 0))
            if g.whole:
                t.known_files += sized
                t.known_bytes += size
        t.started = time.monotonic()
        tallies.append(t)
        progress.start(t)
        await read_all(w.groups, jobs, t, progress, out.errors, hours)
        ticker.cancel_scope.cancel()
    progress.close()
    rate = t.done_bytes / 1e6 / t.elapsed()
    amount = f"{t.done_bytes / 1e6:.1f} MB in {t.elapsed():.1f} s ({rate:.1f} MB/s)"
    line = f"read {t.done} of {plural(t.files, 'file')}, {amount}"
    if disk and t.done:
        on_disk = await _settle_on_disk([g for g in w.groups if g.whole])
        line += f"; in the disk cache: {on_disk} of {plural(t.files, 'file')}"
    out.lines.append(line)
    out.failed = bool(out.errors)


def _report_check(w: Walk, t: Tally, disk: bool, out: Outcome) -> None:
    cached = on_disk = 0
    missing: list[str] = []
    for g in w.groups:
        c, d, m = _counts(g)
        cached, on_disk, missing = cached + c, on_disk + d, missing + m
    where = f" (in the disk cache: {on_disk})" if disk else " (no disk cache: memory only, lost at unmount)"
    out.lines.append(
        f"{cached} of {plural(t.files, 'file')} would be read without the server{where}; {len(missing)} missing"
    )
    out.lines += [f"  missing: {p}" for p in missing[:MAX_SHOWN]]
    if len(missing) > MAX_SHOWN:
        out.lines.append(f"  ... and {len(missing) - MAX_SHOWN} more")
    out.failed = bool(missing or out.errors)


def _stopped_outside_hours(why: NotWaiting, outcome: Outcome, progress: Progress, out: TextIO) -> int:
    progress.close()
    print(f"prefetch: {outcome.stopped()}: {why}", file=out)
    return EX_TEMPFAIL


def _not_waiting(exc: BaseException) -> NotWaiting | None:
    """The refusal that ended the run outside the background hours, if one did."""
    if isinstance(exc, BaseExceptionGroup):
        return next(filter(None, (_not_waiting(e) for e in exc.exceptions)), None)
    return exc if isinstance(exc, NotWaiting) else None


def _interrupted(exc: BaseException) -> bool:
    """Whether Ctrl-C is what ended the run (trio may wrap it in groups)."""
    if isinstance(exc, BaseExceptionGroup):
        return any(_interrupted(e) for e in exc.exceptions)
    return isinstance(exc, KeyboardInterrupt)


def run_prefetch(
    paths: list[str],
    check: bool = False,
    jobs: int = 4,
    every: float = 5.0,
    out: TextIO = sys.stdout,
    wait: bool = True,
) -> int:
    """The command: returns its exit code (bad arguments raise UserError).
    ``wait``: outside a server's background hours, wait for them (else stop)."""
    if not 1 <= jobs <= 64:
        raise UserError(f"--jobs {jobs}: use 1 to 64")
    if not every > 0:
        raise UserError(f"--interval {every}: must be more than 0 seconds")
    absolute = [os.path.abspath(p) for p in paths]
    roots = set()
    for p in absolute:
        roots.add(mount_root(p))
    disk = any(_has_disk_cache(r) for r in roots)
    progress = progress_for(out, every)
    outcome = Outcome()
    hours = HoursGate(sorted(roots), progress, wait)
    hours.mark()  # this process's reads are background work for each mount
    try:
        trio.run(_run, absolute, check, jobs, every, disk, progress, outcome, hours)
    except BaseException as exc:
        stopped = _not_waiting(exc)
        if stopped is not None:
            return _stopped_outside_hours(stopped, outcome, progress, out)
        if not _interrupted(exc):
            raise
        progress.close()
        print(f"prefetch: {outcome.stopped()}", file=out)
        return 130
    finally:
        progress.close()
    name = "check" if check else "prefetch"
    for line in outcome.lines:
        print(line if line.startswith(" ") else f"{name}: {line}", file=out)
    if outcome.errors:
        print(f"{name}: {len(outcome.errors)} failed:", file=out)
        for e in outcome.errors[:MAX_SHOWN]:
            print(f"  {e}", file=out)
        if len(outcome.errors) > MAX_SHOWN:
            print(f"  ... and {len(outcome.errors) - MAX_SHOWN} more", file=out)
    return 1 if outcome.failed else 0


def _has_disk_cache(root: str) -> bool:
    try:
        with open(os.path.join(root, CONTROL_DIR, STATS_FILE), encoding="utf-8") as f:
            return json.load(f).get("disk_cache") is not None
    except (OSError, ValueError):
        return False
