"""Command line: ``trolleyfs mount | unmount | check | prefetch | webdav | demo``.

User mistakes (bad config, bad mount point, unreachable server) print one line
and exit non-zero, without a traceback."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import subprocess
import sys

import trio

from . import __version__
from . import clihelp as H
from .config import Config, load
from .errors import TrolleyError, UserError
from .logs import LEVELS, daemon_destination, setup_logging
from .transport.tuning import tune

log = logging.getLogger("trolleyfs")
WARNING = "warning: "  # a line the daemon sends its parent before "ok"


def _load(path: str) -> Config:
    cfg = load(path)
    for w in cfg.warnings:
        print(f"trolleyfs: warning: {w}", file=sys.stderr)
    return cfg


def cmd_mount(args: argparse.Namespace) -> int:
    from .mount import allows_nonempty, check_mountpoint, fuse_options, serve
    from .sdnotify import notify

    cfg = _load(args.config)
    options = fuse_options(args.options or [], cfg.path)
    mountpoint = check_mountpoint(args.mountpoint, allows_nonempty(args.options or []))
    if args.foreground:
        toggle = setup_logging(args.log_level, args.log_file)

        def ready() -> None:
            notify("READY=1", f"STATUS=serving {cfg.path} at {mountpoint}")

        def status(line: str) -> None:
            notify(f"STATUS={line}")

        try:
            trio.run(serve, cfg, mountpoint, options, ready, toggle, not args.no_check, log.warning, status)
        finally:
            notify("STOPPING=1")
        return 0
    return _daemonize(cfg, mountpoint, options, args)


def _daemonize(cfg: Config, mountpoint: str, options: set[str], args: argparse.Namespace) -> int:
    """Fork; the child mounts and serves, the parent returns once the mount is
    ready (exit 0) or the child reports why it could not mount (exit 1)."""
    from .mount import serve

    destination = daemon_destination(args.log_file)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid:  # parent
        os.close(wfd)
        with os.fdopen(rfd, "rb") as r:
            lines = r.read().decode(errors="replace").strip().splitlines()
        for line in lines:
            if line.startswith(WARNING):  # said during start-up, before "ok" or the error
                print(f"trolleyfs: {line}", file=sys.stderr)
        if lines and lines[-1] == "ok":
            if destination.said:  # where to look later, said as the mount goes to the background
                print(f"trolleyfs: {destination.said}", file=sys.stderr)
            return 0
        msg = "\n".join(ln for ln in lines if not ln.startswith(WARNING))
        print(f"trolleyfs: {msg or 'the mount process exited during start-up'}", file=sys.stderr)
        os.waitpid(pid, 0)
        return 1
    # child
    os.close(rfd)
    status = 0
    try:
        os.setsid()
        os.chdir("/")
        toggle = setup_logging(args.log_level, destination=destination)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1) if destination.kind == "stderr" else (0, 1, 2):  # systemd's journal keeps stderr
            os.dup2(devnull, fd)

        def ready() -> None:
            os.write(wfd, b"ok\n")
            os.close(wfd)

        def warn(msg: str) -> None:
            log.warning("%s", msg)
            with contextlib.suppress(OSError):  # said after start-up: the parent is gone, the log has it
                os.write(wfd, f"{WARNING}{msg}\n".encode())

        trio.run(serve, cfg, mountpoint, options, ready, toggle, not args.no_check, warn)
    except BaseException as exc:  # report anything to the parent; never a traceback on its terminal
        status = 1
        try:
            os.write(wfd, f"{_describe(exc)}\n".encode())
            os.close(wfd)
        except OSError:
            pass
        log.error("mount process failed: %s", _describe(exc), exc_info=not isinstance(_leaf(exc), TrolleyError))
    finally:
        os._exit(status)


def _leaf(exc: BaseException) -> BaseException:
    """The one exception inside (nested) exception groups of one, as trio's
    nurseries wrap them; a group of several stays a group."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    exc = _leaf(exc)
    if isinstance(exc, TrolleyError):
        return str(exc)
    if isinstance(exc, RuntimeError) and "fuse" in str(exc).lower():
        return f"could not mount: {exc} (is /dev/fuse there and fuse3 installed?)"
    return f"{type(exc).__name__}: {exc}"


def cmd_unmount(args: argparse.Namespace) -> int:
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool is None:
        raise UserError("fusermount3 is not installed (apt-get install fuse3)")
    path = os.path.abspath(args.mountpoint)
    if not os.path.ismount(path):
        if os.path.lexists(path) and not os.path.isdir(path):
            raise UserError(f"{args.mountpoint}: is a file, not a mount point")
        raise UserError(f"{args.mountpoint}: nothing is mounted there")
    cmd = [tool, "-u"] + (["-z"] if args.lazy else []) + [path]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        said = " ".join(res.stderr.split()) or "unmount failed"
        if "busy" in said.lower():
            said += (
                f" (a program still uses it: a shell inside it, an open file; close them, "
                f"or detach it now and finish later: trolleyfs unmount -z {args.mountpoint})"
            )
        raise UserError(f"{args.mountpoint}: {said}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .probe import exit_code, format_rows, probe

    cfg = _load(args.config)
    servers, folders = len(cfg.servers), len(cfg.folders)
    print(f"{cfg.path}: config ok ({servers} server{'s' * (servers != 1)}, {folders} folder{'s' * (folders != 1)})")
    rows = trio.run(probe, cfg, True)
    print(format_rows(rows))
    return exit_code(rows)


def cmd_prefetch(args: argparse.Namespace) -> int:
    from .prefetch import run_prefetch

    return run_prefetch(args.paths, check=args.check, jobs=args.jobs, every=args.interval, wait=not args.no_wait)


def cmd_webdav(args: argparse.Namespace) -> int:
    from .davserve import run_webdav

    return run_webdav(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo.runner import run_demo

    return run_demo(args.mountpoint, args.log_level)


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="trolleyfs", description=H.MAIN, epilog=H.MAIN_EPILOG, formatter_class=raw)
    p.add_argument("--version", action="version", version=f"trolleyfs {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = sub.add_parser(
        "mount",
        help="mount the folders of a config file",
        description=H.MOUNT,
        epilog=H.MOUNT_EPILOG,
        formatter_class=raw,
    )
    m.add_argument("config", help="the TOML config file")
    m.add_argument("mountpoint", help="an existing empty directory (or one with files: -o nonempty)")
    m.add_argument("-f", "--foreground", action="store_true", help="stay attached; log to stderr; Ctrl-C unmounts")
    m.add_argument(
        "-o", dest="options", action="append", metavar="OPTS", help="mount options, comma separated (see below)"
    )
    m.add_argument("--log-level", choices=LEVELS, default="info")
    m.add_argument(
        "--log-file", help="log to this file (default: stderr in the foreground; else the journal, syslog or a file)"
    )
    m.add_argument("--no-check", action="store_true", help="mount without probing the servers first (no offline check)")
    m.set_defaults(func=cmd_mount)

    u = sub.add_parser(
        "unmount",
        aliases=["umount"],
        help="unmount (same as fusermount3 -u)",
        description=H.UNMOUNT,
        epilog=H.UNMOUNT_EPILOG,
        formatter_class=raw,
    )
    u.add_argument("mountpoint", help="where a trolleyfs mount is")
    u.add_argument("-z", "--lazy", action="store_true", help="detach now, finish when no longer busy")
    u.set_defaults(func=cmd_unmount)

    c = sub.add_parser(
        "check",
        help="validate a config and probe each server's search and retrieve",
        description=H.CHECK,
        epilog=H.CHECK_EPILOG,
        formatter_class=raw,
    )
    c.add_argument("config", help="the TOML config file")
    c.set_defaults(func=cmd_check)

    pf = sub.add_parser(
        "prefetch",
        help="read everything under PATHs through the mount, filling its caches",
        description=H.PREFETCH,
        epilog=H.PREFETCH_EPILOG,
        formatter_class=raw,
    )
    pf.add_argument("paths", nargs="+", metavar="PATH", help="directories or files inside a trolleyfs mount")
    pf.add_argument(
        "--check",
        action="store_true",
        help="fetch nothing: count the files a read would take from the caches (exit 1 if any is not)",
    )
    pf.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=4,
        help="files read at once (default 4; the mount keeps its own limits per server)",
    )
    pf.add_argument(
        "--interval",
        type=float,
        default=5.0,
        help="seconds between progress lines when the output is not a terminal (default 5)",
    )
    pf.add_argument(
        "--no-wait",
        action="store_true",
        help="outside a server's background hours, stop (exit 75) instead of waiting for them",
    )
    pf.set_defaults(func=cmd_prefetch)

    w = sub.add_parser(
        "webdav",
        help="serve the same tree over WebDAV (foreground; Ctrl-C stops)",
        description=H.WEBDAV,
        epilog=H.WEBDAV_EPILOG,
        formatter_class=raw,
    )
    w.add_argument("config", help="the TOML config file (its [webdav] table: listen, tls_cert, tls_key, users)")
    w.add_argument(
        "--listen", metavar="HOST:PORT", help="address to listen on (default: [webdav] listen, or 127.0.0.1:8080)"
    )
    w.add_argument(
        "--allow-insecure-remote",
        action="store_true",
        help="serve beyond loopback without TLS or without users (anyone who reaches the address can read)",
    )
    w.add_argument("--log-level", choices=LEVELS, default="info")
    w.add_argument("--log-file", help="log to this file (default: stderr)")
    w.add_argument("--no-check", action="store_true", help="start without probing the servers first")
    w.set_defaults(func=cmd_webdav)

    d = sub.add_parser(
        "demo",
        help="start a local Orthanc with generated studies and mount it",
        description=H.DEMO,
        epilog=H.DEMO_EPILOG,
        formatter_class=raw,
    )
    d.add_argument("--mountpoint", default="/tmp/trolleyfs-demo", help="where to mount (default: %(default)s)")
    d.add_argument("--log-level", choices=LEVELS, default="warning", help="(default: %(default)s)")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune()
    try:
        return int(args.func(args) or 0)
    except BaseException as exc:  # one line for what the user can act on; a traceback only for bugs
        leaf = _leaf(exc)
        if isinstance(leaf, KeyboardInterrupt):
            return 130
        if isinstance(leaf, SystemExit):  # e.g. the demo's SIGTERM handler, raised inside a trio task
            return leaf.code if isinstance(leaf.code, int) else 0
        if isinstance(leaf, (TrolleyError, RuntimeError)) and not isinstance(leaf, BaseExceptionGroup):
            if isinstance(leaf, RuntimeError) and "fuse" not in str(leaf).lower():
                raise
            print(f"trolleyfs: {_describe(leaf)}", file=sys.stderr)
            return 2 if isinstance(leaf, UserError) else 1
        raise


def mount_helper(argv: list[str] | None = None) -> int:
    """``mount.fuse.trolleyfs CONFIG MOUNTPOINT [-o opts]``, as mount(8) and fstab
    call it.  Options besides FUSE's: ``log_level=``, ``log_file=``, ``no_check``.
    Returns once the mount is ready, like ``trolleyfs mount``."""
    args = list(sys.argv[1:] if argv is None else argv)
    positional: list[str] = []
    options: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-o" and i + 1 < len(args):
            options.append(args[i + 1])
            i += 2
            continue
        if a.startswith("-o") and len(a) > 2:
            options.append(a[2:])
        elif a in ("-t", "-N") and i + 1 < len(args):
            i += 1  # type / namespace: not ours
        elif a.startswith("-"):
            pass  # -s (sloppy), -f (fake), -n (no mtab), -v (verbose): nothing to do
        else:
            positional.append(a)
        i += 1
    if len(positional) != 2:
        print("usage: mount.fuse.trolleyfs CONFIG MOUNTPOINT [-o options]", file=sys.stderr)
        return 2
    cli = ["mount", positional[0], positional[1]]
    fuse_opts = []
    for opt in ",".join(options).split(","):
        key, _, value = opt.partition("=")
        if key in ("log_level", "log_file"):
            cli += [f"--{key.replace('_', '-')}", value]
        elif key == "no_check":
            cli.append("--no-check")
        elif opt:
            fuse_opts.append(opt)
    if fuse_opts:
        cli += ["-o", ",".join(fuse_opts)]
    return main(cli)


if __name__ == "__main__":
    sys.exit(main())
