"""Running a FUSE mount: the core (:mod:`trolleyfs.wiring`) and the FUSE
Operations over it; mount; serve until unmounted or signalled; clean up in
reverse order.

Signals: SIGTERM and SIGINT unmount; SIGUSR1 toggles debug logging; SIGHUP
reopens the audit file (logrotate's ``postrotate``) when the mount has an
audit trail, and unmounts otherwise (a foreground mount whose terminal
closed, as before there was an audit)."""

from __future__ import annotations

import errno
import logging
import os
import re
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pyfuse3
import trio

from .audit.access import Auditor
from .audit.trail import AuditTrail
from .config import Config
from .errors import UserError
from .fuse.ops import Operations
from .fuse.pagecache import PagePusher
from .probe import preflight
from .serving import fetched, until_stopped
from .stats import Stats, human_age
from .tree.inodes import UidIndex
from .wiring import open_core

log = logging.getLogger("trolleyfs")

# mount(8) options that mean something to mount or fstab, not to FUSE
IGNORED_OPTIONS = {
    "defaults",
    "auto",
    "noauto",
    "user",
    "users",
    "nouser",
    "_netdev",
    "nofail",
    "ro",
    "exec",
    "noexec",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "async",
    "sync",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "lazytime",
}
PASSED_OPTIONS = {"allow_other", "allow_root", "auto_unmount"}
NONEMPTY = "nonempty"  # mount over a directory that holds files (checked here: FUSE 3 itself does not ask)
STATUS_EVERY_S = 5.0  # how often the status line is looked at for a change


def fuse_options(user_options: list[str], source: str = "trolleyfs") -> set[str]:
    """The FUSE mount options: read-only and permission checks always; a few
    known options passed on; mount(8)/fstab ones dropped; anything else refused."""
    opts = {"subtype=trolleyfs", "ro", "default_permissions", "noatime"}
    for raw in user_options:
        for opt in filter(None, (o.strip() for o in raw.split(","))):
            key = opt.split("=", 1)[0]
            if opt in IGNORED_OPTIONS or key.startswith("x-") or key == "comment":
                continue
            if opt == "rw":
                raise UserError("option 'rw' is not possible: trolleyfs is read-only")
            if opt == NONEMPTY:
                continue  # for check_mountpoint
            if opt in PASSED_OPTIONS or key == "fsname":
                opts.add(opt)
                continue
            raise UserError(
                f"unknown mount option {opt!r} (known: {', '.join(sorted(PASSED_OPTIONS | {'fsname=NAME', NONEMPTY}))})"
            )
    if not any(o.startswith("fsname=") for o in opts):
        # shown by mount(8) and df; an absolute name so fusermount leaves it alone
        opts.add("fsname=trolleyfs:" + os.path.abspath(source).replace(",", "_"))
    return opts


async def serve(
    config: Config,
    mountpoint: str,
    options: set[str],
    on_ready: Callable[[], None] = lambda: None,
    debug_toggle: Callable[[], None] | None = None,
    probe_first: bool = True,
    warn: Callable[[str], None] = log.warning,
    on_status: Callable[[str], None] | None = None,
) -> None:
    r"""Mount ``config`` at ``mountpoint`` and serve until unmounted or signalled.
    With ``probe_first``, each server must answer a search and a read first: a
    wrong URL or password fails here, before anything is mounted; a server
    that cannot be reached but whose listings the disk cache keeps is mounted
    offline, with one ``warn``\ ing.  ``on_status`` is told a one-line status
    once mounted and whenever the servers served offline change (systemd's
    status line)."""
    offline = await preflight(config, warn) if probe_first else {}
    async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
        index = UidIndex()  # filled by the tree's inode table, read by the page pusher
        pusher = PagePusher(index.inodes_of, nursery)
        core = await open_core(config, stack, nursery, index, on_readahead=pusher.push)
        core.stats.offline.update(offline)
        audit = Auditor(core.audit) if core.audit is not None else None
        ops = Operations(core.tree.inodes, core.stats, core.op_deadline(), audit, pusher)
        pyfuse3.init(ops, mountpoint, options)
        serving = [True]  # pyfuse3.terminate() on an ended session crashes the process
        try:
            nursery.start_soon(_signals, debug_toggle, serving, core.audit)
            log.info(
                "mounted %s at %s (%d folders, servers: %s)",
                config.path,
                mountpoint,
                len(config.folders),
                ", ".join(config.servers),
            )
            on_ready()
            if on_status is not None:
                nursery.start_soon(_report_status, f"serving {config.path} at {mountpoint}", core.stats, on_status)
            await pyfuse3.main(min_tasks=4, max_tasks=64)
            serving[0] = False
            await core.store.drain()
        finally:
            serving[0] = False
            nursery.cancel_scope.cancel()
            # main() returns both when the kernel unmounted us and after terminate()
            pyfuse3.close(unmount=mounted_at(mountpoint))
            log.info("unmounted %s; %s", mountpoint, fetched(core.stats))


def status_line(serving: str, stats: Stats) -> str:
    """``serving ...``, and the servers served offline, since when, and how old
    the oldest listing shown meanwhile is."""
    if not stats.offline:
        return serving
    parts = []
    for name, o in stats.offline.items():
        since = time.strftime("%Y-%m-%d %H:%M", time.localtime(o.since))
        shown = f", listings shown up to {human_age(time.time() - o.oldest_shown)} old" if o.oldest_shown else ""
        parts.append(f"{name} unreachable since {since}{shown}")
    return f"{serving}; OFFLINE: {'; '.join(parts)}"


async def _report_status(serving: str, stats: Stats, on_status: Callable[[str], None]) -> None:
    """Tell ``on_status`` the status line whenever it changes from ``serving``
    (which ``on_ready`` said)."""
    said = serving
    while True:
        line = status_line(serving, stats)
        if line != said:
            on_status(line)
            said = line
        await trio.sleep(STATUS_EVERY_S)


async def _signals(debug_toggle: Callable[[], None] | None, serving: list[bool], audit: AuditTrail | None) -> None:
    await until_stopped(debug_toggle, audit, "unmounting")
    if serving[0]:
        pyfuse3.terminate()
    # else: already unmounted, and finishing by itself


def mounted_at(path: str) -> bool:
    """Whether something is mounted at ``path`` (absolute), from the mount table.
    Unlike os.path.ismount this never touches the path itself, which would ask
    this very process for its root's attributes when it no longer serves them."""
    try:
        table = Path("/proc/self/mounts").read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return os.path.ismount(path)
    return any(_unescape(line.split(" ")[1]) == path for line in table.splitlines() if line.count(" ") >= 2)


def _unescape(field: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def allows_nonempty(user_options: list[str]) -> bool:
    """Whether ``-o nonempty`` was given."""
    return any(o.strip() == NONEMPTY for raw in user_options for o in raw.split(","))


def check_mountpoint(path: str, nonempty: bool = False) -> str:
    """The absolute mount point, if a mount may go there: an existing, empty
    (unless ``nonempty``) directory we may mount on, with nothing mounted on
    it; else a UserError saying what is wrong and what to do."""
    p = os.path.abspath(path)
    try:
        os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise UserError(f"{path}: a dead mount is still there (clear it with: fusermount3 -u -z {path})") from None
        if exc.errno == errno.ENOTDIR:
            raise UserError(f"{path}: {_file_on_the_way(p)} is a file, not a directory") from None
    if not os.path.lexists(p):
        raise UserError(f"{path}: mount point does not exist (create it first: mkdir -p {path})")
    if not os.path.isdir(p):
        raise UserError(f"{path}: mount point is a file, not a directory")
    if os.path.ismount(p):
        raise UserError(f"{path}: something is already mounted there (trolleyfs unmount {path} first)")
    if not os.access(p, os.W_OK | os.X_OK):
        raise UserError(f"{path}: no permission to mount here")
    if not nonempty:
        try:
            with os.scandir(p) as entries:
                held = sum(1 for _ in entries)
        except OSError:
            held = 0
        if held:
            raise UserError(
                f"{path}: mount point is not empty (a mount would hide its {held} "
                f"entr{'y' if held == 1 else 'ies'}): choose an empty directory, or add -o nonempty"
            )
    return p


def _file_on_the_way(path: str) -> str:
    """The first component of ``path`` that is not a directory."""
    parts = Path(path).parts
    for i in range(1, len(parts) + 1):
        sub = os.path.join(*parts[:i])
        if os.path.lexists(sub) and not os.path.isdir(sub):
            return sub
    return path
