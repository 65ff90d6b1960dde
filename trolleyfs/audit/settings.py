"""The ``[audit]`` table::

    [audit]
    file = "/var/log/trolleyfs/audit.jsonl"  # one JSON object per line
    # syslog = true                          # and/or: each line to the local syslog
    # syslog_socket = "/dev/log"
    # facility = "authpriv"                  # or "auth", "local0" .. "local7"
    # on_failure = "continue"                # or "block": reads fail (EIO) while the audit cannot be written
    # queue = 10000                          # lines waiting to be written, at most
    # max_mb = 100                           # rotate the file at this size ...
    # keep = 5                               # ... keeping this many old files

Read at config time: each problem is one
:class:`~trolleyfs.errors.ConfigError` naming file, key and problem.  The
file's directory must exist; the file itself is opened when the mount
starts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..tomltable import Table

FACILITIES = {"auth": 4, "authpriv": 10, **{f"local{i}": 16 + i for i in range(8)}}
ON_FAILURE = ("continue", "block")
DEFAULT_QUEUE = 10_000
KEYS = ("file", "syslog", "syslog_socket", "facility", "on_failure", "queue", "max_mb", "keep")


@dataclass(frozen=True)
class AuditConfig:
    """Where the audit trail goes and what happens when it cannot be written."""

    file: str | None = None
    syslog: bool = False
    syslog_socket: str = "/dev/log"
    facility: str = "authpriv"
    on_failure: str = "continue"
    queue: int = DEFAULT_QUEUE
    max_mb: float | None = None
    keep: int = 5

    @property
    def blocking(self) -> bool:
        return self.on_failure == "block"

    @property
    def max_bytes(self) -> int | None:
        return None if self.max_mb is None else int(self.max_mb * 1_000_000)

    def describe(self) -> str:
        """One line for ``trolleyfs check``."""
        where = []
        if self.file:
            rotation = f", rotated at {self.max_mb:g} MB keeping {self.keep}" if self.max_mb else ""
            where.append(f"{self.file}{rotation}")
        if self.syslog:
            where.append(f"syslog ({self.facility}, {self.syslog_socket})")
        reads = "reads fail while it cannot be written" if self.blocking else "reads go on if it cannot be written"
        return f"{' and '.join(where)}; {reads}"


def _file(t: Table) -> str | None:
    value = t.get("file", str)
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise t.error("file", f"must be an absolute path, not {value!r}")
    if path.is_dir():
        raise t.error("file", f"{path} is a directory: name a file in it, e.g. {path / 'audit.jsonl'}")
    if not path.parent.is_dir():
        raise t.error("file", f"the directory {path.parent} does not exist")
    return str(path)


def _syslog(t: Table, syslog: bool) -> tuple[str, str]:
    """The syslog socket and facility."""
    socket_path = t.get("syslog_socket", str, "/dev/log")
    facility = t.get("facility", str, "authpriv")
    for key in ("syslog_socket", "facility"):
        if key in t.data and not syslog:
            raise t.error(key, "needs syslog = true")
    if not socket_path.startswith("/"):
        raise t.error("syslog_socket", f"must be the absolute path of a unix socket, not {socket_path!r}")
    if facility not in FACILITIES:
        raise t.error("facility", f"must be one of {', '.join(FACILITIES)}, not {facility!r}")
    return socket_path, facility


def _rotation(t: Table, file: str | None) -> tuple[float | None, int]:
    """Rotation by size: ``max_mb`` (None: by logrotate) and ``keep``."""
    max_mb = t.get("max_mb", float)
    if max_mb is not None:
        if file is None:
            raise t.error("max_mb", "needs file")
        if not math.isfinite(max_mb) or not 1 <= max_mb <= 1_000_000:
            raise t.error("max_mb", f"must be between 1 and 1000000 MB, not {max_mb:g}")
    keep = t.get("keep", int, 5)
    if "keep" in t.data and max_mb is None:
        raise t.error("keep", "needs max_mb (without it, rotate with logrotate: see the README)")
    if not 1 <= keep <= 1000:
        raise t.error("keep", f"must be between 1 and 1000, not {keep}")
    return max_mb, keep


def parse_audit(t: Table) -> AuditConfig:
    """The ``[audit]`` table."""
    t.check_keys(KEYS)
    file = _file(t)
    syslog = t.get("syslog", bool, False)
    if file is None and not syslog:
        raise t.error(None, 'needs file = "/path/audit.jsonl" or syslog = true (or both)')
    socket_path, facility = _syslog(t, syslog)
    on_failure = t.get("on_failure", str, "continue")
    if on_failure not in ON_FAILURE:
        raise t.error("on_failure", f'must be "continue" or "block", not {on_failure!r}')
    queue = t.get("queue", int, DEFAULT_QUEUE)
    if not 10 <= queue <= 1_000_000:
        raise t.error("queue", f"must be between 10 and 1000000 lines, not {queue}")
    max_mb, keep = _rotation(t, file)
    return AuditConfig(
        file=file,
        syslog=syslog,
        syslog_socket=socket_path,
        facility=facility,
        on_failure=on_failure,
        queue=queue,
        max_mb=max_mb,
        keep=keep,
    )
