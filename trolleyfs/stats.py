"""Counters shown in ``.trolleyfs/stats.json`` and logged at exit."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


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

    def as_dict(self) -> dict[str, object]:
        return {
            "uptime_s": round(time.time() - self.started, 1),
            "requests": dict(self.requests),
            "bytes_fetched": dict(self.bytes_fetched),
            "errors": dict(self.errors),
            "instances_fetched": self.instances_fetched,
            "series_prefetches": self.series_prefetches,
            "prefetched_unused_evicted": self.prefetched_unused_evicted,
            "misplaced_refused": self.misplaced_refused,
            "fuse_ops": dict(self.fuse_ops),
        } | {name: render() for name, render in self.sections.items()}
