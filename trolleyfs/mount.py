"""Running a mount: build the remotes, store, tree and Operations (each given
its collaborators at construction); mount; serve until unmounted or
signalled; clean up in reverse order."""

from __future__ import annotations

import errno
import logging
import os
import re
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack

import pyfuse3
import trio

from .config import Config
from .errors import UserError
from .fs import Operations
from .pagecache import PagePusher
from .read.shared import SharedReads
from .read.store import Store
from .servers import open_remotes
from .shared.listings import SharedListings
from .shared.wiring import open_shared
from .stats import Stats
from .tree.inodes import UidIndex
from .tree.saved import holds as saved_listings_held
from .tree.tree import Tree
from .views.wiring import transcoding, views

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
            if opt in PASSED_OPTIONS or key == "fsname":
                opts.add(opt)
                continue
            raise UserError(
                f"unknown mount option {opt!r} (known: {', '.join(sorted(PASSED_OPTIONS | {'fsname=NAME'}))})"
            )
    if not any(o.startswith("fsname=") for o in opts):
        # shown by mount(8) and df; an absolute name so fusermount leaves it alone
        opts.add("fsname=trolleyfs:" + os.path.abspath(source).replace(",", "_"))
    return opts


def op_deadline(config: Config) -> float:
    """How long one filesystem operation may go without progress (no remote
    answer arriving), all retries included (see :mod:`trolleyfs.fs`)."""
    return max((s.timeout * (s.retries + 2) for s in config.servers.values()), default=60.0)


async def serve(
    config: Config,
    mountpoint: str,
    options: set[str],
    on_ready: Callable[[], None] = lambda: None,
    debug_toggle: Callable[[], None] | None = None,
    probe_first: bool = True,
    warn: Callable[[str], None] = log.warning,
) -> None:
    r"""Mount ``config`` at ``mountpoint`` and serve until unmounted or signalled.
    With ``probe_first``, each server's search endpoint must answer first: a
    wrong URL or password fails here, before anything is mounted; a server
    that cannot be reached but whose listings the disk cache keeps is mounted
    offline, with one ``warn``\ ing."""
    if probe_first:
        await _probe_or_fail(config, warn)
    stats = Stats()
    async with AsyncExitStack() as stack:
        remotes = await open_remotes(config, stack)
        shared = await open_shared(config.cache.shared, stack)
        async with trio.open_nursery() as nursery:
            index = UidIndex()  # filled by the tree's inode table, read by the page pusher
            pusher = PagePusher(index.inodes_of, nursery)
            c = config.cache
            forms = transcoding(config, remotes)  # objects as stored, or in a folder's transfer syntax
            reads = SharedReads(shared.tier, shared.leases) if shared else None
            store = Store(c, forms.fetchers, stats, nursery, on_prefetched=pusher.push, shared=reads)
            parts = views(remotes, store, forms)
            listings = (
                SharedListings(shared.tier, shared.leases, c.folder_ttl, c.study_ttl, c.series_ttl) if shared else None
            )
            searchers = {n: r.searcher for n, r in remotes.items()}
            tree = Tree(config, searchers, store, stats, index, views=parts, shared=listings)
            ops = Operations(tree.inodes, stats, op_deadline(config))
            pyfuse3.init(ops, mountpoint, options)
            serving = [True]  # pyfuse3.terminate() on an ended session crashes the process
            try:
                nursery.start_soon(_signals, debug_toggle, serving)
                log.info(
                    "mounted %s at %s (%d folders, servers: %s)",
                    config.path,
                    mountpoint,
                    len(config.folders),
                    ", ".join(config.servers),
                )
                on_ready()
                await pyfuse3.main(min_tasks=4, max_tasks=64)
                serving[0] = False
                await store.drain()
            finally:
                serving[0] = False
                nursery.cancel_scope.cancel()
                # main() returns both when the kernel unmounted us and after terminate()
                pyfuse3.close(unmount=mounted_at(mountpoint))
                log.info("unmounted %s; %s", mountpoint, _summary(stats))


async def _probe_or_fail(config: Config, warn: Callable[[str], None]) -> None:
    from .probe import probe

    disk = config.cache.disk_dir
    for r in await probe(config, retrieve=False):
        if r.ok:
            continue
        if not r.reachable and disk and saved_listings_held(disk, r.server):
            warn(
                f"server {r.server!r} ({r.protocol} {r.where}) is unreachable ({r.detail}): mounting offline; "
                "what the disk cache holds is served, the rest fails with EIO until the server answers"
            )
            continue
        raise UserError(f"server {r.server!r} ({r.protocol} {r.where}) failed: {r.detail}")


def _summary(stats: Stats) -> str:
    return (
        f"{sum(stats.requests.values())} requests, {sum(stats.bytes_fetched.values()) / 1e6:.1f} MB fetched, "
        f"{sum(stats.errors.values())} errors"
    )


async def _signals(debug_toggle: Callable[[], None] | None, serving: list[bool]) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1) as sigs:
        async for sig in sigs:
            if sig == signal.SIGUSR1:
                if debug_toggle:
                    debug_toggle()
                continue
            log.info("%s: unmounting", signal.Signals(sig).name)
            if serving[0]:
                pyfuse3.terminate()
            # else: already unmounted, and finishing by itself


def mounted_at(path: str) -> bool:
    """Whether something is mounted at ``path`` (absolute), from the mount table.
    Unlike os.path.ismount this never touches the path itself, which would ask
    this very process for its root's attributes when it no longer serves them."""
    try:
        table = open("/proc/self/mounts", encoding="utf-8", errors="surrogateescape").read()
    except OSError:
        return os.path.ismount(path)
    return any(_unescape(line.split(" ")[1]) == path for line in table.splitlines() if line.count(" ") >= 2)


def _unescape(field: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def check_mountpoint(path: str) -> str:
    p = os.path.abspath(path)
    try:
        os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise UserError(f"{path}: a dead mount is still there (clear it with: fusermount3 -u -z {path})") from None
    if not os.path.exists(p):
        raise UserError(f"{path}: mount point does not exist")
    if not os.path.isdir(p):
        raise UserError(f"{path}: mount point is not a directory")
    if os.path.ismount(p):
        raise UserError(f"{path}: something is already mounted there (trolleyfs unmount {path} first)")
    if not os.access(p, os.W_OK | os.X_OK):
        raise UserError(f"{path}: no permission to mount here")
    return p
