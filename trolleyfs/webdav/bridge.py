"""From the HTTP server's threads into the trio core, and back.

WsgiDAV runs each request in one of cheroot's worker threads; the tree and
the read path live on the trio loop.  :meth:`Bridge.run` hands one async call
to the loop (``trio.from_thread.run`` with the loop's token) and blocks only
its own worker thread until it is answered: the loop never blocks, and a slow
PACS read holds one worker while the others go on.  Each call runs under the
same deadline as a FUSE operation (an idle deadline that answers arriving move
on, within an overall bound: :mod:`trolleyfs.idle`), with the requester set
for the audit (see :mod:`.requester`); our errors become HTTP errors here, in
one place, as ``trolleyfs.fuse.ops._op`` turns them into errno values for FUSE.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio
from wsgidav.dav_error import (
    HTTP_BAD_GATEWAY,
    HTTP_FORBIDDEN,
    HTTP_GATEWAY_TIMEOUT,
    HTTP_INTERNAL_ERROR,
    HTTP_NOT_FOUND,
    HTTP_SERVICE_UNAVAILABLE,
    DAVError,
)

from ..errors import TrolleyError
from ..idle import IdleDeadline, idle_deadline, overall_bound, timed_out
from ..stats import Stats
from .requester import REQUESTER, Requester

log = logging.getLogger("trolleyfs.webdav")
T = TypeVar("T")
SAME_ERROR_QUIET_S = 30.0  # the same error again within this time is not logged again


def http_status(exc: TrolleyError) -> int:
    """The HTTP status for one of our errors: what is missing is 404, what the
    PACS refuses us 403, anything else the PACS did is a bad gateway."""
    if exc.errno == errno.ENOENT:
        return int(HTTP_NOT_FOUND)
    if exc.errno == errno.EACCES:
        return int(HTTP_FORBIDDEN)
    return int(HTTP_BAD_GATEWAY)


class Bridge:
    def __init__(self, token: trio.lowlevel.TrioToken, stats: Stats, deadline: float) -> None:
        """``token``: the trio loop's; ``deadline``: seconds one call may go
        without progress (as a FUSE operation's)."""
        self._token = token
        self._stats = stats
        self._deadline = deadline
        self._last_error: tuple[str, float] = ("", 0.0)
        self._lock = threading.Lock()

    def run(self, requester: Requester | None, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()`` on the trio loop on behalf of ``requester`` and return
        its result, from a worker thread.  Raises DAVError on failure."""
        deadline = self._deadline
        bound: IdleDeadline | None = None

        async def call() -> T:
            nonlocal bound
            REQUESTER.set(requester)  # this task's own context: nothing else sees it
            with idle_deadline(deadline, overall_bound(deadline)) as bound:
                return await fn()

        try:
            return trio.from_thread.run(call, trio_token=self._token)
        except DAVError:
            raise
        except TrolleyError as exc:
            self._log_error(what, str(exc))
            self._stats.errors[errno.errorcode.get(exc.errno, str(exc.errno))] += 1
            raise DAVError(http_status(exc), _reason(exc)) from None
        except trio.TooSlowError:
            self._log_error(what, timed_out(bound, deadline))
            self._stats.errors["ETIMEDOUT"] += 1
            raise DAVError(HTTP_GATEWAY_TIMEOUT, "the archive did not answer in time") from None
        except trio.RunFinishedError:
            raise DAVError(HTTP_SERVICE_UNAVAILABLE, "the server is stopping") from None
        except Exception:
            log.exception("%s: unexpected error", what)
            self._stats.errors["EIO"] += 1
            raise DAVError(HTTP_INTERNAL_ERROR) from None

    def _log_error(self, what: str, msg: str) -> None:
        # the same cause for a burst of files (a server down) is logged once
        now = time.monotonic()
        with self._lock:
            last, at = self._last_error
            self._last_error = (msg, now)
        if msg != last or now - at > SAME_ERROR_QUIET_S:
            log.warning("%s failed: %s", what, msg)


def _reason(exc: TrolleyError) -> str:
    """What the client is told (the log has the details)."""
    if exc.errno == errno.ENOENT:
        return "not found"
    if exc.errno == errno.EACCES:
        return "the archive refused access"
    return "the archive failed to answer"
