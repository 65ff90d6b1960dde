"""Running ``trolleyfs webdav``: read the config and its ``[webdav]`` table,
check that the address may be served, build the core
(:mod:`trolleyfs.wiring`) on trio, start the HTTP server (:mod:`trolleyfs.webdav`)
in its threads, serve until SIGTERM or Ctrl-C (exit 0), then stop taking
requests, let those in progress finish, and close the core.  SIGHUP reopens
the audit file when there is an audit trail (logrotate's ``postrotate``),
and stops the server otherwise."""

from __future__ import annotations

import argparse
import logging
import ssl
import sys
import threading
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import replace

import trio

from .audit.access import Auditor
from .config import Config, load
from .errors import UserError
from .logs import setup_logging
from .probe import preflight
from .sdnotify import notify
from .serving import fetched, until_stopped
from .webdav.app import SHUTDOWN_WAIT_S, build_app, build_server
from .webdav.bridge import Bridge
from .webdav.gate import Counts
from .webdav.resources import TreeProvider
from .webdav.settings import WebdavConfig, check_exposure, parse_listen
from .wiring import open_core

log = logging.getLogger("trolleyfs.webdav")


def check_tls(wd: WebdavConfig) -> None:
    """The certificate and key load (one line saying why not)."""
    if not (wd.tls_cert and wd.tls_key):
        return
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(wd.tls_cert, wd.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise UserError(f"webdav: cannot use tls_cert {wd.tls_cert} with tls_key {wd.tls_key}: {exc}") from None


async def serve_webdav(
    config: Config,
    wd: WebdavConfig,
    on_ready: Callable[[str], None] = lambda url: None,
    debug_toggle: Callable[[], None] | None = None,
    probe_first: bool = True,
    insecure: bool = False,
    warn: Callable[[str], None] = log.warning,
) -> None:
    """Serve ``config``'s tree over WebDAV as ``wd`` says until signalled.
    ``insecure``: the command line's ``--allow-insecure-remote``."""
    for w in check_exposure(wd, insecure):
        warn(w)
    check_tls(wd)
    if probe_first:
        await preflight(config, warn)
    async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
        core = await open_core(config, stack, nursery)
        bridge = Bridge(trio.lowlevel.current_trio_token(), core.stats, core.op_deadline())
        counts = Counts()
        audit = Auditor(core.audit) if core.audit is not None else None
        provider = TreeProvider(core.tree.root, bridge, learn_sizes=wd.sizes == "fetch", audit=audit)
        server = build_server(build_app(provider, wd.users, counts), wd)
        try:
            await trio.to_thread.run_sync(server.prepare)
        except OSError as exc:
            raise UserError(f"webdav: cannot listen on {wd.listen}: {exc.strerror or exc}") from None
        accept = threading.Thread(target=server.serve, name="webdav-accept", daemon=True)
        accept.start()
        try:
            log.info(
                "serving %s over WebDAV at %s (%s, %d folders, servers: %s)",
                config.path,
                wd.url(),
                f"{len(wd.users)} users" if wd.users else "anonymous",
                len(config.folders),
                ", ".join(config.servers),
            )
            on_ready(wd.url())
            await until_stopped(debug_toggle, core.audit, "stopping")
        finally:
            with trio.CancelScope(shield=True):
                # stop accepting; requests in progress still reach the core, which runs until they end
                await trio.to_thread.run_sync(server.stop)
                await trio.to_thread.run_sync(accept.join, SHUTDOWN_WAIT_S)
                await core.store.drain()
            nursery.cancel_scope.cancel()
            log.info("stopped serving %s; %s; %s", wd.url(), _summary(counts), fetched(core.stats))


def route_library_logs(level: str) -> None:
    """WsgiDAV's log lines (one per request, at INFO) go where ours go, shown
    at ``debug``; its warnings always."""
    ours = logging.getLogger("trolleyfs")
    lib = logging.getLogger("wsgidav")
    lib.handlers = list(ours.handlers)
    lib.propagate = False
    lib.setLevel(logging.DEBUG if level == "debug" else logging.WARNING)


def _summary(counts: Counts) -> str:
    by_method = counts.as_dict()
    return f"{sum(by_method.values())} WebDAV requests" + (
        " (" + ", ".join(f"{m} {n}" for m, n in sorted(by_method.items())) + ")" if by_method else ""
    )


def run_webdav(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    wd = cfg.webdav or WebdavConfig()
    for w in cfg.warnings:
        print(f"trolleyfs: warning: {w}", file=sys.stderr)
    if args.listen:
        try:
            wd = replace(wd, listen=parse_listen(args.listen))
        except ValueError as exc:
            raise UserError(f"--listen: {exc}") from None
    toggle = setup_logging(args.log_level, args.log_file)
    route_library_logs(args.log_level)

    def ready(url: str) -> None:
        notify("READY=1", f"STATUS=serving {cfg.path} at {url}")

    try:
        trio.run(serve_webdav, cfg, wd, ready, toggle, not args.no_check, args.allow_insecure_remote)
    finally:
        notify("STOPPING=1")
    return 0
