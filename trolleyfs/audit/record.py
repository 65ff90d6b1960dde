"""One audit record: who (uid, user, pid, process) did what (``read`` a
file, ``list`` a directory) to which path and which DICOM objects, served
from where, how many bytes, with what result; one JSON object per line.

The reading process is known while its request is open: :func:`identify`
must be called when the file is opened (the process may be gone when it is
closed).  It reads ``/proc/PID/comm`` and looks the uid up in the user
database (NSS, possibly LDAP): blocking calls, for a worker thread.  User
names are kept per uid; process names are never kept (pids are reused)."""

from __future__ import annotations

import builtins
import datetime as _dt
import functools
import json
import os
import pwd
import socket
from dataclasses import asdict, dataclass, fields

ACTIONS = ("read", "list")
SOURCES = ("memory", "disk", "shared", "pacs")  # nearest first


@dataclass(frozen=True)
class Who:
    """The user and process behind a request; ``uid``/``pid`` None when not
    known (a WebDAV request carries a user name, no uid or pid)."""

    uid: int | None
    user: str
    pid: int | None
    process: str


@functools.lru_cache(maxsize=1024)
def user_name(uid: int) -> str:
    """The login name of ``uid``; the number itself when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def process_name(pid: int) -> str:
    """The command name of process ``pid`` (``/proc/PID/comm``, else the first
    word of its command line); ``""`` when it is gone."""
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            name = f.read().decode("utf-8", "replace").strip()
        if name:
            return name
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            first = f.read().split(b"\0", 1)[0]
        return os.path.basename(first.decode("utf-8", "replace"))
    except OSError:
        return ""


def process_of(tid: int) -> int:
    """The process (thread group) of thread ``tid``: the kernel names the
    calling *thread* in a FUSE request; ``tid`` itself when it is gone."""
    try:
        with open(f"/proc/{tid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return tid


def identify(uid: int | None, pid: int | None, user: str | None = None) -> Who:
    """Who is behind a request: from the FUSE request's uid and pid (a thread:
    its process is recorded), or a name given by the front end (the WebDAV user)."""
    name = user if user is not None else (user_name(uid) if uid is not None else "")
    if pid is not None and pid > 0:
        pid = process_of(pid)
        return Who(uid, name, pid, process_name(pid))
    return Who(uid, name, pid, "")


def local_time(when: _dt.datetime | None = None) -> str:
    """ISO 8601, local time with its offset, milliseconds."""
    stamp = when if when is not None else _dt.datetime.now()
    return stamp.astimezone().isoformat(timespec="milliseconds")


def furthest(a: str | None, b: str | None) -> str | None:
    """Of two sources, the one further from the reader (a read served partly
    from memory and partly from the PACS is recorded as from the PACS)."""
    if a is None or b is None:
        return a or b
    return a if SOURCES.index(a) >= SOURCES.index(b) else b


@functools.lru_cache(maxsize=1)
def host_name() -> str:
    return socket.gethostname()


@dataclass(frozen=True)
class AuditRecord:
    """One line of the audit trail (field names are the JSON keys)."""

    time: str  # ISO 8601 with offset: when the access began (the open, the listing)
    uid: int | None
    user: str
    pid: int | None
    process: str
    action: str  # "read" | "list"
    path: str  # inside the mount
    study: str | None  # StudyInstanceUID, where the path has one
    series: str | None  # SeriesInstanceUID
    instance: str | None  # SOPInstanceUID
    source: str | None  # "memory" | "disk" | "shared" | "pacs" (the furthest one used)
    bytes: int  # bytes read (a listing: 0)
    server: str | None = None  # the configured server the objects belong to
    patient: str | None = None  # PatientID, where known
    accession: str | None = None  # AccessionNumber, where known
    sop_class: str | None = None  # SOPClassUID of the instance, where known
    result: str = "ok"  # "ok", or the errno name the reader got (e.g. "EIO")
    host: str = ""  # the node

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, not {self.action!r}")
        if self.source is not None and self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {self.source!r}")
        if self.bytes < 0:
            raise ValueError("bytes cannot be negative")

    @classmethod
    def make(  # noqa: PLR0913 - keyword-only: the fields of one record, each named at the call
        cls,
        who: Who,
        action: str,
        path: str,
        *,
        study: str | None = None,
        series: str | None = None,
        instance: str | None = None,
        source: str | None = None,
        nbytes: int = 0,
        server: str | None = None,
        patient: str | None = None,
        accession: str | None = None,
        sop_class: str | None = None,
        result: str = "ok",
        when: _dt.datetime | None = None,
    ) -> AuditRecord:
        return cls(
            time=local_time(when),
            uid=who.uid,
            user=who.user,
            pid=who.pid,
            process=who.process,
            action=action,
            path=path,
            study=study,
            series=series,
            instance=instance,
            source=source,
            bytes=nbytes,
            server=server,
            patient=patient,
            accession=accession,
            sop_class=sop_class,
            result=result,
            host=host_name(),
        )

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def to_json(self) -> str:
        """One line of JSON, ASCII only (so a torn or re-encoded line cannot
        hide a byte sequence), without a newline."""
        return json.dumps(self.as_dict(), ensure_ascii=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str | builtins.bytes) -> AuditRecord:
        data = json.loads(line)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
