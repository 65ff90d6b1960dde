"""The background-hours window of one server, on real clocks: is it open
now, when does it open next, and waiting for it.

Two clocks are injected so that tests run on trio's MockClock: ``now``, the
wall clock (an aware datetime; by default the system's, in UTC) turned into
local time with ``tz`` (by default the system's time zone, daylight saving
included), and trio's clock for the waiting itself.  A wait wakes at least
every ``recheck_s`` seconds to look at the wall clock again, so a clock set
forward or back, a suspend, or a change of daylight saving time delays the
opening by at most that much.

Only work of priority readahead (1) or prefetch (2) is held back; a user's
read (priority 0) always runs, and a waiting fetch that a user's read joins
(its :class:`~.priority.Urgency` raised to 0) stops waiting at once."""

from __future__ import annotations

import datetime as _dt
import errno
from collections.abc import Callable

import trio

from ..errors import TrolleyError
from .hours import Hours
from .priority import Priority, Urgency, as_urgency

RECHECK_S = 60.0
MIN_SLEEP_S = 0.5


def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


class OutsideHours(TrolleyError):
    """Background work asked not to wait, outside the server's background hours."""

    errno = errno.EAGAIN

    def __init__(self, server: str, hours: Hours, opens: _dt.datetime) -> None:
        self.server, self.hours, self.opens = server, hours, opens
        super().__init__(
            f"{server}: outside the background hours ({hours.text}); they open at {opens.isoformat(timespec='minutes')}"
        )


class Window:
    """The background hours ``hours`` of server ``server``."""

    def __init__(
        self,
        server: str,
        hours: Hours,
        *,
        tz: _dt.tzinfo | None = None,
        now: Callable[[], _dt.datetime] = utc_now,
        recheck_s: float = RECHECK_S,
    ) -> None:
        self.server, self.hours = server, hours
        self._tz, self._now, self._recheck_s = tz, now, recheck_s

    def local(self) -> _dt.datetime:
        """Now, as an aware local time."""
        now = self._now()
        return now.astimezone(self._tz) if self._tz is not None else now.astimezone()

    def _localize(self, wall: _dt.datetime) -> _dt.datetime:
        """A naive local wall-clock time as an aware one (daylight saving as it is on that day)."""
        return wall.replace(tzinfo=self._tz) if self._tz is not None else wall.astimezone()

    def is_open(self) -> bool:
        return self.hours.contains(self.local())

    def next_open(self) -> _dt.datetime | None:
        """When the window opens next (aware, local); None: it is open now."""
        local = self.local()
        wall = local.replace(tzinfo=None)
        opens = self.hours.next_open(wall)
        return None if opens == wall else self._localize(opens)

    def closes(self) -> _dt.datetime | None:
        """When the open window closes (aware, local); None: closed now, or never."""
        ends = self.hours.next_close(self.local().replace(tzinfo=None))
        return None if ends is None else self._localize(ends)

    def admit(self, urgency: Urgency | Priority | None = None) -> None:
        """Return if work of ``urgency`` (None: the current one) may fetch now;
        raise :class:`OutsideHours` if it may not (for callers that do not wait)."""
        if as_urgency(urgency).value == Priority.USER:
            return
        opens = self.next_open()
        if opens is not None:
            raise OutsideHours(self.server, self.hours, opens)

    async def wait_open(self, urgency: Urgency | Priority | None = None) -> float:
        """Wait until work of ``urgency`` may fetch: at once for a user's read,
        else until the window is open (or the work is hurried to priority 0).
        Returns the seconds waited, on trio's clock."""
        who = as_urgency(urgency)
        started = trio.current_time()
        while who.value != Priority.USER:
            opens = self.next_open()
            if opens is None:
                break
            hurried = trio.Event()
            delay = opens.timestamp() - self._now().timestamp()  # 0 or less: a clock change; look again soon
            with who.listen(hurried.set), trio.move_on_after(min(max(delay, MIN_SLEEP_S), self._recheck_s)):
                await hurried.wait()
        return trio.current_time() - started

    def describe(self) -> dict[str, object]:
        opens = self.next_open()
        closes = None if opens is not None else self.closes()
        return {
            "background_hours": self.hours.text,
            "open": opens is None,
            "opens": None if opens is None else opens.isoformat(timespec="seconds"),
            "closes": None if closes is None else closes.isoformat(timespec="seconds"),
        }
