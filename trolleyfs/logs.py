"""Logging set-up for the command line and the demo: where log lines go
(stderr, a file, or syslog when daemonized), their format, and a toggle
between the chosen level and debug (bound to SIGUSR1 by the mount)."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from collections.abc import Callable

LEVELS = ("debug", "info", "warning", "error")


def setup_logging(level: str, log_file: str | None = None, daemon: bool = False) -> Callable[[], None]:
    """Configure the ``trolleyfs`` logger; returns the debug toggle."""
    root = logging.getLogger("trolleyfs")
    root.handlers.clear()
    root.propagate = False
    if log_file:
        handler: logging.Handler = logging.FileHandler(log_file)
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    elif daemon:
        if os.path.exists("/dev/log"):
            handler = logging.handlers.SysLogHandler("/dev/log")
            fmt = "trolleyfs[%(process)d]: %(levelname)s %(name)s: %(message)s"
        else:
            handler = logging.NullHandler()
            fmt = ""
    else:
        handler = logging.StreamHandler(sys.stderr)
        # the journal adds its own time stamps
        fmt = (
            "%(levelname)s %(name)s: %(message)s"
            if os.environ.get("JOURNAL_STREAM")
            else "%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    handler.setFormatter(logging.Formatter(fmt))
    root.addHandler(handler)
    base = getattr(logging, level.upper())
    root.setLevel(base)
    # pynetdicom logs our own deliberate association aborts (deadlines) as errors
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)

    def toggle() -> None:
        new = logging.DEBUG if root.level != logging.DEBUG else base
        root.setLevel(new)
        root.warning("log level is now %s", logging.getLevelName(new))

    return toggle
