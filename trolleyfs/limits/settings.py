"""A server's ``limits`` table::

    [servers.pacs]
    limits = { mb_per_s = 50, requests_per_s = 20, background_hours = "19:00-07:00" }

Keys: ``mb_per_s`` (megabytes, 10^6 bytes, per second received from the
server), ``requests_per_s`` (HTTP requests and DICOM associations started),
``burst_s`` (how many seconds' worth may go at once after a quiet spell,
default 1), ``background_hours`` (local times in which readahead and
``trolleyfs prefetch`` may fetch).  Every key is optional; every value is
checked here, at config time, and each problem is one
:class:`~trolleyfs.errors.ConfigError` naming file, key and problem."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..tomltable import Table
from .hours import Hours

MB = 1_000_000
DEFAULT_BURST_S = 1.0
# (smallest, largest) sane values
MB_PER_S = (0.001, 100_000.0)  # 1 kB/s .. 100 GB/s
REQUESTS_PER_S = (0.001, 100_000.0)
BURST_S = (0.01, 3600.0)
KEYS = ("mb_per_s", "requests_per_s", "burst_s", "background_hours")


@dataclass(frozen=True)
class LimitsConfig:
    """What one server allows; None: no such limit."""

    mb_per_s: float | None = None
    requests_per_s: float | None = None
    burst_s: float = DEFAULT_BURST_S
    background_hours: Hours | None = None

    @property
    def bytes_per_s(self) -> float | None:
        return None if self.mb_per_s is None else self.mb_per_s * MB

    @property
    def limited(self) -> bool:
        return self.mb_per_s is not None or self.requests_per_s is not None or self.background_hours is not None

    def describe(self) -> str:
        """One line for ``trolleyfs check``."""
        parts = []
        if self.mb_per_s is not None:
            parts.append(f"{self.mb_per_s:g} MB/s")
        if self.requests_per_s is not None:
            parts.append(f"{self.requests_per_s:g} requests/s")
        if parts:
            parts[-1] += f" (bursts of {self.burst_s:g} s)"
        if self.background_hours is not None:
            parts.append(f"readahead and prefetch only {self.background_hours.text}")
        return ", ".join(parts) if parts else "no limits"

    def as_dict(self) -> dict[str, object]:
        return {
            "mb_per_s": self.mb_per_s,
            "requests_per_s": self.requests_per_s,
            "burst_s": self.burst_s,
            "background_hours": None if self.background_hours is None else self.background_hours.text,
        }


def _number(t: Table, key: str, bounds: tuple[float, float], unit: str) -> float | None:
    value = t.get(key, float)
    if value is None:
        return None
    lo, hi = bounds
    if not math.isfinite(value):
        raise t.error(key, f"must be a finite number, not {value}")
    if value <= 0:
        raise t.error(key, f"must be more than 0 (leave it out for no limit), not {value:g}")
    if not lo <= value <= hi:
        raise t.error(key, f"must be between {lo:g} and {hi:g} {unit}, not {value:g}")
    return value


def parse_limits(t: Table) -> LimitsConfig:
    """The ``limits`` table itself (``servers.<name>.limits``)."""
    t.check_keys(KEYS)
    burst = _number(t, "burst_s", BURST_S, "seconds")
    hours = None
    text = t.get("background_hours", str)
    if text is not None:
        try:
            hours = Hours.parse(text)
        except ValueError as exc:
            raise t.error("background_hours", str(exc)) from None
    return LimitsConfig(
        mb_per_s=_number(t, "mb_per_s", MB_PER_S, "MB/s"),
        requests_per_s=_number(t, "requests_per_s", REQUESTS_PER_S, "requests/s"),
        burst_s=DEFAULT_BURST_S if burst is None else burst,
        background_hours=hours,
    )


def limits_of(server: Table) -> LimitsConfig | None:
    """The limits of a ``[servers.<name>]`` table; None when it has none."""
    table = server.table("limits")
    return None if table is None else parse_limits(table)
