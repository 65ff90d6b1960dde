"""``trolleyfs webdav CONFIG``: read the config and its ``[webdav]`` table,
apply the command line's ``--listen``, set up logging, and serve in the
foreground until SIGTERM or Ctrl-C (exit 0)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import trio

from ..errors import UserError
from ..logs import setup_logging
from ..sdnotify import notify
from .core_tmp import load
from .serve import route_library_logs, serve_webdav
from .settings import parse_listen


def run_webdav(args: argparse.Namespace) -> int:
    cfg, wd = load(args.config)
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
