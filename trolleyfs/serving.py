"""What both front ends' servers share while they serve: waiting for the
signal that stops them (SIGUSR1 toggles debug logging; SIGHUP reopens the
audit trail where there is one, else stops), and the one-line summary of
what the archive was asked for, logged when they stop."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

import trio

from .audit.trail import AuditTrail
from .stats import Stats

log = logging.getLogger("trolleyfs")


async def until_stopped(debug_toggle: Callable[[], None] | None, audit: AuditTrail | None, doing: str) -> None:
    """Return at SIGTERM, SIGINT or (without an audit trail) SIGHUP, logging
    ``<signal>: <doing>``."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1) as sigs:
        async for sig in sigs:
            if sig == signal.SIGUSR1:
                if debug_toggle:
                    debug_toggle()
                continue
            if sig == signal.SIGHUP and audit is not None:
                log.info("SIGHUP: reopening the audit trail")
                audit.reopen()
                continue
            log.info("%s: %s", signal.Signals(sig).name, doing)
            return


def fetched(stats: Stats) -> str:
    """What the archive was asked for, in one line."""
    return (
        f"{sum(stats.requests.values())} archive requests, {sum(stats.bytes_fetched.values()) / 1e6:.1f} MB fetched, "
        f"{sum(stats.errors.values())} errors"
    )
