"""The audit trail of a mount: records in, lines out to every configured
sink (a file, syslog), without ever blocking the caller.

Use::

    trail = AuditTrail(config)
    await trio.to_thread.run_sync(trail.start)   # opens the sinks; a file that cannot be opened stops the mount
    nursery.start_soon(reopen_on_sighup, trail)   # logrotate's "create" mode (postrotate: kill -HUP)
    trail.admit()                                 # at open()/opendir(): raises AuditUnavailable in "block" mode
    trail.record(AuditRecord.make(...))           # at release()/after a listing: never blocks
    trail.close()                                 # at unmount: writes what is queued (a few seconds at most)

``on_failure = "continue"`` (the default): when lines cannot be written
they wait in the queue; when it is full they are dropped, counted and
reported, and reads go on.  ``on_failure = "block"``: while any sink fails,
hangs, or its queue is full, :meth:`AuditTrail.admit` and
:meth:`AuditTrail.record` raise :class:`AuditUnavailable` (EIO): opening a
file or a folder fails at once instead of waiting for an audit that may
never come back, and nothing is read that is not recorded.  Either way one
error is logged per outage.  Safe to call from any thread (the WebDAV front
end's too)."""

from __future__ import annotations

import errno
import logging
import signal
import time
from collections.abc import Callable, Sequence

import trio

from ..errors import TrolleyError
from .record import AuditRecord
from .settings import FACILITIES, AuditConfig
from .sinks import FileSink, SyslogSink
from .writer import Sink, Writer

log = logging.getLogger("trolleyfs.audit")

START_WAIT_S = 10.0  # how long start() waits for the sinks to open
CLOSE_WAIT_S = 5.0


class AuditUnavailable(TrolleyError):
    """The audit trail cannot be written and ``on_failure = "block"``."""

    errno = errno.EIO


def build_sinks(config: AuditConfig) -> list[Sink]:
    sinks: list[Sink] = []
    if config.file:
        sinks.append(FileSink(config.file, config.max_bytes, config.keep))
    if config.syslog:
        sinks.append(SyslogSink(config.syslog_socket, FACILITIES[config.facility]))
    return sinks


class AuditTrail:
    def __init__(
        self,
        config: AuditConfig,
        sinks: Sequence[Sink] | None = None,
        *,
        retry_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        consequence = "reads FAIL (on_failure = block)" if config.blocking else "reads go on (on_failure = continue)"
        kw = {} if retry_s is None else {"retry_s": retry_s}
        self._writers = [
            Writer(sink, config.queue, consequence=consequence, clock=clock, **kw)
            for sink in (build_sinks(config) if sinks is None else sinks)
        ]
        self._refused = 0
        self.records = 0
        self.reopen_requests = 0

    def start(self, timeout: float = START_WAIT_S) -> None:
        """Start the writers and wait (blocking: call it in a worker thread)
        for the sinks to open.  A sink that cannot be opened raises
        :class:`AuditUnavailable` with one line; one that takes longer than
        ``timeout`` (a FIFO without a reader) is logged and waited for in the
        background."""
        for w in self._writers:
            w.start()
        for w in self._writers:
            if not w.opened.wait(timeout):
                log.warning("audit: opening %s takes long: records wait in its queue meanwhile", w.sink.describe())
            elif w.open_error is not None:
                why = w.open_error.strerror or str(w.open_error)
                self.close(0.5)
                raise AuditUnavailable(f"audit: cannot open {w.sink.describe()}: {why}")

    @property
    def healthy(self) -> bool:
        return all(w.healthy() for w in self._writers)

    def admit(self) -> None:
        """Before a read or a listing: in "block" mode, raise
        :class:`AuditUnavailable` while the audit cannot be written."""
        if self.config.blocking and not self.healthy:
            self._refused += 1
            raise AuditUnavailable("the audit trail cannot be written: access refused (on_failure = block)")

    def record(self, record: AuditRecord) -> None:
        """Queue ``record`` for every sink; never blocks.  In "block" mode,
        raise :class:`AuditUnavailable` if a sink's queue was full."""
        line = record.to_json().encode("ascii")
        self.records += 1
        queued = [w.put(line) for w in self._writers]
        if self.config.blocking and not all(queued):
            self._refused += 1
            raise AuditUnavailable("the audit trail is full: access refused (on_failure = block)")

    def reopen(self) -> None:
        """Reopen the file and reconnect to syslog before the next line (on SIGHUP)."""
        self.reopen_requests += 1
        for w in self._writers:
            w.reopen()

    def close(self, timeout: float = CLOSE_WAIT_S) -> int:
        """Write what is queued, for at most ``timeout`` seconds in all (blocking);
        the number of records that could not be written."""
        end = time.monotonic() + timeout
        return sum(w.stop(max(0.0, end - time.monotonic())) for w in self._writers)

    def stats(self) -> dict[str, object]:
        sinks = [w.stats() for w in self._writers]
        files = [w.sink for w in self._writers if isinstance(w.sink, FileSink)]
        return {
            "on_failure": self.config.on_failure,
            "healthy": self.healthy,
            "records": self.records,
            "written": min((w.written for w in self._writers), default=0),  # lines every sink has
            "dropped": sum(w.dropped for w in self._writers),
            "errors": sum(w.errors for w in self._writers),
            "refused": self._refused,
            "reopen_requests": self.reopen_requests,  # SIGHUPs
            "reopens": sum(f.reopens for f in files),
            "truncations": sum(f.truncations for f in files),
            "rotations": sum(f.rotations for f in files),
            "sinks": sinks,
        }


async def reopen_on_sighup(trail: AuditTrail, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Reopen the audit file on every SIGHUP (run in the mount's nursery, in the main thread)."""
    with trio.open_signal_receiver(signal.SIGHUP) as signals:
        task_status.started()
        async for _ in signals:
            log.info("audit: SIGHUP: reopening")
            trail.reopen()
