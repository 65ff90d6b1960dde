"""Background hours: the local times of day in which readahead and
``trolleyfs prefetch`` may fetch from a server, e.g. ``"19:00-07:00"`` or
``"12:00-13:00,19:00-07:00"``.

A range ``A-B`` holds from A (included) to B (excluded); when B is earlier
than A it runs across midnight; ``24:00`` may end a range; ``00:00-24:00`` is
the whole day.  Pure functions of a wall-clock time: :mod:`.window` adds the
clocks and the waiting."""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass

DAY_S = 24 * 3600
_RANGE = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


def _seconds(hours: str, minutes: str, text: str, may_be_24: bool) -> int:
    h, m = int(hours), int(minutes)
    if h == 24 and m == 0 and may_be_24:
        return DAY_S
    if not (0 <= h <= 23 and 0 <= m <= 59):
        raise ValueError(f"{text!r}: {hours}:{minutes} is not a time of day (00:00 to 23:59)")
    return h * 3600 + m * 60


@dataclass(frozen=True)
class Hours:
    """Ranges of the day in seconds since midnight, as ``(start, end)``
    pairs; ``end < start``: across midnight; ``text``: as configured."""

    ranges: tuple[tuple[int, int], ...]
    text: str

    @classmethod
    def parse(cls, text: str) -> Hours:
        """Hours from ``"HH:MM-HH:MM[,HH:MM-HH:MM...]"``; ValueError naming the bad part."""
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not p for p in parts):
            raise ValueError(f'{text!r} is not a list of ranges like "19:00-07:00" or "12:00-13:00,19:00-07:00"')
        ranges = []
        for part in parts:
            m = _RANGE.match(part)
            if not m:
                raise ValueError(f'{part!r} is not a range of times like "19:00-07:00"')
            start = _seconds(m.group(1), m.group(2), part, may_be_24=False)
            end = _seconds(m.group(3), m.group(4), part, may_be_24=True)
            if start == end:
                raise ValueError(f"{part!r} is empty: start and end are the same (use 00:00-24:00 for the whole day)")
            ranges.append((start, end))
        return cls(tuple(ranges), ", ".join(parts))

    def contains(self, when: _dt.time | _dt.datetime) -> bool:
        """Whether the wall-clock time ``when`` lies in the background hours."""
        s = when.hour * 3600 + when.minute * 60 + when.second + when.microsecond / 1e6
        for start, end in self.ranges:
            if start < end:
                if start <= s < end:
                    return True
            elif s >= start or s < end:  # across midnight
                return True
        return False

    def next_open(self, when: _dt.datetime) -> _dt.datetime:
        """The first wall-clock time at or after ``when`` (naive) that lies in the hours."""
        if self.contains(when):
            return when
        midnight = when.replace(hour=0, minute=0, second=0, microsecond=0)
        s = (when - midnight).total_seconds()
        starts = sorted(start for start, _ in self.ranges)
        later = [start for start in starts if start > s]
        if later:
            return midnight + _dt.timedelta(seconds=later[0])
        return midnight + _dt.timedelta(days=1, seconds=starts[0])

    def next_close(self, when: _dt.datetime) -> _dt.datetime | None:
        """When the hours that hold ``when`` (naive) end: the first wall-clock
        time after it outside them; None: outside now, or they never end."""
        if not self.contains(when):
            return None
        step = when.replace(second=0, microsecond=0)
        for _ in range(2 * 24 * 60 + 1):  # minute by minute: ranges start and end on whole minutes
            step += _dt.timedelta(minutes=1)
            if not self.contains(step):
                return step
        return None
