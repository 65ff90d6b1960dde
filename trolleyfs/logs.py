"""Logging set-up for the command line and the demo: where log lines go, their
format, and a toggle between the chosen level and debug (bound to SIGUSR1 by
the mount).

Where a mount's log goes, first match:

* ``--log-file F``: that file;
* in the foreground: stderr;
* run by systemd (``$JOURNAL_STREAM`` or ``$INVOCATION_ID`` set): stderr,
  which the journal takes (without time stamps: the journal adds its own);
* syslog, where its socket answers (``/dev/log``, or ``$TROLLEYFS_SYSLOG_SOCKET``);
* otherwise a file in the user's state directory (``$XDG_STATE_HOME/trolleyfs``,
  else ``/var/log/trolleyfs`` for root, ``~/.local/state/trolleyfs`` for others),
  said once on stderr before the mount goes to the background.  Never
  nowhere: a log line that names a problem must be found."""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

LEVELS = ("debug", "info", "warning", "error")
SYSLOG_SOCKET = "/dev/log"
LOG_NAME = "trolleyfs.log"
_FILE_FORMAT = "%(asctime)s trolleyfs[%(process)d] %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class Destination:
    """Where log lines go: ``stderr``, ``syslog`` (at ``path``) or ``file`` (at
    ``path``); ``said``: a line for the user before going to the background."""

    kind: str
    path: str = ""
    said: str = ""


def under_systemd() -> bool:
    """Whether systemd runs us (its journal takes stderr)."""
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


def state_dir() -> Path:
    """Where the log file goes when there is no syslog: ``$XDG_STATE_HOME/trolleyfs``
    if that is set, else ``/var/log/trolleyfs`` for root, ``~/.local/state/trolleyfs``
    for others."""
    if os.environ.get("XDG_STATE_HOME"):
        return Path(os.environ["XDG_STATE_HOME"]) / "trolleyfs"
    if os.geteuid() == 0:
        return Path("/var/log/trolleyfs")
    return Path(os.path.expanduser("~")) / ".local" / "state" / "trolleyfs"


def _syslog_answers(path: str) -> bool:
    """Whether a syslog daemon listens at ``path`` (a datagram or stream socket;
    SysLogHandler itself would drop every line silently when none does)."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_UNIX, kind) as s:
            try:
                s.connect(path)
            except OSError:
                continue
            return True
    return False


def daemon_destination(log_file: str | None) -> Destination:
    """Where a mount that goes to the background logs (see the module's
    docstring); a log file that cannot be written is a UserError now."""
    if log_file:
        return Destination("file", _writable(Path(log_file)))
    if under_systemd():
        return Destination("stderr")
    socket = os.environ.get("TROLLEYFS_SYSLOG_SOCKET") or SYSLOG_SOCKET
    if _syslog_answers(socket):
        return Destination("syslog", socket)
    path = _writable(state_dir() / LOG_NAME)
    return Destination("file", path, f"no syslog here ({socket}): logging to {path}")


def _writable(path: Path) -> str:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise UserError(f"cannot log to {path}: {exc.strerror or exc} (choose a file with --log-file)") from None
    return str(path)


def setup_logging(
    level: str, log_file: str | None = None, daemon: bool = False, destination: Destination | None = None
) -> Callable[[], None]:
    """Configure the ``trolleyfs`` logger: to ``destination``, or (without one)
    to ``log_file``, or to where a mount in the background (``daemon``) or in
    the foreground logs; returns the debug toggle."""
    if destination is None:
        destination = daemon_destination(log_file) if daemon or log_file else Destination("stderr")
    root = logging.getLogger("trolleyfs")
    root.handlers.clear()
    root.propagate = False
    handler: logging.Handler
    if destination.kind == "file":
        handler = logging.handlers.WatchedFileHandler(destination.path)  # logrotate may move it
        fmt = _FILE_FORMAT
    elif destination.kind == "syslog":
        handler = logging.handlers.SysLogHandler(destination.path)
        fmt = "trolleyfs[%(process)d]: %(levelname)s %(name)s: %(message)s"
    else:
        handler = logging.StreamHandler(sys.stderr)
        # the journal adds its own time stamps
        fmt = (
            "%(levelname)s %(name)s: %(message)s"
            if under_systemd()
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
