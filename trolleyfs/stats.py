"""Counters shown in ``.trolleyfs/stats.json`` and logged at exit, and the
servers the mount serves offline (from what the disk cache keeps)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


def human_age(seconds: float) -> str:
    """``3 h``, ``2 d``, ``40 s``: an age for a message."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{max(seconds, 0):.0f} s"


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


@dataclass
class Offline:
    """A server that cannot be reached, served from the disk cache: since
    when (wall clock), why, and when the oldest listing shown meanwhile was
    kept (None: none shown yet)."""

    since: float
    reason: str
    oldest_shown: float | None = None

    def as_dict(self, now: float) -> dict[str, object]:
        shown = self.oldest_shown
        return {
            "since": _iso(self.since),
            "for_s": round(now - self.since, 1),
            "reason": self.reason,
            "oldest_listing_shown": _iso(shown) if shown is not None else None,
            "oldest_listing_shown_age_s": round(now - shown, 1) if shown is not None else None,
        }


@dataclass
class Stats:
    started: float = field(default_factory=time.time)
    requests: Counter[str] = field(default_factory=Counter)  # by server
    bytes_fetched: Counter[str] = field(default_factory=Counter)  # by server
    errors: Counter[str] = field(default_factory=Counter)  # by errno name
    instances_fetched: int = 0
    series_prefetches: int = 0
    prefetched_unused_evicted: int = 0
    misplaced_refused: int = 0  # objects refused at a read: not the instance, study, series or patient of their path
    fuse_ops: Counter[str] = field(default_factory=Counter)
    # sections of services the mount has (name -> what to show: "limits", "audit"), rendered at each read
    sections: dict[str, Callable[[], object]] = field(default_factory=dict)
    offline: dict[str, Offline] = field(default_factory=dict)  # by server

    def went_offline(self, server: str, reason: str, since: float | None = None) -> None:
        """``server`` cannot be reached and is served from the disk cache."""
        if server not in self.offline:
            self.offline[server] = Offline(time.time() if since is None else since, reason)

    def back_online(self, server: str) -> bool:
        """``server`` answers again; whether it was offline."""
        return self.offline.pop(server, None) is not None

    def shown_offline(self, server: str, age: float) -> None:
        """A listing ``age`` seconds old was shown for ``server`` while it was offline."""
        entry = self.offline.get(server)
        if entry is not None:
            kept = time.time() - age
            entry.oldest_shown = kept if entry.oldest_shown is None else min(entry.oldest_shown, kept)

    def as_dict(self) -> dict[str, object]:
        now = time.time()
        return {
            "uptime_s": round(now - self.started, 1),
            "requests": dict(self.requests),
            "bytes_fetched": dict(self.bytes_fetched),
            "errors": dict(self.errors),
            "instances_fetched": self.instances_fetched,
            "series_prefetches": self.series_prefetches,
            "prefetched_unused_evicted": self.prefetched_unused_evicted,
            "misplaced_refused": self.misplaced_refused,
            "fuse_ops": dict(self.fuse_ops),
            "offline": {name: o.as_dict(now) for name, o in self.offline.items()},
        } | {name: render() for name, render in self.sections.items()}
