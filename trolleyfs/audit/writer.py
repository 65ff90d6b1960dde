"""One sink's writer: a bounded queue of lines and a thread that drains it.

:meth:`Writer.put` never blocks: it appends to the queue, or, when the
queue is full, drops the line, counts it and logs an error (once, until
the queue has room again).  The thread writes the lines in batches; a line
leaves the queue only once written, so while the sink fails (a full disk,
syslog gone) nothing is lost until the queue is full; the thread tries
again every :data:`RETRY_S` and logs the failure once, and its end once.
A write that hangs (a FIFO nobody reads, a hung NFS server) blocks only
the thread; after :data:`STALLED_S` the writer counts as unhealthy."""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("trolleyfs.audit")

RETRY_S = 1.0
STALLED_S = 10.0
BATCH = 512


class Sink(Protocol):
    def describe(self) -> str: ...

    def open(self) -> None: ...

    def prepare(self) -> None: ...

    def write(self, line: bytes) -> None: ...

    def reopen(self) -> None: ...

    def close(self) -> None: ...


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


class Writer:
    """The queue and thread of one sink; ``capacity``: lines queued at most."""

    def __init__(
        self,
        sink: Sink,
        capacity: int,
        *,
        consequence: str = "reads go on",
        retry_s: float = RETRY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink, self.capacity = sink, capacity
        self._consequence = consequence
        self._retry_s, self._clock = retry_s, clock
        self._lines: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"audit: {sink.describe()}", daemon=True)
        self.opened = threading.Event()
        self.open_error: OSError | None = None
        self.written = 0
        self.dropped = 0
        self.errors = 0
        self.failing: str | None = None  # why writes fail, while they do
        self._busy_since: float | None = None
        self._full = False  # dropping lines since the queue filled

    def start(self) -> None:
        self._thread.start()

    @property
    def queued(self) -> int:
        return len(self._lines)

    def put(self, line: bytes) -> bool:
        """Queue ``line``; False (counted, reported) when the queue is full."""
        with self._cond:
            if len(self._lines) < self.capacity:
                self._lines.append(line)
                self._cond.notify()
                return True
            self.dropped += 1
            first, self._full = not self._full, True
        if first:
            log.error(
                "audit: the queue for %s is full (%d lines): records are being DROPPED (%s)",
                self.sink.describe(),
                self.capacity,
                self.failing or "writing is too slow or hangs",
            )
        return False

    def healthy(self) -> bool:
        busy = self._busy_since
        stalled = busy is not None and self._clock() - busy > STALLED_S
        return self.failing is None and not self._full and not stalled

    def _run(self) -> None:
        try:
            self.sink.open()
        except OSError as exc:
            self.open_error = exc
            self._failed(exc)
        finally:
            self.opened.set()
        while True:
            with self._cond:
                while not self._lines and not self._stopping:
                    self._cond.wait()
                if not self._lines:
                    break
                batch = list(itertools.islice(self._lines, BATCH))
                self._busy_since = self._clock()
            done, error = 0, None
            try:
                self.sink.prepare()
                for line in batch:
                    self.sink.write(line)
                    done += 1
            except OSError as exc:
                error = exc
            self._done(done)
            if error is None:
                if self.failing is not None:
                    log.warning("audit: writing to %s again (%d lines were waiting)", self.sink.describe(), self.queued)
                    self.failing = None
                continue
            self.errors += 1
            self._failed(error)
            with self._cond:
                if self._stopping:
                    break
                self._cond.wait(self._retry_s)
        with contextlib.suppress(OSError):
            self.sink.close()

    def _done(self, done: int) -> None:
        dropped = 0
        with self._cond:
            for _ in range(done):
                self._lines.popleft()
            self.written += done
            self._busy_since = None
            if self._full and len(self._lines) <= self.capacity // 2:
                self._full, dropped = False, self.dropped
        if dropped:
            log.warning(
                "audit: the queue for %s has room again (%d records dropped so far)", self.sink.describe(), dropped
            )

    def _failed(self, exc: OSError) -> None:
        if self.failing is None:
            self.failing = _why(exc)
            log.error(
                "audit: cannot write to %s (%s): %d lines wait, trying again every %g s; %s meanwhile",
                self.sink.describe(),
                self.failing,
                self.queued,
                self._retry_s,
                self._consequence,
            )

    def reopen(self) -> None:
        self.sink.reopen()
        with self._cond:
            self._cond.notify()

    def stop(self, timeout: float) -> int:
        """Write what is queued (for at most ``timeout`` seconds) and end the
        thread; the number of lines left unwritten (counted as dropped)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._cond:
            lost = len(self._lines)  # empty unless the sink failed or hangs
            self.dropped += lost
        if lost:
            log.error("audit: %d records could not be written to %s before the end", lost, self.sink.describe())
        return lost

    def stats(self) -> dict[str, object]:
        busy = self._busy_since
        return {
            "busy_s": None if busy is None else round(self._clock() - busy, 3),  # the batch being written, so far
            "sink": self.sink.describe(),
            "written": self.written,
            "queued": self.queued,
            "dropped": self.dropped,
            "errors": self.errors,
            "failing": self.failing,
            "healthy": self.healthy(),
        }
