"""What the pieces of the read path share, in one bundle the Store builds
once and hands to each (single fetches, series readahead, disk readahead)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import trio

from ..model import Fetcher
from ..stats import Stats
from .budget import ReadaheadBudget
from .caches import Caches
from .cluster import ClusterReads
from .flights import Flights


@dataclass(frozen=True)
class ReadParts:
    fetchers: Mapping[str, Fetcher]  # by server: objects in the form a ref asks for
    stats: Stats  # the mount's counters
    flights: Flights  # fetches in flight, one per instance
    caches: Caches  # memory, disk and sizes
    budget: ReadaheadBudget  # bytes read ahead and not read yet
    nursery: trio.Nursery  # where background fetches run
    on_readahead: Callable[[str, bytes], None]  # sees readahead data as it arrives
    cluster: ClusterReads | None = None  # the cluster tier, between the caches and the servers
